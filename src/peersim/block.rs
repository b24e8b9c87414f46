//! Building Fabric blocks (pure): the header hash chain, the data hash, the block metadata, a `taskmgr`-like
//! chaincode's transactions and configuration updates, signed by a test identity. Times and nonces come in as
//! arguments.
//!
//! Generated blocks follow the style of the block they chain onto: after a SmartBFT block (signatures that
//! name their orderer by an identifier header, Fabric v3) the block signature carries an identifier header
//! (consenter 1) too; after an etcdraft block, a signature header. The SmartBFT view metadata is left empty.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::fabric::decode;
use crate::fabric::identity::Identity;
use crate::fabric::proto::{common, kvrwset, orderer, protos, rwset};

/// The generated chaincode's name.
pub const CHAINCODE: &str = "taskmgr";
/// The version the generated chaincode action reports.
const CHAINCODE_VERSION: &str = "1.0";
/// The consenter id that signs generated SmartBFT-style blocks.
const BFT_SIGNER_ID: u32 = 1;

/// The hash of a block header, as Fabric computes it (the decoder's rule: the simulator must chain blocks exactly
/// as the decoder checks them).
pub fn header_hash(header: &common::BlockHeader) -> [u8; 32] {
    decode::header_hash(header.number, &header.previous_hash, &header.data_hash)
}

/// The data hash of a block, as Fabric computes it (the decoder's [`decode::block_data_hash`]).
pub fn data_hash(envelopes: &[Bytes]) -> [u8; 32] {
    decode::block_data_hash(envelopes)
}

/// `block` as a tampering peer sends it (see [`crate::peersim::Tampering`]); a block that does not decode, or
/// has no data to alter, is returned as it is.
pub fn tamper(block: &Bytes, how: crate::peersim::Tampering) -> Bytes {
    let Ok(mut decoded) = common::Block::decode(block.as_ref()) else {
        return block.clone();
    };
    match how {
        crate::peersim::Tampering::Data => {
            let Some(envelope) = decoded.data.as_mut().and_then(|d| d.data.first_mut()) else {
                return block.clone();
            };
            let mut bytes = envelope.to_vec();
            // The last byte sits inside the envelope's signature: the envelope still decodes, the hash does not
            // match.
            if let Some(last) = bytes.last_mut() {
                *last ^= 0x01;
            }
            *envelope = bytes.into();
        }
        crate::peersim::Tampering::PreviousHash => {
            if let Some(header) = decoded.header.as_mut() {
                header.previous_hash = Sha256::digest(b"a block that never was").to_vec().into();
            }
        }
    }
    decoded.encode_to_vec().into()
}

/// What the next block must chain onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    /// The last block's number.
    pub number: u64,
    /// The last block's header hash: the next block's `previous_hash`.
    pub hash: [u8; 32],
    /// The number of the last config block, repeated in every block's metadata.
    pub last_config: u64,
    /// The last block's COMMIT_HASH, folded into the next one.
    pub commit_hash: Vec<u8>,
    /// Whether the last block was signed SmartBFT-style (identifier headers): the next one is too.
    pub bft: bool,
}

impl ChainTip {
    /// Reads the tip from a block's raw bytes.
    pub fn of_block(block: &[u8]) -> Result<ChainTip, String> {
        let block =
            common::Block::decode(block).map_err(|e| format!("not a common.Block ({e})"))?;
        let header = block.header.ok_or("common.Block without a header")?;
        let metadata = block.metadata.map(|m| m.metadata).unwrap_or_default();
        let last_config = decode::last_config_index(&metadata).unwrap_or(0);
        let commit_hash = metadata
            .get(common::BlockMetadataIndex::CommitHash as usize)
            .and_then(|m| common::Metadata::decode(m.clone()).ok())
            .map(|m| m.value.to_vec())
            .unwrap_or_default();
        let bft = metadata
            .get(common::BlockMetadataIndex::Signatures as usize)
            .and_then(|m| common::Metadata::decode(m.clone()).ok())
            .is_some_and(|m| {
                m.signatures
                    .iter()
                    .any(|s| s.signature_header.is_empty() && !s.identifier_header.is_empty())
            });
        Ok(ChainTip {
            number: header.number,
            hash: header_hash(&header),
            last_config,
            commit_hash,
            bft,
        })
    }
}

/// What a generated transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskAction {
    /// `createTask <id> <json>`: writes the task, emits `event-create-task`.
    Create { task: String },
    /// `completeTask <id>`: reads and rewrites the task, emits `event-complete-task`.
    Complete { task: String },
}

/// One generated transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTransaction {
    /// What the transaction invokes, which decides its arguments, writes and event.
    pub action: TaskAction,
    /// Whether the transaction also writes `special_key` = `"10"` (the BaaS filter examples select on it).
    pub writes_special_key: bool,
    /// The validation code the block's TRANSACTIONS_FILTER records for it.
    pub validation_code: protos::TxValidationCode,
}

