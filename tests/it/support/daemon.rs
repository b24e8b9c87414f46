//! The whole path with real parts: a peer simulator over TLS with a generated PKI, the bundled runtime with
//! functions created through its API, an HTTP receiver that records every push, the daemon's TOML, the daemon
//! itself (the real binary, so it can be killed) and a client of its admin API. Waits poll with deadlines.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use chaintrigger::config::TriggerName;
use chaintrigger::events::{ExtractOptions, extract};
use chaintrigger::fabric::decode::decode_block;
use chaintrigger::peersim::fixture::Recording;
use chaintrigger::peersim::{GeneratorConfig, PeerSimConfig, PeerSimHandle};
use chaintrigger::store::{DeadLetterQuery, SqliteStore, Store as _, TriggerRecord};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::fabric::{PEER_NAME, RunningPeer, TlsPki};
use super::runtime::{KEY_ID, KEY_SECRET, TestRuntime, marks, test_dir};

/// The admin token of every test daemon (the configuration refuses short ones).
pub const ADMIN_TOKEN: &str = "engine-test-admin-token-0123456789";
/// The channel the simulator serves.
pub const CHANNEL: &str = "mychannel";
/// The service holding the test functions in the runtime.
pub const SERVICE: &str = "engine";
/// How long any wait may take before the test fails: generous, because the CPU is shared.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `probe` every 20 ms until it returns `Some`, failing the test after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TOML string literal (quoted and escaped).
pub fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// The Fabric side

/// A peer simulator over TLS serving the recorded fixture blocks, then generated `taskmgr` blocks, and the files a
/// daemon needs to reach it (TLS CA, User1's certificate and key).
pub struct Network {
    /// The simulator (stopped on drop).
    pub peer: RunningPeer,
    /// Which real network's blocks and identities it serves.
    pub recording: Recording,
    /// Holds the TLS CA file.
    _dir: tempfile::TempDir,
    /// The TLS CA certificate the daemon trusts.
    tls_ca: PathBuf,
    /// The channel it serves ([`CHANNEL`] unless started with [`Network::start_channel`]).
    pub channel: String,
}

impl Network {
    /// [`Network::start`] serving the recording under another channel name (a second channel for a daemon).
    pub async fn start_channel(channel: &str, interval: Option<Duration>) -> Network {
        let pki = TlsPki::new();
        let recording = Recording::V2_5;
        let config = PeerSimConfig {
            channel_id: channel.to_owned(),
            ..Self::sim_config(&pki, recording, recording.blocks(), interval)
        };
        let peer = RunningPeer::start(config).await;
        Network {
            channel: channel.to_owned(),
            ..Self::with_peer(pki, recording, peer)
        }
    }

    /// Starts the simulator on the Fabric v2.5 recording; `interval` generates a block that often (else only on
    /// [`Network::generate`]).
    pub async fn start(interval: Option<Duration>) -> Network {
        Network::start_recording(Recording::V2_5, interval).await
    }

    /// Starts the simulator on a recording (Fabric v2.5 with etcdraft, or v3.1 with SmartBFT).
    pub async fn start_recording(recording: Recording, interval: Option<Duration>) -> Network {
        Network::start_blocks(recording, recording.blocks(), interval).await
    }

    /// Starts the simulator on `blocks` (e.g. a recording's, altered) with a recording's identities.
    pub async fn start_blocks(
        recording: Recording,
        blocks: Vec<bytes::Bytes>,
        interval: Option<Duration>,
    ) -> Network {
        let pki = TlsPki::new();
        let config = Self::sim_config(&pki, recording, blocks, interval);
        let peer = RunningPeer::start(config).await;
        Self::with_peer(pki, recording, peer)
    }

    /// [`Network::start`] plus a second peer of the same channel (the same ledger, its own faults), for failover
    /// between peers; reach both with [`Network::channel_toml_for`].
    pub async fn start_with_replica(interval: Option<Duration>) -> (Network, RunningPeer) {
        let pki = TlsPki::new();
        let recording = Recording::V2_5;
        let config = Self::sim_config(&pki, recording, recording.blocks(), interval);
        let (peer, replica) = RunningPeer::start_pair(config).await;
        (Self::with_peer(pki, recording, peer), replica)
    }

