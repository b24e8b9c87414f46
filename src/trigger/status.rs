//! What the engine reports about its triggers and channels, in its own terms; the admin API turns these into its
//! stable JSON shapes.

use chrono::{DateTime, Utc};

use super::checkpoint::Progress;
use crate::config::{ChannelName, EventSelector, FailureThreshold, TriggerName};

/// One trigger as the engine sees it right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSnapshot {
    /// Its name.
    pub name: TriggerName,
    /// Its channel.
    pub channel: ChannelName,
    /// The event types it receives.
    pub selector: EventSelector,
    /// Its target without secrets (see [`super::def::target_label`]).
    pub target: String,
    /// Discards tolerated before Failed.
    pub threshold: FailureThreshold,
    /// State, position, counters.
    pub progress: Progress,
    /// Its channel's height (number of blocks), once known.
    pub chain_height: Option<u64>,
}

/// An error with the time it happened, so an operator can tell an old one from a current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedError {
    /// What went wrong (never containing credentials).
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One channel's stream as the engine sees it right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSnapshot {
    /// The channel.
    pub name: ChannelName,
    /// Its height (number of blocks) as last seen on the stream.
    pub chain_height: Option<u64>,
    /// The peer the stream is connected to, `None` while disconnected.
    pub peer: Option<String>,
    /// How many times the stream was re-established since the daemon started.
    pub reconnects: u64,
    /// The latest stream or decode error.
    pub last_error: Option<TimedError>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Triggers new in the file, now running from their configured start.
    pub added: Vec<TriggerName>,
    /// Triggers gone from the file, now stopped (their stored progress is kept).
    pub removed: Vec<TriggerName>,
    /// Triggers whose definition changed, restarted at their stored position.
    pub changed: Vec<TriggerName>,
    /// Triggers still in the file that were deleted over the API, and so stay deleted.
    pub still_deleted: Vec<TriggerName>,
}

/// How pushing one dead letter again went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repushed {
    /// The dead letter's id.
    pub id: u64,
    /// Why the target did not take it this time; `None` when it did.
    pub error: Option<String>,
}
