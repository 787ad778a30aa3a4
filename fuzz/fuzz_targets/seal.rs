//! Fuzz target: GB/T 38540 `SESeal` DER, as `POST /v1/verify/seal` and PDF verification
//! read it: `seal::parse`, `seal::verify` (format and maker's signature), `signed_part`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcs_pdfseal::seal;

fuzz_target!(|data: &[u8]| {
    if seal::parse(data).is_err() {
        return;
    }
    let _ = seal::verify(data);
    let _ = seal::signed_part(data);
});
