//! The CPU fast path: the one place where oml-rs decides to leave Burn's tensor ops for host
//! code of its own, and the host GEMM that code runs on.
//!
//! On the CPU backends (Flex, NdArray) a tensor's values already live in host memory, and three
//! hot spots run faster on them directly than through Burn's ops (each measured in `docs/`):
//! - the kNN search: each block of dot products from [`matmul_nt`], scanned by per-query heaps
//!   (`oml-retrieval`);
//! - the miners' `B×B` distance matrix (`oml-mining`);
//! - extractor inference without autodiff: linear layers, attention and convolutions (as an
//!   implicit GEMM over channels-last activations) on faer, with the bias, BatchNorm,
//!   residual and activation applied as each block of the product is finished (`oml-models`).
//!
//! Training (autodiff) and the accelerators always run Burn's ops. Burn's own CPU products
//! measured 3–4× slower end to end at inference here (`docs/backends.md`), which is why this
//! path exists.
//!
//! It is chosen once per process by an explicit policy:
//! - [`set_enabled`] (the CLI's `--cpu-fast-path on|off`) fixes it before first use;
//! - otherwise the environment variable [`ENV`] (`on`/`off`, `1`/`0`, `true`/`false`);
//! - otherwise a config's `cpu_fast_path:` ([`prefer`]);
//! - otherwise it is on.
//!
//! With it off, every backend runs the same Burn ops: the reference the fast path is tested
//! against (CI runs the numeric suites both ways).
//!
//! ```
//! use oml_interfaces::cpu;
//! let device = oml_interfaces::device::select_device(Some("cpu"))?;
//! // true unless OML_CPU_FAST_PATH=off was set for this process
//! println!("fast path on the CPU backend: {}", cpu::applies(&device));
//!
//! // a = [[1, 2], [3, 4], [5, 6]] (3×2), b = [[1, 0], [0, 1]] (2×2): a·bᵀ = a.
//! let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let b = [1.0f32, 0.0, 0.0, 1.0];
//! let mut out = [0.0f32; 6];
//! cpu::matmul_nt(&a, &b, 2, &mut out)?;
//! assert_eq!(out, a);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use burn::prelude::*;
use burn::tensor::DataError;
use faer::{Accum, MatMut, Par};
use rayon::prelude::*;
use std::sync::OnceLock;

/// A read-only strided `f32` matrix view (faer's): what [`gemm_rows`] multiplies by.
pub use faer::MatRef;

/// Environment variable that switches the fast path: `on`/`off` (also `1`/`0`,
/// `true`/`false`, `yes`/`no`).
pub const ENV: &str = "OML_CPU_FAST_PATH";

static POLICY: OnceLock<bool> = OnceLock::new();

/// Why the policy could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// [`ENV`] holds something other than on/off.
    #[error("{ENV}={value:?}: expected on or off (1/0, true/false, yes/no)")]
    BadValue {
        /// The variable's value.
        value: String,
    },
    /// The policy was already fixed to the other value in this process.
    #[error(
        "the CPU fast path is already {} for this process: set it before the first model, kNN or miner call",
        if *.current { "on" } else { "off" }
    )]
    AlreadyFixed {
        /// The policy in force.
        current: bool,
    },
}

/// Parses an on/off word (`on`/`off`, `1`/`0`, `true`/`false`, `yes`/`no`, any case): the
/// values [`ENV`] and the CLI's `--cpu-fast-path` accept.
pub fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "1" | "true" | "yes" => Some(true),
        "off" | "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// The policy [`ENV`] asks for: `None` when it is unset or empty, an error naming the value
/// when it is not an on/off word. Binaries call it at start-up to report a bad value.
pub fn policy_from_env() -> Result<Option<bool>, PolicyError> {
    match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => parse_switch(&v)
            .map(Some)
            .ok_or(PolicyError::BadValue { value: v }),
        _ => Ok(None),
    }
}

