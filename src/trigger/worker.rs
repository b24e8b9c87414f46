//! One trigger's worker: reads its channel's blocks from its position on, filters and pushes its events in chain
//! order, and records each outcome before moving on.
//!
//! - Blocks come from the channel's shared window; a trigger behind the window opens its own catch-up stream
//!   from its position (waiting for one of the channel's catch-up slots) and drops it once the window has the
//!   block it needs next, or while it holds an event in Exception, so the slot goes to another trigger meanwhile.
//!   The stream's reader task (`behind`) decodes and verifies the blocks ahead while the worker filters, pushes
//!   and records the ones before.
//! - Each event of the trigger's type goes through the filter, evaluated on the [`FilterPool`] (off the async
//!   runtime, under the trigger's filter limits; a filter past its limits is a run-time filter error, so the
//!   trigger holds the event in Exception). The events the trigger will reach next, from blocks already at hand
//!   (the window's, or those its catch-up stream has received), go to the pool in the same job ([`Answers`]):
//!   filters have no effects, so evaluating early changes nothing but the number of hand-overs. Each output is
//!   pushed in order with the retry policy; the event's
//!   outcome goes through the state machine and is written in one store transaction with
//!   the new position. The position never moves past an event whose outcome is not recorded.
//! - Events that do not concern the trigger (another type, filtered out) move the position in memory only; the
//!   trigger's [`Checkpoint`] decides when that is written.
//! - Exception keeps the position and retries the same event on [`ExceptionSchedule`]; Failed ends the worker.
//! - Cancelling `stop` (an operator's command) abandons the event in flight at once: its outcome is not recorded,
//!   so it is pushed again when the trigger resumes from its position. Cancelling `shutdown` (the daemon
//!   stopping) lets the event in flight finish and be recorded, then ends the worker. Either abandons a filter
//!   evaluation in flight at once: nothing was pushed for that event yet.
//! - On a database several daemons share, the worker pushes only while its daemon surely holds the channel's
//!   lease (it waits otherwise, until the lease is renewed or the engine stops it), and ends when the store refuses
//!   a write as fenced: the channel belongs to another daemon now, which resumes from the stored position.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::behind::{Behind, Read};
use super::channel::{ChannelFeed, DECODE_RETRY, PrepareError};
use super::checkpoint::{Checkpoint, Next};
use super::def::TriggerDef;
use super::latency::{LatencyHistogram, Stage};
use super::outcome::{EventResult, PayloadDelivery, event_result};
use super::state::{Anchor, EventOutcome, Position};
use super::window::{BlockEvents, ChainEvent, Lookup};
use crate::config;
use crate::dispatch::retry::ExceptionSchedule;
use crate::dispatch::{Delivery, Dispatcher, PushKey};
use crate::fabric::decode::VerifyError;
use crate::fabric::deliver::DeliverError;
use crate::filter::{Answer, Envelope, Filter, FilterError, FilterPool, Limits};
use crate::store::StoreError;

/// How often a worker waiting for its channel's lease to be renewed looks again.
const LEASE_CHECK: std::time::Duration = std::time::Duration::from_millis(50);
/// The most events one filter job holds.
const FILTER_BATCH: usize = 32;
/// The most events one filter job holds for a trigger reading the window: the blocks are in memory anyway, but
/// every trigger of the channel keeps its own answers, and a channel may have a thousand triggers.
const WINDOW_FILTER_BATCH: usize = 8;

