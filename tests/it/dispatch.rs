//! Pushes to real local HTTP servers (axum on port 0): Function Compute invocations with their signature checked by
//! the server, HTTP targets with auth and GET encoding, retries, timeouts and configuration errors.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chaintrigger::config::{
    FcName, FcQualifier, HttpMethod, HumanDuration, InvocationType, RetryPolicy, Secret,
};
use chaintrigger::dispatch::fc::stateful_invocation_id;
use chaintrigger::dispatch::{
    Delivery, Dispatcher, EVENT_ID_HEADER, FcTarget, HttpAuth, HttpTarget, PushKey, Target,
};
use chaintrigger::fcsign::{self, SignedParts};
use reqwest::Url;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ACCESS_KEY_ID: &str = "testAccessKeyId";
const ACCESS_KEY_SECRET: &str = "testAccessKeySecret";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    /// Whether the FC signature verified (None: not an FC server).
    signature: Option<Result<(), fcsign::VerifyError>>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn answer(status: u16) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: String::new(),
        delay: Duration::ZERO,
    }
}

fn fc_api_error(status: u16, code: &str) -> Answer {
    Answer {
        headers: vec![("content-type", "application/json".into())],
        body: json!({"ErrorCode": code, "ErrorMessage": format!("{code} message")}).to_string(),
        ..answer(status)
    }
}

#[derive(Default)]
struct ServerState {
    /// Answers in order; the last one repeats.
    script: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<Recorded>>,
    /// Verify FC signatures (and answer 403 SignatureNotMatch when wrong).
    verify_fc: bool,
}

struct Server {
    url: Url,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
}

impl Server {
    async fn start(verify_fc: bool, script: Vec<Answer>) -> Server {
        let state = Arc::new(ServerState {
            script: Mutex::new(script.into()),
            seen: Mutex::new(Vec::new()),
            verify_fc,
        });
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        Server {
            url,
            state,
            shutdown,
        }
    }

    fn seen(&self) -> Vec<Recorded> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn record(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let signature = state.verify_fc.then(|| {
        let headers: Vec<(&str, &str)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let authorization = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        fcsign::verify(
            authorization,
            ACCESS_KEY_ID,
            ACCESS_KEY_SECRET,
            &SignedParts {
                method: parts.method.as_str(),
                headers: &headers,
                path: parts.uri.path(),
                queries: &[],
            },
        )
    });
    let rejected = matches!(signature, Some(Err(_)));
    state.seen.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body,
        signature,
    });
    if rejected {
        return fc_api_error(403, "SignatureNotMatch").into_response();
    }
    let next = {
        let mut script = state.script.lock().unwrap();
        if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        }
    };
    let next = next.unwrap_or_else(|| answer(200));
    tokio::time::sleep(next.delay).await;
    next.into_response()
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::from_u16(self.status).unwrap(), self.body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }
}

fn fc_target(server: &Server, invocation: InvocationType, secret: &str) -> Target {
    Target::FunctionCompute(FcTarget {
        endpoint: server.url.clone(),
        service: FcName::new("demo").unwrap(),
        function: FcName::new("hello").unwrap(),
        qualifier: Some(FcQualifier::new("LATEST").unwrap()),
        invocation,
        account_id: Some("1234567890123456".into()),
        access_key_id: ACCESS_KEY_ID.into(),
        access_key_secret: Secret::new(secret),
    })
}

fn http_target(server: &Server, path: &str, method: HttpMethod, auth: HttpAuth) -> Target {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-source", "chaintrigger".parse().unwrap());
    Target::Http(HttpTarget {
        url: server.url.join(path).unwrap(),
        method,
        auth,
        headers,
    })
}

fn policy(attempts: u32, attempt_timeout_ms: u64) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_delay: HumanDuration(Duration::from_millis(10)),
        max_delay: HumanDuration(Duration::from_millis(40)),
        attempt_timeout: HumanDuration(Duration::from_millis(attempt_timeout_ms)),
    }
}

const KEY: PushKey<'static> = PushKey {
    trigger: "task-created",
    channel: "mychannel",
    block: 3,
    event_index: 2,
    output: 0,
    envelope_id: "contract-3-8389948d079a61a4dc1cc6bca1567b4ece3ad03b8f5785b9fad447c2b3a83e2d",
};

