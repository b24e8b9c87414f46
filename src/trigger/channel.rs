//! One channel's feed: a single Deliver stream that decodes each block once, extracts its events once, keeps
//! the recent blocks in a [`BlockWindow`] for every trigger of the channel and publishes the chain height.
//!
//! The stream starts at the peer's newest block; when triggers restart a few blocks behind it (within the window's
//! reach), the stream goes back once to the oldest of them, so they share it. Triggers further behind read older
//! blocks on their own subscriptions ([`ChannelFeed::catch_up`]) until they reach the window, so one trigger
//! replaying history never rewinds the others. At most `max_catch_up_streams` of those are open at once per
//! channel; the other triggers wait their turn (logged, and counted in the channel's status). A catch-up stream
//! starts on the peer the channel's stream is on (the one found best) and is closed on the peer as soon as it is
//! dropped.
//!
//! Heights: [`ChannelFeed::stream_height`] is what the channel's stream has brought (what triggers can read from
//! the window); [`ChannelFeed::height`] is the highest height known, the stream's or any peer's report, against
//! which lag is measured and `latest` is taken.
//!
//! Events are rendered as the channel's Fabric generation renders them ([`Rendering`]): pinned in the channel's
//! configuration, or learned before the first block is extracted from the channel's last config block (the
//! first block received names it in its metadata; a separate one-block stream reads it unless it is that block)
//! and followed on every newer config block the channel delivers, so a channel whose configuration gains the
//! `V3_0` capability switches to v3's rendering from that block on. Older blocks read later (a trigger catching
//! up) get the channel's current rendering, as the operator's current tools would show them. When the last
//! config block cannot be read, the channel renders as v2.5, says so in its status, and follows the next config
//! block.
//!
//! A block that cannot be decoded at all (not a `common.Block`, no data) is never skipped: losing a block would
//! lose its events silently. The channel logs it with its number, shows the error in the channel's status and
//! asks the peer for the same block again after [`DECODE_RETRY`], so every trigger of the channel waits at that
//! block until the peer serves a readable one (an operator sees the stuck height and the error). Transactions
//! the decoder cannot read inside an otherwise readable block produce no event (see `events::extract`); they are
//! logged with the block number.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::latency::{Stage, StageHistograms};
use super::status::{CatchUpSnapshot, ChannelSnapshot, PeerSnapshot, TimedError};
use super::window::{BlockEvents, BlockWindow, Lookup, Readers, backfill_start};
use crate::config::{self, ChannelName};
use crate::events::{ExtractOptions, Rendering, extract};
use crate::fabric::decode::{Block, BlockDecoder, DecodeError, VerifyError, decode_block_bytes};
use crate::fabric::deliver::{
    ChannelConfig, ClientCertificate, ClientTls, DeliverError, DeliverOptions, DeliveredBlock,
    PeerEndpoint, StartPosition, StatusHandle, Subscription, SubscriptionStatus, TlsCa,
};
use crate::fabric::identity::{Identity, MspId};

/// How long a channel (or a catching-up trigger) waits before asking again for a block it could not decode.
pub const DECODE_RETRY: Duration = Duration::from_secs(5);

/// Why a channel cannot be followed as configured.
#[derive(Debug, thiserror::Error)]
pub enum ChannelSetupError {
    #[error("channel `{channel}`: {message}")]
    Files { channel: String, message: String },
}

/// Why a delivered block cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// It is not a readable block: asked for again (from the same peer, after a pause).
    #[error("cannot be decoded: {0}")]
    Decode(#[from] DecodeError),
    /// It does not hash as Fabric made it, or does not chain onto the block before: asked for again from the
    /// next peer.
    #[error("fails verification: {0}")]
    Verify(#[from] VerifyError),
}

/// What a channel's feed is built from: how to reach the channel, and how to render its events.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The Deliver client settings (identity, peers, TLS).
    pub deliver: ChannelConfig,
    /// The rendering pinned in the channel's configuration; `None` learns it from the channel's configuration.
    pub rendering: Option<Rendering>,
}

