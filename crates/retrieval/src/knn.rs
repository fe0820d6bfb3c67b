//! Exact k-nearest-neighbour search (Euclidean) on Burn tensors, blocked over queries and
//! gallery so memory stays bounded whatever the sizes.
//!
//! How it works, and why it is fast:
//! - Embeddings are cut into blocks of `block_size` rows. For each (query block, gallery block)
//!   pair one GEMM `Q_b · G_bᵀ` runs on the chosen Burn device (on CPU backends, one fixed host
//!   GEMM, [`oml_interfaces::cpu::matmul_nt`]); the block of dot products is on the host,
//!   where `‖q‖² + ‖g‖² − 2·q·g` is formed and scanned by every query's bounded max-heap.
//!   Most candidates are rejected by one comparison against the heap's worst item, so only `k`
//!   items per query are ever kept and nothing is fully sorted.
//! - When queries and gallery are the same item set (the usual "every item is both" validation),
//!   only the upper triangle of blocks is computed: each off-diagonal block serves its rows as
//!   queries and, transposed, its columns as queries. That halves the GEMM work.
//! - Masks: a query never retrieves its own item nor items with its sequence id. Masked items
//!   are dropped, so results are ragged.
//! - Ties: heaps order `(distance, gallery position)` lexicographically, so among equal
//!   distances the lower gallery position wins, whatever the block order.
//! - Distances of the kept items are recomputed directly as `sqrt(Σ (q−g)²)` (accumulated in
//!   f64) before the final sort: exact zeros for duplicates, no cancellation noise.
//!
//! - On accelerators ([`Selection`]) the scan moves to the device: masked squared distances and
//!   a running top-`(k+1)` per query block, one small read-back per query block instead of one
//!   per distance block; a tie at the cut sends that query to an exact host scan.
//!
//! A [`BlockVisitor`] sees every block of squared distances as the search computes them; the
//! metrics crate uses it to build FNMR@FMR histograms without retrieving the whole gallery.

use crate::topk::TopK;
use burn::prelude::*;
use burn::tensor::TensorData;
use oml_interfaces::RetrievalError;
use oml_interfaces::cpu;
use rayon::prelude::*;

/// Default rows per query block and per gallery block. A block of distances is
/// `block_size² × 4` bytes (4 MiB for 1024): small enough to stay in cache between the GEMM and
/// the scans, which measured faster on a 2-core machine than 2048 or 4096.
pub const DEFAULT_BLOCK_SIZE: usize = 1024;

/// No mask position.
const NONE: u32 = u32::MAX;

/// Columns handled together by one task of a transposed (column) scan.
const COLUMN_CHUNK: usize = 64;

/// Candidates compared at once before the per-item slow path.
const ROW_CHUNK: usize = 32;

/// Where the nearest candidates of each block are selected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Selection {
    /// [`Host`](Self::Host) on the CPU backends (Flex, NdArray), [`Device`](Self::Device) on
    /// the others (wgpu, CUDA, …).
    #[default]
    Auto,
    /// Every block of dot products is read back and scanned by per-query heaps on the host:
    /// the fastest on CPU backends, and the only way a [`BlockVisitor`] sees the distances.
    Host,
    /// Distances, masks and a running top-k stay on the device; one `[rows, k + 1]` candidate
    /// list per query block is read back. For accelerators, where reading every block back
    /// would cost more than computing it. Block visitors force the host path.
    Device,
}

impl Selection {
    /// Whether candidates are selected on `device` (resolves [`Auto`](Self::Auto)).
    pub fn on_device(self, device: &Device) -> bool {
        match self {
            Selection::Auto => !cpu::applies(device),
            Selection::Host => false,
            Selection::Device => true,
        }
    }
}

impl std::str::FromStr for Selection {
    type Err = RetrievalError;

    /// `auto`, `host` or `device` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Selection::Auto),
            "host" => Ok(Selection::Host),
            "device" => Ok(Selection::Device),
            _ => Err(invalid(format!(
                "kNN selection `{s}`: expected auto, host or device"
            ))),
        }
    }
}

/// Tuning of the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnnConfig {
    /// Rows of a query block and of a gallery block.
    pub block_size: usize,
    /// Where candidates are selected.
    pub selection: Selection,
}

impl KnnConfig {
    /// The default configuration with `block_size` rows per block.
    pub fn with_block_size(block_size: usize) -> Self {
        KnnConfig {
            block_size,
            ..Self::default()
        }
    }
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            block_size: DEFAULT_BLOCK_SIZE,
            selection: Selection::Auto,
        }
    }
}

