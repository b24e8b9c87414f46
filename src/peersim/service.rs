//! The simulator's `/protos.Deliver/Deliver` handler: checks each request like a peer does, then streams raw
//! block bytes (written by hand instead of generated so that blocks go out exactly as stored, without a
//! decode and re-encode).
//!
//! Each call is counted open from its arrival until the server drops its response (the client reset the call,
//! or the call ended and its last response went out); the response headers wait for the first response, as a
//! real peer's do.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Request, Response, Status, Streaming};

use super::{Faults, Shared};
use crate::fabric::deliver::{DELIVER_PATH, RawDeliverResponse, StatusCode};
use crate::fabric::identity::{CertificateKey, tls_cert_hash};
use crate::fabric::proto::{common, msp, orderer};

/// The tonic service for `protos.Deliver` (only its `Deliver` method; the others answer UNIMPLEMENTED).
#[derive(Clone)]
pub(crate) struct DeliverService {
    shared: Arc<Shared>,
    /// Ends open streams at shutdown (otherwise the server's graceful shutdown would wait for them forever).
    shutdown: CancellationToken,
}

impl DeliverService {
    pub(crate) fn new(shared: Arc<Shared>, shutdown: CancellationToken) -> Self {
        DeliverService { shared, shutdown }
    }
}

impl tonic::server::NamedService for DeliverService {
    const NAME: &'static str = "protos.Deliver";
}

type Responses = Pin<Box<dyn Stream<Item = Result<RawDeliverResponse, Status>> + Send>>;

/// One Deliver call's responses, counted open while the server holds them.
pub(crate) struct ResponseStream {
    responses: Responses,
    _open: OpenCall,
}

impl Stream for ResponseStream {
    type Item = Result<RawDeliverResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.responses.as_mut().poll_next(cx)
    }
}

/// Counts a call open from its creation to its drop, and logs both.
struct OpenCall(Arc<Shared>);

impl OpenCall {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open_streams.send_modify(|open| *open += 1);
        tracing::info!(
            open_streams = *shared.open_streams.borrow(),
            "Deliver stream opened"
        );
        OpenCall(shared)
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0
            .open_streams
            .send_modify(|open| *open = open.saturating_sub(1));
        tracing::info!(
            open_streams = *self.0.open_streams.borrow(),
            "Deliver stream closed"
        );
    }
}

impl tonic::server::StreamingService<common::Envelope> for DeliverService {
    type Response = RawDeliverResponse;
    type ResponseStream = ResponseStream;
    type Future = BoxFuture<Response<ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<common::Envelope>>) -> Self::Future {
        let shared = self.shared.clone();
        let shutdown = self.shutdown.clone();
        Box::pin(async move {
            let open = OpenCall::new(shared.clone());
            let client_cert_hash = request
                .peer_certs()
                .and_then(|certs| certs.first().map(|c| tls_cert_hash(c)));
            let requests = request.into_inner();
            let (sender, receiver) = mpsc::channel(16);
            tokio::spawn(serve_stream(
                shared,
                requests,
                sender,
                client_cert_hash,
                shutdown,
            ));
            // Like grpc-go, the response headers go out with the first response: a client on a quiet channel hears
            // nothing until the next block. (None: the call ended without a response, e.g. at shutdown.)
            let mut receiver = ReceiverStream::new(receiver);
            let first = receiver.next().await;
            Ok(Response::new(ResponseStream {
                responses: Box::pin(futures::stream::iter(first).chain(receiver)),
                _open: open,
            }))
        })
    }
}

impl<B> Service<http::Request<B>> for DeliverService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != DELIVER_PATH {
            return Box::pin(async move {
                Ok(
                    Status::unimplemented("the simulator serves only /protos.Deliver/Deliver")
                        .into_http(),
                )
            });
        }
        let method = self.clone();
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<RawDeliverResponse, common::Envelope>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.streaming(method, request).await)
        })
    }
}

/// What a checked request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seek {
    start: u64,
    stop: u64,
}

