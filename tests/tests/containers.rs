//! GB/T 35275 containers (issue 17): a `sign` task with `format: "cms"` answers a detached
//! `SignedData` that OpenSSL reads (`cms -cmsout -print`, `asn1parse`) with the GB/T 35275
//! OIDs; the SM2 signature inside verifies with OpenSSL `pkeyutl` (SM2 ID explicit) over the
//! DER signed attributes; `POST /v1/verify/signature` accepts it and judges it at its
//! signature time-stamp.

use base64::Engine;
use hyper::Method;
use mcs_client::phone::ScanCode;
use mcs_e2e::*;
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn openssl_ok(args: &[&std::ffi::OsStr]) -> String {
    let (ok, out) = openssl(args);
    assert!(ok, "openssl {args:?}: {out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cms_sign_task_answers_a_gbt35275_signed_data_that_openssl_reads_and_verifies() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let message = "投标文件摘要: ZB-2026-014, 9,234,000 CNY".as_bytes();
    let data = json!({"message": B64.encode(message), "format": "cms"});
    let created = mcs_client::gateway::create_task(&mut gw, "sign", "Sign the bid", data, None, None).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.scan(&mut app, &code).await.unwrap();
    let out = mcs_client::gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    let container = B64.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
    let file = env.path().join("bid.p7s");
    std::fs::write(&file, &container).unwrap();

    let printed = openssl_ok(&[
        "cms".as_ref(),
        "-cmsout".as_ref(),
        "-print".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        file.as_os_str(),
    ]);
    assert!(printed.contains("1.2.156.10197.6.1.4.2.1"), "GB/T 35275 data: {printed}");
    assert!(printed.contains("eContent: <ABSENT>"), "detached: {printed}");
    let parsed_text =
        openssl_ok(&["asn1parse".as_ref(), "-inform".as_ref(), "DER".as_ref(), "-in".as_ref(), file.as_os_str()]);
    for oid in ["1.2.156.10197.6.1.4.2.1", "sm3", "SM2-with-SM3", "signingTime", "messageDigest"] {
        assert!(parsed_text.contains(oid), "{oid} in asn1parse: {parsed_text}");
    }
    // The SM2 signature over the DER signed attributes, by OpenSSL; the digest is SM3(message).
    let parsed = mcs_pdfseal::cms::parse(&container).unwrap();
    assert!(mcs_pdfseal::gbt35275::digests(&parsed, message));
    assert!(openssl_verifies(env.path(), phone.public_key(), &parsed.to_be_signed, &parsed.signature));
    assert!(parsed.timestamp_token.is_some(), "a signature time-stamp");
    assert!(parsed.certificates.len() >= 2, "the signer's certificate and its chain");

    // verify/signature takes it, by message; another message is a verdict, not an error.
    let check = |m: &[u8]| json!({"message": B64.encode(m), "signature": B64.encode(&container)});
    let v = gw.json(Method::POST, "/v1/verify/signature", Some(&check(message))).await.unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert!(v["timestamp"].is_string(), "judged at its time-stamp: {v}");
    let v = gw.json(Method::POST, "/v1/verify/signature", Some(&check(b"another bid"))).await.unwrap();
    assert_eq!(v["valid"], false, "{v}");
    // A bad format is refused at creation.
    let bad = json!({"message": B64.encode(message), "format": "pkcs7"});
    let err = mcs_client::gateway::create_task(&mut gw, "sign", "Sign", bad, None, None).await.unwrap_err();
    assert_eq!(err.code(), Some("bad_request"));
}

/// Run OpenSSL with `args` (strings) and insist it succeeds.
fn run(args: &[&str]) -> String {
    let os: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    openssl_ok(&os)
}

/// An envelope to `cert_pem`/`cert_der` made with OpenSSL alone: the content SM4-CBC by
/// `openssl enc`, the key SM2-encrypted to the certificate by `pkeyutl`; assembled here.
fn openssl_envelope(env: &DevEnv, cert_pem: &str, cert_der: &[u8], content: &str, with_content: bool) -> Vec<u8> {
    let p = |n: &str| env.path().join(n).to_str().unwrap().to_owned();
    let key_hex = hex::encode(rand16());
    let iv = rand16();
    let iv_hex = hex::encode(iv);
    run(&["enc", "-sm4-cbc", "-K", &key_hex, "-iv", &iv_hex, "-in", content, "-out", &p("content.enc")]);
    std::fs::write(p("cek.bin"), hex::decode(&key_hex).unwrap()).unwrap();
    run(&["pkeyutl", "-encrypt", "-certin", "-inkey", cert_pem, "-in", &p("cek.bin"), "-out", &p("cek.sm2")]);
    let encrypted_key = std::fs::read(p("cek.sm2")).unwrap();
    let encrypted_content = std::fs::read(p("content.enc")).unwrap();
    let body = with_content.then_some(encrypted_content.as_slice());
    std::fs::write(p("iv.hex"), &iv_hex).unwrap();
    mcs_pdfseal::gbt35275::envelope_from_parts(cert_der, &encrypted_key, &iv, body).unwrap()
}

fn rand16() -> [u8; 16] {
    let mut b = [0u8; 16];
    getrandom_fill(&mut b);
    b
}

fn getrandom_fill(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").unwrap().read_exact(b).unwrap();
}

/// The key's certificate as DER and as a PEM file.
async fn certificate_of(
    env: &DevEnv,
    admin: &mut mcs_client::Connection,
    key_id: &str,
    name: &str,
) -> (Vec<u8>, String) {
    let view = mcs_client::admin::get_key(admin, key_id).await.unwrap();
    let der = B64.decode(view["certificate"].as_str().unwrap()).unwrap();
    let (d, pem) = (env.path().join(format!("{name}.der")), env.path().join(format!("{name}.pem")));
    std::fs::write(&d, &der).unwrap();
    run(&["x509", "-inform", "DER", "-in", d.to_str().unwrap(), "-out", pem.to_str().unwrap()]);
    (der, pem.to_str().unwrap().to_owned())
}

/// A gateway's decrypt task of `envelope`, scanned by `phone`: the result.
async fn open_by_scan(
    gw: &mut mcs_client::Connection,
    app: &mut mcs_client::Connection,
    phone: &mcs_client::phone::Phone,
    envelope: &[u8],
) -> Result<serde_json::Value, mcs_client::Error> {
    let data = json!({"envelope": B64.encode(envelope)});
    let created = mcs_client::gateway::create_task(gw, "decrypt", "Open the bid", data, None, None).await?;
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.scan(app, &code).await?;
    mcs_client::gateway::result(gw, &code.task_id, 30).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digital_envelopes_made_by_openssl_open_by_scan_and_a_large_one_answers_its_content_key() {
    let env = DevEnv::new();
    // A 20 MB envelope with its content is a 27 MB request.
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    let cfg = cfg.replacen(
        "key_file = \"pki/server.key\"\n",
        "key_file = \"pki/server.key\"\nmax_body_bytes = 41943040\n",
        1,
    );
    std::fs::write(env.config(), cfg).unwrap();
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let (other, mut other_app) = new_phone(&env, &daemon, "app2", "654321").await;
    let mut gw = connect(&env, &daemon, "gateway").await;
    let (der, pem) = certificate_of(&env, &mut admin, phone.key_id(), "bidder").await;

    // A small bid file: the daemon opens the content with the key the phone recovered.
    let small = env.path().join("bid.txt");
    std::fs::write(&small, "投标报价: 9,234,000 CNY; 工期 180 天").unwrap();
    let envelope = openssl_envelope(&env, &pem, &der, small.to_str().unwrap(), true);
    let file = env.path().join("bid.p7e");
    std::fs::write(&file, &envelope).unwrap();
    let printed = run(&["cms", "-cmsout", "-print", "-inform", "DER", "-in", file.to_str().unwrap()]);
    assert!(printed.contains("1.2.156.10197.6.1.4.2.1") && printed.contains("1.2.156.10197.1.104.2"), "{printed}");
    let out = open_by_scan(&mut gw, &mut app, &phone, &envelope).await.unwrap();
    assert_eq!(out["status"], "completed", "{out}");
    let plain = B64.decode(out["result"]["plaintext"].as_str().expect("plaintext")).unwrap();
    assert_eq!(plain, std::fs::read(&small).unwrap());
    // Another key's phone: cert_mismatch.
    let err = open_by_scan(&mut gw, &mut other_app, &other, &envelope).await.unwrap_err();
    assert_eq!(err.code(), Some("cert_mismatch"), "{err}");

    // A 20 MB bid file: the content key comes back; OpenSSL decrypts the bulk with it.
    let big = env.path().join("big.bin");
    run(&["rand", "-out", big.to_str().unwrap(), "20000000"]);
    let envelope = openssl_envelope(&env, &pem, &der, big.to_str().unwrap(), true);
    let iv_hex = std::fs::read_to_string(env.path().join("iv.hex")).unwrap();
    let out = open_by_scan(&mut gw, &mut app, &phone, &envelope).await.unwrap();
    let key_hex = out["result"]["content_key"].as_str().expect("content_key").to_owned();
    assert!(out["result"].get("plaintext").is_none());
    let enc = env.path().join("content.enc");
    let dec = env.path().join("big.dec");
    run(&[
        "enc",
        "-d",
        "-sm4-cbc",
        "-K",
        &key_hex,
        "-iv",
        &iv_hex,
        "-in",
        enc.to_str().unwrap(),
        "-out",
        dec.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&dec).unwrap() == std::fs::read(&big).unwrap(), "the bulk decrypts with the content key");
    // Without its content, too.
    let envelope = openssl_envelope(&env, &pem, &der, small.to_str().unwrap(), false);
    let out = open_by_scan(&mut gw, &mut app, &phone, &envelope).await.unwrap();
    assert!(out["result"]["content_key"].is_string(), "{out}");

    // The daemon's own envelopes (encrypt tasks, format envelope) read the same way.
    let data = json!({"plaintext": B64.encode(b"tender notice"), "format": "envelope"});
    let created = mcs_client::gateway::create_task(&mut gw, "encrypt", "Encrypt", data, None, None).await.unwrap();
    let code = ScanCode::parse(created["qr"].as_str().unwrap()).unwrap();
    phone.scan(&mut app, &code).await.unwrap();
    let out = mcs_client::gateway::result(&mut gw, &code.task_id, 10).await.unwrap();
    let made = B64.decode(out["result"]["envelope"].as_str().expect("envelope")).unwrap();
    std::fs::write(&file, &made).unwrap();
    let asn1 = run(&["asn1parse", "-inform", "DER", "-in", file.to_str().unwrap()]);
    for oid in ["pkcs7-envelopedData", "1.2.156.10197.6.1.4.2.1", "sm4-cbc", "1.2.156.10197.1.301.3"] {
        assert!(asn1.contains(oid), "{oid}: {asn1}");
    }
    let out = open_by_scan(&mut gw, &mut app, &phone, &made).await.unwrap();
    assert_eq!(B64.decode(out["result"]["plaintext"].as_str().unwrap()).unwrap(), b"tender notice");
}
