//! KEK rotation: every wrapped record re-wrapped under a new KEK version, online.
//!
//! [`rotate`] creates version `n+1` only when no record is left under an older version
//! (so a second call after an interruption resumes instead of starting over), then walks
//! every wrapped secret (`SecretStorage::secret_entries`: task and daemon-key blobs, and the key
//! records' share and verifier): unwrap under the record's own version, wrap under the current
//! one, and swap the stored value only if it did not change meanwhile (a record revoked or
//! rewritten concurrently is left to its writer). Old versions keep working for unwrapping
//! throughout, so the service never stops. `batch` limits how many records one call
//! re-wraps (throttling, or doing it in steps).

use crate::hsm::{Wrapper, blob_version};
use crate::store::{SecretEntry, Storage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub version: u32,
    pub created_version: bool,
    pub rewrapped: u64,
    /// Records still under an older version (0 when the rotation is complete).
    pub remaining: u64,
}

/// Records whose blob is under a version older than `current`.
fn older(store: &dyn Storage, current: u32) -> Result<Vec<SecretEntry>, String> {
    let mut out = Vec::new();
    for entry in store.secret_entries().map_err(|e| e.to_string())? {
        let blob = store.blob_of(&entry).map_err(|e| e.to_string())?;
        if blob_version(&blob).is_some_and(|ver| ver < current) {
            out.push(entry);
        }
    }
    Ok(out)
}

pub fn rotate(
    store: &dyn Storage,
    hsm: &dyn Wrapper,
    batch: Option<u64>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, String> {
    let mut current = hsm.current_version().ok_or("HSM unavailable")?;
    let mut todo = older(store, current)?;
    let mut created_version = false;
    if todo.is_empty() {
        current = hsm.add_version().map_err(|e| e.to_string())?;
        created_version = true;
        todo = older(store, current)?;
        tracing::info!(version = current, records = todo.len(), "KEK rotation started");
    } else {
        tracing::info!(version = current, records = todo.len(), "KEK rotation resumed");
    }
    let total = todo.len() as u64;
    let limit = batch.unwrap_or(u64::MAX);
    let (mut done, mut slots) = (0u64, Vec::new());
    for entry in todo.iter().take(limit.min(total) as usize) {
        let (id, kind) = (&entry.owner, entry.kind);
        let blob = store.blob_of(entry).map_err(|e| e.to_string())?;
        let fresh = hsm.rewrap(id, kind, &blob).map_err(|e| format!("{id}: {e}"))?;
        let (_, stale) = store.replace_secret(entry, &fresh).map_err(|e| e.to_string())?;
        slots.extend(stale);
        done += 1;
        progress(done, total);
    }
    store.erase_after_flush(&slots).map_err(|e| e.to_string())?;
    let remaining = older(store, current)?.len() as u64;
    tracing::info!(version = current, rewrapped = done, remaining, "KEK rotation step finished");
    Ok(Report { version: current, created_version, rewrapped: done, remaining })
}
