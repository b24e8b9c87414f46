//! One trigger's worker: reads its channel's blocks from its position on, filters and pushes its events in chain
//! order, and records each outcome before moving on.
//!
//! - Blocks come from the channel's shared window; a trigger behind the window opens its own catch-up stream
//!   from its position and drops it once the window has the block it needs next.
//! - Each event of the trigger's type goes through the filter; each output is pushed in order with the retry
//!   policy; the event's outcome goes through the state machine and is written in one store transaction with
//!   the new position. The position never moves past an event whose outcome is not recorded.
//! - Events that do not concern the trigger (another type, filtered out) move the position in memory only; the
//!   position is written at the next recorded outcome, before the worker waits for a new block, every
//!   [`FLUSH_EVERY_BLOCKS`] blocks, and when it stops. A crash in between re-reads those events and skips them
//!   again: nothing is pushed twice because of it.
//! - Exception keeps the position and retries the same event on [`ExceptionSchedule`]; Failed ends the worker.
//! - Cancelling `stop` (an operator's command) abandons the event in flight at once: its outcome is not recorded,
//!   so it is pushed again when the trigger resumes from its position. Cancelling `shutdown` (the daemon
//!   stopping) lets the event in flight finish and be recorded, then ends the worker.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::channel::{ChannelFeed, DECODE_RETRY};
use super::outcome::{EventResult, PayloadDelivery, event_result};
use super::state::{self, Effect, EventOutcome, Position, State, Status};
use super::window::{BlockEvents, ChainEvent, Lookup};
use crate::admin::LatencyHistogram;
use crate::config::{self, ChannelName, FailureThreshold, TriggerName};
use crate::dispatch::retry::ExceptionSchedule;
use crate::dispatch::{self, Delivery, Dispatcher, PushKey};
use crate::fabric::decode::BlockDecoder;
use crate::fabric::deliver::{DeliverError, Subscription};
use crate::filter::Filter;
use crate::store::{OutcomeRecord, Store, StoreError, TriggerRecord};

/// Blocks a trigger may pass without writing its position when it pushes nothing: bounds what a crash makes it
/// re-read, without a write per block while it catches up.
pub const FLUSH_EVERY_BLOCKS: u32 = 64;

/// A trigger's configuration, ready to run: filter compiled, target resolved.
#[derive(Debug)]
pub struct TriggerDef {
    /// Its name: the store's key and every log line's.
    pub name: TriggerName,
    /// The channel it listens to.
    pub channel: ChannelName,
    /// The event types it receives.
    pub selector: config::EventSelector,
    /// Whether it receives Contract events of invalid transactions.
    pub include_invalid: bool,
    /// Its filter; `None` pushes every event whole.
    pub filter: Option<Filter>,
    /// Where it pushes (secrets read).
    pub target: dispatch::Target,
    /// The target without secrets, for status pages.
    pub target_label: String,
    /// Attempts and delays of each push.
    pub retry: config::RetryPolicy,
    /// Discards tolerated before Failed.
    pub threshold: FailureThreshold,
    /// Where it starts when the store has no record of it.
    pub start: config::StartPosition,
    /// Whether it starts Running (else Disabled) when the store has no record of it.
    pub enabled: bool,
    /// The configuration entry as text without source locations: tells a reload whether it changed.
    pub fingerprint: String,
}

impl TriggerDef {
    /// Whether an event goes to this trigger (before its filter).
    pub fn receives(&self, event: &ChainEvent) -> bool {
        self.selector.matches(event.event_type)
            && (event.valid_transaction
                || self.include_invalid
                || event.event_type != crate::events::EventType::Contract)
    }
}

/// What the admin API reads of a trigger while its worker runs.
#[derive(Debug, Clone)]
pub struct Live {
    /// State, failure count, last error.
    pub status: Status,
    /// The next event to process (in memory; the store may be up to [`FLUSH_EVERY_BLOCKS`] blocks behind on
    /// events that pushed nothing).
    pub position: Position,
    /// Payloads delivered over the trigger's life.
    pub delivered: u64,
    /// Payloads discarded over the trigger's life.
    pub discarded: u64,
    /// Attempts beyond the first since the daemon started.
    pub retries: u64,
    /// When `status.last_error` was set.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When an operator last enabled the trigger.
    pub enabled_at: Option<DateTime<Utc>>,
    /// Whether the store has a record of the trigger (a new `latest` trigger waits for the chain height first).
    pub recorded: bool,
}

