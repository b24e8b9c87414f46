//! The cost of a Prometheus scrape of a daemon with 1,000 triggers, and of recording one invoke latency; what the
//! connection cap costs (admitting a connection into a full table, a `/healthz` round trip with 2,000 idle
//! connections held against the server); and checking a configuration of 1,000 triggers, valid or with problems in
//! every trigger.

use std::hint::black_box;
use std::time::Duration;

use std::sync::Arc;

use chaintrigger::admin::metrics::render;
use chaintrigger::admin::server::{Admission, ConnectionTable};
use chaintrigger::admin::{
    self, AdminToken, ChannelStatus, ControlError, DeadLetter, EnableFrom, EngineControl,
    EventSelector, InvokeLatency, LastError, LatencyHistogram, Position, ReloadReport,
    RepushResult, ServeOptions, TriggerState, TriggerStatus,
};
use chaintrigger::config::Config;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TRIGGERS: usize = 1_000;

fn statuses() -> (Vec<TriggerStatus>, Vec<ChannelStatus>, Vec<InvokeLatency>) {
    let states = TriggerState::ALL;
    let triggers: Vec<TriggerStatus> = (0..TRIGGERS)
        .map(|index| {
            let position = Position {
                block: 100_000 + index as u64,
                event_index: 3,
            };
            TriggerStatus {
                name: format!("trigger-{index:04}"),
                channel: "mychannel".to_owned(),
                event_type: EventSelector::Contract,
                target: format!("fc:embedded/demo/handler-{index}"),
                state: states[index % states.len()],
                block_height: position.block_height(),
                position,
                chain_height: Some(101_500),
                lag: position.lag(Some(101_500)),
                failure_count: index as u64 % 3,
                failure_threshold: -1,
                last_error: Some(LastError {
                    message: "HTTP 503 from the function".to_owned(),
                    at: chrono::Utc::now(),
                }),
                delivered: 1_000_000 + index as u64,
                discarded: index as u64,
                retries: 10 * index as u64,
                enabled_at: None,
                owner: None,
            }
        })
        .collect();
    let latencies = triggers
        .iter()
        .enumerate()
        .map(|(index, trigger)| {
            let histogram = LatencyHistogram::default();
            for sample in 0..50 {
                histogram.record(Duration::from_micros(200 + 97 * (index as u64 + sample)));
            }
            InvokeLatency {
                trigger: trigger.name.clone(),
                histogram: histogram.snapshot(),
            }
        })
        .collect();
    let channels = vec![ChannelStatus {
        name: "mychannel".to_owned(),
        chain_height: Some(101_500),
        peer: Some("peer0.org1.example.com:7051".to_owned()),
        reconnects: 4,
        last_error: None,
        ..ChannelStatus::default()
    }];
    (triggers, channels, latencies)
}

fn metrics(c: &mut Criterion) {
    let (triggers, channels, latencies) = statuses();
    let size = render(&triggers, &channels, &latencies).len();
    let mut group = c.benchmark_group("admin_metrics");
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("render_1000_triggers", |b| {
        b.iter(|| {
            render(
                black_box(&triggers),
                black_box(&channels),
                black_box(&latencies),
            )
        })
    });
    group.finish();

    let histogram = LatencyHistogram::default();
    c.bench_function("admin_metrics/latency_record", |b| {
        b.iter(|| histogram.record(black_box(Duration::from_micros(1_750))))
    });
}

fn connection_table(c: &mut Criterion) {
    let mut group = c.benchmark_group("admin_server");
    for cap in [256usize, 16_384] {
        // A full table of idle connections: every admission scans for the one idle the longest and evicts it.
        let mut table = ConnectionTable::new(cap);
        let start = Instant::now();
        for index in 0..cap {
            let _ = table.admit(start + Duration::from_micros(index as u64));
        }
        let mut now = start + Duration::from_secs(1);
        group.bench_function(format!("admit_into_full_table/{cap}"), |b| {
            b.iter(|| {
                now += Duration::from_micros(1);
                match table.admit(black_box(now)) {
                    Admission::Admitted { evicted, .. } => black_box(evicted),
                    Admission::Refused => unreachable!("idle connections are evicted"),
                }
            })
        });
    }
    group.finish();
}

fn healthz_under_flood(c: &mut Criterion) {
    chaintrigger::install_crypto_provider();
    raise_fd_limit(8_192);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let shutdown = CancellationToken::new();
    let address = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let token = AdminToken::parse("bench-admin-token-0123456789").expect("a token");
        tokio::spawn(admin::run(
            listener,
            Arc::new(NoTriggers),
            token,
            ServeOptions::default(),
            shutdown.clone(),
        ));
        address
    });
    let url = format!("http://{address}/healthz");
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("admin_server");
    let round_trip = |b: &mut criterion::Bencher| {
        b.iter(|| {
            runtime.block_on(async {
                let response = client.get(&url).send().await.expect("healthz answers");
                assert!(response.status().is_success());
                response.bytes().await.expect("a body")
            })
        })
    };
    group.bench_function("healthz_keep_alive", round_trip);
    // A connection per request (admission, accept, close): what a probe without keep-alive costs.
    group.bench_function("healthz_new_connection", |b| {
        b.iter(|| runtime.block_on(healthz_on_new_connection(address)))
    });
    let flood: Vec<tokio::net::TcpStream> = runtime.block_on(async {
        let mut flood = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            flood.push(
                tokio::net::TcpStream::connect(address)
                    .await
                    .expect("connect"),
            );
        }
        flood
    });
    group.bench_function("healthz_keep_alive_2000_idle_held", round_trip);
    group.finish();
    drop(flood);
    shutdown.cancel();
}

