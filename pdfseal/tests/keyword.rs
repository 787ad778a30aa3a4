//! Keyword placement on a Chinese PDF: a Type0 font with `/Identity-H` codes, a
//! CIDFontType2 descendant with `/W`, and a `/ToUnicode` CMap, built here by hand (no font
//! program is needed to find text). The expected centres are worked out in the comments.

mod common;

use common::{qpdf_check, seal};
use lopdf::{Document, Object, Stream, dictionary};
use mcs_pdfseal::pdf::{Placement, keyword_centre, sample_document};

const TO_UNICODE: &str = "/CIDInit /ProcSet findresource begin
12 dict begin
begincmap
/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
/CMapName /Adobe-Identity-UCS def
/CMapType 2 def
1 begincodespacerange
<0000> <FFFF>
endcodespacerange
4 beginbfchar
<0001> <6295>
<0002> <6807>
<0003> <4EBA>
<0007> <D840DC00>
endbfchar
2 beginbfrange
<0004> <0005> [<76D6> <7AE0>]
<0006> <0006> <5904>
endbfrange
1 beginbfrange
<0008> <0009> <0041>
endbfrange
endcmap
CMapName currentdict /CMap defineresource pop
end
end
";

/// Line 1 (12 pt at (100, 700), moved by (50, 60)): 投标人 with `Tj`, then 盖章处 with `TJ`
/// and a kern of −500 (6 pt more) before 章. Widths: 1–3 are 1000, 4–6 are 800.
/// Line 2 (scaled by 2; 10 pt, `TL` 14, `Tc` 2, `Tz` 50): 𠀀AB盖 then 章处, one line down
/// from (50, 200). Widths: 7 is 1000, 8–9 are 500.
const CONTENT: &str = "q 1 0 0 1 50 60 cm
BT /F1 12 Tf 1 0 0 1 100 700 Tm <000100020003> Tj [<0004> -500 <00050006>] TJ ET
Q
q 2 0 0 2 0 0 cm
BT /F1 10 Tf 14 TL 50 200 Td 2 Tc 50 Tz T* <0007000800090004> Tj <00050006> Tj ET
Q
";

fn cid_document() -> Vec<u8> {
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let descriptor = doc.add_object(dictionary! {
        "Type" => "FontDescriptor",
        "FontName" => "SimSun",
        "Flags" => 4,
        "FontBBox" => vec![0.into(), (-120).into(), 1000.into(), 880.into()],
        "ItalicAngle" => 0,
        "Ascent" => 880,
        "Descent" => -120,
        "CapHeight" => 700,
        "StemV" => 80,
    });
    let widths: Vec<Object> = vec![
        1.into(),
        vec![1000.into(), 1000.into(), 1000.into()].into(),
        4.into(),
        6.into(),
        800.into(),
        7.into(),
        vec![1000.into(), 500.into(), 500.into()].into(),
    ];
    let cid_font = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "CIDFontType2",
        "BaseFont" => "SimSun",
        "CIDSystemInfo" => dictionary! {
            "Registry" => Object::string_literal("Adobe"),
            "Ordering" => Object::string_literal("Identity"),
            "Supplement" => 0,
        },
        "FontDescriptor" => descriptor,
        "DW" => 1000,
        "W" => widths,
        "CIDToGIDMap" => "Identity",
    });
    let to_unicode = doc.add_object(Stream::new(dictionary! {}, TO_UNICODE.as_bytes().to_vec()));
    let font = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type0",
        "BaseFont" => "SimSun",
        "Encoding" => "Identity-H",
        "DescendantFonts" => vec![cid_font.into()],
        "ToUnicode" => to_unicode,
    });
    let content = doc.add_object(Stream::new(dictionary! {}, CONTENT.as_bytes().to_vec()));
    let page = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => content,
        "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![page.into()],
            "Count" => 1,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn assert_near((page, x, y): (u32, f64, f64), want: (u32, f64, f64)) {
    assert_eq!(page, want.0);
    assert!((x - want.1).abs() < 0.01 && (y - want.2).abs() < 0.01, "({x}, {y}) is not {want:?}");
}

#[test]
fn keywords_in_a_cid_font_are_found_at_their_centre_in_user_space() {
    let pdf = cid_document();
    qpdf_check(&pdf);
    // 盖 at 136 (after three 12 pt glyphs), 9.6 wide; 章 at 145.6 + 6 = 151.6; 处 ends at
    // 170.8. Height: 700 − 0.12·12 to 700 + 0.88·12. Then the cm moves it by (50, 60).
    assert_near(
        keyword_centre(&pdf, "盖章处", 1).unwrap(),
        (1, 50.0 + (136.0 + 170.8) / 2.0, 60.0 + 700.0 + 0.38 * 12.0),
    );
    assert_near(keyword_centre(&pdf, "投标人 盖章处", 1).unwrap(), (1, 50.0 + (100.0 + 170.8) / 2.0, 764.56));
    // Line 2 starts at (50, 186) in text space. Each advance is (w·10 + 2)·0.5: 𠀀 6, A
    // and B 3.5; 盖 at 63 (4 wide), 章 at 68, 处 at 73 to 77. All doubled by the cm.
    let line2_y = 2.0 * (186.0 + 0.38 * 10.0);
    assert_near(keyword_centre(&pdf, "盖章处", 2).unwrap(), (1, 63.0 + 77.0, line2_y));
    assert_near(keyword_centre(&pdf, "\u{20000}AB", 1).unwrap(), (1, 50.0 + 62.0, line2_y));
    assert!(keyword_centre(&pdf, "盖章处", 3).is_err());
    assert!(keyword_centre(&pdf, "  ", 1).is_err());

    // Sealing on the keyword centres the widget there, and the result is sound.
    let sealed = seal(&pdf, &Placement::Keyword { keyword: "盖章处".into(), occurrence: 1 }, "Seal1");
    qpdf_check(&sealed);
    let doc = Document::load_mem(&sealed).unwrap();
    let rect: Vec<f64> = doc
        .objects
        .values()
        .filter_map(|o| o.as_dict().ok())
        .find(|d| d.get(b"Subtype").and_then(Object::as_name).is_ok_and(|n| n == b"Widget"))
        .and_then(|d| d.get(b"Rect").ok())
        .and_then(|r| r.as_array().ok())
        .unwrap()
        .iter()
        .map(|v| v.as_float().unwrap() as f64)
        .collect();
    assert_near((1, (rect[0] + rect[2]) / 2.0, (rect[1] + rect[3]) / 2.0), (1, 203.4, 764.56));
}

#[test]
fn keywords_in_a_simple_font_are_still_found() {
    let pdf = sample_document(2, false);
    // "Signed for the bidder: " is 23 glyphs of half an em at 12 pt before the keyword,
    // which is 16 glyphs wide; the box is 0.2 em below and 0.8 em above the baseline.
    assert_near(keyword_centre(&pdf, "Bidder seal here", 1).unwrap(), (2, 72.0 + (23.0 + 8.0) * 6.0, 200.0 + 3.6));
    // "page 2 of 2" (11 glyphs, 14 pt) after "Tender document, " (17), spaces ignored.
    assert_near(keyword_centre(&pdf, "page2of2", 1).unwrap(), (2, 72.0 + (17.0 + 5.5) * 7.0, 760.0 + 4.2));
}
