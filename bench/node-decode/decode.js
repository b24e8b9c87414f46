// Decodes raw common.Block files with Fabric's own Node protobufs (@hyperledger/fabric-protos, what the Fabric
// Node SDKs use) into Block / Tx / Contract events, the same depth of work as chaintrigger's decoder:
// envelope -> payload -> headers -> creator (MSP id + certificate CN, cached per creator) -> transaction ->
// action -> chaincode proposal payload -> invocation args -> proposal response payload -> chaincode action ->
// chaincode event and read/write sets; validation codes from the block metadata; block hash (SHA-256 of the
// header's DER). It does NOT build configtxlator-style JSON of the whole payload (no Node library does); the
// events are serialized with JSON.stringify.
//
// With --bare it only decodes (the anchor of `cargo bench --bench decode`): every protobuf layer the events are
// read from (envelope, payload, headers, transaction, actions, proposal payload, invocation spec, proposal
// response payload, chaincode action, chaincode event, read/write sets, config envelope), no certificate, no
// block hash, no event objects, no JSON.
//
// Usage: node decode.js [--bare] ITERATIONS BLOCK_FILE...   prints one JSON line of totals.

'use strict';

const fs = require('fs');
const crypto = require('crypto');
const { common, peer, ledger, msp } = require('@hyperledger/fabric-protos');

const VALIDATION_NAMES = Object.fromEntries(Object.entries(peer.TxValidationCode).map(([k, v]) => [v, k]));

function derLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  while (n > 0) { bytes.unshift(n & 0xff); n = Math.floor(n / 256); }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
function derTlv(tag, content) { return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]); }
function derInteger(n) {
  let hex = BigInt(n).toString(16);
  if (hex.length % 2) hex = '0' + hex;
  let bytes = Buffer.from(hex, 'hex');
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return derTlv(0x02, bytes);
}
function blockHash(header) {
  const body = Buffer.concat([
    derInteger(header.getNumber()),
    derTlv(0x04, Buffer.from(header.getPreviousHash_asU8())),
    derTlv(0x04, Buffer.from(header.getDataHash_asU8())),
  ]);
  return crypto.createHash('sha256').update(derTlv(0x30, body)).digest('hex');
}

function creatorLabel(cache, creatorBytes) {
  const key = Buffer.from(creatorBytes).toString('base64');
  let label = cache.get(key);
  if (label === undefined) {
    const id = msp.SerializedIdentity.deserializeBinary(creatorBytes);
    let cn = null;
    try {
      const cert = new crypto.X509Certificate(Buffer.from(id.getIdBytes_asU8()));
      const m = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
      cn = m ? m[1] : null;
    } catch (e) { cn = null; }
    label = cn ? `${id.getMspid()}.${cn}` : id.getMspid();
    cache.set(key, label);
  }
  return label;
}

function decodeBlock(bytes, instanceId) {
  const block = common.Block.deserializeBinary(bytes);
  const header = block.getHeader();
  const number = header.getNumber();
  const filter = block.getMetadata().getMetadataList_asU8()[2] || new Uint8Array();
  const cache = new Map();
  const events = [];
  const txIds = [];
  let network = '';
  let createTime = 0;
  const txEvents = [];
  block.getData().getDataList_asU8().forEach((envBytes, i) => {
    const envelope = common.Envelope.deserializeBinary(envBytes);
    const payload = common.Payload.deserializeBinary(envelope.getPayload_asU8());
    const ch = common.ChannelHeader.deserializeBinary(payload.getHeader().getChannelHeader_asU8());
    const sh = common.SignatureHeader.deserializeBinary(payload.getHeader().getSignatureHeader_asU8());
    const from = sh.getCreator_asU8().length ? creatorLabel(cache, sh.getCreator_asU8()) : '';
    const txId = ch.getTxId();
    if (!network) network = ch.getChannelId();
    if (i === 0 && ch.getTimestamp()) createTime = ch.getTimestamp().getSeconds();
    txIds.push(txId);
    const state = VALIDATION_NAMES[filter[i]];
    const contracts = [];
    let to = '';
    let input = '';
    if (ch.getType() === common.HeaderType.ENDORSER_TRANSACTION) {
      const tx = peer.Transaction.deserializeBinary(payload.getData_asU8());
      tx.getActionsList().forEach((action, a) => {
        const cap = peer.ChaincodeActionPayload.deserializeBinary(action.getPayload_asU8());
        const cpp = peer.ChaincodeProposalPayload.deserializeBinary(cap.getChaincodeProposalPayload_asU8());
        const spec = peer.ChaincodeInvocationSpec.deserializeBinary(cpp.getInput_asU8()).getChaincodeSpec();
        const args = spec.getInput().getArgsList_asU8().map((arg) => Buffer.from(arg).toString('utf8'));
        const prp = peer.ProposalResponsePayload.deserializeBinary(cap.getAction().getProposalResponsePayload_asU8());
        const cca = peer.ChaincodeAction.deserializeBinary(prp.getExtension_asU8());
        const rwset = ledger.rwset.TxReadWriteSet.deserializeBinary(cca.getResults_asU8());
        rwset.getNsRwsetList().forEach((ns) => ledger.rwset.kvrwset.KVRWSet.deserializeBinary(ns.getRwset_asU8()));
        if (a === 0) {
          to = cca.getChaincodeId() ? cca.getChaincodeId().getName() : spec.getChaincodeId().getName();
          input = JSON.stringify(args);
        }
        if (cca.getEvents_asU8().length) {
          const event = peer.ChaincodeEvent.deserializeBinary(cca.getEvents_asU8());
          contracts.push({
            type: 'Contract', platform: 'Fabric', instance_id: instanceId, network: ch.getChannelId(),
            id: `contract-${number}-${txId}`, name: event.getEventName(),
            content: Buffer.from(event.getPayload_asU8()).toString('base64'),
          });
        }
      });
    }
    const isConfig = ch.getType() === common.HeaderType.CONFIG;
    txEvents.push({
      type: isConfig ? 'Config' : 'Tx', platform: 'Fabric', instance_id: instanceId, network: ch.getChannelId(),
      id: `${isConfig ? 'config' : 'tx'}-${number}-${txId}`, name: isConfig ? '' : txId,
      content: { id: txId, state, from, to, input, events: isConfig ? null : contracts.map((c) => ({ ...c, network: '' })) },
    });
    if (state === 'VALID') txEvents.push(...contracts);
  });
  events.push({
    type: 'Block', platform: 'Fabric', instance_id: instanceId, network, id: `block-${number}`, name: String(number),
    content: {
      number, hash: blockHash(header), previous_hash: Buffer.from(header.getPreviousHash_asU8()).toString('hex'),
      create_time: createTime, transactions: txIds,
    },
  });
  events.push(...txEvents);
  return events;
}