/// Handles one Deliver stream: like a peer, it answers each request envelope in turn until the client closes
/// its side.
async fn serve_stream(
    shared: Arc<Shared>,
    mut requests: Streaming<common::Envelope>,
    sender: mpsc::Sender<Result<RawDeliverResponse, Status>>,
    client_cert_hash: Option<[u8; 32]>,
    shutdown: CancellationToken,
) {
    let mut cuts = shared.cuts.subscribe();
    loop {
        let envelope = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = cuts.changed() => return,
            message = requests.message() => match message {
                Ok(Some(envelope)) => envelope,
                Ok(None) | Err(_) => return,
            },
        };
        shared.requests.send_modify(|count| *count += 1);
        let faults = take_one_shot_faults(&shared);
        let seek = match check_request(&shared, &envelope, client_cert_hash) {
            Ok(seek) => seek,
            Err(status) => {
                tracing::info!(status = %status, "refusing a Deliver request");
                if !send(&sender, status_response(status), &shutdown).await {
                    return;
                }
                continue;
            }
        };
        if let Some(claimed) = faults.claim_height
            && seek.start == seek.stop
            && seek.start.checked_add(1) == Some(shared.height())
        {
            tracing::info!(
                claimed,
                "injected fault: claiming a height this peer does not have"
            );
            let fake = common::Block {
                header: Some(common::BlockHeader {
                    number: claimed.saturating_sub(1),
                    previous_hash: Bytes::new(),
                    data_hash: Bytes::new(),
                }),
                data: Some(common::BlockData { data: Vec::new() }),
                metadata: None,
            };
            if !send(
                &sender,
                block_response(fake.encode_to_vec().into()),
                &shutdown,
            )
            .await
                || !send(&sender, status_response(StatusCode::SUCCESS), &shutdown).await
            {
                return;
            }
            continue;
        }
        if let Some(status) = faults.refuse_with {
            if !send(&sender, status_response(status), &shutdown).await {
                return;
            }
            continue;
        }
        let streamed = tokio::select! {
            _ = cuts.changed() => {
                tracing::info!("injected fault: cutting every stream");
                return;
            }
            end = stream_blocks(&shared, seek, &faults, &sender, &shutdown) => end,
        };
        match streamed {
            StreamEnd::Completed => {
                if !send(&sender, status_response(StatusCode::SUCCESS), &shutdown).await {
                    return;
                }
            }
            StreamEnd::Cut | StreamEnd::ClientGone => return,
        }
    }
}

/// Queues one response; `false` when the client is gone or the simulator is stopping (a client that stopped
/// reading must not hold the shutdown up).
async fn send(
    sender: &mpsc::Sender<Result<RawDeliverResponse, Status>>,
    response: RawDeliverResponse,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        sent = sender.send(Ok(response)) => sent.is_ok(),
    }
}

/// Takes the one-shot faults for a new request, leaving the lasting ones in place.
fn take_one_shot_faults(shared: &Shared) -> Faults {
    let mut taken = Faults::default();
    shared.faults.send_if_modified(|faults| {
        taken = faults.clone();
        faults.drop_after_blocks = None;
        faults.duplicate_first_block = false;
        faults.skip_second_block = false;
        faults.hang_after_blocks = None;
        false
    });
    taken
}

enum StreamEnd {
    Completed,
    Cut,
    ClientGone,
}

async fn stream_blocks(
    shared: &Shared,
    seek: Seek,
    faults: &Faults,
    sender: &mpsc::Sender<Result<RawDeliverResponse, Status>>,
    shutdown: &CancellationToken,
) -> StreamEnd {
    let mut height = shared.ledger.height.subscribe();
    let mut faults_changed = shared.faults.subscribe();
    let mut sent = 0u64;
    let mut number = seek.start;
    loop {
        if number > seek.stop {
            return StreamEnd::Completed;
        }
        // Wait for the block to exist (a start at the height waits for the next block).
        let block = loop {
            if let Some(block) = shared.block(number) {
                break block;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return StreamEnd::ClientGone,
                _ = sender.closed() => return StreamEnd::ClientGone,
                changed = height.changed() => if changed.is_err() { return StreamEnd::ClientGone },
                // A height limit lifted.
                changed = faults_changed.changed() => if changed.is_err() { return StreamEnd::ClientGone },
            }
        };
        if faults.drop_after_blocks == Some(sent) {
            tracing::info!(after = sent, "injected fault: cutting the stream");
            return StreamEnd::Cut;
        }
        if faults.hang_after_blocks == Some(sent) {
            tracing::info!(
                after = sent,
                "injected fault: the stream sends nothing more"
            );
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = sender.closed() => {}
            }
            return StreamEnd::ClientGone;
        }
        if !faults.block_delay.is_zero() {
            tokio::select! {
                _ = shutdown.cancelled() => return StreamEnd::ClientGone,
                _ = tokio::time::sleep(faults.block_delay) => {}
            }
        }
        let skip = faults.skip_second_block && sent == 1;
        let copies = if faults.duplicate_first_block && sent == 0 {
            2
        } else {
            1
        };
        let block = match faults_changed.borrow().tamper {
            Some(tamper) if number >= tamper.from => super::block::tamper(&block, tamper.how),
            _ => block,
        };
        if !skip {
            for _ in 0..copies {
                if !send(sender, block_response(block.clone()), shutdown).await {
                    return StreamEnd::ClientGone;
                }
            }
        }
        sent += 1;
        number = match number.checked_add(1) {
            Some(next) => next,
            None => return StreamEnd::Completed,
        };
    }
}

