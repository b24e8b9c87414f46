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
//! | `secrets` | where secrets come from and the redacting [`Secret`] |
//! | `load` | text to [`Config`], relative paths anchored, located [`Problem`]s |
//! | `validate` | checks across values (duplicates, unknown channels, filters, conflicts) |
//! | `environment` | checks of what the file refers to (files, folders, secrets) |

mod environment;
mod load;
mod names;
mod schema;
mod secrets;
mod validate;

pub use load::{ConfigError, Problem};
pub use names::{
    ChannelName, FailureThreshold, FcName, FcQualifier, HumanDuration, InstanceId, MspId,
    StartPosition, TriggerName,
};
pub use schema::{
    Admin, Channel, Config, Credentials, EventSelector, FcEndpoint, FcTarget, HttpAuth, HttpMethod,
    HttpTarget, InvocationType, Peer, RetryPolicy, Runtime, Target, Trigger,
};
pub use secrets::{Secret, SecretSource};

/// The admin API's default address: loopback only, so the API is not reachable from outside by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8650";
/// The shortest admin token accepted: the admin API can stop and delete triggers, so a guessable token is refused.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;
/// The bundled runtime's default address, loopback only.
pub const DEFAULT_RUNTIME_LISTEN: &str = "127.0.0.1:9000";

#[cfg(test)]
mod tests;