/// A trigger as the engine keeps it: its definition, its progress, its latency histogram.
#[derive(Debug)]
pub struct TriggerShared {
    /// The definition the worker runs with.
    pub def: Arc<TriggerDef>,
    /// Its progress, written by the worker (outcomes) and the engine (commands), read by the admin API.
    pub checkpoint: Checkpoint,
    /// Block received -> target answered, per delivered payload.
    pub latency: LatencyHistogram,
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

/// One event of a shared block, owned, as the filter pool takes it.
struct EventEnvelope {
    block: Arc<BlockEvents>,
    index: usize,
}

impl AsRef<Envelope> for EventEnvelope {
    fn as_ref(&self) -> &Envelope {
        self.block.events[self.index].envelope()
    }
}

/// The payloads event `index` of `block` yields for a trigger with `filter` (none: the envelope whole), the filter
/// evaluated on the shared [`FilterPool`] under `limits`. The worker and the filter tester both call this, so the
/// tester shows what the worker pushes. Dropping the future abandons the evaluation.
pub async fn payloads(
    filter: Option<&Filter>,
    limits: Limits,
    block: &Arc<BlockEvents>,
    index: usize,
) -> Result<Vec<Value>, FilterError> {
    match filter {
        None => Ok(vec![block.events[index].json().clone()]),
        Some(filter) => {
            let envelope = EventEnvelope {
                block: Arc::clone(block),
                index,
            };
            FilterPool::shared()
                .evaluate(filter, envelope, limits)
                .await
        }
    }
}

/// Where a trigger gets the block it needs next.
#[derive(Debug)]
pub enum Source {
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
pub fn next_source(lookup: Lookup, catching_up: bool, height: Option<u64>, number: u64) -> Source {
    match lookup {
        Lookup::Here(block) => Source::Window(block),
        Lookup::Gone => Source::ReadBehind,
        Lookup::NotYet if !catching_up || height == Some(number) => Source::Wait,
        Lookup::NotYet => Source::ReadBehind,
    }
}

/// Why a worker stops.
#[derive(Debug)]
enum Halt {
    /// `stop` or `shutdown` was cancelled.
    Stopped,
    /// The state machine stopped the trigger (Failed).
    Finished,
    /// The store refused a write: this daemon no longer holds the channel's lease.
    Fenced,
}

/// One trigger's worker; see the module documentation.
pub struct Worker {
    /// The trigger.
    pub shared: Arc<TriggerShared>,
    /// Its channel.
    pub feed: Arc<ChannelFeed>,
    /// Pushes payloads.
    pub dispatcher: Dispatcher,
    /// Abandon at once (operator command, or the end of the shutdown grace period).
    pub stop: CancellationToken,
    /// Finish the event in flight, then stop (daemon shutdown).
    pub shutdown: CancellationToken,
}

/// The worker's moving parts between blocks.
#[derive(Default)]
struct Moving {
    /// The catch-up stream, while the trigger is behind the window.
    catch_up: Option<Behind>,
    /// The Exception retry delays, while the trigger holds an event.
    exception: Option<ExceptionSchedule>,
    /// Filter answers for events the trigger has not reached yet.
    answers: Answers,
}

/// Filter answers worked out for events after the one in hand, in chain order. An answer belongs to one copy of
/// a block: a block read again (refused, or from another stream) is evaluated again.
#[derive(Default)]
struct Answers(VecDeque<(Arc<BlockEvents>, usize, Answer)>);

impl Answers {
    /// The answer for event `index` of `block`, if worked out; drops those for events before it.
    fn take(&mut self, block: &Arc<BlockEvents>, index: usize) -> Option<Answer> {
        while let Some((held, at, _)) = self.0.front() {
            let here = Arc::ptr_eq(held, block);
            if here && *at == index {
                let answer = self.0.pop_front().map(|(_, _, answer)| answer);
                if self.0.is_empty() {
                    // Most triggers hold no answers most of the time: give the room back.
                    self.0 = VecDeque::new();
                }
                return answer;
            }
            let before = held.number < block.number
                || (held.number == block.number && (!here || *at < index));
            if !before {
                return None;
            }
            self.0.pop_front();
        }
        None
    }
}

impl Worker {
    fn def(&self) -> &TriggerDef {
        &self.shared.def
    }

    fn checkpoint(&self) -> &Checkpoint {
        &self.shared.checkpoint
    }

    /// Runs until the trigger stops pushing, `stop` or `shutdown`.
    pub async fn run(self) {
        let mut moving = Moving::default();
        let halt = self.run_until_halted(&mut moving).await;
        if !self.stop.is_cancelled()
            && !matches!(halt, Halt::Fenced)
            && let Err(error) = self.checkpoint().flush().await
        {
            if error.is_fenced() {
                tracing::info!(trigger = %self.def().name, %error, "position not recorded at stop: the channel has another owner");
            } else {
                tracing::error!(trigger = %self.def().name, %error, "cannot record the trigger's position at stop; it resumes a little earlier");
            }
        }
        tracing::debug!(trigger = %self.def().name, ?halt, "trigger worker ended");
    }

