//! The function runtime's worker pool with real python3 and node processes running the handlers in
//! `fixtures/functions/`, as Function Compute would run them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chaintrigger::runtime::pool::{
    Credentials, ErrorType, FunctionSpec, Invocation, InvokeOutcome, InvokeRequest, Language,
    Namespaces, Pool, PoolConfig, PoolError, remove_code_dir,
};
use serde_json::Value;

use crate::support::runtime::{
    processes_with, skipping, test_dir, wait_until_gone, wait_until_running,
};

/// A pool over its own data directory, and a copy of the fixture code (the pool makes code read-only).
struct Harness {
    pool: Pool,
    code: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(language: Language) -> Self {
        Self::with_idle_timeout(language, Duration::from_secs(3600))
    }

    fn with_idle_timeout(language: Language, idle_timeout: Duration) -> Self {
        Self::with_config(language, |config| config.idle_timeout = idle_timeout)
            .expect("pool starts")
    }

    /// A pool over a data folder inside a private (0700) test folder, configured by `configure`.
    fn with_config(
        language: Language,
        configure: impl FnOnce(&mut PoolConfig),
    ) -> Result<Self, PoolError> {
        let dir = test_dir("pool-");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/functions")
            .join(match language {
                Language::Python3 => "python",
                Language::Nodejs => "node",
                Language::Java => unreachable!("Java functions are tested in runtime_java"),
            });
        let code = dir.path().join("code");
        std::fs::create_dir(&code).expect("code directory");
        for entry in std::fs::read_dir(&fixture).expect("fixture directory") {
            let entry = entry.expect("fixture entry");
            std::fs::copy(entry.path(), code.join(entry.file_name())).expect("copy a fixture");
        }
        let mut config = PoolConfig::new(dir.path().join("data"));
        config.idle_timeout = Duration::from_secs(3600);
        configure(&mut config);
        let pool = Pool::new(config)?;
        Ok(Harness {
            pool,
            code,
            _dir: dir,
        })
    }

    /// `FC_FUNC_CODE_PATH` as handlers see it: `/code` in the sandbox, else the real path.
    fn visible_code(&self) -> String {
        if self.pool.isolation().private_code() {
            "/code".to_owned()
        } else {
            self.code.display().to_string()
        }
    }

    /// Whether every process of an instance lives in its PID namespace here.
    fn pid_namespace(&self) -> bool {
        self.pool.isolation().namespaces != Namespaces::None
    }

    fn spec(&self, language: Language, function: &str, handler: &str) -> FunctionSpec {
        FunctionSpec {
            service: "svc".to_owned(),
            function: function.to_owned(),
            qualifier: "LATEST".to_owned(),
            language,
            runtime_name: match language {
                Language::Python3 => "python3.10".to_owned(),
                Language::Nodejs => "nodejs20".to_owned(),
                Language::Java => "java8".to_owned(),
            },
            handler: handler.to_owned(),
            initializer: None,
            initialization_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            memory_mb: 128,
            environment: BTreeMap::new(),
            code_dir: self.code.clone(),
            code_checksum: "1".to_owned(),
            account_id: "1234567890123456".to_owned(),
            region: "cn-hangzhou".to_owned(),
            log_project: String::new(),
            log_store: String::new(),
            credentials: None,
        }
    }

    async fn call(&self, spec: &FunctionSpec, payload: &'static [u8]) -> Invocation {
        self.call_as(spec, "req-1", payload).await
    }

    async fn call_as(
        &self,
        spec: &FunctionSpec,
        request_id: &str,
        payload: &'static [u8],
    ) -> Invocation {
        self.pool
            .invoke(
                spec,
                InvokeRequest {
                    request_id: request_id.to_owned(),
                    payload: Bytes::from_static(payload),
                    log_tail: true,
                },
            )
            .await
            .expect("the pool runs the invocation")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Not root, the pool leaves the code read-only (0555 directories) and the temporary directory could not
        // be removed.
        let _ = remove_code_dir(&self.code);
    }
}

fn body(invocation: &Invocation) -> &[u8] {
    match &invocation.outcome {
        InvokeOutcome::Success { body } => body,
        InvokeOutcome::FunctionError { error_type, body } => panic!(
            "expected success, got {error_type:?} {}\nlog:\n{}",
            String::from_utf8_lossy(body),
            invocation.log_tail.as_deref().unwrap_or("")
        ),
    }
}

fn text(invocation: &Invocation) -> String {
    String::from_utf8(body(invocation).to_vec()).expect("UTF-8 body")
}

fn json(invocation: &Invocation) -> Value {
    serde_json::from_slice(body(invocation)).expect("JSON body")
}

fn error(invocation: &Invocation) -> (ErrorType, Value) {
    match &invocation.outcome {
        InvokeOutcome::FunctionError { error_type, body } => (
            *error_type,
            serde_json::from_slice(body).expect("error bodies are JSON"),
        ),
        InvokeOutcome::Success { body } => {
            panic!(
                "expected a function error, got {}",
                String::from_utf8_lossy(body)
            )
        }
    }
}

fn log(invocation: &Invocation) -> &str {
    invocation
        .log_tail
        .as_deref()
        .expect("the log tail was asked for")
}

