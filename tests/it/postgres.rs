//! The daemon on a PostgreSQL store (a throwaway server, see `support/postgres.rs`): `kill -9` in the middle of a
//! burst of blocks loses no event and keeps the order, and the positions stored on the server agree with what was
//! delivered; a server that cannot be reached stops `serve` with a message naming it.

use std::collections::HashMap;
use std::time::Duration;

use chaintrigger::store::{PostgresOptions, PostgresStore, Store as _, TriggerRecord};
use rand::Rng as _;

use crate::support::daemon::{
    ADMIN_TOKEN, Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, eventually,
    expected_ids, first_arrivals,
};
use crate::support::postgres::{TestDatabase, server};

/// Blocks generated in the burst (each with 1-3 transactions).
const BLOCKS: u64 = 400;
/// How many times the running daemon is killed.
const KILLS: usize = 3;
/// The triggers and the event type each receives.
const TRIGGERS: [(&str, &str); 2] = [("txs", "Tx"), ("blocks", "Block")];

/// Writes the daemon's TOML with the database on the server, its password in a file next to it.
fn write_config(
    files: &DaemonFiles,
    database: &TestDatabase,
    channel: &str,
    triggers: &[TriggerSpec],
) {
    std::fs::write(files.dir.path().join("pg-password"), &database.password)
        .expect("write the database password");
    let mut text = format!(
        "instance_id = \"csi-engine-test\"\n\
         database = {{ url = \"{}\", password = {{ file = \"pg-password\" }} }}\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\ntoken = {{ file = \"admin-token\" }}\n\n{channel}\n",
        database.url, files.admin_port,
    );
    for trigger in triggers {
        text.push('\n');
        text.push_str(&trigger.toml());
    }
    files.write_raw(&text);
}

/// Every trigger's record as stored on the server.
async fn stored(database: &TestDatabase) -> HashMap<String, TriggerRecord> {
    let options = PostgresOptions {
        url: database.url.clone(),
        password: Some(chaintrigger::config::Secret::new(database.password.clone())),
        tls_ca: None,
    };
    tokio::task::spawn_blocking(move || {
        let store = PostgresStore::open(&options).expect("open the daemon's database");
        store
            .triggers()
            .expect("read the stored triggers")
            .into_iter()
            .map(|record| (record.name.to_string(), record))
            .collect()
    })
    .await
    .expect("read the store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_in_a_burst_loses_no_event() {
    let database = tokio::task::spawn_blocking(|| server().create_database())
        .await
        .expect("a database");
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let triggers: Vec<TriggerSpec> = TRIGGERS
        .iter()
        .map(|(name, event)| TriggerSpec::new(name, event, receiver.target_toml(name)))
        .collect();
    write_config(&files, &database, &network.channel_toml(), &triggers);

    let generator = {
        let handle = network.handle().clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(5));
            for _ in 0..BLOCKS {
                ticks.tick().await;
                handle.generate_block().expect("generate a block");
            }
        })
    };
    let mut daemon = Daemon::start(&files).await;
    for _ in 0..KILLS {
        let pause = rand::rng().random_range(200..900);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        daemon.kill().await;
        // The stored position never runs ahead of what arrived.
        let records = stored(&database).await;
        for (name, event_type) in TRIGGERS {
            let Some(record) = records.get(name) else {
                continue;
            };
            let done = expected_ids(network.handle(), event_type, 0, record.position.block);
            let arrived = receiver.accepted(name);
            let missing: Vec<&String> = done.iter().filter(|id| !arrived.contains(id)).collect();
            assert!(
                missing.is_empty(),
                "{name}: stored at block {} but never arrived: {missing:?}",
                record.position.block
            );
        }
        daemon = Daemon::start(&files).await;
    }
    generator.await.expect("the generator task");
    let height = network.height();
    for (name, _) in TRIGGERS {
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

    let records = stored(&database).await;
    for (name, event_type) in TRIGGERS {
        let expected = expected_ids(network.handle(), event_type, 0, height);
        let arrived = receiver.accepted(name);
        let unique = first_arrivals(&arrived);
        assert_eq!(unique, expected, "{name}: every event, in chain order");
        let repeats = arrived.len() - unique.len();
        assert!(
            repeats <= KILLS,
            "{name}: {repeats} repeats after {KILLS} crashes; only the in-flight event may repeat"
        );
        let record = &records[name];
        assert_eq!(
            (record.position.block, record.position.index),
            (height, 0),
            "{name}"
        );
        assert_eq!(
            record.delivered,
            expected.len() as u64,
            "{name}: stored count"
        );
    }
}

#[tokio::test]
async fn postgres_serve_refuses_to_start_without_its_database() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let files = DaemonFiles::new();
    let url = format!("postgres://chaintrigger@127.0.0.1:{port}/ct?sslmode=disable");
    files.write_raw(&format!(
        "instance_id = \"csi-engine-test\"\ndatabase = \"{url}\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\ntoken = {{ file = \"admin-token\" }}\n",
        files.admin_port
    ));
    let mut daemon = Daemon::spawn(&files);
    let status = daemon
        .wait_exit(PATIENCE)
        .await
        .expect("serve exits when the database cannot be reached");
    assert!(!status.success());
    let log = files.log();
    assert!(log.contains(&format!("database {url}: ")), "{log}");
    assert!(!log.contains(ADMIN_TOKEN), "{log}");
}
