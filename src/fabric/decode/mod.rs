//! `common.Block` bytes -> a typed [`Block`]: header, hash, the last config block it names, and per transaction
//! its kind, id, channel, timestamp, creator, validation code, chaincode invocations, chaincode events,
//! read/write sets and configuration. Pure, and it never panics. Fabric v2.5 and v3.x blocks decode alike
//! (etcdraft or SmartBFT ordering).
//!
//! A block whose outer layers are broken (not a `common.Block`, no header) is a [`DecodeError`]. A broken
//! transaction does not fail its block: it is kept as [`Transaction::outcome`] = `Err(..)` with the path where
//! decoding stopped, and every other transaction still decodes.
//!
//! A block without validation codes (an empty TRANSACTIONS_FILTER: a genesis block as `configtxgen` writes it,
//! a block fetched from an orderer, which never validates) decodes too: its transactions are
//! [`TxValidationCode::NotValidated`], Fabric's own code for "not validated yet". Verifying a block's hashes is
//! in [`hash`] ([`Block::verify_data_hash`], [`Block::verify_follows`]).

mod hash;

pub use hash::{VerifyError, block_data_hash, header_bytes, header_hash};

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use crate::fabric::proto::{common, kvrwset, msp, orderer, protos, rwset};

pub use crate::fabric::proto::common::HeaderType;
pub use crate::fabric::proto::protos::TxValidationCode;

/// Position of the TRANSACTIONS_FILTER entry in `BlockMetadata.metadata`.
const TRANSACTIONS_FILTER: usize = common::BlockMetadataIndex::TransactionsFilter as usize;
/// Position of the SIGNATURES entry: its value is an `OrdererBlockMetadata` naming the last config block.
const SIGNATURES: usize = common::BlockMetadataIndex::Signatures as usize;
/// Position of the deprecated LAST_CONFIG entry, read when SIGNATURES carries no value (orderers before 1.4.1).
#[allow(deprecated)]
const LAST_CONFIG: usize = common::BlockMetadataIndex::LastConfig as usize;

/// Which block an error is about; a block that cannot be read at all has no known number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef(pub Option<u64>);

impl fmt::Display for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(number) => write!(f, "block {number}"),
            None => f.write_str("block (number unknown)"),
        }
    }
}

/// Why a block, or one transaction of it, could not be decoded. Every variant names the block and the path
/// inside it (e.g. `data[3].payload.data.actions[0].payload`), so an operator can find the bad bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes at `path` are not the protobuf message expected there.
    #[error("{block}: {}not a valid {message}: {reason}", at(path))]
    Malformed {
        block: BlockRef,
        path: String,
        message: &'static str,
        reason: String,
    },
    /// A field that must be present is absent or empty.
    #[error("{block}: {}missing (expected a {message})", at(path))]
    Missing {
        block: BlockRef,
        path: String,
        message: &'static str,
    },
    /// The block's TRANSACTIONS_FILTER has entries, but none for this transaction (an empty filter is a block
    /// that was not validated, see the module documentation).
    #[error(
        "{block}: metadata.metadata[2] (TRANSACTIONS_FILTER) has {filter_len} entries, \
         expected one per transaction ({tx_count}); none for data[{index}]"
    )]
    FilterTooShort {
        block: BlockRef,
        index: usize,
        filter_len: usize,
        tx_count: usize,
    },
    /// The TRANSACTIONS_FILTER byte is not a `peer.TxValidationCode`.
    #[error("{block}: metadata.metadata[2][{index}]: {code} is not a peer.TxValidationCode")]
    UnknownValidationCode {
        block: BlockRef,
        index: usize,
        code: u8,
    },
}

