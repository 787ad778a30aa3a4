//! Enrollments and keys: the domain service behind API.md "Enrollment and keys".
//!
//! It knows nothing of HTTP. It takes validated values (points, scalars, digests already
//! decoded by the API layer), applies the rules — device binding, key status, PIN counter —
//! and uses the HSM (through blocking calls on the blocking pool) and the store.
//!
//! Ordering rules that matter:
//! - Bad input is rejected by the API layer before anything here runs: no state changes.
//! - A wrong PIN proof increments the durable counter and the store is flushed *before*
//!   the error is returned, so a crash cannot hand an attacker free guesses.
//! - Activation and revocation are single store transactions, flushed before the reply.
//! - Plaintext shares and verifiers live only inside one blocking closure, in zeroizing
//!   buffers, and never cross an `.await`.

pub mod certificates;
pub mod delegations;
pub mod kek_rotation;
pub mod lifecycle;
pub mod pin;
pub mod pin_reset;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use sm2_2p::AffinePoint;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::config::KeysConfig;
use crate::hsm::{HsmError, Wrapper};
use crate::model::inbox::InboxEvent;
use crate::model::key::{
    EnrollmentRecord, EnrollmentState, KeyRecord, KeyStatus, PinState, PlatformGrant, Predecessor, Subject,
};
use crate::model::secret::SecretKind;
use crate::plugins::PluginError;
use crate::plugins::ca::{CaAdapter, RevokeRequest};
use crate::store::{ActivateOutcome, KeySecrets, Storage, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("key belongs to another device")]
    DeviceMismatch,
    #[error("key is {}", .0.as_str())]
    Inactive(KeyStatus),
    #[error("the key's certificate has expired")]
    CertificateExpired,
    #[error("PIN verification failed")]
    PinIncorrect { remaining_attempts: u32 },
    #[error("PIN locked")]
    PinLocked,
    #[error("activation code incorrect")]
    ActivationCodeWrong,
    #[error("{0}")]
    TokenInvalid(&'static str),
    #[error("reset code incorrect")]
    ResetCodeWrong { remaining_attempts: u32 },
    #[error("{0}")]
    NoPermission(String),
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// An admin's enrollment request, already validated by the API layer.
pub struct NewEnrollment {
    pub subject: Subject,
    pub ca: String,
    pub profile: Option<String>,
    pub platforms: Vec<String>,
    pub validity_days: u32,
    pub predecessor: Option<Predecessor>,
}

pub struct EnrollmentCreated {
    pub enrollment_id: String,
    /// Shown once; only its hash is stored.
    pub activation_code: String,
    pub expires_at: i64,
}

/// A phone's activation request, validated.
pub struct Activation {
    pub enrollment_id: String,
    pub activation_code: Zeroizing<String>,
    pub device_id: String,
    pub p1: AffinePoint,
    /// On the heap: moving it moves a pointer, not 32 bytes that stay behind.
    pub pin_verifier: Verifier,
    /// PROTOCOL.md "PIN reset": kept HSM-wrapped, handed back at the next reset.
    pub recovery_key: Option<RecoveryKey>,
}

/// What the PIN proof of a request covers (PROTOCOL.md "PIN"): the op name and the
/// request's fields exactly as sent.
pub struct PinProof<'a> {
    /// What the proof authorises (the transcript of PROTOCOL.md, defined once in `sm2-2p`).
    pub op: sm2_2p::Transcript,
    pub proof: &'a str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    Canonical,
    FixedK3,
    /// Canonical, for the key's own certificate request (allowed while pending).
    CertificateRequest,
    /// `fixed_k3`, for the key's own certificate request.
    CertificateRequestFixedK3,
}

impl SignMode {
    fn allow_pending(self) -> bool {
        matches!(self, SignMode::CertificateRequest | SignMode::CertificateRequestFixedK3)
    }

    fn kind(self) -> SignMode {
        match self {
            SignMode::CertificateRequest => SignMode::Canonical,
            SignMode::CertificateRequestFixedK3 => SignMode::FixedK3,
            m => m,
        }
    }

