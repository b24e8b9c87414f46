//! TLS material for the Deliver client, checked when it is loaded: tonic silently skips a CA certificate it
//! cannot parse and reports a bad client key only at the first RPC, so both are validated here with errors that
//! name the file.
//!
//! [`diagnose`] tells why a peer refuses TLS sessions. Through HTTP/2 that is a race: a peer that rejects the
//! client (no client certificate where one is required, an unknown one) sends its alert and closes right after the
//! handshake, while the HTTP/2 client is already writing, so the failure often surfaces as a broken pipe or a closed
//! connection, which looks transient. A plain handshake that then only reads receives the alert every time.

use std::io::Read as _;
use std::net::ToSocketAddrs as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::fabric::identity::tls_cert_hash;

/// Errors loading TLS files; each names the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{source_name}: expected one or more PEM CERTIFICATE blocks, found {found}")]
    NoCertificate { source_name: String, found: String },
    #[error("{source_name}: certificate #{index} is not a valid X.509 certificate ({reason})")]
    BadCertificate {
        source_name: String,
        index: usize,
        reason: String,
    },
    #[error("{source_name}: expected a PEM private key (PKCS#8, SEC1 or PKCS#1), found {found}")]
    NoPrivateKey { source_name: String, found: String },
}

/// The CA certificates a peer's TLS certificate must chain to (PEM, one or more certificates).
#[derive(Debug, Clone)]
pub struct TlsCa {
    /// The PEM text as given; every certificate in it was checked to parse.
    pem: Bytes,
}

impl TlsCa {
    /// Reads and checks a CA file.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let pem = read(path, "TLS CA file")?;
        Self::from_pem(pem, &path.display().to_string())
    }

    /// Checks that `pem` holds at least one certificate and that each of them parses.
    pub fn from_pem(pem: impl Into<Bytes>, source_name: &str) -> Result<Self, TlsError> {
        let pem = pem.into();
        parse_certificates(&pem, source_name)?;
        Ok(TlsCa { pem })
    }

    /// The CA certificate(s) as PEM.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

/// A client certificate and key for mutual TLS.
#[derive(Clone)]
pub struct ClientCertificate {
    /// The certificate chain in PEM, handed to rustls.
    cert_pem: Bytes,
    /// The private key in PEM, handed to rustls (never printed).
    key_pem: Bytes,
    /// SHA-256 of the leaf certificate's DER: the peer requires it as the request's `tls_cert_hash`.
    cert_hash: [u8; 32],
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("cert_hash", &hex::encode(self.cert_hash))
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads and checks a client certificate and its key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert = read(cert_path, "TLS client certificate")?;
        let key = read(key_path, "TLS client key")?;
        Self::from_pem(
            cert,
            &cert_path.display().to_string(),
            key,
            &key_path.display().to_string(),
        )
    }

    /// Checks PEM text; `cert_source` and `key_source` name the inputs in errors.
    pub fn from_pem(
        cert_pem: impl Into<Bytes>,
        cert_source: &str,
        key_pem: impl Into<Bytes>,
        key_source: &str,
    ) -> Result<Self, TlsError> {
        let cert_pem = cert_pem.into();
        let key_pem = key_pem.into();
        let certificates = parse_certificates(&cert_pem, cert_source)?;
        let leaf = certificates
            .first()
            .expect("parse_certificates returns at least one certificate");
        let cert_hash = tls_cert_hash(leaf);
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoPrivateKey {
            source_name: key_source.to_owned(),
            found: describe_pem_error(&e),
        })?;
        Ok(ClientCertificate {
            cert_pem,
            key_pem,
            cert_hash,
        })
    }

    /// SHA-256 of the client certificate's DER (the request's `tls_cert_hash`).
    pub fn cert_hash(&self) -> [u8; 32] {
        self.cert_hash
    }
}

/// How the client talks TLS to the channel's peers.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// Verifies the peers' server certificates.
    pub ca: TlsCa,
    /// Present for mutual TLS.
    pub client_certificate: Option<ClientCertificate>,
}

