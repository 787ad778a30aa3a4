//! Delegations from the phone (API.md "Organisations: delegations", PROTOCOL.md
//! "Re-sharing"): the owner's phone invites another device and re-shares its half to it;
//! the new phone — an employee's, or the owner's next phone for a transfer — accepts with a
//! transport key, checks the pair it is sent against the key before trusting it, and
//! activates with its own PIN. From then on it is a [`Phone`] like the owner's, naming the
//! same key id.
//!
//! Between accept and activate the new phone keeps its transport secret `t` in a
//! [`PendingDelegation`] file (mode 0600): the owner's share may arrive much later, and
//! without `t` it can never be opened.

use hyper::Method;
use mcs_api::{
    AcceptDelegationRequest, ActivateDelegationRequest, DelegatedKey, Delegation, DelegationApproval,
    DelegationCreated, DelegationKind, DelegationList, DelegationProof, DelegationRequest, DelegationStatus, Pin,
    Reshare, ShareRequest,
};
use serde::{Deserialize, Serialize};
use sm2_2p::{AffinePoint, ClientShare, Scalar, Transcript, TransportKey};
use zeroize::Zeroizing;

use crate::phone::{Phone, PhoneState, STATE_VERSION, random_salt};
use crate::transport::{Connection, Error, Result, parse};

fn kind_str(kind: DelegationKind) -> &'static str {
    match kind {
        DelegationKind::Delegate => "delegate",
        DelegationKind::Transfer => "transfer",
    }
}

fn approval_str(approval: DelegationApproval) -> &'static str {
    match approval {
        DelegationApproval::None => "none",
        DelegationApproval::EachUse => "each_use",
    }
}

/// What a new delegation grants (API.md: `not_after` is required for `delegate`; a
/// `transfer` takes no `approval`, `task_kinds` or `not_before`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationOptions {
    pub kind: DelegationKind,
    /// RFC 3339.
    pub not_before: Option<String>,
    /// RFC 3339.
    pub not_after: Option<String>,
    pub approval: Option<DelegationApproval>,
    /// `login`, `sign`, `pdf_seal`, `decrypt`, `encrypt`; `None`: all.
    pub task_kinds: Option<Vec<String>>,
    pub label: Option<String>,
}

impl DelegationOptions {
    /// An employee's use of the key until `not_after` (RFC 3339), every kind, no approval.
    pub fn delegate(not_after: impl Into<String>) -> DelegationOptions {
        DelegationOptions {
            kind: DelegationKind::Delegate,
            not_before: None,
            not_after: Some(not_after.into()),
            approval: None,
            task_kinds: None,
            label: None,
        }
    }

    /// The key moves to a new phone.
    pub fn transfer() -> DelegationOptions {
        DelegationOptions {
            kind: DelegationKind::Transfer,
            not_before: None,
            not_after: None,
            approval: None,
            task_kinds: None,
            label: None,
        }
    }

    /// The request body; `pin_proof` over `kind`, `not_after`, `approval` exactly as sent
    /// (absent ones as empty strings), made by `owner` (an operator sends none).
    pub fn request(&self, owner: Option<&Phone>) -> DelegationRequest {
        let approval = self.approval.map(|a| approval_str(a).to_owned());
        let pin_proof = owner.map(|p| {
            p.proof(&Transcript::Delegate {
                kind: kind_str(self.kind).to_owned(),
                not_after: self.not_after.clone().unwrap_or_default(),
                approval: approval.clone().unwrap_or_default(),
            })
        });
        DelegationRequest {
            kind: kind_str(self.kind).to_owned(),
            not_before: self.not_before.clone(),
            not_after: self.not_after.clone(),
            approval,
            task_kinds: self.task_kinds.clone(),
            label: self.label.clone(),
            pin_proof,
        }
    }
}

/// `GET /v1/delegations/{did}` as the caller may see it (owner, that delegate, admin).
pub async fn delegation(conn: &mut Connection, delegation_id: &str) -> Result<Delegation> {
    parse(&conn.json(Method::GET, &format!("/v1/delegations/{delegation_id}"), None).await?)
}

fn point(s: &str, field: &str) -> Result<AffinePoint> {
    sm2_2p::point_from_hex(s).map_err(|e| Error::Protocol(format!("`{field}`: {e}")))
}

