//! Delegations end to end (issue 14, PROTOCOL.md "Re-sharing"): an owner's phone re-shares
//! its key to an employee's phone through the real daemon; the employee's signatures verify
//! under the organisation's key with OpenSSL, raw and in every task kind; the employee's
//! phone checks its pair before use and refuses a corrupted share; its wrong PINs move only
//! its own counter; outsiders, expired and out-of-kind uses are refused with API.md's
//! codes; revocation is durable before the reply and leaves no wrapped share in any sled
//! file; a transfer keeps the certificate and moves the key; bad input changes nothing;
//! on PostgreSQL a delegation made on one node is used on another. Per-use approval of a
//! delegate's and of a seal grant's use, one approval per task in a batch, the owner's and
//! the delegate's audit views, and the inbox's certificate items with their push wake-ups.

use std::time::{Duration, Instant};

use base64::Engine;
use hyper::Method;
use mcs_api::{DelegationKind, DelegationStatus};
use mcs_client::delegation::{DelegationOptions, PendingDelegation};
use mcs_client::phone::{Phone, ScanCode, SignMode};
use mcs_client::{Connection, Error, gateway};
use mcs_e2e::*;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Far beyond any step here; only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(60);

fn now() -> i64 {
    mcsd::clock::now()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn api_code<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Ok(v) => format!("succeeded: {v:?}"),
        Err(e) => e.code().map(str::to_owned).unwrap_or_else(|| format!("not an API error: {e}")),
    }
}

