//! Scan tasks and the callback outbox on PostgreSQL.
//!
//! A transition locks the task's row and compares `rev`, so across nodes a task is claimed,
//! completed or expired once; its secrets, a consumed `once` grant (the key's row, locked
//! after the task's: every step that locks both does it in that order), a certificate
//! installed, the callback row and the audit entry commit with it. Creation under a quota
//! holds a per-platform advisory lock for the count and the insert.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::keys::{delete_secrets, get_secret, lock_key, put_key, put_secret};
use super::{PgStore, decode_row, encode_record, label};
use crate::model::key::KeyStatus;
use crate::model::secret::SecretKind;
use crate::model::task::{CallbackRecord, TaskRecord};
use crate::store::storage::CallbackLease;
use crate::store::{
    AuditAppend, CallbackStorage, InsertOutcome, OpenQuota, OpenUsage, StoreError, TaskStorage, Transition,
    TransitionOutcome,
};

/// Advisory lock key of a platform's quota ("mcsd", then 4; the platform's hash).
const QUOTA_LOCK: i32 = 0x6d63_7304;

fn task_of(row: &Row) -> Result<TaskRecord, StoreError> {
    decode_row("tasks", row.get(0), row.get(1))
}

pub(super) async fn put_task(c: &impl GenericClient, t: &TaskRecord) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO tasks (id, platform, status, final, rev, expires_at, charged_bytes, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET platform = $2, status = $3, final = $4, rev = $5, expires_at = $6,
                 charged_bytes = $7, record = $8",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &t.id,
            &t.platform,
            &label(&t.status),
            &t.status.is_final(),
            &(t.rev as i64),
            &t.expires_at,
            &(t.charged_bytes as i64),
            &encode_record(t),
        ],
    )
    .await?;
    Ok(())
}

async fn usage(c: &impl GenericClient, platform: &str) -> Result<OpenUsage, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT count(*), coalesce(sum(charged_bytes), 0)::bigint, min(expires_at)
             FROM tasks WHERE platform = $1 AND NOT final",
        )
        .await?;
    let row = c.query_one(&stmt, &[&platform]).await?;
    Ok(OpenUsage {
        tasks: row.get::<_, i64>(0) as u64,
        bytes: row.get::<_, i64>(1) as u64,
        earliest_expiry: row.get(2),
    })
}

pub(super) async fn put_callback_row(c: &impl GenericClient, cb: &CallbackRecord) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO callbacks (task_id, next_at_ms, record) VALUES ($1, $2, $3)
             ON CONFLICT (task_id) DO UPDATE SET next_at_ms = $2, record = $3, lease_token = NULL, lease_until = NULL",
        )
        .await?;
    c.execute(&stmt, &[&cb.task_id, &cb.next_at_ms, &encode_record(cb)]).await?;
    Ok(())
}

const TASK_SECRETS: [SecretKind; 2] = [SecretKind::TaskInput, SecretKind::TaskResult];

