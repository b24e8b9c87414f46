//! Shutdown always works: the real binary and real signals. `serve` stops within seconds of the first SIGTERM /
//! Ctrl-C with a replay in progress, a peer that never answers and a push in flight, exits at once on a second
//! Ctrl-C; `demo` stops within seconds while a client holds a stream it no longer reads and removes its temporary
//! folder.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaintrigger::fabric::deliver::{self, ClientTls, DeliverOptions, PeerEndpoint, TlsCa};
use chaintrigger::fabric::identity::{SeekPosition, SeekRequest};
use tokio::io::AsyncBufReadExt;

use crate::support::daemon::{
    Behaviour, Daemon, DaemonFiles, Network, PATIENCE, Receiver, TriggerSpec, eventually,
};
use crate::support::fabric::{PEER_NAME, user1, within};

/// A `[[channels]]` named `otherchannel` whose only peer accepts TCP connections and never answers (not even
/// the TLS handshake), with the listener that must stay alive as long as the test.
fn unanswering_channel(network: &Network) -> (String, std::net::TcpListener) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = listener.local_addr().expect("address").to_string();
    let text = network
        .channel_toml()
        .replace("name = \"mychannel\"", "name = \"otherchannel\"")
        .replace(&network.peer.address.to_string(), &silent);
    (text, listener)
}

/// The daemon replaying a long chain to a slow receiver, beside a channel whose peer never answers.
async fn busy_daemon(
    push_delay: Duration,
) -> (
    Network,
    Receiver,
    DaemonFiles,
    Daemon,
    std::net::TcpListener,
) {
    let network = Network::start(None).await;
    network.generate(100 - network.height());
    let receiver = Receiver::start().await;
    receiver.set("replay", Behaviour::Delay(push_delay));
    let files = DaemonFiles::new();
    let (silent, listener) = unanswering_channel(&network);
    let channels = format!("{}\n{silent}", network.channel_toml());
    files.write_config_with_channel(
        &channels,
        &[TriggerSpec::new(
            "replay",
            "Block",
            receiver.target_toml("replay"),
        )],
    );
    let daemon = Daemon::start(&files).await;
    // Replaying history on its catch-up stream, a push in flight.
    eventually("the replay's catch-up stream", PATIENCE, || async {
        (network.handle().open_streams() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (network, receiver, files, daemon, listener)
}

#[tokio::test]
async fn serve_stops_within_seconds_of_sigterm_during_a_replay_beside_a_silent_peer() {
    let (network, receiver, files, mut daemon, _silent) =
        busy_daemon(Duration::from_millis(50)).await;
    assert!(
        network.handle().open_streams() >= 2,
        "the channel's stream and the replay's"
    );
    let pushed = receiver.pushes("replay").len();
    daemon.signal(libc::SIGTERM);
    let sent = Instant::now();
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("still running 15 s after SIGTERM:\n{}", files.log()));
    let took = sent.elapsed();
    assert!(status.success(), "{status}\n{}", files.log());
    assert!(
        took < Duration::from_secs(5),
        "stopped after {took:?}\n{}",
        files.log()
    );
    assert!(files.log().contains("stopped"), "{}", files.log());
    assert!(
        receiver.pushes("replay").len() < 100,
        "stopped mid-replay ({pushed} pushed)"
    );
    // The daemon closed its streams on the way out.
    crate::support::fabric::wait_open_streams(network.handle(), 0).await;
}

#[tokio::test]
async fn serve_gives_a_push_in_flight_its_grace_period_then_exits() {
    let (_network, _receiver, files, mut daemon, _silent) =
        busy_daemon(Duration::from_secs(120)).await;
    daemon.signal(libc::SIGTERM);
    let sent = Instant::now();
    let status = daemon
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("still running 20 s after SIGTERM:\n{}", files.log()));
    let took = sent.elapsed();
    assert!(status.success(), "{status}\n{}", files.log());
    // The grace period is 10 s: the push is abandoned then (and pushed again at the next start).
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(14),
        "stopped after {took:?}\n{}",
        files.log()
    );
    assert!(files.log().contains("grace period over"), "{}", files.log());
}

#[tokio::test]
async fn a_second_ctrl_c_exits_at_once() {
    let (_network, _receiver, files, mut daemon, _silent) =
        busy_daemon(Duration::from_secs(120)).await;
    daemon.signal(libc::SIGINT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.running(), "the push in flight has its grace period");
    daemon.signal(libc::SIGINT);
    let sent = Instant::now();
    let status = daemon
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("still running after the second Ctrl-C:\n{}", files.log()));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(files.log().contains("exiting at once"), "{}", files.log());
}

// ---------------------------------------------------------------------------------------------------------------
// The demo

