//! Warm sync invocations of a no-op Python handler under `wrk`, side by side in one run:
//!
//! - the floor: a minimal keep-alive HTTP/1.1 server (this process, one thread per connection, a fixed `{}`
//!   answer): what loopback HTTP costs on this machine with no work behind it;
//! - the HTTP stack alone: axum on hyper and tokio echoing the body with no work behind it (this process, a tokio
//!   runtime of its own), twice: served by the runtime's own accept loop (`chaintrigger::runtime::serve`), and by
//!   `axum::serve`, whose connections tokio reschedules each time they wake themselves;
//! - `chaintrigger runtime` (this build's binary, a process of its own) running the handler;
//! - the same with an older binary, when `BENCH_BASE_BIN` names one (e.g. built from an earlier commit);
//! - Google's functions-framework (gunicorn, 1 worker, 8 threads) serving the same handler.
//!
//! Each target gets the same `wrk` load (`POST` of `{}`, keep-alive) with 1 connection, then with 8, one target
//! after the other, `BENCH_ROUNDS` times (default 2), so every target sees the same machine. Before measuring,
//! one request checks the answer (200, body `{}`, no `X-Fc-Error-Type`); `wrk` counts non-2xx answers, which are
//! reported as errors.
//!
//! `cargo bench --bench runtime_wrk` (env: BENCH_SECONDS per measurement, default 5; BENCH_ROUNDS; BENCH_BASE_BIN).
//! Needs `wrk` on PATH (`apt-get install wrk`); functions-framework is installed into target/bench-python on first
//! use, as for `runtime_http`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PYTHON_NOOP: &str = "def handler(event, context):\n    return event\n";
const FRAMEWORK_NOOP: &str = "def handler(request):\n    return request.get_data()\n";
const INVOKE_PATH: &str = "/2016-08-15/services/bench/functions/noop/invocations";

fn env_number(name: &str, default: u64, max: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed when the bench ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The floor: answers every request on a keep-alive connection with `{}`, reading exactly the request.
fn start_floor() -> BenchResult<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_floor(stream));
        }
    });
    Ok(format!("http://127.0.0.1:{port}/"))
}

fn serve_floor(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if writer
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
            )
            .is_err()
        {
            return;
        }
    }
}

/// How the HTTP stack alone is served.
#[derive(Clone, Copy)]
enum Serve {
    /// The runtime's accept loop.
    Runtime,
    /// `axum::serve`.
    Axum,
}

/// The HTTP stack alone: axum and hyper (a multi-threaded tokio runtime of its own, `TCP_NODELAY` on accepted
/// connections, one route echoing the body). What the runtime's framework costs per request before any work of
/// the runtime's own: between the floor and the runtime.
fn start_http_stack(serve: Serve) -> BenchResult<String> {
    use axum::serve::ListenerExt as _;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Runtime::new() else {
            return;
        };
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let app = axum::Router::new().route(
                "/{*rest}",
                axum::routing::post(|body: bytes::Bytes| async move { body }),
            );
            match serve {
                Serve::Runtime => {
                    let listener = chaintrigger::runtime::peer::PeerListener::new(listener, None);
                    chaintrigger::runtime::serve::serve(
                        listener,
                        app,
                        tokio_util::sync::CancellationToken::new(),
                        std::time::Duration::from_secs(1),
                    )
                    .await;
                }
                Serve::Axum => {
                    let listener = listener.tap_io(|stream| {
                        let _ = stream.set_nodelay(true);
                    });
                    let _ = axum::serve(listener, app).await;
                }
            }
        });
    });
    Ok(format!("http://127.0.0.1:{port}{INVOKE_PATH}"))
}

/// Starts `bin runtime` with the no-op function declared in a functions folder.
fn start_runtime(bin: &Path, dir: &Path) -> BenchResult<(Killed, String)> {
    let function = dir.join("functions/bench/noop");
    std::fs::create_dir_all(&function)?;
    std::fs::write(function.join("index.py"), PYTHON_NOOP)?;
    std::fs::write(
        function.join("function.toml"),
        "runtime = \"python3\"\nhandler = \"index.handler\"\ntimeout = 10\nmemorySize = 128\n",
    )?;
    let port = free_port()?;
    let child = Command::new(bin)
        .arg("runtime")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--functions")
        .arg(dir.join("functions"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("runtime.log"))?)
        .spawn()?;
    Ok((
        Killed(child),
        format!("http://127.0.0.1:{port}{INVOKE_PATH}"),
    ))
}

