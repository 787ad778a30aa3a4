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
use cms::content_info::{CmsVersion, ContentInfo};
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

/// `id-data`: the content type of a detached PDF signature.
pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// `id-signedData`: the `ContentInfo` type of containers and time-stamp tokens.
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
pub(crate) const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
pub(crate) const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
/// RFC 3161 appendix A: the unsigned attribute holding a time-stamp token over the signature.
pub const ID_SIGNATURE_TIME_STAMP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
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
    /// The digest algorithm's OID.
    pub fn digest_oid(self) -> ObjectIdentifier {
        match self {
            Algorithm::Sm2 => crate::SM3,
            Algorithm::EcdsaP256 => crate::SHA256,
        }
    }

    /// The signature algorithm's OID.
    pub fn signature_oid(self) -> ObjectIdentifier {
        match self {
            Algorithm::Sm2 => crate::SM2_WITH_SM3,
            Algorithm::EcdsaP256 => crate::ECDSA_WITH_SHA256,
        }
    }

    /// The digest of the concatenated `parts`.
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

    pub(crate) fn from_digest_oid(oid: ObjectIdentifier) -> Option<Algorithm> {
        [Algorithm::Sm2, Algorithm::EcdsaP256].into_iter().find(|a| a.digest_oid() == oid)
    }
}

pub(crate) fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(e.to_string())
}

pub(crate) fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, Error> {
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
    signed_attributes_for(ID_DATA, document_digest, signing_time, seal)
}

/// [`signed_attributes`] for content of type `content_type` (RFC 5652: the contentType
/// attribute names the encapsulated content's type).
pub(crate) fn signed_attributes_for(
    content_type: ObjectIdentifier,
    document_digest: &[u8],
    signing_time: u64,
    seal: Option<&[u8]>,
) -> Result<Attributes, Error> {
    let time = Time::try_from(std::time::UNIX_EPOCH + Duration::from_secs(signing_time)).map_err(invalid)?;
    let mut attrs = Attributes::new();
    attrs.insert(attribute(ID_CONTENT_TYPE, Any::encode_from(&content_type).map_err(invalid)?)?).map_err(invalid)?;
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

/// The `ContentInfo` DER for the PDF's `/Contents` (no unsigned attributes).
pub fn signed_data(
    alg: Algorithm,
    signer_cert: &[u8],
    more_certs: &[Vec<u8>],
    attrs: Attributes,
    signature_der: &[u8],
) -> Result<Vec<u8>, Error> {
    signed_data_with(alg, signer_cert, more_certs, attrs, signature_der, None)
}

/// [`signed_data`] with the signer's unsigned attributes, e.g. [`signature_time_stamp`].
pub fn signed_data_with(
    alg: Algorithm,
    signer_cert: &[u8],
    more_certs: &[Vec<u8>],
    attrs: Attributes,
    signature_der: &[u8],
    unsigned: Option<Attributes>,
) -> Result<Vec<u8>, Error> {
    let signer = Signer {
        alg,
        cert: signer_cert,
        more_certs,
        signed: attrs,
        signature: signature_der,
        unsigned,
        carry_certs: true,
    };
    assemble(&Encapsulated { content_type: ID_DATA, content: None }, signer)
}

/// What a `SignedData` encapsulates: the content type and, unless detached, the content.
pub(crate) struct Encapsulated<'a> {
    pub content_type: ObjectIdentifier,
    pub content: Option<&'a [u8]>,
}

/// The one signer of a `SignedData`: its certificate (first of the set), more certificates
/// to carry, the attributes it signed, its signature and its unsigned attributes.
pub(crate) struct Signer<'a> {
    pub alg: Algorithm,
    pub cert: &'a [u8],
    pub more_certs: &'a [Vec<u8>],
    pub signed: Attributes,
    pub signature: &'a [u8],
    pub unsigned: Option<Attributes>,
    /// Carry `cert` and `more_certs` in `certificates` (else the field is absent: a
    /// time-stamp token for a request without `certReq`).
    pub carry_certs: bool,
}

