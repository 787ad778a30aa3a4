//! `local-ca`: an SM2 certificate authority inside mcsd.
//!
//! Its key is a daemon-held key (default name `local-ca`), wrapped by the HSM like every
//! share; this adapter never sees it and signs through the host's `sign` callback
//! (SM2-with-SM3, OID 1.2.156.10197.1.501, default ID). It issues X.509 v3 leaves directly
//! from its self-signed root (OpenSSL applies the SM2 ID only at depth 0, openssl#24167),
//! for the profiles `person`, `org`, `operator` and `tsa` (a time-stamping key: the critical
//! `timeStamping` extended key usage only), with subjects in the manuals' style,
//! after checking the CSR's proof of possession, and publishes a signed CRL.
//!
//! State: its root certificate, the index of the serials it issued and its revocations
//! live in the host's key-value store (ABI 2), durable before it answers, so that every
//! mcsd node on one shared database runs the same CA:
//! - `root` → the root certificate (DER). The first node to start makes it; a node that
//!   loses that race (compare-and-swap from absent) takes the winner's.
//! - `cert/<serial hex>` → what was issued (JSON, written once, from absent: a serial is
//!   never issued twice, even by two nodes).
//! - `crl` → every revocation (JSON), changed by compare-and-swap loops, so two nodes
//!   revoking at once both land. It is one value, so it holds at most what fits in
//!   `KV_MAX_VALUE` (1 MiB: some ten thousand revocations); a revocation past that fails
//!   with a message rather than being dropped.
//!
//! Every value carries a format version (`v`); one it does not know is refused.
//!
//! Before ABI 2 the state lived in files under `state_dir` (`ca.der`, `index.json`). If
//! `state_dir` is still configured and holds them while the store has no root yet, they
//! are imported at start (every serial and revocation, then the root: a start cut short
//! imports again); the files are left as they were, and are not read again once the store
//! has this CA's root.
//!
//! Config: `{ "key": "local-ca", "ca_name": "mcsd Local SM2 CA", "crl_days": 7 }`, and
//! `state_dir` only to import the files of an older version.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use der::asn1::BitString;
use der::{Decode, Encode};
use mcs_plugin_abi::{Adapter, CallError, HostHandle, KeyValue, export_adapter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::{Certificate, request::CertReq};

/// What [`LocalCa::open`] keeps its state in; [`MemoryKv`] for a CA run in process.
pub use mcs_plugin_abi::{KeyValue as CaState, MemoryKv};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// SM2 signature with SM3 (GB/T 35276).
pub const SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
const SM2_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

fn failed(e: impl std::fmt::Display) -> CallError {
    CallError::Failed(e.to_string())
}

/// The CA as a signer for the certificate builder: its public key, and the algorithm id;
/// the signature itself is made by the host.
struct CaSigner {
    spki: SubjectPublicKeyInfoOwned,
}

#[derive(Clone)]
struct CaPublicKey(SubjectPublicKeyInfoOwned);

impl spki::EncodePublicKey for CaPublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::encode_msg(&self.0)?)
    }
}

impl signature::Keypair for CaSigner {
    type VerifyingKey = CaPublicKey;
    fn verifying_key(&self) -> CaPublicKey {
        CaPublicKey(self.spki.clone())
    }
}

impl spki::DynSignatureAlgorithmIdentifier for CaSigner {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(AlgorithmIdentifierOwned { oid: SM2_WITH_SM3, parameters: None })
    }
}

fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec()
}

/// Subject, issuer and extensions of what this CA issues.
struct Profile {
    subject: Name,
    issuer: Option<Name>,
    ca: bool,
    issuer_key_id: Vec<u8>,
    /// Profile `tsa`: a time-stamping key (RFC 3161 §2.3: the only extended key usage is
    /// `timeStamping`, critical; the key signs only).
    time_stamping: bool,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, subject: &Name) -> Name {
        self.issuer.clone().unwrap_or_else(|| subject.clone())
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        use sha2::Digest;
        let subject = tbs.subject();
        let ski = sha2::Sha256::digest(spk.subject_public_key.raw_bytes())[..20].to_vec();
        let usage = if self.ca {
            KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign | KeyUsages::DigitalSignature)
        } else if self.time_stamping {
            KeyUsage(KeyUsages::DigitalSignature | KeyUsages::NonRepudiation)
        } else {
            KeyUsage(
                KeyUsages::DigitalSignature
                    | KeyUsages::NonRepudiation
                    | KeyUsages::KeyEncipherment
                    | KeyUsages::DataEncipherment
                    | KeyUsages::KeyAgreement,
            )
        };
        let mut exts = vec![
            BasicConstraints { ca: self.ca, path_len_constraint: None }.to_extension(subject, &[])?,
            usage.to_extension(subject, &[])?,
            SubjectKeyIdentifier(der::asn1::OctetString::new(ski)?).to_extension(subject, &[])?,
        ];
        if !self.ca {
            let aki = AuthorityKeyIdentifier {
                key_identifier: Some(der::asn1::OctetString::new(self.issuer_key_id.clone())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            };
            exts.push(aki.to_extension(subject, &[])?);
        }
        if self.time_stamping {
            const TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
            let mut eku = x509_cert::ext::pkix::ExtendedKeyUsage(vec![TIME_STAMPING]).to_extension(subject, &[])?;
            eku.critical = true;
            exts.push(eku);
        }
        Ok(exts)
    }
}

