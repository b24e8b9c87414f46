//! What a subscription knows of each peer of its channel: the height each reports, which are stale, and the
//! watch that asks them.
//!
//! A peer that is up but cut off from the orderer keeps serving a stream: it just never has a new block. Only
//! another peer can tell: with two or more peers, a [`PeerWatch`] asks every peer for its newest block (a bounded
//! seek, one block, on a connection of its own) every `peer_check_interval`. A peer more than `stale_peer_blocks`
//! behind the highest height any peer reports is stale ([`mark_stale`]); a subscription on a stale peer moves to
//! the highest one ([`better_peer`]). The rules are pure functions; the watch is the only I/O here.
//!
//! A reported height is a claim. A peer that fails a stream (frozen, stalled) or contradicts itself (it reported a
//! height, then answers that it does not have a block below it) is demoted ([`demote`]): for a while (one minute,
//! doubling with each demotion up to an hour) its height counts for nothing, so a broken or lying peer cannot keep
//! drawing the subscription to itself nor make every other peer look stale.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::stream::{CheckAnswer, check, connect, stream_error};
use super::{ChannelConfig, StatusCode, StatusHandle};
use crate::fabric::identity::{SeekBehavior, SeekPosition, SeekRequest};

/// One peer as a subscription sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's address, as configured.
    pub address: String,
    /// The height (number of blocks) the peer last reported, or that the blocks it sent prove; `None` until known.
    pub height: Option<u64>,
    /// The height the peer itself reported when last asked (with two or more peers); `None` until asked.
    pub reported_height: Option<u64>,
    /// When the peer was last asked for its height.
    pub checked_at: Option<SystemTime>,
    /// More than `stale_peer_blocks` behind the highest height any peer reports.
    pub stale: bool,
    /// The last thing that went wrong with this peer (a failed check, a failed or frozen stream).
    pub last_error: Option<String>,
    /// When `last_error` happened.
    pub last_error_at: Option<SystemTime>,
    /// Until when its height counts for nothing (see the module documentation).
    pub demoted_until: Option<Instant>,
    /// How many times it was demoted: each demotion lasts twice as long as the one before.
    pub demotions: u32,
}

impl PeerStatus {
    /// Its height, unless it is demoted at `now`.
    pub fn trusted_height(&self, now: Instant) -> Option<u64> {
        self.height
            .filter(|_| self.demoted_until.is_none_or(|until| now >= until))
    }
}

/// The first demotion's length.
const FIRST_DEMOTION: Duration = Duration::from_secs(60);
/// The longest demotion.
const LONGEST_DEMOTION: Duration = Duration::from_secs(3600);

/// Demotes a peer from `now` (pure): one minute the first time, twice as long each time after, at most an hour.
pub fn demote(peer: &mut PeerStatus, now: Instant) {
    let length = FIRST_DEMOTION
        .saturating_mul(1u32 << peer.demotions.min(6))
        .min(LONGEST_DEMOTION);
    peer.demoted_until = Some(now + length);
    peer.demotions = peer.demotions.saturating_add(1);
}

/// Marks the peers more than `limit` blocks behind the highest trusted height as stale (pure). A peer whose height
/// is unknown is not marked: it may simply not have been asked yet; a demoted one is not compared.
pub fn mark_stale(peers: &mut [PeerStatus], limit: u64, now: Instant) {
    let best = best_height(peers, now);
    for peer in peers.iter_mut() {
        peer.stale = matches!((peer.trusted_height(now), best), (Some(height), Some(best)) if best.saturating_sub(height) > limit);
    }
}

/// The highest height known of any peer that is not demoted (reported, or proven by its blocks).
pub fn best_height(peers: &[PeerStatus], now: Instant) -> Option<u64> {
    peers
        .iter()
        .filter_map(|peer| peer.trusted_height(now))
        .max()
}

