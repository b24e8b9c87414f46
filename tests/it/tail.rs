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