/// `path: ` for an error inside the block, nothing for the block itself.
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// A decoded block.
#[derive(Debug, Clone)]
pub struct Block {
    /// Position in the chain.
    pub number: u64,
    /// SHA-256 of the header's ASN.1 DER; what the next block's `previous_hash` holds.
    pub hash: [u8; 32],
    /// The hash of the block before this one (empty for the genesis block).
    pub previous_hash: Bytes,
    /// The hash of the block's data, as the orderer computed it (checked by [`Block::verify_data_hash`]).
    pub data_hash: Bytes,
    /// The number of the channel's last config block as of this block, from the block's metadata (SIGNATURES,
    /// else the deprecated LAST_CONFIG entry, as Fabric's `GetLastConfigIndexFromBlock` reads it); `None` when
    /// the metadata names none (a crafted or damaged block). A config block names itself.
    pub last_config: Option<u64>,
    /// The raw envelopes (`data.data`), kept for [`Block::verify_data_hash`]; they share the block's buffer.
    pub envelopes: Vec<Bytes>,
    /// Every transaction in block order, decodable or not.
    pub transactions: Vec<Transaction>,
}

impl Block {
    /// The channel, taken from the first transaction that names one.
    pub fn channel_id(&self) -> Option<&str> {
        self.decoded()
            .map(|tx| tx.channel_id.as_str())
            .find(|c| !c.is_empty())
    }

    /// Unix seconds of the first transaction's timestamp: when the block's content was created.
    pub fn create_time(&self) -> Option<i64> {
        self.decoded()
            .find_map(|tx| tx.timestamp.map(|t| t.seconds))
    }

    /// The transactions that decoded.
    pub fn decoded(&self) -> impl Iterator<Item = &DecodedTransaction> {
        self.transactions
            .iter()
            .filter_map(|tx| tx.outcome.as_ref().ok())
    }

    /// Why some transactions could not be decoded (empty when all did).
    pub fn errors(&self) -> impl Iterator<Item = &DecodeError> {
        self.transactions
            .iter()
            .filter_map(|tx| tx.outcome.as_ref().err())
    }

    /// The configuration this block establishes, when it is a config block (its CONFIG transaction decoded).
    pub fn config(&self) -> Option<&ConfigTransaction> {
        self.decoded().find_map(|tx| tx.config.as_ref())
    }
}

/// One entry of the block's data.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// Position in the block (`data.data[index]`).
    pub index: usize,
    /// The transaction, or why it could not be read.
    pub outcome: Result<DecodedTransaction, DecodeError>,
}

/// A transaction whose envelope, headers and body decoded.
#[derive(Debug, Clone)]
pub struct DecodedTransaction {
    /// The committing peer's verdict from TRANSACTIONS_FILTER: only VALID transactions changed the ledger.
    /// `NOT_VALIDATED` when the block carries no validation codes (see the module documentation).
    pub validation_code: TxValidationCode,
    /// `ChannelHeader.type`: what kind of transaction this is (kept as a number when Fabric adds kinds).
    pub header_type: i32,
    /// The channel named in the channel header.
    pub channel_id: String,
    /// The transaction id (empty for configuration transactions made by the orderer).
    pub tx_id: String,
    /// When the client created the transaction.
    pub timestamp: Option<prost_types::Timestamp>,
    /// Who signed the transaction (absent in a genesis block); shared by transactions with the same creator.
    pub creator: Option<Arc<Creator>>,
    /// The raw `common.Payload`, for the protolator-style JSON of events.
    pub payload: Bytes,
    /// Chaincode invocations (endorser transactions only), in order.
    pub actions: Vec<ChaincodeInvocation>,
    /// The configuration (CONFIG transactions only).
    pub config: Option<ConfigTransaction>,
}

impl DecodedTransaction {
    /// The header type's Fabric name, e.g. `ENDORSER_TRANSACTION`, or its number when unknown.
    pub fn header_type_name(&self) -> String {
        match HeaderType::try_from(self.header_type) {
            Ok(t) => t.as_str_name().to_owned(),
            Err(_) => self.header_type.to_string(),
        }
    }

    /// Whether the peer validated this transaction.
    pub fn is_valid(&self) -> bool {
        self.validation_code == TxValidationCode::Valid
    }
}

/// The identity that signed a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creator {
    /// The MSP the identity belongs to, e.g. `Org1MSP`.
    pub msp_id: String,
    /// The certificate subject's common name, e.g. `User1@org1.example.com` (absent if not an X.509 PEM).
    pub common_name: Option<String>,
}