/// The index file of the versions that kept their state in `state_dir`, for the import.
#[derive(Debug, Clone, Default, Deserialize)]
struct FileIndex {
    /// serial (hex) → issued certificate facts.
    issued: BTreeMap<String, FileIssued>,
}

#[derive(Debug, Clone, Deserialize)]
struct FileIssued {
    subject: String,
    not_after: String,
    revoked: Option<Revocation>,
}

/// The format of the values this version writes.
const FORMAT: u32 = 1;
const ROOT: &[u8] = b"root";
const CRL: &[u8] = b"crl";

fn cert_key(serial_hex: &str) -> Vec<u8> {
    format!("cert/{serial_hex}").into_bytes()
}

/// `cert/<serial>`: one issued certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Issued {
    v: u32,
    subject: String,
    not_after: String,
}

/// `crl`: every revocation, by serial (hex).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Revocations {
    v: u32,
    revoked: BTreeMap<String, Revocation>,
    /// Certificates on hold (serial → since, unix seconds): listed in the CRL with reason
    /// `certificateHold` until released or revoked. Absent in states from before holds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    held: BTreeMap<String, u64>,
}

impl Revocations {
    fn empty() -> Revocations {
        Revocations { v: FORMAT, revoked: BTreeMap::new(), held: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Revocation {
    reason: String,
    /// Unix seconds.
    at: u64,
}

/// A stored value of this CA, refused if its format is not ours.
fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Format {
        v: u32,
    }
    let format: Format = serde_json::from_slice(bytes).map_err(|e| format!("stored {what}: {e}"))?;
    if format.v != FORMAT {
        return Err(format!("stored {what} has format {}, this local-ca reads {FORMAT}", format.v));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("stored {what}: {e}"))
}

/// How many times a compare-and-swap loop re-reads before it gives up: each retry means
/// another writer's change landed, so only a storm of them gets here.
const CAS_ROUNDS: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Where an older version kept its files: imported once, then not read (crate docs).
    #[serde(default)]
    state_dir: Option<PathBuf>,
    /// The daemon-held key's name (for the [`HostKey`] `Adapter::new` builds).
    #[serde(default = "default_key")]
    key: String,
    #[serde(default = "default_ca_name")]
    ca_name: String,
    #[serde(default = "default_crl_days")]
    crl_days: u64,
}

fn parse_config(config: &[u8]) -> Result<Config, String> {
    serde_json::from_slice(config).map_err(|e| format!("local-ca config: {e}"))
}

fn default_key() -> String {
    "local-ca".into()
}
fn default_ca_name() -> String {
    "mcsd Local SM2 CA".into()
}
fn default_crl_days() -> u64 {
    7
}

/// Where the CA's key lives. In mcsd it is a daemon-held key reached through the host
/// callbacks ([`HostKey`]); a test RA can run the same engine on an in-memory key.
pub trait CaKey: Send + Sync + 'static {
    /// SM2-with-SM3 signature (default ID), DER `SEQUENCE { r, s }`.
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, String>;
    /// The key's SubjectPublicKeyInfo, DER.
    fn public_key(&self) -> Result<Vec<u8>, String>;
    fn log(&self, _msg: &str) {}
}

/// A CA key held in this process's memory: for the tests' remote CA and the fuzz seeds,
/// never for a CA the daemon runs (that key stays daemon-held, behind the host).
pub struct MemoryKey(pub sm2_2p::DaemonKey);

impl CaKey for MemoryKey {
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.0.sign(tbs).to_der())
    }
    fn public_key(&self) -> Result<Vec<u8>, String> {
        Ok(sm2_2p::spki_der(&self.0.public()))
    }
}

/// A daemon-held key, used through the host's callbacks.
pub struct HostKey {
    host: HostHandle,
    name: String,
}

impl CaKey for HostKey {
    fn sign(&self, tbs: &[u8]) -> Result<Vec<u8>, String> {
        self.host.sign(&self.name, tbs)
    }
    fn public_key(&self) -> Result<Vec<u8>, String> {
        self.host.public_key(&self.name)
    }
    fn log(&self, msg: &str) {
        self.host.log(3, msg)
    }
}

