//! Seals (compare-and-swap on their `rev`) and the seal maker's certificate, on sled.

use super::codec::{decode, encode};
use super::{SealStorage, Store, StoreError};
use crate::model::seal::{SealMakerRecord, SealRecord};

const SEAL_MAKER: &[u8] = b"seal_maker";

impl SealStorage for Store {
    fn insert_seal(&self, rec: &SealRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.seals.insert(rec.id.as_bytes(), encode(rec))?;
        Ok(())
    }

    fn seal(&self, id: &str) -> Result<Option<SealRecord>, StoreError> {
        self.files()?.seals.get(id.as_bytes())?.map(|v| decode(id.as_bytes(), &v)).transpose()
    }

    fn seals(&self) -> Result<Vec<SealRecord>, StoreError> {
        self.files()?.seals.iter().map(|e| e.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v))).collect()
    }

    fn replace_seal(&self, expected_rev: u64, rec: &SealRecord) -> Result<bool, StoreError> {
        let _writing = self.writing();
        let Some(old) = self.files()?.seals.get(rec.id.as_bytes())? else { return Ok(false) };
        let current: SealRecord = decode(rec.id.as_bytes(), &old)?;
        if current.rev != expected_rev {
            return Ok(false);
        }
        let mut next = rec.clone();
        next.rev = expected_rev + 1;
        Ok(self.files()?.seals.compare_and_swap(rec.id.as_bytes(), Some(&old), Some(encode(&next)))?.is_ok())
    }

    fn seal_maker(&self) -> Result<Option<SealMakerRecord>, StoreError> {
        self.files()?.meta.get(SEAL_MAKER)?.map(|v| decode(SEAL_MAKER, &v)).transpose()
    }

    fn put_seal_maker(&self, rec: &SealMakerRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.meta.insert(SEAL_MAKER, encode(rec))?;
        Ok(())
    }
}
