//! Fabric helpers: a throwaway TLS PKI, a peer simulator on port 0, and Deliver client configurations with
//! short backoffs so that reconnect tests are fast.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chaintrigger::fabric::deliver::{
    BackoffPolicy, ChannelConfig, ClientCertificate, ClientTls, DeliverOptions, PeerEndpoint, TlsCa,
};
use chaintrigger::fabric::identity::{Identity, MspId};
use chaintrigger::peersim::pki::{IssuedCertificate, TestCa};
use chaintrigger::peersim::{self, PeerSim, PeerSimConfig, PeerSimHandle, ServerTls};
use tokio_util::sync::CancellationToken;

/// The name in the simulator's TLS certificate, as on a real network.
pub const PEER_NAME: &str = "peer0.org1.example.com";

/// The fixture directory of the real Fabric network.
pub fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fabric-v2.5")
        .join(relative)
}

/// The raw bytes of a recorded block.
pub fn recorded_block(number: u64) -> Vec<u8> {
    let path = fixture_path(&format!("blocks/block_{number}.pb"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The fixture's User1 identity, loaded from its files.
pub fn user1() -> Arc<Identity> {
    Arc::new(
        Identity::load(
            MspId::new("Org1MSP").expect("non-empty"),
            &fixture_path("msp/user1_signcert.pem"),
            &fixture_path("msp/user1_key.pem"),
        )
        .expect("fixture identity"),
    )
}

/// A TLS CA with a server certificate for the simulator.
pub struct TlsPki {
    pub ca: TestCa,
    pub server: IssuedCertificate,
}

impl TlsPki {
    /// The server certificate names `peer0.org1.example.com` and `localhost` only: reaching it by IP needs the
    /// server-name override, as with real Fabric peers in containers.
    pub fn new() -> Self {
        chaintrigger::install_crypto_provider();
        let ca = TestCa::new("tlsca.org1.example.com", "org1.example.com").expect("CA");
        let server = ca
            .issue(PEER_NAME, &[PEER_NAME, "localhost"])
            .expect("server cert");
        TlsPki { ca, server }
    }

    pub fn server_tls(&self, mutual: bool) -> ServerTls {
        ServerTls {
            cert_pem: Bytes::from(self.server.cert_pem.clone()),
            key_pem: Bytes::from(self.server.key_pem.clone()),
            client_ca_pem: mutual.then(|| Bytes::from(self.ca.cert_pem().to_owned())),
        }
    }

    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca: TlsCa::from_pem(self.ca.cert_pem().to_owned(), "test TLS CA").expect("CA"),
            client_certificate: None,
        }
    }

    /// Client TLS with a client certificate issued by the same CA (mutual TLS).
    pub fn mutual_client_tls(&self) -> ClientTls {
        let client = self
            .ca
            .issue("client.org1.example.com", &[])
            .expect("client cert");
        ClientTls {
            client_certificate: Some(
                ClientCertificate::from_pem(
                    client.cert_pem,
                    "client cert",
                    client.key_pem,
                    "client key",
                )
                .expect("client certificate"),
            ),
            ..self.client_tls()
        }
    }
}

/// A simulator running on 127.0.0.1:<port 0>; stops when dropped.
pub struct RunningPeer {
    pub address: SocketAddr,
    pub handle: PeerSimHandle,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), peersim::PeerSimError>>>,
}

impl RunningPeer {
    pub async fn start(config: PeerSimConfig) -> Self {
        chaintrigger::install_crypto_provider();
        let sim = PeerSim::new(config).expect("simulator config");
        Self::serve(sim).await
    }

    /// Two peers of one channel: the same ledger (blocks generated or appended through either handle reach
    /// both), each with its own faults, counters and connections.
    pub async fn start_pair(config: PeerSimConfig) -> (Self, Self) {
        chaintrigger::install_crypto_provider();
        let sim = PeerSim::new(config).expect("simulator config");
        let replica = sim.replica();
        (Self::serve(sim).await, Self::serve(replica).await)
    }

    /// The fixture pair of peers ([`RunningPeer::start_pair`]), with optional TLS.
    pub async fn fixture_pair(tls: Option<ServerTls>) -> (Self, Self) {
        Self::start_pair(PeerSimConfig {
            tls,
            ..PeerSimConfig::from_fixtures()
        })
        .await
    }

    async fn serve(sim: PeerSim) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let handle = sim.handle();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(peersim::run(listener, sim, shutdown.clone()));
        RunningPeer {
            address,
            handle,
            shutdown,
            task: Some(task),
        }
    }

    /// The fixture simulator (24 recorded blocks, generator signing as User1), with optional TLS.
    pub async fn fixtures(tls: Option<ServerTls>) -> Self {
        Self::start(PeerSimConfig {
            tls,
            ..PeerSimConfig::from_fixtures()
        })
        .await
    }

    /// The endpoint to reach it by IP, checking `PEER_NAME` in its certificate.
    pub fn endpoint(&self) -> PeerEndpoint {
        PeerEndpoint {
            address: self.address.to_string(),
            tls_server_name: Some(PEER_NAME.to_owned()),
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("stopped once");
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the simulator stops promptly");
        result.expect("task").expect("simulator ran cleanly");
    }
}

impl Drop for RunningPeer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Reconnects after 5-20 ms so reconnect tests take milliseconds.
pub fn fast_options() -> DeliverOptions {
    DeliverOptions {
        connect_timeout: Duration::from_secs(5),
        backoff: BackoffPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
        },
        ..DeliverOptions::default()
    }
}

/// A channel configuration for `mychannel` as User1.
pub fn channel_config(peers: Vec<PeerEndpoint>, tls: Option<ClientTls>) -> ChannelConfig {
    ChannelConfig {
        channel_id: "mychannel".to_owned(),
        peers,
        tls,
        identity: user1(),
        options: fast_options(),
    }
}

/// Waits until the simulator has exactly `expected` Deliver streams open (at most 20 s); returns how long it took.
pub async fn wait_open_streams(handle: &PeerSimHandle, expected: u64) -> Duration {
    let started = std::time::Instant::now();
    let mut open = handle.subscribe_open_streams();
    let reached = tokio::time::timeout(Duration::from_secs(20), async {
        while *open.borrow_and_update() != expected {
            open.changed().await.expect("the simulator runs");
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "the simulator has {} Deliver streams open, expected {expected}",
        handle.open_streams()
    );
    started.elapsed()
}

/// The numbers of the next `count` blocks of a subscription (each within 20 s).
pub async fn next_numbers(
    subscription: &mut chaintrigger::fabric::deliver::Subscription,
    count: usize,
) -> Vec<u64> {
    let mut numbers = Vec::new();
    for _ in 0..count {
        let block = within("a block", subscription.next_block())
            .await
            .expect("a block");
        numbers.push(block.number);
    }
    numbers
}

/// Waits at most 20 s for a future that should complete much sooner (turns a hang into a failure).
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
