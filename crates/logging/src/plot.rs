//! Line plots of metrics (e.g. over epochs) drawn in Rust straight to PNG: axes with "nice"
//! ticks, one coloured line per series, a legend and a title, with text in DejaVu Sans
//! (`oml-draw`).

use image::{Rgb, RgbImage};
use oml_draw::{dot, draw_text, fit_text, line, line_height, text_width};
use oml_interfaces::{Figure, LoggerError};

use crate::record::ScalarRecord;
use crate::util::invalid;

/// Matplotlib's `tab10` colours, used in order for the series.
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// Size of tick labels, axis labels and legend entries (the height of a line, in pixels).
const LABEL_PX: f32 = 12.0;
/// Size of the title; a title too wide for the plot shrinks down to `TITLE_MIN_PX`, then is cut
/// with an ellipsis.
const TITLE_PX: f32 = 16.0;
/// See [`TITLE_PX`].
const TITLE_MIN_PX: f32 = 11.0;

/// A line plot: build with [`LinePlot::new`] and the `with`-style methods, then
/// [`render`](LinePlot::render) to a PNG [`Figure`].
///
/// ```
/// let fig = oml_logging::LinePlot::new("cmc@1")
///     .x_label("epoch")
///     .series("valid", vec![(1.0, 0.2), (2.0, 0.5), (3.0, 0.6)])
///     .render()?;
/// assert_eq!((fig.width, fig.height), (640, 400));
/// # Ok::<(), oml_logging::LoggerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LinePlot {
    title: String,
    x_label: String,
    y_label: String,
    width: u32,
    height: u32,
    series: Vec<(String, Vec<(f64, f64)>)>,
}

