//! The Deliver client: follows one channel on a list of peers and hands out its blocks in order.
//!
//! A [`Subscription`] keeps one long-lived `/protos.Deliver/Deliver` stream open (a signed `SeekInfo` from the
//! next block it needs to `u64::MAX`, `BLOCK_UNTIL_READY`). [`Subscription::next_block`] returns the blocks in
//! chain order as raw `common.Block` bytes with their number; the caller decodes them.
//!
//! - A dropped stream, a transport error or a transient status (SERVICE_UNAVAILABLE, INTERNAL_SERVER_ERROR, ...)
//!   is handled inside: the subscription moves to the channel's next peer, waits per its [`BackoffPolicy`]
//!   and resumes at the next block not yet handed out (never at "newest" once a block has been handed out).
//! - A refusal (FORBIDDEN, NOT_FOUND, BAD_REQUEST, or a TLS session refused either way) from every peer in turn
//!   is returned as [`DeliverError::Refused`] (or [`DeliverError::Tls`]): nothing will change until someone
//!   fixes the network or the configuration. The subscription stays usable: the next call tries again, after
//!   the backoff delay.
//! - A block the caller refuses after verifying it ([`Subscription::reject`]) is asked for again from the next
//!   peer. Refusals of the same block count on as failures although the block was handed out each time, so the
//!   backoff delay keeps growing while a peer keeps serving it.
//! - A block whose number is not the expected one is never handed out: a duplicate is skipped, a gap makes the
//!   subscription reconnect from the expected block.
//! - The stream counts as connected once it is established (connection up, request sent): a real peer sends
//!   nothing, not even its response headers, until it has a block, so waiting for an answer would show a quiet
//!   channel as disconnected.
//! - A peer that sends nothing for half of [`DeliverOptions::peer_timeout`] is checked on the same connection
//!   (a one-block `FAIL_IF_NOT_READY` request for the block the stream waits for): NOT_FOUND means the peer is
//!   alive and the channel quiet; no answer within the other half means it is frozen ([`DeliverError::Frozen`]);
//!   the block itself, twice, means the stream stalled ([`DeliverError::Stalled`]). Both move to the next peer.
//! - With two or more peers, every peer's height is asked at an interval (see [`peers`]); a subscription on a
//!   peer more than [`DeliverOptions::stale_peer_blocks`] behind the highest one moves to it.
//! - Every stream is closed on the peer when it is no longer needed (see [`DeliverStream`]).
//!
//! Progress and trouble are observable without `&mut` access through [`Subscription::status_handle`].

mod backoff;
mod error;
mod fetch;
pub mod peers;
mod stream;
mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prost::Message;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use backoff::BackoffPolicy;
pub use error::{DeliverError, StatusCode};
pub use fetch::{DEFAULT_FETCH_TIMEOUT, MAX_FETCH_BLOCKS, fetch_block, fetch_blocks};
pub use peers::PeerStatus;
pub use stream::{DELIVER_PATH, DeliverStream, endpoint, open_deliver_stream, tls_rejection};
pub use tls::{ClientCertificate, ClientTls, TlsCa, TlsError};

use crate::fabric::identity::{Identity, SeekBehavior, SeekPosition, SeekRequest};
use crate::fabric::proto::common;
use peers::{PeerWatch, better_peer, demote, mark_stale};
use stream::{CheckAnswer, check, connect, stream_error};

/// A peer to read the channel from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEndpoint {
    /// `host:port` (or a full `https://` / `http://` URL).
    pub address: String,
    /// The name to check in the peer's TLS certificate when it differs from the address's host (Fabric peers
    /// are often reached by IP while their certificates name `peer0.org1.example.com`).
    pub tls_server_name: Option<String>,
}

impl PeerEndpoint {
    /// A peer checked under the name in its address.
    pub fn new(address: impl Into<String>) -> Self {
        PeerEndpoint {
            address: address.into(),
            tls_server_name: None,
        }
    }
}

