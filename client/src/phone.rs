//! Playing the phone app: activation, co-signing, co-decryption, PIN change.
//!
//! The phone keeps `d1` masked by a PIN-derived factor *without* an integrity tag
//! (PROTOCOL.md guidance): unlocking with a wrong PIN silently yields a wrong `d1` and a
//! wrong PIN proof, so a stolen phone cannot test guesses offline — every guess has to go
//! through the daemon's durable counter.

use hyper::Method;
use mcs_api::{
    ActivateRequest, Activation, BatchCosignAnswer, BatchCosignItem, BatchCosignRequest, BatchCosignResult,
    ChangePinRequest, ClaimAnswer, ClaimRequest, CompleteRequest, CosignRequest, DecryptRequest, DecryptShare, Key,
    Pin, RejectRequest, RevokeRequest, SignAnswer, SignRequest, SignShares, SignatureScalars, TaskKind, TaskView,
    TaskViewData,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sm2_2p::{AffinePoint, Ciphertext, ClientShare, Scalar, Signature, Transcript};
use zeroize::Zeroizing;

use crate::transport::{Connection, Error, Result, parse};

pub(crate) const STATE_VERSION: u32 = 1;

/// What the phone stores. Nothing in it reveals `d1` or lets a PIN guess be checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhoneState {
    pub version: u32,
    pub server: String,
    pub key_id: String,
    /// Joint public key, SEC1 uncompressed hex.
    pub public_key: String,
    /// `d1 · m` where `m` is derived from the PIN verifier.
    pub d1_masked: String,
    /// Salt of the PIN verifier (hex, 16 bytes).
    pub pin_salt: String,
    /// `d1` sealed under the recovery key the daemon keeps ([`crate::recovery`]); absent
    /// for a share activated without one (a forgotten PIN then costs the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d1_recovery: Option<String>,
    /// Co-sign every task in `fixed_k3` mode, as a Tongsuo `sm2_threshold` phone does
    /// (`docs/tongsuo.md`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixed_k3: bool,
    /// Set on an employee's phone: the delegation its share belongs to (the key is the
    /// organisation's, used under that delegation's kinds and window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation_id: Option<String>,
}

impl PhoneState {
    pub fn load(path: &std::path::Path) -> Result<PhoneState> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let state: PhoneState =
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if state.version != STATE_VERSION {
            return Err(Error::Config(format!("{}: unknown state version {}", path.display(), state.version)));
        }
        Ok(state)
    }

    /// Write with mode 0600.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))?;
        write_private(path, text.as_bytes())
    }
}

/// Replace a state file, readable by its owner only.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    f.write_all(bytes).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// How the server half signs (PROTOCOL.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    Canonical,
    FixedK3,
}

/// A phone unlocked with a PIN: the verifier and the unmasked share, in zeroizing memory.
pub struct Phone {
    pub state: PhoneState,
    verifier: Zeroizing<[u8; 32]>,
    share: ClientShare,
    public: AffinePoint,
}

pub(crate) fn random_salt() -> Result<[u8; 16]> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Config(format!("OS RNG: {e}")))?;
    Ok(salt)
}

fn answer_scalar(s: &str, field: &str) -> Result<Scalar> {
    sm2_2p::scalar_from_hex(s).map_err(|e| Error::Protocol(format!("answer `{field}`: {e}")))
}

fn answer_point(s: &str, field: &str) -> Result<AffinePoint> {
    sm2_2p::point_from_hex(s).map_err(|e| Error::Protocol(format!("answer `{field}`: {e}")))
}

fn b64(s: &str, field: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| Error::Protocol(format!("`{field}`: {e}")))
}

impl Phone {
    /// Activate an enrollment: make `d1`, send `P1` and the PIN verifier, keep the state.
    pub async fn activate(
        conn: &mut Connection,
        server: &str,
        enrollment_id: &str,
        code: &str,
        pin: &str,
    ) -> Result<Phone> {
        let (phone, csr) = Phone::prepare_activation(server, enrollment_id, code, pin)?.send(conn).await?;
        if let Some(code) = csr {
            phone.install_certificate(conn, &code).await?;
        }
        Ok(phone)
    }

