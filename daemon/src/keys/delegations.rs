//! Delegations (API.md "Organisations", PROTOCOL.md "Re-sharing"): giving another device
//! its own share pair of a key — an employee's phone, or the owner's new phone — and
//! choosing, for every use of a key, whose share answers.
//!
//! The flow: the owner (its phone with a PIN proof, or an operator) creates an invitation;
//! the new device accepts it with a transport key; the owner's phone asks for the re-share
//! factor `u` (the daemon keeps `d2' = d2·u⁻¹`, HSM-wrapped under the delegation's id) and
//! sends `d1'` sealed to the transport key; the new device fetches it with `p2`, checks the
//! pair, and activates with its own PIN verifier. Each step is one compare-and-swap on the
//! delegation with its audit entry, flushed before the reply; ending a delegation (revoke,
//! expiry, the key's revocation) erases its share before the reply.
//!
//! Share selection: the key's owner device uses the key's share, verifier and counter; an
//! active delegate its own; anyone else gets `device_mismatch`. A delegate outside its
//! window or its task kinds gets `no_permission`. Owner-only steps pass no uses.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Actor, KeyError, KeyService, PinProof, RecoveryKey, Verifier, blocking, check_usable, random_id};
use crate::model::delegation::{Approval, DelegationKind, DelegationRecord, DelegationStatus};
use crate::model::inbox::InboxEvent;
use crate::model::key::{KeyRecord, PinState};
use crate::model::secret::SecretKind;
use crate::store::{DelegationChange, DelegationOutcome, KeyTransfer};

/// Whose share answers a use of a key.
pub(crate) enum Holder {
    Owner,
    Delegate(Box<DelegationRecord>),
}

impl Holder {
    /// What the PIN rule serialises on: one lock per counter.
    pub(super) fn lock_id<'a>(&'a self, key_id: &'a str) -> &'a str {
        match self {
            Holder::Owner => key_id,
            Holder::Delegate(d) => &d.id,
        }
    }

    pub(super) fn pin(&self, key: &KeyRecord) -> PinState {
        match self {
            Holder::Owner => key.pin,
            Holder::Delegate(d) => d.pin,
        }
    }

    /// The owner of the wrapped secrets (part of their AAD) and their kinds.
    pub(super) fn secrets(&self, key_id: &str) -> (String, SecretKind, SecretKind) {
        match self {
            Holder::Owner => (key_id.to_owned(), SecretKind::Share, SecretKind::PinVerifier),
            Holder::Delegate(d) => (d.id.clone(), SecretKind::DelegateShare, SecretKind::DelegatePinVerifier),
        }
    }

    /// The kind of the holder's recovery key (owned like its other secrets).
    pub(super) fn recovery_kind(&self) -> SecretKind {
        match self {
            Holder::Owner => SecretKind::RecoveryKey,
            Holder::Delegate(_) => SecretKind::DelegateRecoveryKey,
        }
    }
}

/// A new delegation, validated by the API layer.
pub struct NewDelegation {
    pub kind: DelegationKind,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub approval: Approval,
    pub task_kinds: Option<Vec<String>>,
    pub label: Option<String>,
}

pub struct DelegationCreated {
    pub delegation: DelegationRecord,
    /// Shown once; only its hash is stored.
    pub invitation_code: Zeroizing<String>,
}

/// What the delegate fetches while `awaiting_pin`: its sealed `d1'` and `p2`.
pub struct Handover {
    pub wrapped_share: String,
    pub p2: String,
}

fn invitation_code() -> Result<String, KeyError> {
    super::activation_code()
}

fn code_matches(given: &str, stored_sha256: &str) -> bool {
    let given = hex::encode(Sha256::digest(given.trim().to_ascii_uppercase().as_bytes()));
    bool::from(given.as_bytes().ct_eq(stored_sha256.as_bytes()))
}

/// Among `uses`: this use is of a task the owner approved (or a claim that will ask). Only
/// the task layer passes it.
pub const APPROVED_USE: &str = "+approved";

/// One row of `GET /v1/devices`.
pub struct DeviceUse {
    pub device_id: String,
    pub owner: bool,
    pub key_id: String,
    /// The delegation a delegate's device holds.
    pub delegation: Option<DelegationRecord>,
}

impl KeyService {
    /// The key and whose share answers `device_id` for it. `uses`: the uses a delegate must
    /// be allowed (task kinds, or `sign`/`decrypt` for the raw routes); `None`: owner only.
    pub(crate) fn holder_of(
        &self,
        key_id: &str,
        device_id: &str,
        uses: Option<&[&str]>,
    ) -> Result<(KeyRecord, Holder), KeyError> {
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if key.device_id == device_id {
            return Ok((key, Holder::Owner));
        }
        let Some(uses) = uses else { return Err(KeyError::DeviceMismatch) };
        let Some(d) = self.store.delegation_of_device(key_id, device_id)? else { return Err(KeyError::DeviceMismatch) };
        // The request's audit entry names the delegation (refused uses too).
        crate::audit::RequestEntry::note_delegation(&d.id);
        self.check_delegate(&d, uses)?;
        Ok((key, Holder::Delegate(Box::new(d))))
    }

