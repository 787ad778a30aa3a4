//! The joint public key `P` (public): the digests `Z` and `e` over it, the check of the
//! daemon's `e` against what a task shows, signature verification, and its encodings.

use std::sync::Arc;

use sm2_2p::AffinePoint;

use crate::error::{PhoneError, invalid};
use crate::share::Signature;

/// The key's joint public key, from `public_key` of the activation answer or the key view.
#[derive(uniffi::Object)]
pub struct JointKey {
    pub(crate) point: AffinePoint,
}

#[uniffi::export]
impl JointKey {
    /// `P` from 130 lowercase hex characters (SEC1 uncompressed), checked to be on the curve.
    #[uniffi::constructor]
    pub fn from_hex(public_key: String) -> Result<Arc<Self>, PhoneError> {
        let point = sm2_2p::point_from_hex(&public_key).map_err(invalid("public_key"))?;
        Ok(Arc::new(JointKey { point }))
    }

    /// `P` as sent (lowercase hex, SEC1 uncompressed).
    pub fn hex(&self) -> String {
        sm2_2p::point_to_hex(&self.point)
    }

    /// `Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xP ‖ yP)` with the default ID
    /// `1234567812345678`, hex.
    pub fn z(&self) -> String {
        hex::encode(sm2_2p::z_digest(sm2_2p::DEFAULT_DIST_ID, &self.point))
    }

    /// `e = SM3(Z ‖ message)` (default ID), hex: what a raw `POST /v1/keys/{id}/sign` sends.
    pub fn e_for_message(&self, message: Vec<u8>) -> String {
        hex::encode(sm2_2p::e_for_message(&self.point, &message))
    }

    /// The check a phone makes after `claim`: `e` (the daemon's answer) must be the digest
    /// of `shown` — the bytes the task shows and the user approves (the base64-decoded
    /// `data.message` of a `sign` task, `data.challenge` of a `login`, the `to_be_signed` of
    /// a CMS or PDF signature, the CertificationRequestInfo of a `csr` task). Answers `e`;
    /// `DigestMismatch` means: do not co-sign.
    pub fn check_e(&self, shown: Vec<u8>, e: String) -> Result<String, PhoneError> {
        sm2_2p::digest_from_hex(&e).map_err(invalid("e"))?;
        let expected = hex::encode(sm2_2p::e_for_message(&self.point, &shown));
        match expected == e {
            true => Ok(e),
            false => Err(PhoneError::DigestMismatch { expected, claimed: e }),
        }
    }

    /// Whether `(r, s)` is an SM2 signature of this key over the digest `e`.
    pub fn verify(&self, e: String, signature: Signature) -> Result<bool, PhoneError> {
        let e = sm2_2p::digest_from_hex(&e).map_err(invalid("e"))?;
        let sig = signature.to_sm2()?;
        Ok(sm2_2p::verify(&self.point, &e, &sig))
    }

    /// DER SubjectPublicKeyInfo (id-ecPublicKey, curve SM2), as certificates carry it.
    pub fn spki_der(&self) -> Vec<u8> {
        sm2_2p::spki_der(&self.point)
    }

    /// The SubjectPublicKeyInfo as PEM (`PUBLIC KEY`), as OpenSSL 3 reads it.
    pub fn public_key_pem(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.spki_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Whether a certificate request (the `data.request_info` of the activation's `csr`
    /// task, base64-decoded) carries this key: check it before co-signing it.
    pub fn is_in_request(&self, request_info: Vec<u8>) -> bool {
        let spki = self.spki_der();
        request_info.windows(spki.len()).any(|w| w == spki.as_slice())
    }
}
