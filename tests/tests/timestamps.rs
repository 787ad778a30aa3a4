//! The time-stamp authority inside mcsd (RFC 3161, issue 15): OpenSSL reads its replies;
//! SM2 tokens verify with our verifier and with OpenSSL's `pkeyutl` (SM2 ID explicit) over
//! the DER signed attributes; the P-256 TSA passes `openssl ts -verify` against the dev CA;
//! bad requests are rejections; serial numbers increase; PDF signatures carry a signature
//! time-stamp and the document a DSS.

use std::path::Path;

use base64::Engine;
use mcs_e2e::*;
use serde_json::json;
use sha2::Digest;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn openssl_ok(args: &[&std::ffi::OsStr]) -> String {
    let (ok, out) = openssl(args);
    assert!(ok, "openssl {args:?}: {out}");
    out
}

/// `openssl ts -query` for `data` (SHA-256, asking for the certificate) with extra args.
fn query(dir: &Path, name: &str, data: &[u8], extra: &[&str]) -> Vec<u8> {
    let (d, q) = (dir.join(format!("{name}.dat")), dir.join(format!("{name}.tsq")));
    std::fs::write(&d, data).unwrap();
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["ts".as_ref(), "-query".as_ref(), "-data".as_ref(), d.as_os_str(), "-sha256".as_ref(), "-cert".as_ref()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend(["-out".as_ref(), q.as_os_str()]);
    openssl_ok(&args);
    std::fs::read(&q).unwrap()
}

fn reply_text(dir: &Path, name: &str, reply: &[u8]) -> String {
    let r = dir.join(format!("{name}.tsr"));
    std::fs::write(&r, reply).unwrap();
    openssl_ok(&["ts".as_ref(), "-reply".as_ref(), "-in".as_ref(), r.as_os_str(), "-text".as_ref()])
}

fn token_of(reply: &[u8]) -> mcs_pdfseal::tsp::TokenView {
    let (status, token) = mcs_pdfseal::tsp::parse_response(reply).unwrap();
    assert_eq!(status, 0, "granted");
    mcs_pdfseal::tsp::parse_token(&token.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sm2_tsa_answers_rfc3161_requests_that_openssl_reads_and_verifies() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut gw = connect(&env, &daemon, "gateway").await;
    let dir = env.path();
    let data = b"bid file ZB-2026-001, sealed 09:00".as_slice();
    let reply = mcs_client::gateway::timestamp(&mut gw, query(dir, "one", data, &[])).await.unwrap();
    let text = reply_text(dir, "one", &reply);
    for want in [
        "Status: Granted",
        "Policy OID: 1.3.6.1.4.1.32473.3161.1",
        "Nonce: 0x",
        "Accuracy: 0x01 seconds",
        "mcsd Time-Stamping Authority",
    ] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }
    let token = token_of(&reply);
    assert_eq!(token.imprint, sha2::Sha256::digest(data).to_vec(), "the imprint is the data's SHA-256");
    let now_ms = mcsd::clock::now_ms();
    assert!((now_ms - token.gen_time_unix_ms).abs() < 60_000, "genTime is now");
    // The SM2 signature over the DER signed attributes: ours and OpenSSL's verifier.
    let public = mcs_pdfseal::sm2_public_key_of(&token.signer_certificate).unwrap();
    let sig = sm2_2p::Signature::from_der(&token.signature).unwrap();
    assert!(sm2_2p::verify(&public, &sm2_2p::e_for_message(&public, &token.to_be_signed), &sig));
    assert!(openssl_verifies(dir, &public, &token.to_be_signed, &token.signature), "OpenSSL pkeyutl, distid");
    // The TSA's certificate: the critical timeStamping extended key usage.
    let cert = dir.join("tsa.der");
    std::fs::write(&cert, &token.signer_certificate).unwrap();
    let x509 = openssl_ok(&[
        "x509".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
        "-noout".as_ref(),
        "-text".as_ref(),
    ]);
    assert!(x509.contains("X509v3 Extended Key Usage: critical") && x509.contains("Time Stamping"), "{x509}");

    // Serials increase; the nonce is echoed.
    let second = token_of(&mcs_client::gateway::timestamp(&mut gw, query(dir, "two", b"other", &[])).await.unwrap());
    let as_int = |s: &[u8]| s.iter().fold(0u128, |a, b| (a << 8) | u128::from(*b));
    assert!(as_int(&second.serial) > as_int(&token.serial), "{:?} then {:?}", token.serial, second.serial);
    assert!(second.nonce.is_some());

    // Refusals are rejections (RFC 3161 answers them), not HTTP errors: another policy, junk.
    let other = mcs_client::gateway::timestamp(&mut gw, query(dir, "pol", data, &["-tspolicy", "1.2.3.4"])).await;
    let text = reply_text(dir, "pol", &other.unwrap());
    assert!(text.contains("Status: Rejected") && text.contains("policy is not supported"), "{text}");
    let junk = mcs_client::gateway::timestamp(&mut gw, b"not DER".to_vec()).await.unwrap();
    assert_eq!(mcs_pdfseal::tsp::parse_response(&junk).unwrap().0, 2, "rejection");
    // Wrong content type: 400.
    let resp = gw.call_bytes(hyper::Method::POST, "/v1/timestamp", b"{}".to_vec().into()).await.unwrap();
    assert_eq!((resp.status, &resp.body["error"]["code"]), (400, &json!("bad_request")));
    assert!(daemon.metric("mcsd_timestamps_total") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_p256_tsa_passes_openssl_ts_verify_with_the_dev_ca() {
    let env = DevEnv::new();
    let config = std::fs::read_to_string(env.config()).unwrap();
    assert!(config.contains("algorithm = \"sm2\""), "dev-init configures a TSA");
    std::fs::write(env.config(), config.replace("algorithm = \"sm2\"", "algorithm = \"p256\"")).unwrap();
    let daemon = Daemon::start(&env);
    let mut app = connect(&env, &daemon, "app1").await;
    let dir = env.path();
    let req = query(dir, "p", b"a bid to prove it came first", &[]);
    let reply = mcs_client::gateway::timestamp(&mut app, req).await.unwrap();
    let (r, q, ca) = (dir.join("p.tsr"), dir.join("p.tsq"), env.pki().join("ca.pem"));
    std::fs::write(&r, &reply).unwrap();
    let out = openssl_ok(&[
        "ts".as_ref(),
        "-verify".as_ref(),
        "-in".as_ref(),
        r.as_os_str(),
        "-queryfile".as_ref(),
        q.as_os_str(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
    ]);
    assert!(out.contains("Verification: OK"), "{out}");
    // Another document's request does not match this reply.
    let other = query(dir, "o", b"another document", &[]);
    std::fs::write(dir.join("o.tsq"), other).unwrap();
    let (ok, out) = openssl(&[
        "ts".as_ref(),
        "-verify".as_ref(),
        "-in".as_ref(),
        r.as_os_str(),
        "-queryfile".as_ref(),
        dir.join("o.tsq").as_os_str(),
        "-CAfile".as_ref(),
        ca.as_os_str(),
    ]);
    assert!(!ok || !out.contains("Verification: OK"), "{out}");

    // A request without certReq gets a token without certificates (RFC 3161 §2.4.1): it
    // verifies only when the verifier is given the TSA's certificate.
    let (d, q2, r2) = (dir.join("n.dat"), dir.join("n.tsq"), dir.join("n.tsr"));
    std::fs::write(&d, b"no certificate wanted").unwrap();
    openssl_ok(&[
        "ts".as_ref(),
        "-query".as_ref(),
        "-data".as_ref(),
        d.as_os_str(),
        "-sha256".as_ref(),
        "-out".as_ref(),
        q2.as_os_str(),
    ]);
    let reply = mcs_client::gateway::timestamp(&mut app, std::fs::read(&q2).unwrap()).await.unwrap();
    std::fs::write(&r2, &reply).unwrap();
    let verify = |untrusted: Option<&Path>| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "ts".as_ref(),
            "-verify".as_ref(),
            "-in".as_ref(),
            r2.as_os_str(),
            "-queryfile".as_ref(),
            q2.as_os_str(),
            "-CAfile".as_ref(),
            ca.as_os_str(),
        ];
        if let Some(u) = untrusted {
            args.extend(["-untrusted".as_ref(), u.as_os_str()]);
        }
        openssl(&args)
    };
    let (ok, out) = verify(None);
    assert!(!ok || !out.contains("Verification: OK"), "no certificate in the token: {out}");
    let tsa_cert = env.pki().join("tsa-p256.pem");
    let (ok, out) = verify(Some(&tsa_cert));
    assert!(ok && out.contains("Verification: OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_pdfs_carry_a_signature_time_stamp_and_a_dss() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, _app) = new_phone(&env, &daemon, "app1", "111111").await;
    let seal = company_seal(&mut admin, phone.key_id()).await;
    let sealed = seal_one(&env, &daemon, seal["seal_id"].as_str().unwrap(), &phone).await;

    let found = mcs_pdfseal::pdf::signatures(&sealed).unwrap();
    let container = mcs_pdfseal::cms::parse(&found[0].contents).unwrap();
    let token =
        mcs_pdfseal::tsp::parse_token(container.timestamp_token.as_deref().expect("a signature time-stamp")).unwrap();
    let value =
        mcs_pdfseal::cms::signature_value(&found[0].contents[..]).unwrap_or_else(|_| container.signature.clone());
    assert_eq!(token.imprint_alg, mcs_pdfseal::SM3);
    assert_eq!(
        token.imprint,
        mcs_pdfseal::tsp::imprint_digest(mcs_pdfseal::SM3, &value).unwrap(),
        "over the signature value"
    );
    let public = mcs_pdfseal::sm2_public_key_of(&token.signer_certificate).unwrap();
    assert!(openssl_verifies(env.path(), &public, &token.to_be_signed, &token.signature), "the token's SM2 signature");
    let (certs, _crls) = mcs_pdfseal::pdf::dss(&sealed).unwrap();
    let key = mcs_client::admin::get_key(&mut admin, phone.key_id()).await.unwrap();
    let signer = B64.decode(key["certificate"].as_str().unwrap()).unwrap();
    assert!(certs.contains(&signer), "the DSS holds the signer's certificate");
    assert!(certs.contains(&token.signer_certificate), "and the TSA's");
    let file = env.path().join("sealed.pdf");
    std::fs::write(&file, &sealed).unwrap();
    assert!(std::process::Command::new("qpdf").arg("--check").arg(&file).status().unwrap().success());
    let v =
        admin.json(hyper::Method::POST, "/v1/verify/pdf", Some(&json!({"pdf": B64.encode(&sealed)}))).await.unwrap();
    assert_eq!(v["signatures"][0]["valid"], true, "{v}");
}

/// A bid sealed today still verifies after the bidder renews (the key is superseded) and
/// after the new key and the seal are revoked: each signature is judged at its time-stamp.
/// One made without a time-stamp (the TSA switched off) is judged now, and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_judged_at_their_time_stamp_so_renewal_and_revocation_leave_them_valid() {
    let env = DevEnv::new();
    let with_tsa = std::fs::read_to_string(env.config()).unwrap();
    let cut = with_tsa.find("\n# The time-stamp authority").expect("the dev config's [tsa]");
    std::fs::write(env.config(), &with_tsa[..cut]).unwrap();
    let daemon = Daemon::start(&env);
    let (phone, app) = new_phone(&env, &daemon, "app1", "111111").await;
    let mut admin = connect(&env, &daemon, "admin").await;
    let seal = company_seal(&mut admin, phone.key_id()).await;
    let seal_id = seal["seal_id"].as_str().unwrap().to_owned();
    let untimed = seal_one(&env, &daemon, &seal_id, &phone).await;
    drop(app);
    drop(admin);
    let _ = daemon.stop();
    std::fs::write(env.config(), &with_tsa).unwrap();
    let daemon = Daemon::start(&env);
    let timed = seal_one(&env, &daemon, &seal_id, &phone).await;
    let mut admin = connect(&env, &daemon, "admin").await;
    let verdict = |v: &serde_json::Value| v["signatures"][0].clone();
    let check = |pdf: &[u8]| json!({ "pdf": B64.encode(pdf) });
    let before = verdict(&admin.json(hyper::Method::POST, "/v1/verify/pdf", Some(&check(&timed))).await.unwrap());
    assert_eq!(before["valid"], true, "{before}");
    assert!(before["timestamp"].is_string() && before["valid_at"] == before["timestamp"], "{before}");
    let untimed_now =
        verdict(&admin.json(hyper::Method::POST, "/v1/verify/pdf", Some(&check(&untimed))).await.unwrap());
    assert_eq!((&untimed_now["valid"], untimed_now.get("timestamp")), (&json!(true), None), "{untimed_now}");

    // Renewal: the old key is superseded once the successor's certificate is issued.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let next = mcs_client::admin::successor(&mut admin, phone.key_id(), "renew", None, None).await.unwrap();
    let mut app = connect(&env, &daemon, "app1").await;
    let (eid, code) = (next["enrollment_id"].as_str().unwrap(), next["activation_code"].as_str().unwrap());
    let renewed = mcs_client::phone::Phone::activate(&mut app, "test", eid, code, "111111").await.unwrap();
    let old = mcs_client::admin::get_key(&mut admin, phone.key_id()).await.unwrap();
    assert_eq!(old["status"], "superseded");
    let after = verdict(&admin.json(hyper::Method::POST, "/v1/verify/pdf", Some(&check(&timed))).await.unwrap());
    assert_eq!(after["valid"], true, "time-stamped before the renewal: still valid: {after}");
    let untimed_after =
        verdict(&admin.json(hyper::Method::POST, "/v1/verify/pdf", Some(&check(&untimed))).await.unwrap());
    assert_eq!(untimed_after["valid"], false, "no time-stamp: judged now: {untimed_after}");
    assert!(untimed_after["errors"].to_string().contains("superseded"), "{untimed_after}");

    // Later revocations — of the new key, of the seal — leave it valid too.
    let revoke = json!({"reason": "key_compromise"});
    admin.json(hyper::Method::POST, &format!("/v1/keys/{}/revoke", renewed.key_id()), Some(&revoke)).await.unwrap();
    admin.json(hyper::Method::POST, &format!("/v1/seals/{seal_id}/revoke"), None).await.unwrap();
    let still = verdict(&admin.json(hyper::Method::POST, "/v1/verify/pdf", Some(&check(&timed))).await.unwrap());
    assert_eq!(still["valid"], true, "{still}");
    let v = admin.json(hyper::Method::POST, "/v1/verify/seal", Some(&json!({"seal": seal["seal"]}))).await.unwrap();
    assert_eq!(v["valid"], false, "the seal itself is revoked now: {v}");
}