/// Ragged search results: for each query, gallery positions nearest first and their distances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Neighbours {
    /// Per query, ascending Euclidean distances.
    pub distances: Vec<Vec<f32>>,
    /// Per query, gallery positions (`0..G`) in the order of `distances`.
    pub ids: Vec<Vec<usize>>,
}

impl Neighbours {
    /// Number of queries.
    pub fn n_queries(&self) -> usize {
        self.ids.len()
    }
}

/// Per-query progress callback: `(blocks done, blocks in all)`.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// What is masked for each query: its own gallery position and its sequence.
#[derive(Debug, Clone, Default)]
struct Masks {
    /// Per query: the gallery position of the same item, or `NONE`.
    self_pos: Option<Vec<u32>>,
    /// Sequence codes of queries and gallery items (equal codes are masked).
    q_seq: Option<Vec<u32>>,
    g_seq: Option<Vec<u32>>,
}

impl Masks {
    #[inline]
    fn masked(&self, q: usize, g: usize) -> bool {
        if let Some(s) = &self.self_pos
            && s[q] as usize == g
        {
            return true;
        }
        match (&self.q_seq, &self.g_seq) {
            (Some(a), Some(b)) => a[q] == b[g],
            _ => false,
        }
    }
}

/// One block of squared distances, as a [`BlockVisitor`] sees it.
///
/// Row `i` is query `query_start + i`, column `j` is gallery item `gallery_start + j`. When
/// [`mirrored`](Self::mirrored) is true the block also stands for its transpose (query
/// `gallery_start + j` against gallery item `query_start + i`, same distance and same mask), which
/// the search did not compute separately: count such pairs twice.
pub struct DistanceBlock<'a> {
    query_start: usize,
    gallery_start: usize,
    rows: usize,
    cols: usize,
    mirrored: bool,
    dots: &'a [f32],
    q_norms: &'a [f32],
    g_norms: &'a [f32],
    masks: &'a Masks,
}

impl DistanceBlock<'_> {
    /// Position of the first query row.
    pub fn query_start(&self) -> usize {
        self.query_start
    }
    /// Position of the first gallery column.
    pub fn gallery_start(&self) -> usize {
        self.gallery_start
    }
    /// Number of rows (queries).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns (gallery items).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// True when the block also stands for its transpose (see the type's docs).
    pub fn mirrored(&self) -> bool {
        self.mirrored
    }

    /// Squared distances of row `i` to every column, exactly as the search computed them
    /// (`‖q‖² + ‖g‖² − 2·q·g`; may be slightly negative from rounding: clamp before `sqrt`).
    pub fn sq_distances_row(&self, i: usize, out: &mut [f32]) {
        let qn = self.q_norms[i];
        let s = &self.dots[i * self.cols..(i + 1) * self.cols];
        for ((o, &gn), &s) in out.iter_mut().zip(self.g_norms).zip(s) {
            *o = sq(qn, gn, s);
        }
    }

    /// True when column `j` is masked for row `i` (same item, or same sequence).
    #[inline]
    pub fn is_masked(&self, i: usize, j: usize) -> bool {
        self.masks
            .masked(self.query_start + i, self.gallery_start + j)
    }

    /// The mask of row `i` over every column (`out.len() == cols`).
    pub fn row_mask(&self, i: usize, out: &mut [bool]) {
        let q = self.query_start + i;
        let g0 = self.gallery_start;
        match (&self.masks.q_seq, &self.masks.g_seq) {
            (Some(a), Some(b)) => {
                let s = a[q];
                for (o, &t) in out.iter_mut().zip(&b[g0..g0 + self.cols]) {
                    *o = t == s;
                }
            }
            _ => out.fill(false),
        }
        if let Some(p) = &self.masks.self_pos {
            let p = p[q] as usize;
            if p != NONE as usize && (g0..g0 + self.cols).contains(&p) {
                out[p - g0] = true;
            }
        }
    }
}

