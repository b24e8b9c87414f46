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
//!
//! # What a handler sees (and the choices made where Function Compute's documentation is silent)
//!
//! - **Python** (`shim/worker.py`): `handler(event: bytes, context)`. Return values: `bytes` raw, `str` as
//!   UTF-8, `dict` / `list` / `tuple` as JSON, `None` as an empty body, anything else (int, float, bool, ...) as
//!   `str(x)` (so `True` is `True`, matching the live-FC test where an int `2` arrives as `'2'`). An exception is
//!   `UnhandledInvocationError` with `{"errorMessage", "errorType", "stackTrace": [[file, line, func, text]]}`
//!   (the runtime's own frames removed). `print` is logged verbatim; `logging` (the root logger, level INFO) writes
//!   `<ISO time ms>Z <request id> [LEVEL] message`, `context.getLogger()` `<YYYY-MM-DD HH:MM:SS> <request id>
//!   [LEVEL] message` (UTC), as Function Compute documents each. `sys.exit` / `os._exit` are
//!   unexpected exits.
//! - **Node.js** (`shim/worker.js`): `handler(event: Buffer, context, callback)`; the first callback wins.
//!   `callback(err)` is `HandledInvocationError` (`{"errorMessage","errorType","stackTrace":[strings]}` for an
//!   `Error`, `{"errorMessage": s}` for a string, the JSON text of any other value). Results: Buffer raw, string
//!   as UTF-8, `undefined` / `null` as an empty body, objects as JSON, anything else `String(x)`. A handler
//!   returning a Promise resolves like `callback(null, value)`; a rejection counts as a thrown exception
//!   (`UnhandledInvocationError`: Function Compute keeps `HandledInvocationError` for `callback(err)`). An
//!   exception thrown later from a timer or a rejected promise nobody awaits fails the invocation in progress
//!   and the instance is replaced. `console.log/debug/info/warn/error` write
//!   `<ISO time> <request id> [verbose|debug|info|warn|error] message`; `console.setLogLevel(level)` filters.
//! - **HTTP triggers** ([`Pool::invoke_http`]): Node.js `handler(request, response, context)`, the request a
//!   readable stream of its body with `headers`, `path`, `queries` (also `query`), `method`, `clientIP`, `url`,
//!   the response with `setStatusCode`, `setHeader`, `deleteHeader`, `send(Buffer | string | stream.Readable)`;
//!   `require('raw-body')` finds a compatible module of the shim's when the code has none (Function Compute
//!   bundles raw-body). A handler that ends without having called `send` (nothing is left in its event loop)
//!   is a bad response; one that never calls it while it keeps work pending times out. Python: WSGI
//!   `handler(environ, start_response)`. The shim answers with the status, headers and body; the API side
//!   checks them (see `triggers::http`).
//! - **Java** ([`java`], `shim/java/`): `package.Class::method` of a `StreamRequestHandler` (streams) or a
//!   `PojoRequestHandler` (JSON mapped to objects by the shim's own mapper), classes and jars from the code's top
//!   and `lib/`; the `com.aliyun.fc.runtime` API is the project's, compiled with `javac` at the first Java
//!   instance. An exception is `UnhandledInvocationError` with `{"errorMessage","errorType","errorCause",
//!   "stackTrace":[strings]}`; an `OutOfMemoryError` also replaces the instance. The heap is `memorySize` less
//!   64 MB; the JVM's start (bounded to 30 s) is not counted in the function's time limits. The JVM opens its
//!   pipes again through `/proc/self/fd/3` and `4`, so they are given to the handlers' user first.
//! - **Initializer**: runs once per instance, before its first invocation, bounded by `initializationTimeout`,
//!   between `FC Initialize Start/End RequestId:` lines. A failure is answered as `UnhandledInvocationError`
//!   with the error body of the exception (or `callback(err)`); an initializer that runs too long gives
//!   `{"errorMessage":"Function initialization timed out after N seconds"}`. Either way the instance is
//!   stopped, so the next invocation initializes a fresh one.
//! - **Timeout**: `{"errorMessage":"Function timed out after N seconds"}` (`UnhandledInvocationError`); the
//!   instance and everything it started are killed.
//! - **Exit or crash**: `{"errorMessage":"Process exited unexpectedly before completing request (duration: Nms,
//!   maxMemoryUsage: NMB)"}`. When the process ended before its shim even read its setup (the interpreter could
//!   not open the shim, the sandbox could not be built...), the message goes on with `. The function's runtime
//!   did not start: ` and the first lines it printed, so the cause is in the answer, not only in the log.
//! - **Memory**: resident memory is sampled every 50 ms during an invocation; above `memorySize` the instance is
//!   killed, the log says so, and the answer is the unexpected-exit body (what Function Compute reports for an
//!   out-of-memory kill). Node also gets `--max-old-space-size=<memorySize>`. This host has no writable cgroup v2,
//!   and RLIMIT_AS breaks V8, so a burst shorter than the sampling period can exceed the limit unnoticed; child
//!   processes of the handler are not counted. `X-Fc-Max-Memory-Usage` is the instance's peak resident memory in
//!   MB, rounded up: the kernel's `VmHWM`, which also counts memory touched and freed before the answer, read by
//!   that check and at the end of every invocation that ran 250 us or more; a shorter invocation adds its resident
//!   size at the end instead, a sixth of the price (see `instance::FULL_PEAK_AFTER` for what that can miss).
//! - **Environment**: only `PATH=/usr/local/bin:/usr/bin:/bin`, `LANG=C.UTF-8`, `HOME`/`TMPDIR`/`TEMP`/`TMP`
//!   (`/tmp` in the sandbox, else the instance's own directory), the `FC_*` variables, `ALIBABA_CLOUD_ACCESS_KEY_*`
//!   when the service has a role, and the function's own variables (which may replace the defaults, not `FC_*`).
//!   The working directory is the code: `/code` in the sandbox, as in Function Compute (`FC_FUNC_CODE_PATH`),
//!   else its real path.
//! - **Isolation** ([`Isolation`], decided once when the pool starts; see [`sandbox`] for the file-system view):
//!   - root, namespaces allowed: handlers run as `nobody` (or `run_as`) in their own mount, PID and IPC
//!     namespaces: they see the system folders read-only, their own code at `/code`, private `/tmp`,
//!     `/var/tmp` and `/dev/shm`, and nothing of the runtime's data; every process they start dies with the
//!     instance (it is the PID namespace's init).
//!   - not root, user namespaces allowed: the same, in a user namespace that maps only the runtime's own uid, so
//!     handlers keep that uid (and RLIMIT_NPROC counts the runtime's own processes too).
//!   - no namespaces: their own session (killed as a group) with the limits, as `nobody` when root, with the
//!     real paths: the code folder must be reachable by that user (the pool refuses to start otherwise, naming
//!     the folder), `/tmp` is shared, and a process that calls `setsid()` after a double fork survives.
//!
//! # Log
//!
//! Each invocation's output (stdout and stderr share one pipe, so their order is kept) goes between
//! `FC Invoke Start RequestId: <id>` and `FC Invoke End RequestId: <id>` lines to the function's log file
//! (`<data dir>/logs/<service>/<function>.log`, rotated at 8 MB), to tracing at debug level, and its last 4 KB to
//! [`Invocation::log_tail`] when asked for.

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
    /// `java8`, `java11`, `java17`, ...: a class implementing `com.aliyun.fc.runtime.StreamRequestHandler` or
    /// `PojoRequestHandler`, run on the machine's JDK whatever the number says.
    Java,
}

