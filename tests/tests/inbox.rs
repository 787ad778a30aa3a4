//! The inbox end to end: a platform sends a sign task to a certificate's phone without a
//! QR code (`to_key_id`); the phone's long-poll wakes with the item, opens the task with
//! the item's token and signs (checked by OpenSSL); another key cannot claim it; the
//! cursor drops what was read; bad input and wrong roles are refused and change nothing.

use base64::Engine;
use mcs_client::{gateway, inbox};
use mcs_e2e::*;
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn api_code(e: mcs_client::Error) -> String {
    e.code().map(str::to_owned).unwrap_or_else(|| format!("not an API error: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sent_to_a_key_arrives_in_its_phones_inbox_and_only_that_key_signs_it() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone1, mut app1) = new_phone_on(&env, &daemon, "app1", "111111", &["P-DEV-1"]).await;
    let (phone2, mut app2) = new_phone_on(&env, &daemon, "app2", "222222", &["P-DEV-1"]).await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let base_url = format!("https://{}", daemon.api);

    // The phone's only item so far: its certificate was issued.
    let empty = inbox::read(&mut app1, None, 0).await.unwrap();
    let kinds: Vec<_> = empty.items.iter().map(|i| serde_json::to_value(i).unwrap()["type"].clone()).collect();
    assert_eq!(kinds, [json!("certificate_issued")]);
    let other = inbox::read(&mut app2, None, 0).await.unwrap();
    assert_eq!(other.items.len(), 1, "phone 2's certificate_issued");

    // The phone waits first; the platform's task wakes it.
    let waiting = {
        let mut conn = connect(&env, &daemon, "app1").await;
        tokio::spawn(async move { inbox::read(&mut conn, Some(&empty.cursor), 20).await })
    };
    let message = b"bid file digest 5c1e".to_vec();
    let created = inbox::create_task_for_key(
        &mut gw,
        "sign",
        "Sign the bid",
        json!({"message": B64.encode(&message)}),
        phone1.key_id(),
    )
    .await
    .unwrap();
    let task_id = created["task_id"].as_str().unwrap().to_owned();
    let page = tokio::time::timeout(std::time::Duration::from_secs(20), waiting).await.unwrap().unwrap().unwrap();
    assert_eq!(page.items.len(), 1, "{page:?}");
    let item = &page.items[0];
    let code = inbox::scan_code(&item.event, &base_url).expect("a task item");
    assert_eq!(code.task_id, task_id);
    let wire = serde_json::to_value(item).unwrap();
    assert_eq!((&wire["type"], &wire["kind"], &wire["platform"]), (&json!("task"), &json!("sign"), &json!("P-DEV-1")));
    assert_eq!(wire["display"]["title"], "Sign the bid");
    let other = inbox::read(&mut app2, Some(&other.cursor), 0).await.unwrap();
    assert!(other.items.is_empty(), "the other phone got nothing");

    // Another key, even with the token, may not claim it; the addressed one signs.
    let refused = phone2.scan(&mut app2, &code).await.unwrap_err();
    assert_eq!(api_code(refused), "no_permission");
    assert_eq!(gateway::task(&mut gw, &task_id).await.unwrap()["status"], "pending", "the refusal changed nothing");
    phone1.scan(&mut app1, &code).await.unwrap();
    let out = gateway::result(&mut gw, &task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed");
    let sig = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(env.path(), phone1.public_key(), &message, &sig), "OpenSSL verifies the signature");

    // The cursor: reading after it drops the item.
    let again = inbox::read(&mut app1, None, 0).await.unwrap();
    assert_eq!(again.items.len(), 1, "kept until the cursor passes it");
    let after = inbox::read(&mut app1, Some(&page.cursor), 0).await.unwrap();
    assert!(after.items.is_empty());
    assert!(inbox::read(&mut app1, None, 0).await.unwrap().items.is_empty(), "dropped once passed");

    // Bad input and wrong roles.
    let bad = app1.json(hyper::Method::GET, "/v1/inbox?after=nope", None).await.unwrap_err();
    assert_eq!(api_code(bad), "bad_request");
    let gw_inbox = gw.json(hyper::Method::GET, "/v1/inbox", None).await.unwrap_err();
    assert_eq!(api_code(gw_inbox), "forbidden");
    let stranger = inbox::create_task_for_key(&mut gw, "sign", "x", json!({"message": B64.encode(b"m")}), "k_nobody")
        .await
        .unwrap_err();
    assert_eq!(api_code(stranger), "platform_not_authorized", "an unknown key looks like one not granted");
    let junk = inbox::create_task_for_key(&mut gw, "sign", "x", json!({"message": B64.encode(b"m")}), "k/../x")
        .await
        .unwrap_err();
    assert_eq!(api_code(junk), "bad_request");
    assert!(inbox::read(&mut app1, None, 0).await.unwrap().items.is_empty(), "no item from a refused task");
}
