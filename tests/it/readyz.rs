//! `GET /readyz` on the real daemon against the peer simulator over TLS: 503 naming the channels that never
//! reached a peer, 200 once every channel has, and no token needed (orchestrator probes carry none). The peer is
//! made unreachable and reachable with a TCP relay in front of it: no relay, connection refused; a relay, the
//! peer is up.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::support::daemon::{
    CHANNEL, Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, eventually,
};

/// `GET /readyz` without any token: the status and the JSON body.
async fn readyz(daemon: &Daemon) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/readyz", daemon.admin.url))
        .send()
        .await
        .expect("/readyz answers");
    let status = response.status().as_u16();
    let body = response.json().await.expect("/readyz answers JSON");
    (status, body)
}

/// A loopback address nobody listens on (yet).
async fn free_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], crate::support::free_port()))
}

/// Relays every connection to `address` on to `peer` until dropped; dropping it closes every relayed connection,
/// as a peer that goes away does.
struct Relay {
    /// The accepting task, which owns the relayed connections: dropping the set aborts it and closes them.
    _accepting: JoinSet<()>,
}

impl Relay {
    async fn start(address: SocketAddr, peer: SocketAddr) -> Relay {
        let listener = TcpListener::bind(address)
            .await
            .expect("listen where the daemon looks for its peer");
        let mut accepting = JoinSet::new();
        accepting.spawn(async move {
            let mut relayed = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                relayed.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(peer).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay {
            _accepting: accepting,
        }
    }
}

/// The channel's `[[channels]]` table with its only peer at `address` instead of the simulator's own (the TLS
/// name checked is the simulator's all the same).
fn channel_at(network: &Network, address: SocketAddr) -> String {
    let simulator = network.peer.address.to_string();
    let table = network.channel_toml();
    assert!(table.contains(&simulator), "{table}");
    table.replace(&simulator, &address.to_string())
}

#[tokio::test]
async fn readyz_is_503_until_the_only_peer_is_reachable_then_200_for_good() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let address = free_address().await;
    files.write_config_with_channel(
        &channel_at(&network, address),
        &[TriggerSpec::new(
            "blocks",
            "Block",
            receiver.target_toml("blocks"),
        )],
    );
    let daemon = Daemon::start(&files).await;

    // The daemon has tried the peer and failed (the channel shows why), and is not ready.
    eventually(
        "the channel shows its failed connection",
        PATIENCE,
        || async {
            let channel = daemon.admin.channel().await;
            channel["last_error"].is_object().then_some(())
        },
    )
    .await;
    let (status, body) = readyz(&daemon).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"status": "not_ready", "channels_not_connected": [CHANNEL]})
    );
    let (status, health) = healthz(&daemon).await;
    assert_eq!(status, 200, "/healthz stays liveness: {health}");

    // The peer comes up: ready, and blocks flow.
    let relay = Relay::start(address, network.peer.address).await;
    let body = eventually("/readyz answers 200", PATIENCE, || async {
        let (status, body) = readyz(&daemon).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body, json!({"status": "ready"}));
    receiver.wait_accepted("blocks", 1, PATIENCE).await;

    // The peer goes away again: the channel shows disconnected, the daemon stays ready (it reconnects by itself;
    // taking it out of service would not bring the peer back).
    drop(relay);
    eventually("the channel shows disconnected", PATIENCE, || async {
        let channel = daemon.admin.channel().await;
        (channel["connected"] == false && channel["connected_once"] == true).then_some(())
    })
    .await;
    let (status, body) = readyz(&daemon).await;
    assert_eq!((status, body), (200, json!({"status": "ready"})));
    daemon.terminate().await;
}

/// `/healthz`, also without a token.
async fn healthz(daemon: &Daemon) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", daemon.admin.url))
        .send()
        .await
        .expect("/healthz answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn readyz_names_only_the_channels_that_never_connected() {
    let network = Network::start(None).await;
    let files = DaemonFiles::new();
    let nowhere = free_address().await;
    let other = channel_at(&network, nowhere)
        .replace(&format!("name = \"{CHANNEL}\""), "name = \"otherchannel\"");
    assert!(other.contains("otherchannel"), "{other}");
    files.write_config_with_channel(&format!("{}\n{other}", network.channel_toml()), &[]);
    let daemon = Daemon::start(&files).await;
    eventually(&format!("{CHANNEL} connects"), PATIENCE, || async {
        let (_, body) = daemon
            .admin
            .call(reqwest::Method::GET, "/v1/channels")
            .await;
        let connected = body["channels"]
            .as_array()?
            .iter()
            .any(|channel| channel["name"] == CHANNEL && channel["connected_once"] == true);
        connected.then_some(())
    })
    .await;
    let (status, body) = readyz(&daemon).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"status": "not_ready", "channels_not_connected": ["otherchannel"]})
    );
    // A bearer token changes nothing, a wrong one is not refused: the route is open.
    let response = reqwest::Client::new()
        .get(format!("{}/readyz", daemon.admin.url))
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .expect("/readyz answers");
    assert_eq!(response.status().as_u16(), 503);
    daemon.terminate().await;
}
