//! HTTP triggers: the pure rules of `/2016-08-15/proxy/{service}[.{qualifier}]/{function}/{path}` requests
//! (which function a path names, the trigger's methods and auth type, the request and response limits and the
//! headers Function Compute ignores), and the lookup of a function's HTTP trigger. The axum side is
//! `runtime::proxy`.
//!
//! Invariants: a function has at most one HTTP trigger (the user guide's rule, held by
//! [`Core::create_trigger`](super::super::Core)); the path a handler sees never holds a `..` segment or a NUL;
//! nothing over the documented limits reaches a handler (request) or a client (response); the headers the guide
//! lists as ignored never pass, in either direction, nor any `x-fc-*` header.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::super::Core;
use super::super::error::ApiError;
use super::super::names::{FunctionName, Qualifier, ServiceName, parse_service_segment};
use super::MAX_TRIGGERS_PER_FUNCTION;

/// Where HTTP-trigger paths start.
pub const PROXY_PREFIX: &str = "/2016-08-15/proxy/";

/// The most bytes of header names and values a request (to the handler) or a response (from it) may carry.
pub const MAX_HEADER_BYTES: usize = 4 * 1024;

/// The longest path after the function, and the longest query string.
pub const MAX_PATH_BYTES: usize = 4 * 1024;

/// The largest request body, and the largest response body.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Request headers never handed to a handler (the user guide's list; `x-fc-*` too).
const IGNORED_REQUEST_HEADERS: [&str; 7] = [
    "accept-encoding",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Response headers a handler cannot set (the user guide's list; `x-fc-*` too): the runtime owns them.
const IGNORED_RESPONSE_HEADERS: [&str; 10] = [
    "connection",
    "content-length",
    "content-encoding",
    "date",
    "keep-alive",
    "proxy-authenticate",
    "server",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_fc_header(name: &str) -> bool {
    name.len() >= 5 && name[..5].eq_ignore_ascii_case("x-fc-")
}

/// Whether a request header reaches the handler.
pub fn passes_to_handler(name: &str) -> bool {
    !is_fc_header(name)
        && !IGNORED_REQUEST_HEADERS
            .iter()
            .any(|ignored| name.eq_ignore_ascii_case(ignored))
}

/// Whether a header the handler set reaches the client.
pub fn passes_to_client(name: &str) -> bool {
    !is_fc_header(name)
        && !IGNORED_RESPONSE_HEADERS
            .iter()
            .any(|ignored| name.eq_ignore_ascii_case(ignored))
}

/// 400 InvalidArgument for a request an HTTP trigger cannot take.
fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

/// What a proxy path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The service.
    pub service: ServiceName,
    /// After the service's dot; LATEST without one.
    pub qualifier: Qualifier,
    /// The function.
    pub function: FunctionName,
    /// What follows the function, URL-decoded, starting with `/` (`/` when nothing follows).
    pub path: String,
}

impl ProxyTarget {
    /// Parses the raw (still percent-encoded) path of a request. Refused with 400 `InvalidArgument`: a path
    /// without a function, names outside the name rule, a path after the function longer than
    /// [`MAX_PATH_BYTES`], that is not UTF-8 once decoded, or that holds a NUL or a `..` segment (also when
    /// encoded: `%2e%2e`, `..%2f`), so no handler serving files from its path can be walked out of its folder.
    pub fn parse(raw_path: &str) -> Result<ProxyTarget, ApiError> {
        let usage = || {
            bad_request(format!(
                "'{}' is not an HTTP trigger path: expected /2016-08-15/proxy/<service>[.<qualifier>]/<function>/[path]",
                raw_path.chars().take(200).collect::<String>()
            ))
        };
        let rest = raw_path.strip_prefix(PROXY_PREFIX).ok_or_else(usage)?;
        let mut parts = rest.splitn(3, '/');
        let service_segment = parts.next().filter(|s| !s.is_empty()).ok_or_else(usage)?;
        let function_segment = parts.next().filter(|s| !s.is_empty()).ok_or_else(usage)?;
        let remainder = parts.next().unwrap_or_default();
        let decode = |text: &str, what: &str| {
            percent_decode_str(text)
                .decode_utf8()
                .map(|t| t.into_owned())
                .map_err(|_| {
                    bad_request(format!("the {what} in the path is not UTF-8 once decoded"))
                })
        };
        let (service, qualifier) = parse_service_segment(&decode(service_segment, "service")?)?;
        let function = FunctionName::parse(&decode(function_segment, "function")?)?;
        if remainder.len() + 1 > MAX_PATH_BYTES {
            return Err(bad_request(format!(
                "the path after the function is {} bytes, more than the {MAX_PATH_BYTES} bytes allowed",
                remainder.len() + 1
            )));
        }
        let path = format!("/{}", decode(remainder, "path")?);
        if path.contains('\0') {
            return Err(bad_request("the path holds a NUL character"));
        }
        if path.split('/').any(|segment| segment == "..") {
            return Err(bad_request(format!(
                "the path '{}' holds a '..' segment",
                path.chars().take(200).collect::<String>()
            )));
        }
        Ok(ProxyTarget {
            service,
            qualifier,
            function,
            path,
        })
    }
}

/// An HTTP trigger's configuration, as checked when it was set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpTriggerConfig {
    /// `anonymous` (no signature) or `function` (a signed request).
    pub auth_type: String,
    /// The methods it answers (`GET`, `POST`, ...).
    pub methods: Vec<String>,
}

impl HttpTriggerConfig {
    /// Whether requests need no signature.
    pub fn is_anonymous(&self) -> bool {
        self.auth_type == "anonymous"
    }

    /// Whether the trigger answers `method`.
    pub fn allows(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }
}

/// A function's HTTP trigger, found for a request.
#[derive(Debug, Clone)]
pub struct HttpTrigger {
    /// `triggerName`, for messages.
    pub name: String,
    /// Its methods and auth type.
    pub config: HttpTriggerConfig,
}

/// What the shim hands the handler beside the body (the `P` frame's head).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestHead {
    /// `request.method`, `REQUEST_METHOD`.
    pub method: String,
    /// The path after the function, decoded: `request.path`, `PATH_INFO`.
    pub path: String,
    /// The request URI as sent (path and query, still encoded): `request.url`, `fc.request_uri`.
    pub url: String,
    /// The query string as sent: `QUERY_STRING`.
    pub query_string: String,
    /// Decoded query pairs: a string per key, a list for a key given more than once (`request.queries`).
    pub queries: Map<String, Value>,
    /// Header names (lower case) to values, repeated headers joined with `, `; bytes that are not ASCII are
    /// read as Latin-1, as Node.js and WSGI do.
    pub headers: Map<String, Value>,
    /// The client's address: `request.clientIP`, `REMOTE_ADDR`.
    #[serde(rename = "clientIP")]
    pub client_ip: String,
}