    fn sim_config(
        pki: &TlsPki,
        recording: Recording,
        blocks: Vec<bytes::Bytes>,
        interval: Option<Duration>,
    ) -> PeerSimConfig {
        let base = PeerSimConfig {
            blocks,
            ..PeerSimConfig::from_recording(recording)
        };
        let signer = base
            .generator
            .as_ref()
            .expect("the fixture configuration has a generator")
            .signer
            .clone();
        PeerSimConfig {
            tls: Some(pki.server_tls(false)),
            generator: Some(GeneratorConfig { signer, interval }),
            ..base
        }
    }

    fn with_peer(pki: TlsPki, recording: Recording, peer: RunningPeer) -> Network {
        let dir = test_dir("engine-net-");
        let tls_ca = dir.path().join("tls-ca.pem");
        std::fs::write(&tls_ca, pki.ca.cert_pem()).expect("write the TLS CA");
        Network {
            peer,
            recording,
            _dir: dir,
            tls_ca,
            channel: CHANNEL.to_owned(),
        }
    }

    /// Controls the simulator (faults, blocks).
    pub fn handle(&self) -> &PeerSimHandle {
        &self.peer.handle
    }

    /// The chain's height (number of blocks).
    pub fn height(&self) -> u64 {
        self.peer.handle.height()
    }

    /// Generates `count` blocks now; returns the last one's number.
    pub fn generate(&self, count: u64) -> u64 {
        let mut last = 0;
        for _ in 0..count {
            last = self
                .peer
                .handle
                .generate_block()
                .expect("the simulator generates a block");
        }
        last
    }

    /// The `[[channels]]` table reaching the simulator by IP over TLS, checking the peer's name, as User1.
    pub fn channel_toml(&self) -> String {
        self.channel_toml_after(&[])
    }

    /// [`Network::channel_toml`] with other peers listed before the simulator (e.g. addresses nobody listens
    /// on), to see the daemon fail over.
    pub fn channel_toml_after(&self, first_peers: &[&str]) -> String {
        self.channel_toml_with("", first_peers)
    }

    /// [`Network::channel_toml_after`] with more keys in the channel table (e.g. `rendering = "v3"\n`).
    pub fn channel_toml_with(&self, keys: &str, first_peers: &[&str]) -> String {
        let simulator = self.peer.address.to_string();
        let addresses: Vec<&str> = first_peers
            .iter()
            .copied()
            .chain([simulator.as_str()])
            .collect();
        self.channel_toml_at(keys, &addresses)
    }

    /// The `[[channels]]` table with the given simulators as its peers, in this order.
    pub fn channel_toml_for(&self, peers: &[&RunningPeer]) -> String {
        let addresses: Vec<String> = peers.iter().map(|peer| peer.address.to_string()).collect();
        let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
        self.channel_toml_at("", &addresses)
    }

    fn channel_toml_at(&self, keys: &str, addresses: &[&str]) -> String {
        let msp = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(self.recording.fixture_dir())
            .join("msp");
        let mut text = format!(
            "[[channels]]\nname = {channel}\nmsp_id = \"Org1MSP\"\ncertificate = {cert}\nkey = {key}\n{keys}",
            channel = toml_str(&self.channel),
            cert = toml_str(path_text(&msp.join("user1_signcert.pem"))),
            key = toml_str(path_text(&msp.join("user1_key.pem"))),
        );
        for address in addresses {
            text.push_str(&format!(
                "\n[[channels.peers]]\naddress = {address}\ntls_ca = {ca}\nserver_name = {name}\n",
                address = toml_str(address),
                ca = toml_str(path_text(&self.tls_ca)),
                name = toml_str(PEER_NAME),
            ));
        }
        text
    }
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

// ---------------------------------------------------------------------------------------------------------------
// Functions in the bundled runtime

/// The bundled runtime (signed, on port 0) with the `engine` service; the test handlers note every call in
/// their log (`MARK <event id>`).
pub struct Functions {
    /// The runtime and its signed client.
    pub runtime: TestRuntime,
    /// Runtime data, under a private folder.
    _dir: tempfile::TempDir,
}

/// A test handler under `fixtures/functions/engine/`.
#[derive(Debug, Clone, Copy)]
pub enum Handler {
    /// Python: notes the event id, then raises.
    Fail,
    /// Node.js: notes the event id and succeeds.
    Record,
}

impl Functions {
    /// Starts a signed runtime and creates the `engine` service.
    pub async fn start() -> Functions {
        let dir = test_dir("engine-fc-");
        let runtime = TestRuntime::start(&dir.path().join("data"), TestRuntime::signed).await;
        runtime.create_service(SERVICE).await;
        Functions { runtime, _dir: dir }
    }