impl Creator {
    /// `<MSP id>.<common name>`, the BaaS `from` field.
    pub fn label(&self) -> String {
        match &self.common_name {
            Some(cn) => format!("{}.{}", self.msp_id, cn),
            None => self.msp_id.clone(),
        }
    }
}

/// One chaincode action of an endorser transaction.
#[derive(Debug, Clone)]
pub struct ChaincodeInvocation {
    /// The chaincode that ran (from the chaincode action, else from the proposal).
    pub chaincode: String,
    /// Its version as recorded by the endorser.
    pub chaincode_version: String,
    /// The invocation arguments (function name first).
    pub args: Vec<Bytes>,
    /// The chaincode event set during execution, if any.
    pub event: Option<protos::ChaincodeEvent>,
    /// The chaincode's response to the client.
    pub response: Option<protos::Response>,
    /// Read/write sets per namespace.
    pub rwsets: Vec<NamespaceRwSet>,
}

/// The reads and writes of one chaincode namespace.
#[derive(Debug, Clone)]
pub struct NamespaceRwSet {
    /// The chaincode namespace (chaincode name, or `_lifecycle`, ...).
    pub namespace: String,
    /// Public key/value reads and writes.
    pub kv: kvrwset::KvrwSet,
    /// Hashed private-data read/write sets per collection.
    pub collections: Vec<CollectionHashedRwSet>,
}

/// The hashed read/write set of one private-data collection.
#[derive(Debug, Clone)]
pub struct CollectionHashedRwSet {
    /// The collection's name.
    pub collection: String,
    /// Hashes of the keys and values read and written.
    pub hashed: kvrwset::HashedRwSet,
    /// Hash of the whole private read/write set.
    pub pvt_rwset_hash: Bytes,
}

/// A configuration transaction.
#[derive(Debug, Clone)]
pub struct ConfigTransaction {
    /// The configuration sequence number after this transaction.
    pub sequence: u64,
    /// The update that produced this configuration (absent in a genesis block).
    pub update: Option<common::ConfigUpdate>,
    /// The channel-level capabilities the configuration requires (`/Channel/Capabilities`, e.g. `V2_0`,
    /// `V3_0`), sorted: they tell which Fabric generation runs the channel.
    pub channel_capabilities: Vec<String>,
    /// The ordering service's consensus type (`/Channel/Orderer/ConsensusType`: `etcdraft`, `BFT`, ...), when
    /// the configuration has an orderer group.
    pub consensus_type: Option<String>,
}

impl ConfigTransaction {
    /// Whether the channel configuration requires `capability` (e.g. `V3_0`).
    pub fn has_channel_capability(&self, capability: &str) -> bool {
        self.channel_capabilities.iter().any(|c| c == capability)
    }
}

/// Decodes `common.Block` bytes. See the module documentation for what fails the block and what fails one
/// transaction.
pub fn decode_block(bytes: &[u8]) -> Result<Block, DecodeError> {
    BlockDecoder::default().decode(bytes)
}

/// As [`decode_block`], without copying when the caller already holds the bytes in a [`Bytes`].
pub fn decode_block_bytes(bytes: Bytes) -> Result<Block, DecodeError> {
    BlockDecoder::default().decode_bytes(bytes)
}

/// As [`decode_block`], for a block the Deliver client already parsed (`DeliverResponse.block`).
pub fn decode_block_message(block: common::Block) -> Result<Block, DecodeError> {
    BlockDecoder::default().decode_message(block)
}

/// Decodes the blocks of one stream, remembering creators from block to block: a channel's transactions come
/// from a few identities, so each certificate is parsed once rather than once per block.
#[derive(Debug, Default)]
pub struct BlockDecoder {
    /// Parsed creators by their serialized identity bytes.
    creators: CreatorCache,
}

