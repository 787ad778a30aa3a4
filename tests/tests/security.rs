//! The black-box campaign's findings (issue 11), one test each, named after the defect:
//! role confusion by an appended certificate, connections held open, PIN guesses beyond the
//! limit under concurrency, request spans leaking into each other, uppercase hex counted as
//! a PIN failure, store file modes.

use std::time::Duration;

use hyper::Method;
use mcs_client::phone::{Phone, SignMode};
use mcs_e2e::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn enrollment_body() -> Value {
    json!({
        "subject": {"kind": "person", "name": "Mallory"},
        "ca": "local",
        "platforms": ["P-DEV-1"],
        "validity_days": 30,
    })
}

/// Defect 1 (critical): with one CA per role, a phone that appends the operators' CA
/// certificate or an admin's certificate to its own was served as admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_confusion_by_an_appended_certificate() {
    let env = DevEnv::production();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    assert_eq!(
        admin.call(Method::POST, "/v1/enrollments", Some(&enrollment_body())).await.unwrap().status,
        201,
        "the admin itself may enroll"
    );
    let app1 = std::fs::read_to_string(env.pki().join("app1.pem")).unwrap();
    for extra in ["operators-ca.pem", "admin.pem", "platforms-ca.pem", "gateway.pem"] {
        let chain = env.path().join(format!("app1-plus-{extra}"));
        std::fs::write(&chain, format!("{app1}{}", std::fs::read_to_string(env.pki().join(extra)).unwrap())).unwrap();
        let mut ep = env.endpoint(&daemon, "app1");
        ep.cert_file = Some(chain);
        let mut c =
            mcs_client::Connection::connect(&ep).await.expect("the handshake passes: the phone's own path is valid");
        let r = c.call(Method::POST, "/v1/enrollments", Some(&enrollment_body())).await.unwrap();
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{extra} appended: {:?}",
            r.body
        );
        // As a phone, the audit log needs a key of its own; as admin it would be 200.
        let r = c.call(Method::GET, "/v1/audit", None).await.unwrap();
        assert_eq!(r.status, 400, "{extra} appended: {:?}", r.body);
        // It is still the phone: its own (empty) key list.
        let r = c.call(Method::GET, "/v1/keys", None).await.unwrap();
        assert_eq!((r.status, r.body["keys"].as_array().map(Vec::len)), (200, Some(0)));
    }
    // And a gateway certificate with the operators' CA appended stays a gateway.
    let gw = std::fs::read_to_string(env.pki().join("gateway.pem")).unwrap();
    let chain = env.path().join("gateway-plus-ops");
    std::fs::write(&chain, format!("{gw}{}", std::fs::read_to_string(env.pki().join("operators-ca.pem")).unwrap()))
        .unwrap();
    let mut ep = env.endpoint(&daemon, "gateway");
    ep.cert_file = Some(chain);
    let mut c = mcs_client::Connection::connect(&ep).await.unwrap();
    assert_eq!(c.call(Method::GET, "/v1/plugins", None).await.unwrap().status, 403);
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