/// Inputs of one generated block that are not derived from the chain: when and with which nonces.
#[derive(Debug, Clone)]
pub struct BlockInputs<'a> {
    /// The channel named in every transaction's header.
    pub channel_id: &'a str,
    /// Unix seconds and nanoseconds of the transactions.
    pub timestamp: prost_types::Timestamp,
    /// One 24-byte nonce per transaction (the tx id is derived from it).
    pub nonces: Vec<[u8; 24]>,
}

impl<'a> BlockInputs<'a> {
    /// Inputs of a reproducible block: a fixed time (Unix seconds) and one fixed nonce.
    pub fn fixed(channel_id: &'a str, seconds: i64, nonce: [u8; 24]) -> Self {
        BlockInputs {
            channel_id,
            timestamp: prost_types::Timestamp { seconds, nanos: 0 },
            nonces: vec![nonce],
        }
    }
}

/// Builds the block after `tip` holding `transactions`, each signed by `signer`, and returns its bytes.
pub fn build_block(
    tip: &ChainTip,
    transactions: &[TaskTransaction],
    signer: &Identity,
    inputs: &BlockInputs<'_>,
) -> Bytes {
    let envelopes: Vec<(Bytes, protos::TxValidationCode)> = transactions
        .iter()
        .zip(&inputs.nonces)
        .map(|(tx, nonce)| (task_envelope(tx, signer, nonce, inputs), tx.validation_code))
        .collect();
    build_block_of(tip, &envelopes, signer, inputs)
}

/// A generated transaction's envelope, signed by `signer`, its id derived from `nonce`.
pub fn task_envelope(
    tx: &TaskTransaction,
    signer: &Identity,
    nonce: &[u8; 24],
    inputs: &BlockInputs<'_>,
) -> Bytes {
    let creator = Bytes::from(signer.serialized());
    transaction_envelope(tx, signer, &creator, nonce, inputs)
}

/// A MESSAGE envelope (header type 0) without a transaction id, as a client may submit and an orderer may put in a
/// block; a peer marks it BAD_COMMON_HEADER. Its `data` is `text`.
pub fn message_envelope(signer: &Identity, inputs: &BlockInputs<'_>, text: &str) -> Bytes {
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::Message as i32,
        version: 0,
        timestamp: Some(inputs.timestamp),
        channel_id: inputs.channel_id.to_owned(),
        tx_id: String::new(),
        epoch: 0,
        extension: Bytes::new(),
        tls_cert_hash: Bytes::new(),
    };
    let signature_header = common::SignatureHeader {
        creator: Bytes::from(signer.serialized()),
        nonce: Bytes::new(),
    };
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: channel_header.encode_to_vec().into(),
            signature_header: signature_header.encode_to_vec().into(),
        }),
        data: Bytes::copy_from_slice(text.as_bytes()),
    }
    .encode_to_vec();
    let signature = signer.sign(&payload);
    common::Envelope {
        payload: payload.into(),
        signature: signature.into(),
    }
    .encode_to_vec()
    .into()
}

/// Builds the block after `tip` holding prepared envelopes with the validation codes a peer recorded for them,
/// signed by `signer`. `inputs.nonces[0]` (or zeros) is the block signature's nonce.
pub fn build_block_of(
    tip: &ChainTip,
    transactions: &[(Bytes, protos::TxValidationCode)],
    signer: &Identity,
    inputs: &BlockInputs<'_>,
) -> Bytes {
    let envelopes = transactions
        .iter()
        .map(|(envelope, _)| envelope.clone())
        .collect();
    let filter = transactions
        .iter()
        .map(|(_, code)| *code as i32 as u8)
        .collect();
    let nonce = inputs.nonces.first().copied().unwrap_or([0; 24]);
    seal_block(tip, envelopes, filter, tip.last_config, signer, &nonce)
}

