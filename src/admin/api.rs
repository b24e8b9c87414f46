//! The admin HTTP routes: requests become [`EngineControl`] calls, results become JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::{AdminToken, bearer_credential};
use super::control::{
    ChannelStatus, ControlError, EnableAt, EnableFrom, EngineControl, FilterTest, FilterTestAnswer,
    TriggerStatus,
};
use super::metrics;

/// The largest request body accepted: commands carry at most a small JSON object.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Dead letters per page when the request does not say.
pub const DEFAULT_DEAD_LETTER_PAGE: u32 = 100;

/// The most dead letters one request may ask for: payloads can be large.
pub const MAX_DEAD_LETTER_PAGE: u32 = 1000;

/// What every handler shares.
struct AdminState<C> {
    /// The engine the commands go to.
    control: Arc<C>,
    /// The token every route but `/healthz` and `/readyz` requires.
    token: AdminToken,
}

/// An error answer: the HTTP status plus the JSON body `{"error": {"code": ..., "message": ...}}`, so
/// scripts can branch on `code` and people can read `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`not_found`, `conflict`, `bad_request`, ...).
    pub code: &'static str,
    /// What went wrong and what was expected.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn trigger_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no trigger named {name:?}"),
        )
    }
}

impl From<ControlError> for ApiError {
    fn from(error: ControlError) -> Self {
        let (status, code) = match &error {
            ControlError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ControlError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ControlError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ControlError::ConfigRejected(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "config_rejected")
            }
            ControlError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ControlError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, error.to_string())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the request body is larger than {MAX_BODY_BYTES} bytes")
        } else {
            rejection.body_text()
        };
        Self::new(status, code, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

/// The routes, ready to serve. `/healthz`, `/readyz` and the status page ([`super::page`], which holds no data)
/// are open; everything else, unknown paths included (so a scan learns nothing), needs the bearer token.
pub fn router<C: EngineControl>(control: Arc<C>, token: AdminToken) -> Router {
    let state = Arc::new(AdminState { control, token });
    let protected = Router::new()
        .route("/v1/triggers", get(list_triggers::<C>))
        .route(
            "/v1/triggers/{name}",
            get(show_trigger::<C>).delete(delete_trigger::<C>),
        )
        .route("/v1/triggers/{name}/enable", post(enable_trigger::<C>))
        .route("/v1/triggers/{name}/disable", post(disable_trigger::<C>))
        .route(
            "/v1/triggers/{name}/dead-letters",
            get(list_dead_letters::<C>),
        )
        .route(
            "/v1/triggers/{name}/dead-letters/repush",
            post(repush_all_dead_letters::<C>),
        )
        .route(
            "/v1/triggers/{name}/dead-letters/{id}/repush",
            post(repush_dead_letter::<C>),
        )
        .route("/v1/reload", post(reload::<C>))
        .route("/v1/channels", get(list_channels::<C>))
        .route("/v1/filters/test", post(test_filter::<C>))
        .route("/metrics", get(render_metrics::<C>))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_token::<C>,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<C>))
        .merge(super::page::routes())
        .merge(protected)
        .layer(middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Liveness: 200 whenever the daemon answers. It deliberately ignores channel connectivity: restarting the
/// daemon does not bring a peer back, and an orchestrator acting on it would only add churn. The first
/// connection of every channel is `/readyz`; connectivity now is on `/v1/channels` and in `/metrics`
/// (`chaintrigger_channel_connected`).
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 once every configured channel's stream has been established at least once, 503 naming the
/// channels still waiting for their first connection. Open like `/healthz` (orchestrator probes carry no token),
/// so it says no more than channel names, which a probe needs to explain itself; peers and errors stay behind the
/// token on `/v1/channels`. It does not turn 503 again when a stream drops later: the daemon reconnects by
/// itself, and taking it out of service would not bring the peer back.
async fn readyz<C: EngineControl>(State(state): State<Arc<AdminState<C>>>) -> Response {
    let channels = state.control.channels().await;
    let waiting = channels_not_connected(&channels);
    if waiting.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "channels_not_connected": waiting})),
        )
            .into_response()
    }
}

