//! `chaintrigger tail` as a user runs it: the binary follows the simulator over TLS, configured by a TOML file,
//! and prints the BaaS envelopes as JSON lines.

use std::process::Command;

use serde_json::Value;

use crate::support::fabric::{PEER_NAME, RunningPeer, TlsPki, fixture_path};

fn write_config(
    dir: &std::path::Path,
    pki: &TlsPki,
    peer: &RunningPeer,
    extra: &str,
) -> std::path::PathBuf {
    std::fs::write(dir.join("tls-ca.pem"), pki.ca.cert_pem()).expect("write CA");
    let config = format!(
        r#"[channel]
name = "mychannel"
peers = [{{ address = "{address}", tls_server_name = "{PEER_NAME}" }}]
tls_ca = "tls-ca.pem"
msp_id = "Org1MSP"
cert = "{cert}"
key = "{key}"
start = 11
{extra}"#,
        address = peer.address,
        cert = fixture_path("msp/user1_signcert.pem").display(),
        key = fixture_path("msp/user1_key.pem").display(),
    );
    let path = dir.join("tail.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

fn tail(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .arg("tail")
        .args(args)
        .output()
        .expect("run chaintrigger tail")
}

#[tokio::test]
async fn tail_prints_every_event_of_the_requested_blocks_as_json_lines() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &pki, &peer, "");
    let config_arg = config.to_str().expect("UTF-8 path").to_owned();
    let output =
        tokio::task::spawn_blocking(move || tail(&["--config", &config_arg, "--blocks", "2"]))
            .await
            .expect("tail task");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.first(), Some(&"block-11"));
    assert!(ids.contains(&"block-12"));
    // Block 11: 8 valid transactions, each with its event; block 12: 5 transactions, 1 valid.
    let count = |kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("Block"), 2);
    assert_eq!(count("Tx"), 13);
    assert_eq!(count("Contract"), 9);
    assert!(
        events
            .iter()
            .all(|e| e["network"] == "mychannel" && e["platform"] == "Fabric")
    );
}

#[tokio::test]
async fn tail_names_the_file_and_field_of_a_bad_setting() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &pki, &peer, "adress = \"typo\"\n");
    let config_arg = config.to_str().expect("UTF-8 path").to_owned();
    let output =
        tokio::task::spawn_blocking(move || tail(&["--config", &config_arg, "--blocks", "1"]))
            .await
            .expect("tail task");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tail.toml"), "{stderr}");
    assert!(stderr.contains("unknown field `adress`"), "{stderr}");

    // A CA file that is not a certificate: named, with what was expected.
    std::fs::write(dir.path().join("bad-ca.pem"), "not a certificate").expect("write");
    let config_arg = write_config(dir.path(), &pki, &peer, "")
        .to_str()
        .expect("UTF-8 path")
        .to_owned();
    let output = tokio::task::spawn_blocking(move || {
        tail(&[
            "--config",
            &config_arg,
            "--tls-ca",
            "/nonexistent/ca.pem",
            "--blocks",
            "1",
        ])
    })
    .await
    .expect("tail task");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read TLS CA file /nonexistent/ca.pem"),
        "{stderr}"
    );

    let bad_ca = dir
        .path()
        .join("bad-ca.pem")
        .to_str()
        .expect("UTF-8")
        .to_owned();
    let config_arg = config.to_str().expect("UTF-8 path").to_owned();
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .expect("read")
            .replace("adress = \"typo\"\n", ""),
    )
    .expect("rewrite");
    let output = tokio::task::spawn_blocking(move || {
        tail(&[
            "--config",
            &config_arg,
            "--tls-ca",
            &bad_ca,
            "--blocks",
            "1",
        ])
    })
    .await
    .expect("tail task");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "bad-ca.pem: expected one or more PEM CERTIFICATE blocks, found no PEM at all"
        ),
        "{stderr}"
    );
}

