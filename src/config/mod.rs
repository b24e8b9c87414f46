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

mod names;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

pub use names::{
    ChannelName, FailureThreshold, FcName, FcQualifier, HumanDuration, InstanceId, MspId,
    StartPosition, TriggerName,
};

use crate::events::EventType;
use crate::filter::{Filter, Language};

/// The admin API's default address: loopback only, so the API is not reachable from outside by default.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8650";
/// The shortest admin token accepted: the admin API can stop and delete triggers, so a guessable token is refused.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;
/// The bundled runtime's default address, loopback only.
pub const DEFAULT_RUNTIME_LISTEN: &str = "127.0.0.1:9000";

/// A whole configuration file, checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Put in every event's `instance_id`, so receivers can tell bridges apart.
    pub instance_id: InstanceId,
    /// The SQLite file holding trigger positions, states and dead letters (relative to the configuration file).
    pub database: Spanned<PathBuf>,
    /// The admin HTTP API (enable / disable / delete triggers, status, metrics).
    pub admin: Admin,
    /// The bundled function runtime, for functions run on this machine (`endpoint = "embedded"`).
    #[serde(default)]
    pub runtime: Runtime,
    /// The channels to follow, each with the identity and peers to read it from.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// The triggers: which events go where.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// Where the configuration came from, to name it in messages about its values.
    #[serde(skip)]
    source: SourceMap,
}

/// The admin API settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Where the admin API listens; loopback by default because it can stop and delete triggers.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// The bearer token every admin request must carry; the daemon refuses to start without one.
    pub token: Spanned<SecretSource>,
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
                "invalid Function Compute endpoint `{value}`: expected scheme and host only, e.g. https://1234.cn-hangzhou.fc.aliyuncs.com"
            ));
        }
        Ok(FcEndpoint::Url(url))
    }
}

