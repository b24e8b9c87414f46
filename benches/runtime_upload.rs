//! Memory of concurrent large code uploads: the peak resident memory of a `chaintrigger runtime` process while
//! clients create functions from archives that unpack to ~490 MiB each, all at once.
//!
//! `cargo bench --bench runtime_upload` (env: BENCH_UPLOADS, default 3, at most 4 (the runtime unpacks 4 at
//! once); BENCH_UNPACKED_MIB, default 490, at most 495; BENCH_RUNTIME_BIN, another `chaintrigger` binary to
//! measure instead of this build's, e.g. an older one). The runtime's data goes under cargo's temporary folder.

use std::io::Write as _;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn env_number(name: &str, default: u64, max: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

/// An archive of 10 MiB files (the last one shorter) totalling `mib` MiB, compressible about 8 to 1: every 8 KiB
/// is one random KiB repeated, so the zip stays under the 100 MB limit and far from the bomb ratio.
fn archive(mib: u64) -> BenchResult<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    writer.start_file("index.py", options)?;
    writer.write_all(b"def handler(event, context):\n    return 'big'\n")?;
    let mut rng = rand::rng();
    let mut block = [0u8; 1024];
    let mut left = mib * 1024 * 1024;
    let mut index = 0;
    while left > 0 {
        let size = left.min(10 * 1024 * 1024);
        writer.start_file(format!("data/part-{index:03}.bin"), options)?;
        let mut written = 0;
        while written < size {
            rng.fill_bytes(&mut block);
            for _ in 0..8 {
                let n = (size - written).min(1024) as usize;
                writer.write_all(&block[..n])?;
                written += n as u64;
            }
        }
        left -= size;
        index += 1;
    }
    Ok(writer.finish()?.into_inner())
}

/// Resident and peak resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|line| {
            line.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    chaintrigger::install_crypto_provider();
    let uploads = env_number("BENCH_UPLOADS", 3, 4) as usize;
    let mib = env_number("BENCH_UNPACKED_MIB", 490, 495);
    let binary = std::env::var("BENCH_RUNTIME_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_chaintrigger").to_owned());
    let zip = archive(mib)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&zip);
    let bodies: Vec<String> = (0..uploads)
        .map(|i| {
            serde_json::json!({
                "functionName": format!("big{i}"),
                "runtime": "python3",
                "handler": "index.handler",
                "code": {"zipFile": encoded},
            })
            .to_string()
        })
        .collect();
    drop(encoded);

    let dir = tempfile::Builder::new()
        .prefix("bench-upload-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(&binary)
        .args(["runtime", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("the runtime exited at once")?;
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let created = client
            .post(format!("{url}/2016-08-15/services"))
            .body(r#"{"serviceName":"bench"}"#)
            .send()
            .await;
        if created.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the runtime did not answer".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = memory_kib(pid).map_or(0, |(rss, _)| rss);

    let sampling = tokio::spawn(async move {
        let mut peak = 0;
        while let Some((rss, _)) = memory_kib(pid) {
            peak = peak.max(rss);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak
    });
    let started = Instant::now();
    let calls = bodies.into_iter().map(|body| {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(format!("{url}/2016-08-15/services/bench/functions"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    });
    let statuses = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    let peak_hwm = memory_kib(pid).map_or(0, |(_, hwm)| hwm);
    child.start_kill()?;
    child.wait().await?;
    let sampled = sampling.await.unwrap_or(0);

    println!(
        "| binary | uploads | zip (MiB) | unpacked (MiB) | statuses | wall (s) | RSS idle (MiB) | peak RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {uploads} | {:.1} | {mib} | {:?} | {:.1} | {:.0} | {:.0} |",
        if std::env::var("BENCH_RUNTIME_BIN").is_ok() {
            "BENCH_RUNTIME_BIN"
        } else {
            "this build"
        },
        zip.len() as f64 / 1024.0 / 1024.0,
        statuses,
        elapsed.as_secs_f64(),
        idle as f64 / 1024.0,
        peak_hwm.max(sampled) as f64 / 1024.0,
    );
    Ok(())
}
