//! The audit log: a hash chain of security events in the store, with signed checkpoints.
//!
//! Entry `n` holds `prev` = hash of entry `n−1` (zeros for the first) and
//! `hash = SM3(prev ‖ JSON(entry without hash))`; its store key is `n`. Every
//! [`CHECKPOINT_EVERY`] entries, and at shutdown, a checkpoint `{seq, hash, at, signature}`
//! is signed by the daemon-held SM2 key `audit` (HSM-wrapped), so rewriting the whole chain
//! from some point needs that key. An entry is flushed to disk before the request that
//! caused it is answered. [`verify`] recomputes everything offline and names the first
//! entry that was changed, removed or moved.
//!
//! What is recorded: every state-changing API request (enrollment, activation, co-sign,
//! decrypt, PIN change/unlock, revocation, successor, platform grants, task transitions,
//! seals and seal grants) with its outcome code — so PIN failures and lockouts appear as
//! such — plus daemon events (start, stop, reload). Never a PIN proof, share, verifier,
//! plaintext or token: only route, ids, caller identity and code.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sm3::Digest;

use crate::plugins::DaemonKeys;
use crate::store::{Store, StoreError};

pub const CHECKPOINT_EVERY: u64 = 64;
const AUDIT_KEY: &str = "audit";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: i64,
    pub event: String,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub outcome: String,
    #[serde(default)]
    pub detail: Value,
    /// Hex SM3 of the previous entry.
    pub prev: String,
    /// Hex SM3 over `prev` and this entry without `hash`.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    pub at: i64,
    /// DER SM2 signature (audit key, default ID) over `"mcsd-audit" ‖ seq (8 bytes BE) ‖ hash`.
    pub signature: String,
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
}

fn entry_hash(e: &Entry) -> String {
    let mut body = e.clone();
    body.hash = String::new();
    let mut h = sm3::Sm3::new();
    h.update(hex::decode(&e.prev).unwrap_or_default());
    h.update(serde_json::to_vec(&body).unwrap_or_default());
    hex::encode(h.finalize())
}

fn checkpoint_message(seq: u64, hash: &str) -> Vec<u8> {
    let mut m = b"mcsd-audit".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&hex::decode(hash).unwrap_or_default());
    m
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

struct Head {
    next: u64,
    hash: String,
    /// The store generation this head was read in; after a reopen, entries appended but
    /// never flushed are gone, so the head is read again.
    generation: u64,
}

fn read_head(store: &Store) -> Result<Head, StoreError> {
    let generation = store.generation();
    Ok(match store.last_audit::<Entry>()? {
        Some((seq, e)) => Head { next: seq + 1, hash: e.hash, generation },
        None => Head { next: 0, hash: hex::encode([0u8; 32]), generation },
    })
}

pub struct Audit {
    store: Arc<Store>,
    keys: DaemonKeys,
    head: tokio::sync::Mutex<Head>,
}

impl Audit {
    pub fn open(store: Arc<Store>, keys: DaemonKeys) -> Result<Audit, StoreError> {
        let head = read_head(&store)?;
        Ok(Audit { store, keys, head: tokio::sync::Mutex::new(head) })
    }

