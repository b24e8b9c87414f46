//! The SQLite store.
//!
//! Durability: WAL journal with `synchronous = NORMAL`. A committed transaction is in the WAL file as soon as
//! `COMMIT` returns; a killed process (`kill -9`, panic, OOM kill) loses nothing that was committed, because the
//! WAL's pages are in the operating system's cache, which outlives the process. Only an OS crash or power loss
//! can drop the last few commits, and then the store goes back to an earlier consistent point: since a position
//! only moves in the same transaction as its outcome, the events after it are pushed again (at-least-once holds)
//! and none is lost. `synchronous = FULL` would fsync every outcome, capping a trigger's rate at the disk's fsync
//! rate for no gain in that promise.
//!
//! One daemon per file: leases are granted at once (generation 1, never expiring), no other daemon is ever seen,
//! and the fence a write carries is not checked. The file format is the one of earlier versions.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::sqlite_wal::WalCheckpointer;

use super::values::{
    TriggerRow, anchor_block, anchor_hash, from_millis, to_i64, to_millis, to_u64,
};
use super::{
    ClusterView, DaemonId, DeadLetter, DeadLetterQuery, Fence, ForwardedCommand, NewDeadLetter,
    OutcomeRecord, Store, StoreError, TriggerRecord,
};
use crate::config::{ChannelName, TriggerName};
use crate::trigger::state::{Anchor, Position, Status};

/// The schema, one migration per version; a database records the last version applied.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE triggers (
    name        TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    block       INTEGER NOT NULL CHECK (block >= 0),
    event_index INTEGER NOT NULL CHECK (event_index >= 0),
    failures    INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_error  TEXT,
    delivered   INTEGER NOT NULL DEFAULT 0,
    discarded   INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    trigger     TEXT NOT NULL REFERENCES triggers(name),
    event_id    TEXT NOT NULL,
    block       INTEGER NOT NULL,
    event_index INTEGER NOT NULL,
    output      INTEGER NOT NULL,
    payload     TEXT NOT NULL CHECK (json_valid(payload)),
    error       TEXT NOT NULL,
    attempts    INTEGER NOT NULL CHECK (attempts >= 1),
    created_at  INTEGER NOT NULL,
    repushed_at INTEGER
);
CREATE INDEX dead_letters_by_trigger ON dead_letters(trigger, id);
"#,
    r#"
ALTER TABLE triggers ADD COLUMN anchor_block INTEGER;
ALTER TABLE triggers ADD COLUMN anchor_hash BLOB CHECK (anchor_hash IS NULL OR length(anchor_hash) = 32);
"#,
];

/// How long a writer waits for another connection's lock (e.g. an operator's `sqlite3` shell) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite file holding trigger progress and dead letters.
#[derive(Debug)]
pub struct SqliteStore {
    /// One connection: SQLite serialises writers anyway, and each call is one short transaction.
    connection: Mutex<Connection>,
    /// The file, to name it in every error.
    path: String,
    /// Copies the WAL into the database off the write path (see [`crate::sqlite_wal`]).
    _checkpointer: WalCheckpointer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let name = path.display().to_string();
        let error = |source| StoreError::Sqlite {
            path: name.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Sqlite {
                path: name.clone(),
                source: rusqlite::Error::InvalidPath(
                    format!("cannot create {}: {e}", parent.display()).into(),
                ),
            })?;
        }
        let mut connection = Connection::open(path).map_err(error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
        let checkpointer = WalCheckpointer::start(path, &mut connection).map_err(error)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(error)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(error)?;
        migrate(&mut connection, &name)?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
            path: name,
            _checkpointer: checkpointer,
        })
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (rusqlite rolls back on drop),
        // so a poisoned lock is safe to take over.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_trigger(&self, row: &Row<'_>) -> Result<TriggerRecord, StoreError> {
        let get = |i: usize| row.get::<_, i64>(i).map_err(|e| self.sqlite(e));
        let row = TriggerRow {
            name: row.get(0).map_err(|e| self.sqlite(e))?,
            state: row.get(1).map_err(|e| self.sqlite(e))?,
            block: get(2)?,
            index: get(3)?,
            failures: get(4)?,
            last_error: row.get(5).map_err(|e| self.sqlite(e))?,
            delivered: get(6)?,
            discarded: get(7)?,
            updated_at: get(8)?,
            anchor_block: row.get(9).map_err(|e| self.sqlite(e))?,
            anchor_hash: row.get(10).map_err(|e| self.sqlite(e))?,
        };
        row.into_record()
            .map_err(|(what, found)| StoreError::Corrupt {
                path: self.path.clone(),
                what,
                found,
            })
    }

    fn read_dead_letter(&self, row: &Row<'_>) -> Result<DeadLetter, StoreError> {
        let sqlite = |e| self.sqlite(e);
        let trigger: String = row.get(1).map_err(sqlite)?;
        let payload: String = row.get(6).map_err(sqlite)?;
        let id: i64 = row.get(0).map_err(sqlite)?;
        let corrupt = |what: &str, found: String| StoreError::Corrupt {
            path: self.path.clone(),
            what: what.to_owned(),
            found,
        };
        Ok(DeadLetter {
            id,
            trigger: TriggerName::new(trigger).map_err(|e| corrupt("trigger name", e))?,
            letter: NewDeadLetter {
                event_id: row.get(2).map_err(sqlite)?,
                position: Position {
                    block: to_u64(row.get(3).map_err(sqlite)?),
                    index: u32::try_from(row.get::<_, i64>(4).map_err(sqlite)?).unwrap_or(u32::MAX),
                },
                output: u32::try_from(row.get::<_, i64>(5).map_err(sqlite)?).unwrap_or(u32::MAX),
                payload: serde_json::from_str(&payload)
                    .map_err(|e| corrupt(&format!("payload of dead letter {id}"), e.to_string()))?,
                error: row.get(7).map_err(sqlite)?,
                attempts: u32::try_from(row.get::<_, i64>(8).map_err(sqlite)?).unwrap_or(u32::MAX),
            },
            created_at: from_millis(row.get(9).map_err(sqlite)?),
            repushed_at: row
                .get::<_, Option<i64>>(10)
                .map_err(sqlite)?
                .map(from_millis),
        })
    }
}

