//! A catching-up trigger's reader: a task of its own that reads the trigger's catch-up stream, decodes, verifies
//! and extracts each block, and holds the results until the worker takes them. Decoding then runs beside the
//! worker's filter jobs, pushes and store writes instead of between them: a catch-up uses a second core.
//!
//! Invariants:
//! - The worker takes reads in stream order, each once. Held reads are bounded: at most [`READ_AHEAD_BLOCKS`]
//!   reads or [`READ_AHEAD_BYTES`] (as delivered), plus the one block the reader is decoding.
//! - A read that is not a usable block (refused, undecodable, stream error) is the last one held: the reader
//!   reads on only once the worker has taken it, because the worker may reject that block or drop the stream.
//! - [`Behind::reject`] drops what is held; the reader drops the block it may be decoding, and the stream asks the
//!   next peer for the rejected block. Nothing read after a rejected block reaches the worker.
//! - Dropping the [`Behind`] ends the reader and so gives the stream's catch-up slot back. A reader that ends on
//!   its own (a panic) shows as [`Read::Ended`], never as a wait that lasts forever.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::channel::{CatchUp, ChannelFeed, PrepareError};
use super::window::{BlockEvents, Readers};
use crate::fabric::decode::BlockDecoder;
use crate::fabric::deliver::DeliverError;

/// The most reads held ahead of the worker: about two filter jobs' worth, so the blocks of the next job are
/// decoded while the pool evaluates the current one.
pub const READ_AHEAD_BLOCKS: usize = 64;
/// The most bytes (as delivered) of blocks held ahead: decoded, with their events, they take a few times that,
/// for each of a channel's catch-up streams. Blocks of ordinary size still fill [`READ_AHEAD_BLOCKS`].
pub const READ_AHEAD_BYTES: usize = 2 << 20;

/// One block (or the failure to get it) from a catch-up stream.
pub enum Read {
    Ready(Arc<BlockEvents>),
    /// Block `number` arrived but cannot be used.
    Unusable {
        number: u64,
        error: PrepareError,
    },
    /// The stream failed; it reconnects and reads the same block again.
    Failed(DeliverError),
    /// The reader stopped without a reason it could report (it panicked): the stream is gone.
    Ended,
}

/// The worker's end of a catch-up stream and its reader.
pub struct Behind {
    shared: Arc<Shared>,
    /// The block the worker's next read is about.
    next: Option<u64>,
    /// Ends the reader when the worker drops its catch-up.
    _reader: DropGuard,
}

/// What the reader and the worker share.
#[derive(Default)]
struct Shared {
    held: Mutex<Held>,
    /// The reader held a read, or ended.
    readable: Notify,
    /// The worker took a read, or rejected a block.
    room: Notify,
}

/// What the reader holds for the worker.
#[derive(Default)]
struct Held {
    /// Reads not taken yet, in stream order, with their sizes as delivered.
    reads: VecDeque<(Read, usize)>,
    /// The sum of the sizes in `reads`.
    bytes: usize,
    /// A block the worker refused (with the reason) that the stream has not been told about yet.
    reject: Option<(u64, String)>,
    /// The reader is gone.
    ended: bool,
}