impl FromStr for Language {
    type Err = PoolError;

    fn from_str(runtime: &str) -> Result<Self, Self::Err> {
        let python = runtime == "python3"
            || runtime.strip_prefix("python3.").is_some_and(|minor| {
                !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
            });
        let versioned = |prefix: &str| {
            runtime
                .strip_prefix(prefix)
                .is_some_and(|major| !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()))
        };
        if python {
            Ok(Language::Python3)
        } else if versioned("nodejs") {
            Ok(Language::Nodejs)
        } else if versioned("java") {
            Ok(Language::Java)
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

/// What an invocation hands the handler, beside its request id.
#[derive(Debug, Clone)]
pub enum Call {
    /// An event (`InvokeFunction`, async events, timers): `handler(event, context[, callback])`.
    Event,
    /// An HTTP trigger's request: `handler(request, response, context)` (Node.js), `handler(environ,
    /// start_response)` (Python); the body is the invocation's payload.
    Http {
        /// The request head as JSON: method, path, url, queries, headers, clientIP.
        head: Bytes,
    },
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
    /// Peak resident memory of the instance's process in MB since it started (its children not counted), when it
    /// could be read (`X-Fc-Max-Memory-Usage`).
    pub max_memory_mb: Option<u64>,
}

/// How handlers are isolated, as decided when the pool started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isolation {
    /// The namespaces each instance gets.
    pub namespaces: Namespaces,
    /// The (uid, gid) handlers run as; `None`: the runtime's own.
    pub run_as: Option<(u32, u32)>,
}

impl Isolation {
    /// Whether handlers reach their code through the sandbox (the code store can be private to the runtime).
    pub fn private_code(&self) -> bool {
        self.namespaces != Namespaces::None
    }
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
    /// The `java` launcher of the JDK that runs Java functions; its `javac` (next to it, else from `PATH`)
    /// compiles the Java shim once, at the first Java instance.
    pub java: PathBuf,
    /// Use namespaces when the kernel allows them (the default); `false` keeps only a session per instance.
    pub namespaces: bool,
    /// Folders handlers must never see (the runtime's data folder, the functions folder): covered inside the
    /// sandbox if a folder it shows contains them.
    pub hidden: Vec<PathBuf>,
}

impl PoolConfig {
    /// Defaults: 300 s idle timeout, `nobody` when root, 1024 files and processes, `python3`, `node` and `java` from
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
            java: find_interpreter("java"),
            namespaces: true,
            hidden: Vec::new(),
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
    #[error("unsupported runtime '{0}': expected python3, python3.N, nodejsN or javaN")]
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
    /// Without namespaces, handlers reach their files by path, and a folder on the way is closed to them.
    #[error(
        "handlers run as uid {uid} and cannot reach {path}: {blocking} is mode {mode:04o} (owner uid {owner}) and \
         namespaces are not available here to show them their code another way. Move the data folder \
         (--data-dir / [runtime] data_dir) under a folder every user may traverse, or give others search \
         permission on {blocking} (chmod o+x), or run the runtime where it may create mount namespaces"
    )]
    Unreachable {
        /// The folder handlers need.
        path: PathBuf,
        /// The first folder on the way they cannot traverse.
        blocking: PathBuf,
        /// Its mode.
        mode: u32,
        /// Its owner.
        owner: u32,
        /// The handlers' uid.
        uid: u32,
    },
    /// `run_as` was given to a runtime that is not root (it cannot change user).
    #[error(
        "run_as needs the runtime to run as root: not root, handlers run as the runtime's own user (in a user \
         namespace when the kernel allows it)"
    )]
    RunAsNeedsRoot,
    /// `run_as` names root.
    #[error(
        "run_as must not be root (uid 0): handlers would run with every privilege of the machine"
    )]
    RunAsRoot,
}

