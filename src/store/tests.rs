//! The store suite, run against both backends: SQLite in a temporary folder, PostgreSQL on a throwaway server
//! (see `tests/it/support/postgres.rs`), each test on a database of its own. A test takes a [`Backend`] and opens
//! stores through it; opening again is a restart.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;

#[path = "../../tests/it/support/postgres.rs"]
mod postgres_server;

/// One database of one backend, for one test.
trait Backend {
    /// Opens a store on the database (again: a restart).
    fn try_open(&self) -> Result<Arc<dyn Store>, StoreError>;
    /// [`Backend::try_open`], which must succeed.
    fn open(&self) -> Arc<dyn Store> {
        self.try_open().unwrap()
    }
    /// What the store's errors must name: the file, or the database.
    fn name(&self) -> String;
    /// Runs SQL on the database behind the store's back (an operator's shell, a corrupting hand).
    fn execute(&self, sql: &str);
    /// The schema version this program writes.
    fn known_version(&self) -> i64;
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("state").join("chaintrigger.db")
    }
}

impl Backend for Sqlite {
    fn try_open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(SqliteStore::open(&self.path())?))
    }

    fn name(&self) -> String {
        "chaintrigger.db".into()
    }

    fn execute(&self, sql: &str) {
        rusqlite::Connection::open(self.path())
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    fn known_version(&self) -> i64 {
        super::sqlite::MIGRATIONS.len() as i64
    }
}

struct Postgres {
    database: postgres_server::TestDatabase,
}

impl Postgres {
    fn new() -> Postgres {
        Postgres {
            database: postgres_server::server().create_database(),
        }
    }

    fn options(&self) -> PostgresOptions {
        PostgresOptions {
            url: self.database.url.clone(),
            password: Some(crate::config::Secret::new(self.database.password.clone())),
            tls_ca: None,
        }
    }
}

impl Backend for Postgres {
    fn try_open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(PostgresStore::open(&self.options())?))
    }

    fn name(&self) -> String {
        self.database.name.clone()
    }

    fn execute(&self, sql: &str) {
        postgres_server::server().psql(&self.database.name, sql);
    }

    fn known_version(&self) -> i64 {
        super::postgres::MIGRATIONS.len() as i64
    }
}

/// Runs each named test (a function taking `&dyn Backend`) once per backend.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[test]
            fn $test() {
                super::$test(&super::Sqlite::new());
            })*
        }
        mod postgres_backend {
            $(#[test]
            fn $test() {
                super::$test(&super::Postgres::new());
            })*
        }
    };
}

on_both_backends!(
    a_new_trigger_is_created_once_and_keeps_its_progress,
    an_outcome_writes_position_state_counters_and_dead_letter_together,
    an_outcome_is_all_or_nothing,
    an_outcome_for_an_unknown_trigger_is_refused,
    progress_survives_reopening_the_database,
    commands_save_status_and_move_the_position_when_asked,
    dead_letters_are_listed_filtered_and_marked_repushed,
    a_database_from_a_newer_program_is_refused,
    corrupt_values_are_reported_not_misread,
    the_store_is_shareable_between_threads,
    anchors_and_payloads_are_kept_exactly,
);

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

