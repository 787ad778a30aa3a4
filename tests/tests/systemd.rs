//! Running under systemd: the unit file verifies; the notify protocol (READY, watchdog
//! pings, RELOADING/READY on SIGHUP, STOPPING) through `NOTIFY_SOCKET`; and SIGHUP with a
//! renewed server certificate: new handshakes get it, an open connection keeps working.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::Method;
use mcs_e2e::*;

#[test]
fn the_unit_file_verifies() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd/mcsd.service")).unwrap();
    for needle in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=",
        "RestartPreventExitStatus=78 65",
        "LoadCredential=",
        "StateDirectory=",
        "User=mcsd",
        "LimitNOFILE=",
        "LimitCORE=0",
        "UMask=0077",
    ] {
        assert!(unit.contains(needle), "unit lacks {needle}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcsd.service");
    std::fs::write(&path, unit.replace("/usr/bin/mcsd", bin("mcsd").to_str().unwrap())).unwrap();
    // `Documentation=man:` pages must exist: the ones the package installs, generated here.
    let man = dir.path().join("man");
    for (cmd, section) in [("mcsd", "man8"), ("mcs", "man1")] {
        let st = Command::new(bin(cmd)).arg("generate-assets").arg(dir.path()).status().unwrap();
        assert!(st.success());
        std::fs::create_dir_all(man.join(section)).unwrap();
        for page in std::fs::read_dir(dir.path().join("man")).unwrap().flatten() {
            if page.path().is_file() {
                std::fs::rename(page.path(), man.join(section).join(page.file_name())).unwrap();
            }
        }
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .env("MANPATH", &man)
        .arg(&path)
        .output()
        .expect("systemd-analyze (cargo xtask test installs systemd)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify: {text}");
    assert!(!text.contains("mcsd.service:"), "warnings about the unit: {text}");

    // Hardening: systemd's own exposure score (0 = locked down, 10 = exposed).
    let out = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for mcsd.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score: {text}"));
    assert!(score <= 2.0, "exposure {score} is too high:\n{text}");
}

struct Notifications(UnixDatagram);

impl Notifications {
    /// Wait for a datagram containing `want`; returns it.
    fn wait_for(&self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no `{want}` notification");
            self.0.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.0.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if msg.contains(want) {
                    return msg;
                }
            }
        }
    }
}

fn served_certificate(env: &DevEnv, daemon: &Daemon) -> String {
    let pki = env.pki();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &daemon.api.to_string(), "-servername", "localhost", "-cert"])
        .arg(pki.join("admin.pem"))
        .arg("-key")
        .arg(pki.join("admin.key"))
        .arg("-CAfile")
        .arg(pki.join("ca.pem"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----").expect("server certificate");
    let end = text.find("-----END CERTIFICATE-----").unwrap();
    text[start + 27..end].split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_protocol_watchdog_and_certificate_reload() {
    let mut env = DevEnv::new();
    let sock_path = env.path().join("notify.sock");
    let notes = Notifications(UnixDatagram::bind(&sock_path).unwrap());
    env.daemon_env.push(("NOTIFY_SOCKET".into(), sock_path.clone()));
    env.daemon_env.push(("WATCHDOG_USEC".into(), "200000".into()));
    let daemon = Daemon::start(&env);
    let ready = notes.wait_for("READY=1");
    assert!(ready.contains(&format!("MAINPID={}", daemon.pid())), "{ready}");
    notes.wait_for("WATCHDOG=1");
    notes.wait_for("WATCHDOG=1");

    // An open connection, then a renewed server certificate and SIGHUP.
    let mut admin = connect(&env, &daemon, "admin").await;
    assert_eq!(admin.call(Method::GET, "/v1/keys", None).await.unwrap().status, 200);
    let before = served_certificate(&env, &daemon);
    let pki = env.pki();
    let dir = env.path();
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n").unwrap();
    let (ok, out) = openssl(&[
        "req".as_ref(),
        "-new".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-keyout".as_ref(),
        dir.join("new.key").as_os_str(),
        "-subj".as_ref(),
        "/CN=localhost".as_ref(),
        "-out".as_ref(),
        dir.join("new.csr").as_os_str(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = openssl(&[
        "x509".as_ref(),
        "-req".as_ref(),
        "-in".as_ref(),
        dir.join("new.csr").as_os_str(),
        "-CA".as_ref(),
        pki.join("ca.pem").as_os_str(),
        "-CAkey".as_ref(),
        pki.join("ca.key").as_os_str(),
        "-CAcreateserial".as_ref(),
        "-days".as_ref(),
        "30".as_ref(),
        "-extfile".as_ref(),
        dir.join("ext.cnf").as_os_str(),
        "-out".as_ref(),
        dir.join("new.pem").as_os_str(),
    ]);
    assert!(ok, "{out}");
    std::fs::copy(dir.join("new.pem"), pki.join("server.pem")).unwrap();
    std::fs::copy(dir.join("new.key"), pki.join("server.key")).unwrap();
    assert!(Command::new("kill").args(["-HUP", &daemon.pid().to_string()]).status().unwrap().success());
    let reloading = notes.wait_for("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let after_reload = notes.wait_for("READY=1");
    assert!(after_reload.contains("reload ok"), "{after_reload}");

    let renewed: String =
        std::fs::read_to_string(dir.join("new.pem")).unwrap().lines().filter(|l| !l.starts_with("-----")).collect();
    let after = served_certificate(&env, &daemon);
    assert_ne!(before, after);
    assert_eq!(after, renewed, "new handshakes get the renewed certificate");
    assert_eq!(
        admin.call(Method::GET, "/v1/keys", None).await.unwrap().status,
        200,
        "the open connection keeps working"
    );

    // A broken reload keeps the running settings.
    std::fs::write(pki.join("server.key"), "not a key").unwrap();
    assert!(Command::new("kill").args(["-HUP", &daemon.pid().to_string()]).status().unwrap().success());
    assert!(notes.wait_for("READY=1").contains("reload error"));
    assert_eq!(served_certificate(&env, &daemon), renewed);

    assert!(Command::new("kill").args(["-TERM", &daemon.pid().to_string()]).status().unwrap().success());
    notes.wait_for("STOPPING=1");
    let (status, _) = daemon.stop();
    assert!(status.success());
}
