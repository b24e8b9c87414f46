//! `enable --from time:...`: the daemon finds the first block created at or after a time with one-block reads of
//! the peer simulator (its recorded blocks carry the real network's times, its generated ones the current time),
//! says which block it found, and moves the trigger there.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;

use crate::support::daemon::{Daemon, DaemonFiles, Network, Receiver, TriggerSpec, cli};

/// Every block's create time (Unix seconds), as the Block event's `create_time`.
fn block_times(network: &Network) -> Vec<i64> {
    (0..network.height())
        .map(|n| {
            let bytes = network.handle().block(n).expect("the block exists");
            chaintrigger::trigger::replay::create_time(bytes).expect("the block decodes")
        })
        .collect()
}

fn rfc3339(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn enable_at(daemon: &Daemon, from: &str) -> (u16, Value) {
    let query: String = url_escape(from);
    daemon
        .admin
        .call(
            reqwest::Method::POST,
            &format!("/v1/triggers/blocks/enable?from={query}"),
        )
        .await
}

fn url_escape(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn enable_from_a_time_starts_at_the_first_block_created_at_or_after_it() {
    let network = Network::start(None).await;
    network.generate(3);
    let times = block_times(&network);
    let height = network.height();
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    files.write_config(
        &network,
        &[TriggerSpec::new(
            "blocks",
            "Block",
            receiver.target_toml("blocks"),
        )],
    );
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("blocks", height).await;

    // A time between two recorded blocks: the first block at or after it, found by the daemon, as a scan finds it.
    let middle = times[12] - 1;
    let expected = times.iter().position(|&t| t >= middle).unwrap() as u64;
    assert!(
        expected > 0 && expected < 24,
        "the recorded blocks have real, growing times: {times:?}"
    );
    let (status, answer) = enable_at(&daemon, &format!("time:{}", rfc3339(middle))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["resolved"]["block"], expected, "{answer}");
    assert_eq!(
        answer["resolved"]["block_time"].as_str().unwrap(),
        format!(
            "{}.000Z",
            rfc3339(times[expected as usize]).trim_end_matches('Z')
        )
    );
    assert_eq!(answer["position"]["block"], expected);
    // The trigger replays from there: block events from `expected` on arrive again.
    let again = format!("block-{expected}");
    receiver
        .wait_accepted(
            "blocks",
            height as usize + 1,
            crate::support::daemon::PATIENCE,
        )
        .await;
    let accepted = receiver.accepted("blocks");
    assert_eq!(accepted[height as usize], again, "{accepted:?}");

    // Before the genesis block: block 0. An offset time means the same instant.
    let before = DateTime::parse_from_rfc3339("2001-02-03T04:05:06+02:00").unwrap();
    let (status, answer) = enable_at(&daemon, &format!("time:{}", before.to_rfc3339())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["resolved"]["block"], 0);
    assert_eq!(answer["resolved"]["time"], "2001-02-03T02:05:06.000Z");

    // After the newest block: refused, naming the newest block and its time; the trigger stays where it was.
    let later = Utc::now() + TimeDelta::hours(1);
    let (status, answer) = enable_at(
        &daemon,
        &format!("time:{}", later.to_rfc3339_opts(SecondsFormat::Secs, true)),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no block of channel `mychannel` was created at or after")
            && message.contains(&format!("the newest, block {}", height - 1)),
        "{message}"
    );
    let (status, answer) = enable_at(&daemon, "time:yesterday").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("RFC 3339"),
        "{answer}"
    );

    // The CLI shows the block it resolved to and its time.
    let target = format!("time:{}", rfc3339(times[5]));
    let (ok, stdout, stderr) = cli(&files, &["enable", "blocks", "--from", &target]).await;
    assert!(ok, "{stderr}");
    let first = times.iter().position(|&t| t >= times[5]).unwrap();
    assert!(
        stdout.starts_with(&format!(
            "{target} is block {first} (created {}), the first block at or after that time\nenabled blocks from",
            rfc3339(times[first])
        )),
        "{stdout}"
    );
    let (ok, _, stderr) = cli(&files, &["enable", "blocks", "--from", "time:tomorrow"]).await;
    assert!(!ok && stderr.contains("RFC 3339"), "{stderr}");
    daemon.terminate().await;
}
