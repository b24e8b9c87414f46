//! Delivery ids are unique per (channel, block, event index, output), where BaaS envelope ids are not: a block holding
//! the same envelope twice (a real peer marks the second DUPLICATE_TXID) and MESSAGE envelopes without a
//! transaction id (marked BAD_COMMON_HEADER) give several events one envelope `id`. Every one of them is pushed,
//! and an async Function Compute target runs every one (its stateful invocation id derives from the delivery id).

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use chaintrigger::fabric::proto::protos::TxValidationCode;
use chaintrigger::peersim::block::{
    BlockInputs, ChainTip, TaskAction, TaskTransaction, build_block_of, message_envelope,
    task_envelope,
};

use crate::support::daemon::{
    CHANNEL, Daemon, DaemonFiles, Functions, Handler, Network, PATIENCE, Receiver, TriggerSpec,
    eventually, expected_ids,
};

/// Appends a block holding one `createTask` envelope twice (the second DUPLICATE_TXID) and three MESSAGE envelopes
/// without a transaction id (BAD_COMMON_HEADER); returns its number.
fn append_block_with_repeated_ids(network: &Network) -> u64 {
    let handle = network.handle();
    let tip = ChainTip::of_block(&handle.block(handle.height() - 1).expect("the newest block"))
        .expect("the newest block's header");
    let signer = chaintrigger::peersim::fixture_user1();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let nonce = [7u8; 24];
    let inputs = BlockInputs {
        channel_id: CHANNEL,
        timestamp: prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: 0,
        },
        nonces: vec![nonce],
    };
    let task = TaskTransaction {
        action: TaskAction::Create {
            task: "task-twice".into(),
        },
        writes_special_key: false,
        validation_code: TxValidationCode::Valid,
    };
    let twice = task_envelope(&task, &signer, &nonce, &inputs);
    let mut envelopes = vec![
        (twice.clone(), TxValidationCode::Valid),
        (twice, TxValidationCode::DuplicateTxid),
    ];
    for text in ["first", "second", "third"] {
        envelopes.push((
            message_envelope(&signer, &inputs, text),
            TxValidationCode::BadCommonHeader,
        ));
    }
    let block = build_block_of(&tip, &envelopes, &signer, &inputs);
    handle.append_block(block).expect("the block chains on")
}

#[tokio::test]
async fn events_sharing_an_envelope_id_are_each_pushed_with_their_own_delivery_id() {
    let network = Network::start(None).await;
    let functions = Functions::start().await;
    functions.create("queued", Handler::Record).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let start = network.height();
    let mut queued = TriggerSpec::new(
        "queued",
        "Tx",
        format!(
            "{}invocation = \"Async\"\n",
            functions.target_toml("queued", &files.fc_secret())
        ),
    );
    queued.start = Some(start);
    let mut hook = TriggerSpec::new("hook", "Tx", receiver.target_toml("hook"));
    hook.start = Some(start);
    files.write_config(&network, &[queued, hook]);
    let daemon = Daemon::start(&files).await;

    let block = append_block_with_repeated_ids(&network);
    let expected = expected_ids(network.handle(), "Tx", block, block + 1);
    assert_eq!(expected.len(), 5, "{expected:?}");
    let distinct: HashSet<&String> = expected.iter().collect();
    assert_eq!(
        distinct.len(),
        2,
        "the block's five Tx events share two envelope ids: {expected:?}"
    );

    daemon.admin.wait_position("hook", block + 1).await;
    let pushes = receiver.pushes("hook");
    let pushed: Vec<&str> = pushes.iter().map(|p| p.event_id.as_str()).collect();
    assert_eq!(pushed, expected, "every event pushed, in chain order");
    let delivery_ids: Vec<&str> = pushes.iter().map(|p| p.delivery_id.as_str()).collect();
    // Event indexes count the block's Contract events too (each createTask emits one): 0 is the Block event.
    let wanted: Vec<String> = [1, 3, 5, 6, 7]
        .iter()
        .map(|index| format!("{CHANNEL}/{block}/{index}/0"))
        .collect();
    assert_eq!(delivery_ids, wanted, "one delivery id per event");
    assert!(
        pushes.iter().all(|p| p
            .headers
            .get("x-chaintrigger-trigger")
            .is_some_and(|v| v == "hook")),
        "every push names its trigger"
    );

    // The runtime de-duplicates async invocations by their stateful id: all five must run.
    let mut calls = eventually("five async runs", PATIENCE, || {
        let calls = functions.calls("queued");
        std::future::ready((calls.len() >= 5).then_some(calls))
    })
    .await;
    calls.sort();
    let mut wanted = expected.clone();
    wanted.sort();
    assert_eq!(calls, wanted, "each event ran once");
    let status = daemon.admin.wait_position("queued", block + 1).await;
    assert_eq!(status["delivered"], 5, "{status}");
}
