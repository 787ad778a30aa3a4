//! The two-party protocol checked against an independent SM2 implementation (the `sm2`
//! crate) on random inputs, plus known-answer tests computed with the OpenSSL CLI.

use elliptic_curve::ff::PrimeField;
use elliptic_curve::group::Group;
use sm2::dsa::signature::Verifier;
use sm2::pke::{DecryptingKey, EncryptingKey, Mode};
use sm2_2p::*;

fn joint_key() -> (ClientShare, ServerShare, AffinePoint) {
    let (client, p1) = client_keygen();
    let (server, public) = server_keygen(&p1);
    (client, server, public)
}

fn independent_verify(public: &AffinePoint, msg: &[u8], sig: &Signature) -> bool {
    let vk = sm2::dsa::VerifyingKey::from_affine("1234567812345678", *public).unwrap();
    let sig = sm2::dsa::Signature::from_slice(&sig.to_bytes()).unwrap();
    vk.verify(msg, &sig).is_ok()
}

fn two_party_sign(client: &ClientShare, server: &ServerShare, e: &[u8; 32]) -> Signature {
    let (k1, q1) = ClientShare::sign_start();
    let r = server.sign(e, &q1);
    client.sign_finish(&k1, &r.r, &r.s2, &r.s3).unwrap()
}

#[test]
fn thousand_random_keygens_and_signatures_verify_independently() {
    for i in 0..1000 {
        let (client, server, public) = joint_key();
        let msg = format!("message {i} for the bid opening").into_bytes();
        let e = e_for_message(&public, &msg);
        let sig = two_party_sign(&client, &server, &e);
        assert!(independent_verify(&public, &msg, &sig), "iteration {i}: sm2 crate rejects the signature");
        assert!(verify(&public, &e, &sig), "iteration {i}: our verifier rejects the signature");
        assert_eq!(Signature::from_der(&sig.to_der()).unwrap(), sig);
    }
}

#[test]
fn fixed_k3_signatures_verify_independently() {
    for i in 0..200 {
        let (client, server, public) = joint_key();
        let msg = format!("tongsuo {i}").into_bytes();
        let e = e_for_message(&public, &msg);
        let (k1, q1) = ClientShare::sign_start();
        let r = server.sign_fixed_k3(&e, &q1);
        let sig = client.sign_finish_fixed_k3(&k1, &r.r, &r.s3).unwrap();
        assert!(independent_verify(&public, &msg, &sig), "iteration {i}");
        assert!(verify(&public, &e, &sig));
    }
}

#[test]
fn joint_public_key_is_d_times_g() {
    for _ in 0..50 {
        let (client, server, public) = joint_key();
        let bytes = server.to_bytes();
        let d2 = Scalar::from_repr(<[u8; 32]>::try_from(&bytes[..32]).unwrap().into()).unwrap();
        let d = (*client.scalar() * d2).invert().unwrap() - Scalar::ONE;
        assert_eq!(ProjectivePoint::mul_by_generator(&d).to_affine(), public);
    }
}

#[test]
fn wrong_signatures_are_rejected() {
    let (client, server, public) = joint_key();
    let e = e_for_message(&public, b"original");
    let sig = two_party_sign(&client, &server, &e);
    assert!(!verify(&public, &e_for_message(&public, b"tampered"), &sig));
    let (_, _, other) = joint_key();
    assert!(!verify(&other, &e, &sig));
    let bumped = Signature { r: sig.r, s: sig.s + Scalar::ONE };
    assert!(!verify(&public, &e, &bumped));
}

#[test]
fn ciphertexts_of_the_sm2_crate_decrypt_two_party() {
    let mut rng = getrandom04::SysRng;
    for len in [1usize, 31, 32, 33, 100, 1000] {
        let (client, server, public) = joint_key();
        let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let pk = sm2::PublicKey::from_affine(public).unwrap();
        let raw = EncryptingKey::new_with_mode(pk, Mode::C1C3C2).encrypt(&mut rng, &msg).unwrap();
        let der = EncryptingKey::new_with_mode(pk, Mode::C1C3C2).encrypt_der(&mut rng, &msg).unwrap();
        for ct in [raw, der] {
            let parsed = Ciphertext::parse(&ct).unwrap();
            let (w, t1) = client.decrypt_blind(&parsed.c1);
            let t2 = server.decrypt(&t1);
            assert_eq!(client.decrypt_finish(&w, &t2, &parsed).unwrap().as_slice(), msg.as_slice(), "len {len}");
        }
    }
}

#[test]
fn our_encryption_round_trips_and_the_sm2_crate_decrypts_it() {
    let secret = sm2::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let public = secret.public_key().as_affine().to_owned();
    let ct = encrypt(&public, b"sealed bid");
    let dk = DecryptingKey::new_with_mode(secret.to_nonzero_scalar(), Mode::C1C3C2);
    assert_eq!(dk.decrypt(&ct.to_c1c3c2()).unwrap(), b"sealed bid");
    assert_eq!(dk.decrypt_der(&ct.to_der()).unwrap(), b"sealed bid");
    assert_eq!(Ciphertext::parse(&ct.to_der()).unwrap(), ct);
    assert_eq!(Ciphertext::parse(&ct.to_c1c3c2()).unwrap(), ct);
}