    /// This mode, for the key's own certificate request.
    pub fn for_certificate_request(self) -> SignMode {
        match self.kind() {
            SignMode::FixedK3 => SignMode::CertificateRequestFixedK3,
            _ => SignMode::CertificateRequest,
        }
    }
}

pub enum SignOutput {
    Canonical(sm2_2p::SignResponse),
    FixedK3(sm2_2p::FixedK3Response),
}

/// Who asks, as far as key rules are concerned.
pub enum Actor<'a> {
    Admin,
    Device(&'a str),
}

pub struct KeyService {
    store: Arc<dyn Storage>,
    hsm: Arc<dyn Wrapper>,
    plugins: Arc<dyn CaAdapter>,
    cfg: KeysConfig,
    /// Enrollment expiry, certificate expiry and timestamps read this clock.
    clock: Arc<dyn Clock>,
    pin_checks: pin::KeyLocks,
    /// The audit chain, for steps that write their request's entry in their own store
    /// transaction (PIN failures, activation, revocation): set once at start-up.
    audit: std::sync::OnceLock<Arc<crate::audit::Audit>>,
    /// The devices' inboxes (on the same store and clock): delegation events go there, and
    /// the layers above reach it through [`KeyService::inbox`].
    inbox: Arc<crate::inbox::InboxService>,
}

pub(crate) fn random_id(prefix: &str) -> Result<String, KeyError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| KeyError::Internal(format!("OS RNG: {e}")))?;
    Ok(format!("{prefix}{}", hex::encode(b)))
}

/// 16 characters from an alphabet without look-alikes (no I, O, 0, 1): 80 bits.
pub(crate) fn activation_code() -> Result<String, KeyError> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| KeyError::Internal(format!("OS RNG: {e}")))?;
    Ok(b.iter().map(|x| ALPHABET[(x & 31) as usize] as char).collect())
}

fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().to_ascii_uppercase().as_bytes()))
}

/// Run HSM calls and share arithmetic ([`crate::os::secret_work`]: the stack they used is
/// wiped after).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, KeyError> + Send + 'static) -> Result<T, KeyError> {
    crate::os::secret_work(f).await.map_err(|e| KeyError::Internal(format!("blocking task: {e}")))?
}

/// A PIN verifier in memory: boxed, so moves copy only the pointer, and wiped on drop.
pub type Verifier = Box<Zeroizing<[u8; 32]>>;

/// A recovery key in memory (32 bytes, like a verifier).
pub type RecoveryKey = Box<Zeroizing<[u8; 32]>>;

impl KeyService {
    pub fn new(
        store: Arc<dyn Storage>,
        hsm: Arc<dyn Wrapper>,
        plugins: Arc<dyn CaAdapter>,
        cfg: KeysConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        KeyService {
            inbox: Arc::new(crate::inbox::InboxService::new(store.clone(), clock.clone())),
            store,
            hsm,
            plugins,
            cfg,
            clock,
            pin_checks: pin::KeyLocks::default(),
            audit: std::sync::OnceLock::new(),
        }
    }

