//! `chaintrigger demo`, run as a newcomer would (the real binary, `config/demo.toml`, the Python and Node.js demo
//! handlers in real processes): it must run end to end and end with a summary showing every trigger at work,
//! the failing handler's events discarded and counted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One row of the closing summary: `TRIGGER STATE HEIGHT/CHAIN DELIVERED DISCARDED FAILURES`.
struct SummaryRow {
    name: String,
    state: String,
    delivered: u64,
    discarded: u64,
}

fn summary_rows(output: &str) -> Vec<SummaryRow> {
    output
        .lines()
        .skip_while(|line| !line.starts_with("Summary after"))
        .skip(2)
        .take_while(|line| !line.is_empty() && !line.starts_with("Temporary data"))
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            SummaryRow {
                name: cells[0].to_owned(),
                state: cells[1].to_owned(),
                delivered: cells[3].parse().expect("delivered count"),
                discarded: cells[4].parse().expect("discarded count"),
            }
        })
        .collect()
}

#[test]
fn the_demo_runs_end_to_end_and_summarises_every_trigger() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args(["demo", "--duration", "6", "--rate", "5"])
        .args(["--admin-listen", "127.0.0.1:0", "--config", config])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chaintrigger demo");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the demo did not end within 120 s of a 6 s run");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("demo output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");

    assert!(
        stdout.contains("export CHAINTRIGGER_ADMIN_TOKEN="),
        "{stdout}"
    );
    // Without a terminal: one status line per second.
    assert!(
        stdout.lines().filter(|l| l.starts_with("[")).count() >= 4,
        "{stdout}"
    );
    // The handlers' own log lines reach the terminal, from both languages.
    assert!(
        stdout.contains("[demo/on_task] task-0 created by"),
        "{stdout}"
    );
    assert!(stdout.contains("[demo/on_tx] tx "), "{stdout}");
    assert!(stdout.contains("[demo/on_block] block 0 "), "{stdout}");
    // The first discards may fall between two refreshes: one line may report several.
    assert!(
        stdout.lines().any(|line| line.contains("task-audit: ")
            && line.contains(" discarded after all retries, kept as dead letter")
            && line.contains("/40): function error UnhandledInvocationError: task-")),
        "{stdout}"
    );

    let rows = summary_rows(&stdout);
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["blocks", "task-audit", "taskmgr-txs", "tasks-created"],
        "{stdout}"
    );
    for row in &rows {
        assert_eq!(row.state, "Running", "{stdout}");
        assert!(
            row.delivered > 0,
            "{} delivered nothing:\n{stdout}",
            row.name
        );
    }
    let blocks = &rows[0];
    assert!(
        blocks.delivered >= 24,
        "every recorded block and more:\n{stdout}"
    );
    let audit = &rows[1];
    assert!(audit.discarded >= 1, "{stdout}");
    assert!(
        rows.iter()
            .filter(|r| r.name != "task-audit")
            .all(|r| r.discarded == 0),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("Temporary data removed."),
        "{stdout}"
    );
}
