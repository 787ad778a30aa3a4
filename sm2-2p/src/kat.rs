//! Known-answer vectors for integrators (`docs/test-vectors.json`, written by `cargo xtask
//! vectors`): every secret is derived from a fixed seed string with SM3, so the file is
//! reproducible bit for bit, and every answer is computed by this crate's own code — the
//! phone's half as `ClientShare` computes it, the daemon's as `ServerShare` does.
//!
//! All values are lowercase hex strings (points SEC1 uncompressed, scalars and digests 32
//! bytes), as PROTOCOL.md encodes them; `pin`, `id`, `key_id`, `op` and `fields` are text.

use elliptic_curve::ff::PrimeField;
use sm2::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sm3::{Digest, Sm3};

use crate::pin::Transcript;
use crate::reshare::TransportKey;
use crate::twoparty::{ClientShare, Nonce, ServerShare};
use crate::{DEFAULT_DIST_ID, e_digest, point_to_hex, proof_bytes, scalar_to_hex, z_digest};

/// One vector: `(field, value)` in the order the issue lists them.
pub type Vector = Vec<(&'static str, Value)>;

/// A value of a vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    List(Vec<String>),
}

/// Every family of vectors, by name.
pub fn vectors() -> Vec<(&'static str, Vec<Vector>)> {
    vec![
        ("pin_verifier", pin_verifiers()),
        ("pin_proof", pin_proofs()),
        ("e", e_vectors()),
        ("signature_finish", signature_finishes()),
        ("fixed_k3_finish", fixed_k3_finishes()),
        ("blind_decrypt", blind_decrypts()),
        ("reshare", reshares()),
        ("recovery", recoveries()),
    ]
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn seed_bytes(seed: &str) -> [u8; 32] {
    Sm3::new().chain_update(b"mcsd test vector ").chain_update(seed.as_bytes()).finalize().into()
}

/// A non-zero scalar from a seed (SM3, counter appended until the value is in `(0, n)`).
fn scalar(seed: &str) -> Scalar {
    (0u32..)
        .find_map(|i| {
            let s: Option<Scalar> = Scalar::from_repr(FieldBytes::from(seed_bytes(&format!("{seed}/{i}")))).into();
            s.filter(|s| !bool::from(s.is_zero()))
        })
        .unwrap_or(Scalar::ONE)
}

fn inverse(s: &Scalar) -> Scalar {
    Option::<Scalar>::from(s.invert()).unwrap_or(Scalar::ZERO)
}

/// The two shares of a key and its joint public key `P = (d1·d2)⁻¹·G − G`.
fn key(seed: &str) -> (ClientShare, ServerShare, AffinePoint) {
    let (d1, d2) = (scalar(&format!("{seed}/d1")), scalar(&format!("{seed}/d2")));
    let public = (ProjectivePoint::GENERATOR * inverse(&(d1 * d2)) - ProjectivePoint::GENERATOR).to_affine();
    let client = ClientShare::from_scalar(d1).unwrap_or_else(|_| unreachable!("seeded scalars are non-zero"));
    (client, ServerShare::from_scalars(d2, inverse(&d2)), public)
}

const PINS: [&str; 3] = ["123456", "000000", "135790"];

fn salt(pin: &str) -> [u8; 16] {
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&seed_bytes(&format!("salt/{pin}"))[..16]);
    salt
}

fn pin_verifiers() -> Vec<Vector> {
    PINS.iter()
        .map(|pin| {
            let salt = salt(pin);
            let verifier = crate::pin_verifier(pin.as_bytes(), &salt);
            vec![("pin", text(*pin)), ("salt", text(hex::encode(salt))), ("verifier", text(hex::encode(*verifier)))]
        })
        .collect()
}

