//! What a stored key record refers to, and the walk over every wrapped secret.
//!
//! The domain's [`KeyRecord`] has no storage details; the record on disk ([`StoredKey`])
//! adds where the share and verifier are (hex [`SlotRef`]s into the vault) and replaces
//! the certificate chain with a reference to its one copy in `ca_chains`. The JSON is the
//! one keys were always stored in (the fields used to be in the model), so existing
//! stores decode unchanged.
//!
//! KEK rotation walks every wrapped secret through [`SecretStorage`]: task and daemon-key
//! blobs in `secrets`, key shares and verifiers through their records.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::codec::{decode, encode};
use super::vault::SlotRef;
use super::{Durability, SecretEntry, SecretStorage, StaleCopy, Store, StoreError};
use crate::model::key::{
    CertificateInfo, KeyRecord, KeyStatus, PinResetState, PinState, PlatformGrant, RetiredCertificate, Subject,
    Suspension,
};
use crate::model::secret::SecretKind;

/// A key record as stored (see the module doc). `key.certificate.chain_b64` is empty
/// while `chain_ref` names the chain.
#[derive(Debug, Clone)]
pub(super) struct StoredKey {
    pub key: KeyRecord,
    pub share_ref: Option<String>,
    pub verifier_ref: Option<String>,
    pub recovery_ref: Option<String>,
    pub chain_ref: Option<String>,
}

