//! The one unsafe part of the crate: the 12×32 microkernels, for AVX-512F and for AVX2 + FMA.
//!
//! Safe code reaches them only through [`Simd`], a token that exists only once the CPU has been
//! seen to support the instructions, and through [`Simd::tile_rows`], which checks every slice
//! bound the kernels' pointer arithmetic relies on.
#![allow(unsafe_code)]

/// Rows of `C` one kernel call computes. With AVX-512, 12 rows × 2 vectors = 24 of the 32
/// vector registers hold accumulators, two hold the `B` row and one the broadcast `A` value;
/// with AVX2 (16 registers) the tile is computed as four 6×16 quarters of 12 accumulators.
pub const MR: usize = 12;
/// Columns of `C` one kernel call computes: two 16-lane AVX-512 vectors.
pub const NR: usize = 32;
/// Row stride of `A` for [`Simd::tile_rows`]: past the deepest block (256) so that the
/// twelve rows a call reads do not all fall into the same few L1 sets.
pub const LDA: usize = 256 + 16;

/// Proof that the running CPU has the instructions of one of the microkernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simd(Isa);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
}

impl Simd {
    /// The token, where the CPU supports AVX-512F.
    pub fn avx512() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(Self(Isa::Avx512));
        }
        None
    }

    /// The token, where the CPU supports AVX2 and FMA.
    pub fn avx2() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(Self(Isa::Avx2));
        }
        None
    }

    /// `C[i, j] (+)= Σ_p A[i, p] · B[p, j]` for `i < mr`, `j < nr`, from `a` (`MR` rows of
    /// `kc` values, [`LDA`] apart: `A[i, p]` at `a[i·LDA + p]`, rows gathered as they are,
    /// without a transposing pack) and the packed panel `b` (`kc` steps of `NR` values); `c`
    /// starts at the tile's first element, rows `ldc` apart. Adds to `c` when `accumulate`,
    /// else overwrites. All `MR` rows of `a` are read; only the first `mr` are stored.
    ///
    /// Not generic: it is compiled here, with this crate's profile, even when a caller's
    /// generic code (instantiated in the caller's crate, perhaps with debug assertions and
    /// their pointer checks) calls it.
    #[allow(clippy::too_many_arguments)]
    pub fn tile_rows(
        self,
        kc: usize,
        a: &[f32],
        b: &[f32],
        c: &mut [f32],
        ldc: usize,
        mr: usize,
        nr: usize,
        accumulate: bool,
    ) {
        assert!(
            kc <= LDA
                && (1..=MR).contains(&mr)
                && (1..=NR).contains(&nr)
                && a.len() >= (MR - 1) * LDA + kc
                && b.len() >= kc * NR
                && c.len() >= (mr - 1) * ldc + nr,
            "oml-gemm kernel: tile bounds"
        );
        let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token exists only where its instructions were detected, and the
        // assertion above covers every load (`a`, `b`) and every load and store on `c` that
        // the kernels make (masked or per value past `mr` rows and `nr` columns).
        unsafe {
            match self.0 {
                Isa::Avx512 => avx512::tile(kc, a, b, c, ldc, mr, nr, accumulate),
                Isa::Avx2 => avx2::tile(kc, a, b, c, ldc, mr, nr, accumulate),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{LDA, MR, NR};
    use std::arch::x86_64::*;

    /// The lanes `0..len` of a 16-lane vector (`len ≤ 16`).
    fn lanes(len: usize) -> __mmask16 {
        if len >= 16 {
            0xFFFF
        } else {
            ((1u32 << len) - 1) as __mmask16
        }
    }

    /// See [`super::Simd::tile_rows`]; the caller guarantees AVX-512F and the bounds.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        accumulate: bool,
    ) {
        let mut acc = [_mm512_setzero_ps(); 2 * MR];
        for p in 0..kc {
            // SAFETY: `p < kc ≤ LDA`; the caller checked that `A[i, p]` at `i·LDA + p` for
            // `i < MR`, and `kc` steps of `NR` values of `b`, are in bounds.
            let (a, b) = unsafe { (a.add(p), b.add(p * NR)) };
            let (b0, b1) = unsafe { (_mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16))) };
            for i in 0..MR {
                let ai = _mm512_set1_ps(unsafe { *a.add(i * LDA) });
                acc[2 * i] = _mm512_fmadd_ps(ai, b0, acc[2 * i]);
                acc[2 * i + 1] = _mm512_fmadd_ps(ai, b1, acc[2 * i + 1]);
            }
        }
        let (m0, m1) = (lanes(nr.min(16)), lanes(nr.saturating_sub(16)));
        for i in 0..MR {
            if i >= mr {
                break;
            }
            // SAFETY: row `i < mr` starts at `i·ldc`; the masks keep every access below `nr`.
            unsafe {
                let row = c.add(i * ldc);
                let mut v0 = acc[2 * i];
                if accumulate {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                }
                _mm512_mask_storeu_ps(row, m0, v0);
                if nr > 16 {
                    let mut v1 = acc[2 * i + 1];
                    if accumulate {
                        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.add(16)));
                    }
                    _mm512_mask_storeu_ps(row.add(16), m1, v1);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{LDA, MR, NR};
    use std::arch::x86_64::*;

    /// See [`super::Simd::tile_rows`]; the caller guarantees AVX2 + FMA and the bounds. The
    /// 12×32 tile is four 6×16 quarters (12 accumulators each, of 16 registers); quarters past
    /// `mr` rows or `nr` columns are skipped.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        accumulate: bool,
    ) {
        const ROWS: usize = MR / 2;
        for h in 0..2 {
            let rows = mr.saturating_sub(ROWS * h).min(ROWS);
            for g in 0..2 {
                let cols = nr.saturating_sub(16 * g).min(16);
                if rows == 0 || cols == 0 {
                    continue;
                }
                // SAFETY: quarter (h, g) starts inside the checked `a`, `b` and `c`.
                let (a, b, c) = unsafe {
                    (
                        a.add(ROWS * h * LDA),
                        b.add(16 * g),
                        c.add(ROWS * h * ldc + 16 * g),
                    )
                };
                let mut acc = [_mm256_setzero_ps(); 2 * ROWS];
                for p in 0..kc {
                    // SAFETY: `p < kc ≤ LDA`: `A[i, p]` for the quarter's rows `i < MR` and
                    // 16 of the `NR` values of step `p` of `b` are in bounds.
                    let (b0, b1) = unsafe {
                        (
                            _mm256_loadu_ps(b.add(p * NR)),
                            _mm256_loadu_ps(b.add(p * NR + 8)),
                        )
                    };
                    for i in 0..ROWS {
                        let ai = _mm256_set1_ps(unsafe { *a.add(i * LDA + p) });
                        acc[2 * i] = _mm256_fmadd_ps(ai, b0, acc[2 * i]);
                        acc[2 * i + 1] = _mm256_fmadd_ps(ai, b1, acc[2 * i + 1]);
                    }
                }
                for (i, pair) in acc.chunks_exact(2).take(rows).enumerate() {
                    // SAFETY: row `i < rows ≤ mr` of the quarter, columns below `cols ≤ nr`.
                    unsafe {
                        let row = c.add(i * ldc);
                        if cols == 16 {
                            let (mut v0, mut v1) = (pair[0], pair[1]);
                            if accumulate {
                                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
                                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row.add(8)));
                            }
                            _mm256_storeu_ps(row, v0);
                            _mm256_storeu_ps(row.add(8), v1);
                        } else {
                            let mut tmp = [0f32; 16];
                            _mm256_storeu_ps(tmp.as_mut_ptr(), pair[0]);
                            _mm256_storeu_ps(tmp.as_mut_ptr().add(8), pair[1]);
                            for (j, &v) in tmp.iter().take(cols).enumerate() {
                                let d = row.add(j);
                                *d = if accumulate { *d + v } else { v };
                            }
                        }
                    }
                }
            }
        }
    }
}
