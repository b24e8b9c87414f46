// Triggers through the official Node.js SDK (@alicloud/fc2): createTrigger, getTrigger, listTriggers,
// updateTrigger, deleteTrigger, for a timer and an OSS trigger (checked and shown back).
//
// Run by `cargo test` (tests/it/runtime_triggers.rs) with the environment test_sdk.js gets.
// Exits non-zero on the first failed check.
'use strict';

const assert = require('node:assert/strict');
const FC = require('@alicloud/fc2');
const JSZip = require('jszip');

const SERVICE = 'sdk_node_triggers';

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
  zip.file('index.js', "exports.handler = (event, context, callback) => callback(null, 'ok');\n");
  await client.createFunction(SERVICE, {
    functionName: 'f', runtime: 'nodejs20', handler: 'index.handler',
    code: { zipFile: await zip.generateAsync({ type: 'base64' }) },
  });

  const timerConfig = { payload: 'p', cronExpression: '0 0 8 * * *', enable: true };
  const timer = await client.createTrigger(SERVICE, 'f', {
    triggerName: 'morning', triggerType: 'timer', triggerConfig: timerConfig,
  });
  check(timer.data.triggerName === 'morning' && timer.data.triggerConfig.cronExpression === '0 0 8 * * *',
    'createTrigger timer');
  const ossConfig = { events: ['oss:ObjectCreated:*'], filter: { key: { prefix: 'a/', suffix: '.png' } } };
  const oss = await client.createTrigger(SERVICE, 'f', {
    triggerName: 'uploads', triggerType: 'oss', sourceArn: 'acs:oss:cn-hangzhou:123:bucket',
    invocationRole: 'acs:ram::123:role/oss', triggerConfig: ossConfig,
  });
  check(JSON.stringify(oss.data.triggerConfig) === JSON.stringify(ossConfig), 'createTrigger oss');
  await expectError(client.createTrigger(SERVICE, 'f', {
    triggerName: 'flood', triggerType: 'timer', triggerConfig: { cronExpression: '* * * * * *' },
  }), 'InvalidArgument');
  await expectError(client.createTrigger(SERVICE, 'f', {
    triggerName: 'uploads', triggerType: 'oss', sourceArn: 'acs:oss:cn-hangzhou:123:bucket', triggerConfig: ossConfig,
  }), 'TriggerAlreadyExists');

  const got = await client.getTrigger(SERVICE, 'f', 'morning');
  check(got.data.triggerConfig.payload === 'p', 'getTrigger');
  const listed = await client.listTriggers(SERVICE, 'f', { limit: 1 });
  check(listed.data.triggers.length === 1 && listed.data.nextToken === 'uploads', 'listTriggers pages');
  const updated = await client.updateTrigger(SERVICE, 'f', 'morning', {
    triggerConfig: { payload: 'q', cronExpression: '@every 10m', enable: false },
  });
  check(updated.data.triggerConfig.enable === false && updated.data.triggerConfig.payload === 'q', 'updateTrigger');
  await expectError(client.deleteFunction(SERVICE, 'f'), 'FunctionNotEmpty');

  await client.deleteTrigger(SERVICE, 'f', 'morning');
  await client.deleteTrigger(SERVICE, 'f', 'uploads');
  await expectError(client.getTrigger(SERVICE, 'f', 'morning'), 'TriggerNotFound');
  const none = await client.listTriggers(SERVICE, 'f');
  check(none.data.triggers.length === 0, 'deleteTrigger');
  await client.deleteFunction(SERVICE, 'f');
  await client.deleteService(SERVICE);
  console.log('all node SDK trigger checks passed');
}

main().catch((error) => {
  console.error('FAILED:', error);
  process.exit(1);
});
