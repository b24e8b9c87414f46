//! The admin API on port 0 in front of a small engine that keeps real trigger state in memory, plus a strict
//! parser of the Prometheus text format to check `/metrics` against.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaintrigger::admin::{
    self, AdminToken, ChannelStatus, ControlError, DeadLetter, EnableFrom, EngineControl,
    EventSelector, InvokeLatency, LastError, LatencyHistogram, Position, ReloadReport,
    RepushResult, TriggerState, TriggerStatus,
};
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The token every test server requires.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// The channel every test trigger listens on, and its height.
pub const CHANNEL: &str = "mychannel";
pub const CHAIN_HEIGHT: u64 = 12;

/// A fixed time, so JSON answers can be compared exactly.
pub fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-21T10:00:00.250Z")
        .expect("a valid constant time")
        .with_timezone(&Utc)
}

/// One trigger as the test engine keeps it.
struct Trigger {
    status: TriggerStatus,
    deleted: bool,
}

/// An engine that implements the admin boundary over in-memory state with the documented semantics.
pub struct TestEngine {
    triggers: Mutex<BTreeMap<String, Trigger>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
    latencies: HashMap<String, Arc<LatencyHistogram>>,
    reload_answer: Mutex<Result<ReloadReport, ControlError>>,
}

fn status(
    name: &str,
    event_type: EventSelector,
    position: Position,
    state: TriggerState,
) -> TriggerStatus {
    TriggerStatus {
        name: name.to_owned(),
        channel: CHANNEL.to_owned(),
        event_type,
        target: format!("fc:embedded/demo/{name}"),
        state,
        block_height: position.block_height(),
        position,
        chain_height: Some(CHAIN_HEIGHT),
        lag: position.lag(Some(CHAIN_HEIGHT)),
        failure_count: 0,
        failure_threshold: -1,
        last_error: None,
        delivered: 0,
        discarded: 0,
        retries: 0,
        enabled_at: None,
        owner: None,
    }
}

impl TestEngine {
    /// Two triggers: `contracts` running and caught up, `blocks` failed at block 5 with a dead letter that
    /// will deliver and one that will not.
    pub fn new() -> Arc<Self> {
        let mut contracts = status(
            "contracts",
            EventSelector::Contract,
            Position {
                block: CHAIN_HEIGHT,
                event_index: 0,
            },
            TriggerState::Running,
        );
        contracts.delivered = 30;
        contracts.retries = 2;
        let mut blocks = status(
            "blocks",
            EventSelector::Block,
            Position {
                block: 5,
                event_index: 1,
            },
            TriggerState::Failed,
        );
        blocks.target = "http:POST https://hooks.example.com/chain".to_owned();
        blocks.failure_count = 2;
        blocks.failure_threshold = 1;
        blocks.delivered = 4;
        blocks.discarded = 2;
        blocks.retries = 6;
        blocks.last_error = Some(LastError {
            message: "HTTP 500 from https://hooks.example.com/chain".into(),
            at: at(),
        });
        let letter = |id: u64, block: u64, payload: serde_json::Value| DeadLetter {
            id,
            trigger: "blocks".to_owned(),
            event_id: format!("block-{block}"),
            block,
            event_index: 0,
            output: 0,
            payload,
            error: "HTTP 500 from https://hooks.example.com/chain".to_owned(),
            attempts: 3,
            at: at(),
            repushed: false,
        };
        let latencies: HashMap<String, Arc<LatencyHistogram>> = ["contracts", "blocks"]
            .iter()
            .map(|name| ((*name).to_owned(), Arc::default()))
            .collect();
        latencies["contracts"].record(Duration::from_millis(3));
        latencies["contracts"].record(Duration::from_millis(40));
        Arc::new(Self {
            triggers: Mutex::new(
                [contracts, blocks]
                    .into_iter()
                    .map(|status| {
                        (
                            status.name.clone(),
                            Trigger {
                                status,
                                deleted: false,
                            },
                        )
                    })
                    .collect(),
            ),
            dead_letters: Mutex::new(vec![
                letter(1, 3, serde_json::json!({"number": 3})),
                letter(2, 4, serde_json::json!({"fail": true})),
            ]),
            latencies,
            reload_answer: Mutex::new(Ok(ReloadReport {
                added: vec!["new-one".into()],
                removed: vec![],
                changed: vec!["contracts".into()],
                still_deleted: vec![],
                daemons: None,
            })),
        })
    }

    /// Makes the next reloads answer with `answer`.
    pub fn set_reload_answer(&self, answer: Result<ReloadReport, ControlError>) {
        *self
            .reload_answer
            .lock()
            .expect("no test panics while holding the lock") = answer;
    }

