//! The audit chain: security events are recorded (per key, per platform), `mcsd audit
//! verify` passes on the live log and names the entry after a flipped byte, a deletion,
//! a reordering, or a truncation behind the last signed checkpoint. Defect 5 of issue 11:
//! a writer of the stopped store can no longer rewrite the tail, strip the checkpoints,
//! replace the audit key or roll the store back without verify — and the daemon's start —
//! noticing.

use std::path::Path;
use std::process::Command;

use hyper::Method;
use mcs_client::phone::{Phone, ScanCode, SignMode};
use mcs_e2e::*;
use serde_json::json;

fn mcsd(env: &DevEnv, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin("mcsd"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .args(args)
        .arg("--config")
        .arg(env.config())
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn verify(env: &DevEnv) -> (bool, String) {
    mcsd(env, &["audit", "verify"])
}

fn checkpoint_file(env: &DevEnv) -> std::path::PathBuf {
    env.path().join("audit-checkpoints.jsonl")
}

/// One daemon run with a phone's traffic, stopped cleanly (which signs a checkpoint).
async fn a_run(env: &DevEnv) {
    let daemon = Daemon::start(env);
    let (phone, mut app) = new_phone(env, &daemon, "app1", "123456").await;
    phone.sign_message(&mut app, b"a run", SignMode::Canonical).await.unwrap();
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

fn checkpoint_seqs(env: &DevEnv) -> Vec<u64> {
    tamper(env, &["checkpoints"]).split_whitespace().map(|s| s.parse().unwrap()).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
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
    assert_eq!(
        wrong.sign_message(&mut app, b"two", SignMode::Canonical).await.unwrap_err().code(),
        Some("pin_incorrect")
    );
    let mut gw = connect(&env, &daemon, "gateway").await;
    let created =
        mcs_client::gateway::create_task(&mut gw, "login", "log in", json!({"challenge": "AAEC"}), None, None)
            .await
            .unwrap();
    phone.scan(&mut app, &ScanCode::parse(created["qr"].as_str().unwrap()).unwrap()).await.unwrap();

    // The phone's certificate log: its key's events, PIN failure included.
    let log = app.json(Method::GET, &format!("/v1/audit?key_id={}", phone.key_id()), None).await.unwrap();
    let events: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["outcome"].as_str().unwrap().to_owned()))
        .collect();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_fails_when_the_last_checkpoint_is_deleted_and_the_tail_rewritten() {
    let env = DevEnv::new();
    a_run(&env).await;
    a_run(&env).await;
    assert!(verify(&env).0);
    let seqs = checkpoint_seqs(&env);
    let (prev, last) = (seqs[seqs.len() - 2], seqs[seqs.len() - 1]);

    // Hide what the second run did: its checkpoint removed, its entries rewritten and re-linked.
    tamper(&env, &["drop-checkpoint", &last.to_string()]);
    tamper(&env, &["rechain", &(prev + 1).to_string()]);
    let (ok, out) = verify(&env);
    let want =
        format!("entries {}..={last} are not covered by a signed checkpoint (the last covers entry {prev})", prev + 1);
    assert!(!ok && out.contains(&want), "{out}");
    // The daemon does not start on it either: its last exported checkpoint says otherwise.
    let (code, log) = Daemon::start_refused(&env);
    assert_eq!(code, Some(65), "{log}");
    assert!(
        log.contains("audit chain not trusted")
            && log.contains(&format!("entry {last} is not the one the last exported checkpoint")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_fails_when_every_checkpoint_is_deleted_and_the_chain_rewritten() {
    let env = DevEnv::new();
    a_run(&env).await;
    tamper(&env, &["drop-checkpoints"]);
    tamper(&env, &["rechain", "0"]);
    let (ok, out) = verify(&env);
    assert!(!ok && !out.contains("intact"), "no longer `intact … 0 signed checkpoints`: {out}");
    assert!(out.contains("are not covered by a signed checkpoint (there is none)"), "{out}");
    let (code, log) = Daemon::start_refused(&env);
    assert_eq!(code, Some(65), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_refuses_to_start_on_a_replaced_audit_key() {
    let env = DevEnv::new();
    let pinned = std::fs::read_to_string(env.path().join("audit-key.pem")).unwrap();
    assert!(pinned.starts_with("-----BEGIN PUBLIC KEY-----"), "dev-init pins the audit key: {pinned}");
    // While the daemon runs, export-key asks it (the store is locked) and gives the same key.
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    phone.sign_message(&mut app, b"before", SignMode::Canonical).await.unwrap();
    let other = env.path().join("exported.pem");
    let (ok, out) = mcsd(&env, &["audit", "export-key", "--out", other.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), pinned);
    let (status, _) = daemon.stop();
    assert!(status.success());
    let (ok, out) = verify(&env);
    assert!(ok && out.contains("audit key pinned in"), "{out}");

    // A new key in the store's record, every checkpoint re-signed with it.
    tamper(&env, &["rekey"]);
    let (ok, out) = verify(&env);
    assert!(!ok && out.contains("the store's audit key is not the one pinned in"), "{out}");
    let (ok, out) = mcsd(&env, &["audit", "verify", "--public-key", other.to_str().unwrap()]);
    assert!(!ok, "{out}");
    let (code, log) = Daemon::start_refused(&env);
    assert_eq!(code, Some(65), "{log}");
    assert!(log.contains("the store's audit key is not the one pinned in"), "{log}");
    let (ok, out) = mcsd(&env, &["audit", "export-key"]);
    assert!(!ok && out.contains("the record was replaced"), "export-key does not pin the replacement: {out}");

    // Without the pin, the HSM-wrapped private key still gives the replacement away.
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(env.config(), cfg.replace("public_key_file = \"audit-key.pem\"\n", "")).unwrap();
    let (ok, out) = verify(&env);
    assert!(!ok && out.contains("not that of its HSM-wrapped private key"), "{out}");
    let (code, log) = Daemon::start_refused(&env);
    assert_eq!(code, Some(65), "{log}");
    assert!(log.contains("is not the public half of its HSM-wrapped private key"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_detects_a_rollback_against_an_exported_checkpoint() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, _) = new_phone(&env, &daemon, "app1", "123456").await;
    let (status, _) = daemon.stop();
    assert!(status.success());
    let old_copy = env.path().join("db-old");
    copy_dir(&env.db(), &old_copy);

    // Later the key is locked by wrong PINs.
    let daemon = Daemon::start(&env);
    let mut app = connect(&env, &daemon, "app1").await;
    let wrong = Phone::unlock(phone.state.clone(), "000000").unwrap();
    for _ in 0..5 {
        assert!(wrong.sign_message(&mut app, b"guess", SignMode::Canonical).await.is_err());
    }
    let err = phone.sign_message(&mut app, b"right pin", SignMode::Canonical).await.unwrap_err();
    assert_eq!(err.code(), Some("pin_locked"));
    let (status, _) = daemon.stop();
    assert!(status.success());
    // The operator ships the exported checkpoints off the host.
    let shipped = env.path().join("shipped-checkpoints.jsonl");
    std::fs::copy(checkpoint_file(&env), &shipped).unwrap();
    let lines = std::fs::read_to_string(&shipped).unwrap();
    assert_eq!(lines.lines().count(), 2, "one checkpoint per clean stop: {lines}");

    // Someone puts the older copy back (it would unlock the key).
    std::fs::remove_dir_all(env.db()).unwrap();
    copy_dir(&old_copy, &env.db());
    let first_only = env.path().join("first-checkpoint.jsonl");
    std::fs::write(&first_only, format!("{}\n", lines.lines().next().unwrap())).unwrap();
    let (ok, out) = mcsd(&env, &["audit", "verify", "--since-checkpoint", first_only.to_str().unwrap()]);
    assert!(ok && out.contains("exported checkpoints: all 1"), "the older copy is consistent in itself: {out}");
    let (ok, out) = mcsd(&env, &["audit", "verify", "--since-checkpoint", shipped.to_str().unwrap()]);
    assert!(!ok && out.contains("rollback detected: the store's audit chain ends at entry"), "{out}");
    assert!(out.contains("the checkpoint exported on line 2"), "{out}");
    let (ok, out) = verify(&env);
    assert!(!ok && out.contains("rollback detected"), "the configured checkpoint file is used by default: {out}");
    // And the daemon does not serve the rolled-back store: the key stays locked.
    let (code, log) = Daemon::start_refused(&env);
    assert_eq!(code, Some(65), "{log}");
    assert!(log.contains("rollback detected"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_unsealed_tail_is_verified_and_sealed_at_its_next_start() {
    let env = DevEnv::new();
    let socket = env.path().join("syslog.sock");
    let syslog = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    let line = "checkpoint_file = \"audit-checkpoints.jsonl\"\n";
    std::fs::write(env.config(), cfg.replace(line, &format!("{line}syslog_socket = \"syslog.sock\"\n"))).unwrap();

    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    phone.sign_message(&mut app, b"then the power went", SignMode::Canonical).await.unwrap();
    daemon.kill9();
    let (ok, out) = verify(&env);
    assert!(
        !ok && out.contains("are not covered by a signed checkpoint") && out.contains("--allow-unsealed-tail"),
        "{out}"
    );
    let (ok, out) = mcsd(&env, &["audit", "verify", "--allow-unsealed-tail"]);
    assert!(ok && out.contains("follow the last signed checkpoint"), "{out}");

    // The next start verifies the tail and seals it; the start is recorded with what it did.
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let log = admin.json(Method::GET, "/v1/audit?limit=10000", None).await.unwrap();
    let started =
        log["entries"].as_array().unwrap().iter().rev().find(|e| e["event"] == "daemon started").unwrap().clone();
    assert!(started["detail"]["audit"]["sealed_after_unclean_stop"].is_array(), "{started}");
    let (status, log) = daemon.stop();
    assert!(status.success());
    assert!(log.contains("verified and sealed"), "{log}");
    let (ok, out) = verify(&env);
    assert!(ok && out.contains("audit chain intact"), "{out}");

    // Each checkpoint also went to syslog.
    syslog.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    while let Ok(n) = syslog.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        got.len() >= 2 && got.iter().all(|m| m.contains("mcsd[") && m.contains("audit checkpoint {\"seq\":")),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_runs_online_against_a_snapshot_of_the_running_store() {
    let env = DevEnv::new();
    a_run(&env).await;
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app2", "123456").await;
    phone.sign_message(&mut app, b"while it serves", SignMode::Canonical).await.unwrap();

    // The daemon holds the sled store: verify reads a snapshot taken over the control
    // socket, accepting the entries the daemon has not sealed yet, and leaves no copy.
    let (ok, out) = verify(&env);
    assert!(
        ok && out.contains("snapshot of the running daemon's store") && out.contains("audit chain intact"),
        "{out}"
    );
    let beside = std::fs::read_dir(env.db().parent().unwrap()).unwrap();
    let left: Vec<_> = beside
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mcsd-verify-"))
        .collect();
    assert!(left.is_empty(), "scratch copies left behind: {left:?}");

    // The snapshot is on the record, and the node kept serving throughout.
    let mut admin = connect(&env, &daemon, "admin").await;
    let log = admin.json(Method::GET, "/v1/audit?limit=10000", None).await.unwrap();
    assert!(log["entries"].as_array().unwrap().iter().any(|e| e["event"] == "backup"), "{log}");
    phone.sign_message(&mut app, b"and after", SignMode::Canonical).await.unwrap();
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    let (ok, out) = verify(&env);
    assert!(ok && !out.contains("snapshot"), "{out}");
}
