//! One handler process: spawning it under the sandbox, and running initializations and invocations on it.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::time::{Instant, Sleep};

use super::java::Jdk;
use super::logs::{FunctionLog, Tail};
use super::process::HandlerProcess;
use super::protocol::{self, Response};
use super::sandbox::{self, ChildSetup, ChildSpec, Plan};
use super::{
    Call, ErrorType, FunctionSpec, Invocation, InvokeOutcome, InvokeRequest, Language, PoolError,
};

/// How often the resident memory of a running invocation is compared with its `memorySize`.
const MEMORY_CHECK_PERIOD: Duration = Duration::from_millis(50);

/// After the shim's response pipe closes, how long to wait for the process to exit and its log to end.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// The `PATH` handlers see: the system's, not the daemon's.
const HANDLER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How long a child may take from clone to exec (mounting its sandbox) before it is killed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a JVM may take to start, apart from the function's time limits.
const JVM_START_TIMEOUT: Duration = Duration::from_secs(30);

/// What a process printed before its shim said it was ready: kept to explain a failed start.
const STARTUP_OUTPUT_BYTES: usize = 2048;

/// Code folders of live instances, with how many instances use each: code still in use is not removed.
pub type CodeInUse = Arc<Mutex<HashMap<PathBuf, usize>>>;

/// What every instance of the pool shares: interpreters, shims, where instance directories go, the sandbox.
#[derive(Debug)]
pub struct Launcher {
    /// python3 interpreter.
    pub python: PathBuf,
    /// node interpreter.
    pub node: PathBuf,
    /// The JDK of Java functions, and its compiled shim.
    pub java: Jdk,
    /// The folder holding `worker.py` and `worker.js` on the host.
    pub shim_dir: PathBuf,
    /// Parent of the per-instance directories.
    pub instances_dir: PathBuf,
    /// (uid, gid) handlers run as; `None` when the daemon is not root.
    pub run_as: Option<(u32, u32)>,
    /// RLIMIT_NOFILE of handlers.
    pub fd_limit: u64,
    /// RLIMIT_NPROC of handlers.
    pub nproc_limit: u64,
    /// The sandbox's plan when namespaces are used.
    pub plan: Option<Plan>,
    /// Live instances, for [`super::Pool::instance_count`]; each instance decrements it when dropped.
    pub live: Arc<AtomicUsize>,
    /// Code folders in use by live instances.
    pub code_in_use: CodeInUse,
}
/// How an initialization or invocation ended, seen from the runtime.
enum Ending {
    /// The shim answered.
    Answered(Response),
    /// The deadline passed.
    TimedOut,
    /// The process ended (or closed its response pipe) without answering.
    Exited,
    /// Resident memory went over `memorySize`; the value seen in MB.
    OutOfMemory(u64),
    /// The shim broke the framing.
    Broken(protocol::ProtocolError),
}

/// Which step an ending belongs to, with its time limit: the timeout messages differ.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The initializer, bounded by `initializationTimeout`.
    Initialization(Duration),
    /// The handler, bounded by `timeout`.
    Invocation(Duration),
}

/// An instance's invocation timers; see [`Instance`]'s `timers`.
#[derive(Debug)]
struct Timers {
    /// The invocation's time limit.
    deadline: Pin<Box<Sleep>>,
    /// The next look at the process's memory.
    memory_check: Pin<Box<Sleep>>,
}

