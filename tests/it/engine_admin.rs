//! Operating a running daemon: reload, the admin token, the CLI, and deletes that survive a restart.

use reqwest::Method;

use crate::support::daemon::{
    ADMIN_TOKEN, Behaviour, Daemon, DaemonFiles, Network, Receiver, TriggerSpec, block_ids, cli,
};

/// Reload starts a trigger added to the TOML and stops one removed from it; a broken TOML is refused with the
/// file, line and field named, and the running triggers go on.
#[tokio::test]
async fn reload_adds_and_removes_triggers_and_refuses_a_broken_file() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let keep = TriggerSpec::new("keep", "Block", receiver.target_toml("keep"));
    let gone = TriggerSpec::new("gone", "Block", receiver.target_toml("gone"));
    let added = TriggerSpec::new("added", "Block", receiver.target_toml("added"));
    files.write_config(&network, &[keep.clone(), gone]);
    let daemon = Daemon::start(&files).await;
    let admin = &daemon.admin;
    let recorded = network.height();
    admin.wait_position("keep", recorded).await;
    admin.wait_position("gone", recorded).await;

    files.write_config(&network, &[keep.clone(), added.clone()]);
    let (ok, stdout, stderr) = cli(&files, &["--json", "reload"]).await;
    assert!(ok, "triggers reload failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    assert_eq!(report["added"], serde_json::json!(["added"]), "{report}");
    assert_eq!(report["removed"], serde_json::json!(["gone"]), "{report}");
    admin.wait_position("added", recorded).await;
    assert_eq!(receiver.accepted("added"), block_ids(0, recorded));
    let last = network.generate(2);
    admin.wait_position("keep", last + 1).await;
    admin.wait_position("added", last + 1).await;
    assert_eq!(
        receiver.accepted("gone"),
        block_ids(0, recorded),
        "a removed trigger pushes nothing more"
    );
    let listed = admin.triggers().await;
    assert!(!listed.contains_key("gone"), "{listed:?}");

    let mut broken = std::fs::read_to_string(files.config_path()).expect("read the configuration");
    let line = broken.lines().count() + 5;
    broken.push_str(
        "\n[[triggers]]\nname = \"broken\"\nchannel = \"mychannel\"\nevent = \"Blok\"\n\
         [triggers.target.http]\nurl = \"http://127.0.0.1:9/\"\n",
    );
    files.write_raw(&broken);
    let (status, body) = admin.call(Method::POST, "/v1/reload").await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let place = format!("{}:{line}:", files.config_path().display());
    assert!(message.contains(&place), "expected {place} in {body}");
    assert!(message.contains("event"), "{body}");
    let (ok, stdout, stderr) = cli(&files, &["reload"]).await;
    assert!(!ok, "a broken reload must fail:\n{stdout}");
    assert!(stderr.contains(&place), "expected {place} in:\n{stderr}");

    let next = network.generate(1);
    admin.wait_position("keep", next + 1).await;
    admin.wait_position("added", next + 1).await;
    let listed = admin.triggers().await;
    let mut names: Vec<&String> = listed.keys().collect();
    names.sort();
    assert_eq!(names, ["added", "keep"]);

    // SIGHUP reloads too: a trigger added with the default start (latest) gets only blocks from now on, and a
    // changed filter applies from the trigger's stored position.
    let mut filtered = keep.clone();
    filtered.filter = Some(("jq", "{block: .name}".to_owned()));
    let mut latest = TriggerSpec::new("latest", "Block", receiver.target_toml("latest"));
    latest.start = None;
    files.write_config(&network, &[filtered, added, latest]);
    daemon.hangup();
    admin
        .wait_for("latest", "added by SIGHUP", |t| t["state"] == "Running")
        .await;
    let keep_before = receiver.accepted("keep").len();
    let last = network.generate(2);
    for name in ["keep", "added", "latest"] {
        admin.wait_position(name, last + 1).await;
    }
    assert_eq!(receiver.accepted("latest"), block_ids(last - 1, last + 1));
    let reshaped: Vec<serde_json::Value> = receiver.pushes("keep")[keep_before..]
        .iter()
        .map(|p| p.payload.clone())
        .collect();
    assert_eq!(
        reshaped,
        [
            serde_json::json!({"block": (last - 1).to_string()}),
            serde_json::json!({"block": last.to_string()})
        ]
    );
}

