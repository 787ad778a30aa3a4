//! The phone's share `d1` and the one-time sessions that use it: signing (canonical and
//! `fixed_k3`) and blinded decryption, exactly as `sm2_2p::ClientShare` computes them.
//!
//! A session keeps its nonce (`k1` or `w`) inside and gives it up at the first finish: a
//! nonce finished with two different daemon answers would give `d1` away, so a second
//! finish is refused, and a lost answer means a new session (the daemon accepts a fresh
//! co-signature).

use std::sync::{Arc, Mutex};

use sm2_2p::{Ciphertext, ClientShare, Nonce};

use crate::error::{PhoneError, invalid, non_empty};
use crate::key::JointKey;
use crate::pin::PinVerifier;
use crate::recovery::RecoveryKey;

/// `d1`, wiped on drop. Never leaves this object unmasked.
#[derive(uniffi::Object)]
pub struct KeyShare {
    pub(crate) share: ClientShare,
}

/// An SM2 signature `(r, s)`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Signature {
    /// 64 lowercase hex.
    pub r: String,
    /// 64 lowercase hex.
    pub s: String,
    /// DER `SEQUENCE { INTEGER r, INTEGER s }`.
    pub der: Vec<u8>,
}

impl Signature {
    pub(crate) fn from_sm2(sig: &sm2_2p::Signature) -> Signature {
        Signature { r: sm2_2p::scalar_to_hex(&sig.r), s: sm2_2p::scalar_to_hex(&sig.s), der: sig.to_der() }
    }

    /// The `(r, s)` of the record, checked; its `der` must say the same.
    pub(crate) fn to_sm2(&self) -> Result<sm2_2p::Signature, PhoneError> {
        let r = sm2_2p::scalar_from_hex(&self.r).map_err(invalid("signature.r"))?;
        let s = sm2_2p::scalar_from_hex(&self.s).map_err(invalid("signature.s"))?;
        let sig = sm2_2p::Signature::from_der(&self.der).map_err(invalid("signature.der"))?;
        if (sig.r, sig.s) != (r, s) {
            return Err(PhoneError::input("signature.der", "differs from r, s"));
        }
        Ok(sig)
    }
}

/// Take a session's nonce, once.
fn take_nonce(slot: &Mutex<Option<Nonce>>) -> Result<Nonce, PhoneError> {
    // A poisoned lock still holds a valid Option: no panic can leave it half-written.
    let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.take().ok_or_else(|| PhoneError::SessionUsed {
        reason: "this session was already finished: start a new one (a fresh nonce and a new PIN proof)".into(),
    })
}

fn scalar(field: &str, value: &str) -> Result<sm2_2p::Scalar, PhoneError> {
    sm2_2p::scalar_from_hex(value).map_err(invalid(field))
}

/// A signature computed from the daemon's answer, returned only if it verifies over `e`.
fn verified(key: &JointKey, e: &[u8; 32], sig: sm2_2p::Result<sm2_2p::Signature>) -> Result<Signature, PhoneError> {
    let sig = sig.map_err(|e| PhoneError::SignatureInvalid { reason: e.to_string() })?;
    if !sm2_2p::verify(&key.point, e, &sig) {
        return Err(PhoneError::SignatureInvalid {
            reason: "the joint signature does not verify (wrong PIN or wrong daemon answer)".into(),
        });
    }
    Ok(Signature::from_sm2(&sig))
}

#[uniffi::export]
impl KeyShare {
    /// A new share (key generation step 1). Send `p1()` in the activation request.
    #[uniffi::constructor]
    pub fn generate() -> Arc<Self> {
        Arc::new(KeyShare { share: sm2_2p::client_keygen().0 })
    }

    /// The share from its stored form `d1_masked` and the verifier of the PIN just typed.
    /// Any PIN gives a share — only the right one the right share: the daemon's counter,
    /// not the phone, judges a PIN (PROTOCOL.md's guidance against offline guessing).
    #[uniffi::constructor]
    pub fn unmask(d1_masked: String, verifier: &PinVerifier) -> Result<Arc<Self>, PhoneError> {
        let masked = sm2_2p::scalar_from_hex(&d1_masked).map_err(invalid("d1_masked"))?;
        let d1 = sm2_2p::phone::unmask_d1(&masked, &verifier.verifier);
        let share = ClientShare::from_scalar(d1).map_err(invalid("d1_masked"))?;
        Ok(Arc::new(KeyShare { share }))
    }

