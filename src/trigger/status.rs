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
    /// The daemon working on its channel (this one, or another sharing the database), `None` while nobody
    /// holds the channel's lease.
    pub owner: Option<String>,
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
    /// Its height (number of blocks): the highest its stream has seen or any peer reports.
    pub chain_height: Option<u64>,
    /// The peer the stream is connected to, `None` while disconnected.
    pub peer: Option<String>,
    /// How many times the stream was re-established since the daemon started.
    pub reconnects: u64,
    /// The latest stream or decode error.
    pub last_error: Option<TimedError>,
    /// True while the stream is established (connection up, request sent), even before a block comes.
    pub connected: bool,
    /// True once the channel's stream has been established, by any of its subscriptions, and from then on.
    pub connected_once: bool,
    /// Every configured peer, in configuration order.
    pub peers: Vec<PeerSnapshot>,
    /// The streams of triggers reading blocks older than the channel's window.
    pub catch_up: CatchUpSnapshot,
    /// How its events are rendered now, and where that came from (pinned, or learned from a config block).
    pub rendering: super::channel::ChannelRendering,
    /// Where its events' time went since the daemon started, per stage.
    pub stages: Vec<super::latency::StageSnapshot>,
    /// Whether this daemon holds the channel's lease (works on its triggers).
    pub owned: bool,
}

/// One peer of a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// Its address, as configured.
    pub address: String,
    /// The height it last reported (or that the blocks it sent prove), once known.
    pub height: Option<u64>,
    /// The channel's stream is on it now.
    pub current: bool,
    /// More than the channel's `stale_peer_blocks` behind the highest height any peer reports.
    pub stale: bool,
    /// When its height was last asked (with two or more peers).
    pub checked_at: Option<DateTime<Utc>>,
    /// The last thing that went wrong with it.
    pub last_error: Option<TimedError>,
}

/// A channel's catch-up streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUpSnapshot {
    /// Open now.
    pub open: u64,
    /// Triggers waiting for one.
    pub waiting: u64,
    /// How many may be open at once (`max_catch_up_streams`).
    pub limit: u64,
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
    /// On a shared database: how every other live daemon's reload went, by daemon id (`None` on a database of one
    /// daemon, and in the reports other daemons send back).
    pub daemons: Option<Vec<DaemonReloaded>>,
}

/// How another daemon's reload went, as it answered the daemon that forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonReloaded {
    /// The daemon's id (`host-pid-random`).
    pub daemon: String,
    /// Its report, or why it did not reload (its refusal, or that it did not answer in time).
    pub outcome: Result<Reloaded, String>,
}

/// How pushing one dead letter again went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repushed {
    /// The dead letter's id.
    pub id: u64,
    /// Why the target did not take it this time; `None` when it did.
    pub error: Option<String>,
}
