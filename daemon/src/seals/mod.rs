//! Electronic seals (API.md "Seals", GB/T 38540) and the checks behind `pdf_seal` tasks
//! and `verify/seal`, `verify/pdf`.
//!
//! The seal maker is the daemon-held SM2 key `seal-maker` (HSM-wrapped like every daemon
//! key); its certificate comes once from the configured CA adapter (`[seals] maker_ca`,
//! default `local`) through a CSR the key signs itself. A seal's `certList` holds the
//! certificates of its signer keys and of the keys it is granted to, so a verifier can tell
//! from the seal alone who may seal with it; a grant or its removal re-makes the seal
//! (same esID, new maker signature). Sealing needs: the seal not revoked, now inside its
//! validity, none of its signer keys superseded or revoked (`conflict`), and the sealing
//! key a signer key or holding a grant valid now (`no_permission`).

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use der::{Decode, Encode};
use mcs_pdfseal::{cms, pdf, seal};
use serde_json::Value;

use crate::clock::Clock;
use crate::config::SealsConfig;
use crate::daemon_keys::DaemonKeys;
use crate::keys::{KeyError, KeyService};
use crate::model::key::{KeyRecord, KeyStatus, Subject, SubjectKind};
use crate::model::seal::{SealGrant, SealMakerRecord, SealRecord};
use crate::plugins::PluginError;
use crate::plugins::ca::{CaAdapter, IssueRequest};
use crate::store::{Storage, StoreError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MAKER_KEY: &str = "seal-maker";
pub const KINDS: [&str; 6] = ["official", "legal_rep", "finance", "contract", "personal", "signature"];

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("seal not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NoPermission(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Plugin(PluginError),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for SealError {
    fn from(e: StoreError) -> Self {
        SealError::Key(KeyError::Store(e))
    }
}

fn internal(e: impl std::fmt::Display) -> SealError {
    SealError::Internal(e.to_string())
}

/// `POST /v1/seals`, validated.
pub struct NewSeal {
    pub kind: String,
    pub name: String,
    pub owner: Value,
    pub face: FaceSpec,
    pub signer_key_ids: Vec<String>,
    pub valid_from: i64,
    pub valid_to: i64,
}

/// A seal's face: its picture and printed size.
#[derive(Debug, Clone)]
pub struct SealFace {
    /// PNG, JPEG or SVG.
    pub picture_type: String,
    pub picture: Vec<u8>,
    pub width_mm: u32,
    pub height_mm: u32,
}

/// A face as asked for: a picture, or a template drawn from text (default: the seal's name).
#[derive(Debug, Clone)]
pub enum FaceSpec {
    Picture(SealFace),
    Template { template: FaceTemplate, text: Option<String>, bottom_text: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceTemplate {
    PersonalName,
    OrgRound,
}

/// Template faces are drawn at this resolution.
const TEMPLATE_DPI: u32 = 300;

/// A grant's terms (`POST /v1/seals/{id}/grants`).
#[derive(Debug, Clone, Copy)]
pub struct GrantTerms {
    pub not_before: i64,
    pub not_after: i64,
    pub approval: crate::model::delegation::Approval,
}

impl SealRecord {
    /// The key whose owner must approve each use of this seal by `key_id`: its first signer
    /// key, when `key_id` holds the seal only through an `each_use` grant.
    pub fn approver_for(&self, key_id: &str) -> Option<&str> {
        if self.signer_key_ids.iter().any(|k| k == key_id) {
            return None;
        }
        let grant = self.grants.iter().find(|g| g.key_id == key_id)?;
        (grant.approval == crate::model::delegation::Approval::EachUse)
            .then(|| self.signer_key_ids.first().map(String::as_str))
            .flatten()
    }
}

/// What sealing needs from a seal: its DER, its picture, its size.
pub struct SealForSigning {
    pub record: SealRecord,
    pub der: Vec<u8>,
    pub picture: mcs_pdfseal::image::PdfImage,
}

/// What a signature to verify was made over.
/// `signature` if it is a CMS `ContentInfo` (SEQUENCE starting with an OID) rather than a
/// bare DER `SEQUENCE { r, s }` (which starts with an INTEGER).
fn cms_container(signature: &[u8]) -> Option<&[u8]> {
    let header = match signature.get(1)? {
        l if *l < 0x80 => 2,
        l => 2 + (*l & 0x7f) as usize,
    };
    (signature.first() == Some(&0x30) && signature.get(header) == Some(&0x06)).then_some(signature)
}

pub enum Signed<'a> {
    /// `e` itself (SM3 of Z ‖ M, computed by the caller).
    Digest([u8; 32]),
    /// The message; `e` is computed with the certificate's key and the default ID.
    Message(&'a [u8]),
}

/// `verify/signature`: every failed check is one error; none means valid.
pub struct SignatureVerdict {
    pub errors: Vec<String>,
    /// The certificate's subject.
    pub signer: String,
    /// Hex, as in the key view.
    pub certificate_serial: String,
    /// A CMS signature's time-stamp time (Unix seconds), the time it was judged at.
    pub timestamp: Option<i64>,
}

/// `verify/seal`.
pub struct SealVerdict {
    pub es_id: String,
    pub name: String,
    /// Unix seconds.
    pub valid_from: u64,
    pub valid_to: u64,
    pub errors: Vec<String>,
}

/// `verify/pdf`: one verdict per signature field, in document order.
pub struct PdfVerdict {
    pub signatures: Vec<PdfSignatureVerdict>,
}

pub struct PdfSignatureVerdict {
    pub field: Option<String>,
    pub covers_whole_document: bool,
    /// The signer certificate's subject, when the certificate parses.
    pub signer: Option<String>,
    /// The signing time (unix seconds) the signature claims.
    pub signed_at: Option<u64>,
    /// The seal in the signature, when it parses.
    pub seal: Option<SealName>,
    /// The time of the signature's time-stamp (unix seconds), when it has one that holds.
    pub timestamp: Option<i64>,
    /// When the signature was judged: at its time-stamp, or now without one.
    pub valid_at: i64,
    pub errors: Vec<String>,
}

pub struct SealName {
    pub es_id: String,
    pub name: String,
}

/// Trust anchors and revocations for one verification.
struct Trust {
    roots: BTreeSet<Vec<u8>>,
    /// Certificate serial (hex) → why it is revoked, and since when (unknown for records
    /// from before the time was kept: then it counts as revoked at any time).
    revoked: std::collections::BTreeMap<String, (&'static str, Option<i64>)>,
}

pub struct SealService {
    store: Arc<dyn Storage>,
    keys: Arc<KeyService>,
    plugins: Arc<dyn CaAdapter>,
    daemon_keys: DaemonKeys,
    cfg: SealsConfig,
    /// Seal validity, grants and revocation times read this clock.
    clock: Arc<dyn Clock>,
    maker_lock: tokio::sync::Mutex<()>,
    /// The time-stamp authority, when `[tsa]` is configured: PDF signatures get a signature
    /// time-stamp, and verification judges them at its time.
    tsa: std::sync::OnceLock<Arc<crate::tsa::TsaService>>,
}

fn random_hex(n: usize) -> Result<String, SealError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(internal)?;
    Ok(hex::encode(b))
}

/// GB/T 38540 seal type: 1 organisation, 2 personal.
fn seal_type(kind: &str) -> u32 {
    if matches!(kind, "official" | "finance" | "contract") { 1 } else { 2 }
}

fn cert_der(key: &KeyRecord) -> Result<Vec<u8>, SealError> {
    let c = key
        .certificate
        .as_ref()
        .ok_or_else(|| SealError::Conflict(format!("key {} has no certificate yet", key.id)))?;
    B64.decode(&c.der_b64).map_err(internal)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, SealError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?.map_err(SealError::Internal)
}

impl SealService {
    pub fn new(
        store: Arc<dyn Storage>,
        keys: Arc<KeyService>,
        plugins: Arc<dyn CaAdapter>,
        daemon_keys: DaemonKeys,
        cfg: SealsConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        SealService {
            store,
            keys,
            plugins,
            daemon_keys,
            cfg,
            clock,
            maker_lock: tokio::sync::Mutex::new(()),
            tsa: std::sync::OnceLock::new(),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Time-stamp what this service signs with `tsa` (once, at start).
    pub fn attach_tsa(&self, tsa: Arc<crate::tsa::TsaService>) {
        if tsa.enabled() {
            let _ = self.tsa.set(tsa);
        }
    }

    /// The time-stamp authority, if one is configured.
    pub fn tsa(&self) -> Option<&Arc<crate::tsa::TsaService>> {
        self.tsa.get()
    }

    /// The maker's certificate, asking the CA for it the first time.
    pub async fn maker(&self) -> Result<SealMakerRecord, SealError> {
        if let Some(m) = self.store.seal_maker()? {
            return Ok(m);
        }
        let _guard = self.maker_lock.lock().await;
        if let Some(m) = self.store.seal_maker()? {
            return Ok(m);
        }
        let dk = self.daemon_keys.clone();
        let spki_der = blocking(move || dk.spki(MAKER_KEY)).await?;
        let dk = self.daemon_keys.clone();
        let csr = blocking(move || dk.csr(MAKER_KEY, "mcsd Seal Maker")).await?;
        let request = IssueRequest {
            csr,
            profile: "operator".into(),
            subject: Subject {
                kind: SubjectKind::Operator,
                name: "mcsd Seal Maker".into(),
                org_name: Some("mcsd".into()),
                credit_code: None,
                id_number: None,
            },
            validity_days: 3650,
        };
        let issued = self.plugins.issue(&self.cfg.maker_ca, &request).await.map_err(SealError::Plugin)?;
        let certificate_b64 = issued.certificate;
        let cert =
            x509_cert::Certificate::from_der(&B64.decode(&certificate_b64).map_err(internal)?).map_err(internal)?;
        if cert.tbs_certificate().subject_public_key_info().to_der().map_err(internal)? != spki_der {
            return Err(internal("the CA certified another key for the seal maker"));
        }
        let rec = SealMakerRecord { ca: self.cfg.maker_ca.clone(), certificate_b64, chain_b64: issued.chain };
        self.store.put_seal_maker(&rec)?;
        self.store.flush().await?;
        tracing::info!(ca = %rec.ca, "seal maker certified");
        Ok(rec)
    }

    /// The seal's DER for its current signer keys and grants, signed by the maker.
    async fn make(&self, rec: &SealRecord, picture: &[u8]) -> Result<Vec<u8>, SealError> {
        let maker = self.maker().await?;
        let mut certs = Vec::new();
        let holders = rec.signer_key_ids.iter().chain(rec.grants.iter().map(|g| &g.key_id));
        for key_id in holders {
            let key = self.store.key(key_id)?.ok_or(SealError::Key(KeyError::NotFound("key")))?;
            let der = cert_der(&key)?;
            if !certs.contains(&der) {
                certs.push(der);
            }
        }
        let spec = seal::SealSpec {
            vendor_id: &self.cfg.vendor_id,
            es_id: &rec.es_id,
            seal_type: seal_type(&rec.kind),
            name: &rec.name,
            signer_certificates: &certs,
            created: rec.created_at as u64,
            valid_from: rec.valid_from as u64,
            valid_to: rec.valid_to as u64,
            picture_type: &rec.picture_type,
            picture,
            width_mm: rec.width_mm,
            height_mm: rec.height_mm,
        };
        let info = seal::seal_info(&spec).map_err(|e| SealError::Invalid(e.to_string()))?;
        let info_der = info.to_der().map_err(internal)?;
        let dk = self.daemon_keys.clone();
        let sig = blocking(move || dk.sign(MAKER_KEY, &info_der)).await?;
        seal::assemble(info, &B64.decode(&maker.certificate_b64).map_err(internal)?, &sig)
            .map_err(|e| SealError::Invalid(e.to_string()))
    }

    fn sealing_key(&self, key_id: &str) -> Result<KeyRecord, SealError> {
        let key = self.store.key(key_id)?.ok_or(SealError::Key(KeyError::NotFound("key")))?;
        if key.status != KeyStatus::Active {
            return Err(SealError::Key(KeyError::Inactive(key.status)));
        }
        cert_der(&key)?;
        Ok(key)
    }

    pub async fn create(&self, req: NewSeal) -> Result<SealRecord, SealError> {
        if !KINDS.contains(&req.kind.as_str()) {
            return Err(SealError::Invalid(format!("kind must be one of {}", KINDS.join(", "))));
        }
        if req.signer_key_ids.is_empty() {
            return Err(SealError::Invalid("signer_key_ids must name at least one key".into()));
        }
        for id in &req.signer_key_ids {
            self.sealing_key(id)?;
        }
        let (id, es_id) = self.new_ids()?;
        let face = self.draw(req.face, &req.name).await?;
        let rec = SealRecord {
            id,
            es_id,
            kind: req.kind,
            name: req.name,
            owner: req.owner,
            picture_type: face.picture_type.clone(),
            width_mm: face.width_mm,
            height_mm: face.height_mm,
            signer_key_ids: req.signer_key_ids,
            grants: Vec::new(),
            valid_from: req.valid_from,
            valid_to: req.valid_to,
            created_at: self.now(),
            revoked_at: None,
            seal_b64: String::new(),
            rev: 0,
        };
        let rec = self.insert(rec, &face.picture).await?;
        tracing::info!(seal = %rec.id, es_id = %rec.es_id, "seal made");
        Ok(rec)
    }

    /// The face to make the seal with: the picture given, or the template drawn (PNG).
    async fn draw(&self, spec: FaceSpec, name: &str) -> Result<SealFace, SealError> {
        let (template, text, bottom) = match spec {
            FaceSpec::Picture(face) => return Ok(face),
            FaceSpec::Template { template, text, bottom_text } => (template, text, bottom_text),
        };
        let font_path = match &self.cfg.font_file {
            Some(p) => p.clone(),
            None => mcs_pdfseal::template::CJK_FONT_CANDIDATES
                .iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.exists())
                .ok_or_else(|| {
                    SealError::Conflict(
                        "no CJK font to draw template seals: install fonts-wqy-zenhei or set [seals] font_file".into(),
                    )
                })?,
        };
        let text = text.unwrap_or_else(|| name.to_owned());
        let drawn = tokio::task::spawn_blocking(move || {
            let font = std::fs::read(&font_path).map_err(|e| internal(format!("{}: {e}", font_path.display())))?;
            let t = match template {
                FaceTemplate::PersonalName => mcs_pdfseal::template::Template::PersonalName { add_yin: false },
                FaceTemplate::OrgRound => mcs_pdfseal::template::Template::OrgRound,
            };
            mcs_pdfseal::template::render(t, &text, bottom.as_deref(), &font, 0, TEMPLATE_DPI)
                .map_err(|e| SealError::Invalid(format!("image: {e}")))
        });
        let rendered = drawn.await.map_err(internal)??;
        Ok(SealFace {
            picture_type: "PNG".into(),
            picture: rendered.png,
            width_mm: rendered.width_mm,
            height_mm: rendered.height_mm,
        })
    }

    /// A new seal's id and esID.
    fn new_ids(&self) -> Result<(String, String), SealError> {
        let es_id = format!("{}{}", self.cfg.vendor_id.to_ascii_uppercase(), random_hex(8)?.to_ascii_uppercase());
        Ok((format!("s_{}", random_hex(12)?), es_id))
    }

    /// Make the SESeal for `rec` with `picture` and store it, durably.
    async fn insert(&self, mut rec: SealRecord, picture: &[u8]) -> Result<SealRecord, SealError> {
        rec.seal_b64 = B64.encode(self.make(&rec, picture).await?);
        self.store.insert_seal(&rec)?;
        self.store.flush().await?;
        Ok(rec)
    }

    /// `POST /v1/seals/{id}/image` (换章面): the same seal with a new face. A new seal —
    /// new id and esID, the same kind, name, owner, signer keys, grants and validity — is
    /// made and stored first, then the old one is revoked (a crash between the two leaves
    /// both usable; revoking the old one again finishes the change).
    pub async fn change_face(&self, id: &str, face: FaceSpec) -> Result<SealRecord, SealError> {
        let old = self.get(id)?;
        if old.revoked_at.is_some() {
            return Err(SealError::Conflict("seal is revoked".into()));
        }
        self.check_seal(&old)?;
        let face = self.draw(face, &old.name).await?;
        let rec = self.replace(old, face).await?;
        tracing::info!(old = %id, seal = %rec.id, es_id = %rec.es_id, "seal face changed");
        Ok(rec)
    }

    /// A new seal in place of `old` — new id and esID, `face`, the same kind, name, owner,
    /// signer keys, grants and validity, and the holders' certificates as they are now —
    /// stored first, then `old` revoked (a crash between the two leaves both usable;
    /// revoking the old one again finishes the change).
    async fn replace(&self, old: SealRecord, face: SealFace) -> Result<SealRecord, SealError> {
        let old_id = old.id.clone();
        let (new_id, es_id) = self.new_ids()?;
        let rec = SealRecord {
            id: new_id,
            es_id,
            picture_type: face.picture_type,
            width_mm: face.width_mm,
            height_mm: face.height_mm,
            created_at: self.now(),
            revoked_at: None,
            seal_b64: String::new(),
            rev: 0,
            ..old
        };
        let rec = self.insert(rec, &face.picture).await?;
        self.revoke(&old_id).await?;
        Ok(rec)
    }

    /// A key's certificate was renewed: every usable seal that carries it (as a signer key
    /// or a grant's) is re-made with the new certificate, same face, and the old one
    /// revoked — documents sealed before stay valid (judged at their time-stamps). Returns
    /// how many were re-made.
    pub async fn remake_for_key(&self, key_id: &str) -> Result<usize, SealError> {
        let carrying: Vec<SealRecord> = self
            .store
            .seals()?
            .into_iter()
            .filter(|s| s.revoked_at.is_none())
            .filter(|s| s.signer_key_ids.iter().chain(s.grants.iter().map(|g| &g.key_id)).any(|k| k == key_id))
            .collect();
        let mut remade = 0;
        for old in carrying {
            let der = B64.decode(&old.seal_b64).map_err(internal)?;
            let view = seal::verify(&der).map_err(internal)?;
            let face = SealFace {
                picture_type: old.picture_type.clone(),
                picture: view.picture,
                width_mm: old.width_mm,
                height_mm: old.height_mm,
            };
            let (old_id, new) = (old.id.clone(), self.replace(old, face).await?);
            tracing::info!(old = %old_id, seal = %new.id, es_id = %new.es_id, key_id, "seal re-made");
            remade += 1;
        }
        Ok(remade)
    }

    /// The records of the seals `key_id` may seal with now (only `only`, if given), oldest
    /// first.
    fn usable_records(&self, key_id: &str, only: Option<&str>) -> Result<Vec<SealRecord>, SealError> {
        let mut usable: Vec<SealRecord> = self
            .store
            .seals()?
            .into_iter()
            .filter(|s| only.is_none_or(|o| s.id == o))
            .filter(|s| self.check_seal(s).is_ok() && self.check_holder(s, key_id).is_ok())
            .collect();
        usable.sort_by_key(|s| s.created_at);
        Ok(usable)
    }

    /// The seals `key_id` may seal with now (only `only`, if given), oldest first, each
    /// with its face: what a gateway offers the user to choose from.
    pub fn usable_by(&self, key_id: &str, only: Option<&str>) -> Result<Vec<(SealRecord, SealFace)>, SealError> {
        self.usable_records(key_id, only)?
            .into_iter()
            .map(|rec| {
                let der = B64.decode(&rec.seal_b64).map_err(internal)?;
                let view = seal::verify(&der).map_err(internal)?;
                let face = SealFace {
                    picture_type: view.picture_type.clone(),
                    picture: view.picture.clone(),
                    width_mm: rec.width_mm,
                    height_mm: rec.height_mm,
                };
                Ok((rec, face))
            })
            .collect()
    }

    pub fn get(&self, id: &str) -> Result<SealRecord, SealError> {
        self.store.seal(id)?.ok_or(SealError::NotFound)
    }

    /// Seals whose owner has a value equal to `owner`, and/or usable by `key_id`.
    pub fn list(&self, owner: Option<&str>, key_id: Option<&str>) -> Result<Vec<SealRecord>, SealError> {
        let owner_matches = |rec: &SealRecord, want: &str| match &rec.owner {
            Value::Object(m) => m.values().any(|v| v.as_str() == Some(want)),
            Value::String(s) => s == want,
            _ => false,
        };
        Ok(self
            .store
            .seals()?
            .into_iter()
            .filter(|s| owner.is_none_or(|o| owner_matches(s, o)))
            .filter(|s| {
                key_id.is_none_or(|k| s.signer_key_ids.iter().any(|x| x == k) || s.grants.iter().any(|g| g.key_id == k))
            })
            .collect())
    }

    /// Change a seal with compare-and-swap; `remake` re-signs it for new holders.
    async fn change(
        &self,
        id: &str,
        remake: bool,
        mut f: impl FnMut(&mut SealRecord) -> Result<(), SealError>,
    ) -> Result<SealRecord, SealError> {
        loop {
            let old = self.get(id)?;
            let mut rec = old.clone();
            f(&mut rec)?;
            if remake {
                let picture = seal::verify(&B64.decode(&old.seal_b64).map_err(internal)?).map_err(internal)?.picture;
                rec.seal_b64 = B64.encode(self.make(&rec, &picture).await?);
            }
            if self.store.replace_seal(old.rev, &rec)? {
                self.store.flush().await?;
                rec.rev = old.rev + 1;
                return Ok(rec);
            }
        }
    }

    pub async fn revoke(&self, id: &str) -> Result<SealRecord, SealError> {
        self.change(id, false, |rec| {
            if rec.revoked_at.is_some() {
                return Err(SealError::Conflict("seal already revoked".into()));
            }
            rec.revoked_at = Some(self.now());
            Ok(())
        })
        .await
    }

    pub async fn grant(&self, id: &str, key_id: &str, terms: GrantTerms) -> Result<SealRecord, SealError> {
        let GrantTerms { not_before, not_after, approval } = terms;
        if not_after <= not_before {
            return Err(SealError::Invalid("not_after must be later than not_before".into()));
        }
        self.sealing_key(key_id)?;
        self.change(id, true, |rec| {
            if rec.revoked_at.is_some() {
                return Err(SealError::Conflict("seal is revoked".into()));
            }
            rec.grants.retain(|g| g.key_id != key_id);
            rec.grants.push(SealGrant { key_id: key_id.to_owned(), not_before, not_after, approval });
            Ok(())
        })
        .await
    }

    pub async fn ungrant(&self, id: &str, key_id: &str) -> Result<SealRecord, SealError> {
        self.change(id, true, |rec| {
            let before = rec.grants.len();
            rec.grants.retain(|g| g.key_id != key_id);
            if rec.grants.len() == before {
                return Err(SealError::Key(KeyError::NotFound("grant")));
            }
            Ok(())
        })
        .await
    }

    /// Is the seal itself usable now (not revoked, in validity, signer keys current)?
    pub fn check_seal(&self, rec: &SealRecord) -> Result<(), SealError> {
        let at = self.now();
        if rec.revoked_at.is_some() {
            return Err(SealError::Conflict(format!("seal {} is revoked", rec.id)));
        }
        if at < rec.valid_from || at > rec.valid_to {
            return Err(SealError::Conflict(format!("seal {} is not valid now", rec.id)));
        }
        for key_id in &rec.signer_key_ids {
            match self.store.key(key_id)?.map(|k| k.status) {
                Some(KeyStatus::Superseded | KeyStatus::Revoked) | None => {
                    return Err(SealError::Conflict(format!(
                        "seal {} is bound to key {key_id}, which was superseded or revoked",
                        rec.id
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// May `key_id` seal with `rec` now?
    fn check_holder(&self, rec: &SealRecord, key_id: &str) -> Result<(), SealError> {
        if rec.signer_key_ids.iter().any(|k| k == key_id) {
            return Ok(());
        }
        let at = self.now();
        match rec.grants.iter().find(|g| g.key_id == key_id) {
            Some(g) if g.not_before <= at && at <= g.not_after => Ok(()),
            Some(_) => {
                Err(SealError::NoPermission(format!("the grant of seal {} to this key is not valid now", rec.id)))
            }
            None => Err(SealError::NoPermission(format!("seal {} is not granted to this key", rec.id))),
        }
    }

    /// The seal a key seals with: the one asked for, or its only usable one.
    pub fn for_signing(&self, seal_id: Option<&str>, key_id: &str) -> Result<SealForSigning, SealError> {
        let rec = match seal_id {
            Some(id) => {
                let rec = self.get(id)?;
                self.check_seal(&rec)?;
                self.check_holder(&rec, key_id)?;
                rec
            }
            None => self
                .usable_records(key_id, None)?
                .into_iter()
                .next()
                .ok_or_else(|| SealError::NoPermission("no seal is available to this key".into()))?,
        };
        let der = B64.decode(&rec.seal_b64).map_err(internal)?;
        let view = seal::verify(&der).map_err(internal)?;
        let picture = mcs_pdfseal::image::from_picture(&view.picture_type, &view.picture)
            .map_err(|e| SealError::Conflict(format!("seal picture: {e}")))?;
        Ok(SealForSigning { record: rec, der, picture })
    }

    /// Bytes to reserve in a PDF for a container carrying `seal` and `certs`.
    pub fn reserve_for(&self, seal: &[u8], certs: usize) -> usize {
        seal.len() + certs + self.cfg.signature_reserve
    }

    /// What verification trusts, from one pass over the keys: the self-signed roots the
    /// service's CAs returned (the maker's chain and every key's chain, each distinct
    /// certificate checked once), and the certificate serials whose keys were revoked or
    /// superseded.
    fn trust(&self) -> Result<Trust, SealError> {
        let mut chains: BTreeSet<String> = BTreeSet::new();
        if let Some(m) = self.store.seal_maker()? {
            chains.extend(m.chain_b64);
        }
        let mut revoked = std::collections::BTreeMap::new();
        for k in self.store.keys_matching(|k| k.certificate.is_some())? {
            let Some(cert) = k.certificate else { continue };
            let reason = match k.status {
                KeyStatus::Revoked => Some("signer certificate revoked"),
                KeyStatus::Superseded => Some("signer certificate revoked (key superseded)"),
                _ => None,
            };
            if let Some(r) = reason {
                revoked.insert(cert.serial.clone(), (r, k.revoked_at));
            }
            for old in &k.retired_certificates {
                revoked
                    .insert(old.serial.clone(), ("signer certificate superseded by a renewal", Some(old.retired_at)));
            }
            chains.extend(cert.chain_b64);
        }
        let roots = chains
            .into_iter()
            .filter_map(|c| B64.decode(c).ok())
            .filter(|der| mcs_pdfseal::sm2_certificate_signed_by(der, der).unwrap_or(false))
            .collect();
        Ok(Trust { roots, revoked })
    }

    /// Does `cert` chain (through `pool`) to a trusted root?
    fn chains_to_root(cert: &[u8], pool: &[Vec<u8>], roots: &BTreeSet<Vec<u8>>) -> bool {
        let mut current = cert.to_vec();
        for _ in 0..5 {
            if roots.contains(&current) {
                return true;
            }
            let Some(issuer) = roots
                .iter()
                .chain(pool.iter())
                .find(|c| **c != current && mcs_pdfseal::sm2_certificate_signed_by(&current, c).unwrap_or(false))
            else {
                return false;
            };
            current = issuer.clone();
        }
        false
    }

    /// Revocation of a certificate this service knows, as it stood at `at` (unix
    /// seconds): its key's state, and when it changed.
    fn revocation_of(trust: &Trust, cert: &[u8], at: i64) -> Option<String> {
        let c = x509_cert::Certificate::from_der(cert).ok()?;
        let serial = hex::encode(c.tbs_certificate().serial_number().as_bytes());
        match trust.revoked.get(&serial)? {
            (_, Some(since)) if *since > at => None,
            (why, Some(since)) => Some(format!("{why} at {}", crate::clock::rfc3339(*since))),
            (why, None) => Some((*why).to_owned()),
        }
    }

    /// Is the certificate inside its validity period at `at`?
    fn valid_at(cert: &[u8], at: i64) -> bool {
        x509_cert::Certificate::from_der(cert).is_ok_and(|c| {
            let v = c.tbs_certificate().validity();
            let at = std::time::Duration::from_secs(at.max(0) as u64);
            v.not_before.to_unix_duration() <= at && at <= v.not_after.to_unix_duration()
        })
    }

    /// The time a signature time-stamp proves (unix seconds), if the token holds: its
    /// imprint is the digest of `signature` (the signature value it time-stamps), its
    /// signature verifies under its signer's certificate, and that signer is this
    /// service's TSA or chains (SM2) to a CA this daemon trusts.
    fn time_stamp_time(&self, token: &[u8], signature: &[u8], roots: &BTreeSet<Vec<u8>>) -> Result<i64, String> {
        use mcs_pdfseal::tsp;
        let t = tsp::parse_token(token).map_err(|e| format!("the signature time-stamp: {e}"))?;
        if tsp::imprint_digest(t.imprint_alg, signature).is_none_or(|d| d != t.imprint) {
            return Err("the signature time-stamp is for another signature".into());
        }
        let verified = match t.algorithm {
            cms::Algorithm::Sm2 => mcs_pdfseal::sm2_public_key_of(&t.signer_certificate).is_ok_and(|public| {
                sm2_2p::Signature::from_der(&t.signature)
                    .is_ok_and(|sig| sm2_2p::verify(&public, &sm2_2p::e_for_message(&public, &t.to_be_signed), &sig))
            }),
            cms::Algorithm::EcdsaP256 => x509_cert::Certificate::from_der(&t.signer_certificate).is_ok_and(|c| {
                let point = c.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes();
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
                    .verify(&t.to_be_signed, &t.signature)
                    .is_ok()
            }),
        };
        if !verified {
            return Err("the signature time-stamp's own signature does not verify".into());
        }
        let ours = self.tsa().and_then(|tsa| tsa.cached_certificate()).is_some_and(|c| c.der == t.signer_certificate);
        if !ours && !Self::chains_to_root(&t.signer_certificate, &t.certificates, roots) {
            return Err("the signature time-stamp is not from a trusted time-stamp authority".into());
        }
        let seconds = t.gen_time_unix_ms.div_euclid(1000);
        if !Self::valid_at(&t.signer_certificate, seconds) {
            return Err("the time-stamp authority's certificate was not valid at the time-stamp".into());
        }
        Ok(seconds)
    }

    /// `POST /v1/verify/signature`: an SM2 signature (DER) by `certificate` over `e` (or
    /// the digest of a message with the certificate's key and the default ID), checked
    /// with the certificate's validity, its chain (through `pool`) to a CA this daemon
    /// trusts, and revocation through its key's state. Every failed check is one error.
    pub fn verify_signature(
        &self,
        signed: Signed<'_>,
        signature: &[u8],
        certificate: Option<&[u8]>,
        pool: &[Vec<u8>],
    ) -> Result<SignatureVerdict, SealError> {
        if let Some(cms) = cms_container(signature) {
            return self.verify_cms_signature(signed, cms, certificate, pool);
        }
        let certificate =
            certificate.ok_or_else(|| SealError::Invalid("a bare signature needs its certificate".into()))?;
        self.verify_bare(signed, signature, certificate, pool, self.now(), Vec::new())
    }

    /// A GB/T 35275 detached `SignedData` over the message: its messageDigest, the SM2
    /// signature over its signed attributes by the certificate it carries (the one given,
    /// if any, must be that one), the chain, and revocation judged at its signature
    /// time-stamp when it has a valid one (else now).
    fn verify_cms_signature(
        &self,
        signed: Signed<'_>,
        container: &[u8],
        certificate: Option<&[u8]>,
        pool: &[Vec<u8>],
    ) -> Result<SignatureVerdict, SealError> {
        let Signed::Message(message) = signed else {
            return Err(SealError::Invalid("a CMS signature is checked against the message, not e".into()));
        };
        let parsed = mcs_pdfseal::gbt35275::open_detached(container)
            .map_err(|e| SealError::Invalid(format!("CMS signature: {e}")))?;
        let mut errors = Vec::new();
        if !mcs_pdfseal::gbt35275::digests(&parsed, message) {
            errors.push("the messageDigest is not the SM3 digest of the message (another message)".into());
        }
        if certificate.is_some_and(|c| c != parsed.signer_certificate.as_slice()) {
            errors.push("the certificate given is not the signer's certificate in the container".into());
        }
        let mut all: Vec<Vec<u8>> = parsed.certificates.clone();
        all.extend(pool.iter().cloned());
        let mut at = self.now();
        if let Some(token) = &parsed.timestamp_token {
            match self.time_stamp_time(token, &parsed.signature, &self.trust()?.roots) {
                Ok(t) => at = t,
                Err(e) => errors.push(e),
            }
        }
        let mut verdict = self.verify_bare(
            Signed::Message(&parsed.to_be_signed),
            &parsed.signature,
            &parsed.signer_certificate,
            &all,
            at,
            errors,
        )?;
        verdict.timestamp = parsed.timestamp_token.is_some().then_some(at);
        Ok(verdict)
    }

    /// A DER SM2 signature by `certificate` over `signed`, the certificate judged at `at`.
    fn verify_bare(
        &self,
        signed: Signed<'_>,
        signature: &[u8],
        certificate: &[u8],
        pool: &[Vec<u8>],
        at: i64,
        mut errors: Vec<String>,
    ) -> Result<SignatureVerdict, SealError> {
        let cert = x509_cert::Certificate::from_der(certificate)
            .map_err(|e| SealError::Invalid(format!("certificate: {e}")))?;
        let public =
            mcs_pdfseal::sm2_public_key_of(certificate).map_err(|e| SealError::Invalid(format!("certificate: {e}")))?;
        let e = match signed {
            Signed::Digest(e) => e,
            Signed::Message(m) => sm2_2p::e_for_message(&public, m),
        };
        match sm2_2p::Signature::from_der(signature) {
            Ok(sig) if sm2_2p::verify(&public, &e, &sig) => {}
            Ok(_) => errors.push("the SM2 signature does not verify".into()),
            Err(_) => errors.push("the signature is not a DER SM2 signature".into()),
        }
        if !Self::valid_at(certificate, at) {
            errors.push("the certificate is outside its validity period".into());
        }
        let trust = self.trust()?;
        if !Self::chains_to_root(certificate, pool, &trust.roots) {
            errors.push("the certificate does not chain to a trusted CA".into());
        }
        if let Some(r) = Self::revocation_of(&trust, certificate, at) {
            errors.push(r);
        }
        Ok(SignatureVerdict {
            errors,
            signer: cert.tbs_certificate().subject().to_string(),
            certificate_serial: hex::encode(cert.tbs_certificate().serial_number().as_bytes()),
            timestamp: None,
        })
    }

    /// What a `pdf_unseal` task withdraws: the last revision of `pdf` must be a seal this
    /// service made (a signature covering the whole file whose seal's esID is one of ours),
    /// and a previous revision must exist. Returns (field, esID, signer subject).
    pub fn withdrawable(&self, pdf: &[u8]) -> Result<(String, String, String), SealError> {
        let found = pdf::last_revision_signature(pdf)
            .map_err(|e| SealError::Invalid(format!("pdf: {e}")))?
            .ok_or_else(|| SealError::Conflict("the document's last revision is not a seal".into()))?;
        let not_ours = || SealError::Conflict("the document's last seal was not made by this service".into());
        let container = cms::parse(&found.contents).map_err(|_| not_ours())?;
        let view = container.seal.as_deref().and_then(|s| seal::verify(s).ok()).ok_or_else(not_ours)?;
        if !self.store.seals()?.iter().any(|s| s.es_id == view.es_id) {
            return Err(not_ours());
        }
        pdf::previous_revision(pdf).map_err(|e| SealError::Conflict(format!("nothing to withdraw to: {e}")))?;
        let signer = x509_cert::Certificate::from_der(&container.signer_certificate)
            .map(|c| c.tbs_certificate().subject().to_string())
            .unwrap_or_default();
        Ok((found.field.unwrap_or_default(), view.es_id, signer))
    }

    /// May `key_id` withdraw a seal with this esID? Only a key that may use the seal (its
    /// signer keys and its grantees), whatever the seal's state now.
    pub fn may_withdraw(&self, es_id: &str, key_id: &str) -> Result<(), SealError> {
        let rec = self.store.seals()?.into_iter().find(|s| s.es_id == es_id).ok_or(SealError::NotFound)?;
        if rec.signer_key_ids.iter().any(|k| k == key_id) || rec.grants.iter().any(|g| g.key_id == key_id) {
            return Ok(());
        }
        Err(SealError::NoPermission(format!("seal {} is not this key's to withdraw", rec.id)))
    }

    /// When the seal with this esID was revoked, if this service made it and revoked it.
    fn seal_revoked_at(&self, es_id: &str) -> Result<Option<i64>, SealError> {
        Ok(self.store.seals()?.into_iter().find(|s| s.es_id == es_id).and_then(|s| s.revoked_at))
    }

    /// `POST /v1/verify/seal`: the seal's own signature and format, its maker's chain, its
    /// validity now, and whether it was revoked.
    pub fn verify_seal(&self, der: &[u8]) -> Result<SealVerdict, SealError> {
        let view = seal::verify(der).map_err(|e| SealError::Invalid(e.to_string()))?;
        let mut errors = view.errors.clone();
        let trust = self.trust()?;
        if !Self::chains_to_root(&view.maker_certificate, &[], &trust.roots) {
            errors.push("the maker certificate does not chain to a trusted CA".into());
        }
        let at = self.now() as u64;
        if at < view.valid_from || at > view.valid_to {
            errors.push("the seal is outside its validity period".into());
        }
        if let Some(revoked_at) = self.seal_revoked_at(&view.es_id)? {
            errors.push(format!("the seal was revoked at {}", crate::clock::rfc3339(revoked_at)));
        }
        Ok(SealVerdict {
            es_id: view.es_id,
            name: view.name,
            valid_from: view.valid_from,
            valid_to: view.valid_to,
            errors,
        })
    }

    /// `POST /v1/verify/pdf`: every signature, checked in full.
    pub fn verify_pdf(&self, pdf_bytes: &[u8]) -> Result<PdfVerdict, SealError> {
        let found = pdf::signatures(pdf_bytes).map_err(|e| SealError::Invalid(e.to_string()))?;
        let trust = self.trust()?;
        let roots = &trust.roots;
        let mut out = Vec::new();
        for f in found {
            let mut errors: Vec<String> = Vec::new();
            let mut entry = PdfSignatureVerdict {
                field: f.field.clone(),
                covers_whole_document: f.covers_whole_document,
                signer: None,
                signed_at: None,
                seal: None,
                timestamp: None,
                valid_at: self.now(),
                errors: Vec::new(),
            };
            if !f.range_ok {
                errors.push("ByteRange is malformed or does not exclude exactly the signature".into());
            }
            match cms::parse(&f.contents) {
                Err(e) => errors.push(format!("signature container: {e}")),
                Ok(p) => {
                    if let Some(ranges) = f.signed_ranges(pdf_bytes)
                        && p.algorithm.digest(&ranges) != p.message_digest
                    {
                        errors.push("document digest mismatch: the signed bytes were changed".into());
                    }
                    if let Ok(c) = x509_cert::Certificate::from_der(&p.signer_certificate) {
                        entry.signer = Some(c.tbs_certificate().subject().to_string());
                    }
                    match p.algorithm {
                        cms::Algorithm::Sm2 => match mcs_pdfseal::sm2_public_key_of(&p.signer_certificate) {
                            Ok(public) => {
                                let ok = sm2_2p::Signature::from_der(&p.signature).is_ok_and(|sig| {
                                    sm2_2p::verify(&public, &sm2_2p::e_for_message(&public, &p.to_be_signed), &sig)
                                });
                                if !ok {
                                    errors.push("the SM2 signature does not verify".into());
                                }
                            }
                            Err(e) => errors.push(format!("signer certificate: {e}")),
                        },
                        cms::Algorithm::EcdsaP256 => {
                            errors.push("ECDSA signatures are checked by standard PDF validators, not here".into())
                        }
                    }
                    if let Some(t) = p.signing_time {
                        entry.signed_at = Some(t);
                    }
                    // Judged at its time-stamp when it has one that holds; else now.
                    if let Some(token) = &p.timestamp_token {
                        match self.time_stamp_time(token, &p.signature, roots) {
                            Ok(at) => {
                                entry.timestamp = Some(at);
                                entry.valid_at = at;
                                if p.signing_time.is_some_and(|t| t as i64 > at + 300) {
                                    errors.push("the signing time is later than the signature's time-stamp".into());
                                }
                            }
                            Err(why) => errors.push(why),
                        }
                    }
                    let at = entry.valid_at;
                    if !Self::chains_to_root(&p.signer_certificate, &p.certificates, roots) {
                        errors.push("the signer certificate does not chain to a trusted CA".into());
                    }
                    if !Self::valid_at(&p.signer_certificate, at) {
                        errors.push("the signer certificate was not valid at the time of signing".into());
                    }
                    if let Some(r) = Self::revocation_of(&trust, &p.signer_certificate, at) {
                        errors.push(r);
                    }
                    match &p.seal {
                        None => errors.push("no seal in the signature".into()),
                        Some(s) => match seal::verify(s) {
                            Err(e) => errors.push(format!("seal: {e}")),
                            Ok(view) => {
                                entry.seal = Some(SealName { es_id: view.es_id.clone(), name: view.name.clone() });
                                errors.extend(view.errors.iter().map(|e| format!("seal: {e}")));
                                if !view.signer_certificates.contains(&p.signer_certificate) {
                                    errors
                                        .push("the signer's certificate is not in the seal's certificate list".into());
                                }
                                if p.signing_time.is_none_or(|t| t < view.valid_from || t > view.valid_to) {
                                    errors.push("the seal was not valid at the signing time".into());
                                }
                                match self.seal_revoked_at(&view.es_id) {
                                    Ok(Some(r)) if r <= at => errors.push(format!(
                                        "the seal was revoked at {}, before the signature",
                                        crate::clock::rfc3339(r)
                                    )),
                                    Ok(_) => {}
                                    Err(e) => errors.push(format!("seal state: {e}")),
                                }
                                if !Self::chains_to_root(&view.maker_certificate, &p.certificates, roots) {
                                    errors.push("the seal maker's certificate does not chain to a trusted CA".into());
                                }
                            }
                        },
                    }
                }
            }
            entry.errors = errors;
            out.push(entry);
        }
        Ok(PdfVerdict { signatures: out })
    }

    pub fn keys(&self) -> &Arc<KeyService> {
        &self.keys
    }
}

/// `placement: "deferred"`: the gateway chooses the seal and its place after the claim.
pub const DEFERRED: &str = "deferred";

/// Is this the `placement` of a task whose seal is chosen on the PC?
pub fn is_deferred(placement: &Value) -> bool {
    placement.as_str() == Some(DEFERRED)
}

/// `placement` of a `pdf_seal` task (API.md), in points.
pub fn parse_placement(v: &Value) -> Result<pdf::Placement, String> {
    let obj = v.as_object().ok_or("placement must be an object")?;
    let f = |k: &str| obj.get(k).and_then(Value::as_f64);
    let known = |allowed: &[&str]| match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown placement field `{k}`")),
        None => Ok(()),
    };
    if let Some(cp) = obj.get("cross_page") {
        known(&["cross_page"])?;
        let cp = cp.as_object().ok_or("cross_page must be an object")?;
        if let Some(k) = cp.keys().find(|k| !["side", "y"].contains(&k.as_str())) {
            return Err(format!("unknown cross_page field `{k}`"));
        }
        if cp.get("y").is_some_and(|y| !y.is_f64() && !y.is_u64() && !y.is_i64()) {
            return Err("cross_page.y must be a number".into());
        }
        let side = match cp.get("side").and_then(Value::as_str) {
            Some("right") => pdf::Side::Right,
            Some("left") => pdf::Side::Left,
            _ => return Err("cross_page.side must be right or left".into()),
        };
        return Ok(pdf::Placement::CrossPage { side, y: cp.get("y").and_then(Value::as_f64) });
    }
    if let Some(k) = obj.get("keyword") {
        known(&["keyword", "occurrence"])?;
        let keyword = k.as_str().filter(|s| !s.is_empty()).ok_or("keyword must be a non-empty string")?;
        let occurrence = match obj.get("occurrence") {
            None => 1,
            Some(o) => o.as_u64().filter(|n| (1..=10_000).contains(n)).ok_or("occurrence must be 1..=10000")? as u32,
        };
        return Ok(pdf::Placement::Keyword { keyword: keyword.to_owned(), occurrence });
    }
    let (x, y) = (f("x").ok_or("placement needs x")?, f("y").ok_or("placement needs y")?);
    if let Some(pages) = obj.get("pages") {
        known(&["pages", "x", "y"])?;
        let pages = pages
            .as_array()
            .ok_or("pages must be a list")?
            .iter()
            .map(|p| p.as_u64().filter(|n| *n >= 1).map(|n| n as u32))
            .collect::<Option<Vec<_>>>()
            .ok_or("pages must be page numbers from 1")?;
        if pages.is_empty() {
            return Err("pages must not be empty".into());
        }
        return Ok(pdf::Placement::Pages { pages, x, y });
    }
    known(&["page", "x", "y"])?;
    let page =
        obj.get("page").and_then(Value::as_u64).filter(|n| *n >= 1).ok_or("placement needs page (from 1)")? as u32;
    Ok(pdf::Placement::At { page, x, y })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placements_of_api_md_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_placement(&json!({"page": 2, "x": 100, "y": 200.5})).unwrap(),
            pdf::Placement::At { page: 2, x: 100.0, y: 200.5 }
        );
        assert_eq!(
            parse_placement(&json!({"keyword": "盖章处"})).unwrap(),
            pdf::Placement::Keyword { keyword: "盖章处".into(), occurrence: 1 }
        );
        assert_eq!(
            parse_placement(&json!({"pages": [1, 3], "x": 1, "y": 2})).unwrap(),
            pdf::Placement::Pages { pages: vec![1, 3], x: 1.0, y: 2.0 }
        );
        assert_eq!(
            parse_placement(&json!({"cross_page": {"side": "left", "y": 300}})).unwrap(),
            pdf::Placement::CrossPage { side: pdf::Side::Left, y: Some(300.0) }
        );
        for bad in [
            json!({"page": 0, "x": 1, "y": 1}),
            json!({"x": 1}),
            json!({"keyword": ""}),
            json!({"cross_page": {"side": "up"}}),
            json!({"page": 1, "x": 1, "y": 1, "z": 0}),
            json!([]),
            json!({"cross_page": {"side": "left", "extra": 1}}),
            json!({"cross_page": {"side": "left", "y": "top"}}),
        ] {
            assert!(parse_placement(&bad).is_err(), "{bad}");
        }
    }
}
