//! Seal faces drawn from text (模板章), for a signer who has no scanned seal picture:
//! red ink (#E60012, opaque) on a transparent background, as a PNG that
//! [`crate::image::from_picture`] takes like any seal picture.
//!
//! - [`Template::PersonalName`]: the square name seal, 18 mm × 18 mm: a border with
//!   rounded corners and the name's characters filling a grid, read in columns from
//!   right to left, each column top to bottom (see the variant for the layouts).
//! - [`Template::OrgRound`]: the round organisation seal, 42 mm across: a 1.2 mm ring, a
//!   five-pointed star 14 mm across in the centre, the organisation's name along the
//!   upper arc from lower left to lower right, each glyph turned to face outwards, and an
//!   optional line below the star (合同专用章, 财务专用章…).
//!
//! Glyphs come from a TrueType/OpenType font (a collection with a face index) that the
//! caller passes as bytes: this crate reads no files. [`CJK_FONT_CANDIDATES`] lists where
//! Debian's CJK fonts are, for a caller to try in order. Every shape — glyph outlines,
//! rings, border, star — is filled by the same anti-aliasing rasteriser.

use ab_glyph::{Font, FontRef, OutlineCurve, Point, point};
use ab_glyph_rasterizer::Rasterizer;

use crate::Error;
use crate::image::encode_png_rgba;

/// Font files with Chinese glyphs as Debian's packages install them, best first
/// (`fonts-wqy-zenhei`, `fonts-wqy-microhei`, `fonts-noto-cjk`, `fonts-arphic-uming`,
/// `fonts-droid-fallback`). Use the first that exists, face 0.
pub const CJK_FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
];

/// Seal red, #E60012.
const INK: [u8; 3] = [0xE6, 0x00, 0x12];

/// The resolutions a face may be drawn at (a 42 mm seal at 1200 dpi is 1984 pixels).
pub const DPI_RANGE: std::ops::RangeInclusive<u32> = 72..=1200;

/// Which seal face to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// The square name seal, 18 mm × 18 mm, for a name of 2 to 4 characters, columns
    /// read from right to left:
    /// - 2 characters: side by side, the first on the right, each a full-height column;
    /// - 3 characters: the first (the surname) as the full-height right column, the other
    ///   two stacked in the left column — unless `add_yin`, which appends 印 and lays the
    ///   four out as below (张三丰 → 张三丰印);
    /// - 4 characters: 2 × 2, the right column top to bottom, then the left column.
    ///
    /// `add_yin` changes only 3-character names.
    PersonalName { add_yin: bool },
    /// The round organisation seal, 42 mm across, for a name of 1 to 40 characters along
    /// the upper arc: spread over 35° per character up to 5 characters, then over 210°
    /// (6 characters) to 240° (20 and more), glyphs narrowed when they would touch.
    /// The bottom text, 1 to 12 characters, stands horizontally below the star.
    OrgRound,
}

/// A drawn seal face.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// RGBA PNG, `width_mm` × `height_mm` at the requested dpi (rounded to pixels).
    pub png: Vec<u8>,
    /// Printed width.
    pub width_mm: u32,
    /// Printed height.
    pub height_mm: u32,
}

