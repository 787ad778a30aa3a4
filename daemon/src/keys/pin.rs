//! The PIN rule: a proof is checked against the HSM-wrapped verifier, one proof per key at
//! a time; a wrong one is counted in the store, and flushed, before the caller hears of it;
//! the key locks at `pin_max_attempts` wrong proofs in a row; a right one resets the count,
//! as does an admin's unlock ([`KeyService::unlock`]).

use std::sync::Arc;

use sm2_2p::ServerShare;
use zeroize::Zeroizing;

use super::delegations::Holder;
use super::{KeyError, KeyService, PinProof, Verifier, blocking, check_usable};
use crate::hsm::Wrapper;
use crate::model::key::{KeyRecord, KeyStatus, PinState};
use crate::model::secret::SecretKind;
use crate::store::PinReset;

/// One async lock per key id, held while a PIN proof is evaluated and its outcome counted:
/// without it, N concurrent wrong proofs are all checked against a counter none of them
/// has incremented yet, and an attacker gets more than `pin_max_attempts` guesses.
/// Entries exist only while someone holds or waits for them.
#[derive(Default)]
pub(super) struct KeyLocks(std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

pub(super) struct KeyLockGuard<'a> {
    locks: &'a KeyLocks,
    key_id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub(super) async fn lock(&self, key_id: &str) -> KeyLockGuard<'_> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key_id.to_owned()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyLockGuard { locks: self, key_id: key_id.to_owned(), guard: Some(guard) }
    }

    /// The lock if nobody holds it now; `None` (without waiting) otherwise.
    pub(super) fn try_lock(&self, key_id: &str) -> Option<KeyLockGuard<'_>> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key_id.to_owned()).or_default().clone()
        };
        // On failure the clone goes; the holder's guard removes the entry when it is done.
        let guard = lock.try_lock_owned().ok()?;
        Some(KeyLockGuard { locks: self, key_id: key_id.to_owned(), guard: Some(guard) })
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

/// A stored 32-byte secret (a verifier or a recovery key) in its boxed, wiped home.
pub(super) fn secret_array(v: &[u8], what: &str) -> Result<Verifier, KeyError> {
    if v.len() != 32 {
        return Err(KeyError::Internal(format!("stored {what} has wrong length")));
    }
    // Filled in place: no unzeroized copy on the stack.
    let mut arr = Box::new(Zeroizing::new([0u8; 32]));
    arr.copy_from_slice(v);
    Ok(arr)
}

fn unwrap_share(hsm: &dyn Wrapper, owner: &str, kind: SecretKind, blob: &[u8]) -> Result<ServerShare, KeyError> {
    let bytes = hsm.unwrap(owner, kind, blob)?;
    ServerShare::from_bytes(&bytes).map_err(|_| KeyError::Internal(format!("{owner}: stored share is invalid")))
}

