//! The `mcs` command line, as an operator, a gateway and a phone would type it: a QR
//! login and sign by scan, a batch, and a refusal — results checked with OpenSSL.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use mcs_e2e::*;

fn mcs(env: &DevEnv, daemon: &Daemon, who: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("mcs"))
        .args(["--server", &format!("https://{}", daemon.api), "--pki"])
        .arg(env.pki())
        .args(["--as", who])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mcs {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.into_owned()))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn gateway_and_phone_on_the_command_line() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let state = env.path().join("phone.json");
    let enrolled = mcs(
        &env,
        &daemon,
        "admin",
        &["admin", "enroll", "--kind", "person", "--name", "Wang Wu", "--ca", "local", "--platform", "P-DEV-1"],
    );
    let (id, code) = (enrolled["enrollment_id"].as_str().unwrap(), enrolled["activation_code"].as_str().unwrap());
    mcs(
        &env,
        &daemon,
        "app1",
        &["app", "activate", "--state", path(&state), "--enrollment", id, "--code", code, "--pin", "135790"],
    );
    let pem = env.path().join("joint.pem");
    mcs(&env, &daemon, "app1", &["app", "pubkey", "--state", path(&state), "--out", path(&pem)]);
    let public = {
        let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        sm2_2p::point_from_hex(st["public_key"].as_str().unwrap()).unwrap()
    };

    for kind in ["login", "sign"] {
        let data = env.path().join(format!("{kind}.bin"));
        std::fs::write(&data, format!("{kind} data for the bid hall")).unwrap();
        let task = mcs(
            &env,
            &daemon,
            "gateway",
            &["gateway", "create-task", "--kind", kind, "--title", "scan me", "--data-file", path(&data)],
        );
        mcs(
            &env,
            &daemon,
            "app1",
            &["app", "scan", task["qr"].as_str().unwrap(), "--state", path(&state), "--pin", "135790"],
        );
        let out =
            mcs(&env, &daemon, "gateway", &["gateway", "wait", task["task_id"].as_str().unwrap(), "--wait", "10"]);
        assert_eq!(out["status"], "completed");
        let sig =
            base64::engine::general_purpose::STANDARD.decode(out["result"]["signature"].as_str().unwrap()).unwrap();
        assert!(openssl_verifies(env.path(), &public, &std::fs::read(&data).unwrap(), &sig), "{kind}");
    }

    // Batch: two QR codes, one PIN.
    let data = env.path().join("page.bin");
    std::fs::write(&data, "page").unwrap();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            mcs(
                &env,
                &daemon,
                "gateway",
                &["gateway", "create-task", "--kind", "sign", "--title", "page", "--data-file", path(&data)],
            )
        })
        .collect();
    let mut args = vec!["app", "batch", "--state", path(&state), "--pin", "135790"];
    args.extend(tasks.iter().map(|t| t["qr"].as_str().unwrap()));
    mcs(&env, &daemon, "app1", &args);
    for t in &tasks {
        let out = mcs(&env, &daemon, "gateway", &["gateway", "wait", t["task_id"].as_str().unwrap(), "--wait", "5"]);
        assert_eq!(out["status"], "completed");
    }

    // Decrypt by scan, plaintext written by the gateway; and a refusal.
    let secret = env.path().join("secret");
    std::fs::write(&secret, "opening price").unwrap();
    let ct = env.path().join("secret.sm2");
    let (ok, log) = openssl(&[
        "pkeyutl".as_ref(),
        "-encrypt".as_ref(),
        "-pubin".as_ref(),
        "-inkey".as_ref(),
        pem.as_os_str(),
        "-in".as_ref(),
        secret.as_os_str(),
        "-out".as_ref(),
        ct.as_os_str(),
    ]);
    assert!(ok, "{log}");
    let task = mcs(
        &env,
        &daemon,
        "gateway",
        &["gateway", "create-task", "--kind", "decrypt", "--title", "open bid", "--data-file", path(&ct)],
    );
    mcs(
        &env,
        &daemon,
        "app1",
        &["app", "scan", task["qr"].as_str().unwrap(), "--state", path(&state), "--pin", "135790"],
    );
    let out_file = env.path().join("opened");
    mcs(
        &env,
        &daemon,
        "gateway",
        &["gateway", "wait", task["task_id"].as_str().unwrap(), "--plaintext-out", path(&out_file)],
    );
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "opening price");

    let task = mcs(
        &env,
        &daemon,
        "gateway",
        &["gateway", "create-task", "--kind", "sign", "--title", "no", "--data-file", path(&data)],
    );
    mcs(&env, &daemon, "app1", &["app", "reject", task["qr"].as_str().unwrap(), "--reason", "wrong document"]);
    let out = mcs(&env, &daemon, "gateway", &["gateway", "wait", task["task_id"].as_str().unwrap(), "--wait", "5"]);
    assert_eq!(out["status"], "rejected");
}