/// The owner's side.
impl Phone {
    /// `POST /v1/keys/{id}/delegations` with this phone's PIN proof: the invitation (its
    /// code is shown once, to be handed to the new device out of band).
    pub async fn create_delegation(
        &self,
        conn: &mut Connection,
        opts: &DelegationOptions,
    ) -> Result<DelegationCreated> {
        let body = opts.request(Some(self));
        parse(&conn.send(Method::POST, &format!("/v1/keys/{}/delegations", self.key_id()), &body).await?)
    }

    /// `GET /v1/keys/{id}/delegations`.
    pub async fn delegations(&self, conn: &mut Connection) -> Result<DelegationList> {
        parse(&conn.json(Method::GET, &format!("/v1/keys/{}/delegations", self.key_id()), None).await?)
    }

    /// Step 2: the re-share factor `u` (the daemon keeps `d2·u⁻¹` for the new device).
    pub async fn reshare(&self, conn: &mut Connection, delegation_id: &str) -> Result<Zeroizing<Scalar>> {
        let pin_proof = Some(self.proof(&Transcript::Reshare { delegation_id: delegation_id.to_owned() }));
        let answer = conn
            .send(Method::POST, &format!("/v1/delegations/{delegation_id}/reshare"), &DelegationProof { pin_proof })
            .await?;
        let u: Reshare = parse(&answer)?;
        sm2_2p::scalar_from_hex(&u.u).map(Zeroizing::new).map_err(|e| Error::Protocol(format!("answer `u`: {e}")))
    }

    /// `d1' = d1·u` sealed to the new device's transport key `T`: `wrapped_share`, hex.
    pub fn seal_share(&self, u: &Scalar, transport_key: &AffinePoint) -> String {
        hex::encode(self.share().reshare_to(u, transport_key).to_c1c3c2())
    }

    /// Step 3: send the sealed `d1'` (PIN proof over the delegation id and the ciphertext).
    pub async fn send_share(&self, conn: &mut Connection, delegation_id: &str, wrapped_share: &str) -> Result<()> {
        let pin_proof = self.proof(&Transcript::Share {
            delegation_id: delegation_id.to_owned(),
            wrapped_share: wrapped_share.to_owned(),
        });
        let body = ShareRequest { wrapped_share: wrapped_share.to_owned(), pin_proof };
        conn.send(Method::POST, &format!("/v1/delegations/{delegation_id}/share"), &body).await?;
        Ok(())
    }

    /// Steps 2 and 3 once the new device has accepted: read its transport key from the
    /// delegation (which must be of this phone's key), get `u`, send `d1'` sealed to it.
    pub async fn share_with(&self, conn: &mut Connection, delegation_id: &str) -> Result<()> {
        let view = delegation(conn, delegation_id).await?;
        if view.key_id != self.key_id() {
            return Err(Error::Protocol(format!(
                "{delegation_id} is a delegation of {}, not of this key",
                view.key_id
            )));
        }
        if view.status != DelegationStatus::AwaitingShare {
            return Err(Error::Protocol(format!("{delegation_id} is not awaiting a share ({:?})", view.status)));
        }
        let transport = point(
            view.transport_key.as_deref().ok_or_else(|| Error::Protocol("no transport_key in the view".into()))?,
            "transport_key",
        )?;
        let u = self.reshare(conn, delegation_id).await?;
        let sealed = self.seal_share(&u, &transport);
        self.send_share(conn, delegation_id, &sealed).await
    }

    /// `POST /v1/delegations/{did}/revoke` with this phone's PIN proof; the delegate's server
    /// share is erased before the answer.
    pub async fn revoke_delegation(&self, conn: &mut Connection, delegation_id: &str) -> Result<Delegation> {
        let pin_proof = Some(self.proof(&Transcript::Undelegate { delegation_id: delegation_id.to_owned() }));
        let path = format!("/v1/delegations/{delegation_id}/revoke");
        parse(&conn.send(Method::POST, &path, &DelegationProof { pin_proof }).await?)
    }

    /// The owner's decision on a delegate's use (`approve` or deny), with its PIN proof.
    pub async fn decide_approval(
        &self,
        conn: &mut Connection,
        approval_id: &str,
        approve: bool,
    ) -> Result<mcs_api::ApprovalDecided> {
        let decision = if approve { "approve" } else { "deny" };
        let op = Transcript::Approve { approval_id: approval_id.to_owned(), decision: decision.to_owned() };
        let body = mcs_api::ApprovalDecisionRequest { decision: decision.to_owned(), pin_proof: self.proof(&op) };
        parse(&conn.send(Method::POST, &format!("/v1/approvals/{approval_id}"), &body).await?)
    }
}