/// `KEY`'s delivery id, as the push's `X-Chaintrigger-Event-Id`.
const DELIVERY_ID: &str = "mychannel/3/2/0";

fn payload() -> Value {
    json!({"type": "Contract", "id": KEY.envelope_id, "content": "eyJvcCI6InB1dCJ9", "note": "ünïcode & more"})
}

fn dispatcher() -> Dispatcher {
    chaintrigger::install_crypto_provider();
    Dispatcher::new().unwrap()
}

#[tokio::test]
async fn function_compute_sync_push_is_signed_and_delivered() {
    let server = Server::start(true, vec![answer(200)]).await;
    let target = fc_target(&server, InvocationType::Sync, ACCESS_KEY_SECRET);
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    assert_eq!(outcome, Delivery::Delivered { attempts: 1 });
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.signature, Some(Ok(())));
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/2016-08-15/services/demo.LATEST/functions/hello/invocations"
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-fc-invocation-type"), Some("Sync"));
    assert_eq!(request.header("x-fc-account-id"), Some("1234567890123456"));
    assert_eq!(request.header("x-fc-stateful-async-invocation-id"), None);
    assert_eq!(request.header(EVENT_ID_HEADER), Some(DELIVERY_ID));
    assert_eq!(
        request.header("x-chaintrigger-envelope-id"),
        Some(KEY.envelope_id)
    );
    assert!(httpdate::parse_http_date(request.header("date").unwrap()).is_ok());
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body, payload());
}

#[tokio::test]
async fn function_compute_async_push_carries_the_stateful_invocation_id() {
    let server = Server::start(true, vec![answer(202)]).await;
    let target = fc_target(&server, InvocationType::Async, ACCESS_KEY_SECRET);
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    assert_eq!(outcome, Delivery::Delivered { attempts: 1 });
    let request = &server.seen()[0];
    assert_eq!(request.signature, Some(Ok(())));
    assert_eq!(request.header("x-fc-invocation-type"), Some("Async"));
    assert_eq!(
        request.header("x-fc-stateful-async-invocation-id"),
        Some(stateful_invocation_id(&KEY).as_str())
    );
}

#[tokio::test]
async fn function_errors_are_retried_then_the_event_is_discarded() {
    let function_error = Answer {
        headers: vec![
            ("x-fc-error-type", "UnhandledInvocationError".into()),
            ("content-type", "application/json".into()),
        ],
        body: r#"{"errorMessage":"task store is down","errorType":"Exception"}"#.into(),
        ..answer(200)
    };
    let server = Server::start(true, vec![function_error]).await;
    let target = fc_target(&server, InvocationType::Sync, ACCESS_KEY_SECRET);
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    let Delivery::Discarded {
        last_error,
        attempts,
    } = outcome
    else {
        panic!("expected a discard, got {outcome:?}")
    };
    assert_eq!(attempts, 3);
    assert!(
        last_error.starts_with("function error UnhandledInvocationError:")
            && last_error.contains("task store is down"),
        "{last_error}"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|r| r.header(EVENT_ID_HEADER) == Some(DELIVERY_ID))
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_until_delivered() {
    let script = vec![
        fc_api_error(503, "ResourceThrottled"),
        fc_api_error(429, "ResourceExhausted"),
        fc_api_error(500, "InternalServerError"),
        answer(200),
    ];
    let server = Server::start(true, script).await;
    let target = fc_target(&server, InvocationType::Sync, ACCESS_KEY_SECRET);
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(5, 5_000))
        .await;
    assert_eq!(outcome, Delivery::Delivered { attempts: 4 });
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test]
async fn function_not_found_blocks_at_once() {
    let server = Server::start(true, vec![fc_api_error(404, "FunctionNotFound")]).await;
    let target = fc_target(&server, InvocationType::Sync, ACCESS_KEY_SECRET);
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(5, 5_000))
        .await;
    let Delivery::Blocked { reason, attempts } = outcome else {
        panic!("expected Blocked, got {outcome:?}")
    };
    assert_eq!(attempts, 1);
    assert!(
        reason.starts_with("Function Compute answered 404 FunctionNotFound"),
        "{reason}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_server_and_blocks() {
    let server = Server::start(true, vec![answer(200)]).await;
    let target = fc_target(&server, InvocationType::Sync, "not-the-secret");
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(5, 5_000))
        .await;
    let Delivery::Blocked { reason, .. } = outcome else {
        panic!("expected Blocked, got {outcome:?}")
    };
    assert!(reason.contains("403 SignatureNotMatch"), "{reason}");
    assert_eq!(
        server.seen()[0].signature,
        Some(Err(fcsign::VerifyError::SignatureMismatch))
    );
}

