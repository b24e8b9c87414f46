//! How fast the store records outcomes: the ceiling on events per second that checkpointing puts on one trigger.
//! SQLite: one transaction each (WAL, synchronous = NORMAL) on a real file. PostgreSQL: one transaction each on a
//! server started for the run with its default durability (fsync on, synchronous_commit on), over its Unix socket;
//! or on the server `CHAINTRIGGER_TEST_POSTGRES` names.

#[path = "../tests/it/support/postgres.rs"]
mod postgres_server;

use std::time::SystemTime;

use chaintrigger::config::Secret;
use chaintrigger::config::TriggerName;
use chaintrigger::store::{
    NewDeadLetter, OutcomeRecord, PostgresOptions, PostgresStore, SqliteStore, Store,
};
use chaintrigger::trigger::state::{Position, Status};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn record_outcome(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder for the benchmark database");
    let sqlite =
        SqliteStore::open(&dir.path().join("bench.db")).expect("the benchmark database opens");
    record_outcomes(c, "", &sqlite);
    let server = match std::env::var("CHAINTRIGGER_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => postgres_server::server(),
        _ => Box::leak(Box::new(postgres_server::PgServer::start(&[]))),
    };
    let database = server.create_database();
    let postgres = PostgresStore::open(&PostgresOptions {
        url: database.url.clone(),
        password: Some(Secret::new(database.password.clone())),
        tls_ca: None,
    })
    .expect("the benchmark database opens");
    record_outcomes(c, "postgres/", &postgres);
}

/// Benchmarks one store; `prefix` tells the backends apart in the names.
fn record_outcomes(c: &mut Criterion, prefix: &str, store: &dyn Store) {
    let trigger = TriggerName::new("bench").expect("a valid trigger name");
    let running = Status::new(true);
    store
        .ensure_trigger(
            &trigger,
            &running,
            Position::block_start(0),
            SystemTime::now(),
            None,
        )
        .expect("the benchmark trigger is created");
    let letter = NewDeadLetter {
        event_id: "tx-1-8389948d079a61a4dc1cc6bca1567b4ece3ad03b8f5785b9fad447c2b3a83e2d".into(),
        position: Position::block_start(1),
        output: 0,
        payload: serde_json::json!({"type": "Tx", "content": {"state": "VALID", "input": "[\"put\",\"k\",\"v\"]"}}),
        error: "function error UnhandledInvocationError: boom".into(),
        attempts: 5,
    };
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    let mut index = 0u32;
    group.bench_function(format!("{prefix}record_outcome/delivered"), |b| {
        b.iter(|| {
            index += 1;
            store
                .record_outcome(
                    &OutcomeRecord {
                        anchor: None,
                        trigger: &trigger,
                        status: &running,
                        position: Position { block: 1, index },
                        delivered: 1,
                        discarded: 0,
                        dead_letters: &[],
                        at: SystemTime::now(),
                    },
                    None,
                )
                .expect("the outcome is recorded")
        })
    });
    // The same write under a lease, as every write of a daemon is: PostgreSQL checks (and locks) the lease row in the
    // same transaction; SQLite grants its one daemon everything and checks nothing.
    let channel = chaintrigger::config::ChannelName::new("bench").expect("a valid channel name");
    let owner = chaintrigger::store::DaemonId::new("bench-daemon");
    let generation = store
        .acquire_lease(&channel, &owner, std::time::Duration::from_secs(3600))
        .expect("the lease is taken")
        .expect("the lease is free");
    let fence = chaintrigger::store::Fence {
        channel,
        owner,
        generation,
    };
    group.bench_function(format!("{prefix}record_outcome/delivered_fenced"), |b| {
        b.iter(|| {
            index += 1;
            store
                .record_outcome(
                    &OutcomeRecord {
                        anchor: None,
                        trigger: &trigger,
                        status: &running,
                        position: Position { block: 1, index },
                        delivered: 1,
                        discarded: 0,
                        dead_letters: &[],
                        at: SystemTime::now(),
                    },
                    Some(&fence),
                )
                .expect("the outcome is recorded")
        })
    });
    group.bench_function(
        format!("{prefix}record_outcome/discarded_with_dead_letter"),
        |b| {
            b.iter(|| {
                index += 1;
                store
                    .record_outcome(
                        &OutcomeRecord {
                            anchor: None,
                            trigger: &trigger,
                            status: &running,
                            position: Position { block: 1, index },
                            delivered: 0,
                            discarded: 1,
                            dead_letters: std::slice::from_ref(&letter),
                            at: SystemTime::now(),
                        },
                        None,
                    )
                    .expect("the outcome is recorded")
            })
        },
    );
    group.finish();
}

criterion_group!(benches, record_outcome);
criterion_main!(benches);
