//! The versioned C ABI between mcsd and CA adapter plugins (see `include/mcs_plugin.h`,
//! the same contract for adapters written in C or Go).
//!
//! Only `#[repr(C)]` types and byte buffers cross the boundary, and no allocation ever
//! changes hands: whoever produces bytes hands them to a [`Sink`] of the consumer, which
//! copies them before returning. Requests and answers are UTF-8 JSON documents, so
//! operations can grow without breaking the ABI.
//!
//! A plugin exports two symbols:
//! - `mcs_plugin_abi_version() -> u32` — read first; the host refuses a version it does not
//!   speak (it speaks [`MIN_ABI_VERSION`]`..=`[`ABI_VERSION`]);
//! - `mcs_plugin_entry(host, config, err_sink, err_ctx) -> *const Plugin` — called once.
//!
//! Operations (`Plugin::call`): `describe`, `issue`, `revoke`, `status`, `crl`. An adapter
//! never opens the HSM: it asks the host to sign with a daemon-held key (`Host::sign`).
//! An adapter that keeps state (a CA's serial index, its CRL) keeps it in the host's store
//! through `Host::kv_get`/`kv_put`/`kv_cas` (ABI 2), so every node of a cluster sharing
//! one database sees the same state.
//!
//! Versions: ABI 2 appended the key-value calls to the end of [`Host`] and changed nothing
//! else. A host table of ABI 2 therefore starts with the whole table of ABI 1, and a host
//! of ABI 2 still loads adapters built for ABI 1 (they read only the fields they know); an
//! adapter of ABI 2 reads `Host::abi_version` before touching the new fields
//! ([`HostHandle::kv`] does), and a daemon of ABI 1 refuses it by its version as before.
//!
//! Rust adapters implement [`Adapter`] and call [`export_adapter!`], which generates both
//! exports with `catch_unwind` around every entry into adapter code.
// The C ABI is this crate's purpose: every `unsafe` block in it carries a SAFETY note.
#![allow(unsafe_code)]

use std::ffi::c_void;

/// The ABI version this crate describes.
pub const ABI_VERSION: u32 = 2;
/// The oldest adapter ABI a host of [`ABI_VERSION`] still loads (see the crate docs).
pub const MIN_ABI_VERSION: u32 = 1;
/// The first ABI with the key-value calls of [`Host`].
pub const KV_ABI_VERSION: u32 = 2;
/// The longest key the host's key-value calls accept, in bytes.
pub const KV_MAX_KEY: usize = 1024;
/// The largest value the host's key-value calls accept, in bytes (1 MiB): state that grows
/// without bound belongs under many keys, not in one value.
pub const KV_MAX_VALUE: usize = 1 << 20;
pub const VERSION_SYMBOL: &[u8] = b"mcs_plugin_abi_version\0";
pub const ENTRY_SYMBOL: &[u8] = b"mcs_plugin_entry\0";

/// Status codes returned across the boundary.
pub const STATUS_OK: i32 = 0;
/// The operation failed; a UTF-8 message was written to the sink.
pub const STATUS_ERROR: i32 = 1;
/// The operation is not supported by this adapter.
pub const STATUS_UNSUPPORTED: i32 = 2;
/// `Host::kv_get`: there is no value under the key (nothing was written to the sink).
pub const STATUS_ABSENT: i32 = 3;
/// `Host::kv_cas`: the stored value was not the expected one; nothing was written.
pub const STATUS_CONFLICT: i32 = 4;

/// Borrowed bytes, valid for the duration of the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Bytes {
    pub ptr: *const u8,
    pub len: usize,
}

