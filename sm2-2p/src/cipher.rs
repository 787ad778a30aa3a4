//! SM2 public-key encryption ciphertexts (GB/T 32918.4): the raw `C1‖C3‖C2` layout and the
//! GM/T 0009 DER `SM2Cipher` that OpenSSL writes (`asn1`), the SM3 KDF and plain
//! encryption.

use elliptic_curve::group::Group;
use sm2::{AffinePoint, ProjectivePoint, Scalar};
use sm3::{Digest, Sm3};
use zeroize::Zeroizing;

use crate::encoding::random_nonzero_scalar;
use crate::{Error, Result, point_from_sec1, point_to_sec1};

/// A parsed SM2 ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext {
    pub c1: AffinePoint,
    pub c3: [u8; 32],
    pub c2: Vec<u8>,
}

impl Ciphertext {
    /// `C1‖C3‖C2` (C1 uncompressed, starting 0x04) or DER `SM2Cipher` (starting 0x30).
    pub fn parse(bytes: &[u8]) -> Result<Ciphertext> {
        match bytes.first() {
            Some(0x04) if bytes.len() > 97 => {
                let c1 = point_from_sec1(&bytes[..65]).map_err(|_| Error::InvalidCiphertext)?;
                let mut c3 = [0u8; 32];
                c3.copy_from_slice(&bytes[65..97]);
                Ok(Ciphertext { c1, c3, c2: bytes[97..].to_vec() })
            }
            Some(0x30) => Self::parse_der(bytes),
            _ => Err(Error::InvalidCiphertext),
        }
    }

    fn parse_der(bytes: &[u8]) -> Result<Ciphertext> {
        let parts = crate::asn1::decode_sm2_cipher(bytes).ok_or(Error::InvalidCiphertext)?;
        let c3: [u8; 32] = parts.hash.try_into().map_err(|_| Error::InvalidCiphertext)?;
        if parts.ciphertext.is_empty() {
            return Err(Error::InvalidCiphertext);
        }
        let (x, y, c2) = (parts.x, parts.y, parts.ciphertext.to_vec());
        let mut point = [0u8; 65];
        point[0] = 0x04;
        point[1..33].copy_from_slice(&x);
        point[33..].copy_from_slice(&y);
        let c1 = point_from_sec1(&point).map_err(|_| Error::InvalidCiphertext)?;
        Ok(Ciphertext { c1, c3, c2 })
    }

    pub fn to_c1c3c2(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(97 + self.c2.len());
        out.extend_from_slice(&point_to_sec1(&self.c1));
        out.extend_from_slice(&self.c3);
        out.extend_from_slice(&self.c2);
        out
    }

    pub fn to_der(&self) -> Vec<u8> {
        let p = point_to_sec1(&self.c1);
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        x.copy_from_slice(&p[1..33]);
        y.copy_from_slice(&p[33..]);
        crate::asn1::encode_sm2_cipher(&x, &y, &self.c3, &self.c2)
    }
}

/// XOR `data` with `KDF(z, len)` (SM3, 32-bit big-endian counter from 1). Returns false if
/// the key stream is all zeroes (the standard requires rejecting that case).
pub(crate) fn kdf_xor(z: &[u8], data: &mut [u8]) -> bool {
    let mut any_nonzero = 0u8;
    for (i, chunk) in data.chunks_mut(32).enumerate() {
        let mut h = Sm3::new();
        h.update(z);
        h.update(((i as u32) + 1).to_be_bytes());
        let block = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
        for (d, k) in chunk.iter_mut().zip(block.iter()) {
            any_nonzero |= *k;
            *d ^= *k;
        }
    }
    any_nonzero != 0 || data.is_empty()
}

/// Ordinary SM2 encryption to `public`.
pub fn encrypt(public: &AffinePoint, msg: &[u8]) -> Ciphertext {
    loop {
        let k = Zeroizing::new(random_nonzero_scalar());
        if let Some(c) = encrypt_with(public, msg, &k) {
            return c;
        }
    }
}

/// The body of [`encrypt`] with the ephemeral `k` given (the known-answer vectors fix it);
/// `None` when `k` gives the identity or an all-zero key stream, and the caller draws again.
pub(crate) fn encrypt_with(public: &AffinePoint, msg: &[u8], k: &Scalar) -> Option<Ciphertext> {
    let c1 = ProjectivePoint::mul_by_generator(k).to_affine();
    let shared = ProjectivePoint::from(*public) * *k;
    if bool::from(shared.is_identity()) {
        return None;
    }
    let xy = Zeroizing::new(point_to_sec1(&shared.to_affine()));
    let mut c2 = msg.to_vec();
    if !kdf_xor(&xy[1..], &mut c2) {
        return None;
    }
    let mut h = Sm3::new();
    h.update(&xy[1..33]);
    h.update(msg);
    h.update(&xy[33..]);
    Some(Ciphertext { c1, c3: h.finalize().into(), c2 })
}
