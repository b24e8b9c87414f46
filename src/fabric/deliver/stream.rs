//! One `/protos.Deliver/Deliver` call on one peer connection, the checks made on the side of it (is the peer
//! still answering, how high is its chain), and how transport failures are classified.
//!
//! Invariant: a [`DeliverStream`] that is dropped is closed on the peer. The request stream of a Deliver call
//! carries one envelope and then stays open (as Fabric's own clients keep it), so dropping only the responses
//! would leave the HTTP/2 stream half-open on the peer for good, with its connection; the stream's request side
//! therefore ends when the [`DeliverStream`] (or the future opening it) is dropped, which makes the HTTP/2 layer
//! reset the call.

use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::{Channel, Endpoint};

use super::{
    ClientTls, DeliverError, DeliverOptions, PeerEndpoint, RawDeliverResponse, block_number,
};
use crate::fabric::proto::common;

/// The gRPC method of the peer's full-block Deliver service.
pub const DELIVER_PATH: &str = "/protos.Deliver/Deliver";

/// An open Deliver call: its responses, and the end of its request stream, which comes when this is dropped.
pub struct DeliverStream {
    /// The peer's answers: blocks, then a status for a bounded seek (or a refusal).
    responses: tonic::Streaming<RawDeliverResponse>,
    /// Ends the request stream when dropped, so the call is reset on the peer (see the module documentation).
    _close: DropGuard,
}

impl std::fmt::Debug for DeliverStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverStream").finish_non_exhaustive()
    }
}

impl DeliverStream {
    /// The next response; `None` when the peer ended the call. Cancel-safe.
    pub async fn message(&mut self) -> Result<Option<RawDeliverResponse>, tonic::Status> {
        self.responses.message().await
    }
}

/// Opens `/protos.Deliver/Deliver` with one request envelope and waits for the peer's response headers.
///
/// A real peer sends its headers with its first response (a block or a status), so on a quiet channel this waits
/// until the next block. Dropping the future or the returned stream closes the call on the peer.
pub async fn open_deliver_stream(
    channel: Channel,
    envelope: common::Envelope,
    max_message_size: usize,
) -> Result<DeliverStream, tonic::Status> {
    use futures::StreamExt;
    let close = CancellationToken::new();
    let requests_end = close.clone();
    // Created before the first await: dropping this future half-way also ends the request stream.
    let guard = close.drop_guard();
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_message_size);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(describe_error_chain(&e)))?;
    let requests = futures::stream::once(async move { envelope }).chain(
        futures::stream::once(requests_end.cancelled_owned())
            .filter_map(|()| async { None::<common::Envelope> }),
    );
    let codec = tonic_prost::ProstCodec::<common::Envelope, RawDeliverResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(DELIVER_PATH);
    let response = grpc
        .streaming(tonic::Request::new(requests), path, codec)
        .await?;
    Ok(DeliverStream {
        responses: response.into_inner(),
        _close: guard,
    })
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

/// Connects to a peer (TCP, TLS, HTTP/2), bounded by the endpoint's connect timeout.
pub(super) async fn connect(
    peer: &PeerEndpoint,
    tls: Option<&ClientTls>,
    options: &DeliverOptions,
) -> Result<Channel, DeliverError> {
    let endpoint = endpoint(peer, tls, options)?;
    endpoint.connect().await.map_err(|e| {
        let message = describe_error_chain(&e);
        match transport_error(&peer.address, &message) {
            DeliverError::Stream { peer, message } => DeliverError::Connect { peer, message },
            refused => refused,
        }
    })
}

/// What a peer said to a check made beside a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CheckAnswer {
    /// The peer sent this block first.
    Block(u64),
    /// The peer answered with a status and no block (e.g. NOT_FOUND: it does not have the block yet).
    Status(i32),
}

