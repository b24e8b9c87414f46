//! The Deliver client against the peer simulator over real TLS gRPC: order, resume, refusals, TLS names,
//! mutual TLS, failover, streams closed on the peer once dropped, connected as soon as established.

use chaintrigger::fabric::deliver::{
    self, DeliverError, PeerEndpoint, StartPosition, StatusCode, Subscription,
};
use chaintrigger::fabric::identity::{Identity, MspId, SeekPosition, SeekRequest};
use chaintrigger::peersim::Faults;
use chaintrigger::peersim::pki::TestCa;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::fabric::{
    RunningPeer, TlsPki, channel_config, fast_options, next_numbers, recorded_block, user1,
    wait_open_streams, within,
};

#[tokio::test]
async fn streams_recorded_blocks_then_live_ones_and_resumes_after_a_cut_without_gap_or_duplicate() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    peer.handle.set_faults(Faults {
        drop_after_blocks: Some(10),
        ..Faults::default()
    });
    let config = channel_config(vec![peer.endpoint()], Some(pki.client_tls()));
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let status = subscription.status_handle();
    for number in 0..24u64 {
        let block = within("a recorded block", subscription.next_block())
            .await
            .expect("a block");
        assert_eq!(block.number, number);
        assert_eq!(
            &block.bytes[..],
            &recorded_block(number)[..],
            "block {number} bytes as recorded"
        );
    }
    assert_eq!(
        status.snapshot().reconnects,
        1,
        "the injected cut after 10 blocks"
    );
    // Live blocks: generated after the client caught up.
    for expected in 24..27u64 {
        assert_eq!(peer.handle.generate_block().expect("generate"), expected);
        let block = within("a live block", subscription.next_block())
            .await
            .expect("a block");
        assert_eq!(block.number, expected);
        assert_eq!(Some(block.bytes), peer.handle.block(expected));
    }
    // Another cut while following live: resumes at the next block, not at "newest".
    peer.handle.set_faults(Faults {
        drop_after_blocks: Some(0),
        ..Faults::default()
    });
    drop(subscription);
    let config = channel_config(vec![peer.endpoint()], Some(pki.client_tls()));
    let mut subscription =
        Subscription::new(config, StartPosition::Block(25), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 2).await, [25, 26]);
    let snapshot = subscription.status_handle().snapshot();
    assert_eq!(snapshot.reconnects, 1);
    assert_eq!(snapshot.last_block, Some(26));
    assert!(snapshot.connected);
    assert!(
        snapshot
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("closed the stream")),
        "{snapshot:?}"
    );
}

#[tokio::test]
async fn duplicates_are_skipped_and_a_gap_makes_it_reconnect_from_the_expected_block() {
    let peer = RunningPeer::fixtures(None).await;
    peer.handle.set_faults(Faults {
        duplicate_first_block: true,
        skip_second_block: true,
        ..Faults::default()
    });
    let config = channel_config(vec![peer.endpoint()], None);
    let mut subscription =
        Subscription::new(config, StartPosition::Block(3), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 5).await, [3, 4, 5, 6, 7]);
    let snapshot = subscription.status_handle().snapshot();
    assert_eq!(snapshot.duplicates_skipped, 1);
    assert_eq!(snapshot.reconnects, 1, "{snapshot:?}");
    assert!(
        snapshot
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("sent block 5 where block 4 was expected"))
    );
}

#[tokio::test]
async fn starts_at_newest_then_follows() {
    let peer = RunningPeer::fixtures(None).await;
    let config = channel_config(vec![peer.endpoint()], None);
    let mut subscription =
        Subscription::new(config, StartPosition::Newest, CancellationToken::new());
    assert_eq!(subscription.next_block_number(), None);
    assert_eq!(next_numbers(&mut subscription, 1).await, [23]);
    peer.handle.generate_block().expect("generate");
    assert_eq!(next_numbers(&mut subscription, 1).await, [24]);
    assert_eq!(subscription.next_block_number(), Some(25));
}

