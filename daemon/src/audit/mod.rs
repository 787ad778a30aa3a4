//! The audit log: a hash chain of security events in the store, with signed checkpoints
//! that are pinned outside the store.
//!
//! Entry `n` holds `prev` = hash of entry `n−1` (zeros for the first) and
//! `hash = SM3(prev ‖ JSON(entry without hash))`; its store key is `n`. Every
//! [`CHECKPOINT_EVERY`] entries, at every clean shutdown and at start after an unclean
//! stop, a checkpoint `{seq, hash, at, signature}` is signed by the daemon-held SM2 key
//! `audit` (HSM-wrapped), so rewriting the chain needs that key. An entry is flushed to
//! disk before the request that caused it is answered; a task step writes its request's
//! entry in its own store transaction ([`RequestEntry`]), so a crash cannot leave the
//! change without its entry.
//!
//! What a writer of the stopped store can no longer do unnoticed:
//! - **rewrite or cut the tail**: [`verify`] fails unless the last checkpoint covers the
//!   head (`--allow-unsealed-tail` accepts entries after it, for a daemon that crashed);
//! - **replace the audit key and re-sign**: checkpoints are checked against a key pinned
//!   outside the store (`[audit] public_key_file`, written by `mcsd audit export-key`) or,
//!   failing that, the public half of the HSM-wrapped key — never the store's record alone;
//!   the daemon refuses to start when the store's key is not the pinned one;
//! - **roll the store back to an older copy** (which would also unlock a locked key): each
//!   checkpoint is appended to `[audit] checkpoint_file` (JSON lines, fsynced, 0600)
//!   and/or sent to syslog, after the entries it covers are durable. `mcsd audit verify`
//!   checks every exported checkpoint is still in the store, and the daemon checks the
//!   last one at start.
//!
//! At start ([`Audit::check_at_start`]) the daemon verifies the chain from its last known
//! checkpoint — the checkpoint file's last line, else the store's last checkpoint — to the
//! head (fast however big the store: only the tail is read), refuses to start if it
//! cannot, and then seals a tail a crash left unsealed.
//!
//! What is recorded: every state-changing API request (enrollment, activation, co-sign,
//! decrypt, PIN change/unlock, revocation, successor, platform grants, task transitions,
//! seals and seal grants) with its outcome code — so PIN failures and lockouts appear as
//! such — plus daemon events (start, stop, reload). Never a PIN proof, share, verifier,
//! plaintext or token: only route, ids, caller identity and code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sm2_2p::AffinePoint;
use sm3::Digest;

use crate::config::AuditConfig;
use crate::daemon_keys::{DaemonKeyError, DaemonKeys};
use crate::model::task::{TaskKind, TaskStatus};
use crate::store::{AuditAppend, Storage, StoreError};

pub const CHECKPOINT_EVERY: u64 = 64;
/// The daemon-held key that signs checkpoints.
pub const AUDIT_KEY: &str = "audit";

pub use crate::model::audit::{Checkpoint, Entry};

mod export;
mod key;
mod verify;
pub use export::*;
pub use key::*;
pub use verify::*;

/// The detail of an entry about a step on a task: its kind and its status afterwards. The
/// API layer records the same for the task requests it answers, and the tasks layer for
/// the steps it commits with the request's entry, so one function says what it is.
pub fn task_detail(kind: TaskKind, status: TaskStatus) -> Value {
    json!({ "kind": kind, "status": status })
}

/// The detail of an entry about a seal request (and the key a grant names).
pub fn seal_detail(seal_id: Option<&str>, key_id: Option<&str>) -> Value {
    json!({ "seal_id": seal_id, "key_id": key_id })
}

/// The detail of an entry about an enrollment (its activation, by the keys layer; other
/// enrollment requests, by the API layer).
pub fn enrollment_detail(enrollment_id: Option<&str>) -> Value {
    json!({ "enrollment_id": enrollment_id })
}

/// The `detail` of an entry about a delegation (or a delegate's use of a key).
pub fn delegation_detail(delegation_id: &str) -> Value {
    json!({ "delegation_id": delegation_id })
}