impl KeyService {
    /// Check who holds a share of the key for this device (the owner, or — when `uses`
    /// admits delegates — an active delegate allowed those uses), the key's status and the
    /// holder's lock; then the PIN proof against the holder's HSM-wrapped verifier. On
    /// success, `then` runs in the same blocking call with the key record and the holder's
    /// share (so it is unwrapped and used without crossing an await). A wrong proof is
    /// counted on the holder's own counter, durably, before this returns. Proofs for one
    /// holder are evaluated one at a time, each against the counter its predecessors left,
    /// so at most `pin_max_attempts` wrong proofs are ever evaluated before the lock.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn with_pin<T: Send + 'static>(
        &self,
        key_id: &str,
        device_id: &str,
        uses: Option<&[&str]>,
        proof: PinProof<'_>,
        want_share: bool,
        allow_pending: bool,
        then: impl FnOnce(&dyn Wrapper, &KeyRecord, Option<ServerShare>) -> Result<T, KeyError> + Send + 'static,
    ) -> Result<T, KeyError> {
        // The counter must be read under the holder's lock (the one its predecessors left).
        // Uncontended — the common case — the owner's lock is taken at once and the record
        // read once under it. Contended, the holder is found first, so another device's
        // requests never queue on this key's lock; then it is read again under the lock.
        // The owner's blobs come with that one read.
        let owner_kinds: &[SecretKind] =
            if want_share { &[SecretKind::PinVerifier, SecretKind::Share] } else { &[SecretKind::PinVerifier] };
        let uncontended = match self.pin_checks.try_lock(key_id) {
            Some(guard) => match self.store.key_with_secrets(key_id, owner_kinds)? {
                Some((key, blobs)) if key.device_id == device_id => Some((key, Holder::Owner, guard, Some(blobs))),
                // A delegate's lock is its delegation's (or no such key): the contended way.
                _ => None,
            },
            None => None,
        };
        let (key, holder, _serial, read) = match uncontended {
            Some(found) => found,
            None => {
                let (_, first) = self.holder_of(key_id, device_id, uses)?;
                let serial = self.pin_checks.lock(first.lock_id(key_id)).await;
                let (key, holder) = self.holder_of(key_id, device_id, uses)?;
                (key, holder, serial, None)
            }
        };
        // A pending key may sign exactly one thing: its own certificate request.
        if !(allow_pending && key.status == KeyStatus::Pending) {
            check_usable(&key, self.now())?;
        }
        let pin = holder.pin(&key);
        if pin.locked {
            return Err(KeyError::PinLocked);
        }
        let (owner, share_kind, verifier_kind) = holder.secrets(key_id);
        let kinds: &[SecretKind] = if want_share { &[verifier_kind, share_kind] } else { &[verifier_kind] };
        // The owner's two blobs in one read (one round trip on a database).
        let mut blobs = match (&holder, read) {
            (Holder::Owner, Some(read)) => read,
            (Holder::Owner, None) => self.store.key_secrets(key_id, kinds)?,
            (Holder::Delegate(d), _) => {
                kinds.iter().map(|k| self.store.delegation_secret(&d.id, *k)).collect::<Result<Vec<_>, _>>()?
            }
        }
        .into_iter();
        let blob =
            blobs.next().flatten().ok_or_else(|| KeyError::Internal(format!("{owner}: verifier record missing")))?;
        let share_blob = if want_share {
            Some(blobs.next().flatten().ok_or_else(|| KeyError::Internal(format!("{owner}: share record missing")))?)
        } else {
            None
        };
        let (op, proof_hex, id) = (proof.op, proof.proof.to_owned(), key_id.to_owned());
        let hsm = self.hsm.clone();
        let failures = pin.failures;
        let holder_id = owner.clone();
        let outcome = blocking(move || {
            let v = secret_array(&hsm.unwrap(&holder_id, verifier_kind, &blob)?, "verifier")?;
            // The transcript names the key whichever share answers: one proof format.
            if !sm2_2p::pin_proof_matches(&v, &id, &op, &proof_hex) {
                return Ok(None);
            }
            let share = share_blob.map(|b| unwrap_share(&*hsm, &holder_id, share_kind, &b)).transpose()?;
            then(&*hsm, &key, share).map(|t| Some((t, failures)))
        })
        .await?;
        match outcome {
            Some((value, failures)) => {
                if failures > 0 {
                    // Reset the counter; not flushed: losing a reset only errs on the safe side.
                    let reset = match &holder {
                        Holder::Owner => self.store.reset_pin_failures(key_id)?,
                        Holder::Delegate(d) => self.store.reset_delegate_pin_failures(&d.id)?,
                    };
                    if reset == PinReset::Locked {
                        return Err(KeyError::PinLocked);
                    }
                }
                Ok(value)
            }
            None => Err(self.count_pin_failure(key_id, &holder).await),
        }
    }

    async fn count_pin_failure(&self, key_id: &str, holder: &Holder) -> KeyError {
        let max = self.cfg.pin_max_attempts;
        let (pin, counted) = match self.count_pin_failure_once(key_id, holder, max).await {
            Ok(Some(found)) => found,
            Ok(None) => return KeyError::NotFound("key"),
            Err(e) => return e,
        };
        if let Err(e) = self.store.flush().await {
            return e.into();
        }
        // Another node may have locked the key since this one read it: that proof was not
        // counted, and neither failure nor lockout is this node's to report.
        if counted {
            tracing::warn!(key_id, failures = pin.failures, locked = pin.locked, "PIN proof rejected");
            crate::metrics::METRICS.pin_failures.inc();
            if pin.locked {
                crate::metrics::METRICS.pin_lockouts.inc();
            }
        }
        if pin.locked {
            KeyError::PinLocked
        } else {
            KeyError::PinIncorrect { remaining_attempts: max.saturating_sub(pin.failures) }
        }
    }

    /// Count one wrong proof durably-to-be (the caller flushes), one transaction whether
    /// or not a request is being served: inside one, the request's audit entry goes into it,
    /// naming the outcome the caller will answer; the caller holds the holder's PIN lock,
    /// so the counter it reads is the one it writes (an admin's unlock in between makes the
    /// transaction retry). The flag says whether this call counted the proof (false: it
    /// was locked already, e.g. by another node's count).
    async fn count_pin_failure_once(
        &self,
        key_id: &str,
        holder: &Holder,
        max: u32,
    ) -> Result<Option<(PinState, bool)>, KeyError> {
        // A lost swap means another request (on this node or, on a shared store, another)
        // counted first, so the counter rose: at most `max` losses before the key locks,
        // plus a few for unlocks and successes in between.
        for _ in 0..max + 8 {
            let pin = match holder {
                Holder::Owner => self.store.key(key_id)?.map(|k| k.pin),
                Holder::Delegate(d) => self.store.delegation(&d.id)?.map(|d| d.pin),
            };
            let Some(pin) = pin else { return Ok(None) };
            if pin.locked {
                return Ok(Some((pin, false)));
            }
            let outcome = if pin.failures + 1 >= max { "pin_locked" } else { "pin_incorrect" };
            let detail = match holder {
                Holder::Owner => serde_json::Value::Null,
                Holder::Delegate(d) => crate::audit::delegation_detail(&d.id),
            };
            let counted = match holder {
                Holder::Owner => self
                    .audited(
                        key_id,
                        outcome,
                        detail,
                        |a| self.store.count_pin_failure(key_id, pin.failures, max, a),
                        Option::is_some,
                    )
                    .await?
                    .map(|k| k.pin),
                Holder::Delegate(d) => self
                    .audited(
                        key_id,
                        outcome,
                        detail,
                        |a| self.store.count_delegate_pin_failure(&d.id, pin.failures, max, a),
                        Option::is_some,
                    )
                    .await?
                    .map(|d| d.pin),
            };
            if let Some(pin) = counted {
                return Ok(Some((pin, true)));
            }
        }
        Err(KeyError::Internal(format!("{key_id}: the PIN counter kept changing")))
    }
}

