//! Replay by time: the first block of a channel created at or after a given time, found by a binary search
//! that reads one block per step.
//!
//! A block's time is its `create_time` as the Block event shows it: the Unix seconds of its first transaction's
//! timestamp (0 for a block without a readable one). The search compares whole seconds: a time of
//! `10:00:00.5Z` finds a block created during second `10:00:00`.
//!
//! Invariants:
//! - The search assumes block times do not decrease along the chain (the orderer cuts blocks in order; client
//!   clocks may skew a little, and then the block found is one of those around the time).
//! - It reads at most `⌈log2(height)⌉ + 1` blocks, each once; the caller's `block_time` bounds each read.
//! - A time before the first block's finds block 0; a time after the newest block's is [`Found::NotYet`]: no block
//!   exists for it yet, and enabling there would wait for an unknown block, so the caller refuses it.

use std::future::Future;

/// What the search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// `block` is the first block created at or after the time; `time` is its create time (Unix seconds).
    Block { block: u64, time: i64 },
    /// Every block is older than the time: the newest is `newest`, created at `time`.
    NotYet { newest: u64, time: i64 },
    /// The channel has no block.
    Empty,
}

/// Finds the first of the `height` blocks whose time (from `block_time`) is at or after `at` (Unix seconds).
pub async fn first_block_at_or_after<F, Fut, E>(
    at: i64,
    height: u64,
    mut block_time: F,
) -> Result<Found, E>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<i64, E>>,
{
    let Some(newest) = height.checked_sub(1) else {
        return Ok(Found::Empty);
    };
    let newest_time = block_time(newest).await?;
    if newest_time < at {
        return Ok(Found::NotYet {
            newest,
            time: newest_time,
        });
    }
    // Invariant: block `high` is at or after `at`; every block below `low` is before it.
    let (mut low, mut high, mut high_time) = (0, newest, newest_time);
    while low < high {
        let middle = low + (high - low) / 2;
        let time = block_time(middle).await?;
        if time >= at {
            high = middle;
            high_time = time;
        } else {
            low = middle + 1;
        }
    }
    Ok(Found::Block {
        block: high,
        time: high_time,
    })
}

/// A raw block's create time as the Block event's `create_time` shows it (Unix seconds, 0 when no transaction
/// has a readable timestamp).
pub fn create_time(bytes: bytes::Bytes) -> Result<i64, crate::fabric::decode::DecodeError> {
    let block = crate::fabric::decode::BlockDecoder::new().decode_bytes(bytes)?;
    Ok(block.create_time().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn search(times: &[i64], at: i64) -> (Found, usize) {
        let reads = Cell::new(0);
        let found =
            futures::executor::block_on(first_block_at_or_after(at, times.len() as u64, |n| {
                reads.set(reads.get() + 1);
                let time = times[usize::try_from(n).unwrap()];
                async move { Ok::<_, ()>(time) }
            }))
            .unwrap();
        (found, reads.get())
    }

    #[test]
    fn finds_the_first_block_at_or_after_the_time() {
        let times = [100, 100, 105, 110, 110, 110, 120];
        assert_eq!(
            search(&times, 50).0,
            Found::Block {
                block: 0,
                time: 100
            },
            "before genesis"
        );
        assert_eq!(
            search(&times, 100).0,
            Found::Block {
                block: 0,
                time: 100
            }
        );
        assert_eq!(
            search(&times, 101).0,
            Found::Block {
                block: 2,
                time: 105
            }
        );
        assert_eq!(
            search(&times, 110).0,
            Found::Block {
                block: 3,
                time: 110
            },
            "the first of equal ones"
        );
        assert_eq!(
            search(&times, 120).0,
            Found::Block {
                block: 6,
                time: 120
            }
        );
        assert_eq!(
            search(&times, 121).0,
            Found::NotYet {
                newest: 6,
                time: 120
            }
        );
        assert_eq!(search(&[], 1).0, Found::Empty);
    }

    #[test]
    fn reads_a_logarithmic_number_of_blocks() {
        let times: Vec<i64> = (0..1_000_000).collect();
        for at in [0, 1, 499_999, 999_999] {
            let (found, reads) = search(&times, at);
            assert_eq!(
                found,
                Found::Block {
                    block: at as u64,
                    time: at
                }
            );
            assert!(reads <= 21, "{reads} reads for {at}");
        }
    }
}
