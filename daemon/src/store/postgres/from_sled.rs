//! `mcsd store migrate`: a stopped sled store copied into an empty PostgreSQL database, in
//! one transaction (all or nothing). Records are decoded and written as this binary writes
//! them, so nothing the sled layout keeps apart (vault slots, shared chains) leaks into the
//! database; shares, verifiers and every other secret stay the HSM-wrapped blobs they are.
//! The sled store's audit chain becomes the chain of the target's node id.

use deadpool_postgres::GenericClient;

use super::delegations::copy_delegation;
use super::keys::{put_key, put_secret};
use super::tasks::{put_callback_row, put_task};
use super::{PgStore, encode_record};
use crate::model::audit::{Checkpoint, Entry};
use crate::model::key::{DaemonKeyRecord, EnrollmentState};
use crate::model::seal::SealRecord;
use crate::model::secret::SecretKind;
use crate::store::{
    AuditStorage, CallbackStorage, DaemonKeyStorage, DelegationStorage, KeyStorage, SealStorage, SecretStorage, Store,
    StoreError, TaskStorage,
};

/// What was copied, per kind of record.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub enrollments: u64,
    pub keys: u64,
    pub delegations: u64,
    pub tasks: u64,
    pub callbacks: u64,
    pub seals: u64,
    pub daemon_keys: u64,
    pub audit_entries: u64,
    pub audit_checkpoints: u64,
    pub secrets: u64,
    pub adapter_values: u64,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} enrollments, {} keys, {} delegations, {} tasks, {} callbacks, {} seals, {} daemon keys, {} audit entries, {} checkpoints, {} wrapped secrets, {} adapter values",
            self.enrollments,
            self.keys,
            self.delegations,
            self.tasks,
            self.callbacks,
            self.seals,
            self.daemon_keys,
            self.audit_entries,
            self.audit_checkpoints,
            self.secrets,
            self.adapter_values
        )
    }
}

async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    c.execute(&stmt, params).await?;
    Ok(())
}

impl PgStore {
    /// Copy `from` (a sled store nobody else has open) into this database, which must hold
    /// no record.
    pub fn copy_from_sled(&self, from: &Store) -> Result<Copied, StoreError> {
        if !self.is_empty()? {
            return Err(StoreError::Refused(
                "the target database is not empty: migrate into a new database (or drop this one's data)".into(),
            ));
        }
        let enrollments = from.enrollments_raw()?;
        let delegations = from.delegations_raw()?;
        let adapter_values = from.plugin_kv_all()?;
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let mut n = Copied::default();
            for rec in &enrollments {
                let state = match rec.state {
                    EnrollmentState::Pending => "pending",
                    _ => "activated",
                };
                exec(
                    &tx,
                    "INSERT INTO enrollments (id, state, record) VALUES ($1, $2, $3)",
                    &[&rec.id, &state, &encode_record(rec)],
                )
                .await?;
                n.enrollments += 1;
            }
            for key in from.keys_where(&mut |_| true)? {
                put_key(&tx, &key).await?;
                for kind in SecretKind::KEY_OWNED {
                    if let Some(blob) = from.key_secret(&key.id, kind)? {
                        put_secret(&tx, &key.id, kind, &blob).await?;
                        n.secrets += 1;
                    }
                }
                n.keys += 1;
            }
            // Ended ones too (the owner's history); they have no secrets left to copy.
            for d in &delegations {
                copy_delegation(&tx, d).await?;
                for kind in SecretKind::DELEGATION {
                    if let Some(blob) = from.delegation_secret(&d.id, kind)? {
                        put_secret(&tx, &d.id, kind, &blob).await?;
                        n.secrets += 1;
                    }
                }
                n.delegations += 1;
            }
            for task in from.tasks()? {
                put_task(&tx, &task).await?;
                for kind in [SecretKind::TaskInput, SecretKind::TaskResult] {
                    if let Some(blob) = from.task_secret(&task.id, kind)? {
                        put_secret(&tx, &task.id, kind, &blob).await?;
                        n.secrets += 1;
                    }
                }
                n.tasks += 1;
            }
            for cb in from.callbacks()? {
                put_callback_row(&tx, &cb).await?;
                n.callbacks += 1;
            }
            for seal in from.seals()? {
                copy_seal(&tx, &seal).await?;
                n.seals += 1;
            }
            if let Some(maker) = from.seal_maker()? {
                exec(&tx, "INSERT INTO seal_maker (one, record) VALUES (true, $1)", &[&encode_record(&maker)]).await?;
            }
            for entry in from.secret_entries()?.into_iter().filter(|e| e.kind == SecretKind::DaemonKey) {
                let name = entry.owner.strip_prefix("daemon:").unwrap_or(&entry.owner).to_owned();
                if let Some((rec, blob)) = from.daemon_key(&name)? {
                    copy_daemon_key(&tx, &rec).await?;
                    put_secret(&tx, &entry.owner, SecretKind::DaemonKey, &blob).await?;
                    n.daemon_keys += 1;
                    n.secrets += 1;
                }
            }
            for item in from.audit_entries(0) {
                let (seq, entry) = item?;
                copy_entry(&tx, &self.inner.node, seq, &entry).await?;
                n.audit_entries += 1;
            }
            for cp in from.audit_checkpoints()? {
                copy_checkpoint(&tx, &self.inner.node, &cp).await?;
                n.audit_checkpoints += 1;
            }
            for (namespace, key, value) in &adapter_values {
                exec(
                    &tx,
                    "INSERT INTO plugin_kv (namespace, key, value) VALUES ($1, $2, $3)",
                    &[namespace, key, value],
                )
                .await?;
                n.adapter_values += 1;
            }
            tx.commit().await?;
            Ok(n)
        })
    }
}

async fn copy_seal(c: &impl GenericClient, s: &SealRecord) -> Result<(), StoreError> {
    exec(c, "INSERT INTO seals (id, rev, record) VALUES ($1, $2, $3)", &[&s.id, &(s.rev as i64), &encode_record(s)])
        .await
}

async fn copy_daemon_key(c: &impl GenericClient, rec: &DaemonKeyRecord) -> Result<(), StoreError> {
    exec(c, "INSERT INTO daemon_keys (name, record) VALUES ($1, $2)", &[&rec.name, &encode_record(rec)]).await
}

async fn copy_entry(c: &impl GenericClient, node: &str, seq: u64, e: &Entry) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO audit_entries (node_id, seq, record) VALUES ($1, $2, $3)",
        &[&node, &(seq as i64), &encode_record(e)],
    )
    .await
}

async fn copy_checkpoint(c: &impl GenericClient, node: &str, cp: &Checkpoint) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO audit_checkpoints (node_id, seq, record) VALUES ($1, $2, $3)",
        &[&node, &(cp.seq as i64), &encode_record(cp)],
    )
    .await
}