/// Builds a configured channel's feed settings: its Deliver client (identity, peers and their TLS) and its
/// pinned rendering.
///
/// The client trusts the union of the peers' TLS CAs (one connection setting serves every peer in turn) and
/// presents the first configured client certificate to all of them. Plaintext is used only when every peer
/// asks for it.
pub fn feed_config(channel: &config::Channel) -> Result<FeedConfig, ChannelSetupError> {
    Ok(FeedConfig {
        deliver: deliver_config(channel)?,
        rendering: channel.rendering,
    })
}

fn deliver_config(channel: &config::Channel) -> Result<ChannelConfig, ChannelSetupError> {
    let name = channel.name.get_ref().to_string();
    let fail = |message: String| ChannelSetupError::Files {
        channel: name.clone(),
        message,
    };
    let msp_id = MspId::new(channel.msp_id.as_str()).map_err(|e| fail(e.to_string()))?;
    let identity = Identity::load(msp_id, channel.certificate.get_ref(), channel.key.get_ref())
        .map_err(|e| fail(e.to_string()))?;
    let peers = channel.peers.get_ref();
    let mut ca_pem = Vec::new();
    let mut client_certificate = None;
    for peer in peers {
        if let Some(ca) = &peer.tls_ca {
            let ca = TlsCa::load(ca.get_ref()).map_err(|e| fail(e.to_string()))?;
            ca_pem.extend_from_slice(ca.pem());
            ca_pem.push(b'\n');
        }
        if let (None, Some(cert), Some(key)) = (
            &client_certificate,
            &peer.client_certificate,
            &peer.client_key,
        ) {
            client_certificate = Some(
                ClientCertificate::load(cert.get_ref(), key.get_ref())
                    .map_err(|e| fail(e.to_string()))?,
            );
        }
    }
    let tls = if ca_pem.is_empty() {
        None
    } else {
        Some(ClientTls {
            ca: TlsCa::from_pem(ca_pem, "the peers' TLS CAs").map_err(|e| fail(e.to_string()))?,
            client_certificate,
        })
    };
    Ok(ChannelConfig {
        channel_id: name.clone(),
        peers: peers
            .iter()
            .map(|peer| PeerEndpoint {
                address: peer.address.get_ref().clone(),
                tls_server_name: peer.server_name.clone(),
            })
            .collect(),
        tls,
        identity: Arc::new(identity),
        options: DeliverOptions {
            peer_timeout: channel.peer_timeout.get_ref().0,
            peer_check_interval: Some(channel.peer_check_interval.get_ref().0),
            stale_peer_blocks: *channel.stale_peer_blocks.get_ref(),
            max_catch_up_streams: usize::try_from(*channel.max_catch_up_streams.get_ref())
                .unwrap_or(usize::MAX),
            ..DeliverOptions::default()
        },
    })
}

/// What a channel shares with its triggers and the admin API.
#[derive(Debug)]
pub struct ChannelFeed {
    /// The channel's name, for status and logs.
    name: ChannelName,
    /// How to reach the channel: the feed's own stream and every catch-up stream use it.
    deliver: ChannelConfig,
    /// How envelopes are built (the instance id; invalid transactions' Contract events always included, see
    /// [`BlockEvents`]).
    extract: ExtractOptions,
    /// The recent blocks, read by every trigger.
    window: RwLock<BlockWindow>,
    /// The chain height (newest block + 1) as last seen on the feed's stream; triggers wait on it for new blocks.
    height: watch::Sender<Option<u64>>,
    /// The feed's stream status (peer, reconnects), set when the stream is (re)created.
    stream: Mutex<Option<StatusHandle>>,
    /// A stream of an earlier subscription (before the feed re-created it) was established: the current
    /// subscription's status starts afresh, readiness must not.
    connected_before: AtomicBool,
    /// The latest stream or decode error, with when it happened.
    last_error: Mutex<Option<TimedError>>,
    /// How the channel's events are rendered, and where that came from.
    rendering: Mutex<ChannelRendering>,
    /// One permit per catch-up stream that may be open (`max_catch_up_streams`).
    catch_up_slots: Arc<Semaphore>,
    /// Triggers waiting for a catch-up slot.
    catch_up_waiting: Arc<AtomicU64>,
    /// A block of the window a trigger found not to chain onto the block it finished before (with why): the
    /// channel drops it and the blocks after it and reads them again from the next peer.
    distrusted: watch::Sender<Option<(u64, String)>>,
    /// Where its events' time goes, over all its triggers (metrics, and the end-to-end bench's breakdown).
    stages: StageHistograms,
}

