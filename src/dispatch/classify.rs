//! What one push attempt's result means (pure): delivered, worth retrying, not deliverable, or a configuration
//! error that no retry of this event can fix.
//!
//! | result | Function Compute | HTTP |
//! |---|---|---|
//! | 2xx without `X-Fc-Error-Type` | Delivered | Delivered |
//! | 2xx with `X-Fc-Error-Type` (function error) | Retry | Retry |
//! | 3xx (redirects are not followed) | Configuration | Configuration |
//! | 400 `EntityTooLarge`, `InvalidArgument`, other codes | Undeliverable | — |
//! | 400 `MissingRequiredHeader`, `PathNotSupported` (not an FC endpoint) | Configuration | — |
//! | 400 | — | Configuration (the receiver refuses what the filter makes) |
//! | 401, 403 (`AccessDenied`, `SignatureNotMatch`, `InvalidAccessKeyID`) | Configuration | Configuration |
//! | 404 (`ServiceNotFound`, `FunctionNotFound`, ...), 405, 410 | Configuration | Configuration |
//! | 408, 409, 425, 429, 499 | Retry | Retry |
//! | 413, 422 and other 4xx | Undeliverable | Undeliverable |
//! | 5xx (incl. 503 `ResourceThrottled`) | Retry | Retry |
//! | attempt timeout (request sent, no answer in time) | Retry | Retry |
//! | connection refused or reset, connect timeout | Retry (unreachable) | Retry (unreachable) |
//! | DNS failure, TLS failure, invalid URL | Configuration | Configuration |
//!
//! *Undeliverable*: this event will never be accepted (too large, refused as invalid): it is discarded at once
//! (dead letter, one failure) instead of being retried. *Retry (unreachable)*: nothing reached the function; when
//! the attempts run out the trigger enters Exception instead of discarding the event (an unreachable endpoint is a
//! configuration problem, and Exception loses nothing).

use std::time::{Duration, SystemTime};

/// The header Function Compute sets on a 2xx response when the function itself failed.
pub const FC_ERROR_TYPE_HEADER: &str = "x-fc-error-type";

/// The two kinds of target, whose answers mean slightly different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    FunctionCompute,
    Http,
}

/// What came back from one attempt, reduced to what classification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The target answered.
    Response(ResponseSummary),
    /// No answer: the request could not be sent or the answer did not come.
    Transport(TransportError),
}

/// The parts of an HTTP response that decide its meaning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseSummary {
    /// The HTTP status code.
    pub status: u16,
    /// `X-Fc-Error-Type`, when the function failed (`HandledInvocationError`, `UnhandledInvocationError`).
    pub fc_error_type: Option<String>,
    /// The `ErrorCode` of a Function Compute API error body (`FunctionNotFound`, `ResourceExhausted`, ...).
    pub fc_error_code: Option<String>,
    /// How long the target asked us to wait (`Retry-After`), already turned into a delay.
    pub retry_after: Option<Duration>,
    /// The start of the body, to show the operator what the target said.
    pub body_excerpt: String,
}

/// Why an attempt got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The connection was refused, reset or could not be set up in time: the endpoint is down or unreachable.
    Connect(String),
    /// The host name does not resolve.
    Dns(String),
    /// The TLS handshake failed (certificate not trusted, wrong name).
    Tls(String),
    /// The URL cannot be used.
    InvalidUrl(String),
    /// The request was sent but no full answer came within the attempt timeout.
    Timeout(Duration),
    /// Anything else on the way (body stream broken mid-way, protocol error).
    Other(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Connect(e) => write!(f, "cannot connect: {e}"),
            TransportError::Dns(e) => write!(f, "host name does not resolve: {e}"),
            TransportError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            TransportError::InvalidUrl(e) => write!(f, "invalid URL: {e}"),
            TransportError::Timeout(after) => {
                write!(f, "no answer within {} ms", after.as_millis())
            }
            TransportError::Other(e) => write!(f, "request failed: {e}"),
        }
    }
}