/// Waits (up to a generous bound) until `cond` holds: the daemon accepts asynchronously.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A phone's request once the daemon has let go of closed connections (a connection made
/// before it noticed them may still be refused as over the bound).
async fn served_again(env: &DevEnv, daemon: &Daemon) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = mcs_client::Connection::connect(&env.endpoint(daemon, "app1")).await
            && let Ok(r) = c.call(Method::GET, "/v1/keys", None).await
        {
            return r.status;
        }
        assert!(tokio::time::Instant::now() < deadline, "not served again within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads until the peer closes; `true` if it closed within `within`.
async fn closed_within<S: AsyncReadExt + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Defect 2 (high): slow-header and idle connections stayed open forever, and a few
/// hundred idle sockets locked out every client, `/healthz` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_timeouts_after_the_handshake() {
    let env = DevEnv::new();
    env.append_config(
        "\n[api.limits]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 2\nmax_connections_per_peer = 24\n",
    );
    let daemon = Daemon::start(&env);
    let generous = Duration::from_secs(15);

    // Headers a byte at a time, never finished: closed by the header-read timeout.
    let mut slow = raw_tls(&env, &daemon, "app1").await;
    slow.write_all(b"GET /v1/keys HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Silent after the handshake: closed as idle.
    let mut silent = raw_tls(&env, &daemon, "app1").await;
    // Idle after one complete request on a keep-alive connection.
    let mut kept = raw_tls(&env, &daemon, "app1").await;
    kept.write_all(b"GET /v1/keys HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Plain TCP that never starts TLS: closed by the handshake timeout.
    let mut tcp = tokio::net::TcpStream::connect(daemon.api).await.unwrap();
    for (name, closed) in [
        ("slow headers", closed_within(&mut slow, generous).await),
        ("silent after handshake", closed_within(&mut silent, generous).await),
        ("idle keep-alive", closed_within(&mut kept, generous).await),
        ("no TLS", closed_within(&mut tcp, generous).await),
    ] {
        assert!(closed, "{name}: the daemon kept the connection open");
    }
    // hyper's own header-read timeout closes the first three; the handshake timeout, ours.
    assert!(daemon.metric("mcsd_api_connections_closed_total") >= 1.0);

    // One address may hold only its share; /healthz answers throughout.
    let mut hogs = Vec::new();
    for _ in 0..40 {
        hogs.push(tokio::net::TcpStream::connect(daemon.api).await.unwrap());
    }
    let (status, _) = daemon.health_get("/healthz");
    assert_eq!(status, 200);
    eventually("the per-peer bound refuses the excess", || daemon.metric("mcsd_api_connections_refused_total") >= 10.0)
        .await;
    drop(hogs);
    // Once they are gone (the daemon notices each close) a real client is served again.
    assert_eq!(served_again(&env, &daemon).await, 200);
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

/// Defect 2, the file limit: with few descriptors, idle sockets cannot take the last of
/// them — the connection bound sits below the file limit, so `/healthz` still answers and
/// the accept loop does not spin on EMFILE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_at_the_file_limit_lock_nobody_out() {
    let env = DevEnv::new();
    env.append_config("\n[api.limits]\nheader_read_timeout_secs = 2\nmax_connections_per_peer = 0\n");
    let daemon = Daemon::start_under(&env, &["prlimit", "--nofile=360:360"]);
    let mut hogs = Vec::new();
    for _ in 0..300 {
        match tokio::net::TcpStream::connect(daemon.api).await {
            Ok(s) => hogs.push(s),
            Err(_) => break,
        }
    }
    let (status, body) = daemon.health_get("/healthz");
    assert_eq!(status, 200, "{body}");
    eventually("connections beyond the bound are refused", || {
        daemon.metric("mcsd_api_connections_refused_total") >= 100.0
    })
    .await;
    drop(hogs);
    assert_eq!(served_again(&env, &daemon).await, 200);
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

/// Defect 3 (high): 40 simultaneous wrong proofs had 7–19 proofs checked per lockout.
/// Per key, at most `pin_max_attempts` wrong proofs may ever be evaluated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_limit_is_exceeded_under_concurrency() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, _conn) = new_phone(&env, &daemon, "app1", "123456").await;
    let before = daemon.metric("mcsd_pin_failures_total");
    // Unmasked first: the PIN derivation is slow, and done inside the tasks it would stall
    // their handshakes past the daemon's handshake timeout.
    let wrongs: Vec<Phone> =
        (0..40).map(|i| Phone::unlock(phone.state.clone(), &format!("{:06}", 900_000 + i)).unwrap()).collect();
    let mut guesses = Vec::new();
    for wrong in wrongs {
        let ep = env.endpoint(&daemon, "app1");
        guesses.push(tokio::spawn(async move {
            let mut conn = match mcs_client::Connection::connect(&ep).await {
                Ok(c) => c,
                Err(e) => return Some(format!("connect: {e}")),
            };
            wrong
                .sign_message(&mut conn, b"guess", SignMode::Canonical)
                .await
                .err()
                .map(|e| e.code().map(str::to_owned).unwrap_or_else(|| e.to_string()))
        }));
    }
    let mut codes = std::collections::BTreeMap::<String, u32>::new();
    for g in guesses {
        *codes.entry(g.await.unwrap().unwrap_or_else(|| "accepted".into())).or_default() += 1;
    }
    let evaluated = daemon.metric("mcsd_pin_failures_total") - before;
    if codes.keys().any(|k| k.starts_with("connect")) {
        let (_, log) = daemon.stop();
        panic!("{codes:?}\n{log}");
    }
    assert_eq!(evaluated, 5.0, "wrong proofs evaluated: {evaluated}; answers {codes:?}");
    assert_eq!(codes.get("pin_incorrect"), Some(&4), "{codes:?}");
    assert_eq!(codes.get("pin_locked"), Some(&36), "{codes:?}");
    // The right PIN is refused now: the key is locked.
    let mut conn = connect(&env, &daemon, "app1").await;
    let e = phone.sign_message(&mut conn, b"after", SignMode::Canonical).await.unwrap_err();
    assert_eq!(e.code(), Some("pin_locked"));
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

/// Defect 3, the hidden right PIN: in bursts of wrong guesses with the right PIN among
/// them, the right one may succeed only while fewer than `limit` wrong ones were checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_pin_hidden_in_a_burst_of_wrong_ones_never_gets_extra_guesses() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    for round in 0..4 {
        let (phone, _conn) = new_phone(&env, &daemon, "app1", "123456").await;
        let before = daemon.metric("mcsd_pin_failures_total");
        let mut burst = Vec::new();
        for i in 0..11 {
            let pin = if i == 5 + round { "123456".to_owned() } else { format!("{:06}", 700_000 + i) };
            let (p, ep) = (Phone::unlock(phone.state.clone(), &pin).unwrap(), env.endpoint(&daemon, "app1"));
            burst.push(tokio::spawn(async move {
                let mut conn = mcs_client::Connection::connect(&ep).await.unwrap();
                (pin == "123456", p.sign_message(&mut conn, b"burst", SignMode::Canonical).await.is_ok())
            }));
        }
        let mut right_accepted = false;
        for b in burst {
            let (is_right, ok) = b.await.unwrap();
            assert!(!ok || is_right, "a wrong PIN was accepted");
            right_accepted |= is_right && ok;
        }
        let evaluated = daemon.metric("mcsd_pin_failures_total") - before;
        let key = mcs_client::admin::get_key(&mut admin, phone.key_id()).await.unwrap();
        // Serialised: either the right PIN came within the first 5 checks (and reset the
        // counter; at most 4 wrong before it, then 5 more to the lock) or after the lock.
        if right_accepted {
            assert!(evaluated <= 9.0, "round {round}: {evaluated} wrong proofs evaluated");
        } else {
            assert_eq!(evaluated, 5.0, "round {round}");
        }
        assert_eq!(key["pin"]["locked"], true, "round {round}: 10 wrong guesses must lock");
    }
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

/// Defect 4 (medium): under concurrent phones, request log lines carried other requests'
/// ids and keys, and the logging layer panicked on a closed span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_leak_into_each_other() {
    let env = DevEnv::new();
    env.append_config("\n[log]\nformat = \"json\"\nlevel = \"info\"\n");
    let daemon = Daemon::start(&env);
    let mut phones = Vec::new();
    for i in 0..8 {
        phones.push(new_phone(&env, &daemon, "app1", &format!("{:06}", 100_000 + i)).await.0);
    }
    let mut work = Vec::new();
    for phone in phones {
        let (ep, wrong) = (env.endpoint(&daemon, "app1"), Phone::unlock(phone.state.clone(), "999999").unwrap());
        work.push(tokio::spawn(async move {
            let mut conn = mcs_client::Connection::connect(&ep).await.unwrap();
            for _ in 0..3 {
                phone.sign_message(&mut conn, b"right", SignMode::Canonical).await.expect("a right PIN signs");
                assert_eq!(
                    wrong.sign_message(&mut conn, b"wrong", SignMode::Canonical).await.unwrap_err().code(),
                    Some("pin_incorrect")
                );
                phone.sign_message(&mut conn, b"reset", SignMode::Canonical).await.expect("a right PIN signs");
            }
        }));
    }
    for w in work {
        w.await.unwrap();
    }
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let mut checked = 0;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["fields"]["message"] != "PIN proof rejected" {
            continue;
        }
        assert_eq!(v["span"]["key_id"], v["fields"]["key_id"], "a log line carries another request's key: {line}");
        checked += 1;
    }
    assert_eq!(checked, 24, "every rejected proof is logged inside its own request");
}

