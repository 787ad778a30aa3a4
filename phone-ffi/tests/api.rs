//! The binding's Rust API against the daemon's half of `sm2-2p` (`server_keygen`,
//! `ServerShare`): every flow an app runs — activation, unlock, co-signing in both modes,
//! blinded decryption, recovery, re-share — and the refusals, without any network.

use mcs_phone_ffi::{
    JointKey, KeyShare, PhoneError, PinOp, PinVerifier, RecoveryKey, TransportKey, known_answer_sign_finish,
    parse_task_qr,
};

/// A phone's share, activated with the daemon's half.
fn activated() -> (std::sync::Arc<KeyShare>, sm2_2p::ServerShare, std::sync::Arc<JointKey>) {
    let share = KeyShare::generate();
    let p1 = sm2_2p::point_from_hex(&share.p1()).unwrap();
    let (server, public) = sm2_2p::server_keygen(&p1);
    let key = JointKey::from_hex(sm2_2p::point_to_hex(&public)).unwrap();
    (share, server, key)
}

fn hex32(s: &sm2_2p::Scalar) -> String {
    sm2_2p::scalar_to_hex(s)
}

#[test]
fn a_canonical_and_a_fixed_k3_co_signature_verify_and_each_session_finishes_once() {
    let (share, server, key) = activated();
    let e = key.e_for_message(b"bid".to_vec());
    let e_bytes = sm2_2p::digest_from_hex(&e).unwrap();

    let session = share.sign_start();
    let answer = server.sign(&e_bytes, &sm2_2p::point_from_hex(&session.q1()).unwrap());
    let (r, s2, s3) = (hex32(&answer.r), hex32(&answer.s2), hex32(&answer.s3));
    let sig = session.finish(&key, e.clone(), r.clone(), s2.clone(), s3.clone()).unwrap();
    assert!(key.verify(e.clone(), sig.clone()).unwrap());
    assert_eq!(
        sm2_2p::Signature::from_der(&sig.der).unwrap().to_bytes().to_vec(),
        hex::decode(sig.r + &sig.s).unwrap()
    );
    assert!(matches!(session.finish(&key, e.clone(), r, s2, s3), Err(PhoneError::SessionUsed { .. })));

    let session = share.sign_start();
    let answer = server.sign_fixed_k3(&e_bytes, &sm2_2p::point_from_hex(&session.q1()).unwrap());
    let der = hex::encode(answer.to_der());
    let other_der = hex::encode(sm2_2p::Signature { r: answer.s3, s: answer.r }.to_der());
    let err = session.finish_fixed_k3(&key, e.clone(), hex32(&answer.r), hex32(&answer.s3), Some(other_der));
    assert!(matches!(err, Err(PhoneError::InvalidInput { ref field, .. }) if field == "der"), "{err:?}");
    let sig = session.finish_fixed_k3(&key, e.clone(), hex32(&answer.r), hex32(&answer.s3), Some(der)).unwrap();
    assert!(key.verify(e, sig).unwrap());
}

#[test]
fn a_wrong_pin_gives_a_share_whose_signature_is_refused() {
    let (share, server, key) = activated();
    let v = PinVerifier::setup("123456".into()).unwrap();
    let masked = share.masked(&v);
    let wrong = KeyShare::unmask(masked.clone(), &PinVerifier::derive("123457".into(), v.salt()).unwrap()).unwrap();
    assert_ne!(wrong.p1(), share.p1());
    let right = KeyShare::unmask(masked, &PinVerifier::derive("123456".into(), v.salt()).unwrap()).unwrap();
    assert_eq!(right.p1(), share.p1());

    let e = key.e_for_message(b"m".to_vec());
    let session = wrong.sign_start();
    let a = server.sign(&sm2_2p::digest_from_hex(&e).unwrap(), &sm2_2p::point_from_hex(&session.q1()).unwrap());
    let err = session.finish(&key, e, hex32(&a.r), hex32(&a.s2), hex32(&a.s3)).unwrap_err();
    assert!(matches!(err, PhoneError::SignatureInvalid { .. }), "{err}");
}

#[test]
fn a_blinded_decryption_opens_what_was_encrypted_to_the_key() {
    let (share, server, key) = activated();
    let public = sm2_2p::point_from_hex(&key.hex()).unwrap();
    let ct = sm2_2p::encrypt(&public, b"bid file key");
    for bytes in [ct.to_c1c3c2(), ct.to_der()] {
        let session = share.decrypt_start(bytes).unwrap();
        let t2 = server.decrypt(&sm2_2p::point_from_hex(&session.t1()).unwrap());
        assert_eq!(session.finish(sm2_2p::point_to_hex(&t2)).unwrap(), b"bid file key");
        assert!(matches!(session.finish(sm2_2p::point_to_hex(&t2)), Err(PhoneError::SessionUsed { .. })));
    }
    // Another key's share: SM2's C3 check refuses.
    let (other, _, _) = activated();
    let session = other.decrypt_start(ct.to_c1c3c2()).unwrap();
    let t2 = server.decrypt(&sm2_2p::point_from_hex(&session.t1()).unwrap());
    assert!(matches!(session.finish(sm2_2p::point_to_hex(&t2)), Err(PhoneError::DecryptFailed { .. })));
    assert!(matches!(share.decrypt_start(vec![0x04; 10]), Err(PhoneError::InvalidInput { .. })));
}

