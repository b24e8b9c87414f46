//! Three `serve` processes sharing one PostgreSQL database and two channels (two peer simulators over TLS), with a
//! short lease time: channels spread over the daemons; an owner killed with `kill -9` in the middle of a burst is
//! replaced within the lease bound; an owner paused (SIGSTOP) past its lease cannot push-and-checkpoint once resumed;
//! an owner cut off from the database in the middle of a write is replaced within the lease bound and its held
//! writes are refused once the link heals; an owner stopped cleanly hands its channel over at once. Every expected event arrives at least once, in chain
//! order per trigger, and the stored positions never move backwards.
//!
//! Each daemon's trigger targets carry an `X-Daemon` header naming the daemon, so the receiver can tell who pushed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaintrigger::store::{ClusterView, PostgresOptions, PostgresStore, Store, TriggerRecord};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::support::daemon::{
    Behaviour, Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, eventually,
    expected_ids, first_arrivals, toml_str,
};
use crate::support::postgres::{TestDatabase, server};

/// Short, so takeovers are quick to see; every bound below is stated in it.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// The second channel's name (the first is the simulator's default, `mychannel`).
const OTHER: &str = "otherchannel";
/// The triggers: name, channel, event type.
const TRIGGERS: [(&str, &str, &str); 3] = [
    ("main-blocks", "mychannel", "Block"),
    ("main-txs", "mychannel", "Tx"),
    ("other-txs", OTHER, "Tx"),
];

/// Three daemons on one database, two channels, one receiver.
struct Cluster {
    database: TestDatabase,
    store: Arc<PostgresStore>,
    networks: [Network; 2],
    receiver: Receiver,
    files: Vec<DaemonFiles>,
    daemons: Vec<Option<Daemon>>,
    /// Each daemon's way to the database, which a test can cut.
    links: Vec<Link>,
}

impl Cluster {
    /// Three daemons, each connected straight to the database.
    async fn start() -> Cluster {
        Cluster::start_linked(false).await
    }

    /// Three daemons; with `linked`, each reaches the database through a [`Link`] the test can cut.
    async fn start_linked(linked: bool) -> Cluster {
        let database = tokio::task::spawn_blocking(|| server().create_database())
            .await
            .expect("a database");
        let networks = [
            Network::start(None).await,
            Network::start_channel(OTHER, None).await,
        ];
        let receiver = Receiver::start().await;
        let options = PostgresOptions {
            url: database.url.clone(),
            password: Some(chaintrigger::config::Secret::new(database.password.clone())),
            tls_ca: None,
        };
        let store = tokio::task::spawn_blocking(move || PostgresStore::open(&options))
            .await
            .expect("open the store")
            .expect("the database opens");
        let mut cluster = Cluster {
            database,
            store: Arc::new(store),
            networks,
            receiver,
            files: Vec::new(),
            daemons: Vec::new(),
            links: Vec::new(),
        };
        for _ in 0..if linked { 3 } else { 0 } {
            let link = Link::start(&cluster.database.url).await;
            cluster.links.push(link);
        }
        for index in 0..3 {
            let files = DaemonFiles::new();
            cluster.write_config(&files, index);
            cluster.daemons.push(Some(Daemon::start(&files).await));
            cluster.files.push(files);
        }
        cluster
    }

    /// One configuration for all, but for the admin port and the `X-Daemon` header naming the daemon.
    fn write_config(&self, files: &DaemonFiles, index: usize) {
        self.write_config_with(files, index, &TRIGGERS);
    }

    /// [`Cluster::write_config`] with these triggers (name, channel, event type).
    fn write_config_with(
        &self,
        files: &DaemonFiles,
        index: usize,
        triggers: &[(&str, &str, &str)],
    ) {
        std::fs::write(
            files.dir.path().join("pg-password"),
            &self.database.password,
        )
        .expect("write the database password");
        let mut text = format!(
            "instance_id = \"csi-engine-test\"\n\
             database = {{ url = \"{}\", password = {{ file = \"pg-password\" }}, lease_ttl = \"{}s\" }}\n\n\
             [admin]\nlisten = \"127.0.0.1:{}\"\ntoken = {{ file = \"admin-token\" }}\n\n{}\n{}\n",
            self.links
                .get(index)
                .map_or(&self.database.url, |link| &link.url),
            LEASE_TTL.as_secs(),
            files.admin_port,
            self.networks[0].channel_toml(),
            self.networks[1].channel_toml(),
        );
        for &(name, channel, event) in triggers {
            let target = format!(
                "[triggers.target.http]\nurl = {}\nheaders = {{ \"X-Daemon\" = \"d{index}\" }}\n",
                toml_str(&self.receiver.hook_url(name))
            );
            let spec = TriggerSpec {
                channel: channel.to_owned(),
                ..TriggerSpec::new(name, event, target)
            };
            text.push('\n');
            text.push_str(&spec.toml());
        }
        files.write_raw(&text);
    }

