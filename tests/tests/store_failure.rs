//! Disk full (issue 11, defect 7): while the store cannot write, requests fail closed and
//! `/readyz` says so; once space is back the store reopens by itself and the daemon serves
//! again — no restart. The store lives on a small tmpfs the test mounts (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcs_client::phone::{Phone, SignMode};
use mcs_e2e::*;
use serde_json::Value;

/// Fill the filesystem of `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let _ = Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).args(["bs=64k"]).output();
    filler
}

fn ready(daemon: &Daemon) -> (u16, Value) {
    let (status, body) = daemon.health_get("/readyz");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_fails_closed_readiness_reflects_it_and_the_store_recovers_by_itself() {
    let env = DevEnv::with_store_on_tmpfs("24m");
    env.append_config("\n[keys]\npin_max_attempts = 100\n");
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    assert_eq!(ready(&daemon).0, 200);
    let wrong = Phone::unlock(phone.state.clone(), "000000").unwrap();

    let filler = fill(&env.db());
    // Writes fail now: once sled has used the room its files had, a request cannot be made
    // durable (every answered request appends an audit entry), so it is not answered as a
    // success.
    let mut refused = 0;
    for _ in 0..2000 {
        match phone.sign_message(&mut conn, b"while full", SignMode::Canonical).await {
            Err(e) if e.code() == Some("internal") => refused += 1,
            Ok(_) => {} // sled still had room
            other => panic!("while the disk is full: {other:?}"),
        }
        if refused >= 3 {
            break;
        }
    }
    assert!(refused >= 3, "a full disk never failed a write");
    let (status, body) = ready(&daemon);
    assert_eq!(status, 503, "{body}");
    assert_ne!(body["store"], "open", "{body}");

    std::fs::remove_file(&filler).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ready(&daemon).0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the store did not recover: {:?}", ready(&daemon));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Served again: the right PIN signs, a wrong one is counted and durable.
    let mut conn = connect(&env, &daemon, "app1").await;
    phone.sign_message(&mut conn, b"after recovery", SignMode::Canonical).await.expect("signs after recovery");
    let path = format!("/v1/keys/{}", phone.key_id());
    let before =
        conn.json(hyper::Method::GET, &path, None).await.unwrap()["pin"]["remaining_attempts"].as_u64().unwrap();
    assert_eq!(
        wrong.sign_message(&mut conn, b"wrong", SignMode::Canonical).await.unwrap_err().code(),
        Some("pin_incorrect")
    );
    let key = conn.json(hyper::Method::GET, &path, None).await.unwrap();
    assert_eq!(key["pin"]["remaining_attempts"].as_u64(), Some(before - 1), "{key}");
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    // The chain is intact across the failure and the reopen.
    let out = Command::new(bin("mcsd"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .args(["audit", "verify", "--config"])
        .arg(env.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify after recovery: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