/// Draw `template` with `text` (and, for [`Template::OrgRound`], `bottom_text`) using face
/// `font_index` (0 unless `font` is a collection) of the font in `font`, at `dpi` pixels
/// per inch. Leading and trailing white space of the texts is dropped.
///
/// Refused with [`Error::Invalid`]: a text of no characters, more than 40 (a personal
/// name: other than 2 to 4, or with spaces; a bottom text: more than 12) or with a
/// control character; bottom text on a personal seal; a character the font has no
/// glyph for; a font that does not parse; a dpi outside [`DPI_RANGE`].
pub fn render(
    template: Template,
    text: &str,
    bottom_text: Option<&str>,
    font: &[u8],
    font_index: u32,
    dpi: u32,
) -> Result<Rendered, Error> {
    if !DPI_RANGE.contains(&dpi) {
        return Err(Error::Invalid(format!(
            "seal template: {dpi} dpi is outside {} to {}",
            DPI_RANGE.start(),
            DPI_RANGE.end()
        )));
    }
    let font = FontRef::try_from_slice_and_index(font, font_index)
        .map_err(|_| Error::Invalid(format!("seal template: not a TrueType/OpenType font with a face {font_index}")))?;
    let name = characters("the seal text", text, 40)?;
    let bottom = bottom_text.map(|b| characters("the bottom text", b, 12)).transpose()?;
    let size_mm = match template {
        Template::PersonalName { .. } => 18,
        Template::OrgRound => 42,
    };
    let mut canvas = Canvas::new(size_mm as f32, dpi);
    match template {
        Template::PersonalName { add_yin } => {
            if bottom.is_some() {
                return Err(Error::Invalid("seal template: a personal name seal has no bottom text".into()));
            }
            if !(2..=4).contains(&name.len()) || name.iter().any(|c| c.is_whitespace()) {
                return Err(Error::Invalid(format!(
                    "seal template: a personal name has 2 to 4 characters and no spaces, not `{}`",
                    text.trim()
                )));
            }
            personal_name(&mut canvas, &font, &name, add_yin)?;
        }
        Template::OrgRound => org_round(&mut canvas, &font, &name, bottom.as_deref())?,
    }
    Ok(Rendered { png: canvas.png(), width_mm: size_mm, height_mm: size_mm })
}

/// The characters of a text, checked.
fn characters(what: &str, text: &str, max: usize) -> Result<Vec<char>, Error> {
    let chars: Vec<char> = text.trim().chars().collect();
    if let Some(c) = chars.iter().find(|c| c.is_control()) {
        return Err(Error::Invalid(format!("seal template: {what} has a control character (U+{:04X})", *c as u32)));
    }
    if chars.is_empty() || chars.len() > max {
        return Err(Error::Invalid(format!("seal template: {what} has {} characters, not 1 to {max}", chars.len())));
    }
    Ok(chars)
}

/// Where one glyph goes, in millimetres from the face's centre, y up: the glyph's em
/// square is stretched onto `width` × `height` around (`x`, `y`) and turned clockwise by
/// `turn` radians (its top then points that way from straight up).
struct Cell {
    x: f32,
    y: f32,
    width: f32,
    height: f32,
    turn: f32,
}

/// A square face being drawn: ink coverage per pixel.
struct Canvas {
    side: usize,
    px_per_mm: f32,
    cover: Vec<f32>,
}

impl Canvas {
    fn new(side_mm: f32, dpi: u32) -> Canvas {
        let px_per_mm = dpi as f32 / 25.4;
        let side = (side_mm * px_per_mm).round().max(1.0) as usize;
        Canvas { side, px_per_mm: side as f32 / side_mm, cover: vec![0.0; side * side] }
    }

    /// Millimetres from the centre, y up → pixels from the top-left corner, y down.
    fn px(&self, p: Point) -> Point {
        let half = self.side as f32 / 2.0;
        point(half + p.x * self.px_per_mm, half - p.y * self.px_per_mm)
    }

    /// Ink in the shape the closed contours of `curves` (in millimetres) enclose.
    fn fill(&mut self, curves: &[OutlineCurve]) {
        let curves: Vec<OutlineCurve> = curves.iter().map(|c| map_curve(c, |p| self.px(p))).collect();
        let points: Vec<Point> = curves.iter().flat_map(curve_points).collect();
        // Rasterise only the shape's box, a pixel wider all round and within the face: a
        // glyph is a small part of it. (The shapes here lie inside the face.)
        let limit = self.side as f32;
        let corner = |pick: fn(&Point) -> f32, start: f32, fold: fn(f32, f32) -> f32| {
            points.iter().map(pick).fold(start, fold).clamp(0.0, limit)
        };
        let (x0, y0) = (corner(|p| p.x - 1.0, limit, f32::min).floor(), corner(|p| p.y - 1.0, limit, f32::min).floor());
        let (x1, y1) = (corner(|p| p.x + 1.0, 0.0, f32::max).ceil(), corner(|p| p.y + 1.0, 0.0, f32::max).ceil());
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
        let mut r = Rasterizer::new(w, h);
        let local = |p: Point| point((p.x - x0).clamp(0.0, w as f32), (p.y - y0).clamp(0.0, h as f32));
        for c in &curves {
            match map_curve(c, local) {
                OutlineCurve::Line(a, b) => r.draw_line(a, b),
                OutlineCurve::Quad(a, b, c) => r.draw_quad(a, b, c),
                OutlineCurve::Cubic(a, b, c, d) => r.draw_cubic(a, b, c, d),
            }
        }
        let (side, left, top) = (self.side, x0 as usize, y0 as usize);
        r.for_each_pixel_2d(|x, y, v| {
            let at = &mut self.cover[(top + y as usize) * side + left + x as usize];
            *at = at.max(v.min(1.0));
        });
    }

