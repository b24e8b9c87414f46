//! The admin API under abuse, on a real server on port 0: thousands of idle connections, clients that never
//! finish their headers, oversized requests, and TLS with the CLI verifying the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chaintrigger::admin::{Limits, ServeOptions};
use chaintrigger::peersim::pki::TestCa;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::admin::{AdminServer, TOKEN};

/// Raises this process's open-file limit so a test can hold `wanted` sockets (the server's side included when it
/// runs in process). Root may raise the hard limit too.
pub fn raise_fd_limit(wanted: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit / setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < wanted {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: if limit.rlim_max == libc::RLIM_INFINITY {
                    limit.rlim_max
                } else {
                    limit.rlim_max.max(wanted)
                },
            };
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &raised),
                0,
                "cannot raise the open-file limit to {wanted}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Opens `count` TCP connections to `address` that send nothing. They come from 127.0.0.2, so the thousands of
/// local ports they take are never ports that other tests picked for their servers on 127.0.0.1.
pub async fn idle_connections(address: &str, count: usize) -> Vec<TcpStream> {
    let address: std::net::SocketAddr = address.parse().expect("an IP address and port");
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.2:0".parse().expect("an address"))
            .expect("bind a second loopback address");
        streams.push(
            socket
                .connect(address)
                .await
                .expect("the kernel accepts the connection"),
        );
    }
    streams
}

/// How many of `streams` the server has closed (EOF or reset), without waiting on any of them.
pub fn closed(streams: &[TcpStream]) -> usize {
    let mut buffer = [0u8; 64];
    streams
        .iter()
        .filter(|stream| match stream.try_read(&mut buffer) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
        })
        .count()
}

/// Waits until the server has closed at least `count` of `streams`; returns how many it closed.
pub async fn wait_closed(streams: &[TcpStream], count: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let closed = closed(streams);
        if closed >= count || Instant::now() > deadline {
            return closed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_owned()
}

fn client() -> reqwest::Client {
    chaintrigger::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client")
}

/// `/healthz` and an authenticated listing answer, each within a few seconds.
async fn still_answers(client: &reqwest::Client, url: &str) {
    let health = client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(health.status(), StatusCode::OK);
    let list = client
        .get(format!("{url}/v1/triggers"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the listing answers");
    assert_eq!(list.status(), StatusCode::OK);
    let body: serde_json::Value = list.json().await.expect("JSON");
    assert_eq!(body["triggers"].as_array().map(Vec::len), Some(2), "{body}");
}

async fn cli(url: &str, extra: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .arg("triggers")
        .arg("--admin")
        .arg(url)
        .args(extra)
        .env("CHAINTRIGGER_ADMIN_TOKEN", TOKEN)
        .env_remove("CHAINTRIGGER_ADMIN_URL")
        .env_remove("CHAINTRIGGER_ADMIN_CA")
        .env("RUST_LOG", "off")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the chaintrigger binary runs")
}

#[tokio::test]
async fn two_thousand_idle_connections_do_not_lock_clients_out() {
    raise_fd_limit(8_192);
    let server = AdminServer::start().await;
    let cap = Limits::default().max_connections;
    let flood = idle_connections(&address(&server.url), 2_000).await;
    let http = client();
    still_answers(&http, &server.url).await;
    let output = cli(&server.url, &["list"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("contracts"));
    // The server keeps at most its cap open: it closed the rest, idle the longest first.
    let evicted = wait_closed(&flood, flood.len() - cap, Duration::from_secs(15)).await;
    assert!(
        evicted >= flood.len() - cap,
        "only {evicted} of {} idle connections were closed with a cap of {cap}",
        flood.len()
    );
    assert!(
        closed(&flood[flood.len() - cap / 2..]) < cap / 2,
        "the newest idle connections are still open"
    );
    server.stop().await;
}

#[tokio::test]
async fn clients_that_do_not_send_their_headers_in_time_are_closed() {
    let server = AdminServer::start_with(ServeOptions {
        limits: Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_millis(400),
            idle_timeout: Duration::from_secs(30),
        },
        tls: None,
    })
    .await;
    let address = address(&server.url);
    let silent = idle_connections(&address, 3).await;
    let mut trickling = TcpStream::connect(&address).await.unwrap();
    trickling
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed_at = None;
    // A byte every 50 ms keeps the connection busy, but its headers never complete.
    for _ in 0..200 {
        if trickling.write_all(b"X").await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        let mut buffer = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(50), trickling.read(&mut buffer)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed_at = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let closed_at = closed_at.expect("the trickling client was cut off");
    assert!(
        closed_at >= Duration::from_millis(300) && closed_at < Duration::from_secs(8),
        "cut off after {closed_at:?}"
    );
    assert_eq!(
        wait_closed(&silent, 3, Duration::from_secs(10)).await,
        3,
        "silent connections are closed too"
    );
    // A keep-alive client that asks in time is served, twice on the same connection.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for _ in 0..2 {
        let health = http
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
    server.stop().await;
}

#[tokio::test]
async fn connections_with_no_request_are_closed_after_the_idle_timeout() {
    let server = AdminServer::start_with(ServeOptions {
        limits: Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(300),
        },
        tls: None,
    })
    .await;
    let address = address(&server.url);
    let idle = idle_connections(&address, 5).await;
    // Half-sent headers do not count as a request being handled.
    let mut partial = TcpStream::connect(&address).await.unwrap();
    partial.write_all(b"GET /healthz HT").await.unwrap();
    let partial = vec![partial];
    assert_eq!(wait_closed(&idle, 5, Duration::from_secs(10)).await, 5);
    assert_eq!(wait_closed(&partial, 1, Duration::from_secs(10)).await, 1);
    still_answers(&client(), &server.url).await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let server = AdminServer::start().await;
    let http = client();
    let huge = "x".repeat(32 * 1024);
    let answer = http
        .get(format!("{}/v1/triggers", server.url))
        .bearer_auth(TOKEN)
        .header("x-padding", &huge)
        .send()
        .await;
    match answer {
        Ok(response) => assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        ),
        Err(error) => assert!(error.is_request() || error.is_body(), "{error}"),
    }
    let mut request = http
        .get(format!("{}/v1/triggers", server.url))
        .bearer_auth(TOKEN);
    for index in 0..100 {
        request = request.header(format!("x-h{index}"), "v");
    }
    match request.send().await {
        Ok(response) => assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        ),
        Err(error) => assert!(error.is_request() || error.is_body(), "{error}"),
    }
    // A body over the limit is refused on a route that reads it, and ignored (not read) on one that does not.
    let big = "{\"from\": \"latest\"".to_owned() + &" ".repeat(100 * 1024) + "}";
    let response = http
        .post(format!("{}/v1/triggers/contracts/enable", server.url))
        .bearer_auth(TOKEN)
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let refused = http
        .post(format!("{}/v1/triggers/contracts/disable", server.url))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    still_answers(&http, &server.url).await;
    server.stop().await;
}

/// A CA and a server certificate for 127.0.0.1 and localhost, written into a folder.
pub struct TlsFiles {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
}

impl TlsFiles {
    pub fn new() -> TlsFiles {
        chaintrigger::install_crypto_provider();
        let ca = TestCa::new("chaintrigger admin test CA", "chaintrigger").expect("a CA");
        let server = ca
            .issue("admin", &["127.0.0.1", "localhost"])
            .expect("a server certificate");
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("admin.pem"), &server.cert_pem).unwrap();
        std::fs::write(dir.path().join("admin.key"), &server.key_pem).unwrap();
        TlsFiles { dir, ca }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        chaintrigger::config::tls::server_config(
            &self.dir.path().join("admin.pem"),
            &self.dir.path().join("admin.key"),
            std::time::SystemTime::now(),
        )
        .expect("the test certificate serves")
    }

    /// A client that trusts only the test CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(self.ca.cert_pem().as_bytes()).unwrap(),
            ])
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }
}