/// Connection tuning; the defaults suit a real Fabric peer.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverOptions {
    /// Largest block accepted. Fabric blocks can exceed tonic's 4 MiB default (the orderer's
    /// `AbsoluteMaxBytes` defaults to ~100 MB); default 128 MiB.
    pub max_message_size: usize,
    /// HTTP/2 keepalive ping interval. The peer closes connections that ping more often than its
    /// `keepalive.minInterval` (60 s by default) with ENHANCE_YOUR_CALM, so keepalive alone cannot find a dead
    /// connection quickly: [`DeliverOptions::peer_timeout`] does.
    pub keepalive_interval: Duration,
    /// How long to wait for a ping's answer before declaring the connection dead.
    pub keepalive_timeout: Duration,
    /// Bound on the TCP + TLS connect, so an unreachable peer does not hold up failover.
    pub connect_timeout: Duration,
    /// Delays between reconnect attempts.
    pub backoff: BackoffPolicy,
    /// A peer that sends nothing for half this time is checked (a one-block request on the same connection for
    /// the block the stream waits for); one that does not answer within the other half is frozen (TCP up,
    /// nothing flowing) and the subscription moves to the next peer. Default 15 s; a peer answering the check is
    /// merely quiet, so this costs nothing on a quiet channel but one small request per half period.
    pub peer_timeout: Duration,
    /// How often every peer's height is asked, with two or more peers (`None`: never). Default 10 s.
    pub peer_check_interval: Option<Duration>,
    /// A peer more than this many blocks behind the highest height any peer reports is stale: the subscription
    /// moves to the highest peer. Default 5.
    pub stale_peer_blocks: u64,
    /// Streams of the channel a caller may open beside the subscription at once (the daemon's catch-up streams
    /// for triggers behind its window); the subscription itself does not use it. Default 4.
    pub max_catch_up_streams: usize,
}

impl Default for DeliverOptions {
    fn default() -> Self {
        DeliverOptions {
            max_message_size: 128 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(70),
            keepalive_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            peer_check_interval: Some(DEFAULT_PEER_CHECK_INTERVAL),
            stale_peer_blocks: DEFAULT_STALE_PEER_BLOCKS,
            max_catch_up_streams: DEFAULT_MAX_CATCH_UP_STREAMS,
        }
    }
}

/// Default of [`DeliverOptions::peer_timeout`].
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(15);
/// Default of [`DeliverOptions::peer_check_interval`].
pub const DEFAULT_PEER_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Default of [`DeliverOptions::stale_peer_blocks`].
pub const DEFAULT_STALE_PEER_BLOCKS: u64 = 5;
/// Default of [`DeliverOptions::max_catch_up_streams`].
pub const DEFAULT_MAX_CATCH_UP_STREAMS: usize = 4;

/// Everything needed to follow one channel.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The channel to follow.
    pub channel_id: String,
    /// Peers of the channel, tried in turn when one fails; must not be empty.
    pub peers: Vec<PeerEndpoint>,
    /// TLS settings; `None` talks plaintext gRPC (test networks only).
    pub tls: Option<ClientTls>,
    /// Signs each request; the peer checks it against the channel's Readers policy.
    pub identity: Arc<Identity>,
    /// Connection tuning.
    pub options: DeliverOptions,
}

impl ChannelConfig {
    /// The `tls_cert_hash` requests carry under mutual TLS.
    pub fn tls_cert_hash(&self) -> Option<[u8; 32]> {
        self.tls
            .as_ref()
            .and_then(|tls| tls.client_certificate.as_ref())
            .map(ClientCertificate::cert_hash)
    }
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The peer's newest block at the time of the first request.
    Newest,
    /// A given block number (0 = genesis). Starting at the current height waits for the next block.
    Block(u64),
}

/// One block as the peer sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredBlock {
    /// The block's number, read from its header.
    pub number: u64,
    /// The raw `common.Block` bytes, exactly as received.
    pub bytes: Bytes,
}

/// A snapshot of a subscription's health, for metrics and status pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionStatus {
    /// Streams opened after the first one.
    pub reconnects: u64,
    /// The peer the current (or last) stream is with.
    pub current_peer: Option<String>,
    /// True while a stream is established (connection up, request sent), whether or not a block came yet.
    pub connected: bool,
    /// True once a stream has been established, and from then on: readiness (`/readyz`) asks whether the
    /// channel ever reached a peer, not whether it is on one right now.
    pub connected_once: bool,
    /// The last block handed out.
    pub last_block: Option<u64>,
    /// The last error seen, transient ones included: the subscription retries them itself, so this is where an
    /// operator learns why blocks stopped coming.
    pub last_error: Option<String>,
    /// When `last_error` happened, to tell a current problem from one long recovered.
    pub last_error_at: Option<SystemTime>,
    /// Duplicate blocks skipped.
    pub duplicates_skipped: u64,
    /// Every configured peer, in configuration order: height, staleness, last error.
    pub peers: Vec<PeerStatus>,
}

