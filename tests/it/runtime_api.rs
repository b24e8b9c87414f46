//! The bundled function runtime through its HTTP API: real runtime on port 0, real SQLite under a temporary
//! directory, real python3 / node handlers, requests as the Function Compute SDKs send them.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::json;

use crate::support::runtime::{KEY_ID, TestRuntime, marks, test_dir, wait_for_mark, zip};

const PY: &str = r#"
import os, time

def handler(event, context):
    print("hello from python")
    return b"py:" + event

def fail(event, context):
    raise ValueError("boom")

def mark(event, context):
    name = event.decode()
    print("MARK " + name + " " + context.request_id)
    if name.startswith("fail"):
        raise RuntimeError("asked to fail")
    return b"ok"

def hold(event, context):
    name, seconds = event.decode().split(":")
    print("MARK " + name)
    time.sleep(float(seconds))
    return b"held"

def slow_mark(event, context):
    name = event.decode()
    print("MARK " + name + ".started")
    time.sleep(1.5)
    print("MARK " + name + ".done")
    return b"ok"
"#;

const NODE: &str = r#"
exports.handler = (event, context, callback) => callback(null, "node:" + event.toString());
exports.handled = (event, context, callback) => callback(new Error("handled oops"));
"#;

const FUNCTIONS: &str = "/2016-08-15/services/svc/functions";

async fn with_service(runtime: &TestRuntime) {
    runtime.create_service("svc").await;
}

