//! What can go wrong while following a channel, and the status codes a peer answers with.

use std::time::Duration;

use crate::fabric::proto::common;

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
    /// The TLS session was refused: the peer's certificate was rejected (wrong CA, or a name that is neither the
    /// address's host nor the configured `tls_server_name`), or the peer rejected the client (no client
    /// certificate where it requires one, an unknown or expired one). A configuration problem, treated like a
    /// refusal.
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
    /// The peer sent nothing and did not answer a check on the same connection: frozen, or the path to it is.
    #[error(
        "peer {peer} sent nothing for {silent:?} and did not answer a check within {waited:?}: it is frozen or unreachable"
    )]
    Frozen {
        peer: String,
        silent: Duration,
        waited: Duration,
    },
    /// The peer has the block the stream waits for but the stream did not deliver it.
    #[error("peer {peer} has block {block} but its stream did not deliver it")]
    Stalled { peer: String, block: u64 },
    /// The peer reported a height, then answered that it does not have a block below it: broken, or lying.
    #[error(
        "peer {peer} reported height {reported} but says it does not have block {block}: it is demoted for a while"
    )]
    Inconsistent {
        peer: String,
        reported: u64,
        block: u64,
    },
    #[error("peer {peer} closed the stream of channel `{channel}` without a status")]
    StreamEnded { peer: String, channel: String },
    /// The peer served a block that fails verification (its data does not hash to its header's `data_hash`, or it
    /// does not chain onto the block before it): the block is not used and the peer is demoted for a while.
    #[error(
        "peer {peer} served block {block}, which fails verification: {reason}; it is demoted for a while"
    )]
    BadBlock {
        peer: String,
        block: u64,
        reason: String,
    },
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
    pub(super) fn is_peer_refusal(&self) -> bool {
        matches!(
            self,
            DeliverError::Refused { .. } | DeliverError::Tls { .. } | DeliverError::TooLarge { .. }
        )
    }
}