pub struct LocalCa {
    key: Box<dyn CaKey>,
    /// Root, serials and revocations (see the crate docs).
    kv: Box<dyn KeyValue>,
    cfg: Config,
    root: Certificate,
    root_der: Vec<u8>,
}

// An adapter is a library of its own and does not link mcsd's clock; this is its one reader.
#[allow(clippy::disallowed_methods)]
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn random_serial() -> Result<SerialNumber, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| e.to_string())?;
    b[0] &= 0x7f;
    b[0] |= 0x10;
    SerialNumber::new(&b).map_err(|e| e.to_string())
}

/// RFC 4514 attribute values need `,+"\<>;=` escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if ",+\"\\<>;=".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The subject for a profile, in the style of the manuals.
fn subject_for(profile: &str, s: &Value, serial_hex: &str) -> Result<String, String> {
    let get = |k: &str| s.get(k).and_then(Value::as_str).map(escape);
    let name = get("name").ok_or("subject.name is required")?;
    let short = &serial_hex[serial_hex.len().saturating_sub(8)..];
    Ok(match profile {
        "person" => match get("id_number") {
            Some(id) => format!("CN={name}@{id}@{short},C=CN"),
            None => format!("CN={name}@{short},C=CN"),
        },
        "org" => {
            let org = get("org_name").ok_or("org profile needs subject.org_name")?;
            let code = get("credit_code").ok_or("org profile needs subject.credit_code")?;
            format!("CN={short}@{org}@N{code}@1,O={org},C=CN")
        }
        "operator" | "tsa" => {
            let org = get("org_name").unwrap_or_else(|| name.clone());
            format!("CN={name}@{org}@{short},O={org},C=CN")
        }
        other => return Err(format!("unknown profile `{other}`")),
    })
}

fn is_sm2_spki(spki: &SubjectPublicKeyInfoOwned) -> Option<sm2_2p::AffinePoint> {
    let params = spki.algorithm.parameters.as_ref()?.decode_as::<ObjectIdentifier>().ok()?;
    if spki.algorithm.oid != EC_PUBLIC_KEY || params != SM2_CURVE {
        return None;
    }
    sm2_2p::point_from_sec1(spki.subject_public_key.raw_bytes()).ok()
}

/// Change the revocations by compare-and-swap until the change lands on the latest ones:
/// a concurrent writer (another node) is never overwritten. `change` says whether to write.
fn update_revocations(kv: &dyn KeyValue, mut change: impl FnMut(&mut Revocations) -> bool) -> Result<(), String> {
    for _ in 0..CAS_ROUNDS {
        let stored = kv.get(CRL)?;
        let mut revocations = match &stored {
            Some(bytes) => decode::<Revocations>("CRL state", bytes)?,
            None => Revocations::empty(),
        };
        if !change(&mut revocations) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&revocations).map_err(|e| e.to_string())?;
        if bytes.len() > mcs_plugin_abi::KV_MAX_VALUE {
            return Err(format!(
                "the CRL state would exceed {} bytes with {} revocations; not revoked",
                mcs_plugin_abi::KV_MAX_VALUE,
                revocations.revoked.len()
            ));
        }
        if kv.cas(CRL, stored.as_deref(), &bytes)? {
            return Ok(());
        }
    }
    Err(format!("the CRL state kept changing under {CAS_ROUNDS} attempts; not revoked"))
}

impl LocalCa {
    fn issued(&self, serial_hex: &str) -> Result<Option<Issued>, String> {
        self.kv.get(&cert_key(serial_hex))?.map(|bytes| decode("certificate record", &bytes)).transpose()
    }

    fn revocations(&self) -> Result<Revocations, String> {
        Ok(match self.kv.get(CRL)? {
            Some(bytes) => decode("CRL state", &bytes)?,
            None => Revocations::empty(),
        })
    }

    fn sign_builder<P: BuilderProfile>(
        key: &dyn CaKey,
        mut builder: CertificateBuilder<P>,
        signer: &CaSigner,
    ) -> Result<Certificate, String> {
        let tbs = builder.finalize(signer).map_err(|e| e.to_string())?;
        let sig = key.sign(&tbs)?;
        let bits = BitString::from_bytes(&sig).map_err(|e| e.to_string())?;
        builder.assemble(bits, signer).map_err(|e| e.to_string())
    }

