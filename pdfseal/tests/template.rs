//! Template seal faces drawn with a real CJK font (`fonts-wqy-zenhei`, which `cargo xtask
//! test` installs), decoded back through the seal-picture path and looked at pixel by
//! pixel. The faces are also written to `target/seal-templates/` for a person to see.

use std::io::Read;
use std::path::PathBuf;

use mcs_pdfseal::image::from_picture;
use mcs_pdfseal::template::{CJK_FONT_CANDIDATES, Rendered, Template, render};

const DPI: u32 = 300;
const INK: [u8; 3] = [0xE6, 0x00, 0x12];

fn cjk_font() -> Vec<u8> {
    let path = CJK_FONT_CANDIDATES.iter().find(|p| std::path::Path::new(p).exists()).unwrap_or_else(|| {
        panic!(
            "no CJK font at any of {CJK_FONT_CANDIDATES:?}: apt-get install fonts-wqy-zenhei (cargo xtask test does)"
        )
    });
    std::fs::read(path).unwrap()
}

/// A decoded face: side in pixels and RGBA pixels, read the way a seal picture is.
struct Face {
    side: usize,
    px: Vec<[u8; 4]>,
}

impl Face {
    fn decode(r: &Rendered) -> Face {
        let img = from_picture("PNG", &r.png).expect("a template face is a usable seal picture");
        assert_eq!(img.width, img.height);
        let inflate = |d: &[u8]| {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(d).read_to_end(&mut out).unwrap();
            out
        };
        let (rgb, alpha) = (inflate(&img.data), inflate(img.smask.as_deref().expect("an alpha channel")));
        let px = rgb.chunks(3).zip(alpha).map(|(c, a)| [c[0], c[1], c[2], a]).collect();
        Face { side: img.width as usize, px }
    }

    /// The pixel at millimetres (x, y) from the centre, y up.
    fn at_mm(&self, x: f64, y: f64) -> [u8; 4] {
        let scale = DPI as f64 / 25.4;
        let half = self.side as f64 / 2.0;
        let (col, row) = ((half + x * scale) as usize, (half - y * scale) as usize);
        self.px[row.min(self.side - 1) * self.side + col.min(self.side - 1)]
    }

    fn inked(&self, x: f64, y: f64) -> bool {
        self.at_mm(x, y)[3] > 0
    }

    /// Share of inked pixels in a box of millimetres.
    fn ink_in(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> f64 {
        let steps = 40;
        let mut inked = 0;
        for i in 0..steps {
            for j in 0..steps {
                let x = x0 + (x1 - x0) * (i as f64 + 0.5) / steps as f64;
                let y = y0 + (y1 - y0) * (j as f64 + 0.5) / steps as f64;
                inked += usize::from(self.inked(x, y));
            }
        }
        inked as f64 / (steps * steps) as f64
    }

    fn corners_are_clear(&self) -> bool {
        let s = self.side - 1;
        [0, s, s * self.side, s * self.side + s].iter().all(|i| self.px[*i][3] == 0)
    }

    fn opaque_ink_is_seal_red(&self) -> bool {
        let opaque: Vec<_> = self.px.iter().filter(|p| p[3] == 255).collect();
        !opaque.is_empty() && opaque.iter().all(|p| p[..3] == INK)
    }
}

/// Where a person can look at the faces: `seal-templates/` in the target directory.
fn keep(name: &str, r: &Rendered) {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().map(PathBuf::from).unwrap();
    let dir = target.join("seal-templates");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), &r.png).unwrap();
}

fn px(mm: u32) -> usize {
    (mm as f64 * DPI as f64 / 25.4).round() as usize
}

