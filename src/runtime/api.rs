//! The HTTP API: Function Compute 2016-08-15 routes, the request-id, handler-peer, signature and Content-MD5
//! middlewares, invoke.
//!
//! Request integrity: the signature covers the method, `Content-MD5`, `Content-Type`, `Date`, the `x-fc-*`
//! headers and the path (with the queries of proxy paths), never the body itself. So when `Content-MD5` is
//! present the body must have that MD5 (checked as the body streams in, before anything acts on it; a mismatch
//! is 400 `InvalidArgument`), which ties a signed request to its body: a captured request cannot be replayed
//! with another body within the 15-minute `Date` window. The header is accepted in each form the SDKs send:
//! base64 of the 16-byte digest (Function Compute's documentation), its 32 hex digits (the Go SDK) and base64 of
//! those hex digits (the Node.js SDK). A request without `Content-MD5` is accepted (the Python SDK never sends
//! one): its signature then does not cover its body, which an attacker who captured it could replace, within
//! the Date window, for a body of their choice.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::Core;
use super::auth;
use super::error::ApiError;
use super::limits::{
    AsyncConfigInput, FunctionAttributes, MAX_ASYNC_PAYLOAD, MAX_SYNC_PAYLOAD, ServiceAttributes,
};
use super::names::{
    FunctionName, InvocationId, LATEST, Qualifier, ServiceName, parse_service_segment,
};
use super::peer::Peer;
use super::pool::{InvokeOutcome, InvokeRequest, PoolError};
use super::registry::{CodeUpload, ListQuery, ZipText, etag, function_json, now_ms};
use super::storage::{AsyncEvent, Enqueued, VersionRecord};
use super::triggers::TriggerInput;
use super::triggers::http::PROXY_PREFIX;
use super::versions::{AliasInput, PublishInput, VersionQuery};

/// The `X-Fc-Request-Id` of the request being handled; also the invocation's `context.request_id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

type Shared = State<Arc<Core>>;

/// Path parameters; a path that cannot be decoded is a JSON `InvalidArgument` like every other error.
struct ApiPath<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// Query parameters; unreadable ones are a JSON `InvalidArgument`.
struct ApiQuery<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

const SERVICES: &str = "/2016-08-15/services";
const SERVICE: &str = "/2016-08-15/services/{service}";
const FUNCTIONS: &str = "/2016-08-15/services/{service}/functions";
const FUNCTION: &str = "/2016-08-15/services/{service}/functions/{function}";
const VERSIONS: &str = "/2016-08-15/services/{service}/versions";
const ALIASES: &str = "/2016-08-15/services/{service}/aliases";

/// Every route of the runtime.
pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route(SERVICES, post(create_service).get(list_services))
        .route(
            SERVICE,
            get(get_service).put(update_service).delete(delete_service),
        )
        .route(FUNCTIONS, post(create_function).get(list_functions))
        .route(
            FUNCTION,
            get(get_function)
                .put(update_function)
                .delete(delete_function),
        )
        .route(&format!("{FUNCTION}/code"), get(get_function_code))
        .route(&format!("{FUNCTION}/invocations"), post(invoke))
        .route(
            &format!("{FUNCTION}/async-invoke-config"),
            get(get_async_config)
                .put(put_async_config)
                .delete(delete_async_config),
        )
        .route(VERSIONS, post(publish_version).get(list_versions))
        .route(
            &format!("{VERSIONS}/{{version}}"),
            axum::routing::delete(delete_version),
        )
        .route(ALIASES, post(create_alias).get(list_aliases))
        .route(
            &format!("{ALIASES}/{{alias}}"),
            get(get_alias).put(update_alias).delete(delete_alias),
        )
        .route(
            &format!("{FUNCTION}/triggers"),
            post(create_trigger).get(list_triggers),
        )
        .route(
            &format!("{FUNCTION}/triggers/{{trigger}}"),
            get(get_trigger).put(update_trigger).delete(delete_trigger),
        )
        .route("/code-archives/{file}", get(code_archive))
        .route(
            "/2016-08-15/proxy/{*rest}",
            axum::routing::any(super::proxy::proxy),
        )
        .fallback(unsupported)
        .method_not_allowed_fallback(unsupported)
        .layer(middleware::from_fn_with_state(core.clone(), gate))
        .layer(DefaultBodyLimit::disable())
        .with_state(core)
}

