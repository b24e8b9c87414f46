//! The cost of a Prometheus scrape of a daemon with 1,000 triggers, and of recording one invoke latency.

use std::hint::black_box;
use std::time::Duration;

use chaintrigger::admin::metrics::render;
use chaintrigger::admin::{
    ChannelStatus, EventSelector, InvokeLatency, LastError, LatencyHistogram, Position,
    TriggerState, TriggerStatus,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TRIGGERS: usize = 1_000;

fn statuses() -> (Vec<TriggerStatus>, Vec<ChannelStatus>, Vec<InvokeLatency>) {
    let states = TriggerState::ALL;
    let triggers: Vec<TriggerStatus> = (0..TRIGGERS)
        .map(|index| {
            let position = Position {
                block: 100_000 + index as u64,
                event_index: 3,
            };
            TriggerStatus {
                name: format!("trigger-{index:04}"),
                channel: "mychannel".to_owned(),
                event_type: EventSelector::Contract,
                target: format!("fc:embedded/demo/handler-{index}"),
                state: states[index % states.len()],
                block_height: position.block_height(),
                position,
                chain_height: Some(101_500),
                lag: position.lag(Some(101_500)),
                failure_count: index as u64 % 3,
                failure_threshold: -1,
                last_error: Some(LastError {
                    message: "HTTP 503 from the function".to_owned(),
                    at: chrono::Utc::now(),
                }),
                delivered: 1_000_000 + index as u64,
                discarded: index as u64,
                retries: 10 * index as u64,
                enabled_at: None,
            }
        })
        .collect();
    let latencies = triggers
        .iter()
        .enumerate()
        .map(|(index, trigger)| {
            let histogram = LatencyHistogram::default();
            for sample in 0..50 {
                histogram.record(Duration::from_micros(200 + 97 * (index as u64 + sample)));
            }
            InvokeLatency {
                trigger: trigger.name.clone(),
                histogram: histogram.snapshot(),
            }
        })
        .collect();
    let channels = vec![ChannelStatus {
        name: "mychannel".to_owned(),
        chain_height: Some(101_500),
        peer: Some("peer0.org1.example.com:7051".to_owned()),
        reconnects: 4,
        last_error: None,
        ..ChannelStatus::default()
    }];
    (triggers, channels, latencies)
}

fn metrics(c: &mut Criterion) {
    let (triggers, channels, latencies) = statuses();
    let size = render(&triggers, &channels, &latencies).len();
    let mut group = c.benchmark_group("admin_metrics");
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("render_1000_triggers", |b| {
        b.iter(|| {
            render(
                black_box(&triggers),
                black_box(&channels),
                black_box(&latencies),
            )
        })
    });
    group.finish();

    let histogram = LatencyHistogram::default();
    c.bench_function("admin_metrics/latency_record", |b| {
        b.iter(|| histogram.record(black_box(Duration::from_micros(1_750))))
    });
}

criterion_group!(benches, metrics);
criterion_main!(benches);
