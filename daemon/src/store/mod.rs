//! The store: the only module that touches sled.
//!
//! Trees:
//! - `enrollments`: enrollment id → [`EnrollmentRecord`]
//! - `keys`: key id → [`KeyRecord`] (public data and security state: status, PIN
//!   counter), and where its share and PIN verifier are: [`SlotRef`]s into the [`Vault`]
//!   (`<store>/secrets.vault`), where the HSM-made AES-GCM blobs live and are overwritten
//!   with zeros on revocation. In the record rather than one entry per secret: sled's
//!   memory grows with its entry count (about 40 bytes each at open), so a key costs two
//!   entries (record, device index), not four.
//! - `secrets`: `<owner>/<kind>` → task inputs/results and daemon keys, the wrapped blob
//!   itself. Never plaintext. (Stores written before keys held their references kept them
//!   here as `<key id>/share` and `<key id>/pin-verifier`; opening moves them.)
//! - `device_keys`: `<device id>/<key id>` → empty (index for a phone's key list)
//! - `ca_chains`: SHA-256 of a certificate chain (hex) → the chain (base64 DER list): each
//!   distinct chain once, referenced from the key records (`certificate.chain_ref`), so a
//!   record is ~1.4 KB instead of ~2.2 KB — sled materialises whole leaves of records on a
//!   read, so record size is memory under random access.
//! - `meta`: small facts, among them `clean-close` (see [`Store::close`]).
//!
//! Every record is versioned from day one: one format byte, then JSON. A reader that sees
//! an unknown version refuses the record rather than guessing.
//!
//! Durability: writers call [`Store::flush`] before replying whenever the write is security
//! state (PIN failures, revocation, activation). Multi-record changes go through one sled
//! transaction, so a crash leaves either the old or the new state, never a mix.

pub mod vault;

use std::path::Path;
use std::sync::Arc;

use crate::model::key::{
    CertificateInfo, DaemonKeyRecord, EnrollmentRecord, EnrollmentState, KeyRecord, KeyStatus, PinState,
};
use crate::model::seal::{SealMakerRecord, SealRecord};
use crate::model::secret::SecretKind;
use crate::model::task::{CallbackRecord, TaskRecord};
use crate::store::vault::{SlotRef, Vault, VaultError};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::collections::BTreeSet;

const RECORD_V1: u8 = 1;
/// sled page cache, MiB, unless `[store] cache_mb` says otherwise.
const SNAPSHOT_MAGIC: &[u8] = b"MCSDBAK1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    #[error("record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the store is being reopened after an I/O failure")]
    Unavailable,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
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

impl KeyRecord {
    fn secret_ref(&mut self, kind: SecretKind) -> Option<&mut Option<String>> {
        match kind {
            SecretKind::Share => Some(&mut self.share_ref),
            SecretKind::PinVerifier => Some(&mut self.verifier_ref),
            _ => None,
        }
    }

    /// The stored value for a key-owned secret (a vault reference), if any.
    fn stored_secret(&self, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        let field = match kind {
            SecretKind::Share => &self.share_ref,
            SecretKind::PinVerifier => &self.verifier_ref,
            _ => return Ok(None),
        };
        field
            .as_deref()
            .map(hex::decode)
            .transpose()
            .map_err(|e| StoreError::Corrupt { key: self.id.clone(), reason: format!("secret reference: {e}") })
    }
}

/// Secrets that belong to a key and live in its record.
fn key_owned(kind: SecretKind) -> bool {
    matches!(kind, SecretKind::Share | SecretKind::PinVerifier)
}

