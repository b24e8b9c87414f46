//! One integration-test binary: every module below drives real parts (TLS gRPC, SQLite files, python3 and node
//! processes) through the helpers in `support`.

mod admin;
mod admin_daemon;
mod admin_limits;
mod check_config;
mod cluster;
mod decode;
mod deliver;
mod delivery_ids;
mod demo;
mod deploy;
mod dispatch;
mod engine;
mod engine_admin;
mod engine_smoke;
mod engine_v3;
mod filter_tester;
mod filters;
mod identity;
mod logs;
mod operator_cli;
mod peers;
mod peersim;
mod postgres;
mod readyz;
mod replay_by_time;
mod replays;
mod runtime_api;
mod runtime_archives;
mod runtime_http;
mod runtime_java;
mod runtime_pool;
mod runtime_requests;
mod runtime_sandbox;
mod runtime_sdk;
mod runtime_triggers;
mod runtime_versions;
mod shutdown;
mod status_page;
mod store_crash;
mod support;
mod tail;
mod tampered;
// The slowest last: kill -9 of the real daemon over thousands of events.
mod engine_crash;
