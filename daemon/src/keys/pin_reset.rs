//! PIN reset without losing the key (PROTOCOL.md "PIN reset without losing the key").
//!
//! An operator, having checked the person's identity, opens a reset of one share — the
//! owner's or a delegate's — and tells the person the one-time code. The phone of that
//! share sends the code, a new PIN verifier and a new recovery key: in one durable step the
//! verifier and recovery key are replaced, the counter cleared and the reset closed, the old
//! verifier and recovery key erased; only then does the phone get the **old** recovery key
//! back, with which it decrypts `d1` and masks it under the new PIN. The share, and so the
//! joint key, its certificate and everything encrypted to it, stay as they were.
//!
//! Wrong codes are counted durably before the answer; at
//! [`PinResetState::MAX_WRONG_CODES`] the reset is void. Attempts on one share are
//! serialised on the share's PIN lock, like PIN proofs.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::delegations::Holder;
use super::pin::secret_array;
use super::{KeyError, KeyService, RecoveryKey, Verifier, activation_code, blocking, code_hash};
use crate::model::delegation::DelegationStatus;
use crate::model::key::{KeyStatus, PinResetState};
use crate::model::secret::SecretKind;
use crate::store::{DelegationChange, PinResetCommit};

/// What the operator tells the person (shown once; only its hash is kept).
pub struct PinResetOpened {
    pub reset_code: String,
    pub expires_at: i64,
}

/// A phone's reset request, validated by the API layer.
pub struct PinResetRequest {
    pub reset_code: Zeroizing<String>,
    pub new_verifier: Verifier,
    pub new_recovery_key: RecoveryKey,
}

const NO_RECOVERY_KEY: &str = "this share has no recovery key: only a reissue replaces a forgotten PIN";
const NOT_OPEN: &str = "no PIN reset is open for this share";

impl KeyService {
    /// Operator: open a reset of the owner's share, or of the share of the key's active
    /// delegation `delegation_id`. A reset opened again replaces the earlier code.
    pub async fn open_pin_reset(&self, key_id: &str, delegation_id: Option<&str>) -> Result<PinResetOpened, KeyError> {
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if !matches!(key.status, KeyStatus::Active | KeyStatus::Suspended) {
            return Err(KeyError::Inactive(key.status));
        }
        let reset_code = activation_code()?;
        let now = self.now();
        let expires_at = now + self.cfg.pin_reset_ttl.as_secs() as i64;
        let state = PinResetState { code_sha256: code_hash(&reset_code), opened_at: now, expires_at, wrong_codes: 0 };
        match delegation_id {
            None => {
                if self.store.key_secret(key_id, SecretKind::RecoveryKey)?.is_none() {
                    return Err(KeyError::Conflict(NO_RECOVERY_KEY));
                }
                self.store
                    .edit_key(key_id, &mut |k| {
                        k.pin_reset = Some(state.clone());
                        true
                    })?
                    .ok_or(KeyError::NotFound("key"))?;
                self.store.flush().await?;
            }
            Some(did) => {
                let d = self.store.delegation(did)?.filter(|d| d.key_id == key_id);
                let d = d.ok_or(KeyError::NotFound("delegation"))?;
                if d.status != DelegationStatus::Active {
                    return Err(KeyError::Conflict("only an active delegation's PIN can be reset"));
                }
                if self.store.delegation_secret(did, SecretKind::DelegateRecoveryKey)?.is_none() {
                    return Err(KeyError::Conflict(NO_RECOVERY_KEY));
                }
                let mut n = self.next_delegation(&d);
                n.pin_reset = Some(state);
                self.commit_delegation(DelegationChange::of(&n)).await?;
            }
        }
        tracing::info!(key_id, delegation = delegation_id, expires_at, "PIN reset opened");
        Ok(PinResetOpened { reset_code, expires_at })
    }

