//! RFC 3161 time stamps as pure functions over bytes: read a `TimeStampReq`, build the
//! `TSTInfo`, the signed attributes a TSA key signs and the token around its signature,
//! answer with a `TimeStampResp`, and read tokens and responses back.
//!
//! The flow of a TSA: [`parse_request`] → [`tst_info`] → [`token_signed_attributes`] →
//! `cms::to_be_signed` → (the key signs elsewhere: an HSM, or the two parties) → [`token`]
//! → [`response_granted`]. A request that cannot be served gets [`response_rejected`]; the
//! [`Error::Rejected`] that [`parse_request`] returns names the `PKIFailureInfo` to use.
//!
//! The token is a CMS `SignedData` (eContentType `id-ct-TSTInfo`) built by the same code as
//! the PDF container ([`crate::cms`]). Its signed attributes carry the ESS
//! `signingCertificateV2` (RFC 5816) that binds the TSA certificate to the signature; RFC
//! 3161 requires it, and OpenSSL's `ts -verify` refuses tokens without it.
//!
//! `genTime` is written by hand: `der`'s `GeneralizedTime` follows RFC 5280 and refuses
//! fractional seconds, which RFC 3161 allows (and a TSA with millisecond accuracy needs).

use std::time::Duration;

use der::asn1::{Any, ObjectIdentifier, OctetString, Uint};
use der::{
    DateTime, Decode, DecodeValue, Encode, EncodeValue, FixedTag, Header, Length, Reader, Sequence, Tag, Tagged, Writer,
};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::Attributes;
use x509_cert::ext::Extensions;
use x509_cert::ext::pkix::name::{GeneralName, GeneralNames};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

use crate::Error;
use crate::cms::{self, Algorithm, invalid};

/// `id-ct-TSTInfo`: the content type of a time-stamp token's `SignedData`.
pub const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// `id-aa-signingCertificateV2` (RFC 5035): the ESS attribute naming the signer's certificate.
pub const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// SHA-1, accepted in requests only (its imprints are 20 bytes).
pub const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// SHA-384.
pub const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
/// SHA-512.
pub const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// Why a request is refused: the `PKIFailureInfo` bit of the rejection (RFC 3161 §2.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailInfo {
    /// Unrecognized or unsupported hash algorithm.
    BadAlg = 0,
    /// Transaction not permitted or supported.
    BadRequest = 2,
    /// The data submitted has the wrong format.
    BadDataFormat = 5,
    /// The TSA's time source is not available.
    TimeNotAvailable = 14,
    /// The requested TSA policy is not supported.
    UnacceptedPolicy = 15,
    /// The requested extension is not supported.
    UnacceptedExtension = 16,
    /// The request cannot be handled due to system failure.
    SystemFailure = 25,
}

