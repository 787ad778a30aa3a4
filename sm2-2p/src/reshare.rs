//! Re-sharing (PROTOCOL.md "Re-sharing"): a second pair `(d1', d2')` of the same joint key
//! for another device B, with `d1'·d2' = d1·d2`, so `P`, its certificate and its seals stay.
//!
//! The daemon picks `u` and keeps `d2' = d2·u⁻¹` ([`ServerShare::reshare`]); the owner's
//! phone A turns `u` into `d1' = d1·u` and seals it to B's transport key `T = t·G`
//! ([`ClientShare::reshare_to`]); B opens it and, before trusting it, checks that the pair
//! forms the joint key: `d1'⁻¹·p2 − G = P` with `p2 = d2'⁻¹·G` ([`TransportKey::open_share`]).
//! A share that does not pass (corrupted in transit, or a server handing out another pair)
//! is refused, so B never signs with a half that is not `P`'s.

use elliptic_curve::group::Group;
use elliptic_curve::subtle::ConstantTimeEq;
use sm2::{AffinePoint, ProjectivePoint, Scalar};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::cipher::Ciphertext;
use crate::encoding::{random_nonzero_scalar, scalar_from_bytes, scalar_to_bytes};
use crate::twoparty::{ClientShare, ServerShare, decrypt_with_shared};
use crate::{Error, Result};

impl ServerShare {
    /// Step 2 on the daemon: `u` (for A) and `d2' = d2·u⁻¹` (kept for B). Both are secrets:
    /// `u` together with `d2'` gives back `d2`.
    pub fn reshare(&self) -> (Zeroizing<Scalar>, ServerShare) {
        let u = Zeroizing::new(random_nonzero_scalar());
        let reshared = self.reshare_with(&u);
        (u, reshared)
    }

    /// `d2' = d2·u⁻¹` for a given `u` (the body of [`ServerShare::reshare`]; the
    /// known-answer vectors fix `u`).
    pub(crate) fn reshare_with(&self, u: &Scalar) -> ServerShare {
        let u_inv = Option::<Scalar>::from(u.invert()).unwrap_or(Scalar::ZERO);
        let (d2, d2_inv) = self.scalars();
        ServerShare::from_scalars(d2 * u_inv, d2_inv * *u)
    }

    /// `p2 = d2⁻¹·G`: what B needs, with `d1'`, to check that the pair forms the joint key.
    /// Public: from `p2` and `P` nobody learns `d2`.
    pub fn p2(&self) -> AffinePoint {
        let (_, d2_inv) = self.scalars();
        ProjectivePoint::mul_by_generator(&d2_inv).to_affine()
    }
}

impl ClientShare {
    /// Step 3 on the owner's phone: `d1' = d1·u`, SM2-encrypted (32 bytes big-endian) to
    /// B's transport key. Only B can read it; the daemon relays it.
    pub fn reshare_to(&self, u: &Scalar, transport: &AffinePoint) -> Ciphertext {
        let d1_new = Zeroizing::new(scalar_to_bytes(&(*self.scalar() * u)));
        crate::cipher::encrypt(transport, d1_new.as_slice())
    }

    /// [`ClientShare::reshare_to`] with the encryption's ephemeral `k` given (the
    /// known-answer vectors fix it); `None` for a `k` encryption would draw again.
    pub(crate) fn reshare_to_with(&self, u: &Scalar, transport: &AffinePoint, k: &Scalar) -> Option<Ciphertext> {
        let d1_new = Zeroizing::new(scalar_to_bytes(&(*self.scalar() * u)));
        crate::cipher::encrypt_with(transport, d1_new.as_slice(), k)
    }
}

/// B's transport key pair: `t` stays on B (for one delegation), `T = t·G` is sent at accept.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TransportKey {
    t: Scalar,
}

impl core::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TransportKey(..)")
    }
}

impl TransportKey {
    /// A fresh `t` and its public point `T`.
    pub fn generate() -> (TransportKey, AffinePoint) {
        loop {
            let t = random_nonzero_scalar();
            if let Some(point) = crate::fast::mul_base(&t) {
                return (TransportKey { t }, point);
            }
        }
    }

