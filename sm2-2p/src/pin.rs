//! PIN verifier and PIN proofs (PROTOCOL.md "PIN").
//!
//! The phone derives `V = PBKDF2-HMAC-SM3(PIN, salt, 100 000, 32)` and proves knowledge of
//! it per request with `HMAC-SM3(V, "mcs-pin-v1|" ‖ key_id ‖ "|" ‖ op ‖ "|" ‖ fields…)`.
//! The daemon compares proofs in constant time.

use hmac::{Hmac, KeyInit, Mac};
use sm3::Sm3;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const PBKDF2_ROUNDS: u32 = 100_000;

pub fn pin_verifier(pin: &[u8], salt: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sm3>(pin, salt, PBKDF2_ROUNDS, out.as_mut());
    out
}

pub fn hmac_sm3(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sm3> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn proof_bytes(verifier: &[u8; 32], key_id: &str, op: &str, fields: &[&str]) -> [u8; 32] {
    // `mcs-pin-v1|key_id|op|field…`, fed piecewise: the fields can hold a new verifier
    // (PIN change), and a joined copy would be one more place for it to linger.
    let mut mac = <Hmac<Sm3> as KeyInit>::new_from_slice(verifier).expect("HMAC takes any key length");
    mac.update(b"mcs-pin-v1|");
    mac.update(key_id.as_bytes());
    mac.update(b"|");
    mac.update(op.as_bytes());
    for f in fields {
        mac.update(b"|");
        mac.update(f.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// The proof as lowercase hex.
pub fn pin_proof(verifier: &[u8; 32], key_id: &str, op: &str, fields: &[&str]) -> String {
    hex::encode(proof_bytes(verifier, key_id, op, fields))
}

/// Constant-time check of a hex proof; false for any malformed input.
pub fn pin_proof_matches(verifier: &[u8; 32], key_id: &str, op: &str, fields: &[&str], proof_hex: &str) -> bool {
    let mut given = [0u8; 32];
    if proof_hex.len() != 64 || hex::decode_to_slice(proof_hex, &mut given).is_err() {
        return false;
    }
    bool::from(proof_bytes(verifier, key_id, op, fields).ct_eq(&given))
}
