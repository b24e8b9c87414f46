//! The daemon with real parts: the peer simulator over TLS -> `chaintrigger serve` -> the bundled runtime (python3
//! and node handlers) or an HTTP receiver, with real SQLite files. Each test checks what an operator would see:
//! the admin API, the CLI, the calls the functions received, the daemon's log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chaintrigger::config::Config;
use chaintrigger::events::{ExtractOptions, extract};
use chaintrigger::fabric::decode::decode_block;
use chaintrigger::filter::{Filter, Language};
use chaintrigger::peersim::{Faults, PeerSimHandle};
use serde_json::{Value, json};

use crate::support::daemon::{
    Behaviour, CHANNEL, Daemon, DaemonFiles, Functions, Handler, Network, PATIENCE, Receiver,
    SERVICE, TriggerSpec, block_ids, eventually, expected_ids, expected_ids_with, toml_str,
};

/// The configuration the tests generate is one `check-config` accepts, environment included: a failing test is
/// about the daemon, not about its input.
#[tokio::test]
async fn the_test_configuration_and_handlers_are_sound() {
    let network = Network::start(None).await;
    let functions = Functions::start().await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    functions.create("fail", Handler::Fail).await;
    functions.create("record", Handler::Record).await;
    let mut filtered = TriggerSpec::new("contracts", "Contract", receiver.target_toml("contracts"));
    filtered.filter = Some((
        "jq",
        r#"select(.name=="event-create-task") | .content"#.to_owned(),
    ));
    files.write_config(
        &network,
        &[
            TriggerSpec::new(
                "failing",
                "Tx",
                functions.target_toml("fail", &files.fc_secret()),
            ),
            filtered,
        ],
    );
    let config = Config::load(&files.config_path()).unwrap_or_else(|e| panic!("{e}"));
    config.check_environment().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.triggers.len(), 2);

    let failed = functions
        .runtime
        .invoke(SERVICE, "fail", r#"{"id":"tx-1-a"}"#)
        .await;
    assert_eq!(failed.status, 200, "{}", failed.text());
    assert_eq!(
        failed.header("x-fc-error-type"),
        Some("UnhandledInvocationError")
    );
    let recorded = functions
        .runtime
        .invoke(SERVICE, "record", r#"{"id":"tx-1-b"}"#)
        .await;
    assert_eq!(recorded.status, 200, "{}", recorded.text());
    assert!(recorded.header("x-fc-error-type").is_none());
    assert_eq!(functions.calls("fail"), ["tx-1-a"]);
    assert_eq!(functions.calls("record"), ["tx-1-b"]);
}

/// The failure count goes up by one per discarded event, each after exactly `attempts` calls, with a dead
/// letter holding the function's last error; past the threshold the trigger is Failed and the function is never
/// called again. With threshold -1 the trigger keeps going.
#[tokio::test]
async fn a_failing_function_costs_one_failure_per_event_and_stops_the_trigger_past_its_threshold() {
    let network = Network::start(None).await;
    let functions = Functions::start().await;
    functions.create("fail_limited", Handler::Fail).await;
    functions.create("fail_unlimited", Handler::Fail).await;
    let receiver = Receiver::start().await;
    receiver.set("unavailable", Behaviour::Status(503));
    let files = DaemonFiles::new();
    let mut limited = TriggerSpec::new(
        "limited",
        "Block",
        functions.target_toml("fail_limited", &files.fc_secret()),
    );
    limited.failure_threshold = 2;
    let unlimited = TriggerSpec::new(
        "unlimited",
        "Block",
        functions.target_toml("fail_unlimited", &files.fc_secret()),
    );
    let mut intolerant =
        TriggerSpec::new("intolerant", "Block", receiver.target_toml("unavailable"));
    intolerant.failure_threshold = 0;
    files.write_config(&network, &[limited, unlimited, intolerant]);
    let daemon = Daemon::start(&files).await;

    let failed = daemon.admin.wait_state("intolerant", "Failed").await;
    assert_eq!(failed["failure_count"], 1, "{failed}");
    assert_eq!(failed["discarded"], 1, "{failed}");
    let last_error = failed["last_error"]["message"].as_str().unwrap_or_default();
    assert!(last_error.contains("503"), "{failed}");

    let failed = daemon.admin.wait_state("limited", "Failed").await;
    assert_eq!(failed["failure_count"], 3, "{failed}");
    assert_eq!(failed["failure_threshold"], 2, "{failed}");
    assert_eq!(failed["discarded"], 3, "{failed}");
    assert_eq!(failed["delivered"], 0, "{failed}");
    assert_eq!(
        failed["position"],
        json!({"block": 2, "event_index": 1}),
        "the third discard (block 2's Block event) is recorded, nothing after it: {failed}"
    );
    let last_error = failed["last_error"]["message"].as_str().unwrap_or_default();
    assert!(last_error.contains("rejected block-2"), "{failed}");
    let letters = daemon.admin.dead_letters("limited").await;
    let letter_ids: Vec<&str> = letters
        .iter()
        .map(|l| l["event_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(letter_ids, ["block-0", "block-1", "block-2"]);
    for letter in &letters {
        let id = letter["event_id"].as_str().unwrap_or_default();
        assert_eq!(letter["attempts"], 3, "{letter}");
        assert_eq!(letter["payload"]["id"], id, "{letter}");
        let error = letter["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("rejected {id}")),
            "the function's own error is kept: {letter}"
        );
    }
    let three_times = |ids: Vec<String>| -> Vec<String> {
        ids.into_iter()
            .flat_map(|id| std::iter::repeat_n(id, 3))
            .collect()
    };
    assert_eq!(
        functions.calls("fail_limited"),
        three_times(block_ids(0, 3))
    );

    let height = network.height();
    let unlimited = daemon.admin.wait_position("unlimited", height).await;
    assert_eq!(unlimited["state"], "Running", "{unlimited}");
    assert_eq!(unlimited["failure_count"], height, "{unlimited}");
    assert_eq!(unlimited["failure_threshold"], -1, "{unlimited}");
    assert_eq!(unlimited["discarded"], height, "{unlimited}");
    assert_eq!(
        daemon.admin.dead_letters("unlimited").await.len() as u64,
        height
    );
    assert_eq!(
        functions.calls("fail_unlimited"),
        three_times(block_ids(0, height))
    );

    // New blocks reach the unlimited trigger: by then the failed one would have had its chance to push them.
    let last = network.generate(2);
    daemon.admin.wait_position("unlimited", last + 1).await;
    assert_eq!(
        functions.calls("fail_limited"),
        three_times(block_ids(0, 3)),
        "a Failed trigger pushes nothing more"
    );
    let unavailable: Vec<String> = receiver
        .pushes("unavailable")
        .into_iter()
        .map(|p| p.event_id)
        .collect();
    assert_eq!(
        unavailable,
        three_times(block_ids(0, 1)),
        "threshold 0: the first discard fails the trigger"
    );
    let still = daemon.admin.trigger("limited").await;
    assert_eq!(still["state"], "Failed", "{still}");
    assert_eq!(still["position"], failed["position"], "{still}");

    // Failed is stored: after a restart the trigger is still Failed with its count, and pushes nothing.
    daemon.terminate().await;
    let last = network.generate(1);
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("unlimited", last + 1).await;
    let restarted = daemon.admin.trigger("limited").await;
    assert_eq!(restarted["state"], "Failed", "{restarted}");
    assert_eq!(restarted["failure_count"], 3, "{restarted}");
    assert_eq!(restarted["position"], failed["position"], "{restarted}");
    assert_eq!(
        functions.calls("fail_limited"),
        three_times(block_ids(0, 3))
    );
    let log = files.log();
    assert!(
        !log.contains(crate::support::runtime::KEY_SECRET),
        "the daemon logged the access key secret:\n{log}"
    );
}

/// A function that does not exist is a configuration error: Exception with the error shown, the position held,
/// nothing discarded. Once the function is created through the runtime's API the trigger recovers by itself
/// and delivers from the held event on, skipping nothing.
#[tokio::test]
async fn a_missing_function_holds_the_trigger_in_exception_until_the_function_is_created() {
    let network = Network::start(None).await;
    let functions = Functions::start().await;
    let files = DaemonFiles::new();
    files.write_config(
        &network,
        &[TriggerSpec::new(
            "late",
            "Block",
            functions.target_toml("late", &files.fc_secret()),
        )],
    );
    let daemon = Daemon::start(&files).await;

    let exception = daemon.admin.wait_state("late", "Exception").await;
    let error = exception["last_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("FunctionNotFound"), "{exception}");
    assert_eq!(exception["position"], json!({"block": 0, "event_index": 0}));
    // It holds while the chain grows: the engine has seen the new blocks and still waits at block 0.
    let last = network.generate(2);
    let held = daemon
        .admin
        .wait_for("late", "the new chain height", |t| {
            t["chain_height"].as_u64() == Some(last + 1)
        })
        .await;
    assert_eq!(held["state"], "Exception", "{held}");
    assert_eq!(held["position"], json!({"block": 0, "event_index": 0}));
    assert_eq!(held["failure_count"], 0, "{held}");
    assert_eq!(held["discarded"], 0, "{held}");
    assert!(daemon.admin.dead_letters("late").await.is_empty());

    functions.create("late", Handler::Record).await;
    let caught_up = daemon.admin.wait_position("late", last + 1).await;
    assert_eq!(caught_up["state"], "Running", "{caught_up}");
    assert_eq!(caught_up["failure_count"], 0, "{caught_up}");
    assert_eq!(caught_up["discarded"], 0, "{caught_up}");
    assert_eq!(caught_up["delivered"], last + 1, "{caught_up}");
    assert_eq!(functions.calls("late"), block_ids(0, last + 1));
}

/// Disable drops the events meanwhile; enable resumes from the latest block by default, from the stored position
/// when asked, or from a given block.
#[tokio::test]
async fn disable_drops_and_enable_resumes_from_latest_position_or_block() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    files.write_config(
        &network,
        &[
            TriggerSpec::new("toggle", "Block", receiver.target_toml("toggle")),
            TriggerSpec::new("witness", "Block", receiver.target_toml("witness")),
        ],
    );
    let daemon = Daemon::start(&files).await;
    let admin = &daemon.admin;
    let recorded = network.height();
    admin.wait_position("toggle", recorded).await;
    assert_eq!(receiver.accepted("toggle"), block_ids(0, recorded));

    let disabled = admin.command("toggle", "disable").await;
    assert_eq!(disabled["state"], "Disabled", "{disabled}");
    let last = network.generate(3);
    admin.wait_position("witness", last + 1).await;
    assert_eq!(
        admin.trigger("toggle").await["state"],
        "Disabled",
        "stays disabled"
    );
    assert_eq!(receiver.accepted("toggle"), block_ids(0, recorded));

    // From the latest block: what happened while disabled is never delivered.
    let enabled = admin.command("toggle", "enable").await;
    assert_eq!(enabled["state"], "Running", "{enabled}");
    assert_eq!(enabled["failure_count"], 0, "{enabled}");
    let next = network.generate(1);
    admin.wait_position("toggle", next + 1).await;
    admin.wait_position("witness", next + 1).await;
    let mut expected = block_ids(0, recorded);
    expected.push(format!("block-{next}"));
    assert_eq!(receiver.accepted("toggle"), expected);

    // From the stored position: the events while disabled are delivered after all.
    admin.command("toggle", "disable").await;
    let first_missed = network.height();
    let last_missed = network.generate(2);
    admin.wait_position("witness", last_missed + 1).await;
    assert_eq!(receiver.accepted("toggle"), expected);
    let resumed = admin.command("toggle", "enable?from=position").await;
    assert_eq!(
        resumed["position"],
        json!({"block": first_missed, "event_index": 0}),
        "{resumed}"
    );
    admin.wait_position("toggle", last_missed + 1).await;
    expected.extend(block_ids(first_missed, last_missed + 1));
    assert_eq!(receiver.accepted("toggle"), expected);

    // From a block number: history again from there.
    let replayed = admin.command("toggle", "enable?from=5").await;
    assert_eq!(replayed["position"], json!({"block": 5, "event_index": 0}));
    let end = network.height();
    expected.extend(block_ids(5, end));
    receiver
        .wait_accepted("toggle", expected.len(), PATIENCE)
        .await;
    admin.wait_position("toggle", end).await;
    assert_eq!(receiver.accepted("toggle"), expected);
    assert_eq!(
        receiver.accepted("witness"),
        block_ids(0, end),
        "the other trigger saw every block once"
    );

    // Disabled is stored: a daemon killed and restarted keeps the trigger disabled.
    admin.command("toggle", "disable").await;
    daemon.kill().await;
    let daemon = Daemon::start(&files).await;
    let last = network.generate(1);
    daemon.admin.wait_position("witness", last + 1).await;
    let after_restart = daemon.admin.trigger("toggle").await;
    assert_eq!(after_restart["state"], "Disabled", "{after_restart}");
    assert_eq!(receiver.accepted("toggle"), expected);
}

/// Re-arms a one-shot stream cut after `blocks` blocks each time the previous one was used, `cuts` times.
fn cut_streams_repeatedly(
    handle: PeerSimHandle,
    blocks: u64,
    cuts: u32,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut armed = 0;
        while !stop.load(Ordering::Relaxed) {
            let faults = handle.faults();
            if faults.drop_after_blocks.is_none() {
                if armed == cuts {
                    break;
                }
                handle.set_faults(Faults {
                    drop_after_blocks: Some(blocks),
                    ..faults
                });
                armed += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        armed
    })
}

/// A stream cut after every few blocks (again and again) makes the daemon reconnect and resume: every event
/// arrives exactly once, in chain order, when the target always accepts.
#[tokio::test]
async fn repeated_stream_cuts_lose_and_repeat_nothing() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    files.write_config(
        &network,
        &[TriggerSpec::new(
            "steady",
            "Tx",
            receiver.target_toml("steady"),
        )],
    );
    network.handle().set_faults(Faults {
        block_delay: Duration::from_millis(2),
        ..Faults::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    // Cuts while the trigger catches up on the recorded blocks, then while it follows new ones.
    let cutter = cut_streams_repeatedly(network.handle().clone(), 4, 12, stop.clone());
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("steady", network.height()).await;
    for _ in 0..30 {
        network.generate(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let height = network.height();
    daemon.admin.wait_position("steady", height).await;
    stop.store(true, Ordering::Relaxed);
    let armed = cutter.await.expect("the cutter task");
    assert!(armed >= 8, "only {armed} cuts were used");

    let expected = expected_ids(network.handle(), "Tx", 0, height);
    assert!(expected.len() > 40, "{}", expected.len());
    let pushes = receiver.pushes("steady");
    let pushed: Vec<String> = pushes.iter().map(|p| p.event_id.clone()).collect();
    assert_eq!(
        pushed, expected,
        "every Tx event exactly once, in chain order"
    );
    for push in &pushes {
        assert_eq!(push.payload["id"].as_str(), Some(push.event_id.as_str()));
        assert_eq!(push.payload["type"], "Tx");
    }
    let (status, channels) = daemon
        .admin
        .call(reqwest::Method::GET, "/v1/channels")
        .await;
    assert_eq!(status, 200, "{channels}");
    let reconnects = channels["channels"][0]["reconnects"].as_u64().unwrap_or(0);
    assert!(
        reconnects >= 3,
        "the cuts of the channel's stream show as reconnects: {channels}"
    );
}

/// How long the slow receiver takes to answer each push.
const SLOW_PUSH: Duration = Duration::from_secs(3);

/// A trigger whose target answers slowly does not hold back another trigger on the same channel.
#[tokio::test]
async fn a_slow_target_does_not_delay_another_trigger() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    receiver.set("slow", Behaviour::Delay(SLOW_PUSH));
    let files = DaemonFiles::new();
    files.write_config(
        &network,
        &[
            TriggerSpec::new("slow", "Block", receiver.target_toml("slow")),
            TriggerSpec::new("fast", "Block", receiver.target_toml("fast")),
        ],
    );
    let daemon = Daemon::start(&files).await;
    let recorded = network.height();
    let accepted = receiver
        .wait_accepted("fast", recorded as usize, PATIENCE)
        .await;
    assert_eq!(accepted, block_ids(0, recorded));
    let slow_so_far = receiver.pushes("slow").len();
    assert!(
        slow_so_far < 5,
        "the fast trigger finished while the slow one had {slow_so_far} pushes"
    );

    let next = network.generate(1);
    let generated = Instant::now();
    receiver
        .wait_accepted("fast", recorded as usize + 1, PATIENCE)
        .await;
    let latency = generated.elapsed();
    assert!(
        latency < SLOW_PUSH,
        "a new block reached the fast trigger after {latency:?}, longer than one slow push"
    );
    assert_eq!(
        receiver.accepted("fast").last(),
        Some(&format!("block-{next}"))
    );
    let slow = daemon.admin.trigger("slow").await;
    assert_eq!(slow["state"], "Running", "{slow}");
    assert!(
        slow["position"]["block"].as_u64() < Some(recorded / 2),
        "{slow}"
    );
}

/// Outputs of `source` on the events of `event_type` in blocks `from..to`, with the ids of their events.
fn filter_outputs(
    handle: &PeerSimHandle,
    event_type: &str,
    language: Language,
    source: &str,
    from: u64,
    to: u64,
) -> Vec<(String, Value)> {
    let filter = Filter::compile(language, source).expect("the filter compiles");
    let options = |include_invalid| ExtractOptions {
        instance_id: "csi-engine-test".to_owned(),
        include_invalid,
        ..ExtractOptions::default()
    };
    let mut outputs = Vec::new();
    for number in from..to {
        let block = decode_block(&handle.block(number).expect("block")).expect("decodes");
        // Event indexes count every event, Contract events of invalid transactions included; the trigger
        // receives only the valid ones.
        let received: std::collections::HashSet<String> = extract(&block, &options(false))
            .into_iter()
            .map(|event| event.id().to_owned())
            .collect();
        for (index, event) in extract(&block, &options(true)).into_iter().enumerate() {
            if event.event_type().as_str() == event_type && received.contains(event.id()) {
                let outputs_of_event = filter.apply(event.envelope()).expect("the filter runs");
                for (output, payload) in outputs_of_event.into_iter().enumerate() {
                    outputs.push((format!("{CHANNEL}/{number}/{index}/{output}"), payload));
                }
            }
        }
    }
    outputs
}

/// BaaS filter examples end to end on generated `taskmgr` blocks: a jq Contract trigger pushes the base64
/// payloads, a jq Tx trigger pushes the `special_key` writes (the `.actions.[0]` form), and a JMESPath Tx
/// trigger pushes the object it builds.
#[tokio::test]
async fn baas_filter_examples_push_their_outputs_end_to_end() {
    const CREATED: &str = r#"select(.name=="event-create-task") | .content"#;
    const SPECIAL: &str = r#"select(.content.state=="VALID" and .content.to=="taskmgr") | .content.data.data.actions.[0].payload.action.proposal_response_payload.extension.results.ns_rwset[] | select(.namespace=="taskmgr") | .rwset.writes[] | select(.key=="special_key")"#;
    const VALID: &str = "content.state == 'VALID' && content.to == 'taskmgr' && {id: id, tx: content.id, from: content.from}";
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let first = network.height();
    let mut created = TriggerSpec::new("created", "Contract", receiver.target_toml("created"));
    created.filter = Some(("jq", CREATED.to_owned()));
    created.start = Some(first);
    let mut special = TriggerSpec::new("special", "Tx", receiver.target_toml("special"));
    special.filter = Some(("jq", SPECIAL.to_owned()));
    special.start = Some(first);
    let mut valid = TriggerSpec::new("valid", "Tx", receiver.target_toml("valid"));
    valid.filter = Some(("jmespath", VALID.to_owned()));
    valid.start = Some(first);
    files.write_config(&network, &[created, special, valid]);
    let daemon = Daemon::start(&files).await;
    let last = network.generate(12);
    for name in ["created", "special", "valid"] {
        daemon.admin.wait_position(name, last + 1).await;
    }

    let pushed = |hook: &str| -> Vec<(String, Value)> {
        receiver
            .pushes(hook)
            .into_iter()
            .map(|p| (p.delivery_id, p.payload))
            .collect()
    };
    let handle = network.handle();
    let created = pushed("created");
    assert_eq!(
        created,
        filter_outputs(handle, "Contract", Language::Jq, CREATED, first, last + 1)
    );
    assert!(created.len() >= 8, "{created:?}");
    for (_, payload) in &created {
        let text = payload.as_str().expect("a bare base64 string");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64");
        let event: Value = serde_json::from_slice(&decoded).expect("the chaincode event is JSON");
        assert_eq!(event["status"], "created", "{event}");
    }

    let special = pushed("special");
    assert_eq!(
        special,
        filter_outputs(handle, "Tx", Language::Jq, SPECIAL, first, last + 1)
    );
    assert!(!special.is_empty());
    for (_, payload) in &special {
        assert_eq!(
            payload,
            &json!({"is_delete": false, "key": "special_key", "value": "MTA="})
        );
    }

    let valid = pushed("valid");
    assert_eq!(
        valid,
        filter_outputs(handle, "Tx", Language::Jmespath, VALID, first, last + 1)
    );
    assert!(valid.len() >= 10, "{valid:?}");
    for (_, payload) in &valid {
        assert!(
            payload["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("tx-")),
            "{payload}"
        );
        assert_eq!(payload["from"], "Org1MSP.User1@org1.example.com");
    }
}

/// HTTP targets as configured: GET carries the payload in the `event` parameter, POST in the body; bearer and
/// basic authentication and the configured headers are sent, and every push names its event id.
#[tokio::test]
async fn http_targets_send_method_authentication_headers_and_event_id_as_configured() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let secret = |name: &str, value: &str| {
        let path = files.dir.path().join(name);
        std::fs::write(&path, value).expect("write a secret");
        toml_str(&path.display().to_string())
    };
    let token = secret("hook-token", "hook-bearer-token");
    let password = secret("hook-password", "hook-password-1");
    let recorded = network.height();
    let mut get = TriggerSpec::new(
        "get",
        "Block",
        format!(
            "[triggers.target.http]\nurl = \"{}?source=ct\"\nmethod = \"GET\"\n\
             auth = {{ bearer = {{ token = {{ file = {token} }} }} }}\n\
             headers = {{ \"X-Source\" = \"chaintrigger\" }}\n",
            receiver.hook_url("get")
        ),
    );
    get.start = Some(recorded - 2);
    let mut post = TriggerSpec::new(
        "post",
        "Block",
        format!(
            "[triggers.target.http]\nurl = \"{}\"\nmethod = \"POST\"\n\
             auth = {{ basic = {{ user = \"ops\", password = {{ file = {password} }} }} }}\n",
            receiver.hook_url("post")
        ),
    );
    post.start = Some(recorded - 2);
    files.write_config(&network, &[get, post]);
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("get", recorded).await;
    daemon.admin.wait_position("post", recorded).await;

    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:hook-password-1")
    );
    for (hook, authorization) in [
        ("get", "Bearer hook-bearer-token"),
        ("post", basic.as_str()),
    ] {
        let pushes = receiver.pushes(hook);
        let ids: Vec<&str> = pushes.iter().map(|p| p.event_id.as_str()).collect();
        assert_eq!(ids, block_ids(recorded - 2, recorded), "{hook}");
        for push in &pushes {
            let block = push.payload["content"]["number"]
                .as_u64()
                .expect("a block number");
            assert_eq!(
                push.delivery_id,
                format!("{CHANNEL}/{block}/0/0"),
                "{hook}: the delivery id names the Block event's place"
            );
            assert_eq!(push.payload["type"], "Block", "{hook}");
            assert_eq!(
                push.headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok()),
                Some(authorization),
                "{hook}"
            );
        }
    }
    assert!(receiver.pushes("get").iter().all(|p| {
        p.headers
            .get("x-source")
            .is_some_and(|v| v == "chaintrigger")
    }));
    let log = files.log();
    for secret in ["hook-bearer-token", "hook-password-1", basic.as_str()] {
        assert!(!log.contains(secret), "the daemon logged a secret:\n{log}");
    }
}

/// An Async Function Compute target: the runtime queues each event and runs the handler once per event.
#[tokio::test]
async fn async_function_compute_invocations_run_each_event_once() {
    let network = Network::start(None).await;
    let functions = Functions::start().await;
    functions.create("queued", Handler::Record).await;
    let files = DaemonFiles::new();
    let recorded = network.height();
    let mut queued = TriggerSpec::new(
        "queued",
        "Block",
        format!(
            "{}invocation = \"Async\"\n",
            functions.target_toml("queued", &files.fc_secret())
        ),
    );
    queued.start = Some(recorded - 5);
    files.write_config(&network, &[queued]);
    let daemon = Daemon::start(&files).await;
    let status = daemon.admin.wait_position("queued", recorded).await;
    assert_eq!(status["delivered"], 5, "{status}");
    let mut calls = crate::support::daemon::eventually("5 async runs", PATIENCE, || {
        let calls = functions.calls("queued");
        std::future::ready((calls.len() >= 5).then_some(calls))
    })
    .await;
    calls.sort();
    let mut expected = block_ids(recorded - 5, recorded);
    expected.sort();
    assert_eq!(calls, expected, "each event ran once");
}

/// Trigger `picky`: Block events from `first` on, through a jq filter that fails on block `bad_block`.
fn failing_at(receiver: &Receiver, first: u64, bad_block: u64) -> TriggerSpec {
    let mut picky = TriggerSpec::new("picky", "Block", receiver.target_toml("picky"));
    picky.start = Some(first);
    picky.filter = Some((
        "jq",
        format!(
            r#"if .content.number == {bad_block} then error("no rule for block {bad_block}") else . end"#
        ),
    ));
    picky
}

/// Waits for `picky` to hold block `bad_block`'s event in Exception with the filter's error; its status.
async fn held_at(daemon: &Daemon, bad_block: u64) -> Value {
    let exception = daemon.admin.wait_state("picky", "Exception").await;
    assert_eq!(
        exception["position"],
        json!({"block": bad_block, "event_index": 0}),
        "{exception}"
    );
    let error = exception["last_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains(&format!("no rule for block {bad_block}")),
        "{exception}"
    );
    exception
}

/// A filter that fails at run time is a configuration error: the trigger holds the event in Exception with the
/// filter's error shown; after the filter is fixed and the configuration reloaded, it goes on from that event.
#[tokio::test]
async fn a_filter_failing_at_run_time_holds_the_trigger_until_the_filter_is_fixed() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let first = network.height();
    let bad_block = first + 1;
    let mut picky = failing_at(&receiver, first, bad_block);
    files.write_config(&network, &[picky.clone()]);
    let daemon = Daemon::start(&files).await;
    let last = network.generate(3);

    let exception = held_at(&daemon, bad_block).await;
    assert_eq!(exception["discarded"], 0, "{exception}");
    assert_eq!(receiver.accepted("picky"), block_ids(first, bad_block));

    picky.filter = Some(("jq", ".".to_owned()));
    files.write_config(&network, &[picky]);
    let (status, report) = daemon.admin.call(reqwest::Method::POST, "/v1/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["changed"], json!(["picky"]), "{report}");
    let recovered = daemon.admin.wait_position("picky", last + 1).await;
    assert_eq!(recovered["state"], "Running", "{recovered}");
    assert_eq!(receiver.accepted("picky"), block_ids(first, last + 1));
}

/// The same while catching up, where a trigger's filter jobs carry many events read ahead: the failing event is in
/// the middle of a job; what came before it is pushed, nothing after it is, and after the fix the trigger goes on
/// from that event to the head, every block once and in order.
#[tokio::test]
async fn a_filter_failing_in_the_middle_of_a_catch_up_holds_exactly_that_event() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let first = network.height();
    // Past the channel's window of 64 blocks: the trigger reads them on its own stream.
    let last = network.generate(150);
    let bad_block = first + 45;
    let mut picky = failing_at(&receiver, first, bad_block);
    files.write_config(&network, &[picky.clone()]);
    let daemon = Daemon::start(&files).await;

    held_at(&daemon, bad_block).await;
    // Held: a retry later evaluates the event again, and still nothing past it goes out.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(receiver.accepted("picky"), block_ids(first, bad_block));

    picky.filter = Some(("jq", ".".to_owned()));
    files.write_config(&network, &[picky]);
    let (status, report) = daemon.admin.call(reqwest::Method::POST, "/v1/reload").await;
    assert_eq!(status, 200, "{report}");
    let recovered = daemon.admin.wait_position("picky", last + 1).await;
    assert_eq!(recovered["state"], "Running", "{recovered}");
    assert_eq!(receiver.accepted("picky"), block_ids(first, last + 1));
}

/// A filter with several outputs per event pushes each, in order, numbered by the output index header.
#[tokio::test]
async fn every_output_of_a_filter_is_pushed_in_order() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let first = network.height();
    let mut each = TriggerSpec::new("each", "Block", receiver.target_toml("each"));
    each.start = Some(first);
    each.filter = Some(("jq", ".content.transactions[]".to_owned()));
    files.write_config(&network, &[each]);
    let daemon = Daemon::start(&files).await;
    let last = network.generate(6);
    daemon.admin.wait_position("each", last + 1).await;

    let expected = filter_outputs(
        network.handle(),
        "Block",
        Language::Jq,
        ".content.transactions[]",
        first,
        last + 1,
    );
    assert_eq!(expected.len(), 12, "6 blocks of 1, 2, 3 transactions");
    let pushes = receiver.pushes("each");
    let pushed: Vec<(String, Value)> = pushes
        .iter()
        .map(|p| (p.delivery_id.clone(), p.payload.clone()))
        .collect();
    assert_eq!(pushed, expected);
    let indexes: Vec<&str> = pushes
        .iter()
        .map(|p| {
            p.headers
                .get("x-chaintrigger-output-index")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("missing")
        })
        .collect();
    assert_eq!(
        indexes,
        ["0", "0", "1", "0", "1", "2", "0", "0", "1", "0", "1", "2"]
    );
}

/// Every event type through one `*` trigger in chain order (Block, then each transaction's Tx or Config event
/// and its Contract events), over the recorded network and generated blocks; Contract events of invalid
/// transactions only for the trigger that asks for them.
#[tokio::test]
async fn every_event_type_arrives_in_chain_order_and_invalid_contract_events_only_when_asked() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let mut invalid = TriggerSpec::new("invalid", "Contract", receiver.target_toml("invalid"));
    invalid.include_invalid = true;
    files.write_config(
        &network,
        &[
            TriggerSpec::new("all", "*", receiver.target_toml("all")),
            TriggerSpec::new("valid", "Contract", receiver.target_toml("valid")),
            invalid,
        ],
    );
    let daemon = Daemon::start(&files).await;
    let last = network.generate(12);
    for name in ["all", "valid", "invalid"] {
        daemon.admin.wait_position(name, last + 1).await;
    }
    let handle = network.handle();
    let all = expected_ids(handle, "*", 0, last + 1);
    for prefix in ["block-", "tx-", "contract-", "config-"] {
        assert!(
            all.iter().any(|id| id.starts_with(prefix)),
            "the chain has {prefix} events"
        );
    }
    assert_eq!(receiver.accepted("all"), all);
    let valid = expected_ids(handle, "Contract", 0, last + 1);
    let with_invalid = expected_ids_with(handle, "Contract", true, 0, last + 1);
    assert!(
        with_invalid.len() > valid.len(),
        "the generated blocks have invalid transactions"
    );
    assert_eq!(receiver.accepted("valid"), valid);
    assert_eq!(receiver.accepted("invalid"), with_invalid);
}