fn a_new_trigger_is_created_once_and_keeps_its_progress(backend: &dyn Backend) {
    let store = backend.open();
    let t = name("tasks");
    let created = store
        .ensure_trigger(&t, &running(), Position::block_start(10), at(0), None)
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
        .record_outcome(
            &OutcomeRecord {
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
            },
            None,
        )
        .unwrap();
    // Starting again (a restart, with the same configuration) does not reset it.
    let again = store
        .ensure_trigger(&t, &running(), Position::block_start(99), at(2), None)
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

fn an_outcome_writes_position_state_counters_and_dead_letter_together(backend: &dyn Backend) {
    let store = backend.open();
    let t = name("tasks");
    store
        .ensure_trigger(&t, &running(), Position::block_start(3), at(0), None)
        .unwrap();
    let failed_once = Status {
        state: State::Running,
        failures: 1,
        last_error: Some("boom".into()),
    };
    store
        .record_outcome(
            &OutcomeRecord {
                anchor: None,
                trigger: &t,
                status: &failed_once,
                position: Position { block: 3, index: 1 },
                delivered: 0,
                discarded: 1,
                dead_letters: &[letter(3, 0, 5)],
                at: at(5),
            },
            None,
        )
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

fn an_outcome_is_all_or_nothing(backend: &dyn Backend) {
    let store = backend.open();
    let t = name("tasks");
    store
        .ensure_trigger(&t, &running(), Position::block_start(3), at(0), None)
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
        .record_outcome(
            &OutcomeRecord {
                anchor: None,
                trigger: &t,
                status: &failed,
                position: Position { block: 4, index: 0 },
                delivered: 0,
                discarded: 2,
                dead_letters: &[letter(3, 0, 2), letter(3, 0, 0)],
                at: at(5),
            },
            None,
        )
        .unwrap_err();
    assert!(error.to_string().contains(&backend.name()), "{error}");
    assert_eq!(store.trigger(&t).unwrap().unwrap(), before);
    assert!(
        store
            .dead_letters(&DeadLetterQuery::default())
            .unwrap()
            .is_empty()
    );
    // The store is still usable after the failed transaction.
    store
        .record_outcome(
            &OutcomeRecord {
                anchor: None,
                trigger: &t,
                status: &running(),
                position: Position { block: 3, index: 1 },
                delivered: 1,
                discarded: 0,
                dead_letters: &[],
                at: at(6),
            },
            None,
        )
        .unwrap();
    assert_eq!(store.trigger(&t).unwrap().unwrap().delivered, 1);
}

fn an_outcome_for_an_unknown_trigger_is_refused(backend: &dyn Backend) {
    let store = backend.open();
    let error = store
        .record_outcome(
            &OutcomeRecord {
                anchor: None,
                trigger: &name("ghost"),
                status: &running(),
                position: Position::block_start(1),
                delivered: 1,
                discarded: 0,
                dead_letters: &[letter(1, 0, 1)],
                at: at(0),
            },
            None,
        )
        .unwrap_err();
    assert!(matches!(error, StoreError::UnknownTrigger { ref trigger, .. } if trigger == "ghost"));
    assert!(
        store
            .dead_letters(&DeadLetterQuery::default())
            .unwrap()
            .is_empty()
    );
}

fn progress_survives_reopening_the_database(backend: &dyn Backend) {
    let t = name("tasks");
    let gone = name("gone");
    {
        let store = backend.open();
        store
            .ensure_trigger(&t, &running(), Position::block_start(0), at(0), None)
            .unwrap();
        store
            .ensure_trigger(&gone, &running(), Position::block_start(0), at(0), None)
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
                .record_outcome(
                    &OutcomeRecord {
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
                    },
                    None,
                )
                .unwrap();
        }
        let deleted = Status {
            state: State::Deleted,
            ..running()
        };
        store
            .save_status(&gone, &deleted, None, at(200), None)
            .unwrap();
    }
    let store = backend.open();
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
        .ensure_trigger(&gone, &running(), Position::block_start(0), at(300), None)
        .unwrap();
    assert!(is_deleted(&gone_record));
}

fn commands_save_status_and_move_the_position_when_asked(backend: &dyn Backend) {
    let store = backend.open();
    let t = name("tasks");
    store
        .ensure_trigger(&t, &running(), Position { block: 5, index: 2 }, at(0), None)
        .unwrap();
    let disabled = Status {
        state: State::Disabled,
        failures: 3,
        last_error: Some("x".into()),
    };
    store.save_status(&t, &disabled, None, at(1), None).unwrap();
    let record = store.trigger(&t).unwrap().unwrap();
    assert_eq!(record.status, disabled);
    assert_eq!(record.position, Position { block: 5, index: 2 });
    store
        .save_status(
            &t,
            &running(),
            Some((Position::block_start(42), None)),
            at(2),
            None,
        )
        .unwrap();
    let record = store.trigger(&t).unwrap().unwrap();
    assert_eq!(record.status, running());
    assert_eq!(record.position, Position::block_start(42));
    assert!(matches!(
        store.save_status(&name("ghost"), &running(), None, at(3), None),
        Err(StoreError::UnknownTrigger { .. })
    ));
}

fn dead_letters_are_listed_filtered_and_marked_repushed(backend: &dyn Backend) {
    let store = backend.open();
    let (a, b) = (name("a"), name("b"));
    for t in [&a, &b] {
        store
            .ensure_trigger(t, &running(), Position::block_start(0), at(0), None)
            .unwrap();
    }
    for (i, t) in [&a, &b, &a].into_iter().enumerate() {
        store
            .record_outcome(
                &OutcomeRecord {
                    anchor: None,
                    trigger: t,
                    status: &running(),
                    position: Position::block_start(i as u64 + 1),
                    delivered: 0,
                    discarded: 1,
                    dead_letters: &[letter(i as u64, 0, 1)],
                    at: at(i as u64),
                },
                None,
            )
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
fn the_sqlite_database_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ct.db");
    drop(SqliteStore::open(&path).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

fn a_database_from_a_newer_program_is_refused(backend: &dyn Backend) {
    drop(backend.open());
    // A database from a newer chaintrigger is refused, not misread.
    backend.execute("INSERT INTO schema_version (version) VALUES (99)");
    let error = backend.try_open().err().expect("refused");
    let known = backend.known_version();
    assert!(
        matches!(error, StoreError::NewerSchema { found: 99, known: k, .. } if k == known),
        "{error}"
    );
    assert!(error.to_string().contains(&backend.name()), "{error}");
}

fn corrupt_values_are_reported_not_misread(backend: &dyn Backend) {
    let store = backend.open();
    store
        .ensure_trigger(
            &name("t"),
            &running(),
            Position::block_start(0),
            at(0),
            None,
        )
        .unwrap();
    backend.execute("UPDATE triggers SET state = 'Sleeping'");
    let error = store.trigger(&name("t")).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("bad stored value for state of trigger `t`: Sleeping"),
        "{error}"
    );
    assert!(error.to_string().contains(&backend.name()), "{error}");
}

fn the_store_is_shareable_between_threads(backend: &dyn Backend) {
    fn assert_store<T: Store + 'static>() {}
    assert_store::<SqliteStore>();
    assert_store::<PostgresStore>();
    let store = backend.open();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let t = name(&format!("t{i}"));
                store
                    .ensure_trigger(&t, &running(), Position::block_start(0), at(0), None)
                    .unwrap();
                for n in 0..50u32 {
                    store
                        .record_outcome(
                            &OutcomeRecord {
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
                            },
                            None,
                        )
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

fn anchors_and_payloads_are_kept_exactly(backend: &dyn Backend) {
    let store = backend.open();
    let t = name("exact");
    let far = Position {
        block: i64::MAX as u64,
        index: u32::MAX,
    };
    store
        .ensure_trigger(&t, &running(), Position::block_start(7), at(0), None)
        .unwrap();
    let anchor = Anchor {
        block: 6,
        hash: [0xab; 32],
    };
    // Key order, unicode, escapes and big numbers of a payload come back as they were pushed.
    let payload = json!({"z": 1, "a": "ünïcødé \u{1F600} \"q\" \\", "n": 18_446_744_073_709_551_615u64, "m": [null, 1.5]});
    let mut dead = letter(7, 3, 2);
    dead.payload = payload.clone();
    store
        .record_outcome(
            &OutcomeRecord {
                anchor: Some(anchor),
                trigger: &t,
                status: &running(),
                position: Position { block: 7, index: 4 },
                delivered: 0,
                discarded: 1,
                dead_letters: &[dead],
                at: at(1),
            },
            None,
        )
        .unwrap();
    let record = store.trigger(&t).unwrap().unwrap();
    assert_eq!(record.anchor, Some(anchor));
    let stored = &store.dead_letters(&DeadLetterQuery::default()).unwrap()[0];
    assert_eq!(stored.letter.payload, payload);
    assert_eq!(
        stored.letter.payload.to_string(),
        payload.to_string(),
        "same keys in the same order"
    );
    // A status change that does not move the position keeps the anchor; one that moves it sets the new one.
    store
        .save_status(&t, &running(), None, at(2), None)
        .unwrap();
    assert_eq!(store.trigger(&t).unwrap().unwrap().anchor, Some(anchor));
    store
        .save_status(&t, &running(), Some((far, None)), at(3), None)
        .unwrap();
    let record = store.trigger(&t).unwrap().unwrap();
    assert_eq!((record.position, record.anchor), (far, None));
}

// PostgreSQL only: what a server adds (logins, the network, several daemons on one database).

fn postgres_config(
    database: &postgres_server::TestDatabase,
    password: crate::config::SecretSource,
) -> Database {
    Database::Postgres(crate::config::PostgresDatabase {
        url: crate::config::PostgresUrl::new(&database.url).unwrap(),
        password: Some(password),
        tls_ca: None,
        lease_ttl: crate::config::LeaseTtl::DEFAULT,
    })
}

#[test]
fn postgres_the_password_comes_from_its_secret_source_and_is_never_shown() {
    let database = postgres_server::server().create_database();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg-password");
    std::fs::write(&file, format!("{}\n", database.password)).unwrap();
    let store = open(&postgres_config(
        &database,
        crate::config::SecretSource::File(file.clone()),
    ))
    .unwrap();
    store
        .ensure_trigger(
            &name("t"),
            &running(),
            Position::block_start(0),
            at(0),
            None,
        )
        .unwrap();

    std::fs::write(&file, "not-the-password-4711").unwrap();
    let error = open(&postgres_config(
        &database,
        crate::config::SecretSource::File(file.clone()),
    ))
    .err()
    .expect("refused")
    .to_string();
    assert!(error.contains(&database.url), "{error}");
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(!error.contains("not-the-password-4711"), "{error}");

    let missing = dir.path().join("absent");
    let error = open(&postgres_config(
        &database,
        crate::config::SecretSource::File(missing),
    ))
    .err()
    .expect("refused")
    .to_string();
    assert!(
        error.contains(&database.url) && error.contains("absent"),
        "{error}"
    );
}

#[test]
fn postgres_an_unreachable_server_fails_at_once_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://chaintrigger@127.0.0.1:{port}/ct?sslmode=disable");
    let started = std::time::Instant::now();
    let error = PostgresStore::open(&PostgresOptions {
        url: url.clone(),
        password: None,
        tls_ca: None,
    })
    .unwrap_err()
    .to_string();
    assert!(error.starts_with(&format!("database {url}: ")), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "{error}");
}

#[test]
fn postgres_daemons_starting_at_once_migrate_the_database_once() {
    let backend = Postgres::new();
    let stores: Vec<_> = std::thread::scope(|scope| {
        let opening: Vec<_> = (0..4).map(|_| scope.spawn(|| backend.open())).collect();
        opening.into_iter().map(|o| o.join().unwrap()).collect()
    });
    let version = postgres_server::server().psql(
        &backend.database.name,
        "SELECT count(*) || ' ' || max(version) FROM schema_version",
    );
    assert_eq!(version.trim(), format!("{0} {0}", backend.known_version()));
    for (i, store) in stores.iter().enumerate() {
        store
            .ensure_trigger(
                &name(&format!("t{i}")),
                &running(),
                Position::block_start(0),
                at(0),
                None,
            )
            .unwrap();
    }
    assert_eq!(stores[0].triggers().unwrap().len(), 4);
}

#[test]
fn postgres_connections_the_server_closed_are_replaced() {
    let backend = Postgres::new();
    let store = backend.open();
    let t = name("t");
    store
        .ensure_trigger(&t, &running(), Position::block_start(0), at(0), None)
        .unwrap();
    // The server ends every connection of the store (an administrator, a failover, an idle timeout).
    backend.execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        backend.database.name
    ));
    std::thread::sleep(Duration::from_millis(300));
    store
        .record_outcome(
            &OutcomeRecord {
                anchor: None,
                trigger: &t,
                status: &running(),
                position: Position::block_start(1),
                delivered: 1,
                discarded: 0,
                dead_letters: &[],
                at: at(1),
            },
            None,
        )
        .unwrap();
    assert_eq!(store.trigger(&t).unwrap().unwrap().delivered, 1);
}

/// A second throwaway server that speaks TLS on 127.0.0.1 with a certificate for `localhost` from a test CA.
fn tls_server() -> (
    postgres_server::PgServer,
    crate::peersim::pki::TestCa,
    tempfile::TempDir,
) {
    crate::install_crypto_provider();
    let ca = crate::peersim::pki::TestCa::new("postgres test CA", "chaintrigger test").unwrap();
    let leaf = ca.issue("localhost", &["localhost"]).unwrap();
    // The server reads its key as its own user, with no access for others.
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (
        files.path().join("server.crt"),
        files.path().join("server.key"),
    );
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        for path in [files.path(), &cert, &key] {
            std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = port.to_string();
    let server = postgres_server::PgServer::start(&[
        ("fsync", "off"),
        ("listen_addresses", "127.0.0.1"),
        ("port", &port),
        ("ssl", "on"),
        ("ssl_cert_file", &cert.display().to_string()),
        ("ssl_key_file", &key.display().to_string()),
    ]);
    (server, ca, files)
}

#[test]
fn postgres_tls_verifies_the_server_against_the_configured_ca() {
    let (server, ca, files) = tls_server();
    let database = server.create_database();
    let port = server.psql("postgres", "SHOW port");
    let url = |mode: &str| {
        format!(
            "postgres://postgres@localhost:{}/{}?sslmode={mode}",
            port.trim(),
            database.name
        )
    };
    let ca_file = files.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let options = |mode: &str, tls_ca: Option<std::path::PathBuf>| PostgresOptions {
        url: url(mode),
        password: Some(crate::config::Secret::new(database.password.clone())),
        tls_ca,
    };
    let store = PostgresStore::open(&options("require", Some(ca_file.clone()))).unwrap();
    store
        .ensure_trigger(
            &name("t"),
            &running(),
            Position::block_start(0),
            at(0),
            None,
        )
        .unwrap();
    let encrypted = server.psql(
        &database.name,
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'chaintrigger'",
    );
    assert_ne!(encrypted.trim(), "0", "the store's connection uses TLS");

    // Verification is always on: a server whose certificate does not chain to a trusted root is refused, with
    // `require` and with `prefer` alike (no silent fallback to an unverified or plaintext connection).
    for mode in ["require", "prefer"] {
        let error = PostgresStore::open(&options(mode, None))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&url(mode)), "{error}");
        assert!(error.to_lowercase().contains("certificate"), "{error}");
    }
    let other = crate::peersim::pki::TestCa::new("another CA", "elsewhere").unwrap();
    let other_file = files.path().join("other.pem");
    std::fs::write(&other_file, other.cert_pem()).unwrap();
    let error = PostgresStore::open(&options("require", Some(other_file)))
        .unwrap_err()
        .to_string();
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // A CA file that is not one is named.
    let junk = files.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let error = PostgresStore::open(&options("require", Some(junk)))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("junk.pem") && error.contains("no PEM certificate"),
        "{error}"
    );
}