/// The meaning of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The target accepted the event.
    Delivered,
    /// A transient failure: try again after a delay.
    Retry(Retryable),
    /// This event will never be accepted: discard it now.
    Undeliverable(String),
    /// The target is misconfigured or unreachable for good: no event can get through until an operator acts.
    Configuration(String),
}

/// A failure worth retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retryable {
    /// What happened, for the dead letter and the status page.
    pub reason: String,
    /// Nothing reached the target (connection failure): exhausting attempts means Exception, not discard.
    pub unreachable: bool,
    /// The delay the target asked for, if any.
    pub retry_after: Option<Duration>,
}

/// Classifies one attempt's result.
pub fn classify(kind: TargetKind, result: &AttemptResult) -> Verdict {
    match result {
        AttemptResult::Transport(error) => classify_transport(error),
        AttemptResult::Response(response) => classify_response(kind, response),
    }
}

fn retry(reason: String, retry_after: Option<Duration>) -> Verdict {
    Verdict::Retry(Retryable {
        reason,
        unreachable: false,
        retry_after,
    })
}

fn classify_transport(error: &TransportError) -> Verdict {
    match error {
        TransportError::Connect(_) => Verdict::Retry(Retryable {
            reason: error.to_string(),
            unreachable: true,
            retry_after: None,
        }),
        TransportError::Timeout(_) | TransportError::Other(_) => retry(error.to_string(), None),
        TransportError::Dns(_) | TransportError::Tls(_) | TransportError::InvalidUrl(_) => {
            Verdict::Configuration(error.to_string())
        }
    }
}

fn classify_response(kind: TargetKind, response: &ResponseSummary) -> Verdict {
    let status = response.status;
    let code = response.fc_error_code.as_deref();
    let described = describe(kind, response);
    match status {
        200..=299 => match &response.fc_error_type {
            Some(error_type) if !error_type.is_empty() => retry(
                format!("function error {error_type}: {}", response.body_excerpt),
                response.retry_after,
            ),
            _ => Verdict::Delivered,
        },
        300..=399 => Verdict::Configuration(format!(
            "{described} (redirects are not followed: fix the URL)"
        )),
        400 => match (kind, code) {
            (TargetKind::FunctionCompute, Some("MissingRequiredHeader" | "PathNotSupported")) => {
                Verdict::Configuration(format!(
                    "{described} (is the endpoint a Function Compute 2016-08-15 API?)"
                ))
            }
            (TargetKind::FunctionCompute, _) => Verdict::Undeliverable(described),
            (TargetKind::Http, _) => Verdict::Configuration(described),
        },
        401 | 403 | 404 | 405 | 410 => Verdict::Configuration(described),
        408 | 409 | 425 | 429 | 499 => retry(described, response.retry_after),
        402..500 => Verdict::Undeliverable(described),
        _ => retry(described, response.retry_after),
    }
}

fn describe(kind: TargetKind, response: &ResponseSummary) -> String {
    let target = match kind {
        TargetKind::FunctionCompute => "Function Compute",
        TargetKind::Http => "HTTP target",
    };
    let mut text = format!("{target} answered {}", response.status);
    if let Some(code) = &response.fc_error_code {
        text.push(' ');
        text.push_str(code);
    }
    if !response.body_excerpt.is_empty() {
        text.push_str(": ");
        text.push_str(&response.body_excerpt);
    }
    text
}

/// The longest part of a body kept for messages: enough to read an error, not a whole page.
pub const BODY_EXCERPT_LEN: usize = 512;

/// The start of a body as text, for messages.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT_LEN)]);
    text.trim().to_owned()
}

/// The `ErrorCode` of a Function Compute API error body (`{"ErrorCode": ..., "ErrorMessage": ...}`); the
/// lower-case form the documentation shows is accepted too.
pub fn fc_error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get("ErrorCode")
        .or_else(|| value.get("errorCode"))
        .and_then(|code| code.as_str())
        .map(str::to_owned)
}

