//! Daemon-held keys on sled: the public record in `daemon_keys`, the wrapped private key
//! in `secrets` under `daemon:<name>/daemon-key`.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::codec::{decode, encode};
use super::key_refs::secret_key;
use super::{DaemonKeyStorage, Durability, Store, StoreError};
use crate::model::key::DaemonKeyRecord;
use crate::model::secret::SecretKind;

fn owner(name: &str) -> String {
    format!("daemon:{name}")
}

impl DaemonKeyStorage for Store {
    fn daemon_key(&self, name: &str) -> Result<Option<(DaemonKeyRecord, Vec<u8>)>, StoreError> {
        let Some(raw) = self.files()?.daemon_keys.get(name.as_bytes())? else { return Ok(None) };
        let rec: DaemonKeyRecord = decode(name.as_bytes(), &raw)?;
        let blob = self.files()?.secrets.get(secret_key(&owner(name), SecretKind::DaemonKey))?.ok_or_else(|| {
            StoreError::Corrupt { key: name.to_owned(), reason: "daemon key without its wrapped secret".into() }
        })?;
        Ok(Some((rec, blob.to_vec())))
    }

    fn insert_daemon_key(&self, rec: &DaemonKeyRecord, blob: &[u8]) -> Result<(DaemonKeyRecord, Vec<u8>), StoreError> {
        let _writing = self.writing();
        let bytes = encode(rec);
        let id = owner(&rec.name);
        let won = (&self.files()?.daemon_keys, &self.files()?.secrets).transaction(|(keys, sec)| {
            if keys.get(rec.name.as_bytes())?.is_some() {
                return Ok(false);
            }
            keys.insert(rec.name.as_bytes(), bytes.clone())?;
            sec.insert(secret_key(&id, SecretKind::DaemonKey), blob)?;
            Ok::<_, ConflictableTransactionError<()>>(true)
        });
        match won {
            Ok(_) => self
                .daemon_key(&rec.name)?
                .ok_or_else(|| StoreError::Corrupt { key: rec.name.clone(), reason: "vanished".into() }),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => {
                Err(StoreError::Corrupt { key: rec.name.clone(), reason: "aborted".into() })
            }
        }
    }
}

impl Store {
    /// Overwrite a daemon key's public record, leaving its wrapped secret alone: for tools
    /// and tests that prove a replaced audit key is noticed (not part of the interface).
    pub fn put_daemon_key_record(&self, rec: &DaemonKeyRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.daemon_keys.insert(rec.name.as_bytes(), encode(rec))?;
        self.flush_blocking()
    }
}