/// The on-disk shape of [`StoredKey`]: the model's fields in their order, plus the
/// references where they always were.
#[derive(Serialize, Deserialize)]
struct KeyRepr {
    id: String,
    enrollment_id: String,
    subject: Subject,
    ca: String,
    status: KeyStatus,
    public_key: String,
    device_id: String,
    platforms: Vec<PlatformGrant>,
    pin: PinState,
    created_at: i64,
    validity_days: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate: Option<CertRepr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suspension: Option<Suspension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiry_notified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin_reset: Option<PinResetState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired_certificates: Vec<RetiredCertificate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    share_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verifier_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovery_ref: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CertRepr {
    der_b64: String,
    chain_b64: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain_ref: Option<String>,
    serial: String,
    subject: String,
    not_after: i64,
}

/// Only the references of a stored key (reading a secret needs no more).
#[derive(Deserialize)]
struct RefsRepr {
    #[serde(default)]
    share_ref: Option<String>,
    #[serde(default)]
    verifier_ref: Option<String>,
    #[serde(default)]
    recovery_ref: Option<String>,
}

impl StoredKey {
    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<StoredKey, StoreError> {
        let r: KeyRepr = decode(key, bytes)?;
        let (certificate, chain_ref) = match r.certificate {
            Some(c) => (
                Some(CertificateInfo {
                    der_b64: c.der_b64,
                    chain_b64: c.chain_b64,
                    serial: c.serial,
                    subject: c.subject,
                    not_after: c.not_after,
                }),
                c.chain_ref,
            ),
            None => (None, None),
        };
        let key = KeyRecord {
            id: r.id,
            enrollment_id: r.enrollment_id,
            subject: r.subject,
            ca: r.ca,
            status: r.status,
            public_key: r.public_key,
            device_id: r.device_id,
            platforms: r.platforms,
            pin: r.pin,
            created_at: r.created_at,
            validity_days: r.validity_days,
            revocation_reason: r.revocation_reason,
            revoked_at: r.revoked_at,
            certificate,
            p1: r.p1,
            suspension: r.suspension,
            expiry_notified: r.expiry_notified,
            pin_reset: r.pin_reset,
            retired_certificates: r.retired_certificates,
            p2: r.p2,
        };
        Ok(StoredKey {
            key,
            share_ref: r.share_ref,
            verifier_ref: r.verifier_ref,
            recovery_ref: r.recovery_ref,
            chain_ref,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let KeyRecord {
            id,
            enrollment_id,
            subject,
            ca,
            status,
            public_key,
            device_id,
            platforms,
            pin,
            created_at,
            validity_days,
            revocation_reason,
            revoked_at,
            certificate,
            p1,
            suspension,
            expiry_notified,
            pin_reset,
            retired_certificates,
            p2,
        } = self.key.clone();
        let certificate = certificate.map(|c| CertRepr {
            der_b64: c.der_b64,
            chain_b64: c.chain_b64,
            chain_ref: self.chain_ref.clone(),
            serial: c.serial,
            subject: c.subject,
            not_after: c.not_after,
        });
        encode(&KeyRepr {
            id,
            enrollment_id,
            subject,
            ca,
            status,
            public_key,
            device_id,
            platforms,
            pin,
            created_at,
            validity_days,
            revocation_reason,
            revoked_at,
            certificate,
            p1,
            suspension,
            expiry_notified,
            pin_reset,
            retired_certificates,
            p2,
            share_ref: self.share_ref.clone(),
            verifier_ref: self.verifier_ref.clone(),
            recovery_ref: self.recovery_ref.clone(),
        })
    }

    /// A new key's record (no certificate yet, or one without a stored chain).
    pub fn new(key: KeyRecord) -> StoredKey {
        StoredKey { key, share_ref: None, verifier_ref: None, recovery_ref: None, chain_ref: None }
    }

    pub fn secret_ref(&mut self, kind: SecretKind) -> Option<&mut Option<String>> {
        match kind {
            SecretKind::Share => Some(&mut self.share_ref),
            SecretKind::PinVerifier => Some(&mut self.verifier_ref),
            SecretKind::RecoveryKey => Some(&mut self.recovery_ref),
            _ => None,
        }
    }

    /// The stored value for a key-owned secret (a vault reference), if any.
    pub fn stored_secret(&self, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        let field = match kind {
            SecretKind::Share => &self.share_ref,
            SecretKind::PinVerifier => &self.verifier_ref,
            SecretKind::RecoveryKey => &self.recovery_ref,
            _ => return Ok(None),
        };
        hex_ref(&self.key.id, field.as_deref())
    }
}

fn hex_ref(id: &str, field: Option<&str>) -> Result<Option<Vec<u8>>, StoreError> {
    field
        .map(hex::decode)
        .transpose()
        .map_err(|e| StoreError::Corrupt { key: id.to_owned(), reason: format!("secret reference: {e}") })
}

/// Secrets that belong to a key and live in its record.
pub(super) fn key_owned(kind: SecretKind) -> bool {
    SecretKind::KEY_OWNED.contains(&kind)
}

/// `<owner>/<kind label>` → (owner, kind).
pub(super) fn parse_secret_key(key: &[u8]) -> Option<(String, SecretKind)> {
    let at = key.iter().rposition(|&b| b == b'/')?;
    Some((String::from_utf8(key[..at].to_vec()).ok()?, SecretKind::from_label(&key[at + 1..])?))
}

pub(super) fn secret_key(owner: &str, kind: SecretKind) -> Vec<u8> {
    let mut k = Vec::with_capacity(owner.len() + 16);
    k.extend_from_slice(owner.as_bytes());
    k.push(b'/');
    k.extend_from_slice(kind.label());
    k
}

/// The vault slot a stored value references, if it is a reference.
pub(super) fn slot_of(value: Option<&[u8]>) -> Option<u64> {
    value.and_then(SlotRef::decode).map(|r| r.slot)
}

impl Store {
    /// Every stored value of a key-owned secret (vault references in the key records):
    /// `f(key id, kind, value)`, one record at a time.
    pub(super) fn for_each_key_secret(
        keys: &sled::Tree,
        mut f: impl FnMut(&str, SecretKind, &[u8]),
    ) -> Result<(), StoreError> {
        for entry in keys.iter() {
            let (k, v) = entry?;
            let rec = StoredKey::decode(&k, &v)?;
            for kind in SecretKind::KEY_OWNED {
                if let Some(value) = rec.stored_secret(kind)? {
                    f(&rec.key.id, kind, &value);
                }
            }
        }
        Ok(())
    }

    /// Old layout → new: `secrets` entries `<key id>/share` and `<key id>/pin-verifier`
    /// move into the key's record (one transaction per key).
    pub(super) fn move_references_into_key_records(secrets: &sled::Tree, keys: &sled::Tree) -> Result<(), StoreError> {
        let mut moved = 0u64;
        for entry in secrets.iter() {
            let (k, v) = entry?;
            let Some((id, kind)) = parse_secret_key(&k).filter(|(_, kind)| key_owned(*kind)) else { continue };
            let result = (secrets, keys).transaction(|(secrets, keys)| {
                if let Some(raw) = keys.get(id.as_bytes())? {
                    let mut rec = StoredKey::decode(id.as_bytes(), &raw)
                        .map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
                    if let Some(field) = rec.secret_ref(kind) {
                        *field = Some(hex::encode(&v));
                    }
                    keys.insert(id.as_bytes(), rec.encode())?;
                }
                secrets.remove(&k)?;
                Ok(())
            });
            match result {
                Ok(()) => moved += 1,
                Err(TransactionError::Abort(reason)) => return Err(StoreError::Corrupt { key: id, reason }),
                Err(TransactionError::Storage(e)) => return Err(e.into()),
            }
        }
        if moved > 0 {
            secrets.flush()?;
            tracing::info!(moved, "store: key secret references moved into the key records");
        }
        Ok(())
    }

    /// A stored value as the blob: read through the vault if it is a reference.
    pub(super) fn resolve(&self, value: Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        match value {
            Some(v) => match SlotRef::decode(v) {
                Some(r) => Ok(Some(self.files()?.vault.get(&r)?.to_vec())),
                None => Ok(Some(v.to_vec())),
            },
            None => Ok(None),
        }
    }

    /// A key-owned secret's blob, reading only the record's references.
    pub(super) fn key_owned_secret(&self, key_id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(raw) = self.files()?.keys.get(key_id.as_bytes())? else { return Ok(None) };
        let refs: RefsRepr = decode(key_id.as_bytes(), &raw)?;
        let field = match kind {
            SecretKind::Share => refs.share_ref,
            SecretKind::PinVerifier => refs.verifier_ref,
            SecretKind::RecoveryKey => refs.recovery_ref,
            _ => None,
        };
        self.resolve(hex_ref(key_id, field.as_deref())?.as_deref())
    }

    /// Any wrapped secret by owner and kind (tools and tests).
    pub fn secret(&self, owner: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        if key_owned(kind) {
            return self.key_owned_secret(owner, kind);
        }
        self.resolve(self.files()?.secrets.get(secret_key(owner, kind))?.as_deref())
    }

    /// Compare-and-swap of a key-owned secret's stored value inside the key record.
    fn swap_key_secret(&self, id: &str, kind: SecretKind, old: &[u8], new: &[u8]) -> Result<bool, StoreError> {
        loop {
            let Some(raw) = self.files()?.keys.get(id.as_bytes())? else { return Ok(false) };
            let mut rec = StoredKey::decode(id.as_bytes(), &raw)?;
            if rec.stored_secret(kind)?.as_deref() != Some(old) {
                return Ok(false);
            }
            if let Some(field) = rec.secret_ref(kind) {
                *field = Some(hex::encode(new));
            }
            if self.files()?.keys.compare_and_swap(id.as_bytes(), Some(&raw), Some(rec.encode()))?.is_ok() {
                return Ok(true);
            }
        }
    }
}

impl SecretStorage for Store {
    fn secret_entries(&self) -> Result<Vec<SecretEntry>, StoreError> {
        let mut out = Vec::new();
        for entry in self.files()?.secrets.iter() {
            let (k, v) = entry?;
            let (owner, kind) = parse_secret_key(&k).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: "unexpected secrets key".into(),
            })?;
            out.push(SecretEntry { owner, kind, stored: v.to_vec() });
        }
        Self::for_each_key_secret(&self.files()?.keys, |id, kind, value| {
            out.push(SecretEntry { owner: id.to_owned(), kind, stored: value.to_vec() })
        })?;
        Ok(out)
    }

