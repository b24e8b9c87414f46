//! Which channels this daemon works on when several daemons share a database: the decision (pure, from one
//! snapshot of the leases and the live daemons) and the lease this daemon holds on a channel, as its trigger
//! workers see it.
//!
//! Rules ([`decide`]):
//! - A daemon works on a channel only while it holds the channel's lease; it takes one only when the lease is free
//!   (never taken, released, or expired: its owner died or was paused past it).
//! - Fair share: with `n` live daemons (heartbeats not expired, this one included) and `c` configured channels,
//!   a daemon holds at most `ceil(c / n)`. It takes free channels up to that share, and gives back what it holds
//!   beyond it (a daemon that joins gets its share from the others), so no daemon takes everything while others
//!   are up, and a dead daemon's channels go to the survivors once its heartbeat expires.
//! - Channels no longer configured are given back.
//! - Daemons try free channels in an order of their own (a hash of daemon and channel), so daemons starting at once
//!   mostly ask for different channels.
//!
//! A [`HeldLease`] also knows until when it is surely valid by this process's monotonic clock (when the last
//! renewal was *sent*, plus the lease time; the database counts from a later moment). A worker pushes only
//! while it is: a daemon resumed after a pause (SIGSTOP, a long GC-like stall) does not push events for a channel it
//! has most likely lost, before its lease loop finds out. The store's fence is what guarantees that nothing it
//! writes afterwards counts; this check keeps it from pushing more than the events in flight.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ChannelName;
use crate::store::{ClusterView, DaemonId, Fence};

/// What this daemon does about leases after one look at the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Channels to give back now (beyond the fair share, or no longer configured).
    pub release: Vec<ChannelName>,
    /// Free channels to try, in order, until [`Decision::want`] were taken.
    pub candidates: Vec<ChannelName>,
    /// How many more channels this daemon may take.
    pub want: usize,
}

/// The fair share: at most `ceil(channels / live daemons)` channels per daemon.
pub fn fair_share(channels: usize, live_daemons: usize) -> usize {
    channels.div_ceil(live_daemons.max(1))
}

/// Decides what to release and what to try to take; see the module documentation. `held` are the channels this
/// daemon holds, `configured` those in its configuration.
pub fn decide(
    me: &DaemonId,
    configured: &[ChannelName],
    held: &BTreeSet<ChannelName>,
    view: &ClusterView,
) -> Decision {
    let others = view
        .daemons
        .iter()
        .filter(|daemon| daemon.live && &daemon.id != me)
        .count();
    let fair = fair_share(configured.len(), others + 1);
    let mut release: Vec<ChannelName> = held
        .iter()
        .filter(|channel| !configured.contains(channel))
        .cloned()
        .collect();
    let mut kept: Vec<ChannelName> = held
        .iter()
        .filter(|channel| configured.contains(channel))
        .cloned()
        .collect();
    if kept.len() > fair {
        release.extend(kept.split_off(fair));
    }
    let want = fair - kept.len();
    let mut candidates: Vec<ChannelName> = configured
        .iter()
        .filter(|channel| !held.contains(*channel))
        .filter(|channel| {
            view.leases
                .iter()
                .find(|lease| &lease.channel == *channel)
                .is_none_or(|lease| !lease.live)
        })
        .cloned()
        .collect();
    candidates.sort_by_key(|channel| (spread(me, channel), channel.clone()));
    candidates.dedup();
    Decision {
        release,
        want: if candidates.is_empty() { 0 } else { want },
        candidates,
    }
}

