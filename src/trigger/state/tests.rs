use proptest::prelude::*;

use super::*;

fn status(state: State, failures: u64) -> Status {
    Status {
        state,
        failures,
        last_error: Some("earlier".into()),
    }
}

fn discarded() -> EventOutcome {
    EventOutcome::Discarded {
        error: "function error".into(),
    }
}

fn blocked() -> EventOutcome {
    EventOutcome::Blocked {
        reason: "FunctionNotFound".into(),
    }
}

fn dead_letter() -> Effect {
    Effect::WriteDeadLetters
}

#[test]
fn new_triggers_start_running_or_disabled() {
    assert_eq!(Status::new(true).state, State::Running);
    assert_eq!(Status::new(false).state, State::Disabled);
    assert_eq!(Status::new(true).failures, 0);
}

/// (state, failures, threshold, outcome) -> (state, failures, last error, effects)
type OutcomeCase = (
    State,
    u64,
    FailureThreshold,
    EventOutcome,
    State,
    u64,
    Option<&'static str>,
    Vec<Effect>,
);

#[test]
fn outcome_table() {
    use EventOutcome::Delivered;
    use State::*;
    let two = FailureThreshold::at_most(2);
    let unlimited = FailureThreshold::UNLIMITED;
    let cases: Vec<OutcomeCase> = vec![
        (
            Running,
            0,
            two,
            Delivered,
            Running,
            0,
            Some("earlier"),
            vec![Effect::AdvancePosition],
        ),
        (
            Running,
            0,
            two,
            discarded(),
            Running,
            1,
            Some("function error"),
            vec![dead_letter(), Effect::AdvancePosition],
        ),
        (
            Running,
            1,
            two,
            discarded(),
            Running,
            2,
            Some("function error"),
            vec![dead_letter(), Effect::AdvancePosition],
        ),
        (
            Running,
            2,
            two,
            discarded(),
            Failed,
            3,
            Some("function error"),
            vec![dead_letter(), Effect::AdvancePosition, Effect::StopWorker],
        ),
        (
            Running,
            0,
            FailureThreshold::at_most(0),
            discarded(),
            Failed,
            1,
            Some("function error"),
            vec![dead_letter(), Effect::AdvancePosition, Effect::StopWorker],
        ),
        (
            Running,
            1_000,
            unlimited,
            discarded(),
            Running,
            1_001,
            Some("function error"),
            vec![dead_letter(), Effect::AdvancePosition],
        ),
        (
            Running,
            0,
            two,
            blocked(),
            Exception,
            0,
            Some("FunctionNotFound"),
            vec![Effect::RetryLater],
        ),
        (
            Exception,
            1,
            two,
            blocked(),
            Exception,
            1,
            Some("FunctionNotFound"),
            vec![Effect::RetryLater],
        ),
        (
            Exception,
            1,
            two,
            Delivered,
            Running,
            1,
            None,
            vec![Effect::AdvancePosition],
        ),
        (
            Exception,
            1,
            two,
            discarded(),
            Running,
            2,
            Some("function error"),
            vec![dead_letter(), Effect::AdvancePosition],
        ),
        (
            Exception,
            2,
            two,
            discarded(),
            Failed,
            3,
            Some("function error"),
            vec![dead_letter(), Effect::AdvancePosition, Effect::StopWorker],
        ),
        (
            Failed,
            3,
            two,
            Delivered,
            Failed,
            3,
            Some("earlier"),
            vec![Effect::AdvancePosition],
        ),
        (
            Failed,
            3,
            two,
            discarded(),
            Failed,
            3,
            Some("earlier"),
            vec![dead_letter(), Effect::AdvancePosition],
        ),
        (
            Failed,
            3,
            two,
            blocked(),
            Failed,
            3,
            Some("earlier"),
            vec![],
        ),
        (
            Disabled,
            0,
            two,
            Delivered,
            Disabled,
            0,
            Some("earlier"),
            vec![Effect::AdvancePosition],
        ),
        (
            Disabled,
            0,
            two,
            discarded(),
            Disabled,
            0,
            Some("earlier"),
            vec![dead_letter(), Effect::AdvancePosition],
        ),
        (
            Disabled,
            0,
            two,
            blocked(),
            Disabled,
            0,
            Some("earlier"),
            vec![],
        ),
        (
            Deleted,
            0,
            two,
            Delivered,
            Deleted,
            0,
            Some("earlier"),
            vec![],
        ),
        (
            Deleted,
            0,
            two,
            discarded(),
            Deleted,
            0,
            Some("earlier"),
            vec![],
        ),
        (
            Deleted,
            0,
            two,
            blocked(),
            Deleted,
            0,
            Some("earlier"),
            vec![],
        ),
    ];
    for (state, failures, threshold, outcome, next_state, next_failures, last_error, effects) in
        cases
    {
        let transition = on_outcome(&status(state, failures), threshold, &outcome);
        let context =
            format!("{state} with {failures} failures, threshold {threshold}, {outcome:?}");
        assert_eq!(transition.status.state, next_state, "{context}");
        assert_eq!(transition.status.failures, next_failures, "{context}");
        assert_eq!(
            transition.status.last_error.as_deref(),
            last_error,
            "{context}"
        );
        assert_eq!(transition.effects, effects, "{context}");
    }
}