    fn network(&self, channel: &str) -> &Network {
        self.networks
            .iter()
            .find(|network| network.channel == channel)
            .expect("a configured channel")
    }

    async fn view(&self) -> ClusterView {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.cluster())
            .await
            .expect("read the leases")
            .expect("the leases read")
    }

    async fn records(&self) -> HashMap<String, TriggerRecord> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.triggers())
            .await
            .expect("read the triggers")
            .expect("the triggers read")
            .into_iter()
            .map(|record| (record.name.to_string(), record))
            .collect()
    }

    /// Which daemon (by index) holds a live lease of `channel`, with the lease's generation.
    async fn owner(&self, channel: &str) -> Option<(usize, i64)> {
        let view = self.view().await;
        let lease = view
            .leases
            .iter()
            .find(|lease| lease.channel.as_str() == channel && lease.live)?;
        let index = self.daemons.iter().position(|daemon| {
            daemon.as_ref().is_some_and(|daemon| {
                lease
                    .owner
                    .as_str()
                    .contains(&format!("-{}-", daemon.pid()))
            })
        })?;
        Some((index, lease.generation))
    }

    /// Waits until both channels have live owners, on different daemons.
    async fn wait_spread(&self) -> [(usize, i64); 2] {
        eventually(
            "both channels owned, by different daemons",
            PATIENCE,
            || async {
                let main = self.owner("mychannel").await?;
                let other = self.owner(OTHER).await?;
                (main.0 != other.0).then_some([main, other])
            },
        )
        .await
    }

    /// Once the channels are spread: the owner of `mychannel`, the owner of the other channel, and the daemon
    /// owning neither.
    async fn roles(&self) -> (usize, usize, usize) {
        let [(owner, _), (other_owner, _)] = self.wait_spread().await;
        let bystander = (0..3)
            .find(|index| *index != owner && *index != other_owner)
            .expect("a daemon owning nothing");
        (owner, other_owner, bystander)
    }

    /// Generates `count` blocks on each channel, one every `every`, in the background.
    fn burst(&self, count: u64, every: Duration) -> tokio::task::JoinHandle<()> {
        let handles = [
            self.networks[0].handle().clone(),
            self.networks[1].handle().clone(),
        ];
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            for _ in 0..count {
                ticks.tick().await;
                for handle in &handles {
                    handle.generate_block().expect("generate a block");
                }
            }
        })
    }

    /// Waits until every trigger's stored position reached its channel's height.
    async fn wait_all_processed(&self) {
        self.wait_all_processed_except(&[]).await;
    }

    /// [`Cluster::wait_all_processed`] but for the `skipped` triggers.
    async fn wait_all_processed_except(&self, skipped: &[&str]) {
        for (name, channel, _) in TRIGGERS {
            if skipped.contains(&name) {
                continue;
            }
            let height = self.network(channel).height();
            eventually(
                &format!("{name} processes all {height} blocks"),
                PATIENCE * 2,
                || async {
                    let records = self.records().await;
                    records
                        .get(name)
                        .is_some_and(|record| record.position.block >= height)
                        .then_some(())
                },
            )
            .await;
        }
    }

    /// How many pushes the receiver has had so far for `main-blocks` and `main-txs` (the triggers of `mychannel`).
    fn marks(&self) -> [usize; 2] {
        [
            self.receiver.pushes("main-blocks").len(),
            self.receiver.pushes("main-txs").len(),
        ]
    }

    /// The pushes daemon `index` made for `main-blocks` and `main-txs` since `marks`.
    fn pushes_since(&self, index: usize, marks: [usize; 2]) -> [usize; 2] {
        [
            self.pushes_by("main-blocks", index, marks[0]),
            self.pushes_by("main-txs", index, marks[1]),
        ]
    }

    /// Waits until a daemon other than `owner` holds `mychannel`'s lease (`why`: how `owner` lost it); returns it
    /// and its generation.
    async fn taken_from(&self, owner: usize, why: &str) -> (usize, i64) {
        eventually(
            &format!("another daemon takes the channel of the {why} owner"),
            PATIENCE,
            || async {
                self.owner("mychannel")
                    .await
                    .filter(|(index, _)| *index != owner)
            },
        )
        .await
    }

    /// After `owner` lost `mychannel` to `new_owner` and came back (resumed, healed) at `marks`, and a while of
    /// blocks: it pushed at most the event it had in flight per trigger, and it did not get the channel back.
    /// The channel may have moved on from `new_owner` to the third daemon: on a loaded machine a renewal can come
    /// later than the 2 s lease, which is a takeover like any other; what must never happen is the fenced owner
    /// holding it again.
    async fn assert_lost_for_good(&self, owner: usize, marks: [usize; 2], new_owner: usize) {
        let late = self.pushes_since(owner, marks);
        assert!(
            late.iter().all(|pushes| *pushes <= 1),
            "daemon {owner} pushed {late:?} events after losing its lease (at most the one in flight each):\n{}",
            self.logs()
        );
        let holder = self.owner("mychannel").await.map(|(index, _)| index);
        assert_ne!(
            holder,
            Some(owner),
            "the channel went to daemon {new_owner}, then back to the owner that lost it:\n{}",
            self.logs()
        );
    }

    /// Every daemon's log, for a failure message.
    fn logs(&self) -> String {
        (0..self.files.len())
            .map(|index| format!("== daemon {index}\n{}", self.files[index].log()))
            .collect()
    }

    /// Ends a burst watched by [`watch_positions`]: waits for it and for every trigger to process it, then checks
    /// that every event arrived in order and that no stored position moved back. Returns the repeats per trigger.
    async fn finish_watched_burst(
        &self,
        burst: tokio::task::JoinHandle<()>,
        (stop_watch, violations): (CancellationToken, Arc<Mutex<Vec<String>>>),
    ) -> HashMap<&'static str, usize> {
        burst.await.expect("the burst");
        self.wait_all_processed().await;
        stop_watch.cancel();
        let repeats = self.assert_every_event_in_order();
        assert_eq!(*violations.lock().unwrap(), Vec::<String>::new());
        repeats
    }

    /// Every expected event arrived at least once, first arrivals in chain order; returns the repeats per trigger.
    fn assert_every_event_in_order(&self) -> HashMap<&'static str, usize> {
        let mut repeats = HashMap::new();
        for (name, channel, event) in TRIGGERS {
            let network = self.network(channel);
            let expected = expected_ids(network.handle(), event, 0, network.height());
            let arrived = self.receiver.accepted(name);
            let unique = first_arrivals(&arrived);
            assert_eq!(
                unique.len(),
                expected.len(),
                "{name}: every event exactly once at least"
            );
            assert_eq!(unique, expected, "{name}: every event, in chain order");
            repeats.insert(name, arrived.len() - unique.len());
        }
        repeats
    }

    /// Pushes by daemon `index` to trigger `name`, counted from the `from`-th push.
    fn pushes_by(&self, name: &str, index: usize, from: usize) -> usize {
        let header = format!("d{index}");
        self.receiver
            .pushes(name)
            .iter()
            .skip(from)
            .filter(|push| {
                push.headers
                    .get("x-daemon")
                    .is_some_and(|value| value.as_bytes() == header.as_bytes())
            })
            .count()
    }

    async fn stop_all(&mut self) {
        for daemon in self.daemons.iter_mut().filter_map(Option::take) {
            daemon.kill().await;
        }
    }
}

