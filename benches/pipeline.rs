//! End to end: the peer simulator (in this process, TLS on loopback) -> `chaintrigger serve` (the real binary, a
//! child process) -> the bundled runtime -> a no-op Python handler.
//!
//! 1. Throughput and added latency of one Tx trigger (no filter: whole envelopes, `content.data` included), once
//!    with Sync and once with Async invocation:
//!    - backlog: the chain holds `BENCH_BACKLOG` generated blocks before the daemon starts; the trigger starts at
//!      the first of them; events/s = handler starts per second (first to last), and the daemon's own push rate
//!      (its `delivered` count over time, from the admin API);
//!    - paced: then `BENCH_PACED` blocks are appended at `BENCH_RATE` blocks/s, each append timestamped; added
//!      latency = the handler's first statement (`time.time_ns()`) minus the moment the block was appended to the
//!      simulator. Both clocks are this machine's CLOCK_REALTIME, so the difference is meaningful; it includes
//!      the Deliver transfer over TLS, so it bounds "block received -> handler started" from above;
//!    - meanwhile a stall probe (a thread of this process that only sleeps 1 ms at a time) notes every time it
//!      wakes more than 2 ms late, and the machine's hypervisor steal time is read from /proc/stat: a paced
//!      event's slow stage is then told apart from the machine stopping as a whole while it was on its way.
//! 2. Memory: the daemon's RSS (VmRSS and peak VmHWM from /proc) with `BENCH_TRIGGERS` Block triggers on one
//!    channel (a jq filter that never matches, so nothing is pushed: what is measured is the per-trigger cost of
//!    following the channel), next to the same daemon with one trigger.
//!
//! 3. Catch-up: the chain holds `BENCH_CATCHUP` generated blocks (default 10,000) before the daemon starts; one
//!    Block trigger starts at block 0, with a jq filter that never matches (nothing is pushed), so the daemon's
//!    real path is measured: Deliver over TLS from the simulator, decode, data hash check, events, the filter,
//!    the trigger's position committed to SQLite. Blocks/s = blocks from the first position seen past block 0
//!    to the chain's head, over that time (the admin API polled every 5 ms; the daemon's start-up excluded).
//!
//! `cargo bench --bench pipeline` prints one table per part. Env: BENCH_BACKLOG (default 1000 blocks),
//! BENCH_PACED (default 300 blocks), BENCH_RATE (default 50 blocks/s), BENCH_TRIGGERS (default 1000),
//! BENCH_CATCHUP (default 10000 blocks), BENCH_PARTS (`pipeline,memory,catchup`, the default, or some of them),
//! BENCH_BASE_BIN (another `chaintrigger` binary, e.g. one built from an earlier commit: the memory and catch-up
//! rows are then measured for both, one after the other, in this run).
//! The handler reports its start time on its log (`STAMP <ns> <event id>`), which the runtime writes to
//! `pool/logs/bench/noop.log` in its data folder: no file the sandboxed handler would need to be allowed to write.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chaintrigger::admin::TriggerStatus;
use chaintrigger::events::{EventType, ExtractOptions, extract};
use chaintrigger::fabric::decode::decode_block;
use chaintrigger::peersim::pki::TestCa;
use chaintrigger::peersim::{self, PeerSim, PeerSimConfig, PeerSimHandle, ServerTls};
use tokio_util::sync::CancellationToken;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PEER_NAME: &str = "peer0.bench";
const TOKEN: &str = "bench-admin-token-0123456789abcdef";
const PYTHON_NOOP: &str = r#"import time

def handler(event, context):
    started = time.time_ns()
    start = event.find(b'"id":"') + 6
    print("STAMP %d %s" % (started, event[start:event.find(b'"', start)].decode()))
    return ""
