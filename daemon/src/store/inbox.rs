//! The inbox on sled: tree `inbox`, key `<device id>\0<seq, 8 bytes BE>`, so one device's
//! items are one ordered range. Sequence numbers come from sled's `generate_id` (monotonic
//! across restarts), so a cursor never points back into older items.

use super::codec::{decode, encode};
use super::{Store, StoreError};
use crate::model::inbox::InboxRecord;

/// Items addressed to devices, read in order after a cursor and dropped once the device's
/// cursor has passed them.
pub trait InboxStorage {
    /// Store an item for its device; returns its sequence number (the cursor that passes it).
    fn push_inbox(&self, item: &InboxRecord) -> Result<u64, StoreError>;
    /// The device's items after `after`, oldest first, at most `limit`.
    fn inbox_after(&self, device_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, InboxRecord)>, StoreError>;
    /// Drop the device's items up to and including `through`; returns how many went.
    fn trim_inbox(&self, device_id: &str, through: u64) -> Result<u64, StoreError>;
}

fn device_prefix(device_id: &str) -> Result<Vec<u8>, StoreError> {
    if device_id.is_empty() || device_id.contains('\0') {
        return Err(StoreError::Refused(format!("inbox device id `{device_id}` is empty or holds NUL")));
    }
    let mut k = device_id.as_bytes().to_vec();
    k.push(0);
    Ok(k)
}

fn item_key(device_id: &str, seq: u64) -> Result<Vec<u8>, StoreError> {
    let mut k = device_prefix(device_id)?;
    k.extend_from_slice(&seq.to_be_bytes());
    Ok(k)
}

fn seq_of(prefix: &[u8], key: &[u8]) -> Result<u64, StoreError> {
    super::codec::seq_of("inbox", &key[prefix.len()..])
}

impl InboxStorage for Store {
    fn push_inbox(&self, item: &InboxRecord) -> Result<u64, StoreError> {
        let _writing = self.writing();
        let f = self.files()?;
        // 0 is the cursor of "nothing read yet": numbers start at 1.
        let seq = f.db.generate_id()? + 1;
        f.inbox.insert(item_key(&item.device_id, seq)?, encode(item))?;
        Ok(seq)
    }

    fn inbox_after(&self, device_id: &str, after: u64, limit: usize) -> Result<Vec<(u64, InboxRecord)>, StoreError> {
        let prefix = device_prefix(device_id)?;
        let from = item_key(device_id, after.saturating_add(1))?;
        let mut out = Vec::new();
        for entry in self.files()?.inbox.range(from..) {
            let (k, v) = entry?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push((seq_of(&prefix, &k)?, decode(&k, &v)?));
        }
        Ok(out)
    }

    fn trim_inbox(&self, device_id: &str, through: u64) -> Result<u64, StoreError> {
        let _writing = self.writing();
        let (from, to) = (item_key(device_id, 0)?, item_key(device_id, through)?);
        let f = self.files()?;
        let mut n = 0;
        for entry in f.inbox.range(from..=to) {
            let (k, _) = entry?;
            f.inbox.remove(k)?;
            n += 1;
        }
        Ok(n)
    }
}
