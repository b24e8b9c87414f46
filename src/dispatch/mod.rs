//! Pushing events to targets: Function Compute (2016-08-15 invoke, signed) and HTTP, with retries.

pub mod classify;
pub mod retry;

/// The header that carries the event id on every push, so receivers can de-duplicate.
pub const EVENT_ID_HEADER: &str = "X-Chaintrigger-Event-Id";
