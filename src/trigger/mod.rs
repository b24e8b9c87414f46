//! Triggers: the state machine and failure accounting (`state`), and how an event's payload outcomes make one
//! event outcome (`outcome`); both pure.

pub mod outcome;
pub mod state;