/// The names of the channels whose stream has never been established, in the order given.
pub fn channels_not_connected(channels: &[ChannelStatus]) -> Vec<&str> {
    channels
        .iter()
        .filter(|channel| !channel.connected_once)
        .map(|channel| channel.name.as_str())
        .collect()
}

/// Refuses requests without the right bearer token (401 with `WWW-Authenticate: Bearer`, RFC 6750).
async fn require_token<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| bearer_credential(value.as_bytes()));
    let refusal = match presented {
        Some(Some(credential)) if state.token.matches(credential) => {
            return next.run(request).await;
        }
        Some(Some(_)) => (
            "Bearer realm=\"chaintrigger\", error=\"invalid_token\"",
            "the bearer token is not valid",
        ),
        Some(None) => (
            "Bearer realm=\"chaintrigger\"",
            "the Authorization header is not `Bearer <token>`",
        ),
        None => (
            "Bearer realm=\"chaintrigger\"",
            "this route needs `Authorization: Bearer <token>`",
        ),
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    tracing::warn!(?peer, method = %request.method(), path = request.uri().path(), "admin request refused: {}", refusal.1);
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", refusal.1).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(refusal.0),
    );
    response
}

/// Gives the errors axum answers by itself (405, 413, 415, ...) the same JSON shape as ours, keeping their
/// headers (e.g. `Allow`).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = response
                .headers()
                .get(header::ALLOW)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            (
                "method_not_allowed",
                format!("this route does not support that method; allowed: {allowed}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        ),
        other => (
            "error",
            other.canonical_reason().unwrap_or("error").to_owned(),
        ),
    };
    let (mut parts, _) = response.into_parts();
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {method} {}", uri.path()),
    )
}

/// `?deleted=true` lists the deleted triggers instead.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// List the triggers deleted over the API (kept by the store) instead of the live ones.
    #[serde(default)]
    deleted: bool,
}

async fn list_triggers<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query?;
    if query.deleted {
        let deleted = state.control.deleted_triggers().await?;
        return Ok(Json(json!({"triggers": deleted})));
    }
    Ok(Json(json!({"triggers": state.control.triggers().await})))
}

async fn show_trigger<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<TriggerStatus>, ApiError> {
    let Path(name) = name?;
    state
        .control
        .trigger(&name)
        .await
        .map(Json)
        .ok_or_else(|| ApiError::trigger_not_found(&name))
}

/// `from` as a query parameter (`?from=latest`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableQuery {
    /// `latest`, `position` or a block number.
    from: Option<String>,
}

/// `from` in a JSON body: `{"from": "position"}` or `{"from": 120}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableBody {
    /// `latest`, `position`, or a block number as a number or a string.
    from: Option<FromValue>,
}

/// A block number may come as a JSON number or as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FromValue {
    Block(u64),
    Text(String),
}

/// Reads where to enable from: the `from` query parameter or a JSON body, `latest` when neither says.
fn enable_from(query: EnableQuery, body: &[u8]) -> Result<EnableAt, ApiError> {
    let from_query = query
        .from
        .map(|text| text.parse::<EnableAt>())
        .transpose()
        .map_err(ApiError::bad_request)?;
    let from_body = if body.trim_ascii().is_empty() {
        None
    } else {
        let parsed: EnableBody = serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!(
                "expected an empty body or a JSON object like {{\"from\": \"latest\" | \"position\" | <block> | \"time:<RFC 3339>\"}}: {error}"
            ))
        })?;
        match parsed.from {
            None => None,
            Some(FromValue::Block(block)) => Some(EnableAt::From(EnableFrom::Block(block))),
            Some(FromValue::Text(text)) => {
                Some(text.parse::<EnableAt>().map_err(ApiError::bad_request)?)
            }
        }
    };
    match (from_query, from_body) {
        (Some(query), Some(body)) if query != body => Err(ApiError::bad_request(format!(
            "`from` is given twice with different values: {query} in the query, {body} in the body"
        ))),
        (query, body) => Ok(query.or(body).unwrap_or_default()),
    }
}