/// Defect 10 (low): uppercase hex was accepted and turned a malformed request into a
/// counted PIN failure. It is `bad_request`, and the counter does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppercase_hex_accepted() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let (e_hex, q1_hex) = ("ab".repeat(32), sm2_2p::point_to_hex(&q1));
    let proof = phone.proof(&sm2_2p::Transcript::Sign { e: e_hex.clone(), q1: q1_hex.clone() });
    let path = format!("/v1/keys/{}/sign", phone.key_id());
    for body in [
        json!({"e": e_hex.to_uppercase(), "q1": q1_hex, "pin_proof": proof}),
        json!({"e": e_hex, "q1": q1_hex.to_uppercase(), "pin_proof": proof}),
        json!({"e": e_hex, "q1": q1_hex, "pin_proof": proof.to_uppercase()}),
    ] {
        let r = conn.call(Method::POST, &path, Some(&body)).await.unwrap();
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    }
    let key = conn.json(Method::GET, &format!("/v1/keys/{}", phone.key_id()), None).await.unwrap();
    assert_eq!(key["pin"]["remaining_attempts"], 5, "a malformed request was counted as a PIN failure");
    assert_eq!(daemon.metric("mcsd_pin_failures_total"), 0.0);
    // The same request in lowercase is served.
    let r = conn.call(Method::POST, &path, Some(&json!({"e": e_hex, "q1": q1_hex, "pin_proof": proof}))).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

