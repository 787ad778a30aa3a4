//! The PIN rule: a proof is checked against the HSM-wrapped verifier, one proof per key at
//! a time; a wrong one is counted in the store, and flushed, before the caller hears of it;
//! the key locks at `pin_max_attempts` wrong proofs in a row; a right one resets the count,
//! as does an admin's unlock ([`KeyService::unlock`]).

use std::sync::Arc;

use sm2_2p::ServerShare;
use zeroize::Zeroizing;

use super::{Actor, KeyError, KeyService, PinProof, Verifier, blocking, check_usable};
use crate::hsm::Wrapper;
use crate::model::key::{KeyRecord, KeyStatus};
use crate::model::secret::SecretKind;

/// One async lock per key id, held while a PIN proof is evaluated and its outcome counted:
/// without it, N concurrent wrong proofs are all checked against a counter none of them
/// has incremented yet, and an attacker gets more than `pin_max_attempts` guesses.
/// Entries exist only while someone holds or waits for them.
#[derive(Default)]
pub(super) struct KeyLocks(std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

struct KeyLockGuard<'a> {
    locks: &'a KeyLocks,
    key_id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    async fn lock(&self, key_id: &str) -> KeyLockGuard<'_> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key_id.to_owned()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyLockGuard { locks: self, key_id: key_id.to_owned(), guard: Some(guard) }
    }
}

impl Drop for KeyLockGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it: nobody waits, so the entry can go.
        if map.get(&self.key_id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.key_id);
        }
    }
}

fn verifier_array(v: &[u8]) -> Result<Verifier, KeyError> {
    if v.len() != 32 {
        return Err(KeyError::Internal("stored verifier has wrong length".into()));
    }
    // Filled in place: no unzeroized copy on the stack.
    let mut arr = Box::new(Zeroizing::new([0u8; 32]));
    arr.copy_from_slice(v);
    Ok(arr)
}

fn unwrap_share(hsm: &dyn Wrapper, key_id: &str, blob: &[u8]) -> Result<ServerShare, KeyError> {
    let bytes = hsm.unwrap(key_id, SecretKind::Share, blob)?;
    ServerShare::from_bytes(&bytes).map_err(|_| KeyError::Internal(format!("{key_id}: stored share is invalid")))
}

impl KeyService {
    /// Check key ownership, status and lock; then the PIN proof against the HSM-wrapped
    /// verifier. On success, `then` runs in the same blocking call with the key record (so
    /// the share is unwrapped and used without crossing an await). A wrong proof is
    /// counted durably before this returns. Proofs for one key are evaluated one at a
    /// time, each against the counter its predecessors left, so at most
    /// `pin_max_attempts` wrong proofs are ever evaluated before the lock.
    pub(super) async fn with_pin<T: Send + 'static>(
        &self,
        key_id: &str,
        device_id: &str,
        proof: PinProof<'_>,
        want_share: bool,
        allow_pending: bool,
        then: impl FnOnce(&dyn Wrapper, &KeyRecord, Option<ServerShare>) -> Result<T, KeyError> + Send + 'static,
    ) -> Result<T, KeyError> {
        // Another device's requests must not queue on this key's lock.
        self.key_for(key_id, &Actor::Device(device_id))?;
        let _serial = self.pin_checks.lock(key_id).await;
        // Read again under the lock: the counter its predecessors left.
        let key = self.key_for(key_id, &Actor::Device(device_id))?;
        // A pending key may sign exactly one thing: its own certificate request.
        if !(allow_pending && key.status == KeyStatus::Pending) {
            check_usable(&key, self.now())?;
        }
        if key.pin.locked {
            return Err(KeyError::PinLocked);
        }
        let blob = self
            .store
            .key_secret(&key, SecretKind::PinVerifier)?
            .ok_or_else(|| KeyError::Internal(format!("{key_id}: verifier record missing")))?;
        let share_blob = if want_share {
            Some(
                self.store
                    .key_secret(&key, SecretKind::Share)?
                    .ok_or_else(|| KeyError::Internal(format!("{key_id}: share record missing")))?,
            )
        } else {
            None
        };
        let (op, proof_hex, id) = (proof.op, proof.proof.to_owned(), key_id.to_owned());
        let hsm = self.hsm.clone();
        let outcome = blocking(move || {
            let v = verifier_array(&hsm.unwrap(&id, SecretKind::PinVerifier, &blob)?)?;
            if !sm2_2p::pin_proof_matches(&v, &id, &op, &proof_hex) {
                return Ok(None);
            }
            let share = share_blob.map(|b| unwrap_share(&*hsm, &id, &b)).transpose()?;
            then(&*hsm, &key, share).map(|t| Some((t, key.pin.failures)))
        })
        .await?;
        match outcome {
            Some((value, failures)) => {
                if failures > 0 {
                    // Reset the counter; not flushed: losing a reset only errs on the safe side.
                    self.store.update_key(key_id, |k| {
                        if k.pin.locked {
                            return Err(KeyError::PinLocked);
                        }
                        k.pin.failures = 0;
                        Ok(true)
                    })??;
                }
                Ok(value)
            }
            None => Err(self.count_pin_failure(key_id).await),
        }
    }

    async fn count_pin_failure(&self, key_id: &str) -> KeyError {
        let max = self.cfg.pin_max_attempts;
        let rec = match self.count_pin_failure_once(key_id, max).await {
            Ok(Some(rec)) => rec,
            Ok(None) => return KeyError::NotFound("key"),
            Err(e) => return e,
        };
        if let Err(e) = self.store.flush().await {
            return e.into();
        }
        tracing::warn!(key_id, failures = rec.pin.failures, locked = rec.pin.locked, "PIN proof rejected");
        crate::metrics::METRICS.pin_failures.inc();
        if rec.pin.locked {
            crate::metrics::METRICS.pin_lockouts.inc();
        }
        if rec.pin.locked {
            KeyError::PinLocked
        } else {
            KeyError::PinIncorrect { remaining_attempts: max.saturating_sub(rec.pin.failures) }
        }
    }

    /// Count one wrong proof durably-to-be (the caller flushes), one transaction whether
    /// or not a request is being served: inside one, the request's audit entry goes into it,
    /// naming the outcome the caller will answer; the caller holds the key's PIN lock, so
    /// the counter it reads is the one it writes (an admin's unlock in between makes the
    /// transaction retry).
    async fn count_pin_failure_once(&self, key_id: &str, max: u32) -> Result<Option<KeyRecord>, KeyError> {
        for _ in 0..8 {
            let Some(key) = self.store.key(key_id)? else { return Ok(None) };
            if key.pin.locked {
                return Ok(Some(key));
            }
            let outcome = if key.pin.failures + 1 >= max { "pin_locked" } else { "pin_incorrect" };
            let counted = self
                .audited(
                    key_id,
                    outcome,
                    serde_json::Value::Null,
                    |a| self.store.count_pin_failure(key_id, key.pin.failures, max, a),
                    Option::is_some,
                )
                .await?;
            if let Some(rec) = counted {
                return Ok(Some(rec));
            }
        }
        Err(KeyError::Internal(format!("{key_id}: the PIN counter kept changing")))
    }
}
