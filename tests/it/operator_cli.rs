//! The admin CLI as an operator types it: options after the subcommand, failures shown one way, deleted triggers
//! listed and brought back under a new name, mistakes answered with one message and no backtrace.

use crate::support::daemon::{Daemon, DaemonFiles, Network, Receiver, TriggerSpec, run_cli};

/// `chaintrigger triggers <args>` with the admin options after the subcommand, `RUST_BACKTRACE=1`.
async fn triggers(files: &DaemonFiles, args: &[&str]) -> (bool, String, String) {
    let token = files.dir.path().join("admin-token");
    let admin = files.admin_url();
    let token = token.to_str().expect("a UTF-8 path");
    let all: Vec<&str> = std::iter::once("triggers")
        .chain(args.iter().copied())
        .chain(["--admin", admin.as_str(), "--token-file", token])
        .collect();
    run_cli(&all).await
}

#[tokio::test]
async fn operators_list_show_delete_and_bring_back_triggers_from_the_cli() {
    let network = Network::start(None).await;
    let receiver = Receiver::start().await;
    let files = DaemonFiles::new();
    let blocks = TriggerSpec::new("blocks", "Block", receiver.target_toml("blocks"));
    let mut txs = TriggerSpec::new("txs", "Tx", receiver.target_toml("txs"));
    txs.failure_threshold = 10;
    files.write_config(&network, &[blocks.clone(), txs.clone()]);
    let daemon = Daemon::start(&files).await;
    daemon.admin.wait_position("txs", 24).await;

    // Options after the subcommand; the failure count against the threshold written one way.
    let (ok, table, stderr) = triggers(&files, &["list"]).await;
    assert!(ok, "{stderr}");
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {table}"))
            .to_owned()
    };
    assert!(line("blocks ").contains(" 0 (no limit) "), "{table}");
    assert!(line("txs ").contains(" 0/10 "), "{table}");
    let (ok, shown, _) = triggers(&files, &["show", "txs"]).await;
    assert!(ok);
    assert!(shown.contains("\nfailures      0/10\n"), "{shown}");

    // Deleted triggers are listed from the store, with where they were, and how to bring one back.
    let (ok, _, stderr) = triggers(&files, &["delete", "txs", "--yes"]).await;
    assert!(ok, "{stderr}");
    let (ok, deleted, _) = triggers(&files, &["list", "--deleted"]).await;
    assert!(ok);
    let row = deleted
        .lines()
        .find(|l| l.starts_with("txs "))
        .expect("txs listed");
    assert!(
        row.contains("block 24 event 0") && row.trim_end().ends_with("yes"),
        "{deleted}"
    );
    assert!(deleted.contains("give its entry a new name"), "{deleted}");
    let (status, answer) = daemon
        .admin
        .call(reqwest::Method::GET, "/v1/triggers?deleted=true")
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["triggers"][0]["name"], "txs");
    assert_eq!(answer["triggers"][0]["in_configuration"], true);
    assert!(!daemon.admin.triggers().await.contains_key("txs"));

    // Brought back as the README says: a new name starting where it was, and a reload.
    let mut again = txs.clone();
    again.name = "txs-again".to_owned();
    again.start = Some(24);
    files.write_config(&network, &[blocks, again]);
    let (ok, _, stderr) = triggers(&files, &["reload"]).await;
    assert!(ok, "{stderr}");
    daemon.admin.wait_state("txs-again", "Running").await;
    network.generate(1);
    daemon.admin.wait_position("txs-again", 25).await;
    let (_, answer) = daemon
        .admin
        .call(reqwest::Method::GET, "/v1/triggers?deleted=true")
        .await;
    assert_eq!(answer["triggers"][0]["in_configuration"], false);

    // An operator's mistakes: one clear message each, a failure status, no backtrace despite RUST_BACKTRACE=1.
    for (args, expected) in [
        (vec!["show", "nosuch"], "no trigger named \"nosuch\""),
        (
            vec!["enable", "blocks", "--from", "yesterday"],
            "expected `latest`, `position`",
        ),
        (vec!["enable", "blocks", "--from", "time:soon"], "RFC 3339"),
    ] {
        let (ok, stdout, stderr) = triggers(&files, &args).await;
        assert!(!ok && stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("backtrace"), "{args:?}: {stderr}");
    }
    daemon.terminate().await;
}
