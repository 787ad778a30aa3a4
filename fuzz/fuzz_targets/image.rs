//! Fuzz target: seal pictures (`image::from_picture`), PNG and JPEG, as `POST /v1/seals`
//! and PDF sealing read them. An accepted picture has a size and pixel data.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in ["PNG", "JPEG"] {
        if let Ok(img) = mcs_pdfseal::image::from_picture(kind, data) {
            assert!(img.width > 0 && img.height > 0, "{kind}: {}x{}", img.width, img.height);
        }
    }
});
