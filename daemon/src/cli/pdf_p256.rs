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

/// The CMS container with a signature time-stamp added.
pub type Stamp<'a> = &'a dyn Fn(Vec<u8>) -> Result<Vec<u8>, String>;

/// What goes into a P-256 signature besides the key.
pub struct P256Signing<'a> {
    /// The key's certificate (DER).
    pub certificate: &'a [u8],
    /// Its issuers (DER), carried in the CMS container.
    pub chain: &'a [Vec<u8>],
    /// Validation data for the document's DSS.
    pub dss: Option<pdf::Dss<'a>>,
    /// The time-stamp, and the room its token needs in `/Contents`.
    pub time_stamp: Option<(Stamp<'a>, usize)>,
}

/// Sign `input` at `placement` with the HSM's P-256 key; returns the signed PDF.
pub fn sign_pdf_p256(
    hsm: &Hsm,
    label: &str,
    signing: &P256Signing<'_>,
    input: &[u8],
    placement: &pdf::Placement,
    signing_time: u64,
) -> Result<Vec<u8>, String> {
    let certificate = signing.certificate;
    let subject = x509_cert::Certificate::from_der(certificate).map_err(err)?.tbs_certificate().subject().to_string();
    let picture = mcs_pdfseal::image::from_picture("PNG", &mcs_pdfseal::image::demo_seal_png(96)).map_err(err)?;
    let look = pdf::Appearance { image: &picture, width_pt: pdf::mm_to_pt(30.0), height_pt: pdf::mm_to_pt(30.0) };
    let certs_len = certificate.len() + signing.chain.iter().map(Vec::len).sum::<usize>();
    let fields = pdf::SignatureFields {
        field_name: "mcsd-p256",
        signer_name: &subject,
        reason: "P-256 interoperability signature",
        signing_time,
        reserve: certs_len + signing.time_stamp.map_or(0, |(_, room)| room) + 4096,
    };
    let prepared = pdf::prepare_with_dss(input, placement, &look, &fields, signing.dss.as_ref()).map_err(err)?;
    let digest = Algorithm::EcdsaP256.digest(&prepared.signed_ranges());
    let attrs = cms::signed_attributes(Algorithm::EcdsaP256, &digest, signing_time, None).map_err(err)?;
    let sig = hsm_sign(hsm, label, &cms::to_be_signed(&attrs).map_err(err)?)?;
    let mut container = cms::signed_data(Algorithm::EcdsaP256, certificate, signing.chain, attrs, &sig).map_err(err)?;
    if let Some((stamp, _)) = signing.time_stamp {
        container = stamp(container)?;
    }
    prepared.embed(&container).map_err(err)
}

/// `mcsd pdf sign-p256`: what to sign, where, and with what evidence.
pub struct SignCommand {
    pub input: std::path::PathBuf,
    pub out: std::path::PathBuf,
    /// Where to write the signer's certificate (PEM).
    pub cert_out: Option<std::path::PathBuf>,
    pub label: String,
    pub placement: pdf::Placement,
    /// The key's certificate and chain from a CA (PEM); else a self-signed certificate.
    pub chain: Option<std::path::PathBuf>,
    /// CRLs (PEM or DER) for the document's DSS.
    pub crls: Vec<std::path::PathBuf>,
    /// Time-stamp the signature with the `[tsa]` P-256 key.
    pub timestamp: bool,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A CRL file as DER: PEM (`X509 CRL`) or DER, checked to be a CRL.
fn read_crl(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use der::DecodePem;
    let bytes = read(path)?;
    let crl: x509_cert::crl::CertificateList = match x509_cert::crl::CertificateList::from_pem(&bytes) {
        Ok(crl) => crl,
        Err(_) => x509_cert::crl::CertificateList::from_der(&bytes)
            .map_err(|e| format!("{}: not a CRL (PEM or DER): {e}", path.display()))?,
    };
    crl.to_der().map_err(err)
}

/// No CA adapter: the P-256 TSA never asks one.
struct NoAdapters;

impl crate::plugins::ca::CaAdapter for NoAdapters {
    fn call_json<'a>(
        &'a self,
        adapter: &'a str,
        _op: &'a str,
        _request: serde_json::Value,
    ) -> crate::plugins::ca::CaCall<'a, serde_json::Value> {
        Box::pin(async move { Err(crate::plugins::PluginError::NotLoaded(adapter.to_owned())) })
    }
}

