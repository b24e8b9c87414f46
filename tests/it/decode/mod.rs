//! The block decoder and event extraction against real Fabric v2.5 and v3.1 blocks and each version's own
//! decoding of them (configtxlator), block verification, and the `decode` command.

use std::path::{Path, PathBuf};

use chaintrigger::events::{EventType, ExtractOptions, Rendering, extract};
use chaintrigger::fabric::decode::{Block, DecodeError, decode_block};
use prost::Message;
use serde_json::Value;

mod fabric_v3;
mod verify;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fabric-v2.5")
}

fn block_count() -> u64 {
    summary()["num_blocks"]
        .as_u64()
        .expect("summary.json has num_blocks")
}

fn raw_block(n: u64) -> Vec<u8> {
    let path = fixtures().join(format!("blocks/block_{n}.pb"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn configtxlator_json(n: u64) -> Value {
    let path = fixtures().join(format!("blocks/block_{n}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("configtxlator output is JSON")
}

fn summary() -> Value {
    let text = std::fs::read_to_string(fixtures().join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

fn decoded(n: u64) -> Block {
    decode_block(&raw_block(n)).unwrap_or_else(|e| panic!("block {n}: {e}"))
}

fn options() -> ExtractOptions {
    ExtractOptions {
        instance_id: "csi-test-instance".into(),
        include_invalid: false,
        rendering: Rendering::V2_5,
    }
}

/// The first path where two JSON trees differ, for a readable failure.
fn first_difference(path: &str, ours: &Value, theirs: &Value) -> Option<String> {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                let child = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = first_difference(&child, x, y) {
                            return Some(d);
                        }
                    }
                    (x, y) => return Some(format!("{child}: ours {x:?}, configtxlator {y:?}")),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y)),
        _ if ours == theirs => None,
        _ => Some(format!("{path}: ours {ours}, configtxlator {theirs}")),
    }
}

#[test]
fn every_fixture_block_decodes_with_its_transactions() {
    let summary = summary();
    let mut txs = 0;
    for n in 0..block_count() {
        let block = decoded(n);
        let expected = &summary["blocks"][n as usize];
        assert_eq!(block.number, n);
        assert_eq!(
            block.errors().count(),
            0,
            "block {n}: {:?}",
            block.errors().collect::<Vec<_>>()
        );
        assert_eq!(
            block.transactions.len() as u64,
            expected["num_txs"].as_u64().unwrap()
        );
        for (tx, want) in block.decoded().zip(expected["txs"].as_array().unwrap()) {
            assert_eq!(tx.tx_id, want["tx_id"].as_str().unwrap());
            assert_eq!(tx.header_type_name(), want["header_type"].as_str().unwrap());
            assert_eq!(tx.channel_id, want["channel_id"].as_str().unwrap());
            assert_eq!(
                tx.validation_code.as_str_name(),
                want["validation_code"].as_str().unwrap()
            );
            assert_eq!(
                tx.creator.as_ref().map(|c| c.msp_id.as_str()),
                want["creator_mspid"].as_str()
            );
            if let Some(chaincode) = want["chaincode"].as_str() {
                assert_eq!(
                    tx.actions[0].chaincode, chaincode,
                    "block {n} tx {}",
                    tx.tx_id
                );
                let args: Vec<String> = tx.actions[0]
                    .args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let want_args: Vec<String> = serde_json::from_value(want["args"].clone()).unwrap();
                assert_eq!(args.len(), want_args.len());
                assert_eq!(args[0], want_args[0]);
            }
            txs += 1;
        }
    }
    assert_eq!(txs, summary["total_txs"].as_u64().unwrap());
}

#[test]
fn block_hashes_chain_and_match_the_headers() {
    let blocks: Vec<Block> = (0..block_count()).map(decoded).collect();
    for pair in blocks.windows(2) {
        assert_eq!(
            pair[0].hash.as_slice(),
            pair[1].previous_hash.as_ref(),
            "block {}'s hash is not block {}'s previous_hash",
            pair[0].number,
            pair[1].number
        );
    }
    assert!(blocks[0].previous_hash.is_empty());
}

#[test]
fn creators_are_msp_id_and_certificate_common_name() {
    let block = decoded(3);
    let creator = block.transactions[0]
        .outcome
        .as_ref()
        .unwrap()
        .creator
        .clone()
        .unwrap();
    assert_eq!(creator.label(), "Org1MSP.User1@org1.example.com");
    let genesis = decoded(0);
    assert!(
        genesis.transactions[0]
            .outcome
            .as_ref()
            .unwrap()
            .creator
            .is_none()
    );
    let config_update = decoded(8);
    let creator = config_update.transactions[0]
        .outcome
        .as_ref()
        .unwrap()
        .creator
        .clone()
        .unwrap();
    assert_eq!(creator.msp_id, "OrdererMSP");
}

#[test]
fn tx_and_config_data_equal_configtxlator_for_every_transaction() {
    let mut compared = 0;
    for n in 0..block_count() {
        let block = decoded(n);
        let reference = configtxlator_json(n);
        let tx_events = extract(&block, &options())
            .into_iter()
            .filter(|e| matches!(e.event_type(), EventType::Tx | EventType::Config));
        for (i, event) in tx_events.enumerate() {
            let ours = &event.envelope()["content"]["data"];
            let theirs = &reference["data"]["data"][i]["payload"];
            if let Some(difference) = first_difference("payload", ours, theirs) {
                panic!("block {n} data[{i}]: {difference}");
            }
            assert_eq!(ours, theirs);
            compared += 1;
        }
    }
    assert_eq!(compared, summary()["total_txs"].as_u64().unwrap());
}

#[test]
fn events_agree_with_the_summary() {
    let summary = summary();
    let mut contract_valid = 0;
    let mut contract_all = 0;
    for n in 0..block_count() {
        let block = decoded(n);
        let expected = &summary["blocks"][n as usize];
        let events = extract(&block, &options());
        let all = extract(
            &block,
            &ExtractOptions {
                include_invalid: true,
                ..options()
            },
        );

        let head = &events[0];
        assert_eq!(head.event_type(), EventType::Block);
        assert_eq!(head.id(), format!("block-{n}"));
        let envelope = head.envelope();
        assert_eq!(envelope["platform"], "Fabric");
        assert_eq!(envelope["instance_id"], "csi-test-instance");
        assert_eq!(envelope["network"], "mychannel");
        assert_eq!(envelope["name"], n.to_string());
        assert_eq!(envelope["content"]["number"], n);
        assert_eq!(envelope["content"]["hash"], hex::encode(block.hash));

        let mut rest = events[1..].iter();
        for want in expected["txs"].as_array().unwrap() {
            let tx_id = want["tx_id"].as_str().unwrap();
            let tx = rest.next().expect("a Tx or Config event per transaction");
            let content = &tx.envelope()["content"];
            assert_eq!(content["state"], want["validation_code"]);
            if want["header_type"] == "CONFIG" {
                assert_eq!(tx.event_type(), EventType::Config);
                assert_eq!(tx.id(), format!("config-{n}-{tx_id}"));
                assert_eq!(tx.envelope()["name"], "");
                assert_eq!(content["events"], Value::Null);
                if want["last_update_present"] == true {
                    let input: Value =
                        serde_json::from_str(content["input"].as_str().unwrap()).unwrap();
                    assert_eq!(input["channel_id"], "mychannel");
                }
                continue;
            }
            assert_eq!(tx.event_type(), EventType::Tx);
            assert_eq!(tx.id(), format!("tx-{n}-{tx_id}"));
            assert_eq!(tx.envelope()["name"], tx_id);
            assert_eq!(content["to"], want["chaincode"]);
            let input: Vec<String> =
                serde_json::from_str(content["input"].as_str().unwrap()).unwrap();
            assert_eq!(input[0], want["args"][0].as_str().unwrap());
            assert!(content["from"].as_str().unwrap().starts_with("Org1MSP."));
            let event = &want["chaincode_event"];
            if event.is_null() {
                assert_eq!(content["events"], serde_json::json!([]));
                continue;
            }
            contract_all += 1;
            let inner = &content["events"][0];
            assert_eq!(inner["network"], "");
            assert_eq!(inner["name"], event["event_name"]);
            if want["validation_code"] == "VALID" {
                contract_valid += 1;
                let contract = rest.next().expect("a Contract event after its valid Tx");
                assert_eq!(contract.event_type(), EventType::Contract);
                assert_eq!(contract.id(), format!("contract-{n}-{tx_id}"));
                assert_eq!(contract.envelope()["name"], event["event_name"]);
                assert_eq!(contract.envelope()["content"], event["payload_b64"]);
                assert_eq!(contract.envelope()["network"], "mychannel");
            }
        }
        assert!(rest.next().is_none(), "block {n}: unexpected extra events");
        let invalid_contracts = all
            .iter()
            .filter(|e| e.event_type() == EventType::Contract)
            .count()
            - events
                .iter()
                .filter(|e| e.event_type() == EventType::Contract)
                .count();
        let expected_invalid = expected["txs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["validation_code"] != "VALID" && !t["chaincode_event"].is_null())
            .count();
        assert_eq!(invalid_contracts, expected_invalid);
    }
    assert_eq!(
        contract_all,
        summary["total_chaincode_events"].as_u64().unwrap()
    );
    assert_eq!(
        contract_valid,
        summary["total_events_in_valid_txs"].as_u64().unwrap()
    );
}

#[test]
fn a_truncated_block_is_a_typed_error() {
    let raw = raw_block(12);
    let err = decode_block(&raw[..raw.len() / 2]).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
}

mod malformed {
    //! Blocks rebuilt from a real one with one part broken: the error names the block and the path, and the
    //! other transactions still decode.

    use super::*;
    use bytes::Bytes;
    use chaintrigger::fabric::proto::{common, protos};
    use prost::Message;

    fn fixture(n: u64) -> common::Block {
        common::Block::decode(raw_block(n).as_slice()).expect("fixture block parses")
    }

    fn envelope_payload(block: &common::Block, i: usize) -> common::Payload {
        let envelope =
            common::Envelope::decode(block.data.as_ref().unwrap().data[i].clone()).unwrap();
        common::Payload::decode(envelope.payload).unwrap()
    }

    fn set_payload(block: &mut common::Block, i: usize, payload: &common::Payload) {
        let data = &mut block.data.as_mut().unwrap().data;
        let mut envelope = common::Envelope::decode(data[i].clone()).unwrap();
        envelope.payload = Bytes::from(payload.encode_to_vec());
        data[i] = Bytes::from(envelope.encode_to_vec());
    }

    fn filter(block: &mut common::Block) -> &mut Bytes {
        &mut block.metadata.as_mut().unwrap().metadata[2]
    }

    fn decode(block: &common::Block) -> Block {
        decode_block(&block.encode_to_vec()).expect("the block itself is well formed")
    }

    #[test]
    fn a_truncated_transaction_fails_alone_with_its_path() {
        let mut block = fixture(12);
        let data = &mut block.data.as_mut().unwrap().data;
        data[3] = data[3].slice(..data[3].len() / 2);
        let decoded = decode(&block);
        let err = decoded.transactions[3].outcome.as_ref().unwrap_err();
        assert!(err.to_string().starts_with("block 12: data[3]"), "{err}");
        assert_eq!(decoded.decoded().count(), 4);
        let events = extract(&decoded, &options());
        assert_eq!(
            events
                .iter()
                .filter(|e| e.event_type() == EventType::Tx)
                .count(),
            4
        );
    }

    #[test]
    fn a_missing_endorsed_action_names_its_path() {
        let mut block = fixture(12);
        let mut payload = envelope_payload(&block, 3);
        let mut tx = protos::Transaction::decode(payload.data.clone()).unwrap();
        let mut action =
            protos::ChaincodeActionPayload::decode(tx.actions[0].payload.clone()).unwrap();
        action.action = None;
        tx.actions[0].payload = Bytes::from(action.encode_to_vec());
        payload.data = Bytes::from(tx.encode_to_vec());
        set_payload(&mut block, 3, &payload);
        let decoded = decode(&block);
        let err = decoded.transactions[3].outcome.as_ref().unwrap_err();
        assert_eq!(
            err.to_string(),
            "block 12: data[3].payload.data.actions[0].payload.action: missing (expected a protos.ChaincodeEndorsedAction)"
        );
    }

    #[test]
    fn a_garbled_chaincode_action_names_its_path() {
        let mut block = fixture(3);
        let mut payload = envelope_payload(&block, 0);
        let mut tx = protos::Transaction::decode(payload.data.clone()).unwrap();
        tx.actions[0].payload = Bytes::from_static(&[0x0a, 0x05, 0x01]);
        payload.data = Bytes::from(tx.encode_to_vec());
        set_payload(&mut block, 0, &payload);
        let err = decode(&block).transactions[0].outcome.clone().unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }));
        assert!(
            err.to_string()
                .starts_with("block 3: data[0].payload.data.actions[0].payload: not a valid protos.ChaincodeActionPayload"),
            "{err}"
        );
    }

    #[test]
    fn a_short_transactions_filter_fails_the_uncovered_transactions() {
        let mut block = fixture(12);
        *filter(&mut block) = Bytes::from_static(&[0, 11, 11]);
        let decoded = decode(&block);
        assert_eq!(decoded.decoded().count(), 3);
        let err = decoded.transactions[4].outcome.as_ref().unwrap_err();
        assert_eq!(
            *err,
            DecodeError::FilterTooShort {
                block: chaintrigger::fabric::decode::BlockRef(Some(12)),
                index: 4,
                filter_len: 3,
                tx_count: 5
            }
        );
        assert!(
            err.to_string()
                .contains("(TRANSACTIONS_FILTER) has 3 entries"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_validation_code_is_a_typed_error() {
        let mut block = fixture(3);
        *filter(&mut block) = Bytes::from_static(&[77]);
        let err = decode(&block).transactions[0].outcome.clone().unwrap_err();
        assert_eq!(
            err.to_string(),
            "block 3: metadata.metadata[2][0]: 77 is not a peer.TxValidationCode"
        );
    }

    #[test]
    fn every_validation_code_has_its_fabric_name() {
        for (code, name) in [
            (0u8, "VALID"),
            (1, "NIL_ENVELOPE"),
            (10, "ENDORSEMENT_POLICY_FAILURE"),
            (11, "MVCC_READ_CONFLICT"),
            (12, "PHANTOM_READ_CONFLICT"),
            (25, "INVALID_CHAINCODE"),
            (254, "NOT_VALIDATED"),
            (255, "INVALID_OTHER_REASON"),
        ] {
            let mut block = fixture(3);
            *filter(&mut block) = Bytes::copy_from_slice(&[code]);
            let decoded = decode(&block);
            let events = extract(&decoded, &options());
            assert_eq!(events[1].envelope()["content"]["state"], name);
            let contracts = events
                .iter()
                .filter(|e| e.event_type() == EventType::Contract)
                .count();
            assert_eq!(contracts, usize::from(code == 0), "code {code}");
        }
    }

    #[test]
    fn other_header_types_decode_as_transactions_of_their_kind() {
        for (header_type, name) in [
            (common::HeaderType::Message, "MESSAGE"),
            (common::HeaderType::ConfigUpdate, "CONFIG_UPDATE"),
            (
                common::HeaderType::OrdererTransaction,
                "ORDERER_TRANSACTION",
            ),
            (common::HeaderType::ChaincodePackage, "CHAINCODE_PACKAGE"),
        ] {
            let mut block = fixture(3);
            let mut payload = envelope_payload(&block, 0);
            let header = payload.header.as_mut().unwrap();
            let mut channel_header =
                common::ChannelHeader::decode(header.channel_header.clone()).unwrap();
            channel_header.r#type = header_type as i32;
            channel_header.extension = Bytes::new();
            header.channel_header = Bytes::from(channel_header.encode_to_vec());
            payload.data = Bytes::from(
                common::ConfigValue {
                    version: 1,
                    value: Bytes::from_static(b"hello"),
                    mod_policy: "Admins".into(),
                }
                .encode_to_vec(),
            );
            set_payload(&mut block, 0, &payload);
            let decoded = decode(&block);
            let tx = decoded.transactions[0].outcome.as_ref().unwrap();
            assert_eq!(tx.header_type_name(), name);
            assert!(tx.actions.is_empty());
            let events = extract(&decoded, &options());
            assert_eq!(events.len(), 2, "{name}: a Block and a Tx event");
            let data = &events[1].envelope()["content"]["data"];
            assert_eq!(data["header"]["channel_header"]["type"], header_type as i32);
            if header_type == common::HeaderType::Message {
                assert_eq!(
                    data["data"],
                    serde_json::json!({"version": "1", "value": "aGVsbG8=", "mod_policy": "Admins"})
                );
            }
        }
    }
}

#[test]
fn decode_command_prints_every_event_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-block.pb");
    std::fs::write(&bad, b"\xff\xff\xff").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .arg("decode")
        .args(["--instance-id", "csi-cli"])
        .arg(fixtures().join("blocks/block_12.pb"))
        .arg(&bad)
        .arg(fixtures().join("blocks/block_8.pb"))
        .output()
        .expect("the chaintrigger binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not-a-block.pb: block (number unknown): not a valid common.Block"),
        "{stderr}"
    );
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    // Block 12: Block, 5 Tx, 1 Contract (the one valid transaction); block 8: Block, Config.
    assert_eq!(lines.len(), 9, "{ids:?}");
    assert_eq!(ids[0], "block-12");
    assert_eq!(ids[7], "block-8");
    assert_eq!(ids[8], "config-8-");
    assert!(lines.iter().all(|l| l["instance_id"] == "csi-cli"));
}

mod never_panics {
    //! Arbitrary bytes and damaged real blocks (v2.5 and v3.1) go through decode, verification, extract in
    //! both renderings and the JSON without a panic.

    use super::*;
    use proptest::prelude::*;

    fn exercise(bytes: &[u8]) {
        if let Ok(block) = decode_block(bytes) {
            let _ = block.verify_data_hash();
            let _ = block.verify_follows(&block);
            for rendering in Rendering::ALL {
                let options = ExtractOptions {
                    include_invalid: true,
                    rendering,
                    ..options()
                };
                for event in extract(&block, &options) {
                    serde_json::to_string(event.envelope()).expect("an envelope serializes");
                }
            }
        }
    }

    fn v3_block(index: prop::sample::Index) -> Vec<u8> {
        let numbers = super::fabric_v3::V3_BLOCKS;
        super::fabric_v3::v3_raw(numbers[index.index(numbers.len())])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            exercise(&bytes);
        }

        #[test]
        fn truncated_fixture_blocks(n in 0u64..24, cut in any::<prop::sample::Index>()) {
            let raw = raw_block(n);
            exercise(&raw[..cut.index(raw.len())]);
        }

        #[test]
        fn bit_flipped_fixture_blocks(
            n in 0u64..24,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..8),
        ) {
            let mut raw = raw_block(n);
            let len = raw.len();
            for (at, bit) in flips {
                raw[at.index(len)] ^= 1 << bit;
            }
            exercise(&raw);
        }

        #[test]
        fn damaged_v3_blocks(
            n in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..8),
        ) {
            let mut raw = v3_block(n);
            let len = raw.len();
            for (at, bit) in flips {
                raw[at.index(len)] ^= 1 << bit;
            }
            exercise(&raw[..cut.index(len + 1).max(len / 2)]);
        }

        #[test]
        fn overwritten_fixture_bytes(
            n in 0u64..24,
            at in any::<prop::sample::Index>(),
            junk in proptest::collection::vec(any::<u8>(), 1..16),
        ) {
            let mut raw = raw_block(n);
            let start = at.index(raw.len());
            for (i, b) in junk.into_iter().enumerate() {
                if let Some(slot) = raw.get_mut(start + i) {
                    *slot = b;
                }
            }
            exercise(&raw);
        }
    }
}