#[test]
fn every_state_and_outcome_is_covered() {
    for state in State::ALL {
        for outcome in [EventOutcome::Delivered, discarded(), blocked()] {
            let transition = on_outcome(&status(state, 0), FailureThreshold::at_most(5), &outcome);
            if !state.pushes() {
                assert_eq!(transition.status.state, state, "{state} {outcome:?}");
            }
        }
    }
}

#[test]
fn command_table() {
    use State::*;
    let enable = |from| Command::Enable(from);
    // (state, command) -> (state, failures, effects)
    let start = |from| vec![Effect::MoveTo(from), Effect::StartWorker];
    let cases: Vec<(State, Command, State, u64, Vec<Effect>)> = vec![
        (Running, Command::Disable, Disabled, 2, vec![]),
        (Exception, Command::Disable, Disabled, 2, vec![]),
        (Failed, Command::Disable, Disabled, 2, vec![]),
        (Disabled, Command::Disable, Disabled, 2, vec![]),
        (
            Running,
            enable(EnableFrom::Latest),
            Running,
            0,
            start(EnableFrom::Latest),
        ),
        (
            Exception,
            enable(EnableFrom::Stored),
            Running,
            0,
            start(EnableFrom::Stored),
        ),
        (
            Failed,
            enable(EnableFrom::Latest),
            Running,
            0,
            start(EnableFrom::Latest),
        ),
        (
            Failed,
            enable(EnableFrom::Stored),
            Running,
            0,
            start(EnableFrom::Stored),
        ),
        (
            Disabled,
            enable(EnableFrom::Block(7)),
            Running,
            0,
            start(EnableFrom::Block(7)),
        ),
        (Running, Command::Delete, Deleted, 2, vec![]),
        (Exception, Command::Delete, Deleted, 2, vec![]),
        (Failed, Command::Delete, Deleted, 2, vec![]),
        (Disabled, Command::Delete, Deleted, 2, vec![]),
    ];
    for (state, command, next_state, failures, effects) in cases {
        let transition = on_command(&status(state, 2), command).unwrap();
        let context = format!("{state} {command:?}");
        assert_eq!(transition.status.state, next_state, "{context}");
        assert_eq!(transition.status.failures, failures, "{context}");
        assert_eq!(transition.effects, effects, "{context}");
        if matches!(command, Command::Enable(_)) {
            assert_eq!(transition.status.last_error, None, "{context}");
        }
    }
    for command in [
        Command::Disable,
        enable(EnableFrom::Latest),
        Command::Delete,
    ] {
        assert_eq!(
            on_command(&status(Deleted, 0), command),
            Err(TriggerDeleted)
        );
    }
}

