//! What `chaintrigger demo` prints, as pure functions of trigger statuses: the status block refreshed every
//! second, the notable changes between two snapshots, and the closing summary.

use std::collections::HashMap;
use std::time::Duration;

use crate::admin::{TriggerState, TriggerStatus};

/// Characters of a trigger's last error shown in the status block: enough to recognise it, short enough to
/// keep one trigger on one line of a 160-column terminal.
const ERROR_WIDTH: usize = 56;

/// Characters of an error in a notable-event line: a function's error message, without its stack trace.
const NOTE_ERROR_WIDTH: usize = 160;

/// The header of the status block: where the chain is and for how long the demo has run.
pub struct Header<'a> {
    /// The channel the simulator serves.
    pub channel: &'a str,
    /// The simulator's chain height (number of blocks), the figure every trigger's height is compared with.
    pub chain_height: u64,
    /// How many of those blocks are the recorded ones (the rest were generated), so a newcomer sees both kinds.
    pub recorded_blocks: u64,
    /// Time since the daemon started.
    pub elapsed: Duration,
}

/// The status block: one header line, then a table with one row per trigger.
pub fn status_block(header: &Header<'_>, triggers: &[TriggerStatus]) -> String {
    let generated = header.chain_height.saturating_sub(header.recorded_blocks);
    let mut out = format!(
        "channel {}: chain height {} ({} recorded + {} generated blocks), running for {}s\n",
        header.channel,
        header.chain_height,
        header.chain_height.min(header.recorded_blocks),
        generated,
        header.elapsed.as_secs()
    );
    let rows: Vec<Vec<String>> = triggers
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.event_type.to_string(),
                t.state.to_string(),
                optional(t.block_height),
                optional(t.lag),
                t.delivered.to_string(),
                t.discarded.to_string(),
                failures(t),
                t.retries.to_string(),
                t.last_error.as_ref().map_or_else(String::new, |e| {
                    format!(
                        "{} {}",
                        e.at.format("%H:%M:%SZ"),
                        truncate(&short_error(&e.message), ERROR_WIDTH)
                    )
                }),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "TRIGGER",
            "TYPE",
            "STATE",
            "HEIGHT",
            "LAG",
            "DELIVERED",
            "DISCARDED",
            "FAILURES",
            "RETRIES",
            "LAST ERROR",
        ],
        &rows,
    ));
    out
}

/// Cuts every line of `text` to `width` characters (when known), marking the cut.
pub fn fit_width(text: &str, width: Option<usize>) -> String {
    match width {
        Some(width) => text
            .lines()
            .map(|line| truncate(line, width.saturating_sub(1).max(1)) + "\n")
            .collect(),
        None => text.to_owned(),
    }
}

/// One line for terminals that cannot be redrawn (stdout is a file or a pipe): the same figures, compact.
pub fn status_line(header: &Header<'_>, triggers: &[TriggerStatus]) -> String {
    let mut out = format!(
        "[{:>4}s] chain height {}",
        header.elapsed.as_secs(),
        header.chain_height
    );
    for t in triggers {
        out.push_str(&format!(
            " | {} {} h={} delivered={} discarded={}",
            t.name,
            t.state,
            optional(t.block_height),
            t.delivered,
            t.discarded
        ));
    }
    out
}

/// What changed between two snapshots that a viewer should notice: state changes (with the reason), discarded
/// events, and a trigger that appeared or disappeared (reload, delete).
pub fn changes(before: &[TriggerStatus], after: &[TriggerStatus]) -> Vec<String> {
    let before: HashMap<&str, &TriggerStatus> =
        before.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut lines = Vec::new();
    for now in after {
        let Some(was) = before.get(now.name.as_str()) else {
            lines.push(format!("{}: new trigger ({})", now.name, now.state));
            continue;
        };
        if now.discarded > was.discarded {
            let count = now.discarded - was.discarded;
            let error = now.last_error.as_ref().map_or_else(String::new, |e| {
                format!(": {}", truncate(&short_error(&e.message), NOTE_ERROR_WIDTH))
            });
            lines.push(format!(
                "{}: {} event{} discarded after all retries, kept as dead letter{} (failures {}){}",
                now.name,
                count,
                plural(count),
                plural(count),
                failures(now),
                error
            ));
        }
        if now.state != was.state {
            let why = match (now.state, &now.last_error) {
                (TriggerState::Failed | TriggerState::Exception, Some(error)) => {
                    format!(
                        ": {}",
                        truncate(&short_error(&error.message), NOTE_ERROR_WIDTH)
                    )
                }
                _ => String::new(),
            };
            lines.push(format!(
                "{}: {} -> {}{}{}",
                now.name,
                was.state,
                now.state,
                why,
                hint(now)
            ));
        }
    }
    let after_names: Vec<&str> = after.iter().map(|t| t.name.as_str()).collect();
    let mut gone: Vec<&str> = before
        .keys()
        .copied()
        .filter(|name| !after_names.contains(name))
        .collect();
    gone.sort_unstable();
    lines.extend(gone.into_iter().map(|name| format!("{name}: deleted")));
    lines
}

