//! Throwaway certificate authorities for the simulator, the demo and tests: a CA, server certificates with the
//! names a client will check, and P-256 client or MSP identities. Generated at run time so nothing expires in
//! the repository.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Errors generating certificates.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate the {what}: {source}")]
pub struct PkiError {
    what: String,
    source: rcgen::Error,
}

/// A certificate and its PKCS#8 private key, both PEM.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The certificate, for the side that presents it (and its peers, to pin it).
    pub cert_pem: String,
    /// The PKCS#8 private key: what makes the certificate usable for TLS or for signing requests.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate").finish_non_exhaustive()
    }
}

/// A self-signed ECDSA P-256 certificate authority.
pub struct TestCa {
    /// Signs the certificates this CA issues.
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, to hand to whoever verifies what it issued.
    cert_pem: String,
}

impl TestCa {
    /// A new CA whose subject is `CN=<common_name>, O=<organization>`.
    pub fn new(common_name: &str, organization: &str) -> Result<Self, PkiError> {
        let fail = |source| PkiError {
            what: format!("CA `{common_name}`"),
            source,
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.distinguished_name = name(common_name, organization);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok(TestCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate, for whoever verifies what the CA issued.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A leaf certificate for `common_name`, valid for the DNS names and IP addresses in `names` (TLS checks
    /// them); P-256 key in PKCS#8.
    pub fn issue(&self, common_name: &str, names: &[&str]) -> Result<IssuedCertificate, PkiError> {
        let fail = |source| PkiError {
            what: format!("certificate `{common_name}`"),
            source,
        };
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(fail)?;
        params.distinguished_name = name(common_name, "chaintrigger test");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str, organization: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, organization);
    name.push(DnType::CommonName, common_name);
    name
}
