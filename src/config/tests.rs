use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use super::*;
use crate::events::{EventType, Rendering};
use crate::filter::Language;

const MINIMAL: &str = r#"
instance_id = "csi-org1-test"
database = "state/chaintrigger.db"

[admin]
token = { env = "CT_TEST_ADMIN_TOKEN" }

[[channels]]
name = "mychannel"
msp_id = "Org1MSP"
certificate = "msp/signcert.pem"
key = "msp/key.pem"

[[channels.peers]]
address = "peer0.org1.example.com:7051"
tls_ca = "msp/tlsca.pem"

[[triggers]]
name = "all-tx"
channel = "mychannel"
event = "Tx"

[triggers.target.http]
url = "http://127.0.0.1:8080/events"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/ct/test.toml"))
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected the configuration to be refused"),
        Err(e) => e.problems().iter().map(Problem::to_string).collect(),
    }
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in text"));
    text[..at].matches('\n').count() + 1
}

#[test]
fn minimal_configuration_gets_the_documented_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.instance_id.as_str(), "csi-org1-test");
    assert_eq!(
        config.database.get_ref(),
        Path::new("/etc/ct/state/chaintrigger.db")
    );
    assert_eq!(
        config.admin.listen.get_ref().to_string(),
        DEFAULT_ADMIN_LISTEN
    );
    assert!(config.admin.listen.get_ref().ip().is_loopback());
    assert!(!*config.admin.allow_remote.get_ref());
    assert!(config.admin.tls().is_none());
    assert_eq!(
        *config.admin.max_connections.get_ref(),
        DEFAULT_ADMIN_MAX_CONNECTIONS
    );
    assert_eq!(
        config.admin.header_read_timeout.get_ref().0,
        DEFAULT_ADMIN_HEADER_READ_TIMEOUT
    );
    assert_eq!(
        config.admin.idle_timeout.get_ref().0,
        DEFAULT_ADMIN_IDLE_TIMEOUT
    );
    assert_eq!(
        config.admin.token.get_ref(),
        &SecretSource::Env("CT_TEST_ADMIN_TOKEN".into())
    );
    assert!(!config.runtime.enabled);
    assert!(config.runtime.listen.ip().is_loopback());
    assert_eq!(
        config.runtime.data_dir.get_ref(),
        Path::new("/etc/ct/runtime")
    );
    let channel = &config.channels[0];
    assert_eq!(
        channel.certificate.get_ref(),
        Path::new("/etc/ct/msp/signcert.pem")
    );
    assert_eq!(
        channel.peers.get_ref()[0]
            .tls_ca
            .as_ref()
            .unwrap()
            .get_ref(),
        Path::new("/etc/ct/msp/tlsca.pem")
    );
    let trigger = &config.triggers[0];
    assert_eq!(trigger.name.get_ref().as_str(), "all-tx");
    assert_eq!(trigger.event, EventSelector::Only(EventType::Tx));
    assert!(!trigger.include_invalid.get_ref());
    assert!(trigger.filter.is_none());
    assert_eq!(trigger.filter_language, Language::Jq);
    assert_eq!(trigger.failure_threshold, FailureThreshold::UNLIMITED);
    assert_eq!(trigger.retry, RetryPolicy::default());
    assert_eq!(trigger.retry.attempts, 5);
    assert_eq!(trigger.start, StartPosition::Latest);
    assert!(trigger.enabled);
    assert!(trigger.compile_filter().unwrap().is_none());
    let Target::Http(http) = &trigger.target else {
        panic!("expected an HTTP target")
    };
    assert_eq!(http.method, HttpMethod::Post);
    assert!(matches!(http.auth, HttpAuth::None));
    assert_eq!(config.file(), Path::new("/etc/ct/test.toml"));
    assert!(
        config
            .channel(&ChannelName::new("mychannel").unwrap())
            .is_some()
    );
}