/// An HTTP endpoint that answers 404 (not deployed yet) is a configuration error: Exception with the answer
/// shown (in the API and `triggers show`), nothing discarded, other triggers unaffected; once the endpoint
/// exists, the trigger delivers from the held event on.
#[tokio::test]
async fn a_missing_http_endpoint_holds_the_trigger_until_it_appears() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    receiver.set("hook", Behaviour::Status(404));
    let files = DaemonFiles::new();
    let first = network.height() - 2;
    let mut waiting = TriggerSpec::new("waiting", "Block", receiver.target_toml("hook"));
    waiting.start = Some(first);
    let mut fine = TriggerSpec::new("fine", "Block", receiver.target_toml("fine"));
    fine.start = Some(first);
    files.write_config(&network, &[waiting, fine]);
    let daemon = Daemon::start(&files).await;
    let exception = daemon.admin.wait_state("waiting", "Exception").await;
    assert!(
        exception["last_error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("404"),
        "{exception}"
    );
    assert_eq!(
        exception["position"],
        json!({"block": first, "event_index": 0})
    );
    let (ok, stdout, stderr) = crate::support::daemon::cli(&files, &["show", "waiting"]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("Exception") && stdout.contains("404"),
        "{stdout}"
    );

    // The trigger in Exception holds back no other trigger of the channel.
    let last = network.generate(2);
    daemon.admin.wait_position("fine", last + 1).await;
    assert_eq!(receiver.accepted("fine"), block_ids(first, last + 1));
    let held = daemon.admin.trigger("waiting").await;
    assert_eq!(held["state"], "Exception", "{held}");

    receiver.set("hook", Behaviour::Accept);
    let height = network.height();
    let recovered = daemon.admin.wait_position("waiting", height).await;
    assert_eq!(recovered["state"], "Running", "{recovered}");
    assert_eq!(recovered["discarded"], 0, "{recovered}");
    assert!(daemon.admin.dead_letters("waiting").await.is_empty());
    assert_eq!(receiver.accepted("hook"), block_ids(first, height));
}

