//! The signature finishes with a given `k1`, for reproducing `docs/test-vectors.json`
//! (families `signature_finish` and `fixed_k3_finish`) through the bindings. An app never
//! uses these: it signs through [`crate::KeyShare::sign_start`], whose nonce is fresh and
//! never leaves Rust.

use sm2_2p::{ClientShare, Nonce};

use crate::error::{PhoneError, invalid};
use crate::share::Signature;

fn scalar(field: &str, value: &str) -> Result<zeroize::Zeroizing<sm2_2p::Scalar>, PhoneError> {
    sm2_2p::scalar_from_hex(value).map(zeroize::Zeroizing::new).map_err(invalid(field))
}

fn parts(d1: &str, k1: &str) -> Result<(ClientShare, Nonce), PhoneError> {
    let share = ClientShare::from_scalar(*scalar("d1", d1)?).map_err(invalid("d1"))?;
    let nonce = Nonce::from_scalar(*scalar("k1", k1)?).map_err(invalid("k1"))?;
    Ok((share, nonce))
}

/// Known-answer check only: `s = d1·k1·s2 + d1·s3 − r` for given `d1`, `k1` (hex).
#[uniffi::export]
pub fn known_answer_sign_finish(
    d1: String,
    k1: String,
    r: String,
    s2: String,
    s3: String,
) -> Result<Signature, PhoneError> {
    let (share, k1) = parts(&d1, &k1)?;
    let (r, s2, s3) = (scalar("r", &r)?, scalar("s2", &s2)?, scalar("s3", &s3)?);
    let sig =
        share.sign_finish(&k1, &r, &s2, &s3).map_err(|e| PhoneError::SignatureInvalid { reason: e.to_string() })?;
    Ok(Signature::from_sm2(&sig))
}

/// Known-answer check only: `s = d1·(s3 + k1) − r` for given `d1`, `k1` (hex).
#[uniffi::export]
pub fn known_answer_sign_finish_fixed_k3(
    d1: String,
    k1: String,
    r: String,
    s3: String,
) -> Result<Signature, PhoneError> {
    let (share, k1) = parts(&d1, &k1)?;
    let (r, s3) = (scalar("r", &r)?, scalar("s3", &s3)?);
    let sig =
        share.sign_finish_fixed_k3(&k1, &r, &s3).map_err(|e| PhoneError::SignatureInvalid { reason: e.to_string() })?;
    Ok(Signature::from_sm2(&sig))
}
