//! The one error type of the binding: each variant says what went wrong in words an app
//! developer can act on, and which input it was.

/// Why a call was refused. Kotlin sees `PhoneException.<Variant>`, Swift `PhoneError.<variant>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum PhoneError {
    /// An input is malformed: wrong length, not lowercase hex, not a point on the curve, a
    /// scalar outside `(0, n)`, an empty id.
    #[error("invalid `{field}`: {reason}")]
    InvalidInput { field: String, reason: String },
    /// Not an mcs task QR string (`reason` is the rule it breaks).
    #[error("not an mcs task QR code: {reason}")]
    InvalidQr { reason: String },
    /// A ciphertext did not open: not for this key, changed, or (in a co-decryption) a wrong
    /// PIN or a wrong daemon answer.
    #[error("decryption failed: {reason}")]
    DecryptFailed { reason: String },
    /// The finished joint signature does not verify: a wrong PIN or a wrong daemon answer.
    #[error("signature refused: {reason}")]
    SignatureInvalid { reason: String },
    /// A re-shared `d1'` that does not form the key's joint public key with the daemon's
    /// `p2`: refused, never to be used.
    #[error("the share does not form the joint key: {reason}")]
    ShareMismatch { reason: String },
    /// The daemon's `e` is not the digest of what the task shows over this key: do not
    /// co-sign.
    #[error("the daemon's digest {claimed} is not the digest {expected} of the shown data")]
    DigestMismatch { expected: String, claimed: String },
    /// A one-time session used again: start a new one.
    #[error("{reason}")]
    SessionUsed { reason: String },
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {reason}")]
    Random { reason: String },
}

impl PhoneError {
    pub(crate) fn input(field: &str, reason: impl Into<String>) -> PhoneError {
        PhoneError::InvalidInput { field: field.to_owned(), reason: reason.into() }
    }
}

/// `sm2_2p`'s refusal of input `field`.
pub(crate) fn invalid(field: &str) -> impl Fn(sm2_2p::Error) -> PhoneError + '_ {
    move |e| PhoneError::input(field, e.to_string())
}

/// A non-empty text input (ids).
pub(crate) fn non_empty(field: &str, value: &str) -> Result<(), PhoneError> {
    match value.is_empty() {
        true => Err(PhoneError::input(field, "empty")),
        false => Ok(()),
    }
}

/// Random bytes from the OS, as an error rather than a panic when it fails.
pub(crate) fn random_bytes<const N: usize>() -> Result<zeroize::Zeroizing<[u8; N]>, PhoneError> {
    let mut out = zeroize::Zeroizing::new([0u8; N]);
    getrandom::fill(&mut out[..]).map_err(|e| PhoneError::Random { reason: e.to_string() })?;
    Ok(out)
}

/// Lowercase hex of exactly `N` bytes (PROTOCOL.md's encoding of salts, verifiers, keys).
pub(crate) fn hex_bytes<const N: usize>(field: &str, s: &str) -> Result<zeroize::Zeroizing<[u8; N]>, PhoneError> {
    if s.len() != 2 * N {
        return Err(PhoneError::input(field, format!("{} hex characters expected, got {}", 2 * N, s.len())));
    }
    if !sm2_2p::is_lowercase_hex(s) {
        return Err(PhoneError::input(field, "not lowercase hex"));
    }
    let mut out = zeroize::Zeroizing::new([0u8; N]);
    hex::decode_to_slice(s, &mut out[..]).map_err(|e| PhoneError::input(field, e.to_string()))?;
    Ok(out)
}

/// Lowercase hex of any even length, at least one byte.
pub(crate) fn hex_vec(field: &str, s: &str) -> Result<Vec<u8>, PhoneError> {
    if s.is_empty() || !sm2_2p::is_lowercase_hex(s) {
        return Err(PhoneError::input(field, "not lowercase hex"));
    }
    hex::decode(s).map_err(|e| PhoneError::input(field, e.to_string()))
}
