//! The callback outbox on sled: one record per task with a callback to deliver.

use super::codec::{decode, encode};
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
        Ok(())
    }
}
