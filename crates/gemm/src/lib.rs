//! The host `f32` GEMM behind oml-rs's CPU inference and distance paths.
//!
//! `C = A·B` for strided `A [m, k]` and `B [k, n]` into a row-major `C [m, n]`. Where the CPU has
//! AVX-512F, or AVX2 and FMA, it runs a blocked GEMM of its own: `B` packed into panels once ([`PackedB`]), tasks
//! over blocks of `A`'s rows on rayon's pool, each gathering its rows one `KC`-deep piece at a
//! time and running a 12×32 register-tiled microkernel (`src/kernel.rs`) on them in place.
//! Elsewhere it runs matrixmultiply's runtime-dispatched kernels (through ndarray), split over
//! row chunks the same way.
//!
//! [`gemm_rows`] is the same product with `B` packed once for many calls (a layer's weights),
//! `A`'s rows produced on demand by a [`RowSource`] (a convolution's implicit im2col rows) and
//! an epilogue on each finished block of `C`'s rows (bias, residual, activation, softmax).
//!
//! ```
//! use oml_gemm::{gemm, MatRef};
//! // a = [[1, 2], [3, 4], [5, 6]] (3×2), b = [[1, 0], [0, 1]] (2×2): a·b = a.
//! let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let b = [1.0f32, 0.0, 0.0, 1.0];
//! let mut c = [0.0f32; 6];
//! gemm(MatRef::row_major(&a, 3, 2)?, MatRef::row_major(&b, 2, 2)?, &mut c)?;
//! assert_eq!(c, a);
//! # Ok::<(), oml_gemm::GemmError>(())
//! ```

mod kernel;
mod packed;

pub use packed::{PackedB, RowSource, gemm_rows};

use kernel::{NR, Simd};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis, ShapeBuilder, Slice};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Shapes that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GemmError {
    /// A view's strides reach past its data.
    #[error(
        "matrix view [{rows}, {cols}] with strides ({row_stride}, {col_stride}) needs more than the {len} values given"
    )]
    View {
        /// Rows of the view.
        rows: usize,
        /// Columns of the view.
        cols: usize,
        /// Distance between rows.
        row_stride: usize,
        /// Distance between columns.
        col_stride: usize,
        /// Values in the data.
        len: usize,
    },
    /// `A`'s columns, `B`'s rows or `C`'s length disagree.
    #[error(
        "GEMM of A [{m}, {k}] and B [{b_rows}, {n}] into {c_len} values: need k = B's rows and m·n values"
    )]
    Shape {
        /// Rows of `A`.
        m: usize,
        /// Columns of `A`.
        k: usize,
        /// Rows of `B`.
        b_rows: usize,
        /// Columns of `B`.
        n: usize,
        /// Length of `C`.
        c_len: usize,
    },
}

/// A read-only `f32` matrix: element `(i, j)` at `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A view with explicit strides; an error if they reach past `data`.
    pub fn strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, GemmError> {
        let last = (rows.checked_sub(1), cols.checked_sub(1));
        let fits = match last {
            (Some(r), Some(c)) => r
                .checked_mul(row_stride)
                .zip(c.checked_mul(col_stride))
                .and_then(|(x, y)| x.checked_add(y))
                .is_some_and(|end| end < data.len()),
            _ => true,
        };
        if !fits {
            return Err(GemmError::View {
                rows,
                cols,
                row_stride,
                col_stride,
                len: data.len(),
            });
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: col_stride,
        })
    }

    /// A row-major `[rows, cols]` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, GemmError> {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    fn ndarray(&self) -> ArrayView2<'a, f32> {
        let end = if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        };
        // The constructor checked that the strides stay inside `data`.
        ArrayView2::from_shape(
            (self.rows, self.cols).strides((self.rs, self.cs)),
            &self.data[..end],
        )
        .unwrap_or_else(|_| unreachable!("MatRef bounds are checked on construction"))
    }
}