    /// Make `d1` and the activation request, without sending it: a phone whose answer was
    /// lost sends the same request again ([`PreparedActivation::send`]) and gets the same key.
    pub fn prepare_activation(server: &str, enrollment_id: &str, code: &str, pin: &str) -> Result<PreparedActivation> {
        let (share, p1) = sm2_2p::client_keygen();
        let salt = random_salt()?;
        let verifier = sm2_2p::pin_verifier(pin.as_bytes(), &salt);
        let recovery = sm2_2p::phone::new_recovery_key();
        let body = ActivateRequest {
            activation_code: Zeroizing::new(code.to_owned()),
            p1: sm2_2p::point_to_hex(&p1),
            pin: Pin { salt: hex::encode(salt), verifier: Zeroizing::new(hex::encode(verifier.as_slice())) },
            recovery_key: Some(Zeroizing::new(hex::encode(recovery.as_slice()))),
        };
        Ok(PreparedActivation {
            server: server.to_owned(),
            enrollment_id: enrollment_id.to_owned(),
            share,
            salt,
            verifier,
            recovery,
            keep_recovery: true,
            fixed_k3: false,
            body,
        })
    }

    /// Co-sign this key's certificate request (proof of possession), after checking that
    /// the request names our own joint key and that `e` is its digest.
    pub async fn install_certificate(&self, conn: &mut Connection, code: &ScanCode) -> Result<Value> {
        let view: TaskView = parse(&fetch_task(conn, code).await?)?;
        let info = match (view.kind, &view.data) {
            (TaskKind::Csr, Some(TaskViewData::Csr(d))) => b64(&d.request_info, "data.request_info")?,
            _ => return Err(Error::Protocol("the activation task is not a certificate request".into())),
        };
        let spki = sm2_2p::spki_der(&self.public);
        if !info.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(Error::Protocol("the certificate request is not for this phone's key".into()));
        }
        let claimed: ClaimAnswer = parse(&self.claim(conn, code).await?)?;
        let e = sm2_2p::e_for_message(&self.public, &info);
        if claimed.e() != Some(hex::encode(e).as_str()) {
            return Err(Error::Protocol("the server's digest is not the digest of the certificate request".into()));
        }
        self.cosign_and_complete(conn, code, &e).await?;
        conn.json(Method::GET, &format!("/v1/keys/{}", self.state.key_id), None).await
    }

    /// Unlock a stored state with a PIN. Cannot fail for a wrong PIN — by design.
    pub fn unlock(state: PhoneState, pin: &str) -> Result<Phone> {
        let salt: [u8; 16] = hex::decode(&state.pin_salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| Error::Config("state: bad pin_salt".into()))?;
        let public = sm2_2p::point_from_hex(&state.public_key).map_err(|e| Error::Config(format!("state: {e}")))?;
        let masked = sm2_2p::scalar_from_hex(&state.d1_masked).map_err(|e| Error::Config(format!("state: {e}")))?;
        let verifier = sm2_2p::pin_verifier(pin.as_bytes(), &salt);
        let share = ClientShare::from_scalar(sm2_2p::phone::unmask_d1(&masked, &verifier))
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Phone { state, verifier, share, public })
    }

    /// A phone whose share came from elsewhere than its own activation (a delegation's
    /// re-share): the state already masks `share` under `verifier`.
    pub(crate) fn from_parts(
        state: PhoneState,
        verifier: Zeroizing<[u8; 32]>,
        share: ClientShare,
        public: AffinePoint,
    ) -> Phone {
        Phone { state, verifier, share, public }
    }

    pub fn key_id(&self) -> &str {
        &self.state.key_id
    }

    /// The unmasked client share (tests check key consistency with it).
    pub fn share(&self) -> &ClientShare {
        &self.share
    }

    /// The PIN verifier this phone derived (tests search storage for it).
    pub fn verifier(&self) -> &[u8; 32] {
        &self.verifier
    }

    pub fn public_key(&self) -> &AffinePoint {
        &self.public
    }

    /// The PIN proof for a transcript (tests use it to build raw requests).
    pub fn proof(&self, t: &Transcript) -> String {
        sm2_2p::pin_proof(&self.verifier, &self.state.key_id, t)
    }

    /// Sign a message (`e` computed over the joint key with the default ID).
    pub async fn sign_message(&self, conn: &mut Connection, msg: &[u8], mode: SignMode) -> Result<Signature> {
        self.sign_hash(conn, &sm2_2p::e_for_message(&self.public, msg), mode).await
    }

    /// Sign a digest `e`. The result is verified before it is returned.
    pub async fn sign_hash(&self, conn: &mut Connection, e: &[u8; 32], mode: SignMode) -> Result<Signature> {
        let (k1, q1) = ClientShare::sign_start();
        let (e_hex, q1_hex) = (hex::encode(e), sm2_2p::point_to_hex(&q1));
        let pin_proof = self.proof(&Transcript::Sign { e: e_hex.clone(), q1: q1_hex.clone() });
        let mode_field = (mode == SignMode::FixedK3).then(|| mcs_api::SignMode::FixedK3.as_str().to_owned());
        let body = SignRequest { e: e_hex, q1: q1_hex, pin_proof, mode: mode_field };
        let answer = conn.send(Method::POST, &format!("/v1/keys/{}/sign", self.state.key_id), &body).await?;
        let sig = match (mode, parse::<SignAnswer>(&answer)?) {
            (SignMode::Canonical, SignAnswer::Canonical(a)) => self.share.sign_finish(
                &k1,
                &answer_scalar(&a.r, "r")?,
                &answer_scalar(&a.s2, "s2")?,
                &answer_scalar(&a.s3, "s3")?,
            ),
            (SignMode::FixedK3, SignAnswer::FixedK3(a)) => {
                self.share.sign_finish_fixed_k3(&k1, &answer_scalar(&a.r, "r")?, &answer_scalar(&a.s3, "s3")?)
            }
            _ => return Err(Error::Protocol("the answer is not of the mode asked for".into())),
        }
        .map_err(|e| Error::Protocol(format!("finishing the signature: {e}")))?;
        if !sm2_2p::verify(&self.public, e, &sig) {
            return Err(Error::Protocol(
                "the joint signature does not verify (wrong PIN or wrong server answer)".into(),
            ));
        }
        Ok(sig)
    }

    /// Decrypt an SM2 ciphertext (C1‖C3‖C2 or DER) with the daemon, blinded.
    pub async fn decrypt(&self, conn: &mut Connection, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let ct = Ciphertext::parse(ciphertext).map_err(|e| Error::Config(format!("ciphertext: {e}")))?;
        let (w, t1) = self.share.decrypt_blind(&ct.c1);
        let t1_hex = sm2_2p::point_to_hex(&t1);
        let body = DecryptRequest { pin_proof: self.proof(&Transcript::Decrypt { t1: t1_hex.clone() }), t1: t1_hex };
        let answer = conn.send(Method::POST, &format!("/v1/keys/{}/decrypt", self.state.key_id), &body).await?;
        let t2 = answer_point(&parse::<DecryptShare>(&answer)?.t2, "t2")?;
        self.share
            .decrypt_finish(&w, &t2, &ct)
            .map_err(|e| Error::Protocol(format!("decryption: {e} (wrong PIN or not encrypted to this key)")))
    }

    /// Change the PIN: proof with the old verifier; re-mask `d1` only after the server agreed.
    pub async fn change_pin(&mut self, conn: &mut Connection, new_pin: &str) -> Result<()> {
        let salt = random_salt()?;
        let verifier = sm2_2p::pin_verifier(new_pin.as_bytes(), &salt);
        let (salt_hex, verifier_hex) = (hex::encode(salt), hex::encode(verifier.as_slice()));
        let body = ChangePinRequest {
            pin_proof: self.proof(&Transcript::Pin { salt: salt_hex.clone(), verifier: verifier_hex.clone() }),
            new_pin: Pin { salt: salt_hex.clone(), verifier: Zeroizing::new(verifier_hex) },
        };
        conn.send(Method::POST, &format!("/v1/keys/{}/pin", self.state.key_id), &body).await?;
        self.state.d1_masked = sm2_2p::scalar_to_hex(&sm2_2p::phone::mask_d1(self.share.scalar(), &verifier));
        self.state.pin_salt = salt_hex;
        self.verifier = verifier;
        Ok(())
    }

    /// Reset a forgotten PIN with the operator's one-time code (PROTOCOL.md "PIN reset"):
    /// a new PIN and a new recovery key go to the daemon, which answers the old recovery
    /// key; `d1` is opened from the recovery copy, masked under the new PIN and sealed
    /// under the new recovery key. The caller saves the returned phone's state at once:
    /// the old recovery key is gone from the daemon.
    pub async fn reset_pin(conn: &mut Connection, state: PhoneState, code: &str, new_pin: &str) -> Result<Phone> {
        let sealed = state.d1_recovery.clone().ok_or_else(|| {
            Error::Config("this phone keeps no recovery copy of d1: only a reissue replaces a forgotten PIN".into())
        })?;
        let public = sm2_2p::point_from_hex(&state.public_key).map_err(|e| Error::Config(format!("state: {e}")))?;
        let salt = random_salt()?;
        let verifier = sm2_2p::pin_verifier(new_pin.as_bytes(), &salt);
        let recovery = sm2_2p::phone::new_recovery_key();
        let body = mcs_api::PinResetRequest {
            reset_code: Zeroizing::new(code.to_owned()),
            new_pin: Pin { salt: hex::encode(salt), verifier: Zeroizing::new(hex::encode(verifier.as_slice())) },
            recovery_key: Zeroizing::new(hex::encode(recovery.as_slice())),
        };
        let answer = conn.send(Method::POST, &format!("/v1/keys/{}/pin/reset", state.key_id), &body).await?;
        let old: mcs_api::PinResetDone = parse(&answer)?;
        let mut old_key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(old.recovery_key.as_str(), &mut old_key[..])
            .map_err(|e| Error::Protocol(format!("answer `recovery_key`: {e}")))?;
        let d1 = sm2_2p::phone::open_recovery(&old_key, &state.key_id, &sealed)
            .map_err(|e| Error::Protocol(format!("the recovery copy of d1 does not open: {e}")))?;
        let share = ClientShare::from_scalar(d1).map_err(|e| Error::Protocol(e.to_string()))?;
        let state = PhoneState {
            d1_masked: sm2_2p::scalar_to_hex(&sm2_2p::phone::mask_d1(share.scalar(), &verifier)),
            pin_salt: hex::encode(salt),
            d1_recovery: Some(sm2_2p::phone::seal_recovery(&recovery, &state.key_id, share.scalar())),
            ..state
        };
        Ok(Phone { state, verifier, share, public })
    }

    /// Revoke this key from the phone (PIN proof over the reason).
    pub async fn revoke(&self, conn: &mut Connection, reason: &str) -> Result<Value> {
        let pin_proof = Some(self.proof(&Transcript::Revoke { reason: reason.into() }));
        let body = RevokeRequest { reason: reason.to_owned(), pin_proof };
        conn.send(Method::POST, &format!("/v1/keys/{}/revoke", self.state.key_id), &body).await
    }

    /// Suspend this key from the phone (挂失; PIN proof over the reason).
    pub async fn suspend(&self, conn: &mut Connection, reason: &str) -> Result<Value> {
        let pin_proof = Some(self.proof(&Transcript::Suspend { reason: reason.into() }));
        let body = mcs_api::SuspendRequest { reason: reason.to_owned(), pin_proof };
        conn.send(Method::POST, &format!("/v1/keys/{}/suspend", self.state.key_id), &body).await
    }
}

