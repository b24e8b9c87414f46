//! The admin API of the real daemon under abuse: thousands of idle connections beside a working client, start
//! blocks it cannot honour, secrets in target URLs, and remote access over TLS (and its refusal without).

use std::process::Stdio;
use std::time::Duration;

use axum::extract::{RawQuery, Request};
use axum::http::StatusCode;
use serde_json::Value;

use crate::admin_limits::{TlsFiles, idle_connections, raise_fd_limit, wait_closed};
use crate::support::daemon::{
    ADMIN_TOKEN, Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, cli, eventually,
    toml_str,
};

/// A simulated peer, a receiver, and the files of a daemon with one trigger, `blocks`, pushing every block to it.
async fn one_trigger() -> (Network, Receiver, DaemonFiles) {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    files.write_config(
        &network,
        &[TriggerSpec::new(
            "blocks",
            "Block",
            receiver.target_toml("blocks"),
        )],
    );
    (network, receiver, files)
}

/// Starts `chaintrigger serve` on the files' configuration with `RUST_LOG=rust_log`, its stderr appended to the
/// files' log, and at most `max_files` open files (soft and hard) when given.
fn spawn(
    files: &DaemonFiles,
    rust_log: &str,
    max_files: Option<libc::rlim_t>,
) -> tokio::process::Child {
    chaintrigger::install_crypto_provider();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.dir.path().join("daemon.log"))
        .expect("open the daemon log");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"));
    command
        .arg("serve")
        .arg("--config")
        .arg(files.config_path())
        .env("RUST_LOG", rust_log)
        .env_remove("CHAINTRIGGER_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    if let Some(max) = max_files {
        // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: max,
                    rlim_max: max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    command.spawn().expect("start the chaintrigger binary")
}

/// Waits until `url/healthz` answers 200 through `client`, failing with the log if the daemon exits first.
async fn wait_healthy(
    child: &mut tokio::process::Child,
    files: &DaemonFiles,
    client: &reqwest::Client,
    url: &str,
) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon exited with {status}:\n{}", files.log());
        }
        if let Ok(response) = client.get(format!("{url}/healthz")).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon's admin API did not answer within {PATIENCE:?}:\n{}",
            files.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The configuration the files hold, with its `[admin]` table's `listen` line replaced by `admin_lines`.
