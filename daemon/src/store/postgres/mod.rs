//! The PostgreSQL engine of the store: [`PgStore`] implements the [`Storage`](super::Storage)
//! interface on one database that any number of mcsd nodes share. The schema is versioned
//! SQL (`migrations/NNNN_name.sql`) applied at start-up by `migrate.rs`; each aggregate's
//! steps are in `keys.rs`, `tasks.rs` and `other.rs`, the backup image in `backup.rs`.
//!
//! Every step of the interface is one transaction, committed before the method returns, so
//! what a method acknowledged is as durable as the database's commit (with synchronous
//! standbys, on them too) and [`Durability::flush`] has nothing left to do. Steps that
//! compare and swap lock the row they compare (`SELECT … FOR UPDATE`, or one `UPDATE …
//! WHERE` the expected value), which orders them across nodes.
//!
//! The interface is synchronous (sled works inline); the database client is async. A
//! [`PgStore`] owns a small runtime of its own that drives the connections, and each call
//! polls its query future on the calling thread (`bridge.rs`), inside `block_in_place`
//! when that thread is a worker of the daemon's runtime, so the worker's other tasks move
//! on meanwhile. The daemon's runtime is never blocked on itself.
//!
//! Per node: audit entries go to the node's own chain (`node_id`), and a session advisory
//! lock on a connection of its own keeps two running processes from using the same node
//! id; the same connection holds the leads of singleton jobs (the task sweeper).
//!
//! `testing.rs` (tests, and the end-to-end tests through the `pg-testing` feature) starts a
//! throw-away cluster of Debian's PostgreSQL binaries.

mod backup;
mod bridge;
#[cfg(test)]
mod conformance;
mod delegations;
mod from_sled;
mod inbox;
mod keys;
mod migrate;
mod other;
mod tasks;
#[cfg(any(test, feature = "pg-testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Config;

pub use backup::is_pg_image;
pub use from_sled::Copied;
pub use migrate::{MIGRATIONS, MigrateError, Migration, latest_version, migrate};

use super::codec::{decode, encode};
use super::{Durability, Flushing, StoreError};
use bridge::Bridge;

/// A SQL error is the step's (`Db`); anything else means the database is out of reach.
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => StoreError::Db(format!("{} (SQLSTATE {})", db.message(), db.code().code())),
            None => StoreError::Unreachable(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Unreachable(format!("connection pool: {other}")),
        }
    }
}

/// The first key of mcsd's session advisory locks ("mcsd", then 2); the second is the
/// node id's or the job's hash.
const NODE_LOCK: i32 = 0x6d63_7302;
const JOB_LOCK: i32 = 0x6d63_7303;

/// How to reach the database and who this node is.
#[derive(Clone)]
pub struct PgOptions {
    pub config: Config,
    pub pool_size: usize,
    pub node_id: String,
    /// TLS to the database (`None`: plain TCP or the Unix socket).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// How long to wait for this node id's lock at start: a process of the same node that
    /// was just killed holds it until the server notices its connection is gone.
    pub node_lock_wait: std::time::Duration,
    /// Take the node's lock (a serving node). Tools that only read, or write no audit
    /// entry (`mcsd audit verify`, `backup`), run beside the node without it.
    pub lock_node: bool,
    /// Apply missing migrations (a serving node, the tools). `false`: refuse a schema
    /// that is not this binary's, changing nothing (`mcsd check-config`).
    pub migrate: bool,
}

impl PgOptions {
    pub fn new(config: Config, node_id: &str) -> PgOptions {
        PgOptions {
            config,
            pool_size: 16,
            node_id: node_id.to_owned(),
            tls: None,
            node_lock_wait: std::time::Duration::from_secs(10),
            lock_node: true,
            migrate: true,
        }
    }
}

pub(super) struct Inner {
    pub(super) bridge: Bridge,
    pub(super) pool: Pool,
    pub(super) node: String,
    options: PgOptions,
    failed: AtomicBool,
    /// The connection holding this node's advisory locks (node id, job leads).
    session: std::sync::Mutex<Option<Session>>,
}

struct Session {
    client: tokio_postgres::Client,
    leads: std::collections::BTreeSet<String>,
}

/// The store on PostgreSQL (see the module's documentation).
#[derive(Clone)]
pub struct PgStore {
    pub(super) inner: Arc<Inner>,
}

fn hash32(s: &str) -> i32 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    i32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The text label of a serde enum (`"active"`, `"completed"` …), for the SQL columns.
pub(super) fn label<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

pub(super) fn kind_label(kind: crate::model::secret::SecretKind) -> &'static str {
    // The labels are ASCII constants.
    std::str::from_utf8(kind.label()).expect("ASCII label")
}

/// A row's versioned record, named `<table>/<id>` in errors.
pub(super) fn decode_row<T: serde::de::DeserializeOwned>(what: &str, id: &str, bytes: &[u8]) -> Result<T, StoreError> {
    decode(format!("{what}/{id}").as_bytes(), bytes)
}

