//! Fuzz target: the daemon's TOML configuration (`Config::parse`: deserialize, then
//! validate into types), as `mcsd run` and `mcsd check-config` read it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = mcsd::config::Config::parse(text, std::path::Path::new("/etc/mcsd"));
});