/// Puts `envelopes` in the block after `tip`: the header chained onto `tip` with their data hash, and all five
/// metadata entries (the orderer's signature over the last config index, the last config, the validation
/// codes in `filter`, the deprecated ORDERER entry empty, a stand-in COMMIT_HASH).
fn seal_block(
    tip: &ChainTip,
    envelopes: Vec<Bytes>,
    filter: Vec<u8>,
    last_config: u64,
    signer: &Identity,
    nonce: &[u8; 24],
) -> Bytes {
    let creator = Bytes::from(signer.serialized());
    let header = common::BlockHeader {
        number: tip.number + 1,
        previous_hash: Bytes::copy_from_slice(&tip.hash),
        data_hash: Bytes::copy_from_slice(&data_hash(&envelopes)),
    };
    let commit_hash = {
        let mut hasher = Sha256::new();
        hasher.update(&tip.commit_hash);
        hasher.update(&filter);
        hasher.update(&header.data_hash);
        hasher.finalize().to_vec()
    };
    let last_config = common::LastConfig { index: last_config };
    let signatures = {
        let value = common::OrdererBlockMetadata {
            last_config: Some(last_config),
            consenter_metadata: Bytes::new(),
        }
        .encode_to_vec();
        // Fabric signs value ‖ (signature or identifier) header ‖ the header's DER bytes.
        let (signature_header, identifier_header) = if tip.bft {
            let identifier = common::IdentifierHeader {
                identifier: BFT_SIGNER_ID,
                nonce: Bytes::copy_from_slice(nonce),
            };
            (Vec::new(), identifier.encode_to_vec())
        } else {
            let signature_header = common::SignatureHeader {
                creator: creator.clone(),
                nonce: Bytes::copy_from_slice(nonce),
            };
            (signature_header.encode_to_vec(), Vec::new())
        };
        let header_bytes =
            decode::header_bytes(header.number, &header.previous_hash, &header.data_hash);
        let signed = [
            &value[..],
            &signature_header[..],
            &identifier_header[..],
            &header_bytes[..],
        ]
        .concat();
        common::Metadata {
            value: value.into(),
            signatures: vec![common::MetadataSignature {
                signature_header: signature_header.into(),
                signature: signer.sign(&signed).into(),
                identifier_header: identifier_header.into(),
            }],
        }
    };
    let metadata = vec![
        signatures.encode_to_vec().into(),
        common::Metadata {
            value: last_config.encode_to_vec().into(),
            signatures: Vec::new(),
        }
        .encode_to_vec()
        .into(),
        filter.into(),
        Bytes::new(),
        common::Metadata {
            value: commit_hash.into(),
            signatures: Vec::new(),
        }
        .encode_to_vec()
        .into(),
    ];
    common::Block {
        header: Some(header),
        data: Some(common::BlockData { data: envelopes }),
        metadata: Some(common::BlockMetadata { metadata }),
    }
    .encode_to_vec()
    .into()
}

/// The configuration a config block holds (its first transaction's `ConfigEnvelope.config`).
pub fn block_config(block: &[u8]) -> Result<common::Config, String> {
    let block = common::Block::decode(block).map_err(|e| format!("not a common.Block ({e})"))?;
    let envelope = block
        .data
        .and_then(|d| d.data.into_iter().next())
        .ok_or("the block has no transaction")?;
    let envelope = common::Envelope::decode(envelope).map_err(|e| format!("data[0]: {e}"))?;
    let payload =
        common::Payload::decode(envelope.payload).map_err(|e| format!("data[0].payload: {e}"))?;
    common::ConfigEnvelope::decode(payload.data)
        .ok()
        .and_then(|e| e.config)
        .ok_or_else(|| "data[0] is not a config transaction".to_owned())
}

/// Builds the config block after `tip`: `current` (the channel's configuration) changed to `updated`, as a
/// channel admin's signed config update (read and write sets as Fabric's `configtxlator compute_update` makes
/// them) wrapped by the orderer in a CONFIG transaction. `signer` plays both. The changed values and policies
/// get their next version and the configuration its next sequence number; the block is its own last config.
pub fn build_config_block(
    tip: &ChainTip,
    current: &common::Config,
    mut updated: common::Config,
    signer: &Identity,
    inputs: &BlockInputs<'_>,
) -> Result<Bytes, String> {
    let original = current.channel_group.clone().unwrap_or_default();
    let mut group = updated.channel_group.take().unwrap_or_default();
    let (read_set, write_set) =
        compute_group_update(&original, &mut group).ok_or("the configuration did not change")?;
    let config = common::Config {
        sequence: current.sequence + 1,
        channel_group: Some(group),
    };
    let creator = Bytes::from(signer.serialized());
    let nonce = inputs.nonces.first().copied().unwrap_or([0; 24]);
    let config_update = common::ConfigUpdate {
        channel_id: inputs.channel_id.to_owned(),
        read_set: Some(read_set),
        write_set: Some(write_set),
        isolated_data: HashMap::new(),
    }
    .encode_to_vec();
    let admin_header = common::SignatureHeader {
        creator: creator.clone(),
        nonce: Bytes::copy_from_slice(&nonce),
    }
    .encode_to_vec();
    let update_envelope = common::ConfigUpdateEnvelope {
        signatures: vec![common::ConfigSignature {
            signature: signer
                .sign(&[&admin_header[..], &config_update[..]].concat())
                .into(),
            signature_header: admin_header.into(),
        }],
        config_update: config_update.into(),
    };
    let last_update = signed_envelope(
        common::HeaderType::ConfigUpdate,
        update_envelope.encode_to_vec(),
        signer,
        &creator,
        &nonce,
        inputs,
    );
    let config_envelope = common::ConfigEnvelope {
        config: Some(config),
        last_update: Some(common::Envelope::decode(last_update).map_err(|e| e.to_string())?),
    };
    let orderer_nonce: [u8; 24] = Sha256::digest(nonce)[..24]
        .try_into()
        .map_err(|_| "nonce")?;
    let envelope = signed_envelope(
        common::HeaderType::Config,
        config_envelope.encode_to_vec(),
        signer,
        &creator,
        &orderer_nonce,
        inputs,
    );
    Ok(seal_block(
        tip,
        vec![envelope],
        vec![protos::TxValidationCode::Valid as i32 as u8],
        tip.number + 1,
        signer,
        &nonce,
    ))
}