// The bare decode: returns the number of transactions.
function decodeBare(bytes) {
  const block = common.Block.deserializeBinary(bytes);
  block.getHeader().getNumber();
  block.getMetadata().getMetadataList_asU8();
  const envelopes = block.getData().getDataList_asU8();
  for (const envBytes of envelopes) {
    const envelope = common.Envelope.deserializeBinary(envBytes);
    const payload = common.Payload.deserializeBinary(envelope.getPayload_asU8());
    const ch = common.ChannelHeader.deserializeBinary(payload.getHeader().getChannelHeader_asU8());
    common.SignatureHeader.deserializeBinary(payload.getHeader().getSignatureHeader_asU8());
    if (ch.getType() === common.HeaderType.ENDORSER_TRANSACTION) {
      const tx = peer.Transaction.deserializeBinary(payload.getData_asU8());
      for (const action of tx.getActionsList()) {
        const cap = peer.ChaincodeActionPayload.deserializeBinary(action.getPayload_asU8());
        const cpp = peer.ChaincodeProposalPayload.deserializeBinary(cap.getChaincodeProposalPayload_asU8());
        peer.ChaincodeInvocationSpec.deserializeBinary(cpp.getInput_asU8());
        const prp = peer.ProposalResponsePayload.deserializeBinary(cap.getAction().getProposalResponsePayload_asU8());
        const cca = peer.ChaincodeAction.deserializeBinary(prp.getExtension_asU8());
        const rwset = ledger.rwset.TxReadWriteSet.deserializeBinary(cca.getResults_asU8());
        for (const ns of rwset.getNsRwsetList()) ledger.rwset.kvrwset.KVRWSet.deserializeBinary(ns.getRwset_asU8());
        if (cca.getEvents_asU8().length) peer.ChaincodeEvent.deserializeBinary(cca.getEvents_asU8());
      }
    } else if (ch.getType() === common.HeaderType.CONFIG) {
      common.ConfigEnvelope.deserializeBinary(payload.getData_asU8());
    }
  }
  return envelopes.length;
}

function bare(iterations, blocks, bytesPerRound) {
  for (let i = 0; i < Math.min(iterations, 20); i++) for (const b of blocks) decodeBare(b);
  let transactions = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) for (const b of blocks) transactions += decodeBare(b);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({
    seconds, blocks: iterations * blocks.length, bytes: iterations * bytesPerRound, transactions, events: 0,
  }));
}

function main() {
  let args = process.argv.slice(2);
  const bareMode = args[0] === '--bare';
  if (bareMode) args = args.slice(1);
  const [iterationsArg, ...files] = args;
  const iterations = Number(iterationsArg);
  if (!Number.isInteger(iterations) || iterations < 1 || files.length === 0) {
    console.error('usage: node decode.js [--bare] ITERATIONS BLOCK_FILE...');
    process.exit(2);
  }
  const blocks = files.map((f) => new Uint8Array(fs.readFileSync(f)));
  const bytesPerRound = blocks.reduce((sum, b) => sum + b.length, 0);
  if (bareMode) return bare(iterations, blocks, bytesPerRound);
  // Warm up the JIT before timing.
  for (let i = 0; i < Math.min(iterations, 20); i++) for (const b of blocks) JSON.stringify(decodeBlock(b, 'bench'));
  let events = 0;
  let jsonBytes = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    for (const b of blocks) {
      const decoded = decodeBlock(b, 'bench');
      events += decoded.length;
      for (const e of decoded) jsonBytes += JSON.stringify(e).length;
    }
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({
    seconds, blocks: iterations * blocks.length, bytes: iterations * bytesPerRound, events, json_bytes: jsonBytes,
  }));
}

main();
