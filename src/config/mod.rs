//! The TOML configuration of `chaintrigger serve` and `chaintrigger check-config`.
//!
//! Reading happens in two steps. [`Config::parse`] needs only the text: it refuses unknown keys, bad names and
//! values, duplicate names, triggers on unknown channels, filters that do not compile, bad URLs and conflicting
//! settings, naming `file:line:column: field: problem` for every problem it finds. [`Config::check_environment`]
//! then checks what lies outside the file (referenced files exist, secrets' variables and files can be read): the
//! daemon needs both; `check-config --skip-environment` runs only the first, e.g. on another machine.
//!
//! Secrets (the admin token, Function Compute access key secrets, HTTP passwords and tokens) are never written in
//! the file: each is `{ env = "VARIABLE" }` or `{ file = "path" }`.
//!
//! | file | what |
//! |---|---|
//! | `schema` | the serde types, one per table (`deny_unknown_fields`) |
//! | `names` | parse-don't-validate newtypes for names, durations, positions |
//! | `database` | the `database` setting: a SQLite file or a PostgreSQL server |
//! | `secrets` | where secrets come from and the redacting [`Secret`] |
//! | `load` | text to [`Config`], relative paths anchored, located [`Problem`]s |
//! | `validate` | checks across values (duplicates, unknown channels, filters, conflicts) |
//! | `environment` | checks of what the file refers to (files, folders, secrets) |
//! | `tls` | the admin API's certificate and key, read into the configuration it serves HTTPS with |

mod database;
mod environment;
mod load;
mod names;
mod schema;
mod secrets;
pub mod tls;
mod validate;

pub use database::{Database, LeaseTtl, PostgresDatabase, PostgresUrl, postgres_error_text};
pub use load::{ConfigError, Problem};
pub use names::{
    ChannelName, FailureThreshold, FcName, FcQualifier, HumanDuration, InstanceId, MspId,
    StartPosition, TriggerName,
};
pub use schema::{
    Admin, Channel, Config, Credentials, EventSelector, FcEndpoint, FcTarget, HttpAuth, HttpMethod,
    HttpTarget, InvocationType, Peer, RetryPolicy, Runtime, Target, Trigger,
};
pub use secrets::{REDACTED, Scrubber, Secret, SecretSource, redact_url, redact_url_text};

/// The admin API's default address: loopback only, so the API is not reachable from outside by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8650";
/// The most connections the admin API serves at once by default: far above what operators, probes and a scraper
/// need, far below the daemon's file descriptor limit.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: u32 = 256;
/// The most `max_connections` may be: each connection holds a file descriptor.
pub const MAX_ADMIN_MAX_CONNECTIONS: u32 = 16_384;
/// The admin API's default time to send a request's headers: generous for a person with curl over a slow link,
/// short enough that idle connections do not pile up.
pub const DEFAULT_ADMIN_HEADER_READ_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(10);
/// The admin API's default limit on a connection with no request being handled.
pub const DEFAULT_ADMIN_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The shortest admin token accepted: the admin API can stop and delete triggers, so a guessable token is refused.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;
/// The bundled runtime's default address, loopback only.
pub const DEFAULT_RUNTIME_LISTEN: &str = "127.0.0.1:9000";

#[cfg(test)]
mod tests;
