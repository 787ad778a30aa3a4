//! Several `mcsd` nodes on one PostgreSQL database, for the cluster tests: [`PgDb`] is a
//! fresh database on the throw-away cluster the tests of this process share, and
//! [`DevEnv::on_postgres`] / [`DevEnv::node_copy`] make the nodes' dev environments.
//!
//! Every node gets a copy of the first node's environment — SoftHSM token, PKI, HSM PIN,
//! pinned audit key — standing in for an HSM cluster that holds the same KEK, and its own
//! `node_id`. The `[store] path` of a dev config is relative to the config's directory, so
//! each node's control socket is its own.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use mcsd::store::postgres::testing::Cluster;

use crate::{DevEnv, bin, layout_of_this_run};

/// A database of its own on a PostgreSQL cluster.
pub struct PgDb {
    pub cluster: Arc<Cluster>,
    pub dbname: String,
}

impl PgDb {
    /// A fresh database on the cluster the tests running now share.
    pub async fn fresh() -> PgDb {
        Self::fresh_on(Cluster::shared()).await
    }

    pub async fn fresh_on(cluster: Arc<Cluster>) -> PgDb {
        let config = cluster.fresh_database().await;
        let dbname = config.get_dbname().expect("a database name").to_owned();
        PgDb { cluster, dbname }
    }

    /// The daemon's `[store] url`.
    pub fn url(&self) -> String {
        self.cluster.url(&self.dbname)
    }

    /// A superuser client on the database, for reading and tampering behind the daemons.
    pub async fn client(&self) -> tokio_postgres::Client {
        mcsd::store::postgres::testing::connect(&self.cluster.config(&self.dbname)).await
    }
}

/// Replace `from` by `to` in a text file; panics if `from` is not there.
fn rewrite(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} does not contain {from:?}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

impl DevEnv {
    /// `mcsd dev-init --store-url URL --node-id NODE`: a node of a cluster on `url`.
    pub fn on_postgres(url: &str, node_id: &str) -> DevEnv {
        let dir = tempfile::Builder::new().prefix("mcsd-e2e-").tempdir().expect("temp dir");
        let out = Command::new(bin("mcsd"))
            .args(["dev-init", "--layout", layout_of_this_run(), "--store-url", url, "--node-id", node_id, "--dir"])
            .arg(dir.path())
            .output()
            .expect("running mcsd dev-init");
        assert!(out.status.success(), "dev-init failed: {}", String::from_utf8_lossy(&out.stderr));
        DevEnv { dir, daemon_env: Vec::new(), tmpfs: false }
    }

    /// Another node of this environment's cluster: a copy of its token, PKI, HSM PIN and
    /// audit key (the same KEK and audit key, as an HSM cluster would give), as `node_id`.
    pub fn node_copy(&self, node_id: &str) -> DevEnv {
        let dir = tempfile::Builder::new().prefix("mcsd-e2e-").tempdir().expect("temp dir");
        let out = Command::new(bin("mcsd"))
            .args(["dev-init", "--node-id", node_id, "--join"])
            .arg(self.path())
            .arg("--dir")
            .arg(dir.path())
            .output()
            .expect("running mcsd dev-init --join");
        assert!(out.status.success(), "dev-init --join failed: {}", String::from_utf8_lossy(&out.stderr));
        DevEnv { dir, daemon_env: Vec::new(), tmpfs: false }
    }

    /// Replace the `[store] url` line (e.g. by a multi-host connection string).
    pub fn set_store_url(&self, url: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let line = text.lines().find(|l| l.starts_with("url = ")).expect("a url line").to_owned();
        rewrite(&self.config(), &line, &format!("url = {:?}", url));
    }

    /// `mcsd ARGS --config <this node>` with the node's SoftHSM; (success, stdout+stderr).
    pub fn mcsd(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(bin("mcsd"))
            .env("SOFTHSM2_CONF", self.path().join("softhsm2.conf"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

/// `n` nodes (`node-1` …) on `url`, `extra` appended to each config.
pub fn nodes(url: &str, n: usize, extra: &str) -> Vec<DevEnv> {
    let first = DevEnv::on_postgres(url, "node-1");
    first.append_config(extra);
    let mut envs = vec![];
    for i in 2..=n {
        envs.push(first.node_copy(&format!("node-{i}")));
    }
    envs.insert(0, first);
    envs
}

/// Poll `cond` every 20 ms until it holds; panics with `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
