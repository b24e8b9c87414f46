//! Prometheus text exposition (format 0.0.4) rendered from status snapshots.
//!
//! There is no process-global recorder: several daemons may live in one process (the tests run many), and
//! each must report only its own triggers. The engine records invoke latency into one [`LatencyHistogram`]
//! per trigger (lock-free, so recording never contends with a scrape); everything else is read from the
//! [`TriggerStatus`] and [`ChannelStatus`] snapshots the engine already keeps for the API.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::control::{ChannelStatus, InvokeLatency, TriggerState, TriggerStatus};
pub use crate::trigger::latency::{HistogramSnapshot, LATENCY_BUCKETS, LatencyHistogram};

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and line feed are the characters the format reserves.
pub fn escape_label_value(value: &str, out: &mut String) {
    for character in value.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

/// Renders every metric of one daemon. `latencies` may list triggers in any order and miss some (a trigger
/// without a histogram shows an empty one).
pub fn render(
    triggers: &[TriggerStatus],
    channels: &[ChannelStatus],
    latencies: &[InvokeLatency],
) -> String {
    // Each trigger's label set is escaped once and reused by every series: scrapes of 1,000 triggers stay
    // cheap. The string lacks the closing brace so series with extra labels can append theirs.
    let trigger_labels: Vec<String> = triggers
        .iter()
        .map(|trigger| {
            let mut labels = String::with_capacity(trigger.name.len() + trigger.channel.len() + 24);
            labels.push_str("{trigger=\"");
            escape_label_value(&trigger.name, &mut labels);
            labels.push_str("\",channel=\"");
            escape_label_value(&trigger.channel, &mut labels);
            labels.push('"');
            labels
        })
        .collect();
    let mut out = String::with_capacity(256 + triggers.len() * 2600 + channels.len() * 300);

    family(
        &mut out,
        "chaintrigger_trigger_state",
        "gauge",
        "Trigger lifecycle state: 1 for the current state, 0 for the others.",
    );
    for (trigger, labels) in triggers.iter().zip(&trigger_labels) {
        for state in TriggerState::ALL {
            let value = u8::from(trigger.state == state);
            let _ = writeln!(
                out,
                "chaintrigger_trigger_state{labels},state=\"{}\"}} {value}",
                state.label()
            );
        }
    }
    gauge_per_trigger(
        &mut out,
        triggers,
        &trigger_labels,
        "chaintrigger_trigger_block_height",
        "gauge",
        "Last block whose events the trigger has fully processed.",
        |t| t.block_height,
    );
    gauge_per_trigger(
        &mut out,
        triggers,
        &trigger_labels,
        "chaintrigger_trigger_lag_blocks",
        "gauge",
        "Blocks of the channel the trigger has not fully processed yet.",
        |t| t.lag,
    );
    gauge_per_trigger(
        &mut out,
        triggers,
        &trigger_labels,
        "chaintrigger_trigger_failures",
        "gauge",
        "Events discarded since the failure count was last reset; compared with the threshold.",
        |t| Some(t.failure_count),
    );
    family(
        &mut out,
        "chaintrigger_trigger_failure_threshold",
        "gauge",
        "Failure count above which the trigger enters Failed; -1 means never.",
    );
    for (trigger, labels) in triggers.iter().zip(&trigger_labels) {
        let _ = writeln!(
            out,
            "chaintrigger_trigger_failure_threshold{labels}}} {}",
            trigger.failure_threshold
        );
    }
    gauge_per_trigger(
        &mut out,
        triggers,
        &trigger_labels,
        "chaintrigger_trigger_delivered_total",
        "counter",
        "Payloads the target accepted.",
        |t| Some(t.delivered),
    );
    gauge_per_trigger(
        &mut out,
        triggers,
        &trigger_labels,
        "chaintrigger_trigger_discarded_total",
        "counter",
        "Events given up on after all retries and written as dead letters.",
        |t| Some(t.discarded),
    );
    gauge_per_trigger(
        &mut out,
        triggers,
        &trigger_labels,
        "chaintrigger_trigger_retries_total",
        "counter",
        "Invocation attempts beyond the first.",
        |t| Some(t.retries),
    );

    let name = "chaintrigger_trigger_invoke_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Duration of one invocation of the trigger's target.",
    );
    // Formatting a float is the slowest part of a sample line: format the bounds once per scrape.
    let bounds: Vec<String> = LATENCY_BUCKETS.iter().map(f64::to_string).collect();
    let empty = HistogramSnapshot::default();
    let by_trigger: HashMap<&str, &HistogramSnapshot> = latencies
        .iter()
        .map(|latency| (latency.trigger.as_str(), &latency.histogram))
        .collect();
    for (trigger, labels) in triggers.iter().zip(&trigger_labels) {
        let histogram = by_trigger
            .get(trigger.name.as_str())
            .copied()
            .unwrap_or(&empty);
        write_histogram(&mut out, name, labels, &bounds, histogram);
    }

    let channel_labels: Vec<String> = channels
        .iter()
        .map(|channel| {
            let mut labels = String::from("{channel=\"");
            escape_label_value(&channel.name, &mut labels);
            labels.push('"');
            labels
        })
        .collect();
    family(
        &mut out,
        "chaintrigger_channel_chain_height",
        "gauge",
        "Number of blocks in the channel as last seen on its stream.",
    );
    for (channel, labels) in channels.iter().zip(&channel_labels) {
        if let Some(height) = channel.chain_height {
            let _ = writeln!(out, "chaintrigger_channel_chain_height{labels}}} {height}");
        }
    }
    family(
        &mut out,
        "chaintrigger_channel_connected",
        "gauge",
        "1 while the channel's stream is connected to a peer.",
    );
    for (channel, labels) in channels.iter().zip(&channel_labels) {
        let _ = writeln!(
            out,
            "chaintrigger_channel_connected{labels}}} {}",
            u8::from(channel.peer.is_some())
        );
    }
    family(
        &mut out,
        "chaintrigger_channel_owned",
        "gauge",
        "1 while this daemon holds the channel's lease and works on its triggers (several daemons may share a database; one owns each channel).",
    );
    for (channel, labels) in channels.iter().zip(&channel_labels) {
        let _ = writeln!(
            out,
            "chaintrigger_channel_owned{labels}}} {}",
            u8::from(channel.owned)
        );
    }
    family(
        &mut out,
        "chaintrigger_owned_channels",
        "gauge",
        "Channels this daemon works on.",
    );
    let _ = writeln!(
        out,
        "chaintrigger_owned_channels {}",
        channels.iter().filter(|channel| channel.owned).count()
    );
    family(
        &mut out,
        "chaintrigger_channel_stream_reconnects_total",
        "counter",
        "Times the channel's stream was re-established.",
    );
    for (channel, labels) in channels.iter().zip(&channel_labels) {
        let _ = writeln!(
            out,
            "chaintrigger_channel_stream_reconnects_total{labels}}} {}",
            channel.reconnects
        );
    }
    render_peers(&mut out, channels, &channel_labels);
    render_stages(&mut out, channels, &channel_labels, &bounds);
    out
}