/// Which kernel runs the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The blocked GEMM with the AVX-512 microkernel (only where the CPU has AVX-512F).
    Avx512,
    /// The blocked GEMM with the AVX2 + FMA microkernel (only where the CPU has both).
    Avx2,
    /// matrixmultiply's kernels, for every CPU.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs, unless `OML_GEMM_KERNEL` names another (`avx512`,
    /// `avx2` or `portable`; read once per process): a knob for comparing the kernels on one
    /// machine (`docs/models.md`). A named kernel the CPU lacks still falls back to
    /// [`Kernel::Portable`] where it is used; other values are ignored.
    pub fn best() -> Self {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            match std::env::var("OML_GEMM_KERNEL").as_deref() {
                Ok("avx512") => return Kernel::Avx512,
                Ok("avx2") => return Kernel::Avx2,
                Ok("portable") => return Kernel::Portable,
                _ => {}
            }
            if Simd::avx512().is_some() {
                Kernel::Avx512
            } else if Simd::avx2().is_some() {
                Kernel::Avx2
            } else {
                Kernel::Portable
            }
        })
    }

    /// The microkernel's token where this kernel is one of ours and the CPU runs it.
    fn simd(self) -> Option<Simd> {
        match self {
            Kernel::Avx512 => Simd::avx512(),
            Kernel::Avx2 => Simd::avx2(),
            Kernel::Portable => None,
        }
    }
}

/// `C = A·B` into a row-major `C [m, n]` (overwritten), with [`Kernel::best`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) -> Result<(), GemmError> {
    gemm_with(Kernel::best(), a, b, c)
}

/// [`gemm`] with a chosen kernel; [`Kernel::Avx512`] and [`Kernel::Avx2`] fall back to
/// [`Kernel::Portable`] on a CPU without their instructions.
pub fn gemm_with(
    kernel: Kernel,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
) -> Result<(), GemmError> {
    if kernel.simd().is_some() {
        return gemm_rows(&a, &PackedB::with(kernel, b), c, |_, _| {});
    }
    let ([m, k], [_, n]) = (a.shape(), check_shapes(a.shape(), b.shape(), c.len())?);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        c.fill(0.0);
        return Ok(());
    }
    portable(a, b, c);
    Ok(())
}

/// `B`'s shape, or the error naming all three where `A [m, k]`, `B [k, n]` and a `C` of
/// `c_len` values do not fit together.
fn check_shapes([m, k]: [usize; 2], b: [usize; 2], c_len: usize) -> Result<[usize; 2], GemmError> {
    let [b_rows, n] = b;
    if k != b_rows || m.checked_mul(n) != Some(c_len) {
        return Err(GemmError::Shape {
            m,
            k,
            b_rows,
            n,
            c_len,
        });
    }
    Ok(b)
}

/// Depth of one packed block: a `B` micro-panel (`KC × NR`) and a gathered `A` panel
/// (`MR × KC`) together stay within L1 and L2.
const KC: usize = 256;
/// Most rows of `A` one task gathers (`MC × KC` in L2).
const MC: usize = 240;

/// `step[..live] = src[..live]`, zeros after. A full step is copied as a fixed-size array: the
/// compiler then emits vector moves instead of a `memmove` call per step.
#[inline(always)]
fn copy_padded<const L: usize>(src: &[f32], live: usize, step: &mut [f32]) {
    if live == L
        && let (Some(src), Some(step)) = (src.first_chunk::<L>(), step.first_chunk_mut::<L>())
    {
        *step = *src;
        return;
    }
    step[..live].copy_from_slice(&src[..live]);
    step[live..].fill(0.0);
}