const TRIGGER_COLUMNS: &str = "name, state, block, event_index, failures, last_error, delivered, discarded, updated_at, anchor_block, anchor_hash";
const DEAD_LETTER_COLUMNS: &str = "id, trigger, event_id, block, event_index, output, payload, error, attempts, created_at, repushed_at";

fn migrate(connection: &mut Connection, path: &str) -> Result<(), StoreError> {
    let error = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    connection
        .execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(error)?;
    let current: i64 = connection
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |row| row.get(0),
        )
        .map_err(error)?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: current,
            known,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let transaction = connection.transaction().map_err(error)?;
        transaction.execute_batch(sql).map_err(error)?;
        transaction
            .execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [version as i64 + 1],
            )
            .map_err(error)?;
        transaction.commit().map_err(error)?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn trigger(&self, name: &TriggerName) -> Result<Option<TriggerRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE name = ?1"
            ))
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement
            .query([name.as_str()])
            .map_err(|e| self.sqlite(e))?;
        match rows.next().map_err(|e| self.sqlite(e))? {
            Some(row) => self.read_trigger(row).map(Some),
            None => Ok(None),
        }
    }

    fn triggers(&self) -> Result<Vec<TriggerRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers ORDER BY name"
            ))
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement.query([]).map_err(|e| self.sqlite(e))?;
        let mut records = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            records.push(self.read_trigger(row)?);
        }
        Ok(records)
    }

    fn ensure_trigger(
        &self,
        name: &TriggerName,
        status: &Status,
        position: Position,
        at: SystemTime,
        _fence: Option<&Fence>,
    ) -> Result<TriggerRecord, StoreError> {
        {
            let connection = self.lock();
            connection
                .execute(
                    "INSERT INTO triggers (name, state, block, event_index, failures, last_error, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO NOTHING",
                    params![
                        name.as_str(),
                        status.state.as_str(),
                        to_i64(position.block),
                        position.index,
                        to_i64(status.failures),
                        status.last_error,
                        to_millis(at)
                    ],
                )
                .map_err(|e| self.sqlite(e))?;
        }
        self.trigger(name)?
            .ok_or_else(|| StoreError::UnknownTrigger {
                path: self.path.clone(),
                trigger: name.to_string(),
            })
    }

    fn record_outcome(
        &self,
        outcome: &OutcomeRecord<'_>,
        _fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction().map_err(|e| self.sqlite(e))?;
        let updated = transaction
            .prepare_cached(
                "UPDATE triggers SET state = ?2, block = ?3, event_index = ?4, failures = ?5, last_error = ?6,
                 delivered = delivered + ?7, discarded = discarded + ?8, updated_at = ?9,
                 anchor_block = ?10, anchor_hash = ?11 WHERE name = ?1",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    outcome.trigger.as_str(),
                    outcome.status.state.as_str(),
                    to_i64(outcome.position.block),
                    outcome.position.index,
                    to_i64(outcome.status.failures),
                    outcome.status.last_error,
                    to_i64(outcome.delivered),
                    to_i64(outcome.discarded),
                    to_millis(outcome.at),
                    anchor_block(outcome.anchor),
                    anchor_hash(outcome.anchor)
                ])
            })
            .map_err(|e| self.sqlite(e))?;
        if updated == 0 {
            return Err(StoreError::UnknownTrigger {
                path: self.path.clone(),
                trigger: outcome.trigger.to_string(),
            });
        }
        for letter in outcome.dead_letters {
            transaction
                .prepare_cached(
                    "INSERT INTO dead_letters (trigger, event_id, block, event_index, output, payload, error, attempts, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        outcome.trigger.as_str(),
                        letter.event_id,
                        to_i64(letter.position.block),
                        letter.position.index,
                        letter.output,
                        letter.payload.to_string(),
                        letter.error,
                        letter.attempts,
                        to_millis(outcome.at)
                    ])
                })
                .map_err(|e| self.sqlite(e))?;
        }
        transaction.commit().map_err(|e| self.sqlite(e))
    }

    fn save_status(
        &self,
        name: &TriggerName,
        status: &Status,
        position: Option<(Position, Option<Anchor>)>,
        at: SystemTime,
        _fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let connection = self.lock();
        let anchor = position.and_then(|(_, anchor)| anchor);
        let updated = connection
            .execute(
                "UPDATE triggers SET state = ?2, failures = ?3, last_error = ?4, updated_at = ?5,
                 block = COALESCE(?6, block), event_index = COALESCE(?7, event_index),
                 anchor_block = CASE WHEN ?6 IS NULL THEN anchor_block ELSE ?8 END,
                 anchor_hash = CASE WHEN ?6 IS NULL THEN anchor_hash ELSE ?9 END WHERE name = ?1",
                params![
                    name.as_str(),
                    status.state.as_str(),
                    to_i64(status.failures),
                    status.last_error,
                    to_millis(at),
                    position.map(|(p, _)| to_i64(p.block)),
                    position.map(|(p, _)| p.index),
                    anchor_block(anchor),
                    anchor_hash(anchor)
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        if updated == 0 {
            return Err(StoreError::UnknownTrigger {
                path: self.path.clone(),
                trigger: name.to_string(),
            });
        }
        Ok(())
    }

    fn dead_letters(&self, query: &DeadLetterQuery<'_>) -> Result<Vec<DeadLetter>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters
                 WHERE (?1 IS NULL OR trigger = ?1) AND (?2 OR repushed_at IS NULL)
                 ORDER BY id LIMIT ?3"
            ))
            .map_err(|e| self.sqlite(e))?;
        let mut rows = statement
            .query(params![
                query.trigger.map(TriggerName::as_str),
                query.include_repushed,
                query.limit.map_or(-1, i64::from)
            ])
            .map_err(|e| self.sqlite(e))?;
        let mut letters = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            letters.push(self.read_dead_letter(row)?);
        }
        Ok(letters)
    }

    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?1"
            ))
            .map_err(|e| self.sqlite(e))?;
        let row = statement
            .query_row([id], |row| Ok(self.read_dead_letter(row)))
            .optional()
            .map_err(|e| self.sqlite(e))?;
        row.transpose()
    }

    fn mark_repushed(&self, id: i64, at: SystemTime) -> Result<(), StoreError> {
        let connection = self.lock();
        let updated = connection
            .execute(
                "UPDATE dead_letters SET repushed_at = ?2 WHERE id = ?1",
                params![id, to_millis(at)],
            )
            .map_err(|e| self.sqlite(e))?;
        if updated == 0 {
            return Err(StoreError::UnknownDeadLetter {
                path: self.path.clone(),
                id,
            });
        }
        Ok(())
    }

    fn shared(&self) -> bool {
        false
    }

    fn cluster(&self) -> Result<ClusterView, StoreError> {
        Ok(ClusterView::default())
    }

    fn heartbeat(&self, _daemon: &DaemonId, _ttl: Duration) -> Result<(), StoreError> {
        Ok(())
    }

    fn acquire_lease(
        &self,
        _channel: &ChannelName,
        _daemon: &DaemonId,
        _ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        Ok(Some(1))
    }

    fn renew_leases(
        &self,
        _daemon: &DaemonId,
        held: &[(ChannelName, i64)],
        _ttl: Duration,
    ) -> Result<Vec<ChannelName>, StoreError> {
        Ok(held.iter().map(|(channel, _)| channel.clone()).collect())
    }

    fn release_leases(
        &self,
        _daemon: &DaemonId,
        _channels: &[ChannelName],
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn leave(&self, _daemon: &DaemonId) -> Result<(), StoreError> {
        Ok(())
    }

    fn forward_command(
        &self,
        channel: &ChannelName,
        _trigger: &str,
        _command: &str,
    ) -> Result<i64, StoreError> {
        // Its one daemon owns every channel: nothing is ever forwarded.
        Err(StoreError::Setup {
            path: self.path.clone(),
            message: format!(
                "channel `{channel}`: a SQLite file serves one daemon, which owns every channel"
            ),
        })
    }

    fn forward_to_daemon(&self, daemon: &DaemonId, _command: &str) -> Result<i64, StoreError> {
        // Its one daemon is the only one: there is no other to send to.
        Err(StoreError::Setup {
            path: self.path.clone(),
            message: format!("daemon `{daemon}`: a SQLite file serves one daemon only"),
        })
    }

    fn pending_commands(
        &self,
        _daemon: &DaemonId,
        _channels: &[ChannelName],
        _max_age: Duration,
    ) -> Result<Vec<ForwardedCommand>, StoreError> {
        Ok(Vec::new())
    }

    fn answer_command(&self, _id: i64, _answer: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn command_answer(&self, _id: i64, _withdraw: bool) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}
