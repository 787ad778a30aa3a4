//! The certificate lifecycle through the `local-ca` adapter: certificates issued in the
//! phone flow verify with OpenSSL (explicit SM2 ID) and carry the joint key; revocation
//! reaches the CA's status and CRL; renew, change and reissue leave the old key as API.md
//! says.

use base64::Engine;
use hyper::Method;
use mcs_client::phone::{Phone, SignMode};
use mcs_e2e::*;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

use mcs_client::phone::pem;

/// Write the key's leaf and CA as PEM; returns (leaf, ca) paths.
fn write_chain(dir: &std::path::Path, key: &Value, tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let leaf = B64.decode(key["certificate"].as_str().expect("certificate")).unwrap();
    let ca = B64.decode(key["chain"][0].as_str().expect("chain")).unwrap();
    let (lp, cp) = (dir.join(format!("{tag}-leaf.pem")), dir.join(format!("{tag}-ca.pem")));
    std::fs::write(&lp, pem("CERTIFICATE", &leaf)).unwrap();
    std::fs::write(&cp, pem("CERTIFICATE", &ca)).unwrap();
    (lp, cp)
}

fn openssl_ok(args: &[&std::ffi::OsStr]) -> String {
    let (ok, out) = openssl(args);
    assert!(ok, "openssl {args:?}: {out}");
    out
}

/// `openssl verify` (SM2 ID explicit) of `leaf` under `ca`.
fn verifies_under(ca: &std::path::Path, leaf: &std::path::Path) {
    let (ok, out) = openssl_chain_verifies(ca, leaf);
    assert!(ok, "{out}");
}