/// Latin-1 reading of a header value's bytes.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

impl RequestHead {
    /// The head of a request; 400 `InvalidArgument` over the header or query limits.
    pub fn new(
        method: &str,
        target: &ProxyTarget,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        client_ip: String,
    ) -> Result<RequestHead, ApiError> {
        let query_string = uri.query().unwrap_or_default().to_owned();
        if query_string.len() > MAX_PATH_BYTES {
            return Err(bad_request(format!(
                "the query string is {} bytes, more than the {MAX_PATH_BYTES} bytes allowed",
                query_string.len()
            )));
        }
        let mut header_bytes = 0usize;
        let mut joined: Map<String, Value> = Map::new();
        for (name, value) in headers {
            if !passes_to_handler(name.as_str()) {
                continue;
            }
            header_bytes += name.as_str().len() + value.as_bytes().len();
            let text = latin1(value.as_bytes());
            match joined.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&text);
                }
                _ => {
                    joined.insert(name.as_str().to_owned(), Value::String(text));
                }
            }
        }
        if header_bytes > MAX_HEADER_BYTES {
            return Err(bad_request(format!(
                "the request headers are {header_bytes} bytes (names and values), more than the \
                 {MAX_HEADER_BYTES} bytes allowed"
            )));
        }
        Ok(RequestHead {
            method: method.to_owned(),
            path: target.path.clone(),
            url: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            queries: query_map(&query_string),
            query_string,
            headers: joined,
            client_ip,
        })
    }
}

/// Decoded query pairs, a list for a repeated key (`+` is a space, a key without `=` has the value "").
pub fn query_map(query: &str) -> Map<String, Value> {
    let decode = |text: &str| {
        percent_decode_str(&text.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut map: Map<String, Value> = Map::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode(key), Value::String(decode(value)));
        match map.get_mut(&key) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
            None => {
                map.insert(key, value);
            }
        }
    }
    map
}

/// The shim's answer head.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerHead {
    /// What `setStatusCode` / `start_response` set, as the handler gave it.
    #[serde(default)]
    status: Value,
    /// `[name, value]` pairs in the order set.
    #[serde(default)]
    headers: Vec<(Value, Value)>,
    /// Set instead when the handler answered wrongly (the shim says how).
    error: Option<String>,
}