/// The new device between accept and activate: what it must keep, saved as a state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingDelegation {
    pub version: u32,
    pub server: String,
    pub delegation_id: String,
    /// `T = t·G` as sent at accept.
    pub transport_key: String,
    /// `t` (hex): opens the owner's sealed share, and nothing else.
    transport_secret: Zeroizing<String>,
}

impl PendingDelegation {
    /// `POST /v1/delegations/{did}/accept` with a fresh transport key.
    pub async fn accept(
        conn: &mut Connection,
        server: &str,
        delegation_id: &str,
        invitation_code: &str,
    ) -> Result<(PendingDelegation, Delegation)> {
        let (t, transport) = TransportKey::generate();
        let pending = PendingDelegation {
            version: STATE_VERSION,
            server: server.to_owned(),
            delegation_id: delegation_id.to_owned(),
            transport_key: sm2_2p::point_to_hex(&transport),
            transport_secret: Zeroizing::new(hex::encode(t.to_bytes().as_slice())),
        };
        let body = AcceptDelegationRequest {
            invitation_code: Zeroizing::new(invitation_code.to_owned()),
            transport_key: pending.transport_key.clone(),
        };
        let view: Delegation =
            parse(&conn.send(Method::POST, &format!("/v1/delegations/{delegation_id}/accept"), &body).await?)?;
        if view.delegation_id != delegation_id || view.transport_key.as_deref() != Some(&pending.transport_key) {
            return Err(Error::Protocol("the accept answer is not for this delegation and transport key".into()));
        }
        Ok((pending, view))
    }

