//! Delegations on sled: records in `delegations` (with the delegate's PIN counter), the
//! per-key index `key_delegations`, and the wrapped secrets as `secrets` entries whose
//! values are vault references — written to the vault (synced) before the transaction
//! that references them, erased from it only after the transaction that drops them is
//! durable, exactly as a key's share and verifier.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional, TransactionalTree};

use super::audit::{Abort, append_in, audit_seq_taken};
use super::codec::{decode, encode};
use super::key_refs::{StoredKey, secret_key, slot_of};
use super::storage::check_delegation_change;
use super::vault::SlotRef;
use super::{
    AuditAppend, DelegationChange, DelegationOutcome, DelegationStorage, Durability, PinReset, Store, StoreError,
};
use crate::model::delegation::{DelegationRecord, DelegationStatus};
use crate::model::key::{KeyStatus, PinState};
use crate::model::secret::SecretKind;

type TxError<T> = ConflictableTransactionError<Abort<T>>;

fn index_key(key_id: &str, id: &str) -> Vec<u8> {
    format!("{key_id}/{id}").into_bytes()
}

/// Inside a transaction: drop a delegation's secrets of `kinds`, returning their slots.
fn drop_secrets<T>(secrets: &TransactionalTree, id: &str, kinds: &[SecretKind]) -> Result<Vec<u64>, TxError<T>> {
    let mut slots = Vec::new();
    for kind in kinds {
        if let Some(old) = secrets.remove(secret_key(id, *kind))? {
            slots.extend(slot_of(Some(&old)));
        }
    }
    Ok(slots)
}

/// Inside a key's revocation: end the key's open delegations `ids` (`key_revoked`) and
/// drop their secrets; the slots to erase once it is durable are returned.
pub(super) fn end_delegations_in<T>(
    delegations: &TransactionalTree,
    secrets: &TransactionalTree,
    ids: &[String],
    at: i64,
) -> Result<Vec<u64>, TxError<T>> {
    let mut slots = Vec::new();
    for id in ids {
        let Some(raw) = delegations.get(id.as_bytes())? else { continue };
        let Ok(mut rec) = decode::<DelegationRecord>(id.as_bytes(), &raw) else { continue };
        if rec.status.is_final() {
            continue;
        }
        rec.status = DelegationStatus::Revoked;
        rec.end_reason = Some("key_revoked".into());
        rec.updated_at = at;
        rec.rev += 1;
        delegations.insert(id.as_bytes(), encode(&rec))?;
        slots.extend(drop_secrets(secrets, id, &SecretKind::DELEGATION)?);
    }
    Ok(slots)
}

