//! The client identity that signs Deliver requests: an MSP signing certificate, its P-256 private key and the
//! MSP id, plus the signed `SeekInfo` envelope a peer's Deliver service expects.
//!
//! Fabric checks every request's signature (ECDSA P-256 over SHA-256, ASN.1 DER) and rejects high-S
//! signatures, so [`Identity::sign`] always normalises S. Building the envelope is pure
//! ([`seek_envelope`] takes the timestamp and nonce); [`Identity::seek_envelope_now`] draws them.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::scalar::IsHigh;
use p256::pkcs8::DecodePrivateKey;
use prost::Message;
use rustls::pki_types::pem::SectionKind;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

use crate::fabric::proto::{common, msp, orderer};

/// OID of `id-ecPublicKey` (RFC 5480).
const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
/// OID of the P-256 curve (`prime256v1` / `secp256r1`).
const P256_CURVE_OID: &str = "1.2.840.10045.3.1.7";
/// OID of `ecdsa-with-SHA256`, the only certificate signature algorithm [`verify_issued_by`] accepts.
const ECDSA_WITH_SHA256_OID: &str = "1.2.840.10045.4.3.2";
/// Length of the random nonce in a signature header, as Fabric's SDKs use.
pub const NONCE_LEN: usize = 24;

/// Errors loading an identity or checking a signature. Every message names the file (or input) it is about
/// and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{source_name}: expected a PEM {expected} block, but the file is not PEM ({reason})")]
    NotPem {
        source_name: String,
        expected: &'static str,
        reason: String,
    },
    #[error("{source_name}: expected a PEM {expected} block, found `{found}`{hint}")]
    WrongPemLabel {
        source_name: String,
        expected: &'static str,
        found: String,
        hint: &'static str,
    },
    #[error("{source_name}: not an X.509 certificate ({reason})")]
    NotCertificate { source_name: String, reason: String },
    #[error("{source_name}: expected an ECDSA P-256 {what}, found {found}")]
    NotP256 {
        source_name: String,
        what: &'static str,
        found: String,
    },
    #[error("{key_source}: this private key does not belong to the certificate {cert_source}")]
    KeyMismatch {
        key_source: String,
        cert_source: String,
    },
    #[error("the MSP id must not be empty")]
    EmptyMspId,
    #[error("signature is not a valid DER ECDSA signature ({0})")]
    MalformedSignature(String),
    #[error("signature has a high S value; Fabric accepts only low-S signatures")]
    HighS,
    #[error("signature does not verify with the certificate's public key")]
    BadSignature,
    #[error("certificate is not issued by {ca_source}: {reason}")]
    NotIssuedBy { ca_source: String, reason: String },
}

/// An MSP identifier such as `Org1MSP`: never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MspId(String);

impl MspId {
    /// Checks that the id is not blank.
    pub fn new(id: impl Into<String>) -> Result<Self, IdentityError> {
        let id = id.into();
        if id.trim().is_empty() {
            return Err(IdentityError::EmptyMspId);
        }
        Ok(MspId(id))
    }

    /// The id as written in `SerializedIdentity.mspid`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MspId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed X.509 certificate with its P-256 public key: what a signature is checked against.
#[derive(Clone)]
pub struct CertificateKey {
    /// The DER bytes: hashed for `tls_cert_hash`, and compared when a peer checks an issuer.
    der: Vec<u8>,
    /// Parsed once so that the subject and issuer can be read without re-parsing.
    certificate: Certificate,
    /// The certificate's public key, which verifies signatures made by its owner.
    public_key: VerifyingKey,
}

impl fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateKey")
            .field(
                "subject",
                &self.certificate.tbs_certificate().subject().to_string(),
            )
            .finish()
    }
}

impl CertificateKey {
    /// Parses the first certificate of a PEM file. `source_name` names the input in errors (usually its path).
    pub fn from_pem(pem: &[u8], source_name: &str) -> Result<Self, IdentityError> {
        let der = decode_single_pem(pem, source_name, SectionKind::Certificate, "CERTIFICATE")?;
        Self::from_der(der, source_name)
    }

