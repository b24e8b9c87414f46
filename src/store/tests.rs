use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;

fn name(text: &str) -> TriggerName {
    TriggerName::new(text).unwrap()
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn running() -> Status {
    Status::new(true)
}

fn letter(block: u64, index: u32, attempts: u32) -> NewDeadLetter {
    NewDeadLetter {
        event_id: format!("tx-{block}-abc{index}"),
        position: Position { block, index },
        output: 0,
        payload: json!({"id": format!("tx-{block}-abc{index}"), "n": [1, 2]}),
        error: "function error UnhandledInvocationError: boom".into(),
        attempts,
    }
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("state").join("chaintrigger.db")).unwrap()
}

#[test]
fn a_new_trigger_is_created_once_and_keeps_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let t = name("tasks");
    let created = store
        .ensure_trigger(&t, &running(), Position::block_start(10), at(0))
        .unwrap();
    assert_eq!(created.position, Position::block_start(10));
    assert_eq!(created.status, running());
    assert_eq!((created.delivered, created.discarded), (0, 0));
    assert_eq!(created.updated_at, at(0));

    let moved = Status {
        failures: 0,
        ..running()
    };
    store
        .record_outcome(&OutcomeRecord {
            anchor: None,
            trigger: &t,
            status: &moved,
            position: Position {
                block: 10,
                index: 1,
            },
            delivered: 1,
            discarded: 0,
            dead_letters: &[],
            at: at(1),
        })
        .unwrap();
    // Starting again (a restart, with the same configuration) does not reset it.
    let again = store
        .ensure_trigger(&t, &running(), Position::block_start(99), at(2))
        .unwrap();
    assert_eq!(
        again.position,
        Position {
            block: 10,
            index: 1
        }
    );
    assert_eq!(again.delivered, 1);
    assert_eq!(store.triggers().unwrap(), vec![again]);
    assert_eq!(store.trigger(&name("other")).unwrap(), None);
}

#[test]
fn an_outcome_writes_position_state_counters_and_dead_letter_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let t = name("tasks");
    store
        .ensure_trigger(&t, &running(), Position::block_start(3), at(0))
        .unwrap();
    let failed_once = Status {
        state: State::Running,
        failures: 1,
        last_error: Some("boom".into()),
    };
    store
        .record_outcome(&OutcomeRecord {
            anchor: None,
            trigger: &t,
            status: &failed_once,
            position: Position { block: 3, index: 1 },
            delivered: 0,
            discarded: 1,
            dead_letters: &[letter(3, 0, 5)],
            at: at(5),
        })
        .unwrap();
    let record = store.trigger(&t).unwrap().unwrap();
    assert_eq!(record.status, failed_once);
    assert_eq!(record.position, Position { block: 3, index: 1 });
    assert_eq!((record.delivered, record.discarded), (0, 1));
    let letters = store.dead_letters(&DeadLetterQuery::default()).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].trigger, t);
    assert_eq!(letters[0].letter, letter(3, 0, 5));
    assert_eq!(letters[0].created_at, at(5));
    assert_eq!(letters[0].repushed_at, None);
}

#[test]
fn an_outcome_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let t = name("tasks");
    store
        .ensure_trigger(&t, &running(), Position::block_start(3), at(0))
        .unwrap();
    let before = store.trigger(&t).unwrap().unwrap();
    let failed = Status {
        state: State::Failed,
        failures: 1,
        last_error: Some("boom".into()),
    };
    // The second dead letter breaks a constraint (a dead letter has at least one attempt) after the trigger row
    // and the first letter were written in the transaction: nothing of it may remain.
    let error = store
        .record_outcome(&OutcomeRecord {
            anchor: None,
            trigger: &t,
            status: &failed,
            position: Position { block: 4, index: 0 },
            delivered: 0,
            discarded: 2,
            dead_letters: &[letter(3, 0, 2), letter(3, 0, 0)],
            at: at(5),
        })
        .unwrap_err();
    assert!(error.to_string().contains("chaintrigger.db"), "{error}");
    assert_eq!(store.trigger(&t).unwrap().unwrap(), before);
    assert!(
        store
            .dead_letters(&DeadLetterQuery::default())
            .unwrap()
            .is_empty()
    );
    // The store is still usable after the failed transaction.
    store
        .record_outcome(&OutcomeRecord {
            anchor: None,
            trigger: &t,
            status: &running(),
            position: Position { block: 3, index: 1 },
            delivered: 1,
            discarded: 0,
            dead_letters: &[],
            at: at(6),
        })
        .unwrap();
    assert_eq!(store.trigger(&t).unwrap().unwrap().delivered, 1);
}