impl SubscriptionStatus {
    /// The highest height any peer that is not demoted reports (or the blocks it sent prove).
    pub fn best_height(&self) -> Option<u64> {
        peers::best_height(&self.peers, std::time::Instant::now())
    }

    /// The highest height any peer that is not demoted reported when asked (with two or more peers).
    pub fn best_reported_height(&self) -> Option<u64> {
        peers::best_reported_height(&self.peers, std::time::Instant::now())
    }
}

/// Shared read access to a [`Subscription`]'s status.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<SubscriptionStatus>>);

impl StatusHandle {
    pub fn snapshot(&self) -> SubscriptionStatus {
        self.lock().clone()
    }

    /// [`SubscriptionStatus::best_height`] without copying the status.
    pub fn best_height(&self) -> Option<u64> {
        self.lock().best_height()
    }

    /// [`SubscriptionStatus::best_reported_height`] without copying the status.
    pub fn best_reported_height(&self) -> Option<u64> {
        self.lock().best_reported_height()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SubscriptionStatus> {
        // A panic while holding this lock leaves plain counters behind: still fine to read.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update<T>(&self, change: impl FnOnce(&mut SubscriptionStatus) -> T) -> T {
        change(&mut self.lock())
    }
}

/// A `protos.DeliverResponse` that keeps the block as raw bytes: the block is handed on exactly as received,
/// without a decode and re-encode (other variants, e.g. filtered blocks, are skipped as unknown fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawDeliverResponse {
    /// `common.Status`, when the peer ends or refuses the stream.
    #[prost(int32, optional, tag = "1")]
    pub status: Option<i32>,
    /// The bytes of a `common.Block`.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub block: Option<Bytes>,
}

/// Just the header of a `common.Block` (the data and metadata fields are skipped without copying).
#[derive(Clone, PartialEq, prost::Message)]
struct BlockHeaderOnly {
    #[prost(message, optional, tag = "1")]
    header: Option<common::BlockHeader>,
}

/// Reads a block's number from its raw bytes.
pub fn block_number(block: &[u8]) -> Result<u64, String> {
    let only = BlockHeaderOnly::decode(block).map_err(|e| format!("not a common.Block ({e})"))?;
    only.header
        .map(|h| h.number)
        .ok_or_else(|| "common.Block without a header".to_owned())
}

/// The next block a subscription needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    Newest,
    Next(u64),
}

impl Cursor {
    fn position(self) -> SeekPosition {
        match self {
            Cursor::Newest => SeekPosition::Newest,
            Cursor::Next(number) => SeekPosition::Specified(number),
        }
    }
}

type Opening = Pin<Box<dyn Future<Output = Result<DeliverStream, tonic::Status>> + Send>>;
type Checking = Pin<Box<dyn Future<Output = Result<Option<CheckAnswer>, tonic::Status>> + Send>>;

/// A stream before and after the peer's response headers (a real peer sends them with its first block).
enum StreamState {
    Opening(Opening),
    Open(Box<DeliverStream>),
}

impl StreamState {
    /// The next response; cancel-safe (the opening future stays stored until it completes).
    async fn next_message(&mut self) -> Result<Option<RawDeliverResponse>, tonic::Status> {
        loop {
            match self {
                StreamState::Opening(opening) => {
                    let stream = opening.await?;
                    *self = StreamState::Open(Box::new(stream));
                }
                StreamState::Open(stream) => return stream.message().await,
            }
        }
    }
}

struct OpenStream {
    /// The peer's address.
    peer: String,
    /// The connection, for checks beside the stream.
    connection: Channel,
    /// The Deliver call.
    state: StreamState,
    /// When to check the peer if nothing arrives before.
    next_check: Instant,
    /// The check in flight, if any.
    check: Option<Checking>,
    /// Checks in a row that found the block the stream waits for at the peer.
    stalled_checks: u32,
    /// When the peer last sent something (or the stream was opened).
    heard_at: Instant,
    /// Whether the peer sent anything on this stream: a stream that fails before is worth a TLS diagnosis.
    heard: bool,
}

