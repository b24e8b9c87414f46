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
