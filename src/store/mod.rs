//! Durable trigger progress: each trigger's state, position, failure count and counters, and the dead letters,
//! behind the small [`Store`] trait, with one backend per module: SQLite ([`SqliteStore`], the embedded default)
//! and PostgreSQL ([`PostgresStore`], a server several machines can reach). [`open`] picks one from the
//! configuration's `database`. Both keep the same tables, each with its own migrations, and pass the same test
//! suite (`tests.rs`, run against each backend).
//!
//! The rule that makes delivery at-least-once: an event's outcome (new position, state, failure count, counters
//! and its dead letter) is written in ONE transaction by [`Store::record_outcome`], after the push. A crash before
//! the commit leaves the old position, so the event is pushed again; never lost.
//!
//! Several daemons may share a PostgreSQL database: each channel then has one owner at a time, through a lease, and
//! every progress write is fenced by it (see [`cluster`]).

pub mod cluster;
mod postgres;
mod sqlite;
mod values;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::{ChannelName, Database, TriggerName};
use crate::trigger::state::{Anchor, Position, State, Status};

pub use cluster::{ClusterView, DaemonId, DaemonRecord, Fence, ForwardedCommand, LeaseRecord};
pub use postgres::{POOL_SIZE as POSTGRES_POOL_SIZE, PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;

/// What the store knows about one trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRecord {
    /// The trigger's name (its key).
    pub name: TriggerName,
    /// State, failure count and last error.
    pub status: Status,
    /// The next event to push.
    pub position: Position,
    /// The header hash of block `position.block - 1` as the trigger read it, when known: the next block must
    /// chain onto it.
    pub anchor: Option<Anchor>,
    /// Events delivered since the trigger was created (never reset: a lifetime counter for operators).
    pub delivered: u64,
    /// Events discarded since the trigger was created (never reset).
    pub discarded: u64,
    /// When the record last changed.
    pub updated_at: SystemTime,
}

/// The outcome of one event, as written in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRecord<'a> {
    /// The trigger.
    pub trigger: &'a TriggerName,
    /// Its status after the outcome.
    pub status: &'a Status,
    /// Its position after the outcome (unchanged while in Exception).
    pub position: Position,
    /// The header hash of the block before `position.block`, when known (written as given: `None` clears it).
    pub anchor: Option<Anchor>,
    /// Payloads delivered by this outcome (a filter may yield several per event).
    pub delivered: u64,
    /// Payloads discarded by this outcome.
    pub discarded: u64,
    /// The dead letters to keep (one per discarded payload).
    pub dead_letters: &'a [NewDeadLetter],
    /// When it happened.
    pub at: SystemTime,
}

/// A discarded payload to keep for listing and re-pushing.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    /// The event's id.
    pub event_id: String,
    /// Where the event is in the chain.
    pub position: Position,
    /// Which filter output of the event (0 for the first).
    pub output: u32,
    /// The payload as it was pushed.
    pub payload: Value,
    /// The last attempt's error.
    pub error: String,
    /// Attempts made (at least 1).
    pub attempts: u32,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its id, for re-pushing.
    pub id: i64,
    /// The trigger that discarded it.
    pub trigger: TriggerName,
    /// The letter itself.
    pub letter: NewDeadLetter,
    /// When it was discarded.
    pub created_at: SystemTime,
    /// When it was re-pushed successfully, if it was.
    pub repushed_at: Option<SystemTime>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadLetterQuery<'a> {
    /// Only this trigger's.
    pub trigger: Option<&'a TriggerName>,
    /// Also those already re-pushed.
    pub include_repushed: bool,
    /// At most this many, oldest first (`None`: all).
    pub limit: Option<u32>,
}