    async fn run_until_halted(&self, moving: &mut Moving) -> Halt {
        if !self.checkpoint().progress().recorded
            && let Err(halt) = self.record_new_trigger().await
        {
            return halt;
        }
        loop {
            if !self.checkpoint().state().pushes() {
                return Halt::Finished;
            }
            let position = self.checkpoint().position();
            let block = match self.next_block(position.block, moving).await {
                Ok(block) => block,
                Err(halt) => return halt,
            };
            if let Err(error) = block.chains_onto(self.checkpoint().anchor()) {
                if let Err(halt) = self.refuse(&block, error, moving).await {
                    return halt;
                }
                continue;
            }
            if let Err(halt) = self.process_block(&block, position.index, moving).await {
                return halt;
            }
        }
    }

    /// Creates the store record of a trigger seen for the first time: `latest` means the block after the chain
    /// height at first sight, so the worker waits for the channel's first block.
    async fn record_new_trigger(&self) -> Result<(), Halt> {
        let position = match self.def().start {
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
        loop {
            match self.checkpoint().create(position).await {
                Ok(()) => return Ok(()),
                Err(error) => self.store_trouble(error).await?,
            }
        }
    }

    /// Logs a store failure, shows it, and waits a moment before the caller tries again.
    async fn store_trouble(&self, error: StoreError) -> Result<(), Halt> {
        if error.is_fenced() {
            tracing::warn!(trigger = %self.def().name, %error, "the channel's lease is lost: this daemon stops working on the trigger");
            return Err(Halt::Fenced);
        }
        tracing::error!(trigger = %self.def().name, %error, "cannot record the trigger's progress; retrying");
        self.checkpoint()
            .note_error(format!("cannot record progress: {error}"));
        tokio::select! {
            _ = self.stop.cancelled() => Err(Halt::Stopped),
            _ = tokio::time::sleep(DECODE_RETRY) => Ok(()),
        }
    }

    /// A block that does not chain onto the block the trigger finished before it: nothing of it is pushed. The
    /// stream it came from reads it again from the next peer (the trigger's catch-up stream, or the channel's).
    async fn refuse(
        &self,
        block: &BlockEvents,
        error: VerifyError,
        moving: &mut Moving,
    ) -> Result<(), Halt> {
        tracing::error!(trigger = %self.def().name, block = block.number, %error, "block refused: it does not chain onto the block the trigger finished before it");
        self.checkpoint()
            .note_error(format!("block {} refused: {error}", block.number));
        match moving.catch_up.as_mut() {
            Some(behind) => {
                behind.reject(block.number, error.to_string());
                Ok(())
            }
            None => {
                self.feed.distrust(block.number, error.to_string());
                tokio::select! {
                    _ = self.stop.cancelled() => Err(Halt::Stopped),
                    _ = self.shutdown.cancelled() => Err(Halt::Stopped),
                    _ = tokio::time::sleep(DECODE_RETRY) => Ok(()),
                }
            }
        }
    }

    /// Writes the position the trigger skipped to, when it is ahead of the store's; a failure is retried at the
    /// next flush (the trigger may re-read a few blocks after a crash, nothing more).
    async fn flush(&self) -> Result<(), Halt> {
        if let Err(error) = self.checkpoint().flush().await {
            if error.is_fenced() {
                return self.store_trouble(error).await;
            }
            tracing::error!(trigger = %self.def().name, %error, "cannot record the trigger's position; will try again");
        }
        Ok(())
    }

    /// The block `number`: from the window, or from the catch-up stream while behind it.
    async fn next_block(&self, number: u64, moving: &mut Moving) -> Result<Arc<BlockEvents>, Halt> {
        let mut heights = self.feed.watch_height();
        loop {
            if self.stop.is_cancelled() || self.shutdown.is_cancelled() {
                return Err(Halt::Stopped);
            }
            heights.borrow_and_update();
            let catching_up = moving.catch_up.is_some();
            let next = next_source(
                self.feed.lookup(number),
                catching_up,
                self.feed.stream_height(),
                number,
            );
            if catching_up && !matches!(next, Source::ReadBehind) {
                moving.catch_up = None;
                tracing::info!(trigger = %self.def().name, block = number, "caught up with the channel");
            }
            match next {
                Source::Window(block) => return Ok(block),
                Source::Wait => {
                    Box::pin(self.flush()).await?;
                    tokio::select! {
                        _ = self.stop.cancelled() => return Err(Halt::Stopped),
                        _ = self.shutdown.cancelled() => return Err(Halt::Stopped),
                        changed = heights.changed() => if changed.is_err() { return Err(Halt::Stopped) },
                    }
                }
                Source::ReadBehind => {
                    // Most often the reader holds the block already.
                    if let Some(block) = moving
                        .catch_up
                        .as_mut()
                        .filter(|behind| behind.serves(number))
                        .and_then(Behind::take_ready)
                    {
                        return Ok(block);
                    }
                    // Boxed, as `filtered` below: waiting on the reader and handling a trouble take room, and
                    // every idle worker's task would otherwise reserve it (a thousand triggers).
                    if let Some(block) = Box::pin(self.read_behind(number, moving)).await? {
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
        moving: &mut Moving,
    ) -> Result<Option<Arc<BlockEvents>>, Halt> {
        let fresh = !matches!(&moving.catch_up, Some(behind) if behind.serves(number));
        if fresh {
            // Its slot first: with one slot, waiting for a new one while holding the old would wait forever.
            moving.catch_up = None;
            tracing::info!(trigger = %self.def().name, block = number, "behind the channel's recent blocks; reading the chain from the trigger's position");
            let catch_up = tokio::select! {
                _ = self.stop.cancelled() => return Err(Halt::Stopped),
                _ = self.shutdown.cancelled() => return Err(Halt::Stopped),
                catch_up = self.feed.catch_up(number, self.stop.child_token(), self.def().name.as_str()) => catch_up,
            };
            moving.catch_up = Some(Behind::start(catch_up, Arc::clone(&self.feed)));
        }
        let Some(behind) = moving.catch_up.as_mut() else {
            return Ok(None);
        };
        let read = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(Halt::Stopped),
            read = behind.next() => read,
        };
        match read {
            Read::Ready(block) => Ok(Some(block)),
            Read::Unusable {
                number: got,
                error: PrepareError::Verify(error),
            } => {
                tracing::error!(trigger = %self.def().name, block = got, %error, "block fails verification; asking the next peer for it");
                self.checkpoint()
                    .note_error(format!("block {got} refused: {error}"));
                behind.reject(got, error.to_string());
                Ok(None)
            }
            Read::Unusable { number: got, error } => {
                tracing::error!(trigger = %self.def().name, block = got, %error, "block cannot be decoded; asking for it again");
                self.checkpoint().note_error(format!("block {got} {error}"));
                self.drop_catch_up(moving).await
            }
            Read::Failed(DeliverError::Shutdown { .. }) => Err(Halt::Stopped),
            Read::Failed(error) => {
                tracing::warn!(trigger = %self.def().name, %error, "catch-up stream error");
                self.checkpoint().note_error(error.to_string());
                Ok(None)
            }
            Read::Ended => {
                tracing::error!(trigger = %self.def().name, block = number, "the catch-up reader stopped; opening the stream again");
                self.checkpoint()
                    .note_error(format!("the catch-up reader stopped before block {number}"));
                self.drop_catch_up(moving).await
            }
        }
    }

    /// Drops the catch-up stream and waits [`DECODE_RETRY`] before the caller opens it again.
    async fn drop_catch_up(&self, moving: &mut Moving) -> Result<Option<Arc<BlockEvents>>, Halt> {
        moving.catch_up = None;
        tokio::select! {
            _ = self.stop.cancelled() => Err(Halt::Stopped),
            _ = self.shutdown.cancelled() => Err(Halt::Stopped),
            _ = tokio::time::sleep(DECODE_RETRY) => Ok(None),
        }
    }

    /// The filter's answer for event `index` of `block` (not worked out yet), evaluated in one pool job with the
    /// next events of the trigger's type in the blocks at hand, whose answers are kept for later.
    async fn filtered(
        &self,
        filter: &Filter,
        block: &Arc<BlockEvents>,
        index: usize,
        moving: &mut Moving,
    ) -> Answer {
        let batch = self.batch(block, index, moving);
        let positions: Vec<(Arc<BlockEvents>, usize)> = batch
            .iter()
            .map(|event| (Arc::clone(&event.block), event.index))
            .collect();
        let evaluation =
            FilterPool::shared().evaluate_many(filter, batch, self.def().filter_limits);
        // Meanwhile, a catch-up's reader decodes the next blocks.
        let answers = evaluation.await;
        let mut answers = positions.into_iter().zip(answers);
        let first = answers.next().map(|(_, answer)| answer);
        moving
            .answers
            .0
            .extend(answers.map(|((block, index), answer)| (block, index, answer)));
        first.unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Event `index` of `block` and the events of the trigger's type after it, in the blocks at hand (this one,
    /// those read ahead while catching up, the window's), up to [`FILTER_BATCH`] ([`WINDOW_FILTER_BATCH`] from the window).
    fn batch(&self, block: &Arc<BlockEvents>, index: usize, moving: &Moving) -> Vec<EventEnvelope> {
        let def = self.def();
        let most = if moving.catch_up.is_some() {
            FILTER_BATCH
        } else {
            WINDOW_FILTER_BATCH
        };
        let mut batch = vec![EventEnvelope {
            block: Arc::clone(block),
            index,
        }];
        let mut add = |block: &Arc<BlockEvents>, from: usize| {
            for (index, event) in block.events.iter().enumerate().skip(from) {
                if batch.len() >= most {
                    return false;
                }
                if def.receives(event) {
                    batch.push(EventEnvelope {
                        block: Arc::clone(block),
                        index,
                    });
                }
            }
            true
        };
        if !add(block, index + 1) {
            return batch;
        }
        match &moving.catch_up {
            Some(behind) => {
                behind.visit_ahead(|ahead| add(ahead, 0));
            }
            None => {
                let mut number = block.number;
                while let Some(next) = number.checked_add(1)
                    && let Lookup::Here(ahead) = self.feed.lookup(next)
                    && add(&ahead, 0)
                {
                    number = next;
                }
            }
        }
        batch
    }

    /// Processes the events of `block` from `start` on.
    async fn process_block(
        &self,
        block: &Arc<BlockEvents>,
        start: u32,
        moving: &mut Moving,
    ) -> Result<(), Halt> {
        let def = self.def();
        let len = block.events.len();
        let mut index = usize::try_from(start).unwrap_or(usize::MAX);
        while index < len {
            let event = &block.events[index];
            let at = Position {
                block: block.number,
                index: u32::try_from(index).unwrap_or(u32::MAX),
            };
            let after = position_after(block.number, index, len);
            if !def.receives(event) {
                self.checkpoint().skip_to(after, block.anchor());
                index += 1;
                continue;
            }
            let stages = self.feed.stages();
            let started = Instant::now();
            stages.record(
                Stage::Wait,
                started.saturating_duration_since(block.ready_at),
            );
            // Off the async runtime, under the trigger's limits; a stopped worker stops waiting at once (and the
            // evaluation stops at its next step).
            let worked_out = def
                .filter
                .as_ref()
                .and_then(|_| moving.answers.take(block, index));
            let payloads = match (&def.filter, worked_out) {
                (_, Some(answer)) => answer,
                (None, None) => Ok(vec![event.json().clone()]),
                (Some(filter), None) => tokio::select! {
                    _ = self.stop.cancelled() => return Err(Halt::Stopped),
                    _ = self.shutdown.cancelled() => return Err(Halt::Stopped),
                    answer = Box::pin(self.filtered(filter, block, index, moving)) => answer,
                },
            }
            .map_err(|error| format!("the filter failed on event {} ({at}): {error}", event.id));
            let filtered = Instant::now();
            stages.record(Stage::Filter, filtered - started);
            let pushed = match payloads {
                Ok(payloads) if payloads.is_empty() => {
                    self.checkpoint().skip_to(after, block.anchor());
                    index += 1;
                    continue;
                }
                Ok(payloads) => Box::pin(self.push_all(block, event, at, payloads)).await?,
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
            let pushed_at = Instant::now();
            let next = Box::pin(self.record(&pushed, (at, after), block.anchor())).await?;
            let committed = Instant::now();
            stages.record(Stage::Push, pushed_at - filtered);
            stages.record(Stage::Commit, committed - pushed_at);
            trace_stages(def, event, block, [started, filtered, pushed_at, committed]);
            match next {
                Next::Continue => {
                    moving.exception = None;
                    index += 1;
                }
                Next::Stop => return Err(Halt::Finished),
                Next::Hold => {
                    // Holding the event for seconds at least: the catch-up slot serves another trigger meanwhile.
                    moving.catch_up = None;
                    let delay = moving
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
                }
            }
            if self.shutdown.is_cancelled() {
                return Err(Halt::Stopped);
            }
        }
        // An empty block, or a stored index past the block's end: the block is done.
        if self.checkpoint().position().block == block.number {
            self.checkpoint().skip_to(
                Position::block_start(block.number.saturating_add(1)),
                block.anchor(),
            );
        }
        if let Err(error) = self.checkpoint().block_done().await {
            if error.is_fenced() {
                return self.store_trouble(error).await;
            }
            tracing::error!(trigger = %def.name, %error, "cannot record the trigger's position; will try again");
        }
        Ok(())
    }

    /// Pushes an event's payloads in order; stops at a configuration error.
    async fn push_all(
        &self,
        block: &BlockEvents,
        event: &ChainEvent,
        at: Position,
        payloads: Vec<Value>,
    ) -> Result<Pushed, Halt> {
        let def = self.def();
        let mut deliveries = Vec::with_capacity(payloads.len());
        let mut retries = 0;
        for (output, payload) in payloads.into_iter().enumerate() {
            let key = PushKey {
                trigger: def.name.as_str(),
                channel: def.channel.as_str(),
                block: at.block,
                event_index: at.index,
                output,
                envelope_id: &event.id,
            };
            self.until_lease_valid().await?;
            let delivery = tokio::select! {
                _ = self.stop.cancelled() => return Err(Halt::Stopped),
                delivery = self.dispatcher.deliver(&def.target, &payload, &key, &def.retry) => delivery,
            };
            let (attempts, blocked) = match &delivery {
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
            deliveries.push(PayloadDelivery { payload, delivery });
            if blocked {
                break;
            }
        }
        Ok(Pushed {
            result: event_result(&event.id, at, &deliveries),
            retries,
        })
    }

    /// Waits while this daemon is not sure it still holds the channel's lease (its renewal is late, or it was
    /// paused): the lease loop renews it, or the engine stops the worker once it is lost.
    async fn until_lease_valid(&self) -> Result<(), Halt> {
        let mut logged = false;
        while !self.checkpoint().lease_valid() {
            if !logged {
                tracing::warn!(trigger = %self.def().name, "the channel's lease may have expired: not pushing until it is renewed");
                logged = true;
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Err(Halt::Stopped),
                _ = tokio::time::sleep(LEASE_CHECK) => {}
            }
        }
        Ok(())
    }

    /// Records an event's outcome, retrying the store until it takes it (or the worker is stopped).
    async fn record(
        &self,
        pushed: &Pushed,
        (at, after): (Position, Position),
        anchor: Anchor,
    ) -> Result<Next, Halt> {
        loop {
            match self
                .checkpoint()
                .record(
                    self.def(),
                    (at, after),
                    anchor,
                    &pushed.result,
                    pushed.retries,
                )
                .await
            {
                Ok(next) => return Ok(next),
                Err(error) => self.store_trouble(error).await?,
            }
        }
    }
}

/// Logs where a pushed event's time went (target `chaintrigger::stages`, debug level, off by default): the
/// block's arrival as wall-clock nanoseconds, so it can be matched with a peer's or a handler's clock on the same
/// machine, then microseconds per [`Stage`]. `marks` are the worker's start, filter end, push end and commit end.
fn trace_stages(def: &TriggerDef, event: &ChainEvent, block: &BlockEvents, marks: [Instant; 4]) {
    if !tracing::enabled!(target: "chaintrigger::stages", tracing::Level::DEBUG) {
        return;
    }
    let [started, filtered, pushed, committed] = marks;
    let since_arrival = block.received_at.elapsed();
    let received_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(since_arrival)
        .as_nanos();
    let received_unix_ns = u64::try_from(received_unix_ns).unwrap_or(u64::MAX);
    let micros = |from: Instant, to: Instant| {
        u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX)
    };
    tracing::debug!(
        target: "chaintrigger::stages",
        trigger = %def.name,
        event = %event.id,
        block = block.number,
        received_unix_ns,
        decode_us = micros(block.received_at, block.ready_at),
        wait_us = micros(block.ready_at, started),
        filter_us = micros(started, filtered),
        push_us = micros(filtered, pushed),
        commit_us = micros(pushed, committed),
        "event stages"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(lookup: Lookup, catching_up: bool, height: Option<u64>, number: u64) -> String {
        match next_source(lookup, catching_up, height, number) {
            Source::Window(block) => format!("window {}", block.number),
            Source::Wait => "wait".into(),
            Source::ReadBehind => "read behind".into(),
        }
    }

    #[test]
    fn a_trigger_reads_behind_only_while_the_window_cannot_serve_it() {
        let here = || {
            Lookup::Here(Arc::new(BlockEvents {
                number: 7,
                hash: [0; 32],
                previous_hash: bytes::Bytes::new(),
                received_at: std::time::Instant::now(),
                ready_at: std::time::Instant::now(),
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
