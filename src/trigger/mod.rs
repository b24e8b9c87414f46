//! Triggers: the state machine and failure accounting (pure, `state`).

pub mod state;