/// Which entries [`Audit::query`] answers: those matching every filter given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub key_id: Option<&'a str>,
    pub platform: Option<&'a str>,
    /// The actor exactly (`app:<device>`: a delegate's own entries).
    pub actor: Option<&'a str>,
    /// Entries about uses of this seal (`detail.seal_id`).
    pub seal_id: Option<&'a str>,
}

/// What an event says, before it is chained.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub event: String,
    pub actor: String,
    pub key_id: Option<String>,
    pub platform: Option<String>,
    pub task_id: Option<String>,
    pub outcome: String,
    pub detail: Value,
    /// The API request the event records, if it records one.
    pub origin: Option<RequestOrigin>,
}

/// Where an API request came from, as its audit entry records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOrigin {
    /// The request's `X-Request-Id` (the caller's, or the one the daemon made).
    pub request_id: String,
    /// The peer's IP address.
    pub peer: Option<String>,
}

/// Why the audit chain cannot be trusted (the daemon does not start: exit 65).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Untrusted(String),
}

/// `SM3(prev ‖ JSON(entry without hash))`, hex.
pub fn entry_hash(e: &Entry) -> String {
    let mut body = e.clone();
    body.hash = String::new();
    let mut h = sm3::Sm3::new();
    h.update(hex::decode(&e.prev).unwrap_or_default());
    h.update(serde_json::to_vec(&body).unwrap_or_default());
    hex::encode(h.finalize())
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(seq: u64, hash: &str) -> Vec<u8> {
    let mut m = b"mcsd-audit".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&hex::decode(hash).unwrap_or_default());
    m
}

fn zero_hash() -> String {
    hex::encode([0u8; 32])
}

// ---- the request being served -----------------------------------------------------------

/// The audit entry of the API request being served. A domain step that carries out the
/// request in one store transaction (a task transition, a task's creation, a certificate
/// install) writes this entry in that transaction and marks it written; the API layer then
/// writes none — one entry per request, and never a durable change without its entry.
pub struct RequestEntry {
    /// `METHOD /route/template`.
    pub event: String,
    pub actor: String,
    /// The caller's platform, for gateways.
    pub platform: Option<String>,
    pub origin: RequestOrigin,
    written: AtomicBool,
    /// The delegation through which the caller's device holds the key it uses, once the
    /// keys layer has resolved it (the entry then names it: `detail.delegation_id`).
    delegation: std::sync::OnceLock<String>,
}

tokio::task_local! {
    static REQUEST: Arc<RequestEntry>;
}

impl RequestEntry {
    pub fn new(event: String, actor: String, platform: Option<String>, origin: RequestOrigin) -> Arc<RequestEntry> {
        Arc::new(RequestEntry {
            event,
            actor,
            platform,
            origin,
            written: AtomicBool::new(false),
            delegation: std::sync::OnceLock::new(),
        })
    }

    /// The request being served uses a key through delegation `id` (no-op outside a
    /// request; the first delegation named wins).
    pub fn note_delegation(id: &str) {
        let _ = REQUEST.try_with(|r| r.delegation.set(id.to_owned()));
    }

    /// `detail` with the delegation the request used the key through, if any.
    pub fn annotate(&self, detail: Value) -> Value {
        let Some(d) = self.delegation.get() else { return detail };
        let mut detail = match detail {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            other => serde_json::Map::from_iter([("value".to_owned(), other)]),
        };
        detail.insert("delegation_id".into(), Value::String(d.clone()));
        Value::Object(detail)
    }

    /// Run the request's handler with this entry as the one domain steps may write.
    pub async fn scope<F: std::future::Future>(self: &Arc<Self>, handler: F) -> F::Output {
        REQUEST.scope(self.clone(), handler).await
    }

    /// The entry of the request this task is serving, if no step has written it yet.
    pub fn pending() -> Option<Arc<RequestEntry>> {
        REQUEST.try_with(Arc::clone).ok().filter(|r| !r.written())
    }