#[test]
fn an_outcome_for_an_unknown_trigger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let error = store
        .record_outcome(&OutcomeRecord {
            anchor: None,
            trigger: &name("ghost"),
            status: &running(),
            position: Position::block_start(1),
            delivered: 1,
            discarded: 0,
            dead_letters: &[letter(1, 0, 1)],
            at: at(0),
        })
        .unwrap_err();
    assert!(matches!(error, StoreError::UnknownTrigger { ref trigger, .. } if trigger == "ghost"));
    assert!(
        store
            .dead_letters(&DeadLetterQuery::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn progress_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = name("tasks");
    let gone = name("gone");
    {
        let store = open(&dir);
        store
            .ensure_trigger(&t, &running(), Position::block_start(0), at(0))
            .unwrap();
        store
            .ensure_trigger(&gone, &running(), Position::block_start(0), at(0))
            .unwrap();
        for i in 0..100u32 {
            let status = Status {
                failures: u64::from(i / 10),
                ..running()
            };
            let letters = if i % 10 == 9 {
                vec![letter(1, i, 3)]
            } else {
                vec![]
            };
            store
                .record_outcome(&OutcomeRecord {
                    anchor: None,
                    trigger: &t,
                    status: &status,
                    position: Position {
                        block: 1,
                        index: i + 1,
                    },
                    delivered: u64::from(letters.is_empty()),
                    discarded: letters.len() as u64,
                    dead_letters: &letters,
                    at: at(u64::from(i)),
                })
                .unwrap();
        }
        let deleted = Status {
            state: State::Deleted,
            ..running()
        };
        store.save_status(&gone, &deleted, None, at(200)).unwrap();
    }
    let store = open(&dir);
    let record = store.trigger(&t).unwrap().unwrap();
    assert_eq!(
        record.position,
        Position {
            block: 1,
            index: 100
        }
    );
    assert_eq!(record.status.failures, 9);
    assert_eq!((record.delivered, record.discarded), (90, 10));
    assert_eq!(
        store
            .dead_letters(&DeadLetterQuery::default())
            .unwrap()
            .len(),
        10
    );
    // A trigger deleted over the API stays deleted, even if its configuration entry asks for it again.
    let gone_record = store
        .ensure_trigger(&gone, &running(), Position::block_start(0), at(300))
        .unwrap();
    assert!(is_deleted(&gone_record));
}

#[test]
fn commands_save_status_and_move_the_position_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let t = name("tasks");
    store
        .ensure_trigger(&t, &running(), Position { block: 5, index: 2 }, at(0))
        .unwrap();
    let disabled = Status {
        state: State::Disabled,
        failures: 3,
        last_error: Some("x".into()),
    };
    store.save_status(&t, &disabled, None, at(1)).unwrap();
    let record = store.trigger(&t).unwrap().unwrap();
    assert_eq!(record.status, disabled);
    assert_eq!(record.position, Position { block: 5, index: 2 });
    store
        .save_status(
            &t,
            &running(),
            Some((Position::block_start(42), None)),
            at(2),
        )
        .unwrap();
    let record = store.trigger(&t).unwrap().unwrap();
    assert_eq!(record.status, running());
    assert_eq!(record.position, Position::block_start(42));
    assert!(matches!(
        store.save_status(&name("ghost"), &running(), None, at(3)),
        Err(StoreError::UnknownTrigger { .. })
    ));
}

