//! Filter throughput on a real-shaped Tx envelope (fixtures/filters/tx_taskmgr_valid.json), jq and JMESPath:
//! evaluated on the calling thread (with the budget's checks), and through the filter pool as the engine does.

use std::sync::Arc;

use chaintrigger::filter::{Envelope, Filter, FilterPool, Language, Limits};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn envelope() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/filters/tx_taskmgr_valid.json"
    );
    let text = std::fs::read_to_string(path).expect("the filter fixture is part of the repository");
    serde_json::from_str(&text).expect("the filter fixture is valid JSON")
}

fn filters(c: &mut Criterion) {
    let event = envelope();
    let cases = [
        (
            "jq/select_whole_envelope",
            Language::Jq,
            r#"select(.content.to=="taskmgr" and .content.state=="VALID")"#,
        ),
        (
            "jq/baas_example_5",
            Language::Jq,
            r#"select(.content.state=="VALID" and .content.to=="taskmgr") | .content.data.data.actions.[0].payload.action.proposal_response_payload.extension.results.ns_rwset[] | select(.namespace=="taskmgr") | .rwset.writes[] | select(.key=="special_key")"#,
        ),
        (
            "jq/no_match",
            Language::Jq,
            r#"select(.content.to=="nobody")"#,
        ),
        (
            "jmespath/select_whole_envelope",
            Language::Jmespath,
            "content.to == 'taskmgr' && content.state == 'VALID'",
        ),
        (
            "jmespath/special_key",
            Language::Jmespath,
            "content.data.data.actions[0].payload.action.proposal_response_payload.extension.results.ns_rwset[?namespace=='taskmgr'].rwset.writes[] | [?key=='special_key'] | [0]",
        ),
        (
            "jmespath/no_match",
            Language::Jmespath,
            "content.to == 'nobody'",
        ),
    ];
    let prepared = Envelope::new(event.clone());
    let shared = Arc::new(Envelope::new(event.clone()));
    let pool = FilterPool::new(FilterPool::machine_size());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the pool's futures");
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(1));
    for (name, language, source) in cases {
        let filter = Filter::compile(language, source).expect("benchmark filters compile");
        // `apply` converts the envelope for this filter alone; `apply_to` reuses the conversion shared by every
        // trigger that filters the same event (made once, outside the loop).
        group.bench_function(format!("{name}/apply"), |b| {
            b.iter(|| filter.apply(std::hint::black_box(&event)))
        });
        group.bench_function(format!("{name}/apply_to_prepared"), |b| {
            b.iter(|| filter.apply_to(std::hint::black_box(&prepared)))
        });
        // What a trigger worker does per event: hand the prepared envelope to a pool thread and await the answer.
        group.bench_function(format!("{name}/pool"), |b| {
            b.iter(|| {
                runtime.block_on(pool.evaluate(&filter, Arc::clone(&shared), Limits::default()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, filters);
criterion_main!(benches);