/// Two stores on one database: two daemons.
fn two_daemons() -> (Postgres, Arc<dyn Store>, Arc<dyn Store>) {
    let backend = Postgres::new();
    let (a, b) = (backend.open(), backend.open());
    (backend, a, b)
}

fn outcome_at<'a>(t: &'a TriggerName, status: &'a Status, block: u64) -> OutcomeRecord<'a> {
    OutcomeRecord {
        trigger: t,
        status,
        position: Position::block_start(block),
        anchor: None,
        delivered: 1,
        discarded: 0,
        dead_letters: &[],
        at: at(block),
    }
}

#[test]
fn postgres_a_lease_fences_the_writes_of_a_daemon_that_lost_its_channel() {
    let (_backend, a, b) = two_daemons();
    let (daemon_a, daemon_b) = (DaemonId::new("a"), DaemonId::new("b"));
    let channel = ChannelName::new("ch1").unwrap();
    let ttl = Duration::from_millis(1_000);
    let t = name("t");
    let status = running();
    a.ensure_trigger(&t, &status, Position::block_start(0), at(0), None)
        .unwrap();

    let generation = a.acquire_lease(&channel, &daemon_a, ttl).unwrap().unwrap();
    assert_eq!(generation, 1);
    assert_eq!(
        b.acquire_lease(&channel, &daemon_b, ttl).unwrap(),
        None,
        "a live lease is not taken"
    );
    let fence_a = Fence {
        channel: channel.clone(),
        owner: daemon_a.clone(),
        generation,
    };
    a.record_outcome(&outcome_at(&t, &status, 1), Some(&fence_a))
        .unwrap();
    assert_eq!(
        a.renew_leases(&daemon_a, &[(channel.clone(), generation)], ttl)
            .unwrap(),
        vec![channel.clone()]
    );

    // Paused past its lease: its writes are refused even before anyone takes the channel.
    std::thread::sleep(ttl + Duration::from_millis(200));
    let refused = a
        .record_outcome(&outcome_at(&t, &status, 2), Some(&fence_a))
        .unwrap_err();
    assert!(refused.is_fenced(), "{refused}");
    assert!(
        refused.to_string().contains("channel `ch1`")
            && refused.to_string().contains("generation 1"),
        "{refused}"
    );
    assert_eq!(
        a.renew_leases(&daemon_a, &[(channel.clone(), generation)], ttl)
            .unwrap(),
        Vec::<ChannelName>::new(),
        "an expired lease is lost, not renewed"
    );

    // Another daemon takes it over (a new generation) and resumes from the stored position.
    let taken = b.acquire_lease(&channel, &daemon_b, ttl).unwrap().unwrap();
    assert_eq!(taken, 2);
    assert_eq!(
        b.trigger(&t).unwrap().unwrap().position,
        Position::block_start(1)
    );
    let fence_b = Fence {
        channel: channel.clone(),
        owner: daemon_b.clone(),
        generation: taken,
    };
    b.record_outcome(&outcome_at(&t, &status, 2), Some(&fence_b))
        .unwrap();
    // The old owner's writes of every kind are refused; nothing moves.
    assert!(
        a.record_outcome(&outcome_at(&t, &status, 9), Some(&fence_a))
            .unwrap_err()
            .is_fenced()
    );
    assert!(
        a.save_status(&t, &Status::new(false), None, at(9), Some(&fence_a))
            .unwrap_err()
            .is_fenced()
    );
    assert!(
        a.ensure_trigger(
            &name("new"),
            &status,
            Position::block_start(0),
            at(9),
            Some(&fence_a)
        )
        .unwrap_err()
        .is_fenced()
    );
    assert_eq!(a.trigger(&name("new")).unwrap(), None);
    let record = a.trigger(&t).unwrap().unwrap();
    assert_eq!(record.position, Position::block_start(2));
    assert_eq!(record.status, status);
    assert_eq!(record.delivered, 2);
    // Even the same owner and generation on another channel is no fence.
    let other = Fence {
        channel: ChannelName::new("ch2").unwrap(),
        ..fence_b.clone()
    };
    assert!(
        b.record_outcome(&outcome_at(&t, &status, 3), Some(&other))
            .unwrap_err()
            .is_fenced()
    );

    // A release hands it over at once.
    b.release_leases(&daemon_b, std::slice::from_ref(&channel))
        .unwrap();
    assert!(
        b.record_outcome(&outcome_at(&t, &status, 3), Some(&fence_b))
            .unwrap_err()
            .is_fenced(),
        "a released lease fences its owner too"
    );
    assert_eq!(a.acquire_lease(&channel, &daemon_a, ttl).unwrap(), Some(3));
    let view = b.cluster().unwrap();
    assert_eq!(view.leases.len(), 1);
    assert_eq!(view.leases[0].owner, daemon_a);
    assert_eq!((view.leases[0].generation, view.leases[0].live), (3, true));
}

