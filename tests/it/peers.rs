//! Peers watched honestly, with two simulated peers of one channel over TLS (the same ledger, their own faults):
//! a frozen peer (TCP up, nothing flowing) and a stale one (cut off from the orderer) are left for the healthy
//! one; a stream that stalls on a working connection is replaced. First the Deliver client alone, then the daemon
//! (the real binary) with its channel status, metrics and triggers.

use std::time::{Duration, Instant};

use chaintrigger::fabric::deliver::{StartPosition, Subscription};
use chaintrigger::peersim::Faults;
use tokio_util::sync::CancellationToken;

use crate::support::daemon::{
    Daemon, DaemonFiles, Network, PATIENCE, Receiver, block_ids, blocks_daemon, eventually,
};
use crate::support::fabric::{RunningPeer, TlsPki, channel_config, next_numbers, within};

#[tokio::test]
async fn a_frozen_peer_is_left_within_the_peer_timeout() {
    let pki = TlsPki::new();
    let (first, second) = RunningPeer::fixture_pair(Some(pki.server_tls(false))).await;
    let mut config = channel_config(
        vec![first.endpoint(), second.endpoint()],
        Some(pki.client_tls()),
    );
    config.options.peer_timeout = Duration::from_secs(2);
    config.options.peer_check_interval = None;
    let mut subscription =
        Subscription::new(config, StartPosition::Block(20), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 4).await, [20, 21, 22, 23]);
    let status = subscription.status_handle();
    assert_eq!(
        status.snapshot().current_peer,
        Some(first.address.to_string())
    );

    // TCP stays up, nothing flows, HTTP/2 pings go unanswered: keepalive alone would take 70 s + 20 s.
    first.handle.freeze(true);
    let frozen_at = Instant::now();
    first.handle.generate_block().expect("generate");
    assert_eq!(next_numbers(&mut subscription, 1).await, [24]);
    let took = frozen_at.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "block 24 came {took:?} after the freeze; the peer timeout is 2 s"
    );
    let now = status.snapshot();
    assert_eq!(now.current_peer, Some(second.address.to_string()));
    let error = now.peers[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("frozen or unreachable"), "{now:?}");
    assert!(now.peers[0].last_error_at.is_some());
    first.handle.freeze(false);
}

#[tokio::test]
async fn a_stale_peer_is_left_for_the_highest_one() {
    let pki = TlsPki::new();
    let (first, second) = RunningPeer::fixture_pair(Some(pki.server_tls(false))).await;
    let mut config = channel_config(
        vec![first.endpoint(), second.endpoint()],
        Some(pki.client_tls()),
    );
    config.options.peer_check_interval = Some(Duration::from_millis(200));
    config.options.stale_peer_blocks = 3;
    let mut subscription =
        Subscription::new(config, StartPosition::Block(20), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 4).await, [20, 21, 22, 23]);

    // The first peer keeps serving but gets no more blocks; the channel grows by 6 on the other.
    first.handle.go_stale();
    for _ in 0..6 {
        first.handle.generate_block().expect("generate");
    }
    assert_eq!(
        next_numbers(&mut subscription, 6).await,
        [24, 25, 26, 27, 28, 29]
    );
    let now = subscription.status_handle().snapshot();
    assert_eq!(now.current_peer, Some(second.address.to_string()));
    assert_eq!(now.best_height(), Some(30));
    assert_eq!(now.peers[0].height, Some(24), "{now:?}");
    assert!(now.peers[0].stale, "{now:?}");
    assert!(!now.peers[1].stale, "{now:?}");
    let message = now.last_error.clone().unwrap_or_default();
    assert!(
        message.contains(&format!("peer {} is stale", first.address)),
        "{message}"
    );
}

