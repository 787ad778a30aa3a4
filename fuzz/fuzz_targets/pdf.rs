//! Fuzz target: PDF documents as the daemon reads them — `pdf::signatures` (verification,
//! `POST /v1/verify/pdf`) and `pdf::prepare` (a `pdf_seal` task's claim) with a fixed
//! picture and one of the kinds of placement, chosen by the input's length (bytes after
//! `%%EOF` change nothing else, so the fuzzer reaches every kind from any document; one
//! `prepare` per input keeps the target fast). Sealing never rewrites: a prepared
//! revision starts with the original bytes, and the placeholder takes a container.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcs_pdfseal::image::{PdfImage, demo_seal_png, from_picture};
use mcs_pdfseal::pdf::{self, Appearance, Placement, Side, SignatureFields};

fn picture() -> &'static PdfImage {
    static IMAGE: OnceLock<PdfImage> = OnceLock::new();
    IMAGE.get_or_init(|| from_picture("PNG", &demo_seal_png(16)).expect("the demo seal is a PNG"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(found) = pdf::signatures(data) {
        for f in &found {
            let _ = f.signed_ranges(data);
        }
    }
    let look = Appearance { image: picture(), width_pt: 60.0, height_pt: 60.0 };
    let fields = SignatureFields {
        field_name: "Seal1",
        signer_name: "Zhang San",
        reason: "fuzz",
        signing_time: 1_795_392_000,
        reserve: 256,
    };
    let placements = [
        Placement::At { page: 1, x: 300.0, y: 400.0 },
        Placement::Keyword { keyword: "seal here".into(), occurrence: 1 },
        Placement::Pages { pages: vec![1, 2], x: 100.0, y: 100.0 },
        Placement::CrossPage { side: Side::Right, y: None },
    ];
    let placement = &placements[data.len() % placements.len()];
    let Ok(prepared) = pdf::prepare(data, placement, &look, &fields) else { return };
    let [head, _] = prepared.signed_ranges();
    assert!(head.starts_with(data), "the original bytes are a prefix of the revision");
    prepared.embed(&[0x30, 0x03, 0x02, 0x01, 0x07]).expect("a 5-byte container fits the placeholder");
});
