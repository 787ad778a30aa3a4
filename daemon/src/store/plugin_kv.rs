//! Adapters' own state (a CA's serial index, its CRL): the [`PluginKvStorage`] part of the
//! storage interface, and its sled implementation — the `plugin_kv` tree, key
//! `<namespace>\0<key>`, the value as the adapter gave it behind codec's format byte.
//!
//! The namespace is the adapter's configured name, chosen by the plugin host, never by
//! the adapter; it may not contain NUL, so the first NUL of a tree key ends it and one
//! adapter's keys can never be spelled as another's.

use super::codec::{decode_raw, encode_raw};
use super::{Store, StoreError};

/// CA adapters' own state (a serial index, a CRL), kept for them by the plugin host: byte
/// values under byte keys in the adapter's namespace (its configured name, which the host
/// picks). Values are opaque to the store and bounded by the host (`mcs_plugin_abi::KV_MAX_VALUE`).
/// Like every write here, a put or a swap is durable only once flushed: the host flushes
/// before it answers the adapter, as a CA's index is security state.
pub trait PluginKvStorage {
    fn kv_get(&self, namespace: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn kv_put(&self, namespace: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Store `new` if the stored value is `expected` (`None`: no value). `false`: it was
    /// something else, and nothing was written. Linearizable per key, across nodes for a
    /// shared backend: what two concurrent read-modify-write loops need.
    fn kv_cas(&self, namespace: &str, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, StoreError>;
}

/// The namespace rule of every backend: named, and no NUL (sled's keys end it with one).
pub(super) fn check_namespace(namespace: &str) -> Result<(), StoreError> {
    if namespace.is_empty() || namespace.contains('\0') {
        return Err(StoreError::Refused(format!("plugin key-value namespace `{namespace}` is empty or holds NUL")));
    }
    Ok(())
}

fn tree_key(namespace: &str, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    check_namespace(namespace)?;
    let mut out = Vec::with_capacity(namespace.len() + 1 + key.len());
    out.extend_from_slice(namespace.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    Ok(out)
}

impl PluginKvStorage for Store {
    fn kv_get(&self, namespace: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let k = tree_key(namespace, key)?;
        self.files()?.plugin_kv.get(&k)?.map(|v| decode_raw(&k, &v)).transpose()
    }

    fn kv_put(&self, namespace: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let k = tree_key(namespace, key)?;
        let _writing = self.writing();
        self.files()?.plugin_kv.insert(k, encode_raw(value))?;
        Ok(())
    }

    fn kv_cas(&self, namespace: &str, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, StoreError> {
        let k = tree_key(namespace, key)?;
        let _writing = self.writing();
        // The stored bytes are the encoding of the value, so comparing encodings compares
        // values (one format version is written).
        let swapped = self.files()?.plugin_kv.compare_and_swap(k, expected.map(encode_raw), Some(encode_raw(new)))?;
        Ok(swapped.is_ok())
    }
}

/// One adapter value: namespace, key, value.
pub(super) type KvItem = (String, Vec<u8>, Vec<u8>);

impl Store {
    /// Every adapter value (`mcsd store migrate`).
    pub(super) fn plugin_kv_all(&self) -> Result<Vec<KvItem>, StoreError> {
        let mut out = Vec::new();
        for item in self.files()?.plugin_kv.iter() {
            let (k, v) = item?;
            let Some(nul) = k.iter().position(|&b| b == 0) else {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: "no namespace".into(),
                });
            };
            let namespace = String::from_utf8_lossy(&k[..nul]).into_owned();
            out.push((namespace, k[nul + 1..].to_vec(), decode_raw(&k, &v)?));
        }
        Ok(out)
    }
}