/// `chaintrigger demo` with its temporary folder under `tmp` and its output collected line by line.
struct Demo {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    fn start(tmp: &Path, extra: &[&str]) -> Demo {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
            .args([
                "demo",
                "--rate",
                "20",
                "--admin-listen",
                "127.0.0.1:0",
                "--config",
                config,
            ])
            .args(extra)
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chaintrigger demo");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for output in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(output).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().expect("lines").push(line);
                }
            });
        }
        Demo { child, lines }
    }

    fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// The value after `label` on the intro line that starts with it (e.g. `peer simulator`).
    async fn intro(&self, label: &str) -> String {
        eventually(&format!("the demo's `{label}` line"), PATIENCE, || async {
            self.lines.lock().expect("lines").iter().find_map(|line| {
                line.trim_start()
                    .strip_prefix(label)
                    .map(|rest| rest.trim().to_owned())
            })
        })
        .await
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("the demo runs");
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    }

    async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("reap the demo"))
    }
}

/// Opens a Deliver stream on the demo's simulator from block 0 with a 1 KiB window and never reads it: the
/// simulator's sends to it block, as with a client that stopped reading.
async fn stuck_client(peer: &str, data: &Path) -> deliver::DeliverStream {
    let tls = ClientTls {
        ca: TlsCa::load(&data.join("tls-ca.pem")).expect("the demo's TLS CA"),
        client_certificate: None,
    };
    let endpoint = deliver::endpoint(
        &PeerEndpoint {
            address: peer.to_owned(),
            tls_server_name: Some(PEER_NAME.to_owned()),
        },
        Some(&tls),
        &DeliverOptions::default(),
    )
    .expect("endpoint")
    .initial_stream_window_size(Some(1024));
    let channel = within("connect", endpoint.connect())
        .await
        .expect("connects");
    let request = SeekRequest {
        channel_id: "mychannel".to_owned(),
        start: SeekPosition::Specified(0),
        stop: SeekPosition::Specified(u64::MAX),
        tls_cert_hash: None,
    };
    within(
        "the stream",
        deliver::open_deliver_stream(channel, user1().seek_envelope_now(&request), 1 << 26),
    )
    .await
    .expect("opens")
}

/// The folder path printed on the `data folder` line (without the "(removed at exit)" note).
fn data_folder(line: &str) -> PathBuf {
    PathBuf::from(line.split(" (").next().unwrap_or(line).trim())
}

#[tokio::test]
async fn the_demo_stops_within_seconds_of_ctrl_c_with_a_stuck_client_and_removes_its_folder() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut demo = Demo::start(tmp.path(), &[]);
    let peer = demo.intro("peer simulator").await;
    let peer = peer
        .split_whitespace()
        .next()
        .expect("an address")
        .to_owned();
    let data = data_folder(&demo.intro("data folder").await);
    assert!(data.starts_with(tmp.path()), "{}", data.display());
    let _stuck = stuck_client(&peer, &data).await;
    // Let it run: the handlers work, the chain grows, the stuck stream's sends block.
    eventually("the demo at work", PATIENCE, || async {
        demo.output().contains("[demo/on_block]").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    demo.signal(libc::SIGINT);
    let sent = Instant::now();
    let status = demo
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("the demo still runs 15 s after Ctrl-C:\n{}", demo.output()));
    let took = sent.elapsed();
    eprintln!("the demo stopped {took:?} after Ctrl-C");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let output = demo.output();
    assert!(status.success(), "{status}\n{output}");
    assert!(
        took < Duration::from_secs(10),
        "stopped after {took:?}\n{output}"
    );
    assert!(output.contains("Summary after"), "{output}");
    assert!(output.contains("Temporary data removed."), "{output}");
    assert!(!data.exists(), "{} is left behind", data.display());
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("read TMPDIR").count(),
        0,
        "nothing left in TMPDIR"
    );
}

#[tokio::test]
async fn the_demo_stops_on_sigterm_and_keeps_a_data_dir_it_was_given() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let kept = tmp.path().join("kept");
    let mut demo = Demo::start(tmp.path(), &["--data-dir", kept.to_str().expect("UTF-8")]);
    eventually("the demo at work", PATIENCE, || async {
        demo.output().contains("[demo/on_block]").then_some(())
    })
    .await;
    demo.signal(libc::SIGTERM);
    let sent = Instant::now();
    let status = demo
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("the demo still runs 15 s after SIGTERM:\n{}", demo.output()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let output = demo.output();
    assert!(status.success(), "{status}\n{output}");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}\n{output}",
        sent.elapsed()
    );
    assert!(output.contains("Data kept in"), "{output}");
    assert!(kept.join("chaintrigger.db").is_file(), "{output}");
    assert!(kept.join("demo.toml").is_file(), "{output}");
}