    fn with_trigger<T>(
        &self,
        name: &str,
        change: impl FnOnce(&mut TriggerStatus) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let mut triggers = self
            .triggers
            .lock()
            .expect("no test panics while holding the lock");
        match triggers.get_mut(name) {
            None => Err(ControlError::NotFound(format!("no trigger named {name:?}"))),
            Some(trigger) if trigger.deleted => Err(ControlError::Conflict(format!(
                "trigger {name:?} was deleted over the admin API; it stays deleted"
            ))),
            Some(trigger) => change(&mut trigger.status),
        }
    }
}

impl EngineControl for TestEngine {
    async fn triggers(&self) -> Vec<TriggerStatus> {
        let triggers = self
            .triggers
            .lock()
            .expect("no test panics while holding the lock");
        triggers
            .values()
            .filter(|trigger| !trigger.deleted)
            .map(|trigger| trigger.status.clone())
            .collect()
    }

    async fn trigger(&self, name: &str) -> Option<TriggerStatus> {
        let triggers = self
            .triggers
            .lock()
            .expect("no test panics while holding the lock");
        triggers
            .get(name)
            .filter(|trigger| !trigger.deleted)
            .map(|trigger| trigger.status.clone())
    }

    async fn enable(&self, name: &str, from: EnableFrom) -> Result<TriggerStatus, ControlError> {
        self.with_trigger(name, |status| {
            let position = match from {
                EnableFrom::Latest => Position { block: CHAIN_HEIGHT, event_index: 0 },
                EnableFrom::StoredPosition => status.position,
                EnableFrom::Block(block) if block > CHAIN_HEIGHT => {
                    return Err(ControlError::Invalid(format!(
                        "block {block} is beyond the chain height {CHAIN_HEIGHT} of channel {CHANNEL}"
                    )));
                }
                EnableFrom::Block(block) => Position { block, event_index: 0 },
            };
            status.position = position;
            status.block_height = position.block_height();
            status.lag = position.lag(status.chain_height);
            status.state = TriggerState::Running;
            status.failure_count = 0;
            status.enabled_at = Some(at());
            Ok(status.clone())
        })
    }

    async fn disable(&self, name: &str) -> Result<TriggerStatus, ControlError> {
        self.with_trigger(name, |status| {
            status.state = TriggerState::Disabled;
            Ok(status.clone())
        })
    }

    async fn delete(&self, name: &str) -> Result<(), ControlError> {
        self.with_trigger(name, |_| Ok(()))?;
        let mut triggers = self
            .triggers
            .lock()
            .expect("no test panics while holding the lock");
        if let Some(trigger) = triggers.get_mut(name) {
            trigger.deleted = true;
        }
        Ok(())
    }

    async fn dead_letters(
        &self,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, ControlError> {
        self.with_trigger(name, |_| Ok(()))?;
        let letters = self
            .dead_letters
            .lock()
            .expect("no test panics while holding the lock");
        Ok(letters
            .iter()
            .filter(|letter| letter.trigger == name && after.is_none_or(|after| letter.id > after))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn repush_dead_letter(&self, name: &str, id: u64) -> Result<RepushResult, ControlError> {
        self.with_trigger(name, |_| Ok(()))?;
        let mut letters = self
            .dead_letters
            .lock()
            .expect("no test panics while holding the lock");
        let letter = letters
            .iter_mut()
            .find(|letter| letter.trigger == name && letter.id == id)
            .ok_or_else(|| {
                ControlError::NotFound(format!("trigger {name:?} has no dead letter {id}"))
            })?;
        Ok(repush(letter))
    }

    async fn repush_all_dead_letters(&self, name: &str) -> Result<Vec<RepushResult>, ControlError> {
        self.with_trigger(name, |_| Ok(()))?;
        let mut letters = self
            .dead_letters
            .lock()
            .expect("no test panics while holding the lock");
        Ok(letters
            .iter_mut()
            .filter(|letter| letter.trigger == name && !letter.repushed)
            .map(repush)
            .collect())
    }

    async fn reload(&self) -> Result<ReloadReport, ControlError> {
        self.reload_answer
            .lock()
            .expect("no test panics while holding the lock")
            .clone()
    }

    async fn channels(&self) -> Vec<ChannelStatus> {
        vec![ChannelStatus {
            name: CHANNEL.to_owned(),
            chain_height: Some(CHAIN_HEIGHT),
            peer: Some("peer0.org1.example.com:7051".to_owned()),
            reconnects: 1,
            last_error: Some(LastError {
                message: "stream reset by peer".into(),
                at: at(),
            }),
            ..ChannelStatus::default()
        }]
    }

    async fn invoke_latencies(&self) -> Vec<InvokeLatency> {
        self.latencies
            .iter()
            .map(|(trigger, histogram)| InvokeLatency {
                trigger: trigger.clone(),
                histogram: histogram.snapshot(),
            })
            .collect()
    }
}

/// Delivers unless the payload asks to fail.
fn repush(letter: &mut DeadLetter) -> RepushResult {
    let delivered = letter.payload.get("fail").is_none();
    letter.repushed |= delivered;
    RepushResult {
        id: letter.id,
        delivered,
        error: (!delivered).then(|| "HTTP 500 from https://hooks.example.com/chain".to_owned()),
    }
}

/// A running admin API; stops when dropped.
pub struct AdminServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The engine behind it, to change what it answers.
    pub engine: Arc<TestEngine>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), admin::AdminError>>>,
}

impl AdminServer {
    pub async fn start() -> Self {
        Self::start_with(admin::ServeOptions::default()).await
    }