/// An activation request made once (`d1`, `P1`, the PIN verifier), to be sent until an
/// answer arrives: the daemon answers a repeat of the same request with the same key.
pub struct PreparedActivation {
    server: String,
    enrollment_id: String,
    share: ClientShare,
    salt: [u8; 16],
    verifier: Zeroizing<[u8; 32]>,
    /// Sent with the request, sealing the recovery copy of `d1`, then forgotten.
    recovery: sm2_2p::phone::RecoveryKey,
    keep_recovery: bool,
    fixed_k3: bool,
    /// The request; it carries the activation code (wiped on drop).
    body: ActivateRequest,
}

impl PreparedActivation {
    pub fn enrollment_id(&self) -> &str {
        &self.enrollment_id
    }

    /// Behave as a Tongsuo `sm2_threshold` phone: require `p2` and derive the joint key
    /// from it, and co-sign every task (the certificate request included) in `fixed_k3`.
    pub fn tongsuo_compatible(mut self) -> Self {
        self.fixed_k3 = true;
        self
    }

    /// Send no recovery key and keep no recovery copy of `d1`: a forgotten PIN then costs
    /// the key (a reissue). For apps that choose so, and for tests of that case.
    pub fn without_recovery_key(mut self) -> Self {
        self.body.recovery_key = None;
        self.keep_recovery = false;
        self
    }