/// What an operator can do about a trigger that stopped.
fn hint(status: &TriggerStatus) -> String {
    match status.state {
        TriggerState::Failed => format!(
            " (try `chaintrigger triggers dead-letters {0}` and `chaintrigger triggers enable {0}`)",
            status.name
        ),
        _ => String::new(),
    }
}

/// The closing summary: per trigger, what was delivered and discarded during the run.
pub fn summary(
    header: &Header<'_>,
    start: &[TriggerStatus],
    end: &[TriggerStatus],
    invocations: u64,
) -> String {
    let start: HashMap<&str, &TriggerStatus> = start.iter().map(|t| (t.name.as_str(), t)).collect();
    let rows: Vec<Vec<String>> = end
        .iter()
        .map(|t| {
            let (delivered, discarded) =
                start
                    .get(t.name.as_str())
                    .map_or((t.delivered, t.discarded), |s| {
                        (
                            t.delivered.saturating_sub(s.delivered),
                            t.discarded.saturating_sub(s.discarded),
                        )
                    });
            vec![
                t.name.clone(),
                t.state.to_string(),
                format!("{}/{}", optional(t.block_height), header.chain_height),
                delivered.to_string(),
                discarded.to_string(),
                failures(t),
            ]
        })
        .collect();
    let mut out = format!(
        "Summary after {}s: the chain grew to {} blocks; the bundled runtime ran the handlers {} time{}.\n",
        header.elapsed.as_secs(),
        header.chain_height,
        invocations,
        plural(invocations)
    );
    out.push_str(&table(
        &[
            "TRIGGER",
            "STATE",
            "HEIGHT/CHAIN",
            "DELIVERED",
            "DISCARDED",
            "FAILURES",
        ],
        &rows,
    ));
    out
}

/// A function log line as the runtime writes it (`<time> <request id> [LEVEL] message`, Function Compute's
/// format) shortened for the terminal: the message, with its level only when it is a warning or an error.
/// Other lines (tracebacks) pass unchanged.
pub fn compact_log_line(line: &str) -> &str {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(time), Some(_request_id), Some(rest))
            if time.len() >= 20 && time.ends_with('Z') && rest.starts_with('[') =>
        {
            ["[INFO] ", "[verbose] ", "[info] ", "[DEBUG] ", "[debug] "]
                .iter()
                .find_map(|level| rest.strip_prefix(level))
                .unwrap_or(rest)
        }
        _ => line,
    }
}

/// A function error as the runtime reports it (`...: {"errorMessage": ..., "errorType": ..., "stackTrace": ...}`)
/// reduced to what a viewer reads: the text before the JSON and the error message. Other errors are unchanged.
fn short_error(message: &str) -> String {
    let Some(start) = message.find('{') else {
        return message.to_owned();
    };
    match serde_json::from_str::<serde_json::Value>(&message[start..]) {
        Ok(body) => match body.get("errorMessage").and_then(|m| m.as_str()) {
            Some(text) => format!("{}{text}", &message[..start]),
            None => message.to_owned(),
        },
        Err(_) => message.to_owned(),
    }
}