    pub fn from_bytes(b: &[u8; 32]) -> Result<TransportKey> {
        Ok(TransportKey { t: scalar_from_bytes(b)? })
    }

    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(scalar_to_bytes(&self.t))
    }

    /// Step 4 on B: decrypt `wrapped_share` (`C1‖C3‖C2` or DER), read `d1'`, and accept it
    /// only if `d1'⁻¹·p2 − G = public`. A corrupted ciphertext fails SM2's own integrity
    /// check (`DecryptFailed`); a well-formed share of another key fails the joint-key
    /// check (`ShareMismatch`).
    pub fn open_share(&self, wrapped_share: &[u8], p2: &AffinePoint, public: &AffinePoint) -> Result<ClientShare> {
        let ct = Ciphertext::parse(wrapped_share)?;
        let shared = crate::fast::mul(&self.t, &ct.c1).ok_or(Error::DecryptFailed)?;
        let plain = decrypt_with_shared(&shared, &ct)?;
        let bytes: &[u8; 32] = plain.as_slice().try_into().map_err(|_| Error::InvalidLength)?;
        let d1 = scalar_from_bytes(bytes)?;
        let share = ClientShare::from_scalar(d1)?;
        if !pair_forms(&share, p2, public) {
            return Err(Error::ShareMismatch);
        }
        Ok(share)
    }
}

/// `d1⁻¹·p2 − G = P`, i.e. `(d1·d2)⁻¹·G − G = P`: the pair is a sharing of `P`'s key.
pub fn pair_forms(share: &ClientShare, p2: &AffinePoint, public: &AffinePoint) -> bool {
    let d1_inv = Option::<Scalar>::from(share.scalar().invert()).unwrap_or(Scalar::ZERO);
    let Some(joint) = crate::fast::lincomb(&d1_inv, p2, &-Scalar::ONE) else { return false };
    bool::from(crate::point_to_sec1(&joint).ct_eq(&crate::point_to_sec1(public)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{client_keygen, e_for_message, server_keygen, verify};

    fn sign_with(client: &ClientShare, server: &ServerShare, public: &AffinePoint, msg: &[u8]) -> bool {
        let e = e_for_message(public, msg);
        let (k1, q1) = ClientShare::sign_start();
        let r = server.sign(&e, &q1);
        let sig = client.sign_finish(&k1, &r.r, &r.s2, &r.s3).unwrap();
        verify(public, &e, &sig)
    }

    fn reshared() -> (ClientShare, ServerShare, AffinePoint, ClientShare, ServerShare) {
        let (a, p1) = client_keygen();
        let (server, public) = server_keygen(&p1);
        let (u, server_b) = server.reshare();
        let (t, transport) = TransportKey::generate();
        let wrapped = a.reshare_to(&u, &transport).to_c1c3c2();
        let b = t.open_share(&wrapped, &server_b.p2(), &public).expect("B accepts its share");
        (a, server, public, b, server_b)
    }

    #[test]
    fn a_reshared_pair_signs_and_decrypts_under_the_same_joint_key() {
        let (a, server, public, b, server_b) = reshared();
        assert!(sign_with(&a, &server, &public, b"owner"));
        assert!(sign_with(&b, &server_b, &public, b"delegate"));
        // Each half works only with its own partner.
        assert!(!sign_with(&b, &server, &public, b"mixed"));
        assert!(!sign_with(&a, &server_b, &public, b"mixed"));
        let ct = crate::encrypt(&public, b"bid file key");
        let (w, t1) = b.decrypt_blind(&ct.c1);
        let plain = b.decrypt_finish(&w, &server_b.decrypt(&t1), &ct).unwrap();
        assert_eq!(plain.as_slice(), b"bid file key");
        // The daemon's new share survives its wrapping round trip.
        assert!(ServerShare::from_bytes(server_b.to_bytes().as_slice()).is_ok());
    }

    #[test]
    fn a_corrupted_or_foreign_share_is_refused() {
        let (a, p1) = client_keygen();
        let (server, public) = server_keygen(&p1);
        let (u, server_b) = server.reshare();
        let (t, transport) = TransportKey::generate();
        let wrapped = a.reshare_to(&u, &transport).to_c1c3c2();
        let p2 = server_b.p2();
        for i in [0, 1, 64, 65, 97, wrapped.len() - 1] {
            let mut bad = wrapped.clone();
            bad[i] ^= 0x01;
            assert!(t.open_share(&bad, &p2, &public).is_err(), "byte {i} flipped was accepted");
        }
        assert!(t.open_share(&wrapped[..wrapped.len() - 1], &p2, &public).is_err());
        // Another transport key cannot open it.
        let (other, _) = TransportKey::generate();
        assert_eq!(other.open_share(&wrapped, &p2, &public).unwrap_err(), Error::DecryptFailed);
        // A well-formed share for another pair: refused by the joint-key check.
        let (_, other_server) = server.reshare();
        assert_eq!(t.open_share(&wrapped, &other_server.p2(), &public).unwrap_err(), Error::ShareMismatch);
        let wrong_u = a.reshare_to(&random_nonzero_scalar(), &transport).to_c1c3c2();
        assert_eq!(t.open_share(&wrong_u, &p2, &public).unwrap_err(), Error::ShareMismatch);
        assert!(t.open_share(&wrapped, &p2, &public).is_ok());
    }
}
