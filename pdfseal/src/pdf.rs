//! Sealing a PDF by incremental update, and finding and checking its signatures.
//!
//! [`prepare`] appends one revision to the original bytes — never rewriting them, so earlier
//! signatures keep covering exactly what they covered — holding: the seal picture as an
//! image XObject, one appearance form and one widget per placement, a signature field
//! (`/FT /Sig`), the signature dictionary with fixed-width `/ByteRange` and `/Contents`
//! placeholders, the pages with their new `/Annots`, the `/AcroForm` with `/SigFlags 3`,
//! and a cross-reference section of the same kind as the original's (table or stream)
//! with `/Prev`. The caller hashes [`Prepared::signed_ranges`], has the CMS container
//! signed, and [`Prepared::embed`]s it as hex into the placeholder.
//!
//! For long-term validation, [`prepare_with_dss`] also writes a Document Security Store
//! (`/DSS` in the catalog, with `/Certs` and `/CRLs` streams) into the same revision, so
//! the signature covers the validation data; [`dss`] reads it back.
//!
//! Placement is in PDF points from the page's lower-left corner and names the centre of the
//! seal. A keyword is found in the text the page shows (simple and Type0/CID fonts, read
//! through `/ToUnicode`), and the seal is centred on the keyword's box in default user
//! space: glyph positions follow the text and transformation matrices, advances come
//! from the font's widths (see the `text` module). A cross-page seal (骑缝章) cuts the picture into one vertical strip
//! per page, at the page's right or left edge, so the strips line up when the pages are
//! fanned.
//!
//! Withdrawing a seal (撤章) undoes its signing revision: [`last_revision_signature`] tells
//! whether the last revision is one, [`previous_revision`] gives the bytes from before it.

use std::collections::BTreeMap;
use std::io::Write;

use lopdf::{Dictionary, Document, Object, ObjectId, Stream, Writer};

use crate::Error;
use crate::image::PdfImage;
use crate::text;

#[derive(Debug, Clone, PartialEq)]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// One page (1-based), centre at (x, y).
    At { page: u32, x: f64, y: f64 },
    /// The same position on several pages, one signature.
    Pages { pages: Vec<u32>, x: f64, y: f64 },
    /// Centred on the n-th (1-based) occurrence of a keyword in reading order.
    Keyword { keyword: String, occurrence: u32 },
    /// Across all pages at one edge; `y` is the centre height (default: mid-page).
    CrossPage { side: Side, y: Option<f64> },
}

/// The picture and its printed size.
pub struct Appearance<'a> {
    pub image: &'a PdfImage,
    pub width_pt: f64,
    pub height_pt: f64,
}

/// What the signature dictionary says.
pub struct SignatureFields<'a> {
    pub field_name: &'a str,
    pub signer_name: &'a str,
    pub reason: &'a str,
    /// Unix seconds.
    pub signing_time: u64,
    /// Bytes reserved for the CMS container.
    pub reserve: usize,
}

pub fn mm_to_pt(mm: f64) -> f64 {
    mm * 72.0 / 25.4
}

fn pdf_err(e: impl std::fmt::Display) -> Error {
    Error::Pdf(e.to_string())
}

pub(crate) fn num(o: &Object) -> Option<f64> {
    match o {
        Object::Integer(i) => Some(*i as f64),
        Object::Real(r) => Some(*r as f64),
        _ => None,
    }
}

/// A PDF text string: UTF-16BE with BOM, so any name survives.
fn text(s: &str) -> Object {
    let mut b = vec![0xFE, 0xFF];
    for u in s.encode_utf16() {
        b.extend_from_slice(&u.to_be_bytes());
    }
    Object::String(b, lopdf::StringFormat::Hexadecimal)
}

