//! Hostile filters beside healthy triggers, with the real daemon: the peer simulator over TLS -> `chaintrigger
//! serve` -> an HTTP receiver. Runaway, deep, gigantic and halting filters put only their own trigger in Exception;
//! the admin API, the other triggers, the operator's commands and SIGTERM keep working, and a restart does not
//! abort. Also what `check-config` refuses before anything runs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::daemon::{
    Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, block_ids, toml_str,
};

/// How long an operator's command may take while a runaway filter runs: "at once", with room for a loaded CPU.
const AT_ONCE: Duration = Duration::from_secs(2);

/// Filters that never end on any event: each runs until its time limit stops it.
const RUNAWAYS: [&str; 4] = [
    "last(range(1e12))",
    "until(false; .)",
    "reduce repeat(1) as $x (0; . + 1)",
    "first(skip(1e12; range(1e13)))",
];

fn filtered(name: &str, receiver: &Receiver, language: &'static str, filter: &str) -> TriggerSpec {
    let mut trigger = TriggerSpec::new(name, "Block", receiver.target_toml(name));
    trigger.filter = Some((language, filter.to_owned()));
    trigger
}

/// Writes the configuration with `filter_timeout` set on the named triggers.
fn write_config(
    files: &DaemonFiles,
    network: &Network,
    triggers: &[TriggerSpec],
    timeouts: &[(&str, &str)],
) {
    files.write_config(network, triggers);
    let mut text =
        std::fs::read_to_string(files.config_path()).expect("read the configuration back");
    for (name, timeout) in timeouts {
        let line = format!("name = {}\n", toml_str(name));
        assert!(text.contains(&line), "trigger {name} is configured");
        text = text.replace(
            &line,
            &format!("{line}filter_timeout = {}\n", toml_str(timeout)),
        );
    }
    files.write_raw(&text);
}

/// `GET /healthz` must answer 200 within `within`; returns how long it took.
async fn healthz_within(files: &DaemonFiles, within: Duration) -> Duration {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", files.admin_url()))
        .timeout(within)
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz did not answer within {within:?}: {e}"));
    assert!(
        response.status().is_success(),
        "/healthz: {}",
        response.status()
    );
    started.elapsed()
}

