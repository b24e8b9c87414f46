//! Conversions between the store's values and the columns both backends share: counters and block numbers as
//! signed 64-bit integers, times as milliseconds since the Unix epoch, anchors as a block number and 32 bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::trigger::state::Anchor;

/// The stored anchor; one that is half there or of the wrong length counts as unknown (the check is skipped, never
/// failed, for it).
pub(super) fn read_anchor(block: Option<i64>, hash: Option<Vec<u8>>) -> Option<Anchor> {
    Some(Anchor {
        block: to_u64(block?),
        hash: hash?.try_into().ok()?,
    })
}

pub(super) fn anchor_block(anchor: Option<Anchor>) -> Option<i64> {
    anchor.map(|anchor| to_i64(anchor.block))
}

pub(super) fn anchor_hash(anchor: Option<Anchor>) -> Option<Vec<u8>> {
    anchor.map(|anchor| anchor.hash.to_vec())
}

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(super) fn to_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(to_u64(millis))
}
