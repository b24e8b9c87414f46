//! Decode and events throughput on real Fabric blocks, side by side in one run with Fabric's own Node protobufs
//! (`@hyperledger/fabric-protos`, run by `bench/node-decode/decode.js` on the same files, sized to the same time).
//!
//! Rows (all on the same blocks):
//! - Rust bare decode: the typed block the daemon works from, decoded as the daemon does (one `BlockDecoder`
//!   per stream, which parses each creator certificate once, from the received bytes without copying them);
//! - Rust full events: decode + `extract` + every envelope written as JSON text (`Event::write_json`),
//!   each Tx/Config `content.data` (configtxlator's JSON of the whole payload) included: everything a Tx trigger
//!   pushes, for every event;
//! - Rust Block trigger: decode + `extract` + the Block event's JSON only: what a Block trigger reads
//!   (the other events' envelopes are never written);
//! - Node bare decode (`decode.js --bare`): the anchor;
//! - Node events: Block/Tx/Contract objects + `JSON.stringify`, without payload JSON.
//!
//! `cargo bench --bench decode` prints a table and the ratios. `-- --seconds N` sets the time per measurement
//! (default 3); `BENCH_BLOCKS=dir[:dir...]` reads the `*.pb` blocks of other folders instead of the fixtures (each
//! folder's blocks in chain order, rendered as their channel's configuration says). The Node side needs `node`
//! and `npm` on PATH; its dependencies are installed with `npm ci` on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chaintrigger::events::{EventType, ExtractOptions, Rendering, extract};
use chaintrigger::fabric::decode::{BlockDecoder, decode_block};

struct Measurement {
    side: &'static str,
    work: &'static str,
    seconds: f64,
    blocks: u64,
    bytes: u64,
    transactions: u64,
    events: u64,
}

impl Measurement {
    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.seconds
    }
}

/// One block file, with the rendering of its channel at that block.
struct Fixture {
    path: PathBuf,
    raw: Bytes,
    options: ExtractOptions,
}

fn main() {
    // `cargo test --benches` runs this too: do the work only when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs: Vec<PathBuf> = match std::env::var("BENCH_BLOCKS") {
        Ok(dirs) => dirs.split(':').map(PathBuf::from).collect(),
        Err(_) => vec![
            root.join("fixtures/fabric-v2.5/blocks"),
            root.join("fixtures/fabric-v3.1/blocks"),
        ],
    };
    let fixtures: Vec<Fixture> = dirs.iter().flat_map(|d| fixture_blocks(d)).collect();
    let budget = Duration::from_secs_f64(seconds);
    let bytes: u64 = fixtures.iter().map(|f| f.raw.len() as u64).sum();
    let transactions: u64 = fixtures
        .iter()
        .map(|f| decode_block(&f.raw).map_or(0, |b| b.transactions.len() as u64))
        .sum();
    println!(
        "decode and events on {} real Fabric blocks ({} bytes, {transactions} transactions) from {}",
        fixtures.len(),
        bytes,
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut decoder = BlockDecoder::new();
    let mut decode = move |raw: &Bytes| {
        decoder
            .decode_bytes(raw.clone())
            .expect("fixture blocks decode")
    };
    let mut results = vec![
        run(
            "decode (bare: the typed block)",
            &fixtures,
            budget,
            |f, _| {
                let block = decode(&f.raw);
                (block.transactions.len() as u64, 0)
            },
        ),
        run(
            "decode + extract + every envelope's JSON text, content.data included",
            &fixtures,
            budget,
            |f, out| {
                let block = decode(&f.raw);
                let events = extract(&block, &f.options);
                for event in &events {
                    out.clear();
                    event.write_json(out);
                    std::hint::black_box(&out);
                }
                (block.transactions.len() as u64, events.len() as u64)
            },
        ),
        run(
            "decode + extract + the Block event's JSON (a Block trigger)",
            &fixtures,
            budget,
            |f, out| {
                let block = decode(&f.raw);
                let events = extract(&block, &f.options);
                for event in events.iter().filter(|e| e.event_type() == EventType::Block) {
                    out.clear();
                    event.write_json(out);
                    std::hint::black_box(&out);
                }
                (block.transactions.len() as u64, 1)
            },
        ),
    ];
    let files: Vec<&Path> = fixtures.iter().map(|f| f.path.as_path()).collect();
    let node_dir = root.join("bench/node-decode");
    for (bare, work) in [
        (true, "@hyperledger/fabric-protos bare decode (the anchor)"),
        (
            false,
            "@hyperledger/fabric-protos decode + events + JSON.stringify, no payload JSON",
        ),
    ] {
        match run_node(&node_dir, &files, seconds, bare, work) {
            Ok(node) => results.push(node),
            Err(e) => eprintln!("Node side skipped: {e}"),
        }
    }
    print_rows(&results);
    if let Some(node) = results.iter().find(|m| m.side == "Node") {
        let ratio = |m: &Measurement, n: fn(&Measurement) -> u64| {
            m.per_second(n(m)) / node.per_second(n(node))
        };
        println!(
            "bare decode, Rust vs Node: {:.1}x blocks/s (goal >= 6x)",
            ratio(&results[0], |m| m.blocks)
        );
        println!(
            "full events incl. content.data (Rust) vs Node bare decode: {:.2}x tx/s ({:.0} vs {:.0} tx/s; goal >= 1x)",
            ratio(&results[1], |m| m.transactions),
            results[1].per_second(results[1].transactions),
            node.per_second(node.transactions)
        );
    }
}