    /// Chain an event and make it durable.
    pub async fn record(&self, ev: Event) -> Result<(), StoreError> {
        let mut head = self.head.lock().await;
        if head.generation != self.store.generation() {
            *head = read_head(&self.store)?;
        }
        let mut e = Entry {
            seq: head.next,
            at: now_ms(),
            event: ev.event,
            actor: ev.actor,
            key_id: ev.key_id,
            platform: ev.platform,
            task_id: ev.task_id,
            outcome: ev.outcome,
            detail: ev.detail,
            prev: head.hash.clone(),
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
        if !self.store.append_audit(e.seq, &e)? {
            return Err(StoreError::Corrupt { key: format!("audit/{}", e.seq), reason: "sequence number already used".into() });
        }
        head.next += 1;
        head.hash = e.hash.clone();
        crate::metrics::METRICS.audit_entries.inc();
        if head.next % CHECKPOINT_EVERY == 0 {
            self.checkpoint_locked(&head).await;
        }
        self.store.flush().await
    }

    /// Sign a checkpoint at the current head (at shutdown, and every CHECKPOINT_EVERY).
    pub async fn checkpoint(&self) {
        let head = self.head.lock().await;
        if head.next > 0 {
            self.checkpoint_locked(&head).await;
        }
    }

    async fn checkpoint_locked(&self, head: &Head) {
        let (seq, hash) = (head.next - 1, head.hash.clone());
        let keys = self.keys.clone();
        let msg = checkpoint_message(seq, &hash);
        let signed = tokio::task::spawn_blocking(move || keys.sign(AUDIT_KEY, &msg)).await;
        match signed {
            Ok(Ok(sig)) => {
                let cp = Checkpoint { seq, hash, at: now_ms(), signature: hex::encode(sig) };
                if let Err(e) = self.store.put_audit_checkpoint(seq, &cp) {
                    tracing::error!(error = %e, "audit checkpoint not stored");
                }
            }
            // The chain is still durable; the next checkpoint covers these entries.
            Ok(Err(e)) => tracing::error!(error = %e, "audit checkpoint not signed"),
            Err(e) => tracing::error!(error = %e, "audit checkpoint task failed"),
        }
    }

    /// Entries matching the filters, oldest first, at most `limit`, from `since`.
    pub fn query(&self, key_id: Option<&str>, platform: Option<&str>, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for item in self.store.audit_entries::<Entry>(since) {
            let (_, e) = item?;
            if key_id.is_some_and(|k| e.key_id.as_deref() != Some(k)) || platform.is_some_and(|p| e.platform.as_deref() != Some(p)) {
                continue;
            }
            out.push(e);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: usize,
}

/// Check the whole chain and every checkpoint, offline. The error names the first entry
/// that is not what the chain says.
pub fn verify(store: &Store) -> Result<Verified, String> {
    let mut prev = hex::encode([0u8; 32]);
    let mut expected = 0u64;
    let mut hashes = Vec::new();
    for item in store.audit_entries::<Entry>(0) {
        let (key, e) = item.map_err(|err| format!("entry {expected}: unreadable ({err})"))?;
        if key != expected {
            return Err(format!("entry {expected} is missing (the chain jumps from {} to {key})", expected as i64 - 1));
        }
        if e.seq != key {
            return Err(format!("entry {key} holds entry {} (entries were reordered)", e.seq));
        }
        if e.prev != prev {
            return Err(format!("entry {key} does not follow entry {} (broken link)", key as i64 - 1));
        }
        if entry_hash(&e) != e.hash {
            return Err(format!("entry {key} was modified (hash mismatch)"));
        }
        prev = e.hash.clone();
        hashes.push(e.hash);
        expected += 1;
    }
    let checkpoints: Vec<Checkpoint> = store.audit_checkpoints().map_err(|e| format!("checkpoints: {e}"))?;
    if checkpoints.is_empty() {
        return Ok(Verified { entries: expected, checkpoints: 0 });
    }
    let public = store
        .daemon_key(AUDIT_KEY)
        .map_err(|e| e.to_string())?
        .map(|(rec, _)| rec.public_key)
        .ok_or("checkpoints exist but the audit key is gone")?;
    let public = sm2_2p::point_from_hex(&public).map_err(|e| format!("audit key: {e}"))?;
    for cp in &checkpoints {
        let msg = checkpoint_message(cp.seq, &cp.hash);
        let sig = hex::decode(&cp.signature).ok().and_then(|s| sm2_2p::Signature::from_der(&s).ok());
        if !sig.is_some_and(|s| sm2_2p::verify(&public, &sm2_2p::e_for_message(&public, &msg), &s)) {
            return Err(format!("checkpoint at entry {}: signature does not verify", cp.seq));
        }
        match hashes.get(cp.seq as usize) {
            None => return Err(format!("entries after {} were removed (a checkpoint covers entry {})", expected as i64 - 1, cp.seq)),
            Some(h) if *h != cp.hash => return Err(format!("entry {}: the chain differs from its signed checkpoint", cp.seq)),
            Some(_) => {}
        }
    }
    Ok(Verified { entries: expected, checkpoints: checkpoints.len() })
}

/// An entry for the API.
pub fn view(e: &Entry) -> Value {
    json!({
        "seq": e.seq,
        "at": crate::api::rfc3339(e.at / 1000),
        "event": e.event,
        "actor": e.actor,
        "key_id": e.key_id,
        "platform": e.platform,
        "task_id": e.task_id,
        "outcome": e.outcome,
        "detail": e.detail,
        "hash": e.hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, prev: &str) -> Entry {
        let mut e = Entry {
            seq,
            at: 1,
            event: "POST /v1/keys/{id}/sign".into(),
            actor: "device".into(),
            key_id: Some("k".into()),
            platform: None,
            task_id: None,
            outcome: "ok".into(),
            detail: Value::Null,
            prev: prev.into(),
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
        e
    }

    #[test]
    fn verify_names_the_modified_missing_or_moved_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut prev = hex::encode([0u8; 32]);
        for seq in 0..5 {
            let e = entry(seq, &prev);
            prev = e.hash.clone();
            assert!(store.append_audit(seq, &e).unwrap());
        }
        assert_eq!(verify(&store).unwrap(), Verified { entries: 5, checkpoints: 0 });

        let raw = store.audit_raw(2).unwrap().unwrap();
        let mut flipped = raw.clone();
        let at = flipped.windows(4).position(|w| w == b"sign").unwrap();
        flipped[at] = b'S';
        store.put_audit_raw(2, Some(&flipped)).unwrap();
        assert_eq!(verify(&store).unwrap_err(), "entry 2 was modified (hash mismatch)");
        store.put_audit_raw(2, Some(&raw)).unwrap();

        store.put_audit_raw(3, None).unwrap();
        assert!(verify(&store).unwrap_err().starts_with("entry 3 is missing"));
        store.put_audit_raw(3, Some(&raw.clone())).unwrap();
        assert!(verify(&store).unwrap_err().starts_with("entry 3 holds entry 2"));
    }
}
