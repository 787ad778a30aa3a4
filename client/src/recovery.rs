//! The recovery copy of `d1` (PROTOCOL.md "PIN reset without losing the key"; the scheme
//! app developers follow is in `docs/pin-reset.md`).
//!
//! At activation the phone draws a 32-byte recovery key `R`, sends it to the daemon (which
//! keeps it only HSM-wrapped) and **forgets it**; it keeps
//! `d1_recovery = nonce ‖ AES-256-GCM(R, nonce, d1, AAD)` beside the PIN-masked copy, with
//! `AAD = "mcs-d1-recovery-v1|" ‖ key_id` and `d1` the 32-byte big-endian scalar. Neither
//! half alone opens `d1`: the phone has the ciphertext, the daemon has `R`. At a PIN reset
//! the daemon hands `R` back (after the operator's identity check and the one-time code);
//! the phone opens `d1`, masks it under the new PIN and seals it under the new recovery key
//! it sent in the same request.
//!
//! Unlike the PIN mask this copy has a tag: a wrong `R` is detected, and `R` is never
//! guessed (256 random bits), so the tag gives an offline guesser nothing.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sm2_2p::Scalar;
use zeroize::Zeroizing;

use crate::transport::{Error, Result};

/// A recovery key: 32 random bytes.
pub type RecoveryKey = Zeroizing<[u8; 32]>;

const NONCE: usize = 12;

fn aad(key_id: &str) -> Vec<u8> {
    format!("mcs-d1-recovery-v1|{key_id}").into_bytes()
}

/// A fresh recovery key from the OS.
pub fn new_key() -> Result<RecoveryKey> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut k[..]).map_err(|e| Error::Config(format!("OS RNG: {e}")))?;
    Ok(k)
}

/// `d1` sealed under `key` for `key_id`: lowercase hex of `nonce ‖ ciphertext ‖ tag`.
pub fn seal(key: &[u8; 32], key_id: &str, d1: &Scalar) -> Result<String> {
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).map_err(|e| Error::Config(format!("OS RNG: {e}")))?;
    let cipher = Aes256Gcm::new(key.into());
    let plain = Zeroizing::new(d1.to_bytes());
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plain.as_slice(), aad: &aad(key_id) })
        .map_err(|_| Error::Config("sealing d1 failed".into()))?;
    Ok(hex::encode([&nonce[..], &sealed].concat()))
}

/// Open what [`seal`] made; fails on a wrong key, another key id or a changed copy.
pub fn open(key: &[u8; 32], key_id: &str, sealed_hex: &str) -> Result<Scalar> {
    let refused = |why: &str| Error::Protocol(format!("the recovery copy of d1 does not open: {why}"));
    let bytes = hex::decode(sealed_hex).map_err(|_| refused("not hex"))?;
    if bytes.len() != NONCE + 32 + 16 {
        return Err(refused("wrong length"));
    }
    let cipher = Aes256Gcm::new(key.into());
    let nonce: [u8; NONCE] = bytes[..NONCE].try_into().map_err(|_| refused("wrong length"))?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: &bytes[NONCE..], aad: &aad(key_id) })
            .map_err(|_| refused("wrong recovery key, or not this key's copy"))?,
    );
    sm2_2p::scalar_from_hex(&hex::encode(plain.as_slice())).map_err(|e| refused(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_share_opens_with_its_key_and_id_only() {
        let (share, _) = sm2_2p::client_keygen();
        let key = new_key().unwrap();
        let sealed = seal(&key, "k_1", share.scalar()).unwrap();
        assert_eq!(sealed.len(), 2 * (12 + 32 + 16));
        assert_eq!(open(&key, "k_1", &sealed).unwrap(), *share.scalar());
        assert!(open(&new_key().unwrap(), "k_1", &sealed).is_err(), "another recovery key");
        assert!(open(&key, "k_2", &sealed).is_err(), "another key's copy");
        let mut bad = hex::decode(&sealed).unwrap();
        bad[20] ^= 1;
        assert!(open(&key, "k_1", &hex::encode(bad)).is_err(), "a changed copy");
        assert_ne!(seal(&key, "k_1", share.scalar()).unwrap(), sealed, "a fresh nonce each time");
    }
}
