//! The CA adapter host: the only module that uses `unsafe` FFI.
//!
//! Loads exactly the libraries named in `[[plugins]]` (absolute paths), reads each one's
//! `mcs_plugin_abi_version` before touching anything else and refuses a mismatch, calls
//! its entry with its JSON config, and asks it to `describe` itself. A library that fails
//! any step is not loaded: the failure is logged at start-up, shown by `GET /v1/plugins`
//! and makes `/readyz` report not ready, while the daemon and the other adapters go on.
//!
//! Calls run on the blocking pool with a per-call timeout (`plugin_timeout`). At most
//! `max_concurrency` calls per adapter are in flight, so a hung adapter ties up a bounded
//! number of threads and further calls fail fast. Adapter failures — an error status, a
//! caught panic, an answer that is not JSON — are `plugin_error`. Libraries are never
//! unloaded.
//!
//! The host offers adapters two capabilities: signing with a daemon-held SM2 key, through a
//! [`HostSigner`] (the daemon's `DaemonKeys`), whose private half exists only HSM-wrapped
//! at rest; and a key-value store for the state an adapter keeps (a CA's serial index and
//! CRL), through a [`HostKv`] (the daemon's store, so every node on a shared database sees
//! the same state). Each adapter gets a host table of its own, whose context names it: its
//! key-value calls reach its namespace — its configured name — and no other.
//!
//! Versions: adapters built for ABI 1 (no key-value calls) still load; the ABI 2 table
//! starts with the whole ABI 1 table (`plugins/abi` explains).

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use mcs_plugin_abi::{self as abi, Bytes, Host, Plugin, Sink};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::PluginConfig;

pub mod ca;

/// What the host lets adapters do with the daemon's own keys (in the manner of rustls's
/// `SigningKey`: the key may live in an HSM; the host never sees it).
pub trait HostSigner: Send + Sync {
    /// DER SM2 signature (SM3, default ID) by the daemon key `name` over `msg`.
    fn sign(&self, name: &str, msg: &[u8]) -> Result<Vec<u8>, String>;
    /// DER SubjectPublicKeyInfo of the daemon key `name`.
    fn spki(&self, name: &str) -> Result<Vec<u8>, String>;
}

type Signer = Arc<dyn HostSigner>;

/// Where adapters' key-value state lives (the daemon's store): byte values under byte keys,
/// per namespace. Called on the adapter's thread, which may block. A put or a swap that
/// returns `Ok` is durable: a CA's serial index is security state.
pub trait HostKv: Send + Sync {
    fn get(&self, namespace: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    fn put(&self, namespace: &str, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Store `new` if the stored value is `expected` (`None`: none); `Ok(false)`: it was
    /// another, nothing was written.
    fn cas(&self, namespace: &str, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, String>;
}

/// The context of one adapter's host table: the daemon's services, and whose calls arrive
/// through it. Leaked with the table: both live as long as the library, which stays.
struct HostCtx {
    signer: Signer,
    kv: Arc<dyn HostKv>,
    /// The adapter's configured name: its key-value namespace.
    namespace: String,
}

/// The context behind a host callback's `ctx`.
///
/// # Safety
/// `ctx` must be the context of a table made by [`host_table`].
unsafe fn host_ctx<'a>(ctx: *mut c_void) -> &'a HostCtx {
    // SAFETY: per the contract, a leaked `HostCtx` that is never freed.
    unsafe { &*(ctx as *const HostCtx) }
}

/// A host table for the adapter `namespace`, valid for the rest of the process.
fn host_table(namespace: &str, signer: Signer, kv: Arc<dyn HostKv>) -> *const Host {
    let ctx = Box::into_raw(Box::new(HostCtx { signer, kv, namespace: namespace.to_owned() })) as *mut c_void;
    Box::into_raw(Box::new(Host {
        abi_version: abi::ABI_VERSION,
        ctx,
        sign: host_sign,
        public_key: host_public_key,
        log: host_log,
        kv_get: host_kv_get,
        kv_put: host_kv_put,
        kv_cas: host_kv_cas,
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("no CA adapter named `{0}` is loaded")]
    NotLoaded(String),
    #[error("CA adapter `{adapter}` failed: {reason}")]
    Failed { adapter: String, reason: String },
    #[error("CA adapter `{0}` did not answer in time")]
    Timeout(String),
    /// The adapter does not implement this (optional) operation.
    #[error("CA adapter `{adapter}` does not support `{op}`")]
    Unsupported { adapter: String, op: String },
}

fn key_name(key: Bytes) -> Result<String, String> {
    // SAFETY: the adapter passes bytes valid for the call (ABI contract).
    let raw = unsafe { key.as_slice() };
    let name = std::str::from_utf8(raw).map_err(|_| "key name is not UTF-8".to_owned())?;
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("invalid key name `{name}`"));
    }
    Ok(name.to_owned())
}

fn answer(result: Result<Vec<u8>, String>, out: Sink, out_ctx: *mut c_void) -> i32 {
    let (status, bytes) = match result {
        Ok(b) => (abi::STATUS_OK, b),
        Err(e) => (abi::STATUS_ERROR, e.into_bytes()),
    };
    // SAFETY: `out`/`out_ctx` are the adapter's sink for this call; it copies the bytes.
    unsafe { abi::emit(out, out_ctx, &bytes) };
    status
}

unsafe extern "C" fn host_sign(ctx: *mut c_void, key: Bytes, tbs: Bytes, out: Sink, out_ctx: *mut c_void) -> i32 {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the context of the table this adapter was given; tbs is
        // borrowed for the call.
        let host = unsafe { host_ctx(ctx) };
        let tbs = unsafe { tbs.as_slice() };
        host.signer.sign(&key_name(key)?, tbs)
    }));
    answer(result.unwrap_or_else(|_| Err("host panicked".into())), out, out_ctx)
}