/// Sees every block of squared distances of a search or scan (see [`DistanceBlock`]).
///
/// Called once per block, from the searching thread; parallelise inside if needed.
pub trait BlockVisitor: Sync {
    /// Handles one block.
    fn visit(&self, block: &DistanceBlock<'_>);
}

#[inline(always)]
fn sq(qn: f32, gn: f32, s: f32) -> f32 {
    qn + gn - 2.0 * s
}

/// Euclidean distance of two rows, accumulated in f64 (the distance every result reports).
pub fn euclidean(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum::<f64>()
        .sqrt() as f32
}

/// A prepared exact search: host copies of queries and gallery plus masks.
///
/// Build it once, then [`search`](Self::search) for neighbours and/or [`scan`](Self::scan) for
/// further passes over the same distances (bit-identical block by block).
#[derive(Debug, Clone)]
pub struct ExactKnn {
    device: Device,
    dim: usize,
    n_q: usize,
    n_g: usize,
    q_host: Vec<f32>,
    /// `None` when the gallery is the query set (symmetric search).
    g_host: Option<Vec<f32>>,
    q_norms: Vec<f32>,
    g_norms: Option<Vec<f32>>,
    masks: Masks,
    block: usize,
    selection: Selection,
}

fn invalid(msg: String) -> RetrievalError {
    RetrievalError::InvalidData(msg)
}

/// Checks `data` is `rows × dim` finite values with finite squared norms.
fn check_matrix(what: &str, data: &[f32], dim: usize) -> Result<usize, RetrievalError> {
    if dim == 0 {
        return Err(invalid(format!("{what}: embedding dimension is 0")));
    }
    if !data.len().is_multiple_of(dim) {
        return Err(invalid(format!(
            "{what}: {} values do not form rows of dimension {dim}",
            data.len()
        )));
    }
    for (r, row) in data.chunks_exact(dim).enumerate() {
        if let Some(problem) = row_problem(row) {
            return Err(invalid(format!("{what}: row {r}, {problem}")));
        }
    }
    Ok(data.len() / dim)
}

/// What makes an embedding unusable for the kNN, if anything: a value that is not finite, or
/// a squared norm that overflows `f32` (its distances would be infinite).
pub fn row_problem(row: &[f32]) -> Option<String> {
    if let Some(c) = row.iter().position(|x| !x.is_finite()) {
        return Some(format!("column {c} is {} (not finite)", row[c]));
    }
    let n: f32 = row.iter().map(|x| x * x).sum();
    (!n.is_finite()).then(|| "its squared norm overflows f32 (too large for distances)".to_string())
}

fn norms(data: &[f32], dim: usize) -> Vec<f32> {
    data.par_chunks(dim)
        .map(|r| r.iter().map(|x| x * x).sum())
        .collect()
}

fn gather(data: &[f32], dim: usize, ids: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(ids.len() * dim);
    for &i in ids {
        out.extend_from_slice(&data[i * dim..(i + 1) * dim]);
    }
    out
}

/// Reads a 2-d float tensor to the host as row-major f32.
pub fn tensor_to_host(t: &Tensor<2>) -> Result<(Vec<f32>, usize), RetrievalError> {
    let [_, dim] = t.dims();
    let data = t
        .clone()
        .try_into_data()
        .map_err(|e| RetrievalError::InvalidData(format!("cannot read the tensor: {e}")))?;
    let v = data
        .try_cast_as::<f32>()
        .and_then(|d| d.try_into_vec::<f32>())
        .map_err(|e| {
            RetrievalError::InvalidData(format!("cannot read the tensor as f32: {e:?}"))
        })?;
    Ok((v, dim))
}

impl ExactKnn {
    /// One embedding set `[N, dim]` (row-major); queries and gallery are the items
    /// `query_ids` and `gallery_ids` (dataset indices; they may overlap: an item never
    /// retrieves itself). `sequences` holds one code per item: items with the query's code are
    /// never retrieved for it. Result ids are positions in `gallery_ids`.
    pub fn new(
        embeddings: &[f32],
        dim: usize,
        query_ids: &[usize],
        gallery_ids: &[usize],
        sequences: Option<&[u32]>,
        device: &Device,
        config: &KnnConfig,
    ) -> Result<Self, RetrievalError> {
        let n = check_matrix("embeddings", embeddings, dim)?;
        if let Some(s) = sequences
            && s.len() != n
        {
            return Err(invalid(format!(
                "{} sequence ids for {n} embeddings",
                s.len()
            )));
        }
        let mut gallery_pos = vec![NONE; n];
        for (p, &i) in gallery_ids.iter().enumerate() {
            let slot = gallery_pos
                .get_mut(i)
                .ok_or_else(|| invalid(format!("gallery id {i} is outside the {n} embeddings")))?;
            if *slot != NONE {
                return Err(invalid(format!("gallery id {i} is given twice")));
            }
            *slot = p as u32;
        }
        if let Some(&i) = query_ids.iter().find(|&&i| i >= n) {
            return Err(invalid(format!(
                "query id {i} is outside the {n} embeddings"
            )));
        }
        let symmetric = query_ids == gallery_ids;
        let q_host = gather(embeddings, dim, query_ids);
        let q_norms = norms(&q_host, dim);
        let (g_host, g_norms) = if symmetric {
            (None, None)
        } else {
            let g = gather(embeddings, dim, gallery_ids);
            let gn = norms(&g, dim);
            (Some(g), Some(gn))
        };
        let masks = Masks {
            self_pos: Some(query_ids.iter().map(|&i| gallery_pos[i]).collect()),
            q_seq: sequences.map(|s| query_ids.iter().map(|&i| s[i]).collect()),
            g_seq: sequences.map(|s| gallery_ids.iter().map(|&i| s[i]).collect()),
        };
        Ok(ExactKnn {
            device: device.clone(),
            dim,
            n_q: query_ids.len(),
            n_g: gallery_ids.len(),
            q_host,
            g_host,
            q_norms,
            g_norms,
            masks,
            block: config.block_size.max(1),
            selection: config.selection,
        })
    }

