//! Withdrawing a seal (撤章): the document before its last revision, byte for byte, found
//! through the cross-reference chain, and the signature that revision added.

mod common;

use common::{qpdf_check, seal};
use mcs_pdfseal::pdf::{Placement, last_revision_signature, previous_revision, sample_document};

/// `pdf` with one more, unsigned revision: an uncompressed stream object whose data look
/// like the end of a revision (`startxref`, the previous offset, `%%EOF`), and a
/// cross-reference table. A withdrawal that searched for markers would cut inside it.
fn append_decoy_revision(pdf: &[u8]) -> Vec<u8> {
    let doc = lopdf::Document::load_mem(pdf).unwrap();
    let text = String::from_utf8_lossy(pdf);
    let at = text.rfind("startxref").unwrap();
    let prev: usize = text[at + 9..].split_whitespace().next().unwrap().parse().unwrap();
    let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
    let id = doc.max_id + 1;
    let data = format!("%%EOF\nstartxref\n{prev}\n%%EOF\r\n");
    let mut out = pdf.to_vec();
    let obj_at = out.len();
    out.extend_from_slice(
        format!("{id} 0 obj\n<</Length {}>>stream\n{data}\nendstream\nendobj\n", data.len()).as_bytes(),
    );
    let xref_at = out.len();
    out.extend_from_slice(
        format!(
            "xref\n{id} 1\n{obj_at:010} 00000 n\r\ntrailer\n<</Size {} /Root {} {} R /Prev {prev}>>\nstartxref\n{xref_at}\n%%EOF\n",
            id + 1,
            root.0,
            root.1
        )
        .as_bytes(),
    );
    out
}

#[test]
fn withdrawing_peels_one_signing_revision_at_a_time() {
    for xref_stream in [false, true] {
        let original = sample_document(2, xref_stream);
        let once = seal(&original, &Placement::At { page: 1, x: 200.0, y: 300.0 }, "Seal1");
        let twice = seal(&once, &Placement::Keyword { keyword: "Bidder seal here".into(), occurrence: 1 }, "Seal2");

        let last = last_revision_signature(&twice).unwrap().expect("the last revision signs");
        assert_eq!(last.field.as_deref(), Some("Seal2"));
        assert_eq!(last.byte_range[2] + last.byte_range[3], twice.len());
        let back = previous_revision(&twice).unwrap();
        assert_eq!(back, once, "xref stream: {xref_stream}");
        assert_eq!(last_revision_signature(&back).unwrap().and_then(|f| f.field).as_deref(), Some("Seal1"));
        let first = previous_revision(&back).unwrap();
        assert_eq!(first, original);
        assert!(last_revision_signature(&first).unwrap().is_none(), "the original is not signed");
        let e = previous_revision(&first).unwrap_err();
        assert!(e.to_string().contains("single revision"), "{e}");
        for pdf in [&back, &first] {
            qpdf_check(pdf);
        }

        // Trailing white space and garbage after the last %%EOF change nothing.
        let mut padded = twice.clone();
        padded.extend_from_slice(b"\r\n \0garbage %%EO");
        assert_eq!(previous_revision(&padded).unwrap(), once);
        assert_eq!(last_revision_signature(&padded).unwrap().and_then(|f| f.field).as_deref(), Some("Seal2"));
    }
}

#[test]
fn a_last_revision_that_is_not_a_signature_is_told_apart() {
    let original = sample_document(1, false);
    let sealed = seal(&original, &Placement::At { page: 1, x: 200.0, y: 300.0 }, "Seal1");
    let updated = append_decoy_revision(&sealed);
    qpdf_check(&updated);
    assert!(last_revision_signature(&updated).unwrap().is_none(), "the seal no longer covers the whole file");
    assert_eq!(
        previous_revision(&updated).unwrap(),
        sealed,
        "the markers inside the stream are not the revision's end"
    );
    // A revision whose end of line is CRLF keeps it.
    let crlf = [&sealed[..sealed.len() - 1], b"\r\n"].concat();
    let updated = append_decoy_revision(&crlf);
    assert_eq!(previous_revision(&updated).unwrap(), crlf);
}
