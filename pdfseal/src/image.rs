//! Seal pictures as PDF image XObjects: JPEG passes through (`/DCTDecode`); PNG (8-bit,
//! non-interlaced; grey, RGB, grey+alpha or RGBA) is unfiltered and re-deflated, its alpha
//! becoming an `/SMask` so the seal's transparent background stays transparent. SVG
//! cannot be drawn by a PDF without a renderer and is refused for PDF sealing.

use std::io::{Read, Write};

use crate::Error;

/// An image ready for a PDF: its pixel stream and an optional soft mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfImage {
    pub width: u32,
    pub height: u32,
    /// `/DeviceGray`, `/DeviceRGB` or `/DeviceCMYK`.
    pub color_space: &'static str,
    /// `/DCTDecode` or `/FlateDecode`.
    pub filter: &'static str,
    pub data: Vec<u8>,
    /// Alpha channel, deflated, 8 bits per pixel.
    pub smask: Option<Vec<u8>>,
}

pub fn from_picture(picture_type: &str, data: &[u8]) -> Result<PdfImage, Error> {
    match picture_type.to_ascii_uppercase().as_str() {
        "JPEG" | "JPG" => jpeg(data),
        "PNG" => png(data),
        other => Err(Error::Unsupported(format!("{other} pictures in PDF appearances"))),
    }
}

/// The largest side of a picture, in pixels (a 200 mm seal at 500 dpi is under 4000).
pub const MAX_SIDE: u32 = 4096;
/// The most pixel bytes a PNG may inflate to (2048² RGBA). Checked from the header,
/// before anything is inflated: a few hundred kilobytes of zlib can claim gigabytes.
pub const MAX_DECODED_BYTES: u64 = 16 << 20;

fn bad(what: &str) -> Error {
    Error::Invalid(format!("picture: {what}"))
}

fn jpeg(data: &[u8]) -> Result<PdfImage, Error> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(bad("not a JPEG"));
    }
    let mut i = 2;
    while i + 4 <= data.len() {
        if data[i] != 0xFF {
            return Err(bad("broken JPEG marker"));
        }
        let marker = data[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let seg = data.get(i + 4..i + 2 + len).ok_or_else(|| bad("short JPEG frame header"))?;
            if seg.len() < 6 {
                return Err(bad("short JPEG frame header"));
            }
            let height = u16::from_be_bytes([seg[1], seg[2]]) as u32;
            let width = u16::from_be_bytes([seg[3], seg[4]]) as u32;
            let color_space = match seg[5] {
                1 => "DeviceGray",
                3 => "DeviceRGB",
                4 => "DeviceCMYK",
                _ => return Err(bad("JPEG with an unusual component count")),
            };
            if width == 0 || height == 0 {
                return Err(bad("empty JPEG"));
            }
            if width > MAX_SIDE || height > MAX_SIDE {
                return Err(bad("JPEG size out of range"));
            }
            return Ok(PdfImage { width, height, color_space, filter: "DCTDecode", data: data.to_vec(), smask: None });
        }
        i += 2 + len;
    }
    Err(bad("JPEG without a frame header"))
}

fn png(data: &[u8]) -> Result<PdfImage, Error> {
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    let body = data.strip_prefix(SIG).ok_or_else(|| bad("not a PNG"))?;
    let mut chunks = body;
    let mut header = None;
    let mut idat = Vec::new();
    while chunks.len() >= 12 {
        let len = u32::from_be_bytes(chunks[..4].try_into().unwrap_or_default()) as usize;
        let kind = &chunks[4..8];
        let content = chunks.get(8..8 + len).ok_or_else(|| bad("truncated PNG chunk"))?;
        match kind {
            b"IHDR" if content.len() == 13 => header = Some(content.to_vec()),
            b"IDAT" => idat.extend_from_slice(content),
            b"IEND" => break,
            _ => {}
        }
        chunks = chunks.get(12 + len..).ok_or_else(|| bad("truncated PNG chunk"))?;
    }
    let h = header.ok_or_else(|| bad("PNG without IHDR"))?;
    let width = u32::from_be_bytes(h[0..4].try_into().unwrap_or_default());
    let height = u32::from_be_bytes(h[4..8].try_into().unwrap_or_default());
    let (depth, color, interlace) = (h[8], h[9], h[12]);
    if depth != 8 || interlace != 0 {
        return Err(Error::Unsupported("PNG other than 8-bit non-interlaced".into()));
    }
    let channels = match color {
        0 => 1,
        2 => 3,
        4 => 2,
        6 => 4,
        _ => return Err(Error::Unsupported("palette PNG".into())),
    };
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(bad("PNG size out of range"));
    }
    if u64::from(width) * u64::from(height) * channels as u64 > MAX_DECODED_BYTES {
        return Err(bad("PNG too large when decoded"));
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(idat.as_slice())
        .take((height as u64) * (1 + width as u64 * channels as u64) + 1)
        .read_to_end(&mut raw)
        .map_err(|_| bad("PNG data does not inflate"))?;
    let stride = width as usize * channels;
    if raw.len() < height as usize * (stride + 1) {
        return Err(bad("PNG data is short"));
    }
    let pixels = unfilter(&raw, stride, channels, height as usize)?;
    let color_channels = if channels >= 3 { 3 } else { 1 };
    let has_alpha = channels == 2 || channels == 4;
    let mut colour = Vec::with_capacity(width as usize * height as usize * color_channels);
    let mut alpha = Vec::new();
    for px in pixels.chunks(channels) {
        colour.extend_from_slice(&px[..color_channels]);
        if has_alpha {
            alpha.push(px[channels - 1]);
        }
    }
    Ok(PdfImage {
        width,
        height,
        color_space: if color_channels == 3 { "DeviceRGB" } else { "DeviceGray" },
        filter: "FlateDecode",
        data: deflate(&colour),
        smask: has_alpha.then(|| deflate(&alpha)),
    })
}