mod instance;
mod java;
mod logs;
mod process;
mod protocol;
pub mod sandbox;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use instance::{CodeInUse, Instance, Launcher};
use logs::FunctionLog;
pub use protocol::split_http_answer;
pub use sandbox::Namespaces;

/// The Python shim, embedded so the binary is self-contained; written to `<data dir>/shim/` at start.
const PYTHON_SHIM: &str = include_str!("shim/worker.py");
/// The Node.js shim, embedded so the binary is self-contained; written to `<data dir>/shim/` at start.
const NODE_SHIM: &str = include_str!("shim/worker.js");

/// A function's log file, written by all its instances.
type SharedLog = Arc<Mutex<FunctionLog>>;

/// Instances are kept per function and qualifier: a version and LATEST may run different code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FunctionKey {
    service: String,
    function: String,
    qualifier: String,
}

/// The warm instances of one function at one qualifier.
#[derive(Debug)]
struct Function {
    /// Hash of the [`FunctionSpec`] the current instances were started for.
    fingerprint: u64,
    /// Bumped whenever the spec changes: busy instances of an older generation are stopped when they finish.
    generation: u64,
    /// Free instances, most recently used last (taken first, so the others age out).
    idle: Vec<Instance>,
    /// Whether the code directory of this generation has had its write permissions removed (only done
    /// without namespaces: with them the code is a read-only mount).
    code_prepared: bool,
}