impl Live {
    /// The live view of a stored record.
    pub fn from_record(record: &TriggerRecord) -> Self {
        Live {
            status: record.status.clone(),
            position: record.position,
            delivered: record.delivered,
            discarded: record.discarded,
            retries: 0,
            last_error_at: record
                .status
                .last_error
                .as_ref()
                .map(|_| DateTime::<Utc>::from(record.updated_at)),
            enabled_at: None,
            recorded: true,
        }
    }

    /// A trigger the store does not know yet.
    pub fn unrecorded(def: &TriggerDef) -> Self {
        Live {
            status: Status::new(def.enabled),
            position: Position::block_start(match def.start {
                config::StartPosition::Block(block) => block,
                config::StartPosition::Latest => 0,
            }),
            delivered: 0,
            discarded: 0,
            retries: 0,
            last_error_at: None,
            enabled_at: None,
            recorded: false,
        }
    }
}

/// A trigger as the engine keeps it: its definition, its live status, its latency histogram.
#[derive(Debug)]
pub struct TriggerShared {
    /// The definition the worker runs with.
    pub def: Arc<TriggerDef>,
    /// Updated by the worker, read by the admin API.
    pub live: Mutex<Live>,
    /// Block received -> target answered, per delivered payload.
    pub latency: LatencyHistogram,
}

impl TriggerShared {
    /// Locks the live status (a panic elsewhere leaves plain values: still readable).
    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What one event's pushes came to, before the state machine.
#[derive(Debug)]
struct Pushed {
    /// The event's outcome and what to record with it.
    result: EventResult,
    /// Attempts beyond the first, over all payloads.
    retries: u64,
}

/// The position after event `index` of a block of `len` events: the next event, or the next block's start.
pub fn position_after(block: u64, index: usize, len: usize) -> Position {
    if index + 1 >= len {
        Position::block_start(block.saturating_add(1))
    } else {
        Position {
            block,
            index: u32::try_from(index + 1).unwrap_or(u32::MAX),
        }
    }
}

/// Where a trigger gets the block it needs next.
#[derive(Debug)]
pub enum Next {
    /// From the channel's window.
    Window(Arc<BlockEvents>),
    /// Wait for the channel's stream to bring it.
    Wait,
    /// From the trigger's own catch-up stream (opened if needed).
    ReadBehind,
}

/// Decides where block `number` comes from (pure): the window when it has it; the trigger's own stream when the
/// block is older than the window, or while the trigger is catching up and the block is not the channel's very
/// next one (or the channel has no height yet); otherwise the channel's stream, waiting for it.
pub fn next_source(lookup: Lookup, catching_up: bool, height: Option<u64>, number: u64) -> Next {
    match lookup {
        Lookup::Here(block) => Next::Window(block),
        Lookup::Gone => Next::ReadBehind,
        Lookup::NotYet if !catching_up || height == Some(number) => Next::Wait,
        Lookup::NotYet => Next::ReadBehind,
    }
}

/// Why a worker stops.
#[derive(Debug)]
enum Halt {
    /// `stop` or `shutdown` was cancelled.
    Stopped,
    /// The state machine stopped the trigger (Failed).
    Finished,
}

/// Runs the store call off the async threads (SQLite blocks).
pub async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || call(store.as_ref())).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// One trigger's worker; see the module documentation.
pub struct Worker {
    /// The trigger.
    pub shared: Arc<TriggerShared>,
    /// Its channel.
    pub feed: Arc<ChannelFeed>,
    /// Where outcomes are recorded.
    pub store: Arc<dyn Store>,
    /// Pushes payloads.
    pub dispatcher: Dispatcher,
    /// Abandon at once (operator command, or the end of the shutdown grace period).
    pub stop: CancellationToken,
    /// Finish the event in flight, then stop (daemon shutdown).
    pub shutdown: CancellationToken,
}

