//! Fuzz target: the daemon's JSON request bodies, decoded and validated per route as the
//! API does before any domain call (`mcsd::api::fuzz::decode`).
//!
//! Input: a route name from `mcsd::api::fuzz::ROUTES`, a newline, then the body. A text
//! prefix rather than an index byte, so seeds stay readable and keep their meaning when
//! routes are added.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else { return };
    let Ok(route) = std::str::from_utf8(&data[..newline]) else { return };
    mcsd::api::fuzz::decode(route, &data[newline + 1..]);
});
