//! # oml-draw
//!
//! The one raster drawing module of oml-rs: the metric plots of `oml-logging` and the retrieval
//! grids of `oml-datasets` both draw with it.
//!
//! - Text in DejaVu Sans, embedded through the `dejavu` crate and rasterised by `ab_glyph`:
//!   glyph coverage is alpha-blended onto an [`RgbImage`], so text is anti-aliased, lower case
//!   stays lower case and non-ASCII characters (`é`, `ß`, `—`, `…`) are drawn as written. No
//!   system font is needed. A size `px` is the height of a line (ascent + descent) in pixels;
//!   [`draw_text`] takes the top of that line.
//! - [`text_width`] measures, [`fit_text`] fits a title into a width (a smaller size first, down
//!   to a minimum, then a cut with an ellipsis `…`), and [`fit_first`] tries shorter variants of
//!   a title before cutting the last one.
//! - [`line()`], [`dot`], [`put_pixel`] and [`blend`]: the plot primitives.
//!
//! # Example
//!
//! ```
//! use oml_draw::{Rgb, RgbImage, draw_text, fit_text, text_width};
//!
//! let white = Rgb([255, 255, 255]);
//! let mut img = RgbImage::from_pixel(160, 20, white);
//! let text = "cmc@1 — Größe";
//! assert!(text_width(text, 13.0) < 160);
//! draw_text(&mut img, 2, 2, text, 13.0, Rgb([0, 0, 0]));
//! let inked = img.pixels().filter(|p| **p != white).count();
//! assert!(inked > 50, "{inked} pixels changed");
//!
//! // Too wide for 60 pixels even at 9 px: cut with an ellipsis.
//! let fitted = fit_text("Gallery #1234 - 0.123", 60, 13.0, 9.0);
//! assert!(fitted.text.ends_with('…') && text_width(&fitted.text, fitted.px) <= 60);
//! ```

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, Glyph, GlyphId, PxScale, ScaleFont, point};

pub use image::{Rgb, RgbImage};

/// The character that ends a title cut by [`fit_text`].
pub const ELLIPSIS: char = '…';

/// The smallest size [`fit_text`] shrinks to, whatever minimum it is given.
const SMALLEST_PX: f32 = 1.0;

/// Steps in which [`fit_text`] shrinks a size, in pixels.
const SHRINK_STEP: f32 = 0.25;

/// DejaVu Sans, parsed once.
fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        FontRef::try_from_slice(dejavu::sans::regular())
            .expect("the DejaVu Sans embedded by the dejavu crate is a valid TrueType font")
    })
}

fn valid_px(px: f32) -> bool {
    px.is_finite() && px > 0.0
}

/// The glyphs of `text` at `px`, placed on a baseline at y = 0 from x = 0 (each glyph on a whole
/// pixel, with kerning), and the advance of the whole line. Control characters are skipped.
fn layout(text: &str, px: f32) -> (Vec<Glyph>, f32) {
    let font = font();
    let scaled = font.as_scaled(PxScale::from(px));
    let mut pen = 0.0f32;
    let mut prev: Option<GlyphId> = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars().filter(|c| !c.is_control()) {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(px, point(pen.round(), 0.0)));
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    (glyphs, pen)
}

/// Height in pixels of a line of text at size `px` (ascent + descent, rounded up): the rows
/// [`draw_text`] may ink below its `y`.
pub fn line_height(px: f32) -> u32 {
    if valid_px(px) { px.ceil() as u32 } else { 0 }
}

/// Width in pixels of `text` drawn at size `px`: from the `x` given to [`draw_text`] to the
/// right end of the last glyph's advance or ink, whichever is further. 0 for empty text or a
/// size that is not a positive number.
pub fn text_width(text: &str, px: f32) -> u32 {
    if !valid_px(px) {
        return 0;
    }
    let (glyphs, advance) = layout(text, px);
    let ink = glyphs
        .into_iter()
        .filter_map(|g| font().outline_glyph(g))
        .map(|o| o.px_bounds().max.x)
        .fold(0.0f32, f32::max);
    advance.max(ink).ceil() as u32
}

