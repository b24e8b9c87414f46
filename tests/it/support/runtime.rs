//! A real function runtime on port 0 (real SQLite, real pool with python3 / node) and a small signed client.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use chaintrigger::fcsign::{self, SignedParts};
use chaintrigger::runtime::auth::{AccessKey, Secret};
use chaintrigger::runtime::storage::FinishedAsyncEvent;
use chaintrigger::runtime::{Runtime, RuntimeConfig};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Access key id the signed tests use.
pub const KEY_ID: &str = "testAccessKeyId";
/// Access key secret the signed tests use.
pub const KEY_SECRET: &str = "testAccessKeySecret";

/// A private folder (mode 0700, root's when the tests run as root) under the temporary folder cargo gives
/// integration tests: every runtime the tests start keeps its data below one, as an operator's `/root` or a
/// fresh `mktemp -d` would, so handlers that work here work from any folder.
pub fn test_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory under cargo's temporary folder");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("make the test folder private");
    dir
}

/// The lines a function printed that start with `MARK ` (without that prefix), in the order its log has them:
/// handlers cannot write outside their sandbox, so the tests read what they did from the function's log.
pub fn marks(runtime: &Runtime, service: &str, function: &str) -> Vec<String> {
    let path = runtime.log_path(service, function);
    let mut text = String::new();
    let mut rotated = path.clone().into_os_string();
    rotated.push(".1");
    for file in [PathBuf::from(rotated), path] {
        if let Ok(part) = std::fs::read_to_string(&file) {
            text.push_str(&part);
        }
    }
    text.lines()
        .filter_map(|line| line.strip_prefix("MARK "))
        .map(str::to_owned)
        .collect()
}

/// Waits (bounded) until `function` has printed `MARK <mark>` (a line starting with it); true if it did.
pub async fn wait_for_mark(
    runtime: &Runtime,
    service: &str,
    function: &str,
    mark: &str,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if marks(runtime, service, function)
            .iter()
            .any(|line| line.starts_with(mark))
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Host pids of the live processes (zombies left out) whose command line contains `token`: how the tests find
/// what a handler started, from outside its PID namespace.
pub fn processes_with(token: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'));
            alive
                && cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == token.as_bytes())
        })
        .collect()
}