/// Sends one bounded request on `channel` and reads the first answer within `timeout`. `Ok(None)`: no answer in
/// time (the peer, or the path to it, is frozen). The call is closed when this returns.
pub(super) async fn check(
    channel: Channel,
    envelope: common::Envelope,
    max_message_size: usize,
    timeout: Duration,
) -> Result<Option<CheckAnswer>, tonic::Status> {
    let answer = async {
        let mut stream = open_deliver_stream(channel, envelope, max_message_size).await?;
        match stream.message().await? {
            Some(RawDeliverResponse {
                block: Some(bytes), ..
            }) => block_number(&bytes)
                .map(CheckAnswer::Block)
                .map_err(tonic::Status::data_loss),
            Some(RawDeliverResponse { status, .. }) => {
                Ok(CheckAnswer::Status(status.unwrap_or_default()))
            }
            None => Err(tonic::Status::unavailable(
                "the peer ended the call without an answer",
            )),
        }
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(answer) => answer.map(Some),
        Err(_) => Ok(None),
    }
}

/// Classifies a failed stream: an oversized message is a configuration problem, a TLS rejection too (see
/// [`transport_error`]), anything else is transient.
pub(super) fn stream_error(peer: String, status: &tonic::Status, limit: usize) -> DeliverError {
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
        transport_error(&peer, &message)
    }
}

/// Classifies a transport failure from its message: a certificate the client rejected, or a TLS alert by which
/// the peer rejected the client (no client certificate, an unknown or expired one), will not change by retrying
/// and becomes [`DeliverError::Tls`]; anything else is [`DeliverError::Stream`], retried.
pub(super) fn transport_error(peer: &str, message: &str) -> DeliverError {
    if let Some(reason) = tls_rejection(message) {
        DeliverError::Tls {
            peer: peer.to_owned(),
            message: format!("{reason}: {message}"),
        }
    } else {
        DeliverError::Stream {
            peer: peer.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// Why a TLS session was refused, when `message` (a transport error chain) says it was; `None` for anything
/// else. Pure, so the wording of each case is unit-tested.
pub fn tls_rejection(message: &str) -> Option<&'static str> {
    if message.contains("invalid peer certificate") {
        return Some("the peer's certificate was rejected");
    }
    // rustls prints a received alert as `received fatal alert: <AlertDescription as Debug>`.
    let alert = message.split("received fatal alert: ").nth(1)?;
    let alert = alert
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default();
    match alert {
        "CertificateRequired" => Some(
            "the peer requires a client certificate (mutual TLS) and none was presented: configure a client certificate and key",
        ),
        "BadCertificate" | "UnsupportedCertificate" | "CertificateUnknown" => {
            Some("the peer rejected the client certificate")
        }
        "UnknownCA" => Some("the peer does not trust the client certificate's CA"),
        // A signature of the handshake that does not verify: in practice a client certificate issued by another CA
        // of the same name as one the peer trusts.
        "DecryptError" => Some(
            "the peer rejected the client certificate: a signature did not verify against the CAs it trusts",
        ),
        "CertificateExpired" => Some("the peer rejected the client certificate as expired"),
        "CertificateRevoked" => Some("the peer rejected the client certificate as revoked"),
        "AccessDenied" => Some("the peer denied access during the TLS handshake"),
        "HandshakeFailure" | "ProtocolVersion" | "InsufficientSecurity" => {
            Some("the peer and the client share no TLS version or cipher suite")
        }
        _ => None,
    }
}

/// A tonic transport error's message with its causes ("transport error" alone says nothing).
pub(super) fn describe_error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

pub(super) fn describe_grpc_status(status: &tonic::Status) -> String {
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
    fn tls_rejections_are_recognised_from_the_alert_the_peer_sent() {
        let required =
            "transport error: connection error: received fatal alert: CertificateRequired";
        assert!(
            tls_rejection(required)
                .is_some_and(|reason| reason.contains("requires a client certificate")),
        );
        assert_eq!(
            tls_rejection("h2 protocol error: received fatal alert: UnknownCA"),
            Some("the peer does not trust the client certificate's CA")
        );
        assert!(tls_rejection("invalid peer certificate: UnknownIssuer").is_some());
        assert_eq!(
            tls_rejection("received fatal alert: CloseNotify, then EOF"),
            None
        );
        assert_eq!(tls_rejection("connection refused (os error 111)"), None);
        assert!(matches!(
            transport_error("p:1", required),
            DeliverError::Tls { .. }
        ));
        assert!(matches!(
            transport_error("p:1", "connection reset by peer"),
            DeliverError::Stream { .. }
        ));
    }
}
