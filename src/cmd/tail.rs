//! `chaintrigger tail`: follow a channel on a peer and print its events as they arrive (JSON lines by default).
//!
//! Settings come from flags or from a TOML file with a `[channel]` section (flags win):
//!
//! ```toml
//! [channel]
//! name = "mychannel"
//! peers = [{ address = "127.0.0.1:7051", tls_server_name = "peer0.org1.example.com" }]
//! tls_ca = "msp/org1_tlsca.pem"          # relative paths are relative to this file
//! msp_id = "Org1MSP"
//! cert = "msp/user1_signcert.pem"
//! key = "msp/user1_key.pem"
//! start = "newest"                       # or "oldest", or a block number
//! rendering = "v3"                       # optional: "v2.5" or "v3" (default: learned from the channel)
//! ```
//!
//! Events are rendered as the daemon renders the channel's ("Fabric versions" in the README): pinned by
//! `--rendering`, else learned from the channel's last config block (named by the first block received; one
//! extra one-block request) and from every config block that follows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::events::{ExtractOptions, Rendering, extract};
use crate::fabric::decode::BlockDecoder;
use crate::fabric::deliver::{
    ChannelConfig, ClientCertificate, ClientTls, DeliverError, DeliverOptions, PeerEndpoint,
    StartPosition, Subscription, TlsCa,
};
use crate::fabric::identity::{Identity, MspId};
use crate::trigger::channel::{ChannelRendering, LastConfig, read_last_config};

/// Arguments of `chaintrigger tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A small TOML file of its own with a `[channel]` section (not the daemon's configuration); flags override it.
    ///
    /// It reads only a `[channel]` table with these keys (relative paths are relative to the file):
    ///
    ///   name = "mychannel"                            the channel (--channel)
    ///   address = "127.0.0.1:7051"                    one peer (--peer), or:
    ///   peers = [{ address = "...", tls_server_name = "peer0.org1.example.com" }]
    ///   tls_server_name = "peer0.org1.example.com"    with `address` (--server-name)
    ///   tls_ca = "msp/org1_tlsca.pem"                 the peers' TLS CA (--tls-ca)
    ///   plaintext = false                             plaintext gRPC, test networks only (--plaintext)
    ///   client_cert = "...", client_key = "..."       mutual TLS (--client-cert, --client-key)
    ///   msp_id = "Org1MSP"                            the signing identity (--msp-id)
    ///   cert = "msp/user1_signcert.pem"               its certificate (--cert)
    ///   key = "msp/user1_key.pem"                     its key, PKCS#8 PEM (--key)
    ///   start = "newest"                              or "oldest", or a block number (--start)
    ///
    /// Any other key is an error. To read a channel of a daemon configuration instead, use
    /// `chaintrigger filter test --config FILE --channel-blocks FROM..TO`.
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub config: Option<PathBuf>,
    /// Peer address `host:port`; repeat for failover (tried in turn).
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// The name to check in the peers' TLS certificates when it differs from the address.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// PEM file with the CA certificate(s) of the peers' TLS certificates.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Talk plaintext gRPC instead of TLS (test networks only).
    #[arg(long, conflicts_with = "tls_ca")]
    pub plaintext: bool,
    /// Client certificate for mutual TLS (PEM).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Client key for mutual TLS (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The MSP id of the signing identity, e.g. Org1MSP.
    #[arg(long, value_name = "ID")]
    pub msp_id: Option<String>,
    /// The signing certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The signing key (PKCS#8 PEM, P-256).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The channel to follow.
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,
    /// Where to start: `newest`, `oldest` or a block number (default: newest).
    #[arg(long, value_name = "WHERE")]
    pub start: Option<String>,
    /// Stop after this many blocks (default: follow until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub blocks: Option<u64>,
    /// Output format: `json` (one envelope per line) or `compact` (one readable line per event).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// The `instance_id` written into every envelope.
    #[arg(long, default_value = "chaintrigger")]
    pub instance_id: String,
    /// Also print Contract events of transactions the peer marked invalid.
    #[arg(long)]
    pub include_invalid: bool,
    /// Render `content.data` as Fabric `v2.5`'s configtxlator (empty bytes are `null`) or `v3`'s (`""`).
    /// Default: learned from the channel's last config block (`v3` when it has the `V3_0` capability).
    #[arg(long, value_name = "v2.5|v3")]
    pub rendering: Option<Rendering>,
}

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Compact,
}

