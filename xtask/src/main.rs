//! `cargo xtask demo | test | bench | fuzz | openapi | sdk | …`: the project's front doors.
//!
//! Both install what a fresh Debian machine lacks (SoftHSM, OpenSSL) with apt-get, so the
//! README's first two commands work from a clean clone.
//! - `demo` builds everything, makes a dev environment in `target/demo`, starts the daemon,
//!   runs a phone through enroll → activate → sign → decrypt with the `mcs` client, checks
//!   the signature with OpenSSL and the plaintext against the original, and stops the daemon.
//! - `test` runs the gates (fmt, clippy, `cargo deny`, `redocly lint` of the OpenAPI
//!   document), the whole test suite (unit, OpenSSL cross-checks, end-to-end) with every
//!   JSON answer then checked against the OpenAPI document, the integrator kits (`sdk`),
//!   then every fuzz target for a few seconds from its seeds.
//! - `bench [--quick] [--keys N] [--stores]` builds in release mode and runs `mcs-bench`: figures next to
//!   references measured in the same run, `target/bench/summary.json`.
//! - `fuzz [--seconds N]` builds the `fuzz/` targets (cargo fuzz, installed if missing) and
//!   runs each for N seconds; fails, naming the artifact, if any of them crashes.
//!   `fuzz --seeds` rewrites the checked-in seeds (`seeds.rs`).
//! - `deb [--debug] [--no-build] [--out DIR]` builds the Debian package (`deb.rs`) into
//!   `target/deb/` from release binaries (`--debug`: the debug ones, as the test does).
//! - `deny`: `cargo deny check` with `deny.toml` (advisories, licences, bans, sources),
//!   also run by `test` after the lints (`deny.rs`).
//! - `vectors` writes `docs/test-vectors.json` (known-answer vectors, `vectors.rs`).
//! - `openapi` regenerates `docs/openapi.yaml` from the wire types of `mcs-api`
//!   (`api-types/`); that crate's `openapi` test fails while the checked-in file differs.
//! - `sdk` builds and tests the Java gateway SDK and the phone bindings against a live dev
//!   daemon (`sdk.rs`).

mod deb;
mod deny;
mod sdk;
mod seeds;
mod vectors;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

pub(crate) type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        Some("lint") => gates(),
        Some("openapi") => openapi(),
        Some("sdk") => sdk::sdk(),
        Some("deb") => deb::deb(&args[1..]),
        Some("deny") => deny::deny(),
        Some("vectors") => vectors::write(),
        _ => {
            eprintln!(
                "usage: cargo xtask demo | test [-- <cargo test args>] | lint | bench [--quick] [--keys N] [--stores] | fuzz [--seconds N | --seeds] | openapi | deb [--debug] [--no-build] [--out DIR] | deny | vectors | sdk"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub(crate) fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether PostgreSQL's server binaries are here: the store's tests start their own
/// throw-away cluster with them (`daemon/src/store/postgres/testing.rs`). Debian keeps them
/// off PATH, in `/usr/lib/postgresql/<major>/bin`.
fn have_postgres_server() -> bool {
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| ["initdb", "pg_ctl", "pg_isready"].iter().all(|t| e.path().join("bin").join(t).is_file()));
    debian || (have("initdb") && have("pg_ctl") && have("pg_isready"))
}

/// Install the Debian packages the project needs if their commands are missing.
pub(crate) fn ensure_system_deps() -> Result<()> {
    let wanted = [
        ("softhsm2-util", "softhsm2"),
        ("openssl", "openssl"),
        ("qpdf", "qpdf"),
        ("pdfsig", "poppler-utils"),
        ("prometheus", "prometheus"),
        ("systemd-analyze", "systemd"),
        // The Java gateway SDK (`cargo xtask sdk`) and the Redocly lint.
        ("javac", "openjdk-17-jdk-headless"),
        ("npm", "npm"),
    ];
    let mut missing: Vec<&str> = wanted.iter().filter(|(cmd, _)| !have(cmd)).map(|(_, pkg)| *pkg).collect();
    if !have_postgres_server() {
        missing.push("postgresql");
    }
    // The seal-template tests draw with a CJK font found at one of these paths.
    if !mcs_pdfseal::template::CJK_FONT_CANDIDATES.iter().any(|p| Path::new(p).exists()) {
        missing.push("fonts-wqy-zenhei");
    }
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing {} with apt-get", missing.join(", "));
    let sudo = if Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false) {
        vec![]
    } else {
        vec!["sudo"]
    };
    let run = |args: &[&str]| -> Result<()> {
        let mut all: Vec<&str> = sudo.clone();
        all.extend_from_slice(args);
        let status = Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("{}: {e}", all.join(" ")))?;
        if status.success() { Ok(()) } else { Err(format!("`{}` failed: {status}", all.join(" "))) }
    };
    run(&["apt-get", "update", "-q"])?;
    let mut install = vec!["apt-get", "install", "-y", "-q"];
    install.extend(missing.iter());
    run(&install)
}