#[test]
fn full_trigger_settings_are_read() {
    let text = format!(
        r#"{MINIMAL}
[runtime]
enabled = true
listen = "127.0.0.1:9100"
functions = "functions"
credentials = {{ access_key_id = "local", access_key_secret = {{ file = "runtime.secret" }} }}

[[triggers]]
name = "tasks"
channel = "mychannel"
event = "*"
include_invalid = true
filter = 'select(.name=="event-create-task")'
failure_threshold = 3
start = 42
enabled = false
retry = {{ attempts = 2, initial_delay = "100ms", max_delay = "2s", attempt_timeout = "5s" }}

[triggers.target.function_compute]
endpoint = "embedded"
service = "demo"
function = "on_task"
qualifier = "LATEST"
invocation = "Async"

[[triggers]]
name = "remote"
channel = "mychannel"
event = "Contract"
filter = "name == 'x'"
filter_language = "jmespath"

[triggers.target.function_compute]
endpoint = "https://123456.cn-hangzhou.fc.aliyuncs.com"
service = "svc"
function = "fn"
account_id = "123456"
credentials = {{ access_key_id = "LTAIexample", access_key_secret = {{ env = "FC_SECRET" }} }}

[[triggers]]
name = "webhook"
channel = "mychannel"
event = "Block"

[triggers.target.http]
url = "https://hooks.example.com/fabric?src=ct"
method = "GET"
auth = {{ basic = {{ user = "ops", password = {{ env = "HOOK_PASSWORD" }} }} }}
headers = {{ "X-Source" = "chaintrigger" }}
"#
    );
    let config = parse(&text).unwrap();
    assert!(config.runtime.enabled);
    assert_eq!(
        config.runtime.functions.as_ref().unwrap().get_ref(),
        Path::new("/etc/ct/functions")
    );
    let secret = &config
        .runtime
        .credentials
        .as_ref()
        .unwrap()
        .access_key_secret;
    assert_eq!(
        secret.get_ref(),
        &SecretSource::File("/etc/ct/runtime.secret".into())
    );

    let tasks = &config.triggers[1];
    assert_eq!(tasks.event, EventSelector::All);
    assert!(tasks.event.matches(EventType::Config));
    assert!(*tasks.include_invalid.get_ref());
    assert_eq!(tasks.failure_threshold.limit(), Some(3));
    assert_eq!(tasks.start, StartPosition::Block(42));
    assert!(!tasks.enabled);
    assert_eq!(tasks.retry.attempts, 2);
    assert_eq!(tasks.retry.initial_delay.0, Duration::from_millis(100));
    assert_eq!(tasks.retry.max_delay.0, Duration::from_secs(2));
    assert_eq!(tasks.retry.attempt_timeout.0, Duration::from_secs(5));
    let Target::FunctionCompute(fc) = &tasks.target else {
        panic!("expected a Function Compute target")
    };
    assert_eq!(fc.endpoint.get_ref(), &FcEndpoint::Embedded);
    assert_eq!(fc.invocation, InvocationType::Async);
    assert_eq!(fc.qualifier.as_ref().unwrap().as_str(), "LATEST");
    assert!(tasks.compile_filter().unwrap().is_some());

    let remote = &config.triggers[2];
    assert_eq!(remote.filter_language, Language::Jmespath);
    let Target::FunctionCompute(fc) = &remote.target else {
        panic!("expected a Function Compute target")
    };
    assert_eq!(
        fc.endpoint.get_ref(),
        &FcEndpoint::Url(Url::parse("https://123456.cn-hangzhou.fc.aliyuncs.com").unwrap())
    );
    assert_eq!(fc.invocation, InvocationType::Sync);
    assert_eq!(
        fc.credentials.as_ref().unwrap().access_key_id,
        "LTAIexample"
    );

    let Target::Http(http) = &config.triggers[3].target else {
        panic!("expected an HTTP target")
    };
    assert_eq!(http.method, HttpMethod::Get);
    assert_eq!(http.url.as_str(), "https://hooks.example.com/fabric?src=ct");
    assert!(matches!(&http.auth, HttpAuth::Basic { user, .. } if user == "ops"));
    assert_eq!(http.headers.get_ref()["X-Source"], "chaintrigger");
}

