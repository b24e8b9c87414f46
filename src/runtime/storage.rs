//! Durable state of the runtime: services, functions, async settings and the async event queue, in SQLite.
//!
//! The API and the queue worker see it through the [`Storage`] trait; [`SqliteStorage`] is the one
//! implementation (a file under the data directory, WAL mode, schema versions in `PRAGMA user_version`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension as _, params};

use super::limits::{AsyncPolicy, FunctionConfig, ServiceConfig};

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("runtime database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("runtime database holds an unreadable {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("already exists")]
    AlreadyExists,
    #[error("the service still has {0} function(s)")]
    NotEmpty(usize),
    #[error("the service already has {0} functions")]
    TooManyFunctions(usize),
    #[error("the service still has {versions} published version(s) and {aliases} alias(es)")]
    HasVersions { versions: usize, aliases: usize },
    #[error("nothing changed since version {0}")]
    NoChanges(u64),
    #[error("the function still has {0} trigger(s)")]
    HasTriggers(usize),
    #[error("the function already has {0} triggers")]
    TooManyTriggers(usize),
    #[error("runtime database: the runtime stopped before the call ran")]
    Stopped,
    #[error("runtime database {}: cannot make it private to the runtime's user: {source}", path.display())]
    Permissions {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A stored service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    /// Primary key.
    pub name: String,
    /// `serviceId`: stable across updates.
    pub id: String,
    /// The service's attributes.
    pub config: ServiceConfig,
    /// `createdTime`, ms since the epoch.
    pub created_ms: i64,
    /// `lastModifiedTime`, ms since the epoch.
    pub modified_ms: i64,
}

/// A stored function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionRecord {
    /// The service it belongs to.
    pub service: String,
    /// Its name, unique in the service.
    pub name: String,
    /// `functionId`: stable across updates.
    pub id: String,
    /// Its attributes.
    pub config: FunctionConfig,
    /// CRC-64 of the code zip: selects `code/<checksum>/`.
    pub code_checksum: u64,
    /// `codeSize`.
    pub code_size: u64,
    /// `createdTime`, ms since the epoch.
    pub created_ms: i64,
    /// `lastModifiedTime`, ms since the epoch.
    pub modified_ms: i64,
}

/// A published version of a service: its number, and the snapshot of the service it was published from (the
/// functions are in [`Storage::version_functions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    /// The service.
    pub service: String,
    /// `versionId`: 1, 2, ... per service, never reused (not even after a delete).
    pub id: u64,
    /// The version's own description (GetService at this version shows it).
    pub description: String,
    /// The service as it was when the version was published.
    pub snapshot: ServiceRecord,
    /// A digest of the service and its functions (configuration and code): publishing again without a change
    /// is refused.
    pub fingerprint: String,
    /// `createdTime` = `lastModifiedTime`, ms: a version never changes.
    pub created_ms: i64,
}

/// An alias: a name for a version, optionally sending a share of calls to a second version.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasRecord {
    /// The service.
    pub service: String,
    /// `aliasName`.
    pub name: String,
    /// `versionId`: the primary version.
    pub version: u64,
    /// Free text.
    pub description: String,
    /// `additionalVersionWeight`: version -> share of calls in [0, 1] (at most one entry).
    pub weights: std::collections::BTreeMap<u64, f64>,
    /// `createdTime`, ms.
    pub created_ms: i64,
    /// `lastModifiedTime`, ms.
    pub modified_ms: i64,
}

/// A trigger of a function, as created through the API, with the state of its timer.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRecord {
    /// The service.
    pub service: String,
    /// The function.
    pub function: String,
    /// `triggerName`, unique in the function.
    pub name: String,
    /// `triggerId`: stable across updates.
    pub id: String,
    /// `triggerType` (`timer`, `http`, `oss`, ...).
    pub trigger_type: String,
    /// `triggerConfig` as given (checked when it was set).
    pub config: serde_json::Value,
    /// `sourceArn`.
    pub source_arn: String,
    /// `invocationRole`.
    pub invocation_role: String,
    /// `qualifier`: the version or alias the trigger invokes; empty for LATEST.
    pub qualifier: String,
    /// Free text.
    pub description: String,
    /// `createdTime`, ms.
    pub created_ms: i64,
    /// `lastModifiedTime`, ms.
    pub modified_ms: i64,
    /// Timers: where the schedule counts from (`@every`), reset when the configuration changes.
    pub anchor_ms: i64,
    /// Timers: the time up to which firings have been handled (queued or skipped); `None` before the first.
    pub fired_through_ms: Option<i64>,
}

/// A function's explicit async settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncConfigRecord {
    /// Retries and maximum age.
    pub policy: AsyncPolicy,
    /// `createdTime`, ms.
    pub created_ms: i64,
    /// `lastModifiedTime`, ms.
    pub modified_ms: i64,
}

/// An async invocation waiting to run (or to run again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncEvent {
    /// Queue order.
    pub seq: i64,
    /// Target service.
    pub service: String,
    /// Target function.
    pub function: String,
    /// The published version the event runs (an alias is resolved when the event is accepted); `None`: LATEST.
    pub version: Option<u64>,
    /// `X-Fc-Stateful-Async-Invocation-Id`, if the caller gave one.
    pub invocation_id: Option<String>,
    /// The request id of the 202 answer, reused as the invocation's request id.
    pub request_id: String,
    /// The event.
    pub payload: Vec<u8>,
    /// When it was accepted, ms: the base of its age.
    pub enqueued_ms: i64,
    /// Runs that ended in a function error so far.
    pub attempts: u32,
    /// Not before this time, ms (backoff after errors or throttling).
    pub next_attempt_ms: i64,
}

/// How an async event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// The function succeeded.
    Succeeded,
    /// The function failed and the retries ran out.
    Failed,
    /// The event got older than the function's maximum age before it could succeed.
    Expired,
    /// The function was deleted before the event ran (Function Compute calls such a task `Invalid`).
    Invalid,
}

impl EventStatus {
    fn as_str(self) -> &'static str {
        match self {
            EventStatus::Succeeded => "Succeeded",
            EventStatus::Failed => "Failed",
            EventStatus::Expired => "Expired",
            EventStatus::Invalid => "Invalid",
        }
    }
}

/// A finished async event, kept for inspection and for de-duplication of stateful invocation ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedAsyncEvent {
    /// Target service.
    pub service: String,
    /// Target function.
    pub function: String,
    /// The caller's id, if any.
    pub invocation_id: Option<String>,
    /// The invocation's request id.
    pub request_id: String,
    /// `Succeeded`, `Failed`, `Expired` or `Invalid` (Function Compute's names for the states of async tasks).
    pub status: String,
    /// Runs made (0 when it never ran: expired or dropped before its first run).
    pub attempts: u32,
    /// The last error body, or why it was dropped.
    pub detail: String,
}