    fn check_delegate(&self, d: &DelegationRecord, uses: &[&str]) -> Result<(), KeyError> {
        if d.status != DelegationStatus::Active {
            return Err(KeyError::NoPermission(format!("the delegation is {}", d.status.as_str())));
        }
        if !d.valid_at(self.now()) {
            return Err(KeyError::NoPermission("outside the delegation's validity".into()));
        }
        if let Some(kind) = uses.iter().filter(|u| **u != APPROVED_USE).find(|u| !d.allows(u)) {
            return Err(KeyError::NoPermission(format!("the delegation does not cover {kind}")));
        }
        // Such a delegation is used only for a task, and only once the owner approved it (or
        // to claim one, which asks the owner): never for a raw sign or decrypt.
        if d.approval == Approval::EachUse && !uses.contains(&APPROVED_USE) {
            return Err(KeyError::NoPermission("this delegation needs the owner's approval for each use".into()));
        }
        Ok(())
    }

    /// The key a phone wants to use for `uses`: its own or one it is an active delegate
    /// of, active, certificate not expired, its holder's PIN not locked.
    pub fn usable_key_for(&self, key_id: &str, device_id: &str, uses: &[&str]) -> Result<KeyRecord, KeyError> {
        let (key, holder) = self.holder_of(key_id, device_id, Some(uses))?;
        check_usable(&key, self.now())?;
        if holder.pin(&key).locked {
            return Err(KeyError::PinLocked);
        }
        Ok(key)
    }

    /// Write one delegation step with the request's audit entry, flushed. `Raced` is the
    /// caller's `conflict`: someone moved it first.
    pub(super) async fn commit_delegation(&self, change: DelegationChange<'_>) -> Result<(), KeyError> {
        let rec = change.record.clone();
        let DelegationChange { put_secrets, erase_secrets, transfer, clear_pin, .. } = change;
        let outcome = self
            .audited(
                &rec.key_id,
                "ok",
                crate::audit::delegation_detail(&rec.id),
                |a| {
                    self.store.change_delegation(DelegationChange {
                        record: &rec,
                        put_secrets,
                        erase_secrets,
                        transfer,
                        clear_pin,
                        audit: a,
                    })
                },
                |o| *o == DelegationOutcome::Done,
            )
            .await?;
        match outcome {
            DelegationOutcome::Done => {}
            DelegationOutcome::Raced => return Err(KeyError::Conflict("the delegation changed meanwhile")),
            DelegationOutcome::KeyGone => return Err(KeyError::Conflict("the key is no longer active")),
        }
        self.store.flush().await?;
        Ok(())
    }

    pub(super) fn next_delegation(&self, d: &DelegationRecord) -> DelegationRecord {
        let mut n = d.clone();
        n.rev += 1;
        n.updated_at = self.now();
        n
    }

    fn delegation_rec(&self, id: &str) -> Result<DelegationRecord, KeyError> {
        self.store.delegation(id)?.ok_or(KeyError::NotFound("delegation"))
    }

    /// The owner's phone (with a PIN proof over `kind`, `not_after`, `approval`) or an
    /// operator opens an invitation for another device.
    pub async fn create_delegation(
        &self,
        key_id: &str,
        actor: &Actor<'_>,
        req: NewDelegation,
        proof: Option<PinProof<'_>>,
    ) -> Result<DelegationCreated, KeyError> {
        let key = self.key_for(key_id, actor)?;
        check_usable(&key, self.now())?;
        let now = self.now();
        if req.kind == DelegationKind::Delegate && req.not_after.is_none_or(|na| na <= now) {
            return Err(KeyError::Conflict("a delegation needs a not_after in the future"));
        }
        if let (Some(nb), Some(na)) = (req.not_before, req.not_after)
            && nb >= na
        {
            return Err(KeyError::Conflict("not_before must come before not_after"));
        }
        if req.kind == DelegationKind::Transfer
            && self.store.delegations_of_key(key_id)?.iter().any(|d| {
                d.kind == DelegationKind::Transfer && !d.status.is_final() && d.status != DelegationStatus::Active
            })
        {
            return Err(KeyError::Conflict("a transfer of this key is already under way"));
        }
        if let Actor::Device(device) = actor {
            let proof = proof.ok_or_else(|| KeyError::Internal("phone delegation without proof".into()))?;
            self.with_pin(key_id, device, None, proof, false, false, |_, _, _| Ok(())).await?;
        }
        let code = Zeroizing::new(invitation_code()?);
        let rec = DelegationRecord {
            id: random_id("d_")?,
            key_id: key_id.to_owned(),
            public_key: key.public_key.clone(),
            kind: req.kind,
            status: DelegationStatus::Invited,
            device_id: None,
            label: req.label,
            not_before: req.not_before,
            not_after: req.not_after,
            approval: req.approval,
            task_kinds: req.task_kinds,
            invitation_sha256: hex::encode(Sha256::digest(code.as_bytes())),
            invitation_expires_at: now + self.cfg.enrollment_ttl.as_secs() as i64,
            transport_key: None,
            p2: None,
            pin: PinState::default(),
            created_by: if matches!(actor, Actor::Admin) { "admin" } else { "owner" }.into(),
            created_at: now,
            updated_at: now,
            end_reason: None,
            rev: 0,
            pin_reset: None,
        };
        let inserted = self
            .audited(
                key_id,
                "ok",
                crate::audit::delegation_detail(&rec.id),
                |a| self.store.insert_delegation(&rec, a),
                |done| *done,
            )
            .await?;
        if !inserted {
            return Err(KeyError::Internal("delegation id collision".into()));
        }
        self.store.flush().await?;
        Ok(DelegationCreated { delegation: rec, invitation_code: code })
    }