    fn issue(&self, req: &Value) -> Result<Value, CallError> {
        let csr_der = B64.decode(req["csr"].as_str().ok_or_else(|| failed("csr is required"))?).map_err(failed)?;
        let csr = CertReq::from_der(&csr_der).map_err(|e| failed(format!("CSR: {e}")))?;
        let public = is_sm2_spki(&csr.info.public_key).ok_or_else(|| failed("CSR key is not an SM2 key"))?;
        if csr.algorithm.oid != SM2_WITH_SM3 {
            return Err(failed("CSR is not signed with SM2-with-SM3"));
        }
        // Proof of possession: the CSR verifies under its own key (default SM2 ID).
        let cri = csr.info.to_der().map_err(failed)?;
        let sig = sm2_2p::Signature::from_der(csr.signature.raw_bytes())
            .map_err(|e| failed(format!("CSR signature: {e}")))?;
        if !sm2_2p::verify(&public, &sm2_2p::e_for_message(&public, &cri), &sig) {
            return Err(failed("CSR signature does not verify (no proof of possession)"));
        }
        let profile = req["profile"].as_str().unwrap_or("person");
        let days = req["validity_days"]
            .as_u64()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| failed("validity_days must be 1..=3650"))?;
        // A random 127-bit serial; claimed in the store before it is used, so a collision
        // (another node, however unlikely) means a new draw, never a serial issued twice.
        let (serial, serial_hex) = loop {
            let serial = random_serial().map_err(failed)?;
            let serial_hex = hex::encode(serial.as_bytes());
            if self.issued(&serial_hex).map_err(failed)?.is_none() {
                break (serial, serial_hex);
            }
        };
        let subject = subject_for(profile, &req["subject"], &serial_hex).map_err(failed)?;
        let name = Name::from_str(&subject).map_err(|e| failed(format!("subject `{subject}`: {e}")))?;
        let signer = CaSigner { spki: self.root.tbs_certificate().subject_public_key_info().clone() };
        let profile = Profile {
            subject: name,
            issuer: Some(self.root.tbs_certificate().subject().clone()),
            ca: false,
            issuer_key_id: key_id(&signer.spki),
            time_stamping: profile == "tsa",
        };
        let validity = Validity::from_now(Duration::from_secs(days * 86_400)).map_err(failed)?;
        let builder =
            CertificateBuilder::new(profile, serial, validity, csr.info.public_key.clone()).map_err(failed)?;
        let cert = Self::sign_builder(&*self.key, builder, &signer).map_err(failed)?;
        let cert_der = cert.to_der().map_err(failed)?;
        let not_after = cert.tbs_certificate().validity().not_after.to_unix_duration().as_secs();
        let record = Issued { v: FORMAT, subject: subject.clone(), not_after: not_after.to_string() };
        let record = serde_json::to_vec(&record).map_err(failed)?;
        // In the index before anyone sees the certificate: a certificate out there that
        // the index does not know could not be revoked.
        if !self.kv.cas(&cert_key(&serial_hex), None, &record).map_err(failed)? {
            return Err(failed(format!("serial {serial_hex} was issued meanwhile; ask again")));
        }
        self.key.log(&format!("local-ca issued {serial_hex} to {subject}"));
        Ok(json!({
            "certificate": B64.encode(&cert_der),
            "chain": [B64.encode(&self.root_der)],
            "serial": serial_hex,
            "subject": subject,
            "not_after": not_after,
        }))
    }

    fn revoke(&self, req: &Value) -> Result<Value, CallError> {
        let serial = req["serial"].as_str().ok_or_else(|| failed("serial is required"))?.to_ascii_lowercase();
        let reason = req["reason"].as_str().unwrap_or("unspecified").to_owned();
        if self.issued(&serial).map_err(failed)?.is_none() {
            return Err(failed(format!("serial {serial} was not issued here")));
        }
        let at = now();
        // The first revocation stands: a second one (here or on another node) changes nothing.
        update_revocations(&*self.kv, |r| {
            if r.revoked.contains_key(&serial) {
                return false;
            }
            r.held.remove(&serial);
            r.revoked.insert(serial.clone(), Revocation { reason: reason.clone(), at });
            true
        })
        .map_err(failed)?;
        Ok(json!({}))
    }

    /// `hold` (`on`) or `release`: the certificate listed with reason `certificateHold`, or
    /// not. Holding a held certificate or releasing one not held changes nothing; a revoked
    /// certificate cannot be held or released.
    fn hold(&self, req: &Value, on: bool) -> Result<Value, CallError> {
        let serial = req["serial"].as_str().ok_or_else(|| failed("serial is required"))?.to_ascii_lowercase();
        if self.issued(&serial).map_err(failed)?.is_none() {
            return Err(failed(format!("serial {serial} was not issued here")));
        }
        let at = now();
        let mut revoked = false;
        update_revocations(&*self.kv, |r| {
            revoked = r.revoked.contains_key(&serial);
            match (revoked, on) {
                (true, _) => false,
                (false, true) => r.held.insert(serial.clone(), at).is_none(),
                (false, false) => r.held.remove(&serial).is_some(),
            }
        })
        .map_err(failed)?;
        if revoked {
            return Err(failed(format!("serial {serial} is revoked")));
        }
        Ok(json!({}))
    }

    fn status(&self, req: &Value) -> Result<Value, CallError> {
        let serial = req["serial"].as_str().ok_or_else(|| failed("serial is required"))?.to_ascii_lowercase();
        if self.issued(&serial).map_err(failed)?.is_none() {
            return Ok(json!({ "status": "unknown" }));
        }
        let revocations = self.revocations().map_err(failed)?;
        Ok(match revocations.revoked.get(&serial) {
            Some(r) => json!({ "status": "revoked", "reason": r.reason }),
            None if revocations.held.contains_key(&serial) => {
                json!({ "status": "revoked", "reason": "certificateHold" })
            }
            None => json!({ "status": "good" }),
        })
    }

    fn crl(&self) -> Result<Value, CallError> {
        use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
        use x509_cert::time::Time;
        let revocations = self.revocations().map_err(failed)?;
        let time = |secs: u64| Time::try_from(std::time::UNIX_EPOCH + Duration::from_secs(secs)).map_err(failed);
        // CRLReason ::= ENUMERATED { …, certificateHold (6) } (RFC 5280 §5.3.1).
        let hold = x509_cert::ext::Extension {
            extn_id: der::asn1::ObjectIdentifier::new_unwrap("2.5.29.21"),
            critical: false,
            extn_value: der::asn1::OctetString::new(vec![0x0a, 0x01, 0x06]).map_err(failed)?,
        };
        // Revocations, then holds (with their reason).
        let entries = revocations.revoked.iter().map(|(serial, r)| (serial, r.at, None));
        let entries =
            entries.chain(revocations.held.iter().map(|(serial, at)| (serial, *at, Some(vec![hold.clone()]))));
        let mut revoked: Vec<RevokedCert> = Vec::new();
        for (serial, at, crl_entry_extensions) in entries {
            let bytes = hex::decode(serial).map_err(failed)?;
            revoked.push(RevokedCert {
                serial_number: SerialNumber::new(&bytes).map_err(failed)?,
                revocation_date: time(at)?,
                crl_entry_extensions,
            });
        }
        let at = now();
        let tbs = TbsCertList {
            version: x509_cert::Version::V2,
            signature: AlgorithmIdentifierOwned { oid: SM2_WITH_SM3, parameters: None },
            issuer: self.root.tbs_certificate().subject().clone(),
            this_update: time(at)?,
            next_update: Some(time(at + self.cfg.crl_days * 86_400)?),
            revoked_certificates: if revoked.is_empty() { None } else { Some(revoked) },
            crl_extensions: None,
        };
        let tbs_der = tbs.to_der().map_err(failed)?;
        let sig = self.key.sign(&tbs_der).map_err(failed)?;
        let crl = CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: AlgorithmIdentifierOwned { oid: SM2_WITH_SM3, parameters: None },
            signature: BitString::from_bytes(&sig).map_err(failed)?,
        };
        Ok(json!({ "crl": B64.encode(crl.to_der().map_err(failed)?) }))
    }
}