fn rejected(fail_info: FailInfo, reason: impl Into<String>) -> Error {
    Error::Rejected { fail_info, reason: reason.into() }
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct MessageImprint {
    hash_algorithm: AlgorithmIdentifierOwned,
    hashed_message: OctetString,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TimeStampReq {
    version: u8,
    message_imprint: MessageImprint,
    #[asn1(optional = "true")]
    req_policy: Option<ObjectIdentifier>,
    #[asn1(optional = "true")]
    nonce: Option<Uint>,
    #[asn1(default = "Default::default")]
    cert_req: bool,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    extensions: Option<Extensions>,
}

/// A time-stamp request read by [`parse_request`] (or written by [`request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeStampRequest {
    /// The hash algorithm of the imprint.
    pub imprint_alg: ObjectIdentifier,
    /// The hash of the data to time-stamp.
    pub imprint: Vec<u8>,
    /// The TSA policy asked for, if any.
    pub policy: Option<ObjectIdentifier>,
    /// The nonce (big-endian magnitude, no leading zeros) to echo in the token.
    pub nonce: Option<Vec<u8>>,
    /// Whether the token must carry the TSA's certificate.
    pub cert_req: bool,
}

/// The digest length of a hash algorithm a request may use.
fn digest_len(oid: ObjectIdentifier) -> Option<usize> {
    match oid {
        o if o == crate::SHA256 || o == crate::SM3 => Some(32),
        o if o == SHA384 => Some(48),
        o if o == SHA512 => Some(64),
        o if o == SHA1 => Some(20),
        _ => None,
    }
}

fn nonce_uint(nonce: &[u8]) -> Result<Uint, Error> {
    if nonce.is_empty() {
        return Err(Error::Invalid("an empty nonce".into()));
    }
    Uint::new(nonce).map_err(invalid)
}

/// Read a DER `TimeStampReq`. Refusals are [`Error::Rejected`] with the failure to answer:
/// a version other than 1 or an imprint of the wrong length for its algorithm
/// (`badRequest`, `badDataFormat`), an unknown hash algorithm (`badAlg`), any extension
/// (`unacceptedExtension`: none is supported).
pub fn parse_request(der: &[u8]) -> Result<TimeStampRequest, Error> {
    let req = TimeStampReq::from_der(der)
        .map_err(|e| rejected(FailInfo::BadDataFormat, format!("time-stamp request: {e}")))?;
    if req.version != 1 {
        return Err(rejected(FailInfo::BadRequest, format!("time-stamp request version {}", req.version)));
    }
    if req.extensions.is_some() {
        return Err(rejected(FailInfo::UnacceptedExtension, "time-stamp request extensions"));
    }
    let alg = &req.message_imprint.hash_algorithm;
    if alg.parameters.as_ref().is_some_and(|p| p.tag() != Tag::Null) {
        return Err(rejected(FailInfo::BadAlg, format!("parameters of hash algorithm {}", alg.oid)));
    }
    let want = digest_len(alg.oid).ok_or_else(|| rejected(FailInfo::BadAlg, format!("hash algorithm {}", alg.oid)))?;
    let imprint = req.message_imprint.hashed_message.as_bytes();
    if imprint.len() != want {
        return Err(rejected(
            FailInfo::BadDataFormat,
            format!("a {}-byte imprint for hash algorithm {} (of {want} bytes)", imprint.len(), alg.oid),
        ));
    }
    Ok(TimeStampRequest {
        imprint_alg: alg.oid,
        imprint: imprint.to_vec(),
        policy: req.req_policy,
        nonce: req.nonce.map(|n| n.as_bytes().to_vec()),
        cert_req: req.cert_req,
    })
}

/// The DER `TimeStampReq` (version 1, no extensions) for `req`: a client's side.
pub fn request(req: &TimeStampRequest) -> Result<Vec<u8>, Error> {
    TimeStampReq {
        version: 1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifierOwned { oid: req.imprint_alg, parameters: None },
            hashed_message: OctetString::new(req.imprint.clone()).map_err(invalid)?,
        },
        req_policy: req.policy,
        nonce: req.nonce.as_deref().map(nonce_uint).transpose()?,
        cert_req: req.cert_req,
        extensions: None,
    }
    .to_der()
    .map_err(invalid)
}

/// `genTime`: a GeneralizedTime in UTC with optional fractional seconds (RFC 3161 §2.4.2).
/// DER form `YYYYMMDDHHMMSS[.f]Z`: the fraction without trailing zeros, absent when zero.
/// Reading takes up to milliseconds and ignores finer digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GenTime {
    unix_ms: u64,
}