impl Store {
    /// The ids of a key's delegations, from the index.
    pub(super) fn delegation_ids(&self, key_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{key_id}/");
        let mut out = Vec::new();
        for entry in self.files()?.key_delegations.scan_prefix(prefix.as_bytes()) {
            let (k, _) = entry?;
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// Every delegation (`mcsd store migrate`).
    pub fn delegations_raw(&self) -> Result<Vec<DelegationRecord>, StoreError> {
        self.files()?
            .delegations
            .iter()
            .map(|r| r.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }

    /// Read-modify-write of a delegation's PIN state (compare-and-swap loop).
    fn change_delegate_pin(
        &self,
        id: &str,
        mut change: impl FnMut(&mut PinState) -> bool,
    ) -> Result<Option<DelegationRecord>, StoreError> {
        let _writing = self.writing();
        loop {
            let Some(old) = self.files()?.delegations.get(id.as_bytes())? else { return Ok(None) };
            let mut rec: DelegationRecord = decode(id.as_bytes(), &old)?;
            if !change(&mut rec.pin) {
                return Ok(Some(rec));
            }
            if self.files()?.delegations.compare_and_swap(id.as_bytes(), Some(&old), Some(encode(&rec)))?.is_ok() {
                return Ok(Some(rec));
            }
        }
    }
}

impl DelegationStorage for Store {
    fn insert_delegation(&self, rec: &DelegationRecord, audit: Option<&AuditAppend>) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let f = self.files()?;
        let result = (&f.delegations, &f.key_delegations, &f.audit).transaction(|(dels, index, audit_tree)| {
            if dels.get(rec.id.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(Abort::Outcome(())));
            }
            if let Some(a) = audit {
                append_in(audit_tree, a)?;
            }
            dels.insert(rec.id.as_bytes(), encode(rec))?;
            index.insert(index_key(&rec.key_id, &rec.id), &[][..])?;
            Ok(())
        });
        match result {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(Abort::Outcome(()))) => Ok(false),
            Err(TransactionError::Abort(Abort::AuditSeqTaken(seq))) => Err(audit_seq_taken(seq)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn delegation(&self, id: &str) -> Result<Option<DelegationRecord>, StoreError> {
        self.files()?.delegations.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    fn delegations_of_key(&self, key_id: &str) -> Result<Vec<DelegationRecord>, StoreError> {
        let mut out = Vec::new();
        for id in self.delegation_ids(key_id)? {
            out.extend(self.delegation(&id)?);
        }
        Ok(out)
    }

    fn open_delegations(&self) -> Result<Vec<DelegationRecord>, StoreError> {
        Ok(self.delegations_raw()?.into_iter().filter(|d| !d.status.is_final()).collect())
    }

    fn delegation_secret(&self, id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        if !SecretKind::DELEGATION.contains(&kind) {
            return Ok(None);
        }
        self.resolve(self.files()?.secrets.get(secret_key(id, kind))?.as_deref())
    }

    fn change_delegation(&self, change: DelegationChange<'_>) -> Result<DelegationOutcome, StoreError> {
        let rec = change.record;
        check_delegation_change(&change)?;
        let final_state = rec.status.is_final();
        let _writing = self.writing();
        let f = self.files()?;
        // Blobs first (synced), then the transaction that references them.
        let mut fresh: Vec<(SecretKind, SlotRef)> = Vec::new();
        let mut fresh_key: Vec<SlotRef> = Vec::new();
        let put_all =
            |fresh: &mut Vec<(SecretKind, SlotRef)>, fresh_key: &mut Vec<SlotRef>| -> Result<(), StoreError> {
                for (kind, blob) in &change.put_secrets {
                    fresh.push((*kind, f.vault.put(blob)?));
                }
                if let Some(t) = &change.transfer {
                    fresh_key.push(f.vault.put(t.share_blob)?);
                    fresh_key.push(f.vault.put(t.verifier_blob)?);
                    if let Some(recovery) = t.recovery_blob {
                        fresh_key.push(f.vault.put(recovery)?);
                    }
                }
                Ok(())
            };
        let new_slots = |fresh: &[(SecretKind, SlotRef)], fresh_key: &[SlotRef]| -> Vec<u64> {
            fresh.iter().map(|(_, r)| r.slot).chain(fresh_key.iter().map(|r| r.slot)).collect()
        };
        if let Err(e) = put_all(&mut fresh, &mut fresh_key) {
            f.vault.shred(&new_slots(&fresh, &fresh_key))?;
            return Err(e);
        }
        let erase: Vec<SecretKind> =
            if final_state { SecretKind::DELEGATION.to_vec() } else { change.erase_secrets.clone() };
        let outcome = |o| ConflictableTransactionError::Abort(Abort::Outcome(o));
        let result = (&f.delegations, &f.secrets, &f.keys, &f.device_keys, &f.audit).transaction(
            |(dels, secrets, keys, device_keys, audit_tree)| {
                let Some(raw) = dels.get(rec.id.as_bytes())? else { return Err(outcome(DelegationOutcome::Raced)) };
                let stored: DelegationRecord =
                    decode(rec.id.as_bytes(), &raw).map_err(|_| outcome(DelegationOutcome::Raced))?;
                if stored.rev + 1 != rec.rev || stored.status.is_final() {
                    return Err(outcome(DelegationOutcome::Raced));
                }
                let mut old_slots = drop_secrets(secrets, &rec.id, &erase)?;
                for (kind, r) in &fresh {
                    if let Some(old) = secrets.insert(secret_key(&rec.id, *kind), &r.encode()[..])? {
                        old_slots.extend(slot_of(Some(&old)));
                    }
                }
                if change.transfer.is_some() {
                    let device = rec.device_id.as_deref().ok_or_else(|| outcome(DelegationOutcome::Raced))?;
                    let Some(raw_key) = keys.get(rec.key_id.as_bytes())? else {
                        return Err(outcome(DelegationOutcome::KeyGone));
                    };
                    let mut key = StoredKey::decode(rec.key_id.as_bytes(), &raw_key)
                        .map_err(|_| outcome(DelegationOutcome::KeyGone))?;
                    if key.key.status == KeyStatus::Revoked {
                        return Err(outcome(DelegationOutcome::KeyGone));
                    }
                    for kind in SecretKind::KEY_OWNED {
                        let old = key.stored_secret(kind).map_err(|_| outcome(DelegationOutcome::KeyGone))?;
                        old_slots.extend(slot_of(old.as_deref()));
                    }
                    device_keys.remove(format!("{}/{}", key.key.device_id, key.key.id).into_bytes())?;
                    device_keys.insert(format!("{device}/{}", key.key.id).into_bytes(), &[][..])?;
                    key.key.device_id = device.to_owned();
                    key.key.pin = PinState::default();
                    key.share_ref = Some(hex::encode(fresh_key[0].encode()));
                    key.verifier_ref = Some(hex::encode(fresh_key[1].encode()));
                    key.recovery_ref = fresh_key.get(2).map(|r| hex::encode(r.encode()));
                    // A reset opened for the old owner is not the new owner's.
                    key.key.pin_reset = None;
                    // The new owner's server share is the delegation's: its `p2`.
                    key.key.p2 = rec.p2.clone();
                    keys.insert(rec.key_id.as_bytes(), key.encode())?;
                }
                if let Some(a) = change.audit {
                    append_in(audit_tree, a)?;
                }
                let mut next = rec.clone();
                next.pin = if change.clear_pin { PinState::default() } else { stored.pin };
                dels.insert(rec.id.as_bytes(), encode(&next))?;
                Ok(old_slots)
            },
        );
        match result {
            Ok(old_slots) => {
                if !old_slots.is_empty() {
                    self.flush_blocking()?;
                    f.vault.shred(&old_slots)?;
                }
                Ok(DelegationOutcome::Done)
            }
            Err(TransactionError::Abort(why)) => {
                f.vault.shred(&new_slots(&fresh, &fresh_key))?;
                match why {
                    Abort::Outcome(o) => Ok(o),
                    Abort::AuditSeqTaken(seq) => Err(audit_seq_taken(seq)),
                }
            }
            // Not shredded: the transaction may have reached the disk (see `activate`).
            Err(TransactionError::Storage(e)) => {
                f.vault.mark_suspect();
                Err(e.into())
            }
        }
    }

    fn count_delegate_pin_failure(
        &self,
        id: &str,
        expected: u32,
        max: u32,
        audit: Option<&AuditAppend>,
    ) -> Result<Option<DelegationRecord>, StoreError> {
        let _writing = self.writing();
        let f = self.files()?;
        let moved = || ConflictableTransactionError::Abort(Abort::Outcome(()));
        let result = (&f.delegations, &f.audit).transaction(|(dels, audit_tree)| {
            let Some(raw) = dels.get(id.as_bytes())? else { return Err(moved()) };
            let mut rec: DelegationRecord = decode(id.as_bytes(), &raw).map_err(|_| moved())?;
            if rec.pin.locked || rec.pin.failures != expected {
                return Err(moved());
            }
            rec.pin.failures += 1;
            rec.pin.locked = rec.pin.failures >= max;
            if let Some(a) = audit {
                append_in(audit_tree, a)?;
            }
            dels.insert(id.as_bytes(), encode(&rec))?;
            Ok(rec)
        });
        match result {
            Ok(rec) => Ok(Some(rec)),
            Err(TransactionError::Abort(Abort::Outcome(()))) => Ok(None),
            Err(TransactionError::Abort(Abort::AuditSeqTaken(seq))) => Err(audit_seq_taken(seq)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn reset_delegate_pin_failures(&self, id: &str) -> Result<PinReset, StoreError> {
        let mut locked = false;
        let rec = self.change_delegate_pin(id, |pin| {
            locked = pin.locked;
            let write = !locked && pin.failures != 0;
            if !locked {
                pin.failures = 0;
            }
            write
        })?;
        Ok(match rec {
            None => PinReset::Gone,
            Some(_) if locked => PinReset::Locked,
            Some(_) => PinReset::Done,
        })
    }

    fn unlock_delegate_pin(&self, id: &str) -> Result<Option<bool>, StoreError> {
        let mut changed = false;
        let rec = self.change_delegate_pin(id, |pin| {
            changed = *pin != PinState::default();
            *pin = PinState::default();
            changed
        })?;
        Ok(rec.map(|_| changed))
    }
}
