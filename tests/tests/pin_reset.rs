//! PIN reset without losing the key (issue 16; PROTOCOL.md "PIN reset without losing the
//! key"): a locked key is reset with an operator's one-time code and the same joint key
//! signs (OpenSSL verifies) and decrypts what was encrypted to its certificate before;
//! the old verifier and recovery key are gone from every store file; wrong codes are
//! counted durably (across `kill -9`) and void the reset at five; a used code, another
//! device and a key without a recovery key are refused.

use base64::Engine;
use hyper::Method;
use mcs_client::phone::{Phone, PhoneState, SignMode};
use mcs_e2e::*;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn code(e: mcs_client::Error) -> String {
    e.code().map(str::to_owned).unwrap_or_else(|| format!("not an API error: {e}"))
}

/// SM2-encrypt `plaintext` with OpenSSL to the key's certificate (from its key view).
fn encrypt_to_certificate(env: &DevEnv, view: &Value, plaintext: &[u8]) -> Vec<u8> {
    let p = |name: &str| env.path().join(name);
    std::fs::write(p("cert.der"), B64.decode(view["certificate"].as_str().unwrap()).unwrap()).unwrap();
    std::fs::write(p("pt"), plaintext).unwrap();
    let (ok, out) = openssl(&[
        "x509".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        p("cert.der").as_os_str(),
        "-out".as_ref(),
        p("cert.pem").as_os_str(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(&[
        "pkeyutl".as_ref(),
        "-encrypt".as_ref(),
        "-certin".as_ref(),
        "-inkey".as_ref(),
        p("cert.pem").as_os_str(),
        "-in".as_ref(),
        p("pt").as_os_str(),
        "-out".as_ref(),
        p("ct").as_os_str(),
    ]);
    assert!(ok, "{out}");
    std::fs::read(p("ct")).unwrap()
}

/// Wrong PINs until the key locks.
async fn lock(phone_state: &PhoneState, app: &mut mcs_client::Connection) {
    let wrong = Phone::unlock(phone_state.clone(), "000000").unwrap();
    let mut last = String::new();
    for _ in 0..5 {
        last = code(wrong.sign_message(app, b"guess", SignMode::Canonical).await.unwrap_err());
    }
    assert_eq!(last, "pin_locked");
}

/// A raw reset call: (status, body).
async fn raw_reset(app: &mut mcs_client::Connection, key_id: &str, code: &str) -> (u16, Value) {
    let body = json!({
        "reset_code": code,
        "new_pin": { "salt": "00".repeat(16), "verifier": "11".repeat(32) },
        "recovery_key": "22".repeat(32),
    });
    let resp = app.call(Method::POST, &format!("/v1/keys/{key_id}/pin/reset"), Some(&body)).await.unwrap();
    (resp.status, resp.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_key_is_reset_and_the_same_key_signs_and_decrypts_with_the_old_secrets_gone() {
    let env = DevEnv::new();
    env.add_app_identity("app2");
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, _app) = new_phone(&env, &daemon, "app1", "123456").await;
    let key_id = phone.key_id().to_owned();
    assert!(phone.state.d1_recovery.is_some(), "the phone keeps a recovery copy of d1");
    let view = mcs_client::admin::get_key(&mut admin, &key_id).await.unwrap();
    let bid = b"sealed bid: 1,234,000 CNY".to_vec();
    let ciphertext = encrypt_to_certificate(&env, &view, &bid);

    // The secrets a reset must erase, read while the daemon is down.
    let _ = daemon.stop();
    let old_verifier = read_secret(&env, &key_id, "pin-verifier", true);
    let old_recovery = read_secret(&env, &key_id, "recovery-key", true);
    let old_recovery_plain = read_secret(&env, &key_id, "recovery-key", false);
    assert_eq!(old_recovery_plain.len(), 32);
    assert_eq!(files_holding(&env.db(), &old_recovery), 1, "the wrapped recovery key is stored once");
    assert_eq!(files_holding(&env.db(), &old_recovery_plain), 0, "and never in clear");
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let mut app = connect(&env, &daemon, "app1").await;

    lock(&phone.state, &mut app).await;
    let err = phone.sign_message(&mut app, b"x", SignMode::Canonical).await.unwrap_err();
    assert_eq!(code(err), "pin_locked", "the right PIN too");

    // The operator opens the reset (after the identity check) and reads out the code.
    let opened = mcs_client::admin::open_pin_reset(&mut admin, &key_id, None).await.unwrap();
    let reset_code = opened["reset_code"].as_str().unwrap().to_owned();
    assert_eq!(reset_code.len(), 16);
    assert!(opened["expires_at"].as_str().is_some());
    // A phone cannot open one.
    let resp = app.call(Method::POST, &format!("/v1/keys/{key_id}/pin-reset"), None).await.unwrap();
    assert_eq!(resp.status, 403);
    // Another device, even with the right code: device_mismatch, nothing counted.
    let mut stranger = connect(&env, &daemon, "app2").await;
    let (status, body) = raw_reset(&mut stranger, &key_id, &reset_code).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("device_mismatch")), "{body}");
    // A wrong code is counted, durably: after kill -9 the count goes on.
    let (status, body) = raw_reset(&mut app, &key_id, "WRONGCODEWRONGCO").await;
    assert_eq!(
        (status, &body["error"]["code"], &body["error"]["remaining_attempts"]),
        (403, &json!("token_invalid"), &json!(4))
    );
    daemon.kill9();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let mut app = connect(&env, &daemon, "app1").await;
    let (_, body) = raw_reset(&mut app, &key_id, "WRONGCODEWRONGCO").await;
    assert_eq!(body["error"]["remaining_attempts"], 3, "{body}");
    // Bad input changes nothing.
    let resp = app
        .call(Method::POST, &format!("/v1/keys/{key_id}/pin/reset"), Some(&json!({"reset_code": reset_code})))
        .await
        .unwrap();
    assert_eq!(resp.status, 400);

    // The phone resets: new PIN, same key.
    let phone = Phone::reset_pin(&mut app, phone.state.clone(), &reset_code, "654321").await.unwrap();
    let after = mcs_client::admin::get_key(&mut admin, &key_id).await.unwrap();
    assert_eq!((after["status"].as_str(), &after["public_key"]), (Some("active"), &view["public_key"]));
    assert_eq!(after["pin"]["locked"], false);
    let sig = phone.sign_message(&mut app, b"after the reset", SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), b"after the reset", &sig.to_der()));
    let reopened = Phone::unlock(phone.state.clone(), "654321").unwrap();
    let plain = reopened.decrypt(&mut app, &ciphertext).await.unwrap();
    assert_eq!(plain.as_slice(), bid.as_slice(), "what was encrypted before the reset still decrypts");
    let old_pin = Phone::unlock(phone.state.clone(), "123456").unwrap();
    assert_eq!(code(old_pin.sign_message(&mut app, b"x", SignMode::Canonical).await.unwrap_err()), "pin_incorrect");
    // The code was used.
    let (status, body) = raw_reset(&mut app, &key_id, &reset_code).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");

    // Acknowledged: the old verifier and recovery key are in no store file.
    assert_eq!(files_holding(&env.db(), &old_verifier), 0, "the old verifier survived the reset");
    assert_eq!(files_holding(&env.db(), &old_recovery), 0, "the old recovery key survived the reset");
    let _ = daemon.stop();
    assert_eq!(files_holding(&env.db(), &old_verifier) + files_holding(&env.db(), &old_recovery), 0);
    let new_recovery = read_secret(&env, &key_id, "recovery-key", false);
    assert_ne!(new_recovery, old_recovery_plain, "a new recovery key");
    // The phone's new recovery copy opens with the new key only.
    let d1 = sm2_2p::phone::open_recovery(
        &new_recovery.clone().try_into().unwrap(),
        &key_id,
        phone.state.d1_recovery.as_deref().unwrap(),
    )
    .unwrap();
    assert_eq!(d1, *phone.share().scalar());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_codes_void_a_reset_and_a_key_without_recovery_key_cannot_be_reset() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let key_id = phone.key_id().to_owned();
    lock(&phone.state, &mut app).await;
    let opened = mcs_client::admin::open_pin_reset(&mut admin, &key_id, None).await.unwrap();
    let reset_code = opened["reset_code"].as_str().unwrap().to_owned();
    for left in (0..5).rev() {
        let (status, body) = raw_reset(&mut app, &key_id, "NOTTHECODE").await;
        assert_eq!((status, body["error"]["remaining_attempts"].as_u64()), (403, Some(left)), "{body}");
    }
    let Err(err) = Phone::reset_pin(&mut app, phone.state.clone(), &reset_code, "654321").await else {
        panic!("a voided reset went through")
    };
    assert_eq!(code(err), "conflict", "voided: even the right code");
    let key = mcs_client::admin::get_key(&mut admin, &key_id).await.unwrap();
    assert_eq!(key["pin"]["locked"], true, "still locked");
    // A new reset works again.
    let opened = mcs_client::admin::open_pin_reset(&mut admin, &key_id, None).await.unwrap();
    let phone = Phone::reset_pin(&mut app, phone.state.clone(), opened["reset_code"].as_str().unwrap(), "999999")
        .await
        .unwrap();
    phone.sign_message(&mut app, b"m", SignMode::Canonical).await.unwrap();

    // A phone that sent no recovery key: no reset can be opened for it (reissue instead).
    let (id, activation_code) = enroll(&mut admin, "Li Si").await;
    let mut app2 = connect(&env, &daemon, "app1").await;
    let prepared = Phone::prepare_activation("test", &id, &activation_code, "123456").unwrap().without_recovery_key();
    let (bare, csr) = prepared.send(&mut app2).await.unwrap();
    bare.install_certificate(&mut app2, &csr.unwrap()).await.unwrap();
    assert!(bare.state.d1_recovery.is_none());
    let err = mcs_client::admin::open_pin_reset(&mut admin, bare.key_id(), None).await.unwrap_err();
    assert_eq!(code(err), "conflict");
    let (status, body) = raw_reset(&mut app2, bare.key_id(), "ANYCODE").await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    // Unknown fields and a malformed delegation id are bad requests.
    let resp = admin
        .call(Method::POST, &format!("/v1/keys/{key_id}/pin-reset"), Some(&json!({"delegation": "d"})))
        .await
        .unwrap();
    assert_eq!(resp.status, 400);
}
