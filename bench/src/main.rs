//! `mcs-bench [--quick] [--out FILE]`: the benchmark suite (`cargo xtask bench`).
//!
//! Everything is measured in the same run on the same machine, next to references:
//! (a) server-half sign and decrypt per core — ours, RustCrypto `sm2`'s whole signature,
//! and `openssl speed sm2` — plus a dudect-style timing test of the secret-dependent path;
//! (b) end-to-end co-sign throughput and p50/p99 over mTLS with keep-alive against a daemon
//! on SoftHSM (every operation durable and audited) at several concurrency levels, then
//! open loop at 80 % of the peak, and the same series on the PostgreSQL backend;
//! (c) keygen (activation, CSR co-signature and certificate included) rate; (d) sealing a
//! 10 MB PDF end to end. Writes `target/bench/summary.json` and prints a table.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use mcs_client::load::{LoadOp, LoadResult};
use mcs_client::phone::{Phone, ScanCode};
use mcs_client::transport::Endpoint;
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

type Res<T> = Result<T, String>;

mod postgres;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Operations per second of `f`, run for about `budget`.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS RNG");
    b
}

/// The figures of `openssl speed -seconds N <alg>`'s result line (the one naming `curve`
/// and "bits"): for an elliptic-curve algorithm, signs/s then verifies/s last.
fn openssl_speed(alg: &str, curve: &str, seconds: u32) -> Res<Vec<f64>> {
    let out = Command::new("openssl").args(["speed", "-seconds", &seconds.to_string(), alg]).output().map_err(err)?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "256 bits SM2 (CurveSM2)   0.0003s   0.0003s   3000.0   3400.0"
    let line = text
        .lines()
        .find(|l| l.contains(curve) && l.contains("bits"))
        .ok_or_else(|| format!("no {curve} line in openssl speed output:\n{text}"))?;
    let nums: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    if nums.len() < 2 {
        return Err(format!("cannot read `{line}`"));
    }
    Ok(nums)
}

/// `openssl speed sm2`: signs per second (single process = one core).
fn openssl_sm2_signs(seconds: u32) -> Res<f64> {
    let nums = openssl_speed("sm2", "SM2", seconds)?;
    Ok(nums[nums.len() - 2])
}

/// `openssl speed ecdsap256`: P-256 ECDSA verifications per second (one core). A verify is
/// the same shape of work as our server half — one variable-base and one fixed-base
/// multiplication — in OpenSSL's assembly.
fn openssl_p256_verifies(seconds: u32) -> Res<f64> {
    let nums = openssl_speed("ecdsap256", "nistp256", seconds)?;
    Ok(nums[nums.len() - 1])
}

/// Welch's t between two timing samples (the top 5% of each cropped, as dudect does).
fn welch_t(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    let crop = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
        v.truncate(v.len() * 95 / 100);
    };
    crop(&mut a);
    crop(&mut b);
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var, n)
    };
    let ((ma, va, na), (mb, vb, nb)) = (stats(&a), stats(&b));
    (ma - mb) / (va / na + vb / nb).sqrt()
}

