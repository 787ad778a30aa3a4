//! The operator's experience (issue 18): configuration errors exit 78 (EX_CONFIG, which
//! the unit's `RestartPreventExitStatus` names) from `check-config` and from `run`; logs
//! written to a pipe carry no ANSI colour codes; with the shipped `pin_credential` an
//! operator's shell runs HSM commands with `--pin-file`. `check-config` is a preflight: each
//! of five broken configs `run` would trip over gives a `[fail]` line naming the setting.

use std::process::Command;

use mcs_e2e::*;

fn check_config(env: &DevEnv) -> (Option<i32>, String) {
    check_config_with(env, &[])
}

fn check_config_with(env: &DevEnv, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin("mcsd"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .env_remove("RUST_LOG")
        .args(["check-config", "--config"])
        .arg(env.config())
        .args(extra)
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn configuration_errors_exit_78_and_logs_to_a_pipe_have_no_colour() {
    let env = DevEnv::new();
    let (code, out) = check_config(&env);
    assert_eq!(code, Some(0), "the dev config passes: {out}");
    let good = std::fs::read_to_string(env.config()).unwrap();

    // A setting out of range: check-config and run both exit 78.
    std::fs::write(env.config(), format!("{good}\n[keys]\npin_max_attempts = 0\n")).unwrap();
    let (code, out) = check_config(&env);
    assert_eq!(code, Some(78), "{out}");
    let (code, log) = Daemon::start_refused(&env);
    assert_eq!(code, Some(78), "{log}");

    // A certificate that is not there: run exits 78 (the TLS material is configuration).
    std::fs::write(env.config(), good.replacen("cert_file = \"pki/server.pem\"", "cert_file = \"pki/missing.pem\"", 1))
        .unwrap();
    let (code, log) = Daemon::start_refused(&env);
    assert_eq!(code, Some(78), "{log}");
    assert!(!log.contains('\u{1b}'), "no ANSI escape codes in a pipe: {log:?}");
}

#[test]
fn a_shell_without_systemd_credentials_gives_the_pin_with_pin_file() {
    let env = DevEnv::new();
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    std::fs::write(env.config(), cfg.replacen("pin_file = \"hsm-pin\"", "pin_credential = \"hsm-pin\"", 1)).unwrap();
    let pin = env.config().parent().unwrap().join("hsm-pin");
    let init = |extra: &[&std::ffi::OsStr]| {
        let out = Command::new(bin("mcsd"))
            .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
            .env_remove("CREDENTIALS_DIRECTORY")
            .args(extra)
            .args(["hsm", "init", "--config"])
            .arg(env.config())
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (code, out) = init(&[]);
    assert_eq!(code, Some(69), "{out}");
    assert!(out.contains("CREDENTIALS_DIRECTORY"), "{out}");
    let (code, out) = init(&["--pin-file".as_ref(), pin.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already present"), "{out}");
}

/// The five configs the issue found `check-config` calling "ok": each now fails, naming the
/// setting, with exit 78; the dev config passes every check; `--format json` parses; a
/// daemon holding the store is reported, not failed; `--offline` skips the HSM and store.
#[test]
fn check_config_is_a_preflight_of_what_run_needs() {
    let env = DevEnv::new();
    let good = std::fs::read_to_string(env.config()).unwrap();
    let (code, out) = check_config(&env);
    assert_eq!(code, Some(0), "{out}");
    for part in [
        "[ ok ] api.cert_file",
        "[ ok ] hsm.pin_file",
        "[ ok ] hsm.token_label",
        "[ ok ] hsm.kek_label",
        "[ ok ] store.path",
        "[ ok ] plugins.local",
    ] {
        assert!(out.contains(part), "{part} missing:\n{out}");
    }
    assert!(!out.contains("[fail]"), "{out}");

    let library = good.lines().find(|l| l.starts_with("library = ")).unwrap().to_owned();
    let broken = [
        (
            "missing certificate",
            good.replacen("cert_file = \"pki/server.pem\"", "cert_file = \"pki/missing.pem\"", 1),
            "[fail] api.cert_file",
        ),
        (
            "missing PIN file",
            good.replacen("pin_file = \"hsm-pin\"", "pin_file = \"no-such-pin\"", 1),
            "[fail] hsm.pin_file",
        ),
        (
            "wrong token label",
            good.replacen("token_label = \"mcsd\"", "token_label = \"nosuchtoken\"", 1),
            "[fail] hsm.token_label",
        ),
        (
            "missing adapter",
            good.replacen(&library, "library = \"/nonexistent/libgone.so\"", 1),
            "[fail] plugins.local.library",
        ),
        ("invalid log filter", format!("{good}\n[log]\nlevel = \"mcsd=loud,,=\"\n"), "[fail] log.level"),
    ];
    for (what, text, want) in broken {
        std::fs::write(env.config(), &text).unwrap();
        let (code, out) = check_config(&env);
        assert_eq!(code, Some(78), "{what}: {out}");
        assert!(out.contains(want), "{what}: {want} missing:\n{out}");
        let (code, out) = check_config_with(&env, &["--format", "json"]);
        assert_eq!(code, Some(78), "{what}: {out}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: {e}: {out}"));
        assert_eq!(report["ok"], false);
        let setting = want.trim_start_matches("[fail] ");
        assert!(
            report["checks"].as_array().unwrap().iter().any(|c| c["status"] == "fail" && c["setting"] == setting),
            "{what}: {report}"
        );
    }
    std::fs::write(env.config(), &good).unwrap();

    // JSON of the good config: every check ok.
    let (code, out) = check_config_with(&env, &["--format", "json"]);
    assert_eq!(code, Some(0), "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert!(report["checks"].as_array().unwrap().iter().all(|c| c["status"] == "ok"), "{report}");

    // Offline: the HSM and the store are skipped, so a wrong token label passes.
    std::fs::write(env.config(), good.replacen("token_label = \"mcsd\"", "token_label = \"nosuchtoken\"", 1)).unwrap();
    let (code, out) = check_config_with(&env, &["--offline"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("[skip] hsm") && out.contains("[skip] store"), "{out}");
    std::fs::write(env.config(), &good).unwrap();

    // While the daemon holds the store: a warning naming it, not a failure.
    let daemon = Daemon::start(&env);
    let (code, out) = check_config(&env);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("[warn] store.path") && out.contains("running daemon"), "{out}");
    drop(daemon);
}

fn mcsd_cmd(env: &DevEnv, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin("mcsd"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .args(args)
        .arg("--config")
        .arg(env.config())
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `mcsd drain` for a rolling restart: readiness goes 503 `draining` (and `mcsd_ready` 0)
/// at once, a request in flight finishes, new requests are still served, and `--undo`
/// makes the node ready again. Without a daemon the command says so (69).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_takes_the_node_out_of_readiness_and_lets_requests_finish() {
    let env = DevEnv::new();
    assert_eq!(mcsd_cmd(&env, &["drain"]).0, Some(69), "no daemon to drain");
    let daemon = Daemon::start(&env);
    let (phone, mut app) = new_phone(&env, &daemon, "app1", "123456").await;
    let cursor = mcs_client::inbox::read(&mut app, None, 0).await.unwrap().cursor;

    // A long poll in flight across the drain.
    let mut poller = connect(&env, &daemon, "app1").await;
    let started = std::time::Instant::now();
    let in_flight =
        tokio::spawn(async move { mcs_client::inbox::read(&mut poller, Some(cursor.as_str()), 2).await.map(|_| ()) });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, out) = mcsd_cmd(&env, &["drain"]);
    assert_eq!((code, out.trim()), (Some(0), "draining"));
    let (status, body) = daemon.health_get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"], "draining");
    assert_eq!(daemon.metric("mcsd_ready"), 0.0);
    in_flight.await.unwrap().expect("the request in flight finishes");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "it ran its course");
    // New requests are still served while draining.
    let sig = phone.sign_message(&mut app, b"while draining", mcs_client::phone::SignMode::Canonical).await.unwrap();
    assert!(openssl_verifies(env.path(), phone.public_key(), b"while draining", &sig.to_der()));

    let (code, out) = mcsd_cmd(&env, &["drain", "--undo"]);
    assert_eq!((code, out.trim()), (Some(0), "serving"));
    assert_eq!(daemon.health_get("/readyz").0, 200);
    assert_eq!(daemon.metric("mcsd_ready"), 1.0);
    let log = audit_events(&env, &daemon).await;
    assert!(log.contains(&"drain".to_owned()) && log.contains(&"undrain".to_owned()), "{log:?}");
}

async fn audit_events(env: &DevEnv, daemon: &Daemon) -> Vec<String> {
    let mut admin = connect(env, daemon, "admin").await;
    let log = admin.json(hyper::Method::GET, "/v1/audit?limit=10000", None).await.unwrap();
    log["entries"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect()
}