#[test]
fn tampered_ciphertexts_fail() {
    let (client, server, public) = joint_key();
    let mut ct = encrypt(&public, b"sealed bid");
    ct.c3[0] ^= 1;
    let (w, t1) = client.decrypt_blind(&ct.c1);
    assert_eq!(client.decrypt_finish(&w, &server.decrypt(&t1), &ct).unwrap_err(), Error::DecryptFailed);
    assert_eq!(Ciphertext::parse(b"\x05garbage").unwrap_err(), Error::InvalidCiphertext);
    assert_eq!(Ciphertext::parse(&[0x30, 0x03, 0x02, 0x01, 0x01]).unwrap_err(), Error::InvalidCiphertext);
}

#[test]
fn server_share_bytes_round_trip_and_inconsistent_pairs_are_refused() {
    let (_, server, _) = joint_key();
    let bytes = server.to_bytes();
    let back = ServerShare::from_bytes(bytes.as_slice()).unwrap();
    assert_eq!(back.to_bytes().as_slice(), bytes.as_slice());
    let mut wrong = *bytes;
    wrong[63] ^= 1;
    assert_eq!(ServerShare::from_bytes(&wrong).unwrap_err(), Error::InvalidScalar);
    assert_eq!(ServerShare::from_bytes(&bytes[..63]).unwrap_err(), Error::InvalidLength);
    assert_eq!(format!("{server:?}"), "ServerShare(..)");
}

#[test]
fn signature_der_is_strict() {
    let (client, server, public) = joint_key();
    let sig = two_party_sign(&client, &server, &e_for_message(&public, b"x"));
    let der = sig.to_der();
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(Signature::from_der(&trailing).is_err());
    // A non-minimal INTEGER (extra leading zero) is refused.
    let r = sig.to_bytes();
    let mut body = vec![0x02, 34, 0x00, 0x00];
    body.extend_from_slice(&r[..32]);
    body.extend_from_slice(&der[4 + der[3] as usize..]);
    let mut bad = vec![0x30, body.len() as u8];
    bad.extend_from_slice(&body);
    assert!(Signature::from_der(&bad).is_err());
}

/// `openssl mac -digest SM3 -macopt hexkey:000102…1f -in <(printf 'mcs-pin-v1|k_123|sign|aa|bb') HMAC`
#[test]
fn hmac_sm3_matches_openssl() {
    let key: Vec<u8> = (0u8..32).collect();
    assert_eq!(
        hex::encode(hmac_sm3(&key, b"mcs-pin-v1|k_123|sign|aa|bb")),
        "2f6e06ad8de311b8e50e278c7f3acf5636e8e9a9501a6c53bab0fb2b79a642ce"
    );
    let v: [u8; 32] = key.try_into().unwrap();
    let t = |e: &str, q1: &str| Transcript::Sign { e: e.into(), q1: q1.into() };
    assert_eq!(pin_proof(&v, "k_123", &t("aa", "bb")), "2f6e06ad8de311b8e50e278c7f3acf5636e8e9a9501a6c53bab0fb2b79a642ce");
    assert!(pin_proof_matches(&v, "k_123", &t("aa", "bb"), "2f6e06ad8de311b8e50e278c7f3acf5636e8e9a9501a6c53bab0fb2b79a642ce"));
    assert!(pin_proof_matches(&v, "k_123", &t("aa", "bb"), "2F6E06AD8DE311B8E50E278C7F3ACF5636E8E9A9501A6C53BAB0FB2B79A642CE"));
    assert!(!pin_proof_matches(&v, "k_123", &t("aa", "bc"), "2f6e06ad8de311b8e50e278c7f3acf5636e8e9a9501a6c53bab0fb2b79a642ce"));
    assert!(!pin_proof_matches(&v, "k_123", &t("aa", "bb"), "2f6e"));
}

/// `openssl kdf -keylen 32 -kdfopt digest:SM3 -kdfopt pass:123456
///   -kdfopt hexsalt:00112233445566778899aabbccddeeff -kdfopt iter:100000 PBKDF2`
#[test]
fn pin_verifier_matches_openssl_pbkdf2() {
    let salt: [u8; 16] = hex::decode("00112233445566778899aabbccddeeff").unwrap().try_into().unwrap();
    assert_eq!(
        hex::encode(pin_verifier(b"123456", &salt).as_slice()),
        "0c01f206527a3b230919a2030a0425a5d04cf7899872af0b2ecb4990c0924559"
    );
}

#[test]
fn identity_and_generator_multiples_behave() {
    // P1 = G (d1 = 1) still yields a valid joint key.
    let (server, public) = server_keygen(&ProjectivePoint::generator().to_affine());
    assert!(!bool::from(ProjectivePoint::from(public).is_identity()));
    let client = ClientShare::from_scalar(Scalar::ONE).unwrap();
    let e = e_for_message(&public, b"d1 = 1");
    assert!(verify(&public, &e, &two_party_sign(&client, &server, &e)));
    assert!(ClientShare::from_scalar(Scalar::ZERO).is_err());
}

#[test]
fn daemon_key_signatures_verify_independently_and_round_trip() {
    for i in 0..100 {
        let key = DaemonKey::generate();
        let msg = format!("tbsCertificate {i}").into_bytes();
        let sig = key.sign(&msg);
        assert!(independent_verify(&key.public(), &msg, &sig), "iteration {i}");
        let back = DaemonKey::from_bytes(key.to_bytes().as_slice()).unwrap();
        assert_eq!(back.public(), key.public());
    }
    assert_eq!(DaemonKey::from_bytes(&[0u8; 32]).unwrap_err(), Error::InvalidScalar);
}