    /// The share from its recovery copy (`d1_recovery`, as `seal_recovery` made it) and
    /// the recovery key the daemon answers a PIN reset with. `DecryptFailed`: the copy is
    /// not this key's, or the key is not the copy's.
    #[uniffi::constructor]
    pub fn open_recovery(recovery_key: &RecoveryKey, key_id: String, sealed: String) -> Result<Arc<Self>, PhoneError> {
        non_empty("key_id", &key_id)?;
        let d1 = sm2_2p::phone::open_recovery(&recovery_key.key, &key_id, &sealed).map_err(|e| match e {
            sm2_2p::Error::DecryptFailed => {
                PhoneError::DecryptFailed { reason: "the recovery copy does not open with this key and key id".into() }
            }
            other => PhoneError::input("sealed", other.to_string()),
        })?;
        let share = ClientShare::from_scalar(d1).map_err(invalid("sealed"))?;
        Ok(Arc::new(KeyShare { share }))
    }

    /// `P1 = d1⁻¹·G`, the activation's `p1` (130 lowercase hex).
    pub fn p1(&self) -> String {
        sm2_2p::point_to_hex(&self.share.p1())
    }

    /// `d1_masked`, the form to store: `d1` masked under the PIN's verifier, without an
    /// integrity tag (64 lowercase hex).
    pub fn masked(&self, verifier: &PinVerifier) -> String {
        sm2_2p::scalar_to_hex(&sm2_2p::phone::mask_d1(self.share.scalar(), &verifier.verifier))
    }

    /// `d1_recovery`, the recovery copy to store beside `d1_masked`: AES-256-GCM under the
    /// recovery key, bound to `key_id`, with a fresh nonce (lowercase hex).
    pub fn seal_recovery(&self, recovery_key: &RecoveryKey, key_id: String) -> Result<String, PhoneError> {
        non_empty("key_id", &key_id)?;
        Ok(sm2_2p::phone::seal_recovery(&recovery_key.key, &key_id, self.share.scalar()))
    }

    /// Whether this share and the daemon's `p2` (activation answer, key view) form `key`:
    /// `d1⁻¹·p2 − G = P`. False: do not use the key.
    pub fn forms_key(&self, p2: String, key: &JointKey) -> Result<bool, PhoneError> {
        let p2 = sm2_2p::point_from_hex(&p2).map_err(invalid("p2"))?;
        Ok(sm2_2p::pair_forms(&self.share, &p2, &key.point))
    }

    /// Start a co-signature: a fresh `k1`, kept in the session; send `q1()`.
    pub fn sign_start(&self) -> Arc<SignSession> {
        let (k1, q1) = ClientShare::sign_start();
        Arc::new(SignSession { share: self.share.clone(), q1: sm2_2p::point_to_hex(&q1), k1: Mutex::new(Some(k1)) })
    }

    /// Start a blinded decryption of an SM2 ciphertext (`C1‖C3‖C2` or DER `SM2Cipher`
    /// bytes, e.g. the base64-decoded `ciphertext` of a decrypt task's claim): a fresh `w`,
    /// kept in the session; send `t1()`.
    pub fn decrypt_start(&self, ciphertext: Vec<u8>) -> Result<Arc<DecryptSession>, PhoneError> {
        let ct = Ciphertext::parse(&ciphertext).map_err(invalid("ciphertext"))?;
        let (w, t1) = self.share.decrypt_blind(&ct.c1);
        Ok(Arc::new(DecryptSession {
            share: self.share.clone(),
            ct,
            t1: sm2_2p::point_to_hex(&t1),
            w: Mutex::new(Some(w)),
        }))
    }

