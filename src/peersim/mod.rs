//! A Fabric peer simulator: the `protos.Deliver/Deliver` service over gRPC (TLS or plaintext), for tests and the
//! demo.
//!
//! It serves recorded blocks (a real Fabric v2.5 or v3.1 network, see [`fixture::Recording`]) and appends
//! generated ones: signed, hash-chained `taskmgr` transactions with chaincode events, TRANSACTIONS_FILTER
//! metadata and some invalid transactions, and on demand configuration updates (see [`block`]). Every block it
//! serves verifies as a real peer's do: its data hash and its chain onto the block before. It behaves like a
//! real peer where a client can tell:
//!
//! - each request's signature must verify and be low-S, and the creator's certificate must be issued by the
//!   configured org CA under the configured MSP id, else FORBIDDEN; under mutual TLS the request's
//!   `tls_cert_hash` must be the SHA-256 of the client certificate, else FORBIDDEN;
//! - an unknown channel is NOT_FOUND; a start beyond the height is NOT_FOUND at once; a start at the height waits
//!   for the next block; a bounded seek ends with SUCCESS after its last block.
//!
//! Faults can be injected through [`PeerSimHandle::set_faults`] (dropped streams, slow blocks, error statuses,
//! duplicate or missing blocks, a stale peer that stops receiving blocks, a frozen peer). Start it with [`run`] on
//! a listener bound by the caller (port 0 in tests); [`PeerSim::replica`] makes another peer of the same channel
//! (the same ledger, its own faults), to test failover between peers.
//!
//! Like a real peer (grpc-go), a Deliver call gets its response headers with its first response, not before: on
//! a quiet channel a client hears nothing at all until the next block. The simulator counts the Deliver calls
//! open on it ([`PeerSimHandle::open_streams`], and a log line at each open and close), so tests can check that
//! clients close what they no longer need; at shutdown it ends every call, and after [`SHUTDOWN_GRACE`] every
//! connection, whether or not the client closes its side.

pub mod block;
mod connection;
pub mod fixture;
pub mod pki;
mod service;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::fabric::deliver::StatusCode;
use crate::fabric::identity::{CertificateKey, Identity, MspId};
use crate::fabric::proto::common;
use block::{BlockInputs, ChainTip, TaskSchedule};
use fixture::Recording;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum PeerSimError {
    #[error("recorded block #{index} is not a valid block: {reason}")]
    BadRecordedBlock { index: usize, reason: String },
    #[error(
        "recorded block #{index} has number {number}; blocks must be numbered 0, 1, 2, ... in order"
    )]
    OutOfOrder { index: usize, number: u64 },
    #[error("cannot append block {got}: the next block must be {expected}")]
    WrongNumber { expected: u64, got: u64 },
    #[error("cannot generate a block: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("gRPC server failed: {0}")]
    Serve(String),
}

/// TLS for the simulator's server side.
#[derive(Clone)]
pub struct ServerTls {
    /// The server certificate chain (PEM).
    pub cert_pem: Bytes,
    /// The server's private key (PEM).
    pub key_pem: Bytes,
    /// When set, clients must present a certificate issued by this CA (mutual TLS).
    pub client_ca_pem: Option<Bytes>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// How the simulator makes new blocks.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Signs the generated transactions (creator, endorser and block signature).
    pub signer: Arc<Identity>,
    /// Time between generated blocks; `None` generates only on [`PeerSimHandle::generate_block`].
    pub interval: Option<Duration>,
}

