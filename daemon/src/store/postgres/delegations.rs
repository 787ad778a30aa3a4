//! Delegations on PostgreSQL: each step one transaction holding the delegation's row
//! lock, compare-and-swap on `rev`; the delegate's PIN counter in its own columns, moved
//! by one `UPDATE` from the expected value; the secrets as `secrets` rows owned by the
//! delegation id, deleted when it ends (see ARCHITECTURE.md, "Erasure on PostgreSQL").

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::keys::{delete_secrets, get_secret, lock_key, put_key, put_secret};
use super::{PgStore, decode_row, encode_record, label};
use crate::model::delegation::DelegationRecord;
use crate::model::key::{KeyStatus, PinState};
use crate::model::secret::SecretKind;
use crate::store::storage::check_delegation_change;
use crate::store::{AuditAppend, DelegationChange, DelegationOutcome, DelegationStorage, PinReset, StoreError};

const COLUMNS: &str = "id, record, pin_failures, pin_locked";

fn delegation_of(row: &Row) -> Result<DelegationRecord, StoreError> {
    let id: &str = row.get(0);
    let mut rec: DelegationRecord = decode_row("delegations", id, row.get(1))?;
    rec.pin = PinState { failures: row.get::<_, i32>(2).max(0) as u32, locked: row.get(3) };
    Ok(rec)
}

/// Write a delegation's record and columns, keeping the stored PIN columns.
async fn put_delegation(c: &impl GenericClient, d: &DelegationRecord) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO delegations (id, key_id, device_id, status, final, rev, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET device_id = $3, status = $4, final = $5, rev = $6, record = $7",
        )
        .await?;
    let rev = d.rev.min(i64::MAX as u64) as i64;
    c.execute(
        &stmt,
        &[&d.id, &d.key_id, &d.device_id, &label(&d.status), &d.status.is_final(), &rev, &encode_record(d)],
    )
    .await?;
    Ok(())
}

/// `mcsd store migrate`: a delegation as the sled store holds it, its PIN counter included
/// (which [`put_delegation`] leaves to the counter's own `UPDATE`s).
pub(super) async fn copy_delegation(c: &impl GenericClient, d: &DelegationRecord) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO delegations (id, key_id, device_id, status, final, rev, pin_failures, pin_locked, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    let rev = d.rev.min(i64::MAX as u64) as i64;
    let failures = d.pin.failures.min(i32::MAX as u32) as i32;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        &d.id,
        &d.key_id,
        &d.device_id,
        &label(&d.status),
        &d.status.is_final(),
        &rev,
        &failures,
        &d.pin.locked,
        &encode_record(d),
    ];
    c.execute(&stmt, &params).await?;
    Ok(())
}

async fn lock_delegation(c: &impl GenericClient, id: &str) -> Result<Option<DelegationRecord>, StoreError> {
    let stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM delegations WHERE id = $1 FOR UPDATE")).await?;
    c.query_opt(&stmt, &[&id]).await?.map(|r| delegation_of(&r)).transpose()
}

/// Inside a key's revocation: end its open delegations (`key_revoked`) and delete their
/// secrets.
pub(super) async fn end_delegations_of_key(c: &impl GenericClient, key_id: &str, at: i64) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM delegations WHERE key_id = $1 AND NOT final FOR UPDATE"))
        .await?;
    for row in c.query(&stmt, &[&key_id]).await? {
        let mut d = delegation_of(&row)?;
        d.status = crate::model::delegation::DelegationStatus::Revoked;
        d.end_reason = Some("key_revoked".into());
        d.updated_at = at;
        d.rev += 1;
        put_delegation(c, &d).await?;
        delete_secrets(c, &d.id, &SecretKind::DELEGATION).await?;
    }
    Ok(())
}