/// Fixes the policy for this process. Setting the value already in force is not an error.
pub fn set_enabled(on: bool) -> Result<(), PolicyError> {
    let current = *POLICY.get_or_init(|| on);
    if current == on {
        Ok(())
    } else {
        Err(PolicyError::AlreadyFixed { current })
    }
}

/// Fixes the policy to `on` unless it is already fixed (by [`set_enabled`], [`ENV`] or an
/// earlier use); returns the policy in force. For a config file's setting, which the command
/// line and the environment override.
pub fn prefer(on: bool) -> bool {
    if policy_from_env().ok().flatten().is_some() {
        return enabled();
    }
    *POLICY.get_or_init(|| on)
}

/// Whether the fast path is on for this process (fixed at the first call: [`set_enabled`], else
/// [`ENV`], else on; an unreadable [`ENV`] leaves it on, and binaries report it through
/// [`policy_from_env`]).
pub fn enabled() -> bool {
    *POLICY.get_or_init(|| policy_from_env().ok().flatten().unwrap_or(true))
}

/// Whether the fast path applies to work on `device`: the policy is on and the device is a host
/// backend ([`is_host_backend`]).
pub fn applies(device: &Device) -> bool {
    enabled() && is_host_backend(device)
}

/// True for the host (CPU) backends, Flex and NdArray, with or without autodiff.
///
/// Burn 0.22 keeps its backend enum behind feature gates of its own crates, which a library
/// compiled without backend features cannot name, so the check reads the device's `Debug` name
/// (which names the backend in every build). This is its only use.
pub fn is_host_backend(device: &Device) -> bool {
    let name = format!("{device:?}");
    name.contains("Flex") || name.contains("NdArray")
}

/// A float tensor's values on the host as row-major `f32`: one copy when the tensor already
/// holds `f32` (always on the CPU backends), a conversion otherwise.
pub fn host_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, DataError> {
    t.into_data().try_into_vec_as::<f32>()
}

/// Operand lengths that do not describe `A [m, k]`, `B [n, k]` and `out [m, n]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "host GEMM: a has {a_len} values, b {b_len}, out {out_len}; they must be m·k, k·n and m·n for k = {k}"
)]
pub struct ShapeError {
    /// Length of `a`.
    pub a_len: usize,
    /// Length of `b`.
    pub b_len: usize,
    /// Length of `out`.
    pub out_len: usize,
    /// The shared inner dimension.
    pub k: usize,
}

/// `out = A·Bᵀ` for row-major `A [m, k]`, `B [n, k]`, `out [m, n]`; `m` and `n` follow from the
/// lengths. Parallel on rayon's pool.
pub fn matmul_nt(a: &[f32], b: &[f32], k: usize, out: &mut [f32]) -> Result<(), ShapeError> {
    gemm(a, false, b, true, k, out)
}

/// `out = A·B` for row-major `A [m, k]`, `B [k, n]`, `out [m, n]` (a linear layer's `x·W`);
/// `m` and `n` follow from the lengths. Parallel on rayon's pool.
pub fn matmul(a: &[f32], b: &[f32], k: usize, out: &mut [f32]) -> Result<(), ShapeError> {
    gemm(a, false, b, false, k, out)
}

/// `out = A·B` with `A` given transposed, `at = Aᵀ [k, m]` row-major, `B [k, n]`, `out [m, n]`.
///
/// For an `A` already stored transposed: the GEMM reads it in place.
pub fn matmul_tn(at: &[f32], b: &[f32], k: usize, out: &mut [f32]) -> Result<(), ShapeError> {
    gemm(at, true, b, false, k, out)
}