/// A trigger's own stream of the channel, from a block older than the window; it holds one of the channel's
/// catch-up slots until dropped, which also closes it on the peer.
pub struct CatchUp {
    /// The stream.
    subscription: Subscription,
    /// The slot, given back on drop.
    _slot: OwnedSemaphorePermit,
}

impl CatchUp {
    /// The next block the stream hands out.
    pub fn next_block_number(&self) -> Option<u64> {
        self.subscription.next_block_number()
    }

    /// The next block in chain order (see [`Subscription::next_block`]).
    pub async fn next_block(&mut self) -> Result<DeliveredBlock, DeliverError> {
        self.subscription.next_block().await
    }

    /// Refuses a block the stream handed out (see [`Subscription::reject`]): it is read again from the next peer.
    pub fn reject(&mut self, number: u64, reason: String) {
        self.subscription.reject(number, reason);
    }
}

/// Counts a trigger waiting for a catch-up slot while it waits (also when the wait is abandoned).
struct Waiting(Arc<AtomicU64>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a channel's rendering comes from (pure; see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRendering {
    /// Pinned in the channel's configuration: config blocks do not change it.
    Pinned(Rendering),
    /// Not known yet: learned from the channel's last config block before the first block is extracted.
    Unknown,
    /// Learned from config block `from_block` (or assumed when that block could not be read).
    Learned {
        rendering: Rendering,
        from_block: u64,
    },
}

impl ChannelRendering {
    /// The rendering to extract with now (v2.5 while unknown).
    pub fn current(self) -> Rendering {
        match self {
            ChannelRendering::Pinned(rendering) | ChannelRendering::Learned { rendering, .. } => {
                rendering
            }
            ChannelRendering::Unknown => Rendering::default(),
        }
    }

    /// Takes the rendering of config block `number` unless pinned, or learned from a newer config block (a
    /// trigger reading old blocks must not take the channel back). Returns whether the rendering changed.
    pub fn follow(&mut self, number: u64, rendering: Rendering) -> bool {
        let before = self.current();
        match *self {
            ChannelRendering::Pinned(_) => return false,
            ChannelRendering::Learned { from_block, .. } if number < from_block => return false,
            _ => {}
        }
        let was_unknown = *self == ChannelRendering::Unknown;
        *self = ChannelRendering::Learned {
            rendering,
            from_block: number,
        };
        was_unknown || before != rendering
    }
}

/// What reading a channel's last config block gave (see [`read_last_config`]).
#[derive(Debug)]
pub enum LastConfig {
    /// The config block.
    Read(Block),
    /// Why it could not be read: a message naming the blocks concerned.
    Unreadable(String),
    /// Stopped before it was read.
    Shutdown,
}

