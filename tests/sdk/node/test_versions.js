// Versions and aliases through the official Node.js SDK (@alicloud/fc2): publishVersion, listVersions,
// deleteVersion, create/get/list/update/deleteAlias, and get/invoke with a qualifier.
//
// Run by `cargo test` (tests/it/runtime_versions.rs) with the environment test_sdk.js gets.
// Exits non-zero on the first failed check.
'use strict';

const assert = require('node:assert/strict');
const FC = require('@alicloud/fc2');
const JSZip = require('jszip');

const SERVICE = 'sdk_node_versions';

function check(condition, message) {
  assert.ok(condition, message);
  console.log(`ok - ${message}`);
}

async function codeOf(tag) {
  const zip = new JSZip();
  zip.file('index.js', `exports.handler = (event, context, callback) => callback(null, '${tag}:' + event.toString());\n`);
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

async function answer(client, qualifier) {
  const result = await client.invokeFunction(SERVICE, 'f', 'x', {}, qualifier);
  return result.data.toString();
}

async function main() {
  const client = new FC('1234567890123456', {
    accessKeyID: process.env.SDK_TEST_ACCESS_KEY_ID,
    accessKeySecret: process.env.SDK_TEST_ACCESS_KEY_SECRET,
    region: 'cn-hangzhou',
    endpoint: process.env.SDK_TEST_ENDPOINT,
    timeout: 30000,
  });
  await client.createService(SERVICE, { description: 'service at LATEST' });
  const created = await client.createFunction(SERVICE, {
    functionName: 'f', runtime: 'nodejs20', handler: 'index.handler', timeout: 5,
    code: { zipFile: await codeOf('one') },
  });
  const firstChecksum = created.data.codeChecksum;

  const v1 = await client.publishVersion(SERVICE, 'release one');
  check(v1.data.versionId === '1' && v1.data.description === 'release one', 'publishVersion');
  await expectError(client.publishVersion(SERVICE, 'unchanged'), 'InvalidArgument');
  await client.updateFunction(SERVICE, 'f', { timeout: 7, code: { zipFile: await codeOf('two') } });
  const v2 = await client.publishVersion(SERVICE, 'release two');
  check(v2.data.versionId === '2', 'second version');

  check(await answer(client) === 'two:x', 'LATEST runs the new code');
  check(await answer(client, '1') === 'one:x', 'qualifier 1 runs the published code');
  const fn = await client.getFunction(SERVICE, 'f', {}, '1');
  check(fn.data.timeout === 5 && fn.data.codeChecksum === firstChecksum, 'getFunction at version 1');
  const code = await client.getFunctionCode(SERVICE, 'f', {}, '1');
  check(code.data.checksum === firstChecksum, 'getFunctionCode at version 1');
  const service = await client.getService(SERVICE, {}, '1');
  check(service.data.description === 'release one', 'getService at a version');
  const listedFns = await client.listFunctions(SERVICE, {}, {}, '2');
  check(listedFns.data.functions.length === 1 && listedFns.data.functions[0].timeout === 7, 'listFunctions at 2');

  const page = await client.listVersions(SERVICE, { limit: 1 });
  check(page.data.versions.map((v) => v.versionId).join() === '2' && page.data.nextToken === '1',
    `listVersions pages newest first: ${JSON.stringify(page.data)}`);
  const forward = await client.listVersions(SERVICE, { direction: 'FORWARD' });
  check(forward.data.versions.map((v) => v.versionId).join() === '1,2', 'listVersions FORWARD');

  const alias = await client.createAlias(SERVICE, 'prod', '1', {
    description: 'canary', additionalVersionWeight: { 2: 0.5 },
  });
  check(alias.data.aliasName === 'prod' && alias.data.additionalVersionWeight['2'] === 0.5, 'createAlias');
  await expectError(client.createAlias(SERVICE, 'prod', '1'), 'AliasAlreadyExists');
  await expectError(client.createAlias(SERVICE, 'bad', '1', { additionalVersionWeight: { 2: 2 } }),
    'InvalidArgument');
  const answers = new Set();
  for (let i = 0; i < 40; i += 1) {
    answers.add(await answer(client, 'prod'));
  }
  check(answers.size === 2, `the alias sends calls to both versions: ${[...answers]}`);
  const got = await client.getAlias(SERVICE, 'prod');
  check(got.data.versionId === '1' && got.data.description === 'canary', 'getAlias');
  const updated = await client.updateAlias(SERVICE, 'prod', '2', { additionalVersionWeight: {} });
  check(updated.data.versionId === '2', 'updateAlias');
  for (let i = 0; i < 5; i += 1) {
    check(await answer(client, 'prod') === 'two:x', 'after updateAlias the alias runs version 2');
  }
  const aliases = await client.listAliases(SERVICE, { limit: 10 });
  check(aliases.data.aliases.length === 1, 'listAliases');
  await expectError(client.invokeFunction(SERVICE, 'f', 'x', {}, 'nosuch'), 'AliasNotFound');
  await expectError(client.deleteService(SERVICE), 'ServiceNotEmpty');

  await client.deleteAlias(SERVICE, 'prod');
  await expectError(client.getAlias(SERVICE, 'prod'), 'AliasNotFound');
  await client.deleteVersion(SERVICE, '1');
  await client.deleteVersion(SERVICE, '2');
  const none = await client.listVersions(SERVICE);
  check(none.data.versions.length === 0, 'deleteVersion');
  await client.deleteFunction(SERVICE, 'f');
  await client.deleteService(SERVICE);
  console.log('all node SDK version checks passed');
}

main().catch((error) => {
  console.error('FAILED:', error);
  process.exit(1);
});
