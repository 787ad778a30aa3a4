//! UniFFI's generator, built only with the `bindgen` feature: `uniffi-bindgen generate
//! --library <libmcs_phone_ffi.so> --language kotlin|swift|python --out-dir DIR` writes the
//! bindings of this crate from the built cdylib (library mode; see `phone-ffi/README.md`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
