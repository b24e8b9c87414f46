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
