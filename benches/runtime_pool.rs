//! Warm invocation round trip through `Pool::invoke`: a no-op handler in python3 and in node, on an instance
//! that is already running, and a cold start (interpreter, shim, handler module, invocation). Run with
//! `cargo bench --bench runtime_pool`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use chaintrigger::runtime::pool::{
    FunctionSpec, InvokeOutcome, InvokeRequest, Language, Pool, PoolConfig,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn spec(code_dir: &Path, language: Language, handler: &str) -> FunctionSpec {
    FunctionSpec {
        service: "bench".to_owned(),
        function: format!("{language:?}"),
        qualifier: "LATEST".to_owned(),
        language,
        runtime_name: String::new(),
        handler: handler.to_owned(),
        initializer: None,
        initialization_timeout: Duration::from_secs(3),
        timeout: Duration::from_secs(3),
        memory_mb: 256,
        environment: BTreeMap::new(),
        code_dir: code_dir.to_path_buf(),
        code_checksum: "1".to_owned(),
        account_id: "1234567890123456".to_owned(),
        region: "cn-hangzhou".to_owned(),
        log_project: String::new(),
        log_store: String::new(),
        credentials: None,
    }
}

fn copy_fixture(language_dir: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/functions")
        .join(language_dir);
    std::fs::create_dir_all(to).expect("code directory");
    for entry in std::fs::read_dir(from).expect("fixture directory") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a fixture");
    }
}

fn warm_invocation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::Builder::new()
        .prefix("pool-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("traversable directory");
    copy_fixture("python", &dir.path().join("python"));
    copy_fixture("node", &dir.path().join("node"));
    let pool = runtime
        .block_on(async { Pool::new(PoolConfig::new(dir.path().join("data"))) })
        .expect("pool");
    let cases = [
        (
            "python3 no-op",
            spec(
                &dir.path().join("python"),
                Language::Python3,
                "index.return_none",
            ),
        ),
        (
            "node no-op",
            spec(
                &dir.path().join("node"),
                Language::Nodejs,
                "index.returnString",
            ),
        ),
    ];
    let mut group = c.benchmark_group("runtime pool warm invocation");
    for (name, spec) in &cases {
        let invoke = || {
            runtime.block_on(pool.invoke(
                spec,
                InvokeRequest {
                    request_id: "bench".to_owned(),
                    payload: Bytes::from_static(br#"{"block":1}"#),
                    log_tail: false,
                },
            ))
        };
        let first = invoke().expect("first invocation starts the instance");
        assert!(matches!(first.outcome, InvokeOutcome::Success { .. }));
        group.bench_function(*name, |b| {
            b.iter(|| black_box(invoke().expect("invocation")))
        });
    }
    group.finish();

    // Cold start: the instance is evicted before each call, so every call starts an interpreter, loads the
    // shim and the handler module, then invokes.
    let mut cold = c.benchmark_group("runtime pool cold start");
    cold.sample_size(10);
    for (name, spec) in &cases {
        cold.bench_function(*name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    pool.evict(&spec.service, &spec.function).await;
                    let invocation = pool
                        .invoke(
                            spec,
                            InvokeRequest {
                                request_id: "bench".to_owned(),
                                payload: Bytes::from_static(br#"{"block":1}"#),
                                log_tail: false,
                            },
                        )
                        .await
                        .expect("invocation");
                    black_box(invocation)
                })
            })
        });
    }
    cold.finish();
    runtime.block_on(pool.shutdown());
}

criterion_group!(benches, warm_invocation);
criterion_main!(benches);
