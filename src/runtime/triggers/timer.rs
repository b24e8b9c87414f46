//! The timer scheduler: fires enabled `timer` triggers on their schedule by queueing an async invocation of
//! their function (at their qualifier) with Function Compute's timer event,
//! `{"triggerTime": "<scheduled time, ISO-8601 Z>", "triggerName": "<name>", "payload": "<payload>"}`.
//!
//! Invariants:
//! - Each trigger stores how far its firings have been handled (`fired_through_ms`). Queueing a firing's event
//!   and moving that mark happen in one SQLite transaction ([`super::super::storage::Storage::fire_timer`]), so
//!   a firing is queued once, whatever stops the runtime, and the async queue then runs it at least once.
//! - Firings missed while the runtime was down are not replayed one by one: at start a timer that owes firings
//!   fires once, with the latest missed time as `triggerTime`, then follows its schedule.
//! - Disabled timers (`enable: false`) never fire; enabling one (or changing its schedule) counts from then: no
//!   firing is owed for the time it was disabled.
//! - A timer whose qualifier no longer resolves (its alias or version was deleted) or whose function is gone
//!   skips the firing, with a warning in the log.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::super::Core;
use super::super::names::{Qualifier, ServiceName};
use super::super::registry::now_ms;
use super::super::storage::{AsyncEvent, TriggerRecord};
use super::schedule::Schedule;
use super::{TriggerKind, check_config};

/// The longest sleep between two looks at the timers (a changed trigger wakes the scheduler anyway).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The most firings looked through to find the latest missed one (about two months of a once-a-minute timer).
const MAX_CATCH_UP_STEPS: usize = 100_000;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// What a timer is owed at `now`: `None` when nothing is due, else the time of the firing to run (the latest
/// scheduled time not after `now`). Also returns when it is next due. Pure.
pub fn due(
    schedule: &Schedule,
    anchor_ms: i64,
    fired_through_ms: Option<i64>,
    now_ms: i64,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let anchor = at(anchor_ms);
    let now = at(now_ms);
    let Some(first) = schedule.next_after(at(fired_through_ms.unwrap_or(anchor_ms)), anchor) else {
        return (None, None);
    };
    if first > now {
        return (None, Some(first));
    }
    let mut latest = first;
    for _ in 0..MAX_CATCH_UP_STEPS {
        match schedule.next_after(latest, anchor) {
            Some(next) if next <= now => latest = next,
            _ => break,
        }
    }
    (Some(latest), schedule.next_after(now, anchor))
}