/// Edits the SmartBFT options of a BFT channel's configuration (`/Channel/Orderer/ConsensusType`'s metadata),
/// as a BFT config update does, e.g. a new `request_batch_max_interval`.
pub fn edit_smartbft_options(
    config: &mut common::Config,
    edit: impl FnOnce(&mut orderer::smartbft::Options),
) -> Result<(), String> {
    let value = config
        .channel_group
        .as_mut()
        .and_then(|g| g.groups.get_mut("Orderer"))
        .and_then(|g| g.values.get_mut("ConsensusType"))
        .ok_or("the configuration has no /Channel/Orderer/ConsensusType")?;
    let mut consensus = orderer::ConsensusType::decode(value.value.clone())
        .map_err(|e| format!("ConsensusType: {e}"))?;
    if consensus.r#type != "BFT" {
        return Err(format!(
            "the consensus type is `{}`, not `BFT`",
            consensus.r#type
        ));
    }
    let mut options = orderer::smartbft::Options::decode(consensus.metadata.clone())
        .map_err(|e| format!("SmartBFT options: {e}"))?;
    edit(&mut options);
    consensus.metadata = options.encode_to_vec().into();
    value.value = consensus.encode_to_vec().into();
    Ok(())
}

/// An envelope of `header_type` around `data`, without a transaction id (as the orderer and `peer channel
/// update` make config transactions), signed by `signer`.
fn signed_envelope(
    header_type: common::HeaderType,
    data: Vec<u8>,
    signer: &Identity,
    creator: &Bytes,
    nonce: &[u8; 24],
    inputs: &BlockInputs<'_>,
) -> Bytes {
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: common::ChannelHeader {
                r#type: header_type as i32,
                timestamp: Some(inputs.timestamp),
                channel_id: inputs.channel_id.to_owned(),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            signature_header: common::SignatureHeader {
                creator: creator.clone(),
                nonce: Bytes::copy_from_slice(nonce),
            }
            .encode_to_vec()
            .into(),
        }),
        data: data.into(),
    }
    .encode_to_vec();
    common::Envelope {
        signature: signer.sign(&payload).into(),
        payload: payload.into(),
    }
    .encode_to_vec()
    .into()
}

/// The read and write sets of a config update from `original` to `updated`, as Fabric's `update.Compute`
/// makes them; `None` when nothing changed. `updated` gets the versions the new configuration has: a changed
/// value or policy its next version, a group whose members were added or removed its next version.
fn compute_group_update(
    original: &common::ConfigGroup,
    updated: &mut common::ConfigGroup,
) -> Option<(common::ConfigGroup, common::ConfigGroup)> {
    let mut read = common::ConfigGroup {
        version: original.version,
        ..Default::default()
    };
    let mut write = read.clone();
    let (same_values, values_changed) =
        compute_members_update(&original.values, &mut updated.values, &mut write.values);
    let (same_policies, policies_changed) = compute_members_update(
        &original.policies,
        &mut updated.policies,
        &mut write.policies,
    );
    let mut members_changed = values_changed || policies_changed;
    let mut same_groups = HashMap::new();
    for (key, group) in &mut updated.groups {
        match original.groups.get(key) {
            Some(old) => match compute_group_update(old, group) {
                Some((group_read, group_write)) => {
                    read.groups.insert(key.clone(), group_read);
                    write.groups.insert(key.clone(), group_write);
                }
                None => {
                    same_groups.insert(
                        key.clone(),
                        common::ConfigGroup {
                            version: old.version,
                            ..Default::default()
                        },
                    );
                }
            },
            None => {
                members_changed = true;
                write.groups.insert(key.clone(), group.clone());
            }
        }
    }
    members_changed |= original
        .groups
        .keys()
        .any(|k| !updated.groups.contains_key(k));
    if members_changed {
        // The whole membership is rewritten: unchanged members are named by version, in both sets.
        read.values.extend(same_values.clone());
        write.values.extend(same_values);
        read.policies.extend(same_policies.clone());
        write.policies.extend(same_policies);
        read.groups.extend(same_groups.clone());
        write.groups.extend(same_groups);
        updated.version = original.version + 1;
        write.version = updated.version;
        write.mod_policy = updated.mod_policy.clone();
        return Some((read, write));
    }
    updated.version = original.version;
    if write.values.is_empty() && write.policies.is_empty() && write.groups.is_empty() {
        return None;
    }
    Some((read, write))
}