/// State shared by the pool handle and its idle reaper.
#[derive(Debug)]
struct Shared {
    /// Starts processes.
    launcher: Launcher,
    /// Instances idle this long are stopped.
    idle_timeout: Duration,
    /// Whether the daemon is root (handlers then run as another user).
    root: bool,
    /// How handlers are isolated.
    isolation: Isolation,
    /// `<data dir>/logs`: one log file per function.
    logs_dir: PathBuf,
    /// Warm instances per function; never held across an await.
    functions: Mutex<HashMap<FunctionKey, Function>>,
    /// Log files per (service, function), shared by qualifiers so one file has one writer.
    logs: Mutex<HashMap<(String, String), SharedLog>>,
    /// Source of [`Function::generation`] values.
    next_generation: AtomicU64,
    /// Cancelled by [`Pool::shutdown`] (and on drop): stops the reaper, refuses new invocations.
    shutdown: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain collections in a usable state.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fingerprint(spec: &FunctionSpec) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    spec.hash(&mut hasher);
    hasher.finish()
}

/// Service and function names are validated by the API side; anything else is still kept out of paths.
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn prepare_dir(path: &Path, mode: Option<u32>) -> Result<(), PoolError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |source| PoolError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(failed)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(failed)?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str) -> Result<(), PoolError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |source| PoolError::DataDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, contents).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(failed)
}

/// Deletes a code directory the pool made read-only (when the daemon is not root its directories are 0555, so a
/// plain `remove_dir_all` would fail). Evict the function first.
pub fn remove_code_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)?;
        if metadata.is_dir() {
            let mode = metadata.permissions().mode();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o700))?;
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    std::fs::remove_dir_all(dir)
}

