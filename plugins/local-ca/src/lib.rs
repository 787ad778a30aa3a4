//! `local-ca`: an SM2 certificate authority inside mcsd.
//!
//! Its key is a daemon-held key (default name `local-ca`), wrapped by the HSM like every
//! share; this adapter never sees it and signs through the host's `sign` callback
//! (SM2-with-SM3, OID 1.2.156.10197.1.501, default ID). It issues X.509 v3 leaves directly
//! from its self-signed root (OpenSSL applies the SM2 ID only at depth 0, openssl#24167),
//! for the profiles `person`, `org` and `operator`, with subjects in the manuals' style,
//! after checking the CSR's proof of possession. It keeps an index of issued serials and
//! revocations in `state_dir` (written, fsynced and renamed before it answers) and
//! publishes a signed CRL.
//!
//! Config: `{ "state_dir": "/var/lib/mcsd/local-ca", "key": "local-ca",
//! "ca_name": "mcsd Local SM2 CA", "crl_days": 7 }`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use der::asn1::BitString;
use der::{Decode, Encode};
use mcs_plugin_abi::{Adapter, CallError, HostHandle, export_adapter};
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
        Ok(exts)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    /// serial (hex) → issued certificate facts.
    issued: BTreeMap<String, Issued>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    subject: String,
    not_after: String,
    revoked: Option<Revocation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Revocation {
    reason: String,
    /// Unix seconds.
    at: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    state_dir: PathBuf,
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
    cfg: Config,
    root: Certificate,
    root_der: Vec<u8>,
    index: Mutex<Index>,
}