    fn blob_of(&self, entry: &SecretEntry) -> Result<Vec<u8>, StoreError> {
        Ok(self.resolve(Some(&entry.stored))?.unwrap_or_default())
    }

    /// Vault-held secrets get a fresh slot; the old one is returned to erase.
    fn replace_secret(&self, entry: &SecretEntry, new_blob: &[u8]) -> Result<(bool, Option<StaleCopy>), StoreError> {
        let _writing = self.writing();
        let key = secret_key(&entry.owner, entry.kind);
        let owned = key_owned(entry.kind);
        let old = &entry.stored[..];
        match SlotRef::decode(old) {
            Some(old_ref) => {
                let fresh = self.files()?.vault.put(new_blob)?;
                let fresh_value = fresh.encode();
                let swapped = match owned {
                    true => self.swap_key_secret(&entry.owner, entry.kind, old, &fresh_value)?,
                    false => self.files()?.secrets.compare_and_swap(key, Some(old), Some(&fresh_value[..]))?.is_ok(),
                };
                if swapped {
                    Ok((true, Some(StaleCopy(old_ref.slot))))
                } else {
                    self.files()?.vault.shred(&[fresh.slot])?;
                    Ok((false, None))
                }
            }
            None => match owned {
                true => Ok((self.swap_key_secret(&entry.owner, entry.kind, old, new_blob)?, None)),
                false => Ok((self.files()?.secrets.compare_and_swap(key, Some(old), Some(new_blob))?.is_ok(), None)),
            },
        }
    }