    /// Send the activation; returns the phone and its certificate request task, which
    /// [`Phone::install_certificate`] co-signs.
    pub async fn send(&self, conn: &mut Connection) -> Result<(Phone, Option<ScanCode>)> {
        let answer =
            conn.send(Method::POST, &format!("/v1/enrollments/{}/activate", self.enrollment_id), &self.body).await?;
        let answer: Activation = parse(&answer)?;
        let public = answer_point(&answer.public_key, "public_key")?;
        // With `p2` the phone checks the joint key itself (`d1⁻¹·p2 − G = P`); a Tongsuo
        // phone derives it from `p2` and so needs it.
        match answer.p2.as_deref() {
            Some(p2) if !sm2_2p::pair_forms(&self.share, &answer_point(p2, "p2")?, &public) => {
                return Err(Error::Protocol("p2 and d1 do not form the answered joint key".into()));
            }
            None if self.fixed_k3 => return Err(Error::Protocol("the activation answer has no p2".into())),
            _ => {}
        }
        let key_id = answer.key_id;
        let d1_recovery = match self.keep_recovery {
            true => Some(sm2_2p::phone::seal_recovery(&self.recovery, &key_id, self.share.scalar())),
            false => None,
        };
        let state = PhoneState {
            version: STATE_VERSION,
            server: self.server.clone(),
            key_id,
            public_key: sm2_2p::point_to_hex(&public),
            d1_masked: sm2_2p::scalar_to_hex(&sm2_2p::phone::mask_d1(self.share.scalar(), &self.verifier)),
            pin_salt: hex::encode(self.salt),
            d1_recovery,
            fixed_k3: self.fixed_k3,
            delegation_id: None,
        };
        let phone = Phone { state, verifier: self.verifier.clone(), share: self.share.clone(), public };
        let csr = answer.csr_task.map(|t| ScanCode { task_id: t.task_id, token: t.token, url: self.server.clone() });
        Ok((phone, csr))
    }
}

