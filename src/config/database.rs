//! The `database` setting: where trigger progress is kept. A path is a SQLite file (the default, embedded); a
//! `postgres://` URL (or a table with `url`, `password`, `tls_ca` and `lease_ttl`) is a PostgreSQL server.
//!
//! Invariant: a [`Database::Postgres`] URL never carries a password (refused as it is read), so the URL can be shown
//! and logged as it is; the password comes from a [`SecretSource`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::secrets::SecretSource;

/// Where trigger positions, states and dead letters are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (relative to the configuration file).
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres(PostgresDatabase),
}

/// A PostgreSQL server to keep trigger progress in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresDatabase {
    /// `postgres://user@host:port/database?sslmode=...`, checked to parse and to carry no password.
    pub url: PostgresUrl,
    /// The password, from the environment or a file; `None` for servers that need none (peer, cert, trust).
    pub password: Option<SecretSource>,
    /// PEM file of the certificate authorities the server's certificate must chain to (relative to the
    /// configuration file); without it the platform's trusted roots. Certificates are always verified.
    pub tls_ca: Option<PathBuf>,
    /// How long a daemon's claim on a channel lasts without renewal (renewed about every third of it): the bound
    /// on how long a channel waits for a new owner after its owner dies, and how long a paused owner may still
    /// write. See [`LeaseTtl`].
    pub lease_ttl: LeaseTtl,
}

/// The lease time of a channel on a shared database (parse, don't validate): between [`LeaseTtl::MIN`] and
/// [`LeaseTtl::MAX`], [`LeaseTtl::DEFAULT`] when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTtl(std::time::Duration);

impl LeaseTtl {
    /// 10 s: a dead owner's channels move within about that long, and renewals (every ~3 s) cost nothing.
    pub const DEFAULT: LeaseTtl = LeaseTtl(std::time::Duration::from_secs(10));
    /// Shorter leases would expire under an ordinary database hiccup or a busy machine's scheduling delays.
    pub const MIN: std::time::Duration = std::time::Duration::from_secs(1);
    /// Longer leases leave a dead owner's channels silent for longer than any operator would wait.
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(3600);

    /// Checks a configured value against the bounds.
    pub fn new(ttl: std::time::Duration) -> Result<LeaseTtl, String> {
        if ttl < Self::MIN || ttl > Self::MAX {
            return Err(format!(
                "lease_ttl: expected a duration from {} to {}, found {}",
                super::HumanDuration(Self::MIN),
                super::HumanDuration(Self::MAX),
                super::HumanDuration(ttl)
            ));
        }
        Ok(LeaseTtl(ttl))
    }

    /// The duration.
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl Default for LeaseTtl {
    fn default() -> Self {
        LeaseTtl::DEFAULT
    }
}

/// A PostgreSQL URL without a password (parse, don't validate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Checks `text`: a `postgres://` or `postgresql://` URL that the client reads, without a password.
    pub fn new(text: &str) -> Result<PostgresUrl, String> {
        if !is_postgres_url(text) {
            return Err(format!(
                "expected a postgres:// URL, found `{}`",
                super::redact_url_text(text)
            ));
        }
        let parsed = text.parse::<tokio_postgres::Config>().map_err(|e| {
            format!(
                "`{}` is not a PostgreSQL URL: {}",
                super::redact_url_text(text),
                postgres_error_text(&e)
            )
        })?;
        if parsed.get_password().is_some() {
            return Err(format!(
                r#"`{}` carries a password: passwords are not written in the configuration file; remove it and use `database = {{ url = "...", password = {{ env = "VARIABLE" }} }}` (or `{{ file = "path" }}`)"#,
                super::redact_url_text(text)
            ));
        }
        Ok(PostgresUrl(text.to_owned()))
    }

