//! One integration-test binary: every module below drives real parts (TLS gRPC, SQLite files, python3 and node
//! processes) through the helpers in `support`.

mod admin;
mod check_config;
mod decode;
mod deliver;
mod demo;
mod dispatch;
mod engine;
mod engine_admin;
mod engine_smoke;
mod identity;
mod peersim;
mod runtime_api;
mod runtime_archives;
mod runtime_pool;
mod runtime_requests;
mod runtime_sandbox;
mod runtime_sdk;
mod store_crash;
mod support;
mod tail;
// The slowest last: kill -9 of the real daemon over thousands of events.
mod engine_crash;