// An adapter is a library of its own and does not link mcsd's clock; this is its one reader.
#[allow(clippy::disallowed_methods)]
fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Write a file durably: temp file, fsync, rename, fsync the directory.
fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
        "operator" => {
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

impl LocalCa {
    fn index_path(&self) -> PathBuf {
        self.cfg.state_dir.join("index.json")
    }

    fn save(&self, index: &Index) -> Result<(), CallError> {
        let bytes = serde_json::to_vec_pretty(index).map_err(failed)?;
        write_durably(&self.index_path(), &bytes).map_err(|e| failed(format!("saving the index: {e}")))
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
        let serial = random_serial().map_err(failed)?;
        let serial_hex = hex::encode(serial.as_bytes());
        let subject = subject_for(profile, &req["subject"], &serial_hex).map_err(failed)?;
        let name = Name::from_str(&subject).map_err(|e| failed(format!("subject `{subject}`: {e}")))?;
        let signer = CaSigner { spki: self.root.tbs_certificate().subject_public_key_info().clone() };
        let profile = Profile {
            subject: name,
            issuer: Some(self.root.tbs_certificate().subject().clone()),
            ca: false,
            issuer_key_id: key_id(&signer.spki),
        };
        let validity = Validity::from_now(Duration::from_secs(days * 86_400)).map_err(failed)?;
        let builder =
            CertificateBuilder::new(profile, serial, validity, csr.info.public_key.clone()).map_err(failed)?;
        let cert = Self::sign_builder(&*self.key, builder, &signer).map_err(failed)?;
        let cert_der = cert.to_der().map_err(failed)?;
        let not_after = cert.tbs_certificate().validity().not_after.to_unix_duration().as_secs();
        {
            let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            index.issued.insert(
                serial_hex.clone(),
                Issued { subject: subject.clone(), not_after: not_after.to_string(), revoked: None },
            );
            self.save(&index)?;
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
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let entry =
            index.issued.get_mut(&serial).ok_or_else(|| failed(format!("serial {serial} was not issued here")))?;
        if entry.revoked.is_none() {
            entry.revoked = Some(Revocation { reason, at: now() });
            self.save(&index)?;
        }
        Ok(json!({}))
    }

    fn status(&self, req: &Value) -> Result<Value, CallError> {
        let serial = req["serial"].as_str().ok_or_else(|| failed("serial is required"))?.to_ascii_lowercase();
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match index.issued.get(&serial) {
            None => json!({ "status": "unknown" }),
            Some(Issued { revoked: Some(r), .. }) => json!({ "status": "revoked", "reason": r.reason }),
            Some(_) => json!({ "status": "good" }),
        })
    }

    fn crl(&self) -> Result<Value, CallError> {
        use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
        use x509_cert::time::Time;
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let time = |secs: u64| Time::try_from(std::time::UNIX_EPOCH + Duration::from_secs(secs)).map_err(failed);
        let mut revoked: Vec<RevokedCert> = Vec::new();
        for (serial, issued) in &index.issued {
            if let Some(r) = &issued.revoked {
                let bytes = hex::decode(serial).map_err(failed)?;
                revoked.push(RevokedCert {
                    serial_number: SerialNumber::new(&bytes).map_err(failed)?,
                    revocation_date: time(r.at)?,
                    crl_entry_extensions: None,
                });
            }
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
    /// Open (or create) the CA in `config.state_dir` with its key behind `key`.
    /// `config` is this adapter's JSON config (see the crate docs).
    pub fn open(key: Box<dyn CaKey>, config: &[u8]) -> Result<LocalCa, String> {
        Self::with_config(key, parse_config(config)?)
    }

    fn with_config(key: Box<dyn CaKey>, cfg: Config) -> Result<LocalCa, String> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| format!("{}: {e}", cfg.state_dir.display()))?;
        let root_path = cfg.state_dir.join("ca.der");
        let root_der = match std::fs::read(&root_path) {
            Ok(der) => der,
            Err(_) => {
                let spki_der = key.public_key()?;
                let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der).map_err(|e| e.to_string())?;
                let name =
                    Name::from_str(&format!("CN={},O=mcsd,C=CN", escape(&cfg.ca_name))).map_err(|e| e.to_string())?;
                let signer = CaSigner { spki: spki.clone() };
                let profile = Profile { subject: name, issuer: None, ca: true, issuer_key_id: key_id(&spki) };
                let validity = Validity::from_now(Duration::from_secs(20 * 365 * 86_400)).map_err(|e| e.to_string())?;
                let builder =
                    CertificateBuilder::new(profile, random_serial()?, validity, spki).map_err(|e| e.to_string())?;
                let root = Self::sign_builder(&*key, builder, &signer)?;
                let der = root.to_der().map_err(|e| e.to_string())?;
                write_durably(&root_path, &der).map_err(|e| format!("{}: {e}", root_path.display()))?;
                key.log(&format!("local-ca created its root certificate {}", root_path.display()));
                der
            }
        };
        let root = Certificate::from_der(&root_der).map_err(|e| format!("{}: {e}", root_path.display()))?;
        let index = match std::fs::read(cfg.state_dir.join("index.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("index.json: {e}"))?,
            Err(_) => Index::default(),
        };
        Ok(LocalCa { key, cfg, root, root_der, index: Mutex::new(index) })
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }
}

impl Adapter for LocalCa {
    fn new(host: HostHandle, config: &[u8]) -> Result<Self, String> {
        let cfg = parse_config(config)?;
        let name = cfg.key.clone();
        LocalCa::with_config(Box::new(HostKey { host, name }), cfg)
    }

    fn call(&self, op: &str, request: &[u8]) -> Result<Vec<u8>, CallError> {
        let req: Value =
            if request.is_empty() { json!({}) } else { serde_json::from_slice(request).map_err(failed)? };
        let answer = match op {
            "describe" => json!({
                "name": "local-ca",
                "version": env!("CARGO_PKG_VERSION"),
                "algorithms": ["SM2-with-SM3"],
                "profiles": ["person", "org", "operator"],
                "root": B64.encode(&self.root_der),
            }),
            "issue" => self.issue(&req)?,
            "revoke" => self.revoke(&req)?,
            "status" => self.status(&req)?,
            "crl" => self.crl()?,
            _ => return Err(CallError::Unsupported),
        };
        serde_json::to_vec(&answer).map_err(failed)
    }
}

export_adapter!(LocalCa);