/// Starts functions-framework (installed as `runtime_http` does) on a free port.
fn start_functions_framework(dir: &Path) -> BenchResult<(Killed, String)> {
    let packages = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-python");
    if !packages.join("functions_framework/__init__.py").exists() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&packages)
            .arg("-r")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python/requirements.txt"))
            .status()?;
        if !status.success() {
            return Err(format!("installing functions-framework failed: {status}").into());
        }
    }
    let source = dir.join("main.py");
    std::fs::write(&source, FRAMEWORK_NOOP)?;
    let port = free_port()?;
    let child = Command::new("python3")
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
        .stderr(Stdio::null())
        .spawn()?;
    Ok((Killed(child), format!("http://127.0.0.1:{port}/")))
}

/// Waits until `url` answers a POST of `{}` with 200, body `{}` and no function error.
async fn wait_ready(client: &reqwest::Client, url: &str) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match client.post(url).body("{}").send().await {
            Ok(response) => {
                let status = response.status();
                let failed = response.headers().get("x-fc-error-type").cloned();
                let body = response.bytes().await.unwrap_or_default();
                if status.is_success() && failed.is_none() && &body[..] == b"{}" {
                    return Ok(());
                }
                last = format!("{status} {failed:?} {}", String::from_utf8_lossy(&body));
            }
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{url} is not ready after 60 s: {last}").into())
}

/// What `wrk` reported for one target.
struct Row {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk(url: &str, connections: u64, seconds: u64, script: &Path) -> BenchResult<Row> {
    let output = Command::new("wrk")
        .args(["-t1", "--latency"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()?;
    if !output.status.success() {
        return Err(format!("wrk failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let value_after = |prefix: &str| -> Option<&str> {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    let millis = |text: &str| -> f64 {
        let (number, factor) = if let Some(n) = text.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = text.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = text.strip_suffix('s') {
            (n, 1000.0)
        } else {
            (text, f64::NAN)
        };
        number.parse::<f64>().map_or(f64::NAN, |n| n * factor)
    };
    let errors = value_after("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        + value_after("Socket errors:").map_or(0, |rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        });
    Ok(Row {
        requests_per_second: value_after("Requests/sec:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{text}"))?,
        p50_ms: value_after("50%").map_or(f64::NAN, millis),
        p99_ms: value_after("99%").map_or(f64::NAN, millis),
        errors,
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

async fn bench() -> BenchResult<()> {
    let seconds = env_number("BENCH_SECONDS", 5, 60);
    let rounds = env_number("BENCH_ROUNDS", 2, 10);
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = \"{}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )?;

    let mut targets: Vec<(String, String)> = vec![(
        "floor: minimal keep-alive HTTP server".into(),
        start_floor()?,
    )];
    targets.push((
        "HTTP stack alone: axum echoing the body, the runtime's accept loop".into(),
        start_http_stack(Serve::Runtime)?,
    ));
    targets.push((
        "HTTP stack alone: axum echoing the body, axum::serve".into(),
        start_http_stack(Serve::Axum)?,
    ));
    let mut children = Vec::new();
    let this_dir = dir.path().join("this");
    let (child, url) = start_runtime(Path::new(env!("CARGO_BIN_EXE_chaintrigger")), &this_dir)?;
    children.push(child);
    targets.push(("chaintrigger runtime, this build, Python no-op".into(), url));
    if let Ok(base) = std::env::var("BENCH_BASE_BIN") {
        let (child, url) = start_runtime(Path::new(&base), &dir.path().join("base"))?;
        children.push(child);
        targets.push((format!("chaintrigger runtime, {base}, Python no-op"), url));
    }
    let (child, url) = start_functions_framework(dir.path())?;
    children.push(child);
    targets.push(("functions-framework (gunicorn), Python no-op".into(), url));

    let client = reqwest::Client::new();
    for (_, url) in &targets {
        wait_ready(&client, url).await?;
    }
    println!(
        "runtime_wrk: wrk -t1 -d{seconds}s, POST {{}}, keep-alive; {rounds} round(s), targets in turn"
    );
    for round in 1..=rounds {
        for connections in [1, 8] {
            println!(
                "\nround {round}, {connections} connection(s), load average before: {}",
                load_average()
            );
            println!("| target | requests/s | p50 (ms) | p99 (ms) | errors |");
            println!("|---|---:|---:|---:|---:|");
            for (label, url) in &targets {
                let row = wrk(url, connections, seconds, &script)?;
                println!(
                    "| {label} | {:.0} | {:.3} | {:.3} | {} |",
                    row.requests_per_second, row.p50_ms, row.p99_ms, row.errors
                );
            }
        }
    }
    println!("\nload average after: {}", load_average());
    drop(children);
    Ok(())
}

fn main() -> BenchResult<()> {
    // `cargo test --benches` runs this too: do the work only when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(bench())
}
