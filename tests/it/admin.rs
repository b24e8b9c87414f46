//! The admin HTTP API and the `chaintrigger triggers` CLI against a real server on port 0.

use std::process::Output;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::admin::{AdminServer, CHAIN_HEIGHT, TOKEN, parse_prometheus};

fn client() -> reqwest::Client {
    chaintrigger::install_crypto_provider();
    reqwest::Client::new()
}

async fn call(server: &AdminServer, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
    call_with_body(server, method, path, None).await
}

async fn call_with_body(
    server: &AdminServer,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = client()
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("the admin API answers");
    let status = response.status();
    let text = response.text().await.expect("a readable body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{status}: body is not JSON: {text}"));
    (status, body)
}

/// Asserts the documented error shape and returns the message.
fn error_message(
    status: StatusCode,
    body: &Value,
    expected_status: StatusCode,
    expected_code: &str,
) -> String {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], expected_code, "{body}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

async fn cli(server_url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"));
    command
        .arg("triggers")
        .arg("--admin")
        .arg(server_url)
        .args(args);
    command
        .env_remove("CHAINTRIGGER_ADMIN_URL")
        .env_remove("CHAINTRIGGER_ADMIN_TOKEN")
        .env("RUST_LOG", "warn");
    if let Some(token) = token {
        command.env("CHAINTRIGGER_ADMIN_TOKEN", token);
    }
    command.stdin(std::process::Stdio::null());
    command
        .output()
        .await
        .expect("the chaintrigger binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let server = AdminServer::start().await;
    let response = client()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    server.stop().await;
}

#[tokio::test]
async fn every_other_route_needs_the_right_token() {
    let server = AdminServer::start().await;
    let http = client();
    let routes = [
        ("GET", "/v1/triggers"),
        ("GET", "/v1/triggers/contracts"),
        ("POST", "/v1/triggers/contracts/disable"),
        ("DELETE", "/v1/triggers/contracts"),
        ("POST", "/v1/reload"),
        ("GET", "/metrics"),
        ("GET", "/no/such/route"),
    ];
    let longer_token = format!("Bearer {TOKEN}x");
    let credentials: [Option<&str>; 4] = [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("Basic dXNlcjpwYXNz"),
        Some(&longer_token),
    ];
    for (method, path) in routes {
        for credential in credentials {
            let mut request =
                http.request(method.parse().unwrap(), format!("{}{path}", server.url));
            if let Some(credential) = credential {
                request = request.header("authorization", credential);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {credential:?}"
            );
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    let (status, _) = call(&server, reqwest::Method::GET, "/v1/triggers/contracts").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "nothing was changed by the refused requests"
    );
    let response = http
        .get(format!("{}/v1/triggers", server.url))
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the scheme is case-insensitive"
    );
    server.stop().await;
}

#[tokio::test]
async fn list_and_show_return_the_documented_json() {
    let server = AdminServer::start().await;
    let (status, body) = call(&server, reqwest::Method::GET, "/v1/triggers").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blocks", "contracts"]);

    let (status, body) = call(&server, reqwest::Method::GET, "/v1/triggers/blocks").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "name": "blocks",
            "channel": "mychannel",
            "event_type": "Block",
            "target": "http:POST https://hooks.example.com/chain",
            "state": "Failed",
            "block_height": 4,
            "position": {"block": 5, "event_index": 1},
            "chain_height": 12,
            "lag": 7,
            "failure_count": 2,
            "failure_threshold": 1,
            "last_error": {"message": "HTTP 500 from https://hooks.example.com/chain", "at": "2026-11-21T10:00:00.250Z"},
            "delivered": 4,
            "discarded": 2,
            "retries": 6,
            "enabled_at": null,
            "owner": null
        })
    );

    let (status, body) = call(&server, reqwest::Method::GET, "/v1/channels").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["channels"][0]["name"], "mychannel");
    assert_eq!(body["channels"][0]["peer"], "peer0.org1.example.com:7051");
    assert_eq!(body["channels"][0]["reconnects"], 1);
    server.stop().await;
}

