//! Drawing retrieval results as OML does (reference §1.7): one row per query with the query
//! (blue frame, `Query #i`), its top retrieved gallery items (green when relevant, red when not,
//! black when ground truth is unknown; `Gallery #id - distance`), then ground-truth items (grey,
//! `GT`). As a PNG grid ([`draw_retrieval_grid`]) or a self-contained HTML page
//! ([`retrieval_html`]). Titles are drawn in DejaVu Sans by `oml-draw` (no system fonts are
//! needed) and fitted to their cell: a smaller size first, then shorter variants that keep the
//! distance (`#id - distance`, then the distance alone), then an ellipsis.

use oml_interfaces::datasets::{DatasetError, Rgb, RgbImage, VisualizableDataset};
use oml_interfaces::{Figure, RetrievalResults};

use oml_draw::{draw_text, text_width};

/// Preferred size of the cell titles at `text_scale` 1 (the height of a line, in pixels).
pub const TITLE_PX: f32 = 13.0;
/// Smallest size a cell title shrinks to at `text_scale` 1 before it is shortened.
pub const TITLE_MIN_PX: f32 = 9.0;

/// OML's `RED`.
pub const RED: Rgb = [255, 0, 0];
/// OML's `GREEN`.
pub const GREEN: Rgb = [0, 255, 0];
/// OML's `BLUE`.
pub const BLUE: Rgb = [0, 0, 255];
/// OML's `GRAY`.
pub const GRAY: Rgb = [120, 120, 120];
/// OML's `BLACK`.
pub const BLACK: Rgb = [0, 0, 0];
/// Background of the grid.
pub const WHITE: Rgb = [255, 255, 255];

/// Why a figure could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum VisualizeError {
    /// An item could not be visualised.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A query position is outside the results.
    #[error("query {query} is outside the {n_queries} queries of the results")]
    QueryOutOfRange {
        /// The position asked for.
        query: usize,
        /// Number of queries.
        n_queries: usize,
    },
    /// A query or gallery id has no dataset index.
    #[error("{side} id {id} is outside the {len} {side} items")]
    IdOutOfRange {
        /// `query` or `gallery`.
        side: &'static str,
        /// The id.
        id: usize,
        /// Number of items on that side.
        len: usize,
    },
    /// PNG encoding failed.
    #[error("cannot encode PNG: {0}")]
    Png(String),
}

/// One side of a retrieval (queries or gallery): the dataset that draws the items and the
/// dataset index of each position (`dataset.query_ids()` / `dataset.gallery_ids()`).
#[derive(Clone, Copy)]
pub struct RetrievalSide<'a> {
    /// Draws items.
    pub dataset: &'a dyn VisualizableDataset,
    /// Dataset index of position `i`.
    pub ids: &'a [usize],
}

impl RetrievalSide<'_> {
    fn draw(&self, side: &'static str, pos: usize, color: Rgb) -> Result<RgbImage, VisualizeError> {
        let &index = self.ids.get(pos).ok_or(VisualizeError::IdOutOfRange {
            side,
            id: pos,
            len: self.ids.len(),
        })?;
        Ok(self.dataset.visualize(index, color)?)
    }
}

/// Layout of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridOptions {
    /// Retrieved items per row (OML's `n_galleries_to_show`, 5).
    pub n_galleries_to_show: usize,
    /// Ground-truth items per row (OML's `n_gt_to_show`, 2).
    pub n_gt_to_show: usize,
    /// Side of each image cell in pixels.
    pub cell: u32,
    /// Thickness of the coloured frame around each cell image.
    pub frame: u32,
    /// Space between cells.
    pub margin: u32,
    /// Size of the titles as a multiple of [`TITLE_PX`] (and of [`TITLE_MIN_PX`], the size
    /// they may shrink to so as to fit the cell); 0 counts as 1.
    pub text_scale: u32,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            n_galleries_to_show: 5,
            n_gt_to_show: 2,
            cell: 160,
            frame: 4,
            margin: 8,
            text_scale: 1,
        }
    }
}