unsafe extern "C" fn host_public_key(ctx: *mut c_void, key: Bytes, out: Sink, out_ctx: *mut c_void) -> i32 {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in `host_sign`.
        let host = unsafe { host_ctx(ctx) };
        host.signer.spki(&key_name(key)?)
    }));
    answer(result.unwrap_or_else(|_| Err("host panicked".into())), out, out_ctx)
}

/// A key-value key within the ABI's bounds.
fn kv_key(key: &[u8]) -> Result<&[u8], String> {
    if key.len() > abi::KV_MAX_KEY {
        return Err(format!("key-value key of {} bytes is over the {}-byte limit", key.len(), abi::KV_MAX_KEY));
    }
    Ok(key)
}

fn kv_value(value: &[u8]) -> Result<&[u8], String> {
    if value.len() > abi::KV_MAX_VALUE {
        return Err(format!("key-value value of {} bytes is over the {}-byte limit", value.len(), abi::KV_MAX_VALUE));
    }
    Ok(value)
}

/// Write `message` to the adapter's sink and return `STATUS_ERROR`.
fn kv_failed(message: String, err: Sink, err_ctx: *mut c_void) -> i32 {
    // SAFETY: `err`/`err_ctx` are the adapter's sink for this call; it copies the bytes.
    unsafe { abi::emit(err, err_ctx, message.as_bytes()) };
    abi::STATUS_ERROR
}

unsafe extern "C" fn host_kv_get(ctx: *mut c_void, key: Bytes, out: Sink, out_ctx: *mut c_void) -> i32 {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in `host_sign`; the key is borrowed for the call.
        let host = unsafe { host_ctx(ctx) };
        host.kv.get(&host.namespace, kv_key(unsafe { key.as_slice() })?)
    }));
    match result.unwrap_or_else(|_| Err("host panicked".into())) {
        Ok(Some(value)) => {
            // SAFETY: `out`/`out_ctx` are the adapter's sink for this call.
            unsafe { abi::emit(out, out_ctx, &value) };
            abi::STATUS_OK
        }
        Ok(None) => abi::STATUS_ABSENT,
        Err(e) => kv_failed(e, out, out_ctx),
    }
}

