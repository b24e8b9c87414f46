//! The bundled function runtime: Function Compute's 2016-08-15 API (services, functions, sync and async
//! invocations, signatures) in front of a pool of warm python3 / node handler processes.
//!
//! ```text
//! HTTP (serve: hyper, axum router, api) ─ request id ─ handler peers (peer) ─ auth (fcsign + Date) ─ Content-MD5 ─ handlers
//!     management ──► registry ──► storage (SQLite) + code (content-addressed zips under <data dir>/code)
//!     invoke Sync ──► concurrency limit (429 over it) ──► pool
//!     invoke Async ──► storage queue ──► queue worker (in order per function, retries, max age) ──► pool
//! pool ──► sandbox: clone3 into mount / PID / IPC (/ user) namespaces, pivot_root, run_as ──► python3 / node
//!     versions ──► published snapshots (service + functions + code) and aliases; qualifiers resolve through them
//!     triggers ──► management of every trigger type; timer ──► firings queued as async events (storage queue)
//! HTTP triggers (proxy: /2016-08-15/proxy/...) ─ the trigger's authType and methods ─ limits ──► pool (HTTP call)
//! ```
//!
//! Trust boundaries and where each is held:
//! - uploaded archives: [`code`] unpacks them through folder handles, never following a link, refusing by name
//!   whatever would leave the code folder;
//! - requests: [`auth`] checks signatures and the Date window, [`api`] checks `Content-MD5` against the body;
//!   an anonymous runtime refuses connections from its own handlers ([`peer`]);
//! - handlers: [`pool::sandbox`] gives each instance its own root (system folders read-only, its code at
//!   `/code`, private temporary folders), PID namespace and user; see the README's "The handler sandbox".
//!
//! The daemon runs it in-process with [`Runtime::open`] + [`Runtime::run`] and deploys functions with
//! [`Runtime::deploy`]; `chaintrigger runtime` does the same from the command line. Relative folders in
//! [`RuntimeConfig`] are made absolute (against the current folder) by [`Runtime::open`], before anything else.

pub mod api;
pub mod auth;
pub mod code;
pub mod error;
pub mod functions_dir;
pub mod limits;
pub mod names;
pub mod peer;
pub mod pool;
mod proxy;
pub mod queue;
pub mod registry;
pub mod run_as;
pub mod serve;
pub mod storage;
pub mod triggers;
pub mod versions;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use self::auth::AccessKey;
use self::code::{CodeLimits, CodeStore, StoreAccess};
use self::limits::{AsyncPolicy, FunctionAttributes};
use self::pool::{Pool, PoolConfig};
use self::storage::{SqliteStorage, Storage};

pub use self::pool::{Isolation, Namespaces};
pub use self::registry::FunctionInfo;
pub use self::run_as::RunAs;

/// [`RuntimeConfig::stop_grace`] unless set: a sync call in flight may finish, a stalled client cannot hold a stop.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(3);

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Holds `runtime.sqlite`, `code/` and the pool's files.
    pub data_dir: PathBuf,
    /// Operator-declared functions (`<service>/<function>/function.toml` + code), deployed at start.
    pub functions_dir: Option<PathBuf>,
    /// When set, every request must be signed with it; when not, the runtime is anonymous.
    pub access_key: Option<AccessKey>,
    /// An anonymous runtime refuses non-loopback addresses unless this is set.
    pub allow_anonymous_non_loopback: bool,
    /// Account-wide limit of concurrent invocations (Function Compute's default: 100).
    pub max_concurrency: usize,
    /// Async retry count and maximum event age for functions without their own async configuration.
    pub async_defaults: AsyncPolicy,
    /// Longest wait between two retries of an async event (throttling or function errors).
    pub async_backoff_cap: Duration,
    /// Bounds on uploaded code archives.
    pub code_limits: CodeLimits,
    /// `FC_ACCOUNT_ID` / `context.account_id` handed to handlers.
    pub account_id: String,
    /// `FC_REGION` / `context.region` handed to handlers.
    pub region: String,
    /// How handler processes are run.
    pub pool: PoolConfig,
    /// The shortest `@every` of a timer trigger (a minute, as in Function Compute; tests use less).
    pub timer_min_interval: Duration,
    /// How long a stop waits for the requests in flight (a sync invocation still running, a client still sending
    /// its body) before it closes their connections; an invocation cut short stops its instance. Short enough for
    /// the daemon's stop margin ([`crate::cmd::serve::STOP_MARGIN`]) to cover it.
    pub stop_grace: Duration,
}

