//! The configuration file's shape: one serde type per table, `deny_unknown_fields` everywhere, values checked by
//! the newtypes of [`super::names`] as they are read. Values that need more than one field to check are checked
//! by `validate`; what lies outside the file (files, secrets) by `environment`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::load::SourceMap;
use super::names::{
    ChannelName, FailureThreshold, FcName, FcQualifier, HumanDuration, InstanceId, MspId,
    StartPosition, TriggerName,
};
use super::secrets::{SecretSource, redact_url, redact_url_text};
use super::{
    DEFAULT_ADMIN_HEADER_READ_TIMEOUT, DEFAULT_ADMIN_IDLE_TIMEOUT, DEFAULT_ADMIN_LISTEN,
    DEFAULT_ADMIN_MAX_CONNECTIONS, DEFAULT_RUNTIME_LISTEN,
};
use crate::events::{EventType, Rendering};
use crate::filter::{Filter, Language, Limits};

/// A whole configuration file, checked. `load` reads it section by section (to report every problem), so it has no
/// serde derive of its own: a top-level key added here is added to `load` too.
#[derive(Debug, Clone)]
pub struct Config {
    /// Put in every event's `instance_id`, so receivers can tell bridges apart.
    pub instance_id: InstanceId,
    /// Where trigger positions, states and dead letters are kept: a SQLite file (relative to the configuration
    /// file) or a PostgreSQL server.
    pub database: Spanned<super::Database>,
    /// The admin HTTP API (enable / disable / delete triggers, status, metrics).
    pub admin: Admin,
    /// The bundled function runtime, for functions run on this machine (`endpoint = "embedded"`); off when absent.
    pub runtime: Runtime,
    /// The channels to follow, each with the identity and peers to read it from (none when absent).
    pub channels: Vec<Channel>,
    /// The triggers: which events go where (none when absent).
    pub triggers: Vec<Trigger>,
    /// How the daemon's log lines look: `pretty` (default) or `json`; `--log-format` overrides it.
    pub log_format: Option<crate::logging::LogFormat>,
    /// Where the configuration came from, to name it in messages about its values.
    pub(super) source: SourceMap,
}

