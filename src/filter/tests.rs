use serde_json::{Value, json};

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/filters/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

fn jq(source: &str) -> Filter {
    Filter::compile(Language::Jq, source).unwrap_or_else(|e| panic!("{source}: {e}"))
}

fn jmespath(source: &str) -> Filter {
    Filter::compile(Language::Jmespath, source).unwrap_or_else(|e| panic!("{source}: {e}"))
}

const TX_ID: &str = "8389948d079a61a4dc1cc6bca1567b4ece3ad03b8f5785b9fad447c2b3a83e2d";
const EXAMPLE_4: &str = r#"select(.content.state=="VALID" and .content.to=="taskmgr") | .content.data.data.actions.[0].payload.action.proposal_response_payload.extension.results.ns_rwset[] | select(.namespace=="taskmgr") | .rwset.writes"#;
const EXAMPLE_6: &str = r#"select(.content.state=="VALID" and .content.to=="taskmgr") | .id as $eventID | .content.id as $txID | .content.from as $creator | .content.data.header.channel_header.timestamp as $createTime | .content.data.data.actions.[0].payload.action.proposal_response_payload.extension.results.ns_rwset | map(.namespace as $namespace | .rwset.writes | map( .event_id = $eventID | .namespace = $namespace | .tx_id = $txID | .create_time = $createTime | .creator = $creator )) | add"#;

