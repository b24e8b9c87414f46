//! `chaintrigger peersim`: run the Fabric peer simulator (Deliver service) until Ctrl-C.
//!
//! By default it serves the embedded recording of a real Fabric v2.5 network (channel `mychannel`, blocks
//! 0-23; `--recording v3.1` serves the Fabric v3.1 SmartBFT network's blocks 0-10 instead), accepts requests
//! signed by identities of the recording's Org1 CA under `Org1MSP` (such as its User1), and appends a generated
//! `taskmgr` block every second.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::fabric::deliver::StatusCode;
use crate::fabric::identity::{CertificateKey, Identity, MspId};
use crate::peersim::fixture::Recording;
use crate::peersim::pki::TestCa;
use crate::peersim::{self, Faults, GeneratorConfig, PeerSim, PeerSimConfig, ServerTls, fixture};

/// Names the generated TLS server certificate is valid for.
pub const GENERATED_TLS_NAMES: [&str; 3] = ["peer0.org1.example.com", "localhost", "127.0.0.1"];

/// Arguments of `chaintrigger peersim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7051")]
    pub listen: SocketAddr,
    /// The embedded recording to serve: `v2.5` (etcdraft) or `v3.1` (SmartBFT, `V3_0` capability); its Org1
    /// CA and User1 are the defaults of `--org-ca` and `--signer-cert/--signer-key`.
    #[arg(long, default_value = "v2.5", value_name = "v2.5|v3.1")]
    pub recording: Recording,
    /// Serve `block_<n>.pb` files from this directory instead of the embedded recording.
    #[arg(long, value_name = "DIR")]
    pub blocks_dir: Option<PathBuf>,
    /// The channel served.
    #[arg(long, default_value = fixture::CHANNEL)]
    pub channel: String,
    /// Milliseconds between generated blocks; 0 generates none.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Readers policy: the MSP id creators must claim.
    #[arg(long, default_value = fixture::MSP_ID)]
    pub msp_id: String,
    /// Readers policy: the CA that must have issued creators' certificates (default: the recording's Org1 CA).
    #[arg(long, value_name = "FILE")]
    pub org_ca: Option<PathBuf>,
    /// Certificate that signs generated blocks (default: the recording's User1).
    #[arg(long, value_name = "FILE", requires = "signer_key")]
    pub signer_cert: Option<PathBuf>,
    /// Key that signs generated blocks (PKCS#8 PEM).
    #[arg(long, value_name = "FILE", requires = "signer_cert")]
    pub signer_key: Option<PathBuf>,
    /// Serve TLS with this certificate (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "generate_tls"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate a TLS CA and server certificate (for peer0.org1.example.com, localhost, 127.0.0.1), write
    /// `tls-ca.pem`, `tls-server.pem` and `tls-server.key` into DIR, and serve TLS with them.
    #[arg(long, value_name = "DIR")]
    pub generate_tls: Option<PathBuf>,
    /// Require client certificates issued by this CA (mutual TLS).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Fault: cut the first stream after this many blocks.
    #[arg(long, value_name = "N")]
    pub drop_after: Option<u64>,
    /// Fault: wait this long before each block.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub block_delay_ms: u64,
    /// Fault: answer every request with this status, e.g. 503 (SERVICE_UNAVAILABLE) or 403 (FORBIDDEN).
    #[arg(long, value_name = "STATUS")]
    pub refuse_with: Option<i32>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = simulator_config(&args)?;
    let tls = config.tls.is_some();
    let sim = PeerSim::new(config)?;
    let handle = sim.handle();
    handle.set_faults(Faults {
        drop_after_blocks: args.drop_after,
        block_delay: Duration::from_millis(args.block_delay_ms),
        refuse_with: args.refuse_with.map(StatusCode),
        ..Faults::default()
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        address = %listener.local_addr().unwrap_or(args.listen),
        channel = %args.channel,
        height = handle.height(),
        tls,
        "peer simulator serving /protos.Deliver/Deliver"
    );
    let shutdown = CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    peersim::run(listener, sim, shutdown).await?;
    Ok(())
}

