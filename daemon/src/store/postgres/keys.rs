//! Enrollments and keys on PostgreSQL: activation, the PIN counter (one `UPDATE` from the
//! expected value: the row lock orders racing nodes), the verifier, revocation.
//!
//! The PIN state is read from the columns `pin_failures` and `pin_locked`, never from the
//! record's copy, so the counter's steps touch only the columns.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{PgStore, decode_row, encode_record, kind_label, label};
use crate::model::key::{EnrollmentRecord, EnrollmentState, KeyRecord, KeyStatus, PinState};
use crate::model::secret::SecretKind;
use crate::store::storage::check_edit;
use crate::store::{ActivateOutcome, AuditAppend, KeySecrets, KeyStorage, PinReset, PinResetCommit, StoreError};

/// The columns a key is read from.
const KEY_COLUMNS: &str = "id, record, pin_failures, pin_locked";

pub(super) fn key_of(row: &Row) -> Result<KeyRecord, StoreError> {
    let id: &str = row.get(0);
    let mut rec: KeyRecord = decode_row("keys", id, row.get(1))?;
    rec.pin = PinState { failures: row.get::<_, i32>(2).max(0) as u32, locked: row.get(3) };
    Ok(rec)
}

/// Write a key record with its columns (insert or replace).
pub(super) async fn put_key(c: &impl GenericClient, k: &KeyRecord) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO keys (id, device_id, enrollment_id, status, pin_failures, pin_locked, record, cert_not_after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET device_id = $2, enrollment_id = $3, status = $4,
                 pin_failures = $5, pin_locked = $6, record = $7, cert_not_after = $8",
        )
        .await?;
    let failures = k.pin.failures.min(i32::MAX as u32) as i32;
    let ends = k.certificate.as_ref().map(|c| c.not_after);
    let record = encode_record(k);
    c.execute(
        &stmt,
        &[&k.id, &k.device_id, &k.enrollment_id, &label(&k.status), &failures, &k.pin.locked, &record, &ends],
    )
    .await?;
    Ok(())
}

/// Lock a key's row for the rest of the transaction.
pub(super) async fn lock_key(c: &impl GenericClient, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    let stmt = c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1 FOR UPDATE")).await?;
    c.query_opt(&stmt, &[&id]).await?.map(|r| key_of(&r)).transpose()
}

pub(super) async fn put_secret(
    c: &impl GenericClient,
    owner: &str,
    kind: SecretKind,
    blob: &[u8],
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO secrets (owner, kind, blob) VALUES ($1, $2, $3)
             ON CONFLICT (owner, kind) DO UPDATE SET blob = $3",
        )
        .await?;
    c.execute(&stmt, &[&owner, &kind_label(kind), &blob]).await?;
    Ok(())
}

pub(super) async fn get_secret(
    c: &impl GenericClient,
    owner: &str,
    kind: SecretKind,
) -> Result<Option<Vec<u8>>, StoreError> {
    let stmt = c.prepare_cached("SELECT blob FROM secrets WHERE owner = $1 AND kind = $2").await?;
    Ok(c.query_opt(&stmt, &[&owner, &kind_label(kind)]).await?.map(|r| r.get(0)))
}

pub(super) async fn delete_secrets(
    c: &impl GenericClient,
    owner: &str,
    kinds: &[SecretKind],
) -> Result<(), StoreError> {
    let labels: Vec<&str> = kinds.iter().map(|k| kind_label(*k)).collect();
    let stmt = c.prepare_cached("DELETE FROM secrets WHERE owner = $1 AND kind = ANY($2)").await?;
    c.execute(&stmt, &[&owner, &labels]).await?;
    Ok(())
}