    /// A domain step wrote the entry.
    pub fn written(&self) -> bool {
        self.written.load(Ordering::SeqCst)
    }

    fn mark_written(&self) {
        self.written.store(true, Ordering::SeqCst);
    }
}

// ---- the live chain ---------------------------------------------------------------------

struct Head {
    next: u64,
    hash: String,
    /// The store generation this head was read in; after a reopen, entries appended but
    /// never flushed are gone, so the head is read again.
    generation: u64,
}

pub struct Audit {
    store: Arc<dyn Storage>,
    keys: DaemonKeys,
    cfg: AuditConfig,
    /// Entry and checkpoint times read this clock.
    clock: Arc<dyn crate::clock::Clock>,
    head: tokio::sync::Mutex<Head>,
}

/// What the start-up check found and did.
#[derive(Debug)]
pub struct StartCheck {
    /// Where verification started: `None` = entry 0.
    pub from: Option<u64>,
    /// Entries read.
    pub entries_checked: u64,
    /// A tail a crash left after the last checkpoint, now sealed: (first, last).
    pub sealed: Option<(u64, u64)>,
}

impl StartCheck {
    pub fn detail(&self) -> Value {
        json!({
            "verified_from": self.from,
            "entries_checked": self.entries_checked,
            "sealed_after_unclean_stop": self.sealed.map(|(a, b)| json!([a, b])),
        })
    }
}

fn read_head(store: &dyn Storage) -> Result<Head, StoreError> {
    let generation = store.generation();
    Ok(match store.last_audit()? {
        Some((seq, e)) => Head { next: seq + 1, hash: e.hash, generation },
        None => Head { next: 0, hash: zero_hash(), generation },
    })
}