#[tokio::test]
async fn a_stalled_stream_on_a_working_connection_is_replaced() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    peer.handle.set_faults(Faults {
        hang_after_blocks: Some(2),
        ..Faults::default()
    });
    let mut config = channel_config(vec![peer.endpoint()], Some(pki.client_tls()));
    config.options.peer_timeout = Duration::from_secs(2);
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 5).await, [0, 1, 2, 3, 4]);
    let now = subscription.status_handle().snapshot();
    assert_eq!(now.reconnects, 1, "{now:?}");
    assert!(
        now.last_error
            .as_deref()
            .is_some_and(|e| e.contains("has block 2 but its stream did not deliver it")),
        "{now:?}"
    );
}

#[tokio::test]
async fn a_quiet_peer_that_answers_its_checks_is_kept() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    let mut config = channel_config(vec![peer.endpoint()], Some(pki.client_tls()));
    config.options.peer_timeout = Duration::from_secs(2);
    let mut subscription =
        Subscription::new(config, StartPosition::Block(24), CancellationToken::new());
    let status = subscription.status_handle();
    let requests = peer.handle.requests();
    let waiting = tokio::spawn(async move {
        let block = subscription.next_block().await;
        (subscription, block)
    });
    // Three check periods of silence: checked (NOT_FOUND, the peer is alive), never dropped.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let now = status.snapshot();
    assert!(now.connected, "{now:?}");
    assert_eq!(now.reconnects, 0, "{now:?}");
    assert_eq!(now.last_error, None);
    assert!(
        peer.handle.requests() >= requests + 3,
        "the quiet peer was checked"
    );
    assert_eq!(peer.handle.open_streams(), 1, "checks are closed after use");
    peer.handle.generate_block().expect("generate");
    let (_subscription, block) = within("the next block", waiting).await.expect("task");
    assert_eq!(block.expect("a block").number, 24);
}

// ---------------------------------------------------------------------------------------------------------------
// The daemon

/// The daemon (the real binary) on two peers of one channel, the first one first, with a `blocks` trigger pushing
/// every block from 0 to a receiver; returned once the recorded blocks were pushed.
struct TwoPeers {
    network: Network,
    second: RunningPeer,
    receiver: Receiver,
    daemon: Daemon,
    _files: DaemonFiles,
}

impl TwoPeers {
    /// `settings`: lines added to the `[[channels]]` table.
    async fn start(settings: &str) -> TwoPeers {
        let (network, second) = Network::start_with_replica(None).await;
        let receiver = Receiver::start().await;
        let channel = network
            .channel_toml_for(&[&network.peer, &second])
            .replacen(
                "\n[[channels.peers]]",
                &format!("{settings}\n[[channels.peers]]"),
                1,
            );
        let (files, daemon) = blocks_daemon(&channel, &receiver).await;
        receiver.wait_accepted("blocks", 24, PATIENCE).await;
        TwoPeers {
            network,
            second,
            receiver,
            daemon,
            _files: files,
        }
    }
}