/// Server half: ours (sign, decrypt), RustCrypto's whole signature, OpenSSL's, and a
/// fixed-vs-random-secret timing test of our signing.
fn server_half(quick: bool) -> Res<Value> {
    use signature::Signer;
    let budget = Duration::from_millis(if quick { 1500 } else { 5000 });
    let (_client, p1) = sm2_2p::client_keygen();
    let (share, _public) = sm2_2p::server_keygen(&p1);
    let (_, q1) = sm2_2p::ClientShare::sign_start();
    let e: [u8; 32] = random_bytes();
    let ours = rate(budget, || {
        std::hint::black_box(share.sign(std::hint::black_box(&e), &q1));
    });
    let t1 = q1;
    let ours_decrypt = rate(budget, || {
        std::hint::black_box(share.decrypt(std::hint::black_box(&t1)));
    });
    // The same server half with RustCrypto's arithmetic (what this crate did before).
    let rustcrypto_half = {
        use sm2::elliptic_curve::ops::LinearCombination;
        let q = sm2::ProjectivePoint::from(q1);
        rate(budget, || {
            let k2 = sm2_2p::random_nonzero_scalar();
            let k3 = sm2_2p::random_nonzero_scalar();
            let p = sm2::ProjectivePoint::lincomb(&[(q, k3), (sm2::ProjectivePoint::GENERATOR, k2)]);
            std::hint::black_box(p.to_affine());
        })
    };
    let rustcrypto_decrypt = {
        let t = sm2::ProjectivePoint::from(t1);
        let k = sm2_2p::random_nonzero_scalar();
        rate(budget, || {
            std::hint::black_box((t * std::hint::black_box(k)).to_affine());
        })
    };
    let sk = loop {
        if let Ok(k) = sm2::dsa::SigningKey::from_slice("1234567812345678", &random_bytes::<32>()) {
            break k;
        }
    };
    let msg = b"a bid file digest, 32 bytes long";
    let rustcrypto_whole = rate(budget, || {
        let sig: sm2::dsa::Signature = sk.sign(std::hint::black_box(msg));
        std::hint::black_box(sig);
    });
    let openssl = openssl_sm2_signs(if quick { 2 } else { 5 })?;
    let p256_verify = openssl_p256_verifies(if quick { 2 } else { 5 })?;

    // dudect-style: one fixed share against fresh random shares, interleaved at random.
    let samples = if quick { 4000 } else { 20000 };
    let randoms: Vec<sm2_2p::ServerShare> = (0..64).map(|_| sm2_2p::server_keygen(&p1).0).collect();
    let (mut fixed, mut random) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..samples * 2 {
        let class = random_bytes::<1>()[0] & 1;
        let s = if class == 0 { &share } else { &randoms[i % randoms.len()] };
        let t = Instant::now();
        std::hint::black_box(s.sign(&e, &q1));
        let ns = t.elapsed().as_nanos() as f64;
        if class == 0 { fixed.push(ns) } else { random.push(ns) }
    }
    let t = welch_t(fixed, random);
    Ok(json!({
        "ours_ops_s": ours,
        "ours_decrypt_ops_s": ours_decrypt,
        "rustcrypto_ops_s": rustcrypto_half,
        "rustcrypto_decrypt_ops_s": rustcrypto_decrypt,
        "rustcrypto_whole_sign_ops_s": rustcrypto_whole,
        "openssl_sign_ops_s": openssl,
        "ratio_vs_rustcrypto": ours / rustcrypto_half,
        "decrypt_ratio_vs_rustcrypto": ours_decrypt / rustcrypto_decrypt,
        "ratio_vs_openssl": ours / openssl,
        "openssl_p256_verify_ops_s": p256_verify,
        "ratio_vs_openssl_p256_verify": ours / p256_verify,
        "constant_time_t": t,
        "constant_time_ok": t.abs() < 4.5,
    }))
}

