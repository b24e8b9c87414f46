//! Request authentication: Function Compute's signature (see `crate::fcsign`) and the Date window.

use std::time::{Duration, SystemTime};

use crate::fcsign::{self, SignedParts, VerifyError};

/// How far a request's `Date` may be from our clock.
pub const DATE_TOLERANCE: Duration = Duration::from_secs(15 * 60);

/// An access key secret; never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from the environment or a file.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The access key clients must sign with.
#[derive(Debug, Clone)]
pub struct AccessKey {
    /// `AccessKeyId`, matched against the `Authorization` header.
    pub id: String,
    /// `AccessKeySecret`, the HMAC key.
    pub secret: Secret,
}

/// Why a request was refused; each maps to a 403 with Function Compute's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("required HTTP header Authorization was not specified")]
    MissingAuthorization,
    #[error("{0}")]
    Signature(VerifyError),
    #[error("required HTTP header Date was not specified")]
    MissingDate,
    #[error("the Date header '{0}' is not an RFC 1123 date (e.g. 'Mon, 02 Jan 2006 15:04:05 GMT')")]
    BadDate(String),
    #[error(
        "the Date header '{0}' is more than 15 minutes away from the server's time; check the client's clock"
    )]
    StaleDate(String),
}

impl AuthError {
    /// Function Compute's `ErrorCode` for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingAuthorization => "MissingRequiredHeader",
            AuthError::Signature(VerifyError::UnknownAccessKey(_)) => "InvalidAccessKeyID",
            AuthError::Signature(_) => "SignatureNotMatch",
            AuthError::MissingDate | AuthError::BadDate(_) | AuthError::StaleDate(_) => {
                "AccessDenied"
            }
        }
    }
}

/// Checks a request: an `Authorization` that matches the signature of `parts` under `key`, and a `Date`
/// within [`DATE_TOLERANCE`] of `now`.
pub fn check(key: &AccessKey, parts: &SignedParts<'_>, now: SystemTime) -> Result<(), AuthError> {
    let header = |name: &str| {
        parts
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let authorization = header("authorization").ok_or(AuthError::MissingAuthorization)?;
    fcsign::verify(authorization, &key.id, key.secret.expose(), parts)
        .map_err(AuthError::Signature)?;
    let date = header("date").ok_or(AuthError::MissingDate)?;
    let sent = httpdate::parse_http_date(date).map_err(|_| AuthError::BadDate(date.to_owned()))?;
    let skew = now
        .duration_since(sent)
        .or_else(|_| sent.duration_since(now))
        .unwrap_or_default();
    if skew > DATE_TOLERANCE {
        return Err(AuthError::StaleDate(date.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccessKey {
        AccessKey {
            id: "testAccessKeyId".into(),
            secret: Secret::new("testAccessKeySecret"),
        }
    }

    const PATH: &str = "/2016-08-15/services/demo/functions/hello/invocations";

    fn signed(date: &str) -> Vec<(String, String)> {
        let headers = [("content-type", "application/json"), ("date", date)];
        let parts = SignedParts {
            method: "POST",
            headers: &headers,
            path: PATH,
            queries: &[],
        };
        let mut out: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push((
            "authorization".into(),
            fcsign::authorization("testAccessKeyId", "testAccessKeySecret", &parts),
        ));
        out
    }

    fn run(headers: &[(String, String)], now: SystemTime) -> Result<(), AuthError> {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        check(
            &key(),
            &SignedParts {
                method: "POST",
                headers: &headers,
                path: PATH,
                queries: &[],
            },
            now,
        )
    }

    #[test]
    fn accepts_a_fresh_signed_request_and_refuses_a_stale_one() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_136_214_245);
        let date = httpdate::fmt_http_date(now);
        assert_eq!(run(&signed(&date), now), Ok(()));
        assert_eq!(
            run(&signed(&date), now + Duration::from_secs(14 * 60)),
            Ok(())
        );
        let late = run(&signed(&date), now + Duration::from_secs(16 * 60)).unwrap_err();
        assert_eq!(late.code(), "AccessDenied");
        let early = run(&signed(&date), now - Duration::from_secs(16 * 60)).unwrap_err();
        assert_eq!(early.code(), "AccessDenied");
    }

    #[test]
    fn names_each_refusal() {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let mut headers = signed(&date);
        headers.retain(|(k, _)| k != "authorization");
        assert_eq!(
            run(&headers, now).unwrap_err().code(),
            "MissingRequiredHeader"
        );
        let mut tampered = signed(&date);
        tampered[0].1 = "application/octet-stream".into();
        assert_eq!(run(&tampered, now).unwrap_err().code(), "SignatureNotMatch");
        let mut other = signed(&date);
        other[2].1 = other[2].1.replace("testAccessKeyId", "someoneElse");
        let error = run(&other, now).unwrap_err();
        assert_eq!(error.code(), "InvalidAccessKeyID");
        assert_eq!(error.to_string(), "invalid access key ID 'someoneElse'");
        assert!(!format!("{:?}", key()).contains("testAccessKeySecret"));
    }
}
