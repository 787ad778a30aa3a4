//! Fuzz target: the CMS `SignedData` of a PDF signature's `/Contents` (`cms::parse`,
//! trailing zero padding allowed), and the signer certificate's SM2 key it names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = mcs_pdfseal::cms::parse(data) {
        let _ = mcs_pdfseal::sm2_public_key_of(&parsed.signer_certificate);
        if let Some(seal) = &parsed.seal {
            let _ = mcs_pdfseal::seal::parse(seal);
        }
    }
});