/// `A·B` (or `A·Bᵀ`) with `A` (or `Aᵀ`) and `B` (or `Bᵀ`) row-major as the flags say.
fn gemm(
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    k: usize,
    out: &mut [f32],
) -> Result<(), ShapeError> {
    let out_len = out.len();
    let err = || ShapeError {
        a_len: a.len(),
        b_len: b.len(),
        out_len,
        k,
    };
    if k == 0 {
        // An empty inner dimension: every dot product is 0, whatever m and n are.
        if !a.is_empty() || !b.is_empty() {
            return Err(err());
        }
        out.fill(0.0);
        return Ok(());
    }
    if !a.len().is_multiple_of(k) || !b.len().is_multiple_of(k) {
        return Err(err());
    }
    let (m, n) = (a.len() / k, b.len() / k);
    if out_len != m * n {
        return Err(err());
    }
    let view = |data, rows, cols, transposed| {
        if transposed {
            MatRef::from_row_major_slice(data, cols, rows).transpose()
        } else {
            MatRef::from_row_major_slice(data, rows, cols)
        }
    };
    let (a, b) = (view(a, m, k, a_transposed), view(b, k, n, b_transposed));
    product(MatMut::from_row_major_slice_mut(out, m, n), a, b);
    Ok(())
}

/// `c = a·b` through faer, on rayon's pool unless the product is too small to share.
fn product(c: MatMut<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>) {
    let work = a.nrows() * a.ncols() * b.ncols();
    let par = if work < PARALLEL_WORK || rayon::current_num_threads() < 2 {
        Par::Seq
    } else {
        Par::rayon(0)
    };
    faer::linalg::matmul::matmul(c, Accum::Replace, a, b, 1.0, par);
}

/// Lanes of the host sums below: a single running `f32` sum cannot be reordered (vectorised) by
/// the compiler, 16 independent ones can (one AVX-512 vector, two AVX2 ones).
const LANES: usize = 16;