/// Faults to inject, for testing clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Lasting: serve the chain only below this height, as a peer cut off from the orderer does (it stops
    /// receiving blocks): streams wait at it, and requests see it as the chain's height. `None`: the whole chain.
    pub height_limit: Option<u64>,
    /// Lasting: every connection of this peer stops moving bytes both ways, new ones included (TCP up, nothing
    /// flowing, HTTP/2 pings unanswered), as with a frozen peer process or a black-holed path.
    pub frozen: bool,
    /// One-shot: the next stream is cut (no status) after sending this many blocks.
    pub drop_after_blocks: Option<u64>,
    /// Wait before sending each block.
    pub block_delay: Duration,
    /// Answer every request with this status instead of blocks (until cleared).
    pub refuse_with: Option<StatusCode>,
    /// One-shot: the next stream sends its first block twice.
    pub duplicate_first_block: bool,
    /// One-shot: the next stream leaves out its second block.
    pub skip_second_block: bool,
    /// One-shot: the next stream stops sending after this many blocks but stays open (a stalled stream on a
    /// connection that still works: other requests are answered).
    pub hang_after_blocks: Option<u64>,
    /// Lasting: a request for just the newest block is answered with an empty block numbered this height - 1 (a
    /// peer lying about its height, or a broken one); the blocks themselves are served as they are.
    pub claim_height: Option<u64>,
    /// Lasting: blocks from this number on are altered as they are sent (the ledger keeps the true ones), as by a
    /// compromised peer or a corrupting path.
    pub tamper: Option<Tamper>,
}

/// Which blocks a peer alters, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tamper {
    /// The first block altered.
    pub from: u64,
    /// What is changed.
    pub how: Tampering,
}

/// What a tampering peer changes in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tampering {
    /// One byte of the first transaction's payload: the header's `data_hash` no longer matches the data.
    Data,
    /// The header's `previous_hash`: the block no longer chains onto the block before it.
    PreviousHash,
}

/// Everything the simulator needs.
#[derive(Debug, Clone)]
pub struct PeerSimConfig {
    /// The one channel it serves; any other is NOT_FOUND.
    pub channel_id: String,
    /// Blocks to serve from the start, numbered 0, 1, 2, ... (e.g. [`fixture::recorded_blocks`]).
    pub blocks: Vec<Bytes>,
    /// Readers policy, part 1: creators must belong to this MSP.
    pub msp_id: MspId,
    /// Readers policy, part 2: creators' certificates must be issued by this CA.
    pub org_ca: CertificateKey,
    /// Makes new blocks; `None` serves only `blocks` (and whatever is appended through the handle).
    pub generator: Option<GeneratorConfig>,
    /// Server TLS; `None` serves plaintext gRPC.
    pub tls: Option<ServerTls>,
}

impl PeerSimConfig {
    /// The embedded Fabric v2.5 recording: see [`PeerSimConfig::from_recording`].
    pub fn from_fixtures() -> Self {
        PeerSimConfig::from_recording(Recording::V2_5)
    }

    /// An embedded recording: channel `mychannel`, its recorded blocks, Org1MSP with the recording's Org1 CA,
    /// and a generator signing as the recording's User1 (no automatic interval, no TLS).
    pub fn from_recording(recording: Recording) -> Self {
        let org_ca = CertificateKey::from_pem(recording.org1_ca_pem(), "embedded org1_ca.pem")
            .expect("the embedded Org1 CA is a valid P-256 certificate");
        PeerSimConfig {
            channel_id: fixture::CHANNEL.to_owned(),
            blocks: recording.blocks(),
            msp_id: MspId::new(fixture::MSP_ID).expect("non-empty MSP id"),
            org_ca,
            generator: Some(GeneratorConfig {
                signer: Arc::new(recording_user1(recording)),
                interval: None,
            }),
            tls: None,
        }
    }
}

/// The v2.5 recording's User1 identity of Org1MSP (embedded test material).
pub fn fixture_user1() -> Identity {
    recording_user1(Recording::V2_5)
}

/// A recording's User1 identity of Org1MSP (embedded test material).
pub fn recording_user1(recording: Recording) -> Identity {
    Identity::from_pem(
        MspId::new(fixture::MSP_ID).expect("non-empty MSP id"),
        recording.user1_cert_pem(),
        "embedded user1_signcert.pem",
        recording.user1_key_pem(),
        "embedded user1_key.pem",
    )
    .expect("the embedded User1 certificate and key match")
}

/// The most transactions a generated block holds (the schedule makes 1 to 3).
const MAX_GENERATED_TRANSACTIONS: usize = 3;