unsafe extern "C" fn host_kv_put(ctx: *mut c_void, key: Bytes, value: Bytes, err: Sink, err_ctx: *mut c_void) -> i32 {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in `host_sign`; key and value are borrowed for the call.
        let host = unsafe { host_ctx(ctx) };
        let (key, value) = unsafe { (key.as_slice(), value.as_slice()) };
        host.kv.put(&host.namespace, kv_key(key)?, kv_value(value)?)
    }));
    match result.unwrap_or_else(|_| Err("host panicked".into())) {
        Ok(()) => abi::STATUS_OK,
        Err(e) => kv_failed(e, err, err_ctx),
    }
}

unsafe extern "C" fn host_kv_cas(
    ctx: *mut c_void,
    key: Bytes,
    expected: *const Bytes,
    value: Bytes,
    err: Sink,
    err_ctx: *mut c_void,
) -> i32 {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in `host_kv_put`; `expected` is null or points at a `Bytes` that,
        // with what it borrows, lives for the call (ABI contract).
        let host = unsafe { host_ctx(ctx) };
        let (key, value) = unsafe { (key.as_slice(), value.as_slice()) };
        let expected = unsafe { expected.as_ref().map(|b| b.as_slice()) };
        host.kv.cas(&host.namespace, kv_key(key)?, expected.map(kv_value).transpose()?, kv_value(value)?)
    }));
    match result.unwrap_or_else(|_| Err("host panicked".into())) {
        Ok(true) => abi::STATUS_OK,
        Ok(false) => abi::STATUS_CONFLICT,
        Err(e) => kv_failed(e, err, err_ctx),
    }
}

unsafe extern "C" fn host_log(_ctx: *mut c_void, level: u32, msg: Bytes) {
    // SAFETY: the message is borrowed for the call.
    let msg = String::from_utf8_lossy(unsafe { msg.as_slice() });
    match level {
        1 => tracing::error!(target: "mcsd::adapter", "{msg}"),
        2 => tracing::warn!(target: "mcsd::adapter", "{msg}"),
        3 => tracing::info!(target: "mcsd::adapter", "{msg}"),
        _ => tracing::debug!(target: "mcsd::adapter", "{msg}"),
    }
}

// ---- loaded adapters ---------------------------------------------------------------------

/// A plugin table; the library behind it is never unloaded.
#[derive(Clone, Copy)]
struct Table(*const Plugin);

// SAFETY: the table and its library live for the process lifetime, and adapters must be
// callable from any thread (ABI contract).
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

struct Loaded {
    table: Table,
    /// The ABI the adapter was built for.
    abi: u32,
    description: Value,
    /// Per-call limit in milliseconds; changed by a reload.
    timeout_ms: std::sync::atomic::AtomicU64,
    slots: Arc<Semaphore>,
}

enum Entry {
    Loaded(Loaded),
    Failed(String),
}

/// A configured adapter as an operator sees it.
pub struct PluginInfo<'a> {
    pub name: &'a str,
    pub library: &'a std::path::Path,
    pub state: PluginState<'a>,
}

pub enum PluginState<'a> {
    /// With what the adapter's `describe` said of itself (JSON, as it sent it).
    Loaded {
        description: &'a Value,
        abi: u32,
    },
    Failed {
        error: &'a str,
    },
}

pub struct PluginHost {
    entries: BTreeMap<String, (PluginConfig, Entry)>,
}

/// Raw call; returns (status, bytes written to the sink).
fn raw_call(table: Table, op: &str, request: &[u8]) -> (i32, Vec<u8>) {
    let mut out = Vec::new();
    // SAFETY: `table` is a live plugin table; the borrowed buffers outlive the call and
    // the sink appends to `out`.
    let status = unsafe {
        let t = &*table.0;
        (t.call)(
            t.state,
            Bytes::from_slice(op.as_bytes()),
            Bytes::from_slice(request),
            abi::vec_sink,
            &mut out as *mut Vec<u8> as *mut c_void,
        )
    };
    (status, out)
}

