//! Scan tasks on sled: creation under per-platform quotas, transitions with their side
//! effects, the sweep. The quota tally is kept in memory, in step with the `tasks` tree.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::audit::{Abort, append_in, audit_seq_taken};
use super::codec::{decode, encode};
use super::key_refs::{StoredKey, secret_key};
use super::{
    AuditAppend, InsertOutcome, OpenQuota, OpenUsage, Store, StoreError, TaskStorage, Transition, TransitionOutcome,
};
use crate::model::key::KeyStatus;
use crate::model::secret::SecretKind;
use crate::model::task::TaskRecord;

/// Per-platform tally of open tasks, kept in step with the `tasks` tree: built from it on
/// first use, then changed only under its lock together with the write that changes it
/// (an insert, a transition to a final state, a purge of an unfinished task) — so a quota
/// check and the insert it allows are one step, and two creations cannot both take the
/// last slot.
#[derive(Debug, Default)]
pub(super) struct OpenTally {
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

impl Store {
    /// The tally of open tasks, built from the `tasks` tree on first use. Callers hold the
    /// guard across the write that changes open-ness, so the two cannot drift apart.
    fn open_tally(&self) -> Result<std::sync::MutexGuard<'_, Option<OpenTally>>, StoreError> {
        let mut guard = self.open_tasks.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(OpenTally::build(&self.files()?.tasks)?);
        }
        Ok(guard)
    }
}

/// The task as stored at creation, charged (for its platform's quota) the bytes of its
/// record and inputs — on every backend the same count.
pub(super) fn charged(task: &TaskRecord, secrets: &[(SecretKind, &[u8])]) -> TaskRecord {
    let mut charged = task.clone();
    let inputs: usize = secrets.iter().map(|(_, b)| b.len()).sum();
    // The count's own digits barely change the size it counts; measure with a guess.
    charged.charged_bytes = (encode(&charged).len() + inputs + 20) as u64;
    charged
}

impl TaskStorage for Store {
    fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.files()?.tasks.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    /// What `platform`'s open tasks hold now.
    fn open_usage(&self, platform: &str) -> Result<OpenUsage, StoreError> {
        Ok(self.open_tally()?.as_ref().map(|t| t.usage(platform)).unwrap_or_default())
    }

    /// Create a task (rev 0) with its wrapped inputs and the audit entry of the request
    /// that creates it, if given — all or nothing — unless it would take its platform past
    /// `quota` (checked and counted in one step; a refusal writes nothing, not the entry
    /// either). The task is charged the bytes of its record and inputs, kept in
    /// `charged_bytes`.
    fn insert_task(
        &self,
        task: &TaskRecord,
        secrets: &[(SecretKind, &[u8])],
        quota: Option<OpenQuota>,
        audit: Option<&AuditAppend>,
    ) -> Result<InsertOutcome, StoreError> {
        let charged = charged(task, secrets);
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
                    append_in::<()>(audit_tree, a)?;
                }
                tasks.insert(task.id.as_bytes(), bytes.clone())?;
                for (kind, blob) in secrets {
                    sec.insert(secret_key(&task.id, *kind), *blob)?;
                }
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::from(e),
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

    /// Apply a task transition atomically: the task (compare-and-swap on `rev`), its
    /// secrets, a consumed `once` grant, a certificate installed, a callback to deliver
    /// and the request's audit entry — all or nothing. A transition that finishes an open
    /// task takes it out of its platform's quota, in step.
    fn transition(&self, t: Transition<'_>) -> Result<TransitionOutcome, StoreError> {
        let mut tally = if t.task.status.is_final() { Some(self.open_tally()?) } else { None };
        let _writing = self.writing();
        let id = t.task.id.as_bytes();
        let callback = t.callback.as_ref().map(encode);
        // The chain goes to `ca_chains` first: an unreferenced chain is harmless.
        let installing = match t.install_certificate {
            Some((key_id, cert)) => Some((key_id, self.slim_certificate(key_id, cert)?)),
            None => None,
        };
        let renewing = match &t.renew_certificate {
            Some(swap) => Some((swap, self.slim_certificate(swap.key_id, swap.certificate)?)),
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
                let mut stored =
                    StoredKey::decode(key_id.as_bytes(), &raw).map_err(|_| abort(TransitionOutcome::GrantGone))?;
                let grants = &mut stored.key.platforms;
                let before = grants.len();
                grants.retain(|g| !(g.once && g.platform == platform));
                if grants.len() == before {
                    return Err(abort(TransitionOutcome::GrantGone));
                }
                keys.insert(key_id.as_bytes(), stored.encode())?;
            }
            if let Some((key_id, (cert, chain_ref))) = &installing {
                let raw = keys.get(key_id.as_bytes())?.ok_or(abort(TransitionOutcome::KeyNotPending(None)))?;
                let mut stored = StoredKey::decode(key_id.as_bytes(), &raw)
                    .map_err(|_| abort(TransitionOutcome::KeyNotPending(None)))?;
                let key = &mut stored.key;
                if key.status != KeyStatus::Pending {
                    return Err(abort(TransitionOutcome::KeyNotPending(Some(key.status))));
                }
                key.status = KeyStatus::Active;
                key.certificate = Some(cert.clone());
                // The phone has its activation answer by now (it co-signed the request):
                // `p1`, kept to answer a repeated activation, is no longer needed.
                key.p1 = None;
                stored.chain_ref = chain_ref.clone();
                keys.insert(key_id.as_bytes(), stored.encode())?;
            }
            if let Some((swap, (cert, chain_ref))) = &renewing {
                let moved = |s| abort(TransitionOutcome::CertificateChanged(s));
                let raw = keys.get(swap.key_id.as_bytes())?.ok_or(moved(None))?;
                let mut stored = StoredKey::decode(swap.key_id.as_bytes(), &raw).map_err(|_| moved(None))?;
                let key = &mut stored.key;
                if !swap.applies_to(key) {
                    return Err(moved(Some(key.status)));
                }
                swap.apply(key, cert.clone());
                stored.chain_ref = chain_ref.clone();
                keys.insert(swap.key_id.as_bytes(), stored.encode())?;
            }
            if let Some(a) = &t.audit {
                append_in(audit, a)?;
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

    fn task_secret(&self, task_id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files()?.secrets.get(secret_key(task_id, kind))?.map(|v| v.to_vec()))
    }

    /// Every task (the sweeper's view; tasks are few and short-lived).
    fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.files()?.tasks.iter().map(|r| r.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    /// Delete a finished task and anything left of its secrets and callback. (An
    /// unfinished one leaves its platform's quota.)
    fn purge_task(&self, task_id: &str) -> Result<(), StoreError> {
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
                TransactionError::Storage(e) => StoreError::from(e),
                TransactionError::Abort(()) => StoreError::Corrupt { key: task_id.into(), reason: "aborted".into() },
            })?;
        if let (Some((platform, bytes, expires_at)), Some(tally)) = (open.into_inner(), tally.as_mut()) {
            tally.remove(&platform, bytes, expires_at);
        }
        Ok(())
    }
}