    /// As [`new`](Self::new), from a `[N, dim]` tensor.
    pub fn from_tensor(
        embeddings: &Tensor<2>,
        query_ids: &[usize],
        gallery_ids: &[usize],
        sequences: Option<&[u32]>,
        config: &KnnConfig,
    ) -> Result<Self, RetrievalError> {
        let (host, dim) = tensor_to_host(embeddings)?;
        Self::new(
            &host,
            dim,
            query_ids,
            gallery_ids,
            sequences,
            &embeddings.device(),
            config,
        )
    }

    /// Separate query `[Q, dim]` and gallery `[G, dim]` sets (OML's `batched_knn_qg`).
    /// `sequences` = (query codes, gallery codes) from one shared coding; `same_items` =
    /// (query item keys, gallery item keys): a query never retrieves the gallery item with its
    /// key (for query/gallery sets that share items).
    pub fn new_qg(
        queries: &[f32],
        gallery: &[f32],
        dim: usize,
        sequences: Option<(&[u32], &[u32])>,
        same_items: Option<(&[u64], &[u64])>,
        device: &Device,
        config: &KnnConfig,
    ) -> Result<Self, RetrievalError> {
        let n_q = check_matrix("queries", queries, dim)?;
        let n_g = check_matrix("gallery", gallery, dim)?;
        if let Some((a, b)) = sequences
            && (a.len() != n_q || b.len() != n_g)
        {
            return Err(invalid(format!(
                "sequence ids: {} for {n_q} queries and {} for {n_g} gallery items",
                a.len(),
                b.len()
            )));
        }
        let self_pos = match same_items {
            None => None,
            Some((kq, kg)) => {
                if kq.len() != n_q || kg.len() != n_g {
                    return Err(invalid(format!(
                        "item keys: {} for {n_q} queries and {} for {n_g} gallery items",
                        kq.len(),
                        kg.len()
                    )));
                }
                let mut pos = std::collections::HashMap::with_capacity(n_g);
                for (p, &k) in kg.iter().enumerate() {
                    if pos.insert(k, p as u32).is_some() {
                        return Err(invalid(format!("gallery item key {k} is given twice")));
                    }
                }
                Some(
                    kq.iter()
                        .map(|k| pos.get(k).copied().unwrap_or(NONE))
                        .collect(),
                )
            }
        };
        Ok(ExactKnn {
            device: device.clone(),
            dim,
            n_q,
            n_g,
            q_norms: norms(queries, dim),
            g_norms: Some(norms(gallery, dim)),
            q_host: queries.to_vec(),
            g_host: Some(gallery.to_vec()),
            masks: Masks {
                self_pos,
                q_seq: sequences.map(|s| s.0.to_vec()),
                g_seq: sequences.map(|s| s.1.to_vec()),
            },
            block: config.block_size.max(1),
            selection: config.selection,
        })
    }

    /// As [`new_qg`](Self::new_qg), from tensors.
    pub fn from_tensors_qg(
        queries: &Tensor<2>,
        gallery: &Tensor<2>,
        sequences: Option<(&[u32], &[u32])>,
        same_items: Option<(&[u64], &[u64])>,
        config: &KnnConfig,
    ) -> Result<Self, RetrievalError> {
        let (q, dq) = tensor_to_host(queries)?;
        let (g, dg) = tensor_to_host(gallery)?;
        if dq != dg {
            return Err(invalid(format!(
                "query dimension {dq} differs from gallery dimension {dg}"
            )));
        }
        Self::new_qg(&q, &g, dq, sequences, same_items, &queries.device(), config)
    }