/// Draws `text` at size `px` in `color`, starting at `x` with the top of the line at `y` (the
/// baseline is `y` + the font's ascent, rounded to a whole pixel). Each glyph's coverage is
/// alpha-blended onto the image; whatever falls outside the image is clipped.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, px: f32, color: Rgb<u8>) {
    if !valid_px(px) {
        return;
    }
    let font = font();
    let ascent = font.as_scaled(PxScale::from(px)).ascent();
    let baseline = (y as f32 + ascent).round();
    let (glyphs, _) = layout(text, px);
    for mut glyph in glyphs {
        glyph.position = point(x as f32 + glyph.position.x, baseline);
        if let Some(outlined) = font.outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            let (bx, by) = (bounds.min.x as i64, bounds.min.y as i64);
            outlined.draw(|gx, gy, coverage| {
                blend(img, bx + i64::from(gx), by + i64::from(gy), color, coverage);
            });
        }
    }
}

/// A title fitted into a width by [`fit_text`] or [`fit_first`]: the text to draw and the size
/// to draw it at.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedText {
    /// The text: the input, or a prefix of it ending in [`ELLIPSIS`], or empty.
    pub text: String,
    /// The size in pixels, between the minimum and the preferred size asked for.
    pub px: f32,
}

/// The sizes `fit_text` works between: `(px, min_px)` with `SMALLEST_PX <= min_px <= px`.
fn size_range(px: f32, min_px: f32) -> Option<(f32, f32)> {
    if !valid_px(px) {
        return None;
    }
    let px = px.max(SMALLEST_PX);
    let min_px = if min_px.is_finite() { min_px } else { px };
    Some((px, min_px.clamp(SMALLEST_PX, px)))
}

/// The largest size in `[min_px, px]` (in steps of a quarter pixel below `px`) at which the
/// whole of `text` is at most `max_width` wide.
fn whole_fit(text: &str, max_width: u32, px: f32, min_px: f32) -> Option<f32> {
    let width = text_width(text, px);
    if width <= max_width {
        return Some(px);
    }
    // Width is nearly proportional to the size: start from the proportional guess.
    let guess = px * max_width as f32 / width as f32;
    let mut s = ((guess / SHRINK_STEP).floor() * SHRINK_STEP).min(px - SHRINK_STEP);
    while s > min_px {
        if text_width(text, s) <= max_width {
            return Some(s);
        }
        s -= SHRINK_STEP;
    }
    (text_width(text, min_px) <= max_width).then_some(min_px)
}

/// Fits `text` into `max_width` pixels: at the preferred size `px` if it fits there, else at
/// the largest smaller size (down to `min_px`, in quarter-pixel steps) at which it fits whole,
/// else at `min_px` cut to its longest prefix that fits with an [`ELLIPSIS`] appended (just the
/// ellipsis, or empty text, when nothing more fits).
///
/// The result is never wider than `max_width` ([`text_width`] of its text at its size), and is
/// the input unchanged at `px` whenever that fits. `min_px` is kept between 1 and `px`; a `px`
/// that is not a positive number gives empty text.
pub fn fit_text(text: &str, max_width: u32, px: f32, min_px: f32) -> FittedText {
    fit_first(&[text], max_width, px, min_px)
}