/// The worker's moving parts between blocks.
struct Progress {
    /// The catch-up stream and its decoder, while the trigger is behind the window.
    catch_up: Option<(Subscription, BlockDecoder)>,
    /// The Exception retry delays, while the trigger holds an event.
    exception: Option<ExceptionSchedule>,
    /// Blocks passed since the position was last written, when the in-memory position is ahead of the store's.
    unrecorded_blocks: Option<u32>,
}

impl Worker {
    /// Runs until the trigger stops pushing, `stop` or `shutdown`.
    pub async fn run(self) {
        let name = self.shared.def.name.clone();
        let mut progress = Progress {
            catch_up: None,
            exception: None,
            unrecorded_blocks: None,
        };
        let halt = self.run_until_halted(&mut progress).await;
        if progress.unrecorded_blocks.is_some() && !self.stop.is_cancelled() {
            self.flush(&mut progress).await;
        }
        tracing::debug!(trigger = %name, ?halt, "trigger worker ended");
    }

    async fn run_until_halted(&self, progress: &mut Progress) -> Halt {
        if !self.shared.live().recorded
            && let Err(halt) = self.record_new_trigger().await
        {
            return halt;
        }
        loop {
            if !self.shared.live().status.state.pushes() {
                return Halt::Finished;
            }
            let position = self.shared.live().position;
            let block = match self.next_block(position.block, progress).await {
                Ok(block) => block,
                Err(halt) => return halt,
            };
            if let Err(halt) = self.process_block(&block, position.index, progress).await {
                return halt;
            }
        }
    }

    /// Creates the store record of a trigger seen for the first time: `latest` means the block after the chain
    /// height at first sight, so the worker waits for the channel's first block.
    async fn record_new_trigger(&self) -> Result<(), Halt> {
        let def = self.shared.def.clone();
        let position = match def.start {
            config::StartPosition::Block(block) => Position::block_start(block),
            config::StartPosition::Latest => {
                let mut heights = self.feed.watch_height();
                loop {
                    if let Some(height) = *heights.borrow_and_update() {
                        break Position::block_start(height);
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return Err(Halt::Stopped),
                        _ = self.shutdown.cancelled() => return Err(Halt::Stopped),
                        changed = heights.changed() => if changed.is_err() { return Err(Halt::Stopped) },
                    }
                }
            }
        };
        let status = Status::new(def.enabled);
        let name = def.name.clone();
        loop {
            let (name, status) = (name.clone(), status.clone());
            match blocking(&self.store, move |store| {
                store.ensure_trigger(&name, &status, position, SystemTime::now())
            })
            .await
            {
                Ok(record) => {
                    tracing::info!(trigger = %def.name, position = %record.position, state = %record.status.state, "new trigger recorded");
                    *self.shared.live() = Live::from_record(&record);
                    return Ok(());
                }
                Err(error) => self.store_trouble(error).await?,
            }
        }
    }

    /// Logs a store failure, shows it, and waits a moment before the caller tries again.
    async fn store_trouble(&self, error: StoreError) -> Result<(), Halt> {
        tracing::error!(trigger = %self.shared.def.name, %error, "cannot record the trigger's progress; retrying");
        self.note_error(format!("cannot record progress: {error}"));
        tokio::select! {
            _ = self.stop.cancelled() => Err(Halt::Stopped),
            _ = tokio::time::sleep(DECODE_RETRY) => Ok(()),
        }
    }

    fn note_error(&self, message: String) {
        let mut live = self.shared.live();
        live.status.last_error = Some(message);
        live.last_error_at = Some(Utc::now());
    }