#[test]
fn a_stream_decoder_parses_each_creator_once() {
    use chaintrigger::fabric::decode::BlockDecoder;
    let mut decoder = BlockDecoder::new();
    let first = decoder.decode(&raw_block(3)).unwrap();
    let second = decoder.decode(&raw_block(4)).unwrap();
    let creator = |b: &Block| b.decoded().next().unwrap().creator.clone().unwrap();
    assert!(std::sync::Arc::ptr_eq(&creator(&first), &creator(&second)));
    assert_eq!(creator(&second).label(), "Org1MSP.User1@org1.example.com");
    let message =
        chaintrigger::fabric::proto::common::Block::decode(raw_block(5).as_slice()).unwrap();
    let third = decoder.decode_message(message).unwrap();
    assert!(std::sync::Arc::ptr_eq(&creator(&first), &creator(&third)));
}

#[test]
fn config_event_input_is_configtxlators_config_update() {
    let block = decoded(8);
    let events = extract(&block, &options());
    let config = events
        .iter()
        .find(|e| e.event_type() == EventType::Config)
        .expect("block 8 has a Config event");
    let input: Value =
        serde_json::from_str(config.envelope()["content"]["input"].as_str().unwrap()).unwrap();
    let reference = configtxlator_json(8);
    let theirs = &reference["data"]["data"][0]["payload"]["data"]["last_update"]["payload"]["data"]
        ["config_update"];
    assert_eq!(first_difference("config_update", &input, theirs), None);
    assert_eq!(&input, theirs);
    assert_eq!(
        config.envelope()["content"]["from"],
        "OrdererMSP.orderer.example.com"
    );
}