pub(crate) struct Daemon {
    child: Child,
    api: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn start_daemon(bin: &Path, dir: &Path) -> Res<Daemon> {
    let _ = std::fs::remove_dir_all(dir);
    let out = Command::new(bin.join("mcsd")).args(["dev-init", "--dir"]).arg(dir).output().map_err(err)?;
    if !out.status.success() {
        return Err(format!("dev-init: {}", String::from_utf8_lossy(&out.stderr)));
    }
    // Room for a 10 MB PDF (base64) in one request.
    let cfg_path = dir.join("mcsd.toml");
    let cfg = std::fs::read_to_string(&cfg_path).map_err(err)?;
    let cfg = if cfg.contains("max_body_bytes") {
        cfg.lines()
            .map(|l| {
                if l.trim_start().starts_with("max_body_bytes") {
                    "max_body_bytes = 33554432".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        cfg.replacen("[api]\n", "[api]\nmax_body_bytes = 33554432\n", 1)
    };
    std::fs::write(&cfg_path, cfg).map_err(err)?;
    spawn_daemon(bin, dir, "mcsd.log")
}

/// Run `mcsd run` on the dev environment in `dir`; wait for its API address.
fn spawn_daemon(bin: &Path, dir: &Path, log: &str) -> Res<Daemon> {
    let mut child = Command::new(bin.join("mcsd"))
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .env("RUST_LOG", "warn")
        .args(["run", "--config"])
        .arg(dir.join("mcsd.toml"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(log)).map_err(err)?)
        .spawn()
        .map_err(err)?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let api = loop {
        let line = lines.next().ok_or("mcsd exited before listening")?.map_err(err)?;
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Daemon { child, api })
}

fn endpoint(dir: &Path, api: &str, who: &str) -> Endpoint {
    let pki = dir.join("pki");
    Endpoint {
        base_url: format!("https://{api}"),
        ca_file: pki.join("ca.pem"),
        cert_file: Some(pki.join(format!("{who}.pem"))),
        key_file: Some(pki.join(format!("{who}.key"))),
    }
}

async fn enroll_and_activate(
    admin: &mut mcs_client::Connection,
    app: &mut mcs_client::Connection,
    api: &str,
    name: &str,
) -> Res<Phone> {
    let req = mcs_client::admin::EnrollmentRequest {
        subject: mcs_client::admin::Subject {
            kind: mcs_client::admin::SubjectKind::Person,
            name: name.into(),
            org_name: None,
            credit_code: None,
            id_number: None,
        },
        ca: "local".into(),
        profile: None,
        platforms: vec!["P-DEV-1".into()],
        validity_days: 365,
    };
    let e = mcs_client::admin::create_enrollment(admin, &req).await.map_err(err)?;
    Phone::activate(
        app,
        &format!("https://{api}"),
        e["enrollment_id"].as_str().unwrap_or(""),
        e["activation_code"].as_str().unwrap_or(""),
        "135790",
    )
    .await
    .map_err(err)
}

/// Keys enrolled for the keygen figure; the loads spread over the half that are app1's.
pub(crate) fn enrolled_keys(quick: bool) -> usize {
    if quick { 12 } else { 48 }
}

/// The concurrency levels of the load series (8 in all: the postgres figures at one
/// concurrency are ratios to sled's at 8), and how long each level runs.
pub(crate) fn load_levels(quick: bool) -> (&'static [usize], Duration) {
    match quick {
        true => (&[1, 8, 16, 64], Duration::from_secs(3)),
        false => (&[1, 8, 32, 64, 128], Duration::from_secs(10)),
    }
}

/// One load's figures: `{"concurrency", "ops_s", "p50_ms", "p99_ms"}`.
fn figures(concurrency: usize, r: &LoadResult) -> Value {
    json!({ "concurrency": concurrency, "ops_s": r.ops_per_sec(), "p50_ms": r.quantile_ms(0.5), "p99_ms": r.quantile_ms(0.99) })
}

/// `op` closed loop at each of `levels` connections for `seconds` each; an error if any
/// operation failed.
pub(crate) async fn load_series(
    ep: &Endpoint,
    phones: &[Arc<Phone>],
    levels: &[usize],
    seconds: Duration,
    op: LoadOp,
) -> Res<Vec<Value>> {
    let mut out = Vec::new();
    for &c in levels {
        let r = mcs_client::load::run_load(ep, phones, c, seconds, op, None).await.map_err(err)?;
        if r.errors > 0 {
            return Err(format!("{op:?}: {} errors at concurrency {c}: {:?}", r.errors, r.first_error));
        }
        out.push(figures(c, &r));
    }
    Ok(out)
}

/// The best `ops_s` of a series, 0 for none.
fn best(series: &Value) -> f64 {
    series.as_array().into_iter().flatten().filter_map(|r| r["ops_s"].as_f64()).fold(0.0_f64, f64::max)
}

async fn end_to_end(bin: &Path, dir: &Path, quick: bool, big_keys: Option<usize>) -> Res<Value> {
    let daemon = start_daemon(bin, dir)?;
    let mut admin = mcs_client::Connection::connect(&endpoint(dir, &daemon.api, "admin")).await.map_err(err)?;

    // (c) keygen: activations (joint key, PIN verifier, CSR co-signed, certificate issued).
    let n_keys = enrolled_keys(quick);
    let start = Instant::now();
    let mut phones = Vec::new();
    let mut workers = Vec::new();
    for w in 0..4 {
        let (dir, api) = (dir.to_path_buf(), daemon.api.clone());
        workers.push(tokio::spawn(async move {
            let mut admin = mcs_client::Connection::connect(&endpoint(&dir, &api, "admin")).await.map_err(err)?;
            let who = if w % 2 == 0 { "app1" } else { "app2" };
            let mut app = mcs_client::Connection::connect(&endpoint(&dir, &api, who)).await.map_err(err)?;
            let mut out = Vec::new();
            for i in 0..n_keys / 4 {
                out.push((who, enroll_and_activate(&mut admin, &mut app, &api, &format!("Bidder {w}-{i}")).await?));
            }
            Ok::<_, String>(out)
        }));
    }
    for w in workers {
        phones.extend(w.await.map_err(err)??);
    }
    let keygen_ops_s = n_keys as f64 / start.elapsed().as_secs_f64();

    // (b) co-sign load; phones of app1 only (the load generator's connections are app1's).
    let app1: Vec<Arc<Phone>> = phones
        .iter()
        .filter(|(w, _)| *w == "app1")
        .map(|(_, p)| Arc::new(Phone::unlock(p.state.clone(), "135790").expect("phone")))
        .collect();
    let (levels, seconds) = load_levels(quick);
    // The same levels for co-decryption, and for the cheapest authenticated read (the
    // ceiling of the TLS/HTTP path, beside which the co-signature's figure reads).
    let ep = endpoint(dir, &daemon.api, "app1");
    let e2e = load_series(&ep, &app1, levels, seconds, LoadOp::Cosign).await?;
    let at_80 = at_80pct_of_peak(&ep, &app1, &e2e, seconds).await?;
    let e2e_decrypt = load_series(&ep, &app1, levels, seconds, LoadOp::Decrypt).await?;
    let reads = load_series(&ep, &app1, levels, seconds, LoadOp::ReadKey).await?;

    // Resident memory after the load (before the PDF, which passes through the daemon).
    let rss_mb = |key: &str| proc_status(daemon.child.id(), key) / 1024.0;
    let rss_after_load = rss_mb("VmRSS:");

    // (d) a 10 MB PDF sealed by scan, end to end.
    let phone = &app1[0];
    // Seal validity for the real daemon under test, which reads the same system clock.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(err)?.as_secs() as i64;
    let iso = |t: i64| -> Res<String> {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map_err(err)?
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(err)
    };
    let seal = admin
        .json(hyper::Method::POST, "/v1/seals", Some(&json!({
            "kind": "official", "name": "Bench seal", "owner": {"org_name": "Bench Co"},
            "image": {"type": "PNG", "data": B64.encode(mcs_pdfseal::image::demo_seal_png(128)), "width_mm": 40, "height_mm": 40},
            "signer_key_ids": [phone.key_id()], "valid_from": iso(now - 60)?, "valid_to": iso(now + 86_400)?,
        })))
        .await
        .map_err(err)?;
    let pdf = mcs_pdfseal::pdf::sample_document_padded(4, 10 << 20);
    let mut gw = mcs_client::Connection::connect(&endpoint(dir, &daemon.api, "gateway")).await.map_err(err)?;
    let mut app = mcs_client::Connection::connect(&endpoint(dir, &daemon.api, "app1")).await.map_err(err)?;
    let start = Instant::now();
    let data =
        json!({ "pdf": B64.encode(&pdf), "seal_id": seal["seal_id"], "placement": {"keyword": "Bidder seal here"} });
    let created = mcs_client::gateway::create_task(&mut gw, "pdf_seal", "Seal the 10 MB bid", data, None, None)
        .await
        .map_err(err)?;
    let code = ScanCode::parse(created["qr"].as_str().unwrap_or("")).map_err(err)?;
    phone.scan(&mut app, &code).await.map_err(err)?;
    let result = mcs_client::gateway::result(&mut gw, &code.task_id, 60).await.map_err(err)?;
    let pdf_10mb_ms = start.elapsed().as_secs_f64() * 1000.0;
    if result["status"] != "completed" {
        return Err(format!("10 MB sealing did not complete: {result}"));
    }
    let peak = rss_mb("VmHWM:");
    drop(daemon);

    // Memory with a big store: the store cloned to `many` keys, the daemon restarted on it,
    // a few co-signatures, resident memory read.
    let many = big_keys.unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let (rss_many, rss_crash, load_many, reads_many) = big_store(bin, dir, many, &app1).await?;
    Ok(json!({
        "e2e": e2e, "e2e_at_80pct_of_peak": at_80, "e2e_decrypt": e2e_decrypt, "read": reads, "keygen_ops_s": keygen_ops_s, "pdf_10mb_ms": pdf_10mb_ms,
        "daemon_rss_mb": rss_after_load, "daemon_peak_rss_mb": peak, "keys": n_keys,
        "big_store": { "keys": many, "daemon_rss_mb": rss_many, "daemon_rss_mb_after_crash": rss_crash, "cosign_ops_s": load_many, "clone_reads": reads_many },
    }))
}

/// Co-sign open loop at 80 % of the best rate of the closed-loop `series`, over as many
/// connections as that best level had, for `seconds`; latencies count from each request's
/// due time. `{"target_ops_s", "ops_s", "p50_ms", "p99_ms", "concurrency"}`.
async fn at_80pct_of_peak(ep: &Endpoint, phones: &[Arc<Phone>], series: &[Value], seconds: Duration) -> Res<Value> {
    let peak = series
        .iter()
        .max_by(|a, b| a["ops_s"].as_f64().partial_cmp(&b["ops_s"].as_f64()).unwrap_or(std::cmp::Ordering::Equal))
        .ok_or("no co-sign series")?;
    let concurrency = peak["concurrency"].as_u64().ok_or("no concurrency")? as usize;
    let target = 0.8 * peak["ops_s"].as_f64().ok_or("no ops_s")?;
    let r = mcs_client::load::run_load(ep, phones, concurrency, seconds, LoadOp::Cosign, Some(target))
        .await
        .map_err(err)?;
    if r.errors > 0 {
        return Err(format!("open-loop co-sign: {} errors: {:?}", r.errors, r.first_error));
    }
    if r.missed > 0 {
        eprintln!("open-loop co-sign: {} requests due were never sent (the backlog was not drained)", r.missed);
    }
    let mut out = figures(concurrency, &r);
    out["target_ops_s"] = target.into();
    Ok(out)
}

/// Clone every key of the store (offline snapshot) into `count` keys, restore, restart,
/// co-sign with the real keys while reading random clones.
async fn big_store(bin: &Path, dir: &Path, count: usize, phones: &[Arc<Phone>]) -> Res<(f64, f64, f64, u64)> {
    let cfg = dir.join("mcsd.toml");
    let image_path = dir.join("store.bak");
    let run = |args: &[&str]| -> Res<()> {
        let out = Command::new(bin.join("mcsd"))
            .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .map_err(err)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("mcsd {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    run(&["backup", "--out", image_path.to_str().ok_or("path")?])?;
    let image = std::fs::read(&image_path).map_err(err)?;
    let (grown, copies) = grow_image(&image, count)?;
    drop(image);
    std::fs::write(&image_path, &grown).map_err(err)?;
    drop(grown);
    std::fs::remove_dir_all(dir.join("db")).map_err(err)?;
    run(&["restore", "--from", image_path.to_str().ok_or("path")?])?;
    let _ = std::fs::remove_file(&image_path);
    let daemon = spawn_daemon(bin, dir, "mcsd2.log")?;
    // Co-sign with the real keys while two more connections read the records of random
    // clones (`<id>x<c>`; their wrapped secrets are bound to the original id, so they
    // cannot co-sign): the store's pages really move, as with a million users.
    let ep = endpoint(dir, &daemon.api, "app1");
    let ids: Vec<String> = phones.iter().map(|p| p.state.key_id.clone()).collect();
    let readers: Vec<_> =
        (0..2u64).map(|w| random_key_reads(ep.clone(), ids.clone(), w, 0, copies.max(1) as u64)).collect();
    let r = mcs_client::load::cosign_load(&ep, phones, 8, Duration::from_secs(5)).await.map_err(err)?;
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.map_err(err)??;
    }
    if r.errors > 0 {
        return Err(format!(
            "{} co-signs failed on the big store, first: {}",
            r.errors,
            r.first_error.unwrap_or_default()
        ));
    }
    let field = |name: &str| proc_status(daemon.child.id(), name);
    eprintln!(
        "big store daemon: VmRSS {} kB, RssAnon {} kB, threads {}",
        field("VmRSS:"),
        field("RssAnon:"),
        field("Threads:")
    );
    let rss = field("VmRSS:") / 1024.0;
    // Killed (no clean close): the next start checks every vault slot against the records,
    // a pass over every key; what it leaves resident, once serving.
    let _ = Command::new("kill").args(["-KILL", &daemon.child.id().to_string()]).status();
    drop(daemon);
    let again = spawn_daemon(bin, dir, "mcsd3.log")?;
    let rss_after_crash = proc_status(again.child.id(), "VmRSS:") / 1024.0;
    Ok((rss, rss_after_crash, r.ops_per_sec(), reads))
}

/// For 5 s, read the records of random clones `<id>x<n>` (n in `first..first + copies`) of
/// the keys `ids`, one request at a time; the reads done.
fn random_key_reads(
    ep: Endpoint,
    ids: Vec<String>,
    seed: u64,
    first: u64,
    copies: u64,
) -> tokio::task::JoinHandle<Res<u64>> {
    tokio::spawn(async move {
        let mut conn = mcs_client::Connection::connect(&ep).await.map_err(err)?;
        let (mut pick, mut reads) = (0x2545_f491_4f6c_dd1du64 ^ seed, 0u64);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            pick ^= pick << 13;
            pick ^= pick >> 7;
            pick ^= pick << 17;
            let id = &ids[(pick % ids.len() as u64) as usize];
            let path = format!("/v1/keys/{id}x{}", first + (pick >> 20) % copies);
            conn.json(hyper::Method::GET, &path, None).await.map_err(|e| format!("{path}: {e}"))?;
            reads += 1;
        }
        Ok(reads)
    })
}

/// A number field of `/proc/<pid>/status` (`VmRSS:` and the like, kB), 0 if unreadable.
fn proc_status(pid: u32, name: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(name).map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

/// A store image (see `Store::snapshot`) with each key record (which holds its vault
/// references) and device index entry copied until there are `count` keys. Also returns
/// the copies per key.
fn grow_image(image: &[u8], count: usize) -> Res<(Vec<u8>, usize)> {
    let body = &image[8..image.len() - 32];
    let mut rest = body;
    let take = |rest: &mut &[u8]| -> Res<Vec<u8>> {
        let n = u32::from_be_bytes(rest.get(..4).ok_or("truncated")?.try_into().map_err(err)?) as usize;
        let v = rest.get(4..4 + n).ok_or("truncated")?.to_vec();
        *rest = &rest[4 + n..];
        Ok(v)
    };
    let mut records: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut vault = Vec::new();
    loop {
        let (&tag, tail) = rest.split_first().ok_or("truncated")?;
        rest = tail;
        match tag {
            0 => break,
            1 => records.push((take(&mut rest)?, take(&mut rest)?, take(&mut rest)?)),
            2 => vault = take(&mut rest)?,
            _ => return Err("bad image".into()),
        }
    }
    let keys: Vec<String> = records
        .iter()
        .filter(|(t, _, _)| t == b"keys")
        .map(|(_, k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    let mut out = b"MCSDBAK1".to_vec();
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    };
    let emit = |out: &mut Vec<u8>, t: &[u8], k: &[u8], v: &[u8]| {
        out.push(1);
        put(out, t);
        put(out, k);
        put(out, v);
    };
    for (t, k, v) in &records {
        emit(&mut out, t, k, v);
    }
    let copies = count.saturating_sub(keys.len()) / keys.len().max(1);
    for (t, k, v) in &records {
        let ks = String::from_utf8_lossy(k).into_owned();
        let Some(orig) = keys.iter().find(|id| ks.contains(id.as_str())) else { continue };
        // The record and the phone's index. (Not in the certificate-end index: the clones'
        // certificates are their originals', outside any expiry window the bench sees.)
        if !matches!(t.as_slice(), b"keys" | b"device_keys") {
            continue;
        }
        let vs = String::from_utf8_lossy(v).into_owned();
        for c in 0..copies {
            let clone = format!("{orig}x{c}");
            let key = ks.replace(orig.as_str(), &clone);
            let value =
                if t.as_slice() == b"keys" { vs.replacen(orig.as_str(), &clone, 1).into_bytes() } else { v.clone() };
            emit(&mut out, t, key.as_bytes(), &value);
        }
    }
    out.push(2);
    put(&mut out, &vault);
    out.push(0);
    let digest = sha256(&out);
    out.extend_from_slice(&digest);
    Ok((out, copies))
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| exe_dir.join("../bench/summary.json"));
    let big_keys = args.iter().position(|a| a == "--keys").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok());
    let work = out.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&work).expect("bench directory");

    if args.iter().any(|a| a == "--stores") {
        // The store comparison alone (sled reference, then PostgreSQL), for iterating on it.
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let keys = big_keys.unwrap_or(if quick { 100_000 } else { 1_000_000 });
        let pg = rt.block_on(async {
            let sled = postgres::sled_reference(&exe_dir, &work, quick).await?;
            postgres::run(&exe_dir, &work, quick, sled, keys).await
        });
        match pg {
            Ok((v, series)) => {
                let v = json!({ "postgres": v, "e2e_postgres": series });
                println!("{}", serde_json::to_string_pretty(&v).expect("json"))
            }
            Err(e) => {
                eprintln!("store benchmark failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    println!("== server half (one core){}", if quick { ", quick" } else { "" });
    let half = match server_half(quick) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("server-half benchmark failed: {e}");
            std::process::exit(1);
        }
    };
    if args.iter().any(|a| a == "--micro") {
        println!("{}", serde_json::to_string_pretty(&half).expect("json"));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("== end to end (daemon on SoftHSM, mTLS, durable and audited)");
    let e2e = match rt.block_on(end_to_end(&exe_dir, &work.join("env"), quick, big_keys)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("end-to-end benchmark failed: {e}");
            std::process::exit(1);
        }
    };
    println!("== end to end on PostgreSQL (1 and 2 nodes, one database)");
    let sled_c8 = e2e["e2e"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["concurrency"] == 8))
        .and_then(|r| r["ops_s"].as_f64())
        .unwrap_or(0.0);
    let pg_keys = big_keys.unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let (pg, pg_series) = match rt.block_on(postgres::run(&exe_dir, &work, quick, sled_c8, pg_keys)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("postgres benchmark failed: {e}");
            std::process::exit(1);
        }
    };
    // The share of the pure-math ceiling the whole service reaches: best co-signs/s over
    // two cores' worth of server halves (the load generator runs on the same cores).
    let e2e_postgres = Value::from(pg_series);
    let ceiling = |per_core: &Value| 2.0 * per_core.as_f64().unwrap_or(f64::INFINITY);
    let summary = json!({
        "server_half": half,
        "postgres": pg,
        "e2e": e2e["e2e"],
        "e2e_at_80pct_of_peak": e2e["e2e_at_80pct_of_peak"],
        "e2e_postgres_vs_sled": best(&e2e_postgres) / best(&e2e["e2e"]),
        "e2e_postgres": e2e_postgres,
        "e2e_decrypt": e2e["e2e_decrypt"],
        "read": e2e["read"],
        "read_ops_s": best(&e2e["read"]),
        "e2e_vs_two_cores_of_server_half": best(&e2e["e2e"]) / ceiling(&half["ours_ops_s"]),
        "e2e_decrypt_vs_two_cores_of_server_half": best(&e2e["e2e_decrypt"]) / ceiling(&half["ours_decrypt_ops_s"]),
        "keygen_ops_s": e2e["keygen_ops_s"],
        "pdf_10mb_ms": e2e["pdf_10mb_ms"],
        "daemon_rss_mb": e2e["daemon_rss_mb"],
        "daemon_peak_rss_mb": e2e["daemon_peak_rss_mb"],
        "keys_in_store": e2e["keys"],
        "big_store": e2e["big_store"],
        "quick": quick,
    });
    std::fs::write(&out, serde_json::to_vec_pretty(&summary).expect("json")).expect("summary.json");

    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let h = &summary["server_half"];
    println!();
    println!("server half, per core              ops/s     vs ours");
    println!("  ours: sign (k3·Q1 + k2·G …)   {:>10.0}", f(&h["ours_ops_s"]));
    println!("  ours: decrypt (d2⁻¹·T1)       {:>10.0}", f(&h["ours_decrypt_ops_s"]));
    println!(
        "  RustCrypto sm2: same half     {:>10.0}   ours ×{:.2}",
        f(&h["rustcrypto_ops_s"]),
        f(&h["ratio_vs_rustcrypto"])
    );
    println!(
        "  RustCrypto sm2: same decrypt  {:>10.0}   ours ×{:.2}",
        f(&h["rustcrypto_decrypt_ops_s"]),
        f(&h["decrypt_ratio_vs_rustcrypto"])
    );
    println!("  RustCrypto sm2: whole sign    {:>10.0}   (k·G only, for scale)", f(&h["rustcrypto_whole_sign_ops_s"]));
    println!(
        "  openssl speed sm2: sign       {:>10.0}   ours ×{:.2}",
        f(&h["openssl_sign_ops_s"]),
        f(&h["ratio_vs_openssl"])
    );
    println!(
        "  openssl speed ecdsap256: verify {:>8.0}   ours ×{:.2}   (same shape: one variable-, one fixed-base product)",
        f(&h["openssl_p256_verify_ops_s"]),
        f(&h["ratio_vs_openssl_p256_verify"])
    );
    println!(
        "  timing, fixed vs random d2: |t| = {:.2} ({})",
        f(&h["constant_time_t"]).abs(),
        if h["constant_time_ok"] == true { "no leak detected, |t| < 4.5" } else { "LEAK SUSPECTED" }
    );
    for (title, key) in [
        ("end-to-end co-sign", "e2e"),
        ("end-to-end co-sign, PostgreSQL, 1 node", "e2e_postgres"),
        ("end-to-end co-decrypt", "e2e_decrypt"),
        ("GET /v1/keys/{id} (the HTTP/mTLS ceiling)", "read"),
    ] {
        println!("{title:<40} ops/s    p50 ms    p99 ms");
        for r in summary[key].as_array().into_iter().flatten() {
            println!(
                "  concurrency {:>4}                    {:>9.0} {:>9.2} {:>9.2}",
                r["concurrency"],
                f(&r["ops_s"]),
                f(&r["p50_ms"]),
                f(&r["p99_ms"])
            );
        }
    }
    let o = &summary["e2e_at_80pct_of_peak"];
    println!(
        "co-sign open loop at 80 % of the peak: {:.0} /s due over {} connections: {:.0} /s, p50 {:.2} ms, p99 {:.2} ms (target p99 < 20 ms: {})",
        f(&o["target_ops_s"]),
        o["concurrency"],
        f(&o["ops_s"]),
        f(&o["p50_ms"]),
        f(&o["p99_ms"]),
        if f(&o["p99_ms"]) < 20.0 { "met" } else { "MISSED" }
    );
    println!(
        "best co-sign on PostgreSQL (1 node) ÷ best on sled: ×{:.2} (target ≥ 0.5: {})",
        f(&summary["e2e_postgres_vs_sled"]),
        if f(&summary["e2e_postgres_vs_sled"]) >= 0.5 { "met" } else { "BELOW" }
    );
    println!(
        "best co-sign ÷ (2 × server half per core): {:.3}; co-decrypt: {:.3}; best read {:.0} /s",
        f(&summary["e2e_vs_two_cores_of_server_half"]),
        f(&summary["e2e_decrypt_vs_two_cores_of_server_half"]),
        f(&summary["read_ops_s"])
    );
    println!("keygen (activation + certificate): {:.1} /s", f(&summary["keygen_ops_s"]));
    println!("10 MB PDF sealed by scan, end to end: {:.0} ms", f(&summary["pdf_10mb_ms"]));
    println!(
        "daemon RSS after the load: {:.1} MB ({} keys); peak with the 10 MB PDF: {:.1} MB",
        f(&summary["daemon_rss_mb"]),
        summary["keys_in_store"],
        f(&summary["daemon_peak_rss_mb"])
    );
    let b = &summary["big_store"];
    println!(
        "with {} keys in the store: daemon RSS {:.1} MB, co-sign {:.0} /s (concurrency 8) while {} random keys were read",
        b["keys"],
        f(&b["daemon_rss_mb"]),
        f(&b["cosign_ops_s"]),
        b["clone_reads"]
    );
    println!(
        "  after a kill -9 and a restart (every vault slot checked): daemon RSS {:.1} MB",
        f(&b["daemon_rss_mb_after_crash"])
    );
    println!("summary: {}", out.display());
}
