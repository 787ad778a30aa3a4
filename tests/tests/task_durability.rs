//! Durability of scan tasks: a callback receiver that is down for a while still gets the
//! result, across a daemon restart; and a kill -9 in the middle of 200 concurrent tasks
//! loses no completed task and leaves none outside the state machine.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use mcs_client::gateway;
use mcs_client::phone::ScanCode;
use mcs_e2e::*;
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_receiver_that_was_down_gets_the_result_after_a_daemon_restart() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let port = free_port();
    let message = b"callback me".to_vec();
    let created = gateway::create_task(
        &mut gw,
        "sign",
        "sign with callback",
        json!({"message": B64.encode(&message)}),
        None,
        Some(&format!("https://127.0.0.1:{port}/mcs/callback")),
    )
    .await
    .unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.scan(&mut app, &code).await.unwrap();

    // The receiver is down: wait until the daemon has failed at least one delivery.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, log) = daemon.stop();
    assert!(status.success());
    assert!(log.contains("callback failed; will retry"), "no failed attempt logged:\n{log}");

    // Receiver up, daemon restarted: the queued callback is delivered.
    let receiver = CallbackReceiver::start(&env, port).await;
    let _daemon = Daemon::start(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some(b) = receiver.received.lock().unwrap().first().cloned() {
            break b;
        }
        assert!(Instant::now() < deadline, "callback never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["task_id"], code.task_id.as_str());
    assert_eq!(body["status"], "completed");
    let sig = B64.decode(body["result"]["signature"].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), &message, &sig));
    // Delivered once: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_amid_200_concurrent_tasks_loses_no_completed_task() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, _) = new_phone(&env, &daemon, "app1", "123456").await;
    let phone = Arc::new(phone);
    let mut gw = connect(&env, &daemon, "gateway").await;
    let mut codes = Vec::new();
    for i in 0..200 {
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
    let queue = Arc::new(Mutex::new(codes.clone()));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (queue, acked, phone) = (queue.clone(), acked.clone(), phone.clone());
        let mut conn = connect(&env, &daemon, "app1").await;
        workers.push(tokio::spawn(async move {
            loop {
                let Some(code) = queue.lock().unwrap().pop() else { return };
                match phone.scan(&mut conn, &code).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(code.task_id.clone());
                    }
                    Err(_) => return, // the daemon went away
                }
            }
        }));
    }
    // Crash once a good share has completed, with others in flight.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 60 {
        assert!(Instant::now() < deadline, "tasks are not progressing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.kill9();
    for w in workers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();

    let daemon = Daemon::start(&env);
    let mut gw = connect(&env, &daemon, "gateway").await;
    let mut app = connect(&env, &daemon, "app1").await;
    let mut counts = std::collections::BTreeMap::new();
    for code in &codes {
        let view = gateway::task(&mut gw, &code.task_id).await.unwrap();
        let status = view["status"].as_str().unwrap().to_owned();
        assert!(["pending", "claimed", "completed"].contains(&status.as_str()), "{}: {status}", code.task_id);
        if acked.contains(&code.task_id) {
            assert_eq!(status, "completed", "{} was acknowledged but is {status}", code.task_id);
        }
        *counts.entry(status.clone()).or_insert(0) += 1;
        // Every task can still be driven to a final state.
        match status.as_str() {
            "pending" => {
                phone.scan(&mut app, code).await.unwrap();
            }
            "claimed" => {
                phone.reject(&mut app, code, "interrupted").await.unwrap();
            }
            _ => {}
        }
        let out = gateway::result(&mut gw, &code.task_id, 5).await.unwrap();
        assert!(["completed", "rejected"].contains(&out["status"].as_str().unwrap()), "{out}");
        if out["status"] == "completed" && code.task_id.ends_with('0') {
            let msg = format!("doc {}", codes.iter().position(|c| c == code).unwrap());
            let sig = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
            assert!(openssl_verifies(env.path(), phone.public_key(), msg.as_bytes(), &sig));
        }
    }
    println!("after the crash: {counts:?}, {} acknowledged", acked.len());
    assert!(acked.len() >= 60);
}