/// A handler's answer, checked: what the client gets.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    /// 200-599.
    pub status: StatusCode,
    /// The headers the handler set, without the ignored ones.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// At most [`MAX_BODY_BYTES`].
    pub body: Bytes,
}

/// A handler answered in a way that cannot be sent: 502 `BadResponse` with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadResponse(pub String);

impl HttpAnswer {
    /// Checks a shim's answer (see `pool::split_http_answer`): a status from 200 to 599, valid header names and
    /// values within [`MAX_HEADER_BYTES`] (ignored headers dropped first), a body within [`MAX_BODY_BYTES`].
    pub fn decode(head: &[u8], body: Bytes) -> Result<HttpAnswer, BadResponse> {
        let head: AnswerHead = serde_json::from_slice(head)
            .map_err(|e| BadResponse(format!("the language shim's answer is unreadable: {e}")))?;
        if let Some(error) = head.error {
            return Err(BadResponse(error));
        }
        let status = head
            .status
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (200..=599).contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| {
                BadResponse(format!(
                    "the function set the status code {}: expected an integer from 200 to 599",
                    head.status
                ))
            })?;
        let mut headers = Vec::new();
        let mut header_bytes = 0usize;
        for (name, value) in head.headers {
            let (Value::String(name), Some(value)) = (&name, scalar_text(&value)) else {
                return Err(BadResponse(format!(
                    "the function set the header {name} to {value}: expected a string name and a string value"
                )));
            };
            if !passes_to_client(name) {
                continue;
            }
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                BadResponse(format!(
                    "the function set a header with the invalid name '{name}'"
                ))
            })?;
            let header_value = HeaderValue::from_str(&value).map_err(|_| {
                BadResponse(format!(
                    "the function set the header '{name}' to an invalid value (control characters or non-ASCII)"
                ))
            })?;
            header_bytes += name.len() + value.len();
            headers.push((header_name, header_value));
        }
        if header_bytes > MAX_HEADER_BYTES {
            return Err(BadResponse(format!(
                "the function's response headers are {header_bytes} bytes (names and values), more than the \
                 {MAX_HEADER_BYTES} bytes allowed"
            )));
        }
        if body.len() > MAX_BODY_BYTES {
            return Err(BadResponse(format!(
                "the function's response body is {} bytes, more than the {MAX_BODY_BYTES} bytes allowed",
                body.len()
            )));
        }
        Ok(HttpAnswer {
            status,
            headers,
            body,
        })
    }
}

/// A header value given as a string or a number.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The stored form of a qualifier ("" for LATEST), as triggers keep it.
fn stored_qualifier(qualifier: &Qualifier) -> &str {
    match qualifier {
        Qualifier::Latest => "",
        Qualifier::Version(text) | Qualifier::Alias(text) => text,
    }
}