/// What woke a subscription waiting on its stream.
enum Wake {
    Shutdown,
    Message(Result<Option<RawDeliverResponse>, tonic::Status>),
    Check(Result<Option<CheckAnswer>, tonic::Status>),
    PeersChecked,
}

/// Follows one channel; see the module documentation.
pub struct Subscription {
    /// What to follow and how (shared with the peer watch).
    config: Arc<ChannelConfig>,
    /// Ends waits and streams at shutdown.
    shutdown: CancellationToken,
    /// The next block to hand out; moves only when a block is handed out.
    cursor: Cursor,
    /// The open stream, if any.
    stream: Option<OpenStream>,
    /// Index in `config.peers` of the peer to use for the next stream.
    peer_index: usize,
    /// Failures since the last block handed out: drives the backoff delay.
    failures: u32,
    /// The block last refused by the caller ([`Subscription::reject`]) and the failures counted when it was.
    /// Handing that block out again is no progress: refused again, it takes the count on from there, so a peer
    /// that keeps serving the same forged block is asked ever less often (up to the backoff's cap), not about
    /// five times a second.
    rejected: Option<(u64, u32)>,
    /// Consecutive refusals: when every peer refused in turn, the refusal is returned.
    refusals: usize,
    /// Whether a stream was opened before (to count reconnects).
    opened_once: bool,
    /// Shared status for observers.
    status: StatusHandle,
    /// Asks every peer's height, with two or more peers; started at the first [`Subscription::next_block`].
    watch: Option<PeerWatch>,
}

impl Subscription {
    /// Prepares a subscription; nothing is connected until [`Subscription::next_block`] is called.
    pub fn new(config: ChannelConfig, start: StartPosition, shutdown: CancellationToken) -> Self {
        let status = StatusHandle::default();
        status.update(|s| {
            s.peers = config
                .peers
                .iter()
                .map(|peer| PeerStatus {
                    address: peer.address.clone(),
                    ..PeerStatus::default()
                })
                .collect();
        });
        Subscription {
            config: Arc::new(config),
            shutdown,
            cursor: match start {
                StartPosition::Newest => Cursor::Newest,
                StartPosition::Block(number) => Cursor::Next(number),
            },
            stream: None,
            peer_index: 0,
            failures: 0,
            rejected: None,
            refusals: 0,
            opened_once: false,
            status,
            watch: None,
        }
    }

    /// A handle to read the subscription's status from another task.
    pub fn status_handle(&self) -> StatusHandle {
        self.status.clone()
    }

    /// The next block to be handed out, when known (it is not before the first block of a `Newest` start).
    pub fn next_block_number(&self) -> Option<u64> {
        match self.cursor {
            Cursor::Newest => None,
            Cursor::Next(number) => Some(number),
        }
    }

    /// Waits for the next block in chain order. Returns [`DeliverError::Refused`] when every peer refused,
    /// [`DeliverError::Shutdown`] once the shutdown token is cancelled; handles everything else itself.
    /// Cancel-safe: dropping the future loses no block.
    pub async fn next_block(&mut self) -> Result<DeliveredBlock, DeliverError> {
        if self.config.peers.is_empty() {
            return Err(DeliverError::NoPeers {
                channel: self.config.channel_id.clone(),
            });
        }
        self.start_watch();
        loop {
            if self.shutdown.is_cancelled() {
                return Err(self.shutdown_error());
            }
            if self.stream.is_none() {
                self.wait_before_connecting().await?;
                match self.open_stream().await {
                    Ok(stream) => {
                        let peer = stream.peer.clone();
                        self.stream = Some(stream);
                        let reconnect = std::mem::replace(&mut self.opened_once, true);
                        tracing::debug!(channel = %self.config.channel_id, %peer, "deliver stream established");
                        self.status.update(|s| {
                            s.current_peer = Some(peer);
                            s.connected = true;
                            s.connected_once = true;
                            if reconnect {
                                s.reconnects += 1;
                            }
                        });
                    }
                    Err(error) => {
                        let error = self.explain(error).await;
                        self.fail(error)?;
                    }
                }
                continue;
            }
            let outcome = match self.wait_on_stream().await {
                Wake::Shutdown => return Err(self.shutdown_error()),
                Wake::PeersChecked => {
                    self.move_off_a_stale_peer();
                    continue;
                }
                Wake::Check(answer) => self.checked(answer).map(|()| None),
                Wake::Message(message) => self.received(message),
            };
            match outcome {
                Ok(Some(block)) => return Ok(block),
                Ok(None) => {}
                // A server going down with us at shutdown is not a failure worth reporting.
                Err(_) if self.shutdown.is_cancelled() => return Err(self.shutdown_error()),
                Err(error) => {
                    let fresh = self.stream.as_ref().is_some_and(|stream| !stream.heard);
                    let error = if fresh {
                        self.explain(error).await
                    } else {
                        error
                    };
                    self.fail(error)?;
                }
            }
        }
    }

