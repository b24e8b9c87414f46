//! The store under `kill -9`: a separate process records outcomes as fast as it can and is killed at an arbitrary
//! moment; the file must then hold every outcome that process saw committed, each one whole.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use chaintrigger::config::TriggerName;
use chaintrigger::store::{DeadLetterQuery, NewDeadLetter, OutcomeRecord, SqliteStore, Store};
use chaintrigger::trigger::state::{Position, State, Status};
use serde_json::json;

/// Set in the writer process: the database it writes to.
const WRITER_DATABASE: &str = "CHAINTRIGGER_TEST_CRASH_WRITER_DB";

/// Every seventh event is discarded (a dead letter and a failure); the others are delivered.
fn discarded(index: u32) -> bool {
    index % 7 == 6
}

fn trigger() -> TriggerName {
    TriggerName::new("crash-test").expect("a valid trigger name")
}

/// The writer process's body. Runs only when the crash test starts this binary for it.
#[test]
fn crash_writer_process() {
    let Ok(path) = std::env::var(WRITER_DATABASE) else {
        return;
    };
    let store = SqliteStore::open(std::path::Path::new(&path)).unwrap();
    let name = trigger();
    let start = store
        .ensure_trigger(
            &name,
            &Status::new(true),
            Position::block_start(0),
            SystemTime::now(),
            None,
        )
        .unwrap();
    let mut status = start.status;
    let mut index = start.position.index;
    loop {
        let letters = if discarded(index) {
            status.failures += 1;
            status.last_error = Some(format!("event {index} failed"));
            vec![NewDeadLetter {
                event_id: format!("tx-0-{index}"),
                position: Position { block: 0, index },
                output: 0,
                payload: json!({"index": index}),
                error: format!("event {index} failed"),
                attempts: 3,
            }]
        } else {
            Vec::new()
        };
        store
            .record_outcome(
                &OutcomeRecord {
                    anchor: None,
                    trigger: &name,
                    status: &status,
                    position: Position {
                        block: 0,
                        index: index + 1,
                    },
                    delivered: u64::from(letters.is_empty()),
                    discarded: letters.len() as u64,
                    dead_letters: &letters,
                    at: SystemTime::now(),
                },
                None,
            )
            .unwrap();
        index += 1;
        println!("committed {index}");
    }
}

#[test]
fn committed_outcomes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("crash.db");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut acknowledged = 0u32;
    for round in 0..3u32 {
        // Kill after a varying number of commits, so the kill lands at different points of a transaction.
        let kill_after = acknowledged + 50 + (seed.wrapping_mul(round + 1) % 150);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store_crash::crash_writer_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_DATABASE, &database)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut read_commit = |acknowledged: &mut u32| match lines.next() {
            Some(Ok(line)) => {
                // A line cut by the kill does not parse and is not an acknowledgement.
                if let Some(count) = line.strip_prefix("committed ").and_then(|c| c.parse().ok()) {
                    *acknowledged = count;
                }
                true
            }
            _ => false,
        };
        while acknowledged < kill_after && read_commit(&mut acknowledged) {}
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // What the writer printed before it died: every commit it saw returning.
        while read_commit(&mut acknowledged) {}

        let store = SqliteStore::open(&database).unwrap();
        let record = store.trigger(&trigger()).unwrap().unwrap();
        let position = record.position.index;
        // Every acknowledged commit is there; at most the one in flight when killed is there too.
        assert!(
            position == acknowledged || position == acknowledged + 1,
            "round {round}: stored position {position}, acknowledged {acknowledged}"
        );
        // And each outcome is whole: counters, failures and dead letters agree with the position.
        let expected_discards = (0..position).filter(|i| discarded(*i)).count() as u64;
        assert_eq!(record.discarded, expected_discards, "round {round}");
        assert_eq!(
            record.delivered,
            u64::from(position) - expected_discards,
            "round {round}"
        );
        assert_eq!(record.status.failures, expected_discards, "round {round}");
        assert_eq!(record.status.state, State::Running);
        let letters = store
            .dead_letters(&DeadLetterQuery {
                include_repushed: true,
                ..DeadLetterQuery::default()
            })
            .unwrap();
        assert_eq!(letters.len() as u64, expected_discards, "round {round}");
        assert!(letters.iter().all(|l| discarded(l.letter.position.index)));
        acknowledged = position;
    }
}