#[test]
fn dead_letters_are_listed_filtered_and_marked_repushed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (a, b) = (name("a"), name("b"));
    for t in [&a, &b] {
        store
            .ensure_trigger(t, &running(), Position::block_start(0), at(0))
            .unwrap();
    }
    for (i, t) in [&a, &b, &a].into_iter().enumerate() {
        store
            .record_outcome(&OutcomeRecord {
                anchor: None,
                trigger: t,
                status: &running(),
                position: Position::block_start(i as u64 + 1),
                delivered: 0,
                discarded: 1,
                dead_letters: &[letter(i as u64, 0, 1)],
                at: at(i as u64),
            })
            .unwrap();
    }
    let all = store.dead_letters(&DeadLetterQuery::default()).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    let of_a = store
        .dead_letters(&DeadLetterQuery {
            trigger: Some(&a),
            ..DeadLetterQuery::default()
        })
        .unwrap();
    assert_eq!(
        of_a.iter()
            .map(|l| l.letter.position.block)
            .collect::<Vec<_>>(),
        vec![0, 2]
    );
    let first = store
        .dead_letters(&DeadLetterQuery {
            limit: Some(1),
            ..DeadLetterQuery::default()
        })
        .unwrap();
    assert_eq!(first.len(), 1);

    store.mark_repushed(of_a[0].id, at(50)).unwrap();
    let pending = store.dead_letters(&DeadLetterQuery::default()).unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|l| l.id != of_a[0].id));
    let with_repushed = store
        .dead_letters(&DeadLetterQuery {
            include_repushed: true,
            ..DeadLetterQuery::default()
        })
        .unwrap();
    assert_eq!(with_repushed.len(), 3);
    let repushed = store.dead_letter(of_a[0].id).unwrap().unwrap();
    assert_eq!(repushed.repushed_at, Some(at(50)));
    assert_eq!(store.dead_letter(9_999).unwrap(), None);
    assert!(matches!(
        store.mark_repushed(9_999, at(51)),
        Err(StoreError::UnknownDeadLetter { id: 9_999, .. })
    ));
}

#[test]
fn the_database_is_in_wal_mode_with_a_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ct.db");
    drop(SqliteStore::open(&path).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = connection
        .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(version, 2);
    // A database from a newer chaintrigger is refused, not misread.
    connection
        .execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .unwrap();
    drop(connection);
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NewerSchema {
                found: 99,
                known: 2,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn corrupt_values_are_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ct.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .ensure_trigger(&name("t"), &running(), Position::block_start(0), at(0))
        .unwrap();
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute("UPDATE triggers SET state = 'Sleeping'", [])
        .unwrap();
    let error = store.trigger(&name("t")).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("bad stored value for state of trigger `t`: Sleeping"),
        "{error}"
    );
}

#[test]
fn the_store_is_shareable_between_threads() {
    fn assert_store<T: Store + 'static>() {}
    assert_store::<SqliteStore>();
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(&dir));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let t = name(&format!("t{i}"));
                store
                    .ensure_trigger(&t, &running(), Position::block_start(0), at(0))
                    .unwrap();
                for n in 0..50u32 {
                    store
                        .record_outcome(&OutcomeRecord {
                            anchor: None,
                            trigger: &t,
                            status: &running(),
                            position: Position {
                                block: 0,
                                index: n + 1,
                            },
                            delivered: 1,
                            discarded: 0,
                            dead_letters: &[],
                            at: at(u64::from(n)),
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let records = store.triggers().unwrap();
    assert_eq!(records.len(), 4);
    assert!(
        records
            .iter()
            .all(|r| r.delivered == 50 && r.position.index == 50)
    );
}

#[test]
fn a_database_from_before_block_anchors_keeps_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ct.db");
    {
        // The schema as the first release wrote it: version 1, no anchor columns.
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(super::sqlite::MIGRATIONS[0])
            .and_then(|()| {
                connection.execute_batch(
                    "CREATE TABLE schema_version (version INTEGER NOT NULL);
                     INSERT INTO schema_version (version) VALUES (1);
                     INSERT INTO triggers (name, state, block, event_index, delivered, updated_at)
                         VALUES ('old', 'Running', 41, 2, 7, 1000);",
                )
            })
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let record = store.trigger(&name("old")).unwrap().unwrap();
    assert_eq!(
        record.position,
        Position {
            block: 41,
            index: 2
        }
    );
    assert_eq!(record.delivered, 7);
    assert_eq!(
        record.anchor, None,
        "no anchor is invented for old progress"
    );
}
