//! The PIN verifier `V = PBKDF2-HMAC-SM3(PIN, salt, 100 000, 32)` and the per-request PIN
//! proofs over it (PROTOCOL.md "PIN"): one [`PinOp`] per row of the protocol's tables, so
//! the app names the request and its fields and the transcript is `sm2_2p::Transcript`'s.

use std::sync::Arc;

use sm2_2p::Transcript;
use zeroize::Zeroizing;

use crate::error::{PhoneError, hex_bytes, invalid, non_empty, random_bytes};

/// A PIN's verifier and its salt. The verifier is secret (it makes proofs): it lives here,
/// is sent once (activation, PIN change, PIN reset) and is never stored.
#[derive(uniffi::Object)]
pub struct PinVerifier {
    salt: [u8; 16],
    pub(crate) verifier: Zeroizing<[u8; 32]>,
}

/// One item of a batch co-signature (`POST /v1/tasks/batch/cosign`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BatchItem {
    pub task_id: String,
    pub q1: String,
}

/// What a PIN proof authorises: the request and the values it covers, as sent.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PinOp {
    /// `POST /v1/keys/{id}/sign`: `e`, `q1`.
    Sign { e: String, q1: String },
    /// `POST /v1/keys/{id}/decrypt`: `t1`.
    Decrypt { t1: String },
    /// `POST /v1/tasks/{tid}/cosign` of a signing task (login, sign, pdf_seal, csr…): `tid`, `q1`.
    TaskSign { task_id: String, q1: String },
    /// `POST /v1/tasks/{tid}/cosign` of a decrypt task: `tid`, `t1`.
    TaskDecrypt { task_id: String, t1: String },
    /// `POST /v1/tasks/batch/cosign`: each item's `task_id`, `q1`, in order.
    Batch { items: Vec<BatchItem> },
    /// `POST /v1/keys/{id}/pin` (PIN change, proved with the old verifier): the new salt
    /// and verifier.
    Pin { salt: String, verifier: String },
    /// `POST /v1/keys/{id}/revoke` by the phone: `reason`.
    Revoke { reason: String },
    /// `POST /v1/keys/{id}/delegations` by the owner: `kind`, `not_after`, `approval`, an
    /// absent one as `None` (proved as the empty string, as the protocol says).
    Delegate { kind: String, not_after: Option<String>, approval: Option<String> },
    /// `POST /v1/delegations/{did}/reshare`: `did`.
    Reshare { delegation_id: String },
    /// `POST /v1/delegations/{did}/share`: `did`, `wrapped_share`.
    Share { delegation_id: String, wrapped_share: String },
    /// `POST /v1/delegations/{did}/revoke` by the owner: `did`.
    Undelegate { delegation_id: String },
    /// `POST /v1/approvals/{aid}`: `aid`, `decision` (`approve` or `deny`).
    Approve { approval_id: String, decision: String },
    /// `POST /v1/keys/{id}/suspend` by the owner: `reason`.
    Suspend { reason: String },
}

fn point_field(field: &str, value: &str) -> Result<(), PhoneError> {
    sm2_2p::point_from_hex(value).map(|_| ()).map_err(invalid(field))
}