impl KeyStorage for PgStore {
    fn put_enrollment(&self, rec: &EnrollmentRecord) -> Result<(), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "INSERT INTO enrollments (id, state, record) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET state = $2, record = $3",
                )
                .await?;
            c.execute(&stmt, &[&rec.id, &enrollment_state(&rec.state), &encode_record(rec)]).await?;
            Ok(())
        })
    }

    fn enrollment(&self, id: &str) -> Result<Option<EnrollmentRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("SELECT record FROM enrollments WHERE id = $1").await?;
            c.query_opt(&stmt, &[&id]).await?.map(|r| decode_row("enrollments", id, r.get(0))).transpose()
        })
    }

    fn activate_with(
        &self,
        key: &KeyRecord,
        secrets: &KeySecrets<'_>,
        audit: Option<&AuditAppend>,
    ) -> Result<ActivateOutcome, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let stmt = tx.prepare_cached("SELECT record FROM enrollments WHERE id = $1 FOR UPDATE").await?;
            let Some(row) = tx.query_opt(&stmt, &[&key.enrollment_id]).await? else {
                return Ok(ActivateOutcome::NoSuchEnrollment);
            };
            let Ok(mut rec) = decode_row::<EnrollmentRecord>("enrollments", &key.enrollment_id, row.get(0)) else {
                return Ok(ActivateOutcome::NoSuchEnrollment);
            };
            if rec.state != EnrollmentState::Pending {
                return Ok(ActivateOutcome::AlreadyActivated);
            }
            self.append_in(&tx, audit).await?;
            rec.state = EnrollmentState::Activated { key_id: key.id.clone() };
            let stmt = tx.prepare_cached("UPDATE enrollments SET state = $2, record = $3 WHERE id = $1").await?;
            tx.execute(&stmt, &[&rec.id, &enrollment_state(&rec.state), &encode_record(&rec)]).await?;
            put_key(&tx, key).await?;
            put_secret(&tx, &key.id, SecretKind::Share, secrets.share).await?;
            put_secret(&tx, &key.id, SecretKind::PinVerifier, secrets.verifier).await?;
            if let Some(recovery) = secrets.recovery {
                put_secret(&tx, &key.id, SecretKind::RecoveryKey, recovery).await?;
            }
            tx.commit().await?;
            Ok(ActivateOutcome::Done)
        })
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1")).await?;
            c.query_opt(&stmt, &[&id]).await?.map(|r| key_of(&r)).transpose()
        })
    }

    fn keys_of_device(&self, device_id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt =
                c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE device_id = $1 ORDER BY id")).await?;
            c.query(&stmt, &[&device_id]).await?.iter().map(key_of).collect()
        })
    }

    /// Read in pages of 500 in id order, so memory holds one page and what `keep` keeps.
    fn keys_where(&self, keep: &mut dyn FnMut(&KeyRecord) -> bool) -> Result<Vec<KeyRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys WHERE id > $1 ORDER BY id LIMIT 500"))
                .await?;
            let (mut after, mut out) = (String::new(), Vec::new());
            loop {
                let rows = c.query(&stmt, &[&after]).await?;
                let Some(last) = rows.last() else { break };
                after = last.get::<_, String>(0);
                for row in &rows {
                    let rec = key_of(row)?;
                    if keep(&rec) {
                        out.push(rec);
                    }
                }
            }
            Ok(out)
        })
    }

    fn keys_ending(&self, after: i64, until: i64) -> Result<Vec<KeyRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE cert_not_after > $1 AND cert_not_after <= $2
                     ORDER BY cert_not_after, id"
                ))
                .await?;
            c.query(&stmt, &[&after, &until]).await?.iter().map(key_of).collect()
        })
    }

    /// One pass on the database's side (the chains live in the records); only the distinct
    /// roots come back. The expiry check's lead node runs it once an interval.
    fn ca_roots(&self) -> Result<Vec<String>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "SELECT DISTINCT root FROM (
                         SELECT (convert_from(substring(record FROM 2), 'UTF8')::jsonb)
                                    -> 'certificate' -> 'chain_b64' ->> -1 AS root
                           FROM keys WHERE cert_not_after IS NOT NULL) r
                      WHERE root IS NOT NULL ORDER BY root",
                )
                .await?;
            Ok(c.query(&stmt, &[]).await?.iter().map(|r| r.get::<_, String>(0)).collect())
        })
    }

    fn edit_key(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut KeyRecord) -> bool,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let Some(before) = lock_key(&tx, id).await? else { return Ok(None) };
            let mut after = before.clone();
            if change(&mut after) {
                check_edit(&before, &after)?;
                put_key(&tx, &after).await?;
                tx.commit().await?;
            }
            Ok(Some(after))
        })
    }

    fn key_secret(&self, key_id: &str, kind: SecretKind) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(async { get_secret(&self.inner.pool.get().await?, key_id, kind).await })
    }

    fn key_with_secrets(
        &self,
        key_id: &str,
        kinds: &[SecretKind],
    ) -> Result<Option<(KeyRecord, Vec<Option<Vec<u8>>>)>, StoreError> {
        let labels: Vec<&str> = kinds.iter().map(|k| kind_label(*k)).collect();
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS},
                         ARRAY(SELECT s.kind FROM secrets s WHERE s.owner = k.id AND s.kind = ANY($2) ORDER BY s.kind),
                         ARRAY(SELECT s.blob FROM secrets s WHERE s.owner = k.id AND s.kind = ANY($2) ORDER BY s.kind)
                     FROM keys k WHERE k.id = $1"
                ))
                .await?;
            let Some(row) = c.query_opt(&stmt, &[&key_id, &labels]).await? else { return Ok(None) };
            let (found, blobs): (Vec<String>, Vec<Vec<u8>>) = (row.get(4), row.get(5));
            let pick = |l: &&str| found.iter().position(|f| f == l).map(|i| blobs[i].clone());
            Ok(Some((key_of(&row)?, labels.iter().map(pick).collect())))
        })
    }

    fn key_secrets(&self, key_id: &str, kinds: &[SecretKind]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let labels: Vec<&str> = kinds.iter().map(|k| kind_label(*k)).collect();
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("SELECT kind, blob FROM secrets WHERE owner = $1 AND kind = ANY($2)").await?;
            let rows = c.query(&stmt, &[&key_id, &labels]).await?;
            Ok(labels
                .iter()
                .map(|l| rows.iter().find(|r| r.get::<_, &str>(0) == *l).map(|r| r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }

    fn count_pin_failure(
        &self,
        key_id: &str,
        expected: u32,
        max: u32,
        audit: Option<&AuditAppend>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE keys SET pin_failures = pin_failures + 1, pin_locked = pin_failures + 1 >= $3
                     WHERE id = $1 AND pin_failures = $2 AND NOT pin_locked RETURNING {KEY_COLUMNS}"
                ))
                .await?;
            let (expected, max) = (expected.min(i32::MAX as u32) as i32, max.min(i32::MAX as u32) as i32);
            let Some(row) = tx.query_opt(&stmt, &[&key_id, &expected, &max]).await? else { return Ok(None) };
            self.append_in(&tx, audit).await?;
            tx.commit().await?;
            key_of(&row).map(Some)
        })
    }

    fn reset_pin_failures(&self, key_id: &str) -> Result<PinReset, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "WITH old AS (SELECT id, pin_locked FROM keys WHERE id = $1 FOR UPDATE)
                     UPDATE keys SET pin_failures = CASE WHEN old.pin_locked THEN keys.pin_failures ELSE 0 END
                     FROM old WHERE keys.id = old.id RETURNING old.pin_locked",
                )
                .await?;
            Ok(match c.query_opt(&stmt, &[&key_id]).await? {
                None => PinReset::Gone,
                Some(row) if row.get::<_, bool>(0) => PinReset::Locked,
                Some(_) => PinReset::Done,
            })
        })
    }

    fn unlock_pin(&self, key_id: &str) -> Result<Option<bool>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "WITH old AS (SELECT id, pin_failures, pin_locked FROM keys WHERE id = $1 FOR UPDATE)
                     UPDATE keys SET pin_failures = 0, pin_locked = false FROM old WHERE keys.id = old.id
                     RETURNING old.pin_failures <> 0 OR old.pin_locked",
                )
                .await?;
            Ok(c.query_opt(&stmt, &[&key_id]).await?.map(|r| r.get(0)))
        })
    }

    /// The old verifier's row version is dead once this commits; see ARCHITECTURE.md
    /// ("Erasure on PostgreSQL") for what that means for WAL, standbys and backups.
    fn replace_verifier(&self, key_id: &str, verifier_blob: &[u8]) -> Result<bool, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let stmt = tx
                .prepare_cached(
                    "UPDATE keys SET pin_failures = 0, pin_locked = false WHERE id = $1 AND status <> 'revoked'",
                )
                .await?;
            if tx.execute(&stmt, &[&key_id]).await? == 0 {
                return Ok(false);
            }
            put_secret(&tx, key_id, SecretKind::PinVerifier, verifier_blob).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Like [`KeyStorage::replace_verifier`]: the old rows' versions are dead once this
    /// commits (ARCHITECTURE.md, "Erasure on PostgreSQL").
    fn complete_pin_reset(&self, key_id: &str, commit: &PinResetCommit<'_>) -> Result<bool, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let Some(mut rec) = lock_key(&tx, key_id).await? else { return Ok(false) };
            let open = rec.pin_reset.as_ref().is_some_and(|r| r.code_sha256 == commit.code_sha256);
            let recovery = get_secret(&tx, key_id, SecretKind::RecoveryKey).await?;
            if !open || recovery.as_deref() != Some(commit.old_recovery) || rec.status == KeyStatus::Revoked {
                return Ok(false);
            }
            self.append_in(&tx, commit.audit).await?;
            rec.pin = PinState::default();
            rec.pin_reset = None;
            put_key(&tx, &rec).await?;
            put_secret(&tx, key_id, SecretKind::PinVerifier, commit.verifier_blob).await?;
            put_secret(&tx, key_id, SecretKind::RecoveryKey, commit.recovery_blob).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn revoke(&self, key_id: &str, reason: &str, audit: Option<&AuditAppend>) -> Result<Option<KeyRecord>, StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let Some(mut rec) = lock_key(&tx, key_id).await? else { return Ok(None) };
            self.append_in(&tx, audit).await?;
            rec.status = KeyStatus::Revoked;
            rec.revocation_reason = Some(reason.to_owned());
            rec.revoked_at = Some(crate::clock::now_ms() / 1000);
            rec.pin_reset = None;
            put_key(&tx, &rec).await?;
            delete_secrets(&tx, key_id, &SecretKind::KEY_OWNED).await?;
            super::delegations::end_delegations_of_key(&tx, key_id, crate::clock::now_ms() / 1000).await?;
            tx.commit().await?;
            Ok(Some(rec))
        })
    }
}

fn enrollment_state(state: &EnrollmentState) -> &'static str {
    match state {
        EnrollmentState::Pending => "pending",
        _ => "activated",
    }
}