#[test]
fn unknown_keys_are_refused_with_file_line_and_field() {
    let text = MINIMAL.replace("event = \"Tx\"", "event = \"Tx\"\nfilterr = \".\"");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    let line = line_of(&text, "filterr");
    assert!(
        found[0].starts_with(&format!(
            "/etc/ct/test.toml:{line}:1: triggers[0].filterr: unknown field `filterr`"
        )),
        "{found:?}"
    );

    let text = MINIMAL.replace("tls_ca =", "tls_cert = \"x\"\ntls_ca =");
    let found = problems(&text);
    assert!(
        found[0].contains("channels[0].peers[0].tls_cert: unknown field `tls_cert`"),
        "{found:?}"
    );

    let text = MINIMAL.replace(
        "url = \"http://127.0.0.1:8080/events\"",
        "url = \"http://127.0.0.1:8080/events\"\nauth = { bearer = { token = { env = \"T\" }, scheme = \"x\" } }",
    );
    let found = problems(&text);
    assert!(
        found[0].contains("triggers[0].target.http.auth.bearer: unexpected keys in table: scheme"),
        "{found:?}"
    );
    let text = MINIMAL.replace("token = { env", "token = { vault = \"x\", env");
    let found = problems(&text);
    assert!(
        found[0].contains("admin.token") && found[0].contains("unknown field `vault`"),
        "{found:?}"
    );

    let text = MINIMAL.replace("url = ", "uri = \"x\"\nurl = ");
    let found = problems(&text);
    assert!(
        found[0].contains("triggers[0].target.http.uri: unknown field `uri`"),
        "{found:?}"
    );
}

#[test]
fn bad_values_are_refused_at_their_place() {
    let cases = [
        (
            "name = \"all-tx\"",
            "name = \"all tx\"",
            "triggers[0].name",
            "invalid trigger name `all tx`",
        ),
        (
            "event = \"Tx\"",
            "event = \"tx\"",
            "triggers[0].event",
            "expected Block, Tx, Contract, Config or *",
        ),
        (
            "url = \"http://127.0.0.1:8080/events\"",
            "url = \"ftp://x/\"",
            "triggers[0].target.http.url",
            "scheme must be http or https",
        ),
        (
            "url = \"http://127.0.0.1:8080/events\"",
            "url = \"not a url\"",
            "triggers[0].target.http.url",
            "invalid URL",
        ),
        (
            "name = \"mychannel\"",
            "name = \"MyChannel\"",
            "channels[0].name",
            "lower-case",
        ),
        (
            "token = { env = \"CT_TEST_ADMIN_TOKEN\" }",
            "token = \"hunter2\"",
            "admin.token",
            "secrets are not written in the configuration file",
        ),
        (
            "token = { env = \"CT_TEST_ADMIN_TOKEN\" }",
            "token = { env = \"A\", file = \"b\" }",
            "admin.token",
            "exactly one of",
        ),
        (
            "event = \"Tx\"",
            "event = \"Tx\"\nfailure_threshold = -2",
            "triggers[0].failure_threshold",
            "expected -1",
        ),
        (
            "event = \"Tx\"",
            "event = \"Tx\"\nstart = \"earliest\"",
            "triggers[0].start",
            "expected \"latest\" or a block number",
        ),
        (
            "event = \"Tx\"",
            "event = \"Tx\"\nretry = { initial_delay = \"1 s\" }",
            "triggers[0].retry.initial_delay",
            "invalid duration",
        ),
        (
            "event = \"Tx\"",
            "event = \"Tx\"\nfilter_language = \"jsonpath\"",
            "triggers[0].filter_language",
            "unknown variant",
        ),
        (
            "[admin]",
            "[admin]\nlisten = \"localhost\"",
            "admin.listen",
            "invalid socket address",
        ),
        (
            "key = \"msp/key.pem\"",
            "key = \"msp/key.pem\"\nrendering = \"v3.1\"",
            "channels[0].rendering",
            "expected `v2.5` or `v3`",
        ),
    ];
    for (from, to, field, message) in cases {
        let text = MINIMAL.replace(from, to);
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{to}: {found:?}");
        let line = line_of(&text, to.lines().last().unwrap_or(to));
        assert!(
            found[0].starts_with(&format!("/etc/ct/test.toml:{line}:")),
            "{to}: expected line {line}: {found:?}"
        );
        assert!(
            found[0].contains(&format!(": {field}: ")),
            "{to}: {found:?}"
        );
        assert!(found[0].contains(message), "{to}: {found:?}");
    }
}

#[test]
fn a_channel_rendering_is_learned_unless_pinned() {
    assert_eq!(parse(MINIMAL).unwrap().channels[0].rendering, None);
    for (name, rendering) in [("v2.5", Rendering::V2_5), ("v3", Rendering::V3)] {
        let text = MINIMAL.replace(
            "key = \"msp/key.pem\"",
            &format!("key = \"msp/key.pem\"\nrendering = \"{name}\""),
        );
        assert_eq!(parse(&text).unwrap().channels[0].rendering, Some(rendering));
    }
}

