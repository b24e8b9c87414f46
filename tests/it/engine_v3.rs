//! The daemon end to end on a Fabric v3.1 network (SmartBFT ordering, `V3_0` capability) served by the peer
//! simulator: every event once and in order, rendered as v3's configtxlator renders them (learned from the
//! channel's last config block, which the daemon reads at start), a BFT config update's options reaching a
//! Config trigger's filter; and the rendering each generation gets, unless pinned in the channel's TOML.

use chaintrigger::events::{ExtractOptions, Rendering, extract};
use chaintrigger::fabric::decode::decode_block;
use chaintrigger::fabric::proto::common;
use chaintrigger::peersim::PeerSimHandle;
use chaintrigger::peersim::block::{
    BlockInputs, ChainTip, block_config, build_config_block, edit_smartbft_options,
};
use chaintrigger::peersim::fixture::Recording;
use prost::Message;
use serde_json::{Value, json};

use crate::support::daemon::{
    Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, expected_ids,
};

/// Sets the SmartBFT `request_batch_max_interval` in a channel configuration.
fn set_batch_interval(config: &mut common::Config, interval: &str) {
    edit_smartbft_options(config, |o| o.request_batch_max_interval = interval.into())
        .expect("a BFT channel configuration");
}

/// A Tx trigger from the chain's head pushing each transaction's `tls_cert_hash` as `{"hash": ...}`.
fn tls_cert_hash_trigger(receiver: &Receiver) -> TriggerSpec {
    let mut trigger = TriggerSpec::new("hashes", "Tx", receiver.target_toml("hashes"));
    trigger.start = None;
    trigger.filter = Some((
        "jq",
        "{hash: .content.data.header.channel_header.tls_cert_hash}".to_owned(),
    ));
    trigger
}