fn failures(t: &TriggerStatus) -> String {
    t.failures_text()
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn optional(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Cuts `text` to `width` characters on one line, marking the cut.
fn truncate(text: &str, width: usize) -> String {
    let line = text.replace('\n', " ");
    if line.chars().count() <= width {
        return line;
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Columns as wide as their widest cell, two spaces apart, no trailing spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|c| (*c).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{EventSelector, LastError, Position};

    fn status(name: &str, state: TriggerState, delivered: u64, discarded: u64) -> TriggerStatus {
        TriggerStatus {
            name: name.to_owned(),
            channel: "mychannel".to_owned(),
            event_type: EventSelector::Contract,
            target: "fc:embedded/demo/on_task".to_owned(),
            state,
            block_height: Some(30),
            position: Position {
                block: 31,
                event_index: 0,
            },
            chain_height: Some(32),
            lag: Some(1),
            failure_count: discarded,
            failure_threshold: 12,
            last_error: (discarded > 0).then(|| LastError {
                message: "function error: task-14 failed the audit".to_owned(),
                at: chrono::DateTime::UNIX_EPOCH,
            }),
            delivered,
            discarded,
            retries: 2 * discarded,
            enabled_at: None,
            owner: None,
        }
    }

    fn header() -> Header<'static> {
        Header {
            channel: "mychannel",
            chain_height: 32,
            recorded_blocks: 24,
            elapsed: Duration::from_secs(7),
        }
    }

    #[test]
    fn the_status_block_has_a_row_per_trigger_with_its_progress_and_errors() {
        let block = status_block(
            &header(),
            &[
                status("tasks-created", TriggerState::Running, 10, 0),
                status("task-audit", TriggerState::Running, 8, 2),
            ],
        );
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(
            lines[0],
            "channel mychannel: chain height 32 (24 recorded + 8 generated blocks), running for 7s"
        );
        assert!(
            lines[1].starts_with("TRIGGER        TYPE      STATE"),
            "{block}"
        );
        assert!(
            lines[3].starts_with(
                "task-audit     Contract  Running  30      1    8          2          2/12"
            ),
            "{block}"
        );
        assert!(
            lines[3].ends_with("function error: task-14 failed the audit"),
            "{block}"
        );
        assert!(block.lines().all(|l| l == l.trim_end()), "{block}");
    }

    #[test]
    fn fitting_cuts_long_lines_only_when_the_width_is_known() {
        assert_eq!(
            fit_width("short\na longer line\n", Some(8)),
            "short\na long…\n"
        );
        assert_eq!(fit_width("a longer line\n", None), "a longer line\n");
    }

    #[test]
    fn changes_report_discards_state_changes_and_deletions() {
        let before = [
            status("task-audit", TriggerState::Running, 8, 1),
            status("blocks", TriggerState::Running, 3, 0),
        ];
        let after = [status("task-audit", TriggerState::Failed, 9, 3)];
        let lines = changes(&before, &after);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("task-audit: 2 events discarded after all retries, kept as dead letters (failures 3/12)"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("task-audit: Running -> Failed: function error"),
            "{lines:?}"
        );
        assert!(lines[1].contains("chaintrigger triggers enable task-audit"));
        assert_eq!(lines[2], "blocks: deleted");
        assert!(changes(&after, &after).is_empty());
    }

    #[test]
    fn the_summary_counts_what_happened_during_the_run() {
        let start = [status("task-audit", TriggerState::Running, 8, 1)];
        let end = [status("task-audit", TriggerState::Running, 20, 3)];
        let text = summary(&header(), &start, &end, 25);
        assert!(
            text.starts_with(
                "Summary after 7s: the chain grew to 32 blocks; the bundled runtime ran the handlers 25 times."
            ),
            "{text}"
        );
        assert!(
            text.contains("task-audit  Running  30/32         12         2          3/12"),
            "{text}"
        );
    }

    #[test]
    fn function_log_lines_lose_their_time_and_request_id() {
        assert_eq!(
            compact_log_line("2026-11-21T10:00:00.123Z 8f1c2d3e-aaaa [INFO] task task-3 created"),
            "task task-3 created"
        );
        assert_eq!(
            compact_log_line("2026-11-21T10:00:00.123Z 8f1c2d3e-aaaa [WARNING] rejecting task-7"),
            "[WARNING] rejecting task-7"
        );
        assert_eq!(
            short_error(
                r#"function error UnhandledInvocationError: {"errorMessage": "task-7 failed the audit", "errorType": "AuditRejected", "stackTrace": []}"#
            ),
            "function error UnhandledInvocationError: task-7 failed the audit"
        );
        assert_eq!(short_error("HTTP 500 {not json"), "HTTP 500 {not json");
        assert_eq!(
            compact_log_line("Traceback (most recent call last):"),
            "Traceback (most recent call last):"
        );
    }
}