/// The highest height any peer that is not demoted reported when asked: what a subscription's own blocks do not
/// show yet.
pub fn best_reported_height(peers: &[PeerStatus], now: Instant) -> Option<u64> {
    peers
        .iter()
        .filter(|peer| peer.trusted_height(now).is_some())
        .filter_map(|peer| peer.reported_height)
        .max()
}

/// The peer to move to when the `current` one is more than `limit` blocks behind the highest one (pure): the
/// highest that is not demoted (the first of them in configuration order), or `None` to stay.
pub fn better_peer(
    current: usize,
    peers: &[PeerStatus],
    limit: u64,
    now: Instant,
) -> Option<usize> {
    let current_height = peers.get(current)?.height?;
    let (best, best_height) = peers
        .iter()
        .enumerate()
        .filter_map(|(index, peer)| peer.trusted_height(now).map(|height| (index, height)))
        .fold(None::<(usize, u64)>, |best, (index, height)| match best {
            Some((_, top)) if top >= height => best,
            _ => Some((index, height)),
        })?;
    (best != current && best_height.saturating_sub(current_height) > limit).then_some(best)
}

/// Asks every peer of a channel for its height at an interval and publishes the answers in the subscription's
/// status; dropped, it stops.
pub(super) struct PeerWatch {
    /// Bumped after each round of checks: the subscription re-evaluates its peer.
    pub(super) rounds: watch::Receiver<u64>,
    /// Stops the task when the watch is dropped.
    _stop: tokio_util::sync::DropGuard,
}

impl PeerWatch {
    /// Starts the checks on the current runtime; results go into `status.peers`.
    pub(super) fn start(
        config: Arc<ChannelConfig>,
        status: StatusHandle,
        stop: CancellationToken,
    ) -> PeerWatch {
        let (rounds_tx, rounds) = watch::channel(0);
        let task_stop = stop.child_token();
        tokio::spawn(run(config, status, rounds_tx, task_stop.clone()));
        PeerWatch {
            rounds,
            _stop: task_stop.drop_guard(),
        }
    }
}

async fn run(
    config: Arc<ChannelConfig>,
    status: StatusHandle,
    rounds: watch::Sender<u64>,
    stop: CancellationToken,
) {
    let Some(interval) = config.options.peer_check_interval else {
        return;
    };
    let mut connections: Vec<Option<Channel>> = vec![None; config.peers.len()];
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let checks = connections
            .iter_mut()
            .enumerate()
            .map(|(index, connection)| check_height(&config, index, connection));
        let answers = tokio::select! {
            _ = stop.cancelled() => return,
            answers = futures::future::join_all(checks) => answers,
        };
        let now = SystemTime::now();
        let limit = config.options.stale_peer_blocks;
        status.update(|s| {
            for (peer, answer) in s.peers.iter_mut().zip(answers) {
                peer.checked_at = Some(now);
                match answer {
                    Ok(height) => {
                        peer.reported_height = Some(height);
                        peer.height = Some(peer.height.map_or(height, |h| h.max(height)));
                    }
                    Err(message) => {
                        tracing::debug!(peer = %peer.address, %message, "peer height check failed");
                        peer.last_error = Some(message);
                        peer.last_error_at = Some(now);
                    }
                }
            }
            mark_stale(&mut s.peers, limit, Instant::now());
        });
        rounds.send_modify(|round| *round += 1);
    }
}

