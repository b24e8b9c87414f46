//! How fast the store records outcomes (one SQLite transaction each, WAL, synchronous = NORMAL) on a real file:
//! the ceiling on events per second that checkpointing puts on one trigger.

use std::time::SystemTime;

use chaintrigger::config::TriggerName;
use chaintrigger::store::{NewDeadLetter, OutcomeRecord, SqliteStore, Store};
use chaintrigger::trigger::state::{Position, Status};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn record_outcome(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder for the benchmark database");
    let store =
        SqliteStore::open(&dir.path().join("bench.db")).expect("the benchmark database opens");
    let trigger = TriggerName::new("bench").expect("a valid trigger name");
    let running = Status::new(true);
    store
        .ensure_trigger(
            &trigger,
            &running,
            Position::block_start(0),
            SystemTime::now(),
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
    group.bench_function("record_outcome/delivered", |b| {
        b.iter(|| {
            index += 1;
            store
                .record_outcome(&OutcomeRecord {
                    anchor: None,
                    trigger: &trigger,
                    status: &running,
                    position: Position { block: 1, index },
                    delivered: 1,
                    discarded: 0,
                    dead_letters: &[],
                    at: SystemTime::now(),
                })
                .expect("the outcome is recorded")
        })
    });
    group.bench_function("record_outcome/discarded_with_dead_letter", |b| {
        b.iter(|| {
            index += 1;
            store
                .record_outcome(&OutcomeRecord {
                    anchor: None,
                    trigger: &trigger,
                    status: &running,
                    position: Position { block: 1, index },
                    delivered: 0,
                    discarded: 1,
                    dead_letters: std::slice::from_ref(&letter),
                    at: SystemTime::now(),
                })
                .expect("the outcome is recorded")
        })
    });
    group.finish();
}

criterion_group!(benches, record_outcome);
criterion_main!(benches);
