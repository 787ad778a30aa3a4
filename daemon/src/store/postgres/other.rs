//! Seals, the daemon's keys, the audit chain of this node, and the walk over every wrapped
//! secret for KEK rotation, on PostgreSQL.

use deadpool_postgres::GenericClient;

use super::keys::get_secret;
use super::{PgStore, decode_row, encode_record, kind_label};
use crate::model::audit::{Checkpoint, Entry};
use crate::model::key::DaemonKeyRecord;
use crate::model::seal::{SealMakerRecord, SealRecord};
use crate::model::secret::SecretKind;
use crate::store::plugin_kv::check_namespace;
use crate::store::{
    AuditAppend, AuditStorage, DaemonKeyStorage, PluginKvStorage, SealStorage, SecretEntry, SecretStorage, StaleCopy,
    StoreError,
};

fn daemon_owner(name: &str) -> String {
    format!("daemon:{name}")
}

fn audit_seq_taken(seq: u64) -> StoreError {
    StoreError::Corrupt { key: format!("audit/{seq}"), reason: "sequence number already used".into() }
}

impl PgStore {
    /// Write a step's audit entry inside its transaction: refused (and with it the whole
    /// step, the transaction being dropped unfinished) if the number is taken in this
    /// node's chain.
    pub(super) async fn append_in(
        &self,
        c: &impl GenericClient,
        audit: Option<&AuditAppend>,
    ) -> Result<(), StoreError> {
        let Some(a) = audit else { return Ok(()) };
        if !self.insert_entry(c, a.seq(), a.entry()).await? {
            return Err(audit_seq_taken(a.seq()));
        }
        Ok(())
    }

    async fn insert_entry(&self, c: &impl GenericClient, seq: u64, e: &Entry) -> Result<bool, StoreError> {
        let stmt = c
            .prepare_cached(
                "INSERT INTO audit_entries (node_id, seq, record) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .await?;
        Ok(c.execute(&stmt, &[&self.inner.node, &(seq as i64), &encode_record(e)]).await? == 1)
    }

    /// One page of this node's entries from `from` on.
    fn audit_page(&self, from: u64, limit: i64) -> Result<Vec<(u64, Entry)>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "SELECT seq, record FROM audit_entries WHERE node_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                )
                .await?;
            c.query(&stmt, &[&self.inner.node, &(from as i64), &limit])
                .await?
                .iter()
                .map(|r| {
                    let seq = r.get::<_, i64>(0) as u64;
                    Ok((seq, decode_row("audit_entries", &seq.to_string(), r.get(1))?))
                })
                .collect()
        })
    }

    /// Tests and tools: a raw audit row of this node's chain, or its removal.
    pub fn put_audit_raw(&self, seq: u64, raw: Option<&[u8]>) -> Result<(), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            match raw {
                Some(r) => {
                    c.execute(
                        "INSERT INTO audit_entries (node_id, seq, record) VALUES ($1, $2, $3)
                         ON CONFLICT (node_id, seq) DO UPDATE SET record = $3",
                        &[&self.inner.node, &(seq as i64), &r],
                    )
                    .await?
                }
                None => {
                    c.execute(
                        "DELETE FROM audit_entries WHERE node_id = $1 AND seq = $2",
                        &[&self.inner.node, &(seq as i64)],
                    )
                    .await?
                }
            };
            Ok(())
        })
    }
}

impl SealStorage for PgStore {
    fn insert_seal(&self, rec: &SealRecord) -> Result<(), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.execute(
                "INSERT INTO seals (id, rev, record) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET rev = $2, record = $3",
                &[&rec.id, &(rec.rev as i64), &encode_record(rec)],
            )
            .await?;
            Ok(())
        })
    }

    fn seal(&self, id: &str) -> Result<Option<SealRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("SELECT record FROM seals WHERE id = $1").await?;
            c.query_opt(&stmt, &[&id]).await?.map(|r| decode_row("seals", id, r.get(0))).transpose()
        })
    }

    fn seals(&self) -> Result<Vec<SealRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.query("SELECT id, record FROM seals ORDER BY id", &[])
                .await?
                .iter()
                .map(|r| decode_row("seals", r.get(0), r.get(1)))
                .collect()
        })
    }

    fn replace_seal(&self, expected_rev: u64, rec: &SealRecord) -> Result<bool, StoreError> {
        let mut next = rec.clone();
        next.rev = expected_rev + 1;
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("UPDATE seals SET rev = $3, record = $4 WHERE id = $1 AND rev = $2").await?;
            let changed =
                c.execute(&stmt, &[&rec.id, &(expected_rev as i64), &(next.rev as i64), &encode_record(&next)]).await?;
            Ok(changed == 1)
        })
    }

    fn seal_maker(&self) -> Result<Option<SealMakerRecord>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.query_opt("SELECT record FROM seal_maker", &[])
                .await?
                .map(|r| decode_row("seal_maker", "", r.get(0)))
                .transpose()
        })
    }

    fn put_seal_maker(&self, rec: &SealMakerRecord) -> Result<(), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.execute(
                "INSERT INTO seal_maker (one, record) VALUES (true, $1) ON CONFLICT (one) DO UPDATE SET record = $1",
                &[&encode_record(rec)],
            )
            .await?;
            Ok(())
        })
    }
}

