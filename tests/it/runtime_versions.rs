//! Service versions and aliases in the bundled runtime: published code and configuration stay as published,
//! invocations reach the version or alias their qualifier names (weighted between an alias's two versions), the
//! daemon's Function Compute target follows an alias as it moves, and forged qualifiers and weights are refused.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::{
    Daemon, DaemonFiles, Functions, Network, PATIENCE, SERVICE, TriggerSpec, eventually,
    expected_ids,
};
use crate::support::runtime::{
    Reply, TestRuntime, install_node_sdk, install_python_sdk, run_sdk_script, test_dir, zip,
};

/// A Python handler answering `<tag>:<event>`.
fn tagged(tag: &str) -> String {
    format!("def handler(event, context):\n    return b'{tag}:' + event\n")
}

async fn invoke_at(rt: &TestRuntime, segment: &str, function: &str, payload: &str) -> Reply {
    rt.send(
        "POST",
        &format!("/2016-08-15/services/{segment}/functions/{function}/invocations"),
        &[("content-type", "application/octet-stream")],
        payload.as_bytes().to_vec(),
    )
    .await
}

async fn update_code(rt: &TestRuntime, function: &str, source: &str, extra: Value) -> Value {
    use base64::Engine as _;
    let mut body = json!({"code": {"zipFile": base64::engine::general_purpose::STANDARD
        .encode(zip(&[("index.py", source)]))}});
    if let Value::Object(extra) = extra {
        body.as_object_mut().expect("object").extend(extra);
    }
    let reply = rt
        .json(
            "PUT",
            &format!("/2016-08-15/services/svc/functions/{function}"),
            body,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

async fn publish(rt: &TestRuntime, description: &str) -> Reply {
    rt.json(
        "POST",
        "/2016-08-15/services/svc/versions",
        json!({"description": description}),
    )
    .await
}

/// A runtime (signed, or anonymous where a test sends paths the test client cannot sign) with `svc/f`.
async fn start_with_function(signed: bool) -> (tempfile::TempDir, TestRuntime) {
    let dir = test_dir("rt-versions-");
    let rt = TestRuntime::start(&dir.path().join("data"), |config| {
        if signed {
            TestRuntime::signed(config);
        }
    })
    .await;
    rt.create_service("svc").await;
    rt.create_function(
        "svc",
        "f",
        "python3",
        &[("index.py", &tagged("one"))],
        json!({"timeout": 5, "environmentVariables": {"STAGE": "one"}}),
    )
    .await;
    (dir, rt)
}

#[tokio::test]
async fn a_published_version_keeps_its_code_and_configuration() {
    let (dir, rt) = start_with_function(true).await;
    let first = rt
        .json("GET", "/2016-08-15/services/svc/functions/f", Value::Null)
        .await
        .json();
    let published = publish(&rt, "first release").await;
    assert_eq!(published.status, 200, "{}", published.text());
    let v1 = published.json();
    assert_eq!(v1["versionId"], "1");
    assert_eq!(v1["description"], "first release");
    assert!(v1["createdTime"].as_str().unwrap().ends_with('Z'), "{v1}");
    let message = publish(&rt, "again")
        .await
        .assert_error(400, "InvalidArgument");
    assert!(
        message.contains("nothing changed since version 1"),
        "{message}"
    );

    let updated = update_code(
        &rt,
        "f",
        &tagged("two"),
        json!({"timeout": 9, "environmentVariables": {"STAGE": "two"}}),
    )
    .await;
    assert_ne!(updated["codeChecksum"], first["codeChecksum"]);
    assert_eq!(publish(&rt, "second").await.json()["versionId"], "2");

    // Each qualifier runs its own code; the response says which version ran.
    for (segment, answer, version) in [
        ("svc", "two:x", "LATEST"),
        ("svc.LATEST", "two:x", "LATEST"),
        ("svc.1", "one:x", "1"),
        ("svc.2", "two:x", "2"),
    ] {
        let reply = invoke_at(&rt, segment, "f", "x").await;
        assert_eq!(reply.status, 200, "{segment}: {}", reply.text());
        assert_eq!(reply.text(), answer, "{segment}");
        assert_eq!(
            reply.header("x-fc-invocation-service-version"),
            Some(version)
        );
    }
    // GetFunction / GetFunctionCode / GetService / ListFunctions at a version show what was published.
    let at_1 = rt
        .json("GET", "/2016-08-15/services/svc.1/functions/f", Value::Null)
        .await
        .json();
    assert_eq!(at_1["timeout"], 5);
    assert_eq!(at_1["environmentVariables"]["STAGE"], "one");
    assert_eq!(at_1["codeChecksum"], first["codeChecksum"]);
    let code = rt
        .json(
            "GET",
            "/2016-08-15/services/svc.1/functions/f/code",
            Value::Null,
        )
        .await
        .json();
    assert_eq!(code["checksum"], first["codeChecksum"]);
    let service = rt
        .json("GET", "/2016-08-15/services/svc.1", Value::Null)
        .await
        .json();
    assert_eq!(service["description"], "first release");
    let listed = rt
        .json("GET", "/2016-08-15/services/svc.2/functions", Value::Null)
        .await
        .json();
    assert_eq!(listed["functions"][0]["timeout"], 9);

    // A version cannot be changed through its qualifier.
    rt.json(
        "PUT",
        "/2016-08-15/services/svc.1/functions/f",
        json!({"timeout": 30}),
    )
    .await
    .assert_error(400, "InvalidArgument");
    rt.send(
        "DELETE",
        "/2016-08-15/services/svc.1/functions/f",
        &[],
        vec![],
    )
    .await
    .assert_error(400, "InvalidArgument");

    // Deleting the function on LATEST (and collecting unused code) leaves the versions running.
    let reply = rt
        .send(
            "DELETE",
            "/2016-08-15/services/svc/functions/f",
            &[],
            vec![],
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    invoke_at(&rt, "svc", "f", "x")
        .await
        .assert_error(404, "FunctionNotFound");
    assert_eq!(invoke_at(&rt, "svc.1", "f", "x").await.text(), "one:x");
    let first_code = dir
        .path()
        .join("data/code")
        .join(first["codeChecksum"].as_str().unwrap());
    assert!(first_code.is_dir(), "version 1 keeps its code");

    // Versions: newest first by default, paged, and FORWARD on request.
    let list = |query: &'static str| {
        let rt = &rt;
        async move {
            rt.json(
                "GET",
                &format!("/2016-08-15/services/svc/versions{query}"),
                Value::Null,
            )
            .await
            .json()
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["versionId"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = list("?limit=1").await;
    assert_eq!(ids(&page), ["2"]);
    assert_eq!(page["nextToken"], "1");
    assert_eq!(ids(&list("?nextToken=1").await), ["1"]);
    assert_eq!(ids(&list("?direction=FORWARD").await), ["1", "2"]);
    rt.json(
        "GET",
        "/2016-08-15/services/svc/versions?direction=SIDEWAYS",
        Value::Null,
    )
    .await
    .assert_error(400, "InvalidArgument");

    // A service with versions cannot be deleted; deleted version numbers are not reused.
    rt.send("DELETE", "/2016-08-15/services/svc", &[], vec![])
        .await
        .assert_error(409, "ServiceNotEmpty");
    let reply = rt
        .send("DELETE", "/2016-08-15/services/svc/versions/1", &[], vec![])
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(
        !first_code.exists(),
        "code no version uses any more is removed"
    );
    invoke_at(&rt, "svc.1", "f", "x")
        .await
        .assert_error(404, "VersionNotFound");
    rt.send("DELETE", "/2016-08-15/services/svc/versions/1", &[], vec![])
        .await
        .assert_error(404, "VersionNotFound");
    rt.send("DELETE", "/2016-08-15/services/svc/versions/2", &[], vec![])
        .await;
    let third = publish(&rt, "after deletes").await.json();
    assert_eq!(third["versionId"], "3", "numbers are never reused");
    rt.send("DELETE", "/2016-08-15/services/svc/versions/3", &[], vec![])
        .await;
    let reply = rt
        .send("DELETE", "/2016-08-15/services/svc", &[], vec![])
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    rt.stop().await;
}

#[tokio::test]
async fn an_alias_routes_by_weight_and_follows_its_updates() {
    let (_dir, rt) = start_with_function(true).await;
    publish(&rt, "one").await;
    update_code(&rt, "f", &tagged("two"), Value::Null).await;
    publish(&rt, "two").await;

    let created = rt
        .json(
            "POST",
            "/2016-08-15/services/svc/aliases",
            json!({"aliasName": "prod", "versionId": "1", "description": "canary",
                   "additionalVersionWeight": {"2": 0.5}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let alias = created.json();
    assert_eq!(alias["versionId"], "1");
    assert_eq!(alias["additionalVersionWeight"], json!({"2": 0.5}));
    assert!(created.header("etag").is_some());
    rt.json(
        "POST",
        "/2016-08-15/services/svc/aliases",
        json!({"aliasName": "prod", "versionId": "1"}),
    )
    .await
    .assert_error(409, "AliasAlreadyExists");
    rt.json(
        "POST",
        "/2016-08-15/services/svc/aliases",
        json!({"aliasName": "next", "versionId": "7"}),
    )
    .await
    .assert_error(404, "VersionNotFound");

    // Half the calls go to each version (80 calls: both sides get at least 15 unless something is wrong).
    let mut ones = 0;
    let mut twos = 0;
    for _ in 0..80 {
        let reply = invoke_at(&rt, "svc.prod", "f", "x").await;
        match reply.text().as_str() {
            "one:x" => ones += 1,
            "two:x" => twos += 1,
            other => panic!("unexpected answer {other}"),
        }
    }
    assert!(ones >= 15 && twos >= 15, "one: {ones}, two: {twos}");
    // Reads through the alias show its primary version.
    let at_alias = rt
        .json(
            "GET",
            "/2016-08-15/services/svc.prod/functions/f/code",
            Value::Null,
        )
        .await
        .json();
    let at_1 = rt
        .json(
            "GET",
            "/2016-08-15/services/svc.1/functions/f/code",
            Value::Null,
        )
        .await
        .json();
    assert_eq!(at_alias["checksum"], at_1["checksum"]);

    // Moved to version 2 without a weight: every call goes there; the header form of the qualifier works too.
    let moved = rt
        .json(
            "PUT",
            "/2016-08-15/services/svc/aliases/prod",
            json!({"versionId": "2", "additionalVersionWeight": {}}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    assert_eq!(
        moved.json()["description"],
        "canary",
        "unchanged fields stay"
    );
    for _ in 0..10 {
        assert_eq!(invoke_at(&rt, "svc.prod", "f", "x").await.text(), "two:x");
    }
    let reply = rt
        .send(
            "POST",
            "/2016-08-15/services/svc/functions/f/invocations",
            &[("x-fc-qualifier", "1")],
            b"h".to_vec(),
        )
        .await;
    assert_eq!(reply.text(), "one:h");

    // An async call through the alias runs the version the alias named when it was accepted.
    let accepted = rt
        .send(
            "POST",
            "/2016-08-15/services/svc.prod/functions/f/invocations",
            &[("x-fc-invocation-type", "Async")],
            b"later".to_vec(),
        )
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let outcomes = rt.outcomes("svc", "f", 1, Duration::from_secs(30)).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].status, "Succeeded", "{outcomes:?}");

    let listed = rt
        .json("GET", "/2016-08-15/services/svc/aliases", Value::Null)
        .await
        .json();
    assert_eq!(listed["aliases"].as_array().unwrap().len(), 1);
    let got = rt
        .json("GET", "/2016-08-15/services/svc/aliases/prod", Value::Null)
        .await;
    assert_eq!(got.json()["versionId"], "2");
    rt.send(
        "DELETE",
        "/2016-08-15/services/svc/aliases/prod",
        &[("if-match", "0000")],
        vec![],
    )
    .await
    .assert_error(412, "PreconditionFailed");
    let reply = rt
        .send(
            "DELETE",
            "/2016-08-15/services/svc/aliases/prod",
            &[],
            vec![],
        )
        .await;
    assert_eq!(reply.status, 204);
    invoke_at(&rt, "svc.prod", "f", "x")
        .await
        .assert_error(404, "AliasNotFound");
    rt.stop().await;
}

/// Qualifiers, alias names, versions and weights are input from the network: each forged one is refused with a
/// message, and nothing is created.
#[tokio::test]
async fn forged_qualifiers_and_weights_are_refused() {
    let (_dir, rt) = start_with_function(false).await;
    publish(&rt, "one").await;
    for (segment, status, code) in [
        ("svc.1.2", 400, "InvalidArgument"),
        ("svc.", 400, "InvalidArgument"),
        ("svc.-1", 400, "InvalidArgument"),
        ("svc.%2e%2e", 400, "InvalidArgument"),
        ("svc.a%2Fb", 400, "InvalidArgument"),
        ("svc.99999999999999999999999999", 404, "VersionNotFound"),
        ("svc.0", 404, "VersionNotFound"),
        ("svc.nosuch", 404, "AliasNotFound"),
        ("other.1", 404, "ServiceNotFound"),
    ] {
        invoke_at(&rt, segment, "f", "x")
            .await
            .assert_error(status, code);
    }
    let long = "a".repeat(129);
    invoke_at(&rt, &format!("svc.{long}"), "f", "x")
        .await
        .assert_error(400, "InvalidArgument");
    let reply = rt
        .send(
            "POST",
            "/2016-08-15/services/svc.1/functions/f/invocations",
            &[("x-fc-qualifier", "prod")],
            vec![],
        )
        .await;
    let message = reply.assert_error(400, "InvalidArgument");
    assert!(message.contains("X-Fc-Qualifier"), "{message}");

    for (body, says) in [
        (
            json!({"aliasName": "a", "versionId": "1", "additionalVersionWeight": {"1": 1.5}}),
            "from 0 to 1",
        ),
        (
            json!({"aliasName": "a", "versionId": "1", "additionalVersionWeight": {"1": -0.5}}),
            "from 0 to 1",
        ),
        (
            json!({"aliasName": "a", "versionId": "1", "additionalVersionWeight": {"1": "half"}}),
            "from 0 to 1",
        ),
        (
            json!({"aliasName": "a", "versionId": "1", "additionalVersionWeight": {"1": 0.1, "2": 0.1}}),
            "at most one",
        ),
        (
            json!({"aliasName": "a", "versionId": "1", "additionalVersionWeight": {"../1": 0.1}}),
            "not a version number",
        ),
        (json!({"aliasName": "a", "versionId": "one"}), "versionId"),
        (json!({"aliasName": "a", "versionId": ["1"]}), "versionId"),
        (json!({"aliasName": "LATEST", "versionId": "1"}), "LATEST"),
        (json!({"aliasName": "9lives", "versionId": "1"}), "alias"),
        (json!({"aliasName": "a.b", "versionId": "1"}), "alias"),
        (json!({"versionId": "1"}), "aliasName"),
        (json!({"aliasName": "a"}), "versionId"),
        (
            json!({"aliasName": "a", "versionId": "1", "routing": "all"}),
            "unknown field",
        ),
    ] {
        let reply = rt
            .json("POST", "/2016-08-15/services/svc/aliases", body.clone())
            .await;
        let message = reply.assert_error(400, "InvalidArgument");
        assert!(message.contains(says), "{body}: {message}");
    }
    rt.json(
        "POST",
        "/2016-08-15/services/svc/aliases",
        json!({"aliasName": "a", "versionId": "1", "additionalVersionWeight": {"2": 0.5}}),
    )
    .await
    .assert_error(404, "VersionNotFound");
    rt.send(
        "DELETE",
        "/2016-08-15/services/svc/versions/x1",
        &[],
        vec![],
    )
    .await
    .assert_error(400, "InvalidArgument");
    let listed = rt
        .json("GET", "/2016-08-15/services/svc/aliases", Value::Null)
        .await
        .json();
    assert_eq!(listed["aliases"], json!([]), "nothing was created");
    rt.stop().await;
}

/// Runs one SDK script (tests/sdk/) against a fresh signed runtime whose timers may fire every second, installing
/// the SDK first.
pub(crate) async fn sdk_script(program: &str, script: &str) {
    let install = if program == "node" {
        install_node_sdk
    } else {
        install_python_sdk
    };
    tokio::task::spawn_blocking(install)
        .await
        .expect("install the SDK");
    let dir = test_dir("rt-sdk-script-");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("scratch folder");
    let rt = TestRuntime::start(&dir.path().join("data"), |config| {
        TestRuntime::signed(config);
        config.timer_min_interval = Duration::from_secs(1);
    })
    .await;
    run_sdk_script(&rt, &work, program, script).await;
    rt.stop().await;
}

/// Every version and alias call of the Python SDK (aliyun-fc2).
#[tokio::test]
async fn python_sdk_publishes_versions_and_routes_aliases() {
    sdk_script("python3", "tests/sdk/python/test_versions.py").await;
}

/// Every version and alias call of the Node.js SDK (@alicloud/fc2).
#[tokio::test]
async fn node_sdk_publishes_versions_and_routes_aliases() {
    sdk_script("node", "tests/sdk/node/test_versions.js").await;
}

/// A Node handler that notes which code answered each event (`MARK <tag> <event id>`).
fn marking(tag: &str) -> String {
    format!(
        "exports.handler = (event, context, callback) => {{\n  const id = JSON.parse(event.toString()).id;\n  \
         process.stdout.write('MARK {tag} ' + id + '\\n');\n  callback(null, 'ok');\n}};\n"
    )
}

/// The daemon's Function Compute target with `qualifier = "live"`: events go to the version the alias names, and
/// when the alias moves mid-stream the next events go to the new version, each event exactly once.
#[tokio::test]
async fn a_trigger_on_an_alias_follows_the_alias_when_it_moves() {
    use base64::Engine as _;
    let network = Network::start(None).await;
    let functions = Functions::start().await;
    let rt = &functions.runtime;
    rt.create_function(
        SERVICE,
        "canary",
        "nodejs20",
        &[("index.js", &marking("one"))],
        json!({}),
    )
    .await;
    let publish_in = |description: &'static str| async move {
        let reply = rt
            .json(
                "POST",
                &format!("/2016-08-15/services/{SERVICE}/versions"),
                json!({"description": description}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    publish_in("one").await;
    let reply = rt
        .json(
            "PUT",
            &format!("/2016-08-15/services/{SERVICE}/functions/canary"),
            json!({"code": {"zipFile": base64::engine::general_purpose::STANDARD
                .encode(zip(&[("index.js", &marking("two"))]))}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    publish_in("two").await;
    let reply = rt
        .json(
            "POST",
            &format!("/2016-08-15/services/{SERVICE}/aliases"),
            json!({"aliasName": "live", "versionId": "1"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let files = DaemonFiles::new();
    let start = network.height();
    let mut trigger = TriggerSpec::new(
        "canary",
        "Tx",
        format!(
            "{}qualifier = \"live\"\n",
            functions.target_toml("canary", &files.fc_secret())
        ),
    );
    trigger.start = Some(start);
    files.write_config(&network, &[trigger]);
    let daemon = Daemon::start(&files).await;

    let first = network.generate(2);
    daemon.admin.wait_position("canary", first + 1).await;
    let before = expected_ids(network.handle(), "Tx", start, first + 1);
    assert!(!before.is_empty());
    let calls = functions.calls("canary");
    let wanted: Vec<String> = before.iter().map(|id| format!("one {id}")).collect();
    assert_eq!(calls, wanted, "every event went to version 1, once");

    let moved = rt
        .json(
            "PUT",
            &format!("/2016-08-15/services/{SERVICE}/aliases/live"),
            json!({"versionId": "2"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    let last = network.generate(2);
    daemon.admin.wait_position("canary", last + 1).await;
    let after = expected_ids(network.handle(), "Tx", first + 1, last + 1);
    assert!(!after.is_empty());
    let calls = eventually("the calls after the move", PATIENCE, || {
        let calls = functions.calls("canary");
        std::future::ready((calls.len() >= before.len() + after.len()).then_some(calls))
    })
    .await;
    let mut wanted = wanted;
    wanted.extend(after.iter().map(|id| format!("two {id}")));
    assert_eq!(
        calls, wanted,
        "after the move every event went to version 2, once"
    );
    let status = daemon.admin.wait_position("canary", last + 1).await;
    assert_eq!(status["state"], "Running", "{status}");
}