impl GenTime {
    fn text(&self) -> der::Result<String> {
        let dt = DateTime::from_unix_duration(Duration::from_secs(self.unix_ms / 1000))?;
        let mut s = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minutes(),
            dt.seconds()
        );
        let ms = self.unix_ms % 1000;
        if ms != 0 {
            s.push('.');
            s.push_str(format!("{ms:03}").trim_end_matches('0'));
        }
        s.push('Z');
        Ok(s)
    }

    fn from_text(b: &[u8]) -> Option<GenTime> {
        let (body, rest) = (b.get(..14)?, b.get(14..)?);
        if !body.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = |i: usize, len: usize| body[i..i + len].iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        let to_u8 = |v: u16| u8::try_from(v).ok();
        let dt = DateTime::new(
            n(0, 4),
            to_u8(n(4, 2))?,
            to_u8(n(6, 2))?,
            to_u8(n(8, 2))?,
            to_u8(n(10, 2))?,
            to_u8(n(12, 2))?,
        )
        .ok()?;
        let ms = match rest {
            [b'Z'] => 0,
            [b'.', frac @ .., b'Z'] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => {
                frac.iter().chain(std::iter::repeat(&b'0')).take(3).fold(0u64, |v, d| v * 10 + u64::from(d - b'0'))
            }
            _ => return None,
        };
        let secs = dt.unix_duration().as_secs();
        Some(GenTime { unix_ms: secs.checked_mul(1000)?.checked_add(ms)? })
    }
}

impl FixedTag for GenTime {
    const TAG: Tag = Tag::GeneralizedTime;
}

impl EncodeValue for GenTime {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.text()?.len())
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.text()?.as_bytes())
    }
}

impl<'a> DecodeValue<'a> for GenTime {
    type Error = der::Error;

    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let mut buf = [0u8; 32];
        let len = usize::try_from(header.length())?;
        let Some(slot) = buf.get_mut(..len) else {
            return Err(reader.error(Self::TAG.length_error()));
        };
        let text = reader.read_into(slot)?;
        GenTime::from_text(text).ok_or_else(|| reader.error(Self::TAG.value_error()))
    }
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct Accuracy {
    #[asn1(optional = "true")]
    seconds: Option<u32>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    millis: Option<u16>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    micros: Option<u16>,
}

impl Accuracy {
    fn from_ms(ms: u32) -> Accuracy {
        let nonzero = |v: u32| (v != 0).then_some(v);
        Accuracy {
            seconds: nonzero(ms / 1000),
            millis: nonzero(ms % 1000).and_then(|v| u16::try_from(v).ok()),
            micros: None,
        }
    }

    /// In milliseconds, microseconds rounded up (an accuracy is a bound).
    fn to_ms(&self) -> u32 {
        let micros = u32::from(self.micros.unwrap_or(0));
        self.seconds
            .unwrap_or(0)
            .saturating_mul(1000)
            .saturating_add(u32::from(self.millis.unwrap_or(0)))
            .saturating_add(micros.div_ceil(1000))
    }
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TstInfo {
    version: u8,
    policy: ObjectIdentifier,
    message_imprint: MessageImprint,
    serial_number: Uint,
    gen_time: GenTime,
    #[asn1(optional = "true")]
    accuracy: Option<Accuracy>,
    #[asn1(default = "Default::default")]
    ordering: bool,
    #[asn1(optional = "true")]
    nonce: Option<Uint>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    tsa: Option<GeneralName>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    extensions: Option<Extensions>,
}

/// What a TSA puts in a token's `TSTInfo` (version 1, `ordering` false, no extensions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TstInfoSpec {
    /// The TSA policy under which the token is issued.
    pub policy: ObjectIdentifier,
    /// The request's imprint algorithm.
    pub imprint_alg: ObjectIdentifier,
    /// The request's imprint.
    pub imprint: Vec<u8>,
    /// Unique per token; must be positive.
    pub serial: u128,
    /// The time, Unix milliseconds (not before 1970); the fraction is written when non-zero.
    pub gen_time_unix_ms: i64,
    /// The bound on the time's error, if stated.
    pub accuracy_ms: Option<u32>,
    /// The request's nonce, echoed.
    pub nonce: Option<Vec<u8>>,
    /// The TSA's name (a `directoryName`; OpenSSL checks it is the signer's subject).
    pub tsa_name: Option<Name>,
}

