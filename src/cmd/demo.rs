//! `chaintrigger demo`: a self-contained look at the event stream. It starts the peer simulator in this process
//! (the embedded recording of a real Fabric network plus a generated `taskmgr` block every second) behind TLS
//! with a freshly generated CA, follows the channel with the Deliver client over that TLS connection, and
//! prints one line per event until Ctrl-C. Nothing outside the binary is needed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::cmd::tail::{Format, parse_start, print_block};
use crate::events::ExtractOptions;
use crate::fabric::decode::BlockDecoder;
use crate::fabric::deliver::{
    ChannelConfig, ClientTls, DeliverError, DeliverOptions, PeerEndpoint, Subscription, TlsCa,
};
use crate::peersim::pki::TestCa;
use crate::peersim::{self, GeneratorConfig, PeerSim, PeerSimConfig, ServerTls};

/// The name in the simulator's generated TLS certificate; the client reaches it by IP and checks this name.
const PEER_TLS_NAME: &str = "peer0.org1.example.com";

/// Arguments of `chaintrigger demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Milliseconds between generated blocks.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Where to start: `newest`, `oldest` or a block number.
    #[arg(long, default_value = "oldest")]
    pub start: String,
    /// Output format: `compact` (one readable line per event) or `json` (the envelopes).
    #[arg(long, value_enum, default_value_t = Format::Compact)]
    pub format: Format,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let start = parse_start(&args.start).map_err(|e| anyhow::anyhow!("--start: {e}"))?;
    let ca = TestCa::new("tlsca.org1.example.com", "org1.example.com")?;
    let server = ca.issue(PEER_TLS_NAME, &[PEER_TLS_NAME])?;
    let identity = Arc::new(peersim::fixture_user1());
    let sim = PeerSim::new(PeerSimConfig {
        generator: Some(GeneratorConfig {
            signer: identity.clone(),
            interval: Some(Duration::from_millis(args.interval_ms.max(1))),
        }),
        tls: Some(ServerTls {
            cert_pem: Bytes::from(server.cert_pem),
            key_pem: Bytes::from(server.key_pem),
            client_ca_pem: None,
        }),
        ..PeerSimConfig::from_fixtures()
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1")?;
    let address = listener.local_addr().context("listener address")?;
    let shutdown = CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let simulator = tokio::spawn(peersim::run(listener, sim, shutdown.clone()));
    eprintln!(
        "peer simulator on {address} (TLS, channel `{}`); following it from {}. Ctrl-C to stop.",
        peersim::fixture::CHANNEL,
        args.start
    );

    let config = ChannelConfig {
        channel_id: peersim::fixture::CHANNEL.to_owned(),
        peers: vec![PeerEndpoint {
            address: address.to_string(),
            tls_server_name: Some(PEER_TLS_NAME.to_owned()),
        }],
        tls: Some(ClientTls {
            ca: TlsCa::from_pem(ca.cert_pem().to_owned(), "generated TLS CA")?,
            client_certificate: None,
        }),
        identity,
        options: DeliverOptions::default(),
    };
    let options = ExtractOptions {
        instance_id: "chaintrigger-demo".to_owned(),
        include_invalid: false,
    };
    let mut subscription = Subscription::new(config, start, shutdown.clone());
    let mut decoder = BlockDecoder::new();
    let outcome = loop {
        match subscription.next_block().await {
            Ok(block) => print_block(
                &mut decoder,
                block.number,
                block.bytes,
                &options,
                args.format,
            )?,
            Err(DeliverError::Shutdown { .. }) => break Ok(()),
            Err(error) => break Err(error).context("following the simulated channel"),
        }
    };
    shutdown.cancel();
    simulator.await.context("peer simulator task")??;
    outcome
}