impl GridOptions {
    /// Columns per row: query + retrieved + ground truth.
    pub fn n_columns(&self) -> usize {
        1 + self.n_galleries_to_show + self.n_gt_to_show
    }

    /// `(preferred, minimum)` size of the titles in pixels.
    pub fn title_px(&self) -> (f32, f32) {
        let s = self.text_scale.max(1) as f32;
        (TITLE_PX * s, TITLE_MIN_PX * s)
    }

    /// Height of the title strip above each cell: a line of title text and 3 pixels.
    pub fn title_height(&self) -> u32 {
        oml_draw::line_height(self.title_px().0) + 3
    }

    /// `(width, height)` of the grid for `n_rows` queries.
    pub fn grid_size(&self, n_rows: usize) -> (u32, u32) {
        let cw = self.cell + self.margin;
        let ch = self.cell + self.title_height() + self.margin;
        (
            self.margin + cw * self.n_columns() as u32,
            self.margin + ch * n_rows as u32,
        )
    }

    /// Top-left corner of the image area of cell `(row, col)`.
    pub fn cell_origin(&self, row: usize, col: usize) -> (u32, u32) {
        let cw = self.cell + self.margin;
        let ch = self.cell + self.title_height() + self.margin;
        (
            self.margin + cw * col as u32,
            self.margin + ch * row as u32 + self.title_height(),
        )
    }
}

/// One cell of the grid: what it shows and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Column in the row.
    pub column: usize,
    /// Title above the image.
    pub title: String,
    /// Frame colour.
    pub color: Rgb,
    /// `query` or `gallery`.
    pub side: &'static str,
    /// Position on that side (query position or gallery id).
    pub position: usize,
    /// Distance to the query, for retrieved items (the number the title ends with).
    pub distance: Option<f32>,
}

impl Cell {
    /// The title and its shorter variants, for a narrow cell: a retrieved item's title gives up
    /// "Gallery" (`#id - 0.123`), then the id (`0.123`), but keeps the distance.
    pub fn title_variants(&self) -> Vec<String> {
        let mut variants = vec![self.title.clone()];
        if let Some(d) = self.distance {
            variants.push(format!("#{} - {d:.3}", self.position));
            variants.push(format!("{d:.3}"));
        }
        variants
    }

    /// The title as drawn in a cell of `opts`: the first of [`Cell::title_variants`] that fits
    /// the cell width at a size between the options' minimum and preferred title size, else
    /// the last one cut with an ellipsis ([`oml_draw::fit_first`]).
    pub fn fitted_title(&self, opts: &GridOptions) -> oml_draw::FittedText {
        let (px, min_px) = opts.title_px();
        oml_draw::fit_first(&self.title_variants(), opts.cell, px, min_px)
    }
}

/// The cells of the row of query `q`, as OML lays them out.
pub fn row_cells(rr: &RetrievalResults, q: usize, opts: &GridOptions) -> Vec<Cell> {
    let mut cells = vec![Cell {
        column: 0,
        title: format!("Query #{q}"),
        color: BLUE,
        side: "query",
        position: q,
        distance: None,
    }];
    let relevant = rr.is_relevant(q);
    for (k, (&id, &d)) in rr
        .retrieved_ids(q)
        .iter()
        .zip(rr.distances(q))
        .take(opts.n_galleries_to_show)
        .enumerate()
    {
        let color = match &relevant {
            Some(r) if r[k] => GREEN,
            Some(_) => RED,
            None => BLACK,
        };
        cells.push(Cell {
            column: 1 + k,
            title: format!("Gallery #{id} - {d:.3}"),
            color,
            side: "gallery",
            position: id,
            distance: Some(d),
        });
    }
    if let Some(gt) = rr.gt_ids(q) {
        for (k, &id) in gt.iter().take(opts.n_gt_to_show).enumerate() {
            cells.push(Cell {
                column: 1 + opts.n_galleries_to_show + k,
                title: "GT".into(),
                color: GRAY,
                side: "gallery",
                position: id,
                distance: None,
            });
        }
    }
    cells
}