async fn key(conn: &mut mcs_client::Connection, id: &str) -> Value {
    mcs_client::admin::get_key(conn, id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_certificates_verify_with_openssl_and_revocation_reaches_status_and_crl() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let k = key(&mut admin, phone.key_id()).await;
    assert_eq!(k["status"], "active");
    let (leaf, ca) = write_chain(env.path(), &k, "person");
    verifies_under(&ca, &leaf);
    // The certified key is the joint key.
    let certified =
        openssl_ok(&["x509".as_ref(), "-in".as_ref(), leaf.as_os_str(), "-pubkey".as_ref(), "-noout".as_ref()]);
    assert_eq!(certified.trim(), mcs_client::phone::public_key_pem(phone.public_key()).trim());
    let text = openssl_ok(&["x509".as_ref(), "-in".as_ref(), leaf.as_os_str(), "-noout".as_ref(), "-text".as_ref()]);
    assert!(text.contains("CN = Zhang San@") && text.contains("C = CN"), "{text}");
    assert!(text.contains("Digital Signature") && text.contains("Key Encipherment"), "{text}");
    assert!(text.contains("1.2.156.10197.1.501") || text.contains("SM2-with-SM3"), "{text}");

    // An organisation certificate, subject in the manuals' style.
    let org = mcs_client::admin::EnrollmentRequest {
        subject: mcs_client::admin::Subject {
            kind: mcs_client::admin::SubjectKind::Org,
            name: "Li Si".into(),
            org_name: Some("Hangzhou Example Construction Co".into()),
            credit_code: Some("91330100MA2B3C4D5E".into()),
            id_number: None,
        },
        ca: "local".into(),
        profile: None,
        platforms: vec!["P-DEV-1".into()],
        validity_days: 30,
    };
    let e = mcs_client::admin::create_enrollment(&mut admin, &org).await.unwrap();
    let mut app2 = connect(&env, &daemon, "app2").await;
    let org_phone = Phone::activate(
        &mut app2,
        "t",
        e["enrollment_id"].as_str().unwrap(),
        e["activation_code"].as_str().unwrap(),
        "222222",
    )
    .await
    .unwrap();
    let ok = key(&mut admin, org_phone.key_id()).await;
    let (leaf2, ca2) = write_chain(env.path(), &ok, "org");
    assert!(
        openssl_ok(&[
            "verify".as_ref(),
            "-vfyopt".as_ref(),
            "distid:1234567812345678".as_ref(),
            "-CAfile".as_ref(),
            ca2.as_os_str(),
            leaf2.as_os_str()
        ])
        .contains(": OK")
    );
    let subject = ok["certificate_subject"].as_str().unwrap();
    assert!(subject.contains("@Hangzhou Example Construction Co@N91330100MA2B3C4D5E@1"), "{subject}");

    // A login result carries the certificate.
    let mut gw = connect(&env, &daemon, "gateway").await;
    let created = mcs_client::gateway::create_task(
        &mut gw,
        "login",
        "log in",
        json!({"challenge": B64.encode(b"c")}),
        None,
        None,
    )
    .await
    .unwrap();
    phone.scan(&mut app, &mcs_client::phone::ScanCode::parse(created["qr"].as_str().unwrap()).unwrap()).await.unwrap();
    let out = mcs_client::gateway::result(&mut gw, created["task_id"].as_str().unwrap(), 5).await.unwrap();
    assert_eq!(out["result"]["certificate"], k["certificate"]);

    // Revoke: the CA marks it, the CRL lists it, the key is dead for every operation.
    let serial = k["certificate_serial"].as_str().unwrap().to_owned();
    let status = admin.json(Method::GET, &format!("/v1/plugins/local/status?serial={serial}"), None).await.unwrap();
    assert_eq!(status["status"], "good");
    let revoked = mcs_client::admin::revoke(&mut admin, phone.key_id(), "key_compromise").await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    let status = admin.json(Method::GET, &format!("/v1/plugins/local/status?serial={serial}"), None).await.unwrap();
    assert_eq!(status["status"], "revoked");
    let crl = admin.json(Method::GET, "/v1/plugins/local/crl", None).await.unwrap();
    let crl_path = env.path().join("crl.der");
    std::fs::write(&crl_path, B64.decode(crl["crl"].as_str().unwrap()).unwrap()).unwrap();
    let crl_text = openssl_ok(&[
        "crl".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        crl_path.as_os_str(),
        "-noout".as_ref(),
        "-text".as_ref(),
    ]);
    assert!(
        crl_text.to_ascii_lowercase().replace(':', "").contains(&serial),
        "serial {serial} not in CRL:\n{crl_text}"
    );
    assert!(!crl_text.to_ascii_lowercase().replace(':', "").contains(ok["certificate_serial"].as_str().unwrap()));
    let err = phone.sign_message(&mut app, b"after revoke", SignMode::Canonical).await.unwrap_err();
    assert_eq!(err.code(), Some("key_inactive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_change_and_reissue_leave_the_old_key_as_specified() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let old = key(&mut admin, phone.key_id()).await;
    let status_of =
        |k: &Value| format!("/v1/plugins/local/status?serial={}", k["certificate_serial"].as_str().unwrap());

    // Renew: the old key stays usable until the successor is active, then is superseded
    // and its certificate revoked.
    let path = format!("/v1/keys/{}/successor", phone.key_id());
    let e = admin.json(Method::POST, &path, Some(&json!({"reason": "renew"}))).await.unwrap();
    assert_eq!(e["predecessor"], phone.key_id());
    phone.sign_message(&mut app, b"still mine", SignMode::Canonical).await.unwrap();
    let renewed = Phone::activate(
        &mut app,
        "t",
        e["enrollment_id"].as_str().unwrap(),
        e["activation_code"].as_str().unwrap(),
        "123456",
    )
    .await
    .unwrap();
    assert_eq!(key(&mut admin, phone.key_id()).await["status"], "superseded");
    assert_eq!(admin.json(Method::GET, &status_of(&old), None).await.unwrap()["status"], "revoked");
    assert_eq!(
        phone.sign_message(&mut app, b"old", SignMode::Canonical).await.unwrap_err().code(),
        Some("key_inactive")
    );
    let new = key(&mut admin, renewed.key_id()).await;
    assert_eq!(new["status"], "active");
    assert_ne!(new["certificate_serial"], old["certificate_serial"]);
    let sig = renewed.sign_message(&mut app, b"renewed", SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), renewed.public_key(), b"renewed", &sig.to_der()));

    // Change: a new subject; the new certificate says so.
    let path = format!("/v1/keys/{}/successor", renewed.key_id());
    let resp = admin.call(Method::POST, &path, Some(&json!({"reason": "change"}))).await.unwrap();
    assert_eq!(resp.body["error"]["code"], "conflict", "a change needs a subject");
    let e = admin
        .json(
            Method::POST,
            &path,
            Some(&json!({"reason": "change", "subject": {"kind": "person", "name": "Zhang Sanfeng"}})),
        )
        .await
        .unwrap();
    let changed = Phone::activate(
        &mut app,
        "t",
        e["enrollment_id"].as_str().unwrap(),
        e["activation_code"].as_str().unwrap(),
        "123456",
    )
    .await
    .unwrap();
    let c = key(&mut admin, changed.key_id()).await;
    assert!(c["certificate_subject"].as_str().unwrap().contains("Zhang Sanfeng@"), "{c}");
    assert_eq!(key(&mut admin, renewed.key_id()).await["status"], "superseded");

    // Reissue (lost phone): the old key is suspended at once; a new phone takes over.
    let path = format!("/v1/keys/{}/successor", changed.key_id());
    let e = admin.json(Method::POST, &path, Some(&json!({"reason": "reissue"}))).await.unwrap();
    assert_eq!(key(&mut admin, changed.key_id()).await["status"], "suspended");
    assert_eq!(
        changed.sign_message(&mut app, b"lost", SignMode::Canonical).await.unwrap_err().code(),
        Some("key_inactive")
    );
    let mut app2 = connect(&env, &daemon, "app2").await;
    let reissued = Phone::activate(
        &mut app2,
        "t",
        e["enrollment_id"].as_str().unwrap(),
        e["activation_code"].as_str().unwrap(),
        "654321",
    )
    .await
    .unwrap();
    let sig = reissued.sign_message(&mut app2, b"new phone", SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), reissued.public_key(), b"new phone", &sig.to_der()));
    assert_eq!(key(&mut admin, changed.key_id()).await["status"], "suspended");

    // Bad successor requests change nothing.
    let path = format!("/v1/keys/{}/successor", reissued.key_id());
    for body in [
        json!({"reason": "refresh"}),
        json!({"reason": "renew", "validity_days": 0}),
        json!({"reason": "renew", "x": 1}),
    ] {
        let resp = admin.call(Method::POST, &path, Some(&body)).await.unwrap();
        assert_eq!(resp.body["error"]["code"], "bad_request", "{body}");
    }
    assert_eq!(key(&mut admin, reissued.key_id()).await["status"], "active");
}