#[tokio::test]
async fn entity_too_large_is_discarded_without_retries() {
    let server = Server::start(true, vec![fc_api_error(400, "EntityTooLarge")]).await;
    let target = fc_target(&server, InvocationType::Sync, ACCESS_KEY_SECRET);
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(5, 5_000))
        .await;
    assert!(
        matches!(&outcome, Delivery::Discarded { attempts: 1, last_error } if last_error.contains("EntityTooLarge")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn http_post_sends_json_bearer_token_and_headers() {
    let server = Server::start(false, vec![answer(204)]).await;
    let target = http_target(
        &server,
        "/hooks/fabric",
        HttpMethod::Post,
        HttpAuth::Bearer(Secret::new("tok-123")),
    );
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    assert_eq!(outcome, Delivery::Delivered { attempts: 1 });
    let request = &server.seen()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/fabric");
    assert_eq!(request.header("authorization"), Some("Bearer tok-123"));
    assert_eq!(request.header("x-source"), Some("chaintrigger"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header(EVENT_ID_HEADER), Some(DELIVERY_ID));
    assert_eq!(
        serde_json::from_slice::<Value>(&request.body).unwrap(),
        payload()
    );
}

#[tokio::test]
async fn http_get_sends_the_payload_in_the_query_with_basic_auth() {
    let server = Server::start(false, vec![answer(200)]).await;
    let target = http_target(
        &server,
        "/hook?src=ct",
        HttpMethod::Get,
        HttpAuth::Basic {
            user: "ops".into(),
            password: Secret::new("p@ss:word"),
        },
    );
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    assert_eq!(outcome, Delivery::Delivered { attempts: 1 });
    let request = &server.seen()[0];
    assert_eq!(request.method, "GET");
    assert!(request.body.is_empty());
    // base64("ops:p@ss:word")
    assert_eq!(
        request.header("authorization"),
        Some("Basic b3BzOnBAc3M6d29yZA==")
    );
    let query: BTreeMap<String, String> =
        Url::parse(&format!("http://x/?{}", request.query.as_deref().unwrap()))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
    assert_eq!(query["src"], "ct");
    assert_eq!(
        serde_json::from_str::<Value>(&query["event"]).unwrap(),
        payload()
    );
}

#[tokio::test]
async fn http_client_errors_block_or_discard_as_documented() {
    for (status, blocked) in [
        (400, true),
        (401, true),
        (404, true),
        (422, false),
        (413, false),
    ] {
        let server = Server::start(false, vec![answer(status)]).await;
        let target = http_target(&server, "/h", HttpMethod::Post, HttpAuth::None);
        let outcome = dispatcher()
            .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
            .await;
        match outcome {
            Delivery::Blocked { attempts: 1, .. } if blocked => {}
            Delivery::Discarded { attempts: 1, .. } if !blocked => {}
            other => panic!("{status}: unexpected {other:?}"),
        }
        assert_eq!(server.seen().len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let redirect = Answer {
        headers: vec![("location", "http://127.0.0.1:1/elsewhere".into())],
        ..answer(302)
    };
    let server = Server::start(false, vec![redirect]).await;
    let target = http_target(&server, "/h", HttpMethod::Post, HttpAuth::None);
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    assert!(
        matches!(&outcome, Delivery::Blocked { reason, .. } if reason.contains("302")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_slow_target_times_out_inside_each_attempt() {
    let slow = Answer {
        delay: Duration::from_secs(30),
        ..answer(200)
    };
    let server = Server::start(false, vec![slow]).await;
    let target = http_target(&server, "/slow", HttpMethod::Post, HttpAuth::None);
    let started = Instant::now();
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(2, 150))
        .await;
    assert_eq!(
        outcome,
        Delivery::Discarded {
            last_error: "no answer within 150 ms".into(),
            attempts: 2
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let throttled = Answer {
        headers: vec![("retry-after", "1".into())],
        ..answer(429)
    };
    let server = Server::start(false, vec![throttled, answer(200)]).await;
    let target = http_target(&server, "/h", HttpMethod::Post, HttpAuth::None);
    let started = Instant::now();
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    assert_eq!(outcome, Delivery::Delivered { attempts: 2 });
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited only {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_blocks_after_its_attempts() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let target = Target::Http(HttpTarget {
        url: Url::parse(&format!("http://{closed}/h")).unwrap(),
        method: HttpMethod::Post,
        auth: HttpAuth::None,
        headers: Default::default(),
    });
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    let Delivery::Blocked { reason, attempts } = outcome else {
        panic!("expected Blocked, got {outcome:?}")
    };
    assert_eq!(attempts, 3);
    assert!(
        reason.starts_with("endpoint unreachable after 3 attempts: cannot connect"),
        "{reason}"
    );
}

#[tokio::test]
async fn targets_resolve_from_configuration_with_their_secrets() {
    let text = r#"
instance_id = "i"
database = "db.sqlite"
[admin]
token = { env = "CT_DISPATCH_TEST_TOKEN" }
[runtime]
enabled = true
[[channels]]
name = "mychannel"
msp_id = "Org1MSP"
certificate = "c"
key = "k"
peers = [{ address = "p:7051", plaintext = true }]
[[triggers]]
name = "embedded"
channel = "mychannel"
event = "Block"
target.function_compute = { endpoint = "embedded", service = "svc", function = "fn", invocation = "Async" }
[[triggers]]
name = "hook"
channel = "mychannel"
event = "Block"
target.http = { url = "http://127.0.0.1:1/h", auth = { bearer = { token = { env = "CT_DISPATCH_TEST_HOOK_TOKEN" } } } }
"#;
    let config =
        chaintrigger::config::Config::parse(text, std::path::Path::new("/tmp/t.toml")).unwrap();
    let runtime = chaintrigger::dispatch::EmbeddedRuntime {
        endpoint: Url::parse("http://127.0.0.1:9999").unwrap(),
        access_key_id: "runtime-key".into(),
        access_key_secret: Secret::new("runtime-secret"),
    };
    let Target::FunctionCompute(fc) =
        Target::resolve(&config.triggers[0].target, Some(&runtime)).unwrap()
    else {
        panic!("expected a Function Compute target")
    };
    assert_eq!(
        fc.url(),
        "http://127.0.0.1:9999/2016-08-15/services/svc/functions/fn/invocations"
    );
    assert_eq!(fc.access_key_id, "runtime-key");
    assert_eq!(fc.invocation, InvocationType::Async);
    assert!(Target::resolve(&config.triggers[0].target, None).is_err());

    let error = Target::resolve(&config.triggers[1].target, None).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("CT_DISPATCH_TEST_HOOK_TOKEN is not set"),
        "{error}"
    );
    // SAFETY: the variable is used by this test only.
    unsafe {
        std::env::set_var("CT_DISPATCH_TEST_HOOK_TOKEN", "tok");
    }
    let Target::Http(http) = Target::resolve(&config.triggers[1].target, None).unwrap() else {
        panic!("expected an HTTP target")
    };
    assert!(matches!(http.auth, HttpAuth::Bearer(ref t) if t.expose() == "tok"));
}

#[tokio::test]
async fn a_tls_failure_is_a_configuration_error() {
    // A plain-HTTP server behind an https:// URL: the TLS handshake fails, as with an untrusted certificate.
    let server = Server::start(false, vec![answer(200)]).await;
    let mut url = server.url.join("/h").unwrap();
    url.set_scheme("https").unwrap();
    let target = Target::Http(HttpTarget {
        url,
        method: HttpMethod::Post,
        auth: HttpAuth::None,
        headers: Default::default(),
    });
    let outcome = dispatcher()
        .deliver(&target, &payload(), &KEY, &policy(3, 5_000))
        .await;
    let Delivery::Blocked { reason, attempts } = outcome else {
        panic!("expected Blocked, got {outcome:?}")
    };
    assert_eq!(attempts, 1, "{reason}");
    assert!(reason.starts_with("TLS handshake failed"), "{reason}");
}