/// Warm handler processes, keyed by function.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Prepares the data directory (writes the shims, clears instance directories left by a previous run),
    /// decides how handlers are isolated (trying the sandbox once) and starts the idle reaper. Call inside a
    /// tokio runtime.
    pub fn new(config: PoolConfig) -> Result<Self, PoolError> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root && config.run_as.is_some() {
            return Err(PoolError::RunAsNeedsRoot);
        }
        let run_as = root.then(|| sandbox::unprivileged_user(config.run_as));
        if run_as.is_some_and(|(uid, _)| uid == 0) {
            return Err(PoolError::RunAsRoot);
        }
        let data_dir = &config.data_dir;
        prepare_dir(data_dir, Some(0o700))?;
        let shim_dir = data_dir.join("shim");
        prepare_dir(&shim_dir, Some(0o755))?;
        write_file(&shim_dir.join("worker.py"), PYTHON_SHIM)?;
        write_file(&shim_dir.join("worker.js"), NODE_SHIM)?;
        let instances_dir = data_dir.join("instances");
        if instances_dir.exists() {
            std::fs::remove_dir_all(&instances_dir).map_err(|source| PoolError::DataDir {
                path: instances_dir.clone(),
                source,
            })?;
        }
        prepare_dir(&instances_dir, Some(0o700))?;
        let logs_dir = data_dir.join("logs");
        // Function logs are the daemon's to read: a handler must not read another function's log.
        prepare_dir(&logs_dir, Some(0o700))?;

        let wanted = match (config.namespaces, root) {
            (false, _) => Namespaces::None,
            (true, true) => Namespaces::Root,
            (true, false) => Namespaces::User,
        };
        let plan = match wanted {
            Namespaces::None => None,
            namespaces => {
                let plan = sandbox::Plan::new(namespaces, &shim_dir, &config.hidden);
                match probe(&plan, &instances_dir, run_as, &config) {
                    Ok(()) => Some(plan),
                    Err(error) => {
                        tracing::warn!(
                            "handlers run without namespaces (no private file-system view, no PID namespace): \
                             the sandbox cannot be built here: {error}"
                        );
                        None
                    }
                }
            }
        };
        let isolation = Isolation {
            namespaces: plan.as_ref().map_or(Namespaces::None, |p| p.namespaces),
            run_as,
        };
        if let Some(plan) = &plan {
            for interpreter in [&config.python, &config.node, &config.java] {
                if interpreter.exists() && !plan.shows(interpreter) {
                    tracing::warn!(
                        interpreter = %interpreter.display(),
                        "this interpreter is not inside the folders handlers see (/usr, /bin, /lib*, /etc, /opt): \
                         functions needing it will not start; install it under /usr or /opt"
                    );
                }
            }
        } else {
            // Handlers reach the shims, their TMPDIR and their code by path: the way must be open to them.
            prepare_dir(data_dir, Some(0o711))?;
            prepare_dir(&instances_dir, Some(0o711))?;
            if let Some((uid, gid)) = run_as {
                for needed in [&shim_dir, &instances_dir] {
                    if let Some((blocking, mode, owner)) = sandbox::unreachable_by(needed, uid, gid)
                    {
                        return Err(PoolError::Unreachable {
                            path: needed.clone(),
                            blocking,
                            mode,
                            owner,
                            uid,
                        });
                    }
                }
            }
        }
        tracing::debug!(?isolation, "function runtime pool sandbox");

        let shared = Arc::new(Shared {
            launcher: Launcher {
                python: config.python,
                node: config.node,
                java: java::Jdk::new(config.java),
                shim_dir,
                instances_dir,
                run_as,
                fd_limit: config.fd_limit,
                nproc_limit: config.nproc_limit,
                plan,
                live: Arc::new(AtomicUsize::new(0)),
                code_in_use: CodeInUse::default(),
            },
            idle_timeout: config.idle_timeout,
            root,
            isolation,
            logs_dir,
            functions: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
        });
        let period =
            (config.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
        tokio::spawn(reap_periodically(
            Arc::downgrade(&shared),
            shared.shutdown.clone(),
            period,
        ));
        Ok(Pool { shared })
    }

    /// How handlers are isolated.
    pub fn isolation(&self) -> Isolation {
        self.shared.isolation
    }

    /// The code folders live instances use (busy or idle): code that must not be removed yet.
    pub fn code_dirs_in_use(&self) -> std::collections::HashSet<PathBuf> {
        lock(&self.shared.launcher.code_in_use)
            .keys()
            .cloned()
            .collect()
    }

    /// Runs one invocation on a warm instance of `spec`, starting one if none is free.
    ///
    /// Dropping the returned future mid-way (the caller went away) stops the instance it was using.
    pub async fn invoke(
        &self,
        spec: &FunctionSpec,
        request: InvokeRequest,
    ) -> Result<Invocation, PoolError> {
        self.call(spec, request, &Call::Event).await
    }

    /// Runs one HTTP-trigger invocation: the handler gets `request.payload` as the request body and `head`
    /// (JSON: method, path, url, queries, headers, clientIP) as the rest of the request, through the shim's
    /// request object (Node.js) or WSGI environ (Python). A success's body is the shim's HTTP answer (see
    /// [`split_http_answer`]); failures are as for [`Pool::invoke`]. Same instances, limits and log.
    pub async fn invoke_http(
        &self,
        spec: &FunctionSpec,
        request: InvokeRequest,
        head: Bytes,
    ) -> Result<Invocation, PoolError> {
        self.call(spec, request, &Call::Http { head }).await
    }

    async fn call(
        &self,
        spec: &FunctionSpec,
        request: InvokeRequest,
        call: &Call,
    ) -> Result<Invocation, PoolError> {
        let shared = &self.shared;
        if shared.shutdown.is_cancelled() {
            return Err(PoolError::ShuttingDown);
        }
        let key = FunctionKey {
            service: spec.service.clone(),
            function: spec.function.clone(),
            qualifier: spec.qualifier.clone(),
        };
        let fingerprint = fingerprint(spec);
        let mut stale = Vec::new();
        let (warm, generation, code_prepared) = {
            let mut functions = lock(&shared.functions);
            let entry = functions.entry(key.clone()).or_insert_with(|| Function {
                fingerprint,
                generation: shared.next_generation.fetch_add(1, Ordering::SeqCst),
                idle: Vec::new(),
                code_prepared: false,
            });
            if entry.fingerprint != fingerprint {
                stale.append(&mut entry.idle);
                entry.fingerprint = fingerprint;
                entry.generation = shared.next_generation.fetch_add(1, Ordering::SeqCst);
                entry.code_prepared = false;
            }
            let mut warm = None;
            while let Some(mut instance) = entry.idle.pop() {
                if instance.has_exited() {
                    stale.push(instance);
                } else {
                    warm = Some(instance);
                    break;
                }
            }
            (warm, entry.generation, entry.code_prepared)
        };
        drop(stale);

        let mut instance = match warm {
            Some(instance) => instance,
            None => {
                if !code_prepared && shared.launcher.plan.is_none() {
                    sandbox::remove_write_permission(&spec.code_dir, shared.root).map_err(
                        |source| PoolError::DataDir {
                            path: spec.code_dir.clone(),
                            source,
                        },
                    )?;
                    if let Some(entry) = lock(&shared.functions).get_mut(&key)
                        && entry.generation == generation
                    {
                        entry.code_prepared = true;
                    }
                }
                let log = self.function_log(spec);
                shared.launcher.spawn(spec, generation, log).await?
            }
        };
        let (invocation, reusable) = instance.invoke(spec, &request, call).await;
        if reusable && !shared.shutdown.is_cancelled() {
            let mut functions = lock(&shared.functions);
            match functions.get_mut(&key) {
                Some(entry) if entry.generation == instance.generation => entry.idle.push(instance),
                _ => {
                    drop(functions);
                    drop(instance);
                }
            }
        }
        Ok(invocation)
    }

    fn function_log(&self, spec: &FunctionSpec) -> SharedLog {
        let shared = &self.shared;
        lock(&shared.logs)
            .entry((spec.service.clone(), spec.function.clone()))
            .or_insert_with(|| {
                let path = shared
                    .logs_dir
                    .join(file_name(&spec.service))
                    .join(format!("{}.log", file_name(&spec.function)));
                Arc::new(Mutex::new(FunctionLog::new(path)))
            })
            .clone()
    }

    /// Stops every instance of a function (all qualifiers): its code or configuration changed, or it was deleted.
    /// Busy instances finish their invocation and are stopped then.
    pub async fn evict(&self, service: &str, function: &str) {
        let evicted: Vec<Function> = {
            let mut functions = lock(&self.shared.functions);
            let keys: Vec<FunctionKey> = functions
                .keys()
                .filter(|key| key.service == service && key.function == function)
                .cloned()
                .collect();
            keys.iter()
                .filter_map(|key| functions.remove(key))
                .collect()
        };
        drop(evicted);
    }

    /// Stops instances idle for longer than the idle timeout (and instances whose process ended); returns how
    /// many. The background reaper calls it periodically.
    pub async fn reap_idle(&self) -> usize {
        self.shared.reap_idle()
    }

    /// Number of live instances (busy or idle).
    pub fn instance_count(&self) -> usize {
        self.shared.launcher.live.load(Ordering::SeqCst)
    }

    /// Where the log file of a function is written (`<data dir>/logs/<service>/<function>.log`).
    pub fn log_path(&self, service: &str, function: &str) -> PathBuf {
        self.shared
            .logs_dir
            .join(file_name(service))
            .join(format!("{}.log", file_name(function)))
    }

    /// Stops every idle instance and refuses further invocations; busy instances stop when they finish.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        let functions = std::mem::take(&mut *lock(&self.shared.functions));
        drop(functions);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl Shared {
    fn reap_idle(&self) -> usize {
        let now = Instant::now();
        let mut reaped = Vec::new();
        {
            let mut functions = lock(&self.functions);
            for entry in functions.values_mut() {
                for mut instance in std::mem::take(&mut entry.idle) {
                    let expired =
                        now.saturating_duration_since(instance.last_used) >= self.idle_timeout;
                    if expired || instance.has_exited() {
                        reaped.push(instance);
                    } else {
                        entry.idle.push(instance);
                    }
                }
            }
        }
        reaped.len()
    }
}

