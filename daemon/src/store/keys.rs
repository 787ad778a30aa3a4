//! Enrollments and keys on sled: activation, the PIN counter, the verifier, revocation
//! with erasure of the vault slots.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::audit::{Abort, append_in, audit_seq_taken};
use super::codec::{decode, encode};
use super::key_refs::{StoredKey, cert_end_day, noted_cert_ends, slot_of};
use super::storage::check_edit;
use super::vault::SlotRef;
use super::{
    ActivateOutcome, AuditAppend, Durability, KeySecrets, KeyStorage, PinReset, PinResetCommit, Store, StoreError,
};
use crate::model::key::{EnrollmentRecord, EnrollmentState, KeyRecord, KeyStatus, PinState};
use crate::model::secret::SecretKind;

impl Store {
    /// Read-modify-write one stored key record (compare-and-swap loop). `change` returns
    /// whether to write; the record as it is afterwards (as stored) is returned.
    fn change_stored(
        &self,
        id: &str,
        mut change: impl FnMut(&mut StoredKey) -> Result<bool, StoreError>,
    ) -> Result<Option<StoredKey>, StoreError> {
        let _writing = self.writing();
        loop {
            let Some(old) = self.files()?.keys.get(id.as_bytes())? else { return Ok(None) };
            let mut rec = StoredKey::decode(id.as_bytes(), &old)?;
            if !change(&mut rec)? {
                return Ok(Some(rec));
            }
            if self.files()?.keys.compare_and_swap(id.as_bytes(), Some(&old), Some(rec.encode()))?.is_ok() {
                return Ok(Some(rec));
            }
        }
    }
}

impl Store {
    /// Write blobs to fresh vault slots (synced), in order; on a failure the ones written
    /// are erased again and nothing is returned.
    pub(super) fn put_blobs(&self, blobs: &[Option<&[u8]>]) -> Result<Vec<Option<SlotRef>>, StoreError> {
        let vault = &self.files()?.vault;
        let mut refs = Vec::with_capacity(blobs.len());
        for blob in blobs {
            match blob.map(|b| vault.put(b)).transpose() {
                Ok(r) => refs.push(r),
                Err(e) => {
                    vault.shred(&refs.iter().flatten().map(|r: &SlotRef| r.slot).collect::<Vec<_>>())?;
                    return Err(e.into());
                }
            }
        }
        Ok(refs)
    }

    /// Every enrollment (`mcsd store migrate`).
    pub(super) fn enrollments_raw(&self) -> Result<Vec<EnrollmentRecord>, StoreError> {
        self.files()?
            .enrollments
            .iter()
            .map(|r| r.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }
}

impl KeyStorage for Store {
    fn put_enrollment(&self, rec: &EnrollmentRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.enrollments.insert(rec.id.as_bytes(), encode(rec))?;
        Ok(())
    }