#[test]
fn certificate_lifecycle_on_the_command_line() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let plugins = mcs(&env, &daemon, "admin", &["admin", "plugins"]);
    assert_eq!(plugins["plugins"][0]["name"], "local");
    assert_eq!(plugins["plugins"][0]["status"], "loaded");

    let state = env.path().join("phone.json");
    let enrolled = mcs(
        &env,
        &daemon,
        "admin",
        &["admin", "enroll", "--kind", "person", "--name", "Sun Qi", "--ca", "local", "--platform", "P-DEV-1"],
    );
    let (id, code) = (enrolled["enrollment_id"].as_str().unwrap(), enrolled["activation_code"].as_str().unwrap());
    mcs(
        &env,
        &daemon,
        "app1",
        &["app", "activate", "--state", path(&state), "--enrollment", id, "--code", code, "--pin", "135790"],
    );

    // The phone's certificate and chain as PEM; OpenSSL verifies the leaf against the CA.
    let chain = env.path().join("chain.pem");
    mcs(&env, &daemon, "app1", &["app", "certificate", "--state", path(&state), "--out", path(&chain)]);
    let text = std::fs::read_to_string(&chain).unwrap();
    let blocks: Vec<&str> = text.split_inclusive("-----END CERTIFICATE-----\n").collect();
    assert_eq!(blocks.len(), 2, "leaf and CA: {text}");
    let (leaf, ca) = (env.path().join("leaf.pem"), env.path().join("ca.pem"));
    std::fs::write(&leaf, blocks[0]).unwrap();
    std::fs::write(&ca, blocks[1]).unwrap();
    let (ok, out) = openssl_chain_verifies(&ca, &leaf);
    assert!(ok, "{out}");

    let key_id = {
        let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        st["key_id"].as_str().unwrap().to_owned()
    };
    let key = mcs(&env, &daemon, "admin", &["admin", "key", &key_id]);
    let serial = key["certificate_serial"].as_str().unwrap();
    assert_eq!(mcs(&env, &daemon, "admin", &["admin", "cert-status", "local", serial])["status"], "good");

    // Reissue (lost phone): the old key is suspended at once; the new phone activates.
    let successor = mcs(&env, &daemon, "admin", &["admin", "successor", &key_id, "--reason", "reissue"]);
    assert_eq!(successor["predecessor"], key_id.as_str());
    assert_eq!(mcs(&env, &daemon, "admin", &["admin", "key", &key_id])["status"], "suspended");
    let state2 = env.path().join("phone2.json");
    let (id2, code2) = (successor["enrollment_id"].as_str().unwrap(), successor["activation_code"].as_str().unwrap());
    mcs(
        &env,
        &daemon,
        "app2",
        &["app", "activate", "--state", path(&state2), "--enrollment", id2, "--code", code2, "--pin", "246802"],
    );
    // The suspended key keeps its certificate until the operator revokes it.
    assert_eq!(mcs(&env, &daemon, "admin", &["admin", "key", &key_id])["status"], "suspended");
    assert_eq!(mcs(&env, &daemon, "admin", &["admin", "cert-status", "local", serial])["status"], "good");
    mcs(&env, &daemon, "admin", &["admin", "revoke", &key_id, "--reason", "key_compromise"]);
    assert_eq!(mcs(&env, &daemon, "admin", &["admin", "cert-status", "local", serial])["status"], "revoked");

    // The CRL lists the old serial.
    let crl = env.path().join("local.crl");
    mcs(&env, &daemon, "admin", &["admin", "crl", "local", "--out", path(&crl)]);
    let (ok, text) = openssl(&[
        "crl".as_ref(),
        "-inform".as_ref(),
        "DER".as_ref(),
        "-in".as_ref(),
        crl.as_os_str(),
        "-noout".as_ref(),
        "-text".as_ref(),
    ]);
    assert!(ok && text.to_ascii_lowercase().replace(':', "").contains(serial), "{text}");

    // A change without a subject is refused with the API's code, and the CLI says so.
    let out = Command::new(bin("mcs"))
        .args(["--server", &format!("https://{}", daemon.api), "--pki"])
        .arg(env.pki())
        .args(["--as", "admin", "admin", "successor", &key_id, "--reason", "change", "--name", "No Kind"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kind and --name"));
}

#[test]
fn sealing_a_pdf_on_the_command_line() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let dir = env.path();
    let state = dir.join("phone.json");
    let enrolled = mcs(
        &env,
        &daemon,
        "admin",
        &["admin", "enroll", "--kind", "person", "--name", "Zhou Ba", "--ca", "local", "--platform", "P-DEV-1"],
    );
    let (id, code) = (enrolled["enrollment_id"].as_str().unwrap(), enrolled["activation_code"].as_str().unwrap());
    mcs(
        &env,
        &daemon,
        "app1",
        &["app", "activate", "--state", path(&state), "--enrollment", id, "--code", code, "--pin", "135790"],
    );
    let key_id = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&state).unwrap()).unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let image = dir.join("seal.png");
    std::fs::write(&image, mcs_pdfseal::image::demo_seal_png(64)).unwrap();
    let seal = mcs(
        &env,
        &daemon,
        "admin",
        &[
            "admin",
            "seal-create",
            "--kind",
            "personal",
            "--name",
            "Zhou Ba",
            "--owner",
            r#"{"name":"Zhou Ba"}"#,
            "--image",
            path(&image),
            "--signer",
            &key_id,
            "--valid-days",
            "30",
        ],
    );
    let seal_file = dir.join("seal.der");
    std::fs::write(
        &seal_file,
        base64::engine::general_purpose::STANDARD.decode(seal["seal"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(mcs(&env, &daemon, "gateway", &["verify-seal", path(&seal_file)])["valid"], true);
    let listed = mcs(&env, &daemon, "admin", &["admin", "seals", "--key-id", &key_id]);
    assert_eq!(listed["seals"][0]["seal_id"], seal["seal_id"]);

    let bid = dir.join("bid.pdf");
    std::fs::write(&bid, mcs_pdfseal::pdf::sample_document(2, false)).unwrap();
    let task = mcs(
        &env,
        &daemon,
        "gateway",
        &["gateway", "seal-pdf", "--pdf", path(&bid), "--placement", r#"{"keyword":"Bidder seal here"}"#],
    );
    mcs(
        &env,
        &daemon,
        "app1",
        &["app", "scan", task["qr"].as_str().unwrap(), "--state", path(&state), "--pin", "135790"],
    );
    let sealed = dir.join("sealed.pdf");
    let out = mcs(
        &env,
        &daemon,
        "gateway",
        &["gateway", "wait", task["task_id"].as_str().unwrap(), "--wait", "10", "--pdf-out", path(&sealed)],
    );
    assert_eq!(out["status"], "completed");
    let report = mcs(&env, &daemon, "app1", &["verify-pdf", path(&sealed)]);
    assert_eq!(report["signatures"][0]["valid"], true, "{report}");
    assert_eq!(report["signatures"][0]["seal"]["name"], "Zhou Ba");

    // A changed byte: verify-pdf says so and exits 1.
    let mut bytes = std::fs::read(&sealed).unwrap();
    let t = bytes.windows(6).position(|w| w == b"Tender").unwrap();
    bytes[t] = b't';
    std::fs::write(&sealed, bytes).unwrap();
    let out = Command::new(bin("mcs"))
        .args(["--server", &format!("https://{}", daemon.api), "--pki"])
        .arg(env.pki())
        .args(["--as", "admin", "verify-pdf", path(&sealed)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("document digest mismatch"));
}