    /// Parses a DER certificate, requiring an ECDSA P-256 public key.
    pub fn from_der(der: Vec<u8>, source_name: &str) -> Result<Self, IdentityError> {
        let certificate =
            Certificate::from_der(&der).map_err(|e| IdentityError::NotCertificate {
                source_name: source_name.to_owned(),
                reason: e.to_string(),
            })?;
        let spki = certificate.tbs_certificate().subject_public_key_info();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<x509_cert::der::oid::ObjectIdentifier>().ok())
            .map(|oid| oid.to_string());
        if spki.algorithm.oid.to_string() != EC_PUBLIC_KEY_OID
            || curve.as_deref() != Some(P256_CURVE_OID)
        {
            return Err(IdentityError::NotP256 {
                source_name: source_name.to_owned(),
                what: "certificate public key",
                found: format!(
                    "algorithm {} with parameters {}",
                    spki.algorithm.oid,
                    curve.unwrap_or_else(|| "none".to_owned())
                ),
            });
        }
        let public_key = VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
            .map_err(|e| IdentityError::NotP256 {
                source_name: source_name.to_owned(),
                what: "certificate public key",
                found: format!("an invalid point ({e})"),
            })?;
        Ok(CertificateKey {
            der,
            certificate,
            public_key,
        })
    }

    /// The certificate's DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject's common name, e.g. `User1@org1.example.com`, if it has one.
    pub fn common_name(&self) -> Option<String> {
        const COMMON_NAME_OID: &str = "2.5.4.3";
        self.certificate
            .tbs_certificate()
            .subject()
            .iter_rdn()
            .flat_map(|rdn| rdn.iter())
            .find(|attribute| attribute.oid.to_string() == COMMON_NAME_OID)
            .and_then(|attribute| {
                x509_cert::der::asn1::Utf8StringRef::try_from(&attribute.value)
                    .map(|s| s.as_str().to_owned())
                    .or_else(|_| {
                        x509_cert::der::asn1::PrintableStringRef::try_from(&attribute.value)
                            .map(|s| s.as_str().to_owned())
                    })
                    .ok()
            })
    }

    /// Checks a DER ECDSA signature over SHA-256(`message`) and that it is low-S, as Fabric requires.
    pub fn verify(&self, message: &[u8], signature_der: &[u8]) -> Result<(), IdentityError> {
        verify_low_s(&self.public_key, message, signature_der)
    }

    /// Checks that `self` was signed by `issuer` (ECDSA P-256 with SHA-256) and names it as its issuer.
    /// This is the chain check of a one-level MSP: no validity period or extension processing.
    pub fn verify_issued_by(
        &self,
        issuer: &CertificateKey,
        issuer_source: &str,
    ) -> Result<(), IdentityError> {
        let not_issued = |reason: String| IdentityError::NotIssuedBy {
            ca_source: issuer_source.to_owned(),
            reason,
        };
        let tbs = self.certificate.tbs_certificate();
        if tbs.issuer() != issuer.certificate.tbs_certificate().subject() {
            return Err(not_issued(format!(
                "its issuer is `{}`, the CA is `{}`",
                tbs.issuer(),
                issuer.certificate.tbs_certificate().subject()
            )));
        }
        let algorithm = self.certificate.signature_algorithm().oid.to_string();
        if algorithm != ECDSA_WITH_SHA256_OID {
            return Err(not_issued(format!(
                "signature algorithm {algorithm}, expected ecdsa-with-SHA256"
            )));
        }
        let tbs_der = tbs
            .to_der()
            .map_err(|e| not_issued(format!("cannot re-encode the certificate ({e})")))?;
        let signature =
            self.certificate.signature().as_bytes().ok_or_else(|| {
                not_issued("the signature is not a whole number of bytes".to_owned())
            })?;
        let signature = Signature::from_der(signature)
            .map_err(|e| not_issued(format!("malformed signature ({e})")))?;
        issuer
            .public_key
            .verify(&tbs_der, &signature)
            .map_err(|_| not_issued("the CA's key did not sign it".to_owned()))
    }
}

/// A client identity: the MSP id, the signing certificate (sent in every request as the creator) and the
/// private key that signs requests.
#[derive(Clone)]
pub struct Identity {
    /// The organisation the certificate belongs to; the peer checks it against the channel's Readers policy.
    msp_id: MspId,
    /// The certificate exactly as read: Fabric's `SerializedIdentity.id_bytes` carries the PEM text.
    certificate_pem: Bytes,
    /// The parsed certificate, for the common name and for verification helpers.
    certificate: CertificateKey,
    /// Signs requests; checked at load time to match the certificate's public key.
    signing_key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Identity")
            .field("msp_id", &self.msp_id)
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads the signing certificate (PEM) and the PKCS#8 P-256 private key (PEM) from files.
    pub fn load(msp_id: MspId, cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let cert_pem = read_file(cert_path, "signing certificate")?;
        let key_pem = read_file(key_path, "private key")?;
        Self::from_pem(
            msp_id,
            &cert_pem,
            &cert_path.display().to_string(),
            &key_pem,
            &key_path.display().to_string(),
        )
    }

