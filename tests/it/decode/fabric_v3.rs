//! Real Fabric v3.1.5 blocks (SmartBFT ordering, `V3_0` capability) against v3.1.5's own configtxlator: every
//! Tx and Config event's `content.data` equals its decoding node for node in the v3 rendering; the two
//! renderings differ only where an empty bytes field prints `null` (v2.5) or `""` (v3); blocks without
//! validation codes decode; a BFT config update's options reach a Config trigger's filter.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chaintrigger::events::{Event, EventType, ExtractOptions, Rendering, extract};
use chaintrigger::fabric::decode::{Block, TxValidationCode, decode_block};
use chaintrigger::fabric::proto::common;
use chaintrigger::filter::{Filter, Language};
use chaintrigger::peersim::block::{
    BlockInputs, ChainTip, block_config, build_config_block, edit_smartbft_options,
};
use chaintrigger::peersim::fixture::Recording;
use chaintrigger::peersim::recording_user1;
use prost::Message;
use serde_json::{Value, json};

use super::first_difference;

/// The v3.1 recording's block numbers (block 11 is not in it).
pub const V3_BLOCKS: [u64; 20] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20,
];

pub fn v3_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fabric-v3.1")
}

pub fn v3_raw(n: u64) -> Vec<u8> {
    let path = v3_dir().join(format!("blocks/block_{n}.pb"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn v3_configtxlator(n: u64) -> Value {
    let path = v3_dir().join(format!("blocks/block_{n}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("configtxlator output is JSON")
}

pub fn v3_block(n: u64) -> Block {
    decode_block(&v3_raw(n)).unwrap_or_else(|e| panic!("v3.1 block {n}: {e}"))
}

fn options(rendering: Rendering) -> ExtractOptions {
    ExtractOptions {
        instance_id: "csi-v3".into(),
        include_invalid: true,
        rendering,
    }
}

fn tx_events(block: &Block, rendering: Rendering) -> Vec<Event> {
    extract(block, &options(rendering))
        .into_iter()
        .filter(|e| matches!(e.event_type(), EventType::Tx | EventType::Config))
        .collect()
}

/// Every path where two trees differ, with both sides.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, Value, Value)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (l, r) = (
                    x.get(key).cloned().unwrap_or(Value::Null),
                    y.get(key).cloned().unwrap_or(Value::Null),
                );
                differences(&format!("{path}.{key}"), &l, &r, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), l, r, out);
            }
        }
        _ if a == b => {}
        _ => out.push((path.to_owned(), a.clone(), b.clone())),
    }
}

#[test]
fn every_v3_transaction_equals_fabric_v3_configtxlator_node_for_node() {
    let mut compared = 0;
    for n in V3_BLOCKS {
        let block = v3_block(n);
        assert_eq!(block.number, n);
        assert_eq!(block.errors().count(), 0, "block {n}");
        let reference = v3_configtxlator(n);
        let events = tx_events(&block, Rendering::V3);
        assert_eq!(
            events.len(),
            reference["data"]["data"].as_array().unwrap().len(),
            "block {n}: one Tx or Config event per transaction"
        );
        for (i, event) in events.iter().enumerate() {
            let ours = &event.envelope()["content"]["data"];
            let theirs = &reference["data"]["data"][i]["payload"];
            if let Some(difference) = first_difference("payload", ours, theirs) {
                panic!("v3.1 block {n} data[{i}]: {difference}");
            }
            assert_eq!(ours, theirs);
            compared += 1;
        }
    }
    // 20 blocks: the genesis config and the 88 transactions of the 19 others.
    assert_eq!(compared, 89);
}

#[test]
fn the_renderings_differ_only_where_empty_bytes_are_null_or_empty_strings() {
    let mut differing = 0;
    for n in V3_BLOCKS {
        let block = v3_block(n);
        let v2 = tx_events(&block, Rendering::V2_5);
        let v3 = tx_events(&block, Rendering::V3);
        for (a, b) in v2.iter().zip(&v3) {
            let mut found = Vec::new();
            differences(
                "content",
                &a.envelope()["content"],
                &b.envelope()["content"],
                &mut found,
            );
            for (path, left, right) in &found {
                assert_eq!(
                    (left, right),
                    (&Value::Null, &json!("")),
                    "block {n} {path}: the renderings differ elsewhere than on empty bytes"
                );
            }
            differing += found.len();
            // Everything but content.data is the same in both renderings.
            for key in ["type", "id", "name", "network"] {
                assert_eq!(a.envelope()[key], b.envelope()[key]);
            }
        }
    }
    assert!(differing > 100, "{differing} empty bytes fields");
    // The one the operator sees first: the channel header's TLS binding.
    let block = v3_block(3);
    let v2 = &tx_events(&block, Rendering::V2_5)[0];
    let data = &v2.envelope()["content"]["data"];
    assert_eq!(
        data["header"]["channel_header"]["tls_cert_hash"],
        Value::Null
    );
    let v3 = &tx_events(&block, Rendering::V3)[0];
    let data = &v3.envelope()["content"]["data"];
    assert_eq!(data["header"]["channel_header"]["tls_cert_hash"], "");
}

