//! The protocol's two DER structures, through the `der` crate: strict DER (minimal lengths,
//! minimal non-negative INTEGERs, nothing after the outer SEQUENCE) on the way in, and the
//! canonical encoding on the way out.

use der::asn1::{OctetStringRef, UintRef};
use der::{Decode, Encode, Sequence};

/// GM/T 0009 `SM2Cipher ::= SEQUENCE { XCoordinate INTEGER, YCoordinate INTEGER, HASH OCTET
/// STRING, CipherText OCTET STRING }`, as OpenSSL writes it.
#[derive(Sequence)]
struct Sm2Cipher<'a> {
    x: UintRef<'a>,
    y: UintRef<'a>,
    hash: &'a OctetStringRef,
    ciphertext: &'a OctetStringRef,
}

/// `SEQUENCE { INTEGER, INTEGER }`: an SM2 signature `(r, s)`, and fixed_k3's `(r, s3)`.
#[derive(Sequence)]
struct IntegerPair<'a> {
    a: UintRef<'a>,
    b: UintRef<'a>,
}

/// An INTEGER of at most 32 bytes, left-padded with zeroes.
fn to_32(u: &UintRef<'_>) -> Option<[u8; 32]> {
    let v = u.as_bytes();
    let mut out = [0u8; 32];
    out.get_mut(32usize.checked_sub(v.len())?..)?.copy_from_slice(v);
    Some(out)
}

/// The fields of a decoded `SM2Cipher`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CipherParts<'a> {
    pub x: [u8; 32],
    pub y: [u8; 32],
    pub hash: &'a [u8],
    pub ciphertext: &'a [u8],
}

/// A DER `SM2Cipher`; `None` if it is not strict DER or a coordinate is longer than 32 bytes.
pub(crate) fn decode_sm2_cipher(der: &[u8]) -> Option<CipherParts<'_>> {
    let c = Sm2Cipher::from_der(der).ok()?;
    Some(CipherParts { x: to_32(&c.x)?, y: to_32(&c.y)?, hash: c.hash.as_bytes(), ciphertext: c.ciphertext.as_bytes() })
}

pub(crate) fn encode_sm2_cipher(x: &[u8; 32], y: &[u8; 32], hash: &[u8; 32], ciphertext: &[u8]) -> Vec<u8> {
    let encode = || -> der::Result<Vec<u8>> {
        Sm2Cipher {
            x: UintRef::new(x)?,
            y: UintRef::new(y)?,
            hash: OctetStringRef::new(hash)?,
            ciphertext: OctetStringRef::new(ciphertext)?,
        }
        .to_der()
    };
    // Only a length beyond DER's 256 MiB limit fails; ciphertexts are far smaller.
    encode().unwrap_or_default()
}

/// The two 32-byte INTEGERs of a DER `SEQUENCE { INTEGER, INTEGER }`.
pub(crate) fn decode_pair(der: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    let p = IntegerPair::from_der(der).ok()?;
    Some((to_32(&p.a)?, to_32(&p.b)?))
}

pub(crate) fn encode_pair(a: &[u8; 32], b: &[u8; 32]) -> Vec<u8> {
    let encode = || -> der::Result<Vec<u8>> { IntegerPair { a: UintRef::new(a)?, b: UintRef::new(b)? }.to_der() };
    // Two 32-byte INTEGERs always encode.
    encode().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_non_negative_both_ways() {
        let mut a = [0u8; 32];
        a[31] = 1;
        let b = [0xffu8; 32];
        let der = encode_pair(&a, &b);
        // 1 is one byte; 0xff… needs a 0x00 in front.
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
        assert_eq!(decode_pair(&der), Some((a, b)));
        // A redundant leading zero, a negative INTEGER, trailing bytes, a long-form length
        // that fits short form, and a 33-byte value are refused.
        assert_eq!(decode_pair(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01]), None);
        assert_eq!(decode_pair(&[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01]), None);
        assert_eq!(decode_pair(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00]), None);
        assert_eq!(decode_pair(&[0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]), None);
        let mut long = vec![0x30, 0x25, 0x02, 0x21, 0x01];
        long.extend_from_slice(&[0u8; 32]);
        long.extend_from_slice(&[0x02, 0x01, 0x01]);
        assert_eq!(decode_pair(&long), None);
    }

    #[test]
    fn sm2_cipher_round_trips() {
        let (x, y, h) = ([0x80u8; 32], [0x01u8; 32], [0x33u8; 32]);
        let der = encode_sm2_cipher(&x, &y, &h, b"secret");
        assert_eq!(decode_sm2_cipher(&der), Some(CipherParts { x, y, hash: &h, ciphertext: b"secret" }));
        assert_eq!(decode_sm2_cipher(&der[..der.len() - 1]), None);
    }
}