#[tokio::test]
async fn over_tls_the_server_is_verified_and_idle_handshakes_time_out() {
    let tls = TlsFiles::new();
    let server = AdminServer::start_with(ServeOptions {
        limits: Limits {
            max_connections: 32,
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(30),
        },
        tls: Some(tls.server_config()),
    })
    .await;
    assert!(server.url.starts_with("https://127.0.0.1:"));
    // Connections that never start their handshake neither block others nor stay.
    let stalled = idle_connections(&address(&server.url), 100).await;
    still_answers(&tls.client(), &server.url).await;
    assert_eq!(
        wait_closed(&stalled, 100, Duration::from_secs(3)).await,
        100
    );

    // The CLI verifies the server against --admin-ca...
    let output = cli(&server.url, &["--admin-ca", &tls.path("ca.pem"), "list"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("contracts"));
    // ...and refuses a server it cannot verify, saying what to do.
    let output = cli(&server.url, &["list"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("presented a certificate this client does not trust")
            && stderr.contains("--admin-ca"),
        "{stderr}"
    );
    let other_ca = TestCa::new("another CA", "elsewhere").unwrap();
    let other = tls.dir.path().join("other-ca.pem");
    std::fs::write(&other, other_ca.cert_pem()).unwrap();
    let output = cli(
        &server.url,
        &["--admin-ca", other.to_str().unwrap(), "list"],
    )
    .await;
    assert!(
        !output.status.success(),
        "a certificate of another CA is refused"
    );
    // A CA file that holds no certificate, or a CA with a plain http URL, is refused before any request.
    let output = cli(&server.url, &["--admin-ca", &tls.path("admin.key"), "list"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--admin-ca") && stderr.contains("admin.key"),
        "{stderr}"
    );
    let plain = server.url.replace("https://", "http://");
    let output = cli(&plain, &["--admin-ca", &tls.path("ca.pem"), "list"]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not https://"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Plain HTTP to the TLS port gets nothing.
    let answer = client().get(format!("{plain}/healthz")).send().await;
    assert!(
        answer.is_err() || !answer.unwrap().status().is_success(),
        "plain HTTP is not served on the TLS port"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_fails_after_the_idle_timeout() {
    let server = AdminServer::start_with(ServeOptions {
        limits: Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(500),
        },
        tls: None,
    })
    .await;
    let mut stalled = TcpStream::connect(address(&server.url)).await.unwrap();
    // The headers arrive (so a handler runs), then 5 of the 100 body bytes announced, then nothing.
    stalled
        .write_all(
            format!(
                "POST /v1/triggers/any/enable HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"fro"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 1024];
        loop {
            match stalled.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the stalled request was never answered");
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("sent nothing more of the request body"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
    still_answers(&client(), &server.url).await;
    server.stop().await;
}