    pub fn load(path: &std::path::Path) -> Result<PendingDelegation> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let state: PendingDelegation = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not a pending delegation: {e}", path.display())))?;
        if state.version != STATE_VERSION {
            return Err(Error::Config(format!("{}: unknown state version {}", path.display(), state.version)));
        }
        Ok(state)
    }

    /// Write with mode 0600 (it holds `t`).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        crate::phone::write_private(path, text.as_bytes())
    }

    /// The delegation as this device sees it (with `wrapped_share` and `p2` once the owner
    /// has sent them).
    pub async fn fetch(&self, conn: &mut Connection) -> Result<Delegation> {
        delegation(conn, &self.delegation_id).await
    }

    /// Open the owner's sealed `d1'` and check that, with the server's `p2`, it forms the
    /// key's joint public key: anything else is refused ([`Error::ShareRefused`]), never used.
    pub fn open(&self, view: &Delegation) -> Result<ClientShare> {
        let refused = |why: String| Error::ShareRefused(format!("{}: {why}", self.delegation_id));
        if view.delegation_id != self.delegation_id {
            return Err(refused(format!("the view is of {}", view.delegation_id)));
        }
        let (Some(wrapped), Some(p2)) = (&view.wrapped_share, &view.p2) else {
            return Err(refused(format!("no share to open (status {:?})", view.status)));
        };
        let sealed = hex::decode(wrapped).map_err(|e| refused(format!("wrapped_share: {e}")))?;
        let p2 = sm2_2p::point_from_hex(p2).map_err(|e| refused(format!("p2: {e}")))?;
        let public = sm2_2p::point_from_hex(&view.public_key).map_err(|e| refused(format!("public_key: {e}")))?;
        let t: [u8; 32] = hex::decode(self.transport_secret.as_str())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Config("pending delegation: bad transport secret".into()))?;
        let t = TransportKey::from_bytes(&Zeroizing::new(t)).map_err(|e| Error::Config(format!("transport: {e}")))?;
        t.open_share(&sealed, &p2, &public).map_err(|e| match e {
            sm2_2p::Error::ShareMismatch => refused("the share does not form the key's joint public key".into()),
            other => refused(format!("the sealed share does not open: {other}")),
        })
    }

    /// Fetch the sealed share, check it, and activate it with this device's own PIN. The
    /// returned phone names the organisation's key (or, after a transfer, is its owner).
    pub async fn activate(&self, conn: &mut Connection, pin: &str) -> Result<Phone> {
        let view = self.fetch(conn).await?;
        let share = self.open(&view)?;
        let public = point(&view.public_key, "public_key")?;
        let salt = random_salt()?;
        let verifier = sm2_2p::pin_verifier(pin.as_bytes(), &salt);
        let recovery = sm2_2p::phone::new_recovery_key();
        let body = ActivateDelegationRequest {
            pin: Pin { salt: hex::encode(salt), verifier: Zeroizing::new(hex::encode(verifier.as_slice())) },
            recovery_key: Some(Zeroizing::new(hex::encode(recovery.as_slice()))),
        };
        let path = format!("/v1/delegations/{}/activate", self.delegation_id);
        let key: DelegatedKey = parse(&conn.send(Method::POST, &path, &body).await?)?;
        if key.key_id != view.key_id || point(&key.public_key, "public_key")? != public {
            return Err(Error::Protocol("the activated key is not the delegation's key".into()));
        }
        let d1_recovery = Some(sm2_2p::phone::seal_recovery(&recovery, &key.key_id, share.scalar()));
        let state = PhoneState {
            version: STATE_VERSION,
            server: self.server.clone(),
            key_id: key.key_id,
            public_key: sm2_2p::point_to_hex(&public),
            d1_masked: sm2_2p::scalar_to_hex(&sm2_2p::phone::mask_d1(share.scalar(), &verifier)),
            pin_salt: hex::encode(salt),
            d1_recovery,
            fixed_k3: false,
            delegation_id: (view.kind == DelegationKind::Delegate).then(|| self.delegation_id.clone()),
        };
        Ok(Phone::from_parts(state, verifier, share, public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(pending: &PendingDelegation, wrapped: String, p2: &AffinePoint, public: &AffinePoint) -> Delegation {
        Delegation {
            delegation_id: pending.delegation_id.clone(),
            key_id: "k_1".into(),
            kind: DelegationKind::Delegate,
            status: DelegationStatus::AwaitingPin,
            device_id: None,
            label: None,
            not_before: None,
            not_after: None,
            approval: DelegationApproval::None,
            task_kinds: None,
            pin: mcs_api::PinStatus { remaining_attempts: 5, locked: false },
            created_at: "2026-01-01T00:00:00Z".into(),
            end_reason: None,
            public_key: sm2_2p::point_to_hex(public),
            transport_key: None,
            wrapped_share: Some(wrapped),
            p2: Some(sm2_2p::point_to_hex(p2)),
        }
    }

    #[test]
    fn the_new_phone_opens_only_a_share_that_forms_the_key() {
        let (owner, p1) = sm2_2p::client_keygen();
        let (server, public) = sm2_2p::server_keygen(&p1);
        let (u, delegate) = server.reshare();
        let (t, transport) = TransportKey::generate();
        let pending = PendingDelegation {
            version: STATE_VERSION,
            server: "test".into(),
            delegation_id: "d_1".into(),
            transport_key: sm2_2p::point_to_hex(&transport),
            transport_secret: Zeroizing::new(hex::encode(t.to_bytes().as_slice())),
        };
        let sealed = hex::encode(owner.reshare_to(&u, &transport).to_c1c3c2());
        let share = pending.open(&view(&pending, sealed.clone(), &delegate.p2(), &public)).unwrap();
        assert!(sm2_2p::pair_forms(&share, &delegate.p2(), &public));

        let mut corrupted = hex::decode(&sealed).unwrap();
        corrupted[100] ^= 1;
        let err = pending.open(&view(&pending, hex::encode(corrupted), &delegate.p2(), &public)).unwrap_err();
        assert!(matches!(err, Error::ShareRefused(_)), "{err}");
        // The owner's own p2 with the delegate's share: not a pair of the key.
        let err = pending.open(&view(&pending, sealed.clone(), &server.p2(), &public)).unwrap_err();
        assert!(matches!(err, Error::ShareRefused(ref m) if m.contains("joint public key")), "{err}");
        let err = pending.open(&view(&pending, "zz".into(), &delegate.p2(), &public)).unwrap_err();
        assert!(matches!(err, Error::ShareRefused(_)), "{err}");
    }

    #[test]
    fn a_request_carries_only_what_its_kind_takes() {
        let opts =
            DelegationOptions { label: Some("clerk".into()), ..DelegationOptions::delegate("2030-01-01T00:00:00Z") };
        let req = opts.request(None);
        assert_eq!((req.kind.as_str(), req.approval, req.pin_proof), ("delegate", None, None));
        let req = DelegationOptions::transfer().request(None);
        assert_eq!((req.kind.as_str(), req.not_after), ("transfer", None));
    }
}