    /// The block `number`: from the window, or from the catch-up stream while behind it.
    async fn next_block(
        &self,
        number: u64,
        progress: &mut Progress,
    ) -> Result<Arc<BlockEvents>, Halt> {
        let mut heights = self.feed.watch_height();
        loop {
            if self.stop.is_cancelled() || self.shutdown.is_cancelled() {
                return Err(Halt::Stopped);
            }
            heights.borrow_and_update();
            let catching_up = progress.catch_up.is_some();
            let next = next_source(
                self.feed.lookup(number),
                catching_up,
                self.feed.height(),
                number,
            );
            if catching_up && !matches!(next, Next::ReadBehind) {
                progress.catch_up = None;
                tracing::info!(trigger = %self.shared.def.name, block = number, "caught up with the channel");
            }
            match next {
                Next::Window(block) => return Ok(block),
                Next::Wait => {
                    self.flush(progress).await;
                    tokio::select! {
                        _ = self.stop.cancelled() => return Err(Halt::Stopped),
                        _ = self.shutdown.cancelled() => return Err(Halt::Stopped),
                        changed = heights.changed() => if changed.is_err() { return Err(Halt::Stopped) },
                    }
                }
                Next::ReadBehind => {
                    if let Some(block) = self.read_behind(number, progress).await? {
                        return Ok(block);
                    }
                }
            }
        }
    }

