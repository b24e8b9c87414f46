//! Blocks are verified before anything of them is pushed: a peer that alters a block (its data, or the hash that
//! chains it onto the block before) never gets it pushed; the channel shows why and reads the block from the next
//! peer. The last accepted header is kept with the trigger's progress, so the check holds across a restart.

use std::time::Duration;

use chaintrigger::peersim::{Faults, Tamper, Tampering};

use crate::support::daemon::{
    Daemon, Network, PATIENCE, Receiver, block_ids, blocks_daemon, eventually,
};

/// The daemon on two peers of one channel, the first one tampering (`how`) with every block from 24 on, after the
/// daemon pushed the recorded blocks 0-23: every block is pushed once, the true one, from the second peer, and the
/// first peer's error says why (`reason`).
async fn tampered_by_the_current_peer(how: Tampering, reason: &str) {
    let (network, second) = Network::start_with_replica(None).await;
    let receiver = Receiver::start().await;
    let (files, daemon) = blocks_daemon(
        &network.channel_toml_for(&[&network.peer, &second]),
        &receiver,
    )
    .await;
    receiver.wait_accepted("blocks", 24, PATIENCE).await;
    network.handle().set_faults(Faults {
        tamper: Some(Tamper { from: 24, how }),
        ..Faults::default()
    });
    network.generate(3);
    receiver.wait_accepted("blocks", 27, PATIENCE).await;
    let channel = daemon.admin.channel().await;
    assert_eq!(channel["peer"], second.address.to_string(), "{channel}");
    let error = channel["peers"][0]["last_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("served block 24, which fails verification") && error.contains(reason),
        "{channel}"
    );
    let log = files.log();
    assert!(log.contains("block refused"), "{log}");
    daemon.terminate().await;
    assert_eq!(
        receiver.accepted("blocks"),
        block_ids(0, 27),
        "each block once, none skipped"
    );
}

#[tokio::test]
async fn a_block_whose_data_does_not_match_its_data_hash_is_read_from_the_next_peer() {
    tampered_by_the_current_peer(Tampering::Data, "header.data_hash is").await;
}

#[tokio::test]
async fn a_block_that_does_not_chain_onto_the_previous_one_is_read_from_the_next_peer() {
    tampered_by_the_current_peer(
        Tampering::PreviousHash,
        "does not chain onto the previous one",
    )
    .await;
}

#[tokio::test]
async fn the_last_accepted_header_holds_across_a_restart() {
    /// Blocks added while the daemon is down: more than the channel's window of recent blocks.
    const GROWN: u64 = 70;
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let (files, daemon) = blocks_daemon(&network.channel_toml(), &receiver).await;
    receiver.wait_accepted("blocks", 24, PATIENCE).await;
    daemon.terminate().await;

    // While the daemon is down, its only peer starts serving blocks that do not chain onto block 23, and the chain
    // grows past the channel's 64 recent blocks. So after the restart the channel does not read block 23 again
    // for the trigger (which would let the channel's own stream see that 24 does not chain onto it): the trigger
    // reads the chain itself from block 24, and only the stored header of block 23 can tell.
    network.handle().set_faults(Faults {
        tamper: Some(Tamper {
            from: 24,
            how: Tampering::PreviousHash,
        }),
        ..Faults::default()
    });
    network.generate(GROWN);
    let daemon = Daemon::start(&files).await;
    let trigger = eventually("the refusal shown on the trigger", PATIENCE, || async {
        let trigger = daemon.admin.trigger("blocks").await;
        trigger["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("block 24 refused"))
            .then_some(trigger)
    })
    .await;
    assert!(
        trigger["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not chain onto the previous one")),
        "{trigger}"
    );
    assert_eq!(
        trigger["state"], "Running",
        "a peer's fault is not the trigger's"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.accepted("blocks").len(),
        24,
        "nothing of the forged blocks"
    );

    // The peer mends: the true blocks follow, including the newest, which the channel had taken in before its
    // block before it was known.
    network.handle().set_faults(Faults::default());
    let height = 24 + GROWN;
    let accepted = receiver
        .wait_accepted("blocks", usize::try_from(height).unwrap(), PATIENCE)
        .await;
    assert_eq!(accepted, block_ids(0, height));
    daemon.terminate().await;
}

#[tokio::test]
async fn a_replay_refuses_tampered_blocks_and_reads_them_from_the_next_peer() {
    let (network, second) = Network::start_with_replica(None).await;
    let receiver = Receiver::start().await;
    let (files, daemon) = blocks_daemon(
        &network.channel_toml_for(&[&network.peer, &second]),
        &receiver,
    )
    .await;
    receiver.wait_accepted("blocks", 24, PATIENCE).await;
    // Old blocks, read again by a replay's own stream, come altered from the first peer.
    network.handle().set_faults(Faults {
        tamper: Some(Tamper {
            from: 20,
            how: Tampering::Data,
        }),
        ..Faults::default()
    });
    let (status, body) = daemon
        .admin
        .call(reqwest::Method::POST, "/v1/triggers/blocks/enable?from=18")
        .await;
    assert_eq!(status, 200, "{body}");
    let accepted = receiver.wait_accepted("blocks", 30, PATIENCE).await;
    let replayed: Vec<String> = accepted[24..].to_vec();
    assert_eq!(
        replayed,
        block_ids(18, 24),
        "each replayed block once, true"
    );
    let log = files.log();
    assert!(
        log.contains("served block 20, which fails verification"),
        "the replay read block 20 from the tampering peer first: {log}"
    );
    daemon.terminate().await;
}