async fn enable_trigger<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<EnableQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(name) = name?;
    let Query(query) = query?;
    let (from, resolved) = match enable_from(query, &body?)? {
        EnableAt::From(from) => (from, None),
        EnableAt::Time(time) => {
            // Resolved first, then applied: the answer says which block the time came to.
            let resolved = state.control.resolve_time(&name, time).await?;
            tracing::info!(trigger = %name, time = %resolved.time, block = resolved.block, block_time = %resolved.block_time, "enable from a time: resolved to the first block created at or after it");
            (EnableFrom::Block(resolved.block), Some(resolved))
        }
    };
    let status = state.control.enable(&name, from).await?;
    tracing::info!(trigger = %name, %from, "trigger enabled over the admin API");
    let mut answer = json!(status);
    if let (Some(resolved), Some(object)) = (resolved, answer.as_object_mut()) {
        object.insert("resolved".to_owned(), json!(resolved));
    }
    Ok(Json(answer))
}

/// `POST /v1/filters/test`: what a trigger with the given filter would push for some blocks of a channel.
async fn test_filter<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FilterTestAnswer>, ApiError> {
    let body = body?;
    let request: FilterTest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(format!(
            "expected a JSON object like {{\"channel\": \"mychannel\", \"event\": \"Tx\", \"filter\": \"...\", \
             \"language\": \"jq\" | \"jmespath\", \"include_invalid\": false, \"from\": 5, \"to\": 9}}: {error}"
        ))
    })?;
    let channel = request.channel.clone();
    let answer = state.control.test_filter(request).await?;
    tracing::info!(%channel, events = answer.events.len(), held = answer.held, "filter tested over the admin API");
    Ok(Json(answer))
}

async fn disable_trigger<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<TriggerStatus>, ApiError> {
    let Path(name) = name?;
    let status = state.control.disable(&name).await?;
    tracing::info!(trigger = %name, "trigger disabled over the admin API");
    Ok(Json(status))
}

async fn delete_trigger<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(name) = name?;
    state.control.delete(&name).await?;
    tracing::info!(trigger = %name, "trigger deleted over the admin API");
    Ok(Json(json!({"deleted": name})))
}

/// Paging of dead letters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterQuery {
    /// Only dead letters with a greater id (the previous page's `next_after`).
    after: Option<u64>,
    /// Page size, 1 to [`MAX_DEAD_LETTER_PAGE`].
    limit: Option<u32>,
}

async fn list_dead_letters<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(name) = name?;
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_DEAD_LETTER_PAGE);
    if !(1..=MAX_DEAD_LETTER_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_DEAD_LETTER_PAGE}, found {limit}"
        )));
    }
    let letters = state
        .control
        .dead_letters(&name, query.after, limit)
        .await?;
    let next_after = (letters.len() == limit as usize)
        .then(|| letters.last().map(|letter| letter.id))
        .flatten();
    Ok(Json(
        json!({"trigger": name, "dead_letters": letters, "next_after": next_after}),
    ))
}

async fn repush_dead_letter<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path((name, id)) = params?;
    let id = id.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "expected a dead letter id (a whole number) in the path, found {id:?}"
        ))
    })?;
    let outcome = state.control.repush_dead_letter(&name, id).await?;
    tracing::info!(trigger = %name, id, delivered = outcome.delivered, "dead letter re-pushed over the admin API");
    Ok(Json(json!(outcome)))
}

async fn repush_all_dead_letters<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(name) = name?;
    let outcomes = state.control.repush_all_dead_letters(&name).await?;
    let delivered = outcomes.iter().filter(|outcome| outcome.delivered).count();
    tracing::info!(trigger = %name, delivered, total = outcomes.len(), "dead letters re-pushed over the admin API");
    Ok(Json(json!({"trigger": name, "outcomes": outcomes})))
}