    /// A stream that failed before the peer said anything may be a TLS refusal in disguise (see
    /// [`tls::diagnose`]): asks the peer once more with a plain handshake and returns [`DeliverError::Tls`] when it
    /// refuses the session, the error as it was otherwise.
    async fn explain(&mut self, error: DeliverError) -> DeliverError {
        // Not when the peer could not be reached at all: a diagnosis would only double the wait before the next
        // peer is tried.
        let transport = match &error {
            DeliverError::Stream { .. } | DeliverError::StreamEnded { .. } => true,
            DeliverError::Connect { message, .. } => {
                let message = message.to_ascii_lowercase();
                !message.contains("tcp connect error") && !message.contains("timed out")
            }
            _ => false,
        };
        let Some(tls) = self.config.tls.clone().filter(|_| transport) else {
            return error;
        };
        let peer = self.config.peers[self.peer_index].clone();
        // A refusal comes within a round trip of the handshake.
        let timeout = self
            .config
            .options
            .connect_timeout
            .min(Duration::from_secs(5));
        let diagnosis = tokio::task::spawn_blocking(move || {
            tls::diagnose(
                &peer.address,
                peer.tls_server_name.as_deref(),
                &tls,
                timeout,
            )
        });
        let found = tokio::select! {
            _ = self.shutdown.cancelled() => return error,
            found = diagnosis => found.ok().flatten(),
        };
        match found
            .as_deref()
            .and_then(|found| tls_rejection(found).map(|reason| (reason, found)))
        {
            Some((reason, found)) => DeliverError::Tls {
                peer: self.config.peers[self.peer_index].address.clone(),
                message: format!("{reason}: {found}"),
            },
            None => error,
        }
    }

    /// Refuses block `number`, handed out by this subscription, which failed verification (`reason`): the stream
    /// is dropped, the peer that served it demoted, and the block asked for again from the next peer. Blocks
    /// handed out after it are asked for again too.
    pub fn reject(&mut self, number: u64, reason: String) {
        let peer = self
            .status
            .snapshot()
            .current_peer
            .unwrap_or_else(|| self.config.peers[self.peer_index].address.clone());
        self.cursor = Cursor::Next(number);
        let error = DeliverError::BadBlock {
            peer,
            block: number,
            reason,
        };
        tracing::error!(channel = %self.config.channel_id, %error, "block refused");
        if let Some((block, failures)) = self.rejected
            && block == number
        {
            self.failures = failures;
        }
        // Not a refusal, never fatal: `fail` only records it and moves on.
        let _ = self.fail(error);
        self.rejected = Some((number, self.failures));
    }

    /// Starts the peer watch once, when there is more than one peer to compare.
    fn start_watch(&mut self) {
        if self.watch.is_none()
            && self.config.peers.len() > 1
            && self.config.options.peer_check_interval.is_some()
        {
            self.watch = Some(PeerWatch::start(
                self.config.clone(),
                self.status.clone(),
                self.shutdown.clone(),
            ));
        }
    }