/// The `[channel]` section of a tail configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelSection {
    /// The channel to follow.
    name: Option<String>,
    /// Shortcut for a single peer.
    address: Option<String>,
    /// TLS name of the single peer given by `address`.
    tls_server_name: Option<String>,
    /// Peers tried in turn.
    #[serde(default)]
    peers: Vec<PeerSection>,
    /// CA of the peers' TLS certificates.
    tls_ca: Option<PathBuf>,
    /// Plaintext gRPC instead of TLS.
    #[serde(default)]
    plaintext: bool,
    /// Mutual TLS client certificate.
    client_cert: Option<PathBuf>,
    /// Mutual TLS client key.
    client_key: Option<PathBuf>,
    /// The signing identity's MSP.
    msp_id: Option<String>,
    /// The signing certificate.
    cert: Option<PathBuf>,
    /// The signing key.
    key: Option<PathBuf>,
    /// `newest`, `oldest` or a block number.
    start: Option<StartSetting>,
    /// `v2.5` or `v3`: how events are rendered (default: learned from the channel).
    rendering: Option<Rendering>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSection {
    /// `host:port`.
    address: String,
    /// The name in the peer's TLS certificate, when it differs from the address.
    tls_server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StartSetting {
    Number(u64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TailFile {
    /// The channel to follow and how.
    channel: ChannelSection,
}

/// Parses `newest`, `oldest` or a block number.
pub fn parse_start(text: &str) -> Result<StartPosition, String> {
    match text.trim() {
        "newest" => Ok(StartPosition::Newest),
        "oldest" => Ok(StartPosition::Block(0)),
        number => number
            .parse()
            .map(StartPosition::Block)
            .map_err(|_| format!("expected `newest`, `oldest` or a block number, found `{text}`")),
    }
}

fn load_file(path: &Path) -> anyhow::Result<ChannelSection> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: TailFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: Option<PathBuf>| p.map(|p| if p.is_relative() { base.join(p) } else { p });
    let mut section = file.channel;
    section.tls_ca = resolve(section.tls_ca);
    section.client_cert = resolve(section.client_cert);
    section.client_key = resolve(section.client_key);
    section.cert = resolve(section.cert);
    section.key = resolve(section.key);
    Ok(section)
}

/// Merges flags over the file and checks that everything needed is there.
fn channel_config(
    args: &Args,
) -> anyhow::Result<(ChannelConfig, StartPosition, Option<Rendering>)> {
    let file = match &args.config {
        Some(path) => load_file(path)?,
        None => ChannelSection::default(),
    };
    let source = args
        .config
        .as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default();
    let missing = |field: &str, flag: &str| match &args.config {
        Some(path) => anyhow::anyhow!(
            "{}: channel.{field} is missing: set it in the file or pass {flag}",
            path.display()
        ),
        None => anyhow::anyhow!("channel.{field} is missing: pass {flag} (or --config FILE)"),
    };

    let peers: Vec<PeerEndpoint> = if !args.peers.is_empty() {
        args.peers
            .iter()
            .map(|address| PeerEndpoint {
                address: address.clone(),
                tls_server_name: args.server_name.clone(),
            })
            .collect()
    } else if !file.peers.is_empty() {
        if file.address.is_some() {
            bail!("{source}channel: set either `address` or `peers`, not both");
        }
        file.peers
            .into_iter()
            .map(|p| PeerEndpoint {
                address: p.address,
                tls_server_name: args.server_name.clone().or(p.tls_server_name),
            })
            .collect()
    } else if let Some(address) = file.address {
        vec![PeerEndpoint {
            address,
            tls_server_name: args.server_name.clone().or(file.tls_server_name),
        }]
    } else {
        return Err(missing("peers", "--peer"));
    };
    let channel_id = args
        .channel
        .clone()
        .or(file.name)
        .ok_or_else(|| missing("name", "--channel"))?;
    let msp_id = args
        .msp_id
        .clone()
        .or(file.msp_id)
        .ok_or_else(|| missing("msp_id", "--msp-id"))?;
    let cert = args
        .cert
        .clone()
        .or(file.cert)
        .ok_or_else(|| missing("cert", "--cert"))?;
    let key = args
        .key
        .clone()
        .or(file.key)
        .ok_or_else(|| missing("key", "--key"))?;
    let identity = Identity::load(MspId::new(msp_id).context("channel.msp_id")?, &cert, &key)?;

    let plaintext = args.plaintext || (file.plaintext && args.tls_ca.is_none());
    let tls = if plaintext {
        None
    } else {
        let ca_path = args.tls_ca.clone().or(file.tls_ca).ok_or_else(|| {
            missing(
                "tls_ca",
                "--tls-ca (or --plaintext for a test network without TLS)",
            )
        })?;
        let client_certificate = match (
            args.client_cert.clone().or(file.client_cert),
            args.client_key.clone().or(file.client_key),
        ) {
            (Some(cert), Some(key)) => Some(ClientCertificate::load(&cert, &key)?),
            (None, None) => None,
            _ => bail!("{source}channel: client_cert and client_key go together (mutual TLS)"),
        };
        Some(ClientTls {
            ca: TlsCa::load(&ca_path)?,
            client_certificate,
        })
    };
    let start = match (&args.start, file.start) {
        (Some(text), _) => parse_start(text).map_err(|e| anyhow::anyhow!("--start: {e}"))?,
        (None, Some(StartSetting::Number(n))) => StartPosition::Block(n),
        (None, Some(StartSetting::Word(word))) => {
            parse_start(&word).map_err(|e| anyhow::anyhow!("{source}channel.start: {e}"))?
        }
        (None, None) => StartPosition::Newest,
    };
    let config = ChannelConfig {
        channel_id,
        peers,
        tls,
        identity: Arc::new(identity),
        options: DeliverOptions::default(),
    };
    Ok((config, start, args.rendering.or(file.rendering)))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let (config, start, pinned) = channel_config(&args)?;
    let mut rendering = pinned.map_or(ChannelRendering::Unknown, ChannelRendering::Pinned);
    let mut options = ExtractOptions {
        instance_id: args.instance_id.clone(),
        include_invalid: args.include_invalid,
        ..ExtractOptions::default()
    };
    let shutdown = CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let channel = config.channel_id.clone();
    let deliver = config.clone();
    let mut subscription = Subscription::new(config, start, shutdown.clone());
    let mut decoder = BlockDecoder::new();
    let mut remaining = args.blocks;
    while remaining != Some(0) {
        let block = match subscription.next_block().await {
            Ok(block) => block,
            Err(DeliverError::Shutdown { .. }) => break,
            // Only what retrying cannot fix comes out of the subscription: say what to change.
            Err(error) => {
                let hint = fix_hint(&error, &channel);
                return Err(anyhow::Error::new(error).context(format!(
                    "cannot follow channel `{channel}`{}",
                    hint.map(|hint| format!(": {hint}")).unwrap_or_default()
                )));
            }
        };
        let decoded = match decoder.decode_bytes(block.bytes) {
            Ok(decoded) => decoded,
            Err(error) => {
                eprintln!("error: block {}: {error}", block.number);
                remaining = remaining.map(|n| n - 1);
                continue;
            }
        };
        if rendering == ChannelRendering::Unknown {
            match read_last_config(&deliver, decoded.clone(), &shutdown).await {
                LastConfig::Read(config) => follow(&mut rendering, &config),
                LastConfig::Unreadable(reason) => {
                    eprintln!(
                        "note: the channel's last config block cannot be read ({reason}): events are rendered as \
                         v2.5 until the next config block; pass --rendering to choose"
                    );
                    rendering.follow(decoded.number, Rendering::default());
                }
                LastConfig::Shutdown => break,
            }
        }
        follow(&mut rendering, &decoded);
        options.rendering = rendering.current();
        print_events(&decoded, &options, args.format)?;
        remaining = remaining.map(|n| n - 1);
    }
    Ok(())
}

/// What the operator can change for an error retrying cannot fix, in `tail`'s own terms (flags and file keys).
fn fix_hint(error: &DeliverError, channel: &str) -> Option<String> {
    use crate::fabric::deliver::StatusCode;
    match error {
        DeliverError::Tls { message, .. } if message.contains("requires a client certificate") => Some(
            "the peer requires mutual TLS: pass --client-cert and --client-key (or client_cert / client_key in the file)"
                .to_owned(),
        ),
        DeliverError::Tls { .. } => Some(
            "check --tls-ca, --server-name and the client certificate against the peer's TLS setup".to_owned(),
        ),
        DeliverError::Refused { status, .. } if *status == StatusCode::FORBIDDEN => Some(format!(
            "the identity (--msp-id, --cert) is not a reader of `{channel}` on the peer, or the request's signature or TLS binding was refused"
        )),
        DeliverError::Refused { status, start, .. } if *status == StatusCode::NOT_FOUND => Some(format!(
            "the peer does not serve channel `{channel}`, or {start} is beyond its chain"
        )),
        _ => None,
    }
}

/// Takes the rendering of `block` when it is a config block (unless pinned).
fn follow(rendering: &mut ChannelRendering, block: &crate::fabric::decode::Block) {
    if let Some(config) = block.config() {
        rendering.follow(block.number, Rendering::of_config(config));
    }
}

/// Prints a block's events; its decode problems go to stderr and do not stop the tail.
fn print_events(
    block: &crate::fabric::decode::Block,
    options: &ExtractOptions,
    format: Format,
) -> anyhow::Result<()> {
    for error in block.errors() {
        eprintln!("error: block {}: {error}", block.number);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for event in extract(block, options) {
        match format {
            Format::Json => {
                serde_json::to_writer(&mut out, event.envelope()).context("writing to stdout")?
            }
            Format::Compact => out
                .write_all(compact_line(event.envelope()).as_bytes())
                .context("writing to stdout")?,
        }
        out.write_all(b"\n").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")
}

/// One readable line for an event envelope: type, id, then what matters for the type.
pub fn compact_line(envelope: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let kind = text(&envelope["type"]);
    let id = text(&envelope["id"]);
    let content = &envelope["content"];
    let detail = match kind.as_str() {
        "Block" => format!(
            "{} transaction(s), hash {}",
            content["transactions"].as_array().map_or(0, Vec::len),
            shorten(&text(&content["hash"]), 16)
        ),
        "Tx" => format!(
            "{} {} by {}",
            text(&content["to"]),
            text(&content["state"]),
            text(&content["from"])
        ),
        "Contract" => {
            let payload = base64::engine::general_purpose::STANDARD
                .decode(text(content))
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            format!("{} {}", text(&envelope["name"]), shorten(&payload, 100))
        }
        "Config" => match text(&content["from"]) {
            from if from.is_empty() => "channel configuration".to_owned(),
            from => format!("channel configuration update by {from}"),
        },
        _ => String::new(),
    };
    format!("{kind:<8} {:<24} {detail}", shorten(&id, 24))
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!(parse_start("newest"), Ok(StartPosition::Newest));
        assert_eq!(parse_start("oldest"), Ok(StartPosition::Block(0)));
        assert_eq!(parse_start("17"), Ok(StartPosition::Block(17)));
        assert!(parse_start("soon").unwrap_err().contains("found `soon`"));
    }

    #[test]
    fn compact_lines_show_what_matters_per_type() {
        let contract = serde_json::json!({
            "type": "Contract", "id": "contract-24-abc", "name": "event-create-task",
            "content": "eyJ0YXNrSWQiOiJ0YXNrLTAifQ==",
        });
        assert_eq!(
            compact_line(&contract),
            format!(
                "{:<8} {:<24} event-create-task {{\"taskId\":\"task-0\"}}",
                "Contract", "contract-24-abc"
            )
        );
        let tx = serde_json::json!({
            "type": "Tx", "id": "tx-24-0123456789abcdef0123456789",
            "content": {"to": "taskmgr", "state": "MVCC_READ_CONFLICT", "from": "Org1MSP.User1@org1.example.com"},
        });
        let line = compact_line(&tx);
        assert!(
            line.starts_with("Tx       tx-24-0123456789abcdef0… "),
            "{line}"
        );
        assert!(
            line.ends_with("taskmgr MVCC_READ_CONFLICT by Org1MSP.User1@org1.example.com"),
            "{line}"
        );
    }

    #[test]
    fn unknown_fields_in_the_file_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tail.toml");
        std::fs::write(&path, "[channel]\nname = \"mychannel\"\nadress = \"x\"\n").expect("write");
        let err = load_file(&path).expect_err("unknown field").to_string();
        assert!(err.contains("tail.toml"), "{err}");
        assert!(err.contains("unknown field `adress`"), "{err}");
    }
}