/// What every request goes through before its route, in one layer (each layer of its own would box the request's
/// future once more): an id, then [`refuse_handlers`], [`authenticate`] and [`verify_content_md5`]. A refused
/// request is answered here, with its id like any other.
async fn gate(State(core): Shared, mut request: Request, next: Next) -> Response {
    let id = new_request_id();
    request.extensions_mut().insert(RequestId(id.clone()));
    let admitted = refuse_handlers(&core, &request)
        .and_then(|()| authenticate(&core, &request))
        .and_then(|()| verify_content_md5(request));
    let mut response = match admitted {
        Ok(request) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-fc-request-id", value);
    }
    response
}

/// A new request id, for the request's `X-Fc-Request-Id`: a version 4 UUID from the thread's random generator
/// (seeded from the system, so ids do not repeat), which costs no system call per request as `Uuid::new_v4`
/// would.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// An anonymous runtime refuses connections its own handlers opened (see [`super::peer`]): without this, code
/// running in the sandbox could manage functions, read their environment or invoke them.
fn refuse_handlers(core: &Core, request: &Request) -> Result<(), ApiError> {
    let from_handler = request
        .extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .is_some_and(|info| info.0.is_handler);
    if from_handler && core.config.access_key.is_none() {
        tracing::info!(path = %request.uri().path(), "refused a request from a function handler");
        return Err(ApiError::new_access_denied(
            "requests from function handlers are refused: this runtime has no access key, so it cannot tell a \
             handler from the operator other than by its connection; give the runtime an access key if \
             functions must call its API",
        ));
    }
    Ok(())
}

/// Refuses unsigned or wrongly signed requests when the runtime has an access key. HTTP-trigger paths are left
/// to [`super::proxy`]: whether they need a signature is their trigger's `authType`.
fn authenticate(core: &Core, request: &Request) -> Result<(), ApiError> {
    let Some(key) = &core.config.access_key else {
        return Ok(());
    };
    // Code archive URLs carry their own expiring token, like OSS pre-signed URLs.
    if request.uri().path().starts_with("/code-archives/")
        || request.uri().path().starts_with(PROXY_PREFIX)
    {
        return Ok(());
    }
    check_signature(key, request.method(), request.uri(), request.headers()).map_err(ApiError::from)
}

/// Checks a request's signature and Date against `key` (logging a refusal).
pub(super) fn check_signature(
    key: &auth::AccessKey,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), auth::AuthError> {
    let path = percent_decode_str(uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let queries = query_pairs(uri);
    let query_refs: Vec<(&str, Option<&str>)> = queries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v)))
        .collect();
    let method = method.as_str();
    let parts = crate::fcsign::SignedParts {
        method,
        headers: &headers,
        path: &path,
        queries: &query_refs,
    };
    auth::check(key, &parts, SystemTime::now()).inspect_err(|error| {
        tracing::info!(%method, %path, code = error.code(), "refused a request: {error}");
    })
}

/// The digest a `Content-MD5` value stands for, in any form an SDK sends: base64 of the 16 bytes, 32 hex digits,
/// or base64 of the 32 hex digits.
pub fn parse_content_md5(value: &str) -> Option<[u8; 16]> {
    fn from_hex(text: &[u8]) -> Option<[u8; 16]> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(out)
    }
    let value = value.trim();
    if value.len() == 32
        && let Some(digest) = from_hex(value.as_bytes())
    {
        return Some(digest);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    match decoded.len() {
        16 => decoded.try_into().ok(),
        32 => from_hex(&decoded),
        _ => None,
    }
}

/// The body did not have the MD5 its `Content-MD5` header announced.
#[derive(Debug, thiserror::Error)]
#[error(
    "Content-MD5 '{0}' does not match the MD5 of the request body: the body is not the one that was signed"
)]
struct ContentMd5Mismatch(String);

