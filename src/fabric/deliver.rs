//! The Deliver client: follows one channel on a list of peers and hands out its blocks in order.
//!
//! A [`Subscription`] keeps one long-lived `/protos.Deliver/Deliver` stream open (a signed `SeekInfo` from the
//! next block it needs to `u64::MAX`, `BLOCK_UNTIL_READY`). [`Subscription::next_block`] returns the blocks in
//! chain order as raw `common.Block` bytes with their number; the caller decodes them.
//!
//! - A dropped stream, a transport error or a transient status (SERVICE_UNAVAILABLE, INTERNAL_SERVER_ERROR, ...)
//!   is handled inside: the subscription moves to the channel's next peer, waits per its [`BackoffPolicy`]
//!   and resumes at the next block not yet handed out (never at "newest" once a block has been handed out).
//! - A refusal (FORBIDDEN, NOT_FOUND, BAD_REQUEST, or a rejected TLS certificate) from every peer in turn is
//!   returned as [`DeliverError::Refused`] (or [`DeliverError::Tls`]): nothing will change until someone fixes
//!   the network or the configuration. The subscription stays usable: the next call tries again, after the
//!   backoff delay.
//! - A block whose number is not the expected one is never handed out: a duplicate is skipped, a gap makes the
//!   subscription reconnect from the expected block.
//!
//! Progress and trouble are observable without `&mut` access through [`Subscription::status_handle`].

mod backoff;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

pub use backoff::BackoffPolicy;
pub use tls::{ClientCertificate, ClientTls, TlsCa, TlsError};

use crate::fabric::identity::{Identity, SeekPosition, SeekRequest};
use crate::fabric::proto::common;

/// The gRPC method of the peer's full-block Deliver service.
pub const DELIVER_PATH: &str = "/protos.Deliver/Deliver";

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
    /// `keepalive.minInterval` (60 s by default) with ENHANCE_YOUR_CALM; 70 s stays clear of that while still
    /// finding a dead connection in about a minute and a half.
    pub keepalive_interval: Duration,
    /// How long to wait for a ping's answer before declaring the connection dead.
    pub keepalive_timeout: Duration,
    /// Bound on the TCP + TLS connect, so an unreachable peer does not hold up failover.
    pub connect_timeout: Duration,
    /// Delays between reconnect attempts.
    pub backoff: BackoffPolicy,
}

impl Default for DeliverOptions {
    fn default() -> Self {
        DeliverOptions {
            max_message_size: 128 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(70),
            keepalive_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
        }
    }
}

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

/// A `common.Status` code a peer answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCode(
    /// The raw `common.Status` number: kept as a number so that codes newer than our proto still show.
    pub i32,
);

impl StatusCode {
    pub const SUCCESS: StatusCode = StatusCode(200);
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);

    /// The name Fabric gives the code, e.g. `FORBIDDEN`.
    pub fn name(self) -> String {
        common::Status::try_from(self.0)
            .map(|s| s.as_str_name().to_owned())
            .unwrap_or_else(|_| format!("UNKNOWN_STATUS_{}", self.0))
    }

    /// A refusal will not change by retrying soon: the identity is not a reader, the channel (or the requested
    /// block) does not exist on the peer, or the request is malformed.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST
        )
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Everything that can go wrong while following a channel.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliverError {
    /// Every peer refused the request (see [`StatusCode::is_refusal`]); retrying soon will not help.
    #[error("peer {peer} refused to deliver channel `{channel}` from {start}: {status}")]
    Refused {
        peer: String,
        channel: String,
        start: String,
        status: StatusCode,
    },
    /// A transient status (e.g. SERVICE_UNAVAILABLE) or an unexpected SUCCESS on an endless seek.
    #[error("peer {peer} ended the stream of channel `{channel}` with status {status}")]
    Status {
        peer: String,
        channel: String,
        status: StatusCode,
    },
    #[error("cannot connect to peer {peer}: {message}")]
    Connect { peer: String, message: String },
    /// The peer's TLS certificate was rejected (wrong CA, or a name that is neither the address's host nor the
    /// configured `tls_server_name`): a configuration problem, treated like a refusal.
    #[error("TLS handshake with peer {peer} failed: {message}")]
    Tls { peer: String, message: String },
    #[error("stream from peer {peer} failed: {message}")]
    Stream { peer: String, message: String },
    /// A block larger than [`DeliverOptions::max_message_size`]: it will not get smaller, so this is treated
    /// like a refusal until the limit is raised.
    #[error(
        "peer {peer} sent a message larger than the {limit}-byte limit (max_message_size): {message}"
    )]
    TooLarge {
        peer: String,
        limit: usize,
        message: String,
    },
    #[error("peer {peer} closed the stream of channel `{channel}` without a status")]
    StreamEnded { peer: String, channel: String },
    #[error("peer {peer} sent block {got} where block {expected} was expected")]
    Gap {
        peer: String,
        expected: u64,
        got: u64,
    },
    #[error("peer {peer} sent a malformed message: {reason}")]
    Malformed { peer: String, reason: String },
    #[error("invalid peer address `{address}`: {message}")]
    BadAddress { address: String, message: String },
    #[error("channel `{channel}` has no peers configured")]
    NoPeers { channel: String },
    /// The shutdown token was cancelled.
    #[error("subscription to channel `{channel}` shut down")]
    Shutdown { channel: String },
}

