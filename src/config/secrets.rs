//! Secrets: never written in the configuration file, always read from the environment or a file, and never
//! shown (`Debug` redacts them).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// Where a secret is read from: never the configuration file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `{ env = "NAME" }`: an environment variable of the daemon.
    Env(String),
    /// `{ file = "path" }`: a file's content without its trailing newline (relative to the configuration file).
    File(PathBuf),
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            env: Option<String>,
            file: Option<PathBuf>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"{ env = "VARIABLE" } or { file = "path" }"#)
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
                Err(E::custom(
                    r#"secrets are not written in the configuration file: use { env = "VARIABLE" } or { file = "path" }"#,
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretSource, A::Error> {
                let fields =
                    Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                match (fields.env, fields.file) {
                    (Some(name), None) if !name.is_empty() => Ok(SecretSource::Env(name)),
                    (None, Some(path)) if !path.as_os_str().is_empty() => {
                        Ok(SecretSource::File(path))
                    }
                    _ => Err(serde::de::Error::custom(
                        r#"expected exactly one of { env = "VARIABLE" } or { file = "path" }"#,
                    )),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl SecretSource {
    /// Reads the secret. An unset variable, an unreadable file or an empty secret is an error.
    pub fn read(&self) -> Result<Secret, String> {
        let value = match self {
            SecretSource::Env(name) => std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => format!("environment variable {name} is not set"),
                std::env::VarError::NotUnicode(_) => {
                    format!("environment variable {name} is not valid UTF-8")
                }
            })?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(format!("the secret in {self} is empty"));
        }
        Ok(Secret(value))
    }
}

/// A secret's value. Its `Debug` never shows it, so it cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value obtained elsewhere (tests, the runtime's generated keys).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What stands in for a redacted part of a URL: plain ASCII that needs no escaping in a URL or a log line.
pub const REDACTED: &str = "***";

/// A URL as it may be shown or logged: userinfo (`user:password@`) and every query value replaced by
/// [`REDACTED`], keys and the rest kept, so an operator still sees which endpoint and which parameters are meant.
/// Query strings carry secrets often enough (`?key=...&sig=...`, signed URLs) that none of their values is shown;
/// a GET push's payload (the `event` parameter) is hidden by the same rule.
pub fn redact_url(url: &reqwest::Url) -> String {
    redact_url_text(url.as_str())
}

/// [`redact_url`] for text that may not parse as a URL (a configuration value that was refused): the same parts
/// are found by their delimiters. Text without `?` or `@` comes back unchanged.
pub fn redact_url_text(text: &str) -> String {
    let (before_fragment, fragment) = match text.find('#') {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let (base, query) = match before_fragment.find('?') {
        Some(at) => (&before_fragment[..at], Some(&before_fragment[at + 1..])),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(text.len());
    // Userinfo sits between the scheme's `//` and the last `@` before the path.
    let authority_start = base.find("//").map_or(0, |at| at + 2);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    match base[authority_start..authority_end].rfind('@') {
        Some(at) => {
            out.push_str(&base[..authority_start]);
            out.push_str(REDACTED);
            out.push_str(&base[authority_start + at..]);
        }
        None => out.push_str(base),
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}={REDACTED}"),
                None if pair.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if !fragment.is_empty() {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}

/// The secrets of one target, to wipe from any text that came back from it or that describes a request to it
/// (an error chain naming the URL, a body echoing the request). Built once per target.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Every form a secret may take in text, longest first so a longer secret is never half-replaced by a
    /// shorter one it contains.
    needles: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} secrets)", self.needles.len())
    }
}

/// Query values and user names shorter than this are not wiped from free text: `?v=1` or `?src=ct` would otherwise mangle every
/// `1` or `ct` in a message. They are still hidden wherever the URL itself is shown ([`redact_url`]).
const MIN_SCRUBBED_QUERY_VALUE: usize = 4;

impl Scrubber {
    /// The secrets a URL carries: its userinfo and its query values, raw and percent-decoded.
    pub fn for_url(url: &reqwest::Url) -> Self {
        let mut scrubber = Scrubber::default();
        if url.username().chars().count() >= MIN_SCRUBBED_QUERY_VALUE {
            scrubber.add(url.username());
        }
        if let Some(password) = url.password() {
            scrubber.add(password);
        }
        for (_, value) in url.query_pairs() {
            if value.chars().count() >= MIN_SCRUBBED_QUERY_VALUE {
                scrubber.add(&value);
            }
        }
        if let Some(query) = url.query() {
            for pair in query.split('&') {
                if let Some((_, raw)) = pair.split_once('=')
                    && raw.chars().count() >= MIN_SCRUBBED_QUERY_VALUE
                {
                    scrubber.add(raw);
                }
            }
        }
        scrubber
    }

    /// Adds one secret (ignored when empty).
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() || self.needles.iter().any(|known| known == secret) {
            return;
        }
        self.needles.push(secret.to_owned());
        self.needles
            .sort_by_key(|needle| std::cmp::Reverse(needle.len()));
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = text.replace(needle.as_str(), REDACTED);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).expect("a valid URL")
    }

    #[test]
    fn urls_are_shown_without_query_values_or_userinfo() {
        assert_eq!(
            redact_url(&url("https://hooks.example.com/x?key=secret&sig=abc%2Fdef")),
            "https://hooks.example.com/x?key=***&sig=***"
        );
        assert_eq!(
            redact_url(&url(
                "https://ops:pa55@hooks.example.com:8443/x/y?flag#frag"
            )),
            "https://***@hooks.example.com:8443/x/y?***#***"
        );
        assert_eq!(
            redact_url(&url("http://127.0.0.1:9/hook")),
            "http://127.0.0.1:9/hook",
            "nothing to hide"
        );
        assert_eq!(redact_url_text("not a url"), "not a url");
        assert_eq!(
            redact_url_text("ftp://u:p@x/a?token=t0k&&b="),
            "ftp://***@x/a?token=***&&b=***"
        );
        assert_eq!(
            redact_url_text("//user@host?x=1"),
            "//***@host?x=***",
            "a relative URL still loses its secrets"
        );
        assert_eq!(
            redact_url_text("host/path@v2?q=1"),
            "host/path@v2?q=***",
            "an @ in the path is not userinfo"
        );
    }

    #[test]
    fn a_scrubber_wipes_every_form_of_a_urls_secrets() {
        let scrubber = Scrubber::for_url(&url(
            "https://admin:pa55word@h.example/x?key=s3cret%2Bvalue&src=ct&n=1",
        ));
        let echoed = "404: no route for /x?key=s3cret%2Bvalue (key s3cret+value), user admin, pa55word; src ct n 1";
        assert_eq!(
            scrubber.scrub(echoed),
            "404: no route for /x?key=*** (key ***), user ***, ***; src ct n 1",
            "short values stay: wiping them would mangle the text"
        );
        let mut scrubber = Scrubber::default();
        scrubber.add("abc");
        scrubber.add("abcdef");
        assert_eq!(
            scrubber.scrub("xabcdefx abc"),
            "x***x ***",
            "the longer secret first"
        );
        assert_eq!(format!("{scrubber:?}"), "Scrubber(2 secrets)");
    }
}