/// Reads the channel's last config block as `block` (the first one a stream delivered) names it in its metadata:
/// `block` itself when it is that block, else over a separate one-block stream of `deliver`, closed once read.
/// Block metadata is input from the network: a number that is later than `block`, or a block that is not a config
/// block, is refused with the reason.
pub async fn read_last_config(
    deliver: &ChannelConfig,
    block: Block,
    stop: &CancellationToken,
) -> LastConfig {
    let read = match block.last_config {
        Some(number) if number == block.number => Ok((number, block)),
        Some(number) if number < block.number => {
            let mut fetch = Subscription::new(
                deliver.clone(),
                StartPosition::Block(number),
                stop.child_token(),
            );
            // Dropping the subscription after one block closes its stream.
            match fetch.next_block().await {
                Ok(config) => decode_block_bytes(config.bytes)
                    .map(|config| (number, config))
                    .map_err(|e| format!("block {number} cannot be decoded: {e}")),
                Err(DeliverError::Shutdown { .. }) => return LastConfig::Shutdown,
                Err(error) => Err(format!("block {number} cannot be read: {error}")),
            }
        }
        Some(number) => Err(format!(
            "block {} names block {number}, a later one, as its last config block",
            block.number
        )),
        None => Err(format!(
            "block {} names no last config block in its metadata",
            block.number
        )),
    };
    let checked = read.and_then(|(number, config)| {
        if config.number != number {
            return Err(format!(
                "block {number} was asked for, block {} came",
                config.number
            ));
        }
        match config.config() {
            Some(_) => Ok(config),
            None => Err(format!("block {number} is not a config block")),
        }
    });
    match checked {
        Ok(config) => LastConfig::Read(config),
        Err(reason) => LastConfig::Unreadable(reason),
    }
}

impl ChannelFeed {
    /// A feed that has received nothing yet.
    pub fn new(
        name: ChannelName,
        config: FeedConfig,
        instance_id: String,
        window_blocks: usize,
    ) -> Self {
        let slots = config.deliver.options.max_catch_up_streams.max(1);
        ChannelFeed {
            catch_up_slots: Arc::new(Semaphore::new(slots)),
            catch_up_waiting: Arc::new(AtomicU64::new(0)),
            distrusted: watch::channel(None).0,
            stages: StageHistograms::default(),
            name,
            deliver: config.deliver,
            extract: ExtractOptions {
                instance_id,
                include_invalid: true,
                rendering: Rendering::default(),
            },
            window: RwLock::new(BlockWindow::new(window_blocks)),
            height: watch::channel(None).0,
            stream: Mutex::new(None),
            connected_before: AtomicBool::new(false),
            last_error: Mutex::new(None),
            rendering: Mutex::new(
                config
                    .rendering
                    .map_or(ChannelRendering::Unknown, ChannelRendering::Pinned),
            ),
        }
    }

    /// The channel's name.
    pub fn name(&self) -> &ChannelName {
        &self.name
    }

    /// How the channel is reached (identity, peers, TLS): for bounded reads beside the feed's stream.
    pub fn deliver(&self) -> &ChannelConfig {
        &self.deliver
    }

    /// The chain height (number of blocks): the highest the channel's stream has seen or any peer reports; what
    /// lag is measured against.
    pub fn height(&self) -> Option<u64> {
        // The stream's own blocks count once the channel has taken them in (the stream height), not before.
        let reported = self
            .stream_handle()
            .and_then(|stream| stream.best_reported_height());
        self.stream_height().max(reported)
    }

    /// The height as the channel's stream has brought it (the window holds blocks below it), once it brought one.
    pub fn stream_height(&self) -> Option<u64> {
        *self.height.borrow()
    }

