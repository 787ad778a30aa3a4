//! The incremental-update structure, checked by qpdf: four revisions on a table-xref file
//! and on an xref-stream file; the original bytes are a prefix of every revision.

mod common;

use common::qpdf_check;
use mcs_pdfseal::image::{demo_seal_png, from_picture};
use mcs_pdfseal::pdf::{Appearance, Placement, Side, SignatureFields, prepare, sample_document, signatures};

#[test]
fn four_seals_append_four_revisions_that_qpdf_accepts() {
    let image = from_picture("PNG", &demo_seal_png(64)).unwrap();
    let look = Appearance { image: &image, width_pt: 100.0, height_pt: 100.0 };
    for xref_stream in [false, true] {
        let original = sample_document(3, xref_stream);
        let mut pdf = original.clone();
        let placements = [
            Placement::At { page: 1, x: 300.0, y: 400.0 },
            Placement::Keyword { keyword: "Bidder seal here".into(), occurrence: 1 },
            Placement::CrossPage { side: Side::Right, y: None },
            Placement::Pages { pages: vec![1, 3, 3], x: 120.0, y: 120.0 },
        ];
        for (i, placement) in placements.iter().enumerate() {
            let before = pdf.clone();
            let fields = SignatureFields {
                field_name: &format!("Seal{}", i + 1),
                signer_name: "Zhang San",
                reason: "bid",
                signing_time: 1_795_392_000,
                reserve: 4096,
            };
            let prepared = prepare(&pdf, placement, &look, &fields).unwrap();
            let [a, b] = prepared.signed_ranges();
            assert!(a.starts_with(&before), "earlier revisions are never rewritten");
            assert!(b.ends_with(b"%%EOF\n"));
            pdf = prepared.embed(&[0x30, 0x03, 0x02, 0x01, 0x07]).unwrap();
            assert!(pdf.starts_with(&before));
        }
        let text = qpdf_check(&pdf);
        assert!(text.contains("No syntax or stream encoding errors"), "{text}");
        let found = signatures(&pdf).unwrap();
        assert_eq!(found.len(), 4);
        assert_eq!(
            found.iter().map(|f| f.field.clone().unwrap()).collect::<Vec<_>>(),
            ["Seal1", "Seal2", "Seal3", "Seal4"]
        );
        assert_eq!(found.iter().map(|f| f.covers_whole_document).collect::<Vec<_>>(), [false, false, false, true]);
        // The multi-page seal has one widget per distinct page, all of one field.
        let doc = lopdf::Document::load_mem(&pdf).unwrap();
        let widgets_of = |field: &str| {
            doc.objects
                .values()
                .filter_map(|o| o.as_dict().ok())
                .filter(|d| {
                    d.get(b"Parent")
                        .and_then(|p| p.as_reference())
                        .ok()
                        .and_then(|p| doc.get_dictionary(p).ok())
                        .and_then(|p| p.get(b"T").ok())
                        .and_then(|t| lopdf::decode_text_string(t).ok())
                        .as_deref()
                        == Some(field)
                })
                .count()
        };
        assert_eq!(widgets_of("Seal4"), 2);
        assert_eq!(widgets_of("Seal3"), 3, "one strip per page");
        assert!(found.iter().all(|f| f.range_ok && f.contents.starts_with(&[0x30, 0x03, 0x02, 0x01, 0x07])));
    }
}

#[test]
fn bad_placements_are_refused_before_anything_is_written() {
    let image = from_picture("PNG", &demo_seal_png(16)).unwrap();
    let look = Appearance { image: &image, width_pt: 50.0, height_pt: 50.0 };
    let fields = SignatureFields { field_name: "S", signer_name: "x", reason: "r", signing_time: 0, reserve: 1024 };
    let one_page = sample_document(1, false);
    for placement in [
        Placement::At { page: 2, x: 1.0, y: 1.0 },
        Placement::Keyword { keyword: "absent words".into(), occurrence: 1 },
        Placement::CrossPage { side: Side::Left, y: None },
        Placement::Pages { pages: vec![], x: 1.0, y: 1.0 },
    ] {
        assert!(prepare(&one_page, &placement, &look, &fields).is_err(), "{placement:?}");
    }
    assert!(prepare(b"not a pdf", &Placement::At { page: 1, x: 0.0, y: 0.0 }, &look, &fields).is_err());
}