/// 延期: `successor` reason `extend` renews the certificate of the same joint key. The
/// owner's phone gets the certificate request in its inbox and co-signs it by scan; the key
/// keeps its id and public key and gets a new certificate that chains to the CA (OpenSSL);
/// the old certificate is revoked (superseded) at the CA; the seal that carried it is
/// re-made with the new one; a PDF sealed before the renewal stays valid (judged at its
/// time-stamp) and the new seal seals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_certifies_the_same_key_again_and_remakes_its_seals() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let before = key(&mut admin, phone.key_id()).await;
    let seal = company_seal(&mut admin, phone.key_id()).await;
    let old_seal_id = seal["seal_id"].as_str().unwrap().to_owned();
    let sealed_before = seal_one(&env, &daemon, &old_seal_id, &phone).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // Bad requests first: a subject, an unknown key, a key that is not active.
    let with_subject = json!({"reason": "extend", "subject": before["subject"]});
    let resp = admin.call(Method::POST, &format!("/v1/keys/{}/successor", phone.key_id()), Some(&with_subject)).await;
    assert_eq!(resp.unwrap().status, 400);
    let err = mcs_client::admin::successor(&mut admin, "k_nope", "extend", None, None).await.unwrap_err();
    assert_eq!(err.code(), Some("not_found"));

    let ext = mcs_client::admin::successor(&mut admin, phone.key_id(), "extend", None, Some(730)).await.unwrap();
    assert_eq!((ext["key_id"].as_str(), ext["reason"].as_str()), (Some(phone.key_id()), Some("extend")), "{ext}");
    assert_eq!(ext["renews"], before["certificate_serial"]);
    // The phone finds it in its inbox and scans it.
    let inbox = app.json(Method::GET, "/v1/inbox", None).await.unwrap();
    let item = inbox["items"].as_array().unwrap().iter().find(|i| i["type"] == "task").expect("a task item").clone();
    assert_eq!(item["task_id"], ext["csr_task"]["task_id"], "{inbox}");
    // Another phone cannot co-sign it.
    let (_other, mut other_app) = new_phone(&env, &daemon, "app2", "123456").await;
    let code = mcs_client::phone::ScanCode::parse(ext["qr"].as_str().unwrap()).unwrap();
    let claim = json!({"token": code.token, "key_id": phone.key_id()});
    let resp = other_app.call(Method::POST, &format!("/v1/tasks/{}/claim", code.task_id), Some(&claim)).await.unwrap();
    assert_eq!(resp.status, 403, "{}", resp.body);
    phone.scan(&mut app, &code).await.unwrap();

    let after = key(&mut admin, phone.key_id()).await;
    assert_eq!((after["status"].as_str(), &after["public_key"]), (Some("active"), &before["public_key"]));
    assert_ne!(after["certificate_serial"], before["certificate_serial"], "a new certificate");
    assert!(after["certificate_expires_at"].as_str() > before["certificate_expires_at"].as_str(), "{after}");
    let (leaf, ca) = write_chain(env.path(), &after, "extended");
    verifies_under(&ca, &leaf);
    let certified =
        openssl_ok(&["x509".as_ref(), "-in".as_ref(), leaf.as_os_str(), "-pubkey".as_ref(), "-noout".as_ref()]);
    assert_eq!(certified.trim(), mcs_client::phone::public_key_pem(phone.public_key()).trim(), "the same key");
    let old_serial = before["certificate_serial"].as_str().unwrap();
    let status = admin.json(Method::GET, &format!("/v1/plugins/local/status?serial={old_serial}"), None).await;
    assert_eq!(status.unwrap()["status"], "revoked", "the old certificate is superseded at the CA");

    // The seal was re-made with the new certificate; the old one is revoked.
    let seals = admin.json(Method::GET, "/v1/seals", None).await.unwrap();
    let all = seals["seals"].as_array().expect("seal list").clone();
    let old = all.iter().find(|s| s["seal_id"] == old_seal_id.as_str()).expect("the old seal");
    assert_eq!(old["status"], "revoked", "{old}");
    let new = all.iter().find(|s| s["seal_id"] != old_seal_id.as_str() && s["status"] == "active").expect("a new seal");
    assert_eq!((&new["name"], &new["kind"]), (&seal["name"], &seal["kind"]));
    let new_seal = B64.decode(new["seal"].as_str().unwrap()).unwrap();
    let view = mcs_pdfseal::seal::verify(&new_seal).unwrap();
    let new_cert = B64.decode(after["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(view.signer_certificates, vec![new_cert], "the new seal carries the new certificate");

    // The PDF sealed before stays valid; the new seal seals and verifies.
    let check = |pdf: &[u8]| json!({ "pdf": B64.encode(pdf) });
    let v = admin.json(Method::POST, "/v1/verify/pdf", Some(&check(&sealed_before))).await.unwrap();
    assert_eq!(v["signatures"][0]["valid"], true, "{v}");
    let sealed_after = seal_one(&env, &daemon, new["seal_id"].as_str().unwrap(), &phone).await;
    let v = admin.json(Method::POST, "/v1/verify/pdf", Some(&check(&sealed_after))).await.unwrap();
    assert_eq!(v["signatures"][0]["valid"], true, "{v}");
    // The old seal no longer seals.
    let mut gw = connect(&env, &daemon, "gateway").await;
    let data = json!({ "pdf": B64.encode(mcs_pdfseal::pdf::sample_document(1, false)), "seal_id": old_seal_id,
        "placement": {"page": 1, "x": 300, "y": 300} });
    let refused = mcs_client::gateway::create_task(&mut gw, "pdf_seal", "Seal", data, None, None).await;
    assert!(refused.is_err(), "the old seal sealed: {refused:?}");
    // The phone signs on as before.
    phone.sign_message(&mut app, b"after the extension", SignMode::Canonical).await.unwrap();
}