/// The DER `TSTInfo` of a token.
pub fn tst_info(spec: &TstInfoSpec) -> Result<Vec<u8>, Error> {
    if spec.serial == 0 {
        return Err(Error::Invalid("a time-stamp serial number must be positive".into()));
    }
    let unix_ms =
        u64::try_from(spec.gen_time_unix_ms).map_err(|_| Error::Invalid("a time-stamp time before 1970".into()))?;
    TstInfo {
        version: 1,
        policy: spec.policy,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifierOwned { oid: spec.imprint_alg, parameters: None },
            hashed_message: OctetString::new(spec.imprint.clone()).map_err(invalid)?,
        },
        serial_number: Uint::new(&spec.serial.to_be_bytes()).map_err(invalid)?,
        gen_time: GenTime { unix_ms },
        accuracy: spec.accuracy_ms.map(Accuracy::from_ms),
        ordering: false,
        nonce: spec.nonce.as_deref().map(nonce_uint).transpose()?,
        tsa: spec.tsa_name.clone().map(GeneralName::DirectoryName),
        extensions: None,
    }
    .to_der()
    .map_err(invalid)
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct IssuerSerial {
    issuer: GeneralNames,
    serial_number: SerialNumber,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    /// Absent means SHA-256 (the DER default).
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<IssuerSerial>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    policies: Option<Vec<Any>>,
}

fn certificate(der: &[u8]) -> Result<Certificate, Error> {
    Certificate::from_der(der).map_err(|e| Error::Invalid(format!("certificate: {e}")))
}

/// The signed attributes of a token: content type `id-ct-TSTInfo`, the message digest of
/// `tst_info_der` under `alg`, and the ESS `signingCertificateV2` naming `tsa_cert_der`
/// (SHA-256 certificate hash, issuer and serial number).
pub fn token_signed_attributes(alg: Algorithm, tst_info_der: &[u8], tsa_cert_der: &[u8]) -> Result<Attributes, Error> {
    let cert = certificate(tsa_cert_der)?;
    let ess = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            hash_algorithm: None,
            cert_hash: OctetString::new(Algorithm::EcdsaP256.digest(&[tsa_cert_der])).map_err(invalid)?,
            issuer_serial: Some(IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(cert.tbs_certificate().issuer().clone())],
                serial_number: cert.tbs_certificate().serial_number().clone(),
            }),
        }],
        policies: None,
    };
    let digest = OctetString::new(alg.digest(&[tst_info_der])).map_err(invalid)?;
    let mut attrs = Attributes::new();
    for (oid, value) in [
        (cms::ID_CONTENT_TYPE, Any::encode_from(&ID_CT_TST_INFO)),
        (cms::ID_MESSAGE_DIGEST, Any::encode_from(&digest)),
        (ID_AA_SIGNING_CERTIFICATE_V2, Any::encode_from(&ess)),
    ] {
        attrs.insert(cms::attribute(oid, value.map_err(invalid)?)?).map_err(invalid)?;
    }
    Ok(attrs)
}

/// The time-stamp token: a `ContentInfo` whose `SignedData` (version 3) encapsulates
/// `tst_info_der` and has one `SignerInfo` with `attrs` (from [`token_signed_attributes`])
/// and the TSA's `signature_der` over them. It carries `tsa_cert_der` and `chain` when
/// `with_certs` (the request's `certReq`; RFC 3161 §2.4.1: else no `certificates` at all).
pub fn token(
    alg: Algorithm,
    tsa_cert_der: &[u8],
    chain: &[Vec<u8>],
    tst_info_der: &[u8],
    attrs: Attributes,
    signature_der: &[u8],
    with_certs: bool,
) -> Result<Vec<u8>, Error> {
    cms::assemble(
        &cms::Encapsulated { content_type: ID_CT_TST_INFO, content: Some(tst_info_der) },
        cms::Signer {
            alg,
            cert: tsa_cert_der,
            more_certs: chain,
            signed: attrs,
            signature: signature_der,
            unsigned: None,
            carry_certs: with_certs,
        },
    )
}