impl LocalCa {
    /// Open (or create) the CA with its key behind `key` and its state in `kv`.
    /// `config` is this adapter's JSON config (see the crate docs).
    pub fn open(key: Box<dyn CaKey>, kv: Box<dyn KeyValue>, config: &[u8]) -> Result<LocalCa, String> {
        Self::with_config(key, kv, parse_config(config)?)
    }

    fn with_config(key: Box<dyn CaKey>, kv: Box<dyn KeyValue>, cfg: Config) -> Result<LocalCa, String> {
        let root_der = match kv.get(ROOT)? {
            Some(der) => der,
            None => {
                let candidate = match Self::files_root(&cfg)? {
                    // The index before the root: a start that stops half-way finds no root
                    // and imports again (the import is idempotent), rather than a root
                    // whose serials were never imported.
                    Some(der) => {
                        Self::import_files(&*kv, &cfg, &*key)?;
                        der
                    }
                    None => Self::make_root(&*key, &cfg)?,
                };
                if kv.cas(ROOT, None, &candidate)? {
                    key.log("local-ca stored its root certificate");
                    candidate
                } else {
                    // Another node started first: its root is the CA's.
                    kv.get(ROOT)?.ok_or("the stored root certificate vanished")?
                }
            }
        };
        let root = Certificate::from_der(&root_der).map_err(|e| format!("stored root certificate: {e}"))?;
        Ok(LocalCa { key, kv, cfg, root, root_der })
    }

