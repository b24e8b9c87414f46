//! Pushing events to targets: Function Compute (2016-08-15 invoke, signed) and HTTP, with retries.
//!
//! [`Dispatcher::push`] makes one attempt and reduces its result to what [`classify`] needs;
//! [`Dispatcher::deliver`] runs attempts on the trigger's retry schedule and returns the event's final
//! [`Delivery`]. One shared reqwest client (rustls, connection pooling) serves every trigger; redirects are not
//! followed (a redirect is reported as a configuration problem: the URL should be fixed).

pub mod classify;
pub mod fc;
pub mod http;
pub mod retry;

use std::time::{Duration, SystemTime};

use reqwest::Url;
use serde_json::Value;

use crate::config::{self, FcEndpoint, HttpMethod, RetryPolicy, Scrubber};
use classify::{AttemptResult, ResponseSummary, TargetKind, TransportError, Verdict};

pub use fc::FcTarget;
pub use http::{HttpAuth, HttpTarget};

/// The header that carries the push's delivery id ([`PushKey::delivery_id`]) on every push, so receivers can
/// de-duplicate.
pub const EVENT_ID_HEADER: &str = "X-Chaintrigger-Event-Id";
/// The header that carries the index of the filter output pushed (a filter may yield several per event).
pub const OUTPUT_INDEX_HEADER: &str = "X-Chaintrigger-Output-Index";
/// The header that names the trigger pushing, for receivers that serve several triggers.
pub const TRIGGER_HEADER: &str = "X-Chaintrigger-Trigger";
/// The header that carries the event envelope's BaaS `id` (not unique: see [`PushKey`]), so a receiver of filtered
/// payloads can still tell which event of the chain a push came from.
pub const ENVELOPE_ID_HEADER: &str = "X-Chaintrigger-Envelope-Id";

/// How long setting up a connection may take before the endpoint counts as unreachable. A connection still not
/// set up when the attempt timeout ends counts as an attempt timeout instead, so keep attempt timeouts above this
/// for a dropped-packets endpoint to be reported as unreachable (Exception) rather than failing (discards).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a response body read: enough for any error message, bounded against huge answers.
const MAX_BODY_READ: usize = 64 * 1024;

/// What identifies one push: the same event (by its place in the chain) through the same trigger and filter
/// output is the same push, pushed again only after a crash or a retry.
///
/// The envelope's BaaS `id` (`tx-<block>-<txid>`) is not unique: a block may hold the same transaction twice (the
/// second is marked DUPLICATE_TXID) and MESSAGE envelopes without a transaction id all get `tx-<block>-`. A
/// receiver de-duplicating by it would drop real events, so pushes carry the event's place instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushKey<'a> {
    /// The trigger pushing.
    pub trigger: &'a str,
    /// The channel the event is from.
    pub channel: &'a str,
    /// The block the event is in.
    pub block: u64,
    /// The event's index among its block's events (as in a trigger's position).
    pub event_index: u32,
    /// Which of the filter's outputs for this event (0 for the first).
    pub output: usize,
    /// The event envelope's BaaS `id`, sent along for correlation only.
    pub envelope_id: &'a str,
}

impl PushKey<'_> {
    /// `<channel>/<block>/<event index>/<output>`: unique for every payload a channel's events can yield, and the
    /// same each time the same payload is pushed again. Sent as [`EVENT_ID_HEADER`]. (Channel names cannot hold a
    /// `/`, so the parts never run into each other.)
    pub fn delivery_id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.channel, self.block, self.event_index, self.output
        )
    }
}

/// A trigger's target, ready to push to.
#[derive(Debug, Clone)]
pub enum Target {
    FunctionCompute(FcTarget),
    Http(HttpTarget),
}

