//! The store: the only module that touches sled, and the [`Storage`] interface the domain
//! talks to (`storage.rs`), which [`Store`] implements on sled.
//!
//! Trees:
//! - `enrollments`: enrollment id → [`EnrollmentRecord`](crate::model::key::EnrollmentRecord)
//! - `keys`: key id → the key record (public data and security state: status, PIN
//!   counter), and where its share, PIN verifier and recovery key are: [`SlotRef`]s into the [`Vault`]
//!   (`<store>/secrets.vault`), where the HSM-made AES-GCM blobs live and are overwritten
//!   with zeros on revocation. In the record rather than one entry per secret: sled's
//!   memory grows with its entry count (about 40 bytes each at open), so a key costs two
//!   entries (record, device index), not four. The references are the store's own
//!   (`key_refs.rs`): the domain's `KeyRecord` does not carry them.
//! - `secrets`: `<owner>/<kind>` → task inputs/results and daemon keys, the wrapped blob
//!   itself. Never plaintext. (Stores written before keys held their references kept them
//!   here as `<key id>/share` and `<key id>/pin-verifier`; opening moves them.)
//! - `device_keys`: `<device id>/<key id>` → empty (index for a phone's key list)
//! - `ca_chains`: SHA-256 of a certificate chain (hex) → the chain (base64 DER list): each
//!   distinct chain once, referenced from the key records (`certificate.chain_ref`), so a
//!   record is ~1.4 KB instead of ~2.2 KB — sled materialises whole leaves of records on a
//!   read, so record size is memory under random access.
//! - `cert_ends`: `<UTC day, 10 digits>/<chunk, 6 digits>` → up to 256 key ids whose
//!   certificate ends that day: what the expiry check reads ([`KeyStorage::keys_ending`])
//!   instead of every record (that pass materialised every leaf: +200 MB resident on a
//!   million keys, and held a worker for seconds). Chunks, not an entry per key: sled
//!   keeps ~40 bytes per entry in memory, so a million keys add a few thousand entries,
//!   not a million. An id is noted before the record holding its certificate is written,
//!   so the index lists every current end and perhaps past ones (a renewal, a failed
//!   transition), which the reader sorts out against the record. Built once from the
//!   records when `meta` lacks `cert-ends-v1` (a store or a backup from before it).
//! - `tasks`, `outbox` (callbacks), `seals`, `daemon_keys`, `audit`, `audit_checkpoints`.
//! - `inbox`: `<device id>\0<seq BE>` → an item addressed to that device (`inbox.rs`).
//! - `plugin_kv`: `<adapter name>\0<key>` → an adapter's own value (`plugin_kv.rs`): the
//!   state a CA adapter keeps through the host's key-value calls, flushed by the host
//!   before it answers.
//! - `delegations`: delegation id → [`DelegationRecord`](crate::model::delegation::DelegationRecord)
//!   (with the delegate's PIN counter); `key_delegations`: `<key id>/<delegation id>` →
//!   empty. A delegation's wrapped secrets are `secrets` entries `<delegation id>/<kind>`
//!   whose value is a vault [`SlotRef`], so ending it overwrites them like a revocation.
//! - `meta`: small facts, among them `clean-close` (see [`Durability::close`]).
//!
//! Every record is versioned from day one (`codec.rs`): one format byte, then JSON. A
//! reader that sees an unknown version refuses the record rather than guessing.
//!
//! Durability: writers call [`Durability::flush`] before replying whenever the write is
//! security state (PIN failures, revocation, activation); concurrent flushes share one
//! fsync (`commit.rs`). Multi-record changes go through one sled transaction, so a crash
//! leaves either the old or the new state, never a mix.
//!
//! Files: this one opens, closes and reopens the database (the [`Store`] struct, the
//! writers' gate, failure and recovery); one file per aggregate implements its trait
//! (`keys.rs`, `tasks.rs`, `seals.rs`, `audit.rs`, `daemon_keys.rs`, `callbacks.rs`,
//! `plugin_kv.rs`, `key_refs.rs` for the secrets KEK rotation walks), `backup.rs` the snapshot, and
//! `conformance.rs` the checks every backend must pass.

mod audit;
mod backup;
mod callbacks;
mod codec;
mod commit;
pub mod conformance;
mod daemon_keys;
mod delegations;
mod inbox;
mod key_refs;
mod keys;
mod open;
mod plugin_kv;
pub mod postgres;
mod seals;
pub mod storage;
mod tasks;
#[cfg(test)]
mod tests;
pub mod vault;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

