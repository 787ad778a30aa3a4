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

/// What a PIN proof authorises: an operation and the request's values it covers, in the
/// order of PROTOCOL.md's table. The one definition of the transcript, used by the phone
/// (to prove) and the daemon (to check). Fields are wiped when dropped: `Pin` carries a new
/// verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transcript {
    /// `POST /v1/keys/{id}/sign`: `e`, `q1`.
    Sign { e: String, q1: String },
    /// `POST /v1/keys/{id}/decrypt`: `t1`.
    Decrypt { t1: String },
    /// `POST /v1/tasks/{tid}/cosign` for the signing kinds: `tid`, `q1`.
    TaskSign { task_id: String, q1: String },
    /// `POST /v1/tasks/{tid}/cosign` for decrypt: `tid`, `t1`.
    TaskDecrypt { task_id: String, t1: String },
    /// `POST /v1/tasks/batch/cosign`: for each item in order, `task_id`, `q1`.
    Batch { items: Vec<(String, String)> },
    /// `POST /v1/keys/{id}/pin`: `new_pin.salt`, `new_pin.verifier`.
    Pin { salt: String, verifier: String },
    /// `POST /v1/keys/{id}/revoke` by the phone: `reason`.
    Revoke { reason: String },
    /// `POST /v1/keys/{id}/delegations` by the owner's phone: `kind`, `not_after`,
    /// `approval` (an absent optional field is the empty string).
    Delegate { kind: String, not_after: String, approval: String },
    /// `POST /v1/delegations/{did}/reshare`: `did`.
    Reshare { delegation_id: String },
    /// `POST /v1/delegations/{did}/share`: `did`, `wrapped_share`.
    Share { delegation_id: String, wrapped_share: String },
    /// `POST /v1/delegations/{did}/revoke` by the owner's phone: `did`.
    Undelegate { delegation_id: String },
    /// `POST /v1/approvals/{aid}`: `aid`, `decision`.
    Approve { approval_id: String, decision: String },
    /// `POST /v1/keys/{id}/suspend` by the phone: `reason`.
    Suspend { reason: String },
}

impl Transcript {
    /// The `op` of the transcript.
    pub fn op(&self) -> &'static str {
        match self {
            Transcript::Sign { .. } | Transcript::TaskSign { .. } => "sign",
            Transcript::Decrypt { .. } | Transcript::TaskDecrypt { .. } => "decrypt",
            Transcript::Batch { .. } => "batch",
            Transcript::Pin { .. } => "pin",
            Transcript::Revoke { .. } => "revoke",
            Transcript::Delegate { .. } => "delegate",
            Transcript::Reshare { .. } => "reshare",
            Transcript::Share { .. } => "share",
            Transcript::Undelegate { .. } => "undelegate",
            Transcript::Approve { .. } => "approve",
            Transcript::Suspend { .. } => "suspend",
        }
    }

    /// The fields, in order.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Transcript::Sign { e, q1 } => vec![e, q1],
            Transcript::Decrypt { t1 } => vec![t1],
            Transcript::TaskSign { task_id, q1 } => vec![task_id, q1],
            Transcript::TaskDecrypt { task_id, t1 } => vec![task_id, t1],
            Transcript::Batch { items } => items.iter().flat_map(|(t, q)| [t.as_str(), q.as_str()]).collect(),
            Transcript::Pin { salt, verifier } => vec![salt, verifier],
            Transcript::Revoke { reason } => vec![reason],
            Transcript::Delegate { kind, not_after, approval } => vec![kind, not_after, approval],
            Transcript::Reshare { delegation_id } | Transcript::Undelegate { delegation_id } => vec![delegation_id],
            Transcript::Share { delegation_id, wrapped_share } => vec![delegation_id, wrapped_share],
            Transcript::Approve { approval_id, decision } => vec![approval_id, decision],
            Transcript::Suspend { reason } => vec![reason],
        }
    }
}

impl Drop for Transcript {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match self {
            Transcript::Sign { e: a, q1: b }
            | Transcript::TaskSign { task_id: a, q1: b }
            | Transcript::TaskDecrypt { task_id: a, t1: b }
            | Transcript::Pin { salt: a, verifier: b }
            | Transcript::Share { delegation_id: a, wrapped_share: b }
            | Transcript::Approve { approval_id: a, decision: b } => {
                a.zeroize();
                b.zeroize();
            }
            Transcript::Decrypt { t1: a }
            | Transcript::Revoke { reason: a }
            | Transcript::Reshare { delegation_id: a }
            | Transcript::Undelegate { delegation_id: a }
            | Transcript::Suspend { reason: a } => a.zeroize(),
            Transcript::Delegate { kind, not_after, approval } => {
                kind.zeroize();
                not_after.zeroize();
                approval.zeroize();
            }
            Transcript::Batch { items } => items.iter_mut().for_each(|(a, b)| {
                a.zeroize();
                b.zeroize();
            }),
        }
    }
}

/// The MAC over the transcript `mcs-pin-v1|key_id|op|field…`, for known-answer vectors and
/// for operations not in [`Transcript`] yet.
pub fn proof_bytes(verifier: &[u8; 32], key_id: &str, op: &str, fields: &[&str]) -> [u8; 32] {
    // Fed piecewise: the fields can hold a new verifier (PIN change), and a joined copy
    // would be one more place for it to linger.
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

/// The proof for `t` as lowercase hex.
pub fn pin_proof(verifier: &[u8; 32], key_id: &str, t: &Transcript) -> String {
    hex::encode(proof_bytes(verifier, key_id, t.op(), &t.fields()))
}

/// Constant-time check of a hex proof for `t`; false for any malformed input.
pub fn pin_proof_matches(verifier: &[u8; 32], key_id: &str, t: &Transcript, proof_hex: &str) -> bool {
    let mut given = [0u8; 32];
    if proof_hex.len() != 64 || hex::decode_to_slice(proof_hex, &mut given).is_err() {
        return false;
    }
    bool::from(proof_bytes(verifier, key_id, t.op(), &t.fields()).ct_eq(&given))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delegation_transcripts_follow_the_protocol_table() {
        let v = [7u8; 32];
        let cases = [
            (
                Transcript::Delegate {
                    kind: "delegate".into(),
                    not_after: "2030-01-01T00:00:00Z".into(),
                    approval: String::new(),
                },
                "mcs-pin-v1|k_1|delegate|delegate|2030-01-01T00:00:00Z|",
            ),
            (Transcript::Reshare { delegation_id: "d_1".into() }, "mcs-pin-v1|k_1|reshare|d_1"),
            (
                Transcript::Share { delegation_id: "d_1".into(), wrapped_share: "04ab".into() },
                "mcs-pin-v1|k_1|share|d_1|04ab",
            ),
            (Transcript::Undelegate { delegation_id: "d_1".into() }, "mcs-pin-v1|k_1|undelegate|d_1"),
            (
                Transcript::Approve { approval_id: "a_1".into(), decision: "deny".into() },
                "mcs-pin-v1|k_1|approve|a_1|deny",
            ),
            (Transcript::Suspend { reason: "lost".into() }, "mcs-pin-v1|k_1|suspend|lost"),
        ];
        for (t, message) in cases {
            assert_eq!(pin_proof(&v, "k_1", &t), hex::encode(hmac_sm3(&v, message.as_bytes())), "{message}");
            assert!(pin_proof_matches(&v, "k_1", &t, &pin_proof(&v, "k_1", &t)));
        }
    }
}