    /// Waits for whatever comes first: a response, the answer of a check on a silent peer, a round of height
    /// checks, shutdown. Cancel-safe.
    async fn wait_on_stream(&mut self) -> Wake {
        let Subscription {
            config,
            shutdown,
            cursor,
            stream,
            watch,
            ..
        } = self;
        let Some(OpenStream {
            connection,
            state,
            next_check,
            check: checking,
            ..
        }) = stream.as_mut()
        else {
            return Wake::Message(Err(tonic::Status::internal("no stream")));
        };
        let half = config.options.peer_timeout / 2;
        let liveness = async {
            if checking.is_none() {
                tokio::time::sleep_until(*next_check).await;
                let request = SeekRequest {
                    channel_id: config.channel_id.clone(),
                    start: cursor.position(),
                    stop: cursor.position(),
                    tls_cert_hash: config.tls_cert_hash(),
                };
                let envelope = config
                    .identity
                    .seek_envelope_now_with(&request, SeekBehavior::FailIfNotReady);
                *checking = Some(Box::pin(check(
                    connection.clone(),
                    envelope,
                    config.options.max_message_size,
                    half,
                )));
            }
            match checking.as_mut() {
                Some(answer) => answer.await,
                None => std::future::pending().await,
            }
        };
        let rounds = async {
            let changed = match watch.as_mut() {
                Some(watch) => watch.rounds.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Wake::Shutdown,
            message = state.next_message() => Wake::Message(message),
            answer = liveness => Wake::Check(answer),
            () = rounds => Wake::PeersChecked,
        }
    }

    /// Handles a response: `Ok(Some)` is the next block, `Ok(None)` a skipped duplicate.
    fn received(
        &mut self,
        message: Result<Option<RawDeliverResponse>, tonic::Status>,
    ) -> Result<Option<DeliveredBlock>, DeliverError> {
        let half = self.config.options.peer_timeout / 2;
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        let peer = stream.peer.clone();
        match message {
            Ok(Some(response)) => {
                // The peer is alive: a pending check is moot.
                stream.heard_at = Instant::now();
                stream.heard = true;
                stream.next_check = stream.heard_at + half;
                stream.check = None;
                stream.stalled_checks = 0;
                self.accept(response, &peer)
            }
            Ok(None) => Err(DeliverError::StreamEnded {
                peer,
                channel: self.config.channel_id.clone(),
            }),
            Err(status) => Err(stream_error(
                peer,
                &status,
                self.config.options.max_message_size,
            )),
        }
    }

    /// Handles the answer of a check made on a silent peer (see the module documentation).
    fn checked(
        &mut self,
        answer: Result<Option<CheckAnswer>, tonic::Status>,
    ) -> Result<(), DeliverError> {
        let half = self.config.options.peer_timeout / 2;
        let cursor = self.cursor;
        let max_message_size = self.config.options.max_message_size;
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        stream.check = None;
        let peer = stream.peer.clone();
        match answer {
            Ok(Some(CheckAnswer::Block(block)))
                if cursor == Cursor::Newest || cursor == Cursor::Next(block) =>
            {
                stream.stalled_checks += 1;
                if stream.stalled_checks >= 2 {
                    return Err(DeliverError::Stalled { peer, block });
                }
                // The block may be on its way on the stream: look again shortly.
                stream.next_check = Instant::now() + half.min(Duration::from_secs(1));
                Ok(())
            }
            Ok(Some(CheckAnswer::Status(code))) => {
                // NOT_FOUND for a block below a height the peer reported contradicts that report.
                let reported = self
                    .status
                    .update(|s| s.peers.get(self.peer_index).and_then(|p| p.height));
                if let (Cursor::Next(block), Some(reported)) = (cursor, reported)
                    && code == StatusCode::NOT_FOUND.0
                    && reported > block
                {
                    return Err(DeliverError::Inconsistent {
                        peer,
                        reported,
                        block,
                    });
                }
                // The peer answered (NOT_FOUND: it has no newer block): alive, the channel is quiet.
                stream.stalled_checks = 0;
                stream.next_check = Instant::now() + half;
                Ok(())
            }
            Ok(Some(CheckAnswer::Block(_))) => {
                stream.stalled_checks = 0;
                stream.next_check = Instant::now() + half;
                Ok(())
            }
            Ok(None) => Err(DeliverError::Frozen {
                peer,
                silent: Duration::from_millis(
                    u64::try_from(stream.heard_at.elapsed().as_millis()).unwrap_or(u64::MAX),
                ),
                waited: half,
            }),
            Err(status) => Err(stream_error(peer, &status, max_message_size)),
        }
    }

    /// Checks one response: `Ok(Some)` is the next block, `Ok(None)` a skipped duplicate.
    fn accept(
        &mut self,
        response: RawDeliverResponse,
        peer: &str,
    ) -> Result<Option<DeliveredBlock>, DeliverError> {
        let Some(bytes) = response.block else {
            let status = StatusCode(response.status.unwrap_or(0));
            return Err(self.status_error(peer, status));
        };
        let number = block_number(&bytes).map_err(|reason| DeliverError::Malformed {
            peer: peer.to_owned(),
            reason,
        })?;
        if let Cursor::Next(expected) = self.cursor {
            if number < expected {
                tracing::debug!(
                    peer,
                    number,
                    expected,
                    "skipping a block already handed out"
                );
                self.status.update(|s| s.duplicates_skipped += 1);
                return Ok(None);
            }
            if number > expected {
                return Err(DeliverError::Gap {
                    peer: peer.to_owned(),
                    expected,
                    got: number,
                });
            }
        }
        self.cursor = Cursor::Next(number.saturating_add(1));
        self.failures = 0;
        self.refusals = 0;
        if self.rejected.is_some_and(|(block, _)| number > block) {
            self.rejected = None;
        }
        let index = self.peer_index;
        let limit = self.config.options.stale_peer_blocks;
        self.status.update(|s| {
            s.last_block = Some(number);
            // The blocks a peer sends prove its height.
            if let Some(status) = s.peers.get_mut(index) {
                let proven = number.saturating_add(1);
                if status.height.is_none_or(|height| height < proven) {
                    status.height = Some(proven);
                    mark_stale(&mut s.peers, limit, std::time::Instant::now());
                }
            }
        });
        Ok(Some(DeliveredBlock { number, bytes }))
    }

    fn status_error(&self, peer: &str, status: StatusCode) -> DeliverError {
        if status.is_refusal() {
            DeliverError::Refused {
                peer: peer.to_owned(),
                channel: self.config.channel_id.clone(),
                start: match self.cursor {
                    Cursor::Newest => "the newest block".to_owned(),
                    Cursor::Next(number) => format!("block {number}"),
                },
                status,
            }
        } else {
            DeliverError::Status {
                peer: peer.to_owned(),
                channel: self.config.channel_id.clone(),
                status,
            }
        }
    }

    /// Moves to the highest peer when the current one is stale (after a round of height checks).
    fn move_off_a_stale_peer(&mut self) {
        let limit = self.config.options.stale_peer_blocks;
        let current = self.peer_index;
        let Some((target, message)) = self.status.update(|s| {
            let target = better_peer(current, &s.peers, limit, std::time::Instant::now())?;
            let (from, to) = (&s.peers[current], &s.peers[target]);
            Some((
                target,
                format!(
                    "peer {} is stale: it reports height {}, peer {} reports {}; moving to {}",
                    from.address,
                    from.height.unwrap_or_default(),
                    to.address,
                    to.height.unwrap_or_default(),
                    to.address
                ),
            ))
        }) else {
            return;
        };
        tracing::warn!(channel = %self.config.channel_id, "{message}");
        let now = SystemTime::now();
        self.status.update(|s| {
            s.connected = false;
            s.last_error = Some(message.clone());
            s.last_error_at = Some(now);
            s.peers[current].last_error = Some(message);
            s.peers[current].last_error_at = Some(now);
        });
        self.stream = None;
        self.peer_index = target;
        self.failures = 0;
        self.refusals = 0;
    }

    /// Records a failure, moves to the next peer, and returns the error when every peer refused in turn.
    fn fail(&mut self, error: DeliverError) -> Result<(), DeliverError> {
        self.stream = None;
        self.failures = self.failures.saturating_add(1);
        let failed = self.peer_index;
        self.peer_index = (self.peer_index + 1) % self.config.peers.len();
        let message = error.to_string();
        let now = SystemTime::now();
        let unreliable = matches!(
            error,
            DeliverError::Frozen { .. }
                | DeliverError::Stalled { .. }
                | DeliverError::Inconsistent { .. }
                | DeliverError::BadBlock { .. }
        );
        let limit = self.config.options.stale_peer_blocks;
        self.status.update(|s| {
            s.connected = false;
            s.last_error = Some(message.clone());
            s.last_error_at = Some(now);
            if let Some(peer) = s.peers.get_mut(failed) {
                peer.last_error = Some(message);
                peer.last_error_at = Some(now);
                if unreliable {
                    demote(peer, std::time::Instant::now());
                    mark_stale(&mut s.peers, limit, std::time::Instant::now());
                }
            }
        });
        if error.is_peer_refusal() {
            self.refusals += 1;
            if self.refusals >= self.config.peers.len() {
                self.refusals = 0;
                tracing::warn!(%error, "every peer refused the subscription");
                return Err(error);
            }
        } else if error.is_fatal_for_now() {
            return Err(error);
        } else {
            self.refusals = 0;
        }
        tracing::warn!(%error, "deliver stream failed; reconnecting");
        Ok(())
    }

    async fn wait_before_connecting(&mut self) -> Result<(), DeliverError> {
        let delay = self
            .config
            .options
            .backoff
            .delay(self.failures, rand::random::<f64>());
        if delay.is_zero() {
            return Ok(());
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(self.shutdown_error()),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Connects to the peer to use next (skipping to the highest one when it is known to be stale) and sends the
    /// request; the peer's answer is awaited by [`Subscription::wait_on_stream`].
    async fn open_stream(&mut self) -> Result<OpenStream, DeliverError> {
        let limit = self.config.options.stale_peer_blocks;
        let peers = self.status.snapshot().peers;
        if let Some(better) = better_peer(self.peer_index, &peers, limit, std::time::Instant::now())
        {
            self.peer_index = better;
        }
        let peer = &self.config.peers[self.peer_index];
        let connection = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(self.shutdown_error()),
            connection = connect(peer, self.config.tls.as_ref(), &self.config.options) => connection?,
        };
        let request = SeekRequest {
            channel_id: self.config.channel_id.clone(),
            start: self.cursor.position(),
            stop: SeekPosition::Specified(u64::MAX),
            tls_cert_hash: self.config.tls_cert_hash(),
        };
        let envelope = self.config.identity.seek_envelope_now(&request);
        let opening: Opening = Box::pin(open_deliver_stream(
            connection.clone(),
            envelope,
            self.config.options.max_message_size,
        ));
        Ok(OpenStream {
            peer: peer.address.clone(),
            connection,
            state: StreamState::Opening(opening),
            next_check: Instant::now() + self.config.options.peer_timeout / 2,
            check: None,
            stalled_checks: 0,
            heard_at: Instant::now(),
            heard: false,
        })
    }

    fn shutdown_error(&self) -> DeliverError {
        DeliverError::Shutdown {
            channel: self.config.channel_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_number_reads_the_header_only() {
        let block = common::Block {
            header: Some(common::BlockHeader {
                number: 42,
                previous_hash: Bytes::from_static(b"p"),
                data_hash: Bytes::from_static(b"d"),
            }),
            data: Some(common::BlockData {
                data: vec![Bytes::from_static(b"envelope")],
            }),
            metadata: None,
        };
        assert_eq!(block_number(&block.encode_to_vec()), Ok(42));
        assert!(block_number(b"\xff\xff").is_err());
        assert_eq!(
            block_number(&[]),
            Err("common.Block without a header".to_owned())
        );
    }

    #[test]
    fn raw_response_reads_status_and_block() {
        let status = crate::fabric::proto::protos::DeliverResponse {
            r#type: Some(
                crate::fabric::proto::protos::deliver_response::Type::Status(
                    common::Status::Forbidden as i32,
                ),
            ),
        };
        let raw = RawDeliverResponse::decode(status.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(raw.status, Some(403));
        assert_eq!(raw.block, None);
        assert_eq!(StatusCode(403).to_string(), "FORBIDDEN (403)");
        assert!(StatusCode::NOT_FOUND.is_refusal());
        assert!(!StatusCode::SERVICE_UNAVAILABLE.is_refusal());
    }

    /// The engine runs each subscription in its own task: the subscription and its futures must be `Send`.
    #[test]
    fn subscription_and_its_futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let config = ChannelConfig {
            channel_id: "mychannel".to_owned(),
            peers: vec![PeerEndpoint::new("127.0.0.1:1")],
            tls: None,
            identity: Arc::new(crate::peersim::fixture_user1()),
            options: DeliverOptions::default(),
        };
        let mut subscription =
            Subscription::new(config, StartPosition::Newest, CancellationToken::new());
        assert_send(&subscription);
        assert_send(&subscription.next_block());
    }
}
