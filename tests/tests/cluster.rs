//! Several `mcsd` nodes on one PostgreSQL database (issue 13, item 4): a key enrolled on
//! one node is used on another; wrong PINs raced across nodes are counted no further than
//! the limit and lock the key everywhere; a task raced by two phones on two nodes is
//! claimed once; a node killed under load loses nothing it acknowledged, its callback is
//! delivered by the survivor once its lease runs out, and it rejoins under its node id; a
//! database failover to a synchronous standby loses no acknowledged PIN failure,
//! revocation or completed task; `mcsd audit verify` checks every node's chain and names a
//! tampered row's node and entry.
//!
//! The tests share one throw-away PostgreSQL cluster (a fresh database each); the failover
//! test starts a primary and a standby of its own.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use mcs_client::gateway;
use mcs_client::phone::{Phone, ScanCode, SignMode};
use mcs_e2e::cluster::{Cluster, PgDb, nodes, wait_until};
use mcs_e2e::*;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Far beyond any step here; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

fn api_code(e: &mcs_client::Error) -> String {
    e.code().map(str::to_owned).unwrap_or_else(|| format!("not an API error: {e}"))
}

fn code_of(created: &Value) -> ScanCode {
    ScanCode::parse(created["qr"].as_str().unwrap()).unwrap()
}

/// Enroll on `enroll_on` (as admin), activate as `who` on `activate_on`.
async fn phone_across(
    (env_e, enroll_on): (&DevEnv, &Daemon),
    (env_a, activate_on): (&DevEnv, &Daemon),
    who: &str,
    pin: &str,
) -> (Phone, mcs_client::Connection) {
    let mut admin = connect(env_e, enroll_on, "admin").await;
    let (id, code) = enroll(&mut admin, "Zhang San").await;
    let mut conn = connect(env_a, activate_on, who).await;
    let phone = Phone::activate(&mut conn, "test", &id, &code, pin).await.expect("activate");
    (phone, conn)
}