/// The delay a `Retry-After` header asks for: delay-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16) -> ResponseSummary {
        ResponseSummary {
            status,
            ..ResponseSummary::default()
        }
    }

    fn fc_error(status: u16, code: &str) -> ResponseSummary {
        ResponseSummary {
            status,
            fc_error_code: Some(code.into()),
            body_excerpt: format!(r#"{{"ErrorCode":"{code}","ErrorMessage":"m"}}"#),
            ..ResponseSummary::default()
        }
    }

    #[derive(Debug, PartialEq)]
    enum Expect {
        Delivered,
        Retry,
        RetryUnreachable,
        Undeliverable,
        Configuration,
    }

    fn verdict_kind(verdict: &Verdict) -> Expect {
        match verdict {
            Verdict::Delivered => Expect::Delivered,
            Verdict::Retry(r) if r.unreachable => Expect::RetryUnreachable,
            Verdict::Retry(_) => Expect::Retry,
            Verdict::Undeliverable(_) => Expect::Undeliverable,
            Verdict::Configuration(_) => Expect::Configuration,
        }
    }

    #[test]
    fn classification_table() {
        use Expect::*;
        use TargetKind::{FunctionCompute as Fc, Http};
        let function_error = ResponseSummary {
            status: 200,
            fc_error_type: Some("UnhandledInvocationError".into()),
            body_excerpt: r#"{"errorMessage":"boom","errorType":"Exception"}"#.into(),
            ..ResponseSummary::default()
        };
        let empty_error_type = ResponseSummary {
            status: 200,
            fc_error_type: Some(String::new()),
            ..ResponseSummary::default()
        };
        let response_cases: Vec<(TargetKind, ResponseSummary, Expect)> = vec![
            (Fc, response(200), Delivered),
            (Fc, response(202), Delivered),
            (Fc, response(204), Delivered),
            (Fc, empty_error_type, Delivered),
            (Fc, function_error.clone(), Retry),
            (Http, function_error, Retry),
            (Http, response(200), Delivered),
            (Http, response(201), Delivered),
            (Http, response(204), Delivered),
            (Fc, response(301), Configuration),
            (Http, response(302), Configuration),
            (Http, response(307), Configuration),
            (Fc, fc_error(400, "EntityTooLarge"), Undeliverable),
            (Fc, fc_error(400, "InvalidArgument"), Undeliverable),
            (Fc, response(400), Undeliverable),
            (Fc, fc_error(400, "MissingRequiredHeader"), Configuration),
            (Fc, fc_error(400, "PathNotSupported"), Configuration),
            (Http, response(400), Configuration),
            (Fc, fc_error(401, "Unauthorized"), Configuration),
            (Fc, fc_error(403, "AccessDenied"), Configuration),
            (Fc, fc_error(403, "SignatureNotMatch"), Configuration),
            (Fc, fc_error(403, "InvalidAccessKeyID"), Configuration),
            (Http, response(401), Configuration),
            (Http, response(403), Configuration),
            (Fc, fc_error(404, "ServiceNotFound"), Configuration),
            (Fc, fc_error(404, "FunctionNotFound"), Configuration),
            (Fc, fc_error(404, "AliasNotFound"), Configuration),
            (Fc, fc_error(404, "VersionNotFound"), Configuration),
            (Fc, response(404), Configuration),
            (Http, response(404), Configuration),
            (Http, response(405), Configuration),
            (Http, response(410), Configuration),
            (Http, response(408), Retry),
            (Fc, fc_error(409, "ConcurrentUpdateError"), Retry),
            (Http, response(425), Retry),
            (Fc, fc_error(429, "ResourceExhausted"), Retry),
            (Http, response(429), Retry),
            (Fc, fc_error(499, "ClientClosedRequest"), Retry),
            (Fc, response(413), Undeliverable),
            (Http, response(413), Undeliverable),
            (Http, response(422), Undeliverable),
            (Http, response(418), Undeliverable),
            (Fc, fc_error(412, "PreconditionFailed"), Undeliverable),
            (Fc, fc_error(500, "InternalServerError"), Retry),
            (Fc, response(502), Retry),
            (Fc, fc_error(503, "ResourceThrottled"), Retry),
            (Http, response(500), Retry),
            (Http, response(503), Retry),
            (Http, response(504), Retry),
            (Http, response(100), Retry),
        ];
        for (kind, summary, expected) in response_cases {
            let verdict = classify(kind, &AttemptResult::Response(summary.clone()));
            assert_eq!(
                verdict_kind(&verdict),
                expected,
                "{kind:?} {summary:?} -> {verdict:?}"
            );
        }
        let transport_cases = [
            (
                TransportError::Connect("connection refused".into()),
                RetryUnreachable,
            ),
            (TransportError::Timeout(Duration::from_secs(3)), Retry),
            (
                TransportError::Other("connection closed before message completed".into()),
                Retry,
            ),
            (TransportError::Dns("no such host".into()), Configuration),
            (
                TransportError::Tls("invalid peer certificate: UnknownIssuer".into()),
                Configuration,
            ),
            (
                TransportError::InvalidUrl("empty host".into()),
                Configuration,
            ),
        ];
        for kind in [Fc, Http] {
            for (error, expected) in &transport_cases {
                let verdict = classify(kind, &AttemptResult::Transport(error.clone()));
                assert_eq!(&verdict_kind(&verdict), expected, "{kind:?} {error:?}");
            }
        }
    }

    #[test]
    fn reasons_say_what_the_target_answered() {
        let verdict = classify(
            TargetKind::FunctionCompute,
            &AttemptResult::Response(fc_error(404, "FunctionNotFound")),
        );
        assert_eq!(
            verdict,
            Verdict::Configuration(
                r#"Function Compute answered 404 FunctionNotFound: {"ErrorCode":"FunctionNotFound","ErrorMessage":"m"}"#.into()
            )
        );
        let verdict = classify(
            TargetKind::Http,
            &AttemptResult::Response(ResponseSummary {
                status: 200,
                fc_error_type: Some("HandledInvocationError".into()),
                body_excerpt: "oops".into(),
                ..ResponseSummary::default()
            }),
        );
        let Verdict::Retry(retry) = verdict else {
            panic!("a function error is retried")
        };
        assert_eq!(retry.reason, "function error HandledInvocationError: oops");
        let verdict = classify(
            TargetKind::Http,
            &AttemptResult::Transport(TransportError::Timeout(Duration::from_millis(1500))),
        );
        assert_eq!(
            verdict,
            Verdict::Retry(Retryable {
                reason: "no answer within 1500 ms".into(),
                unreachable: false,
                retry_after: None
            })
        );
    }

    #[test]
    fn retry_after_is_passed_on() {
        let summary = ResponseSummary {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
            ..ResponseSummary::default()
        };
        let Verdict::Retry(retry) = classify(TargetKind::Http, &AttemptResult::Response(summary))
        else {
            panic!("429 is retried")
        };
        assert_eq!(retry.retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Mon, 02 Jan 2006 15:04:05 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Mon, 02 Jan 2006 15:04:35 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 02 Jan 2006 15:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn fc_error_codes_are_read_from_bodies() {
        assert_eq!(
            fc_error_code(br#"{"ErrorCode":"FunctionNotFound","ErrorMessage":"x"}"#),
            Some("FunctionNotFound".into())
        );
        assert_eq!(
            fc_error_code(br#"{"errorCode":"AccessDenied"}"#),
            Some("AccessDenied".into())
        );
        assert_eq!(fc_error_code(br#"{"errorMessage":"boom"}"#), None);
        assert_eq!(fc_error_code(b"not json"), None);
        assert_eq!(body_excerpt(&[b'a'; 2000]).len(), BODY_EXCERPT_LEN);
        assert_eq!(body_excerpt(b"  hi \n"), "hi");
    }
}