/// `text` at `min_px`, cut to its longest prefix that fits `max_width` with an [`ELLIPSIS`]
/// appended (just the ellipsis, or empty text, when nothing more fits).
fn cut_to_fit(text: &str, max_width: u32, min_px: f32) -> FittedText {
    let chars: Vec<char> = text.chars().collect();
    let cut = |n: usize| -> String {
        let mut s: String = chars[..n].iter().collect();
        s.truncate(s.trim_end().len());
        s.push(ELLIPSIS);
        s
    };
    let fits = |s: &str| text_width(s, min_px) <= max_width;
    if !fits(&cut(0)) {
        return FittedText {
            text: String::new(),
            px: min_px,
        };
    }
    // The longest prefix that fits: `lo` fits, the whole text (`chars.len()`) does not.
    let (mut lo, mut hi) = (0, chars.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(&cut(mid)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    FittedText {
        text: cut(lo),
        px: min_px,
    }
}

/// Fits the first of `candidates` (a title, then shorter variants of it, most important part last)
/// that fits whole into `max_width` at a size between `min_px` and `px`; when none does, the last
/// candidate at `min_px`, cut as [`fit_text`] cuts. The result is never wider than `max_width`; no
/// candidates give empty text.
///
/// ```
/// // The distance must stay readable: drop "Gallery" rather than cut the number.
/// let f = oml_draw::fit_first(&["Gallery #1234 - 0.123", "#1234 - 0.123", "0.123"], 80, 13.0, 9.0);
/// assert!(f.text.ends_with("0.123"));
/// ```
pub fn fit_first<S: AsRef<str>>(
    candidates: &[S],
    max_width: u32,
    px: f32,
    min_px: f32,
) -> FittedText {
    let Some((px, min_px)) = size_range(px, min_px) else {
        return FittedText {
            text: String::new(),
            px,
        };
    };
    for candidate in candidates {
        let text = candidate.as_ref();
        if let Some(px) = whole_fit(text, max_width, px, min_px) {
            return FittedText {
                text: text.to_string(),
                px,
            };
        }
    }
    match candidates.last() {
        Some(last) => cut_to_fit(last.as_ref(), max_width, min_px),
        None => FittedText {
            text: String::new(),
            px,
        },
    }
}

/// Blends `color` over the pixel `(x, y)` with opacity `alpha` (clamped to `[0, 1]`); pixels
/// outside the image are ignored.
pub fn blend(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>, alpha: f32) {
    if alpha.is_nan()
        || alpha <= 0.0
        || x < 0
        || y < 0
        || x >= i64::from(img.width())
        || y >= i64::from(img.height())
    {
        return;
    }
    let a = alpha.min(1.0);
    let pixel = img.get_pixel_mut(x as u32, y as u32);
    for (dst, src) in pixel.0.iter_mut().zip(color.0) {
        *dst = (f32::from(*dst) * (1.0 - a) + f32::from(src) * a).round() as u8;
    }
}

/// Sets the pixel `(x, y)` to `color`; pixels outside the image are ignored.
pub fn put_pixel(img: &mut RgbImage, x: i64, y: i64, color: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < i64::from(img.width()) && y < i64::from(img.height()) {
        img.put_pixel(x as u32, y as u32, color);
    }
}

/// Bresenham's line from `(x0, y0)` to `(x1, y1)` (rounded to whole pixels), `thick` pixels wide
/// (drawn as `thick`×`thick` squares whose top-left corner follows the line), clipped to the
/// image.
pub fn line(img: &mut RgbImage, x0: f64, y0: f64, x1: f64, y1: f64, color: Rgb<u8>, thick: i64) {
    let (mut x, mut y) = (x0.round() as i64, y0.round() as i64);
    let (xe, ye) = (x1.round() as i64, y1.round() as i64);
    let (dx, dy) = ((xe - x).abs(), -(ye - y).abs());
    let (sx, sy) = (if x < xe { 1 } else { -1 }, if y < ye { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        for ox in 0..thick {
            for oy in 0..thick {
                put_pixel(img, x + ox, y + oy, color);
            }
        }
        if x == xe && y == ye {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// A 6×6 square marker around `(x, y)` (rounded; columns and rows −2..=3 of it), clipped to the
/// image.
pub fn dot(img: &mut RgbImage, x: f64, y: f64, color: Rgb<u8>) {
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for ox in -2..=3 {
        for oy in -2..=3 {
            put_pixel(img, cx + ox, cy + oy, color);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
    const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

    fn render(text: &str, px: f32) -> RgbImage {
        let mut img = RgbImage::from_pixel(240, 24, WHITE);
        draw_text(&mut img, 2, 2, text, px, BLACK);
        img
    }

    fn ink(img: &RgbImage) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| **p != WHITE)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn lower_case_and_non_ascii_text_draws_ink() {
        for text in ["cmc@1", "abcxyz", "Größe", "é", "ß", "—", "…", "Ω", "日"] {
            assert!(
                !ink(&render(text, 13.0)).is_empty(),
                "{text:?} drew nothing"
            );
        }
        assert!(ink(&render("", 13.0)).is_empty());
        assert!(ink(&render("   ", 13.0)).is_empty());
        // Anti-aliased: some pixels are between paper and ink.
        let img = render("cmc@1", 13.0);
        assert!(img.pixels().any(|p| p.0[0] > 0 && p.0[0] < 255));
        assert!(img.pixels().any(|p| p.0[0] < 64), "stems are dark");
    }

    #[test]
    fn distinct_strings_give_distinct_images() {
        let texts = [
            "cmc@1", "CMC@1", "cmc/1", "o", "ö", "Grosse", "Größe", "0.123", "0.128",
        ];
        let images: Vec<RgbImage> = texts.iter().map(|t| render(t, 13.0)).collect();
        for i in 0..texts.len() {
            for j in i + 1..texts.len() {
                assert_ne!(images[i], images[j], "{:?} vs {:?}", texts[i], texts[j]);
            }
        }
    }

    #[test]
    fn ink_stays_inside_the_measured_box() {
        for (text, px) in [("cmc@1 — Größe", 13.0), ("gjpqy ÉÅ", 16.0), ("0.123", 9.0)] {
            let (x, y) = (5i64, 3i64);
            let mut img = RgbImage::from_pixel(300, 40, WHITE);
            draw_text(&mut img, x, y, text, px, BLACK);
            let w = text_width(text, px);
            let h = line_height(px);
            for (ix, iy) in ink(&img) {
                assert!(
                    i64::from(ix) >= x - 1 && i64::from(ix) < x + i64::from(w),
                    "{text:?}: column {ix} outside {x}..{}",
                    x + i64::from(w)
                );
                assert!(
                    i64::from(iy) >= y - 1 && i64::from(iy) <= y + i64::from(h),
                    "{text:?}: row {iy} outside {y}..{}",
                    y + i64::from(h)
                );
            }
        }
    }

    #[test]
    fn text_width_grows_with_the_text_and_the_size() {
        assert_eq!(text_width("", 13.0), 0);
        assert_eq!(text_width("abc", 0.0), 0);
        assert_eq!(text_width("abc", f32::NAN), 0);
        let mut prev = 0;
        for text in ["c", "cm", "cmc", "cmc@", "cmc@1", "cmc@1 — Größe"] {
            let w = text_width(text, 13.0);
            assert!(w > prev, "{text:?}: {w} <= {prev}");
            prev = w;
        }
        let mut prev = 0;
        for px in [6.0, 9.0, 11.0, 13.0, 16.0, 24.0] {
            let w = text_width("Gallery #12 - 0.123", px);
            assert!(w > prev, "{px}: {w} <= {prev}");
            prev = w;
        }
        // Proportional text: `i` is narrower than `m`.
        assert!(text_width("iiii", 13.0) < text_width("mmmm", 13.0));
        assert_eq!(line_height(13.0), 13);
        assert_eq!(line_height(12.5), 13);
    }

    #[test]
    fn fit_keeps_text_that_fits_and_is_never_wider_than_asked() {
        let title = "Gallery #1234 - 0.123";
        let full = text_width(title, 13.0);
        let same = fit_text(title, full, 13.0, 9.0);
        assert_eq!(
            same,
            FittedText {
                text: title.into(),
                px: 13.0
            }
        );
        // A little narrower: the same text, smaller.
        let shrunk = fit_text(title, full - 10, 13.0, 9.0);
        assert_eq!(shrunk.text, title);
        assert!(shrunk.px < 13.0 && shrunk.px >= 9.0);
        assert!(text_width(&shrunk.text, shrunk.px) <= full - 10);
        for width in 0..=full + 5 {
            for (px, min) in [(13.0, 9.0), (16.0, 11.0), (12.0, 12.0), (13.0, 20.0)] {
                let f = fit_text(title, width, px, min);
                assert!(text_width(&f.text, f.px) <= width, "{width} {f:?}");
                assert!(f.px <= px && f.px >= min.min(px), "{f:?}");
                let stem = f.text.trim_end_matches(ELLIPSIS);
                assert!(title.starts_with(stem), "{f:?} is not a prefix");
                assert!(f.text == title || f.text.ends_with(ELLIPSIS) || f.text.is_empty());
            }
        }
        let cut = fit_text(title, 50, 13.0, 9.0);
        assert!(cut.text.ends_with(ELLIPSIS) && cut.text.len() > ELLIPSIS.len_utf8());
        assert_eq!(cut.px, 9.0);
        assert_eq!(fit_text(title, 0, 13.0, 9.0).text, "");
        assert_eq!(fit_text(title, 100, f32::NAN, 9.0).text, "");
        assert_eq!(fit_text("", 0, 13.0, 9.0).text, "");
    }

    #[test]
    fn fit_first_prefers_the_first_candidate_that_fits_whole() {
        let candidates = ["Gallery #1234 - 0.123", "#1234 - 0.123", "0.123"];
        let wide = fit_first(&candidates, 500, 13.0, 9.0);
        assert_eq!(
            wide,
            FittedText {
                text: candidates[0].into(),
                px: 13.0
            }
        );
        let w1 = text_width(candidates[1], 9.0);
        let mid = fit_first(&candidates, w1, 13.0, 9.0);
        assert_eq!(mid.text, candidates[1]);
        let w2 = text_width(candidates[2], 9.0);
        assert_eq!(fit_first(&candidates, w2, 13.0, 9.0).text, "0.123");
        let tiny = fit_first(&candidates, w2 - 1, 13.0, 9.0);
        assert!(tiny.text.ends_with(ELLIPSIS) || tiny.text.is_empty());
        assert!(text_width(&tiny.text, tiny.px) < w2);
        assert_eq!(fit_first::<&str>(&[], 100, 13.0, 9.0).text, "");
    }

    #[test]
    fn primitives_clip_and_keep_their_shape() {
        let mut img = RgbImage::from_pixel(20, 10, WHITE);
        line(&mut img, -5.0, 2.0, 30.0, 2.0, BLACK, 2);
        assert!(
            (0..20).all(|x| img.get_pixel(x, 2).0 == BLACK.0 && img.get_pixel(x, 3).0 == BLACK.0)
        );
        assert_eq!(ink(&img).len(), 40);
        let mut img = RgbImage::from_pixel(20, 20, WHITE);
        dot(&mut img, 10.0, 10.0, BLACK);
        assert_eq!(ink(&img).len(), 36);
        assert_eq!(*img.get_pixel(8, 8), BLACK);
        assert_eq!(*img.get_pixel(13, 13), BLACK);
        dot(&mut img, -100.0, 5.0, BLACK);
        put_pixel(&mut img, 20, 0, BLACK);
        assert_eq!(ink(&img).len(), 36);
        blend(&mut img, 0, 0, BLACK, 0.5);
        assert_eq!(img.get_pixel(0, 0).0, [128; 3]);
        blend(&mut img, 1, 0, BLACK, f32::NAN);
        assert_eq!(*img.get_pixel(1, 0), WHITE);
        // Text far outside the image is clipped, not a panic.
        draw_text(&mut img, -500, -500, "clipped", 13.0, BLACK);
        draw_text(&mut img, 15, 15, "clipped", 13.0, BLACK);
    }
}