/// Runs an admin request and fails unless it succeeds within [`AT_ONCE`]; returns the answer.
async fn promptly(daemon: &Daemon, method: reqwest::Method, path: &str) -> serde_json::Value {
    let (status, body) = tokio::time::timeout(AT_ONCE, daemon.admin.call(method, path))
        .await
        .unwrap_or_else(|_| panic!("{path} did not answer within {AT_ONCE:?}"));
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// As many runaway filters as the machine has cores, plus one: each trigger goes to Exception at its time limit
/// holding its event, while `/healthz` and the admin API answer promptly and the healthy triggers (a jq filter, a
/// JMESPath filter, no filter) deliver every block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_filters_on_every_core_plus_one_leave_everything_else_running() {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let mut triggers: Vec<TriggerSpec> = (0..=cores)
        .map(|i| {
            filtered(
                &format!("runaway-{i}"),
                &receiver,
                "jq",
                RUNAWAYS[i % RUNAWAYS.len()],
            )
        })
        .collect();
    triggers.push(filtered(
        "healthy-jq",
        &receiver,
        "jq",
        "select(.content.number >= 0)",
    ));
    triggers.push(filtered(
        "healthy-jmespath",
        &receiver,
        "jmespath",
        "content.number >= `0`",
    ));
    triggers.push(TriggerSpec::new(
        "plain",
        "Block",
        receiver.target_toml("plain"),
    ));
    let timeouts: Vec<(String, &str)> = (0..=cores)
        .map(|i| (format!("runaway-{i}"), "1s"))
        .collect();
    let timeouts: Vec<(&str, &str)> = timeouts.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    write_config(&files, &network, &triggers, &timeouts);
    let daemon = Daemon::start(&files).await;
    let healthy = ["healthy-jq", "healthy-jmespath", "plain"];

    // Blocks keep coming while every runaway trigger evaluates, fails, waits and evaluates again.
    let mut slowest_health = Duration::ZERO;
    let started = Instant::now();
    let mut height = network.height();
    while started.elapsed() < Duration::from_secs(12) {
        slowest_health = slowest_health.max(healthz_within(&files, AT_ONCE).await);
        promptly(&daemon, reqwest::Method::GET, "/v1/triggers").await;
        height = network.generate(1) + 1;
        for name in healthy {
            receiver
                .wait_accepted(name, height as usize, PATIENCE)
                .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for name in healthy {
        assert_eq!(receiver.accepted(name), block_ids(0, height), "{name}");
    }
    for i in 0..=cores {
        let name = format!("runaway-{i}");
        let held = daemon.admin.wait_state(&name, "Exception").await;
        let error = held["last_error"]["message"].as_str().unwrap_or_default();
        assert!(
            error.contains("the filter failed on event block-0")
                && error.contains("it ran longer than its time limit of 1s"),
            "{name}: {held}"
        );
        assert_eq!(
            held["position"],
            json!({"block": 0, "event_index": 0}),
            "{name}"
        );
        assert!(receiver.accepted(&name).is_empty(), "{name}");
    }
    eprintln!(
        "{} runaway filters on {cores} cores: slowest /healthz {slowest_health:?}, {height} blocks delivered",
        cores + 1
    );

    let stopping = Instant::now();
    daemon.terminate().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        stopping.elapsed()
    );
    let log = files.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// While runaway filters are in the middle of an evaluation with a long time limit, disable, delete, reload and
/// SIGTERM return at once, and the pool threads they held serve the other triggers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_shutdown_return_at_once_while_a_runaway_filter_runs() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let names = ["spin-disable", "spin-delete", "spin-reload"];
    let mut triggers: Vec<TriggerSpec> = names
        .iter()
        .map(|name| filtered(name, &receiver, "jq", "last(range(1e12))"))
        .collect();
    triggers.push(filtered("witness", &receiver, "jq", "."));
    let timeouts: Vec<(&str, &str)> = names.iter().map(|name| (*name, "60s")).collect();
    write_config(&files, &network, &triggers, &timeouts);
    let daemon = Daemon::start(&files).await;
    let height = network.height() as usize;
    // The witness shares the filter pool with the runaways: it gets a thread as soon as one is free.
    receiver.wait_accepted("witness", 1, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for name in names {
        let running = daemon.admin.trigger(name).await;
        assert_eq!(running["state"], "Running", "{name} evaluates: {running}");
        assert_eq!(running["position"]["block"], 0, "{running}");
    }

    let disabled = promptly(
        &daemon,
        reqwest::Method::POST,
        "/v1/triggers/spin-disable/disable",
    )
    .await;
    assert_eq!(disabled["state"], "Disabled", "{disabled}");
    let deleted = promptly(&daemon, reqwest::Method::DELETE, "/v1/triggers/spin-delete").await;
    assert_eq!(deleted["deleted"], "spin-delete", "{deleted}");
    let (status, _) = daemon
        .admin
        .call(reqwest::Method::GET, "/v1/triggers/spin-delete")
        .await;
    assert_eq!(status, 404, "deleted");

    // A reload that changes the runaway filter restarts its trigger at once; the new filter delivers.
    let mut fixed = triggers.clone();
    fixed[2].filter = Some(("jq", ".".to_owned()));
    write_config(&files, &network, &fixed, &timeouts);
    let report = promptly(&daemon, reqwest::Method::POST, "/v1/reload").await;
    assert_eq!(report["changed"], json!(["spin-reload"]), "{report}");
    receiver
        .wait_accepted("spin-reload", height, PATIENCE)
        .await;
    let last = network.generate(2);
    receiver
        .wait_accepted("witness", last as usize + 1, PATIENCE)
        .await;
    receiver
        .wait_accepted("spin-reload", last as usize + 1, PATIENCE)
        .await;
    healthz_within(&files, AT_ONCE).await;

    // Runaway again, then SIGTERM in the middle of its 60 s evaluation.
    let enabled = promptly(
        &daemon,
        reqwest::Method::POST,
        "/v1/triggers/spin-disable/enable?from=position",
    )
    .await;
    assert_eq!(enabled["state"], "Running", "{enabled}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    daemon.terminate().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "SIGTERM took {:?} with a runaway filter running",
        stopping.elapsed()
    );
    assert!(receiver.accepted("spin-disable").is_empty());
}

/// Filters that used to abort the daemon (deep output, and `halt`, which exits a jq process) or build gigantic
/// outputs: their triggers show Exception with a clear error and hold their event, the daemon lives on and
/// restarts cleanly (the triggers resume at the same event), and the other triggers deliver. Deep output within
/// the limit is pushed and serialised without trouble.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_gigantic_and_halting_filters_hold_their_trigger_and_the_daemon_survives_restarts() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let jmespath_doubling = format!("[@]{}", " | [@, @]".repeat(40));
    let triggers = vec![
        filtered("deep", &receiver, "jq", "reduce range(2500) as $i (0; [.])"),
        filtered(
            "gigantic",
            &receiver,
            "jq",
            "reduce range(40) as $i (.; [., .])",
        ),
        filtered(
            "gigantic-jmespath",
            &receiver,
            "jmespath",
            &jmespath_doubling,
        ),
        filtered("halting", &receiver, "jq", r#""bye" | halt_error(1)"#),
        filtered(
            "deep-allowed",
            &receiver,
            "jq",
            "reduce range(500) as $i (.id; [.])",
        ),
        TriggerSpec::new("witness", "Block", receiver.target_toml("witness")),
    ];
    // A generous time limit: converting 16 MiB of output is quick in an optimised build, not in a debug one.
    write_config(
        &files,
        &network,
        &triggers,
        &[("gigantic", "30s"), ("gigantic-jmespath", "30s")],
    );
    let expected = [
        (
            "deep",
            "an output of the filter nests deeper than the limit of 512 levels",
        ),
        (
            "gigantic",
            "the filter's outputs for one event pass the limit of 16 MiB of JSON",
        ),
        (
            "gigantic-jmespath",
            "the filter's outputs for one event pass the limit of 16 MiB of JSON",
        ),
        (
            "halting",
            "it called `halt` or `halt_error` (exit code 1), which ends a jq process",
        ),
    ];

    for run in 0..2 {
        let daemon = Daemon::start(&files).await;
        let last = network.generate(1);
        receiver
            .wait_accepted("witness", last as usize + 1, PATIENCE)
            .await;
        receiver
            .wait_accepted("deep-allowed", last as usize + 1, PATIENCE)
            .await;
        for (name, message) in expected {
            let held = daemon.admin.wait_state(name, "Exception").await;
            let error = held["last_error"]["message"].as_str().unwrap_or_default();
            assert!(
                error.contains("the filter failed on event block-0") && error.contains(message),
                "run {run}, {name}: {held}"
            );
            assert_eq!(
                held["position"],
                json!({"block": 0, "event_index": 0}),
                "run {run}, {name}"
            );
            assert!(receiver.accepted(name).is_empty(), "run {run}, {name}");
        }
        healthz_within(&files, AT_ONCE).await;
        daemon.terminate().await;
    }
    // 500 levels arrived whole: the receiver sees a JSON text nested 500 deep around the event id.
    let pushed = receiver.pushes("deep-allowed");
    let text = match &pushed[0].payload {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    assert_eq!(
        text,
        format!("{}\"block-0\"{}", "[".repeat(500), "]".repeat(500))
    );
    let log = files.log();
    assert!(
        !log.contains("panicked") && !log.contains("overflow"),
        "{log}"
    );
}

/// What can be seen before running is refused by `check-config`, each at its place: recursive definitions, a
/// filter text past the size limit, a JMESPath expression nested past its limit, a bad `filter_timeout`. An
/// endless generator is not refused (whether it ends depends on the event): its time limit handles it.
#[tokio::test]
async fn check_config_refuses_what_it_can_see_and_accepts_generators_it_cannot_judge() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let long = format!(". as $x | {}", ".".repeat(17 * 1024));
    let nested = format!("{}@{}", "[".repeat(300), "]".repeat(300));
    let triggers = vec![
        filtered("recursive", &receiver, "jq", "def f: [f]; f"),
        filtered("long", &receiver, "jq", &long),
        filtered("nested", &receiver, "jmespath", &nested),
        filtered("zero-timeout", &receiver, "jq", "."),
        filtered("long-timeout", &receiver, "jq", "."),
        filtered("generator", &receiver, "jq", "last(range(1e12))"),
    ];
    write_config(
        &files,
        &network,
        &triggers,
        &[
            ("zero-timeout", "0ms"),
            ("long-timeout", "10m"),
            ("generator", "2s"),
        ],
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args(["check-config", "--skip-environment"])
        .arg(files.config_path())
        .env("RUST_LOG", "off")
        .output()
        .expect("run check-config");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(files.config_path()).expect("the configuration");
    let line = |trigger: &str, key: &str| {
        let at = text
            .find(&format!("name = {}", toml_str(trigger)))
            .expect("the trigger");
        let key_at = at + text[at..].find(&format!("\n{key} = ")).expect("the key") + 1;
        text[..key_at].matches('\n').count() + 1
    };
    for (index, trigger, key, message) in [
        (0, "recursive", "filter", "`def f` calls itself"),
        (1, "long", "filter", "at most 16 KiB are accepted"),
        (
            2,
            "nested",
            "filter",
            "nests 301 levels deep; at most 256 are accepted",
        ),
        (
            3,
            "zero-timeout",
            "filter_timeout",
            "the timeout must be above 0",
        ),
        (
            4,
            "long-timeout",
            "filter_timeout",
            "600s is above the longest filter timeout, 60s",
        ),
    ] {
        let place = format!("chaintrigger.toml:{}:", line(trigger, key));
        assert!(
            stderr.lines().any(|l| l.contains(&place)
                && l.contains(&format!("triggers[{index}].{key}"))
                && l.contains(message)),
            "{trigger}: expected `{place} triggers[{index}].{key}: ...{message}` in\n{stderr}"
        );
    }
    assert!(stderr.contains("5 problems in"), "{stderr}");
    assert!(!stderr.contains("triggers[5]"), "{stderr}");
}
