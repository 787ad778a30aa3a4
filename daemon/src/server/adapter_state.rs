//! The adapters' key-value state served from the daemon's store: the plugin host's
//! [`HostKv`] over [`PluginKvStorage`]. Here, above both, because the plugin host and the
//! store are one layer and do not know each other.

use std::sync::Arc;

use crate::plugins::HostKv;
use crate::store::Storage;

/// [`HostKv`] on the configured store. Adapter calls arrive on the adapter's (blocking)
/// thread, so the store's synchronous methods and [`Durability::flush_blocking`] are called
/// directly; a write is flushed before the adapter hears it succeeded.
///
/// [`PluginKvStorage`]: crate::store::PluginKvStorage
/// [`Durability::flush_blocking`]: crate::store::Durability::flush_blocking
pub struct StoreKv(pub Arc<dyn Storage>);

impl HostKv for StoreKv {
    fn get(&self, namespace: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.0.kv_get(namespace, key).map_err(|e| e.to_string())
    }

    fn put(&self, namespace: &str, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0.kv_put(namespace, key, value).map_err(|e| e.to_string())?;
        self.0.flush_blocking().map_err(|e| e.to_string())
    }

    fn cas(&self, namespace: &str, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, String> {
        let swapped = self.0.kv_cas(namespace, key, expected, new).map_err(|e| e.to_string())?;
        // A lost swap wrote nothing: nothing to make durable.
        if swapped {
            self.0.flush_blocking().map_err(|e| e.to_string())?;
        }
        Ok(swapped)
    }
}