#[test]
fn baas_example_1_contract_select_pushes_the_whole_envelope() {
    let filter = jq(r#"select(.name=="event-create-task")"#);
    let event = fixture("contract_event_create_task.json");
    assert_eq!(filter.apply(&event).unwrap(), vec![event.clone()]);
    assert!(
        filter
            .apply(&fixture("contract_put_block3.json"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn baas_example_2_tx_select_on_chaincode_and_state() {
    let filter = jq(r#"select(.content.to=="taskmgr" and .content.state=="VALID")"#);
    let event = fixture("tx_taskmgr_valid.json");
    assert_eq!(filter.apply(&event).unwrap(), vec![event.clone()]);
    assert!(
        filter
            .apply(&fixture("tx_taskmgr_mvcc_conflict.json"))
            .unwrap()
            .is_empty()
    );
    assert!(
        filter
            .apply(&fixture("tx_eventcc_block3.json"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn baas_example_3_contract_pushes_the_base64_payload_string() {
    let filter = jq(r#"select(.name=="event-create-task") | .content"#);
    let pushed = filter
        .apply(&fixture("contract_event_create_task.json"))
        .unwrap();
    let expected = "eyJvcCI6InB1dCIsImtleSI6ImFzc2V0MSIsInZhbHVlIjoidmFsdWUtMSIsInR4SWQiOiI4Mzg5OTQ4ZDA3OWE2MWE0ZGMxY2M2YmNhMTU2N2I0ZWNlM2FkMDNiOGY1Nzg1YjlmYWQ0NDdjMmIzYTgzZTJkIn0=";
    assert_eq!(pushed, vec![json!(expected)]);
}

#[test]
fn baas_example_4_pushes_the_taskmgr_write_set() {
    let pushed = jq(EXAMPLE_4)
        .apply(&fixture("tx_taskmgr_valid.json"))
        .unwrap();
    assert_eq!(
        pushed,
        vec![json!([
            {"is_delete": false, "key": "asset1", "value": "dmFsdWUtMQ=="},
            {"is_delete": false, "key": "special_key", "value": "MTA="}
        ])]
    );
    assert_eq!(
        serde_json::to_string(&pushed[0][1]).unwrap(),
        r#"{"is_delete":false,"key":"special_key","value":"MTA="}"#,
        "key order is kept as in the block"
    );
    assert!(
        jq(EXAMPLE_4)
            .apply(&fixture("tx_eventcc_block3.json"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn baas_example_4_also_accepts_the_jq_1_6_index_form() {
    let jq16 = EXAMPLE_4.replace(".actions.[0]", ".actions[0]");
    let event = fixture("tx_taskmgr_valid.json");
    assert_eq!(
        jq(&jq16).apply(&event).unwrap(),
        jq(EXAMPLE_4).apply(&event).unwrap()
    );
}

#[test]
fn baas_example_5_pushes_exactly_the_special_key_write() {
    let source = format!(r#"{EXAMPLE_4} | .[] | select(.key=="special_key")"#);
    // The BaaS page writes `.rwset.writes[]` after example 4's pipeline, whose output already is the writes array.
    let as_written = format!(
        r#"{} | .rwset.writes[] | select(.key=="special_key")"#,
        EXAMPLE_4.trim_end_matches(" | .rwset.writes")
    );
    let event = fixture("tx_taskmgr_valid.json");
    for source in [source, as_written] {
        let pushed = jq(&source).apply(&event).unwrap();
        assert_eq!(pushed.len(), 1, "{source}");
        assert_eq!(
            serde_json::to_string(&pushed[0]).unwrap(),
            r#"{"is_delete":false,"key":"special_key","value":"MTA="}"#
        );
    }
}

#[test]
fn baas_example_6_pushes_one_array_of_rows() {
    let pushed = jq(EXAMPLE_6)
        .apply(&fixture("tx_taskmgr_valid.json"))
        .unwrap();
    let row = |key: &str, value: &str| {
        json!({
            "is_delete": false, "key": key, "value": value,
            "event_id": format!("tx-3-{TX_ID}"), "namespace": "taskmgr", "tx_id": TX_ID,
            "create_time": "2026-11-21T08:53:16.200243469Z", "creator": "Org1MSP.User1@org1.example.com"
        })
    };
    assert_eq!(
        pushed,
        vec![json!([
            row("asset1", "dmFsdWUtMQ=="),
            row("special_key", "MTA=")
        ])]
    );
    assert!(
        jq(EXAMPLE_6)
            .apply(&fixture("tx_taskmgr_mvcc_conflict.json"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn jq_pushes_every_output_in_order() {
    let filter = jq(".content.events[] | .name, .id");
    let pushed = filter.apply(&fixture("tx_taskmgr_valid.json")).unwrap();
    assert_eq!(
        pushed,
        vec![
            json!("event-create-task"),
            json!(format!("contract-3-{TX_ID}"))
        ]
    );
}

#[test]
fn jq_keeps_numbers_and_handles_nan() {
    let filter = jq("1, 1.5, 12345678901234, -3, nan, [1,2] | tostring");
    assert_eq!(
        filter.apply(&json!(null)).unwrap(),
        vec![
            json!("1"),
            json!("1.5"),
            json!("12345678901234"),
            json!("-3"),
            json!("NaN"),
            json!("[1,2]")
        ]
    );
    let raw = jq("1, 1.5, 12345678901234, -3, nan");
    assert_eq!(
        raw.apply(&json!(null)).unwrap(),
        vec![
            json!(1),
            json!(1.5),
            json!(12345678901234_i64),
            json!(-3),
            Value::Null
        ]
    );
}

#[test]
fn jq_run_time_error_is_a_filter_error() {
    let filter = jq(".content | keys");
    let error = filter
        .apply(&fixture("contract_event_create_task.json"))
        .unwrap_err();
    assert_eq!(error.language, Language::Jq);
    assert!(error.message.contains("object"), "{error}");
    let error = jq(r#"error("boom")"#).apply(&json!({})).unwrap_err();
    assert_eq!(error.message, "boom");
}

#[test]
fn jq_compile_errors_name_the_position() {
    let error = Filter::compile(Language::Jq, "select(.name ==").unwrap_err();
    assert_eq!(error.language, Language::Jq);
    assert!(error.message.contains("line 1, column"), "{error}");
    let error = Filter::compile(Language::Jq, ".a |\n nosuchfn(1)").unwrap_err();
    assert!(
        error
            .message
            .contains("undefined filter `nosuchfn` at line 2, column 2"),
        "{error}"
    );
    let error = Filter::compile(Language::Jq, "\"unterminated").unwrap_err();
    assert!(error.message.contains("closing quote"), "{error}");
}

#[test]
fn jmespath_semantics_follow_the_spec() {
    let event = fixture("tx_taskmgr_valid.json");
    let cases: &[(&str, Vec<Value>)] = &[
        ("content.state == 'VALID'", vec![event.clone()]),
        ("content.state == 'INVALID'", vec![]),
        ("nosuchfield", vec![]),
        ("content.events[?name == 'nothing']", vec![]),
        ("{a: nosuch} | a", vec![]),
        ("content.nosuch || `{}`", vec![]),
        ("content.to", vec![json!("taskmgr")]),
        ("content.events[].name", vec![json!(["event-create-task"])]),
        (
            "content.data.data.actions[0].payload.action.proposal_response_payload.extension.results.ns_rwset[?namespace=='taskmgr'].rwset.writes[] | [?key=='special_key'] | [0]",
            vec![json!({"is_delete": false, "key": "special_key", "value": "MTA="})],
        ),
        ("`0`", vec![json!(0)]),
        ("''", vec![json!("")]),
    ];
    for (source, expected) in cases {
        assert_eq!(
            &jmespath(source).apply(&event).unwrap(),
            expected,
            "{source}"
        );
    }
}

#[test]
fn jmespath_compile_and_run_time_errors() {
    let error = Filter::compile(Language::Jmespath, "content.[").unwrap_err();
    assert_eq!(error.language, Language::Jmespath);
    assert!(error.message.contains("line 1, column"), "{error}");
    let error = jmespath("abs(content)")
        .apply(&fixture("tx_taskmgr_valid.json"))
        .unwrap_err();
    assert_eq!(error.language, Language::Jmespath);
}

#[test]
fn filter_is_send_and_sync_and_shows_its_source() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Filter>();
    let filter = jq(".id");
    assert_eq!(filter.source(), ".id");
    assert_eq!(filter.language(), Language::Jq);
    assert_eq!(jmespath("id").language(), Language::Jmespath);
}

#[test]
fn an_endless_jq_generator_fails_instead_of_filling_memory() {
    let error = jq("repeat(1)").apply(&json!(null)).unwrap_err();
    assert!(error.message.contains("more than 10000 outputs"), "{error}");
    assert_eq!(
        jq("range(10000)").apply(&json!(null)).unwrap().len(),
        MAX_OUTPUTS
    );
}

#[test]
fn recursive_definitions_are_refused_at_compile_time() {
    // Each of these compiles in jq; the first overflows the stack on its first event.
    for source in [
        "def f: 1 + f; f",
        "def f: if . > 3 then . else (. + 1 | f) end; 0 | f",
        "def even: if . == 0 then true else . - 1 | odd end; def odd: if . == 0 then false else . - 1 | even end; 4 | even",
        "def outer: def inner: outer; inner; outer",
        "def f(g): [.[] | f(g)]; f(.)",
        "{a: (def f: f; f)}",
        "\"x \\(def f: f; f)\"",
    ] {
        let error = Filter::compile(Language::Jq, source).expect_err(source);
        assert!(
            error.message.contains("calls itself"),
            "{source}: {}",
            error.message
        );
    }
    let error = Filter::compile(Language::Jq, "def f: 1 + f; f").unwrap_err();
    assert!(
        error.message.starts_with("`def f` calls itself"),
        "{}",
        error.message
    );
}

#[test]
fn definitions_without_recursion_and_recursive_builtins_still_compile() {
    for source in [
        "def twice(f): f | f; 2 | twice(. * 3)",
        "def a: 1; def b: a + a; b",
        "def map(f): [.[] | f]; [1, 2] | map(. + 1)",
        "0 | until(. > 100000; . + 1)",
        "[limit(3; repeat(1))]",
        "[.. | numbers]",
        ".content.data.data.actions.[0].payload",
    ] {
        Filter::compile(Language::Jq, source).unwrap_or_else(|e| panic!("{source}: {e}"));
    }
    let long = jq("0 | until(. > 100000; . + 1)");
    assert_eq!(evaluate(&long, 60_000).unwrap(), vec![json!(100001)]);
}

#[test]
fn a_prepared_envelope_gives_the_same_payloads_and_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Envelope>();
    let event = fixture("tx_taskmgr_valid.json");
    let envelope = std::sync::Arc::new(Envelope::new(event.clone()));
    let example_5 = format!(r#"{EXAMPLE_4} | .[] | select(.key=="special_key")"#);
    let filters = [
        jq(EXAMPLE_4),
        jq(&example_5),
        jq(EXAMPLE_6),
        jq(".content.events[] | .name, .id"),
        jmespath("content.state == 'VALID'"),
        jmespath("content.to"),
    ];
    let threads: Vec<_> = filters
        .into_iter()
        .map(|filter| {
            let envelope = envelope.clone();
            let event = event.clone();
            std::thread::spawn(move || {
                let prepared = filter.apply_to(&envelope).unwrap();
                assert!(!prepared.is_empty(), "{}", filter.source());
                assert_eq!(
                    prepared,
                    filter.apply(&event).unwrap(),
                    "{}",
                    filter.source()
                );
                // Twice on the same envelope: the cached conversion is not consumed.
                assert_eq!(filter.apply_to(&envelope).unwrap(), prepared);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(envelope.json(), Ok(&event));
}

#[test]
fn an_envelope_given_as_text_gives_what_the_same_envelope_as_json_gives() {
    let event = fixture("tx_taskmgr_valid.json");
    let text = serde_json::to_vec(&event).unwrap();
    let example_5 = format!(r#"{EXAMPLE_4} | .[] | select(.key=="special_key")"#);
    for filter in [
        jq(EXAMPLE_4),
        jq(&example_5),
        jq(EXAMPLE_6),
        // Key order, numbers and strings come through the text unchanged.
        jq("."),
        jq("keys_unsorted, (.content | keys_unsorted), .content.block_number, tojson"),
        jmespath("content.state == 'VALID'"),
        jmespath("content.to"),
    ] {
        let from_text = Envelope::from_text(text.clone());
        let expected = filter.apply_to(&Envelope::new(event.clone())).unwrap();
        assert_eq!(
            filter.apply_to(&from_text).unwrap(),
            expected,
            "{}",
            filter.source()
        );
        // An envelope written on demand, whose jq value is not kept, gives the same on every evaluation.
        let for_one = Envelope::for_one(Arc::new(Written(event.clone())));
        for _ in 0..2 {
            assert_eq!(
                filter.apply_to(&for_one).unwrap(),
                expected,
                "{}",
                filter.source()
            );
        }
    }
    assert_eq!(Envelope::from_text(text).json(), Ok(&event));
}

/// An event that writes its envelope on demand, as the daemon's events do.
struct Written(Value);

impl Render for Written {
    fn text(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap()
    }

    fn jq(&self) -> jaq_json::Val {
        serde_json::from_value(self.0.clone()).unwrap()
    }
}

#[test]
fn an_envelope_whose_text_is_not_json_fails_each_filter_with_the_parser_message() {
    for text in [&b"{\"id\": "[..], b"", b"\xff\xfe", b"{} trailing"] {
        for (envelope, filter) in [
            (Envelope::from_text(text.to_vec()), jq(".")),
            (Envelope::from_text(text.to_vec()), jmespath("id")),
        ] {
            let error = filter.apply_to(&envelope).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Raised, "{error}");
            assert!(
                error.message.contains("line 1"),
                "{:?}: {error}",
                String::from_utf8_lossy(text)
            );
            assert!(envelope.json().is_err());
        }
    }
}

fn evaluate(filter: &Filter, timeout_ms: u64) -> Result<Vec<Value>, FilterError> {
    filter.evaluate(
        &Envelope::new(fixture("tx_taskmgr_valid.json")),
        &Limits::with_timeout(std::time::Duration::from_millis(timeout_ms)),
        &|| false,
    )
}

#[test]
fn halt_is_a_filter_error_not_the_end_of_the_daemon() {
    for source in [
        "halt",
        "halt_error",
        r#""bye" | halt_error(3)"#,
        "halt_error(0)",
    ] {
        let error = jq(source).apply(&json!({})).expect_err(source);
        assert_eq!(error.kind, ErrorKind::Halted, "{source}: {error}");
        assert!(error.message.contains("cannot stop the daemon"), "{error}");
    }
}

#[test]
fn runaway_jq_filters_stop_at_their_time_limit_even_inside_try() {
    for source in [
        "last(range(1e12))",
        "first(skip(1e12; range(1e13)))",
        "until(false; .)",
        "reduce repeat(1) as $x (0; . + 1)",
        "try last(range(1e12)) catch 0",
        "[limit(1e12; repeat(1))] | empty",
        "label $out | foreach repeat(1) as $x (0; . + 1; empty)",
    ] {
        let started = std::time::Instant::now();
        let error = evaluate(&jq(source), 200).expect_err(source);
        assert!(
            matches!(error.kind, ErrorKind::Time | ErrorKind::Memory),
            "{source}: {error}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{source}: stopped after {:?}",
            started.elapsed()
        );
    }
    let error = evaluate(&jq("last(range(1e12))"), 200).unwrap_err();
    assert_eq!(
        error.to_string(),
        "jq filter failed at run time: it ran longer than its time limit of 200ms on this event (`filter_timeout`); \
         an endless loop such as `last(range(1e12))` or `until(false; .)`?"
    );
}

#[test]
fn a_cancelled_evaluation_stops_at_its_next_check() {
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    let started = std::time::Instant::now();
    let error = jq("last(range(1e12))")
        .evaluate(
            &Envelope::new(json!(null)),
            &Limits::with_timeout(std::time::Duration::from_secs(60)),
            &|| {
                if started.elapsed() > std::time::Duration::from_millis(100) {
                    cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                cancelled.load(std::sync::atomic::Ordering::Relaxed)
            },
        )
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Cancelled, "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

/// Runs a filter on the pool, as the engine does (built-ins on deep values need its stacks).
fn pooled(filter: &Filter, event: Value) -> Result<Vec<Value>, FilterError> {
    static POOL: std::sync::OnceLock<FilterPool> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| FilterPool::new(2));
    futures::executor::block_on(pool.evaluate(
        filter,
        std::sync::Arc::new(Envelope::new(event)),
        Limits::with_timeout(std::time::Duration::from_secs(30)),
    ))
}

#[test]
fn deep_output_is_refused_and_nothing_overflows() {
    // The old crash: 2,500 levels built one at a time, then converted, dropped and serialised.
    let error = pooled(&jq("reduce range(2500) as $i (0; [.])"), json!(null)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Output, "{error}");
    assert_eq!(
        error.message,
        format!("an output of the filter nests deeper than the limit of {MAX_OUTPUT_DEPTH} levels")
    );
    let at_limit = pooled(
        &jq(&format!(
            "reduce range({}) as $i (0; [.])",
            MAX_OUTPUT_DEPTH - 1
        )),
        json!(null),
    )
    .expect("an output at the depth limit");
    let text = serde_json::to_string(&at_limit[0]).expect("serialises");
    assert_eq!(text.len(), 2 * (MAX_OUTPUT_DEPTH - 1) + 1);
    // Deep intermediate values through every built-in that recurses through them: each ends, or stops at a
    // limit, and the process lives on.
    for source in [
        "reduce range(100000) as $i (0; [.]) | tojson | length",
        "reduce range(100000) as $i (0; [.]) | \"\\(.)\" | length",
        "reduce range(100000) as $i (0; {a: .}) as $v | $v == $v",
        "reduce range(100000) as $i (0; [.]) as $v | [$v, $v] | sort | length",
        "reduce range(100000) as $i (0; {a: .}) | . * . | 1",
        "reduce range(100000) as $i (0; [.]) | contains(.)",
        "reduce range(3000) as $i (0; [.]) | [..] | length",
        "reduce range(10000000) as $i (0; [.]) | tojson | length",
    ] {
        match pooled(&jq(source), json!(null)) {
            Ok(payloads) => assert_eq!(payloads.len(), 1, "{source}"),
            Err(error) => assert!(
                matches!(error.kind, ErrorKind::Memory | ErrorKind::Time),
                "{source}: {error}"
            ),
        }
    }
}

/// Event data decides what `fromjson` parses: a string that sends jaq's parser into a loop that neither ticks nor
/// ends (found by the library comparison below) costs its trigger an error, and the pool replaces the thread and
/// goes on serving.
#[test]
fn event_data_that_sends_fromjson_into_a_loop_fails_alone() {
    let pool = FilterPool::new(1);
    let run = |source: &str, event: Value| {
        futures::executor::block_on(pool.evaluate(
            &jq(source),
            std::sync::Arc::new(Envelope::new(event)),
            Limits::with_timeout(std::time::Duration::from_millis(300)),
        ))
    };
    for source in [".value | fromjson", ".value | tonumber"] {
        let error = run(source, json!({"value": "a,b,c"})).unwrap_err();
        assert!(
            matches!(
                error.kind,
                ErrorKind::Overrun | ErrorKind::Memory | ErrorKind::Time
            ),
            "{source}: {error}"
        );
    }
    assert_eq!(
        run(".value | fromjson", json!({"value": "[1]"})).unwrap(),
        vec![json!([1])]
    );
}

#[test]
fn shared_parts_cannot_make_a_gigantic_output() {
    // 40 steps, 2^40 leaves: refused while converting, long before the memory is touched. (A generous time limit:
    // converting up to the limit takes a while in a debug build.)
    let generous = |source: &str, language: Language| {
        Filter::compile(language, source)
            .expect("compiles")
            .evaluate(
                &Envelope::new(json!({"a": "b"})),
                &Limits::with_timeout(std::time::Duration::from_secs(60)),
                &|| false,
            )
            .unwrap_err()
    };
    let error = generous("reduce range(40) as $i (.; [., .])", Language::Jq);
    assert_eq!(error.kind, ErrorKind::Output, "{error}");
    assert!(error.message.contains("16 MiB"), "{error}");
    let error = generous(r#""x" * 20000000"#, Language::Jq);
    assert_eq!(error.kind, ErrorKind::Output, "{error}");
    let jmes = format!("[@]{}", " | [@, @]".repeat(40));
    let error = generous(&jmes, Language::Jmespath);
    assert_eq!(error.kind, ErrorKind::Output, "{error}");
    // Converting counts against the time limit: a short one stops the conversion cleanly.
    let error = jq("reduce range(40) as $i (.; [., .])")
        .evaluate(
            &Envelope::new(json!({"a": "b"})),
            &Limits::with_timeout(std::time::Duration::from_millis(1)),
            &|| false,
        )
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Time, "{error}");
}

#[test]
fn fromjson_refuses_text_nested_past_its_limit() {
    let source = format!(
        r#"("[" * {n}) + ("]" * {n}) | fromjson"#,
        n = MAX_FROMJSON_DEPTH + 1
    );
    let error = jq(&source).apply(&json!(null)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Raised, "{error}");
    assert!(
        error.message.contains("`fromjson` stops at 10000"),
        "{error}"
    );
    assert_eq!(
        jq(r#""[1, {\"a\": 2}]" | fromjson"#)
            .apply(&json!(null))
            .unwrap(),
        vec![json!([1, {"a": 2}])]
    );
    assert_eq!(
        jq(r#""1 2" | fromjson"#).apply(&json!(null)).unwrap(),
        vec![json!(1), json!(2)]
    );
}

#[test]
fn error_messages_are_bounded() {
    let error = jq("[range(100000)] | error")
        .apply(&json!(null))
        .unwrap_err();
    assert!(error.message.len() < 1100, "{} bytes", error.message.len());
    assert!(error.message.ends_with('…'), "{}", error.message);
    let error = jq(r#"("x" * 100000) | error"#)
        .apply(&json!(null))
        .unwrap_err();
    assert!(error.message.len() < 1100, "{} bytes", error.message.len());
}

#[test]
fn a_deep_recursion_stops_at_the_depth_guard_on_any_thread() {
    // A program nested 5,000 levels deep compiles (on a thread of its own) and nests the interpreter as deep: on
    // a thread with a small stack, the guard stops it; on the pool's, it runs (and its output is refused).
    let nested = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep = jq(&nested);
    let on_small_stack = deep.clone();
    let error = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || on_small_stack.apply(&json!(0)))
        .expect("a thread")
        .join()
        .expect("no overflow")
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Depth, "{error}");
    let error = pooled(&deep, json!(0)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Output, "{error}");
}

#[test]
fn identical_filters_share_one_compiled_program_and_keep_their_own_overrun() {
    let source = "select(.content.to == \"shared-program\")";
    let first = jq(source);
    let second = jq(source);
    assert!(first.shares_program_with(&second));
    assert!(first.shares_program_with(&first.clone()));
    // The same text in another language, or another text, is another program.
    assert!(!jq("length").shares_program_with(&jmespath("length")));
    assert!(!first.shares_program_with(&jq("select(.content.to == \"other\")")));
    // Both filters behave as one compiled alone.
    let event = fixture("tx_taskmgr_valid.json");
    assert_eq!(first.apply(&event).unwrap(), second.apply(&event).unwrap());
    // An overrun is one trigger's: the other trigger with the same filter keeps running it.
    first.mark_overran("on an earlier event it ran too long".to_owned());
    assert!(first.overran().is_some());
    assert_eq!(second.overran(), None);
    assert_eq!(jq(source).overran(), None);
}

#[test]
fn a_program_no_filter_uses_is_freed() {
    let filter = jq("select(.content.to == \"freed-program\")");
    let program = Arc::downgrade(&filter.inner);
    let clone = filter.clone();
    drop(filter);
    assert!(program.upgrade().is_some(), "a clone still uses it");
    drop(clone);
    assert!(program.upgrade().is_none());
    // Compiling it again works and makes a new program.
    assert!(
        jq("select(.content.to == \"freed-program\")")
            .apply(&json!({"content": {"to": "freed-program"}}))
            .is_ok()
    );
}

/// A filter compiled with only the library definitions it reaches gives what the same filter compiled with the
/// whole library gives, for a call of every library definition (arguments `.`, at most 5 outputs, errors caught)
/// and a few filters that define their own functions over library names, on several inputs.
#[test]
fn reachable_library_definitions_behave_as_the_whole_library() {
    let whole = |source: &str| Filter {
        inner: Arc::new(Compiled {
            source: source.to_owned(),
            program: Program::Jq(
                jq::compile_with_whole_library(source).unwrap_or_else(|e| panic!("{source}: {e}")),
            ),
        }),
        overran: Arc::default(),
    };
    let mut sources: Vec<String> = jq::library_signatures()
        .into_iter()
        .filter(|(name, _)| name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        // Side effects on stderr only; both print.
        .filter(|(name, _)| !matches!(*name, "debug" | "stderr"))
        // `"a,b,c" | fromjson` allocates without end in jaq: only the filter pool's threads, which stop at their
        // memory cap, may run it.
        .filter(|(name, _)| !matches!(*name, "tonumber" | "toboolean"))
        .map(|(name, arity)| {
            let call = if arity == 0 {
                name.to_owned()
            } else {
                format!("{name}({})", vec!["."; arity].join("; "))
            };
            format!("try [limit(5; {call})] catch [\"error\", .]")
        })
        .collect();
    sources.extend(
        [
            "def map(f): [.[] | f, 1]; [.[]?] | map(. + 1)",
            "def select(f): .; [.[]? | select(false)]",
            "def length: 7; [length, (.. | numbers)]",
            "@base64 \"x\\(.)\", @json, @html \"\\(.)\"",
            "[paths] | length",
            "to_entries? // \"none\"",
            EXAMPLE_4,
            EXAMPLE_6,
        ]
        .map(str::to_owned),
    );
    let inputs = [
        json!(null),
        json!("a,b,c"),
        json!([3, 1, 2]),
        json!({"a": {"b": [1, "x"]}, "c": 2.5}),
    ];
    let mut compared = 0;
    for source in &sources {
        let shaken = jq(source);
        let whole = whole(source);
        for input in &inputs {
            let started = std::time::Instant::now();
            let envelope = Envelope::new(input.clone());
            let limits = Limits::with_timeout(std::time::Duration::from_millis(20));
            let expected = whole.evaluate(&envelope, &limits, &|| false);
            let found = shaken.evaluate(&envelope, &limits, &|| false);
            let same = match (&found, &expected) {
                // A time limit is where the evaluation happened to be: the kind is what must agree.
                (Err(a), Err(b)) if b.kind == ErrorKind::Time => a.kind == ErrorKind::Time,
                _ => found == expected,
            };
            assert!(same, "{source} on {input}: {found:?} against {expected:?}");
            if started.elapsed() > std::time::Duration::from_secs(2) {
                eprintln!("{source} on {input} took {:?}", started.elapsed());
            }
            compared += 1;
        }
    }
    assert!(compared > 4 * 100, "only {compared} comparisons");
}