impl BlockDecoder {
    /// A decoder with an empty creator cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `common.Block` bytes.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Block, DecodeError> {
        self.decode_bytes(Bytes::copy_from_slice(bytes))
    }

    /// Decodes `common.Block` bytes without copying them.
    pub fn decode_bytes(&mut self, bytes: Bytes) -> Result<Block, DecodeError> {
        let block = common::Block::decode(bytes)
            .map_err(|e| malformed(BlockRef(None), &At::Block, "common.Block", e))?;
        self.decode_message(block)
    }

    /// Decodes a parsed `common.Block`.
    pub fn decode_message(&mut self, block: common::Block) -> Result<Block, DecodeError> {
        decode_parsed(block, &mut self.creators)
    }
}

fn decode_parsed(block: common::Block, creators: &mut CreatorCache) -> Result<Block, DecodeError> {
    let unknown = BlockRef(None);
    let header = block.header.ok_or(DecodeError::Missing {
        block: unknown,
        path: "header".into(),
        message: "common.BlockHeader",
    })?;
    let at = BlockRef(Some(header.number));
    let hash = header_hash(header.number, &header.previous_hash, &header.data_hash);
    let envelopes = block.data.map(|d| d.data).unwrap_or_default();
    let metadata = block.metadata.map(|m| m.metadata).unwrap_or_default();
    let last_config = last_config_index(&metadata);
    let filter = metadata
        .get(TRANSACTIONS_FILTER)
        .cloned()
        .unwrap_or_default();
    let tx_count = envelopes.len();
    let transactions = envelopes
        .iter()
        .enumerate()
        .map(|(index, envelope)| {
            let outcome = validation_code(at, &filter, index, tx_count)
                .and_then(|code| decode_transaction(at, index, envelope.clone(), code, creators));
            Transaction { index, outcome }
        })
        .collect();
    Ok(Block {
        number: header.number,
        hash,
        previous_hash: header.previous_hash,
        data_hash: header.data_hash,
        last_config,
        envelopes,
        transactions,
    })
}

/// The last config block a block's metadata (`metadata.metadata`) names: the `OrdererBlockMetadata` in
/// SIGNATURES, else (an empty value, written by orderers before Fabric 1.4.1) the `LastConfig` in the
/// LAST_CONFIG entry.
pub fn last_config_index(metadata: &[Bytes]) -> Option<u64> {
    let signatures = common::Metadata::decode(metadata.get(SIGNATURES)?.clone()).ok()?;
    if !signatures.value.is_empty() {
        let orderer = common::OrdererBlockMetadata::decode(signatures.value).ok()?;
        return orderer.last_config.map(|c| c.index);
    }
    let last_config = common::Metadata::decode(metadata.get(LAST_CONFIG)?.clone()).ok()?;
    common::LastConfig::decode(last_config.value)
        .ok()
        .map(|c| c.index)
}

fn validation_code(
    block: BlockRef,
    filter: &[u8],
    index: usize,
    tx_count: usize,
) -> Result<TxValidationCode, DecodeError> {
    if filter.is_empty() {
        return Ok(TxValidationCode::NotValidated);
    }
    let code = *filter.get(index).ok_or(DecodeError::FilterTooShort {
        block,
        index,
        filter_len: filter.len(),
        tx_count,
    })?;
    TxValidationCode::try_from(i32::from(code)).map_err(|_| DecodeError::UnknownValidationCode {
        block,
        index,
        code,
    })
}