/// What a QR code carries (`mcs://task?v=1&id=…&token=…&url=…`); read with `ScanCode::parse`.
pub use mcs_api::ScanCode;

/// What a task asks for, readable before the phone is unlocked.
pub async fn fetch_task(conn: &mut Connection, code: &ScanCode) -> Result<Value> {
    conn.json(Method::GET, &format!("/v1/tasks/{}?token={}", code.task_id, code.token), None).await
}

impl Phone {
    /// `GET /v1/tasks/{id}?token=` — what the gateway asks for (shown before the PIN).
    pub async fn view_task(&self, conn: &mut Connection, code: &ScanCode) -> Result<Value> {
        fetch_task(conn, code).await
    }

    /// Bind this phone's key to the task.
    pub async fn claim(&self, conn: &mut Connection, code: &ScanCode) -> Result<Value> {
        let body = ClaimRequest { token: code.token.clone(), key_id: self.state.key_id.clone() };
        conn.send(Method::POST, &format!("/v1/tasks/{}/claim", code.task_id), &body).await
    }

    /// Refuse a task.
    pub async fn reject(&self, conn: &mut Connection, code: &ScanCode, reason: &str) -> Result<Value> {
        let body = RejectRequest { token: code.token.clone(), reason: reason.to_owned() };
        conn.send(Method::POST, &format!("/v1/tasks/{}/reject", code.task_id), &body).await
    }

