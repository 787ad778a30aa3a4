//! How the phone keeps `d1` (PROTOCOL.md "PIN" client guidance and "PIN reset without
//! losing the key"; the scheme app developers follow is in `docs/pin-reset.md`). No IO:
//! the app stores the strings these functions make.
//!
//! - **The PIN mask**: `d1_masked = d1·m` with `m = HMAC-SM3(V, "mcs-d1-mask-v1")` reduced
//!   mod n (1 if that is zero), `V` the PIN verifier. It has no integrity tag on purpose: a
//!   wrong PIN unmasks to another valid-looking scalar, so a stolen phone cannot test PIN
//!   guesses offline — every guess must go through the daemon's counter.
//! - **The recovery copy**: at activation the phone draws a 32-byte recovery key `R`, sends
//!   it to the daemon (which keeps it only HSM-wrapped) and forgets it; it keeps
//!   `nonce ‖ AES-256-GCM(R, nonce, d1, AAD)` with `AAD = "mcs-d1-recovery-v1|" ‖ key_id`
//!   and `d1` the 32-byte big-endian scalar, as lowercase hex. Neither half alone opens
//!   `d1`. At a PIN reset the daemon hands `R` back, and the phone opens its copy. Unlike
//!   the mask this copy has a tag: `R` is 256 random bits, never guessed, so the tag gives
//!   an offline guesser nothing, and a wrong `R` is detected.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use elliptic_curve::ops::Reduce;
use sm2::{FieldBytes, Scalar};
use zeroize::Zeroizing;

use crate::encoding::{scalar_from_bytes, scalar_to_bytes};
use crate::{Error, Result};

/// A recovery key: 32 random bytes.
pub type RecoveryKey = Zeroizing<[u8; 32]>;

/// Bytes of the AES-GCM nonce at the front of a recovery copy.
pub const RECOVERY_NONCE_LEN: usize = 12;

/// The masking factor for `d1`, derived from the PIN verifier.
fn mask(verifier: &[u8; 32]) -> Scalar {
    let h = crate::hmac_sm3(verifier, b"mcs-d1-mask-v1");
    let m = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(h));
    if bool::from(m.is_zero()) { Scalar::ONE } else { m }
}

/// `d1·m`: what the phone stores instead of `d1`.
pub fn mask_d1(d1: &Scalar, verifier: &[u8; 32]) -> Scalar {
    *d1 * mask(verifier)
}

/// `d1_masked·m⁻¹`. Any verifier gives a scalar; only the right one gives `d1`.
pub fn unmask_d1(d1_masked: &Scalar, verifier: &[u8; 32]) -> Scalar {
    *d1_masked * Option::<Scalar>::from(mask(verifier).invert()).unwrap_or(Scalar::ONE)
}

/// A fresh recovery key from the OS.
pub fn new_recovery_key() -> RecoveryKey {
    let mut k = Zeroizing::new([0u8; 32]);
    // As for nonces: an OS RNG that fails leaves nothing safe to do.
    getrandom::fill(&mut k[..]).expect("OS random number generator failed");
    k
}

fn aad(key_id: &str) -> Vec<u8> {
    format!("mcs-d1-recovery-v1|{key_id}").into_bytes()
}

/// `d1` sealed under `key` for `key_id`: lowercase hex of `nonce ‖ ciphertext ‖ tag`, with
/// a fresh random nonce.
pub fn seal_recovery(key: &[u8; 32], key_id: &str, d1: &Scalar) -> String {
    let mut nonce = [0u8; RECOVERY_NONCE_LEN];
    getrandom::fill(&mut nonce).expect("OS random number generator failed");
    seal_recovery_with(key, key_id, d1, &nonce)
}

/// [`seal_recovery`] with the nonce given (the known-answer vectors fix it). A nonce must
/// never be used twice under one key.
pub(crate) fn seal_recovery_with(
    key: &[u8; 32],
    key_id: &str,
    d1: &Scalar,
    nonce: &[u8; RECOVERY_NONCE_LEN],
) -> String {
    let cipher = Aes256Gcm::new(key.into());
    let plain = Zeroizing::new(scalar_to_bytes(d1));
    // Encryption with a valid key and a 32-byte message cannot fail.
    let sealed =
        cipher.encrypt(&Nonce::from(*nonce), Payload { msg: plain.as_slice(), aad: &aad(key_id) }).unwrap_or_default();
    hex::encode([&nonce[..], &sealed].concat())
}

/// Open what [`seal_recovery`] made. `InvalidHex`/`InvalidLength` for a malformed copy,
/// `DecryptFailed` for a wrong key, another key id or a changed copy.
pub fn open_recovery(key: &[u8; 32], key_id: &str, sealed_hex: &str) -> Result<Scalar> {
    if !crate::is_lowercase_hex(sealed_hex) {
        return Err(Error::InvalidHex);
    }
    let bytes = hex::decode(sealed_hex).map_err(|_| Error::InvalidHex)?;
    if bytes.len() != RECOVERY_NONCE_LEN + 32 + 16 {
        return Err(Error::InvalidLength);
    }
    let (nonce, body) = bytes.split_at(RECOVERY_NONCE_LEN);
    let nonce: [u8; RECOVERY_NONCE_LEN] = nonce.try_into().map_err(|_| Error::InvalidLength)?;
    let cipher = Aes256Gcm::new(key.into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: body, aad: &aad(key_id) })
            .map_err(|_| Error::DecryptFailed)?,
    );
    let bytes: &[u8; 32] = plain.as_slice().try_into().map_err(|_| Error::InvalidLength)?;
    scalar_from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_round_trips_only_under_its_verifier() {
        let (share, _) = crate::client_keygen();
        let (v, other) = ([7u8; 32], [8u8; 32]);
        let masked = mask_d1(share.scalar(), &v);
        assert_ne!(masked, *share.scalar());
        assert_eq!(unmask_d1(&masked, &v), *share.scalar());
        let guess = unmask_d1(&masked, &other);
        assert_ne!(guess, *share.scalar(), "a wrong PIN gives another scalar, no error");
        assert!(!bool::from(guess.is_zero()), "a wrong PIN must still give a plausible share");
    }

    #[test]
    fn a_sealed_share_opens_with_its_key_and_id_only() {
        let (share, _) = crate::client_keygen();
        let key = new_recovery_key();
        let sealed = seal_recovery(&key, "k_1", share.scalar());
        assert_eq!(sealed.len(), 2 * (12 + 32 + 16));
        assert_eq!(open_recovery(&key, "k_1", &sealed).unwrap(), *share.scalar());
        assert_eq!(open_recovery(&new_recovery_key(), "k_1", &sealed), Err(Error::DecryptFailed), "another key");
        assert_eq!(open_recovery(&key, "k_2", &sealed), Err(Error::DecryptFailed), "another key's copy");
        let mut bad = hex::decode(&sealed).unwrap();
        bad[20] ^= 1;
        assert_eq!(open_recovery(&key, "k_1", &hex::encode(bad)), Err(Error::DecryptFailed), "a changed copy");
        assert_eq!(open_recovery(&key, "k_1", &sealed[2..]), Err(Error::InvalidLength));
        assert_eq!(open_recovery(&key, "k_1", &sealed.to_uppercase()), Err(Error::InvalidHex));
        assert_ne!(seal_recovery(&key, "k_1", share.scalar()), sealed, "a fresh nonce each time");
    }
}