/// Where a message lies in the block (`data[3].payload.data.actions[0].payload`), written out only for an error:
/// decoding a valid block builds no path text.
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    /// The block itself (no path).
    Block,
    /// `data[i]`: the block's i-th envelope.
    Data(usize),
    /// `<parent>.<field>`.
    Field(&'a At<'a>, &'static str),
    /// `<parent>.<field>[i]`.
    Item(&'a At<'a>, &'static str, usize),
}

impl At<'_> {
    fn field(&self, name: &'static str) -> At<'_> {
        At::Field(self, name)
    }

    fn item(&self, name: &'static str, index: usize) -> At<'_> {
        At::Item(self, name, index)
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Block => Ok(()),
            At::Data(index) => write!(f, "data[{index}]"),
            At::Field(parent, name) => write!(f, "{parent}.{name}"),
            At::Item(parent, name, index) => write!(f, "{parent}.{name}[{index}]"),
        }
    }
}

fn malformed(
    block: BlockRef,
    path: &At<'_>,
    message: &'static str,
    e: prost::DecodeError,
) -> DecodeError {
    DecodeError::Malformed {
        block,
        path: path.to_string(),
        message,
        reason: e.to_string(),
    }
}

/// Decodes `bytes` as `M`, naming `path` on failure.
fn message<M: Message + Default>(
    block: BlockRef,
    path: &At<'_>,
    name: &'static str,
    bytes: Bytes,
) -> Result<M, DecodeError> {
    M::decode(bytes).map_err(|e| malformed(block, path, name, e))
}

/// Creators repeat across transactions: parse each distinct serialized identity once.
#[derive(Debug, Default)]
struct CreatorCache {
    /// The last creator found: consecutive transactions mostly share one, and comparing the bytes is much
    /// cheaper than hashing them.
    last: Option<(Bytes, Arc<Creator>)>,
    seen: HashMap<Bytes, Arc<Creator>>,
}

/// More distinct creators than this (a very large network, or crafted blocks) start the cache afresh, so it
/// stays small.
const MAX_CACHED_CREATORS: usize = 1024;

impl CreatorCache {
    fn get(&mut self, serialized: &Bytes) -> Option<Arc<Creator>> {
        if serialized.is_empty() {
            return None;
        }
        if let Some((bytes, creator)) = &self.last
            && bytes == serialized
        {
            return Some(creator.clone());
        }
        if let Some(found) = self.seen.get(serialized) {
            self.last = Some((serialized.clone(), found.clone()));
            return Some(found.clone());
        }
        let creator = Arc::new(parse_creator(serialized)?);
        self.last = Some((serialized.clone(), creator.clone()));
        if self.seen.len() >= MAX_CACHED_CREATORS {
            self.seen.clear();
        }
        self.seen.insert(serialized.clone(), creator.clone());
        Some(creator)
    }
}

/// A serialized identity that is not even a `msp.SerializedIdentity` has no usable creator.
fn parse_creator(serialized: &Bytes) -> Option<Creator> {
    let identity = msp::SerializedIdentity::decode(serialized.clone()).ok()?;
    Some(Creator {
        common_name: certificate_common_name(&identity.id_bytes),
        msp_id: identity.mspid,
    })
}

/// The subject common name of a PEM (or DER) X.509 certificate.
pub fn certificate_common_name(cert: &[u8]) -> Option<String> {
    use x509_cert::Certificate;
    use x509_cert::der::{Decode, DecodePem};
    let parsed = Certificate::from_pem(cert)
        .or_else(|_| Certificate::from_der(cert))
        .ok()?;
    let cn = parsed.tbs_certificate().subject().common_name().ok()??;
    Some(cn.value().into_owned())
}

fn decode_transaction(
    block: BlockRef,
    index: usize,
    envelope_bytes: Bytes,
    validation_code: TxValidationCode,
    creators: &mut CreatorCache,
) -> Result<DecodedTransaction, DecodeError> {
    let data = At::Data(index);
    let envelope: common::Envelope = message(block, &data, "common.Envelope", envelope_bytes)?;
    let at = data.field("payload");
    if envelope.payload.is_empty() {
        return Err(missing(block, &at, "common.Payload"));
    }
    let payload_bytes = envelope.payload.clone();
    let payload: common::Payload = message(block, &at, "common.Payload", envelope.payload)?;
    let header = payload
        .header
        .ok_or_else(|| missing(block, &at.field("header"), "common.Header"))?;
    let ch_path = at.field("header.channel_header");
    if header.channel_header.is_empty() {
        return Err(missing(block, &ch_path, "common.ChannelHeader"));
    }
    let channel_header: common::ChannelHeader = message(
        block,
        &ch_path,
        "common.ChannelHeader",
        header.channel_header,
    )?;
    let sh_path = at.field("header.signature_header");
    let signature_header: common::SignatureHeader = message(
        block,
        &sh_path,
        "common.SignatureHeader",
        header.signature_header,
    )?;
    let creator = creators.get(&signature_header.creator);

    let data_path = at.field("data");
    let mut actions = Vec::new();
    let mut config = None;
    match HeaderType::try_from(channel_header.r#type) {
        Ok(HeaderType::EndorserTransaction) => {
            actions = decode_endorser_transaction(block, &data_path, payload.data)?;
        }
        Ok(HeaderType::Config) => {
            config = Some(decode_config_transaction(block, &data_path, payload.data)?);
        }
        // Other kinds (MESSAGE, CONFIG_UPDATE, ORDERER_TRANSACTION, ...) carry no chaincode actions; their
        // payload is still shown in full by the protolator JSON.
        _ => {}
    }

    Ok(DecodedTransaction {
        validation_code,
        header_type: channel_header.r#type,
        channel_id: channel_header.channel_id,
        tx_id: channel_header.tx_id,
        timestamp: channel_header.timestamp,
        creator,
        payload: payload_bytes,
        actions,
        config,
    })
}

fn missing(block: BlockRef, path: &At<'_>, message: &'static str) -> DecodeError {
    DecodeError::Missing {
        block,
        path: path.to_string(),
        message,
    }
}

fn decode_endorser_transaction(
    block: BlockRef,
    at: &At<'_>,
    data: Bytes,
) -> Result<Vec<ChaincodeInvocation>, DecodeError> {
    let transaction: protos::Transaction = message(block, at, "protos.Transaction", data)?;
    transaction
        .actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| decode_action(block, &at.item("actions", i), action))
        .collect()
}