    /// Ink in `c`'s glyph, placed by `cell`.
    fn glyph(&mut self, font: &FontRef<'_>, c: char, cell: &Cell) -> Result<(), Error> {
        let id = font.glyph_id(c);
        if id.0 == 0 {
            return Err(Error::Invalid(format!("seal template: the font has no glyph for `{c}`")));
        }
        // White space has no outline: nothing to draw.
        let Some(outline) = font.outline(id) else { return Ok(()) };
        let em = font.units_per_em().unwrap_or(1000.0);
        let centre = point(
            (outline.bounds.min.x + outline.bounds.max.x) / 2.0,
            (outline.bounds.min.y + outline.bounds.max.y) / 2.0,
        );
        let (sin, cos) = cell.turn.sin_cos();
        let place = |p: Point| {
            let (x, y) = ((p.x - centre.x) * cell.width / em, (p.y - centre.y) * cell.height / em);
            point(cell.x + x * cos + y * sin, cell.y - x * sin + y * cos)
        };
        let curves: Vec<OutlineCurve> = outline.curves.iter().map(|c| map_curve(c, place)).collect();
        self.fill(&curves);
        // Carved strokes are heavier than a text face's: thicken them by drawing the glyph
        // again moved a little in eight directions.
        let bold = 0.03 * cell.width.min(cell.height);
        for k in 0..8 {
            let (dy, dx) = (k as f32 * std::f32::consts::FRAC_PI_4).sin_cos();
            let moved: Vec<OutlineCurve> =
                curves.iter().map(|c| map_curve(c, |p| point(p.x + bold * dx, p.y + bold * dy))).collect();
            self.fill(&moved);
        }
        Ok(())
    }

    fn png(&self) -> Vec<u8> {
        let rgba: Vec<u8> = self
            .cover
            .iter()
            .flat_map(|v| {
                let alpha = (v * 255.0).round() as u8;
                if alpha == 0 { [0, 0, 0, 0] } else { [INK[0], INK[1], INK[2], alpha] }
            })
            .collect();
        encode_png_rgba(self.side as u32, self.side as u32, &rgba)
    }
}

/// `c` with each of its points moved by `f`.
fn map_curve(c: &OutlineCurve, f: impl Fn(Point) -> Point) -> OutlineCurve {
    match c {
        OutlineCurve::Line(a, b) => OutlineCurve::Line(f(*a), f(*b)),
        OutlineCurve::Quad(a, b, c) => OutlineCurve::Quad(f(*a), f(*b), f(*c)),
        OutlineCurve::Cubic(a, b, c, d) => OutlineCurve::Cubic(f(*a), f(*b), f(*c), f(*d)),
    }
}

/// The end and control points of `c` (a curve lies within their hull).
fn curve_points(c: &OutlineCurve) -> Vec<Point> {
    match c {
        OutlineCurve::Line(a, b) => vec![*a, *b],
        OutlineCurve::Quad(a, b, c) => vec![*a, *b, *c],
        OutlineCurve::Cubic(a, b, c, d) => vec![*a, *b, *c, *d],
    }
}

/// The closed contour through `points`.
fn contour(points: &[Point]) -> Vec<OutlineCurve> {
    (0..points.len()).map(|i| OutlineCurve::Line(points[i], points[(i + 1) % points.len()])).collect()
}

/// A circle as a polygon fine enough at any dpi here (a chord strays under 0.01 mm).
fn circle(radius: f32) -> Vec<Point> {
    const STEPS: usize = 360;
    (0..STEPS)
        .map(|i| {
            let a = i as f32 * std::f32::consts::TAU / STEPS as f32;
            point(radius * a.cos(), radius * a.sin())
        })
        .collect()
}