"#;
/// The longest any phase may take before the bench gives up (a stuck daemon must not hang the bench).
const PHASE_LIMIT: Duration = Duration::from_secs(600);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The simulator, serving TLS on loopback until dropped.
struct Chain {
    handle: PeerSimHandle,
    address: std::net::SocketAddr,
    ca_pem: String,
    shutdown: CancellationToken,
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_chain(generated: u64) -> BenchResult<Chain> {
    let ca = TestCa::new("tlsca.bench", "bench")?;
    let server = ca.issue(PEER_NAME, &[PEER_NAME])?;
    let sim = PeerSim::new(PeerSimConfig {
        tls: Some(ServerTls {
            cert_pem: Bytes::from(server.cert_pem),
            key_pem: Bytes::from(server.key_pem),
            client_ca_pem: None,
        }),
        ..PeerSimConfig::from_fixtures()
    })?;
    let handle = sim.handle();
    for _ in 0..generated {
        handle.generate_block()?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(peersim::run(listener, sim, shutdown.clone()));
    Ok(Chain {
        handle,
        address,
        ca_pem: ca.cert_pem().to_owned(),
        shutdown,
    })
}

/// `chaintrigger serve` as a child process, killed when dropped.
struct Daemon {
    child: Child,
    admin: String,
    client: reqwest::Client,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> BenchResult<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes the configuration (the channel on `chain`, then `triggers`) and starts the daemon; returns once its
/// admin API answers.
async fn start_daemon(
    bin: &Path,
    dir: &Path,
    chain: &Chain,
    runtime: bool,
    triggers: &str,
) -> BenchResult<Daemon> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fabric-v2.5/msp");
    std::fs::write(dir.join("tls-ca.pem"), &chain.ca_pem)?;
    if runtime {
        let function = dir.join("functions/bench/noop");
        std::fs::create_dir_all(&function)?;
        std::fs::write(function.join("index.py"), PYTHON_NOOP)?;
        std::fs::write(
            function.join("function.toml"),
            "runtime = \"python3\"\nhandler = \"index.handler\"\ntimeout = 30\n",
        )?;
    }
    let port = free_port()?;
    let config = format!(
        r#"instance_id = "csi-bench"
database = "chaintrigger.db"

[admin]
listen = "127.0.0.1:{port}"
token = {{ env = "BENCH_ADMIN_TOKEN" }}

[runtime]
enabled = {runtime}
listen = "127.0.0.1:0"
data_dir = "runtime"
{functions}

[[channels]]
name = "mychannel"
msp_id = "Org1MSP"
certificate = "{cert}"
key = "{key}"

[[channels.peers]]
address = "{address}"
tls_ca = "tls-ca.pem"
server_name = "{PEER_NAME}"

{triggers}"#,
        functions = if runtime {
            "functions = \"functions\""
        } else {
            ""
        },
        cert = fixtures.join("user1_signcert.pem").display(),
        key = fixtures.join("user1_key.pem").display(),
        address = chain.address,
    );
    let path = dir.join("chaintrigger.toml");
    std::fs::write(&path, config)?;
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .env("BENCH_ADMIN_TOKEN", TOKEN)
        // The per-event stage timings the paced part breaks its latency down with.
        .env("RUST_LOG", "warn,chaintrigger::stages=debug")
        .env("CHAINTRIGGER_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let daemon = Daemon {
        child,
        admin: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        dir: dir.to_owned(),
    };
    let started = Instant::now();
    loop {
        let up = daemon
            .client
            .get(format!("{}/healthz", daemon.admin))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return Ok(daemon);
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the daemon did not answer within 60 s; see {}",
                dir.join("daemon.log").display()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Daemon {
    async fn triggers(&self) -> BenchResult<Vec<TriggerStatus>> {
        #[derive(serde::Deserialize)]
        struct List {
            triggers: Vec<TriggerStatus>,
        }
        let list: List = self
            .client
            .get(format!("{}/v1/triggers", self.admin))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(list.triggers)
    }

    /// VmRSS and VmHWM in KiB.
    fn memory(&self) -> BenchResult<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// The daemon's CPU time so far (user + system, every thread).
    fn cpu_time(&self) -> BenchResult<Duration> {
        process_cpu_time(&self.child.id().to_string())
    }

    /// Handler start times by event id, from the function's log.
    fn stamps(&self) -> HashMap<String, u128> {
        let log = chaintrigger::runtime::RuntimeConfig::new(self.dir.join("runtime"))
            .pool
            .data_dir
            .join("logs/bench/noop.log");
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let rest = &line[line.find("STAMP ")? + 6..];
                let (ns, id) = rest.split_once(' ')?;
                Some((id.trim().to_owned(), ns.parse().ok()?))
            })
            .collect()
    }

    /// The daemon's stage timings by event id (its `chaintrigger::stages` log lines).
    fn stage_marks(&self) -> HashMap<String, StageMarks> {
        let text = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        text.lines()
            .filter(|line| line.contains("\"chaintrigger::stages\""))
            .filter_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                let micros = |field: &str| value[field].as_u64().map(|us| us as f64 / 1e3);
                Some((
                    value["event"].as_str()?.to_owned(),
                    StageMarks {
                        received_ns: u128::from(value["received_unix_ns"].as_u64()?),
                        decode: micros("decode_us")?,
                        wait: micros("wait_us")?,
                        filter: micros("filter_us")?,
                        push: micros("push_us")?,
                        commit: micros("commit_us")?,
                    },
                ))
            })
            .collect()
    }