/// Packs `B[p0 .. p0 + kc, j0 .. j0 + cols]` (`cols ≤ NR`) as one panel of `kc` steps of `NR`
/// values, zero-padded past column `cols`.
fn pack_panel(b: MatRef<'_>, p0: usize, j0: usize, cols: usize, panel: &mut [f32]) {
    let base = p0 * b.rs + j0 * b.cs;
    if b.cs == 1 {
        // Rows of `B` are contiguous: one fixed-size copy per step.
        for (p, step) in panel.chunks_exact_mut(NR).enumerate() {
            copy_padded::<NR>(&b.data[base + p * b.rs..], cols, step);
        }
        return;
    }
    // Columns of `B` (a transposed view: a layer's weights stored per output) are read one at
    // a time, each along its length.
    for j in 0..NR {
        if j < cols {
            let col = base + j * b.cs;
            for (p, step) in panel.chunks_exact_mut(NR).enumerate() {
                step[j] = b.data[col + p * b.rs];
            }
        } else {
            panel.iter_mut().skip(j).step_by(NR).for_each(|v| *v = 0.0);
        }
    }
}

/// Fewest rows (or columns) one parallel task multiplies on the portable path: below this the
/// per-task packing of the other operand costs more than the split saves.
const MIN_TASK_ROWS: usize = 16;

