//! One fixed host GEMM for the CPU backends' distance computations and inference matmuls.
//!
//! The kNN search and the miners need `A·Bᵀ` of two row-major `f32` matrices that are already
//! on the host. Through Burn they would run burn-flex's GEMM, whose speed on a 2-core machine
//! depends on how the final binary happens to lay out its microkernel (`docs/metrics.md`: the
//! same call took 0.7 s in one binary and 1.6 s in another). These functions call `oml-gemm`
//! (AVX-512 and AVX2 microkernels of its own where the CPU has them, matrixmultiply's kernels
//! elsewhere), parallel on rayon's pool, so every binary runs the same code at the same speed.
//!
//! ```
//! use oml_interfaces::linalg::matmul_nt;
//! // a = [[1, 2], [3, 4], [5, 6]] (3×2), b = [[1, 0], [0, 1]] (2×2): a·bᵀ = a.
//! let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let b = [1.0f32, 0.0, 0.0, 1.0];
//! let mut out = [0.0f32; 6];
//! matmul_nt(&a, &b, 2, &mut out).unwrap();
//! assert_eq!(out, a);
//! ```

use burn::prelude::*;
use burn::tensor::DataError;
use oml_gemm::MatRef;

/// A float tensor's values on the host as row-major `f32`: one copy when the tensor already
/// holds `f32` (always on the CPU backends), a conversion otherwise. The read side of the host
/// paths that use this module.
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
/// lengths. Rows of `A` are split over rayon's pool.
pub fn matmul_nt(a: &[f32], b: &[f32], k: usize, out: &mut [f32]) -> Result<(), ShapeError> {
    gemm(a, false, b, true, k, out)
}

/// `out = A·B` for row-major `A [m, k]`, `B [k, n]`, `out [m, n]` (a linear layer's `x·W`);
/// `m` and `n` follow from the lengths. Rows of `A` are split over rayon's pool.
pub fn matmul(a: &[f32], b: &[f32], k: usize, out: &mut [f32]) -> Result<(), ShapeError> {
    gemm(a, false, b, false, k, out)
}

/// `out = A·B` with `A` given transposed, `at = Aᵀ [k, m]` row-major, `B [k, n]`, `out [m, n]`.
///
/// For an `A` already stored transposed; the GEMM packs it without a copy.
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
    let view = |data, rows, cols, transposed| {
        if transposed {
            MatRef::row_major(data, cols, rows).map(MatRef::t)
        } else {
            MatRef::row_major(data, rows, cols)
        }
    };
    let a = view(a, m, k, a_transposed).map_err(|_| err())?;
    let b = view(b, k, n, b_transposed).map_err(|_| err())?;
    oml_gemm::gemm(a, b, out).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn host_f32_reads_row_major_values() {
        let device = crate::device::test_device();
        let v = values(12, 3);
        let t = Tensor::<2>::from_data(burn::tensor::TensorData::new(v.clone(), [3, 4]), &device);
        assert_eq!(host_f32(t.clone()).unwrap(), v);
        // a transposed view reads in its own (logical) row-major order
        let want = transpose(&v, 3);
        assert_eq!(host_f32(t.transpose()).unwrap(), want);
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
}
