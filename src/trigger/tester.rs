//! The filter tester: what a trigger would push for each event of some blocks, without pushing anything.
//!
//! It answers with the daemon's own engine, not an imitation of it: blocks become [`BlockEvents`] as the channel
//! makes them (every event, Contract events of invalid transactions included), an event goes to the trigger when
//! [`def::receives`] says so, and its payloads come from [`worker::payloads`]: the filter as the configuration
//! compiles it, evaluated on the shared filter pool under the trigger's limits. What it shows is what the worker
//! would push, payload for payload.
//!
//! Invariants:
//! - Events are tested in chain order (block, then event index), each with one [`TestedEvent`].
//! - A filter error ends the test at that event ([`TestReport::held`]): the trigger would hold that event in
//!   Exception and push nothing after it. This also bounds a test's time to about one evaluation's time limit,
//!   however many events a runaway filter would run on.
//! - No I/O: blocks come in decoded; nothing is pushed or stored.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::def;
use super::window::{BlockEvents, Readers};
use super::worker;
use crate::config::EventSelector;
use crate::events::{EventType, ExtractOptions, Rendering, extract};
use crate::fabric::decode::{BlockDecoder, DecodeError, VerifyError};
use crate::filter::{Filter, Limits};

/// The trigger being tried: what it listens to and how it filters.
#[derive(Debug, Clone)]
pub struct TestSpec {
    /// The event types it receives (`event` in the configuration).
    pub selector: EventSelector,
    /// Whether it receives Contract events of invalid transactions.
    pub include_invalid: bool,
    /// Its filter as compiled; `None` pushes every event whole.
    pub filter: Option<Filter>,
    /// What one evaluation may spend (`filter_timeout` and the fixed limits).
    pub limits: Limits,
}

/// Why an event yields what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The filter yielded outputs: each is pushed, in order, one invocation each.
    Pushed,
    /// The filter yielded nothing (for JMESPath: `null`, `false`, `[]` or `{}`): nothing is pushed.
    FilteredOut,
    /// The event is of a type the trigger does not listen to.
    NotOfType,
    /// A Contract event of an invalid transaction, and the trigger does not set `include_invalid`.
    InvalidLeftOut,
    /// The filter failed at run time (an error it raised, a limit passed): the trigger would hold the event in
    /// Exception and push nothing after it.
    FilterError,
}

impl Reason {
    /// Why nothing is pushed, for people; `None` when something is.
    pub fn why_nothing(self) -> Option<&'static str> {
        match self {
            Reason::Pushed => None,
            Reason::FilteredOut => Some("filtered out: the filter yielded nothing"),
            Reason::NotOfType => Some("not of the trigger's event type"),
            Reason::InvalidLeftOut => Some(
                "a Contract event of an invalid transaction, left out (the trigger does not set include_invalid)",
            ),
            Reason::FilterError => Some("the filter failed"),
        }
    }
}

/// One event as the trigger would see it. The JSON form is the admin API's (`POST /v1/filters/test`): fields
/// are only ever added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestedEvent {
    /// The block the event is in.
    pub block: u64,
    /// Its index among the block's events (the second half of a trigger's position).
    pub index: u32,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The envelope's `id` (the de-duplication key sent with every push).
    pub id: String,
    /// The payloads the trigger would push, in order; empty when nothing is.
    pub outputs: Vec<Value>,
    /// The filter's run-time error, when it failed on this event.
    pub error: Option<String>,
    /// Why the event yields what it does.
    pub reason: Reason,
}

/// The events of a test, and whether the trigger would have stopped at one.
#[derive(Debug, Clone, PartialEq)]
pub struct TestReport {
    /// Every event tested, in chain order.
    pub events: Vec<TestedEvent>,
    /// True when the last event's filter error ended the test: the events after it were not tested, as the
    /// trigger would hold that event in Exception.
    pub held: bool,
}

/// Tests `spec` on every event of `blocks`, in order; see the module documentation. Dropping the future abandons
/// an evaluation in flight.
pub async fn test(blocks: &[Arc<BlockEvents>], spec: &TestSpec) -> TestReport {
    let mut events = Vec::new();
    for block in blocks {
        for (index, event) in block.events.iter().enumerate() {
            let mut tested = TestedEvent {
                block: block.number,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                event_type: event.event_type,
                id: event.id.clone(),
                outputs: Vec::new(),
                error: None,
                reason: Reason::Pushed,
            };
            if !def::receives(spec.selector, spec.include_invalid, event) {
                tested.reason = if spec.selector.matches(event.event_type) {
                    Reason::InvalidLeftOut
                } else {
                    Reason::NotOfType
                };
                events.push(tested);
                continue;
            }
            match worker::payloads(spec.filter.as_ref(), spec.limits, block, index).await {
                Ok(outputs) if outputs.is_empty() => tested.reason = Reason::FilteredOut,
                Ok(outputs) => tested.outputs = outputs,
                Err(error) => {
                    tested.reason = Reason::FilterError;
                    tested.error = Some(error.to_string());
                    events.push(tested);
                    return TestReport { events, held: true };
                }
            }
            events.push(tested);
        }
    }
    TestReport {
        events,
        held: false,
    }
}