/// The `ContentInfo` DER of a one-signer `SignedData`: the PDF container and the RFC 3161
/// token are both built here.
pub(crate) fn assemble(content: &Encapsulated<'_>, signer: Signer<'_>) -> Result<Vec<u8>, Error> {
    let cert = Certificate::from_der(signer.cert).map_err(|e| Error::Invalid(format!("signer certificate: {e}")))?;
    let mut certs = SetOfVec::new();
    for der in std::iter::once(signer.cert).chain(signer.more_certs.iter().map(Vec::as_slice)) {
        let c = Certificate::from_der(der).map_err(|e| Error::Invalid(format!("certificate: {e}")))?;
        // A certificate given twice is carried once.
        if !certs.iter().any(
            |x: &cms::cert::CertificateChoices| matches!(x, cms::cert::CertificateChoices::Certificate(y) if *y == c),
        ) {
            certs.insert(cms::cert::CertificateChoices::Certificate(c)).map_err(invalid)?;
        }
    }
    let digest_alg = AlgorithmIdentifierOwned { oid: signer.alg.digest_oid(), parameters: None };
    let info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate().issuer().clone(),
            serial_number: cert.tbs_certificate().serial_number().clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(signer.signed),
        signature_algorithm: AlgorithmIdentifierOwned { oid: signer.alg.signature_oid(), parameters: None },
        signature: OctetString::new(signer.signature.to_vec()).map_err(invalid)?,
        unsigned_attrs: signer.unsigned,
    };
    let mut digests = SetOfVec::new();
    digests.insert(digest_alg).map_err(invalid)?;
    let mut infos = SetOfVec::new();
    infos.insert(info).map_err(invalid)?;
    let econtent = match content.content {
        Some(bytes) => Some(Any::encode_from(&OctetString::new(bytes.to_vec()).map_err(invalid)?).map_err(invalid)?),
        None => None,
    };
    let sd = SignedData {
        // RFC 5652 §5.1: version 3 when the content is not id-data.
        version: if content.content_type == ID_DATA { CmsVersion::V1 } else { CmsVersion::V3 },
        digest_algorithms: digests,
        encap_content_info: EncapsulatedContentInfo { econtent_type: content.content_type, econtent },
        certificates: signer.carry_certs.then_some(CertificateSet(certs)),
        crls: None,
        signer_infos: SignerInfos(infos),
    };
    let ci = ContentInfo { content_type: ID_SIGNED_DATA, content: Any::encode_from(&sd).map_err(invalid)? };
    ci.to_der().map_err(invalid)
}

/// The unsigned attributes holding an RFC 3161 token over the signature value (RFC 3161
/// appendix A, `id-aa-signatureTimeStampToken`); `token_der` is the token's `ContentInfo`.
pub fn signature_time_stamp(token_der: &[u8]) -> Result<Attributes, Error> {
    let mut attrs = Attributes::new();
    attrs.insert(time_stamp_attribute(token_der)?).map_err(invalid)?;
    Ok(attrs)
}

fn time_stamp_attribute(token_der: &[u8]) -> Result<Attribute, Error> {
    let token = ContentInfo::from_der(token_der).map_err(|e| Error::Invalid(format!("time-stamp token: {e}")))?;
    if token.content_type != ID_SIGNED_DATA {
        return Err(Error::Invalid("time-stamp token is not SignedData".into()));
    }
    attribute(ID_SIGNATURE_TIME_STAMP, Any::encode_from(&token).map_err(invalid)?)
}

/// The signature value of a container's one `SignerInfo` (the `signature` OCTET STRING's
/// content): what a signature time-stamp's message imprint is the digest of.
pub fn signature_value(container_der: &[u8]) -> Result<Vec<u8>, Error> {
    let sd = decode_signed_data(container_der)?;
    Ok(single_signer(&sd)?.signature.as_bytes().to_vec())
}

