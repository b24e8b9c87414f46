//! One trigger's progress and its only writer.
//!
//! A [`Checkpoint`] holds what a trigger has done (state, failure count, position, counters) in memory, decides
//! when that is written, and makes every write of the trigger's store record: its creation, each event's outcome,
//! the position moved past events that pushed nothing, and operators' commands. It applies the state machine's
//! effects on progress (dead letters, position); the worker applies the ones on pushing, the engine the one on the
//! worker's life.
//!
//! Invariants:
//! - The stored position never passes an event whose outcome is not recorded: an outcome and the position after
//!   it are written in one store transaction, and the in-memory progress changes only once that write succeeded.
//! - The in-memory position may run ahead of the stored one only over events that push nothing (another type,
//!   filtered out). It is written at the next outcome, every [`FLUSH_EVERY_BLOCKS`] blocks, before the worker waits
//!   for a new block, and when the worker stops. A crash in between re-reads those events and skips them again:
//!   nothing is pushed twice because of it.
//! - Writes never race: outcomes come from the trigger's one worker, and the engine applies a command only while
//!   no worker runs.
//! - On a database several daemons share, every write carries the fence of the channel's lease this daemon holds
//!   ([`Checkpoint::hold`]) and is refused without one: a daemon that lost the channel cannot move the trigger.
//!   A daemon that takes a channel over reads the stored progress again ([`Checkpoint::resume`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use super::def::TriggerDef;
use super::lease::HeldLease;
use super::outcome::EventResult;
use super::state::{
    self, Anchor, Command, Effect, EnableFrom, Position, State, Status, Transition,
};
use crate::config::{StartPosition, TriggerName};
use crate::store::{self, Fence, OutcomeRecord, Store, StoreError, TriggerRecord};

/// Blocks a trigger may pass without writing its position when it pushes nothing: bounds what a crash makes it
/// re-read, without a write per block while it catches up.
pub const FLUSH_EVERY_BLOCKS: u32 = 64;

/// The highest block a position can name: the store keeps block numbers as SQLite integers (signed 64-bit).
pub const MAX_BLOCK: u64 = i64::MAX as u64;

/// A trigger's progress as the admin API and the worker read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// State, failure count, last error.
    pub status: Status,
    /// The next event to process (in memory: the store may be up to [`FLUSH_EVERY_BLOCKS`] blocks behind on
    /// events that pushed nothing).
    pub position: Position,
    /// The header hash of block `position.block - 1` as the trigger read it, when known: the next block the
    /// trigger reads must chain onto it. Unknown after a jump (enable from a block or the latest one).
    pub anchor: Option<Anchor>,
    /// Payloads delivered over the trigger's life.
    pub delivered: u64,
    /// Payloads discarded over the trigger's life.
    pub discarded: u64,
    /// Attempts beyond the first since the daemon started (not stored: a rate, not a total).
    pub retries: u64,
    /// When `status.last_error` was set, so an operator can tell an old error from a current one.
    pub last_error_at: Option<DateTime<Utc>>,
    /// When an operator last enabled the trigger since the daemon started: explains a jump in its position.
    pub enabled_at: Option<DateTime<Utc>>,
    /// Whether the store has a record of the trigger. A new `latest` trigger has none until its worker has seen
    /// the chain height it starts at.
    pub recorded: bool,
}

impl Progress {
    /// The progress a stored record says (what another daemon owning the trigger's channel last wrote).
    pub fn from_record(record: &TriggerRecord) -> Self {
        Progress {
            status: record.status.clone(),
            position: record.position,
            anchor: record.anchor,
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

    fn unrecorded(def: &TriggerDef) -> Self {
        Progress {
            status: Status::new(def.enabled),
            position: Position::block_start(match def.start {
                StartPosition::Block(block) => block,
                StartPosition::Latest => 0,
            }),
            anchor: None,
            delivered: 0,
            discarded: 0,
            retries: 0,
            last_error_at: None,
            enabled_at: None,
            recorded: false,
        }
    }
}

/// What the worker does after an event's outcome is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on with the next event.
    Continue,
    /// Exception: keep the position and push the same event again later.
    Hold,
    /// The trigger stopped pushing (Failed): end the worker.
    Stop,
}

/// Why an operator's command was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The trigger was deleted: nothing can change it any more.
    #[error(
        "trigger `{0}` was deleted; a deleted trigger cannot be changed (remove it from the configuration file)"
    )]
    Deleted(TriggerName),
    /// Where the command would move the trigger is not a block it can start at.
    #[error("{0}")]
    Invalid(String),
    /// The command needs something the daemon does not know yet (the chain height); trying again later helps.
    #[error("{0}")]
    NotYet(String),
    /// The store refused the write; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One trigger's progress and its store record; see the module documentation.