    fn erase_after_flush(&self, stale: &[StaleCopy]) -> Result<(), StoreError> {
        self.flush_blocking()?;
        self.files()?.vault.shred(&stale.iter().map(|s| s.0).collect::<Vec<_>>())?;
        Ok(())
    }
}

impl Store {
    /// A certificate as a stored key record holds it: the chain written once to
    /// `ca_chains` (if new; an unreferenced chain is harmless) and replaced by its id.
    /// Also notes where the certificate ends in `cert_ends` (key `key_id`), before the
    /// record is written: the index may list an end no record has (harmless, skipped), but
    /// never misses one a record has.
    pub(super) fn slim_certificate(
        &self,
        key_id: &str,
        cert: &CertificateInfo,
    ) -> Result<(CertificateInfo, Option<String>), StoreError> {
        note_cert_end(&self.files()?.cert_ends, cert.not_after, key_id)?;
        if cert.chain_b64.is_empty() {
            return Ok((cert.clone(), None));
        }
        let id = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            for c in &cert.chain_b64 {
                h.update(c.as_bytes());
                h.update(b"\n");
            }
            hex::encode(h.finalize())
        };
        let mut cache = self.chain_cache.lock().unwrap_or_else(|p| p.into_inner());
        if !cache.contains_key(&id) {
            self.files()?.chains.insert(id.as_bytes(), encode(&cert.chain_b64))?;
            cache.insert(id.clone(), cert.chain_b64.clone());
        }
        drop(cache);
        let mut slim = cert.clone();
        slim.chain_b64 = Vec::new();
        Ok((slim, Some(id)))
    }

    /// `rec` (as a caller changed it) with its certificate slimmed for storage.
    pub(super) fn slimmed(&self, mut rec: StoredKey) -> Result<StoredKey, StoreError> {
        rec.chain_ref = None;
        if let Some(cert) = rec.key.certificate.take() {
            let (slim, chain_ref) = self.slim_certificate(&rec.key.id, &cert)?;
            rec.key.certificate = Some(slim);
            rec.chain_ref = chain_ref;
        }
        Ok(rec)
    }

    /// A stored key as callers see it: the chain filled in from `ca_chains`.
    pub(super) fn filled(&self, rec: StoredKey) -> Result<KeyRecord, StoreError> {
        let StoredKey { mut key, chain_ref, .. } = rec;
        let Some(id) = chain_ref else { return Ok(key) };
        let Some(cert) = key.certificate.as_mut() else { return Ok(key) };
        let mut cache = self.chain_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(chain) = cache.get(&id) {
            cert.chain_b64 = chain.clone();
            return Ok(key);
        }
        let raw = self.files()?.chains.get(id.as_bytes())?.ok_or_else(|| StoreError::Corrupt {
            key: key.id.clone(),
            reason: format!("certificate chain {id} missing"),
        })?;
        let chain: Vec<String> = decode(id.as_bytes(), &raw)?;
        cache.insert(id, chain.clone());
        cert.chain_b64 = chain;
        Ok(key)
    }

    /// A key record as callers see it, from its stored bytes.
    pub(super) fn decode_key(&self, key: &[u8], bytes: &[u8]) -> Result<KeyRecord, StoreError> {
        self.filled(StoredKey::decode(key, bytes)?)
    }
}

/// `meta` key saying `cert_ends` holds the end of every stored certificate.
const CERT_ENDS_V1: &[u8] = b"cert-ends-v1";

