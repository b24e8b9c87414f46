//! The filter tester (`chaintrigger filter test`, `POST /v1/filters/test`) against the real daemon, the peer
//! simulator over TLS serving the recorded Fabric v2.5 blocks, and what a trigger with the same filter really
//! pushes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::daemon::{
    ADMIN_TOKEN, Daemon, DaemonFiles, Network, Receiver, TriggerSpec, run_cli,
};

/// A jq filter in BaaS style: valid transactions reshaped, two outputs each (to see several payloads per event).
const TX_FILTER: &str =
    r#"select(.content.state == "VALID") | {event: .id, tx: .content.id}, {kind: .type}"#;

/// The recorded chain: blocks 0 to 23.
const RECORDED: u64 = 24;

async fn post_test(admin_url: &str, body: &Value) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{admin_url}/v1/filters/test"))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .expect("the admin API answers");
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON answer");
    (status, body, started.elapsed())
}

fn request(filter: &str, from: u64, to: u64) -> Value {
    json!({"channel": "mychannel", "event": "Tx", "filter": filter, "language": "jq",
           "include_invalid": false, "from": from, "to": to})
}

/// Runs `chaintrigger filter test <args>`; returns (success, stdout, stderr).
async fn filter_test(args: &[&str]) -> (bool, String, String) {
    let all: Vec<&str> = ["filter", "test"].iter().chain(args).copied().collect();
    run_cli(&all).await
}

/// The daemon with one trigger, `txs`, pushing [`TX_FILTER`]'s outputs from block 0 to the receiver.
async fn daemon(network: &Network, receiver: &Receiver) -> (DaemonFiles, Daemon) {
    let files = DaemonFiles::new();
    let mut txs = TriggerSpec::new("txs", "Tx", receiver.target_toml("txs"));
    txs.filter = Some(("jq", TX_FILTER.to_owned()));
    files.write_config(network, &[txs]);
    let daemon = Daemon::start(&files).await;
    (files, daemon)
}