impl Held {
    /// Whether the reader may read another block: within the bounds, and the last read held was usable.
    fn has_room(&self) -> bool {
        self.reads.len() < READ_AHEAD_BLOCKS
            && self.bytes < READ_AHEAD_BYTES
            && self
                .reads
                .back()
                .is_none_or(|(read, _)| matches!(read, Read::Ready(_)))
    }
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Behind {
    /// Starts the reader of `stream` (a task on the current runtime).
    pub fn start(stream: CatchUp, feed: Arc<ChannelFeed>) -> Behind {
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let next = stream.next_block_number();
        tokio::spawn(read(stream, feed, Arc::clone(&shared), stop.clone()));
        Behind {
            shared,
            next,
            _reader: stop.drop_guard(),
        }
    }

    /// Whether the next read is about block `number`.
    pub fn serves(&self, number: u64) -> bool {
        self.next == Some(number)
    }

    /// The next read, waiting for the reader if it holds none. Cancel-safe: a read is either returned or still
    /// held.
    pub async fn next(&mut self) -> Read {
        loop {
            let readable = self.shared.readable.notified();
            {
                let mut held = self.shared.held();
                if let Some((read, size)) = held.reads.pop_front() {
                    held.bytes -= size;
                    drop(held);
                    self.shared.room.notify_one();
                    if let Read::Ready(block) = &read {
                        self.next = block.number.checked_add(1);
                    }
                    return read;
                }
                if held.ended {
                    return Read::Ended;
                }
            }
            readable.await;
        }
    }

    /// The next read when the reader holds it and it is a usable block; otherwise [`Behind::next`] says what
    /// it is, or waits for it.
    pub fn take_ready(&mut self) -> Option<Arc<BlockEvents>> {
        let mut held = self.shared.held();
        let Some((Read::Ready(block), size)) = held.reads.front() else {
            return None;
        };
        let (block, size) = (Arc::clone(block), *size);
        held.reads.pop_front();
        held.bytes -= size;
        drop(held);
        self.shared.room.notify_one();
        self.next = block.number.checked_add(1);
        Some(block)
    }

    /// Refuses block `number`: the stream reads it again from the next peer, and what was read after it goes.
    pub fn reject(&mut self, number: u64, reason: String) {
        {
            let mut held = self.shared.held();
            held.reads.clear();
            held.bytes = 0;
            held.reject = Some((number, reason));
        }
        self.next = Some(number);
        self.shared.room.notify_one();
    }

    /// Calls `visit` on the usable blocks held, in order, until it returns `false`.
    pub fn visit_ahead(&self, mut visit: impl FnMut(&Arc<BlockEvents>) -> bool) {
        let held = self.shared.held();
        for (read, _) in &held.reads {
            let Read::Ready(block) = read else { return };
            if !visit(block) {
                return;
            }
        }
    }
}

/// Marks the reader gone however it ends, so the worker never waits for it in vain.
struct Ending(Arc<Shared>);

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.held().ended = true;
        self.0.readable.notify_one();
    }
}

/// The reader: reads, decodes and holds blocks within the bounds until `stop`.
async fn read(
    mut stream: CatchUp,
    feed: Arc<ChannelFeed>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _ending = Ending(Arc::clone(&shared));
    let mut decoder = BlockDecoder::new();
    loop {
        // Room first, telling the stream about a rejected block on the way.
        loop {
            let room = shared.room.notified();
            let reject = {
                let mut held = shared.held();
                match held.reject.take() {
                    Some(reject) => Some(reject),
                    None if held.has_room() => break,
                    None => None,
                }
            };
            match reject {
                Some((number, reason)) => stream.reject(number, reason),
                None => tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = room => {}
                },
            }
        }
        let delivered = tokio::select! {
            _ = stop.cancelled() => return,
            // A rejection while the stream waits: the block it waits for is no longer wanted.
            _ = rejected(&shared) => continue,
            delivered = stream.next_block() => delivered,
        };
        let read = match delivered {
            Ok(delivered) => {
                let number = delivered.number;
                let size = delivered.bytes.len();
                match feed.prepare(&mut decoder, delivered, Readers::One) {
                    Ok(block) => (Read::Ready(block), size),
                    Err(error) => (Read::Unusable { number, error }, size),
                }
            }
            Err(error) => (Read::Failed(error), 0),
        };
        {
            let mut held = shared.held();
            if held.reject.is_some() {
                // Read after the rejected block: dropped, and the stream is told above.
                continue;
            }
            held.bytes += read.1;
            held.reads.push_back(read);
        }
        shared.readable.notify_one();
    }
}

/// Resolves once the worker has rejected a block the reader has not passed on to the stream. Cancel-safe.
async fn rejected(shared: &Shared) {
    loop {
        let room = shared.room.notified();
        if shared.held().reject.is_some() {
            return;
        }
        room.await;
    }
}
