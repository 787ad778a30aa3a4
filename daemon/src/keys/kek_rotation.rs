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

/// What [`retire`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub current: u32,
    pub destroyed: Vec<u32>,
}

impl std::fmt::Display for Retired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.destroyed.is_empty() {
            true => write!(f, "current KEK version {}; no older version left to destroy", self.current),
            false => write!(f, "current KEK version {}; destroyed versions {:?}", self.current, self.destroyed),
        }
    }
}

/// Destroy the KEK versions older than the current one, once no record is wrapped under
/// them any more (a finished [`rotate`]). This is what makes erasure final beyond the live
/// store: a share deleted at revocation may live on in backups, in PostgreSQL's WAL and
/// standbys, or in dead row versions, but only as a blob under its KEK version — destroyed
/// here, it is noise. Refused while a rotation is unfinished (those records would be lost).
pub fn retire(store: &dyn Storage, hsm: &dyn Wrapper) -> Result<Retired, String> {
    let current = hsm.current_version().ok_or("HSM unavailable")?;
    let left = older(store, current)?;
    if !left.is_empty() {
        return Err(format!(
            "{} records are still wrapped under a KEK version older than {current}: finish the rotation \
             (mcsd hsm rotate-kek) first",
            left.len()
        ));
    }
    let destroyed = hsm.destroy_versions_below(current).map_err(|e| e.to_string())?;
    tracing::info!(current, ?destroyed, "old KEK versions destroyed");
    Ok(Retired { current, destroyed })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsm::memory::MemoryWrapper;
    use crate::model::key::DaemonKeyRecord;
    use crate::model::secret::SecretKind;
    use crate::store::Store;
    use crate::store::prelude::*;

    fn store_with_secret(hsm: &MemoryWrapper) -> (tempfile::TempDir, Store, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let blob = hsm.wrap("daemon:audit", SecretKind::DaemonKey, b"the secret").unwrap();
        let rec = DaemonKeyRecord { name: "audit".into(), public_key: "04".into(), created_at: 1 };
        store.insert_daemon_key(&rec, &blob).unwrap();
        (dir, store, blob)
    }

    /// Erasure beyond the live store: a copy of a blob kept elsewhere (a backup, WAL, a
    /// standby) opens until its KEK version is destroyed, and never after.
    #[test]
    fn retiring_old_kek_versions_makes_every_old_copy_unreadable() {
        let hsm = MemoryWrapper::new();
        let (_dir, store, old_copy) = store_with_secret(&hsm);
        let report = rotate(&store, &hsm, None, |_, _| {}).unwrap();
        assert_eq!((report.version, report.remaining), (2, 0));
        assert_eq!(&hsm.unwrap("daemon:audit", SecretKind::DaemonKey, &old_copy).unwrap()[..], b"the secret");

        let retired = retire(&store, &hsm).unwrap();
        assert_eq!(retired, Retired { current: 2, destroyed: vec![1] });
        assert!(hsm.unwrap("daemon:audit", SecretKind::DaemonKey, &old_copy).is_err(), "the old copy is noise now");
        let (_, live) = store.daemon_key("audit").unwrap().unwrap();
        assert_eq!(&hsm.unwrap("daemon:audit", SecretKind::DaemonKey, &live).unwrap()[..], b"the secret");
        assert_eq!(retire(&store, &hsm).unwrap().destroyed, Vec::<u32>::new(), "nothing left to destroy");
    }

    #[test]
    fn retiring_is_refused_while_a_rotation_is_unfinished() {
        let hsm = MemoryWrapper::new();
        let (_dir, store, old_copy) = store_with_secret(&hsm);
        let report = rotate(&store, &hsm, Some(0), |_, _| {}).unwrap();
        assert_eq!((report.version, report.rewrapped, report.remaining), (2, 0, 1));
        let refused = retire(&store, &hsm).unwrap_err();
        assert!(refused.contains("1 records are still wrapped"), "{refused}");
        assert!(hsm.unwrap("daemon:audit", SecretKind::DaemonKey, &old_copy).is_ok(), "nothing was destroyed");
    }
}