/// The admin API settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Where the admin API listens; loopback by default because it can stop and delete triggers. Any other
    /// address needs `allow_remote = true`.
    #[serde(default = "default_admin_listen")]
    pub listen: Spanned<SocketAddr>,
    /// The bearer token every admin request must carry; the daemon refuses to start without one.
    pub token: Spanned<SecretSource>,
    /// Serve the API on an address other machines can reach (a container's, a pod's). The token then crosses
    /// the network, so this needs `tls_certificate` and `tls_key`: there is no plaintext remote mode.
    #[serde(default = "unspanned_false")]
    pub allow_remote: Spanned<bool>,
    /// PEM certificate chain the API presents (server certificate first); with `tls_key` the API speaks HTTPS
    /// only (relative to the configuration file).
    #[serde(default)]
    pub tls_certificate: Option<Spanned<PathBuf>>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_certificate`.
    #[serde(default)]
    pub tls_key: Option<Spanned<PathBuf>>,
    /// The most connections served at once. A new connection beyond it closes the connection idle the longest,
    /// so a flood of idle connections cannot lock operators and probes out.
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: Spanned<u32>,
    /// How long a client has to send a request's headers (the TLS handshake included), counted from the moment the
    /// connection is ready for a request: opened, or the previous answer sent. Also ends keep-alive connections
    /// left idle that long.
    #[serde(default = "default_admin_header_read_timeout")]
    pub header_read_timeout: Spanned<HumanDuration>,
    /// A connection on which no request is being handled for this long is closed, whatever it is doing (a request
    /// body that stopped coming after a refusal, an answer the client does not read).
    #[serde(default = "default_admin_idle_timeout")]
    pub idle_timeout: Spanned<HumanDuration>,
}

impl Admin {
    /// Whether the API is served over TLS (both `tls_certificate` and `tls_key` are set).
    pub fn tls(&self) -> Option<(&Spanned<PathBuf>, &Spanned<PathBuf>)> {
        self.tls_certificate.as_ref().zip(self.tls_key.as_ref())
    }
}

/// The bundled function runtime's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Whether the daemon starts the runtime in-process.
    #[serde(default)]
    pub enabled: bool,
    /// Where the runtime's Function Compute API listens; loopback by default.
    #[serde(default = "default_runtime_listen")]
    pub listen: SocketAddr,
    /// Where the runtime keeps its function registry, code and async queue (relative to the configuration file).
    #[serde(default = "default_runtime_data_dir")]
    pub data_dir: Spanned<PathBuf>,
    /// A folder of functions (one sub-folder per service/function) registered at start, if any.
    #[serde(default)]
    pub functions: Option<Spanned<PathBuf>>,
    /// The access key the runtime accepts; triggers with `endpoint = "embedded"` sign with the running
    /// runtime's key unless they have their own. Without one, the runtime accepts only the daemon itself (a
    /// random key made at each start), so its handlers cannot reach its API.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Who handlers run as when the daemon is root: `"user"` or `"user:group"`, names or numeric ids (the
    /// user's primary group when no group is given). Default: `nobody`. Root is refused, and so is the setting
    /// when the daemon is not root (handlers then run as the daemon's own user).
    #[serde(default)]
    pub run_as: Option<Spanned<crate::runtime::RunAs>>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            enabled: false,
            listen: default_runtime_listen(),
            data_dir: default_runtime_data_dir(),
            functions: None,
            credentials: None,
            run_as: None,
        }
    }
}

/// An access key pair for Function Compute request signatures.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The AccessKeyId, sent in clear in every `Authorization` header, so it may be written in the file.
    pub access_key_id: String,
    /// The AccessKeySecret that signs requests: from the environment or a file, never inline.
    pub access_key_secret: Spanned<SecretSource>,
}

/// A channel to follow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// The channel's name on the Fabric network.
    pub name: Spanned<ChannelName>,
    /// The MSP id of the identity that signs Deliver requests (it must be a reader of the channel).
    pub msp_id: MspId,
    /// PEM certificate of that identity.
    pub certificate: Spanned<PathBuf>,
    /// PEM PKCS#8 private key of that identity.
    pub key: Spanned<PathBuf>,
    /// Peers to read blocks from, tried in order when one is unreachable.
    pub peers: Spanned<Vec<Peer>>,
    /// Streams the daemon may open at once beside the channel's own, for triggers reading blocks older than the
    /// channel's recent window (a new trigger from block 0, `enable --from N`); the others wait their turn.
    #[serde(default = "default_max_catch_up_streams")]
    pub max_catch_up_streams: Spanned<u32>,
    /// A peer that sends nothing and answers no check for this long is frozen: the channel moves to the next
    /// peer. Half of it passes in silence before the peer is checked.
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout: Spanned<HumanDuration>,
    /// How often every peer's height is asked (with two or more peers).
    #[serde(default = "default_peer_check_interval")]
    pub peer_check_interval: Spanned<HumanDuration>,
    /// A peer more than this many blocks behind the highest height any peer reports is stale: the channel moves
    /// to the highest peer.
    #[serde(default = "default_stale_peer_blocks")]
    pub stale_peer_blocks: Spanned<u64>,
    /// Pins how the channel's `content.data` is rendered: `"v2.5"` (empty bytes are `null`, as Fabric v2.5's
    /// configtxlator prints them) or `"v3"` (`""`, as Fabric v3's). Absent: learned from the channel's
    /// configuration (v3 when it has the `V3_0` capability) and followed on every config block.
    #[serde(default)]
    pub rendering: Option<Rendering>,
}

fn default_max_catch_up_streams() -> Spanned<u32> {
    Spanned::new(
        0..0,
        u32::try_from(crate::fabric::deliver::DEFAULT_MAX_CATCH_UP_STREAMS).unwrap_or(4),
    )
}

fn default_peer_timeout() -> Spanned<HumanDuration> {
    Spanned::new(
        0..0,
        HumanDuration(crate::fabric::deliver::DEFAULT_PEER_TIMEOUT),
    )
}

fn default_peer_check_interval() -> Spanned<HumanDuration> {
    Spanned::new(
        0..0,
        HumanDuration(crate::fabric::deliver::DEFAULT_PEER_CHECK_INTERVAL),
    )
}

fn default_stale_peer_blocks() -> Spanned<u64> {
    Spanned::new(0..0, crate::fabric::deliver::DEFAULT_STALE_PEER_BLOCKS)
}

/// One peer's Deliver endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// `host:port` of the peer's gRPC service.
    pub address: Spanned<String>,
    /// PEM CA certificate that signed the peer's TLS certificate. Required unless `plaintext = true`.
    #[serde(default)]
    pub tls_ca: Option<Spanned<PathBuf>>,
    /// The name expected in the peer's TLS certificate, when it differs from the address's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM client certificate, for peers that require mutual TLS (with `client_key`).
    #[serde(default)]
    pub client_certificate: Option<Spanned<PathBuf>>,
    /// PEM private key of `client_certificate`.
    #[serde(default)]
    pub client_key: Option<Spanned<PathBuf>>,
    /// Connect without TLS: only for local test networks; must be asked for explicitly.
    #[serde(default)]
    pub plaintext: bool,
}

/// A trigger: one channel's events of one type, through a filter, to a target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Unique name; the admin API and the store know the trigger by it.
    pub name: Spanned<TriggerName>,
    /// The channel whose events it receives (one of `[[channels]]`).
    pub channel: Spanned<ChannelName>,
    /// The event type it receives: `Block`, `Tx`, `Contract`, `Config`, or `*` for all.
    pub event: EventSelector,
    /// Also push Contract events of invalid transactions (they never happened on the ledger, so off by default).
    #[serde(default = "unspanned_false")]
    pub include_invalid: Spanned<bool>,
    /// A filter that selects and reshapes events; without one every event is pushed whole.
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    /// The filter's language: `jq` (BaaS filters, the default) or `jmespath`.
    #[serde(default)]
    pub filter_language: Language,
    /// How long the filter may run on one event (`1s` when absent, at most `60s`); past it the evaluation
    /// stops and the trigger enters Exception holding the event, as for any run-time filter error.
    #[serde(default)]
    pub filter_timeout: Option<Spanned<HumanDuration>>,
    /// Where events go.
    pub target: Target,
    /// Discarded events tolerated before the trigger enters Failed; `-1` (default) never fails.
    #[serde(default)]
    pub failure_threshold: FailureThreshold,
    /// How often and how fast a failing push is retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Where a trigger without stored progress starts: `"latest"` (default) or a block number.
    #[serde(default)]
    pub start: StartPosition,
    /// A disabled trigger receives nothing; events meanwhile are dropped, as in BaaS.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Trigger {
    /// The trigger's compiled filter (`None`: every event is pushed whole). [`Config::parse`] has compiled it
    /// once already, so this fails only for a configuration built by other means.
    pub fn compile_filter(&self) -> Result<Option<Filter>, crate::filter::CompileError> {
        self.filter
            .as_ref()
            .map(|source| Filter::compile(self.filter_language, source.get_ref()))
            .transpose()
    }

    /// What one evaluation of the trigger's filter may spend: the default [`Limits`] with `filter_timeout`.
    pub fn filter_limits(&self) -> Limits {
        self.filter_timeout
            .as_ref()
            .map_or_else(Limits::default, |timeout| {
                Limits::with_timeout(timeout.get_ref().0)
            })
    }
}

/// The event types a trigger receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum EventSelector {
    /// `*`: every event of the channel.
    All,
    /// One type.
    Only(EventType),
}

impl EventSelector {
    /// Whether an event of type `event` goes to this trigger.
    pub fn matches(self, event: EventType) -> bool {
        match self {
            EventSelector::All => true,
            EventSelector::Only(only) => only == event,
        }
    }
}

impl TryFrom<String> for EventSelector {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value == "*" {
            return Ok(EventSelector::All);
        }
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .map(EventSelector::Only)
            .ok_or_else(|| {
                format!(
                    "invalid event type `{}`: expected Block, Tx, Contract, Config or *",
                    value.escape_debug()
                )
            })
    }
}

impl fmt::Display for EventSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventSelector::All => f.write_str("*"),
            EventSelector::Only(t) => t.fmt(f),
        }
    }
}

/// Where a trigger pushes its events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A Function Compute function (2016-08-15 API), remote or the bundled runtime.
    FunctionCompute(FcTarget),
    /// An HTTP endpoint.
    Http(HttpTarget),
}

/// A Function Compute function.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcTarget {
    /// `https://<account>.<region>.fc.aliyuncs.com`, or `embedded` for the bundled runtime.
    pub endpoint: Spanned<FcEndpoint>,
    /// The service holding the function.
    pub service: FcName,
    /// The function to invoke.
    pub function: FcName,
    /// A version, alias or `LATEST`; the service's default when absent.
    #[serde(default)]
    pub qualifier: Option<FcQualifier>,
    /// `Sync` waits for the function's result (its errors are retried); `Async` only queues the event.
    #[serde(default)]
    pub invocation: InvocationType,
    /// Sent as `X-Fc-Account-Id`, as the Node and Go SDKs do.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The access key that signs requests; optional only for `endpoint = "embedded"` (the runtime's is used).
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