/// `container_der` with `token_der` as its signer's signature time-stamp (replacing an
/// earlier one, keeping other unsigned attributes). The signed part is untouched, so the
/// signature stays valid; trailing zero padding of `/Contents` is dropped.
pub fn with_signature_time_stamp(container_der: &[u8], token_der: &[u8]) -> Result<Vec<u8>, Error> {
    let mut sd = decode_signed_data(container_der)?;
    single_signer(&sd)?; // so the loop below touches exactly one SignerInfo
    let mut infos = sd.signer_infos.0.into_vec();
    for info in &mut infos {
        let mut unsigned: Vec<Attribute> = info
            .unsigned_attrs
            .take()
            .map(SetOfVec::into_vec)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.oid != ID_SIGNATURE_TIME_STAMP)
            .collect();
        unsigned.push(time_stamp_attribute(token_der)?);
        info.unsigned_attrs = Some(SetOfVec::try_from(unsigned).map_err(invalid)?);
    }
    sd.signer_infos = SignerInfos(SetOfVec::try_from(infos).map_err(invalid)?);
    let ci = ContentInfo { content_type: ID_SIGNED_DATA, content: Any::encode_from(&sd).map_err(invalid)? };
    ci.to_der().map_err(invalid)
}

/// A container read back.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The signer's algorithms.
    pub algorithm: Algorithm,
    /// The signer's certificate DER.
    pub signer_certificate: Vec<u8>,
    /// Every certificate the container carries, DER.
    pub certificates: Vec<Vec<u8>>,
    /// The messageDigest attribute.
    pub message_digest: Vec<u8>,
    /// The signingTime attribute, Unix seconds.
    pub signing_time: Option<u64>,
    /// The seal attribute (SESeal DER).
    pub seal: Option<Vec<u8>>,
    /// DER of the signed attributes as a SET: what the signature is over.
    pub to_be_signed: Vec<u8>,
    /// The signature value (DER).
    pub signature: Vec<u8>,
    /// The RFC 3161 token (`ContentInfo` DER) of the signature time-stamp, if any.
    pub timestamp_token: Option<Vec<u8>>,
}

pub(crate) fn single_value(attrs: &Attributes, oid: ObjectIdentifier) -> Option<&Any> {
    attrs.iter().find(|a| a.oid == oid).and_then(|a| a.values.iter().next())
}

/// The `SignedData` of a `ContentInfo` (trailing zero padding allowed).
fn decode_signed_data(contents: &[u8]) -> Result<SignedData, Error> {
    let (ci, _) = ContentInfo::from_der_partial(contents).map_err(|e| Error::Invalid(format!("CMS: {e}")))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(Error::Invalid("CMS content is not SignedData".into()));
    }
    ci.content.decode_as().map_err(|e| Error::Invalid(format!("SignedData: {e}")))
}

fn single_signer(sd: &SignedData) -> Result<&SignerInfo, Error> {
    let si = sd.signer_infos.0.iter().next().ok_or_else(|| Error::Invalid("no SignerInfo".into()))?;
    if sd.signer_infos.0.len() != 1 {
        return Err(Error::Invalid("more than one SignerInfo".into()));
    }
    Ok(si)
}

/// Parse a `/Contents` value (trailing zero padding allowed).
pub fn parse(contents: &[u8]) -> Result<Parsed, Error> {
    open(contents).map(|(parsed, _)| parsed)
}

/// [`parse`], also handing back what the `SignedData` encapsulates.
pub(crate) fn open(contents: &[u8]) -> Result<(Parsed, EncapsulatedContentInfo), Error> {
    let sd = decode_signed_data(contents)?;
    let si = single_signer(&sd)?;
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
    let timestamp_token = match si.unsigned_attrs.as_ref().and_then(|u| single_value(u, ID_SIGNATURE_TIME_STAMP)) {
        Some(token) => Some(token.to_der().map_err(invalid)?),
        None => None,
    };
    let parsed = Parsed {
        algorithm,
        signer_certificate,
        certificates,
        message_digest,
        signing_time,
        seal,
        to_be_signed: attrs.to_der().map_err(invalid)?,
        signature: si.signature.as_bytes().to_vec(),
        timestamp_token,
    };
    Ok((parsed, sd.encap_content_info.clone()))
}
