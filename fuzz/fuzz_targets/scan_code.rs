//! Fuzz target: the task QR string a phone scans (`mcs_api::ScanCode::parse`, through the client).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = mcs_client::phone::ScanCode::parse(text);
});