fn parse_http_url(value: &str) -> Result<Url, String> {
    let url =
        Url::parse(value).map_err(|e| format!("invalid URL `{}`: {e}", value.escape_debug()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid URL `{value}`: the scheme must be http or https"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid URL `{value}`: it has no host"));
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

/// Where a secret is read from: never the configuration file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `{ env = "NAME" }`: an environment variable of the daemon.
    Env(String),
    /// `{ file = "path" }`: a file's content without its trailing newline (relative to the configuration file).
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            env: Option<String>,
            file: Option<PathBuf>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"{ env = "VARIABLE" } or { file = "path" }"#)
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
                Err(E::custom(
                    r#"secrets are not written in the configuration file: use { env = "VARIABLE" } or { file = "path" }"#,
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretSource, A::Error> {
                let fields =
                    Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                match (fields.env, fields.file) {
                    (Some(name), None) if !name.is_empty() => Ok(SecretSource::Env(name)),
                    (None, Some(path)) if !path.as_os_str().is_empty() => {
                        Ok(SecretSource::File(path))
                    }
                    _ => Err(serde::de::Error::custom(
                        r#"expected exactly one of { env = "VARIABLE" } or { file = "path" }"#,
                    )),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl SecretSource {
    /// Reads the secret. An unset variable, an unreadable file or an empty secret is an error.
    pub fn read(&self) -> Result<Secret, String> {
        let value = match self {
            SecretSource::Env(name) => std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => format!("environment variable {name} is not set"),
                std::env::VarError::NotUnicode(_) => {
                    format!("environment variable {name} is not valid UTF-8")
                }
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(format!("the secret in {self} is empty"));
        }
        Ok(Secret(value))
    }
}

/// A secret's value. Its `Debug` never shows it, so it cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value obtained elsewhere (tests, the runtime's generated keys).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One problem in a configuration file, located in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line of the offending value (0 when the problem is not tied to a place).
    pub line: usize,
    /// 1-based column of the offending value.
    pub column: usize,
    /// The field's path, e.g. `triggers[3].filter` (empty when unknown).
    pub field: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every located problem (empty when the file could not be read at all).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }
}

fn display_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

/// Maps byte offsets of the source text to lines and columns, kept so later checks can still locate values.
#[derive(Debug, Clone, Default)]
struct SourceMap {
    file: PathBuf,
    text: Arc<str>,
}

impl SourceMap {
    fn problem(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = match span {
            Some(span) => {
                let at = span.start.min(self.text.len());
                let mut at = at;
                while !self.text.is_char_boundary(at) {
                    at -= 1;
                }
                let before = &self.text[..at];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                (line, column)
            }
            None => (0, 0),
        };
        Problem {
            file: self.file.clone(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads and checks a configuration file (not its environment: see [`Config::check_environment`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Checks a configuration's text; `path` names it in messages and anchors its relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let source = SourceMap {
            file: path.to_owned(),
            text: Arc::from(text),
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::Invalid(vec![source.problem(e.span(), "", e.message().trim())])
        })?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // `Spanned` values add a private segment to the path: not something to show an operator.
            let field = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let field = if field == "." { String::new() } else { field };
            let inner = e.into_inner();
            ConfigError::Invalid(vec![source.problem(
                inner.span(),
                field,
                inner.message().trim(),
            )])
        })?;
        config.source = source;
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        config.resolve_paths(&base);
        let problems = config.semantic_problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The file this configuration was read from.
    pub fn file(&self) -> &Path {
        &self.source.file
    }

    /// The channel named `name`.
    pub fn channel(&self, name: &ChannelName) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name.get_ref() == name)
    }

    /// Checks what the file refers to: files exist and secrets can be read. Every problem is reported.
    pub fn check_environment(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut file = |path: &Spanned<PathBuf>, field: String| {
            if !path.get_ref().is_file() {
                problems.push(self.source.problem(
                    Some(path.span()),
                    field,
                    format!(
                        "file {} does not exist or is not a file",
                        path.get_ref().display()
                    ),
                ));
            }
        };
        for (i, channel) in self.channels.iter().enumerate() {
            file(&channel.certificate, format!("channels[{i}].certificate"));
            file(&channel.key, format!("channels[{i}].key"));
            for (j, peer) in channel.peers.get_ref().iter().enumerate() {
                for (name, path) in [
                    ("tls_ca", &peer.tls_ca),
                    ("client_certificate", &peer.client_certificate),
                    ("client_key", &peer.client_key),
                ] {
                    if let Some(path) = path {
                        file(path, format!("channels[{i}].peers[{j}].{name}"));
                    }
                }
            }
        }
        if let Some(functions) = self
            .runtime
            .functions
            .as_ref()
            .filter(|_| self.runtime.enabled)
            && !functions.get_ref().is_dir()
        {
            problems.push(self.source.problem(
                Some(functions.span()),
                "runtime.functions",
                format!("folder {} does not exist", functions.get_ref().display()),
            ));
        }
        if let Some(run_as) = self
            .runtime
            .run_as
            .as_ref()
            .filter(|_| self.runtime.enabled)
            && let Err(error) = run_as.get_ref().resolve()
        {
            problems.push(self.source.problem(
                Some(run_as.span()),
                "runtime.run_as",
                error.to_string(),
            ));
        }
        match self.admin.token.get_ref().read() {
            Err(message) => problems.push(self.source.problem(
                Some(self.admin.token.span()),
                "admin.token",
                message,
            )),
            Ok(token) if token.expose().chars().count() < MIN_ADMIN_TOKEN_LEN => {
                problems.push(self.source.problem(
                    Some(self.admin.token.span()),
                    "admin.token",
                    format!(
                        "the admin token in {} is shorter than {MIN_ADMIN_TOKEN_LEN} characters: use a long random value (e.g. `openssl rand -hex 32`)",
                        self.admin.token.get_ref()
                    ),
                ))
            }
            Ok(_) => {}
        }
        let mut secret = |source: &Spanned<SecretSource>, field: String| {
            if let Err(message) = source.get_ref().read() {
                problems.push(self.source.problem(Some(source.span()), field, message));
            }
        };
        if let Some(credentials) = self
            .runtime
            .credentials
            .as_ref()
            .filter(|_| self.runtime.enabled)
        {
            secret(
                &credentials.access_key_secret,
                "runtime.credentials.access_key_secret".into(),
            );
        }
        for (i, trigger) in self.triggers.iter().enumerate() {
            match &trigger.target {
                Target::FunctionCompute(fc) => {
                    if let Some(credentials) = &fc.credentials {
                        secret(
                            &credentials.access_key_secret,
                            format!(
                                "triggers[{i}].target.function_compute.credentials.access_key_secret"
                            ),
                        );
                    }
                }
                Target::Http(http) => match &http.auth {
                    HttpAuth::None => {}
                    HttpAuth::Basic { password, .. } => secret(
                        password,
                        format!("triggers[{i}].target.http.auth.basic.password"),
                    ),
                    HttpAuth::Bearer { token } => secret(
                        token,
                        format!("triggers[{i}].target.http.auth.bearer.token"),
                    ),
                },
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        let resolve_secret = |source: &mut Spanned<SecretSource>| {
            if let SecretSource::File(path) = source.get_mut() {
                resolve(path);
            }
        };
        resolve(self.database.get_mut());
        resolve_secret(&mut self.admin.token);
        resolve(self.runtime.data_dir.get_mut());
        if let Some(functions) = &mut self.runtime.functions {
            resolve(functions.get_mut());
        }
        if let Some(credentials) = &mut self.runtime.credentials {
            resolve_secret(&mut credentials.access_key_secret);
        }
        for channel in &mut self.channels {
            resolve(channel.certificate.get_mut());
            resolve(channel.key.get_mut());
            for peer in channel.peers.get_mut() {
                for path in [
                    &mut peer.tls_ca,
                    &mut peer.client_certificate,
                    &mut peer.client_key,
                ]
                .into_iter()
                .flatten()
                {
                    resolve(path.get_mut());
                }
            }
        }
        for trigger in &mut self.triggers {
            match &mut trigger.target {
                Target::FunctionCompute(fc) => {
                    if let Some(credentials) = &mut fc.credentials {
                        resolve_secret(&mut credentials.access_key_secret);
                    }
                }
                Target::Http(http) => match &mut http.auth {
                    HttpAuth::None => {}
                    HttpAuth::Basic { password, .. } => resolve_secret(password),
                    HttpAuth::Bearer { token } => resolve_secret(token),
                },
            }
        }
    }

    /// Every problem that needs more than one value to see.
    fn semantic_problems(&self) -> Vec<Problem> {
        let source = &self.source;
        let mut problems = Vec::new();

        let mut channels: HashMap<&ChannelName, usize> = HashMap::new();
        for (i, channel) in self.channels.iter().enumerate() {
            if let Some(first) = channels.insert(channel.name.get_ref(), i) {
                problems.push(source.problem(
                    Some(channel.name.span()),
                    format!("channels[{i}].name"),
                    format!(
                        "channel `{}` is already declared by channels[{first}]",
                        channel.name.get_ref()
                    ),
                ));
            }
            if channel.peers.get_ref().is_empty() {
                problems.push(source.problem(
                    Some(channel.peers.span()),
                    format!("channels[{i}].peers"),
                    "a channel needs at least one peer",
                ));
            }
            for (j, peer) in channel.peers.get_ref().iter().enumerate() {
                let field = |name: &str| format!("channels[{i}].peers[{j}].{name}");
                if let Err(message) = check_peer_address(peer.address.get_ref()) {
                    problems.push(source.problem(
                        Some(peer.address.span()),
                        field("address"),
                        message,
                    ));
                }
                match (&peer.tls_ca, peer.plaintext) {
                    (None, false) => problems.push(source.problem(
                        Some(peer.address.span()),
                        field("tls_ca"),
                        "a peer needs `tls_ca` (the CA of its TLS certificate), or `plaintext = true` for a test network",
                    )),
                    (Some(ca), true) => problems.push(source.problem(
                        Some(ca.span()),
                        field("plaintext"),
                        "`plaintext = true` and `tls_ca` contradict each other",
                    )),
                    _ => {}
                }
                match (&peer.client_certificate, &peer.client_key) {
                    (Some(cert), None) => problems.push(source.problem(
                        Some(cert.span()),
                        field("client_key"),
                        "`client_certificate` needs `client_key`",
                    )),
                    (None, Some(key)) => problems.push(source.problem(
                        Some(key.span()),
                        field("client_certificate"),
                        "`client_key` needs `client_certificate`",
                    )),
                    _ => {}
                }
            }
        }

        let mut triggers: HashMap<&TriggerName, usize> = HashMap::new();
        for (i, trigger) in self.triggers.iter().enumerate() {
            let field = |name: &str| format!("triggers[{i}].{name}");
            if let Some(first) = triggers.insert(trigger.name.get_ref(), i) {
                problems.push(source.problem(
                    Some(trigger.name.span()),
                    field("name"),
                    format!(
                        "trigger `{}` is already declared by triggers[{first}]",
                        trigger.name.get_ref()
                    ),
                ));
            }
            if !channels.contains_key(trigger.channel.get_ref()) {
                let known: Vec<String> = self
                    .channels
                    .iter()
                    .map(|c| c.name.get_ref().to_string())
                    .collect();
                problems.push(source.problem(
                    Some(trigger.channel.span()),
                    field("channel"),
                    format!(
                        "unknown channel `{}` (declared channels: {})",
                        trigger.channel.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            if *trigger.include_invalid.get_ref()
                && !matches!(
                    trigger.event,
                    EventSelector::All | EventSelector::Only(EventType::Contract)
                )
            {
                problems.push(source.problem(
                    Some(trigger.include_invalid.span()),
                    field("include_invalid"),
                    format!(
                        "`include_invalid` applies to Contract events only (this trigger receives {} events; Tx events always carry their state)",
                        trigger.event
                    ),
                ));
            }
            if let Some(filter) = &trigger.filter
                && let Err(e) = Filter::compile(trigger.filter_language, filter.get_ref())
            {
                problems.push(source.problem(Some(filter.span()), field("filter"), e.to_string()));
            }
            let retry = &trigger.retry;
            if retry.attempts == 0 {
                problems.push(source.problem(
                    None,
                    field("retry.attempts"),
                    "at least 1 attempt is needed (1 = no retries)",
                ));
            }
            if retry.initial_delay > retry.max_delay {
                problems.push(source.problem(
                    None,
                    field("retry.initial_delay"),
                    format!(
                        "initial_delay {} is above max_delay {}",
                        retry.initial_delay, retry.max_delay
                    ),
                ));
            }
            if retry.attempt_timeout.0 < Duration::from_millis(1) {
                problems.push(source.problem(
                    None,
                    field("retry.attempt_timeout"),
                    "the timeout must be above 0",
                ));
            }
            match &trigger.target {
                Target::FunctionCompute(fc) => {
                    if *fc.endpoint.get_ref() == FcEndpoint::Embedded {
                        if !self.runtime.enabled {
                            problems.push(source.problem(
                                Some(fc.endpoint.span()),
                                field("target.function_compute.endpoint"),
                                "`embedded` needs the bundled runtime: set `[runtime] enabled = true`",
                            ));
                        }
                    } else if fc.credentials.is_none() {
                        problems.push(source.problem(
                            Some(fc.endpoint.span()),
                            field("target.function_compute.credentials"),
                            "a Function Compute endpoint needs `credentials` (access_key_id and access_key_secret)",
                        ));
                    }
                }
                Target::Http(http) => {
                    for name in http.headers.get_ref().keys() {
                        let problem =
                            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                                Some(format!(
                                    "`{}` is not a valid header name",
                                    name.escape_debug()
                                ))
                            } else if name.eq_ignore_ascii_case(crate::dispatch::EVENT_ID_HEADER) {
                                Some(format!("`{name}` is set by the daemon for every push"))
                            } else if name.eq_ignore_ascii_case("authorization")
                                && !matches!(http.auth, HttpAuth::None)
                            {
                                Some("`Authorization` conflicts with `auth`".to_owned())
                            } else {
                                None
                            };
                        if let Some(message) = problem {
                            problems.push(source.problem(
                                Some(http.headers.span()),
                                field("target.http.headers"),
                                message,
                            ));
                        }
                    }
                    for (name, value) in http.headers.get_ref() {
                        if reqwest::header::HeaderValue::from_str(value).is_err() {
                            problems.push(source.problem(
                                Some(http.headers.span()),
                                field("target.http.headers"),
                                format!(
                                    "the value of header `{}` is not a valid header value",
                                    name.escape_debug()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        problems
    }
}

fn check_peer_address(address: &str) -> Result<(), String> {
    let (host, port) = address.rsplit_once(':').ok_or_else(|| {
        format!(
            "invalid peer address `{address}`: expected host:port, e.g. peer0.org1.example.com:7051"
        )
    })?;
    if host.is_empty() || host.contains('/') {
        return Err(format!(
            "invalid peer address `{address}`: expected host:port without a scheme, e.g. peer0.org1.example.com:7051"
        ));
    }
    port.parse::<u16>()
        .map_err(|_| format!("invalid peer address `{address}`: `{port}` is not a port number"))?;
    Ok(())
}

fn default_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN
        .parse()
        .expect("the default admin address is a valid socket address")
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

#[cfg(test)]
mod tests;