/// The values or the policies of a group, for [`compute_members_update`].
trait Member: Clone + Default {
    fn version(&self) -> u64;
    fn set_version(&mut self, version: u64);
    /// Same content and modification policy: the member did not change.
    fn same_as(&self, other: &Self) -> bool;
}

impl Member for common::ConfigValue {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn same_as(&self, other: &Self) -> bool {
        self.value == other.value && self.mod_policy == other.mod_policy
    }
}

impl Member for common::ConfigPolicy {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn same_as(&self, other: &Self) -> bool {
        self.policy == other.policy && self.mod_policy == other.mod_policy
    }
}

/// One kind of a group's members (values or policies) from `original` to `updated`: changed and added members
/// go to `write` (changed ones at their next version, added ones at version 0); returns the unchanged ones as
/// version-only placeholders, and whether members were added or removed.
fn compute_members_update<M: Member>(
    original: &HashMap<String, M>,
    updated: &mut HashMap<String, M>,
    write: &mut HashMap<String, M>,
) -> (HashMap<String, M>, bool) {
    let mut same = HashMap::new();
    let mut added = false;
    for (key, member) in updated.iter_mut() {
        match original.get(key) {
            Some(old) if old.same_as(member) => {
                member.set_version(old.version());
                let mut placeholder = M::default();
                placeholder.set_version(old.version());
                same.insert(key.clone(), placeholder);
            }
            Some(old) => {
                member.set_version(old.version() + 1);
                write.insert(key.clone(), member.clone());
            }
            None => {
                added = true;
                member.set_version(0);
                write.insert(key.clone(), member.clone());
            }
        }
    }
    let removed = original.keys().any(|k| !updated.contains_key(k));
    (same, added || removed)
}

/// A transaction id as Fabric derives it: hex(SHA-256(nonce ‖ creator)).
pub fn transaction_id(nonce: &[u8], creator: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(nonce);
    hasher.update(creator);
    hex::encode(hasher.finalize())
}

