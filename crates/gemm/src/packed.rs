//! Products with a `B` packed once and an `A` whose rows are produced on demand: a layer's
//! weights multiplied by the rows of an implicit im2col matrix, which is never written out.

use super::kernel::{LDA, MR, NR, Simd};
use super::{GemmError, KC, Kernel, MC, MatRef, check_shapes, pack_panel};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// The rows of a matrix `A [m, k]`, produced on demand.
///
/// [`gemm_rows`] asks for each row in pieces (one `KC`-deep block at a time) and never keeps
/// the whole matrix: a convolution's im2col rows are gathered from its input as they are
/// needed.
pub trait RowSource: Sync {
    /// `[m, k]`.
    fn shape(&self) -> [usize; 2];
    /// Writes `A[i, p0 .. p0 + out.len()]` into `out`.
    fn row(&self, i: usize, p0: usize, out: &mut [f32]);
}

impl RowSource for MatRef<'_> {
    fn shape(&self) -> [usize; 2] {
        MatRef::shape(self)
    }

    fn row(&self, i: usize, p0: usize, out: &mut [f32]) {
        let start = i * self.rs + p0 * self.cs;
        if self.cs == 1 {
            out.copy_from_slice(&self.data[start..][..out.len()]);
        } else {
            for (p, v) in out.iter_mut().enumerate() {
                *v = self.data[start + p * self.cs];
            }
        }
    }
}

/// `B [k, n]` packed once for products with many `A`s (a layer's weights).
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    layout: Layout,
}

#[derive(Debug, Clone)]
enum Layout {
    /// Our microkernels' panels: per `KC`-deep block, `⌈n / NR⌉` panels of `kc` steps of
    /// `NR` values, zero-padded past column `n`; with the token of the kernel that runs them.
    Panels(Vec<f32>, Simd),
    /// Row-major `[k, n]`, for matrixmultiply.
    Plain(Vec<f32>),
}

impl PackedB {
    /// Packs `b` for [`Kernel::best`].
    pub fn new(b: MatRef<'_>) -> Self {
        Self::with(Kernel::best(), b)
    }

    /// Packs `b` for `kernel` ([`Kernel::Avx512`] and [`Kernel::Avx2`] fall back to
    /// [`Kernel::Portable`] on a CPU without their instructions).
    pub fn with(kernel: Kernel, b: MatRef<'_>) -> Self {
        let [k, n] = b.shape();
        let layout = match kernel.simd() {
            Some(simd) => {
                let panels = n.div_ceil(NR);
                let mut data = vec![0f32; k * panels * NR];
                // Block `pc` starts at `pc · panels · NR` (every block before it is `KC` deep).
                data.par_chunks_mut((KC * panels * NR).max(1))
                    .enumerate()
                    .for_each(|(blk, block)| {
                        let kc = block.len() / (panels * NR);
                        block
                            .par_chunks_mut(kc * NR)
                            .enumerate()
                            .for_each(|(q, panel)| {
                                pack_panel(b, blk * KC, q * NR, NR.min(n - q * NR), panel)
                            });
                    });
                Layout::Panels(data, simd)
            }
            None => {
                let mut data = vec![0f32; k * n];
                for (i, row) in data.chunks_exact_mut(n.max(1)).enumerate().take(k) {
                    b.row(i, 0, row);
                }
                Layout::Plain(data)
            }
        };
        Self { k, n, layout }
    }

    /// `[k, n]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.k, self.n]
    }
}

/// Largest packed `B` block (values) that [`gemm_rows`] multiplies row panel by row panel, each
/// gathered just before its use: half of a 1 MiB L2.
const FUSED_B: usize = 64 << 10;

const _: () = assert!(KC <= LDA, "a gathered row block holds KC-deep rows");