#[tokio::test]
async fn an_identity_from_another_ca_is_forbidden() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    let rogue_ca = TestCa::new("ca.org1.example.com", "org1.example.com").expect("CA");
    let rogue = rogue_ca.issue("User1@org1.example.com", &[]).expect("cert");
    let identity = Identity::from_pem(
        MspId::new("Org1MSP").expect("non-empty"),
        rogue.cert_pem.as_bytes(),
        "rogue cert",
        rogue.key_pem.as_bytes(),
        "rogue key",
    )
    .expect("a well-formed identity");
    let mut config = channel_config(vec![peer.endpoint()], Some(pki.client_tls()));
    config.identity = identity.into();
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let error = within("a refusal", subscription.next_block())
        .await
        .expect_err("forbidden");
    match &error {
        DeliverError::Refused {
            status, channel, ..
        } => {
            assert_eq!(*status, StatusCode::FORBIDDEN);
            assert_eq!(channel, "mychannel");
        }
        other => panic!("expected FORBIDDEN, got {other:?}"),
    }
    assert!(error.is_fatal_for_now());
    assert!(error.to_string().contains("FORBIDDEN (403)"), "{error}");
}

#[tokio::test]
async fn unknown_channel_and_start_beyond_height_are_not_found() {
    let peer = RunningPeer::fixtures(None).await;
    let mut config = channel_config(vec![peer.endpoint()], None);
    config.channel_id = "otherchannel".to_owned();
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let error = within("a refusal", subscription.next_block())
        .await
        .expect_err("not found");
    assert!(
        matches!(&error, DeliverError::Refused { status, channel, .. } if *status == StatusCode::NOT_FOUND && channel == "otherchannel"),
        "{error:?}"
    );

    let config = channel_config(vec![peer.endpoint()], None);
    let mut subscription =
        Subscription::new(config, StartPosition::Block(30), CancellationToken::new());
    let error = within("a refusal", subscription.next_block())
        .await
        .expect_err("not found");
    assert!(
        matches!(&error, DeliverError::Refused { status, start, .. } if *status == StatusCode::NOT_FOUND && start == "block 30"),
        "{error:?}"
    );
    // Still usable: once the chain reaches block 30 the same subscription delivers it.
    for _ in 24..=30 {
        peer.handle.generate_block().expect("generate");
    }
    assert_eq!(next_numbers(&mut subscription, 1).await, [30]);
}

#[tokio::test]
async fn start_at_the_height_waits_for_the_next_block() {
    let peer = RunningPeer::fixtures(None).await;
    let config = channel_config(vec![peer.endpoint()], None);
    let mut subscription =
        Subscription::new(config, StartPosition::Block(24), CancellationToken::new());
    let handle = peer.handle.clone();
    let generator = tokio::spawn(async move {
        // Generate only once the subscription's request has reached the peer.
        while handle.requests() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        handle.generate_block().expect("generate")
    });
    assert_eq!(next_numbers(&mut subscription, 1).await, [24]);
    assert_eq!(generator.await.expect("generator"), 24);
}

