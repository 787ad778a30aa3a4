//! The operator's `mcs`: the audit log with its filters, roaming grants given and withdrawn,
//! `--output table`, the enum options' checked values and the documented exit codes.

use std::process::{Command, Output};

use mcs_e2e::*;

fn mcs_raw(env: &DevEnv, daemon: &Daemon, who: &str, args: &[&str]) -> Output {
    Command::new(bin("mcs"))
        .args(["--server", &format!("https://{}", daemon.api), "--pki"])
        .arg(env.pki())
        .args(["--as", who])
        .args(args)
        .env_remove("MCS_OUTPUT")
        .output()
        .unwrap()
}

fn mcs(env: &DevEnv, daemon: &Daemon, who: &str, args: &[&str]) -> serde_json::Value {
    let out = mcs_raw(env, daemon, who, args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mcs {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("mcs {args:?} did not print JSON ({e}): {text}"))
}

/// An active key on P-DEV-1, through the command line.
fn active_key(env: &DevEnv, daemon: &Daemon) -> String {
    let enrolled = mcs(
        env,
        daemon,
        "admin",
        &[
            "admin",
            "enroll",
            "--kind",
            "org",
            "--name",
            "河北建工集团",
            "--org-name",
            "河北建工集团有限公司",
            "--credit-code",
            "91330100MA2B3C4D5E",
            "--ca",
            "local",
            "--platform",
            "P-DEV-1",
        ],
    );
    let state = env.path().join("phone.json");
    let out = mcs_raw(
        env,
        daemon,
        "app1",
        &[
            "app",
            "activate",
            "--state",
            state.to_str().unwrap(),
            "--enrollment",
            enrolled["enrollment_id"].as_str().unwrap(),
            "--code",
            enrolled["activation_code"].as_str().unwrap(),
            "--pin",
            "135790",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    st["key_id"].as_str().unwrap().to_owned()
}

fn platforms(key: &serde_json::Value) -> Vec<String> {
    key["platforms"].as_array().unwrap().iter().map(|p| p["platform"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn roaming_grants_and_the_audit_log_from_the_command_line() {
    let env = DevEnv::new();
    let daemon = Daemon::start(&env);
    let key = active_key(&env, &daemon);

    // Grant P-DEV-2 for a day: the key view answered says so, and the gateway of P-DEV-2
    // can now make tasks for it (it could not before: checked by the daemon's own tests).
    let granted =
        mcs(&env, &daemon, "admin", &["admin", "platform", "grant", &key, "--platform", "P-DEV-2", "--mode", "day"]);
    assert_eq!(granted["key_id"], key.as_str());
    assert!(platforms(&granted).contains(&"P-DEV-2".to_owned()), "{granted}");
    let until = granted["platforms"].as_array().unwrap().iter().find(|p| p["platform"] == "P-DEV-2").unwrap();
    assert!(until["until"].is_string(), "a day grant has an end: {granted}");

    // `--mode until` needs `--until`; a wrong mode is refused by the CLI with the choices
    // (exit 2), and neither changes the key.
    let out =
        mcs_raw(&env, &daemon, "admin", &["admin", "platform", "grant", &key, "--platform", "P-X", "--mode", "until"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        mcs_raw(&env, &daemon, "admin", &["admin", "platform", "grant", &key, "--platform", "P-X", "--mode", "week"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("once") && err.contains("until"), "the choices are listed: {err}");
    // The daemon's own refusal (a time in the past) is exit 1 with its error code.
    let out = mcs_raw(
        &env,
        &daemon,
        "admin",
        &[
            "admin",
            "platform",
            "grant",
            &key,
            "--platform",
            "P-X",
            "--mode",
            "until",
            "--until",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_request"), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = mcs(&env, &daemon, "admin", &["admin", "key", &key]);
    assert!(!platforms(&shown).contains(&"P-X".to_owned()), "{shown}");

    // Withdraw it; withdrawing again is the daemon's not_found (exit 1).
    let out = mcs_raw(&env, &daemon, "admin", &["admin", "platform", "withdraw", &key, "P-DEV-2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = mcs(&env, &daemon, "admin", &["admin", "key", &key]);
    assert!(!platforms(&shown).contains(&"P-DEV-2".to_owned()), "{shown}");
    let out = mcs_raw(&env, &daemon, "admin", &["admin", "platform", "withdraw", &key, "P-DEV-2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));

    // The audit log, filtered to the key: every entry is the key's, in order; --since and
    // --limit page through it.
    let log = mcs(&env, &daemon, "admin", &["admin", "audit", "--key-id", &key]);
    let entries = log["entries"].as_array().unwrap();
    assert!(entries.len() >= 2, "activation and the grants are logged: {log}");
    assert!(entries.iter().all(|e| e["key_id"] == key.as_str()), "{log}");
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let first = mcs(&env, &daemon, "admin", &["admin", "audit", "--key-id", &key, "--limit", "1"]);
    assert_eq!(first["entries"].as_array().unwrap().len(), 1);
    assert_eq!(first["entries"][0]["seq"], seqs[0]);
    let rest = mcs(&env, &daemon, "admin", &["admin", "audit", "--key-id", &key, "--since", &seqs[1].to_string()]);
    let rest: Vec<u64> = rest["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(rest, seqs[1..]);
    let other = mcs(&env, &daemon, "admin", &["admin", "audit", "--platform", "P-NOBODY"]);
    assert_eq!(other["entries"].as_array().unwrap().len(), 0);
    // The same filter from the platform's gateway is bounded to its platform by the daemon.
    let gw = mcs(&env, &daemon, "gateway", &["admin", "audit"]);
    assert!(gw["entries"].as_array().unwrap().iter().all(|e| e["platform"] == "P-DEV-1"), "{gw}");

    // --output table (or MCS_OUTPUT=table): one row per entry under a header of the fields.
    let out = mcs_raw(&env, &daemon, "admin", &["--output", "table", "admin", "audit", "--key-id", &key]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SEQ") && lines[0].contains("EVENT") && lines[0].contains("KEY_ID"), "{table}");
    assert_eq!(lines.len(), 1 + seqs.len(), "{table}");
    assert!(lines[1..].iter().all(|l| l.contains(&key)), "{table}");
    let out = Command::new(bin("mcs"))
        .args(["--server", &format!("https://{}", daemon.api), "--pki"])
        .arg(env.pki())
        .args(["--as", "admin", "admin", "key", &key])
        .env("MCS_OUTPUT", "table")
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.lines().any(|l| l.starts_with("key_id") && l.ends_with(&key)), "{table}");
    assert!(table.lines().any(|l| l.starts_with("status") && l.ends_with("active")), "{table}");
}

#[test]
fn help_names_every_argument_and_the_exit_codes() {
    let help = |args: &[&str]| {
        let out = Command::new(bin("mcs")).args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&["--help"]);
    assert!(top.contains("Exit status:") && top.contains("2  usage"), "{top}");
    assert!(top.contains("--output <OUTPUT>") && top.contains("[possible values: json, table]"), "{top}");
    let grant = help(&["admin", "platform", "grant", "--help"]);
    for needle in ["<KEY>", "--platform", "--mode", "once", "until", "--until <TIME>", "How long the grant lasts"] {
        assert!(grant.contains(needle), "{needle}: {grant}");
    }
    let audit = help(&["admin", "audit", "--help"]);
    for needle in ["--key-id", "--platform", "--seal-id", "--since <SEQ>", "--limit <N>"] {
        assert!(audit.contains(needle), "{needle}: {audit}");
    }
    // A usage error is exit 2 (clap's), as documented.
    let out = Command::new(bin("mcs")).args(["admin", "keys", "--status", "lost"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let mcsd = Command::new(bin("mcsd")).arg("--help").output().unwrap();
    let text = String::from_utf8(mcsd.stdout).unwrap();
    assert!(text.contains("78  configuration error") && text.contains("/run/mcsd/control.sock"), "{text}");
}