/// `<ISO 8601 UTC with ms>Z <request id> [<level>] <message>`.
fn assert_log_line(log: &str, request_id: &str, level: &str, message: &str) {
    let found = log.lines().any(|line| {
        let mut parts = line.splitn(2, ' ');
        let (Some(time), Some(rest)) = (parts.next(), parts.next()) else {
            return false;
        };
        time.len() == 24
            && time.ends_with('Z')
            && chrono::DateTime::parse_from_rfc3339(time).is_ok()
            && rest == format!("{request_id} [{level}] {message}")
    });
    assert!(
        found,
        "no '{request_id} [{level}] {message}' line with an ISO time in:\n{log}"
    );
}

#[tokio::test]
async fn python_event_is_bytes_and_return_values_are_converted() {
    let h = Harness::new(Language::Python3);
    let py = Language::Python3;
    let echoed = h
        .call(&h.spec(py, "echo", "index.echo"), br#"{"k":[1,"v"]}"#)
        .await;
    assert_eq!(
        json(&echoed),
        serde_json::json!({"type": "bytes", "event": {"k": [1, "v"]}})
    );
    let cases: [(&str, &[u8]); 5] = [
        ("index.return_bytes", b"\x00\x01raw\xff"),
        ("index.return_str", "h\u{e9}llo".as_bytes()),
        ("index.return_dict", br#"{"a": [1, 2], "b": null}"#),
        ("index.return_int", b"42"),
        ("index.return_none", b""),
    ];
    for (handler, expected) in cases {
        let function = handler.trim_start_matches("index.").replace('_', "-");
        let invocation = h.call(&h.spec(py, &function, handler), b"").await;
        assert_eq!(body(&invocation), expected, "{handler}");
    }
}

#[tokio::test]
async fn python_exception_is_an_unhandled_error_with_a_stack_trace() {
    let h = Harness::new(Language::Python3);
    let invocation = h
        .call(&h.spec(Language::Python3, "fail", "index.fail"), b"oops")
        .await;
    let (error_type, body) = error(&invocation);
    assert_eq!(error_type, ErrorType::Unhandled);
    assert_eq!(body["errorMessage"], "bad event: oops");
    assert_eq!(body["errorType"], "ValueError");
    let stack = body["stackTrace"].as_array().expect("stackTrace is a list");
    let last = stack
        .last()
        .and_then(Value::as_array)
        .expect("frames are lists");
    assert_eq!(last.len(), 4);
    assert!(
        last[0]
            .as_str()
            .is_some_and(|f| f.starts_with("File \"") && f.ends_with("index.py\""))
    );
    assert!(last[1].as_str().is_some_and(|l| l.starts_with("line ")));
    assert_eq!(last[2], "in fail");
    assert_eq!(
        last[3],
        "raise ValueError(\"bad event: \" + event.decode())"
    );
    assert!(log(&invocation).contains("ValueError: bad event: oops"));
    // The instance survives a handled exception.
    let again = h
        .call(&h.spec(Language::Python3, "fail", "index.fail"), b"again")
        .await;
    assert_eq!(error(&again).1["errorMessage"], "bad event: again");
    assert_eq!(h.pool.instance_count(), 1);
}

#[tokio::test]
async fn python_logging_formats_and_invocation_boundaries() {
    let h = Harness::new(Language::Python3);
    let spec = h.spec(Language::Python3, "logs", "index.logs");
    let invocation = h.call_as(&spec, "rid-42", b"").await;
    assert_eq!(text(&invocation), "logged");
    let log = log(&invocation);
    assert!(
        log.starts_with("FC Invoke Start RequestId: rid-42\n"),
        "{log}"
    );
    assert!(log.ends_with("FC Invoke End RequestId: rid-42\n"), "{log}");
    assert!(log.lines().any(|line| line == "plain print"), "{log}");
    assert_log_line(log, "rid-42", "INFO", "via logging");
    assert_log_line(log, "rid-42", "WARNING", "a warning");
    // context.getLogger(): `2022-07-13 10:26:02 <request id> [INFO] message`.
    let context_line = log
        .lines()
        .find(|line| line.ends_with(" rid-42 [ERROR] from the context logger"))
        .unwrap_or_else(|| panic!("no context logger line in:\n{log}"));
    assert!(
        chrono::NaiveDateTime::parse_from_str(&context_line[..19], "%Y-%m-%d %H:%M:%S").is_ok(),
        "{context_line}"
    );
    let file = std::fs::read_to_string(h.pool.log_path("svc", "logs")).expect("function log file");
    assert!(file.contains("plain print\n") && file.contains("FC Invoke End RequestId: rid-42"));
    // Without Tail, no log comes back.
    let quiet = h
        .pool
        .invoke(
            &spec,
            InvokeRequest {
                request_id: "rid-43".to_owned(),
                payload: Bytes::new(),
                log_tail: false,
            },
        )
        .await
        .expect("invocation");
    assert_eq!(quiet.log_tail, None);
}

#[tokio::test]
async fn python_initializer_runs_once_per_instance() {
    let h = Harness::new(Language::Python3);
    let mut spec = h.spec(Language::Python3, "counter", "index.count");
    spec.initializer = Some("index.initializer".to_owned());
    let first = h.call_as(&spec, "first", b"").await;
    assert_eq!(text(&first), "2");
    assert!(log(&first).starts_with(
        "FC Initialize Start RequestId: first\nFC Initialize End RequestId: first\nFC Invoke Start RequestId: first\n"
    ));
    let second = h.call_as(&spec, "second", b"").await;
    assert_eq!(text(&second), "3");
    assert!(!log(&second).contains("Initialize"));
}

#[tokio::test]
async fn failing_initializer_is_reported_and_retried_on_a_fresh_instance() {
    let h = Harness::new(Language::Python3);
    let mut spec = h.spec(Language::Python3, "bad-init", "index.instance");
    spec.initializer = Some("index.failing_initializer".to_owned());
    for _ in 0..2 {
        let (error_type, body) = error(&h.call(&spec, b"").await);
        assert_eq!(error_type, ErrorType::Unhandled);
        assert_eq!(body["errorType"], "RuntimeError");
        assert_eq!(body["errorMessage"], "initializer failed");
    }
    assert_eq!(h.pool.instance_count(), 0);
}

#[tokio::test]
async fn timeout_kills_the_instance_and_the_next_call_gets_a_fresh_one() {
    let h = Harness::new(Language::Python3);
    let mut spec = h.spec(Language::Python3, "hang", "index.hang_on_request");
    spec.timeout = Duration::from_secs(1);
    let warm = text(&h.call(&spec, b"").await);
    let timed_out = h.call(&spec, b"hang").await;
    let (error_type, body) = error(&timed_out);
    assert_eq!(error_type, ErrorType::Unhandled);
    assert_eq!(
        body,
        serde_json::json!({"errorMessage": "Function timed out after 1 seconds"})
    );
    assert!(log(&timed_out).contains("going to sleep\n"));
    assert!(log(&timed_out).ends_with("FC Invoke End RequestId: req-1\n"));
    assert_eq!(h.pool.instance_count(), 0);
    let fresh = text(&h.call(&spec, b"").await);
    assert_ne!(warm, fresh);
}

#[tokio::test]
async fn python_exit_is_reported_as_an_unexpected_exit() {
    let h = Harness::new(Language::Python3);
    let spec = h.spec(Language::Python3, "exit", "index.exit_on_request");
    for event in [&b"sys.exit"[..], b"os._exit"] {
        let invocation = h.pool.invoke(
            &spec,
            InvokeRequest {
                request_id: "req".to_owned(),
                payload: Bytes::copy_from_slice(event),
                log_tail: true,
            },
        );
        let (error_type, body) = error(&invocation.await.expect("invocation"));
        assert_eq!(error_type, ErrorType::Unhandled);
        let message = body["errorMessage"].as_str().expect("errorMessage");
        assert!(
            message
                .starts_with("Process exited unexpectedly before completing request (duration: ")
                && message.contains("ms, maxMemoryUsage: ")
                && message.ends_with("MB)"),
            "{message}"
        );
        assert_eq!(body.as_object().map(|o| o.len()), Some(1));
    }
    assert!(!text(&h.call(&spec, b"").await).is_empty());
}

#[tokio::test]
async fn memory_over_memory_size_stops_the_instance() {
    let h = Harness::new(Language::Python3);
    let spec = h.spec(Language::Python3, "hog", "index.allocate");
    let invocation = h.call(&spec, b"300").await;
    let (error_type, body) = error(&invocation);
    assert_eq!(error_type, ErrorType::Unhandled);
    let message = body["errorMessage"].as_str().expect("errorMessage");
    assert!(
        message.starts_with("Process exited unexpectedly before completing request"),
        "{message}"
    );
    assert!(log(&invocation).contains("more than its memorySize of 128 MB"));
    assert_eq!(h.pool.instance_count(), 0);
}

#[tokio::test]
async fn peak_memory_keeps_a_burst_freed_before_the_answer() {
    let h = Harness::new(Language::Python3);
    let spec = h.spec(Language::Python3, "burst", "index.burst");
    let quiet = h.call(&spec, b"0").await;
    let before = quiet.max_memory_mb.expect("the peak of a started instance");
    // 64 MB touched and freed: the resident size at the end is back to where it was, the peak is not.
    let burst = h.call(&spec, b"64").await;
    assert_eq!(text(&burst), "freed");
    let peak = burst.max_memory_mb.expect("the peak after the burst");
    assert!(
        peak >= before + 60,
        "peak {peak} MB after a 64 MB burst, {before} MB before"
    );
    // Calls afterwards (the short ones read only the resident size) never lower the instance's figure.
    for _ in 0..3 {
        let after = h.call(&spec, b"0").await;
        assert_eq!(after.max_memory_mb, Some(peak));
    }
}

#[tokio::test]
async fn python_environment_and_context() {
    let h = Harness::new(Language::Python3);
    let mut spec = h.spec(Language::Python3, "env", "index.environment");
    spec.environment = BTreeMap::from([
        ("GREETING".to_owned(), "hi".to_owned()),
        ("FC_FUNCTION_NAME".to_owned(), "spoofed".to_owned()),
    ]);
    spec.credentials = Some(Credentials {
        access_key_id: "STS.id".to_owned(),
        access_key_secret: "secret".to_owned(),
        security_token: Some("token".to_owned()),
    });
    spec.initializer = Some("index.initializer".to_owned());
    let result = json(&h.call_as(&spec, "ctx-1", b"").await);
    let env = &result["env"];
    assert_eq!(env["FC_FUNC_CODE_PATH"], h.visible_code());
    assert_eq!(result["cwd"], h.visible_code());
    assert_eq!(env["FC_FUNCTION_HANDLER"], "index.environment");
    assert_eq!(env["FC_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(env["FC_FUNCTION_NAME"], "env");
    assert_eq!(env["FC_SERVICE_NAME"], "svc");
    assert_eq!(env["FC_REGION"], "cn-hangzhou");
    assert_eq!(env["FC_ACCOUNT_ID"], "1234567890123456");
    assert_eq!(env["FC_QUALIFIER"], "LATEST");
    assert!(
        env["FC_INSTANCE_ID"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(env["ALIBABA_CLOUD_ACCESS_KEY_ID"], "STS.id");
    assert_eq!(env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"], "secret");
    assert_eq!(env["ALIBABA_CLOUD_SECURITY_TOKEN"], "token");
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    assert_eq!(env["HOME"], env["TMPDIR"]);
    assert!(
        env.get("CARGO_MANIFEST_DIR").is_none(),
        "the daemon's environment leaked"
    );
    let context = &result["context"];
    assert_eq!(
        context,
        &serde_json::json!({
            "request_id": "ctx-1",
            "credentials": {"access_key_id": "STS.id", "access_key_secret": "secret", "security_token": "token"},
            "function": {"name": "env", "handler": "index.environment", "memory": 128, "timeout": 5,
                         "initializer": "index.initializer", "initialization_timeout": 1},
            "service": {"name": "svc", "log_project": "", "log_store": "", "qualifier": "LATEST", "version_id": ""},
            "region": "cn-hangzhou",
            "account_id": "1234567890123456",
        })
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_ne!(result["uid"], 0, "handlers must not run as root");
    }
    // The handler changed its context after reading it: the next call on the same instance gets a fresh one.
    let again = json(&h.call_as(&spec, "ctx-2", b"").await);
    assert_eq!(again["env"]["FC_INSTANCE_ID"], env["FC_INSTANCE_ID"]);
    let mut expected = context.clone();
    expected["request_id"] = "ctx-2".into();
    assert_eq!(again["context"], expected);
    assert_eq!(again["baggages_before"], 0);
}

#[tokio::test]
async fn python_code_is_read_only_and_tmp_is_writable() {
    let h = Harness::new(Language::Python3);
    let result = json(
        &h.call(&h.spec(Language::Python3, "fs", "index.filesystem"), b"")
            .await,
    );
    assert_ne!(result["code_new_file"], "written");
    assert_ne!(result["code_existing_file"], "written");
    assert_eq!(result["tmpdir"], "written");
    assert_eq!(result["slash_tmp"], "written");
    assert!(
        std::fs::read_to_string(h.code.join("index.py"))
            .is_ok_and(|code| code.contains("def filesystem"))
    );
}

#[tokio::test]
async fn warm_instances_are_reused_and_the_pool_grows_under_concurrency() {
    let h = Harness::new(Language::Python3);
    let spec = h.spec(Language::Python3, "slow", "index.slow_instance");
    let first = text(&h.call(&spec, b"").await);
    let second = text(&h.call(&spec, b"").await);
    assert_eq!(first, second, "a warm instance serves the next call");
    let (a, b) = tokio::join!(h.call(&spec, b""), h.call(&spec, b""));
    let (a, b) = (text(&a), text(&b));
    assert_ne!(a, b, "concurrent calls run on different instances");
    assert!(a == first || b == first);
    assert_eq!(h.pool.instance_count(), 2);
}

#[tokio::test]
async fn code_checksum_change_replaces_instances() {
    let h = Harness::new(Language::Python3);
    let mut spec = h.spec(Language::Python3, "versioned", "index.instance");
    let old = text(&h.call(&spec, b"").await);
    spec.code_checksum = "2".to_owned();
    let new = text(&h.call(&spec, b"").await);
    assert_ne!(old, new);
    assert_eq!(h.pool.instance_count(), 1);
    assert_eq!(text(&h.call(&spec, b"").await), new);
    h.pool.evict("svc", "versioned").await;
    assert_eq!(h.pool.instance_count(), 0);
}

#[tokio::test]
async fn idle_instances_are_reaped() {
    let h = Harness::with_idle_timeout(Language::Python3, Duration::from_secs(300));
    let spec = h.spec(Language::Python3, "idle", "index.instance");
    text(&h.call(&spec, b"").await);
    assert_eq!(h.pool.instance_count(), 1);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(299)).await;
    h.pool.reap_idle().await;
    assert_eq!(h.pool.instance_count(), 1, "not idle long enough yet");
    tokio::time::advance(Duration::from_secs(2)).await;
    h.pool.reap_idle().await;
    assert_eq!(h.pool.instance_count(), 0);
}

#[tokio::test]
async fn shutdown_stops_instances_and_refuses_calls() {
    let h = Harness::new(Language::Python3);
    let spec = h.spec(Language::Python3, "pid", "index.instance");
    text(&h.call(&spec, b"").await);
    h.pool.shutdown().await;
    assert_eq!(h.pool.instance_count(), 0);
    let refused = h
        .pool
        .invoke(
            &spec,
            InvokeRequest {
                request_id: "late".to_owned(),
                payload: Bytes::new(),
                log_tail: false,
            },
        )
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn node_event_is_a_buffer_and_results_are_converted() {
    let h = Harness::new(Language::Nodejs);
    let js = Language::Nodejs;
    let echoed = h
        .call(&h.spec(js, "echo", "index.echo"), br#"{"k":"v"}"#)
        .await;
    assert_eq!(
        json(&echoed),
        serde_json::json!({"isBuffer": true, "event": {"k": "v"}})
    );
    let cases: [(&str, &[u8]); 6] = [
        ("index.returnBuffer", b"\x00\x01\xff"),
        ("index.returnObject", br#"{"a":[1,2]}"#),
        ("index.returnNumber", b"42"),
        ("index.returnString", "h\u{e9}llo".as_bytes()),
        ("index.firstCallbackWins", b"first"),
        ("index.asyncResult", b"async ping"),
    ];
    for (handler, expected) in cases {
        let function = handler.trim_start_matches("index.");
        let invocation = h.call(&h.spec(js, function, handler), b"ping").await;
        assert_eq!(body(&invocation), expected, "{handler}");
    }
}

#[tokio::test]
async fn node_errors_handled_and_unhandled() {
    let h = Harness::new(Language::Nodejs);
    let js = Language::Nodejs;
    let (error_type, handled) = error(
        &h.call(&h.spec(js, "handled", "index.handledError"), b"")
            .await,
    );
    assert_eq!(error_type, ErrorType::Handled);
    assert_eq!(handled["errorMessage"], "oops");
    assert_eq!(handled["errorType"], "Error");
    let stack = handled["stackTrace"]
        .as_array()
        .expect("stackTrace is a list of strings");
    assert_eq!(stack[0], "Error: oops");
    assert!(
        stack[1]
            .as_str()
            .is_some_and(|frame| frame.trim_start().starts_with("at "))
    );

    let (error_type, string) = error(
        &h.call(&h.spec(js, "string", "index.handledString"), b"")
            .await,
    );
    assert_eq!(error_type, ErrorType::Handled);
    assert_eq!(string, serde_json::json!({"errorMessage": "just a string"}));

    let (error_type, thrown) = error(&h.call(&h.spec(js, "thrown", "index.thrown"), b"").await);
    assert_eq!(error_type, ErrorType::Unhandled);
    assert_eq!(thrown["errorMessage"], "boom");
    assert_eq!(thrown["errorType"], "TypeError");

    let (error_type, rejected) = error(
        &h.call(&h.spec(js, "rejected", "index.asyncReject"), b"")
            .await,
    );
    assert_eq!(error_type, ErrorType::Unhandled);
    assert_eq!(rejected["errorMessage"], "rejected");

    let uncaught = h.spec(js, "uncaught", "index.uncaughtLater");
    let (error_type, later) = error(&h.call(&uncaught, b"").await);
    assert_eq!(error_type, ErrorType::Unhandled);
    assert_eq!(later["errorMessage"], "thrown from a timer");
    assert_eq!(
        h.pool.instance_count(),
        4,
        "the instance with an uncaught exception is not kept"
    );
}

#[tokio::test]
async fn node_missing_callback_times_out_and_exit_is_unexpected() {
    let h = Harness::new(Language::Nodejs);
    let mut hang = h.spec(Language::Nodejs, "hang", "index.hangOnRequest");
    hang.timeout = Duration::from_secs(1);
    let warm = text(&h.call(&hang, b"").await);
    let timed_out = h.call(&hang, b"hang").await;
    assert_eq!(
        error(&timed_out),
        (
            ErrorType::Unhandled,
            serde_json::json!({"errorMessage": "Function timed out after 1 seconds"})
        )
    );
    assert_log_line(log(&timed_out), "req-1", "verbose", "never calling back");
    assert_ne!(text(&h.call(&hang, b"").await), warm);

    let exit = h.spec(Language::Nodejs, "exit", "index.exitOnRequest");
    let (error_type, body) = error(&h.call(&exit, b"exit").await);
    assert_eq!(error_type, ErrorType::Unhandled);
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|m| m
                .starts_with("Process exited unexpectedly before completing request (duration: ")),
        "{body}"
    );
    assert!(!text(&h.call(&exit, b"").await).is_empty());
}

#[tokio::test]
async fn node_console_levels_and_set_log_level() {
    let h = Harness::new(Language::Nodejs);
    let invocation = h
        .call_as(
            &h.spec(Language::Nodejs, "logs", "index.logs"),
            "rid-7",
            b"",
        )
        .await;
    assert_eq!(text(&invocation), "logged");
    let log = log(&invocation);
    assert_log_line(log, "rid-7", "verbose", "log line");
    assert_log_line(log, "rid-7", "info", "info line");
    assert_log_line(log, "rid-7", "debug", "debug line");
    assert_log_line(log, "rid-7", "warn", "warn line");
    assert_log_line(log, "rid-7", "error", "error line { n: 1 }");
    assert!(!log.contains("filtered out"), "{log}");
    assert!(log.lines().any(|line| line == "raw write"));
    assert!(log.starts_with("FC Invoke Start RequestId: rid-7\n"));
    assert!(log.ends_with("FC Invoke End RequestId: rid-7\n"));
}

#[tokio::test]
async fn node_initializer_environment_and_filesystem() {
    let h = Harness::new(Language::Nodejs);
    let mut counter = h.spec(Language::Nodejs, "counter", "index.count");
    counter.initializer = Some("index.initializer".to_owned());
    assert_eq!(text(&h.call(&counter, b"").await), "2");
    assert_eq!(text(&h.call(&counter, b"").await), "3");

    let mut bad_init = h.spec(Language::Nodejs, "bad-init", "index.instance");
    bad_init.initializer = Some("index.failingInitializer".to_owned());
    let (error_type, body) = error(&h.call(&bad_init, b"").await);
    assert_eq!(error_type, ErrorType::Unhandled);
    assert_eq!(body["errorMessage"], "initializer failed");

    let mut env_spec = h.spec(Language::Nodejs, "env", "index.environment");
    env_spec.credentials = Some(Credentials {
        access_key_id: "id".to_owned(),
        access_key_secret: "secret".to_owned(),
        security_token: None,
    });
    env_spec.environment =
        BTreeMap::from([("PATH".to_owned(), "/opt/tools/bin:/usr/bin:/bin".to_owned())]);
    let result = json(&h.call_as(&env_spec, "ctx-2", b"").await);
    assert_eq!(
        result["env"]["PATH"], "/opt/tools/bin:/usr/bin:/bin",
        "a function may set its PATH"
    );
    assert_eq!(result["env"]["FC_FUNCTION_NAME"], "env");
    assert_eq!(result["env"]["FC_FUNC_CODE_PATH"], h.visible_code());
    assert!(result["env"].get("ALIBABA_CLOUD_SECURITY_TOKEN").is_none());
    assert_eq!(
        result["context"],
        serde_json::json!({
            "requestId": "ctx-2",
            "credentials": {"accessKeyId": "id", "accessKeySecret": "secret", "securityToken": ""},
            "function": {"name": "env", "handler": "index.environment", "memory": 128, "timeout": 5,
                         "initializer": null, "initializationTimeout": 1},
            "service": {"name": "svc", "logProject": "", "logStore": "", "qualifier": "LATEST", "versionId": ""},
            "region": "cn-hangzhou",
            "accountId": "1234567890123456",
        })
    );

    let fs = json(
        &h.call(&h.spec(Language::Nodejs, "fs", "index.filesystem"), b"")
            .await,
    );
    assert_ne!(fs["code_new_file"], "written");
    assert_ne!(fs["code_existing_file"], "written");
    assert_eq!(fs["tmpdir"], "written");
    assert_eq!(fs["slash_tmp"], "written");
}

#[tokio::test]
async fn initializer_timeout_is_reported_and_the_instance_replaced() {
    let h = Harness::new(Language::Python3);
    let mut spec = h.spec(Language::Python3, "slow-init", "index.instance");
    spec.initializer = Some("index.slow_initializer".to_owned());
    let invocation = h.call(&spec, b"").await;
    assert_eq!(
        error(&invocation),
        (
            ErrorType::Unhandled,
            serde_json::json!({"errorMessage": "Function initialization timed out after 1 seconds"})
        )
    );
    assert_eq!(h.pool.instance_count(), 0);
}

#[tokio::test]
async fn large_events_responses_and_logs_pass_through() {
    let h = Harness::new(Language::Python3);
    let big_event = vec![b'e'; 5 * 1024 * 1024];
    let length = h
        .pool
        .invoke(
            &h.spec(Language::Python3, "length", "index.length"),
            InvokeRequest {
                request_id: "big".to_owned(),
                payload: Bytes::from(big_event),
                log_tail: false,
            },
        )
        .await
        .expect("invocation");
    assert_eq!(text(&length), (5 * 1024 * 1024).to_string());

    let response = h
        .call(
            &h.spec(Language::Python3, "big-response", "index.big_response"),
            b"3",
        )
        .await;
    assert_eq!(body(&response).len(), 3 * 1024 * 1024);

    // 1 MB of output: far more than a pipe holds, so the log must be read while the handler runs.
    let chatty = h
        .call(
            &h.spec(Language::Python3, "chatty", "index.chatty"),
            b"10000",
        )
        .await;
    assert_eq!(text(&chatty), "done");
    let tail = log(&chatty);
    assert!(tail.len() <= 4096);
    assert!(
        tail.ends_with("last line\nFC Invoke End RequestId: req-1\n"),
        "{tail}"
    );
    let file = std::fs::read_to_string(h.pool.log_path("svc", "chatty")).expect("log file");
    assert_eq!(file.lines().filter(|line| line.len() == 99).count(), 10000);
}

#[tokio::test]
async fn handler_load_failures_are_function_errors() {
    let h = Harness::new(Language::Python3);
    let (error_type, missing_module) = error(
        &h.call(
            &h.spec(Language::Python3, "no-module", "nothing.handler"),
            b"",
        )
        .await,
    );
    assert_eq!(error_type, ErrorType::Unhandled);
    assert_eq!(missing_module["errorType"], "ModuleNotFoundError");
    let (_, missing_function) = error(
        &h.call(
            &h.spec(Language::Python3, "no-function", "index.nothing"),
            b"",
        )
        .await,
    );
    assert_eq!(missing_function["errorType"], "AttributeError");
    let (_, bad_import) = error(
        &h.call(
            &h.spec(
                Language::Python3,
                "bad-import",
                "index.missing_handler_module",
            ),
            b"",
        )
        .await,
    );
    assert_eq!(
        bad_import["errorMessage"],
        "No module named 'module_that_does_not_exist'"
    );

    let node = Harness::new(Language::Nodejs);
    let (error_type, syntax) = error(
        &node
            .call(
                &node.spec(Language::Nodejs, "broken", "broken.handler"),
                b"",
            )
            .await,
    );
    assert_eq!(error_type, ErrorType::Unhandled);
    assert_eq!(syntax["errorType"], "SyntaxError");
}

#[tokio::test]
async fn an_abandoned_invocation_stops_its_instance() {
    let h = Harness::new(Language::Python3);
    let spec = h.spec(Language::Python3, "abandoned", "index.hang_on_request");
    text(&h.call(&spec, b"").await);
    let abandoned = tokio::time::timeout(Duration::from_millis(200), h.call(&spec, b"hang")).await;
    assert!(abandoned.is_err(), "the handler hangs");
    assert_eq!(h.pool.instance_count(), 0);
    text(&h.call(&spec, b"").await);
}

#[tokio::test]
async fn a_timeout_kills_what_the_handler_started() {
    let h = Harness::new(Language::Python3);
    let mut spec = h.spec(Language::Python3, "sleeper", "index.spawn_sleeper");
    spec.timeout = Duration::from_secs(1);
    let token = format!("sleeper-{}", uuid::Uuid::new_v4().simple());
    let payload: &'static [u8] = Box::leak(token.clone().into_bytes().into_boxed_slice());
    assert_eq!(text(&h.call(&spec, payload).await), "started");
    assert!(
        wait_until_running(&token, Duration::from_secs(10)).await,
        "the handler's child runs between invocations"
    );
    let (_, body) = error(&h.call(&spec, b"hang").await);
    assert_eq!(body["errorMessage"], "Function timed out after 1 seconds");
    assert!(
        wait_until_gone(&token, Duration::from_secs(10)).await,
        "the handler's child was killed with it: {:?}",
        processes_with(&token)
    );
}

#[tokio::test]
async fn a_double_forked_setsid_escapee_dies_with_its_instance() {
    let h = Harness::new(Language::Python3);
    if !h.pid_namespace() {
        skipping(
            "a_double_forked_setsid_escapee_dies_with_its_instance",
            "no PID namespace on this machine: a process that leaves the session survives its instance",
        );
        return;
    }
    let spec = h.spec(Language::Python3, "escape", "index.escape");
    for ending in ["evict", "shutdown"] {
        let token = format!("escapee-{ending}-{}", uuid::Uuid::new_v4().simple());
        let payload: &'static [u8] = Box::leak(token.clone().into_bytes().into_boxed_slice());
        assert_eq!(text(&h.call(&spec, payload).await), "escaped");
        assert!(
            wait_until_running(&token, Duration::from_secs(10)).await,
            "the escapee runs after the invocation"
        );
        let escapee = processes_with(&token)[0];
        let session = std::fs::read_to_string(format!("/proc/{escapee}/stat")).unwrap();
        assert!(!session.is_empty());
        match ending {
            "evict" => h.pool.evict("svc", "escape").await,
            _ => h.pool.shutdown().await,
        }
        assert!(
            wait_until_gone(&token, Duration::from_secs(10)).await,
            "the escapee outlived its instance ({ending}): {:?}",
            processes_with(&token)
        );
    }
}

#[tokio::test]
async fn tmp_var_tmp_and_dev_shm_are_private_per_instance() {
    let h = Harness::new(Language::Python3);
    if !h.pool.isolation().private_code() {
        skipping(
            "tmp_var_tmp_and_dev_shm_are_private_per_instance",
            "no mount namespace on this machine: /tmp, /var/tmp and /dev/shm are the host's",
        );
        return;
    }
    let spec = h.spec(Language::Python3, "scratch", "index.scratch");
    let (a, b) = tokio::join!(h.call(&spec, b""), h.call(&spec, b""));
    let (a, b) = (json(&a), json(&b));
    assert_ne!(a["instance"], b["instance"], "two instances answered");
    for result in [&a, &b] {
        for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
            assert_eq!(
                result["listing"][dir],
                serde_json::json!([result["instance"]]),
                "{dir} holds only the instance's own file: {result}"
            );
        }
    }
}

#[tokio::test]
async fn a_handler_that_cannot_start_says_why() {
    // /bin/sh as "python": it refuses the interpreter's options before reading anything.
    let h = Harness::with_config(Language::Python3, |config| {
        config.python = PathBuf::from("/bin/sh");
    })
    .expect("pool starts");
    let (error_type, body) = error(
        &h.call(&h.spec(Language::Python3, "broken", "index.instance"), b"")
            .await,
    );
    assert_eq!(error_type, ErrorType::Unhandled);
    let message = body["errorMessage"].as_str().expect("errorMessage");
    assert!(
        message.starts_with("Process exited unexpectedly before completing request")
            && message.contains("The function's runtime did not start: ")
            && message.contains("-B"),
        "{message}"
    );
    // An interpreter that does not exist: the spawn itself fails, naming it.
    let h = Harness::with_config(Language::Python3, |config| {
        config.python = PathBuf::from("/nonexistent/python3");
    })
    .expect("pool starts");
    let error = h
        .pool
        .invoke(
            &h.spec(Language::Python3, "missing", "index.instance"),
            InvokeRequest {
                request_id: "r".to_owned(),
                payload: Bytes::new(),
                log_tail: false,
            },
        )
        .await
        .expect_err("no interpreter, no instance");
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent/python3") && message.contains("No such file"),
        "{message}"
    );
}

#[tokio::test]
async fn without_namespaces_handlers_reach_their_code_by_path_or_the_pool_says_why() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Not root, handlers run as the runtime's own user, who reaches its own folders: they run, by path.
        let h = Harness::with_config(Language::Python3, |config| config.namespaces = false)
            .expect("pool starts");
        assert_eq!(h.pool.isolation().namespaces, Namespaces::None);
        let result = json(
            &h.call(&h.spec(Language::Python3, "env", "index.environment"), b"")
                .await,
        );
        assert_eq!(
            result["env"]["FC_FUNC_CODE_PATH"],
            h.code.display().to_string()
        );
        return;
    }
    // The test folder is private (0700, root's): `nobody` cannot reach a data folder inside it by path.
    let refused = Harness::with_config(Language::Python3, |config| config.namespaces = false);
    let Err(error) = refused else {
        panic!("a pool without namespaces started with its data under a private folder");
    };
    let message = error.to_string();
    assert!(
        matches!(error, PoolError::Unreachable { mode: 0o700, .. })
            && message.contains("cannot reach")
            && message.contains("chmod o+x"),
        "{message}"
    );
}
#[tokio::test]
async fn concurrent_calls_to_several_functions() {
    let python = Harness::new(Language::Python3);
    let node = Harness::new(Language::Nodejs);
    let python_echo = python.spec(Language::Python3, "echo", "index.echo");
    let node_echo = node.spec(Language::Nodejs, "echo", "index.echo");
    let calls = (0..4).map(|_| async {
        let (a, b) = tokio::join!(
            python.call(&python_echo, br#"{"n":1}"#),
            node.call(&node_echo, br#"{"n":2}"#)
        );
        (json(&a), json(&b))
    });
    for (a, b) in futures::future::join_all(calls).await {
        assert_eq!(a["event"]["n"], 1);
        assert_eq!(b["event"]["n"], 2);
    }
    assert_eq!(python.pool.instance_count(), 4);
    assert_eq!(node.pool.instance_count(), 4);
}

#[tokio::test]
async fn an_exit_is_seen_even_when_a_forked_child_keeps_the_pipes_open() {
    let h = Harness::new(Language::Python3);
    let mut spec = h.spec(Language::Python3, "orphan", "index.exit_leaving_a_fork");
    // Were the exit missed, the answer would be this timeout's message instead.
    spec.timeout = Duration::from_secs(30);
    let (error_type, body) = error(&h.call(&spec, b"").await);
    assert_eq!(error_type, ErrorType::Unhandled);
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.starts_with("Process exited unexpectedly before completing request")),
        "{body}"
    );
}

#[tokio::test]
async fn handlers_cannot_read_the_function_logs() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Not root, handlers run as the daemon's own user: nothing to separate.
        return;
    }
    let h = Harness::new(Language::Python3);
    let spec = h.spec(Language::Python3, "reader", "index.read_file");
    h.call(&spec, b"").await;
    let log_path = h.pool.log_path("svc", "reader");
    assert!(log_path.is_file());
    let attempt = h
        .pool
        .invoke(
            &spec,
            InvokeRequest {
                request_id: "reader".to_owned(),
                payload: Bytes::from(log_path.display().to_string()),
                log_tail: false,
            },
        )
        .await
        .expect("invocation");
    // Not in the sandbox's view at all; without namespaces, not readable by the handlers' user.
    let answer = text(&attempt);
    assert!(answer == "ENOENT" || answer == "EACCES", "{answer}");
}

#[tokio::test]
async fn the_background_reaper_stops_idle_instances() {
    let h = Harness::with_idle_timeout(Language::Nodejs, Duration::from_secs(60));
    let spec = h.spec(Language::Nodejs, "idle", "index.instance");
    text(&h.call(&spec, b"").await);
    assert_eq!(h.pool.instance_count(), 1);
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(120)).await;
    // The reaper runs on this runtime: let it take its turn.
    for _ in 0..100 {
        if h.pool.instance_count() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(h.pool.instance_count(), 0);
}