/// A Function Compute endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum FcEndpoint {
    /// The bundled runtime of this daemon (`[runtime]`).
    Embedded,
    /// A Function Compute endpoint: scheme and authority only.
    Url(Url),
}

impl TryFrom<String> for FcEndpoint {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value == "embedded" {
            return Ok(FcEndpoint::Embedded);
        }
        let url = parse_http_url(&value)?;
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "invalid Function Compute endpoint `{}`: expected scheme and host only, e.g. https://1234.cn-hangzhou.fc.aliyuncs.com",
                redact_url(&url)
            ));
        }
        Ok(FcEndpoint::Url(url))
    }
}

/// Parses an http(s) URL; messages show it redacted (query values and userinfo are often secrets).
fn parse_http_url(value: &str) -> Result<Url, String> {
    let shown = || redact_url_text(value).escape_debug().to_string();
    let url = Url::parse(value).map_err(|e| format!("invalid URL `{}`: {e}", shown()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid URL `{}`: the scheme must be http or https",
            shown()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid URL `{}`: it has no host", shown()));
    }
    Ok(url)
}

/// Function Compute's invocation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum InvocationType {
    /// Wait for the function's result (`X-Fc-Invocation-Type: Sync`).
    #[default]
    Sync,
    /// Queue the event and return at once (`X-Fc-Invocation-Type: Async`).
    Async,
}