    /// Check that the server's `e` is the digest of what the task shows, over our key.
    fn check_e(&self, view: &TaskView, claimed: &ClaimAnswer) -> Result<[u8; 32]> {
        let data = match (view.kind, &view.data, claimed) {
            (TaskKind::Login, Some(TaskViewData::Login(d)), _) => b64(&d.challenge, "data.challenge")?,
            // A GB/T 35275 signature: the signed attributes, which must hold the message's
            // SM3 digest (messageDigest) and the GB `data` content type.
            (TaskKind::Sign, Some(TaskViewData::Sign(d)), ClaimAnswer::SealDigest(s))
                if d.format.as_deref() == Some("cms") =>
            {
                let tbs = b64(&s.to_be_signed, "to_be_signed")?;
                let digest: [u8; 32] = {
                    use sm3::Digest;
                    sm3::Sm3::digest(b64(&d.message, "data.message")?).into()
                };
                let message_digest = [&[0x04, 0x20][..], &digest].concat();
                const GB_DATA: [u8; 12] = [0x06, 0x0a, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x06, 0x01, 0x04, 0x02, 0x01];
                let holds = |needle: &[u8]| tbs.windows(needle.len()).any(|w| w == needle);
                if !holds(&message_digest) || !holds(&GB_DATA) {
                    return Err(Error::Protocol("the signed attributes are not for the shown message".into()));
                }
                tbs
            }
            (TaskKind::Sign, Some(TaskViewData::Sign(d)), _) => b64(&d.message, "data.message")?,
            // The signed attributes of the PDF signature: a document digest, the time, the seal.
            (TaskKind::PdfSeal, _, ClaimAnswer::SealDigest(d)) => b64(&d.to_be_signed, "to_be_signed")?,
            // Withdrawing a seal: the statement of API.md, rebuilt from what the phone shows.
            (TaskKind::PdfUnseal, Some(TaskViewData::PdfUnseal(d)), ClaimAnswer::UnsealDigest(u)) => {
                if u.field != d.field {
                    return Err(Error::Protocol("the claim names another seal than the task".into()));
                }
                format!("mcs-unseal-v1|{}|{}|{}", view.task_id, d.pdf_sha256, d.field).into_bytes()
            }
            (kind, _, _) => {
                return Err(Error::Protocol(format!("not a signing task with its data: {}", kind.as_str())));
            }
        };
        let e = sm2_2p::e_for_message(&self.public, &data);
        if claimed.e() != Some(hex::encode(e).as_str()) {
            return Err(Error::Protocol("the server's digest is not the digest of the shown data".into()));
        }
        Ok(e)
    }

    /// Co-sign a claimed signing task and complete it; returns the signature.
    pub async fn cosign_and_complete(&self, conn: &mut Connection, code: &ScanCode, e: &[u8; 32]) -> Result<Signature> {
        let sig = self.cosign(conn, code, e).await?;
        self.complete_signature(conn, code, &sig).await?;
        Ok(sig)
    }

