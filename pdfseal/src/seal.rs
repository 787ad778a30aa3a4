//! GB/T 38540-2020 electronic seals, version 4:
//!
//! ```text
//! SESeal ::= SEQUENCE { eSealInfo SES_SealInfo, cert OCTET STRING (maker certificate),
//!                       signAlgID OBJECT IDENTIFIER, signedValue BIT STRING }
//! SES_SealInfo ::= SEQUENCE { header SES_Header, esID IA5String,
//!                             property SES_ESPropertyInfo, picture SES_ESPictrueInfo,
//!                             extDatas ExtensionDatas OPTIONAL }
//! SES_Header ::= SEQUENCE { ID IA5String ("ES"), version INTEGER (4), Vid IA5String }
//! SES_ESPropertyInfo ::= SEQUENCE { type INTEGER, name UTF8String, certListType INTEGER,
//!     certList SES_CertList, createDate, validStart, validEnd GeneralizedTime }
//! SES_CertList ::= CHOICE { certs SEQUENCE OF OCTET STRING, certDigestList ... }
//! SES_ESPictrueInfo ::= SEQUENCE { type IA5String, data OCTET STRING,
//!                                  width INTEGER, height INTEGER }   -- millimetres
//! ```
//!
//! `signedValue` is the DER SM2 signature (SM2-with-SM3, default ID) by the maker key over
//! DER(SES_SealInfo). Only `certListType` 1 (certificates) is made or read.

use std::time::Duration;

use der::asn1::{Any, BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Sequence};
use x509_cert::Certificate;

use crate::{Error, SM2_WITH_SM3};

