//! The trigger engine: one feed per channel, one worker per trigger, and the operator's commands
//! ([`EngineControl`]) applied through the state machine.
//!
//! Commands on a trigger are serialised by its worker slot: a command stops the trigger's worker (the event in
//! flight is abandoned without recording its outcome, so it is pushed again if the trigger resumes from its
//! position), applies the state machine's transition, writes it, and starts a new worker when the new state
//! pushes. Nothing else writes a trigger's record while no worker runs, so a command never races an outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::channel::{ChannelFeed, FeedConfig, feed_config};
use super::state::{self, Command, Position, State};
use super::worker::{Live, TriggerDef, TriggerShared, Worker, blocking};
use crate::admin::{
    self, ChannelStatus, ControlError, EngineControl, InvokeLatency, LastError, LatencyHistogram,
    ReloadReport, RepushOutcome, TriggerState, TriggerStatus,
};
use crate::config::{self, ChannelName, Config, ConfigError, FcEndpoint, TriggerName};
use crate::dispatch::{self, Dispatcher, EmbeddedRuntime, Outcome, PushKey};
use crate::store::{DeadLetterQuery, Store, StoreError};

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
    #[error("trigger `{trigger}`: {message}")]
    Trigger { trigger: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up pushing: {0}")]
    Dispatch(#[from] dispatch::DispatchError),
}

/// A running channel feed.
struct ChannelEntry {
    /// The feed its triggers read.
    feed: Arc<ChannelFeed>,
    /// The configuration it was built from (without source locations), to see changes on reload.
    fingerprint: String,
    /// Stops its stream.
    stop: CancellationToken,
}

/// A running worker.
struct WorkerHandle {
    /// Abandons the worker at once.
    stop: CancellationToken,
    /// Its task, awaited so that a command knows the worker is gone.
    join: JoinHandle<()>,
}

/// A trigger known to the engine.
struct TriggerEntry {
    /// Definition, live status, latency.
    shared: Arc<TriggerShared>,
    /// Its channel's feed.
    feed: Arc<ChannelFeed>,
    /// The worker, when one runs; the lock also serialises commands on the trigger.
    worker: tokio::sync::Mutex<Option<WorkerHandle>>,
}

/// The engine; cheap to share (`Arc`). See the module documentation.
pub struct Engine {
    /// The configuration file, re-read by [`EngineControl::reload`].
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
    /// Channel name -> (fingerprint, feed settings with identity and TLS files read).
    channels: BTreeMap<ChannelName, (String, FeedConfig)>,
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
        });
        let plan = engine.plan(config)?;
        let mut records = Vec::with_capacity(plan.triggers.len());
        for def in plan.triggers {
            let record = engine.read_record(&def.name).await?;
            records.push((def, record));
        }
        for (name, (fingerprint, channel)) in &plan.channels {
            let positions = start_blocks(name, &records);
            engine.start_channel(name, fingerprint, channel, &plan.instance_id, positions);
        }
        for (def, record) in records {
            engine.add_trigger(def, record);
        }
        Ok(engine)
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
                let fingerprint = format!("{instance_id}\n{}", fingerprint(channel));
                Ok((
                    channel.name.get_ref().clone(),
                    (fingerprint, feed_config(channel)?),
                ))
            })
            .collect::<Result<_, EngineError>>()?;
        let triggers = config
            .triggers
            .iter()
            .map(|trigger| self.trigger_def(trigger).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            channels,
            triggers,
            instance_id,
        })
    }

    fn trigger_def(&self, trigger: &config::Trigger) -> Result<TriggerDef, EngineError> {
        let name = trigger.name.get_ref().clone();
        let fail = |message: String| EngineError::Trigger {
            trigger: name.to_string(),
            message,
        };
        let filter = trigger.compile_filter().map_err(|e| fail(e.to_string()))?;
        let target = dispatch::Target::resolve(&trigger.target, self.embedded.as_ref())
            .map_err(|e| fail(e.to_string()))?;
        Ok(TriggerDef {
            name: name.clone(),
            channel: trigger.channel.get_ref().clone(),
            selector: trigger.event,
            include_invalid: *trigger.include_invalid.get_ref(),
            filter,
            target,
            target_label: target_label(&trigger.target),
            retry: trigger.retry,
            threshold: trigger.failure_threshold,
            start: trigger.start,
            enabled: trigger.enabled,
            fingerprint: fingerprint(trigger),
        })
    }

    fn start_channel(
        &self,
        name: &ChannelName,
        fingerprint: &str,
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
        self.tracker
            .spawn(feed.clone().run(positions, stop.clone()));
        tracing::info!(channel = %name, "following channel");
        self.channels_lock().insert(
            name.clone(),
            ChannelEntry {
                feed,
                fingerprint: fingerprint.to_owned(),
                stop,
            },
        );
    }

    async fn read_record(
        &self,
        name: &TriggerName,
    ) -> Result<Option<crate::store::TriggerRecord>, StoreError> {
        let name = name.clone();
        blocking(&self.store, move |store| store.trigger(&name)).await
    }

    /// Registers a trigger and starts its worker unless its stored state says otherwise.
    fn add_trigger(&self, def: Arc<TriggerDef>, record: Option<crate::store::TriggerRecord>) {
        let feed = self
            .channels_lock()
            .get(&def.channel)
            .map(|entry| entry.feed.clone())
            .expect("the configuration checks that every trigger's channel is declared");
        let live = match &record {
            Some(record) => Live::from_record(record),
            None => Live::unrecorded(&def),
        };
        let state = live.status.state;
        match state {
            State::Deleted => tracing::warn!(
                trigger = %def.name,
                "trigger was deleted over the admin API and stays deleted; remove it from the configuration file"
            ),
            State::Failed | State::Disabled => {
                tracing::info!(trigger = %def.name, %state, position = %live.position, "trigger not started: enable it over the admin API")
            }
            State::Running | State::Exception => {
                tracing::info!(trigger = %def.name, %state, position = %live.position, recorded = live.recorded, "starting trigger")
            }
        }
        let entry = Arc::new(TriggerEntry {
            shared: Arc::new(TriggerShared {
                def: def.clone(),
                live: Mutex::new(live),
                latency: LatencyHistogram::default(),
            }),
            feed,
            worker: tokio::sync::Mutex::new(None),
        });
        // A new trigger's worker also creates its record, even when it starts Disabled.
        let worker = (state.pushes() || record.is_none()).then(|| self.spawn_worker(&entry));
        *entry
            .worker
            .try_lock()
            .expect("nobody else knows the entry yet") = worker;
        self.triggers_lock().insert(def.name.clone(), entry);
    }

    fn spawn_worker(&self, entry: &TriggerEntry) -> WorkerHandle {
        let stop = self.hard_stop.child_token();
        let worker = Worker {
            shared: entry.shared.clone(),
            feed: entry.feed.clone(),
            store: self.store.clone(),
            dispatcher: self.dispatcher.clone(),
            stop: stop.clone(),
            shutdown: self.shutdown.clone(),
        };
        WorkerHandle {
            stop,
            join: self.tracker.spawn(worker.run()),
        }
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
    fn entry(&self, name: &str) -> Result<Arc<TriggerEntry>, ControlError> {
        let not_found = || ControlError::NotFound(format!("no trigger named `{name}`"));
        let name = TriggerName::new(name).map_err(|_| not_found())?;
        self.triggers_lock()
            .get(&name)
            .cloned()
            .ok_or_else(not_found)
    }

    /// The trigger named `name`, refusing a deleted one.
    fn live_entry(&self, name: &str) -> Result<Arc<TriggerEntry>, ControlError> {
        let entry = self.entry(name)?;
        if entry.shared.live().status.state == State::Deleted {
            return Err(deleted(name));
        }
        Ok(entry)
    }

    fn status_of(entry: &TriggerEntry) -> Option<TriggerStatus> {
        let def = &entry.shared.def;
        let live = entry.shared.live().clone();
        let state = TriggerState::from_state(live.status.state)?;
        let chain_height = entry.feed.height();
        // A new `latest` trigger starts at the chain height it first sees: show that rather than block 0.
        let position = match (live.recorded, def.start, chain_height) {
            (false, config::StartPosition::Latest, Some(height)) => Position::block_start(height),
            _ => live.position,
        };
        let position = admin::Position::from(position);
        Some(TriggerStatus {
            name: def.name.to_string(),
            channel: def.channel.to_string(),
            event_type: selector(def.selector),
            target: def.target_label.clone(),
            state,
            block_height: position.block_height(),
            position,
            chain_height,
            lag: position.lag(chain_height),
            failure_count: live.status.failures,
            failure_threshold: def.threshold.as_i64(),
            last_error: live.status.last_error.map(|message| LastError {
                message,
                at: live.last_error_at.unwrap_or_else(Utc::now),
            }),
            delivered: live.delivered,
            discarded: live.discarded,
            retries: live.retries,
            enabled_at: live.enabled_at,
        })
    }

    /// Applies an operator command: stop the worker, transition, write, restart when the new state pushes.
    async fn command(
        &self,
        name: &str,
        command: Command,
    ) -> Result<Option<TriggerStatus>, ControlError> {
        if self.shutdown.is_cancelled() {
            return Err(ControlError::Unavailable(
                "the daemon is shutting down".into(),
            ));
        }
        let entry = self.live_entry(name)?;
        let mut slot = entry.worker.lock().await;
        if let Some(worker) = slot.take() {
            worker.stop.cancel();
            let _ = worker.join.await;
        }
        let result = self.apply_command(&entry, command).await;
        if entry.shared.live().status.state.pushes() && !self.shutdown.is_cancelled() {
            *slot = Some(self.spawn_worker(&entry));
        }
        result?;
        Ok(Self::status_of(&entry))
    }

    async fn apply_command(
        &self,
        entry: &TriggerEntry,
        command: Command,
    ) -> Result<(), ControlError> {
        let def = &entry.shared.def;
        let live = entry.shared.live().clone();
        let transition =
            state::on_command(&live.status, command).map_err(|_| deleted(def.name.as_str()))?;
        let latest = || {
            entry.feed.height().map(Position::block_start).ok_or_else(|| {
                ControlError::Unavailable(format!(
                    "the height of channel `{}` is not known yet (no block received); try again, or enable from a block number",
                    def.channel
                ))
            })
        };
        // A trigger seen for the first time has no stored position yet: its configured start is it.
        let stored = if live.recorded {
            live.position
        } else {
            match def.start {
                config::StartPosition::Block(block) => Position::block_start(block),
                config::StartPosition::Latest => latest()?,
            }
        };
        let at = match command {
            Command::Enable(state::EnableFrom::Latest) => latest()?,
            Command::Enable(state::EnableFrom::Block(block)) => Position::block_start(block),
            Command::Enable(state::EnableFrom::Stored) | Command::Disable | Command::Delete => {
                stored
            }
        };
        let status = transition.status;
        let now = SystemTime::now();
        let (name, saved, recorded) = (def.name.clone(), status.clone(), live.recorded);
        // The in-memory position is never ahead of an unrecorded outcome (it may be ahead of the store on
        // events that pushed nothing): writing it keeps the store in step with what the API showed.
        blocking(&self.store, move |store| {
            if !recorded {
                store.ensure_trigger(&name, &saved, stored, now)?;
            }
            store.save_status(&name, &saved, Some(at), now)
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        tracing::info!(trigger = %def.name, ?command, from = %live.status.state, to = %status.state, position = %at, "trigger command applied");
        let mut live = entry.shared.live();
        live.recorded = true;
        live.status = status;
        live.position = at;
        live.last_error_at = None;
        if matches!(command, Command::Enable(_)) {
            live.enabled_at = Some(DateTime::<Utc>::from(now));
        }
        Ok(())
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

    async fn reload_from(&self, config: &Config) -> Result<ReloadReport, ControlError> {
        let plan = self
            .plan(config)
            .map_err(|e| ControlError::ConfigRejected(e.to_string()))?;
        let mut report = ReloadReport::default();

        // Channels: new ones start, changed ones restart (with their triggers), removed ones stop.
        let mut restarted_channels = Vec::new();
        let old_channels: Vec<(ChannelName, String)> = self
            .channels_lock()
            .iter()
            .map(|(name, entry)| (name.clone(), entry.fingerprint.clone()))
            .collect();
        for (name, fingerprint) in &old_channels {
            if plan.channels.get(name).map(|(f, _)| f) != Some(fingerprint) {
                restarted_channels.push(name.clone());
            }
        }
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
            match planned.get(name) {
                None => {
                    self.remove_trigger(name).await;
                    report.removed.push(name.to_string());
                }
                Some(def)
                    if channel_restarts || def.fingerprint != entry.shared.def.fingerprint =>
                {
                    self.remove_trigger(name).await;
                    if entry.shared.live().status.state == State::Deleted {
                        report.still_deleted.push(name.to_string());
                    } else {
                        report.changed.push(name.to_string());
                        if def.enabled != entry.shared.def.enabled {
                            toggled.push((name.clone(), def.enabled));
                        }
                    }
                    to_start.push(Arc::clone(def));
                }
                Some(_) => {
                    if entry.shared.live().status.state == State::Deleted {
                        report.still_deleted.push(name.to_string());
                    }
                }
            }
        }
        for name in &restarted_channels {
            if let Some(entry) = self.channels_lock().remove(name) {
                entry.stop.cancel();
            }
        }
        for (name, (fingerprint, channel)) in &plan.channels {
            if !self.channels_lock().contains_key(name) {
                let mut records = Vec::new();
                for def in plan.triggers.iter().filter(|def| &def.channel == name) {
                    let record = self
                        .read_record(&def.name)
                        .await
                        .map_err(|e| ControlError::Internal(e.to_string()))?;
                    records.push((def.clone(), record));
                }
                let positions = start_blocks(name, &records);
                self.start_channel(name, fingerprint, channel, &plan.instance_id, positions);
            }
        }
        for def in &plan.triggers {
            if !current.iter().any(|(name, _)| name == &def.name) {
                to_start.push(def.clone());
            }
        }
        for def in to_start {
            let record = self
                .read_record(&def.name)
                .await
                .map_err(|e| ControlError::Internal(e.to_string()))?;
            let is_new = !current.iter().any(|(name, _)| name == &def.name);
            if is_new {
                if record.as_ref().is_some_and(crate::store::is_deleted) {
                    report.still_deleted.push(def.name.to_string());
                } else {
                    report.added.push(def.name.to_string());
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
                .map(|entry| entry.shared.live().status.state);
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
        letter: crate::store::DeadLetter,
    ) -> Result<RepushOutcome, ControlError> {
        let def = &entry.shared.def;
        let id = u64::try_from(letter.id).unwrap_or_default();
        let key = PushKey {
            trigger: def.name.as_str(),
            event_id: &letter.letter.event_id,
            output: usize::try_from(letter.letter.output).unwrap_or(usize::MAX),
        };
        let outcome = self
            .dispatcher
            .deliver(&def.target, &letter.letter.payload, &key, &def.retry)
            .await;
        let error = match outcome {
            Outcome::Delivered { .. } => {
                let stored_id = letter.id;
                blocking(&self.store, move |store| {
                    store.mark_repushed(stored_id, SystemTime::now())
                })
                .await
                .map_err(|e| ControlError::Internal(e.to_string()))?;
                tracing::info!(trigger = %def.name, dead_letter = id, event = %letter.letter.event_id, "dead letter re-pushed");
                None
            }
            Outcome::Discarded { last_error, .. } => Some(last_error),
            Outcome::Blocked { reason, .. } => Some(reason),
        };
        Ok(RepushOutcome {
            id,
            delivered: error.is_none(),
            error,
        })
    }
}

/// The blocks a channel's pushing triggers start at (their stored positions).
fn start_blocks(
    channel: &ChannelName,
    records: &[(Arc<TriggerDef>, Option<crate::store::TriggerRecord>)],
) -> Vec<u64> {
    records
        .iter()
        .filter(|(def, _)| &def.channel == channel)
        .filter_map(|(_, record)| record.as_ref())
        .filter(|record| record.status.state.pushes())
        .map(|record| record.position.block)
        .collect()
}

fn deleted(name: &str) -> ControlError {
    ControlError::Conflict(format!(
        "trigger `{name}` was deleted; a deleted trigger cannot be changed (remove it from the configuration file)"
    ))
}

fn selector(selector: config::EventSelector) -> admin::EventSelector {
    use crate::events::EventType;
    match selector {
        config::EventSelector::All => admin::EventSelector::All,
        config::EventSelector::Only(EventType::Block) => admin::EventSelector::Block,
        config::EventSelector::Only(EventType::Tx) => admin::EventSelector::Tx,
        config::EventSelector::Only(EventType::Contract) => admin::EventSelector::Contract,
        config::EventSelector::Only(EventType::Config) => admin::EventSelector::Config,
    }
}

/// The target as operators see it, without secrets: `fc:embedded/demo/echo`, `http:POST https://host/path`.
pub fn target_label(target: &config::Target) -> String {
    match target {
        config::Target::FunctionCompute(fc) => {
            let endpoint = match fc.endpoint.get_ref() {
                FcEndpoint::Embedded => "embedded".to_owned(),
                FcEndpoint::Url(url) => url.host_str().unwrap_or("?").to_owned(),
            };
            let qualifier = fc
                .qualifier
                .as_ref()
                .map(|q| format!(".{q}"))
                .unwrap_or_default();
            format!("fc:{endpoint}/{}{qualifier}/{}", fc.service, fc.function)
        }
        config::Target::Http(http) => {
            let mut url = http.url.clone();
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.set_query(None);
            let method = match http.method {
                config::HttpMethod::Get => "GET",
                config::HttpMethod::Post => "POST",
            };
            format!("http:{method} {url}")
        }
    }
}

/// A configuration value's text without its source locations: moving an entry in the file is not a change.
pub fn fingerprint(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("span: ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "span: ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let first = digits(after);
        let range_end = after[first..]
            .strip_prefix("..")
            .map(|tail| first + 2 + digits(tail));
        match range_end {
            Some(end) if first > 0 => {
                rest = after[end..].strip_prefix(", ").unwrap_or(&after[end..]);
            }
            _ => {
                out.push_str("span: ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl EngineControl for Engine {
    async fn triggers(&self) -> Vec<TriggerStatus> {
        let entries: Vec<Arc<TriggerEntry>> = self.triggers_lock().values().cloned().collect();
        entries
            .iter()
            .filter_map(|entry| Self::status_of(entry))
            .collect()
    }

    async fn trigger(&self, name: &str) -> Option<TriggerStatus> {
        self.entry(name)
            .ok()
            .and_then(|entry| Self::status_of(&entry))
    }

    async fn enable(
        &self,
        name: &str,
        from: admin::EnableFrom,
    ) -> Result<TriggerStatus, ControlError> {
        self.command(name, Command::Enable(from.into()))
            .await?
            .ok_or_else(|| deleted(name))
    }

    async fn disable(&self, name: &str) -> Result<TriggerStatus, ControlError> {
        self.command(name, Command::Disable)
            .await?
            .ok_or_else(|| deleted(name))
    }

    async fn delete(&self, name: &str) -> Result<(), ControlError> {
        self.command(name, Command::Delete).await.map(|_| ())
    }

    async fn dead_letters(
        &self,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<admin::DeadLetter>, ControlError> {
        let entry = self.live_entry(name)?;
        let trigger = entry.shared.def.name.clone();
        let stored = blocking(&self.store, move |store| {
            store.dead_letters(&DeadLetterQuery {
                trigger: Some(&trigger),
                include_repushed: true,
                limit: None,
            })
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        stored
            .into_iter()
            .filter(|letter| {
                after.is_none_or(|after| letter.id > i64::try_from(after).unwrap_or(i64::MAX))
            })
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(admin::DeadLetter::try_from)
            .collect()
    }

    async fn repush_dead_letter(&self, name: &str, id: u64) -> Result<RepushOutcome, ControlError> {
        let entry = self.live_entry(name)?;
        let not_found =
            || ControlError::NotFound(format!("trigger `{name}` has no dead letter {id}"));
        let stored_id = i64::try_from(id).map_err(|_| not_found())?;
        let letter = blocking(&self.store, move |store| store.dead_letter(stored_id))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?
            .filter(|letter| letter.trigger == entry.shared.def.name)
            .ok_or_else(not_found)?;
        self.repush(&entry, letter).await
    }

    async fn repush_all_dead_letters(
        &self,
        name: &str,
    ) -> Result<Vec<RepushOutcome>, ControlError> {
        let entry = self.live_entry(name)?;
        let trigger = entry.shared.def.name.clone();
        let letters = blocking(&self.store, move |store| {
            store.dead_letters(&DeadLetterQuery {
                trigger: Some(&trigger),
                include_repushed: false,
                limit: None,
            })
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        let mut outcomes = Vec::with_capacity(letters.len());
        for letter in letters {
            outcomes.push(self.repush(&entry, letter).await?);
        }
        Ok(outcomes)
    }

    async fn reload(&self) -> Result<ReloadReport, ControlError> {
        if self.shutdown.is_cancelled() {
            return Err(ControlError::Unavailable(
                "the daemon is shutting down".into(),
            ));
        }
        let _one_at_a_time = self.reloading.lock().await;
        let config = Config::load(&self.config_path)
            .and_then(|config| config.check_environment().map(|()| config))
            .map_err(|error: ConfigError| {
                tracing::warn!(file = %self.config_path.display(), %error, "configuration rejected; nothing changed");
                ControlError::ConfigRejected(error.to_string())
            })?;
        self.reload_from(&config).await
    }

    async fn channels(&self) -> Vec<ChannelStatus> {
        self.channels_lock()
            .values()
            .map(|entry| entry.feed.status())
            .collect()
    }

    async fn invoke_latencies(&self) -> Vec<InvokeLatency> {
        let entries: Vec<Arc<TriggerEntry>> = self.triggers_lock().values().cloned().collect();
        entries
            .iter()
            .filter(|entry| entry.shared.live().status.state != State::Deleted)
            .map(|entry| InvokeLatency {
                trigger: entry.shared.def.name.to_string(),
                histogram: entry.shared.latency.snapshot(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_source_locations_only() {
        let a = "Trigger { name: Spanned { span: 10..20, value: \"a\" }, start: Latest }";
        let b = "Trigger { name: Spanned { span: 110..120, value: \"a\" }, start: Latest }";
        let c = "Trigger { name: Spanned { span: 10..20, value: \"b\" }, start: Latest }";
        assert_eq!(fingerprint(&RawDebug(a)), fingerprint(&RawDebug(b)));
        assert_ne!(fingerprint(&RawDebug(a)), fingerprint(&RawDebug(c)));
        assert_eq!(
            fingerprint(&RawDebug("x: \"span: here\"")),
            "x: \"span: here\""
        );
    }

    const CHANNEL: &str = r#"
instance_id = "t"
database = "state.sqlite"
[admin]
token = { env = "TOKEN" }
[runtime]
enabled = true
[[channels]]
name = "mychannel"
msp_id = "Org1MSP"
certificate = "cert.pem"
key = "key.pem"
[[channels.peers]]
address = "peer0:7051"
plaintext = true
"#;

    const FIRST: &str = r#"
[[triggers]]
name = "first"
channel = "mychannel"
event = "Tx"
filter = 'select(.content.state == "VALID")'
[triggers.target.http]
url = "https://user:pass@hooks.example.com/tx?key=secret"
"#;

    const SECOND: &str = r#"
[[triggers]]
name = "second"
channel = "mychannel"
event = "*"
[triggers.target.function_compute]
endpoint = "embedded"
service = "demo"
function = "echo"
qualifier = "prod"
"#;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/ct/test.toml")).expect("a valid configuration")
    }

    fn trigger<'a>(config: &'a Config, name: &str) -> &'a config::Trigger {
        config
            .triggers
            .iter()
            .find(|t| t.name.get_ref().as_str() == name)
            .expect("the trigger is configured")
    }

    #[test]
    fn moving_a_trigger_in_the_file_is_not_a_change_editing_it_is() {
        let before = parse(&format!("{CHANNEL}{FIRST}{SECOND}"));
        let moved = parse(&format!("{CHANNEL}{SECOND}{FIRST}"));
        let edited = parse(&format!(
            "{CHANNEL}{}{SECOND}",
            FIRST.replace("VALID", "MVCC_READ_CONFLICT")
        ));
        for name in ["first", "second"] {
            assert_eq!(
                fingerprint(trigger(&before, name)),
                fingerprint(trigger(&moved, name)),
                "{name}"
            );
        }
        assert_ne!(
            fingerprint(trigger(&before, "first")),
            fingerprint(trigger(&edited, "first"))
        );
        assert_eq!(
            fingerprint(trigger(&before, "second")),
            fingerprint(trigger(&edited, "second"))
        );
    }

    #[test]
    fn target_labels_name_the_target_without_secrets() {
        let config = parse(&format!("{CHANNEL}{FIRST}{SECOND}"));
        assert_eq!(
            target_label(&trigger(&config, "first").target),
            "http:POST https://hooks.example.com/tx"
        );
        assert_eq!(
            target_label(&trigger(&config, "second").target),
            "fc:embedded/demo.prod/echo"
        );
    }

    /// Formats as the text it holds, to feed [`fingerprint`] any Debug text.
    struct RawDebug(&'static str);

    impl std::fmt::Debug for RawDebug {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
}
