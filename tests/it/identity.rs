//! The client identity loaded from the real Fabric fixture files: signatures verify with the certificate and are
//! always low-S; bad files are reported by name.

use chaintrigger::fabric::identity::{CertificateKey, Identity, IdentityError, MspId};
use p256::ecdsa::Signature;
use p256::elliptic_curve::scalar::IsHigh;

use crate::support::fabric::{fixture_path, user1};

#[test]
fn every_signature_verifies_with_the_certificate_and_is_low_s() {
    let identity = user1();
    let ca = CertificateKey::from_pem(
        &std::fs::read(fixture_path("msp/org1_ca.pem")).expect("CA file"),
        "org1_ca.pem",
    )
    .expect("CA");
    identity
        .certificate()
        .verify_issued_by(&ca, "org1_ca.pem")
        .expect("User1 is issued by the Org1 CA");
    for i in 0..300u32 {
        let message = format!("payload {i}").into_bytes();
        let der = identity.sign(&message);
        let signature = Signature::from_der(&der).expect("ASN.1 DER");
        assert!(
            !bool::from(signature.s().is_high()),
            "signature {i} is high-S"
        );
        identity
            .certificate()
            .verify(&message, &der)
            .unwrap_or_else(|e| panic!("signature {i}: {e}"));
    }
}

#[test]
fn load_errors_name_the_file() {
    let msp = || MspId::new("Org1MSP").expect("non-empty");
    let missing = fixture_path("msp/no_such_cert.pem");
    let err =
        Identity::load(msp(), &missing, &fixture_path("msp/user1_key.pem")).expect_err("missing");
    assert!(matches!(err, IdentityError::Read { .. }));
    assert!(err.to_string().contains("no_such_cert.pem"), "{err}");
    // The org CA's certificate with User1's key: the key does not belong to it.
    let err = Identity::load(
        msp(),
        &fixture_path("msp/org1_ca.pem"),
        &fixture_path("msp/user1_key.pem"),
    )
    .expect_err("mismatch");
    assert!(
        err.to_string()
            .contains("does not belong to the certificate"),
        "{err}"
    );
    assert!(err.to_string().contains("org1_ca.pem"), "{err}");
    // Key and certificate swapped.
    let err = Identity::load(
        msp(),
        &fixture_path("msp/user1_key.pem"),
        &fixture_path("msp/user1_signcert.pem"),
    )
    .expect_err("swapped");
    assert!(
        err.to_string()
            .contains("user1_key.pem: expected a PEM CERTIFICATE block"),
        "{err}"
    );
}
