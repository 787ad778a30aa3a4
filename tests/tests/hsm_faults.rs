//! The daemon behind `pkcs11-mock`: device errors in the middle of a stream of signing
//! requests give `hsm_unavailable` with `Retry-After` — never a wrong answer, never a
//! changed record — and the daemon serves again by itself once the faults stop.

use std::time::{Duration, Instant};

use mcs_client::phone::SignMode;
use mcs_e2e::*;

fn command(env: &DevEnv, text: &str) {
    let tmp = env.path().join("mock-control.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, env.mock_control()).unwrap();
}

/// Wait (bounded) until `/readyz` answers `want`.
fn wait_ready(daemon: &Daemon, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = daemon.health_get("/readyz");
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "readyz stayed {status}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_errors_give_hsm_unavailable_and_the_daemon_recovers_by_itself() {
    let env = DevEnv::with_mock();
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(
        env.config(),
        cfg.replace("pin_file = \"hsm-pin\"\n", "pin_file = \"hsm-pin\"\nreinit_interval_ms = 200\n"),
    )
    .unwrap();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    wait_ready(&daemon, 200);

    // A stream of requests; after the 10th, the next 8 HSM calls fail. Re-initialisation
    // attempts consume faults too, so the stream runs until all 8 were injected and the
    // daemon has recovered on its own (nobody tells it the faults are over).
    let injected = || std::fs::read_to_string(env.path().join("mock-control.status")).unwrap_or_default();
    let (mut ok, mut unavailable, mut ok_after_faults) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while ok_after_faults < 5 {
        if Instant::now() > deadline {
            let summary = format!("{ok} ok, {unavailable} unavailable, {}", injected());
            let (_, log) = daemon.stop();
            panic!("no recovery: {summary}\n{log}");
        }
        if i == 10 {
            command(&env, "fault = device_error\ncount = 8\n");
        }
        let msg = format!("stream {i}").into_bytes();
        match phone.sign_message(&mut conn, &msg, SignMode::Canonical).await {
            Ok(sig) => {
                // The phone verified it already; OpenSSL checks a sample too.
                assert!(sm2_2p::verify(phone.public_key(), &sm2_2p::e_for_message(phone.public_key(), &msg), &sig));
                if i % 10 == 0 {
                    assert!(openssl_verifies(env.path(), phone.public_key(), &msg, &sig.to_der()));
                }
                ok += 1;
                if injected().trim() == "injected = 8" {
                    ok_after_faults += 1;
                }
            }
            Err(mcs_client::Error::Api(e)) => {
                assert_eq!((e.status, e.code.as_str()), (503, "hsm_unavailable"), "request {i}: {e}");
                assert!(e.retry_after.is_some_and(|s| s >= 1), "Retry-After header missing");
                if unavailable == 0 {
                    assert_eq!(daemon.health_get("/readyz").0, 503, "not ready while the HSM is down");
                }
                unavailable += 1;
            }
            Err(other) => panic!("request {i}: {other}"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{ok} signed, {unavailable} hsm_unavailable, mock: {}", injected().trim());
    assert!(unavailable >= 1, "no request saw the fault");
    wait_ready(&daemon, 200);
    let got = phone.decrypt(&mut conn, &sm2_2p::encrypt(phone.public_key(), b"still mine").to_der()).await.unwrap();
    assert_eq!(got.as_slice(), b"still mine");

    // HSM failures are not PIN failures, and the key record is intact.
    let key = mcs_client::admin::get_key(&mut conn, phone.key_id()).await.unwrap();
    assert_eq!(key["status"], "active");
    assert_eq!(key["pin"]["remaining_attempts"], 5);
    let (status, body) = daemon.health_get("/readyz");
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(ready["hsm_reinitialisations"].as_u64().unwrap() >= 1, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_session_and_login_loss_is_retried_transparently() {
    let env = DevEnv::with_mock();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    // One lost session and one lost login: each is repaired and retried inside the call.
    for fault in ["session_handle_invalid", "user_not_logged_in"] {
        command(&env, &format!("fault = {fault}\ncount = 1\nfunctions = C_DecryptInit\n"));
        let sig = phone.sign_message(&mut conn, fault.as_bytes(), SignMode::Canonical).await.expect(fault);
        assert!(openssl_verifies(env.path(), phone.public_key(), fault.as_bytes(), &sig.to_der()));
        let status = std::fs::read_to_string(env.path().join("mock-control.status")).unwrap();
        assert_eq!(status.trim(), "injected = 1", "{fault} was not injected");
    }
    assert_eq!(daemon.health_get("/readyz").0, 200);
}

/// A token that refuses to store a new object while it serves everything else (SoftHSM's
/// token directory read-only under `ProtectSystem=strict`): an online KEK rotation fails
/// with a message naming the cause, and the node stays in service — no re-initialisation,
/// signatures go on — and rotates once the token takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refusing_writes_fails_the_rotation_but_not_the_node() {
    let env = DevEnv::with_mock();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    command(&env, "fault = general_error\ncount = 1\nfunctions = C_GenerateKey\n");
    let rotate = || {
        let out = std::process::Command::new(bin("mcsd"))
            .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
            .args(["hsm", "rotate-kek", "--config"])
            .arg(env.config())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, out) = rotate();
    assert!(!ok, "{out}");
    assert!(out.contains("refused to store") && out.contains("ReadWritePaths"), "{out}");
    let (status, body) = daemon.health_get("/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["hsm_reinitialisations"], 0, "the context was not retired: {body}");
    let sig = phone.sign_message(&mut conn, b"still serving", SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), b"still serving", &sig.to_der()));

    let (ok, out) = rotate();
    assert!(ok && out.contains("version=2 created=true"), "{out}");
}
