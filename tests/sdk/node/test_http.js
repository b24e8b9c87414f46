// HTTP triggers through the official Node.js SDK (@alicloud/fc2): createTrigger with an HTTP configuration, then
// signed `get` / `post` on the proxy path of a `function` trigger.
//
// Run by `cargo test` (tests/it/runtime_http.rs) with the environment test_sdk.js gets.
// Exits non-zero on the first failed check.
'use strict';

const assert = require('node:assert/strict');
const FC = require('@alicloud/fc2');
const JSZip = require('jszip');

const SERVICE = 'sdk_node_http';

// The SDK parses an answer labelled application/json (the guide's example labels its text so): this handler
// answers JSON, read through the bundled raw-body as the guide's example does.
const HANDLER = `
const getRawBody = require('raw-body');
exports.handler = (request, response, context) => {
  getRawBody(request, (err, body) => {
    response.setHeader('content-type', 'application/json');
    response.send(JSON.stringify({ method: request.method, path: request.path, queries: request.queries,
      body: body.toString(), signed: typeof request.headers.authorization === 'string' }));
  });
};
`;

function check(condition, message) {
  assert.ok(condition, message);
  console.log(`ok - ${message}`);
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
  const client = new FC('1234567890123456', {
    accessKeyID: process.env.SDK_TEST_ACCESS_KEY_ID,
    accessKeySecret: process.env.SDK_TEST_ACCESS_KEY_SECRET,
    region: 'cn-hangzhou',
    endpoint: process.env.SDK_TEST_ENDPOINT,
    timeout: 30000,
  });
  await client.createService(SERVICE);
  const zip = new JSZip();
  zip.file('index.js', HANDLER);
  await client.createFunction(SERVICE, {
    functionName: 'guide', runtime: 'nodejs20', handler: 'index.handler',
    code: { zipFile: await zip.generateAsync({ type: 'base64' }) },
  });
  const config = { authType: 'function', methods: ['GET', 'POST'] };
  const trigger = await client.createTrigger(SERVICE, 'guide', {
    triggerName: 'web', triggerType: 'http', triggerConfig: config,
  });
  check(trigger.data.triggerType === 'http' && trigger.data.triggerConfig.authType === 'function',
    'createTrigger http');
  const got = await client.getTrigger(SERVICE, 'guide', 'web');
  check(JSON.stringify(got.data.triggerConfig) === JSON.stringify(config), 'getTrigger shows the configuration');

  const proxy = `/proxy/${SERVICE}/guide/action`;
  const posted = await client.post(proxy, 'this is body', {}, { lang: 'node', hello: 'world' });
  check(posted.data.method === 'POST' && posted.data.path === '/action' && posted.data.body === 'this is body'
    && posted.data.queries.lang === 'node' && posted.data.queries.hello === 'world' && posted.data.signed,
  `signed post: ${JSON.stringify(posted.data)}`);
  check(posted.headers['x-fc-request-id'] !== undefined, 'the answer has a request id');
  const fetched = await client.get(`/proxy/${SERVICE}/guide/`, { q: '1' });
  check(fetched.data.method === 'GET' && fetched.data.path === '/' && fetched.data.queries.q === '1',
    `signed get: ${JSON.stringify(fetched.data)}`);
  await expectError(client.put(proxy, 'x'), 'AccessDenied');

  // The same path without the SDK's signature is refused.
  const unsigned = await fetch(`${process.env.SDK_TEST_ENDPOINT}/2016-08-15${proxy}`);
  check(unsigned.status === 400 && unsigned.headers.get('x-fc-error-type') === 'FcCommonError',
    `an unsigned request is refused (${unsigned.status})`);

  await client.deleteTrigger(SERVICE, 'guide', 'web');
  await expectError(client.get(`/proxy/${SERVICE}/guide/`), 'TriggerNotFound');
  await client.deleteFunction(SERVICE, 'guide');
  await client.deleteService(SERVICE);
  console.log('all node SDK HTTP trigger checks passed');
}

main().catch((error) => {
  console.error('FAILED:', error);
  process.exit(1);
});