/// Ids per `cert_ends` chunk: a day's certificates are chunks of at most this many, so a
/// note rewrites a few kilobytes, and a million keys are a few thousand entries (sled
/// keeps ~40 bytes in memory per entry, whatever its size).
const CERT_END_CHUNK: usize = 256;

/// The UTC day (Unix seconds / 86,400; an end before 1970 files under day 0).
pub(super) fn cert_end_day(not_after: i64) -> u64 {
    (not_after.max(0) / 86_400) as u64
}

/// The prefix of a day's chunks: fixed-width decimal, so the keys sort by day.
pub(super) fn cert_end_day_key(day: u64) -> Vec<u8> {
    format!("{day:010}/").into_bytes()
}

/// Note that `key_id` has a certificate ending at `not_after`: its id joins the day's
/// last chunk (or a new one when that is full), by compare-and-swap; nothing if that
/// chunk lists it already.
pub(super) fn note_cert_end(index: &sled::Tree, not_after: i64, key_id: &str) -> Result<(), StoreError> {
    let prefix = cert_end_day_key(cert_end_day(not_after));
    loop {
        // Only the last chunk is read: an id noted in an earlier one too is read twice and
        // kept once by the reader.
        let last = match index.scan_prefix(&prefix).next_back().transpose()? {
            Some((k, v)) => {
                let ids: Vec<String> = decode(&k, &v)?;
                if ids.iter().any(|i| i == key_id) {
                    return Ok(());
                }
                Some((k, v, ids))
            }
            None => None,
        };
        let (key, old, mut ids) = match last {
            Some((k, v, ids)) if ids.len() < CERT_END_CHUNK => (k.to_vec(), Some(v), ids),
            Some((k, ..)) => (chunk_key(&prefix, chunk_of(&k) + 1), None, Vec::new()),
            None => (chunk_key(&prefix, 0), None, Vec::new()),
        };
        ids.push(key_id.to_owned());
        if index.compare_and_swap(&key, old, Some(encode(&ids)))?.is_ok() {
            return Ok(());
        }
    }
}

fn chunk_key(day_prefix: &[u8], chunk: u64) -> Vec<u8> {
    let mut k = day_prefix.to_vec();
    k.extend_from_slice(format!("{chunk:06}").as_bytes());
    k
}

fn chunk_of(key: &[u8]) -> u64 {
    std::str::from_utf8(&key[key.len().saturating_sub(6)..]).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The key ids noted for the days `first..=last`, in day order (a key may repeat).
pub(super) fn noted_cert_ends(index: &sled::Tree, first: u64, last: u64) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for entry in index.range(cert_end_day_key(first)..cert_end_day_key(last + 1)) {
        let (k, v) = entry?;
        out.extend(decode::<Vec<String>>(&k, &v)?);
    }
    Ok(out)
}

impl Store {
    /// Open `cert_ends`, filling it from the key records first if `meta` does not say it
    /// is complete (a store or a backup from before the index): one pass, once. The flag
    /// says whether it made that pass.
    pub(super) fn cert_ends_index(
        db: &sled::Db,
        keys: &sled::Tree,
        meta: &sled::Tree,
    ) -> Result<(sled::Tree, bool), StoreError> {
        let index = db.open_tree("cert_ends")?;
        if meta.get(CERT_ENDS_V1)?.is_some() {
            return Ok((index, false));
        }
        let mut days: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
        for entry in keys.iter() {
            let (k, v) = entry?;
            let rec = StoredKey::decode(&k, &v)?;
            if let Some(cert) = &rec.key.certificate {
                days.entry(cert_end_day(cert.not_after)).or_default().push(rec.key.id);
            }
        }
        let noted: usize = days.values().map(Vec::len).sum();
        for (day, ids) in days {
            let prefix = cert_end_day_key(day);
            for (i, chunk) in ids.chunks(CERT_END_CHUNK).enumerate() {
                index.insert(chunk_key(&prefix, i as u64), encode(&chunk.to_vec()))?;
            }
        }
        // After the entries in sled's log: a crash before it only means another pass.
        meta.insert(CERT_ENDS_V1, &[1u8][..])?;
        db.flush()?;
        tracing::info!(certificates = noted, "store: certificate-end index built from the key records");
        Ok((index, true))
    }
}
