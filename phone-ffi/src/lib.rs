//! The phone's half of mcsd's two-party SM2 (PROTOCOL.md), for Android and iOS apps through
//! UniFFI: the exact `sm2-2p` code the reference client runs, and `mcs-api`'s reader of task
//! QR strings, behind an interface Kotlin, Swift (and Python, for the tests) generate
//! bindings for from the built library. No networking: the app speaks HTTPS with its own
//! client certificate and passes the JSON fields through these functions.
//!
//! Secrets stay in Rust objects and are wiped when the object is dropped: the share `d1`
//! ([`KeyShare`]), the PIN verifier ([`PinVerifier`]), the recovery key ([`RecoveryKey`]),
//! the transport secret of a re-share ([`TransportKey`]) and the one-time nonces of signing
//! and decrypting ([`SignSession`], [`DecryptSession`], each usable once). What leaves them
//! is what the protocol sends or the app stores: `P1`, `Q1`, `T1`, proofs, the PIN-masked
//! `d1` and the sealed recovery copy. Every input is checked (hex in lowercase, points on
//! the curve, scalars in `(0, n)`); a refusal is a [`PhoneError`] naming the field, never a
//! panic across the FFI.

mod error;
mod key;
mod known_answer;
mod pin;
mod qr;
mod recovery;
mod reshare;
mod share;

pub use error::PhoneError;
pub use key::JointKey;
pub use known_answer::{known_answer_sign_finish, known_answer_sign_finish_fixed_k3};
pub use pin::{BatchItem, PinOp, PinVerifier};
pub use qr::{ScanCode, parse_task_qr};
pub use recovery::RecoveryKey;
pub use reshare::TransportKey;
pub use share::{DecryptSession, KeyShare, SignSession, Signature};

uniffi::setup_scaffolding!();

/// This binding's version (the crate's), so an app can log what it runs.
#[uniffi::export]
pub fn binding_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