pub struct Checkpoint {
    /// The trigger (the record's key).
    name: TriggerName,
    /// Where progress is kept.
    store: Arc<dyn Store>,
    /// The progress and the flush policy's count, behind one lock so readers see them consistent.
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("name", &self.name)
            .field("progress", &self.lock().progress)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    /// What the trigger has done, as far as this process knows.
    progress: Progress,
    /// Blocks passed since the position was last written, when the in-memory position is ahead of the store's.
    unwritten_blocks: Option<u32>,
    /// The lease of the trigger's channel this daemon holds, when it holds it.
    lease: Option<Arc<HeldLease>>,
}

impl Checkpoint {
    /// The checkpoint of a trigger, from its stored record if it has one (else from its definition).
    pub fn new(def: &TriggerDef, store: Arc<dyn Store>, record: Option<&TriggerRecord>) -> Self {
        let progress = match record {
            Some(record) => Progress::from_record(record),
            None => Progress::unrecorded(def),
        };
        Checkpoint {
            name: def.name.clone(),
            store,
            inner: Mutex::new(Inner {
                progress,
                unwritten_blocks: None,
                lease: None,
            }),
        }
    }

    /// Sets (or clears) the lease every write is made under.
    pub fn hold(&self, lease: Option<Arc<HeldLease>>) {
        self.lock().lease = lease;
    }

    /// Whether this daemon surely still holds the channel's lease now (always, on a database of one daemon).
    pub fn lease_valid(&self) -> bool {
        let lease = self.lock().lease.clone();
        match lease {
            Some(lease) => lease.valid_at(std::time::Instant::now()),
            None => !self.store.shared(),
        }
    }

    /// Takes the stored progress as the trigger's (another daemon may have moved it): a daemon taking the channel
    /// over resumes from there. Keeps what only this process counts (retries, when enabled).
    pub fn resume(&self, def: &TriggerDef, record: Option<&TriggerRecord>) {
        let mut inner = self.lock();
        let mut progress = match record {
            Some(record) => Progress::from_record(record),
            None => Progress::unrecorded(def),
        };
        progress.retries = inner.progress.retries;
        progress.enabled_at = inner.progress.enabled_at;
        inner.progress = progress;
        inner.unwritten_blocks = None;
    }

