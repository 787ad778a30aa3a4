//! The PDF engine with a key the HSM holds natively: ECDSA P-256 (`CKM_ECDSA`), SHA-256.
//!
//! Same `mcs_pdfseal` code path as SM2 sealing — prepare the revision, digest the
//! ByteRange, signed attributes, CMS container, embed — only the algorithm differs. Its
//! purpose is interoperability: standard PDF validators (pyHanko, poppler) know P-256 and
//! check our structure end to end. `mcsd pdf sign-p256` uses it with a self-signed
//! certificate for the HSM key (made on each run, written next to the output).

use std::str::FromStr;
use std::time::Duration;

use der::asn1::{BitString, ObjectIdentifier};
use der::{Decode, Encode};
use mcs_pdfseal::cms::{self, Algorithm};
use mcs_pdfseal::pdf;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;

use crate::hsm::Hsm;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

struct HsmSigner {
    spki: SubjectPublicKeyInfoOwned,
}

#[derive(Clone)]
struct Public(SubjectPublicKeyInfoOwned);

impl spki::EncodePublicKey for Public {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::encode_msg(&self.0)?)
    }
}

impl signature::Keypair for HsmSigner {
    type VerifyingKey = Public;
    fn verifying_key(&self) -> Public {
        Public(self.spki.clone())
    }
}

impl spki::DynSignatureAlgorithmIdentifier for HsmSigner {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(AlgorithmIdentifierOwned { oid: mcs_pdfseal::ECDSA_WITH_SHA256, parameters: None })
    }
}

/// A self-signed document-signing certificate: digitalSignature + nonRepudiation.
struct SelfSigned(Name);

impl BuilderProfile for SelfSigned {
    fn get_issuer(&self, _: &Name) -> Name {
        self.0.clone()
    }
    fn get_subject(&self) -> Name {
        self.0.clone()
    }
    fn build_extensions(
        &self,
        _: spki::SubjectPublicKeyInfoRef<'_>,
        _: spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        Ok(vec![
            BasicConstraints { ca: false, path_len_constraint: None }.to_extension(subject, &[])?,
            KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation).to_extension(subject, &[])?,
        ])
    }
}

fn hsm_sign(hsm: &Hsm, label: &str, message: &[u8]) -> Result<Vec<u8>, String> {
    let digest: [u8; 32] = Sha256::digest(message).into();
    hsm.p256_sign_der(label, &digest).map_err(err)
}

/// The SubjectPublicKeyInfo of the HSM's P-256 key `label` (made if absent).
fn p256_spki(hsm: &Hsm, label: &str) -> Result<SubjectPublicKeyInfoOwned, String> {
    let point = hsm.p256_public_key(label).map_err(err)?;
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: EC_PUBLIC_KEY,
            parameters: Some(der::Any::encode_from(&P256).map_err(err)?),
        },
        subject_public_key: BitString::from_bytes(&point).map_err(err)?,
    })
}

/// A PKCS#10 request (DER) for the HSM's P-256 key `label`, signed by it: what an
/// operator's CA certifies for the P-256 time-stamp authority (`mcsd tsa csr`).
pub fn p256_csr(hsm: &Hsm, label: &str, common_name: &str) -> Result<Vec<u8>, String> {
    let info = x509_cert::request::CertReqInfo {
        version: x509_cert::request::Version::V1,
        subject: Name::from_str(&format!("CN={common_name},O=mcsd,C=CN")).map_err(err)?,
        public_key: p256_spki(hsm, label)?,
        attributes: Default::default(),
    };
    let sig = hsm_sign(hsm, label, &info.to_der().map_err(err)?)?;
    let csr = x509_cert::request::CertReq {
        info,
        algorithm: AlgorithmIdentifierOwned { oid: mcs_pdfseal::ECDSA_WITH_SHA256, parameters: None },
        signature: BitString::from_bytes(&sig).map_err(err)?,
    };
    csr.to_der().map_err(err)
}

/// A certificate for the HSM's P-256 key `label`, signed by that key.
pub fn p256_certificate(hsm: &Hsm, label: &str, common_name: &str) -> Result<Vec<u8>, String> {
    let spki = p256_spki(hsm, label)?;
    let name = Name::from_str(&format!("CN={common_name},O=mcsd,C=CN")).map_err(err)?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(err)?;
    serial[0] &= 0x7f;
    serial[0] |= 0x10;
    let validity = x509_cert::time::Validity::from_now(Duration::from_secs(365 * 86_400)).map_err(err)?;
    let signer = HsmSigner { spki: spki.clone() };
    let mut builder = CertificateBuilder::new(
        SelfSigned(name),
        x509_cert::serial_number::SerialNumber::new(&serial).map_err(err)?,
        validity,
        spki,
    )
    .map_err(err)?;
    let tbs = builder.finalize(&signer).map_err(err)?;
    let sig = hsm_sign(hsm, label, &tbs)?;
    let cert = builder.assemble(BitString::from_bytes(&sig).map_err(err)?, &signer).map_err(err)?;
    cert.to_der().map_err(err)
}

/// Sign `input` at `placement` with the HSM's P-256 key; returns the signed PDF.
pub fn sign_pdf_p256(
    hsm: &Hsm,
    label: &str,
    certificate: &[u8],
    input: &[u8],
    placement: &pdf::Placement,
    signing_time: u64,
) -> Result<Vec<u8>, String> {
    let subject = x509_cert::Certificate::from_der(certificate).map_err(err)?.tbs_certificate().subject().to_string();
    let picture = mcs_pdfseal::image::from_picture("PNG", &mcs_pdfseal::image::demo_seal_png(96)).map_err(err)?;
    let look = pdf::Appearance { image: &picture, width_pt: pdf::mm_to_pt(30.0), height_pt: pdf::mm_to_pt(30.0) };
    let fields = pdf::SignatureFields {
        field_name: "mcsd-p256",
        signer_name: &subject,
        reason: "P-256 interoperability signature",
        signing_time,
        reserve: certificate.len() + 4096,
    };
    let prepared = pdf::prepare(input, placement, &look, &fields).map_err(err)?;
    let digest = Algorithm::EcdsaP256.digest(&prepared.signed_ranges());
    let attrs = cms::signed_attributes(Algorithm::EcdsaP256, &digest, signing_time, None).map_err(err)?;
    let sig = hsm_sign(hsm, label, &cms::to_be_signed(&attrs).map_err(err)?)?;
    let container = cms::signed_data(Algorithm::EcdsaP256, certificate, &[], attrs, &sig).map_err(err)?;
    prepared.embed(&container).map_err(err)
}
