//! The two-party math against OpenSSL 3 (explicit SM2 ID), without the daemon: a sample
//! of 1,000 random key generations and signatures (both modes) verified by
//! `openssl pkeyutl -verify`, and OpenSSL-made ciphertexts decrypted two-party.

use mcs_e2e::{openssl, openssl_verifies};
use sm2_2p::*;

#[test]
fn a_sample_of_random_two_party_signatures_verifies_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for i in 0..1000 {
        let (client, p1) = client_keygen();
        let (server, public) = server_keygen(&p1);
        let msg = format!("openssl sample {i}").into_bytes();
        let e = e_for_message(&public, &msg);
        let (k1, q1) = ClientShare::sign_start();
        let sig = if i % 2 == 0 {
            let r = server.sign(&e, &q1);
            client.sign_finish(&k1, &r.r, &r.s2, &r.s3).unwrap()
        } else {
            let r = server.sign_fixed_k3(&e, &q1);
            client.sign_finish_fixed_k3(&k1, &r.r, &r.s3).unwrap()
        };
        assert!(verify(&public, &e, &sig), "iteration {i}");
        if i % 40 == 0 || i % 40 == 1 {
            assert!(openssl_verifies(dir.path(), &public, &msg, &sig.to_der()), "OpenSSL rejects iteration {i}");
            checked += 1;
        }
    }
    assert_eq!(checked, 50);
}

#[test]
fn openssl_ciphertexts_decrypt_two_party() {
    let dir = tempfile::tempdir().unwrap();
    for (i, len) in [1usize, 32, 33, 500].into_iter().enumerate() {
        let (client, p1) = client_keygen();
        let (server, public) = server_keygen(&p1);
        let pem = dir.path().join(format!("k{i}.pem"));
        std::fs::write(&pem, mcs_client::phone::public_key_pem(&public)).unwrap();
        let plain: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
        let (input, output) = (dir.path().join(format!("p{i}")), dir.path().join(format!("c{i}")));
        std::fs::write(&input, &plain).unwrap();
        let (ok, out) = openssl(&[
            "pkeyutl".as_ref(),
            "-encrypt".as_ref(),
            "-pubin".as_ref(),
            "-inkey".as_ref(),
            pem.as_os_str(),
            "-in".as_ref(),
            input.as_os_str(),
            "-out".as_ref(),
            output.as_os_str(),
        ]);
        assert!(ok, "{out}");
        let ct = Ciphertext::parse(&std::fs::read(&output).unwrap()).unwrap();
        let (w, t1) = client.decrypt_blind(&ct.c1);
        let got = client.decrypt_finish(&w, &server.decrypt(&t1), &ct).unwrap();
        assert_eq!(got.as_slice(), plain.as_slice(), "length {len}");
    }
}
