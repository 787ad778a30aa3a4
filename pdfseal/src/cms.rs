//! The CMS container of a PDF signature (`/SubFilter /adbe.pkcs7.detached`): a detached
//! `SignedData` whose one `SignerInfo` signs DER(signedAttrs) = { contentType id-data,
//! signingTime, messageDigest = H(ByteRange bytes), [seal] }.
//!
//! The seal (GB/T 38540 `SESeal` DER) rides in a signed attribute, [`ID_SEAL_ATTRIBUTE`],
//! so the signer's signature binds the seal to the document and a verifier finds the seal
//! (and through it the maker certificate) inside the standard container. Readers that do
//! not know the attribute ignore it, as RFC 5652 allows. Its OID sits under the enterprise
//! number RFC 5612 reserves for documentation (32473), as `32473.38540.1`: collision-free
//! but not ours — a production deployment registers its own IANA enterprise number and
//! changes this one constant (the `2.25` UUID arc was the first choice, but its 128-bit arcs
//! do not fit the OID type of the `der` stack).

use std::time::Duration;

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::{Attribute, Attributes};
use x509_cert::time::Time;

use crate::Error;

pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
/// mcsd's signed attribute carrying the GB/T 38540 seal (value: OCTET STRING of SESeal DER).
pub const ID_SEAL_ATTRIBUTE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.38540.1");

/// Digest and signature algorithms of a signer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// SM3 digest, SM2-with-SM3 signature (default ID).
    Sm2,
    /// SHA-256 digest, ECDSA P-256 signature.
    EcdsaP256,
}

impl Algorithm {
    pub fn digest_oid(self) -> ObjectIdentifier {
        match self {
            Algorithm::Sm2 => crate::SM3,
            Algorithm::EcdsaP256 => crate::SHA256,
        }
    }