#[test]
fn toml_syntax_errors_are_located() {
    let found = problems("instance_id = \"a\"\ndatabase = \n");
    assert!(found[0].starts_with("/etc/ct/test.toml:2:"), "{found:?}");
    let found = problems(&format!("{MINIMAL}\n[admin]\ntoken = {{ env = \"X\" }}\n"));
    assert!(found[0].contains("duplicate"), "{found:?}");
}

#[test]
fn every_semantic_problem_is_reported_with_its_place() {
    let text = format!(
        r#"{MINIMAL}
[[channels]]
name = "mychannel"
msp_id = "Org1MSP"
certificate = "c.pem"
key = "k.pem"
peers = []

[[triggers]]
name = "all-tx"
channel = "otherchannel"
event = "Tx"
include_invalid = true
filter = '.content | select(.to == '

[triggers.target.function_compute]
endpoint = "embedded"
service = "svc"
function = "fn"

[[triggers]]
name = "bad-jmespath"
channel = "mychannel"
event = "Contract"
filter = "name == "
filter_language = "jmespath"

[triggers.target.function_compute]
endpoint = "https://fc.example.com"
service = "svc"
function = "fn"

[[triggers]]
name = "bad-peer"
channel = "mychannel"
event = "Block"
retry = {{ attempts = 0, initial_delay = "5s", max_delay = "1s" }}

[triggers.target.http]
url = "http://127.0.0.1/"
auth = {{ bearer = {{ token = {{ env = "T" }} }} }}
headers = {{ "Authorization" = "x", "X-Chaintrigger-Event-Id" = "1", "Bad Header" = "v" }}
"#
    );
    let found = problems(&text);
    let expect = |field: &str, message: &str, line_needle: Option<&str>| {
        let hit = found
            .iter()
            .find(|p| p.contains(&format!(": {field}: ")) && p.contains(message))
            .unwrap_or_else(|| panic!("no problem `{field}: {message}` in {found:#?}"));
        if let Some(needle) = line_needle {
            let line = text
                .match_indices(needle)
                .last()
                .map(|(at, _)| text[..at].matches('\n').count() + 1);
            assert!(
                hit.starts_with(&format!("/etc/ct/test.toml:{}:", line.unwrap_or(0))),
                "{hit}"
            );
        }
    };
    expect(
        "channels[1].name",
        "already declared by channels[0]",
        Some("name = \"mychannel\""),
    );
    expect("channels[1].peers", "at least one peer", Some("peers = []"));
    expect(
        "triggers[1].name",
        "trigger `all-tx` is already declared by triggers[0]",
        Some("name = \"all-tx\""),
    );
    expect(
        "triggers[1].channel",
        "unknown channel `otherchannel` (declared channels: mychannel, mychannel)",
        Some("channel = \"otherchannel\""),
    );
    expect(
        "triggers[1].include_invalid",
        "applies to Contract events only",
        Some("include_invalid = true"),
    );
    expect(
        "triggers[1].filter",
        "jq filter does not compile",
        Some("filter = '.content"),
    );
    expect(
        "triggers[1].target.function_compute.endpoint",
        "needs the bundled runtime",
        Some("endpoint = \"embedded\""),
    );
    expect(
        "triggers[2].filter",
        "jmespath filter does not compile",
        Some("filter = \"name == \""),
    );
    expect(
        "triggers[2].target.function_compute.credentials",
        "needs `credentials`",
        None,
    );
    expect("triggers[3].retry.attempts", "at least 1 attempt", None);
    expect("triggers[3].retry.initial_delay", "above max_delay", None);
    expect(
        "triggers[3].target.http.headers",
        "`Authorization` conflicts with `auth`",
        None,
    );
    expect("triggers[3].target.http.headers", "set by the daemon", None);
    expect(
        "triggers[3].target.http.headers",
        "not a valid header name",
        None,
    );
    assert_eq!(found.len(), 14, "{found:#?}");
}