/// Watches the stored records in the background: a position (block, index) that moves backwards, or a trigger that
/// leaves Running, is recorded as a violation.
fn watch_positions(store: Arc<PostgresStore>) -> (CancellationToken, Arc<Mutex<Vec<String>>>) {
    let stop = CancellationToken::new();
    let violations = Arc::new(Mutex::new(Vec::new()));
    let (watching, found) = (stop.clone(), violations.clone());
    tokio::spawn(async move {
        let mut last: HashMap<String, (u64, u32)> = HashMap::new();
        while !watching.is_cancelled() {
            let store = store.clone();
            let records = tokio::task::spawn_blocking(move || store.triggers())
                .await
                .expect("read the triggers");
            if let Ok(records) = records {
                for record in records {
                    let now = (record.position.block, record.position.index);
                    let name = record.name.to_string();
                    if let Some(before) = last.get(&name)
                        && now < *before
                    {
                        found
                            .lock()
                            .unwrap()
                            .push(format!("{name} moved back from {before:?} to {now:?}"));
                    }
                    if record.status.state.as_str() != "Running" {
                        found
                            .lock()
                            .unwrap()
                            .push(format!("{name} is {}", record.status.state));
                    }
                    last.insert(name, now);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (stop, violations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_with_three_daemons_no_daemon_owns_both_channels() {
    let mut cluster = Cluster::start().await;
    cluster.wait_spread().await;
    // It stays spread: sampled over three lease times.
    let until = Instant::now() + LEASE_TTL * 3;
    while Instant::now() < until {
        let (main, other) = (cluster.owner("mychannel").await, cluster.owner(OTHER).await);
        if let (Some(main), Some(other)) = (main, other) {
            assert_ne!(main.0, other.0, "one daemon owns both channels");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view = cluster.view().await;
    assert_eq!(
        view.daemons.iter().filter(|daemon| daemon.live).count(),
        3,
        "{view:?}"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_kill_9_of_an_owner_in_a_burst_loses_no_event() {
    let mut cluster = Cluster::start().await;
    let [(owner, generation), _] = cluster.wait_spread().await;
    let watch = watch_positions(cluster.store.clone());
    let burst = cluster.burst(150, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let pushed_before = cluster.receiver.pushes("main-blocks").len();
    let killed = Instant::now();
    cluster.daemons[owner]
        .take()
        .expect("the owner")
        .kill()
        .await;
    // The first push by another daemon after the kill, and the new lease.
    let first_push = eventually("a push by the new owner of mychannel", PATIENCE, || async {
        let others: usize = (0..3)
            .filter(|index| *index != owner)
            .map(|index| cluster.pushes_by("main-blocks", index, pushed_before))
            .sum();
        (others > 0).then(|| killed.elapsed())
    })
    .await;
    let (new_owner, new_generation) = eventually("a new owner", PATIENCE, || async {
        cluster.owner("mychannel").await
    })
    .await;
    assert_ne!(new_owner, owner);
    assert!(new_generation > generation);
    eprintln!(
        "takeover after kill -9: first push by the new owner {first_push:?} after the kill (lease time {LEASE_TTL:?})"
    );
    // The bound: the lease expires at most one lease time after the last renewal, and the survivors look every
    // third of it; a little more for starting the channel's workers.
    assert!(
        first_push < LEASE_TTL + LEASE_TTL / 3 + Duration::from_secs(2),
        "takeover took {first_push:?}"
    );

    let repeats = cluster.finish_watched_burst(burst, watch).await;
    // The dead owner had at most one event in flight per trigger of its channel.
    assert!(repeats["main-blocks"] <= 1, "{repeats:?}");
    assert!(repeats["main-txs"] <= 1, "{repeats:?}");
    assert_eq!(repeats["other-txs"], 0, "{repeats:?}");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_an_owner_paused_past_its_lease_cannot_push_or_write_once_resumed() {
    let mut cluster = Cluster::start().await;
    let [(owner, generation), _] = cluster.wait_spread().await;
    let watch = watch_positions(cluster.store.clone());
    let burst = cluster.burst(200, Duration::from_millis(25));
    tokio::time::sleep(Duration::from_millis(800)).await;

    let paused = cluster.daemons[owner].as_ref().expect("the owner");
    paused.signal(libc::SIGSTOP);
    let (new_owner, new_generation) = cluster.taken_from(owner, "paused").await;
    assert!(new_generation > generation);
    // The new owner pushes meanwhile.
    let pushed = cluster.receiver.pushes("main-blocks").len();
    eventually("the new owner pushes", PATIENCE, || async {
        (cluster.pushes_by("main-blocks", new_owner, pushed) > 0).then_some(())
    })
    .await;

    let resumed_at = cluster.marks();
    cluster.daemons[owner]
        .as_ref()
        .expect("the owner")
        .signal(libc::SIGCONT);
    // Let it run a while with blocks coming: it must find out it lost the channel, and not push meanwhile.
    tokio::time::sleep(LEASE_TTL * 2).await;
    cluster
        .assert_lost_for_good(owner, resumed_at, new_owner)
        .await;
    let log = cluster.files[owner].log();
    assert!(
        log.contains("the channel's lease was lost") || log.contains("the channel's lease is lost"),
        "the resumed daemon notices it lost the channel:\n{log}"
    );

    cluster.finish_watched_burst(burst, watch).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_clean_stop_hands_the_channel_over_at_once() {
    let mut cluster = Cluster::start().await;
    let [(owner, generation), _] = cluster.wait_spread().await;
    let burst = cluster.burst(100, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_millis(600)).await;

    let stopping = Instant::now();
    cluster.daemons[owner]
        .take()
        .expect("the owner")
        .terminate()
        .await;
    let exited = stopping.elapsed();
    let (new_owner, new_generation) = eventually("a new owner", PATIENCE, || async {
        cluster.owner("mychannel").await
    })
    .await;
    let handed_over = stopping.elapsed();
    eprintln!(
        "clean stop: exited after {exited:?}, channel taken over after {handed_over:?} (lease time {LEASE_TTL:?})"
    );
    assert_ne!(new_owner, owner);
    assert!(new_generation > generation);
    // Released at exit, taken at the next look of a survivor (every third of the lease time): well under the
    // lease time after the exit, where waiting for expiry would take the whole lease time.
    assert!(
        handed_over - exited < LEASE_TTL * 3 / 4,
        "taken over {:?} after the exit",
        handed_over - exited
    );

    burst.await.expect("the burst");
    cluster.wait_all_processed().await;
    let repeats = cluster.assert_every_event_in_order();
    // A clean stop records its events in flight: nothing is pushed twice.
    assert_eq!(repeats.values().sum::<usize>(), 0, "{repeats:?}");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_any_daemon_lists_every_trigger_with_its_owner_and_forwards_commands() {
    let mut cluster = Cluster::start().await;
    let (owner, other_owner, bystander) = cluster.roles().await;
    cluster.networks[0].generate(3);
    cluster.wait_all_processed().await;
    let admin = |index: usize| &cluster.daemons[index].as_ref().expect("running").admin;
    let owner_id = |index: usize| format!("-{}-", cluster.daemons[index].as_ref().unwrap().pid());

    // Any daemon lists every trigger, with its owner and its progress as the owner stored it.
    let height = cluster.networks[0].height();
    let listed = admin(bystander).triggers().await;
    assert_eq!(listed.len(), TRIGGERS.len(), "{listed:?}");
    for (name, channel, _) in TRIGGERS {
        let expected_owner = if channel == "mychannel" {
            owner
        } else {
            other_owner
        };
        let owner_name = listed[name]["owner"].as_str().unwrap_or_default();
        assert!(
            owner_name.contains(&owner_id(expected_owner)),
            "{name}: {}",
            listed[name]
        );
    }
    assert_eq!(
        listed["main-blocks"]["position"]["block"].as_u64(),
        Some(height),
        "{}",
        listed["main-blocks"]
    );
    let (status, channels) = admin(bystander)
        .call(reqwest::Method::GET, "/v1/channels")
        .await;
    assert_eq!(status, 200);
    assert!(
        channels["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .all(|channel| channel["owned"] == false),
        "{channels}"
    );
    let (_, metrics) = admin(owner).call(reqwest::Method::GET, "/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("chaintrigger_channel_owned{channel=\"mychannel\"} 1")
            && metrics.contains("chaintrigger_owned_channels 1"),
        "{metrics}"
    );

    // Commands sent to a daemon that does not own the channel take effect on the owner, with the same answers.
    let disabled = admin(bystander).command("main-txs", "disable").await;
    assert_eq!(disabled["state"], "Disabled", "{disabled}");
    assert!(
        disabled["owner"]
            .as_str()
            .unwrap_or_default()
            .contains(&owner_id(owner))
    );
    let seen_by_owner = admin(owner).trigger("main-txs").await;
    assert_eq!(seen_by_owner["state"], "Disabled", "{seen_by_owner}");
    let pushed = cluster.receiver.pushes("main-txs").len();
    cluster.networks[0].generate(2);
    cluster.wait_all_processed_except(&["main-txs"]).await;
    assert_eq!(
        cluster.receiver.pushes("main-txs").len(),
        pushed,
        "a disabled trigger pushes nothing, on its owner"
    );

    let (status, refused) = admin(bystander)
        .call(
            reqwest::Method::POST,
            "/v1/triggers/main-txs/enable?from=999999",
        )
        .await;
    let (owner_status, owner_refused) = admin(owner)
        .call(
            reqwest::Method::POST,
            "/v1/triggers/main-txs/enable?from=999999",
        )
        .await;
    assert_eq!(
        (status, owner_status),
        (400, 400),
        "{refused} / {owner_refused}"
    );
    assert_eq!(
        refused["error"], owner_refused["error"],
        "the same answer as the owner's"
    );

    let enabled = admin(bystander)
        .command("main-txs", "enable?from=position")
        .await;
    assert_eq!(enabled["state"], "Running", "{enabled}");
    assert_eq!(admin(owner).trigger("main-txs").await["state"], "Running");

    let (status, _) = admin(other_owner)
        .call(reqwest::Method::DELETE, "/v1/triggers/main-blocks")
        .await;
    assert!(
        (200..300).contains(&status),
        "delete through a non-owner: {status}"
    );
    let (status, _) = admin(owner)
        .call(reqwest::Method::GET, "/v1/triggers/main-blocks")
        .await;
    assert_eq!(status, 404, "deleted on the owner");
    let (status, again) = admin(bystander)
        .call(reqwest::Method::POST, "/v1/triggers/main-blocks/disable")
        .await;
    let (owner_status, owner_again) = admin(owner)
        .call(reqwest::Method::POST, "/v1/triggers/main-blocks/disable")
        .await;
    assert_eq!(
        (status, owner_status),
        (409, 409),
        "{again} / {owner_again}"
    );
    assert_eq!(again, owner_again, "the same answer as the owner's");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_repush_sent_to_a_non_owner_is_pushed_once_by_the_owner() {
    let mut cluster = Cluster::start().await;
    let (owner, other_owner, bystander) = cluster.roles().await;
    let admin = |index: usize| &cluster.daemons[index].as_ref().expect("running").admin;

    // The target refuses: the owner discards the events into dead letters.
    cluster.receiver.set("main-txs", Behaviour::Status(500));
    cluster.networks[0].generate(2);
    cluster.wait_all_processed().await;
    let (status, listed) = admin(bystander)
        .call(reqwest::Method::GET, "/v1/triggers/main-txs/dead-letters")
        .await;
    assert_eq!(status, 200, "{listed}");
    let letters: Vec<u64> = listed["dead_letters"]
        .as_array()
        .expect("dead letters")
        .iter()
        .map(|letter| letter["id"].as_u64().expect("an id"))
        .collect();
    assert!(letters.len() >= 2, "{listed}");
    cluster.receiver.set("main-txs", Behaviour::Accept);

    // One dead letter re-pushed through a daemon that does not own the channel: pushed once, by the owner.
    let before = cluster.receiver.pushes("main-txs").len();
    let repushed = admin(bystander)
        .command("main-txs", &format!("dead-letters/{}/repush", letters[0]))
        .await;
    assert_eq!(repushed["id"].as_u64(), Some(letters[0]), "{repushed}");
    assert_eq!(repushed["delivered"], true, "{repushed}");
    assert_eq!(cluster.receiver.pushes("main-txs").len(), before + 1);
    assert_eq!(
        cluster.pushes_by("main-txs", owner, before),
        1,
        "pushed by the owner"
    );

    // The rest through the other channel's owner: each pushed once, by the owner.
    let all = admin(other_owner)
        .command("main-txs", "dead-letters/repush")
        .await;
    let outcomes = all["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.len(), letters.len() - 1, "{all}");
    assert!(
        outcomes.iter().all(|outcome| outcome["delivered"] == true),
        "{all}"
    );
    assert_eq!(
        cluster.receiver.pushes("main-txs").len(),
        before + letters.len()
    );
    assert_eq!(
        cluster.pushes_by("main-txs", owner, before),
        letters.len(),
        "every re-push by the owner"
    );

    // Refusals carry the owner's answer.
    let path = "/v1/triggers/main-txs/dead-letters/999999/repush";
    let (status, refused) = admin(bystander).call(reqwest::Method::POST, path).await;
    let (owner_status, owner_refused) = admin(owner).call(reqwest::Method::POST, path).await;
    assert_eq!(
        (status, owner_status),
        (404, 404),
        "{refused} / {owner_refused}"
    );
    assert_eq!(refused, owner_refused, "the same answer as the owner's");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_reload_sent_to_one_daemon_reloads_every_daemon() {
    let mut cluster = Cluster::start().await;
    let (owner, other_owner, bystander) = cluster.roles().await;
    cluster.networks[0].generate(2);
    cluster.wait_all_processed().await;

    // The shared configuration gains a trigger; one daemon is told to reload.
    let mut triggers = TRIGGERS.to_vec();
    triggers.push(("new-blocks", "mychannel", "Block"));
    for (index, files) in cluster.files.iter().enumerate() {
        cluster.write_config_with(files, index, &triggers);
    }
    let admin = |index: usize| &cluster.daemons[index].as_ref().expect("running").admin;
    let (status, report) = admin(bystander)
        .call(reqwest::Method::POST, "/v1/reload")
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["added"],
        serde_json::json!(["new-blocks"]),
        "{report}"
    );
    let others = report["daemons"]
        .as_array()
        .expect("the other daemons' reloads");
    assert_eq!(others.len(), 2, "{report}");
    for index in [owner, other_owner] {
        let pid = format!(
            "-{}-",
            cluster.daemons[index].as_ref().expect("running").pid()
        );
        let other = others
            .iter()
            .find(|other| other["daemon"].as_str().unwrap_or_default().contains(&pid))
            .unwrap_or_else(|| panic!("daemon d{index} in {report}"));
        assert_eq!(other["reloaded"], true, "{other}");
        assert_eq!(
            other["report"]["added"],
            serde_json::json!(["new-blocks"]),
            "{other}"
        );
    }

    // Every daemon lists it; only the channel's owner pushes its events.
    for index in 0..3 {
        let listed = admin(index).triggers().await;
        assert!(listed.contains_key("new-blocks"), "d{index}: {listed:?}");
    }
    cluster.networks[0].generate(2);
    let height = cluster.networks[0].height();
    cluster
        .receiver
        .wait_accepted(
            "new-blocks",
            usize::try_from(height).expect("a height"),
            PATIENCE,
        )
        .await;
    let by_owner = format!("d{owner}");
    let pushes = cluster.receiver.pushes("new-blocks");
    assert!(
        pushes.iter().all(|push| push
            .headers
            .get("x-daemon")
            .is_some_and(|value| value.as_bytes() == by_owner.as_bytes())),
        "pushed by the owner ({by_owner}) only: {:?}",
        pushes
            .iter()
            .map(|push| push.headers.get("x-daemon"))
            .collect::<Vec<_>>()
    );

    // Another daemon whose file does not load says so in the report; the others reload.
    cluster.files[other_owner].write_raw("not = [valid");
    let (status, report) = admin(bystander)
        .call(reqwest::Method::POST, "/v1/reload")
        .await;
    assert_eq!(status, 200, "{report}");
    let others = report["daemons"]
        .as_array()
        .expect("the other daemons' reloads");
    let pid = format!(
        "-{}-",
        cluster.daemons[other_owner]
            .as_ref()
            .expect("running")
            .pid()
    );
    for other in others {
        let broken = other["daemon"].as_str().unwrap_or_default().contains(&pid);
        assert_eq!(other["reloaded"], !broken, "{report}");
        if broken {
            assert!(
                other["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("unclosed array"),
                "{report}"
            );
        }
    }
    assert!(
        admin(other_owner)
            .triggers()
            .await
            .contains_key("new-blocks"),
        "unchanged"
    );

    // A file that does not load is refused by the daemon it is sent to, and nothing is forwarded.
    cluster.files[bystander].write_raw("not = [valid");
    let (status, refused) = admin(bystander)
        .call(reqwest::Method::POST, "/v1/reload")
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "config_rejected", "{refused}");
    assert!(admin(owner).triggers().await.contains_key("new-blocks"));
    cluster.stop_all().await;
}

/// A daemon's way to the database: a TCP relay that a test can cut like a network partition (bytes stop flowing
/// both ways, connections stay open and hang; new ones hang too) and heal (everything held flows on).
struct Link {
    /// The database URL through the relay.
    url: String,
    /// True while bytes flow from the daemon to the database.
    to_server: watch::Sender<bool>,
    /// True while bytes flow from the database to the daemon.
    to_client: watch::Sender<bool>,
    /// Set by [`Link::cut_in_a_transaction`]: the next transaction the database opens stops the replies.
    armed: Arc<AtomicBool>,
}

/// The end of the database's answer to a fenced write's lease check (`SELECT 1 ... FOR SHARE`): one row, then
/// `ReadyForQuery` inside a transaction block. The server now holds the lease row's lock and waits for the daemon.
const LEASE_ROW_LOCKED: &[u8] = b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05T";

impl Link {
    async fn start(database_url: &str) -> Link {
        let (scheme_user, rest) = database_url.split_once('@').expect("user@host in the URL");
        let (authority, path) = rest.split_once('/').expect("a database name in the URL");
        let (host, port) = authority.rsplit_once(':').expect("host:port in the URL");
        let upstream = match percent_decode(host) {
            dir if dir.starts_with('/') => Upstream::Unix(format!("{dir}/.s.PGSQL.{port}")),
            _ => Upstream::Tcp(authority.to_owned()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "{scheme_user}@127.0.0.1:{}/{path}",
            listener.local_addr().unwrap().port()
        );
        let link = Link {
            url,
            to_server: watch::channel(true).0,
            to_client: watch::channel(true).0,
            armed: Arc::new(AtomicBool::new(false)),
        };
        let (to_server, to_client, armed) = (
            link.to_server.clone(),
            link.to_client.clone(),
            link.armed.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (to_server, to_client, armed) =
                    (to_server.clone(), to_client.clone(), armed.clone());
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Some(server) = upstream.connect().await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = tokio::io::split(server);
                    // Either side closing closes both, as a connection through a network does: the database
                    // ends the session of a daemon killed behind the link.
                    tokio::select! {
                        () = pump(client_read, server_write, &to_server, None) => {}
                        () = pump(server_read, client_write, &to_client, Some(&armed)) => {}
                    }
                });
            }
        });
        link
    }

    /// Cuts both ways.
    fn cut(&self) {
        self.to_server.send_replace(false);
        self.to_client.send_replace(false);
    }

    /// Cuts in the middle of a write: when the database has locked the channel's lease row for a write of the
    /// daemon, both ways, before its answer gets through. Returns once cut.
    async fn cut_in_a_transaction(&self) {
        self.armed.store(true, Ordering::SeqCst);
        let mut replies = self.to_client.subscribe();
        tokio::time::timeout(PATIENCE, replies.wait_for(|open| !*open))
            .await
            .expect("the daemon writes")
            .expect("the link is alive");
        self.cut();
    }

    fn heal(&self) {
        self.to_server.send_replace(true);
        self.to_client.send_replace(true);
    }
}

/// Where the database listens: the test server's Unix socket, or a server given by URL.
#[derive(Clone)]
enum Upstream {
    Unix(String),
    Tcp(String),
}

trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Duplex for T {}

impl Upstream {
    async fn connect(&self) -> Option<Box<dyn Duplex>> {
        Some(match self {
            Upstream::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await.ok()?),
            Upstream::Tcp(address) => Box::new(tokio::net::TcpStream::connect(address).await.ok()?),
        })
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Copies `from` to `to` while `gate` is open; while it is shut, holds what it read and reads nothing more. With
/// `trip` armed, the first chunk that shows the lease row locked shuts the gate before it is passed on.
async fn pump<R, W>(mut from: R, mut to: W, gate: &watch::Sender<bool>, trip: Option<&AtomicBool>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut open = gate.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if open.wait_for(|open| *open).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = open.wait_for(|open| !*open) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(trip) = trip
            && buf[..n]
                .windows(LEASE_ROW_LOCKED.len())
                .any(|window| window == LEASE_ROW_LOCKED)
            && trip.swap(false, Ordering::SeqCst)
        {
            gate.send_replace(false);
        }
        if open.wait_for(|open| *open).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// An owner cut off from the database (its connections hang, as in a network partition) loses its channel to
/// another daemon within the lease bound and pushes nothing after its lease ran out by its own clock; once the
/// partition heals, its held writes are refused by the fence: positions never move back, and every event arrives
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_an_owner_cut_off_from_the_database_stops_and_is_fenced_when_it_heals() {
    let mut cluster = Cluster::start_linked(true).await;
    let [(owner, generation), _] = cluster.wait_spread().await;
    let watch = watch_positions(cluster.store.clone());
    let burst = cluster.burst(200, Duration::from_millis(25));
    tokio::time::sleep(Duration::from_millis(800)).await;

    cluster.links[owner].cut_in_a_transaction().await;
    let cut_at = Instant::now();
    let (new_owner, new_generation) = cluster.taken_from(owner, "cut-off").await;
    eprintln!("partition: channel taken over after {:?}", cut_at.elapsed());
    assert!(new_generation > generation);
    // Its lease has run out by its own clock: from here on it pushes nothing.
    let quiet_from = cluster.marks();
    tokio::time::sleep(LEASE_TTL * 2).await;
    assert_eq!(
        cluster.pushes_since(owner, quiet_from),
        [0, 0],
        "the cut-off owner pushed after its lease ran out"
    );

    cluster.links[owner].heal();
    tokio::time::sleep(LEASE_TTL * 2).await;
    cluster
        .assert_lost_for_good(owner, quiet_from, new_owner)
        .await;

    cluster.finish_watched_burst(burst, watch).await;
    cluster.stop_all().await;
}
