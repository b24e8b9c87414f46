//! Function Compute invocation (2016-08-15 API): the request a push sends, signed with [`crate::fcsign`].
//!
//! `POST {endpoint}/2016-08-15/services/{service}[.{qualifier}]/functions/{function}/invocations` with the payload
//! as a JSON body and the headers `Date`, `Content-Type: application/json`, `X-Fc-Invocation-Type`,
//! `X-Fc-Account-Id` (when configured), for Async `X-Fc-Stateful-Async-Invocation-Id` (derived from the push's
//! identity, so a repeated push is recognised by Function Compute), and `Authorization: FC <id>:<signature>`.

use std::time::SystemTime;

use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::config::{FcName, FcQualifier, InvocationType, Secret};
use crate::fcsign::{self, SignedParts};

use super::PushKey;

/// A Function Compute function, ready to invoke (endpoint resolved, secret read).
#[derive(Debug, Clone)]
pub struct FcTarget {
    /// Scheme and authority of the Function Compute API (or of the bundled runtime).
    pub endpoint: Url,
    /// The service holding the function.
    pub service: FcName,
    /// The function invoked.
    pub function: FcName,
    /// Version, alias or `LATEST`, appended to the service as `.{qualifier}`.
    pub qualifier: Option<FcQualifier>,
    /// Sync or Async.
    pub invocation: InvocationType,
    /// Sent as `X-Fc-Account-Id` when set.
    pub account_id: Option<String>,
    /// The AccessKeyId named in `Authorization`.
    pub access_key_id: String,
    /// The AccessKeySecret the signature is made with.
    pub access_key_secret: Secret,
}

impl FcTarget {
    /// The URL-decoded invocation path, as signed.
    pub fn path(&self) -> String {
        let qualifier = self
            .qualifier
            .as_ref()
            .map(|q| format!(".{q}"))
            .unwrap_or_default();
        format!(
            "{}/services/{}{qualifier}/functions/{}/invocations",
            fcsign::API_PREFIX,
            self.service,
            self.function
        )
    }

    /// The full invocation URL.
    pub fn url(&self) -> String {
        format!(
            "{}{}",
            self.endpoint.as_str().trim_end_matches('/'),
            self.path()
        )
    }

    /// The request headers of one push, `Authorization` included, signed at `now`.
    pub fn headers(&self, key: &PushKey<'_>, now: SystemTime) -> Vec<(&'static str, String)> {
        let mut headers: Vec<(&'static str, String)> = vec![
            ("date", httpdate::fmt_http_date(now)),
            ("content-type", "application/json".to_owned()),
            ("x-fc-invocation-type", self.invocation.as_str().to_owned()),
        ];
        if let Some(account_id) = &self.account_id {
            headers.push(("x-fc-account-id", account_id.clone()));
        }
        if self.invocation == InvocationType::Async {
            headers.push((
                "x-fc-stateful-async-invocation-id",
                stateful_invocation_id(key),
            ));
        }
        let path = self.path();
        let signed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let authorization = fcsign::authorization(
            &self.access_key_id,
            self.access_key_secret.expose(),
            &SignedParts {
                method: "POST",
                headers: &signed,
                path: &path,
                queries: &[],
            },
        );
        headers.push(("authorization", authorization));
        headers
    }
}