pub(super) fn encode_record<T: serde::Serialize>(rec: &T) -> Vec<u8> {
    encode(rec)
}

impl PgStore {
    /// Connect, apply the migrations this binary has (refusing a newer schema), and take
    /// this node's lock (refusing a node id another running process holds).
    pub fn open(options: PgOptions) -> Result<PgStore, StoreError> {
        let bridge = Bridge::new()?;
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match &options.tls {
            None => Manager::from_config(options.config.clone(), tokio_postgres::NoTls, manager_config),
            Some(tls) => Manager::from_config(options.config.clone(), bridge::tls(tls.clone()), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Db(format!("connection pool: {e}")))?;
        let inner = Inner {
            bridge,
            pool,
            node: options.node_id.clone(),
            options,
            failed: AtomicBool::new(false),
            session: std::sync::Mutex::new(None),
        };
        let store = PgStore { inner: Arc::new(inner) };
        let apply = store.inner.options.migrate;
        store.run(async {
            let mut client = store.inner.pool.get().await?;
            let refused = |e| match e {
                MigrateError::Db(e) => StoreError::from(e),
                other => StoreError::Refused(other.to_string()),
            };
            if !apply {
                let pending = migrate::pending(&mut client).await.map_err(refused)?;
                if let (Some(first), Some(last)) = (pending.first(), pending.last()) {
                    return Err(StoreError::Refused(format!(
                        "the database schema lacks migrations {first} to {last} of this mcsd (`mcsd run` applies them)"
                    )));
                }
                return Ok(());
            }
            let applied = migrate(&mut client).await.map_err(refused)?;
            if !applied.is_empty() {
                tracing::info!(?applied, "store: database schema migrated");
            }
            Ok(())
        })?;
        if store.inner.options.lock_node {
            store.take_node_lock()?;
        }
        Ok(store)
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// Run one step's future to completion from synchronous code.
    pub(super) fn run<T>(&self, f: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let out = self.inner.bridge.run(f);
        if let Err(StoreError::Unreachable(_)) = &out {
            self.inner.failed.store(true, Ordering::SeqCst);
        }
        out
    }

    async fn session_client(&self) -> Result<tokio_postgres::Client, StoreError> {
        let o = &self.inner.options;
        let (client, conn) = match &o.tls {
            None => o.config.connect(tokio_postgres::NoTls).await.map(|(c, conn)| (c, bridge::drive(conn)))?,
            Some(tls) => o.config.connect(bridge::tls(tls.clone())).await.map(|(c, conn)| (c, bridge::drive(conn)))?,
        };
        drop(conn);
        Ok(client)
    }

    /// The node id's lock, on a connection of its own, held while the store is open. A
    /// process that just stopped may still hold it for a moment (its backend exits after
    /// the socket closes): wait up to `node_lock_wait`.
    fn take_node_lock(&self) -> Result<(), StoreError> {
        let node = self.inner.node.clone();
        let client = self.run(self.session_client())?;
        let deadline = std::time::Instant::now() + self.inner.options.node_lock_wait;
        loop {
            let got: bool = self.run(async {
                Ok(client.query_one("SELECT pg_try_advisory_lock($1, $2)", &[&NODE_LOCK, &hash32(&node)]).await?.get(0))
            })?;
            if got {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(StoreError::Refused(format!(
                    "node id {node:?} is in use by another running mcsd on this database: give each node its own \
                     [store] node_id"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        *self.inner.session.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Session { client, leads: Default::default() });
        Ok(())
    }

    /// Whether the connection holding this node's lock is up (a tool that takes no lock
    /// has none to lose).
    fn node_lock_held(&self) -> bool {
        !self.inner.options.lock_node
            || self
                .inner
                .session
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_some_and(|s| !s.client.is_closed())
    }

    /// Whether this node holds (or has now taken) the lead of `job`. A lead lasts as long as
    /// the session connection: if it broke, the locks went with it and are taken again.
    pub fn lead(&self, job: &str) -> bool {
        let mut guard = self.inner.session.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|s| s.client.is_closed()) {
            *guard = None;
            drop(guard);
            if let Err(e) = self.take_node_lock() {
                tracing::warn!(error = %e, "store: the node's session connection could not be reopened");
                return false;
            }
            guard = self.inner.session.lock().unwrap_or_else(|p| p.into_inner());
        }
        let Some(session) = guard.as_mut() else { return false };
        if session.leads.contains(job) {
            return true;
        }
        let got = self.inner.bridge.run(async {
            Ok::<bool, StoreError>(
                session
                    .client
                    .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&JOB_LOCK, &hash32(job)])
                    .await?
                    .get(0),
            )
        });
        match got {
            Ok(true) => {
                session.leads.insert(job.to_owned());
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, job, "store: taking a job's lead");
                false
            }
        }
    }

    /// Whether a process holds `node`'s lock now (it is running).
    pub fn node_running(&self, node: &str) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let row = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                         AND classid = $1::int4::oid AND objid = $2::int4::oid AND objsubid = 2
                         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                    &[&NODE_LOCK, &hash32(node)],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    /// The nodes that have audit chains in this database.
    pub fn audit_nodes(&self) -> Result<Vec<String>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let rows = c.query("SELECT DISTINCT node_id FROM audit_entries ORDER BY node_id", &[]).await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// The same database as another node: its audit chain (for `mcsd audit verify` over
    /// every node's chain), sharing this store's connections.
    pub fn as_node(&self, node: &str) -> PgStore {
        PgStore {
            inner: Arc::new(Inner {
                bridge: self.inner.bridge.clone(),
                pool: self.inner.pool.clone(),
                node: node.to_owned(),
                options: self.inner.options.clone(),
                failed: AtomicBool::new(false),
                session: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Whether the database holds no record at all (`mcsd store migrate` refuses a target
    /// that does).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            for table in backup::TABLES {
                let row = c.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[]).await?;
                if row.get::<_, bool>(0) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// A fact of the `meta` table.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            Ok(c.query_opt("SELECT value FROM meta WHERE name = $1", &[&name]).await?.map(|r| r.get(0)))
        })
    }

    pub fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2",
                &[&name, &value],
            )
            .await?;
            Ok(())
        })
    }
}