    fn stream_handle(&self) -> Option<StatusHandle> {
        self.stream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Wakes on every new block.
    pub fn watch_height(&self) -> watch::Receiver<Option<u64>> {
        self.height.subscribe()
    }

    /// Where block `number` is.
    pub fn lookup(&self, number: u64) -> Lookup {
        self.window
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .lookup(number)
    }

    /// A stream of the channel from block `start`, for a trigger (named `who` in logs) behind the window: waits
    /// for one of the channel's catch-up slots first. The stream starts on the peer the channel's stream is on.
    pub async fn catch_up(&self, start: u64, stop: CancellationToken, who: &str) -> CatchUp {
        let slot = match self.catch_up_slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                self.catch_up_waiting.fetch_add(1, Ordering::SeqCst);
                let _waiting = Waiting(self.catch_up_waiting.clone());
                tracing::info!(
                    channel = %self.name,
                    trigger = who,
                    limit = self.deliver.options.max_catch_up_streams,
                    "every catch-up stream of the channel is in use (max_catch_up_streams); waiting for one"
                );
                self.catch_up_slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the catch-up semaphore is never closed")
            }
        };
        let mut config = self.deliver.clone();
        let current = self.stream_handle().and_then(|stream| {
            let current = stream.snapshot().current_peer?;
            config.peers.iter().position(|peer| peer.address == current)
        });
        if let Some(current) = current {
            config.peers.rotate_left(current);
        }
        // Short-lived and behind anyway: the channel's own stream watches the peers' heights.
        config.options.peer_check_interval = None;
        CatchUp {
            subscription: Subscription::new(config, StartPosition::Block(start), stop),
            _slot: slot,
        }
    }

    /// Decodes a delivered block, verifies that its data hashes to its header's `data_hash`, and extracts its
    /// events. A block that fails is never pushed.
    pub fn prepare(
        &self,
        decoder: &mut BlockDecoder,
        delivered: DeliveredBlock,
        readers: Readers,
    ) -> Result<Arc<BlockEvents>, PrepareError> {
        let received_at = Instant::now();
        let block = decoder.decode_bytes(delivered.bytes)?;
        block.verify_data_hash()?;
        for error in block.errors() {
            tracing::warn!(channel = %self.name, block = block.number, %error, "a transaction of the block cannot be decoded; it produces no event");
        }
        let options = ExtractOptions {
            rendering: self.follow_config(&block),
            ..self.extract.clone()
        };
        let events = extract(&block, &options);
        self.stages.record(Stage::Decode, received_at.elapsed());
        Ok(Arc::new(BlockEvents::new(
            &block,
            events,
            received_at,
            readers,
        )))
    }

    /// The rendering a block is extracted with, after taking a config block's (see [`ChannelRendering::follow`]).
    fn follow_config(&self, block: &Block) -> Rendering {
        let mut state = self
            .rendering
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(config) = block.config() {
            let rendering = Rendering::of_config(config);
            if state.follow(block.number, rendering) {
                tracing::info!(channel = %self.name, block = block.number, %rendering, capabilities = ?config.channel_capabilities, consensus = config.consensus_type.as_deref().unwrap_or("none"), "the channel's configuration sets how its events are rendered");
            }
        }
        state.current()
    }

    /// How the channel's events are rendered now, and where that came from.
    pub fn rendering(&self) -> ChannelRendering {
        *self
            .rendering
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Learns the channel's rendering from its last config block, named by the first block received (see the
    /// module documentation). Returns `false` at shutdown. A first block that cannot be decoded leaves the
    /// rendering unknown: the feed retries that block, and learns again when it reads it.
    async fn learn_rendering(&self, first: &DeliveredBlock, stop: &CancellationToken) -> bool {
        let Ok(block) = decode_block_bytes(first.bytes.clone()) else {
            return true;
        };
        // Where the rendering is assumed from when the last config block cannot be read.
        let fallback_from = block.last_config.unwrap_or(block.number);
        let learned = match read_last_config(&self.deliver, block, stop).await {
            LastConfig::Read(config) => Ok(config),
            LastConfig::Unreadable(reason) => Err(reason),
            LastConfig::Shutdown => return false,
        };
        match learned {
            Ok(config) => {
                self.follow_config(&config);
            }
            Err(reason) => {
                let rendering = Rendering::default();
                let from_block = fallback_from;
                *self
                    .rendering
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = ChannelRendering::Learned {
                    rendering,
                    from_block,
                };
                tracing::warn!(channel = %self.name, %reason, %rendering, "the channel's last config block cannot be read: its events are rendered as v2.5 until the next config block; set `rendering` in the channel's configuration to choose");
                self.set_error(format!(
                    "the channel's last config block cannot be read ({reason}): events are rendered as {rendering} \
                     until the next config block; set `rendering` in the channel's configuration to choose"
                ));
            }
        }
        true
    }

    /// The channel's stream right now.
    pub fn snapshot(&self) -> ChannelSnapshot {
        let stream = self
            .stream_handle()
            .as_ref()
            .map(StatusHandle::snapshot)
            .unwrap_or_default();
        let own_error = self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        // The subscription retries transient failures (an unavailable peer, a dropped stream) itself: its error is
        // the only trace of why blocks stopped coming, so the newer of the two is shown.
        let stream_error = timed(stream.last_error.clone(), stream.last_error_at);
        let last_error = match (own_error, stream_error) {
            (Some(own), Some(stream)) => Some(if stream.at > own.at { stream } else { own }),
            (own, stream) => own.or(stream),
        };
        let limit = self.deliver.options.max_catch_up_streams.max(1);
        let catch_up = CatchUpSnapshot {
            open: (limit - self.catch_up_slots.available_permits().min(limit)) as u64,
            waiting: self.catch_up_waiting.load(Ordering::SeqCst),
            limit: limit as u64,
        };
        ChannelSnapshot {
            name: self.name.clone(),
            chain_height: self.stream_height().max(stream.best_reported_height()),
            peers: peer_snapshots(&stream),
            peer: stream.current_peer.filter(|_| stream.connected),
            connected: stream.connected,
            connected_once: stream.connected_once || self.connected_before.load(Ordering::SeqCst),
            reconnects: stream.reconnects,
            last_error,
            catch_up,
            rendering: *self
                .rendering
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            stages: self.stages.snapshot(),
            owned: false,
        }
    }

    /// Where its events' time goes; the workers record into it.
    pub fn stages(&self) -> &StageHistograms {
        &self.stages
    }

    /// Tells the channel that its block `number` does not chain onto what a trigger read before it (`reason`):
    /// the channel forgets that block and the ones after it and reads them again from the next peer.
    pub fn distrust(&self, number: u64, reason: String) {
        self.set_error(format!("block {number} fails verification: {reason}"));
        self.distrusted.send_replace(Some((number, reason)));
    }

    fn window_capacity(&self) -> usize {
        self.window
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .capacity()
    }

    fn set_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(TimedError {
            message,
            at: Utc::now(),
        });
    }

    /// Follows the channel until `stop`: see the module documentation. `positions` are the blocks the channel's
    /// triggers start at: once the newest block is known, the stream goes back to the oldest of them that the
    /// window can hold ([`backfill_start`]).
    pub async fn run(self: Arc<Self>, positions: Vec<u64>, stop: CancellationToken) {
        let mut start = StartPosition::Newest;
        let mut backfill = Some(positions);
        let mut distrusted = self.distrusted.subscribe();
        loop {
            let mut subscription = Subscription::new(self.deliver.clone(), start, stop.clone());
            {
                let mut stream = self
                    .stream
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                // Kept before the new status replaces the old, so no snapshot sees a connected channel as never
                // connected.
                if stream
                    .as_ref()
                    .is_some_and(|old| old.snapshot().connected_once)
                {
                    self.connected_before.store(true, Ordering::SeqCst);
                }
                *stream = Some(subscription.status_handle());
            }
            let mut decoder = BlockDecoder::new();
            loop {
                let next = tokio::select! {
                    next = subscription.next_block() => next,
                    changed = distrusted.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let refused = distrusted.borrow_and_update().clone();
                        if let Some((number, reason)) = refused
                            && subscription.next_block_number().is_some_and(|next| next > number)
                        {
                            self.window
                                .write()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .truncate_from(number);
                            subscription.reject(number, reason);
                        }
                        continue;
                    }
                };
                match next {
                    Ok(delivered) => {
                        let number = delivered.number;
                        if self.rendering() == ChannelRendering::Unknown
                            && !self.learn_rendering(&delivered, &stop).await
                        {
                            return;
                        }
                        if let Some(positions) = backfill.take() {
                            let capacity = self.window_capacity();
                            if let Some(from) = backfill_start(&positions, number, capacity) {
                                tracing::info!(channel = %self.name, from, newest = number, "reading the recent blocks its triggers need on the channel's stream");
                                self.height.send_replace(Some(number.saturating_add(1)));
                                start = StartPosition::Block(from);
                                break;
                            }
                        }
                        // A block must chain onto the one before it when the window has that one.
                        let previous = match self.lookup(number.wrapping_sub(1)) {
                            Lookup::Here(previous) => Some(previous.anchor()),
                            _ => None,
                        };
                        let prepared = self
                            .prepare(&mut decoder, delivered, Readers::Many)
                            .and_then(|block| {
                                block.chains_onto(previous)?;
                                Ok(block)
                            });
                        match prepared {
                            Ok(block) => {
                                self.window
                                    .write()
                                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                                    .push(block);
                                // Notifies every waiting trigger; never lowers the height while re-reading recent blocks.
                                let next = number.saturating_add(1);
                                self.height.send_modify(|height| {
                                    *height = Some(height.map_or(next, |h| h.max(next)));
                                });
                            }
                            Err(PrepareError::Verify(error)) => {
                                self.set_error(format!(
                                    "block {number} fails verification: {error}"
                                ));
                                subscription.reject(number, error.to_string());
                            }
                            Err(error) => {
                                let message = format!("block {number} {error}");
                                tracing::error!(channel = %self.name, block = number, %error, "block cannot be decoded; asking for it again (triggers of the channel wait at it)");
                                self.set_error(message);
                                start = StartPosition::Block(number);
                                tokio::select! {
                                    _ = stop.cancelled() => return,
                                    _ = tokio::time::sleep(DECODE_RETRY) => {}
                                }
                                break;
                            }
                        }
                    }
                    Err(DeliverError::Shutdown { .. }) => return,
                    Err(error) => {
                        tracing::warn!(channel = %self.name, %error, "channel stream error");
                        self.set_error(error.to_string());
                    }
                }
            }
        }
    }
}

