//! Bounded reads of a channel: a few given blocks, once, for tools (the filter tester, replay by time) rather
//! than a subscription that follows the chain.
//!
//! Invariants:
//! - One request per read: a signed `SeekInfo` from `from` to `to` with `FAIL_IF_NOT_READY`, so a block the
//!   peer does not have yet is a NOT_FOUND answer at once, never a wait.
//! - Every answer is bounded in time ([`FetchLimits::timeout`] for the whole read on one peer) and in size (at
//!   most [`MAX_FETCH_BLOCKS`] blocks per read); the call is closed on the peer when the read ends, however it
//!   ends (see [`super::DeliverStream`]).
//! - Peers are tried in configuration order: a transport failure or a transient status moves to the next peer;
//!   a NOT_FOUND from every peer is [`DeliverError::Refused`] with that status (the blocks are not there yet).
//! - Blocks come back in order, each the number asked for; anything else is a [`DeliverError::Gap`].

use std::time::Duration;

use super::stream::{connect, stream_error};
use super::{ChannelConfig, DeliverError, DeliveredBlock, StatusCode, block_number};
use crate::fabric::identity::{SeekBehavior, SeekPosition, SeekRequest};

/// The most blocks one bounded read returns: a request asking for more is refused before anything is sent.
pub const MAX_FETCH_BLOCKS: u64 = 1000;

/// How long a bounded read may take on one peer, when the caller does not say.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads blocks `from..=to` of the channel from the first peer that has them all; see the module documentation.
pub async fn fetch_blocks(
    config: &ChannelConfig,
    from: u64,
    to: u64,
    timeout: Duration,
) -> Result<Vec<DeliveredBlock>, DeliverError> {
    if config.peers.is_empty() {
        return Err(DeliverError::NoPeers {
            channel: config.channel_id.clone(),
        });
    }
    if to < from || to - from >= MAX_FETCH_BLOCKS {
        return Err(DeliverError::Malformed {
            peer: "(none asked)".to_owned(),
            reason: format!(
                "a bounded read takes 1 to {MAX_FETCH_BLOCKS} blocks, from a block up to a block not below it; \
                 asked {from}..{to}"
            ),
        });
    }
    let mut last_error = None;
    for index in 0..config.peers.len() {
        match tokio::time::timeout(timeout, fetch_from(config, index, from, to)).await {
            Ok(Ok(blocks)) => return Ok(blocks),
            Ok(Err(error)) => {
                tracing::debug!(peer = %config.peers[index].address, %error, "bounded read failed on this peer");
                // Even a refusal may be that peer's alone (behind, or not joined): the next may have the blocks.
                last_error = Some(error);
            }
            Err(_) => {
                last_error = Some(DeliverError::Stream {
                    peer: config.peers[index].address.clone(),
                    message: format!("blocks {from}..{to} did not arrive within {timeout:?}"),
                });
            }
        }
    }
    Err(last_error.expect("at least one peer was asked"))
}

/// Reads one block of the channel (see [`fetch_blocks`]).
pub async fn fetch_block(
    config: &ChannelConfig,
    number: u64,
    timeout: Duration,
) -> Result<DeliveredBlock, DeliverError> {
    let mut blocks = fetch_blocks(config, number, number, timeout).await?;
    blocks.pop().ok_or_else(|| DeliverError::StreamEnded {
        peer: "(every peer)".to_owned(),
        channel: config.channel_id.clone(),
    })
}

/// One bounded read on peer `index`.
async fn fetch_from(
    config: &ChannelConfig,
    index: usize,
    from: u64,
    to: u64,
) -> Result<Vec<DeliveredBlock>, DeliverError> {
    let peer = &config.peers[index];
    let connection = connect(peer, config.tls.as_ref(), &config.options).await?;
    let request = SeekRequest {
        channel_id: config.channel_id.clone(),
        start: SeekPosition::Specified(from),
        stop: SeekPosition::Specified(to),
        tls_cert_hash: config.tls_cert_hash(),
    };
    let envelope = config
        .identity
        .seek_envelope_now_with(&request, SeekBehavior::FailIfNotReady);
    let limit = config.options.max_message_size;
    let failed = |status: &tonic::Status| stream_error(peer.address.clone(), status, limit);
    let mut stream = super::open_deliver_stream(connection, envelope, limit)
        .await
        .map_err(|status| failed(&status))?;
    let mut blocks = Vec::new();
    loop {
        let message = stream.message().await.map_err(|status| failed(&status))?;
        let Some(message) = message else {
            return Err(DeliverError::StreamEnded {
                peer: peer.address.clone(),
                channel: config.channel_id.clone(),
            });
        };
        if let Some(bytes) = message.block {
            let expected = from + blocks.len() as u64;
            let number = block_number(&bytes).map_err(|reason| DeliverError::Malformed {
                peer: peer.address.clone(),
                reason,
            })?;
            if number != expected || number > to {
                return Err(DeliverError::Gap {
                    peer: peer.address.clone(),
                    expected,
                    got: number,
                });
            }
            blocks.push(DeliveredBlock { number, bytes });
            continue;
        }
        let status = StatusCode(message.status.unwrap_or_default());
        if status == StatusCode::SUCCESS && blocks.len() as u64 == to - from + 1 {
            return Ok(blocks);
        }
        return Err(if status.is_refusal() {
            DeliverError::Refused {
                peer: peer.address.clone(),
                channel: config.channel_id.clone(),
                start: format!("block {}", from + blocks.len() as u64),
                status,
            }
        } else {
            DeliverError::Status {
                peer: peer.address.clone(),
                channel: config.channel_id.clone(),
                status,
            }
        });
    }
}