#[test]
fn postgres_heartbeats_say_which_daemons_are_alive() {
    let (_backend, a, b) = two_daemons();
    let (daemon_a, daemon_b) = (DaemonId::new("a"), DaemonId::new("b"));
    a.heartbeat(&daemon_a, Duration::from_secs(30)).unwrap();
    b.heartbeat(&daemon_b, Duration::from_millis(1_000))
        .unwrap();
    let live = |store: &Arc<dyn Store>| -> Vec<String> {
        store
            .cluster()
            .unwrap()
            .daemons
            .into_iter()
            .filter(|daemon| daemon.live)
            .map(|daemon| daemon.id.to_string())
            .collect()
    };
    assert_eq!(live(&a), ["a", "b"]);
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(live(&a), ["a"], "b stopped sending heartbeats");
    b.heartbeat(&daemon_b, Duration::from_secs(30)).unwrap();
    assert_eq!(live(&a), ["a", "b"]);
    b.leave(&daemon_b).unwrap();
    assert_eq!(
        live(&a),
        ["a"],
        "a daemon that leaves stops counting at once"
    );
}

#[test]
fn sqlite_grants_every_lease_to_its_one_daemon() {
    let backend = Sqlite::new();
    let store = backend.open();
    assert!(!store.shared());
    let channel = ChannelName::new("ch1").unwrap();
    let me = DaemonId::new("a");
    assert_eq!(
        store
            .acquire_lease(&channel, &me, Duration::from_secs(1))
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .acquire_lease(&channel, &DaemonId::new("b"), Duration::from_secs(1))
            .unwrap(),
        Some(1),
        "one daemon per file: the newest process takes everything"
    );
    assert_eq!(store.cluster().unwrap(), ClusterView::default());
}

