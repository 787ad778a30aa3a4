//! The text a page shows, glyph by glyph, and where each glyph stands in default user
//! space: what placing a seal on a keyword (盖章处) needs.
//!
//! The page's content stream is interpreted as far as positions go: the graphics state
//! stack (`q`, `Q`) with the current transformation matrix (`cm`), the text state (`Tf`,
//! `Tc`, `Tw`, `Tz`, `TL`, `Ts`), text positioning (`BT`, `Tm`, `Td`, `TD`, `T*`) and the
//! text-showing operators (`Tj`, `TJ`, `'`, `"`). A glyph's advance comes from the font's
//! widths: `/W` (and `/DW`, else 1000) of a CID font, `/Widths` (and `/MissingWidth`,
//! else half an em, about a Latin glyph, as the standard 14 fonts carry no widths) of a
//! simple font; its height from the font descriptor's `/Ascent` and `/Descent`.
//!
//! Codes become text through the font's `/ToUnicode` CMap (`bfchar` and `bfrange`, ranges
//! onto one destination or onto an array, UTF-16BE destinations with surrogate pairs);
//! without one, a simple font's byte through its encoding. A Type0 font reads 2-byte
//! codes under `/Identity-H` or `/Identity-V` (the CID is the code; `-V` is measured as
//! if horizontal) and under other CMaps by the code space of its `/ToUnicode`; a UCS-2
//! CMap's codes are their own text. Text drawn inside form XObjects is not read.

use std::collections::HashMap;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::pdf::num;

/// `[a b c d e f]`: x' = a·x + c·y + e, y' = b·x + d·y + f (PDF's row-vector convention).
type Matrix = [f64; 6];

const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// `m` then `n`.
fn mul(m: &Matrix, n: &Matrix) -> Matrix {
    [
        m[0] * n[0] + m[1] * n[2],
        m[0] * n[1] + m[1] * n[3],
        m[2] * n[0] + m[3] * n[2],
        m[2] * n[1] + m[3] * n[3],
        m[4] * n[0] + m[5] * n[2] + n[4],
        m[4] * n[1] + m[5] * n[3] + n[5],
    ]
}

fn apply(m: &Matrix, x: f64, y: f64) -> (f64, f64) {
    (m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5])
}

fn translate(x: f64, y: f64) -> Matrix {
    [1.0, 0.0, 0.0, 1.0, x, y]
}

/// One glyph shown: its text (empty when unknown) and its box in default user space,
/// `[x0, y0, x1, y1]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Glyph {
    pub text: String,
    pub bbox: [f64; 4],
}

/// Big-endian value of a code of at most 4 bytes.
fn code_value(code: &[u8]) -> Option<u32> {
    (code.len() <= 4).then(|| code.iter().fold(0u32, |v, b| v << 8 | u32::from(*b)))
}