/// A running handler process with its pipes.
#[derive(Debug)]
pub struct Instance {
    /// `FC_INSTANCE_ID`; also the name of its directory.
    pub id: String,
    /// The configuration generation it was started for; instances of an older one are not reused.
    pub generation: u64,
    /// When it last finished an invocation, for the idle reaper.
    pub last_used: Instant,
    /// Owns the process: killed (with everything it started) on drop.
    process: HandlerProcess,
    /// Frames to the shim (its fd 3).
    requests: pipe::Sender,
    /// Frames from the shim (its fd 4).
    responses: pipe::Receiver,
    /// Bytes read from `responses` that do not make a whole frame yet.
    response_buf: BytesMut,
    /// The handler's stdout and stderr (one pipe, so their order is kept).
    logs: pipe::Receiver,
    /// Reused read buffer for `logs`.
    log_chunk: Vec<u8>,
    /// False once the log pipe reached its end.
    logs_open: bool,
    /// Whether the initializer ran (it runs once, before the first invocation).
    initialized: bool,
    /// Whether the shim said it is ready (it read its setup): an exit before that is a failed start.
    ready: bool,
    /// The first output of the process, until it is ready: what a failed start printed.
    startup_output: Vec<u8>,
    /// The code folder, counted in [`CodeInUse`] while the instance lives.
    code_dir: PathBuf,
    /// Shared with the launcher.
    code_in_use: CodeInUse,
    /// The instance's private writable directory (`TMPDIR`, or `/tmp` itself in a mount namespace).
    dir: PathBuf,
    /// The function's log file, shared with its other instances.
    log_file: Arc<Mutex<FunctionLog>>,
    /// Peak resident memory seen, in kB.
    peak_memory_kb: u64,
    /// Where the process's memory is read.
    memory: ProcMemory,
    /// The invocation's time limit and memory check, kept from one invocation to the next and moved forward
    /// rather than made anew (`None` while an invocation holds them, or before the first): a new timer earlier
    /// than any the runtime holds wakes the thread waiting on the I/O driver to re-arm it. Measured with `strace`
    /// under one connection: two such wake-ups per call, and the call then finished on that other thread.
    timers: Option<Timers>,
    /// Decremented on drop.
    live: Arc<AtomicUsize>,
}

pub(super) fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

fn seconds(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        duration.as_secs().to_string()
    } else {
        format!("{}", duration.as_secs_f64())
    }
}

fn error_json(message: String) -> Bytes {
    Bytes::from(serde_json::json!({ "errorMessage": message }).to_string())
}

/// The memory of one process as the kernel counts it: `/proc/<pid>/status` (resident and peak resident) and
/// `/proc/<pid>/statm` (resident only), both opened once. Each reading is one `pread` into a buffer sized for the
/// file, instead of an open, a read per doubling of a growing buffer and a close.
///
/// Opened while the process is a child not yet reaped, so the pid is still its own; the handles then stay with
/// that process whatever happens to the number (a read after its end fails, it never reads another process).
///
/// The two differ in price: the kernel formats all of `status` (about 50 lines) for a read, 6-9 us measured,
/// where `statm` is one line of counters, 1-1.4 us. See [`FULL_PEAK_AFTER`] for when each is read.
#[derive(Debug)]
struct ProcMemory {
    status: Option<std::fs::File>,
    statm: Option<std::fs::File>,
    buf: Box<[u8; STATUS_BYTES]>,
    /// The page size in kB, the unit of `statm`.
    page_kb: u64,
}

/// Larger than any `/proc/<pid>/status` (the memory lines come in its first kilobyte anyway).
const STATUS_BYTES: usize = 8 * 1024;

/// How long an invocation runs before its end reads the peak (`VmHWM`) rather than only the resident size.
///
/// The peak also counts memory the handler touched and gave back before it answered, which the resident size at
/// the end no longer shows. Such a burst takes time: the kernel zeroes every page it hands out, so in 250 us a
/// process gains and frees a few MB at most, about the MB `X-Fc-Max-Memory-Usage` is given in. Shorter
/// invocations (a no-op handler's takes about 30 us) add the resident size instead, at a sixth of the price. The
/// kernel keeps the peak for the life of the process, so such a small burst still shows the next time the peak
/// is read: at the end of a longer invocation, or by the 50 ms check during one. An instance's first invocation
/// always reads it.
const FULL_PEAK_AFTER: Duration = Duration::from_micros(250);

impl ProcMemory {
    fn open(pid: i32) -> Self {
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        ProcMemory {
            status: std::fs::File::open(format!("/proc/{pid}/status")).ok(),
            statm: std::fs::File::open(format!("/proc/{pid}/statm")).ok(),
            buf: Box::new([0; STATUS_BYTES]),
            page_kb: u64::try_from(page_size).map_or(4, |bytes| (bytes / 1024).max(1)),
        }
    }

    /// Resident and peak resident memory in kB (`VmRSS`, `VmHWM`).
    fn memory_kb(&mut self) -> Option<(u64, u64)> {
        use std::os::unix::fs::FileExt as _;
        let n = self.status.as_ref()?.read_at(&mut self.buf[..], 0).ok()?;
        status_memory_kb(&self.buf[..n])
    }

    /// Resident memory in kB, from `statm`.
    fn resident_kb(&mut self) -> Option<u64> {
        use std::os::unix::fs::FileExt as _;
        let n = self.statm.as_ref()?.read_at(&mut self.buf[..], 0).ok()?;
        Some(statm_resident_pages(&self.buf[..n])? * self.page_kb)
    }
}