/// Waits (bounded) until no live process carries `token`; true if they all went.
pub async fn wait_until_gone(token: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while !processes_with(token).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Waits (bounded) until a process carries `token`; true if one did.
pub async fn wait_until_running(token: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while processes_with(token).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Prints why a test checks less than it could on this machine (the suite runs everywhere; what it cannot
/// prove here it says).
pub fn skipping(what: &str, why: &str) {
    println!("SKIPPED {what}: {why}");
    eprintln!("SKIPPED {what}: {why}");
}

/// A zip of the given files.
pub fn zip(files: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, contents) in files {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        writer.write_all(contents.as_bytes()).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

/// A running runtime and a client for it (its [`ApiClient`] methods are the runtime's: `rt.send(...)`).
pub struct TestRuntime {
    /// The in-process runtime (for its storage and `deploy`).
    pub runtime: Runtime,
    /// Signs requests when the runtime has a key.
    pub api: ApiClient,
    /// Stops the runtime (cancelled on drop too, so a failed test leaves no server behind).
    shutdown: CancellationToken,
    /// The runtime's `run`, awaited by `stop` to see it end cleanly.
    task: Option<tokio::task::JoinHandle<Result<(), chaintrigger::runtime::RuntimeError>>>,
}

impl std::ops::Deref for TestRuntime {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

/// A signed (or anonymous) client of one runtime.
pub struct ApiClient {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Signs requests when set.
    pub key: Option<(String, String)>,
    /// Keep-alive client.
    pub client: reqwest::Client,
}

/// One response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: reqwest::header::HeaderMap,
    /// Raw body.
    pub body: bytes::Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an API error: status, JSON content type, ErrorCode, request id; returns the message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{} {}", self.status, self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert!(self.header("x-fc-request-id").is_some());
        let body = self.json();
        assert_eq!(body["ErrorCode"], code, "{body}");
        body["ErrorMessage"]
            .as_str()
            .expect("ErrorMessage")
            .to_owned()
    }
}

impl TestRuntime {
    /// Starts an anonymous runtime with the given changes to the defaults.
    pub async fn start(data_dir: &Path, configure: impl FnOnce(&mut RuntimeConfig)) -> TestRuntime {
        chaintrigger::install_crypto_provider();
        let mut config = RuntimeConfig::new(data_dir);
        configure(&mut config);
        let key = config
            .access_key
            .as_ref()
            .map(|k| (k.id.clone(), k.secret.expose().to_owned()));
        let runtime = Runtime::open(config).await.expect("runtime opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let runtime = runtime.clone();
            let shutdown = shutdown.clone();
            async move { runtime.run(listener, shutdown).await }
        });
        TestRuntime {
            runtime,
            api: ApiClient {
                url,
                key,
                client: reqwest::Client::new(),
            },
            shutdown,
            task: Some(task),
        }
    }

    /// The configuration the signed tests use.
    pub fn signed(config: &mut RuntimeConfig) {
        config.access_key = Some(AccessKey {
            id: KEY_ID.into(),
            secret: Secret::new(KEY_SECRET),
        });
    }

    /// Stops the runtime and waits until it has stopped every handler.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("runtime task")
                .expect("runtime stops cleanly");
        }
    }

    /// A client of another runtime at `url` (a `chaintrigger` process), signing with the test key or not.
    pub fn client_for(url: &str, signed: bool) -> ApiClient {
        ApiClient {
            url: url.to_owned(),
            key: signed.then(|| (KEY_ID.to_owned(), KEY_SECRET.to_owned())),
            client: reqwest::Client::new(),
        }
    }

    /// A client of the runtime at `url` signing with this key.
    pub fn client_with_key(url: &str, id: &str, secret: &str) -> ApiClient {
        ApiClient {
            url: url.to_owned(),
            key: Some((id.to_owned(), secret.to_owned())),
            client: reqwest::Client::new(),
        }
    }

    /// Sends a JSON management request.
    pub async fn json(&self, method: &str, path: &str, body: Value) -> Reply {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        self.send(method, path, &[("content-type", "application/json")], bytes)
            .await
    }

    /// Creates a service; asserts success.
    pub async fn create_service(&self, name: &str) -> Value {
        let reply = self
            .json(
                "POST",
                "/2016-08-15/services",
                serde_json::json!({"serviceName": name, "description": null}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// Creates a function from files; asserts success.
    pub async fn create_function(
        &self,
        service: &str,
        function: &str,
        runtime: &str,
        files: &[(&str, &str)],
        extra: Value,
    ) -> Value {
        let mut body = serde_json::json!({
            "functionName": function,
            "runtime": runtime,
            "handler": "index.handler",
            "code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(zip(files))},
        });
        if let Value::Object(extra) = extra {
            body.as_object_mut().expect("object").extend(extra);
        }
        let reply = self
            .json(
                "POST",
                &format!("/2016-08-15/services/{service}/functions"),
                body,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// Invokes a function synchronously.
    pub async fn invoke(&self, service: &str, function: &str, payload: &str) -> Reply {
        self.send(
            "POST",
            &format!("/2016-08-15/services/{service}/functions/{function}/invocations"),
            &[("content-type", "application/octet-stream")],
            payload.as_bytes().to_vec(),
        )
        .await
    }

    /// Waits (bounded) until a function has `count` recorded async outcomes.
    pub async fn outcomes(
        &self,
        service: &str,
        function: &str,
        count: usize,
        within: Duration,
    ) -> Vec<FinishedAsyncEvent> {
        let deadline = Instant::now() + within;
        loop {
            let outcomes = self
                .runtime
                .storage()
                .outcomes(service, function)
                .expect("outcomes");
            if outcomes.len() >= count || Instant::now() > deadline {
                return outcomes;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl ApiClient {
    /// Sends a request (signed when the client has a key) and reads the whole response.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let (client, url, key) = (&self.client, &self.url, self.key.as_ref());
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !all.iter().any(|(k, _)| k.eq_ignore_ascii_case("date")) {
            all.push(("date".into(), date));
        }
        if let Some((id, secret)) = key
            && !all
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            let refs: Vec<(&str, &str)> =
                all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let signed_path = path.split('?').next().unwrap_or(path);
            let parts = SignedParts {
                method,
                headers: &refs,
                path: signed_path,
                queries: &[],
            };
            all.push((
                "authorization".into(),
                fcsign::authorization(id, secret, &parts),
            ));
        }
        let mut request = client
            .request(method.parse().expect("method"), format!("{url}{path}"))
            .body(body);
        for (k, v) in &all {
            request = request.header(k, v);
        }
        let response = request.send().await.expect("request reaches the runtime");
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("response body"),
        }
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The repository root.
fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the SDKs are installed: cargo's temporary folder for integration tests, wherever the target folder is.
fn sdk_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk")
}

/// Where the Python SDK is installed (`pip install --target`).
pub fn python_sdk_dir() -> PathBuf {
    sdk_root().join("python")
}

/// Where the Node.js SDK's `node_modules` are installed (`npm ci` in a copy of `tests/sdk/node`).
pub fn node_sdk_dir() -> PathBuf {
    sdk_root().join("node")
}

/// Runs an install command once for all test threads and processes: under an exclusive `flock`, and only when
/// `installed` is missing (checked again inside the lock).
fn install_once(installed: &Path, command: &mut std::process::Command) {
    if installed.exists() {
        return;
    }
    let root = sdk_root();
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| panic!("create the SDK folder {}: {e}", root.display()));
    let lock_path = root.join("install.lock");
    let lock = std::fs::File::create(&lock_path).unwrap_or_else(|e| {
        panic!(
            "create the SDK install lock file {}: {e}",
            lock_path.display()
        )
    });
    // SAFETY: flock on a file descriptor we own for the whole call; released when `lock` is dropped.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(locked, 0, "lock {}", lock_path.display());
    if installed.exists() {
        return;
    }
    let output = command.output().expect("run the SDK installer");
    assert!(
        output.status.success() && installed.exists(),
        "installing an SDK failed ({:?}):\n{}\n{}",
        command,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Installs aliyun-fc2 (pinned in tests/sdk/python/requirements.txt) into [`python_sdk_dir`] when missing.
pub fn install_python_sdk() {
    let target = python_sdk_dir();
    install_once(
        &target.join("fc2/__init__.py"),
        std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&target)
            .arg("-r")
            .arg(repository().join("tests/sdk/python/requirements.txt")),
    );
}

/// Installs @alicloud/fc2 (pinned by tests/sdk/node/package-lock.json) with `npm ci` into [`node_sdk_dir`]
/// when missing: the checkout itself is never written.
pub fn install_node_sdk() {
    let prefix = node_sdk_dir();
    std::fs::create_dir_all(&prefix).expect("the Node.js SDK folder");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(
            repository().join("tests/sdk/node").join(file),
            prefix.join(file),
        )
        .unwrap_or_else(|e| panic!("copy tests/sdk/node/{file}: {e}"));
    }
    install_once(
        &prefix.join("node_modules/@alicloud/fc2/package.json"),
        std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix),
    );
}

/// Runs one SDK test script against a signed runtime; panics with its output unless it exits with 0. The script
/// gets a scratch folder and the runtime's log folder (to see what async invocations did).
pub async fn run_sdk_script(rt: &TestRuntime, work_dir: &Path, program: &str, script: &str) {
    let log_dir = rt
        .runtime
        .log_path("s", "f")
        .parent()
        .and_then(Path::parent)
        .expect("the log folder")
        .to_owned();
    let mut command = tokio::process::Command::new(program);
    command
        .arg(repository().join(script))
        .env("SDK_TEST_ENDPOINT", &rt.url)
        .env("SDK_TEST_ACCESS_KEY_ID", KEY_ID)
        .env("SDK_TEST_ACCESS_KEY_SECRET", KEY_SECRET)
        .env("SDK_TEST_WORK_DIR", work_dir)
        .env("SDK_TEST_LOG_DIR", log_dir)
        .env("PYTHONPATH", python_sdk_dir())
        .env("NODE_PATH", node_sdk_dir().join("node_modules"))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 180 s"))
        .unwrap_or_else(|e| panic!("cannot run {program} {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("checks passed"),
        "{script} exited 0 without finishing:\n{stdout}"
    );
}
