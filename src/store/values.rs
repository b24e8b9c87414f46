//! Conversions between the store's values and the columns both backends share: counters and block numbers as
//! signed 64-bit integers, times as milliseconds since the Unix epoch, anchors as a block number and 32 bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::TriggerRecord;
use crate::config::TriggerName;
use crate::trigger::state::{Anchor, Position, State, Status};

/// A `triggers` row as both backends read it, before its values are checked.
pub(super) struct TriggerRow {
    pub name: String,
    pub state: String,
    pub block: i64,
    pub index: i64,
    pub failures: i64,
    pub last_error: Option<String>,
    pub delivered: i64,
    pub discarded: i64,
    pub updated_at: i64,
    pub anchor_block: Option<i64>,
    pub anchor_hash: Option<Vec<u8>>,
}

impl TriggerRow {
    /// The record; a value no program wrote is reported as `(what, found)`, for the backend's
    /// [`super::StoreError::Corrupt`], rather than misread.
    pub(super) fn into_record(self) -> Result<TriggerRecord, (String, String)> {
        let name = self.name;
        let trigger = TriggerName::new(name.clone()).map_err(|e| ("trigger name".to_owned(), e))?;
        let state = State::parse(&self.state)
            .ok_or_else(|| (format!("state of trigger `{name}`"), self.state.clone()))?;
        Ok(TriggerRecord {
            name: trigger,
            status: Status {
                state,
                failures: to_u64(self.failures),
                last_error: self.last_error,
            },
            position: Position {
                block: to_u64(self.block),
                index: u32::try_from(self.index).unwrap_or(u32::MAX),
            },
            anchor: read_anchor(self.anchor_block, self.anchor_hash),
            delivered: to_u64(self.delivered),
            discarded: to_u64(self.discarded),
            updated_at: from_millis(self.updated_at),
        })
    }
}

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