fn decode_action(
    block: BlockRef,
    at: &At<'_>,
    action: protos::TransactionAction,
) -> Result<ChaincodeInvocation, DecodeError> {
    let at = at.field("payload");
    if action.payload.is_empty() {
        return Err(missing(block, &at, "protos.ChaincodeActionPayload"));
    }
    let payload: protos::ChaincodeActionPayload =
        message(block, &at, "protos.ChaincodeActionPayload", action.payload)?;

    let proposal_path = at.field("chaincode_proposal_payload");
    let proposal: protos::ChaincodeProposalPayload = message(
        block,
        &proposal_path,
        "protos.ChaincodeProposalPayload",
        payload.chaincode_proposal_payload,
    )?;
    let input_path = proposal_path.field("input");
    let invocation: protos::ChaincodeInvocationSpec = message(
        block,
        &input_path,
        "protos.ChaincodeInvocationSpec",
        proposal.input,
    )?;
    let spec = invocation.chaincode_spec.unwrap_or_default();
    let args = spec.input.map(|i| i.args).unwrap_or_default();
    let proposed_chaincode = spec.chaincode_id.map(|id| id.name).unwrap_or_default();

    let endorsed_path = at.field("action");
    let endorsed = payload
        .action
        .ok_or_else(|| missing(block, &endorsed_path, "protos.ChaincodeEndorsedAction"))?;
    let prp_path = endorsed_path.field("proposal_response_payload");
    if endorsed.proposal_response_payload.is_empty() {
        return Err(missing(block, &prp_path, "protos.ProposalResponsePayload"));
    }
    let response_payload: protos::ProposalResponsePayload = message(
        block,
        &prp_path,
        "protos.ProposalResponsePayload",
        endorsed.proposal_response_payload,
    )?;
    let ext_path = prp_path.field("extension");
    let chaincode_action: protos::ChaincodeAction = message(
        block,
        &ext_path,
        "protos.ChaincodeAction",
        response_payload.extension,
    )?;

    let event = if chaincode_action.events.is_empty() {
        None
    } else {
        Some(message(
            block,
            &ext_path.field("events"),
            "protos.ChaincodeEvent",
            chaincode_action.events,
        )?)
    };
    let rwsets = decode_rwsets(block, &ext_path.field("results"), chaincode_action.results)?;
    let (chaincode, chaincode_version) = match chaincode_action.chaincode_id {
        Some(id) if !id.name.is_empty() => (id.name, id.version),
        Some(id) => (proposed_chaincode, id.version),
        None => (proposed_chaincode, String::new()),
    };
    Ok(ChaincodeInvocation {
        chaincode,
        chaincode_version,
        args,
        event,
        response: chaincode_action.response,
        rwsets,
    })
}

