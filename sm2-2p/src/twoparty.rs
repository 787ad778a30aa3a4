//! Key generation, signing (canonical and Tongsuo-compatible `fixed_k3`) and blinded
//! decryption, both halves, exactly as PROTOCOL.md states them.
//!
//! Secret scalars (`d1`, `d2`, `d2⁻¹`, `k1`, `k2`, `k3`, `w`) only meet constant-time field
//! and group operations (`mul`, `lincomb`, `invert`) and are zeroized on drop.

use elliptic_curve::group::Group;
use elliptic_curve::ops::Reduce;
use elliptic_curve::subtle::ConstantTimeEq;
use sm2::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sm3::{Digest, Sm3};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::cipher::{Ciphertext, kdf_xor};
use crate::encoding::{random_nonzero_scalar, scalar_from_bytes, scalar_to_bytes};
use crate::{DEFAULT_DIST_ID, Error, Result};

/// `Z = SM3(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xP ‖ yP)`.
pub fn z_digest(dist_id: &[u8], public: &AffinePoint) -> [u8; 32] {
    const A: [u8; 32] = hex_literal("fffffffeffffffffffffffffffffffffffffffff00000000fffffffffffffffc");
    const B: [u8; 32] = hex_literal("28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93");
    let entl = (dist_id.len() as u16).wrapping_mul(8);
    let g = crate::point_to_sec1(&ProjectivePoint::generator().to_affine());
    let p = crate::point_to_sec1(public);
    let mut h = Sm3::new();
    h.update(entl.to_be_bytes());
    h.update(dist_id);
    h.update(A);
    h.update(B);
    h.update(&g[1..]);
    h.update(&p[1..]);
    h.finalize().into()
}

/// `e = SM3(Z ‖ M)`.
pub fn e_digest(z: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut h = Sm3::new();
    h.update(z);
    h.update(msg);
    h.finalize().into()
}

/// `e` for a message under the default distinguishing ID.
pub fn e_for_message(public: &AffinePoint, msg: &[u8]) -> [u8; 32] {
    e_digest(&z_digest(DEFAULT_DIST_ID, public), msg)
}

const fn hex_literal(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex literal"),
    }
}

/// `x mod n` for a field element's big-endian bytes (the `x1` of a point).
fn reduce_x_bytes(x: &[u8; 32]) -> Scalar {
    <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*x))
}

fn digest_scalar(e: &[u8; 32]) -> Scalar {
    <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*e))
}

fn invert(s: &Scalar) -> Scalar {
    // Callers only pass non-zero scalars; `invert` is constant-time.
    Option::<Scalar>::from(s.invert()).unwrap_or(Scalar::ZERO)
}

// ---- server half --------------------------------------------------------------------

/// The daemon's share: `d2` and its inverse (kept together so no operation has to invert
/// a secret on the hot path).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ServerShare {
    d2: Scalar,
    d2_inv: Scalar,
}

impl core::fmt::Debug for ServerShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ServerShare(..)")
    }
}

/// Canonical signing answer `r, s2, s3`.
#[derive(Debug, Clone, Copy)]
pub struct SignResponse {
    pub r: Scalar,
    pub s2: Scalar,
    pub s3: Scalar,
}

/// `fixed_k3` signing answer `r, s3`.
#[derive(Debug, Clone, Copy)]
pub struct FixedK3Response {
    pub r: Scalar,
    pub s3: Scalar,
}

impl FixedK3Response {
    /// DER `SEQUENCE { INTEGER r, INTEGER s3 }`: the encoding Tongsuo's `sm2_threshold`
    /// clients read (PROTOCOL.md, fixed_k3).
    pub fn to_der(&self) -> Vec<u8> {
        der_pair(&self.r, &self.s3)
    }
}

/// DER `SEQUENCE { INTEGER a, INTEGER b }`.
fn der_pair(a: &Scalar, b: &Scalar) -> Vec<u8> {
    crate::asn1::encode_pair(&scalar_to_bytes(a), &scalar_to_bytes(b))
}