fn unfilter(raw: &[u8], stride: usize, bpp: usize, rows: usize) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; stride * rows];
    for y in 0..rows {
        let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, src) = (line[0], &line[1..]);
        let (done, cur) = out.split_at_mut(y * stride);
        let prev = if y > 0 { &done[(y - 1) * stride..] } else { &[][..] };
        let cur = &mut cur[..stride];
        for x in 0..stride {
            let a = if x >= bpp { cur[x - bpp] as i16 } else { 0 };
            let b = if y > 0 { prev[x] as i16 } else { 0 };
            let c = if x >= bpp && y > 0 { prev[x - bpp] as i16 } else { 0 };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                _ => return Err(bad("unknown PNG filter")),
            };
            cur[x] = src[x].wrapping_add(predicted as u8);
        }
    }
    Ok(out)
}

pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    e.write_all(data).expect("in-memory deflate");
    e.finish().expect("in-memory deflate")
}

/// A PNG from RGBA pixels (no filtering): for tests and demos that need a seal picture.
pub fn encode_png_rgba(width: u32, height: u32, rgba: &[u8]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut raw = Vec::with_capacity(rgba.len() + height as usize);
    for row in rgba.chunks(width as usize * 4) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &deflate(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A red round seal face, `size`×`size` RGBA: ring, star-ish centre, transparent outside.
pub fn demo_seal_png(size: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((size * size * 4) as usize);
    let c = size as f32 / 2.0;
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f32 + 0.5 - c).powi(2) + (y as f32 + 0.5 - c).powi(2)).sqrt() / c;
            let ink = (0.86..0.97).contains(&d) || d < 0.22;
            px.extend_from_slice(if ink { &[0xD0, 0x10, 0x10, 0xFF] } else { &[0, 0, 0, 0] });
        }
    }
    encode_png_rgba(size, size, &px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_splits_alpha() {
        let png_bytes = encode_png_rgba(2, 1, &[255, 0, 0, 255, 0, 0, 255, 0]);
        let img = from_picture("PNG", &png_bytes).unwrap();
        assert_eq!((img.width, img.height, img.color_space), (2, 1, "DeviceRGB"));
        let mut colour = Vec::new();
        flate2::read::ZlibDecoder::new(img.data.as_slice()).read_to_end(&mut colour).unwrap();
        assert_eq!(colour, [255, 0, 0, 0, 0, 255]);
        let mut alpha = Vec::new();
        flate2::read::ZlibDecoder::new(img.smask.unwrap().as_slice()).read_to_end(&mut alpha).unwrap();
        assert_eq!(alpha, [255, 0]);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082, "PNG CRC");
    }

    #[test]
    fn jpeg_frame_header_gives_size_and_colours_and_svg_is_refused() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0, 20, 0, 30, 3, 1, 2, 3, 0xFF, 0xD9];
        let img = from_picture("JPEG", &jpeg).unwrap();
        assert_eq!((img.width, img.height, img.color_space, img.filter), (30, 20, "DeviceRGB", "DCTDecode"));
        assert!(matches!(from_picture("SVG", b"<svg/>"), Err(Error::Unsupported(_))));
        assert!(from_picture("PNG", b"nope").is_err());
    }

    /// A PNG whose header claims `width`×`height` RGBA over a tiny IDAT.
    fn claimed_png(width: u32, height: u32) -> Vec<u8> {
        let mut png = encode_png_rgba(1, 1, &[0, 0, 0, 0]);
        png[16..20].copy_from_slice(&width.to_be_bytes());
        png[20..24].copy_from_slice(&height.to_be_bytes());
        png
    }

    /// Defect 9 of issue 11: a 254 KB 8192×8192 PNG took the daemon to 800 MB. The header
    /// is judged before anything inflates.
    #[test]
    fn png_decompression_bomb_is_refused_before_decoding() {
        for (w, h) in [(8192, 8192), (MAX_SIDE + 1, 16), (4000, 4000), (2049, 2048)] {
            let e = from_picture("PNG", &claimed_png(w, h)).unwrap_err();
            assert!(e.to_string().contains("out of range") || e.to_string().contains("too large"), "{w}x{h}: {e}");
        }
        // The largest accepted picture is about the bound; a real one decodes.
        assert!(from_picture("PNG", &demo_seal_png(256)).is_ok());
        let jpeg = [0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0x20, 0x00, 0x20, 0x00, 3, 1, 2, 3, 0xFF, 0xD9];
        assert!(from_picture("JPEG", &jpeg).is_err(), "an 8192×8192 JPEG is refused too");
    }
}
