//! The pool with real threads: runaway, deep, hoarding and uninterruptible evaluations beside healthy ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::filter::Language;

fn jq(source: &str) -> Filter {
    Filter::compile(Language::Jq, source).unwrap_or_else(|e| panic!("{source}: {e}"))
}

fn envelope() -> Arc<Envelope> {
    Arc::new(Envelope::new(
        json!({"id": "tx-1-abc", "content": {"to": "taskmgr", "state": "VALID"}}),
    ))
}

fn limits(timeout_ms: u64) -> Limits {
    Limits::with_timeout(Duration::from_millis(timeout_ms))
}

/// Waits (bounded) until the pool's counts satisfy `condition`.
fn wait_status(
    pool: &FilterPool,
    what: &str,
    condition: impl Fn(&PoolStatus) -> bool,
) -> PoolStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = pool.status();
        if condition(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: {status:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn a_healthy_filter_runs_on_the_pool() {
    let pool = FilterPool::new(2);
    let payloads = pool
        .evaluate(&jq(".content.to"), envelope(), Limits::default())
        .await
        .expect("the filter runs");
    assert_eq!(payloads, vec![json!("taskmgr")]);
    assert_eq!(pool.status().live, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_filters_stop_at_their_limit_and_healthy_ones_still_run() {
    let pool = Arc::new(FilterPool::new(2));
    let runaway = jq("last(range(1e12))");
    let started = Instant::now();
    // More runaway evaluations than threads, then a healthy one behind them.
    let runaways: Vec<_> = (0..3)
        .map(|_| {
            let pool = Arc::clone(&pool);
            let runaway = runaway.clone();
            tokio::spawn(async move { pool.evaluate(&runaway, envelope(), limits(300)).await })
        })
        .collect();
    let healthy = pool
        .evaluate(&jq(".id"), envelope(), Limits::default())
        .await
        .expect("the healthy filter runs");
    assert_eq!(healthy, vec![json!("tx-1-abc")]);
    for runaway in runaways {
        let error = runaway
            .await
            .expect("the task")
            .expect_err("over its limit");
        assert_eq!(error.kind, ErrorKind::Time, "{error}");
        assert!(
            error.message.contains("time limit of 300ms"),
            "{}",
            error.message
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "three 300 ms runaways on two threads took {elapsed:?}"
    );
    let status = pool.status();
    assert_eq!(
        (status.live, status.busy, status.abandoned),
        (2, 0, 0),
        "{status:?}"
    );
}

#[tokio::test]
async fn dropping_the_future_stops_the_evaluation() {
    let pool = FilterPool::new(1);
    let runaway = jq("last(range(1e12))");
    let waited = tokio::time::timeout(
        Duration::from_millis(200),
        pool.evaluate(&runaway, envelope(), limits(60_000)),
    )
    .await;
    assert!(waited.is_err(), "still running after 200 ms");
    let dropped = Instant::now();
    wait_status(&pool, "the abandoned evaluation stops", |s| s.busy == 0);
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "stopped {:?} after the caller left",
        dropped.elapsed()
    );
    // The thread is free again at once for the next one.
    let payloads = pool
        .evaluate(&jq(".id"), envelope(), Limits::default())
        .await
        .expect("the next filter runs");
    assert_eq!(payloads, vec![json!("tx-1-abc")]);
}

#[tokio::test]
async fn a_filter_past_its_memory_or_depth_limit_gives_its_thread_back() {
    let pool = FilterPool::new(1);
    // Depth-first through a binary tree 10^8 levels deep: what it keeps grows until a limit stops it.
    let deep = jq("0 | last(recurse(if . < 100000000 then (. + 1, . + 1) else empty end))");
    let error = pool
        .evaluate(&deep, envelope(), limits(30_000))
        .await
        .expect_err("too deep");
    assert!(
        matches!(error.kind, ErrorKind::Depth | ErrorKind::Memory),
        "{error}"
    );
    wait_status(&pool, "the thread is replaced", |s| {
        s.live == 1 && s.busy == 0
    });
    assert_eq!(
        pool.evaluate(&jq(".id"), envelope(), Limits::default())
            .await
            .expect("the pool still runs filters"),
        vec![json!("tx-1-abc")]
    );
}

#[tokio::test]
async fn a_hoarding_filter_stops_at_the_memory_limit() {
    let pool = FilterPool::new(1);
    let error = pool
        .evaluate(&jq("[range(1e10)] | length"), envelope(), limits(30_000))
        .await
        .expect_err("over the memory limit");
    assert_eq!(error.kind, ErrorKind::Memory, "{error}");
    // 64 MiB, or less on a debug build's pool (see `STACK_PER_MEMORY`).
    assert!(
        error.message.contains(" MiB of memory"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn an_uninterruptible_allocation_is_abandoned_and_its_thread_replaced_up_to_a_bound() {
    // One string of 10 GB in one step: the thread stops before the allocation, the watcher answers for it.
    let huge = || jq(r#""x" * 10000000000"#);
    let pool = FilterPool::new(1);
    assert_eq!(pool.max_abandoned(), MIN_ABANDONED);
    let first = huge();
    let started = Instant::now();
    let error = pool
        .evaluate(&first, envelope(), limits(100))
        .await
        .expect_err("abandoned");
    assert_eq!(error.kind, ErrorKind::Overrun, "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(100) + GRACE + Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    let status = wait_status(&pool, "a replacement thread", |s| s.live == 1);
    assert_eq!(status.abandoned, 1, "{status:?}");
    assert_eq!(
        pool.evaluate(&jq(".id"), envelope(), Limits::default())
            .await
            .expect("the replacement runs filters"),
        vec![json!("tx-1-abc")]
    );

    // The same filter is not run again: its trigger cannot take another thread.
    let error = pool
        .evaluate(&first, envelope(), limits(100))
        .await
        .expect_err("not run again");
    assert_eq!(error.kind, ErrorKind::Overrun, "{error}");
    assert!(
        error
            .message
            .starts_with("not run: on an earlier event it did not stop"),
        "{error}"
    );
    assert_eq!(pool.status().abandoned, 1);

    // Other such filters take one thread each: the pool replaces up to `max_abandoned` of them, then has none left
    // and says so (threads never more than 1 + `max_abandoned`).
    for abandoned in 2..=MIN_ABANDONED + 1 {
        let error = pool
            .evaluate(&huge(), envelope(), limits(100))
            .await
            .expect_err("abandoned");
        assert_eq!(error.kind, ErrorKind::Overrun, "{error}");
        let status = wait_status(&pool, "one more abandoned", |s| s.abandoned == abandoned);
        assert!(status.live <= 1, "{status:?}");
    }
    let status = wait_status(&pool, "no thread left", |s| s.live == 0);
    assert_eq!(status.abandoned, MIN_ABANDONED + 1, "{status:?}");
    let error = pool
        .evaluate(&jq(".id"), envelope(), Limits::default())
        .await
        .expect_err("no thread left");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
}

#[tokio::test]
async fn a_jmespath_result_that_doubles_at_every_step_is_contained() {
    let pool = FilterPool::new(1);
    // Each `[@, @][]` doubles the array: 2^40 references in the end, past the hard memory cap long before.
    let source = format!("[@]{}", " | [@, @][]".repeat(40));
    let filter = Filter::compile(Language::Jmespath, &source).expect("compiles");
    let error = pool
        .evaluate(&filter, envelope(), limits(200))
        .await
        .expect_err("contained");
    assert!(
        matches!(
            error.kind,
            ErrorKind::Overrun | ErrorKind::Memory | ErrorKind::Time
        ),
        "{error}"
    );
    wait_status(&pool, "a live thread", |s| s.live == 1);
}

fn numbered(n: u64) -> Arc<Envelope> {
    Arc::new(Envelope::new(json!({"id": format!("tx-{n}"), "n": n})))
}

#[tokio::test]
async fn several_events_in_one_job_are_answered_in_order() {
    let pool = FilterPool::new(1);
    let envelopes: Vec<_> = (0..40).map(numbered).collect();
    let answers = pool
        .evaluate_many(
            &jq("select(.n % 3 == 0) | .id"),
            envelopes,
            Limits::default(),
        )
        .await;
    // A job answers the events its slice had time for, in order, and at least one: on a loaded machine (a debug
    // build beside other tests) 40 quick evaluations do not always fit one slice.
    assert!(
        (1..=40).contains(&answers.len()),
        "{} answers",
        answers.len()
    );
    for (n, answer) in answers.into_iter().enumerate() {
        let expected = if n % 3 == 0 {
            vec![json!(format!("tx-{n}"))]
        } else {
            Vec::new()
        };
        assert_eq!(answer.expect("runs"), expected, "event {n}");
    }
    assert!(
        pool.evaluate_many(&jq("."), Vec::<Arc<Envelope>>::new(), Limits::default())
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_slow_events_gives_its_thread_up_after_its_slice() {
    let pool = Arc::new(FilterPool::new(1));
    // Each evaluation takes longer than the slice.
    let slow = jq("last(range(2000000)) | .");
    let envelopes: Vec<_> = (0..20).map(numbered).collect();
    let job = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move { pool.evaluate_many(&slow, envelopes, limits(60_000)).await })
    };
    wait_status(&pool, "the slow job runs", |s| s.busy == 1);
    // Queued behind it on the only thread: answered after its first evaluation, not after all twenty.
    let started = Instant::now();
    let healthy = pool
        .evaluate(&jq(".id"), numbered(7), Limits::default())
        .await
        .expect("runs");
    let waited = started.elapsed();
    assert_eq!(healthy, vec![json!("tx-7")]);
    let answers = job.await.expect("the task");
    assert!(
        !answers.is_empty() && answers.len() < 20,
        "{} answers: the job kept its thread",
        answers.len()
    );
    for answer in &answers {
        assert_eq!(answer.as_ref().expect("runs"), &vec![json!(1999999)]);
    }
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
}

#[tokio::test]
async fn a_job_ends_at_an_event_past_its_memory_limit() {
    let pool = FilterPool::new(1);
    let filter = jq("if .n == 1 then [range(1e10)] | length else .n end");
    let answers = pool
        .evaluate_many(&filter, (0..4).map(numbered).collect(), limits(30_000))
        .await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0].as_ref().expect("runs"), &vec![json!(0)]);
    let error = answers[1].as_ref().expect_err("over the memory limit");
    assert_eq!(error.kind, ErrorKind::Memory, "{error}");
    // The events after it are evaluated again by the caller, on the replacement thread.
    wait_status(&pool, "the thread is replaced", |s| {
        s.live == 1 && s.busy == 0
    });
    let rest = pool
        .evaluate_many(&jq(".n"), (2..4).map(numbered).collect(), Limits::default())
        .await;
    assert_eq!(rest.len(), 2);
}

#[tokio::test]
async fn an_uninterruptible_event_in_a_job_is_answered_after_the_ones_before_it() {
    let pool = FilterPool::new(1);
    let filter = jq(r#"if .n == 2 then "x" * 10000000000 else .n end"#);
    let answers = pool
        .evaluate_many(&filter, (0..5).map(numbered).collect(), limits(100))
        .await;
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(answers[0].as_ref().expect("runs"), &vec![json!(0)]);
    assert_eq!(answers[1].as_ref().expect("runs"), &vec![json!(1)]);
    let error = answers[2].as_ref().expect_err("abandoned");
    assert_eq!(error.kind, ErrorKind::Overrun, "{error}");
    wait_status(&pool, "a replacement thread", |s| s.live == 1);
}