impl Audit {
    pub fn open(
        store: Arc<dyn Storage>,
        keys: DaemonKeys,
        cfg: AuditConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Audit, StoreError> {
        let head = read_head(&*store)?;
        Ok(Audit { store, keys, cfg, clock, head: tokio::sync::Mutex::new(head) })
    }

    fn chain(&self, head: &Head, ev: Event) -> Entry {
        let mut e = Entry {
            node: self.store.node_id().map(str::to_owned),
            seq: head.next,
            at: self.clock.now_ms(),
            event: ev.event,
            actor: ev.actor,
            key_id: ev.key_id,
            platform: ev.platform,
            task_id: ev.task_id,
            outcome: ev.outcome,
            detail: ev.detail,
            request_id: ev.origin.as_ref().map(|o| o.request_id.clone()),
            peer: ev.origin.and_then(|o| o.peer),
            prev: head.hash.clone(),
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
        e
    }

    /// The entry is in the store: move the head, and sign a checkpoint when one is due.
    async fn advance(&self, head: &mut Head, e: &Entry) {
        head.next = e.seq + 1;
        head.hash = e.hash.clone();
        crate::metrics::METRICS.audit_entries.inc();
        if head.next.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoint_logged(head).await;
        }
    }

    /// After the store reopened (a failed flush), entries appended but never flushed are
    /// gone: take the head from the store again.
    fn follow_reopen(&self, head: &mut Head) -> Result<(), StoreError> {
        if head.generation != self.store.generation() {
            *head = read_head(&*self.store)?;
        }
        Ok(())
    }

    /// After a failed write the store may hold the entry or not: take the head from it.
    fn resync(&self, head: &mut Head) {
        match read_head(&*self.store) {
            Ok(h) => *head = h,
            Err(e) => tracing::error!(error = %e, "audit: cannot re-read the chain's head"),
        }
    }

    /// Chain an event and make it durable.
    pub async fn record(&self, ev: Event) -> Result<(), StoreError> {
        let done = self.record_durably(ev).await;
        if done.is_err() {
            crate::metrics::METRICS.audit_write_failures.inc();
        }
        done
    }

    async fn record_durably(&self, ev: Event) -> Result<(), StoreError> {
        {
            let mut head = self.head.lock().await;
            self.follow_reopen(&mut head)?;
            let e = self.chain(&head, ev);
            match self.store.append_audit(e.seq, &e) {
                Ok(true) => {}
                Ok(false) => {
                    self.resync(&mut head);
                    return Err(StoreError::Corrupt {
                        key: format!("audit/{}", e.seq),
                        reason: "sequence number already used".into(),
                    });
                }
                Err(err) => {
                    self.resync(&mut head);
                    return Err(err);
                }
            }
            self.advance(&mut head, &e).await;
        }
        // Outside the head lock, so concurrent requests share the fsync (group commit).
        self.store.flush().await
    }

    /// Chain an event whose entry `write` puts into the store inside its own transaction
    /// (with the change it records), under the head lock; `committed` says whether it did.
    /// The caller flushes. With `request`, the request's entry is marked written.
    pub async fn append_with<T>(
        &self,
        ev: Event,
        request: Option<&RequestEntry>,
        write: impl FnOnce(AuditAppend) -> Result<T, StoreError>,
        committed: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError> {
        let mut ev = ev;
        if let Some(r) = request {
            ev.detail = r.annotate(std::mem::take(&mut ev.detail));
            ev.origin = Some(r.origin.clone());
        }
        let mut head = self.head.lock().await;
        self.follow_reopen(&mut head)?;
        let e = self.chain(&head, ev);
        let out = match write(AuditAppend::new(e.seq, &e)) {
            Ok(out) => out,
            Err(err) => {
                crate::metrics::METRICS.audit_write_failures.inc();
                self.resync(&mut head);
                return Err(err);
            }
        };
        if committed(&out) {
            if let Some(r) = request {
                r.mark_written();
            }
            self.advance(&mut head, &e).await;
        }
        Ok(out)
    }

    /// Sign a checkpoint at the current head (at shutdown, and every CHECKPOINT_EVERY).
    pub async fn checkpoint(&self) {
        let head = self.head.lock().await;
        if head.next > 0 {
            self.checkpoint_logged(&head).await;
        }
    }

    async fn checkpoint_logged(&self, head: &Head) {
        if let Err(e) = self.checkpoint_locked(head).await {
            // The chain is still durable; the next checkpoint covers these entries.
            tracing::error!(error = %e, seq = head.next - 1, "audit checkpoint not made");
        }
    }

    /// Sign, store and export a checkpoint at the head. The entries it covers are made
    /// durable before it is exported, so an exported checkpoint is never ahead of the disk.
    async fn checkpoint_locked(&self, head: &Head) -> Result<Checkpoint, String> {
        let (seq, hash) = (head.next - 1, head.hash.clone());
        let keys = self.keys.clone();
        let msg = checkpoint_message(seq, &hash);
        let sig = tokio::task::spawn_blocking(move || keys.sign(AUDIT_KEY, &msg))
            .await
            .map_err(|e| format!("signing task: {e}"))??;
        let cp = Checkpoint { seq, hash, at: self.clock.now_ms(), signature: hex::encode(sig) };
        self.store.put_audit_checkpoint(seq, &cp).map_err(|e| format!("storing: {e}"))?;
        self.store.flush().await.map_err(|e| format!("flushing: {e}"))?;
        self.export(&cp).await;
        Ok(cp)
    }

    /// Append a checkpoint to the checkpoint file and send it to syslog, as configured.
    async fn export(&self, cp: &Checkpoint) {
        let (cfg, cp) = (self.cfg.clone(), cp.clone());
        let done = tokio::task::spawn_blocking(move || {
            if let Some(path) = &cfg.checkpoint_file
                && let Err(e) = append_exported(path, &Exported::Checkpoint(cp.clone()))
            {
                tracing::error!(error = %e, file = %path.display(), seq = cp.seq, "audit checkpoint not exported to the checkpoint file");
            }
            if let Some(socket) = &cfg.syslog_socket
                && let Err(e) = send_syslog(socket, &cp)
            {
                tracing::error!(error = %e, socket = %socket.display(), seq = cp.seq, "audit checkpoint not sent to syslog");
            }
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "audit checkpoint export task failed");
        }
    }

    /// The audit public key as PEM, from the HSM-wrapped private key (created if absent).
    pub fn public_key_pem(&self) -> Result<String, String> {
        public_key_pem(&self.keys)
    }

    /// Before serving: check the audit key against its pin, verify the chain from the last
    /// known checkpoint to the head, and seal a tail an unclean stop left unsealed.
    pub async fn check_at_start(&self) -> Result<StartCheck, AuditError> {
        if let Some(path) = &self.cfg.checkpoint_file {
            // Exporting is what makes a rollback detectable: a file that cannot be written stops the start.
            open_for_append(path).map_err(|e| {
                AuditError::Untrusted(format!(
                    "[audit] checkpoint_file {}: {e} (checkpoints could not be exported)",
                    path.display()
                ))
            })?;
        }
        let (store, keys, cfg) = (self.store.clone(), self.keys.clone(), self.cfg.clone());
        let key = tokio::task::spawn_blocking(move || trusted_key_at_start(&*store, &keys, &cfg))
            .await
            .map_err(|e| AuditError::Untrusted(format!("key check task: {e}")))??;
        let exported = match &self.cfg.checkpoint_file {
            Some(path) => read_exported(path).map_err(AuditError::Untrusted)?,
            None => Vec::new(),
        };
        if self.cfg.checkpoint_file.is_some() && exported.is_empty() && self.store.last_audit_checkpoint()?.is_some() {
            tracing::warn!(
                "audit: the checkpoint file is empty but the store has checkpoints (newly configured, or the file was removed?): verifying from the store's own"
            );
        }
        let anchor = match exported.last() {
            Some(line) => Some(line.anchor(&key)?),
            None => self
                .store
                .last_audit_checkpoint()?
                .map(|cp| Anchor::Checkpoint { cp, origin: "the store's last checkpoint".into() }),
        };
        let chain = verify_from(&*self.store, anchor.as_ref(), key.as_ref()).map_err(|why| {
            let hint = if why.starts_with("rollback detected") {
                "; if the store was replaced on purpose, restore it with `mcsd restore` (which records it in the checkpoint file)"
            } else {
                ""
            };
            AuditError::Untrusted(format!("{why}{hint}"))
        })?;
        let mut check =
            StartCheck { from: anchor.as_ref().and_then(Anchor::seq), entries_checked: chain.len(), sealed: None };

        let head = self.head.lock().await;
        let last: Option<Checkpoint> = self.store.last_audit_checkpoint()?;
        let covered = head.next == 0 || last.as_ref().is_some_and(|c| c.seq + 1 == head.next);
        if !covered {
            let first = last.as_ref().map_or(0, |c| c.seq + 1);
            match self.checkpoint_locked(&head).await {
                Ok(_) => {
                    tracing::warn!(
                        first,
                        last = head.next - 1,
                        "audit: entries after the last checkpoint (an unclean stop) verified and sealed"
                    );
                    check.sealed = Some((first, head.next - 1));
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit: could not seal the entries after the last checkpoint; the next checkpoint will")
                }
            }
        } else if let Some(cp) = last
            && self.cfg.checkpoint_file.is_some()
            && !matches!(exported.last(), Some(ExportedLine { item: Exported::Checkpoint(e), .. }) if *e == cp)
        {
            // The file lags the store (newly configured, or a crash between the two).
            self.export(&cp).await;
        }
        tracing::info!(from = ?check.from, entries = check.entries_checked, "audit chain verified from its last known checkpoint");
        Ok(check)
    }

    /// Entries matching `filter`, oldest first, at most `limit`, from `since`.
    pub fn query(&self, filter: &Filter<'_>, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let Filter { key_id, platform, actor, seal_id } = *filter;
        let matching = |store: &dyn Storage| -> Result<Vec<Entry>, StoreError> {
            let mut out = Vec::new();
            for item in store.audit_entries(since) {
                let (_, e) = item?;
                if key_id.is_some_and(|k| e.key_id.as_deref() != Some(k))
                    || platform.is_some_and(|p| e.platform.as_deref() != Some(p))
                    || actor.is_some_and(|a| e.actor != a)
                    || seal_id.is_some_and(|s| e.detail.get("seal_id").and_then(Value::as_str) != Some(s))
                {
                    continue;
                }
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        };
        let chains = self.store.audit_chains()?;
        if chains.is_empty() {
            return matching(&*self.store);
        }
        // Several nodes' chains: `since` counts in each, and the answer is in time order.
        let mut out = Vec::new();
        for chain in &chains {
            out.extend(matching(&*chain.store)?);
        }
        out.sort_by(|a, b| (a.at, &a.node, a.seq).cmp(&(b.at, &b.node, b.seq)));
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::prelude::*;

    fn entry(seq: u64, prev: &str) -> Entry {
        let mut e = Entry {
            node: None,
            seq,
            at: 1,
            event: "POST /v1/keys/{id}/sign".into(),
            actor: "device".into(),
            key_id: Some("k".into()),
            platform: None,
            task_id: None,
            outcome: "ok".into(),
            detail: Value::Null,
            request_id: None,
            peer: None,
            prev: prev.into(),
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
        e
    }

    /// A store with `n` chained entries; returns the hashes.
    fn chained(store: &Store, from: u64, n: u64, outcome: &str) -> Vec<String> {
        let mut prev = match from {
            0 => zero_hash(),
            f => store.audit_entry(f - 1).unwrap().unwrap().hash,
        };
        let mut out = Vec::new();
        for seq in from..from + n {
            let mut e = entry(seq, &prev);
            e.outcome = outcome.into();
            e.hash = entry_hash(&e);
            prev = e.hash.clone();
            store.put_audit_raw(seq, None).unwrap();
            assert!(store.append_audit(seq, &e).unwrap());
            out.push(e.hash);
        }
        out
    }

    fn sign(key: &sm2_2p::DaemonKey, store: &Store, seq: u64) -> Checkpoint {
        let hash = store.audit_entry(seq).unwrap().unwrap().hash;
        let sig = key.sign(&checkpoint_message(seq, &hash)).to_der();
        let cp = Checkpoint { seq, hash, at: 1000, signature: hex::encode(sig) };
        store.put_audit_checkpoint(seq, &cp).unwrap();
        cp
    }

    fn trusted(key: &sm2_2p::DaemonKey) -> TrustedKey {
        TrustedKey { point: key.public(), source: "pinned in test".into() }
    }

    #[test]
    fn verify_names_the_modified_missing_or_moved_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        chained(&store, 0, 5, "ok");
        let loose = VerifyOptions { allow_unsealed_tail: true, ..Default::default() };
        assert_eq!(verify(&store, &loose).unwrap(), Verified { entries: 5, unsealed: 5, ..Default::default() });

        let raw = store.audit_raw(2).unwrap().unwrap();
        let mut flipped = raw.clone();
        let at = flipped.windows(4).position(|w| w == b"sign").unwrap();
        flipped[at] = b'S';
        store.put_audit_raw(2, Some(&flipped)).unwrap();
        assert_eq!(verify(&store, &loose).unwrap_err(), "entry 2 was modified (hash mismatch)");
        store.put_audit_raw(2, Some(&raw)).unwrap();

        store.put_audit_raw(3, None).unwrap();
        assert!(verify(&store, &loose).unwrap_err().starts_with("entry 3 is missing"));
        store.put_audit_raw(3, Some(&raw.clone())).unwrap();
        assert!(verify(&store, &loose).unwrap_err().starts_with("entry 3 holds entry 2"));
    }

    /// Defect 5: with no checkpoint over the head — every checkpoint deleted and the chain
    /// rewritten, or the last one deleted and the tail rewritten — verify fails.
    #[test]
    fn verify_fails_unless_a_signed_checkpoint_covers_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = sm2_2p::DaemonKey::generate();
        let k = trusted(&key);
        let opts = VerifyOptions { key: Some(&k), ..Default::default() };
        chained(&store, 0, 10, "ok");
        sign(&key, &store, 4);
        sign(&key, &store, 9);
        assert_eq!(verify(&store, &opts).unwrap(), Verified { entries: 10, checkpoints: 2, ..Default::default() });

        // The last checkpoint removed and the entries after the previous one rewritten.
        store.put_audit_checkpoint_raw(9, None).unwrap();
        chained(&store, 5, 5, "rewritten");
        let err = verify(&store, &opts).unwrap_err();
        assert!(
            err.starts_with("entries 5..=9 are not covered by a signed checkpoint (the last covers entry 4)"),
            "{err}"
        );
        let loose = VerifyOptions { key: Some(&k), allow_unsealed_tail: true, ..Default::default() };
        assert_eq!(verify(&store, &loose).unwrap().unsealed, 5, "accepted only when asked for, and reported");

        // Every checkpoint removed and everything rewritten: no longer "intact, 0 checkpoints".
        store.put_audit_checkpoint_raw(4, None).unwrap();
        chained(&store, 0, 10, "rewritten");
        let err = verify(&store, &opts).unwrap_err();
        assert!(err.starts_with("entries 0..=9 are not covered by a signed checkpoint (there is none)"), "{err}");
    }

    /// Defect 5: checkpoints re-signed with another key fail against the pinned key.
    #[test]
    fn checkpoints_are_checked_against_the_pinned_key_not_the_stores() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (real, forger) = (sm2_2p::DaemonKey::generate(), sm2_2p::DaemonKey::generate());
        chained(&store, 0, 3, "ok");
        sign(&forger, &store, 2);
        let pinned = trusted(&real);
        let err = verify(&store, &VerifyOptions { key: Some(&pinned), ..Default::default() }).unwrap_err();
        assert_eq!(err, "checkpoint at entry 2: signature does not verify with the audit key pinned in test");
        let none = verify(&store, &VerifyOptions::default()).unwrap_err();
        assert!(none.contains("no trusted audit key"), "{none}");
    }

    /// Defect 5: an older copy of the store passes on its own, but not against the
    /// checkpoints exported from the newer one; a recorded restore restarts the check.
    #[test]
    fn exported_checkpoints_detect_a_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = sm2_2p::DaemonKey::generate();
        let k = trusted(&key);
        chained(&store, 0, 4, "ok");
        let old = sign(&key, &store, 3);
        chained(&store, 4, 4, "ok");
        let new = sign(&key, &store, 7);
        let file = dir.path().join("checkpoints.jsonl");
        append_exported(&file, &Exported::Checkpoint(old.clone())).unwrap();
        append_exported(&file, &Exported::Checkpoint(new.clone())).unwrap();
        let lines = read_exported(&file).unwrap();
        let opts = VerifyOptions { key: Some(&k), exported: Some(&lines), ..Default::default() };
        assert_eq!(verify(&store, &opts).unwrap().exported_checked, 2);

        // Roll back: the store as it was at entry 3.
        for seq in 4..8 {
            store.put_audit_raw(seq, None).unwrap();
        }
        store.put_audit_checkpoint_raw(7, None).unwrap();
        assert!(
            verify(&store, &VerifyOptions { key: Some(&k), ..Default::default() }).is_ok(),
            "consistent on its own"
        );
        let err = verify(&store, &opts).unwrap_err();
        assert!(
            err.starts_with(
                "rollback detected: the store's audit chain ends at entry 3, but the checkpoint exported on line 2"
            ),
            "{err}"
        );
        // The start-up check from the file's last line says the same.
        let anchor = lines.last().unwrap().anchor(&Some(k.clone())).unwrap();
        let err = verify_from(&store, Some(&anchor), Some(&k)).err().unwrap();
        assert!(
            err.starts_with(
                "rollback detected: the store's audit chain ends at entry 3, but the last exported checkpoint"
            ),
            "{err}"
        );

        // A different history at the same length is a rollback too.
        chained(&store, 4, 4, "other");
        sign(&key, &store, 7);
        let err = verify(&store, &opts).unwrap_err();
        assert!(
            err.starts_with("rollback detected: entry 7 is not the one the checkpoint exported on line 2"),
            "{err}"
        );

        // An operator's restore is recorded; checks restart from it.
        let marker = record_restore(&file, &store, Path::new("/backups/x.bak")).unwrap();
        assert_eq!(marker.seq, Some(7));
        let lines = read_exported(&file).unwrap();
        let v = verify(&store, &VerifyOptions { key: Some(&k), exported: Some(&lines), ..Default::default() }).unwrap();
        assert_eq!((v.exported_checked, v.exported_before_restore), (0, 2));
        let anchor = lines.last().unwrap().anchor(&Some(k.clone())).unwrap();
        assert_eq!(verify_from(&store, Some(&anchor), Some(&k)).unwrap().first, 7);
    }

    /// Start-up reads only from the anchor on, and still catches a changed tail entry.
    #[test]
    fn start_up_verification_reads_from_the_last_checkpoint_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = sm2_2p::DaemonKey::generate();
        let k = trusted(&key);
        chained(&store, 0, 200, "ok");
        let cp = sign(&key, &store, 191);
        // Entry 3 is damaged, but it lies before the anchor: start-up does not read it.
        let mut raw = store.audit_raw(3).unwrap().unwrap();
        let at = raw.windows(4).position(|w| w == b"sign").unwrap();
        raw[at] = b'S';
        store.put_audit_raw(3, Some(&raw)).unwrap();
        let anchor = Anchor::Checkpoint { cp, origin: "test".into() };
        let chain = verify_from(&store, Some(&anchor), Some(&k)).unwrap();
        assert_eq!((chain.first, chain.len()), (191, 9));
        // After the anchor, a change is found.
        let mut raw = store.audit_raw(195).unwrap().unwrap();
        let at = raw.windows(4).position(|w| w == b"sign").unwrap();
        raw[at] = b'S';
        store.put_audit_raw(195, Some(&raw)).unwrap();
        assert_eq!(
            verify_from(&store, Some(&anchor), Some(&k)).err().unwrap(),
            "entry 195 was modified (hash mismatch)"
        );
    }