    pub fn signature_oid(self) -> ObjectIdentifier {
        match self {
            Algorithm::Sm2 => crate::SM2_WITH_SM3,
            Algorithm::EcdsaP256 => crate::ECDSA_WITH_SHA256,
        }
    }

    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Algorithm::Sm2 => {
                use sm3::Digest;
                let mut h = sm3::Sm3::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            Algorithm::EcdsaP256 => {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }

    fn from_digest_oid(oid: ObjectIdentifier) -> Option<Algorithm> {
        [Algorithm::Sm2, Algorithm::EcdsaP256].into_iter().find(|a| a.digest_oid() == oid)
    }
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, Error> {
    let mut values = SetOfVec::new();
    values.insert(value).map_err(invalid)?;
    Ok(Attribute { oid, values })
}

/// The signed attributes for a document digest.
pub fn signed_attributes(
    alg: Algorithm,
    document_digest: &[u8],
    signing_time: u64,
    seal: Option<&[u8]>,
) -> Result<Attributes, Error> {
    let _ = alg;
    let time = Time::try_from(std::time::UNIX_EPOCH + Duration::from_secs(signing_time)).map_err(invalid)?;
    let mut attrs = Attributes::new();
    attrs.insert(attribute(ID_CONTENT_TYPE, Any::encode_from(&ID_DATA).map_err(invalid)?)?).map_err(invalid)?;
    attrs.insert(attribute(ID_SIGNING_TIME, Any::encode_from(&time).map_err(invalid)?)?).map_err(invalid)?;
    let digest = OctetString::new(document_digest.to_vec()).map_err(invalid)?;
    attrs.insert(attribute(ID_MESSAGE_DIGEST, Any::encode_from(&digest).map_err(invalid)?)?).map_err(invalid)?;
    if let Some(seal) = seal {
        let seal = OctetString::new(seal.to_vec()).map_err(invalid)?;
        attrs.insert(attribute(ID_SEAL_ATTRIBUTE, Any::encode_from(&seal).map_err(invalid)?)?).map_err(invalid)?;
    }
    Ok(attrs)
}

/// DER of the signed attributes as a SET: the message the signer signs.
pub fn to_be_signed(attrs: &Attributes) -> Result<Vec<u8>, Error> {
    attrs.to_der().map_err(invalid)
}

/// The `ContentInfo` DER for the PDF's `/Contents`.
pub fn signed_data(
    alg: Algorithm,
    signer_cert: &[u8],
    more_certs: &[Vec<u8>],
    attrs: Attributes,
    signature_der: &[u8],
) -> Result<Vec<u8>, Error> {
    let signer = Certificate::from_der(signer_cert).map_err(|e| Error::Invalid(format!("signer certificate: {e}")))?;
    let mut certs = SetOfVec::new();
    for der in std::iter::once(signer_cert).chain(more_certs.iter().map(Vec::as_slice)) {
        let c = Certificate::from_der(der).map_err(|e| Error::Invalid(format!("certificate: {e}")))?;
        // A certificate given twice is carried once.
        if !certs.iter().any(
            |x: &cms::cert::CertificateChoices| matches!(x, cms::cert::CertificateChoices::Certificate(y) if *y == c),
        ) {
            certs.insert(cms::cert::CertificateChoices::Certificate(c)).map_err(invalid)?;
        }
    }
    let digest_alg = AlgorithmIdentifierOwned { oid: alg.digest_oid(), parameters: None };
    let info = SignerInfo {
        version: cms::content_info::CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: signer.tbs_certificate().issuer().clone(),
            serial_number: signer.tbs_certificate().serial_number().clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(attrs),
        signature_algorithm: AlgorithmIdentifierOwned { oid: alg.signature_oid(), parameters: None },
        signature: OctetString::new(signature_der.to_vec()).map_err(invalid)?,
        unsigned_attrs: None,
    };
    let mut digests = SetOfVec::new();
    digests.insert(digest_alg).map_err(invalid)?;
    let mut infos = SetOfVec::new();
    infos.insert(info).map_err(invalid)?;
    let sd = SignedData {
        version: cms::content_info::CmsVersion::V1,
        digest_algorithms: digests,
        encap_content_info: EncapsulatedContentInfo { econtent_type: ID_DATA, econtent: None },
        certificates: Some(CertificateSet(certs)),
        crls: None,
        signer_infos: SignerInfos(infos),
    };
    let ci = ContentInfo { content_type: ID_SIGNED_DATA, content: Any::encode_from(&sd).map_err(invalid)? };
    ci.to_der().map_err(invalid)
}

/// A container read back.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub algorithm: Algorithm,
    pub signer_certificate: Vec<u8>,
    pub certificates: Vec<Vec<u8>>,
    pub message_digest: Vec<u8>,
    pub signing_time: Option<u64>,
    pub seal: Option<Vec<u8>>,
    pub to_be_signed: Vec<u8>,
    pub signature: Vec<u8>,
}

fn single_value(attrs: &Attributes, oid: ObjectIdentifier) -> Option<&Any> {
    attrs.iter().find(|a| a.oid == oid).and_then(|a| a.values.iter().next())
}

/// Parse a `/Contents` value (trailing zero padding allowed).
pub fn parse(contents: &[u8]) -> Result<Parsed, Error> {
    let (ci, _) = ContentInfo::from_der_partial(contents).map_err(|e| Error::Invalid(format!("CMS: {e}")))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(Error::Invalid("CMS content is not SignedData".into()));
    }
    let sd: SignedData = ci.content.decode_as().map_err(|e| Error::Invalid(format!("SignedData: {e}")))?;
    let si = sd.signer_infos.0.iter().next().ok_or_else(|| Error::Invalid("no SignerInfo".into()))?;
    if sd.signer_infos.0.len() != 1 {
        return Err(Error::Invalid("more than one SignerInfo".into()));
    }
    let algorithm = Algorithm::from_digest_oid(si.digest_alg.oid)
        .ok_or_else(|| Error::Unsupported(format!("digest {}", si.digest_alg.oid)))?;
    if si.signature_algorithm.oid != algorithm.signature_oid() {
        return Err(Error::Unsupported(format!(
            "signature algorithm {} with digest {}",
            si.signature_algorithm.oid, si.digest_alg.oid
        )));
    }
    let attrs = si.signed_attrs.as_ref().ok_or_else(|| Error::Invalid("no signed attributes".into()))?;
    let certificates: Vec<Vec<u8>> = sd
        .certificates
        .iter()
        .flat_map(|s| s.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(c) => c.to_der().ok(),
            _ => None,
        })
        .collect();
    let SignerIdentifier::IssuerAndSerialNumber(isn) = &si.sid else {
        return Err(Error::Unsupported("signer identified by key identifier".into()));
    };
    let signer_certificate = certificates
        .iter()
        .find(|der| {
            Certificate::from_der(der).is_ok_and(|c| {
                c.tbs_certificate().serial_number() == &isn.serial_number && c.tbs_certificate().issuer() == &isn.issuer
            })
        })
        .cloned()
        .ok_or_else(|| Error::Invalid("the signer's certificate is not in the container".into()))?;
    let message_digest = single_value(attrs, ID_MESSAGE_DIGEST)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .map(|o| o.as_bytes().to_vec())
        .ok_or_else(|| Error::Invalid("no messageDigest attribute".into()))?;
    let signing_time = single_value(attrs, ID_SIGNING_TIME)
        .and_then(|v| v.decode_as::<Time>().ok())
        .map(|t| t.to_unix_duration().as_secs());
    let seal = single_value(attrs, ID_SEAL_ATTRIBUTE)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .map(|o| o.as_bytes().to_vec());
    Ok(Parsed {
        algorithm,
        signer_certificate,
        certificates,
        message_digest,
        signing_time,
        seal,
        to_be_signed: attrs.to_der().map_err(invalid)?,
        signature: si.signature.as_bytes().to_vec(),
    })
}