/// The chain and the generator's state.
struct Chain {
    /// Every block, by number.
    blocks: Vec<Bytes>,
    /// What the next generated block chains onto.
    tip: Option<ChainTip>,
    /// Which transactions to generate next.
    schedule: TaskSchedule,
}

/// The channel's ledger and Readers policy: shared by a simulator and its replicas, as peers of one channel share
/// the chain.
pub(crate) struct Ledger {
    channel_id: String,
    msp_id: MspId,
    org_ca: CertificateKey,
    signer: Option<Arc<Identity>>,
    chain: Mutex<Chain>,
    /// Publishes the height so waiting streams wake up when a block is appended.
    height: watch::Sender<u64>,
}

impl Ledger {
    fn lock_chain(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One simulated peer: the ledger it serves and what is its own (faults, counters, connections).
pub(crate) struct Shared {
    ledger: Arc<Ledger>,
    /// The injected faults; streams watch them (a height limit lifted, a freeze).
    faults: watch::Sender<Faults>,
    /// Deliver requests received: lets tests act once a client's request has arrived.
    requests: watch::Sender<u64>,
    /// Deliver calls open on this peer right now.
    open_streams: watch::Sender<u64>,
    /// Bumped to cut every open stream (a peer restart, as its clients see it).
    cuts: watch::Sender<u64>,
    /// Freezes or closes this peer's connections.
    gate: Arc<connection::Gate>,
}

impl Shared {
    fn new(ledger: Arc<Ledger>) -> Self {
        Shared {
            ledger,
            faults: watch::Sender::new(Faults::default()),
            requests: watch::Sender::new(0),
            open_streams: watch::Sender::new(0),
            cuts: watch::Sender::new(0),
            gate: Arc::new(connection::Gate::default()),
        }
    }

    fn faults(&self) -> Faults {
        self.faults.borrow().clone()
    }

    /// The height this peer shows: the chain's, or less under a height limit.
    pub(crate) fn height(&self) -> u64 {
        let height = *self.ledger.height.borrow();
        match self.faults.borrow().height_limit {
            Some(limit) => height.min(limit),
            None => height,
        }
    }

    /// Block `number`, if this peer has it.
    pub(crate) fn block(&self, number: u64) -> Option<Bytes> {
        if number >= self.height() {
            return None;
        }
        let index = usize::try_from(number).ok()?;
        self.ledger.lock_chain().blocks.get(index).cloned()
    }
}

/// A configured simulator, ready to [`run`].
pub struct PeerSim {
    shared: Arc<Shared>,
    tls: Option<ServerTls>,
    interval: Option<Duration>,
}

impl PeerSim {
    /// Checks the recorded blocks (numbered 0, 1, 2, ...) and prepares the simulator.
    pub fn new(config: PeerSimConfig) -> Result<Self, PeerSimError> {
        let mut tip = None;
        for (index, bytes) in config.blocks.iter().enumerate() {
            let block_tip = ChainTip::of_block(bytes)
                .map_err(|reason| PeerSimError::BadRecordedBlock { index, reason })?;
            if block_tip.number != index as u64 {
                return Err(PeerSimError::OutOfOrder {
                    index,
                    number: block_tip.number,
                });
            }
            tip = Some(block_tip);
        }
        let height = config.blocks.len() as u64;
        let interval = config.generator.as_ref().and_then(|g| g.interval);
        let ledger = Ledger {
            channel_id: config.channel_id,
            msp_id: config.msp_id,
            org_ca: config.org_ca,
            signer: config.generator.map(|g| g.signer),
            chain: Mutex::new(Chain {
                blocks: config.blocks,
                tip,
                schedule: TaskSchedule::default(),
            }),
            height: watch::Sender::new(height),
        };
        Ok(PeerSim {
            shared: Arc::new(Shared::new(Arc::new(ledger))),
            tls: config.tls,
            interval,
        })
    }

    /// Another peer of the same channel: it serves the same chain (blocks appended or generated through either
    /// handle reach both) with the same TLS identity, and has its own faults, counters and connections. It does
    /// not generate blocks itself.
    pub fn replica(&self) -> PeerSim {
        PeerSim {
            shared: Arc::new(Shared::new(self.shared.ledger.clone())),
            tls: self.tls.clone(),
            interval: None,
        }
    }

    /// A handle to inspect and drive the simulator while it runs.
    pub fn handle(&self) -> PeerSimHandle {
        PeerSimHandle {
            shared: self.shared.clone(),
        }
    }
}

/// Controls a simulator from tests, the demo or the CLI.
#[derive(Clone)]
pub struct PeerSimHandle {
    shared: Arc<Shared>,
}

impl PeerSimHandle {
    /// The number of blocks in the chain (the next block's number), whatever this peer's height limit.
    pub fn height(&self) -> u64 {
        *self.shared.ledger.height.borrow()
    }

    /// The bytes of block `number`, if the chain has it.
    pub fn block(&self, number: u64) -> Option<Bytes> {
        let index = usize::try_from(number).ok()?;
        self.shared.ledger.lock_chain().blocks.get(index).cloned()
    }

    /// How many Deliver requests the simulator has received.
    pub fn requests(&self) -> u64 {
        *self.shared.requests.borrow()
    }

    /// Watches the number of Deliver requests received (a signal for tests, instead of polling).
    pub fn subscribe_requests(&self) -> watch::Receiver<u64> {
        self.shared.requests.subscribe()
    }

    /// How many Deliver calls are open on this peer right now (a client that dropped a stream it no longer needs
    /// must not leave one behind).
    pub fn open_streams(&self) -> u64 {
        *self.shared.open_streams.borrow()
    }

    /// Watches [`PeerSimHandle::open_streams`].
    pub fn subscribe_open_streams(&self) -> watch::Receiver<u64> {
        self.shared.open_streams.subscribe()
    }

    /// Cuts every Deliver stream open on this peer now, without a status (as a peer restart does); clients
    /// reconnect.
    pub fn cut_streams(&self) {
        self.shared.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Makes this peer stale from now on: it keeps serving, but only the blocks it has now (a peer cut off from
    /// the orderer). `set_faults` with `height_limit: None` lifts it.
    pub fn go_stale(&self) {
        let height = self.shared.height();
        self.shared
            .faults
            .send_modify(|faults| faults.height_limit = Some(height));
    }

    /// Freezes (`true`) or thaws this peer's connections: see [`Faults::frozen`].
    pub fn freeze(&self, frozen: bool) {
        self.shared
            .faults
            .send_modify(|faults| faults.frozen = frozen);
        self.shared.gate.set_frozen(frozen);
    }

    /// Appends a block made elsewhere; its number must be the current height.
    pub fn append_block(&self, bytes: Bytes) -> Result<u64, PeerSimError> {
        let tip = ChainTip::of_block(&bytes).map_err(|reason| PeerSimError::BadRecordedBlock {
            index: self.height() as usize,
            reason,
        })?;
        let mut chain = self.shared.ledger.lock_chain();
        let expected = chain.blocks.len() as u64;
        if tip.number != expected {
            return Err(PeerSimError::WrongNumber {
                expected,
                got: tip.number,
            });
        }
        chain.blocks.push(bytes);
        chain.tip = Some(tip);
        let height = chain.blocks.len() as u64;
        drop(chain);
        self.shared.ledger.height.send_replace(height);
        Ok(height - 1)
    }

    /// Generates the next `taskmgr` block now and returns its number.
    pub fn generate_block(&self) -> Result<u64, PeerSimError> {
        self.append_generated(|chain, tip, signer, inputs| {
            let transactions = chain.schedule.next_block();
            inputs.nonces.truncate(transactions.len());
            Ok(block::build_block(tip, &transactions, signer, inputs))
        })
    }

    /// Appends a config block now and returns its number: the channel's current configuration (from its last
    /// config block) as `change` edits it, in a config update signed by the generator's signer (see
    /// [`block::build_config_block`]). Fails when `change` changes nothing.
    pub fn update_config(
        &self,
        change: impl FnOnce(&mut common::Config),
    ) -> Result<u64, PeerSimError> {
        self.append_generated(|chain, tip, signer, inputs| {
            let last_config = usize::try_from(tip.last_config)
                .ok()
                .and_then(|n| chain.blocks.get(n))
                .ok_or_else(|| format!("the last config block {} is missing", tip.last_config))?;
            let current = block::block_config(last_config)
                .map_err(|e| format!("block {}: {e}", tip.last_config))?;
            let mut updated = current.clone();
            change(&mut updated);
            block::build_config_block(tip, &current, updated, signer, inputs)
        })
    }

    /// Builds the block after the chain's tip with `build` (given fresh nonces and the time) and appends it.
    fn append_generated(
        &self,
        build: impl FnOnce(
            &mut Chain,
            &ChainTip,
            &Identity,
            &mut BlockInputs<'_>,
        ) -> Result<Bytes, String>,
    ) -> Result<u64, PeerSimError> {
        let signer = self
            .shared
            .ledger
            .signer
            .clone()
            .ok_or_else(|| PeerSimError::Generate("no generator is configured".to_owned()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut chain = self.shared.ledger.lock_chain();
        let tip = chain.tip.clone().ok_or_else(|| {
            PeerSimError::Generate(
                "the chain is empty: a generated block needs a block to chain onto".to_owned(),
            )
        })?;
        let nonces = (0..MAX_GENERATED_TRANSACTIONS)
            .map(|_| {
                let mut nonce = [0u8; 24];
                rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
                nonce
            })
            .collect();
        let mut inputs = BlockInputs {
            channel_id: &self.shared.ledger.channel_id,
            timestamp: prost_types::Timestamp {
                seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
            },
            nonces,
        };
        let bytes =
            build(&mut chain, &tip, &signer, &mut inputs).map_err(PeerSimError::Generate)?;
        let new_tip = ChainTip::of_block(&bytes).map_err(PeerSimError::Generate)?;
        let number = new_tip.number;
        chain.blocks.push(bytes);
        chain.tip = Some(new_tip);
        drop(chain);
        self.shared.ledger.height.send_replace(number + 1);
        Ok(number)
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.gate.set_frozen(faults.frozen);
        self.shared.faults.send_replace(faults);
    }

    /// The faults currently set (one-shot faults disappear once used).
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }
}

/// How long connections may take to close after shutdown before the simulator cuts them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves the simulator on `listener` until `shutdown` is cancelled; generates blocks at the configured interval
/// meanwhile. Open streams end at shutdown; connections a client keeps open are cut after [`SHUTDOWN_GRACE`], so
/// this returns within that time of `shutdown` (a frozen peer included).
pub async fn run(
    listener: TcpListener,
    sim: PeerSim,
    shutdown: CancellationToken,
) -> Result<(), PeerSimError> {
    let handle = sim.handle();
    let generator = sim.interval.map(|interval| {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match handle.generate_block() {
                    Ok(number) => tracing::debug!(number, "generated block"),
                    Err(error) => {
                        tracing::error!(%error, "block generator stopped");
                        return;
                    }
                }
            }
        })
    });
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &sim.tls {
        let mut config = tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
        );
        if let Some(client_ca) = &tls.client_ca_pem {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(client_ca))
                .client_auth_optional(false);
        }
        server = server
            .tls_config(config)
            .map_err(|e| PeerSimError::Tls(e.to_string()))?;
    }
    let service = service::DeliverService::new(sim.shared.clone(), shutdown.clone());
    let gate = sim.shared.gate.clone();
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        move |accepted| {
            accepted.map(|io| {
                // As a Fabric peer (Go sets it on every TCP connection): a block's frames go out as written.
                let _ = io.set_nodelay(true);
                connection::SimConnection::new(io, gate.clone())
            })
        },
    );
    let cutter = {
        let gate = sim.shared.gate.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            gate.close();
        })
    };
    let result = server
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await
        .map_err(|e| PeerSimError::Serve(e.to_string()));
    if let Some(generator) = generator {
        generator.abort();
    }
    cutter.abort();
    result
}
