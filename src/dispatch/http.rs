//! HTTP targets: `POST` sends the payload as a JSON body; `GET` sends it URL-encoded in the `event` query
//! parameter (other query parameters of the configured URL are kept). Authentication is none, basic or bearer.

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{HttpMethod, Secret};

/// The query parameter that carries the payload of a GET push.
pub const GET_PAYLOAD_PARAMETER: &str = "event";

/// An HTTP endpoint, ready to push to (secrets read, headers parsed).
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// Where events go.
    pub url: Url,
    /// POST (JSON body) or GET (payload in the `event` query parameter).
    pub method: HttpMethod,
    /// The `Authorization` to send.
    pub auth: HttpAuth,
    /// Extra headers from the configuration.
    pub headers: HeaderMap,
}

/// Authentication with its secret read.
#[derive(Debug, Clone)]
pub enum HttpAuth {
    /// No `Authorization` header.
    None,
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: Secret },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

impl HttpTarget {
    /// The URL of a push: the configured URL, plus `event=<payload JSON>` for GET.
    pub fn request_url(&self, body: &str) -> Url {
        let mut url = self.url.clone();
        if self.method == HttpMethod::Get {
            url.query_pairs_mut()
                .append_pair(GET_PAYLOAD_PARAMETER, body);
        }
        url
    }
}

/// Parses configured headers (already checked at configuration load).
pub fn parse_headers<'a>(
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header `{name}` is not valid"))?;
        map.insert(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: HttpMethod, url: &str) -> HttpTarget {
        HttpTarget {
            url: Url::parse(url).unwrap(),
            method,
            auth: HttpAuth::None,
            headers: HeaderMap::new(),
        }
    }

    #[test]
    fn get_puts_the_payload_in_the_event_parameter_and_keeps_the_query() {
        let body = r#"{"a":"b c&d=e","n":[1,2]}"#;
        let url = target(HttpMethod::Get, "http://h.example/hook?src=ct").request_url(body);
        assert_eq!(
            url.as_str(),
            "http://h.example/hook?src=ct&event=%7B%22a%22%3A%22b+c%26d%3De%22%2C%22n%22%3A%5B1%2C2%5D%7D"
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![
                ("src".to_owned(), "ct".to_owned()),
                ("event".to_owned(), body.to_owned())
            ]
        );
    }

    #[test]
    fn post_keeps_the_url() {
        let url = target(HttpMethod::Post, "http://h.example/hook?src=ct").request_url("{}");
        assert_eq!(url.as_str(), "http://h.example/hook?src=ct");
    }

    #[test]
    fn headers_are_parsed() {
        let name = "X-Source".to_owned();
        let value = "chaintrigger".to_owned();
        let map = parse_headers([(&name, &value)]).unwrap();
        assert_eq!(map["x-source"], "chaintrigger");
        let bad = "a b".to_owned();
        assert!(parse_headers([(&bad, &value)]).is_err());
    }
}
