//! Electronic seals and sealed PDFs through the whole service: a seal's maker signature
//! verifies with OpenSSL; a PDF sealed three times by QR scan (page x/y, keyword,
//! cross-page) passes `qpdf --check` and our verifier, each digest recomputed here; a
//! changed byte breaks exactly the signatures that cover it; bad seals get their codes.

use base64::Engine;
use hyper::Method;
use mcs_client::phone::{Phone, ScanCode};
use mcs_e2e::*;
use serde_json::{Value, json};
use sm3::Digest;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn now() -> i64 {
    mcsd::clock::now()
}

fn seal_request(name: &str, key_ids: &[&str], from: i64, to: i64) -> Value {
    json!({
        "kind": "official",
        "name": name,
        "owner": { "org_name": "Hangzhou Example Construction Co", "credit_code": "91330100MA2B3C4D5E" },
        "image": { "type": "PNG", "data": B64.encode(mcs_pdfseal::image::demo_seal_png(96)), "width_mm": 40, "height_mm": 40 },
        "signer_key_ids": key_ids,
        "valid_from": rfc3339(from),
        "valid_to": rfc3339(to),
    })
}

async fn seal_pdf(
    gw: &mut mcs_client::Connection,
    app: &mut mcs_client::Connection,
    phone: &Phone,
    pdf: &[u8],
    seal_id: Option<&str>,
    placement: Value,
) -> Vec<u8> {
    let mut data = json!({ "pdf": B64.encode(pdf), "placement": placement });
    if let Some(s) = seal_id {
        data["seal_id"] = json!(s);
    }
    let created = mcs_client::gateway::create_task(gw, "pdf_seal", "Seal the bid", data, None, None).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.scan(app, &code).await.unwrap();
    let out = mcs_client::gateway::result(gw, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    B64.decode(out["result"]["pdf"].as_str().unwrap()).unwrap()
}

/// The ByteRanges of every signature, read straight from the bytes.
fn byte_ranges(pdf: &[u8]) -> Vec<[usize; 4]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = pdf[at..].windows(11).position(|w| w == b"/ByteRange[") {
        let start = at + i + 11;
        let end = start + pdf[start..].iter().position(|&b| b == b']').unwrap();
        let nums: Vec<usize> =
            std::str::from_utf8(&pdf[start..end]).unwrap().split_whitespace().map(|n| n.parse().unwrap()).collect();
        out.push([nums[0], nums[1], nums[2], nums[3]]);
        at = end;
    }
    out
}