/// Why a configured target cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error("cannot read the secret of {field}: {message}")]
    Secret { field: String, message: String },
    #[error(
        "`endpoint = \"embedded\"` needs the bundled runtime's address and credentials, and it is not running"
    )]
    NoEmbeddedRuntime,
    #[error("no access key for the Function Compute target")]
    NoCredentials,
    #[error("invalid HTTP headers: {0}")]
    Headers(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The bundled runtime as a target: where it listens and the key it accepts.
#[derive(Debug, Clone)]
pub struct EmbeddedRuntime {
    /// Its actual address (the configured port may be 0 in tests).
    pub endpoint: Url,
    /// The access key it accepts.
    pub access_key_id: String,
    /// The secret of that key.
    pub access_key_secret: config::Secret,
}

impl Target {
    /// Resolves a configured target: reads its secrets, picks the embedded runtime's address.
    pub fn resolve(
        target: &config::Target,
        embedded: Option<&EmbeddedRuntime>,
    ) -> Result<Target, DispatchError> {
        let secret = |source: &config::SecretSource, field: &str| {
            source.read().map_err(|message| DispatchError::Secret {
                field: field.to_owned(),
                message,
            })
        };
        match target {
            config::Target::FunctionCompute(fc) => {
                let own = fc
                    .credentials
                    .as_ref()
                    .map(|c| {
                        Ok::<_, DispatchError>((
                            c.access_key_id.clone(),
                            secret(
                                c.access_key_secret.get_ref(),
                                "credentials.access_key_secret",
                            )?,
                        ))
                    })
                    .transpose()?;
                let (endpoint, (access_key_id, access_key_secret)) = match fc.endpoint.get_ref() {
                    FcEndpoint::Url(url) => (url.clone(), own.ok_or(DispatchError::NoCredentials)?),
                    FcEndpoint::Embedded => {
                        let runtime = embedded.ok_or(DispatchError::NoEmbeddedRuntime)?;
                        let credentials = own.unwrap_or_else(|| {
                            (
                                runtime.access_key_id.clone(),
                                runtime.access_key_secret.clone(),
                            )
                        });
                        (runtime.endpoint.clone(), credentials)
                    }
                };
                Ok(Target::FunctionCompute(FcTarget {
                    endpoint,
                    service: fc.service.clone(),
                    function: fc.function.clone(),
                    qualifier: fc.qualifier.clone(),
                    invocation: fc.invocation,
                    account_id: fc.account_id.clone(),
                    access_key_id,
                    access_key_secret,
                }))
            }
            config::Target::Http(http) => {
                let auth = match &http.auth {
                    config::HttpAuth::None => HttpAuth::None,
                    config::HttpAuth::Basic { user, password } => HttpAuth::Basic {
                        user: user.clone(),
                        password: secret(password.get_ref(), "auth.basic.password")?,
                    },
                    config::HttpAuth::Bearer { token } => {
                        HttpAuth::Bearer(secret(token.get_ref(), "auth.bearer.token")?)
                    }
                };
                Ok(Target::Http(HttpTarget {
                    url: http.url.clone(),
                    method: http.method,
                    auth,
                    headers: http::parse_headers(http.headers.get_ref())
                        .map_err(DispatchError::Headers)?,
                }))
            }
        }
    }

    /// The secrets this target's messages must never show: the URL's userinfo and query values, the
    /// password or token it authenticates with (a receiver may echo the request in its error page), the Function
    /// Compute access key secret. Built on failures only, so a delivered push costs nothing.
    pub fn scrubber(&self) -> Scrubber {
        match self {
            Target::FunctionCompute(fc) => {
                let mut scrubber = Scrubber::for_url(&fc.endpoint);
                scrubber.add(fc.access_key_secret.expose());
                scrubber
            }
            Target::Http(http) => {
                let mut scrubber = Scrubber::for_url(&http.url);
                match &http.auth {
                    HttpAuth::None => {}
                    HttpAuth::Basic { user, password } => {
                        use base64::Engine as _;
                        scrubber.add(password.expose());
                        scrubber.add(
                            &base64::engine::general_purpose::STANDARD
                                .encode(format!("{user}:{}", password.expose())),
                        );
                    }
                    HttpAuth::Bearer(token) => scrubber.add(token.expose()),
                }
                scrubber
            }
        }
    }

    /// Which classification rules apply to this target's answers.
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::FunctionCompute(_) => TargetKind::FunctionCompute,
            Target::Http(_) => TargetKind::Http,
        }
    }
}