fn pin_proofs() -> Vec<Vector> {
    let verifier = crate::pin_verifier(PINS[0].as_bytes(), &salt(PINS[0]));
    let q1 = point_to_hex(&(ProjectivePoint::GENERATOR * scalar("q1")).to_affine());
    let transcripts = [
        Transcript::Sign { e: hex::encode(seed_bytes("e")), q1: q1.clone() },
        Transcript::TaskSign { task_id: "t_0123456789abcdef01234567".into(), q1 },
        Transcript::Revoke { reason: "手机丢失".into() },
        Transcript::Batch {
            items: vec![
                ("t_a".into(), point_to_hex(&AffinePoint::GENERATOR)),
                ("t_b".into(), point_to_hex(&(ProjectivePoint::GENERATOR * scalar("q1/b")).to_affine())),
            ],
        },
    ];
    transcripts
        .iter()
        .map(|t| {
            let key_id = "k_4b1d0e5c9a7f3e2d1c0b9a88";
            let fields: Vec<String> = t.fields().iter().map(|f| f.to_string()).collect();
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            let proof = proof_bytes(&verifier, key_id, t.op(), &refs);
            vec![
                ("verifier", text(hex::encode(*verifier))),
                ("key_id", text(key_id)),
                ("op", text(t.op())),
                ("fields", Value::List(fields)),
                ("proof", text(hex::encode(proof))),
            ]
        })
        .collect()
}

fn e_vectors() -> Vec<Vector> {
    [("e/1", "message digest"), ("e/2", "投标文件：第三标段"), ("e/3", "")]
        .iter()
        .map(|(seed, message)| {
            let (_, _, public) = key(seed);
            let z = z_digest(DEFAULT_DIST_ID, &public);
            vec![
                ("public_key", text(point_to_hex(&public))),
                ("id", text(String::from_utf8_lossy(DEFAULT_DIST_ID))),
                ("message", text(hex::encode(message.as_bytes()))),
                ("z", text(hex::encode(z))),
                ("e", text(hex::encode(e_digest(&z, message.as_bytes())))),
            ]
        })
        .collect()
}

/// The message, key and nonces of signing vector `i`.
fn signing(i: u32) -> (ClientShare, ServerShare, AffinePoint, [u8; 32], Scalar) {
    let (client, server, public) = key(&format!("sign/{i}"));
    let e = crate::e_for_message(&public, format!("signing vector {i}").as_bytes());
    (client, server, public, e, scalar(&format!("sign/{i}/k1")))
}

fn signature_finishes() -> Vec<Vector> {
    (0..3)
        .filter_map(|i| {
            let (client, server, public, e, k1) = signing(i);
            let q1 = (ProjectivePoint::GENERATOR * k1).to_affine();
            let (k2, k3) = (scalar(&format!("sign/{i}/k2")), scalar(&format!("sign/{i}/k3")));
            let answer = server.sign_with(&e, &q1, &k2, &k3)?;
            let sig = client.sign_finish(&Nonce(k1), &answer.r, &answer.s2, &answer.s3).ok()?;
            Some(vec![
                ("d1", text(scalar_to_hex(client.scalar()))),
                ("k1", text(scalar_to_hex(&k1))),
                ("r", text(scalar_to_hex(&answer.r))),
                ("s2", text(scalar_to_hex(&answer.s2))),
                ("s3", text(scalar_to_hex(&answer.s3))),
                ("s", text(scalar_to_hex(&sig.s))),
                ("public_key", text(point_to_hex(&public))),
                ("e", text(hex::encode(e))),
                // The server's half, for an implementation of that side.
                ("d2", text(scalar_to_hex(&server.scalars().0))),
                ("k2", text(scalar_to_hex(&k2))),
                ("k3", text(scalar_to_hex(&k3))),
            ])
        })
        .collect()
}

fn fixed_k3_finishes() -> Vec<Vector> {
    (0..3)
        .filter_map(|i| {
            let (client, server, public, e, k1) = signing(100 + i);
            let q1 = (ProjectivePoint::GENERATOR * k1).to_affine();
            let k2 = scalar(&format!("fixed/{i}/k2"));
            let answer = server.sign_fixed_k3_with(&e, &q1, &k2)?;
            let sig = client.sign_finish_fixed_k3(&Nonce(k1), &answer.r, &answer.s3).ok()?;
            Some(vec![
                ("d1", text(scalar_to_hex(client.scalar()))),
                ("k1", text(scalar_to_hex(&k1))),
                ("r", text(scalar_to_hex(&answer.r))),
                ("s3", text(scalar_to_hex(&answer.s3))),
                ("s", text(scalar_to_hex(&sig.s))),
                ("public_key", text(point_to_hex(&public))),
                ("e", text(hex::encode(e))),
                ("d2", text(scalar_to_hex(&server.scalars().0))),
                ("k2", text(scalar_to_hex(&k2))),
            ])
        })
        .collect()
}