fn simulator_config(args: &Args) -> anyhow::Result<PeerSimConfig> {
    let msp_id = MspId::new(args.msp_id.clone()).context("--msp-id")?;
    let org_ca = match &args.org_ca {
        Some(path) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            CertificateKey::from_pem(&pem, &path.display().to_string())?
        }
        None => PeerSimConfig::from_recording(args.recording).org_ca,
    };
    let blocks = match &args.blocks_dir {
        Some(dir) => read_blocks_dir(dir)?,
        None => args.recording.blocks(),
    };
    let signer = match (&args.signer_cert, &args.signer_key) {
        (Some(cert), Some(key)) => Identity::load(msp_id.clone(), cert, key)?,
        _ => peersim::recording_user1(args.recording),
    };
    let tls = if let Some(dir) = &args.generate_tls {
        Some(generate_tls(dir)?)
    } else if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        Some(ServerTls {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: None,
        })
    } else {
        tracing::warn!(
            "serving plaintext gRPC: pass --generate-tls DIR or --tls-cert/--tls-key for TLS"
        );
        None
    };
    let tls = match (tls, &args.client_ca) {
        (Some(tls), Some(ca)) => Some(ServerTls {
            client_ca_pem: Some(read(ca)?),
            ..tls
        }),
        (None, Some(_)) => bail!("--client-ca needs TLS (--generate-tls or --tls-cert/--tls-key)"),
        (tls, None) => tls,
    };
    Ok(PeerSimConfig {
        channel_id: args.channel.clone(),
        blocks,
        msp_id,
        org_ca,
        generator: Some(GeneratorConfig {
            signer: Arc::new(signer),
            interval: (args.interval_ms > 0).then(|| Duration::from_millis(args.interval_ms)),
        }),
        tls,
    })
}

fn read(path: &Path) -> anyhow::Result<Bytes> {
    std::fs::read(path)
        .map(Bytes::from)
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Reads `block_<n>.pb` files, which must be numbered 0, 1, 2, ... without holes.
fn read_blocks_dir(dir: &Path) -> anyhow::Result<Vec<Bytes>> {
    let mut numbered = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot read directory {}", dir.display()))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(number) = name
            .strip_prefix("block_")
            .and_then(|rest| rest.strip_suffix(".pb"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            numbered.push((number, path));
        }
    }
    numbered.sort();
    let mut blocks = Vec::with_capacity(numbered.len());
    for (index, (number, path)) in numbered.into_iter().enumerate() {
        if number != index as u64 {
            bail!(
                "{}: expected block_{index}.pb next, found {}: block files must be numbered from 0 without holes",
                dir.display(),
                path.display()
            );
        }
        blocks.push(read(&path)?);
    }
    if blocks.is_empty() {
        bail!("{}: no block_<n>.pb files", dir.display());
    }
    Ok(blocks)
}

/// Generates a TLS CA and a server certificate and writes them into `dir` for clients to use.
pub fn generate_tls(dir: &Path) -> anyhow::Result<ServerTls> {
    let ca = TestCa::new("tlsca.org1.example.com", "org1.example.com")?;
    let server = ca.issue(GENERATED_TLS_NAMES[0], &GENERATED_TLS_NAMES)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, content) in [
        ("tls-ca.pem", ca.cert_pem()),
        ("tls-server.pem", server.cert_pem.as_str()),
        ("tls-server.key", server.key_pem.as_str()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(ca = %dir.join("tls-ca.pem").display(), "generated TLS certificates");
    Ok(ServerTls {
        cert_pem: Bytes::from(server.cert_pem),
        key_pem: Bytes::from(server.key_pem),
        client_ca_pem: None,
    })
}