/// A square of side `2 × half` with corners rounded by `radius`, centred on the origin.
fn rounded_square(half: f32, radius: f32) -> Vec<Point> {
    const STEPS: usize = 24;
    let inner = half - radius;
    let mut points = Vec::new();
    for (corner, (sx, sy)) in [(1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)].into_iter().enumerate() {
        for i in 0..=STEPS {
            let a = (corner as f32 + i as f32 / STEPS as f32) * std::f32::consts::FRAC_PI_2;
            points.push(point(sx * inner + radius * a.cos(), sy * inner + radius * a.sin()));
        }
    }
    points
}

/// The band between two closed outlines (the inner one runs the other way, so it is
/// left empty).
fn band(outer: &[Point], inner: &[Point]) -> Vec<OutlineCurve> {
    let reversed: Vec<Point> = inner.iter().rev().copied().collect();
    [contour(outer), contour(&reversed)].concat()
}

fn personal_name(canvas: &mut Canvas, font: &FontRef<'_>, name: &[char], add_yin: bool) -> Result<(), Error> {
    // 0.3 mm clear of the edge, a 1.1 mm border with corners of 1.6 mm, 0.6 mm inside it.
    let (edge, border) = (8.7, 1.1);
    canvas.fill(&band(&rounded_square(edge, 1.6), &rounded_square(edge - border, 0.5)));
    let mut name = name.to_vec();
    if add_yin && name.len() == 3 {
        name.push('印');
    }
    let half = edge - border - 0.6;
    // Columns right to left; (column, top row, rows tall) on a 2 × 2 grid.
    let slots: &[(f32, f32, f32)] = match name.len() {
        2 => &[(0.0, 0.0, 2.0), (1.0, 0.0, 2.0)],
        3 => &[(0.0, 0.0, 2.0), (1.0, 0.0, 1.0), (1.0, 1.0, 1.0)],
        _ => &[(0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 0.0, 1.0), (1.0, 1.0, 1.0)],
    };
    for (c, (column, row, rows)) in name.iter().zip(slots) {
        let cell = Cell {
            x: half / 2.0 - column * half,
            y: half - (row + rows / 2.0) * half,
            width: half * 0.96,
            height: rows * half * 0.96,
            turn: 0.0,
        };
        canvas.glyph(font, *c, &cell)?;
    }
    Ok(())
}

fn org_round(canvas: &mut Canvas, font: &FontRef<'_>, name: &[char], bottom: Option<&[char]>) -> Result<(), Error> {
    // A 1.2 mm ring 0.4 mm inside the edge.
    let outer = 20.6;
    let inner = outer - 1.2;
    canvas.fill(&band(&circle(outer), &circle(inner)));
    // The star: ten corners, the inner ones where a regular star's edges cross.
    let (r_out, r_in) = (7.0f32, 7.0 * 0.381_966);
    let star: Vec<Point> = (0..10)
        .map(|i| {
            let a = i as f32 * std::f32::consts::PI / 5.0;
            let r = if i % 2 == 0 { r_out } else { r_in };
            point(r * a.sin(), r * a.cos())
        })
        .collect();
    canvas.fill(&contour(&star));
    // The name: glyphs 6 mm tall, their tops 0.6 mm inside the ring.
    let height = 6.0;
    let radius = inner - 0.6 - height / 2.0;
    let n = name.len();
    let span_deg = if n <= 5 { 35.0 * n as f32 } else { 210.0 + 30.0 * ((n - 6).min(14) as f32 / 14.0) };
    let pitch = span_deg.to_radians() / n as f32;
    let width = height.min(pitch * radius * 0.92);
    for (i, c) in name.iter().enumerate() {
        let turn = -span_deg.to_radians() / 2.0 + pitch * (i as f32 + 0.5);
        let cell = Cell { x: radius * turn.sin(), y: radius * turn.cos(), width, height, turn };
        canvas.glyph(font, *c, &cell)?;
    }
    // The bottom line: 4.2 mm tall, at most 17 mm wide, below the star.
    if let Some(bottom) = bottom {
        let (height, room) = (4.2f32, 17.0);
        let advance = height.min(room / bottom.len() as f32);
        let start = -advance * bottom.len() as f32 / 2.0;
        for (i, c) in bottom.iter().enumerate() {
            let x = start + advance * (i as f32 + 0.5);
            canvas.glyph(font, *c, &Cell { x, y: -11.0, width: advance * 0.95, height, turn: 0.0 })?;
        }
    }
    Ok(())
}