impl DeliverError {
    /// True for errors that stay until someone acts: refusals, TLS certificate rejections, bad configuration.
    pub fn is_fatal_for_now(&self) -> bool {
        self.is_peer_refusal()
            || matches!(
                self,
                DeliverError::BadAddress { .. } | DeliverError::NoPeers { .. }
            )
    }

    /// A peer-specific "no" that another peer might not say: returned once every peer said it in turn.
    fn is_peer_refusal(&self) -> bool {
        matches!(
            self,
            DeliverError::Refused { .. } | DeliverError::Tls { .. } | DeliverError::TooLarge { .. }
        )
    }
}

/// A snapshot of a subscription's health, for metrics and status pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionStatus {
    /// Streams opened after the first one.
    pub reconnects: u64,
    /// The peer the current (or last) stream is with.
    pub current_peer: Option<String>,
    /// True while a stream is open.
    pub connected: bool,
    /// The last block handed out.
    pub last_block: Option<u64>,
    /// The last error seen, transient ones included: the subscription retries them itself, so this is where an
    /// operator learns why blocks stopped coming.
    pub last_error: Option<String>,
    /// When `last_error` happened, to tell a current problem from one long recovered.
    pub last_error_at: Option<std::time::SystemTime>,
    /// Duplicate blocks skipped.
    pub duplicates_skipped: u64,
}

/// Shared read access to a [`Subscription`]'s status.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<SubscriptionStatus>>);