    fn check_alive(&mut self) -> BenchResult<()> {
        if let Some(status) = self.child.try_wait()? {
            return Err(format!(
                "the daemon exited ({status}); see {}",
                self.dir.join("daemon.log").display()
            )
            .into());
        }
        Ok(())
    }
}

/// Tx event ids of blocks `from..to`.
/// A process's CPU time so far (user + system, every thread), from `/proc/<pid>/stat` (`self` for this process).
fn process_cpu_time(pid: &str) -> BenchResult<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count the fields after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("no command name in /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

fn tx_event_ids(chain: &Chain, from: u64, to: u64) -> BenchResult<Vec<(String, u64)>> {
    let options = ExtractOptions {
        instance_id: "csi-bench".to_owned(),
        include_invalid: false,
        ..ExtractOptions::default()
    };
    let mut ids = Vec::new();
    for number in from..to {
        let bytes = chain.handle.block(number).ok_or("block missing")?;
        let block = decode_block(&bytes)?;
        for event in extract(&block, &options) {
            if event.event_type() == EventType::Tx {
                ids.push((event.id().to_owned(), number));
            }
        }
    }
    Ok(ids)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One event's stage timings as the daemon logged them (milliseconds, the arrival in wall-clock nanoseconds).
struct StageMarks {
    received_ns: u128,
    decode: f64,
    wait: f64,
    filter: f64,
    push: f64,
    commit: f64,
}

/// The stages of the added latency, in an event's order: the first seven add up to block appended -> handler
/// answered, plus the commit.
const BREAKDOWN: [&str; 8] = [
    "deliver (appended -> daemon received)",
    "decode + verify + extract",
    "wait (for the worker)",
    "filter",
    "push -> handler started (HTTP, runtime, pipe)",
    "handler started -> push answered",
    "commit (outcome + position)",
    "total (appended -> handler started)",
];

/// The breakdown of one event's latency, in [`BREAKDOWN`] order.
fn breakdown(appended: u128, handler: u128, marks: &StageMarks) -> [f64; 8] {
    let ms = |ns: u128| ns as f64 / 1e6;
    let deliver = ms(marks.received_ns.saturating_sub(appended));
    let pushed_ns = marks.received_ns + ((marks.decode + marks.wait + marks.filter) * 1e6) as u128;
    let to_handler = ms(handler.saturating_sub(pushed_ns));
    [
        deliver,
        marks.decode,
        marks.wait,
        marks.filter,
        to_handler,
        (marks.push - to_handler).max(0.0),
        marks.commit,
        ms(handler.saturating_sub(appended)),
    ]
}

struct PipelineRow {
    mode: &'static str,
    backlog_events: usize,
    handler_rate: f64,
    daemon_rate: f64,
    paced_events: usize,
    p50: f64,
    p99: f64,
    max: f64,
    /// Per [`BREAKDOWN`] stage: p50, p99, max (ms) over the paced events.
    stages: Vec<[f64; 3]>,
    /// The slowest paced events' breakdowns.
    slowest: Vec<[f64; 8]>,
    /// For each of `slowest`: the longest the stall probe overslept while that event was on its way (ms).
    slowest_stalls: Vec<f64>,
    /// For each of `slowest`: its block's place in the paced phase (1 = the first block appended at the pace).
    slowest_blocks: Vec<u64>,
    /// What the stall probe saw over the whole paced phase.
    stalls: StallSummary,
}

/// A thread that does nothing but ask for 1 ms of sleep, over and over, and note how late it wakes. It shares the
/// machine with the simulator, the daemon and the handler but not their work: when it wakes 10 ms late while the
/// machine is nearly idle (the paced phase uses a few percent of a core), the machine as a whole stopped (the
/// hypervisor ran something else, the kernel stalled), and every process on it waited the same.
struct StallProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(u128, f64)>>,
    steal_before: Option<u64>,
}

/// How late the probe woke more than this is kept, with when (ms).
const STALL_NOTED_MS: f64 = 2.0;

/// What a [`StallProbe`] saw.
struct StallSummary {
    /// Wake-ups later than [`STALL_NOTED_MS`]: when (CLOCK_REALTIME ns, the wake-up) and how late (ms).
    late: Vec<(u128, f64)>,
    /// Time the hypervisor gave the machine's CPUs to others meanwhile (`steal` in /proc/stat), ms over all CPUs.
    steal_ms: Option<f64>,
}

impl StallProbe {
    fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut late = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let asked = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                let over = (asked.elapsed().as_secs_f64() * 1e3 - 1.0).max(0.0);
                if over > STALL_NOTED_MS {
                    late.push((now_ns(), over));
                }
            }
            late
        });
        StallProbe {
            stop,
            thread,
            steal_before: steal_ticks(),
        }
    }

    fn finish(self) -> StallSummary {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let late = self.thread.join().unwrap_or_default();
        let steal_ms = match (self.steal_before, steal_ticks()) {
            // USER_HZ is 100 on Linux: a tick is 10 ms.
            (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 * 10.0),
            _ => None,
        };
        StallSummary { late, steal_ms }
    }
}

