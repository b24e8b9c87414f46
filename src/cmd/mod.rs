//! The `chaintrigger` subcommands: each parses nothing itself (clap does, in `main.rs`) and wires library parts
//! together. This is the edge where errors become `anyhow` reports.

pub mod check_config;
pub mod decode;
pub mod demo;
pub mod filter;
pub mod peersim;
pub mod runtime;
pub mod serve;
pub mod signals;
pub mod tail;
pub mod triggers;