/// How delivering one payload ended, after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The target accepted it.
    Delivered {
        /// Attempts it took (1 = first time).
        attempts: u32,
    },
    /// Retries ran out, or the target refused this event for good: it becomes a dead letter, one failure.
    Discarded {
        /// The last attempt's error, kept with the dead letter.
        last_error: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A configuration problem (or an endpoint unreachable through every attempt): the trigger enters Exception
    /// and holds this event.
    Blocked {
        /// What to fix.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// Pushes payloads; cheap to clone (one shared connection pool).
#[derive(Debug, Clone)]
pub struct Dispatcher {
    client: reqwest::Client,
}

impl Dispatcher {
    /// A dispatcher with its own connection pool. Call [`crate::install_crypto_provider`] first.
    pub fn new() -> Result<Dispatcher, DispatchError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("chaintrigger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DispatchError::Client(e.to_string()))?;
        Ok(Dispatcher { client })
    }

    /// One attempt: sends `payload` and waits at most `timeout` for the whole answer.
    pub async fn push(
        &self,
        target: &Target,
        payload: &Value,
        key: &PushKey<'_>,
        timeout: Duration,
    ) -> AttemptResult {
        let body = payload.to_string();
        let request = match target {
            Target::FunctionCompute(fc) => {
                let mut request = self.client.post(fc.url());
                for (name, value) in fc.headers(key, SystemTime::now()) {
                    request = request.header(name, value);
                }
                request.body(body)
            }
            Target::Http(http) => {
                let url = http.request_url(&body);
                let request = match http.method {
                    HttpMethod::Get => self.client.get(url),
                    HttpMethod::Post => self
                        .client
                        .post(url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body),
                };
                let request = request.headers(http.headers.clone());
                match &http.auth {
                    HttpAuth::None => request,
                    HttpAuth::Basic { user, password } => {
                        request.basic_auth(user, Some(password.expose()))
                    }
                    HttpAuth::Bearer(token) => request.bearer_auth(token.expose()),
                }
            }
        };
        let request = request
            .header(EVENT_ID_HEADER, key.delivery_id())
            .header(OUTPUT_INDEX_HEADER, key.output.to_string())
            .header(TRIGGER_HEADER, key.trigger)
            .header(ENVELOPE_ID_HEADER, key.envelope_id);
        let kind = target.kind();
        let exchange = async {
            let response = request.send().await.map_err(transport_error)?;
            read_response(kind, response).await
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(summary)) => AttemptResult::Response(summary),
            Ok(Err(error)) => AttemptResult::Transport(error),
            Err(_) => AttemptResult::Transport(TransportError::Timeout(timeout)),
        };
        scrub_attempt(target, result)
    }

    /// Delivers one payload: attempts on `policy`'s schedule until it is delivered, refused for good, or the
    /// attempts run out.
    pub async fn deliver(
        &self,
        target: &Target,
        payload: &Value,
        key: &PushKey<'_>,
        policy: &RetryPolicy,
    ) -> Delivery {
        let mut backoff = retry::Backoff::new(policy);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = self
                .push(target, payload, key, policy.attempt_timeout.0)
                .await;
            match classify::classify(target.kind(), &result) {
                Verdict::Delivered => return Delivery::Delivered { attempts },
                Verdict::Undeliverable(reason) => {
                    return Delivery::Discarded {
                        last_error: reason,
                        attempts,
                    };
                }
                Verdict::Configuration(reason) => return Delivery::Blocked { reason, attempts },
                Verdict::Retry(retryable) => match backoff.next() {
                    Some(delay) => {
                        tracing::debug!(
                            trigger = key.trigger,
                            delivery = %key.delivery_id(),
                            attempts,
                            reason = %retryable.reason,
                            "push failed, retrying"
                        );
                        tokio::time::sleep(retry::delay_before_next(delay, retryable.retry_after))
                            .await;
                    }
                    None if retryable.unreachable => {
                        return Delivery::Blocked {
                            reason: format!(
                                "endpoint unreachable after {attempts} attempts: {}",
                                retryable.reason
                            ),
                            attempts,
                        };
                    }
                    None => {
                        return Delivery::Discarded {
                            last_error: retryable.reason,
                            attempts,
                        };
                    }
                },
            }
        }
    }
}

