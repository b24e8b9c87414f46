//! Triggers: from a channel's blocks to pushed events, one trigger at a time.
//!
//! | module | what | I/O |
//! |---|---|---|
//! | [`state`] | the state machine and failure accounting | pure |
//! | [`outcome`] | how an event's payload deliveries make one event outcome | pure |
//! | [`def`] | a trigger's definition, ready to run (filter compiled, target resolved) | secrets read once |
//! | [`window`] | a channel's recent blocks, decoded once for every trigger | pure |
//! | [`checkpoint`] | one trigger's progress and the only writer of its store record | store |
//! | [`channel`] | a channel's feed: one Deliver stream, decode, window, height | network |
//! | [`worker`] | one trigger's worker: blocks in, filter, push, record | network, store |
//! | `behind` | a catching-up trigger's reader: its own stream, decoded ahead on a task of its own | network |
//! | [`lease`] | which channels this daemon works on when daemons share a database; the lease its workers hold | pure |
//! | [`engine`] | every channel and trigger, operators' commands, reload, the lease loop | all of it |
//! | [`replay`] | the first block at or after a time: a binary search over single-block reads | none (reads given) |
//! | [`tester`] | what a trigger would push for given blocks, through the worker's own path | none (filter pool) |
//! | [`status`], [`latency`] | what the engine reports | none |
//!
//! Lower modules never reach up: the admin API maps the engine's [`status`] types to its own JSON.

mod behind;
pub mod channel;
pub mod checkpoint;
pub mod def;
pub mod engine;
pub mod latency;
pub mod lease;
pub mod outcome;
pub mod replay;
pub mod state;
pub mod status;
pub mod tester;
pub mod window;
pub mod worker;

pub use engine::{Engine, EngineError, EngineOptions, RequestError};
