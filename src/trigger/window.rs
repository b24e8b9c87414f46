//! The channel's recent blocks, decoded once and shared by every trigger of the channel (pure).
//!
//! The channel task appends each block it receives; a trigger asks for the block it needs next and learns
//! whether it is here ([`Lookup::Here`]), not yet received ([`Lookup::NotYet`]: wait for the channel), or
//! already gone ([`Lookup::Gone`]: the trigger is behind the window and reads the chain on its own stream until
//! it catches up). Keeping the window bounded is what lets a trigger stuck on one event (Exception, a slow
//! function) fall behind without holding memory or other triggers back.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use super::state::Anchor;
use crate::events::{Event, EventType};
use crate::fabric::decode::{Block, VerifyError};
use crate::filter::{Envelope, Render};

/// One event of a block, prepared once for every trigger of the channel.
#[derive(Debug)]
pub struct ChainEvent {
    /// Routes the event to the triggers of its type.
    pub event_type: EventType,
    /// The envelope's `id`: the de-duplication key sent with every push and kept with dead letters.
    pub id: String,
    /// Whether the transaction the event belongs to is valid: Contract events of invalid transactions go only
    /// to triggers that asked for them.
    pub valid_transaction: bool,
    /// The event, whose envelope is written only when a trigger receives it.
    event: Arc<Event>,
    /// The envelope, built by the first trigger that receives the event and shared by the others, with its
    /// filter-language conversions cached for every trigger that filters it (see [`Readers`]).
    envelope: OnceLock<Envelope>,
    /// Who filters the event: whether its envelope keeps its jq value.
    readers: Readers,
}

/// Who reads a block's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Every trigger of the channel (the window): each event's conversions to the filter languages are kept for
    /// the next trigger.
    Many,
    /// One trigger (its catch-up stream): the jq value of an event is made for each evaluation and dropped on the
    /// filter thread that made it (see [`Envelope::for_one`]).
    One,
}

impl ChainEvent {
    /// Prepares an event; nothing of its envelope is built yet.
    pub fn new(event: Event, readers: Readers) -> Self {
        ChainEvent {
            readers,
            event_type: event.event_type(),
            id: event.id().to_owned(),
            valid_transaction: event.valid_transaction(),
            event: Arc::new(event),
            envelope: OnceLock::new(),
        }
    }

    /// The envelope as JSON, for a trigger without a filter (built on the first call, kept with the event).
    pub fn json(&self) -> &serde_json::Value {
        self.event.envelope()
    }

    /// The envelope for filters, written as JSON text on the first call (once per event, whichever trigger asks
    /// first).
    pub fn envelope(&self) -> &Envelope {
        self.envelope.get_or_init(|| match self.readers {
            Readers::Many => Envelope::from_text(self.event.to_json()),
            Readers::One => Envelope::for_one(Arc::clone(&self.event) as Arc<dyn Render>),
        })
    }
}

/// An event writes its envelope for filters straight from its parts.
impl Render for Event {
    fn text(&self) -> Vec<u8> {
        self.to_json()
    }

    fn jq(&self) -> jaq_json::Val {
        self.to_jq()
    }
}

/// A decoded block's events in chain order. Event indexes (the second half of a trigger's position) count
/// this list, in which the Contract events of invalid transactions are always present, so that a position means
/// the same event whatever a trigger's `include_invalid` setting.
#[derive(Debug)]
pub struct BlockEvents {
    /// The block's number.
    pub number: u64,
    /// Its header hash: the next block's `previous_hash`.
    pub hash: [u8; 32],
    /// The header hash of the block before, as this block's header claims it.
    pub previous_hash: Bytes,
    /// When the block arrived: the start of the latency each trigger measures.
    pub received_at: Instant,
    /// When its events were ready (decoded, verified, extracted): where a trigger's wait for it starts.
    pub ready_at: Instant,
    /// The events, Block event first.
    pub events: Vec<ChainEvent>,
}