    /// Builds an identity from PEM text; `cert_source` and `key_source` name the inputs in errors.
    pub fn from_pem(
        msp_id: MspId,
        cert_pem: &[u8],
        cert_source: &str,
        key_pem: &[u8],
        key_source: &str,
    ) -> Result<Self, IdentityError> {
        let certificate = CertificateKey::from_pem(cert_pem, cert_source)?;
        let signing_key = parse_private_key(key_pem, key_source)?;
        if signing_key.verifying_key() != &certificate.public_key {
            return Err(IdentityError::KeyMismatch {
                key_source: key_source.to_owned(),
                cert_source: cert_source.to_owned(),
            });
        }
        Ok(Identity {
            msp_id,
            certificate_pem: Bytes::copy_from_slice(cert_pem),
            certificate,
            signing_key,
        })
    }

    /// The MSP the identity claims membership of.
    pub fn msp_id(&self) -> &MspId {
        &self.msp_id
    }

    /// The parsed signing certificate (subject, public key).
    pub fn certificate(&self) -> &CertificateKey {
        &self.certificate
    }

    /// The signing certificate as read (PEM): what `SerializedIdentity.id_bytes` carries.
    pub fn certificate_pem(&self) -> &[u8] {
        &self.certificate_pem
    }

    /// The bytes of `msp.SerializedIdentity{mspid, id_bytes = certificate PEM}`: the `creator` of a request.
    pub fn serialized(&self) -> Vec<u8> {
        msp::SerializedIdentity {
            mspid: self.msp_id.as_str().to_owned(),
            id_bytes: self.certificate_pem.clone(),
        }
        .encode_to_vec()
    }

    /// Signs `message`: ECDSA P-256 over SHA-256, ASN.1 DER, always low-S (Fabric rejects high-S).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.signing_key.sign(message);
        let der: DerSignature = signature.normalize_s().to_der();
        der.as_bytes().to_vec()
    }

    /// Builds the signed Deliver request with the current time and a fresh random nonce.
    pub fn seek_envelope_now(&self, request: &SeekRequest) -> common::Envelope {
        self.seek_envelope_now_with(request, SeekBehavior::BlockUntilReady)
    }

    /// [`Identity::seek_envelope_now`] with the given behaviour for blocks that do not exist yet.
    pub fn seek_envelope_now_with(
        &self,
        request: &SeekRequest,
        behavior: SeekBehavior,
    ) -> common::Envelope {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
        seek_envelope_with(self, request, behavior, timestamp, nonce)
    }
}

/// Checks a DER ECDSA P-256/SHA-256 signature and that its S is low, as Fabric does.
pub fn verify_low_s(
    key: &VerifyingKey,
    message: &[u8],
    signature_der: &[u8],
) -> Result<(), IdentityError> {
    let signature = Signature::from_der(signature_der)
        .map_err(|e| IdentityError::MalformedSignature(e.to_string()))?;
    if bool::from(signature.s().is_high()) {
        return Err(IdentityError::HighS);
    }
    key.verify(message, &signature)
        .map_err(|_| IdentityError::BadSignature)
}

/// A position in the chain to start or stop a Deliver stream at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekPosition {
    /// The newest block the peer has at the time of the request.
    Newest,
    /// The genesis block.
    Oldest,
    /// A given block number.
    Specified(u64),
}

impl SeekPosition {
    fn to_proto(self) -> orderer::SeekPosition {
        use orderer::seek_position::Type;
        let position = match self {
            SeekPosition::Newest => Type::Newest(orderer::SeekNewest {}),
            SeekPosition::Oldest => Type::Oldest(orderer::SeekOldest {}),
            SeekPosition::Specified(number) => Type::Specified(orderer::SeekSpecified { number }),
        };
        orderer::SeekPosition {
            r#type: Some(position),
        }
    }
}

