//! Key lifecycle (issue 16): suspension by the owner's phone (挂失) or an operator (冻结)
//! and resumption (解冻). Every use of a suspended key is `key_inactive`; the state
//! survives `kill -9`; the local CA lists the certificate on hold (CRL reason
//! `certificateHold`, read by OpenSSL) and drops it from the CRL on resumption.

use base64::Engine;
use hyper::Method;
use mcs_client::phone::SignMode;
use mcs_e2e::*;
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn code(e: mcs_client::Error) -> String {
    e.code().map(str::to_owned).unwrap_or_else(|| format!("not an API error: {e}"))
}

/// `openssl crl -text` of the local CA's CRL now.
async fn crl_text(env: &DevEnv, admin: &mut mcs_client::Connection, name: &str) -> String {
    let crl = admin.json(Method::GET, "/v1/plugins/local/crl", None).await.unwrap();
    let path = env.path().join(format!("{name}.crl"));
    std::fs::write(&path, B64.decode(crl["crl"].as_str().unwrap()).unwrap()).unwrap();
    let (ok, out) = openssl(&[
        "crl".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        path.as_os_str(),
        "-noout".as_ref(),
        "-text".as_ref(),
    ]);
    assert!(ok, "openssl crl: {out}");
    out.to_ascii_lowercase().replace(':', "")
}

async fn status_of(admin: &mut mcs_client::Connection, serial: &str) -> Value {
    admin.json(Method::GET, &format!("/v1/plugins/local/status?serial={serial}"), None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_key_refuses_every_use_survives_kill_9_and_resumes_with_its_hold_released() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let key_id = phone.key_id().to_owned();
    let serial = mcs_client::admin::get_key(&mut admin, &key_id).await.unwrap()["certificate_serial"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!crl_text(&env, &mut admin, "before").await.contains(&serial));

    // The owner's phone suspends it (挂失), with its PIN proof.
    let suspended = phone.suspend(&mut app, "lost").await.unwrap();
    assert_eq!(suspended["status"], "suspended");
    let err = phone.sign_message(&mut app, b"a bid", SignMode::Canonical).await.unwrap_err();
    assert_eq!(code(err), "key_inactive");
    // Suspending again, or by an operator now, is a conflict; another phone cannot.
    assert_eq!(code(mcs_client::admin::suspend(&mut admin, &key_id, "frozen").await.unwrap_err()), "conflict");
    // The CA holds the certificate: the CRL lists it with reason certificateHold.
    let held = crl_text(&env, &mut admin, "held").await;
    assert!(held.contains(&serial) && held.contains("certificate hold"), "{held}");
    assert_eq!(status_of(&mut admin, &serial).await["reason"], "certificateHold");

    // A crash keeps it suspended.
    daemon.kill9();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let mut app = connect(&env, &daemon, "app1").await;
    assert_eq!(mcs_client::admin::get_key(&mut admin, &key_id).await.unwrap()["status"], "suspended");
    let err = phone.sign_message(&mut app, b"a bid", SignMode::Canonical).await.unwrap_err();
    assert_eq!(code(err), "key_inactive");
    // A phone cannot resume (operators only).
    let resp = app.call(Method::POST, &format!("/v1/keys/{key_id}/resume"), None).await.unwrap();
    assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (403, Some("forbidden")));

    // The operator resumes it (解冻): the hold is released, the key signs again.
    let resumed = mcs_client::admin::resume(&mut admin, &key_id).await.unwrap();
    assert_eq!(resumed["status"], "active");
    assert!(!crl_text(&env, &mut admin, "released").await.contains(&serial));
    assert_eq!(status_of(&mut admin, &serial).await["status"], "good");
    let msg = b"a bid after the phone was found";
    let sig = phone.sign_message(&mut app, msg, SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), msg, &sig.to_der()));
    assert_eq!(code(mcs_client::admin::resume(&mut admin, &key_id).await.unwrap_err()), "conflict");

    // An operator's suspension (冻结) works the same; it survives kill -9 too.
    let frozen = mcs_client::admin::suspend(&mut admin, &key_id, "frozen").await.unwrap();
    assert_eq!(frozen["status"], "suspended");
    daemon.kill9();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    assert_eq!(mcs_client::admin::get_key(&mut admin, &key_id).await.unwrap()["status"], "suspended");
    assert!(crl_text(&env, &mut admin, "frozen").await.contains(&serial));
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_suspensions_change_nothing() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, _app) = new_phone(&env, &daemon, "app1", "123456").await;
    let key_id = phone.key_id().to_owned();
    let path = format!("/v1/keys/{key_id}/suspend");
    // Another phone: device_mismatch. A phone without a proof, an operator with one, an
    // empty reason: bad_request. A wrong PIN: counted, pin_incorrect.
    let mut other = connect(&env, &daemon, "app2").await;
    let proof = "0".repeat(64);
    let resp = other.call(Method::POST, &path, Some(&serde_json::json!({"reason": "lost", "pin_proof": proof}))).await;
    assert_eq!(resp.unwrap().body["error"]["code"], "device_mismatch");
    let mut app = connect(&env, &daemon, "app1").await;
    for (phone_sends, body) in [
        (true, serde_json::json!({"reason": "lost"})),
        (false, serde_json::json!({"reason": "lost", "pin_proof": proof})),
        (false, serde_json::json!({"reason": ""})),
        (false, serde_json::json!({"reason": "lost", "colour": "red"})),
    ] {
        let conn = if phone_sends { &mut app } else { &mut admin };
        let resp = conn.call(Method::POST, &path, Some(&body)).await.unwrap();
        assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    }
    let resp = app.call(Method::POST, &path, Some(&serde_json::json!({"reason": "lost", "pin_proof": proof}))).await;
    assert_eq!(resp.unwrap().body["error"]["code"], "pin_incorrect");
    let key = mcs_client::admin::get_key(&mut admin, &key_id).await.unwrap();
    assert_eq!(key["status"], "active");
    assert_eq!(key["pin"]["remaining_attempts"], 4);
    // An unknown key: not_found.
    let resp = admin.call(Method::POST, "/v1/keys/k_nope/suspend", Some(&serde_json::json!({"reason": "x"}))).await;
    assert_eq!(resp.unwrap().status, 404);
}

