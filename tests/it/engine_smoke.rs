//! The daemon in this process, end to end with real parts: the peer simulator over TLS -> the engine (one
//! channel feed, two triggers) -> the bundled runtime running a Python function -> the SQLite file. Then a
//! restart resumes from the stored positions without pushing anything twice, the triggers a few blocks behind
//! sharing the channel's stream.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chaintrigger::admin::{EngineControl, TriggerState};
use chaintrigger::app::{App, AppOptions};
use chaintrigger::config::{Config, TriggerName};
use chaintrigger::events::{EventType, ExtractOptions, extract};
use chaintrigger::fabric::decode::decode_block;
use chaintrigger::peersim::{GeneratorConfig, PeerSimConfig};
use chaintrigger::store::{SqliteStore, Store as _};
use chaintrigger::trigger::state::Position;
use tokio_util::sync::CancellationToken;

use crate::support::fabric::{PEER_NAME, RunningPeer, TlsPki, fixture_path};
use crate::support::runtime::test_dir;

const TOKEN: &str = "smoke-test-admin-token-0123456789";

/// Notes the id of every event it receives in its log (`MARK <id>`, one line per call).
const RECORD_PY: &str = r#"import json

def handler(event, context):
    payload = json.loads(event)
    print("MARK " + payload["id"])
    return "ok"
"#;

fn text(path: &Path) -> String {
    toml::Value::String(path.to_str().expect("UTF-8 test path").to_owned()).to_string()
}

/// A function `smoke/<name>` in the functions folder, noting its calls in its log; returns the log's path in
/// the runtime's data folder `data`.
fn write_function(functions: &Path, data: &Path, name: &str) -> PathBuf {
    let folder = functions.join("smoke").join(name);
    std::fs::create_dir_all(&folder).expect("function folder");
    std::fs::write(folder.join("index.py"), RECORD_PY).expect("handler");
    std::fs::write(
        folder.join("function.toml"),
        "runtime = \"python3\"\nhandler = \"index.handler\"\ntimeout = 10\n",
    )
    .expect("function.toml");
    data.join("pool/logs/smoke").join(format!("{name}.log"))
}

