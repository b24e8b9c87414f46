//! Deliver throughput: the peer simulator streams blocks to a `Subscription` over TLS on loopback (signed
//! request, TLS, gRPC framing, block-number checks; no decoding). The chain holds the 24 recorded blocks plus
//! generated `taskmgr` blocks.
//!
//! `cargo bench --bench deliver`

use std::time::{Duration, Instant};

use bytes::Bytes;
use chaintrigger::fabric::deliver::{
    ChannelConfig, ClientTls, DeliverOptions, PeerEndpoint, StartPosition, Subscription, TlsCa,
};
use chaintrigger::peersim::pki::TestCa;
use chaintrigger::peersim::{self, PeerSim, PeerSimConfig, ServerTls};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;

const GENERATED: u64 = 1000;

fn deliver(c: &mut Criterion) {
    chaintrigger::install_crypto_provider();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ca = TestCa::new("tlsca.bench", "bench").expect("CA");
    let server = ca
        .issue("peer0.bench", &["peer0.bench"])
        .expect("server cert");
    let sim = PeerSim::new(PeerSimConfig {
        tls: Some(ServerTls {
            cert_pem: Bytes::from(server.cert_pem),
            key_pem: Bytes::from(server.key_pem),
            client_ca_pem: None,
        }),
        ..PeerSimConfig::from_fixtures()
    })
    .expect("simulator");
    let handle = sim.handle();
    for _ in 0..GENERATED {
        handle.generate_block().expect("generate");
    }
    let height = handle.height();
    let bytes: u64 = (0..height)
        .map(|n| handle.block(n).map_or(0, |b| b.len() as u64))
        .sum();
    let shutdown = CancellationToken::new();
    let address = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(peersim::run(listener, sim, shutdown.clone()));
        address
    });
    let config = ChannelConfig {
        channel_id: "mychannel".to_owned(),
        peers: vec![PeerEndpoint {
            address: address.to_string(),
            tls_server_name: Some("peer0.bench".to_owned()),
        }],
        tls: Some(ClientTls {
            ca: TlsCa::from_pem(ca.cert_pem().to_owned(), "bench CA").expect("CA"),
            client_certificate: None,
        }),
        identity: std::sync::Arc::new(peersim::fixture_user1()),
        options: DeliverOptions::default(),
    };
    println!(
        "chain: {height} blocks, {:.1} MiB in all",
        bytes as f64 / (1024.0 * 1024.0)
    );
    let mut group = c.benchmark_group("deliver");
    group.throughput(Throughput::Elements(height));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("tls_stream_all_blocks", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let mut subscription = Subscription::new(
                        config.clone(),
                        StartPosition::Block(0),
                        CancellationToken::new(),
                    );
                    for expected in 0..height {
                        let block = subscription.next_block().await.expect("a block");
                        assert_eq!(block.number, expected);
                    }
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    shutdown.cancel();
}

criterion_group!(benches, deliver);
criterion_main!(benches);