impl LinePlot {
    /// An empty 640×400 plot titled `title`.
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            x_label: String::new(),
            y_label: String::new(),
            width: 640,
            height: 400,
            series: Vec::new(),
        }
    }

    /// Label under the x axis.
    pub fn x_label(mut self, label: &str) -> Self {
        self.x_label = label.to_string();
        self
    }

    /// Label above the y axis.
    pub fn y_label(mut self, label: &str) -> Self {
        self.y_label = label.to_string();
        self
    }

    /// Image size in pixels (at least 200×150).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Adds a series of `(x, y)` points, joined in the given order; a non-finite point breaks
    /// the line.
    pub fn series(mut self, name: &str, points: impl Into<Vec<(f64, f64)>>) -> Self {
        self.series.push((name.to_string(), points.into()));
        self
    }

    /// Draws the plot and encodes it as PNG.
    pub fn render(&self) -> Result<Figure, LoggerError> {
        if self.width < 200 || self.height < 150 || self.width > 8192 || self.height > 8192 {
            return Err(invalid(
                "plot size",
                format!(
                    "{}x{} is outside 200x150 ..= 8192x8192",
                    self.width, self.height
                ),
            ));
        }
        let img = self.draw();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| invalid("plot", e.to_string()))?;
        Ok(Figure {
            width: self.width,
            height: self.height,
            png,
        })
    }

    fn draw(&self) -> RgbImage {
        let (w, h) = (self.width, self.height);
        let mut img = RgbImage::from_pixel(w, h, WHITE);
        let finite: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let (x0, x1) = padded_range(finite.iter().map(|p| p.0));
        let (y0, y1) = padded_range(finite.iter().map(|p| p.1));
        let xt = ticks(x0, x1, 6);
        let yt = ticks(y0, y1, 6);
        // Ticks extend the range to whole tick values so the axes end on labels.
        let (x0, x1) = (x0.min(xt[0]), x1.max(*xt.last().unwrap_or(&x1)));
        let (y0, y1) = (y0.min(yt[0]), y1.max(*yt.last().unwrap_or(&y1)));
        let ylabels: Vec<String> = yt.iter().map(|v| tick_label(*v, step_of(&yt))).collect();
        let left = ylabels
            .iter()
            .map(|l| text_width(l, LABEL_PX))
            .max()
            .unwrap_or(0)
            + 14;
        // Rows of text: the title (4 px from the top), the y label under it, the plot, the x
        // tick labels and the x label.
        let label_h = line_height(LABEL_PX);
        let top = 4 + line_height(TITLE_PX) + 2 + label_h + 4;
        let (right, bottom) = (16u32, 6 + label_h + 2 + label_h + 2);
        let (pl, pr, pt, pb) = (
            left as f64,
            (w - right) as f64,
            top as f64,
            (h - bottom) as f64,
        );
        let map = |x: f64, y: f64| -> (f64, f64) {
            (
                pl + (x - x0) / (x1 - x0) * (pr - pl),
                pb - (y - y0) / (y1 - y0) * (pb - pt),
            )
        };

        // Grid, axes, ticks.
        for (v, label) in yt.iter().zip(&ylabels) {
            let (_, py) = map(x0, *v);
            line(&mut img, pl, py, pr, py, GRID, 1);
            line(&mut img, pl - 4.0, py, pl, py, BLACK, 1);
            draw_text(
                &mut img,
                pl as i64 - 7 - i64::from(text_width(label, LABEL_PX)),
                py as i64 - i64::from(label_h / 2),
                label,
                LABEL_PX,
                BLACK,
            );
        }
        let xstep = step_of(&xt);
        for v in &xt {
            let (px, _) = map(*v, y0);
            line(&mut img, px, pt, px, pb, GRID, 1);
            line(&mut img, px, pb, px, pb + 4.0, BLACK, 1);
            let label = tick_label(*v, xstep);
            draw_text(
                &mut img,
                px as i64 - i64::from(text_width(&label, LABEL_PX) / 2),
                pb as i64 + 6,
                &label,
                LABEL_PX,
                BLACK,
            );
        }
        line(&mut img, pl, pb, pr, pb, BLACK, 1);
        line(&mut img, pl, pt, pl, pb, BLACK, 1);

        // Series.
        for (i, (_, points)) in self.series.iter().enumerate() {
            let c = Rgb(PALETTE[i % PALETTE.len()]);
            let mut prev: Option<(f64, f64)> = None;
            for &(x, y) in points {
                if !(x.is_finite() && y.is_finite()) {
                    prev = None;
                    continue;
                }
                let p = map(x, y);
                if let Some(q) = prev {
                    line(&mut img, q.0, q.1, p.0, p.1, c, 2);
                } else {
                    line(&mut img, p.0, p.1, p.0, p.1, c, 2);
                }
                if points.len() <= 60 {
                    dot(&mut img, p.0, p.1, c);
                }
                prev = Some(p);
            }
        }

        // Title, axis labels, legend.
        let title = fit_text(&self.title, w - 8, TITLE_PX, TITLE_MIN_PX);
        let tx = (i64::from(w) - i64::from(text_width(&title.text, title.px))) / 2;
        // A shrunk title stays centred on the line of a full-size one.
        let ty = 4 + ((TITLE_PX - title.px) / 2.0).round() as i64;
        draw_text(&mut img, tx.max(4), ty, &title.text, title.px, BLACK);
        if !self.x_label.is_empty() {
            let lx = (pl + pr) / 2.0 - f64::from(text_width(&self.x_label, LABEL_PX)) / 2.0;
            draw_text(
                &mut img,
                lx as i64,
                i64::from(h - 2 - label_h),
                &self.x_label,
                LABEL_PX,
                BLACK,
            );
        }
        if !self.y_label.is_empty() {
            draw_text(
                &mut img,
                4,
                i64::from(top - 4 - label_h),
                &self.y_label,
                LABEL_PX,
                BLACK,
            );
        }
        let named: Vec<(usize, &String)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| !n.is_empty())
            .map(|(i, (n, _))| (i, n))
            .collect();
        if named.len() > 1 {
            let lw = named
                .iter()
                .map(|(_, n)| text_width(n, LABEL_PX))
                .max()
                .unwrap_or(0)
                + 22;
            let lx = pr - f64::from(lw) - 6.0;
            let mut ly = pt + 6.0;
            let half = f64::from(label_h / 2);
            for (i, name) in named {
                let c = Rgb(PALETTE[i % PALETTE.len()]);
                line(
                    &mut img,
                    lx,
                    ly + half - 1.0,
                    lx + 14.0,
                    ly + half - 1.0,
                    c,
                    2,
                );
                draw_text(&mut img, lx as i64 + 18, ly as i64, name, LABEL_PX, BLACK);
                ly += f64::from(label_h + 4);
            }
        }
        img
    }
}

/// Plots the metrics `names` from local records (e.g. `metrics.csv`), one series each, with the
/// step (the epoch, for epoch-level metrics) on the x axis.
pub fn plot_metrics(
    records: &[ScalarRecord],
    names: &[&str],
    title: &str,
) -> Result<Figure, LoggerError> {
    let mut plot = LinePlot::new(title).x_label("epoch");
    for name in names {
        let pts: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.name == *name)
            .map(|r| (r.step as f64, r.value))
            .collect();
        plot = plot.series(name, pts);
    }
    plot.render()
}

fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    (lo, hi)
}