/// DER tag-length-value; the responses are built by hand so that they cannot fail.
fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    parts.iter().for_each(|p| out.extend_from_slice(p));
    out
}

const SEQUENCE: u8 = 0x30;

/// A `TimeStampResp` granting `token_der` (a `ContentInfo` from [`token`]): status 0.
pub fn response_granted(token_der: &[u8]) -> Vec<u8> {
    let status = tlv(SEQUENCE, &[&[0x02, 0x01, 0x00]]);
    tlv(SEQUENCE, &[&status, token_der])
}

/// A `TimeStampResp` refusing a request: status rejection (2), `text` as the
/// `PKIFreeText`, and the `failInfo` bit.
pub fn response_rejected(fail_info: FailInfo, text: &str) -> Vec<u8> {
    let bit = fail_info as usize;
    // A named-bit BIT STRING in DER has no trailing zero bits: the last byte holds ours.
    let mut bits = vec![0u8; bit / 8 + 1];
    bits[bit / 8] = 0x80 >> (bit % 8);
    let unused = [(7 - bit % 8) as u8];
    let free_text = tlv(SEQUENCE, &[&tlv(0x0C, &[text.as_bytes()])]);
    let status = tlv(SEQUENCE, &[&[0x02, 0x01, 0x02], &free_text, &tlv(0x03, &[&unused, &bits])]);
    tlv(SEQUENCE, &[&status])
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct PkiStatusInfo {
    status: u8,
    #[asn1(optional = "true")]
    status_string: Option<Vec<String>>,
    #[asn1(optional = "true")]
    fail_info: Option<der::asn1::BitString>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TimeStampResp {
    status: PkiStatusInfo,
    #[asn1(optional = "true")]
    time_stamp_token: Option<Any>,
}

/// Read a `TimeStampResp`: its `PKIStatus` and the token (`ContentInfo` DER), if any.
pub fn parse_response(der: &[u8]) -> Result<(u8, Option<Vec<u8>>), Error> {
    let resp = TimeStampResp::from_der(der).map_err(|e| Error::Invalid(format!("time-stamp response: {e}")))?;
    let token = resp.time_stamp_token.map(|t| t.to_der()).transpose().map_err(invalid)?;
    Ok((resp.status.status, token))
}

/// A time-stamp token read back by [`parse_token`].
#[derive(Clone, Debug)]
pub struct TokenView {
    /// `genTime`, Unix milliseconds.
    pub gen_time_unix_ms: i64,
    /// The serial number (big-endian, no leading zeros).
    pub serial: Vec<u8>,
    /// The TSA policy.
    pub policy: ObjectIdentifier,
    /// The imprint's hash algorithm.
    pub imprint_alg: ObjectIdentifier,
    /// The imprint: the hash of the time-stamped data.
    pub imprint: Vec<u8>,
    /// The nonce echoed from the request.
    pub nonce: Option<Vec<u8>>,
    /// The stated accuracy, milliseconds (microseconds rounded up).
    pub accuracy_ms: Option<u32>,
    /// The TSA name, when it is a `directoryName`.
    pub tsa_name: Option<Name>,
    /// The signer's certificate DER.
    pub signer_certificate: Vec<u8>,
    /// Every certificate the token carries, DER.
    pub certificates: Vec<Vec<u8>>,
    /// The signer's algorithms.
    pub algorithm: Algorithm,
    /// The signer's digest algorithm.
    pub digest_alg: ObjectIdentifier,
    /// The signer's signature algorithm.
    pub signature_alg: ObjectIdentifier,
    /// DER of the signed attributes as a SET: what the signature is over.
    pub to_be_signed: Vec<u8>,
    /// The signature (DER).
    pub signature: Vec<u8>,
    /// The `TSTInfo` DER (the signed content).
    pub tst_info: Vec<u8>,
}

impl TokenView {
    /// Whether the imprint is the digest of `data` (SHA-256 or SM3 imprints only).
    pub fn imprint_matches(&self, data: &[u8]) -> bool {
        imprint_digest(self.imprint_alg, data).is_some_and(|d| d == self.imprint)
    }
}

/// Read a time-stamp token (`ContentInfo` DER; trailing zero padding allowed) and check
/// what needs no key: the content is a `TSTInfo` version 1, the content-type attribute says
/// so, the message digest is the digest of the `TSTInfo`, and the ESS
/// `signingCertificateV2`, when present, names the signer's certificate. The signature is
/// the caller's to verify ([`TokenView::to_be_signed`], [`TokenView::signature`]). Signers
/// other than SM2 and ECDSA P-256 are unsupported.
pub fn parse_token(der: &[u8]) -> Result<TokenView, Error> {
    let (parsed, content) = cms::open(der)?;
    if content.econtent_type != ID_CT_TST_INFO {
        return Err(Error::Invalid(format!("token content type {}", content.econtent_type)));
    }
    let tst_der = content
        .econtent
        .as_ref()
        .and_then(|c| c.decode_as::<OctetString>().ok())
        .map(|o| o.as_bytes().to_vec())
        .ok_or_else(|| Error::Invalid("token without its TSTInfo".into()))?;
    if parsed.algorithm.digest(&[&tst_der]) != parsed.message_digest {
        return Err(Error::Invalid("the token's message digest is not that of its TSTInfo".into()));
    }
    let attrs = Attributes::from_der(&parsed.to_be_signed).map_err(invalid)?;
    let content_type = cms::single_value(&attrs, cms::ID_CONTENT_TYPE).and_then(|v| v.decode_as().ok());
    if content_type != Some(ID_CT_TST_INFO) {
        return Err(Error::Invalid("the token's content-type attribute is not id-ct-TSTInfo".into()));
    }
    if let Some(ess) = cms::single_value(&attrs, ID_AA_SIGNING_CERTIFICATE_V2) {
        check_signing_certificate(ess, &parsed.signer_certificate)?;
    }
    let tst = TstInfo::from_der(&tst_der).map_err(|e| Error::Invalid(format!("TSTInfo: {e}")))?;
    if tst.version != 1 {
        return Err(Error::Invalid(format!("TSTInfo version {}", tst.version)));
    }
    let gen_time_unix_ms =
        i64::try_from(tst.gen_time.unix_ms).map_err(|_| Error::Invalid("genTime out of range".into()))?;
    Ok(TokenView {
        gen_time_unix_ms,
        serial: tst.serial_number.as_bytes().to_vec(),
        policy: tst.policy,
        imprint_alg: tst.message_imprint.hash_algorithm.oid,
        imprint: tst.message_imprint.hashed_message.as_bytes().to_vec(),
        nonce: tst.nonce.map(|n| n.as_bytes().to_vec()),
        accuracy_ms: tst.accuracy.as_ref().map(Accuracy::to_ms),
        tsa_name: match tst.tsa {
            Some(GeneralName::DirectoryName(name)) => Some(name),
            _ => None,
        },
        signer_certificate: parsed.signer_certificate,
        certificates: parsed.certificates,
        algorithm: parsed.algorithm,
        digest_alg: parsed.algorithm.digest_oid(),
        signature_alg: parsed.algorithm.signature_oid(),
        to_be_signed: parsed.to_be_signed,
        signature: parsed.signature,
        tst_info: tst_der,
    })
}

/// The first ESSCertIDv2 must be the signer's certificate (RFC 5035 §5.4.1.1).
fn check_signing_certificate(ess: &Any, signer_der: &[u8]) -> Result<(), Error> {
    let ess: SigningCertificateV2 =
        ess.decode_as().map_err(|e| Error::Invalid(format!("signingCertificateV2: {e}")))?;
    let first = ess.certs.first().ok_or_else(|| Error::Invalid("an empty signingCertificateV2".into()))?;
    let alg = first.hash_algorithm.as_ref().map_or(crate::SHA256, |a| a.oid);
    let hash =
        imprint_digest(alg, signer_der).ok_or_else(|| Error::Unsupported(format!("ESS hash algorithm {alg}")))?;
    if hash != first.cert_hash.as_bytes() {
        return Err(Error::Invalid("signingCertificateV2 names another certificate".into()));
    }
    if let Some(is) = &first.issuer_serial {
        let cert = certificate(signer_der)?;
        let tbs = cert.tbs_certificate();
        let issuer_matches = matches!(is.issuer.as_slice(), [GeneralName::DirectoryName(n)] if n == tbs.issuer());
        if !issuer_matches || &is.serial_number != tbs.serial_number() {
            return Err(Error::Invalid("signingCertificateV2 names another issuer or serial number".into()));
        }
    }
    Ok(())
}

/// The digest of `data` under a SHA-256 or SM3 imprint algorithm; `None` for any other.
pub fn imprint_digest(alg_oid: ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    Algorithm::from_digest_oid(alg_oid).map(|a| a.digest(&[data]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen_time_der(unix_ms: u64) -> Vec<u8> {
        GenTime { unix_ms }.to_der().unwrap()
    }

    #[test]
    fn gen_time_writes_the_fraction_only_when_there_is_one() {
        // 2026-11-23T00:00:00Z
        let t = 1_795_392_000_000;
        assert_eq!(&gen_time_der(t)[2..], b"20261123000000Z");
        assert_eq!(&gen_time_der(t + 5)[2..], b"20261123000000.005Z");
        assert_eq!(&gen_time_der(t + 120)[2..], b"20261123000000.12Z");
        assert_eq!(&gen_time_der(t + 500)[2..], b"20261123000000.5Z");
        assert_eq!(gen_time_der(t + 999)[..2], [0x18, 19]);
        for ms in [t, t + 5, t + 120, t + 999] {
            assert_eq!(GenTime::from_der(&gen_time_der(ms)).unwrap().unix_ms, ms);
        }
    }

    #[test]
    fn gen_time_reads_finer_fractions_and_refuses_other_forms() {
        assert_eq!(GenTime::from_text(b"19700101000001.123456Z").map(|t| t.unix_ms), Some(1123));
        for bad in [&b"19700101000001"[..], b"19700101000001.Z", b"19700101000001+0800", b"1970010100000aZ", b"1970Z"] {
            assert_eq!(GenTime::from_text(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn accuracy_splits_seconds_and_millis() {
        assert_eq!(Accuracy::from_ms(1500), Accuracy { seconds: Some(1), millis: Some(500), micros: None });
        assert_eq!(Accuracy::from_ms(2000), Accuracy { seconds: Some(2), millis: None, micros: None });
        assert_eq!(Accuracy { seconds: None, millis: Some(1), micros: Some(1) }.to_ms(), 2);
    }

    #[test]
    fn rejections_carry_a_minimal_named_bit_string() {
        let der = response_rejected(FailInfo::BadAlg, "x");
        let resp = TimeStampResp::from_der(&der).unwrap();
        assert_eq!(resp.status.status, 2);
        assert_eq!(resp.status.status_string, Some(vec!["x".to_string()]));
        let bits = resp.status.fail_info.unwrap();
        assert_eq!((bits.raw_bytes(), bits.unused_bits()), (&[0x80][..], 7));
        let bits = TimeStampResp::from_der(&response_rejected(FailInfo::SystemFailure, "")).unwrap().status.fail_info;
        assert_eq!(bits.as_ref().map(|b| (b.raw_bytes().to_vec(), b.unused_bits())), Some((vec![0, 0, 0, 0x40], 6)));
        let long = "z".repeat(300);
        assert_eq!(parse_response(&response_rejected(FailInfo::BadRequest, &long)).unwrap(), (2, None));
    }
}