    fn enrollment(&self, id: &str) -> Result<Option<EnrollmentRecord>, StoreError> {
        self.files()?.enrollments.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    fn activate_with(
        &self,
        key: &KeyRecord,
        secrets: &KeySecrets<'_>,
        audit: Option<&AuditAppend>,
    ) -> Result<ActivateOutcome, StoreError> {
        let _writing = self.writing();
        let index = format!("{}/{}", key.device_id, key.id).into_bytes();
        // Blobs first (synced), then the transaction that references them.
        let blobs = [Some(secrets.share), Some(secrets.verifier), secrets.recovery];
        let refs = self.put_blobs(&blobs)?;
        let written: Vec<u64> = refs.iter().flatten().map(|r| r.slot).collect();
        let mut stored = self.slimmed(StoredKey::new(key.clone()))?;
        let as_hex = |r: &Option<SlotRef>| r.map(|r| hex::encode(r.encode()));
        stored.share_ref = as_hex(&refs[0]);
        stored.verifier_ref = as_hex(&refs[1]);
        stored.recovery_ref = as_hex(&refs[2]);
        let key_bytes = stored.encode();
        let f = self.files()?;
        let abort = |o| ConflictableTransactionError::Abort(Abort::Outcome(o));
        let result =
            (&f.enrollments, &f.keys, &f.device_keys, &f.audit).transaction(|(enr, keys, device_keys, audit_tree)| {
                let Some(raw) = enr.get(key.enrollment_id.as_bytes())? else {
                    return Err(abort(ActivateOutcome::NoSuchEnrollment));
                };
                let mut rec: EnrollmentRecord =
                    decode(key.enrollment_id.as_bytes(), &raw).map_err(|_| abort(ActivateOutcome::NoSuchEnrollment))?;
                if rec.state != EnrollmentState::Pending {
                    return Err(abort(ActivateOutcome::AlreadyActivated));
                }
                if let Some(a) = audit {
                    append_in(audit_tree, a)?;
                }
                rec.state = EnrollmentState::Activated { key_id: key.id.clone() };
                enr.insert(key.enrollment_id.as_bytes(), encode(&rec))?;
                keys.insert(key.id.as_bytes(), key_bytes.clone())?;
                device_keys.insert(index.clone(), &[][..])?;
                Ok(())
            });
        match result {
            Ok(()) => Ok(ActivateOutcome::Done),
            Err(TransactionError::Abort(why)) => {
                self.files()?.vault.shred(&written)?;
                match why {
                    Abort::Outcome(outcome) => Ok(outcome),
                    Abort::AuditSeqTaken(seq) => Err(audit_seq_taken(seq)),
                }
            }
            // Not shredded: the transaction may have reached the disk; if it did not, the
            // slots are unreferenced and the next start (a full check) zeroes them.
            Err(TransactionError::Storage(e)) => {
                self.files()?.vault.mark_suspect();
                Err(e.into())
            }
        }
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.files()?.keys.get(id.as_bytes())?.map(|v| self.decode_key(id.as_bytes(), &v)).transpose()
    }

    fn keys_of_device(&self, device_id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let prefix = format!("{device_id}/");
        let mut out = Vec::new();
        for entry in self.files()?.device_keys.scan_prefix(prefix.as_bytes()) {
            let (k, _) = entry?;
            let key_id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(rec) = self.key(&key_id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn keys_where(&self, keep: &mut dyn FnMut(&KeyRecord) -> bool) -> Result<Vec<KeyRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.files()?.keys.iter() {
            let (k, v) = entry?;
            let rec = self.decode_key(&k, &v)?;
            if keep(&rec) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn keys_ending(&self, after: i64, until: i64) -> Result<Vec<KeyRecord>, StoreError> {
        let mut out: Vec<KeyRecord> = Vec::new();
        if until <= after {
            return Ok(out);
        }
        let mut seen = std::collections::HashSet::new();
        for id in noted_cert_ends(&self.files()?.cert_ends, cert_end_day(after), cert_end_day(until))? {
            if !seen.insert(id.clone()) {
                continue;
            }
            // The days around the window, and past ends (renewed, or a transition that
            // did not happen), are sorted out against the record.
            let Some(key) = self.key(&id)? else { continue };
            if key.certificate.as_ref().is_some_and(|c| c.not_after > after && c.not_after <= until) {
                out.push(key);
            }
        }
        let end = |k: &KeyRecord| k.certificate.as_ref().map_or(0, |c| c.not_after);
        out.sort_by(|a, b| end(a).cmp(&end(b)).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    fn ca_roots(&self) -> Result<Vec<String>, StoreError> {
        let mut roots = std::collections::BTreeSet::new();
        for entry in self.files()?.chains.iter() {
            let (k, v) = entry?;
            let chain: Vec<String> = decode(&k, &v)?;
            roots.extend(chain.last().cloned());
        }
        Ok(roots.into_iter().collect())
    }

    fn edit_key(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut KeyRecord) -> bool,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let mut seen = None;
        let stored = self.change_stored(id, |stored| {
            let before = self.filled(stored.clone())?;
            let mut after = before.clone();
            let write = change(&mut after);
            if write {
                check_edit(&before, &after)?;
                stored.key = after.clone();
                *stored = self.slimmed(stored.clone())?;
            }
            seen = Some(after);
            Ok(write)
        })?;
        Ok(stored.and(seen))
    }

    fn key_secret(&self, key_id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        self.key_owned_secret(key_id, kind)
    }

    fn count_pin_failure(
        &self,
        key_id: &str,
        expected: u32,
        max: u32,
        audit: Option<&AuditAppend>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let _writing = self.writing();
        let f = self.files()?;
        let moved = || ConflictableTransactionError::Abort(Abort::Outcome(()));
        let result = (&f.keys, &f.audit).transaction(|(keys, audit_tree)| {
            let Some(raw) = keys.get(key_id.as_bytes())? else { return Err(moved()) };
            let mut rec = StoredKey::decode(key_id.as_bytes(), &raw).map_err(|_| moved())?;
            let pin = &mut rec.key.pin;
            if pin.locked || pin.failures != expected {
                return Err(moved());
            }
            pin.failures += 1;
            pin.locked = pin.failures >= max;
            if let Some(a) = audit {
                append_in(audit_tree, a)?;
            }
            keys.insert(key_id.as_bytes(), rec.encode())?;
            Ok(rec)
        });
        match result {
            Ok(rec) => Ok(Some(self.filled(rec)?)),
            Err(TransactionError::Abort(Abort::Outcome(()))) => Ok(None),
            Err(TransactionError::Abort(Abort::AuditSeqTaken(seq))) => Err(audit_seq_taken(seq)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn reset_pin_failures(&self, key_id: &str) -> Result<PinReset, StoreError> {
        let mut locked = false;
        let rec = self.change_stored(key_id, |k| {
            locked = k.key.pin.locked;
            let write = !locked && k.key.pin.failures != 0;
            k.key.pin.failures = if locked { k.key.pin.failures } else { 0 };
            Ok(write)
        })?;
        Ok(match rec {
            None => PinReset::Gone,
            Some(_) if locked => PinReset::Locked,
            Some(_) => PinReset::Done,
        })
    }

    fn unlock_pin(&self, key_id: &str) -> Result<Option<bool>, StoreError> {
        let mut changed = false;
        let rec = self.change_stored(key_id, |k| {
            changed = k.key.pin != PinState::default();
            k.key.pin = PinState::default();
            Ok(changed)
        })?;
        Ok(rec.map(|_| changed))
    }

    fn replace_verifier(&self, key_id: &str, verifier_blob: &[u8]) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let new_ref = self.files()?.vault.put(verifier_blob)?;
        let new_ref_hex = hex::encode(new_ref.encode());
        let result = self.files()?.keys.transaction(|keys| {
            let Some(raw) = keys.get(key_id.as_bytes())? else {
                return Err(ConflictableTransactionError::Abort(()));
            };
            let mut rec =
                StoredKey::decode(key_id.as_bytes(), &raw).map_err(|_| ConflictableTransactionError::Abort(()))?;
            let old =
                rec.stored_secret(SecretKind::PinVerifier).map_err(|_| ConflictableTransactionError::Abort(()))?;
            rec.key.pin = PinState::default();
            rec.verifier_ref = Some(new_ref_hex.clone());
            keys.insert(key_id.as_bytes(), rec.encode())?;
            Ok(slot_of(old.as_deref()))
        });
        match result {
            Ok(old) => {
                self.flush_blocking()?;
                self.files()?.vault.shred(&old.into_iter().collect::<Vec<_>>())?;
                Ok(true)
            }
            Err(TransactionError::Abort(())) => {
                self.files()?.vault.shred(&[new_ref.slot])?;
                Ok(false)
            }
            Err(TransactionError::Storage(e)) => {
                self.files()?.vault.mark_suspect();
                Err(e.into())
            }
        }
    }

    fn complete_pin_reset(&self, key_id: &str, commit: &PinResetCommit<'_>) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let refs = self.put_blobs(&[Some(commit.verifier_blob), Some(commit.recovery_blob)])?;
        let (verifier_ref, recovery_ref) = match (refs[0], refs[1]) {
            (Some(v), Some(r)) => (v, r),
            _ => return Err(StoreError::Refused("a PIN reset without its blobs".into())),
        };
        let f = self.files()?;
        let moved = || ConflictableTransactionError::Abort(Abort::Outcome(()));
        let result = (&f.keys, &f.audit).transaction(|(keys, audit_tree)| {
            let Some(raw) = keys.get(key_id.as_bytes())? else { return Err(moved()) };
            let mut rec = StoredKey::decode(key_id.as_bytes(), &raw).map_err(|_| moved())?;
            let open = rec.key.pin_reset.as_ref().is_some_and(|r| r.code_sha256 == commit.code_sha256);
            let old_verifier = rec.stored_secret(SecretKind::PinVerifier).map_err(|_| moved())?;
            let old_recovery = rec.stored_secret(SecretKind::RecoveryKey).map_err(|_| moved())?;
            let same_recovery =
                old_recovery.as_deref().and_then(SlotRef::decode).is_some_and(|r| r.holds(commit.old_recovery));
            if !open || !same_recovery || rec.key.status == KeyStatus::Revoked {
                return Err(moved());
            }
            if let Some(a) = commit.audit {
                append_in(audit_tree, a)?;
            }
            rec.key.pin = PinState::default();
            rec.key.pin_reset = None;
            rec.verifier_ref = Some(hex::encode(verifier_ref.encode()));
            rec.recovery_ref = Some(hex::encode(recovery_ref.encode()));
            keys.insert(key_id.as_bytes(), rec.encode())?;
            Ok([slot_of(old_verifier.as_deref()), slot_of(old_recovery.as_deref())])
        });
        match result {
            Ok(old) => {
                self.flush_blocking()?;
                f.vault.shred(&old.into_iter().flatten().collect::<Vec<_>>())?;
                Ok(true)
            }
            Err(TransactionError::Abort(why)) => {
                f.vault.shred(&[verifier_ref.slot, recovery_ref.slot])?;
                match why {
                    Abort::Outcome(()) => Ok(false),
                    Abort::AuditSeqTaken(seq) => Err(audit_seq_taken(seq)),
                }
            }
            Err(TransactionError::Storage(e)) => {
                f.vault.mark_suspect();
                Err(e.into())
            }
        }
    }

    fn revoke(&self, key_id: &str, reason: &str, audit: Option<&AuditAppend>) -> Result<Option<KeyRecord>, StoreError> {
        let _writing = self.writing();
        let f = self.files()?;
        // Read outside: sled transactions cannot scan. A delegation created after this read
        // belongs to a key already revoked, and every use of one checks the key first.
        let delegations = self.delegation_ids(key_id)?;
        let at = crate::clock::now_ms() / 1000;
        let gone = || ConflictableTransactionError::Abort(Abort::Outcome(()));
        let result =
            (&f.keys, &f.audit, &f.delegations, &f.secrets).transaction(|(keys, audit_tree, dels, secrets)| {
                let Some(raw) = keys.get(key_id.as_bytes())? else {
                    return Err(gone());
                };
                let mut rec = StoredKey::decode(key_id.as_bytes(), &raw).map_err(|_| gone())?;
                let mut slots = Vec::new();
                for kind in SecretKind::KEY_OWNED {
                    slots.extend(slot_of(rec.stored_secret(kind).map_err(|_| gone())?.as_deref()));
                }
                if let Some(a) = audit {
                    append_in(audit_tree, a)?;
                }
                rec.key.status = KeyStatus::Revoked;
                rec.key.revocation_reason = Some(reason.to_owned());
                rec.key.revoked_at = Some(at);
                rec.key.pin_reset = None;
                rec.share_ref = None;
                rec.verifier_ref = None;
                rec.recovery_ref = None;
                keys.insert(key_id.as_bytes(), rec.encode())?;
                slots.extend(super::delegations::end_delegations_in(dels, secrets, &delegations, at)?);
                Ok((rec, slots))
            });
        match result {
            Ok((rec, slots)) => {
                self.flush_blocking()?;
                self.files()?.vault.shred(&slots)?;
                Ok(Some(self.filled(rec)?))
            }
            Err(TransactionError::Abort(Abort::Outcome(()))) => Ok(None),
            Err(TransactionError::Abort(Abort::AuditSeqTaken(seq))) => Err(audit_seq_taken(seq)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }
}
