//! Backups of a PostgreSQL store: every table copied in one `REPEATABLE READ` snapshot
//! (`COPY … TO STDOUT (FORMAT binary)`), and an empty database filled from such an image.
//!
//! Image: `MCSDPG01`, the schema version (4 bytes BE), then per table its name and its COPY
//! bytes (each as 4-byte BE length and bytes), `[0]`, then the SHA-256 of everything before.
//! `pg_dump` works as well, for operators who prefer it; this image is what `mcsd backup`
//! and `mcsd restore` read and write on either backend's terms.

use futures_util::{SinkExt, StreamExt};

use super::{PgStore, latest_version};
use crate::store::StoreError;

const MAGIC: &[u8] = b"MCSDPG01";

/// Every table of the schema, in an order that restores (no foreign keys cross them).
pub(super) const TABLES: &[&str] = &[
    "enrollments",
    "keys",
    "delegations",
    "secrets",
    "tasks",
    "callbacks",
    "seals",
    "seal_maker",
    "daemon_keys",
    "audit_entries",
    "audit_checkpoints",
    "plugin_kv",
    "inbox",
    "meta",
];

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

pub(super) async fn snapshot(store: &PgStore) -> Result<Vec<u8>, StoreError> {
    use sha2::Digest;
    let mut c = store.inner.pool.get().await?;
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&latest_version().to_be_bytes());
    for table in TABLES {
        let stream = tx.copy_out(&format!("COPY {table} TO STDOUT (FORMAT binary)")).await?;
        let mut stream = std::pin::pin!(stream);
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk?);
        }
        put(&mut out, table.as_bytes());
        put(&mut out, &data);
    }
    tx.commit().await?;
    out.push(0);
    let digest = sha2::Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Whether `image` is a PostgreSQL store's backup (rather than sled's).
pub fn is_pg_image(image: &[u8]) -> bool {
    image.starts_with(MAGIC)
}

/// Read the `[len, bytes]` item at the front of `rest`.
fn take<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let n = rest.get(..4).ok_or("truncated")?;
    let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
    let item = rest.get(4..4 + n).ok_or("truncated")?;
    *rest = &rest[4 + n..];
    Ok(item)
}

/// The tables of a checked image, borrowed from it.
fn parse(image: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
    use sha2::Digest;
    if !is_pg_image(image) || image.len() < MAGIC.len() + 4 + 1 + 32 {
        return Err("not a PostgreSQL store backup".into());
    }
    let (body, digest) = image.split_at(image.len() - 32);
    if sha2::Sha256::digest(body).as_slice() != digest {
        return Err("the backup's checksum does not match: it is damaged or incomplete".into());
    }
    let v = &body[MAGIC.len()..MAGIC.len() + 4];
    let version = i32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    if version != latest_version() {
        return Err(format!(
            "the backup is of schema version {version}, this mcsd restores version {}",
            latest_version()
        ));
    }
    let mut rest = &body[MAGIC.len() + 4..];
    let mut out = Vec::new();
    while rest.len() > 1 {
        let name = std::str::from_utf8(take(&mut rest)?).map_err(|_| "a table name is not UTF-8")?;
        if !TABLES.contains(&name) {
            return Err(format!("unknown table {name:?}"));
        }
        out.push((name, take(&mut rest)?));
    }
    if rest != [0] {
        return Err("truncated".into());
    }
    Ok(out)
}

impl PgStore {
    /// Fill an empty database (schema migrated, no rows) from a backup image.
    /// Returns the rows restored.
    pub fn restore_image(&self, image: &[u8]) -> Result<u64, StoreError> {
        let tables = parse(image).map_err(StoreError::Refused)?;
        if !self.is_empty()? {
            return Err(StoreError::Refused("the target database is not empty".into()));
        }
        self.run(async {
            let mut c = self.inner.pool.get().await?;
            let tx = c.transaction().await?;
            let mut rows = 0;
            for (table, data) in &tables {
                let sink = tx.copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)")).await?;
                let mut sink = std::pin::pin!(sink);
                sink.send(bytes::Bytes::copy_from_slice(data)).await?;
                rows += sink.as_mut().finish().await?;
            }
            // COPY does not move a serial's sequence: the next item must come after the
            // restored ones.
            tx.batch_execute(
                "SELECT setval(pg_get_serial_sequence('inbox', 'seq'), coalesce(max(seq), 0) + 1, false) FROM inbox",
            )
            .await?;
            tx.commit().await?;
            Ok(rows)
        })
    }
}
