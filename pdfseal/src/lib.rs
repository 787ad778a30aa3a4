//! Electronic seals and sealed PDFs, as pure functions over bytes: no IO, no keys.
//!
//! - [`seal`]: GB/T 38540-2020 `SESeal` (v4) build, parse and verify.
//! - [`cms`]: the detached CMS `SignedData` a PDF signature carries (SM3 + SM2-with-SM3, or
//!   SHA-256 + ECDSA for the P-256 path), with the seal as a signed attribute.
//! - [`image`]: PNG/JPEG seal pictures as PDF image XObjects.
//! - [`pdf`]: incremental-update sealing (prepare → digest → embed), verification,
//!   withdrawing the last seal, and the Document Security Store that keeps validation data
//!   in the document.
//! - [`tsp`]: RFC 3161 time stamps (request, `TSTInfo`, token, response) for signature
//!   time-stamps and a TSA.
//! - [`template`]: seal faces drawn from text (a name seal, a round organisation seal).
//!
//! Signing happens elsewhere (the phone and the daemon together, or an HSM): this crate
//! hands out the bytes to sign and takes the signature back.

pub mod cms;
pub mod gbt35275;
pub mod image;
pub mod pdf;
pub mod seal;
pub mod template;
mod text;
pub mod tsp;

use der::Decode;
use der::asn1::ObjectIdentifier;

/// SM2 signature with SM3 (GB/T 35276).
pub const SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
/// SM3 digest.
pub const SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.401");
/// SHA-256 digest.
pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// ECDSA with SHA-256.
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SM2_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");

/// What went wrong with the bytes given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Malformed or inconsistent input.
    #[error("{0}")]
    Invalid(String),
    /// A PDF that cannot be read or sealed.
    #[error("PDF: {0}")]
    Pdf(String),
    /// Well formed, but outside what this crate handles.
    #[error("{0} is not supported")]
    Unsupported(String),
    /// A time-stamp request a TSA must refuse, with the failure to answer it with.
    #[error("time-stamp request refused ({fail_info:?}): {reason}")]
    Rejected {
        /// The `PKIFailureInfo` bit to answer with.
        fail_info: tsp::FailInfo,
        /// Why, for the `PKIFreeText`.
        reason: String,
    },
}

/// PEM armour for DER bytes.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The SM2 public key a DER certificate certifies.
pub fn sm2_public_key_of(cert_der: &[u8]) -> Result<sm2_2p::AffinePoint, Error> {
    let cert = x509_cert::Certificate::from_der(cert_der).map_err(|e| Error::Invalid(format!("certificate: {e}")))?;
    let spki = cert.tbs_certificate().subject_public_key_info();
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != EC_PUBLIC_KEY || curve != Some(SM2_CURVE) {
        return Err(Error::Unsupported("a non-SM2 certificate key".into()));
    }
    sm2_2p::point_from_sec1(spki.subject_public_key.raw_bytes())
        .map_err(|e| Error::Invalid(format!("certificate key: {e}")))
}

/// Does `issuer_der`'s SM2 key verify `cert_der`'s signature (default ID)?
pub fn sm2_certificate_signed_by(cert_der: &[u8], issuer_der: &[u8]) -> Result<bool, Error> {
    use der::Encode;
    let cert = x509_cert::Certificate::from_der(cert_der).map_err(|e| Error::Invalid(format!("certificate: {e}")))?;
    let issuer = sm2_public_key_of(issuer_der)?;
    if cert.signature_algorithm().oid != SM2_WITH_SM3 {
        return Ok(false);
    }
    let tbs = cert.tbs_certificate().to_der().map_err(|e| Error::Invalid(e.to_string()))?;
    let Some(sig) = cert.signature().as_bytes().and_then(|b| sm2_2p::Signature::from_der(b).ok()) else {
        return Ok(false);
    };
    Ok(sm2_2p::verify(&issuer, &sm2_2p::e_for_message(&issuer, &tbs), &sig))
}
