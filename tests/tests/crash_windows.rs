//! Crash windows (issue 11, defect 8): a co-signature whose answer was lost can be retried
//! with a fresh nonce — also across a kill -9 — while one nonce never gets two server
//! halves; every request that changes a task has exactly one audit entry, written with the
//! change, and after a kill -9 amid completions every durable completion has its entry.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::Method;
use mcs_client::gateway;
use mcs_client::phone::ScanCode;
use mcs_e2e::*;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn audit_entries(env: &DevEnv, daemon: &Daemon) -> Vec<Value> {
    let mut admin = connect(env, daemon, "admin").await;
    let log = admin.json(Method::GET, "/v1/audit?limit=10000", None).await.unwrap();
    log["entries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_cosign_after_a_lost_answer() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let msg = b"contract 42, signed after a crash".to_vec();
    let created =
        gateway::create_task(&mut gw, "sign", "sign", json!({"message": B64.encode(&msg)}), None, None).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    let claimed = phone.claim(&mut app, &code).await.unwrap();
    let e = sm2_2p::digest_from_hex(claimed["e"].as_str().unwrap()).unwrap();

    // The daemon answers the co-signature and dies before the phone can use the answer.
    let (_k1, q1) = sm2_2p::ClientShare::sign_start();
    let q1_hex = sm2_2p::point_to_hex(&q1);
    let body = json!({"token": code.token, "q1": q1_hex, "pin_proof": phone.proof(&sm2_2p::Transcript::TaskSign { task_id: code.task_id.clone(), q1: q1_hex.clone() })});
    app.json(Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), Some(&body)).await.unwrap();
    daemon.kill9();

    let daemon = Daemon::start(&env);
    let mut app = connect(&env, &daemon, "app1").await;
    // Replaying that very request is refused: a second half for the same nonce would let
    // whoever holds both and the signatures solve for the phone's share.
    let replay = app.call(Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), Some(&body)).await.unwrap();
    assert_eq!((replay.status, replay.body["error"]["code"].as_str()), (409, Some("task_state")), "{:?}", replay.body);
    // A retry with a fresh nonce gets a fresh half and the task completes.
    let sig = phone.cosign_and_complete(&mut app, &code, &e).await.expect("retry with a fresh nonce");
    let mut gw = connect(&env, &daemon, "gateway").await;
    let out = gateway::result(&mut gw, &code.task_id, 5).await.unwrap();
    assert_eq!(out["status"], "completed");
    let der = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    assert_eq!(der, sig.to_der());
    assert!(openssl_verifies(env.path(), phone.public_key(), &msg, &der));

    // The log shows both co-signatures that went out and the refused replay.
    let cosigns: Vec<String> = audit_entries(&env, &daemon)
        .await
        .iter()
        .filter(|e| e["task_id"] == code.task_id.as_str() && e["event"] == "POST /v1/tasks/{id}/cosign")
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cosigns, ["ok", "task_state", "ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_completion_and_its_audit_entry_are_one_step() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let created =
        gateway::create_task(&mut gw, "sign", "one entry each", json!({"message": B64.encode("x")}), None, None)
            .await
            .unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.scan(&mut app, &code).await.unwrap();

    // Exactly one entry per request, each written with its change: the creation names the
    // task it made, the completion records the completed state.
    let entries = audit_entries(&env, &daemon).await;
    let mine: Vec<(&str, &str, &str)> = entries
        .iter()
        .filter(|e| e["task_id"] == code.task_id.as_str())
        .map(|e| {
            (e["event"].as_str().unwrap(), e["outcome"].as_str().unwrap(), e["detail"]["status"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        mine,
        [
            ("POST /v1/tasks", "ok", "pending"),
            ("POST /v1/tasks/{id}/claim", "ok", "claimed"),
            ("POST /v1/tasks/{id}/cosign", "ok", "claimed"),
            ("POST /v1/tasks/{id}/complete", "ok", "completed"),
        ]
    );
    // The activation's certificate request, too: installed and completed in one step.
    let csr: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event"] == "POST /v1/tasks/{id}/complete" && e["detail"]["kind"] == "csr")
        .collect();
    assert_eq!(csr.len(), 1);
    assert_eq!(
        (csr[0]["detail"]["status"].as_str(), csr[0]["key_id"].as_str()),
        (Some("completed"), Some(phone.key_id()))
    );

    // Under a kill -9 amid concurrent completions, every completion that reached the disk
    // has its entry (and only one).
    let mut codes = Vec::new();
    for i in 0..60 {
        let created = gateway::create_task(
            &mut gw,
            "sign",
            "bulk",
            json!({"message": B64.encode(format!("doc {i}"))}),
            Some(600),
            None,
        )
        .await
        .unwrap();
        codes.push(ScanCode::parse(created["qr"].as_str().unwrap()).unwrap());
    }
    let phone = Arc::new(phone);
    let queue = Arc::new(Mutex::new(codes.clone()));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (queue, acked, phone) = (queue.clone(), acked.clone(), phone.clone());
        let mut conn = connect(&env, &daemon, "app1").await;
        workers.push(tokio::spawn(async move {
            loop {
                let Some(code) = queue.lock().unwrap().pop() else { return };
                match phone.scan(&mut conn, &code).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(code.task_id.clone());
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "tasks are not progressing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.kill9();
    for w in workers {
        let _ = w.await;
    }
    let daemon = Daemon::start(&env);
    let mut gw = connect(&env, &daemon, "gateway").await;
    let entries = audit_entries(&env, &daemon).await;
    let mut completed = 0;
    for code in &codes {
        let status = gateway::task(&mut gw, &code.task_id).await.unwrap()["status"].as_str().unwrap().to_owned();
        let logged = entries
            .iter()
            .filter(|e| {
                e["task_id"] == code.task_id.as_str()
                    && e["event"] == "POST /v1/tasks/{id}/complete"
                    && e["outcome"] == "ok"
            })
            .count();
        if status == "completed" {
            completed += 1;
            assert_eq!(logged, 1, "{}: completed with {logged} audit entries", code.task_id);
        } else {
            assert_eq!(logged, 0, "{}: {status} but its completion is logged", code.task_id);
        }
    }
    assert!(completed >= 20, "{completed}");
    let (status, _) = daemon.stop();
    assert!(status.success());
    let (ok, out) = {
        let o = std::process::Command::new(bin("mcsd"))
            .args(["audit", "verify", "--config"])
            .arg(env.config())
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    assert!(ok, "the chain verifies after the crash and restart: {out}");
}
