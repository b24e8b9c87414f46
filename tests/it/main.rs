//! One integration-test binary: every module below drives real parts (TLS gRPC, SQLite files, python3 and node
//! processes) through the helpers in `support`.

mod admin;
mod check_config;
mod dispatch;
mod store_crash;
mod support;