/// Server key generation: pick `d2`, answer `P = d2⁻¹·P1 − G` (retry on identity).
pub fn server_keygen(p1: &AffinePoint) -> (ServerShare, AffinePoint) {
    loop {
        let d2 = random_nonzero_scalar();
        let d2_inv = invert(&d2);
        if let Some(p) = crate::fast::lincomb(&d2_inv, p1, &-Scalar::ONE) {
            return (ServerShare { d2, d2_inv }, p);
        }
    }
}

impl ServerShare {
    pub(crate) fn scalars(&self) -> (Scalar, Scalar) {
        (self.d2, self.d2_inv)
    }

    pub(crate) fn from_scalars(d2: Scalar, d2_inv: Scalar) -> ServerShare {
        ServerShare { d2, d2_inv }
    }

    /// `d2 ‖ d2⁻¹`, big-endian, in zeroizing memory (this is what the HSM wraps).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(&scalar_to_bytes(&self.d2));
        out[32..].copy_from_slice(&scalar_to_bytes(&self.d2_inv));
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<ServerShare> {
        if b.len() != 64 {
            return Err(Error::InvalidLength);
        }
        let mut first = Zeroizing::new([0u8; 32]);
        let mut second = Zeroizing::new([0u8; 32]);
        first.copy_from_slice(&b[..32]);
        second.copy_from_slice(&b[32..]);
        let share = ServerShare { d2: scalar_from_bytes(&first)?, d2_inv: scalar_from_bytes(&second)? };
        if !bool::from((share.d2 * share.d2_inv).ct_eq(&Scalar::ONE)) {
            return Err(Error::InvalidScalar);
        }
        Ok(share)
    }

    /// Canonical mode: `(x1, y1) = k3·Q1 + k2·G`, `r = e + x1`, `s2 = d2·k3`, `s3 = d2·(r + k2)`.
    pub fn sign(&self, e: &[u8; 32], q1: &AffinePoint) -> SignResponse {
        loop {
            let k2 = Zeroizing::new(random_nonzero_scalar());
            let k3 = Zeroizing::new(random_nonzero_scalar());
            if let Some(answer) = self.sign_with(e, q1, &k2, &k3) {
                return answer;
            }
        }
    }

    /// One attempt of [`ServerShare::sign`] with the given nonces (`None`: pick others).
    pub(crate) fn sign_with(&self, e: &[u8; 32], q1: &AffinePoint, k2: &Scalar, k3: &Scalar) -> Option<SignResponse> {
        let x1 = crate::fast::lincomb_x(k3, q1, k2)?;
        let r = digest_scalar(e) + reduce_x_bytes(&x1);
        (!bool::from(r.is_zero())).then(|| SignResponse { r, s2: self.d2 * k3, s3: self.d2 * (r + k2) })
    }

    /// Tongsuo-compatible mode: `k3 = d2⁻¹`: `(x1, y1) = d2⁻¹·Q1 + k2·G`, `s3 = d2·(r + k2)`.
    pub fn sign_fixed_k3(&self, e: &[u8; 32], q1: &AffinePoint) -> FixedK3Response {
        loop {
            let k2 = Zeroizing::new(random_nonzero_scalar());
            if let Some(answer) = self.sign_fixed_k3_with(e, q1, &k2) {
                return answer;
            }
        }
    }

    /// One attempt of [`ServerShare::sign_fixed_k3`] with the given nonce.
    pub(crate) fn sign_fixed_k3_with(&self, e: &[u8; 32], q1: &AffinePoint, k2: &Scalar) -> Option<FixedK3Response> {
        let x1 = crate::fast::lincomb_x(&self.d2_inv, q1, k2)?;
        let r = digest_scalar(e) + reduce_x_bytes(&x1);
        (!bool::from(r.is_zero())).then(|| FixedK3Response { r, s3: self.d2 * (r + k2) })
    }

    /// Blinded decryption: `T2 = d2⁻¹·T1`.
    pub fn decrypt(&self, t1: &AffinePoint) -> AffinePoint {
        // `t1` is a valid non-identity point and `d2⁻¹ ≠ 0`, so the product is never the
        // identity (the group has prime order).
        crate::fast::mul(&self.d2_inv, t1).unwrap_or(AffinePoint::IDENTITY)
    }
}

// ---- client half --------------------------------------------------------------------

/// The phone's share `d1`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ClientShare {
    d1: Scalar,
}

impl core::fmt::Debug for ClientShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ClientShare(..)")
    }
}