    /// Co-sign a claimed signing task (fresh nonce) and finish the signature over `e`,
    /// without completing the task: a phone keeps it so a lost `complete` can be repeated.
    pub async fn cosign(&self, conn: &mut Connection, code: &ScanCode, e: &[u8; 32]) -> Result<Signature> {
        let (k1, q1) = ClientShare::sign_start();
        let q1_hex = sm2_2p::point_to_hex(&q1);
        let pin_proof = self.proof(&Transcript::TaskSign { task_id: code.task_id.clone(), q1: q1_hex.clone() });
        let body =
            CosignRequest { token: code.token.clone(), q1: Some(q1_hex), t1: None, pin_proof, mode: self.mode() };
        let answer = conn.send(Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), &body).await?;
        match parse::<mcs_api::CosignAnswer>(&answer)? {
            mcs_api::CosignAnswer::Sign(shares) if !self.state.fixed_k3 => self.finish_canonical(&k1, &shares, e),
            mcs_api::CosignAnswer::FixedK3(shares) if self.state.fixed_k3 => self.finish_fixed_k3(&k1, &shares, e),
            _ => Err(Error::Protocol("the co-signature is not of the mode asked for".into())),
        }
    }

    /// The `mode` field this phone sends with a co-signature.
    fn mode(&self) -> Option<String> {
        self.state.fixed_k3.then(|| mcs_api::SignMode::FixedK3.as_str().to_owned())
    }

    /// `s = d1·(s3 + k1) − r`, after checking the answer's DER `SEQUENCE{r, s3}` says the
    /// same as its hex scalars (a Tongsuo client reads only the DER).
    fn finish_fixed_k3(&self, k1: &sm2_2p::Nonce, answer: &mcs_api::FixedK3Shares, e: &[u8; 32]) -> Result<Signature> {
        let (r, s3) = (answer_scalar(&answer.r, "r")?, answer_scalar(&answer.s3, "s3")?);
        let der = answer.der.as_deref().ok_or_else(|| Error::Protocol("fixed_k3 answer without `der`".into()))?;
        let der = hex::decode(der).map_err(|e| Error::Protocol(format!("answer `der`: {e}")))?;
        let parsed = Signature::from_der(&der).map_err(|e| Error::Protocol(format!("answer `der`: {e}")))?;
        if (parsed.r, parsed.s) != (r, s3) {
            return Err(Error::Protocol("answer `der` differs from `r`, `s3`".into()));
        }
        let sig = self
            .share
            .sign_finish_fixed_k3(k1, &r, &s3)
            .map_err(|e| Error::Protocol(format!("finishing the signature: {e}")))?;
        if !sm2_2p::verify(&self.public, e, &sig) {
            return Err(Error::Protocol(
                "the joint signature does not verify (wrong PIN or wrong server answer)".into(),
            ));
        }
        Ok(sig)
    }

    fn finish_canonical(&self, k1: &sm2_2p::Nonce, answer: &SignShares, e: &[u8; 32]) -> Result<Signature> {
        let sig = self
            .share
            .sign_finish(
                k1,
                &answer_scalar(&answer.r, "r")?,
                &answer_scalar(&answer.s2, "s2")?,
                &answer_scalar(&answer.s3, "s3")?,
            )
            .map_err(|e| Error::Protocol(format!("finishing the signature: {e}")))?;
        if !sm2_2p::verify(&self.public, e, &sig) {
            return Err(Error::Protocol(
                "the joint signature does not verify (wrong PIN or wrong server answer)".into(),
            ));
        }
        Ok(sig)
    }

    pub async fn complete_signature(&self, conn: &mut Connection, code: &ScanCode, sig: &Signature) -> Result<Value> {
        let signature = SignatureScalars { r: sm2_2p::scalar_to_hex(&sig.r), s: sm2_2p::scalar_to_hex(&sig.s) };
        let body = CompleteRequest { token: code.token.clone(), signature: Some(signature), plaintext: None };
        conn.send(Method::POST, &format!("/v1/tasks/{}/complete", code.task_id), &body).await
    }

    /// Scan a QR code and do what it asks: login/sign (checked digest), decrypt, encrypt,
    /// or a certificate request of this key (a renewal, 延期: checked to be for this key).
    pub async fn scan(&self, conn: &mut Connection, code: &ScanCode) -> Result<Value> {
        let raw_view = self.view_task(conn, code).await?;
        let view: TaskView = parse(&raw_view)?;
        if view.kind == TaskKind::Csr {
            self.install_certificate(conn, code).await?;
            return Ok(raw_view);
        }
        let claimed: ClaimAnswer = parse(&self.claim(conn, code).await?)?;
        awaiting(&claimed)?;
        match (view.kind, &claimed) {
            (TaskKind::Login | TaskKind::Sign | TaskKind::PdfSeal | TaskKind::PdfUnseal, _) => {
                let e = self.check_e(&view, &claimed)?;
                self.cosign_and_complete(conn, code, &e).await?;
            }
            (TaskKind::Decrypt, ClaimAnswer::Ciphertext(c)) => {
                let ct = Ciphertext::parse(&b64(&c.ciphertext, "ciphertext")?)
                    .map_err(|e| Error::Protocol(format!("task ciphertext: {e}")))?;
                let (w, t1) = self.share.decrypt_blind(&ct.c1);
                let t1_hex = sm2_2p::point_to_hex(&t1);
                let pin_proof =
                    self.proof(&Transcript::TaskDecrypt { task_id: code.task_id.clone(), t1: t1_hex.clone() });
                let body =
                    CosignRequest { token: code.token.clone(), q1: None, t1: Some(t1_hex), pin_proof, mode: None };
                let answer = conn.send(Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), &body).await?;
                let plaintext = self
                    .share
                    .decrypt_finish(&w, &answer_point(&parse::<DecryptShare>(&answer)?.t2, "t2")?, &ct)
                    .map_err(|e| Error::Protocol(format!("decryption: {e}")))?;
                use base64::Engine;
                let plaintext = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(plaintext.as_slice()));
                let body = CompleteRequest { token: code.token.clone(), signature: None, plaintext: Some(plaintext) };
                conn.send(Method::POST, &format!("/v1/tasks/{}/complete", code.task_id), &body).await?;
            }
            (TaskKind::Encrypt, _) => {}
            (kind, _) => return Err(Error::Protocol(format!("cannot act on a {} task", kind.as_str()))),
        }
        Ok(raw_view)
    }

    /// Claim several signing tasks and co-sign them with one PIN proof, then complete each.
    pub async fn batch_sign(&self, conn: &mut Connection, codes: &[ScanCode]) -> Result<Vec<Result<Signature>>> {
        let mut prepared = Vec::new();
        for code in codes {
            let view: TaskView = parse(&self.view_task(conn, code).await?)?;
            let claimed: ClaimAnswer = parse(&self.claim(conn, code).await?)?;
            awaiting(&claimed)?;
            let e = self.check_e(&view, &claimed)?;
            let (k1, q1) = ClientShare::sign_start();
            prepared.push((code, e, k1, sm2_2p::point_to_hex(&q1)));
        }
        let transcript =
            Transcript::Batch { items: prepared.iter().map(|(c, _, _, q1)| (c.task_id.clone(), q1.clone())).collect() };
        let body = BatchCosignRequest {
            items: prepared
                .iter()
                .map(|(c, _, _, q1)| BatchCosignItem {
                    task_id: c.task_id.clone(),
                    token: c.token.clone(),
                    q1: q1.clone(),
                })
                .collect(),
            key_id: self.state.key_id.clone(),
            pin_proof: self.proof(&transcript),
            mode: self.mode(),
        };
        let answer: BatchCosignAnswer = parse(&conn.send(Method::POST, "/v1/tasks/batch/cosign", &body).await?)?;
        let mut out = Vec::new();
        for ((code, e, k1, _), item) in prepared.iter().zip(answer.items) {
            let finished = match item {
                BatchCosignResult::Signed(s) if !self.state.fixed_k3 => {
                    self.finish_canonical(k1, &SignShares { r: s.r, s2: s.s2, s3: s.s3 }, e)
                }
                BatchCosignResult::SignedFixedK3(s) if self.state.fixed_k3 => {
                    self.finish_fixed_k3(k1, &mcs_api::FixedK3Shares { r: s.r, s3: s.s3, der: Some(s.der) }, e)
                }
                BatchCosignResult::Failed(f) => {
                    out.push(Err(Error::Protocol(format!("{}: {}: {}", code.task_id, f.error.code, f.error.message))));
                    continue;
                }
                _ => Err(Error::Protocol("the co-signature is not of the mode asked for".into())),
            };
            let sig = match finished {
                Ok(sig) => sig,
                Err(err) => {
                    out.push(Err(err));
                    continue;
                }
            };
            out.push(self.complete_signature(conn, code, &sig).await.map(|_| sig));
        }
        Ok(out)
    }
}