impl Bytes {
    pub fn from_slice(s: &[u8]) -> Bytes {
        Bytes { ptr: s.as_ptr(), len: s.len() }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes for the lifetime `'a` (or `len` be 0).
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller per the function contract.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Receives bytes produced by the other side; must copy them before returning.
pub type Sink = unsafe extern "C" fn(ctx: *mut c_void, ptr: *const u8, len: usize);

/// What the daemon offers a plugin. Valid for the life of the process; callable from any
/// thread. Each adapter gets a table of its own: `ctx` tells the host which adapter calls,
/// and so which key-value namespace (the adapter's configured name) a call is about.
#[repr(C)]
pub struct Host {
    pub abi_version: u32,
    pub ctx: *mut c_void,
    /// Sign `tbs` with the daemon-held SM2 key named `key` (SM2 with SM3, ID
    /// 1234567812345678); the DER `SEQUENCE{r, s}` goes to `out`.
    pub sign: unsafe extern "C" fn(ctx: *mut c_void, key: Bytes, tbs: Bytes, out: Sink, out_ctx: *mut c_void) -> i32,
    /// The DER SubjectPublicKeyInfo of the daemon-held key `key`, created on first use.
    pub public_key: unsafe extern "C" fn(ctx: *mut c_void, key: Bytes, out: Sink, out_ctx: *mut c_void) -> i32,
    /// Log a UTF-8 line (level 1 error … 4 debug).
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u32, msg: Bytes),
    // ---- ABI 2: only present when `abi_version >= KV_ABI_VERSION` ----
    /// The value under `key` in this adapter's namespace goes to `out`: `STATUS_OK`, or
    /// `STATUS_ABSENT` (nothing written) if there is none; `STATUS_ERROR` with a message in
    /// `out`. Blocking (the store), like every key-value call.
    pub kv_get: unsafe extern "C" fn(ctx: *mut c_void, key: Bytes, out: Sink, out_ctx: *mut c_void) -> i32,
    /// Store `value` under `key`, durably before returning: `STATUS_OK`, or `STATUS_ERROR`
    /// with a message in `err`. Keys up to [`KV_MAX_KEY`], values up to [`KV_MAX_VALUE`] bytes.
    pub kv_put:
        unsafe extern "C" fn(ctx: *mut c_void, key: Bytes, value: Bytes, err: Sink, err_ctx: *mut c_void) -> i32,
    /// Compare-and-swap: store `value` under `key` if the stored value is `*expected`, or if
    /// there is none when `expected` is null; durably before returning. `STATUS_OK`: swapped;
    /// `STATUS_CONFLICT`: the stored value was another (nothing written: read it again and
    /// retry); `STATUS_ERROR` with a message in `err`. Linearizable per key, across every
    /// node that shares the store.
    pub kv_cas: unsafe extern "C" fn(
        ctx: *mut c_void,
        key: Bytes,
        expected: *const Bytes,
        value: Bytes,
        err: Sink,
        err_ctx: *mut c_void,
    ) -> i32,
}

/// What a plugin offers the daemon.
#[repr(C)]
pub struct Plugin {
    pub abi_version: u32,
    pub state: *mut c_void,
    /// Run operation `op` on a JSON request; the JSON answer (or an error message) goes to `out`.
    pub call:
        unsafe extern "C" fn(state: *mut c_void, op: Bytes, request: Bytes, out: Sink, out_ctx: *mut c_void) -> i32,
    /// Release the plugin's state (the host calls it at most once, at exit).
    pub destroy: unsafe extern "C" fn(state: *mut c_void),
}

pub type VersionFn = unsafe extern "C" fn() -> u32;
pub type EntryFn =
    unsafe extern "C" fn(host: *const Host, config: Bytes, err: Sink, err_ctx: *mut c_void) -> *const Plugin;

/// A sink that appends to a `Vec<u8>` passed as its context.
///
/// # Safety
/// `ctx` must be a valid `*mut Vec<u8>` and `ptr`/`len` readable bytes.
pub unsafe extern "C" fn vec_sink(ctx: *mut c_void, ptr: *const u8, len: usize) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: per the contract, ctx is a live Vec<u8> and ptr/len readable.
    unsafe {
        let v = &mut *(ctx as *mut Vec<u8>);
        v.extend_from_slice(Bytes { ptr, len }.as_slice());
    }
}

// ---- the Rust side of an adapter ----------------------------------------------------------

/// The daemon, as seen from a Rust adapter.
#[derive(Clone, Copy)]
pub struct HostHandle(*const Host);

// SAFETY: the host table lives for the process lifetime and its callbacks are thread-safe
// (ABI contract).
unsafe impl Send for HostHandle {}
// SAFETY: as above.
unsafe impl Sync for HostHandle {}

impl HostHandle {
    /// # Safety
    /// `host` must be the pointer the daemon passed to the entry function.
    pub unsafe fn new(host: *const Host) -> HostHandle {
        HostHandle(host)
    }

    fn host(&self) -> &Host {
        // SAFETY: set from the daemon's pointer, valid for the process lifetime. The table
        // is a whole `Host`: a host of an ABI older than 2 (a shorter table) refuses an
        // adapter built with this crate by its version before calling its entry.
        unsafe { &*self.0 }
    }

    /// DER signature over `tbs` by the daemon-held key `key`.
    pub fn sign(&self, key: &str, tbs: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let h = self.host();
        // SAFETY: borrowed buffers outlive the call; the sink writes into `out`.
        let rc = unsafe {
            (h.sign)(
                h.ctx,
                Bytes::from_slice(key.as_bytes()),
                Bytes::from_slice(tbs),
                vec_sink,
                &mut out as *mut Vec<u8> as *mut c_void,
            )
        };
        if rc == STATUS_OK { Ok(out) } else { Err(String::from_utf8_lossy(&out).into_owned()) }
    }