#[test]
fn peers_need_tls_unless_plaintext_is_asked_for() {
    let text = MINIMAL.replace("tls_ca = \"msp/tlsca.pem\"", "");
    assert!(problems(&text)[0].contains("channels[0].peers[0].tls_ca: a peer needs `tls_ca`"));
    let text = MINIMAL.replace("tls_ca = \"msp/tlsca.pem\"", "plaintext = true");
    assert!(parse(&text).is_ok());
    let text = MINIMAL.replace(
        "tls_ca = \"msp/tlsca.pem\"",
        "tls_ca = \"a\"\nplaintext = true",
    );
    assert!(problems(&text)[0].contains("contradict"));
    let text = MINIMAL.replace(
        "tls_ca = \"msp/tlsca.pem\"",
        "tls_ca = \"a\"\nclient_certificate = \"c\"",
    );
    assert!(problems(&text)[0].contains("`client_certificate` needs `client_key`"));
    for bad in ["peer0", "grpcs://peer0:7051", "peer0:port", ":7051"] {
        let text = MINIMAL.replace("peer0.org1.example.com:7051", bad);
        assert!(problems(&text)[0].contains("invalid peer address"), "{bad}");
    }
}

#[test]
fn environment_check_reports_missing_files_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ct.toml");
    // SAFETY: these variable names are used by this test only.
    unsafe {
        std::env::remove_var("CT_TEST_ENV_CHECK_TOKEN");
    }
    let text = MINIMAL.replace("CT_TEST_ADMIN_TOKEN", "CT_TEST_ENV_CHECK_TOKEN");
    std::fs::write(&path, &text).unwrap();
    let config = Config::load(&path).unwrap();
    let error = config.check_environment().unwrap_err();
    let found: Vec<String> = error.problems().iter().map(Problem::to_string).collect();
    assert_eq!(found.len(), 4, "{found:#?}");
    let file = path.display().to_string();
    assert!(found[0].starts_with(&format!("{file}:{}:", line_of(&text, "certificate ="))));
    assert!(
        found[0].contains("channels[0].certificate: file"),
        "{found:?}"
    );
    assert!(found[1].contains("channels[0].key"), "{found:?}");
    assert!(
        found[2].contains("channels[0].peers[0].tls_ca"),
        "{found:?}"
    );
    assert!(
        found[3].contains("admin.token: environment variable CT_TEST_ENV_CHECK_TOKEN is not set")
    );

    std::fs::create_dir(dir.path().join("msp")).unwrap();
    for name in ["signcert.pem", "key.pem", "tlsca.pem"] {
        std::fs::write(dir.path().join("msp").join(name), "pem").unwrap();
    }
    // SAFETY: as above.
    unsafe {
        std::env::set_var("CT_TEST_ENV_CHECK_TOKEN", "s3cret");
    }
    let found: Vec<String> = config
        .check_environment()
        .unwrap_err()
        .problems()
        .iter()
        .map(Problem::to_string)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(
            "admin.token: the admin token in environment variable CT_TEST_ENV_CHECK_TOKEN is shorter than 16 characters"
        ),
        "{found:?}"
    );
    // SAFETY: as above.
    unsafe {
        std::env::set_var("CT_TEST_ENV_CHECK_TOKEN", "0123456789abcdef0123");
    }
    config.check_environment().unwrap();
    assert_eq!(
        config.admin.token.get_ref().read().unwrap().expose(),
        "0123456789abcdef0123"
    );
}

#[test]
fn environment_check_covers_the_runtime_and_target_secrets() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["c.pem", "k.pem", "ca.pem", "token"] {
        std::fs::write(dir.path().join(name), "0123456789abcdef-long-enough").unwrap();
    }
    let text = r#"
instance_id = "i"
database = "db.sqlite"
[admin]
token = { file = "token" }
[runtime]
enabled = true
functions = "no-such-folder"
credentials = { access_key_id = "local", access_key_secret = { file = "missing.secret" } }
[[channels]]
name = "mychannel"
msp_id = "Org1MSP"
certificate = "c.pem"
key = "k.pem"
peers = [{ address = "p:7051", tls_ca = "ca.pem" }]
[[triggers]]
name = "fc"
channel = "mychannel"
event = "Block"
target.function_compute = { endpoint = "https://fc.example.com", service = "s", function = "f", credentials = { access_key_id = "id", access_key_secret = { env = "CT_TEST_UNSET_FC_SECRET" } } }
[[triggers]]
name = "basic"
channel = "mychannel"
event = "Block"
target.http = { url = "http://127.0.0.1/h", auth = { basic = { user = "u", password = { file = "nope" } } } }
"#;
    let path = dir.path().join("ct.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let found: Vec<String> = config
        .check_environment()
        .unwrap_err()
        .problems()
        .iter()
        .map(Problem::to_string)
        .collect();
    let fields = [
        "runtime.functions: folder",
        "runtime.credentials.access_key_secret: cannot read secret file",
        "triggers[0].target.function_compute.credentials.access_key_secret: environment variable CT_TEST_UNSET_FC_SECRET is not set",
        "triggers[1].target.http.auth.basic.password: cannot read secret file",
    ];
    assert_eq!(found.len(), fields.len(), "{found:#?}");
    for (problem, field) in found.iter().zip(fields) {
        assert!(problem.contains(field), "{problem} does not name {field}");
    }
}