/// Load the adapter's library and read its ABI version, refusing one this host does not
/// speak. The library is never unloaded (see [`load_one`]).
fn open_library(cfg: &PluginConfig) -> Result<(libloading::Library, u32), String> {
    if !cfg.library.is_file() {
        return Err(format!("cannot load: {}: no such file", cfg.library.display()));
    }
    // SAFETY: loading runs the library's initialisers; the operator named this library.
    let lib = unsafe { libloading::Library::new(&cfg.library) }.map_err(|e| format!("cannot load: {e}"))?;
    // SAFETY: the version symbol has this signature in every ABI version.
    let version = unsafe {
        let f = lib.get::<abi::VersionFn>(abi::VERSION_SYMBOL).map_err(|e| format!("not an mcsd plugin: {e}"))?;
        f()
    };
    if !(abi::MIN_ABI_VERSION..=abi::ABI_VERSION).contains(&version) {
        std::mem::forget(lib);
        return Err(format!(
            "built for plugin ABI {version}, this daemon speaks ABI {} to {}",
            abi::MIN_ABI_VERSION,
            abi::ABI_VERSION
        ));
    }
    Ok((lib, version))
}

/// Whether the adapter's library loads and speaks an ABI this host does (without starting
/// the adapter): its ABI version (`mcsd check-config` while the daemon holds the store).
pub fn probe(cfg: &PluginConfig) -> Result<u32, String> {
    let (lib, version) = open_library(cfg)?;
    std::mem::forget(lib);
    Ok(version)
}

fn load_one(cfg: &PluginConfig, host: *const Host) -> Result<Loaded, String> {
    let (lib, version) = open_library(cfg)?;
    let config = serde_json::to_vec(&cfg.config).map_err(|e| e.to_string())?;
    let mut err = Vec::new();
    // SAFETY: the entry has this signature in every ABI this host speaks, and the host
    // table of ABI 2 starts with the whole table of ABI 1; `host` lives for the process
    // lifetime; the config and error sink outlive the call.
    let table = unsafe {
        let entry = lib.get::<abi::EntryFn>(abi::ENTRY_SYMBOL).map_err(|e| format!("no entry: {e}"))?;
        entry(host, Bytes::from_slice(&config), abi::vec_sink, &mut err as *mut Vec<u8> as *mut c_void)
    };
    // Never unloaded: adapter threads or callbacks may outlive any handle we keep.
    std::mem::forget(lib);
    if table.is_null() {
        return Err(format!("refused to start: {}", String::from_utf8_lossy(&err)));
    }
    // SAFETY: a non-null table from the entry; its version field is first in every ABI.
    if unsafe { (*table).abi_version } != version {
        return Err("entry returned a table of another ABI version".into());
    }
    let table = Table(table);
    let (status, bytes) = raw_call(table, "describe", b"{}");
    if status != abi::STATUS_OK {
        return Err(format!("describe failed: {}", String::from_utf8_lossy(&bytes)));
    }
    let description: Value = serde_json::from_slice(&bytes).map_err(|e| format!("describe answered non-JSON: {e}"))?;
    Ok(Loaded {
        table,
        abi: version,
        description,
        timeout_ms: std::sync::atomic::AtomicU64::new(cfg.timeout.as_millis() as u64),
        slots: Arc::new(Semaphore::new(cfg.max_concurrency)),
    })
}

impl PluginHost {
    /// Load every configured adapter, each with a host table of its own that signs through
    /// `keys` and keeps its state in `kv` under its name. Failures are recorded, not fatal.
    /// Blocking: adapters may read their state while they start.
    pub fn load(configs: &[PluginConfig], keys: Signer, kv: Arc<dyn HostKv>) -> PluginHost {
        let mut entries = BTreeMap::new();
        for cfg in configs {
            let host = host_table(&cfg.name, keys.clone(), kv.clone());
            let entry = match load_one(cfg, host) {
                Ok(loaded) => {
                    tracing::info!(adapter = %cfg.name, library = %cfg.library.display(), description = %loaded.description, "CA adapter loaded");
                    Entry::Loaded(loaded)
                }
                Err(e) => {
                    tracing::error!(adapter = %cfg.name, library = %cfg.library.display(), error = %e, "CA adapter NOT loaded");
                    Entry::Failed(e)
                }
            };
            entries.insert(cfg.name.clone(), (cfg.clone(), entry));
        }
        PluginHost { entries }
    }