/// `POST /v1/verify/signature` (it once answered 404): by message or by `e`, tampering
/// refused, bad input `bad_request`, a revoked signer no longer valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_signature_checks_message_or_e_and_revocation() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    let msg = b"bid for ZB-2026-014: 1,234,000 CNY";
    let sig = phone.sign_message(&mut conn, msg, SignMode::Canonical).await.unwrap();
    let key = conn.json(Method::GET, &format!("/v1/keys/{}", phone.key_id()), None).await.unwrap();
    let cert = key["certificate"].as_str().unwrap().to_owned();
    let mut gw = connect(&env, &daemon, "gateway").await;
    let check = |body: Value| {
        let mut body = body;
        body["certificate"] = json!(cert);
        body
    };
    let good = gw
        .json(
            Method::POST,
            "/v1/verify/signature",
            Some(&check(json!({"message": b64.encode(msg), "signature": b64.encode(sig.to_der())}))),
        )
        .await
        .unwrap();
    assert_eq!(good["valid"], true, "{good}");
    assert_eq!(good["certificate_serial"], key["certificate_serial"]);
    let e = hex::encode(sm2_2p::e_for_message(phone.public_key(), msg));
    let by_e = gw
        .json(
            Method::POST,
            "/v1/verify/signature",
            Some(&check(json!({"e": e, "signature": b64.encode(sig.to_der())}))),
        )
        .await
        .unwrap();
    assert_eq!(by_e["valid"], true, "{by_e}");
    let tampered = gw.json(Method::POST, "/v1/verify/signature", Some(&check(json!({"message": b64.encode(b"bid for ZB-2026-014: 9,234,000 CNY"), "signature": b64.encode(sig.to_der())})))).await.unwrap();
    assert_eq!(tampered["valid"], false);
    assert!(tampered["errors"].to_string().contains("does not verify"), "{tampered}");
    for bad in [
        json!({"message": "AA==", "e": e, "signature": "AA==", "certificate": cert}),
        json!({"signature": "AA==", "certificate": cert}),
        json!({"message": "AA==", "signature": "AA==", "certificate": "not base64"}),
        json!({"message": "AA==", "signature": "AA==", "certificate": "AAAA"}),
        json!({"message": "AA==", "signature": "AA==", "certificate": cert, "extra": 1}),
    ] {
        let r = gw.call(Method::POST, "/v1/verify/signature", Some(&bad)).await.unwrap();
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (400, Some("bad_request")), "{bad}");
    }
    // Revoked: the same signature is no longer valid.
    let mut admin = connect(&env, &daemon, "admin").await;
    admin
        .json(Method::POST, &format!("/v1/keys/{}/revoke", phone.key_id()), Some(&json!({"reason": "key_compromise"})))
        .await
        .unwrap();
    let after = gw
        .json(
            Method::POST,
            "/v1/verify/signature",
            Some(&check(json!({"message": b64.encode(msg), "signature": b64.encode(sig.to_der())}))),
        )
        .await
        .unwrap();
    assert_eq!(after["valid"], false, "{after}");
    assert!(after["errors"].to_string().contains("revoked"), "{after}");
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}