#[test]
fn the_v2_5_blocks_in_the_v3_rendering_differ_only_on_empty_bytes_too() {
    for n in [0u64, 8, 12, 17] {
        let block = super::decoded(n);
        let v2 = tx_events(&block, Rendering::V2_5);
        let v3 = tx_events(&block, Rendering::V3);
        for (a, b) in v2.iter().zip(&v3) {
            let mut found = Vec::new();
            differences("content", a.envelope(), b.envelope(), &mut found);
            assert!(!found.is_empty(), "block {n}: tls_cert_hash at least");
            for (path, left, right) in &found {
                assert_eq!((left, right), (&Value::Null, &json!("")), "{path}");
            }
        }
    }
}

#[test]
fn the_genesis_block_shows_smartbft_consenters_endpoints_and_capabilities() {
    let block = v3_block(0);
    let config = block.config().expect("block 0 is a config block");
    assert_eq!(config.channel_capabilities, ["V3_0"]);
    assert_eq!(config.consensus_type.as_deref(), Some("BFT"));
    assert_eq!(Rendering::of_config(config), Rendering::V3);
    assert_eq!(block.last_config, Some(0));

    let events = tx_events(&block, Rendering::V3);
    assert_eq!(events.len(), 1);
    let event = events[0].envelope();
    assert_eq!(event["type"], "Config");
    assert_eq!(
        event["id"],
        "config-0-9a8330c014caaaea336f06c65b79a250cf42bb39c36b9fba5c4810e407bd4c37"
    );
    let group = &event["content"]["data"]["data"]["config"]["channel_group"];
    let orderer = &group["groups"]["Orderer"];
    let consensus = &orderer["values"]["ConsensusType"]["value"];
    assert_eq!(consensus["type"], "BFT");
    assert_eq!(consensus["metadata"]["request_batch_max_interval"], "1s");
    assert_eq!(consensus["metadata"]["request_pool_size"], "100000");
    assert_eq!(
        consensus["metadata"]["leader_rotation"],
        "ROTATION_UNSPECIFIED"
    );
    assert_eq!(consensus["metadata"].as_object().unwrap().len(), 18);
    let consenters = orderer["values"]["Orderers"]["value"]["consenter_mapping"]
        .as_array()
        .unwrap();
    let ids: Vec<u64> = consenters
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert!(consenters.iter().all(|c| c["msp_id"] == "OrdererMSP"));
    let endpoints = &orderer["groups"]["OrdererOrg"]["values"]["Endpoints"]["value"]["addresses"];
    assert_eq!(endpoints.as_array().map(Vec::len), Some(4), "{endpoints}");
    assert_eq!(
        group["values"]["Capabilities"]["value"]["capabilities"],
        json!({"V3_0": {}})
    );
    // The genesis block has no last update: the Config event's input is empty.
    assert_eq!(event["content"]["input"], "");
    assert_eq!(event["content"]["state"], "VALID");
}

#[test]
fn v3_blocks_name_their_last_config_block() {
    for n in V3_BLOCKS {
        let want = if n < 11 { 0 } else { 11 };
        assert_eq!(v3_block(n).last_config, Some(want), "block {n}");
    }
    for n in 0..24u64 {
        let want = if n < 8 { 0 } else { 8 };
        assert_eq!(super::decoded(n).last_config, Some(want), "v2.5 block {n}");
    }
    let v2_genesis = super::decoded(0);
    let config = v2_genesis.config().unwrap();
    assert_eq!(config.consensus_type.as_deref(), Some("etcdraft"));
    assert_eq!(Rendering::of_config(config), Rendering::V2_5);
    assert!(super::decoded(3).config().is_none());
}