async fn metrics(daemon: &Daemon) -> String {
    let (status, body) = daemon.admin.call(reqwest::Method::GET, "/metrics").await;
    assert_eq!(status, 200);
    body.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_daemon_leaves_a_stale_peer_and_measures_lag_against_the_highest() {
    // Every part stays alive to the end of the test (`..` would drop the others at once).
    let TwoPeers {
        network,
        second,
        receiver,
        daemon,
        _files,
    } = TwoPeers::start("peer_check_interval = \"1s\"\nstale_peer_blocks = 3\n").await;

    // The first peer is cut off from the orderer: it keeps its stream up and serves nothing new.
    network.peer.handle.go_stale();
    let last = network.generate(10);
    assert_eq!(last, 33);
    let accepted = receiver.wait_accepted("blocks", 34, PATIENCE).await;
    assert_eq!(accepted, block_ids(0, 34));
    let channel = eventually("the stale peer shown as such", PATIENCE, || async {
        let channel = daemon.admin.channel().await;
        (channel["peers"][0]["stale"] == true && channel["peers"][1]["current"] == true)
            .then_some(channel)
    })
    .await;
    assert_eq!(channel["chain_height"], 34, "{channel}");
    assert_eq!(channel["connected"], true, "{channel}");
    assert_eq!(channel["peer"], second.address.to_string(), "{channel}");
    assert_eq!(channel["peers"][0]["height"], 24, "{channel}");
    assert_eq!(channel["peers"][1]["height"], 34, "{channel}");
    assert!(channel["peers"][0]["checked_at"].is_string(), "{channel}");
    let error = &channel["last_error"];
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("is stale")),
        "{channel}"
    );
    assert!(error["at"].is_string(), "{channel}");
    let text = metrics(&daemon).await;
    let stale = format!(
        "chaintrigger_channel_peer_stale{{channel=\"mychannel\",peer=\"{}\"}} 1",
        network.peer.address
    );
    assert!(text.contains(&stale), "{text}");
    assert!(
        text.contains("chaintrigger_channel_connected{channel=\"mychannel\"} 1"),
        "{text}"
    );
    daemon.terminate().await;
}

#[tokio::test]
async fn lag_is_measured_against_the_highest_height_any_peer_reports() {
    // A generous staleness limit: the daemon stays on the first peer, which falls 5 blocks behind.
    let TwoPeers {
        network,
        second: _second,
        receiver: _receiver,
        daemon,
        _files,
    } = TwoPeers::start("peer_check_interval = \"1s\"\nstale_peer_blocks = 50\n").await;
    network.peer.handle.go_stale();
    network.generate(5);
    let trigger = eventually("lag against the other peer's height", PATIENCE, || async {
        let trigger = daemon.admin.trigger("blocks").await;
        (trigger["chain_height"] == 29 && trigger["lag"] == 5).then_some(trigger)
    })
    .await;
    assert_eq!(trigger["block_height"], 23, "{trigger}");
    let channel = daemon.admin.channel().await;
    assert_eq!(
        channel["peer"],
        network.peer.address.to_string(),
        "{channel}"
    );
    assert_eq!(channel["peers"][0]["stale"], false, "{channel}");
    daemon.terminate().await;
}

#[tokio::test]
async fn the_daemon_leaves_a_frozen_peer_within_its_peer_timeout() {
    // Every part stays alive to the end of the test (`..` would drop the others at once).
    let TwoPeers {
        network,
        second,
        receiver,
        daemon,
        _files,
    } = TwoPeers::start("peer_timeout = \"4s\"\n").await;

    network.peer.handle.freeze(true);
    let frozen_at = Instant::now();
    network.generate(1);
    receiver.wait_accepted("blocks", 25, PATIENCE).await;
    let took = frozen_at.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "block 24 was pushed {took:?} after the peer froze; peer_timeout is 4 s"
    );
    let channel = daemon.admin.channel().await;
    assert_eq!(channel["peer"], second.address.to_string(), "{channel}");
    assert_eq!(channel["peers"][1]["current"], true, "{channel}");
    let frozen = &channel["peers"][0]["last_error"];
    assert!(
        frozen["message"]
            .as_str()
            .is_some_and(|m| m.contains("frozen or unreachable")),
        "{channel}"
    );
    assert!(frozen["at"].is_string(), "{channel}");
    network.peer.handle.freeze(false);
    daemon.terminate().await;
}