    pub fn inbox(&self) -> &Arc<crate::inbox::InboxService> {
        &self.inbox
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// From now on, PIN failures, activations and revocations write the request's audit
    /// entry in the same transaction as the change (a crash cannot split them).
    pub fn attach_audit(&self, audit: Arc<crate::audit::Audit>) {
        let _ = self.audit.set(audit);
    }

    /// The audit chain and the entry of the request being served, when both exist.
    fn request_audit(&self) -> Option<(&crate::audit::Audit, Arc<crate::audit::RequestEntry>)> {
        Some((self.audit.get()?, crate::audit::RequestEntry::pending()?))
    }

    /// Run `write` (a store transaction taking the entry) with the request's audit entry
    /// for `key_id` and `outcome`, or with none outside a request.
    async fn audited<T>(
        &self,
        key_id: &str,
        outcome: &str,
        detail: serde_json::Value,
        write: impl FnOnce(Option<&crate::store::AuditAppend>) -> Result<T, StoreError>,
        committed: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError> {
        let Some((audit, req)) = self.request_audit() else { return write(None) };
        let ev = crate::audit::Event {
            event: req.event.clone(),
            actor: req.actor.clone(),
            key_id: Some(key_id.to_owned()),
            platform: req.platform.clone(),
            task_id: None,
            outcome: outcome.to_owned(),
            detail,
            origin: None,
        };
        audit.append_with(ev, Some(&req), |entry| write(Some(&entry)), committed).await
    }

    pub fn pin_max_attempts(&self) -> u32 {
        self.cfg.pin_max_attempts
    }

    pub async fn create_enrollment(&self, req: NewEnrollment) -> Result<EnrollmentCreated, KeyError> {
        let id = random_id("e_")?;
        let code = activation_code()?;
        let created_at = self.now();
        let expires_at = created_at + self.cfg.enrollment_ttl.as_secs() as i64;
        let rec = EnrollmentRecord {
            id: id.clone(),
            subject: req.subject,
            ca: req.ca,
            profile: req.profile,
            platforms: req.platforms,
            validity_days: req.validity_days,
            activation_code_sha256: code_hash(&code),
            created_at,
            expires_at,
            state: EnrollmentState::Pending,
            predecessor: req.predecessor,
        };
        self.store.put_enrollment(&rec)?;
        self.store.flush().await?;
        Ok(EnrollmentCreated { enrollment_id: id, activation_code: code, expires_at })
    }

    /// A phone activates an enrollment: the server half is generated, wrapped by the HSM,
    /// and stored with the key in one transaction.
    pub async fn activate(&self, req: Activation) -> Result<KeyRecord, KeyError> {
        let enrollment = self.store.enrollment(&req.enrollment_id)?.ok_or(KeyError::NotFound("enrollment"))?;
        let given = code_hash(&req.activation_code);
        let code_ok = bool::from(given.as_bytes().ct_eq(enrollment.activation_code_sha256.as_bytes()));
        if let EnrollmentState::Activated { key_id } = &enrollment.state {
            // The same phone repeating its activation (the answer was lost): same code,
            // same device, same P1, key still waiting for its certificate — answer again.
            let p1_hex = sm2_2p::point_to_hex(&req.p1);
            if code_ok
                && let Some(key) = self.store.key(key_id)?
                && key.device_id == req.device_id
                && key.p1.as_deref() == Some(p1_hex.as_str())
                && key.status == KeyStatus::Pending
            {
                return Ok(key);
            }
            return Err(KeyError::Conflict("enrollment already activated"));
        }
        if !code_ok {
            return Err(KeyError::ActivationCodeWrong);
        }
        if self.now() >= enrollment.expires_at {
            return Err(KeyError::Conflict("enrollment expired"));
        }
        let key_id = random_id("k_")?;
        let hsm = self.hsm.clone();
        let (id, p1, verifier, recovery) = (key_id.clone(), req.p1, req.pin_verifier, req.recovery_key);
        let (public, p2, share_blob, verifier_blob, recovery_blob) = blocking(move || {
            let (share, public) = sm2_2p::server_keygen(&p1);
            let p2 = share.p2();
            let share_blob = hsm.wrap(&id, SecretKind::Share, share.to_bytes().as_slice())?;
            let verifier_blob = hsm.wrap(&id, SecretKind::PinVerifier, verifier.as_slice())?;
            let recovery_blob = recovery.map(|r| hsm.wrap(&id, SecretKind::RecoveryKey, r.as_slice())).transpose()?;
            Ok((public, p2, share_blob, verifier_blob, recovery_blob))
        })
        .await?;
        let key = KeyRecord {
            id: key_id,
            enrollment_id: enrollment.id.clone(),
            subject: enrollment.subject.clone(),
            ca: enrollment.ca.clone(),
            // Pending until the phone co-signs its certificate request and the CA answers.
            status: KeyStatus::Pending,
            public_key: sm2_2p::point_to_hex(&public),
            device_id: req.device_id,
            platforms: enrollment
                .platforms
                .iter()
                .map(|p| PlatformGrant { platform: p.clone(), until: None, once: false })
                .collect(),
            pin: PinState::default(),
            created_at: self.now(),
            validity_days: enrollment.validity_days,
            revocation_reason: None,
            revoked_at: None,
            certificate: None,
            p1: Some(sm2_2p::point_to_hex(&p1)),
            suspension: None,
            expiry_notified: None,
            pin_reset: None,
            retired_certificates: Vec::new(),
            p2: Some(sm2_2p::point_to_hex(&p2)),
        };
        let activated = self
            .audited(
                &key.id,
                "ok",
                crate::audit::enrollment_detail(Some(&key.enrollment_id)),
                |a| {
                    let secrets =
                        KeySecrets { share: &share_blob, verifier: &verifier_blob, recovery: recovery_blob.as_deref() };
                    self.store.activate_with(&key, &secrets, a)
                },
                |o| *o == ActivateOutcome::Done,
            )
            .await?;
        match activated {
            ActivateOutcome::Done => {}
            ActivateOutcome::AlreadyActivated => return Err(KeyError::Conflict("enrollment already activated")),
            ActivateOutcome::NoSuchEnrollment => return Err(KeyError::NotFound("enrollment")),
        }
        self.store.flush().await?;
        Ok(key)
    }

    /// Load a key the actor may see: admins see all, a device only its own.
    pub fn key_for(&self, key_id: &str, actor: &Actor<'_>) -> Result<KeyRecord, KeyError> {
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if let Actor::Device(device) = actor
            && key.device_id != *device
        {
            return Err(KeyError::DeviceMismatch);
        }
        Ok(key)
    }

    /// The key a phone wants to use: its own, active, certificate not expired, not locked.
    pub fn usable_key(&self, key_id: &str, device_id: &str) -> Result<KeyRecord, KeyError> {
        let key = self.key_for(key_id, &Actor::Device(device_id))?;
        check_usable(&key, self.now())?;
        if key.pin.locked {
            return Err(KeyError::PinLocked);
        }
        Ok(key)
    }

    async fn revoke_certificate(&self, key: &KeyRecord, reason: &str) -> Result<(), KeyError> {
        if let Some(cert) = &key.certificate {
            let request = RevokeRequest { serial: cert.serial.clone(), reason: reason.to_owned() };
            self.plugins.revoke(&key.ca, &request).await?;
        }
        Ok(())
    }

    /// Admin: an enrollment that replaces a key. `reissue` (lost phone) suspends the old key
    /// at once; `renew` and `change` supersede it when the successor's certificate arrives.
    pub async fn create_successor(
        &self,
        key_id: &str,
        reason: &str,
        subject: Option<Subject>,
        validity_days: Option<u32>,
    ) -> Result<EnrollmentCreated, KeyError> {
        let old = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if !matches!(old.status, KeyStatus::Active | KeyStatus::Suspended) {
            return Err(KeyError::Inactive(old.status));
        }
        if reason == "change" && subject.is_none() {
            return Err(KeyError::Conflict("a change needs the new subject"));
        }
        let enrollment = self.store.enrollment(&old.enrollment_id)?.ok_or(KeyError::NotFound("enrollment"))?;
        if reason == "reissue" && (old.status == KeyStatus::Active || old.suspension.is_some()) {
            // Suspended until its successor replaces it: an operator's earlier suspension
            // becomes this one, which no resume lifts (a held certificate stays held).
            self.store
                .update_key::<()>(key_id, |k| {
                    let change = k.status == KeyStatus::Active || k.suspension.is_some();
                    if change {
                        k.status = KeyStatus::Suspended;
                        k.suspension = None;
                    }
                    Ok(change)
                })?
                .map_err(|()| KeyError::Internal("unreachable".into()))?;
            self.store.flush().await?;
            if old.status == KeyStatus::Active {
                self.tell_holders(&old, InboxEvent::KeySuspended { key_id: key_id.to_owned() }).await;
            }
        }
        let platforms =
            old.platforms.iter().filter(|g| !g.once && g.until.is_none()).map(|g| g.platform.clone()).collect();
        self.create_enrollment(NewEnrollment {
            subject: subject.unwrap_or_else(|| old.subject.clone()),
            ca: old.ca.clone(),
            profile: enrollment.profile,
            platforms,
            validity_days: validity_days.unwrap_or(old.validity_days),
            predecessor: Some(Predecessor { key_id: key_id.to_owned(), reason: reason.to_owned() }),
        })
        .await
    }

    /// When a renew/change successor becomes active: supersede the old key and revoke
    /// its certificate.
    async fn retire_predecessor(&self, successor: &KeyRecord) -> Result<(), KeyError> {
        let Some(enrollment) = self.store.enrollment(&successor.enrollment_id)? else { return Ok(()) };
        let Some(pred) = enrollment.predecessor else { return Ok(()) };
        if pred.reason == "reissue" {
            return Ok(());
        }
        let Some(old) = self.store.key(&pred.key_id)? else { return Ok(()) };
        if old.status != KeyStatus::Active && old.status != KeyStatus::Suspended {
            return Ok(());
        }
        self.revoke_certificate(&old, "superseded").await?;
        self.store
            .update_key::<()>(&pred.key_id, |k| {
                k.status = KeyStatus::Superseded;
                k.revocation_reason = Some("superseded".into());
                k.revoked_at = Some(crate::clock::now());
                Ok(true)
            })?
            .map_err(|()| KeyError::Internal("unreachable".into()))?;
        self.store.flush().await?;
        tracing::info!(old = %pred.key_id, new = %successor.id, reason = %pred.reason, "key superseded");
        self.tell_holders(&old, InboxEvent::KeySuperseded { key_id: pred.key_id.clone() }).await;
        Ok(())
    }

    /// A pending key became active with its certificate (the `csr` task's completion,
    /// which installs it in the task's own store transaction): retire the key it replaces.
    pub async fn certificate_installed(&self, key_id: &str) {
        let retired = match self.store.key(key_id) {
            Ok(Some(rec)) => {
                self.tell_holders(&rec, InboxEvent::CertificateIssued { key_id: key_id.to_owned() }).await;
                self.retire_predecessor(&rec).await
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = retired {
            // The new key is live; the old one's retirement is logged for the operator.
            tracing::error!(key_id, error = %e, "could not retire the predecessor key");
        }
    }

    /// Admin: authorise a key on a platform (roaming) until `until`, or for one task.
    pub async fn authorize_platform(
        &self,
        key_id: &str,
        platform: &str,
        until: Option<i64>,
        once: bool,
    ) -> Result<KeyRecord, KeyError> {
        let rec = self
            .store
            .update_key::<KeyError>(key_id, |k| {
                if k.status == KeyStatus::Revoked {
                    return Err(KeyError::Inactive(k.status));
                }
                // One grant per platform and kind: a new one replaces the old.
                k.platforms.retain(|g| !(g.platform == platform && g.once == once));
                k.platforms.push(PlatformGrant { platform: platform.to_owned(), until, once });
                Ok(true)
            })??
            .ok_or(KeyError::NotFound("key"))?;
        self.store.flush().await?;
        Ok(rec)
    }

    /// Admin: withdraw every grant of a platform.
    pub async fn remove_platform(&self, key_id: &str, platform: &str) -> Result<(), KeyError> {
        let mut found = false;
        self.store
            .update_key::<KeyError>(key_id, |k| {
                let before = k.platforms.len();
                k.platforms.retain(|g| g.platform != platform);
                found = k.platforms.len() != before;
                Ok(found)
            })??
            .ok_or(KeyError::NotFound("key"))?;
        if !found {
            return Err(KeyError::NotFound("platform grant"));
        }
        self.store.flush().await?;
        Ok(())
    }

    /// Server halves of several signatures under one PIN proof (batch co-signing).
    pub async fn sign_batch(
        &self,
        key_id: &str,
        device_id: &str,
        uses: &[&str],
        items: Vec<([u8; 32], AffinePoint)>,
        mode: SignMode,
        proof: PinProof<'_>,
    ) -> Result<Vec<SignOutput>, KeyError> {
        let fixed = mode.kind() == SignMode::FixedK3;
        let out = self
            .with_pin(key_id, device_id, Some(uses), proof, true, false, move |_, _, share| {
                let share = share.ok_or_else(|| KeyError::Internal("share not loaded".into()))?;
                Ok(items
                    .iter()
                    .map(|(e, q1)| match fixed {
                        true => SignOutput::FixedK3(share.sign_fixed_k3(e, q1)),
                        false => SignOutput::Canonical(share.sign(e, q1)),
                    })
                    .collect::<Vec<_>>())
            })
            .await;
        count_cosign("batch_sign", &out);
        out
    }

    pub fn list(
        &self,
        actor: &Actor<'_>,
        subject: Option<&str>,
        status: Option<KeyStatus>,
    ) -> Result<Vec<KeyRecord>, KeyError> {
        let keep =
            |k: &KeyRecord| subject.is_none_or(|s| k.subject.name == s) && status.is_none_or(|st| k.status == st);
        let mut keys = match actor {
            Actor::Admin => self.store.keys_matching(keep)?,
            Actor::Device(device) => self.store.keys_of_device(device)?.into_iter().filter(keep).collect(),
        };
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// Server half of a signature over the digest `e` (the raw route: a delegate needs
    /// the use `sign`).
    pub async fn sign(
        &self,
        key_id: &str,
        device_id: &str,
        e: [u8; 32],
        q1: AffinePoint,
        mode: SignMode,
        proof: PinProof<'_>,
    ) -> Result<SignOutput, KeyError> {
        self.sign_for(key_id, device_id, &["sign"], e, q1, mode, proof).await
    }

    /// Server half of a signature for `uses` (a task's kind). A certificate request is
    /// the owner's alone.
    #[allow(clippy::too_many_arguments)]
    pub async fn sign_for(
        &self,
        key_id: &str,
        device_id: &str,
        uses: &[&str],
        e: [u8; 32],
        q1: AffinePoint,
        mode: SignMode,
        proof: PinProof<'_>,
    ) -> Result<SignOutput, KeyError> {
        let kind = if mode.kind() == SignMode::FixedK3 { "sign_fixed_k3" } else { "sign" };
        let uses = (!mode.allow_pending()).then_some(uses);
        let out = self
            .with_pin(key_id, device_id, uses, proof, true, mode.allow_pending(), move |_, _, share| {
                let share = share.ok_or_else(|| KeyError::Internal("share not loaded".into()))?;
                Ok(match mode.kind() {
                    SignMode::FixedK3 => SignOutput::FixedK3(share.sign_fixed_k3(&e, &q1)),
                    _ => SignOutput::Canonical(share.sign(&e, &q1)),
                })
            })
            .await;
        count_cosign(kind, &out);
        out
    }

    /// Server half of a blinded decryption: `T2 = d2⁻¹·T1` (the raw route: a delegate
    /// needs the use `decrypt`).
    pub async fn decrypt(
        &self,
        key_id: &str,
        device_id: &str,
        t1: AffinePoint,
        proof: PinProof<'_>,
    ) -> Result<AffinePoint, KeyError> {
        self.decrypt_for(key_id, device_id, &["decrypt"], t1, proof).await
    }

    /// Server half of a blinded decryption for `uses` (a task's kind).
    pub async fn decrypt_for(
        &self,
        key_id: &str,
        device_id: &str,
        uses: &[&str],
        t1: AffinePoint,
        proof: PinProof<'_>,
    ) -> Result<AffinePoint, KeyError> {
        let out = self
            .with_pin(key_id, device_id, Some(uses), proof, true, false, move |_, _, share| {
                let share = share.ok_or_else(|| KeyError::Internal("share not loaded".into()))?;
                Ok(share.decrypt(&t1))
            })
            .await;
        count_cosign("decrypt", &out);
        out
    }

    /// Replace the PIN verifier (proof made with the old PIN) and clear the counter.
    pub async fn change_pin(
        &self,
        key_id: &str,
        device_id: &str,
        new_verifier: Verifier,
        proof: PinProof<'_>,
    ) -> Result<(), KeyError> {
        let blob: Vec<u8> = self
            .with_pin(key_id, device_id, None, proof, false, false, move |hsm, key, _| {
                Ok(hsm.wrap(&key.id, SecretKind::PinVerifier, new_verifier.as_slice())?)
            })
            .await?;
        if !self.store.replace_verifier(key_id, &blob)? {
            return Err(KeyError::NotFound("key"));
        }
        self.store.flush().await?;
        Ok(())
    }

    /// Admin: clear the PIN counter and lock.
    pub async fn unlock(&self, key_id: &str) -> Result<(), KeyError> {
        self.store.unlock_pin(key_id)?.ok_or(KeyError::NotFound("key"))?;
        self.store.flush().await?;
        Ok(())
    }

    /// The key's own phone proves its PIN (checked and counted as for any use); an operator
    /// sends no proof. Says who acted: `owner` or `admin`.
    pub(super) async fn owner_proof(
        &self,
        key_id: &str,
        actor: &Actor<'_>,
        proof: Option<PinProof<'_>>,
    ) -> Result<&'static str, KeyError> {
        match actor {
            Actor::Device(device) => {
                let proof = proof.ok_or_else(|| KeyError::Internal("a phone's request without a proof".into()))?;
                self.with_pin(key_id, device, None, proof, false, false, |_, _, _| Ok(())).await?;
                Ok("owner")
            }
            Actor::Admin => Ok("admin"),
        }
    }

    /// Revoke and crypto-shred. A phone must prove its PIN; an admin need not.
    pub async fn revoke(
        &self,
        key_id: &str,
        actor: &Actor<'_>,
        reason: &str,
        proof: Option<PinProof<'_>>,
    ) -> Result<KeyRecord, KeyError> {
        let key = self.key_for(key_id, actor)?;
        if key.status == KeyStatus::Revoked {
            return Err(KeyError::Conflict("key already revoked"));
        }
        self.owner_proof(key_id, actor, proof).await?;
        // The CA first: if it cannot revoke, nothing changes here and the caller may retry.
        self.revoke_certificate(&key, reason).await?;
        let rec = self
            .audited(key_id, "ok", serde_json::Value::Null, |a| self.store.revoke(key_id, reason, a), Option::is_some)
            .await?
            .ok_or(KeyError::NotFound("key"))?;
        self.store.flush().await?;
        tracing::info!(key_id, reason, "key revoked; share destroyed");
        Ok(rec)
    }
}

/// Count a server-half computation by kind and outcome.
fn count_cosign<T>(kind: &str, out: &Result<T, KeyError>) {
    let result = match out {
        Ok(_) => "ok",
        Err(KeyError::PinIncorrect { .. }) => "pin_incorrect",
        Err(KeyError::PinLocked) => "pin_locked",
        Err(KeyError::Inactive(_) | KeyError::CertificateExpired) => "key_inactive",
        Err(_) => "error",
    };
    crate::metrics::METRICS.cosign_operations.with_label_values(&[kind, result]).inc();
}

/// Active, and its certificate (if any) not expired at `at`.
fn check_usable(key: &KeyRecord, at: i64) -> Result<(), KeyError> {
    if key.status != KeyStatus::Active {
        return Err(KeyError::Inactive(key.status));
    }
    if key.certificate.as_ref().is_some_and(|c| c.not_after <= at) {
        return Err(KeyError::CertificateExpired);
    }
    Ok(())
}
