//! The PostgreSQL store: the same tables and the same one-transaction-per-outcome rule as SQLite, on a server that
//! can be run highly available and shared.
//!
//! The [`Store`] trait is synchronous (its callers run it on blocking threads, see [`super::blocking`]), while the
//! client, tokio-postgres, is async. The store therefore owns a small runtime of its own (one worker thread, which
//! drives the connections) and each call blocks on it; it never blocks a thread of the daemon's runtime, and it can
//! be dropped anywhere (its runtime is shut down in the background).
//!
//! Connections: a pool of at most [`POOL_SIZE`], opened on demand and kept; a connection that broke is dropped and
//! a new one opened by the next call, so a server restart costs the calls in flight, nothing more. A call waits for
//! a free connection. Each connection keeps its prepared statements.
//!
//! Durability is the server's: a transaction is committed when `COMMIT` returns (with the server's default
//! `synchronous_commit = on`, it is on the server's disk, or its synchronous standby's).
//!
//! Leases (see [`super::cluster`]): the `leases` and `daemons` tables, with times from the server's clock
//! (`now()`). A fenced write first locks its channel's lease row `FOR SHARE` inside its transaction and checks owner,
//! generation and expiry: a daemon taking the channel over must wait for that transaction to end, so no write of
//! the old owner lands after the new owner has read the positions it resumes from.
//!
//! Errors name the database by its URL, which never holds a password (the configuration refuses one in it; the
//! password is sent from [`PostgresOptions::password`] and appears nowhere else).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::values::{
    TriggerRow, anchor_block, anchor_hash, from_millis, to_i64, to_millis, to_u64,
};
use super::{
    ClusterView, DaemonId, DaemonRecord, DeadLetter, DeadLetterQuery, Fence, ForwardedCommand,
    LeaseRecord, NewDeadLetter, OutcomeRecord, Store, StoreError, TriggerRecord,
};
use crate::config::{ChannelName, Secret, TriggerName};
use crate::trigger::state::{Anchor, Position, Status};

/// The schema, one migration per version; the database records the last version applied. The same tables and
/// columns as the SQLite store (times in milliseconds since the Unix epoch), with PostgreSQL's types.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE triggers (
    name         TEXT PRIMARY KEY,
    state        TEXT NOT NULL,
    block        BIGINT NOT NULL CHECK (block >= 0),
    event_index  BIGINT NOT NULL CHECK (event_index >= 0),
    failures     BIGINT NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_error   TEXT,
    delivered    BIGINT NOT NULL DEFAULT 0,
    discarded    BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL,
    anchor_block BIGINT,
    anchor_hash  BYTEA CHECK (anchor_hash IS NULL OR length(anchor_hash) = 32)
);
CREATE TABLE dead_letters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger     TEXT NOT NULL REFERENCES triggers(name),
    event_id    TEXT NOT NULL,
    block       BIGINT NOT NULL,
    event_index BIGINT NOT NULL,
    output      BIGINT NOT NULL,
    payload     JSON NOT NULL,
    error       TEXT NOT NULL,
    attempts    BIGINT NOT NULL CHECK (attempts >= 1),
    created_at  BIGINT NOT NULL,
    repushed_at BIGINT
);
CREATE INDEX dead_letters_by_trigger ON dead_letters(trigger, id);
"#,
    r#"
