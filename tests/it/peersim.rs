//! The peer simulator as a Fabric client sees it: the same answers as the real peer in the deliver capture,
//! the peer's request checks, generated blocks that chain onto the recording, and the Fabric v3.1 recording
//! served as a real v3 peer serves it.

use std::time::Duration;

use bytes::Bytes;
use chaintrigger::fabric::deliver::{self, RawDeliverResponse, StartPosition, Subscription};
use chaintrigger::fabric::identity::{SeekPosition, SeekRequest};
use chaintrigger::fabric::proto::common;
use chaintrigger::peersim::block::ChainTip;
use chaintrigger::peersim::{GeneratorConfig, PeerSimConfig};
use p256::ecdsa::Signature;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::support::fabric::{
    RunningPeer, channel_config, fast_options, fixture_path, user1, within,
};

/// Sends one request envelope and reads the responses up to and including the first status.
async fn fetch(peer: &RunningPeer, envelope: common::Envelope) -> Vec<RawDeliverResponse> {
    let endpoint = deliver::endpoint(&peer.endpoint(), None, &fast_options()).expect("endpoint");
    let channel = within("connect", endpoint.connect())
        .await
        .expect("connects");
    let mut responses = within(
        "the stream",
        deliver::open_deliver_stream(channel, envelope, 1 << 26),
    )
    .await
    .expect("stream opens");
    let mut out = Vec::new();
    loop {
        let response = within("a response", responses.message())
            .await
            .expect("a message")
            .expect("a status before the end");
        let done = response.status.is_some();
        out.push(response);
        if done {
            return out;
        }
    }
}

fn request(start: SeekPosition, stop: SeekPosition) -> SeekRequest {
    SeekRequest {
        channel_id: "mychannel".to_owned(),
        start,
        stop,
        tls_cert_hash: None,
    }
}

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(&format!("deliver_capture/raw/{name}"))).expect("capture file")
}

#[tokio::test]
async fn a_bounded_seek_gets_the_same_bytes_as_from_the_real_peer() {
    let peer = RunningPeer::fixtures(None).await;
    let envelope = user1().seek_envelope_now(&request(
        SeekPosition::Specified(5),
        SeekPosition::Specified(5),
    ));
    let responses = fetch(&peer, envelope).await;
    let encoded: Vec<Vec<u8>> = responses.iter().map(|r| r.encode_to_vec()).collect();
    assert_eq!(encoded.len(), 2);
    assert_eq!(
        encoded[0],
        capture("0002_protos.Deliver.Deliver_s2c.pb"),
        "DeliverResponse{{block 5}}"
    );
    assert_eq!(
        encoded[1],
        capture("0003_protos.Deliver.Deliver_s2c.pb"),
        "DeliverResponse{{status SUCCESS}}"
    );
    assert_eq!(encoded[1], [0x08, 0xc8, 0x01]);

    let envelope = user1().seek_envelope_now(&request(SeekPosition::Newest, SeekPosition::Newest));
    let responses = fetch(&peer, envelope).await;
    let numbers: Vec<_> = responses
        .iter()
        .filter_map(|r| r.block.as_ref())
        .map(|b| deliver::block_number(b).expect("a block"))
        .collect();
    assert_eq!(numbers, [23]);
    assert_eq!(responses.last().and_then(|r| r.status), Some(200));
}

#[tokio::test]
async fn the_real_clients_request_is_accepted() {
    // The captured request of a real Fabric client (start 16, unbounded): same identity, same checks.
    let peer = RunningPeer::fixtures(None).await;
    let envelope =
        common::Envelope::decode(capture("0012_protos.Deliver.Deliver_c2s.pb").as_slice())
            .expect("captured envelope");
    let endpoint = deliver::endpoint(&peer.endpoint(), None, &fast_options()).expect("endpoint");
    let channel = within("connect", endpoint.connect())
        .await
        .expect("connects");
    let mut responses = within(
        "the stream",
        deliver::open_deliver_stream(channel, envelope, 1 << 26),
    )
    .await
    .expect("stream opens");
    for expected in 16..24u64 {
        let response = within("a block", responses.message())
            .await
            .expect("message")
            .expect("more");
        let block = response.block.expect("a block, not a status");
        assert_eq!(deliver::block_number(&block), Ok(expected));
        let recorded = capture_block(expected);
        assert_eq!(block, recorded);
    }
}