#[test]
fn secrets_are_read_from_files_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "abc\n").unwrap();
    let secret = SecretSource::File(file.clone()).read().unwrap();
    assert_eq!(secret.expose(), "abc");
    assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    std::fs::write(&file, "\n").unwrap();
    assert!(
        SecretSource::File(file)
            .read()
            .unwrap_err()
            .contains("is empty")
    );
    assert!(
        SecretSource::File(dir.path().join("nope"))
            .read()
            .unwrap_err()
            .contains("cannot read secret file")
    );
}

#[test]
fn unreadable_file_is_named() {
    let error = Config::load(Path::new("/nonexistent/ct.toml")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot read configuration file /nonexistent/ct.toml")
    );
}

#[test]
fn documented_example_is_accepted() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/chaintrigger.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.triggers.is_empty());
    assert!(
        config
            .triggers
            .iter()
            .any(|t| matches!(t.target, Target::FunctionCompute(_)))
    );
    assert!(
        config
            .triggers
            .iter()
            .any(|t| matches!(t.target, Target::Http(_)))
    );
}

#[test]
fn definitions_compare_by_value_not_by_place_for_reload() {
    let before = parse(MINIMAL).unwrap();
    // The same trigger written elsewhere in the file, with defaults spelled out: the same definition.
    let moved = format!(
        "\n\n{}",
        MINIMAL.replace(
            "event = \"Tx\"",
            "event = \"Tx\"\nfailure_threshold = -1\nenabled = true"
        )
    );
    let after = parse(&moved).unwrap();
    assert_eq!(before.triggers, after.triggers);
    assert_eq!(before.channels, after.channels);
    let changed = parse(&MINIMAL.replace("/events", "/other")).unwrap();
    assert_ne!(before.triggers[0], changed.triggers[0]);
    assert_eq!(before.triggers[0].name, changed.triggers[0].name);
}

#[test]
fn filter_timeout_is_read_defaulted_and_checked_at_its_place() {
    let with = |settings: &str| {
        MINIMAL.replace("event = \"Tx\"\n", &format!("event = \"Tx\"\n{settings}\n"))
    };
    let config = parse(&with("filter = '.id'\nfilter_timeout = \"250ms\"")).unwrap();
    let limits = config.triggers[0].filter_limits();
    assert_eq!(limits.timeout, Duration::from_millis(250));
    assert_eq!(limits.memory, crate::filter::MAX_MEMORY);
    let config = parse(&with("filter = '.id'")).unwrap();
    assert_eq!(
        config.triggers[0].filter_limits().timeout,
        crate::filter::DEFAULT_TIMEOUT
    );

    for (settings, message) in [
        (
            "filter = '.id'\nfilter_timeout = \"0ms\"",
            "the timeout must be above 0",
        ),
        (
            "filter = '.id'\nfilter_timeout = \"2m\"",
            "120s is above the longest filter timeout, 60s",
        ),
        (
            "filter_timeout = \"5s\"",
            "`filter_timeout` needs a `filter`",
        ),
        (
            "filter = '.id'\nfilter_timeout = \"1.5s\"",
            "invalid duration `1.5s`",
        ),
    ] {
        let text = with(settings);
        let found = problems(&text);
        let line = line_of(&text, "filter_timeout");
        assert!(
            found.iter().any(|problem| problem.contains(message)
                && problem.contains("triggers[0].filter_timeout")
                && problem.contains(&format!("test.toml:{line}:"))),
            "{settings}: {found:?}"
        );
    }
}