/// A raw request's (status, error code).
async fn raw(conn: &mut Connection, method: Method, path: &str, body: Value) -> (u16, String) {
    let resp = conn.call(method, path, Some(&body)).await.unwrap();
    (resp.status, resp.body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

/// The delegation exactly as the daemon answers it (to compare before and after).
async fn view(conn: &mut Connection, did: &str) -> Value {
    conn.json(Method::GET, &format!("/v1/delegations/{did}"), None).await.unwrap()
}

fn code_of(created: &Value) -> ScanCode {
    ScanCode::parse(created["qr"].as_str().unwrap()).unwrap()
}

/// Every step of a re-share as the two apps do it: the owner invites, the new phone
/// accepts, the owner sends its share, the new phone checks and activates with `pin`.
async fn hand_over(
    owner: &Phone,
    owner_conn: &mut Connection,
    new_conn: &mut Connection,
    opts: &DelegationOptions,
    pin: &str,
) -> (Phone, String) {
    let created = owner.create_delegation(owner_conn, opts).await.expect("invitation");
    let did = created.delegation_id;
    let (pending, accepted) =
        PendingDelegation::accept(new_conn, "test", &did, &created.invitation_code).await.expect("accept");
    assert_eq!(accepted.status, DelegationStatus::AwaitingShare);
    owner.share_with(owner_conn, &did).await.expect("share");
    let phone = pending.activate(new_conn, pin).await.expect("activate");
    (phone, did)
}

/// The operator makes the company's official seal, signed with `signer`'s key, valid a day.
async fn company_seal(admin: &mut Connection, signer: &str) -> Value {
    let seal = json!({
        "kind": "official",
        "name": "Company seal",
        "owner": { "org_name": "Hangzhou Example Construction Co", "credit_code": "91330100MA2B3C4D5E" },
        "image": { "type": "PNG", "data": B64.encode(mcs_pdfseal::image::demo_seal_png(96)), "width_mm": 40, "height_mm": 40 },
        "signer_key_ids": [signer],
        "valid_from": rfc3339(now() - 3600),
        "valid_to": rfc3339(now() + 86_400),
    });
    admin.json(Method::POST, "/v1/seals", Some(&seal)).await.unwrap()
}

fn delegate_for_an_hour() -> DelegationOptions {
    DelegationOptions { label: Some("clerk Li".into()), ..DelegationOptions::delegate(rfc3339(now() + 3600)) }
}

/// SM2-encrypt `plaintext` to `public` with OpenSSL.
fn openssl_encrypt(env: &DevEnv, public: &sm2_2p::AffinePoint, plaintext: &[u8]) -> Vec<u8> {
    let (pem, pt, ct) = (env.path().join("org.pem"), env.path().join("pt"), env.path().join("ct"));
    std::fs::write(&pem, mcs_client::phone::public_key_pem(public)).unwrap();
    std::fs::write(&pt, plaintext).unwrap();
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
    std::fs::read(&ct).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegate_signs_and_decrypts_under_the_org_key_raw_and_in_every_task_kind() {
    let env = DevEnv::new();
    env.add_app_identity("app3");
    let daemon = Daemon::start(&env);
    let (owner, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let mut app2 = connect(&env, &daemon, "app2").await;
    let mut admin = connect(&env, &daemon, "admin").await;
    let mut gw = connect(&env, &daemon, "gateway").await;

    // The handover, step by step: the delegate refuses what does not form the key.
    let created = owner.create_delegation(&mut app1, &delegate_for_an_hour()).await.unwrap();
    let did = created.delegation_id.clone();
    let (pending, _) = PendingDelegation::accept(&mut app2, "test", &did, &created.invitation_code).await.unwrap();
    owner.share_with(&mut app1, &did).await.unwrap();
    let handed = pending.fetch(&mut app2).await.unwrap();
    assert_eq!(handed.status, DelegationStatus::AwaitingPin);
    assert_eq!(handed.public_key, owner.state.public_key);
    let (wrapped, p2) = (handed.wrapped_share.clone().unwrap(), handed.p2.clone().unwrap());
    // The owner does not get the sealed share or p2; they are the delegate's.
    let owners_view = view(&mut app1, &did).await;
    assert!(owners_view.get("wrapped_share").is_none() && owners_view.get("p2").is_none(), "{owners_view}");
    let mut bytes = hex::decode(&wrapped).unwrap();
    for at in [1, 70, 100, bytes.len() - 1] {
        bytes[at] ^= 0x01;
        let corrupted = mcs_api::Delegation { wrapped_share: Some(hex::encode(&bytes)), ..handed.clone() };
        let err = pending.open(&corrupted).unwrap_err();
        assert!(matches!(err, Error::ShareRefused(_)), "byte {at} flipped: {err}");
        bytes[at] ^= 0x01;
    }
    // A well-formed share against another p2 (here the key's public point: any other
    // server half) fails the joint-key check.
    let foreign = mcs_api::Delegation { p2: Some(owner.state.public_key.clone()), ..handed.clone() };
    assert!(matches!(pending.open(&foreign), Err(Error::ShareRefused(m)) if m.contains("joint public key")));
    let share = pending.open(&handed).expect("the real share opens and forms the key");
    assert!(sm2_2p::pair_forms(&share, &sm2_2p::point_from_hex(&p2).unwrap(), owner.public_key()));
    let delegate = pending.activate(&mut app2, "222222").await.unwrap();
    assert_eq!(delegate.key_id(), owner.key_id());
    assert_eq!(delegate.public_key(), owner.public_key());
    assert_eq!(delegate.state.delegation_id.as_deref(), Some(did.as_str()));
    assert_ne!(delegate.share().scalar(), owner.share().scalar(), "the delegate's half is its own");
    // The owner sees both devices that hold a share of its key; the delegate owns no key.
    let devices: mcs_api::DeviceList =
        serde_json::from_value(app1.json(Method::GET, "/v1/devices", None).await.unwrap()).unwrap();
    let roles: Vec<_> = devices.items.iter().filter(|d| d.key_id == owner.key_id()).map(|d| d.role).collect();
    assert_eq!(roles.len(), 2, "{devices:?}");
    assert!(roles.contains(&mcs_api::DeviceRole::Owner) && roles.contains(&mcs_api::DeviceRole::Delegate));
    let delegate_row = devices.items.iter().find(|d| d.role == mcs_api::DeviceRole::Delegate).unwrap();
    assert_eq!(delegate_row.delegation_id.as_deref(), Some(did.as_str()));
    let theirs: mcs_api::DeviceList =
        serde_json::from_value(app2.json(Method::GET, "/v1/devices", None).await.unwrap()).unwrap();
    assert!(theirs.items.iter().all(|d| d.key_id != owner.key_id()), "{theirs:?}");
    // Its answer lost, the delegate repeats the activation: the same answer for the same
    // verifier, `conflict` for another, and nothing changes.
    let path = format!("/v1/delegations/{did}/activate");
    let same = json!({"pin": {"salt": delegate.state.pin_salt, "verifier": hex::encode(delegate.verifier())}});
    let again = app2.json(Method::POST, &path, Some(&same)).await.unwrap();
    assert_eq!((&again["key_id"], &again["public_key"]), (&json!(owner.key_id()), &json!(owner.state.public_key)));
    let other = json!({"pin": {"salt": delegate.state.pin_salt, "verifier": "11".repeat(32)}});
    assert_eq!(raw(&mut app2, Method::POST, &path, other).await, (409, "conflict".to_owned()));
    let active = view(&mut app2, &did).await;
    assert_eq!(active["status"], "active");
    assert!(active.get("wrapped_share").is_none(), "the handover is gone once active: {active}");

    // Raw sign, checked by OpenSSL under the org key; the owner still signs too.
    for (who, phone, conn) in [("delegate", &delegate, &mut app2), ("owner", &owner, &mut app1)] {
        let msg = format!("raw signature by the {who}");
        let sig = phone.sign_message(conn, msg.as_bytes(), SignMode::Canonical).await.unwrap();
        assert!(openssl_verifies(env.path(), owner.public_key(), msg.as_bytes(), &sig.to_der()), "{who}");
    }
    // Raw decrypt of something OpenSSL encrypted to the org key.
    let ct = openssl_encrypt(&env, owner.public_key(), b"bid file key 1");
    assert_eq!(delegate.decrypt(&mut app2, &ct).await.unwrap().as_slice(), b"bid file key 1");

    // Every task kind, with the key id of the org key.
    assert!(signing_task(&env, &mut gw, &delegate, &mut app2, "login", b"login challenge 9e1 for the org").await);
    assert!(signing_task(&env, &mut gw, &delegate, &mut app2, "sign", "投标文件 ZB-2026-7".as_bytes()).await);
    let secret = b"bid file key 2: 0f3c".to_vec();
    let ct = openssl_encrypt(&env, owner.public_key(), &secret);
    let created =
        gateway::create_task(&mut gw, "decrypt", "Open the bid", json!({"ciphertext": B64.encode(&ct)}), None, None)
            .await
            .unwrap();
    let code = code_of(&created);
    delegate.scan(&mut app2, &code).await.unwrap();
    let out = gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    assert_eq!(B64.decode(out["result"]["plaintext"].as_str().unwrap()).unwrap(), secret);

    // pdf_seal with the org's seal: the CMS signature verifies under the org key.
    let seal = company_seal(&mut admin, owner.key_id()).await;
    let pdf = mcs_pdfseal::pdf::sample_document(1, false);
    let data =
        json!({ "pdf": B64.encode(&pdf), "seal_id": seal["seal_id"], "placement": {"page": 1, "x": 300, "y": 200} });
    let created = gateway::create_task(&mut gw, "pdf_seal", "Seal the bid", data, None, None).await.unwrap();
    let code = code_of(&created);
    delegate.scan(&mut app2, &code).await.unwrap();
    let out = gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    let sealed = B64.decode(out["result"]["pdf"].as_str().unwrap()).unwrap();
    let found = mcs_pdfseal::pdf::signatures(&sealed).unwrap();
    assert_eq!(found.len(), 1);
    let cms = mcs_pdfseal::cms::parse(&found[0].contents).unwrap();
    assert!(openssl_verifies(env.path(), owner.public_key(), &cms.to_be_signed, &cms.signature));
    let report =
        admin.json(Method::POST, "/v1/verify/pdf", Some(&json!({ "pdf": B64.encode(&sealed) }))).await.unwrap();
    assert_eq!(report["signatures"][0]["valid"], true, "{report}");

    // The owner's log of the key holds every use; each of the delegate's names its device
    // (the actor) and its delegation. The delegate's log is its own entries only; another
    // phone's is refused.
    let path = format!("/v1/audit?key_id={}", owner.key_id());
    let owners = app1.json(Method::GET, &path, None).await.unwrap();
    let entries = owners["entries"].as_array().unwrap();
    let raw_sign = entries
        .iter()
        .find(|e| e["event"] == "POST /v1/keys/{id}/sign" && e["detail"]["delegation_id"] == json!(did))
        .expect("the delegate's raw signature, naming its delegation");
    let delegate_actor = raw_sign["actor"].clone();
    assert!(delegate_actor.as_str().unwrap().starts_with("app:"), "{raw_sign}");
    for event in [
        "POST /v1/keys/{id}/decrypt",
        "POST /v1/tasks/{id}/claim",
        "POST /v1/tasks/{id}/cosign",
        "POST /v1/tasks/{id}/complete",
    ] {
        let found = entries
            .iter()
            .filter(|e| e["event"] == event && e["actor"] == delegate_actor)
            .all(|e| e["detail"]["delegation_id"] == json!(did));
        let any = entries.iter().any(|e| e["event"] == event && e["actor"] == delegate_actor);
        assert!(found && any, "{event}: every delegate entry names the delegation: {owners}");
    }
    assert!(
        entries.iter().any(|e| e["event"] == "POST /v1/keys/{id}/sign" && e["actor"] != delegate_actor),
        "the owner's own signature is in its log too"
    );
    let theirs = app2.json(Method::GET, &path, None).await.unwrap();
    let theirs = theirs["entries"].as_array().unwrap();
    assert!(theirs.len() >= 5, "{theirs:?}");
    assert!(theirs.iter().all(|e| e["actor"] == delegate_actor), "only the delegate's own entries: {theirs:?}");
    let mut app3 = connect(&env, &daemon, "app3").await;
    let refused = app3.call(Method::GET, &path, None).await.unwrap();
    assert_eq!((refused.status, &refused.body["error"]["code"]), (403, &json!("device_mismatch")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_outsiders_kinds_expiry_and_invitations() {
    let env = DevEnv::new();
    env.add_app_identity("app3");
    // The sweeper that ends expired delegations runs every second here.
    env.append_config("\n[tasks]\nsweep_interval_secs = 1\n");
    let daemon = Daemon::start(&env);
    let (owner, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let mut app2 = connect(&env, &daemon, "app2").await;
    let mut app3 = connect(&env, &daemon, "app3").await;

    // Signing only, for a few seconds: every in-window check runs before it ends.
    let not_after = now() + 8;
    let opts =
        DelegationOptions { task_kinds: Some(vec!["sign".into()]), ..DelegationOptions::delegate(rfc3339(not_after)) };
    let (delegate, did) = hand_over(&owner, &mut app1, &mut app2, &opts, "222222").await;
    delegate.sign_message(&mut app2, b"within the window", SignMode::Canonical).await.unwrap();

    // Wrong PINs move only the delegate's counter.
    let max = view(&mut app2, &did).await["pin"]["remaining_attempts"].as_u64().unwrap();
    let wrong = Phone::unlock(delegate.state.clone(), "000000").unwrap();
    let err = wrong.sign_message(&mut app2, b"guess", SignMode::Canonical).await.unwrap_err();
    assert_eq!(err.code(), Some("pin_incorrect"), "{err}");
    let Error::Api(e) = &err else { unreachable!() };
    assert_eq!(e.extra["remaining_attempts"], json!(max - 1));
    assert_eq!(view(&mut app2, &did).await["pin"]["remaining_attempts"], json!(max - 1));
    let key = mcs_client::admin::get_key(&mut app1, owner.key_id()).await.unwrap();
    assert_eq!(key["pin"]["remaining_attempts"], json!(max), "the owner's counter did not move");
    owner.sign_message(&mut app1, b"owner unaffected", SignMode::Canonical).await.unwrap();

    // Out of kind: raw decrypt, a login task.
    let ct = openssl_encrypt(&env, owner.public_key(), b"not for the clerk");
    assert_eq!(api_code(delegate.decrypt(&mut app2, &ct).await), "no_permission");
    let mut gw = connect(&env, &daemon, "gateway").await;
    let created = gateway::create_task(&mut gw, "login", "Log in", json!({"challenge": B64.encode(b"c")}), None, None)
        .await
        .unwrap();
    assert_eq!(api_code(delegate.claim(&mut app2, &code_of(&created)).await), "no_permission");

    // An outsider naming the org key: device_mismatch, for use and for the delegation.
    let outsider = Phone::unlock(delegate.state.clone(), "222222").unwrap();
    assert_eq!(api_code(outsider.sign_message(&mut app3, b"x", SignMode::Canonical).await), "device_mismatch");
    let resp = app3.call(Method::GET, &format!("/v1/delegations/{did}"), None).await.unwrap();
    assert_eq!(resp.body["error"]["code"], "device_mismatch");

    // Past not_after: no_permission, and the sweeper ends it.
    let deadline = Instant::now() + PATIENCE;
    while now() < not_after {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(api_code(delegate.sign_message(&mut app2, b"late", SignMode::Canonical).await), "no_permission");
    loop {
        let v = view(&mut app1, &did).await;
        if v["status"] == "expired" {
            assert_eq!(v["end_reason"], "expired");
            break;
        }
        assert!(Instant::now() < deadline, "not expired by the sweeper: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Invitations: a wrong code is token_invalid and changes nothing; a used one conflict.
    let created = owner.create_delegation(&mut app1, &delegate_for_an_hour()).await.unwrap();
    let did = created.delegation_id;
    let before = view(&mut app1, &did).await;
    assert_eq!(api_code(PendingDelegation::accept(&mut app3, "test", &did, "WRONG-CODE").await), "token_invalid");
    assert_eq!(view(&mut app1, &did).await, before);
    let (first, _) = PendingDelegation::accept(&mut app3, "test", &did, &created.invitation_code).await.unwrap();
    assert_eq!(
        api_code(PendingDelegation::accept(&mut app2, "test", &did, &created.invitation_code).await),
        "conflict"
    );
    assert_eq!(view(&mut app1, &did).await["transport_key"], json!(first.transport_key), "still the first accept's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_durable_before_the_reply_and_erases_the_wrapped_share_from_every_file() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (owner, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let mut app2 = connect(&env, &daemon, "app2").await;
    let (delegate, did) = hand_over(&owner, &mut app1, &mut app2, &delegate_for_an_hour(), "222222").await;
    delegate.sign_message(&mut app2, b"before", SignMode::Canonical).await.unwrap();
    let (status, _) = daemon.stop();
    assert!(status.success());

    // The stored d2' is the delegate's half of the key: (d1'·d2')⁻¹·G − G = P.
    let d2 = read_secret(&env, &did, "delegate-share", false);
    let server = sm2_2p::ServerShare::from_bytes(&d2).unwrap();
    let joint = sm2_2p::ProjectivePoint::from(server.decrypt(&delegate.share().p1())) - generator();
    assert_eq!(joint.to_affine(), *owner.public_key());
    let wrapped = read_secret(&env, &did, "delegate-share", true);
    let verifier = read_secret(&env, &did, "delegate-pin-verifier", true);
    assert!(wrapped.len() >= 64 + 16, "a wrapped share is ciphertext plus tag");
    assert_eq!(files_holding(&env.db(), &wrapped), 1, "the wrapped share is stored once");
    assert!(files_holding(&env.db(), &d2[..32]) == 0, "d2' in clear");

    let daemon = Daemon::start(&env);
    let mut app1 = connect(&env, &daemon, "app1").await;
    let revoked = owner.revoke_delegation(&mut app1, &did).await.unwrap();
    assert_eq!((revoked.status, revoked.end_reason.as_deref()), (DelegationStatus::Revoked, Some("revoked")));
    // Checked while the daemon runs: the reply alone guarantees it.
    assert_eq!(files_holding(&env.db(), &wrapped), 0, "the wrapped share survived revocation");
    assert_eq!(files_holding(&env.db(), &verifier), 0, "the delegate's verifier survived revocation");
    daemon.kill9();

    let daemon = Daemon::start(&env);
    let mut app1 = connect(&env, &daemon, "app1").await;
    let mut app2 = connect(&env, &daemon, "app2").await;
    assert_eq!(view(&mut app1, &did).await["status"], "revoked");
    assert_eq!(api_code(delegate.sign_message(&mut app2, b"after", SignMode::Canonical).await), "no_permission");
    owner.sign_message(&mut app1, b"the owner's share is untouched", SignMode::Canonical).await.unwrap();
    assert_eq!(api_code(owner.revoke_delegation(&mut app1, &did).await), "conflict");
    let (status, _) = daemon.stop();
    assert!(status.success());
    assert_eq!(files_holding(&env.db(), &wrapped), 0);
}

fn generator() -> sm2_2p::ProjectivePoint {
    use elliptic_curve::group::Group;
    sm2_2p::ProjectivePoint::generator()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_with_the_cli_keeps_the_certificate_and_moves_the_key() {
    let env = DevEnv::new();
    env.add_app_identity("app3");
    let daemon = Daemon::start(&env);
    let (owner, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let before = mcs_client::admin::get_key(&mut app1, owner.key_id()).await.unwrap();
    assert!(before["certificate_serial"].is_string(), "{before}");
    let (old_state, new_state) = (env.path().join("old-phone.json"), env.path().join("new-phone.json"));
    owner.state.save(&old_state).unwrap();

    let mcs = |who: &str, args: &[&str]| {
        let out = std::process::Command::new(bin("mcs"))
            .args(["--server", &format!("https://{}", daemon.api), "--pki"])
            .arg(env.pki())
            .args(["--as", who])
            .args(args)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "mcs {args:?}: {text}");
        text
    };
    let old = old_state.to_str().unwrap();
    let new = new_state.to_str().unwrap();
    // The owner's other delegation commands, briefly.
    let pin = ["--pin", "111111"];
    let created = mcs("app1", &[&["app", "delegate", "create", "--state", old, "--days", "1"][..], &pin].concat());
    let created: Value = serde_json::from_str(&created).unwrap();
    let clerk = created["delegation_id"].as_str().unwrap();
    let listed: Value = serde_json::from_str(&mcs("app1", &["app", "delegate", "list", "--state", old])).unwrap();
    assert_eq!(listed["items"][0]["status"], "invited", "{listed}");
    let revoked = mcs("app1", &[&["app", "delegate", "revoke", "--state", old, clerk][..], &pin].concat());
    assert_eq!(serde_json::from_str::<Value>(&revoked).unwrap()["status"], "revoked");
    let invitation: Value =
        serde_json::from_str(&mcs("app1", &["app", "transfer", "--state", old, "--pin", "111111"])).unwrap();
    let did = invitation["delegation_id"].as_str().unwrap();
    let code = invitation["invitation_code"].as_str().unwrap();
    let out = mcs("app3", &["app", "accept", "--state", new, "--delegation", did, "--code", code]);
    assert!(out.contains("has not sent the share yet"), "{out}");
    assert!(PendingDelegation::load(&new_state).is_ok(), "the transport secret is kept between the steps");
    mcs("app1", &["app", "delegate", "share", "--state", old, did, "--pin", "111111"]);
    let out = mcs("app3", &["app", "accept", "--state", new, "--pin", "333333"]);
    assert!(out.contains(&format!("activated key {}", owner.key_id())), "{out}");

    let moved = mcs_client::phone::PhoneState::load(&new_state).unwrap();
    assert_eq!((&moved.key_id, &moved.public_key), (&owner.state.key_id, &owner.state.public_key));
    assert_eq!(moved.delegation_id, None, "after a transfer the new phone is the owner");
    let new_phone = Phone::unlock(moved, "333333").unwrap();
    let mut app3 = connect(&env, &daemon, "app3").await;
    let after = mcs_client::admin::get_key(&mut app3, owner.key_id()).await.unwrap();
    for field in ["public_key", "certificate", "certificate_serial", "status"] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_ne!(after["device_id"], before["device_id"]);
    let sig = new_phone.sign_message(&mut app3, b"signed on the new phone", SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), owner.public_key(), b"signed on the new phone", &sig.to_der()));
    assert_eq!(api_code(owner.sign_message(&mut app1, b"old phone", SignMode::Canonical).await), "device_mismatch");
    let d = mcs_client::delegation::delegation(&mut app3, did).await.unwrap();
    assert_eq!((d.kind, d.status), (DelegationKind::Transfer, DelegationStatus::Active));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_wrong_roles_and_a_replayed_share_change_nothing() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (owner, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let mut app2 = connect(&env, &daemon, "app2").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let created = owner.create_delegation(&mut app1, &delegate_for_an_hour()).await.unwrap();
    let did = created.delegation_id.clone();
    let accept = format!("/v1/delegations/{did}/accept");
    let (_, t) = sm2_2p::TransportKey::generate();
    let t_hex = sm2_2p::point_to_hex(&t);

    // accept: transport keys that are not points, a gateway, an operator.
    let before = view(&mut app1, &did).await;
    let mut off_curve = t_hex.clone();
    off_curve.replace_range(128.., if off_curve.ends_with('0') { "1" } else { "0" });
    for bad in [off_curve, t_hex.to_uppercase(), t_hex[..128].to_owned(), format!("05{}", &t_hex[2..]), "zz".repeat(65)]
    {
        let body = json!({ "invitation_code": *created.invitation_code, "transport_key": bad });
        assert_eq!(raw(&mut app2, Method::POST, &accept, body).await, (400, "bad_request".into()), "{bad}");
    }
    let body = json!({ "invitation_code": *created.invitation_code, "transport_key": t_hex });
    assert_eq!(raw(&mut gw, Method::POST, &accept, body.clone()).await, (403, "forbidden".into()));
    let mut admin = connect(&env, &daemon, "admin").await;
    assert_eq!(raw(&mut admin, Method::POST, &accept, body).await, (403, "forbidden".into()));
    assert_eq!(raw(&mut gw, Method::GET, &format!("/v1/delegations/{did}"), Value::Null).await.1, "forbidden");
    assert_eq!(view(&mut app1, &did).await, before, "nothing changed");

    let (pending, _) = PendingDelegation::accept(&mut app2, "test", &did, &created.invitation_code).await.unwrap();
    // reshare/share: malformed proofs and shares, the delegate instead of the owner.
    let reshare = format!("/v1/delegations/{did}/reshare");
    let share = format!("/v1/delegations/{did}/share");
    let before = view(&mut app1, &did).await;
    for proof in ["ZZ".repeat(32), "AB".repeat(32), "ab".repeat(31)] {
        assert_eq!(
            raw(&mut app1, Method::POST, &reshare, json!({ "pin_proof": proof })).await,
            (400, "bad_request".into())
        );
    }
    assert_eq!(raw(&mut app1, Method::POST, &reshare, json!({})).await, (400, "bad_request".into()));
    let u = owner.reshare(&mut app1, &did).await.unwrap();
    let sealed = owner.seal_share(&u, &sm2_2p::point_from_hex(&pending.transport_key).unwrap());
    let proof = owner.proof(&sm2_2p::Transcript::Share { delegation_id: did.clone(), wrapped_share: sealed.clone() });
    let mut bad_c1 = sealed.clone();
    bad_c1.replace_range(2..4, if &sealed[2..4] == "00" { "01" } else { "00" });
    for bad in
        [sealed.to_uppercase(), sealed[..sealed.len() - 2].to_owned(), format!("{sealed}00"), bad_c1, "zz".repeat(129)]
    {
        let body = json!({ "wrapped_share": bad, "pin_proof": proof });
        assert_eq!(raw(&mut app1, Method::POST, &share, body).await, (400, "bad_request".into()), "{bad}");
    }
    let body = json!({ "wrapped_share": sealed, "pin_proof": proof });
    assert_eq!(raw(&mut app2, Method::POST, &share, body.clone()).await, (403, "device_mismatch".into()));
    assert_eq!(raw(&mut gw, Method::POST, &share, body.clone()).await, (403, "forbidden".into()));
    let mut after = view(&mut app1, &did).await;
    assert_eq!(after["status"], "awaiting_share");
    // The reshare above stored p2 (not shown); otherwise the same.
    after.as_object_mut().unwrap().remove("p2");
    assert_eq!(after, before);

    owner.send_share(&mut app1, &did, &sealed).await.unwrap();
    let shared = view(&mut app2, &did).await;
    // Replayed share (same body, or a fresh proof): conflict, and the handover is unchanged.
    assert_eq!(raw(&mut app1, Method::POST, &share, body).await, (409, "conflict".into()));
    assert_eq!(api_code(owner.send_share(&mut app1, &did, &sealed).await), "conflict");
    assert_eq!(api_code(owner.reshare(&mut app1, &did).await), "conflict");
    assert_eq!(view(&mut app2, &did).await, shared);

    // activate: bad verifiers and salts, another device, unknown fields.
    let activate = format!("/v1/delegations/{did}/activate");
    let v = hex::encode([0xabu8; 32]);
    let salt = hex::encode([1u8; 16]);
    for pin in [
        json!({ "salt": salt, "verifier": v.to_uppercase() }),
        json!({ "salt": salt, "verifier": &v[..62] }),
        json!({ "salt": "zz".repeat(16), "verifier": v }),
        json!({ "salt": salt }),
    ] {
        assert_eq!(raw(&mut app2, Method::POST, &activate, json!({ "pin": pin })).await, (400, "bad_request".into()));
    }
    for extra in
        [json!({ "recovery_key": "AB".repeat(32) }), json!({ "recovery_key": "00".repeat(31) }), json!({ "extra": 1 })]
    {
        let mut body = json!({ "pin": { "salt": salt, "verifier": v } });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert_eq!(raw(&mut app2, Method::POST, &activate, body).await.0, 400, "{extra}");
    }
    let body = json!({ "pin": { "salt": salt, "verifier": v } });
    assert_eq!(raw(&mut app1, Method::POST, &activate, body).await, (403, "device_mismatch".into()));
    assert_eq!(view(&mut app2, &did).await, shared, "nothing changed");
    let delegate = pending.activate(&mut app2, "222222").await.unwrap();
    delegate.sign_message(&mut app2, b"after all that", SignMode::Canonical).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_delegation_made_on_one_node_is_used_on_another() {
    use mcs_e2e::cluster::{PgDb, nodes};
    let db = PgDb::fresh().await;
    let envs = nodes(&db.url(), 2, "");
    let (a, b) = (Daemon::start(&envs[0]), Daemon::start(&envs[1]));
    let (owner, mut owner_a) = new_phone(&envs[0], &a, "app1", "111111").await;
    let mut delegate_b = connect(&envs[1], &b, "app2").await;
    let (delegate, did) = hand_over(&owner, &mut owner_a, &mut delegate_b, &delegate_for_an_hour(), "222222").await;
    let sig = delegate.sign_message(&mut delegate_b, b"signed on node 2", SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(envs[1].path(), owner.public_key(), b"signed on node 2", &sig.to_der()));
    let mut gw_a = connect(&envs[0], &a, "gateway").await;
    assert!(signing_task(&envs[1], &mut gw_a, &delegate, &mut delegate_b, "sign", b"task of node 1, on node 2").await);

    // Revoked on node 1: refused on node 2 at once (the share is erased in the database).
    owner.revoke_delegation(&mut owner_a, &did).await.unwrap();
    assert_eq!(api_code(delegate.sign_message(&mut delegate_b, b"after", SignMode::Canonical).await), "no_permission");
    let client = db.client().await;
    let left =
        client.query_one("SELECT count(*) FROM secrets WHERE owner = $1", &[&did]).await.map(|r| r.get::<_, i64>(0));
    assert!(matches!(left, Ok(0)), "{left:?}");
}

/// An `each_use` delegate's claim of `code`: 202 `awaiting_approval`; its approval id.
/// The owner's phone (app1, PIN 111111) and an hour's `each_use` delegate (app2, 222222).
async fn each_use_delegate(env: &DevEnv, daemon: &Daemon) -> (Phone, Connection, Phone, Connection, String) {
    let (owner, mut app1) = new_phone(env, daemon, "app1", "111111").await;
    let mut app2 = connect(env, daemon, "app2").await;
    let opts = DelegationOptions { approval: Some(mcs_api::DelegationApproval::EachUse), ..delegate_for_an_hour() };
    let (delegate, did) = hand_over(&owner, &mut app1, &mut app2, &opts, "222222").await;
    (owner, app1, delegate, app2, did)
}

async fn claim_awaiting_approval(conn: &mut Connection, code: &ScanCode, key_id: &str) -> String {
    let claim = json!({"token": code.token, "key_id": key_id});
    let resp = conn.call(Method::POST, &format!("/v1/tasks/{}/claim", code.task_id), Some(&claim)).await.unwrap();
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(resp.body["status"], "awaiting_approval");
    resp.body["approval_id"].as_str().unwrap().to_owned()
}

/// Per-use approval (API.md): a delegate with `approval: each_use` cannot use the key raw;
/// its claim answers 202 `awaiting_approval` and waits; co-signing before the owner
/// decides is `task_state`; the owner's phone is told through its inbox and approves with
/// a PIN proof — the delegate's next claim gets the digest and its signature verifies
/// under the org key; a denial rejects the task (`approval_denied`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_use_approval_holds_a_delegates_claim_until_the_owner_decides() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (owner, mut app1, delegate, mut app2, did) = each_use_delegate(&env, &daemon).await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    assert_eq!(api_code(delegate.sign_message(&mut app2, b"raw", SignMode::Canonical).await), "no_permission");

    let message = b"bid needing the legal representative".as_slice();
    let created =
        gateway::create_task(&mut gw, "sign", "Bid for approval", json!({"message": B64.encode(message)}), None, None)
            .await
            .unwrap();
    let code = code_of(&created);
    let aid = claim_awaiting_approval(&mut app2, &code, delegate.key_id()).await;
    assert_eq!(gateway::task(&mut gw, &code.task_id).await.unwrap()["status"], "awaiting_approval");

    // Co-signing before the decision: task_state.
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let q1_hex = sm2_2p::point_to_hex(&q1);
    let op = sm2_2p::Transcript::TaskSign { task_id: code.task_id.clone(), q1: q1_hex.clone() };
    let cosign = json!({"token": code.token, "q1": q1_hex, "pin_proof": delegate.proof(&op)});
    let (status, err) = raw(&mut app2, Method::POST, &format!("/v1/tasks/{}/cosign", code.task_id), cosign).await;
    assert_eq!((status, err.as_str()), (409, "task_state"));

    // The owner's inbox asks; the approval reads pending for both; only the owner decides.
    let asked = mcs_client::inbox::read(&mut app1, None, 5).await.unwrap();
    let request =
        asked.items.iter().map(|i| serde_json::to_value(i).unwrap()).find(|v| v["type"] == "approval_request");
    let request = request.expect("an approval_request item");
    assert_eq!((&request["approval_id"], &request["delegate_label"]), (&json!(aid), &json!("clerk Li")));
    for conn in [&mut app1, &mut app2] {
        let a = conn.json(Method::GET, &format!("/v1/approvals/{aid}"), None).await.unwrap();
        assert_eq!(
            (&a["status"], &a["delegation_id"], &a["task_id"]),
            (&json!("pending"), &json!(did), &json!(code.task_id))
        );
    }
    let path = format!("/v1/approvals/{aid}");
    let op = sm2_2p::Transcript::Approve { approval_id: aid.clone(), decision: "approve".into() };
    let own = json!({"decision": "approve", "pin_proof": delegate.proof(&op)});
    let (status, err) = raw(&mut app2, Method::POST, &path, own).await;
    assert_eq!((status, err.as_str()), (403, "device_mismatch"), "a delegate cannot approve itself");
    let (status, err) =
        raw(&mut app1, Method::POST, &path, json!({"decision": "maybe", "pin_proof": "00".repeat(32)})).await;
    assert_eq!((status, err.as_str()), (400, "bad_request"));
    assert_eq!(gateway::task(&mut gw, &code.task_id).await.unwrap()["status"], "awaiting_approval", "unchanged");
    let decided = owner.decide_approval(&mut app1, &aid, true).await.unwrap();
    assert_eq!((decided.approval_id.as_str(), decided.decision.as_str()), (aid.as_str(), "approve"));

    // Approved: the delegate's inbox hears it, and its claim now gets the digest.
    let told = mcs_client::inbox::read(&mut app2, None, 5).await.unwrap();
    assert!(told.items.iter().any(|i| serde_json::to_value(i).unwrap()["type"] == "approval_result"));
    delegate.scan(&mut app2, &code).await.expect("signed after the approval");
    let out = gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    let sig = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(env.path(), owner.public_key(), message, &sig), "verifies under the org key");
    let a = app1.json(Method::GET, &path, None).await.unwrap();
    assert_eq!(a["status"], "approved");

    // Denied: the task is rejected with the reason.
    let created =
        gateway::create_task(&mut gw, "sign", "Another bid", json!({"message": B64.encode(b"no")}), None, None)
            .await
            .unwrap();
    let code = code_of(&created);
    let aid = claim_awaiting_approval(&mut app2, &code, delegate.key_id()).await;
    // This time on the command line: the owner reads its inbox and denies.
    let mcs = |args: &[&str]| {
        let out = std::process::Command::new(bin("mcs"))
            .args(["--server", &format!("https://{}", daemon.api), "--pki"])
            .arg(env.pki())
            .args(["--as", "app1"])
            .args(args)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "mcs {args:?}: {text}");
        text
    };
    let listed = mcs(&["app", "inbox", "--wait", "5"]);
    assert!(listed.contains(&aid) && listed.contains("approval_request"), "{listed}");
    let state = env.path().join("owner-approves.json");
    owner.state.save(&state).unwrap();
    let denied =
        mcs(&["app", "approve", "--state", state.to_str().unwrap(), "--approval", &aid, "--deny", "--pin", "111111"]);
    assert!(denied.contains("\"deny\""), "{denied}");
    let out = gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    assert_eq!((&out["status"], &out["error"]), (&json!("rejected"), &json!("approval_denied")));
    let a = app2.json(Method::GET, &format!("/v1/approvals/{aid}"), None).await.unwrap();
    assert_eq!(a["status"], "denied");

    // Undecided, the approval expires with its task; deciding it then is `task_expired`.
    let data = json!({"message": B64.encode(b"too late")});
    let created = gateway::create_task(&mut gw, "sign", "Short-lived", data, Some(3), None).await.unwrap();
    let code = code_of(&created);
    let aid = claim_awaiting_approval(&mut app2, &code, delegate.key_id()).await;
    let path = format!("/v1/approvals/{aid}");
    let deadline = Instant::now() + PATIENCE;
    while app1.json(Method::GET, &path, None).await.unwrap()["status"] != "expired" {
        assert!(Instant::now() < deadline, "the approval never expired with its task");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(api_code(owner.decide_approval(&mut app1, &aid, true).await), "task_expired");
    assert_eq!(gateway::task(&mut gw, &code.task_id).await.unwrap()["status"], "expired");
}

/// On PostgreSQL: a task claimed by an `each_use` delegate on node 1 is approved by the
/// owner on node 2, whose inbox got the request; the delegate then signs on node 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_task_claimed_on_one_node_is_approved_on_another() {
    use mcs_e2e::cluster::{PgDb, nodes};
    let db = PgDb::fresh().await;
    let envs = nodes(&db.url(), 2, "");
    let (a, b) = (Daemon::start(&envs[0]), Daemon::start(&envs[1]));
    let (owner, mut owner_a) = new_phone(&envs[0], &a, "app1", "111111").await;
    let mut owner_b = connect(&envs[1], &b, "app1").await;
    let mut delegate_a = connect(&envs[0], &a, "app2").await;
    let opts = DelegationOptions { approval: Some(mcs_api::DelegationApproval::EachUse), ..delegate_for_an_hour() };
    let (delegate, _) = hand_over(&owner, &mut owner_a, &mut delegate_a, &opts, "222222").await;
    let mut gw_a = connect(&envs[0], &a, "gateway").await;
    let message = b"approved across nodes".as_slice();
    let created = gateway::create_task(&mut gw_a, "sign", "Bid", json!({"message": B64.encode(message)}), None, None)
        .await
        .unwrap();
    let code = code_of(&created);
    let aid = claim_awaiting_approval(&mut delegate_a, &code, delegate.key_id()).await;

    // Node 2's inbox has node 1's request (the long-poll re-reads the shared store).
    let asked = mcs_client::inbox::read(&mut owner_b, None, 10).await.unwrap();
    assert!(asked.items.iter().any(|i| serde_json::to_value(i).unwrap()["approval_id"] == json!(aid)));
    owner.decide_approval(&mut owner_b, &aid, true).await.unwrap();
    delegate.scan(&mut delegate_a, &code).await.expect("signed on node 1 after the approval on node 2");
    let out = gateway::result(&mut gw_a, &code.task_id, 10).await.unwrap();
    let sig = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    assert!(openssl_verifies(envs[0].path(), owner.public_key(), message, &sig));
}

/// A seal granted to an employee's own key with `approval: each_use` (API.md "Seal grants
/// take `approval`"): the employee's claim waits (202), the seal owner's phone — the phone
/// of the seal's signer key, the legal representative's — is asked through its inbox and
/// approves with its PIN; the employee then seals and the PDF verifies; a denial rejects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_granted_for_each_use_seals_only_after_the_seal_owner_approves() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (rep, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let (clerk, mut app2) = new_phone(&env, &daemon, "app2", "222222").await;
    let mut admin = connect(&env, &daemon, "admin").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let seal = company_seal(&mut admin, rep.key_id()).await;
    let sid = seal["seal_id"].as_str().unwrap().to_owned();
    let (from, to) = (rfc3339(now() - 60), rfc3339(now() + 3600));
    let granted = mcs_client::admin::grant_seal(&mut admin, &sid, clerk.key_id(), &from, &to, true).await.unwrap();
    assert_eq!(granted["grants"][0]["approval"], "each_use", "{granted}");

    let pdf = mcs_pdfseal::pdf::sample_document(1, false);
    let seal_task = || json!({ "pdf": B64.encode(&pdf), "seal_id": sid, "placement": {"page": 1, "x": 300, "y": 200} });
    let created = gateway::create_task(&mut gw, "pdf_seal", "Seal the bid", seal_task(), None, None).await.unwrap();
    let code = code_of(&created);
    let aid = claim_awaiting_approval(&mut app2, &code, clerk.key_id()).await;
    let asked = mcs_client::inbox::read(&mut app1, None, 5).await.unwrap();
    assert!(
        asked.items.iter().any(|i| {
            let v = serde_json::to_value(i).unwrap();
            v["type"] == "approval_request" && v["approval_id"] == json!(aid)
        }),
        "the seal owner's phone is asked: {asked:?}"
    );
    let a = app1.json(Method::GET, &format!("/v1/approvals/{aid}"), None).await.unwrap();
    assert_eq!((&a["seal_id"], &a["key_id"], &a["status"]), (&json!(sid), &json!(clerk.key_id()), &json!("pending")));
    assert!(a.get("delegation_id").is_none(), "no delegation is involved: {a}");
    // The clerk cannot approve its own use.
    let op = sm2_2p::Transcript::Approve { approval_id: aid.clone(), decision: "approve".into() };
    let own = json!({"decision": "approve", "pin_proof": clerk.proof(&op)});
    let (status, err) = raw(&mut app2, Method::POST, &format!("/v1/approvals/{aid}"), own).await;
    assert_eq!((status, err.as_str()), (403, "device_mismatch"));
    rep.decide_approval(&mut app1, &aid, true).await.unwrap();
    clerk.scan(&mut app2, &code).await.expect("sealed after the approval");
    let out = gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    let sealed = B64.decode(out["result"]["pdf"].as_str().unwrap()).unwrap();
    let found = mcs_pdfseal::pdf::signatures(&sealed).unwrap();
    let cms = mcs_pdfseal::cms::parse(&found[0].contents).unwrap();
    assert!(openssl_verifies(env.path(), clerk.public_key(), &cms.to_be_signed, &cms.signature), "the clerk's key");
    let report =
        admin.json(Method::POST, "/v1/verify/pdf", Some(&json!({ "pdf": B64.encode(&sealed) }))).await.unwrap();
    assert_eq!(report["signatures"][0]["valid"], true, "{report}");

    // Denied: rejected, and nothing sealed.
    let created = gateway::create_task(&mut gw, "pdf_seal", "Seal again", seal_task(), None, None).await.unwrap();
    let code = code_of(&created);
    let aid = claim_awaiting_approval(&mut app2, &code, clerk.key_id()).await;
    rep.decide_approval(&mut app1, &aid, false).await.unwrap();
    let out = gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    assert_eq!((&out["status"], &out["error"]), (&json!("rejected"), &json!("approval_denied")));
    assert!(out.get("result").is_none_or(Value::is_null), "{out}");
}

/// Batch co-signing by an `each_use` delegate: each task is approved on its own; once both
/// are, one batch with one PIN proof signs both (OpenSSL verifies under the org key); a
/// task still awaiting its approval in a batch gets `task_state` for that item only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_each_use_delegate_batch_signs_with_one_approval_per_task() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (owner, mut app1, delegate, mut app2, _) = each_use_delegate(&env, &daemon).await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let messages: [&[u8]; 3] = [b"bid one", b"bid two", b"bid three"];
    let mut codes = Vec::new();
    let mut approvals = Vec::new();
    for m in messages {
        let created = gateway::create_task(&mut gw, "sign", "Batch", json!({"message": B64.encode(m)}), None, None)
            .await
            .unwrap();
        let code = code_of(&created);
        approvals.push(claim_awaiting_approval(&mut app2, &code, delegate.key_id()).await);
        codes.push(code);
    }
    // The third is not approved: in a batch, only its item fails.
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let q1 = sm2_2p::point_to_hex(&q1);
    let third = &codes[2];
    let op = sm2_2p::Transcript::Batch { items: vec![(third.task_id.clone(), q1.clone())] };
    let body = json!({
        "items": [{"task_id": third.task_id, "token": third.token, "q1": q1}],
        "key_id": delegate.key_id(),
        "pin_proof": delegate.proof(&op),
    });
    let answer = app2.json(Method::POST, "/v1/tasks/batch/cosign", Some(&body)).await.unwrap();
    assert_eq!(answer["items"][0]["error"]["code"], "task_state", "{answer}");

    for aid in &approvals[..2] {
        owner.decide_approval(&mut app1, aid, true).await.unwrap();
    }
    let signed = delegate.batch_sign(&mut app2, &codes[..2]).await.unwrap();
    for (m, sig) in messages.iter().zip(signed) {
        let sig = sig.expect("signed in the batch");
        assert!(openssl_verifies(env.path(), owner.public_key(), m, &sig.to_der()), "verifies under the org key");
    }
    for code in &codes[..2] {
        assert_eq!(gateway::result(&mut gw, &code.task_id, 10).await.unwrap()["status"], "completed");
    }
    assert_eq!(gateway::task(&mut gw, &codes[2].task_id).await.unwrap()["status"], "awaiting_approval");
}

/// The inbox tells a key's phones of its certificate and its replacement, and each item
/// wakes the configured push service with `{device_id, type, id}` only (mutual TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_items_tell_of_certificates_and_wake_the_push_service() {
    let env = DevEnv::new();
    let port = free_port();
    env.append_config(&format!("\n[push]\nurl = \"https://127.0.0.1:{port}/push\"\n"));
    let receiver = CallbackReceiver::start(&env, port).await;
    let daemon = Daemon::start(&env);
    let (old, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let page = mcs_client::inbox::read(&mut app1, None, 5).await.unwrap();
    let item = serde_json::to_value(&page.items[0]).unwrap();
    assert_eq!((&item["type"], &item["key_id"]), (&json!("certificate_issued"), &json!(old.key_id())), "{item}");
    let pushed = receiver.wait_for(1, PATIENCE).await;
    let fields: Vec<&String> = pushed[0].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["device_id", "id", "type"], "content-free: {}", pushed[0]);
    assert_eq!((&pushed[0]["type"], &pushed[0]["id"]), (&item["type"], &item["id"]));

    // A renewal: once the successor's certificate is issued, the old key is superseded and
    // its phone told.
    let mut admin = connect(&env, &daemon, "admin").await;
    let next = mcs_client::admin::successor(&mut admin, old.key_id(), "renew", None, None).await.unwrap();
    let (eid, code) = (next["enrollment_id"].as_str().unwrap(), next["activation_code"].as_str().unwrap());
    let new = Phone::activate(&mut app1, "test", eid, code, "111111").await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = Some(page.cursor.clone());
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 2 && Instant::now() < deadline {
        let page = mcs_client::inbox::read(&mut app1, cursor.as_deref(), 5).await.unwrap();
        seen.extend(page.items.iter().map(|i| serde_json::to_value(i).unwrap()));
        cursor = Some(page.cursor);
    }
    let kinds: Vec<(&Value, &Value)> = seen.iter().map(|v| (&v["type"], &v["key_id"])).collect();
    assert!(kinds.contains(&(&json!("certificate_issued"), &json!(new.key_id()))), "{seen:?}");
    assert!(kinds.contains(&(&json!("key_superseded"), &json!(old.key_id()))), "{seen:?}");
    let pushed = receiver.wait_for(3, PATIENCE).await;
    assert!(pushed.iter().any(|p| p["type"] == "key_superseded"), "{pushed:?}");
}