/// The resident page count of a `/proc/<pid>/statm` line (its second field).
fn statm_resident_pages(statm: &[u8]) -> Option<u64> {
    std::str::from_utf8(statm)
        .ok()?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `VmRSS` and `VmHWM` in kB from the text of `/proc/<pid>/status`.
fn status_memory_kb(status: &[u8]) -> Option<(u64, u64)> {
    let field = |name: &[u8]| {
        status
            .split(|&b| b == b'\n')
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                std::str::from_utf8(rest)
                    .ok()?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some((field(b"VmRSS:")?, field(b"VmHWM:")?))
}

/// The JSON the shim turns into `context`, and where to find the handler (`code_dir` as the handler sees it).
fn setup_json(spec: &FunctionSpec, code_dir: &Path) -> Vec<u8> {
    let credentials = spec.credentials.as_ref();
    let version_id = if spec.qualifier.bytes().all(|b| b.is_ascii_digit()) {
        spec.qualifier.as_str()
    } else {
        ""
    };
    serde_json::json!({
        "codeDir": code_dir,
        "handler": spec.handler,
        "initializer": spec.initializer,
        "context": {
            "credentials": {
                "accessKeyId": credentials.map_or("", |c| c.access_key_id.as_str()),
                "accessKeySecret": credentials.map_or("", |c| c.access_key_secret.as_str()),
                "securityToken": credentials.and_then(|c| c.security_token.as_deref()).unwrap_or(""),
            },
            "function": {
                "name": spec.function,
                "handler": spec.handler,
                "memory": spec.memory_mb,
                "timeout": spec.timeout.as_secs(),
                "initializer": spec.initializer,
                "initializationTimeout": spec.initialization_timeout.as_secs(),
            },
            "service": {
                "name": spec.service,
                "logProject": spec.log_project,
                "logStore": spec.log_store,
                "qualifier": spec.qualifier,
                "versionId": version_id,
            },
            "region": spec.region,
            "accountId": spec.account_id,
        },
    })
    .to_string()
    .into_bytes()
}

/// Everything a handler may rely on from its environment; nothing of the daemon's own.
fn handler_environment(
    spec: &FunctionSpec,
    instance_id: &str,
    tmp: &Path,
    code_dir: &Path,
) -> Vec<(String, String)> {
    let tmp = tmp.display().to_string();
    // Defaults first, then the function's own variables (they may set PATH, say, for bundled tools), then the
    // reserved `FC_*` ones, which the function cannot override. Later entries win.
    let mut env: Vec<(String, String)> = vec![
        ("PATH".to_owned(), HANDLER_PATH.to_owned()),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("HOME".to_owned(), tmp.clone()),
        ("TMPDIR".to_owned(), tmp.clone()),
        ("TEMP".to_owned(), tmp.clone()),
        ("TMP".to_owned(), tmp),
    ];
    env.extend(
        spec.environment
            .iter()
            .filter(|(name, _)| !name.starts_with("FC_"))
            .map(|(name, value)| (name.clone(), value.clone())),
    );
    let mut set = |name: &str, value: String| env.push((name.to_owned(), value));
    set("FC_FUNC_CODE_PATH", code_dir.display().to_string());
    set("FC_FUNCTION_HANDLER", spec.handler.clone());
    set("FC_FUNCTION_MEMORY_SIZE", spec.memory_mb.to_string());
    set("FC_FUNCTION_NAME", spec.function.clone());
    set("FC_SERVICE_NAME", spec.service.clone());
    set("FC_REGION", spec.region.clone());
    set("FC_ACCOUNT_ID", spec.account_id.clone());
    set("FC_INSTANCE_ID", instance_id.to_owned());
    set("FC_QUALIFIER", spec.qualifier.clone());
    if let Some(credentials) = &spec.credentials {
        set(
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            credentials.access_key_id.clone(),
        );
        set(
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            credentials.access_key_secret.clone(),
        );
        if let Some(token) = &credentials.security_token {
            set("ALIBABA_CLOUD_SECURITY_TOKEN", token.clone());
        }
    }
    env
}

impl Launcher {
    /// Starts a handler process for `spec` and sends it the setup frame.
    pub async fn spawn(
        &self,
        spec: &FunctionSpec,
        generation: u64,
        log_file: Arc<Mutex<FunctionLog>>,
    ) -> Result<Instance, PoolError> {
        let interpreter = match spec.language {
            Language::Python3 => self.python.as_path(),
            Language::Nodejs => self.node.as_path(),
            Language::Java => self.java.java(),
        };
        let spawn_error = |source: std::io::Error| PoolError::Spawn {
            interpreter: interpreter.to_owned(),
            service: spec.service.clone(),
            function: spec.function.clone(),
            source,
        };
        if spec.language == Language::Java {
            self.java
                .prepare(&self.shim_dir)
                .await
                .map_err(|reason| spawn_error(std::io::Error::other(reason)))?;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.instances_dir.join(&id);
        let dir_error = |source| PoolError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir(&dir).map_err(dir_error)?;
        let sandboxed = self.plan.is_some();
        // Without namespaces the instance's folder is its TMPDIR, so its user must own it.
        if !sandboxed && let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(dir_error)?;
        }
        let (visible_tmp, visible_code, shim_dir) = if sandboxed {
            (
                PathBuf::from("/tmp"),
                PathBuf::from(sandbox::CODE_DIR),
                PathBuf::from(sandbox::SHIM_DIR),
            )
        } else {
            (dir.clone(), spec.code_dir.clone(), self.shim_dir.clone())
        };

        let (request_read, request_write) = pipe_pair().map_err(spawn_error)?;
        let (response_read, response_write) = pipe_pair().map_err(spawn_error)?;
        let (log_read, log_write) = pipe_pair().map_err(spawn_error)?;
        let args = match spec.language {
            Language::Python3 => vec![
                "-u".to_owned(),
                "-B".to_owned(),
                shim_dir.join("worker.py").display().to_string(),
            ],
            Language::Nodejs => vec![
                format!("--max-old-space-size={}", spec.memory_mb),
                shim_dir.join("worker.js").display().to_string(),
            ],
            Language::Java => Jdk::args(spec.memory_mb, &shim_dir, &visible_tmp),
        };
        // The JVM reaches its pipes through /proc/self/fd/3 and 4, which opens them anew: the kernel then checks
        // the pipes' owner (the runtime) against the handler's user, so they become the handler's.
        if spec.language == Language::Java
            && let Some((uid, gid)) = self.run_as
        {
            for end in [&request_read, &response_write] {
                std::os::unix::fs::fchown(end, Some(uid), Some(gid)).map_err(spawn_error)?;
            }
        }
        let setup = ChildSetup::new(ChildSpec {
            plan: self.plan.as_ref(),
            code_dir: &spec.code_dir,
            instance_dir: &dir,
            run_as: self.run_as,
            fd_limit: self.fd_limit,
            nproc_limit: self.nproc_limit,
            program: interpreter,
            args,
            env: handler_environment(spec, &id, &visible_tmp, &visible_code),
            log: log_write,
            requests: request_read,
            responses: response_write,
        })
        .map_err(spawn_error)?;
        let started = sandbox::start(&setup).map_err(spawn_error)?;
        let mut process =
            HandlerProcess::new(started.pid, started.pidfd, !sandboxed).map_err(spawn_error)?;
        // The child closes its copy of the report pipe when it execs; a failed setup writes why first.
        let mut report = Vec::new();
        let mut reader = pipe::Receiver::from_owned_fd(started.report).map_err(spawn_error)?;
        match tokio::time::timeout(SETUP_TIMEOUT, reader.read_to_end(&mut report)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(spawn_error(error)),
            Err(_) => {
                return Err(spawn_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the handler's sandbox was not ready within 10 seconds",
                )));
            }
        }
        if let Some(error) = setup.reported_failure(&report) {
            process.wait().await;
            return Err(spawn_error(error));
        }
        drop(setup);
        let pid = process.pid();
        self.live.fetch_add(1, Ordering::SeqCst);
        *lock(&self.code_in_use)
            .entry(spec.code_dir.clone())
            .or_default() += 1;
        tracing::debug!(
            service = %spec.service,
            function = %spec.function,
            runtime = %spec.runtime_name,
            instance = %id,
            pid,
            sandboxed,
            "started a function instance"
        );
        let mut instance = Instance {
            id,
            generation,
            last_used: Instant::now(),
            process,
            requests: pipe::Sender::from_owned_fd(request_write).map_err(spawn_error)?,
            responses: pipe::Receiver::from_owned_fd(response_read).map_err(spawn_error)?,
            response_buf: BytesMut::with_capacity(8 * 1024),
            timers: None,
            logs: pipe::Receiver::from_owned_fd(log_read).map_err(spawn_error)?,
            log_chunk: vec![0; 16 * 1024],
            logs_open: true,
            initialized: spec.initializer.is_none(),
            ready: false,
            startup_output: Vec::new(),
            code_dir: spec.code_dir.clone(),
            code_in_use: self.code_in_use.clone(),
            dir,
            log_file,
            peak_memory_kb: 0,
            memory: ProcMemory::open(pid),
            live: self.live.clone(),
        };
        // A shim that died before reading its setup shows at the first invocation as a failed start.
        let _ = instance
            .requests
            .write_all(&protocol::setup_frame(&setup_json(spec, &visible_code)))
            .await;
        Ok(instance)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The log of one invocation as it is produced: its tail, and the function's log file.
///
/// What goes to the file is gathered and written in one append where the order allows: the `FC ... Start` line
/// with the first output (or with the `End` line when the handler printed nothing), the output read after the
/// answer with the `End` line. Output read while the handler runs is written at once (with what was gathered
/// before it), so the file follows a long invocation as it goes. Dropped (the caller went away mid-invocation),
/// it writes what it gathered.
struct InvocationLog<'a> {
    tail: Tail,
    file: &'a Mutex<FunctionLog>,
    /// Gathered for the file, not yet written.
    pending: Vec<u8>,
}

impl InvocationLog<'_> {
    /// Adds to the tail and to what the file gets next.
    fn push(&mut self, bytes: &[u8]) {
        self.tail.push(bytes);
        self.pending.extend_from_slice(bytes);
    }

    /// Writes what was gathered.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            write_log(self.file, &self.pending);
            self.pending.clear();
        }
    }
}

