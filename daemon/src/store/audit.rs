//! The audit chain's entries and checkpoints (tree keys: the sequence number, big-endian),
//! and the entry written inside another step's transaction.

use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::codec::{decode, encode, seq_of};
use super::{AuditAppend, AuditStorage, Durability, Store, StoreError};
use crate::model::audit::{Checkpoint, Entry};

/// Why a transaction carrying an audit entry gave up.
pub(super) enum Abort<T> {
    Outcome(T),
    /// The entry's sequence number is taken: the caller's view of the chain's head is wrong.
    AuditSeqTaken(u64),
}

pub(super) fn audit_seq_taken(seq: u64) -> StoreError {
    StoreError::Corrupt { key: format!("audit/{seq}"), reason: "sequence number already used".into() }
}

/// Insert an audit entry inside a transaction unless its sequence number is taken.
pub(super) fn append_in<T>(
    tree: &TransactionalTree,
    a: &AuditAppend,
) -> Result<(), ConflictableTransactionError<Abort<T>>> {
    let key = a.seq().to_be_bytes();
    if tree.get(key)?.is_some() {
        return Err(ConflictableTransactionError::Abort(Abort::AuditSeqTaken(a.seq())));
    }
    tree.insert(&key, encode(a.entry()))?;
    Ok(())
}

impl AuditStorage for Store {
    fn append_audit(&self, seq: u64, entry: &Entry) -> Result<bool, StoreError> {
        let _writing = self.writing();
        Ok(self.files()?.audit.compare_and_swap(seq.to_be_bytes(), None as Option<&[u8]>, Some(encode(entry)))?.is_ok())
    }

    fn audit_entries(&self, from: u64) -> Box<dyn Iterator<Item = Result<(u64, Entry), StoreError>>> {
        let range = match self.files() {
            Ok(f) => f.audit.range(from.to_be_bytes()..),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(range.map(|e| {
            let (k, v) = e?;
            Ok((seq_of("audit", &k)?, decode(&k, &v)?))
        }))
    }

    fn last_audit(&self) -> Result<Option<(u64, Entry)>, StoreError> {
        match self.files()?.audit.last()? {
            None => Ok(None),
            Some((k, v)) => Ok(Some((seq_of("audit", &k)?, decode(&k, &v)?))),
        }
    }

    fn audit_entry(&self, seq: u64) -> Result<Option<Entry>, StoreError> {
        let key = seq.to_be_bytes();
        self.files()?.audit.get(key)?.map(|v| decode(&key, &v)).transpose()
    }

    fn put_audit_checkpoint(&self, seq: u64, cp: &Checkpoint) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.files()?.audit_checkpoints.insert(seq.to_be_bytes(), encode(cp))?;
        Ok(())
    }

    fn audit_checkpoints_from(&self, from: u64) -> Result<Vec<Checkpoint>, StoreError> {
        self.files()?
            .audit_checkpoints
            .range(from.to_be_bytes()..)
            .map(|e| e.map_err(StoreError::from).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }

    fn last_audit_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.files()?.audit_checkpoints.last()?.map(|(k, v)| decode(&k, &v)).transpose()
    }

    fn audit_checkpoint_seqs(&self) -> Result<Vec<u64>, StoreError> {
        self.files()?.audit_checkpoints.iter().keys().map(|k| seq_of("audit_checkpoints", &k?)).collect()
    }
}

/// Raw record access for `mcsd audit` tools and tests that prove tampering is detected:
/// sled's own bytes, so not part of the interface.
impl Store {
    pub fn audit_raw(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files()?.audit.get(seq.to_be_bytes())?.map(|v| v.to_vec()))
    }

    pub fn put_audit_raw(&self, seq: u64, raw: Option<&[u8]>) -> Result<(), StoreError> {
        let _writing = self.writing();
        match raw {
            Some(r) => self.files()?.audit.insert(seq.to_be_bytes(), r)?,
            None => self.files()?.audit.remove(seq.to_be_bytes())?,
        };
        self.flush_blocking()
    }

    /// Like [`Store::put_audit_raw`], for checkpoints: a removed or replaced one is noticed.
    pub fn put_audit_checkpoint_raw(&self, seq: u64, raw: Option<&[u8]>) -> Result<(), StoreError> {
        let _writing = self.writing();
        match raw {
            Some(r) => self.files()?.audit_checkpoints.insert(seq.to_be_bytes(), r)?,
            None => self.files()?.audit_checkpoints.remove(seq.to_be_bytes())?,
        };
        self.flush_blocking()
    }
}
