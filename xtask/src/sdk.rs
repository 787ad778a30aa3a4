//! `cargo xtask sdk`: every integrator kit built and tested against a live dev daemon —
//! the Java gateway SDK (`sdk/java/run-tests.sh`) and the phone bindings
//! (`phone-ffi/run-tests.sh`). Each script takes the daemon from its environment
//! (`MCS_SERVER`, `MCS_DEV_DIR`, `MCS_BIN`, `MCS_VECTORS`) and starts none; this task makes
//! a fresh `mcsd dev-init` directory under `target/sdk/dev`, runs the daemon for both, and
//! stops it. `cargo xtask test` runs it after the Rust suite.
//!
//! Also here: `redocly lint` of `docs/openapi.yaml` (Redocly's CLI from npm, pinned,
//! installed under `target/npm`), one of `cargo xtask test`'s gates.

use std::process::Command;

use crate::{Result, cargo, have, root};

/// The Redocly CLI release the lint runs with (it supports the Node.js 20 of Debian's
/// NodeSource-less machines; later releases want Node.js 22).
const REDOCLY: &str = "@redocly/cli@2.77.0";

/// `redocly lint --config docs/redocly.yaml docs/openapi.yaml`: every warning is an error
/// (`recommended-strict`).
pub fn redocly_lint() -> Result<()> {
    if !have("npm") {
        return Err("npm is needed for `redocly lint` (apt-get install -y npm)".into());
    }
    let prefix = root().join("target/npm");
    let bin = prefix.join("node_modules/.bin/redocly");
    if !bin.exists() {
        println!("==> installing {REDOCLY} under target/npm");
        std::fs::create_dir_all(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(REDOCLY)
            .status()
            .map_err(|e| format!("npm: {e}"))?;
        if !status.success() {
            return Err(format!("npm install {REDOCLY} failed: {status}"));
        }
    }
    println!("==> redocly lint docs/openapi.yaml");
    let status = Command::new(&bin)
        .current_dir(root())
        .args(["lint", "--config", "docs/redocly.yaml", "--format", "summary", "docs/openapi.yaml"])
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true")
        .status()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if status.success() { Ok(()) } else { Err("redocly lint found problems in docs/openapi.yaml".into()) }
}

/// `cargo xtask sdk`.
pub fn sdk() -> Result<()> {
    // SoftHSM for the daemon, the JDK for both kits' tests, npm for the Kotlin compiler.
    crate::ensure_system_deps()?;
    cargo(&["build", "-j2", "-p", "mcsd", "-p", "mcs-client", "-p", "mcs-local-ca"])?;
    let dir = root().join("target/sdk/dev");
    let (daemon, url) = crate::start_dev_daemon(&dir)?;
    println!("==> dev daemon at {url} ({}; log in mcsd.log)", dir.display());
    let env = [
        ("MCS_SERVER", url),
        ("MCS_DEV_DIR", dir.display().to_string()),
        ("MCS_BIN", root().join("target/debug").display().to_string()),
        ("MCS_VECTORS", root().join("docs/test-vectors.json").display().to_string()),
    ];
    let mut failed = Vec::new();
    for (kit, script) in [("Java gateway SDK", "sdk/java/run-tests.sh"), ("phone bindings", "phone-ffi/run-tests.sh")] {
        println!("\n==> {kit}: {script}");
        let status = Command::new("sh")
            .arg(root().join(script))
            .current_dir(root())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .map_err(|e| format!("{script}: {e}"))?;
        if !status.success() {
            failed.push(format!("{kit} ({script}: {status})"));
        }
    }
    drop(daemon);
    if failed.is_empty() { Ok(()) } else { Err(format!("failed: {}", failed.join(", "))) }
}
