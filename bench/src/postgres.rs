//! The PostgreSQL part of `cargo xtask bench` (issue 13): durable, audited co-signatures
//! over mTLS on the postgres backend — one node over the concurrency levels of sled's
//! series, then two nodes on this machine sharing the database — as ratios to sled's
//! figures in the same run; and
//! the daemon's resident memory as the key count grows (key rows cloned in SQL), which
//! stays flat because nothing per key is held in memory.
//!
//! The database is a throw-away cluster of Debian's PostgreSQL (mcsd's `pg-testing`
//! helper, which turns fsync off for the tests; here it is turned back on, with synchronous
//! commit, as in production), on the same cores as the daemons and the load generator.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcs_client::load::LoadOp;
use mcs_client::phone::Phone;
use mcsd::store::postgres::testing::Cluster;
use serde_json::{Value, json};

use crate::{
    Res, endpoint, enroll_and_activate, enrolled_keys, err, load_levels, load_series, proc_status, random_key_reads,
    spawn_daemon, start_daemon,
};

const CONCURRENCY: usize = 8;

fn mcsd(bin: &Path, args: &[&str]) -> Res<String> {
    let out = std::process::Command::new(bin.join("mcsd")).args(args).output().map_err(err)?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(format!("mcsd {args:?}: {}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// Phones enrolled and activated on the node at `dir`.
async fn phones_on(dir: &Path, api: &str, n: usize) -> Res<Vec<Arc<Phone>>> {
    let mut admin = mcs_client::Connection::connect(&endpoint(dir, api, "admin")).await.map_err(err)?;
    let mut app = mcs_client::Connection::connect(&endpoint(dir, api, "app1")).await.map_err(err)?;
    let mut phones = Vec::new();
    for i in 0..n {
        let p = enroll_and_activate(&mut admin, &mut app, api, &format!("Bench bidder {i}")).await?;
        phones.push(Arc::new(Phone::unlock(p.state.clone(), "135790").map_err(err)?));
    }
    Ok(phones)
}

/// `mcs-bench --stores`: only the store comparison — sled's co-sign figure at the same
/// concurrency, measured here, then [`run`].
pub async fn sled_reference(bin: &Path, work: &Path, quick: bool) -> Res<f64> {
    let dir = work.join("sled-ref");
    let daemon = start_daemon(bin, &dir)?;
    let phones = phones_on(&dir, &daemon.api, enrolled_keys(quick) / 2).await?;
    let (ops, p99) = cosign(&dir, &daemon.api, &phones, load_levels(quick).1).await?;
    println!("sled, 1 node, c={CONCURRENCY}: {ops:.0} co-signs/s, p99 {p99:.1} ms");
    Ok(ops)
}

/// One load run against one node: (ops/s, p99 ms).
async fn cosign(dir: &Path, api: &str, phones: &[Arc<Phone>], seconds: Duration) -> Res<(f64, f64)> {
    let r =
        mcs_client::load::cosign_load(&endpoint(dir, api, "app1"), phones, CONCURRENCY, seconds).await.map_err(err)?;
    if r.errors > 0 {
        return Err(format!("{} co-signs failed on postgres, first: {}", r.errors, r.first_error.unwrap_or_default()));
    }
    Ok((r.ops_per_sec(), r.quantile_ms(0.99)))
}

/// The `postgres` object of the summary, and `e2e_postgres`: one node's co-sign series
/// over sled's levels (its point at [`CONCURRENCY`] is `one_node`), on as many keys.
pub async fn run(bin: &Path, work: &Path, quick: bool, sled_ops: f64, big_keys: usize) -> Res<(Value, Vec<Value>)> {
    let cluster = Cluster::start();
    let db = cluster.fresh_database().await;
    let admin_db = mcsd::store::postgres::testing::connect(&cluster.config("postgres")).await;
    // Two statements: ALTER SYSTEM may not run in the implicit transaction of a batch.
    admin_db.batch_execute("ALTER SYSTEM SET fsync = on").await.map_err(err)?;
    admin_db.batch_execute("SELECT pg_reload_conf()").await.map_err(err)?;
    let url = format!(
        "host={} port=5432 user=postgres dbname={}",
        cluster.socket_dir().display(),
        db.get_dbname().ok_or("no database name")?
    );
    let (a, b) = (work.join("pg-a"), work.join("pg-b"));
    for d in [&a, &b] {
        let _ = std::fs::remove_dir_all(d);
    }
    let a_str = a.to_str().ok_or("path")?;
    mcsd(bin, &["dev-init", "--dir", a_str, "--store-url", &url, "--node-id", "bench-a"])?;
    mcsd(bin, &["dev-init", "--dir", b.to_str().ok_or("path")?, "--join", a_str, "--node-id", "bench-b"])?;
    let node_a = spawn_daemon(bin, &a, "mcsd.log")?;

    let phones = phones_on(&a, &node_a.api, enrolled_keys(quick) / 2).await?;
    let (levels, seconds) = load_levels(quick);

    let series = load_series(&endpoint(&a, &node_a.api, "app1"), &phones, levels, seconds, LoadOp::Cosign).await?;
    for r in &series {
        println!(
            "postgres, 1 node, c={}: {:.0} co-signs/s, p50 {:.1} ms, p99 {:.1} ms",
            r["concurrency"],
            r["ops_s"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0)
        );
    }
    let at = series.iter().find(|r| r["concurrency"] == CONCURRENCY).ok_or("no level at CONCURRENCY")?;
    let (one_ops, one_p99) = (at["ops_s"].as_f64().unwrap_or(0.0), at["p99_ms"].as_f64().unwrap_or(0.0));
    println!(
        "postgres, 1 node, c={CONCURRENCY}: {one_ops:.0} co-signs/s, p99 {one_p99:.1} ms ({:.2} × sled)",
        one_ops / sled_ops
    );

    let node_b = spawn_daemon(bin, &b, "mcsd.log")?;
    let (ra, rb) = tokio::join!(cosign(&a, &node_a.api, &phones, seconds), cosign(&b, &node_b.api, &phones, seconds));
    let ((ops_a, p99_a), (ops_b, p99_b)) = (ra?, rb?);
    let two_ops = ops_a + ops_b;
    println!(
        "postgres, 2 nodes, c={CONCURRENCY} each: {two_ops:.0} co-signs/s, p99 {:.1} ms ({:.2} × sled)",
        p99_a.max(p99_b),
        two_ops / sled_ops
    );
    drop(node_b);
    let rss_small = proc_status(node_a.child.id(), "VmRSS:") / 1024.0;
    drop(node_a);

    // Memory as the key count grows: clone the key rows in SQL (`<id>x<n>`), restart the
    // node, co-sign while reading random clones, read its resident memory.
    let started = Instant::now();
    let client = mcsd::store::postgres::testing::connect(&db).await;
    let per_key = (big_keys / phones.len()).max(1) as i64;
    client
        .execute(
            "INSERT INTO keys (id, device_id, enrollment_id, status, pin_failures, pin_locked, record)
             SELECT k.id || 'x' || g, k.device_id || 'x' || g, k.enrollment_id, k.status, 0, false, k.record
             FROM keys k, generate_series(1, $1::bigint) g",
            &[&per_key],
        )
        .await
        .map_err(err)?;
    client.batch_execute("VACUUM ANALYZE keys").await.map_err(err)?;
    let keys: i64 = client.query_one("SELECT count(*) FROM keys", &[]).await.map_err(err)?.get(0);
    let grown_in = started.elapsed().as_secs_f64();
    let node_a = spawn_daemon(bin, &a, "mcsd2.log")?;
    let ep = endpoint(&a, &node_a.api, "app1");
    let ids: Vec<String> = phones.iter().map(|p| p.state.key_id.clone()).collect();
    let reader = random_key_reads(ep.clone(), ids, 0, 1, per_key as u64);
    let (big_ops, big_p99) = cosign(&a, &node_a.api, &phones, Duration::from_secs(5)).await?;
    let reads = reader.await.map_err(err)??;
    let rss_big = proc_status(node_a.child.id(), "VmRSS:") / 1024.0;
    println!(
        "postgres, {keys} keys: daemon RSS {rss_big:.0} MB ({:.2} × with {} keys), {big_ops:.0} co-signs/s, {reads} random key reads; cloned in {grown_in:.0} s",
        rss_big / rss_small.max(1.0),
        phones.len()
    );
    let summary = json!({
        "concurrency": CONCURRENCY,
        "sled_ops_s": sled_ops,
        "one_node": { "ops_s": one_ops, "p99_ms": one_p99, "vs_sled": one_ops / sled_ops },
        "two_nodes": { "ops_s": two_ops, "p99_ms": p99_a.max(p99_b), "vs_sled": two_ops / sled_ops },
        "big_store": {
            "keys": keys, "daemon_rss_mb": rss_big, "daemon_rss_mb_few_keys": rss_small,
            "rss_vs_few_keys": rss_big / rss_small.max(1.0), "cosign_ops_s": big_ops, "p99_ms": big_p99, "key_reads": reads,
        },
    });
    Ok((summary, series))
}