/// The event ids a function's log notes, in order.
fn calls(log: &Path) -> Vec<String> {
    match std::fs::read_to_string(log) {
        Ok(text) => text
            .lines()
            .filter_map(|line| line.strip_prefix("MARK "))
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The ids of `block`'s events of `kind` whose transaction invokes `taskmgr` (all of them for Block events).
fn expected_ids(peer: &RunningPeer, blocks: std::ops::Range<u64>, kind: EventType) -> Vec<String> {
    let options = ExtractOptions {
        instance_id: "smoke".into(),
        include_invalid: false,
        ..ExtractOptions::default()
    };
    blocks
        .flat_map(|number| {
            let bytes = peer
                .handle
                .block(number)
                .expect("the simulator has the block");
            let block = decode_block(&bytes).expect("a decodable block");
            extract(&block, &options)
        })
        .filter(|event| event.event_type() == kind)
        .filter(|event| kind == EventType::Block || event.envelope()["content"]["to"] == "taskmgr")
        .map(|event| event.id().to_owned())
        .collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_python_function_and_positions_survive_a_restart() {
    chaintrigger::install_crypto_provider();
    let pki = TlsPki::new();
    let base = PeerSimConfig::from_fixtures();
    let signer = base.generator.as_ref().expect("generator").signer.clone();
    let peer = RunningPeer::start(PeerSimConfig {
        tls: Some(pki.server_tls(false)),
        generator: Some(GeneratorConfig {
            signer,
            interval: None,
        }),
        ..base
    })
    .await;
    let recorded = peer.handle.height();

    let dir = test_dir("engine-smoke-");
    let functions = dir.path().join("functions");
    let runtime_data = dir.path().join("runtime");
    let blocks_log = write_function(&functions, &runtime_data, "blocks");
    let txs_log = write_function(&functions, &runtime_data, "txs");
    let tls_ca = dir.path().join("tls-ca.pem");
    std::fs::write(&tls_ca, pki.ca.cert_pem()).expect("TLS CA");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, TOKEN).expect("token");
    let database = dir.path().join("state").join("chaintrigger.sqlite");
    let config_path = dir.path().join("chaintrigger.toml");
    // `blocks` starts four blocks before the chain's end: behind the channel's stream (which starts at the
    // newest block), it catches up on its own stream first. `txs` starts at the latest block.
    let config_text = format!(
        r#"instance_id = "smoke"
database = {database}

[admin]
listen = "127.0.0.1:0"
token = {{ file = {token} }}

[runtime]
enabled = true
listen = "127.0.0.1:0"
data_dir = {data}
functions = {functions}

[[channels]]
name = "mychannel"
msp_id = "Org1MSP"
certificate = {cert}
key = {key}

[[channels.peers]]
address = "{address}"
tls_ca = {tls_ca}
server_name = "{PEER_NAME}"

[[triggers]]
name = "blocks"
channel = "mychannel"
event = "Block"
start = {start}

[triggers.target.function_compute]
endpoint = "embedded"
service = "smoke"
function = "blocks"

[[triggers]]
name = "txs"
channel = "mychannel"
event = "Tx"
filter = 'select(.content.to == "taskmgr") | {{id: .id}}'

[triggers.target.function_compute]
endpoint = "embedded"
service = "smoke"
function = "txs"
"#,
        database = text(&database),
        token = text(&token),
        data = text(&runtime_data),
        functions = text(&functions),
        cert = text(&fixture_path("msp/user1_signcert.pem")),
        key = text(&fixture_path("msp/user1_key.pem")),
        address = peer.address,
        tls_ca = text(&tls_ca),
        start = recorded - 4,
    );
    std::fs::write(&config_path, &config_text).expect("configuration");
    let load = || Config::load(&config_path).expect("the configuration loads");
    let options = AppOptions {
        reload_on_sighup: false,
        ..AppOptions::default()
    };

    let shutdown = CancellationToken::new();
    let app = App::start(load(), options.clone(), shutdown.clone())
        .await
        .expect("the daemon starts");
    let engine = app.engine();
    assert!(app.runtime_addr().is_some());

    // The admin API answers with the token, refuses without it.
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/triggers", app.admin_addr());
    let refused = client.get(&url).send().await.expect("admin API");
    assert_eq!(refused.status(), 401);
    let listed = client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin API");
    assert_eq!(listed.status(), 200);

    // `txs` records `latest` as the chain height at first sight.
    let mut txs_started = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !txs_started {
        assert!(Instant::now() < deadline, "txs never started");
        let status = EngineControl::trigger(engine.as_ref(), "txs")
            .await
            .expect("txs is listed");
        txs_started = status.chain_height == Some(recorded)
            && status.position.block == recorded
            && SqliteStore::open(&database)
                .expect("store")
                .trigger(&TriggerName::new("txs").expect("name"))
                .expect("store read")
                .is_some();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for _ in 0..3 {
        peer.handle.generate_block().expect("a generated block");
    }
    let height = peer.handle.height();
    let want_blocks = expected_ids(&peer, recorded - 4..height, EventType::Block);
    let want_txs = expected_ids(&peer, recorded..height, EventType::Tx);
    assert_eq!(want_blocks.len(), 7);
    assert!(!want_txs.is_empty(), "generated blocks invoke taskmgr");
    wait_until("every event to arrive", || {
        calls(&blocks_log).len() >= want_blocks.len() && calls(&txs_log).len() >= want_txs.len()
    })
    .await;
    assert_eq!(
        calls(&blocks_log),
        want_blocks,
        "Block events in chain order"
    );
    assert_eq!(
        calls(&txs_log),
        want_txs,
        "filtered Tx events in chain order"
    );

    // The last outcome is recorded just after the function answered.
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in ["blocks", "txs"] {
        loop {
            let status = EngineControl::trigger(engine.as_ref(), name)
                .await
                .expect("the trigger is listed");
            if status.position.block == height {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stopped at {:?}",
                status.position
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let blocks = EngineControl::trigger(engine.as_ref(), "blocks")
        .await
        .expect("blocks is listed");
    assert_eq!(blocks.state, TriggerState::Running);
    assert_eq!(blocks.delivered, 7);
    assert_eq!(blocks.chain_height, Some(height));
    assert_eq!(blocks.lag, Some(0));
    let latencies = EngineControl::invoke_latencies(engine.as_ref()).await;
    let blocks_latency = latencies
        .iter()
        .find(|l| l.trigger == "blocks")
        .expect("blocks has a histogram");
    assert_eq!(blocks_latency.histogram.count(), 7);
    let channels = EngineControl::channels(engine.as_ref()).await;
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].chain_height, Some(height));
    assert!(channels[0].peer.is_some(), "{channels:?}");

    shutdown.cancel();
    app.wait().await.expect("a clean shutdown");

    // Both positions are in the SQLite file: after the last block.
    let store = SqliteStore::open(&database).expect("store");
    for name in ["blocks", "txs"] {
        let record = store
            .trigger(&TriggerName::new(name).expect("name"))
            .expect("store read")
            .expect("a record");
        assert_eq!(record.position, Position::block_start(height), "{name}");
    }
    drop(store);

    // Two blocks while the daemon is down. The restart resumes at the stored positions: the channel's stream
    // goes back for both triggers (one request for the newest block, one for the channel's last config block to
    // learn how its events are rendered, one from the stored positions) instead of each trigger opening its own
    // catch-up stream; nothing already pushed is pushed again.
    for _ in 0..2 {
        peer.handle.generate_block().expect("a generated block");
    }
    let requests = peer.handle.requests();
    let shutdown = CancellationToken::new();
    let app = App::start(load(), options, shutdown.clone())
        .await
        .expect("the daemon starts again");
    peer.handle.generate_block().expect("a generated block");
    let new_height = peer.handle.height();
    let mut want_blocks = want_blocks;
    want_blocks.extend(expected_ids(&peer, height..new_height, EventType::Block));
    let mut want_txs = want_txs;
    want_txs.extend(expected_ids(&peer, height..new_height, EventType::Tx));
    wait_until("the new block's events", || {
        calls(&blocks_log).len() >= want_blocks.len() && calls(&txs_log).len() >= want_txs.len()
    })
    .await;
    shutdown.cancel();
    app.wait().await.expect("a clean shutdown");
    assert_eq!(calls(&blocks_log), want_blocks);
    assert_eq!(calls(&txs_log), want_txs);
    assert_eq!(
        peer.handle.requests() - requests,
        3,
        "one stream for the channel, re-seeked once, and one read of its last config block; no catch-up streams"
    );
}

/// With a window of two blocks, a trigger whose target takes 150 ms per event falls behind the channel's recent
/// blocks: it reads them on its own stream and still gets every event in order, while the other trigger of the
/// channel is done long before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_slower_than_the_window_reads_behind_on_its_own_stream_without_holding_back_another()
 {
    use crate::support::daemon::{
        Behaviour, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec,
    };
    use chaintrigger::trigger::EngineOptions;

    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    receiver.set("slow", Behaviour::Delay(Duration::from_millis(150)));
    let files = DaemonFiles::new();
    let height = network.height();
    let spec = |name: &str| TriggerSpec {
        start: Some(height),
        ..TriggerSpec::new(name, "Block", receiver.target_toml(name))
    };
    files.write_config(&network, &[spec("fast"), spec("slow")]);
    let config = Config::load(&files.config_path()).expect("the configuration loads");
    let options = AppOptions {
        reload_on_sighup: false,
        engine: EngineOptions { window_blocks: 2 },
        ..AppOptions::default()
    };
    let shutdown = CancellationToken::new();
    let app = App::start(config, options, shutdown.clone())
        .await
        .expect("the daemon starts");
    let engine = app.engine();
    let deadline = Instant::now() + PATIENCE;
    while EngineControl::channels(engine.as_ref()).await[0].chain_height != Some(height) {
        assert!(
            Instant::now() < deadline,
            "the channel never reported its height"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let requests = network.handle().requests();

    network.generate(8);
    let want: Vec<String> = (height..height + 8).map(|n| format!("block-{n}")).collect();
    let fast = receiver.wait_accepted("fast", want.len(), PATIENCE).await;
    assert_eq!(fast, want);
    assert!(
        receiver.accepted("slow").len() < want.len(),
        "the fast trigger finished before the slow one"
    );
    let slow = receiver.wait_accepted("slow", want.len(), PATIENCE).await;
    assert_eq!(slow, want, "every event, in chain order, once");
    assert!(
        network.handle().requests() > requests,
        "the slow trigger opened its own stream"
    );
    // The last outcome is recorded just after the receiver answered.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let slow = EngineControl::trigger(engine.as_ref(), "slow")
            .await
            .expect("slow is listed");
        if slow.position.block == height + 8 {
            assert_eq!(slow.lag, Some(0));
            assert_eq!(slow.delivered, 8);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slow stopped at {:?}",
            slow.position
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    app.wait().await.expect("a clean shutdown");
}

/// A reload that flips a trigger's `enabled` setting disables it, or enables it from the latest block, as the
/// admin commands would; the report names it as changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_a_changed_enabled_setting() {
    use crate::support::daemon::{DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec};

    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let height = network.height();
    let spec = |enabled: bool| TriggerSpec {
        start: Some(height),
        enabled,
        ..TriggerSpec::new("blocks", "Block", receiver.target_toml("blocks"))
    };
    files.write_config(&network, &[spec(true)]);
    let config = Config::load(&files.config_path()).expect("the configuration loads");
    let options = AppOptions {
        reload_on_sighup: false,
        ..AppOptions::default()
    };
    let shutdown = CancellationToken::new();
    let app = App::start(config, options, shutdown.clone())
        .await
        .expect("the daemon starts");
    let engine = app.engine();
    network.generate(1);
    receiver.wait_accepted("blocks", 1, PATIENCE).await;

    files.write_config(&network, &[spec(false)]);
    let report = EngineControl::reload(engine.as_ref())
        .await
        .expect("the reload is accepted");
    assert_eq!(report.changed, vec!["blocks".to_owned()]);
    let status = EngineControl::trigger(engine.as_ref(), "blocks")
        .await
        .expect("listed");
    assert_eq!(status.state, TriggerState::Disabled);
    network.generate(2);

    let deadline = Instant::now() + PATIENCE;
    while EngineControl::channels(engine.as_ref()).await[0].chain_height != Some(height + 3) {
        assert!(
            Instant::now() < deadline,
            "the channel never saw the new blocks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    files.write_config(&network, &[spec(true)]);
    EngineControl::reload(engine.as_ref())
        .await
        .expect("the reload is accepted");
    let status = EngineControl::trigger(engine.as_ref(), "blocks")
        .await
        .expect("listed");
    assert_eq!(status.state, TriggerState::Running);
    // Enabled from the latest block: the blocks made while disabled are not pushed.
    network.generate(1);
    let pushed = receiver.wait_accepted("blocks", 2, PATIENCE).await;
    assert_eq!(
        pushed,
        vec![format!("block-{height}"), format!("block-{}", height + 3)]
    );
    shutdown.cancel();
    app.wait().await.expect("a clean shutdown");
}
