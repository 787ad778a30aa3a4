//! The callback outbox on sled: one record per task with a callback to deliver.

use super::codec::{decode, encode};
use super::storage::CallbackLease;
use super::{CallbackStorage, Store, StoreError};
use crate::model::task::CallbackRecord;

impl CallbackStorage for Store {
    fn callback(&self, task_id: &str) -> Result<Option<CallbackRecord>, StoreError> {
        self.files()?.outbox.get(task_id.as_bytes())?.map(|v| decode(task_id.as_bytes(), &v)).transpose()
    }

    fn callbacks(&self) -> Result<Vec<CallbackRecord>, StoreError> {
        self.files()?.outbox.iter().map(|r| r.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    fn put_callback(&self, cb: &CallbackRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.outbox.insert(cb.task_id.as_bytes(), encode(cb))?;
        Ok(())
    }

    fn delete_callback(&self, task_id: &str) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.outbox.remove(task_id.as_bytes())?;
        self.leases().remove(task_id);
        Ok(())
    }

    /// One process owns a sled store: leases live in its memory (a restart frees them all).
    fn lease_callback(&self, task_id: &str, now_ms: i64, lease_ms: i64) -> Result<Option<CallbackLease>, StoreError> {
        let mut leases = self.leases();
        if leases.get(task_id).is_some_and(|(_, until)| *until > now_ms) {
            return Ok(None);
        }
        let Some(record) = self.callback(task_id)?.filter(|cb| cb.next_at_ms <= now_ms) else { return Ok(None) };
        let token = format!("{now_ms}-{}", self.lease_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        leases.insert(task_id.to_owned(), (token.clone(), now_ms + lease_ms));
        Ok(Some(CallbackLease { record, token }))
    }

    fn finish_callback(&self, lease: &CallbackLease) -> Result<bool, StoreError> {
        let mut leases = self.leases();
        if leases.get(&lease.record.task_id).is_none_or(|(t, _)| *t != lease.token) {
            return Ok(false);
        }
        let _writing = self.writing();
        self.files()?.outbox.remove(lease.record.task_id.as_bytes())?;
        leases.remove(&lease.record.task_id);
        Ok(true)
    }

    fn reschedule_callback(&self, lease: &CallbackLease, next: &CallbackRecord) -> Result<bool, StoreError> {
        let mut leases = self.leases();
        if leases.get(&lease.record.task_id).is_none_or(|(t, _)| *t != lease.token) {
            return Ok(false);
        }
        let _writing = self.writing();
        self.files()?.outbox.insert(next.task_id.as_bytes(), encode(next))?;
        leases.remove(&lease.record.task_id);
        Ok(true)
    }
}

impl Store {
    fn leases(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (String, i64)>> {
        self.callback_leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl super::storage::ClusterStorage for Store {}