/// An error message with its time, when both are there.
fn timed(message: Option<String>, at: Option<std::time::SystemTime>) -> Option<TimedError> {
    message.zip(at).map(|(message, at)| TimedError {
        message,
        at: at.into(),
    })
}

/// The subscription's view of each peer, in the engine's terms.
fn peer_snapshots(stream: &SubscriptionStatus) -> Vec<PeerSnapshot> {
    stream
        .peers
        .iter()
        .map(|peer| PeerSnapshot {
            address: peer.address.clone(),
            height: peer.height,
            current: stream.connected && stream.current_peer.as_ref() == Some(&peer.address),
            stale: peer.stale,
            checked_at: peer.checked_at.map(Into::into),
            last_error: timed(peer.last_error.clone(), peer.last_error_at),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_rendering_ignores_config_blocks() {
        let mut state = ChannelRendering::Pinned(Rendering::V2_5);
        assert!(!state.follow(9, Rendering::V3));
        assert_eq!(state.current(), Rendering::V2_5);
    }

    #[test]
    fn newer_config_blocks_change_the_rendering_older_ones_do_not() {
        let mut state = ChannelRendering::Unknown;
        assert_eq!(state.current(), Rendering::V2_5);
        assert!(state.follow(8, Rendering::V2_5), "learning is a change");
        assert!(!state.follow(8, Rendering::V2_5));
        assert!(state.follow(20, Rendering::V3));
        assert_eq!(state.current(), Rendering::V3);
        assert!(
            !state.follow(8, Rendering::V2_5),
            "a trigger catching up reads block 8 again"
        );
        assert_eq!(
            state,
            ChannelRendering::Learned {
                rendering: Rendering::V3,
                from_block: 20
            }
        );
        assert!(!state.follow(31, Rendering::V3));
        assert!(
            state.follow(40, Rendering::V2_5),
            "a downgrade is followed too"
        );
    }
}