impl BlockEvents {
    /// Prepares a decoded block's events (extracted with `include_invalid = true`, see the type's docs).
    pub fn new(block: &Block, events: Vec<Event>, received_at: Instant, readers: Readers) -> Self {
        let events = events
            .into_iter()
            .map(|event| ChainEvent::new(event, readers))
            .collect();
        BlockEvents {
            number: block.number,
            hash: block.hash,
            previous_hash: block.previous_hash.clone(),
            received_at,
            ready_at: Instant::now(),
            events,
        }
    }

    /// This block as the anchor of the block after it.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            block: self.number,
            hash: self.hash,
        }
    }

    /// Checks that this block chains onto `anchor` when the anchor is the block right before it (pure).
    pub fn chains_onto(&self, anchor: Option<Anchor>) -> Result<(), VerifyError> {
        match anchor {
            Some(anchor)
                if anchor.block.checked_add(1) == Some(self.number)
                    && self.previous_hash[..] != anchor.hash[..] =>
            {
                Err(VerifyError::PreviousHash {
                    block: self.number,
                    previous_hash: self.previous_hash.clone(),
                    expected: anchor.hash,
                })
            }
            _ => Ok(()),
        }
    }
}

/// Where a wanted block is relative to the window.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// In the window.
    Here(Arc<BlockEvents>),
    /// Not received yet (or nothing received at all): wait for the channel.
    NotYet,
    /// Older than the oldest block kept: read it from the chain.
    Gone,
}

/// The last `capacity` blocks of a channel, contiguous.
#[derive(Debug)]
pub struct BlockWindow {
    /// Most blocks kept: bounds memory whatever the triggers do.
    capacity: usize,
    /// Contiguous blocks, oldest first.
    blocks: VecDeque<Arc<BlockEvents>>,
}

impl BlockWindow {
    /// An empty window keeping at most `capacity` blocks (at least one).
    pub fn new(capacity: usize) -> Self {
        BlockWindow {
            capacity: capacity.max(1),
            blocks: VecDeque::new(),
        }
    }

    /// Adds the channel's next block. A block that does not follow the newest one (the stream was restarted
    /// elsewhere) starts the window afresh, so that the window never has holes.
    pub fn push(&mut self, block: Arc<BlockEvents>) {
        if self
            .newest()
            .is_some_and(|newest| newest + 1 != block.number)
        {
            self.blocks.clear();
        }
        if self.blocks.len() == self.capacity {
            self.blocks.pop_front();
        }
        self.blocks.push_back(block);
    }

    /// Forgets block `number` and every newer one (the channel reads them again from another peer).
    pub fn truncate_from(&mut self, number: u64) {
        while self.newest().is_some_and(|newest| newest >= number) {
            self.blocks.pop_back();
        }
    }

    /// Most blocks kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The newest block's number.
    pub fn newest(&self) -> Option<u64> {
        self.blocks.back().map(|b| b.number)
    }

    /// The oldest block's number.
    pub fn oldest(&self) -> Option<u64> {
        self.blocks.front().map(|b| b.number)
    }

    /// Where block `number` is.
    pub fn lookup(&self, number: u64) -> Lookup {
        match (self.oldest(), self.newest()) {
            (Some(oldest), Some(newest)) if number >= oldest && number <= newest => {
                let offset = usize::try_from(number - oldest)
                    .expect("the offset is below the window's capacity, a usize");
                Lookup::Here(self.blocks[offset].clone())
            }
            (Some(oldest), Some(_)) if number < oldest => Lookup::Gone,
            _ => Lookup::NotYet,
        }
    }
}