async fn verify_pdf(conn: &mut mcs_client::Connection, pdf: &[u8]) -> Vec<Value> {
    let v = conn.json(Method::POST, "/v1/verify/pdf", Some(&json!({ "pdf": B64.encode(pdf) }))).await.unwrap();
    v["signatures"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seals_and_sealed_pdfs_verify_and_tampering_is_caught() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;

    // Make a seal; the maker's signature over DER(SES_SealInfo) verifies with OpenSSL.
    let made = admin
        .json(
            Method::POST,
            "/v1/seals",
            Some(&seal_request("Contract seal", &[phone.key_id()], now() - 3600, now() + 86_400 * 365)),
        )
        .await
        .unwrap();
    let seal_id = made["seal_id"].as_str().unwrap().to_owned();
    let seal_der = B64.decode(made["seal"].as_str().unwrap()).unwrap();
    let parsed = mcs_pdfseal::seal::parse(&seal_der).unwrap();
    assert_eq!(parsed.e_seal_info.header.version, 4);
    assert_eq!(parsed.e_seal_info.es_id.to_string(), made["es_id"].as_str().unwrap());
    let (info_der, sig_der) = mcs_pdfseal::seal::signed_part(&seal_der).unwrap();
    let dir = env.path();
    std::fs::write(dir.join("maker.der"), parsed.cert.as_bytes()).unwrap();
    std::fs::write(dir.join("sealinfo.der"), &info_der).unwrap();
    std::fs::write(dir.join("seal.sig"), &sig_der).unwrap();
    let (ok, out) = openssl(&[
        "x509".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        dir.join("maker.der").as_os_str(),
        "-pubkey".as_ref(),
        "-noout".as_ref(),
        "-out".as_ref(),
        dir.join("maker.pub").as_os_str(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(&[
        "pkeyutl".as_ref(),
        "-verify".as_ref(),
        "-pubin".as_ref(),
        "-inkey".as_ref(),
        dir.join("maker.pub").as_os_str(),
        "-rawin".as_ref(),
        "-in".as_ref(),
        dir.join("sealinfo.der").as_os_str(),
        "-sigfile".as_ref(),
        dir.join("seal.sig").as_os_str(),
        "-digest".as_ref(),
        "sm3".as_ref(),
        "-pkeyopt".as_ref(),
        "distid:1234567812345678".as_ref(),
    ]);
    assert!(ok && out.contains("Signature Verified Successfully"), "OpenSSL rejects the seal: {out}");
    let v = admin.json(Method::POST, "/v1/verify/seal", Some(&json!({ "seal": made["seal"] }))).await.unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["name"], "Contract seal");
    // A changed byte in the picture: still a seal, no longer the maker's.
    let mut tampered = seal_der.clone();
    let pos = tampered.windows(4).position(|w| w == b"IDAT").unwrap() + 10;
    tampered[pos] ^= 0x01;
    let v = admin.json(Method::POST, "/v1/verify/seal", Some(&json!({ "seal": B64.encode(&tampered) }))).await.unwrap();
    assert_eq!(v["valid"], false, "{v}");

    // Seal a three-page bid file three times.
    let mut gw = connect(&env, &daemon, "gateway").await;
    let original = mcs_pdfseal::pdf::sample_document(3, false);
    let p1 =
        seal_pdf(&mut gw, &mut app, &phone, &original, Some(&seal_id), json!({"page": 1, "x": 420, "y": 160})).await;
    let p2 = seal_pdf(&mut gw, &mut app, &phone, &p1, None, json!({"keyword": "Bidder seal here"})).await;
    let p3 = seal_pdf(&mut gw, &mut app, &phone, &p2, Some(&seal_id), json!({"cross_page": {"side": "right"}})).await;
    assert!(
        p1.starts_with(&original) && p2.starts_with(&p1) && p3.starts_with(&p2),
        "earlier revisions are never rewritten"
    );
    let path = dir.join("sealed.pdf");
    std::fs::write(&path, &p3).unwrap();
    if let Some(keep) = std::env::var_os("MCS_KEEP_SEALED_PDF") {
        std::fs::copy(&path, keep).unwrap();
    }
    let check = std::process::Command::new("qpdf").arg("--check").arg(&path).output().expect("qpdf");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && text.contains("No syntax or stream encoding errors"),
        "qpdf: {text}{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let report = verify_pdf(&mut admin, &p3).await;
    assert_eq!(report.len(), 3, "{report:?}");
    for r in &report {
        assert_eq!(r["valid"], true, "{r}");
        assert_eq!(r["seal"]["name"], "Contract seal");
    }
    assert_eq!(
        report.iter().map(|r| r["covers_whole_document"].as_bool().unwrap()).collect::<Vec<_>>(),
        [false, false, true]
    );

    // Each digest, recomputed here from the ByteRange, is the one the signer signed.
    let ranges = byte_ranges(&p3);
    assert_eq!(ranges.len(), 3);
    for [a, b, c, d] in &ranges {
        let mut h = sm3::Sm3::new();
        h.update(&p3[*a..a + b]);
        h.update(&p3[*c..c + d]);
        let hex_contents = std::str::from_utf8(&p3[b + 1..c - 1]).unwrap();
        let contents = hex::decode(hex_contents).unwrap();
        let cms = mcs_pdfseal::cms::parse(&contents).unwrap();
        assert_eq!(cms.message_digest, h.finalize().to_vec());
        // The signer's signature over the signed attributes verifies with the joint key —
        // checked here and by OpenSSL (SM2 with SM3, explicit default ID).
        let sig = sm2_2p::Signature::from_der(&cms.signature).unwrap();
        assert!(sm2_2p::verify(
            phone.public_key(),
            &sm2_2p::e_for_message(phone.public_key(), &cms.to_be_signed),
            &sig
        ));
        assert!(openssl_verifies(dir, phone.public_key(), &cms.to_be_signed, &cms.signature));
    }

    // One byte changed in the third revision only: only the third signature fails.
    let third_start = ranges[1][2] + ranges[1][3];
    let mut bad = p3.clone();
    let m = third_start + bad[third_start..].windows(5).position(|w| w == b"/M(D:").unwrap() + 5;
    bad[m] = if bad[m] == b'2' { b'3' } else { b'2' };
    let report = verify_pdf(&mut admin, &bad).await;
    assert_eq!(
        report.iter().map(|r| r["valid"].as_bool().unwrap()).collect::<Vec<_>>(),
        [true, true, false],
        "{report:?}"
    );
    // One byte changed in the original document: every signature fails.
    let mut bad = p3.clone();
    let t = bad.windows(6).position(|w| w == b"Tender").unwrap();
    bad[t] = b'X';
    let report = verify_pdf(&mut admin, &bad).await;
    assert!(report.iter().all(|r| r["valid"] == false), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_revoked_and_ungranted_seals_are_refused_and_the_pdf_is_untouched() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone1, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let (phone2, mut app2) = new_phone(&env, &daemon, "app2", "222222").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let pdf = mcs_pdfseal::pdf::sample_document(2, true);
    let task =
        |seal: &str| json!({ "pdf": B64.encode(&pdf), "seal_id": seal, "placement": {"page": 1, "x": 300, "y": 300} });
    let code_of = |v: &Value| v["error"]["code"].as_str().map(str::to_owned);

    // Expired: the gateway learns at once; no task exists.
    let expired = admin
        .json(
            Method::POST,
            "/v1/seals",
            Some(&seal_request("Old seal", &[phone1.key_id()], now() - 3 * 86_400, now() - 86_400)),
        )
        .await
        .unwrap();
    let resp = gw.call(Method::POST, "/v1/tasks", Some(&json!({"kind": "pdf_seal", "display": {"title": "t"}, "data": task(expired["seal_id"].as_str().unwrap())}))).await.unwrap();
    assert_eq!((resp.status, code_of(&resp.body).as_deref()), (409, Some("conflict")), "{:?}", resp.body);

    // Revoked.
    let seal = admin
        .json(
            Method::POST,
            "/v1/seals",
            Some(&seal_request("Finance seal", &[phone2.key_id()], now() - 60, now() + 86_400)),
        )
        .await
        .unwrap();
    let seal_id = seal["seal_id"].as_str().unwrap().to_owned();

    // Not granted: phone 1 may not use phone 2's seal; the task stays pending, untouched.
    let created = mcs_client::gateway::create_task(&mut gw, "pdf_seal", "t", task(&seal_id), None, None).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    let err = phone1.scan(&mut app1, &code).await.unwrap_err();
    assert_eq!(err.code(), Some("no_permission"), "{err:?}");
    assert_eq!(mcs_client::gateway::task(&mut gw, &code.task_id).await.unwrap()["status"], "pending");

    // Granted for a period: now phone 1 seals, and its certificate is in the re-made seal.
    let grant =
        json!({ "key_id": phone1.key_id(), "not_before": rfc3339(now() - 60), "not_after": rfc3339(now() + 3600) });
    let regranted = admin.json(Method::POST, &format!("/v1/seals/{seal_id}/grants"), Some(&grant)).await.unwrap();
    assert_eq!(regranted["grants"][0]["key_id"], phone1.key_id());
    phone1.scan(&mut app1, &code).await.unwrap();
    let out = mcs_client::gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    let sealed = B64.decode(out["result"]["pdf"].as_str().unwrap()).unwrap();
    let report = verify_pdf(&mut admin, &sealed).await;
    assert_eq!(report[0]["valid"], true, "{report:?}");

    // Grant withdrawn: refused again. Seal revoked: refused at task creation.
    let resp =
        admin.call(Method::DELETE, &format!("/v1/seals/{seal_id}/grants/{}", phone1.key_id()), None).await.unwrap();
    assert_eq!(resp.status, 204);
    let created = mcs_client::gateway::create_task(&mut gw, "pdf_seal", "t", task(&seal_id), None, None).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    assert_eq!(phone1.scan(&mut app1, &code).await.unwrap_err().code(), Some("no_permission"));
    // A revocation in the same second as a signature's time-stamp counts as before it
    // (times are kept in seconds): revoke a second later, as a real withdrawal would be.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let revoked = admin.json(Method::POST, &format!("/v1/seals/{seal_id}/revoke"), None).await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    let resp = gw
        .call(
            Method::POST,
            "/v1/tasks",
            Some(&json!({"kind": "pdf_seal", "display": {"title": "t"}, "data": task(&seal_id)})),
        )
        .await
        .unwrap();
    assert_eq!((resp.status, code_of(&resp.body).as_deref()), (409, Some("conflict")));
    // A task created before the revocation: the phone's claim is refused, nothing sealed.
    assert_eq!(phone2.scan(&mut app2, &code).await.unwrap_err().code(), Some("conflict"));
    assert_eq!(mcs_client::gateway::task(&mut gw, &code.task_id).await.unwrap()["status"], "pending");

    // A seal bound to a key that was revoked no longer seals.
    let bound = admin
        .json(
            Method::POST,
            "/v1/seals",
            Some(&seal_request("Phone 2 seal", &[phone2.key_id()], now() - 60, now() + 86_400)),
        )
        .await
        .unwrap();
    mcs_client::admin::revoke(&mut admin, phone2.key_id(), "key_compromise").await.unwrap();
    let resp = gw.call(Method::POST, "/v1/tasks", Some(&json!({"kind": "pdf_seal", "display": {"title": "t"}, "data": task(bound["seal_id"].as_str().unwrap())}))).await.unwrap();
    assert_eq!((resp.status, code_of(&resp.body).as_deref()), (409, Some("conflict")), "{:?}", resp.body);
    let v = admin.json(Method::POST, "/v1/verify/pdf", Some(&json!({ "pdf": B64.encode(&sealed) }))).await.unwrap();
    assert_eq!(v["signatures"][0]["valid"], true, "phone 1's earlier seal is unaffected: {v}");

    // Bad seal requests change nothing.
    let before = admin.json(Method::GET, "/v1/seals", None).await.unwrap()["seals"].as_array().unwrap().len();
    let mut bad_kind = seal_request("X", &[phone1.key_id()], now(), now() + 60);
    bad_kind["kind"] = json!("bogus");
    let mut bad_image = seal_request("X", &[phone1.key_id()], now(), now() + 60);
    bad_image["image"]["data"] = json!(B64.encode(b"not a png"));
    let backwards = seal_request("X", &[phone1.key_id()], now(), now() - 60);
    for req in [bad_kind, bad_image, backwards] {
        let resp = admin.call(Method::POST, "/v1/seals", Some(&req)).await.unwrap();
        assert_eq!((resp.status, code_of(&resp.body).as_deref()), (400, Some("bad_request")), "{:?}", resp.body);
    }
    let resp = admin
        .call(Method::POST, "/v1/seals", Some(&seal_request("X", &["k_nobody"], now(), now() + 60)))
        .await
        .unwrap();
    assert_eq!((resp.status, code_of(&resp.body).as_deref()), (404, Some("not_found")), "{:?}", resp.body);
    assert_eq!(admin.json(Method::GET, "/v1/seals", None).await.unwrap()["seals"].as_array().unwrap().len(), before);

    // Bad input: not a PDF, a page that does not exist, an unknown placement field.
    for data in [
        json!({ "pdf": B64.encode(b"hello"), "placement": {"page": 1, "x": 1, "y": 1} }),
        json!({ "pdf": B64.encode(&pdf), "placement": {"page": 9, "x": 1, "y": 1} }),
        json!({ "pdf": B64.encode(&pdf), "placement": {"page": 1, "x": 1, "y": 1, "rotate": 90} }),
    ] {
        let resp = gw
            .call(
                Method::POST,
                "/v1/tasks",
                Some(&json!({"kind": "pdf_seal", "display": {"title": "t"}, "data": data})),
            )
            .await
            .unwrap();
        assert_eq!((resp.status, code_of(&resp.body).as_deref()), (400, Some("bad_request")), "{:?}", resp.body);
    }
}

/// Is `pdf` clean for qpdf?
fn qpdf_clean(dir: &std::path::Path, name: &str, pdf: &[u8]) -> bool {
    let path = dir.join(name);
    std::fs::write(&path, pdf).unwrap();
    std::process::Command::new("qpdf").arg("--check").arg(&path).status().unwrap().success()
}

/// The seal chosen on the PC (拖动印章, API.md): a `pdf_seal` task with `placement:
/// "deferred"` is claimed (202), the gateway lists the seals the scanning key may use and
/// places one; co-signing before that is `task_state`; the phone's next claim signs the
/// chosen seal at the chosen place. Then three PDFs sealed in one batch with one PIN proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seal_is_chosen_on_the_pc_and_a_batch_seals_several_documents() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "111111").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let mut made = Vec::new();
    for name in ["Company seal", "Contract seal"] {
        let req = seal_request(name, &[phone.key_id()], now() - 60, now() + 86_400);
        made.push(admin.json(Method::POST, "/v1/seals", Some(&req)).await.unwrap()["seal_id"].clone());
    }
    let pdf = mcs_pdfseal::pdf::sample_document(2, false);
    let data = json!({ "pdf": B64.encode(&pdf), "placement": "deferred" });
    let created =
        mcs_client::gateway::create_task(&mut gw, "pdf_seal", "Seal the bid", data, None, None).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    let task_id = code.task_id.clone();
    let refused = mcs_client::gateway::task_seals(&mut gw, &task_id).await.unwrap_err();
    assert_eq!(refused.code(), Some("task_state"), "no seals to offer before the claim");

    let waiting = phone.scan(&mut app, &code).await.unwrap_err();
    assert!(matches!(waiting, mcs_client::Error::AwaitingPlacement), "{waiting}");
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let q1 = sm2_2p::point_to_hex(&q1);
    let op = sm2_2p::Transcript::TaskSign { task_id: task_id.clone(), q1: q1.clone() };
    let early = json!({"token": code.token, "q1": q1, "pin_proof": phone.proof(&op)});
    let resp = app.call(Method::POST, &format!("/v1/tasks/{task_id}/cosign"), Some(&early)).await.unwrap();
    assert_eq!((resp.status, &resp.body["error"]["code"]), (409, &json!("task_state")), "{}", resp.body);

    let offered = mcs_client::gateway::task_seals(&mut gw, &task_id).await.unwrap();
    let mut names: Vec<&str> = offered.items.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Company seal", "Contract seal"]);
    for s in &offered.items {
        let face = B64.decode(&s.image.data).unwrap();
        assert!(mcs_pdfseal::image::from_picture(&s.image.kind, &face).is_ok(), "a face the PC can draw");
    }
    let place = |seal: &Value, placement: Value| json!({ "seal_id": seal, "placement": placement });
    let path = format!("/v1/tasks/{task_id}/placement");
    for bad in [place(&made[1], json!("deferred")), place(&made[1], json!({"page": 0, "x": 1, "y": 1}))] {
        let resp = gw.call(Method::POST, &path, Some(&bad)).await.unwrap();
        assert_eq!((resp.status, &resp.body["error"]["code"]), (400, &json!("bad_request")), "{bad}");
    }
    let resp = gw.call(Method::POST, &path, Some(&place(&json!("s_nope"), json!({"page": 1, "x": 1, "y": 1})))).await;
    assert_eq!(resp.unwrap().status, 404);
    let placed = mcs_client::gateway::place(
        &mut gw,
        &task_id,
        made[1].as_str().unwrap(),
        json!({"page": 2, "x": 300, "y": 300}),
    )
    .await
    .unwrap();
    assert_eq!(placed["status"], "claimed");
    let again =
        mcs_client::gateway::place(&mut gw, &task_id, made[0].as_str().unwrap(), json!({"page": 1, "x": 1, "y": 1}));
    assert_eq!(again.await.unwrap_err().code(), Some("task_state"), "placed once");

    phone.scan(&mut app, &code).await.expect("sealed once placed");
    let out = mcs_client::gateway::result(&mut gw, &task_id, 10).await.unwrap();
    assert_eq!((&out["status"], &out["result"]["seal_id"]), (&json!("completed"), &made[1]), "{out}");
    let sealed = B64.decode(out["result"]["pdf"].as_str().unwrap()).unwrap();
    let report = verify_pdf(&mut admin, &sealed).await;
    assert_eq!(
        (&report[0]["valid"], &report[0]["seal"]["name"]),
        (&json!(true), &json!("Contract seal")),
        "{report:?}"
    );
    assert!(qpdf_clean(env.path(), "placed.pdf", &sealed));

    // A batch of three documents, one PIN proof.
    let mut codes = Vec::new();
    for n in 1..=3 {
        let data = json!({ "pdf": B64.encode(mcs_pdfseal::pdf::sample_document(n, false)), "seal_id": made[0], "placement": {"page": 1, "x": 200, "y": 200} });
        let created = mcs_client::gateway::create_task(&mut gw, "pdf_seal", "Batch", data, None, None).await.unwrap();
        codes.push(ScanCode::parse(created["qr"].as_str().unwrap()).unwrap());
    }
    let signed = phone.batch_sign(&mut app, &codes).await.unwrap();
    assert!(signed.iter().all(Result::is_ok), "{signed:?}");
    for (i, code) in codes.iter().enumerate() {
        let out = mcs_client::gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
        let sealed = B64.decode(out["result"]["pdf"].as_str().unwrap()).unwrap();
        let report = verify_pdf(&mut admin, &sealed).await;
        assert_eq!(report[0]["valid"], true, "batch item {i}: {report:?}");
        assert!(qpdf_clean(env.path(), &format!("batch-{i}.pdf"), &sealed));
    }
}

/// A new face (换章面): a new seal with a new esID and the same grants; the old seal is
/// revoked — `verify/seal` says so, and it no longer seals — while the new one seals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_face_makes_a_new_seal_with_the_grants_and_revokes_the_old() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (owner, _) = new_phone(&env, &daemon, "app1", "111111").await;
    let (clerk, mut app2) = new_phone(&env, &daemon, "app2", "222222").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let req = seal_request("Company seal", &[owner.key_id()], now() - 60, now() + 86_400);
    let old = admin.json(Method::POST, "/v1/seals", Some(&req)).await.unwrap();
    let old_id = old["seal_id"].as_str().unwrap().to_owned();
    let (from, to) = (rfc3339(now() - 60), rfc3339(now() + 3600));
    mcs_client::admin::grant_seal(&mut admin, &old_id, clerk.key_id(), &from, &to, false).await.unwrap();

    let face = mcs_api::SealImage {
        kind: "PNG".into(),
        data: B64.encode(mcs_pdfseal::image::demo_seal_png(64)),
        width_mm: 42,
        height_mm: 42,
    };
    let new = mcs_client::admin::change_seal_image(&mut admin, &old_id, face.clone()).await.unwrap();
    assert_ne!((&new["seal_id"], &new["es_id"]), (&old["seal_id"], &old["es_id"]));
    assert_eq!((&new["name"], &new["status"]), (&json!("Company seal"), &json!("active")));
    assert_eq!(new["grants"][0]["key_id"], json!(clerk.key_id()), "the grants are kept: {new}");
    let old_now = admin.json(Method::GET, &format!("/v1/seals/{old_id}"), None).await.unwrap();
    assert_eq!(old_now["status"], "revoked");
    let again = mcs_client::admin::change_seal_image(&mut admin, &old_id, face).await.unwrap_err();
    assert_eq!(again.code(), Some("conflict"), "a revoked seal gets no new face");

    let verdict = |seal: &Value| json!({ "seal": seal["seal"] });
    let v = admin.json(Method::POST, "/v1/verify/seal", Some(&verdict(&old))).await.unwrap();
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["errors"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().contains("revoked")), "{v}");
    let v = admin.json(Method::POST, "/v1/verify/seal", Some(&verdict(&new))).await.unwrap();
    assert_eq!(v["valid"], true, "{v}");

    let pdf = mcs_pdfseal::pdf::sample_document(1, false);
    let task = |seal: &Value| json!({ "pdf": B64.encode(&pdf), "seal_id": seal, "placement": {"page": 1, "x": 300, "y": 300} });
    let resp = gw
        .call(
            Method::POST,
            "/v1/tasks",
            Some(&json!({"kind": "pdf_seal", "display": {"title": "t"}, "data": task(&old["seal_id"])})),
        )
        .await
        .unwrap();
    assert_eq!((resp.status, &resp.body["error"]["code"]), (409, &json!("conflict")), "the old seal no longer seals");
    let sealed =
        seal_pdf(&mut gw, &mut app2, &clerk, &pdf, new["seal_id"].as_str(), json!({"page": 1, "x": 300, "y": 300}))
            .await;
    let report = verify_pdf(&mut admin, &sealed).await;
    assert_eq!((&report[0]["valid"], &report[0]["seal"]["es_id"]), (&json!(true), &new["es_id"]), "{report:?}");
}

/// Withdrawing a seal (撤章, `pdf_unseal`): the sealer confirms by scanning and gets the
/// document as it was before its last revision, byte for byte; another key may not; a
/// document whose last revision is not one of our seals is `conflict`; the audit log
/// records the withdrawal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seal_is_withdrawn_by_its_sealer_and_the_document_comes_back_byte_for_byte() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone1, mut app1) = new_phone(&env, &daemon, "app1", "111111").await;
    let (phone2, mut app2) = new_phone(&env, &daemon, "app2", "222222").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let req = seal_request("Company seal", &[phone1.key_id()], now() - 60, now() + 86_400);
    let seal = admin.json(Method::POST, "/v1/seals", Some(&req)).await.unwrap();
    let sid = seal["seal_id"].as_str();
    let pdf = mcs_pdfseal::pdf::sample_document(1, false);
    let once = seal_pdf(&mut gw, &mut app1, &phone1, &pdf, sid, json!({"page": 1, "x": 200, "y": 200})).await;
    let twice = seal_pdf(&mut gw, &mut app1, &phone1, &once, sid, json!({"page": 1, "x": 400, "y": 400})).await;

    let unseal =
        |doc: &[u8]| json!({"kind": "pdf_unseal", "display": {"title": "Withdraw"}, "data": {"pdf": B64.encode(doc)}});
    let created = gw.json(Method::POST, "/v1/tasks", Some(&unseal(&twice))).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    let view = mcs_client::phone::fetch_task(&mut app1, &code).await.unwrap();
    assert_eq!(view["kind"], "pdf_unseal");
    assert_eq!(view["data"]["pdf_sha256"], json!(hex::encode(sha2::Sha256::digest(&twice))), "{view}");
    let refused = phone2.scan(&mut app2, &code).await.unwrap_err();
    assert_eq!(refused.code(), Some("no_permission"), "another key may not withdraw it");
    assert_eq!(mcs_client::gateway::task(&mut gw, &code.task_id).await.unwrap()["status"], "pending");
    phone1.scan(&mut app1, &code).await.expect("the sealer withdraws");
    let out = mcs_client::gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    let back = B64.decode(out["result"]["pdf"].as_str().unwrap()).unwrap();
    assert!(back == once, "the document before its last revision, byte for byte");
    assert!(qpdf_clean(env.path(), "withdrawn.pdf", &back));
    assert_eq!(verify_pdf(&mut admin, &back).await[0]["valid"], true);
    let log = admin.json(Method::GET, &format!("/v1/audit?key_id={}", phone1.key_id()), None).await.unwrap();
    let withdrawn = log["entries"].as_array().unwrap().iter().any(|e| {
        e["event"] == "POST /v1/tasks/{id}/complete" && e["detail"]["kind"] == "pdf_unseal" && e["outcome"] == "ok"
    });
    assert!(withdrawn, "the audit log records the withdrawal: {log}");

    // Nothing of ours to withdraw: the unsealed original.
    let resp = gw.call(Method::POST, "/v1/tasks", Some(&unseal(&pdf))).await.unwrap();
    assert_eq!((resp.status, &resp.body["error"]["code"]), (409, &json!("conflict")), "{}", resp.body);
}

