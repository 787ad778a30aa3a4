//! Claims an ABI version no host speaks (`u32::MAX`) and would crash a host that called its
//! entry anyway: the host must read the version first and refuse it.
// The C ABI is this crate's purpose: every `unsafe` block in it carries a SAFETY note.
#![allow(unsafe_code)]

#[unsafe(no_mangle)]
pub extern "C" fn mcs_plugin_abi_version() -> u32 {
    u32::MAX
}

#[unsafe(no_mangle)]
pub extern "C" fn mcs_plugin_entry() -> *const u8 {
    std::process::abort()
}
