// Drives the bundled function runtime with the official Function Compute Node.js SDK (@alicloud/fc2).
//
// Run by `cargo test` (tests/it/runtime_sdk.rs), which starts a signed runtime with a concurrency limit of 2 and
// passes SDK_TEST_ENDPOINT, SDK_TEST_ACCESS_KEY_ID, SDK_TEST_ACCESS_KEY_SECRET and SDK_TEST_LOG_DIR (the runtime's
// function logs, where handlers' output shows what async invocations did). The SDK signs every body with a
// Content-MD5 (base64 of its hex MD5), which the runtime checks.
// Exits non-zero on the first failed check.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const FC = require('@alicloud/fc2');
const JSZip = require('jszip');

const SERVICE = 'sdk_node';

const PYTHON_CODE = `
import os, time

def handler(event, context):
    return b"py:" + event

def fail(event, context):
    raise ValueError("py boom")

def sleep(event, context):
    time.sleep(1.5)
    return b"slept"
`;

const NODE_CODE = `
exports.handler = (event, context, callback) => {
  console.log('node handler saw', event.toString());
  callback(null, 'node:' + event.toString());
};
exports.handled = (event, context, callback) => callback(new Error('node handled'));
exports.mark = (event, context, callback) => {
  process.stdout.write('MARK ' + event.toString() + ' ' + context.requestId + '\\n');
  callback(null, 'marked');
};
`;

function check(condition, message) {
  assert.ok(condition, message);
  console.log(`ok - ${message}`);
}

async function zipBase64(name, text) {
  const zip = new JSZip();
  zip.file(name, text);
  return zip.generateAsync({ type: 'base64', compression: 'DEFLATE' });
}

async function expectError(promise, code) {
  try {
    await promise;
  } catch (error) {
    check(error.code === code, `error ${code} (got ${error.code}: ${error.message})`);
    return error;
  }
  throw new Error(`expected ${code}, the call succeeded`);
}