fn capture_block(number: u64) -> Bytes {
    Bytes::from(crate::support::fabric::recorded_block(number))
}

#[tokio::test]
async fn high_s_signatures_and_foreign_msps_are_forbidden() {
    let peer = RunningPeer::fixtures(None).await;
    let identity = user1();
    let mut envelope =
        identity.seek_envelope_now(&request(SeekPosition::Oldest, SeekPosition::Specified(0)));
    // The same signature with S replaced by n - S: mathematically valid, rejected by Fabric.
    let low = Signature::from_der(&envelope.signature).expect("DER");
    let (r, s) = low.split_scalars();
    let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).expect("scalars");
    envelope.signature = Bytes::copy_from_slice(high.to_der().as_bytes());
    let responses = fetch(&peer, envelope).await;
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, Some(403));

    // A signature over other bytes.
    let mut envelope =
        identity.seek_envelope_now(&request(SeekPosition::Oldest, SeekPosition::Specified(0)));
    envelope.signature = Bytes::from(identity.sign(b"something else"));
    assert_eq!(fetch(&peer, envelope).await[0].status, Some(403));

    // The right certificate under another MSP id.
    let other_msp = chaintrigger::fabric::identity::Identity::load(
        chaintrigger::fabric::identity::MspId::new("Org2MSP").expect("non-empty"),
        &fixture_path("msp/user1_signcert.pem"),
        &fixture_path("msp/user1_key.pem"),
    )
    .expect("identity");
    let envelope =
        other_msp.seek_envelope_now(&request(SeekPosition::Oldest, SeekPosition::Specified(0)));
    assert_eq!(fetch(&peer, envelope).await[0].status, Some(403));

    // Well signed: block 0 then SUCCESS.
    let envelope =
        identity.seek_envelope_now(&request(SeekPosition::Oldest, SeekPosition::Specified(0)));
    let responses = fetch(&peer, envelope).await;
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[1].status, Some(200));
}

#[tokio::test]
async fn generated_blocks_arrive_at_the_configured_rate_and_chain_onto_the_recording() {
    let mut config = PeerSimConfig::from_fixtures();
    config.generator = Some(GeneratorConfig {
        signer: user1(),
        interval: Some(Duration::from_millis(20)),
    });
    let peer = RunningPeer::start(config).await;
    let mut subscription = Subscription::new(
        channel_config(vec![peer.endpoint()], None),
        StartPosition::Block(23),
        CancellationToken::new(),
    );
    let mut tip = None::<ChainTip>;
    for expected in 23..28u64 {
        let block = within("a generated block", subscription.next_block())
            .await
            .expect("a block");
        assert_eq!(block.number, expected);
        let decoded = chaintrigger::fabric::decode::decode_block(&block.bytes).expect("decodes");
        if let Some(tip) = &tip {
            assert_eq!(
                decoded.previous_hash[..],
                tip.hash[..],
                "block {expected} chains on"
            );
        }
        assert_eq!(decoded.errors().count(), 0);
        decoded
            .verify_data_hash()
            .expect("a generated block verifies");
        tip = Some(ChainTip::of_block(&block.bytes).expect("tip"));
    }
}