    /// The URL as written (it holds no secret).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A PostgreSQL client error as one line: the client's words for it and every cause (the server's message with its
/// SQLSTATE, the operating system's), which the client's own `Display` leaves out.
pub fn postgres_error_text(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    if let Some(db) = error.as_db_error() {
        text.push_str(&format!(
            ": {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        ));
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        return text;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// Whether a `database` value names a PostgreSQL server rather than a file.
fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

impl Database {
    /// The SQLite file's folder (created at start); `None` for PostgreSQL.
    pub fn parent(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => path.parent(),
            Database::Postgres(_) => None,
        }
    }

    /// The SQLite file, if the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }

    /// The database as an operator reads it: the file, or the URL (which holds no password).
    pub fn display(&self) -> impl fmt::Display + '_ {
        self
    }

    /// The files it names, to anchor relative ones to the configuration file's folder.
    pub(super) fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Database::Sqlite(path) => vec![path],
            Database::Postgres(postgres) => {
                let mut paths: Vec<&mut PathBuf> = postgres.tls_ca.iter_mut().collect();
                if let Some(SecretSource::File(path)) = &mut postgres.password {
                    paths.push(path);
                }
                paths
            }
        }
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(postgres) => write!(f, "{}", postgres.url),
        }
    }
}

impl PartialEq<Path> for Database {
    fn eq(&self, other: &Path) -> bool {
        self.sqlite_path() == Some(other)
    }
}

impl PartialEq<PathBuf> for Database {
    fn eq(&self, other: &PathBuf) -> bool {
        self.sqlite_path() == Some(other.as_path())
    }
}