/// Runs `tail` with a deadline: it must exit by itself, not retry forever.
async fn tail_exits(args: Vec<String>) -> (std::process::ExitStatus, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .arg("tail")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run chaintrigger tail");
    let output = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tail {args:?} still runs after 20 s: it retries forever"))
        .expect("tail output");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn tail_exits_with_what_to_fix_when_retrying_cannot_help() {
    let pki = TlsPki::new();
    let dir = tempfile::tempdir().expect("temp dir");

    // A peer that requires a client certificate (mutual TLS), and none given.
    let mutual = RunningPeer::fixtures(Some(pki.server_tls(true))).await;
    let config = write_config(dir.path(), &pki, &mutual, "");
    let config = config.to_str().expect("UTF-8 path").to_owned();
    let (status, stderr, took) = tail_exits(vec!["--config".into(), config]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("the peer requires mutual TLS: pass --client-cert and --client-key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("requires a client certificate (mutual TLS)"),
        "{stderr}"
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");

    // An unknown channel, and an identity that is not a reader.
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    let config = write_config(dir.path(), &pki, &peer, "");
    let config = config.to_str().expect("UTF-8 path").to_owned();
    let (status, stderr, _) = tail_exits(vec![
        "--config".into(),
        config.clone(),
        "--channel".into(),
        "nosuchchannel".into(),
    ])
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("the peer does not serve channel `nosuchchannel`"),
        "{stderr}"
    );
    assert!(stderr.contains("NOT_FOUND (404)"), "{stderr}");

    let (status, stderr, _) = tail_exits(vec![
        "--config".into(),
        config,
        "--msp-id".into(),
        "Org2MSP".into(),
    ])
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("is not a reader of `mychannel`"),
        "{stderr}"
    );
    assert!(stderr.contains("FORBIDDEN (403)"), "{stderr}");
}

/// `tail` renders a channel as the daemon does: v3 for a channel whose configuration has the `V3_0` capability
/// (learned from its last config block), unless `--rendering` pins another.
#[tokio::test]
async fn tail_learns_the_channels_rendering_unless_pinned() {
    use chaintrigger::peersim::{PeerSimConfig, fixture::Recording};

    let pki = TlsPki::new();
    let recording = Recording::V3_1;
    let peer = RunningPeer::start(PeerSimConfig {
        tls: Some(pki.server_tls(false)),
        ..PeerSimConfig::from_recording(recording)
    })
    .await;
    let newest = peer.handle.height() - 1;
    let dir = tempfile::tempdir().expect("temp dir");
    let msp = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(recording.fixture_dir())
        .join("msp");
    let config = write_config(dir.path(), &pki, &peer, "")
        .to_str()
        .expect("UTF-8 path")
        .to_owned();
    // The v3 network's reader, starting at its newest block (which is not a config block).
    let text = std::fs::read_to_string(&config)
        .expect("read config")
        .replace(
            fixture_path("msp/user1_signcert.pem").to_str().unwrap(),
            msp.join("user1_signcert.pem").to_str().unwrap(),
        )
        .replace(
            fixture_path("msp/user1_key.pem").to_str().unwrap(),
            msp.join("user1_key.pem").to_str().unwrap(),
        )
        .replace("start = 11", &format!("start = {newest}"));
    std::fs::write(&config, text).expect("write config");
    for (pin, want) in [(None, Value::from("")), (Some("v2.5"), Value::Null)] {
        let config = config.clone();
        let output = tokio::task::spawn_blocking(move || {
            let mut args = vec!["--config", config.as_str(), "--blocks", "1"];
            if let Some(pin) = pin {
                args.extend(["--rendering", pin]);
            }
            tail(&args)
        })
        .await
        .expect("tail task");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let hashes: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
            .filter(|event| event["type"] == "Tx")
            .map(|event| {
                event["content"]["data"]["header"]["channel_header"]["tls_cert_hash"].clone()
            })
            .collect();
        assert!(!hashes.is_empty(), "block {newest} has transactions");
        assert!(
            hashes.iter().all(|hash| *hash == want),
            "pinned {pin:?}: {hashes:?}"
        );
    }
}