    /// A server with these limits (and TLS when given; `url` is then `https://`).
    pub async fn start_with(options: admin::ServeOptions) -> Self {
        chaintrigger::install_crypto_provider();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!(
            "{}://{}",
            if options.tls.is_some() {
                "https"
            } else {
                "http"
            },
            listener
                .local_addr()
                .expect("a bound listener has an address")
        );
        let engine = TestEngine::new();
        let shutdown = CancellationToken::new();
        let token = AdminToken::parse(TOKEN).expect("the test token is valid");
        let task = tokio::spawn(admin::run(
            listener,
            engine.clone(),
            token,
            options,
            shutdown.clone(),
        ));
        Self {
            url,
            engine,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("the admin task does not panic")
                .expect("the admin API stops cleanly");
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (0.0.4) strictly: every sample belongs to a family declared by a
/// `# TYPE` line before it, a family's samples are contiguous, names and label syntax are valid, and the
/// buckets of every histogram are cumulative and end with `+Inf` equal to `_count`.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished_families: Vec<String> = Vec::new();
    let mut current_family: Option<String> = None;
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let where_ = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(where_("unknown metric type"));
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(where_("second TYPE line for the same metric"));
                    }
                }
                (Some("HELP"), Some(name), _) if valid_name(name) => {}
                _ => return Err(where_("malformed comment")),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|why| where_(&why))?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| sample.name.strip_suffix(suffix))
            .find(|base| types.get(*base).map(String::as_str) == Some("histogram"))
            .unwrap_or(&sample.name)
            .to_owned();
        if !types.contains_key(&family) {
            return Err(where_("sample without a TYPE line before it"));
        }
        if current_family.as_ref() != Some(&family) {
            if finished_families.contains(&family) {
                return Err(where_("family's samples are not contiguous"));
            }
            if let Some(previous) = current_family.replace(family.clone()) {
                finished_families.push(previous);
            }
        }
        samples.push(sample);
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let closing = loop {
            let mut label = String::new();
            let first = loop {
                match chars.next() {
                    Some((_, '=')) => break None,
                    Some((index, '}')) if label.is_empty() && labels.is_empty() => {
                        break Some(index);
                    }
                    Some((_, c)) => label.push(c),
                    None => return Err("unterminated label set".into()),
                }
            };
            if let Some(index) = first {
                break index;
            }
            if !valid_name(&label) || label.contains(':') {
                return Err(format!("invalid label name {label:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label:?} value is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, '\n')) | None => return Err("unterminated label value".into()),
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.insert(label.clone(), value).is_some() {
                return Err(format!("label {label:?} repeated"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((index, '}')) => break index,
                other => {
                    return Err(format!(
                        "expected , or }} after label {label:?}, found {other:?}"
                    ));
                }
            }
        };
        rest = &inner[closing + 1..];
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value_text = fields.next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text
            .parse::<f64>()
            .map_err(|_| format!("value {text:?} is not a number"))?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("timestamp {timestamp:?} is not an integer"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A series' labels without `le`.
type Labels = Vec<(String, String)>;

/// A histogram series' `(bound, cumulative count)` buckets and its `_count`.
type HistogramSeries = (Vec<(f64, f64)>, Option<f64>);

fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> Result<(), String> {
    for (family, _) in types
        .iter()
        .filter(|(_, kind)| kind.as_str() == "histogram")
    {
        let mut series: BTreeMap<Labels, HistogramSeries> = BTreeMap::new();
        for sample in samples {
            let mut labels = sample.labels.clone();
            if sample.name == format!("{family}_bucket") {
                let le = labels
                    .remove("le")
                    .ok_or_else(|| format!("{family}_bucket without `le`"))?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().map_err(|_| format!("bad le {le:?}"))?
                };
                series
                    .entry(labels.into_iter().collect())
                    .or_default()
                    .0
                    .push((bound, sample.value));
            } else if sample.name == format!("{family}_count") {
                series.entry(labels.into_iter().collect()).or_default().1 = Some(sample.value);
            }
        }
        for (labels, (buckets, count)) in series {
            if !buckets
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1)
            {
                return Err(format!(
                    "{family}{labels:?}: buckets are not increasing and cumulative"
                ));
            }
            if buckets.last().map(|(bound, _)| *bound) != Some(f64::INFINITY) {
                return Err(format!("{family}{labels:?}: no +Inf bucket"));
            }
            if buckets.last().map(|(_, value)| *value) != count {
                return Err(format!(
                    "{family}{labels:?}: +Inf bucket differs from _count"
                ));
            }
        }
    }
    Ok(())
}