/// Draws the results of the queries at `query_positions` (e.g. OML's worst queries) as a grid.
///
/// The image of each cell is the dataset's `visualize(index, color)`, scaled to fit
/// `cell × cell` and framed with `frame` pixels of the cell colour.
pub fn draw_retrieval_grid(
    rr: &RetrievalResults,
    queries: RetrievalSide<'_>,
    gallery: RetrievalSide<'_>,
    query_positions: &[usize],
    opts: &GridOptions,
) -> Result<RgbImage, VisualizeError> {
    let (w, h) = opts.grid_size(query_positions.len());
    let mut canvas = image::RgbImage::from_pixel(w, h, image::Rgb(WHITE));
    for (row, &q) in query_positions.iter().enumerate() {
        if q >= rr.n_queries() {
            return Err(VisualizeError::QueryOutOfRange {
                query: q,
                n_queries: rr.n_queries(),
            });
        }
        for cell in row_cells(rr, q, opts) {
            let src = if cell.side == "query" {
                queries
            } else {
                gallery
            };
            let img = src.draw(cell.side, cell.position, cell.color)?;
            let (x0, y0) = opts.cell_origin(row, cell.column);
            paste_fit(&mut canvas, &img, x0, y0, opts.cell);
            crate::images::draw_rect(
                &mut canvas,
                x0,
                y0,
                x0 + opts.cell,
                y0 + opts.cell,
                opts.frame,
                cell.color,
            );
            // Centred over the cell; a shrunk title stays centred on the full-size line.
            let title = cell.fitted_title(opts);
            let tw = text_width(&title.text, title.px);
            let tx = x0 + opts.cell.saturating_sub(tw) / 2;
            let ty = y0 - opts.title_height() + 1;
            let dy = ((opts.title_px().0 - title.px) / 2.0).round() as u32;
            draw_text(
                &mut canvas,
                i64::from(tx),
                i64::from(ty + dy),
                &title.text,
                title.px,
                image::Rgb(BLACK),
            );
        }
    }
    Ok(RgbImage {
        width: w,
        height: h,
        data: canvas.into_raw(),
    })
}

/// Scales `img` to fit `cell × cell` (aspect kept, nearest neighbour so colours stay exact) and
/// centres it in the cell at `(x0, y0)`.
fn paste_fit(canvas: &mut image::RgbImage, img: &RgbImage, x0: u32, y0: u32, cell: u32) {
    if img.width == 0 || img.height == 0 {
        return;
    }
    let scale = cell as f64 / img.width.max(img.height) as f64;
    let (sw, sh) = (
        ((img.width as f64 * scale) as u32).max(1),
        ((img.height as f64 * scale) as u32).max(1),
    );
    let (ox, oy) = (
        x0 + (cell - sw.min(cell)) / 2,
        y0 + (cell - sh.min(cell)) / 2,
    );
    for y in 0..sh.min(cell) {
        let sy = ((y as f64 / scale) as u32).min(img.height - 1);
        for x in 0..sw.min(cell) {
            let sx = ((x as f64 / scale) as u32).min(img.width - 1);
            canvas.put_pixel(ox + x, oy + y, image::Rgb(img.pixel(sx, sy)));
        }
    }
}

/// Encodes an image as PNG.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, VisualizeError> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            &img.data,
            img.width,
            img.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| VisualizeError::Png(e.to_string()))?;
    Ok(out)
}

