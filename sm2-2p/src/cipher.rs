//! SM2 public-key encryption ciphertexts (GB/T 32918.4): the raw `C1‖C3‖C2` layout and the
//! GM/T 0009 DER `SM2Cipher` that OpenSSL writes, the SM3 KDF, plain encryption, and the
//! small strict DER reader/writer both formats (and signatures) need.

use elliptic_curve::group::Group;
use sm2::{AffinePoint, ProjectivePoint};
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
        let bad = |_| Error::InvalidCiphertext;
        let mut outer = DerReader::new(bytes);
        let mut seq = DerReader::new(outer.read(0x30).map_err(bad)?);
        outer.finish().map_err(bad)?;
        let x = seq.integer32().map_err(bad)?;
        let y = seq.integer32().map_err(bad)?;
        let c3: [u8; 32] = seq.read(0x04).map_err(bad)?.try_into().map_err(|_| Error::InvalidCiphertext)?;
        let c2 = seq.read(0x04).map_err(bad)?.to_vec();
        seq.finish().map_err(bad)?;
        if c2.is_empty() {
            return Err(Error::InvalidCiphertext);
        }
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
        let mut body = Vec::with_capacity(110 + self.c2.len());
        der_integer(&mut body, &p[1..33]);
        der_integer(&mut body, &p[33..]);
        der_header(&mut body, 0x04, 32);
        body.extend_from_slice(&self.c3);
        der_header(&mut body, 0x04, self.c2.len());
        body.extend_from_slice(&self.c2);
        let mut out = Vec::with_capacity(body.len() + 6);
        der_header(&mut out, 0x30, body.len());
        out.extend_from_slice(&body);
        out
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
        let c1 = ProjectivePoint::mul_by_generator(&*k).to_affine();
        let shared = ProjectivePoint::from(*public) * *k;
        if bool::from(shared.is_identity()) {
            continue;
        }
        let xy = Zeroizing::new(point_to_sec1(&shared.to_affine()));
        let mut c2 = msg.to_vec();
        if !kdf_xor(&xy[1..], &mut c2) {
            continue;
        }
        let mut h = Sm3::new();
        h.update(&xy[1..33]);
        h.update(msg);
        h.update(&xy[33..]);
        return Ciphertext { c1, c3: h.finalize().into(), c2 };
    }
}

// ---- minimal strict DER ---------------------------------------------------------------

pub(crate) fn der_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A non-negative INTEGER from big-endian bytes, minimally encoded.
pub(crate) fn der_integer(out: &mut Vec<u8>, be: &[u8]) {
    let skip = be.iter().take_while(|b| **b == 0).count().min(be.len().saturating_sub(1));
    let v = &be[skip..];
    let pad = v.first().is_some_and(|b| b & 0x80 != 0);
    der_header(out, 0x02, v.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(v);
}

#[derive(Debug)]
pub(crate) struct DerError;

pub(crate) struct DerReader<'a> {
    rest: &'a [u8],
}

impl<'a> DerReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        DerReader { rest: bytes }
    }

    /// Read one element with the given tag; returns its contents. Lengths must be minimal.
    pub(crate) fn read(&mut self, tag: u8) -> core::result::Result<&'a [u8], DerError> {
        let (&t, rest) = self.rest.split_first().ok_or(DerError)?;
        if t != tag {
            return Err(DerError);
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError)?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n || rest[0] == 0 {
                return Err(DerError);
            }
            let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            if len < 0x80 {
                return Err(DerError);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(DerError);
        }
        let (content, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(content)
    }

    /// A minimally encoded non-negative INTEGER of at most 32 bytes, left-padded.
    pub(crate) fn integer32(&mut self) -> core::result::Result<[u8; 32], DerError> {
        let v = self.read(0x02)?;
        match v {
            [] => return Err(DerError),
            [b, ..] if b & 0x80 != 0 => return Err(DerError),
            [0, next, ..] if next & 0x80 == 0 => return Err(DerError),
            _ => {}
        }
        let v = if v[0] == 0 && v.len() > 1 { &v[1..] } else { v };
        if v.len() > 32 {
            return Err(DerError);
        }
        let mut out = [0u8; 32];
        out[32 - v.len()..].copy_from_slice(v);
        Ok(out)
    }

    pub(crate) fn finish(&self) -> core::result::Result<(), DerError> {
        if self.rest.is_empty() { Ok(()) } else { Err(DerError) }
    }
}
