//! One integration-test binary: every module below drives real parts (TLS gRPC, SQLite files, python3 and node
//! processes) through the helpers in `support`.

mod decode;
mod deliver;
mod identity;
mod peersim;
mod runtime_api;
mod runtime_pool;
mod runtime_sdk;
mod support;
mod tail;