    /// The phone of a share resets its PIN with the operator's code; answers the share's
    /// previous recovery key.
    pub async fn reset_pin(
        &self,
        key_id: &str,
        device_id: &str,
        req: PinResetRequest,
    ) -> Result<RecoveryKey, KeyError> {
        let first = self.share_holder(key_id, device_id)?;
        let _serial = self.pin_checks.lock(first.lock_id(key_id)).await;
        // Read again under the lock: the state its predecessors left.
        let holder = self.share_holder(key_id, device_id)?;
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if !matches!(key.status, KeyStatus::Active | KeyStatus::Suspended) {
            return Err(KeyError::Inactive(key.status));
        }
        let state = match &holder {
            Holder::Owner => key.pin_reset.clone(),
            Holder::Delegate(d) => d.pin_reset.clone(),
        };
        let state = state.ok_or(KeyError::Conflict(NOT_OPEN))?;
        if self.now() >= state.expires_at {
            return Err(KeyError::Conflict("the PIN reset has expired; the operator opens a new one"));
        }
        let given = code_hash(&req.reset_code);
        if !bool::from(given.as_bytes().ct_eq(state.code_sha256.as_bytes())) {
            return Err(self.count_wrong_code(key_id, &holder, &state).await);
        }
        let (owner, _, verifier_kind) = holder.secrets(key_id);
        let recovery_kind = holder.recovery_kind();
        let old_blob = match &holder {
            Holder::Owner => self.store.key_secret(key_id, recovery_kind)?,
            Holder::Delegate(d) => self.store.delegation_secret(&d.id, recovery_kind)?,
        }
        .ok_or(KeyError::Conflict(NO_RECOVERY_KEY))?;
        let (hsm, blob) = (self.hsm.clone(), old_blob.clone());
        let PinResetRequest { new_verifier, new_recovery_key, .. } = req;
        // The old recovery key is unwrapped before anything changes: if the HSM cannot,
        // the phone keeps what it has and may try again.
        let (old, verifier_blob, recovery_blob) = blocking(move || {
            let old: RecoveryKey = secret_array(&hsm.unwrap(&owner, recovery_kind, &blob)?, "recovery key")?;
            let verifier_blob = hsm.wrap(&owner, verifier_kind, new_verifier.as_slice())?;
            let recovery_blob = hsm.wrap(&owner, recovery_kind, new_recovery_key.as_slice())?;
            Ok((old, verifier_blob, recovery_blob))
        })
        .await?;
        match &holder {
            Holder::Owner => {
                let done = self
                    .audited(
                        key_id,
                        "ok",
                        serde_json::Value::Null,
                        |audit| {
                            let commit = PinResetCommit {
                                code_sha256: &state.code_sha256,
                                old_recovery: &old_blob,
                                verifier_blob: &verifier_blob,
                                recovery_blob: &recovery_blob,
                                audit,
                            };
                            self.store.complete_pin_reset(key_id, &commit)
                        },
                        |done| *done,
                    )
                    .await?;
                if !done {
                    return Err(KeyError::Conflict("the PIN reset changed meanwhile"));
                }
                self.store.flush().await?;
            }
            Holder::Delegate(d) => {
                let mut n = self.next_delegation(d);
                n.pin_reset = None;
                self.commit_delegation(DelegationChange {
                    put_secrets: vec![
                        (SecretKind::DelegatePinVerifier, &verifier_blob),
                        (SecretKind::DelegateRecoveryKey, &recovery_blob),
                    ],
                    clear_pin: true,
                    ..DelegationChange::of(&n)
                })
                .await?;
            }
        }
        tracing::info!(key_id, "PIN reset; old verifier and recovery key erased");
        Ok(old)
    }

    /// The share `device_id` holds of the key: the owner's, or an active delegation's.
    fn share_holder(&self, key_id: &str, device_id: &str) -> Result<Holder, KeyError> {
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if key.device_id == device_id {
            return Ok(Holder::Owner);
        }
        match self.store.delegation_of_device(key_id, device_id)? {
            Some(d) if d.status == DelegationStatus::Active => Ok(Holder::Delegate(Box::new(d))),
            _ => Err(KeyError::DeviceMismatch),
        }
    }