/// A daemon's own order of channels (FNV-1a of both names): stable for one daemon, different across daemons.
fn spread(me: &DaemonId, channel: &ChannelName) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in me
        .as_str()
        .bytes()
        .chain([0])
        .chain(channel.as_str().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A channel's lease as this daemon holds it: the fence its trigger writes carry, and until when it is surely
/// valid (see the module documentation).
#[derive(Debug)]
pub struct HeldLease {
    /// Owner and generation, checked by the store in every write.
    fence: Fence,
    /// Surely valid until then; `None`: a database of one daemon, where leases never expire.
    valid_until: Mutex<Option<Instant>>,
}

impl HeldLease {
    /// A lease taken (or renewed) by a request sent at `sent`, for `ttl`; `ttl = None` never expires.
    pub fn new(fence: Fence, sent: Instant, ttl: Option<Duration>) -> HeldLease {
        HeldLease {
            fence,
            valid_until: Mutex::new(ttl.map(|ttl| sent + ttl)),
        }
    }

    /// The fence of every write made under the lease.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Records a renewal sent at `sent`.
    pub fn renewed(&self, sent: Instant, ttl: Duration) {
        let mut until = self
            .valid_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(until) = until.as_mut() {
            *until = (*until).max(sent + ttl);
        }
    }

    /// Whether the lease is surely still held at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        self.valid_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_none_or(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DaemonRecord, LeaseRecord};

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    fn daemon(id: &str, live: bool) -> DaemonRecord {
        DaemonRecord {
            id: DaemonId::new(id),
            live,
        }
    }

    fn lease(name: &str, owner: &str, live: bool) -> LeaseRecord {
        LeaseRecord {
            channel: channel(name),
            owner: DaemonId::new(owner),
            generation: 1,
            live,
            expired_for: if live {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            },
        }
    }

    fn held(names: &[&str]) -> BTreeSet<ChannelName> {
        names.iter().map(|name| channel(name)).collect()
    }

    #[test]
    fn a_lone_daemon_takes_every_free_channel() {
        let me = DaemonId::new("a");
        let configured = [channel("ch1"), channel("ch2")];
        let view = ClusterView {
            leases: vec![],
            daemons: vec![daemon("a", true)],
        };
        let decision = decide(&me, &configured, &held(&[]), &view);
        assert_eq!(decision.want, 2);
        assert_eq!(decision.candidates.len(), 2);
        assert!(decision.release.is_empty());
    }

    #[test]
    fn with_three_daemons_and_two_channels_nobody_takes_two() {
        let me = DaemonId::new("a");
        let configured = [channel("ch1"), channel("ch2")];
        let view = ClusterView {
            leases: vec![],
            daemons: vec![daemon("a", true), daemon("b", true), daemon("c", true)],
        };
        let decision = decide(&me, &configured, &held(&[]), &view);
        assert_eq!(decision.want, 1);
        // Holding both (it was alone when it started): gives one back.
        let view = ClusterView {
            leases: vec![lease("ch1", "a", true), lease("ch2", "a", true)],
            ..view
        };
        let decision = decide(&me, &configured, &held(&["ch1", "ch2"]), &view);
        assert_eq!(decision.release, vec![channel("ch2")]);
        assert_eq!(decision.want, 0);
    }

    #[test]
    fn leases_held_by_live_owners_are_not_candidates_expired_ones_are() {
        let me = DaemonId::new("c");
        let configured = [channel("ch1"), channel("ch2")];
        let view = ClusterView {
            leases: vec![lease("ch1", "a", true), lease("ch2", "b", false)],
            daemons: vec![daemon("a", true), daemon("c", true)],
        };
        let decision = decide(&me, &configured, &held(&[]), &view);
        assert_eq!(decision.candidates, vec![channel("ch2")]);
        assert_eq!(decision.want, 1);
    }

    #[test]
    fn a_dead_daemons_channels_go_to_the_survivors_beyond_the_old_share() {
        // Two daemons, two channels: b died (its heartbeat and lease expired), a takes ch2 too.
        let me = DaemonId::new("a");
        let configured = [channel("ch1"), channel("ch2")];
        let view = ClusterView {
            leases: vec![lease("ch1", "a", true), lease("ch2", "b", false)],
            daemons: vec![daemon("a", true)],
        };
        let decision = decide(&me, &configured, &held(&["ch1"]), &view);
        assert_eq!(
            (decision.candidates, decision.want),
            (vec![channel("ch2")], 1)
        );
    }

    #[test]
    fn channels_no_longer_configured_are_given_back() {
        let me = DaemonId::new("a");
        let configured = [channel("ch1")];
        let view = ClusterView::default();
        let decision = decide(&me, &configured, &held(&["ch1", "old"]), &view);
        assert_eq!(decision.release, vec![channel("old")]);
        assert_eq!(decision.want, 0);
    }

    #[test]
    fn daemons_try_free_channels_in_different_orders() {
        let configured: Vec<ChannelName> = (0..8).map(|i| channel(&format!("ch{i}"))).collect();
        let view = ClusterView::default();
        let first = |id: &str| {
            decide(&DaemonId::new(id), &configured, &held(&[]), &view).candidates[0].clone()
        };
        let firsts: BTreeSet<ChannelName> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|id| first(id))
            .collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }

    #[test]
    fn a_held_lease_is_valid_until_its_last_renewal_plus_the_ttl() {
        let fence = Fence {
            channel: channel("ch1"),
            owner: DaemonId::new("a"),
            generation: 3,
        };
        let start = Instant::now();
        let ttl = Duration::from_secs(2);
        let lease = HeldLease::new(fence.clone(), start, Some(ttl));
        assert!(lease.valid_at(start + Duration::from_millis(1_999)));
        assert!(
            !lease.valid_at(start + ttl),
            "a paused daemon stops pushing"
        );
        lease.renewed(start + Duration::from_secs(1), ttl);
        assert!(lease.valid_at(start + Duration::from_millis(2_999)));
        lease.renewed(start, ttl);
        assert!(
            lease.valid_at(start + Duration::from_millis(2_999)),
            "an older renewal never shortens it"
        );
        let forever = HeldLease::new(fence, start, None);
        assert!(forever.valid_at(start + Duration::from_secs(1_000_000)));
    }
}