impl Drop for InvocationLog<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

fn write_log(file: &Mutex<FunctionLog>, bytes: &[u8]) {
    match file.lock() {
        Ok(mut file) => file.write(bytes),
        Err(poisoned) => poisoned.into_inner().write(bytes),
    }
}

impl Instance {
    /// Runs the initializer if this instance has not yet, then the invocation. Returns what to answer and
    /// whether the instance can serve again.
    pub async fn invoke(
        &mut self,
        spec: &FunctionSpec,
        request: &InvokeRequest,
        call: &Call,
    ) -> (Invocation, bool) {
        let log_file = self.log_file.clone();
        let mut log = InvocationLog {
            tail: Tail::default(),
            file: &log_file,
            pending: Vec::new(),
        };
        // Whatever the process printed between invocations belongs to no invocation: file only.
        self.drain_logs(&mut |bytes| write_log(&log_file, bytes));
        let started = Instant::now();
        let id = &request.request_id;

        let mut failure = None;
        if !self.ready && spec.language == Language::Java {
            failure = self.start_jvm(spec, started, &mut log).await;
        }
        if failure.is_none() && !self.initialized {
            log.push(format!("FC Initialize Start RequestId: {id}\n").as_bytes());
            let frame = protocol::initialize_frame(id);
            let ending = self
                .exchange(&frame, spec, spec.initialization_timeout, &mut log)
                .await;
            match ending {
                Ending::Answered(Response::Success(_)) => self.initialized = true,
                other => {
                    let phase = Phase::Initialization(spec.initialization_timeout);
                    failure = Some(self.failure_body(other, started, phase));
                }
            }
            log.push(format!("FC Initialize End RequestId: {id}\n").as_bytes());
        }

        let mut reusable = failure.is_none();
        let outcome = match failure {
            Some(body) => InvokeOutcome::FunctionError {
                error_type: ErrorType::Unhandled,
                body,
            },
            None => {
                log.push(format!("FC Invoke Start RequestId: {id}\n").as_bytes());
                let frame = match call {
                    Call::Event => protocol::invoke_frame(id, &request.payload),
                    Call::Http { head } => protocol::http_frame(id, head, &request.payload),
                };
                let ending = self.exchange(&frame, spec, spec.timeout, &mut log).await;
                let outcome = match ending {
                    Ending::Answered(Response::Success(body)) => InvokeOutcome::Success { body },
                    Ending::Answered(Response::Handled(body)) => InvokeOutcome::FunctionError {
                        error_type: ErrorType::Handled,
                        body,
                    },
                    Ending::Answered(Response::Unhandled(body)) => InvokeOutcome::FunctionError {
                        error_type: ErrorType::Unhandled,
                        body,
                    },
                    other => {
                        reusable = false;
                        InvokeOutcome::FunctionError {
                            error_type: ErrorType::Unhandled,
                            body: self.failure_body(
                                other,
                                started,
                                Phase::Invocation(spec.timeout),
                            ),
                        }
                    }
                };
                log.push(format!("FC Invoke End RequestId: {id}\n").as_bytes());
                outcome
            }
        };
        let duration = started.elapsed();
        if reusable {
            self.last_used = Instant::now();
            let peak = if duration >= FULL_PEAK_AFTER || self.peak_memory_kb == 0 {
                self.memory.memory_kb().map(|(_, peak)| peak)
            } else {
                self.memory.resident_kb()
            };
            self.peak_memory_kb = self.peak_memory_kb.max(peak.unwrap_or(0));
        } else {
            self.kill();
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                service = %spec.service,
                function = %spec.function,
                request_id = %id,
                instance = %self.id,
                log = %log.tail.text(),
                "function invocation log (tail)"
            );
        }
        log.flush();
        let invocation = Invocation {
            outcome,
            log_tail: request.log_tail.then(|| log.tail.text()),
            duration,
            max_memory_mb: (self.peak_memory_kb > 0).then(|| self.peak_memory_kb.div_ceil(1024)),
        };
        (invocation, reusable)
    }

    /// Waits until a JVM has started (its shim read the setup): its start, slower than an interpreter's, is not
    /// counted in the function's time limits, which are for its own code. `None` when it started.
    async fn start_jvm(
        &mut self,
        spec: &FunctionSpec,
        started: Instant,
        log: &mut InvocationLog<'_>,
    ) -> Option<Bytes> {
        match self.exchange(&[], spec, JVM_START_TIMEOUT, log).await {
            Ending::Answered(Response::Ready) => None,
            Ending::TimedOut => {
                self.kill();
                Some(error_json(format!(
                    "The Java virtual machine did not start within {} seconds",
                    JVM_START_TIMEOUT.as_secs()
                )))
            }
            other => Some(self.failure_body(other, started, Phase::Invocation(spec.timeout))),
        }
    }

    /// The error body for an initialization or invocation that did not succeed; the process is killed.
    fn failure_body(&mut self, ending: Ending, started: Instant, phase: Phase) -> Bytes {
        self.kill();
        let elapsed = started.elapsed().as_millis();
        // A process that never got as far as reading its setup did not start: say why (what it printed), or
        // the operator only sees "exited unexpectedly" while the cause sits in the function's log.
        let cause = (!self.ready).then(|| startup_cause(&self.startup_output));
        let exited = |used_mb: u64| {
            let mut message = format!(
                "Process exited unexpectedly before completing request (duration: {elapsed}ms, maxMemoryUsage: {used_mb}MB)"
            );
            if let Some(cause) = &cause {
                message.push_str(". The function's runtime did not start: ");
                message.push_str(cause);
            }
            error_json(message)
        };
        match ending {
            Ending::Answered(
                Response::Unhandled(body) | Response::Handled(body) | Response::Fatal(body),
            ) => body,
            // Not a failure; callers handle success before asking for a failure body.
            Ending::Answered(Response::Success(_) | Response::Ready) | Ending::Exited => {
                exited(self.peak_memory_kb.div_ceil(1024))
            }
            Ending::OutOfMemory(used_mb) => exited(used_mb),
            Ending::TimedOut => match phase {
                Phase::Initialization(limit) => error_json(format!(
                    "Function initialization timed out after {} seconds",
                    seconds(limit)
                )),
                Phase::Invocation(limit) => error_json(format!(
                    "Function timed out after {} seconds",
                    seconds(limit)
                )),
            },
            Ending::Broken(error) => error_json(error.to_string()),
        }
    }

    /// Sends one frame and waits for its answer, collecting the log meanwhile and watching time and memory.
    async fn exchange(
        &mut self,
        frame: &[u8],
        spec: &FunctionSpec,
        timeout: Duration,
        log: &mut InvocationLog<'_>,
    ) -> Ending {
        let now = Instant::now();
        let mut timers = self.timers.take().unwrap_or_else(|| Timers {
            deadline: Box::pin(tokio::time::sleep_until(now)),
            memory_check: Box::pin(tokio::time::sleep_until(now)),
        });
        timers.deadline.as_mut().reset(now + timeout);
        timers
            .memory_check
            .as_mut()
            .reset(now + MEMORY_CHECK_PERIOD);
        let ending = tokio::select! {
            ending = self.exchange_inner(frame, spec, &mut timers.memory_check, log) => ending,
            () = timers.deadline.as_mut() => Ending::TimedOut,
        };
        self.timers = Some(timers);
        match ending {
            Ending::Answered(_) => self.drain_logs(&mut |bytes| log.push(bytes)),
            Ending::Exited | Ending::TimedOut | Ending::OutOfMemory(_) | Ending::Broken(_) => {
                if let Ending::OutOfMemory(used) = ending {
                    log.push(
                        format!(
                            "The function used {used} MB, more than its memorySize of {} MB: the instance was stopped\n",
                            spec.memory_mb
                        )
                        .as_bytes(),
                    );
                }
                self.kill();
                self.finish_logs(log).await;
            }
        }
        if let Ending::Answered(Response::Fatal(_)) = ending {
            self.kill();
        }
        ending
    }

    async fn exchange_inner(
        &mut self,
        frame: &[u8],
        spec: &FunctionSpec,
        memory_check: &mut Pin<Box<Sleep>>,
        log: &mut InvocationLog<'_>,
    ) -> Ending {
        if self.requests.write_all(frame).await.is_err() {
            return Ending::Exited;
        }
        let limit_kb = u64::from(spec.memory_mb) * 1024;
        loop {
            match protocol::take_response(&mut self.response_buf) {
                Ok(Some(Response::Ready)) => {
                    self.ready = true;
                    // No frame to answer: the caller only waited for the shim to start.
                    if frame.is_empty() {
                        return Ending::Answered(Response::Ready);
                    }
                    continue;
                }
                Ok(Some(response)) => return Ending::Answered(response),
                Ok(None) => {}
                Err(error) => return Ending::Broken(error),
            }
            tokio::select! {
                biased;
                read = self.responses.read_buf(&mut self.response_buf) => match read {
                    Ok(0) | Err(_) => return Ending::Exited,
                    Ok(_) => {}
                },
                // The end of the response pipe alone cannot tell: a process the handler forked (Python's
                // multiprocessing, say) holds a copy of it.
                _ = self.process.wait() => {
                    self.read_pending_responses();
                    loop {
                        return match protocol::take_response(&mut self.response_buf) {
                            Ok(Some(Response::Ready)) => {
                                self.ready = true;
                                continue;
                            }
                            Ok(Some(response)) => Ending::Answered(response),
                            Ok(None) => Ending::Exited,
                            Err(error) => Ending::Broken(error),
                        };
                    }
                },
                read = self.logs.read(&mut self.log_chunk), if self.logs_open => match read {
                    Ok(0) | Err(_) => self.logs_open = false,
                    Ok(n) => {
                        if !self.ready {
                            keep_startup_output(&mut self.startup_output, &self.log_chunk[..n]);
                        }
                        log.push(&self.log_chunk[..n]);
                        log.flush();
                    }
                },
                () = memory_check.as_mut() => {
                    memory_check.as_mut().reset(Instant::now() + MEMORY_CHECK_PERIOD);
                    if let Some((rss, peak)) = self.memory.memory_kb() {
                        self.peak_memory_kb = self.peak_memory_kb.max(peak);
                        if rss > limit_kb {
                            return Ending::OutOfMemory(rss.div_ceil(1024));
                        }
                    }
                }
            }
        }
    }

    /// After the process ended: whatever it wrote to the response pipe before, without waiting.
    fn read_pending_responses(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            // SAFETY: reading into a local buffer from a descriptor we own.
            let n = unsafe {
                libc::read(
                    self.responses.as_raw_fd(),
                    chunk.as_mut_ptr().cast(),
                    chunk.len(),
                )
            };
            if n <= 0 {
                return;
            }
            self.response_buf
                .extend_from_slice(&chunk[..n.unsigned_abs()]);
        }
    }

    /// Reads what is already in the log pipe without waiting. The shim flushes its output before it answers,
    /// so after an answer this collects the whole invocation's log. Reads the descriptor directly: tokio's
    /// readiness cache may not have seen the bytes yet.
    fn drain_logs(&mut self, sink: &mut dyn FnMut(&[u8])) {
        while self.logs_open {
            let fd = self.logs.as_raw_fd();
            // SAFETY: reading into our own buffer from a descriptor we own.
            let n =
                unsafe { libc::read(fd, self.log_chunk.as_mut_ptr().cast(), self.log_chunk.len()) };
            match n {
                0 => self.logs_open = false,
                n if n > 0 => {
                    let bytes = &self.log_chunk[..n.unsigned_abs()];
                    if !self.ready {
                        keep_startup_output(&mut self.startup_output, bytes);
                    }
                    sink(bytes);
                }
                _ => {
                    if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                        break;
                    }
                }
            }
        }
    }

    /// After the process was killed or exited: its last output, until the log pipe ends (bounded, in case a
    /// child process it started still holds the pipe).
    async fn finish_logs(&mut self, log: &mut InvocationLog<'_>) {
        let _ = tokio::time::timeout(EXIT_GRACE, self.process.wait()).await;
        let _ = tokio::time::timeout(EXIT_GRACE, async {
            while self.logs_open {
                match self.logs.read(&mut self.log_chunk).await {
                    Ok(0) | Err(_) => self.logs_open = false,
                    Ok(n) => {
                        if !self.ready {
                            keep_startup_output(&mut self.startup_output, &self.log_chunk[..n]);
                        }
                        log.push(&self.log_chunk[..n]);
                    }
                }
            }
        })
        .await;
    }

    /// Whether the process already ended (an uncaught error while idle, an external kill).
    pub fn has_exited(&mut self) -> bool {
        self.process.has_exited()
    }

    /// Kills the process and everything it started (its PID namespace, or its process group without one).
    fn kill(&mut self) {
        self.process.kill();
    }
}