/// One histogram's series; `labels` lacks its closing brace.
fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[String],
    histogram: &HistogramSnapshot,
) {
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(&histogram.buckets) {
        cumulative += count;
        let _ = writeln!(out, "{name}_bucket{labels},le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{labels},le=\"+Inf\"}} {}",
        histogram.count()
    );
    let _ = writeln!(
        out,
        "{name}_sum{labels}}} {}",
        histogram.sum_nanos as f64 / 1e9
    );
    let _ = writeln!(out, "{name}_count{labels}}} {}", histogram.count());
}

/// Where each channel's events spend their time: one histogram and one maximum per stage.
fn render_stages(
    out: &mut String,
    channels: &[ChannelStatus],
    channel_labels: &[String],
    bounds: &[String],
) {
    let name = "chaintrigger_event_stage_seconds";
    family(
        out,
        name,
        "histogram",
        "Time an event spends in each stage: decode (per block), wait, filter, push, commit.",
    );
    for (channel, labels) in channels.iter().zip(channel_labels) {
        for stage in &channel.stages {
            let labels = format!("{labels},stage=\"{}\"", stage.stage.as_str());
            write_histogram(out, name, &labels, bounds, &stage.histogram);
        }
    }
    family(
        out,
        "chaintrigger_event_stage_max_seconds",
        "gauge",
        "The longest time one event spent in each stage since the daemon started.",
    );
    for (channel, labels) in channels.iter().zip(channel_labels) {
        for stage in &channel.stages {
            let _ = writeln!(
                out,
                "chaintrigger_event_stage_max_seconds{labels},stage=\"{}\"}} {}",
                stage.stage.as_str(),
                stage.max_nanos as f64 / 1e9
            );
        }
    }
}

/// The per-peer and catch-up families of each channel.
fn render_peers(out: &mut String, channels: &[ChannelStatus], channel_labels: &[String]) {
    let peer_labels = |labels: &str, address: &str| {
        let mut text = format!("{labels},peer=\"");
        escape_label_value(address, &mut text);
        text.push('"');
        text
    };
    family(
        out,
        "chaintrigger_channel_peer_height",
        "gauge",
        "Height each peer of the channel last reported (absent until known).",
    );
    for (channel, labels) in channels.iter().zip(channel_labels) {
        for peer in &channel.peers {
            if let Some(height) = peer.height {
                let labels = peer_labels(labels, &peer.address);
                let _ = writeln!(out, "chaintrigger_channel_peer_height{labels}}} {height}");
            }
        }
    }
    family(
        out,
        "chaintrigger_channel_peer_stale",
        "gauge",
        "1 while the peer is more than stale_peer_blocks behind the highest height any peer reports.",
    );
    for (channel, labels) in channels.iter().zip(channel_labels) {
        for peer in &channel.peers {
            let labels = peer_labels(labels, &peer.address);
            let _ = writeln!(
                out,
                "chaintrigger_channel_peer_stale{labels}}} {}",
                u8::from(peer.stale)
            );
        }
    }
    family(
        out,
        "chaintrigger_channel_catch_up_streams",
        "gauge",
        "Catch-up streams open for triggers behind the channel's recent blocks.",
    );
    for (channel, labels) in channels.iter().zip(channel_labels) {
        let _ = writeln!(
            out,
            "chaintrigger_channel_catch_up_streams{labels}}} {}",
            channel.catch_up.open
        );
    }
    family(
        out,
        "chaintrigger_channel_catch_up_waiting",
        "gauge",
        "Triggers waiting for a catch-up stream (max_catch_up_streams are in use).",
    );
    for (channel, labels) in channels.iter().zip(channel_labels) {
        let _ = writeln!(
            out,
            "chaintrigger_channel_catch_up_waiting{labels}}} {}",
            channel.catch_up.waiting
        );
    }
}

/// Writes a family's `HELP` and `TYPE` lines (help texts are constants without backslashes or newlines).
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one family with one sample per trigger; triggers for which `value` is `None` have no sample
/// (e.g. no block processed yet), which Prometheus reads as "unknown" rather than a misleading 0.
fn gauge_per_trigger(
    out: &mut String,
    triggers: &[TriggerStatus],
    labels: &[String],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&TriggerStatus) -> Option<u64>,
) {
    family(out, name, kind, help);
    for (trigger, labels) in triggers.iter().zip(labels) {
        if let Some(value) = value(trigger) {
            let _ = writeln!(out, "{name}{labels}}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::admin::control::{EventSelector, Position};

    fn status(name: &str, state: TriggerState) -> TriggerStatus {
        TriggerStatus {
            name: name.into(),
            channel: "mychannel".into(),
            event_type: EventSelector::Tx,
            target: "fc:embedded/demo/echo".into(),
            state,
            block_height: Some(9),
            position: Position {
                block: 10,
                event_index: 0,
            },
            chain_height: Some(12),
            lag: Some(2),
            failure_count: 1,
            failure_threshold: -1,
            last_error: None,
            delivered: 40,
            discarded: 1,
            retries: 3,
            enabled_at: None,
            owner: Some("host-1-abcd".into()),
        }
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let mut out = String::new();
        escape_label_value("a\\b\"c\nd é", &mut out);
        assert_eq!(out, "a\\\\b\\\"c\\nd é");
    }

    #[test]
    fn histogram_puts_each_duration_in_the_first_bucket_that_holds_it() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_micros(500));
        histogram.record(Duration::from_millis(3));
        histogram.record(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[0], 1, "0.5 ms is within the 0.0005 bound");
        assert_eq!(snapshot.buckets[3], 1, "3 ms is within the 0.005 bound");
        assert_eq!(
            snapshot.buckets[LATENCY_BUCKETS.len()],
            1,
            "60 s is above every bound"
        );
        assert_eq!(snapshot.count(), 3);
        assert_eq!(snapshot.sum_nanos, 60_003_500_000);
    }

    #[test]
    fn render_writes_every_family_once_with_one_state_set_per_trigger() {
        let triggers = [
            status("a", TriggerState::Running),
            status("we\"ird\\name", TriggerState::Failed),
        ];
        let channels = [ChannelStatus {
            owned: true,
            name: "mychannel".into(),
            chain_height: Some(12),
            peer: Some("peer0:7051".into()),
            reconnects: 2,
            last_error: None,
            connected: true,
            connected_once: true,
            peers: vec![
                crate::admin::control::PeerStatus {
                    address: "peer0:7051".into(),
                    height: Some(12),
                    current: true,
                    stale: false,
                    checked_at: None,
                    last_error: None,
                },
                crate::admin::control::PeerStatus {
                    address: "peer1:7051".into(),
                    height: Some(3),
                    current: false,
                    stale: true,
                    checked_at: None,
                    last_error: None,
                },
            ],
            catch_up: crate::admin::control::CatchUpStatus {
                open: 1,
                waiting: 2,
                limit: 4,
            },
            rendering: Default::default(),
            stages: {
                let stages = crate::trigger::latency::StageHistograms::default();
                stages.record(
                    crate::trigger::latency::Stage::Commit,
                    Duration::from_millis(27),
                );
                stages.snapshot()
            },
        }];
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_millis(2));
        histogram.record(Duration::from_millis(20));
        let latencies = [InvokeLatency {
            trigger: "a".into(),
            histogram: histogram.snapshot(),
        }];
        let text = render(&triggers, &channels, &latencies);

        assert_eq!(
            text.matches("# TYPE chaintrigger_trigger_state gauge")
                .count(),
            1
        );
        assert!(text.contains(
            "chaintrigger_trigger_state{trigger=\"a\",channel=\"mychannel\",state=\"running\"} 1\n"
        ));
        assert!(text.contains(
            "chaintrigger_trigger_state{trigger=\"a\",channel=\"mychannel\",state=\"failed\"} 0\n"
        ));
        assert!(text.contains("chaintrigger_trigger_state{trigger=\"we\\\"ird\\\\name\",channel=\"mychannel\",state=\"failed\"} 1\n"));
        assert!(
            text.contains(
                "chaintrigger_trigger_lag_blocks{trigger=\"a\",channel=\"mychannel\"} 2\n"
            )
        );
        assert!(text.contains(
            "chaintrigger_trigger_delivered_total{trigger=\"a\",channel=\"mychannel\"} 40\n"
        ));
        assert!(text.contains(
            "chaintrigger_trigger_failure_threshold{trigger=\"a\",channel=\"mychannel\"} -1\n"
        ));
        let name = "chaintrigger_trigger_invoke_duration_seconds";
        assert!(text.contains(&format!(
            "{name}_bucket{{trigger=\"a\",channel=\"mychannel\",le=\"0.001\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "{name}_bucket{{trigger=\"a\",channel=\"mychannel\",le=\"0.0025\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "{name}_bucket{{trigger=\"a\",channel=\"mychannel\",le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "{name}_sum{{trigger=\"a\",channel=\"mychannel\"}} 0.022\n"
        )));
        assert!(text.contains(&format!(
            "{name}_count{{trigger=\"we\\\"ird\\\\name\",channel=\"mychannel\"}} 0\n"
        )));
        assert!(text.contains("chaintrigger_channel_chain_height{channel=\"mychannel\"} 12\n"));
        assert!(text.contains(
            "chaintrigger_event_stage_seconds_bucket{channel=\"mychannel\",stage=\"commit\",le=\"0.05\"} 1\n"
        ));
        assert!(text.contains(
            "chaintrigger_event_stage_seconds_count{channel=\"mychannel\",stage=\"push\"} 0\n"
        ));
        assert!(text.contains(
            "chaintrigger_event_stage_max_seconds{channel=\"mychannel\",stage=\"commit\"} 0.027\n"
        ));
        assert!(text.contains("chaintrigger_channel_connected{channel=\"mychannel\"} 1\n"));
        assert!(text.contains("chaintrigger_channel_owned{channel=\"mychannel\"} 1\n"));
        assert!(text.contains("chaintrigger_owned_channels 1\n"));
        assert!(text.contains(
            "chaintrigger_channel_peer_height{channel=\"mychannel\",peer=\"peer1:7051\"} 3\n"
        ));
        assert!(text.contains(
            "chaintrigger_channel_peer_stale{channel=\"mychannel\",peer=\"peer1:7051\"} 1\n"
        ));
        assert!(text.contains(
            "chaintrigger_channel_peer_stale{channel=\"mychannel\",peer=\"peer0:7051\"} 0\n"
        ));
        assert!(text.contains("chaintrigger_channel_catch_up_streams{channel=\"mychannel\"} 1\n"));
        assert!(text.contains("chaintrigger_channel_catch_up_waiting{channel=\"mychannel\"} 2\n"));
        assert!(
            text.contains(
                "chaintrigger_channel_stream_reconnects_total{channel=\"mychannel\"} 2\n"
            )
        );
    }

    #[test]
    fn unknown_heights_have_no_sample_rather_than_zero() {
        let mut fresh = status("fresh", TriggerState::Running);
        fresh.block_height = None;
        fresh.chain_height = None;
        fresh.lag = None;
        let text = render(&[fresh], &[], &[]);
        assert!(!text.contains("chaintrigger_trigger_block_height{"));
        assert!(!text.contains("chaintrigger_trigger_lag_blocks{"));
        assert!(text.contains("# TYPE chaintrigger_trigger_block_height gauge"));
    }
}