impl Core {
    /// The HTTP trigger a request reaches: the function's, when its qualifier is the one in the path (none:
    /// LATEST). 404 `ServiceNotFound` / `FunctionNotFound`, or 404 `TriggerNotFound` when the function has no
    /// HTTP trigger for that qualifier.
    pub(crate) fn http_trigger(&self, target: &ProxyTarget) -> Result<HttpTrigger, ApiError> {
        let (service, function) = (&target.service, &target.function);
        self.function_record(service, function)?;
        let triggers = self.storage.triggers(
            service.as_str(),
            function.as_str(),
            "",
            "",
            MAX_TRIGGERS_PER_FUNCTION + 1,
        )?;
        let http: Vec<_> = triggers
            .into_iter()
            .filter(|t| t.trigger_type == "http")
            .collect();
        let wanted = stored_qualifier(&target.qualifier);
        let Some(trigger) = http.iter().find(|t| t.qualifier == wanted) else {
            let shown = |q: &str| {
                if q.is_empty() {
                    "LATEST".to_owned()
                } else {
                    q.to_owned()
                }
            };
            let message = match http.first() {
                Some(other) => format!(
                    "function '{function}' of service '{service}' has no HTTP trigger for qualifier {}: its HTTP \
                     trigger '{}' is reached at /2016-08-15/proxy/{service}.{}/{function}/",
                    shown(wanted),
                    other.name,
                    shown(&other.qualifier)
                ),
                None => format!("function '{function}' of service '{service}' has no HTTP trigger"),
            };
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                code: "TriggerNotFound",
                message,
            });
        };
        let config: HttpTriggerConfig =
            serde_json::from_value(trigger.config.clone()).map_err(|e| {
                ApiError::internal(format!(
                    "stored HTTP trigger '{}' of {service}/{function}: {e}",
                    trigger.name
                ))
            })?;
        Ok(HttpTrigger {
            name: trigger.name.clone(),
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_proxy_path_names_the_service_qualifier_function_and_path() {
        let target = ProxyTarget::parse("/2016-08-15/proxy/svc/fn/action").unwrap();
        assert_eq!(target.service.as_str(), "svc");
        assert_eq!(target.qualifier, Qualifier::Latest);
        assert_eq!(target.function.as_str(), "fn");
        assert_eq!(target.path, "/action");
        let target = ProxyTarget::parse("/2016-08-15/proxy/svc.prod/fn/a%20b/c/").unwrap();
        assert_eq!(target.qualifier, Qualifier::Alias("prod".into()));
        assert_eq!(target.path, "/a b/c/");
        assert_eq!(
            ProxyTarget::parse("/2016-08-15/proxy/svc/fn").unwrap().path,
            "/"
        );
        assert_eq!(
            ProxyTarget::parse("/2016-08-15/proxy/svc.1/fn/").unwrap(),
            ProxyTarget {
                service: ServiceName::parse("svc").unwrap(),
                qualifier: Qualifier::Version("1".into()),
                function: FunctionName::parse("fn").unwrap(),
                path: "/".into(),
            }
        );
    }

    #[test]
    fn hostile_proxy_paths_are_refused() {
        for (path, says) in [
            ("/2016-08-15/proxy/svc", "not an HTTP trigger path"),
            ("/2016-08-15/proxy//fn/x", "not an HTTP trigger path"),
            ("/2016-08-15/proxy/svc/fn/../../other/f", "'..'"),
            ("/2016-08-15/proxy/svc/fn/a/%2e%2e/b", "'..'"),
            ("/2016-08-15/proxy/svc/fn/a/..%2F..%2Fetc", "'..'"),
            ("/2016-08-15/proxy/svc/fn/..", "'..'"),
            ("/2016-08-15/proxy/svc/fn/a%00b", "NUL"),
            ("/2016-08-15/proxy/svc/fn/%ff", "UTF-8"),
            ("/2016-08-15/proxy/../fn/x", "invalid qualifier name"),
            ("/2016-08-15/proxy/svc/..%2Fother/x", "function"),
            ("/2016-08-15/proxy/svc.../fn/x", "qualifier"),
        ] {
            let error = ProxyTarget::parse(path).unwrap_err();
            assert_eq!(error.code, "InvalidArgument", "{path}");
            assert!(error.message.contains(says), "{path}: {}", error.message);
        }
        let long = format!("/2016-08-15/proxy/svc/fn/{}", "a".repeat(MAX_PATH_BYTES));
        let error = ProxyTarget::parse(&long).unwrap_err();
        assert!(error.message.contains("4096 bytes"), "{}", error.message);
        // Dots that are not a whole segment are plain names.
        assert_eq!(
            ProxyTarget::parse("/2016-08-15/proxy/svc/fn/a..b/.x")
                .unwrap()
                .path,
            "/a..b/.x"
        );
    }

    #[test]
    fn ignored_headers_never_pass() {
        for name in [
            "Accept-Encoding",
            "connection",
            "Keep-Alive",
            "proxy-authorization",
            "TE",
            "trailer",
            "transfer-encoding",
            "X-Fc-Invocation-Type",
        ] {
            assert!(!passes_to_handler(name), "{name}");
        }
        for name in [
            "content-type",
            "content-length",
            "authorization",
            "date",
            "x-custom",
        ] {
            assert!(passes_to_handler(name), "{name}");
        }
        for name in [
            "Connection",
            "content-length",
            "Content-Encoding",
            "date",
            "keep-alive",
            "proxy-authenticate",
            "Server",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "x-fc-request-id",
        ] {
            assert!(!passes_to_client(name), "{name}");
        }
        assert!(passes_to_client("content-type"));
        assert!(passes_to_client("set-cookie"));
    }

    #[test]
    fn the_request_head_joins_repeated_headers_and_queries() {
        let target = ProxyTarget::parse("/2016-08-15/proxy/svc/fn/action").unwrap();
        let uri: axum::http::Uri =
            "/2016-08-15/proxy/svc/fn/action?lang=python&hello=world&a=1&a=2&flag&sp=a+b%21"
                .parse()
                .unwrap();
        let mut headers = HeaderMap::new();
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        headers.insert("x-fc-log-type", HeaderValue::from_static("Tail"));
        headers.insert("connection", HeaderValue::from_static("close"));
        headers.insert("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let head = RequestHead::new("POST", &target, &uri, &headers, "10.0.0.1".into()).unwrap();
        let value = serde_json::to_value(&head).unwrap();
        assert_eq!(
            value,
            json!({
                "method": "POST",
                "path": "/action",
                "url": "/2016-08-15/proxy/svc/fn/action?lang=python&hello=world&a=1&a=2&flag&sp=a+b%21",
                "queryString": "lang=python&hello=world&a=1&a=2&flag&sp=a+b%21",
                "queries": {"lang": "python", "hello": "world", "a": ["1", "2"], "flag": "", "sp": "a b!"},
                "headers": {"accept": "a, b", "x-latin": "café"},
                "clientIP": "10.0.0.1",
            })
        );
    }

    #[test]
    fn request_limits_are_invalid_arguments() {
        let target = ProxyTarget::parse("/2016-08-15/proxy/svc/fn/").unwrap();
        let uri: axum::http::Uri = "/2016-08-15/proxy/svc/fn/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-big",
            HeaderValue::from_str(&"v".repeat(MAX_HEADER_BYTES)).unwrap(),
        );
        let error = RequestHead::new("GET", &target, &uri, &headers, String::new()).unwrap_err();
        assert_eq!(error.code, "InvalidArgument");
        assert!(
            error.message.contains("request headers"),
            "{}",
            error.message
        );
        // The ignored headers do not count.
        let mut ignored = HeaderMap::new();
        ignored.insert(
            "x-fc-big",
            HeaderValue::from_str(&"v".repeat(MAX_HEADER_BYTES)).unwrap(),
        );
        assert!(RequestHead::new("GET", &target, &uri, &ignored, String::new()).is_ok());
        let long: axum::http::Uri = format!("/2016-08-15/proxy/svc/fn/?q={}", "x".repeat(4096))
            .parse()
            .unwrap();
        let error =
            RequestHead::new("GET", &target, &long, &HeaderMap::new(), String::new()).unwrap_err();
        assert!(error.message.contains("query string"), "{}", error.message);
    }

    fn answer(head: Value, body: &'static [u8]) -> Result<HttpAnswer, BadResponse> {
        HttpAnswer::decode(head.to_string().as_bytes(), Bytes::from_static(body))
    }

    #[test]
    fn a_good_answer_keeps_its_headers_in_order_without_the_ignored_ones() {
        let decoded = answer(
            json!({"status": 201, "headers": [["content-type", "application/json"], ["Set-Cookie", "a=1"],
                   ["set-cookie", "b=2"], ["content-length", "999"], ["x-fc-request-id", "forged"],
                   ["Date", "yesterday"], ["x-count", 3]]}),
            b"{}",
        )
        .unwrap();
        assert_eq!(decoded.status, StatusCode::CREATED);
        let headers: Vec<(&str, &str)> = decoded
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                ("content-type", "application/json"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("x-count", "3")
            ]
        );
    }

    #[test]
    fn wrong_answers_are_bad_responses() {
        for (head, says) in [
            (json!({"status": 99, "headers": []}), "status code 99"),
            (json!({"status": 600, "headers": []}), "status code 600"),
            (
                json!({"status": "200", "headers": []}),
                "status code \"200\"",
            ),
            (json!({"status": 100, "headers": []}), "status code 100"),
            (json!({"status": null, "headers": []}), "status code null"),
            (
                json!({"status": 200, "headers": [["bad name", "v"]]}),
                "invalid name",
            ),
            (
                json!({"status": 200, "headers": [["x", "a\nb"]]}),
                "invalid value",
            ),
            (
                json!({"status": 200, "headers": [["x", {"a": 1}]]}),
                "expected a string",
            ),
            (
                json!({"error": "the handler never called send"}),
                "never called send",
            ),
        ] {
            let error = answer(head.clone(), b"").unwrap_err();
            assert!(error.0.contains(says), "{head}: {error}");
        }
        let big = "v".repeat(MAX_HEADER_BYTES);
        let error = answer(json!({"status": 200, "headers": [["x-big", big]]}), b"").unwrap_err();
        assert!(error.0.contains("response headers"), "{error}");
        let body = Bytes::from(vec![b'x'; MAX_BODY_BYTES + 1]);
        let error = HttpAnswer::decode(br#"{"status":200,"headers":[]}"#, body).unwrap_err();
        assert!(error.0.contains("response body"), "{error}");
        assert!(HttpAnswer::decode(b"not json", Bytes::new()).is_err());
    }

    #[test]
    fn trigger_configs_say_who_may_call_and_how() {
        let config: HttpTriggerConfig =
            serde_json::from_value(json!({"authType": "anonymous", "methods": ["GET", "POST"]}))
                .unwrap();
        assert!(config.is_anonymous());
        assert!(config.allows("GET") && config.allows("POST"));
        assert!(!config.allows("PUT") && !config.allows("get"));
    }
}