/// The v3.1 recording as its User1 reads it over TLS: the recorded blocks byte for byte, then generated
/// SmartBFT-style blocks and a BFT config update, every block verifying as real peers' do (its data hash, its
/// chain onto the block before), and the v2.5 network's identity refused.
#[tokio::test]
async fn the_v3_recording_is_served_as_a_real_v3_peer_serves_it() {
    use chaintrigger::events::Rendering;
    use chaintrigger::fabric::decode::{Block, decode_block};
    use chaintrigger::fabric::deliver::DeliverError;
    use chaintrigger::peersim::block::edit_smartbft_options;
    use chaintrigger::peersim::fixture::Recording;
    use chaintrigger::peersim::recording_user1;

    let pki = crate::support::fabric::TlsPki::new();
    let peer = RunningPeer::start(PeerSimConfig {
        tls: Some(pki.server_tls(false)),
        ..PeerSimConfig::from_recording(Recording::V3_1)
    })
    .await;
    assert_eq!(peer.handle.height(), 11);
    for _ in 0..3 {
        peer.handle.generate_block().expect("a generated block");
    }
    let update = peer
        .handle
        .update_config(|config| {
            edit_smartbft_options(config, |o| o.request_batch_max_interval = "500ms".into())
                .expect("a BFT configuration");
        })
        .expect("a config update");
    assert_eq!(update, 14);
    peer.handle
        .generate_block()
        .expect("a block after the update");

    let v3_user = std::sync::Arc::new(recording_user1(Recording::V3_1));
    let config = chaintrigger::fabric::deliver::ChannelConfig {
        identity: v3_user,
        ..channel_config(vec![peer.endpoint()], Some(pki.client_tls()))
    };
    let mut subscription = Subscription::new(
        config.clone(),
        StartPosition::Block(0),
        CancellationToken::new(),
    );
    let recorded = Recording::V3_1.blocks();
    let mut previous: Option<Block> = None;
    for number in 0..16u64 {
        let delivered = within("a block", subscription.next_block())
            .await
            .expect("a block");
        assert_eq!(delivered.number, number);
        if let Some(bytes) = recorded.get(number as usize) {
            assert_eq!(
                &delivered.bytes, bytes,
                "recorded block {number} as recorded"
            );
        }
        let block = decode_block(&delivered.bytes).expect("decodes");
        assert_eq!(block.errors().count(), 0, "block {number}");
        block.verify_data_hash().expect("the data hash verifies");
        if let Some(previous) = &previous {
            block.verify_follows(previous).expect("the chain holds");
        }
        // The genesis block carries no orderer signature; every later one is signed SmartBFT-style.
        let tip = ChainTip::of_block(&delivered.bytes).unwrap();
        assert_eq!(tip.bft, number > 0, "block {number}");
        let want_last_config = if number < 14 { 0 } else { 14 };
        assert_eq!(block.last_config, Some(want_last_config), "block {number}");
        if number == 14 {
            let config = block.config().expect("block 14 is the config update");
            assert_eq!(config.sequence, 1);
            assert_eq!(Rendering::of_config(config), Rendering::V3);
        }
        previous = Some(block);
    }

    // The v2.5 network's User1 is not a member of this network's Org1MSP.
    let mut foreign = Subscription::new(
        channel_config(vec![peer.endpoint()], Some(pki.client_tls())),
        StartPosition::Block(0),
        CancellationToken::new(),
    );
    let refused = within("a refusal", foreign.next_block()).await;
    assert!(
        matches!(refused, Err(DeliverError::Refused { ref status, .. }) if status.0 == 403),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_peersim_command_serves_tls_with_generated_certificates_and_generates_blocks() {
    use tokio::io::AsyncBufReadExt;
    chaintrigger::install_crypto_provider();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaintrigger"))
        .args([
            "peersim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval-ms",
            "50",
        ])
        .arg("--generate-tls")
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chaintrigger peersim");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    within("the simulator to listen", async {
        while let Some(line) = lines.next_line().await.expect("stderr") {
            if line.contains("peer simulator serving") {
                return;
            }
        }
        panic!("peersim exited before serving");
    })
    .await;
    let ca = chaintrigger::fabric::deliver::TlsCa::load(&dir.path().join("tls-ca.pem"))
        .expect("generated CA");
    let endpoint = chaintrigger::fabric::deliver::PeerEndpoint::new(format!("127.0.0.1:{port}"));
    let tls = chaintrigger::fabric::deliver::ClientTls {
        ca,
        client_certificate: None,
    };
    let mut subscription = Subscription::new(
        channel_config(vec![endpoint], Some(tls)),
        StartPosition::Block(22),
        CancellationToken::new(),
    );
    for expected in 22..27u64 {
        let block = within("a block", subscription.next_block())
            .await
            .expect("a block");
        assert_eq!(block.number, expected);
    }
    child.kill().await.expect("stop peersim");
}