/// A thousand triggers starting together once took tokio's blocking pool to its 512 threads. The calls must run at
/// most `STORE_THREADS` at once, counting one whose caller was cancelled while it still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_store_calls_at_once_use_a_few_threads_and_a_caller_giving_up_keeps_its_slot() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let backend = Sqlite::new();
    let store = backend.open();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let counted = |running: Arc<AtomicUsize>, most: Arc<AtomicUsize>, hold: Duration| {
        move |store: &dyn Store| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(hold);
            let record = store.trigger(&name("t1"));
            running.fetch_sub(1, Ordering::SeqCst);
            record
        }
    };

    // A call whose caller stops waiting: its permit must stay taken until the call itself ends.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let abandoned = tokio::spawn({
        let (store, running, most) = (store.clone(), running.clone(), most.clone());
        async move {
            super::blocking(&store, move |store| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                released.recv().unwrap();
                running.fetch_sub(1, Ordering::SeqCst);
                store.trigger(&name("t1"))
            })
            .await
        }
    });
    while running.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());

    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let call = counted(running.clone(), most.clone(), Duration::from_micros(200));
            let store = store.clone();
            tokio::spawn(async move { super::blocking(&store, call).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    release.send(()).unwrap();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), None);
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=super::STORE_THREADS).contains(&most),
        "{most} store calls ran at once; the bound is {}",
        super::STORE_THREADS
    );
}