CREATE TABLE leases (
    channel    TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    generation BIGINT NOT NULL CHECK (generation >= 1),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE daemons (
    id         TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
"#,
    r#"
CREATE TABLE commands (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel     TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    command     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    answer      TEXT,
    answered_at TIMESTAMPTZ
);
CREATE INDEX commands_waiting ON commands(channel, id) WHERE answer IS NULL;
"#,
    // Commands for one daemon rather than a channel's owner (reload): `daemon` names it, `channel` is empty.
    r#"
ALTER TABLE commands ADD COLUMN daemon TEXT;
CREATE INDEX commands_for_daemon ON commands(daemon, id) WHERE answer IS NULL AND daemon IS NOT NULL;
"#,
];

/// Connections kept open to the server: enough for the daemon's concurrent outcomes (each is one short
/// transaction) without taking many of the server's `max_connections`.
pub const POOL_SIZE: usize = 4;

/// How long opening a connection (TCP, TLS, authentication) may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Set on every connection: a transaction of the store is a few statements sent back to back, so one idle for a
/// second has a client that was paused or cut off, and a network partition keeps its connection open for as long
/// as TCP takes to notice (hours). The server then ends the session, and the lease row its fenced write locked is
/// free for the daemon taking the channel over. Sent as a statement rather than a startup option, which poolers
/// such as PgBouncer refuse; skipped when the URL's `options` set the parameter.
const IDLE_IN_TRANSACTION: &str = "SET idle_in_transaction_session_timeout = 1000";

/// The advisory lock key that serialises migrations of daemons starting at once on one database.
const MIGRATION_LOCK: i64 = 0x6368_6169_6e74_7267; // "chaintrg"

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database?sslmode=...`, without a password.
    pub url: String,
    /// The password, read from its secret source.
    pub password: Option<Secret>,
    /// PEM file of the certificate authorities the server's certificate must chain to; `None`: the platform's
    /// trusted roots. Certificates are always verified; `sslmode` in the URL says whether TLS is required
    /// (`require`), tried (`prefer`, the default) or off (`disable`).
    pub tls_ca: Option<PathBuf>,
}

/// Trigger progress and dead letters in a PostgreSQL database.
pub struct PostgresStore {
    /// Drives the connections; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// The URL (no password), to name the database in every error.
    path: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.path)
            .finish_non_exhaustive()
    }
}

struct Pool {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// One open connection and the statements prepared on it.
struct Connection {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// A connection taken from the pool; it goes back when dropped, unless it broke.
struct Lease<'a> {
    connection: Option<Connection>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && !connection.client.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(connection);
        }
    }
}

impl Lease<'_> {
    fn connection(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("a leased connection")
    }
}

impl Connection {
    async fn statement(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Callable from anywhere, an async task included: the connection tasks are cancelled, their sockets
            // closed.
            runtime.shutdown_background();
        }
    }
}

/// The URL as it may be shown: the one given, or when it carries a password (it should not), rebuilt from its
/// user, hosts and database.
fn display_name(url: &str, config: &tokio_postgres::Config) -> String {
    if config.get_password().is_none() {
        return url.to_owned();
    }
    crate::config::redact_url_text(url)
}

impl PostgresStore {
    /// Connects to the server (failing at once when it cannot be reached or refuses the login) and brings the
    /// schema up to date. Must not be called on an async thread (it blocks).
    pub fn open(options: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        let mut config =
            options
                .url
                .parse::<tokio_postgres::Config>()
                .map_err(|e| StoreError::Setup {
                    path: crate::config::redact_url_text(&options.url),
                    message: format!(
                        "not a PostgreSQL URL: {}",
                        crate::config::postgres_error_text(&e)
                    ),
                })?;
        let path = display_name(&options.url, &config);
        let setup = |message: String| StoreError::Setup {
            path: path.clone(),
            message,
        };
        if let Some(password) = &options.password {
            config.password(password.expose());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("chaintrigger");
        }
        let tls = MakeRustlsConnect::new(tls_config(options.tls_ca.as_deref()).map_err(setup)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres-store")
            .enable_all()
            .build()
            .map_err(|e| setup(format!("cannot start the store's runtime: {e}")))?;
        let store = PostgresStore {
            runtime: Some(runtime),
            pool: Pool {
                config,
                tls,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(POOL_SIZE),
            },
            path,
        };
        store.block_on(store.migrate())?;
        Ok(store)
    }

    fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime
            .as_ref()
            .expect("the store's runtime runs until the store is dropped")
            .block_on(future)
    }

    fn error(&self, source: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres {
            path: self.path.clone(),
            message: crate::config::postgres_error_text(&source),
        }
    }

    fn corrupt(&self, what: &str, found: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.to_owned(),
            found,
        }
    }

    /// A connection from the pool, opened if none is idle; waits while all are in use.
    async fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let permit = self
            .pool
            .permits
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        // A connection the server closed meanwhile (restart, idle timeout, pg_terminate_backend) is dropped here
        // rather than failing the call.
        let idle = {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            idle.retain(|connection| !connection.client.is_closed());
            idle.pop()
        };
        let connection = match idle {
            Some(connection) => connection,
            None => {
                let (client, connection) = self
                    .pool
                    .config
                    .connect(self.pool.tls.clone())
                    .await
                    .map_err(|e| self.error(e))?;
                let path = self.path.clone();
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        let error = crate::config::postgres_error_text(&error);
                        tracing::warn!(database = %path, %error, "connection to the database lost");
                    }
                });
                let operator_set =
                    self.pool.config.get_options().is_some_and(|options| {
                        options.contains("idle_in_transaction_session_timeout")
                    });
                if !operator_set {
                    client
                        .batch_execute(IDLE_IN_TRANSACTION)
                        .await
                        .map_err(|e| self.error(e))?;
                }
                Connection {
                    client,
                    statements: HashMap::new(),
                }
            }
        };
        Ok(Lease {
            connection: Some(connection),
            pool: &self.pool,
            _permit: permit,
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut lease = self.lease().await?;
        let client = &mut lease.connection().client;
        let transaction = client.transaction().await.map_err(|e| self.error(e))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.error(e))?;
        transaction
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .await
            .map_err(|e| self.error(e))?;
        let current: i64 = transaction
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| self.error(e))?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found: current,
                known,
            });
        }
        for (version, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            transaction
                .batch_execute(sql)
                .await
                .map_err(|e| self.error(e))?;
            transaction
                .execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&(version as i32 + 1)],
                )
                .await
                .map_err(|e| self.error(e))?;
        }
        transaction.commit().await.map_err(|e| self.error(e))
    }

    /// Runs one statement on a pooled connection and returns its rows.
    async fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut lease = self.lease().await?;
        let connection = lease.connection();
        let statement = connection.statement(sql).await.map_err(|e| self.error(e))?;
        connection
            .client
            .query(&statement, params)
            .await
            .map_err(|e| self.error(e))
    }

    /// Runs one statement on a pooled connection and returns how many rows it changed.
    async fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let mut lease = self.lease().await?;
        let connection = lease.connection();
        let statement = connection.statement(sql).await.map_err(|e| self.error(e))?;
        connection
            .client
            .execute(&statement, params)
            .await
            .map_err(|e| self.error(e))
    }

    /// Runs one statement in a transaction of its own after checking `fence` in it; returns how many rows it
    /// changed.
    async fn fenced_execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
        fence: Option<&Fence>,
    ) -> Result<u64, StoreError> {
        let mut lease = self.lease().await?;
        let connection = lease.connection();
        let statement = connection.statement(sql).await.map_err(|e| self.error(e))?;
        let check = self.fence_statement(connection, fence).await?;
        let transaction = connection
            .client
            .transaction()
            .await
            .map_err(|e| self.error(e))?;
        self.check_fence(&transaction, check.as_ref(), fence)
            .await?;
        let changed = transaction
            .execute(&statement, params)
            .await
            .map_err(|e| self.error(e))?;
        transaction.commit().await.map_err(|e| self.error(e))?;
        Ok(changed)
    }

    /// The fence check prepared on `connection`, when the write is fenced.
    async fn fence_statement(
        &self,
        connection: &mut Connection,
        fence: Option<&Fence>,
    ) -> Result<Option<Statement>, StoreError> {
        match fence {
            Some(_) => connection
                .statement(CHECK_FENCE)
                .await
                .map(Some)
                .map_err(|e| self.error(e)),
            None => Ok(None),
        }
    }

    /// Refuses the transaction's write unless `fence` holds, and keeps its lease row locked until the transaction
    /// ends (see the module documentation).
    async fn check_fence(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        check: Option<&Statement>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let (Some(check), Some(fence)) = (check, fence) else {
            return Ok(());
        };
        let rows = transaction
            .query(
                check,
                &[
                    &fence.channel.as_str(),
                    &fence.owner.as_str(),
                    &fence.generation,
                ],
            )
            .await
            .map_err(|e| self.error(e))?;
        if rows.is_empty() {
            return Err(StoreError::Fenced {
                path: self.path.clone(),
                channel: fence.channel.to_string(),
                owner: fence.owner.to_string(),
                generation: fence.generation,
            });
        }
        Ok(())
    }

    fn read_trigger(&self, row: &Row) -> Result<TriggerRecord, StoreError> {
        let get = |i: usize| row.try_get::<_, i64>(i).map_err(|e| self.error(e));
        let row = TriggerRow {
            name: row.try_get(0).map_err(|e| self.error(e))?,
            state: row.try_get(1).map_err(|e| self.error(e))?,
            block: get(2)?,
            index: get(3)?,
            failures: get(4)?,
            last_error: row.try_get(5).map_err(|e| self.error(e))?,
            delivered: get(6)?,
            discarded: get(7)?,
            updated_at: get(8)?,
            anchor_block: row.try_get(9).map_err(|e| self.error(e))?,
            anchor_hash: row.try_get(10).map_err(|e| self.error(e))?,
        };
        row.into_record()
            .map_err(|(what, found)| self.corrupt(&what, found))
    }

    fn read_dead_letter(&self, row: &Row) -> Result<DeadLetter, StoreError> {
        let get = |i: usize| row.try_get::<_, i64>(i).map_err(|e| self.error(e));
        let id = get(0)?;
        let trigger: String = row.try_get(1).map_err(|e| self.error(e))?;
        let payload: String = row.try_get(6).map_err(|e| self.error(e))?;
        Ok(DeadLetter {
            id,
            trigger: TriggerName::new(trigger).map_err(|e| self.corrupt("trigger name", e))?,
            letter: NewDeadLetter {
                event_id: row.try_get(2).map_err(|e| self.error(e))?,
                position: Position {
                    block: to_u64(get(3)?),
                    index: u32::try_from(get(4)?).unwrap_or(u32::MAX),
                },
                output: u32::try_from(get(5)?).unwrap_or(u32::MAX),
                payload: serde_json::from_str(&payload).map_err(|e| {
                    self.corrupt(&format!("payload of dead letter {id}"), e.to_string())
                })?,
                error: row.try_get(7).map_err(|e| self.error(e))?,
                attempts: u32::try_from(get(8)?).unwrap_or(u32::MAX),
            },
            created_at: from_millis(get(9)?),
            repushed_at: row
                .try_get::<_, Option<i64>>(10)
                .map_err(|e| self.error(e))?
                .map(from_millis),
        })
    }
}

/// The TLS settings: verification always on, against the given CA file or the platform's roots.
fn tls_config(tls_ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?;
    let Some(path) = tls_ca else {
        use rustls_platform_verifier::BuilderVerifierExt;
        return builder
            .with_platform_verifier()
            .map(|builder| builder.with_no_client_auth())
            .map_err(|e| format!("TLS setup with the platform's trusted roots: {e}"));
    };
    let pem =
        std::fs::read(path).map_err(|e| format!("tls_ca: cannot read {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for (index, certificate) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let certificate = certificate.map_err(|e| {
            format!(
                "tls_ca: {}: certificate {} is not valid PEM: {e}",
                path.display(),
                index + 1
            )
        })?;
        roots.add(certificate).map_err(|e| {
            format!(
                "tls_ca: {}: certificate {} is not a usable CA certificate: {e}",
                path.display(),
                index + 1
            )
        })?;
    }
    if roots.is_empty() {
        return Err(format!(
            "tls_ca: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

const SELECT_TRIGGER: &str = "SELECT name, state, block, event_index, failures, last_error, delivered, discarded, updated_at, anchor_block, anchor_hash FROM triggers WHERE name = $1";
const SELECT_TRIGGERS: &str = "SELECT name, state, block, event_index, failures, last_error, delivered, discarded, updated_at, anchor_block, anchor_hash FROM triggers ORDER BY name";
const INSERT_TRIGGER: &str =
    "INSERT INTO triggers (name, state, block, event_index, failures, last_error, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING";
const UPDATE_OUTCOME: &str = "UPDATE triggers SET state = $2, block = $3, event_index = $4, failures = $5, last_error = $6,
     delivered = delivered + $7, discarded = discarded + $8, updated_at = $9, anchor_block = $10, anchor_hash = $11
     WHERE name = $1";
const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters (trigger, event_id, block, event_index, output, payload, error, attempts, created_at)
     VALUES ($1, $2, $3, $4, $5, $6::TEXT::JSON, $7, $8, $9)";
const UPDATE_STATUS: &str =
    "UPDATE triggers SET state = $2, failures = $3, last_error = $4, updated_at = $5,
     block = COALESCE($6, block), event_index = COALESCE($7, event_index),
     anchor_block = CASE WHEN $6::BIGINT IS NULL THEN anchor_block ELSE $8 END,
     anchor_hash = CASE WHEN $6::BIGINT IS NULL THEN anchor_hash ELSE $9 END WHERE name = $1";
const SELECT_DEAD_LETTERS: &str = "SELECT id, trigger, event_id, block, event_index, output, payload::TEXT, error, attempts, created_at, repushed_at
     FROM dead_letters WHERE ($1::TEXT IS NULL OR trigger = $1) AND ($2 OR repushed_at IS NULL) ORDER BY id LIMIT $3";
const SELECT_DEAD_LETTER: &str = "SELECT id, trigger, event_id, block, event_index, output, payload::TEXT, error, attempts, created_at, repushed_at
     FROM dead_letters WHERE id = $1";
const MARK_REPUSHED: &str = "UPDATE dead_letters SET repushed_at = $2 WHERE id = $1";
const CHECK_FENCE: &str = "SELECT 1 FROM leases WHERE channel = $1 AND owner = $2 AND generation = $3 AND expires_at > now() FOR SHARE";
const SELECT_LEASES: &str = "SELECT channel, owner, generation, expires_at > now(),
     GREATEST(0, (EXTRACT(EPOCH FROM (now() - expires_at)) * 1000))::BIGINT FROM leases ORDER BY channel";
const SELECT_DAEMONS: &str =
    "SELECT id, expires_at > now() FROM daemons WHERE expires_at > now() ORDER BY id";
const HEARTBEAT: &str = "INSERT INTO daemons (id, started_at, expires_at) VALUES ($1, now(), now() + make_interval(secs => $2))
     ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at";
const ACQUIRE_LEASE: &str = "INSERT INTO leases (channel, owner, generation, expires_at) VALUES ($1, $2, 1, now() + make_interval(secs => $3))
     ON CONFLICT (channel) DO UPDATE SET owner = EXCLUDED.owner, generation = leases.generation + 1, expires_at = EXCLUDED.expires_at
     WHERE leases.expires_at <= now() RETURNING generation";
const RENEW_LEASES: &str = "UPDATE leases SET expires_at = now() + make_interval(secs => $4)
     FROM unnest($2::TEXT[], $3::BIGINT[]) AS held(channel, generation)
     WHERE leases.channel = held.channel AND leases.generation = held.generation AND leases.owner = $1
       AND leases.expires_at > now()
     RETURNING leases.channel";
const RELEASE_LEASES: &str = "UPDATE leases SET expires_at = now() WHERE owner = $1 AND channel = ANY($2::TEXT[]) AND expires_at > now()";
const LEAVE: &str = "DELETE FROM daemons WHERE id = $1";
const FORWARD_COMMAND: &str =
    "INSERT INTO commands (channel, trigger, command) VALUES ($1, $2, $3) RETURNING id";
const FORWARD_TO_DAEMON: &str =
    "INSERT INTO commands (channel, trigger, command, daemon) VALUES ('', '', $2, $1) RETURNING id";
const PENDING_COMMANDS: &str = "SELECT id, channel, trigger, command FROM commands
     WHERE answer IS NULL AND ((daemon IS NULL AND channel = ANY($1::TEXT[])) OR daemon = $3)
       AND created_at > now() - make_interval(secs => $2) ORDER BY id";
const ANSWER_COMMAND: &str =
    "UPDATE commands SET answer = $2, answered_at = now() WHERE id = $1 AND answer IS NULL";
const COMMAND_ANSWER: &str = "SELECT answer FROM commands WHERE id = $1";
const WITHDRAW_COMMAND: &str = "DELETE FROM commands WHERE id = $1 AND answer IS NULL";
/// Answered commands are kept an hour for operators, then removed.
const FORGET_COMMANDS: &str = "DELETE FROM commands WHERE created_at < now() - interval '1 hour'";
/// A daemon whose heartbeat stopped an hour ago is forgotten.
const FORGET_DAEMONS: &str = "DELETE FROM daemons WHERE expires_at < now() - interval '1 hour'";

impl Store for PostgresStore {
    fn trigger(&self, name: &TriggerName) -> Result<Option<TriggerRecord>, StoreError> {
        let rows = self.block_on(self.query(SELECT_TRIGGER, &[&name.as_str()]))?;
        rows.first().map(|row| self.read_trigger(row)).transpose()
    }

    fn triggers(&self) -> Result<Vec<TriggerRecord>, StoreError> {
        let rows = self.block_on(self.query(SELECT_TRIGGERS, &[]))?;
        rows.iter().map(|row| self.read_trigger(row)).collect()
    }

    fn ensure_trigger(
        &self,
        name: &TriggerName,
        status: &Status,
        position: Position,
        at: SystemTime,
        fence: Option<&Fence>,
    ) -> Result<TriggerRecord, StoreError> {
        self.block_on(self.fenced_execute(
            INSERT_TRIGGER,
            &[
                &name.as_str(),
                &status.state.as_str(),
                &to_i64(position.block),
                &i64::from(position.index),
                &to_i64(status.failures),
                &status.last_error,
                &to_millis(at),
            ],
            fence,
        ))?;
        self.trigger(name)?
            .ok_or_else(|| StoreError::UnknownTrigger {
                path: self.path.clone(),
                trigger: name.to_string(),
            })
    }

    fn record_outcome(
        &self,
        outcome: &OutcomeRecord<'_>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.block_on(async {
            let mut lease = self.lease().await?;
            let connection = lease.connection();
            let check = self.fence_statement(connection, fence).await?;
            let update = connection
                .statement(UPDATE_OUTCOME)
                .await
                .map_err(|e| self.error(e))?;
            let insert = if outcome.dead_letters.is_empty() {
                None
            } else {
                Some(
                    connection
                        .statement(INSERT_DEAD_LETTER)
                        .await
                        .map_err(|e| self.error(e))?,
                )
            };
            let transaction = connection
                .client
                .transaction()
                .await
                .map_err(|e| self.error(e))?;
            self.check_fence(&transaction, check.as_ref(), fence)
                .await?;
            let updated = transaction
                .execute(
                    &update,
                    &[
                        &outcome.trigger.as_str(),
                        &outcome.status.state.as_str(),
                        &to_i64(outcome.position.block),
                        &i64::from(outcome.position.index),
                        &to_i64(outcome.status.failures),
                        &outcome.status.last_error,
                        &to_i64(outcome.delivered),
                        &to_i64(outcome.discarded),
                        &to_millis(outcome.at),
                        &anchor_block(outcome.anchor),
                        &anchor_hash(outcome.anchor),
                    ],
                )
                .await
                .map_err(|e| self.error(e))?;
            if updated == 0 {
                return Err(StoreError::UnknownTrigger {
                    path: self.path.clone(),
                    trigger: outcome.trigger.to_string(),
                });
            }
            if let Some(insert) = insert {
                for letter in outcome.dead_letters {
                    transaction
                        .execute(
                            &insert,
                            &[
                                &outcome.trigger.as_str(),
                                &letter.event_id,
                                &to_i64(letter.position.block),
                                &i64::from(letter.position.index),
                                &i64::from(letter.output),
                                &letter.payload.to_string(),
                                &letter.error,
                                &i64::from(letter.attempts),
                                &to_millis(outcome.at),
                            ],
                        )
                        .await
                        .map_err(|e| self.error(e))?;
                }
            }
            transaction.commit().await.map_err(|e| self.error(e))
        })
    }

    fn save_status(
        &self,
        name: &TriggerName,
        status: &Status,
        position: Option<(Position, Option<Anchor>)>,
        at: SystemTime,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let anchor = position.and_then(|(_, anchor)| anchor);
        let updated = self.block_on(self.fenced_execute(
            UPDATE_STATUS,
            &[
                &name.as_str(),
                &status.state.as_str(),
                &to_i64(status.failures),
                &status.last_error,
                &to_millis(at),
                &position.map(|(p, _)| to_i64(p.block)),
                &position.map(|(p, _)| i64::from(p.index)),
                &anchor_block(anchor),
                &anchor_hash(anchor),
            ],
            fence,
        ))?;
        if updated == 0 {
            return Err(StoreError::UnknownTrigger {
                path: self.path.clone(),
                trigger: name.to_string(),
            });
        }
        Ok(())
    }

    fn dead_letters(&self, query: &DeadLetterQuery<'_>) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = self.block_on(self.query(
            SELECT_DEAD_LETTERS,
            &[
                &query.trigger.map(TriggerName::as_str),
                &query.include_repushed,
                &query.limit.map(i64::from),
            ],
        ))?;
        rows.iter().map(|row| self.read_dead_letter(row)).collect()
    }

    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        let rows = self.block_on(self.query(SELECT_DEAD_LETTER, &[&id]))?;
        rows.first()
            .map(|row| self.read_dead_letter(row))
            .transpose()
    }

    fn mark_repushed(&self, id: i64, at: SystemTime) -> Result<(), StoreError> {
        let updated = self.block_on(self.execute(MARK_REPUSHED, &[&id, &to_millis(at)]))?;
        if updated == 0 {
            return Err(StoreError::UnknownDeadLetter {
                path: self.path.clone(),
                id,
            });
        }
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }

    fn cluster(&self) -> Result<ClusterView, StoreError> {
        let (leases, daemons) = self.block_on(async {
            Ok::<_, StoreError>((
                self.query(SELECT_LEASES, &[]).await?,
                self.query(SELECT_DAEMONS, &[]).await?,
            ))
        })?;
        let leases = leases
            .iter()
            .map(|row| {
                let channel: String = row.try_get(0).map_err(|e| self.error(e))?;
                let expired_for: i64 = row.try_get(4).map_err(|e| self.error(e))?;
                Ok(LeaseRecord {
                    channel: ChannelName::new(channel.clone())
                        .map_err(|_| self.corrupt("lease channel", channel))?,
                    owner: DaemonId::new(row.try_get::<_, String>(1).map_err(|e| self.error(e))?),
                    generation: row.try_get(2).map_err(|e| self.error(e))?,
                    live: row.try_get(3).map_err(|e| self.error(e))?,
                    expired_for: Duration::from_millis(to_u64(expired_for)),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let daemons = daemons
            .iter()
            .map(|row| {
                Ok(DaemonRecord {
                    id: DaemonId::new(row.try_get::<_, String>(0).map_err(|e| self.error(e))?),
                    live: row.try_get(1).map_err(|e| self.error(e))?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(ClusterView { leases, daemons })
    }

    fn heartbeat(&self, daemon: &DaemonId, ttl: Duration) -> Result<(), StoreError> {
        self.block_on(async {
            self.execute(HEARTBEAT, &[&daemon.as_str(), &ttl.as_secs_f64()])
                .await?;
            self.execute(FORGET_DAEMONS, &[]).await?;
            self.execute(FORGET_COMMANDS, &[]).await
        })?;
        Ok(())
    }

    fn acquire_lease(
        &self,
        channel: &ChannelName,
        daemon: &DaemonId,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let rows = self.block_on(self.query(
            ACQUIRE_LEASE,
            &[&channel.as_str(), &daemon.as_str(), &ttl.as_secs_f64()],
        ))?;
        rows.first()
            .map(|row| row.try_get(0).map_err(|e| self.error(e)))
            .transpose()
    }

    fn renew_leases(
        &self,
        daemon: &DaemonId,
        held: &[(ChannelName, i64)],
        ttl: Duration,
    ) -> Result<Vec<ChannelName>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let channels: Vec<&str> = held.iter().map(|(channel, _)| channel.as_str()).collect();
        let generations: Vec<i64> = held.iter().map(|(_, generation)| *generation).collect();
        let rows = self.block_on(self.query(
            RENEW_LEASES,
            &[
                &daemon.as_str(),
                &channels,
                &generations,
                &ttl.as_secs_f64(),
            ],
        ))?;
        rows.iter()
            .map(|row| {
                let channel: String = row.try_get(0).map_err(|e| self.error(e))?;
                ChannelName::new(channel.clone())
                    .map_err(|_| self.corrupt("lease channel", channel))
            })
            .collect()
    }

    fn release_leases(
        &self,
        daemon: &DaemonId,
        channels: &[ChannelName],
    ) -> Result<(), StoreError> {
        let channels: Vec<&str> = channels.iter().map(ChannelName::as_str).collect();
        self.block_on(self.execute(RELEASE_LEASES, &[&daemon.as_str(), &channels]))?;
        Ok(())
    }

    fn leave(&self, daemon: &DaemonId) -> Result<(), StoreError> {
        self.block_on(self.execute(LEAVE, &[&daemon.as_str()]))?;
        Ok(())
    }

    fn forward_command(
        &self,
        channel: &ChannelName,
        trigger: &str,
        command: &str,
    ) -> Result<i64, StoreError> {
        let rows =
            self.block_on(self.query(FORWARD_COMMAND, &[&channel.as_str(), &trigger, &command]))?;
        rows.first()
            .ok_or_else(|| self.corrupt("forwarded command", "no id returned".into()))?
            .try_get(0)
            .map_err(|e| self.error(e))
    }

    fn forward_to_daemon(&self, daemon: &DaemonId, command: &str) -> Result<i64, StoreError> {
        let rows = self.block_on(self.query(FORWARD_TO_DAEMON, &[&daemon.as_str(), &command]))?;
        rows.first()
            .ok_or_else(|| self.corrupt("forwarded command", "no id returned".into()))?
            .try_get(0)
            .map_err(|e| self.error(e))
    }

    fn pending_commands(
        &self,
        daemon: &DaemonId,
        channels: &[ChannelName],
        max_age: Duration,
    ) -> Result<Vec<ForwardedCommand>, StoreError> {
        let names: Vec<&str> = channels.iter().map(ChannelName::as_str).collect();
        let rows = self.block_on(self.query(
            PENDING_COMMANDS,
            &[&names, &max_age.as_secs_f64(), &daemon.as_str()],
        ))?;
        rows.iter()
            .map(|row| {
                let channel: String = row.try_get(1).map_err(|e| self.error(e))?;
                let channel = if channel.is_empty() {
                    None
                } else {
                    Some(
                        ChannelName::new(channel.clone())
                            .map_err(|_| self.corrupt("command channel", channel))?,
                    )
                };
                Ok(ForwardedCommand {
                    id: row.try_get(0).map_err(|e| self.error(e))?,
                    channel,
                    trigger: row.try_get(2).map_err(|e| self.error(e))?,
                    command: row.try_get(3).map_err(|e| self.error(e))?,
                })
            })
            .collect()
    }

    fn answer_command(&self, id: i64, answer: &str) -> Result<(), StoreError> {
        self.block_on(self.execute(ANSWER_COMMAND, &[&id, &answer]))?;
        Ok(())
    }

    fn command_answer(&self, id: i64, withdraw: bool) -> Result<Option<String>, StoreError> {
        self.block_on(async {
            if withdraw && self.execute(WITHDRAW_COMMAND, &[&id]).await? == 1 {
                return Ok(None);
            }
            let rows = self.query(COMMAND_ANSWER, &[&id]).await?;
            rows.first()
                .map(|row| {
                    row.try_get::<_, Option<String>>(0)
                        .map_err(|e| self.error(e))
                })
                .transpose()
                .map(Option::flatten)
        })
    }
}
