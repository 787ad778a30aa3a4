//! The CA adapter host against adapters that misbehave: one that panics, one that hangs,
//! one that answers garbage, one built for another ABI, and a missing library. The daemon
//! stays up, reports each with the right code, and the good adapter keeps working — its
//! signatures (made by the host for the adapter) verify with OpenSSL.

use base64::Engine;
use hyper::Method;
use mcs_e2e::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn plugin(name: &str, library: &std::path::Path, behaviour: &str, extra: &str) -> String {
    format!(
        "\n[[plugins]]\nname = \"{name}\"\nlibrary = \"{}\"\n{extra}config = {{ behaviour = \"{behaviour}\" }}\n",
        library.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_adapters_are_contained_and_the_good_one_keeps_working() {
    let env = DevEnv::new();
    let adapter = bin("libmcs_test_adapter.so");
    let mut extra = String::new();
    extra += &plugin("good", &adapter, "ok", "");
    extra += &plugin("panicky", &adapter, "panic", "");
    extra += &plugin("stuck", &adapter, "hang", "timeout_ms = 500\nmax_concurrency = 1\n");
    extra += &plugin("noisy", &adapter, "garbage", "");
    extra += &plugin("future", &bin("libmcs_test_adapter_future.so"), "ok", "");
    extra += &plugin("absent", &env.path().join("no-such-adapter.so"), "ok", "");
    env.append_config(&extra);
    let daemon = Daemon::start(&env);
    let mut admin = connect(&env, &daemon, "admin").await;

    let list = admin.json(Method::GET, "/v1/plugins", None).await.unwrap();
    let by_name = |n: &str| list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == n).cloned().unwrap();
    for name in ["good", "panicky", "stuck", "noisy"] {
        assert_eq!(by_name(name)["status"], "loaded", "{name}: {list}");
    }
    assert_eq!(by_name("good")["abi"], 2);
    assert_eq!(by_name("good")["algorithms"], serde_json::json!(["SM2"]));
    let future = by_name("future");
    assert_eq!(future["status"], "failed");
    assert!(
        future["error"].as_str().unwrap().contains("built for plugin ABI 4294967295, this daemon speaks ABI 1 to 2"),
        "{future}"
    );
    assert_eq!(by_name("absent")["status"], "failed");
    // A failed adapter degrades the node without taking it out of service: keys still sign.
    let (status, body) = daemon.health_get("/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["plugins"]["failed"], serde_json::json!(["absent", "future"]), "{ready}");

    let crl = |name: &str| format!("/v1/plugins/{name}/crl");
    let expect = |resp: mcs_client::transport::Response, status: u16, code: &str| {
        assert_eq!((resp.status, resp.body["error"]["code"].as_str()), (status, Some(code)), "{:?}", resp.body);
    };
    expect(admin.call(Method::GET, &crl("panicky"), None).await.unwrap(), 502, "plugin_error");
    expect(admin.call(Method::GET, &crl("noisy"), None).await.unwrap(), 502, "plugin_error");
    expect(admin.call(Method::GET, &crl("stuck"), None).await.unwrap(), 504, "plugin_timeout");
    // Still stuck: the next call fails fast instead of piling up threads.
    let started = std::time::Instant::now();
    expect(admin.call(Method::GET, &crl("stuck"), None).await.unwrap(), 504, "plugin_timeout");
    assert!(started.elapsed() < std::time::Duration::from_millis(400), "busy adapter did not fail fast");
    expect(admin.call(Method::GET, &crl("future"), None).await.unwrap(), 404, "not_found");
    expect(admin.call(Method::GET, "/v1/plugins/good/status?serial=zz", None).await.unwrap(), 400, "bad_request");

    // The good adapter works, and the daemon signed for it with a daemon-held SM2 key.
    let answer = admin.json(Method::GET, &crl("good"), None).await.unwrap();
    let sig = B64.decode(answer["crl"].as_str().unwrap()).unwrap();
    let status = admin.json(Method::GET, "/v1/plugins/good/status?serial=0a1b", None).await.unwrap();
    assert_eq!(status["status"], "unknown");
    // The test adapter also returns the signer's SPKI: check the signature with OpenSSL.
    let spki = B64.decode(answer["signer"].as_str().unwrap()).unwrap();
    let pem = env.path().join("signer.pem");
    std::fs::write(&pem, format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(&spki)))
        .unwrap();
    let (msg, sigf) = (env.path().join("m"), env.path().join("s"));
    std::fs::write(&msg, b"test-crl").unwrap();
    std::fs::write(&sigf, &sig).unwrap();
    let (ok, text) = openssl(&[
        "pkeyutl".as_ref(),
        "-verify".as_ref(),
        "-pubin".as_ref(),
        "-inkey".as_ref(),
        pem.as_os_str(),
        "-rawin".as_ref(),
        "-in".as_ref(),
        msg.as_os_str(),
        "-sigfile".as_ref(),
        sigf.as_os_str(),
        "-digest".as_ref(),
        "sm3".as_ref(),
        "-pkeyopt".as_ref(),
        "distid:1234567812345678".as_ref(),
    ]);
    assert!(ok, "OpenSSL rejects the host's signature: {text}");

    // Only admins list adapters; the daemon itself is unharmed.
    let mut gw = connect(&env, &daemon, "gateway").await;
    assert_eq!(
        gw.json(Method::GET, &crl("good"), None).await.unwrap()["signer"],
        answer["signer"],
        "one key, created once"
    );
    expect(gw.call(Method::GET, "/v1/plugins", None).await.unwrap(), 403, "forbidden");
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let sig = phone.sign_message(&mut app, b"still serving", mcs_client::phone::SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), b"still serving", &sig.to_der()));
    let (status, log) = daemon.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("CA adapter NOT loaded"), "start-up did not report the failed adapters");
}
