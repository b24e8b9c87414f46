//! One event's outcome for a trigger, from the deliveries of the payloads its filter made (pure).
//!
//! A filter may yield several payloads per event (or none). The engine pushes them in order and stops at the first
//! Blocked one. Then:
//! - any payload Blocked: the event is Blocked (the trigger enters Exception and holds the event; every payload is
//!   pushed again later, so nothing is counted and no dead letter is written yet);
//! - otherwise any payload Discarded: the event is Discarded (one failure for the trigger), with one dead letter per
//!   discarded payload, and the delivered ones counted as delivered;
//! - otherwise (all delivered, or no payload at all): Delivered.

use serde_json::Value;

use crate::dispatch::Delivery;
use crate::store::NewDeadLetter;
use crate::trigger::state::{EventOutcome, Position};

/// What happened to one payload of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadDelivery {
    /// The payload as pushed (kept for its dead letter).
    pub payload: Value,
    /// How pushing it ended.
    pub delivery: Delivery,
}

/// The event's outcome and what to record with it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventResult {
    /// The input for the state machine.
    pub outcome: EventOutcome,
    /// Payloads to count as delivered.
    pub delivered: u64,
    /// Payloads to count as discarded.
    pub discarded: u64,
    /// One per discarded payload.
    pub dead_letters: Vec<NewDeadLetter>,
}

/// Combines the outcomes of an event's payloads, given in output order.
pub fn event_result(
    event_id: &str,
    position: Position,
    payloads: &[PayloadDelivery],
) -> EventResult {
    if let Some(reason) = payloads.iter().find_map(|p| match &p.delivery {
        Delivery::Blocked { reason, .. } => Some(reason.clone()),
        _ => None,
    }) {
        return EventResult {
            outcome: EventOutcome::Blocked { reason },
            delivered: 0,
            discarded: 0,
            dead_letters: Vec::new(),
        };
    }
    let mut dead_letters = Vec::new();
    let mut delivered = 0;
    for (output, payload) in payloads.iter().enumerate() {
        match &payload.delivery {
            Delivery::Delivered { .. } => delivered += 1,
            Delivery::Discarded {
                last_error,
                attempts,
            } => dead_letters.push(NewDeadLetter {
                event_id: event_id.to_owned(),
                position,
                output: u32::try_from(output).unwrap_or(u32::MAX),
                payload: payload.payload.clone(),
                error: last_error.clone(),
                attempts: *attempts,
            }),
            Delivery::Blocked { .. } => {}
        }
    }
    let outcome = match dead_letters.as_slice() {
        [] => EventOutcome::Delivered,
        [only] if payloads.len() == 1 => EventOutcome::Discarded {
            error: only.error.clone(),
        },
        [first, ..] => EventOutcome::Discarded {
            error: format!(
                "{} of {} payloads discarded; output {}: {}",
                dead_letters.len(),
                payloads.len(),
                first.output,
                first.error
            ),
        },
    };
    EventResult {
        outcome,
        delivered,
        discarded: dead_letters.len() as u64,
        dead_letters,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const POSITION: Position = Position { block: 7, index: 2 };

    fn delivered(n: u32) -> PayloadDelivery {
        PayloadDelivery {
            payload: json!({"n": n}),
            delivery: Delivery::Delivered { attempts: 1 },
        }
    }

    fn discarded(n: u32) -> PayloadDelivery {
        PayloadDelivery {
            payload: json!({"n": n}),
            delivery: Delivery::Discarded {
                last_error: format!("error {n}"),
                attempts: 5,
            },
        }
    }

    fn blocked(n: u32) -> PayloadDelivery {
        PayloadDelivery {
            payload: json!({"n": n}),
            delivery: Delivery::Blocked {
                reason: format!("blocked {n}"),
                attempts: 1,
            },
        }
    }

    fn letter(output: u32) -> NewDeadLetter {
        NewDeadLetter {
            event_id: "tx-7-abc".into(),
            position: POSITION,
            output,
            payload: json!({"n": output}),
            error: format!("error {output}"),
            attempts: 5,
        }
    }

    #[test]
    fn combinations() {
        let result = |payloads: &[PayloadDelivery]| event_result("tx-7-abc", POSITION, payloads);

        let none = result(&[]);
        assert_eq!(none.outcome, EventOutcome::Delivered);
        assert_eq!((none.delivered, none.discarded), (0, 0));

        let all = result(&[delivered(0), delivered(1)]);
        assert_eq!(all.outcome, EventOutcome::Delivered);
        assert_eq!((all.delivered, all.discarded), (2, 0));
        assert!(all.dead_letters.is_empty());

        let one = result(&[discarded(0)]);
        assert_eq!(
            one.outcome,
            EventOutcome::Discarded {
                error: "error 0".into()
            }
        );
        assert_eq!(one.dead_letters, vec![letter(0)]);

        let mixed = result(&[delivered(0), discarded(1), discarded(2)]);
        assert_eq!(
            mixed.outcome,
            EventOutcome::Discarded {
                error: "2 of 3 payloads discarded; output 1: error 1".into()
            }
        );
        assert_eq!((mixed.delivered, mixed.discarded), (1, 2));
        assert_eq!(mixed.dead_letters, vec![letter(1), letter(2)]);

        let held = result(&[delivered(0), discarded(1), blocked(2)]);
        assert_eq!(
            held.outcome,
            EventOutcome::Blocked {
                reason: "blocked 2".into()
            }
        );
        assert_eq!((held.delivered, held.discarded), (0, 0));
        assert!(held.dead_letters.is_empty());
    }
}
