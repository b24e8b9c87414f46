//! One handler process: spawning it under the sandbox, and running initializations and invocations on it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::time::Instant;

use super::logs::{FunctionLog, Tail};
use super::protocol::{self, Response};
use super::sandbox::{self, ChildSetup, Mounts};
use super::{
    ErrorType, FunctionSpec, Invocation, InvokeOutcome, InvokeRequest, Language, PoolError,
};

/// How often the resident memory of a running invocation is compared with its `memorySize`.
const MEMORY_CHECK_PERIOD: Duration = Duration::from_millis(50);

/// After the shim's response pipe closes, how long to wait for the process to exit and its log to end.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// The `PATH` handlers see: the system's, not the daemon's.
const HANDLER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What every instance of the pool shares: interpreters, shims, where instance directories go, the sandbox.
#[derive(Debug)]
pub struct Launcher {
    /// python3 interpreter.
    pub python: PathBuf,
    /// node interpreter.
    pub node: PathBuf,
    /// `shim/worker.py` as written to the data directory.
    pub python_shim: PathBuf,
    /// `shim/worker.js` as written to the data directory.
    pub node_shim: PathBuf,
    /// Parent of the per-instance writable directories.
    pub instances_dir: PathBuf,
    /// (uid, gid) handlers run as; `None` when the daemon is not root.
    pub run_as: Option<(u32, u32)>,
    /// RLIMIT_NOFILE of handlers.
    pub fd_limit: u64,
    /// RLIMIT_NPROC of handlers.
    pub nproc_limit: u64,
    /// Whether a mount namespace can be used (root and the probe succeeded).
    pub mount_namespace: bool,
    /// Whether the data directory lives outside `/tmp`, so `/tmp` can be replaced by the instance's directory.
    pub data_outside_tmp: bool,
    /// Live instances, for [`super::Pool::instance_count`]; each instance decrements it when dropped.
    pub live: Arc<AtomicUsize>,
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

/// A running handler process with its pipes.
#[derive(Debug)]
pub struct Instance {
    /// `FC_INSTANCE_ID`; also the name of its directory.
    pub id: String,
    /// The configuration generation it was started for; instances of an older one are not reused.
    pub generation: u64,
    /// When it last finished an invocation, for the idle reaper.
    pub last_used: Instant,
    /// The process id, also its process group id (the shim starts a session).
    pid: i32,
    /// Owns the process: killed on drop.
    child: tokio::process::Child,
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
    /// The instance's private writable directory (`TMPDIR`, or `/tmp` itself in a mount namespace).
    dir: PathBuf,
    /// The function's log file, shared with its other instances.
    log_file: Arc<Mutex<FunctionLog>>,
    /// Peak resident memory seen, in kB.
    peak_memory_kb: u64,
    /// Decremented on drop.
    live: Arc<AtomicUsize>,
}

fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
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

/// Resident and peak resident memory of a process in kB, from `/proc/<pid>/status`.
fn memory_kb(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The JSON the shim turns into `context`, and where to find the handler.
fn setup_json(spec: &FunctionSpec) -> Vec<u8> {
    let credentials = spec.credentials.as_ref();
    let version_id = if spec.qualifier.bytes().all(|b| b.is_ascii_digit()) {
        spec.qualifier.as_str()
    } else {
        ""
    };
    serde_json::json!({
        "codeDir": spec.code_dir,
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
    set("FC_FUNC_CODE_PATH", spec.code_dir.display().to_string());
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
        let spawn_error = |source: std::io::Error| PoolError::Spawn {
            interpreter: match spec.language {
                Language::Python3 => self.python.clone(),
                Language::Nodejs => self.node.clone(),
            },
            service: spec.service.clone(),
            function: spec.function.clone(),
            source,
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.instances_dir.join(&id);
        std::fs::create_dir(&dir).map_err(|source| PoolError::DataDir {
            path: dir.clone(),
            source,
        })?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|source| {
                PoolError::DataDir {
                    path: dir.clone(),
                    source,
                }
            })?;
        }
        let code_outside_tmp = !spec.code_dir.starts_with("/tmp");
        let private_tmp = self.mount_namespace && self.data_outside_tmp && code_outside_tmp;
        let visible_tmp = if private_tmp {
            PathBuf::from("/tmp")
        } else {
            dir.clone()
        };

        let (request_read, request_write) = pipe_pair().map_err(spawn_error)?;
        let (response_read, response_write) = pipe_pair().map_err(spawn_error)?;
        let (log_read, log_write) = pipe_pair().map_err(spawn_error)?;
        let setup = ChildSetup {
            request_fd: request_read.as_raw_fd(),
            response_fd: response_write.as_raw_fd(),
            fd_limit: self.fd_limit,
            nproc_limit: self.nproc_limit,
            run_as: self.run_as,
            mount_namespace: if self.mount_namespace {
                Some(Mounts {
                    code_dir: sandbox::c_path(&spec.code_dir).map_err(spawn_error)?,
                    private_tmp: if private_tmp {
                        Some(sandbox::c_path(&dir).map_err(spawn_error)?)
                    } else {
                        None
                    },
                })
            } else {
                None
            },
            code_dir: sandbox::c_path(&spec.code_dir).map_err(spawn_error)?,
        };

        let mut command = match spec.language {
            Language::Python3 => {
                let mut command = tokio::process::Command::new(&self.python);
                command.arg("-u").arg("-B").arg(&self.python_shim);
                command
            }
            Language::Nodejs => {
                let mut command = tokio::process::Command::new(&self.node);
                command
                    .arg(format!("--max-old-space-size={}", spec.memory_mb))
                    .arg(&self.node_shim);
                command
            }
        };
        command
            .env_clear()
            .envs(handler_environment(spec, &id, &visible_tmp))
            .current_dir(&spec.code_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_write.try_clone().map_err(spawn_error)?))
            .stderr(Stdio::from(log_write))
            .kill_on_drop(true);
        // SAFETY: `ChildSetup::apply` only makes async-signal-safe syscalls on data prepared before the fork.
        unsafe {
            command.pre_exec(move || setup.apply());
        }
        let child = command.spawn().map_err(spawn_error)?;
        drop(command);
        drop(request_read);
        drop(response_write);
        let pid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .ok_or_else(|| spawn_error(std::io::Error::other("the process ended at once")))?;
        self.live.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(
            service = %spec.service,
            function = %spec.function,
            runtime = %spec.runtime_name,
            instance = %id,
            pid,
            "started a function instance"
        );
        let mut instance = Instance {
            id,
            generation,
            last_used: Instant::now(),
            pid,
            child,
            requests: pipe::Sender::from_owned_fd(request_write).map_err(spawn_error)?,
            responses: pipe::Receiver::from_owned_fd(response_read).map_err(spawn_error)?,
            response_buf: BytesMut::with_capacity(8 * 1024),
            logs: pipe::Receiver::from_owned_fd(log_read).map_err(spawn_error)?,
            log_chunk: vec![0; 16 * 1024],
            logs_open: true,
            initialized: spec.initializer.is_none(),
            dir,
            log_file,
            peak_memory_kb: 0,
            live: self.live.clone(),
        };
        // A shim that died before reading its setup shows at the first invocation as an unexpected exit.
        let _ = instance
            .requests
            .write_all(&protocol::setup_frame(&setup_json(spec)))
            .await;
        Ok(instance)
    }
}

/// The log of one invocation as it is produced: its tail, the function's log file, and tracing.
struct InvocationLog<'a> {
    tail: Tail,
    file: &'a Mutex<FunctionLog>,
}

