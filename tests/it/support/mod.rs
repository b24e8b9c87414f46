//! Helpers shared by the integration tests: they start real parts on port 0 and clean up after themselves.

pub mod admin;
pub mod daemon;
pub mod fabric;
pub mod postgres;
pub mod runtime;