    /// The new device accepts with the invitation code and its transport key `T`.
    pub async fn accept_delegation(
        &self,
        id: &str,
        device_id: &str,
        code: &str,
        transport_key: &sm2_2p::AffinePoint,
    ) -> Result<DelegationRecord, KeyError> {
        let d = self.delegation_rec(id)?;
        if !code_matches(code, &d.invitation_sha256) {
            return Err(KeyError::TokenInvalid("invitation code incorrect"));
        }
        let t_hex = sm2_2p::point_to_hex(transport_key);
        if d.status != DelegationStatus::Invited {
            // The same device repeating an accept whose answer it lost: the same answer.
            if d.device_id.as_deref() == Some(device_id) && d.transport_key.as_deref() == Some(t_hex.as_str()) {
                return Ok(d);
            }
            return Err(KeyError::Conflict("the invitation was already used"));
        }
        if self.now() >= d.invitation_expires_at {
            return Err(KeyError::Conflict("the invitation has expired"));
        }
        let key = self.store.key(&d.key_id)?.ok_or(KeyError::NotFound("key"))?;
        check_usable(&key, self.now())?;
        if key.device_id == device_id {
            return Err(KeyError::Conflict("the key's owner cannot accept its own invitation"));
        }
        if d.kind == DelegationKind::Delegate
            && self.store.delegation_of_device(&d.key_id, device_id)?.is_some_and(|o| !o.status.is_final())
        {
            return Err(KeyError::Conflict("this device already holds a delegation of the key"));
        }
        let mut n = self.next_delegation(&d);
        n.status = DelegationStatus::AwaitingShare;
        n.device_id = Some(device_id.to_owned());
        n.transport_key = Some(t_hex);
        self.commit_delegation(DelegationChange::of(&n)).await?;
        // The owner's phone has the next step to take (reshare and share).
        self.tell(&key.device_id, InboxEvent::DelegationAccepted { delegation_id: n.id.clone() }).await;
        Ok(n)
    }

    /// Tell every device holding `key` (its owner and its active delegates) of `event`,
    /// best effort.
    pub(super) async fn tell_holders(&self, key: &KeyRecord, event: InboxEvent) {
        let mut devices = vec![key.device_id.clone()];
        match self.store.delegations_of_key(&key.id) {
            Ok(ds) => devices
                .extend(ds.into_iter().filter(|d| d.status == DelegationStatus::Active).filter_map(|d| d.device_id)),
            Err(e) => tracing::error!(key_id = %key.id, error = %e, "listing the key's delegates to tell them"),
        }
        devices.dedup();
        if let Err(e) = self.inbox.post_each(&devices, &event).await {
            tracing::error!(key_id = %key.id, error = %e, "inbox item not posted to every holder");
        }
    }

    /// An inbox item, best effort: the step it tells of is done and durable already.
    async fn tell(&self, device_id: &str, event: InboxEvent) {
        if let Err(e) = self.inbox.post(device_id, event).await {
            tracing::error!(device_id, error = %e, "inbox item not posted");
        }
    }

    /// The owner's delegation in a state that lets the owner's phone act on it.
    fn owners_delegation(&self, id: &str, device_id: &str) -> Result<(DelegationRecord, KeyRecord), KeyError> {
        let d = self.delegation_rec(id)?;
        let key = self.key_for(&d.key_id, &Actor::Device(device_id))?;
        check_usable(&key, self.now())?;
        if d.status != DelegationStatus::AwaitingShare {
            return Err(KeyError::Conflict("the delegation is not awaiting the owner's share"));
        }
        Ok((d, key))
    }

    /// Step 2: the owner's phone (PIN proof over `did`) gets `u`; the daemon keeps
    /// `d2' = d2·u⁻¹` for the new device (not usable yet). Repeating it replaces the
    /// pending share, so a lost answer costs nothing.
    pub async fn reshare(&self, id: &str, device_id: &str, proof: PinProof<'_>) -> Result<Zeroizing<String>, KeyError> {
        let (d, key) = self.owners_delegation(id, device_id)?;
        let did = d.id.clone();
        let (u, blob, p2) = self
            .with_pin(&key.id, device_id, None, proof, true, false, move |hsm, _, share| {
                let share = share.ok_or_else(|| KeyError::Internal("share not loaded".into()))?;
                let (u, delegate) = share.reshare();
                let blob = hsm.wrap(&did, SecretKind::DelegateShare, delegate.to_bytes().as_slice())?;
                Ok((Zeroizing::new(sm2_2p::scalar_to_hex(&u)), blob, sm2_2p::point_to_hex(&delegate.p2())))
            })
            .await?;
        let mut n = self.next_delegation(&d);
        n.p2 = Some(p2);
        self.commit_delegation(DelegationChange {
            put_secrets: vec![(SecretKind::DelegateShare, &blob)],
            ..DelegationChange::of(&n)
        })
        .await?;
        Ok(u)
    }