/// A store failure: names the database (its file, or its URL, which holds no password) and the trigger concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The client's error with its causes as text (see [`crate::config::postgres_error_text`]).
    #[error("database {path}: {message}")]
    Postgres { path: String, message: String },
    #[error("database {path}: {message}")]
    Setup { path: String, message: String },
    #[error(
        "database {path} has schema version {found}, newer than this program knows ({known}); upgrade chaintrigger"
    )]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("database {path}: unknown trigger `{trigger}`")]
    UnknownTrigger { path: String, trigger: String },
    #[error("database {path}: unknown dead letter {id}")]
    UnknownDeadLetter { path: String, id: i64 },
    /// The write was made under a lease the daemon no longer holds (another took the channel, or it expired):
    /// nothing was written.
    #[error(
        "database {path}: channel `{channel}` is no longer owned by this daemon ({owner}, lease generation {generation}); the write was refused"
    )]
    Fenced {
        path: String,
        channel: String,
        owner: String,
        generation: i64,
    },
    /// A shared database, and this daemon holds no lease of the trigger's channel: nothing was written.
    #[error(
        "trigger `{trigger}`: this daemon does not hold its channel's lease on the shared database; nothing was written"
    )]
    Unowned { trigger: String },
    #[error("database {path}: bad stored value for {what}: {found}")]
    Corrupt {
        path: String,
        what: String,
        found: String,
    },
}

impl StoreError {
    /// Whether the write was refused because this daemon does not (or no longer) own the channel: retrying it
    /// cannot help, the channel's work belongs elsewhere.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. } | StoreError::Unowned { .. })
    }
}

/// Durable trigger progress.
pub trait Store: Send + Sync {
    /// The trigger's record, if it has one.
    fn trigger(&self, name: &TriggerName) -> Result<Option<TriggerRecord>, StoreError>;

    /// Every trigger's record (deleted ones included), by name.
    fn triggers(&self) -> Result<Vec<TriggerRecord>, StoreError>;

    /// Creates a trigger's record unless it exists; returns the record as stored (the existing one wins, so a
    /// restart never resets progress). Refused with [`StoreError::Fenced`] unless `fence` holds.
    fn ensure_trigger(
        &self,
        name: &TriggerName,
        status: &Status,
        position: Position,
        at: SystemTime,
        fence: Option<&Fence>,
    ) -> Result<TriggerRecord, StoreError>;

