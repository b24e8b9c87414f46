//! When to try again: capped exponential backoff with jitter between attempts on one event, honouring
//! `Retry-After`, and the slow schedule of a trigger in Exception. Kept apart from the classifier so either can
//! change alone; both are iterators of delays, so the caller owns the clock (tokio's, pausable in tests).
//!
//! backon (not `backoff`, unmaintained: RUSTSEC-2025-0012) computes the exponential part. Its jitter adds up to
//! +100% of the delay; the result is clamped to the configured maximum, so a delay is always within
//! `[d, min(2d, max_delay)]` where `d` doubles from `initial_delay`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::RetryPolicy;

/// The longest wait a `Retry-After` header can impose: past it a target's request is not honoured in full, so
/// one event cannot hold its trigger for hours.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// The first wait of a trigger in Exception before it retries the held event.
pub const EXCEPTION_FIRST_DELAY: Duration = Duration::from_secs(5);

/// The longest wait of a trigger in Exception: a fixed cause is noticed within about a minute.
pub const EXCEPTION_MAX_DELAY: Duration = Duration::from_secs(60);

/// The delays between the attempts on one event: `attempts - 1` of them.
#[derive(Debug)]
pub struct Backoff {
    inner: backon::ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// The schedule of `policy`, with random jitter.
    pub fn new(policy: &RetryPolicy) -> Self {
        Self::build(policy, None)
    }

    /// The schedule of `policy` with reproducible jitter (for tests).
    pub fn with_seed(policy: &RetryPolicy, seed: u64) -> Self {
        Self::build(policy, Some(seed))
    }

    fn build(policy: &RetryPolicy, seed: Option<u64>) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(policy.initial_delay.0)
            .with_max_delay(policy.max_delay.0)
            .with_factor(2.0)
            .with_max_times(policy.attempts.saturating_sub(1) as usize);
        let builder = match seed {
            Some(seed) => builder.with_jitter_seed(seed).with_jitter(),
            None => builder.with_jitter(),
        };
        Backoff {
            inner: builder.build(),
            max: policy.max_delay.0,
        }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.inner.next().map(|delay| delay.min(self.max))
    }
}

/// The wait before the next attempt: the backoff's, or longer if the target asked for it (up to
/// [`RETRY_AFTER_CAP`]).
pub fn delay_before_next(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    match retry_after {
        Some(asked) => backoff.max(asked.min(RETRY_AFTER_CAP)),
        None => backoff,
    }
}

/// The delays between re-tries of the event a trigger in Exception holds: from 5 s, doubling, up to 60 s,
/// with jitter, never ending (the trigger leaves Exception by succeeding, or by an operator's command).
#[derive(Debug)]
pub struct ExceptionSchedule {
    inner: backon::ExponentialBackoff,
}

impl ExceptionSchedule {
    /// The schedule with random jitter.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// The schedule with reproducible jitter (for tests).
    pub fn with_seed(seed: u64) -> Self {
        Self::build(Some(seed))
    }

    fn build(seed: Option<u64>) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(EXCEPTION_FIRST_DELAY)
            .with_max_delay(EXCEPTION_MAX_DELAY)
            .with_factor(2.0)
            .without_max_times();
        let builder = match seed {
            Some(seed) => builder.with_jitter_seed(seed).with_jitter(),
            None => builder.with_jitter(),
        };
        ExceptionSchedule {
            inner: builder.build(),
        }
    }
}

impl Default for ExceptionSchedule {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for ExceptionSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(
            self.inner
                .next()
                .unwrap_or(EXCEPTION_MAX_DELAY)
                .min(EXCEPTION_MAX_DELAY),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn policy(attempts: u32, initial_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_delay: HumanDuration(Duration::from_millis(initial_ms)),
            max_delay: HumanDuration(Duration::from_millis(max_ms)),
            attempt_timeout: HumanDuration(Duration::from_secs(1)),
        }
    }

    #[test]
    fn backoff_gives_one_delay_fewer_than_attempts() {
        assert_eq!(Backoff::new(&policy(1, 100, 1000)).count(), 0);
        assert_eq!(Backoff::new(&policy(5, 100, 1000)).count(), 4);
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        for seed in 0..200 {
            let delays: Vec<Duration> = Backoff::with_seed(&policy(8, 100, 1000), seed).collect();
            assert_eq!(delays.len(), 7);
            let bases = [100, 200, 400, 800, 1000, 1000, 1000];
            for (delay, base) in delays.iter().zip(bases) {
                let base = Duration::from_millis(base);
                assert!(*delay >= base, "seed {seed}: {delay:?} below {base:?}");
                assert!(
                    *delay <= (base * 2).min(Duration::from_millis(1000)),
                    "seed {seed}: {delay:?} above the cap"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let firsts: std::collections::HashSet<Duration> = (0..50)
            .filter_map(|seed| Backoff::with_seed(&policy(3, 1000, 10_000), seed).next())
            .collect();
        assert!(firsts.len() > 10, "jitter should vary delays: {firsts:?}");
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_is_capped() {
        let backoff = Duration::from_secs(2);
        assert_eq!(delay_before_next(backoff, None), backoff);
        assert_eq!(
            delay_before_next(backoff, Some(Duration::from_secs(1))),
            backoff
        );
        assert_eq!(
            delay_before_next(backoff, Some(Duration::from_secs(9))),
            Duration::from_secs(9)
        );
        assert_eq!(
            delay_before_next(backoff, Some(Duration::from_secs(86_400))),
            RETRY_AFTER_CAP
        );
    }

    proptest::proptest! {
        #[test]
        fn any_policy_gives_capped_growing_delays(
            attempts in 1u32..20,
            initial_ms in 1u64..5_000,
            extra_ms in 0u64..60_000,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let max_ms = initial_ms + extra_ms;
            let delays: Vec<Duration> = Backoff::with_seed(&policy(attempts, initial_ms, max_ms), seed).collect();
            proptest::prop_assert_eq!(delays.len() as u32, attempts - 1);
            let mut base = Duration::from_millis(initial_ms);
            let max = Duration::from_millis(max_ms);
            // backon computes in f32 seconds: allow for its rounding.
            let slack = Duration::from_millis(1);
            for delay in delays {
                proptest::prop_assert!(delay <= max, "{delay:?} above the cap {max:?}");
                proptest::prop_assert!(
                    delay + slack >= base.min(max) && delay <= (base * 2).min(max) + slack,
                    "{delay:?} vs base {base:?}"
                );
                base = (base * 2).min(max);
            }
        }
    }

    #[test]
    fn exception_schedule_is_slow_and_endless() {
        for seed in 0..50 {
            let delays: Vec<Duration> = ExceptionSchedule::with_seed(seed).take(20).collect();
            assert_eq!(delays.len(), 20);
            assert!(delays[0] >= EXCEPTION_FIRST_DELAY && delays[0] <= EXCEPTION_FIRST_DELAY * 2);
            assert!(
                delays
                    .iter()
                    .all(|d| *d >= EXCEPTION_FIRST_DELAY && *d <= EXCEPTION_MAX_DELAY)
            );
            assert!(delays[10..].iter().all(|d| *d >= Duration::from_secs(40)));
        }
    }
}
