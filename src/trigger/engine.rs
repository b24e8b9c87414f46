//! The trigger engine: one feed per channel, one worker per trigger, and the operator's commands applied through
//! the state machine. The admin API reaches it through these methods (its `EngineControl` adapter).
//!
//! Commands on a trigger are serialised by its worker slot: a command stops the trigger's worker (the event in
//! flight is abandoned without recording its outcome, so it is pushed again if the trigger resumes from its
//! position), applies the state machine's transition, writes it, and starts a new worker when the new state
//! pushes. Nothing else writes a trigger's record while no worker runs, so a command never races an outcome.
//!
//! Channels are worked on under leases (see [`super::lease`]): the engine follows every configured channel's
//! stream, but runs the workers of a channel's triggers only while this daemon holds the channel's lease. A lease
//! loop heartbeats, renews the leases held every third of the lease time, drops the channels whose lease was lost
//! (their workers are stopped at once), gives back what exceeds the fair share and takes free channels, resuming
//! their triggers from the stored positions. At a clean stop the leases are released once the workers have
//! recorded their events in flight ([`Engine::leave`]), so other daemons take the channels over at their next
//! look. On a SQLite file (one daemon) every lease is granted at the start and never lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::channel::{ChannelFeed, FeedConfig, feed_config};
use super::checkpoint::{Checkpoint, CommandError};
use super::def::{DefinitionError, TriggerDef};
use super::latency::{HistogramSnapshot, LatencyHistogram};
use super::lease::{self, HeldLease};
use super::state::{self, Command, Effect, State};
use super::status::{ChannelSnapshot, DaemonReloaded, Reloaded, Repushed, TriggerSnapshot};
use super::worker::{TriggerShared, Worker};
use crate::config::{self, ChannelName, Config, ConfigError, TriggerName};
use crate::dispatch::{self, Delivery, Dispatcher, EmbeddedRuntime, PushKey};
use crate::store::{
    self, DaemonId, DeadLetter, DeadLetterQuery, Fence, Store, StoreError, TriggerRecord,
};

/// Engine settings that are not in the configuration file.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Recent blocks each channel keeps for its triggers; a trigger further behind reads the chain on its own
    /// stream until it catches up.
    pub window_blocks: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { window_blocks: 64 }
    }
}

/// Why the engine cannot start (or a reload cannot be applied).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Channel(#[from] super::channel::ChannelSetupError),
    #[error(transparent)]
    Trigger(#[from] DefinitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up pushing: {0}")]
    Dispatch(#[from] dispatch::DispatchError),
}

/// Why an operator's request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No trigger has that name.
    #[error("no trigger named `{0}`")]
    NoSuchTrigger(String),
    /// The trigger has no dead letter with that id.
    #[error("trigger `{trigger}` has no dead letter {id}")]
    NoSuchDeadLetter { trigger: TriggerName, id: u64 },
    /// The command was refused (a deleted trigger, a bad start block, an unknown height) or not written.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The daemon is stopping and takes no more commands.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// Another daemon sharing the database works on the trigger's channel (or nobody does right now): the command
    /// must be applied there.
    #[error(
        "trigger `{trigger}` is on channel `{channel}`, which this daemon does not own ({owner}); send the command to the daemon that owns it"
    )]
    NotOwner {
        trigger: TriggerName,
        channel: ChannelName,
        /// Who owns it, as far as the database says.
        owner: String,
    },
    /// The configuration file does not load (the message names file, line and field), or a trigger of it cannot
    /// run; nothing changed.
    #[error("{0}")]
    ConfigRejected(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon owning the trigger's channel refused a forwarded command (or none answered): its words.
    #[error("{message}")]
    Remote { kind: RemoteKind, message: String },
}

/// The class of a refusal that came from another daemon: what the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    NotFound,
    Conflict,
    Invalid,
    Unavailable,
    Internal,
}

impl RemoteKind {
    fn as_str(self) -> &'static str {
        match self {
            RemoteKind::NotFound => "not_found",
            RemoteKind::Conflict => "conflict",
            RemoteKind::Invalid => "invalid",
            RemoteKind::Unavailable => "unavailable",
            RemoteKind::Internal => "internal",
        }
    }

    fn parse(text: &str) -> RemoteKind {
        match text {
            "not_found" => RemoteKind::NotFound,
            "conflict" => RemoteKind::Conflict,
            "invalid" => RemoteKind::Invalid,
            "unavailable" => RemoteKind::Unavailable,
            _ => RemoteKind::Internal,
        }
    }
}

impl RequestError {
    /// The class of the refusal, as the daemon that forwarded the command passes it on.
    pub fn kind(&self) -> RemoteKind {
        match self {
            RequestError::NoSuchTrigger(_) | RequestError::NoSuchDeadLetter { .. } => {
                RemoteKind::NotFound
            }
            RequestError::Command(CommandError::Deleted(_)) | RequestError::NotOwner { .. } => {
                RemoteKind::Conflict
            }
            RequestError::Command(CommandError::Invalid(_)) | RequestError::ConfigRejected(_) => {
                RemoteKind::Invalid
            }
            RequestError::Command(CommandError::NotYet(_)) | RequestError::ShuttingDown => {
                RemoteKind::Unavailable
            }
            RequestError::Command(CommandError::Store(_)) | RequestError::Store(_) => {
                RemoteKind::Internal
            }
            RequestError::Remote { kind, .. } => *kind,
        }
    }
}

/// How long a daemon waits for the owner to answer a forwarded command (the owner looks every
/// `2 * FORWARD_POLL`); also how old a waiting command the owner still applies.
pub const FORWARD_WAIT: Duration = Duration::from_secs(10);

/// How often a daemon waiting for an answer looks for it.
const FORWARD_POLL: Duration = Duration::from_millis(50);

/// What one daemon asks another through the database: a trigger command, a dead letter re-push (both for the
/// owner of the trigger's channel) or a reload (for one daemon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forwarded {
    Command(Command),
    /// Re-push one dead letter, by id.
    Repush(u64),
    /// Re-push every dead letter not yet re-pushed.
    RepushAll,
    /// Reload the configuration file (the receiver's own; it forwards nothing further).
    Reload,
}

/// A forwarded request as written to the database (pure).
fn forwarded_text(forwarded: Forwarded) -> String {
    match forwarded {
        Forwarded::Command(Command::Disable) => "disable".into(),
        Forwarded::Command(Command::Delete) => "delete".into(),
        Forwarded::Command(Command::Enable(state::EnableFrom::Latest)) => "enable latest".into(),
        Forwarded::Command(Command::Enable(state::EnableFrom::Stored)) => "enable stored".into(),
        Forwarded::Command(Command::Enable(state::EnableFrom::Block(block))) => {
            format!("enable block {block}")
        }
        Forwarded::Repush(id) => format!("repush {id}"),
        Forwarded::RepushAll => "repush all".into(),
        Forwarded::Reload => "reload".into(),
    }
}