/// `GET /healthz` on a connection of its own, closed after the answer.
async fn healthz_on_new_connection(address: std::net::SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

fn config_check(c: &mut Criterion) {
    let valid = config_text(1_000, false, false);
    let filtered = config_text(1_000, false, true);
    let broken = config_text(1_000, true, false);
    let path = std::path::Path::new("/etc/chaintrigger/bench.toml");
    assert!(Config::parse(&valid, path).is_ok());
    assert!(Config::parse(&filtered, path).is_ok());
    let problems = Config::parse(&broken, path)
        .expect_err("problems")
        .problems()
        .len();
    assert_eq!(problems, 3_000, "three problems per trigger");
    let mut group = c.benchmark_group("config_check");
    group.sample_size(10);
    group.bench_function("1000_triggers_valid", |b| {
        b.iter(|| Config::parse(black_box(&valid), path).is_ok())
    });
    group.bench_function("1000_triggers_3_problems_each", |b| {
        b.iter(|| Config::parse(black_box(&broken), path).is_err())
    });
    group.bench_function("1000_triggers_valid_with_jq_filters", |b| {
        b.iter(|| Config::parse(black_box(&filtered), path).is_ok())
    });
    group.finish();
}

/// A configuration with one channel and `triggers` triggers, each with a bad event, a bad threshold and a retry
/// count of the wrong type when `broken`, and a jq filter when `filters`.
fn config_text(triggers: usize, broken: bool, filters: bool) -> String {
    let mut text = String::from(
        "instance_id = \"bench\"\ndatabase = \"state.db\"\n[admin]\ntoken = { env = \"T\" }\n\
         [[channels]]\nname = \"mychannel\"\nmsp_id = \"Org1MSP\"\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n\
         [[channels.peers]]\naddress = \"peer0:7051\"\ntls_ca = \"ca.pem\"\n",
    );
    for index in 0..triggers {
        let (event, threshold, attempts) = if broken {
            ("\"Blok\"", "-5", "\"three\"")
        } else {
            ("\"Contract\"", "10", "3")
        };
        let filter = if filters {
            format!("filter = 'select(.name==\"e{index}\")'\n")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "\n[[triggers]]\nname = \"t{index}\"\nchannel = \"mychannel\"\nevent = {event}\n\
             failure_threshold = {threshold}\n{filter}[triggers.retry]\nattempts = {attempts}\n\
             [triggers.target.http]\nurl = \"https://hooks.example.com/t{index}?key=k{index}\"\n"
        ));
    }
    text
}

/// An engine with no triggers: the server's own cost is what is measured.
struct NoTriggers;

impl EngineControl for NoTriggers {
    async fn triggers(&self) -> Vec<TriggerStatus> {
        Vec::new()
    }
    async fn trigger(&self, _: &str) -> Option<TriggerStatus> {
        None
    }
    async fn enable(&self, name: &str, _: EnableFrom) -> Result<TriggerStatus, ControlError> {
        Err(ControlError::NotFound(name.to_owned()))
    }
    async fn disable(&self, name: &str) -> Result<TriggerStatus, ControlError> {
        Err(ControlError::NotFound(name.to_owned()))
    }
    async fn delete(&self, name: &str) -> Result<(), ControlError> {
        Err(ControlError::NotFound(name.to_owned()))
    }
    async fn dead_letters(
        &self,
        name: &str,
        _: Option<u64>,
        _: u32,
    ) -> Result<Vec<DeadLetter>, ControlError> {
        Err(ControlError::NotFound(name.to_owned()))
    }
    async fn repush_dead_letter(&self, name: &str, _: u64) -> Result<RepushResult, ControlError> {
        Err(ControlError::NotFound(name.to_owned()))
    }
    async fn repush_all_dead_letters(&self, name: &str) -> Result<Vec<RepushResult>, ControlError> {
        Err(ControlError::NotFound(name.to_owned()))
    }
    async fn reload(&self) -> Result<ReloadReport, ControlError> {
        Err(ControlError::Unavailable("no configuration".to_owned()))
    }
    async fn channels(&self) -> Vec<ChannelStatus> {
        Vec::new()
    }
    async fn invoke_latencies(&self) -> Vec<InvokeLatency> {
        Vec::new()
    }
}

/// Lets this process hold the flood's sockets and the server's.
fn raise_fd_limit(wanted: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit / setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

criterion_group!(
    benches,
    metrics,
    connection_table,
    healthz_under_flood,
    config_check
);
criterion_main!(benches);