    /// Creates `function` from a test handler through the runtime's API; its calls are noted in its log.
    pub async fn create(&self, function: &str, handler: Handler) {
        let (runtime, file, folder) = match handler {
            Handler::Fail => ("python3", "index.py", "fail"),
            Handler::Record => ("nodejs20", "index.js", "record"),
        };
        let source_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/functions/engine")
            .join(folder)
            .join(file);
        let source = std::fs::read_to_string(&source_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", source_path.display()));
        self.runtime
            .create_function(SERVICE, function, runtime, &[(file, &source)], json!({}))
            .await;
    }

    /// The event ids `function` was called with, in call order.
    pub fn calls(&self, function: &str) -> Vec<String> {
        marks(&self.runtime.runtime, SERVICE, function)
    }

    /// A `[triggers.target.function_compute]` table for `function`, signing with the test key from a file.
    pub fn target_toml(&self, function: &str, secret_file: &Path) -> String {
        format!(
            "[triggers.target.function_compute]\nendpoint = {endpoint}\nservice = {service}\nfunction = {function}\n\
             credentials = {{ access_key_id = {id}, access_key_secret = {{ file = {secret} }} }}\n",
            endpoint = toml_str(&self.runtime.url),
            service = toml_str(SERVICE),
            function = toml_str(function),
            id = toml_str(KEY_ID),
            secret = toml_str(path_text(secret_file)),
        )
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The HTTP receiver

/// How the receiver answers pushes to one hook.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 at once.
    Accept,
    /// This status to the next `n` pushes, then 200.
    FailNext(u32, u16),
    /// This status forever.
    Status(u16),
    /// Waits this long, then 200.
    Delay(Duration),
}

/// One push the receiver saw.
#[derive(Debug, Clone)]
pub struct Push {
    /// The `X-Chaintrigger-Envelope-Id` header: the event envelope's BaaS `id`.
    pub event_id: String,
    /// The `X-Chaintrigger-Event-Id` header: `<channel>/<block>/<event index>/<output>`.
    pub delivery_id: String,
    /// The payload (the JSON body of a POST, the `event` parameter of a GET).
    pub payload: Value,
    /// Every header, for checks on authentication and configured headers.
    pub headers: HeaderMap,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
struct ReceiverState {
    /// Pushes by hook, in arrival order.
    pushes: Mutex<HashMap<String, Vec<Push>>>,
    /// Answers by hook (default: accept).
    behaviours: Mutex<HashMap<String, Behaviour>>,
}

/// An HTTP endpoint on port 0 with one hook per trigger (`/hook/<name>`), recording every push.
pub struct Receiver {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// What was pushed and how to answer, shared with the server.
    state: Arc<ReceiverState>,
    /// Stops the server when the test ends.
    shutdown: CancellationToken,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook/{name}", axum::routing::any(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let address: SocketAddr = listener.local_addr().expect("receiver address");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Receiver {
            url: format!("http://{address}"),
            state,
            shutdown,
        }
    }

    /// The URL of one hook.
    pub fn hook_url(&self, hook: &str) -> String {
        format!("{}/hook/{hook}", self.url)
    }

    /// A `[triggers.target.http]` table posting to one hook.
    pub fn target_toml(&self, hook: &str) -> String {
        format!(
            "[triggers.target.http]\nurl = {}\n",
            toml_str(&self.hook_url(hook))
        )
    }

    /// Sets how one hook answers from now on.
    pub fn set(&self, hook: &str, behaviour: Behaviour) {
        self.state
            .behaviours
            .lock()
            .expect("receiver lock")
            .insert(hook.to_owned(), behaviour);
    }

    /// Every push to one hook so far, accepted or not.
    pub fn pushes(&self, hook: &str) -> Vec<Push> {
        self.state
            .pushes
            .lock()
            .expect("receiver lock")
            .get(hook)
            .cloned()
            .unwrap_or_default()
    }

    /// The event ids of the pushes one hook accepted (2xx), in order.
    pub fn accepted(&self, hook: &str) -> Vec<String> {
        self.pushes(hook)
            .into_iter()
            .filter(|p| (200..300).contains(&p.status))
            .map(|p| p.event_id)
            .collect()
    }

    /// Waits until one hook has accepted at least `count` pushes; returns their event ids.
    pub async fn wait_accepted(&self, hook: &str, count: usize, within: Duration) -> Vec<String> {
        eventually(
            &format!("{count} accepted pushes on {hook}"),
            within,
            || {
                let accepted = self.accepted(hook);
                std::future::ready((accepted.len() >= count).then_some(accepted))
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    UrlPath(hook): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let behaviour = {
        let mut behaviours = state.behaviours.lock().expect("receiver lock");
        let current = behaviours.get(&hook).cloned().unwrap_or(Behaviour::Accept);
        if let Behaviour::FailNext(n, status) = current {
            let next = if n > 1 {
                Behaviour::FailNext(n - 1, status)
            } else {
                Behaviour::Accept
            };
            behaviours.insert(hook.clone(), next);
        }
        current
    };
    let status = match behaviour {
        Behaviour::Accept => 200,
        Behaviour::FailNext(_, status) | Behaviour::Status(status) => status,
        Behaviour::Delay(delay) => {
            tokio::time::sleep(delay).await;
            200
        }
    };
    let payload = if body.is_empty() {
        query
            .as_deref()
            .and_then(|q| {
                url_pairs(q)
                    .into_iter()
                    .find(|(k, _)| k == "event")
                    .map(|(_, v)| v)
            })
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let push = Push {
        event_id: header("x-chaintrigger-envelope-id").unwrap_or_default(),
        delivery_id: header("x-chaintrigger-event-id").unwrap_or_default(),
        payload,
        headers: headers.clone(),
        status,
    };
    state
        .pushes
        .lock()
        .expect("receiver lock")
        .entry(hook)
        .or_default()
        .push(push);
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://q/?{query}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------------
// The daemon's configuration

/// One `[[triggers]]` entry.
#[derive(Debug, Clone)]
pub struct TriggerSpec {
    /// The trigger's name: how the admin API, the store and the receiver's hook know it.
    pub name: String,
    /// `Block`, `Tx`, `Contract`, `Config` or `*`.
    pub event: String,
    /// `(language, expression)`.
    pub filter: Option<(&'static str, String)>,
    /// The whole `[triggers.target.*]` table.
    pub target: String,
    /// Discards tolerated before Failed (-1: never).
    pub failure_threshold: i64,
    /// Attempts per event; few, so failure accounting is quick to observe.
    pub attempts: u32,
    /// Tiny delays between attempts keep failing tests fast.
    pub initial_delay: &'static str,
    /// The cap on the delay between attempts.
    pub max_delay: &'static str,
    /// How long one push may take; above the slow receiver's delay where a test needs that.
    pub attempt_timeout: &'static str,
    /// `None`: the default (latest).
    pub start: Option<u64>,
    /// Also Contract events of invalid transactions.
    pub include_invalid: bool,
    /// `false` declares the trigger disabled.
    pub enabled: bool,
    /// Its channel ([`CHANNEL`] by default).
    pub channel: String,
}

impl TriggerSpec {
    /// A trigger of `event` events to `target`, with fast retries, from block 0.
    pub fn new(name: &str, event: &str, target: String) -> TriggerSpec {
        TriggerSpec {
            name: name.to_owned(),
            event: event.to_owned(),
            filter: None,
            target,
            failure_threshold: -1,
            attempts: 3,
            initial_delay: "5ms",
            max_delay: "20ms",
            attempt_timeout: "5s",
            start: Some(0),
            include_invalid: false,
            enabled: true,
            channel: CHANNEL.to_owned(),
        }
    }

    pub fn toml(&self) -> String {
        let mut text = format!(
            "[[triggers]]\nname = {}\nchannel = {}\nevent = {}\nfailure_threshold = {}\nenabled = {}\ninclude_invalid = {}\n",
            toml_str(&self.name),
            toml_str(&self.channel),
            toml_str(&self.event),
            self.failure_threshold,
            self.enabled,
            self.include_invalid,
        );
        if let Some(start) = self.start {
            text.push_str(&format!("start = {start}\n"));
        }
        if let Some((language, filter)) = &self.filter {
            text.push_str(&format!(
                "filter = {}\nfilter_language = {}\n",
                toml_str(filter),
                toml_str(language)
            ));
        }
        text.push_str(&format!(
            "[triggers.retry]\nattempts = {}\ninitial_delay = {}\nmax_delay = {}\nattempt_timeout = {}\n",
            self.attempts,
            toml_str(self.initial_delay),
            toml_str(self.max_delay),
            toml_str(self.attempt_timeout),
        ));
        text.push_str(&self.target);
        text
    }
}

/// A folder with the daemon's TOML, its database, its secret files and its log.
pub struct DaemonFiles {
    /// Everything the daemon reads and writes; removed when the test ends.
    pub dir: tempfile::TempDir,
    /// The admin API's port, fixed so a restarted daemon is found at the same address.
    pub admin_port: u16,
}

impl DaemonFiles {
    pub fn new() -> DaemonFiles {
        let dir = test_dir("engine-daemon-");
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("write the admin token");
        std::fs::write(dir.path().join("fc-secret"), KEY_SECRET).expect("write the FC secret");
        let admin_port = super::free_port();
        DaemonFiles { dir, admin_port }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("chaintrigger.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("chaintrigger.db")
    }

    /// The file holding the test access key secret (for Function Compute targets).
    pub fn fc_secret(&self) -> PathBuf {
        self.dir.path().join("fc-secret")
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Writes the TOML: the daemon's settings, the channel and the triggers.
    pub fn write_config(&self, network: &Network, triggers: &[TriggerSpec]) {
        self.write_config_with_channel(&network.channel_toml(), triggers);
    }

    /// Writes the TOML with the given `[[channels]]` table.
    pub fn write_config_with_channel(&self, channel: &str, triggers: &[TriggerSpec]) {
        let mut text = format!(
            "instance_id = \"csi-engine-test\"\ndatabase = \"chaintrigger.db\"\n\n\
             [admin]\nlisten = \"127.0.0.1:{}\"\ntoken = {{ file = \"admin-token\" }}\n\n{channel}\n",
            self.admin_port,
        );
        for trigger in triggers {
            text.push('\n');
            text.push_str(&trigger.toml());
        }
        self.write_raw(&text);
    }

    /// Writes the TOML as given (for broken files).
    pub fn write_raw(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write the configuration");
    }

    /// The daemon's log so far (stderr of every run, appended).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Every trigger's record, read from the daemon's SQLite file with the store (while the daemon is stopped).
    pub fn stored_triggers(&self) -> HashMap<String, TriggerRecord> {
        let store = SqliteStore::open(&self.database()).expect("open the daemon's database");
        store
            .triggers()
            .expect("read the stored triggers")
            .into_iter()
            .map(|record| (record.name.to_string(), record))
            .collect()
    }

    /// The event ids of a trigger's dead letters in the daemon's SQLite file, oldest first.
    pub fn stored_dead_letters(&self, trigger: &str) -> Vec<String> {
        let store = SqliteStore::open(&self.database()).expect("open the daemon's database");
        let name = TriggerName::new(trigger).expect("a valid trigger name");
        store
            .dead_letters(&DeadLetterQuery {
                trigger: Some(&name),
                include_repushed: true,
                limit: None,
            })
            .expect("read the dead letters")
            .into_iter()
            .map(|letter| letter.letter.event_id)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The daemon

/// The daemon with the given `[[channels]]` table and one trigger, `blocks`, pushing every Block event from block 0
/// to the receiver's `blocks` hook; returned once its admin API answers.
pub async fn blocks_daemon(channel: &str, receiver: &Receiver) -> (DaemonFiles, Daemon) {
    let files = DaemonFiles::new();
    files.write_config_with_channel(
        channel,
        &[TriggerSpec::new(
            "blocks",
            "Block",
            receiver.target_toml("blocks"),
        )],
    );
    let daemon = Daemon::start(&files).await;
    (files, daemon)
}

/// The real `chaintrigger serve` process; killed (SIGKILL) on drop.
pub struct Daemon {
    /// The process, to kill or signal it.
    child: tokio::process::Child,
    /// Talks to its admin API.
    pub admin: Admin,
}

impl Daemon {
    /// Starts `chaintrigger serve --config <files>/chaintrigger.toml` and waits until its admin API answers.
    pub async fn start(files: &DaemonFiles) -> Daemon {
        let mut daemon = Daemon::spawn(files);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the daemon exited with {status} at start:\n{}", files.log());
            }
            if daemon.admin.healthy().await {
                return daemon;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon's admin API did not answer within {PATIENCE:?}:\n{}",
                files.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the process without waiting for it to be ready (to kill it while it starts up).
    pub fn spawn(files: &DaemonFiles) -> Daemon {
        chaintrigger::install_crypto_provider();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(files.dir.path().join("daemon.log"))
            .expect("open the daemon log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
            .arg("serve")
            .arg("--config")
            .arg(files.config_path())
            .env("RUST_LOG", "info")
            .env_remove("CHAINTRIGGER_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start the chaintrigger binary");
        Daemon {
            child,
            admin: Admin::new(files.admin_url()),
        }
    }

    /// `kill -9`, and waits until the process is gone.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL the daemon");
        self.child.wait().await.expect("reap the daemon");
    }

    /// The process id (a daemon's lease owner id names it).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the daemon is running")
    }

    /// SIGHUP: the daemon reloads its configuration.
    pub fn hangup(&self) {
        let pid = self.child.id().expect("the daemon is running");
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        assert_eq!(sent, 0, "SIGHUP to the daemon");
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("the daemon is running");
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signal {signal} to the daemon");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (at most `within`) for the process to exit; its status, or `None` if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("reap the daemon"))
    }

    /// SIGTERM, and waits (bounded) for a clean exit.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("the daemon is running");
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to the daemon");
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the daemon stops on SIGTERM")
            .expect("reap the daemon");
        assert!(status.success(), "the daemon exited with {status}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The admin API

/// A client of the admin API with the test token.
#[derive(Clone)]
pub struct Admin {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// One keep-alive client for every call.
    client: reqwest::Client,
}

impl Admin {
    pub fn new(url: String) -> Admin {
        chaintrigger::install_crypto_provider();
        Admin {
            url,
            client: reqwest::Client::new(),
        }
    }

    async fn healthy(&self) -> bool {
        matches!(
            self.client.get(format!("{}/healthz", self.url)).send().await,
            Ok(response) if response.status().is_success()
        )
    }

    /// Sends a request with the token; returns the status and the JSON answer.
    pub async fn call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin API {path}: {e}"));
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("admin API body");
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, json)
    }

    /// `GET /v1/triggers/{name}`; panics unless 200.
    pub async fn trigger(&self, name: &str) -> Value {
        let (status, body) = self
            .call(reqwest::Method::GET, &format!("/v1/triggers/{name}"))
            .await;
        assert_eq!(status, 200, "GET trigger {name}: {body}");
        body
    }

    /// Every listed trigger by name.
    pub async fn triggers(&self) -> HashMap<String, Value> {
        let (status, body) = self.call(reqwest::Method::GET, "/v1/triggers").await;
        assert_eq!(status, 200, "GET triggers: {body}");
        body["triggers"]
            .as_array()
            .expect("a list of triggers")
            .iter()
            .map(|t| (t["name"].as_str().unwrap_or_default().to_owned(), t.clone()))
            .collect()
    }

    /// A command that must succeed (`POST /v1/triggers/{name}/{command}`).
    pub async fn command(&self, name: &str, command: &str) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/triggers/{name}/{command}"),
            )
            .await;
        assert_eq!(status, 200, "{command} {name}: {body}");
        body
    }

    /// Waits until the trigger's status satisfies `condition`; returns that status.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(&format!("trigger {name}: {what}"), PATIENCE, || async {
            let (status, body) = self
                .call(reqwest::Method::GET, &format!("/v1/triggers/{name}"))
                .await;
            (status == 200 && condition(&body)).then_some(body)
        })
        .await
    }

    /// Waits until the trigger is in `state`.
    pub async fn wait_state(&self, name: &str, state: &str) -> Value {
        self.wait_for(name, &format!("state {state}"), |t| t["state"] == state)
            .await
    }

    /// Waits until the trigger has processed every block below `height`.
    pub async fn wait_position(&self, name: &str, block: u64) -> Value {
        self.wait_for(name, &format!("position at block {block}"), |t| {
            t["position"]["block"].as_u64() >= Some(block)
        })
        .await
    }

    /// `GET /v1/channels`: the first (in these tests, the only) channel's status; panics unless 200.
    pub async fn channel(&self) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, "/v1/channels").await;
        assert_eq!(status, 200, "GET channels: {body}");
        body["channels"][0].clone()
    }

    /// Every dead letter of a trigger (one page, enough for tests).
    pub async fn dead_letters(&self, name: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/triggers/{name}/dead-letters?limit=1000"),
            )
            .await;
        assert_eq!(status, 200, "dead letters of {name}: {body}");
        body["dead_letters"]
            .as_array()
            .expect("a list of dead letters")
            .clone()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What the chain holds

/// The ids of the events of `event_type` (or `*` for all) in blocks `from..to` of the simulator, in chain order,
/// as the daemon makes them (Contract events of invalid transactions left out).
pub fn expected_ids(handle: &PeerSimHandle, event_type: &str, from: u64, to: u64) -> Vec<String> {
    expected_ids_with(handle, event_type, false, from, to)
}

/// [`expected_ids`], with or without the Contract events of invalid transactions.
pub fn expected_ids_with(
    handle: &PeerSimHandle,
    event_type: &str,
    include_invalid: bool,
    from: u64,
    to: u64,
) -> Vec<String> {
    let options = ExtractOptions {
        instance_id: "csi-engine-test".to_owned(),
        include_invalid,
        ..ExtractOptions::default()
    };
    let mut ids = Vec::new();
    for number in from..to {
        let bytes = handle.block(number).expect("the block exists");
        let block = decode_block(&bytes).unwrap_or_else(|e| panic!("block {number} decodes: {e}"));
        ids.extend(
            extract(&block, &options)
                .into_iter()
                .filter(|event| event_type == "*" || event.event_type().as_str() == event_type)
                .map(|event| event.id().to_owned()),
        );
    }
    ids
}

/// Removes repeats that come right after a crash: keeps the first arrival of each id, in arrival order.
pub fn first_arrivals(ids: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.iter().filter(|id| seen.insert(*id)).cloned().collect()
}

/// Runs `chaintrigger triggers <args>` against the daemon with the token from its file; returns
/// `(success, stdout, stderr)`.
pub async fn cli(files: &DaemonFiles, args: &[&str]) -> (bool, String, String) {
    let token = files.dir.path().join("admin-token");
    let admin = files.admin_url();
    let mut all: Vec<&std::ffi::OsStr> = vec![
        "triggers".as_ref(),
        "--admin".as_ref(),
        admin.as_ref(),
        "--token-file".as_ref(),
        token.as_os_str(),
    ];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    run_cli(&all).await
}

/// Runs the `chaintrigger` binary with `args`, without the admin API's environment variables and with
/// `RUST_BACKTRACE=1` (so a backtrace on an operator's mistake would show); returns `(success, stdout, stderr)`.
pub async fn run_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("CHAINTRIGGER_ADMIN_TOKEN")
        .env_remove("CHAINTRIGGER_ADMIN_URL")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, output)
        .await
        .expect("the CLI finishes")
        .expect("run the CLI");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The block-event ids `block-<from>` .. `block-<to - 1>`.
pub fn block_ids(from: u64, to: u64) -> Vec<String> {
    (from..to).map(|n| format!("block-{n}")).collect()
}