#[tokio::test]
async fn the_tester_shows_exactly_what_a_trigger_with_the_filter_pushes() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let (files, daemon) = daemon(&network, &receiver).await;
    daemon.admin.wait_position("txs", RECORDED).await;
    let pushed: Vec<(String, Value)> = receiver
        .pushes("txs")
        .into_iter()
        .map(|push| (push.event_id, push.payload))
        .collect();
    assert!(!pushed.is_empty());

    let (status, answer, _) =
        post_test(&files.admin_url(), &request(TX_FILTER, 0, RECORDED - 1)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["held"], false);
    let events = answer["events"].as_array().expect("events");
    let tested: Vec<(String, Value)> = events
        .iter()
        .flat_map(|event| {
            let id = event["id"].as_str().unwrap().to_owned();
            event["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |output| (id.clone(), output.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(tested, pushed, "payload for payload, in order");
    // Every event of the blocks is there, with why nothing is pushed for the others.
    let reasons = |reason: &str| events.iter().filter(|e| e["reason"] == reason).count();
    assert!(
        reasons("not_of_type") > 0 && reasons("filtered_out") > 0,
        "{answer}"
    );
    for event in events {
        assert!(event["block"].is_u64() && event["index"].is_u64() && event["error"].is_null());
        if event["reason"] == "pushed" {
            assert_eq!(event["type"], "Tx");
        }
    }

    // The CLI with the configuration's trigger and identity reads the same blocks from the peer: the same events.
    let config = files.config_path();
    let (ok, stdout, stderr) = filter_test(&[
        "--config",
        config.to_str().unwrap(),
        "--trigger",
        "txs",
        "--channel-blocks",
        "0..23",
        "--json",
    ])
    .await;
    assert!(ok, "{stderr}");
    let cli: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(cli["events"], answer["events"]);

    // And readable: each pushed payload pretty-printed under its event, the others with their reason.
    let (ok, stdout, stderr) = filter_test(&[
        "--config",
        config.to_str().unwrap(),
        "--trigger",
        "txs",
        "--channel-blocks",
        "11..12",
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("block 11 event 1  Tx  tx-11-"), "{stdout}");
    assert!(
        stdout.contains("  payload 2:\n    {\n      \"kind\": \"Tx\""),
        "{stdout}"
    );
    assert!(stdout.contains("nothing pushed: filtered out"), "{stdout}");
    assert!(
        stdout.contains(": not of the trigger's event type"),
        "{stdout}"
    );
    daemon.terminate().await;
}

#[tokio::test]
async fn hostile_requests_are_refused_or_bounded_and_the_api_keeps_serving() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let (files, daemon) = daemon(&network, &receiver).await;
    let url = files.admin_url();
    daemon.admin.wait_position("txs", RECORDED).await;

    // A runaway filter: stopped at its time limit on the first event it runs on, and the test ends there.
    let (status, answer, took) =
        post_test(&url, &request("last(range(1e12))", 0, RECORDED - 1)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert_eq!(answer["held"], true);
    let last = answer["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "filter_error");
    assert!(
        last["error"].as_str().unwrap().contains("time limit of 1s"),
        "{last}"
    );
    // Without `from` and `to`: the last 10 blocks; a blank filter pushes every event whole.
    let (status, answer, _) = post_test(
        &url,
        &json!({"channel": "mychannel", "event": "Block", "filter": " "}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let blocks: Vec<u64> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "pushed")
        .map(|e| e["outputs"][0]["content"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(blocks, (RECORDED - 10..RECORDED).collect::<Vec<_>>());

    // Meanwhile and after, the API serves.
    let (status, _) = daemon
        .admin
        .call(reqwest::Method::GET, "/v1/triggers")
        .await;
    assert_eq!(status, 200);

    // Refused with a status and a message that says why: a huge range, a reversed one, blocks beyond the head, an
    // unknown channel, a filter that does not compile (named by line and column), unknown fields, a bad event type.
    let with = |key: &str, value: Value| {
        let mut body = request(".", 0, 1);
        body[key] = value;
        body
    };
    for (body, expected_status, expected) in [
        (request(".", 0, 1_000_000), 400, "at most 100"),
        (request(".", 9, 3), 400, "below `from`"),
        (request(".", 20, 90), 400, "beyond the head"),
        (
            with("channel", json!("nochannel")),
            404,
            "configured: mychannel",
        ),
        (request("select(.content.state ==", 0, 1), 400, "line 1"),
        (with("limit", json!(5)), 400, "unknown field `limit`"),
        (with("event", json!("Transfer")), 400, "`event`"),
    ] {
        let (status, answer, _) = post_test(&url, &body).await;
        assert_eq!(status, expected_status, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{body}: {message}");
    }

    // The trigger was never disturbed.
    let (status, trigger) = daemon
        .admin
        .call(reqwest::Method::GET, "/v1/triggers/txs")
        .await;
    assert_eq!(status, 200);
    assert_eq!(trigger["state"], "Running");
    daemon.terminate().await;
}

#[tokio::test]
async fn the_cli_tests_block_files_and_explains_bad_input_without_a_backtrace() {
    let blocks =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fabric-v2.5/blocks");
    let block = |n: u32| {
        blocks
            .join(format!("block_{n}.pb"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let (b11, b12) = (block(11), block(12));
    let (ok, stdout, stderr) = filter_test(&[
        "--event",
        "Contract",
        "--filter",
        "name",
        "--language",
        "jmespath",
        &b11,
        &b12,
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("invalid left out"), "{stdout}");
    assert!(
        stdout.contains("a Contract event of an invalid transaction, left out"),
        "{stdout}"
    );
    let (ok, with_invalid, _) =
        filter_test(&["--event", "Contract", "--include-invalid", "--json", &b12]).await;
    assert!(ok);
    let answer: Value = serde_json::from_str(&with_invalid).unwrap();
    assert!(
        answer["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["reason"] != "invalid_left_out")
    );

    // A runaway filter: stopped at the given time limit, a non-zero exit naming the event.
    let started = Instant::now();
    let (ok, _, stderr) = filter_test(&[
        "--event",
        "Tx",
        "--filter",
        "until(false; .)",
        "--filter-timeout",
        "300ms",
        &b11,
    ])
    .await;
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        stderr.contains("the filter failed at run time on block 11 event"),
        "{stderr}"
    );

    // Mistakes: one clear message each, no backtrace although RUST_BACKTRACE=1.
    for (args, expected) in [
        (
            vec!["--event", "Tx", "--filter", "select(", b11.as_str()],
            "--filter: jq filter does not compile",
        ),
        (vec!["--event", "Transfer", b11.as_str()], "--event"),
        (
            vec!["--event", "Tx", "/nonexistent/block.pb"],
            "cannot read block file /nonexistent/block.pb",
        ),
        (vec!["--event", "Tx", "Cargo.toml"], "block file Cargo.toml"),
    ] {
        let (ok, stdout, stderr) = filter_test(&args).await;
        assert!(!ok && stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("backtrace") && !stderr.contains("Stack backtrace"),
            "{stderr}"
        );
    }
}