    /// The fence of the next write: the held lease's; on a shared database, a write without one is refused.
    fn fence(&self) -> Result<Option<Fence>, StoreError> {
        let lease = self.lock().lease.clone();
        match lease {
            Some(lease) => Ok(Some(lease.fence().clone())),
            None if self.store.shared() => Err(StoreError::Unowned {
                trigger: self.name.to_string(),
            }),
            None => Ok(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere leaves plain values behind: still readable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The trigger's progress right now.
    pub fn progress(&self) -> Progress {
        self.lock().progress.clone()
    }

    /// The trigger's state right now.
    pub fn state(&self) -> State {
        self.lock().progress.status.state
    }

    /// The next event to process.
    pub fn position(&self) -> Position {
        self.lock().progress.position
    }

    /// Shows an error that changes nothing else (a stream or store trouble the worker retries).
    pub fn note_error(&self, message: String) {
        let mut inner = self.lock();
        inner.progress.status.last_error = Some(message);
        inner.progress.last_error_at = Some(Utc::now());
    }

    /// Creates the store record of a trigger seen for the first time, starting at `position`. An existing record
    /// wins (a restart never resets progress) and becomes the progress.
    pub async fn create(&self, position: Position) -> Result<(), StoreError> {
        let status = self.lock().progress.status.clone();
        let name = self.name.clone();
        let fence = self.fence()?;
        let record = store::blocking(&self.store, move |store| {
            store.ensure_trigger(&name, &status, position, SystemTime::now(), fence.as_ref())
        })
        .await?;
        tracing::info!(trigger = %self.name, position = %record.position, state = %record.status.state, "new trigger recorded");
        self.lock().progress = Progress::from_record(&record);
        Ok(())
    }

    /// The header hash the next block the trigger reads must chain onto, when known.
    pub fn anchor(&self) -> Option<Anchor> {
        self.lock().progress.anchor
    }

    /// Moves the in-memory position past events that push nothing; written later (see the module docs). `block`
    /// is the block being read: once the position leaves it, it becomes the anchor.
    pub fn skip_to(&self, position: Position, block: Anchor) {
        let mut inner = self.lock();
        inner.progress.anchor = anchor_after(position, block, inner.progress.anchor);
        inner.progress.position = position;
        inner.unwritten_blocks.get_or_insert(0);
    }

    /// Counts a block done; writes the position once [`FLUSH_EVERY_BLOCKS`] blocks passed unwritten.
    pub async fn block_done(&self) -> Result<(), StoreError> {
        let due = {
            let mut inner = self.lock();
            match inner.unwritten_blocks.as_mut() {
                Some(blocks) => {
                    *blocks += 1;
                    *blocks >= FLUSH_EVERY_BLOCKS
                }
                None => false,
            }
        };
        if due { self.flush().await } else { Ok(()) }
    }

    /// Writes the in-memory position when it is ahead of the stored one.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (status, position, anchor) = {
            let inner = self.lock();
            if inner.unwritten_blocks.is_none() || inner.progress.status.state == State::Deleted {
                return Ok(());
            }
            (
                inner.progress.status.clone(),
                inner.progress.position,
                inner.progress.anchor,
            )
        };
        let name = self.name.clone();
        let fence = self.fence()?;
        store::blocking(&self.store, move |store| {
            store.record_outcome(
                &OutcomeRecord {
                    trigger: &name,
                    status: &status,
                    position,
                    anchor,
                    delivered: 0,
                    discarded: 0,
                    dead_letters: &[],
                    at: SystemTime::now(),
                },
                fence.as_ref(),
            )
        })
        .await?;
        let mut inner = self.lock();
        // Unless an outcome moved it meanwhile (it cannot: one worker), the store now has this position.
        if inner.progress.position == position {
            inner.unwritten_blocks = None;
        }
        Ok(())
    }

    /// Records the outcome of the event at `at` (whose successor is `after`) of `block`: runs the state machine,
    /// applies its effects on progress and writes them in one transaction. `retries` counts the attempts beyond
    /// the first.
    pub async fn record(
        &self,
        def: &TriggerDef,
        (at, after): (Position, Position),
        block: Anchor,
        result: &EventResult,
        retries: u64,
    ) -> Result<Next, StoreError> {
        let (before, anchor_before) = {
            let inner = self.lock();
            (inner.progress.status.clone(), inner.progress.anchor)
        };
        let transition = state::on_outcome(&before, def.threshold, &result.outcome);
        let mut position = at;
        let mut dead_letters: &[store::NewDeadLetter] = &[];
        let mut next = Next::Continue;
        for effect in &transition.effects {
            match effect {
                Effect::WriteDeadLetters => dead_letters = &result.dead_letters,
                Effect::AdvancePosition => position = after,
                Effect::RetryLater => next = Next::Hold,
                Effect::StopWorker => next = Next::Stop,
                Effect::MoveTo(_) | Effect::StartWorker => {
                    unreachable!("an outcome never moves or starts a worker")
                }
            }
        }
        let discarded = dead_letters.len() as u64;
        let status = transition.status;
        let anchor = anchor_after(position, block, anchor_before);
        let (name, written, letters) = (self.name.clone(), status.clone(), dead_letters.to_vec());
        let delivered = result.delivered;
        let fence = self.fence()?;
        store::blocking(&self.store, move |store| {
            store.record_outcome(
                &OutcomeRecord {
                    trigger: &name,
                    status: &written,
                    position,
                    anchor,
                    delivered,
                    discarded,
                    dead_letters: &letters,
                    at: SystemTime::now(),
                },
                fence.as_ref(),
            )
        })
        .await?;
        let mut inner = self.lock();
        inner.unwritten_blocks = None;
        let progress = &mut inner.progress;
        if status.last_error.is_some() && status.last_error != progress.status.last_error
            || next == Next::Hold
            || discarded > 0
        {
            progress.last_error_at = Some(Utc::now());
        }
        if before.state != status.state {
            tracing::info!(trigger = %self.name, from = %before.state, to = %status.state, error = status.last_error.as_deref().unwrap_or(""), "trigger state changed");
        }
        progress.status = status;
        progress.position = position;
        progress.anchor = anchor;
        progress.delivered += result.delivered;
        progress.discarded += discarded;
        progress.retries += retries;
        Ok(next)
    }

    /// Applies an operator's command to the quiescent trigger (no worker runs): the state machine's transition,
    /// the position it moves to, written at once. Returns the transition so the engine can start a worker.
    pub async fn command(
        &self,
        def: &TriggerDef,
        command: Command,
        chain_height: Option<u64>,
    ) -> Result<Transition, CommandError> {
        let current = self.progress();
        let transition = state::on_command(&current.status, command)
            .map_err(|_| CommandError::Deleted(def.name.clone()))?;
        let latest = || {
            chain_height.map(Position::block_start).ok_or_else(|| {
                CommandError::NotYet(format!(
                    "the height of channel `{}` is not known yet (no block received); try again, or enable from a block number",
                    def.channel
                ))
            })
        };
        // A trigger seen for the first time has no stored position yet: its configured start is it.
        let stored = if current.recorded {
            current.position
        } else {
            match def.start {
                StartPosition::Block(block) => Position::block_start(block),
                StartPosition::Latest => latest()?,
            }
        };
        let mut position = stored;
        let mut anchor = current.anchor.filter(|_| current.recorded);
        for effect in &transition.effects {
            if let Effect::MoveTo(from) = effect {
                position = match *from {
                    EnableFrom::Latest => latest()?,
                    EnableFrom::Stored => stored,
                    EnableFrom::Block(block) => {
                        check_start_block(block, chain_height, &def.channel)?
                    }
                };
                if position != stored {
                    // A jump: the block before the new position was not read by this trigger.
                    anchor = None;
                }
            }
        }
        let status = transition.status.clone();
        let now = SystemTime::now();
        let (name, saved, recorded) = (self.name.clone(), status.clone(), current.recorded);
        let fence = self.fence()?;
        store::blocking(&self.store, move |store| {
            if !recorded {
                store.ensure_trigger(&name, &saved, stored, now, fence.as_ref())?;
            }
            store.save_status(&name, &saved, Some((position, anchor)), now, fence.as_ref())
        })
        .await?;
        tracing::info!(trigger = %self.name, ?command, from = %current.status.state, to = %status.state, %position, "trigger command applied");
        let mut inner = self.lock();
        inner.unwritten_blocks = None;
        let progress = &mut inner.progress;
        progress.recorded = true;
        progress.status = status;
        progress.position = position;
        progress.anchor = anchor;
        progress.last_error_at = None;
        if matches!(command, Command::Enable(_)) {
            progress.enabled_at = Some(DateTime::<Utc>::from(now));
        }
        Ok(transition)
    }
}

/// The anchor once the position is `position`, `block` being the block just read: that block when the position
/// has just left it for the next, else what it was.
fn anchor_after(position: Position, block: Anchor, before: Option<Anchor>) -> Option<Anchor> {
    if block.block.checked_add(1) == Some(position.block) {
        Some(block)
    } else {
        before
    }
}

/// A block an operator may enable a trigger from: one the store can keep, and not beyond the chain's next block
/// (a trigger there would wait silently for blocks that may never come; the operator most likely mistyped).
fn check_start_block(
    block: u64,
    chain_height: Option<u64>,
    channel: &impl std::fmt::Display,
) -> Result<Position, CommandError> {
    if block > MAX_BLOCK {
        return Err(CommandError::Invalid(format!(
            "block {block} is beyond the highest block number a position can hold ({MAX_BLOCK})"
        )));
    }
    if let Some(height) = chain_height
        && block > height
    {
        return Err(CommandError::Invalid(format!(
            "block {block} is beyond the head of channel `{channel}` (its newest block is {}); enable from a block up to {height}, where {height} starts with the next block",
            height.saturating_sub(1)
        )));
    }
    Ok(Position::block_start(block))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_blocks_must_be_storable_and_not_beyond_the_next_block() {
        assert_eq!(
            check_start_block(5, Some(10), &"ch").unwrap(),
            Position::block_start(5)
        );
        assert_eq!(
            check_start_block(10, Some(10), &"ch").unwrap(),
            Position::block_start(10),
            "the next block: waits for it"
        );
        let beyond = check_start_block(11, Some(10), &"ch").unwrap_err();
        assert!(
            beyond
                .to_string()
                .contains("beyond the head of channel `ch`")
                && beyond.to_string().contains("newest block is 9"),
            "{beyond}"
        );
        let huge = check_start_block(u64::MAX, None, &"ch").unwrap_err();
        assert!(huge.to_string().contains("18446744073709551615"), "{huge}");
        assert_eq!(
            check_start_block(1_000, None, &"ch").unwrap(),
            Position::block_start(1_000),
            "height unknown: taken as asked"
        );
    }
}
