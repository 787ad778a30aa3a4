//! Fuzz target: GM/T 0009 DER — SM2 ciphertexts (`Ciphertext::parse`, DER or C1‖C3‖C2) and
//! signatures (`Signature::from_der`). The readers are strict, so whatever they accept
//! re-encodes to an equal value, and a DER signature to the very same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sm2_2p::{Ciphertext, Signature};

fuzz_target!(|data: &[u8]| {
    if let Ok(ct) = Ciphertext::parse(data) {
        assert_eq!(Ciphertext::parse(&ct.to_der()).as_ref(), Ok(&ct));
        assert_eq!(Ciphertext::parse(&ct.to_c1c3c2()).as_ref(), Ok(&ct));
        if data.first() == Some(&0x30) {
            assert_eq!(ct.to_der(), data, "strict DER has one encoding");
        }
    }
    if let Ok(sig) = Signature::from_der(data) {
        assert_eq!(sig.to_der(), data, "strict DER has one encoding");
    }
});
