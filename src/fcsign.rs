//! The Function Compute 2016-08-15 request signature, shared by the client that invokes functions (`dispatch`)
//! and the bundled runtime that verifies requests (`runtime`), so the two can never disagree.
//!
//! ```text
//! UPPER(method) "\n" Content-MD5 "\n" Content-Type "\n" Date "\n" CanonicalizedFCHeaders CanonicalizedResource
//! ```
//!
//! `CanonicalizedFCHeaders` is every `x-fc-*` header, lower-cased, sorted by name, as `name:value\n`.
//! `CanonicalizedResource` is the URL-decoded path; for HTTP-trigger paths (`/2016-08-15/proxy/...`) it is
//! followed by `\n` and the sorted `k=v` query pairs joined by `\n`. The signature is
//! `base64(HMAC-SHA256(secret, string_to_sign))`, sent as `Authorization: FC <AccessKeyId>:<signature>`.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The API version prefix every Function Compute path starts with.
pub const API_PREFIX: &str = "/2016-08-15";

/// What the signature covers: everything except the body and the `Host`.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    /// HTTP method; upper-cased when signed.
    pub method: &'a str,
    /// The request headers as sent (any case); only Content-MD5, Content-Type, Date and `x-fc-*` are used.
    pub headers: &'a [(&'a str, &'a str)],
    /// The URL-decoded path, starting with `/2016-08-15`.
    pub path: &'a str,
    /// The URL-decoded query pairs (`None` for a key without a value); signed only on proxy paths.
    pub queries: &'a [(&'a str, Option<&'a str>)],
}

/// The exact text that is signed.
pub fn string_to_sign(parts: &SignedParts<'_>) -> String {
    let header = |name: &str| {
        parts
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| *v)
    };
    let mut fc_headers: Vec<(String, &str)> = parts
        .headers
        .iter()
        .filter(|(k, _)| k.len() >= 5 && k[..5].eq_ignore_ascii_case("x-fc-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), *v))
        .collect();
    fc_headers.sort();

    let mut out = format!(
        "{}\n{}\n{}\n{}\n",
        parts.method.to_ascii_uppercase(),
        header("content-md5"),
        header("content-type"),
        header("date"),
    );
    for (name, value) in &fc_headers {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.push_str(parts.path);
    if is_proxy_path(parts.path) {
        let mut pairs: Vec<String> = parts
            .queries
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => (*k).to_owned(),
            })
            .collect();
        pairs.sort();
        out.push('\n');
        out.push_str(&pairs.join("\n"));
    }
    out
}

/// `base64(HMAC-SHA256(secret, string_to_sign))`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value for a request.
pub fn authorization(access_key_id: &str, secret: &str, parts: &SignedParts<'_>) -> String {
    format!(
        "FC {access_key_id}:{}",
        signature(secret, &string_to_sign(parts))
    )
}

/// Why a request's `Authorization` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the Authorization header is not of the form `FC <AccessKeyId>:<signature>`")]
    Malformed,
    #[error("invalid access key ID '{0}'")]
    UnknownAccessKey(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your access key and signing method"
    )]
    SignatureMismatch,
}

/// Checks an `Authorization` header against the expected access key, in constant time.
pub fn verify(
    authorization: &str,
    access_key_id: &str,
    secret: &str,
    parts: &SignedParts<'_>,
) -> Result<(), VerifyError> {
    let (given_id, given_signature) = authorization
        .strip_prefix("FC ")
        .and_then(|rest| rest.rsplit_once(':'))
        .ok_or(VerifyError::Malformed)?;
    if given_id != access_key_id {
        return Err(VerifyError::UnknownAccessKey(given_id.to_owned()));
    }
    let expected = signature(secret, &string_to_sign(parts));
    if bool::from(expected.as_bytes().ct_eq(given_signature.as_bytes())) {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch)
    }
}

type Hmac = hmac::Hmac<Sha256>;

