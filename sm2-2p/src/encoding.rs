//! Wire encodings of PROTOCOL.md: points as SEC1 uncompressed hex, scalars and digests as
//! 64 lowercase hex characters. Decoders accept either hex case but emit lowercase only.

use elliptic_curve::ff::PrimeField;
use elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use sm2::{AffinePoint, FieldBytes, Scalar, Sec1Point};
use subtle::Choice;

use crate::{Error, Result};

/// PROTOCOL.md encodes hex in lowercase, and PIN proofs cover the strings as sent: an
/// uppercase digit is refused here, before any proof could be evaluated over it.
fn hex_fixed<const N: usize>(s: &str) -> Result<[u8; N]> {
    if s.len() != 2 * N {
        return Err(Error::InvalidLength);
    }
    if !is_lowercase_hex(s) {
        return Err(Error::InvalidHex);
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| Error::InvalidHex)?;
    Ok(out)
}

/// Only `0-9a-f`.
pub fn is_lowercase_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A point from 130 hex characters `04‖x‖y`: on the curve and not the identity.
pub fn point_from_hex(s: &str) -> Result<AffinePoint> {
    point_from_sec1(&hex_fixed::<65>(s)?)
}

/// A point from 65 bytes SEC1 uncompressed: on the curve and not the identity.
pub fn point_from_sec1(bytes: &[u8]) -> Result<AffinePoint> {
    if bytes.len() != 65 {
        return Err(Error::InvalidLength);
    }
    if bytes[0] != 0x04 {
        return Err(Error::InvalidPoint);
    }
    let encoded = Sec1Point::from_bytes(bytes).map_err(|_| Error::InvalidPoint)?;
    let point: Option<AffinePoint> = AffinePoint::from_sec1_point(&encoded).into();
    let point = point.ok_or(Error::InvalidPoint)?;
    if bool::from(is_identity(&point)) {
        return Err(Error::InvalidPoint);
    }
    Ok(point)
}

fn is_identity(p: &AffinePoint) -> Choice {
    use elliptic_curve::group::Group;
    sm2::ProjectivePoint::from(*p).is_identity()
}

pub fn point_to_sec1(p: &AffinePoint) -> [u8; 65] {
    let encoded = p.to_sec1_point(false);
    let mut out = [0u8; 65];
    // An affine point other than the identity always encodes to 65 bytes; the identity
    // (never produced by this crate's operations on valid input) encodes as all zeroes.
    if encoded.as_bytes().len() == 65 {
        out.copy_from_slice(encoded.as_bytes());
    }
    out
}

/// DER SubjectPublicKeyInfo: id-ecPublicKey with the SM2 curve OID 1.2.156.10197.1.301,
/// the form OpenSSL 3 and X.509 certificates use for SM2 keys.
pub fn spki_der(p: &AffinePoint) -> Vec<u8> {
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x81, 0x1c,
        0xcf, 0x55, 0x01, 0x82, 0x2d, 0x03, 0x42, 0x00,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(&point_to_sec1(p));
    der
}

pub fn point_to_hex(p: &AffinePoint) -> String {
    hex::encode(point_to_sec1(p))
}

/// A scalar from 32 big-endian bytes, required to be in `(0, n)`.
pub(crate) fn scalar_from_bytes(bytes: &[u8; 32]) -> Result<Scalar> {
    let s: Option<Scalar> = Scalar::from_repr(FieldBytes::from(*bytes)).into();
    match s {
        Some(s) if !bool::from(s.is_zero()) => Ok(s),
        _ => Err(Error::InvalidScalar),
    }
}

pub fn scalar_from_hex(s: &str) -> Result<Scalar> {
    scalar_from_bytes(&hex_fixed::<32>(s)?)
}

pub(crate) fn scalar_to_bytes(s: &Scalar) -> [u8; 32] {
    s.to_repr().into()
}

pub fn scalar_to_hex(s: &Scalar) -> String {
    hex::encode(scalar_to_bytes(s))
}

pub fn digest_from_hex(s: &str) -> Result<[u8; 32]> {
    hex_fixed::<32>(s)
}

/// A uniformly random scalar in `[1, n-1]` from the OS CSPRNG (rejection sampling).
pub fn random_nonzero_scalar() -> Scalar {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    loop {
        // The OS RNG failing is unrecoverable for a signer; refusing to go on is the only
        // safe answer.
        getrandom::fill(bytes.as_mut()).expect("OS random number generator failed");
        if let Ok(s) = scalar_from_bytes(&bytes) {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use elliptic_curve::group::Group;

    const N_HEX: &str = "fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123";

    #[test]
    fn scalars_outside_zero_n_are_rejected() {
        assert_eq!(scalar_from_hex(&"00".repeat(32)), Err(Error::InvalidScalar));
        assert_eq!(scalar_from_hex(N_HEX), Err(Error::InvalidScalar));
        assert_eq!(
            scalar_from_hex("fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54124"),
            Err(Error::InvalidScalar)
        );
        assert_eq!(scalar_from_hex(&"ff".repeat(32)), Err(Error::InvalidScalar));
        let n_minus_1 = "fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54122";
        assert_eq!(scalar_to_hex(&scalar_from_hex(n_minus_1).unwrap()), n_minus_1);
        assert_eq!(scalar_from_hex("00"), Err(Error::InvalidLength));
        assert_eq!(scalar_from_hex(&"zz".repeat(32)), Err(Error::InvalidHex));
    }

    /// Defect 10 of issue 11: uppercase hex was accepted and turned a malformed request
    /// into a counted PIN failure. PROTOCOL.md says lowercase.
    #[test]
    fn uppercase_hex_is_refused() {
        let lower = "0a".repeat(32);
        assert!(scalar_from_hex(&lower).is_ok());
        assert_eq!(scalar_from_hex(&"0A".repeat(32)), Err(Error::InvalidHex));
        assert_eq!(digest_from_hex(&"AB".repeat(32)), Err(Error::InvalidHex));
        let g = point_to_hex(&sm2::ProjectivePoint::generator().to_affine());
        assert_eq!(point_from_hex(&g.to_uppercase()), Err(Error::InvalidHex));
        assert!(point_from_hex(&g).is_ok());
    }

    #[test]
    fn bad_points_are_rejected() {
        let g = sm2::ProjectivePoint::generator().to_affine();
        let good = point_to_hex(&g);
        assert_eq!(point_from_hex(&good).unwrap(), g);
        assert_eq!(point_from_hex(&good[..128]), Err(Error::InvalidLength));
        // off the curve: flip the last bit of y
        let mut bytes = point_to_sec1(&g);
        bytes[64] ^= 1;
        assert_eq!(point_from_sec1(&bytes), Err(Error::InvalidPoint));
        // identity and compressed encodings
        assert!(point_from_sec1(&[0u8; 65]).is_err());
        let mut compressed = [0u8; 65];
        compressed[0] = 0x02;
        compressed[1..33].copy_from_slice(&point_to_sec1(&g)[1..33]);
        assert_eq!(point_from_sec1(&compressed), Err(Error::InvalidPoint));
        assert_eq!(point_from_hex(&format!("04{}", "00".repeat(64))), Err(Error::InvalidPoint));
    }
}
