//! Scan tasks end to end over mutual TLS with two gateways (platforms P-DEV-1, P-DEV-2)
//! and two phones: every kind, every refusal code, batch, reject, and the platform
//! authorisation ("roaming") rules. Signatures are checked by OpenSSL over the exact
//! challenge or message.

use base64::Engine;
use hyper::Method;
use mcs_client::gateway;
use mcs_client::phone::{Phone, ScanCode};
use mcs_e2e::*;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn code_of(created: &Value) -> ScanCode {
    ScanCode::parse(created["qr"].as_str().unwrap()).unwrap()
}

fn api_code(e: mcs_client::Error) -> String {
    e.code().map(str::to_owned).unwrap_or_else(|| format!("not an API error: {e}"))
}

async fn status_of(gw: &mut mcs_client::Connection, task_id: &str) -> Value {
    gateway::task(gw, task_id).await.unwrap()["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_sign_tasks_verify_with_openssl_and_stay_with_their_gateway() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone1, mut app1) = new_phone_on(&env, &daemon, "app1", "111111", &["P-DEV-1"]).await;
    let (phone2, mut app2) = new_phone_on(&env, &daemon, "app2", "222222", &["P-DEV-2"]).await;
    let mut gw1 = connect(&env, &daemon, "gateway").await;
    let mut gw2 = connect(&env, &daemon, "gateway2").await;

    // Login on platform 1.
    let challenge = b"login challenge 7f3a from P-DEV-1".to_vec();
    let created = gateway::create_task(
        &mut gw1,
        "login",
        "Log in to the bidding hall",
        json!({"challenge": B64.encode(&challenge)}),
        None,
        None,
    )
    .await
    .unwrap();
    assert!(created["qr"].as_str().unwrap().starts_with("mcs://task?v=1&id="));
    let code = code_of(&created);
    assert_eq!(code.url, format!("https://{}", daemon.api));
    let view = phone1.scan(&mut app1, &code).await.unwrap();
    assert_eq!(view["display"]["title"], "Log in to the bidding hall");
    let out = gateway::result(&mut gw1, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed");
    assert_eq!(out["result"]["subject"]["name"], "Zhang San");
    assert_eq!(out["result"]["public_key"], phone1.state.public_key);
    let sig = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(env.path(), phone1.public_key(), &challenge, &sig));

    // Sign on platform 2 with the other phone.
    let message = "采购文件签名 / bid file ZB-2026-042 digest".as_bytes().to_vec();
    let created = gateway::create_task(
        &mut gw2,
        "sign",
        "Sign the bid file",
        json!({"message": B64.encode(&message)}),
        Some(120),
        None,
    )
    .await
    .unwrap();
    let code2 = code_of(&created);
    phone2.scan(&mut app2, &code2).await.unwrap();
    let out = gateway::result(&mut gw2, &code2.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed");
    let sig = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(env.path(), phone2.public_key(), &message, &sig));
    assert!(!openssl_verifies(env.path(), phone2.public_key(), &challenge, &sig));

    // A gateway sees only its own platform's tasks.
    assert_eq!(api_code(gateway::task(&mut gw2, &code.task_id).await.unwrap_err()), "not_found");
    assert_eq!(api_code(gateway::result(&mut gw1, &code2.task_id, 0).await.unwrap_err()), "not_found");
    // Phones and admins do not create tasks.
    let err =
        gateway::create_task(&mut app1, "login", "x", json!({"challenge": "AA=="}), None, None).await.unwrap_err();
    assert_eq!(api_code(err), "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypt_gives_the_plaintext_to_the_creating_gateway_once_and_encrypt_works() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let mut gw1 = connect(&env, &daemon, "gateway").await;
    let mut gw2 = connect(&env, &daemon, "gateway2").await;

    // The bid file key, encrypted by OpenSSL to the phone's joint key.
    let secret = b"bid file key: 6c1f8e0d2b7a4459".to_vec();
    let pem = env.path().join("joint.pem");
    std::fs::write(&pem, mcs_client::phone::public_key_pem(phone.public_key())).unwrap();
    let (pt, ct) = (env.path().join("pt"), env.path().join("ct"));
    std::fs::write(&pt, &secret).unwrap();
    let (ok, out) = openssl(&[
        "pkeyutl".as_ref(),
        "-encrypt".as_ref(),
        "-pubin".as_ref(),
        "-inkey".as_ref(),
        pem.as_os_str(),
        "-in".as_ref(),
        pt.as_os_str(),
        "-out".as_ref(),
        ct.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let ciphertext = std::fs::read(&ct).unwrap();
    let created = gateway::create_task(
        &mut gw1,
        "decrypt",
        "Open your bid",
        json!({"ciphertext": B64.encode(&ciphertext)}),
        None,
        None,
    )
    .await
    .unwrap();
    let code = code_of(&created);
    phone.scan(&mut app, &code).await.unwrap();

    assert_eq!(api_code(gateway::result(&mut gw2, &code.task_id, 0).await.unwrap_err()), "not_found");
    let first = gateway::result(&mut gw1, &code.task_id, 10).await.unwrap();
    assert_eq!(first["status"], "completed");
    assert_eq!(B64.decode(first["result"]["plaintext"].as_str().unwrap()).unwrap(), secret);
    let second = gateway::result(&mut gw1, &code.task_id, 0).await.unwrap();
    assert!(second.get("result").is_none(), "plaintext delivered twice: {second}");
    assert_eq!(second["error"], "result already delivered");

    // Encrypt: the daemon encrypts to the key of the phone that scans.
    let created = gateway::create_task(
        &mut gw1,
        "encrypt",
        "Seal your bid",
        json!({"plaintext": B64.encode(b"sealed offer")}),
        None,
        None,
    )
    .await
    .unwrap();
    let code = code_of(&created);
    phone.scan(&mut app, &code).await.unwrap();
    let out = gateway::result(&mut gw1, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed");
    assert_eq!(out["result"]["public_key"], phone.state.public_key);
    let ct = B64.decode(out["result"]["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(phone.decrypt(&mut app, &ct).await.unwrap().as_slice(), b"sealed offer");

    // Neither plaintext rests in the database files.
    let (status, _) = daemon.stop();
    assert!(status.success());
    for needle in [&secret[..], b"sealed offer", B64.encode(&secret).as_bytes()] {
        for file in files_under(&env.db()) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "plaintext found in {}", file.display());
        }
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_gets_its_code_and_changes_nothing_else() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone1, mut app1) = new_phone_on(&env, &daemon, "app1", "111111", &["P-DEV-1"]).await;
    let (phone2, mut app2) = new_phone_on(&env, &daemon, "app2", "222222", &["P-DEV-1"]).await;
    let mut gw1 = connect(&env, &daemon, "gateway").await;
    let sign = |title: &str| json!({"message": B64.encode(title.as_bytes())});

    // Wrong token: token_invalid, task still pending.
    let created = gateway::create_task(&mut gw1, "sign", "t", sign("doc"), None, None).await.unwrap();
    let mut forged = code_of(&created);
    forged.token = "00".repeat(16);
    assert_eq!(api_code(phone1.claim(&mut app1, &forged).await.unwrap_err()), "token_invalid");
    assert_eq!(api_code(phone1.view_task(&mut app1, &forged).await.unwrap_err()), "token_invalid");
    assert_eq!(status_of(&mut gw1, &forged.task_id).await, "pending");

    // Double claim: exactly one of two racing phones wins; the other gets task_state.
    let code = code_of(&created);
    let (a, b) = tokio::join!(phone1.claim(&mut app1, &code), phone2.claim(&mut app2, &code));
    assert!(a.is_ok() ^ b.is_ok(), "exactly one claim must win: {a:?} {b:?}");
    let loser = a.err().or(b.err()).expect("one claim lost");
    assert_eq!(api_code(loser), "task_state");
    let (winner, mut winner_conn, loser_phone, mut loser_conn) =
        if gateway::task(&mut gw1, &code.task_id).await.unwrap()["key_id"] == phone1.key_id() {
            (&phone1, connect(&env, &daemon, "app1").await, &phone2, connect(&env, &daemon, "app2").await)
        } else {
            (&phone2, connect(&env, &daemon, "app2").await, &phone1, connect(&env, &daemon, "app1").await)
        };
    // The loser cannot co-sign or complete it either.
    let e = sm2_2p::e_for_message(winner.public_key(), b"doc");
    assert_eq!(
        api_code(loser_phone.cosign_and_complete(&mut loser_conn, &code, &e).await.unwrap_err()),
        "device_mismatch"
    );

    // Forged signature: bad_request, task stays claimed; then the real one completes.
    let bogus = sm2_2p::Signature { r: sm2_2p::random_nonzero_scalar(), s: sm2_2p::random_nonzero_scalar() };
    let err = winner.complete_signature(&mut winner_conn, &code, &bogus).await.unwrap_err();
    assert_eq!(api_code(err), "task_state", "not co-signed yet");
    let sig = winner.cosign_and_complete(&mut winner_conn, &code, &e).await.unwrap();
    assert_eq!(status_of(&mut gw1, &code.task_id).await, "completed");
    // Replayed complete: task_state, result unchanged.
    let before = gateway::result(&mut gw1, &code.task_id, 0).await.unwrap();
    assert_eq!(api_code(winner.complete_signature(&mut winner_conn, &code, &sig).await.unwrap_err()), "task_state");
    assert_eq!(gateway::result(&mut gw1, &code.task_id, 0).await.unwrap(), before);

    // A forged signature after a genuine co-signature is refused and changes nothing.
    let created = gateway::create_task(&mut gw1, "sign", "t2", sign("doc2"), None, None).await.unwrap();
    let code = code_of(&created);
    let claimed = phone1.claim(&mut app1, &code).await.unwrap();
    let e_hex = claimed["e"].as_str().unwrap().to_owned();
    let (_k1, q1) = sm2_2p::ClientShare::sign_start();
    let q1_hex = sm2_2p::point_to_hex(&q1);
    let body = json!({"token": code.token, "q1": q1_hex, "pin_proof": phone1.proof(&sm2_2p::Transcript::TaskSign { task_id: code.task_id.clone(), q1: q1_hex.clone() })});
    app1.json(Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), Some(&body)).await.unwrap();
    let err = phone1.complete_signature(&mut app1, &code, &bogus).await.unwrap_err();
    assert_eq!(api_code(err), "bad_request");
    let view = gateway::task(&mut gw1, &code.task_id).await.unwrap();
    assert_eq!(view["status"], "claimed");
    // The same q1 again is refused (one nonce never gets two server halves); a phone that
    // lost its answer co-signs with a fresh nonce and completes.
    let again = app1.call(Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), Some(&body)).await.unwrap();
    assert_eq!(again.body["error"]["code"], "task_state", "{:?}", again.body);
    phone1.cosign_and_complete(&mut app1, &code, &sm2_2p::digest_from_hex(&e_hex).unwrap()).await.unwrap();

    // Expired: claim, GET and result all say so.
    let created = gateway::create_task(&mut gw1, "sign", "t3", sign("late"), Some(1), None).await.unwrap();
    let code = code_of(&created);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(api_code(phone1.claim(&mut app1, &code).await.unwrap_err()), "task_expired");
    assert_eq!(api_code(phone1.view_task(&mut app1, &code).await.unwrap_err()), "task_expired");
    let out = gateway::result(&mut gw1, &code.task_id, 0).await.unwrap();
    assert_eq!(out["status"], "expired");
    let err = gateway::create_task(&mut gw1, "sign", "t", sign("x"), Some(999_999), None).await.unwrap_err();
    assert_eq!(api_code(err), "bad_request");

    // Decrypt with the wrong key: cert_mismatch at claim; the task stays pending.
    let ct = sm2_2p::encrypt(phone1.public_key(), b"for phone 1 only").to_der();
    let created = gateway::create_task(
        &mut gw1,
        "decrypt",
        "open",
        json!({"ciphertext": B64.encode(&ct), "recipient_public_key": phone1.state.public_key}),
        None,
        None,
    )
    .await
    .unwrap();
    let code = code_of(&created);
    assert_eq!(api_code(phone2.claim(&mut app2, &code).await.unwrap_err()), "cert_mismatch");
    assert_eq!(status_of(&mut gw1, &code.task_id).await, "pending");
    phone1.scan(&mut app1, &code).await.unwrap();
    let out = gateway::result(&mut gw1, &code.task_id, 5).await.unwrap();
    assert_eq!(B64.decode(out["result"]["plaintext"].as_str().unwrap()).unwrap(), b"for phone 1 only");

    // Encrypted to a certificate: only the key holding that certificate serial may open it.
    let mut admin = connect(&env, &daemon, "admin").await;
    let serial = mcs_client::admin::get_key(&mut admin, phone1.key_id()).await.unwrap()["certificate_serial"]
        .as_str()
        .unwrap()
        .to_ascii_uppercase();
    let ct = sm2_2p::encrypt(phone1.public_key(), b"bid for serial").to_der();
    let data = json!({"ciphertext": B64.encode(&ct), "recipient_cert_serial": serial});
    let code = code_of(&gateway::create_task(&mut gw1, "decrypt", "open", data, None, None).await.unwrap());
    assert_eq!(api_code(phone2.claim(&mut app2, &code).await.unwrap_err()), "cert_mismatch");
    phone1.scan(&mut app1, &code).await.unwrap();
    let out = gateway::result(&mut gw1, &code.task_id, 5).await.unwrap();
    assert_eq!(B64.decode(out["result"]["plaintext"].as_str().unwrap()).unwrap(), b"bid for serial");

    // Bad task input never creates a task.
    for (kind, data) in [
        ("sign", json!({"message": "%%%"})),
        ("login", json!({"challenge": ""})),
        ("decrypt", json!({"ciphertext": "AAAA"})),
        ("csr", json!({})),
        ("sign", json!({"message": "AA==", "x": 1})),
    ] {
        let err = gateway::create_task(&mut gw1, kind, "t", data, None, None).await.unwrap_err();
        assert_eq!(api_code(err), "bad_request", "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roaming_needs_authorisation_and_once_is_used_up() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone_on(&env, &daemon, "app1", "123456", &["P-DEV-1"]).await;
    let mut gw2 = connect(&env, &daemon, "gateway2").await;
    let mut admin = connect(&env, &daemon, "admin").await;
    let sign = json!({"message": B64.encode(b"roaming")});

    let created = gateway::create_task(&mut gw2, "sign", "elsewhere", sign.clone(), None, None).await.unwrap();
    let code = code_of(&created);
    assert_eq!(api_code(phone.claim(&mut app, &code).await.unwrap_err()), "platform_not_authorized");
    assert_eq!(status_of(&mut gw2, &code.task_id).await, "pending");

    // Authorised once: the task works, the grant is used up.
    let path = format!("/v1/keys/{}/platforms", phone.key_id());
    let key = admin.json(Method::POST, &path, Some(&json!({"platform": "P-DEV-2", "mode": "once"}))).await.unwrap();
    assert!(key["platforms"].as_array().unwrap().iter().any(|p| p["platform"] == "P-DEV-2"));
    phone.scan(&mut app, &code).await.unwrap();
    assert_eq!(gateway::result(&mut gw2, &code.task_id, 5).await.unwrap()["status"], "completed");
    let key = mcs_client::admin::get_key(&mut admin, phone.key_id()).await.unwrap();
    assert!(!key["platforms"].as_array().unwrap().iter().any(|p| p["platform"] == "P-DEV-2"), "{key}");
    let created = gateway::create_task(&mut gw2, "sign", "again", sign.clone(), None, None).await.unwrap();
    let code = code_of(&created);
    assert_eq!(api_code(phone.claim(&mut app, &code).await.unwrap_err()), "platform_not_authorized");

    // A day grant works repeatedly; withdrawing it stops it. Bad grant requests are refused.
    admin.json(Method::POST, &path, Some(&json!({"platform": "P-DEV-2", "mode": "day"}))).await.unwrap();
    phone.scan(&mut app, &code).await.unwrap();
    for body in [
        json!({"platform": "P-DEV-2", "mode": "week"}),
        json!({"platform": "P-DEV-2", "mode": "until"}),
        json!({"platform": "P-DEV-2", "mode": "until", "until": "2001-01-01T00:00:00Z"}),
    ] {
        let resp = admin.call(Method::POST, &path, Some(&body)).await.unwrap();
        assert_eq!(resp.body["error"]["code"], "bad_request", "{body}");
    }
    admin.json(Method::DELETE, &format!("{path}/P-DEV-2"), None).await.unwrap();
    let created = gateway::create_task(&mut gw2, "sign", "after", sign, None, None).await.unwrap();
    assert_eq!(api_code(phone.claim(&mut app, &code_of(&created)).await.unwrap_err()), "platform_not_authorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_and_batch_cosigning() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let mut gw1 = connect(&env, &daemon, "gateway").await;

    let created =
        gateway::create_task(&mut gw1, "sign", "refuse me", json!({"message": B64.encode(b"no")}), None, None)
            .await
            .unwrap();
    let code = code_of(&created);
    phone.reject(&mut app, &code, "not my document").await.unwrap();
    let out = gateway::result(&mut gw1, &code.task_id, 5).await.unwrap();
    assert_eq!(out["status"], "rejected");
    assert_eq!(out["error"], "rejected: not my document");
    assert_eq!(api_code(phone.claim(&mut app, &code).await.unwrap_err()), "task_state");

    let messages: Vec<Vec<u8>> = (0..4).map(|i| format!("batch page {i}").into_bytes()).collect();
    let mut codes = Vec::new();
    for m in &messages {
        let created = gateway::create_task(&mut gw1, "sign", "batch", json!({"message": B64.encode(m)}), None, None)
            .await
            .unwrap();
        codes.push(code_of(&created));
    }
    let sigs = phone.batch_sign(&mut app, &codes).await.unwrap();
    assert_eq!(sigs.len(), 4);
    for ((m, code), sig) in messages.iter().zip(&codes).zip(sigs) {
        let sig = sig.unwrap();
        assert!(openssl_verifies(env.path(), phone.public_key(), m, &sig.to_der()));
        let out = gateway::result(&mut gw1, &code.task_id, 5).await.unwrap();
        assert_eq!(out["status"], "completed");
    }

    // A wrong PIN over a batch is one failure and co-signs nothing.
    let wrong = Phone::unlock(phone.state.clone(), "000000").unwrap();
    let created =
        gateway::create_task(&mut gw1, "sign", "b", json!({"message": B64.encode(b"b")}), None, None).await.unwrap();
    let code = code_of(&created);
    let err = wrong.batch_sign(&mut app, std::slice::from_ref(&code)).await.unwrap_err();
    assert_eq!(api_code(err), "pin_incorrect");
    let key = mcs_client::admin::get_key(&mut app, phone.key_id()).await.unwrap();
    assert_eq!(key["pin"]["remaining_attempts"], 4);
    // The task was released and can still be co-signed with the right PIN.
    let e = sm2_2p::e_for_message(phone.public_key(), b"b");
    phone.cosign_and_complete(&mut app, &code, &e).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_when_the_phone_finishes_and_the_sweeper_expires_and_purges() {
    let env = DevEnv::new();
    env.append_config("\n[tasks]\nretention_secs = 2\nsweep_interval_secs = 1\n");
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let mut gw1 = connect(&env, &daemon, "gateway").await;

    // The gateway waits first; the phone scans meanwhile; the wait ends with the result.
    let created =
        gateway::create_task(&mut gw1, "sign", "wait for me", json!({"message": B64.encode(b"w")}), None, None)
            .await
            .unwrap();
    let code = code_of(&created);
    let started = std::time::Instant::now();
    let waiter = tokio::spawn({
        let mut gw = connect(&env, &daemon, "gateway").await;
        let id = code.task_id.clone();
        async move { gateway::result(&mut gw, &id, 30).await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the long-poll returned before the task finished");
    phone.scan(&mut app, &code).await.unwrap();
    let out = waiter.await.unwrap();
    assert_eq!(out["status"], "completed");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "long-poll did not wake up");

    // Nobody touches this one: the sweeper expires it, then purges it (and the finished one).
    let created =
        gateway::create_task(&mut gw1, "sign", "forgotten", json!({"message": B64.encode(b"f")}), Some(1), None)
            .await
            .unwrap();
    let forgotten = code_of(&created).task_id;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut saw_expired = false;
    loop {
        match gateway::task(&mut gw1, &forgotten).await {
            Ok(v) if v["status"] == "expired" => saw_expired = true,
            Ok(_) => {}
            Err(e) if e.code() == Some("not_found") => break,
            Err(e) => panic!("{e}"),
        }
        assert!(std::time::Instant::now() < deadline, "the sweeper did not purge the task");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(saw_expired, "the task was purged without being seen expired");
    assert_eq!(api_code(gateway::task(&mut gw1, &code.task_id).await.unwrap_err()), "not_found");
}