#[cfg(test)]
mod tests {
    use crate::keys::testing::{Keys, Phone};
    use crate::keys::{Actor, KeyError, PinProof, SignMode};
    use sm2_2p::{AffinePoint, Transcript};

    const THREE: &str = "[keys]\npin_max_attempts = 3";

    /// A digest and nonce point to co-sign, and the transcript a proof for them covers.
    fn request() -> ([u8; 32], AffinePoint, Transcript) {
        let (_, q1) = sm2_2p::ClientShare::sign_start();
        let e = [0x5a; 32];
        (e, q1, Transcript::Sign { e: hex::encode(e), q1: sm2_2p::point_to_hex(&q1) })
    }

    async fn sign(k: &Keys, phone: &Phone, right: bool) -> Result<(), KeyError> {
        let (e, q1, t) = request();
        let proof = if right { phone.proof(&t) } else { phone.wrong_proof(&t) };
        let op = PinProof { op: t, proof: &proof };
        k.keys.sign(&phone.key_id, &phone.device, e, q1, SignMode::Canonical, op).await.map(|_| ())
    }

    #[tokio::test]
    async fn a_wrong_proof_is_counted_in_the_store_before_the_call_returns() {
        let k = Keys::new(THREE);
        let phone = k.active_phone("dev-a", "123456").await;
        let err = sign(&k, &phone, false).await.unwrap_err();
        assert!(matches!(err, KeyError::PinIncorrect { remaining_attempts: 2 }), "{err:?}");
        assert_eq!(k.key(&phone.key_id).pin.failures, 1, "counted when the answer is given");

        // And it is on disk: a store opened afresh from the files has it.
        let (path, id) = (k.dir.path().join("db"), phone.key_id.clone());
        let crate::keys::testing::Keys { store, keys, dir, .. } = k;
        drop(keys);
        drop(store);
        let reopened: Box<dyn crate::store::Storage> = Box::new(crate::store::Store::open(&path).unwrap());
        assert_eq!(reopened.key(&id).unwrap().unwrap().pin.failures, 1);
        drop(dir);
    }

    #[tokio::test]
    async fn the_key_locks_at_the_limit_and_then_refuses_even_the_right_pin() {
        let k = Keys::new(THREE);
        let phone = k.active_phone("dev-a", "123456").await;
        assert!(matches!(sign(&k, &phone, false).await, Err(KeyError::PinIncorrect { remaining_attempts: 2 })));
        assert!(matches!(sign(&k, &phone, false).await, Err(KeyError::PinIncorrect { remaining_attempts: 1 })));
        assert!(matches!(sign(&k, &phone, false).await, Err(KeyError::PinLocked)));
        let key = k.key(&phone.key_id);
        assert!(key.pin.locked && key.pin.failures == 3, "{:?}", key.pin);
        assert!(matches!(sign(&k, &phone, true).await, Err(KeyError::PinLocked)));
        assert_eq!(k.key(&phone.key_id).pin.failures, 3, "a locked key counts nothing more");
    }