#[tokio::test]
async fn enable_takes_from_in_the_query_or_the_body() {
    let server = AdminServer::start().await;
    let enable = |path: &'static str, body: Option<&'static str>| {
        let server = &server;
        async move { call_with_body(server, reqwest::Method::POST, path, body).await }
    };

    let (status, body) = enable("/v1/triggers/blocks/enable", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "Running");
    assert_eq!(
        body["position"],
        json!({"block": CHAIN_HEIGHT, "event_index": 0}),
        "latest by default"
    );
    assert_eq!(body["failure_count"], 0, "enable resets the failure count");
    assert_eq!(body["lag"], 0);
    assert_eq!(body["enabled_at"], "2026-11-21T10:00:00.250Z");

    let (status, body) = enable("/v1/triggers/blocks/enable?from=3", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["position"], json!({"block": 3, "event_index": 0}));
    assert_eq!(body["block_height"], 2);

    let (status, body) = enable("/v1/triggers/blocks/enable?from=position", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["position"],
        json!({"block": 3, "event_index": 0}),
        "the stored position is kept"
    );

    let (status, body) = enable("/v1/triggers/blocks/enable", Some(r#"{"from": 7}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["position"]["block"], 7);

    let (status, body) = enable("/v1/triggers/blocks/enable", Some(r#"{"from": "latest"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["position"]["block"], CHAIN_HEIGHT);

    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        "/v1/triggers/blocks/disable",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "Disabled");
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors_that_say_what_was_expected() {
    let server = AdminServer::start().await;
    use reqwest::Method;

    let (status, body) = call(&server, Method::GET, "/v1/triggers/nope").await;
    assert!(error_message(status, &body, StatusCode::NOT_FOUND, "not_found").contains("\"nope\""));
    let (status, body) = call(&server, Method::POST, "/v1/triggers/nope/enable").await;
    error_message(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = call(&server, Method::GET, "/v2/everything").await;
    assert!(
        error_message(status, &body, StatusCode::NOT_FOUND, "not_found").contains("/v2/everything")
    );

    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/triggers/blocks/enable?from=yesterday",
    )
    .await;
    let message = error_message(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        message.contains("`latest`, `position` or a block number"),
        "{message}"
    );
    let (status, body) = call(&server, Method::POST, "/v1/triggers/blocks/enable?start=1").await;
    let message = error_message(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("unknown field `start`"), "{message}");
    let (status, body) = call_with_body(
        &server,
        Method::POST,
        "/v1/triggers/blocks/enable",
        Some("{from: 1"),
    )
    .await;
    let message = error_message(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("JSON object like"), "{message}");
    let (status, body) = call(&server, Method::POST, "/v1/triggers/blocks/enable?from=99").await;
    let message = error_message(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("beyond the chain height"), "{message}");

    let (status, body) = call(
        &server,
        Method::GET,
        "/v1/triggers/blocks/dead-letters?limit=0",
    )
    .await;
    let message = error_message(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("between 1 and 1000"), "{message}");
    let (status, body) = call(
        &server,
        Method::GET,
        "/v1/triggers/blocks/dead-letters?after=first",
    )
    .await;
    error_message(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/triggers/blocks/dead-letters/x1/repush",
    )
    .await;
    let message = error_message(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("dead letter id"), "{message}");
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/triggers/blocks/dead-letters/99/repush",
    )
    .await;
    error_message(status, &body, StatusCode::NOT_FOUND, "not_found");

    let response = client()
        .put(format!("{}/v1/triggers/blocks", server.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let (status, body) = call(&server, Method::GET, "/v1/triggers/%FF").await;
    error_message(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let response = client()
        .post(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let huge = format!(r#"{{"from": "{}"}}"#, "9".repeat(100 * 1024));
    let (status, body) = call_with_body(
        &server,
        Method::POST,
        "/v1/triggers/blocks/enable",
        Some(&huge),
    )
    .await;
    error_message(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    let (status, body) = call(&server, Method::DELETE, "/v1/triggers/contracts").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"deleted": "contracts"}))
    );
    let (status, body) = call(&server, Method::POST, "/v1/triggers/contracts/enable").await;
    assert!(error_message(status, &body, StatusCode::CONFLICT, "conflict").contains("deleted"));
    let (status, body) = call(&server, Method::GET, "/v1/triggers/contracts").await;
    error_message(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (_, body) = call(&server, Method::GET, "/v1/triggers").await;
    assert_eq!(
        body["triggers"].as_array().unwrap().len(),
        1,
        "a deleted trigger is not listed"
    );

    server
        .engine
        .set_reload_answer(Err(chaintrigger::admin::ControlError::ConfigRejected(
            "chaintrigger.toml line 12, triggers[1].filter: the jq filter does not compile".into(),
        )));
    let (status, body) = call(&server, Method::POST, "/v1/reload").await;
    let message = error_message(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "config_rejected",
    );
    assert!(message.contains("line 12"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn dead_letters_page_and_repush() {
    let server = AdminServer::start().await;
    use reqwest::Method;
    let (status, body) = call(
        &server,
        Method::GET,
        "/v1/triggers/blocks/dead-letters?limit=1",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dead_letters"].as_array().unwrap().len(), 1);
    assert_eq!(body["dead_letters"][0]["event_id"], "block-3");
    assert_eq!(body["dead_letters"][0]["payload"], json!({"number": 3}));
    assert_eq!(body["next_after"], 1);
    let (_, body) = call(
        &server,
        Method::GET,
        "/v1/triggers/blocks/dead-letters?after=1&limit=1",
    )
    .await;
    assert_eq!(body["dead_letters"][0]["id"], 2);
    let (_, body) = call(
        &server,
        Method::GET,
        "/v1/triggers/blocks/dead-letters?after=1",
    )
    .await;
    assert_eq!(body["next_after"], Value::Null, "a short page is the last");

    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/triggers/blocks/dead-letters/1/repush",
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"id": 1, "delivered": true, "error": null})
        )
    );
    let (status, body) = call(
        &server,
        Method::POST,
        "/v1/triggers/blocks/dead-letters/repush",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["outcomes"].as_array().unwrap().len(),
        1,
        "the delivered one is skipped"
    );
    assert_eq!(body["outcomes"][0]["delivered"], false);
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_with_series_for_each_trigger() {
    let server = AdminServer::start().await;
    let response = client()
        .get(format!("{}/metrics", server.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let samples = parse_prometheus(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| {
        let found: Vec<f64> = samples
            .iter()
            .filter(|sample| {
                sample.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(v))
            })
            .map(|sample| sample.value)
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?} in\n{text}");
        found[0]
    };
    for trigger in ["contracts", "blocks"] {
        let states: f64 = ["running", "exception", "failed", "disabled"]
            .iter()
            .map(|state| {
                value(
                    "chaintrigger_trigger_state",
                    &[("trigger", trigger), ("state", state)],
                )
            })
            .sum();
        assert_eq!(states, 1.0, "{trigger} is in exactly one state");
        for name in [
            "chaintrigger_trigger_block_height",
            "chaintrigger_trigger_lag_blocks",
            "chaintrigger_trigger_delivered_total",
            "chaintrigger_trigger_discarded_total",
            "chaintrigger_trigger_retries_total",
            "chaintrigger_trigger_invoke_duration_seconds_count",
        ] {
            value(name, &[("trigger", trigger), ("channel", "mychannel")]);
        }
    }
    assert_eq!(
        value(
            "chaintrigger_trigger_state",
            &[("trigger", "blocks"), ("state", "failed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "chaintrigger_trigger_block_height",
            &[("trigger", "blocks")]
        ),
        4.0
    );
    assert_eq!(
        value("chaintrigger_trigger_lag_blocks", &[("trigger", "blocks")]),
        7.0
    );
    assert_eq!(
        value(
            "chaintrigger_trigger_discarded_total",
            &[("trigger", "blocks")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "chaintrigger_trigger_retries_total",
            &[("trigger", "contracts")]
        ),
        2.0
    );
    let bucket = "chaintrigger_trigger_invoke_duration_seconds_bucket";
    assert_eq!(
        value(bucket, &[("trigger", "contracts"), ("le", "0.005")]),
        1.0
    );
    assert_eq!(
        value(bucket, &[("trigger", "contracts"), ("le", "+Inf")]),
        2.0
    );
    assert_eq!(
        value(
            "chaintrigger_trigger_invoke_duration_seconds_sum",
            &[("trigger", "contracts")]
        ),
        0.043
    );
    assert_eq!(
        value(
            "chaintrigger_channel_chain_height",
            &[("channel", "mychannel")]
        ),
        CHAIN_HEIGHT as f64
    );
    assert_eq!(
        value(
            "chaintrigger_channel_stream_reconnects_total",
            &[("channel", "mychannel")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "chaintrigger_channel_connected",
            &[("channel", "mychannel")]
        ),
        1.0
    );
    server.stop().await;
}

#[test]
fn the_metrics_checker_rejects_malformed_text() {
    for bad in [
        "chaintrigger_x 1\n",
        "# TYPE a gauge\na{b=\"c} 1\n",
        "# TYPE a gauge\na{b=\"\\q\"} 1\n",
        "# TYPE a gauge\na one\n",
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
    ] {
        assert!(parse_prometheus(bad).is_err(), "{bad:?} was accepted");
    }
    let good = "# HELP a A.\n# TYPE a gauge\na{x=\"q\\\"\\\\\\n\",y=\"\"} 1.5\n";
    let samples = parse_prometheus(good).unwrap();
    assert_eq!(samples[0].labels["x"], "q\"\\\n");
}

#[tokio::test]
async fn cli_list_prints_a_table_or_the_raw_json() {
    let server = AdminServer::start().await;
    let output = cli(&server.url, Some(TOKEN), &["list"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    for column in [
        "NAME",
        "CHANNEL",
        "TYPE",
        "STATE",
        "HEIGHT/CHAIN",
        "LAG",
        "FAILURES",
        "DELIVERED",
        "LAST ERROR",
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    let blocks: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &blocks[..9],
        [
            "blocks",
            "mychannel",
            "Block",
            "Failed",
            "4/12",
            "7",
            "2/1",
            "4",
            "2"
        ],
        "{table}"
    );
    assert!(lines[1].contains("HTTP 500 from"), "{table}");
    assert!(lines[2].starts_with("contracts "), "{table}");

    let output = cli(&server.url, Some(TOKEN), &["list", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let body: Value = serde_json::from_str(&stdout(&output)).expect("--json prints JSON");
    assert_eq!(body["triggers"][0]["name"], "blocks");

    let output = cli(&server.url, Some(TOKEN), &["show", "blocks"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("position      block 5 event 1"),
        "{}",
        stdout(&output)
    );

    let output = cli(&server.url, Some(TOKEN), &["channels"]).await;
    assert!(
        stdout(&output).contains("peer0.org1.example.com:7051"),
        "{}",
        stdout(&output)
    );
    server.stop().await;
}

#[tokio::test]
async fn cli_commands_change_triggers_and_exit_non_zero_on_errors() {
    let server = AdminServer::start().await;

    let output = cli(
        &server.url,
        Some(TOKEN),
        &["enable", "blocks", "--from", "position"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "enabled blocks from position: Running at block 5 event 1\n"
    );
    let output = cli(
        &server.url,
        Some(TOKEN),
        &["enable", "blocks", "--from", "2"],
    )
    .await;
    assert!(
        stdout(&output).contains("at block 2 event 0"),
        "{}",
        stdout(&output)
    );
    let output = cli(&server.url, Some(TOKEN), &["disable", "blocks"]).await;
    assert!(stdout(&output).contains("Disabled"), "{}", stdout(&output));

    let output = cli(&server.url, Some(TOKEN), &["enable", "ghost"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no trigger named \"ghost\" [404 not_found]"),
        "{}",
        stderr(&output)
    );

    let output = cli(
        &server.url,
        Some(TOKEN),
        &["enable", "blocks", "--from", "soon"],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("`latest`, `position` or a block number"),
        "{}",
        stderr(&output)
    );

    let output = cli(&server.url, Some(TOKEN), &["delete", "contracts"]).await;
    assert!(
        !output.status.success(),
        "no --yes and no terminal: refused"
    );
    assert!(
        stderr(&output).contains("without --yes"),
        "{}",
        stderr(&output)
    );
    let output = cli(&server.url, Some(TOKEN), &["delete", "contracts", "--yes"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let output = cli(&server.url, Some(TOKEN), &["disable", "contracts"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("[409 conflict]"),
        "{}",
        stderr(&output)
    );

    let output = cli(&server.url, Some(TOKEN), &["dead-letters", "blocks"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let listing = stdout(&output);
    assert!(listing.starts_with("ID "), "{listing}");
    assert!(
        listing.contains("block-3") && listing.contains("block-4"),
        "{listing}"
    );
    let output = cli(
        &server.url,
        Some(TOKEN),
        &["dead-letters", "blocks", "--repush", "1"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "dead letter 1: delivered\n");
    let output = cli(
        &server.url,
        Some(TOKEN),
        &["dead-letters", "blocks", "--repush-all"],
    )
    .await;
    assert!(
        !output.status.success(),
        "a dead letter that fails again is an error"
    );
    assert!(
        stdout(&output).contains("dead letter 2: not delivered: HTTP 500"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("1 of 1 dead letters were not delivered"),
        "{}",
        stderr(&output)
    );

    let output = cli(&server.url, Some(TOKEN), &["reload"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("added          new-one"),
        "{}",
        stdout(&output)
    );
    server.stop().await;
}

#[tokio::test]
async fn cli_explains_missing_or_wrong_tokens_and_unreachable_daemons() {
    let server = AdminServer::start().await;
    let output = cli(&server.url, None, &["list"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("set the environment variable CHAINTRIGGER_ADMIN_TOKEN"),
        "{}",
        stderr(&output)
    );

    let output = cli(&server.url, Some("wrong-token-0123456789"), &["list"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("check the admin token"),
        "{}",
        stderr(&output)
    );

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let output = cli(
        &server.url,
        None,
        &["--token-file", token_file.to_str().unwrap(), "list"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));

    let url = server.url.clone();
    server.stop().await;
    let output = cli(&url, Some(TOKEN), &["list"]).await;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!("cannot connect to the admin API at {url}")),
        "{message}"
    );
}

/// Collects log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("no test panics while holding the lock")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_the_log_but_refusals_do() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime is single-threaded, so the server's tasks log through this subscriber too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = AdminServer::start().await;
    let wrong = "wrong-token-that-must-not-be-logged";
    let response = client()
        .get(format!("{}/v1/triggers", server.url))
        .bearer_auth(wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &server,
        reqwest::Method::POST,
        "/v1/triggers/blocks/disable",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("admin request refused: the bearer token is not valid"),
        "{text}"
    );
    assert!(
        text.contains("trigger disabled over the admin API"),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}