#[tokio::test]
async fn server_name_override_is_used_and_a_wrong_name_fails_clearly() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    // By IP with the override: the certificate names peer0.org1.example.com, not 127.0.0.1.
    let config = channel_config(vec![peer.endpoint()], Some(pki.client_tls()));
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 1).await, [0]);

    for wrong in [None, Some("peer9.org1.example.com".to_owned())] {
        let endpoint = PeerEndpoint {
            address: peer.address.to_string(),
            tls_server_name: wrong.clone(),
        };
        let config = channel_config(vec![endpoint], Some(pki.client_tls()));
        let mut subscription =
            Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
        let error = within("a TLS failure", subscription.next_block())
            .await
            .expect_err("wrong name");
        assert!(
            matches!(error, DeliverError::Tls { .. }),
            "{wrong:?}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("invalid peer certificate"), "{message}");
        assert!(
            message.contains("certificate not valid for name"),
            "{message}"
        );
    }

    // A CA that did not issue the peer's certificate.
    let other = TlsPki::new();
    let config = channel_config(vec![peer.endpoint()], Some(other.client_tls()));
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let error = within("a TLS failure", subscription.next_block())
        .await
        .expect_err("unknown CA");
    assert!(matches!(error, DeliverError::Tls { .. }), "{error:?}");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn mutual_tls_sends_the_client_certificate_hash() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(true))).await;
    let tls = pki.mutual_client_tls();
    let hash = tls.client_certificate.as_ref().map(|c| c.cert_hash());
    assert!(hash.is_some());
    let config = channel_config(vec![peer.endpoint()], Some(tls));
    let mut subscription =
        Subscription::new(config, StartPosition::Block(20), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 4).await, [20, 21, 22, 23]);

    // The simulator checks the binding: a request without the presented certificate's hash is FORBIDDEN.
    let tls = pki.mutual_client_tls();
    let endpoint =
        deliver::endpoint(&peer.endpoint(), Some(&tls), &fast_options()).expect("endpoint");
    let channel = within("connect", endpoint.connect())
        .await
        .expect("mutual TLS connects");
    let request = SeekRequest {
        channel_id: "mychannel".to_owned(),
        start: SeekPosition::Specified(0),
        stop: SeekPosition::Specified(0),
        tls_cert_hash: None,
    };
    let envelope = user1().seek_envelope_now(&request);
    let mut responses = within(
        "the stream",
        deliver::open_deliver_stream(channel, envelope, 1 << 20),
    )
    .await
    .expect("stream opens");
    let response = within("a response", responses.message())
        .await
        .expect("a message")
        .expect("not ended");
    assert_eq!(response.status, Some(403));
    assert_eq!(response.block, None);
}

#[tokio::test]
async fn fails_over_to_the_next_peer_when_the_first_is_down() {
    let pki = TlsPki::new();
    let live = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let peers = vec![
        PeerEndpoint {
            address: down.to_string(),
            tls_server_name: Some(crate::support::fabric::PEER_NAME.to_owned()),
        },
        live.endpoint(),
    ];
    let config = channel_config(peers, Some(pki.client_tls()));
    let mut subscription =
        Subscription::new(config, StartPosition::Block(5), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 3).await, [5, 6, 7]);
    let snapshot = subscription.status_handle().snapshot();
    assert_eq!(snapshot.current_peer, Some(live.address.to_string()));
    assert!(
        snapshot
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(&down.to_string())),
        "{snapshot:?}"
    );
}

#[tokio::test]
async fn a_transient_status_is_retried_until_the_peer_recovers() {
    let peer = RunningPeer::fixtures(None).await;
    peer.handle.set_faults(Faults {
        refuse_with: Some(StatusCode::SERVICE_UNAVAILABLE),
        ..Faults::default()
    });
    let config = channel_config(vec![peer.endpoint()], None);
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let handle = peer.handle.clone();
    let healer = tokio::spawn(async move {
        while handle.requests() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        handle.set_faults(Faults::default());
    });
    assert_eq!(next_numbers(&mut subscription, 1).await, [0]);
    healer.await.expect("healer");
    let snapshot = subscription.status_handle().snapshot();
    assert!(snapshot.reconnects >= 2, "{snapshot:?}");
}

#[tokio::test]
async fn shutdown_ends_a_waiting_subscription_and_the_simulator() {
    let peer = RunningPeer::fixtures(None).await;
    let shutdown = CancellationToken::new();
    let config = channel_config(vec![peer.endpoint()], None);
    let mut subscription = Subscription::new(config, StartPosition::Block(24), shutdown.clone());
    let waiting = tokio::spawn(async move { subscription.next_block().await });
    while peer.handle.requests() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    shutdown.cancel();
    let result = within("shutdown", waiting).await.expect("task");
    assert!(
        matches!(result, Err(DeliverError::Shutdown { .. })),
        "{result:?}"
    );
    within("the simulator to stop", peer.stop()).await;
}