/// Whether an async event was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued under this sequence number.
    New(i64),
    /// An event with the same stateful invocation id was already accepted; nothing was queued.
    Duplicate,
}

/// What the API and the queue worker need from durable storage.
pub trait Storage: Send + Sync + 'static {
    /// Adds a service; `AlreadyExists` if the name is taken.
    fn insert_service(&self, service: &ServiceRecord) -> Result<(), StorageError>;
    /// One service.
    fn service(&self, name: &str) -> Result<Option<ServiceRecord>, StorageError>;
    /// Services in name order, from `start` (inclusive), with a name prefix.
    fn services(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<ServiceRecord>, StorageError>;
    /// Replaces a service's attributes.
    fn update_service(&self, service: &ServiceRecord) -> Result<(), StorageError>;
    /// Deletes an empty service; `NotEmpty` if it has functions; false if absent.
    fn delete_service(&self, name: &str) -> Result<bool, StorageError>;
    /// Adds a function, refusing more than `max_per_service` in its service.
    fn insert_function(
        &self,
        function: &FunctionRecord,
        max_per_service: usize,
    ) -> Result<(), StorageError>;
    /// One function.
    fn function(&self, service: &str, name: &str) -> Result<Option<FunctionRecord>, StorageError>;
    /// A service's functions in name order, from `start` (inclusive), with a name prefix.
    fn functions(
        &self,
        service: &str,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StorageError>;
    /// Replaces a function's attributes and code.
    fn update_function(&self, function: &FunctionRecord) -> Result<(), StorageError>;
    /// Deletes a function and its async settings; false if absent.
    fn delete_function(&self, service: &str, name: &str) -> Result<bool, StorageError>;
    /// Every code checksum some function refers to (the code store keeps these and removes the others).
    fn code_checksums(&self) -> Result<std::collections::BTreeSet<u64>, StorageError>;
    /// A function's explicit async settings.
    fn async_config(
        &self,
        service: &str,
        function: &str,
    ) -> Result<Option<AsyncConfigRecord>, StorageError>;
    /// Sets a function's async settings.
    fn put_async_config(
        &self,
        service: &str,
        function: &str,
        policy: AsyncPolicy,
        now_ms: i64,
    ) -> Result<AsyncConfigRecord, StorageError>;
    /// Removes a function's async settings; false if there were none.
    fn delete_async_config(&self, service: &str, function: &str) -> Result<bool, StorageError>;
    /// Queues an event unless its stateful invocation id was seen for this function.
    fn enqueue(&self, event: &AsyncEvent) -> Result<Enqueued, StorageError>;
    /// The oldest queued event of every function (events of one function run in order).
    fn queue_heads(&self) -> Result<Vec<AsyncEvent>, StorageError>;
    /// Number of queued events.
    fn queue_len(&self) -> Result<usize, StorageError>;
    /// Records a failed run and when to try again.
    fn reschedule(&self, seq: i64, attempts: u32, next_attempt_ms: i64)
    -> Result<(), StorageError>;
    /// Removes an event and records its outcome, in one transaction.
    fn finish(
        &self,
        event: &AsyncEvent,
        status: EventStatus,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StorageError>;
    /// Forgets outcomes recorded before `finished_before_ms` (and with them their stateful invocation ids).
    fn prune_outcomes(&self, finished_before_ms: i64) -> Result<usize, StorageError>;
    /// Recorded outcomes of a function's events, oldest first.
    fn outcomes(
        &self,
        service: &str,
        function: &str,
    ) -> Result<Vec<FinishedAsyncEvent>, StorageError>;
    /// Publishes the service as it is now (its record and every function, code included) under the next
    /// version number, in one transaction; `NoChanges` when its fingerprint is the latest version's.
    fn publish_version(
        &self,
        service: &str,
        description: &str,
        fingerprint: &dyn Fn(&ServiceRecord, &[FunctionRecord]) -> String,
        now_ms: i64,
    ) -> Result<VersionRecord, StorageError>;
    /// One version.
    fn version(&self, service: &str, id: u64) -> Result<Option<VersionRecord>, StorageError>;
    /// Versions from `start` (inclusive; `None`: the newest or the oldest), newest first when `backward`.
    fn versions(
        &self,
        service: &str,
        start: Option<u64>,
        backward: bool,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, StorageError>;
    /// Deletes a version and its function snapshots; false if absent.
    fn delete_version(&self, service: &str, id: u64) -> Result<bool, StorageError>;
    /// One function as published in a version.
    fn version_function(
        &self,
        service: &str,
        version: u64,
        name: &str,
    ) -> Result<Option<FunctionRecord>, StorageError>;
    /// A version's functions in name order, from `start` (inclusive), with a name prefix.
    fn version_functions(
        &self,
        service: &str,
        version: u64,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StorageError>;
    /// Adds an alias; `AlreadyExists` if the name is taken.
    fn insert_alias(&self, alias: &AliasRecord) -> Result<(), StorageError>;
    /// One alias.
    fn alias(&self, service: &str, name: &str) -> Result<Option<AliasRecord>, StorageError>;
    /// Aliases in name order, from `start` (inclusive), with a name prefix.
    fn aliases(
        &self,
        service: &str,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StorageError>;
    /// Replaces an alias's version, description and weights.
    fn update_alias(&self, alias: &AliasRecord) -> Result<(), StorageError>;
    /// Deletes an alias; false if absent.
    fn delete_alias(&self, service: &str, name: &str) -> Result<bool, StorageError>;
    /// Adds a trigger, refusing more than `max_per_function` on its function.
    fn insert_trigger(
        &self,
        trigger: &TriggerRecord,
        max_per_function: usize,
    ) -> Result<(), StorageError>;
    /// One trigger.
    fn trigger(
        &self,
        service: &str,
        function: &str,
        name: &str,
    ) -> Result<Option<TriggerRecord>, StorageError>;
    /// A function's triggers in name order, from `start` (inclusive), with a name prefix.
    fn triggers(
        &self,
        service: &str,
        function: &str,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<TriggerRecord>, StorageError>;
    /// Every trigger of a type (the timer scheduler reads the timers).
    fn triggers_of_type(&self, trigger_type: &str) -> Result<Vec<TriggerRecord>, StorageError>;
    /// Replaces a trigger's attributes and timer state.
    fn update_trigger(&self, trigger: &TriggerRecord) -> Result<(), StorageError>;
    /// Deletes a trigger; false if absent.
    fn delete_trigger(
        &self,
        service: &str,
        function: &str,
        name: &str,
    ) -> Result<bool, StorageError>;
    /// Records that a timer handled its firings up to `through_ms` and queues `event` (if any), in one
    /// transaction, unless the timer already handled them (then false and nothing is queued): a firing is queued
    /// once, whatever stops the runtime.
    fn fire_timer(
        &self,
        trigger: &TriggerRecord,
        through_ms: i64,
        event: Option<&AsyncEvent>,
    ) -> Result<bool, StorageError>;
}

/// Schema versions, applied in order; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE services (
    name TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    config TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL
);
CREATE TABLE functions (
    service TEXT NOT NULL REFERENCES services(name),
    name TEXT NOT NULL,
    id TEXT NOT NULL,
    config TEXT NOT NULL,
    code_checksum TEXT NOT NULL,
    code_size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (service, name)
);
CREATE TABLE async_configs (
    service TEXT NOT NULL,
    function TEXT NOT NULL,
    max_retries INTEGER NOT NULL,
    max_age_secs INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (service, function)
);
CREATE TABLE async_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    function TEXT NOT NULL,
    invocation_id TEXT,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL
);
CREATE INDEX async_events_by_function ON async_events (service, function, seq);
CREATE UNIQUE INDEX async_events_by_invocation_id ON async_events (service, function, invocation_id)
    WHERE invocation_id IS NOT NULL;
CREATE TABLE async_outcomes (
    seq INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    function TEXT NOT NULL,
    invocation_id TEXT,
    request_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    detail TEXT NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL
);
CREATE INDEX async_outcomes_by_invocation_id ON async_outcomes (service, function, invocation_id);
",
    r"
CREATE TABLE version_counters (
    service TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE versions (
    service TEXT NOT NULL,
    id INTEGER NOT NULL,
    description TEXT NOT NULL,
    service_id TEXT NOT NULL,
    service_config TEXT NOT NULL,
    service_created_ms INTEGER NOT NULL,
    service_modified_ms INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (service, id)
);
CREATE TABLE version_functions (
    service TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    id TEXT NOT NULL,
    config TEXT NOT NULL,
    code_checksum TEXT NOT NULL,
    code_size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (service, version, name)
);
CREATE TABLE aliases (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    description TEXT NOT NULL,
    weights TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (service, name)
);
ALTER TABLE async_events ADD COLUMN version INTEGER;
",
    r"
CREATE TABLE triggers (
    service TEXT NOT NULL,
    function TEXT NOT NULL,
    name TEXT NOT NULL,
    id TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    config TEXT NOT NULL,
    source_arn TEXT NOT NULL,
    invocation_role TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    description TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    anchor_ms INTEGER NOT NULL,
    fired_through_ms INTEGER,
    PRIMARY KEY (service, function, name)
);
CREATE INDEX triggers_by_type ON triggers (trigger_type);
",
];

/// The SQLite store.
pub struct SqliteStorage {
    /// The connection for writes and for the reads that fill [`Records`]: every statement is short, and one
    /// writer is what SQLite allows anyway.
    connection: Mutex<Connection>,
    /// A second connection, for the async queue's reads on its own path (its heads, a function's async
    /// settings). In WAL mode a reader never waits for a writer, so these reads go on while a commit waits for
    /// the disk's flush (a WAL restart syncs) holding `connection`. Never used to write, nor for `records`.
    queue_reader: Mutex<Connection>,
    /// Services and functions as last read: every invocation reads its service and function, and they change
    /// only through this store's own writes. Invariants: an entry is only added while `connection` is held, with
    /// what was just read through it; every write of a service or function empties the cache once the write is
    /// done. So a reader that read before a write added its entry before the write began, and the write's end
    /// removes it: a read that starts after a write returned never sees what was there before.
    records: Mutex<Records>,
    /// Copies the WAL into the database off the write path (see [`crate::sqlite_wal`]).
    _checkpointer: crate::sqlite_wal::WalCheckpointer,
}

/// The cached services and functions (existing ones only: a miss always reads the database).
#[derive(Default)]
struct Records {
    services: HashMap<String, ServiceRecord>,
    functions: HashMap<(String, String), FunctionRecord>,
}

/// Empties the record cache when dropped: held by every write of a service or function for its whole length.
struct ForgetRecords<'a>(&'a Mutex<Records>);

impl Drop for ForgetRecords<'_> {
    fn drop(&mut self) {
        let mut records = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        records.services.clear();
        records.functions.clear();
    }
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage").finish_non_exhaustive()
    }
}

fn corrupt(what: &str, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

/// Makes the database file and any WAL / shared-memory file left from an earlier run readable by their owner only.
fn restrict_to_owner(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files {
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(StorageError::Permissions { path: file, source });
            }
            _ => {}
        }
    }
    Ok(())
}

fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let mut connection = Connection::open(path)?;
        // Handlers run on this machine and can guess the data folder from their code path: the registry and the
        // async payloads are for the runtime's user only. SQLite gives the -wal and -shm files the mode of the
        // database file, so restricting it before WAL starts covers all three.
        restrict_to_owner(path)?;
        let checkpointer = crate::sqlite_wal::WalCheckpointer::start(path, &mut connection)?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let version = usize::try_from(version).map_err(|e| corrupt("schema version", e))?;
        if version > MIGRATIONS.len() {
            return Err(corrupt(
                "schema",
                format!(
                    "version {version} is newer than this program knows ({}); use a newer chaintrigger",
                    MIGRATIONS.len()
                ),
            ));
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = connection.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        let queue_reader = Connection::open(path)?;
        queue_reader.pragma_update(None, "query_only", true)?;
        queue_reader.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(SqliteStorage {
            connection: Mutex::new(connection),
            queue_reader: Mutex::new(queue_reader),
            records: Mutex::default(),
            _checkpointer: checkpointer,
        })
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// For a write of a service or function: the cache is emptied when the returned guard goes.
    fn forget_records(&self) -> ForgetRecords<'_> {
        ForgetRecords(&self.records)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection itself usable: SQLite rolls back.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The queue's read connection (see [`SqliteStorage::queue_reader`]).
    fn lock_queue_reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.queue_reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn service_from_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, i64, i64)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn to_service(
    (name, id, config, created_ms, modified_ms): (String, String, String, i64, i64),
) -> Result<ServiceRecord, StorageError> {
    Ok(ServiceRecord {
        config: serde_json::from_str(&config)
            .map_err(|e| corrupt(&format!("service '{name}'"), e))?,
        name,
        id,
        created_ms,
        modified_ms,
    })
}

type FunctionRow = (String, String, String, String, String, i64, i64, i64);

fn function_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FunctionRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