/// The image as a logger [`Figure`].
pub fn to_figure(img: &RgbImage) -> Result<Figure, VisualizeError> {
    Ok(Figure {
        width: img.width,
        height: img.height,
        png: encode_png(img)?,
    })
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The same figure as [`draw_retrieval_grid`] as one self-contained HTML page (images inlined
/// as PNG data URIs), for a browser.
pub fn retrieval_html(
    rr: &RetrievalResults,
    queries: RetrievalSide<'_>,
    gallery: RetrievalSide<'_>,
    query_positions: &[usize],
    opts: &GridOptions,
    title: &str,
) -> Result<String, VisualizeError> {
    let css = |c: Rgb| format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif}} td{{vertical-align:top;text-align:center;padding:4px}} \
         img{{width:{c}px;height:{c}px;object-fit:contain;border-style:solid;border-width:{f}px}}\
         </style></head><body><h1>{t}</h1><table>\n",
        t = html_escape(title),
        c = opts.cell,
        f = opts.frame
    );
    for &q in query_positions {
        if q >= rr.n_queries() {
            return Err(VisualizeError::QueryOutOfRange {
                query: q,
                n_queries: rr.n_queries(),
            });
        }
        let cells = row_cells(rr, q, opts);
        html.push_str("<tr>");
        for col in 0..opts.n_columns() {
            match cells.iter().find(|c| c.column == col) {
                None => html.push_str("<td></td>"),
                Some(cell) => {
                    let src = if cell.side == "query" {
                        queries
                    } else {
                        gallery
                    };
                    let png = encode_png(&src.draw(cell.side, cell.position, cell.color)?)?;
                    html.push_str(&format!(
                        "<td><div>{}</div><img style=\"border-color:{}\" src=\"data:image/png;base64,{}\"></td>",
                        html_escape(&cell.title),
                        css(cell.color),
                        base64(&png)
                    ));
                }
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table></body></html>\n");
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(distance: f32, id: usize) -> RetrievalResults {
        RetrievalResults::new(vec![vec![distance]], vec![vec![id]], None).unwrap()
    }

    #[test]
    fn titles_fit_their_cell_and_keep_the_distance() {
        let rr = result(0.123_456, 1234);
        for cell in [160, 120, 84, 60, 40] {
            let opts = GridOptions {
                cell,
                ..GridOptions::default()
            };
            let cells = row_cells(&rr, 0, &opts);
            assert_eq!(cells[1].title, "Gallery #1234 - 0.123");
            assert_eq!(cells[1].distance, Some(0.123_456));
            for c in &cells {
                let t = c.fitted_title(&opts);
                assert!(text_width(&t.text, t.px) <= cell, "{cell}: {t:?}");
                let (px, min_px) = opts.title_px();
                assert!(t.px <= px && t.px >= min_px, "{cell}: {t:?}");
            }
            let t = cells[1].fitted_title(&opts);
            assert!(
                t.text.ends_with("0.123"),
                "{cell}: the distance is cut: {t:?}"
            );
        }
        // The default 160-pixel cell shows the whole title at the full size.
        let opts = GridOptions::default();
        let t = row_cells(&rr, 0, &opts)[1].fitted_title(&opts);
        assert_eq!((t.text.as_str(), t.px), ("Gallery #1234 - 0.123", TITLE_PX));
    }

    #[test]
    fn titles_are_drawn_in_their_strip() {
        struct Plain;
        impl VisualizableDataset for Plain {
            fn visualize(&self, _: usize, _: Rgb) -> Result<RgbImage, DatasetError> {
                Ok(RgbImage {
                    width: 4,
                    height: 4,
                    data: vec![200; 48],
                })
            }
        }
        let rr = result(0.5, 0);
        let side = RetrievalSide {
            dataset: &Plain,
            ids: &[0],
        };
        let opts = GridOptions {
            cell: 84,
            ..GridOptions::default()
        };
        let grid = draw_retrieval_grid(&rr, side, side, &[0], &opts).unwrap();
        for col in 0..2 {
            let (x, y) = opts.cell_origin(0, col);
            let dark = (x..x + opts.cell)
                .flat_map(|xx| (y - opts.title_height()..y).map(move |yy| (xx, yy)))
                .filter(|&(a, b)| grid.pixel(a, b)[0] < 128)
                .count();
            assert!(dark > 20, "column {col}: {dark} dark pixels");
        }
    }
}