/// The request a forwarded text names; `None` for anything else (pure).
fn parse_forwarded(text: &str) -> Option<Forwarded> {
    let words: Vec<&str> = text.split(' ').collect();
    Some(match words.as_slice() {
        ["disable"] => Forwarded::Command(Command::Disable),
        ["delete"] => Forwarded::Command(Command::Delete),
        ["enable", "latest"] => Forwarded::Command(Command::Enable(state::EnableFrom::Latest)),
        ["enable", "stored"] => Forwarded::Command(Command::Enable(state::EnableFrom::Stored)),
        ["enable", "block", block] => Forwarded::Command(Command::Enable(
            state::EnableFrom::Block(block.parse().ok()?),
        )),
        ["repush", "all"] => Forwarded::RepushAll,
        ["repush", id] => Forwarded::Repush(id.parse().ok()?),
        ["reload"] => Forwarded::Reload,
        _ => return None,
    })
}

/// The answer to a forwarded request: `ok` with what it produced (re-push outcomes, a reload report), or the
/// refusal's class and message (pure).
fn answer_text(result: Result<serde_json::Value, &RequestError>) -> String {
    match result {
        Ok(value) => serde_json::json!({ "ok": true, "result": value }).to_string(),
        Err(error) => {
            serde_json::json!({ "error": error.kind().as_str(), "message": error.to_string() })
                .to_string()
        }
    }
}

/// What an answer carries: the result when the request was carried out, else the refusal (pure).
fn parse_answer(answer: &str) -> Result<serde_json::Value, RequestError> {
    let mut value: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    if value["ok"] == serde_json::Value::Bool(true) {
        return Ok(value["result"].take());
    }
    Err(RequestError::Remote {
        kind: RemoteKind::parse(value["error"].as_str().unwrap_or_default()),
        message: value["message"].as_str().map_or_else(
            || format!("unreadable answer from the other daemon: {answer}"),
            str::to_owned,
        ),
    })
}

/// Re-push outcomes as forwarded (pure).
fn repushed_json(repushed: &[Repushed]) -> serde_json::Value {
    repushed
        .iter()
        .map(|one| serde_json::json!({ "id": one.id, "error": one.error }))
        .collect()
}