/// Commits done by this process, for the `fsync_count` of the interface: PostgreSQL syncs
/// at each commit (and groups concurrent ones itself), so `flush` adds none.
static FLUSH_SYNCS: AtomicU64 = AtomicU64::new(0);

impl Durability for PgStore {
    /// Every step committed before it returned: nothing is left to make durable.
    fn flush(&self) -> Flushing<'_> {
        Box::pin(async { self.flush_blocking() })
    }

    /// A step that returned `Ok` committed, so there is nothing to sync; what is refused is
    /// acknowledging anything while this node's lock is lost (another process could be
    /// this node meanwhile). A database error on some other step does not fail this one:
    /// answering a committed step with an error would only make callers retry what is done.
    fn flush_blocking(&self) -> Result<(), StoreError> {
        match self.node_lock_held() {
            true => Ok(()),
            false => Err(StoreError::Unavailable),
        }
    }

    fn fsync_count(&self) -> u64 {
        FLUSH_SYNCS.load(Ordering::Relaxed)
    }

    fn failed(&self) -> bool {
        self.inner.failed.load(Ordering::SeqCst)
    }

    fn probe(&self) {
        let alive = self.inner.bridge.run(async {
            let c = self.inner.pool.get().await?;
            c.simple_query("SELECT 1").await?;
            Ok::<(), StoreError>(())
        });
        if let Err(e) = alive {
            if !self.failed() {
                tracing::error!(error = %e, "store: the database does not answer");
            }
            self.inner.failed.store(true, Ordering::SeqCst);
        } else if !self.node_lock_held() {
            // The lock went with its connection (a failover, a restart of the server, a
            // terminated backend): until it is taken again another process could start as
            // this node, and `mcsd audit verify` takes this node for stopped.
            if !self.failed() {
                tracing::error!(node = %self.inner.node, "store: the connection holding this node's lock is gone");
            }
            self.inner.failed.store(true, Ordering::SeqCst);
        }
    }

    /// The pool replaces broken connections by itself: serving again once the database
    /// answers and this node's lock is held again (refused if another process has taken
    /// this node id meanwhile: the store stays failed).
    fn recover(&self) -> Result<bool, StoreError> {
        if !self.failed() {
            return Ok(false);
        }
        self.inner.bridge.run(async {
            let c = self.inner.pool.get().await?;
            c.simple_query("SELECT 1").await?;
            Ok::<(), StoreError>(())
        })?;
        if !self.node_lock_held() {
            *self.inner.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.take_node_lock()?;
            tracing::info!(node = %self.inner.node, "store: this node's lock is held again");
        }
        self.inner.failed.store(false, Ordering::SeqCst);
        tracing::info!("store: the database answers again");
        Ok(true)
    }

    /// Nothing held in memory can go stale by a reconnection: a commit is either in the
    /// database or was never acknowledged.
    fn generation(&self) -> u64 {
        0
    }

    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, StoreError> {
        self.run(backup::snapshot(self))
    }
}

impl super::storage::ClusterStorage for PgStore {
    fn node_id(&self) -> Option<&str> {
        Some(&self.inner.node)
    }

    fn shared(&self) -> bool {
        true
    }

    fn lead(&self, job: &str) -> bool {
        PgStore::lead(self, job)
    }

    fn audit_chains(&self) -> Result<Vec<super::AuditChain>, StoreError> {
        let mut out = Vec::new();
        for node in self.audit_nodes()? {
            let running = self.node_running(&node)?;
            out.push(super::AuditChain { store: Arc::new(self.as_node(&node)), node, running });
        }
        Ok(out)
    }
}