fn blind_decrypts() -> Vec<Vector> {
    (0..3)
        .map(|i| {
            let (client, server, public) = key(&format!("decrypt/{i}"));
            let k = scalar(&format!("decrypt/{i}/k"));
            let c1 = (ProjectivePoint::GENERATOR * k).to_affine();
            let w = scalar(&format!("decrypt/{i}/w"));
            let t1 = client.blind_with(&Nonce(w), &c1);
            vec![
                ("d1", text(scalar_to_hex(client.scalar()))),
                ("w", text(scalar_to_hex(&w))),
                ("c1", text(point_to_hex(&c1))),
                ("t1", text(point_to_hex(&t1))),
                ("t2", text(point_to_hex(&server.decrypt(&t1)))),
                // The encryption's side: C1 = k·G under P, and the point both reach,
                // (x2, y2) = k·P = w⁻¹·T2 − C1, from which KDF and C3 follow.
                ("public_key", text(point_to_hex(&public))),
                ("k", text(scalar_to_hex(&k))),
                ("shared", text(point_to_hex(&(ProjectivePoint::from(public) * k).to_affine()))),
            ]
        })
        .collect()
}

/// A re-share to device B (PROTOCOL.md "Re-sharing"): the daemon's `u` and `d2' = d2·u⁻¹`,
/// A's `d1' = d1·u` encrypted to B's transport key with ephemeral `k`, and what B checks.
fn reshares() -> Vec<Vector> {
    (0..3)
        .filter_map(|i| {
            let (client, server, public) = key(&format!("reshare/{i}"));
            let u = scalar(&format!("reshare/{i}/u"));
            let server_b = server.reshare_with(&u);
            let t = scalar(&format!("reshare/{i}/t"));
            let transport = (ProjectivePoint::GENERATOR * t).to_affine();
            let k = scalar(&format!("reshare/{i}/k"));
            let wrapped = client.reshare_to_with(&u, &transport, &k)?.to_c1c3c2();
            let b = TransportKey::from_bytes(&t.to_repr().into())
                .ok()?
                .open_share(&wrapped, &server_b.p2(), &public)
                .ok()?;
            Some(vec![
                ("d1", text(scalar_to_hex(client.scalar()))),
                ("d2", text(scalar_to_hex(&server.scalars().0))),
                ("u", text(scalar_to_hex(&u))),
                ("d1_reshared", text(scalar_to_hex(b.scalar()))),
                ("d2_reshared", text(scalar_to_hex(&server_b.scalars().0))),
                ("p", text(point_to_hex(&public))),
                ("p2", text(point_to_hex(&server_b.p2()))),
                ("t", text(scalar_to_hex(&t))),
                ("transport_key", text(point_to_hex(&transport))),
                ("k", text(scalar_to_hex(&k))),
                ("wrapped_share", text(hex::encode(wrapped))),
            ])
        })
        .collect()
}

