//! What the integration tests share: qpdf as the independent judge of structure, and a
//! seal applied with a dummy signature container.

#![allow(dead_code)] // Each test binary uses its own part.

use mcs_pdfseal::image::{demo_seal_png, from_picture};
use mcs_pdfseal::pdf::{Appearance, Placement, SignatureFields, prepare};

/// `qpdf --check` on the bytes: its report, or a panic with it when qpdf finds errors.
pub fn qpdf_check(pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("pdfseal-{}-{}", std::process::id(), pdf.len()));
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("qpdf")
        .arg("--check")
        .arg(&path)
        .output()
        .expect("qpdf (cargo xtask test installs it)");
    let _ = std::fs::remove_file(&path);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "qpdf --check failed:\n{text}");
    text
}

/// A stand-in CMS container: what is embedded, not what a verifier would accept.
pub const DUMMY_CONTAINER: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x07];

/// `pdf` with one more signing revision: the demo seal picture at `placement`, field `field`.
pub fn seal(pdf: &[u8], placement: &Placement, field: &str) -> Vec<u8> {
    let image = from_picture("PNG", &demo_seal_png(64)).unwrap();
    let look = Appearance { image: &image, width_pt: 100.0, height_pt: 100.0 };
    let fields = SignatureFields {
        field_name: field,
        signer_name: "Zhang San",
        reason: "bid",
        signing_time: 1_795_392_000,
        reserve: 4096,
    };
    prepare(pdf, placement, &look, &fields).unwrap().embed(&DUMMY_CONTAINER).unwrap()
}
