//! The operator's experience (issue 18): configuration errors exit 78 (EX_CONFIG, which
//! the unit's `RestartPreventExitStatus` names) from `check-config` and from `run`; logs
//! written to a pipe carry no ANSI colour codes; with the shipped `pin_credential` an
//! operator's shell runs HSM commands with `--pin-file`.

use std::process::Command;

use mcs_e2e::*;

fn check_config(env: &DevEnv) -> (Option<i32>, String) {
    let out = Command::new(bin("mcsd"))
        .env("SOFTHSM2_CONF", env.path().join("softhsm2.conf"))
        .args(["check-config", "--config"])
        .arg(env.config())
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