fn utf16(bytes: &[u8]) -> String {
    let units = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

/// A `/ToUnicode` CMap: code space, single codes and ranges.
#[derive(Debug, Default)]
struct ToUnicode {
    code_space: Vec<(Vec<u8>, Vec<u8>)>,
    single: HashMap<Vec<u8>, String>,
    /// `(first, last, text of first)`: each later code adds to the last character.
    ranges: Vec<(Vec<u8>, Vec<u8>, String)>,
}

impl ToUnicode {
    /// The CMap's operators are PostScript, but its tokens are PDF's: the content parser
    /// reads it, each `end…` operator carrying its section's entries as operands.
    fn parse(data: &[u8]) -> ToUnicode {
        let mut map = ToUnicode::default();
        let Ok(content) = Content::decode(data) else { return map };
        let bytes = |o: &Object| o.as_str().ok().map(<[u8]>::to_vec);
        for op in content.operations {
            match op.operator.as_str() {
                "endcodespacerange" => {
                    for pair in op.operands.chunks_exact(2) {
                        if let (Some(lo), Some(hi)) = (bytes(&pair[0]), bytes(&pair[1]))
                            && lo.len() == hi.len()
                        {
                            map.code_space.push((lo, hi));
                        }
                    }
                }
                "endbfchar" => {
                    for pair in op.operands.chunks_exact(2) {
                        if let (Some(code), Some(dst)) = (bytes(&pair[0]), bytes(&pair[1])) {
                            map.single.insert(code, utf16(&dst));
                        }
                    }
                }
                "endbfrange" => {
                    for entry in op.operands.chunks_exact(3) {
                        let (Some(lo), Some(hi)) = (bytes(&entry[0]), bytes(&entry[1])) else { continue };
                        let (Some(first), Some(last)) = (code_value(&lo), code_value(&hi)) else { continue };
                        if lo.len() != hi.len() || first > last {
                            continue;
                        }
                        match &entry[2] {
                            Object::Array(dsts) => {
                                for (value, dst) in (first..=last).zip(dsts) {
                                    if let Some(dst) = bytes(dst) {
                                        let code = value.to_be_bytes()[4 - lo.len()..].to_vec();
                                        map.single.insert(code, utf16(&dst));
                                    }
                                }
                            }
                            dst => {
                                if let Some(dst) = bytes(dst) {
                                    map.ranges.push((lo, hi, utf16(&dst)));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        map
    }

    fn text(&self, code: &[u8]) -> Option<String> {
        if let Some(t) = self.single.get(code) {
            return Some(t.clone());
        }
        let value = code_value(code)?;
        self.ranges.iter().find_map(|(lo, hi, base)| {
            let (first, last) = (code_value(lo)?, code_value(hi)?);
            if lo.len() != code.len() || !(first..=last).contains(&value) {
                return None;
            }
            let mut text: Vec<char> = base.chars().collect();
            let end = text.pop()?;
            text.push(char::from_u32(u32::from(end) + (value - first))?);
            Some(text.into_iter().collect())
        })
    }
}

/// How a font turns the bytes of a string into codes, text and advances.
struct Font<'a> {
    /// A Type0 font: codes of several bytes, widths by CID.
    composite: bool,
    /// The code is the CID (`Identity-H`/`-V`).
    identity: bool,
    /// The code is UTF-16 (a UCS-2 CMap).
    ucs2: bool,
    to_unicode: Option<ToUnicode>,
    encoding: Option<lopdf::Encoding<'a>>,
    /// Glyph widths in thousandths of an em, by CID (composite) or code (simple).
    widths: HashMap<u32, f64>,
    default_width: f64,
    ascent: f64,
    descent: f64,
}

fn resolved<'d>(doc: &'d Document, o: &'d Object) -> Option<&'d Object> {
    doc.dereference(o).ok().map(|r| r.1)
}

/// The decoded data of a stream object, bounded (a CMap is a few kilobytes).
fn stream_data(doc: &Document, o: &Object) -> Option<Vec<u8>> {
    let stream = resolved(doc, o)?.as_stream().ok()?;
    stream.decompressed_content_with_limit(4 << 20).ok().or_else(|| Some(stream.content.clone()))
}

impl<'a> Font<'a> {
    /// A simple font that says nothing: bytes as Latin-1, half an em each.
    fn plain() -> Font<'a> {
        Font {
            composite: false,
            identity: false,
            ucs2: false,
            to_unicode: None,
            encoding: None,
            widths: HashMap::new(),
            default_width: 500.0,
            ascent: 800.0,
            descent: -200.0,
        }
    }

    fn new(doc: &'a Document, dict: &'a Dictionary) -> Font<'a> {
        let get = |d: &'a Dictionary, key: &[u8]| d.get(key).ok().and_then(|o| resolved(doc, o));
        let composite = get(dict, b"Subtype").and_then(|o| o.as_name().ok()) == Some(b"Type0");
        let to_unicode = dict.get(b"ToUnicode").ok().and_then(|o| stream_data(doc, o)).map(|d| ToUnicode::parse(&d));
        let mut font = Font { composite, to_unicode, ..Font::plain() };
        if composite {
            font.default_width = 1000.0;
        }
        let descriptor_of = |d: &'a Dictionary| get(d, b"FontDescriptor").and_then(|o| o.as_dict().ok());
        let descriptor = if composite {
            let cmap = get(dict, b"Encoding").and_then(|o| o.as_name().ok()).unwrap_or_default();
            font.identity = cmap.starts_with(b"Identity-");
            font.ucs2 = cmap.windows(4).any(|w| w == b"UCS2");
            let descendant = get(dict, b"DescendantFonts")
                .and_then(|o| o.as_array().ok())
                .and_then(|a| a.first())
                .and_then(|o| resolved(doc, o))
                .and_then(|o| o.as_dict().ok());
            if let Some(cid_font) = descendant {
                if let Some(dw) = get(cid_font, b"DW").and_then(num) {
                    font.default_width = dw;
                }
                if let Some(w) = get(cid_font, b"W").and_then(|o| o.as_array().ok()) {
                    font.read_cid_widths(doc, w);
                }
            }
            descendant.and_then(descriptor_of)
        } else {
            font.encoding = dict.get_font_encoding(doc).ok();
            let first = get(dict, b"FirstChar").and_then(num).unwrap_or(0.0);
            if let Some(widths) = get(dict, b"Widths").and_then(|o| o.as_array().ok()) {
                for (i, w) in widths.iter().enumerate().take(256) {
                    if let Some(w) = resolved(doc, w).and_then(num) {
                        font.widths.insert(first as u32 + i as u32, w);
                    }
                }
            }
            descriptor_of(dict)
        };
        if let Some(fd) = descriptor {
            let (ascent, descent) = (get(fd, b"Ascent").and_then(num), get(fd, b"Descent").and_then(num));
            if let (Some(a), Some(d)) = (ascent, descent)
                && a > d
            {
                (font.ascent, font.descent) = (a, d);
            }
            if let Some(missing) = get(fd, b"MissingWidth").and_then(num).filter(|w| *w > 0.0 && !composite) {
                font.default_width = missing;
            }
        }
        font
    }

    /// `/W`: `c [w1 w2 …]` gives c, c+1, …; `c_first c_last w` gives the range. CIDs are
    /// 16-bit, which bounds the table.
    fn read_cid_widths(&mut self, doc: &Document, w: &[Object]) {
        let value = |o| resolved(doc, o);
        let mut i = 0;
        while i + 1 < w.len() {
            let Some(first) = value(&w[i]).and_then(num).filter(|c| (0.0..65536.0).contains(c)) else { return };
            let first = first as u32;
            match value(&w[i + 1]) {
                Some(Object::Array(list)) => {
                    for (k, width) in list.iter().enumerate().take(65536 - first as usize) {
                        if let Some(width) = value(width).and_then(num) {
                            self.widths.insert(first + k as u32, width);
                        }
                    }
                    i += 2;
                }
                Some(last) => {
                    let (Some(last), Some(width)) = (num(last), w.get(i + 2).and_then(value).and_then(num)) else {
                        return;
                    };
                    for cid in first..=(last.clamp(0.0, 65535.0) as u32) {
                        self.widths.insert(cid, width);
                    }
                    i += 3;
                }
                None => return,
            }
        }
    }

    /// The length of the code at the start of `bytes`.
    fn code_len(&self, bytes: &[u8]) -> usize {
        if !self.composite {
            return 1;
        }
        if !self.identity
            && let Some(space) = self.to_unicode.as_ref().map(|t| &t.code_space).filter(|s| !s.is_empty())
        {
            let fits = |n: usize| {
                space.iter().any(|(lo, hi)| lo.len() == n && (0..n).all(|i| (lo[i]..=hi[i]).contains(&bytes[i])))
            };
            if let Some(n) = (1..=4.min(bytes.len())).find(|n| fits(*n)) {
                return n;
            }
        }
        2.min(bytes.len())
    }

    fn text(&self, code: &[u8]) -> String {
        if let Some(t) = self.to_unicode.as_ref().and_then(|t| t.text(code)) {
            return t;
        }
        if self.ucs2 {
            return utf16(code);
        }
        if self.composite {
            return String::new();
        }
        match &self.encoding {
            Some(e) => e.bytes_to_string(code).unwrap_or_default(),
            None => code.iter().map(|b| char::from(*b)).collect(),
        }
    }

    /// In thousandths of an em.
    fn width(&self, code: &[u8]) -> f64 {
        let key = match code_value(code) {
            Some(v) if !self.composite || self.identity => v,
            _ => return self.default_width,
        };
        self.widths.get(&key).copied().unwrap_or(self.default_width)
    }
}

/// The graphics state that positions glyphs.
#[derive(Clone)]
struct State {
    ctm: Matrix,
    font: Vec<u8>,
    size: f64,
    char_spacing: f64,
    word_spacing: f64,
    /// `Tz` / 100.
    scale: f64,
    leading: f64,
    rise: f64,
}

struct Reader<'a> {
    doc: &'a Document,
    dicts: std::collections::BTreeMap<Vec<u8>, &'a Dictionary>,
    fonts: HashMap<Vec<u8>, Font<'a>>,
    state: State,
    stack: Vec<State>,
    tm: Matrix,
    line: Matrix,
    glyphs: Vec<Glyph>,
}

impl Reader<'_> {
    fn next_line(&mut self, tx: f64, ty: f64) {
        self.line = mul(&translate(tx, ty), &self.line);
        self.tm = self.line;
    }

    fn show(&mut self, bytes: &[u8]) {
        let key = self.state.font.clone();
        if !self.fonts.contains_key(&key) {
            let font = self.dicts.get(&key).map_or_else(Font::plain, |dict| Font::new(self.doc, dict));
            self.fonts.insert(key.clone(), font);
        }
        let Some(font) = self.fonts.get(&key) else { return };
        let s = &self.state;
        let mut i = 0;
        while i < bytes.len() {
            let n = font.code_len(&bytes[i..]).max(1);
            let code = &bytes[i..i + n];
            i += n;
            let w0 = font.width(code) / 1000.0;
            let trm = mul(&[s.size * s.scale, 0.0, 0.0, s.size, 0.0, s.rise], &mul(&self.tm, &s.ctm));
            let corners = [(0.0, font.descent), (w0, font.descent), (0.0, font.ascent), (w0, font.ascent)]
                .map(|(x, y)| apply(&trm, x, y / 1000.0));
            let xs = corners.map(|c| c.0);
            let ys = corners.map(|c| c.1);
            let min = |v: [f64; 4]| v.into_iter().fold(f64::INFINITY, f64::min);
            let max = |v: [f64; 4]| v.into_iter().fold(f64::NEG_INFINITY, f64::max);
            self.glyphs.push(Glyph { text: font.text(code), bbox: [min(xs), min(ys), max(xs), max(ys)] });
            let space = if code == b" " { s.word_spacing } else { 0.0 };
            let tx = (w0 * s.size + s.char_spacing + space) * s.scale;
            self.tm = mul(&translate(tx, 0.0), &self.tm);
        }
    }
}

/// The glyphs of a page in content order (an unreadable content stream shows none).
pub(crate) fn page_glyphs(doc: &Document, page: ObjectId) -> Vec<Glyph> {
    let Ok(content) = Content::decode(&doc.get_page_content(page)) else { return Vec::new() };
    let mut r = Reader {
        doc,
        dicts: doc.get_page_fonts(page).unwrap_or_default(),
        fonts: HashMap::new(),
        state: State {
            ctm: IDENTITY,
            font: Vec::new(),
            size: 12.0,
            char_spacing: 0.0,
            word_spacing: 0.0,
            scale: 1.0,
            leading: 0.0,
            rise: 0.0,
        },
        stack: Vec::new(),
        tm: IDENTITY,
        line: IDENTITY,
        glyphs: Vec::new(),
    };
    for op in &content.operations {
        let n = |i: usize| op.operands.get(i).and_then(num).unwrap_or(0.0);
        let matrix = || [n(0), n(1), n(2), n(3), n(4), n(5)];
        let string = |i: usize| op.operands.get(i).and_then(|o| o.as_str().ok());
        match op.operator.as_str() {
            "q" => r.stack.push(r.state.clone()),
            "Q" => {
                if let Some(s) = r.stack.pop() {
                    r.state = s;
                }
            }
            "cm" => r.state.ctm = mul(&matrix(), &r.state.ctm),
            "BT" => (r.tm, r.line) = (IDENTITY, IDENTITY),
            "Tf" => {
                r.state.font = op.operands.first().and_then(|o| o.as_name().ok()).unwrap_or_default().to_vec();
                r.state.size = n(1);
            }
            "Tc" => r.state.char_spacing = n(0),
            "Tw" => r.state.word_spacing = n(0),
            "Tz" => r.state.scale = n(0) / 100.0,
            "TL" => r.state.leading = n(0),
            "Ts" => r.state.rise = n(0),
            "Tm" => (r.tm, r.line) = (matrix(), matrix()),
            "Td" => r.next_line(n(0), n(1)),
            "TD" => {
                r.state.leading = -n(1);
                r.next_line(n(0), n(1));
            }
            "T*" => r.next_line(0.0, -r.state.leading),
            "Tj" => r.show(string(0).unwrap_or_default()),
            "'" => {
                r.next_line(0.0, -r.state.leading);
                r.show(string(0).unwrap_or_default());
            }
            "\"" => {
                (r.state.word_spacing, r.state.char_spacing) = (n(0), n(1));
                r.next_line(0.0, -r.state.leading);
                r.show(string(2).unwrap_or_default());
            }
            "TJ" => {
                for item in op.operands.first().and_then(|o| o.as_array().ok()).into_iter().flatten() {
                    match item {
                        Object::String(s, _) => r.show(s),
                        other => {
                            let s = &r.state;
                            let tx = -num(other).unwrap_or(0.0) / 1000.0 * s.size * s.scale;
                            r.tm = mul(&translate(tx, 0.0), &r.tm);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    r.glyphs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_unicode_reads_chars_ranges_arrays_and_surrogate_pairs() {
        let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
            /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
            1 begincodespacerange <0000> <FFFF> endcodespacerange
            2 beginbfchar <0001> <6295> <0002> <D840DC00> endbfchar
            2 beginbfrange <0010> <0012> <0041> <0020> <0021> [<76D6> <00660069>] endbfrange
            endcmap CMapName currentdict /CMap defineresource pop end end";
        let map = ToUnicode::parse(cmap);
        let text = |c: &[u8]| map.text(c);
        assert_eq!(text(&[0, 1]).as_deref(), Some("投"));
        assert_eq!(text(&[0, 2]).as_deref(), Some("\u{20000}"));
        assert_eq!(text(&[0, 0x12]).as_deref(), Some("C"));
        assert_eq!(text(&[0, 0x20]).as_deref(), Some("盖"));
        assert_eq!(text(&[0, 0x21]).as_deref(), Some("fi"));
        assert_eq!(text(&[0, 0x13]), None);
        assert_eq!(text(&[0x12]), None, "codes are matched with their length");
        assert_eq!(map.code_space, [(vec![0, 0], vec![0xFF, 0xFF])]);
    }

    #[test]
    fn matrices_compose_in_pdf_order() {
        // Scale by 2, then move by (10, 0): (1, 1) → (12, 2).
        let m = mul(&[2.0, 0.0, 0.0, 2.0, 0.0, 0.0], &translate(10.0, 0.0));
        assert_eq!(apply(&m, 1.0, 1.0), (12.0, 2.0));
    }
}