/// A one-time secret scalar (`k1` for signing, `w` for decryption blinding).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Nonce(pub(crate) Scalar);

impl Nonce {
    /// A given non-zero scalar as a nonce, for reproducing known-answer vectors (the phone
    /// bindings' `known_answer_*` functions). Signing and decrypting draw their own fresh
    /// nonce ([`ClientShare::sign_start`], [`ClientShare::decrypt_blind`]); a nonce used
    /// for two different server answers gives `d1` away.
    pub fn from_scalar(k: Scalar) -> Result<Nonce> {
        if bool::from(k.is_zero()) {
            return Err(Error::InvalidScalar);
        }
        Ok(Nonce(k))
    }
}

/// Client key generation: pick `d1`, send `P1 = d1⁻¹·G`.
pub fn client_keygen() -> (ClientShare, AffinePoint) {
    let d1 = random_nonzero_scalar();
    let p1 = ProjectivePoint::mul_by_generator(&invert(&d1)).to_affine();
    (ClientShare { d1 }, p1)
}

impl ClientShare {
    pub fn from_scalar(d1: Scalar) -> Result<Self> {
        if bool::from(d1.is_zero()) {
            return Err(Error::InvalidScalar);
        }
        Ok(ClientShare { d1 })
    }

    pub fn scalar(&self) -> &Scalar {
        &self.d1
    }

    /// `P1 = d1⁻¹·G` for this share.
    pub fn p1(&self) -> AffinePoint {
        ProjectivePoint::mul_by_generator(&invert(&self.d1)).to_affine()
    }

    /// Pick `k1`, send `Q1 = k1·G`.
    pub fn sign_start() -> (Nonce, AffinePoint) {
        loop {
            let k1 = random_nonzero_scalar();
            if let Some(q1) = crate::fast::mul_base(&k1) {
                return (Nonce(k1), q1);
            }
        }
    }

    /// `s = d1·k1·s2 + d1·s3 − r`.
    pub fn sign_finish(&self, k1: &Nonce, r: &Scalar, s2: &Scalar, s3: &Scalar) -> Result<Signature> {
        let s = self.d1 * k1.0 * s2 + self.d1 * s3 - r;
        Signature::checked(*r, s)
    }

    /// `s = d1·(s3 + k1) − r`.
    pub fn sign_finish_fixed_k3(&self, k1: &Nonce, r: &Scalar, s3: &Scalar) -> Result<Signature> {
        let s = self.d1 * (*s3 + k1.0) - r;
        Signature::checked(*r, s)
    }

    /// Pick `w`, send `T1 = w·d1⁻¹·C1`.
    pub fn decrypt_blind(&self, c1: &AffinePoint) -> (Nonce, AffinePoint) {
        let w = Nonce(random_nonzero_scalar());
        let t1 = self.blind_with(&w, c1);
        (w, t1)
    }

    /// `T1 = w·d1⁻¹·C1` for a given `w`.
    pub(crate) fn blind_with(&self, w: &Nonce, c1: &AffinePoint) -> AffinePoint {
        crate::fast::mul(&(w.0 * invert(&self.d1)), c1).unwrap_or(AffinePoint::IDENTITY)
    }

    /// `(x2, y2) = w⁻¹·T2 − C1`, then the ordinary SM2 KDF, XOR and C3 check.
    pub fn decrypt_finish(&self, w: &Nonce, t2: &AffinePoint, ct: &Ciphertext) -> Result<Zeroizing<Vec<u8>>> {
        let shared = ProjectivePoint::from(*t2) * invert(&w.0) - ProjectivePoint::from(ct.c1);
        if bool::from(shared.is_identity()) {
            return Err(Error::DecryptFailed);
        }
        decrypt_with_shared(&shared.to_affine(), ct)
    }
}

/// The shared-point half of SM2 decryption: KDF, XOR, and the C3 integrity check.
pub(crate) fn decrypt_with_shared(shared: &AffinePoint, ct: &Ciphertext) -> Result<Zeroizing<Vec<u8>>> {
    let xy = Zeroizing::new(crate::point_to_sec1(shared));
    let mut msg = Zeroizing::new(ct.c2.clone());
    if !kdf_xor(&xy[1..], &mut msg) {
        return Err(Error::DecryptFailed);
    }
    let mut h = Sm3::new();
    h.update(&xy[1..33]);
    h.update(msg.as_slice());
    h.update(&xy[33..]);
    let c3: [u8; 32] = h.finalize().into();
    if !bool::from(c3.ct_eq(&ct.c3)) {
        return Err(Error::DecryptFailed);
    }
    Ok(msg)
}