impl PinOp {
    /// The transcript, after checking each field the protocol encodes (points, digests,
    /// hex): the daemon refuses those malformed before it looks at the proof.
    fn transcript(self) -> Result<Transcript, PhoneError> {
        Ok(match self {
            PinOp::Sign { e, q1 } => {
                sm2_2p::digest_from_hex(&e).map_err(invalid("e"))?;
                point_field("q1", &q1)?;
                Transcript::Sign { e, q1 }
            }
            PinOp::Decrypt { t1 } => {
                point_field("t1", &t1)?;
                Transcript::Decrypt { t1 }
            }
            PinOp::TaskSign { task_id, q1 } => {
                non_empty("task_id", &task_id)?;
                point_field("q1", &q1)?;
                Transcript::TaskSign { task_id, q1 }
            }
            PinOp::TaskDecrypt { task_id, t1 } => {
                non_empty("task_id", &task_id)?;
                point_field("t1", &t1)?;
                Transcript::TaskDecrypt { task_id, t1 }
            }
            PinOp::Batch { items } => {
                if items.is_empty() {
                    return Err(PhoneError::input("items", "a batch of no task"));
                }
                for item in &items {
                    non_empty("items.task_id", &item.task_id)?;
                    point_field("items.q1", &item.q1)?;
                }
                Transcript::Batch { items: items.into_iter().map(|i| (i.task_id, i.q1)).collect() }
            }
            PinOp::Pin { salt, verifier } => {
                hex_bytes::<16>("salt", &salt)?;
                hex_bytes::<32>("verifier", &verifier)?;
                Transcript::Pin { salt, verifier }
            }
            PinOp::Revoke { reason } => {
                non_empty("reason", &reason)?;
                Transcript::Revoke { reason }
            }
            PinOp::Delegate { kind, not_after, approval } => {
                non_empty("kind", &kind)?;
                Transcript::Delegate {
                    kind,
                    not_after: not_after.unwrap_or_default(),
                    approval: approval.unwrap_or_default(),
                }
            }
            PinOp::Reshare { delegation_id } => {
                non_empty("delegation_id", &delegation_id)?;
                Transcript::Reshare { delegation_id }
            }
            PinOp::Share { delegation_id, wrapped_share } => {
                non_empty("delegation_id", &delegation_id)?;
                crate::error::hex_vec("wrapped_share", &wrapped_share)?;
                Transcript::Share { delegation_id, wrapped_share }
            }
            PinOp::Undelegate { delegation_id } => {
                non_empty("delegation_id", &delegation_id)?;
                Transcript::Undelegate { delegation_id }
            }
            PinOp::Approve { approval_id, decision } => {
                non_empty("approval_id", &approval_id)?;
                non_empty("decision", &decision)?;
                Transcript::Approve { approval_id, decision }
            }
            PinOp::Suspend { reason } => {
                non_empty("reason", &reason)?;
                Transcript::Suspend { reason }
            }
        })
    }
}

impl PinVerifier {
    fn derived(pin: &str, salt: [u8; 16]) -> Result<PinVerifier, PhoneError> {
        non_empty("pin", pin)?;
        Ok(PinVerifier { salt, verifier: sm2_2p::pin_verifier(pin.as_bytes(), &salt) })
    }
}

#[uniffi::export]
impl PinVerifier {
    /// A new PIN (activation, PIN change, PIN reset): a fresh random salt and its verifier.
    /// Send `salt()` and `verifier()` as `pin: {salt, verifier}` (or `new_pin`).
    #[uniffi::constructor]
    pub fn setup(pin: String) -> Result<Arc<Self>, PhoneError> {
        let pin = Zeroizing::new(pin);
        let salt = random_bytes::<16>()?;
        Ok(Arc::new(PinVerifier::derived(&pin, *salt)?))
    }

    /// The verifier of the PIN the user typed, with the stored salt (unlocking). A wrong
    /// PIN is not detected here — by design; the daemon's counter judges its proofs.
    #[uniffi::constructor]
    pub fn derive(pin: String, salt: String) -> Result<Arc<Self>, PhoneError> {
        let pin = Zeroizing::new(pin);
        let salt = hex_bytes::<16>("salt", &salt)?;
        Ok(Arc::new(PinVerifier::derived(&pin, *salt)?))
    }

    /// The salt, 32 lowercase hex: store it, send it.
    pub fn salt(&self) -> String {
        hex::encode(self.salt)
    }

    /// The verifier, 64 lowercase hex: send it (activation, PIN change or reset), never store it.
    pub fn verifier(&self) -> String {
        hex::encode(self.verifier.as_slice())
    }

    /// The request's `pin_proof`: `HMAC-SM3(V, "mcs-pin-v1|" ‖ key_id ‖ "|" ‖ op ‖ "|" ‖ fields)`.
    pub fn proof(&self, key_id: String, op: PinOp) -> Result<String, PhoneError> {
        non_empty("key_id", &key_id)?;
        Ok(sm2_2p::pin_proof(&self.verifier, &key_id, &op.transcript()?))
    }

    /// The proof over an `op` and `fields` given as text, for an operation newer than
    /// [`PinOp`] (and for known-answer vectors); the fields are not checked.
    pub fn proof_for_fields(&self, key_id: String, op: String, fields: Vec<String>) -> Result<String, PhoneError> {
        non_empty("key_id", &key_id)?;
        non_empty("op", &op)?;
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        Ok(hex::encode(sm2_2p::proof_bytes(&self.verifier, &key_id, &op, &fields)))
    }
}
