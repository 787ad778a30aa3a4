//! The inbox on PostgreSQL: one row per item, the cursor a sequence shared by every node.

use super::{PgStore, decode_row, encode_record};
use crate::model::inbox::InboxRecord;
use crate::store::{InboxStorage, StoreError};

impl InboxStorage for PgStore {
    fn push_inbox(&self, item: &InboxRecord) -> Result<u64, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("INSERT INTO inbox (device_id, record) VALUES ($1, $2) RETURNING seq").await?;
            let row = c.query_one(&stmt, &[&item.device_id, &encode_record(item)]).await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn inbox_after(&self, device_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, InboxRecord)>, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c
                .prepare_cached("SELECT seq, record FROM inbox WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
                .await?;
            let (after, limit) = (after.min(i64::MAX as u64) as i64, limit.min(i64::MAX as usize) as i64);
            c.query(&stmt, &[&device_id, &after, &limit])
                .await?
                .iter()
                .map(|r| {
                    let seq = r.get::<_, i64>(0) as u64;
                    Ok((seq, decode_row("inbox", &seq.to_string(), r.get(1))?))
                })
                .collect()
        })
    }

    fn trim_inbox(&self, device_id: &str, through: u64) -> Result<u64, StoreError> {
        self.run(async {
            let c = self.inner.pool.get().await?;
            let stmt = c.prepare_cached("DELETE FROM inbox WHERE device_id = $1 AND seq <= $2").await?;
            Ok(c.execute(&stmt, &[&device_id, &(through.min(i64::MAX as u64) as i64)]).await?)
        })
    }
}