#[tokio::test]
async fn services_have_function_computes_shapes_and_errors() {
    let dir = test_dir("rt-services-");
    let rt = TestRuntime::start(dir.path(), |_| {}).await;

    let created = rt
        .json(
            "POST",
            "/2016-08-15/services",
            json!({"serviceName": "alpha", "description": "first"}),
        )
        .await;
    assert_eq!(created.status, 200);
    assert!(created.header("etag").is_some() && created.header("x-fc-request-id").is_some());
    let body = created.json();
    assert_eq!(body["serviceName"], "alpha");
    assert_eq!(body["description"], "first");
    assert!(body["serviceId"].as_str().is_some_and(|id| !id.is_empty()));
    for field in ["createdTime", "lastModifiedTime"] {
        let time = body[field].as_str().unwrap();
        assert!(
            time.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{time}"
        );
    }

    rt.json(
        "POST",
        "/2016-08-15/services",
        json!({"serviceName": "alpha"}),
    )
    .await
    .assert_error(409, "ServiceAlreadyExists");
    let message = rt
        .json(
            "POST",
            "/2016-08-15/services",
            json!({"serviceName": "9bad"}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("9bad"), "{message}");
    rt.json(
        "POST",
        "/2016-08-15/services",
        json!({"serviceName": "x", "colour": "red"}),
    )
    .await
    .assert_error(400, "InvalidArgument");

    for name in ["beta", "gamma", "alpine"] {
        rt.create_service(name).await;
    }
    let page = rt
        .send("GET", "/2016-08-15/services?limit=2", &[], vec![])
        .await
        .json();
    let names: Vec<_> = page["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["serviceName"].clone())
        .collect();
    assert_eq!(names, [json!("alpha"), json!("alpine")]);
    assert_eq!(page["nextToken"], "beta");
    let page = rt
        .send(
            "GET",
            "/2016-08-15/services?limit=2&nextToken=beta",
            &[],
            vec![],
        )
        .await
        .json();
    assert_eq!(page["services"].as_array().unwrap().len(), 2);
    assert!(page.get("nextToken").is_none());
    let page = rt
        .send("GET", "/2016-08-15/services?prefix=al", &[], vec![])
        .await
        .json();
    assert_eq!(page["services"].as_array().unwrap().len(), 2);
    let page = rt
        .send("GET", "/2016-08-15/services?startKey=gamma", &[], vec![])
        .await
        .json();
    assert_eq!(page["services"][0]["serviceName"], "gamma");
    rt.send("GET", "/2016-08-15/services?limit=0", &[], vec![])
        .await
        .assert_error(400, "InvalidArgument");

    let got = rt
        .send("GET", "/2016-08-15/services/alpha", &[], vec![])
        .await;
    let etag = got.header("etag").unwrap().to_owned();
    rt.send(
        "PUT",
        "/2016-08-15/services/alpha",
        &[("content-type", "application/json"), ("if-match", "stale")],
        json!({"description": "x"}).to_string().into_bytes(),
    )
    .await
    .assert_error(412, "PreconditionFailed");
    let updated = rt
        .send(
            "PUT",
            "/2016-08-15/services/alpha",
            &[("content-type", "application/json"), ("if-match", &etag)],
            json!({"description": "second"}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(updated.json()["description"], "second");
    assert_eq!(updated.json()["serviceId"], body["serviceId"]);

    rt.create_function("alpha", "f", "python3", &[("index.py", PY)], json!({}))
        .await;
    let message = rt
        .send("DELETE", "/2016-08-15/services/alpha", &[], vec![])
        .await
        .assert_error(409, "ServiceNotEmpty");
    assert!(message.contains("alpha"));
    let deleted = rt
        .send(
            "DELETE",
            "/2016-08-15/services/alpha/functions/f",
            &[],
            vec![],
        )
        .await;
    assert_eq!(deleted.status, 204);
    let deleted = rt
        .send("DELETE", "/2016-08-15/services/alpha", &[], vec![])
        .await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty() && deleted.header("content-type").is_none());
    assert!(deleted.header("x-fc-request-id").is_some());
    let message = rt
        .send("GET", "/2016-08-15/services/alpha", &[], vec![])
        .await
        .assert_error(404, "ServiceNotFound");
    assert_eq!(message, "service 'alpha' does not exist");

    rt.send("GET", "/2016-08-15/nowhere", &[], vec![])
        .await
        .assert_error(400, "PathNotSupported");
    rt.send("GET", "/2016-08-15/services/%FF", &[], vec![])
        .await
        .assert_error(400, "InvalidArgument");
    rt.send("GET", "/2016-08-15/services?limit=%FF", &[], vec![])
        .await
        .assert_error(400, "InvalidArgument");
    rt.send("PATCH", "/2016-08-15/services", &[], vec![])
        .await
        .assert_error(400, "PathNotSupported");
    rt.stop().await;
}

#[tokio::test]
async fn functions_have_function_computes_shapes_limits_and_code() {
    let dir = test_dir("rt-functions-");
    let rt = TestRuntime::start(dir.path(), |_| {}).await;
    with_service(&rt).await;
    let code = zip(&[("index.py", PY)]);
    let created = rt
        .json(
            "POST",
            FUNCTIONS,
            json!({"functionName": "f1", "runtime": "python3.10", "handler": "index.handler",
                   "code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(&code)},
                   "environmentVariables": {"A": "1"}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let body = created.json();
    let checksum = chaintrigger::runtime::code::crc64(&code).to_string();
    assert_eq!(body["codeChecksum"], checksum.as_str());
    assert_eq!(body["codeSize"], code.len());
    assert_eq!(
        (body["timeout"].clone(), body["memorySize"].clone()),
        (json!(3), json!(128))
    );
    assert_eq!(body["initializationTimeout"], 3);
    assert_eq!(body["environmentVariables"]["A"], "1");
    for field in [
        "functionId",
        "createdTime",
        "lastModifiedTime",
        "functionName",
        "runtime",
        "handler",
    ] {
        assert!(!body[field].is_null(), "{field} missing from {body}");
    }

    rt.json("POST", FUNCTIONS, json!({"functionName": "f1", "runtime": "python3", "handler": "index.handler",
                                       "code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(&code)}}))
        .await
        .assert_error(409, "FunctionAlreadyExists");
    let bad = |extra: serde_json::Value| {
        let mut body = json!({"functionName": "g", "runtime": "python3", "handler": "index.handler",
                              "code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(&code)}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, field) in [
        (json!({"timeout": 601}), "timeout"),
        (json!({"memorySize": 200}), "memorySize"),
        (json!({"initializationTimeout": 0}), "initializationTimeout"),
        (json!({"environmentVariables": {"FC_X": "1"}}), "FC_X"),
        (json!({"runtime": "custom"}), "custom"),
        (json!({"functionName": "bad.name"}), "bad.name"),
    ] {
        let message = rt
            .json("POST", FUNCTIONS, bad(extra))
            .await
            .assert_error(400, "InvalidArgument");
        assert!(message.contains(field), "{field}: {message}");
    }
    let escaping = base64::engine::general_purpose::STANDARD.encode(zip(&[("../escape.py", "x")]));
    let message = rt
        .json(
            "POST",
            FUNCTIONS,
            bad(json!({"code": {"zipFile": escaping}})),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("../escape.py"), "{message}");
    rt.json(
        "POST",
        FUNCTIONS,
        bad(json!({"code": {"zipFile": "not base64!"}})),
    )
    .await
    .assert_error(400, "InvalidArgument");
    rt.json(
        "POST",
        "/2016-08-15/services/nope/functions",
        bad(json!({})),
    )
    .await
    .assert_error(404, "ServiceNotFound");

    let got = rt
        .send("GET", &format!("{FUNCTIONS}/f1"), &[], vec![])
        .await;
    assert_eq!(got.json()["functionId"], body["functionId"]);
    assert_eq!(got.header("etag"), created.header("etag"));
    let message = rt
        .send("GET", &format!("{FUNCTIONS}/missing"), &[], vec![])
        .await
        .assert_error(404, "FunctionNotFound");
    assert_eq!(
        message,
        "function 'missing' does not exist in service 'svc'"
    );

    let code_reply = rt
        .send("GET", &format!("{FUNCTIONS}/f1/code"), &[], vec![])
        .await
        .json();
    assert_eq!(code_reply["checksum"], checksum.as_str());
    let downloaded = rt
        .client
        .get(code_reply["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&downloaded[..], &code[..]);

    assert_eq!(rt.invoke("svc", "f1", "a").await.text(), "py:a");
    let new_code = PY.replace("b\"py:\"", "b\"v2:\"");
    let updated = rt
        .json(
            "PUT",
            &format!("{FUNCTIONS}/f1"),
            json!({"timeout": 10, "code": {"zipFile": base64::engine::general_purpose::STANDARD.encode(zip(&[("index.py", &new_code)]))}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(updated.json()["timeout"], 10);
    assert_eq!(
        updated.json()["environmentVariables"]["A"],
        "1",
        "unsent fields are kept"
    );
    assert_ne!(updated.json()["codeChecksum"], checksum.as_str());
    assert_eq!(
        rt.invoke("svc", "f1", "a").await.text(),
        "v2:a",
        "the update replaced the warm instance"
    );

    for i in 2..=50 {
        rt.create_function(
            "svc",
            &format!("f{i}"),
            "python3",
            &[("index.py", PY)],
            json!({}),
        )
        .await;
    }
    let message = rt
        .json("POST", FUNCTIONS, bad(json!({"functionName": "f51"})))
        .await
        .assert_error(400, "LimitExceededError");
    assert!(message.contains("50"), "{message}");
    let page = rt
        .send(
            "GET",
            &format!("{FUNCTIONS}?limit=10&prefix=f1"),
            &[],
            vec![],
        )
        .await
        .json();
    let names: Vec<_> = page["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["functionName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "f1", "f10", "f11", "f12", "f13", "f14", "f15", "f16", "f17", "f18"
        ]
    );
    assert_eq!(page["nextToken"], "f19");

    let deleted = rt
        .send("DELETE", &format!("{FUNCTIONS}/f1"), &[], vec![])
        .await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.header("content-type").is_none());
    rt.invoke("svc", "f1", "a")
        .await
        .assert_error(404, "FunctionNotFound");
    rt.stop().await;
}

#[tokio::test]
async fn sync_invocations_return_raw_results_errors_and_logs() {
    let dir = test_dir("rt-invoke-");
    let rt = TestRuntime::start(dir.path(), |_| {}).await;
    with_service(&rt).await;
    rt.create_function("svc", "py", "python3", &[("index.py", PY)], json!({}))
        .await;
    rt.create_function(
        "svc",
        "pyfail",
        "python3",
        &[("index.py", PY)],
        json!({"handler": "index.fail"}),
    )
    .await;
    rt.create_function("svc", "node", "nodejs20", &[("index.js", NODE)], json!({}))
        .await;
    rt.create_function(
        "svc",
        "nodeerr",
        "nodejs20",
        &[("index.js", NODE)],
        json!({"handler": "index.handled"}),
    )
    .await;

    let reply = rt.invoke("svc", "py", "hi").await;
    assert_eq!((reply.status, reply.text().as_str()), (200, "py:hi"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(reply.header("x-fc-error-type").is_none());
    assert!(
        reply
            .header("x-fc-invocation-duration")
            .is_some_and(|d| d.parse::<u64>().is_ok())
    );
    assert!(reply.header("x-fc-request-id").is_some());
    assert_eq!(rt.invoke("svc", "node", "hi").await.text(), "node:hi");

    let tailed = rt
        .send(
            "POST",
            "/2016-08-15/services/svc.LATEST/functions/py/invocations",
            &[
                ("content-type", "application/json"),
                ("x-fc-log-type", "Tail"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(tailed.text(), "py:{}");
    let log = base64::engine::general_purpose::STANDARD
        .decode(tailed.header("x-fc-log-result").expect("log result"))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&log).contains("hello from python"),
        "{}",
        String::from_utf8_lossy(&log)
    );

    let failed = rt.invoke("svc", "pyfail", "x").await;
    assert_eq!(failed.status, 200);
    assert_eq!(
        failed.header("x-fc-error-type"),
        Some("UnhandledInvocationError")
    );
    assert_eq!(failed.header("content-type"), Some("application/json"));
    assert!(
        failed.json()["errorMessage"]
            .as_str()
            .unwrap()
            .contains("boom")
    );
    let handled = rt.invoke("svc", "nodeerr", "x").await;
    assert_eq!(
        handled.header("x-fc-error-type"),
        Some("HandledInvocationError")
    );
    assert_eq!(handled.json()["errorMessage"], "handled oops");

    rt.send(
        "POST",
        "/2016-08-15/services/svc.3/functions/py/invocations",
        &[],
        vec![],
    )
    .await
    .assert_error(404, "VersionNotFound");
    rt.send(
        "POST",
        "/2016-08-15/services/svc.prod/functions/py/invocations",
        &[],
        vec![],
    )
    .await
    .assert_error(404, "AliasNotFound");
    rt.send(
        "POST",
        "/2016-08-15/services/nosvc.prod/functions/py/invocations",
        &[],
        vec![],
    )
    .await
    .assert_error(404, "ServiceNotFound");
    rt.invoke("svc", "nope", "x")
        .await
        .assert_error(404, "FunctionNotFound");
    rt.send(
        "POST",
        "/2016-08-15/services/svc/functions/py/invocations",
        &[("x-fc-invocation-type", "Later")],
        vec![],
    )
    .await
    .assert_error(400, "InvalidArgument");

    let message = rt
        .send(
            "POST",
            "/2016-08-15/services/svc/functions/py/invocations",
            &[],
            vec![b'a'; 6 * 1024 * 1024 + 1],
        )
        .await
        .assert_error(400, "EntityTooLarge");
    assert_eq!(
        message,
        "payload size exceeds maximum allowed size (6291456 bytes)"
    );
    let message = rt
        .send(
            "POST",
            "/2016-08-15/services/svc/functions/py/invocations",
            &[("x-fc-invocation-type", "Async")],
            vec![b'a'; 128 * 1024 + 1],
        )
        .await
        .assert_error(400, "EntityTooLarge");
    assert_eq!(
        message,
        "payload size exceeds maximum allowed size (131072 bytes)"
    );
    rt.stop().await;
}

#[tokio::test]
async fn sync_calls_over_the_concurrency_limit_get_429() {
    let dir = test_dir("rt-throttle-");
    let rt = TestRuntime::start(&dir.path().join("data"), |c| c.max_concurrency = 1).await;
    with_service(&rt).await;
    let env = json!({"handler": "index.hold", "timeout": 10});
    rt.create_function("svc", "hold", "python3", &[("index.py", PY)], env)
        .await;
    let (first, second) = tokio::join!(rt.invoke("svc", "hold", "first:1"), async {
        // The first call holds the only slot once its handler runs.
        assert!(wait_for_mark(&rt.runtime, "svc", "hold", "first", Duration::from_secs(20)).await);
        rt.invoke("svc", "hold", "second:0").await
    });
    assert_eq!(first.text(), "held");
    let message = second.assert_error(429, "ResourceExhausted");
    assert!(message.contains('1'), "{message}");
    assert!(
        !marks(&rt.runtime, "svc", "hold").contains(&"second".to_owned()),
        "a throttled call never runs"
    );
    assert_eq!(
        rt.invoke("svc", "hold", "third:0").await.text(),
        "held",
        "the slot is free again"
    );
    rt.stop().await;
}

#[tokio::test]
async fn async_invocations_run_once_per_id_and_retry_function_errors() {
    let dir = test_dir("rt-async-");
    let rt = TestRuntime::start(&dir.path().join("data"), |_| {}).await;
    with_service(&rt).await;
    let env = json!({"handler": "index.mark"});
    rt.create_function("svc", "mark", "python3", &[("index.py", PY)], env.clone())
        .await;

    let path = "/2016-08-15/services/svc/functions/mark/invocations";
    let accepted = rt
        .send(
            "POST",
            path,
            &[
                ("x-fc-invocation-type", "Async"),
                ("x-fc-stateful-async-invocation-id", "job_1"),
            ],
            b"one".to_vec(),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    assert!(accepted.body.is_empty() && accepted.header("content-type").is_none());
    assert!(accepted.header("x-fc-request-id").is_some());
    let again = rt
        .send(
            "POST",
            path,
            &[
                ("x-fc-invocation-type", "Async"),
                ("x-fc-stateful-async-invocation-id", "job_1"),
            ],
            b"one".to_vec(),
        )
        .await;
    assert_eq!(again.status, 202, "a repeated id is accepted");
    rt.send(
        "POST",
        path,
        &[("x-fc-invocation-type", "Async")],
        b"two".to_vec(),
    )
    .await;
    rt.send(
        "POST",
        path,
        &[
            ("x-fc-invocation-type", "Async"),
            ("x-fc-stateful-async-invocation-id", "1-bad"),
        ],
        b"x".to_vec(),
    )
    .await
    .assert_error(400, "InvalidArgument");

    let outcomes = rt.outcomes("svc", "mark", 2, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| o.status == "Succeeded"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[0].invocation_id.as_deref(), Some("job_1"));
    let ran = |name: &str| -> Vec<String> {
        marks(&rt.runtime, "svc", "mark")
            .iter()
            .filter_map(|line| line.strip_prefix(&format!("{name} ")).map(str::to_owned))
            .collect()
    };
    assert_eq!(ran("one").len(), 1, "job_1 ran once");
    assert_eq!(
        ran("one")[0],
        outcomes[0].request_id,
        "the handler saw the 202's request id"
    );
    assert_eq!(ran("two").len(), 1);

    let config_path = "/2016-08-15/services/svc.LATEST/functions/mark/async-invoke-config";
    rt.send("GET", config_path, &[], vec![])
        .await
        .assert_error(404, "AsyncConfigNotExists");
    rt.json("PUT", config_path, json!({"maxAsyncRetryAttempts": 9}))
        .await
        .assert_error(400, "InvalidArgument");
    rt.json("PUT", config_path, json!({"maxAsyncEventAgeInSeconds": 0}))
        .await
        .assert_error(400, "InvalidArgument");
    let put = rt
        .json(
            "PUT",
            config_path,
            json!({"maxAsyncRetryAttempts": 1, "maxAsyncEventAgeInSeconds": 3600}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let got = rt.send("GET", config_path, &[], vec![]).await.json();
    assert_eq!(
        (
            got["maxAsyncRetryAttempts"].clone(),
            got["maxAsyncEventAgeInSeconds"].clone()
        ),
        (json!(1), json!(3600))
    );
    assert_eq!(got["function"], "mark");

    rt.send(
        "POST",
        path,
        &[("x-fc-invocation-type", "Async")],
        b"fail-once".to_vec(),
    )
    .await;
    let outcomes = rt.outcomes("svc", "mark", 3, Duration::from_secs(20)).await;
    let failed = outcomes.last().unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.attempts),
        ("Failed", 2),
        "{outcomes:?}"
    );
    assert!(failed.detail.contains("asked to fail"), "{}", failed.detail);
    assert_eq!(ran("fail-once").len(), 2, "1 run + 1 retry");

    let deleted = rt.send("DELETE", config_path, &[], vec![]).await;
    assert_eq!(deleted.status, 204);
    rt.send("GET", config_path, &[], vec![])
        .await
        .assert_error(404, "AsyncConfigNotExists");
    rt.stop().await;
}

/// A commit can wait: for the disk's flush (tens of milliseconds on a slow disk, when the commit restarts the WAL),
/// or, as here, for another writer holding the database. The wait must hold up only the request that made the
/// commit: the runtime's other requests go on meanwhile, and the async event is still answered 202 only once it
/// is committed, then runs.
#[tokio::test]
async fn an_async_enqueue_waiting_for_the_database_holds_up_no_other_request() {
    let dir = test_dir("rt-held-db-");
    let data = dir.path().join("data");
    let rt = TestRuntime::start(&data, |_| {}).await;
    with_service(&rt).await;
    rt.create_function("svc", "py", "python3", &[("index.py", PY)], json!({}))
        .await;
    let mark = json!({"handler": "index.mark"});
    rt.create_function("svc", "mark", "python3", &[("index.py", PY)], mark)
        .await;
    // Warm: the instance runs and the function's records are cached, so the next call reads no database.
    assert_eq!(rt.invoke("svc", "py", "warm").await.status, 200);

    let (locked, is_locked) = std::sync::mpsc::channel();
    let database = data.join("runtime.sqlite");
    let holder = std::thread::spawn(move || {
        let other = rusqlite::Connection::open(database).expect("another connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("the write lock");
        locked.send(()).expect("the test waits");
        std::thread::sleep(Duration::from_secs(2));
        other.execute_batch("COMMIT").expect("commit");
    });
    is_locked.recv().expect("locked");
    let started = std::time::Instant::now();
    let (accepted, (answer, answered_at)) = tokio::join!(
        rt.send(
            "POST",
            "/2016-08-15/services/svc/functions/mark/invocations",
            &[("x-fc-invocation-type", "Async")],
            b"late".to_vec(),
        ),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let answer = rt.invoke("svc", "py", "meanwhile").await;
            let answered_at = started.elapsed();
            // The queue's reads do not wait for the write either (a connection of their own).
            let asked = std::time::Instant::now();
            let heads = rt.runtime.storage().queue_heads().expect("the queue");
            let read_in = asked.elapsed();
            assert!(heads.is_empty(), "{heads:?}");
            assert!(
                read_in < Duration::from_millis(500),
                "reading the queue waited {read_in:?} for another request's commit"
            );
            (answer, answered_at)
        }
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(&answer.body[..], b"py:meanwhile");
    assert!(
        answered_at < Duration::from_millis(1500),
        "a sync call was answered {answered_at:?} after another request's commit began waiting (2 s)"
    );
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the async event was accepted before it could be committed"
    );
    holder.join().expect("the other writer");
    let outcomes = rt.outcomes("svc", "mark", 1, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].status, "Succeeded", "{outcomes:?}");
}

#[tokio::test]
async fn async_events_in_flight_at_a_stop_run_again_after_the_restart() {
    let dir = test_dir("rt-restart-");
    let data = dir.path().join("data");
    let rt = TestRuntime::start(&data, |_| {}).await;
    with_service(&rt).await;
    let env = json!({"handler": "index.slow_mark", "timeout": 10});
    rt.create_function("svc", "slow", "python3", &[("index.py", PY)], env)
        .await;
    let accepted = rt
        .send(
            "POST",
            "/2016-08-15/services/svc/functions/slow/invocations",
            &[("x-fc-invocation-type", "Async")],
            b"ev".to_vec(),
        )
        .await;
    assert_eq!(accepted.status, 202);
    assert!(
        wait_for_mark(
            &rt.runtime,
            "svc",
            "slow",
            "ev.started",
            Duration::from_secs(20)
        )
        .await,
        "the event started"
    );
    let count = |runtime: &chaintrigger::runtime::Runtime, mark: &str| {
        marks(runtime, "svc", "slow")
            .iter()
            .filter(|line| *line == mark)
            .count()
    };
    let first = rt.runtime.clone();
    rt.stop().await;
    assert_eq!(count(&first, "ev.done"), 0, "the stop cut the run short");

    let rt = TestRuntime::start(&data, |_| {}).await;
    let outcomes = rt.outcomes("svc", "slow", 1, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].status, "Succeeded");
    assert_eq!(count(&rt.runtime, "ev.done"), 1);
    assert_eq!(
        count(&rt.runtime, "ev.started"),
        2,
        "at least once: it ran twice"
    );
    rt.stop().await;
}

/// The runtime serves its own connections (see `runtime::serve`): a stop still answers the call in flight, then
/// closes, and the address refuses connections afterwards.
#[tokio::test]
async fn a_stop_answers_the_sync_call_in_flight_then_refuses_connections() {
    let dir = test_dir("rt-stop-sync-");
    let rt = TestRuntime::start(dir.path(), |_| {}).await;
    with_service(&rt).await;
    let env = json!({"handler": "index.hold", "timeout": 10});
    rt.create_function("svc", "hold", "python3", &[("index.py", PY)], env)
        .await;
    let caller = TestRuntime::client_for(&rt.url, false);
    let url = rt.url.clone();
    let in_flight = tokio::spawn(async move {
        caller
            .send(
                "POST",
                "/2016-08-15/services/svc/functions/hold/invocations",
                &[],
                b"call:1".to_vec(),
            )
            .await
    });
    assert!(
        wait_for_mark(&rt.runtime, "svc", "hold", "call", Duration::from_secs(20)).await,
        "the call started"
    );
    let stopping = tokio::time::Instant::now();
    rt.stop().await;
    let answer = in_flight.await.expect("the caller's task");
    assert_eq!(
        (answer.status, answer.text()),
        (200, "held".to_owned()),
        "the call in flight was answered"
    );
    assert!(
        stopping.elapsed() >= Duration::from_millis(500),
        "the stop waited for the call ({:?})",
        stopping.elapsed()
    );
    let after = reqwest::Client::new()
        .get(format!("{url}/2016-08-15/services"))
        .send()
        .await;
    assert!(after.is_err(), "served after the stop: {after:?}");
}

/// A client that sends half a request body and stops does not hold a stop up: the stop waits out its grace, then
/// closes that connection. (That a call in flight is answered is the test above.)
#[tokio::test]
async fn a_stop_is_not_held_up_by_a_client_that_never_finishes_its_body() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = test_dir("rt-stop-stalled-");
    let rt = TestRuntime::start(dir.path(), |config| {
        config.stop_grace = Duration::from_secs(1);
    })
    .await;
    with_service(&rt).await;
    rt.create_function("svc", "py", "python3", &[("index.py", PY)], json!({}))
        .await;
    let address = rt.url.trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    stalled
        .write_all(
            b"POST /2016-08-15/services/svc/functions/py/invocations HTTP/1.1\r\nHost: x\r\n\
              Content-Length: 100\r\n\r\nonly ten b",
        )
        .await
        .unwrap();
    // The request is being read: the stop must not wait for the rest of its body.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), rt.stop())
        .await
        .expect("the stop ended, though a client never finished its request");
    assert!(
        stopping.elapsed() >= Duration::from_millis(900),
        "the stop gave the request its grace ({:?})",
        stopping.elapsed()
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the stalled connection was closed");
}

#[tokio::test]
async fn signed_runtimes_refuse_unsigned_wrong_and_stale_requests() {
    let dir = test_dir("rt-auth-");
    let rt = TestRuntime::start(dir.path(), TestRuntime::signed).await;
    assert_eq!(
        rt.send("GET", "/2016-08-15/services", &[], vec![])
            .await
            .status,
        200
    );
    rt.create_service("svc").await;
    rt.create_function("svc", "py", "python3", &[("index.py", PY)], json!({}))
        .await;
    assert_eq!(rt.invoke("svc", "py", "signed").await.text(), "py:signed");

    let unsigned = reqwest::get(format!("{}/2016-08-15/services", rt.url))
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    assert_eq!(unsigned.headers()["content-type"], "application/json");
    let body: serde_json::Value = unsigned.json().await.unwrap();
    assert_eq!(body["ErrorCode"], "MissingRequiredHeader");

    let date = httpdate::fmt_http_date(SystemTime::now());
    rt.send(
        "GET",
        "/2016-08-15/services",
        &[("authorization", &format!("FC {KEY_ID}:AAAA"))],
        vec![],
    )
    .await
    .assert_error(403, "SignatureNotMatch");
    let message = rt
        .send(
            "GET",
            "/2016-08-15/services",
            &[("authorization", "FC someoneElse:AAAA"), ("date", &date)],
            vec![],
        )
        .await
        .assert_error(403, "InvalidAccessKeyID");
    assert_eq!(message, "invalid access key ID 'someoneElse'");
    let stale = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(16 * 60));
    rt.send("GET", "/2016-08-15/services", &[("date", &stale)], vec![])
        .await
        .assert_error(403, "AccessDenied");

    let code = rt
        .send(
            "GET",
            "/2016-08-15/services/svc/functions/py/code",
            &[],
            vec![],
        )
        .await
        .json();
    let url = code["url"].as_str().unwrap();
    let archive = reqwest::get(url).await.unwrap();
    assert_eq!(archive.status(), 200, "the code URL carries its own token");
    let tampered = reqwest::get(url.replace("Signature=", "Signature=x"))
        .await
        .unwrap();
    assert_eq!(tampered.status(), 403);
    rt.stop().await;
}

#[tokio::test]
async fn an_anonymous_runtime_refuses_non_loopback_addresses() {
    let dir = test_dir("rt-anon-");
    let runtime =
        chaintrigger::runtime::Runtime::open(chaintrigger::runtime::RuntimeConfig::new(dir.path()))
            .await
            .unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let error = runtime
        .run(listener, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("--allow-anonymous-non-loopback"),
        "{error}"
    );
}

#[tokio::test]
async fn functions_folder_is_deployed_at_start_and_bad_files_are_named() {
    let dir = test_dir("rt-folder-");
    let functions = dir.path().join("functions");
    let function_dir = functions.join("demo").join("hello");
    std::fs::create_dir_all(&function_dir).unwrap();
    std::fs::write(function_dir.join("index.py"), PY).unwrap();
    std::fs::write(
        function_dir.join("function.toml"),
        "runtime = \"python3\"\nhandler = \"index.handler\"\ntimeout = 5\n[environmentVariables]\nA = \"1\"\n",
    )
    .unwrap();
    let rt = TestRuntime::start(&dir.path().join("data"), |c| {
        c.functions_dir = Some(functions.clone())
    })
    .await;
    assert_eq!(rt.invoke("demo", "hello", "x").await.text(), "py:x");
    let function = rt
        .send(
            "GET",
            "/2016-08-15/services/demo/functions/hello",
            &[],
            vec![],
        )
        .await
        .json();
    assert_eq!(function["timeout"], 5);
    rt.stop().await;

    std::fs::write(
        function_dir.join("function.toml"),
        "runtime = \"python3\"\nhandler = \"index.handler\"\ntimeout = 0\n",
    )
    .unwrap();
    let mut config = chaintrigger::runtime::RuntimeConfig::new(dir.path().join("data"));
    config.functions_dir = Some(functions.clone());
    let error = chaintrigger::runtime::Runtime::open(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("function.toml") && error.contains("timeout"),
        "{error}"
    );
}

#[tokio::test]
async fn throttled_async_events_wait_for_a_slot_and_old_ones_are_dropped() {
    let dir = test_dir("rt-async-throttle-");
    let rt = TestRuntime::start(&dir.path().join("data"), |c| c.max_concurrency = 1).await;
    with_service(&rt).await;
    let env = json!({"handler": "index.mark"});
    let hold = json!({"handler": "index.hold", "timeout": 10});
    rt.create_function("svc", "hold", "python3", &[("index.py", PY)], hold)
        .await;
    rt.create_function(
        "svc",
        "patient",
        "python3",
        &[("index.py", PY)],
        env.clone(),
    )
    .await;
    rt.create_function("svc", "hasty", "python3", &[("index.py", PY)], env.clone())
        .await;
    rt.create_function("svc", "doomed", "python3", &[("index.py", PY)], env)
        .await;
    let put = rt
        .json(
            "PUT",
            "/2016-08-15/services/svc/functions/hasty/async-invoke-config",
            json!({"maxAsyncEventAgeInSeconds": 1}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let (held, ()) = tokio::join!(rt.invoke("svc", "hold", "holding:2.5"), async {
        // Queue both events while the only slot is held.
        assert!(
            wait_for_mark(
                &rt.runtime,
                "svc",
                "hold",
                "holding",
                Duration::from_secs(20)
            )
            .await
        );
        for function in ["patient", "hasty", "doomed"] {
            let accepted = rt
                .send(
                    "POST",
                    &format!("/2016-08-15/services/svc/functions/{function}/invocations"),
                    &[("x-fc-invocation-type", "Async")],
                    function.as_bytes().to_vec(),
                )
                .await;
            assert_eq!(accepted.status, 202);
        }
        let deleted = rt
            .send(
                "DELETE",
                "/2016-08-15/services/svc/functions/doomed",
                &[],
                vec![],
            )
            .await;
        assert_eq!(deleted.status, 204);
    });
    assert_eq!(held.text(), "held");
    let doomed = rt
        .outcomes("svc", "doomed", 1, Duration::from_secs(20))
        .await;
    assert_eq!(doomed[0].status, "Invalid", "{doomed:?}");
    assert!(doomed[0].detail.contains("deleted"), "{}", doomed[0].detail);
    assert!(marks(&rt.runtime, "svc", "doomed").is_empty());
    let patient = rt
        .outcomes("svc", "patient", 1, Duration::from_secs(20))
        .await;
    assert_eq!(patient[0].status, "Succeeded", "{patient:?}");
    assert_eq!(patient[0].attempts, 1, "throttling does not use up retries");
    assert_eq!(marks(&rt.runtime, "svc", "patient").len(), 1);
    let hasty = rt
        .outcomes("svc", "hasty", 1, Duration::from_secs(20))
        .await;
    assert_eq!(hasty[0].status, "Expired", "{hasty:?}");
    assert!(
        hasty[0].detail.contains("maxAsyncEventAgeInSeconds"),
        "{}",
        hasty[0].detail
    );
    assert!(
        marks(&rt.runtime, "svc", "hasty").is_empty(),
        "an expired event never runs"
    );
    rt.stop().await;
}

#[tokio::test]
async fn the_runtime_command_serves_signed_requests_and_never_logs_the_secret() {
    let dir = test_dir("rt-cli-");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "cli-secret-value-5c1f";
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args([
            "runtime",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args([
            "--access-key-id",
            "cliKey",
            "--access-key-secret-env",
            "RUNTIME_TEST_SECRET",
        ])
        .env("RUNTIME_TEST_SECRET", secret)
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
            .await
            .map(|_| text)
    });
    let client = reqwest::Client::new();
    let path = "/2016-08-15/services";
    let mut status = None;
    for _ in 0..100 {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let headers = [("date", date.as_str())];
        let parts = chaintrigger::fcsign::SignedParts {
            method: "GET",
            headers: &headers,
            path,
            queries: &[],
        };
        let request = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("date", &date)
            .header(
                "authorization",
                chaintrigger::fcsign::authorization("cliKey", secret, &parts),
            );
        if let Ok(response) = request.send().await {
            status = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Some(200));
    let wrong = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    // SAFETY: sending SIGINT to the child we spawned; it stops gracefully on it.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    let output = tokio::time::timeout(Duration::from_secs(20), async {
        (child.wait().await.unwrap(), logs.await.unwrap().unwrap())
    })
    .await
    .expect("the runtime stops on SIGINT");
    assert!(output.0.success(), "{}", output.1);
    assert!(
        output.1.contains("function runtime listening"),
        "{}",
        output.1
    );
    assert!(
        !output.1.contains(secret),
        "the secret was logged:\n{}",
        output.1
    );
}