/// Asks peer `index` for its newest block within the peer timeout; its height is that block's number + 1. The
/// connection is kept for the next round unless the check failed.
async fn check_height(
    config: &ChannelConfig,
    index: usize,
    connection: &mut Option<Channel>,
) -> Result<u64, String> {
    let peer = &config.peers[index];
    let timeout = config.options.peer_timeout;
    let channel = match connection.clone() {
        Some(channel) => channel,
        None => {
            let connecting = connect(peer, config.tls.as_ref(), &config.options);
            match tokio::time::timeout(timeout, connecting).await {
                Ok(Ok(channel)) => channel,
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => {
                    return Err(format!(
                        "peer {} did not complete a connection within {timeout:?}",
                        peer.address
                    ));
                }
            }
        }
    };
    let request = SeekRequest {
        channel_id: config.channel_id.clone(),
        start: SeekPosition::Newest,
        stop: SeekPosition::Newest,
        tls_cert_hash: config.tls_cert_hash(),
    };
    let envelope = config
        .identity
        .seek_envelope_now_with(&request, SeekBehavior::FailIfNotReady);
    let answer = check(
        channel.clone(),
        envelope,
        config.options.max_message_size,
        timeout,
    )
    .await;
    let result = match answer {
        Ok(Some(CheckAnswer::Block(number))) => Ok(number.saturating_add(1)),
        Ok(Some(CheckAnswer::Status(code))) => Err(format!(
            "peer {} answered the height check with {}",
            peer.address,
            StatusCode(code)
        )),
        Ok(None) => Err(format!(
            "peer {} did not answer a height check within {timeout:?}",
            peer.address
        )),
        Err(status) => Err(stream_error(
            peer.address.clone(),
            &status,
            config.options.max_message_size,
        )
        .to_string()),
    };
    *connection = result.is_ok().then_some(channel);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(heights: &[Option<u64>]) -> Vec<PeerStatus> {
        heights
            .iter()
            .enumerate()
            .map(|(i, height)| PeerStatus {
                address: format!("peer{i}:7051"),
                height: *height,
                ..PeerStatus::default()
            })
            .collect()
    }

    #[test]
    fn a_peer_further_behind_than_the_limit_is_stale() {
        let now = Instant::now();
        let mut list = peers(&[Some(239), Some(254), None, Some(250)]);
        mark_stale(&mut list, 5, now);
        let stale: Vec<bool> = list.iter().map(|p| p.stale).collect();
        assert_eq!(stale, [true, false, false, false]);
        assert_eq!(best_height(&list, now), Some(254));
        // Exactly at the limit is not stale; a limit above the height itself does not underflow.
        let mut list = peers(&[Some(249), Some(254)]);
        mark_stale(&mut list, 5, now);
        assert!(!list[0].stale);
        let mut list = peers(&[Some(0), Some(3)]);
        mark_stale(&mut list, 100, now);
        assert!(!list[0].stale);
    }

    #[test]
    fn the_subscription_moves_only_off_a_stale_peer_and_to_the_highest_one() {
        let now = Instant::now();
        let better =
            |current, heights: &[Option<u64>]| better_peer(current, &peers(heights), 5, now);
        assert_eq!(better(0, &[Some(239), Some(250), Some(254)]), Some(2));
        assert_eq!(better(0, &[Some(250), Some(254)]), None);
        assert_eq!(better(1, &[Some(239), Some(254)]), None);
        // Unknown heights never cause a move, nor ties a flap.
        assert_eq!(better(0, &[None, Some(254)]), None);
        assert_eq!(better(0, &[Some(10), None]), None);
        assert_eq!(better(2, &[Some(254), Some(254), Some(200)]), Some(0));
        assert_eq!(better(7, &[Some(1)]), None);
    }

    #[test]
    fn a_demoted_peer_draws_no_one_and_makes_no_one_stale_until_its_demotion_ends() {
        let now = Instant::now();
        let mut list = peers(&[Some(24), Some(u64::MAX)]);
        demote(&mut list[1], now);
        assert_eq!(better_peer(0, &list, 5, now), None);
        assert_eq!(best_height(&list, now), Some(24));
        mark_stale(&mut list, 5, now);
        assert!(!list[0].stale && !list[1].stale);
        let later = now + FIRST_DEMOTION;
        assert_eq!(
            better_peer(0, &list, 5, later),
            Some(1),
            "the demotion ended"
        );
        // Each demotion lasts twice as long, at most an hour.
        demote(&mut list[1], now);
        assert_eq!(list[1].demoted_until, Some(now + 2 * FIRST_DEMOTION));
        for _ in 0..10 {
            demote(&mut list[1], now);
        }
        assert_eq!(list[1].demoted_until, Some(now + LONGEST_DEMOTION));
    }
}