/// This node's entries from a sequence number on, read in pages as the caller iterates.
struct Entries {
    store: PgStore,
    next: u64,
    page: std::vec::IntoIter<(u64, Entry)>,
    done: bool,
}

const PAGE: i64 = 1000;

impl Iterator for Entries {
    type Item = Result<(u64, Entry), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.page.next() {
            self.next = item.0 + 1;
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        match self.store.audit_page(self.next, PAGE) {
            Ok(page) => {
                self.done = (page.len() as i64) < PAGE;
                self.page = page.into_iter();
                let item = self.page.next()?;
                self.next = item.0 + 1;
                Some(Ok(item))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn checkpoint_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<Checkpoint>, StoreError> {
    rows.iter().map(|r| decode_row("audit_checkpoints", &r.get::<_, i64>(0).to_string(), r.get(1))).collect()
}

impl AuditStorage for PgStore {
    fn append_audit(&self, seq: u64, entry: &Entry) -> Result<bool, StoreError> {
        self.run(async { self.insert_entry(&self.inner.pool.get().await?, seq, entry).await })
    }

    fn audit_entries(&self, from: u64) -> Box<dyn Iterator<Item = Result<(u64, Entry), StoreError>>> {
        Box::new(Entries { store: self.clone(), next: from, page: Vec::new().into_iter(), done: false })
    }

    fn last_audit(&self) -> Result<Option<(u64, Entry)>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached("SELECT seq, record FROM audit_entries WHERE node_id = $1 ORDER BY seq DESC LIMIT 1")
                .await?;
            match c.query_opt(&stmt, &[&self.inner.node]).await? {
                None => Ok(None),
                Some(r) => {
                    let seq = r.get::<_, i64>(0) as u64;
                    Ok(Some((seq, decode_row("audit_entries", &seq.to_string(), r.get(1))?)))
                }
            }
        })
    }

    fn audit_entry(&self, seq: u64) -> Result<Option<Entry>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("SELECT record FROM audit_entries WHERE node_id = $1 AND seq = $2").await?;
            c.query_opt(&stmt, &[&self.inner.node, &(seq as i64)])
                .await?
                .map(|r| decode_row("audit_entries", &seq.to_string(), r.get(0)))
                .transpose()
        })
    }

    fn put_audit_checkpoint(&self, seq: u64, cp: &Checkpoint) -> Result<(), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.execute(
                "INSERT INTO audit_checkpoints (node_id, seq, record) VALUES ($1, $2, $3)
                 ON CONFLICT (node_id, seq) DO UPDATE SET record = $3",
                &[&self.inner.node, &(seq as i64), &encode_record(cp)],
            )
            .await?;
            Ok(())
        })
    }

    fn audit_checkpoints_from(&self, from: u64) -> Result<Vec<Checkpoint>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let rows = c
                .query(
                    "SELECT seq, record FROM audit_checkpoints WHERE node_id = $1 AND seq >= $2 ORDER BY seq",
                    &[&self.inner.node, &(from as i64)],
                )
                .await?;
            checkpoint_rows(&rows)
        })
    }

    fn last_audit_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let rows = c
                .query(
                    "SELECT seq, record FROM audit_checkpoints WHERE node_id = $1 ORDER BY seq DESC LIMIT 1",
                    &[&self.inner.node],
                )
                .await?;
            Ok(checkpoint_rows(&rows)?.pop())
        })
    }

    fn audit_checkpoint_seqs(&self) -> Result<Vec<u64>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let rows = c
                .query("SELECT seq FROM audit_checkpoints WHERE node_id = $1 ORDER BY seq", &[&self.inner.node])
                .await?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
        })
    }
}