pub use inbox::InboxStorage;
pub use open::{open, open_check, open_postgres, open_tool, postgres_options, restore};
pub use postgres::{PgOptions, PgStore, latest_version};
pub use storage::{
    ActivateOutcome, AuditAppend, AuditChain, AuditStorage, CallbackLease, CallbackStorage, CertificateSwap,
    ClusterStorage, DaemonKeyStorage, DelegationChange, DelegationOutcome, DelegationStorage, Durability, Flushing,
    InsertOutcome, KeySecrets, KeyStorage, KeyTransfer, OpenQuota, OpenUsage, PinReset, PinResetCommit,
    PluginKvStorage, SealStorage, SecretEntry, SecretStorage, StaleCopy, Storage, TaskStorage, Transition,
    TransitionOutcome, prelude,
};

use crate::store::codec::{decode, encode};
use crate::store::commit::GroupCommit;
use crate::store::key_refs::slot_of;
use crate::store::tasks::OpenTally;
use crate::store::vault::{Vault, VaultError};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    #[error("record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the store is being reopened after an I/O failure")]
    Unavailable,
    /// The database did not answer (a broken connection, no server, a failover under way).
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// A step the interface does not allow (nothing was written).
    #[error("refused: {0}")]
    Refused(String),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// The write probe's value: any changing bytes do; the time is handy when reading a store.
fn now_ms() -> u64 {
    crate::clock::now_ms() as u64
}

/// The store directory 0700 and everything in it 0600 (directories 0700), whatever umask
/// created them: shares and verifiers are HSM-wrapped, but ids, subjects and the audit
/// chain are nobody else's business either.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |p: &Path, source| StoreError::Io { path: p.display().to_string(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| io(path, e))?;
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io(&dir, e))?;
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let kind = entry.file_type().map_err(|e| io(&entry.path(), e))?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io(&entry.path(), e))?;
            }
        }
    }
    Ok(())
}

/// Run `open` until sled's file lock is free. sled lets go of the lock when its background
/// flusher, which holds the database too, has stopped — shortly after the last handle in
/// this process drops; reopening at once can find it still held. Other errors, or a lock
/// still held after 5 s (another process), are returned.
fn until_unlocked<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    for _ in 0..100 {
        match open() {
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            done => return done,
        }
    }
    open()
}

/// `meta` key of the clean-close record.
const CLEAN_CLOSE: &[u8] = b"clean-close";

/// What a clean close leaves for the next start: the vault's slot count and free slots,
/// so that start need not read every key record to find unreferenced slots.
#[derive(Debug, Serialize, Deserialize)]
struct CleanClose {
    vault_slots: u64,
    free: Vec<u64>,
}

/// The open database: sled, its trees and the vault. Replaced as a whole when the store
/// reopens after an I/O failure (see [`Store::recover`]).
struct Files {
    db: sled::Db,
    enrollments: sled::Tree,
    keys: sled::Tree,
    secrets: sled::Tree,
    device_keys: sled::Tree,
    tasks: sled::Tree,
    outbox: sled::Tree,
    daemon_keys: sled::Tree,
    seals: sled::Tree,
    meta: sled::Tree,
    audit: sled::Tree,
    audit_checkpoints: sled::Tree,
    plugin_kv: sled::Tree,
    delegations: sled::Tree,
    key_delegations: sled::Tree,
    inbox: sled::Tree,
    vault: Vault,
    chains: sled::Tree,
    cert_ends: sled::Tree,
}