fn transaction_envelope(
    tx: &TaskTransaction,
    signer: &Identity,
    creator: &Bytes,
    nonce: &[u8; 24],
    inputs: &BlockInputs<'_>,
) -> Bytes {
    let tx_id = transaction_id(nonce, creator);
    let chaincode_id = protos::ChaincodeId {
        path: String::new(),
        name: CHAINCODE.to_owned(),
        version: String::new(),
    };
    let owner = signer
        .certificate()
        .common_name()
        .unwrap_or_else(|| signer.msp_id().to_string());
    let created_at = inputs.timestamp.seconds;
    let (args, event_name, event_payload, task, task_value, reads_task) = match &tx.action {
        TaskAction::Create { task } => {
            let spec = serde_json::json!({ "title": format!("Task {}", task.trim_start_matches("task-")), "owner": owner });
            let value = serde_json::json!({
                "taskId": task, "title": spec["title"], "owner": owner, "status": "created", "createdAt": created_at,
            });
            (
                vec!["createTask".to_owned(), task.clone(), spec.to_string()],
                "event-create-task",
                serde_json::json!({ "taskId": task, "owner": owner, "status": "created", "txId": tx_id }),
                task.clone(),
                value,
                false,
            )
        }
        TaskAction::Complete { task } => {
            let value = serde_json::json!({
                "taskId": task, "owner": owner, "status": "completed", "completedAt": created_at,
            });
            (
                vec!["completeTask".to_owned(), task.clone()],
                "event-complete-task",
                serde_json::json!({ "taskId": task, "owner": owner, "status": "completed", "txId": tx_id }),
                task.clone(),
                value,
                true,
            )
        }
    };
    let mut writes = vec![kvrwset::KvWrite {
        key: task.clone(),
        is_delete: false,
        value: task_value.to_string().into(),
    }];
    if tx.writes_special_key {
        writes.push(kvrwset::KvWrite {
            key: "special_key".to_owned(),
            is_delete: false,
            value: Bytes::from_static(b"10"),
        });
    }
    let lifecycle_read = kvrwset::KvrwSet {
        reads: vec![kvrwset::KvRead {
            key: format!("namespaces/fields/{CHAINCODE}/Sequence"),
            version: Some(kvrwset::Version {
                block_num: 1,
                tx_num: 0,
            }),
        }],
        ..Default::default()
    };
    let task_rwset = kvrwset::KvrwSet {
        reads: if reads_task {
            vec![kvrwset::KvRead {
                key: task,
                version: Some(kvrwset::Version {
                    block_num: 1,
                    tx_num: 0,
                }),
            }]
        } else {
            Vec::new()
        },
        writes,
        ..Default::default()
    };
    let results = rwset::TxReadWriteSet {
        data_model: rwset::tx_read_write_set::DataModel::Kv as i32,
        ns_rwset: vec![
            rwset::NsReadWriteSet {
                namespace: "_lifecycle".to_owned(),
                rwset: lifecycle_read.encode_to_vec().into(),
                collection_hashed_rwset: Vec::new(),
            },
            rwset::NsReadWriteSet {
                namespace: CHAINCODE.to_owned(),
                rwset: task_rwset.encode_to_vec().into(),
                collection_hashed_rwset: Vec::new(),
            },
        ],
    };
    let event = protos::ChaincodeEvent {
        chaincode_id: CHAINCODE.to_owned(),
        tx_id: tx_id.clone(),
        event_name: event_name.to_owned(),
        payload: event_payload.to_string().into(),
    };
    let chaincode_action = protos::ChaincodeAction {
        results: results.encode_to_vec().into(),
        events: event.encode_to_vec().into(),
        response: Some(protos::Response {
            status: 200,
            message: String::new(),
            payload: Bytes::new(),
        }),
        chaincode_id: Some(protos::ChaincodeId {
            version: CHAINCODE_VERSION.to_owned(),
            ..chaincode_id.clone()
        }),
    };
    let header_extension = protos::ChaincodeHeaderExtension {
        chaincode_id: Some(chaincode_id.clone()),
    };
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::EndorserTransaction as i32,
        version: 0,
        timestamp: Some(inputs.timestamp),
        channel_id: inputs.channel_id.to_owned(),
        tx_id: tx_id.clone(),
        epoch: 0,
        extension: header_extension.encode_to_vec().into(),
        tls_cert_hash: Bytes::new(),
    }
    .encode_to_vec();
    let signature_header = common::SignatureHeader {
        creator: creator.clone(),
        nonce: Bytes::copy_from_slice(nonce),
    }
    .encode_to_vec();
    let proposal_payload = protos::ChaincodeProposalPayload {
        input: protos::ChaincodeInvocationSpec {
            chaincode_spec: Some(protos::ChaincodeSpec {
                r#type: protos::chaincode_spec::Type::Golang as i32,
                chaincode_id: Some(chaincode_id),
                input: Some(protos::ChaincodeInput {
                    args: args.into_iter().map(Bytes::from).collect(),
                    decorations: Default::default(),
                    is_init: false,
                }),
                timeout: 0,
            }),
        }
        .encode_to_vec()
        .into(),
        transient_map: Default::default(),
    }
    .encode_to_vec();
    let proposal_hash = {
        let mut hasher = Sha256::new();
        hasher.update(&channel_header);
        hasher.update(&signature_header);
        hasher.update(&proposal_payload);
        hasher.finalize().to_vec()
    };
    let response_payload = protos::ProposalResponsePayload {
        proposal_hash: proposal_hash.into(),
        extension: chaincode_action.encode_to_vec().into(),
    }
    .encode_to_vec();
    let endorsement = protos::Endorsement {
        endorser: creator.clone(),
        signature: signer
            .sign(&[&response_payload[..], &creator[..]].concat())
            .into(),
    };
    let action_payload = protos::ChaincodeActionPayload {
        chaincode_proposal_payload: proposal_payload.into(),
        action: Some(protos::ChaincodeEndorsedAction {
            proposal_response_payload: response_payload.into(),
            endorsements: vec![endorsement],
        }),
    };
    let transaction = protos::Transaction {
        actions: vec![protos::TransactionAction {
            header: signature_header.clone().into(),
            payload: action_payload.encode_to_vec().into(),
        }],
    };
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: channel_header.into(),
            signature_header: signature_header.into(),
        }),
        data: transaction.encode_to_vec().into(),
    }
    .encode_to_vec();
    let signature = signer.sign(&payload);
    common::Envelope {
        payload: payload.into(),
        signature: signature.into(),
    }
    .encode_to_vec()
    .into()
}

/// The deterministic stream of generated transactions: task ids count up; every third transaction completes
/// the previous task; some are invalid (MVCC_READ_CONFLICT, now and then ENDORSEMENT_POLICY_FAILURE); some
/// write `special_key`. Blocks hold 1, 2, 3, 1, 2, 3, ... transactions.
#[derive(Debug, Clone, Default)]
pub struct TaskSchedule {
    /// Transactions generated so far: drives every choice, so a run is reproducible.
    generated: u64,
    /// Blocks generated so far: drives the block sizes.
    blocks: u64,
}

impl TaskSchedule {
    /// The transactions of the next block.
    pub fn next_block(&mut self) -> Vec<TaskTransaction> {
        let count = 1 + (self.blocks % 3);
        self.blocks += 1;
        (0..count).map(|_| self.next_transaction()).collect()
    }