impl RuntimeConfig {
    /// Function Compute's defaults, anonymous, with the pool's files under `<data_dir>/pool`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        RuntimeConfig {
            pool: PoolConfig::new(data_dir.join("pool")),
            data_dir,
            functions_dir: None,
            access_key: None,
            allow_anonymous_non_loopback: false,
            max_concurrency: 100,
            async_defaults: AsyncPolicy::default(),
            async_backoff_cap: Duration::from_secs(300),
            code_limits: CodeLimits::default(),
            account_id: "0".into(),
            region: "local".into(),
            timer_min_interval: triggers::schedule::MIN_INTERVAL,
            stop_grace: DEFAULT_STOP_GRACE,
        }
    }
}

/// Why the runtime could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Code(#[from] code::CodeError),
    #[error(transparent)]
    Pool(#[from] pool::PoolError),
    #[error("{path}: {message}")]
    FunctionsDir { path: PathBuf, message: String },
    #[error("cannot deploy {service}/{function}: {message}")]
    Deploy {
        service: String,
        function: String,
        message: String,
    },
    #[error(
        "refusing to serve an anonymous runtime on {0}: configure an access key, listen on loopback, \
         or pass --allow-anonymous-non-loopback"
    )]
    AnonymousNonLoopback(SocketAddr),
    #[error("the runtime's listener failed: {0}")]
    Serve(std::io::Error),
}

/// State shared by the API handlers and the queue worker.
pub(crate) struct Core {
    /// The settings the runtime was opened with.
    config: RuntimeConfig,
    /// Services, functions, async settings, the async queue.
    storage: Arc<dyn Storage>,
    /// Unpacked code per checksum.
    code: CodeStore,
    /// Held while code is committed to the store together with the function record that refers to it, and
    /// while unused code is collected: a collection never removes code a record is about to refer to.
    code_lock: tokio::sync::Mutex<()>,
    /// Warm handler processes.
    pool: Pool,
    /// The account-wide concurrency limit, shared by sync calls and async events.
    limiter: Arc<Semaphore>,
    /// Wakes the queue worker when an event is queued.
    queue_wakeup: Notify,
    /// Wakes the timer scheduler when a trigger is created or changed.
    timer_wakeup: Notify,
    /// `http://<bound address>`: the base of GetFunctionCode's URLs, known once `run` binds.
    base_url: OnceLock<String>,
}

impl Core {
    /// Runs a storage write on a blocking thread, for the writes on the invocation paths (the async enqueue, the
    /// queue's outcomes and reschedules, timer firings). A commit can wait: the one that restarts the WAL syncs
    /// it, which takes as long as the disk's flush (tens of milliseconds on a slow disk), and any commit waits for
    /// another writer. On an async thread that wait would hold up every request the thread serves; here it holds
    /// up only the caller. Reads stay where they are: each hop to a blocking thread costs two thread wake-ups,
    /// which the queue's throughput felt when its reads took them too (a quarter fewer events per second), and
    /// the queue's reads go through a connection of their own, which a waiting commit does not hold.
    async fn stored<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Storage) -> Result<T, storage::StorageError> + Send + 'static,
    ) -> Result<T, storage::StorageError> {
        let storage = self.storage.clone();
        match tokio::task::spawn_blocking(move || call(storage.as_ref())).await {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(_) => Err(storage::StorageError::Stopped),
        }
    }
}