    /// DER SubjectPublicKeyInfo of the daemon-held key `key`.
    pub fn public_key(&self, key: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let h = self.host();
        // SAFETY: as in `sign`.
        let rc = unsafe {
            (h.public_key)(h.ctx, Bytes::from_slice(key.as_bytes()), vec_sink, &mut out as *mut Vec<u8> as *mut c_void)
        };
        if rc == STATUS_OK { Ok(out) } else { Err(String::from_utf8_lossy(&out).into_owned()) }
    }

    pub fn log(&self, level: u32, msg: &str) {
        let h = self.host();
        // SAFETY: the message outlives the call.
        unsafe { (h.log)(h.ctx, level, Bytes::from_slice(msg.as_bytes())) }
    }

    /// The host's key-value store for this adapter, if the host has one (ABI 2 and later).
    pub fn kv(&self) -> Option<Kv> {
        // SAFETY: the version is the first field of every ABI's table; read through the
        // pointer, so nothing is assumed of the fields after it.
        let version = unsafe { std::ptr::addr_of!((*self.0).abi_version).read() };
        (version >= KV_ABI_VERSION).then_some(Kv(*self))
    }
}

/// Byte values under byte keys, compare-and-swap per key: what an adapter keeps its state
/// in. [`Kv`] is the host's (durable, shared by the nodes on one database); [`MemoryKv`]
/// stands in for it in tests and in-process uses.
pub trait KeyValue: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Store `new` if the stored value is `expected` (`None`: none). `Ok(false)`: it was
    /// another, nothing was written.
    fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, String>;
}

/// The host's key-value calls for this adapter (namespaced by the host). Only made by
/// [`HostHandle::kv`], which checked that the host table has them.
#[derive(Clone, Copy)]
pub struct Kv(HostHandle);

fn message(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl KeyValue for Kv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let mut out = Vec::new();
        let h = self.0.host();
        // SAFETY: the table is of ABI 2 or later (checked in `HostHandle::kv`), so it has
        // `kv_get`; the key outlives the call and the sink writes into `out`.
        let rc =
            unsafe { (h.kv_get)(h.ctx, Bytes::from_slice(key), vec_sink, &mut out as *mut Vec<u8> as *mut c_void) };
        match rc {
            STATUS_OK => Ok(Some(out)),
            STATUS_ABSENT => Ok(None),
            _ => Err(message(&out)),
        }
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let mut err = Vec::new();
        let h = self.0.host();
        // SAFETY: as in `get`; the value outlives the call too.
        let rc = unsafe {
            (h.kv_put)(
                h.ctx,
                Bytes::from_slice(key),
                Bytes::from_slice(value),
                vec_sink,
                &mut err as *mut Vec<u8> as *mut c_void,
            )
        };
        if rc == STATUS_OK { Ok(()) } else { Err(message(&err)) }
    }

    fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, String> {
        let mut err = Vec::new();
        let h = self.0.host();
        let expected = expected.map(Bytes::from_slice);
        let expected_ptr = expected.as_ref().map_or(std::ptr::null(), |b| b as *const Bytes);
        // SAFETY: as in `put`; `expected_ptr` is null or points at `expected`, which lives
        // (with the bytes it borrows) until the call returns.
        let rc = unsafe {
            (h.kv_cas)(
                h.ctx,
                Bytes::from_slice(key),
                expected_ptr,
                Bytes::from_slice(new),
                vec_sink,
                &mut err as *mut Vec<u8> as *mut c_void,
            )
        };
        match rc {
            STATUS_OK => Ok(true),
            STATUS_CONFLICT => Ok(false),
            _ => Err(message(&err)),
        }
    }
}

/// A [`KeyValue`] in this process's memory, lost at exit: for adapters' tests and for
/// running an adapter's engine in process (never for state a daemon must keep).
#[derive(Default)]
pub struct MemoryKv(std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>);

impl MemoryKv {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KeyValue for MemoryKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.map().get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.map().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, String> {
        let mut map = self.map();
        if map.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        map.insert(key.to_vec(), new.to_vec());
        Ok(true)
    }
}

impl<T: KeyValue + ?Sized> KeyValue for std::sync::Arc<T> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        (**self).get(key)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        (**self).put(key, value)
    }
    fn cas(&self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, String> {
        (**self).cas(key, expected, new)
    }
}