/// Template seals (API.md): mcsd draws the face from text — the round organisation seal
/// with a bottom line, and the square name seal. The pictures are written to
/// `target/seal-templates/e2e-*.png` for a person to look at; the seals verify and seal a
/// PDF like uploaded ones; bad text is `bad_request`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_seals_are_drawn_by_mcsd_and_seal_like_uploaded_ones() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "111111").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/seal-templates");
    std::fs::create_dir_all(&out_dir).unwrap();
    let request = |kind: &str, name: &str, image: Value| {
        let mut r = seal_request(name, &[phone.key_id()], now() - 60, now() + 86_400);
        r["kind"] = json!(kind);
        r["image"] = image;
        r
    };
    let cases = [
        ("official", "杭州示例建设有限公司", json!({"template": "org_round", "bottom_text": "合同专用章"}), 42, "org"),
        ("personal", "张三丰", json!({"template": "personal_name"}), 18, "name"),
    ];
    let mut made = Vec::new();
    for (kind, name, image, mm, file) in cases {
        let seal = admin.json(Method::POST, "/v1/seals", Some(&request(kind, name, image))).await.unwrap();
        let der = B64.decode(seal["seal"].as_str().unwrap()).unwrap();
        let view = mcs_pdfseal::seal::verify(&der).unwrap();
        assert_eq!((view.picture_type.as_str(), view.width_mm, view.height_mm), ("PNG", mm, mm), "{name}");
        assert!(mcs_pdfseal::image::from_picture("PNG", &view.picture).is_ok(), "a picture the PDF engine draws");
        std::fs::write(out_dir.join(format!("e2e-{file}.png")), &view.picture).unwrap();
        let v = admin.json(Method::POST, "/v1/verify/seal", Some(&json!({"seal": seal["seal"]}))).await.unwrap();
        assert_eq!(v["valid"], true, "{v}");
        made.push(seal);
    }
    let pdf = mcs_pdfseal::pdf::sample_document(1, false);
    let sealed =
        seal_pdf(&mut gw, &mut app, &phone, &pdf, made[0]["seal_id"].as_str(), json!({"page": 1, "x": 300, "y": 300}))
            .await;
    let report = verify_pdf(&mut admin, &sealed).await;
    assert_eq!(
        (&report[0]["valid"], &report[0]["seal"]["name"]),
        (&json!(true), &json!("杭州示例建设有限公司")),
        "{report:?}"
    );

    // The seal's usage record: the audit entries of its uses name it.
    let org = made[0]["seal_id"].as_str().unwrap();
    let log = admin.json(Method::GET, &format!("/v1/audit?seal_id={org}"), None).await.unwrap();
    let entries = log["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["detail"]["seal_id"] == json!(org)), "{log}");
    assert!(entries.iter().any(|e| e["event"] == "POST /v1/tasks/{id}/complete" && e["outcome"] == "ok"), "{log}");
    let other = made[1]["seal_id"].as_str().unwrap();
    let log = admin.json(Method::GET, &format!("/v1/audit?seal_id={other}"), None).await.unwrap();
    assert_eq!(log["entries"], json!([]), "the name seal was never used");

    for bad in [
        json!({"template": "org_round", "text": ""}),
        json!({"template": "personal_name", "text": "张"}),
        json!({"template": "star"}),
    ] {
        let resp =
            admin.call(Method::POST, "/v1/seals", Some(&request("personal", "张三", bad.clone()))).await.unwrap();
        assert_eq!((resp.status, &resp.body["error"]["code"]), (400, &json!("bad_request")), "{bad}: {}", resp.body);
    }
}
