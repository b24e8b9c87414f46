//! The admin API's TLS files (`[admin] tls_certificate`, `tls_key`): read and checked when the configuration's
//! environment is checked, each problem naming its file, and turned into the rustls configuration the API serves
//! with. `check-config` and `serve` go through the same function, so a pair of files `check-config` accepts is
//! exactly what the daemon serves.
//!
//! Checked: the certificate file holds one or more X.509 certificates (the server's first), the server
//! certificate is inside its validity period, the key file holds a private key rustls can use, and the key is the
//! certificate's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::der::Decode;

/// Which of the two files a problem is in, so the configuration check can point at its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `tls_certificate`.
    Certificate,
    /// `tls_key`.
    Key,
}

impl TlsFile {
    /// The configuration key naming the file.
    pub fn field(self) -> &'static str {
        match self {
            TlsFile::Certificate => "admin.tls_certificate",
            TlsFile::Key => "admin.tls_key",
        }
    }
}

/// Why the TLS files cannot be served with; every message names the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum TlsFilesError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        file: TlsFile,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: expected PEM CERTIFICATE blocks (the server certificate first, then its intermediates), found {found}",
        path.display()
    )]
    NoCertificate { path: PathBuf, found: Found },
    #[error("{}: certificate #{index} is not a valid X.509 certificate ({reason})", path.display())]
    BadCertificate {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error(
        "{}: the server certificate is not valid now (valid from {} to {}); clients would refuse it",
        path.display(), rfc3339(*not_before), rfc3339(*not_after)
    )]
    OutsideValidity {
        path: PathBuf,
        not_before: SystemTime,
        not_after: SystemTime,
    },
    #[error("{}: expected a PEM private key (PKCS#8, PKCS#1 or SEC1), found {found}", path.display())]
    NoKey { path: PathBuf, found: Found },
    #[error(
        "{}: this key cannot serve the certificate in {}: {reason}",
        key.display(), certificate.display()
    )]
    Mismatch {
        key: PathBuf,
        certificate: PathBuf,
        reason: String,
    },
}

impl TlsFilesError {
    /// The file the problem is in.
    pub fn file(&self) -> TlsFile {
        match self {
            TlsFilesError::Read { file, .. } => *file,
            TlsFilesError::NoCertificate { .. }
            | TlsFilesError::BadCertificate { .. }
            | TlsFilesError::OutsideValidity { .. } => TlsFile::Certificate,
            TlsFilesError::NoKey { .. } | TlsFilesError::Mismatch { .. } => TlsFile::Key,
        }
    }
}

/// What a file held instead of what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing at all.
    Empty,
    /// PEM, but not of the expected kind (a key where a certificate was expected, or the reverse).
    OtherPem,
    /// Not PEM (DER, or the wrong file).
    NotPem,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Found::Empty => "an empty file",
            Found::OtherPem => "PEM blocks of other kinds",
            Found::NotPem => "no PEM at all",
        })
    }
}

fn found(bytes: &[u8]) -> Found {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Found::Empty
    } else if std::str::from_utf8(bytes).is_ok_and(|text| text.contains("-----BEGIN ")) {
        Found::OtherPem
    } else {
        Found::NotPem
    }
}

fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Reads and checks the certificate chain and key, and returns the configuration the admin API serves HTTPS
/// with (HTTP/1.1 only, by ALPN). `now` is when the certificate must be valid.
pub fn server_config(
    certificate: &Path,
    key: &Path,
    now: SystemTime,
) -> Result<Arc<rustls::ServerConfig>, TlsFilesError> {
    let chain = read_chain(certificate, now)?;
    let key_der = read_key(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mismatch = |error: rustls::Error| TlsFilesError::Mismatch {
        key: key.to_owned(),
        certificate: certificate.to_owned(),
        reason: error.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path, file: TlsFile) -> Result<Vec<u8>, TlsFilesError> {
    std::fs::read(path).map_err(|source| TlsFilesError::Read {
        file,
        path: path.to_owned(),
        source,
    })
}

fn read_chain(path: &Path, now: SystemTime) -> Result<Vec<CertificateDer<'static>>, TlsFilesError> {
    let bytes = read(path, TlsFile::Certificate)?;
    let mut chain = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let bad = |reason: String| TlsFilesError::BadCertificate {
            path: path.to_owned(),
            index: index + 1,
            reason,
        };
        let der = item.map_err(|error| bad(describe_pem_error(&error)))?;
        let parsed = x509_cert::Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
        if chain.is_empty() {
            let validity = parsed.tbs_certificate().validity();
            let not_before = validity.not_before.to_system_time();
            let not_after = validity.not_after.to_system_time();
            if now < not_before || now > not_after {
                return Err(TlsFilesError::OutsideValidity {
                    path: path.to_owned(),
                    not_before,
                    not_after,
                });
            }
        }
        chain.push(der);
    }
    if chain.is_empty() {
        return Err(TlsFilesError::NoCertificate {
            path: path.to_owned(),
            found: found(&bytes),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFilesError> {
    let bytes = read(path, TlsFile::Key)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| TlsFilesError::NoKey {
        path: path.to_owned(),
        found: match error {
            pem::Error::NoItemsFound => found(&bytes),
            _ => Found::NotPem,
        },
    })
}

fn describe_pem_error(error: &pem::Error) -> String {
    match error {
        pem::Error::NoItemsFound => "no such PEM block".to_owned(),
        other => format!("malformed PEM: {other:?}"),
    }
}

impl super::Config {
    /// The admin API's TLS configuration: `None` when `[admin]` names no TLS files, an error naming the file and
    /// the key when they cannot be served with. The daemon calls it at start; [`super::Config::check_environment`]
    /// reports the same problems.
    pub fn admin_tls_config(
        &self,
    ) -> Result<Option<Arc<rustls::ServerConfig>>, super::ConfigError> {
        self.admin_tls(SystemTime::now())
            .map_err(|problem| super::ConfigError::Invalid(vec![problem]))
    }

    pub(super) fn admin_tls(
        &self,
        now: SystemTime,
    ) -> Result<Option<Arc<rustls::ServerConfig>>, super::Problem> {
        let Some((certificate, key)) = self.admin.tls() else {
            return Ok(None);
        };
        server_config(certificate.get_ref(), key.get_ref(), now)
            .map(Some)
            .map_err(|error| {
                let span = match error.file() {
                    TlsFile::Certificate => certificate.span(),
                    TlsFile::Key => key.span(),
                };
                self.source
                    .problem(Some(span), error.file().field(), error.to_string())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peersim::pki::TestCa;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Files {
                dir: tempfile::tempdir().expect("a temporary folder"),
            }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write a test file");
            path
        }
    }

    fn issued() -> (TestCa, crate::peersim::pki::IssuedCertificate) {
        crate::install_crypto_provider();
        let ca = TestCa::new("admin test CA", "chaintrigger").expect("a CA");
        let leaf = ca
            .issue("admin", &["127.0.0.1", "localhost"])
            .expect("a certificate");
        (ca, leaf)
    }

    #[test]
    fn a_certificate_chain_and_its_key_give_an_http1_server_configuration() {
        let (ca, leaf) = issued();
        let files = Files::new();
        let chain = files.write("chain.pem", &format!("{}{}", leaf.cert_pem, ca.cert_pem()));
        let key = files.write("key.pem", &leaf.key_pem);
        let config = server_config(&chain, &key, SystemTime::now()).expect("served");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn each_bad_file_is_named_with_what_was_expected() {
        let (_, leaf) = issued();
        let (_, other) = issued();
        let files = Files::new();
        let cert = files.write("cert.pem", &leaf.cert_pem);
        let key = files.write("key.pem", &leaf.key_pem);
        let now = SystemTime::now();

        let error = server_config(&files.dir.path().join("nope.pem"), &key, now).unwrap_err();
        assert_eq!(error.file(), TlsFile::Certificate);
        assert!(error.to_string().starts_with("cannot read "), "{error}");

        let empty = files.write("empty.pem", "\n");
        let error = server_config(&empty, &key, now).unwrap_err();
        assert!(error.to_string().contains("found an empty file"), "{error}");

        let error = server_config(&key, &key, now).unwrap_err();
        assert_eq!(error.file(), TlsFile::Certificate);
        assert!(
            error
                .to_string()
                .contains("found PEM blocks of other kinds"),
            "{error}"
        );

        let error = server_config(&cert, &cert, now).unwrap_err();
        assert_eq!(error.file(), TlsFile::Key);
        assert!(
            error.to_string().contains("expected a PEM private key")
                && error.to_string().contains("cert.pem"),
            "{error}"
        );

        let garbage = files.write(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        );
        let error = server_config(&garbage, &key, now).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("certificate #1 is not a valid X.509 certificate"),
            "{error}"
        );

        let other_key = files.write("other-key.pem", &other.key_pem);
        let error = server_config(&cert, &other_key, now).unwrap_err();
        assert_eq!(error.file(), TlsFile::Key);
        assert!(
            error
                .to_string()
                .contains("this key cannot serve the certificate in"),
            "{error}"
        );
    }

    #[test]
    fn a_certificate_outside_its_validity_is_refused() {
        let (_, leaf) = issued();
        let files = Files::new();
        let cert = files.write("cert.pem", &leaf.cert_pem);
        let key = files.write("key.pem", &leaf.key_pem);
        // rcgen's certificates are valid from 1975: 1970 is before that.
        let error = server_config(&cert, &key, SystemTime::UNIX_EPOCH).unwrap_err();
        assert_eq!(error.file(), TlsFile::Certificate);
        assert!(
            error.to_string().contains("is not valid now (valid from"),
            "{error}"
        );
    }
}