    /// Step 3: the owner's phone sends `d1'` sealed to the new device's transport key (PIN
    /// proof over `did`, `wrapped_share`). The daemon cannot read it; it keeps it, wrapped
    /// once more by the HSM, for the new device only.
    pub async fn share(
        &self,
        id: &str,
        device_id: &str,
        wrapped_share: Vec<u8>,
        proof: PinProof<'_>,
    ) -> Result<(), KeyError> {
        let (d, key) = self.owners_delegation(id, device_id)?;
        if d.p2.is_none() {
            return Err(KeyError::Conflict("ask for the re-share factor first"));
        }
        let did = d.id.clone();
        let blob = self
            .with_pin(&key.id, device_id, None, proof, false, false, move |hsm, _, _| {
                Ok(hsm.wrap(&did, SecretKind::DelegateHandover, &wrapped_share)?)
            })
            .await?;
        let mut n = self.next_delegation(&d);
        n.status = DelegationStatus::AwaitingPin;
        self.commit_delegation(DelegationChange {
            put_secrets: vec![(SecretKind::DelegateHandover, &blob)],
            ..DelegationChange::of(&n)
        })
        .await
    }

    /// What the delegate fetches while `awaiting_pin`.
    pub async fn handover(&self, d: &DelegationRecord) -> Result<Option<Handover>, KeyError> {
        if d.status != DelegationStatus::AwaitingPin {
            return Ok(None);
        }
        let Some(blob) = self.store.delegation_secret(&d.id, SecretKind::DelegateHandover)? else { return Ok(None) };
        let Some(p2) = d.p2.clone() else { return Ok(None) };
        let (hsm, did) = (self.hsm.clone(), d.id.clone());
        let sealed =
            blocking(move || Ok(hex::encode(hsm.unwrap(&did, SecretKind::DelegateHandover, &blob)?.as_slice())))
                .await?;
        Ok(Some(Handover { wrapped_share: sealed, p2 }))
    }

    /// Step 5: the new device, having checked its pair, sends its own PIN verifier. A
    /// delegate's share becomes usable; a transfer's new device becomes the key's owner
    /// and the old owner's share and verifier are erased, in the same durable step.
    pub async fn activate_delegation(
        &self,
        id: &str,
        device_id: &str,
        verifier: Verifier,
        recovery_key: Option<RecoveryKey>,
    ) -> Result<KeyRecord, KeyError> {
        let d = self.delegation_rec(id)?;
        if d.device_id.as_deref() != Some(device_id) {
            return Err(KeyError::DeviceMismatch);
        }
        if d.status == DelegationStatus::Active {
            return self.activation_repeated(&d, device_id, verifier).await;
        }
        if d.status != DelegationStatus::AwaitingPin {
            return Err(KeyError::Conflict("the delegation is not awaiting the delegate's PIN"));
        }
        let key = self.store.key(&d.key_id)?.ok_or(KeyError::NotFound("key"))?;
        check_usable(&key, self.now())?;
        let mut n = self.next_delegation(&d);
        n.status = DelegationStatus::Active;
        let (hsm, did, key_id, kind) = (self.hsm.clone(), d.id.clone(), key.id.clone(), d.kind);
        let pending = self
            .store
            .delegation_secret(&d.id, SecretKind::DelegateShare)?
            .ok_or_else(|| KeyError::Internal(format!("{id}: pending share missing")))?;
        let (first, second, recovery) = blocking(move || match kind {
            DelegationKind::Delegate => {
                let recovery =
                    recovery_key.map(|r| hsm.wrap(&did, SecretKind::DelegateRecoveryKey, r.as_slice())).transpose()?;
                Ok((hsm.wrap(&did, SecretKind::DelegatePinVerifier, verifier.as_slice())?, None, recovery))
            }
            // The share moves to the key: wrapped again under the key's id and kind.
            DelegationKind::Transfer => {
                let share = hsm.unwrap(&did, SecretKind::DelegateShare, &pending)?;
                let share_blob = hsm.wrap(&key_id, SecretKind::Share, &share)?;
                let verifier_blob = hsm.wrap(&key_id, SecretKind::PinVerifier, verifier.as_slice())?;
                let recovery =
                    recovery_key.map(|r| hsm.wrap(&key_id, SecretKind::RecoveryKey, r.as_slice())).transpose()?;
                Ok((share_blob, Some(verifier_blob), recovery))
            }
        })
        .await?;
        let change = match &second {
            None => {
                let mut put_secrets = vec![(SecretKind::DelegatePinVerifier, first.as_slice())];
                put_secrets.extend(recovery.as_deref().map(|r| (SecretKind::DelegateRecoveryKey, r)));
                DelegationChange {
                    put_secrets,
                    erase_secrets: vec![SecretKind::DelegateHandover],
                    ..DelegationChange::of(&n)
                }
            }
            Some(verifier_blob) => DelegationChange {
                erase_secrets: vec![SecretKind::DelegateShare, SecretKind::DelegateHandover],
                transfer: Some(KeyTransfer { share_blob: &first, verifier_blob, recovery_blob: recovery.as_deref() }),
                ..DelegationChange::of(&n)
            },
        };
        self.commit_delegation(change).await?;
        if d.kind == DelegationKind::Transfer {
            tracing::info!(key_id = %key.id, delegation = %d.id, "key transferred to a new device; old share erased");
        }
        self.store.key(&key.id)?.ok_or(KeyError::NotFound("key"))
    }

