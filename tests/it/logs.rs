//! The daemon's logs as operators read them: plain text without colour codes when stderr is a file, and one JSON
//! object per line with `log_format = "json"`, every line about a trigger naming the trigger and its channel.

use serde_json::Value;

use crate::support::daemon::{
    Behaviour, CHANNEL, Daemon, DaemonFiles, Network, Receiver, TriggerSpec,
};

/// A trigger whose endpoint answers 404 (it goes to Exception, with state changes to log), with `extra` settings
/// at the top of the file.
fn config_with(files: &DaemonFiles, network: &Network, receiver: &Receiver, extra: &str) {
    receiver.set("blocks", Behaviour::Status(404));
    let mut blocks = TriggerSpec::new("blocks", "Block", receiver.target_toml("blocks"));
    blocks.start = Some(network.height() - 1);
    files.write_config(network, &[blocks]);
    let text = std::fs::read_to_string(files.config_path()).expect("read the configuration");
    files.write_raw(&format!("{extra}{text}"));
}

#[tokio::test]
async fn log_lines_on_a_file_carry_no_colour_codes() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    config_with(&files, &network, &receiver, "");
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_state("blocks", "Exception").await;
    daemon.terminate().await;
    let log = files.log();
    assert!(log.contains("starting trigger"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{log}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_naming_trigger_and_channel() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    config_with(&files, &network, &receiver, "log_format = \"json\"\n");
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_state("blocks", "Exception").await;
    daemon.terminate().await;
    let log = files.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    assert!(lines.len() > 5, "{log}");
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "`{key}` missing: {line}");
        }
    }
    let about_trigger: Vec<&Value> = lines
        .iter()
        .filter(|line| line["trigger"] == "blocks")
        .collect();
    for wanted in ["starting trigger", "trigger state changed"] {
        assert!(
            about_trigger.iter().any(|line| line["message"] == wanted),
            "no `{wanted}` line about the trigger:\n{log}"
        );
    }
    for line in about_trigger {
        assert_eq!(line["channel"], CHANNEL, "{line}");
    }
}