    /// Number of queries.
    pub fn n_queries(&self) -> usize {
        self.n_q
    }
    /// Number of gallery items.
    pub fn n_gallery(&self) -> usize {
        self.n_g
    }
    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// True when queries and gallery are the same items (only half the blocks are computed).
    pub fn is_symmetric(&self) -> bool {
        self.g_host.is_none()
    }
    /// Number of block GEMMs one pass runs (the progress total).
    pub fn n_blocks(&self) -> u64 {
        let nqb = self.n_q.div_ceil(self.block) as u64;
        let ngb = self.n_g.div_ceil(self.block) as u64;
        if self.is_symmetric() {
            nqb * (nqb + 1) / 2
        } else {
            nqb * ngb
        }
    }

    fn g_host(&self) -> &[f32] {
        self.g_host.as_deref().unwrap_or(&self.q_host)
    }
    fn g_norms(&self) -> &[f32] {
        self.g_norms.as_deref().unwrap_or(&self.q_norms)
    }

    /// The `top_n` nearest non-masked gallery items of every query (fewer when fewer are
    /// available). `visitor` (if any) sees every block of the same pass.
    pub fn search(
        &self,
        top_n: usize,
        visitor: Option<&dyn BlockVisitor>,
        progress: Option<Progress<'_>>,
    ) -> Result<Neighbours, RetrievalError> {
        let caps = vec![top_n.min(self.n_g); self.n_q];
        self.run(Some(caps), visitor, progress)
            .map(|n| n.unwrap_or_default())
    }

    /// As [`search`](Self::search) with one `top_n` per query.
    pub fn search_per_query(
        &self,
        top_n: &[usize],
        visitor: Option<&dyn BlockVisitor>,
        progress: Option<Progress<'_>>,
    ) -> Result<Neighbours, RetrievalError> {
        if top_n.len() != self.n_q {
            return Err(invalid(format!(
                "{} top_n values for {} queries",
                top_n.len(),
                self.n_q
            )));
        }
        let caps = top_n.iter().map(|&k| k.min(self.n_g)).collect();
        self.run(Some(caps), visitor, progress)
            .map(|n| n.unwrap_or_default())
    }

    /// One pass over every block of distances for `visitor` alone (no neighbours kept).
    pub fn scan(
        &self,
        visitor: &dyn BlockVisitor,
        progress: Option<Progress<'_>>,
    ) -> Result<(), RetrievalError> {
        self.run(None, Some(visitor), progress).map(|_| ())
    }

    /// Uploads rows `r0..r1` of `host` as a `[rows, dim]` tensor, or transposed `[dim, rows]`.
    fn upload(&self, host: &[f32], r0: usize, r1: usize, transposed: bool) -> Tensor<2> {
        let d = self.dim;
        let rows = r1 - r0;
        let src = &host[r0 * d..r1 * d];
        if transposed {
            let mut t = vec![0f32; rows * d];
            for (r, row) in src.chunks_exact(d).enumerate() {
                for (c, &x) in row.iter().enumerate() {
                    t[c * rows + r] = x;
                }
            }
            Tensor::from_data(TensorData::new(t, [d, rows]), &self.device)
        } else {
            Tensor::from_data(TensorData::new(src.to_vec(), [rows, d]), &self.device)
        }
    }

