//! Claims ABI version 2 and would crash a host that called its entry with a v1 table: the
//! host must read the version first and refuse it.
// The C ABI is this crate's purpose: every `unsafe` block in it carries a SAFETY note.
#![allow(unsafe_code)]

#[unsafe(no_mangle)]
pub extern "C" fn mcs_plugin_abi_version() -> u32 {
    2
}

#[unsafe(no_mangle)]
pub extern "C" fn mcs_plugin_entry() -> *const u8 {
    std::process::abort()
}