/// Makes a body check itself against its `Content-MD5` as it streams: the handler reading it gets an error
/// instead of its end when the digests differ, so nothing acts on a body that does not match.
fn verify_content_md5(request: Request) -> Result<Request, ApiError> {
    use md5::Digest as _;
    let Some(value) = request.headers().get("content-md5") else {
        return Ok(request);
    };
    let text = value.to_str().unwrap_or_default().to_owned();
    let Some(expected) = parse_content_md5(&text) else {
        return Err(ApiError::invalid(format!(
            "Content-MD5 '{text}' is not an MD5 digest: expected base64 of the 16-byte MD5 of the body (or its 32 \
             hex digits, or base64 of those)"
        )));
    };
    let (parts, body) = request.into_parts();
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(md5::Md5::new()));
    let feeding = hasher.clone();
    let data = body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk
            && let Ok(mut hasher) = feeding.lock()
        {
            hasher.update(bytes);
        }
        chunk.map_err(axum::BoxError::from)
    });
    let check = futures::stream::once(async move {
        let digest: [u8; 16] = match hasher.lock() {
            Ok(mut hasher) => hasher.finalize_reset().into(),
            Err(_) => [0; 16],
        };
        use subtle::ConstantTimeEq as _;
        if bool::from(digest.ct_eq(&expected)) {
            None
        } else {
            Some(Err(axum::BoxError::from(ContentMd5Mismatch(text))))
        }
    })
    .filter_map(std::future::ready);
    let body = Body::from_stream(data.chain(check));
    Ok(Request::from_parts(parts, body))
}

/// The API error for a body that could not be read (or did not match its `Content-MD5`).
fn body_error(error: axum::Error) -> ApiError {
    match error.into_inner().downcast::<ContentMd5Mismatch>() {
        Ok(mismatch) => ApiError::invalid(mismatch.to_string()),
        Err(other) => ApiError::invalid(format!("cannot read the request body: {other}")),
    }
}

/// URL-decoded query pairs (`None` for a key without `=`).
fn query_pairs(uri: &Uri) -> Vec<(String, Option<String>)> {
    let decode = |text: &str| {
        percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), Some(decode(v))),
            None => (decode(pair), None),
        })
        .collect()
}

async fn unsupported(method: Method, uri: Uri) -> ApiError {
    ApiError::path_not_supported(method.as_str(), uri.path())
}

/// Reads a body of at most `limit` bytes; a larger one is drained (so the client reads our answer rather
/// than a reset connection) and refused with EntityTooLarge. Chunks are appended as they arrive: the body is
/// held once.
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut stream = body.into_data_stream();
    let mut too_large = declared.is_some_and(|length| length > limit);
    let mut drained = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(body_error)?;
        if too_large || buffer.len() + chunk.len() > limit {
            too_large = true;
            drained += chunk.len();
            if drained > limit.saturating_mul(4) {
                break;
            }
            continue;
        }
        buffer.extend_from_slice(&chunk);
    }
    if too_large {
        return Err(ApiError::too_large(limit));
    }
    Ok(buffer.freeze())
}

/// Reads and drops up to `max` bytes of a body (so a client still sending reads our answer).
async fn drain(body: Body, max: usize) {
    let mut stream = body.into_data_stream();
    let mut drained = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        drained += chunk.len();
        if drained > max {
            return;
        }
    }
}

/// The largest management body: a base64 zip at the archive limit plus the other attributes.
fn json_limit(core: &Core) -> usize {
    usize::try_from(core.config.code_limits.max_zip_bytes)
        .unwrap_or(usize::MAX)
        .saturating_mul(4)
        / 3
        + 64 * 1024
}

