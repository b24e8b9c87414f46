//! Triggers: the state machine and failure accounting (pure, `state`), how an event's payload outcomes make one
//! event outcome (pure, `outcome`), the channel feeds that decode each block once for every trigger (`channel`,
//! `window`), the per-trigger workers (`worker`) and the engine that runs them and answers the admin API
//! (`engine`).

pub mod channel;
pub mod engine;
pub mod outcome;
pub mod state;
pub mod window;
pub mod worker;

pub use engine::{Engine, EngineError, EngineOptions};