impl StatusHandle {
    pub fn snapshot(&self) -> SubscriptionStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SubscriptionStatus> {
        // A panic while holding this lock leaves plain counters behind: still fine to read.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut SubscriptionStatus)) {
        change(&mut self.lock());
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

struct OpenStream {
    peer: String,
    responses: tonic::Streaming<RawDeliverResponse>,
}

/// Follows one channel; see the module documentation.
pub struct Subscription {
    /// What to follow and how.
    config: ChannelConfig,
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
    /// Consecutive refusals: when every peer refused in turn, the refusal is returned.
    refusals: usize,
    /// Whether a stream was opened before (to count reconnects).
    opened_once: bool,
    /// Shared status for observers.
    status: StatusHandle,
}

impl Subscription {
    /// Prepares a subscription; nothing is connected until [`Subscription::next_block`] is called.
    pub fn new(config: ChannelConfig, start: StartPosition, shutdown: CancellationToken) -> Self {
        Subscription {
            config,
            shutdown,
            cursor: match start {
                StartPosition::Newest => Cursor::Newest,
                StartPosition::Block(number) => Cursor::Next(number),
            },
            stream: None,
            peer_index: 0,
            failures: 0,
            refusals: 0,
            opened_once: false,
            status: StatusHandle::default(),
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
    pub async fn next_block(&mut self) -> Result<DeliveredBlock, DeliverError> {
        if self.config.peers.is_empty() {
            return Err(DeliverError::NoPeers {
                channel: self.config.channel_id.clone(),
            });
        }
        loop {
            if self.shutdown.is_cancelled() {
                return Err(self.shutdown_error());
            }
            let Some(stream) = self.stream.as_mut() else {
                self.wait_before_connecting().await?;
                match self.open_stream().await {
                    Ok(stream) => {
                        let peer = stream.peer.clone();
                        self.stream = Some(stream);
                        let reconnect = std::mem::replace(&mut self.opened_once, true);
                        self.status.update(|s| {
                            s.current_peer = Some(peer);
                            s.connected = true;
                            if reconnect {
                                s.reconnects += 1;
                            }
                        });
                    }
                    Err(error) => self.fail(error)?,
                }
                continue;
            };
            let peer = stream.peer.clone();
            let message = tokio::select! {
                _ = self.shutdown.cancelled() => return Err(self.shutdown_error()),
                message = stream.responses.message() => message,
            };
            let outcome = match message {
                Ok(Some(response)) => self.accept(response, &peer),
                Ok(None) => Err(DeliverError::StreamEnded {
                    peer,
                    channel: self.config.channel_id.clone(),
                }),
                Err(status) => Err(stream_error(
                    peer,
                    &status,
                    self.config.options.max_message_size,
                )),
            };
            match outcome {
                Ok(Some(block)) => return Ok(block),
                Ok(None) => {}
                // A server going down with us at shutdown is not a failure worth reporting.
                Err(_) if self.shutdown.is_cancelled() => return Err(self.shutdown_error()),
                Err(error) => self.fail(error)?,
            }
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
        self.status.update(|s| s.last_block = Some(number));
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

    /// Records a failure, moves to the next peer, and returns the error when every peer refused in turn.
    fn fail(&mut self, error: DeliverError) -> Result<(), DeliverError> {
        self.stream = None;
        self.failures = self.failures.saturating_add(1);
        self.peer_index = (self.peer_index + 1) % self.config.peers.len();
        let message = error.to_string();
        self.status.update(|s| {
            s.connected = false;
            s.last_error = Some(message);
            s.last_error_at = Some(std::time::SystemTime::now());
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

    async fn open_stream(&self) -> Result<OpenStream, DeliverError> {
        let peer = &self.config.peers[self.peer_index];
        let tls = self.config.tls.as_ref();
        let endpoint = endpoint(peer, tls, &self.config.options)?;
        let channel = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(self.shutdown_error()),
            channel = endpoint.connect() => channel.map_err(|e| connect_error(&peer.address, &e))?,
        };
        let request = SeekRequest {
            channel_id: self.config.channel_id.clone(),
            start: match self.cursor {
                Cursor::Newest => SeekPosition::Newest,
                Cursor::Next(number) => SeekPosition::Specified(number),
            },
            stop: SeekPosition::Specified(u64::MAX),
            tls_cert_hash: tls
                .and_then(|t| t.client_certificate.as_ref())
                .map(ClientCertificate::cert_hash),
        };
        let envelope = self.config.identity.seek_envelope_now(&request);
        let responses = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(self.shutdown_error()),
            responses = open_deliver_stream(channel, envelope, self.config.options.max_message_size) => {
                responses.map_err(|status| DeliverError::Stream {
                    peer: peer.address.clone(),
                    message: describe_grpc_status(&status),
                })?
            }
        };
        Ok(OpenStream {
            peer: peer.address.clone(),
            responses,
        })
    }

    fn shutdown_error(&self) -> DeliverError {
        DeliverError::Shutdown {
            channel: self.config.channel_id.clone(),
        }
    }
}

/// Opens `/protos.Deliver/Deliver` with one request envelope. The request stream stays open (as Fabric's own
/// clients keep it) until the response stream is dropped.
pub async fn open_deliver_stream(
    channel: Channel,
    envelope: common::Envelope,
    max_message_size: usize,
) -> Result<tonic::Streaming<RawDeliverResponse>, tonic::Status> {
    use futures::StreamExt;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_message_size);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(describe_error_chain(&e)))?;
    let requests = futures::stream::once(async move { envelope }).chain(futures::stream::pending());
    let codec = tonic_prost::ProstCodec::<common::Envelope, RawDeliverResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(DELIVER_PATH);
    let response = grpc
        .streaming(tonic::Request::new(requests), path, codec)
        .await?;
    Ok(response.into_inner())
}

/// The tonic endpoint for one peer, with TLS, keepalive and timeouts applied.
pub fn endpoint(
    peer: &PeerEndpoint,
    tls: Option<&ClientTls>,
    options: &DeliverOptions,
) -> Result<Endpoint, DeliverError> {
    let bad = |message: String| DeliverError::BadAddress {
        address: peer.address.clone(),
        message,
    };
    let uri = if peer.address.contains("://") {
        peer.address.clone()
    } else if tls.is_some() {
        format!("https://{}", peer.address)
    } else {
        format!("http://{}", peer.address)
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| bad(describe_error_chain(&e)))?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        // The Deliver stream is always open, so pings while idle would add nothing; the peer only tolerates
        // pings without an active stream when its PermitWithoutStream is on.
        .keep_alive_while_idle(false)
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.tonic_config(peer.tls_server_name.as_deref()))
            .map_err(|e| bad(describe_error_chain(&e)))?;
    }
    Ok(endpoint)
}

/// Classifies a failed stream: an oversized message is a configuration problem, anything else is transient.
fn stream_error(peer: String, status: &tonic::Status, limit: usize) -> DeliverError {
    let message = describe_grpc_status(status);
    if status.code() == tonic::Code::OutOfRange
        && status.message().contains("message length too large")
    {
        DeliverError::TooLarge {
            peer,
            limit,
            message,
        }
    } else {
        DeliverError::Stream { peer, message }
    }
}

/// Classifies a connect failure: a rejected certificate is a TLS configuration problem, anything else is
/// transient.
fn connect_error(peer: &str, error: &tonic::transport::Error) -> DeliverError {
    let message = describe_error_chain(error);
    if message.contains("invalid peer certificate") {
        DeliverError::Tls {
            peer: peer.to_owned(),
            message,
        }
    } else {
        DeliverError::Connect {
            peer: peer.to_owned(),
            message,
        }
    }
}

/// A tonic transport error's message with its causes ("transport error" alone says nothing).
fn describe_error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn describe_grpc_status(status: &tonic::Status) -> String {
    let mut message = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        message.push_str(": ");
        message.push_str(&describe_error_chain(source));
    }
    message
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