impl DelegationStorage for PgStore {
    fn insert_delegation(&self, rec: &DelegationRecord, audit: Option<&AuditAppend>) -> Result<bool, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let stmt = tx.prepare_cached("SELECT 1 FROM delegations WHERE id = $1").await?;
            if tx.query_opt(&stmt, &[&rec.id]).await?.is_some() {
                return Ok(false);
            }
            self.append_in(&tx, audit).await?;
            put_delegation(&tx, rec).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn delegation(&self, id: &str) -> Result<Option<DelegationRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM delegations WHERE id = $1")).await?;
            c.query_opt(&stmt, &[&id]).await?.map(|r| delegation_of(&r)).transpose()
        })
    }

    fn delegations_of_key(&self, key_id: &str) -> Result<Vec<DelegationRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt =
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM delegations WHERE key_id = $1 ORDER BY id")).await?;
            c.query(&stmt, &[&key_id]).await?.iter().map(delegation_of).collect()
        })
    }

    fn open_delegations(&self) -> Result<Vec<DelegationRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt =
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM delegations WHERE NOT final ORDER BY id")).await?;
            c.query(&stmt, &[]).await?.iter().map(delegation_of).collect()
        })
    }

    fn delegation_secret(&self, id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        if !SecretKind::DELEGATION.contains(&kind) {
            return Ok(None);
        }
        self.run(async { get_secret(&self.inner.pool.get().await?, id, kind).await })
    }

    fn change_delegation(&self, change: DelegationChange<'_>) -> Result<DelegationOutcome, StoreError> {
        let rec = change.record;
        check_delegation_change(&change)?;
        let final_state = rec.status.is_final();
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let Some(stored) = lock_delegation(&tx, &rec.id).await? else { return Ok(DelegationOutcome::Raced) };
            if stored.rev + 1 != rec.rev || stored.status.is_final() {
                return Ok(DelegationOutcome::Raced);
            }
            let erase: &[SecretKind] = if final_state { &SecretKind::DELEGATION } else { &change.erase_secrets };
            delete_secrets(&tx, &rec.id, erase).await?;
            for (kind, blob) in &change.put_secrets {
                put_secret(&tx, &rec.id, *kind, blob).await?;
            }
            if let Some(t) = &change.transfer {
                let Some(device) = rec.device_id.as_deref() else { return Ok(DelegationOutcome::Raced) };
                let Some(mut key) = lock_key(&tx, &rec.key_id).await? else { return Ok(DelegationOutcome::KeyGone) };
                if key.status == KeyStatus::Revoked {
                    return Ok(DelegationOutcome::KeyGone);
                }
                key.device_id = device.to_owned();
                key.pin = PinState::default();
                // A reset opened for the old owner is not the new owner's.
                key.pin_reset = None;
                key.p2 = rec.p2.clone();
                put_key(&tx, &key).await?;
                put_secret(&tx, &rec.key_id, SecretKind::Share, t.share_blob).await?;
                put_secret(&tx, &rec.key_id, SecretKind::PinVerifier, t.verifier_blob).await?;
                match t.recovery_blob {
                    Some(blob) => put_secret(&tx, &rec.key_id, SecretKind::RecoveryKey, blob).await?,
                    None => delete_secrets(&tx, &rec.key_id, &[SecretKind::RecoveryKey]).await?,
                }
            }
            self.append_in(&tx, change.audit).await?;
            put_delegation(&tx, rec).await?;
            if change.clear_pin {
                let stmt = tx
                    .prepare_cached("UPDATE delegations SET pin_failures = 0, pin_locked = false WHERE id = $1")
                    .await?;
                tx.execute(&stmt, &[&rec.id]).await?;
            }
            tx.commit().await?;
            Ok(DelegationOutcome::Done)
        })
    }

    fn count_delegate_pin_failure(
        &self,
        id: &str,
        expected: u32,
        max: u32,
        audit: Option<&AuditAppend>,
    ) -> Result<Option<DelegationRecord>, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE delegations SET pin_failures = pin_failures + 1, pin_locked = pin_failures + 1 >= $3
                     WHERE id = $1 AND pin_failures = $2 AND NOT pin_locked RETURNING {COLUMNS}"
                ))
                .await?;
            let (expected, max) = (expected.min(i32::MAX as u32) as i32, max.min(i32::MAX as u32) as i32);
            let Some(row) = tx.query_opt(&stmt, &[&id, &expected, &max]).await? else { return Ok(None) };
            self.append_in(&tx, audit).await?;
            tx.commit().await?;
            delegation_of(&row).map(Some)
        })
    }

    fn reset_delegate_pin_failures(&self, id: &str) -> Result<PinReset, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "WITH old AS (SELECT id, pin_locked FROM delegations WHERE id = $1 FOR UPDATE)
                     UPDATE delegations SET pin_failures = CASE WHEN old.pin_locked THEN delegations.pin_failures ELSE 0 END
                     FROM old WHERE delegations.id = old.id RETURNING old.pin_locked",
                )
                .await?;
            Ok(match c.query_opt(&stmt, &[&id]).await? {
                None => PinReset::Gone,
                Some(row) if row.get::<_, bool>(0) => PinReset::Locked,
                Some(_) => PinReset::Done,
            })
        })
    }

    fn unlock_delegate_pin(&self, id: &str) -> Result<Option<bool>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "WITH old AS (SELECT id, pin_failures, pin_locked FROM delegations WHERE id = $1 FOR UPDATE)
                     UPDATE delegations SET pin_failures = 0, pin_locked = false FROM old WHERE delegations.id = old.id
                     RETURNING old.pin_failures <> 0 OR old.pin_locked",
                )
                .await?;
            Ok(c.query_opt(&stmt, &[&id]).await?.map(|r| r.get(0)))
        })
    }
}
