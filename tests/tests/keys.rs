//! End to end over real mutual TLS against SoftHSM: enroll → activate → sign → decrypt,
//! PIN counter and lock (durable across kill -9), device binding, roles, bad input, TLS
//! refusal, and no plaintext secret in the database files. Every signature is also checked
//! by OpenSSL with an explicit SM2 ID.

use hyper::Method;
use mcs_client::phone::{Phone, SignMode};
use mcs_e2e::*;
use serde_json::{Value, json};

async fn key_json(conn: &mut mcs_client::Connection, key_id: &str) -> Value {
    mcs_client::admin::get_key(conn, key_id).await.expect("get key")
}

fn code(e: mcs_client::Error) -> String {
    e.code().map(str::to_owned).unwrap_or_else(|| format!("not an API error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_activate_sign_decrypt_all_checked_by_openssl() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;

    let key = key_json(&mut conn, phone.key_id()).await;
    assert_eq!(key["status"], "active");
    assert_eq!(key["public_key"], phone.state.public_key);
    assert_eq!(key["pin"], json!({"remaining_attempts": 5, "locked": false}));
    assert_eq!(key["platforms"], json!([{"platform": "P-DEV-1"}]));

    // Canonical and fixed_k3 signatures over several messages: OpenSSL must accept each.
    for (i, mode) in
        [SignMode::Canonical, SignMode::FixedK3, SignMode::Canonical, SignMode::FixedK3].into_iter().enumerate()
    {
        let msg = format!("bid document {i}: tender ZB-2026-{i:03}").into_bytes();
        let sig = phone.sign_message(&mut conn, &msg, mode).await.expect("sign");
        assert!(openssl_verifies(env.path(), phone.public_key(), &msg, &sig.to_der()), "{mode:?} signature {i}");
        let mut tampered = msg.clone();
        tampered[0] ^= 1;
        assert!(!openssl_verifies(env.path(), phone.public_key(), &tampered, &sig.to_der()));
    }

    // A ciphertext made by OpenSSL for the joint key decrypts through the daemon.
    let pem = env.path().join("joint.pem");
    std::fs::write(&pem, mcs_client::phone::public_key_pem(phone.public_key())).unwrap();
    for (i, plaintext) in ["sealed bid: 998,000 CNY".to_owned(), "x".repeat(1000)].iter().enumerate() {
        let (input, output) = (env.path().join(format!("pt{i}")), env.path().join(format!("ct{i}")));
        std::fs::write(&input, plaintext).unwrap();
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
        assert!(ok, "openssl encrypt: {out}");
        let ct = std::fs::read(&output).unwrap();
        let got = phone.decrypt(&mut conn, &ct).await.expect("decrypt");
        assert_eq!(got.as_slice(), plaintext.as_bytes());
    }

    // The phone's own list shows exactly its key; the admin's shows it too.
    let mine = conn.json(Method::GET, "/v1/keys", None).await.unwrap();
    assert_eq!(mine["keys"].as_array().unwrap().len(), 1);
    let mut admin = connect(&env, &daemon, "admin").await;
    let all = mcs_client::admin::list_keys(&mut admin, Some("Zhang San"), Some("active")).await.unwrap();
    assert_eq!(all["keys"][0]["key_id"], phone.key_id());
    let (status, log) = daemon.stop();
    assert!(status.success(), "daemon exit: {status:?}\n{log}");
}

/// A clean stop records the vault layout, so the next start skips the slot check; after a
/// crash the next start checks every slot. Keys work either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_lets_the_next_start_skip_the_vault_check_and_a_crash_does_not() {
    const SKIPPED: &str = "vault slot check skipped";
    const CHECKED: &str = "every vault slot checked";
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, _conn) = new_phone(&env, &daemon, "app1", "123456").await;
    let (status, log) = daemon.stop();
    // dev-init made the store (for the pinned audit key) and closed it cleanly.
    assert!(status.success() && log.contains(SKIPPED), "the store dev-init closed is not checked:\n{log}");

    let daemon = Daemon::start(&env);
    let mut conn = connect(&env, &daemon, "app1").await;
    let sig = phone.sign_message(&mut conn, b"after a clean stop", SignMode::Canonical).await.expect("sign");
    assert!(openssl_verifies(env.path(), phone.public_key(), b"after a clean stop", &sig.to_der()));
    daemon.kill9();

    let daemon = Daemon::start(&env);
    let mut conn = connect(&env, &daemon, "app1").await;
    let sig = phone.sign_message(&mut conn, b"after a crash", SignMode::Canonical).await.expect("sign");
    assert!(openssl_verifies(env.path(), phone.public_key(), b"after a crash", &sig.to_der()));
    let (status, log) = daemon.stop();
    assert!(
        status.success() && log.contains(CHECKED) && !log.contains(SKIPPED),
        "after kill -9 every slot is checked:\n{log}"
    );

    let daemon = Daemon::start(&env);
    let (status, log) = daemon.stop();
    assert!(
        status.success() && log.contains(SKIPPED) && !log.contains(CHECKED),
        "after a clean stop the check is skipped:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_counts_down_then_locks_and_the_lock_survives_kill_9() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    let wrong = Phone::unlock(phone.state.clone(), "999999").unwrap();

    for expected in [4, 3] {
        let err = wrong.sign_message(&mut conn, b"m", SignMode::Canonical).await.unwrap_err();
        let mcs_client::Error::Api(api) = err else { panic!("expected an API error") };
        assert_eq!((api.status, api.code.as_str()), (403, "pin_incorrect"));
        assert_eq!(api.extra["remaining_attempts"], expected);
    }
    // Crash right after two failures: the counter must have been durable before the replies.
    daemon.kill9();
    let daemon = Daemon::start(&env);
    let mut conn = connect(&env, &daemon, "app1").await;
    assert_eq!(key_json(&mut conn, phone.key_id()).await["pin"], json!({"remaining_attempts": 3, "locked": false}));

    for expected in [2, 1] {
        let err = wrong.decrypt(&mut conn, &sm2_2p::encrypt(phone.public_key(), b"x").to_der()).await.unwrap_err();
        let mcs_client::Error::Api(api) = err else { panic!("expected an API error") };
        assert_eq!(api.code, "pin_incorrect");
        assert_eq!(api.extra["remaining_attempts"], expected);
    }
    let err = wrong.sign_message(&mut conn, b"m", SignMode::Canonical).await.unwrap_err();
    let mcs_client::Error::Api(api) = err else { panic!("expected an API error") };
    assert_eq!((api.status, api.code.as_str()), (423, "pin_locked"));
    // Now even the right PIN is refused.
    assert_eq!(code(phone.sign_message(&mut conn, b"m", SignMode::Canonical).await.unwrap_err()), "pin_locked");

    daemon.kill9();
    let daemon = Daemon::start(&env);
    let mut conn = connect(&env, &daemon, "app1").await;
    assert_eq!(code(phone.sign_message(&mut conn, b"m", SignMode::Canonical).await.unwrap_err()), "pin_locked");
    assert_eq!(key_json(&mut conn, phone.key_id()).await["pin"], json!({"remaining_attempts": 0, "locked": true}));

    // An admin unlocks; the right PIN works again and the counter is full.
    let mut admin = connect(&env, &daemon, "admin").await;
    mcs_client::admin::unlock(&mut admin, phone.key_id()).await.expect("unlock");
    let sig = phone.sign_message(&mut conn, b"after unlock", SignMode::Canonical).await.expect("sign");
    assert!(openssl_verifies(env.path(), phone.public_key(), b"after unlock", &sig.to_der()));
    assert_eq!(key_json(&mut conn, phone.key_id()).await["pin"]["remaining_attempts"], 5);

    // A success resets a partial count.
    let _ = wrong.sign_message(&mut conn, b"m", SignMode::Canonical).await.unwrap_err();
    phone.sign_message(&mut conn, b"ok", SignMode::Canonical).await.expect("sign");
    assert_eq!(key_json(&mut conn, phone.key_id()).await["pin"]["remaining_attempts"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_change_takes_effect_and_old_pin_stops_working() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (mut phone, mut conn) = new_phone(&env, &daemon, "app1", "111111").await;
    let old_state = phone.state.clone();
    phone.change_pin(&mut conn, "222222").await.expect("change pin");
    let reopened = Phone::unlock(phone.state.clone(), "222222").unwrap();
    let sig = reopened.sign_message(&mut conn, b"new pin", SignMode::Canonical).await.expect("sign");
    assert!(openssl_verifies(env.path(), reopened.public_key(), b"new pin", &sig.to_der()));
    let stale = Phone::unlock(old_state, "111111").unwrap();
    assert_eq!(code(stale.sign_message(&mut conn, b"m", SignMode::Canonical).await.unwrap_err()), "pin_incorrect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_devices_and_wrong_roles_are_refused() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, _) = new_phone(&env, &daemon, "app1", "123456").await;

    // The other phone, even with the right PIN proof, gets device_mismatch.
    let mut other = connect(&env, &daemon, "app2").await;
    assert_eq!(code(phone.sign_message(&mut other, b"m", SignMode::Canonical).await.unwrap_err()), "device_mismatch");
    let resp = other.call(Method::GET, &format!("/v1/keys/{}", phone.key_id()), None).await.unwrap();
    assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (403, Some("device_mismatch")));
    assert_eq!(other.json(Method::GET, "/v1/keys", None).await.unwrap()["keys"], json!([]));

    // A gateway calling phone endpoints, a phone calling admin endpoints: forbidden.
    let mut gateway = connect(&env, &daemon, "gateway").await;
    assert_eq!(code(phone.sign_message(&mut gateway, b"m", SignMode::Canonical).await.unwrap_err()), "forbidden");
    let resp = gateway.call(Method::GET, "/v1/keys", None).await.unwrap();
    assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (403, Some("forbidden")));
    let mut app = connect(&env, &daemon, "app1").await;
    let resp = app.call(Method::POST, &format!("/v1/keys/{}/unlock", phone.key_id()), None).await.unwrap();
    assert_eq!(resp.body["error"]["code"], "forbidden");
    let err = mcs_client::admin::create_enrollment(
        &mut app,
        &mcs_client::admin::EnrollmentRequest {
            subject: mcs_client::admin::Subject {
                kind: mcs_client::admin::SubjectKind::Person,
                name: "x".into(),
                org_name: None,
                credit_code: None,
                id_number: None,
            },
            ca: "local".into(),
            profile: None,
            platforms: vec![],
            validity_days: 1,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));

    // None of that touched the key: the PIN counter is still full.
    let mut admin = connect(&env, &daemon, "admin").await;
    assert_eq!(key_json(&mut admin, phone.key_id()).await["pin"]["remaining_attempts"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_bad_request_and_changes_nothing() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    let path = format!("/v1/keys/{}/sign", phone.key_id());
    let e = hex::encode(sm2_2p::e_for_message(phone.public_key(), b"m"));
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let q1 = sm2_2p::point_to_hex(&q1);
    let mut off_curve = q1.clone();
    let last = if off_curve.ends_with('0') { "1" } else { "0" };
    off_curve.replace_range(129..130, last);
    let identity = format!("04{}", "0".repeat(128));
    let zero = "0".repeat(64);
    let order = "fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123";

    let cases: Vec<(&str, Value)> = vec![
        ("off-curve q1", json!({"e": e, "q1": off_curve, "pin_proof": phone.proof(&sign_t(&e, &off_curve))})),
        ("identity q1", json!({"e": e, "q1": identity, "pin_proof": phone.proof(&sign_t(&e, &identity))})),
        ("zero scalar as q1", json!({"e": e, "q1": zero, "pin_proof": phone.proof(&sign_t(&e, &zero))})),
        ("group order as q1", json!({"e": e, "q1": order, "pin_proof": phone.proof(&sign_t(&e, order))})),
        ("short e", json!({"e": "abcd", "q1": q1, "pin_proof": phone.proof(&sign_t("abcd", &q1))})),
        ("non-hex e", json!({"e": "zz".repeat(32), "q1": q1, "pin_proof": zero})),
        ("unknown field", json!({"e": e, "q1": q1, "pin_proof": phone.proof(&sign_t(&e, &q1)), "extra": 1})),
        ("missing field", json!({"e": e, "q1": q1})),
        ("bad proof encoding", json!({"e": e, "q1": q1, "pin_proof": "xyz"})),
        ("unknown mode", json!({"e": e, "q1": q1, "pin_proof": phone.proof(&sign_t(&e, &q1)), "mode": "fast"})),
        ("wrong type", json!({"e": 5, "q1": q1, "pin_proof": zero})),
    ];
    for (what, body) in &cases {
        let resp = conn.call(Method::POST, &path, Some(body)).await.unwrap();
        assert_eq!(
            (resp.status, resp.body["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{what}: {:?}",
            resp.body
        );
    }
    let resp = conn.call_bytes(Method::POST, &path, "{not json".into()).await.unwrap();
    assert_eq!(resp.body["error"]["code"], "bad_request");
    let t1_path = format!("/v1/keys/{}/decrypt", phone.key_id());
    let resp = conn.call(Method::POST, &t1_path, Some(&json!({"t1": identity, "pin_proof": zero}))).await.unwrap();
    assert_eq!(resp.body["error"]["code"], "bad_request");
    let resp = conn.call_bytes(Method::POST, &path, vec![b' '; 2 << 20].into()).await.unwrap();
    assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (413, Some("payload_too_large")));

    // Nothing changed: counter full, and a valid request works.
    assert_eq!(key_json(&mut conn, phone.key_id()).await["pin"]["remaining_attempts"], 5);
    let sig = phone.sign_message(&mut conn, b"still fine", SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), b"still fine", &sig.to_der()));

    // A bad activation leaves the enrollment usable.
    let mut admin = connect(&env, &daemon, "admin").await;
    let (id, activation) = enroll(&mut admin, "Li Si").await;
    let act = format!("/v1/enrollments/{id}/activate");
    let pin = json!({"salt": "00".repeat(16), "verifier": "11".repeat(32)});
    for body in [
        json!({"activation_code": activation, "p1": identity, "pin": pin}),
        json!({"activation_code": activation, "p1": q1, "pin": {"salt": "00", "verifier": "11".repeat(32)}}),
        json!({"activation_code": activation, "p1": q1, "pin": pin, "device": "x"}),
    ] {
        let resp = conn.call(Method::POST, &act, Some(&body)).await.unwrap();
        assert_eq!(resp.body["error"]["code"], "bad_request", "{body}");
    }
    let resp =
        conn.call(Method::POST, &act, Some(&json!({"activation_code": "WRONG", "p1": q1, "pin": pin}))).await.unwrap();
    assert_eq!(resp.body["error"]["code"], "forbidden");
    Phone::activate(&mut conn, "test", &id, &activation, "123456").await.expect("activation still possible");
    let resp = conn
        .call(Method::POST, &act, Some(&json!({"activation_code": activation, "p1": q1, "pin": pin})))
        .await
        .unwrap();
    assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (409, Some("conflict")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_foreign_client_certificates_fail_the_handshake() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut no_cert = env.endpoint(&daemon, "app1");
    no_cert.cert_file = None;
    no_cert.key_file = None;
    let result = match mcs_client::Connection::connect(&no_cert).await {
        Ok(mut c) => c.call(Method::GET, "/v1/keys", None).await.map(|r| r.status),
        Err(e) => Err(e),
    };
    assert!(matches!(result, Err(mcs_client::Error::Connect(_))), "no client cert: {result:?}");

    // A certificate from a CA the daemon does not trust.
    let (key, cert) = (env.path().join("rogue.key"), env.path().join("rogue.pem"));
    let (ok, out) = openssl(&[
        "req".as_ref(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-subj".as_ref(),
        "/CN=rogue".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
        "-days".as_ref(),
        "1".as_ref(),
    ]);
    assert!(ok, "{out}");
    let mut rogue = env.endpoint(&daemon, "app1");
    rogue.cert_file = Some(cert);
    rogue.key_file = Some(key);
    let result = match mcs_client::Connection::connect(&rogue).await {
        Ok(mut c) => c.call(Method::GET, "/v1/keys", None).await.map(|r| r.status),
        Err(e) => Err(e),
    };
    assert!(matches!(result, Err(mcs_client::Error::Connect(_))), "foreign cert: {result:?}");

    // The real phone certificate still works.
    let mut ok_conn = connect(&env, &daemon, "app1").await;
    assert_eq!(ok_conn.call(Method::GET, "/v1/keys", None).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_files_never_hold_a_share_in_clear_and_revocation_erases_the_wrapped_one() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    phone.sign_message(&mut conn, b"m", SignMode::Canonical).await.unwrap();
    let (status, _) = daemon.stop();
    assert!(status.success());

    // Recover the real server share through the HSM (test-only tool) and check it is the
    // share of this joint key: P = d2⁻¹·P1 − G with P1 = d1⁻¹·G.
    let out = std::process::Command::new(bin("read-share"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .arg(env.config())
        .arg(phone.key_id())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let share_hex = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let share = hex::decode(&share_hex).unwrap();
    let server = sm2_2p::ServerShare::from_bytes(&share).unwrap();
    let p1 = phone.share().p1();
    let t1 = server.decrypt(&p1); // d2⁻¹·P1
    let expected = sm2_2p::ProjectivePoint::from(t1) - sm2_2p::ProjectivePoint::from(generator());
    assert_eq!(expected.to_affine(), *phone.public_key());

    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("d2", share[..32].to_vec()),
        ("d2 inverse", share[32..].to_vec()),
        ("PIN verifier", phone.verifier().to_vec()),
        ("d2 hex", share_hex.as_bytes()[..64].to_vec()),
        ("verifier hex", hex::encode(phone.verifier()).into_bytes()),
    ];
    let mut files = 0;
    for entry in walk(&env.db()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for (what, needle) in &secrets {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} found in clear in {}",
                entry.display()
            );
        }
    }
    assert!(files > 0, "no database files found");
    // The public key is there (the search itself works).
    let public = hex::decode(&phone.state.public_key).unwrap();
    assert!(walk(&env.db()).iter().any(|f| {
        let b = std::fs::read(f).unwrap();
        b.windows(phone.state.public_key.len()).any(|w| w == phone.state.public_key.as_bytes())
            || b.windows(65).any(|w| w == public.as_slice())
    }));

    // Revocation: once acknowledged, not even the wrapped share is left in any file.
    let out = std::process::Command::new(bin("read-share"))
        .arg("--wrapped")
        .arg(env.config())
        .arg(phone.key_id())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wrapped = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert!(wrapped.len() >= 32 + 16, "a wrapped share is ciphertext plus tag");
    let in_files = |needle: &[u8]| {
        walk(&env.db()).iter().filter(|f| std::fs::read(f).unwrap().windows(needle.len()).any(|w| w == needle)).count()
    };
    assert_eq!(in_files(&wrapped), 1, "the wrapped share is stored exactly once (in the vault)");
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let revoked = mcs_client::admin::revoke(&mut admin, phone.key_id(), "key_compromise").await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    // Checked while the daemon still runs: the acknowledgement alone guarantees it.
    assert_eq!(in_files(&wrapped), 0, "the wrapped share survived revocation somewhere in the database files");
    let (status, _) = daemon.stop();
    assert!(status.success());
    assert_eq!(in_files(&wrapped), 0);
}

fn generator() -> sm2_2p::AffinePoint {
    use elliptic_curve::group::Group;
    sm2_2p::ProjectivePoint::generator().to_affine()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_activation_whose_answer_was_lost_gets_the_same_key() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (enrollment, code) = enroll(&mut admin, "Qian Jiu").await;
    let (_share, p1) = sm2_2p::client_keygen();
    let verifier = sm2_2p::pin_verifier(b"246810", b"0123456789abcdef");
    let body = serde_json::json!({
        "activation_code": code,
        "p1": sm2_2p::point_to_hex(&p1),
        "pin": { "salt": hex::encode(b"0123456789abcdef"), "verifier": hex::encode(verifier.as_slice()) },
    });
    let path = format!("/v1/enrollments/{enrollment}/activate");
    let mut app = connect(&env, &daemon, "app1").await;
    let first = app.json(Method::POST, &path, Some(&body)).await.unwrap();
    let again = app.json(Method::POST, &path, Some(&body)).await.unwrap();
    assert_eq!(first["key_id"], again["key_id"]);
    assert_eq!(first["public_key"], again["public_key"]);
    assert!(again["csr_task"]["task_id"].is_string());

    // Another phone, or another P1, is refused: the code is spent.
    let mut other = body.clone();
    other["p1"] = serde_json::json!(sm2_2p::point_to_hex(&sm2_2p::client_keygen().1));
    let resp = app.call(Method::POST, &path, Some(&other)).await.unwrap();
    assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (409, Some("conflict")));
    let mut app2 = connect(&env, &daemon, "app2").await;
    let resp = app2.call(Method::POST, &path, Some(&body)).await.unwrap();
    assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (409, Some("conflict")));
    let keys = mcs_client::admin::list_keys(&mut admin, Some("Qian Jiu"), None).await.unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "one key, not two");
}

/// The transcript of a direct sign request.
fn sign_t(e: impl Into<String>, q1: impl Into<String>) -> sm2_2p::Transcript {
    sm2_2p::Transcript::Sign { e: e.into(), q1: q1.into() }
}
