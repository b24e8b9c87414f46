//! The async invocation worker: drains the durable queue in order per function, under the account-wide
//! concurrency limit.
//!
//! At-least-once: an event leaves the queue only in the same transaction that records its outcome, so an
//! event whose run was cut short by a stop or crash runs again after the restart. Throttled events (no free
//! slot under the limit) wait 0.5 s, 1 s, 2 s, 4 s ... (capped) without using a retry; function errors use a
//! retry each (default 3) with the same backoff; an event older than the function's maximum age is dropped and
//! its outcome recorded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Core;
use super::pool::{InvokeOutcome, InvokeRequest, PoolError};
use super::registry::now_ms;
use super::storage::{AsyncEvent, EventStatus};

/// First wait after a throttled run or a function error.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long the worker sleeps when nothing is due, unless woken by a new event.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// How long outcomes (and so stateful invocation ids) are remembered: the longest allowed event age.
const OUTCOME_RETENTION: Duration = Duration::from_secs(super::limits::ASYNC_AGE_RANGE.1);
/// How often old outcomes are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long the worker waits after a storage failure before trying again.
const STORAGE_RETRY: Duration = Duration::from_secs(1);

/// The wait before the `n`-th retry (n >= 1): 0.5 s doubled each time, capped.
pub fn backoff(n: u32, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(31));
    FIRST_BACKOFF.saturating_mul(factor).min(cap)
}

/// What one run of an event led to.
#[derive(Debug)]
enum RunResult {
    /// The outcome was recorded (or the event rescheduled); the function may go on to its next event.
    Done,
    /// No slot was free under the concurrency limit; carries the event's retry count to keep.
    Throttled(u32),
}

/// Runs until `shutdown`. Events being run when it stops stay queued and run again on the next start.
pub(crate) async fn run(core: Arc<Core>, shutdown: CancellationToken) {
    let mut running: HashSet<(String, String)> = HashSet::new();
    // Throttle counts live in memory: after a restart backoff starts again at 0.5 s, which is harmless.
    let mut throttled: HashMap<i64, u32> = HashMap::new();
    let mut tasks: JoinSet<((String, String), i64, RunResult)> = JoinSet::new();
    let mut next_prune = tokio::time::Instant::now();
    loop {
        let now = now_ms();
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            let before = now - OUTCOME_RETENTION.as_millis() as i64;
            match core
                .stored(move |storage| storage.prune_outcomes(before))
                .await
            {
                Ok(0) => {}
                Ok(pruned) => {
                    tracing::info!(pruned, "async queue: forgot outcomes older than 7 days")
                }
                Err(error) => tracing::error!("async queue: cannot prune old outcomes: {error}"),
            }
        }
        let mut next_due: Option<i64> = None;
        match core.storage.queue_heads() {
            Ok(heads) => {
                for event in heads {
                    let key = (event.service.clone(), event.function.clone());
                    if running.contains(&key) {
                        continue;
                    }
                    if event.next_attempt_ms > now {
                        next_due = Some(
                            next_due
                                .map_or(event.next_attempt_ms, |d| d.min(event.next_attempt_ms)),
                        );
                        continue;
                    }
                    running.insert(key.clone());
                    let core = core.clone();
                    tasks.spawn(async move {
                        let seq = event.seq;
                        let result = run_event(&core, event).await;
                        (key, seq, result)
                    });
                }
            }
            Err(error) => {
                tracing::error!("async queue: cannot read the queue: {error}");
                next_due = Some(now + STORAGE_RETRY.as_millis() as i64);
            }
        }
        let wait = next_due
            .map(|due| Duration::from_millis(u64::try_from(due - now).unwrap_or(0)))
            .unwrap_or(IDLE_POLL)
            .min(IDLE_POLL);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = core.queue_wakeup.notified() => {}
            () = tokio::time::sleep(wait) => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((key, seq, result)) = joined {
                    running.remove(&key);
                    match result {
                        RunResult::Done => { throttled.remove(&seq); }
                        RunResult::Throttled(attempts) => {
                            let count = throttled.entry(seq).or_insert(0);
                            *count += 1;
                            let delay = backoff(*count, core.config.async_backoff_cap);
                            let due = now_ms() + delay.as_millis() as i64;
                            if let Err(error) = core.stored(move |storage| storage.reschedule(seq, attempts, due)).await {
                                tracing::error!(seq, "async queue: cannot reschedule a throttled event: {error}");
                            }
                        }
                    }
                }
            }
        }
    }
    tasks.abort_all();
}

