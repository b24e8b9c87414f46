//! Streams are closed: the daemon (the real binary) against the peer simulator over TLS, with a chain longer than
//! its window of recent blocks, so every replay (`enable --from 0`) reads history on a catch-up stream of its own.
//! The simulator counts the Deliver streams open on it: whatever the replays, the steady state is the channel's one
//! stream; and no more catch-up streams than `max_catch_up_streams` are ever open at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chaintrigger::peersim::PeerSimHandle;

use crate::support::daemon::{
    Behaviour, Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, blocks_daemon,
    eventually,
};
use crate::support::fabric::wait_open_streams;

/// The chain's height in these tests: well beyond the daemon's window of 64 recent blocks.
const HEIGHT: u64 = 100;

/// Records the most Deliver streams open on the simulator at once, until dropped.
struct Peak {
    most: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Peak {
    fn watch(handle: &PeerSimHandle) -> Peak {
        let most = Arc::new(AtomicU64::new(handle.open_streams()));
        let mut open = handle.subscribe_open_streams();
        let record = most.clone();
        let task = tokio::spawn(async move {
            loop {
                record.fetch_max(*open.borrow_and_update(), Ordering::SeqCst);
                if open.changed().await.is_err() {
                    return;
                }
            }
        });
        Peak { most, task }
    }

    fn most(&self) -> u64 {
        self.most.load(Ordering::SeqCst)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn long_chain() -> Network {
    let network = Network::start(None).await;
    network.generate(HEIGHT - network.height());
    assert_eq!(network.height(), HEIGHT);
    network
}

#[tokio::test]
async fn twenty_replays_leave_one_stream_per_channel() {
    let network = long_chain().await;
    let receiver = Receiver::start().await;
    let (_files, daemon) = blocks_daemon(&network.channel_toml(), &receiver).await;
    daemon.admin.wait_position("blocks", HEIGHT).await;
    wait_open_streams(network.handle(), 1).await;
    let peak = Peak::watch(network.handle());

    // Twenty replays from the genesis block: every other one runs to the end, the others are cut short by the
    // next (a stream dropped half-way must be closed too).
    for replay in 0..20 {
        let (status, body) = daemon
            .admin
            .call(reqwest::Method::POST, "/v1/triggers/blocks/enable?from=0")
            .await;
        assert_eq!(status, 200, "replay {replay}: {body}");
        if replay % 2 == 0 {
            daemon.admin.wait_position("blocks", HEIGHT).await;
        } else {
            receiver
                .wait_accepted("blocks", receiver.accepted("blocks").len() + 5, PATIENCE)
                .await;
        }
    }
    daemon.admin.wait_position("blocks", HEIGHT).await;

    let took = wait_open_streams(network.handle(), 1).await;
    // Never more than the channel's stream and its 4 catch-up streams, even counting a cut-short replay's stream
    // still closing on the peer as the next opens.
    assert!(
        peak.most() <= 5,
        "at most the channel's stream and max_catch_up_streams: {} were open",
        peak.most()
    );
    // Steady: nothing closes late or opens again.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(network.handle().open_streams(), 1, "after {took:?}");
    let channel = daemon.admin.channel().await;
    let catch_up = &channel["catch_up"];
    assert_eq!(catch_up["open"], 0, "{channel}");
    assert_eq!(catch_up["waiting"], 0, "{channel}");
    // Every completed replay pushed the whole chain again, in order.
    let accepted = receiver.accepted("blocks");
    assert!(accepted.len() >= 11 * HEIGHT as usize, "{}", accepted.len());
    assert_eq!(accepted.last().map(String::as_str), Some("block-99"));
    daemon.terminate().await;
    wait_open_streams(network.handle(), 0).await;
}

#[tokio::test]
async fn catch_up_streams_are_capped_and_the_rest_wait_their_turn() {
    let network = long_chain().await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let names: Vec<String> = (0..5).map(|i| format!("replay-{i}")).collect();
    let triggers: Vec<TriggerSpec> = names
        .iter()
        .map(|name| {
            receiver.set(name, Behaviour::Delay(std::time::Duration::from_millis(15)));
            TriggerSpec::new(name, "Block", receiver.target_toml(name))
        })
        .collect();
    let channel = network.channel_toml().replacen(
        "\n[[channels.peers]]",
        "max_catch_up_streams = 2\n\n[[channels.peers]]",
        1,
    );
    files.write_config_with_channel(&channel, &triggers);
    let daemon = Daemon::start(&files).await;
    // The daemon's own count, sampled: exact, where the simulator's lags by the time a reset takes to arrive.
    let most_open = Arc::new(AtomicU64::new(0));
    let sampler = {
        let admin = daemon.admin.clone();
        let most_open = most_open.clone();
        tokio::spawn(async move {
            loop {
                let catch_up = admin.channel().await["catch_up"].clone();
                most_open.fetch_max(catch_up["open"].as_u64().unwrap_or(0), Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
    };

    // While five triggers read history with two catch-up streams, the others are shown waiting.
    let waiting = eventually(
        "triggers waiting for a catch-up stream",
        PATIENCE,
        || async {
            let (_, channels) = daemon
                .admin
                .call(reqwest::Method::GET, "/v1/channels")
                .await;
            let catch_up = channels["channels"][0]["catch_up"].clone();
            (catch_up["waiting"].as_u64() >= Some(1)).then_some(catch_up)
        },
    )
    .await;
    assert_eq!(waiting["limit"], 2, "{waiting}");
    assert!(waiting["open"].as_u64() <= Some(2), "{waiting}");
    let metrics = daemon.admin.call(reqwest::Method::GET, "/metrics").await.1;
    assert!(
        metrics.as_str().is_some_and(
            |m| m.contains("chaintrigger_channel_catch_up_streams{channel=\"mychannel\"}")
        ),
        "{metrics}"
    );

    for name in &names {
        daemon.admin.wait_position(name, HEIGHT).await;
    }
    sampler.abort();
    wait_open_streams(network.handle(), 1).await;
    assert_eq!(
        most_open.load(Ordering::SeqCst),
        2,
        "two catch-up streams at a time, never more"
    );
    for name in &names {
        assert_eq!(
            receiver.accepted(name),
            crate::support::daemon::block_ids(0, HEIGHT),
            "{name} pushed every block once, in order"
        );
    }
    assert!(
        files
            .log()
            .contains("every catch-up stream of the channel is in use"),
        "the wait is logged"
    );
    daemon.terminate().await;
}
