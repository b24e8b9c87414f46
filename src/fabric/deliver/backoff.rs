//! The reconnect schedule: capped exponential backoff with jitter, as a pure function so tests can check it
//! without clocks.

use std::time::Duration;

/// How long to wait before reconnecting after consecutive failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay after the first failure: short, because most drops are a peer restarting.
    pub initial: Duration,
    /// Upper bound of the delay, so a peer that comes back is found again quickly.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl BackoffPolicy {
    /// The delay before attempt `failures + 1` after `failures` consecutive failures (0 = no delay), given a
    /// uniformly random `jitter` in [0, 1). "Equal jitter": half the capped exponential delay is fixed, the other
    /// half random, so clients that lost the same peer do not reconnect in lockstep and a delay never collapses
    /// to zero.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let exponent = (failures - 1).min(30);
        let capped = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let half = capped / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap_with_bounded_jitter() {
        let policy = BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(policy.delay(0, 0.5), Duration::ZERO);
        assert_eq!(policy.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(policy.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(policy.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(policy.delay(10, 1.0), Duration::from_secs(2));
        assert_eq!(policy.delay(10, 0.0), Duration::from_secs(1));
        assert_eq!(policy.delay(u32::MAX, 0.99), policy.delay(40, 0.99));
        for failures in 1..50 {
            let d = policy.delay(failures, 0.7);
            assert!(
                d <= policy.max && d >= Duration::from_millis(50),
                "{failures}: {d:?}"
            );
        }
    }
}