/// `block` with its TRANSACTIONS_FILTER emptied (`metadata: None` drops every metadata entry).
fn without_validation_codes(raw: &[u8], metadata: bool) -> Vec<u8> {
    let mut block = common::Block::decode(raw).unwrap();
    if metadata {
        block.metadata.as_mut().unwrap().metadata[2] = Bytes::new();
    } else {
        block.metadata = None;
    }
    block.encode_to_vec()
}

#[test]
fn a_genesis_block_as_configtxgen_writes_it_decodes_as_not_validated() {
    for metadata in [true, false] {
        let raw = without_validation_codes(&v3_raw(0), metadata);
        let block = decode_block(&raw).expect("a genesis block without validation codes decodes");
        let tx = block.decoded().next().expect("its config transaction");
        assert_eq!(tx.validation_code, TxValidationCode::NotValidated);
        assert_eq!(block.last_config, metadata.then_some(0));
        let event = &tx_events(&block, Rendering::V3)[0];
        assert_eq!(event.envelope()["content"]["state"], "NOT_VALIDATED");
        assert_eq!(
            event.envelope()["content"]["data"],
            v3_configtxlator(0)["data"]["data"][0]["payload"]
        );
        block
            .verify_data_hash()
            .expect("metadata is outside the data hash");
    }
    let v2_genesis = without_validation_codes(&super::raw_block(0), true);
    let block = decode_block(&v2_genesis).unwrap();
    assert_eq!(block.errors().count(), 0);
    assert_eq!(
        tx_events(&block, Rendering::V2_5)[0].envelope()["content"]["state"],
        "NOT_VALIDATED"
    );
}

#[test]
fn a_block_fetched_from_an_orderer_decodes_with_its_transactions_not_validated() {
    let raw = without_validation_codes(&v3_raw(5), true);
    let block = decode_block(&raw).expect("decodes");
    assert_eq!(block.transactions.len(), 8);
    assert!(
        block
            .decoded()
            .all(|tx| tx.validation_code == TxValidationCode::NotValidated)
    );
    let reference = v3_configtxlator(5);
    let quiet = ExtractOptions {
        include_invalid: false,
        ..options(Rendering::V3)
    };
    let events = extract(&block, &quiet);
    let txs: Vec<&Event> = events
        .iter()
        .filter(|e| e.event_type() == EventType::Tx)
        .collect();
    assert_eq!(txs.len(), 8);
    for (i, tx) in txs.iter().enumerate() {
        assert_eq!(tx.envelope()["content"]["state"], "NOT_VALIDATED");
        assert_eq!(
            tx.envelope()["content"]["data"],
            reference["data"]["data"][i]["payload"]
        );
    }
    assert!(
        !events.iter().any(|e| e.event_type() == EventType::Contract),
        "events of transactions nobody validated are not pushed by default"
    );
    let all = extract(&block, &options(Rendering::V3));
    let contracts = all
        .iter()
        .filter(|e| e.event_type() == EventType::Contract)
        .count();
    assert!(contracts > 0, "include_invalid shows them");
}

/// The v3.1 genesis configuration with `request_batch_max_interval` changed, as a config update block after
/// the recording's block 10.
pub fn bft_config_update(interval: &str) -> Vec<u8> {
    let current = block_config(&v3_raw(0)).expect("the genesis block holds a configuration");
    let mut updated = current.clone();
    edit_smartbft_options(&mut updated, |o| {
        o.request_batch_max_interval = interval.into()
    })
    .expect("a BFT configuration");
    let tip = ChainTip::of_block(&v3_raw(10)).unwrap();
    let inputs = BlockInputs::fixed("mychannel", 1_800_000_000, [7; 24]);
    let signer = recording_user1(Recording::V3_1);
    build_config_block(&tip, &current, updated, &signer, &inputs)
        .expect("a changed configuration")
        .to_vec()
}

