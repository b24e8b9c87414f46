// Java functions through the official Function Compute Node.js SDK (@alicloud/fc2).
//
// Run by `cargo test` (tests/it/runtime_java.rs), which compiles the user guide's Java examples with javac against
// the runtime's `com.aliyun.fc.runtime` sources, zips them into SDK_TEST_WORK_DIR and starts a signed runtime.
// Exits non-zero on the first failed check.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const FC = require('@alicloud/fc2');

const SERVICE = 'sdk_node_java';

function check(condition, message) {
  assert.ok(condition, message);
  console.log(`ok - ${message}`);
}

function json(data) {
  return typeof data === 'string' || Buffer.isBuffer(data) ? JSON.parse(data.toString()) : data;
}

async function main() {
  const workDir = process.env.SDK_TEST_WORK_DIR;
  const logDir = process.env.SDK_TEST_LOG_DIR;
  const client = new FC('1234567890123456', {
    accessKeyID: process.env.SDK_TEST_ACCESS_KEY_ID,
    accessKeySecret: process.env.SDK_TEST_ACCESS_KEY_SECRET,
    region: 'cn-hangzhou',
    endpoint: process.env.SDK_TEST_ENDPOINT,
    timeout: 60000,
  });
  await client.createService(SERVICE, { description: 'Java functions' });

  const functions = [
    ['hello', 'java8', 'example.HelloFC::handleRequest', 'hello.zip', {}],
    ['pojo', 'java11', 'example.HelloFC::handleRequest', 'pojo.zip', {}],
    ['oops', 'java8', 'example.HelloFC::handleRequest', 'oops.zip', {}],
    [
      'init',
      'java8',
      'example.InitFC::handleRequest',
      'more.zip',
      { initializer: 'example.InitFC::initialize', initializationTimeout: 30 },
    ],
  ];
  for (const [name, runtime, handler, archive, extra] of functions) {
    const zipFile = fs.readFileSync(path.join(workDir, archive)).toString('base64');
    const fn = await client.createFunction(SERVICE, {
      functionName: name,
      runtime,
      handler,
      timeout: 30,
      code: { zipFile },
      ...extra,
    });
    check(fn.data.runtime === runtime && fn.data.handler === handler, `createFunction ${name} (${runtime})`);
  }

  const hello = await client.invokeFunction(SERVICE, 'hello', '', { 'x-fc-log-type': 'Tail' });
  check(hello.data.toString() === 'hello world', `the guide's HelloFC answers hello world: ${hello.data}`);
  const tail = Buffer.from(hello.headers['x-fc-log-result'], 'base64').toString();
  const requestId = hello.headers['x-fc-request-id'];
  check(
    new RegExp(`\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z ${requestId} \\[INFO\\] hello world`).test(tail),
    `context.getLogger().info writes the guide's line format: ${tail}`
  );

  const pojo = await client.invokeFunction(SERVICE, 'pojo', JSON.stringify({ firstName: 'FC', lastName: 'aliyun' }));
  check(json(pojo.data).message === 'Hello, FC aliyun', `the guide's POJO handler: ${JSON.stringify(pojo.data)}`);

  const oops = await client.invokeFunction(SERVICE, 'oops', '{}');
  check(oops.headers['x-fc-error-type'] === 'UnhandledInvocationError', 'X-Fc-Error-Type: UnhandledInvocationError');
  const body = json(oops.data);
  check(
    body.errorMessage === 'oops' &&
      body.errorType === 'java.io.IOException' &&
      body.stackTrace.join() === 'example.HelloFC.handleRequest(HelloFC.java:15)',
    `the guide's error body: ${JSON.stringify(body)}`
  );

  const answers = [];
  for (let i = 0; i < 3; i++) {
    answers.push((await client.invokeFunction(SERVICE, 'init', 'x')).data.toString());
  }
  check(
    answers.join() === 'ready init=1 calls=1,ready init=1 calls=2,ready init=1 calls=3',
    `the initializer ran once: ${answers}`
  );
  const log = fs.readFileSync(path.join(logDir, SERVICE, 'init.log'), 'utf8');
  check(log.split('FC Initialize Start RequestId:').length === 2, 'one initialization in the log');

  for (const [name] of functions) {
    await client.deleteFunction(SERVICE, name);
  }
  await client.deleteService(SERVICE);
  console.log('all node SDK Java checks passed');
}

main().catch((error) => {
  console.error(`FAILED: ${error.stack || error}`);
  process.exit(1);
});
