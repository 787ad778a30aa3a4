//! Tongsuo-compatible phones (issue 17): a phone that co-signs only in `fixed_k3` mode and
//! finishes `s = d1·(s3 + k1) − r` itself, as a Tongsuo `sm2_threshold` client does. It
//! derives the joint key from the activation's `p2` and refuses a mismatch; it activates
//! (its certificate request co-signed in `fixed_k3`), logs in, signs, seals a PDF and
//! batch-signs by scan; every signature verifies with OpenSSL (SM2 ID explicit), and every
//! `fixed_k3` answer's `der` is the DER `SEQUENCE{r, s3}` of its hex scalars.

use hyper::Method;
use mcs_client::phone::{Phone, ScanCode};
use mcs_e2e::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_k3_only_phone_activates_logs_in_signs_and_seals() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (id, code) = enroll(&mut admin, "Tongsuo User").await;
    let mut app = connect(&env, &daemon, "app1").await;
    let prepared = Phone::prepare_activation("test", &id, &code, "123456").unwrap().tongsuo_compatible();
    let (phone, csr) = prepared.send(&mut app).await.unwrap();
    assert!(phone.state.fixed_k3);
    let key = phone.install_certificate(&mut app, &csr.expect("a csr task")).await.unwrap();
    assert_eq!(key["status"], "active", "{key}");
    // p2 in the key view, and it forms the joint key with d1.
    let p2 = sm2_2p::point_from_hex(key["p2"].as_str().expect("p2 in the key view")).unwrap();
    assert!(sm2_2p::pair_forms(phone.share(), &p2, phone.public_key()));
    let other = sm2_2p::client_keygen().0;
    assert!(!sm2_2p::pair_forms(&other, &p2, phone.public_key()), "another d1 does not");

    let mut gw = connect(&env, &daemon, "gateway").await;
    assert!(signing_task(&env, &mut gw, &phone, &mut app, "login", b"challenge-0001").await, "login");
    assert!(signing_task(&env, &mut gw, &phone, &mut app, "sign", b"bid file digest").await, "sign");

    // A PDF sealed by scan.
    let seal = company_seal(&mut admin, phone.key_id()).await;
    let sealed = seal_one(&env, &daemon, seal["seal_id"].as_str().unwrap(), &phone).await;
    let check = json!({"pdf": base64_of(&sealed)});
    let v = admin.json(Method::POST, "/v1/verify/pdf", Some(&check)).await.unwrap();
    assert_eq!(v["signatures"][0]["valid"], true, "{v}");
    // And by OpenSSL: the PDF signature's SM2 signature over its DER signed attributes.
    let found = mcs_pdfseal::pdf::signatures(&sealed).unwrap();
    let container = mcs_pdfseal::cms::parse(&found[0].contents).unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), &container.to_be_signed, &container.signature));

    // Two signing tasks with one PIN entry (batch/cosign, fixed_k3).
    let mut codes = Vec::new();
    for msg in ["first", "second"] {
        let data = json!({"message": base64_of(msg.as_bytes())});
        let created = mcs_client::gateway::create_task(&mut gw, "sign", "Batch", data, None, None).await.unwrap();
        codes.push(ScanCode::parse(created["qr"].as_str().unwrap()).unwrap());
    }
    let sigs = phone.batch_sign(&mut app, &codes).await.unwrap();
    for (sig, msg) in sigs.into_iter().zip(["first", "second"]) {
        let sig = sig.unwrap();
        assert!(openssl_verifies(env.path(), phone.public_key(), msg.as_bytes(), &sig.to_der()), "{msg}");
    }

    // The raw answer: `der` is DER SEQUENCE{r, s3} of the hex scalars; a bad mode is refused.
    let data = json!({"message": base64_of(b"raw")});
    let created = mcs_client::gateway::create_task(&mut gw, "sign", "Raw", data, None, None).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.claim(&mut app, &code).await.unwrap();
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let q1_hex = sm2_2p::point_to_hex(&q1);
    let proof = phone.proof(&sm2_2p::Transcript::TaskSign { task_id: code.task_id.clone(), q1: q1_hex.clone() });
    let path = format!("/v1/tasks/{}/cosign", code.task_id);
    let bad = json!({"token": code.token, "q1": q1_hex, "pin_proof": proof, "mode": "fast"});
    assert_eq!(app.call(Method::POST, &path, Some(&bad)).await.unwrap().status, 400);
    let body = json!({"token": code.token, "q1": q1_hex, "pin_proof": proof, "mode": "fixed_k3"});
    let answer = app.json(Method::POST, &path, Some(&body)).await.unwrap();
    assert!(answer.get("s2").is_none(), "{answer}");
    let der = hex::decode(answer["der"].as_str().unwrap()).unwrap();
    let parsed = sm2_2p::Signature::from_der(&der).unwrap();
    assert_eq!(sm2_2p::scalar_to_hex(&parsed.r), answer["r"].as_str().unwrap());
    assert_eq!(sm2_2p::scalar_to_hex(&parsed.s), answer["s3"].as_str().unwrap());
    let (ok, asn1) = openssl_stdin(&["asn1parse", "-inform", "DER"], &der);
    assert!(ok && asn1.matches("INTEGER").count() == 2 && asn1.contains("SEQUENCE"), "{asn1}");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// OpenSSL with `input` on stdin.
fn openssl_stdin(args: &[&str], input: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}