#[tokio::test]
async fn a_block_over_the_size_limit_is_reported_not_retried_forever() {
    let peer = RunningPeer::fixtures(None).await;
    let mut config = channel_config(vec![peer.endpoint()], None);
    config.options.max_message_size = 2048;
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let error = within("a size error", subscription.next_block())
        .await
        .expect_err("too large");
    assert!(
        matches!(error, DeliverError::TooLarge { limit: 2048, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("max_message_size"), "{error}");
}

/// The reconnect delays follow the backoff policy (equal jitter: at least half the capped exponential delay).
/// Only lower bounds are checked, so a slow machine cannot fail it.
#[tokio::test]
async fn reconnects_wait_per_the_backoff_policy() {
    let peer = RunningPeer::fixtures(None).await;
    peer.handle.set_faults(Faults {
        refuse_with: Some(StatusCode::SERVICE_UNAVAILABLE),
        ..Faults::default()
    });
    let mut config = channel_config(vec![peer.endpoint()], None);
    config.options.backoff = chaintrigger::fabric::deliver::BackoffPolicy {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(80),
    };
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let handle = peer.handle.clone();
    let mut requests = handle.subscribe_requests();
    let started = std::time::Instant::now();
    let healer = tokio::spawn(async move {
        // Heal after the fourth refused request.
        while *requests.borrow_and_update() < 4 {
            requests.changed().await.expect("simulator running");
        }
        handle.set_faults(Faults::default());
    });
    assert_eq!(next_numbers(&mut subscription, 1).await, [0]);
    let elapsed = started.elapsed();
    healer.await.expect("healer");
    // Four refusals, then waits of at least 20 + 40 + 40 + 40 ms before the fifth request.
    assert!(elapsed >= Duration::from_millis(140), "{elapsed:?}");
    assert_eq!(subscription.status_handle().snapshot().reconnects, 4);
}

/// A peer that serves the same forged block every time it is asked is asked ever less often: the backoff keeps
/// growing across the refusals of that block, though the block is handed out (and the count of failures since
/// the last block handed out would start over) each time. Only lower bounds are checked.
#[tokio::test]
async fn the_same_block_refused_again_and_again_backs_off_further_each_time() {
    let peer = RunningPeer::fixtures(None).await;
    let mut config = channel_config(vec![peer.endpoint()], None);
    config.options.backoff = chaintrigger::fabric::deliver::BackoffPolicy {
        initial: Duration::from_millis(40),
        max: Duration::from_secs(2),
    };
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    assert_eq!(next_numbers(&mut subscription, 3).await, [0, 1, 2]);
    let started = std::time::Instant::now();
    for _ in 0..5 {
        subscription.reject(2, "forged".to_owned());
        assert_eq!(next_numbers(&mut subscription, 1).await, [2]);
    }
    // Equal jitter waits at least half of 40, 80, 160, 320 and 640 ms: 620 ms. Had each refusal started the
    // count over, the five waits would add up to at least 100 ms only.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(620), "{elapsed:?}");
}

#[tokio::test]
async fn every_stream_the_client_drops_is_closed_on_the_peer() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    let config = || channel_config(vec![peer.endpoint()], Some(pki.client_tls()));

    // Subscriptions dropped after a few blocks, as a trigger drops its catch-up stream once caught up.
    for round in 0..5u64 {
        let mut subscription = Subscription::new(
            config(),
            StartPosition::Block(round),
            CancellationToken::new(),
        );
        next_numbers(&mut subscription, 3).await;
        assert_eq!(peer.handle.open_streams(), 1, "round {round}");
        drop(subscription);
        wait_open_streams(&peer.handle, 0).await;
    }

    // A subscription waiting on a quiet channel (no response headers yet), dropped.
    let mut subscription =
        Subscription::new(config(), StartPosition::Block(24), CancellationToken::new());
    let waiting = tokio::spawn(async move { subscription.next_block().await });
    wait_open_streams(&peer.handle, 1).await;
    waiting.abort();
    wait_open_streams(&peer.handle, 0).await;

    // The raw call: dropped mid-stream, and while still opening.
    let tls = pki.client_tls();
    let connect = || async {
        let endpoint =
            deliver::endpoint(&peer.endpoint(), Some(&tls), &fast_options()).expect("endpoint");
        within("connect", endpoint.connect())
            .await
            .expect("connects")
    };
    let request = |start| SeekRequest {
        channel_id: "mychannel".to_owned(),
        start: SeekPosition::Specified(start),
        stop: SeekPosition::Specified(u64::MAX),
        tls_cert_hash: None,
    };
    let mut stream = within(
        "the stream",
        deliver::open_deliver_stream(
            connect().await,
            user1().seek_envelope_now(&request(0)),
            1 << 26,
        ),
    )
    .await
    .expect("opens");
    within("a block", stream.message()).await.expect("a block");
    assert_eq!(peer.handle.open_streams(), 1);
    drop(stream);
    wait_open_streams(&peer.handle, 0).await;
    let channel = connect().await;
    let opening = tokio::spawn(deliver::open_deliver_stream(
        channel,
        user1().seek_envelope_now(&request(24)),
        1 << 26,
    ));
    wait_open_streams(&peer.handle, 1).await;
    opening.abort();
    wait_open_streams(&peer.handle, 0).await;
}

#[tokio::test]
async fn a_stream_counts_as_connected_once_established_even_on_a_quiet_channel() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(false))).await;
    let config = channel_config(vec![peer.endpoint()], Some(pki.client_tls()));
    // At the height: the peer sends nothing, not even its response headers, until the next block.
    let mut subscription =
        Subscription::new(config, StartPosition::Block(24), CancellationToken::new());
    let status = subscription.status_handle();
    let waiting = tokio::spawn(async move {
        let block = subscription.next_block().await;
        (subscription, block)
    });
    let connected = |reconnects: u64| {
        let status = status.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let now = status.snapshot();
                if now.connected && now.reconnects == reconnects {
                    return now;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "not connected after {reconnects} reconnect(s): {now:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let now = connected(0).await;
    assert_eq!(now.last_block, None, "no block came: {now:?}");
    assert_eq!(now.current_peer, Some(peer.address.to_string()));

    // A peer restart cuts the stream: the new one is connected again before any block arrives.
    wait_open_streams(&peer.handle, 1).await;
    peer.handle.cut_streams();
    let now = connected(1).await;
    assert_eq!(now.last_block, None, "{now:?}");
    assert!(
        now.last_error
            .as_deref()
            .is_some_and(|e| e.contains("closed the stream")),
        "{now:?}"
    );
    assert!(!waiting.is_finished());
    peer.handle.generate_block().expect("generate");
    let (_subscription, block) = within("the next block", waiting).await.expect("task");
    assert_eq!(block.expect("a block").number, 24);
}

#[tokio::test]
async fn a_peer_requiring_a_client_certificate_is_an_error_not_a_retry_loop() {
    let pki = TlsPki::new();
    let peer = RunningPeer::fixtures(Some(pki.server_tls(true))).await;
    let config = channel_config(vec![peer.endpoint()], Some(pki.client_tls()));
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let error = within("a TLS refusal", subscription.next_block())
        .await
        .expect_err("no client certificate");
    assert!(matches!(error, DeliverError::Tls { .. }), "{error:?}");
    assert!(error.is_fatal_for_now());
    let message = error.to_string();
    assert!(
        message.contains("requires a client certificate (mutual TLS)"),
        "{message}"
    );
    assert!(message.contains(&peer.address.to_string()), "{message}");

    // A client certificate from a CA the peer does not trust.
    let stranger = TlsPki::new().mutual_client_tls();
    let tls = chaintrigger::fabric::deliver::ClientTls {
        ca: pki.client_tls().ca,
        client_certificate: stranger.client_certificate,
    };
    let config = channel_config(vec![peer.endpoint()], Some(tls));
    let mut subscription =
        Subscription::new(config, StartPosition::Block(0), CancellationToken::new());
    let status = subscription.status_handle();
    let error = tokio::time::timeout(Duration::from_secs(5), subscription.next_block())
        .await
        .unwrap_or_else(|_| panic!("retrying: {:?}", status.snapshot()))
        .expect_err("an untrusted client certificate");
    assert!(matches!(error, DeliverError::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("client certificate"), "{error}");
}