pub struct Store {
    /// `None` while the store is being reopened: operations get [`StoreError::Unavailable`].
    files: std::sync::RwLock<Option<Arc<Files>>>,
    path: std::path::PathBuf,
    cache_bytes: u64,
    /// A flush failed (disk full, I/O error): sled refuses every write from then on,
    /// until the store is reopened.
    failed: std::sync::atomic::AtomicBool,
    /// Bumped at every reopen: holders of in-memory views of stored state (the
    /// audit head) re-read them.
    generation: std::sync::atomic::AtomicU64,
    group: GroupCommit,
    /// Writers hold it shared; a snapshot holds it exclusively, so a backup sees no
    /// half-done multi-step change (vault slot + sled record).
    gate: std::sync::RwLock<()>,
    /// Chains already in `chains` (a handful: one per CA and intermediate set).
    chain_cache: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// A clean-close record is on disk; the next writer removes it first.
    closed: std::sync::Mutex<bool>,
    /// Open tasks per platform, for quotas (see [`OpenTally`]); `None` until first used.
    open_tasks: std::sync::Mutex<Option<OpenTally>>,
    /// Callback leases: task id → (token, until ms). In memory: one process owns the store.
    callback_leases: std::sync::Mutex<std::collections::HashMap<String, (String, i64)>>,
    lease_counter: std::sync::atomic::AtomicU64,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "store: clean close failed; the next start checks the vault");
        }
    }
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_cache(path, crate::config::DEFAULT_CACHE_MB)
    }

    /// [`Store::open`] a store this process has just closed (waits for sled's file lock).
    pub fn reopen(path: &Path) -> Result<Store, StoreError> {
        until_unlocked(|| Store::open(path))
    }

    /// [`Store::open`] with sled's page cache set to `cache_mb` MiB. Small is right: the
    /// hot path reads a handful of pages per operation and the kernel caches the files;
    /// what sled keeps in memory above the cache (a recently read leaf stays until its LRU
    /// shard hears of it, 64 accesses later) does not depend on it.
    pub fn open_with_cache(path: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        let cache = cache_mb.clamp(1, 65536) << 20;
        let files = Self::open_files(path, cache)?;
        Ok(Store {
            files: std::sync::RwLock::new(Some(Arc::new(files))),
            path: path.to_path_buf(),
            cache_bytes: cache,
            failed: Default::default(),
            generation: Default::default(),
            gate: std::sync::RwLock::new(()),
            group: GroupCommit::default(),
            closed: std::sync::Mutex::new(false),
            open_tasks: std::sync::Mutex::new(None),
            chain_cache: Default::default(),
            callback_leases: Default::default(),
            lease_counter: Default::default(),
        })
    }

    /// Open sled and the vault (checking the vault against the records unless a clean
    /// close vouches for it).
    fn open_files(path: &Path, cache: u64) -> Result<Files, StoreError> {
        make_private(path)?;
        let open_db = || sled::Config::new().path(path).mode(sled::Mode::HighThroughput).cache_capacity(cache).open();
        let mut db = open_db()?;
        let (secrets, keys, meta) = (db.open_tree("secrets")?, db.open_tree("keys")?, db.open_tree("meta")?);
        let vault_path = path.join("secrets.vault");
        let known = match meta.get(CLEAN_CLOSE)? {
            Some(v) => {
                let rec: CleanClose = decode(CLEAN_CLOSE, &v)?;
                Vault::open_known(&vault_path, rec.vault_slots, &rec.free)?
            }
            None => None,
        };
        let (vault, checked) = match known {
            Some(vault) => {
                tracing::info!("store: clean close recorded; vault slot check skipped");
                (vault, false)
            }
            None => {
                // No clean close (a crash, or a store from before the record existed):
                // move any old-layout references into their key records, then check every
                // vault slot against the references sled holds.
                Self::move_references_into_key_records(&secrets, &keys)?;
                let mut referenced = BTreeSet::new();
                for entry in secrets.iter() {
                    let (_, v) = entry?;
                    referenced.extend(slot_of(Some(&v)));
                }
                Self::for_each_key_secret(&keys, |_, _, value| referenced.extend(slot_of(Some(value))))?;
                tracing::info!(
                    references = referenced.len(),
                    "store: no clean close recorded; every vault slot checked against the records"
                );
                (Vault::open(&vault_path, &referenced)?, true)
            }
        };
        if meta.remove(CLEAN_CLOSE)?.is_some() {
            db.flush()?;
        }
        let (mut cert_ends, built) = Self::cert_ends_index(&db, &keys, &meta)?;
        let (mut secrets, mut keys, mut meta) = (secrets, keys, meta);
        if checked || built {
            // A pass over every record leaves its leaves resident in sled (~230 MB on a
            // million keys after a crash): open sled again without them, and hand the
            // freed memory back to the system.
            db.flush()?;
            drop((secrets, keys, meta, cert_ends));
            drop(db);
            db = until_unlocked(open_db)?;
            (secrets, keys, meta) = (db.open_tree("secrets")?, db.open_tree("keys")?, db.open_tree("meta")?);
            cert_ends = db.open_tree("cert_ends")?;
            crate::os::trim_heap();
        }
        // What sled and the vault just created, under whatever umask the caller had.
        make_private(path)?;
        Ok(Files {
            vault,
            seals: db.open_tree("seals")?,
            meta,
            audit: db.open_tree("audit")?,
            audit_checkpoints: db.open_tree("audit_checkpoints")?,
            plugin_kv: db.open_tree("plugin_kv")?,
            delegations: db.open_tree("delegations")?,
            key_delegations: db.open_tree("key_delegations")?,
            inbox: db.open_tree("inbox")?,
            enrollments: db.open_tree("enrollments")?,
            keys,
            secrets,
            device_keys: db.open_tree("device_keys")?,
            tasks: db.open_tree("tasks")?,
            outbox: db.open_tree("outbox")?,
            daemon_keys: db.open_tree("daemon_keys")?,
            chains: db.open_tree("ca_chains")?,
            cert_ends,
            db,
        })
    }

    /// The open database, or `Unavailable` while it is being reopened.
    fn files(&self) -> Result<Arc<Files>, StoreError> {
        self.files.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or(StoreError::Unavailable)
    }

    /// Can the store's filesystem take a write again? One MiB written, synced and removed.
    fn room_to_write(&self) -> Result<(), StoreError> {
        use std::io::Write;
        let probe = self.path.join("room-probe");
        let io = |e| StoreError::Io { path: probe.display().to_string(), source: e };
        let written = std::fs::File::create(&probe).and_then(|mut f| {
            f.write_all(&vec![0u8; 1 << 20])?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        written.map_err(io)
    }

    /// Writers hold the gate shared (a snapshot or a clean close waits for them); the first
    /// writer after a clean close withdraws its record.
    fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        let guard = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if *closed {
            // Written after a clean close: the record no longer vouches for the vault.
            let files = self.files();
            let reopened = files
                .as_ref()
                .map_err(|_| StoreError::Unavailable)
                .and_then(|f| Ok(f.meta.remove(CLEAN_CLOSE)?))
                .and_then(|_| self.flush_blocking());
            if let Err(e) = reopened {
                tracing::error!(error = %e, "store: could not withdraw the clean-close record");
                if let Ok(f) = &files {
                    f.vault.mark_suspect();
                }
            }
            *closed = false;
        }
        guard
    }
}