impl<'de> Deserialize<'de> for Database {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            url: String,
            #[serde(default)]
            password: Option<SecretSource>,
            #[serde(default)]
            tls_ca: Option<PathBuf>,
            #[serde(default)]
            lease_ttl: Option<super::HumanDuration>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Database;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#"a SQLite file path, a postgres:// URL, or { url = "postgres://...", password = { env = "VARIABLE" }, tls_ca = "ca.pem", lease_ttl = "10s" }"#,
                )
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Database, E> {
                if text.is_empty() {
                    return Err(E::custom(
                        "expected a SQLite file path or a postgres:// URL, found an empty string",
                    ));
                }
                if is_postgres_url(text) {
                    let url = PostgresUrl::new(text).map_err(E::custom)?;
                    return Ok(Database::Postgres(PostgresDatabase {
                        url,
                        password: None,
                        tls_ca: None,
                        lease_ttl: LeaseTtl::DEFAULT,
                    }));
                }
                if text.contains("://") {
                    return Err(E::custom(format!(
                        "`{}`: only SQLite file paths and postgres:// URLs are supported",
                        super::redact_url_text(text)
                    )));
                }
                Ok(Database::Sqlite(PathBuf::from(text)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Database, A::Error> {
                let table = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let url = PostgresUrl::new(&table.url).map_err(serde::de::Error::custom)?;
                if table
                    .tls_ca
                    .as_ref()
                    .is_some_and(|p| p.as_os_str().is_empty())
                {
                    return Err(serde::de::Error::custom(
                        "tls_ca: expected a PEM file path, found an empty string",
                    ));
                }
                let lease_ttl = table
                    .lease_ttl
                    .map(|ttl| LeaseTtl::new(ttl.0))
                    .transpose()
                    .map_err(serde::de::Error::custom)?
                    .unwrap_or_default();
                Ok(Database::Postgres(PostgresDatabase {
                    url,
                    password: table.password,
                    tls_ca: table.tls_ca,
                    lease_ttl,
                }))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        database: Database,
    }

    /// The value, or the error's message (without the TOML excerpt the parser adds).
    fn read(text: &str) -> Result<Database, String> {
        toml::from_str::<Doc>(text)
            .map(|doc| doc.database)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn the_lease_time_defaults_to_ten_seconds_and_is_bounded() {
        let Database::Postgres(pg) = read(r#"database = "postgres://ct@db/ct""#).unwrap() else {
            panic!("a postgres URL");
        };
        assert_eq!(pg.lease_ttl.get(), std::time::Duration::from_secs(10));
        let Database::Postgres(pg) =
            read(r#"database = { url = "postgres://ct@db/ct", lease_ttl = "2s" }"#).unwrap()
        else {
            panic!("a postgres URL");
        };
        assert_eq!(pg.lease_ttl.get(), std::time::Duration::from_secs(2));
        for (value, expected) in [
            ("500ms", "from 1s to 3600s, found 500ms"),
            ("2h", "from 1s to 3600s, found 7200s"),
            ("soon", "invalid duration `soon`"),
        ] {
            let error = read(&format!(
                r#"database = {{ url = "postgres://ct@db/ct", lease_ttl = "{value}" }}"#
            ))
            .unwrap_err();
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn a_path_is_sqlite_and_a_url_is_postgres() {
        assert_eq!(
            read(r#"database = "state/ct.db""#).unwrap(),
            Database::Sqlite("state/ct.db".into())
        );
        let Database::Postgres(pg) =
            read(r#"database = "postgres://ct@db.example.com:5433/ct?sslmode=require""#).unwrap()
        else {
            panic!("a postgres URL");
        };
        assert_eq!(
            pg.url.as_str(),
            "postgres://ct@db.example.com:5433/ct?sslmode=require"
        );
        assert_eq!((pg.password, pg.tls_ca), (None, None));
        let Database::Postgres(pg) = read(
            r#"database = { url = "postgresql://ct@db/ct", password = { env = "PGPASS" }, tls_ca = "pg-ca.pem" }"#,
        )
        .unwrap() else {
            panic!("a postgres table");
        };
        assert_eq!(pg.password, Some(SecretSource::Env("PGPASS".into())));
        assert_eq!(pg.tls_ca, Some("pg-ca.pem".into()));
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_shown() {
        for text in [
            r#"database = "postgres://ct:hunter2secret@db/ct""#,
            r#"database = { url = "postgres://ct:hunter2secret@db/ct" }"#,
            r#"database = "postgres://ct@db/ct?password=hunter2secret""#,
        ] {
            let error = read(text).unwrap_err();
            assert!(!error.contains("hunter2secret"), "{error}");
            assert!(error.contains("password"), "{error}");
            // As `check-config` and `serve` report it: located, and without the secret.
            let file = format!("instance_id = \"a\"\n{text}\n[admin]\ntoken = {{ env = \"T\" }}\n");
            let problems = crate::config::Config::parse(&file, Path::new("/etc/ct/test.toml"))
                .expect_err("refused")
                .problems()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with("/etc/ct/test.toml:2:"),
                "{problems:?}"
            );
            assert!(problems[0].contains("database"), "{problems:?}");
            assert!(!problems[0].contains("hunter2secret"), "{problems:?}");
        }
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let error =
            read(r#"database = { url = "postgres://ct@db/ct", password = "inline" }"#).unwrap_err();
        assert!(
            error.contains("secrets are not written in the configuration file"),
            "{error}"
        );
        let error = read(r#"database = { url = "postgres://ct@db/ct", pool = 3 }"#).unwrap_err();
        assert!(error.contains("unknown field `pool`"), "{error}");
        let error = read(r#"database = { url = "/var/lib/ct.db" }"#).unwrap_err();
        assert!(error.contains("expected a postgres:// URL"), "{error}");
        let error = read(r#"database = "mysql://ct@db/ct""#).unwrap_err();
        assert!(
            error.contains("only SQLite file paths and postgres:// URLs"),
            "{error}"
        );
        let error = read(r#"database = "postgres://ct@db/ct?sslmode=sometimes""#).unwrap_err();
        assert!(error.contains("is not a PostgreSQL URL"), "{error}");
        let error = read(r#"database = """#).unwrap_err();
        assert!(error.contains("empty"), "{error}");
    }
}