fn is_proxy_path(path: &str) -> bool {
    path.strip_prefix(API_PREFIX)
        .is_some_and(|rest| rest.starts_with("/proxy/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "testAccessKeyId";
    const SECRET: &str = "testAccessKeySecret";
    const DATE: &str = "Mon, 02 Jan 2006 15:04:05 GMT";

    fn sign(parts: &SignedParts<'_>) -> String {
        authorization(ID, SECRET, parts)
    }

    #[test]
    fn v1_sync_invoke_without_fc_headers() {
        let parts = SignedParts {
            method: "POST",
            headers: &[("content-type", "application/json"), ("date", DATE)],
            path: "/2016-08-15/services/demo/functions/hello/invocations",
            queries: &[],
        };
        assert_eq!(
            string_to_sign(&parts),
            "POST\n\napplication/json\nMon, 02 Jan 2006 15:04:05 GMT\n/2016-08-15/services/demo/functions/hello/invocations"
        );
        assert_eq!(
            sign(&parts),
            "FC testAccessKeyId:KvUmI1kioY5LgiePgGFehAA2su2rk9DNc0EScq8Fu+s="
        );
    }

    #[test]
    fn v2_async_invoke_with_qualifier_md5_mixed_case_headers_and_sts() {
        let parts = SignedParts {
            method: "POST",
            headers: &[
                ("content-type", "application/octet-stream"),
                ("content-md5", "5d41402abc4b2a76b9719d911017c592"),
                ("Date", DATE),
                ("X-Fc-Invocation-Type", "Async"),
                ("x-fc-log-type", "None"),
                ("x-fc-account-id", "1234567890123456"),
                ("x-fc-security-token", "sts-token-value"),
            ],
            path: "/2016-08-15/services/demo.LATEST/functions/hello/invocations",
            queries: &[],
        };
        assert_eq!(
            string_to_sign(&parts),
            "POST\n5d41402abc4b2a76b9719d911017c592\napplication/octet-stream\nMon, 02 Jan 2006 15:04:05 GMT\n\
             x-fc-account-id:1234567890123456\nx-fc-invocation-type:Async\nx-fc-log-type:None\n\
             x-fc-security-token:sts-token-value\n/2016-08-15/services/demo.LATEST/functions/hello/invocations"
        );
        assert_eq!(
            sign(&parts),
            "FC testAccessKeyId:wj4nNjUUVmQozpjzdNX4v2Og3kBW4mBlNxpi0TUz5BQ="
        );
    }

    #[test]
    fn v3_proxy_path_signs_sorted_queries() {
        let queries = vec![("b", Some("2")), ("a", Some("3")), ("a", Some("1"))];
        let parts = SignedParts {
            method: "GET",
            headers: &[("date", DATE)],
            path: "/2016-08-15/proxy/demo/hello/a b",
            queries: &queries,
        };
        assert_eq!(
            string_to_sign(&parts),
            "GET\n\n\nMon, 02 Jan 2006 15:04:05 GMT\n/2016-08-15/proxy/demo/hello/a b\na=1\na=3\nb=2"
        );
        assert_eq!(
            sign(&parts),
            "FC testAccessKeyId:tVcK/ZXIrYc6SlHzvF49HCRby/tmzyCntsOSVLbtaVM="
        );

        let mut with_flag_queries = queries.clone();
        with_flag_queries.push(("flag", None));
        let with_flag = SignedParts {
            queries: &with_flag_queries,
            ..parts
        };
        assert_eq!(
            sign(&with_flag),
            "FC testAccessKeyId:GCKvZUriyv9DUJYDYG70iofkYCAjmJ/FgPrDyB7IhlI="
        );

        let no_queries = SignedParts {
            path: "/2016-08-15/proxy/demo/hello/",
            queries: &[],
            ..parts
        };
        assert!(string_to_sign(&no_queries).ends_with("/2016-08-15/proxy/demo/hello/\n"));
        assert_eq!(
            sign(&no_queries),
            "FC testAccessKeyId:MMfEWLyFFsYEJUA3fAIOLa4OxcR/WH/uX5/A0y/JgdM="
        );
    }

    #[test]
    fn v4_list_services_does_not_sign_queries() {
        let parts = SignedParts {
            method: "GET",
            headers: &[("content-type", "application/json"), ("date", DATE)],
            path: "/2016-08-15/services",
            queries: &[("limit", Some("10")), ("prefix", Some("sv"))],
        };
        assert_eq!(
            string_to_sign(&parts),
            "GET\n\napplication/json\nMon, 02 Jan 2006 15:04:05 GMT\n/2016-08-15/services"
        );
        assert_eq!(
            sign(&parts),
            "FC testAccessKeyId:qKfdaKUvDci4VJODEAMzAems6kzx4SZ/DaXtkxnL7nY="
        );
    }

    #[test]
    fn v5_go_sdk_signed_url_vector() {
        let text = "GET\nef5b43a0fe1d5b401b62c3ba33a7a3d6\ntext/json\n1583221068\nx-fc-trace-id:trace-id\n\
                    /2016-08-15/proxy/service.LATEST/func/abc 123\na=123 45\nx-fc-access-key-id=akID\n\
                    x-fc-expires=1583221068\nx-fc-security-token=stsToken\nx=456\nx=xyz";
        let parts = SignedParts {
            method: "GET",
            headers: &[
                ("Content-MD5", "ef5b43a0fe1d5b401b62c3ba33a7a3d6"),
                ("Content-Type", "text/json"),
                ("Date", "1583221068"),
                ("X-Fc-Trace-Id", "trace-id"),
            ],
            path: "/2016-08-15/proxy/service.LATEST/func/abc 123",
            queries: &[
                ("x", Some("xyz")),
                ("x-fc-security-token", Some("stsToken")),
                ("a", Some("123 45")),
                ("x-fc-expires", Some("1583221068")),
                ("x", Some("456")),
                ("x-fc-access-key-id", Some("akID")),
            ],
        };
        assert_eq!(string_to_sign(&parts), text);
        assert_eq!(
            signature("S9MWOBG0AOWHSO9HPASP216QOPHT5YR4NLH3A", text),
            "QFdNhz0Dl+onUM/MvpX940WFH3H8OHayZHbby1c01aI="
        );
    }

    #[test]
    fn verify_accepts_the_signers_header_and_names_what_is_wrong() {
        let parts = SignedParts {
            method: "POST",
            headers: &[("content-type", "application/json"), ("date", DATE)],
            path: "/2016-08-15/services/demo/functions/hello/invocations",
            queries: &[],
        };
        let header = sign(&parts);
        assert_eq!(verify(&header, ID, SECRET, &parts), Ok(()));
        assert_eq!(
            verify(&header, ID, "other", &parts),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            verify(&header, "someoneElse", SECRET, &parts),
            Err(VerifyError::UnknownAccessKey(ID.to_owned()))
        );
        assert_eq!(
            verify("Bearer x", ID, SECRET, &parts),
            Err(VerifyError::Malformed)
        );
    }
}