    #[tokio::test]
    async fn a_right_proof_resets_the_counter() {
        let k = Keys::new(THREE);
        let phone = k.active_phone("dev-a", "123456").await;
        sign(&k, &phone, false).await.unwrap_err();
        sign(&k, &phone, false).await.unwrap_err();
        sign(&k, &phone, true).await.unwrap();
        assert_eq!(k.key(&phone.key_id).pin.failures, 0);
        // So the next wrong proof starts again from the full allowance.
        assert!(matches!(sign(&k, &phone, false).await, Err(KeyError::PinIncorrect { remaining_attempts: 2 })));
    }

    #[tokio::test]
    async fn an_admin_unlock_clears_the_lock_and_the_counter() {
        let k = Keys::new(THREE);
        let phone = k.active_phone("dev-a", "123456").await;
        for _ in 0..3 {
            sign(&k, &phone, false).await.unwrap_err();
        }
        assert!(k.key(&phone.key_id).pin.locked);
        k.keys.unlock(&phone.key_id).await.unwrap();
        let key = k.key(&phone.key_id);
        assert!(!key.pin.locked && key.pin.failures == 0, "{:?}", key.pin);
        sign(&k, &phone, true).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_wrong_proofs_get_no_more_guesses_than_the_limit() {
        let k = Keys::new(THREE);
        let phone = std::sync::Arc::new(k.active_phone("dev-a", "123456").await);
        let keys = std::sync::Arc::new(k);
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (k, phone) = (keys.clone(), phone.clone());
            all.spawn(async move { sign(&k, &phone, false).await });
        }
        let (mut incorrect, mut locked) = (0, 0);
        while let Some(r) = all.join_next().await {
            match r.unwrap() {
                Err(KeyError::PinIncorrect { .. }) => incorrect += 1,
                Err(KeyError::PinLocked) => locked += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        // Two answered pin_incorrect, the third locked the key, the rest found it locked.
        assert_eq!((incorrect, locked), (2, 10));
        let key = keys.key(&phone.key_id);
        assert!(key.pin.locked && key.pin.failures == 3, "{:?}", key.pin);
    }

    #[tokio::test]
    async fn an_unavailable_hsm_counts_nothing() {
        let k = Keys::new(THREE);
        let phone = k.active_phone("dev-a", "123456").await;
        k.hsm.set_unavailable(true);
        let err = sign(&k, &phone, false).await.unwrap_err();
        assert!(matches!(err, KeyError::Hsm(crate::hsm::HsmError::Unavailable { .. })), "{err:?}");
        assert_eq!(k.key(&phone.key_id).pin.failures, 0, "no proof was checked, so none was wrong");
    }

    #[tokio::test]
    async fn another_devices_proof_is_refused_before_the_pin_is_looked_at() {
        let k = Keys::new(THREE);
        let phone = k.active_phone("dev-a", "123456").await;
        let (e, q1, t) = request();
        let proof = phone.wrong_proof(&t);
        let err = k
            .keys
            .sign(&phone.key_id, "dev-b", e, q1, SignMode::Canonical, PinProof { op: t, proof: &proof })
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, KeyError::DeviceMismatch), "{err:?}");
        assert_eq!(k.key(&phone.key_id).pin.failures, 0);
        assert!(k.keys.key_for(&phone.key_id, &Actor::Device("dev-b")).is_err());
    }

    #[tokio::test]
    async fn a_proof_for_other_fields_is_a_wrong_proof() {
        let k = Keys::new(THREE);
        let phone = k.active_phone("dev-a", "123456").await;
        let (e, q1, _) = request();
        // The right PIN, but over another nonce point than the one sent.
        let (_, other_q1, other) = request();
        assert_ne!(q1, other_q1);
        let proof = phone.proof(&other);
        let op = PinProof { op: Transcript::Sign { e: hex::encode(e), q1: sm2_2p::point_to_hex(&q1) }, proof: &proof };
        let err =
            k.keys.sign(&phone.key_id, &phone.device, e, q1, SignMode::Canonical, op).await.map(|_| ()).unwrap_err();
        assert!(matches!(err, KeyError::PinIncorrect { .. }), "{err:?}");
    }
}
