//! Versioned records: one format byte, then JSON. A reader that sees an unknown version
//! refuses the record rather than guessing.

use serde::{Serialize, de::DeserializeOwned};

use super::StoreError;

pub(super) const RECORD_V1: u8 = 1;

pub(super) fn encode<T: Serialize>(rec: &T) -> Vec<u8> {
    let mut out = vec![RECORD_V1];
    // Serializing plain data structs to JSON cannot fail.
    serde_json::to_writer(&mut out, rec).expect("record serializes");
    out
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason };
    match bytes.split_first() {
        Some((&RECORD_V1, body)) => serde_json::from_slice(body).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// Bytes that are not a record of ours (an adapter's value): the same format byte, then
/// the bytes as they were given, so a later format can still be told apart.
pub(super) fn encode_raw(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + bytes.len());
    out.push(RECORD_V1);
    out.extend_from_slice(bytes);
    out
}

pub(super) fn decode_raw(key: &[u8], bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason };
    match bytes.split_first() {
        Some((&RECORD_V1, body)) => Ok(body.to_vec()),
        Some((v, _)) => Err(corrupt(format!("unknown record version {v}"))),
        None => Err(corrupt("empty record".into())),
    }
}

/// A big-endian sequence number key (audit entries and checkpoints).
pub(super) fn seq_of(tree: &str, key: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(
        key.try_into().map_err(|_| StoreError::Corrupt { key: tree.into(), reason: "bad key".into() })?,
    ))
}