/// Where a channel's stream should start once it knows the newest block: the oldest stored trigger position that
/// the window can hold (so that the triggers restarting a few blocks behind read from the shared stream instead of
/// each opening its own), or `None` when no trigger is behind the newest block within the window's reach.
/// `positions` are the blocks the channel's triggers will ask for first.
pub fn backfill_start(positions: &[u64], newest: u64, capacity: usize) -> Option<u64> {
    let reach = u64::try_from(capacity.max(1)).unwrap_or(u64::MAX);
    positions
        .iter()
        .copied()
        .filter(|&block| block < newest && newest - block < reach)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64) -> Arc<BlockEvents> {
        Arc::new(BlockEvents {
            number,
            hash: [0; 32],
            previous_hash: Bytes::new(),
            received_at: Instant::now(),
            ready_at: Instant::now(),
            events: Vec::new(),
        })
    }

    fn found(lookup: Lookup) -> Option<u64> {
        match lookup {
            Lookup::Here(b) => Some(b.number),
            _ => None,
        }
    }

    /// Real blocks with invalid transactions (MVCC conflicts, an endorsement policy failure): the events a
    /// trigger without `include_invalid` receives are exactly what `extract` gives without it.
    #[test]
    fn contract_events_of_invalid_transactions_are_marked_on_real_blocks() {
        use crate::events::{ExtractOptions, extract};
        use crate::fabric::decode::decode_block;
        let blocks: [&[u8]; 3] = [
            include_bytes!("../../fixtures/fabric-v2.5/blocks/block_12.pb"),
            include_bytes!("../../fixtures/fabric-v2.5/blocks/block_15.pb"),
            include_bytes!("../../fixtures/fabric-v2.5/blocks/block_17.pb"),
        ];
        let mut marked = 0;
        for bytes in blocks {
            let block = decode_block(bytes).expect("a real block");
            let options = |include_invalid| ExtractOptions {
                instance_id: "t".into(),
                include_invalid,
                ..ExtractOptions::default()
            };
            let prepared = BlockEvents::new(
                &block,
                extract(&block, &options(true)),
                Instant::now(),
                Readers::Many,
            );
            let received: Vec<&str> = prepared
                .events
                .iter()
                .filter(|e| e.valid_transaction || e.event_type != EventType::Contract)
                .map(|e| e.id.as_str())
                .collect();
            let valid_only = extract(&block, &options(false));
            let expected: Vec<&str> = valid_only.iter().map(|e| e.id()).collect();
            assert_eq!(received, expected, "block {}", block.number);
            marked += prepared
                .events
                .iter()
                .filter(|e| !e.valid_transaction)
                .count();
        }
        assert!(
            marked > 0,
            "the fixtures have events of invalid transactions"
        );
    }

    #[test]
    fn backfill_reaches_back_for_triggers_within_the_window_only() {
        // Newest block 100, window of 10: blocks 91..=100 fit.
        assert_eq!(backfill_start(&[], 100, 10), None);
        assert_eq!(backfill_start(&[101, 100], 100, 10), None, "at the head");
        assert_eq!(backfill_start(&[95, 98, 101], 100, 10), Some(95));
        assert_eq!(
            backfill_start(&[3, 91, 99], 100, 10),
            Some(91),
            "block 3 catches up alone"
        );
        assert_eq!(backfill_start(&[90], 100, 10), None);
        assert_eq!(backfill_start(&[0], 0, 10), None);
    }

    #[test]
    fn an_empty_window_says_wait() {
        let window = BlockWindow::new(4);
        assert!(matches!(window.lookup(0), Lookup::NotYet));
        assert!(matches!(window.lookup(100), Lookup::NotYet));
    }

    #[test]
    fn blocks_in_the_window_are_found_newer_ones_awaited_older_ones_gone() {
        let mut window = BlockWindow::new(3);
        for n in 10..=14 {
            window.push(block(n));
        }
        assert_eq!((window.oldest(), window.newest()), (Some(12), Some(14)));
        for n in 12..=14 {
            assert_eq!(found(window.lookup(n)), Some(n));
        }
        assert!(matches!(window.lookup(15), Lookup::NotYet));
        assert!(matches!(window.lookup(11), Lookup::Gone));
        assert!(matches!(window.lookup(0), Lookup::Gone));
    }

    #[test]
    fn a_jump_restarts_the_window_so_it_has_no_holes() {
        let mut window = BlockWindow::new(8);
        window.push(block(1));
        window.push(block(2));
        window.push(block(7));
        assert_eq!((window.oldest(), window.newest()), (Some(7), Some(7)));
        assert!(matches!(window.lookup(2), Lookup::Gone));
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_newest_block() {
        let mut window = BlockWindow::new(0);
        window.push(block(5));
        window.push(block(6));
        assert_eq!(found(window.lookup(6)), Some(6));
        assert!(matches!(window.lookup(5), Lookup::Gone));
    }
}