#[test]
fn enable_defaults_to_latest() {
    assert_eq!(EnableFrom::default(), EnableFrom::Latest);
}

#[test]
fn state_names_round_trip() {
    for state in State::ALL {
        assert_eq!(State::parse(state.as_str()), Some(state));
    }
    assert_eq!(State::parse("running"), None);
    assert_eq!(Position::block_start(4), Position { block: 4, index: 0 });
    assert!(Position { block: 4, index: 9 } < Position { block: 5, index: 0 });
}

#[derive(Debug, Clone)]
enum Input {
    Outcome(EventOutcome),
    Command(Command),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => Just(Input::Outcome(EventOutcome::Delivered)),
        6 => Just(Input::Outcome(discarded())),
        3 => Just(Input::Outcome(blocked())),
        1 => Just(Input::Command(Command::Disable)),
        1 => prop_oneof![
            Just(EnableFrom::Latest),
            Just(EnableFrom::Stored),
            (0u64..100).prop_map(EnableFrom::Block)
        ]
        .prop_map(|from| Input::Command(Command::Enable(from))),
        1 => Just(Input::Command(Command::Delete)),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_over_any_sequence(
        threshold in prop_oneof![Just(-1i64), 0i64..5],
        enabled in any::<bool>(),
        inputs in prop::collection::vec(input(), 0..60),
    ) {
        let threshold = FailureThreshold::try_from(threshold).unwrap();
        let mut current = Status::new(enabled);
        // Whether the engine would have a worker pushing, following the effects alone.
        let mut worker = current.state.pushes();
        for input in inputs {
            let before = current.clone();
            let transition = match &input {
                Input::Outcome(outcome) => on_outcome(&current, threshold, outcome),
                Input::Command(command) => match on_command(&current, *command) {
                    Ok(transition) => {
                        // The engine stops the worker before it applies a command.
                        worker = false;
                        transition
                    }
                    Err(TriggerDeleted) => {
                        prop_assert_eq!(current.state, State::Deleted);
                        continue;
                    }
                },
            };
            let next = transition.status.clone();
            for effect in &transition.effects {
                match effect {
                    Effect::StopWorker => worker = false,
                    Effect::StartWorker => worker = true,
                    Effect::RetryLater => prop_assert!(worker, "retry without a worker"),
                    _ => {}
                }
            }
            // A worker runs exactly when the state pushes: nothing is pushed in Failed, Disabled, Deleted.
            prop_assert_eq!(worker, next.state.pushes(), "{:?} -> {:?}: {:?}", before.state, input, transition);
            // Deleted is permanent.
            if before.state == State::Deleted {
                prop_assert_eq!(next.state, State::Deleted);
                prop_assert!(transition.effects.is_empty());
            }
            match &input {
                Input::Command(Command::Enable(_)) => prop_assert_eq!(next.failures, 0),
                _ => {
                    // The failure count never goes down without an enable, and rises by one at most.
                    prop_assert!(next.failures >= before.failures);
                    prop_assert!(next.failures <= before.failures + 1);
                }
            }
            // Failed exactly when the threshold is exceeded, for triggers that got there by failing.
            if next.state == State::Failed && before.state != State::Failed {
                prop_assert!(threshold.is_exceeded_by(next.failures));
            }
            if next.state.pushes() {
                prop_assert!(!threshold.is_exceeded_by(next.failures));
            }
            // A dead letter always comes with a position move: a discarded event is never retried.
            let dead_letters = transition.effects.iter().filter(|e| **e == Effect::WriteDeadLetters).count();
            let advances = transition.effects.iter().filter(|e| **e == Effect::AdvancePosition).count();
            prop_assert!(dead_letters <= advances);
            // Exception holds the position.
            if next.state == State::Exception {
                prop_assert!(advances == 0);
            }
            current = next;
        }
    }
}