/// Re-push outcomes from a forwarded answer (pure); a garbled one is an internal error.
fn repushed_from_json(value: &serde_json::Value) -> Result<Vec<Repushed>, RequestError> {
    let garbled = || RequestError::Remote {
        kind: RemoteKind::Internal,
        message: format!("unreadable re-push outcome from the channel's owner: {value}"),
    };
    value
        .as_array()
        .ok_or_else(garbled)?
        .iter()
        .map(|one| {
            Ok(Repushed {
                id: one["id"].as_u64().ok_or_else(garbled)?,
                error: one["error"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// A reload report as forwarded (pure).
fn reloaded_json(report: &Reloaded) -> serde_json::Value {
    serde_json::json!({
        "added": report.added,
        "removed": report.removed,
        "changed": report.changed,
        "still_deleted": report.still_deleted,
    })
}

/// A reload report from a forwarded answer (pure); `None` when garbled.
fn reloaded_from_json(value: &serde_json::Value) -> Option<Reloaded> {
    let names = |key: &str| -> Option<Vec<TriggerName>> {
        value[key]
            .as_array()?
            .iter()
            .map(|name| TriggerName::new(name.as_str()?).ok())
            .collect()
    };
    Some(Reloaded {
        added: names("added")?,
        removed: names("removed")?,
        changed: names("changed")?,
        still_deleted: names("still_deleted")?,
        daemons: None,
    })
}

/// What a channel is built from: it restarts on reload when this changes (compared as values, so moving its entry
/// in the file is not a change).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChannelSource {
    /// Put in every envelope of the channel.
    instance_id: config::InstanceId,
    /// The channel's entry.
    channel: config::Channel,
}

/// A running channel feed.
struct ChannelEntry {
    /// The feed its triggers read.
    feed: Arc<ChannelFeed>,
    /// What it was built from, to see changes on reload.
    source: ChannelSource,
    /// Stops its stream.
    stop: CancellationToken,
}

/// A running worker.
/// How a channel's workers stop when the daemon stops working on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// The lease is lost: stop at once, nothing more may be written.
    Abandon,
    /// The lease is still held: finish and record the event in flight, then stop.
    Finish,
}

struct WorkerHandle {
    /// Abandons the worker at once.
    stop: CancellationToken,
    /// Lets the worker finish and record its event in flight, then end (the daemon's shutdown, or a channel
    /// given back while its lease is still held).
    finish: CancellationToken,
    /// Its task, awaited so that a command knows the worker is gone.
    join: JoinHandle<()>,
}

/// A trigger known to the engine.
struct TriggerEntry {
    /// Definition, progress, latency.
    shared: Arc<TriggerShared>,
    /// Its channel's feed.
    feed: Arc<ChannelFeed>,
    /// The worker, when one runs; the lock also serialises commands on the trigger.
    worker: tokio::sync::Mutex<Option<WorkerHandle>>,
}

/// The engine; cheap to share (`Arc`). See the module documentation.
pub struct Engine {
    /// The configuration file, re-read by [`Engine::reload`].
    config_path: PathBuf,
    /// Trigger progress, dead letters.
    store: Arc<dyn Store>,
    /// One connection pool for every push.
    dispatcher: Dispatcher,
    /// The bundled runtime, for `endpoint = "embedded"` targets.
    embedded: Option<EmbeddedRuntime>,
    /// Window size and similar settings.
    options: EngineOptions,
    /// Channel feeds by name.
    channels: Mutex<BTreeMap<ChannelName, ChannelEntry>>,
    /// Triggers by name (deleted ones included, so that they stay deleted).
    triggers: Mutex<BTreeMap<TriggerName, Arc<TriggerEntry>>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Every task the engine spawns, so the daemon can wait for them at shutdown.
    tracker: TaskTracker,
    /// Cancelled when the daemon stops: workers finish their event in flight, feeds stop.
    shutdown: CancellationToken,
    /// Cancelled when the shutdown grace period is over: workers abandon their event in flight.
    hard_stop: CancellationToken,
    /// This process, as lease owner.
    daemon: DaemonId,
    /// How long a lease lasts without renewal.
    lease_ttl: Duration,
    /// The channels whose lease this daemon holds.
    held: Mutex<BTreeMap<ChannelName, Arc<HeldLease>>>,
    /// Ends the lease loop ([`Engine::leave`]).
    lease_stop: CancellationToken,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

/// A configuration's channels and triggers, built (files read, filters compiled, targets resolved) before any of
/// it is applied.
struct Plan {
    /// Channel name -> (what it is built from, feed settings with identity and TLS files read).
    channels: BTreeMap<ChannelName, (ChannelSource, FeedConfig)>,
    /// The triggers in file order.
    triggers: Vec<Arc<TriggerDef>>,
    /// Put in every envelope.
    instance_id: String,
}

impl Engine {
    /// Builds the engine from a checked configuration and starts every channel feed and trigger worker on
    /// `tracker`. Triggers deleted over the admin API stay deleted (logged).
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
        embedded: Option<EmbeddedRuntime>,
        options: EngineOptions,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        hard_stop: CancellationToken,
    ) -> Result<Arc<Engine>, EngineError> {
        let lease_ttl = match config.database.get_ref() {
            config::Database::Postgres(postgres) => postgres.lease_ttl.get(),
            config::Database::Sqlite(_) => config::LeaseTtl::DEFAULT.get(),
        };
        let daemon = DaemonId::generate();
        tracing::info!(daemon = %daemon, shared = store.shared(), ?lease_ttl, "daemon id");
        let engine = Arc::new(Engine {
            config_path: config.file().to_owned(),
            store,
            dispatcher: Dispatcher::new()?,
            embedded,
            options,
            channels: Mutex::new(BTreeMap::new()),
            triggers: Mutex::new(BTreeMap::new()),
            reloading: tokio::sync::Mutex::new(()),
            tracker,
            shutdown,
            hard_stop,
            daemon,
            lease_ttl,
            held: Mutex::new(BTreeMap::new()),
            lease_stop: CancellationToken::new(),
        });
        let plan = engine.plan(config)?;
        let mut records = Vec::with_capacity(plan.triggers.len());
        for def in plan.triggers {
            let record = engine.read_record(&def.name).await?;
            records.push((def, record));
        }
        for (name, (source, channel)) in &plan.channels {
            let positions = start_blocks(name, &records);
            engine.start_channel(name, source, channel, &plan.instance_id, positions);
        }
        for (def, record) in records {
            engine.add_trigger(def, record);
        }
        engine.lease_tick().await;
        let looping = engine.clone();
        tokio::spawn(async move { looping.lease_loop().await });
        if engine.store.shared() {
            let serving = engine.clone();
            tokio::spawn(async move { serving.command_loop().await });
        }
        Ok(engine)
    }

    /// This process as lease owner.
    pub fn daemon_id(&self) -> &DaemonId {
        &self.daemon
    }

    /// The channels this daemon works on now.
    pub fn owned_channels(&self) -> Vec<ChannelName> {
        self.held_lock().keys().cloned().collect()
    }

    fn held_lock(&self) -> MutexGuard<'_, BTreeMap<ChannelName, Arc<HeldLease>>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Renews, gives back and takes leases every third of the lease time until [`Engine::leave`].
    async fn lease_loop(self: Arc<Self>) {
        let period = self.lease_ttl / 3;
        loop {
            tokio::select! {
                _ = self.lease_stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            self.lease_tick().await;
        }
    }

    /// One look at the cluster: heartbeat, renew what is held (dropping what was lost), then unless stopping,
    /// give back and take channels as [`lease::decide`] says.
    async fn lease_tick(&self) {
        let ttl = self.lease_ttl;
        let me = self.daemon.clone();
        let sent = Instant::now();
        if let Err(error) =
            store::blocking(&self.store, move |store| store.heartbeat(&me, ttl)).await
        {
            tracing::warn!(%error, "cannot send this daemon's heartbeat; trying again at the next look");
            return;
        }
        let held: Vec<(ChannelName, i64)> = self
            .held_lock()
            .iter()
            .map(|(channel, lease)| (channel.clone(), lease.fence().generation))
            .collect();
        let me = self.daemon.clone();
        let renewing = held.clone();
        match store::blocking(&self.store, move |store| {
            store.renew_leases(&me, &renewing, ttl)
        })
        .await
        {
            Ok(renewed) => {
                for (channel, generation) in held {
                    if renewed.contains(&channel) {
                        if let Some(lease) = self.held_lock().get(&channel) {
                            lease.renewed(sent, ttl);
                        }
                    } else {
                        tracing::warn!(%channel, generation, "the channel's lease was lost (it expired or another daemon took it): stopping its triggers here");
                        self.drop_channel(&channel, Handover::Abandon).await;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot renew the channels' leases; the triggers pause when they may have expired");
                return;
            }
        }
        if self.shutdown.is_cancelled() || self.lease_stop.is_cancelled() {
            return;
        }
        let view = match store::blocking(&self.store, |store| store.cluster()).await {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(%error, "cannot read the channels' leases; trying again at the next look");
                return;
            }
        };
        let configured: Vec<ChannelName> = self.channels_lock().keys().cloned().collect();
        let held: BTreeSet<ChannelName> = self.held_lock().keys().cloned().collect();
        let decision = lease::decide(&self.daemon, &configured, &held, &view);
        if !decision.release.is_empty() {
            for channel in &decision.release {
                tracing::info!(%channel, "giving the channel back (beyond this daemon's fair share, or no longer configured)");
                self.drop_channel(channel, Handover::Finish).await;
            }
            let (me, channels) = (self.daemon.clone(), decision.release.clone());
            if let Err(error) = store::blocking(&self.store, move |store| {
                store.release_leases(&me, &channels)
            })
            .await
            {
                tracing::warn!(%error, "cannot release the leases; they expire on their own");
            }
        }
        let mut taken = 0;
        for channel in decision.candidates {
            if taken >= decision.want || self.shutdown.is_cancelled() {
                break;
            }
            let sent = Instant::now();
            let (me, asked) = (self.daemon.clone(), channel.clone());
            match store::blocking(&self.store, move |store| {
                store.acquire_lease(&asked, &me, ttl)
            })
            .await
            {
                Ok(Some(generation)) => {
                    taken += 1;
                    let lease = HeldLease::new(
                        Fence {
                            channel: channel.clone(),
                            owner: self.daemon.clone(),
                            generation,
                        },
                        sent,
                        self.store.shared().then_some(ttl),
                    );
                    tracing::info!(%channel, generation, "took the channel's lease: its triggers resume from their stored positions");
                    self.take_channel(&channel, Arc::new(lease)).await;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%channel, %error, "cannot take the channel's lease; trying again at the next look");
                    break;
                }
            }
        }
    }

    /// Starts working on a channel whose lease was just taken: each trigger resumes from its stored record.
    async fn take_channel(&self, channel: &ChannelName, lease: Arc<HeldLease>) {
        self.held_lock().insert(channel.clone(), lease);
        for entry in self.channel_entries(channel) {
            let mut slot = entry.worker.lock().await;
            if let Some(worker) = slot.take() {
                worker.stop.cancel();
                let _ = worker.join.await;
            }
            let record = match self.read_record(&entry.shared.def.name).await {
                Ok(record) => record,
                Err(error) => {
                    tracing::error!(trigger = %entry.shared.def.name, %error, "cannot read the trigger's stored progress; it starts at the next look at the leases");
                    continue;
                }
            };
            entry
                .shared
                .checkpoint
                .resume(&entry.shared.def, record.as_ref());
            let state = entry.shared.checkpoint.state();
            if (state.pushes() || record.is_none()) && !self.shutdown.is_cancelled() {
                *slot = self.spawn_worker(&entry);
            }
        }
    }

    /// Stops working on a channel, then refuses its triggers' writes from here. A lost lease abandons the events
    /// in flight at once (the next owner pushes them again); a channel given back while its lease is held lets
    /// each worker finish and record its event in flight first, within a third of the lease time (then abandons
    /// it), so a rebalance pushes nothing twice.
    async fn drop_channel(&self, channel: &ChannelName, handover: Handover) {
        self.held_lock().remove(channel);
        for entry in self.channel_entries(channel) {
            let mut slot = entry.worker.lock().await;
            if let Some(mut worker) = slot.take() {
                let finished = handover == Handover::Finish && {
                    worker.finish.cancel();
                    tokio::time::timeout(self.lease_ttl / 3, &mut worker.join)
                        .await
                        .is_ok()
                };
                if !finished {
                    worker.stop.cancel();
                    let _ = worker.join.await;
                }
            }
            entry.shared.checkpoint.hold(None);
        }
    }

    /// The triggers of a channel.
    fn channel_entries(&self, channel: &ChannelName) -> Vec<Arc<TriggerEntry>> {
        self.triggers_lock()
            .values()
            .filter(|entry| &entry.shared.def.channel == channel)
            .cloned()
            .collect()
    }

    /// Gives every lease back and leaves the cluster: called once the workers have stopped at shutdown (their
    /// events in flight recorded), so the other daemons take the channels over at their next look.
    pub async fn leave(&self) {
        self.lease_stop.cancel();
        let channels: Vec<ChannelName> = self.held_lock().keys().cloned().collect();
        for channel in &channels {
            self.drop_channel(channel, Handover::Finish).await;
        }
        let me = self.daemon.clone();
        let released = store::blocking(&self.store, move |store| {
            store.release_leases(&me, &channels)?;
            store.leave(&me)
        })
        .await;
        match released {
            Ok(()) => tracing::info!("leases released: other daemons take the channels over"),
            Err(error) => {
                tracing::warn!(%error, "cannot release the leases at stop; they expire on their own")
            }
        }
    }

    /// The configuration file the engine was started from (and reloads).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Stops every worker at once (the end of the shutdown grace period): events in flight are abandoned and
    /// pushed again at the next start.
    pub fn abandon_in_flight(&self) {
        self.hard_stop.cancel();
    }

    fn plan(&self, config: &Config) -> Result<Plan, EngineError> {
        let instance_id = config.instance_id.to_string();
        let channels = config
            .channels
            .iter()
            .map(|channel| {
                let source = ChannelSource {
                    instance_id: config.instance_id.clone(),
                    channel: channel.clone(),
                };
                Ok((
                    channel.name.get_ref().clone(),
                    (source, feed_config(channel)?),
                ))
            })
            .collect::<Result<_, EngineError>>()?;
        let triggers = config
            .triggers
            .iter()
            .map(|trigger| TriggerDef::build(trigger, self.embedded.as_ref()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            channels,
            triggers,
            instance_id,
        })
    }

    fn start_channel(
        &self,
        name: &ChannelName,
        source: &ChannelSource,
        channel: &FeedConfig,
        instance_id: &str,
        positions: Vec<u64>,
    ) {
        let feed = Arc::new(ChannelFeed::new(
            name.clone(),
            channel.clone(),
            instance_id.to_owned(),
            self.options.window_blocks,
        ));
        let stop = self.shutdown.child_token();
        self.tracker.spawn(
            feed.clone()
                .run(positions, stop.clone())
                .instrument(tracing::info_span!("channel", channel = %name)),
        );
        tracing::info!(channel = %name, "following channel");
        self.channels_lock().insert(
            name.clone(),
            ChannelEntry {
                feed,
                source: source.clone(),
                stop,
            },
        );
    }

    async fn read_record(&self, name: &TriggerName) -> Result<Option<TriggerRecord>, StoreError> {
        let name = name.clone();
        store::blocking(&self.store, move |store| store.trigger(&name)).await
    }

    /// Registers a trigger and starts its worker unless its stored state says otherwise.
    fn add_trigger(&self, def: Arc<TriggerDef>, record: Option<TriggerRecord>) {
        let feed = self
            .channels_lock()
            .get(&def.channel)
            .map(|entry| entry.feed.clone())
            .expect("the configuration checks that every trigger's channel is declared");
        let checkpoint = Checkpoint::new(&def, self.store.clone(), record.as_ref());
        let progress = checkpoint.progress();
        let state = progress.status.state;
        let _span = trigger_span(&def).entered();
        match state {
            State::Deleted => tracing::warn!(
                "trigger was deleted over the admin API and stays deleted; remove it from the configuration file"
            ),
            State::Failed | State::Disabled => {
                tracing::info!(%state, position = %progress.position, "trigger not started: enable it over the admin API")
            }
            State::Running | State::Exception => {
                tracing::info!(%state, position = %progress.position, recorded = progress.recorded, "starting trigger")
            }
        }
        let entry = Arc::new(TriggerEntry {
            shared: Arc::new(TriggerShared {
                def: def.clone(),
                checkpoint,
                latency: LatencyHistogram::default(),
            }),
            feed,
            worker: tokio::sync::Mutex::new(None),
        });
        // A new trigger's worker also creates its record, even when it starts Disabled; only on a channel this
        // daemon holds.
        let worker = if state.pushes() || record.is_none() {
            self.spawn_worker(&entry)
        } else {
            None
        };
        *entry
            .worker
            .try_lock()
            .expect("nobody else knows the entry yet") = worker;
        self.triggers_lock().insert(def.name.clone(), entry);
    }

    /// Starts the trigger's worker under its channel's lease; `None` when this daemon does not hold it.
    fn spawn_worker(&self, entry: &TriggerEntry) -> Option<WorkerHandle> {
        let lease = self.held_lock().get(&entry.shared.def.channel).cloned()?;
        entry.shared.checkpoint.hold(Some(lease));
        let stop = self.hard_stop.child_token();
        let finish = self.shutdown.child_token();
        let worker = Worker {
            shared: entry.shared.clone(),
            feed: entry.feed.clone(),
            dispatcher: self.dispatcher.clone(),
            stop: stop.clone(),
            shutdown: finish.clone(),
        };
        // Every line the worker logs (its checkpoint's and catch-up stream's included) names trigger and channel.
        let span = trigger_span(&entry.shared.def);
        Some(WorkerHandle {
            stop,
            finish,
            join: self.tracker.spawn(worker.run().instrument(span)),
        })
    }

    fn channels_lock(&self) -> MutexGuard<'_, BTreeMap<ChannelName, ChannelEntry>> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn triggers_lock(&self) -> MutexGuard<'_, BTreeMap<TriggerName, Arc<TriggerEntry>>> {
        self.triggers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The trigger named `name`, deleted ones included.
    fn entry(&self, name: &str) -> Result<Arc<TriggerEntry>, RequestError> {
        let not_found = || RequestError::NoSuchTrigger(name.to_owned());
        let name = TriggerName::new(name).map_err(|_| not_found())?;
        self.triggers_lock()
            .get(&name)
            .cloned()
            .ok_or_else(not_found)
    }

    /// The trigger named `name`, refusing a deleted one.
    fn live_entry(&self, name: &str) -> Result<Arc<TriggerEntry>, RequestError> {
        let entry = self.entry(name)?;
        if entry.shared.checkpoint.state() == State::Deleted {
            return Err(CommandError::Deleted(entry.shared.def.name.clone()).into());
        }
        Ok(entry)
    }

    /// A trigger's snapshot: its progress in memory when this daemon owns its channel, else as stored by the
    /// owner (from `others`, when read).
    fn snapshot_of(&self, entry: &TriggerEntry, others: Option<&Others>) -> TriggerSnapshot {
        let def = &entry.shared.def;
        let mut progress = entry.shared.checkpoint.progress();
        let owned = self.held_lock().contains_key(&def.channel);
        let owner = if owned {
            Some(self.daemon.to_string())
        } else {
            others.and_then(|others| others.owners.get(&def.channel).cloned())
        };
        if !owned && let Some(record) = others.and_then(|others| others.records.get(&def.name)) {
            let retries = progress.retries;
            progress = super::checkpoint::Progress::from_record(record);
            progress.retries = retries;
        }
        let chain_height = entry.feed.height();
        // A new `latest` trigger starts at the chain height it first sees: show that rather than block 0.
        if let (false, config::StartPosition::Latest, Some(height)) =
            (progress.recorded, def.start, chain_height)
        {
            progress.position = state::Position::block_start(height);
        }
        TriggerSnapshot {
            name: def.name.clone(),
            channel: def.channel.clone(),
            selector: def.selector,
            target: def.target_label.clone(),
            threshold: def.threshold,
            progress,
            chain_height,
            owner,
        }
    }

    /// Applies an operator command to a trigger: stop its worker (the event in flight is abandoned and pushed
    /// again if the trigger resumes from its position), apply the transition through the trigger's checkpoint,
    /// start a worker when the transition says so. Returns the trigger's snapshot afterwards.
    async fn command(&self, name: &str, command: Command) -> Result<TriggerSnapshot, RequestError> {
        if self.shutdown.is_cancelled() {
            return Err(RequestError::ShuttingDown);
        }
        let entry = self.live_entry(name)?;
        if self.forwards(&entry) {
            return self.forward(&entry, command).await;
        }
        self.command_here(&entry, command).await
    }

    /// Applies a command on a trigger of a channel this daemon owns (refused with [`RequestError::NotOwner`]
    /// otherwise).
    async fn command_here(
        &self,
        entry: &Arc<TriggerEntry>,
        command: Command,
    ) -> Result<TriggerSnapshot, RequestError> {
        self.check_owner(entry).await?;
        let span = trigger_span(&entry.shared.def);
        self.command_quiescent(entry, command)
            .instrument(span)
            .await
    }

    /// Sends a command to the owner of the trigger's channel through the database and waits for its answer (at
    /// most [`FORWARD_WAIT`]; then the command is withdrawn, so it is never applied late). Returns the trigger as
    /// the owner stored it.
    async fn forward(
        &self,
        entry: &Arc<TriggerEntry>,
        command: Command,
    ) -> Result<TriggerSnapshot, RequestError> {
        self.forward_to_owner(entry, Forwarded::Command(command))
            .await?;
        let others = self.others(std::slice::from_ref(entry)).await;
        Ok(self.snapshot_of(entry, others.as_ref()))
    }

    /// Sends a request to the owner of the trigger's channel and returns what its answer carries.
    async fn forward_to_owner(
        &self,
        entry: &TriggerEntry,
        forwarded: Forwarded,
    ) -> Result<serde_json::Value, RequestError> {
        let def = &entry.shared.def;
        let (channel, trigger, text) = (
            def.channel.clone(),
            def.name.to_string(),
            forwarded_text(forwarded),
        );
        tracing::info!(trigger = %def.name, channel = %def.channel, command = %text, "forwarding the command to the channel's owner");
        let id = store::blocking(&self.store, move |store| {
            store.forward_command(&channel, &trigger, &text)
        })
        .await?;
        self.await_answer(id).await.unwrap_or_else(|| {
            Err(RequestError::Remote {
                kind: RemoteKind::Unavailable,
                message: format!(
                    "no daemon owning channel `{}` answered within {FORWARD_WAIT:?}; the command was withdrawn, nothing changed (try again once a daemon owns the channel)",
                    def.channel
                ),
            })
        })
    }

    /// Waits for the answer to forwarded request `id` (at most [`FORWARD_WAIT`], then withdraws it): what it
    /// carries, `None` when nobody answered.
    async fn await_answer(&self, id: i64) -> Option<Result<serde_json::Value, RequestError>> {
        let deadline = Instant::now() + FORWARD_WAIT;
        loop {
            tokio::time::sleep(FORWARD_POLL).await;
            let last = Instant::now() >= deadline;
            match store::blocking(&self.store, move |store| store.command_answer(id, last)).await {
                Ok(Some(answer)) => return Some(parse_answer(&answer)),
                Ok(None) if last => return None,
                Ok(None) => {}
                Err(error) => return Some(Err(error.into())),
            }
        }
    }

    /// Carries out a request another daemon forwarded here (this daemon owns the trigger's channel, or the
    /// request is for this daemon): what its answer carries.
    async fn apply_forwarded(
        &self,
        trigger: &str,
        forwarded: Forwarded,
    ) -> Result<serde_json::Value, RequestError> {
        match forwarded {
            Forwarded::Reload => self
                .reload_this_daemon()
                .await
                .map(|report| reloaded_json(&report)),
            Forwarded::Command(command) => {
                let entry = self.live_entry(trigger)?;
                self.command_here(&entry, command).await?;
                Ok(serde_json::Value::Null)
            }
            Forwarded::Repush(id) => {
                let entry = self.live_entry(trigger)?;
                self.check_owner(&entry).await?;
                let repushed = self.repush_one_here(&entry, id).await?;
                Ok(repushed_json(std::slice::from_ref(&repushed)))
            }
            Forwarded::RepushAll => {
                let entry = self.live_entry(trigger)?;
                self.check_owner(&entry).await?;
                let repushed = self.repush_all_here(&entry).await?;
                Ok(repushed_json(&repushed))
            }
        }
    }

    /// Applies the requests other daemons forwarded for the channels this daemon owns, or for this daemon, and
    /// answers them.
    async fn serve_forwarded(&self) {
        let held: Vec<ChannelName> = self.held_lock().keys().cloned().collect();
        let daemon = self.daemon.clone();
        let pending = match store::blocking(&self.store, move |store| {
            store.pending_commands(&daemon, &held, FORWARD_WAIT)
        })
        .await
        {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(%error, "cannot read the commands forwarded by other daemons; trying again");
                return;
            }
        };
        for forwarded in pending {
            let result = match parse_forwarded(&forwarded.command) {
                None => Err(RequestError::Remote {
                    kind: RemoteKind::Invalid,
                    message: format!("unknown forwarded command `{}`", forwarded.command),
                }),
                Some(request) => self.apply_forwarded(&forwarded.trigger, request).await,
            };
            tracing::info!(trigger = %forwarded.trigger, command = %forwarded.command, ok = result.is_ok(), "applied a command forwarded by another daemon");
            let answer = answer_text(result.as_ref().map(Clone::clone));
            let id = forwarded.id;
            if let Err(error) =
                store::blocking(&self.store, move |store| store.answer_command(id, &answer)).await
            {
                tracing::warn!(%error, "cannot answer a forwarded command; its sender gives up after a while");
            }
        }
    }

    /// Serves forwarded commands until [`Engine::leave`] (on a shared database only).
    async fn command_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.lease_stop.cancelled() => return,
                _ = tokio::time::sleep(FORWARD_POLL * 2) => {}
            }
            if !self.shutdown.is_cancelled() {
                self.serve_forwarded().await;
            }
        }
    }

    /// Refuses a command on a trigger whose channel this daemon does not hold, naming who does.
    async fn check_owner(&self, entry: &TriggerEntry) -> Result<(), RequestError> {
        let channel = &entry.shared.def.channel;
        if self.held_lock().contains_key(channel) {
            return Ok(());
        }
        let view = store::blocking(&self.store, |store| store.cluster()).await?;
        let owner = view
            .leases
            .iter()
            .find(|lease| &lease.channel == channel && lease.live)
            .map_or_else(
                || "no daemon owns it right now".to_owned(),
                |lease| format!("daemon {} owns it", lease.owner),
            );
        Err(RequestError::NotOwner {
            trigger: entry.shared.def.name.clone(),
            channel: channel.clone(),
            owner,
        })
    }

    async fn command_quiescent(
        &self,
        entry: &Arc<TriggerEntry>,
        command: Command,
    ) -> Result<TriggerSnapshot, RequestError> {
        let mut slot = entry.worker.lock().await;
        if let Some(worker) = slot.take() {
            worker.stop.cancel();
            let _ = worker.join.await;
        }
        let applied = entry
            .shared
            .checkpoint
            .command(&entry.shared.def, command, entry.feed.height())
            .await;
        let start = match &applied {
            Ok(transition) => transition.effects.contains(&Effect::StartWorker),
            // Nothing changed: the trigger goes on as it was.
            Err(_) => entry.shared.checkpoint.state().pushes(),
        };
        if start && !self.shutdown.is_cancelled() {
            *slot = self.spawn_worker(entry);
        }
        applied?;
        Ok(self.snapshot_of(entry, None))
    }

    /// Stops a trigger's worker and forgets the trigger (its stored record stays).
    async fn remove_trigger(&self, name: &TriggerName) {
        let entry = self.triggers_lock().remove(name);
        if let Some(entry) = entry
            && let Some(worker) = entry.worker.lock().await.take()
        {
            worker.stop.cancel();
            let _ = worker.join.await;
        }
    }

    async fn reload_from(&self, config: &Config) -> Result<Reloaded, RequestError> {
        let plan = self
            .plan(config)
            .map_err(|e| RequestError::ConfigRejected(e.to_string()))?;
        let mut report = Reloaded::default();

        // Channels: new ones start, changed ones restart (with their triggers), removed ones stop.
        let restarted_channels: Vec<ChannelName> = self
            .channels_lock()
            .iter()
            .filter(|(name, entry)| {
                plan.channels.get(*name).map(|(source, _)| source) != Some(&entry.source)
            })
            .map(|(name, _)| name.clone())
            .collect();
        // Triggers on a channel that goes away or restarts stop first.
        let current: Vec<(TriggerName, Arc<TriggerEntry>)> = self
            .triggers_lock()
            .iter()
            .map(|(name, entry)| (name.clone(), entry.clone()))
            .collect();
        let planned: BTreeMap<&TriggerName, &Arc<TriggerDef>> =
            plan.triggers.iter().map(|def| (&def.name, def)).collect();
        let mut to_start = Vec::new();
        // Triggers whose `enabled` setting the file changed: applied as the operator's command would be.
        let mut toggled = Vec::new();
        for (name, entry) in &current {
            let channel_restarts = restarted_channels.contains(&entry.shared.def.channel);
            let deleted = entry.shared.checkpoint.state() == State::Deleted;
            match planned.get(name) {
                None => {
                    self.remove_trigger(name).await;
                    report.removed.push(name.clone());
                }
                Some(def) if channel_restarts || def.source != entry.shared.def.source => {
                    self.remove_trigger(name).await;
                    if deleted {
                        report.still_deleted.push(name.clone());
                    } else {
                        report.changed.push(name.clone());
                        if def.enabled != entry.shared.def.enabled {
                            toggled.push((name.clone(), def.enabled));
                        }
                    }
                    to_start.push(Arc::clone(def));
                }
                Some(_) if deleted => report.still_deleted.push(name.clone()),
                Some(_) => {}
            }
        }
        for name in &restarted_channels {
            if let Some(entry) = self.channels_lock().remove(name) {
                entry.stop.cancel();
            }
        }
        for (name, (source, channel)) in &plan.channels {
            if !self.channels_lock().contains_key(name) {
                let mut records = Vec::new();
                for def in plan.triggers.iter().filter(|def| &def.channel == name) {
                    records.push((def.clone(), self.read_record(&def.name).await?));
                }
                let positions = start_blocks(name, &records);
                self.start_channel(name, source, channel, &plan.instance_id, positions);
            }
        }
        for def in &plan.triggers {
            if !current.iter().any(|(name, _)| name == &def.name) {
                to_start.push(def.clone());
            }
        }
        for def in to_start {
            let record = self.read_record(&def.name).await?;
            let is_new = !current.iter().any(|(name, _)| name == &def.name);
            if is_new {
                if record.as_ref().is_some_and(store::is_deleted) {
                    report.still_deleted.push(def.name.clone());
                } else {
                    report.added.push(def.name.clone());
                }
            }
            self.add_trigger(def, record);
        }
        for (name, enabled) in toggled {
            let command = if enabled {
                Command::Enable(state::EnableFrom::Latest)
            } else {
                Command::Disable
            };
            let state = self
                .triggers_lock()
                .get(&name)
                .map(|entry| entry.shared.checkpoint.state());
            let needed = match state {
                Some(State::Disabled) => enabled,
                Some(State::Running | State::Exception | State::Failed) => !enabled,
                Some(State::Deleted) | None => false,
            };
            if needed && let Err(error) = self.command(name.as_str(), command).await {
                tracing::warn!(trigger = %name, %error, "cannot apply the changed `enabled` setting; use the admin API");
            }
        }
        for list in [
            &mut report.added,
            &mut report.removed,
            &mut report.changed,
            &mut report.still_deleted,
        ] {
            list.sort();
        }
        tracing::info!(added = ?report.added, removed = ?report.removed, changed = ?report.changed, still_deleted = ?report.still_deleted, "configuration reloaded");
        Ok(report)
    }

    async fn repush(
        &self,
        entry: &TriggerEntry,
        letter: DeadLetter,
    ) -> Result<Repushed, RequestError> {
        let def = &entry.shared.def;
        let id = u64::try_from(letter.id).unwrap_or_default();
        let key = PushKey {
            trigger: def.name.as_str(),
            channel: def.channel.as_str(),
            block: letter.letter.position.block,
            event_index: letter.letter.position.index,
            output: usize::try_from(letter.letter.output).unwrap_or(usize::MAX),
            envelope_id: &letter.letter.event_id,
        };
        let delivery = self
            .dispatcher
            .deliver(&def.target, &letter.letter.payload, &key, &def.retry)
            .await;
        let error = match delivery {
            Delivery::Delivered { .. } => {
                let stored_id = letter.id;
                store::blocking(&self.store, move |store| {
                    store.mark_repushed(stored_id, SystemTime::now())
                })
                .await?;
                tracing::info!(trigger = %def.name, dead_letter = id, event = %letter.letter.event_id, "dead letter re-pushed");
                None
            }
            Delivery::Discarded { last_error, .. } => Some(last_error),
            Delivery::Blocked { reason, .. } => Some(reason),
        };
        Ok(Repushed { id, error })
    }

    /// Every trigger that is not deleted, by name.
    /// With the owner of each channel, and the progress of triggers on channels other daemons own as stored.
    pub async fn triggers(&self) -> Vec<TriggerSnapshot> {
        let entries: Vec<Arc<TriggerEntry>> = self.triggers_lock().values().cloned().collect();
        let others = self.others(&entries).await;
        entries
            .iter()
            .map(|entry| self.snapshot_of(entry, others.as_ref()))
            .filter(|snapshot| snapshot.progress.status.state != State::Deleted)
            .collect()
    }

    /// What the database says of the triggers whose channels this daemon does not own, when there are any.
    async fn others(&self, entries: &[Arc<TriggerEntry>]) -> Option<Others> {
        let held = self.held_lock().keys().cloned().collect::<BTreeSet<_>>();
        if entries
            .iter()
            .all(|entry| held.contains(&entry.shared.def.channel))
        {
            return None;
        }
        let read = store::blocking(&self.store, |store| {
            Ok((store.triggers()?, store.cluster()?))
        })
        .await;
        match read {
            Ok((records, view)) => Some(Others {
                records: records
                    .into_iter()
                    .map(|record| (record.name.clone(), record))
                    .collect(),
                owners: view
                    .leases
                    .into_iter()
                    .filter(|lease| lease.live)
                    .map(|lease| (lease.channel, lease.owner.to_string()))
                    .collect(),
            }),
            Err(error) => {
                tracing::warn!(%error, "cannot read the other daemons' progress; showing what this daemon last knew");
                None
            }
        }
    }

    /// Every trigger the store keeps as deleted, by name, with whether its entry is still in the configuration
    /// (it then stays deleted across restarts and reloads).
    pub async fn deleted_triggers(&self) -> Result<Vec<(TriggerRecord, bool)>, RequestError> {
        let records = store::blocking(&self.store, |store| store.triggers()).await?;
        let configured = self.triggers_lock();
        Ok(records
            .into_iter()
            .filter(|record| record.status.state == State::Deleted)
            .map(|record| {
                let in_file = configured.contains_key(&record.name);
                (record, in_file)
            })
            .collect())
    }

    /// One trigger, unless it is unknown or deleted.
    pub async fn trigger(&self, name: &str) -> Option<TriggerSnapshot> {
        let entry = self.entry(name).ok()?;
        let others = self.others(std::slice::from_ref(&entry)).await;
        Some(self.snapshot_of(&entry, others.as_ref()))
            .filter(|snapshot| snapshot.progress.status.state != State::Deleted)
    }

    /// Starts (or restarts) pushing the trigger's events from `from`, with its failure count reset.
    pub async fn enable(
        &self,
        name: &str,
        from: state::EnableFrom,
    ) -> Result<TriggerSnapshot, RequestError> {
        self.command(name, Command::Enable(from)).await
    }

    /// Stops pushing the trigger's events; those meanwhile are dropped.
    pub async fn disable(&self, name: &str) -> Result<TriggerSnapshot, RequestError> {
        self.command(name, Command::Disable).await
    }

    /// Deletes the trigger for good (it stays deleted across restarts while its entry remains in the file).
    pub async fn delete(&self, name: &str) -> Result<(), RequestError> {
        self.command(name, Command::Delete).await.map(|_| ())
    }

    /// The trigger's dead letters with an id above `after`, oldest first, at most `limit`.
    pub async fn dead_letters(
        &self,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, RequestError> {
        let entry = self.live_entry(name)?;
        let trigger = entry.shared.def.name.clone();
        let stored = store::blocking(&self.store, move |store| {
            store.dead_letters(&DeadLetterQuery {
                trigger: Some(&trigger),
                include_repushed: true,
                limit: None,
            })
        })
        .await?;
        Ok(stored
            .into_iter()
            .filter(|letter| {
                after.is_none_or(|after| letter.id > i64::try_from(after).unwrap_or(i64::MAX))
            })
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect())
    }

    /// Pushes one dead letter of the trigger again, to its current target with its retry policy. On a shared
    /// database, the owner of the trigger's channel does it (forwarded when that is another daemon).
    pub async fn repush_dead_letter(&self, name: &str, id: u64) -> Result<Repushed, RequestError> {
        let entry = self.live_entry(name)?;
        if self.forwards(&entry) {
            let answer = self.forward_to_owner(&entry, Forwarded::Repush(id)).await?;
            return repushed_from_json(&answer)?
                .into_iter()
                .next()
                .ok_or_else(|| RequestError::Remote {
                    kind: RemoteKind::Internal,
                    message: "the channel's owner reported no re-push".into(),
                });
        }
        self.repush_one_here(&entry, id).await
    }

    /// [`Engine::repush_dead_letter`] on this daemon.
    async fn repush_one_here(
        &self,
        entry: &Arc<TriggerEntry>,
        id: u64,
    ) -> Result<Repushed, RequestError> {
        let not_found = || RequestError::NoSuchDeadLetter {
            trigger: entry.shared.def.name.clone(),
            id,
        };
        let stored_id = i64::try_from(id).map_err(|_| not_found())?;
        let letter = store::blocking(&self.store, move |store| store.dead_letter(stored_id))
            .await?
            .filter(|letter| letter.trigger == entry.shared.def.name)
            .ok_or_else(not_found)?;
        self.repush(entry, letter).await
    }

    /// Pushes every dead letter of the trigger not yet re-pushed again, oldest first (on the channel's owner, as
    /// [`Engine::repush_dead_letter`]).
    pub async fn repush_all_dead_letters(&self, name: &str) -> Result<Vec<Repushed>, RequestError> {
        let entry = self.live_entry(name)?;
        if self.forwards(&entry) {
            let answer = self.forward_to_owner(&entry, Forwarded::RepushAll).await?;
            return repushed_from_json(&answer);
        }
        self.repush_all_here(&entry).await
    }

    /// [`Engine::repush_all_dead_letters`] on this daemon.
    async fn repush_all_here(
        &self,
        entry: &Arc<TriggerEntry>,
    ) -> Result<Vec<Repushed>, RequestError> {
        let trigger = entry.shared.def.name.clone();
        let letters = store::blocking(&self.store, move |store| {
            store.dead_letters(&DeadLetterQuery {
                trigger: Some(&trigger),
                include_repushed: false,
                limit: None,
            })
        })
        .await?;
        let mut results = Vec::with_capacity(letters.len());
        for letter in letters {
            results.push(self.repush(entry, letter).await?);
        }
        Ok(results)
    }

    /// Whether a request on the trigger goes to another daemon: on a shared database, when this one does not own
    /// its channel.
    fn forwards(&self, entry: &TriggerEntry) -> bool {
        self.store.shared() && !self.held_lock().contains_key(&entry.shared.def.channel)
    }

    /// Re-reads the configuration file and applies the differences; a file that does not load changes nothing.
    /// On a shared database, every other live daemon (by its heartbeat) is then asked to reload its own file, and
    /// the report says how each did (waiting at most [`FORWARD_WAIT`] for all). A file that does not load here is
    /// refused before anything is sent to the others.
    pub async fn reload(&self) -> Result<Reloaded, RequestError> {
        let mut report = self.reload_this_daemon().await?;
        if self.store.shared() {
            report.daemons = Some(self.reload_others().await);
        }
        Ok(report)
    }

    /// Asks every other live daemon to reload, all at once, and collects their answers.
    async fn reload_others(&self) -> Vec<DaemonReloaded> {
        let view = match store::blocking(&self.store, |store| store.cluster()).await {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(%error, "cannot read which daemons are live; reloaded this one only");
                return Vec::new();
            }
        };
        let others = view
            .daemons
            .into_iter()
            .filter(|record| record.live && record.id != self.daemon)
            .map(|record| async move {
                let daemon = record.id.to_string();
                let outcome = self.reload_other(record.id).await;
                DaemonReloaded { daemon, outcome }
            });
        futures::future::join_all(others).await
    }

    /// Asks one other daemon to reload: its report, or why not.
    async fn reload_other(&self, daemon: DaemonId) -> Result<Reloaded, String> {
        let to = daemon.clone();
        let text = forwarded_text(Forwarded::Reload);
        let id = store::blocking(&self.store, move |store| {
            store.forward_to_daemon(&to, &text)
        })
        .await
        .map_err(|error| error.to_string())?;
        match self.await_answer(id).await {
            None => Err(format!(
                "daemon {daemon} did not answer within {FORWARD_WAIT:?}; the reload was withdrawn"
            )),
            Some(Err(error)) => Err(error.to_string()),
            Some(Ok(answer)) => reloaded_from_json(&answer)
                .ok_or_else(|| format!("unreadable reload report from daemon {daemon}: {answer}")),
        }
    }

    /// Re-reads this daemon's configuration file and applies the differences, asking no other daemon (SIGHUP:
    /// a signal is sent to one process; a forwarded reload).
    pub async fn reload_this_daemon(&self) -> Result<Reloaded, RequestError> {
        if self.shutdown.is_cancelled() {
            return Err(RequestError::ShuttingDown);
        }
        let _one_at_a_time = self.reloading.lock().await;
        let config = Config::load_with_environment(&self.config_path).map_err(
            |error: ConfigError| {
                tracing::warn!(file = %self.config_path.display(), %error, "configuration rejected; nothing changed");
                RequestError::ConfigRejected(error.to_string())
            },
        )?;
        self.reload_from(&config).await
    }

    /// The feed of channel `name`, when it is configured: for reads beside its stream (the filter tester, replay
    /// by time).
    pub fn channel_feed(&self, name: &str) -> Option<Arc<ChannelFeed>> {
        self.channels_lock()
            .iter()
            .find(|(channel, _)| channel.as_str() == name)
            .map(|(_, entry)| Arc::clone(&entry.feed))
    }

    /// Every configured channel, by name.
    pub fn channels(&self) -> Vec<ChannelSnapshot> {
        let held = self.held_lock().keys().cloned().collect::<BTreeSet<_>>();
        self.channels_lock()
            .iter()
            .map(|(name, entry)| ChannelSnapshot {
                owned: held.contains(name),
                ..entry.feed.snapshot()
            })
            .collect()
    }

    /// The invoke latency histogram of every trigger that is not deleted.
    pub fn invoke_latencies(&self) -> Vec<(TriggerName, HistogramSnapshot)> {
        let entries: Vec<Arc<TriggerEntry>> = self.triggers_lock().values().cloned().collect();
        entries
            .iter()
            .filter(|entry| entry.shared.checkpoint.state() != State::Deleted)
            .map(|entry| {
                (
                    entry.shared.def.name.clone(),
                    entry.shared.latency.snapshot(),
                )
            })
            .collect()
    }
}

/// The progress stored for triggers and the live owner of each channel, read for a listing.
struct Others {
    /// Stored records by trigger.
    records: BTreeMap<TriggerName, TriggerRecord>,
    /// The daemon holding each channel's live lease.
    owners: BTreeMap<ChannelName, String>,
}

/// The span every log line about a trigger is in: its fields name the trigger and its channel.
fn trigger_span(def: &TriggerDef) -> tracing::Span {
    tracing::info_span!("trigger", trigger = %def.name, channel = %def.channel)
}

/// The blocks a channel's pushing triggers start at (their stored positions).
fn start_blocks(
    channel: &ChannelName,
    records: &[(Arc<TriggerDef>, Option<TriggerRecord>)],
) -> Vec<u64> {
    records
        .iter()
        .filter(|(def, _)| &def.channel == channel)
        .filter_map(|(_, record)| record.as_ref())
        .filter(|record| record.status.state.pushes())
        .map(|record| record.position.block)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_commands_and_answers_read_back_as_written() {
        for forwarded in [
            Forwarded::Command(Command::Disable),
            Forwarded::Command(Command::Delete),
            Forwarded::Command(Command::Enable(state::EnableFrom::Latest)),
            Forwarded::Command(Command::Enable(state::EnableFrom::Stored)),
            Forwarded::Command(Command::Enable(state::EnableFrom::Block(u64::MAX))),
            Forwarded::Repush(0),
            Forwarded::Repush(u64::MAX),
            Forwarded::RepushAll,
            Forwarded::Reload,
        ] {
            assert_eq!(parse_forwarded(&forwarded_text(forwarded)), Some(forwarded));
        }
        for hostile in [
            "",
            "enable",
            "enable block -1",
            "enable block 1 2",
            "DROP TABLE",
            "delete ",
            "repush",
            "repush -1",
            "repush 1 2",
            "reload now",
        ] {
            assert_eq!(parse_forwarded(hostile), None, "{hostile:?}");
        }
        assert_eq!(
            parse_answer(&answer_text(Ok(serde_json::Value::Null))).ok(),
            Some(serde_json::Value::Null)
        );
        let refused = RequestError::Command(CommandError::Invalid("block 99 is beyond".into()));
        let Err(RequestError::Remote { kind, message }) = parse_answer(&answer_text(Err(&refused)))
        else {
            panic!("a refusal");
        };
        assert_eq!(
            (kind, message.as_str()),
            (RemoteKind::Invalid, "block 99 is beyond")
        );
        let Err(garbled) = parse_answer("not json") else {
            panic!("a refusal");
        };
        assert_eq!(garbled.kind(), RemoteKind::Internal);
        assert!(garbled.to_string().contains("not json"), "{garbled}");
    }

    #[test]
    fn forwarded_results_read_back_as_written() {
        let repushed = vec![
            Repushed { id: 1, error: None },
            Repushed {
                id: 7,
                error: Some("HTTP 500".into()),
            },
        ];
        let answer = parse_answer(&answer_text(Ok(repushed_json(&repushed)))).expect("ok");
        assert_eq!(repushed_from_json(&answer).expect("outcomes"), repushed);
        assert!(repushed_from_json(&serde_json::json!([{ "id": -1 }])).is_err());
        assert!(repushed_from_json(&serde_json::json!({})).is_err());

        let name = |text: &str| TriggerName::new(text).expect("a name");
        let report = Reloaded {
            added: vec![name("a")],
            removed: vec![name("b"), name("c")],
            changed: Vec::new(),
            still_deleted: vec![name("d")],
            daemons: None,
        };
        let answer = parse_answer(&answer_text(Ok(reloaded_json(&report)))).expect("ok");
        assert_eq!(reloaded_from_json(&answer), Some(report));
        assert_eq!(
            reloaded_from_json(
                &serde_json::json!({ "added": ["../x"], "removed": [], "changed": [], "still_deleted": [] })
            ),
            None,
            "a name that is not a trigger name"
        );
        assert_eq!(reloaded_from_json(&serde_json::json!(null)), None);
    }
}