/// The body of a management call, parsed as `T` (an empty body is `{}`).
async fn json_body<T: serde::de::DeserializeOwned>(
    core: &Core,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(headers, body, json_limit(core)).await?;
    parse_json(&bytes)
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// A CreateFunction / UpdateFunction body: its attributes, and its `code.zipFile` left where it lies in the
/// body (a code upload is mostly that text: copying it out would hold the upload twice).
async fn upload_body(
    core: &Core,
    headers: &HeaderMap,
    body: Body,
) -> Result<(FunctionAttributes, Option<CodeUpload>), ApiError> {
    let bytes = read_body(headers, body, json_limit(core)).await?;
    if bytes.len() <= 64 * 1024 {
        return Ok((parse_json(&bytes)?, None));
    }
    tokio::task::spawn_blocking(move || split_upload(bytes))
        .await
        .map_err(|e| ApiError::internal(format!("parsing the request body failed: {e}")))?
}

/// Finds `code.zipFile` in a body without copying it, then parses the rest of the body.
fn split_upload(bytes: Bytes) -> Result<(FunctionAttributes, Option<CodeUpload>), ApiError> {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow, default)]
        code: Option<PeekCode<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct PeekCode<'a> {
        // `&str` borrows from the body, which only works for a string without escapes: its bytes in the body
        // are then the base64 text itself. (An `Option<Cow<str>>` would be copied.)
        #[serde(borrow, default, rename = "zipFile")]
        zip_file: Option<&'a str>,
    }
    // A body this does not fit (escapes in the base64, or not even the shape of a function) is parsed whole,
    // which also says what is wrong with it.
    let range = serde_json::from_slice::<Peek<'_>>(&bytes)
        .ok()
        .and_then(|peek| peek.code)
        .and_then(|code| code.zip_file)
        .map(|text| {
            let start = text.as_ptr() as usize - bytes.as_ptr() as usize;
            start..start + text.len()
        });
    let Some(range) = range else {
        return Ok((parse_json(&bytes)?, None));
    };
    let mut rest = Vec::with_capacity(bytes.len() - range.len());
    rest.extend_from_slice(&bytes[..range.start]);
    rest.extend_from_slice(&bytes[range.end..]);
    let attributes: FunctionAttributes = parse_json(&rest)?;
    Ok((
        attributes,
        Some(CodeUpload::Base64In(ZipText { body: bytes, range })),
    ))
}

fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