async function main() {
  const logDir = process.env.SDK_TEST_LOG_DIR;
  const client = new FC('1234567890123456', {
    accessKeyID: process.env.SDK_TEST_ACCESS_KEY_ID,
    accessKeySecret: process.env.SDK_TEST_ACCESS_KEY_SECRET,
    region: 'cn-hangzhou',
    endpoint: process.env.SDK_TEST_ENDPOINT,
    timeout: 30000,
  });

  const created = await client.createService(SERVICE, { description: '@alicloud/fc2 test' });
  check(created.data.serviceName === SERVICE && created.headers.etag, 'createService');

  const pythonZip = await zipBase64('index.py', PYTHON_CODE);
  const nodeZip = await zipBase64('index.js', NODE_CODE);
  const functions = [
    ['py', 'python3.10', 'index.handler', pythonZip],
    ['pyfail', 'python3.10', 'index.fail', pythonZip],
    ['pysleep', 'python3.10', 'index.sleep', pythonZip],
    ['node', 'nodejs20', 'index.handler', nodeZip],
    ['nodeerr', 'nodejs20', 'index.handled', nodeZip],
    ['nodemark', 'nodejs20', 'index.mark', nodeZip],
  ];
  for (const [name, runtime, handler, zipFile] of functions) {
    const fn = await client.createFunction(SERVICE, {
      functionName: name,
      runtime,
      handler,
      timeout: 10,
      environmentVariables: { GREETING: 'hello' },
      code: { zipFile },
    });
    check(fn.data.functionName === name && fn.data.codeChecksum, `createFunction ${name}`);
  }
  const listed = await client.listFunctions(SERVICE, { limit: 2, prefix: 'node' });
  check(
    listed.data.functions.map((f) => f.functionName).join() === 'node,nodeerr' && listed.data.nextToken === 'nodemark',
    'listFunctions pages'
  );

  const node = await client.invokeFunction(SERVICE, 'node', 'hi', { 'x-fc-log-type': 'Tail' });
  check(node.data === 'node:hi', `sync node invoke: ${node.data}`);
  const log = Buffer.from(node.headers['x-fc-log-result'], 'base64').toString();
  check(log.includes('node handler saw hi'), `log tail: ${log}`);
  const updated = await client.updateFunction(SERVICE, 'node', {
    description: 'second version',
    code: { zipFile: await zipBase64('index.js', NODE_CODE.replace("'node:'", "'node2:'")) },
  });
  check(updated.data.description === 'second version', 'updateFunction');
  const node2 = await client.invokeFunction(SERVICE, 'node', 'hi');
  check(node2.data === 'node2:hi', `the update replaced the warm instance: ${node2.data}`);
  const code = await client.getFunctionCode(SERVICE, 'node');
  check(code.data.checksum === updated.data.codeChecksum, 'getFunctionCode checksum');
  const archive = await fetch(code.data.url);
  const files = Object.keys((await JSZip.loadAsync(await archive.arrayBuffer())).files);
  check(archive.status === 200 && files.join() === 'index.js', 'the code URL serves the zip');
  const py = await client.invokeFunction(SERVICE, 'py', 'hi', {}, 'LATEST');
  check(py.data === 'py:hi', `sync python invoke with qualifier LATEST: ${py.data}`);

  const handled = await client.invokeFunction(SERVICE, 'nodeerr', 'x');
  check(handled.headers['x-fc-error-type'] === 'HandledInvocationError', 'HandledInvocationError header');
  check(handled.data.errorMessage === 'node handled', `handled error body: ${JSON.stringify(handled.data)}`);
  const unhandled = await client.invokeFunction(SERVICE, 'pyfail', 'x');
  check(unhandled.headers['x-fc-error-type'] === 'UnhandledInvocationError', 'UnhandledInvocationError header');
  check(unhandled.data.errorMessage.includes('py boom'), `unhandled error body: ${JSON.stringify(unhandled.data)}`);

  await expectError(client.invokeFunction(SERVICE, 'missing', 'x'), 'FunctionNotFound');
  await expectError(client.getFunction(SERVICE, 'missing'), 'FunctionNotFound');
  await expectError(client.getService('no_such_service'), 'ServiceNotFound');
  await expectError(client.createService(SERVICE), 'ServiceAlreadyExists');
  await expectError(client.invokeFunction(SERVICE, 'py', 'x', {}, 'prod'), 'AliasNotFound');

  const accepted = await client.invokeFunction(SERVICE, 'nodemark', 'node-async', {
    'x-fc-invocation-type': 'Async',
  });
  check(accepted.data === '', 'async invoke accepted with an empty body');
  const markLog = path.join(logDir, SERVICE, 'nodemark.log');
  const marked = () => fs.existsSync(markLog) && fs.readFileSync(markLog, 'utf8').includes('MARK node-async ');
  const deadline = Date.now() + 20000;
  while (!marked() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  check(marked(), "the async invocation ran (its mark is in the function's log)");

  const results = await Promise.all(
    Array.from({ length: 6 }, () =>
      client.invokeFunction(SERVICE, 'pysleep', '').then(
        (r) => r.data,
        (error) => error.code
      )
    )
  );
  const throttled = results.filter((r) => r === 'ResourceExhausted').length;
  const done = results.filter((r) => r === 'slept').length;
  check(
    throttled >= 1 && done >= 1 && throttled + done === 6,
    `6 parallel calls under a limit of 2: ${done} ran, ${throttled} got 429 ResourceExhausted`
  );

  for (const [name] of functions) {
    await client.deleteFunction(SERVICE, name);
  }
  await client.deleteService(SERVICE);
  await expectError(client.getService(SERVICE), 'ServiceNotFound');
  console.log('all node SDK checks passed');
}

main().catch((error) => {
  console.error('FAILED:', error);
  process.exit(1);
});