/// pyHanko, the independent PDF signature validator of the PDF tests (from PyPI).
fn ensure_pyhanko() -> Result<()> {
    if have("pyhanko") {
        return Ok(());
    }
    println!("installing pyhanko with pip");
    let python = if have("python3") { "python3" } else { return Err("python3 is needed to install pyhanko".into()) };
    let status = Command::new(python)
        .args(["-m", "pip", "install", "-q", "pyhanko", "pyhanko-cli"])
        .status()
        .map_err(|e| format!("pip: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("pip install pyhanko failed: {status}")) }
}

/// `docs/openapi.yaml`, written by the generator in `mcs-api` (run, not linked: xtask stays
/// free of utoipa).
fn openapi() -> Result<()> {
    let out = root().join("docs/openapi.yaml");
    let out = out.to_str().ok_or("the workspace path is not UTF-8")?;
    cargo(&["run", "--quiet", "-p", "mcs-api", "--bin", "mcs-openapi", "--", out])?;
    println!("wrote {out}");
    Ok(())
}

pub(crate) fn cargo(args: &[&str]) -> Result<()> {
    cargo_env(args, &[])
}

fn cargo_env(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args(args)
        .envs(env.iter().copied())
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("cargo {} failed: {status}", args.join(" "))) }
}

/// `args`: `--quick`, `--keys N` (store size for the memory figure), passed to mcs-bench.
fn bench(args: &[String]) -> Result<()> {
    ensure_system_deps()?;
    cargo(&["build", "--release", "-j2", "-p", "mcsd", "-p", "mcs-local-ca", "-p", "mcs-bench"])?;
    let out = root().join("target/bench/summary.json");
    let mut cmd = Command::new(root().join("target/release/mcs-bench"));
    cmd.arg("--out").arg(&out).args(args);
    let status = cmd.status().map_err(|e| format!("mcs-bench: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("mcs-bench failed: {status}")) }
}

fn test(extra: &[String]) -> Result<()> {
    // The habits first: they are cheap, and a red gate should not wait for the suite.
    gates()?;
    deny::deny()?;
    // npm comes with the system packages on a fresh machine.
    ensure_system_deps()?;
    sdk::redocly_lint()?;
    ensure_pyhanko()?;
    // Build binaries, the PKCS#11 mock and the adapter plugins first: the e2e tests run them.
    cargo(&["build", "--workspace", "-j2"])?;
    // Every JSON answer the clients of the suite receive is logged, then checked against
    // the OpenAPI document (`mcs-openapi check-answers`).
    let answers = root().join("target/e2e-answers");
    let _ = std::fs::remove_dir_all(&answers);
    let log = answers.to_str().ok_or("non-UTF-8 path")?;
    let mut args = vec!["test", "--workspace", "-j2"];
    args.extend(extra.iter().map(String::as_str));
    cargo_env(&args, &[("MCS_ANSWER_LOG", log)])?;
    // The end-to-end suite once more against the production PKI layout: a separate CA per
    // role (operators, platforms, phones), as config/mcsd.toml documents.
    if extra.is_empty() {
        println!("\n==> end-to-end tests again, production layout (MCS_E2E_LAYOUT=production)");
        cargo_env(&["test", "-p", "mcs-e2e", "-j2"], &[("MCS_E2E_LAYOUT", "production"), ("MCS_ANSWER_LOG", log)])?;
        println!("\n==> every answer the suite received, against docs/openapi.yaml");
        cargo(&["run", "--quiet", "-j2", "-p", "mcs-api", "--bin", "mcs-openapi", "--", "check-answers", log])?;
        println!("\n==> the integrator kits against a dev daemon (cargo xtask sdk)");
        sdk::sdk()?;
        // A short round: enough to catch a decoder that panics on its own seeds or their
        // first mutations, and bounded so that the whole step, build included, stays under
        // 10 minutes.
        run_fuzz(FUZZ_CI_SECONDS)?;
    }
    Ok(())
}

/// Formatting and lints, as CI enforces them: `cargo fmt --check` (the workspace and the
/// fuzz workspace, one rustfmt.toml) and clippy with every warning an error, all targets.
/// `cargo xtask lint` runs just these.
fn gates() -> Result<()> {
    for (tool, component) in [("fmt", "rustfmt"), ("clippy", "clippy")] {
        let present =
            Command::new("cargo").args([tool, "--version"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !present.is_ok_and(|s| s.success()) {
            println!("==> installing the {component} component");
            let status = Command::new("rustup").args(["component", "add", component]).status();
            if !status.is_ok_and(|s| s.success()) {
                return Err(format!("`cargo {tool}` is missing and `rustup component add {component}` failed"));
            }
        }
    }
    println!("==> cargo fmt --check");
    cargo(&["fmt", "--all", "--check"])
        .map_err(|e| format!("{e}\n  formatting differs: run `cargo fmt --all` (and in fuzz/)"))?;
    let fuzz = root().join("fuzz/Cargo.toml");
    cargo(&["fmt", "--manifest-path", fuzz.to_str().ok_or("non-UTF-8 path")?, "--all", "--check"])
        .map_err(|e| format!("{e}\n  formatting differs in fuzz/: run `cargo fmt --all` there"))?;
    println!("==> cargo clippy --workspace --all-targets -- -D warnings");
    cargo(&["clippy", "--workspace", "--all-targets", "-j2", "--", "-D", "warnings"])
}

/// Seconds per target in `cargo xtask test` (every target, one after the other).
const FUZZ_CI_SECONDS: u64 = 15;

/// How the fuzz targets are built, by `cargo fuzz build` and `cargo fuzz run` alike (the
/// same flags, or `run` would rebuild). No sanitizer: the decoders are safe Rust, where
/// ASan adds build and run time and finds little that a panic would not (`cargo fuzz run
/// -s address TARGET` in `fuzz/` does it by hand); and so no nightly-only flag. 16 codegen
/// units instead of cargo fuzz's 1, so the big crates build on both cores (at some cost in
/// inlining).
const FUZZ_BUILD_FLAGS: [&str; 4] = ["--sanitizer", "none", "--codegen-units", "16"];

/// `args`: `--seconds N` per target (default 60), or `--seeds`.
fn fuzz(args: &[String]) -> Result<()> {
    let seconds = match args {
        [] => 60,
        [flag, n] if flag == "--seconds" => {
            n.parse().map_err(|_| format!("--seconds takes whole seconds, not `{n}`"))?
        }
        [flag] if flag == "--seeds" => {
            let out = root().join("fuzz/seeds");
            seeds::write_all(&out);
            println!("seeds written to {}", out.display());
            return Ok(());
        }
        _ => return Err("usage: cargo xtask fuzz [--seconds N | --seeds]".into()),
    };
    run_fuzz(seconds)
}

/// cargo-fuzz from crates.io, if this machine lacks it.
fn ensure_cargo_fuzz() -> Result<()> {
    if have("cargo-fuzz") {
        return Ok(());
    }
    println!("installing cargo-fuzz with cargo install");
    cargo(&["install", "cargo-fuzz", "--locked", "-j2"])
}

/// cargo fuzz's toolchain: nightly where rustup has it (what cargo fuzz is made for), else
/// the default one, which is enough without a sanitizer (no unstable flag is needed then).
fn fuzz_toolchain() -> Vec<&'static str> {
    let nightly =
        Command::new("cargo").args(["+nightly", "--version"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if nightly.is_ok_and(|s| s.success()) {
        vec!["+nightly"]
    } else {
        println!("no nightly toolchain: building the fuzz targets with the default one");
        vec![]
    }
}

/// `cargo [+toolchain] fuzz ARGS` in `fuzz/`.
fn cargo_fuzz(toolchain: &[&str], args: &[&str]) -> Command {
    // rustup's proxy, not `$CARGO` (the toolchain running xtask), so `+nightly` is honoured.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root().join("fuzz")).args(toolchain).arg("fuzz").args(args).env("CARGO_BUILD_JOBS", "2");
    cmd
}

/// Build every fuzz target, then run each for `seconds` on its working corpus
/// (`fuzz/corpus/<target>`, ignored by git, grown by the fuzzer) and its checked-in seeds
/// (`fuzz/seeds/<target>`, only read), with `fuzz/dicts/<target>.dict` if there is one.
/// All targets run even after a crash, so one run reports every crashing target.
fn run_fuzz(seconds: u64) -> Result<()> {
    let started = std::time::Instant::now();
    ensure_cargo_fuzz()?;
    let toolchain = fuzz_toolchain();
    step("building the fuzz targets");
    let mut build = cargo_fuzz(&toolchain, &["build"]);
    build.args(FUZZ_BUILD_FLAGS);
    run_status(&mut build)?;
    let listed = run_ok(&mut cargo_fuzz(&toolchain, &["list"]))?;
    let targets: Vec<&str> = listed.lines().map(str::trim).filter(|t| !t.is_empty()).collect();
    let dir = root().join("fuzz");
    let (mut crashes, mut failed) = (Vec::new(), 0);
    for target in &targets {
        step(&format!("fuzzing {target} for {seconds} s"));
        let (corpus, seeds, artifacts) =
            (dir.join("corpus").join(target), dir.join("seeds").join(target), dir.join("artifacts").join(target));
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let before = files_in(&artifacts);
        let mut run = cargo_fuzz(&toolchain, &["run"]);
        run.args(FUZZ_BUILD_FLAGS).arg(target).arg(&corpus);
        if seeds.is_dir() {
            run.arg(&seeds);
        }
        // -timeout: an input that takes this long is a finding too (and keeps the run bounded).
        run.args(["--", &format!("-max_total_time={seconds}"), "-timeout=10", "-print_final_stats=1"]);
        let dict = dir.join("dicts").join(format!("{target}.dict"));
        if dict.is_file() {
            run.arg(format!("-dict={}", dict.display()));
        }
        let status = run.status().map_err(|e| format!("cargo fuzz run {target}: {e}"))?;
        if !status.success() {
            failed += 1;
            let new: Vec<PathBuf> = files_in(&artifacts).into_iter().filter(|f| !before.contains(f)).collect();
            if new.is_empty() {
                crashes.push(format!("{target}: failed ({status}) without an artifact"));
            }
            crashes.extend(new.iter().map(|a| format!("{target}: {}", a.display())));
        }
    }
    println!(
        "\nfuzzed {} targets for {seconds} s each; {} s in all, build included",
        targets.len(),
        started.elapsed().as_secs()
    );
    // The plain closing line CI reads when the fuzz step is the last to print.
    println!("fuzz: {} passed, {failed} failed", targets.len() - failed);
    if crashes.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzzing found crashes (reproduce: cd fuzz && cargo {} fuzz run {} TARGET ARTIFACT):\n  {}",
            toolchain.join(" "),
            FUZZ_BUILD_FLAGS.join(" "),
            crashes.join("\n  ")
        ))
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default()
}

fn run_status(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} {:?} failed: {status}", cmd.get_program(), cmd.get_args().collect::<Vec<_>>()))
    }
}

/// A dev daemon (the demo's, the SDK tests'), stopped on drop.
pub(crate) struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// A fresh `mcsd dev-init` environment in `dir` (whatever was there is removed) and
/// `mcsd run` on it, its log in `dir/mcsd.log`; returns the daemon and its API's URL.
pub(crate) fn start_dev_daemon(dir: &Path) -> Result<(Daemon, String)> {
    let mcsd = root().join("target/debug/mcsd");
    let _ = std::fs::remove_dir_all(dir);
    run_ok(Command::new(&mcsd).args(["dev-init", "--dir"]).arg(dir))?;
    let mut child = Command::new(&mcsd)
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .args(["run", "--config"])
        .arg(dir.join("mcsd.toml"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("mcsd.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("starting mcsd: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let daemon = Daemon(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or_else(|| format!("mcsd exited before listening; see {}", dir.join("mcsd.log").display()))?
            .map_err(|e| e.to_string())?;
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_owned();
        }
    };
    Ok((daemon, format!("https://{addr}")))
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn demo() -> Result<()> {
    ensure_system_deps()?;
    step("building mcsd and mcs");
    cargo(&["build", "-p", "mcsd", "-p", "mcs-client", "-p", "mcs-local-ca", "-j2"])?;
    let bin = root().join("target/debug");
    let (mcsd, mcs) = (bin.join("mcsd"), bin.join("mcs"));
    let dir = root().join("target/demo");
    step("creating a dev environment (SoftHSM token, KEK, PKI, config) and starting the daemon");
    let (daemon, server) = start_dev_daemon(&dir)?;
    println!("    daemon listening on {server} (mutual TLS); log in {}", dir.join("mcsd.log").display());
    let pki = dir.join("pki");
    let mcs_as = |who: &str| {
        let mut c = Command::new(&mcs);
        c.args(["--server", &server, "--pki"]).arg(&pki).args(["--as", who]);
        c
    };

    step("operator enrolls Zhang San for platform P-DEV-1");
    let out = run_ok(mcs_as("admin").args([
        "admin",
        "enroll",
        "--kind",
        "person",
        "--name",
        "Zhang San",
        "--ca",
        "local",
        "--platform",
        "P-DEV-1",
        "--validity-days",
        "365",
    ]))?;
    let enrollment: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("enroll output: {e}: {out}"))?;
    let enrollment_id = enrollment["enrollment_id"].as_str().ok_or("no enrollment_id")?;
    let code = enrollment["activation_code"].as_str().ok_or("no activation_code")?;
    println!("    enrollment {enrollment_id}, activation code {code}");

    step("phone 1 activates: it keeps d1 (masked by its PIN), the daemon keeps d2 wrapped by the HSM");
    let state = dir.join("phone1.json");
    let pin = "246810";
    let out = run_ok(mcs_as("app1").args(["app", "activate", "--state"]).arg(&state).args([
        "--enrollment",
        enrollment_id,
        "--code",
        code,
        "--pin",
        pin,
    ]))?;
    println!("    {}", out.trim().replace('\n', "\n    "));

    step("phone 1 signs a bid document together with the daemon");
    let msg = dir.join("bid.txt");
    std::fs::write(&msg, "Bid for tender ZB-2026-001: 1,000,000 CNY\n").map_err(|e| e.to_string())?;
    let sig = dir.join("bid.sig");
    app_run(&mcs_as, "sign", &state, pin, &msg, &sig)?;
    let pubkey = dir.join("joint-key.pem");
    run_ok(mcs_as("app1").args(["app", "pubkey", "--state"]).arg(&state).arg("--out").arg(&pubkey))?;

    step("OpenSSL verifies the two-party signature as an ordinary SM2 signature");
    let verify = openssl_sm2_verify(&pubkey, &msg, &sig)?;
    println!("    openssl: {}", verify.trim());

    step("OpenSSL encrypts a secret to the joint key; phone 1 decrypts it with the daemon");
    let secret = dir.join("secret.txt");
    let original = "bid price sealed until opening: 998,000 CNY";
    std::fs::write(&secret, original).map_err(|e| e.to_string())?;
    let ct = dir.join("secret.sm2");
    run_ok(
        Command::new("openssl")
            .args(["pkeyutl", "-encrypt", "-pubin", "-inkey"])
            .arg(&pubkey)
            .arg("-in")
            .arg(&secret)
            .arg("-out")
            .arg(&ct),
    )?;
    let pt = dir.join("secret.out");
    app_run(&mcs_as, "decrypt", &state, pin, &ct, &pt)?;
    let recovered = std::fs::read_to_string(&pt).map_err(|e| e.to_string())?;
    if recovered != original {
        return Err(format!("decrypted text differs: {recovered:?}"));
    }
    println!("    recovered plaintext matches the original: {recovered:?}");

    step("the bidding hall (gateway P-DEV-1) shows a login QR code; phone 1 scans it");
    let challenge = dir.join("challenge.bin");
    std::fs::write(&challenge, "P-DEV-1 login challenge 2026-11-22T09:00:00Z nonce 5f1c").map_err(|e| e.to_string())?;
    let out = run_ok(
        mcs_as("gateway")
            .args(["gateway", "create-task", "--kind", "login", "--title", "Log in to the bidding hall", "--data-file"])
            .arg(&challenge),
    )?;
    let task: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("create-task output: {e}: {out}"))?;
    let qr = task["qr"].as_str().ok_or("no qr")?;
    let task_id = task["task_id"].as_str().ok_or("no task_id")?;
    println!("    QR code: {qr}");
    run_ok(mcs_as("app1").args(["app", "scan", qr, "--state"]).arg(&state).args(["--pin", pin]))?;
    let out = run_ok(mcs_as("gateway").args(["gateway", "wait", task_id, "--wait", "10"]))?;
    let result: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("wait output: {e}: {out}"))?;
    let sig_b64 = result["result"]["signature"].as_str().ok_or(format!("no signature: {out}"))?;
    let login_sig = dir.join("login.sig");
    let sig = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, sig_b64).map_err(|e| e.to_string())?;
    std::fs::write(&login_sig, sig).map_err(|e| e.to_string())?;
    let verify = run_ok(
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(&pubkey)
            .args(["-rawin", "-in"])
            .arg(&challenge)
            .arg("-sigfile")
            .arg(&login_sig)
            .args(["-digest", "sm3", "-pkeyopt", "distid:1234567812345678"]),
    )?;
    println!(
        "    the gateway got {} for {}; openssl: {}",
        result["status"],
        result["result"]["subject"]["name"],
        verify.trim()
    );

    step("the operator makes Zhang San's personal seal (GB/T 38540, signed by the seal maker)");
    let phone_state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let key_id = phone_state["key_id"].as_str().ok_or("no key_id in the phone state")?;
    let picture = dir.join("seal.png");
    std::fs::write(&picture, mcs_pdfseal::image::demo_seal_png(128)).map_err(|e| e.to_string())?;
    let out = run_ok(
        mcs_as("admin")
            .args(["admin", "seal-create", "--kind", "personal", "--name", "Zhang San", "--image"])
            .arg(&picture)
            .args(["--signer", key_id]),
    )?;
    let seal: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("seal-create output: {e}: {out}"))?;
    println!("    seal {} (esID {})", seal["seal_id"], seal["es_id"]);

    step("the bidding hall asks for the bid file to be sealed at \"Bidder seal here\"; phone 1 scans");
    let bid_pdf = dir.join("bid.pdf");
    std::fs::write(&bid_pdf, mcs_pdfseal::pdf::sample_document(3, false)).map_err(|e| e.to_string())?;
    let out = run_ok(
        mcs_as("gateway")
            .args(["gateway", "seal-pdf", "--pdf"])
            .arg(&bid_pdf)
            .args(["--placement", r#"{"keyword":"Bidder seal here"}"#]),
    )?;
    let task: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("seal-pdf output: {e}: {out}"))?;
    run_ok(
        mcs_as("app1")
            .args(["app", "scan", task["qr"].as_str().ok_or("no qr")?, "--state"])
            .arg(&state)
            .args(["--pin", pin]),
    )?;
    let sealed = dir.join("bid-sealed.pdf");
    run_ok(
        mcs_as("gateway")
            .args(["gateway", "wait", task["task_id"].as_str().ok_or("no task_id")?, "--wait", "10", "--pdf-out"])
            .arg(&sealed),
    )?;
    let report = run_ok(mcs_as("gateway").arg("verify-pdf").arg(&sealed))?;
    let report: serde_json::Value = serde_json::from_str(&report).map_err(|e| e.to_string())?;
    let check = run_ok(Command::new("qpdf").arg("--check").arg(&sealed))?;
    println!(
        "    {} sealed; verify-pdf: valid={} seal={}; qpdf: {}",
        sealed.display(),
        report["signatures"][0]["valid"],
        report["signatures"][0]["seal"]["name"],
        check.lines().find(|l| l.contains("No syntax")).unwrap_or("?")
    );

    organisation_scene(&dir, &mcs_as)?;
    documents_scene(&dir, &mcs_as, &state, pin, seal["seal_id"].as_str().ok_or("no seal_id")?)?;

    step("Zhang San reports the phone lost (挂失): the key refuses to sign until the operator resumes it (解冻)");
    run_ok(mcs_as("app1").args(["app", "suspend", "--state"]).arg(&state).args(["--pin", pin, "--reason", "lost"]))?;
    let frozen =
        mcs_as("app1").args(["app", "sign", "--state"]).arg(&state).args(["--pin", pin, "--in"]).arg(&msg).output();
    let frozen = frozen.map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&frozen.stderr);
    if frozen.status.success() || !err.contains("key_inactive") {
        return Err(format!("a suspended key signed: {err}"));
    }
    println!("    while suspended: {}", err.trim());
    let view = run_ok(mcs_as("admin").args(["admin", "key", key_id]))?;
    let held = json_of(&view, "admin key")?;
    println!("    suspension: {}", held["suspension"]);
    run_ok(mcs_as("admin").args(["admin", "resume", key_id]))?;
    run_ok(mcs_as("app1").args(["app", "sign", "--state"]).arg(&state).args(["--pin", pin, "--in"]).arg(&msg))?;
    println!("    resumed by the operator: the key signs again");

    step("a wrong PIN is refused and counted by the daemon");
    let wrong = mcs_as("app1")
        .args(["app", "sign", "--state"])
        .arg(&state)
        .args(["--pin", "000000", "--in"])
        .arg(&msg)
        .output();
    let wrong = wrong.map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&wrong.stderr);
    if wrong.status.success() || !err.contains("pin_incorrect") {
        return Err(format!("wrong PIN was not refused: {err}"));
    }
    println!("    {}", err.trim());

    step("Zhang San forgets the PIN (忘记密码): the key locks; the operator opens a reset, the phone resets it");
    for _ in 0..5 {
        let _ = mcs_as("app1")
            .args(["app", "sign", "--state"])
            .arg(&state)
            .args(["--pin", "000000", "--in"])
            .arg(&msg)
            .output();
    }
    let view = json_of(&run_ok(mcs_as("admin").args(["admin", "key", key_id]))?, "admin key")?;
    println!("    after five wrong PINs: pin = {}", view["pin"]);
    let opened = json_of(&run_ok(mcs_as("admin").args(["admin", "pin-reset", key_id]))?, "admin pin-reset")?;
    let reset_code = opened["reset_code"].as_str().ok_or("no reset_code")?;
    println!("    the operator reads out the one-time code {reset_code} (valid until {})", opened["expires_at"]);
    let new_pin = "135790";
    run_ok(
        mcs_as("app1").args(["app", "reset-pin", "--state"]).arg(&state).args(["--code", reset_code, "--pin", new_pin]),
    )?;
    let pt = dir.join("secret-after-reset.out");
    app_run(&mcs_as, "decrypt", &state, new_pin, &ct, &pt)?;
    if std::fs::read_to_string(&pt).map_err(|e| e.to_string())? != original {
        return Err("after the PIN reset the old ciphertext no longer decrypts".into());
    }
    let sig = dir.join("after-reset.sig");
    app_run(&mcs_as, "sign", &state, new_pin, &msg, &sig)?;
    let verify = openssl_sm2_verify(&pubkey, &msg, &sig)?;
    println!("    same key, new PIN: the bid encrypted before decrypts again; openssl: {}", verify.trim());

    step("stopping the daemon; the audit chain of everything above verifies");
    drop(daemon);
    let audit = run_ok(Command::new(&mcsd).args(["audit", "verify", "--config"]).arg(dir.join("mcsd.toml")))?;
    println!("    {}", audit.trim());
    println!(
        "\ndemo complete: enroll → activate → sign (verified by OpenSSL) → decrypt (matches) → QR login (verified by OpenSSL) → seal made → PDF sealed by scan (verified, qpdf-clean) → company certificate delegated to an employee, bid sealed after the legal representative's approval → phone reported lost, key resumed → wrong PIN refused → forgotten PIN reset, same key signs and decrypts → audit chain intact"
    );
    Ok(())
}