/// The admin API of a running daemon refuses requests without the right token (the health check excepted), and
/// the CLI with the token lists the triggers with their heights.
#[tokio::test]
async fn the_admin_api_wants_its_token_and_the_cli_shows_heights() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let mut parked = TriggerSpec::new("parked", "Block", receiver.target_toml("parked"));
    parked.enabled = false;
    files.write_config(
        &network,
        &[
            TriggerSpec::new("blocks", "Block", receiver.target_toml("blocks")),
            parked,
        ],
    );
    let daemon = Daemon::start(&files).await;
    let height = network.height();
    daemon.admin.wait_position("blocks", height).await;
    let parked = daemon.admin.trigger("parked").await;
    assert_eq!(parked["state"], "Disabled", "declared disabled: {parked}");
    assert!(receiver.pushes("parked").is_empty());

    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", daemon.admin.url);
    let health = client.get(url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    for (method, path) in [
        (Method::GET, "/v1/triggers"),
        (Method::GET, "/v1/triggers/blocks"),
        (Method::POST, "/v1/triggers/blocks/disable"),
        (Method::DELETE, "/v1/triggers/blocks"),
        (Method::POST, "/v1/reload"),
        (Method::GET, "/metrics"),
    ] {
        let none = client
            .request(method.clone(), url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(none.status(), 401, "{method} {path} without a token");
        let wrong = client
            .request(method.clone(), url(path))
            .bearer_auth(format!("{ADMIN_TOKEN}x"))
            .send()
            .await
            .expect("request");
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
        let body: serde_json::Value = wrong.json().await.expect("a JSON error");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let blocks = daemon.admin.trigger("blocks").await;
    assert_eq!(
        blocks["state"], "Running",
        "refused commands changed nothing"
    );
    let metrics = client
        .get(url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let labels = "{trigger=\"blocks\",channel=\"mychannel\"}";
    for line in [
        format!("chaintrigger_trigger_delivered_total{labels} {height}"),
        format!("chaintrigger_trigger_block_height{labels} {}", height - 1),
        format!("chaintrigger_channel_chain_height{{channel=\"mychannel\"}} {height}"),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from /metrics:\n{metrics}"
        );
    }

    let (ok, stdout, stderr) = cli(&files, &["list"]).await;
    assert!(ok, "triggers list failed:\n{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("blocks"))
        .unwrap_or_else(|| panic!("no row for the trigger:\n{stdout}"));
    assert!(row.contains("Running"), "{row}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("parked") && l.contains("Disabled")),
        "{stdout}"
    );
    assert!(
        row.contains(&format!("{}/{height}", height - 1)),
        "height/chain in: {row}"
    );
    let (ok, stdout, stderr) = cli(&files, &["--json", "list"]).await;
    assert!(ok, "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(list["triggers"][0]["block_height"], height - 1, "{list}");
    assert_eq!(list["triggers"][0]["chain_height"], height, "{list}");
    let log = files.log();
    assert!(
        !log.contains(ADMIN_TOKEN),
        "the daemon logged the admin token (or a wrong one):\n{log}"
    );
}

/// A trigger deleted over the API stays deleted when the daemon restarts with its TOML entry still there, and
/// the daemon says so in its log.
#[tokio::test]
async fn a_deleted_trigger_stays_deleted_across_a_restart() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    files.write_config(
        &network,
        &[
            TriggerSpec::new("keep", "Block", receiver.target_toml("keep")),
            TriggerSpec::new("doomed", "Block", receiver.target_toml("doomed")),
        ],
    );
    let daemon = Daemon::start(&files).await;
    let recorded = network.height();
    daemon.admin.wait_position("keep", recorded).await;
    daemon.admin.wait_position("doomed", recorded).await;

    let (status, body) = daemon
        .admin
        .call(Method::DELETE, "/v1/triggers/doomed")
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = daemon.admin.call(Method::GET, "/v1/triggers/doomed").await;
    assert_eq!(status, 404, "{body}");
    assert!(!daemon.admin.triggers().await.contains_key("doomed"));
    daemon.terminate().await;

    let last = network.generate(2);
    let log_before = files.log().len();
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("keep", last + 1).await;
    assert!(!daemon.admin.triggers().await.contains_key("doomed"));
    let (status, body) = daemon
        .admin
        .call(Method::POST, "/v1/triggers/doomed/enable")
        .await;
    assert_eq!(status, 409, "a deleted trigger cannot be enabled: {body}");
    assert_eq!(
        receiver.accepted("doomed"),
        block_ids(0, recorded),
        "a deleted trigger pushes nothing more"
    );
    let log = files.log();
    let restart_log = &log[log_before..];
    assert!(
        restart_log
            .lines()
            .any(|l| l.contains("doomed") && l.contains("deleted")),
        "the daemon says the trigger stays deleted:\n{restart_log}"
    );
}

/// Events discarded while the target was down are kept as dead letters with their error; once the target is
/// fixed an operator pushes them again, one or all, and the listing shows them as re-pushed.
#[tokio::test]
async fn dead_letters_are_pushed_again_once_the_target_is_fixed() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    receiver.set("flaky", Behaviour::Status(500));
    let files = DaemonFiles::new();
    let recorded = network.height();
    let mut flaky = TriggerSpec::new("flaky", "Block", receiver.target_toml("flaky"));
    flaky.start = Some(recorded - 4);
    flaky.attempts = 2;
    files.write_config(&network, &[flaky]);
    let daemon = Daemon::start(&files).await;
    let admin = &daemon.admin;
    let status = admin.wait_position("flaky", recorded).await;
    assert_eq!(status["state"], "Running", "{status}");
    assert_eq!(status["discarded"], 4, "{status}");
    assert_eq!(status["failure_count"], 4, "{status}");
    let letters = admin.dead_letters("flaky").await;
    let ids: Vec<&str> = letters
        .iter()
        .map(|l| l["event_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, block_ids(recorded - 4, recorded));
    for letter in &letters {
        assert_eq!(letter["attempts"], 2, "{letter}");
        assert_eq!(letter["repushed"], false, "{letter}");
        assert!(
            letter["error"].as_str().unwrap_or_default().contains("500"),
            "{letter}"
        );
    }
    assert!(receiver.accepted("flaky").is_empty());

    receiver.set("flaky", Behaviour::Accept);
    let first = letters[0]["id"].as_u64().expect("dead letter id");
    let (status, outcome) = admin
        .call(
            Method::POST,
            &format!("/v1/triggers/flaky/dead-letters/{first}/repush"),
        )
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["delivered"], true, "{outcome}");
    let (ok, stdout, stderr) =
        cli(&files, &["--json", "dead-letters", "flaky", "--repush-all"]).await;
    assert!(ok, "dead-letters --repush-all failed:\n{stdout}\n{stderr}");
    let outcomes: serde_json::Value = serde_json::from_str(&stdout).expect("JSON outcomes");
    let outcomes = outcomes["outcomes"].as_array().expect("a list of outcomes");
    assert_eq!(
        outcomes.len(),
        3,
        "the one already re-pushed is skipped: {stdout}"
    );
    assert!(outcomes.iter().all(|o| o["delivered"] == true), "{stdout}");
    assert_eq!(
        receiver.accepted("flaky"),
        block_ids(recorded - 4, recorded)
    );
    let after = admin.dead_letters("flaky").await;
    assert_eq!(after.len(), 4, "re-pushed dead letters stay listed");
    assert!(after.iter().all(|l| l["repushed"] == true), "{after:?}");
}