    /// Apply reloadable settings (`timeout_ms`) of adapters loaded under the same name and
    /// library. Anything else (a new adapter, another library, `max_concurrency`) needs a
    /// restart; the returned notes say so.
    pub fn apply_settings(&self, configs: &[PluginConfig]) -> Vec<String> {
        let mut notes = Vec::new();
        for cfg in configs {
            match self.entries.get(&cfg.name) {
                Some((loaded_cfg, Entry::Loaded(loaded))) if loaded_cfg.library == cfg.library => {
                    loaded.timeout_ms.store(cfg.timeout.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                _ => notes.push(format!("adapter `{}`: library changes take effect at restart", cfg.name)),
            }
        }
        notes
    }

    /// The adapters that failed to load, by name.
    pub fn failed_names(&self) -> Vec<&str> {
        self.entries.iter().filter(|(_, (_, e))| matches!(e, Entry::Failed(_))).map(|(n, _)| n.as_str()).collect()
    }

    pub fn is_loaded(&self, name: &str) -> bool {
        matches!(self.entries.get(name), Some((_, Entry::Loaded(_))))
    }

    /// `GET /v1/plugins`: what is loaded, and what failed and why.
    pub fn list(&self) -> Vec<PluginInfo<'_>> {
        self.entries
            .iter()
            .map(|(name, (cfg, entry))| PluginInfo {
                name,
                library: &cfg.library,
                state: match entry {
                    Entry::Loaded(l) => PluginState::Loaded { description: &l.description, abi: l.abi },
                    Entry::Failed(e) => PluginState::Failed { error: e },
                },
            })
            .collect()
    }

    /// Call operation `op` of adapter `name` with a JSON request.
    pub async fn call(&self, name: &str, op: &str, request: &Value) -> Result<Value, PluginError> {
        let out = self.call_inner(name, op, request).await;
        let result = match &out {
            Ok(_) => "ok",
            Err(PluginError::Timeout(_)) => "timeout",
            Err(PluginError::NotLoaded(_)) => "not_loaded",
            Err(PluginError::Failed { .. }) => "error",
            Err(PluginError::Unsupported { .. }) => "unsupported",
        };
        // Unknown adapter names are not labels: they come from requests.
        let adapter = if self.entries.contains_key(name) { name } else { "(unknown)" };
        crate::metrics::METRICS.plugin_calls.with_label_values(&[adapter, op, result]).inc();
        out
    }

    async fn call_inner(&self, name: &str, op: &str, request: &Value) -> Result<Value, PluginError> {
        let Some((_, Entry::Loaded(loaded))) = self.entries.get(name) else {
            return Err(PluginError::NotLoaded(name.to_owned()));
        };
        let failed = |reason: String| PluginError::Failed { adapter: name.to_owned(), reason };
        // A full house means earlier calls are stuck: fail fast rather than queue behind them.
        let permit = loaded.slots.clone().try_acquire_owned().map_err(|_| PluginError::Timeout(name.to_owned()))?;
        let (table, op_owned) = (loaded.table, op.to_owned());
        let request = serde_json::to_vec(request).map_err(|e| failed(e.to_string()))?;
        let call = tokio::task::spawn_blocking(move || {
            let answer = raw_call(table, &op_owned, &request);
            drop(permit);
            answer
        });
        let timeout_ms = loaded.timeout_ms.load(std::sync::atomic::Ordering::Relaxed);
        let (status, bytes) = match tokio::time::timeout(Duration::from_millis(timeout_ms), call).await {
            Err(_) => {
                tracing::error!(adapter = name, op, timeout_ms, "CA adapter call timed out");
                return Err(PluginError::Timeout(name.to_owned()));
            }
            Ok(Err(e)) => return Err(failed(format!("call thread: {e}"))),
            Ok(Ok(answer)) => answer,
        };
        decode_answer(name, op, status, &bytes)
    }
}

/// What an adapter's answer to `op` means: JSON for `STATUS_OK`, otherwise the adapter's
/// reason. Pure (no adapter, no threads), so `fuzz/` can feed it whatever bytes an
/// adapter might write.
pub fn decode_answer(adapter: &str, op: &str, status: i32, bytes: &[u8]) -> Result<Value, PluginError> {
    let failed = |reason: String| PluginError::Failed { adapter: adapter.to_owned(), reason };
    match status {
        abi::STATUS_OK => {
            serde_json::from_slice(bytes).map_err(|_| failed(format!("`{op}` answered something that is not JSON")))
        }
        abi::STATUS_UNSUPPORTED => Err(PluginError::Unsupported { adapter: adapter.to_owned(), op: op.to_owned() }),
        _ => Err(failed(String::from_utf8_lossy(bytes).into_owned())),
    }
}

#[cfg(test)]
mod tests {
    //! The host's key-value calls through the adapters' own helper, on tables made as
    //! `PluginHost::load` makes them (no library needed).

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use mcs_plugin_abi::{HostHandle, KeyValue};