/// "Nice" tick values (1, 2 or 5 × 10^k apart) covering `[lo, hi]`, about `target` of them.
fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let raw = (hi - lo) / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let n = ((last - first) as usize).min(100);
    (0..=n).map(|i| (first + i as f64) * step).collect()
}

fn step_of(t: &[f64]) -> f64 {
    if t.len() >= 2 { t[1] - t[0] } else { 1.0 }
}

fn tick_label(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    if v.abs() >= 1e6 || (step < 1e-4 && v != 0.0) {
        return format!("{v:.1e}");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels_of(img: &RgbImage, c: [u8; 3]) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0 == c)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    fn decode(fig: &Figure) -> RgbImage {
        image::load_from_memory(&fig.png).unwrap().to_rgb8()
    }

    #[test]
    fn higher_values_are_drawn_higher_and_lines_span_the_axis() {
        let fig = LinePlot::new("two flat lines")
            .series("high", vec![(0.0, 2.0), (10.0, 2.0)])
            .series("low", vec![(0.0, 1.0), (10.0, 1.0)])
            .render()
            .unwrap();
        let img = decode(&fig);
        assert_eq!((img.width(), img.height()), (fig.width, fig.height));
        let hi = pixels_of(&img, PALETTE[0]);
        let lo = pixels_of(&img, PALETTE[1]);
        // The legend also has swatches; keep the plot lines (the widest horizontal runs).
        let rows = |p: &[(u32, u32)]| {
            let mut count = std::collections::BTreeMap::<u32, u32>::new();
            p.iter()
                .for_each(|(_, y)| *count.entry(*y).or_default() += 1);
            *count.iter().max_by_key(|(_, n)| **n).unwrap().0
        };
        assert!(rows(&hi) < rows(&lo), "2.0 must be above 1.0 (smaller y)");
        let xs = |p: &[(u32, u32)]| {
            (
                p.iter().map(|q| q.0).min().unwrap(),
                p.iter().map(|q| q.0).max().unwrap(),
            )
        };
        let (a, b) = xs(&hi);
        assert!(
            b - a > fig.width / 2,
            "a line over the whole x range spans most of the width"
        );
    }

    #[test]
    fn a_rising_series_goes_up_to_the_right() {
        let pts: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, (i * i) as f64)).collect();
        let img = decode(&LinePlot::new("rise").series("s", pts).render().unwrap());
        let p = pixels_of(&img, PALETTE[0]);
        let n = p.len() as f64;
        let (mx, my) = (
            p.iter().map(|q| q.0 as f64).sum::<f64>() / n,
            p.iter().map(|q| q.1 as f64).sum::<f64>() / n,
        );
        let cov: f64 = p
            .iter()
            .map(|q| (q.0 as f64 - mx) * (q.1 as f64 - my))
            .sum();
        assert!(cov < 0.0, "y pixels must decrease as x grows");
    }

    #[test]
    fn gaps_and_degenerate_ranges_do_not_fail() {
        let fig = LinePlot::new("")
            .series(
                "nan",
                vec![(0.0, f64::NAN), (1.0, 5.0), (2.0, f64::INFINITY)],
            )
            .render()
            .unwrap();
        assert_eq!(fig.width, 640);
        assert!(
            LinePlot::new("t").render().is_ok(),
            "an empty plot draws axes only"
        );
        assert!(matches!(
            LinePlot::new("t").size(10, 10).render(),
            Err(LoggerError::Invalid { .. })
        ));
    }

    #[test]
    fn titles_keep_their_case_and_fit_the_width() {
        let lower = decode(&LinePlot::new("cmc@1").render().unwrap());
        let upper = decode(&LinePlot::new("CMC@1").render().unwrap());
        assert_ne!(lower, upper, "lower case is drawn as lower case");
        let long = "a very long title that cannot fit at any size ".repeat(6);
        let img = decode(&LinePlot::new(&long).size(200, 150).render().unwrap());
        let white = |x: u32, y: u32| img.get_pixel(x, y).0 == [255; 3];
        // The title (rows 0..22) stays 4 pixels away from both sides, and has ink.
        assert!((0..22).all(|y| (0..4).chain(196..200).all(|x| white(x, y))));
        assert!((0..22).any(|y| (4..196).any(|x| !white(x, y))));
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(3.0, 97.0, 6);
        assert!(t[0] <= 3.0 && *t.last().unwrap() >= 97.0);
        assert_eq!(step_of(&t), 20.0);
        assert_eq!(tick_label(0.6000000000000001, 0.2), "0.6");
        assert_eq!(tick_label(2e-5, 1e-5), "2.0e-5");
    }
}
