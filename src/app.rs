//! The daemon (`chaintrigger serve`), wired: configuration -> SQLite store -> bundled runtime (when configured)
//! -> trigger engine (channel feeds + trigger workers) -> admin API, with one shutdown for all of it.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use tokio_util::sync::CancellationToken;
//! let config = chaintrigger::app::load_config(std::path::Path::new("chaintrigger.toml"))?;
//! let shutdown = CancellationToken::new();
//! let app = chaintrigger::app::App::start(config, Default::default(), shutdown.clone()).await?;
//! println!("admin API on {}", app.admin_addr());
//! // ... shutdown.cancel() from a signal handler ...
//! app.wait().await
//! # }
//! ```
//!
//! Shutdown order: the admin API stops taking requests and the channel feeds stop; each trigger worker
//! finishes the event in flight (and records its outcome) and stops; after [`AppOptions::shutdown_grace`] the
//! workers still pushing are abandoned (their events are pushed again at the next start); then the channels'
//! leases are released (on a shared database, other daemons take the channels over at once); then the bundled
//! runtime stops and the store is closed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminToken};
use crate::config::{self, Config};
use crate::dispatch::EmbeddedRuntime;
use crate::runtime::auth::AccessKey;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store;
use crate::trigger::{Engine, EngineOptions};

/// How long workers may take to finish the events in flight at shutdown by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Daemon settings that are not in the configuration file.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// How long the events in flight may take to finish at shutdown before they are abandoned.
    pub shutdown_grace: Duration,
    /// Engine tuning (the size of each channel's window of recent blocks).
    pub engine: EngineOptions,
    /// Whether SIGHUP reloads the configuration: on for the daemon; tests running several daemons in one
    /// process turn it off.
    pub reload_on_sighup: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            engine: EngineOptions::default(),
            reload_on_sighup: true,
        }
    }
}

/// A running daemon. Listen addresses in the configuration may use port 0: the bound ones are here.
#[derive(Debug)]
pub struct App {
    /// The engine: trigger and channel snapshots, operators' commands, reload.
    engine: Arc<Engine>,
    /// Where the admin API listens.
    admin_addr: SocketAddr,
    /// Where the bundled runtime listens, when it runs.
    runtime_addr: Option<SocketAddr>,
    /// The bundled runtime, when it runs (to deploy functions in process).
    runtime: Option<Runtime>,
    /// Engine tasks: channel feeds, trigger workers.
    tracker: TaskTracker,
    /// The shutdown everyone watches.
    shutdown: CancellationToken,
    /// The admin API's task.
    admin: JoinHandle<Result<(), admin::AdminError>>,
    /// Stops the runtime once the engine is done with it.
    runtime_stop: CancellationToken,
    /// The runtime's task.
    runtime_task: Option<JoinHandle<Result<(), crate::runtime::RuntimeError>>>,
    /// The grace period for events in flight.
    grace: Duration,
}

/// Reads a configuration file and checks it and its environment (files, secrets); the error lists every
/// problem with its file, line and field, as `check-config` does.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let config = Config::load_with_environment(path)?;
    if let Some(format) = config.log_format {
        crate::logging::apply_configured(format);
    }
    Ok(config)
}

/// Runs the daemon with the configuration at `path` until `shutdown` is cancelled, then stops gracefully.
pub async fn run(path: &Path, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = load_config(path)?;
    App::start(config, AppOptions::default(), shutdown)
        .await?
        .wait()
        .await
}

impl App {
    /// Opens the store, starts the bundled runtime (when enabled), the engine and the admin API. Returns once
    /// everything listens; blocks arrive and pushes happen in the background until `shutdown`.
    pub async fn start(
        config: Config,
        options: AppOptions,
        shutdown: CancellationToken,
    ) -> anyhow::Result<App> {
        let database = config.database.get_ref().clone();
        if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the folder of {}", database.display()))?;
        }
        let store = {
            let database = database.clone();
            tokio::task::spawn_blocking(move || store::open(&database)).await??
        };
        tracing::info!(database = %database.display(), "store opened");

        let token = config.admin.token.get_ref().read().map_err(|message| {
            anyhow::anyhow!("{}: admin.token: {message}", config.file().display())
        })?;
        let token = AdminToken::parse(token.expose())
            .with_context(|| format!("{}: admin.token", config.file().display()))?;
        let admin_tls = config.admin_tls_config()?;
        // Remote access only with TLS in hand: the configuration refuses `allow_remote` without it, and this
        // keeps a configuration built by other means from serving the token in clear.
        let exposure = if *config.admin.allow_remote.get_ref() && admin_tls.is_some() {
            admin::Exposure::Remote
        } else {
            admin::Exposure::LoopbackOnly
        };
        let admin_listener = admin::bind(*config.admin.listen.get_ref(), exposure).await?;
        let admin_addr = admin_listener.local_addr()?;
        let admin_options = admin::ServeOptions {
            limits: admin::Limits::from_config(&config.admin),
            tls: admin_tls,
        };

        let runtime_stop = CancellationToken::new();
        let (runtime, runtime_addr, runtime_task, embedded) = if config.runtime.enabled {
            let (runtime, address, task, embedded) =
                start_runtime(&config, runtime_stop.clone()).await?;
            (Some(runtime), Some(address), Some(task), Some(embedded))
        } else {
            (None, None, None, None)
        };

