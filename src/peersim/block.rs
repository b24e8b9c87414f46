//! Building Fabric blocks (pure): the header hash chain, the data hash, and a `taskmgr`-like chaincode's
//! transactions, signed by a test identity. Times and nonces come in as arguments.

use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::fabric::identity::Identity;
use crate::fabric::proto::{common, kvrwset, protos, rwset};

/// The generated chaincode's name.
pub const CHAINCODE: &str = "taskmgr";
/// Index of the LAST_CONFIG metadata slot (deprecated in the proto, still filled by Fabric v2.5 orderers).
const LAST_CONFIG_INDEX: usize = 1;
/// The version the generated chaincode action reports.
const CHAINCODE_VERSION: &str = "1.0";

/// The hash of a block header, as Fabric computes it (the decoder's rule: the simulator must chain blocks exactly
/// as the decoder checks them).
pub fn header_hash(header: &common::BlockHeader) -> [u8; 32] {
    crate::fabric::decode::header_hash(header.number, &header.previous_hash, &header.data_hash)
}

/// The data hash of a block: SHA-256 over its envelopes' bytes, concatenated (Fabric's `ComputeBlockDataHash`).
pub fn data_hash(envelopes: &[Bytes]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for envelope in envelopes {
        hasher.update(envelope);
    }
    hasher.finalize().into()
}

/// What the next block must chain onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    /// The last block's number.
    pub number: u64,
    /// The last block's header hash: the next block's `previous_hash`.
    pub hash: [u8; 32],
    /// The number of the last config block, repeated in every block's LAST_CONFIG metadata.
    pub last_config: u64,
    /// The last block's COMMIT_HASH, folded into the next one.
    pub commit_hash: Vec<u8>,
}

impl ChainTip {
    /// Reads the tip from a block's raw bytes.
    pub fn of_block(block: &[u8]) -> Result<ChainTip, String> {
        let block =
            common::Block::decode(block).map_err(|e| format!("not a common.Block ({e})"))?;
        let header = block.header.ok_or("common.Block without a header")?;
        let metadata = block.metadata.map(|m| m.metadata).unwrap_or_default();
        let last_config = metadata
            .get(LAST_CONFIG_INDEX)
            .and_then(|m| common::Metadata::decode(m.clone()).ok())
            .and_then(|m| common::LastConfig::decode(m.value).ok())
            .map(|c| c.index)
            .unwrap_or(0);
        let commit_hash = metadata
            .get(common::BlockMetadataIndex::CommitHash as usize)
            .and_then(|m| common::Metadata::decode(m.clone()).ok())
            .map(|m| m.value.to_vec())
            .unwrap_or_default();
        Ok(ChainTip {
            number: header.number,
            hash: header_hash(&header),
            last_config,
            commit_hash,
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
    let creator = Bytes::from(signer.serialized());
    let envelopes: Vec<Bytes> = transactions
        .iter()
        .map(|(envelope, _)| envelope.clone())
        .collect();
    let header = common::BlockHeader {
        number: tip.number + 1,
        previous_hash: Bytes::copy_from_slice(&tip.hash),
        data_hash: Bytes::copy_from_slice(&data_hash(&envelopes)),
    };
    let filter: Vec<u8> = transactions
        .iter()
        .map(|(_, code)| *code as i32 as u8)
        .collect();
    let commit_hash = {
        let mut hasher = Sha256::new();
        hasher.update(&tip.commit_hash);
        hasher.update(&filter);
        hasher.update(&header.data_hash);
        hasher.finalize().to_vec()
    };
    let last_config = common::LastConfig {
        index: tip.last_config,
    };
    let signatures = {
        let value = common::OrdererBlockMetadata {
            last_config: Some(last_config),
            consenter_metadata: Bytes::new(),
        }
        .encode_to_vec();
        let signature_header = common::SignatureHeader {
            creator: creator.clone(),
            nonce: Bytes::copy_from_slice(&inputs.nonces.first().copied().unwrap_or([0; 24])),
        }
        .encode_to_vec();
        let header_der_hash = header_hash(&header);
        let signed = [&value[..], &signature_header[..], &header_der_hash[..]].concat();
        common::Metadata {
            value: value.into(),
            signatures: vec![common::MetadataSignature {
                signature_header: signature_header.into(),
                signature: signer.sign(&signed).into(),
                identifier_header: Bytes::new(),
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
}