impl StallSummary {
    /// The longest oversleep that ended within `[from, to]` (ns), or 0.
    fn worst_within(&self, from: u128, to: u128) -> f64 {
        self.late
            .iter()
            .filter(|(at, over)| *at >= from && at.saturating_sub((*over * 1e6) as u128) <= to)
            .map(|(_, over)| *over)
            .fold(0.0, f64::max)
    }

    fn worst(&self) -> f64 {
        self.late.iter().map(|(_, over)| *over).fold(0.0, f64::max)
    }

    fn count_over(&self, ms: f64) -> usize {
        self.late.iter().filter(|(_, over)| *over > ms).count()
    }
}

/// The machine's `steal` time so far, in ticks (all CPUs).
fn steal_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().next()?.split_whitespace().nth(8)?.parse().ok()
}

async fn pipeline(
    mode: &'static str,
    backlog: u64,
    paced: u64,
    rate: u64,
) -> BenchResult<PipelineRow> {
    let dir = tempfile::tempdir()?;
    let chain = start_chain(backlog).await?;
    let first = peersim::fixture::recorded_blocks().len() as u64;
    let height = chain.handle.height();
    let backlog_ids = tx_event_ids(&chain, first, height)?;
    let trigger = format!(
        r#"[[triggers]]
name = "bench"
channel = "mychannel"
event = "Tx"
start = {first}
[triggers.target.function_compute]
endpoint = "embedded"
service = "bench"
function = "noop"
invocation = "{mode}"
"#
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_chaintrigger"));
    let mut daemon = start_daemon(bin, dir.path(), &chain, true, &trigger).await?;

    // Backlog: the daemon's delivered count over time, then the handler's stamps.
    let started = Instant::now();
    let mut first_push: Option<(Instant, u64)> = None;
    let last_push = loop {
        daemon.check_alive()?;
        let delivered = daemon.triggers().await?.first().map_or(0, |t| t.delivered);
        if delivered > 0 && first_push.is_none() {
            first_push = Some((Instant::now(), delivered));
        }
        if delivered as usize >= backlog_ids.len() {
            break (Instant::now(), delivered);
        }
        if started.elapsed() > PHASE_LIMIT {
            return Err(format!(
                "{mode}: backlog not pushed after {PHASE_LIMIT:?} ({delivered} of {})",
                backlog_ids.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let daemon_rate = match (first_push, last_push) {
        (Some((t0, n0)), (t1, n1)) if t1 > t0 => (n1 - n0) as f64 / (t1 - t0).as_secs_f64(),
        _ => f64::NAN,
    };
    let stamps = wait_for_stamps(&mut daemon, &backlog_ids).await?;
    let mut times: Vec<u128> = backlog_ids
        .iter()
        .filter_map(|(id, _)| stamps.get(id).copied())
        .collect();
    times.sort_unstable();
    let handler_rate = match (times.first(), times.last()) {
        (Some(&a), Some(&b)) if b > a => (times.len() - 1) as f64 / ((b - a) as f64 / 1e9),
        _ => f64::NAN,
    };

    // Paced: append blocks at `rate`, timestamping each append.
    let paced_from = chain.handle.height();
    let mut appended = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let probe = StallProbe::start();
    for _ in 0..paced {
        ticks.tick().await;
        // Stamped once the block is in the chain (built and signed): the simulator's own work is not latency.
        let number = chain.handle.generate_block()?;
        appended.insert(number, now_ns());
    }
    // One more period before reading anything back: reading and parsing the logs takes a core of the two for some
    // milliseconds, and done at once it delayed the last block's events by up to 4 ms (the slowest event of a run
    // was often the last block's).
    ticks.tick().await;
    let paced_ids = tx_event_ids(&chain, paced_from, chain.handle.height())?;
    let stamps = wait_for_stamps(&mut daemon, &paced_ids).await?;
    let stalls = probe.finish();
    let mut latencies: Vec<f64> = paced_ids
        .iter()
        .filter_map(|(id, block)| {
            let handled = stamps.get(id)?;
            let at = appended.get(block)?;
            Some(handled.saturating_sub(*at) as f64 / 1e6)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let marks = daemon.stage_marks();
    let mut breakdowns: Vec<([f64; 8], f64, u64)> = paced_ids
        .iter()
        .filter_map(|(id, block)| {
            let (appended, handled) = (*appended.get(block)?, *stamps.get(id)?);
            Some((
                breakdown(appended, handled, marks.get(id)?),
                stalls.worst_within(appended, handled),
                block - paced_from + 1,
            ))
        })
        .collect();
    let stages = (0..BREAKDOWN.len())
        .map(|stage| {
            let mut values: Vec<f64> = breakdowns.iter().map(|(b, _, _)| b[stage]).collect();
            values.sort_by(f64::total_cmp);
            [
                percentile(&values, 0.5),
                percentile(&values, 0.99),
                values.last().copied().unwrap_or(f64::NAN),
            ]
        })
        .collect();
    breakdowns.sort_by(|(a, _, _), (b, _, _)| b[7].total_cmp(&a[7]));
    breakdowns.truncate(3);
    let slowest = breakdowns.iter().map(|(b, _, _)| *b).collect();
    let slowest_stalls = breakdowns.iter().map(|(_, stall, _)| *stall).collect();
    let slowest_blocks = breakdowns.iter().map(|(_, _, block)| *block).collect();
    Ok(PipelineRow {
        mode,
        backlog_events: backlog_ids.len(),
        handler_rate,
        daemon_rate,
        paced_events: latencies.len(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        stages,
        slowest,
        slowest_stalls,
        slowest_blocks,
        stalls,
    })
}

/// Waits until the handler has stamped every one of `ids`.
async fn wait_for_stamps(
    daemon: &mut Daemon,
    ids: &[(String, u64)],
) -> BenchResult<HashMap<String, u128>> {
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let stamps = daemon.stamps();
        let missing = ids
            .iter()
            .filter(|(id, _)| !stamps.contains_key(id))
            .count();
        if missing == 0 {
            return Ok(stamps);
        }
        if started.elapsed() > PHASE_LIMIT {
            return Err(format!(
                "{missing} of {} events never reached the handler",
                ids.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct MemoryRow {
    triggers: u64,
    idle_kib: u64,
    after_kib: u64,
    peak_kib: u64,
    blocks: u64,
}

/// A filter that never matches a Block event, in each language: the same for every trigger, or (`distinct`) one
/// text per trigger (`index`), so no two triggers can share a compiled filter.
fn never_matching_filter(language: &str, distinct: bool, index: u64) -> String {
    let bound = if distinct { -(index as i64) } else { 0 };
    match language {
        "jmespath" => {
            format!("filter_language = \"jmespath\"\nfilter = 'content.number < `{bound}`'")
        }
        _ => format!("filter = 'select(.content.number < {bound})'"),
    }
}

async fn memory(
    bin: &Path,
    triggers: u64,
    language: &str,
    distinct: bool,
    blocks: u64,
) -> BenchResult<MemoryRow> {
    let dir = tempfile::tempdir()?;
    let chain = start_chain(0).await?;
    let mut config = String::new();
    for i in 0..triggers {
        config.push_str(&format!(
            "[[triggers]]\nname = \"block-{i}\"\nchannel = \"mychannel\"\nevent = \"Block\"\n{}\n\
             [triggers.target.http]\nurl = \"http://127.0.0.1:9/never\"\n\n",
            never_matching_filter(language, distinct, i)
        ));
    }
    let mut daemon = start_daemon(bin, dir.path(), &chain, false, &config).await?;
    // Settled: every trigger is at the chain's head.
    let head = chain.handle.height();
    wait_at_height(&mut daemon, head, triggers).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_kib, _) = daemon.memory()?;
    for _ in 0..blocks {
        chain.handle.generate_block()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_at_height(&mut daemon, chain.handle.height(), triggers).await?;
    let (after_kib, peak_kib) = daemon.memory()?;
    Ok(MemoryRow {
        triggers,
        idle_kib,
        after_kib,
        peak_kib,
        blocks,
    })
}

/// Waits until all `count` triggers have processed every block below `height`.
async fn wait_at_height(daemon: &mut Daemon, height: u64, count: u64) -> BenchResult<()> {
    let started = Instant::now();
    loop {
        daemon.check_alive()?;
        let triggers = daemon.triggers().await?;
        let done = triggers
            .iter()
            .filter(|t| t.position.block >= height)
            .count() as u64;
        if triggers.len() as u64 == count && done == count {
            return Ok(());
        }
        if started.elapsed() > PHASE_LIMIT {
            return Err(format!("{done} of {count} triggers reached block {height}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: do the work only when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    chaintrigger::install_crypto_provider();
    let backlog = env_number("BENCH_BACKLOG", 1000);
    let paced = env_number("BENCH_PACED", 300);
    let rate = env_number("BENCH_RATE", 50);
    let trigger_count = env_number("BENCH_TRIGGERS", 1000);
    let catch_up_blocks = env_number("BENCH_CATCHUP", 10_000);
    let parts =
        std::env::var("BENCH_PARTS").unwrap_or_else(|_| "pipeline,memory,catchup".to_owned());
    let runtime = tokio::runtime::Runtime::new()?;
    if parts.split(',').any(|p| p == "pipeline") {
        pipeline_part(&runtime, backlog, paced, rate)?;
    }
    if parts.split(',').any(|p| p == "memory") {
        memory_part(&runtime, trigger_count)?;
    }
    if parts.split(',').any(|p| p == "catchup") {
        catch_up_part(&runtime, catch_up_blocks)?;
    }
    Ok(())
}

fn pipeline_part(
    runtime: &tokio::runtime::Runtime,
    backlog: u64,
    paced: u64,
    rate: u64,
) -> BenchResult<()> {
    println!(
        "pipeline: 1 Tx trigger, no filter, no-op Python handler through the bundled runtime; backlog {backlog} blocks, then {paced} blocks at {rate} blocks/s"
    );
    println!(
        "| invocation | backlog events | handler starts/s | daemon pushes/s | paced events | p50 (ms) | p99 (ms) | max (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for mode in ["Sync", "Async"] {
        let row = runtime.block_on(pipeline(mode, backlog, paced, rate))?;
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {:.2} |",
            row.mode,
            row.backlog_events,
            row.handler_rate,
            row.daemon_rate,
            row.paced_events,
            row.p50,
            row.p99,
            row.max
        );
        rows.push(row);
    }
    for row in &rows {
        println!();
        println!(
            "where the paced events' time went, {} ({} events; ms):",
            row.mode, row.paced_events
        );
        println!("| stage | p50 | p99 | max | slowest 3 events |");
        println!("|---|---:|---:|---:|---|");
        for (stage, name) in BREAKDOWN.iter().enumerate() {
            let [p50, p99, max] = row.stages[stage];
            let slowest: Vec<String> = row
                .slowest
                .iter()
                .map(|b| format!("{:.2}", b[stage]))
                .collect();
            println!(
                "| {name} | {p50:.2} | {p99:.2} | {max:.2} | {} |",
                slowest.join(" / ")
            );
        }
        let stalled: Vec<String> = row
            .slowest_stalls
            .iter()
            .map(|ms| format!("{ms:.2}"))
            .collect();
        println!(
            "| stall probe: longest oversleep of a 1 ms sleep meanwhile | - | - | {:.2} | {} |",
            row.stalls.worst(),
            stalled.join(" / ")
        );
        let blocks: Vec<String> = row.slowest_blocks.iter().map(u64::to_string).collect();
        println!(
            "| the event's block, counted from the first paced one | - | - | - | {} |",
            blocks.join(" / ")
        );
        println!(
            "\nstall probe over the paced phase: {} wake-ups more than {STALL_NOTED_MS} ms late, {} more than 5 ms, {} more than 10 ms; hypervisor steal {}",
            row.stalls.late.len(),
            row.stalls.count_over(5.0),
            row.stalls.count_over(10.0),
            row.stalls.steal_ms.map_or_else(
                || "unknown".to_owned(),
                |ms| format!("{ms:.0} ms (all CPUs)")
            )
        );
    }
    Ok(())
}

/// This build's binary, and `BENCH_BASE_BIN` when set.
fn binaries() -> Vec<(String, PathBuf)> {
    let mut binaries = vec![(
        "this build".to_owned(),
        PathBuf::from(env!("CARGO_BIN_EXE_chaintrigger")),
    )];
    if let Ok(base) = std::env::var("BENCH_BASE_BIN") {
        binaries.push((format!("base ({base})"), PathBuf::from(base)));
    }
    binaries
}

fn memory_part(runtime: &tokio::runtime::Runtime, trigger_count: u64) -> BenchResult<()> {
    let binaries = binaries();
    println!(
        "\nmemory: Block triggers with a filter that never matches (nothing pushed), one channel"
    );
    println!(
        "| binary | triggers | filter | RSS idle (MiB) | RSS after blocks (MiB) | peak RSS (MiB) | blocks processed by every trigger |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    for (count, language, distinct) in [
        (1, "jq", false),
        (trigger_count, "jq", false),
        (trigger_count, "jq", true),
        (trigger_count, "jmespath", false),
    ] {
        // The binaries one after the other for each row, so both see the same machine.
        for (label, bin) in &binaries {
            let row = runtime.block_on(memory(bin, count, language, distinct, 100))?;
            let mib = |kib: u64| kib as f64 / 1024.0;
            let filter = if distinct {
                format!("{language}, one text per trigger")
            } else {
                format!("{language}, the same text")
            };
            println!(
                "| {label} | {} | {filter} | {:.1} | {:.1} | {:.1} | {} |",
                row.triggers,
                mib(row.idle_kib),
                mib(row.after_kib),
                mib(row.peak_kib),
                row.blocks
            );
        }
    }
    Ok(())
}

/// One catch-up: blocks/s, what the daemon's CPU costs per block, and the whole time from the daemon's start to
/// the head.
struct CatchUpRow {
    blocks: u64,
    rate: f64,
    /// The daemon's CPU time (all threads, user + system) over the timed blocks, per block: what the daemon
    /// costs, apart from the simulator that shares the machine's cores with it.
    cpu_per_block: Duration,
    /// This process's CPU time over the same blocks, per block: the simulator serving them over TLS (and the
    /// admin API polled every 5 ms). Daemon and simulator share the machine's two cores.
    simulator_cpu_per_block: Duration,
    from_start: Duration,
}

async fn catch_up(bin: &Path, chain: &Chain) -> BenchResult<CatchUpRow> {
    let dir = tempfile::tempdir()?;
    let head = chain.handle.height();
    let triggers = format!(
        "[[triggers]]\nname = \"catch-up\"\nchannel = \"mychannel\"\nevent = \"Block\"\nstart = 0\n{}\n\
         [triggers.target.http]\nurl = \"http://127.0.0.1:9/never\"\n",
        never_matching_filter("jq", false, 0)
    );
    let spawned = Instant::now();
    let mut daemon = start_daemon(bin, dir.path(), chain, false, &triggers).await?;
    let mut first: Option<(Instant, u64, Duration, Duration)> = None;
    loop {
        daemon.check_alive()?;
        let position = daemon
            .triggers()
            .await?
            .first()
            .map_or(0, |t| t.position.block);
        let now = Instant::now();
        if position > 0 && first.is_none() {
            first = Some((now, position, daemon.cpu_time()?, process_cpu_time("self")?));
        }
        if position >= head {
            let cpu = daemon.cpu_time()?;
            let simulator_cpu = process_cpu_time("self")?;
            let (since, from, cpu_before, simulator_before) =
                first.unwrap_or((spawned, 0, Duration::ZERO, Duration::ZERO));
            let blocks = head - from;
            let seconds = now.duration_since(since).as_secs_f64().max(1e-3);
            return Ok(CatchUpRow {
                blocks,
                rate: blocks as f64 / seconds,
                cpu_per_block: cpu.saturating_sub(cpu_before) / blocks.max(1) as u32,
                simulator_cpu_per_block: simulator_cpu.saturating_sub(simulator_before)
                    / blocks.max(1) as u32,
                from_start: now.duration_since(spawned),
            });
        }
        if spawned.elapsed() > PHASE_LIMIT {
            return Err(format!("the trigger is at block {position} of {head}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn catch_up_part(runtime: &tokio::runtime::Runtime, blocks: u64) -> BenchResult<()> {
    let binaries = binaries();
    let chain = runtime.block_on(start_chain(blocks))?;
    println!(
        "\ncatch-up: 1 Block trigger from block 0 over {blocks} generated blocks, a jq filter that never matches (nothing pushed)"
    );
    println!(
        "| binary | run | blocks timed | blocks/s | daemon CPU per block (us) | blocks per daemon CPU second | simulator CPU per block (us) | daemon start to head (s) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for run in 1..=3 {
        // The binaries one after the other, on the same chain.
        for (label, bin) in &binaries {
            let row = runtime.block_on(catch_up(bin, &chain))?;
            let cpu_us = row.cpu_per_block.as_secs_f64() * 1e6;
            println!(
                "| {label} | {run} | {} | {:.0} | {cpu_us:.1} | {:.0} | {:.1} | {:.2} |",
                row.blocks,
                row.rate,
                1e6 / cpu_us.max(1e-3),
                row.simulator_cpu_per_block.as_secs_f64() * 1e6,
                row.from_start.as_secs_f64()
            );
        }
    }
    Ok(())
}