fn decode_rwsets(
    block: BlockRef,
    at: &At<'_>,
    results: Bytes,
) -> Result<Vec<NamespaceRwSet>, DecodeError> {
    let set: rwset::TxReadWriteSet = message(block, at, "rwset.TxReadWriteSet", results)?;
    set.ns_rwset
        .into_iter()
        .enumerate()
        .map(|(i, ns)| {
            let ns_path = at.item("ns_rwset", i);
            let kv = message(block, &ns_path.field("rwset"), "kvrwset.KVRWSet", ns.rwset)?;
            let collections = ns
                .collection_hashed_rwset
                .into_iter()
                .enumerate()
                .map(|(j, c)| {
                    let collection = ns_path.item("collection_hashed_rwset", j);
                    let path = collection.field("hashed_rwset");
                    Ok(CollectionHashedRwSet {
                        hashed: message(block, &path, "kvrwset.HashedRWSet", c.hashed_rwset)?,
                        collection: c.collection_name,
                        pvt_rwset_hash: c.pvt_rwset_hash,
                    })
                })
                .collect::<Result<_, DecodeError>>()?;
            Ok(NamespaceRwSet {
                namespace: ns.namespace,
                kv,
                collections,
            })
        })
        .collect()
}

fn decode_config_transaction(
    block: BlockRef,
    at: &At<'_>,
    data: Bytes,
) -> Result<ConfigTransaction, DecodeError> {
    let envelope: common::ConfigEnvelope = message(block, at, "common.ConfigEnvelope", data)?;
    let sequence = envelope.config.as_ref().map_or(0, |c| c.sequence);
    let channel_group = envelope.config.and_then(|c| c.channel_group);
    let channel_capabilities = channel_group
        .as_ref()
        .map(capability_names)
        .unwrap_or_default();
    let consensus_type = channel_group
        .as_ref()
        .and_then(|g| g.groups.get("Orderer"))
        .and_then(|g| g.values.get("ConsensusType"))
        .and_then(|v| orderer::ConsensusType::decode(v.value.clone()).ok())
        .map(|c| c.r#type);
    let update = match envelope.last_update {
        None => None,
        Some(last_update) => {
            let lu_path = at.field("last_update.payload");
            let payload: common::Payload =
                message(block, &lu_path, "common.Payload", last_update.payload)?;
            let cue_path = lu_path.field("data");
            let update_envelope: common::ConfigUpdateEnvelope = message(
                block,
                &cue_path,
                "common.ConfigUpdateEnvelope",
                payload.data,
            )?;
            Some(message(
                block,
                &cue_path.field("config_update"),
                "common.ConfigUpdate",
                update_envelope.config_update,
            )?)
        }
    };
    Ok(ConfigTransaction {
        sequence,
        update,
        channel_capabilities,
        consensus_type,
    })
}

/// The sorted names in a group's `Capabilities` value (none when the value is absent or unreadable: a config
/// that requires nothing).
fn capability_names(group: &common::ConfigGroup) -> Vec<String> {
    let mut names: Vec<String> = group
        .values
        .get("Capabilities")
        .and_then(|v| common::Capabilities::decode(v.value.clone()).ok())
        .map(|c| c.capabilities.into_keys().collect())
        .unwrap_or_default();
    names.sort_unstable();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_malformed_block_without_a_number() {
        let err = decode_block(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Malformed {
                    block: BlockRef(None),
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("block (number unknown): "),
            "{err}"
        );
    }

    #[test]
    fn a_block_without_header_is_missing_its_header() {
        let err = decode_block(&[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "block (number unknown): header: missing (expected a common.BlockHeader)"
        );
    }
}