/// Starts a daemon with one `Tx` trigger on a channel served by the simulator alone, which answers every
/// request with `status` until the test clears it.
async fn daemon_behind_a_refusing_peer(
    network: &Network,
    receiver: &Receiver,
    files: &DaemonFiles,
    status: i32,
) -> Daemon {
    files.write_config(
        network,
        &[TriggerSpec::new("txs", "Tx", receiver.target_toml("txs"))],
    );
    network.handle().set_faults(Faults {
        refuse_with: Some(chaintrigger::fabric::deliver::StatusCode(status)),
        ..Faults::default()
    });
    Daemon::start(files).await
}

/// Waits until the channel's status names the peer's answer (`name` or its number).
async fn wait_for_refusal_shown(daemon: &Daemon, name: &str, status: i32) -> Value {
    eventually(&format!("the channel shows {name}"), PATIENCE, || async {
        let (_, channels) = daemon
            .admin
            .call(reqwest::Method::GET, "/v1/channels")
            .await;
        let channel = channels["channels"][0].clone();
        let error = channel["last_error"]["message"]
            .as_str()
            .unwrap_or_default();
        (error.contains(name) || error.contains(&status.to_string())).then_some(channel)
    })
    .await
}

/// A peer that refuses the daemon (FORBIDDEN: its identity is not a reader) shows as the channel's error while
/// the trigger keeps its position; once the peer serves, every event arrives once.
#[tokio::test]
async fn a_refusing_peer_shows_in_the_channel_and_loses_no_event() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let daemon = daemon_behind_a_refusing_peer(&network, &receiver, &files, 403).await;
    let channel = wait_for_refusal_shown(&daemon, "FORBIDDEN", 403).await;
    let held = daemon.admin.trigger("txs").await;
    assert_eq!(held["state"], "Running", "{held} {channel}");
    assert_eq!(held["position"], json!({"block": 0, "event_index": 0}));
    assert!(receiver.pushes("txs").is_empty());

    network.handle().set_faults(Faults::default());
    let last = network.generate(4);
    daemon.admin.wait_position("txs", last + 1).await;
    assert_eq!(
        receiver.accepted("txs"),
        expected_ids(network.handle(), "Tx", 0, last + 1)
    );
}