    fn run(
        &self,
        caps: Option<Vec<usize>>,
        visitor: Option<&dyn BlockVisitor>,
        progress: Option<Progress<'_>>,
    ) -> Result<Option<Neighbours>, RetrievalError> {
        if let Some(caps) = &caps
            && visitor.is_none()
            && self.selection.on_device(&self.device)
        {
            return self.run_on_device(caps, progress).map(Some);
        }
        let mut heaps: Option<Vec<TopK>> = caps.map(|c| c.into_iter().map(TopK::new).collect());
        let b = self.block;
        let symmetric = self.is_symmetric();
        let (qn, gn) = (&self.q_norms, self.g_norms());
        let q_blocks: Vec<(usize, usize)> = (0..self.n_q)
            .step_by(b)
            .map(|s| (s, (s + b).min(self.n_q)))
            .collect();
        let g_blocks: Vec<(usize, usize)> = (0..self.n_g)
            .step_by(b)
            .map(|s| (s, (s + b).min(self.n_g)))
            .collect();
        let wanted = heaps
            .as_ref()
            .is_some_and(|h| h.iter().any(|t| t.threshold() > f32::NEG_INFINITY));
        if (!wanted && visitor.is_none()) || q_blocks.is_empty() || g_blocks.is_empty() {
            return Ok(heaps.map(|h| self.finish(h)));
        }
        let total = self.n_blocks();
        let mut done = 0u64;
        // On CPU backends the data is already on the host: one fixed host GEMM, no uploads
        // (the CPU fast path: see `oml_interfaces::cpu` for why not the backend's matmul).
        let host_gemm = cpu::applies(&self.device);
        let (q_tensors, g_tensors): (Vec<Tensor<2>>, Vec<Tensor<2>>) = if host_gemm {
            (Vec::new(), Vec::new())
        } else {
            (
                q_blocks
                    .iter()
                    .map(|&(s, e)| self.upload(&self.q_host, s, e, false))
                    .collect(),
                g_blocks
                    .iter()
                    .map(|&(s, e)| self.upload(self.g_host(), s, e, true))
                    .collect(),
            )
        };
        let mut dots_buf: Vec<f32> = Vec::new();
        for (qb, &(q0, q1)) in q_blocks.iter().enumerate() {
            let first_g = if symmetric { qb } else { 0 };
            for (gb, &(g0, g1)) in g_blocks.iter().enumerate().skip(first_g) {
                let (rows, cols) = (q1 - q0, g1 - g0);
                if host_gemm {
                    let d = self.dim;
                    dots_buf.resize(rows * cols, 0.0);
                    cpu::matmul_nt(
                        &self.q_host[q0 * d..q1 * d],
                        &self.g_host()[g0 * d..g1 * d],
                        d,
                        &mut dots_buf,
                    )
                    .map_err(|e| invalid(format!("distance block could not be computed: {e}")))?;
                } else {
                    let data = q_tensors[qb]
                        .clone()
                        .matmul(g_tensors[gb].clone())
                        .try_into_data()
                        .map_err(|e| {
                            invalid(format!("distance block could not be computed: {e}"))
                        })?;
                    dots_buf = data.try_into_vec_as::<f32>().map_err(|e| {
                        invalid(format!("distance block is not readable as f32: {e:?}"))
                    })?;
                }
                let dots = &dots_buf[..];
                let mirrored = symmetric && gb != qb;
                if let Some(heaps) = heaps.as_mut() {
                    let masks = &self.masks;
                    heaps[q0..q1].par_iter_mut().enumerate().for_each(|(i, h)| {
                        let q = q0 + i;
                        scan_row(
                            h,
                            &dots[i * cols..(i + 1) * cols],
                            qn[q],
                            &gn[g0..g1],
                            g0,
                            |g| masks.masked(q, g),
                        );
                    });
                    if mirrored {
                        // Columns are queries g0..g1 (same items as the gallery), rows their gallery items.
                        heaps[g0..g1]
                            .par_chunks_mut(COLUMN_CHUNK)
                            .enumerate()
                            .for_each(|(c, chunk)| {
                                let j0 = c * COLUMN_CHUNK;
                                scan_columns(chunk, dots, cols, j0, rows, q0, g0 + j0, qn, masks);
                            });
                    }
                }
                if let Some(v) = visitor {
                    v.visit(&DistanceBlock {
                        query_start: q0,
                        gallery_start: g0,
                        rows,
                        cols,
                        mirrored,
                        dots,
                        q_norms: &qn[q0..q1],
                        g_norms: &gn[g0..g1],
                        masks: &self.masks,
                    });
                }
                done += 1;
                if let Some(p) = progress {
                    p(done, total);
                }
            }
        }
        Ok(heaps.map(|h| self.finish(h)))
    }

