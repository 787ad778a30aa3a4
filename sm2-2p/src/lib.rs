//! Two-party SM2 (PROTOCOL.md), as pure functions: no IO, no clocks, no global state.
//!
//! The phone holds `d1`, the daemon holds `d2`, and the joint key `d` satisfies
//! `(1+d)⁻¹ = d1·d2`; neither party ever computes `d`. This crate is shared by the daemon
//! (server half: [`server_keygen`], [`ServerShare`]) and the reference client (client half:
//! [`client_keygen`], [`ClientShare`]), so both sides of the protocol are the same code
//! that the tests cross-check against the `sm2` crate and OpenSSL.
//!
//! Rules kept everywhere: every decoder validates (points on the curve and not the
//! identity, scalars in `(0, n)`), no input can cause a panic, secret scalars are used only
//! with constant-time arithmetic and are zeroized when dropped. All group arithmetic runs on
//! the constant-time backend of [`fast`], [`verify`] included (its inputs are public, so it
//! could be variable-time; one code path is simpler and it is fast enough).

// Unsafe code only in `fast::adx` (inline assembly) and at its two call sites.
#![deny(unsafe_code)]

mod asn1;
mod cipher;
mod encoding;
pub mod fast;
pub mod kat;
pub mod phone;
mod pin;
mod reshare;
mod twoparty;

pub use sm2::{AffinePoint, ProjectivePoint, Scalar};

pub use cipher::{Ciphertext, encrypt};
pub use encoding::{
    digest_from_hex, is_lowercase_hex, point_from_hex, point_from_sec1, point_to_hex, point_to_sec1,
    random_nonzero_scalar, scalar_from_hex, scalar_to_hex, spki_der,
};
pub use pin::{Transcript, hmac_sm3, pin_proof, pin_proof_matches, pin_verifier, proof_bytes};
pub use reshare::{TransportKey, pair_forms};
pub use twoparty::{
    ClientShare, DaemonKey, FixedK3Response, Nonce, ServerShare, SignResponse, Signature, client_keygen, e_digest,
    e_for_message, server_keygen, verify, z_digest,
};

/// The default SM2 distinguishing identifier (ENTL = 0x0080).
pub const DEFAULT_DIST_ID: &[u8] = b"1234567812345678";

/// Why an input was refused or an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    InvalidHex,
    InvalidLength,
    InvalidPoint,
    InvalidScalar,
    InvalidCiphertext,
    DecryptFailed,
    InvalidSignature,
    /// A re-shared `d1'` that does not form the joint key with the server's `p2`.
    ShareMismatch,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::InvalidHex => "invalid hex encoding",
            Error::InvalidLength => "invalid length",
            Error::InvalidPoint => "invalid point",
            Error::InvalidScalar => "invalid scalar",
            Error::InvalidCiphertext => "invalid SM2 ciphertext",
            Error::DecryptFailed => "decryption failed",
            Error::InvalidSignature => "invalid signature",
            Error::ShareMismatch => "the share does not form the joint key",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;