#[test]
fn a_reshared_share_opens_on_the_new_device_only_if_it_forms_the_key() {
    let (owner, server, key) = activated();
    let (u, delegate) = server.reshare();
    let transport = TransportKey::generate();
    let restored = TransportKey::restore(transport.export_secret()).unwrap();
    assert_eq!(restored.public_key(), transport.public_key());
    let wrapped = owner.reshare_to(hex32(&u), transport.public_key()).unwrap();
    let p2 = sm2_2p::point_to_hex(&delegate.p2());
    let share = restored.open_share(wrapped.clone(), p2.clone(), &key).unwrap();
    assert!(share.forms_key(p2.clone(), &key).unwrap());

    let e = key.e_for_message(b"delegate".to_vec());
    let session = share.sign_start();
    let a = delegate.sign(&sm2_2p::digest_from_hex(&e).unwrap(), &sm2_2p::point_from_hex(&session.q1()).unwrap());
    assert!(session.finish(&key, e, hex32(&a.r), hex32(&a.s2), hex32(&a.s3)).is_ok());

    let owners_p2 = sm2_2p::point_to_hex(&server.p2());
    assert!(matches!(restored.open_share(wrapped.clone(), owners_p2, &key), Err(PhoneError::ShareMismatch { .. })));
    assert!(matches!(TransportKey::generate().open_share(wrapped, p2, &key), Err(PhoneError::DecryptFailed { .. })));
}

#[test]
fn the_recovery_copy_opens_with_its_key_and_key_id() {
    let (share, _, _) = activated();
    let r = RecoveryKey::generate().unwrap();
    let sealed = share.seal_recovery(&r, "k_1".into()).unwrap();
    let back = RecoveryKey::from_hex(r.hex()).unwrap();
    assert_eq!(KeyShare::open_recovery(&back, "k_1".into(), sealed.clone()).unwrap().p1(), share.p1());
    assert!(matches!(
        KeyShare::open_recovery(&back, "k_2".into(), sealed.clone()),
        Err(PhoneError::DecryptFailed { .. })
    ));
    assert!(matches!(RecoveryKey::from_hex(r.hex().to_uppercase()), Err(PhoneError::InvalidInput { .. })));
    assert!(matches!(share.seal_recovery(&r, String::new()), Err(PhoneError::InvalidInput { .. })));
}

#[test]
fn proofs_follow_the_protocol_tables_and_refuse_malformed_fields() {
    let v = PinVerifier::derive("123456".into(), "00112233445566778899aabbccddeeff".into()).unwrap();
    let q1 = sm2_2p::point_to_hex(&sm2_2p::AffinePoint::GENERATOR);
    let by_op = v.proof("k_1".into(), PinOp::TaskSign { task_id: "t_1".into(), q1: q1.clone() }).unwrap();
    assert_eq!(by_op, v.proof_for_fields("k_1".into(), "sign".into(), vec!["t_1".into(), q1.clone()]).unwrap());
    let delegate = PinOp::Delegate { kind: "delegate".into(), not_after: None, approval: None };
    assert_eq!(
        v.proof("k_1".into(), delegate).unwrap(),
        v.proof_for_fields("k_1".into(), "delegate".into(), vec!["delegate".into(), String::new(), String::new()])
            .unwrap()
    );
    for bad in [
        PinOp::Sign { e: "AB".repeat(32), q1: q1.clone() },
        PinOp::Decrypt { t1: q1[..128].to_owned() },
        PinOp::Batch { items: vec![] },
        PinOp::Pin { salt: "00".into(), verifier: "11".repeat(32) },
        PinOp::Revoke { reason: String::new() },
    ] {
        assert!(matches!(v.proof("k_1".into(), bad.clone()), Err(PhoneError::InvalidInput { .. })), "{bad:?}");
    }
    assert!(matches!(PinVerifier::derive("1".into(), "0011".into()), Err(PhoneError::InvalidInput { .. })));
}

#[test]
fn the_digest_check_and_the_qr_reader_refuse_what_they_must() {
    let (_, _, key) = activated();
    let e = key.e_for_message(b"shown".to_vec());
    assert_eq!(key.check_e(b"shown".to_vec(), e.clone()).unwrap(), e);
    assert!(matches!(key.check_e(b"other".to_vec(), e), Err(PhoneError::DigestMismatch { .. })));
    assert!(key.is_in_request([b"x".to_vec(), key.spki_der(), b"y".to_vec()].concat()));
    assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(matches!(JointKey::from_hex("04".repeat(65)), Err(PhoneError::InvalidInput { .. })));
    let code = parse_task_qr("mcs://task?v=1&id=t_1&token=ab&url=https%3A%2F%2Fh".into()).unwrap();
    assert_eq!((code.task_id.as_str(), code.url.as_str()), ("t_1", "https://h"));
    assert!(matches!(parse_task_qr("mcs://task?v=2".into()), Err(PhoneError::InvalidQr { .. })));
    assert!(matches!(
        known_answer_sign_finish("00".repeat(32), "01".repeat(32), "01".repeat(32), "01".repeat(32), "01".repeat(32)),
        Err(PhoneError::InvalidInput { ref field, .. }) if field == "d1"
    ));
}