/// An adapter implemented in Rust; [`export_adapter!`] turns it into the C ABI.
pub trait Adapter: Send + Sync + Sized + 'static {
    /// Build from the JSON config of the `[[plugins]]` entry.
    fn new(host: HostHandle, config: &[u8]) -> Result<Self, String>;
    /// Answer a JSON request; `Err` carries the message for the daemon's log.
    fn call(&self, op: &str, request: &[u8]) -> Result<Vec<u8>, CallError>;
}

pub enum CallError {
    Unsupported,
    Failed(String),
}

/// Hand `bytes` to a sink.
///
/// # Safety
/// `sink`/`ctx` must be what the other side passed for this call.
pub unsafe fn emit(sink: Sink, ctx: *mut c_void, bytes: &[u8]) {
    // SAFETY: the sink copies the borrowed bytes before returning.
    unsafe { sink(ctx, bytes.as_ptr(), bytes.len()) }
}

/// Generate `mcs_plugin_abi_version` and `mcs_plugin_entry` for an [`Adapter`] type.
/// Every entry into adapter code is wrapped in `catch_unwind`: a panic becomes
/// `STATUS_ERROR`, never an unwind across the boundary.
#[macro_export]
macro_rules! export_adapter {
    ($ty:ty) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn mcs_plugin_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        unsafe extern "C" fn __mcs_call(
            state: *mut ::std::ffi::c_void,
            op: $crate::Bytes,
            request: $crate::Bytes,
            out: $crate::Sink,
            out_ctx: *mut ::std::ffi::c_void,
        ) -> i32 {
            let result = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
                // SAFETY: `state` is the adapter created by the entry; op/request are
                // borrowed for the call (ABI contract).
                let adapter = unsafe { &*(state as *const $ty) };
                let op = unsafe { op.as_slice() };
                let request = unsafe { request.as_slice() };
                match ::std::str::from_utf8(op) {
                    Ok(op) => <$ty as $crate::Adapter>::call(adapter, op, request),
                    Err(_) => Err($crate::CallError::Failed("operation name is not UTF-8".into())),
                }
            }));
            // SAFETY: out/out_ctx are the host's sink for this call.
            unsafe {
                match result {
                    Ok(Ok(answer)) => {
                        $crate::emit(out, out_ctx, &answer);
                        $crate::STATUS_OK
                    }
                    Ok(Err($crate::CallError::Unsupported)) => $crate::STATUS_UNSUPPORTED,
                    Ok(Err($crate::CallError::Failed(msg))) => {
                        $crate::emit(out, out_ctx, msg.as_bytes());
                        $crate::STATUS_ERROR
                    }
                    Err(_) => {
                        $crate::emit(out, out_ctx, b"adapter panicked");
                        $crate::STATUS_ERROR
                    }
                }
            }
        }

        unsafe extern "C" fn __mcs_destroy(state: *mut ::std::ffi::c_void) {
            let _ = ::std::panic::catch_unwind(|| {
                // SAFETY: `state` came from Box::into_raw in the entry and is destroyed once.
                drop(unsafe { Box::from_raw(state as *mut $ty) });
            });
        }

        /// # Safety
        /// Called by the daemon with a host table valid for the process lifetime.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn mcs_plugin_entry(
            host: *const $crate::Host,
            config: $crate::Bytes,
            err: $crate::Sink,
            err_ctx: *mut ::std::ffi::c_void,
        ) -> *const $crate::Plugin {
            let made = ::std::panic::catch_unwind(|| {
                // SAFETY: the daemon's host pointer and borrowed config (ABI contract).
                let handle = unsafe { $crate::HostHandle::new(host) };
                <$ty as $crate::Adapter>::new(handle, unsafe { config.as_slice() })
            });
            match made {
                Ok(Ok(adapter)) => {
                    let table = $crate::Plugin {
                        abi_version: $crate::ABI_VERSION,
                        state: Box::into_raw(Box::new(adapter)) as *mut ::std::ffi::c_void,
                        call: __mcs_call,
                        destroy: __mcs_destroy,
                    };
                    Box::into_raw(Box::new(table))
                }
                Ok(Err(msg)) => {
                    // SAFETY: the daemon's error sink.
                    unsafe { $crate::emit(err, err_ctx, msg.as_bytes()) };
                    ::std::ptr::null()
                }
                Err(_) => {
                    // SAFETY: as above.
                    unsafe { $crate::emit(err, err_ctx, b"adapter panicked during initialisation") };
                    ::std::ptr::null()
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    //! The Rust helper against a fake host table: what crosses the boundary and back.

    use super::*;

    /// The fake host's context: its store, or a store that fails every call.
    struct Fake {
        kv: MemoryKv,
        fail: bool,
    }

    fn fake(ctx: *mut c_void) -> &'static Fake {
        // SAFETY: every table below is made with a leaked `Fake` as its context.
        unsafe { &*(ctx as *const Fake) }
    }

    unsafe extern "C" fn no_sign(_: *mut c_void, _: Bytes, _: Bytes, _: Sink, _: *mut c_void) -> i32 {
        STATUS_UNSUPPORTED
    }
    unsafe extern "C" fn no_key(_: *mut c_void, _: Bytes, _: Sink, _: *mut c_void) -> i32 {
        STATUS_UNSUPPORTED
    }
    unsafe extern "C" fn no_log(_: *mut c_void, _: u32, _: Bytes) {}

    unsafe extern "C" fn get(ctx: *mut c_void, key: Bytes, out: Sink, out_ctx: *mut c_void) -> i32 {
        let f = fake(ctx);
        // SAFETY: the key is borrowed for the call; `out` is the caller's sink.
        unsafe {
            if f.fail {
                emit(out, out_ctx, b"store down");
                return STATUS_ERROR;
            }
            match f.kv.get(key.as_slice()).unwrap() {
                Some(v) => {
                    emit(out, out_ctx, &v);
                    STATUS_OK
                }
                None => STATUS_ABSENT,
            }
        }
    }

    unsafe extern "C" fn put(ctx: *mut c_void, key: Bytes, value: Bytes, err: Sink, err_ctx: *mut c_void) -> i32 {
        let f = fake(ctx);
        // SAFETY: as in `get`.
        unsafe {
            if f.fail {
                emit(err, err_ctx, b"store down");
                return STATUS_ERROR;
            }
            f.kv.put(key.as_slice(), value.as_slice()).unwrap();
        }
        STATUS_OK
    }

    unsafe extern "C" fn cas(
        ctx: *mut c_void,
        key: Bytes,
        expected: *const Bytes,
        value: Bytes,
        err: Sink,
        err_ctx: *mut c_void,
    ) -> i32 {
        let f = fake(ctx);
        // SAFETY: as in `get`; `expected` is null or a live `Bytes` for the call.
        unsafe {
            if f.fail {
                emit(err, err_ctx, b"store down");
                return STATUS_ERROR;
            }
            let expected = expected.as_ref().map(|b| b.as_slice());
            if f.kv.cas(key.as_slice(), expected, value.as_slice()).unwrap() { STATUS_OK } else { STATUS_CONFLICT }
        }
    }

    fn host(abi_version: u32, fail: bool) -> HostHandle {
        let ctx = Box::into_raw(Box::new(Fake { kv: MemoryKv::default(), fail })) as *mut c_void;
        let table = Box::into_raw(Box::new(Host {
            abi_version,
            ctx,
            sign: no_sign,
            public_key: no_key,
            log: no_log,
            kv_get: get,
            kv_put: put,
            kv_cas: cas,
        }));
        // SAFETY: a leaked table, valid for the rest of the test process.
        unsafe { HostHandle::new(table) }
    }

    #[test]
    fn kv_round_trips_through_the_table() {
        let kv = host(ABI_VERSION, false).kv().expect("an ABI 2 host has a store");
        assert_eq!(kv.get(b"k").unwrap(), None, "absent is not an empty value");
        kv.put(b"k", b"").unwrap();
        assert_eq!(kv.get(b"k").unwrap(), Some(Vec::new()));
        assert!(kv.cas(b"n", None, b"one").unwrap(), "absent → value");
        assert!(!kv.cas(b"n", None, b"two").unwrap(), "absent expected, a value stored");
        assert!(!kv.cas(b"n", Some(b"two"), b"three").unwrap(), "a stale value loses");
        assert!(kv.cas(b"n", Some(b"one"), b"two").unwrap());
        assert_eq!(kv.get(b"n").unwrap().as_deref(), Some(&b"two"[..]));
    }

    #[test]
    fn errors_come_back_as_the_hosts_message() {
        let kv = host(ABI_VERSION, true).kv().unwrap();
        assert_eq!(kv.get(b"k").unwrap_err(), "store down");
        assert_eq!(kv.put(b"k", b"v").unwrap_err(), "store down");
        assert_eq!(kv.cas(b"k", None, b"v").unwrap_err(), "store down");
    }

    #[test]
    fn a_host_of_abi_1_has_no_store() {
        assert!(host(1, false).kv().is_none());
    }
}