    #[test]
    fn the_checkpoint_file_survives_a_torn_last_line_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.jsonl");
        let cp = |seq| Checkpoint { seq, hash: "00".repeat(32), at: 5, signature: "30".into() };
        append_exported(&file, &Exported::Checkpoint(cp(1))).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"{\"seq\":2,\"ha").unwrap();
        let lines = read_exported(&file).unwrap();
        assert_eq!(lines.len(), 1, "the torn line is ignored");
        append_exported(&file, &Exported::Checkpoint(cp(3))).unwrap();
        let err = read_exported(&file).unwrap_err();
        assert!(err.contains("line 2: not an exported checkpoint"), "a torn line in the middle is reported: {err}");
    }

    #[test]
    fn a_pinned_key_file_round_trips_and_other_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = sm2_2p::DaemonKey::generate();
        let path = dir.path().join("audit-key.pem");
        std::fs::write(&path, mcs_pdfseal::pem("PUBLIC KEY", &sm2_2p::spki_der(&key.public()))).unwrap();
        assert_eq!(read_public_key_pem(&path).unwrap(), key.public());
        std::fs::write(&path, mcs_pdfseal::pem("PUBLIC KEY", b"not a key")).unwrap();
        assert!(read_public_key_pem(&path).unwrap_err().contains("not an SM2 public key"));
    }

    #[test]
    fn syslog_gets_each_exported_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log.sock");
        let rx = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
        let cp = Checkpoint { seq: 63, hash: "ab".repeat(32), at: 5, signature: "30".into() };
        send_syslog(&socket, &cp).unwrap();
        let mut buf = [0u8; 1024];
        let n = rx.recv(&mut buf).unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]);
        assert!(msg.starts_with("<110>mcsd[") && msg.contains("audit checkpoint {\"seq\":63"), "{msg}");
    }
}
