//! Invoke latency per trigger, recorded from any task without locking: each delivered payload's time from block
//! received to target answered. The admin API renders snapshots as Prometheus histograms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the invoke latency buckets: from a sub-millisecond local function to a
/// timed-out remote call, dense where the design's "single-digit milliseconds" budget lies.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of invoke durations that the engine records into from any task without locking.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket counts (not cumulative), the last slot for durations above every bound, so a record
    /// touches one counter.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// The sum of all recorded durations in nanoseconds: whole numbers add exactly with atomics.
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Records one invocation's duration (from request sent to response received, retries not included).
    pub fn record(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts right now. Buckets are read one by one, so a record racing with the read may be half seen;
    /// the count is derived from the buckets so `_count` always equals the `+Inf` bucket.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [0; LATENCY_BUCKETS.len() + 1];
        for (slot, bucket) in buckets.iter_mut().zip(&self.buckets) {
            *slot = bucket.load(Ordering::Relaxed);
        }
        HistogramSnapshot {
            buckets,
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// A copy of a [`LatencyHistogram`]'s counts, taken for one scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per-bucket counts as in [`LatencyHistogram`] (not cumulative; the last slot is above every bound).
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// The sum of the recorded durations in nanoseconds.
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// A stage of an event's way from its block's arrival to its outcome's commit: where an event waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The block's bytes decoded, its data hash verified, its events extracted (once per block).
    Decode,
    /// From the block's events being ready to the trigger's worker starting on the event: the events before
    /// it in the block, and the worker finishing the block before.
    Wait,
    /// The filter's evaluation, on the filter pool (including its queue).
    Filter,
    /// Every push of the event's outputs, retries included: the round trip to the target.
    Push,
    /// The event's outcome and new position written to the store.
    Commit,
}

impl Stage {
    /// Every stage, in an event's order.
    pub const ALL: [Stage; 5] = [
        Stage::Decode,
        Stage::Wait,
        Stage::Filter,
        Stage::Push,
        Stage::Commit,
    ];

    /// Its label value in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Wait => "wait",
            Stage::Filter => "filter",
            Stage::Push => "push",
            Stage::Commit => "commit",
        }
    }
}

/// One channel's time per [`Stage`], over all its triggers, recorded from any task without locking: the
/// breakdown that says where an event's latency goes.
#[derive(Debug, Default)]
pub struct StageHistograms {
    /// One histogram per stage, in [`Stage::ALL`] order.
    histograms: [LatencyHistogram; Stage::ALL.len()],
    /// The longest duration seen per stage, in nanoseconds: the tail a histogram's buckets blur.
    max_nanos: [AtomicU64; Stage::ALL.len()],
}

impl StageHistograms {
    /// Records one duration of `stage`.
    pub fn record(&self, stage: Stage, duration: Duration) {
        let slot = stage as usize;
        self.histograms[slot].record(duration);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.max_nanos[slot].fetch_max(nanos, Ordering::Relaxed);
    }

    /// The counts right now, in [`Stage::ALL`] order.
    pub fn snapshot(&self) -> Vec<StageSnapshot> {
        Stage::ALL
            .iter()
            .map(|&stage| StageSnapshot {
                stage,
                histogram: self.histograms[stage as usize].snapshot(),
                max_nanos: self.max_nanos[stage as usize].load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// A copy of one stage's counts, taken for one scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSnapshot {
    /// The stage.
    pub stage: Stage,
    /// Its durations.
    pub histogram: HistogramSnapshot,
    /// The longest of them, in nanoseconds.
    pub max_nanos: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_keeps_its_own_counts_and_longest_duration() {
        let stages = StageHistograms::default();
        stages.record(Stage::Push, Duration::from_millis(3));
        stages.record(Stage::Push, Duration::from_millis(40));
        stages.record(Stage::Commit, Duration::from_micros(200));
        let snapshot = stages.snapshot();
        let push = &snapshot[Stage::Push as usize];
        assert_eq!(push.stage, Stage::Push);
        assert_eq!(push.histogram.count(), 2);
        assert_eq!(push.max_nanos, 40_000_000);
        assert_eq!(snapshot[Stage::Commit as usize].max_nanos, 200_000);
        assert_eq!(snapshot[Stage::Decode as usize].histogram.count(), 0);
    }
}