/// Builds the sandbox once around `true`: the namespaces are used only if this works from start to exit.
fn probe(
    plan: &sandbox::Plan,
    instances_dir: &Path,
    run_as: Option<(u32, u32)>,
    config: &PoolConfig,
) -> std::io::Result<()> {
    let id = uuid::Uuid::new_v4().simple();
    let dir = instances_dir.join(format!("probe-{id}"));
    let code = instances_dir.join(format!("probe-code-{id}"));
    std::fs::create_dir(&dir)?;
    std::fs::create_dir(&code)?;
    let result = (|| {
        let program = ["/usr/bin/true", "/bin/true"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| std::io::Error::other("no `true` program to try the sandbox with"))?;
        let (_log_read, log) = instance::pipe_pair()?;
        let (requests, _requests_write) = instance::pipe_pair()?;
        let (_responses_read, responses) = instance::pipe_pair()?;
        let setup = sandbox::ChildSetup::new(sandbox::ChildSpec {
            plan: Some(plan),
            code_dir: &code,
            instance_dir: &dir,
            run_as,
            fd_limit: config.fd_limit,
            nproc_limit: config.nproc_limit,
            program,
            args: Vec::new(),
            env: Vec::new(),
            log,
            requests,
            responses,
        })?;
        let started = sandbox::start(&setup)?;
        let mut report = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(started.report), &mut report)?;
        let status = process::reap(started.pid, true).unwrap_or(-1);
        drop(started.pidfd);
        if let Some(error) = setup.reported_failure(&report) {
            return Err(error);
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(std::io::Error::other(format!(
                "the trial process ended with wait status {status}"
            )));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(&code);
    result
}

async fn reap_periodically(shared: Weak<Shared>, shutdown: CancellationToken, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let reaped = shared.reap_idle();
        if reaped > 0 {
            tracing::debug!(reaped, "stopped idle function instances");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names() {
        for name in ["python3", "python3.9", "python3.10"] {
            assert_eq!(
                name.parse::<Language>().ok(),
                Some(Language::Python3),
                "{name}"
            );
        }
        for name in ["nodejs12", "nodejs14", "nodejs16", "nodejs18", "nodejs20"] {
            assert_eq!(
                name.parse::<Language>().ok(),
                Some(Language::Nodejs),
                "{name}"
            );
        }
        for name in ["java8", "java11", "java17", "java21"] {
            assert_eq!(
                name.parse::<Language>().ok(),
                Some(Language::Java),
                "{name}"
            );
        }
        for name in [
            "python2.7",
            "python3.",
            "nodejs",
            "java",
            "java8.1",
            "custom",
        ] {
            let error = name.parse::<Language>().expect_err(name);
            assert!(error.to_string().contains(&format!("'{name}'")), "{error}");
        }
    }

    #[test]
    fn names_stay_inside_the_log_directory() {
        assert_eq!(file_name("svc-1_a"), "svc-1_a");
        assert_eq!(file_name("../etc"), "___etc");
    }
}