impl Durability for Store {
    fn flush(&self) -> Flushing<'_> {
        Box::pin(self.group_flush())
    }

    fn flush_blocking(&self) -> Result<(), StoreError> {
        if let Err(e) = self.files()?.db.flush() {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(())
    }

    fn fsync_count(&self) -> u64 {
        self.group.fsyncs()
    }

    /// The store cannot write (a flush failed) or is being reopened: `/readyz` says so and
    /// [`Durability::recover`] should run.
    fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
            || self.files.read().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    /// Notice a database sled has given up on (a background flush failed, the disk is
    /// full) before a request trips over it: one small write, not flushed, outside the
    /// writers' gate (it touches no record a backup or a clean close vouches for).
    fn probe(&self) {
        let Ok(f) = self.files() else { return };
        if f.meta.insert(b"write-probe", now_ms().to_be_bytes().to_vec()).is_err() {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// How many times the store has been reopened.
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Close cleanly: make everything durable and record the vault layout, so the next
    /// start skips the slot check. Writers that come later remove the record first.
    /// Also done on drop.
    fn close(&self) -> Result<(), StoreError> {
        let _all = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.files()?.db.flush()?;
        if let Some((vault_slots, free)) = self.files()?.vault.layout() {
            self.files()?.meta.insert(CLEAN_CLOSE, encode(&CleanClose { vault_slots, free }))?;
            self.files()?.db.flush()?;
            *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        }
        Ok(())
    }

    /// After a failed flush sled refuses every write until it is reopened. Close it (once
    /// the requests still using it let go), open it again, and prove a write reaches the
    /// disk. What was written but never flushed is gone — nothing of it was acknowledged.
    /// `Ok(true)`: serving again; `Ok(false)`: nothing to do; `Err`: still failing (the
    /// store stays unavailable; call again later).
    fn recover(&self) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if !self.failed() {
            return Ok(false);
        }
        // Room first: opening sled on a disk that is still full gains nothing.
        self.room_to_write()?;
        // Out of service while it reopens: requests get `Unavailable` at once (the writers'
        // gate is held only for the swap, never while sled opens).
        let old = {
            let _all = self.gate.write().unwrap_or_else(|p| p.into_inner());
            self.files.write().unwrap_or_else(|p| p.into_inner()).take()
        };
        if let Some(old) = old {
            // Requests that took the files before the swap finish (they fail); sled's file
            // lock goes with the last handle.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            drop(old);
        }
        let files = until_unlocked(|| Self::open_files(&self.path, self.cache_bytes))?;
        files.meta.insert(b"write-probe", now_ms().to_be_bytes().to_vec())?;
        files.db.flush()?;
        self.chain_cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *self.open_tasks.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.group.clear_error();
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(files));
        self.generation.fetch_add(1, SeqCst);
        self.failed.store(false, SeqCst);
        Ok(true)
    }

    fn snapshot(&self) -> Result<Vec<u8>, StoreError> {
        self.snapshot_image()
    }
}
