//! `cargo xtask deny`: `cargo deny check` over the workspace with `deny.toml` (installed
//! from crates.io if missing). Bans, licences and sources always. Advisories need the
//! RustSec database: a copy fetched earlier (`$CARGO_HOME/advisory-dbs/`, which `cargo deny
//! fetch db` fills where github.com is reachable), else one fetched now (given a minute).
//! Without either the advisories check is reported as skipped, loudly; the bans list still
//! refuses the crates the project moved off.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, cargo, root};

pub fn deny() -> Result<()> {
    let present =
        Command::new("cargo").args(["deny", "--version"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !present.is_ok_and(|s| s.success()) {
        println!("==> installing cargo-deny from crates.io (a few minutes, once)");
        cargo(&["install", "cargo-deny", "--locked", "-j2"])?;
    }
    println!("==> cargo deny check bans licenses sources");
    cargo(&["deny", "--locked", "check", "--hide-inclusion-graph", "bans", "licenses", "sources"])?;
    if !have_database() && !fetch_database(Duration::from_secs(60)) {
        println!(
            "==> cargo deny check advisories: SKIPPED: no RustSec advisory database on this machine and none \
             could be fetched (run `cargo deny fetch db` where github.com is reachable)"
        );
        return Ok(());
    }
    println!("==> cargo deny check advisories");
    cargo(&["deny", "--locked", "--offline", "check", "--hide-inclusion-graph", "advisories"])
}

/// Whether an advisory database was fetched earlier (cargo-deny keeps each in
/// `$CARGO_HOME/advisory-dbs/<name>-<hash>/`).
fn have_database() -> bool {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    home.map(|h| h.join("advisory-dbs"))
        .and_then(|d| std::fs::read_dir(d).ok())
        .is_some_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().join("crates").is_dir())))
}

/// `cargo deny fetch db`, given up after `limit` (a machine without a route out hangs).
fn fetch_database(limit: Duration) -> bool {
    let Ok(mut child) = Command::new("cargo").current_dir(root()).args(["deny", "fetch", "db"]).spawn() else {
        return false;
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success() && have_database(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}