    /// The delegate repeating its activation with the same verifier (its answer was lost):
    /// the same answer, nothing changed. Any other repeat is `conflict`.
    async fn activation_repeated(
        &self,
        d: &DelegationRecord,
        device_id: &str,
        verifier: Verifier,
    ) -> Result<KeyRecord, KeyError> {
        let refused = || KeyError::Conflict("the delegation is not awaiting the delegate's PIN");
        let Some((key, mut blobs)) = self.store.key_with_secrets(&d.key_id, &[SecretKind::PinVerifier])? else {
            return Err(KeyError::NotFound("key"));
        };
        let (owner, kind, blob) = match d.kind {
            DelegationKind::Delegate => {
                let blob = self.store.delegation_secret(&d.id, SecretKind::DelegatePinVerifier)?;
                (d.id.clone(), SecretKind::DelegatePinVerifier, blob)
            }
            // A transfer made this device the owner.
            DelegationKind::Transfer if key.device_id == device_id => {
                (key.id.clone(), SecretKind::PinVerifier, blobs.pop().flatten())
            }
            DelegationKind::Transfer => return Err(refused()),
        };
        let blob = blob.ok_or_else(refused)?;
        let hsm = self.hsm.clone();
        let same = blocking(move || {
            let stored = hsm.unwrap(&owner, kind, &blob)?;
            Ok(bool::from(subtle::ConstantTimeEq::ct_eq(stored.as_slice(), verifier.as_slice())))
        })
        .await?;
        if same { Ok(key) } else { Err(refused()) }
    }

    /// A delegation as `actor` may see it: the key's owner, the delegate, an operator.
    pub fn delegation_for(&self, id: &str, actor: &Actor<'_>) -> Result<DelegationRecord, KeyError> {
        let d = self.delegation_rec(id)?;
        if let Actor::Device(device) = actor
            && d.device_id.as_deref() != Some(*device)
        {
            self.key_for(&d.key_id, actor)?;
        }
        Ok(d)
    }