#[test]
fn a_bft_config_update_reaches_a_config_triggers_filter() {
    let raw = bft_config_update("500ms");
    let block = decode_block(&raw).expect("the config update block decodes");
    assert_eq!(block.number, 11);
    assert_eq!(block.last_config, Some(11));
    block.verify_data_hash().unwrap();
    block.verify_follows(&v3_block(10)).unwrap();
    let config = block.config().unwrap();
    assert_eq!(config.sequence, 1);
    assert_eq!(Rendering::of_config(config), Rendering::V3);

    let events = extract(&block, &options(Rendering::V3));
    let config_event = events
        .iter()
        .find(|e| e.event_type() == EventType::Config)
        .expect("a Config event")
        .envelope();
    // In the new configuration (content.data) ...
    let filter = Filter::compile(
        Language::Jq,
        r#"select(.type == "Config") | .content.data.data.config.channel_group.groups.Orderer.values.ConsensusType | {version, interval: .value.metadata.request_batch_max_interval}"#,
    )
    .unwrap();
    assert_eq!(
        filter.apply(config_event).unwrap(),
        [json!({"version": "1", "interval": "500ms"})]
    );
    // ... and in the update that made it (content.input), as the config update's write set.
    let filter = Filter::compile(
        Language::Jq,
        r#".content.input | fromjson | .write_set.groups.Orderer.values.ConsensusType.value.metadata.request_batch_max_interval"#,
    )
    .unwrap();
    assert_eq!(filter.apply(config_event).unwrap(), [json!("500ms")]);
    let filter = Filter::compile(
        Language::Jmespath,
        "content.data.data.last_update.payload.data.config_update.read_set.groups.Orderer.version",
    )
    .unwrap();
    assert_eq!(filter.apply(config_event).unwrap(), [json!("0")]);
    // The update's envelopes render as v3's configtxlator: empty bytes are "".
    let last_update = &config_event["content"]["data"]["data"]["last_update"]["payload"];
    assert_eq!(last_update["header"]["channel_header"]["tls_cert_hash"], "");
    assert_eq!(last_update["header"]["channel_header"]["type"], 2);
    assert_eq!(
        last_update["header"]["channel_header"]["extension"],
        Value::Null
    );
    let input: Value =
        serde_json::from_str(config_event["content"]["input"].as_str().unwrap()).unwrap();
    assert_eq!(input["channel_id"], "mychannel");
    assert_eq!(
        input, last_update["data"]["config_update"],
        "content.input is the config update of content.data"
    );
}

#[test]
fn decode_learns_the_rendering_from_a_config_block_among_its_inputs_or_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let update = dir.path().join("block_11.pb");
    std::fs::write(&update, bft_config_update("500ms")).unwrap();
    let block = |n: u64| v3_dir().join(format!("blocks/block_{n}.pb"));
    let run = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
            .arg("decode")
            .args(args)
            .output()
            .expect("the chaintrigger binary runs");
        let lines: Vec<Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        (
            output.status.success(),
            lines,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let tls_cert_hash = |lines: &[Value]| {
        lines
            .iter()
            .find(|l| l["type"] == "Tx")
            .map(|l| l["content"]["data"]["header"]["channel_header"]["tls_cert_hash"].clone())
            .expect("a Tx event")
    };

    // A config block among the inputs (here after the transactions) sets the rendering of all of them.
    let (ok, lines, stderr) = run(&[block(3).as_os_str(), block(0).as_os_str()]);
    assert!(ok, "{stderr}");
    assert_eq!(tls_cert_hash(&lines), "");
    // The flag wins.
    let (ok, lines, _) = run(&[
        "--rendering".as_ref(),
        "v2.5".as_ref(),
        block(3).as_os_str(),
        block(0).as_os_str(),
    ]);
    assert!(ok);
    assert_eq!(tls_cert_hash(&lines), Value::Null);
    // No config block and no flag: v2.5, with a note.
    let (ok, lines, stderr) = run(&[block(3).as_os_str()]);
    assert!(ok);
    assert_eq!(tls_cert_hash(&lines), Value::Null);
    assert!(stderr.contains("--rendering v3"), "{stderr}");
    let (ok, lines, _) = run(&["--rendering".as_ref(), "v3".as_ref(), block(3).as_os_str()]);
    assert!(ok);
    assert_eq!(tls_cert_hash(&lines), "");
    // Consecutive inputs must chain: the recording's block 10, then the update generated after it.
    let (ok, lines, stderr) = run(&[block(10).as_os_str(), update.as_os_str()]);
    assert!(ok, "{stderr}");
    let config = lines.iter().find(|l| l["type"] == "Config").unwrap();
    assert_eq!(
        config["content"]["data"]["data"]["config"]["channel_group"]["groups"]["Orderer"]["values"]
            ["ConsensusType"]["value"]["metadata"]["request_batch_max_interval"],
        "500ms"
    );
    // A bad name for the flag.
    let (ok, _, stderr) = run(&["--rendering".as_ref(), "v4".as_ref(), block(3).as_os_str()]);
    assert!(!ok);
    assert!(stderr.contains("expected `v2.5` or `v3`"), "{stderr}");
}