/// The daemon's TSA with its P-256 key, run by this command: serials come from the store
/// as the daemon's do, so they stay unique and increasing across both.
fn p256_tsa(cfg: &crate::config::Config, hsm: std::sync::Arc<Hsm>) -> Result<crate::tsa::TsaService, String> {
    let mut tsa = cfg.tsa.clone().ok_or("--timestamp needs a [tsa] section")?;
    if tsa.p256_certificate_file.is_none() {
        return Err("--timestamp needs [tsa] p256_certificate_file (the P-256 TSA key's certificate)".into());
    }
    tsa.algorithm = crate::config::TsaAlgorithm::P256;
    let store = crate::store::open_tool(&cfg.store).map_err(|e| {
        format!("the store (the TSA's serial numbers live there; a sled store is locked while the daemon runs): {e}")
    })?;
    let clock = crate::clock::system();
    let keys = crate::daemon_keys::DaemonKeys::new(store.clone(), hsm.clone(), clock.clone());
    let native: std::sync::Arc<dyn crate::hsm::NativeP256> = hsm;
    Ok(crate::tsa::TsaService::new(store, keys, Some(native), std::sync::Arc::new(NoAdapters), Some(tsa), clock))
}

/// Run `mcsd pdf sign-p256`; the line to print on success.
pub fn sign_command(cfg: &crate::config::Config, cmd: &SignCommand) -> Result<String, String> {
    let hsm = std::sync::Arc::new(Hsm::connect(&cfg.hsm).map_err(err)?);
    let input = read(&cmd.input)?;
    let (certificate, chain) = match &cmd.chain {
        Some(path) => crate::pem::load_chain_of(path, &hsm.p256_public_key(&cmd.label).map_err(err)?).map_err(err)?,
        None => (p256_certificate(&hsm, &cmd.label, "mcsd P-256 document signer")?, Vec::new()),
    };
    let crls = cmd.crls.iter().map(|p| read_crl(p)).collect::<Result<Vec<_>, _>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(err)?;
    let tsa = if cmd.timestamp { Some(p256_tsa(cfg, hsm.clone())?) } else { None };
    let tsa_cert = match &tsa {
        Some(t) => Some(runtime.block_on(t.certificate()).map_err(|e| format!("time-stamp authority: {e}"))?),
        None => None,
    };
    // The DSS: the signer's chain, the TSA's (a certificate in both is written once), the
    // CRLs given.
    let mut dss_certs = vec![certificate.clone()];
    dss_certs.extend(chain.iter().cloned());
    if let Some(t) = &tsa_cert {
        dss_certs.push(t.der.clone());
        dss_certs.extend(t.chain.iter().cloned());
    }
    let with_dss = cmd.chain.is_some() || !crls.is_empty() || tsa.is_some();
    let stamp = |container: Vec<u8>| -> Result<Vec<u8>, String> {
        let tsa = tsa.as_ref().ok_or("no TSA")?;
        runtime.block_on(tsa.stamp_container(&container, mcs_pdfseal::SHA256)).map_err(|e| format!("time-stamp: {e}"))
    };
    let room = tsa_cert.as_ref().map(crate::tsa::TsaCertificate::token_room);
    let signing = P256Signing {
        certificate: &certificate,
        chain: &chain,
        dss: with_dss.then_some(pdf::Dss { certs: &dss_certs, crls: &crls }),
        time_stamp: room.map(|r| (&stamp as Stamp<'_>, r)),
    };
    let now = crate::clock::now().max(0) as u64;
    let signed = sign_pdf_p256(&hsm, &cmd.label, &signing, &input, &cmd.placement, now)?;
    std::fs::write(&cmd.out, signed).map_err(|e| format!("{}: {e}", cmd.out.display()))?;
    if let Some(path) = &cmd.cert_out {
        let pem: String =
            std::iter::once(&certificate).chain(&chain).map(|c| mcs_pdfseal::pem("CERTIFICATE", c)).collect();
        std::fs::write(path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let what = [tsa.is_some().then_some("time-stamped"), with_dss.then_some("with a DSS")];
    let what: Vec<&str> = what.into_iter().flatten().collect();
    let what = if what.is_empty() { String::new() } else { format!(", {}", what.join(", ")) };
    Ok(format!("signed {} with HSM key `{}` (ECDSA P-256{what})", cmd.out.display(), cmd.label))
}