    /// One block from the catch-up stream (opened at `number` if needed); `None` after a trouble the caller
    /// retries from.
    async fn read_behind(
        &self,
        number: u64,
        progress: &mut Progress,
    ) -> Result<Option<Arc<BlockEvents>>, Halt> {
        let fresh =
            !matches!(&progress.catch_up, Some((s, _)) if s.next_block_number() == Some(number));
        if fresh {
            tracing::info!(trigger = %self.shared.def.name, block = number, "behind the channel's recent blocks; reading the chain from the trigger's position");
            progress.catch_up = Some((
                self.feed.catch_up(number, self.stop.child_token()),
                BlockDecoder::new(),
            ));
        }
        let Some((subscription, decoder)) = progress.catch_up.as_mut() else {
            return Ok(None);
        };
        let delivered = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(Halt::Stopped),
            delivered = subscription.next_block() => delivered,
        };
        match delivered {
            Ok(delivered) => {
                let got = delivered.number;
                match self.feed.prepare(decoder, delivered) {
                    Ok(block) => Ok(Some(block)),
                    Err(error) => {
                        tracing::error!(trigger = %self.shared.def.name, block = got, %error, "block cannot be decoded; asking for it again");
                        self.note_error(format!("block {got} cannot be decoded: {error}"));
                        progress.catch_up = None;
                        tokio::select! {
                            _ = self.stop.cancelled() => Err(Halt::Stopped),
                            _ = self.shutdown.cancelled() => Err(Halt::Stopped),
                            _ = tokio::time::sleep(DECODE_RETRY) => Ok(None),
                        }
                    }
                }
            }
            Err(DeliverError::Shutdown { .. }) => Err(Halt::Stopped),
            Err(error) => {
                tracing::warn!(trigger = %self.shared.def.name, %error, "catch-up stream error");
                self.note_error(error.to_string());
                Ok(None)
            }
        }
    }

    /// Processes the events of `block` from `index` on.
    async fn process_block(
        &self,
        block: &BlockEvents,
        start: u32,
        progress: &mut Progress,
    ) -> Result<(), Halt> {
        let def = self.shared.def.clone();
        let len = block.events.len();
        let mut index = usize::try_from(start).unwrap_or(usize::MAX);
        while index < len {
            let event = &block.events[index];
            let at = Position {
                block: block.number,
                index: u32::try_from(index).unwrap_or(u32::MAX),
            };
            if !def.receives(event) {
                self.skip_to(position_after(block.number, index, len), progress);
                index += 1;
                continue;
            }
            let payloads = match &def.filter {
                None => Ok(vec![event.envelope.json().clone()]),
                Some(filter) => filter.apply_to(&event.envelope).map_err(|error| {
                    format!("the filter failed on event {} ({at}): {error}", event.id)
                }),
            };
            let pushed = match payloads {
                Ok(payloads) if payloads.is_empty() => {
                    self.skip_to(position_after(block.number, index, len), progress);
                    index += 1;
                    continue;
                }
                Ok(payloads) => self.push_all(block, event, at, payloads).await?,
                Err(reason) => Pushed {
                    result: EventResult {
                        outcome: EventOutcome::Blocked { reason },
                        delivered: 0,
                        discarded: 0,
                        dead_letters: Vec::new(),
                    },
                    retries: 0,
                },
            };
            let held = self
                .record(
                    &pushed,
                    at,
                    position_after(block.number, index, len),
                    progress,
                )
                .await?;
            if held {
                let delay = progress
                    .exception
                    .get_or_insert_with(ExceptionSchedule::new)
                    .next()
                    .unwrap_or(DECODE_RETRY);
                tracing::warn!(trigger = %def.name, event = %event.id, position = %at, ?delay, "trigger in Exception: holding the event and trying it again later");
                tokio::select! {
                    _ = self.stop.cancelled() => return Err(Halt::Stopped),
                    _ = self.shutdown.cancelled() => return Err(Halt::Stopped),
                    _ = tokio::time::sleep(delay) => {}
                }
                if !self.shared.live().status.state.pushes() {
                    return Err(Halt::Finished);
                }
            } else {
                progress.exception = None;
                index += 1;
            }
            if self.shutdown.is_cancelled() {
                return Err(Halt::Stopped);
            }
        }
        // An empty block, or a stored index past the block's end: the block is done.
        if self.shared.live().position.block == block.number {
            self.skip_to(
                Position::block_start(block.number.saturating_add(1)),
                progress,
            );
        }
        if let Some(blocks) = progress.unrecorded_blocks.as_mut() {
            *blocks += 1;
            if *blocks >= FLUSH_EVERY_BLOCKS {
                self.flush(progress).await;
            }
        }
        Ok(())
    }

    /// Moves the in-memory position past an event that pushes nothing.
    fn skip_to(&self, position: Position, progress: &mut Progress) {
        self.shared.live().position = position;
        progress.unrecorded_blocks.get_or_insert(0);
    }

    /// Pushes an event's payloads in order; stops at a configuration error.
    async fn push_all(
        &self,
        block: &BlockEvents,
        event: &ChainEvent,
        at: Position,
        payloads: Vec<Value>,
    ) -> Result<Pushed, Halt> {
        let def = &self.shared.def;
        let mut outcomes = Vec::with_capacity(payloads.len());
        let mut retries = 0;
        for (output, payload) in payloads.into_iter().enumerate() {
            let key = PushKey {
                trigger: def.name.as_str(),
                event_id: &event.id,
                output,
            };
            let outcome = tokio::select! {
                _ = self.stop.cancelled() => return Err(Halt::Stopped),
                outcome = self.dispatcher.deliver(&def.target, &payload, &key, &def.retry) => outcome,
            };
            let (attempts, blocked) = match &outcome {
                Delivery::Delivered { attempts } => {
                    self.shared.latency.record(block.received_at.elapsed());
                    (*attempts, false)
                }
                Delivery::Discarded {
                    last_error,
                    attempts,
                } => {
                    tracing::warn!(trigger = %def.name, event = %event.id, output, attempts, error = %last_error, "push discarded after its retries; kept as a dead letter");
                    (*attempts, false)
                }
                Delivery::Blocked { attempts, .. } => (*attempts, true),
            };
            retries += u64::from(attempts.saturating_sub(1));
            outcomes.push(PayloadDelivery {
                payload,
                delivery: outcome,
            });
            if blocked {
                break;
            }
        }
        Ok(Pushed {
            result: event_result(&event.id, at, &outcomes),
            retries,
        })
    }

    /// Runs an event's outcome through the state machine and records it; `Ok(true)` when the event is held
    /// (Exception).
    async fn record(
        &self,
        pushed: &Pushed,
        at: Position,
        after: Position,
        progress: &mut Progress,
    ) -> Result<bool, Halt> {
        let def = self.shared.def.clone();
        let before = self.shared.live().status.clone();
        let result = &pushed.result;
        let transition = state::on_outcome(&before, def.threshold, &result.outcome);
        let mut position = at;
        let mut dead_letters = Vec::new();
        let mut held = false;
        let mut stop = false;
        for effect in &transition.effects {
            match effect {
                Effect::WriteDeadLetter { .. } => dead_letters = result.dead_letters.clone(),
                Effect::AdvancePosition => position = after,
                Effect::RetryLater => held = true,
                Effect::StopWorker => stop = true,
                Effect::StartWorker { .. } | Effect::MarkDeleted => {}
            }
        }
        let discarded = dead_letters.len() as u64;
        let status = transition.status;
        loop {
            let (name, status, letters) = (def.name.clone(), status.clone(), dead_letters.clone());
            let delivered = result.delivered;
            let written = blocking(&self.store, move |store| {
                store.record_outcome(&OutcomeRecord {
                    trigger: &name,
                    status: &status,
                    position,
                    delivered,
                    discarded,
                    dead_letters: &letters,
                    at: SystemTime::now(),
                })
            })
            .await;
            match written {
                Ok(()) => break,
                Err(error) => self.store_trouble(error).await?,
            }
        }
        progress.unrecorded_blocks = None;
        {
            let mut live = self.shared.live();
            if status.last_error.is_some() && status.last_error != live.status.last_error
                || matches!(result.outcome, EventOutcome::Blocked { .. })
                || discarded > 0
            {
                live.last_error_at = Some(Utc::now());
            }
            if before.state != status.state {
                tracing::info!(trigger = %def.name, from = %before.state, to = %status.state, error = status.last_error.as_deref().unwrap_or(""), "trigger state changed");
            }
            live.status = status;
            live.position = position;
            live.delivered += result.delivered;
            live.discarded += discarded;
            live.retries += pushed.retries;
        }
        if stop {
            return Err(Halt::Finished);
        }
        Ok(held)
    }

    /// Writes the in-memory position when it is ahead of the store's (events that pushed nothing).
    async fn flush(&self, progress: &mut Progress) {
        if progress.unrecorded_blocks.is_none() {
            return;
        }
        let (name, status, position) = {
            let live = self.shared.live();
            (
                self.shared.def.name.clone(),
                live.status.clone(),
                live.position,
            )
        };
        if status.state == State::Deleted {
            return;
        }
        let written = blocking(&self.store, move |store| {
            store.record_outcome(&OutcomeRecord {
                trigger: &name,
                status: &status,
                position,
                delivered: 0,
                discarded: 0,
                dead_letters: &[],
                at: SystemTime::now(),
            })
        })
        .await;
        match written {
            Ok(()) => progress.unrecorded_blocks = None,
            Err(error) => {
                tracing::error!(trigger = %self.shared.def.name, %error, "cannot record the trigger's position; will try again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(lookup: Lookup, catching_up: bool, height: Option<u64>, number: u64) -> String {
        match next_source(lookup, catching_up, height, number) {
            Next::Window(block) => format!("window {}", block.number),
            Next::Wait => "wait".into(),
            Next::ReadBehind => "read behind".into(),
        }
    }

    #[test]
    fn a_trigger_reads_behind_only_while_the_window_cannot_serve_it() {
        let here = || {
            Lookup::Here(Arc::new(BlockEvents {
                number: 7,
                received_at: std::time::Instant::now(),
                events: Vec::new(),
            }))
        };
        assert_eq!(source(here(), false, Some(8), 7), "window 7");
        assert_eq!(source(here(), true, Some(8), 7), "window 7", "caught up");
        assert_eq!(source(Lookup::Gone, false, Some(100), 7), "read behind");
        assert_eq!(source(Lookup::Gone, true, Some(100), 7), "read behind");
        // At the head: the channel's stream brings the next block.
        assert_eq!(source(Lookup::NotYet, false, Some(8), 8), "wait");
        assert_eq!(source(Lookup::NotYet, true, Some(8), 8), "wait");
        // Nothing received yet: wait for the channel, unless already reading the chain alone.
        assert_eq!(source(Lookup::NotYet, false, None, 3), "wait");
        assert_eq!(source(Lookup::NotYet, true, None, 3), "read behind");
    }

    #[test]
    fn the_position_after_the_last_event_is_the_next_block() {
        assert_eq!(position_after(7, 0, 3), Position { block: 7, index: 1 });
        assert_eq!(position_after(7, 1, 3), Position { block: 7, index: 2 });
        assert_eq!(position_after(7, 2, 3), Position::block_start(8));
        assert_eq!(position_after(7, 0, 1), Position::block_start(8));
    }
}