fn with_admin(files: &DaemonFiles, admin_lines: &str) -> String {
    let text = std::fs::read_to_string(files.config_path()).expect("read the configuration");
    let listen = format!("listen = \"127.0.0.1:{}\"", files.admin_port);
    assert!(text.contains(&listen), "{text}");
    text.replace(&listen, admin_lines)
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = client.request(method, url).bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("the admin API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn start_blocks_beyond_the_store_or_the_chain_head_are_refused_through_http_and_the_cli() {
    let (network, _receiver, files) = one_trigger().await;
    let daemon = Daemon::start(&files).await;
    let height = network.height();
    let before = daemon.admin.wait_position("blocks", height).await;
    let http = reqwest::Client::new();
    let enable = format!("{}/v1/triggers/blocks/enable", daemon.admin.url);
    let huge = u64::MAX.to_string();
    let far = (height + 1_000_000).to_string();

    for (query, body, expected) in [
        (
            format!("?from={huge}"),
            None,
            "beyond the highest block number a position can hold",
        ),
        (
            String::new(),
            Some(format!("{{\"from\": {huge}}}")),
            "beyond the highest block number",
        ),
        (
            String::new(),
            Some(format!("{{\"from\": \"{huge}\"}}")),
            "beyond the highest block number",
        ),
        (
            format!("?from={far}"),
            None,
            "beyond the head of channel `mychannel`",
        ),
        (
            "?from=-1".to_owned(),
            None,
            "expected `latest`, `position` or a block number",
        ),
        (
            String::new(),
            Some("{\"from\": 18446744073709551616}".to_owned()),
            "expected an empty body or a JSON object",
        ),
    ] {
        let (status, answer) = call(
            &http,
            reqwest::Method::POST,
            &format!("{enable}{query}"),
            body.as_deref(),
        )
        .await;
        assert_eq!(status, 400, "{query} {body:?}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{query} {body:?}: {message}");
    }
    let (status, answer) = call(
        &http,
        reqwest::Method::POST,
        &format!("{enable}?from={far}"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("newest block is {}", height - 1)),
        "the message says where the head is: {message}"
    );

    for from in [huge.as_str(), far.as_str()] {
        let (ok, stdout, stderr) = cli(&files, &["enable", "blocks", "--from", from]).await;
        assert!(!ok, "enable --from {from} must fail:\n{stdout}");
        assert!(stderr.contains("[400 bad_request]"), "{stderr}");
        assert!(
            stderr.contains(from),
            "the CLI shows the refused block: {stderr}"
        );
    }
    let after = daemon.admin.trigger("blocks").await;
    assert_eq!(
        after["position"], before["position"],
        "nothing moved: {after}"
    );
    assert_eq!(after["state"], "Running");

    // The next block (the chain's height) is fine: the trigger waits for it.
    let (status, answer) = call(
        &http,
        reqwest::Method::POST,
        &format!("{enable}?from={height}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["position"]["block"], height, "{answer}");
}

/// A receiver that refuses every push with its request line and headers echoed back, as many error pages do.
async fn echo_receiver() -> (String, tokio_util::sync::CancellationToken) {
    async fn echo(RawQuery(query): RawQuery, request: Request) -> (StatusCode, String) {
        let headers: Vec<String> = request
            .headers()
            .iter()
            .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
            .collect();
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "cannot handle {} {} (query {:?}) with {}",
                request.method(),
                request.uri(),
                query,
                headers.join(", ")
            ),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let app = axum::Router::new().fallback(echo);
    let shutdown = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    (url, stop)
}

#[tokio::test]
async fn secrets_in_target_urls_appear_nowhere() {
    const QUERY_SECRET: &str = "qs3cret-4f9d2a";
    const SIGNATURE: &str = "sig-77aa01bb";
    const PASSWORD: &str = "pw-c0ffee-91";
    const TOKEN: &str = "bearer-5ecret-0042";
    let network = Network::start(None).await;
    let (echo, _stop_echo) = echo_receiver().await;
    let files = DaemonFiles::new();
    std::fs::write(files.dir.path().join("hook-token"), TOKEN).unwrap();
    let target = |url: String, extra: &str| {
        format!("[triggers.target.http]\nurl = {}\n{extra}", toml_str(&url))
    };
    let mut echoed = TriggerSpec::new(
        "echoed",
        "Block",
        target(
            format!("{echo}/hook?key={QUERY_SECRET}&sig={SIGNATURE}"),
            "auth = { bearer = { token = { file = \"hook-token\" } } }\n",
        ),
    );
    echoed.attempts = 2;
    let mut get = TriggerSpec::new(
        "get",
        "Block",
        target(
            format!("{echo}/get?key={QUERY_SECRET}"),
            "method = \"GET\"\n",
        ),
    );
    get.attempts = 1;
    let mut unreachable = TriggerSpec::new(
        "unreachable",
        "Block",
        target(
            format!("http://ops:{PASSWORD}@127.0.0.1:1/hook?key={QUERY_SECRET}"),
            "",
        ),
    );
    unreachable.attempts = 2;
    files.write_config(&network, &[echoed, get, unreachable]);
    let mut child = spawn(&files, "debug", None);
    let http = reqwest::Client::new();
    let url = files.admin_url();
    wait_healthy(&mut child, &files, &http, &url).await;
    let admin = crate::support::daemon::Admin::new(url.clone());
    for name in ["echoed", "get"] {
        eventually(&format!("a dead letter of {name}"), PATIENCE, || async {
            (!admin.dead_letters(name).await.is_empty()).then_some(())
        })
        .await;
    }
    let unreachable = admin.wait_state("unreachable", "Exception").await;

    // The errors still say where the push went, with the secrets masked.
    let message = unreachable["last_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("127.0.0.1:1/hook?key=***"),
        "the unreachable URL, redacted: {message}"
    );
    let echoed = admin.trigger("echoed").await;
    let message = echoed["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("HTTP target answered 500") && message.contains("key=***"),
        "the echoed request, scrubbed: {message}"
    );

    let mut seen = Vec::new();
    for path in [
        "/v1/triggers",
        "/v1/triggers/echoed/dead-letters",
        "/v1/triggers/get/dead-letters",
        "/v1/channels",
        "/metrics",
    ] {
        let (status, body) = admin.call(reqwest::Method::GET, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        seen.push((path.to_owned(), body.to_string()));
    }
    for args in [
        &["list"][..],
        &["show", "echoed"],
        &["show", "get"],
        &["show", "unreachable"],
        &["dead-letters", "echoed"],
        &["--json", "dead-letters", "get"],
        &["dead-letters", "echoed", "--repush-all"],
    ] {
        let (_, stdout, stderr) = cli(&files, args).await;
        seen.push((format!("triggers {args:?}"), format!("{stdout}\n{stderr}")));
    }
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args(["check-config", "--skip-environment", "--config"])
        .arg(files.config_path())
        .output()
        .expect("check-config runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let summary = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(summary.contains("/hook?key=***&sig=***"), "{summary}");
    seen.push(("check-config".to_owned(), summary));
    // A configuration error showing the URL shows it redacted too.
    let broken = std::fs::read_to_string(files.config_path())
        .unwrap()
        .replace("url = \"http://ops:", "url = \"gopher://ops:");
    let broken_file = files.dir.path().join("broken.toml");
    std::fs::write(&broken_file, broken).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args(["check-config", "--skip-environment"])
        .arg(&broken_file)
        .output()
        .expect("check-config runs");
    assert!(!check.status.success());
    let refused = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(
        refused.contains("gopher://***@127.0.0.1:1/hook?key=***"),
        "{refused}"
    );
    seen.push(("check-config (refused)".to_owned(), refused));

    child.start_kill().expect("stop the daemon");
    child.wait().await.expect("reap the daemon");
    let log = files.log();
    assert!(
        log.contains("push discarded after its retries"),
        "the log has the failures:\n{log}"
    );
    seen.push(("the daemon's log".to_owned(), log));
    for (place, text) in &seen {
        for secret in [QUERY_SECRET, SIGNATURE, PASSWORD, TOKEN] {
            assert!(
                !text.contains(secret),
                "{secret} appears in {place}:\n{text}"
            );
        }
    }
}

#[tokio::test]
async fn two_thousand_idle_connections_leave_the_daemon_answering_and_delivering() {
    raise_fd_limit(8_192);
    let (network, _receiver, files) = one_trigger().await;
    let text = with_admin(
        &files,
        &format!(
            "listen = \"127.0.0.1:{}\"\nheader_read_timeout = \"3s\"",
            files.admin_port
        ),
    );
    files.write_raw(&text);
    // The daemon gets the open-file limit many systems default to: below the connections thrown at it.
    let mut child = spawn(&files, "info", Some(1_024));
    let url = files.admin_url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_healthy(&mut child, &files, &http, &url).await;
    let admin = crate::support::daemon::Admin::new(url.clone());
    admin.wait_position("blocks", network.height()).await;

    let flood = idle_connections(&format!("127.0.0.1:{}", files.admin_port), 2_000).await;
    let health = http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(health.status(), 200);
    let (status, listing) = call(
        &http,
        reqwest::Method::GET,
        &format!("{url}/v1/triggers"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["triggers"][0]["name"], "blocks");
    let (ok, stdout, stderr) = cli(&files, &["list"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("blocks"), "{stdout}");
    // The triggers go on meanwhile.
    let last = network.generate(2);
    admin.wait_position("blocks", last + 1).await;
    // Every idle connection is gone after the header-read timeout, so nothing piles up.
    assert_eq!(
        wait_closed(&flood, flood.len(), Duration::from_secs(30)).await,
        flood.len()
    );
    let log = files.log();
    assert!(
        log.contains("admin API at its connection cap"),
        "the cap is reported:\n{log}"
    );
    assert!(
        !log.contains("cannot accept a connection"),
        "the daemon never ran out of descriptors:\n{log}"
    );
    child.start_kill().expect("stop the daemon");
}

#[tokio::test]
async fn remote_access_is_served_over_tls_only() {
    let (_network, _receiver, files) = one_trigger().await;
    let tls = TlsFiles::new();
    let port = files.admin_port;
    let listen = format!("listen = \"127.0.0.1:{port}\"");
    let base = std::fs::read_to_string(files.config_path()).expect("read the configuration");
    let with = |admin: &str| base.replace(&listen, admin);
    let tls_lines = format!(
        "tls_certificate = {}\ntls_key = {}",
        toml_str(&tls.path("admin.pem")),
        toml_str(&tls.path("admin.key")),
    );
    files.write_raw(&with(&format!(
        "listen = \"0.0.0.0:{port}\"\nallow_remote = true\n{tls_lines}"
    )));
    let mut child = spawn(&files, "info", None);
    // Listening on every address, reached through loopback, verified against the test CA.
    let url = format!("https://127.0.0.1:{port}");
    let client = tls.client();
    wait_healthy(&mut child, &files, &client, &url).await;
    let (status, listing) = call(
        &client,
        reqwest::Method::GET,
        &format!("{url}/v1/triggers"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["triggers"][0]["name"], "blocks");
    let refused = client
        .get(format!("{url}/v1/triggers"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the token is still required");
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "no plain HTTP on the TLS port"
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args([
            "triggers",
            "--admin",
            &url,
            "--admin-ca",
            &tls.path("ca.pem"),
        ])
        .arg("--token-file")
        .arg(files.dir.path().join("admin-token"))
        .arg("list")
        .env_remove("CHAINTRIGGER_ADMIN_TOKEN")
        .env_remove("CHAINTRIGGER_ADMIN_URL")
        .env_remove("CHAINTRIGGER_ADMIN_CA")
        .output()
        .await
        .expect("the CLI runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("blocks"));
    let listening = files
        .log()
        .lines()
        .find(|line| line.contains("admin API listening"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        listening.contains("https") && listening.contains(&format!("0.0.0.0:{port}")),
        "the log says how the API is served:\n{}",
        files.log()
    );
    child.start_kill().expect("stop the daemon");
    child.wait().await.expect("reap the daemon");

    // Without TLS, or without `allow_remote`, or with a key that is not the certificate's, the daemon refuses
    // to start with the problem located at the setting, and check-config says the same.
    let wrong_key = format!(
        "tls_certificate = {}\ntls_key = {}",
        toml_str(&tls.path("admin.pem")),
        toml_str(&tls.path("ca.pem")),
    );
    for (admin, key, expected) in [
        (
            format!("listen = \"0.0.0.0:{port}\"\nallow_remote = true"),
            "allow_remote",
            "admin.allow_remote: `allow_remote = true` needs `tls_certificate` and `tls_key`",
        ),
        (
            format!("listen = \"0.0.0.0:{port}\""),
            "listen",
            "`allow_remote = true` in [admin] together with `tls_certificate` and `tls_key`",
        ),
        (
            format!("listen = \"0.0.0.0:{port}\"\nallow_remote = true\n{wrong_key}"),
            "tls_key",
            "expected a PEM private key",
        ),
    ] {
        let text = with(&admin);
        files.write_raw(&text);
        let line = text
            .lines()
            .position(|line| line.starts_with(&format!("{key} = ")))
            .expect("the setting is in the file")
            + 1;
        let place = format!("{}:{line}:", files.config_path().display());
        let before = files.log().len();
        let mut child = spawn(&files, "info", None);
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .expect("the daemon exits")
            .expect("reap the daemon");
        assert!(!status.success(), "{admin}");
        let log = files.log()[before..].to_owned();
        assert!(log.contains(expected), "expected {expected:?} in:\n{log}");
        assert!(
            log.contains(&place) && log.contains(&format!("admin.{key}: ")),
            "the problem is located at {place} admin.{key}:\n{log}"
        );
        let check = std::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
            .args(["check-config", "--config"])
            .arg(files.config_path())
            .env("CHAINTRIGGER_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .expect("check-config runs");
        assert!(!check.status.success());
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains(&place),
            "check-config says the same: {stderr}"
        );
    }
}

#[tokio::test]
async fn reload_start_and_check_config_refuse_with_the_same_full_list() {
    let (network, _receiver, files) = one_trigger().await;
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("blocks", network.height()).await;

    let mut broken = std::fs::read_to_string(files.config_path()).unwrap();
    broken.push_str(
        "\n[[triggers]]\nname = \"typed\"\nchannel = \"mychannel\"\nevent = \"Block\"\nfailure_threshold = \"x\"\n\
         enabled = \"no\"\n[triggers.target.http]\nurl = \"http://127.0.0.1:9/\"\n\
         \n[[triggers]]\nname = \"lost\"\nchannel = \"nochannel\"\nevent = \"Block\"\n\
         [triggers.target.http]\nurl = \"http://127.0.0.1:9/\"\n\
         \n[[triggers]]\nname = \"secret\"\nchannel = \"mychannel\"\nevent = \"Block\"\n\
         [triggers.target.http]\nurl = \"http://127.0.0.1:9/\"\n\
         auth = { bearer = { token = { file = \"no-such-token\" } } }\n",
    );
    files.write_raw(&broken);
    let line = |start: &str| {
        broken
            .lines()
            .position(|line| line.starts_with(start))
            .expect("the line is in the file")
            + 1
    };
    let file = files.config_path().display().to_string();
    let expected = [
        format!(
            "{file}:{}:21: triggers[1].failure_threshold: invalid type: string \"x\"",
            line("failure_threshold = \"x\"")
        ),
        format!(
            "{file}:{}:11: triggers[1].enabled: invalid type: string \"no\", expected a boolean",
            line("enabled = \"no\"")
        ),
        format!(
            "{file}:{}:11: triggers[2].channel: unknown channel `nochannel`",
            line("channel = \"nochannel\"")
        ),
        format!(
            "{file}:{}:29: triggers[3].target.http.auth.bearer.token: cannot read secret file",
            line("auth = { bearer")
        ),
    ];
    let (status, body) = daemon.admin.call(reqwest::Method::POST, "/v1/reload").await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (ok, _, stderr) = cli(&files, &["reload"]).await;
    assert!(!ok);
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args(["check-config", "--config"])
        .arg(files.config_path())
        .output()
        .expect("check-config runs");
    let checked = String::from_utf8_lossy(&check.stderr).into_owned();
    let listed = daemon.admin.triggers().await;
    assert_eq!(listed.len(), 1, "nothing changed: {listed:?}");
    daemon.kill().await;
    let before = files.log().len();
    let mut child = spawn(&files, "info", None);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the daemon exits")
        .expect("reap the daemon");
    assert!(!status.success());
    let start = files.log()[before..].to_owned();
    for (place, text) in [
        ("reload over the API", &message),
        ("triggers reload", &stderr),
        ("check-config", &checked),
        ("serve", &start),
    ] {
        for line in &expected {
            assert!(
                text.contains(line.as_str()),
                "{place} lacks `{line}`:\n{text}"
            );
        }
        assert!(!text.contains("missing field"), "{place}:\n{text}");
    }
}