async fn sign_task(gw: &mut mcs_client::Connection, message: &[u8], callback: Option<&str>) -> ScanCode {
    let created = gateway::create_task(
        gw,
        "sign",
        "Sign the bid file",
        json!({"message": B64.encode(message)}),
        Some(600),
        callback,
    )
    .await
    .unwrap();
    code_of(&created)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_on_one_node_activated_and_used_on_another() {
    let db = PgDb::fresh().await;
    let envs = nodes(&db.url(), 2, "");
    let (a, b) = (Daemon::start(&envs[0]), Daemon::start(&envs[1]));
    let mut admin_a = connect(&envs[0], &a, "admin").await;
    let (enrollment, activation) = enroll(&mut admin_a, "Zhang San").await;
    let mut app_b = connect(&envs[1], &b, "app1").await;
    let phone = Phone::activate(&mut app_b, "test", &enrollment, &activation, "123456").await.expect("activate on B");
    // Activated once across the nodes: the same code on A is refused.
    let mut app_a = connect(&envs[0], &a, "app1").await;
    assert!(Phone::activate(&mut app_a, "test", &enrollment, &activation, "123456").await.is_err());
    let key = mcs_client::admin::get_key(&mut admin_a, phone.key_id()).await.unwrap();
    assert_eq!((&key["status"], &key["public_key"]), (&json!("active"), &json!(phone.state.public_key)));

    // A login task of A's gateway, scanned on B; A's long-poll wakes on B's write.
    let mut gw_a = connect(&envs[0], &a, "gateway").await;
    let challenge = b"login challenge 41c2 from P-DEV-1".to_vec();
    let created = gateway::create_task(
        &mut gw_a,
        "login",
        "Log in to the bidding hall",
        json!({"challenge": B64.encode(&challenge)}),
        None,
        None,
    )
    .await
    .unwrap();
    let code = code_of(&created);
    let task_id = code.task_id.clone();
    let poll = tokio::spawn(async move { gateway::result(&mut gw_a, &task_id, 30).await });
    phone.scan(&mut app_b, &code).await.expect("scan on B");
    let out = tokio::time::timeout(PATIENCE, poll).await.unwrap().unwrap().unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["result"]["public_key"], phone.state.public_key);
    let sig = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(envs[0].path(), phone.public_key(), &challenge, &sig));

    // A co-sign on A with the share B activated.
    let msg = b"bid file ZB-2026-113, signed on A".to_vec();
    let sig = phone.sign_message(&mut app_a, &msg, SignMode::Canonical).await.expect("sign on A");
    assert!(openssl_verifies(envs[0].path(), phone.public_key(), &msg, &sig.to_der()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pins_raced_across_three_nodes_are_counted_to_the_limit_and_lock_everywhere() {
    const RACERS: usize = 27;
    let db = PgDb::fresh().await;
    let envs = nodes(&db.url(), 3, "");
    let daemons: Vec<Daemon> = envs.iter().map(Daemon::start).collect();
    let (phone, _app) = phone_across((&envs[0], &daemons[0]), (&envs[1], &daemons[1]), "app1", "123456").await;
    let mut admin = connect(&envs[2], &daemons[2], "admin").await;
    let max = mcs_client::admin::get_key(&mut admin, phone.key_id()).await.unwrap()["pin"]["remaining_attempts"]
        .as_u64()
        .unwrap();
    assert!(max > 0 && (RACERS as u64) > max * 4, "the race must outnumber the limit: {max}");

    let wrong = Arc::new(Phone::unlock(phone.state.clone(), "999999").unwrap());
    let mut conns = Vec::new();
    for i in 0..RACERS {
        conns.push(connect(&envs[i % 3], &daemons[i % 3], "app1").await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut racers = tokio::task::JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (wrong, start) = (wrong.clone(), start.clone());
        racers.spawn(async move {
            start.wait().await;
            wrong.sign_message(&mut conn, format!("guess {i}").as_bytes(), SignMode::Canonical).await.map(|_| ())
        });
    }
    let (mut incorrect, mut locked) = (Vec::new(), 0);
    while let Some(joined) = racers.join_next().await {
        match joined.unwrap() {
            Err(mcs_client::Error::Api(api)) if api.code == "pin_incorrect" => {
                incorrect.push(api.extra["remaining_attempts"].as_u64().unwrap())
            }
            Err(mcs_client::Error::Api(api)) if api.code == "pin_locked" => locked += 1,
            other => panic!("a wrong PIN answered {other:?}"),
        }
    }
    // The limit-th failure answers pin_locked; each earlier one saw its own count.
    incorrect.sort_unstable();
    assert_eq!(incorrect, (1..max).collect::<Vec<_>>(), "pin_incorrect answers");
    assert_eq!(locked, RACERS - incorrect.len());

    for (env, d) in envs.iter().zip(&daemons) {
        let mut admin = connect(env, d, "admin").await;
        let key = mcs_client::admin::get_key(&mut admin, phone.key_id()).await.unwrap();
        assert_eq!(key["pin"], json!({"remaining_attempts": 0, "locked": true}), "on {}", d.api);
        let mut conn = connect(env, d, "app1").await;
        let err = phone.sign_message(&mut conn, b"right PIN", SignMode::Canonical).await.unwrap_err();
        assert_eq!(api_code(&err), "pin_locked", "the right PIN on {}", d.api);
    }
    let row = db
        .client()
        .await
        .query_one("SELECT pin_failures, pin_locked FROM keys WHERE id = $1", &[&phone.key_id()])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0) as u64, row.get::<_, bool>(1)), (max, true), "the stored counter");
    let counted: f64 = daemons.iter().map(|d| d.metric("mcsd_pin_failures_total")).sum();
    assert_eq!(counted as u64, max, "failures counted over all nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_raced_by_two_phones_on_two_nodes_is_claimed_once() {
    const TASKS: usize = 6;
    let db = PgDb::fresh().await;
    let envs = nodes(&db.url(), 2, "");
    let (a, b) = (Daemon::start(&envs[0]), Daemon::start(&envs[1]));
    let (phone1, mut app1) = phone_across((&envs[0], &a), (&envs[0], &a), "app1", "111111").await;
    let (phone2, mut app2) = phone_across((&envs[1], &b), (&envs[1], &b), "app2", "222222").await;
    let (mut gw_a, mut gw_b) = (connect(&envs[0], &a, "gateway").await, connect(&envs[1], &b, "gateway").await);
    let mut wins = [0, 0];
    for i in 0..TASKS {
        let msg = format!("tender ZB-2026-{i:03}: raced").into_bytes();
        let code = sign_task(if i % 2 == 0 { &mut gw_a } else { &mut gw_b }, &msg, None).await;
        let (one, two) = tokio::join!(phone1.claim(&mut app1, &code), phone2.claim(&mut app2, &code));
        assert!(one.is_ok() ^ two.is_ok(), "exactly one claim wins: {one:?} {two:?}");
        let lost = one.as_ref().err().or(two.as_ref().err()).unwrap();
        assert_eq!(api_code(lost), "task_state");
        let (winner, conn, loser, loser_conn, w) = match one.is_ok() {
            true => (&phone1, &mut app1, &phone2, &mut app2, 0),
            false => (&phone2, &mut app2, &phone1, &mut app1, 1),
        };
        wins[w] += 1;
        // Both nodes name the winner; the loser cannot co-sign it on its node.
        for gw in [&mut gw_a, &mut gw_b] {
            assert_eq!(gateway::task(gw, &code.task_id).await.unwrap()["key_id"], winner.key_id());
        }
        let e = sm2_2p::e_for_message(loser.public_key(), &msg);
        assert!(loser.cosign(loser_conn, &code, &e).await.is_err(), "the loser co-signed");
        let e = sm2_2p::e_for_message(winner.public_key(), &msg);
        let sig = winner.cosign_and_complete(conn, &code, &e).await.expect("the winner completes");
        let out = gateway::result(&mut gw_b, &code.task_id, 10).await.unwrap();
        assert_eq!(out["status"], "completed");
        assert_eq!(B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap(), sig.to_der());
    }
    eprintln!("claims won by node A's phone / node B's phone: {wins:?}");
}

/// One node's line of `mcsd audit verify` output.
fn node_line<'a>(out: &'a str, node: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("node {node} ")))
        .unwrap_or_else(|| panic!("no line for {node}:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_checks_every_nodes_chain_and_names_a_tampered_row() {
    let db = PgDb::fresh().await;
    let envs = nodes(&db.url(), 2, "");
    let (a, b) = (Daemon::start(&envs[0]), Daemon::start(&envs[1]));
    let (phone, mut app_b) = phone_across((&envs[0], &a), (&envs[1], &b), "app1", "123456").await;
    let mut app_a = connect(&envs[0], &a, "app1").await;
    phone.sign_message(&mut app_a, b"on A", SignMode::Canonical).await.unwrap();
    phone.sign_message(&mut app_b, b"on B", SignMode::Canonical).await.unwrap();
    let wrong = Phone::unlock(phone.state.clone(), "000000").unwrap();
    assert_eq!(
        api_code(&wrong.sign_message(&mut app_a, b"x", SignMode::Canonical).await.unwrap_err()),
        "pin_incorrect"
    );

    let (ok, out) = envs[0].mcsd(&["audit", "verify"]);
    assert!(ok, "verify beside running nodes:\n{out}");
    for node in ["node-1", "node-2"] {
        assert!(node_line(&out, node).contains("(running): intact"), "{out}");
    }
    for d in [a, b] {
        let (status, log) = d.stop();
        assert!(status.success(), "{log}");
    }
    let (ok, out) = envs[1].mcsd(&["audit", "verify"]);
    assert!(ok, "verify after a clean stop:\n{out}");
    for node in ["node-1", "node-2"] {
        assert!(node_line(&out, node).contains("(stopped): intact"), "{out}");
    }

    // Rewrite one of node-2's entries: its outcome, with the record's format byte kept.
    let pg = db.client().await;
    let rows =
        pg.query("SELECT seq, record FROM audit_entries WHERE node_id = 'node-2' ORDER BY seq", &[]).await.unwrap();
    assert!(rows.len() >= 3, "node-2 wrote {} entries", rows.len());
    let victim = &rows[rows.len() / 2];
    let (seq, original): (i64, Vec<u8>) = (victim.get(0), victim.get(1));
    let mut entry: Value = serde_json::from_slice(&original[1..]).unwrap();
    assert_eq!(entry["seq"], seq, "{entry}");
    entry["outcome"] = json!(format!("{}, rewritten", entry["outcome"].as_str().unwrap()));
    let mut forged = vec![original[0]];
    forged.extend(serde_json::to_vec(&entry).unwrap());
    let update = "UPDATE audit_entries SET record = $3 WHERE node_id = $1 AND seq = $2";
    assert_eq!(pg.execute(update, &[&"node-2", &seq, &forged]).await.unwrap(), 1);

    let (ok, out) = envs[0].mcsd(&["audit", "verify"]);
    assert!(!ok, "a rewritten entry passed:\n{out}");
    assert!(node_line(&out, "node-1").contains("intact"), "{out}");
    let line = node_line(&out, "node-2");
    assert!(line.contains("BROKEN") && line.contains(&format!("entry {seq} ")), "{out}");

    pg.execute(update, &[&"node-2", &seq, &original]).await.unwrap();
    let (ok, out) = envs[0].mcsd(&["audit", "verify"]);
    assert!(ok, "the original row restored:\n{out}");
}

/// Short callback attempts, so that a lease (two attempts and 5 s) runs out in 12 s.
const SHORT_CALLBACKS: &str = "\n[tasks]\ncallback_connect_timeout_ms = 500\ncallback_timeout_ms = 3000\n";
const LEASE: Duration = Duration::from_secs(12);

/// What a node answered before it was killed (or after, on the survivor).
#[derive(Debug, Clone)]
enum Ack {
    Sign { key_id: String },
    Task { task_id: String, key_id: String, signature: Vec<u8> },
}

/// A phone's traffic through one node until `stop` (or its node's `killed`): co-signs and
/// sign tasks of the node's gateway, each acknowledged one recorded with its node.
async fn load(
    env: &DevEnv,
    daemon: &Daemon,
    node: usize,
    phone: Arc<Phone>,
    acks: Arc<std::sync::Mutex<Vec<(usize, Ack)>>>,
    killed: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    use std::sync::atomic::Ordering::SeqCst;
    let mut app = connect(env, daemon, "app1").await;
    let mut gw = connect(env, daemon, "gateway").await;
    tokio::spawn(async move {
        for i in 0.. {
            if stop.load(SeqCst) || killed.load(SeqCst) {
                return;
            }
            let msg = format!("{} load {i} via node {node}", phone.key_id()).into_bytes();
            let acked = if i % 2 == 0 {
                phone
                    .sign_message(&mut app, &msg, SignMode::Canonical)
                    .await
                    .map(|_| Ack::Sign { key_id: phone.key_id().into() })
            } else {
                async {
                    let created = gateway::create_task(
                        &mut gw,
                        "sign",
                        "load",
                        json!({"message": B64.encode(&msg)}),
                        Some(600),
                        None,
                    )
                    .await?;
                    let code = code_of(&created);
                    phone.claim(&mut app, &code).await?;
                    let e = sm2_2p::e_for_message(phone.public_key(), &msg);
                    let sig = phone.cosign_and_complete(&mut app, &code, &e).await?;
                    Ok(Ack::Task { task_id: code.task_id, key_id: phone.key_id().into(), signature: sig.to_der() })
                }
                .await
            };
            match acked {
                Ok(ack) => acks.lock().unwrap().push((node, ack)),
                // Answers stop when the node is killed; the survivor's must not.
                Err(_) if killed.load(SeqCst) => return,
                Err(e) => panic!("node {node} failed under load: {e}"),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing_acknowledged_and_rejoins() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let db = PgDb::fresh().await;
    let envs = nodes(&db.url(), 2, SHORT_CALLBACKS);
    let mut daemons = [Some(Daemon::start(&envs[0])), Some(Daemon::start(&envs[1]))];
    let port = free_port();
    let receiver = CallbackReceiver::start_holding(&envs[0], port, 1).await;

    // Two phones per node, each activated on the other node.
    let mut phones = Vec::new();
    for i in 0..4 {
        let (n, m) = (i % 2, 1 - i % 2);
        let (dn, dm) = (daemons[n].as_ref().unwrap(), daemons[m].as_ref().unwrap());
        let (phone, _) = phone_across((&envs[m], dm), (&envs[n], dn), "app1", "123456").await;
        phones.push((n, Arc::new(phone)));
    }
    let acks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let killed = [Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false))];
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (n, phone) in &phones {
        let daemon = daemons[*n].as_ref().unwrap();
        workers.push(load(&envs[*n], daemon, *n, phone.clone(), acks.clone(), killed[*n].clone(), stop.clone()).await);
    }
    let acked_by = |acks: &std::sync::Mutex<Vec<(usize, Ack)>>, n: usize| {
        acks.lock().unwrap().iter().filter(|(k, _)| *k == n).count()
    };
    wait_until("load acknowledged on both nodes", PATIENCE, || acked_by(&acks, 0) >= 4 && acked_by(&acks, 1) >= 4)
        .await;

    // A task with a callback, completed under the load; the receiver holds the first
    // delivery unanswered, so the node that leased it is mid-delivery.
    let (cb_phone, mut cb_app) = phone_across(
        (&envs[0], daemons[0].as_ref().unwrap()),
        (&envs[1], daemons[1].as_ref().unwrap()),
        "app2",
        "222222",
    )
    .await;
    let mut gw = connect(&envs[0], daemons[0].as_ref().unwrap(), "gateway").await;
    let msg = b"bid opening ZB-2026-200: callback".to_vec();
    let cb_code = sign_task(&mut gw, &msg, Some(&format!("https://127.0.0.1:{port}/mcs/callback"))).await;
    cb_phone.claim(&mut cb_app, &cb_code).await.unwrap();
    let e = sm2_2p::e_for_message(cb_phone.public_key(), &msg);
    let cb_sig = cb_phone.cosign_and_complete(&mut cb_app, &cb_code, &e).await.unwrap();
    wait_until("the first delivery reaches the receiver", PATIENCE, || receiver.held.lock().unwrap().len() == 1).await;
    // The leaseholder is the node with a delivery in flight; the other's slot is empty.
    let mut holder = None;
    wait_until("one node holds the callback's delivery", PATIENCE, || {
        let slots: Vec<f64> =
            daemons.iter().map(|d| d.as_ref().unwrap().metric("mcsd_callback_slots_in_use")).collect();
        holder = match slots[..] {
            [a, b] if a >= 1.0 && b == 0.0 => Some(0),
            [a, b] if a == 0.0 && b >= 1.0 => Some(1),
            _ => None,
        };
        holder.is_some()
    })
    .await;
    let (k, s) = (holder.unwrap(), 1 - holder.unwrap());
    let pg = db.client().await;
    let lease: Option<String> =
        pg.query_one("SELECT lease_token FROM callbacks WHERE task_id = $1", &[&cb_code.task_id]).await.unwrap().get(0);
    assert!(lease.is_some(), "the callback is leased");

    // kill -9 the leaseholder under load.
    killed[k].store(true, SeqCst);
    daemons[k].take().unwrap().kill9();
    let killed_at = std::time::Instant::now();
    let before_kill: Vec<(usize, Ack)> = acks.lock().unwrap().clone();
    let survivor = daemons[s].as_ref().unwrap();
    let at_kill = acked_by(&acks, s);
    wait_until("the survivor keeps serving", PATIENCE, || acked_by(&acks, s) >= at_kill + 6).await;

    // The survivor delivers the callback once the dead node's lease has run out.
    let got = receiver.wait_for(1, LEASE + PATIENCE).await;
    let delivered_after = killed_at.elapsed();
    assert_eq!((&got[0]["task_id"], &got[0]["status"]), (&json!(cb_code.task_id), &json!("completed")));
    assert_eq!(B64.decode(got[0]["result"]["signature"].as_str().unwrap()).unwrap(), cb_sig.to_der());
    stop.store(true, SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    // Everything acknowledged (by either node, before the kill or after) reads back on the survivor.
    let all: Vec<(usize, Ack)> = acks.lock().unwrap().clone();
    let mut gw_s = connect(&envs[s], survivor, "gateway").await;
    let mut admin_s = connect(&envs[s], survivor, "admin").await;
    let mut signs = std::collections::BTreeMap::<String, usize>::new();
    for (_, ack) in &all {
        match ack {
            Ack::Sign { key_id } => *signs.entry(key_id.clone()).or_default() += 1,
            Ack::Task { task_id, key_id, signature } => {
                assert_eq!(gateway::task(&mut gw_s, task_id).await.unwrap()["key_id"], json!(key_id));
                let out = gateway::result(&mut gw_s, task_id, 0).await.unwrap();
                assert_eq!(out["status"], "completed", "{out}");
                assert_eq!(&B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap(), signature);
            }
        }
    }
    // Each acknowledged co-sign has its audit entry, on whichever node's chain served it.
    for (key_id, n) in &signs {
        let log =
            admin_s.json(hyper::Method::GET, &format!("/v1/audit?key_id={key_id}&limit=10000"), None).await.unwrap();
        let ok = log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "POST /v1/keys/{id}/sign" && e["outcome"] == "ok")
            .count();
        assert!(ok >= *n, "{key_id}: {n} co-signs acknowledged, {ok} audited");
    }

    // The killed node rejoins under its node id (its lock freed with its connection) and serves.
    let rejoined = Daemon::start(&envs[k]);
    let (phone, mut app) = phone_across((&envs[s], survivor), (&envs[k], &rejoined), "app1", "123456").await;
    phone.sign_message(&mut app, b"after rejoining", SignMode::Canonical).await.expect("the rejoined node co-signs");
    let mut gw_k = connect(&envs[k], &rejoined, "gateway").await;
    let code = sign_task(&mut gw_k, b"task of the rejoined node", None).await;
    let mut app_s = connect(&envs[s], survivor, "app1").await;
    phone.scan(&mut app_s, &code).await.expect("completed through the survivor");
    assert_eq!(gateway::result(&mut gw_k, &code.task_id, 10).await.unwrap()["status"], "completed");
    let (ok, out) = envs[k].mcsd(&["audit", "verify"]);
    assert!(ok, "{out}");
    eprintln!(
        "acknowledged: {} before the kill, {} in all; callback delivered {delivered_after:?} after the kill",
        before_kill.len(),
        all.len()
    );
}

fn ready(daemon: &Daemon) -> bool {
    daemon.health_get("/readyz").0 == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_write() {
    let primary = Arc::new(Cluster::start());
    let standby = Cluster::standby_of(&primary);
    primary.replicate_synchronously(PATIENCE).await;
    let db = PgDb::fresh_on(primary.clone()).await;
    // Both servers, the writable one wherever it is now.
    let url = format!(
        "host={},{} port=5432 user=postgres dbname={} target_session_attrs=read-write connect_timeout=5",
        primary.socket_dir().display(),
        standby.socket_dir().display(),
        db.dbname
    );
    let envs = nodes(&url, 2, "");
    let (a, b) = (Daemon::start(&envs[0]), Daemon::start(&envs[1]));
    let (phone, mut app_a) = phone_across((&envs[0], &a), (&envs[1], &b), "app1", "123456").await;
    let (revoked, _) = phone_across((&envs[1], &b), (&envs[0], &a), "app2", "222222").await;
    let mut app_b = connect(&envs[1], &b, "app1").await;

    // Acknowledged: a revocation, three completed tasks, two wrong PINs.
    let mut admin_b = connect(&envs[1], &b, "admin").await;
    mcs_client::admin::revoke(&mut admin_b, revoked.key_id(), "key_compromise").await.expect("revoke");
    let mut gw_a = connect(&envs[0], &a, "gateway").await;
    let mut completed = Vec::new();
    for i in 0..3 {
        let msg = format!("tender ZB-2026-3{i:02}: before the failover").into_bytes();
        let code = sign_task(&mut gw_a, &msg, None).await;
        let conn = if i % 2 == 0 { &mut app_a } else { &mut app_b };
        phone.claim(conn, &code).await.unwrap();
        let e = sm2_2p::e_for_message(phone.public_key(), &msg);
        completed.push((code.task_id.clone(), phone.cosign_and_complete(conn, &code, &e).await.unwrap().to_der()));
    }

    // Last (a right PIN resets the count): two wrong PINs, one per node.
    let wrong = Phone::unlock(phone.state.clone(), "999999").unwrap();
    for conn in [&mut app_a, &mut app_b] {
        assert_eq!(api_code(&wrong.sign_message(conn, b"x", SignMode::Canonical).await.unwrap_err()), "pin_incorrect");
    }

    // The primary crashes; the nodes notice (the store fails, /readyz says so) before
    // the standby is promoted, then find the new primary by themselves.
    primary.kill();
    wait_until("both nodes report the store failed", PATIENCE, || !ready(&a) && !ready(&b)).await;
    standby.promote();
    let promoted = std::time::Instant::now();
    wait_until("both nodes serve again", PATIENCE, || ready(&a) && ready(&b)).await;
    eprintln!("nodes ready {:?} after the promotion", promoted.elapsed());

    for (env, d) in [(&envs[0], &a), (&envs[1], &b)] {
        let mut admin = connect(env, d, "admin").await;
        let key = mcs_client::admin::get_key(&mut admin, phone.key_id()).await.unwrap();
        assert_eq!(key["pin"], json!({"remaining_attempts": 3, "locked": false}), "PIN failures on {}", d.api);
        let key = mcs_client::admin::get_key(&mut admin, revoked.key_id()).await.unwrap();
        assert_eq!(key["status"], "revoked", "the revocation on {}", d.api);
        let mut gw = connect(env, d, "gateway").await;
        for (task_id, signature) in &completed {
            let out = gateway::result(&mut gw, task_id, 0).await.unwrap();
            assert_eq!(out["status"], "completed", "{out}");
            assert_eq!(&B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap(), signature);
        }
    }
    // The counter goes on from where it was, and the revoked key stays unusable.
    let mut app_a = connect(&envs[0], &a, "app1").await;
    let err = wrong.sign_message(&mut app_a, b"x", SignMode::Canonical).await.unwrap_err();
    let mcs_client::Error::Api(api) = err else { panic!("expected an API error") };
    assert_eq!((api.code.as_str(), &api.extra["remaining_attempts"]), ("pin_incorrect", &json!(2)));
    let mut app2 = connect(&envs[0], &a, "app2").await;
    assert!(revoked.sign_message(&mut app2, b"revoked", SignMode::Canonical).await.is_err());
    let sig = phone.sign_message(&mut app_a, b"after the failover", SignMode::Canonical).await.expect("sign");
    assert!(openssl_verifies(envs[0].path(), phone.public_key(), b"after the failover", &sig.to_der()));
    // Both nodes hold their node locks on the new primary again: verify sees them running.
    let (ok, out) = envs[1].mcsd(&["audit", "verify"]);
    assert!(ok, "audit verify after the failover:\n{out}");
    for node in ["node-1", "node-2"] {
        assert!(node_line(&out, node).contains("(running): intact"), "{out}");
    }
}