    /// Writes an event's outcome: position, status and counters, and its dead letters, all or nothing; refused
    /// with [`StoreError::Fenced`] (nothing written) unless `fence` holds in the same transaction.
    fn record_outcome(
        &self,
        outcome: &OutcomeRecord<'_>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;

    /// Writes a status change from a command (disable, enable, delete), with a new position (and the anchor that
    /// goes with it) if it moves. Refused with [`StoreError::Fenced`] unless `fence` holds.
    fn save_status(
        &self,
        name: &TriggerName,
        status: &Status,
        position: Option<(Position, Option<Anchor>)>,
        at: SystemTime,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;

    /// Lists dead letters, oldest first.
    fn dead_letters(&self, query: &DeadLetterQuery<'_>) -> Result<Vec<DeadLetter>, StoreError>;

    /// One dead letter.
    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError>;

    /// Marks a dead letter as re-pushed successfully.
    fn mark_repushed(&self, id: i64, at: SystemTime) -> Result<(), StoreError>;

    /// Whether several daemons may share this database (PostgreSQL). When not (a SQLite file, one daemon), leases
    /// are granted at once, nobody else is ever seen, and fences are not checked.
    fn shared(&self) -> bool;

    /// Every lease and every live daemon, by the database's clock.
    fn cluster(&self) -> Result<ClusterView, StoreError>;

    /// Says that `daemon` is alive for `ttl` more (and forgets daemons gone for long).
    fn heartbeat(&self, daemon: &DaemonId, ttl: Duration) -> Result<(), StoreError>;

    /// Takes `channel` for `daemon` for `ttl` when its lease is free (no lease, or expired): returns the new
    /// generation, or `None` when another daemon holds it.
    fn acquire_lease(
        &self,
        channel: &ChannelName,
        daemon: &DaemonId,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError>;

    /// Extends the leases `daemon` holds (channel and generation) by `ttl`; returns the channels renewed. A lease
    /// that expired or was taken by another is not renewed: it is lost.
    fn renew_leases(
        &self,
        daemon: &DaemonId,
        held: &[(ChannelName, i64)],
        ttl: Duration,
    ) -> Result<Vec<ChannelName>, StoreError>;

    /// Gives up `daemon`'s leases of `channels` at once (others may take them on their next look).
    fn release_leases(&self, daemon: &DaemonId, channels: &[ChannelName])
    -> Result<(), StoreError>;

    /// Removes `daemon`'s heartbeat: it no longer counts when channels are shared out.
    fn leave(&self, daemon: &DaemonId) -> Result<(), StoreError>;

    /// Leaves a command for the owner of `channel`; returns its id. (A database of one daemon never needs to.)
    fn forward_command(
        &self,
        channel: &ChannelName,
        trigger: &str,
        command: &str,
    ) -> Result<i64, StoreError>;

    /// Leaves a command for one daemon (not a channel's owner: e.g. reload); returns its id.
    fn forward_to_daemon(&self, daemon: &DaemonId, command: &str) -> Result<i64, StoreError>;

    /// The commands waiting for the owner of any of `channels`, or for `daemon` itself, oldest first, left at most
    /// `max_age` ago.
    fn pending_commands(
        &self,
        daemon: &DaemonId,
        channels: &[ChannelName],
        max_age: Duration,
    ) -> Result<Vec<ForwardedCommand>, StoreError>;

    /// Answers a forwarded command (the owner applied it, or refused it).
    fn answer_command(&self, id: i64, answer: &str) -> Result<(), StoreError>;

    /// A forwarded command's answer once given. With `withdraw`, an unanswered command is also withdrawn (the
    /// sender gave up waiting), so no owner applies it later.
    fn command_answer(&self, id: i64, withdraw: bool) -> Result<Option<String>, StoreError>;
}

/// Opens the store the configuration names: a SQLite file, or a PostgreSQL server (its password read from its
/// secret source now). Blocks (files, network): call it off the async threads, e.g. through
/// `tokio::task::spawn_blocking`.
pub fn open(database: &Database) -> Result<Arc<dyn Store>, StoreError> {
    match database {
        Database::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path)?)),
        Database::Postgres(postgres) => {
            let password = postgres
                .password
                .as_ref()
                .map(|source| source.read())
                .transpose()
                .map_err(|message| StoreError::Setup {
                    path: postgres.url.to_string(),
                    message: format!("password: {message}"),
                })?;
            Ok(Arc::new(PostgresStore::open(&PostgresOptions {
                url: postgres.url.to_string(),
                password,
                tls_ca: postgres.tls_ca.clone(),
            })?))
        }
    }
}

/// How many store calls run on blocking threads at once, across the process.
///
/// Why a bound: a store serves one call at a time (SQLite's connection) or four (the PostgreSQL pool), so more
/// threads only wait. Without it, a thousand triggers starting together took tokio's blocking pool to its 512
/// threads, each holding a stack and an allocator cache for as long as the pool keeps idle threads.
pub const STORE_THREADS: usize = POSTGRES_POOL_SIZE;

/// The permits behind [`STORE_THREADS`]. A permit moves into the blocking call and is released when the call
/// ends, even if the caller stopped waiting for it.
static STORE_CALLS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(STORE_THREADS);

/// Runs a store call off the async threads (SQLite blocks), at most [`STORE_THREADS`] at once; a panic inside it
/// resumes in the caller.
pub async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    let permit = STORE_CALLS
        .acquire()
        .await
        .expect("the store's semaphore is never closed");
    let call = move || {
        let _permit = permit;
        call(store.as_ref())
    };
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Whether a stored state means the trigger was deleted over the API (it stays deleted across restarts).
pub fn is_deleted(record: &TriggerRecord) -> bool {
    record.status.state == State::Deleted
}

#[cfg(test)]
mod tests;