async fn read_response(
    kind: TargetKind,
    mut response: reqwest::Response,
) -> Result<ResponseSummary, TransportError> {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let fc_error_type = header(classify::FC_ERROR_TYPE_HEADER);
    let retry_after = header("retry-after")
        .and_then(|value| classify::parse_retry_after(&value, SystemTime::now()));
    let mut body = Vec::new();
    while body.len() < MAX_BODY_READ {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Err(transport_error(e)),
        }
    }
    let fc_error_code = match kind {
        TargetKind::FunctionCompute if !(200..300).contains(&status) => {
            classify::fc_error_code(&body)
        }
        _ => None,
    };
    Ok(ResponseSummary {
        status,
        fc_error_type,
        fc_error_code,
        retry_after,
        body_excerpt: classify::body_excerpt(&body),
    })
}

/// Wipes the target's secrets from what an attempt brought back, before anything can show or log it: the
/// messages built from it end up in `last_error`, dead letters, the API, the CLI and the log.
fn scrub_attempt(target: &Target, result: AttemptResult) -> AttemptResult {
    match result {
        AttemptResult::Response(summary)
            if summary.body_excerpt.is_empty()
                || ((200..300).contains(&summary.status) && summary.fc_error_type.is_none()) =>
        {
            AttemptResult::Response(summary)
        }
        AttemptResult::Response(mut summary) => {
            summary.body_excerpt = target.scrubber().scrub(&summary.body_excerpt);
            AttemptResult::Response(summary)
        }
        AttemptResult::Transport(error) => {
            let scrubber = target.scrubber();
            AttemptResult::Transport(match error {
                TransportError::Connect(text) => TransportError::Connect(scrubber.scrub(&text)),
                TransportError::Dns(text) => TransportError::Dns(scrubber.scrub(&text)),
                TransportError::Tls(text) => TransportError::Tls(scrubber.scrub(&text)),
                TransportError::InvalidUrl(text) => {
                    TransportError::InvalidUrl(scrubber.scrub(&text))
                }
                TransportError::Other(text) => TransportError::Other(scrubber.scrub(&text)),
                timeout @ TransportError::Timeout(_) => timeout,
            })
        }
    }
}

/// Sorts a reqwest error into the kinds the classifier knows, by looking through its causes.
fn transport_error(error: reqwest::Error) -> TransportError {
    let chain = error_chain(&error);
    if error.is_builder() {
        return TransportError::InvalidUrl(chain);
    }
    if error.is_dns() {
        return TransportError::Dns(chain);
    }
    if is_tls_error(&error) {
        return TransportError::Tls(chain);
    }
    if error.is_connect() {
        return TransportError::Connect(chain);
    }
    if error.is_timeout() {
        return TransportError::Timeout(Duration::ZERO);
    }
    TransportError::Other(chain)
}

/// Whether a rustls error is among the causes.
fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    find_rustls_error(error).is_some()
}

/// The rustls error among an error's causes, if any. rustls errors arrive inside (nested) `io::Error`s, whose
/// `source()` skips the error they wrap, so those are opened too.
pub fn find_rustls_error<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e rustls::Error> {
    if let Some(found) = error.downcast_ref::<rustls::Error>() {
        return Some(found);
    }
    let wrapped = error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| find_rustls_error(inner));
    wrapped.or_else(|| error.source().and_then(find_rustls_error))
}

/// `error: cause: cause ...`, without repeating a cause's text already shown. reqwest names the request's URL
/// in its message; it is shown redacted ([`config::redact_url`]): query strings and userinfo carry secrets.
pub fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), &config::redact_url(url));
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