/// The async invocation id of a push: `ct_` and 64 hex digits of SHA-256 over the trigger name and the push's
/// delivery id (channel, block, event index, output). The same push always gets the same id (Function Compute then
/// runs it once); two events, two triggers, or two outputs of one filter never share one. It satisfies FC's rule
/// (letter or `_` first, then `[A-Za-z0-9_-]`, at most 128 characters).
pub fn stateful_invocation_id(key: &PushKey<'_>) -> String {
    let mut hash = Sha256::new();
    hash.update(key.trigger.as_bytes());
    hash.update(b"\n");
    hash.update(key.delivery_id().as_bytes());
    format!("ct_{}", hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcsign::verify;

    fn target(invocation: InvocationType, qualifier: Option<&str>) -> FcTarget {
        FcTarget {
            endpoint: Url::parse("http://127.0.0.1:9000").unwrap(),
            service: FcName::new("demo").unwrap(),
            function: FcName::new("hello").unwrap(),
            qualifier: qualifier.map(|q| FcQualifier::new(q).unwrap()),
            invocation,
            account_id: Some("1234567890123456".into()),
            access_key_id: "testAccessKeyId".into(),
            access_key_secret: Secret::new("testAccessKeySecret"),
        }
    }

    const KEY: PushKey<'static> = PushKey {
        trigger: "t1",
        channel: "mychannel",
        block: 3,
        event_index: 1,
        output: 0,
        envelope_id: "tx-3-abc",
    };

    #[test]
    fn paths_follow_the_sdks() {
        assert_eq!(
            target(InvocationType::Sync, None).url(),
            "http://127.0.0.1:9000/2016-08-15/services/demo/functions/hello/invocations"
        );
        assert_eq!(
            target(InvocationType::Sync, Some("LATEST")).path(),
            "/2016-08-15/services/demo.LATEST/functions/hello/invocations"
        );
    }

    #[test]
    fn sync_request_matches_spec_vector_v1_shape() {
        let mut sync = target(InvocationType::Sync, None);
        sync.account_id = None;
        let now = httpdate::parse_http_date("Mon, 02 Jan 2006 15:04:05 GMT").unwrap();
        let headers = sync.headers(&KEY, now);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("date"), Some("Mon, 02 Jan 2006 15:04:05 GMT"));
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(get("x-fc-invocation-type"), Some("Sync"));
        assert_eq!(get("x-fc-stateful-async-invocation-id"), None);
        // V1 of the spec signs the same request without the x-fc header; with it the string to sign gains
        // `x-fc-invocation-type:Sync\n`, which `verify` recomputes.
        let signed: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let parts = SignedParts {
            method: "POST",
            headers: &signed,
            path: &sync.path(),
            queries: &[],
        };
        assert_eq!(
            verify(
                get("authorization").unwrap(),
                "testAccessKeyId",
                "testAccessKeySecret",
                &parts
            ),
            Ok(())
        );
        assert_eq!(
            fcsign::string_to_sign(&parts),
            "POST\n\napplication/json\nMon, 02 Jan 2006 15:04:05 GMT\nx-fc-invocation-type:Sync\n/2016-08-15/services/demo/functions/hello/invocations"
        );
    }

    #[test]
    fn async_request_carries_a_deterministic_valid_invocation_id() {
        let now = SystemTime::now();
        let headers = target(InvocationType::Async, Some("LATEST")).headers(&KEY, now);
        let id = headers
            .iter()
            .find(|(k, _)| *k == "x-fc-stateful-async-invocation-id")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(id, stateful_invocation_id(&KEY));
        assert!(id.len() <= 128);
        assert!(id.starts_with("ct_"));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| *k == "x-fc-account-id" && v == "1234567890123456")
        );
        let other_trigger = PushKey {
            trigger: "t2",
            ..KEY
        };
        let other_output = PushKey { output: 1, ..KEY };
        let other_event = PushKey {
            event_index: 2,
            ..KEY
        };
        let other_block = PushKey { block: 4, ..KEY };
        let other_channel = PushKey {
            channel: "other",
            ..KEY
        };
        for other in [
            other_trigger,
            other_output,
            other_event,
            other_block,
            other_channel,
        ] {
            assert_ne!(stateful_invocation_id(&other), id);
        }
        assert_eq!(
            stateful_invocation_id(&KEY),
            stateful_invocation_id(&KEY.clone())
        );
        assert_eq!(KEY.delivery_id(), "mychannel/3/1/0");
    }
}