impl InvocationType {
    /// The `X-Fc-Invocation-Type` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationType::Sync => "Sync",
            InvocationType::Async => "Async",
        }
    }
}

/// An HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTarget {
    /// The URL events are sent to (http or https).
    #[serde(deserialize_with = "deserialize_http_url")]
    pub url: Url,
    /// `POST` (default) sends the payload as the JSON body; `GET` sends it in the `event` query parameter.
    #[serde(default)]
    pub method: HttpMethod,
    /// `"none"` (default), `{ basic = { user, password } }` or `{ bearer = { token } }`.
    #[serde(default)]
    pub auth: HttpAuth,
    /// Extra headers sent with every request (not secrets: use `auth` for those).
    #[serde(default = "unspanned_empty_headers")]
    pub headers: Spanned<BTreeMap<String, String>>,
}

fn deserialize_http_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_http_url(&text).map_err(serde::de::Error::custom)
}

/// The HTTP methods a target may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum HttpMethod {
    /// The payload in the query string, for receivers that only take GET.
    #[serde(rename = "GET")]
    Get,
    /// The payload as a JSON body.
    #[default]
    #[serde(rename = "POST")]
    Post,
}

/// How an HTTP target authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name, not a secret.
        user: String,
        /// The password, from the environment or a file.
        password: Spanned<SecretSource>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token, from the environment or a file.
        token: Spanned<SecretSource>,
    },
}

/// How a push is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per event before it is discarded (including the first), at least 1.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The delay after the first failed attempt; it doubles after each further one.
    #[serde(default = "default_initial_delay")]
    pub initial_delay: HumanDuration,
    /// The cap on the delay between attempts (before jitter).
    #[serde(default = "default_max_delay")]
    pub max_delay: HumanDuration,
    /// How long one attempt may take before it counts as a timeout (retried).
    #[serde(default = "default_attempt_timeout")]
    pub attempt_timeout: HumanDuration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: default_attempts(),
            initial_delay: default_initial_delay(),
            max_delay: default_max_delay(),
            attempt_timeout: default_attempt_timeout(),
        }
    }
}

fn default_admin_listen() -> Spanned<SocketAddr> {
    Spanned::new(
        0..0,
        DEFAULT_ADMIN_LISTEN
            .parse()
            .expect("the default admin address is a valid socket address"),
    )
}

fn default_admin_max_connections() -> Spanned<u32> {
    Spanned::new(0..0, DEFAULT_ADMIN_MAX_CONNECTIONS)
}

fn default_admin_header_read_timeout() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(DEFAULT_ADMIN_HEADER_READ_TIMEOUT))
}

fn default_admin_idle_timeout() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration(DEFAULT_ADMIN_IDLE_TIMEOUT))
}

fn default_runtime_listen() -> SocketAddr {
    DEFAULT_RUNTIME_LISTEN
        .parse()
        .expect("the default runtime address is a valid socket address")
}

fn default_runtime_data_dir() -> Spanned<PathBuf> {
    Spanned::new(0..0, PathBuf::from("runtime"))
}

fn unspanned_false() -> Spanned<bool> {
    Spanned::new(0..0, false)
}

fn unspanned_empty_headers() -> Spanned<BTreeMap<String, String>> {
    Spanned::new(0..0, BTreeMap::new())
}

fn default_true() -> bool {
    true
}

fn default_attempts() -> u32 {
    5
}

fn default_initial_delay() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}

fn default_max_delay() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_attempt_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
