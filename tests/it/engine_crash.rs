//! `kill -9` of the real daemon at random moments while blocks arrive fast: no event is lost, order holds per
//! trigger, repeats happen only around a crash, and the SQLite file agrees with what was delivered; with Async
//! Function Compute the runtime de-duplicates the repeats, so each event runs once.

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng as _;

use crate::support::daemon::{
    Behaviour, Daemon, DaemonFiles, Functions, Handler, Network, PATIENCE, Receiver, TriggerSpec,
    block_ids, eventually, expected_ids, first_arrivals,
};

/// How many times the running daemon is killed (every second time, it is killed once more while starting).
const KILLS: usize = 6;
/// Blocks generated in all (each with 1-3 transactions).
const BLOCKS: u64 = 900;

/// The triggers and the event type each receives.
const TRIGGERS: [(&str, &str); 2] = [("txs", "Tx"), ("blocks", "Block")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_event() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let mut triggers: Vec<TriggerSpec> = TRIGGERS
        .iter()
        .map(|(name, event)| TriggerSpec::new(name, event, receiver.target_toml(name)))
        .collect();
    // Every push refused: each event is discarded once, its dead letter written with its position.
    receiver.set("rejected", Behaviour::Status(500));
    let mut rejected = TriggerSpec::new("rejected", "Block", receiver.target_toml("rejected"));
    rejected.attempts = 1;
    triggers.push(rejected);
    files.write_config(&network, &triggers);

    let generator = {
        let handle = network.handle().clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(8));
            for _ in 0..BLOCKS {
                ticks.tick().await;
                handle.generate_block().expect("generate a block");
            }
        })
    };

    let mut daemon = Daemon::start(&files).await;
    for kill in 0..KILLS {
        let pause = rand::rng().random_range(300..2000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        daemon.kill().await;
        check_stored_progress(&files, &network, &receiver);
        if kill % 2 == 1 {
            // Also while it starts up: opening the store, connecting, catching up.
            let starting = Daemon::spawn(&files);
            let pause = rand::rng().random_range(0..300);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            starting.kill().await;
            check_stored_progress(&files, &network, &receiver);
        }
        daemon = Daemon::start(&files).await;
    }
    generator.await.expect("the generator task");
    let height = network.height();
    for name in TRIGGERS
        .map(|(name, _)| name)
        .into_iter()
        .chain(["rejected"])
    {
        eventually(
            &format!("{name} processes all {height} blocks"),
            PATIENCE * 2,
            || async {
                let (status, body) = daemon
                    .admin
                    .call(reqwest::Method::GET, &format!("/v1/triggers/{name}"))
                    .await;
                (status == 200 && body["position"]["block"].as_u64() >= Some(height)).then_some(())
            },
        )
        .await;
    }
    daemon.kill().await;

    let stored = files.stored_triggers();
    for (name, event_type) in TRIGGERS {
        let expected = expected_ids(network.handle(), event_type, 0, height);
        let arrived = receiver.accepted(name);
        let unique = first_arrivals(&arrived);
        assert_eq!(
            unique.len(),
            expected.len(),
            "{name}: distinct events delivered"
        );
        assert_eq!(unique, expected, "{name}: every event, in chain order");
        let repeats = arrived.len() - unique.len();
        assert!(
            repeats <= KILLS + KILLS / 2,
            "{name}: {repeats} repeats after {} crashes; at most the in-flight event may repeat",
            KILLS + KILLS / 2
        );
        let record = &stored[name];
        assert_eq!(
            (record.position.block, record.position.index),
            (height, 0),
            "{name}"
        );
        assert_eq!(
            record.delivered,
            expected.len() as u64,
            "{name}: the stored count matches what was delivered, without the repeats"
        );
        assert_eq!(record.discarded, 0, "{name}");
        assert_eq!(record.status.failures, 0, "{name}");
    }
    let rejected = &stored["rejected"];
    let blocks = expected_ids(network.handle(), "Block", 0, height);
    assert_eq!(
        files.stored_dead_letters("rejected"),
        blocks,
        "one dead letter per discarded event, none lost or doubled by a crash"
    );
    assert_eq!(rejected.discarded, height, "{rejected:?}");
    assert_eq!(rejected.status.failures, height, "{rejected:?}");
    assert_eq!(rejected.delivered, 0, "{rejected:?}");
    eprintln!(
        "kill -9 x{} over {height} blocks: {} Tx and {} Block events delivered",
        KILLS + KILLS / 2,
        receiver.accepted("txs").len(),
        receiver.accepted("blocks").len()
    );
}

