//! Decode + extract throughput on the real Fabric v2.5 blocks in `fixtures/`, side by side with Fabric's own
//! Node decoder (`@hyperledger/fabric-protos`, run by `bench/node-decode/decode.js`) on the same bytes in the
//! same run; then the Rust side on the real Fabric v3.1 (SmartBFT) blocks in the v3 rendering.
//!
//! `cargo bench --bench decode` prints a table; `--seconds N` sets the time per Rust measurement (default 3).
//! The Node side needs `node` and `npm` on PATH; its dependencies are installed with `npm ci` on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chaintrigger::events::{ExtractOptions, Rendering, extract};
use chaintrigger::fabric::decode::decode_block;

struct Measurement {
    side: &'static str,
    work: &'static str,
    seconds: f64,
    blocks: u64,
    bytes: u64,
    events: u64,
}

impl Measurement {
    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.seconds
    }
}

fn main() {
    let seconds = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = fixture_blocks(&root.join("fixtures/fabric-v2.5/blocks"));
    let blocks: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display())))
        .collect();
    let budget = Duration::from_secs_f64(seconds);

    let mut results = vec![
        run(
            "Rust",
            "decode_block (typed block, no JSON)",
            &blocks,
            budget,
            |raw| {
                let block = decode_block(raw).expect("fixture blocks decode");
                (block.transactions.len() as u64, 0)
            },
        ),
        run(
            "Rust",
            "decode + extract + JSON text (full protolator data)",
            &blocks,
            budget,
            |raw| decode_extract_json(raw, &ExtractOptions::default()),
        ),
    ];
    // Rust's first measurement counts transactions, not events.
    results[0].events = 0;

    match run_node(root, &files, seconds) {
        Ok(node) => results.push(node),
        Err(e) => eprintln!("Node side skipped: {e}"),
    }
    print_table(&results, blocks.len());

    let v3_files = fixture_blocks(&root.join("fixtures/fabric-v3.1/blocks"));
    let v3_blocks: Vec<Vec<u8>> = v3_files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display())))
        .collect();
    let v3_options = ExtractOptions {
        rendering: Rendering::V3,
        ..ExtractOptions::default()
    };
    let v3 = [
        run(
            "Rust",
            "decode_block (typed block, no JSON)",
            &v3_blocks,
            budget,
            |raw| {
                let block = decode_block(raw).expect("fixture blocks decode");
                (0, block.transactions.len() as u64)
            },
        ),
        run(
            "Rust",
            "decode + extract + JSON text (full protolator data, v3 rendering)",
            &v3_blocks,
            budget,
            |raw| decode_extract_json(raw, &v3_options),
        ),
    ];
    println!();
    println!(
        "decode throughput on {} real Fabric v3.1 blocks (fixtures/fabric-v3.1/blocks, SmartBFT)",
        v3_blocks.len()
    );
    print_rows(&v3);
}

/// Decodes a block, extracts its events and serializes each envelope: (events, JSON bytes).
fn decode_extract_json(raw: &[u8], options: &ExtractOptions) -> (u64, u64) {
    let block = decode_block(raw).expect("fixture blocks decode");
    let events = extract(&block, options);
    let mut json = 0;
    for event in &events {
        json += serde_json::to_vec(event.envelope())
            .expect("envelopes serialize")
            .len();
    }
    (events.len() as u64, json as u64)
}

fn fixture_blocks(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pb"))
        .collect();
    files.sort();
    files
}

fn run(
    side: &'static str,
    work: &'static str,
    blocks: &[Vec<u8>],
    budget: Duration,
    mut once: impl FnMut(&[u8]) -> (u64, u64),
) -> Measurement {
    for raw in blocks {
        once(raw);
    }
    let (mut rounds, mut events, mut json) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < budget {
        for raw in blocks {
            let (e, j) = once(raw);
            events += e;
            json += j;
        }
        rounds += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(json);
    let bytes_per_round: u64 = blocks.iter().map(|b| b.len() as u64).sum();
    Measurement {
        side,
        work,
        seconds,
        blocks: rounds * blocks.len() as u64,
        bytes: rounds * bytes_per_round,
        events,
    }
}

fn run_node(root: &Path, files: &[PathBuf], seconds: f64) -> Result<Measurement, String> {
    let dir = root.join("bench/node-decode");
    if !dir.join("node_modules/@hyperledger/fabric-protos").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("running npm ci: {e}"))?;
        if !status.success() {
            return Err(format!("npm ci failed: {status}"));
        }
    }
    // A short probe sizes the timed run to about `seconds`.
    let probe = node(&dir, files, 20)?;
    let per_round = probe.seconds / 20.0;
    let iterations = ((seconds / per_round) as u64).max(20);
    node(&dir, files, iterations)
}

fn node(dir: &Path, files: &[PathBuf], iterations: u64) -> Result<Measurement, String> {
    let output = Command::new("node")
        .arg("decode.js")
        .arg(iterations.to_string())
        .args(files)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("running node: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "node failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let totals: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("node printed no JSON totals: {e}"))?;
    let number = |k: &str| {
        totals[k]
            .as_f64()
            .ok_or_else(|| format!("node totals lack {k}"))
    };
    Ok(Measurement {
        side: "Node",
        work: "@hyperledger/fabric-protos decode to events + JSON.stringify (no payload JSON)",
        seconds: number("seconds")?,
        blocks: number("blocks")? as u64,
        bytes: number("bytes")? as u64,
        events: number("events")? as u64,
    })
}

fn print_table(results: &[Measurement], block_files: usize) {
    println!(
        "decode throughput on {block_files} real Fabric v2.5 blocks (fixtures/fabric-v2.5/blocks)"
    );
    print_rows(results);
    if let (Some(rust), Some(node)) = (results.get(1), results.iter().find(|m| m.side == "Node")) {
        println!(
            "Rust decode+extract+JSON vs Node decode+events: {:.1}x blocks/s",
            rust.per_second(rust.blocks) / node.per_second(node.blocks)
        );
    }
}

fn print_rows(results: &[Measurement]) {
    println!(
        "{:<5} {:<80} {:>10} {:>8} {:>11}",
        "side", "work", "blocks/s", "MB/s", "events/s"
    );
    for m in results {
        let events = if m.events == 0 {
            "-".to_owned()
        } else {
            format!("{:.0}", m.per_second(m.events))
        };
        println!(
            "{:<5} {:<80} {:>10.0} {:>8.1} {:>11}",
            m.side,
            m.work,
            m.per_second(m.blocks),
            m.per_second(m.bytes) / 1e6,
            events
        );
    }
}
