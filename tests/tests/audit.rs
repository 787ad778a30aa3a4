//! The audit chain: security events are recorded (per key, per platform), `mcsd audit
//! verify` passes on the live log and names the entry after a flipped byte, a deletion,
//! a reordering, or a truncation behind the last signed checkpoint.

use std::process::Command;

use hyper::Method;
use mcs_client::phone::{Phone, ScanCode, SignMode};
use mcs_e2e::*;
use serde_json::json;

fn verify(env: &DevEnv) -> (bool, String) {
    let out = Command::new(bin("mcsd")).args(["audit", "verify", "--config"]).arg(env.config()).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn tamper(env: &DevEnv, args: &[&str]) -> String {
    let out = Command::new(bin("tamper-audit")).arg(env.config()).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_records_events_and_verify_pinpoints_tampering() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    phone.sign_message(&mut app, b"one", SignMode::Canonical).await.unwrap();
    let wrong = Phone::unlock(phone.state.clone(), "654321").unwrap();
    assert_eq!(wrong.sign_message(&mut app, b"two", SignMode::Canonical).await.unwrap_err().code(), Some("pin_incorrect"));
    let mut gw = connect(&env, &daemon, "gateway").await;
    let created = mcs_client::gateway::create_task(&mut gw, "login", "log in", json!({"challenge": "AAEC"}), None, None).await.unwrap();
    phone.scan(&mut app, &ScanCode::parse(created["qr"].as_str().unwrap()).unwrap()).await.unwrap();

    // The phone's certificate log: its key's events, PIN failure included.
    let log = app.json(Method::GET, &format!("/v1/audit?key_id={}", phone.key_id()), None).await.unwrap();
    let events: Vec<(String, String)> = log["entries"].as_array().unwrap().iter().map(|e| (e["event"].as_str().unwrap().to_owned(), e["outcome"].as_str().unwrap().to_owned())).collect();
    assert!(events.contains(&("POST /v1/keys/{id}/sign".into(), "ok".into())), "{events:?}");
    assert!(events.contains(&("POST /v1/keys/{id}/sign".into(), "pin_incorrect".into())), "{events:?}");
    assert!(events.contains(&("POST /v1/tasks/{id}/complete".into(), "ok".into())), "{events:?}");
    let text = log.to_string();
    assert!(!text.contains("pin_proof") && !text.contains(&phone.state.pin_salt), "no secrets in the log");
    // The platform's scan report: its tasks only.
    let report = gw.json(Method::GET, "/v1/audit", None).await.unwrap();
    let entries = report["entries"].as_array().unwrap();
    assert!(entries.len() >= 3 && entries.iter().all(|e| e["platform"] == "P-DEV-1"), "{report}");
    // Another phone may not read this key's log.
    let mut app2 = connect(&env, &daemon, "app2").await;
    let resp = app2.call(Method::GET, &format!("/v1/audit?key_id={}", phone.key_id()), None).await.unwrap();
    assert_eq!(resp.body["error"]["code"], "device_mismatch");
    mcs_client::admin::revoke(&mut admin, phone.key_id(), "key_compromise").await.unwrap();
    let (status, log) = daemon.stop();
    assert!(status.success());
    // The daemon's own log: request spans with ids, never a token or PIN material.
    assert!(log.contains("request") && log.contains(phone.key_id()), "{log}");
    for secret in [created["token"].as_str().unwrap(), &phone.state.pin_salt, &phone.state.d1_masked] {
        assert!(!log.contains(secret), "secret material in the log");
    }

    let (ok, out) = verify(&env);
    assert!(ok && out.contains("audit chain intact") && out.contains("signed checkpoints"), "{out}");
    assert!(!out.contains(" 0 signed checkpoints"), "shutdown signs a checkpoint: {out}");

    tamper(&env, &["flip", "5"]);
    let (ok, out) = verify(&env);
    assert!(!ok && out.contains("entry 5 was modified"), "{out}");
    tamper(&env, &["flip", "5"]);
    assert!(verify(&env).0, "flipping back restores the chain");

    let removed = tamper(&env, &["delete", "7"]);
    let (ok, out) = verify(&env);
    assert!(!ok && out.contains("entry 7 is missing"), "{out}");
    tamper(&env, &["put", "7", &removed]);
    assert!(verify(&env).0);

    tamper(&env, &["swap", "3", "4"]);
    let (ok, out) = verify(&env);
    assert!(!ok && out.contains("entry 3 holds entry 4"), "{out}");
    tamper(&env, &["swap", "3", "4"]);
    assert!(verify(&env).0);

    // Cutting the tail off is caught by the last signed checkpoint.
    let out = Command::new(bin("mcsd")).args(["audit", "verify", "--config"]).arg(env.config()).output().unwrap();
    let entries: u64 = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(3).unwrap().parse().unwrap();
    tamper(&env, &["delete", &(entries - 1).to_string()]);
    let (ok, out) = verify(&env);
    assert!(!ok && out.contains("were removed"), "{out}");
}