/// `C = A·B` into a row-major `C [m, n]` (overwritten), then `epilogue(i0, rows)` on each
/// finished block of `C`'s rows (`rows` is `C[i0 .., ..]`, a whole number of rows) while it is
/// still in cache: a bias, a residual, an activation.
///
/// Tasks over blocks of `A`'s rows run on rayon's pool; each asks `a` for its rows one
/// `KC`-deep piece at a time and runs the microkernel on them as they are, or (elsewhere)
/// gathers its rows whole for matrixmultiply.
pub fn gemm_rows<A, E>(a: &A, b: &PackedB, c: &mut [f32], epilogue: E) -> Result<(), GemmError>
where
    A: RowSource + ?Sized,
    E: Fn(usize, &mut [f32]) + Sync,
{
    let ([m, k], [_, n]) = (a.shape(), check_shapes(a.shape(), b.shape(), c.len())?);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let threads = rayon::current_num_threads().max(1);
    // Whole rounds of equal blocks, none larger than MC: no thread is left with a short one.
    let blocks = m.div_ceil(MC).next_multiple_of(threads);
    let mc = m.div_ceil(blocks).next_multiple_of(MR);
    match &b.layout {
        Layout::Panels(packed, token) => {
            let token = *token;
            let panels = n.div_ceil(NR);
            c.par_chunks_mut(mc * n).enumerate().for_each_init(
                || vec![0f32; mc * LDA],
                |a_rows, (blk, c_rows)| {
                    let (i0, rows) = (blk * mc, c_rows.len() / n);
                    if k == 0 {
                        c_rows.fill(0.0);
                    }
                    for pc in (0..k).step_by(KC) {
                        let kc = KC.min(k - pc);
                        let block = &packed[pc * panels * NR..][..kc * panels * NR];
                        // One kernel call: row panel `i` (its first row) against `B` panel `q`.
                        let tile = |a_panel: &[f32], i: usize, q: usize, c_rows: &mut [f32]| {
                            token.tile_rows(
                                kc,
                                a_panel,
                                &block[q * kc * NR..][..kc * NR],
                                &mut c_rows[i * n + q * NR..],
                                n,
                                MR.min(rows - i),
                                NR.min(n - q * NR),
                                pc > 0,
                            );
                        };
                        if block.len() <= FUSED_B {
                            // `B`'s block stays in L2: gather `MR` rows and use them at once,
                            // while they are in L1.
                            let a_panel = &mut a_rows[..MR * LDA];
                            for i in (0..rows).step_by(MR) {
                                for (r, row) in
                                    a_panel.chunks_exact_mut(LDA).take(rows - i).enumerate()
                                {
                                    a.row(i0 + i + r, pc, &mut row[..kc]);
                                }
                                for q in 0..panels {
                                    tile(a_panel, i, q, c_rows);
                                }
                            }
                            continue;
                        }
                        for (i, row) in a_rows.chunks_exact_mut(LDA).take(rows).enumerate() {
                            a.row(i0 + i, pc, &mut row[..kc]);
                        }
                        // Each `B` panel in L1 across the gathered rows. Rows past `rows` in
                        // the last panel hold stale values; the kernel computes them but stores
                        // only the first `mr`.
                        for q in 0..panels {
                            for (r, a_panel) in a_rows.chunks(MR * LDA).enumerate() {
                                if r * MR >= rows {
                                    break;
                                }
                                tile(a_panel, r * MR, q, c_rows);
                            }
                        }
                    }
                    epilogue(i0, c_rows);
                },
            );
        }
        Layout::Plain(plain) => {
            let Ok(b) = ArrayView2::from_shape((k, n), plain.as_slice()) else {
                unreachable!("PackedB holds k·n values")
            };
            c.par_chunks_mut(mc * n).enumerate().for_each_init(
                || vec![0f32; mc * k],
                |a_rows, (blk, c_rows)| {
                    let (i0, rows) = (blk * mc, c_rows.len() / n);
                    let a_rows = &mut a_rows[..rows * k];
                    for (i, row) in a_rows.chunks_exact_mut(k.max(1)).enumerate().take(rows) {
                        a.row(i0 + i, 0, row);
                    }
                    let (Ok(a), Ok(mut c)) = (
                        ArrayView2::from_shape((rows, k), &*a_rows),
                        ArrayViewMut2::from_shape((rows, n), &mut *c_rows),
                    ) else {
                        unreachable!("the block's lengths follow from rows, k and n")
                    };
                    general_mat_mul(1.0, &a, &b, 0.0, &mut c);
                    epilogue(i0, c_rows);
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{EDGES, assert_close, kernels, naive, values};
    use super::*;

    /// `A`'s rows from a closure over the index: a stand-in for a convolution's gather.
    struct Doubled<'a>(MatRef<'a>);

    impl RowSource for Doubled<'_> {
        fn shape(&self) -> [usize; 2] {
            self.0.shape()
        }
        fn row(&self, i: usize, p0: usize, out: &mut [f32]) {
            self.0.row(i, p0, out);
            out.iter_mut().for_each(|v| *v *= 2.0);
        }
    }

    #[test]
    fn packed_products_match_the_oracle_with_the_epilogue_on_every_row() {
        for (m, k, n) in EDGES {
            let (a, b) = (values(m * k, m as u64 + 3), values(k * n, n as u64 + 5));
            let (a, b) = (
                MatRef::row_major(&a, m, k).unwrap(),
                MatRef::row_major(&b, k, n).unwrap(),
            );
            // The epilogue adds the row index: each row must be finished exactly once.
            let want: Vec<f32> = naive(a, b)
                .iter()
                .enumerate()
                .map(|(idx, w)| 2.0 * w + (idx / n) as f32)
                .collect();
            for kernel in kernels() {
                let packed = PackedB::with(kernel, b);
                let mut c = vec![f32::NAN; m * n];
                gemm_rows(&Doubled(a), &packed, &mut c, |i0, rows| {
                    for (i, row) in rows.chunks_exact_mut(n).enumerate() {
                        row.iter_mut().for_each(|v| *v += (i0 + i) as f32);
                    }
                })
                .unwrap();
                assert_close(&c, &want, &format!("{kernel:?} {m}x{k}x{n}"));
            }
        }
    }

    #[test]
    fn transposed_b_packs_the_same_product() {
        let (m, k, n) = (30, 70, 45);
        let (a, bt) = (values(m * k, 1), values(n * k, 2));
        let a = MatRef::row_major(&a, m, k).unwrap();
        let b = MatRef::row_major(&bt, n, k).unwrap().t();
        let want = naive(a, b);
        for kernel in kernels() {
            let mut c = vec![0f32; m * n];
            gemm_rows(&a, &PackedB::with(kernel, b), &mut c, |_, _| {}).unwrap();
            assert_close(&c, &want, &format!("{kernel:?}"));
        }
    }

    #[test]
    fn empty_depth_gives_zeros_and_bad_shapes_are_errors() {
        for kernel in kernels() {
            let b = PackedB::with(kernel, MatRef::row_major(&[], 0, 3).unwrap());
            let a = MatRef::row_major(&[], 4, 0).unwrap();
            let mut c = vec![f32::NAN; 12];
            gemm_rows(&a, &b, &mut c, |_, _| {}).unwrap();
            assert_eq!(c, vec![0.0; 12], "{kernel:?}");
            let a = MatRef::row_major(&[1.0; 8], 4, 2).unwrap();
            let e = gemm_rows(&a, &b, &mut c, |_, _| {}).unwrap_err();
            assert!(
                matches!(
                    e,
                    GemmError::Shape {
                        k: 2,
                        b_rows: 0,
                        ..
                    }
                ),
                "{e}"
            );
        }
    }
}