/// The `*.pb` blocks of `dir` in chain order, each with the rendering its channel's last config block sets.
fn fixture_blocks(dir: &Path) -> Vec<Fixture> {
    let mut blocks: Vec<(u64, PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pb"))
        .map(|p| {
            let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            let number = decode_block(&raw)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .number;
            (number, p, raw)
        })
        .collect();
    blocks.sort_by_key(|b| b.0);
    let mut rendering = Rendering::default();
    blocks
        .into_iter()
        .map(|(_, path, raw)| {
            if let Some(config) = decode_block(&raw).ok().and_then(|b| b.config().cloned()) {
                rendering = Rendering::of_config(&config);
            }
            Fixture {
                path,
                raw: Bytes::from(raw),
                options: ExtractOptions {
                    instance_id: "bench".into(),
                    include_invalid: false,
                    rendering,
                },
            }
        })
        .collect()
}

fn run(
    work: &'static str,
    fixtures: &[Fixture],
    budget: Duration,
    mut once: impl FnMut(&Fixture, &mut Vec<u8>) -> (u64, u64),
) -> Measurement {
    let mut out = Vec::with_capacity(1 << 16);
    for fixture in fixtures {
        once(fixture, &mut out);
    }
    let (mut rounds, mut transactions, mut events) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < budget {
        for fixture in fixtures {
            let (t, e) = once(fixture, &mut out);
            transactions += t;
            events += e;
        }
        rounds += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes_per_round: u64 = fixtures.iter().map(|f| f.raw.len() as u64).sum();
    Measurement {
        side: "Rust",
        work,
        seconds,
        blocks: rounds * fixtures.len() as u64,
        bytes: rounds * bytes_per_round,
        transactions,
        events,
    }
}

fn run_node(
    dir: &Path,
    files: &[&Path],
    seconds: f64,
    bare: bool,
    work: &'static str,
) -> Result<Measurement, String> {
    if !dir.join("node_modules/@hyperledger/fabric-protos").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .status()
            .map_err(|e| format!("running npm ci: {e}"))?;
        if !status.success() {
            return Err(format!("npm ci failed: {status}"));
        }
    }
    // A short probe sizes the timed run to about `seconds`.
    let probe = node(dir, files, 20, bare, work)?;
    let per_round = probe.seconds / 20.0;
    let iterations = ((seconds / per_round) as u64).max(20);
    node(dir, files, iterations, bare, work)
}

fn node(
    dir: &Path,
    files: &[&Path],
    iterations: u64,
    bare: bool,
    work: &'static str,
) -> Result<Measurement, String> {
    let mut command = Command::new("node");
    command.arg("decode.js");
    if bare {
        command.arg("--bare");
    }
    let output = command
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
    let blocks = number("blocks")? as u64;
    // The events mode does not count transactions: the same blocks, so the same number per block.
    let transactions = match totals["transactions"].as_f64() {
        Some(t) => t as u64,
        None => 0,
    };
    Ok(Measurement {
        side: "Node",
        work,
        seconds: number("seconds")?,
        blocks,
        bytes: number("bytes")? as u64,
        transactions,
        events: number("events")? as u64,
    })
}

fn print_rows(results: &[Measurement]) {
    println!("| side | work | blocks/s | MB/s | tx/s | events/s |");
    println!("|---|---|---:|---:|---:|---:|");
    let rate = |m: &Measurement, n: u64| {
        if n == 0 {
            "-".to_owned()
        } else {
            format!("{:.0}", m.per_second(n))
        }
    };
    for m in results {
        println!(
            "| {} | {} | {:.0} | {:.1} | {} | {} |",
            m.side,
            m.work,
            m.per_second(m.blocks),
            m.per_second(m.bytes) / 1e6,
            rate(m, m.transactions),
            rate(m, m.events)
        );
    }
}