pub const HEADER_ID: &str = "ES";
pub const VERSION: u32 = 4;

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SesHeader {
    pub id: Ia5String,
    pub version: u32,
    pub vid: Ia5String,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SesPropertyInfo {
    pub seal_type: u32,
    pub name: String,
    pub cert_list_type: u32,
    /// `certs`: the DER certificates of the keys that may sign with this seal.
    pub cert_list: Vec<OctetString>,
    pub create_date: GeneralizedTime,
    pub valid_start: GeneralizedTime,
    pub valid_end: GeneralizedTime,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SesPictureInfo {
    pub picture_type: Ia5String,
    pub data: OctetString,
    pub width: u32,
    pub height: u32,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SesSealInfo {
    pub header: SesHeader,
    pub es_id: Ia5String,
    pub property: SesPropertyInfo,
    pub picture: SesPictureInfo,
    #[asn1(optional = "true")]
    pub ext_datas: Option<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SESeal {
    pub e_seal_info: SesSealInfo,
    pub cert: OctetString,
    pub sign_alg_id: ObjectIdentifier,
    pub signed_value: BitString,
}

/// What a seal says, for building one.
pub struct SealSpec<'a> {
    pub vendor_id: &'a str,
    pub es_id: &'a str,
    /// GB/T 38540 type: 1 organisation seal, 2 personal seal.
    pub seal_type: u32,
    pub name: &'a str,
    pub signer_certificates: &'a [Vec<u8>],
    /// Unix seconds.
    pub created: u64,
    pub valid_from: u64,
    pub valid_to: u64,
    /// "PNG", "JPEG" or "SVG".
    pub picture_type: &'a str,
    pub picture: &'a [u8],
    pub width_mm: u32,
    pub height_mm: u32,
}

fn gtime(secs: u64) -> Result<GeneralizedTime, Error> {
    GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).map_err(|e| Error::Invalid(format!("time: {e}")))
}

fn ia5(s: &str) -> Result<Ia5String, Error> {
    Ia5String::new(s).map_err(|_| Error::Invalid(format!("`{s}` is not IA5 text")))
}

/// DER(SES_SealInfo) for a spec: the bytes the maker signs.
pub fn seal_info(spec: &SealSpec<'_>) -> Result<SesSealInfo, Error> {
    let certs = spec
        .signer_certificates
        .iter()
        .map(|c| OctetString::new(c.clone()).map_err(|e| Error::Invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SesSealInfo {
        header: SesHeader { id: ia5(HEADER_ID)?, version: VERSION, vid: ia5(spec.vendor_id)? },
        es_id: ia5(spec.es_id)?,
        property: SesPropertyInfo {
            seal_type: spec.seal_type,
            name: spec.name.to_owned(),
            cert_list_type: 1,
            cert_list: certs,
            create_date: gtime(spec.created)?,
            valid_start: gtime(spec.valid_from)?,
            valid_end: gtime(spec.valid_to)?,
        },
        picture: SesPictureInfo {
            picture_type: ia5(spec.picture_type)?,
            data: OctetString::new(spec.picture.to_vec()).map_err(|e| Error::Invalid(e.to_string()))?,
            width: spec.width_mm,
            height: spec.height_mm,
        },
        ext_datas: None,
    })
}

/// The finished seal: info, maker certificate and the maker's DER signature over DER(info).
pub fn assemble(info: SesSealInfo, maker_certificate: &[u8], signature_der: &[u8]) -> Result<Vec<u8>, Error> {
    let seal = SESeal {
        e_seal_info: info,
        cert: OctetString::new(maker_certificate.to_vec()).map_err(|e| Error::Invalid(e.to_string()))?,
        sign_alg_id: SM2_WITH_SM3,
        signed_value: BitString::from_bytes(signature_der).map_err(|e| Error::Invalid(e.to_string()))?,
    };
    seal.to_der().map_err(|e| Error::Invalid(e.to_string()))
}

/// A seal read back, with the facts a verifier reports.
#[derive(Debug, Clone)]
pub struct SealView {
    pub es_id: String,
    pub name: String,
    pub seal_type: u32,
    pub valid_from: u64,
    pub valid_to: u64,
    pub picture_type: String,
    pub picture: Vec<u8>,
    pub width_mm: u32,
    pub height_mm: u32,
    pub signer_certificates: Vec<Vec<u8>>,
    pub maker_certificate: Vec<u8>,
    /// Problems found by [`verify`]; empty means the seal's own signature and format hold.
    pub errors: Vec<String>,
}

pub fn parse(der: &[u8]) -> Result<SESeal, Error> {
    SESeal::from_der(der).map_err(|e| Error::Invalid(format!("not a GB/T 38540 v4 SESeal: {e}")))
}

/// Check a seal's format and the maker's signature (under the maker certificate's key,
/// default SM2 ID). Validity against a time and the maker's chain are the caller's.
pub fn verify(der: &[u8]) -> Result<SealView, Error> {
    let seal = parse(der)?;
    let info = &seal.e_seal_info;
    let mut errors = Vec::new();
    if info.header.id.as_str() != HEADER_ID {
        errors.push(format!("header ID is `{}`, not ES", info.header.id));
    }
    if info.header.version != VERSION {
        errors.push(format!("seal version {} is not 4", info.header.version));
    }
    if info.property.cert_list_type != 1 {
        errors.push("only certListType 1 (certificates) is supported".into());
    }
    if seal.sign_alg_id != SM2_WITH_SM3 {
        errors.push(format!("signature algorithm {} is not SM2-with-SM3", seal.sign_alg_id));
    }
    let info_der = info.to_der().map_err(|e| Error::Invalid(e.to_string()))?;
    match crate::sm2_public_key_of(seal.cert.as_bytes()) {
        Ok(maker) => {
            let sig = seal.signed_value.as_bytes().and_then(|b| sm2_2p::Signature::from_der(b).ok());
            match sig {
                Some(sig) if sm2_2p::verify(&maker, &sm2_2p::e_for_message(&maker, &info_der), &sig) => {}
                Some(_) => errors.push("the maker's signature over the seal does not verify".into()),
                None => errors.push("signedValue is not an SM2 signature".into()),
            }
        }
        Err(e) => errors.push(format!("maker certificate: {e}")),
    }
    let secs = |t: &GeneralizedTime| t.to_unix_duration().as_secs();
    Ok(SealView {
        es_id: info.es_id.to_string(),
        name: info.property.name.clone(),
        seal_type: info.property.seal_type,
        valid_from: secs(&info.property.valid_start),
        valid_to: secs(&info.property.valid_end),
        picture_type: info.picture.picture_type.to_string(),
        picture: info.picture.data.as_bytes().to_vec(),
        width_mm: info.picture.width,
        height_mm: info.picture.height,
        signer_certificates: info.property.cert_list.iter().map(|c| c.as_bytes().to_vec()).collect(),
        maker_certificate: seal.cert.as_bytes().to_vec(),
        errors,
    })
}

/// DER(SES_SealInfo) of an encoded seal (what the maker signed).
pub fn signed_part(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let seal = parse(der)?;
    let info = seal.e_seal_info.to_der().map_err(|e| Error::Invalid(e.to_string()))?;
    let sig =
        seal.signed_value.as_bytes().ok_or_else(|| Error::Invalid("signedValue has unused bits".into()))?.to_vec();
    Ok((info, sig))
}

/// Parse a DER certificate (convenience for callers holding seal contents).
pub fn certificate(der: &[u8]) -> Result<Certificate, Error> {
    Certificate::from_der(der).map_err(|e| Error::Invalid(format!("certificate: {e}")))
}