    /// An `Int` tensor `[rows, cols]` (row-major) on the search's device.
    fn int_tensor(&self, values: Vec<i64>, shape: [usize; 2]) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// A float tensor `[rows, cols]` on the search's device.
    fn float_tensor(&self, values: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// The device-side search ([`Selection::Device`]): every (query block, gallery block) pair
    /// becomes masked squared distances and a `top-(k+1)` on the device, merged into the query
    /// block's running list; the host receives `k + 1` candidates per query. The extra one
    /// shows a tie across the cut (device top-k does not order ties by position), and such a
    /// query is searched again exactly on the host, so results equal the host path's.
    fn run_on_device(
        &self,
        caps: &[usize],
        progress: Option<Progress<'_>>,
    ) -> Result<Neighbours, RetrievalError> {
        let mut heaps: Vec<TopK> = caps.iter().map(|&c| TopK::new(c)).collect();
        let kk = (caps.iter().copied().max().unwrap_or(0) + 1).min(self.n_g);
        if caps.iter().all(|&c| c == 0) || self.n_q == 0 || self.n_g == 0 {
            return Ok(self.finish(heaps));
        }
        let b = self.block;
        let gn = self.g_norms();
        let blocks = |n: usize| -> Vec<(usize, usize)> {
            (0..n).step_by(b).map(|s| (s, (s + b).min(n))).collect()
        };
        let (q_blocks, g_blocks) = (blocks(self.n_q), blocks(self.n_g));
        let total = (q_blocks.len() * g_blocks.len()) as u64;
        let to_i64 = |v: u32| if v == NONE { -1 } else { i64::from(v) };
        // Gallery side, uploaded once: transposed rows, norms, positions, sequence codes.
        let gallery: Vec<_> = g_blocks
            .iter()
            .map(|&(g0, g1)| {
                let cols = g1 - g0;
                (
                    self.upload(self.g_host(), g0, g1, true),
                    self.float_tensor(gn[g0..g1].to_vec(), [1, cols]),
                    self.int_tensor((g0 as i64..g1 as i64).collect(), [1, cols]),
                    self.masks.g_seq.as_ref().map(|s| {
                        self.int_tensor(s[g0..g1].iter().map(|&v| to_i64(v)).collect(), [1, cols])
                    }),
                )
            })
            .collect();
        let mut done = 0u64;
        let mut recheck: Vec<usize> = Vec::new();
        for &(q0, q1) in &q_blocks {
            let rows = q1 - q0;
            let q = self.upload(&self.q_host, q0, q1, false);
            let qn = self.float_tensor(self.q_norms[q0..q1].to_vec(), [rows, 1]);
            let self_pos = self.masks.self_pos.as_ref().map(|s| {
                self.int_tensor(s[q0..q1].iter().map(|&v| to_i64(v)).collect(), [rows, 1])
            });
            let q_seq = self.masks.q_seq.as_ref().map(|s| {
                self.int_tensor(s[q0..q1].iter().map(|&v| to_i64(v)).collect(), [rows, 1])
            });
            let mut best: Option<(Tensor<2>, Tensor<2, Int>)> = None;
            for (&(g0, g1), (gt, gnt, gpos, gseq)) in g_blocks.iter().zip(&gallery) {
                let cols = g1 - g0;
                let shape = [rows, cols];
                let sq = q.clone().matmul(gt.clone()).mul_scalar(-2.0)
                    + qn.clone().expand(shape)
                    + gnt.clone().expand(shape);
                let mut mask: Option<Tensor<2, Bool>> = self_pos
                    .as_ref()
                    .map(|p| p.clone().expand(shape).equal(gpos.clone().expand(shape)));
                if let (Some(a), Some(g)) = (&q_seq, gseq) {
                    let m = a.clone().expand(shape).equal(g.clone().expand(shape));
                    mask = Some(match mask {
                        Some(prev) => prev.bool_or(m),
                        None => m,
                    });
                }
                // Masked items get the largest finite distance, not +inf: CubeCL's top-k never
                // selects -inf and reports index -1 there. Both cases are dropped on the host.
                let neg = match mask {
                    Some(m) => sq.mask_fill(m, f32::MAX).neg(),
                    None => sq.neg(),
                };
                let (v, i) = neg.topk_with_indices(kk.min(cols), 1);
                let i = i.add_scalar(g0 as i64);
                best = Some(match best {
                    None => (v, i),
                    Some((bv, bi)) => {
                        let (cv, ci) = (Tensor::cat(vec![bv, v], 1), Tensor::cat(vec![bi, i], 1));
                        if cv.dims()[1] > kk {
                            let (v2, idx) = cv.topk_with_indices(kk, 1);
                            (v2, ci.gather(1, idx))
                        } else {
                            (cv, ci)
                        }
                    }
                });
                done += 1;
                if let Some(p) = progress {
                    p(done, total);
                }
            }
            let Some((v, i)) = best else { continue };
            let width = v.dims()[1];
            let v = tensor_to_host(&v)?.0;
            let i: Vec<i64> = i
                .try_into_data()
                .map_err(|e| invalid(format!("top-k ids could not be read: {e}")))?
                .iter::<i64>()
                .collect();
            for r in 0..rows {
                let qi = q0 + r;
                let mut cand: Vec<(f32, u32)> = (0..width)
                    .map(|c| (-v[r * width + c], i[r * width + c]))
                    .filter(|&(d, id)| d < f32::MAX && (0..self.n_g as i64).contains(&id))
                    .map(|(d, id)| (d, id as u32))
                    .collect();
                cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let cap = caps[qi];
                if cand.len() > cap && cap > 0 && cand[cap - 1].0 == cand[cap].0 {
                    recheck.push(qi);
                } else {
                    for &(d, id) in cand.iter().take(cap) {
                        heaps[qi].push(d, id);
                    }
                }
            }
        }
        // Ties across the cut: an exact host scan of the whole gallery for those queries.
        let (d, g) = (self.dim, self.g_host());
        let rechecked: Vec<(usize, TopK)> = recheck
            .into_par_iter()
            .map(|qi| {
                let mut h = TopK::new(caps[qi]);
                let qr = &self.q_host[qi * d..(qi + 1) * d];
                for p in (0..self.n_g).filter(|&p| !self.masks.masked(qi, p)) {
                    let e = euclidean(qr, &g[p * d..(p + 1) * d]);
                    h.push(e * e, p as u32);
                }
                (qi, h)
            })
            .collect();
        for (qi, h) in rechecked {
            heaps[qi] = h;
        }
        Ok(self.finish(heaps))
    }

    /// Exact distances of the kept items, sorted by `(distance, position)`.
    fn finish(&self, heaps: Vec<TopK>) -> Neighbours {
        let d = self.dim;
        let g = self.g_host();
        let rows: Vec<(Vec<f32>, Vec<usize>)> = heaps
            .into_par_iter()
            .enumerate()
            .map(|(q, h)| {
                let qr = &self.q_host[q * d..(q + 1) * d];
                let mut v: Vec<(f32, usize)> = h
                    .ids()
                    .iter()
                    .map(|&id| {
                        let id = id as usize;
                        (euclidean(qr, &g[id * d..(id + 1) * d]), id)
                    })
                    .collect();
                v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                v.into_iter().unzip()
            })
            .collect();
        let (distances, ids) = rows.into_iter().unzip();
        Neighbours { distances, ids }
    }
}

/// Offers one row of a block to a query's heap.
#[inline]
fn scan_row(
    h: &mut TopK,
    dots: &[f32],
    qn: f32,
    gn: &[f32],
    g0: usize,
    masked: impl Fn(usize) -> bool,
) {
    let mut thr = h.threshold();
    if thr == f32::NEG_INFINITY {
        return;
    }
    for (c, (s, n)) in dots.chunks(ROW_CHUNK).zip(gn.chunks(ROW_CHUNK)).enumerate() {
        let mut m = f32::INFINITY;
        for (&s, &n) in s.iter().zip(n) {
            let d = sq(qn, n, s);
            m = if d < m { d } else { m };
        }
        if m <= thr {
            for (t, (&s, &n)) in s.iter().zip(n).enumerate() {
                let d = sq(qn, n, s);
                let g = g0 + c * ROW_CHUNK + t;
                if d <= thr && !masked(g) {
                    h.push(d, g as u32);
                    thr = h.threshold();
                }
            }
        }
    }
}

/// Offers the transpose of a symmetric block to the heaps of its column queries.
#[allow(clippy::too_many_arguments)]
fn scan_columns(
    heaps: &mut [TopK],
    dots: &[f32],
    cols: usize,
    j0: usize,
    rows: usize,
    row_start: usize,
    col_start: usize,
    norms: &[f32],
    masks: &Masks,
) {
    let w = heaps.len();
    let mut thr: Vec<f32> = heaps.iter().map(TopK::threshold).collect();
    let cn = &norms[col_start..col_start + w];
    for i in 0..rows {
        let s = &dots[i * cols + j0..i * cols + j0 + w];
        let rn = norms[row_start + i];
        let mut hit = false;
        for ((&s, &n), &t) in s.iter().zip(cn).zip(&thr) {
            hit |= sq(n, rn, s) <= t;
        }
        if hit {
            let g = row_start + i;
            for (t, ((&s, &n), h)) in s.iter().zip(cn).zip(heaps.iter_mut()).enumerate() {
                let d = sq(n, rn, s);
                if d <= thr[t] && !masks.masked(col_start + t, g) {
                    h.push(d, g as u32);
                    thr[t] = h.threshold();
                }
            }
        }
    }
}