/// What to ask a peer's Deliver service for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeekRequest {
    /// The channel to read.
    pub channel_id: String,
    /// First block to deliver.
    pub start: SeekPosition,
    /// Last block to deliver; `Specified(u64::MAX)` follows the chain forever.
    pub stop: SeekPosition,
    /// SHA-256 of the client TLS certificate's DER under mutual TLS: the peer binds the request to the TLS
    /// session with it.
    pub tls_cert_hash: Option<[u8; 32]>,
}

/// What the peer does when a requested block does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekBehavior {
    /// Wait for it: how a subscription follows the chain.
    BlockUntilReady,
    /// Answer NOT_FOUND at once: how a client asks whether a peer has a block, without waiting for it.
    FailIfNotReady,
}

/// Builds the signed `common.Envelope` carrying `orderer.SeekInfo` (pure: the caller provides the time in Unix
/// seconds and the nonce). The shape matches what Fabric's own clients send (see the deliver capture fixture).
pub fn seek_envelope(
    identity: &Identity,
    request: &SeekRequest,
    timestamp_secs: u64,
    nonce: [u8; NONCE_LEN],
) -> common::Envelope {
    seek_envelope_with(
        identity,
        request,
        SeekBehavior::BlockUntilReady,
        timestamp_secs,
        nonce,
    )
}

