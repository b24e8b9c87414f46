//! Java functions on the machine's JDK: the user guide's examples (tests/java/) compiled with javac against the
//! runtime's own `com.aliyun.fc.runtime` sources, zipped the ways the guide packages them (a jar at the top,
//! classes at the top, jars under lib/, a jar bundling its own copy of the API), deployed and invoked through
//! both official SDKs and the API; then the context, the logger, warm instances, the initializer, POJO
//! mapping of hostile events, and failures (exceptions, exits, timeouts, a full heap).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::runtime::{
    TestRuntime, install_node_sdk, install_python_sdk, run_sdk_script, skipping, test_dir,
    wait_for_mark,
};

/// The zips of the examples, built once per test process.
struct Examples {
    /// tests/java/hello (the guide's HelloFC) as `hellofc.jar` at the top of the zip.
    hello: Vec<u8>,
    /// tests/java/pojo (the guide's POJO handler) as classes at the top.
    pojo: Vec<u8>,
    /// tests/java/oops (the guide's throwing handler) as `lib/oops.jar`.
    oops: Vec<u8>,
    /// tests/java/more in one jar that also carries the API's classes, as a jar-with-dependencies would.
    more: Vec<u8>,
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The examples, or `None` (with a SKIPPED line) when the machine has no javac.
fn examples(test: &str) -> Option<&'static Examples> {
    static BUILT: OnceLock<Option<Examples>> = OnceLock::new();
    let built = BUILT.get_or_init(build).as_ref();
    if built.is_none() {
        skipping(
            test,
            "no JDK here (javac -version fails): Java functions cannot run",
        );
    }
    built
}

fn java_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "java"))
        .collect();
    files.sort();
    files
}

fn javac(args: &[&std::ffi::OsStr]) {
    let output = Command::new("javac")
        .args(["-encoding", "UTF-8", "-nowarn"])
        .args(args)
        .output()
        .expect("run javac");
    assert!(
        output.status.success(),
        "javac {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every file under `dir`, as (path relative to `dir` with `/`, bytes), sorted.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("read a class folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .expect("under the folder")
                    .to_string_lossy()
                    .into_owned();
                files.push((name, std::fs::read(&path).expect("read a class")));
            }
        }
    }
    files.sort();
    files
}