// ---- single-party keys (the daemon's own: CA, seal maker, audit) -------------------------

/// An ordinary SM2 private key held by the daemon (wrapped by the HSM at rest).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DaemonKey {
    d: Scalar,
    /// `(1 + d)⁻¹`, kept to spare an inversion per signature.
    inv_1_plus_d: Scalar,
}

impl core::fmt::Debug for DaemonKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DaemonKey(..)")
    }
}

impl DaemonKey {
    pub fn generate() -> DaemonKey {
        loop {
            let d = random_nonzero_scalar();
            // d = n − 1 has no (1 + d)⁻¹; vanishingly rare, but refuse it.
            if let Some(inv) = Option::<Scalar>::from((d + Scalar::ONE).invert()) {
                return DaemonKey { d, inv_1_plus_d: inv };
            }
        }
    }

    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(scalar_to_bytes(&self.d))
    }

    pub fn from_bytes(b: &[u8]) -> Result<DaemonKey> {
        let b: &[u8; 32] = b.try_into().map_err(|_| Error::InvalidLength)?;
        let d = scalar_from_bytes(b)?;
        let inv = Option::<Scalar>::from((d + Scalar::ONE).invert()).ok_or(Error::InvalidScalar)?;
        Ok(DaemonKey { d, inv_1_plus_d: inv })
    }

    pub fn public(&self) -> AffinePoint {
        ProjectivePoint::mul_by_generator(&self.d).to_affine()
    }

    /// Ordinary SM2 signature over `msg` (default ID): `r = e + x1`, `s = (1+d)⁻¹·(k − r·d)`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        let e = digest_scalar(&e_for_message(&self.public(), msg));
        loop {
            let k = Zeroizing::new(random_nonzero_scalar());
            let Some(x) = crate::fast::mul_base_x(&k) else { continue };
            let x1 = reduce_x_bytes(&x);
            let r = e + x1;
            if bool::from(r.is_zero() | (r + *k).is_zero()) {
                continue;
            }
            let s = self.inv_1_plus_d * (*k - r * self.d);
            if let Ok(sig) = Signature::checked(r, s) {
                return sig;
            }
        }
    }
}

// ---- signatures ---------------------------------------------------------------------

/// An SM2 signature `(r, s)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    pub r: Scalar,
    pub s: Scalar,
}

impl Signature {
    fn checked(r: Scalar, s: Scalar) -> Result<Signature> {
        if bool::from(r.is_zero() | s.is_zero()) {
            return Err(Error::InvalidSignature);
        }
        Ok(Signature { r, s })
    }

    /// DER `SEQUENCE { INTEGER r, INTEGER s }`.
    pub fn to_der(&self) -> Vec<u8> {
        der_pair(&self.r, &self.s)
    }

    /// Strict DER; both values in `(0, n)`.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let (r, s) = crate::asn1::decode_pair(der).ok_or(Error::InvalidSignature)?;
        Signature::checked(scalar_from_bytes(&r)?, scalar_from_bytes(&s)?)
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&scalar_to_bytes(&self.r));
        out[32..].copy_from_slice(&scalar_to_bytes(&self.s));
        out
    }
}

/// Ordinary SM2 verification of `(r, s)` over the digest `e` (all inputs are public; it
/// runs on the same constant-time backend as signing).
pub fn verify(public: &AffinePoint, e: &[u8; 32], sig: &Signature) -> bool {
    if bool::from(sig.r.is_zero() | sig.s.is_zero()) {
        return false;
    }
    let t = sig.r + sig.s;
    if bool::from(t.is_zero()) {
        return false;
    }
    let Some(x1) = crate::fast::lincomb_x(&t, public, &sig.s) else { return false };
    let r = digest_scalar(e) + reduce_x_bytes(&x1);
    bool::from(r.ct_eq(&sig.r))
}