/// A claim that waits for the owner's approval ([`Error::AwaitingApproval`]) or for the
/// gateway's placement ([`Error::AwaitingPlacement`]).
fn awaiting(claimed: &ClaimAnswer) -> Result<()> {
    match claimed {
        ClaimAnswer::AwaitingApproval(a) => Err(Error::AwaitingApproval(a.approval_id.clone())),
        ClaimAnswer::AwaitingPlacement(_) => Err(Error::AwaitingPlacement),
        _ => Ok(()),
    }
}

/// SubjectPublicKeyInfo PEM (id-ecPublicKey with the SM2 curve), as OpenSSL 3 reads it.
pub fn public_key_pem(p: &AffinePoint) -> String {
    pem("PUBLIC KEY", &sm2_2p::spki_der(p))
}

/// PEM armour for DER bytes.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The key's certificate and then its chain, as PEM (from `GET /v1/keys/{id}`).
pub fn certificate_pem(key: &Value) -> Result<String> {
    let key: Key = parse(key)?;
    let leaf = key.certificate.ok_or_else(|| Error::Protocol("the key has no certificate yet".into()))?;
    let mut out = String::new();
    for c in std::iter::once(leaf).chain(key.chain.into_iter().flatten()) {
        out.push_str(&pem("CERTIFICATE", &b64(&c, "certificate")?));
    }
    Ok(out)
}
