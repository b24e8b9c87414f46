//! chaintrigger turns Hyperledger Fabric channel events into function invocations.
//!
//! It subscribes to a channel's blocks over the peer's gRPC Deliver service, turns each block into Block / Tx /
//! Contract / Config events (the Alibaba Cloud BaaS message format), runs each trigger's filter, pushes each event
//! to the trigger's target (a Function Compute function or an HTTP endpoint) with retries, counts failures against
//! the trigger's threshold, and checkpoints each trigger's progress in SQLite. A bundled function runtime speaks
//! the Function Compute 2016-08-15 API, so the whole path runs on one machine.
//!
//! # Data flow
//!
//! ```text
//! Fabric peer ── fabric::deliver (signed SeekInfo, TLS, reconnect, resume)
//!     │ common.Block bytes
//!     ▼
//! fabric::decode (pure) ──► fabric::decode::Block (transactions, validation codes, chaincode events, config)
//!     ▼
//! events (pure) ──► Block / Tx / Contract / Config envelopes
//!     ▼ per trigger: type matches, position not yet processed
//! filter (jq | JMESPath, compiled once; run on the filter pool under time, memory, depth and output limits)
//!     ──► zero or more payloads
//!     ▼
//! dispatch (Function Compute | HTTP) + retry ──► outcome
//!     ▼
//! trigger state machine (pure) ──► Running / Exception / Failed / Disabled
//!     ▼
//! store (one SQLite transaction per outcome)
//! ```
//!
//! Pure cores (`fabric::decode`, `events`, `filter` evaluation, `trigger`, the retry classifier in `dispatch`) take
//! values and return values; I/O lives at the edges (`fabric::deliver`, `dispatch`, `store`, `admin`, `runtime`).
//!
//! The library sets the process's global allocator: [`filter::MeteredAllocator`], jemalloc counting per thread
//! while a filter runs, which is how a filter's memory is limited. A program linking this library
//! cannot set another one.

pub mod admin;
pub mod app;
pub mod cmd;
pub mod config;
pub mod dispatch;
pub mod events;
pub mod fabric;
pub mod fcsign;
pub mod filter;
pub mod logging;
pub mod peersim;
pub mod runtime;
pub mod sqlite_wal;
pub mod store;
pub mod trigger;

/// Installs the process-wide rustls crypto provider (aws-lc-rs).
///
/// With more than one provider compiled in, a TLS server or a reqwest client panics unless one is installed
/// first; call this at the start of `main` and of every test helper. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