    /// Count a wrong code on the open reset `state` (durably, before the answer); the last
    /// allowed one voids it.
    async fn count_wrong_code(&self, key_id: &str, holder: &Holder, state: &PinResetState) -> KeyError {
        let wrong = state.wrong_codes + 1;
        let next =
            (wrong < PinResetState::MAX_WRONG_CODES).then(|| PinResetState { wrong_codes: wrong, ..state.clone() });
        let counted: Result<(), KeyError> = async {
            match holder {
                Holder::Owner => {
                    // Only the reset this attempt was checked against (the caller holds the
                    // share's lock; an operator may have opened a new one meanwhile).
                    self.store.edit_key(key_id, &mut |k| {
                        let same = k.pin_reset.as_ref() == Some(state);
                        if same {
                            k.pin_reset = next.clone();
                        }
                        same
                    })?;
                    self.store.flush().await?;
                }
                Holder::Delegate(d) => {
                    let mut n = self.next_delegation(d);
                    n.pin_reset = next.clone();
                    self.commit_delegation(DelegationChange::of(&n)).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = counted {
            return e;
        }
        let remaining_attempts = PinResetState::MAX_WRONG_CODES.saturating_sub(wrong);
        tracing::warn!(key_id, remaining_attempts, "PIN reset code rejected");
        KeyError::ResetCodeWrong { remaining_attempts }
    }
}

#[cfg(test)]
mod tests {
    use sm2_2p::Transcript;
    use zeroize::Zeroizing;

    use super::PinResetRequest;
    use crate::keys::testing::{Keys, Phone, recovery_of};
    use crate::keys::{KeyError, PinProof, SignMode};
    use crate::model::key::PinState;
    use crate::model::secret::SecretKind;

    /// Co-sign a digest with `verifier`; the joint signature is checked.
    async fn sign(k: &Keys, phone: &Phone, verifier: &[u8; 32]) -> Result<(), KeyError> {
        let key = k.key(&phone.key_id);
        let public = sm2_2p::point_from_hex(&key.public_key).unwrap();
        let e = sm2_2p::e_for_message(&public, b"bid file");
        let (k1, q1) = sm2_2p::ClientShare::sign_start();
        let op = Transcript::Sign { e: hex::encode(e), q1: sm2_2p::point_to_hex(&q1) };
        let proof = sm2_2p::pin_proof(verifier, &phone.key_id, &op);
        let out = k.keys.sign(&phone.key_id, &phone.device, e, q1, SignMode::Canonical, PinProof { op, proof: &proof });
        let crate::keys::SignOutput::Canonical(r) = out.await? else { panic!("canonical") };
        let sig = phone.share.sign_finish(&k1, &r.r, &r.s2, &r.s3).unwrap();
        assert!(sm2_2p::verify(&public, &e, &sig));
        Ok(())
    }

    fn request(code: &str, pin: &[u8], recovery: u8) -> PinResetRequest {
        PinResetRequest {
            reset_code: Zeroizing::new(code.to_owned()),
            new_verifier: Box::new(sm2_2p::pin_verifier(pin, &[5u8; 16])),
            new_recovery_key: Box::new(Zeroizing::new([recovery; 32])),
        }
    }

    async fn locked(k: &Keys) -> Phone {
        let phone = k.active_phone("dev-a", "123456").await;
        let wrong = sm2_2p::pin_verifier(b"000000", &[7u8; 16]);
        for _ in 0..3 {
            sign(k, &phone, &wrong).await.unwrap_err();
        }
        assert!(k.key(&phone.key_id).pin.locked);
        phone
    }

    #[tokio::test]
    async fn a_locked_key_is_reset_and_the_same_key_signs_under_the_new_pin() {
        let k = Keys::new("[keys]\npin_max_attempts = 3");
        let phone = locked(&k).await;
        let opened = k.keys.open_pin_reset(&phone.key_id, None).await.unwrap();
        assert_eq!(opened.reset_code.len(), 16);
        let public_before = k.key(&phone.key_id).public_key;
        // Read out with spaces and in lower case: the same code.
        let spoken = format!(" {} ", opened.reset_code.to_lowercase());
        let old = k.keys.reset_pin(&phone.key_id, &phone.device, request(&spoken, b"222222", 0x11)).await.unwrap();
        assert_eq!(old.as_slice(), recovery_of("dev-a"), "the previous recovery key comes back");
        let key = k.key(&phone.key_id);
        assert_eq!((key.pin, key.pin_reset, key.public_key), (PinState::default(), None, public_before));
        sign(&k, &phone, &sm2_2p::pin_verifier(b"222222", &[5u8; 16])).await.unwrap();
        assert!(matches!(sign(&k, &phone, &phone.verifier).await, Err(KeyError::PinIncorrect { .. })), "old PIN");
        let blob = k.store.key_secret(&phone.key_id, SecretKind::RecoveryKey).unwrap().unwrap();
        assert_eq!(
            crate::hsm::Wrapper::unwrap(&*k.hsm, &phone.key_id, SecretKind::RecoveryKey, &blob).unwrap().as_slice(),
            [0x11; 32]
        );
        // The code was used: conflict.
        let again = k.keys.reset_pin(&phone.key_id, &phone.device, request(&opened.reset_code, b"3", 1)).await;
        assert!(matches!(again, Err(KeyError::Conflict(_))), "{:?}", again.err());
    }

    #[tokio::test]
    async fn five_wrong_codes_void_the_reset() {
        let k = Keys::new("[keys]\npin_max_attempts = 3");
        let phone = locked(&k).await;
        let opened = k.keys.open_pin_reset(&phone.key_id, None).await.unwrap();
        for left in (0..5).rev() {
            let err = k.keys.reset_pin(&phone.key_id, &phone.device, request("WRONGCODE", b"1", 1)).await.unwrap_err();
            assert!(matches!(err, KeyError::ResetCodeWrong { remaining_attempts } if remaining_attempts == left));
        }
        assert_eq!(k.key(&phone.key_id).pin_reset, None, "voided");
        let err =
            k.keys.reset_pin(&phone.key_id, &phone.device, request(&opened.reset_code, b"1", 1)).await.unwrap_err();
        assert!(matches!(err, KeyError::Conflict(_)), "even the right code, once voided: {err:?}");
        assert!(k.key(&phone.key_id).pin.locked, "still locked");
    }

    #[tokio::test]
    async fn another_device_an_expired_code_and_a_key_without_recovery_key_are_refused() {
        let k = Keys::new("[keys]\npin_max_attempts = 3\npin_reset_ttl_hours = 1");
        let phone = locked(&k).await;
        let opened = k.keys.open_pin_reset(&phone.key_id, None).await.unwrap();
        let err = k.keys.reset_pin(&phone.key_id, "dev-x", request(&opened.reset_code, b"1", 1)).await.unwrap_err();
        assert!(matches!(err, KeyError::DeviceMismatch), "{err:?}");
        assert_eq!(k.key(&phone.key_id).pin_reset.unwrap().wrong_codes, 0, "a stranger counts nothing");
        k.clock.advance(3601);
        let err =
            k.keys.reset_pin(&phone.key_id, &phone.device, request(&opened.reset_code, b"1", 1)).await.unwrap_err();
        assert!(matches!(err, KeyError::Conflict(_)), "expired: {err:?}");
        // A share without a recovery key cannot be reset: reissue is the way out.
        let bare = k.active_phone_with("dev-b", "123456", false).await;
        let err = k.keys.open_pin_reset(&bare.key_id, None).await.err();
        assert!(matches!(err, Some(KeyError::Conflict(_))), "{err:?}");
    }
}