    fn next_transaction(&mut self) -> TaskTransaction {
        let i = self.generated;
        self.generated += 1;
        let action = if i % 3 == 2 {
            TaskAction::Complete {
                task: format!("task-{}", i - 1),
            }
        } else {
            TaskAction::Create {
                task: format!("task-{i}"),
            }
        };
        let validation_code = if i % 7 == 5 {
            protos::TxValidationCode::MvccReadConflict
        } else if i % 11 == 10 {
            protos::TxValidationCode::EndorsementPolicyFailure
        } else {
            protos::TxValidationCode::Valid
        };
        TaskTransaction {
            action,
            writes_special_key: i.is_multiple_of(4),
            validation_code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_mixes_creates_completes_invalid_and_special_keys() {
        let mut schedule = TaskSchedule::default();
        let txs: Vec<_> = (0..6).flat_map(|_| schedule.next_block()).collect();
        assert_eq!(txs.len(), 12);
        assert!(
            txs.iter()
                .any(|t| matches!(t.action, TaskAction::Complete { .. }))
        );
        assert!(
            txs.iter()
                .any(|t| t.validation_code == protos::TxValidationCode::MvccReadConflict)
        );
        assert!(
            txs.iter()
                .any(|t| t.validation_code == protos::TxValidationCode::EndorsementPolicyFailure)
        );
        assert!(txs.iter().any(|t| t.writes_special_key));
    }

    /// The recorded blocks chain: every `previous_hash` is the header hash of the block before.
    #[test]
    fn header_hash_matches_the_recorded_chain() {
        let blocks = crate::peersim::fixture::recorded_blocks();
        for pair in blocks.windows(2) {
            let tip = ChainTip::of_block(&pair[0]).expect("recorded block");
            let next = common::Block::decode(pair[1].clone()).expect("recorded block");
            let header = next.header.expect("header");
            assert_eq!(
                header.previous_hash[..],
                tip.hash[..],
                "block {}",
                header.number
            );
            let data = next.data.expect("data").data;
            assert_eq!(
                header.data_hash[..],
                data_hash(&data)[..],
                "block {}",
                header.number
            );
        }
    }

    #[test]
    fn generated_blocks_chain_onto_the_recording_and_decode() {
        let signer = crate::peersim::fixture_user1();
        let blocks = crate::peersim::fixture::recorded_blocks();
        let mut tip = ChainTip::of_block(blocks.last().expect("24 blocks")).expect("tip");
        assert_eq!(tip.last_config, 8);
        let mut schedule = TaskSchedule::default();
        for _ in 0..4 {
            let transactions = schedule.next_block();
            let inputs = BlockInputs {
                channel_id: "mychannel",
                timestamp: prost_types::Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 5,
                },
                nonces: (0..transactions.len()).map(|i| [i as u8 + 1; 24]).collect(),
            };
            let bytes = build_block(&tip, &transactions, &signer, &inputs);
            let block = crate::fabric::decode::decode_block(&bytes).expect("decodes");
            assert_eq!(block.number, tip.number + 1);
            assert_eq!(block.previous_hash[..], tip.hash[..]);
            assert_eq!(block.errors().count(), 0);
            assert_eq!(block.transactions.len(), transactions.len());
            for (decoded, generated) in block.decoded().zip(&transactions) {
                assert_eq!(decoded.validation_code, generated.validation_code);
                assert_eq!(
                    decoded.creator.as_ref().map(|c| c.label()).as_deref(),
                    Some("Org1MSP.User1@org1.example.com")
                );
                let action = &decoded.actions[0];
                assert_eq!(action.chaincode, CHAINCODE);
                let event = action.event.as_ref().expect("an event");
                assert!(event.event_name.starts_with("event-"));
                let payload: serde_json::Value =
                    serde_json::from_slice(&event.payload).expect("JSON payload");
                assert_eq!(payload["txId"], decoded.tx_id.as_str());
                let namespaces: Vec<_> =
                    action.rwsets.iter().map(|r| r.namespace.as_str()).collect();
                assert_eq!(namespaces, ["_lifecycle", CHAINCODE]);
                let special = action.rwsets[1]
                    .kv
                    .writes
                    .iter()
                    .any(|w| w.key == "special_key" && &w.value[..] == b"10");
                assert_eq!(special, generated.writes_special_key);
            }
            tip = ChainTip::of_block(&bytes).expect("tip");
        }
    }

    /// The BaaS filter examples reach into `.content.data...` of Tx events: the generated transactions must put
    /// `special_key` where example 5 finds it, and emit the `event-create-task` Contract event of example 1.
    #[test]
    fn generated_transactions_fit_the_baas_filter_examples() {
        let signer = crate::peersim::fixture_user1();
        let blocks = crate::peersim::fixture::recorded_blocks();
        let tip = ChainTip::of_block(blocks.last().expect("24 blocks")).expect("tip");
        let transaction = TaskTransaction {
            action: TaskAction::Create {
                task: "task-17".to_owned(),
            },
            writes_special_key: true,
            validation_code: protos::TxValidationCode::Valid,
        };
        let inputs = BlockInputs {
            channel_id: "mychannel",
            timestamp: prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            },
            nonces: vec![[9; 24]],
        };
        let bytes = build_block(&tip, &[transaction], &signer, &inputs);
        let block = crate::fabric::decode::decode_block(&bytes).expect("decodes");
        let events = crate::events::extract(&block, &crate::events::ExtractOptions::default());
        let tx = events
            .iter()
            .find(|e| e.event_type() == crate::events::EventType::Tx)
            .expect("a Tx event")
            .envelope();
        assert_eq!(tx["content"]["to"], "taskmgr");
        assert_eq!(tx["content"]["state"], "VALID");
        let input: Vec<String> =
            serde_json::from_str(tx["content"]["input"].as_str().expect("input text"))
                .expect("JSON args");
        assert_eq!(input[..2], ["createTask", "task-17"]);
        let ns_rwset = &tx["content"]["data"]["data"]["actions"][0]["payload"]["action"]["proposal_response_payload"]
            ["extension"]["results"]["ns_rwset"];
        let taskmgr = ns_rwset
            .as_array()
            .expect("ns_rwset list")
            .iter()
            .find(|ns| ns["namespace"] == "taskmgr")
            .expect("the taskmgr namespace");
        let special = taskmgr["rwset"]["writes"]
            .as_array()
            .expect("writes")
            .iter()
            .find(|w| w["key"] == "special_key")
            .expect("special_key written");
        assert_eq!(
            special,
            &serde_json::json!({"is_delete": false, "key": "special_key", "value": "MTA="})
        );
        let contract = events
            .iter()
            .find(|e| e.event_type() == crate::events::EventType::Contract)
            .expect("a Contract event")
            .envelope();
        assert_eq!(contract["name"], "event-create-task");
    }