        let tracker = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        let engine = match Engine::start(
            &config,
            store,
            embedded,
            options.engine.clone(),
            tracker.clone(),
            shutdown.clone(),
            hard_stop,
        )
        .await
        {
            Ok(engine) => engine,
            Err(error) => {
                // Nothing else runs yet: stop the runtime rather than leave it serving without a daemon.
                runtime_stop.cancel();
                return Err(anyhow::Error::new(error).context("cannot start the trigger engine"));
            }
        };

        let admin = tokio::spawn(admin::run(
            admin_listener,
            engine.clone(),
            token,
            admin_options,
            shutdown.clone(),
        ));
        if options.reload_on_sighup {
            spawn_sighup_reload(engine.clone(), shutdown.clone());
        }
        tracing::info!(
            admin = %admin_addr,
            runtime = ?runtime_addr,
            channels = config.channels.len(),
            triggers = config.triggers.len(),
            "chaintrigger running"
        );
        Ok(App {
            engine,
            admin_addr,
            runtime_addr,
            runtime,
            tracker,
            shutdown,
            admin,
            runtime_stop,
            runtime_task,
            grace: options.shutdown_grace,
        })
    }

    /// The engine: `triggers()` / `channels()` for progress, and the operators' commands.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the bundled runtime listens, when it runs.
    pub fn runtime_addr(&self) -> Option<SocketAddr> {
        self.runtime_addr
    }

    /// The bundled runtime, when it runs.
    pub fn runtime(&self) -> Option<&Runtime> {
        self.runtime.as_ref()
    }

    /// Waits until the shutdown token is cancelled, then stops everything in order (see the module docs).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        tracing::info!(grace = ?self.grace, "stopping: finishing the events in flight");
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period over: abandoning the events still in flight (they are pushed again at the next start)"
            );
            self.engine.abandon_in_flight();
            self.tracker.wait().await;
        }
        // Every outcome in flight is recorded: the channels can go to other daemons at once.
        self.engine.leave().await;
        let admin = self.admin.await;
        self.runtime_stop.cancel();
        if let Some(task) = self.runtime_task {
            task.await.context("the function runtime task panicked")??;
        }
        admin.context("the admin API task panicked")??;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens the bundled runtime, binds its listener and serves it until `stop`. Without configured credentials the
/// runtime accepts a key made for this process only (random, never written anywhere): the daemon's own
/// `endpoint = "embedded"` pushes sign with it, and nothing else (its handlers included) can use the runtime's
/// API. It stays loopback-only.
async fn start_runtime(
    config: &Config,
    stop: CancellationToken,
) -> anyhow::Result<(
    Runtime,
    SocketAddr,
    JoinHandle<Result<(), crate::runtime::RuntimeError>>,
    EmbeddedRuntime,
)> {
    let settings = &config.runtime;
    let key = settings
        .credentials
        .as_ref()
        .map(|credentials| {
            credentials
                .access_key_secret
                .get_ref()
                .read()
                .map(|secret| (credentials.access_key_id.clone(), secret))
                .map_err(|message| {
                    anyhow::anyhow!(
                        "{}: runtime.credentials.access_key_secret: {message}",
                        config.file().display()
                    )
                })
        })
        .transpose()?;
    if key.is_none() && !settings.listen.ip().is_loopback() {
        anyhow::bail!(
            "{}: runtime.listen = {} is not a loopback address and the runtime has no credentials: anyone who can \
             reach it could run its functions. Listen on 127.0.0.1, or set runtime.credentials",
            config.file().display(),
            settings.listen
        );
    }
    let (access_key_id, access_key_secret) = key.unwrap_or_else(|| {
        use rand::Rng as _;
        let secret: [u8; 32] = rand::rng().random();
        (
            "chaintrigger-daemon".to_owned(),
            config::Secret::new(hex::encode(secret)),
        )
    });
    let mut runtime_config = RuntimeConfig::new(settings.data_dir.get_ref());
    runtime_config.functions_dir = settings.functions.as_ref().map(|f| f.get_ref().clone());
    runtime_config.access_key = Some(AccessKey {
        id: access_key_id.clone(),
        secret: crate::runtime::auth::Secret::new(access_key_secret.expose()),
    });
    if let Some(run_as) = &settings.run_as {
        runtime_config.pool.run_as = Some(run_as.get_ref().resolve().map_err(|error| {
            anyhow::anyhow!("{}: runtime.run_as: {error}", config.file().display())
        })?);
    }
    let runtime = Runtime::open(runtime_config)
        .await
        .context("cannot start the bundled function runtime")?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("the function runtime cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let task = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.run(listener, stop).await }
    });
    let embedded = EmbeddedRuntime {
        endpoint: format!("http://{address}")
            .parse()
            .context("the runtime's address as a URL")?,
        access_key_id,
        access_key_secret,
    };
    Ok((runtime, address, task, embedded))
}

/// Reloads the configuration on SIGHUP (Unix), logging the outcome.
fn spawn_sighup_reload(engine: Arc<Engine>, shutdown: CancellationToken) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload over the admin API instead");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            tracing::info!("SIGHUP: reloading the configuration");
            // This daemon only: a signal goes to one process (the others get their own).
            if let Err(error) = engine.reload_this_daemon().await {
                tracing::error!(%error, "reload refused; the running configuration stays");
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (engine, shutdown);
}