/// matrixmultiply's GEMM, one single-threaded call per chunk of the larger of `m` and `n`, so
/// the operand each task packs again is the smaller one.
fn portable(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (a, b) = (a.ndarray(), b.ndarray());
    let (m, n) = (a.nrows(), b.ncols());
    let tasks = rayon::current_num_threads();
    let Ok(mut c) = ArrayViewMut2::from_shape((m, n), c) else {
        unreachable!("gemm_with checked C's length")
    };
    let (axis, len) = if m >= n { (Axis(0), m) } else { (Axis(1), n) };
    let step = len.div_ceil(tasks).max(MIN_TASK_ROWS).next_multiple_of(8);
    let parts: Vec<_> = c.axis_chunks_iter_mut(axis, step).collect();
    parts.into_par_iter().enumerate().for_each(|(t, mut c)| {
        let range = Slice::from(t * step..t * step + c.len_of(axis));
        if axis == Axis(0) {
            general_mat_mul(1.0, &a.slice_axis(Axis(0), range), &b, 0.0, &mut c);
        } else {
            general_mat_mul(1.0, &a, &b.slice_axis(Axis(1), range), 0.0, &mut c);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) without a random-number dependency.
    pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
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

    /// The oracle: a triple loop in f64 over the views' own indexing.
    pub(crate) fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let at = |m: &MatRef<'_>, i: usize, j: usize| m.data[i * m.rs + j * m.cs] as f64;
        let ([m, k], n) = (a.shape(), b.cols);
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(&a, i, p) * at(&b, p, j)).sum::<f64>() as f32;
            }
        }
        c
    }

    /// Every kernel this CPU runs (the AVX-512 one only where detected).
    pub(crate) fn kernels() -> Vec<Kernel> {
        let k: Vec<Kernel> = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|k| *k == Kernel::Portable || k.simd().is_some())
            .collect();
        if k.len() < 3 {
            eprintln!("this CPU runs only {k:?}: the other kernels are not checked");
        }
        k
    }

    /// `(m, k, n)` below, at and past MR, NR, KC and MC, with more rows than one block per
    /// thread and `B` blocks on both sides of the fused-loop bound.
    pub(crate) const EDGES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (11, 3, 31),
        (12, 256, 32),
        (13, 257, 33),
        (241, 300, 70),
        (700, 600, 64),
        (500, 40, 17),
        (30, 520, 2100),
        (37, 40, 2100),
    ];

    /// `got` equals `want` within the GEMM's float tolerance; `what` names the case.
    pub(crate) fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what} at {i}: {g} vs {w}"
            );
        }
    }

    fn check(a: MatRef<'_>, b: MatRef<'_>, what: &str) {
        let want = naive(a, b);
        for kernel in kernels() {
            let mut c = vec![f32::NAN; want.len()];
            gemm_with(kernel, a, b, &mut c).unwrap();
            assert_close(&c, &want, &format!("{kernel:?} {what}"));
        }
    }

    #[test]
    fn matches_the_oracle_across_block_and_tile_edges() {
        // In every operand layout.
        for (m, k, n) in EDGES {
            let (a, b) = (
                values(m * k, (m * 7 + k) as u64),
                values(k * n, (n * 5 + k) as u64),
            );
            let a_rm = MatRef::row_major(&a, m, k).unwrap();
            let a_cm = MatRef::row_major(&a, k, m).unwrap().t();
            let b_rm = MatRef::row_major(&b, k, n).unwrap();
            let b_cm = MatRef::row_major(&b, n, k).unwrap().t();
            for (x, y, layout) in [
                (a_rm, b_rm, "nn"),
                (a_cm, b_rm, "tn"),
                (a_rm, b_cm, "nt"),
                (a_cm, b_cm, "tt"),
            ] {
                check(x, y, &format!("{m}x{k}x{n} {layout}"));
            }
        }
    }

    #[test]
    fn general_strides_match_the_oracle() {
        // Every other row and every third column of a larger buffer.
        let data = values(40 * 60, 9);
        let a = MatRef::strided(&data, 19, 20, 120, 3).unwrap();
        let b = MatRef::strided(&data, 20, 37, 2, 60).unwrap();
        check(a, b, "strided");
    }

    #[test]
    fn overwrites_instead_of_accumulating() {
        let a = values(20 * 300, 1);
        let b = values(300 * 40, 2);
        let (a, b) = (
            MatRef::row_major(&a, 20, 300).unwrap(),
            MatRef::row_major(&b, 300, 40).unwrap(),
        );
        for kernel in kernels() {
            let mut once = vec![0f32; 800];
            gemm_with(kernel, a, b, &mut once).unwrap();
            let mut twice = once.clone();
            gemm_with(kernel, a, b, &mut twice).unwrap();
            assert_eq!(once, twice, "{kernel:?}");
        }
    }

    #[test]
    fn empty_and_degenerate_shapes() {
        let a = MatRef::row_major(&[], 3, 0).unwrap();
        let b = MatRef::row_major(&[], 0, 2).unwrap();
        let mut c = vec![f32::NAN; 6];
        gemm(a, b, &mut c).unwrap();
        assert_eq!(c, vec![0.0; 6], "k = 0 gives zeros");
        let a = MatRef::row_major(&[], 0, 4).unwrap();
        let b = MatRef::row_major(&[1.0; 8], 4, 2).unwrap();
        gemm(a, b, &mut []).unwrap();
    }

    #[test]
    fn bad_shapes_are_errors_naming_them() {
        let e = MatRef::row_major(&[1.0; 5], 2, 3).unwrap_err();
        assert!(e.to_string().contains("[2, 3]"), "{e}");
        let a = MatRef::row_major(&[1.0; 6], 2, 3).unwrap();
        let b = MatRef::row_major(&[1.0; 8], 4, 2).unwrap();
        let e = gemm(a, b, &mut [0.0; 4]).unwrap_err();
        assert_eq!(
            e,
            GemmError::Shape {
                m: 2,
                k: 3,
                b_rows: 4,
                n: 2,
                c_len: 4
            }
        );
        let b = MatRef::row_major(&[1.0; 6], 3, 2).unwrap();
        assert!(gemm(a, b, &mut [0.0; 3]).is_err());
    }

    #[test]
    fn nan_propagates() {
        let mut a = values(24 * 10, 4);
        a[5] = f32::NAN;
        let b = values(10 * 40, 5);
        let (a, b) = (
            MatRef::row_major(&a, 24, 10).unwrap(),
            MatRef::row_major(&b, 10, 40).unwrap(),
        );
        for kernel in kernels() {
            let mut c = vec![0f32; 24 * 40];
            gemm_with(kernel, a, b, &mut c).unwrap();
            // a[5] is row 0: all of C's row 0 is NaN, nothing else is.
            assert!(c[..40].iter().all(|v| v.is_nan()), "{kernel:?}");
            assert!(c[40..].iter().all(|v| v.is_finite()), "{kernel:?}");
        }
    }
}
