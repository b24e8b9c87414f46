//! HTTP triggers on the wire: `/2016-08-15/proxy/{service}[.{qualifier}]/{function}/{path}` for any method,
//! answered by the function's handler through the pool, as the user guide describes.
//!
//! In order: the path is parsed ([`ProxyTarget`]: a `..` segment is refused), the function's HTTP trigger found
//! (404), a `function` trigger's signature checked when the runtime has an access key (400 without
//! `Authorization` or `Date`, 403 for a wrong signature or a stale Date, as the guide's troubleshooting table
//! says), the method checked against the trigger's `methods` (403), the request held to the limits (400
//! `InvalidArgument`), then the handler runs in a warm instance under the account's concurrency limit, and its
//! answer is checked (502 `BadResponse`). A handler's failure (an exception, a timeout, a crash) answers 502
//! with `X-Fc-Error-Type: UnhandledInvocationError` and the error body an invocation would carry. Errors of the
//! request carry `X-Fc-Error-Type: FcCommonError`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Core;
use super::api::{RequestId, check_signature, read_body};
use super::auth::AuthError;
use super::error::ApiError;
use super::names::LATEST;
use super::peer::Peer;
use super::pool::{InvokeOutcome, InvokeRequest, PoolError, split_http_answer};
use super::triggers::http::{BadResponse, HttpAnswer, MAX_BODY_BYTES, ProxyTarget, RequestHead};

/// `X-Fc-Error-Type` of a request the runtime refused.
const COMMON_ERROR: &str = "FcCommonError";

/// `X-Fc-Error-Type` of a function that failed or answered wrongly.
const FUNCTION_ERROR: &str = "UnhandledInvocationError";

/// Why a proxy request was not answered by its handler.
enum Refusal {
    /// The request: 4xx (or our own 5xx) `FcCommonError`.
    Request(ApiError),
    /// The handler's answer could not be sent: 502 `BadResponse`.
    BadResponse(BadResponse),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Request(error)
    }
}

/// Any request under `/2016-08-15/proxy/`.
pub(super) async fn proxy(State(core): State<Arc<Core>>, request: Request) -> Response {
    let (kind, mut response) = match handle(&core, request).await {
        Ok(response) => return response,
        Err(Refusal::Request(error)) => (COMMON_ERROR, error.into_response()),
        Err(Refusal::BadResponse(BadResponse(message))) => {
            tracing::info!("an HTTP trigger's function answered wrongly: {message}");
            let error = ApiError {
                status: StatusCode::BAD_GATEWAY,
                code: "BadResponse",
                message,
            };
            (FUNCTION_ERROR, error.into_response())
        }
    };
    response
        .headers_mut()
        .insert("x-fc-error-type", HeaderValue::from_static(kind));
    response
}

async fn handle(core: &Core, request: Request) -> Result<Response, Refusal> {
    let (parts, body) = request.into_parts();
    let target = ProxyTarget::parse(parts.uri.path())?;
    let trigger = core.http_trigger(&target)?;
    if !trigger.config.is_anonymous()
        && let Some(key) = &core.config.access_key
    {
        check_signature(key, &parts.method, &parts.uri, &parts.headers).map_err(|error| {
            let mut refusal = ApiError::from(error.clone());
            if matches!(
                error,
                AuthError::MissingAuthorization | AuthError::MissingDate
            ) {
                // The guide: a request to a `function` trigger without Date or Authorization is a 400.
                refusal.status = StatusCode::BAD_REQUEST;
            }
            refusal
        })?;
    }
    let method = parts.method.as_str();
    if !trigger.config.allows(method) {
        return Err(ApiError::new_access_denied(format!(
            "method {method} is not allowed by the HTTP trigger '{}' of function '{}' (its methods: {})",
            trigger.name,
            target.function,
            trigger.config.methods.join(", ")
        ))
        .into());
    }
    let client_ip = parts
        .extensions
        .get::<ConnectInfo<Peer>>()
        .map(|info| info.0.addr.ip().to_canonical().to_string())
        .unwrap_or_default();
    let head = RequestHead::new(method, &target, &parts.uri, &parts.headers, client_ip)?;
    let payload = read_body(&parts.headers, body, MAX_BODY_BYTES)
        .await
        .map_err(|error| match error.code {
            "EntityTooLarge" => ApiError::invalid(format!(
                "the request body is larger than the {MAX_BODY_BYTES} bytes allowed"
            )),
            _ => error,
        })?;
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let version = core.resolve_version(
        &target.service,
        &target.qualifier,
        Some(rand::random::<f64>()),
    )?;
    let (service_record, function_record) =
        core.function_at(&target.service, version.as_ref(), &target.function)?;
    let mut spec = core.function_spec(&service_record, &function_record)?;
    let shown_version = version
        .as_ref()
        .map_or_else(|| LATEST.to_owned(), |v| v.id.to_string());
    spec.qualifier = shown_version.clone();
    let head = serde_json::to_vec(&head)
        .map_err(|e| ApiError::internal(format!("cannot encode the request head: {e}")))?;
    let permit = core
        .limiter
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::throttled(core.config.max_concurrency))?;
    let result = core
        .pool
        .invoke_http(
            &spec,
            InvokeRequest {
                request_id,
                payload,
                log_tail: false,
            },
            head.into(),
        )
        .await;
    drop(permit);
    let invocation = match result {
        Ok(invocation) => invocation,
        Err(PoolError::ShuttingDown) => {
            return Err(ApiError::unavailable("the function runtime is shutting down").into());
        }
        Err(error) => {
            tracing::error!(service = %target.service, function = %target.function,
                "HTTP invocation failed in the runtime: {error}");
            return Err(ApiError::internal(error.to_string()).into());
        }
    };
    let mut response = Response::builder()
        .header(
            "x-fc-invocation-duration",
            invocation.duration.as_millis().max(1).to_string(),
        )
        .header("x-fc-invocation-service-version", shown_version.as_str())
        .header("x-fc-code-checksum", spec.code_checksum.as_str());
    if let Some(memory) = invocation.max_memory_mb {
        response = response.header("x-fc-max-memory-usage", memory.to_string());
    }
    let built = match invocation.outcome {
        InvokeOutcome::Success { body } => {
            let (head, body) = split_http_answer(body).ok_or_else(|| {
                Refusal::BadResponse(BadResponse(
                    "the language shim's answer is shorter than it announces".into(),
                ))
            })?;
            let answer = HttpAnswer::decode(&head, body).map_err(Refusal::BadResponse)?;
            response = response.status(answer.status);
            for (name, value) in answer.headers {
                response = response.header(name, value);
            }
            response.body(Body::from(answer.body))
        }
        InvokeOutcome::FunctionError { error_type, body } => response
            .status(StatusCode::BAD_GATEWAY)
            .header("x-fc-error-type", error_type.header_value())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body)),
    };
    built.map_err(|e| {
        Refusal::Request(ApiError::internal(format!(
            "cannot build the HTTP trigger's response: {e}"
        )))
    })
}