fn zip_bytes(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, contents) in files {
        writer
            .start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        writer.write_all(contents).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

fn jar(classes: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut files = vec![(
        "META-INF/MANIFEST.MF".to_owned(),
        b"Manifest-Version: 1.0\r\nCreated-By: chaintrigger tests\r\n\r\n".to_vec(),
    )];
    files.extend_from_slice(classes);
    zip_bytes(&files)
}

fn build() -> Option<Examples> {
    let available = Command::new("javac")
        .arg("-version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        return None;
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("java-examples-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let api = out.join("api");
    let api_sources =
        java_files(&repository().join("src/runtime/pool/shim/java/com/aliyun/fc/runtime"));
    let mut args: Vec<&std::ffi::OsStr> = vec!["-d".as_ref(), api.as_os_str()];
    args.extend(api_sources.iter().map(|p| p.as_os_str()));
    javac(&args);
    let groups = ["hello", "pojo", "oops", "more"];
    std::thread::scope(|scope| {
        for group in groups {
            let (api, out) = (&api, &out);
            scope.spawn(move || {
                let sources =
                    java_files(&repository().join("tests/java").join(group).join("example"));
                let target = out.join(group);
                let mut args: Vec<&std::ffi::OsStr> = vec![
                    "-cp".as_ref(),
                    api.as_os_str(),
                    "-d".as_ref(),
                    target.as_os_str(),
                ];
                args.extend(sources.iter().map(|p| p.as_os_str()));
                javac(&args);
            });
        }
    });
    let classes = |group: &str| tree(&out.join(group));
    let mut with_api = classes("more");
    with_api.extend(tree(&api));
    let examples = Examples {
        hello: zip_bytes(&[("hellofc.jar".to_owned(), jar(&classes("hello")))]),
        pojo: zip_bytes(&classes("pojo")),
        oops: zip_bytes(&[("lib/oops.jar".to_owned(), jar(&classes("oops")))]),
        more: zip_bytes(&[("more.jar".to_owned(), jar(&with_api))]),
    };
    let _ = std::fs::remove_dir_all(&out);
    Some(examples)
}

fn write_zips(examples: &Examples, dir: &Path) {
    for (name, bytes) in [
        ("hello.zip", &examples.hello),
        ("pojo.zip", &examples.pojo),
        ("oops.zip", &examples.oops),
        ("more.zip", &examples.more),
    ] {
        std::fs::write(dir.join(name), bytes).expect("write a zip");
    }
}

/// Creates a Java function from a zip; asserts success.
async fn create(rt: &TestRuntime, service: &str, name: &str, zip: &[u8], attributes: Value) {
    let mut body = json!({
        "functionName": name,
        "runtime": "java8",
        "timeout": 30,
        "code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
    });
    body.as_object_mut()
        .expect("object")
        .extend(attributes.as_object().expect("attributes").clone());
    let reply = rt
        .json(
            "POST",
            &format!("/2016-08-15/services/{service}/functions"),
            body,
        )
        .await;
    assert_eq!(reply.status, 200, "create {name}: {}", reply.text());
}

/// Invokes synchronously with the log tail; returns (status, error type, body, log tail).
async fn call(rt: &TestRuntime, service: &str, function: &str, payload: &str) -> Called {
    let reply = rt
        .send(
            "POST",
            &format!("/2016-08-15/services/{service}/functions/{function}/invocations"),
            &[("x-fc-log-type", "Tail")],
            payload.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(reply.status, 200, "{function}: {}", reply.text());
    let tail = reply
        .header("x-fc-log-result")
        .map(|b64| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64 log");
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .unwrap_or_default();
    Called {
        error_type: reply.header("x-fc-error-type").map(str::to_owned),
        request_id: reply.header("x-fc-request-id").unwrap_or("").to_owned(),
        body: reply.text(),
        tail,
    }
}

struct Called {
    error_type: Option<String>,
    request_id: String,
    body: String,
    tail: String,
}

impl Called {
    fn ok(&self) -> &str {
        assert_eq!(self.error_type, None, "{} / log: {}", self.body, self.tail);
        &self.body
    }

    fn error(&self) -> Value {
        assert_eq!(
            self.error_type.as_deref(),
            Some("UnhandledInvocationError"),
            "{}",
            self.body
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("JSON error body: {}", self.body))
    }
}

/// Runs one SDK script against a signed runtime, with the examples' zips in its scratch folder.
async fn drive_with_sdk(test: &str, install: fn(), program: &str, script: &str) {
    let Some(examples) = examples(test) else {
        return;
    };
    tokio::task::spawn_blocking(install)
        .await
        .expect("install the SDK");
    let dir = test_dir(&format!("rt-java-{program}-"));
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("scratch folder");
    write_zips(examples, &work);
    let rt = TestRuntime::start(&dir.path().join("data"), TestRuntime::signed).await;
    run_sdk_script(&rt, &work, program, script).await;
    rt.stop().await;
}

#[tokio::test]
async fn runtime_java_guide_examples_through_the_python_sdk() {
    drive_with_sdk(
        "runtime_java_guide_examples_through_the_python_sdk",
        install_python_sdk,
        "python3",
        "tests/sdk/python/test_java.py",
    )
    .await;
}

#[tokio::test]
async fn runtime_java_guide_examples_through_the_node_sdk() {
    drive_with_sdk(
        "runtime_java_guide_examples_through_the_node_sdk",
        install_node_sdk,
        "node",
        "tests/sdk/node/test_java.js",
    )
    .await;
}

#[tokio::test]
async fn runtime_java_context_logger_and_pojo_mapping() {
    let Some(examples) = examples("runtime_java_context_logger_and_pojo_mapping") else {
        return;
    };
    let dir = test_dir("rt-java-context-");
    let rt = TestRuntime::start(&dir.path().join("data"), |_| {}).await;
    rt.create_service("j").await;
    create(
        &rt,
        "j",
        "ctx",
        &examples.more,
        json!({"runtime": "java11", "handler": "example.ContextFC::handleRequest", "memorySize": 256}),
    )
    .await;
    let first = call(&rt, "j", "ctx", "héllo").await;
    let lines: std::collections::HashMap<&str, &str> = first
        .ok()
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    assert_eq!(lines["requestId"], first.request_id);
    assert_eq!(lines["function"], "ctx");
    assert_eq!(lines["handler"], "example.ContextFC::handleRequest");
    assert_eq!(lines["initializer"], "null");
    assert_eq!(lines["memory"], "256");
    assert_eq!(lines["timeoutMillis"], "30000");
    assert_eq!(lines["service"], "j");
    assert_eq!(lines["qualifier"], "LATEST");
    assert_eq!(lines["retryCount"], "0");
    assert_eq!(lines["event"], "héllo", "the event's bytes, UTF-8");
    assert_ne!(lines["codePath"], "null", "FC_FUNC_CODE_PATH is set");
    let heap: u64 = lines["maxHeapMB"].parse().expect("a number");
    assert!(
        (150..=192).contains(&heap),
        "memorySize 256 gives a heap of at most 192 MB, not {heap}"
    );
    let second = call(&rt, "j", "ctx", "").await;
    assert!(
        second
            .ok()
            .contains(&format!("requestId={}", second.request_id))
    );

    create(
        &rt,
        "j",
        "other",
        &examples.more,
        json!({"runtime": "java17", "handler": "example.ContextFC::other"}),
    )
    .await;
    assert_eq!(call(&rt, "j", "other", "").await.ok(), "other method");

    create(
        &rt,
        "j",
        "log",
        &examples.more,
        json!({"handler": "example.LogFC::handleRequest"}),
    )
    .await;
    let logged = call(&rt, "j", "log", "").await;
    assert_eq!(logged.ok(), "logged");
    for level in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"] {
        let line = format!(
            " {} [{level}] {} line",
            logged.request_id,
            level.to_lowercase()
        );
        assert!(logged.tail.contains(&line), "{line:?} in {}", logged.tail);
    }
    assert!(!logged.tail.contains("hidden info line"), "{}", logged.tail);
    assert!(
        logged
            .tail
            .contains(&format!(" {} [WARN] shown warn line", logged.request_id))
    );
    assert!(logged.tail.contains("stdout line\n") && logged.tail.contains("stderr line\n"));
    let file =
        std::fs::read_to_string(rt.runtime.log_path("j", "log")).expect("the function's log");
    assert!(file.contains(&format!("FC Invoke Start RequestId: {}", logged.request_id)));
    assert!(file.contains("[FATAL] fatal line"));

    // POJO mapping, and hostile events: each fails alone, the warm instance serves the next one.
    create(
        &rt,
        "j",
        "order",
        &examples.more,
        json!({"handler": "example.OrderFC::handleRequest"}),
    )
    .await;
    let order = json!({
        "id": "o-1", "kind": "WHOLESALE", "gift": true, "customer": 12_345_678_901_u64,
        "items": [{"sku": "a", "quantity": 2, "price": 1.25}, {"sku": "b", "quantity": "3", "price": 2}],
        "tags": {"x": 1, "y": 2}, "unknown": {"ignored": [1, 2]}
    })
    .to_string();
    let summary: Value =
        serde_json::from_str(call(&rt, "j", "order", &order).await.ok()).expect("JSON");
    assert_eq!(
        summary,
        json!({
            "id": "o-1", "kind": "WHOLESALE", "gift": true, "customer": 12_345_678_901_u64, "units": 5,
            "total": 8.5, "tags": {"x": 1, "y": 2}, "first": {"sku": "a", "quantity": 2, "price": 1.25},
            "served": 1
        })
    );
    assert_eq!(call(&rt, "j", "order", "").await.ok(), r#"{"empty":true}"#);
    let deep = "[".repeat(100_000);
    let hostile = [
        (deep.as_str(), "nested deeper than 512 levels"),
        ("{\"id\": ", "invalid JSON at offset 7"),
        ("[1, 2]", "cannot map an array at $ to example.Order"),
        (r#"{"items": 3}"#, "cannot map a number at $.items"),
        (r#"{"customer": 1e400}"#, "$.customer"),
        (r#"{"customer": 99999999999999999999}"#, "out of range"),
        (r#"{"kind": "NONE"}"#, "to the enum example.Order$Kind"),
        (r#"{"items": [{"quantity": 1.5}]}"#, "not an integer"),
    ];
    for (event, expected) in hostile {
        let body = call(&rt, "j", "order", event).await.error();
        assert_eq!(
            body["errorType"], "java.lang.IllegalArgumentException",
            "{body}"
        );
        let message = body["errorMessage"].as_str().expect("message");
        assert!(message.contains(expected), "{expected:?} in {message:?}");
    }
    let again: Value =
        serde_json::from_str(call(&rt, "j", "order", &order).await.ok()).expect("JSON");
    assert_eq!(
        again["served"], 2,
        "the instance that refused the hostile events summed this order: {again}"
    );
    rt.stop().await;
}

#[tokio::test]
async fn runtime_java_failures_initializer_timeouts_and_memory() {
    let Some(examples) = examples("runtime_java_failures_initializer_timeouts_and_memory") else {
        return;
    };
    let dir = test_dir("rt-java-failures-");
    let rt = TestRuntime::start(&dir.path().join("data"), |_| {}).await;
    rt.create_service("f").await;
    let boom = |handler: &str, extra: Value| {
        let mut attributes = json!({"handler": format!("example.Boom::{handler}")});
        attributes
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("extra").clone());
        attributes
    };

    // The JVM's start is not part of the time limit: a one-second function answers its cold call.
    create(
        &rt,
        "f",
        "quick",
        &examples.hello,
        json!({"handler": "example.HelloFC::handleRequest", "timeout": 1}),
    )
    .await;
    assert_eq!(call(&rt, "f", "quick", "").await.ok(), "hello world");

    create(
        &rt,
        "f",
        "caused",
        &examples.more,
        boom("caused", json!({})),
    )
    .await;
    let body = call(&rt, "f", "caused", "").await.error();
    assert_eq!(body["errorMessage"], "wrapped");
    assert_eq!(body["errorType"], "java.lang.IllegalStateException");
    assert_eq!(body["errorCause"], "For input string: \"not a number\"");
    let frames: Vec<&str> = body["stackTrace"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| f.as_str().expect("frame"))
        .collect();
    assert_eq!(frames.len(), 1, "only the handler's own frame: {frames:?}");
    assert!(
        frames[0].starts_with("example.Boom.caused(Boom.java:"),
        "{frames:?}"
    );

    create(&rt, "f", "exit", &examples.more, boom("exit", json!({}))).await;
    let exited = call(&rt, "f", "exit", "").await;
    let message = exited.error()["errorMessage"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        message.starts_with("Process exited unexpectedly before completing request"),
        "{message}"
    );
    assert!(exited.tail.contains("exiting"), "{}", exited.tail);

    create(
        &rt,
        "f",
        "sleep",
        &examples.more,
        boom("sleep", json!({"timeout": 3})),
    )
    .await;
    let slept = call(&rt, "f", "sleep", "").await;
    assert_eq!(
        slept.error(),
        json!({"errorMessage": "Function timed out after 3 seconds"})
    );
    assert!(
        wait_for_mark(
            &rt.runtime,
            "f",
            "sleep",
            "sleeping",
            Duration::from_secs(1)
        )
        .await,
        "the handler had started"
    );

    create(&rt, "f", "hoard", &examples.more, boom("hoard", json!({}))).await;
    for _ in 0..2 {
        let body = call(&rt, "f", "hoard", "").await.error();
        assert_eq!(body["errorType"], "java.lang.OutOfMemoryError", "{body}");
        assert_eq!(body["errorMessage"], "Java heap space");
    }

    create(
        &rt,
        "f",
        "missing",
        &examples.more,
        json!({"handler": "example.Missing::handleRequest"}),
    )
    .await;
    let body = call(&rt, "f", "missing", "").await.error();
    assert_eq!(body["errorType"], "java.lang.ClassNotFoundException");
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("example.Missing")),
        "{body}"
    );
    create(
        &rt,
        "f",
        "nomethod",
        &examples.more,
        json!({"handler": "example.Boom::nope"}),
    )
    .await;
    let body = call(&rt, "f", "nomethod", "").await.error();
    assert_eq!(body["errorType"], "java.lang.NoSuchMethodException");

    create(
        &rt,
        "f",
        "badinit",
        &examples.more,
        json!({"handler": "example.InitFC::handleRequest", "initializer": "example.InitFC::broken"}),
    )
    .await;
    for _ in 0..2 {
        let body = call(&rt, "f", "badinit", "").await.error();
        assert_eq!(body["errorMessage"], "init failed");
        assert_eq!(body["errorType"], "java.io.IOException");
    }

    // The guide's jar under lib/ and classes at the top, deployed with the API's own request.
    create(
        &rt,
        "f",
        "oops",
        &examples.oops,
        json!({"handler": "example.HelloFC::handleRequest"}),
    )
    .await;
    let body = call(&rt, "f", "oops", "").await.error();
    assert_eq!(
        body,
        json!({
            "errorMessage": "oops", "errorType": "java.io.IOException", "errorCause": "oops",
            "stackTrace": ["example.HelloFC.handleRequest(HelloFC.java:15)"]
        })
    );
    rt.stop().await;
}

#[tokio::test]
async fn runtime_java_names_and_handlers_are_checked() {
    let dir = test_dir("rt-java-names-");
    let rt = TestRuntime::start(&dir.path().join("data"), |_| {}).await;
    rt.create_service("n").await;
    let zip = crate::support::runtime::zip(&[("README", "no classes")]);
    for (name, runtime) in [("a", "java8"), ("b", "java11"), ("c", "java17")] {
        create(
            &rt,
            "n",
            name,
            &zip,
            json!({"runtime": runtime, "handler": "example.HelloFC::handleRequest"}),
        )
        .await;
    }
    let attempt = |runtime: &str, handler: &str| {
        json!({
            "functionName": "bad", "runtime": runtime, "handler": handler,
            "code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(&zip)},
        })
    };
    let reply = rt
        .json(
            "POST",
            "/2016-08-15/services/n/functions",
            attempt("java", "example.HelloFC::handleRequest"),
        )
        .await;
    let message = reply.assert_error(400, "InvalidArgument");
    assert!(
        message.contains("'java'") && message.contains("javaN"),
        "{message}"
    );
    let reply = rt
        .json(
            "POST",
            "/2016-08-15/services/n/functions",
            attempt("java8", "index.handler"),
        )
        .await;
    let message = reply.assert_error(400, "InvalidArgument");
    assert!(
        message.contains("handler: 'index.handler'") && message.contains("package.Class::method"),
        "{message}"
    );
    rt.stop().await;
}