    /// The root certificate an older version left in `state_dir`, if any.
    fn files_root(cfg: &Config) -> Result<Option<Vec<u8>>, String> {
        let Some(dir) = &cfg.state_dir else { return Ok(None) };
        let path = dir.join("ca.der");
        match std::fs::read(&path) {
            Ok(der) => Ok(Some(der)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Import what an older version kept in `state_dir/index.json`: every serial, from
    /// absent, and every revocation, merged (so importing twice changes nothing).
    fn import_files(kv: &dyn KeyValue, cfg: &Config, key: &dyn CaKey) -> Result<(), String> {
        let Some(dir) = &cfg.state_dir else { return Ok(()) };
        let path = dir.join("index.json");
        let index: FileIndex = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileIndex::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        for (serial, issued) in &index.issued {
            let record = Issued { v: FORMAT, subject: issued.subject.clone(), not_after: issued.not_after.clone() };
            kv.cas(&cert_key(serial), None, &serde_json::to_vec(&record).map_err(|e| e.to_string())?)?;
        }
        update_revocations(kv, |r| {
            let before = r.revoked.len();
            for (serial, issued) in &index.issued {
                if let Some(revocation) = &issued.revoked {
                    r.revoked.entry(serial.clone()).or_insert_with(|| revocation.clone());
                }
            }
            r.revoked.len() != before
        })?;
        key.log(&format!(
            "local-ca imported {} serials from {} into the store; the files are no longer read",
            index.issued.len(),
            dir.display()
        ));
        Ok(())
    }

    /// A new self-signed root for the CA's key.
    fn make_root(key: &dyn CaKey, cfg: &Config) -> Result<Vec<u8>, String> {
        let spki_der = key.public_key()?;
        let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der).map_err(|e| e.to_string())?;
        let name = Name::from_str(&format!("CN={},O=mcsd,C=CN", escape(&cfg.ca_name))).map_err(|e| e.to_string())?;
        let signer = CaSigner { spki: spki.clone() };
        let profile =
            Profile { subject: name, issuer: None, ca: true, issuer_key_id: key_id(&spki), time_stamping: false };
        let validity = Validity::from_now(Duration::from_secs(20 * 365 * 86_400)).map_err(|e| e.to_string())?;
        let builder = CertificateBuilder::new(profile, random_serial()?, validity, spki).map_err(|e| e.to_string())?;
        let root = Self::sign_builder(key, builder, &signer)?;
        root.to_der().map_err(|e| e.to_string())
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }
}

impl Adapter for LocalCa {
    fn new(host: HostHandle, config: &[u8]) -> Result<Self, String> {
        let cfg = parse_config(config)?;
        let kv = host.kv().ok_or("this daemon keeps no state for adapters (plugin ABI 2 or later needed)")?;
        let name = cfg.key.clone();
        LocalCa::with_config(Box::new(HostKey { host, name }), Box::new(kv), cfg)
    }

    fn call(&self, op: &str, request: &[u8]) -> Result<Vec<u8>, CallError> {
        let req: Value =
            if request.is_empty() { json!({}) } else { serde_json::from_slice(request).map_err(failed)? };
        let answer = match op {
            "describe" => json!({
                "name": "local-ca",
                "version": env!("CARGO_PKG_VERSION"),
                "algorithms": ["SM2-with-SM3"],
                "profiles": ["person", "org", "operator", "tsa"],
                "root": B64.encode(&self.root_der),
            }),
            "issue" => self.issue(&req)?,
            "revoke" => self.revoke(&req)?,
            "hold" => self.hold(&req, true)?,
            "release" => self.hold(&req, false)?,
            "status" => self.status(&req)?,
            "crl" => self.crl()?,
            _ => return Err(CallError::Unsupported),
        };
        serde_json::to_vec(&answer).map_err(failed)
    }
}

export_adapter!(LocalCa);

#[cfg(test)]
mod tests {
    //! The CA's state in a key-value store: shared by two CAs as by two nodes, races
    //! between them settled by compare-and-swap, the files of an older version imported.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use x509_cert::crl::CertificateList;
    use x509_cert::request::{CertReqInfo, Version};

    use super::*;

    /// A CA key both "nodes" hold (as two mcsd nodes reach one daemon key in the store).
    fn key(bytes: &[u8; 32]) -> Box<dyn CaKey> {
        Box::new(MemoryKey(sm2_2p::DaemonKey::from_bytes(bytes).unwrap()))
    }

    fn secret() -> [u8; 32] {
        *sm2_2p::DaemonKey::generate().to_bytes()
    }

    fn ca(key_bytes: &[u8; 32], state: &Arc<MemoryKv>) -> LocalCa {
        LocalCa::open(key(key_bytes), Box::new(state.clone()), br#"{"ca_name": "Unit CA"}"#).unwrap()
    }

    /// A CSR with proof of possession, as a phone would send it.
    fn csr() -> String {
        let phone = sm2_2p::DaemonKey::generate();
        let info = CertReqInfo {
            version: Version::V1,
            subject: Name::from_str("CN=phone").unwrap(),
            public_key: SubjectPublicKeyInfoOwned::from_der(&sm2_2p::spki_der(&phone.public())).unwrap(),
            attributes: Default::default(),
        };
        let signature = phone.sign(&info.to_der().unwrap()).to_der();
        let req = CertReq {
            info,
            algorithm: AlgorithmIdentifierOwned { oid: SM2_WITH_SM3, parameters: None },
            signature: BitString::from_bytes(&signature).unwrap(),
        };
        B64.encode(req.to_der().unwrap())
    }

    fn call(ca: &LocalCa, op: &str, req: Value) -> Value {
        match ca.call(op, &serde_json::to_vec(&req).unwrap()) {
            Ok(answer) => serde_json::from_slice(&answer).unwrap(),
            Err(CallError::Failed(e)) => panic!("{op}: {e}"),
            Err(CallError::Unsupported) => panic!("{op}: unsupported"),
        }
    }

    fn issue(ca: &LocalCa) -> String {
        let req = json!({ "csr": csr(), "profile": "person", "subject": { "name": "Zhang San" }, "validity_days": 30 });
        call(ca, "issue", req)["serial"].as_str().unwrap().to_owned()
    }

    fn status(ca: &LocalCa, serial: &str) -> String {
        call(ca, "status", json!({ "serial": serial }))["status"].as_str().unwrap().to_owned()
    }

    /// The serials the CA's CRL lists, checked against its root's key.
    fn crl_serials(ca: &LocalCa) -> BTreeSet<String> {
        let der = B64.decode(call(ca, "crl", json!({}))["crl"].as_str().unwrap()).unwrap();
        let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&der).unwrap();
        let spki = ca.root.tbs_certificate().subject_public_key_info();
        let public = is_sm2_spki(spki).unwrap();
        let sig = sm2_2p::Signature::from_der(crl.signature.raw_bytes()).unwrap();
        let tbs = crl.tbs_cert_list.to_der().unwrap();
        assert!(sm2_2p::verify(&public, &sm2_2p::e_for_message(&public, &tbs), &sig), "the CRL is the CA's");
        let revoked = crl.tbs_cert_list.revoked_certificates.unwrap_or_default();
        revoked.iter().map(|r| hex::encode(r.serial_number.as_bytes())).collect()
    }

    #[test]
    fn a_hold_is_listed_as_certificate_hold_until_released_or_revoked() {
        let (k, state) = (secret(), Arc::new(MemoryKv::default()));
        let (a, b) = (ca(&k, &state), ca(&k, &state));
        let serial = issue(&a);
        call(&a, "hold", json!({ "serial": serial }));
        call(&b, "hold", json!({ "serial": serial }));
        assert_eq!(crl_serials(&b), BTreeSet::from([serial.clone()]), "held once, on either node");
        let der = B64.decode(call(&a, "crl", json!({}))["crl"].as_str().unwrap()).unwrap();
        let crl = CertificateList::<x509_cert::certificate::Rfc5280>::from_der(&der).unwrap();
        let entry = &crl.tbs_cert_list.revoked_certificates.unwrap()[0];
        let ext = &entry.crl_entry_extensions.as_ref().unwrap()[0];
        assert_eq!(ext.extn_id.to_string(), "2.5.29.21");
        assert_eq!(ext.extn_value.as_bytes(), [0x0a, 0x01, 0x06], "CRLReason certificateHold");
        assert_eq!(call(&a, "status", json!({ "serial": serial }))["reason"], "certificateHold");
        call(&b, "release", json!({ "serial": serial }));
        assert!(crl_serials(&a).is_empty(), "released");
        assert_eq!(status(&a, &serial), "good");
        // A revocation ends a hold; a revoked certificate cannot be held again.
        call(&a, "hold", json!({ "serial": serial }));
        call(&a, "revoke", json!({ "serial": serial, "reason": "keyCompromise" }));
        assert!(a.call("hold", format!(r#"{{"serial": "{serial}"}}"#).as_bytes()).is_err());
        assert!(a.call("release", format!(r#"{{"serial": "{serial}"}}"#).as_bytes()).is_err());
        assert_eq!(crl_serials(&a), BTreeSet::from([serial.clone()]));
        assert!(a.call("hold", br#"{"serial": "10aa"}"#).is_err(), "a serial not issued here");
    }

    #[test]
    fn two_nodes_on_one_store_are_one_ca() {
        let (k, state) = (secret(), Arc::new(MemoryKv::default()));
        let (a, b) = (ca(&k, &state), ca(&k, &state));
        assert_eq!(a.root_der(), b.root_der(), "the second node takes the first one's root");
        let serial = issue(&a);
        assert_eq!(status(&b, &serial), "good", "issued on one node, known on the other");
        call(&b, "revoke", json!({ "serial": serial, "reason": "keyCompromise" }));
        assert_eq!(status(&a, &serial), "revoked");
        assert_eq!(crl_serials(&a), BTreeSet::from([serial.clone()]));
        call(&a, "revoke", json!({ "serial": serial, "reason": "superseded" }));
        let reason = call(&a, "status", json!({ "serial": serial }))["reason"].clone();
        assert_eq!(reason, "keyCompromise", "the first revocation stands");
        assert_eq!(status(&a, "10aa"), "unknown");
        assert!(a.call("revoke", br#"{"serial": "10aa"}"#).is_err(), "a serial not issued here");
        // A restart of both nodes finds it all again.
        let c = ca(&k, &state);
        assert_eq!((c.root_der(), status(&c, &serial).as_str()), (a.root_der(), "revoked"));
    }

    #[test]
    fn concurrent_issuers_and_revokers_lose_nothing() {
        let (k, state) = (secret(), Arc::new(MemoryKv::default()));
        let nodes = [Arc::new(ca(&k, &state)), Arc::new(ca(&k, &state))];
        let workers: Vec<_> = nodes
            .iter()
            .cloned()
            .map(|node| {
                std::thread::spawn(move || {
                    let serials: Vec<String> = (0..8).map(|_| issue(&node)).collect();
                    for s in &serials[..4] {
                        call(&node, "revoke", json!({ "serial": s, "reason": "superseded" }));
                    }
                    serials
                })
            })
            .collect();
        let serials: Vec<Vec<String>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let revoked: BTreeSet<String> = serials.iter().flat_map(|s| s[..4].iter().cloned()).collect();
        assert_eq!(crl_serials(&nodes[0]), revoked, "every revocation of both nodes is on the CRL");
        for s in serials.iter().flatten() {
            let expect = if revoked.contains(s) { "revoked" } else { "good" };
            assert_eq!(status(&nodes[1], s), expect, "{s}");
        }
    }

    /// A store where another node revokes `other` just before this node's first
    /// compare-and-swap of the CRL state: the swap loses and must be retried on top.
    struct RacedCrl {
        inner: Arc<MemoryKv>,
        other: String,
        raced: std::sync::atomic::AtomicBool,
    }

    impl KeyValue for RacedCrl {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            self.inner.get(key)
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            self.inner.put(key, value)
        }
        fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, String> {
            if key == CRL && !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
                update_revocations(&*self.inner, |r| {
                    r.revoked.insert(self.other.clone(), Revocation { reason: "other node".into(), at: 1 });
                    true
                })?;
            }
            self.inner.cas(key, expected, new)
        }
    }

    #[test]
    fn a_revocation_that_loses_its_swap_is_retried_on_top_of_the_winner() {
        let (k, state) = (secret(), Arc::new(MemoryKv::default()));
        let a = ca(&k, &state);
        let (mine, theirs) = (issue(&a), issue(&a));
        let raced = RacedCrl { inner: state.clone(), other: theirs.clone(), raced: Default::default() };
        let b = LocalCa::open(key(&k), Box::new(raced), b"{}").unwrap();
        call(&b, "revoke", json!({ "serial": mine, "reason": "superseded" }));
        assert_eq!(crl_serials(&a), BTreeSet::from([mine, theirs]), "neither revocation was lost");
    }

    #[test]
    fn state_of_another_format_is_refused() {
        let (k, state) = (secret(), Arc::new(MemoryKv::default()));
        let a = ca(&k, &state);
        let serial = issue(&a);
        state.put(CRL, br#"{"v": 2, "revoked": {}}"#).unwrap();
        let Err(CallError::Failed(e)) = a.call("status", format!(r#"{{"serial": "{serial}"}}"#).as_bytes()) else {
            panic!("a CRL state of format 2 was read");
        };
        assert!(e.contains("format 2"), "{e}");
    }

    #[test]
    fn the_files_of_an_older_version_are_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let k = secret();
        // What an older local-ca left: its root, and an index with one good and one
        // revoked serial.
        let old = ca(&k, &Arc::new(MemoryKv::default()));
        let (good, gone) = (issue(&old), issue(&old));
        std::fs::write(dir.path().join("ca.der"), old.root_der()).unwrap();
        let index = json!({ "issued": {
            good.clone(): { "subject": "CN=a", "not_after": "1", "revoked": null },
            gone.clone(): { "subject": "CN=b", "not_after": "1", "revoked": { "reason": "superseded", "at": 5 } },
        }});
        std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
        let config = json!({ "state_dir": dir.path() }).to_string();

        let state = Arc::new(MemoryKv::default());
        let imported = LocalCa::open(key(&k), Box::new(state.clone()), config.as_bytes()).unwrap();
        assert_eq!(imported.root_der(), old.root_der(), "the same CA, not a new root");
        assert_eq!((status(&imported, &good), status(&imported, &gone)), ("good".into(), "revoked".into()));
        assert_eq!(crl_serials(&imported), BTreeSet::from([gone.clone()]));
        // Once the store has the root, the files are not read again.
        std::fs::write(dir.path().join("index.json"), "not JSON").unwrap();
        let again = LocalCa::open(key(&k), Box::new(state.clone()), config.as_bytes()).unwrap();
        assert_eq!(status(&again, &gone), "revoked");
    }
}
