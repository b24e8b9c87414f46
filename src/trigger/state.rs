//! The trigger state machine (pure): states, failure accounting and what each outcome or operator command
//! leads to.
//!
//! | state | pushes? | left by |
//! |---|---|---|
//! | Running | yes | a configuration error (Exception), failures over the threshold (Failed), disable, delete |
//! | Exception | retries the held event slowly | that event's outcome (Running, or Failed), disable, enable, delete |
//! | Failed | no | enable (failure count reset), disable, delete |
//! | Disabled | no; events meanwhile are dropped | enable, delete |
//! | Deleted | never again | nothing: permanent |
//!
//! Outcomes of an event pushed before a command took effect (in flight while the operator disabled the trigger)
//! are still recorded: a delivered event moves the position, a discarded one becomes a dead letter. They no
//! longer change the state.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::FailureThreshold;

/// Where a trigger is in its channel: the next event to push is event `index` of block `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The block being processed.
    pub block: u64,
    /// The index, in chain order within the block, of the next event to push.
    pub index: u32,
}

impl Position {
    /// The start of block `block`.
    pub fn block_start(block: u64) -> Self {
        Position { block, index: 0 }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {} event {}", self.block, self.index)
    }
}

/// The header hash of the last block a trigger finished: the next block it reads must chain onto it
/// (`header.previous_hash`), whichever peer serves it, also after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Anchor {
    /// The block finished.
    pub block: u64,
    /// Its header hash.
    pub hash: [u8; 32],
}

/// A trigger's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Pushing events.
    Running,
    /// A configuration error: holds its position, retries the same event slowly.
    Exception,
    /// More events discarded than its threshold allows: stopped until enabled.
    Failed,
    /// Stopped by an operator (or by configuration); events meanwhile are dropped.
    Disabled,
    /// Removed by an operator; stays removed across restarts even while its configuration entry remains.
    Deleted,
}

impl State {
    /// Every state, for tests and for listing.
    pub const ALL: [State; 5] = [
        State::Running,
        State::Exception,
        State::Failed,
        State::Disabled,
        State::Deleted,
    ];

    /// The name shown by the admin API and stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "Running",
            State::Exception => "Exception",
            State::Failed => "Failed",
            State::Disabled => "Disabled",
            State::Deleted => "Deleted",
        }
    }

    /// Parses [`State::as_str`]'s names.
    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether a trigger in this state pushes events (or retries its held event).
    pub fn pushes(self) -> bool {
        matches!(self, State::Running | State::Exception)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of a trigger's status that the state machine decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The trigger's state.
    pub state: State,
    /// Events discarded since the trigger was created or last enabled.
    pub failures: u64,
    /// The error that put the trigger where it is, or the last discard's; shown to operators.
    pub last_error: Option<String>,
}

impl Status {
    /// A new trigger: Running, or Disabled when its configuration says `enabled = false`.
    pub fn new(enabled: bool) -> Self {
        Status {
            state: if enabled {
                State::Running
            } else {
                State::Disabled
            },
            failures: 0,
            last_error: None,
        }
    }
}

/// The final outcome of one event for a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Pushed (every filter output delivered), or nothing to push (the filter yielded nothing).
    Delivered,
    /// Retries ran out or the target refused it for good: a dead letter and one failure.
    Discarded { error: String },
    /// A configuration error (target not found, access denied, unreachable, filter failing at run time).
    Blocked { reason: String },
}

/// An operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop pushing; events meanwhile are dropped.
    Disable,
    /// Resume, with the failure count reset.
    Enable(EnableFrom),
    /// Remove permanently.
    Delete,
}

/// Where an enabled trigger resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnableFrom {
    /// The channel's next block (BaaS's behaviour, the default): what happened meanwhile is skipped.
    #[default]
    Latest,
    /// The stored position: what happened meanwhile is pushed.
    Stored,
    /// The start of a given block.
    Block(u64),
}

/// What must happen after a transition, in order. The trigger's checkpoint applies the effects on its progress
/// (dead letters, position), its worker the ones on pushing (hold the event, stop), the engine the one on the
/// worker's life (start it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Keep the event's discarded payloads as dead letters.
    WriteDeadLetters,
    /// The event is done: move the position past it.
    AdvancePosition,
    /// Keep the position and push the same event again after the Exception delay.
    RetryLater,
    /// Stop the trigger's worker (it must not push anything more).
    StopWorker,
    /// Move the position to where the operator enables the trigger from.
    MoveTo(EnableFrom),
    /// Start a worker for the trigger (commands are applied while none runs).
    StartWorker,
}

/// The new status and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The status after the input.
    pub status: Status,
    /// What the engine must do, in order.
    pub effects: Vec<Effect>,
}

/// Why a command was refused: the trigger was deleted, and a deleted trigger cannot be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the trigger was deleted; a deleted trigger cannot be changed")]
pub struct TriggerDeleted;

/// The transition for an event's outcome.
pub fn on_outcome(
    status: &Status,
    threshold: FailureThreshold,
    outcome: &EventOutcome,
) -> Transition {
    let mut next = status.clone();
    let effects = match (status.state, outcome) {
        (State::Deleted, _) => Vec::new(),
        (State::Running | State::Exception, EventOutcome::Delivered) => {
            if status.state == State::Exception {
                next.state = State::Running;
                next.last_error = None;
            }
            vec![Effect::AdvancePosition]
        }
        (State::Running | State::Exception, EventOutcome::Discarded { error }) => {
            next.failures = status.failures.saturating_add(1);
            next.last_error = Some(error.clone());
            let mut effects = vec![Effect::WriteDeadLetters, Effect::AdvancePosition];
            if threshold.is_exceeded_by(next.failures) {
                next.state = State::Failed;
                effects.push(Effect::StopWorker);
            } else {
                next.state = State::Running;
            }
            effects
        }
        (State::Running | State::Exception, EventOutcome::Blocked { reason }) => {
            next.state = State::Exception;
            next.last_error = Some(reason.clone());
            vec![Effect::RetryLater]
        }
        // An outcome of an event that was in flight when the trigger stopped: recorded, nothing more.
        (State::Failed | State::Disabled, EventOutcome::Delivered) => vec![Effect::AdvancePosition],
        (State::Failed | State::Disabled, EventOutcome::Discarded { .. }) => {
            vec![Effect::WriteDeadLetters, Effect::AdvancePosition]
        }
        (State::Failed | State::Disabled, EventOutcome::Blocked { .. }) => Vec::new(),
    };
    Transition {
        status: next,
        effects,
    }
}

/// The transition for an operator's command. Commands are applied to a quiescent trigger: the engine stops its
/// worker first (the event in flight is abandoned, its outcome not recorded), so no outcome races a command.
pub fn on_command(status: &Status, command: Command) -> Result<Transition, TriggerDeleted> {
    if status.state == State::Deleted {
        return Err(TriggerDeleted);
    }
    let (status, effects) = match command {
        Command::Disable => (
            Status {
                state: State::Disabled,
                ..status.clone()
            },
            Vec::new(),
        ),
        Command::Enable(from) => (
            Status {
                state: State::Running,
                failures: 0,
                last_error: None,
            },
            vec![Effect::MoveTo(from), Effect::StartWorker],
        ),
        Command::Delete => (
            Status {
                state: State::Deleted,
                ..status.clone()
            },
            Vec::new(),
        ),
    };
    Ok(Transition { status, effects })
}

#[cfg(test)]
mod tests;