    /// A key's delegations, for its owner or an operator.
    pub fn delegations_of(&self, key_id: &str, actor: &Actor<'_>) -> Result<Vec<DelegationRecord>, KeyError> {
        self.key_for(key_id, actor)?;
        let mut all = self.store.delegations_of_key(key_id)?;
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// End a delegation: the owner's phone (PIN proof over `did`) or an operator. The
    /// delegate's server share is erased before this returns.
    pub async fn revoke_delegation(
        &self,
        id: &str,
        actor: &Actor<'_>,
        proof: Option<PinProof<'_>>,
    ) -> Result<DelegationRecord, KeyError> {
        let d = self.delegation_rec(id)?;
        self.key_for(&d.key_id, actor)?;
        if d.status.is_final() {
            return Err(KeyError::Conflict("the delegation has already ended"));
        }
        if d.kind == DelegationKind::Transfer && d.status == DelegationStatus::Active {
            return Err(KeyError::Conflict("a completed transfer cannot be revoked"));
        }
        if let Actor::Device(device) = actor {
            let proof = proof.ok_or_else(|| KeyError::Internal("phone revoke without proof".into()))?;
            self.with_pin(&d.key_id, device, None, proof, false, false, |_, _, _| Ok(())).await?;
        }
        let d = self.delegation_rec(id)?;
        let mut n = self.next_delegation(&d);
        n.status = DelegationStatus::Revoked;
        n.end_reason = Some("revoked".into());
        self.commit_delegation(DelegationChange::of(&n)).await?;
        tracing::info!(delegation = %id, key_id = %d.key_id, "delegation revoked; delegate share destroyed");
        if let Some(device) = &n.device_id {
            self.tell(device, InboxEvent::DelegationRevoked { delegation_id: n.id.clone() }).await;
        }
        Ok(n)
    }

    /// Whose log of `key_id` `device_id` may read: `true` the owner's (all of it), `false`
    /// a delegate's (its own entries: any delegation it held, active or ended); any other
    /// device gets `device_mismatch`.
    pub fn owner_or_delegate(&self, key_id: &str, device_id: &str) -> Result<bool, KeyError> {
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if key.device_id == device_id {
            return Ok(true);
        }
        match self.store.delegation_of_device(key_id, device_id)? {
            Some(_) => Ok(false),
            None => Err(KeyError::DeviceMismatch),
        }
    }

    /// The delegation whose every use needs the owner's approval, if `device_id` holds the
    /// key through one (`None`: the owner, or a delegate free to use it).
    pub fn approval_needed(&self, key_id: &str, device_id: &str) -> Result<Option<DelegationRecord>, KeyError> {
        let (_, holder) = self.holder_of(key_id, device_id, Some(&[APPROVED_USE]))?;
        Ok(match holder {
            Holder::Delegate(d) if d.approval == Approval::EachUse => Some(*d),
            _ => None,
        })
    }

    /// The owner's phone decides an approval: its PIN proof over (`aid`, `decision`).
    pub async fn owner_decides(&self, key_id: &str, device_id: &str, proof: PinProof<'_>) -> Result<(), KeyError> {
        let key = self.store.key(key_id)?.ok_or(KeyError::NotFound("key"))?;
        if key.device_id != device_id {
            return Err(KeyError::DeviceMismatch);
        }
        self.with_pin(key_id, device_id, None, proof, false, false, |_, _, _| Ok(())).await
    }

    /// `GET /v1/devices`: for every key `device_id` owns, the owner's device and every
    /// device holding an active delegation of it.
    pub fn devices(&self, device_id: &str) -> Result<Vec<DeviceUse>, KeyError> {
        let mut out = Vec::new();
        for key in self.store.keys_of_device(device_id)? {
            out.push(DeviceUse {
                device_id: key.device_id.clone(),
                owner: true,
                key_id: key.id.clone(),
                delegation: None,
            });
            for d in self.store.delegations_of_key(&key.id)? {
                if let (DelegationStatus::Active, Some(device)) = (d.status, &d.device_id) {
                    out.push(DeviceUse {
                        device_id: device.clone(),
                        owner: false,
                        key_id: key.id.clone(),
                        delegation: Some(d),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Expire delegations past `not_after`, and invitations not completed in time, erasing
    /// their shares. Returns how many ended.
    pub async fn sweep_delegations(&self) -> Result<usize, KeyError> {
        let now = self.now();
        let mut ended = 0;
        for d in self.store.open_delegations()? {
            let over = d.not_after.is_some_and(|na| now >= na)
                || (d.status != DelegationStatus::Active && now >= d.invitation_expires_at);
            if !over {
                continue;
            }
            let mut n = self.next_delegation(&d);
            n.status = DelegationStatus::Expired;
            n.end_reason = Some("expired".into());
            match self.store.change_delegation(DelegationChange::of(&n))? {
                DelegationOutcome::Done => {
                    ended += 1;
                    if let Some(device) = &n.device_id {
                        self.tell(device, InboxEvent::DelegationRevoked { delegation_id: n.id.clone() }).await;
                    }
                }
                // Moved meanwhile: the next sweep looks again.
                DelegationOutcome::Raced | DelegationOutcome::KeyGone => {}
            }
        }
        if ended > 0 {
            self.store.flush().await?;
            tracing::info!(ended, "delegations expired; their shares destroyed");
        }
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use sm2_2p::{ClientShare, Transcript, TransportKey};

    use super::*;
    use crate::keys::testing::{Keys, Phone};
    use crate::keys::{PinProof, SignMode};

    const HOUR: i64 = 3600;

    fn new(kind: DelegationKind, not_after: Option<i64>, kinds: Option<&[&str]>) -> NewDelegation {
        NewDelegation {
            kind,
            not_before: None,
            not_after,
            approval: Approval::None,
            task_kinds: kinds.map(|k| k.iter().map(|s| s.to_string()).collect()),
            label: Some("clerk".into()),
        }
    }

    /// Owner `owner` delegates (or transfers) its key to `device` through every step; the
    /// new device's share and its PIN verifier are returned.
    async fn delegate(
        k: &Keys,
        owner: &Phone,
        device: &str,
        req: NewDelegation,
    ) -> (DelegationRecord, ClientShare, Zeroizing<[u8; 32]>) {
        let created = k.keys.create_delegation(&owner.key_id, &Actor::Admin, req, None).await.unwrap();
        let did = created.delegation.id.clone();
        let (t, transport) = TransportKey::generate();
        k.keys.accept_delegation(&did, device, &created.invitation_code, &transport).await.unwrap();
        let op = Transcript::Reshare { delegation_id: did.clone() };
        let u = k.keys.reshare(&did, &owner.device, PinProof { proof: &owner.proof(&op), op }).await.unwrap();
        let u = sm2_2p::scalar_from_hex(&u).unwrap();
        let sealed = hex::encode(owner.share.reshare_to(&u, &transport).to_c1c3c2());
        let op = Transcript::Share { delegation_id: did.clone(), wrapped_share: sealed.clone() };
        let proof = owner.proof(&op);
        k.keys.share(&did, &owner.device, hex::decode(&sealed).unwrap(), PinProof { op, proof: &proof }).await.unwrap();
        let d = k.keys.delegation_for(&did, &Actor::Device(device)).unwrap();
        let h = k.keys.handover(&d).await.unwrap().expect("the delegate's handover");
        let key = k.key(&owner.key_id);
        let public = sm2_2p::point_from_hex(&key.public_key).unwrap();
        let p2 = sm2_2p::point_from_hex(&h.p2).unwrap();
        let share = t.open_share(&hex::decode(&h.wrapped_share).unwrap(), &p2, &public).expect("the pair checks");
        let verifier = sm2_2p::pin_verifier(b"654321", &[9u8; 16]);
        let recovery = Some(Box::new(Zeroizing::new(crate::keys::testing::recovery_of(device))));
        k.keys.activate_delegation(&did, device, Box::new(verifier.clone()), recovery).await.unwrap();
        (k.store.delegation(&did).unwrap().unwrap(), share, verifier)
    }

    async fn sign(k: &Keys, key_id: &str, device: &str, share: &ClientShare, v: &[u8; 32]) -> Result<(), KeyError> {
        let key = k.key(key_id);
        let public = sm2_2p::point_from_hex(&key.public_key).unwrap();
        let e = sm2_2p::e_for_message(&public, b"bid");
        let (k1, q1) = ClientShare::sign_start();
        let op = Transcript::Sign { e: hex::encode(e), q1: sm2_2p::point_to_hex(&q1) };
        let proof = sm2_2p::pin_proof(v, key_id, &op);
        let out = k.keys.sign(key_id, device, e, q1, SignMode::Canonical, PinProof { op, proof: &proof }).await?;
        let crate::keys::SignOutput::Canonical(r) = out else { panic!("canonical") };
        let sig = share.sign_finish(&k1, &r.r, &r.s2, &r.s3).unwrap();
        assert!(sm2_2p::verify(&public, &e, &sig), "the signature verifies under the key");
        Ok(())
    }

    #[tokio::test]
    async fn a_delegate_signs_with_its_own_share_pin_and_counter() {
        let k = Keys::new("[keys]\npin_max_attempts = 3");
        let owner = k.active_phone("dev-a", "123456").await;
        let now = crate::clock::Clock::now(&*k.clock);
        let (d, share, v) = delegate(&k, &owner, "dev-b", new(DelegationKind::Delegate, Some(now + HOUR), None)).await;
        assert_eq!(d.status, DelegationStatus::Active);
        sign(&k, &owner.key_id, "dev-b", &share, &v).await.unwrap();
        sign(&k, &owner.key_id, &owner.device, &owner.share, &owner.verifier).await.unwrap();
        // The delegate's wrong PIN moves only its own counter.
        let wrong = sm2_2p::pin_verifier(b"000000", &[9u8; 16]);
        let err = sign(&k, &owner.key_id, "dev-b", &share, &wrong).await.unwrap_err();
        assert!(matches!(err, KeyError::PinIncorrect { remaining_attempts: 2 }), "{err:?}");
        assert_eq!(k.store.delegation(&d.id).unwrap().unwrap().pin.failures, 1);
        assert_eq!(k.key(&owner.key_id).pin.failures, 0);
        // An outsider is a stranger; owner-only steps stay the owner's.
        assert!(matches!(sign(&k, &owner.key_id, "dev-c", &share, &v).await, Err(KeyError::DeviceMismatch)));
        let op = Transcript::Revoke { reason: "cessation".into() };
        let proof = sm2_2p::pin_proof(&v, &owner.key_id, &op);
        let err =
            k.keys.revoke(&owner.key_id, &Actor::Device("dev-b"), "cessation", Some(PinProof { op, proof: &proof }));
        assert!(matches!(err.await, Err(KeyError::DeviceMismatch)));
        // Past not_after: no_permission, then the sweeper ends it and erases the share.
        k.clock.advance(HOUR);
        assert!(matches!(sign(&k, &owner.key_id, "dev-b", &share, &v).await, Err(KeyError::NoPermission(_))));
        assert_eq!(k.keys.sweep_delegations().await.unwrap(), 1);
        let ended = k.store.delegation(&d.id).unwrap().unwrap();
        assert_eq!(ended.status, DelegationStatus::Expired);
        assert!(k.store.delegation_secret(&d.id, SecretKind::DelegateShare).unwrap().is_none());
    }

    #[tokio::test]
    async fn task_kinds_limit_a_delegate_and_revocation_ends_it() {
        let k = Keys::new("");
        let owner = k.active_phone("dev-a", "123456").await;
        let now = crate::clock::Clock::now(&*k.clock);
        let req = new(DelegationKind::Delegate, Some(now + HOUR), Some(&["decrypt"]));
        let (d, share, v) = delegate(&k, &owner, "dev-b", req).await;
        assert!(matches!(sign(&k, &owner.key_id, "dev-b", &share, &v).await, Err(KeyError::NoPermission(_))));
        assert!(k.keys.usable_key_for(&owner.key_id, "dev-b", &["decrypt"]).is_ok());
        assert!(matches!(k.keys.usable_key_for(&owner.key_id, "dev-b", &["login"]), Err(KeyError::NoPermission(_))));
        let op = Transcript::Undelegate { delegation_id: d.id.clone() };
        let proof = owner.proof(&op);
        let revoked = k
            .keys
            .revoke_delegation(&d.id, &Actor::Device(&owner.device), Some(PinProof { op, proof: &proof }))
            .await
            .unwrap();
        assert_eq!(revoked.status, DelegationStatus::Revoked);
        assert!(k.store.delegation_secret(&d.id, SecretKind::DelegateShare).unwrap().is_none());
        assert!(matches!(k.keys.usable_key_for(&owner.key_id, "dev-b", &["decrypt"]), Err(KeyError::NoPermission(_))));
        assert!(matches!(k.keys.revoke_delegation(&d.id, &Actor::Admin, None).await, Err(KeyError::Conflict(_))));
        let told = k.keys.inbox().read("dev-b", 0, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(
            told.items.iter().map(|i| &i.event).collect::<Vec<_>>(),
            vec![&InboxEvent::DelegationRevoked { delegation_id: d.id.clone() }],
            "the delegate's phone hears of the end"
        );
        assert!(k.keys.devices(&owner.device).unwrap().iter().all(|r| r.owner), "only the owner's device is left");
    }

    /// The owner's phone hears of an accepted invitation (its next step) and then lists
    /// the delegate among the devices holding a share; the delegate's own list is empty.
    #[tokio::test]
    async fn the_owner_is_told_of_an_accepted_invitation_and_lists_its_delegates() {
        let k = Keys::new("");
        let owner = k.active_phone("dev-a", "123456").await;
        let now = crate::clock::Clock::now(&*k.clock);
        let (d, _, _) = delegate(&k, &owner, "dev-b", new(DelegationKind::Delegate, Some(now + HOUR), None)).await;
        let told = k.keys.inbox().read(&owner.device, 0, std::time::Duration::ZERO).await.unwrap();
        assert_eq!(
            told.items.iter().map(|i| &i.event).collect::<Vec<_>>(),
            vec![&InboxEvent::DelegationAccepted { delegation_id: d.id.clone() }]
        );
        let rows = k.keys.devices(&owner.device).unwrap();
        let seen: Vec<(&str, bool, Option<&str>)> = rows
            .iter()
            .map(|r| (r.device_id.as_str(), r.owner, r.delegation.as_ref().map(|d| d.id.as_str())))
            .collect();
        assert_eq!(seen, vec![(owner.device.as_str(), true, None), ("dev-b", false, Some(d.id.as_str()))]);
        assert!(k.keys.devices("dev-b").unwrap().is_empty(), "a delegate owns nothing");
    }

    #[tokio::test]
    async fn invitations_are_used_once_and_a_transfer_moves_the_key() {
        let k = Keys::new("");
        let owner = k.active_phone("dev-a", "123456").await;
        let created = k
            .keys
            .create_delegation(&owner.key_id, &Actor::Admin, new(DelegationKind::Transfer, None, None), None)
            .await
            .unwrap();
        let (_, t) = TransportKey::generate();
        let did = &created.delegation.id;
        let err = k.keys.accept_delegation(did, "dev-b", "WRONGCODE", &t).await.unwrap_err();
        assert!(matches!(err, KeyError::TokenInvalid(_)), "{err:?}");
        assert_eq!(k.store.delegation(did).unwrap().unwrap().status, DelegationStatus::Invited, "nothing changed");
        k.keys.accept_delegation(did, "dev-b", &created.invitation_code, &t).await.unwrap();
        let (_, other) = TransportKey::generate();
        let err = k.keys.accept_delegation(did, "dev-c", &created.invitation_code, &other).await.unwrap_err();
        assert!(matches!(err, KeyError::Conflict(_)), "a used invitation: {err:?}");
        // Revoke that one; a fresh transfer goes through.
        k.keys.revoke_delegation(did, &Actor::Admin, None).await.unwrap();
        let (_, share, v) = delegate(&k, &owner, "dev-b", new(DelegationKind::Transfer, None, None)).await;
        let key = k.key(&owner.key_id);
        assert_eq!(key.device_id, "dev-b");
        sign(&k, &owner.key_id, "dev-b", &share, &v).await.unwrap();
        let err = sign(&k, &owner.key_id, &owner.device, &owner.share, &owner.verifier).await.unwrap_err();
        assert!(matches!(err, KeyError::DeviceMismatch), "{err:?}");
        // The new owner's recovery key came with it; the old owner's is gone.
        let recovery = k.store.key_secret(&owner.key_id, SecretKind::RecoveryKey).unwrap().expect("recovery key");
        let plain = crate::hsm::Wrapper::unwrap(&*k.hsm, &owner.key_id, SecretKind::RecoveryKey, &recovery).unwrap();
        assert_eq!(plain.as_slice(), crate::keys::testing::recovery_of("dev-b"));
    }

    #[tokio::test]
    async fn a_delegate_resets_its_own_pin_and_keeps_its_share() {
        use crate::keys::pin_reset::PinResetRequest;
        let k = Keys::new("[keys]\npin_max_attempts = 2");
        let owner = k.active_phone("dev-a", "123456").await;
        let now = crate::clock::Clock::now(&*k.clock);
        let (d, share, v) = delegate(&k, &owner, "dev-b", new(DelegationKind::Delegate, Some(now + HOUR), None)).await;
        let wrong = sm2_2p::pin_verifier(b"000000", &[9u8; 16]);
        for _ in 0..2 {
            sign(&k, &owner.key_id, "dev-b", &share, &wrong).await.unwrap_err();
        }
        assert!(k.store.delegation(&d.id).unwrap().unwrap().pin.locked);
        // The owner's reset is not the delegate's: its own code, on its own share.
        let opened = k.keys.open_pin_reset(&owner.key_id, Some(&d.id)).await.unwrap();
        let new_v = sm2_2p::pin_verifier(b"111111", &[3u8; 16]);
        let req = |code: &str| PinResetRequest {
            reset_code: Zeroizing::new(code.to_owned()),
            new_verifier: Box::new(new_v.clone()),
            new_recovery_key: Box::new(Zeroizing::new([0x77; 32])),
        };
        let err = k.keys.reset_pin(&owner.key_id, &owner.device, req(&opened.reset_code)).await.unwrap_err();
        assert!(matches!(err, KeyError::Conflict(_)), "the owner has no open reset: {err:?}");
        let old = k.keys.reset_pin(&owner.key_id, "dev-b", req(&opened.reset_code)).await.unwrap();
        assert_eq!(old.as_slice(), crate::keys::testing::recovery_of("dev-b"), "the delegate's old recovery key");
        let after = k.store.delegation(&d.id).unwrap().unwrap();
        assert_eq!((after.pin, after.pin_reset), (PinState::default(), None));
        sign(&k, &owner.key_id, "dev-b", &share, &new_v).await.unwrap();
        assert!(sign(&k, &owner.key_id, "dev-b", &share, &v).await.is_err(), "the old PIN no longer works");
        let blob = k.store.delegation_secret(&d.id, SecretKind::DelegateRecoveryKey).unwrap().unwrap();
        assert_eq!(
            crate::hsm::Wrapper::unwrap(&*k.hsm, &d.id, SecretKind::DelegateRecoveryKey, &blob).unwrap().as_slice(),
            [0x77; 32]
        );
        // The owner's key and PIN are untouched.
        sign(&k, &owner.key_id, &owner.device, &owner.share, &owner.verifier).await.unwrap();
    }
}