fn json_of(out: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(out).map_err(|e| format!("{what} output: {e}: {out}"))
}

/// Documents that stay valid (issue 15): the seal chosen on the PC, a time-stamp OpenSSL
/// reads, the seal withdrawn.
fn documents_scene(
    dir: &std::path::Path,
    mcs_as: &dyn Fn(&str) -> Command,
    state: &std::path::Path,
    pin: &str,
    seal_id: &str,
) -> Result<()> {
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_owned).ok_or(format!("no {k} in {v}"));
    step("the bidding hall lets Zhang San choose and place his seal on the PC, then he confirms by scanning");
    let doc = dir.join("contract.pdf");
    std::fs::write(&doc, mcs_pdfseal::pdf::sample_document(1, false)).map_err(|e| e.to_string())?;
    let task = json_of(
        &run_ok(mcs_as("gateway").args(["gateway", "seal-pdf", "--pdf"]).arg(&doc).args(["--placement", "deferred"]))?,
        "seal-pdf",
    )?;
    let (qr, task_id) = (field(&task, "qr")?, field(&task, "task_id")?);
    let scan = || run_ok(mcs_as("app1").args(["app", "scan", &qr, "--state"]).arg(state).args(["--pin", pin]));
    let claimed = json_of(&scan()?, "scan")?;
    let offered = json_of(&run_ok(mcs_as("gateway").args(["gateway", "seals", &task_id]))?, "seals")?;
    let names: Vec<&str> =
        offered["items"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    println!("    phone 1: {}; the PC offers {names:?}", claimed["placement"]);
    run_ok(
        mcs_as("gateway")
            .args(["gateway", "place", &task_id, "--seal-id", seal_id, "--placement"])
            .arg(r#"{"page":1,"x":420,"y":260}"#),
    )?;
    scan()?;
    let placed = dir.join("contract-sealed.pdf");
    run_ok(mcs_as("gateway").args(["gateway", "wait", &task_id, "--wait", "10", "--pdf-out"]).arg(&placed))?;
    let report = json_of(&run_ok(mcs_as("gateway").arg("verify-pdf").arg(&placed))?, "verify-pdf")?;
    let sig = &report["signatures"][0];
    println!("    placed on the PC and sealed: valid={}, time-stamped {}", sig["valid"], sig["timestamp"]);

    step("the bidding hall time-stamps a bid file with mcsd's TSA; OpenSSL reads the RFC 3161 reply");
    let (query, reply) = (dir.join("bid.tsq"), dir.join("bid.tsr"));
    run_ok(
        Command::new("openssl")
            .args(["ts", "-query", "-data"])
            .arg(&doc)
            .args(["-sha256", "-cert", "-out"])
            .arg(&query),
    )?;
    run_ok(mcs_as("gateway").args(["gateway", "timestamp", "--in"]).arg(&query).arg("--out").arg(&reply))?;
    let text = run_ok(Command::new("openssl").args(["ts", "-reply", "-text", "-in"]).arg(&reply))?;
    let line = |k: &str| text.lines().find(|l| l.starts_with(k)).unwrap_or("?").trim().to_owned();
    println!("    openssl: {}; {}; {}", line("Status:"), line("Serial number:"), line("Time stamp:"));

    step("Zhang San withdraws that seal (撤章): the document comes back byte for byte");
    let task = json_of(&run_ok(mcs_as("gateway").args(["gateway", "unseal", "--pdf"]).arg(&placed))?, "unseal")?;
    run_ok(mcs_as("app1").args(["app", "scan", &field(&task, "qr")?, "--state"]).arg(state).args(["--pin", pin]))?;
    let back = dir.join("contract-withdrawn.pdf");
    run_ok(
        mcs_as("gateway").args(["gateway", "wait", &field(&task, "task_id")?, "--wait", "10", "--pdf-out"]).arg(&back),
    )?;
    let same = std::fs::read(&back).map_err(|e| e.to_string())? == std::fs::read(&doc).map_err(|e| e.to_string())?;
    if !same {
        return Err("the withdrawn document differs from the original".into());
    }
    println!("    {} is byte for byte the document before the seal", back.display());
    Ok(())
}

/// The organisation's scene (issue 14): the company's certificate lives on the legal
/// representative's phone (phone 2); it is delegated to Zhang San's phone (phone 1) for
/// sealing, each use approved; Zhang San seals a bid with the company seal once the legal
/// representative approves from the inbox.
fn organisation_scene(dir: &std::path::Path, mcs_as: &dyn Fn(&str) -> Command) -> Result<()> {
    let field = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_owned).ok_or(format!("no {k} in {v}"));
    step("the operator enrolls the company; the legal representative's phone (phone 2) activates its certificate");
    let out = run_ok(mcs_as("admin").args([
        "admin",
        "enroll",
        "--kind",
        "org",
        "--name",
        "Hangzhou Example Construction Co",
        "--org-name",
        "Hangzhou Example Construction Co",
        "--credit-code",
        "91330100MA2B3C4D5E",
        "--ca",
        "local",
        "--platform",
        "P-DEV-1",
    ]))?;
    let enrollment = json_of(&out, "enroll")?;
    let (rep, rep_pin) = (dir.join("legal-rep.json"), "135790");
    run_ok(mcs_as("app2").args(["app", "activate", "--state"]).arg(&rep).args([
        "--enrollment",
        &field(&enrollment, "enrollment_id")?,
        "--code",
        &field(&enrollment, "activation_code")?,
        "--pin",
        rep_pin,
    ]))?;
    let org_key = field(&json_of(&std::fs::read_to_string(&rep).map_err(|e| e.to_string())?, "state")?, "key_id")?;
    let picture = dir.join("company-seal.png");
    std::fs::write(&picture, mcs_pdfseal::image::demo_seal_png(128)).map_err(|e| e.to_string())?;
    let seal = json_of(
        &run_ok(
            mcs_as("admin")
                .args(["admin", "seal-create", "--kind", "official", "--name", "Hangzhou Example Construction Co"])
                .arg("--image")
                .arg(&picture)
                .args(["--signer", &org_key]),
        )?,
        "seal-create",
    )?;
    println!("    company key {org_key}, company seal {}", seal["seal_id"]);

    step(
        "the legal representative grants the company certificate to Zhang San's phone: sealing only, each use approved",
    );
    let invite = json_of(
        &run_ok(mcs_as("app2").args(["app", "delegate", "create", "--state"]).arg(&rep).args([
            "--days",
            "30",
            "--task-kind",
            "pdf_seal",
            "--label",
            "Zhang San (bid clerk)",
            "--each-use",
            "--pin",
            rep_pin,
        ]))?,
        "delegate create",
    )?;
    let did = field(&invite, "delegation_id")?;
    let clerk = dir.join("zhang-san-company.json");
    run_ok(mcs_as("app1").args(["app", "accept", "--state"]).arg(&clerk).args([
        "--delegation",
        &did,
        "--code",
        &field(&invite, "invitation_code")?,
    ]))?;
    run_ok(mcs_as("app2").args(["app", "delegate", "share", "--state"]).arg(&rep).args([&did, "--pin", rep_pin]))?;
    run_ok(mcs_as("app1").args(["app", "accept", "--state"]).arg(&clerk).args(["--pin", "975310"]))?;
    println!("    delegation {did} active: phone 1 holds its own share of the company key (the daemon re-shared it)");

    step("the bidding hall asks for the company seal on the bid; Zhang San scans; the legal representative approves");
    let bid = dir.join("company-bid.pdf");
    std::fs::write(&bid, mcs_pdfseal::pdf::sample_document(2, false)).map_err(|e| e.to_string())?;
    let task = json_of(
        &run_ok(mcs_as("gateway").args(["gateway", "seal-pdf", "--pdf"]).arg(&bid).args([
            "--title",
            "Company seal on bid ZB-2026-001",
            "--placement",
            r#"{"keyword":"Bidder seal here"}"#,
            "--seal-id",
            &field(&seal, "seal_id")?,
        ]))?,
        "seal-pdf",
    )?;
    let (qr, task_id) = (field(&task, "qr")?, field(&task, "task_id")?);
    let scan = || run_ok(mcs_as("app1").args(["app", "scan", &qr, "--state"]).arg(&clerk).args(["--pin", "975310"]));
    let waiting = json_of(&scan()?, "scan")?;
    let aid = field(&waiting, "approval_id")?;
    println!("    phone 1: {} ({aid})", waiting["status"]);
    let inbox = json_of(&run_ok(mcs_as("app2").args(["app", "inbox", "--wait", "5"]))?, "inbox")?;
    let asked = inbox["items"].as_array().into_iter().flatten().find(|i| i["approval_id"] == aid.as_str());
    let asked = asked.ok_or(format!("no approval_request for {aid} in {inbox}"))?;
    println!(
        "    phone 2's inbox: {} from {} for \"{}\"",
        asked["type"], asked["delegate_label"], asked["display"]["title"]
    );
    run_ok(mcs_as("app2").args(["app", "approve", "--state"]).arg(&rep).args(["--approval", &aid, "--pin", rep_pin]))?;
    scan()?;
    let sealed = dir.join("company-bid-sealed.pdf");
    run_ok(mcs_as("gateway").args(["gateway", "wait", &task_id, "--wait", "10", "--pdf-out"]).arg(&sealed))?;
    let report = json_of(&run_ok(mcs_as("gateway").arg("verify-pdf").arg(&sealed))?, "verify-pdf")?;
    let sig = &report["signatures"][0];
    if sig["valid"] != true {
        return Err(format!("the company-sealed bid does not verify: {report}"));
    }
    println!(
        "    {} sealed with {} by the company key; verify-pdf: valid={}",
        sealed.display(),
        sig["seal"]["name"],
        sig["valid"]
    );
    Ok(())
}

/// Run a command, fail with its stderr if it fails, return its stdout.
/// Phone 1 `sign`s or `decrypt`s `input` into `out` with `pin` (the `mcs app` command).
fn app_run(
    mcs_as: &dyn Fn(&str) -> Command,
    what: &str,
    state: &Path,
    pin: &str,
    input: &Path,
    out: &Path,
) -> Result<String> {
    run_ok(
        mcs_as("app1")
            .args(["app", what, "--state"])
            .arg(state)
            .args(["--pin", pin, "--in"])
            .arg(input)
            .arg("--out")
            .arg(out),
    )
}

/// `openssl pkeyutl -verify` of an SM2 signature (DER) over `msg` by the PEM key, the SM2
/// ID explicit; OpenSSL's answer.
fn openssl_sm2_verify(pubkey: &Path, msg: &Path, sig: &Path) -> Result<String> {
    run_ok(
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
            .arg(pubkey)
            .args(["-rawin", "-in"])
            .arg(msg)
            .arg("-sigfile")
            .arg(sig)
            .args(["-digest", "sm3", "-pkeyopt", "distid:1234567812345678"]),
    )
}

fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