impl InvocationLog<'_> {
    fn push(&mut self, bytes: &[u8]) {
        self.tail.push(bytes);
        write_log(self.file, bytes);
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
    ) -> (Invocation, bool) {
        let log_file = self.log_file.clone();
        let mut log = InvocationLog {
            tail: Tail::default(),
            file: &log_file,
        };
        // Whatever the process printed between invocations belongs to no invocation: file only.
        self.drain_logs(&mut |bytes| write_log(&log_file, bytes));
        let started = Instant::now();
        let id = &request.request_id;

        let mut failure = None;
        if !self.initialized {
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
                let frame = protocol::invoke_frame(id, &request.payload);
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
            if let Some((_, peak)) = memory_kb(self.pid) {
                self.peak_memory_kb = self.peak_memory_kb.max(peak);
            }
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
        let invocation = Invocation {
            outcome,
            log_tail: request.log_tail.then(|| log.tail.text()),
            duration,
            max_memory_mb: (self.peak_memory_kb > 0).then(|| self.peak_memory_kb.div_ceil(1024)),
        };
        (invocation, reusable)
    }

    /// The error body for an initialization or invocation that did not succeed; the process is killed.
    fn failure_body(&mut self, ending: Ending, started: Instant, phase: Phase) -> Bytes {
        self.kill();
        let elapsed = started.elapsed().as_millis();
        let exited = |used_mb: u64| {
            error_json(format!(
                "Process exited unexpectedly before completing request (duration: {elapsed}ms, maxMemoryUsage: {used_mb}MB)"
            ))
        };
        match ending {
            Ending::Answered(
                Response::Unhandled(body) | Response::Handled(body) | Response::Fatal(body),
            ) => body,
            // Not a failure; callers handle success before asking for a failure body.
            Ending::Answered(Response::Success(_)) | Ending::Exited => {
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
        let deadline = Instant::now() + timeout;
        let ending = tokio::select! {
            ending = self.exchange_inner(frame, spec, log) => ending,
            () = tokio::time::sleep_until(deadline) => Ending::TimedOut,
        };
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
        log: &mut InvocationLog<'_>,
    ) -> Ending {
        if self.requests.write_all(frame).await.is_err() {
            return Ending::Exited;
        }
        let limit_kb = u64::from(spec.memory_mb) * 1024;
        let mut memory_check =
            tokio::time::interval_at(Instant::now() + MEMORY_CHECK_PERIOD, MEMORY_CHECK_PERIOD);
        loop {
            match protocol::take_response(&mut self.response_buf) {
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
                _ = self.child.wait() => {
                    self.read_pending_responses();
                    return match protocol::take_response(&mut self.response_buf) {
                        Ok(Some(response)) => Ending::Answered(response),
                        Ok(None) => Ending::Exited,
                        Err(error) => Ending::Broken(error),
                    };
                },
                read = self.logs.read(&mut self.log_chunk), if self.logs_open => match read {
                    Ok(0) | Err(_) => self.logs_open = false,
                    Ok(n) => log.push(&self.log_chunk[..n]),
                },
                _ = memory_check.tick() => {
                    if let Some((rss, peak)) = memory_kb(self.pid) {
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
                n if n > 0 => sink(&self.log_chunk[..n.unsigned_abs()]),
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
        let _ = tokio::time::timeout(EXIT_GRACE, self.child.wait()).await;
        let _ = tokio::time::timeout(EXIT_GRACE, async {
            while self.logs_open {
                match self.logs.read(&mut self.log_chunk).await {
                    Ok(0) | Err(_) => self.logs_open = false,
                    Ok(n) => log.push(&self.log_chunk[..n]),
                }
            }
        })
        .await;
    }

    /// Whether the process already ended (an uncaught error while idle, an external kill).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process and everything it started (its process group).
    fn kill(&mut self) {
        // SAFETY: kill has no memory preconditions; the group id is our child's own session.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        tracing::debug!(instance = %self.id, pid = self.pid, "stopped a function instance");
        if let Err(error) = std::fs::remove_dir_all(&self.dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove an instance directory");
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}