/// Defect 12 (low): the raw PIN verifier of a key was still in process memory 100 requests
/// after its PIN change, as were verifier hex strings from request bodies and an encrypt
/// task's plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_linger_in_memory() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (mut phone, mut conn) = new_phone(&env, &daemon, "app1", "123456").await;
    let old = *phone.verifier();
    phone.sign_message(&mut conn, b"with the old PIN", SignMode::Canonical).await.unwrap();
    phone.change_pin(&mut conn, "654321").await.unwrap();
    let new = *phone.verifier();
    // An encrypt task's plaintext, taken by the phone.
    let secret_text = b"sealed bid: 4,321,000 CNY -- do not open before 2027-01-15";
    let mut gw = connect(&env, &daemon, "gateway").await;
    use base64::Engine;
    let task = gw
        .json(Method::POST, "/v1/tasks", Some(&json!({"kind": "encrypt", "display": {"title": "encrypt"}, "data": {"plaintext": base64::engine::general_purpose::STANDARD.encode(secret_text)}})))
        .await
        .unwrap();
    let code = mcs_client::phone::ScanCode::parse(task["qr"].as_str().unwrap()).unwrap();
    phone.claim(&mut conn, &code).await.unwrap();
    gw.json(Method::GET, &format!("/v1/tasks/{}/result", task["task_id"].as_str().unwrap()), None).await.unwrap();
    drop(conn);
    drop(gw);
    for i in 0..100 {
        let mut c = connect(&env, &daemon, if i % 2 == 0 { "app1" } else { "app2" }).await;
        c.call(Method::GET, "/v1/keys", None).await.unwrap();
    }
    let (old_hex, new_hex) = (hex::encode(old), hex::encode(new));
    let found = memory_holds(daemon.pid(), &[&old, old_hex.as_bytes(), &new, new_hex.as_bytes(), secret_text]);
    let names = ["old verifier", "old verifier hex", "new verifier", "new verifier hex", "encrypt plaintext"];
    let lingering: Vec<&str> = names.iter().zip(&found).filter(|(_, f)| **f).map(|(n, _)| *n).collect();
    assert!(lingering.is_empty(), "still in the daemon's memory: {lingering:?}");
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
}