/// A peer answering SERVICE_UNAVAILABLE for good: the operator should see why nothing arrives.
#[tokio::test]
async fn an_unavailable_peer_shows_in_the_channel() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let daemon = daemon_behind_a_refusing_peer(&network, &receiver, &files, 503).await;
    wait_for_refusal_shown(&daemon, "SERVICE_UNAVAILABLE", 503).await;
}

/// A peer nobody listens on is skipped for the next one in the list.
#[tokio::test]
async fn a_peer_that_is_down_is_skipped_for_the_next_one() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let down = unused_address();
    files.write_config_with_channel(
        &network.channel_toml_after(&[&down]),
        &[TriggerSpec::new("txs", "Tx", receiver.target_toml("txs"))],
    );
    let daemon = Daemon::start(&files).await;
    let last = network.generate(2);
    daemon.admin.wait_position("txs", last + 1).await;
    assert_eq!(
        receiver.accepted("txs"),
        expected_ids(network.handle(), "Tx", 0, last + 1)
    );
    let (status, channels) = daemon
        .admin
        .call(reqwest::Method::GET, "/v1/channels")
        .await;
    assert_eq!(status, 200, "{channels}");
    assert_eq!(
        channels["channels"][0]["peer"],
        network.peer.address.to_string(),
        "{channels}"
    );
}

/// A loopback address nobody listens on.
fn unused_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string()
}
