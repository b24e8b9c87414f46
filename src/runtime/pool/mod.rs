//! The execution side of the bundled function runtime: a pool of warm python3 / node handler processes.
//!
//! The HTTP API side resolves a request to a [`FunctionSpec`] (from its registry) and calls [`Pool::invoke`].
//! The pool keeps instances per (service, function, qualifier): one invocation at a time per instance, a new
//! instance when every warm one is busy, idle instances reaped after [`PoolConfig::idle_timeout`], and all
//! instances replaced when the function's code checksum or configuration changes.
//!
//! Function failures (exceptions, `callback(err)`, timeouts, crashes) are *not* errors of the pool: they come
//! back as `Ok(Invocation { outcome: InvokeOutcome::FunctionError { .. }, .. })`, exactly the body and error type
//! Function Compute would answer with. [`PoolError`] is only for our own failures (an interpreter that cannot be
//! started, an unwritable data directory).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;

/// The language runtime a function is written for, parsed from a Function Compute runtime name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// `python3`, `python3.9`, `python3.10`, ...: `def handler(event, context)`.
    Python3,
    /// `nodejs12` ... `nodejs20`: `exports.handler = (event, context, callback) => ...`.
    Nodejs,
}

impl FromStr for Language {
    type Err = PoolError;

    fn from_str(runtime: &str) -> Result<Self, Self::Err> {
        let python = runtime == "python3"
            || runtime.strip_prefix("python3.").is_some_and(|minor| {
                !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
            });
        let node = runtime
            .strip_prefix("nodejs")
            .is_some_and(|major| !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()));
        if python {
            Ok(Language::Python3)
        } else if node {
            Ok(Language::Nodejs)
        } else {
            Err(PoolError::UnknownRuntime(runtime.to_owned()))
        }
    }
}

/// Credentials handed to the handler in `context.credentials` and `ALIBABA_CLOUD_*` variables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// `context.credentials.access_key_id` / `accessKeyId`, `ALIBABA_CLOUD_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `context.credentials.access_key_secret` / `accessKeySecret`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`.
    pub access_key_secret: String,
    /// STS token, `context.credentials.security_token` / `securityToken`, `ALIBABA_CLOUD_SECURITY_TOKEN`.
    pub security_token: Option<String>,
}

/// Everything an instance needs to run one function; built by the API side from its registry.
///
/// Two specs of the same (service, function, qualifier) that differ in any field are different configurations:
/// warm instances of the old one are replaced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionSpec {
    /// Service name: part of the instance key, `FC_SERVICE_NAME`, `context.service.name`.
    pub service: String,
    /// Function name: part of the instance key, `FC_FUNCTION_NAME`, `context.function.name`.
    pub function: String,
    /// Qualifier the call resolved to (`LATEST`, a version, an alias): `FC_QUALIFIER`, `context.service.qualifier`.
    pub qualifier: String,
    /// Which interpreter and shim run the handler.
    pub language: Language,
    /// The runtime name as configured (`python3.10`, `nodejs18`), for diagnostics.
    pub runtime_name: String,
    /// `module.function` (`index.handler`), resolved inside `code_dir`.
    pub handler: String,
    /// `module.function` of the initializer, run once per instance before its first invocation.
    pub initializer: Option<String>,
    /// Bound on the initializer's run time (`initializationTimeout`).
    pub initialization_timeout: Duration,
    /// Bound on one invocation's run time (`timeout`); past it the instance is killed.
    pub timeout: Duration,
    /// `memorySize` in MB: the instance's memory bound, `FC_FUNCTION_MEMORY_SIZE`, `context.function.memory`.
    pub memory_mb: u32,
    /// The function's `environmentVariables`, added to the handler's otherwise clean environment.
    pub environment: BTreeMap<String, String>,
    /// The unpacked code; the handler sees it as `FC_FUNC_CODE_PATH` and cannot write to it.
    pub code_dir: PathBuf,
    /// Checksum of the code (`codeChecksum`); instances running another checksum are replaced.
    pub code_checksum: String,
    /// `FC_ACCOUNT_ID`, `context.account_id` / `accountId`.
    pub account_id: String,
    /// `FC_REGION`, `context.region`.
    pub region: String,
    /// The service's log project (`context.service.log_project`); empty when the service has none.
    pub log_project: String,
    /// The service's log store (`context.service.log_store`); empty when the service has none.
    pub log_store: String,
    /// Credentials of the service role, if any.
    pub credentials: Option<Credentials>,
}

/// One call of a function.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// `X-Fc-Request-Id`: `context.request_id`, and the id in every log line of the invocation.
    pub request_id: String,
    /// The event, passed to the handler as `bytes` (Python) / `Buffer` (Node).
    pub payload: Bytes,
    /// `X-Fc-Log-Type: Tail`: keep the last 4 KB of this invocation's log in [`Invocation::log_tail`].
    pub log_tail: bool,
}