    /// The real v2.5 network's block 8 is the anchor peer update of block 0's configuration, computed by
    /// Fabric's `configtxlator compute_update`: the same change here gives the same read and write sets and the
    /// same new configuration.
    #[test]
    fn config_updates_are_computed_as_fabric_computes_them() {
        let blocks = crate::peersim::fixture::recorded_blocks();
        let current = block_config(&blocks[0]).expect("block 0 is a config block");
        let real = block_config(&blocks[8]).expect("block 8 is a config block");
        let real_update = {
            let block = common::Block::decode(blocks[8].clone()).unwrap();
            let envelope = common::Envelope::decode(block.data.unwrap().data[0].clone()).unwrap();
            let payload = common::Payload::decode(envelope.payload).unwrap();
            let config = common::ConfigEnvelope::decode(payload.data).unwrap();
            let last_update = common::Payload::decode(config.last_update.unwrap().payload).unwrap();
            let update_envelope = common::ConfigUpdateEnvelope::decode(last_update.data).unwrap();
            common::ConfigUpdate::decode(update_envelope.config_update).unwrap()
        };
        let anchor_peers = real.channel_group.as_ref().unwrap().groups["Application"].groups
            ["Org1MSP"]
            .values["AnchorPeers"]
            .clone();
        let mut updated = current.clone();
        updated
            .channel_group
            .as_mut()
            .unwrap()
            .groups
            .get_mut("Application")
            .unwrap()
            .groups
            .get_mut("Org1MSP")
            .unwrap()
            .values
            .insert(
                "AnchorPeers".to_owned(),
                common::ConfigValue {
                    version: 7,
                    ..anchor_peers
                },
            );
        let tip = ChainTip::of_block(&blocks[23]).unwrap();
        let inputs = BlockInputs::fixed("mychannel", 1_800_000_000, [4; 24]);
        let signer = crate::peersim::fixture_user1();
        let bytes = build_config_block(&tip, &current, updated, &signer, &inputs).unwrap();
        let ours = block_config(&bytes).unwrap();
        assert_eq!(
            ours, real,
            "the new configuration, versions and sequence included"
        );
        let block = crate::fabric::decode::decode_block(&bytes).unwrap();
        assert_eq!(block.number, 24);
        assert_eq!(block.last_config, Some(24));
        block.verify_data_hash().unwrap();
        let update = block.config().unwrap().update.clone().unwrap();
        assert_eq!(update.read_set, real_update.read_set);
        assert_eq!(update.write_set, real_update.write_set);
        assert_eq!(update.channel_id, real_update.channel_id);

        let unchanged = build_config_block(&tip, &current, current.clone(), &signer, &inputs);
        assert!(
            unchanged.is_err(),
            "an update that changes nothing is refused"
        );
        let mut raft = current.clone();
        let err = edit_smartbft_options(&mut raft, |o| o.request_pool_size = 1).unwrap_err();
        assert_eq!(err, "the consensus type is `etcdraft`, not `BFT`");
    }
}