/// Why a block cannot be tested.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Not a readable `common.Block`.
    #[error("cannot be decoded: {0}")]
    Decode(#[from] DecodeError),
    /// Its data does not hash to its header's `data_hash`: the daemon would refuse it.
    #[error("fails verification: {0}")]
    Verify(#[from] VerifyError),
}

/// Decodes a raw `common.Block`, checks its data hash and extracts its events as a channel feed does (every
/// event, Contract events of invalid transactions included, so that indexes are positions).
pub fn prepare(
    decoder: &mut BlockDecoder,
    bytes: bytes::Bytes,
    instance_id: &str,
    rendering: Rendering,
) -> Result<Arc<BlockEvents>, BlockError> {
    let block = decoder.decode_bytes(bytes)?;
    block.verify_data_hash()?;
    let options = ExtractOptions {
        instance_id: instance_id.to_owned(),
        include_invalid: true,
        rendering,
    };
    let events = extract(&block, &options);
    Ok(Arc::new(BlockEvents::new(
        &block,
        events,
        std::time::Instant::now(),
        Readers::Many,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Language;

    fn fixture_blocks() -> Vec<Arc<BlockEvents>> {
        let folder =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fabric-v2.5/blocks");
        let files: Vec<_> = (0..24)
            .map(|n| folder.join(format!("block_{n}.pb")))
            .collect();
        let mut decoder = BlockDecoder::new();
        files
            .iter()
            .map(|file| {
                let bytes = std::fs::read(file).expect("a fixture block");
                prepare(&mut decoder, bytes.into(), "test", Rendering::default())
                    .expect("a fixture block prepares")
            })
            .collect()
    }

    fn spec(event: &str, language: Language, filter: Option<&str>) -> TestSpec {
        TestSpec {
            selector: EventSelector::try_from(event.to_owned()).expect("an event type"),
            include_invalid: false,
            filter: filter.map(|source| Filter::compile(language, source).expect("compiles")),
            limits: Limits::default(),
        }
    }

    #[tokio::test]
    async fn every_event_gets_a_verdict_and_outputs_are_the_filters() {
        let blocks = fixture_blocks();
        let total: usize = blocks.iter().map(|block| block.events.len()).sum();
        let report = test(&blocks, &spec("Tx", Language::Jq, Some(".content.id"))).await;
        assert!(!report.held);
        assert_eq!(report.events.len(), total);
        for event in &report.events {
            match event.event_type {
                EventType::Tx => {
                    assert_eq!(event.reason, Reason::Pushed, "{event:?}");
                    assert_eq!(event.outputs.len(), 1);
                    assert!(
                        event.id.contains(event.outputs[0].as_str().unwrap()),
                        "{event:?}"
                    );
                }
                _ => {
                    assert_eq!(event.reason, Reason::NotOfType, "{event:?}");
                    assert!(event.outputs.is_empty());
                }
            }
        }
    }

    #[tokio::test]
    async fn jmespath_false_filters_out_and_no_filter_pushes_the_envelope() {
        let blocks = fixture_blocks();
        let report = test(&blocks, &spec("Block", Language::Jmespath, Some("`false`"))).await;
        let blocks_seen = report
            .events
            .iter()
            .filter(|event| event.event_type == EventType::Block)
            .inspect(|event| assert_eq!(event.reason, Reason::FilteredOut))
            .count();
        assert_eq!(blocks_seen, blocks.len());
        let report = test(&blocks[..1], &spec("Block", Language::Jq, None)).await;
        assert_eq!(
            report.events[0].outputs,
            [blocks[0].events[0].json().clone()]
        );
    }

    #[tokio::test]
    async fn contract_events_of_invalid_transactions_are_left_out_unless_asked_for() {
        let blocks = fixture_blocks();
        let mut spec = spec("Contract", Language::Jq, None);
        let report = test(&blocks, &spec).await;
        let left_out = |report: &TestReport| {
            report
                .events
                .iter()
                .filter(|event| event.reason == Reason::InvalidLeftOut)
                .count()
        };
        assert!(
            left_out(&report) > 0,
            "the fixtures have invalid transactions with events"
        );
        spec.include_invalid = true;
        let report = test(&blocks, &spec).await;
        assert_eq!(left_out(&report), 0);
    }

    #[tokio::test]
    async fn a_runaway_filter_ends_the_test_at_its_first_event_within_its_limit() {
        let blocks = fixture_blocks();
        let mut spec = spec("Tx", Language::Jq, Some("last(range(1e12))"));
        spec.limits = Limits::with_timeout(std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let report = test(&blocks, &spec).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(report.held);
        let last = report.events.last().unwrap();
        assert_eq!(last.reason, Reason::FilterError);
        assert_eq!(last.event_type, EventType::Tx);
        assert!(
            last.error
                .as_deref()
                .unwrap()
                .contains("time limit of 200ms"),
            "{last:?}"
        );
        assert_eq!(
            report
                .events
                .iter()
                .filter(|event| event.reason == Reason::FilterError)
                .count(),
            1
        );
    }
}