impl ClientTls {
    /// The tonic TLS configuration for one peer; `server_name` overrides the name checked in its certificate.
    pub(super) fn tonic_config(&self, server_name: Option<&str>) -> ClientTlsConfig {
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.ca.pem()));
        if let Some(name) = server_name {
            config = config.domain_name(name);
        }
        if let Some(client) = &self.client_certificate {
            config = config.identity(tonic::transport::Identity::from_pem(
                &client.cert_pem,
                &client.key_pem,
            ));
        }
        config
    }
}

/// Makes one TLS session with the peer at `address` as the Deliver client would (its CA, client certificate,
/// server name, ALPN `h2`) and reads its first bytes: the TLS error if the session is refused (e.g.
/// `received fatal alert: CertificateRequired`, `invalid peer certificate: UnknownIssuer`), `None` when the peer
/// accepts it or cannot be reached at all. Blocking, bounded by `timeout` per step: run it off the async runtime.
pub(super) fn diagnose(
    address: &str,
    server_name: Option<&str>,
    tls: &ClientTls,
    timeout: Duration,
) -> Option<String> {
    let uri: tonic::codegen::http::Uri = if address.contains("://") {
        address.parse().ok()?
    } else {
        format!("https://{address}").parse().ok()?
    };
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let name =
        rustls::pki_types::ServerName::try_from(server_name.unwrap_or(host).to_owned()).ok()?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(tls.ca.pem()) {
        roots.add(certificate.ok()?).ok()?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match &tls.client_certificate {
        Some(client) => {
            let chain = CertificateDer::pem_slice_iter(&client.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            let key = PrivateKeyDer::from_pem_slice(&client.key_pem).ok()?;
            builder.with_client_auth_cert(chain, key).ok()?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let mut session = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let target = (host, port).to_socket_addrs().ok()?.next()?;
    let mut socket = std::net::TcpStream::connect_timeout(&target, timeout).ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    socket.set_write_timeout(Some(timeout)).ok()?;
    let mut first = [0u8; 1];
    match rustls::Stream::new(&mut session, &mut socket).read_exact(&mut first) {
        Ok(()) => None,
        Err(error) => error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
    }
}

fn read(path: &Path, what: &'static str) -> Result<Bytes, TlsError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|source| TlsError::Read {
            what,
            path: path.display().to_string(),
            source,
        })
}

fn parse_certificates(
    pem: &[u8],
    source_name: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut certificates = Vec::new();
    for (index, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let der = item.map_err(|e| TlsError::BadCertificate {
            source_name: source_name.to_owned(),
            index: index + 1,
            reason: describe_pem_error(&e),
        })?;
        use x509_cert::der::Decode;
        x509_cert::Certificate::from_der(&der).map_err(|e| TlsError::BadCertificate {
            source_name: source_name.to_owned(),
            index: index + 1,
            reason: e.to_string(),
        })?;
        certificates.push(der);
    }
    if certificates.is_empty() {
        let found = if pem.is_empty() {
            "an empty file".to_owned()
        } else if std::str::from_utf8(pem).is_ok_and(|text| text.contains("-----BEGIN")) {
            "PEM blocks of other kinds".to_owned()
        } else {
            "no PEM at all".to_owned()
        };
        return Err(TlsError::NoCertificate {
            source_name: source_name.to_owned(),
            found,
        });
    }
    Ok(certificates)
}

fn describe_pem_error(error: &rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::NoItemsFound => "no such PEM block".to_owned(),
        other => format!("malformed PEM ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_are_named() {
        let err = TlsCa::from_pem(&b""[..], "ca.pem").expect_err("empty");
        assert_eq!(
            err.to_string(),
            "ca.pem: expected one or more PEM CERTIFICATE blocks, found an empty file"
        );
        let err = TlsCa::from_pem(&b"hello"[..], "ca.pem").expect_err("not PEM");
        assert!(err.to_string().contains("found no PEM at all"), "{err}");
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = TlsCa::from_pem(&garbage[..], "ca.pem").expect_err("not X.509");
        assert!(
            err.to_string()
                .starts_with("ca.pem: certificate #1 is not a valid X.509"),
            "{err}"
        );
    }
}