fn kinds(page: &mcs_api::InboxPage) -> Vec<String> {
    page.items.iter().map(|i| serde_json::to_value(i).unwrap()["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_hear_of_suspension_resumption_and_a_certificate_about_to_expire_once() {
    let env = DevEnv::new();
    env.append_config("\n[keys]\nexpiry_check_interval_secs = 1\n");
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    // A year's certificate: outside the 30-day window. A ten-day one: inside.
    let (long, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let (id, code) = enroll_for_days(&mut admin, "Wang Wu", &["P-DEV-1"], 10).await;
    let mut app2 = connect(&env, &daemon, "app2").await;
    let short = mcs_client::phone::Phone::activate(&mut app2, "t", &id, &code, "222222").await.unwrap();

    // The check runs every second: the short certificate's holder is told, once.
    let mut page = mcs_client::inbox::read(&mut app2, None, 0).await.unwrap();
    for _ in 0..100 {
        if kinds(&page).contains(&"certificate_expiring".to_owned()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = mcs_client::inbox::read(&mut app2, None, 0).await.unwrap();
    }
    let item =
        page.items.iter().map(|i| serde_json::to_value(i).unwrap()).find(|v| v["type"] == "certificate_expiring");
    let item = item.expect("a certificate_expiring item");
    assert_eq!(item["key_id"], short.key_id());
    assert!(daemon.metric("mcsd_certificates_expiring") >= 1.0);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let again = mcs_client::inbox::read(&mut app2, None, 0).await.unwrap();
    assert_eq!(kinds(&again).iter().filter(|k| *k == "certificate_expiring").count(), 1, "told once");
    let none = mcs_client::inbox::read(&mut app1, None, 0).await.unwrap();
    assert!(!kinds(&none).contains(&"certificate_expiring".to_owned()), "a year is outside the window");

    // Suspension and resumption reach the key's phone.
    mcs_client::admin::suspend(&mut admin, long.key_id(), "frozen").await.unwrap();
    let key = mcs_client::admin::get_key(&mut admin, long.key_id()).await.unwrap();
    assert_eq!(key["suspension"]["by"], "admin");
    assert_eq!(key["suspension"]["reason"], "frozen");
    assert_eq!(key["suspension"]["certificate_held"], true);
    mcs_client::admin::resume(&mut admin, long.key_id()).await.unwrap();
    let page = mcs_client::inbox::read(&mut app1, Some(&none.cursor), 0).await.unwrap();
    assert_eq!(kinds(&page), ["key_suspended", "key_resumed"]);
    assert!(mcs_client::admin::get_key(&mut admin, long.key_id()).await.unwrap().get("suspension").is_none());
}