/// Runs until `shutdown`: fires what is due, sleeps until the next firing (or a trigger change).
pub(crate) async fn run(core: std::sync::Arc<Core>, shutdown: CancellationToken) {
    loop {
        // Off the async threads: firing reads and commits (see `Core::stored`).
        let firing = tokio::task::spawn_blocking({
            let core = core.clone();
            move || fire_due(&core)
        });
        let sleep = match firing.await {
            Ok(sleep) => sleep,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(_) => return,
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = core.timer_wakeup.notified() => {}
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Fires every timer that is due; returns how long to sleep until the next one.
fn fire_due(core: &Core) -> Duration {
    let timers = match core.storage.triggers_of_type("timer") {
        Ok(timers) => timers,
        Err(error) => {
            tracing::error!("timer triggers: cannot read them: {error}");
            return MAX_SLEEP;
        }
    };
    let mut sleep = MAX_SLEEP;
    for trigger in timers {
        let kind = check_config(
            "timer",
            &trigger.config,
            &trigger.source_arn,
            core.config.timer_min_interval,
        );
        let Ok(TriggerKind::Timer {
            schedule,
            payload,
            enable: true,
        }) = kind
        else {
            continue;
        };
        let now = now_ms();
        let (fire_at, next) = due(&schedule, trigger.anchor_ms, trigger.fired_through_ms, now);
        if let Some(fire_at) = fire_at {
            fire(core, &trigger, fire_at, &payload, now);
        }
        if let Some(next) = next {
            let wait = (next.timestamp_millis() - now_ms()).max(0) as u64;
            sleep = sleep.min(Duration::from_millis(wait));
        }
    }
    sleep
}

/// Queues one firing of `trigger` (scheduled at `fire_at`) and marks its firings handled through `now`.
fn fire(core: &Core, trigger: &TriggerRecord, fire_at: DateTime<Utc>, payload: &str, now: i64) {
    let trigger_time = fire_at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let event = match target_version(core, trigger) {
        Ok(version) => {
            let body = json!({
                "triggerTime": trigger_time,
                "triggerName": trigger.name,
                "payload": payload,
            });
            Some(AsyncEvent {
                seq: 0,
                service: trigger.service.clone(),
                function: trigger.function.clone(),
                version,
                invocation_id: None,
                request_id: uuid::Uuid::new_v4().to_string(),
                payload: body.to_string().into_bytes(),
                enqueued_ms: now,
                attempts: 0,
                next_attempt_ms: now,
            })
        }
        Err(reason) => {
            tracing::warn!(
                service = %trigger.service, function = %trigger.function, trigger = %trigger.name,
                %trigger_time, "timer trigger: skipped a firing: {reason}"
            );
            None
        }
    };
    match core.storage.fire_timer(trigger, now, event.as_ref()) {
        Ok(true) if event.is_some() => {
            tracing::info!(
                service = %trigger.service, function = %trigger.function, trigger = %trigger.name,
                %trigger_time, "timer trigger fired"
            );
            core.queue_wakeup.notify_one();
        }
        Ok(_) => {}
        Err(error) => tracing::error!(
            trigger = %trigger.name, "timer trigger: cannot record a firing: {error}"
        ),
    }
}

/// The version a firing runs (`None`: LATEST), resolved now (an alias's weights apply per firing).
fn target_version(core: &Core, trigger: &TriggerRecord) -> Result<Option<u64>, String> {
    let service = ServiceName::parse(&trigger.service).map_err(|e| e.to_string())?;
    let qualifier = if trigger.qualifier.is_empty() {
        Qualifier::Latest
    } else {
        Qualifier::parse(&trigger.qualifier).map_err(|e| e.to_string())?
    };
    let version = core
        .resolve_version(&service, &qualifier, Some(rand::random::<f64>()))
        .map_err(|e| e.message)?;
    let version_id = version.as_ref().map(|v| v.id);
    match core.records_at(&trigger.service, version_id, &trigger.function) {
        Ok(Some(_)) => Ok(version_id),
        Ok(None) => Err(format!("function '{}' is gone", trigger.function)),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn nothing_is_due_before_the_first_firing() {
        let every = Schedule::parse("@every 5m").unwrap();
        let anchor = ms("2024-01-01T00:00:00Z");
        let (fire, next) = due(&every, anchor, None, ms("2024-01-01T00:04:00Z"));
        assert_eq!(fire, None);
        assert_eq!(next.unwrap().timestamp_millis(), ms("2024-01-01T00:05:00Z"));
    }

    #[test]
    fn firings_missed_while_down_fire_once_with_the_latest_time() {
        let every = Schedule::parse("@every 5m").unwrap();
        let anchor = ms("2024-01-01T00:00:00Z");
        // Handled through 00:05; the runtime comes back at 00:23: 00:10, 00:15, 00:20 were missed.
        let (fire, next) = due(
            &every,
            anchor,
            Some(ms("2024-01-01T00:05:00Z")),
            ms("2024-01-01T00:23:00Z"),
        );
        assert_eq!(fire.unwrap().timestamp_millis(), ms("2024-01-01T00:20:00Z"));
        assert_eq!(next.unwrap().timestamp_millis(), ms("2024-01-01T00:25:00Z"));
        // Once handled through 00:23, nothing more is owed.
        let (fire, _) = due(
            &every,
            anchor,
            Some(ms("2024-01-01T00:23:00Z")),
            ms("2024-01-01T00:24:00Z"),
        );
        assert_eq!(fire, None);
        let cron = Schedule::parse("0 1/1000 * * * *").unwrap();
        let (fire, _) = due(&cron, anchor, Some(anchor), ms("2024-01-01T05:30:00Z"));
        assert_eq!(fire.unwrap().timestamp_millis(), ms("2024-01-01T05:01:00Z"));
    }
}