/// Keeps the start of a process's output, up to [`STARTUP_OUTPUT_BYTES`].
fn keep_startup_output(kept: &mut Vec<u8>, bytes: &[u8]) {
    let room = STARTUP_OUTPUT_BYTES.saturating_sub(kept.len());
    kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// The first lines a process printed before it failed to start, on one line, or a hint when it printed none.
fn startup_cause(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .take(5)
        .collect();
    if lines.is_empty() {
        "it printed nothing (see the function's log)".to_owned()
    } else {
        lines.join(" | ")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        tracing::debug!(instance = %self.id, pid = self.process.pid(), "stopped a function instance");
        if let Err(error) = std::fs::remove_dir_all(&self.dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove an instance directory");
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
        let mut in_use = lock(&self.code_in_use);
        if let Some(count) = in_use.get_mut(&self.code_dir) {
            *count -= 1;
            if *count == 0 {
                in_use.remove(&self.code_dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_again_through_the_open_files() {
        let mut status = ProcMemory::open(std::process::id() as i32);
        let (rss, peak) = status.memory_kb().expect("this process's memory");
        let resident = status.resident_kb().expect("statm");
        assert!(resident > 0, "statm says {resident} kB");
        assert!(rss > 0 && peak >= rss, "rss {rss} kB, peak {peak} kB");
        // Touch 64 MiB: the same handle reads the process as it is now, not as it was when opened.
        let touched = vec![1u8; 64 << 20];
        std::hint::black_box(&touched);
        let (later_rss, later_peak) = status.memory_kb().expect("read again");
        assert!(
            later_rss >= 64 * 1024,
            "rss {later_rss} kB while holding 64 MiB"
        );
        assert!(later_peak >= later_rss.max(peak), "peak {later_peak} kB");
        let later_resident = status.resident_kb().expect("statm again");
        assert!(
            later_resident >= 64 * 1024,
            "statm says {later_resident} kB while holding 64 MiB"
        );
    }

    #[test]
    fn statm_gives_its_second_field_in_pages() {
        assert_eq!(
            statm_resident_pages(b"6178 2319 1529 1 0 1094 0\n"),
            Some(2319)
        );
        assert_eq!(statm_resident_pages(b"6178\n"), None);
        assert_eq!(statm_resident_pages(b""), None);
    }

    #[test]
    fn status_fields_are_parsed_wherever_they_are() {
        let text = b"Name:\tpython3\nVmPeak:\t  20000 kB\nVmHWM:\t    9000 kB\nVmRSS:\t    8000 kB\nThreads:\t1\n";
        assert_eq!(status_memory_kb(text), Some((8000, 9000)));
        assert_eq!(status_memory_kb(b"Name:\tgone\n"), None);
    }
}
