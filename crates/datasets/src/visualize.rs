//! Drawing retrieval results as OML does (reference §1.7): one row per query with the query
//! (blue frame, `Query #i`), its top retrieved gallery items (green when relevant, red when not,
//! black when ground truth is unknown; `Gallery #id - distance`), then ground-truth items (grey,
//! `GT`). As a PNG grid ([`draw_retrieval_grid`]) or a self-contained HTML page
//! ([`retrieval_html`]). Titles use a built-in 5×7 bitmap font: no system fonts are needed.

use oml_interfaces::datasets::{DatasetError, Rgb, RgbImage, VisualizableDataset};
use oml_interfaces::{Figure, RetrievalResults};
use std::sync::OnceLock;

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
    /// Pixel size of one font dot (titles are 7 dots tall).
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

    /// Height of the title strip above each cell.
    pub fn title_height(&self) -> u32 {
        10 * self.text_scale.max(1)
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
}

/// The cells of the row of query `q`, as OML lays them out.
pub fn row_cells(rr: &RetrievalResults, q: usize, opts: &GridOptions) -> Vec<Cell> {
    let mut cells = vec![Cell {
        column: 0,
        title: format!("Query #{q}"),
        color: BLUE,
        side: "query",
        position: q,
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
            let s = opts.text_scale.max(1);
            let tw = text_width(&cell.title, s);
            let tx = x0 + opts.cell.saturating_sub(tw) / 2;
            draw_text(
                &mut canvas,
                tx,
                y0 - opts.title_height() + s,
                &cell.title,
                s,
                BLACK,
                x0 + opts.cell,
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

fn font() -> &'static [[u8; 7]; 95] {
    static FONT: OnceLock<[[u8; 7]; 95]> = OnceLock::new();
    FONT.get_or_init(|| {
        let mut table = [[0x1Fu8; 7]; 95];
        for line in include_str!("font5x7.txt").lines() {
            let mut chars = line.chars();
            let Some(c) = chars.next() else { continue };
            let rest: Vec<&str> = chars.as_str().split_whitespace().collect();
            let code = c as usize;
            if !(32..127).contains(&code) || rest.len() != 7 {
                continue;
            }
            for (r, bits) in rest.iter().enumerate() {
                table[code - 32][r] = bits
                    .bytes()
                    .fold(0u8, |acc, b| (acc << 1) | u8::from(b == b'#'));
            }
        }
        table
    })
}

/// Width in pixels of `text` at dot size `scale` (6 dots per character, the last column blank).
pub fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32 * 6).saturating_sub(1) * scale
}

/// Draws `text` with its top-left corner at `(x, y)`, clipped at `x_max` and the image edges.
/// Characters outside printable ASCII are drawn as `?`.
pub fn draw_text(
    img: &mut image::RgbImage,
    x: u32,
    y: u32,
    text: &str,
    scale: u32,
    color: Rgb,
    x_max: u32,
) {
    let (w, h) = img.dimensions();
    let x_max = x_max.min(w);
    let s = scale.max(1);
    for (i, ch) in text.chars().enumerate() {
        let code = if (32..127).contains(&(ch as u32)) {
            ch as usize
        } else {
            '?' as usize
        };
        let glyph = font()[code - 32];
        let gx = x + i as u32 * 6 * s;
        for (r, bits) in glyph.iter().enumerate() {
            for c in 0..5u32 {
                if bits & (0x10 >> c) == 0 {
                    continue;
                }
                for dy in 0..s {
                    for dx in 0..s {
                        let (px, py) = (gx + c * s + dx, y + r as u32 * s + dy);
                        if px < x_max && py < h {
                            img.put_pixel(px, py, image::Rgb(color));
                        }
                    }
                }
            }
        }
    }
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

    #[test]
    fn font_has_every_printable_ascii_glyph() {
        let lines: Vec<_> = include_str!("font5x7.txt").lines().collect();
        assert_eq!(lines.len(), 95);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(
                line.chars().next().map(|c| c as usize),
                Some(32 + i),
                "{line}"
            );
            let rows: Vec<_> = line[1..].split_whitespace().collect();
            assert_eq!(rows.len(), 7, "{line}");
            assert!(
                rows.iter()
                    .all(|r| r.len() == 5 && r.bytes().all(|b| b == b'#' || b == b'.')),
                "{line}"
            );
        }
        // Space is blank; glyphs are distinct.
        assert_eq!(font()[0], [0; 7]);
        let set: std::collections::HashSet<_> = font().iter().collect();
        assert_eq!(set.len(), 95);
    }

    #[test]
    fn text_is_drawn_where_measured() {
        let mut img = image::RgbImage::from_pixel(40, 10, image::Rgb(WHITE));
        draw_text(&mut img, 1, 1, "T1", 1, BLACK, 40);
        // `T`: the top bar spans columns 1..6 on row 1.
        assert!((1..6).all(|x| img.get_pixel(x, 1).0 == BLACK));
        let inked: Vec<u32> = (0..40)
            .filter(|&x| (0..10).any(|y| img.get_pixel(x, y).0 == BLACK))
            .collect();
        assert_eq!(
            (inked.first(), inked.last()),
            (Some(&1), Some(&(1 + text_width("T1", 1) - 1 - 1)))
        );
    }
}