/// Runs one event and records what happened.
async fn run_event(core: &Core, event: AsyncEvent) -> RunResult {
    // Reads stay on this thread: they are quick, and only a write waits for the disk. Writes go through
    // `Core::stored`.
    let config = core.storage.async_config(&event.service, &event.function);
    let policy = match config {
        Ok(config) => config.map_or(core.config.async_defaults, |c| c.policy),
        Err(error) => {
            tracing::error!("async queue: cannot read the async settings: {error}");
            return RunResult::Done;
        }
    };
    // Outcomes record the number of runs made, so a success on the first run records 1.
    let finish = |status: EventStatus, runs: u32, detail: &str| {
        let event = AsyncEvent {
            attempts: runs,
            ..event.clone()
        };
        let detail = detail.to_owned();
        async move {
            let seq = event.seq;
            let recorded = core
                .stored(move |storage| storage.finish(&event, status, &detail, now_ms()))
                .await;
            if let Err(error) = recorded {
                tracing::error!(seq, "async queue: cannot record an outcome: {error}");
            }
        }
    };
    let age_ms = now_ms() - event.enqueued_ms;
    if age_ms > (policy.max_age_secs as i64).saturating_mul(1000) {
        let detail = format!(
            "dropped: the event is {} s old, older than maxAsyncEventAgeInSeconds ({})",
            age_ms / 1000,
            policy.max_age_secs
        );
        tracing::warn!(service = %event.service, function = %event.function, request_id = %event.request_id, "{detail}");
        finish(EventStatus::Expired, event.attempts, &detail).await;
        return RunResult::Done;
    }
    let records = core.records_at(&event.service, event.version, &event.function);
    let (service, function) = match records {
        Ok(Some(records)) => records,
        Ok(None) => {
            let detail = "dropped: the function (or its version) was deleted before the event ran";
            tracing::warn!(service = %event.service, function = %event.function, "{detail}");
            finish(EventStatus::Invalid, event.attempts, detail).await;
            return RunResult::Done;
        }
        Err(error) => {
            tracing::error!("async queue: cannot read the function: {error}");
            return RunResult::Done;
        }
    };
    let Ok(permit) = core.limiter.clone().try_acquire_owned() else {
        return RunResult::Throttled(event.attempts);
    };
    let spec = match core.function_spec(&service, &function) {
        Ok(mut spec) => {
            if let Some(version) = event.version {
                spec.qualifier = version.to_string();
            }
            spec
        }
        Err(error) => {
            finish(EventStatus::Invalid, event.attempts, &error.message).await;
            return RunResult::Done;
        }
    };
    let request = InvokeRequest {
        request_id: event.request_id.clone(),
        payload: event.payload.clone().into(),
        log_tail: false,
    };
    let result = core.pool.invoke(&spec, request).await;
    drop(permit);
    let error_detail = match result {
        Ok(invocation) => match invocation.outcome {
            InvokeOutcome::Success { .. } => {
                finish(EventStatus::Succeeded, event.attempts + 1, "").await;
                return RunResult::Done;
            }
            InvokeOutcome::FunctionError { body, .. } => {
                String::from_utf8_lossy(&body).into_owned()
            }
        },
        // Stopping: the event stays queued and runs again after the restart.
        Err(PoolError::ShuttingDown) => return RunResult::Done,
        Err(error) => error.to_string(),
    };
    let attempts = event.attempts + 1;
    if attempts > policy.max_retries {
        tracing::warn!(
            service = %event.service, function = %event.function, request_id = %event.request_id, attempts,
            "async invocation failed; retries exhausted: {error_detail}"
        );
        finish(EventStatus::Failed, attempts, &error_detail).await;
    } else {
        let delay = backoff(attempts, core.config.async_backoff_cap);
        tracing::info!(
            service = %event.service, function = %event.function, attempts, delay_ms = delay.as_millis() as u64,
            "async invocation failed; retrying"
        );
        let (seq, due) = (event.seq, now_ms() + delay.as_millis() as i64);
        if let Err(error) = core
            .stored(move |storage| storage.reschedule(seq, attempts, due))
            .await
        {
            tracing::error!(seq = event.seq, "async queue: cannot reschedule: {error}");
        }
    }
    RunResult::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_is_capped() {
        let cap = Duration::from_secs(5);
        let waits: Vec<u128> = (1..=6).map(|n| backoff(n, cap).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(
            backoff(100, Duration::from_secs(300)),
            Duration::from_secs(300)
        );
    }
}