fn pdf_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("D:{y:04}{m:02}{d:02}{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The `startxref` keyword at `at`: the offset it gives, and where the line of the `%%EOF`
/// marker after it ends (past its CR, LF or CRLF), if that marker follows.
fn startxref_at(pdf: &[u8], at: usize) -> Option<(usize, Option<usize>)> {
    let skip_space = |mut i: usize| {
        while pdf.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    if !pdf.get(at..)?.starts_with(b"startxref") {
        return None;
    }
    let digits = skip_space(at + 9);
    let mut i = digits;
    while pdf.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let offset = std::str::from_utf8(&pdf[digits..i]).ok()?.parse().ok()?;
    let marker = skip_space(i);
    if !pdf.get(marker..)?.starts_with(b"%%EOF") {
        return Some((offset, None));
    }
    let rest = &pdf[marker + 5..];
    let eol =
        if rest.starts_with(b"\r\n") { 2 } else { usize::from(rest.starts_with(b"\r") || rest.starts_with(b"\n")) };
    Some((offset, Some(marker + 5 + eol)))
}

/// The file's last well-formed `startxref`: (its offset, where its `%%EOF` line ends).
/// Bytes after it — trailing whitespace or garbage — are passed over.
fn final_startxref(pdf: &[u8]) -> Result<(usize, Option<usize>), Error> {
    let mut end = pdf.len();
    while let Some(at) = pdf[..end].windows(9).rposition(|w| w == b"startxref") {
        if let Some(found) = startxref_at(pdf, at) {
            return Ok(found);
        }
        end = at + 8;
    }
    Err(pdf_err("no startxref"))
}

/// The original's last `startxref` value and whether that section is a stream.
fn last_xref(pdf: &[u8]) -> Result<(usize, bool), Error> {
    let (offset, _) = final_startxref(pdf)?;
    let rest = pdf.get(offset..).ok_or_else(|| pdf_err("startxref points outside the file"))?;
    let first = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
    Ok((offset, !rest[first..].starts_with(b"xref")))
}

/// One token of PDF syntax starting at or after `i`: its span, white space and comments
/// skipped. Strings and names are delimited, not decoded.
fn token(b: &[u8], mut i: usize) -> Option<(usize, usize)> {
    const DELIMITERS: &[u8] = b"()<>[]{}/%";
    let space = |c: u8| c.is_ascii_whitespace() || c == 0;
    loop {
        while b.get(i).is_some_and(|c| space(*c)) {
            i += 1;
        }
        if b.get(i) != Some(&b'%') {
            break;
        }
        while b.get(i).is_some_and(|c| *c != b'\r' && *c != b'\n') {
            i += 1;
        }
    }
    let start = i;
    let end = match *b.get(i)? {
        b'(' => {
            let (mut depth, mut j) = (0usize, i);
            loop {
                match *b.get(j)? {
                    b'\\' => j += 1,
                    b'(' => depth += 1,
                    b')' => {
                        depth -= 1;
                        if depth == 0 {
                            break j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        b'<' | b'>' if b.get(i + 1) == b.get(i) => i + 2,
        b'<' => i + b[i..].iter().position(|c| *c == b'>')? + 1,
        b'/' => i + 1 + b[i + 1..].iter().take_while(|c| !space(**c) && !DELIMITERS.contains(c)).count(),
        c if DELIMITERS.contains(&c) => i + 1,
        _ => i + b[i..].iter().take_while(|c| !space(**c) && !DELIMITERS.contains(c)).count(),
    };
    Some((start, end))
}

/// The direct integer `/key` of the dictionary that starts at `at` (with `<<`), read
/// without interpreting anything else in it.
fn dict_integer(b: &[u8], at: usize, key: &[u8]) -> Result<Option<i64>, Error> {
    let broken = || pdf_err("unreadable cross-reference dictionary");
    let (mut depth, mut i) = (0usize, at);
    loop {
        let (s, e) = token(b, i).ok_or_else(broken)?;
        i = e;
        match &b[s..e] {
            b"<<" | b"[" => depth += 1,
            b">>" | b"]" => {
                depth = depth.checked_sub(1).ok_or_else(broken)?;
                if depth == 0 {
                    return Ok(None);
                }
            }
            name if depth == 1 && name.first() == Some(&b'/') && &name[1..] == key => {
                let (s, e) = token(b, i).ok_or_else(broken)?;
                return std::str::from_utf8(&b[s..e])
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .map(Some)
                    .ok_or_else(|| pdf_err(format!("/{} is not a direct integer", String::from_utf8_lossy(key))));
            }
            _ if depth == 0 => return Err(broken()),
            _ => {}
        }
    }
}

/// `/Prev` of the cross-reference section (table or stream) at `offset`.
fn xref_prev(pdf: &[u8], offset: usize) -> Result<Option<usize>, Error> {
    let broken = || pdf_err("startxref does not point at a cross-reference section");
    let (s, e) = token(pdf, offset).ok_or_else(broken)?;
    // A table's trailer follows it (a table holds no letters but n and f); a stream's
    // dictionary follows `N G obj`.
    let dict_from = if &pdf[s..e] == b"xref" {
        let at = pdf[e..].windows(7).position(|w| w == b"trailer").ok_or_else(broken)?;
        e + at + 7
    } else {
        let (_, e) = token(pdf, e).ok_or_else(broken)?;
        match token(pdf, e) {
            Some((s, e)) if &pdf[s..e] == b"obj" => e,
            _ => return Err(broken()),
        }
    };
    let (dict_at, _) = token(pdf, dict_from).ok_or_else(broken)?;
    match dict_integer(pdf, dict_at, b"Prev")? {
        Some(p) => usize::try_from(p).map(Some).map_err(|_| pdf_err("negative /Prev")),
        None => Ok(None),
    }
}

/// Where the last revision starts: just past the `%%EOF` line that closes the revision
/// before it, or `None` when the file has one revision.
///
/// The revisions are read from the cross-reference chain, never by looking for `%%EOF`
/// (a stream may hold those bytes): the last section's `/Prev` names the previous
/// section, and the previous revision ends with the first `startxref` after that section
/// that gives its offset, and the `%%EOF` after it. A `/Prev` pointing forward is the
/// first-page section of a linearized file, which is still the first revision.
fn last_revision_start(pdf: &[u8]) -> Result<Option<usize>, Error> {
    let (last, _) = final_startxref(pdf)?;
    let Some(prev) = xref_prev(pdf, last)?.filter(|p| *p < last) else { return Ok(None) };
    let mut from = prev;
    while let Some(i) = pdf[from..last].windows(9).position(|w| w == b"startxref") {
        if let Some((offset, Some(end))) = startxref_at(pdf, from + i)
            && offset == prev
            && end <= last
        {
            return Ok(Some(end));
        }
        from += i + 9;
    }
    Err(pdf_err("the previous revision has no startxref and %%EOF of its own"))
}

/// The document as it was before its last incremental update, byte for byte: the prefix
/// of the file that ends with the previous revision's `%%EOF` marker and its end of line
/// (CR, LF or CRLF, as written). This withdraws a seal (撤章) whose signing revision is
/// the last one (see [`last_revision_signature`]); bytes written between that marker and
/// the last revision, such as trailing garbage of the earlier file, are not kept.
///
/// A file that ended right after its `%%EOF` gets back the end of line that [`prepare`]
/// wrote after the marker. A document of one revision has nothing to withdraw: that is an
/// [`Error::Invalid`].
pub fn previous_revision(pdf: &[u8]) -> Result<Vec<u8>, Error> {
    match last_revision_start(pdf)? {
        Some(end) => Ok(pdf[..end].to_vec()),
        None => Err(Error::Invalid("the document has a single revision: there is nothing to withdraw".into())),
    }
}

/// The signature that the last revision added, when that revision is exactly a signing
/// revision: the signature dictionary lies in the last revision and its `/ByteRange`
/// covers the whole file (up to the final `%%EOF` line; trailing bytes after it are
/// passed over). `None` when the last revision is anything else.
pub fn last_revision_signature(pdf: &[u8]) -> Result<Option<Found>, Error> {
    let start = last_revision_start(pdf)?.unwrap_or(0);
    let (_, eof) = final_startxref(pdf)?;
    let ends = [Some(pdf.len()), eof];
    Ok(signatures(pdf)?
        .into_iter()
        .rfind(|f| f.range_ok && f.byte_range[1] >= start && ends.contains(&Some(f.byte_range[2] + f.byte_range[3]))))
}

struct Widget {
    page: ObjectId,
    rect: [f64; 4],
    /// Appearance: strip box width and the picture's x offset in it.
    box_width: f64,
    shift: f64,
}

fn media_box(doc: &Document, page: ObjectId) -> Result<[f64; 4], Error> {
    let mut id = page;
    for _ in 0..32 {
        let dict = doc.get_dictionary(id).map_err(pdf_err)?;
        if let Ok(mb) = dict.get(b"MediaBox") {
            let (_, mb) = doc.dereference(mb).map_err(pdf_err)?;
            let arr = mb.as_array().map_err(pdf_err)?;
            let v: Vec<f64> = arr.iter().filter_map(|o| doc.dereference(o).ok().and_then(|(_, o)| num(o))).collect();
            if v.len() == 4 {
                return Ok([v[0], v[1], v[2], v[3]]);
            }
            return Err(pdf_err("bad MediaBox"));
        }
        id = dict.get(b"Parent").and_then(Object::as_reference).map_err(|_| pdf_err("page without MediaBox"))?;
    }
    Err(pdf_err("page tree too deep"))
}

/// The page (1-based number and id) and the centre, in default user space, of the box
/// around the `occurrence`-th (1-based) showing of `keyword` in reading order. White
/// space is ignored on both sides, so words positioned apart still match.
fn keyword_position(
    doc: &Document,
    pages: &BTreeMap<u32, ObjectId>,
    keyword: &str,
    occurrence: u32,
) -> Result<(u32, ObjectId, f64, f64), Error> {
    let needle: Vec<char> = keyword.chars().filter(|c| !c.is_whitespace()).collect();
    if needle.is_empty() {
        return Err(Error::Invalid("empty keyword".into()));
    }
    let mut seen = 0;
    for (&number, &page) in pages {
        let mut chars: Vec<(char, [f64; 4])> = Vec::new();
        for glyph in text::page_glyphs(doc, page) {
            chars.extend(glyph.text.chars().filter(|c| !c.is_whitespace()).map(|c| (c, glyph.bbox)));
        }
        for run in chars.windows(needle.len()) {
            if run.iter().map(|(c, _)| c).ne(needle.iter()) {
                continue;
            }
            seen += 1;
            if seen == occurrence.max(1) {
                let b = run
                    .iter()
                    .fold([f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY], |b, (_, g)| {
                        [b[0].min(g[0]), b[1].min(g[1]), b[2].max(g[2]), b[3].max(g[3])]
                    });
                return Ok((number, page, (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0));
            }
        }
    }
    Err(Error::Invalid(format!("keyword `{keyword}` (occurrence {}) is not in the document's text", occurrence.max(1))))
}

/// Where [`Placement::Keyword`] puts the centre of a seal: the page (1-based) and the
/// centre of the box around the `occurrence`-th (1-based) showing of `keyword`, in
/// default user space (points from the page's lower-left corner). Simple fonts and
/// Type0 (CID) fonts are read; white space in the keyword and the page is ignored.
pub fn keyword_centre(pdf: &[u8], keyword: &str, occurrence: u32) -> Result<(u32, f64, f64), Error> {
    let doc = Document::load_mem(pdf).map_err(pdf_err)?;
    let (number, _, x, y) = keyword_position(&doc, &doc.get_pages(), keyword, occurrence)?;
    Ok((number, x, y))
}

fn widgets(doc: &Document, placement: &Placement, w: f64, h: f64) -> Result<Vec<Widget>, Error> {
    let pages = doc.get_pages();
    let page = |n: u32| {
        pages
            .get(&n)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("page {n} does not exist (the document has {})", pages.len())))
    };
    let centred = |page: ObjectId, x: f64, y: f64| Widget {
        page,
        rect: [x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0],
        box_width: w,
        shift: 0.0,
    };
    Ok(match placement {
        Placement::At { page: n, x, y } => vec![centred(page(*n)?, *x, *y)],
        Placement::Pages { pages: list, x, y } => {
            if list.is_empty() {
                return Err(Error::Invalid("no pages given".into()));
            }
            let mut seen = std::collections::BTreeSet::new();
            list.iter()
                .filter(|n| seen.insert(**n))
                .map(|n| Ok(centred(page(*n)?, *x, *y)))
                .collect::<Result<_, Error>>()?
        }
        Placement::Keyword { keyword, occurrence } => {
            let (_, p, x, y) = keyword_position(doc, &pages, keyword, *occurrence)?;
            vec![centred(p, x, y)]
        }
        Placement::CrossPage { side, y } => {
            let count = pages.len();
            if count < 2 {
                return Err(Error::Invalid("a cross-page seal needs at least two pages".into()));
            }
            let strip = w / count as f64;
            let mut out = Vec::new();
            for (i, &p) in pages.values().enumerate() {
                let mb = media_box(doc, p)?;
                let cy = y.unwrap_or((mb[1] + mb[3]) / 2.0);
                let (x0, part) = match side {
                    Side::Right => (mb[2] - strip, i),
                    Side::Left => (mb[0], count - 1 - i),
                };
                out.push(Widget {
                    page: p,
                    rect: [x0, cy - h / 2.0, x0 + strip, cy + h / 2.0],
                    box_width: strip,
                    shift: part as f64 * strip,
                });
            }
            out
        }
    })
}

/// The sealed file minus its signature: the bytes to hash and where the container goes.
#[derive(Debug, Clone)]
pub struct Prepared {
    bytes: Vec<u8>,
    /// `[0, a, b, c]`: signed are `[0, a)` and `[b, b + c)`; `/Contents` is `[a, b)`.
    pub byte_range: [usize; 4],
}

impl Prepared {
    pub fn signed_ranges(&self) -> [&[u8]; 2] {
        let [_, a, b, c] = self.byte_range;
        [&self.bytes[..a], &self.bytes[b..b + c]]
    }

    /// Put the DER container into the placeholder.
    pub fn embed(mut self, container: &[u8]) -> Result<Vec<u8>, Error> {
        let [_, a, b, _] = self.byte_range;
        let room = (b - a - 2) / 2;
        if container.len() > room {
            return Err(Error::Invalid(format!(
                "signature container of {} bytes exceeds the {room} reserved",
                container.len()
            )));
        }
        let hex: String = container.iter().map(|x| format!("{x:02X}")).collect();
        self.bytes[a + 1..a + 1 + hex.len()].copy_from_slice(hex.as_bytes());
        Ok(self.bytes)
    }
}

fn image_stream(img: &PdfImage, smask: Option<ObjectId>) -> Stream {
    let mut d = Dictionary::new();
    d.set("Type", Object::Name(b"XObject".to_vec()));
    d.set("Subtype", Object::Name(b"Image".to_vec()));
    d.set("Width", img.width as i64);
    d.set("Height", img.height as i64);
    d.set("ColorSpace", Object::Name(img.color_space.as_bytes().to_vec()));
    d.set("BitsPerComponent", 8);
    d.set("Filter", Object::Name(img.filter.as_bytes().to_vec()));
    if let Some(m) = smask {
        d.set("SMask", Object::Reference(m));
    }
    Stream::new(d, img.data.clone())
}

/// Validation data for the Document Security Store (ISO 32000-2 §12.8.4.3, PAdES-LTV):
/// DER certificates and CRLs a verifier needs later, when they may be gone from the network.
pub struct Dss<'a> {
    /// DER certificates (the signer's chain, the TSA's chain).
    pub certs: &'a [Vec<u8>],
    /// DER CRLs.
    pub crls: &'a [Vec<u8>],
}

/// Append the sealing revision to `pdf`.
pub fn prepare(
    pdf: &[u8],
    placement: &Placement,
    appearance: &Appearance<'_>,
    sig: &SignatureFields<'_>,
) -> Result<Prepared, Error> {
    prepare_with_dss(pdf, placement, appearance, sig, None)
}

/// [`prepare`], the revision also holding a `/DSS` in the catalog with `dss`'s certificates
/// and CRLs (merged into an existing DSS: its entries kept, a DER already there not added
/// again), so the new signature covers them.
pub fn prepare_with_dss(
    pdf: &[u8],
    placement: &Placement,
    appearance: &Appearance<'_>,
    sig: &SignatureFields<'_>,
    dss: Option<&Dss<'_>>,
) -> Result<Prepared, Error> {
    let doc = Document::load_mem(pdf).map_err(pdf_err)?;
    if doc.is_encrypted() {
        return Err(Error::Unsupported("encrypted PDFs".into()));
    }
    let (prev, xref_stream) = last_xref(pdf)?;
    let root_id =
        doc.trailer.get(b"Root").and_then(Object::as_reference).map_err(|_| pdf_err("trailer without /Root"))?;
    let trailer_size = doc.trailer.get(b"Size").ok().and_then(num).unwrap_or(0.0) as u32;
    let mut next = trailer_size.max(doc.max_id + 1);
    let mut alloc = || {
        next += 1;
        (next - 1, 0u16)
    };
    let (w, h) = (appearance.width_pt, appearance.height_pt);
    let placed = widgets(&doc, placement, w, h)?;

    let mut objects: Vec<(ObjectId, Object)> = Vec::new();
    let img = appearance.image;
    let smask_id = img.smask.as_ref().map(|_| alloc());
    if let (Some(id), Some(mask)) = (smask_id, &img.smask) {
        let mut d = Dictionary::new();
        d.set("Type", Object::Name(b"XObject".to_vec()));
        d.set("Subtype", Object::Name(b"Image".to_vec()));
        d.set("Width", img.width as i64);
        d.set("Height", img.height as i64);
        d.set("ColorSpace", Object::Name(b"DeviceGray".to_vec()));
        d.set("BitsPerComponent", 8);
        d.set("Filter", Object::Name(b"FlateDecode".to_vec()));
        objects.push((id, Object::Stream(Stream::new(d, mask.clone()))));
    }
    let img_id = alloc();
    objects.push((img_id, Object::Stream(image_stream(img, smask_id))));
    let sig_id = alloc();
    let field_id = alloc();
    let single = placed.len() == 1;
    let mut widget_ids = Vec::new();
    let mut by_page: BTreeMap<ObjectId, Vec<ObjectId>> = BTreeMap::new();
    for wd in &placed {
        let form_id = alloc();
        let mut res = Dictionary::new();
        res.set("XObject", Dictionary::from_iter(vec![("Im0", Object::Reference(img_id))]));
        let mut fd = Dictionary::new();
        fd.set("Type", Object::Name(b"XObject".to_vec()));
        fd.set("Subtype", Object::Name(b"Form".to_vec()));
        fd.set("BBox", vec![0.into(), 0.into(), Object::Real(wd.box_width as f32), Object::Real(h as f32)]);
        fd.set("Resources", res);
        let ops = format!("q {w:.3} 0 0 {h:.3} {:.3} 0 cm /Im0 Do Q", -wd.shift);
        objects.push((form_id, Object::Stream(Stream::new(fd, ops.into_bytes()))));
        let widget_id = if single { field_id } else { alloc() };
        let mut wdict = Dictionary::new();
        wdict.set("Type", Object::Name(b"Annot".to_vec()));
        wdict.set("Subtype", Object::Name(b"Widget".to_vec()));
        wdict.set("Rect", wd.rect.iter().map(|v| Object::Real(*v as f32)).collect::<Vec<_>>());
        wdict.set("P", Object::Reference(wd.page));
        wdict.set("F", 132); // print, locked
        wdict.set("AP", Dictionary::from_iter(vec![("N", Object::Reference(form_id))]));
        if single {
            wdict.set("FT", Object::Name(b"Sig".to_vec()));
            wdict.set("T", text(sig.field_name));
            wdict.set("V", Object::Reference(sig_id));
        } else {
            wdict.set("Parent", Object::Reference(field_id));
        }
        objects.push((widget_id, Object::Dictionary(wdict)));
        widget_ids.push(widget_id);
        by_page.entry(wd.page).or_default().push(widget_id);
    }
    if !single {
        let mut fdict = Dictionary::new();
        fdict.set("FT", Object::Name(b"Sig".to_vec()));
        fdict.set("T", text(sig.field_name));
        fdict.set("V", Object::Reference(sig_id));
        fdict.set("Kids", widget_ids.iter().map(|id| Object::Reference(*id)).collect::<Vec<_>>());
        objects.push((field_id, Object::Dictionary(fdict)));
    }
    // Pages gain their widgets.
    for (page, ids) in &by_page {
        let mut pdict = doc.get_dictionary(*page).map_err(pdf_err)?.clone();
        let refs: Vec<Object> = ids.iter().map(|id| Object::Reference(*id)).collect();
        match pdict.get(b"Annots") {
            Ok(Object::Reference(arr_id)) => {
                let arr_id = *arr_id;
                let mut arr = doc.get_object(arr_id).and_then(Object::as_array).map_err(pdf_err)?.clone();
                arr.extend(refs);
                objects.push((arr_id, Object::Array(arr)));
            }
            Ok(Object::Array(a)) => {
                let mut a = a.clone();
                a.extend(refs);
                pdict.set("Annots", a);
                objects.push((*page, Object::Dictionary(pdict)));
            }
            _ => {
                pdict.set("Annots", refs);
                objects.push((*page, Object::Dictionary(pdict)));
            }
        }
    }
    // The form: existing fields plus ours, SigFlags 3 (signatures exist, append only).
    let mut catalog = doc.get_dictionary(root_id).map_err(pdf_err)?.clone();
    let (form_id, mut form) = match catalog.get(b"AcroForm") {
        Ok(Object::Reference(id)) => (*id, doc.get_dictionary(*id).map_err(pdf_err)?.clone()),
        Ok(Object::Dictionary(d)) => (alloc(), d.clone()),
        _ => (alloc(), Dictionary::new()),
    };
    let mut fields = match form.get(b"Fields") {
        Ok(o) => doc.dereference(o).map_err(pdf_err)?.1.as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    fields.push(Object::Reference(field_id));
    form.set("Fields", fields);
    form.set("SigFlags", 3);
    objects.push((form_id, Object::Dictionary(form)));
    let mut catalog_changed = false;
    if !matches!(catalog.get(b"AcroForm"), Ok(Object::Reference(id)) if *id == form_id) {
        catalog.set("AcroForm", Object::Reference(form_id));
        catalog_changed = true;
    }
    if let Some(dss) = dss {
        let dss_id = merge_dss(&doc, &catalog, dss, &mut alloc, &mut objects)?;
        catalog.set("DSS", Object::Reference(dss_id));
        catalog_changed = true;
    }
    if catalog_changed {
        objects.push((root_id, Object::Dictionary(catalog)));
    }

    // Write the revision.
    let mut out = pdf.to_vec();
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let mut offsets: BTreeMap<u32, (u16, usize)> = BTreeMap::new();
    for (id, obj) in &objects {
        offsets.insert(id.0, (id.1, out.len()));
        writeln!(out, "{} {} obj", id.0, id.1).map_err(pdf_err)?;
        Writer::write_object(&mut out, obj).map_err(pdf_err)?;
        out.extend_from_slice(b"\nendobj\n");
    }
    offsets.insert(sig_id.0, (0, out.len()));
    let mut name = Vec::new();
    Writer::write_object(&mut name, &text(sig.signer_name)).map_err(pdf_err)?;
    let mut reason = Vec::new();
    Writer::write_object(&mut reason, &text(sig.reason)).map_err(pdf_err)?;
    write!(
        out,
        "{} 0 obj\n<</Type/Sig/Filter/Adobe.PPKLite/SubFilter/adbe.pkcs7.detached/Name{}/Reason{}/M({})/ByteRange[0 ",
        sig_id.0,
        String::from_utf8_lossy(&name),
        String::from_utf8_lossy(&reason),
        pdf_date(sig.signing_time)
    )
    .map_err(pdf_err)?;
    let range_at = out.len();
    out.extend_from_slice(b"0000000000 0000000000 0000000000]/Contents");
    let contents_at = out.len();
    out.push(b'<');
    out.extend(std::iter::repeat_n(b'0', sig.reserve * 2));
    out.push(b'>');
    let contents_end = out.len();
    out.extend_from_slice(b">>\nendobj\n");

    let size = next;
    let xref_at = out.len();
    let mut trailer = Dictionary::new();
    trailer.set("Size", size as i64 + if xref_stream { 1 } else { 0 });
    trailer.set("Root", Object::Reference(root_id));
    trailer.set("Prev", prev as i64);
    for key in [&b"Info"[..], b"ID"] {
        if let Ok(v) = doc.trailer.get(key) {
            trailer.set(key.to_vec(), v.clone());
        }
    }
    if xref_stream {
        let xref_id = size;
        offsets.insert(xref_id, (0, xref_at));
        let mut data = Vec::new();
        let mut index = Vec::new();
        for (start, run) in runs(&offsets) {
            index.push(Object::Integer(start as i64));
            index.push(Object::Integer(run.len() as i64));
            for (_, off) in run {
                data.push(1u8);
                data.extend_from_slice(&(off as u32).to_be_bytes());
                data.extend_from_slice(&0u16.to_be_bytes());
            }
        }
        trailer.set("Type", Object::Name(b"XRef".to_vec()));
        trailer.set("W", vec![1.into(), 4.into(), 2.into()]);
        trailer.set("Index", index);
        writeln!(out, "{xref_id} 0 obj").map_err(pdf_err)?;
        Writer::write_object(&mut out, &Object::Stream(Stream::new(trailer, data))).map_err(pdf_err)?;
        out.extend_from_slice(b"\nendobj\n");
    } else {
        out.extend_from_slice(b"xref\n");
        for (start, run) in runs(&offsets) {
            writeln!(out, "{start} {}", run.len()).map_err(pdf_err)?;
            for (generation, off) in run {
                write!(out, "{off:010} {generation:05} n\r\n").map_err(pdf_err)?;
            }
        }
        out.extend_from_slice(b"trailer\n");
        Writer::write_object(&mut out, &Object::Dictionary(trailer)).map_err(pdf_err)?;
        out.push(b'\n');
    }
    write!(out, "startxref\n{xref_at}\n%%EOF\n").map_err(pdf_err)?;

    let byte_range = [0, contents_at, contents_end, out.len() - contents_end];
    for (i, v) in byte_range[1..].iter().enumerate() {
        let field = format!("{v:<10}");
        if field.len() > 10 {
            return Err(pdf_err("document too large"));
        }
        out[range_at + i * 11..range_at + i * 11 + 10].copy_from_slice(field.as_bytes());
    }
    Ok(Prepared { bytes: out, byte_range })
}

/// Bound on one decoded DSS stream: a certificate or CRL, not a decompression bomb.
const DSS_ENTRY_LIMIT: usize = 16 << 20;

/// The DSS dictionary of a catalog, if any: its object id when indirect, and its value.
fn dss_dictionary(doc: &Document, catalog: &Dictionary) -> Result<Option<(Option<ObjectId>, Dictionary)>, Error> {
    match catalog.get(b"DSS") {
        Ok(Object::Reference(id)) => Ok(Some((Some(*id), doc.get_dictionary(*id).map_err(pdf_err)?.clone()))),
        Ok(Object::Dictionary(d)) => Ok(Some((None, d.clone()))),
        Ok(_) => Err(pdf_err("/DSS is not a dictionary")),
        Err(_) => Ok(None),
    }
}

/// The entries of a DSS array (`/Certs`, `/CRLs`): each as written and its decoded bytes.
fn dss_entries(doc: &Document, dss: &Dictionary, key: &[u8]) -> Result<Vec<(Object, Vec<u8>)>, Error> {
    let Ok(array) = dss.get(key) else { return Ok(Vec::new()) };
    let array = doc.dereference(array).map_err(pdf_err)?.1.as_array().map_err(pdf_err)?;
    array
        .iter()
        .map(|entry| {
            let stream = doc.dereference(entry).and_then(|(_, o)| o.as_stream()).map_err(pdf_err)?;
            Ok((entry.clone(), stream.get_plain_content_with_limit(DSS_ENTRY_LIMIT).map_err(pdf_err)?))
        })
        .collect()
}

/// Add the revision's DSS objects to `objects`: one FlateDecode stream per new DER and the
/// DSS dictionary (at its old id when it had one); returns the dictionary's id.
fn merge_dss(
    doc: &Document,
    catalog: &Dictionary,
    dss: &Dss<'_>,
    alloc: &mut impl FnMut() -> ObjectId,
    objects: &mut Vec<(ObjectId, Object)>,
) -> Result<ObjectId, Error> {
    let (old_id, mut dict) = dss_dictionary(doc, catalog)?.unwrap_or_else(|| (None, Dictionary::new()));
    dict.set("Type", Object::Name(b"DSS".to_vec()));
    for (key, ders) in [(&b"Certs"[..], dss.certs), (b"CRLs", dss.crls)] {
        let existing = dss_entries(doc, &dict, key)?;
        let mut seen: Vec<&[u8]> = existing.iter().map(|(_, der)| der.as_slice()).collect();
        let mut array: Vec<Object> = existing.iter().map(|(entry, _)| entry.clone()).collect();
        for der in ders {
            if seen.contains(&der.as_slice()) {
                continue;
            }
            seen.push(der);
            let id = alloc();
            let stream = Stream::new(
                Dictionary::from_iter(vec![("Filter", Object::Name(b"FlateDecode".to_vec()))]),
                crate::image::deflate(der),
            );
            objects.push((id, Object::Stream(stream)));
            array.push(Object::Reference(id));
        }
        if !array.is_empty() {
            dict.set(key.to_vec(), array);
        }
    }
    let id = old_id.unwrap_or_else(alloc);
    objects.push((id, Object::Dictionary(dict)));
    Ok(id)
}

/// DER objects (certificates or CRLs), in order.
pub type DerList = Vec<Vec<u8>>;

/// The certificates and CRLs (DER) of the document's Document Security Store, in order;
/// empty when it has none.
pub fn dss(pdf: &[u8]) -> Result<(DerList, DerList), Error> {
    let doc = Document::load_mem(pdf).map_err(pdf_err)?;
    let root = doc.trailer.get(b"Root").and_then(Object::as_reference).map_err(|_| pdf_err("trailer without /Root"))?;
    let catalog = doc.get_dictionary(root).map_err(pdf_err)?;
    let Some((_, dict)) = dss_dictionary(&doc, catalog)? else { return Ok((Vec::new(), Vec::new())) };
    let values = |key: &[u8]| -> Result<DerList, Error> {
        Ok(dss_entries(&doc, &dict, key)?.into_iter().map(|(_, der)| der).collect())
    };
    Ok((values(b"Certs")?, values(b"CRLs")?))
}

/// Contiguous runs of object numbers: (first, [(gen, offset)]).
fn runs(offsets: &BTreeMap<u32, (u16, usize)>) -> Vec<(u32, Vec<(u16, usize)>)> {
    let mut out: Vec<(u32, Vec<(u16, usize)>)> = Vec::new();
    for (&id, &entry) in offsets {
        match out.last_mut() {
            Some((start, run)) if *start + run.len() as u32 == id => run.push(entry),
            _ => out.push((id, vec![entry])),
        }
    }
    out
}

/// A signature found in a PDF.
#[derive(Debug, Clone)]
pub struct Found {
    pub field: Option<String>,
    pub byte_range: [usize; 4],
    /// The `/Contents` bytes (the CMS container plus zero padding).
    pub contents: Vec<u8>,
    /// `/M`, as written.
    pub signed_at: Option<String>,
    pub covers_whole_document: bool,
    /// Whether `/ByteRange` is well formed: starts at 0, leaves exactly the hex `/Contents`
    /// string out, stays inside the file.
    pub range_ok: bool,
}

impl Found {
    pub fn signed_ranges<'a>(&self, pdf: &'a [u8]) -> Option<[&'a [u8]; 2]> {
        let [a, b, c, d] = self.byte_range;
        Some([pdf.get(a..a.checked_add(b)?)?, pdf.get(c..c.checked_add(d)?)?])
    }
}

/// Every signature dictionary in the PDF, in file order.
pub fn signatures(pdf: &[u8]) -> Result<Vec<Found>, Error> {
    let doc = Document::load_mem(pdf).map_err(pdf_err)?;
    let mut names: BTreeMap<ObjectId, String> = BTreeMap::new();
    for obj in doc.objects.values() {
        if let Ok(d) = obj.as_dict()
            && let (Ok(v), Ok(t)) = (d.get(b"V").and_then(Object::as_reference), d.get(b"T"))
            && let Ok(name) = lopdf::decode_text_string(t)
        {
            names.insert(v, name);
        }
    }
    let mut found = Vec::new();
    for (id, obj) in &doc.objects {
        let Ok(d) = obj.as_dict() else { continue };
        let is_sig = d.get(b"Type").and_then(Object::as_name).is_ok_and(|n| n == b"Sig") || d.has(b"ByteRange");
        let (Ok(range), Ok(contents)) =
            (d.get(b"ByteRange").and_then(Object::as_array), d.get(b"Contents").and_then(Object::as_str))
        else {
            continue;
        };
        if !is_sig {
            continue;
        }
        let r: Vec<usize> =
            range.iter().filter_map(|o| o.as_i64().ok()).filter(|v| *v >= 0).map(|v| v as usize).collect();
        if r.len() != 4 {
            continue;
        }
        let byte_range = [r[0], r[1], r[2], r[3]];
        let gap_is_contents =
            pdf.get(r[1]) == Some(&b'<') && r[2] >= 1 && pdf.get(r[2] - 1) == Some(&b'>') && r[1] < r[2];
        let inside = r[2].checked_add(r[3]).is_some_and(|end| end <= pdf.len());
        found.push(Found {
            field: names.get(id).cloned(),
            byte_range,
            contents: contents.to_vec(),
            signed_at: d.get(b"M").ok().and_then(|m| m.as_str().ok()).map(|s| String::from_utf8_lossy(s).into_owned()),
            covers_whole_document: inside && r[2] + r[3] == pdf.len(),
            range_ok: r[0] == 0 && gap_is_contents && inside,
        });
    }
    found.sort_by_key(|f| f.byte_range[1]);
    Ok(found)
}

/// A plain multi-page A4 document with a line of text per page and the words
/// "Bidder seal here" on the last page: a bid file for demos and tests. `xref_stream`
/// chooses a cross-reference stream instead of a table.
pub fn sample_document(pages: u32, xref_stream: bool) -> Vec<u8> {
    sample(pages, xref_stream, 0)
}

/// [`sample_document`] grown to about `bytes` by an attached data stream (for
/// benchmarks: a bid file with its drawings).
pub fn sample_document_padded(pages: u32, bytes: usize) -> Vec<u8> {
    sample(pages, false, bytes)
}

fn sample(pages: u32, xref_stream: bool, padding: usize) -> Vec<u8> {
    use lopdf::dictionary;
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for n in 1..=pages.max(1) {
        let mut text = format!("BT /F1 14 Tf 72 760 Td (Tender document, page {n} of {pages}) Tj ET\n");
        if n == pages {
            text.push_str("BT /F1 12 Tf 72 200 Td (Signed for the bidder: Bidder seal here) Tj ET\n");
        }
        let content_id = doc.add_object(Stream::new(dictionary! {}, text.into_bytes()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let mut catalog = dictionary! { "Type" => "Catalog", "Pages" => pages_id };
    if padding > 0 {
        // Incompressible-looking bytes (xorshift), so the size is real.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..padding)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let att = doc.add_object(Stream::new(dictionary! { "Type" => "EmbeddedFile" }, data));
        catalog.set("MCSAttachment", att);
    }
    let catalog_id = doc.add_object(catalog);
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    if xref_stream {
        doc.save_modern(&mut out).expect("in-memory PDF");
    } else {
        doc.save_to(&mut out).expect("in-memory PDF");
    }
    // Every revision ends with an end of line, so that withdrawing a seal gives these
    // bytes back exactly (lopdf writes none after an xref stream's `%%EOF`).
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_pdf_dates_in_utc() {
        assert_eq!(pdf_date(0), "D:19700101000000Z");
        assert_eq!(pdf_date(1_795_392_000), "D:20261123000000Z");
    }

    #[test]
    fn dictionary_integers_skip_strings_comments_and_nested_values() {
        let d = b"<< /ID [<AB> (a >> b \\) /Prev 1)] /Info << /Prev 7 >> % /Prev 8\n /Prev 42 /Size 3 >>";
        assert_eq!(dict_integer(d, 0, b"Prev"), Ok(Some(42)));
        assert_eq!(dict_integer(d, 0, b"Root"), Ok(None));
        assert!(dict_integer(b"<< /Size 1 0 R", 0, b"Prev").is_err(), "unterminated");
        assert!(dict_integer(b"<< /Prev /Name >>", 0, b"Prev").is_err());
        assert_eq!(startxref_at(b"startxref\r\n12\r\n%%EOF\r\nx", 0), Some((12, Some(22))));
        assert_eq!(startxref_at(b"startxref 12 %%EOF", 0), Some((12, Some(18))));
        assert_eq!(startxref_at(b"startxref 12 trailer", 0), Some((12, None)));
    }

    #[test]
    fn xref_runs_group_contiguous_numbers() {
        let offsets = BTreeMap::from([(3, (0, 10)), (4, (0, 20)), (9, (1, 30))]);
        assert_eq!(runs(&offsets), vec![(3, vec![(0, 10), (0, 20)]), (9, vec![(1, 30)])]);
    }
}