#[tokio::test]
async fn a_quiet_channel_shows_connected_after_a_peer_restart() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let (files, daemon) = blocks_daemon(&network.channel_toml(), &receiver).await;
    receiver.wait_accepted("blocks", 24, PATIENCE).await;
    eventually("the daemon's stream on the peer", PATIENCE, || async {
        (network.handle().open_streams() == 1).then_some(())
    })
    .await;

    // Every stream cut, as when the peer restarts; no block comes afterwards.
    network.handle().cut_streams();
    let channel = eventually("the reconnected stream", PATIENCE, || async {
        let channel = daemon.admin.channel().await;
        (channel["reconnects"].as_u64() >= Some(1) && channel["connected"] == true)
            .then_some(channel)
    })
    .await;
    assert_eq!(
        channel["peer"],
        network.peer.address.to_string(),
        "{channel}"
    );
    assert_eq!(network.height(), 24, "no block since");
    let text = metrics(&daemon).await;
    assert!(
        text.contains("chaintrigger_channel_connected{channel=\"mychannel\"} 1"),
        "{text}"
    );
    let (ok, table, _) = crate::support::daemon::cli(&files, &["channels"]).await;
    assert!(ok, "{table}");
    assert!(!table.contains("(disconnected)"), "{table}");
    daemon.terminate().await;
}

#[test]
fn channel_stream_settings_out_of_range_are_refused_with_their_field() {
    let files = DaemonFiles::new();
    let channel = "[[channels]]\nname = \"mychannel\"\nmsp_id = \"Org1MSP\"\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n\
                   max_catch_up_streams = 0\npeer_timeout = \"500ms\"\npeer_check_interval = \"2h\"\nstale_peer_blocks = 0\n\n\
                   [[channels.peers]]\naddress = \"127.0.0.1:7051\"\nplaintext = true\n";
    files.write_config_with_channel(channel, &[]);
    let error = chaintrigger::config::Config::load(&files.config_path())
        .expect_err("out of range")
        .to_string();
    for expected in [
        "channels[0].max_catch_up_streams: 0 is out of range: expected 1 to 64 streams",
        "channels[0].peer_timeout: 500ms is out of range: expected 2s to 10m",
        "channels[0].peer_check_interval: 7200s is out of range: expected 1s to 1h",
        "channels[0].stale_peer_blocks: 0 would move between peers at every block",
    ] {
        assert!(error.contains(expected), "{expected}\n{error}");
    }
    assert!(error.contains("chaintrigger.toml:"), "located: {error}");
}

#[tokio::test]
async fn a_peer_claiming_blocks_it_does_not_serve_is_demoted_not_followed() {
    let pki = TlsPki::new();
    let (honest, liar) = RunningPeer::fixture_pair(Some(pki.server_tls(false))).await;
    liar.handle.set_faults(Faults {
        claim_height: Some(1_000_000),
        ..Faults::default()
    });
    let mut config = channel_config(
        vec![honest.endpoint(), liar.endpoint()],
        Some(pki.client_tls()),
    );
    config.options.peer_check_interval = Some(Duration::from_millis(200));
    config.options.peer_timeout = Duration::from_secs(2);
    let mut subscription =
        Subscription::new(config, StartPosition::Block(20), CancellationToken::new());
    let status = subscription.status_handle();
    let reading = tokio::spawn(async move {
        let numbers = next_numbers(&mut subscription, 12).await;
        (subscription, numbers)
    });
    // The claim draws the subscription once; the liar then says it has no block 24 and is demoted.
    let demoted = eventually("the liar demoted", PATIENCE, || async {
        let now = status.snapshot();
        now.peers[1].demoted_until.is_some().then_some(now)
    })
    .await;
    assert!(
        demoted.peers[1]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("reported height 1000000 but says it does not have block")),
        "{demoted:?}"
    );
    for _ in 0..8 {
        honest.handle.generate_block().expect("generate");
    }
    let (subscription, numbers) = within("the blocks from the honest peer", reading)
        .await
        .expect("task");
    assert_eq!(numbers, (20..32).collect::<Vec<u64>>());
    let now = subscription.status_handle().snapshot();
    assert_eq!(now.current_peer, Some(honest.address.to_string()));
    assert_eq!(
        now.best_height(),
        Some(32),
        "the claim counts for nothing: {now:?}"
    );
    assert!(!now.peers[0].stale, "{now:?}");
}