    /// Re-share step 3 on the owner's phone: `d1' = d1·u` (the daemon's `u` from
    /// `POST /v1/delegations/{did}/reshare`) SM2-encrypted to the new device's
    /// `transport_key`: the `wrapped_share` to send (`C1‖C3‖C2`, lowercase hex).
    pub fn reshare_to(&self, u: String, transport_key: String) -> Result<String, PhoneError> {
        let u = zeroize::Zeroizing::new(scalar("u", &u)?);
        let transport = sm2_2p::point_from_hex(&transport_key).map_err(invalid("transport_key"))?;
        Ok(hex::encode(self.share.reshare_to(&u, &transport).to_c1c3c2()))
    }
}

/// One co-signature: `k1` inside, `Q1` to send, finished once.
#[derive(uniffi::Object)]
pub struct SignSession {
    share: ClientShare,
    q1: String,
    k1: Mutex<Option<Nonce>>,
}

#[uniffi::export]
impl SignSession {
    /// `Q1 = k1·G` (130 lowercase hex): the request's `q1`, and the PIN proof's.
    pub fn q1(&self) -> String {
        self.q1.clone()
    }

    /// Canonical mode: `s = d1·k1·s2 + d1·s3 − r` from the daemon's `{r, s2, s3}`. The
    /// signature is returned only if it verifies under `key` over `e` (the digest the
    /// phone checked); `SignatureInvalid` otherwise — a wrong PIN, typically.
    pub fn finish(
        &self,
        key: &JointKey,
        e: String,
        r: String,
        s2: String,
        s3: String,
    ) -> Result<Signature, PhoneError> {
        let e = sm2_2p::digest_from_hex(&e).map_err(invalid("e"))?;
        let (r, s2, s3) = (scalar("r", &r)?, scalar("s2", &s2)?, scalar("s3", &s3)?);
        let k1 = take_nonce(&self.k1)?;
        verified(key, &e, self.share.sign_finish(&k1, &r, &s2, &s3))
    }

    /// `fixed_k3` mode (Tongsuo-compatible): `s = d1·(s3 + k1) − r` from `{r, s3, der}`;
    /// `der` (hex of DER `SEQUENCE{r, s3}`), when given, must say the same as `r`, `s3`.
    pub fn finish_fixed_k3(
        &self,
        key: &JointKey,
        e: String,
        r: String,
        s3: String,
        der: Option<String>,
    ) -> Result<Signature, PhoneError> {
        let e = sm2_2p::digest_from_hex(&e).map_err(invalid("e"))?;
        let (r, s3) = (scalar("r", &r)?, scalar("s3", &s3)?);
        if let Some(der) = der {
            let parsed = sm2_2p::Signature::from_der(&crate::error::hex_vec("der", &der)?).map_err(invalid("der"))?;
            if (parsed.r, parsed.s) != (r, s3) {
                return Err(PhoneError::input("der", "differs from r, s3"));
            }
        }
        let k1 = take_nonce(&self.k1)?;
        verified(key, &e, self.share.sign_finish_fixed_k3(&k1, &r, &s3))
    }
}

/// One co-decryption: `w` inside, `T1` to send, finished once.
#[derive(uniffi::Object)]
pub struct DecryptSession {
    share: ClientShare,
    ct: Ciphertext,
    t1: String,
    w: Mutex<Option<Nonce>>,
}

#[uniffi::export]
impl DecryptSession {
    /// `T1 = w·d1⁻¹·C1` (130 lowercase hex): the request's `t1`, and the PIN proof's.
    pub fn t1(&self) -> String {
        self.t1.clone()
    }

    /// The plaintext from the daemon's `t2`, after SM2's own integrity check (`C3`).
    /// `DecryptFailed`: a wrong PIN, a wrong answer, or not encrypted to this key.
    pub fn finish(&self, t2: String) -> Result<Vec<u8>, PhoneError> {
        let t2 = sm2_2p::point_from_hex(&t2).map_err(invalid("t2"))?;
        let w = take_nonce(&self.w)?;
        let plain = self.share.decrypt_finish(&w, &t2, &self.ct).map_err(|e| PhoneError::DecryptFailed {
            reason: format!("{e} (wrong PIN, wrong daemon answer, or not encrypted to this key)"),
        })?;
        Ok(plain.to_vec())
    }
}