impl TaskStorage for PgStore {
    fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("SELECT id, record FROM tasks WHERE id = $1").await?;
            c.query_opt(&stmt, &[&id]).await?.as_ref().map(task_of).transpose()
        })
    }

    fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.query("SELECT id, record FROM tasks ORDER BY id", &[]).await?.iter().map(task_of).collect()
        })
    }

    fn open_usage(&self, platform: &str) -> Result<OpenUsage, StoreError> {
        self.run(async { usage(&self.inner.pool.get().await?, platform).await })
    }

    fn insert_task(
        &self,
        task: &TaskRecord,
        secrets: &[(SecretKind, &[u8])],
        quota: Option<OpenQuota>,
        audit: Option<&AuditAppend>,
    ) -> Result<InsertOutcome, StoreError> {
        let charged = crate::store::tasks::charged(task, secrets);
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            if let Some(q) = quota {
                let stmt = tx.prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))").await?;
                tx.execute(&stmt, &[&QUOTA_LOCK, &task.platform]).await?;
                let usage = usage(&tx, &task.platform).await?;
                if usage.tasks + 1 > q.max_tasks || usage.bytes + charged.charged_bytes > q.max_bytes {
                    return Ok(InsertOutcome::OverQuota { usage, task_bytes: charged.charged_bytes });
                }
            }
            self.append_in(&tx, audit).await?;
            put_task(&tx, &charged).await?;
            for (kind, blob) in secrets {
                put_secret(&tx, &task.id, *kind, blob).await?;
            }
            tx.commit().await?;
            Ok(InsertOutcome::Done)
        })
    }

    fn transition(&self, t: Transition<'_>) -> Result<TransitionOutcome, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let stmt = tx.prepare_cached("SELECT id, record FROM tasks WHERE id = $1 FOR UPDATE").await?;
            let current = match tx.query_opt(&stmt, &[&t.task.id]).await? {
                Some(row) => match task_of(&row) {
                    Ok(task) => task,
                    Err(_) => return Ok(TransitionOutcome::Raced),
                },
                None => return Ok(TransitionOutcome::Raced),
            };
            if current.rev + 1 != t.task.rev {
                return Ok(TransitionOutcome::Raced);
            }
            // The charge is the store's to keep, whatever the caller's copy says.
            let mut next = t.task.clone();
            next.charged_bytes = current.charged_bytes;
            if let Some((key_id, platform)) = t.consume_once {
                let Some(mut key) = lock_key(&tx, key_id).await? else { return Ok(TransitionOutcome::GrantGone) };
                let before = key.platforms.len();
                key.platforms.retain(|g| !(g.once && g.platform == platform));
                if key.platforms.len() == before {
                    return Ok(TransitionOutcome::GrantGone);
                }
                put_key(&tx, &key).await?;
            }
            if let Some((key_id, cert)) = t.install_certificate {
                let Some(mut key) = lock_key(&tx, key_id).await? else {
                    return Ok(TransitionOutcome::KeyNotPending(None));
                };
                if key.status != KeyStatus::Pending {
                    return Ok(TransitionOutcome::KeyNotPending(Some(key.status)));
                }
                key.status = KeyStatus::Active;
                key.certificate = Some(cert.clone());
                // The phone has its activation answer by now (it co-signed the request).
                key.p1 = None;
                put_key(&tx, &key).await?;
            }
            if let Some(swap) = &t.renew_certificate {
                let Some(mut key) = lock_key(&tx, swap.key_id).await? else {
                    return Ok(TransitionOutcome::CertificateChanged(None));
                };
                if !swap.applies_to(&key) {
                    return Ok(TransitionOutcome::CertificateChanged(Some(key.status)));
                }
                swap.apply(&mut key, swap.certificate.clone());
                put_key(&tx, &key).await?;
            }
            self.append_in(&tx, t.audit.as_ref()).await?;
            put_task(&tx, &next).await?;
            for (kind, blob) in &t.put_secrets {
                put_secret(&tx, &t.task.id, *kind, blob).await?;
            }
            if !t.delete_secrets.is_empty() {
                delete_secrets(&tx, &t.task.id, &t.delete_secrets).await?;
            }
            if let Some(cb) = &t.callback {
                put_callback_row(&tx, cb).await?;
            }
            tx.commit().await?;
            Ok(TransitionOutcome::Done)
        })
    }

    fn task_secret(&self, task_id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(async { get_secret(&self.inner.pool.get().await?, task_id, kind).await })
    }

    fn purge_task(&self, task_id: &str) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            tx.execute("DELETE FROM tasks WHERE id = $1", &[&task_id]).await?;
            delete_secrets(&tx, task_id, &TASK_SECRETS).await?;
            tx.execute("DELETE FROM callbacks WHERE task_id = $1", &[&task_id]).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

fn callback_of(row: &Row) -> Result<CallbackRecord, StoreError> {
    decode_row("callbacks", row.get(0), row.get(1))
}

impl CallbackStorage for PgStore {
    fn callback(&self, task_id: &str) -> Result<Option<CallbackRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("SELECT task_id, record FROM callbacks WHERE task_id = $1").await?;
            c.query_opt(&stmt, &[&task_id]).await?.as_ref().map(callback_of).transpose()
        })
    }

    fn callbacks(&self) -> Result<Vec<CallbackRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.query("SELECT task_id, record FROM callbacks ORDER BY next_at_ms", &[])
                .await?
                .iter()
                .map(callback_of)
                .collect()
        })
    }

    fn put_callback(&self, cb: &CallbackRecord) -> Result<(), StoreError> {
        self.run(async { put_callback_row(&self.inner.pool.get().await?, cb).await })
    }

    fn delete_callback(&self, task_id: &str) -> Result<(), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.execute("DELETE FROM callbacks WHERE task_id = $1", &[&task_id]).await?;
            Ok(())
        })
    }

    /// `FOR UPDATE SKIP LOCKED`: a row another node is leasing at this moment is skipped,
    /// not waited for; a lease still running (`lease_until` ahead) is skipped too.
    fn lease_callback(&self, task_id: &str, now_ms: i64, lease_ms: i64) -> Result<Option<CallbackLease>, StoreError> {
        let token = lease_token();
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "UPDATE callbacks SET lease_token = $2, lease_until = $3 + $4
                     WHERE task_id = (SELECT task_id FROM callbacks WHERE task_id = $1 AND next_at_ms <= $3
                                      AND (lease_until IS NULL OR lease_until <= $3) FOR UPDATE SKIP LOCKED)
                     RETURNING task_id, record",
                )
                .await?;
            match c.query_opt(&stmt, &[&task_id, &token, &now_ms, &lease_ms]).await? {
                Some(row) => Ok(Some(CallbackLease { record: callback_of(&row)?, token })),
                None => Ok(None),
            }
        })
    }

    fn finish_callback(&self, lease: &CallbackLease) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("DELETE FROM callbacks WHERE task_id = $1 AND lease_token = $2").await?;
            Ok(c.execute(&stmt, &[&lease.record.task_id, &lease.token]).await? == 1)
        })
    }

    fn reschedule_callback(&self, lease: &CallbackLease, next: &CallbackRecord) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "UPDATE callbacks SET next_at_ms = $3, record = $4, lease_token = NULL, lease_until = NULL
                     WHERE task_id = $1 AND lease_token = $2",
                )
                .await?;
            Ok(c.execute(&stmt, &[&lease.record.task_id, &lease.token, &next.next_at_ms, &encode_record(next)]).await?
                == 1)
        })
    }
}

/// A lease's fencing token: random, so a stale holder can never match a later lease.
fn lease_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS randomness");
    hex::encode(b)
}
