//! Warm sync invocations through the bundled runtime's HTTP API, side by side with Google's
//! functions-framework serving the same no-op Python handler, under one load generator: N concurrent
//! keep-alive clients on loopback for a fixed time, after a warm-up.
//!
//! `cargo bench --bench runtime_http` (env: BENCH_CLIENTS, default 8, at most 64; BENCH_SECONDS, default 5,
//! at most 60). functions-framework (pinned in benches/python/requirements.txt) is installed into
//! target/bench-python on first use.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chaintrigger::runtime::limits::FunctionAttributes;
use chaintrigger::runtime::{Runtime, RuntimeConfig};
use tokio_util::sync::CancellationToken;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PYTHON_NOOP: &str = "def handler(event, context):\n    return event\n";
const NODE_NOOP: &str = "exports.handler = (event, context, callback) => callback(null, event);\n";
const FRAMEWORK_NOOP: &str = "def handler(request):\n    return request.get_data()\n";
const WARM_UP: Duration = Duration::from_secs(1);

/// What one target measured.
struct Measurement {
    /// The row's label.
    target: &'static str,
    /// Successful requests in the measured window.
    requests: usize,
    /// Failed requests (transport error, non-2xx, function error, wrong body): a fast failure is no result.
    errors: usize,
    /// The measured window's real length (clients finish their last request after the deadline).
    elapsed: Duration,
    /// Latency of every successful request, sorted, for the percentiles.
    latencies: Vec<Duration>,
}

impl Measurement {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }
}

fn env_number(name: &str, default: u64, max: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn zip_of(name: &str, text: &str) -> BenchResult<Vec<u8>> {
    use std::io::Write as _;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer.start_file(name, zip::write::SimpleFileOptions::default())?;
    writer.write_all(text.as_bytes())?;
    Ok(writer.finish()?.into_inner())
}

/// Sends POSTs with `clients` keep-alive connections: a warm-up, then `duration` of measured requests.
async fn load(
    target: &'static str,
    url: String,
    clients: usize,
    duration: Duration,
) -> Measurement {
    let run = |until: Instant| {
        let url = url.clone();
        async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("a plain HTTP client builds");
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < until {
                let started = Instant::now();
                let ok = match client.post(&url).body("{}").send().await {
                    Ok(response) => {
                        let status = response.status();
                        let failed = response.headers().contains_key("x-fc-error-type");
                        matches!(response.bytes().await, Ok(body) if &body[..] == b"{}")
                            && status.is_success()
                            && !failed
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.push(started.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }
    };
    let warm_until = Instant::now() + WARM_UP;
    futures::future::join_all((0..clients).map(|_| tokio::spawn(run(warm_until)))).await;
    let started = Instant::now();
    let until = started + duration;
    let results = futures::future::join_all((0..clients).map(|_| tokio::spawn(run(until)))).await;
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for (client_latencies, client_errors) in results.into_iter().flatten() {
        latencies.extend(client_latencies);
        errors += client_errors;
    }
    latencies.sort();
    Measurement {
        target,
        requests: latencies.len(),
        errors,
        elapsed,
        latencies,
    }
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// pip-installs functions-framework into target/bench-python when missing.
fn install_functions_framework() -> BenchResult<PathBuf> {
    let target = repository().join("target/bench-python");
    if !target.join("functions_framework/__init__.py").exists() {
        let status = std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&target)
            .arg("-r")
            .arg(repository().join("benches/python/requirements.txt"))
            .status()?;
        if !status.success() {
            return Err(format!("installing functions-framework failed: {status}").into());
        }
    }
    Ok(target)
}

/// Starts functions-framework on a free loopback port and waits until it answers.
async fn start_functions_framework(dir: &Path) -> BenchResult<(tokio::process::Child, String)> {
    let packages = install_functions_framework()?;
    let source = dir.join("main.py");
    std::fs::write(&source, FRAMEWORK_NOOP)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = tokio::process::Command::new("python3")
        .args([
            "-m",
            "functions_framework",
            "--target",
            "handler",
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .arg("--source")
        .arg(&source)
        .env("PYTHONPATH", &packages)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}/");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client.post(&url).body("{}").send().await.is_ok() {
            return Ok((child, url));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("functions-framework did not answer within 30 s".into())
}

async fn bench() -> BenchResult<()> {
    let clients = env_number("BENCH_CLIENTS", 8, 64) as usize;
    let duration = Duration::from_secs(env_number("BENCH_SECONDS", 5, 60));
    let dir = tempfile::Builder::new()
        .prefix("bench-runtime-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;

    let mut config = RuntimeConfig::new(dir.path().join("data"));
    config.max_concurrency = 100;
    let runtime = Runtime::open(config).await?;
    let attributes = |runtime: &str| FunctionAttributes {
        runtime: Some(runtime.into()),
        handler: Some("index.handler".into()),
        ..FunctionAttributes::default()
    };
    runtime
        .deploy(
            "bench",
            "python_noop",
            attributes("python3"),
            &zip_of("index.py", PYTHON_NOOP)?,
        )
        .await?;
    runtime
        .deploy(
            "bench",
            "node_noop",
            attributes("nodejs20"),
            &zip_of("index.js", NODE_NOOP)?,
        )
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let runtime = runtime.clone();
        let shutdown = shutdown.clone();
        async move { runtime.run(listener, shutdown).await }
    });
    let (framework, framework_url) = start_functions_framework(dir.path()).await?;

    let invoke = |function: &str| {
        format!("{base}/2016-08-15/services/bench/functions/{function}/invocations")
    };
    let measurements = vec![
        load(
            "chaintrigger runtime, Python no-op",
            invoke("python_noop"),
            clients,
            duration,
        )
        .await,
        load(
            "chaintrigger runtime, Node.js no-op",
            invoke("node_noop"),
            clients,
            duration,
        )
        .await,
        load(
            "functions-framework 3.10.2 (gunicorn), Python no-op",
            framework_url,
            clients,
            duration,
        )
        .await,
    ];
    drop(framework);
    shutdown.cancel();
    server.await??;

    println!(
        "\n{clients} keep-alive clients, {} s per target after a {} s warm-up, loopback\n",
        duration.as_secs(),
        WARM_UP.as_secs()
    );
    println!("| target | requests/s | p50 (ms) | p99 (ms) | errors |");
    println!("|---|---:|---:|---:|---:|");
    for m in &measurements {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} |",
            m.target,
            m.requests as f64 / m.elapsed.as_secs_f64(),
            m.percentile(0.50),
            m.percentile(0.99),
            m.errors
        );
    }
    Ok(())
}

fn main() -> BenchResult<()> {
    chaintrigger::install_crypto_provider();
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