async fn reload<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report = state.control.reload().await?;
    tracing::info!(?report, "configuration reloaded over the admin API");
    Ok(Json(json!(report)))
}

async fn list_channels<C: EngineControl>(
    State(state): State<Arc<AdminState<C>>>,
) -> Json<serde_json::Value> {
    Json(json!({"channels": state.control.channels().await}))
}

async fn render_metrics<C: EngineControl>(State(state): State<Arc<AdminState<C>>>) -> Response {
    let (triggers, channels, latencies) = tokio::join!(
        state.control.triggers(),
        state.control.channels(),
        state.control.invoke_latencies()
    );
    let text = metrics::render(&triggers, &channels, &latencies);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: Option<&str>) -> EnableQuery {
        EnableQuery {
            from: from.map(str::to_owned),
        }
    }

    fn channel(name: &str, connected: bool, connected_once: bool) -> ChannelStatus {
        ChannelStatus {
            name: name.into(),
            connected,
            connected_once,
            ..ChannelStatus::default()
        }
    }

    #[test]
    fn readiness_waits_for_every_channel_first_connection_only() {
        assert!(channels_not_connected(&[]).is_empty());
        let channels = [
            channel("a", false, true),
            channel("b", false, false),
            channel("c", true, true),
            channel("d", false, false),
        ];
        // `a` dropped after connecting: still ready; `b` and `d` never connected.
        assert_eq!(channels_not_connected(&channels), ["b", "d"]);
    }

    #[test]
    fn enable_from_reads_query_or_body_and_defaults_to_latest() {
        assert_eq!(
            enable_from(query(None), b""),
            Ok(EnableAt::From(EnableFrom::Latest))
        );
        assert_eq!(
            enable_from(query(None), b"  \n"),
            Ok(EnableAt::From(EnableFrom::Latest))
        );
        assert_eq!(
            enable_from(query(None), b"{}"),
            Ok(EnableAt::From(EnableFrom::Latest))
        );
        assert_eq!(
            enable_from(query(Some("position")), b""),
            Ok(EnableAt::From(EnableFrom::StoredPosition))
        );
        assert_eq!(
            enable_from(query(None), br#"{"from": 12}"#),
            Ok(EnableAt::From(EnableFrom::Block(12)))
        );
        assert_eq!(
            enable_from(query(None), br#"{"from": "12"}"#),
            Ok(EnableAt::From(EnableFrom::Block(12)))
        );
        assert_eq!(
            enable_from(query(Some("7")), br#"{"from": 7}"#),
            Ok(EnableAt::From(EnableFrom::Block(7)))
        );
    }

    #[test]
    fn enable_from_takes_a_time_to_resolve() {
        let time = chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            enable_from(query(Some("time:2026-11-29T10:00:00Z")), b""),
            Ok(EnableAt::Time(time))
        );
        assert_eq!(
            enable_from(
                query(None),
                br#"{"from": "time:2026-11-29T11:00:00+01:00"}"#
            ),
            Ok(EnableAt::Time(time))
        );
        let error = enable_from(query(Some("time:yesterday")), b"").unwrap_err();
        assert!(error.message.contains("RFC 3339"), "{}", error.message);
    }

    #[test]
    fn enable_from_explains_what_was_expected() {
        let error = enable_from(query(Some("yesterday")), b"").unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(
            error
                .message
                .contains("`latest`, `position` or a block number"),
            "{}",
            error.message
        );
        let error = enable_from(query(None), br#"{"start": 1}"#).unwrap_err();
        assert!(
            error.message.contains("unknown field `start`"),
            "{}",
            error.message
        );
        let error = enable_from(query(None), b"from=latest").unwrap_err();
        assert!(
            error
                .message
                .contains("expected an empty body or a JSON object"),
            "{}",
            error.message
        );
        let error = enable_from(query(Some("latest")), br#"{"from": "position"}"#).unwrap_err();
        assert!(error.message.contains("given twice"), "{}", error.message);
    }
}