    use super::{HostKv, HostSigner, host_table};

    struct NoKeys;

    impl HostSigner for NoKeys {
        fn sign(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, String> {
            Err("no keys here".into())
        }
        fn spki(&self, _: &str) -> Result<Vec<u8>, String> {
            Err("no keys here".into())
        }
    }

    /// (namespace, key): the namespace the host passed is part of what is stored.
    type Slot = (String, Vec<u8>);

    /// What the store would keep, with the namespace of every call.
    #[derive(Default)]
    struct Recorded(Mutex<BTreeMap<Slot, Vec<u8>>>);

    impl HostKv for Recorded {
        fn get(&self, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.lock().unwrap().get(&(ns.to_owned(), key.to_vec())).cloned())
        }
        fn put(&self, ns: &str, key: &[u8], value: &[u8]) -> Result<(), String> {
            self.0.lock().unwrap().insert((ns.to_owned(), key.to_vec()), value.to_vec());
            Ok(())
        }
        fn cas(&self, ns: &str, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, String> {
            let mut map = self.0.lock().unwrap();
            let k = (ns.to_owned(), key.to_vec());
            if map.get(&k).map(Vec::as_slice) != expected {
                return Ok(false);
            }
            map.insert(k, new.to_vec());
            Ok(true)
        }
    }

    fn adapter(name: &str, kv: &Arc<Recorded>) -> mcs_plugin_abi::Kv {
        let table = host_table(name, Arc::new(NoKeys), kv.clone());
        // SAFETY: a table made as the host makes them, leaked for the process.
        unsafe { HostHandle::new(table) }.kv().expect("an ABI 2 host table has the key-value calls")
    }

    #[test]
    fn each_adapter_reaches_its_own_namespace() {
        let store = Arc::new(Recorded::default());
        let (ca, ra) = (adapter("local", &store), adapter("remote", &store));
        ca.put(b"root", b"ca-root").unwrap();
        assert_eq!(ra.get(b"root").unwrap(), None, "another adapter's key is not this one's");
        assert!(ra.cas(b"root", None, b"ra-root").unwrap());
        assert_eq!(ca.get(b"root").unwrap().as_deref(), Some(&b"ca-root"[..]));
        assert!(!ca.cas(b"root", Some(b"ra-root"), b"x").unwrap(), "nor is its value");
        assert!(ca.cas(b"root", Some(b"ca-root"), b"next").unwrap());
        let names: Vec<String> = store.0.lock().unwrap().keys().map(|(ns, _)| ns.clone()).collect();
        assert_eq!(names, ["local", "remote"]);
    }

    #[test]
    fn oversized_keys_and_values_are_refused_with_a_message() {
        let store = Arc::new(Recorded::default());
        let ca = adapter("local", &store);
        let big = vec![0u8; mcs_plugin_abi::KV_MAX_VALUE + 1];
        assert!(ca.put(b"k", &big).unwrap_err().contains("over the 1048576-byte limit"));
        assert!(ca.cas(b"k", None, &big).is_err());
        assert!(ca.get(&[0u8; mcs_plugin_abi::KV_MAX_KEY + 1]).unwrap_err().contains("key"));
        ca.put(b"k", &big[1..]).unwrap();
        assert_eq!(
            ca.get(b"k").unwrap().map(|v| v.len()),
            Some(mcs_plugin_abi::KV_MAX_VALUE),
            "the bound itself is fine"
        );
        assert!(store.0.lock().unwrap().len() == 1, "a refused call writes nothing");
    }
}
