//! Several daemons on one database: which daemon owns which channel (a lease per channel), which daemons are alive
//! (a heartbeat per daemon), and the fence every progress write carries.
//!
//! A lease row is (channel, owner, generation, expiry). A daemon takes a channel only when its lease is free (no
//! row, or expired), which adds one to its generation; it keeps it by renewing the expiry before it passes. Every
//! write of a trigger's progress names the [`Fence`] it was made under and is refused ([`super::StoreError::Fenced`])
//! inside the same transaction unless that daemon still holds that generation, unexpired: a daemon that was paused
//! past its lease can no longer move a position or a state, whatever it believes.
//!
//! Times are the database server's clock, so daemons on machines whose clocks disagree still agree on who owns
//! what. A SQLite file serves one daemon only: its leases are granted at once and its fences not checked (see
//! [`super::Store::shared`]).

use std::fmt;
use std::time::Duration;

use crate::config::ChannelName;

/// One daemon process, unique per start (host name, process id and a random part): a restarted daemon is a new
/// owner, so it cannot mistake its predecessor's leases for its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DaemonId(String);

impl DaemonId {
    /// A new id for this process.
    pub fn generate() -> DaemonId {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let random = uuid::Uuid::new_v4().simple().to_string();
        DaemonId(format!("{host}-{}-{}", std::process::id(), &random[..8]))
    }

    /// An id as stored (read back from the database).
    pub fn new(text: impl Into<String>) -> DaemonId {
        DaemonId(text.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lease a progress write is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The channel of the trigger written.
    pub channel: ChannelName,
    /// The daemon writing.
    pub owner: DaemonId,
    /// The generation of the lease it took.
    pub generation: i64,
}

/// A channel's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The channel.
    pub channel: ChannelName,
    /// Who took it last.
    pub owner: DaemonId,
    /// How many times it was taken.
    pub generation: i64,
    /// Whether it has not expired (by the database's clock).
    pub live: bool,
    /// How long ago it expired (zero while live): a lease free for long means no daemon is taking it.
    pub expired_for: Duration,
}

/// A daemon's heartbeat as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRecord {
    /// The daemon.
    pub id: DaemonId,
    /// Whether its heartbeat has not expired: it counts when channels are shared out.
    pub live: bool,
}

/// Every lease and every daemon, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The leases, by channel.
    pub leases: Vec<LeaseRecord>,
    /// The daemons that sent a heartbeat recently, by id.
    pub daemons: Vec<DaemonRecord>,
}

/// An operator's command sent to a daemon that does not own the trigger's channel, waiting in the database for the
/// owner to apply it and answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedCommand {
    /// Its id, to answer it.
    pub id: i64,
    /// The trigger's channel: only its owner takes the command; `None` for a command sent to one daemon (reload).
    pub channel: Option<ChannelName>,
    /// The trigger (empty for a command sent to one daemon).
    pub trigger: String,
    /// The command, in the engine's own text form.
    pub command: String,
}