/// `<owner>/<kind label>` → (owner, kind).
pub fn parse_secret_key(key: &[u8]) -> Option<(String, SecretKind)> {
    let at = key.iter().rposition(|&b| b == b'/')?;
    Some((String::from_utf8(key[..at].to_vec()).ok()?, SecretKind::from_label(&key[at + 1..])?))
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

fn secret_key(key_id: &str, kind: SecretKind) -> Vec<u8> {
    let mut k = Vec::with_capacity(key_id.len() + 16);
    k.extend_from_slice(key_id.as_bytes());
    k.push(b'/');
    k.extend_from_slice(kind.label());
    k
}

fn encode<T: Serialize>(rec: &T) -> Vec<u8> {
    let mut out = vec![RECORD_V1];
    // Serializing plain data structs to JSON cannot fail.
    serde_json::to_writer(&mut out, rec).expect("record serializes");
    out
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason };
    match bytes.split_first() {
        Some((&RECORD_V1, body)) => serde_json::from_slice(body).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Why an activation could not be committed.
#[derive(Debug, PartialEq, Eq)]
pub enum ActivateOutcome {
    Done,
    AlreadyActivated,
    NoSuchEnrollment,
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
    vault: Vault,
    chains: sled::Tree,
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
}

/// Group-commit bookkeeping for [`Store::flush`].
#[derive(Default)]
struct GroupCommit {
    state: std::sync::Mutex<GroupState>,
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct GroupState {
    /// Flush requests so far (each caller takes the next number).
    requested: u64,
    /// Every request up to this number is durable.
    flushed: u64,
    flushing: bool,
    /// fsyncs done (for tests and metrics).
    fsyncs: u64,
    /// A failed flush and the request number it covered.
    error: Option<(u64, sled::Error)>,
}

/// The vault slots referenced from a `secrets` value, if it is a reference.
fn slot_of(value: Option<&[u8]>) -> Option<u64> {
    value.and_then(SlotRef::decode).map(|r| r.slot)
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
        })
    }

    /// Open sled and the vault (checking the vault against the records unless a clean
    /// close vouches for it).
    fn open_files(path: &Path, cache: u64) -> Result<Files, StoreError> {
        make_private(path)?;
        let db = sled::Config::new().path(path).mode(sled::Mode::HighThroughput).cache_capacity(cache).open()?;
        let (secrets, keys, meta) = (db.open_tree("secrets")?, db.open_tree("keys")?, db.open_tree("meta")?);
        let vault_path = path.join("secrets.vault");
        let known = match meta.get(CLEAN_CLOSE)? {
            Some(v) => {
                let rec: CleanClose = decode(CLEAN_CLOSE, &v)?;
                Vault::open_known(&vault_path, rec.vault_slots, &rec.free)?
            }
            None => None,
        };
        let vault = match known {
            Some(vault) => {
                tracing::info!("store: clean close recorded; vault slot check skipped");
                vault
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
                Vault::open(&vault_path, &referenced)?
            }
        };
        if meta.remove(CLEAN_CLOSE)?.is_some() {
            db.flush()?;
        }
        // What sled and the vault just created, under whatever umask the caller had.
        make_private(path)?;
        Ok(Files {
            vault,
            seals: db.open_tree("seals")?,
            meta,
            audit: db.open_tree("audit")?,
            audit_checkpoints: db.open_tree("audit_checkpoints")?,
            enrollments: db.open_tree("enrollments")?,
            keys,
            secrets,
            device_keys: db.open_tree("device_keys")?,
            tasks: db.open_tree("tasks")?,
            outbox: db.open_tree("outbox")?,
            daemon_keys: db.open_tree("daemon_keys")?,
            chains: db.open_tree("ca_chains")?,
            db,
        })
    }

    /// The open database, or `Unavailable` while it is being reopened.
    fn files(&self) -> Result<Arc<Files>, StoreError> {
        self.files.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or(StoreError::Unavailable)
    }

    /// The store cannot write (a flush failed) or is being reopened: `/readyz` says so and
    /// [`Store::recover`] should run.
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
            || self.files.read().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    /// Notice a database sled has given up on (a background flush failed, the disk is
    /// full) before a request trips over it: one small write, not flushed, outside the
    /// writers' gate (it touches no record a backup or a clean close vouches for).
    pub fn probe(&self) {
        let Ok(f) = self.files() else { return };
        if f.meta.insert(b"write-probe", now_ms().to_be_bytes().to_vec()).is_err() {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
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

    /// How many times the store has been reopened.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// After a failed flush sled refuses every write until it is reopened. Close it (once
    /// the requests still using it let go), open it again, and prove a write reaches the
    /// disk. What was written but never flushed is gone — nothing of it was acknowledged.
    /// `Ok(true)`: serving again; `Ok(false)`: nothing to do; `Err`: still failing (the
    /// store stays unavailable; call again later).
    pub fn recover(&self) -> Result<bool, StoreError> {
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
        {
            let mut g = self.group.state.lock().unwrap_or_else(|p| p.into_inner());
            g.error = None;
        }
        *self.files.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(files));
        self.generation.fetch_add(1, SeqCst);
        self.failed.store(false, SeqCst);
        Ok(true)
    }

    /// Every stored value of a key-owned secret (vault references in the key records):
    /// `f(key id, kind, value)`, one record at a time.
    fn for_each_key_secret(keys: &sled::Tree, mut f: impl FnMut(&str, SecretKind, &[u8])) -> Result<(), StoreError> {
        for entry in keys.iter() {
            let (k, v) = entry?;
            let rec: KeyRecord = decode(&k, &v)?;
            for kind in [SecretKind::Share, SecretKind::PinVerifier] {
                if let Some(value) = rec.stored_secret(kind)? {
                    f(&rec.id, kind, &value);
                }
            }
        }
        Ok(())
    }

    /// Old layout → new: `secrets` entries `<key id>/share` and `<key id>/pin-verifier`
    /// move into the key's record (one transaction per key).
    fn move_references_into_key_records(secrets: &sled::Tree, keys: &sled::Tree) -> Result<(), StoreError> {
        let mut moved = 0u64;
        for entry in secrets.iter() {
            let (k, v) = entry?;
            let Some((id, kind)) = parse_secret_key(&k).filter(|(_, kind)| key_owned(*kind)) else { continue };
            let result = (secrets, keys).transaction(|(secrets, keys)| {
                if let Some(raw) = keys.get(id.as_bytes())? {
                    let mut rec: KeyRecord =
                        decode(id.as_bytes(), &raw).map_err(|e| ConflictableTransactionError::Abort(e.to_string()))?;
                    if let Some(field) = rec.secret_ref(kind) {
                        *field = Some(hex::encode(&v));
                    }
                    keys.insert(id.as_bytes(), encode(&rec))?;
                }
                secrets.remove(&k)?;
                Ok(())
            });
            match result {
                Ok(()) => moved += 1,
                Err(TransactionError::Abort(reason)) => return Err(StoreError::Corrupt { key: id, reason }),
                Err(TransactionError::Storage(e)) => return Err(e.into()),
            }
        }
        if moved > 0 {
            secrets.flush()?;
            tracing::info!(moved, "store: key secret references moved into the key records");
        }
        Ok(())
    }

    /// A key record as stored: the certificate chain replaced by a reference to its one
    /// copy in `ca_chains` (written first if new; an unreferenced chain is harmless).
    fn encode_key(&self, rec: &KeyRecord) -> Result<Vec<u8>, sled::Error> {
        let Some(cert) = rec.certificate.as_ref().filter(|c| !c.chain_b64.is_empty()) else { return Ok(encode(rec)) };
        let mut slim = rec.clone();
        slim.certificate = Some(self.slim_certificate(cert)?);
        Ok(encode(&slim))
    }

    /// A certificate as a stored key record holds it: the chain written once to
    /// `ca_chains` (if new) and replaced by its reference.
    fn slim_certificate(&self, cert: &CertificateInfo) -> Result<CertificateInfo, sled::Error> {
        if cert.chain_b64.is_empty() {
            return Ok(cert.clone());
        }
        let id = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            for c in &cert.chain_b64 {
                h.update(c.as_bytes());
                h.update(b"\n");
            }
            hex::encode(h.finalize())
        };
        let mut cache = self.chain_cache.lock().unwrap_or_else(|p| p.into_inner());
        if !cache.contains_key(&id) {
            self.files()
                .map_err(|e| sled::Error::Unsupported(e.to_string()))?
                .chains
                .insert(id.as_bytes(), encode(&cert.chain_b64))?;
            cache.insert(id.clone(), cert.chain_b64.clone());
        }
        drop(cache);
        let mut slim = cert.clone();
        slim.chain_b64 = Vec::new();
        slim.chain_ref = Some(id);
        Ok(slim)
    }

    /// A key record as callers see it: the chain filled in from `ca_chains`.
    fn decode_key(&self, key: &[u8], bytes: &[u8]) -> Result<KeyRecord, StoreError> {
        let mut rec: KeyRecord = decode(key, bytes)?;
        self.fill_chain(&mut rec)?;
        Ok(rec)
    }

    fn fill_chain(&self, rec: &mut KeyRecord) -> Result<(), StoreError> {
        let Some(cert) = rec.certificate.as_mut() else { return Ok(()) };
        let Some(id) = cert.chain_ref.take() else { return Ok(()) };
        let mut cache = self.chain_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(chain) = cache.get(&id) {
            cert.chain_b64 = chain.clone();
            return Ok(());
        }
        let raw = self.files()?.chains.get(id.as_bytes())?.ok_or_else(|| StoreError::Corrupt {
            key: rec.id.clone(),
            reason: format!("certificate chain {id} missing"),
        })?;
        let chain: Vec<String> = decode(id.as_bytes(), &raw)?;
        cache.insert(id, chain.clone());
        cert.chain_b64 = chain;
        Ok(())
    }

    /// Close cleanly: make everything durable and record the vault layout, so the next
    /// start skips the slot check. Writers that come later remove the record first.
    /// Also done on drop.
    pub fn close(&self) -> Result<(), StoreError> {
        let _all = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.files()?.db.flush()?;
        if let Some((vault_slots, free)) = self.files()?.vault.layout() {
            self.files()?.meta.insert(CLEAN_CLOSE, encode(&CleanClose { vault_slots, free }))?;
            self.files()?.db.flush()?;
            *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        }
        Ok(())
    }

    /// Make every write so far durable (fsync), with group commit: callers that arrive
    /// while a flush runs share the next one, so a burst of N durable operations costs a
    /// few fsyncs rather than N. No caller returns before a flush that started after its
    /// call (and so after its writes) has finished.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let lock = || self.group.state.lock().unwrap_or_else(|p| p.into_inner());
        let (mine, lead) = {
            let mut g = lock();
            g.requested += 1;
            let lead = !g.flushing;
            g.flushing = true;
            (g.requested, lead)
        };
        if !lead {
            // Someone leads a flush; wait for one that covers us, or take over.
            loop {
                let notified = self.group.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                // `None`: keep waiting; `Some(None)`: lead; `Some(Some(r))`: covered.
                let outcome = {
                    let mut g = lock();
                    if g.flushed >= mine {
                        Some(Some(
                            g.error
                                .as_ref()
                                .filter(|(upto, _)| *upto >= mine)
                                .map_or(Ok(()), |(_, e)| Err(StoreError::Db(e.clone()))),
                        ))
                    } else if !g.flushing {
                        g.flushing = true;
                        Some(None)
                    } else {
                        None
                    }
                };
                match outcome {
                    Some(Some(done)) => return done,
                    Some(None) => break,
                    None => notified.await,
                }
            }
        }
        // Lead: flush until every request seen so far is covered.
        let mut result = Ok(());
        loop {
            let target = lock().requested;
            let outcome = {
                let _timer = crate::metrics::Timer::start(crate::metrics::METRICS.store_flush_duration.clone());
                self.files()?.db.flush_async().await
            };
            let mut g = lock();
            g.flushed = target;
            g.fsyncs += 1;
            if let Err(e) = outcome {
                // sled refuses every write after a failed flush, until it is reopened.
                self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
                g.error = Some((target, e.clone()));
                if target >= mine {
                    result = Err(StoreError::Db(e));
                }
            }
            self.group.done.notify_waiters();
            if g.requested == g.flushed {
                g.flushing = false;
                self.group.done.notify_waiters();
                return result;
            }
        }
    }

    /// How many fsyncs group commit has done.
    pub fn fsync_count(&self) -> u64 {
        self.group.state.lock().unwrap_or_else(|p| p.into_inner()).fsyncs
    }

    /// [`Store::flush`] for callers on a blocking thread (adapter callbacks).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        if let Err(e) = self.files()?.db.flush() {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(e.into());
        }
        Ok(())
    }

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

    /// A consistent image of the whole store — every tree and the vault — taken while
    /// writers wait: `MCSDBAK1`, then records `[1, tree name, key, value]` and one
    /// `[2, vault bytes]`, then `[0]` and the SHA-256 of everything before it.
    pub fn snapshot(&self) -> Result<Vec<u8>, StoreError> {
        use sha2::Digest;
        let _all = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut out = SNAPSHOT_MAGIC.to_vec();
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        for name in self.files()?.db.tree_names() {
            let tree = self.files()?.db.open_tree(&name)?;
            for entry in tree.iter() {
                let (k, v) = entry?;
                if name == "meta" && k == CLEAN_CLOSE {
                    continue;
                }
                out.push(1);
                put(&mut out, &name);
                put(&mut out, &k);
                put(&mut out, &v);
            }
        }
        out.push(2);
        put(&mut out, &self.files()?.vault.contents()?);
        out.push(0);
        let digest = sha2::Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Rebuild a store from a [`Store::snapshot`] into `path`, which must not hold one.
    pub fn restore(path: &Path, image: &[u8]) -> Result<usize, StoreError> {
        use sha2::Digest;
        let bad = |why: &str| StoreError::Corrupt { key: "backup".into(), reason: why.into() };
        if path.exists() && std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(true) {
            return Err(bad("the target store directory is not empty"));
        }
        if image.len() < SNAPSHOT_MAGIC.len() + 33 || !image.starts_with(SNAPSHOT_MAGIC) {
            return Err(bad("not an mcsd backup"));
        }
        let (body, digest) = image.split_at(image.len() - 32);
        if sha2::Sha256::digest(body).as_slice() != digest {
            return Err(bad("checksum mismatch: the backup is damaged"));
        }
        let db = sled::Config::new().path(path).open()?;
        let mut rest = &body[SNAPSHOT_MAGIC.len()..];
        let take = |rest: &mut &[u8]| -> Result<Vec<u8>, StoreError> {
            let n = u32::from_be_bytes(rest.get(..4).ok_or_else(|| bad("truncated"))?.try_into().unwrap_or_default())
                as usize;
            let v = rest.get(4..4 + n).ok_or_else(|| bad("truncated"))?.to_vec();
            *rest = &rest[4 + n..];
            Ok(v)
        };
        let mut records = 0;
        loop {
            let (&tag, tail) = rest.split_first().ok_or_else(|| bad("truncated"))?;
            rest = tail;
            match tag {
                0 => break,
                1 => {
                    let (name, k, v) = (take(&mut rest)?, take(&mut rest)?, take(&mut rest)?);
                    db.open_tree(name)?.insert(k, v)?;
                    records += 1;
                }
                2 => {
                    let vault = take(&mut rest)?;
                    std::fs::write(path.join("secrets.vault"), vault)
                        .map_err(|e| StoreError::Vault(VaultError::Io(e)))?;
                }
                _ => return Err(bad("unknown record tag")),
            }
        }
        db.flush()?;
        drop(db);
        // Opening checks the vault against the references, as at every start.
        until_unlocked(|| Store::open(path))?.flush_blocking()?;
        Ok(records)
    }

    /// Every `secrets` entry: (store key, stored value) — blobs or vault references.
    /// Every wrapped secret: (store key `<owner>/<kind>`, stored value) — blobs or vault
    /// references; key-owned ones come from the key records.
    pub fn secret_entries(&self) -> Result<Vec<(Vec<u8>, sled::IVec)>, StoreError> {
        let mut out: Vec<(Vec<u8>, sled::IVec)> = self
            .files()?
            .secrets
            .iter()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v)).map_err(StoreError::from))
            .collect::<Result<_, _>>()?;
        Self::for_each_key_secret(&self.files()?.keys, |id, kind, value| {
            out.push((secret_key(id, kind), value.into()))
        })?;
        Ok(out)
    }

    /// The blob a stored `secrets` value stands for.
    pub fn blob_of(&self, value: &sled::IVec) -> Result<Vec<u8>, StoreError> {
        Ok(self.resolve(Some(value.clone()))?.map(|b| b.to_vec()).unwrap_or_default())
    }

    /// Replace one secret's blob if its stored value is still `old` (a concurrent change or
    /// deletion wins). Vault-held secrets get a fresh slot; the old slot is returned for
    /// [`Store::shred_after_flush`].
    pub fn replace_secret(
        &self,
        key: &[u8],
        old: &sled::IVec,
        new_blob: &[u8],
    ) -> Result<(bool, Option<u64>), StoreError> {
        let _writing = self.writing();
        let owner = parse_secret_key(key).filter(|(_, kind)| key_owned(*kind));
        match SlotRef::decode(old) {
            Some(old_ref) => {
                let fresh = self.files()?.vault.put(new_blob)?;
                let fresh_value = fresh.encode();
                let swapped = match &owner {
                    Some((id, kind)) => self.swap_key_secret(id, *kind, old, &fresh_value)?,
                    None => self.files()?.secrets.compare_and_swap(key, Some(old), Some(&fresh_value[..]))?.is_ok(),
                };
                if swapped {
                    Ok((true, Some(old_ref.slot)))
                } else {
                    self.files()?.vault.shred(&[fresh.slot])?;
                    Ok((false, None))
                }
            }
            None => match &owner {
                Some((id, kind)) => Ok((self.swap_key_secret(id, *kind, old, new_blob)?, None)),
                None => Ok((self.files()?.secrets.compare_and_swap(key, Some(old), Some(new_blob))?.is_ok(), None)),
            },
        }
    }

    /// Compare-and-swap of a key-owned secret's stored value inside the key record.
    fn swap_key_secret(&self, id: &str, kind: SecretKind, old: &[u8], new: &[u8]) -> Result<bool, StoreError> {
        loop {
            let Some(raw) = self.files()?.keys.get(id.as_bytes())? else { return Ok(false) };
            let mut rec: KeyRecord = decode(id.as_bytes(), &raw)?;
            if rec.stored_secret(kind)?.as_deref() != Some(old) {
                return Ok(false);
            }
            if let Some(field) = rec.secret_ref(kind) {
                *field = Some(hex::encode(new));
            }
            if self.files()?.keys.compare_and_swap(id.as_bytes(), Some(&raw), Some(encode(&rec)))?.is_ok() {
                return Ok(true);
            }
        }
    }

    /// Make everything durable, then destroy the given vault slots.
    pub fn shred_after_flush(&self, slots: &[u64]) -> Result<(), StoreError> {
        self.files()?.db.flush()?;
        self.files()?.vault.shred(slots)?;
        Ok(())
    }

    pub fn put_enrollment(&self, rec: &EnrollmentRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.enrollments.insert(rec.id.as_bytes(), encode(rec))?;
        Ok(())
    }

    pub fn enrollment(&self, id: &str) -> Result<Option<EnrollmentRecord>, StoreError> {
        self.files()?.enrollments.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    /// Atomically: mark the enrollment activated, create the key, store its wrapped
    /// secrets and index it by device. Fails without writing if the enrollment is gone or
    /// was activated meanwhile (two phones racing on one code: one wins).
    pub fn activate(
        &self,
        key: &KeyRecord,
        share_blob: &[u8],
        verifier_blob: &[u8],
        audit: Option<&AuditAppend>,
    ) -> Result<ActivateOutcome, StoreError> {
        let _writing = self.writing();
        let index = format!("{}/{}", key.device_id, key.id).into_bytes();
        // Blobs first (synced), then the transaction that references them.
        let share_ref = self.files()?.vault.put(share_blob)?;
        let verifier_ref = match self.files()?.vault.put(verifier_blob) {
            Ok(r) => r,
            Err(e) => {
                self.files()?.vault.shred(&[share_ref.slot])?;
                return Err(e.into());
            }
        };
        let mut key = key.clone();
        key.share_ref = Some(hex::encode(share_ref.encode()));
        key.verifier_ref = Some(hex::encode(verifier_ref.encode()));
        let key_bytes = encode(&key);
        let f = self.files()?;
        let abort = |o| ConflictableTransactionError::Abort(Abort::Outcome(o));
        let result =
            (&f.enrollments, &f.keys, &f.device_keys, &f.audit).transaction(|(enr, keys, device_keys, audit_tree)| {
                let Some(raw) = enr.get(key.enrollment_id.as_bytes())? else {
                    return Err(abort(ActivateOutcome::NoSuchEnrollment));
                };
                let mut rec: EnrollmentRecord =
                    decode(key.enrollment_id.as_bytes(), &raw).map_err(|_| abort(ActivateOutcome::NoSuchEnrollment))?;
                if rec.state != EnrollmentState::Pending {
                    return Err(abort(ActivateOutcome::AlreadyActivated));
                }
                if let Some(a) = audit {
                    Self::append_audit_in(audit_tree, a)?;
                }
                rec.state = EnrollmentState::Activated { key_id: key.id.clone() };
                enr.insert(key.enrollment_id.as_bytes(), encode(&rec))?;
                keys.insert(key.id.as_bytes(), key_bytes.clone())?;
                device_keys.insert(index.clone(), &[][..])?;
                Ok(())
            });
        match result {
            Ok(()) => Ok(ActivateOutcome::Done),
            Err(TransactionError::Abort(why)) => {
                self.files()?.vault.shred(&[share_ref.slot, verifier_ref.slot])?;
                match why {
                    Abort::Outcome(outcome) => Ok(outcome),
                    Abort::AuditSeqTaken(seq) => Err(audit_seq_taken(seq)),
                }
            }
            // Not shredded: the transaction may have reached the disk; if it did not, the
            // slots are unreferenced and the next start (a full check) zeroes them.
            Err(TransactionError::Storage(e)) => {
                self.files()?.vault.mark_suspect();
                Err(e.into())
            }
        }
    }

    pub fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.files()?.keys.get(id.as_bytes())?.map(|v| self.decode_key(id.as_bytes(), &v)).transpose()
    }

    /// Keys of one device, via the index.
    pub fn keys_of_device(&self, device_id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let prefix = format!("{device_id}/");
        let mut out = Vec::new();
        for entry in self.files()?.device_keys.scan_prefix(prefix.as_bytes()) {
            let (k, _) = entry?;
            let key_id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(rec) = self.key(&key_id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// All keys matching a predicate (admin listing).
    pub fn keys_matching(&self, mut keep: impl FnMut(&KeyRecord) -> bool) -> Result<Vec<KeyRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.files()?.keys.iter() {
            let (k, v) = entry?;
            let rec = self.decode_key(&k, &v)?;
            if keep(&rec) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Read-modify-write one key record atomically (compare-and-swap loop). `change`
    /// returns `Ok(true)` to write, `Ok(false)` to leave the record as it is, or an error
    /// that is passed through without writing. Returns the record as it is afterwards.
    pub fn update_key<E>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut KeyRecord) -> Result<bool, E>,
    ) -> Result<Result<Option<KeyRecord>, E>, StoreError> {
        let _writing = self.writing();
        loop {
            let Some(old) = self.files()?.keys.get(id.as_bytes())? else { return Ok(Ok(None)) };
            let mut rec = self.decode_key(id.as_bytes(), &old)?;
            match change(&mut rec) {
                Err(e) => return Ok(Err(e)),
                Ok(false) => return Ok(Ok(Some(rec))),
                Ok(true) => {}
            }
            let new = self.encode_key(&rec)?;
            if self.files()?.keys.compare_and_swap(id.as_bytes(), Some(&old), Some(new))?.is_ok() {
                return Ok(Ok(Some(rec)));
            }
        }
    }

    pub fn secret(&self, key_id: &str, kind: SecretKind) -> Result<Option<sled::IVec>, StoreError> {
        if key_owned(kind) {
            return match self.key(key_id)? {
                Some(rec) => self.key_secret(&rec, kind),
                None => Ok(None),
            };
        }
        self.resolve(self.files()?.secrets.get(secret_key(key_id, kind))?)
    }

    /// A key-owned secret (share, PIN verifier) located through an already-read record.
    pub fn key_secret(&self, rec: &KeyRecord, kind: SecretKind) -> Result<Option<sled::IVec>, StoreError> {
        self.resolve(rec.stored_secret(kind)?.map(sled::IVec::from))
    }

    /// A `secrets` value as the blob: read through the vault if it is a reference.
    fn resolve(&self, value: Option<sled::IVec>) -> Result<Option<sled::IVec>, StoreError> {
        match value {
            Some(v) => match SlotRef::decode(&v) {
                Some(r) => Ok(Some(self.files()?.vault.get(&r)?.into())),
                None => Ok(Some(v)),
            },
            None => Ok(None),
        }
    }

    /// Replace the PIN verifier and clear the failure counter in one transaction, make it
    /// durable, then destroy the old verifier. Returns false if the key vanished. Blocking
    /// (syncs).
    pub fn replace_verifier(&self, key_id: &str, verifier_blob: &[u8]) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let new_ref = self.files()?.vault.put(verifier_blob)?;
        let new_ref_hex = hex::encode(new_ref.encode());
        let result = self.files()?.keys.transaction(|keys| {
            let Some(raw) = keys.get(key_id.as_bytes())? else {
                return Err(ConflictableTransactionError::Abort(()));
            };
            let mut rec: KeyRecord =
                decode(key_id.as_bytes(), &raw).map_err(|_| ConflictableTransactionError::Abort(()))?;
            let old =
                rec.stored_secret(SecretKind::PinVerifier).map_err(|_| ConflictableTransactionError::Abort(()))?;
            rec.pin = PinState::default();
            rec.verifier_ref = Some(new_ref_hex.clone());
            keys.insert(key_id.as_bytes(), encode(&rec))?;
            Ok(slot_of(old.as_deref()))
        });
        match result {
            Ok(old) => {
                self.files()?.db.flush()?;
                self.files()?.vault.shred(&old.into_iter().collect::<Vec<_>>())?;
                Ok(true)
            }
            Err(TransactionError::Abort(())) => {
                self.files()?.vault.shred(&[new_ref.slot])?;
                Ok(false)
            }
            Err(TransactionError::Storage(e)) => {
                self.files()?.vault.mark_suspect();
                Err(e.into())
            }
        }
    }

    /// Set the key revoked and drop its secrets in one transaction, make that durable,
    /// then overwrite the share and verifier in the vault: when this returns, the share is
    /// gone from the disk. Blocking (syncs).
    pub fn revoke(
        &self,
        key_id: &str,
        reason: &str,
        audit: Option<&AuditAppend>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let _writing = self.writing();
        let f = self.files()?;
        let gone = || ConflictableTransactionError::Abort(Abort::Outcome(()));
        let result = (&f.keys, &f.audit).transaction(|(keys, audit_tree)| {
            let Some(raw) = keys.get(key_id.as_bytes())? else {
                return Err(gone());
            };
            let mut rec: KeyRecord = decode(key_id.as_bytes(), &raw).map_err(|_| gone())?;
            let share = rec.stored_secret(SecretKind::Share).map_err(|_| gone())?;
            let verifier = rec.stored_secret(SecretKind::PinVerifier).map_err(|_| gone())?;
            if let Some(a) = audit {
                Self::append_audit_in(audit_tree, a)?;
            }
            rec.status = KeyStatus::Revoked;
            rec.revocation_reason = Some(reason.to_owned());
            rec.share_ref = None;
            rec.verifier_ref = None;
            keys.insert(key_id.as_bytes(), encode(&rec))?;
            Ok((rec, [slot_of(share.as_deref()), slot_of(verifier.as_deref())]))
        });
        match result {
            Ok((mut rec, slots)) => {
                self.files()?.db.flush()?;
                self.files()?.vault.shred(&slots.into_iter().flatten().collect::<Vec<_>>())?;
                self.fill_chain(&mut rec)?;
                Ok(Some(rec))
            }
            Err(TransactionError::Abort(Abort::Outcome(()))) => Ok(None),
            Err(TransactionError::Abort(Abort::AuditSeqTaken(seq))) => Err(audit_seq_taken(seq)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Count a wrong PIN proof on a key whose counter stands at `expected` (the caller
    /// holds the key's PIN lock), with the request's audit entry, if any, in the same
    /// transaction.
    /// `Ok(None)`: the key is gone, locked, or its counter moved — nothing was written.
    pub fn count_pin_failure(
        &self,
        key_id: &str,
        expected: u32,
        max: u32,
        audit: Option<&AuditAppend>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let _writing = self.writing();
        let f = self.files()?;
        let moved = || ConflictableTransactionError::Abort(Abort::Outcome(()));
        let result = (&f.keys, &f.audit).transaction(|(keys, audit_tree)| {
            let Some(raw) = keys.get(key_id.as_bytes())? else { return Err(moved()) };
            let mut rec: KeyRecord = decode(key_id.as_bytes(), &raw).map_err(|_| moved())?;
            if rec.pin.locked || rec.pin.failures != expected {
                return Err(moved());
            }
            rec.pin.failures += 1;
            rec.pin.locked = rec.pin.failures >= max;
            if let Some(a) = audit {
                Self::append_audit_in(audit_tree, a)?;
            }
            keys.insert(key_id.as_bytes(), encode(&rec))?;
            Ok(rec)
        });
        match result {
            Ok(mut rec) => {
                self.fill_chain(&mut rec)?;
                Ok(Some(rec))
            }
            Err(TransactionError::Abort(Abort::Outcome(()))) => Ok(None),
            Err(TransactionError::Abort(Abort::AuditSeqTaken(seq))) => Err(audit_seq_taken(seq)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }
}

/// A platform's limits on its open (unfinished) tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenQuota {
    pub max_tasks: u64,
    pub max_bytes: u64,
}

/// What a platform's open tasks hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenUsage {
    pub tasks: u64,
    pub bytes: u64,
    /// The earliest `expires_at` among them: by then at least one will have finished.
    pub earliest_expiry: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    Done,
    /// The task would take its platform past its quota; nothing was written.
    OverQuota {
        usage: OpenUsage,
        task_bytes: u64,
    },
}

/// Per-platform tally of open tasks, kept in step with the `tasks` tree: built from it on
/// first use, then changed only under its lock together with the write that changes it
/// (an insert, a transition to a final state, a purge of an unfinished task) — so a quota
/// check and the insert it allows are one step, and two creations cannot both take the
/// last slot.
#[derive(Debug, Default)]
struct OpenTally {
    platforms: std::collections::HashMap<String, PlatformTally>,
}

#[derive(Debug, Default)]
struct PlatformTally {
    tasks: u64,
    bytes: u64,
    /// Open tasks by expiry second (at most one entry per second of the longest TTL).
    expiries: std::collections::BTreeMap<i64, u64>,
}

impl OpenTally {
    fn build(tasks: &sled::Tree) -> Result<OpenTally, StoreError> {
        let mut tally = OpenTally::default();
        for entry in tasks.iter() {
            let (k, v) = entry?;
            let task: TaskRecord = decode(&k, &v)?;
            if !task.status.is_final() {
                tally.add(&task.platform, task.charged_bytes, task.expires_at);
            }
        }
        Ok(tally)
    }

    fn usage(&self, platform: &str) -> OpenUsage {
        self.platforms.get(platform).map_or_else(OpenUsage::default, |p| OpenUsage {
            tasks: p.tasks,
            bytes: p.bytes,
            earliest_expiry: p.expiries.keys().next().copied(),
        })
    }

    fn add(&mut self, platform: &str, bytes: u64, expires_at: i64) {
        let p = self.platforms.entry(platform.to_owned()).or_default();
        p.tasks += 1;
        p.bytes += bytes;
        *p.expiries.entry(expires_at).or_default() += 1;
    }

    fn remove(&mut self, platform: &str, bytes: u64, expires_at: i64) {
        let Some(p) = self.platforms.get_mut(platform) else { return };
        p.tasks = p.tasks.saturating_sub(1);
        p.bytes = p.bytes.saturating_sub(bytes);
        if let Some(n) = p.expiries.get_mut(&expires_at) {
            *n -= 1;
            if *n == 0 {
                p.expiries.remove(&expires_at);
            }
        }
        if p.tasks == 0 {
            self.platforms.remove(platform);
        }
    }
}

/// One atomic task transition (see [`Store::transition`]).
pub struct Transition<'a> {
    /// The task as it should be afterwards; its `rev` must be the stored rev + 1.
    pub task: &'a TaskRecord,
    /// Wrapped secrets to store with the task (input or result).
    pub put_secrets: Vec<(SecretKind, &'a [u8])>,
    pub delete_secrets: Vec<SecretKind>,
    /// Consume a `once` platform grant of this key (refused if it is gone).
    pub consume_once: Option<(&'a str, &'a str)>,
    pub callback: Option<CallbackRecord>,
    /// Make this pending key active with this certificate (a `csr` task's completion), so
    /// the certificate is never installed without the task finishing, or the reverse.
    pub install_certificate: Option<(&'a str, &'a CertificateInfo)>,
    /// The audit entry of the request this transition carries out, written in the same
    /// transaction (its sequence number must still be free).
    pub audit: Option<AuditAppend>,
}

impl<'a> Transition<'a> {
    /// A transition that only writes the task.
    pub fn of(task: &'a TaskRecord) -> Self {
        Transition {
            task,
            put_secrets: Vec::new(),
            delete_secrets: Vec::new(),
            consume_once: None,
            callback: None,
            install_certificate: None,
            audit: None,
        }
    }
}

/// An audit entry to be written inside another store operation's transaction: its
/// sequence number and the encoded record (see `audit.rs`).
#[derive(Debug, Clone)]
pub struct AuditAppend {
    seq: u64,
    bytes: Vec<u8>,
}

impl AuditAppend {
    pub fn new<T: Serialize>(seq: u64, entry: &T) -> Self {
        AuditAppend { seq, bytes: encode(entry) }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum TransitionOutcome {
    Done,
    /// Someone else changed the task first; nothing was written.
    Raced,
    /// The `once` grant was already used; nothing was written.
    GrantGone,
    /// The key to install a certificate for is not pending (its status, or `None` if it
    /// is gone); nothing was written.
    KeyNotPending(Option<KeyStatus>),
}

/// Why a transaction carrying an audit entry gave up.
enum Abort<T> {
    Outcome(T),
    /// The entry's sequence number is taken: the caller's view of the chain's head is wrong.
    AuditSeqTaken(u64),
}

fn audit_seq_taken(seq: u64) -> StoreError {
    StoreError::Corrupt { key: format!("audit/{seq}"), reason: "sequence number already used".into() }
}

impl Store {
    pub fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.files()?.tasks.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    /// The tally of open tasks, built from the `tasks` tree on first use. Callers hold the
    /// guard across the write that changes open-ness, so the two cannot drift apart.
    fn open_tally(&self) -> Result<std::sync::MutexGuard<'_, Option<OpenTally>>, StoreError> {
        let mut guard = self.open_tasks.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(OpenTally::build(&self.files()?.tasks)?);
        }
        Ok(guard)
    }

    /// What `platform`'s open tasks hold now.
    pub fn open_usage(&self, platform: &str) -> Result<OpenUsage, StoreError> {
        Ok(self.open_tally()?.as_ref().map(|t| t.usage(platform)).unwrap_or_default())
    }

    /// Create a task (rev 0) with its wrapped inputs and the audit entry of the request
    /// that creates it, if given — all or nothing — unless it would take its platform past
    /// `quota` (checked and counted in one step; a refusal writes nothing, not the entry
    /// either). The task is charged the bytes of its record and inputs, kept in
    /// `charged_bytes`.
    pub fn insert_task(
        &self,
        task: &TaskRecord,
        secrets: &[(SecretKind, &[u8])],
        quota: Option<OpenQuota>,
        audit: Option<&AuditAppend>,
    ) -> Result<InsertOutcome, StoreError> {
        let mut charged = task.clone();
        let inputs: usize = secrets.iter().map(|(_, b)| b.len()).sum();
        // The count's own digits barely change the size it counts; measure with a guess.
        charged.charged_bytes = (encode(&charged).len() + inputs + 20) as u64;
        let bytes = encode(&charged);
        let mut tally = self.open_tally()?;
        let usage = tally.as_ref().map(|t| t.usage(&task.platform)).unwrap_or_default();
        if let Some(q) = quota
            && (usage.tasks + 1 > q.max_tasks || usage.bytes + charged.charged_bytes > q.max_bytes)
        {
            return Ok(InsertOutcome::OverQuota { usage, task_bytes: charged.charged_bytes });
        }
        let _writing = self.writing();
        (&self.files()?.tasks, &self.files()?.secrets, &self.files()?.audit)
            .transaction(|(tasks, sec, audit_tree)| {
                if let Some(a) = audit {
                    Self::append_audit_in::<()>(audit_tree, a)?;
                }
                tasks.insert(task.id.as_bytes(), bytes.clone())?;
                for (kind, blob) in secrets {
                    sec.insert(secret_key(&task.id, *kind), *blob)?;
                }
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Db(e),
                TransactionError::Abort(Abort::AuditSeqTaken(seq)) => audit_seq_taken(seq),
                TransactionError::Abort(Abort::Outcome(())) => {
                    StoreError::Corrupt { key: task.id.clone(), reason: "aborted".into() }
                }
            })?;
        if let Some(t) = tally.as_mut()
            && !task.status.is_final()
        {
            t.add(&task.platform, charged.charged_bytes, task.expires_at);
        }
        Ok(InsertOutcome::Done)
    }

    /// Insert an audit entry inside a transaction unless its sequence number is taken.
    fn append_audit_in<T>(
        tree: &sled::transaction::TransactionalTree,
        a: &AuditAppend,
    ) -> Result<(), ConflictableTransactionError<Abort<T>>> {
        let key = a.seq.to_be_bytes();
        if tree.get(key)?.is_some() {
            return Err(ConflictableTransactionError::Abort(Abort::AuditSeqTaken(a.seq)));
        }
        tree.insert(&key, a.bytes.clone())?;
        Ok(())
    }

    /// Apply a task transition atomically: the task (compare-and-swap on `rev`), its
    /// secrets, a consumed `once` grant, a certificate installed, a callback to deliver
    /// and the request's audit entry — all or nothing. A transition that finishes an open
    /// task takes it out of its platform's quota, in step.
    pub fn transition(&self, t: Transition<'_>) -> Result<TransitionOutcome, StoreError> {
        let mut tally = if t.task.status.is_final() { Some(self.open_tally()?) } else { None };
        let _writing = self.writing();
        let id = t.task.id.as_bytes();
        let callback = t.callback.as_ref().map(encode);
        // The chain goes to `ca_chains` first: an unreferenced chain is harmless.
        let installing = match t.install_certificate {
            Some((key_id, cert)) => Some((key_id, self.slim_certificate(cert)?)),
            None => None,
        };
        let abort = |o| ConflictableTransactionError::Abort(Abort::Outcome(o));
        let finished: std::cell::Cell<Option<(u64, i64)>> = std::cell::Cell::new(None);
        let trees = (
            &self.files()?.tasks,
            &self.files()?.secrets,
            &self.files()?.keys,
            &self.files()?.outbox,
            &self.files()?.audit,
        );
        let result = trees.transaction(|(tasks, sec, keys, outbox, audit)| {
            let current: TaskRecord = match tasks.get(id)? {
                Some(raw) => decode(id, &raw).map_err(|_| abort(TransitionOutcome::Raced))?,
                None => return Err(abort(TransitionOutcome::Raced)),
            };
            if current.rev + 1 != t.task.rev {
                return Err(abort(TransitionOutcome::Raced));
            }
            // The charge is the store's to keep, whatever the caller's copy says.
            let mut next = t.task.clone();
            next.charged_bytes = current.charged_bytes;
            let bytes = encode(&next);
            finished.set(
                (!current.status.is_final() && next.status.is_final())
                    .then_some((current.charged_bytes, current.expires_at)),
            );
            if let Some((key_id, platform)) = t.consume_once {
                let raw = keys.get(key_id.as_bytes())?.ok_or(abort(TransitionOutcome::GrantGone))?;
                let mut key: KeyRecord =
                    decode(key_id.as_bytes(), &raw).map_err(|_| abort(TransitionOutcome::GrantGone))?;
                let before = key.platforms.len();
                key.platforms.retain(|g| !(g.once && g.platform == platform));
                if key.platforms.len() == before {
                    return Err(abort(TransitionOutcome::GrantGone));
                }
                keys.insert(key_id.as_bytes(), encode(&key))?;
            }
            if let Some((key_id, cert)) = &installing {
                let raw = keys.get(key_id.as_bytes())?.ok_or(abort(TransitionOutcome::KeyNotPending(None)))?;
                let mut key: KeyRecord =
                    decode(key_id.as_bytes(), &raw).map_err(|_| abort(TransitionOutcome::KeyNotPending(None)))?;
                if key.status != KeyStatus::Pending {
                    return Err(abort(TransitionOutcome::KeyNotPending(Some(key.status))));
                }
                key.status = KeyStatus::Active;
                key.certificate = Some(cert.clone());
                // The phone has its activation answer by now (it co-signed the request):
                // `p1`, kept to answer a repeated activation, is no longer needed.
                key.p1 = None;
                keys.insert(key_id.as_bytes(), encode(&key))?;
            }
            if let Some(a) = &t.audit {
                Self::append_audit_in(audit, a)?;
            }
            tasks.insert(id, bytes)?;
            for (kind, blob) in &t.put_secrets {
                sec.insert(secret_key(&t.task.id, *kind), *blob)?;
            }
            for kind in &t.delete_secrets {
                sec.remove(secret_key(&t.task.id, *kind))?;
            }
            if let Some(cb) = &callback {
                outbox.insert(id, cb.clone())?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                if let (Some((bytes, expires_at)), Some(Some(tally))) = (finished.get(), tally.as_deref_mut()) {
                    tally.remove(&t.task.platform, bytes, expires_at);
                }
                Ok(TransitionOutcome::Done)
            }
            Err(TransactionError::Abort(Abort::Outcome(outcome))) => Ok(outcome),
            Err(TransactionError::Abort(Abort::AuditSeqTaken(seq))) => Err(audit_seq_taken(seq)),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    pub fn task_secret(&self, task_id: &str, kind: SecretKind) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.files()?.secrets.get(secret_key(task_id, kind))?)
    }

    /// Every task (the sweeper's view; tasks are few and short-lived).
    pub fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.files()?.tasks.iter().map(|r| r.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    /// Delete a finished task and anything left of its secrets and callback. (An
    /// unfinished one leaves its platform's quota.)
    pub fn purge_task(&self, task_id: &str) -> Result<(), StoreError> {
        let mut tally = self.open_tally()?;
        let _writing = self.writing();
        let open: std::cell::RefCell<Option<(String, u64, i64)>> = std::cell::RefCell::new(None);
        (&self.files()?.tasks, &self.files()?.secrets, &self.files()?.outbox)
            .transaction(|(tasks, sec, outbox)| {
                *open.borrow_mut() = match tasks.remove(task_id.as_bytes())? {
                    Some(raw) => decode::<TaskRecord>(task_id.as_bytes(), &raw)
                        .ok()
                        .filter(|t| !t.status.is_final())
                        .map(|t| (t.platform, t.charged_bytes, t.expires_at)),
                    None => None,
                };
                for kind in [SecretKind::TaskInput, SecretKind::TaskResult] {
                    sec.remove(secret_key(task_id, kind))?;
                }
                outbox.remove(task_id.as_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Db(e),
                TransactionError::Abort(()) => StoreError::Corrupt { key: task_id.into(), reason: "aborted".into() },
            })?;
        if let (Some((platform, bytes, expires_at)), Some(tally)) = (open.into_inner(), tally.as_mut()) {
            tally.remove(&platform, bytes, expires_at);
        }
        Ok(())
    }

    pub fn daemon_key(&self, name: &str) -> Result<Option<(DaemonKeyRecord, sled::IVec)>, StoreError> {
        let Some(raw) = self.files()?.daemon_keys.get(name.as_bytes())? else { return Ok(None) };
        let rec: DaemonKeyRecord = decode(name.as_bytes(), &raw)?;
        let blob =
            self.files()?.secrets.get(secret_key(&format!("daemon:{name}"), SecretKind::DaemonKey))?.ok_or_else(
                || StoreError::Corrupt { key: name.to_owned(), reason: "daemon key without its wrapped secret".into() },
            )?;
        Ok(Some((rec, blob)))
    }

    /// Store a new daemon key unless one of that name exists; returns the one that won.
    pub fn insert_daemon_key(
        &self,
        rec: &DaemonKeyRecord,
        blob: &[u8],
    ) -> Result<(DaemonKeyRecord, sled::IVec), StoreError> {
        let _writing = self.writing();
        let bytes = encode(rec);
        let id = format!("daemon:{}", rec.name);
        let won = (&self.files()?.daemon_keys, &self.files()?.secrets).transaction(|(keys, sec)| {
            if keys.get(rec.name.as_bytes())?.is_some() {
                return Ok(false);
            }
            keys.insert(rec.name.as_bytes(), bytes.clone())?;
            sec.insert(secret_key(&id, SecretKind::DaemonKey), blob)?;
            Ok::<_, ConflictableTransactionError<()>>(true)
        });
        match won {
            Ok(_) => self
                .daemon_key(&rec.name)?
                .ok_or_else(|| StoreError::Corrupt { key: rec.name.clone(), reason: "vanished".into() }),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => {
                Err(StoreError::Corrupt { key: rec.name.clone(), reason: "aborted".into() })
            }
        }
    }

    /// Overwrite a daemon key's public record, leaving its wrapped secret alone: for tools
    /// and tests that prove a replaced audit key is noticed.
    pub fn put_daemon_key_record(&self, rec: &DaemonKeyRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.daemon_keys.insert(rec.name.as_bytes(), encode(rec))?;
        self.files()?.db.flush()?;
        Ok(())
    }

    pub fn insert_seal(&self, rec: &SealRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.seals.insert(rec.id.as_bytes(), encode(rec))?;
        Ok(())
    }

    pub fn seal(&self, id: &str) -> Result<Option<SealRecord>, StoreError> {
        self.files()?.seals.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    pub fn seals(&self) -> Result<Vec<SealRecord>, StoreError> {
        self.files()?.seals.iter().map(|e| e.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    /// Replace a seal record if it is still at `expected_rev` (its `rev` is bumped).
    pub fn replace_seal(&self, expected_rev: u64, rec: &SealRecord) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let Some(old) = self.files()?.seals.get(rec.id.as_bytes())? else { return Ok(false) };
        let current: SealRecord = decode(rec.id.as_bytes(), &old)?;
        if current.rev != expected_rev {
            return Ok(false);
        }
        let mut next = rec.clone();
        next.rev = expected_rev + 1;
        Ok(self.files()?.seals.compare_and_swap(rec.id.as_bytes(), Some(&old), Some(encode(&next)))?.is_ok())
    }

    pub fn seal_maker(&self) -> Result<Option<SealMakerRecord>, StoreError> {
        self.files()?.meta.get(b"seal_maker")?.map(|v| decode(b"seal_maker", &v)).transpose()
    }

    pub fn put_seal_maker(&self, rec: &SealMakerRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.meta.insert(b"seal_maker", encode(rec))?;
        Ok(())
    }

    // ---- audit chain (see `audit.rs`); keys are the sequence number, big-endian ----

    /// Append an audit entry unless its sequence number is taken (compare-and-swap).
    pub fn append_audit<T: Serialize>(&self, seq: u64, entry: &T) -> Result<bool, StoreError> {
        let _writing = self.writing();
        Ok(self.files()?.audit.compare_and_swap(seq.to_be_bytes(), None as Option<&[u8]>, Some(encode(entry)))?.is_ok())
    }

    /// Audit entries from `from` on, in sequence order, with their stored key.
    pub fn audit_entries<T: DeserializeOwned + 'static>(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, T), StoreError>> + use<T> {
        let (range, unavailable) = match self.files() {
            Ok(f) => (Some(f.audit.range(from.to_be_bytes()..)), None),
            Err(e) => (None, Some(Err(e))),
        };
        unavailable.into_iter().chain(range.into_iter().flatten().map(|e| {
            let (k, v) = e?;
            let seq = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt { key: "audit".into(), reason: "bad key".into() })?,
            );
            Ok((seq, decode(&k, &v)?))
        }))
    }

    /// The last audit entry.
    pub fn last_audit<T: DeserializeOwned>(&self) -> Result<Option<(u64, T)>, StoreError> {
        match self.files()?.audit.last()? {
            None => Ok(None),
            Some((k, v)) => {
                let seq = u64::from_be_bytes(
                    k.as_ref()
                        .try_into()
                        .map_err(|_| StoreError::Corrupt { key: "audit".into(), reason: "bad key".into() })?,
                );
                Ok(Some((seq, decode(&k, &v)?)))
            }
        }
    }

    /// Raw record access for `mcsd audit` and tests that prove tampering is detected.
    pub fn audit_raw(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files()?.audit.get(seq.to_be_bytes())?.map(|v| v.to_vec()))
    }

    pub fn put_audit_raw(&self, seq: u64, raw: Option<&[u8]>) -> Result<(), StoreError> {
        let _writing = self.writing();
        match raw {
            Some(r) => self.files()?.audit.insert(seq.to_be_bytes(), r)?,
            None => self.files()?.audit.remove(seq.to_be_bytes())?,
        };
        self.files()?.db.flush()?;
        Ok(())
    }

    /// The audit entry with sequence number `seq`.
    pub fn audit_entry<T: DeserializeOwned>(&self, seq: u64) -> Result<Option<T>, StoreError> {
        let key = seq.to_be_bytes();
        self.files()?.audit.get(key)?.map(|v| decode(&key, &v)).transpose()
    }

    pub fn put_audit_checkpoint<T: Serialize>(&self, seq: u64, cp: &T) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.audit_checkpoints.insert(seq.to_be_bytes(), encode(cp))?;
        Ok(())
    }

    /// Every checkpoint, in sequence order.
    pub fn audit_checkpoints<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        self.audit_checkpoints_from(0)
    }

    /// The checkpoints at entry `from` and later, in sequence order (start-up checks only
    /// what follows the last known checkpoint).
    pub fn audit_checkpoints_from<T: DeserializeOwned>(&self, from: u64) -> Result<Vec<T>, StoreError> {
        self.files()?
            .audit_checkpoints
            .range(from.to_be_bytes()..)
            .map(|e| e.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }

    /// The checkpoint with the highest sequence number.
    pub fn last_audit_checkpoint<T: DeserializeOwned>(&self) -> Result<Option<T>, StoreError> {
        self.files()?.audit_checkpoints.last()?.map(|(k, v)| decode(&k, &v)).transpose()
    }

    /// Raw checkpoint access, like [`Store::put_audit_raw`]: for tools and tests that prove
    /// a removed or replaced checkpoint is noticed.
    pub fn put_audit_checkpoint_raw(&self, seq: u64, raw: Option<&[u8]>) -> Result<(), StoreError> {
        let _writing = self.writing();
        match raw {
            Some(r) => self.files()?.audit_checkpoints.insert(seq.to_be_bytes(), r)?,
            None => self.files()?.audit_checkpoints.remove(seq.to_be_bytes())?,
        };
        self.files()?.db.flush()?;
        Ok(())
    }

    pub fn audit_checkpoint_seqs(&self) -> Result<Vec<u64>, StoreError> {
        self.files()?
            .audit_checkpoints
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                Ok(u64::from_be_bytes(
                    k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                        key: "audit_checkpoints".into(),
                        reason: "bad key".into(),
                    })?,
                ))
            })
            .collect()
    }

    pub fn callback(&self, task_id: &str) -> Result<Option<CallbackRecord>, StoreError> {
        self.files()?.outbox.get(task_id.as_bytes())?.map(|v| decode(task_id.as_bytes(), &v)).transpose()
    }

    pub fn callbacks(&self) -> Result<Vec<CallbackRecord>, StoreError> {
        self.files()?.outbox.iter().map(|r| r.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    pub fn put_callback(&self, cb: &CallbackRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.outbox.insert(cb.task_id.as_bytes(), encode(cb))?;
        Ok(())
    }

    pub fn delete_callback(&self, task_id: &str) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.outbox.remove(task_id.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::key::{Subject, SubjectKind};
    use crate::model::task::{TaskData, TaskDisplay, TaskKind, TaskStatus};

    /// Defect 7 of issue 11: after a failed flush sled refuses every write until it is
    /// reopened; the store reopens itself, keeps what was durable, and bumps its generation.
    #[test]
    fn a_failed_store_reopens_itself_and_keeps_what_was_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.put_enrollment(&enrollment("e1")).unwrap();
        store.flush_blocking().unwrap();
        assert!(!store.failed());
        assert!(!store.recover().unwrap(), "nothing to recover");
        store.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(store.failed());
        // A request still holding the old files while the reopen waits for it.
        let held = store.files().unwrap();
        let s = &store;
        std::thread::scope(|scope| {
            let reopening = scope.spawn(move || s.recover());
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(held);
            assert!(reopening.join().unwrap().unwrap());
        });
        assert!(!store.failed());
        assert_eq!(store.generation(), 1);
        assert!(store.enrollment("e1").unwrap().is_some(), "durable records survive the reopen");
        store.put_enrollment(&enrollment("e2")).unwrap();
        store.flush_blocking().unwrap();
    }

    /// Defect 13 of issue 11: run outside systemd under umask 022, `db/*` and
    /// `secrets.vault` were 0644. The store makes itself private whatever the umask.
    #[test]
    fn store_files_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let _one_at_a_time = crate::os::UMASK_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let before = crate::os::set_umask(0o022);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path).unwrap();
            store.files().unwrap().db.flush().unwrap();
        }
        crate::os::set_umask(before);
        let mut seen = 0;
        let mut dirs = vec![path.clone()];
        while let Some(d) = dirs.pop() {
            assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    dirs.push(e.path());
                } else {
                    assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{}", e.path().display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 2, "sled's files and the vault");
        assert!(path.join("secrets.vault").exists());
    }

    fn key(id: &str, enrollment: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            enrollment_id: enrollment.into(),
            subject: Subject {
                kind: SubjectKind::Person,
                name: "Zhang San".into(),
                org_name: None,
                credit_code: None,
                id_number: None,
            },
            ca: "local".into(),
            status: KeyStatus::Active,
            public_key: "04ab".into(),
            device_id: "dev1".into(),
            platforms: vec![],
            pin: PinState::default(),
            created_at: 0,
            validity_days: 365,
            revocation_reason: None,
            certificate: None,
            p1: None,
            share_ref: None,
            verifier_ref: None,
        }
    }

    fn enrollment(id: &str) -> EnrollmentRecord {
        EnrollmentRecord {
            id: id.into(),
            subject: key("k", id).subject,
            ca: "local".into(),
            profile: None,
            platforms: vec!["P1".into()],
            validity_days: 365,
            activation_code_sha256: "00".into(),
            created_at: 0,
            expires_at: 10,
            state: EnrollmentState::Pending,
            predecessor: None,
        }
    }

    fn task(id: &str, platform: &str, expires_at: i64, message_len: usize) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            kind: TaskKind::Sign,
            platform: platform.into(),
            token_sha256: "00".into(),
            display: TaskDisplay { title: "t".into(), detail: None },
            data: TaskData::Sign { message: "a".repeat(message_len) },
            callback_url: None,
            status: TaskStatus::Pending,
            rev: 0,
            created_at: 0,
            expires_at,
            updated_at: 0,
            key_id: None,
            device_id: None,
            e: None,
            cosigned: false,
            cosign_nonces: Vec::new(),
            result: None,
            secret_result: false,
            delivered: false,
            error: None,
            charged_bytes: 0,
        }
    }

    fn finish(store: &Store, t: &TaskRecord, status: TaskStatus) -> TransitionOutcome {
        let mut next = t.clone();
        next.rev += 1;
        next.status = status;
        store.transition(Transition::of(&next)).unwrap()
    }

    #[test]
    fn quota_tally_counts_open_tasks_and_a_refusal_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let quota = Some(OpenQuota { max_tasks: 2, max_bytes: 1 << 20 });
        let (a, b) = (task("t_a", "P1", 100, 10), task("t_b", "P1", 50, 10));
        assert_eq!(
            store.insert_task(&a, &[(SecretKind::TaskInput, b"wrapped")], quota, None).unwrap(),
            InsertOutcome::Done
        );
        assert_eq!(store.insert_task(&b, &[], quota, None).unwrap(), InsertOutcome::Done);
        let charged = store.task("t_a").unwrap().unwrap().charged_bytes;
        assert!(charged as usize >= encode(&a).len() + 7, "{charged}");
        let usage = store.open_usage("P1").unwrap();
        assert_eq!((usage.tasks, usage.earliest_expiry), (2, Some(50)));

        // Refused: nothing is written, the tally is unchanged, another platform is not affected.
        let c = task("t_c", "P1", 10, 10);
        assert!(
            matches!(store.insert_task(&c, &[(SecretKind::TaskInput, b"x")], quota, None).unwrap(), InsertOutcome::OverQuota { usage: u, .. } if u == usage)
        );
        assert_eq!(store.task("t_c").unwrap(), None);
        assert_eq!(store.task_secret("t_c", SecretKind::TaskInput).unwrap(), None);
        assert_eq!(store.open_usage("P1").unwrap(), usage);
        assert_eq!(store.insert_task(&task("t_d", "P2", 10, 10), &[], quota, None).unwrap(), InsertOutcome::Done);

        // A claim keeps the task open; its final state gives the slot back, once.
        let mut claimed = b.clone();
        claimed.rev = 1;
        claimed.status = TaskStatus::Claimed;
        claimed.charged_bytes = 0; // the caller's copy does not change the charge
        store.transition(Transition::of(&claimed)).unwrap();
        assert_eq!(store.open_usage("P1").unwrap(), usage);
        assert_eq!(finish(&store, &claimed, TaskStatus::Completed), TransitionOutcome::Done);
        assert_eq!(finish(&store, &claimed, TaskStatus::Expired), TransitionOutcome::Raced);
        let after = store.open_usage("P1").unwrap();
        assert_eq!((after.tasks, after.bytes, after.earliest_expiry), (1, charged, Some(100)));
        assert_eq!(store.insert_task(&c, &[], quota, None).unwrap(), InsertOutcome::Done);

        // The byte quota: a task that does not fit is refused with its size.
        let big = task("t_big", "P3", 10, 4000);
        let small = Some(OpenQuota { max_tasks: 10, max_bytes: 4096 });
        assert_eq!(store.insert_task(&task("t_s", "P3", 10, 100), &[], small, None).unwrap(), InsertOutcome::Done);
        assert!(
            matches!(store.insert_task(&big, &[], small, None).unwrap(), InsertOutcome::OverQuota { task_bytes, .. } if task_bytes > 4000)
        );

        // Purging a finished task leaves the tally alone; purging an open one takes it out.
        store.purge_task("t_b").unwrap();
        store.purge_task("t_s").unwrap();
        assert_eq!(store.open_usage("P3").unwrap(), OpenUsage::default());
        let before = store.open_usage("P1").unwrap();

        // A reopened store rebuilds the same tally from the tasks tree.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.open_usage("P1").unwrap(), before);
        assert_eq!(store.open_usage("P2").unwrap().tasks, 1);
    }

    #[test]
    fn records_carry_a_version_byte_and_unknown_versions_are_refused() {
        let bytes = encode(&enrollment("e1"));
        assert_eq!(bytes[0], RECORD_V1);
        let mut future = bytes.clone();
        future[0] = 9;
        let err = decode::<EnrollmentRecord>(b"e1", &future).unwrap_err();
        assert!(err.to_string().contains("unknown record version 9"));
    }

    #[test]
    fn activation_is_once_only_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_enrollment(&enrollment("e1")).unwrap();
        assert_eq!(store.activate(&key("k1", "e1"), b"s", b"v", None).unwrap(), ActivateOutcome::Done);
        assert_eq!(store.activate(&key("k2", "e1"), b"s", b"v", None).unwrap(), ActivateOutcome::AlreadyActivated);
        assert!(store.key("k2").unwrap().is_none());
        assert!(store.secret("k2", SecretKind::Share).unwrap().is_none());
        assert_eq!(store.activate(&key("k3", "nope"), b"s", b"v", None).unwrap(), ActivateOutcome::NoSuchEnrollment);
        assert_eq!(store.keys_of_device("dev1").unwrap().len(), 1);
        assert_eq!(store.enrollment("e1").unwrap().unwrap().state, EnrollmentState::Activated { key_id: "k1".into() });
    }

    #[test]
    fn revoke_shreds_secrets_and_update_key_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_enrollment(&enrollment("e1")).unwrap();
        store.activate(&key("k1", "e1"), b"share", b"verifier", None).unwrap();
        let after = store
            .update_key::<()>("k1", |k| {
                k.pin.failures += 1;
                Ok(true)
            })
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(after.pin.failures, 1);
        assert!(store.replace_verifier("k1", b"v2").unwrap());
        assert_eq!(store.key("k1").unwrap().unwrap().pin.failures, 0);
        let rec = store.revoke("k1", "key_compromise", None).unwrap().unwrap();
        assert_eq!(rec.status, KeyStatus::Revoked);
        assert!(store.secret("k1", SecretKind::Share).unwrap().is_none());
        assert!(store.secret("k1", SecretKind::PinVerifier).unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_flushes_share_fsyncs_and_all_writes_are_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let mut handles = Vec::new();
        for i in 0..64u32 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.put_enrollment(&enrollment(&format!("e{i}"))).unwrap();
                s.flush().await.unwrap();
                // Durable when flush returns: visible to a reader of the files is tested
                // below; here, at least present.
                assert!(s.enrollment(&format!("e{i}")).unwrap().is_some());
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let fsyncs = store.fsync_count();
        eprintln!("fsyncs: {fsyncs}");
        assert!((1..64).contains(&fsyncs), "64 concurrent flushes took {fsyncs} fsyncs");
        drop(store);
        let again = reopen(dir.path());
        for i in 0..64 {
            assert!(again.enrollment(&format!("e{i}")).unwrap().is_some());
        }
    }

    #[test]
    fn shares_live_in_the_vault_and_revocation_erases_them_from_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let share = b"wrapped-share-0123456789abcdef";
        let verifier = b"wrapped-verifier-0123456789";
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_enrollment(&enrollment("e1")).unwrap();
            store.activate(&key("k1", "e1"), share, verifier, None).unwrap();
            assert_eq!(store.secret("k1", SecretKind::Share).unwrap().unwrap().as_ref(), share);
            store.flush_blocking().unwrap();
            assert!(store.replace_verifier("k1", b"second-verifier-xyz").unwrap());
            assert_eq!(store.secret("k1", SecretKind::PinVerifier).unwrap().unwrap().as_ref(), b"second-verifier-xyz");
        }
        assert!(files_contain(dir.path(), share), "the share is on disk while the key lives");
        assert!(!files_contain(dir.path(), verifier), "a replaced verifier is destroyed");
        let store = reopen(dir.path());
        assert_eq!(store.secret("k1", SecretKind::Share).unwrap().unwrap().as_ref(), share, "survives a restart");
        store.revoke("k1", "key_compromise", None).unwrap().unwrap();
        assert!(!files_contain(dir.path(), share), "revocation leaves no copy of the share");
        assert!(!files_contain(dir.path(), b"second-verifier-xyz"));
    }

    #[test]
    fn secrets_keys_name_record_and_kind() {
        assert_eq!(parse_secret_key(b"k_12/share"), Some(("k_12".into(), SecretKind::Share)));
        assert_eq!(parse_secret_key(b"daemon:audit/daemon-key"), Some(("daemon:audit".into(), SecretKind::DaemonKey)));
        assert_eq!(parse_secret_key(b"k_12/unknown"), None);
    }

    fn raw_meta_has_clean_close(dir: &std::path::Path) -> bool {
        let db = until_unlocked(|| sled::Config::new().path(dir).open()).unwrap();
        db.open_tree("meta").unwrap().get(CLEAN_CLOSE).unwrap().is_some()
    }

    /// Open a store just dropped in this process.
    fn reopen(dir: &std::path::Path) -> Store {
        until_unlocked(|| Store::open(dir)).unwrap()
    }

    /// A clean close records the vault layout and the next start uses it (no slot check);
    /// that start withdraws the record, and so does a write after an explicit close.
    #[test]
    fn clean_close_lets_the_next_start_skip_the_vault_check() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_enrollment(&enrollment("e1")).unwrap();
            store.put_enrollment(&enrollment("e2")).unwrap();
            store.activate(&key("k1", "e1"), b"share-one-0123456789", b"verifier-one-0123", None).unwrap();
            store.activate(&key("k2", "e2"), b"share-two-0123456789", b"verifier-two-0123", None).unwrap();
            store.revoke("k1", "superseded", None).unwrap().unwrap();
            store.close().unwrap();
            // A write after the close withdraws the record before it happens.
            store.put_enrollment(&enrollment("e3")).unwrap();
            assert!(!*store.closed.lock().unwrap());
            assert!(store.files().unwrap().meta.get(CLEAN_CLOSE).unwrap().is_none());
        } // dropped: closes again
        assert!(raw_meta_has_clean_close(dir.path()));
        let store = reopen(dir.path());
        assert!(
            store.files().unwrap().meta.get(CLEAN_CLOSE).unwrap().is_none(),
            "a running store has no clean-close record"
        );
        let (count, free) = store.files().unwrap().vault.layout().unwrap();
        assert_eq!((count, free.len()), (4, 2), "k1's two slots are free, k2's are not");
        assert_eq!(store.secret("k2", SecretKind::Share).unwrap().unwrap().as_ref(), b"share-two-0123456789");
        // Freed slots are reused, not the live ones.
        store.put_enrollment(&enrollment("e4")).unwrap();
        store.activate(&key("k4", "e4"), b"share-four-012345678", b"verifier-four-012", None).unwrap();
        assert_eq!(store.files().unwrap().vault.layout().unwrap().0, 4);
        assert_eq!(store.secret("k2", SecretKind::PinVerifier).unwrap().unwrap().as_ref(), b"verifier-two-0123");
        assert_eq!(store.secret("k4", SecretKind::Share).unwrap().unwrap().as_ref(), b"share-four-012345678");
    }

    /// A store written with the old layout (references in `secrets`) and left without a
    /// clean close (a crash): opening moves the references into the key records and zeroes
    /// a slot nothing references.
    #[test]
    fn old_layout_is_moved_and_a_crash_leaves_no_orphan() {
        let dir = tempfile::tempdir().unwrap();
        {
            let vault = Vault::open(&dir.path().join("secrets.vault"), &BTreeSet::new()).unwrap();
            let share = vault.put(b"old-layout-share-0123").unwrap();
            let verifier = vault.put(b"old-layout-verifier").unwrap();
            vault.put(b"orphaned-by-a-crash-42").unwrap();
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            db.open_tree("keys").unwrap().insert("k1", encode(&key("k1", "e1"))).unwrap();
            let secrets = db.open_tree("secrets").unwrap();
            secrets.insert(secret_key("k1", SecretKind::Share), &share.encode()[..]).unwrap();
            secrets.insert(secret_key("k1", SecretKind::PinVerifier), &verifier.encode()[..]).unwrap();
            secrets.insert(secret_key("t1", SecretKind::TaskInput), &b"task-blob"[..]).unwrap();
            db.flush().unwrap();
        }
        let store = reopen(dir.path());
        assert_eq!(store.secret("k1", SecretKind::Share).unwrap().unwrap().as_ref(), b"old-layout-share-0123");
        assert_eq!(store.secret("k1", SecretKind::PinVerifier).unwrap().unwrap().as_ref(), b"old-layout-verifier");
        let left: Vec<Vec<u8>> = store.files().unwrap().secrets.iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(left, vec![b"t1/task-input".to_vec()], "only non-key secrets stay in the tree");
        assert!(store.key("k1").unwrap().unwrap().share_ref.is_some());
        let vault_bytes = std::fs::read(dir.path().join("secrets.vault")).unwrap();
        assert!(!vault_bytes.windows(8).any(|w| w == b"orphaned"), "the unreferenced slot is zeroed");
        // Rotation sees the key's secrets through the record.
        let entries: Vec<Vec<u8>> = store.secret_entries().unwrap().into_iter().map(|(k, _)| k).collect();
        assert!(entries.contains(&b"k1/share".to_vec()) && entries.contains(&b"k1/pin-verifier".to_vec()));
        let (k, v) = store.secret_entries().unwrap().into_iter().find(|(k, _)| k == b"k1/share").unwrap();
        let (swapped, old_slot) = store.replace_secret(&k, &v, b"rewrapped-share-xyz").unwrap();
        assert!(swapped && old_slot.is_some());
        assert!(!store.replace_secret(&k, &v, b"stale").unwrap().0, "a stale value does not swap");
        assert_eq!(store.secret("k1", SecretKind::Share).unwrap().unwrap().as_ref(), b"rewrapped-share-xyz");
    }

    /// A certificate chain is stored once however many keys carry it, and every reader
    /// gets it back, also after a restart (empty cache).
    #[test]
    fn certificate_chains_are_stored_once_and_filled_in_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let chain = vec!["Q0EtY2VydGlmaWNhdGUtb25l".to_string(), "Um9vdC1jZXJ0aWZpY2F0ZQ==".to_string()];
        let cert = |serial: &str| CertificateInfo {
            der_b64: format!("bGVhZi0{serial}"),
            chain_b64: chain.clone(),
            chain_ref: None,
            serial: serial.into(),
            subject: "CN=x".into(),
            not_after: 1,
        };
        {
            let store = Store::open(dir.path()).unwrap();
            for (id, e) in [("k1", "e1"), ("k2", "e2")] {
                store.put_enrollment(&enrollment(e)).unwrap();
                store.activate(&key(id, e), b"share-0123456789abcd", b"verifier-0123456", None).unwrap();
                let updated = store
                    .update_key::<()>(id, |k| {
                        k.certificate = Some(cert(id));
                        Ok(true)
                    })
                    .unwrap()
                    .unwrap()
                    .unwrap();
                assert_eq!(updated.certificate.unwrap().chain_b64, chain);
            }
            let raw = store.files().unwrap().keys.get("k1").unwrap().unwrap();
            assert!(!raw.windows(chain[0].len()).any(|w| w == chain[0].as_bytes()), "the stored record holds no chain");
            assert_eq!(store.files().unwrap().chains.len(), 1, "one chain entry for both keys");
            let listed = store.keys_matching(|_| true).unwrap();
            assert!(listed.iter().all(|k| k.certificate.as_ref().unwrap().chain_b64 == chain));
            let revoked = store.revoke("k2", "cessation", None).unwrap().unwrap();
            assert_eq!(revoked.certificate.unwrap().chain_b64, chain, "revoke answers the whole record");
        }
        let store = reopen(dir.path());
        let k1 = store.key("k1").unwrap().unwrap();
        let c = k1.certificate.unwrap();
        assert_eq!((c.chain_b64, c.chain_ref, c.serial), (chain, None, "k1".to_string()));
    }

    fn csr_task(id: &str, rev: u64, status: TaskStatus) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            kind: TaskKind::Csr,
            platform: String::new(),
            token_sha256: "00".into(),
            display: TaskDisplay { title: "t".into(), detail: None },
            data: TaskData::Csr { key_id: "k1".into(), request_info: String::new() },
            callback_url: None,
            status,
            rev,
            created_at: 0,
            expires_at: i64::MAX,
            updated_at: 0,
            key_id: Some("k1".into()),
            device_id: Some("dev1".into()),
            e: None,
            cosigned: true,
            cosign_nonces: vec!["ab".into()],
            result: None,
            secret_result: false,
            delivered: false,
            error: None,
            charged_bytes: 0,
        }
    }

    fn entry(n: u64) -> AuditAppend {
        AuditAppend::new(n, &serde_json::json!({ "seq": n, "event": "POST /v1/tasks/{id}/complete" }))
    }

    /// Defect 8: a transition and the audit entry of its request are one transaction — a
    /// transition that loses its race writes no entry, an entry that cannot be written
    /// (its sequence number taken) leaves the task as it was, and a task's creation and
    /// its entry go together the same way.
    #[test]
    fn task_completion_and_its_audit_entry_are_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.insert_task(&csr_task("t1", 0, TaskStatus::Claimed), &[], None, Some(&entry(0))).unwrap();
        assert!(store.audit_raw(0).unwrap().is_some(), "created with its entry");

        let done = csr_task("t1", 1, TaskStatus::Completed);
        let t = Transition { audit: Some(entry(1)), ..Transition::of(&done) };
        assert_eq!(store.transition(t).unwrap(), TransitionOutcome::Done);
        assert_eq!(store.task("t1").unwrap().unwrap().status, TaskStatus::Completed);
        assert!(store.audit_raw(1).unwrap().is_some(), "the completion's entry is there");

        // Lost the race (stale rev): neither the task nor the entry changes.
        let stale = csr_task("t1", 1, TaskStatus::Rejected);
        assert_eq!(
            store.transition(Transition { audit: Some(entry(2)), ..Transition::of(&stale) }).unwrap(),
            TransitionOutcome::Raced
        );
        assert!(store.audit_raw(2).unwrap().is_none(), "no entry for a transition that did not happen");
        assert_eq!(store.task("t1").unwrap().unwrap().status, TaskStatus::Completed);

        // The entry cannot be written: the whole transition is refused.
        let next = csr_task("t1", 2, TaskStatus::Failed);
        let err = store.transition(Transition { audit: Some(entry(1)), ..Transition::of(&next) }).unwrap_err();
        assert!(err.to_string().contains("sequence number already used"), "{err}");
        assert_eq!(store.task("t1").unwrap().unwrap().rev, 1, "the task is untouched");
        let err = store
            .insert_task(
                &csr_task("t2", 0, TaskStatus::Pending),
                &[(SecretKind::TaskInput, b"blob")],
                None,
                Some(&entry(0)),
            )
            .unwrap_err();
        assert!(err.to_string().contains("sequence number already used"), "{err}");
        assert!(
            store.task("t2").unwrap().is_none() && store.task_secret("t2", SecretKind::TaskInput).unwrap().is_none()
        );

        // A creation the platform's quota refuses writes no entry either.
        let full = Some(OpenQuota { max_tasks: 0, max_bytes: 1 << 20 });
        let refused = store.insert_task(&csr_task("t3", 0, TaskStatus::Pending), &[], full, Some(&entry(5))).unwrap();
        assert!(matches!(refused, InsertOutcome::OverQuota { .. }));
        assert!(store.audit_raw(5).unwrap().is_none() && store.task("t3").unwrap().is_none());

        // Without an entry a transition is as before.
        assert_eq!(store.transition(Transition::of(&next)).unwrap(), TransitionOutcome::Done);
    }

    /// Defect 8: completing a `csr` task installs the certificate in the same transaction —
    /// the key is never active with the task still claimed, nor the reverse.
    #[test]
    fn csr_complete_installs_certificate_and_finishes_task_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_enrollment(&enrollment("e1")).unwrap();
        let mut pending = key("k1", "e1");
        pending.status = KeyStatus::Pending;
        pending.p1 = Some("04p1".into());
        store.activate(&pending, b"share-0123456789abcd", b"verifier-0123456", None).unwrap();
        store.insert_task(&csr_task("t1", 0, TaskStatus::Claimed), &[], None, None).unwrap();
        let cert = CertificateInfo {
            der_b64: "bGVhZg==".into(),
            chain_b64: vec!["Q0E=".into()],
            chain_ref: None,
            serial: "01".into(),
            subject: "CN=x".into(),
            not_after: 1,
        };

        // The completion loses a race: no certificate either.
        let stale = csr_task("t1", 5, TaskStatus::Completed);
        let lost =
            Transition { install_certificate: Some(("k1", &cert)), audit: Some(entry(0)), ..Transition::of(&stale) };
        assert_eq!(store.transition(lost).unwrap(), TransitionOutcome::Raced);
        let k = store.key("k1").unwrap().unwrap();
        assert_eq!(
            (k.status, k.certificate.is_none(), store.audit_raw(0).unwrap().is_none()),
            (KeyStatus::Pending, true, true)
        );

        // Both at once.
        let done = csr_task("t1", 1, TaskStatus::Completed);
        let t = Transition { install_certificate: Some(("k1", &cert)), audit: Some(entry(0)), ..Transition::of(&done) };
        assert_eq!(store.transition(t).unwrap(), TransitionOutcome::Done);
        let k = store.key("k1").unwrap().unwrap();
        assert_eq!(k.status, KeyStatus::Active);
        assert_eq!(k.certificate.unwrap().chain_b64, cert.chain_b64, "the chain is stored once and filled in");
        assert!(k.p1.is_none(), "p1 is dropped with the install");
        assert_eq!(store.task("t1").unwrap().unwrap().status, TaskStatus::Completed);
        assert!(store.audit_raw(0).unwrap().is_some());

        // A key that is no longer pending refuses the install, and the task stays.
        store.insert_task(&csr_task("t2", 0, TaskStatus::Claimed), &[], None, None).unwrap();
        let again = csr_task("t2", 1, TaskStatus::Completed);
        let t = Transition { install_certificate: Some(("k1", &cert)), ..Transition::of(&again) };
        assert_eq!(store.transition(t).unwrap(), TransitionOutcome::KeyNotPending(Some(KeyStatus::Active)));
        assert_eq!(store.task("t2").unwrap().unwrap().status, TaskStatus::Claimed);
        let gone = Transition { install_certificate: Some(("nope", &cert)), ..Transition::of(&again) };
        assert_eq!(store.transition(gone).unwrap(), TransitionOutcome::KeyNotPending(None));
    }

    /// The audit checkpoint operations the start-up check and the tools use.
    #[test]
    fn audit_checkpoints_are_read_from_a_point_on_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.last_audit_checkpoint::<serde_json::Value>().unwrap().is_none());
        for seq in [63u64, 127, 300] {
            store.put_audit_checkpoint(seq, &serde_json::json!({ "seq": seq })).unwrap();
        }
        let from: Vec<serde_json::Value> = store.audit_checkpoints_from(127).unwrap();
        assert_eq!(from, vec![serde_json::json!({"seq": 127}), serde_json::json!({"seq": 300})]);
        assert_eq!(store.last_audit_checkpoint::<serde_json::Value>().unwrap().unwrap()["seq"], 300);
        assert_eq!(store.audit_checkpoint_seqs().unwrap(), vec![63, 127, 300]);
        store.put_audit_checkpoint_raw(300, None).unwrap();
        assert_eq!(store.last_audit_checkpoint::<serde_json::Value>().unwrap().unwrap()["seq"], 127);
        assert!(store.append_audit(5, &serde_json::json!({ "seq": 5 })).unwrap());
        assert_eq!(store.audit_entry::<serde_json::Value>(5).unwrap().unwrap()["seq"], 5);
        assert!(store.audit_entry::<serde_json::Value>(6).unwrap().is_none());
        // A replaced daemon key record keeps its wrapped secret.
        let rec = DaemonKeyRecord { name: "audit".into(), public_key: "04aa".into(), created_at: 0 };
        store.insert_daemon_key(&rec, b"wrapped").unwrap();
        store.put_daemon_key_record(&DaemonKeyRecord { public_key: "04bb".into(), ..rec }).unwrap();
        let (after, blob) = store.daemon_key("audit").unwrap().unwrap();
        assert_eq!((after.public_key.as_str(), blob.as_ref()), ("04bb", &b"wrapped"[..]));
    }

    #[test]
    fn task_records_from_before_cosign_nonces_still_load() {
        let mut v = serde_json::to_value(csr_task("t1", 0, TaskStatus::Claimed)).unwrap();
        v.as_object_mut().unwrap().remove("cosign_nonces");
        let old: TaskRecord = serde_json::from_value(v).unwrap();
        assert!(old.cosign_nonces.is_empty());
    }

    fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().any(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                files_contain(&p, needle)
            } else {
                std::fs::read(&p).unwrap().windows(needle.len()).any(|w| w == needle)
            }
        })
    }
}