/// The phone's recovery copy of `d1` (`phone::seal_recovery`) with fixed keys and nonces.
fn recoveries() -> Vec<Vector> {
    (0..3)
        .map(|i| {
            let key = seed_bytes(&format!("recovery/{i}/key"));
            let key_id = format!("k_{}", &hex::encode(seed_bytes(&format!("recovery/{i}/id")))[..24]);
            let d1 = scalar(&format!("recovery/{i}/d1"));
            let mut nonce = [0u8; crate::phone::RECOVERY_NONCE_LEN];
            nonce.copy_from_slice(&seed_bytes(&format!("recovery/{i}/nonce"))[..crate::phone::RECOVERY_NONCE_LEN]);
            let sealed = crate::phone::seal_recovery_with(&key, &key_id, &d1, &nonce);
            vec![
                ("recovery_key", text(hex::encode(key))),
                ("key_id", text(key_id)),
                ("d1", text(scalar_to_hex(&d1))),
                ("nonce", text(hex::encode(nonce))),
                ("sealed", text(sealed)),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(v: &'a Vector, name: &str) -> &'a str {
        match v.iter().find(|(k, _)| *k == name).map(|(_, v)| v) {
            Some(Value::Text(s)) => s,
            _ => panic!("no {name}"),
        }
    }

    /// The vectors hold together by the protocol's own equations, checked here without the
    /// code that made them: signatures verify under the joint key, the blinded decryption
    /// gives the same shared point as the joint key does, each family has its entries.
    #[test]
    fn every_vector_checks_out() {
        let all = vectors();
        assert_eq!(all.iter().map(|(_, v)| v.len()).collect::<Vec<_>>(), [3, 4, 3, 3, 3, 3, 3, 3]);
        for (family, list) in &all {
            for v in list {
                if *family == "signature_finish" || *family == "fixed_k3_finish" {
                    let public = crate::point_from_hex(get(v, "public_key")).unwrap();
                    let e = crate::digest_from_hex(get(v, "e")).unwrap();
                    let r = crate::scalar_from_hex(get(v, "r")).unwrap();
                    let s = crate::scalar_from_hex(get(v, "s")).unwrap();
                    let sig =
                        crate::Signature::from_der(&crate::asn1::encode_pair(&r.to_repr().into(), &s.to_repr().into()))
                            .unwrap();
                    assert!(crate::verify(&public, &e, &sig), "{family}");
                }
                if *family == "blind_decrypt" {
                    // w⁻¹·T2 = d1⁻¹·d2⁻¹·C1, the point the joint key's holder would get (+ C1).
                    let d1 = crate::scalar_from_hex(get(v, "d1")).unwrap();
                    let w = crate::scalar_from_hex(get(v, "w")).unwrap();
                    let t1 = crate::point_from_hex(get(v, "t1")).unwrap();
                    let c1 = crate::point_from_hex(get(v, "c1")).unwrap();
                    assert_eq!(ProjectivePoint::from(c1) * (w * inverse(&d1)), ProjectivePoint::from(t1));
                    let t2 = ProjectivePoint::from(crate::point_from_hex(get(v, "t2")).unwrap());
                    let shared = crate::point_from_hex(get(v, "shared")).unwrap();
                    assert_eq!((t2 * inverse(&w) - ProjectivePoint::from(c1)).to_affine(), shared);
                }
                if *family == "signature_finish" {
                    // The server's half from its own inputs: r = e + x(k3·Q1 + k2·G), s2, s3.
                    let s = |name| crate::scalar_from_hex(get(v, name)).unwrap();
                    let q1 = ProjectivePoint::GENERATOR * s("k1");
                    let x1 = crate::point_to_sec1(&(q1 * s("k3") + ProjectivePoint::GENERATOR * s("k2")).to_affine());
                    let e = crate::digest_from_hex(get(v, "e")).unwrap();
                    let reduce = |b: &[u8]| {
                        let mut bytes = FieldBytes::default();
                        bytes.copy_from_slice(b);
                        <Scalar as elliptic_curve::ops::Reduce<FieldBytes>>::reduce(&bytes)
                    };
                    assert_eq!(reduce(&e) + reduce(&x1[1..33]), s("r"));
                    assert_eq!(s("d2") * s("k3"), s("s2"));
                    assert_eq!(s("d2") * (s("r") + s("k2")), s("s3"));
                }
                if *family == "reshare" {
                    // d1'·d2' = d1·d2, and B's pair gives the same joint key P.
                    let s = |name| crate::scalar_from_hex(get(v, name)).unwrap();
                    assert_eq!(s("d1_reshared") * s("d2_reshared"), s("d1") * s("d2"));
                    let p = ProjectivePoint::GENERATOR * inverse(&(s("d1_reshared") * s("d2_reshared")))
                        - ProjectivePoint::GENERATOR;
                    assert_eq!(p.to_affine(), crate::point_from_hex(get(v, "p")).unwrap());
                    let ct = crate::Ciphertext::parse(&hex::decode(get(v, "wrapped_share")).unwrap()).unwrap();
                    assert_eq!(ct.c1, (ProjectivePoint::GENERATOR * s("k")).to_affine());
                }
                if *family == "recovery" {
                    let key: [u8; 32] = hex::decode(get(v, "recovery_key")).unwrap().try_into().unwrap();
                    let d1 = crate::phone::open_recovery(&key, get(v, "key_id"), get(v, "sealed")).unwrap();
                    assert_eq!(crate::scalar_to_hex(&d1), get(v, "d1"));
                    assert!(get(v, "sealed").starts_with(get(v, "nonce")));
                }
            }
        }
        // Reproducible: the same seeds give the same file.
        assert_eq!(vectors(), all);
    }
}