fn to_function(
    (service, name, id, config, checksum, size, created_ms, modified_ms): FunctionRow,
) -> Result<FunctionRecord, StorageError> {
    let what = || format!("function '{service}/{name}'");
    Ok(FunctionRecord {
        config: serde_json::from_str(&config).map_err(|e| corrupt(&what(), e))?,
        code_checksum: checksum.parse().map_err(|e| corrupt(&what(), e))?,
        code_size: u64::try_from(size).map_err(|e| corrupt(&what(), e))?,
        service,
        name,
        id,
        created_ms,
        modified_ms,
    })
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AsyncEvent> {
    Ok(AsyncEvent {
        seq: row.get(0)?,
        service: row.get(1)?,
        function: row.get(2)?,
        invocation_id: row.get(3)?,
        request_id: row.get(4)?,
        payload: row.get(5)?,
        enqueued_ms: row.get(6)?,
        attempts: row.get(7)?,
        next_attempt_ms: row.get(8)?,
        version: row
            .get::<_, Option<i64>>(9)?
            .and_then(|v| u64::try_from(v).ok()),
    })
}

const FUNCTION_COLUMNS: &str =
    "service, name, id, config, code_checksum, code_size, created_ms, modified_ms";
const EVENT_COLUMNS: &str = "seq, service, function, invocation_id, request_id, payload, enqueued_ms, attempts, next_attempt_ms, version";

const VERSION_COLUMNS: &str = "service, id, description, service_id, service_config, service_created_ms, \
                               service_modified_ms, fingerprint, created_ms";
const TRIGGER_COLUMNS: &str = "service, function, name, id, trigger_type, config, source_arn, invocation_role, \
                               qualifier, description, created_ms, modified_ms, anchor_ms, fired_through_ms";

fn trigger_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TriggerRecord, String)> {
    Ok((
        TriggerRecord {
            service: row.get(0)?,
            function: row.get(1)?,
            name: row.get(2)?,
            id: row.get(3)?,
            trigger_type: row.get(4)?,
            config: serde_json::Value::Null,
            source_arn: row.get(6)?,
            invocation_role: row.get(7)?,
            qualifier: row.get(8)?,
            description: row.get(9)?,
            created_ms: row.get(10)?,
            modified_ms: row.get(11)?,
            anchor_ms: row.get(12)?,
            fired_through_ms: row.get(13)?,
        },
        row.get(5)?,
    ))
}

fn to_trigger(
    (mut trigger, config): (TriggerRecord, String),
) -> Result<TriggerRecord, StorageError> {
    trigger.config = serde_json::from_str(&config).map_err(|e| {
        corrupt(
            &format!(
                "trigger '{}/{}/{}'",
                trigger.service, trigger.function, trigger.name
            ),
            e,
        )
    })?;
    Ok(trigger)
}

const ALIAS_COLUMNS: &str = "service, name, version, description, weights, created_ms, modified_ms";

type VersionRow = (String, i64, String, String, String, i64, i64, String, i64);

fn version_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn to_version(
    (
        service,
        id,
        description,
        service_id,
        config,
        service_created,
        service_modified,
        fingerprint,
        created,
    ): VersionRow,
) -> Result<VersionRecord, StorageError> {
    let snapshot = to_service((
        service.clone(),
        service_id,
        config,
        service_created,
        service_modified,
    ))?;
    Ok(VersionRecord {
        id: u64::try_from(id).map_err(|e| corrupt(&format!("version {id} of '{service}'"), e))?,
        service,
        description,
        snapshot,
        fingerprint,
        created_ms: created,
    })
}

type AliasRow = (String, String, i64, String, String, i64, i64);

