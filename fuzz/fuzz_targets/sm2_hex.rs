//! Fuzz target: points, scalars and digests from their wire encodings (hex and SEC1), and
//! the stored share blobs. What decodes must encode back to the same value, in lowercase.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = sm2_2p::point_from_sec1(data) {
        assert_eq!(sm2_2p::point_to_sec1(&p).as_slice(), data);
    }
    let _ = sm2_2p::ServerShare::from_bytes(data);
    let _ = sm2_2p::DaemonKey::from_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = sm2_2p::point_from_hex(text) {
        assert_eq!(sm2_2p::point_to_hex(&p), text.to_ascii_lowercase());
    }
    if let Ok(s) = sm2_2p::scalar_from_hex(text) {
        assert_eq!(sm2_2p::scalar_to_hex(&s), text.to_ascii_lowercase());
    }
    if let Ok(d) = sm2_2p::digest_from_hex(text) {
        assert_eq!(hex_lower(&d), text.to_ascii_lowercase());
    }
});

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