/// `Σ f(a_k, b_k)` over `min(len)` values, summed in [`LANES`] lanes.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    // Same lengths first, so that the chunks and the tails pair up.
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(LANES), b[..n].chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&p, &q)| f(p, q))
        .sum();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a_k`, in 16 lanes so that it vectorises (inlined, so that it does so for the widest
/// vectors of a caller compiled for them, e.g. through `pulp`).
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    lane_sum(a, a, |p, _| p)
}

/// `Σ a_k²`, in 16 lanes (see [`sum`]).
#[inline(always)]
pub fn squared_norm(a: &[f32]) -> f32 {
    lane_sum(a, a, |p, _| p * p)
}

/// `Σ (a_k − b_k)²` over `min(len)` values, in 16 lanes (see [`sum`]).
#[inline(always)]
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |p, q| (p - q) * (p - q))
}

/// Multiply-adds under which a product runs on one thread (8 Mi: sharing smaller products costs
/// more in synchronisation than it saves; not tuned).
const PARALLEL_WORK: usize = 1 << 23;

/// Values of `A` gathered per block by [`gemm_rows`] (16 MiB): large blocks keep faer's
/// packing of `B` (once per block) a small part of the work, and bound the gather buffer.
const BLOCK_VALUES: usize = 1 << 22;

/// Rows per epilogue task.
const EPILOGUE_ROWS: usize = 64;

/// Values of `A` gathered per tile by [`gemm_rows`]'s tiled path (512 KiB: the tile stays in
/// the core's L2 cache between its gather and its product).
const TILE_VALUES: usize = 1 << 17;

/// Fewest rows per tile: faer packs `B` once per tile, which 128 rows of product amortise.
const MIN_TILE_ROWS: usize = 128;

/// Tiles per thread below which the gathered rows take the block path instead (fewer tiles
/// would leave threads idle while faer could share each block's product).
const TILES_PER_THREAD: usize = 4;

/// Rows per tile of the tiled path for gathered `[m, k]` rows on `threads` threads; `None`
/// where there are too few tiles to keep every thread busy.
fn tile_rows(m: usize, k: usize, threads: usize) -> Option<usize> {
    let rows = (TILE_VALUES / k.max(1)).max(MIN_TILE_ROWS);
    (m.div_ceil(rows) >= TILES_PER_THREAD * threads.max(1)).then_some(rows)
}

/// The rows of a GEMM's left operand, produced on demand: a matrix, or a convolution's
/// implicit im2col rows gathered from its input.
pub trait RowSource: Sync {
    /// `[m, k]`.
    fn shape(&self) -> [usize; 2];
    /// Writes row `i` (its `k` values) into `out`.
    fn fill_row(&self, i: usize, out: &mut [f32]);
    /// The rows as a matrix view when they already are one: [`gemm_rows`] then reads them in
    /// place instead of gathering them.
    fn as_matrix(&self) -> Option<MatRef<'_, f32>> {
        None
    }
}

impl RowSource for MatRef<'_, f32> {
    fn shape(&self) -> [usize; 2] {
        [self.nrows(), self.ncols()]
    }

    fn fill_row(&self, i: usize, out: &mut [f32]) {
        out.iter_mut()
            .zip(self.row(i).iter())
            .for_each(|(o, v)| *o = *v);
    }

    fn as_matrix(&self) -> Option<MatRef<'_, f32>> {
        Some(*self)
    }
}

/// `C = A·B` into a row-major `C [m, n]` (overwritten), then `epilogue(i0, rows)` on each
/// finished block of `C`'s rows (`rows` is `C[i0 .., ..]`, whole rows): a bias, a residual, an
/// activation, a softmax.
///
/// Gathered rows (a convolution's) large enough for a few tiles per thread are taken tile by
/// tile, each tile's gather, product (faer, one thread) and epilogue done by one rayon task
/// while the tile is in that core's cache: against the block path, ResNet inference 1.17–1.22×
/// faster on AVX-512 and AVX2 (`docs/backends.md`). Otherwise `A` is taken block by block (at
/// most 4 Mi values, 16 MiB): read in place when `a` is a matrix view, gathered row by row
/// otherwise. Each block is multiplied by faer on rayon's pool, then finished by the epilogue
/// in parallel tasks of 64 rows.
pub fn gemm_rows<A, E>(
    a: &A,
    b: MatRef<'_, f32>,
    c: &mut [f32],
    epilogue: E,
) -> Result<(), ShapeError>
where
    A: RowSource + ?Sized,
    E: Fn(usize, &mut [f32]) + Sync,
{
    let [m, k] = a.shape();
    let n = b.ncols();
    if b.nrows() != k || c.len() != m * n {
        return Err(ShapeError {
            a_len: m * k,
            b_len: b.nrows() * n,
            out_len: c.len(),
            k,
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let direct = a.as_matrix();
    if direct.is_none()
        && let Some(rows) = tile_rows(m, k, rayon::current_num_threads())
    {
        gemm_tiles(a, b, c, rows, &epilogue);
        return Ok(());
    }
    let rows = (BLOCK_VALUES / k.max(1)).clamp(1, m);
    let mut gathered = match direct {
        Some(_) => Vec::new(),
        None => vec![0f32; rows * k],
    };
    for (block, c_block) in c.chunks_mut(rows * n).enumerate() {
        let (i0, r) = (block * rows, c_block.len() / n);
        let a_block = match direct {
            Some(matrix) => matrix.subrows(i0, r),
            None => {
                let buf = &mut gathered[..r * k];
                if k > 0 {
                    buf.par_chunks_mut(k)
                        .enumerate()
                        .for_each(|(i, row)| a.fill_row(i0 + i, row));
                }
                MatRef::from_row_major_slice(buf, r, k)
            }
        };
        product(MatMut::from_row_major_slice_mut(c_block, r, n), a_block, b);
        c_block
            .par_chunks_mut(EPILOGUE_ROWS * n)
            .enumerate()
            .for_each(|(t, rows)| epilogue(i0 + t * EPILOGUE_ROWS, rows));
    }
    Ok(())
}

/// [`gemm_rows`]'s tiled path: `rows` rows of `A` per task, gathered into the task's buffer,
/// multiplied on the task's thread and finished by the epilogue.
fn gemm_tiles<A, E>(a: &A, b: MatRef<'_, f32>, c: &mut [f32], rows: usize, epilogue: &E)
where
    A: RowSource + ?Sized,
    E: Fn(usize, &mut [f32]) + Sync,
{
    let [_, k] = a.shape();
    let n = b.ncols();
    c.par_chunks_mut(rows * n).enumerate().for_each_init(
        || vec![0f32; rows * k],
        |buf, (t, c_tile)| {
            let (i0, r) = (t * rows, c_tile.len() / n);
            let tile = &mut buf[..r * k];
            if k > 0 {
                for (i, row) in tile.chunks_exact_mut(k).enumerate() {
                    a.fill_row(i0 + i, row);
                }
            }
            faer::linalg::matmul::matmul(
                MatMut::from_row_major_slice_mut(c_tile, r, n),
                Accum::Replace,
                MatRef::from_row_major_slice(tile, r, k),
                b,
                1.0,
                Par::Seq,
            );
            for (q, finished) in c_tile.chunks_mut(EPILOGUE_ROWS * n).enumerate() {
                epilogue(i0 + q * EPILOGUE_ROWS, finished);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane sums against `f64` sums, for lengths around the lane count (tail only, whole
    /// lanes, both) and vectors of different lengths.
    #[test]
    fn lane_sums_match_plain_sums() {
        for n in [0usize, 1, 15, 16, 17, 40, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n + 3).map(|i| (i as f32 * 0.11).cos()).collect();
            let close =
                |got: f32, want: f64| (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs());
            let plain = |f: &dyn Fn(f64, f64) -> f64| -> f64 {
                a.iter().zip(&b).map(|(&p, &q)| f(p as f64, q as f64)).sum()
            };
            let s: f64 = a.iter().map(|&v| v as f64).sum();
            let sq: f64 = a.iter().map(|&v| (v as f64).powi(2)).sum();
            assert!(close(sum(&a), s), "sum, {n}");
            assert!(close(squared_norm(&a), sq), "squared_norm, {n}");
            let want = plain(&|p, q| (p - q).powi(2));
            assert!(
                close(squared_distance(&a, &b), want),
                "squared_distance, {n}"
            );
        }
    }

    #[test]
    fn on_off_words() {
        for w in ["on", "1", "TRUE", " yes "] {
            assert_eq!(parse_switch(w), Some(true), "{w}");
        }
        for w in ["off", "0", "false", "No"] {
            assert_eq!(parse_switch(w), Some(false), "{w}");
        }
        assert_eq!(parse_switch("maybe"), None);
    }

    #[test]
    fn the_policy_is_fixed_once() {
        let now = enabled();
        assert_eq!(set_enabled(now), Ok(()));
        assert_eq!(
            prefer(!now),
            now,
            "a config does not override the policy in force"
        );
        let err = set_enabled(!now).unwrap_err();
        assert_eq!(err, PolicyError::AlreadyFixed { current: now });
        assert!(err.to_string().contains(if now { "on" } else { "off" }));
    }

    #[test]
    fn cpu_backends_are_host_backends_with_and_without_autodiff() {
        let device = crate::device::select_device(Some("cpu")).unwrap();
        assert!(is_host_backend(&device), "{device:?}");
        assert!(is_host_backend(&device.clone().autodiff()));
        assert_eq!(applies(&device), enabled());
        #[cfg(feature = "wgpu")]
        assert!(!is_host_backend(
            &crate::device::device_by_name("wgpu").unwrap()
        ));
    }

    #[test]
    fn host_f32_reads_row_major_values() {
        let device = crate::device::test_device();
        let v: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let t = Tensor::<2>::from_data(TensorData::new(v.clone(), [3, 4]), &device);
        assert_eq!(host_f32(t.clone()).unwrap(), v);
        // a transposed view reads in its own (logical) row-major order
        let want: Vec<f32> = (0..12).map(|i| v[(i % 3) * 4 + i / 3]).collect();
        assert_eq!(host_f32(t.transpose()).unwrap(), want);
    }

    fn naive(a: &[f32], b: &[f32], k: usize) -> Vec<f32> {
        let (m, n) = (a.len() / k, b.len() / k);
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for t in 0..k {
                    s += a[i * k + t] as f64 * b[j * k + t] as f64;
                }
                out[i * n + j] = s as f32;
            }
        }
        out
    }

    /// Row-major `[rows, len / rows]` → row-major `[len / rows, rows]`.
    fn transpose(x: &[f32], rows: usize) -> Vec<f32> {
        let cols = x.len() / rows;
        let mut t = vec![0.0f32; x.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = x[r * cols + c];
            }
        }
        t
    }

    /// `got` equals `want` within the GEMM's float tolerance; `what` names the case.
    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what} at {i}: {g} vs {w}"
            );
        }
    }

    /// Deterministic values in [-1, 1) without a random-number dependency.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_naive_on_odd_shapes() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 9, 128),
            (100, 33, 3),
            (257, 255, 64),
        ] {
            let a = values(m * k, (m * 31 + k) as u64);
            let b = values(n * k, (n * 17 + k) as u64);
            let mut out = vec![f32::NAN; m * n];
            matmul_nt(&a, &b, k, &mut out).unwrap();
            assert_close(&out, &naive(&a, &b, k), &format!("{m}x{n}x{k}"));
        }
    }

    #[test]
    fn matmul_nn_matches_naive() {
        for &(m, n, k) in &[(1, 1, 1), (33, 70, 384), (200, 17, 5)] {
            let a = values(m * k, (m + 7 * k) as u64);
            let b_kn = values(k * n, (n + 3 * k) as u64);
            // naive() takes B as [n, k] rows: transpose the [k, n] operand for the oracle.
            let b_nk = transpose(&b_kn, k);
            let mut out = vec![f32::NAN; m * n];
            matmul(&a, &b_kn, k, &mut out).unwrap();
            assert_close(&out, &naive(&a, &b_nk, k), &format!("{m}x{n}x{k}"));
        }
    }

    #[test]
    fn matmul_tn_matches_naive() {
        for &(m, n, k) in &[(1, 1, 1), (64, 49, 300), (9, 130, 17)] {
            let a = values(m * k, (m + 5 * k) as u64);
            let b_kn = values(k * n, (n + 11 * k) as u64);
            let (at, b_nk) = (transpose(&a, m), transpose(&b_kn, k));
            let mut out = vec![f32::NAN; m * n];
            matmul_tn(&at, &b_kn, k, &mut out).unwrap();
            assert_close(&out, &naive(&a, &b_nk, k), &format!("{m}x{n}x{k}"));
        }
    }

    #[test]
    fn empty_operands() {
        let mut out: Vec<f32> = vec![];
        matmul_nt(&[], &[1.0, 2.0], 2, &mut out).unwrap();
        let mut out = vec![f32::NAN; 6];
        matmul_nt(&[], &[], 0, &mut out).unwrap();
        assert!(out.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn inconsistent_lengths_are_errors() {
        let mut out = vec![0.0f32; 4];
        let e = matmul_nt(&[1.0; 5], &[1.0; 4], 2, &mut out).unwrap_err();
        assert_eq!(e.a_len, 5);
        assert!(matmul_nt(&[1.0; 4], &[1.0; 4], 2, &mut [0.0; 3]).is_err());
        assert!(matmul_nt(&[1.0; 4], &[], 0, &mut out).is_err());
    }

    /// `A·B` in f64 for row-major `A [m, k]`, `B [k, n]`.
    fn oracle_nn(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|t| a[i * k + t] as f64 * b[t * n + j] as f64)
                    .sum();
                out[i * n + j] = s as f32;
            }
        }
        out
    }

    /// A matrix that only hands out rows, so that [`gemm_rows`] gathers them.
    struct Gathered<'a>(MatRef<'a, f32>);

    impl RowSource for Gathered<'_> {
        fn shape(&self) -> [usize; 2] {
            RowSource::shape(&self.0)
        }
        fn fill_row(&self, i: usize, out: &mut [f32]) {
            self.0.fill_row(i, out)
        }
    }

    #[test]
    fn gemm_rows_matches_the_oracle_with_the_epilogue_once_per_row() {
        // On two threads, whatever the machine: the path taken depends on the thread count.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build();
        pool.expect("a rayon pool of two threads")
            .install(gemm_rows_cases);
    }

    fn gemm_rows_cases() {
        // Read in place, (2100, 2100, 3) spans two blocks (m·k > BLOCK_VALUES). Gathered,
        // (2100, 2100, 3) and (1100, 1200, 6) take the tiled path (17 and 9 tiles of 128 rows,
        // the last one short); the others have too few tiles for it and take the block path.
        assert_eq!(tile_rows(1100, 1200, 2), Some(128));
        assert_eq!(tile_rows(130, 300, 2), None);
        assert_eq!(tile_rows(2100, 2100, 2), Some(128));
        for &(m, k, n) in &[
            (1, 1, 1),
            (65, 3, 7),
            (130, 300, 70),
            (2100, 2100, 3),
            (1100, 1200, 6),
        ] {
            let a = values(m * k, (m + 13 * k) as u64);
            let b = values(k * n, (n + 7 * k) as u64);
            let bt = transpose(&b, k); // [n, k]
            let want = oracle_nn(&a, &b, m, k, n);
            for (layout, bv) in [
                ("b row-major", MatRef::from_row_major_slice(&b, k, n)),
                (
                    "b transposed",
                    MatRef::from_row_major_slice(&bt, n, k).transpose(),
                ),
            ] {
                let av = MatRef::from_row_major_slice(&a, m, k);
                let shifted: Vec<f32> = want
                    .iter()
                    .enumerate()
                    .map(|(i, w)| w + (i / n) as f32)
                    .collect();
                // Read in place (a matrix view) and gathered row by row (any other source).
                let sources: [(&str, &dyn RowSource); 2] =
                    [("in place", &av), ("gathered", &Gathered(av))];
                for (how, source) in sources {
                    let mut c = vec![f32::NAN; m * n];
                    // Adds each row's index: a row finished twice or never shows.
                    gemm_rows(source, bv, &mut c, |i0, rows| {
                        for (r, row) in rows.chunks_exact_mut(n).enumerate() {
                            row.iter_mut().for_each(|v| *v += (i0 + r) as f32);
                        }
                    })
                    .unwrap();
                    assert_close(&c, &shifted, &format!("{m}x{k}x{n} {layout}, {how}"));
                }
            }
        }
    }

    #[test]
    fn gemm_rows_reads_strided_rows() {
        // q of a fused [n, 3·d] projection: rows 3·d apart, as the attention reads them.
        let (n, d) = (37, 8);
        let qkv = values(n * 3 * d, 5);
        let q: Vec<f32> = (0..n)
            .flat_map(|i| qkv[i * 3 * d + d..i * 3 * d + 2 * d].to_vec())
            .collect();
        let b = values(d * 5, 6);
        let mut c = vec![0f32; n * 5];
        let view = MatRef::from_row_major_slice_with_stride(&qkv[d..], n, d, 3 * d);
        gemm_rows(
            &view,
            MatRef::from_row_major_slice(&b, d, 5),
            &mut c,
            |_, _| {},
        )
        .unwrap();
        assert_close(&c, &oracle_nn(&q, &b, n, d, 5), "strided");
    }

    #[test]
    fn gemm_rows_empty_depth_gives_zeros_and_bad_shapes_are_errors() {
        let empty: [f32; 0] = [];
        let mut c = vec![f32::NAN; 6];
        let a = MatRef::from_row_major_slice(&empty, 3, 0);
        gemm_rows(
            &a,
            MatRef::from_row_major_slice(&empty, 0, 2),
            &mut c,
            |_, _| {},
        )
        .unwrap();
        assert!(c.iter().all(|&v| v == 0.0), "{c:?}");
        let a = [1f32; 6];
        let a = MatRef::from_row_major_slice(&a, 3, 2);
        let b = [1f32; 6];
        let err = gemm_rows(
            &a,
            MatRef::from_row_major_slice(&b, 3, 2),
            &mut c,
            |_, _| {},
        );
        assert!(err.is_err());
        let err = gemm_rows(
            &a,
            MatRef::from_row_major_slice(&b, 2, 3),
            &mut [0f32; 8],
            |_, _| {},
        );
        assert_eq!(err.unwrap_err().out_len, 8);
    }
}
