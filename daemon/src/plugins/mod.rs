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
//! The host offers adapters one capability: signing with a daemon-held SM2 key, through a
//! [`HostSigner`] (the daemon's `DaemonKeys`), whose private half exists only HSM-wrapped
//! at rest.

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

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("no CA adapter named `{0}` is loaded")]
    NotLoaded(String),
    #[error("CA adapter `{adapter}` failed: {reason}")]
    Failed { adapter: String, reason: String },
    #[error("CA adapter `{0}` did not answer in time")]
    Timeout(String),
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
        // SAFETY: `ctx` is the leaked `Signer` set up in `PluginHost::load`; tbs is
        // borrowed for the call.
        let keys = unsafe { &*(ctx as *const Signer) };
        let tbs = unsafe { tbs.as_slice() };
        keys.sign(&key_name(key)?, tbs)
    }));
    answer(result.unwrap_or_else(|_| Err("host panicked".into())), out, out_ctx)
}

unsafe extern "C" fn host_public_key(ctx: *mut c_void, key: Bytes, out: Sink, out_ctx: *mut c_void) -> i32 {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as in `host_sign`.
        let keys = unsafe { &*(ctx as *const Signer) };
        keys.spki(&key_name(key)?)
    }));
    answer(result.unwrap_or_else(|_| Err("host panicked".into())), out, out_ctx)
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

fn load_one(cfg: &PluginConfig, host: *const Host) -> Result<Loaded, String> {
    // SAFETY: loading runs the library's initialisers; the operator named this library.
    let lib = unsafe { libloading::Library::new(&cfg.library) }.map_err(|e| format!("cannot load: {e}"))?;
    // SAFETY: the version symbol has this signature in every ABI version.
    let version = unsafe {
        let f = lib.get::<abi::VersionFn>(abi::VERSION_SYMBOL).map_err(|e| format!("not an mcsd plugin: {e}"))?;
        f()
    };
    if version != abi::ABI_VERSION {
        std::mem::forget(lib);
        return Err(format!("built for plugin ABI {version}, this daemon speaks ABI {}", abi::ABI_VERSION));
    }
    let config = serde_json::to_vec(&cfg.config).map_err(|e| e.to_string())?;
    let mut err = Vec::new();
    // SAFETY: the ABI versions match, so the entry has this signature; `host` lives for
    // the process lifetime; the config and error sink outlive the call.
    let table = unsafe {
        let entry = lib.get::<abi::EntryFn>(abi::ENTRY_SYMBOL).map_err(|e| format!("no entry: {e}"))?;
        entry(host, Bytes::from_slice(&config), abi::vec_sink, &mut err as *mut Vec<u8> as *mut c_void)
    };
    // Never unloaded: adapter threads or callbacks may outlive any handle we keep.
    std::mem::forget(lib);
    if table.is_null() {
        return Err(format!("refused to start: {}", String::from_utf8_lossy(&err)));
    }
    // SAFETY: non-null table from a v1 entry.
    if unsafe { (*table).abi_version } != abi::ABI_VERSION {
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
        description,
        timeout_ms: std::sync::atomic::AtomicU64::new(cfg.timeout.as_millis() as u64),
        slots: Arc::new(Semaphore::new(cfg.max_concurrency)),
    })
}

impl PluginHost {
    /// Load every configured adapter. Failures are recorded, not fatal.
    pub fn load(configs: &[PluginConfig], keys: Signer) -> PluginHost {
        // The host table and its context live for the process lifetime.
        let ctx = Box::into_raw(Box::new(keys)) as *mut c_void;
        let host: *const Host = Box::into_raw(Box::new(Host {
            abi_version: abi::ABI_VERSION,
            ctx,
            sign: host_sign,
            public_key: host_public_key,
            log: host_log,
        }));
        let mut entries = BTreeMap::new();
        for cfg in configs {
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

    pub fn all_loaded(&self) -> bool {
        self.entries.values().all(|(_, e)| matches!(e, Entry::Loaded(_)))
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
                    Entry::Loaded(l) => PluginState::Loaded { description: &l.description, abi: abi::ABI_VERSION },
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
        abi::STATUS_UNSUPPORTED => Err(failed(format!("`{op}` is not supported"))),
        _ => Err(failed(String::from_utf8_lossy(bytes).into_owned())),
    }
}