#[test]
fn round_organisation_seal_has_ring_star_arc_and_bottom_line() {
    let font = cjk_font();
    let r = render(Template::OrgRound, "北京某某建设工程有限公司", Some("合同专用章"), &font, 0, DPI).unwrap();
    keep("org-round", &r);
    assert_eq!((r.width_mm, r.height_mm), (42, 42));
    let face = Face::decode(&r);
    assert_eq!(face.side, px(42));
    assert!(face.corners_are_clear() && face.opaque_ink_is_seal_red());
    assert!(!face.inked(0.0, 20.95) && !face.inked(-20.95, 0.0), "nothing outside the ring");
    for deg in [0.0f64, 45.0, 100.0, 200.0, 300.0] {
        let (s, c) = deg.to_radians().sin_cos();
        assert!(face.at_mm(20.0 * s, 20.0 * c)[3] == 255, "the ring at {deg}°");
        assert!(!face.inked(18.95 * s, 18.95 * c), "the ring is 1.2 mm wide, at {deg}°");
    }
    // The star: its centre, a point, and the notch between two points.
    assert_eq!(face.at_mm(0.0, 0.0)[3], 255);
    assert!(face.inked(0.0, 6.5) && !face.inked(1.8, 5.5));
    // The name covers the upper arc (12 characters over about 216°), none at the bottom.
    let arc: Vec<f64> = (-100..=100)
        .step_by(20)
        .map(|deg| {
            let (s, c) = (deg as f64).to_radians().sin_cos();
            face.ink_in(15.8 * s - 1.5, 15.8 * c - 1.5, 15.8 * s + 1.5, 15.8 * c + 1.5)
        })
        .collect();
    assert!(arc.iter().all(|share| *share > 0.08), "ink along the arc: {arc:?}");
    assert!(face.ink_in(-3.0, -18.0, 3.0, -14.0) < 0.01, "the arc leaves the bottom open");
    // The bottom line stands below the star.
    assert!(face.ink_in(-8.5, -13.0, 8.5, -9.0) > 0.1);
    assert!(face.ink_in(-1.0, -8.5, 1.0, -7.6) < 0.01, "apart from the star");

    // A short name and a long one still fit; no bottom line leaves that space empty.
    for name in ["某公司", "中华人民共和国某某省某某市某某区某某街道办事处某某社区居民委员会"]
    {
        let r = render(Template::OrgRound, name, None, &font, 0, DPI).unwrap();
        let face = Face::decode(&r);
        assert!(face.corners_are_clear() && face.ink_in(-8.5, -13.0, 8.5, -9.0) < 0.01, "{name}");
        keep(&format!("org-round-{}", name.chars().count()), &r);
    }
}

#[test]
fn personal_name_seals_fill_their_grid() {
    let font = cjk_font();
    // (name, add 印, the cells that hold ink: right-top, right-bottom, left-top, left-bottom)
    for (name, yin, file) in [
        ("张三", false, "name-2"),
        ("李小龙", false, "name-3"),
        ("李小龙", true, "name-3-yin"),
        ("欧阳小明", false, "name-4"),
    ] {
        let r = render(Template::PersonalName { add_yin: yin }, name, None, &font, 0, DPI).unwrap();
        keep(file, &r);
        assert_eq!((r.width_mm, r.height_mm), (18, 18));
        let face = Face::decode(&r);
        assert_eq!(face.side, px(18));
        assert!(face.corners_are_clear() && face.opaque_ink_is_seal_red(), "{file}");
        // The border, on each side.
        for (x, y) in [(0.0, 8.2), (0.0, -8.2), (8.2, 0.0), (-8.2, 0.0)] {
            assert_eq!(face.at_mm(x, y)[3], 255, "{file}: border at ({x}, {y})");
        }
        // Ink in every quadrant of the grid, and a gap between border and glyphs.
        for (x0, y0) in [(0.5, 0.5), (0.5, -6.5), (-6.5, 0.5), (-6.5, -6.5)] {
            assert!(face.ink_in(x0, y0, x0 + 6.0, y0 + 6.0) > 0.05, "{file}: quadrant at ({x0}, {y0})");
        }
        assert!(face.ink_in(-7.3, 7.35, 7.3, 7.45) < 0.05, "{file}: the gap inside the border");
    }
}

#[test]
fn bad_texts_fonts_and_resolutions_are_refused_clearly() {
    let font = cjk_font();
    let name = Template::PersonalName { add_yin: false };
    let refused = |template, text: &str, bottom: Option<&str>, font: &[u8], dpi| {
        render(template, text, bottom, font, 0, dpi).expect_err(text).to_string()
    };
    assert!(refused(name, "张", None, &font, DPI).contains("2 to 4"));
    assert!(refused(name, "欧阳小明明", None, &font, DPI).contains("2 to 4"));
    assert!(refused(name, "张 三", None, &font, DPI).contains("no spaces"));
    assert!(refused(name, "张三", Some("印"), &font, DPI).contains("no bottom text"));
    assert!(refused(Template::OrgRound, "某\u{7}公司", None, &font, DPI).contains("control character"));
    assert!(refused(Template::OrgRound, "  ", None, &font, DPI).contains("1 to 40"));
    assert!(refused(Template::OrgRound, &"某".repeat(41), None, &font, DPI).contains("1 to 40"));
    assert!(refused(Template::OrgRound, "某公司", Some(&"章".repeat(13)), &font, DPI).contains("1 to 12"));
    assert!(refused(Template::OrgRound, "某公司\u{10FFFD}", None, &font, DPI).contains("no glyph"));
    assert!(refused(Template::OrgRound, "某公司", None, b"not a font", DPI).contains("font"));
    assert!(refused(Template::OrgRound, "某公司", None, &font, 10).contains("dpi"));
    assert!(render(Template::OrgRound, "某公司", None, &font, 99, DPI).is_err(), "no such face in the collection");
}