/// [`seek_envelope`] with the given behaviour for blocks that do not exist yet.
pub fn seek_envelope_with(
    identity: &Identity,
    request: &SeekRequest,
    behavior: SeekBehavior,
    timestamp_secs: u64,
    nonce: [u8; NONCE_LEN],
) -> common::Envelope {
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::DeliverSeekInfo as i32,
        version: 0,
        timestamp: Some(prost_types::Timestamp {
            seconds: i64::try_from(timestamp_secs).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        channel_id: request.channel_id.clone(),
        tx_id: String::new(),
        epoch: 0,
        extension: Bytes::new(),
        tls_cert_hash: request
            .tls_cert_hash
            .map(|h| Bytes::copy_from_slice(&h))
            .unwrap_or_default(),
    };
    let signature_header = common::SignatureHeader {
        creator: identity.serialized().into(),
        nonce: Bytes::copy_from_slice(&nonce),
    };
    let seek_info = orderer::SeekInfo {
        start: Some(request.start.to_proto()),
        stop: Some(request.stop.to_proto()),
        behavior: match behavior {
            SeekBehavior::BlockUntilReady => orderer::seek_info::SeekBehavior::BlockUntilReady,
            SeekBehavior::FailIfNotReady => orderer::seek_info::SeekBehavior::FailIfNotReady,
        } as i32,
        error_response: orderer::seek_info::SeekErrorResponse::Strict as i32,
    };
    let payload = common::Payload {
        header: Some(common::Header {
            channel_header: channel_header.encode_to_vec().into(),
            signature_header: signature_header.encode_to_vec().into(),
        }),
        data: seek_info.encode_to_vec().into(),
    }
    .encode_to_vec();
    let signature = identity.sign(&payload);
    common::Envelope {
        payload: payload.into(),
        signature: signature.into(),
    }
}

/// SHA-256 of a certificate's DER: the `tls_cert_hash` of a request made under mutual TLS.
pub fn tls_cert_hash(certificate_der: &[u8]) -> [u8; 32] {
    Sha256::digest(certificate_der).into()
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Reads the PEM sections of a file (kinds rustls knows; others are skipped).
fn pem_sections(
    pem: &[u8],
    source_name: &str,
    expected: &'static str,
) -> Result<Vec<(SectionKind, Vec<u8>)>, IdentityError> {
    let mut reader = pem;
    let mut sections = Vec::new();
    loop {
        match rustls::pki_types::pem::from_buf(&mut reader) {
            Ok(Some(section)) => sections.push(section),
            Ok(None) => break,
            Err(e) => {
                return Err(IdentityError::NotPem {
                    source_name: source_name.to_owned(),
                    expected,
                    reason: format!("{e:?}"),
                });
            }
        }
    }
    if sections.is_empty() {
        let reason = if std::str::from_utf8(pem).is_ok_and(|t| t.contains("-----BEGIN")) {
            "it holds only PEM blocks of unsupported kinds"
        } else if pem.is_empty() {
            "it is empty"
        } else {
            "no `-----BEGIN` line"
        };
        return Err(IdentityError::NotPem {
            source_name: source_name.to_owned(),
            expected,
            reason: reason.to_owned(),
        });
    }
    Ok(sections)
}

fn section_label(kind: SectionKind) -> String {
    match kind {
        SectionKind::Certificate => "CERTIFICATE".to_owned(),
        SectionKind::PublicKey => "PUBLIC KEY".to_owned(),
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY".to_owned(),
        SectionKind::PrivateKey => "PRIVATE KEY".to_owned(),
        SectionKind::EcPrivateKey => "EC PRIVATE KEY".to_owned(),
        SectionKind::Crl => "X509 CRL".to_owned(),
        SectionKind::Csr => "CERTIFICATE REQUEST".to_owned(),
        other => format!("{other:?}"),
    }
}

/// Decodes the one PEM block of the `expected` kind a file must hold.
fn decode_single_pem(
    pem: &[u8],
    source_name: &str,
    expected_kind: SectionKind,
    expected: &'static str,
) -> Result<Vec<u8>, IdentityError> {
    let mut sections = pem_sections(pem, source_name, expected)?;
    if let Some((kind, _)) = sections.iter().find(|(kind, _)| *kind != expected_kind) {
        let hint = if *kind == SectionKind::EcPrivateKey {
            " (a SEC1 key: convert it with `openssl pkcs8 -topk8 -nocrypt`)"
        } else {
            ""
        };
        return Err(IdentityError::WrongPemLabel {
            source_name: source_name.to_owned(),
            expected,
            found: section_label(*kind),
            hint,
        });
    }
    if sections.len() > 1 {
        return Err(IdentityError::WrongPemLabel {
            source_name: source_name.to_owned(),
            expected,
            found: format!("{} blocks", sections.len()),
            hint: " (it must hold exactly one)",
        });
    }
    let (_, der) = sections.remove(0);
    Ok(der)
}

fn parse_private_key(pem: &[u8], source_name: &str) -> Result<SigningKey, IdentityError> {
    let der = decode_single_pem(pem, source_name, SectionKind::PrivateKey, "PRIVATE KEY")?;
    SigningKey::from_pkcs8_der(&der).map_err(|e| IdentityError::NotP256 {
        source_name: source_name.to_owned(),
        what: "PKCS#8 private key",
        found: format!("a key that does not parse as one ({e})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/fabric-v2.5/msp")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
    }

    fn user1() -> Identity {
        Identity::from_pem(
            MspId::new("Org1MSP").expect("non-empty"),
            &fixture("user1_signcert.pem"),
            "user1_signcert.pem",
            &fixture("user1_key.pem"),
            "user1_key.pem",
        )
        .expect("fixture identity loads")
    }

    #[test]
    fn signatures_verify_and_are_always_low_s() {
        let identity = user1();
        for i in 0..200u32 {
            let message = format!("message {i}");
            let signature = identity.sign(message.as_bytes());
            identity
                .certificate()
                .verify(message.as_bytes(), &signature)
                .expect("own signature verifies and is low-S");
        }
    }

    #[test]
    fn high_s_signature_is_rejected() {
        let identity = user1();
        let message = b"payload";
        let der = identity.sign(message);
        let low = Signature::from_der(&der).expect("DER");
        let (r, s) = low.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).expect("valid scalars");
        let high_der = high.to_der();
        assert!(matches!(
            identity.certificate().verify(message, high_der.as_bytes()),
            Err(IdentityError::HighS)
        ));
    }

    #[test]
    fn user1_is_issued_by_org1_ca_and_not_by_the_orderer_ca() {
        let identity = user1();
        let org_ca = CertificateKey::from_pem(&fixture("org1_ca.pem"), "org1_ca.pem").expect("CA");
        identity
            .certificate()
            .verify_issued_by(&org_ca, "org1_ca.pem")
            .expect("issued by the org CA");
        let other = CertificateKey::from_pem(&fixture("orderer_org_ca.pem"), "orderer_org_ca.pem")
            .expect("CA");
        let err = identity
            .certificate()
            .verify_issued_by(&other, "orderer_org_ca.pem")
            .expect_err("not issued by the orderer CA");
        assert!(err.to_string().contains("orderer_org_ca.pem"), "{err}");
        assert_eq!(
            identity.certificate().common_name().as_deref(),
            Some("User1@org1.example.com")
        );
    }

    #[test]
    fn load_errors_name_the_file_and_the_expectation() {
        let msp = || MspId::new("Org1MSP").expect("non-empty");
        let cert = fixture("user1_signcert.pem");
        let key = fixture("user1_key.pem");
        let err = Identity::from_pem(msp(), b"hello", "c.pem", &key, "k.pem").expect_err("not PEM");
        assert!(
            err.to_string()
                .starts_with("c.pem: expected a PEM CERTIFICATE block"),
            "{err}"
        );
        let err =
            Identity::from_pem(msp(), &key, "c.pem", &key, "k.pem").expect_err("a key, not a cert");
        assert!(err.to_string().contains("found `PRIVATE KEY`"), "{err}");
        let err = Identity::from_pem(msp(), &cert, "c.pem", &cert, "k.pem")
            .expect_err("a cert, not a key");
        assert!(
            err.to_string()
                .starts_with("k.pem: expected a PEM PRIVATE KEY"),
            "{err}"
        );
        let err = Identity::from_pem(
            msp(),
            &cert,
            "c.pem",
            &fixture("admin_key.pem"),
            "admin.pem",
        )
        .expect_err("another key");
        assert!(
            err.to_string()
                .contains("admin.pem: this private key does not belong to the certificate c.pem"),
            "{err}"
        );
        assert!(matches!(MspId::new(" "), Err(IdentityError::EmptyMspId)));
        let chain = [cert.clone(), fixture("org1_ca.pem")].concat();
        let err = Identity::from_pem(msp(), &chain, "chain.pem", &key, "k.pem")
            .expect_err("two certificates");
        assert!(
            err.to_string().ends_with(
                "expected a PEM CERTIFICATE block, found `2 blocks` (it must hold exactly one)"
            ),
            "{err}"
        );
        let crlf = String::from_utf8(cert.clone())
            .expect("ASCII")
            .replace('\n', "\r\n");
        Identity::from_pem(msp(), crlf.as_bytes(), "crlf.pem", &key, "k.pem")
            .expect("CRLF line ends are fine");
    }

    #[test]
    fn seek_envelope_is_signed_over_its_payload() {
        let identity = user1();
        let request = SeekRequest {
            channel_id: "mychannel".to_owned(),
            start: SeekPosition::Specified(16),
            stop: SeekPosition::Specified(u64::MAX),
            tls_cert_hash: None,
        };
        let envelope = seek_envelope(&identity, &request, 1_700_000_000, [7; NONCE_LEN]);
        identity
            .certificate()
            .verify(&envelope.payload, &envelope.signature)
            .expect("signature over the payload bytes");
    }

    /// The real request a Fabric client sent (deliver capture 0012: start 16, stop u64::MAX) and ours, given
    /// the same timestamp and nonce, must be the same payload bytes; its signature must verify as ours do.
    #[test]
    fn seek_envelope_matches_the_captured_fabric_request() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/fabric-v2.5/deliver_capture/raw/0012_protos.Deliver.Deliver_c2s.pb");
        let captured = common::Envelope::decode(std::fs::read(&path).expect("capture").as_slice())
            .expect("an Envelope");
        let payload = common::Payload::decode(captured.payload.clone()).expect("a Payload");
        let header = payload.header.expect("a header");
        let channel_header =
            common::ChannelHeader::decode(header.channel_header).expect("channel header");
        let signature_header =
            common::SignatureHeader::decode(header.signature_header).expect("signature header");
        assert_eq!(
            channel_header.r#type,
            common::HeaderType::DeliverSeekInfo as i32
        );
        assert_eq!(channel_header.timestamp.as_ref().map(|t| t.nanos), Some(0));
        let creator =
            msp::SerializedIdentity::decode(signature_header.creator.clone()).expect("creator");
        let identity = user1();
        assert_eq!(creator.mspid, "Org1MSP");
        assert_eq!(&creator.id_bytes[..], identity.certificate_pem());
        let nonce: [u8; NONCE_LEN] = signature_header.nonce[..]
            .try_into()
            .expect("24-byte nonce");
        let timestamp = channel_header
            .timestamp
            .map(|t| t.seconds)
            .expect("a timestamp");
        let request = SeekRequest {
            channel_id: "mychannel".to_owned(),
            start: SeekPosition::Specified(16),
            stop: SeekPosition::Specified(u64::MAX),
            tls_cert_hash: None,
        };
        let ours = seek_envelope(
            &identity,
            &request,
            u64::try_from(timestamp).expect("positive"),
            nonce,
        );
        assert_eq!(
            ours.payload, captured.payload,
            "same payload bytes as Fabric's client"
        );
        identity
            .certificate()
            .verify(&captured.payload, &captured.signature)
            .expect("Fabric's own signature is low-S and verifies");
    }
}