fn block_response(block: Bytes) -> RawDeliverResponse {
    RawDeliverResponse {
        status: None,
        block: Some(block),
    }
}

fn status_response(status: StatusCode) -> RawDeliverResponse {
    RawDeliverResponse {
        status: Some(status.0),
        block: None,
    }
}

/// Checks a request as a peer does (channel, Readers policy, signature, TLS binding, seek range) and returns
/// the blocks it asks for, or the status to answer with.
fn check_request(
    shared: &Shared,
    envelope: &common::Envelope,
    client_cert_hash: Option<[u8; 32]>,
) -> Result<Seek, StatusCode> {
    let bad = |what: &str| {
        tracing::info!("malformed Deliver request: {what}");
        StatusCode::BAD_REQUEST
    };
    let payload = common::Payload::decode(envelope.payload.clone()).map_err(|_| bad("payload"))?;
    let header = payload.header.ok_or_else(|| bad("no header"))?;
    let channel_header =
        common::ChannelHeader::decode(header.channel_header).map_err(|_| bad("channel header"))?;
    if channel_header.r#type != common::HeaderType::DeliverSeekInfo as i32 {
        return Err(bad("header type is not DELIVER_SEEK_INFO"));
    }
    if channel_header.channel_id != shared.ledger.channel_id {
        tracing::info!(channel = %channel_header.channel_id, "unknown channel");
        return Err(StatusCode::NOT_FOUND);
    }
    let signature_header = common::SignatureHeader::decode(header.signature_header)
        .map_err(|_| bad("signature header"))?;
    let creator =
        msp::SerializedIdentity::decode(signature_header.creator).map_err(|_| bad("creator"))?;
    check_reader(shared, &creator, &envelope.payload, &envelope.signature)?;
    if let Some(expected) = client_cert_hash
        && channel_header.tls_cert_hash[..] != expected[..]
    {
        tracing::info!("tls_cert_hash does not match the client's TLS certificate");
        return Err(StatusCode::FORBIDDEN);
    }
    let seek_info = orderer::SeekInfo::decode(payload.data).map_err(|_| bad("seek info"))?;
    let height = shared.height();
    let newest = height.checked_sub(1);
    let position = |p: Option<orderer::SeekPosition>| -> Result<u64, StatusCode> {
        use orderer::seek_position::Type;
        match p.and_then(|p| p.r#type) {
            Some(Type::Oldest(_)) => Ok(0),
            Some(Type::Newest(_)) => newest.ok_or(StatusCode::NOT_FOUND),
            Some(Type::Specified(s)) => Ok(s.number),
            Some(Type::NextCommit(_)) => Ok(height),
            None => Err(bad("seek position without a type")),
        }
    };
    let start = position(seek_info.start)?;
    let stop = position(seek_info.stop)?;
    if start > height {
        tracing::info!(start, height, "start beyond the height");
        return Err(StatusCode::NOT_FOUND);
    }
    let fail_if_not_ready =
        seek_info.behavior == orderer::seek_info::SeekBehavior::FailIfNotReady as i32;
    if fail_if_not_ready && start >= height {
        return Err(StatusCode::NOT_FOUND);
    }
    if stop < start {
        return Err(bad("stop before start"));
    }
    Ok(Seek { start, stop })
}

/// The Readers policy of the simulated channel: a member of the configured MSP whose certificate the org CA
/// issued, who signed the request (low-S).
fn check_reader(
    shared: &Shared,
    creator: &msp::SerializedIdentity,
    payload: &[u8],
    signature: &[u8],
) -> Result<(), StatusCode> {
    let forbidden = |why: String| {
        tracing::info!(mspid = %creator.mspid, "forbidden: {why}");
        StatusCode::FORBIDDEN
    };
    if creator.mspid != shared.ledger.msp_id.as_str() {
        return Err(forbidden(format!(
            "not a member of {}",
            shared.ledger.msp_id
        )));
    }
    let certificate = CertificateKey::from_pem(&creator.id_bytes, "the request's creator")
        .map_err(|e| forbidden(e.to_string()))?;
    certificate
        .verify_issued_by(&shared.ledger.org_ca, "the org CA")
        .map_err(|e| forbidden(e.to_string()))?;
    certificate
        .verify(payload, signature)
        .map_err(|e| forbidden(e.to_string()))
}
