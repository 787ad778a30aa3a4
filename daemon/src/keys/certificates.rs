//! A joint key's certificate: the request the phone co-signs, and the check of what the CA
//! issued for it.
//!
//! The daemon writes the CertificationRequestInfo (the joint public key, a provisional
//! subject the CA replaces from the enrollment), the phone co-signs it in a `csr` task, the
//! daemon assembles the CertificationRequest, and the certificate the adapter answers is
//! accepted only if it certifies exactly that public key.

use base64::Engine;
use der::{Decode, Encode};
use sm2_2p::{AffinePoint, Signature};

use crate::model::key::CertificateInfo;
use crate::plugins::ca::IssueAnswer;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SM2_WITH_SM3: &str = "1.2.156.10197.1.501";

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The request could not be encoded (a name or key the daemon made): its own fault.
    #[error("certificate request: {0}")]
    Request(String),
    /// What the CA answered is not a certificate for this key: the adapter's fault.
    #[error("{0}")]
    Issued(String),
}

fn request(e: impl std::fmt::Display) -> CertificateError {
    CertificateError::Request(e.to_string())
}

/// DER CertificationRequestInfo for the joint key, with a provisional subject.
pub fn certificate_request_info(public: &AffinePoint, name: &str) -> Result<Vec<u8>, CertificateError> {
    use std::str::FromStr;
    let escaped: String =
        name.chars().flat_map(|c| if ",+\"\\<>;=".contains(c) { vec!['\\', c] } else { vec![c] }).collect();
    let info = x509_cert::request::CertReqInfo {
        version: x509_cert::request::Version::V1,
        subject: x509_cert::name::Name::from_str(&format!("CN={escaped}")).map_err(request)?,
        public_key: spki::SubjectPublicKeyInfoOwned::from_der(&sm2_2p::spki_der(public)).map_err(request)?,
        attributes: Default::default(),
    };
    info.to_der().map_err(request)
}

/// DER CertificationRequest: the info, SM2-with-SM3, the joint signature.
pub fn certificate_request(info_der: &[u8], sig: &Signature) -> Result<Vec<u8>, CertificateError> {
    let req = x509_cert::request::CertReq {
        info: x509_cert::request::CertReqInfo::from_der(info_der).map_err(request)?,
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: spki::ObjectIdentifier::new_unwrap(SM2_WITH_SM3),
            parameters: None,
        },
        signature: der::asn1::BitString::from_bytes(&sig.to_der()).map_err(request)?,
    };
    req.to_der().map_err(request)
}

/// Check an adapter's `issue` answer: a certificate for exactly this public key.
/// Public (hidden) for `fuzz/`: it decodes what an adapter wrote.
#[doc(hidden)]
pub fn parse_issued(answer: &IssueAnswer, public: &AffinePoint) -> Result<CertificateInfo, CertificateError> {
    let issued = |e: String| CertificateError::Issued(e);
    let der = B64.decode(&answer.certificate).map_err(|e| issued(format!("certificate: {e}")))?;
    let cert = x509_cert::Certificate::from_der(&der).map_err(|e| issued(format!("certificate: {e}")))?;
    let spki = cert.tbs_certificate().subject_public_key_info().to_der().map_err(|e| issued(e.to_string()))?;
    if spki != sm2_2p::spki_der(public) {
        return Err(issued("the CA certified another public key".into()));
    }
    Ok(CertificateInfo {
        der_b64: answer.certificate.clone(),
        chain_b64: answer.chain.clone(),
        serial: hex::encode(cert.tbs_certificate().serial_number().as_bytes()),
        subject: cert.tbs_certificate().subject().to_string(),
        not_after: cert.tbs_certificate().validity().not_after.to_unix_duration().as_secs() as i64,
    })
}
