//! `chaintrigger check-config`, run as the real binary.

use std::path::Path;
use std::process::Command;

fn check_config(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .arg("check-config")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("the chaintrigger binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/chaintrigger.toml")
        .display()
        .to_string()
}

#[test]
fn documented_example_passes_without_its_environment() {
    let (ok, stdout, stderr) = check_config(&[&example(), "--skip-environment"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("OK (files and secrets not checked)"),
        "{stdout}"
    );
    assert!(stdout.contains("instance id: csi-org1-prod"), "{stdout}");
    assert!(stdout.contains("triggers: 2"), "{stdout}");
    assert!(
        stdout.contains("task-created: mychannel Contract events, jq filter -> Function Compute taskmgr.LATEST/on_task_created at https://1234567890123456.cn-hangzhou.fc.aliyuncs.com (Sync); failure threshold 10, 5 attempts, starts at latest"),
        "{stdout}"
    );
}

#[test]
fn missing_files_and_secrets_fail_the_check() {
    let (ok, _stdout, stderr) = check_config(&[&example()]);
    assert!(!ok);
    assert!(stderr.contains("channels[0].certificate: file /etc/chaintrigger/msp/signcerts/User1@org1.example.com-cert.pem does not exist"), "{stderr}");
    assert!(
        stderr.contains("admin.token: environment variable CHAINTRIGGER_ADMIN_TOKEN is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("problems in"), "{stderr}");
}

#[test]
fn every_problem_is_printed_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(example()).unwrap();
    let text = text
        .replace(
            "channel = \"mychannel\"\nevent = \"Tx\"",
            "channel = \"nochannel\"\nevent = \"Tx\"",
        )
        .replace(
            "filter = 'select(.name==\"event-create-task\")'",
            "filter = 'select(.name=='",
        );
    std::fs::write(&file, &text).unwrap();
    let (ok, _stdout, stderr) = check_config(&[file.to_str().unwrap(), "--skip-environment"]);
    assert!(!ok);
    let filter_line = text
        .lines()
        .position(|l| l.starts_with("filter = 'select(.name=='"))
        .unwrap()
        + 1;
    let channel_line = text
        .lines()
        .position(|l| l == "channel = \"nochannel\"")
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "{}:{filter_line}:10: triggers[0].filter: jq filter does not compile",
            file.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:{channel_line}:11: triggers[1].channel: unknown channel `nochannel`",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("2 problems in"), "{stderr}");
}