/// 200 with a JSON body and its ETag.
fn json_response(body: Value) -> Response {
    let tag = etag(&body);
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// 204, no body, no Content-Type (the Node SDK parses any JSON-typed body, even an empty one).
fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The service of a path segment for a change: only LATEST changes (a published version is immutable). An unknown
/// service, version or alias answers 404 first.
fn resolve_service(core: &Core, segment: &str) -> Result<ServiceName, ApiError> {
    let (service, qualifier) = parse_service_segment(segment)?;
    if qualifier == Qualifier::Latest {
        return Ok(service);
    }
    core.resolve_version(&service, &qualifier, None)?;
    Err(ApiError::invalid(format!(
        "'{segment}': a published version cannot be changed (nor can what an alias shows); send the request to \
         '{service}' (LATEST)"
    )))
}

fn resolve_function(
    core: &Core,
    segment: &str,
    function: &str,
) -> Result<(ServiceName, FunctionName), ApiError> {
    let service = resolve_service(core, segment)?;
    let function = FunctionName::parse(function)?;
    Ok((service, function))
}

/// The service of a path segment for a read, and the version its qualifier shows (`None`: LATEST; an alias
/// shows its primary version).
fn read_service(
    core: &Core,
    segment: &str,
) -> Result<(ServiceName, Option<VersionRecord>), ApiError> {
    let (service, qualifier) = parse_service_segment(segment)?;
    let version = core.resolve_version(&service, &qualifier, None)?;
    Ok((service, version))
}

async fn create_service(
    State(core): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let attributes: ServiceAttributes = json_body(&core, &headers, body).await?;
    Ok(json_response(core.create_service(attributes)?))
}

async fn list_services(
    State(core): Shared,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    Ok(json_response(core.list_services(&query)?))
}

async fn get_service(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (service, version) = read_service(&core, &service)?;
    Ok(json_response(core.service_at(&service, version.as_ref())?))
}

async fn update_service(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    let attributes: ServiceAttributes = json_body(&core, &headers, body).await?;
    Ok(json_response(core.update_service(
        &service,
        attributes,
        if_match(&headers),
    )?))
}

async fn delete_service(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    core.delete_service(&service, if_match(&headers))?;
    Ok(no_content())
}

/// A slot to unpack an upload in, or Function Compute's throttling error at once (the body is drained, not
/// kept, so the client reads the answer). Taken before the body is read: the bound is on memory too.
async fn upload_slot(
    core: &Core,
    body: Body,
) -> Result<(super::code::UploadPermit, Body), ApiError> {
    match core.code.try_upload() {
        Some(permit) => Ok((permit, body)),
        None => {
            let limit = core.code.limits().max_concurrent_uploads;
            drain(body, json_limit(core)).await;
            Err(ApiError::unavailable(format!(
                "{limit} code uploads are being unpacked, the most this runtime unpacks at once: retry later"
            )))
        }
    }
}

async fn create_function(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    let (_upload, body) = upload_slot(&core, body).await?;
    let (attributes, code) = upload_body(&core, &headers, body).await?;
    let record = core.create_function(&service, attributes, code).await?;
    Ok(json_response(function_json(&record)))
}

async fn list_functions(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (service, version) = read_service(&core, &service)?;
    Ok(json_response(match &version {
        None => core.list_functions(&service, &query)?,
        Some(version) => core.list_functions_at(&service, version, &query)?,
    }))
}

async fn get_function(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (service, version) = read_service(&core, &service)?;
    let function = FunctionName::parse(&function)?;
    let (_, record) = core.function_at(&service, version.as_ref(), &function)?;
    Ok(json_response(function_json(&record)))
}

async fn update_function(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    let (_upload, body) = upload_slot(&core, body).await?;
    let (attributes, code) = upload_body(&core, &headers, body).await?;
    let record = core
        .update_function(&service, &function, attributes, code, if_match(&headers))
        .await?;
    Ok(json_response(function_json(&record)))
}

async fn delete_function(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    core.delete_function(&service, &function, if_match(&headers))
        .await?;
    Ok(no_content())
}

async fn get_function_code(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (service, version) = read_service(&core, &service)?;
    let function = FunctionName::parse(&function)?;
    let (_, record) = core.function_at(&service, version.as_ref(), &function)?;
    // The client reached us under this Host; the Node SDK sends it without the port, so only a Host with a
    // port is trusted, else the bound address is used.
    let host = header_text(&headers, "host").filter(|host| host.contains(':'));
    Ok(json_response(core.function_code(&record, host)))
}

async fn get_async_config(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    Ok(json_response(core.get_async_config(&service, &function)?))
}

async fn put_async_config(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    let input: AsyncConfigInput = json_body(&core, &headers, body).await?;
    Ok(json_response(
        core.put_async_config(&service, &function, input)?,
    ))
}

async fn delete_async_config(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    core.delete_async_config(&service, &function)?;
    Ok(no_content())
}

async fn publish_version(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    let input: PublishInput = json_body(&core, &headers, body).await?;
    Ok(json_response(core.publish_version(
        &service,
        input,
        if_match(&headers),
    )?))
}

async fn list_versions(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    Ok(json_response(core.list_versions(&service, &query)?))
}

async fn delete_version(
    State(core): Shared,
    ApiPath((service, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    core.delete_version(&service, &version).await?;
    Ok(no_content())
}

async fn create_alias(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    let input: AliasInput = json_body(&core, &headers, body).await?;
    Ok(json_response(core.create_alias(&service, input)?))
}

async fn list_aliases(
    State(core): Shared,
    ApiPath(service): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    Ok(json_response(core.list_aliases(&service, &query)?))
}

async fn get_alias(
    State(core): Shared,
    ApiPath((service, alias)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    Ok(json_response(core.get_alias(&service, &alias)?))
}

async fn update_alias(
    State(core): Shared,
    ApiPath((service, alias)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    let input: AliasInput = json_body(&core, &headers, body).await?;
    Ok(json_response(core.update_alias(
        &service,
        &alias,
        input,
        if_match(&headers),
    )?))
}

async fn delete_alias(
    State(core): Shared,
    ApiPath((service, alias)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let service = resolve_service(&core, &service)?;
    core.delete_alias(&service, &alias, if_match(&headers))?;
    Ok(no_content())
}

/// The largest trigger body: a timer's payload is at most 127 KB, the other configurations are small.
const MAX_TRIGGER_BODY: usize = 1024 * 1024;

async fn create_trigger(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    let input: TriggerInput = parse_json(&read_body(&headers, body, MAX_TRIGGER_BODY).await?)?;
    Ok(json_response(
        core.create_trigger(&service, &function, input)?,
    ))
}

async fn list_triggers(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    Ok(json_response(
        core.list_triggers(&service, &function, &query)?,
    ))
}

async fn get_trigger(
    State(core): Shared,
    ApiPath((service, function, trigger)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    Ok(json_response(
        core.get_trigger(&service, &function, &trigger)?,
    ))
}

async fn update_trigger(
    State(core): Shared,
    ApiPath((service, function, trigger)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    let input: TriggerInput = parse_json(&read_body(&headers, body, MAX_TRIGGER_BODY).await?)?;
    Ok(json_response(core.update_trigger(
        &service,
        &function,
        &trigger,
        input,
        if_match(&headers),
    )?))
}

async fn delete_trigger(
    State(core): Shared,
    ApiPath((service, function, trigger)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (service, function) = resolve_function(&core, &service, &function)?;
    core.delete_trigger(&service, &function, &trigger, if_match(&headers))?;
    Ok(no_content())
}

/// `Expires` / `Signature` of a code archive URL.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveToken {
    /// Seconds since the epoch after which the URL stops working.
    #[serde(rename = "Expires")]
    expires: Option<i64>,
    /// HMAC of the checksum and expiry under the access key secret.
    #[serde(rename = "Signature")]
    signature: Option<String>,
}

async fn code_archive(
    State(core): Shared,
    ApiPath(file): ApiPath<String>,
    ApiQuery(token): ApiQuery<ArchiveToken>,
) -> Result<Response, ApiError> {
    let checksum: u64 = file
        .strip_suffix(".zip")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| ApiError::path_not_supported("GET", &format!("/code-archives/{file}")))?;
    if core.config.access_key.is_some() {
        let valid = match (token.expires, token.signature.as_deref()) {
            (Some(expires), Some(signature)) => {
                use subtle::ConstantTimeEq as _;
                let expected = core.archive_signature(checksum, expires);
                let matches: bool = expected.as_bytes().ct_eq(signature.as_bytes()).into();
                expires >= now_ms() / 1000 && matches
            }
            _ => false,
        };
        if !valid {
            return Err(ApiError::from(auth::AuthError::Signature(
                crate::fcsign::VerifyError::SignatureMismatch,
            )));
        }
    }
    let path = core.code.zip_path(checksum);
    let zip = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::path_not_supported("GET", &format!("/code-archives/{file}")))?;
    let mut response = zip.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    Ok(response)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn invoke(
    State(core): Shared,
    ApiPath((service, function)): ApiPath<(String, String)>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (service, mut qualifier) = parse_service_segment(&service)?;
    // The qualifier may also come as a header; the path's wins, and the two must agree.
    if let Some(text) = header_text(&headers, "x-fc-qualifier") {
        let given = Qualifier::parse(text)?;
        if qualifier == Qualifier::Latest {
            qualifier = given;
        } else if qualifier != given {
            return Err(ApiError::invalid(format!(
                "X-Fc-Qualifier '{text}' differs from the qualifier in the path"
            )));
        }
    }
    let function = FunctionName::parse(&function)?;
    // An alias with an additional version picks one per invocation.
    let version = core.resolve_version(&service, &qualifier, Some(rand::random::<f64>()))?;
    let version_id = version.as_ref().map(|v| v.id);
    let asynchronous = match header_text(&headers, "x-fc-invocation-type") {
        None => false,
        Some(kind) if kind.eq_ignore_ascii_case("Sync") => false,
        Some(kind) if kind.eq_ignore_ascii_case("Async") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "X-Fc-Invocation-Type: '{other}' is neither 'Sync' nor 'Async'"
            )));
        }
    };
    let (service_record, function_record) =
        core.function_at(&service, version.as_ref(), &function)?;
    if asynchronous {
        let invocation_id = header_text(&headers, "x-fc-stateful-async-invocation-id")
            .map(InvocationId::parse)
            .transpose()?;
        let payload = read_body(&headers, body, MAX_ASYNC_PAYLOAD).await?;
        let now = now_ms();
        let event = AsyncEvent {
            seq: 0,
            service: service.to_string(),
            function: function.to_string(),
            version: version_id,
            invocation_id: invocation_id.as_ref().map(ToString::to_string),
            request_id: request_id.clone(),
            payload: payload.to_vec(),
            enqueued_ms: now,
            attempts: 0,
            next_attempt_ms: now,
        };
        let given_id = event.invocation_id.clone();
        match core.stored(move |storage| storage.enqueue(&event)).await? {
            Enqueued::New(seq) => {
                tracing::debug!(%service, %function, seq, "queued an async invocation");
                core.queue_wakeup.notify_one();
            }
            Enqueued::Duplicate => tracing::info!(
                %service, %function, invocation_id = ?given_id,
                "async invocation id already accepted; not queued again"
            ),
        }
        let mut response = StatusCode::ACCEPTED.into_response();
        if let Some(id) = invocation_id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
            response
                .headers_mut()
                .insert("x-fc-stateful-async-invocation-id", id);
        }
        return Ok(response);
    }

    let payload = read_body(&headers, body, MAX_SYNC_PAYLOAD).await?;
    let log_tail =
        header_text(&headers, "x-fc-log-type").is_some_and(|t| t.eq_ignore_ascii_case("Tail"));
    let permit = core
        .limiter
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::throttled(core.config.max_concurrency))?;
    let mut spec = core.function_spec(&service_record, &function_record)?;
    let shown_version = version_id.map_or_else(|| LATEST.to_owned(), |id| id.to_string());
    // Instances are kept per version: LATEST and each version may run different code.
    spec.qualifier = shown_version.clone();
    let result = core
        .pool
        .invoke(
            &spec,
            InvokeRequest {
                request_id,
                payload,
                log_tail,
            },
        )
        .await;
    drop(permit);
    let invocation = match result {
        Ok(invocation) => invocation,
        Err(PoolError::ShuttingDown) => {
            return Err(ApiError::unavailable(
                "the function runtime is shutting down",
            ));
        }
        Err(error) => {
            tracing::error!(%service, %function, "invocation failed in the runtime: {error}");
            return Err(ApiError::internal(error.to_string()));
        }
    };
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(
            "x-fc-invocation-duration",
            invocation.duration.as_millis().max(1).to_string(),
        )
        .header("x-fc-invocation-service-version", shown_version.as_str())
        .header("x-fc-code-checksum", spec.code_checksum.as_str());
    if let Some(memory) = invocation.max_memory_mb {
        response = response.header("x-fc-max-memory-usage", memory.to_string());
    }
    if let Some(tail) = &invocation.log_tail {
        response = response.header(
            "x-fc-log-result",
            base64::engine::general_purpose::STANDARD.encode(tail.as_bytes()),
        );
    }
    let response = match invocation.outcome {
        InvokeOutcome::Success { body } => response
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(body)),
        InvokeOutcome::FunctionError { error_type, body } => response
            .header("x-fc-error-type", error_type.header_value())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body)),
    };
    response.map_err(|e| ApiError::internal(format!("cannot build the invocation response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(zip_file: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"functionName":"f","runtime":"python3","handler":"index.handler","code":{{"zipFile":"{zip_file}"}}}}"#
        ))
    }

    #[test]
    fn an_upload_is_read_where_it_lies_in_the_body() {
        let bytes = body("UEsDBAo/AAAA+w==");
        let (attributes, code) = split_upload(bytes).unwrap();
        assert_eq!(attributes.function_name.as_deref(), Some("f"));
        match code {
            Some(CodeUpload::Base64In(text)) => {
                assert_eq!(&text.body[text.range.clone()], b"UEsDBAo/AAAA+w==");
            }
            _ => panic!("the zip's text was copied out of the body"),
        }
        // With escapes the text is not the bytes of the body: parsed (and copied) the usual way.
        let (attributes, code) = split_upload(body("UEsDBAo\\/AAAA+w==")).unwrap();
        assert!(code.is_none());
        assert_eq!(
            attributes.code.and_then(|c| c.zip_file).as_deref(),
            Some("UEsDBAo/AAAA+w==")
        );
    }

    #[test]
    fn content_md5_in_each_form_the_sdks_send() {
        let digest: [u8; 16] = hex::decode("5d41402abc4b2a76b9719d911017c592")
            .unwrap()
            .try_into()
            .unwrap();
        for form in [
            "XUFAKrxLKna5cZ2REBfFkg==",
            "5d41402abc4b2a76b9719d911017c592",
            "5D41402ABC4B2A76B9719D911017C592",
            "NWQ0MTQwMmFiYzRiMmE3NmI5NzE5ZDkxMTAxN2M1OTI=",
        ] {
            assert_eq!(parse_content_md5(form), Some(digest), "{form}");
        }
        for bad in [
            "",
            "hello",
            "XUFAKrxLKna5cZ2REBfF",
            "5d41402abc4b2a76b9719d911017c59",
        ] {
            assert_eq!(parse_content_md5(bad), None, "{bad}");
        }
    }
}
