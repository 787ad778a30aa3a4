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