impl DaemonKeyStorage for PgStore {
    fn daemon_key(&self, name: &str) -> Result<Option<(DaemonKeyRecord, Vec<u8>)>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let Some(row) = c.query_opt("SELECT record FROM daemon_keys WHERE name = $1", &[&name]).await? else {
                return Ok(None);
            };
            let rec: DaemonKeyRecord = decode_row("daemon_keys", name, row.get(0))?;
            let blob = get_secret(&c, &daemon_owner(name), SecretKind::DaemonKey).await?.ok_or_else(|| {
                StoreError::Corrupt { key: name.to_owned(), reason: "daemon key without its wrapped secret".into() }
            })?;
            Ok(Some((rec, blob)))
        })
    }

    fn insert_daemon_key(&self, rec: &DaemonKeyRecord, blob: &[u8]) -> Result<(DaemonKeyRecord, Vec<u8>), StoreError> {
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let won = tx
                .execute(
                    "INSERT INTO daemon_keys (name, record) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&rec.name, &encode_record(rec)],
                )
                .await?
                == 1;
            if won {
                super::keys::put_secret(&tx, &daemon_owner(&rec.name), SecretKind::DaemonKey, blob).await?;
            }
            tx.commit().await?;
            Ok(())
        })?;
        self.daemon_key(&rec.name)?
            .ok_or_else(|| StoreError::Corrupt { key: rec.name.clone(), reason: "vanished".into() })
    }
}

impl PgStore {
    /// Replace a daemon key's record (its secret stays), durably.
    pub fn put_daemon_key_record(&self, rec: &DaemonKeyRecord) -> Result<(), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            c.execute("UPDATE daemon_keys SET record = $2 WHERE name = $1", &[&rec.name, &encode_record(rec)]).await?;
            Ok(())
        })
    }
}

impl SecretStorage for PgStore {
    fn secret_entries(&self) -> Result<Vec<SecretEntry>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let rows = c.query("SELECT owner, kind, blob FROM secrets ORDER BY owner, kind", &[]).await?;
            rows.iter()
                .map(|r| {
                    let (owner, kind): (String, &str) = (r.get(0), r.get(1));
                    let kind = SecretKind::from_label(kind.as_bytes()).ok_or_else(|| StoreError::Corrupt {
                        key: format!("secrets/{owner}/{kind}"),
                        reason: "unknown secret kind".into(),
                    })?;
                    Ok(SecretEntry { owner, kind, stored: r.get(2) })
                })
                .collect()
        })
    }

    /// The stored value is the blob itself.
    fn blob_of(&self, entry: &SecretEntry) -> Result<Vec<u8>, StoreError> {
        Ok(entry.stored.clone())
    }

    fn replace_secret(&self, entry: &SecretEntry, new_blob: &[u8]) -> Result<(bool, Option<StaleCopy>), StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let swapped = c
                .execute(
                    "UPDATE secrets SET blob = $4 WHERE owner = $1 AND kind = $2 AND blob = $3",
                    &[&entry.owner, &kind_label(entry.kind), &entry.stored, &new_blob],
                )
                .await?;
            Ok((swapped == 1, None))
        })
    }

    /// Nothing is kept apart: the old blob is a dead row version (see ARCHITECTURE.md,
    /// "Erasure on PostgreSQL").
    fn erase_after_flush(&self, _stale: &[StaleCopy]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Adapters' state shared by every node: a put is one upsert, a swap one conditional
/// statement (the row lock orders racing nodes), both committed before they return.
impl PluginKvStorage for PgStore {
    fn kv_get(&self, namespace: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        check_namespace(namespace)?;
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("SELECT value FROM plugin_kv WHERE namespace = $1 AND key = $2").await?;
            Ok(c.query_opt(&stmt, &[&namespace, &key]).await?.map(|r| r.get(0)))
        })
    }

    fn kv_put(&self, namespace: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        check_namespace(namespace)?;
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached(
                    "INSERT INTO plugin_kv (namespace, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = $3",
                )
                .await?;
            c.execute(&stmt, &[&namespace, &key, &value]).await?;
            Ok(())
        })
    }

    fn kv_cas(&self, namespace: &str, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, StoreError> {
        check_namespace(namespace)?;
        self.run(async {
            let c = self.inner.pool.get().await?;
            let changed = match expected {
                // From absent: the primary key lets one insert win.
                None => {
                    let stmt = c
                        .prepare_cached(
                            "INSERT INTO plugin_kv (namespace, key, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        )
                        .await?;
                    c.execute(&stmt, &[&namespace, &key, &new]).await?
                }
                Some(old) => {
                    let stmt = c
                        .prepare_cached(
                            "UPDATE plugin_kv SET value = $4 WHERE namespace = $1 AND key = $2 AND value = $3",
                        )
                        .await?;
                    c.execute(&stmt, &[&namespace, &key, &old, &new]).await?
                }
            };
            Ok(changed == 1)
        })
    }
}