/// How a function failure is reported in `X-Fc-Error-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Node `callback(err)` (and a rejected Promise): `HandledInvocationError`.
    Handled,
    /// Everything else: exceptions, timeouts, crashes, initializer failures: `UnhandledInvocationError`.
    Unhandled,
}

impl ErrorType {
    /// The value of the `X-Fc-Error-Type` header.
    pub fn header_value(self) -> &'static str {
        match self {
            ErrorType::Handled => "HandledInvocationError",
            ErrorType::Unhandled => "UnhandledInvocationError",
        }
    }
}

/// What the function produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// The handler returned: the response body, already converted as Function Compute converts return values.
    Success {
        /// Raw bytes for the 200 response body.
        body: Bytes,
    },
    /// The function failed: answer 200 with `X-Fc-Error-Type` and this JSON body.
    FunctionError {
        /// Handled (Node callback error) or unhandled.
        error_type: ErrorType,
        /// JSON `{"errorMessage", "errorType"?, "stackTrace"?}`.
        body: Bytes,
    },
}

/// The result of [`Pool::invoke`].
#[derive(Debug, Clone)]
pub struct Invocation {
    /// What the function produced.
    pub outcome: InvokeOutcome,
    /// The last 4 KB of this invocation's log (UTF-8, lossy), only when [`InvokeRequest::log_tail`] was set.
    pub log_tail: Option<String>,
    /// Wall time of the invocation inside the instance (including the initializer when it ran).
    pub duration: Duration,
    /// Peak resident memory of the instance in MB, when it could be read (`X-Fc-Max-Memory-Usage`).
    pub max_memory_mb: Option<u64>,
}

/// How the pool runs handler processes.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Where shims, per-instance temporary directories and per-function logs live.
    pub data_dir: PathBuf,
    /// Instances unused for this long are stopped (Function Compute: a few minutes).
    pub idle_timeout: Duration,
    /// (uid, gid) handlers run as when the daemon runs as root; `None` means `nobody`. Ignored when not root.
    pub run_as: Option<(u32, u32)>,
    /// RLIMIT_NOFILE of handler processes.
    pub fd_limit: u64,
    /// RLIMIT_NPROC of handler processes.
    pub nproc_limit: u64,
    /// The python3 interpreter; must be executable by the `run_as` user.
    pub python: PathBuf,
    /// The node interpreter; must be executable by the `run_as` user.
    pub node: PathBuf,
}

impl PoolConfig {
    /// Defaults: 300 s idle timeout, `nobody` when root, 1024 files and processes, `python3` and `node` from
    /// `/usr/bin` when present (a per-user install such as pyenv under `/root` is not executable by `nobody`),
    /// else from `PATH`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        PoolConfig {
            data_dir: data_dir.into(),
            idle_timeout: Duration::from_secs(300),
            run_as: None,
            fd_limit: 1024,
            nproc_limit: 1024,
            python: find_interpreter("python3"),
            node: find_interpreter("node"),
        }
    }
}

fn find_interpreter(name: &str) -> PathBuf {
    let system = PathBuf::from("/usr/bin").join(name);
    if system.is_file() {
        return system;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Failures of the pool itself (not of the function).
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The function's runtime name is not one the pool can run.
    #[error("unsupported runtime '{0}': expected python3, python3.N or nodejsN")]
    UnknownRuntime(String),
    /// The data directory (shims, instance directories, logs) could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    DataDir {
        /// The file or directory that failed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The interpreter could not be started for a function.
    #[error("cannot start {interpreter} for function {service}/{function}: {source}")]
    Spawn {
        /// The interpreter that failed to start.
        interpreter: PathBuf,
        /// The function's service.
        service: String,
        /// The function.
        function: String,
        /// Why.
        source: std::io::Error,
    },
    /// The pool was shut down.
    #[error("the function runtime is shutting down")]
    ShuttingDown,
}

/// Warm handler processes, keyed by function.
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
}

impl Pool {
    /// Prepares the data directory (writes the shims) and starts the idle reaper. Call inside a tokio runtime.
    pub fn new(config: PoolConfig) -> Result<Self, PoolError> {
        Ok(Pool { config })
    }

    /// Runs one invocation on a warm instance of `spec`, starting one if none is free.
    pub async fn invoke(
        &self,
        spec: &FunctionSpec,
        request: InvokeRequest,
    ) -> Result<Invocation, PoolError> {
        let _ = (spec, request, &self.config);
        Err(PoolError::ShuttingDown)
    }

    /// Stops every instance of a function (all qualifiers): its code or configuration changed, or it was deleted.
    pub async fn evict(&self, service: &str, function: &str) {
        let _ = (service, function);
    }

    /// Stops instances idle for longer than the idle timeout; returns how many. The background reaper calls it.
    pub async fn reap_idle(&self) -> usize {
        0
    }

    /// Number of live instances (busy or idle).
    pub fn instance_count(&self) -> usize {
        0
    }

    /// Stops every instance and refuses further invocations.
    pub async fn shutdown(&self) {}
}