fn alias_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AliasRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn to_alias(
    (service, name, version, description, weights, created_ms, modified_ms): AliasRow,
) -> Result<AliasRecord, StorageError> {
    let what = || format!("alias '{service}/{name}'");
    Ok(AliasRecord {
        version: u64::try_from(version).map_err(|e| corrupt(&what(), e))?,
        weights: serde_json::from_str(&weights).map_err(|e| corrupt(&what(), e))?,
        service,
        name,
        description,
        created_ms,
        modified_ms,
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("configuration types serialize to JSON without fail")
}

fn count_rows(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StorageError> {
    let count: i64 = connection.query_row(sql, params, |r| r.get(0))?;
    Ok(usize::try_from(count).unwrap_or(0))
}

fn is_constraint(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

impl Storage for SqliteStorage {
    fn insert_service(&self, service: &ServiceRecord) -> Result<(), StorageError> {
        let _forget = self.forget_records();
        let result = self.lock().execute(
            "INSERT INTO services (name, id, config, created_ms, modified_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                service.name,
                service.id,
                json(&service.config),
                service.created_ms,
                service.modified_ms
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_constraint(&e) => Err(StorageError::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    fn service(&self, name: &str) -> Result<Option<ServiceRecord>, StorageError> {
        if let Some(service) = self.records().services.get(name) {
            return Ok(Some(service.clone()));
        }
        let connection = self.lock();
        let row = connection
            .prepare_cached(
                "SELECT name, id, config, created_ms, modified_ms FROM services WHERE name = ?1",
            )?
            .query_row([name], service_from_row)
            .optional()?;
        let service = row.map(to_service).transpose()?;
        if let Some(service) = &service {
            // Still holding the connection: no write can have come between the read and this.
            self.records()
                .services
                .insert(name.to_owned(), service.clone());
        }
        drop(connection);
        Ok(service)
    }

    fn services(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<ServiceRecord>, StorageError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT name, id, config, created_ms, modified_ms FROM services
             WHERE name LIKE ?1 ESCAPE '\\' AND name >= ?2 ORDER BY name LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![like_prefix(prefix), start, limit as i64],
            service_from_row,
        )?;
        rows.map(|row| to_service(row?)).collect()
    }

    fn update_service(&self, service: &ServiceRecord) -> Result<(), StorageError> {
        let _forget = self.forget_records();
        self.lock().execute(
            "UPDATE services SET config = ?2, modified_ms = ?3 WHERE name = ?1",
            params![service.name, json(&service.config), service.modified_ms],
        )?;
        Ok(())
    }

    fn delete_service(&self, name: &str) -> Result<bool, StorageError> {
        let _forget = self.forget_records();
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let count = count_rows(
            &tx,
            "SELECT COUNT(*) FROM functions WHERE service = ?1",
            [name],
        )?;
        if count > 0 {
            return Err(StorageError::NotEmpty(count));
        }
        let versions = count_rows(
            &tx,
            "SELECT COUNT(*) FROM versions WHERE service = ?1",
            [name],
        )?;
        let aliases = count_rows(
            &tx,
            "SELECT COUNT(*) FROM aliases WHERE service = ?1",
            [name],
        )?;
        if versions + aliases > 0 {
            return Err(StorageError::HasVersions { versions, aliases });
        }
        tx.execute("DELETE FROM version_counters WHERE service = ?1", [name])?;
        let deleted = tx.execute("DELETE FROM services WHERE name = ?1", [name])? > 0;
        tx.commit()?;
        Ok(deleted)
    }

    fn insert_function(
        &self,
        function: &FunctionRecord,
        max_per_service: usize,
    ) -> Result<(), StorageError> {
        let _forget = self.forget_records();
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let count = count_rows(
            &tx,
            "SELECT COUNT(*) FROM functions WHERE service = ?1",
            [&function.service],
        )?;
        if count >= max_per_service {
            return Err(StorageError::TooManyFunctions(count));
        }
        let result = tx.execute(
            &format!(
                "INSERT INTO functions ({FUNCTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                function.service,
                function.name,
                function.id,
                json(&function.config),
                function.code_checksum.to_string(),
                function.code_size as i64,
                function.created_ms,
                function.modified_ms
            ],
        );
        match result {
            Ok(_) => {}
            Err(e) if is_constraint(&e) => return Err(StorageError::AlreadyExists),
            Err(e) => return Err(e.into()),
        }
        tx.commit()?;
        Ok(())
    }

    fn function(&self, service: &str, name: &str) -> Result<Option<FunctionRecord>, StorageError> {
        let key = (service.to_owned(), name.to_owned());
        if let Some(function) = self.records().functions.get(&key) {
            return Ok(Some(function.clone()));
        }
        let connection = self.lock();
        let row = connection
            .prepare_cached(&format!(
                "SELECT {FUNCTION_COLUMNS} FROM functions WHERE service = ?1 AND name = ?2"
            ))?
            .query_row([service, name], function_from_row)
            .optional()?;
        let function = row.map(to_function).transpose()?;
        if let Some(function) = &function {
            // Still holding the connection: no write can have come between the read and this.
            self.records().functions.insert(key, function.clone());
        }
        drop(connection);
        Ok(function)
    }

    fn functions(
        &self,
        service: &str,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StorageError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {FUNCTION_COLUMNS} FROM functions
             WHERE service = ?1 AND name LIKE ?2 ESCAPE '\\' AND name >= ?3 ORDER BY name LIMIT ?4"
        ))?;
        let rows = statement.query_map(
            params![service, like_prefix(prefix), start, limit as i64],
            function_from_row,
        )?;
        rows.map(|row| to_function(row?)).collect()
    }

    fn update_function(&self, function: &FunctionRecord) -> Result<(), StorageError> {
        let _forget = self.forget_records();
        self.lock().execute(
            "UPDATE functions SET config = ?3, code_checksum = ?4, code_size = ?5, modified_ms = ?6
             WHERE service = ?1 AND name = ?2",
            params![
                function.service,
                function.name,
                json(&function.config),
                function.code_checksum.to_string(),
                function.code_size as i64,
                function.modified_ms
            ],
        )?;
        Ok(())
    }

    fn code_checksums(&self) -> Result<std::collections::BTreeSet<u64>, StorageError> {
        let connection = self.lock();
        let mut statement =
            // Published versions keep their code: it is theirs as much as LATEST's.
            connection.prepare_cached(
                "SELECT code_checksum FROM functions UNION SELECT code_checksum FROM version_functions",
            )?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.map(|row| {
            let text = row?;
            text.parse::<u64>()
                .map_err(|e| corrupt(&format!("code checksum '{text}'"), e))
        })
        .collect()
    }

    fn delete_function(&self, service: &str, name: &str) -> Result<bool, StorageError> {
        let _forget = self.forget_records();
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let triggers = count_rows(
            &tx,
            "SELECT COUNT(*) FROM triggers WHERE service = ?1 AND function = ?2",
            [service, name],
        )?;
        if triggers > 0 {
            return Err(StorageError::HasTriggers(triggers));
        }
        tx.execute(
            "DELETE FROM async_configs WHERE service = ?1 AND function = ?2",
            [service, name],
        )?;
        let deleted = tx.execute(
            "DELETE FROM functions WHERE service = ?1 AND name = ?2",
            [service, name],
        )? > 0;
        tx.commit()?;
        Ok(deleted)
    }

    fn async_config(
        &self,
        service: &str,
        function: &str,
    ) -> Result<Option<AsyncConfigRecord>, StorageError> {
        Ok(self
            .lock_queue_reader()
            .prepare_cached(
                "SELECT max_retries, max_age_secs, created_ms, modified_ms FROM async_configs
                 WHERE service = ?1 AND function = ?2",
            )?
            .query_row([service, function], |row| {
                Ok(AsyncConfigRecord {
                    policy: AsyncPolicy {
                        max_retries: row.get(0)?,
                        max_age_secs: row.get::<_, i64>(1)?.max(0) as u64,
                    },
                    created_ms: row.get(2)?,
                    modified_ms: row.get(3)?,
                })
            })
            .optional()?)
    }

    fn put_async_config(
        &self,
        service: &str,
        function: &str,
        policy: AsyncPolicy,
        now_ms: i64,
    ) -> Result<AsyncConfigRecord, StorageError> {
        self.lock().execute(
            "INSERT INTO async_configs (service, function, max_retries, max_age_secs, created_ms, modified_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (service, function) DO UPDATE SET
                max_retries = excluded.max_retries, max_age_secs = excluded.max_age_secs,
                modified_ms = excluded.modified_ms",
            params![service, function, policy.max_retries, policy.max_age_secs as i64, now_ms],
        )?;
        self.async_config(service, function)?.ok_or_else(|| {
            corrupt(
                "async configuration",
                "it vanished right after it was written",
            )
        })
    }

    fn delete_async_config(&self, service: &str, function: &str) -> Result<bool, StorageError> {
        Ok(self.lock().execute(
            "DELETE FROM async_configs WHERE service = ?1 AND function = ?2",
            [service, function],
        )? > 0)
    }

    fn enqueue(&self, event: &AsyncEvent) -> Result<Enqueued, StorageError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        if let Some(id) = &event.invocation_id {
            let seen: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM async_events WHERE service = ?1 AND function = ?2 AND invocation_id = ?3)
                     OR EXISTS (SELECT 1 FROM async_outcomes WHERE service = ?1 AND function = ?2 AND invocation_id = ?3)",
                params![event.service, event.function, id],
                |r| r.get(0),
            )?;
            if seen {
                return Ok(Enqueued::Duplicate);
            }
        }
        tx.execute(
            "INSERT INTO async_events (service, function, invocation_id, request_id, payload, enqueued_ms, attempts, next_attempt_ms, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                event.service,
                event.function,
                event.invocation_id,
                event.request_id,
                event.payload,
                event.enqueued_ms,
                event.attempts,
                event.next_attempt_ms,
                event.version.map(|v| v as i64)
            ],
        )?;
        let seq = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Enqueued::New(seq))
    }

    fn queue_heads(&self) -> Result<Vec<AsyncEvent>, StorageError> {
        let connection = self.lock_queue_reader();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM async_events
             WHERE seq IN (SELECT MIN(seq) FROM async_events GROUP BY service, function) ORDER BY seq"
        ))?;
        let rows = statement.query_map([], event_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn queue_len(&self) -> Result<usize, StorageError> {
        count_rows(&self.lock(), "SELECT COUNT(*) FROM async_events", [])
    }

    fn reschedule(
        &self,
        seq: i64,
        attempts: u32,
        next_attempt_ms: i64,
    ) -> Result<(), StorageError> {
        self.lock().execute(
            "UPDATE async_events SET attempts = ?2, next_attempt_ms = ?3 WHERE seq = ?1",
            params![seq, attempts, next_attempt_ms],
        )?;
        Ok(())
    }

    fn finish(
        &self,
        event: &AsyncEvent,
        status: EventStatus,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        tx.execute("DELETE FROM async_events WHERE seq = ?1", [event.seq])?;
        tx.execute(
            "INSERT OR REPLACE INTO async_outcomes
                 (seq, service, function, invocation_id, request_id, status, attempts, detail, enqueued_ms, finished_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                event.seq,
                event.service,
                event.function,
                event.invocation_id,
                event.request_id,
                status.as_str(),
                event.attempts,
                detail,
                event.enqueued_ms,
                now_ms
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn prune_outcomes(&self, finished_before_ms: i64) -> Result<usize, StorageError> {
        Ok(self.lock().execute(
            "DELETE FROM async_outcomes WHERE finished_ms < ?1",
            [finished_before_ms],
        )?)
    }

    fn outcomes(
        &self,
        service: &str,
        function: &str,
    ) -> Result<Vec<FinishedAsyncEvent>, StorageError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT service, function, invocation_id, request_id, status, attempts, detail FROM async_outcomes
             WHERE service = ?1 AND function = ?2 ORDER BY finished_ms, seq",
        )?;
        let rows = statement.query_map([service, function], |row| {
            Ok(FinishedAsyncEvent {
                service: row.get(0)?,
                function: row.get(1)?,
                invocation_id: row.get(2)?,
                request_id: row.get(3)?,
                status: row.get(4)?,
                attempts: row.get(5)?,
                detail: row.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn publish_version(
        &self,
        service: &str,
        description: &str,
        fingerprint: &dyn Fn(&ServiceRecord, &[FunctionRecord]) -> String,
        now_ms: i64,
    ) -> Result<VersionRecord, StorageError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let snapshot = tx
            .query_row(
                "SELECT name, id, config, created_ms, modified_ms FROM services WHERE name = ?1",
                [service],
                service_from_row,
            )
            .map_err(StorageError::from)
            .and_then(to_service)?;
        let functions: Vec<FunctionRecord> = {
            let mut statement = tx.prepare(&format!(
                "SELECT {FUNCTION_COLUMNS} FROM functions WHERE service = ?1 ORDER BY name"
            ))?;
            let rows = statement.query_map([service], function_from_row)?;
            rows.map(|row| to_function(row?))
                .collect::<Result<_, _>>()?
        };
        let digest = fingerprint(&snapshot, &functions);
        let latest: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, fingerprint FROM versions WHERE service = ?1 ORDER BY id DESC LIMIT 1",
                [service],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((id, previous)) = latest
            && previous == digest
        {
            return Err(StorageError::NoChanges(id as u64));
        }
        let last: i64 = tx
            .query_row(
                "SELECT last FROM version_counters WHERE service = ?1",
                [service],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let id = last + 1;
        tx.execute(
            "INSERT INTO version_counters (service, last) VALUES (?1, ?2)
             ON CONFLICT (service) DO UPDATE SET last = excluded.last",
            params![service, id],
        )?;
        tx.execute(
            "INSERT INTO versions (service, id, description, service_id, service_config, service_created_ms,
                 service_modified_ms, fingerprint, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                service,
                id,
                description,
                snapshot.id,
                json(&snapshot.config),
                snapshot.created_ms,
                snapshot.modified_ms,
                digest,
                now_ms
            ],
        )?;
        for function in &functions {
            tx.execute(
                "INSERT INTO version_functions (service, version, name, id, config, code_checksum, code_size,
                     created_ms, modified_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    service,
                    id,
                    function.name,
                    function.id,
                    json(&function.config),
                    function.code_checksum.to_string(),
                    function.code_size as i64,
                    function.created_ms,
                    function.modified_ms
                ],
            )?;
        }
        tx.commit()?;
        Ok(VersionRecord {
            service: service.to_owned(),
            id: id as u64,
            description: description.to_owned(),
            snapshot,
            fingerprint: digest,
            created_ms: now_ms,
        })
    }

    fn version(&self, service: &str, id: u64) -> Result<Option<VersionRecord>, StorageError> {
        let row = self
            .lock()
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE service = ?1 AND id = ?2"
            ))?
            .query_row(params![service, id as i64], version_from_row)
            .optional()?;
        row.map(to_version).transpose()
    }

    fn versions(
        &self,
        service: &str,
        start: Option<u64>,
        backward: bool,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, StorageError> {
        let connection = self.lock();
        let sql = if backward {
            format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE service = ?1 AND id <= ?2 ORDER BY id DESC LIMIT ?3"
            )
        } else {
            format!(
                "SELECT {VERSION_COLUMNS} FROM versions WHERE service = ?1 AND id >= ?2 ORDER BY id LIMIT ?3"
            )
        };
        let start = match (start, backward) {
            (Some(start), _) => i64::try_from(start).unwrap_or(i64::MAX),
            (None, true) => i64::MAX,
            (None, false) => 0,
        };
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params![service, start, limit as i64], version_from_row)?;
        rows.map(|row| to_version(row?)).collect()
    }

    fn delete_version(&self, service: &str, id: u64) -> Result<bool, StorageError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        tx.execute(
            "DELETE FROM version_functions WHERE service = ?1 AND version = ?2",
            params![service, id as i64],
        )?;
        let deleted = tx.execute(
            "DELETE FROM versions WHERE service = ?1 AND id = ?2",
            params![service, id as i64],
        )? > 0;
        tx.commit()?;
        Ok(deleted)
    }

    fn version_function(
        &self,
        service: &str,
        version: u64,
        name: &str,
    ) -> Result<Option<FunctionRecord>, StorageError> {
        let row = self
            .lock()
            .prepare_cached(&format!(
                "SELECT {FUNCTION_COLUMNS} FROM version_functions
                 WHERE service = ?1 AND version = ?2 AND name = ?3"
            ))?
            .query_row(params![service, version as i64, name], function_from_row)
            .optional()?;
        row.map(to_function).transpose()
    }

    fn version_functions(
        &self,
        service: &str,
        version: u64,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StorageError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {FUNCTION_COLUMNS} FROM version_functions
             WHERE service = ?1 AND version = ?2 AND name LIKE ?3 ESCAPE '\\' AND name >= ?4
             ORDER BY name LIMIT ?5"
        ))?;
        let rows = statement.query_map(
            params![
                service,
                version as i64,
                like_prefix(prefix),
                start,
                limit as i64
            ],
            function_from_row,
        )?;
        rows.map(|row| to_function(row?)).collect()
    }

    fn insert_alias(&self, alias: &AliasRecord) -> Result<(), StorageError> {
        let result = self.lock().execute(
            &format!("INSERT INTO aliases ({ALIAS_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                alias.service,
                alias.name,
                alias.version as i64,
                alias.description,
                json(&alias.weights),
                alias.created_ms,
                alias.modified_ms
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_constraint(&e) => Err(StorageError::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    fn alias(&self, service: &str, name: &str) -> Result<Option<AliasRecord>, StorageError> {
        let row = self
            .lock()
            .prepare_cached(&format!(
                "SELECT {ALIAS_COLUMNS} FROM aliases WHERE service = ?1 AND name = ?2"
            ))?
            .query_row([service, name], alias_from_row)
            .optional()?;
        row.map(to_alias).transpose()
    }

    fn aliases(
        &self,
        service: &str,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StorageError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases
             WHERE service = ?1 AND name LIKE ?2 ESCAPE '\\' AND name >= ?3 ORDER BY name LIMIT ?4"
        ))?;
        let rows = statement.query_map(
            params![service, like_prefix(prefix), start, limit as i64],
            alias_from_row,
        )?;
        rows.map(|row| to_alias(row?)).collect()
    }

    fn update_alias(&self, alias: &AliasRecord) -> Result<(), StorageError> {
        self.lock().execute(
            "UPDATE aliases SET version = ?3, description = ?4, weights = ?5, modified_ms = ?6
             WHERE service = ?1 AND name = ?2",
            params![
                alias.service,
                alias.name,
                alias.version as i64,
                alias.description,
                json(&alias.weights),
                alias.modified_ms
            ],
        )?;
        Ok(())
    }

    fn delete_alias(&self, service: &str, name: &str) -> Result<bool, StorageError> {
        Ok(self.lock().execute(
            "DELETE FROM aliases WHERE service = ?1 AND name = ?2",
            [service, name],
        )? > 0)
    }

    fn insert_trigger(
        &self,
        trigger: &TriggerRecord,
        max_per_function: usize,
    ) -> Result<(), StorageError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let count = count_rows(
            &tx,
            "SELECT COUNT(*) FROM triggers WHERE service = ?1 AND function = ?2",
            [&trigger.service, &trigger.function],
        )?;
        if count >= max_per_function {
            return Err(StorageError::TooManyTriggers(count));
        }
        let result = tx.execute(
            &format!(
                "INSERT INTO triggers ({TRIGGER_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ),
            params![
                trigger.service,
                trigger.function,
                trigger.name,
                trigger.id,
                trigger.trigger_type,
                json(&trigger.config),
                trigger.source_arn,
                trigger.invocation_role,
                trigger.qualifier,
                trigger.description,
                trigger.created_ms,
                trigger.modified_ms,
                trigger.anchor_ms,
                trigger.fired_through_ms
            ],
        );
        match result {
            Ok(_) => {}
            Err(e) if is_constraint(&e) => return Err(StorageError::AlreadyExists),
            Err(e) => return Err(e.into()),
        }
        tx.commit()?;
        Ok(())
    }

    fn trigger(
        &self,
        service: &str,
        function: &str,
        name: &str,
    ) -> Result<Option<TriggerRecord>, StorageError> {
        let row = self
            .lock()
            .prepare_cached(&format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE service = ?1 AND function = ?2 AND name = ?3"
            ))?
            .query_row([service, function, name], trigger_from_row)
            .optional()?;
        row.map(to_trigger).transpose()
    }

    fn triggers(
        &self,
        service: &str,
        function: &str,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<TriggerRecord>, StorageError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers
             WHERE service = ?1 AND function = ?2 AND name LIKE ?3 ESCAPE '\\' AND name >= ?4
             ORDER BY name LIMIT ?5"
        ))?;
        let rows = statement.query_map(
            params![service, function, like_prefix(prefix), start, limit as i64],
            trigger_from_row,
        )?;
        rows.map(|row| to_trigger(row?)).collect()
    }

    fn triggers_of_type(&self, trigger_type: &str) -> Result<Vec<TriggerRecord>, StorageError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {TRIGGER_COLUMNS} FROM triggers WHERE trigger_type = ?1 ORDER BY service, function, name"
        ))?;
        let rows = statement.query_map([trigger_type], trigger_from_row)?;
        rows.map(|row| to_trigger(row?)).collect()
    }

    fn update_trigger(&self, trigger: &TriggerRecord) -> Result<(), StorageError> {
        self.lock().execute(
            "UPDATE triggers SET config = ?4, invocation_role = ?5, qualifier = ?6, description = ?7,
                 modified_ms = ?8, anchor_ms = ?9, fired_through_ms = ?10
             WHERE service = ?1 AND function = ?2 AND name = ?3",
            params![
                trigger.service,
                trigger.function,
                trigger.name,
                json(&trigger.config),
                trigger.invocation_role,
                trigger.qualifier,
                trigger.description,
                trigger.modified_ms,
                trigger.anchor_ms,
                trigger.fired_through_ms
            ],
        )?;
        Ok(())
    }

    fn delete_trigger(
        &self,
        service: &str,
        function: &str,
        name: &str,
    ) -> Result<bool, StorageError> {
        Ok(self.lock().execute(
            "DELETE FROM triggers WHERE service = ?1 AND function = ?2 AND name = ?3",
            [service, function, name],
        )? > 0)
    }

    fn fire_timer(
        &self,
        trigger: &TriggerRecord,
        through_ms: i64,
        event: Option<&AsyncEvent>,
    ) -> Result<bool, StorageError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        // The stored state, not the caller's copy: the trigger may have been changed, disabled or deleted since.
        let stored: Option<(Option<i64>, i64)> = tx
            .query_row(
                "SELECT fired_through_ms, anchor_ms FROM triggers
                 WHERE service = ?1 AND function = ?2 AND name = ?3",
                [&trigger.service, &trigger.function, &trigger.name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((fired_through, anchor)) = stored else {
            return Ok(false);
        };
        if fired_through != trigger.fired_through_ms
            || anchor != trigger.anchor_ms
            || fired_through.is_some_and(|t| t >= through_ms)
        {
            return Ok(false);
        }
        tx.execute(
            "UPDATE triggers SET fired_through_ms = ?4 WHERE service = ?1 AND function = ?2 AND name = ?3",
            params![trigger.service, trigger.function, trigger.name, through_ms],
        )?;
        if let Some(event) = event {
            tx.execute(
                "INSERT INTO async_events (service, function, invocation_id, request_id, payload, enqueued_ms,
                     attempts, next_attempt_ms, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    event.service,
                    event.function,
                    event.invocation_id,
                    event.request_id,
                    event.payload,
                    event.enqueued_ms,
                    event.attempts,
                    event.next_attempt_ms,
                    event.version.map(|v| v as i64)
                ],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, SqliteStorage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = SqliteStorage::open(&dir.path().join("runtime.sqlite")).unwrap();
        (dir, storage)
    }

    fn event(function: &str, invocation_id: Option<&str>) -> AsyncEvent {
        AsyncEvent {
            seq: 0,
            service: "s".into(),
            function: function.into(),
            version: None,
            invocation_id: invocation_id.map(Into::into),
            request_id: "r".into(),
            payload: b"p".to_vec(),
            enqueued_ms: 1,
            attempts: 0,
            next_attempt_ms: 1,
        }
    }

    fn service_record(name: &str, description: &str) -> ServiceRecord {
        let attributes = crate::runtime::limits::ServiceAttributes {
            description: Some(description.to_owned()),
            ..Default::default()
        };
        ServiceRecord {
            name: name.into(),
            id: "id".into(),
            config: ServiceConfig::apply(None, &attributes),
            created_ms: 1,
            modified_ms: 1,
        }
    }

    #[test]
    fn reads_after_a_write_see_the_write() {
        let (_dir, storage) = storage();
        storage
            .insert_service(&service_record("s", "first"))
            .unwrap();
        // Read twice: the second answer comes from the cache.
        for _ in 0..2 {
            assert_eq!(
                storage.service("s").unwrap().unwrap().config.description,
                "first"
            );
        }
        storage
            .update_service(&service_record("s", "second"))
            .unwrap();
        assert_eq!(
            storage.service("s").unwrap().unwrap().config.description,
            "second"
        );

        let function = FunctionRecord {
            service: "s".into(),
            name: "f".into(),
            id: "fid".into(),
            config: FunctionConfig {
                runtime: "python3".into(),
                handler: "index.first".into(),
                description: String::new(),
                memory_size: 128,
                timeout: 3,
                initializer: String::new(),
                initialization_timeout: 3,
                environment_variables: Default::default(),
                instance_concurrency: 1,
                instance_type: "e1".into(),
            },
            code_checksum: 1,
            code_size: 1,
            created_ms: 1,
            modified_ms: 1,
        };
        assert!(storage.function("s", "f").unwrap().is_none());
        storage.insert_function(&function, 100).unwrap();
        for _ in 0..2 {
            assert_eq!(
                storage.function("s", "f").unwrap().unwrap().config.handler,
                "index.first"
            );
        }
        let mut updated = function.clone();
        updated.config.handler = "index.second".into();
        updated.code_checksum = 2;
        storage.update_function(&updated).unwrap();
        let read = storage.function("s", "f").unwrap().unwrap();
        assert_eq!(
            (read.config.handler.as_str(), read.code_checksum),
            ("index.second", 2)
        );
        assert!(storage.delete_function("s", "f").unwrap());
        assert!(storage.function("s", "f").unwrap().is_none());
        assert!(storage.delete_service("s").unwrap());
        assert!(storage.service("s").unwrap().is_none());
    }

    #[test]
    fn the_database_and_its_wal_are_private_to_the_runtime_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, storage) = storage();
        storage.enqueue(&event("f", None)).unwrap();
        for name in ["runtime.sqlite", "runtime.sqlite-wal", "runtime.sqlite-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
        }
    }

    #[test]
    fn queue_survives_reopening_and_deduplicates_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.sqlite");
        {
            let storage = SqliteStorage::open(&path).unwrap();
            assert!(matches!(
                storage.enqueue(&event("f", Some("job_1"))).unwrap(),
                Enqueued::New(_)
            ));
            assert_eq!(
                storage.enqueue(&event("f", Some("job_1"))).unwrap(),
                Enqueued::Duplicate
            );
            assert!(matches!(
                storage.enqueue(&event("g", Some("job_1"))).unwrap(),
                Enqueued::New(_)
            ));
            storage.enqueue(&event("f", None)).unwrap();
        }
        let storage = SqliteStorage::open(&path).unwrap();
        assert_eq!(storage.queue_len().unwrap(), 3);
        let heads = storage.queue_heads().unwrap();
        assert_eq!(
            heads
                .iter()
                .map(|e| (e.function.as_str(), e.invocation_id.as_deref()))
                .collect::<Vec<_>>(),
            [("f", Some("job_1")), ("g", Some("job_1"))]
        );
        storage
            .finish(&heads[0], EventStatus::Succeeded, "", 5)
            .unwrap();
        assert_eq!(
            storage.enqueue(&event("f", Some("job_1"))).unwrap(),
            Enqueued::Duplicate,
            "finished ids stay"
        );
        let heads = storage.queue_heads().unwrap();
        let f_head = heads.iter().find(|e| e.function == "f").unwrap();
        assert_eq!(
            f_head.invocation_id, None,
            "the next event of f is its second one"
        );
        assert_eq!(storage.outcomes("s", "f").unwrap()[0].status, "Succeeded");
        assert_eq!(storage.prune_outcomes(5).unwrap(), 0, "finished at 5: kept");
        assert_eq!(storage.prune_outcomes(6).unwrap(), 1);
        assert!(
            matches!(
                storage.enqueue(&event("f", Some("job_1"))).unwrap(),
                Enqueued::New(_)
            ),
            "a pruned id can be used again"
        );
    }

    #[test]
    fn services_with_functions_cannot_be_deleted() {
        let (_dir, storage) = storage();
        let service = ServiceRecord {
            name: "s".into(),
            id: "id".into(),
            config: ServiceConfig::default(),
            created_ms: 0,
            modified_ms: 0,
        };
        storage.insert_service(&service).unwrap();
        assert!(matches!(
            storage.insert_service(&service),
            Err(StorageError::AlreadyExists)
        ));
        let config = serde_json::from_value(serde_json::json!({
            "runtime": "python3", "handler": "i.h", "description": "", "memorySize": 128, "timeout": 3,
            "initializer": "", "initializationTimeout": 3, "environmentVariables": {}, "instanceConcurrency": 1,
            "instanceType": "e1"
        }))
        .unwrap();
        let function = FunctionRecord {
            service: "s".into(),
            name: "f_1".into(),
            id: "fid".into(),
            config,
            code_checksum: u64::MAX,
            code_size: 10,
            created_ms: 0,
            modified_ms: 0,
        };
        storage.insert_function(&function, 1).unwrap();
        let second = FunctionRecord {
            name: "g".into(),
            ..function.clone()
        };
        assert!(matches!(
            storage.insert_function(&second, 1),
            Err(StorageError::TooManyFunctions(1))
        ));
        assert_eq!(storage.function("s", "f_1").unwrap(), Some(function));
        assert_eq!(storage.functions("s", "f_", "", 10).unwrap().len(), 1);
        assert_eq!(
            storage.functions("s", "f%", "", 10).unwrap().len(),
            0,
            "LIKE wildcards are escaped"
        );
        assert!(matches!(
            storage.delete_service("s"),
            Err(StorageError::NotEmpty(1))
        ));
        assert!(storage.delete_function("s", "f_1").unwrap());
        assert!(storage.delete_service("s").unwrap());
        assert!(!storage.delete_service("s").unwrap());
    }
}
