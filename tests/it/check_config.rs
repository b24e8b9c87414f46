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

/// The line (1-based) of the first line of `text` starting with `start`.
fn line_starting(text: &str, start: &str) -> usize {
    text.lines()
        .position(|line| line.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?}"))
        + 1
}

#[test]
fn type_errors_do_not_hide_the_other_problems() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.toml");
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:8650\"",
            "listen = \"127.0.0.1:8650\"\nmax_connections = \"lots\"",
        )
        .replace("enabled = false\n", "enabled = 0\n")
        .replace("msp_id = \"Org1MSP\"", "msp_id = [\"Org1MSP\"]")
        .replace("failure_threshold = 10", "failure_threshold = \"ten\"")
        .replace("attempts = 5", "attempts = -1\nbackoff = \"fast\"")
        .replace(
            "channel = \"mychannel\"\nevent = \"Tx\"",
            "channel = \"nochannel\"\nevent = \"Tx\"",
        )
        .replace(
            "url = \"https://hooks.example.com/fabric/taskmgr\"",
            "url = \"https://hooks.example.com/fabric/taskmgr?key=hook-s3cret\"",
        )
        .replace(
            "\"X-Source\" = \"chaintrigger\"",
            "\"X Source\" = \"chaintrigger\"",
        );
    std::fs::write(&file, &text).unwrap();
    let (ok, stdout, stderr) = check_config(&["--config", file.to_str().unwrap()]);
    assert!(!ok, "{stdout}");
    let at = |start: &str, column: usize, field: &str| {
        format!(
            "{}:{}:{column}: {field}: ",
            file.display(),
            line_starting(&text, start)
        )
    };
    let expected = [
        (
            at("max_connections", 19, "admin.max_connections"),
            "invalid type: string \"lots\", expected u32",
        ),
        (
            at("enabled = 0", 11, "runtime.enabled"),
            "invalid type: integer `0`, expected a boolean",
        ),
        (
            at("msp_id = [", 10, "channels[0].msp_id"),
            "invalid type: sequence, expected a string",
        ),
        (
            at("failure_threshold", 21, "triggers[0].failure_threshold"),
            "invalid type: string \"ten\"",
        ),
        (
            at("attempts = -1", 12, "triggers[0].retry.attempts"),
            "invalid value: integer `-1`, expected u32",
        ),
        (
            at("backoff", 1, "triggers[0].retry.backoff"),
            "unknown field `backoff`",
        ),
        (
            at("channel = \"nochannel\"", 11, "triggers[1].channel"),
            "unknown channel `nochannel`",
        ),
        (
            at("headers = ", 11, "triggers[1].target.http.headers"),
            "`X Source` is not a valid header name",
        ),
        (
            at("token = { env", 9, "admin.token"),
            "environment variable CHAINTRIGGER_ADMIN_TOKEN is not set",
        ),
        (
            at(
                "auth = { bearer",
                29,
                "triggers[1].target.http.auth.bearer.token",
            ),
            "environment variable TASKMGR_HOOK_TOKEN is not set",
        ),
    ];
    for (place, message) in &expected {
        assert!(
            stderr
                .lines()
                .any(|line| line.starts_with(place.as_str()) && line.contains(message)),
            "expected `{place}{message}` in:\n{stderr}"
        );
    }
    // Shape problems come first, then the checks across values, then the environment.
    let position = |needle: &str| {
        stderr
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in {stderr}"))
    };
    assert!(position("retry.backoff") < position("unknown channel"));
    assert!(position("unknown channel") < position("CHAINTRIGGER_ADMIN_TOKEN is not set"));
    assert!(!stderr.contains("hook-s3cret"), "{stderr}");
    assert!(
        !stderr.contains("missing field"),
        "no consequence of a reported problem: {stderr}"
    );
    // The files of a channel that did not read are not checked: what it names may be wrong too.
    assert!(!stderr.contains("channels[0].certificate"), "{stderr}");
    let prefix = file.display().to_string();
    let reported = stderr
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .count();
    assert_eq!(reported, expected.len(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} problems in", expected.len())),
        "{stderr}"
    );

    // The positional form and --config say the same; both at once is refused.
    let (_, _, positional) = check_config(&[file.to_str().unwrap()]);
    let problems = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| line.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(problems(&positional), problems(&stderr));
    let (ok, _, both) = check_config(&[file.to_str().unwrap(), "--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(both.contains("cannot be used with"), "{both}");
    let (ok, _, neither) = check_config(&[]);
    assert!(!ok);
    assert!(neither.contains("--config"), "{neither}");
}
