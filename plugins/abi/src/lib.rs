//! The versioned C ABI between mcsd and CA adapter plugins (see `include/mcs_plugin.h`,
//! the same contract for adapters written in C or Go).
//!
//! Only `#[repr(C)]` types and byte buffers cross the boundary, and no allocation ever
//! changes hands: whoever produces bytes hands them to a [`Sink`] of the consumer, which
//! copies them before returning. Requests and answers are UTF-8 JSON documents, so
//! operations can grow without breaking the ABI.
//!
//! A plugin exports two symbols:
//! - `mcs_plugin_abi_version() -> u32` — read first; the host refuses a mismatch;
//! - `mcs_plugin_entry(host, config, err_sink, err_ctx) -> *const Plugin` — called once.
//!
//! Operations (`Plugin::call`): `describe`, `issue`, `revoke`, `status`, `crl`. An adapter
//! never opens the HSM: it asks the host to sign with a daemon-held key (`Host::sign`).
//!
//! Rust adapters implement [`Adapter`] and call [`export_adapter!`], which generates both
//! exports with `catch_unwind` around every entry into adapter code.
// The C ABI is this crate's purpose: every `unsafe` block in it carries a SAFETY note.
#![allow(unsafe_code)]

use std::ffi::c_void;

/// The ABI version this crate describes.
pub const ABI_VERSION: u32 = 1;
pub const VERSION_SYMBOL: &[u8] = b"mcs_plugin_abi_version\0";
pub const ENTRY_SYMBOL: &[u8] = b"mcs_plugin_entry\0";

/// Status codes returned across the boundary.
pub const STATUS_OK: i32 = 0;
/// The operation failed; a UTF-8 message was written to the sink.
pub const STATUS_ERROR: i32 = 1;
/// The operation is not supported by this adapter.
pub const STATUS_UNSUPPORTED: i32 = 2;

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

/// What the daemon offers a plugin. Valid for the life of the process; callable from any thread.
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
        // SAFETY: set from the daemon's pointer, valid for the process lifetime.
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