/// A running (or ready to run) runtime. Cheap to clone: every clone is the same runtime.
#[derive(Clone)]
pub struct Runtime {
    core: Arc<Core>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("data_dir", &self.core.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Opens the data directory (database, code store, pool) and deploys the `--functions` folder.
    /// Call inside a tokio runtime.
    pub async fn open(mut config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        // Relative folders are taken from the current folder once, here, before anything checks or uses them:
        // the handler sandbox and the messages then always see the same absolute paths.
        config.data_dir = absolute(&config.data_dir)?;
        if let Some(functions) = &config.functions_dir {
            config.functions_dir = Some(absolute(functions)?);
        }
        if config.pool.data_dir.is_relative() {
            config.pool.data_dir = absolute(&config.pool.data_dir)?;
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| RuntimeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let mut pool_config = config.pool.clone();
        pool_config.hidden.extend(
            [config.data_dir.clone()]
                .into_iter()
                .chain(config.functions_dir.clone()),
        );
        let pool = Pool::new(pool_config)?;
        let storage = SqliteStorage::open(&config.data_dir.join("runtime.sqlite"))?;
        let access = if pool.isolation().private_code() {
            StoreAccess::Private
        } else {
            StoreAccess::Traversable
        };
        restrict_dir(
            &config.data_dir,
            match access {
                StoreAccess::Private => 0o700,
                StoreAccess::Traversable => 0o711,
            },
        )?;
        let code = CodeStore::open(config.data_dir.join("code"), config.code_limits, access)?;
        let core = Arc::new(Core {
            // A limit of 0 would refuse every call; at least one invocation can always run.
            limiter: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            config,
            storage: Arc::new(storage),
            code,
            code_lock: tokio::sync::Mutex::new(()),
            pool,
            queue_wakeup: Notify::new(),
            timer_wakeup: Notify::new(),
            base_url: OnceLock::new(),
        });
        let runtime = Runtime { core };
        if let Some(dir) = runtime.core.config.functions_dir.clone() {
            let deployed = functions_dir::load(&runtime, &dir).await?;
            tracing::info!(count = deployed, dir = %dir.display(), "deployed functions from folder");
        }
        {
            let _code_lock = runtime.core.code_lock.lock().await;
            runtime.core.collect_code();
        }
        Ok(runtime)
    }

    /// Serves the API on `listener` and runs the async queue until `shutdown`, then stops every handler.
    pub async fn run(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), RuntimeError> {
        let address = listener.local_addr().map_err(RuntimeError::Serve)?;
        if self.core.config.access_key.is_none()
            && !self.core.config.allow_anonymous_non_loopback
            && !address.ip().is_loopback()
        {
            return Err(RuntimeError::AnonymousNonLoopback(address));
        }
        // Code URLs must be fetchable: an unspecified bind address (0.0.0.0, ::) is reachable on loopback.
        let mut reachable = address;
        if reachable.ip().is_unspecified() {
            reachable.set_ip(match address {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = self.core.base_url.set(format!("http://{reachable}"));
        tracing::info!(%address, signed = self.core.config.access_key.is_some(), "function runtime listening");
        let worker = tokio::spawn(queue::run(self.core.clone(), shutdown.clone()));
        let timers = tokio::spawn(triggers::timer::run(self.core.clone(), shutdown.clone()));
        let app = api::router(self.core.clone());
        // Anonymous, the runtime tells its handlers' connections apart by their socket's uid (root only: not
        // root, handlers run as the runtime's own uid).
        let handler_uid = match &self.core.config.access_key {
            Some(_) => None,
            None => self.core.pool.isolation().run_as.map(|(uid, _)| uid),
        };
        let listener = peer::PeerListener::new(listener, handler_uid);
        serve::serve(listener, app, shutdown.clone(), self.core.config.stop_grace).await;
        shutdown.cancel();
        let _ = worker.await;
        let _ = timers.await;
        self.core.pool.shutdown().await;
        Ok(())
    }

    /// Creates or updates a function from a code zip, creating its service if needed; the daemon's way to
    /// set up functions without HTTP. Warm instances of an updated function are replaced.
    pub async fn deploy(
        &self,
        service: &str,
        function: &str,
        attributes: FunctionAttributes,
        zip: &[u8],
    ) -> Result<FunctionInfo, RuntimeError> {
        self.core
            .deploy(service, function, attributes, zip)
            .await
            .map_err(|e| RuntimeError::Deploy {
                service: service.to_owned(),
                function: function.to_owned(),
                message: e.message,
            })
    }

    /// The durable store (services, functions, the async queue and its recorded outcomes).
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.core.storage.clone()
    }

    /// Where a function's log is written (`<data dir>/pool/logs/<service>/<function>.log`).
    pub fn log_path(&self, service: &str, function: &str) -> PathBuf {
        self.core.pool.log_path(service, function)
    }

    /// How handlers are isolated on this machine (decided once, when the runtime opened).
    pub fn isolation(&self) -> Isolation {
        self.core.pool.isolation()
    }
}

/// `path` made absolute against the current folder.
fn absolute(path: &std::path::Path) -> Result<PathBuf, RuntimeError> {
    std::path::absolute(path).map_err(|source| RuntimeError::DataDir {
        path: path.to_owned(),
        source,
    })
}

/// Takes away from a folder's mode the bits not in `allowed` (the data folder is the runtime's alone; handlers
/// without namespaces keep the right to traverse it).
fn restrict_dir(path: &std::path::Path, allowed: u32) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt as _;
    let failed = |source| RuntimeError::DataDir {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(failed)?
        .permissions()
        .mode()
        & 0o7777;
    if mode & !allowed != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & allowed))
            .map_err(failed)?;
    }
    Ok(())
}