/// After a crash the stored position never runs ahead of what the receiver accepted: every event of every
/// block before the stored block arrived.
fn check_stored_progress(files: &DaemonFiles, network: &Network, receiver: &Receiver) {
    let stored = files.stored_triggers();
    for (name, event_type) in TRIGGERS {
        let Some(record) = stored.get(name) else {
            continue;
        };
        let done = expected_ids(network.handle(), event_type, 0, record.position.block);
        let arrived: HashSet<String> = receiver.accepted(name).into_iter().collect();
        let missing: Vec<&String> = done.iter().filter(|id| !arrived.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "{name}: stored at block {} but these events never arrived: {missing:?}",
            record.position.block
        );
    }
}

/// `kill -9` while pushing to an Async Function Compute function of the bundled runtime: the repeated pushes
/// around a crash carry the same stateful invocation id, so the runtime runs the handler exactly once per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_async_invocations_runs_each_event_once() {
    const ASYNC_KILLS: usize = 3;
    let network = Network::start(None).await;
    let functions = Functions::start().await;
    functions.create("once", Handler::Record).await;
    let files = DaemonFiles::new();
    let trigger = TriggerSpec::new(
        "once",
        "Block",
        format!(
            "{}invocation = \"Async\"\n",
            functions.target_toml("once", &files.fc_secret())
        ),
    );
    files.write_config(&network, &[trigger]);
    let generator = {
        let handle = network.handle().clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..200 {
                ticks.tick().await;
                handle.generate_block().expect("generate a block");
            }
        })
    };
    let mut daemon = Daemon::start(&files).await;
    for _ in 0..ASYNC_KILLS {
        let pause = rand::rng().random_range(200..800);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        daemon.kill().await;
        daemon = Daemon::start(&files).await;
    }
    generator.await.expect("the generator task");
    let height = network.height();
    daemon.admin.wait_position("once", height).await;
    daemon.kill().await;

    let expected = block_ids(0, height);
    let calls = eventually(&format!("{height} handler runs"), PATIENCE, || {
        let calls = functions.calls("once");
        std::future::ready((calls.len() >= expected.len()).then_some(calls))
    })
    .await;
    let mut sorted = calls.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "every event ran exactly once");
    let stored = files.stored_triggers();
    assert_eq!(stored["once"].delivered, height, "{:?}", stored["once"]);
}

/// A trigger that starts from the latest block keeps that start once it has one: killed before it pushed
/// anything and restarted later, it delivers what happened while the daemon was down instead of jumping to the
/// new latest block.
#[tokio::test]
async fn a_trigger_from_latest_keeps_its_start_across_kill_9() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let mut fresh = TriggerSpec::new("fresh", "Block", receiver.target_toml("fresh"));
    fresh.start = None;
    files.write_config(&network, &[fresh]);
    let start = network.height();
    let daemon = Daemon::start(&files).await;
    let status = daemon
        .admin
        .wait_for("fresh", "its start at the chain height", |t| {
            t["position"]["block"].as_u64() == Some(start)
                && t["chain_height"].as_u64() == Some(start)
        })
        .await;
    assert_eq!(status["state"], "Running", "{status}");
    // The status shows the start as soon as the chain height is known; the kill must come once it is stored.
    eventually("the start stored", PATIENCE, || {
        let stored = files.stored_triggers();
        std::future::ready(
            stored
                .get("fresh")
                .is_some_and(|record| record.position.block == start)
                .then_some(()),
        )
    })
    .await;
    daemon.kill().await;

    let last = network.generate(3);
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("fresh", last + 1).await;
    assert_eq!(receiver.accepted("fresh"), block_ids(start, last + 1));
}