/// The envelopes of blocks `from..to` as the daemon should push them in `rendering`.
fn expected_envelopes(
    handle: &PeerSimHandle,
    rendering: Rendering,
    from: u64,
    to: u64,
) -> Vec<Value> {
    let options = ExtractOptions {
        instance_id: "csi-engine-test".to_owned(),
        include_invalid: false,
        rendering,
    };
    (from..to)
        .flat_map(|number| {
            let block = decode_block(&handle.block(number).expect("the block exists"))
                .expect("the block decodes");
            extract(&block, &options)
                .into_iter()
                .map(|event| event.into_envelope())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bft_channel_is_followed_end_to_end_as_fabric_v3_renders_it() {
    let network = Network::start_recording(Recording::V3_1, None).await;
    // Some blocks before the daemon starts: its stream starts at the newest, which names block 0 as the last
    // config block, so the daemon reads block 0 to learn the rendering.
    network.generate(3);
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let mut config = TriggerSpec::new("config", "Config", receiver.target_toml("config"));
    config.filter = Some((
        "jq",
        ".content.data.data.config.channel_group.groups.Orderer.values.ConsensusType \
         | {version, interval: .value.metadata.request_batch_max_interval}"
            .to_owned(),
    ));
    let mut empty_hashes = TriggerSpec::new("v3-txs", "Tx", receiver.target_toml("v3-txs"));
    empty_hashes.filter = Some((
        "jq",
        r#"select(.content.data.header.channel_header.tls_cert_hash == "") | .id"#.to_owned(),
    ));
    files.write_config(
        &network,
        &[
            TriggerSpec::new("all", "*", receiver.target_toml("all")),
            config,
            empty_hashes,
        ],
    );
    let daemon = Daemon::start(&files).await;

    network.generate(2);
    let update = network
        .handle()
        .update_config(|config| set_batch_interval(config, "500ms"))
        .expect("a BFT config update");
    let last = network.generate(2);
    assert!(last > update);
    for name in ["all", "config", "v3-txs"] {
        daemon.admin.wait_position(name, last + 1).await;
    }

    let handle = network.handle();
    // Every event once, in chain order, each envelope as v3's configtxlator renders its content.data.
    let want = expected_envelopes(handle, Rendering::V3, 0, last + 1);
    let pushed: Vec<Value> = receiver
        .pushes("all")
        .into_iter()
        .map(|p| p.payload)
        .collect();
    assert_eq!(pushed.len(), want.len());
    for (ours, theirs) in pushed.iter().zip(&want) {
        assert_eq!(ours, theirs, "event {}", theirs["id"]);
    }
    assert_eq!(
        receiver.accepted("v3-txs"),
        expected_ids(handle, "Tx", 0, last + 1),
        "every transaction's tls_cert_hash is \"\" as v3 prints it"
    );
    // The genesis configuration, then the update: its SmartBFT options reach the Config trigger's filter.
    let configs: Vec<Value> = receiver
        .pushes("config")
        .into_iter()
        .map(|p| p.payload)
        .collect();
    assert_eq!(
        configs,
        [
            json!({"version": "0", "interval": "1s"}),
            json!({"version": "1", "interval": "500ms"})
        ]
    );
    assert_eq!(
        receiver.accepted("config"),
        [
            "config-0-9a8330c014caaaea336f06c65b79a250cf42bb39c36b9fba5c4810e407bd4c37".to_owned(),
            format!("config-{update}-"),
        ]
    );
    daemon.terminate().await;
}

/// How the daemon renders each generation's events: learned from the channel's configuration (v2.5 without the
/// `V3_0` capability, v3 with it), or as pinned in the channel's TOML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_gets_its_generations_rendering_unless_pinned() {
    for (recording, pin, want, shown) in [
        (
            Recording::V2_5,
            None,
            Value::Null,
            // Block 8 is the v2.5 recording's last config block.
            json!({"rendering": "v2.5", "source": "config_block", "from_block": 8}),
        ),
        (
            Recording::V2_5,
            Some("v3"),
            json!(""),
            json!({"rendering": "v3", "source": "pinned"}),
        ),
        (
            Recording::V3_1,
            Some("v2.5"),
            Value::Null,
            json!({"rendering": "v2.5", "source": "pinned"}),
        ),
    ] {
        let network = Network::start_recording(recording, None).await;
        let receiver = Receiver::start().await;
        let files = DaemonFiles::new();
        let keys = pin
            .map(|p| format!("rendering = \"{p}\"\n"))
            .unwrap_or_default();
        files.write_config_with_channel(
            &network.channel_toml_with(&keys, &[]),
            &[tls_cert_hash_trigger(&receiver)],
        );
        let daemon = Daemon::start(&files).await;
        // Once the trigger has seen the chain's head, new transactions arrive in the channel's rendering.
        let head = network.height();
        daemon.admin.wait_position("hashes", head).await;
        let last = network.generate(3);
        daemon.admin.wait_position("hashes", last + 1).await;
        let pushes = receiver.wait_accepted("hashes", 1, PATIENCE).await;
        assert!(!pushes.is_empty());
        for push in receiver.pushes("hashes") {
            assert_eq!(
                push.payload,
                json!({ "hash": want }),
                "{recording} pinned {pin:?}"
            );
        }
        // The channel's status says which rendering its events have, and why.
        let channel = daemon.admin.channel().await;
        assert_eq!(channel["rendering"], shown, "{recording} pinned {pin:?}");
        daemon.terminate().await;
    }
}

/// Block metadata is input from the network: a newest block naming a last config block that is not one (a
/// crafted or damaged block) leaves the channel rendering as v2.5, saying so in its status, and the channel
/// follows the next real config block from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_config_block_that_is_not_one_falls_back_to_v2_5_until_the_next_config_block() {
    use chaintrigger::peersim::recording_user1;

    let mut blocks = Recording::V3_1.blocks();
    let mut newest = common::Block::decode(blocks[10].clone()).expect("block 10");
    let metadata = &mut newest.metadata.as_mut().expect("metadata").metadata;
    let mut signatures = common::Metadata::decode(metadata[0].clone()).expect("signatures");
    signatures.value = common::OrdererBlockMetadata {
        last_config: Some(common::LastConfig { index: 5 }),
        consenter_metadata: Default::default(),
    }
    .encode_to_vec()
    .into();
    metadata[0] = signatures.encode_to_vec().into();
    blocks[10] = newest.encode_to_vec().into();
    let genesis = blocks[0].clone();
    let network = Network::start_blocks(Recording::V3_1, blocks, None).await;

    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    files.write_config(&network, &[tls_cert_hash_trigger(&receiver)]);
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("hashes", network.height()).await;
    let (status, channels) = daemon
        .admin
        .call(reqwest::Method::GET, "/v1/channels")
        .await;
    assert_eq!(status, 200);
    let error = channels["channels"][0]["last_error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("block 5 is not a config block") && error.contains("rendered as v2.5"),
        "{channels}"
    );
    let before = network.generate(1);
    daemon.admin.wait_position("hashes", before + 1).await;

    // A config update after the tampered block: from it on, the channel is rendered as v3 again.
    let tip = ChainTip::of_block(&network.handle().block(before).expect("the tip")).unwrap();
    let current = block_config(&genesis).expect("the genesis configuration");
    let mut updated = current.clone();
    set_batch_interval(&mut updated, "750ms");
    let inputs = BlockInputs::fixed("mychannel", 1_800_000_000, [3; 24]);
    let signer = recording_user1(Recording::V3_1);
    let update = build_config_block(&tip, &current, updated, &signer, &inputs).expect("an update");
    network
        .handle()
        .append_block(update)
        .expect("the update is the next block");
    let after = network.generate(1);
    daemon.admin.wait_position("hashes", after + 1).await;

    let hashes: Vec<(String, Value)> = receiver
        .pushes("hashes")
        .into_iter()
        .map(|p| (p.event_id, p.payload["hash"].clone()))
        .collect();
    let want: Vec<(String, Value)> = expected_ids(network.handle(), "Tx", before, after + 1)
        .into_iter()
        .map(|id| {
            let block: u64 = id.split('-').nth(1).unwrap().parse().unwrap();
            let hash = if block > before {
                json!("")
            } else {
                Value::Null
            };
            (id, hash)
        })
        .collect();
    assert_eq!(hashes, want);
    daemon.terminate().await;
}
