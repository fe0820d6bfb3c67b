//! Euclidean distances with `torch.cdist(p=2)` semantics, plus host reads.

use burn::prelude::*;
use oml_interfaces::cpu;
use rayon::prelude::*;

/// Row counts above which `torch.cdist` switches to the matmul form (`use_mm_for_euclid_dist_if_necessary`).
pub const CDIST_MM_THRESHOLD: usize = 25;

/// Floor applied to squared distances before `sqrt`: keeps the gradient finite (and zero) at
/// coincident points, as `torch.cdist` (which clamps at 1e-30 too) does.
const SQ_EPS: f64 = 1e-30;

/// Pairwise Euclidean distances `[N, M]` between the rows of `x` `[N, D]` and `y` `[M, D]`.
///
/// Like `torch.cdist(p=2)`: exact differences when both sides have at most 25 rows, the
/// `‖x‖² + ‖y‖² − 2xyᵀ` matmul form otherwise. Differentiable.
pub fn cdist(x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
    let [n, _] = x.dims();
    let [m, _] = y.dims();
    let sq = if n <= CDIST_MM_THRESHOLD && m <= CDIST_MM_THRESHOLD {
        let diff = x.unsqueeze_dim::<3>(1) - y.unsqueeze_dim::<3>(0);
        diff.square().sum_dim(2).squeeze_dim::<2>(2)
    } else {
        let xx = x.clone().square().sum_dim(1);
        let yy = y.clone().square().sum_dim(1).transpose();
        xx + yy - x.matmul(y.transpose()).mul_scalar(2.0)
    };
    safe_sqrt(sq)
}

/// [`safe_sqrt`] of one host value: 0 below the floor.
pub(crate) fn host_safe_sqrt(sq: f32) -> f32 {
    if (sq as f64) < SQ_EPS { 0.0 } else { sq.sqrt() }
}

/// `sqrt` with exact zeros (and zero gradients) below the floor.
fn safe_sqrt<const D: usize>(sq: Tensor<D>) -> Tensor<D> {
    let tiny = sq.clone().lower_elem(SQ_EPS);
    sq.clamp_min(SQ_EPS).sqrt().mask_fill(tiny, 0.0)
}

/// Distances of a batch to itself `[B, B]`, with an exact zero (and zero gradient) on the
/// diagonal even in the matmul form.
pub fn self_cdist(x: Tensor<2>) -> Tensor<2> {
    let [b, _] = x.dims();
    let device = x.device();
    let d = cdist(x.clone(), x);
    if b > CDIST_MM_THRESHOLD {
        let eye = Tensor::<2, Int>::eye(b, &device).bool();
        d.mask_fill(eye, 0.0)
    } else {
        d
    }
}

/// Element budget (`B·B·D`) under which [`loss_self_cdist`] uses exact differences.
pub const EXACT_DIFF_BUDGET: usize = 1 << 22;

/// Distances of a batch to itself for the losses: exact differences while `B·B·D` stays under
/// [`EXACT_DIFF_BUDGET`] (OML's losses use exact row-wise distances, so this keeps even
/// near-zero triplet margins on the same side), the matmul form beyond.
pub fn loss_self_cdist(x: Tensor<2>) -> Tensor<2> {
    let [b, d] = x.dims();
    if b * b * d <= EXACT_DIFF_BUDGET {
        let diff = x.clone().unsqueeze_dim::<3>(1) - x.unsqueeze_dim::<3>(0);
        safe_sqrt(diff.square().sum_dim(2).squeeze_dim::<2>(2))
    } else {
        self_cdist(x)
    }
}

/// Row-wise distances `‖a_i − b_i‖₂` `[N]` (OML's `elementwise_dist`).
pub fn rowwise_distances(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    safe_sqrt((a - b).square().sum_dim(1).squeeze_dim::<1>(1))
}

/// Reads a float tensor to the host as `f32`, row-major ([`cpu::host_f32`]). A tensor the
/// backend cannot read back reads as NaNs, which show as a NaN loss rather than a panic mid-step.
pub(crate) fn host_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    let len = t.shape().num_elements();
    cpu::host_f32(t).unwrap_or_else(|_| vec![f32::NAN; len])
}

/// Pairwise distances of `x` computed without autodiff and read to the host, row-major `[B, B]`.
///
/// With the CPU fast path ([`oml_interfaces::cpu`]) the features are read first and the Gram
/// matrix comes from the host GEMM ([`oml_interfaces::cpu::matmul_nt`]): a hard-mining step
/// took 1.4 ms against 1.9–2.7 ms through Burn's ops (`docs/mining.md`). Same
/// `torch.cdist` forms either way.
pub(crate) fn host_self_distances(x: &Tensor<2>) -> Vec<f32> {
    let x = x.clone().without_autodiff();
    if !cpu::applies(&x.device()) {
        return host_f32(self_cdist(x));
    }
    let [b, d] = x.dims();
    host_self_cdist(&host_f32(x), b, d)
}

/// [`self_cdist`] of `b` row-major rows of dimension `d` on the host.
pub(crate) fn host_self_cdist(x: &[f32], b: usize, d: usize) -> Vec<f32> {
    let safe_sqrt = host_safe_sqrt;
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let mut out = vec![0.0f32; b * b];
    if b <= CDIST_MM_THRESHOLD {
        for i in 0..b {
            for j in 0..b {
                let sq: f32 = row(i)
                    .iter()
                    .zip(row(j))
                    .map(|(p, q)| (p - q) * (p - q))
                    .sum();
                out[i * b + j] = safe_sqrt(sq);
            }
        }
        return out;
    }
    let norms: Vec<f32> = (0..b).map(|i| cpu::squared_norm(row(i))).collect();
    if cpu::matmul_nt(x, x, d, &mut out).is_err() {
        // Unreachable: `x` is the `[b, d]` tensor's own data and `out` is `b × b`.
        return vec![f32::NAN; b * b];
    }
    out.par_chunks_mut(b).enumerate().for_each(|(i, r)| {
        for (j, v) in r.iter_mut().enumerate() {
            *v = if i == j {
                0.0
            } else {
                safe_sqrt(norms[i] + norms[j] - 2.0 * *v)
            };
        }
    });
    out
}

/// An `Int` index tensor on `device`.
pub(crate) fn index_tensor(ids: &[usize], device: &Device) -> Tensor<1, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(data, [ids.len()]), device)
}

/// A scalar log value as a `[1]` tensor without autodiff.
pub(crate) fn scalar_log(value: f64, device: &Device) -> Tensor<1> {
    Tensor::<1>::from_data(TensorData::new(vec![value as f32], [1]), device).without_autodiff()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oml_interfaces::device::test_device;

    fn brute(x: &[f32], n: usize, d: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let s: f64 = (0..d)
                    .map(|k| ((x[i * d + k] - x[j * d + k]) as f64).powi(2))
                    .sum();
                out[i * n + j] = s.sqrt() as f32;
            }
        }
        out
    }

    #[test]
    fn both_forms_match_a_brute_force_oracle() {
        let device = test_device();
        for n in [5usize, 40] {
            let d = 7;
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 37 % 101) as f32 / 17.0).sin())
                .collect();
            let t = Tensor::<2>::from_data(TensorData::new(x.clone(), [n, d]), &device);
            let got = host_f32(self_cdist(t));
            let want = brute(&x, n, d);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "n={n}: {g} vs {w}");
            }
            for i in 0..n {
                assert_eq!(got[i * n + i], 0.0);
            }
        }
    }

    #[test]
    fn host_distances_match_the_oracle_and_the_tensor_form() {
        let device = test_device();
        for n in [1usize, 5, 25, 26, 64] {
            let d = 9;
            let x: Vec<f32> = (0..n * d)
                .map(|i| ((i * 53 % 97) as f32 / 13.0).cos())
                .collect();
            let t = Tensor::<2>::from_data(TensorData::new(x.clone(), [n, d]), &device);
            let host = host_self_cdist(&x, n, d);
            let via_tensor = host_f32(self_cdist(t.clone()));
            let want = brute(&x, n, d);
            for ((h, v), w) in host.iter().zip(&via_tensor).zip(&want) {
                assert!((h - w).abs() < 1e-4, "n={n}: host {h} vs oracle {w}");
                assert!((h - v).abs() < 1e-4, "n={n}: host {h} vs tensor {v}");
            }
            assert_eq!(
                host_self_distances(&t),
                if cpu::applies(&device) {
                    host
                } else {
                    via_tensor
                }
            );
            for i in 0..n {
                assert_eq!(host_self_cdist(&x, n, d)[i * n + i], 0.0);
            }
        }
    }

    #[test]
    fn gradient_is_zero_not_nan_at_coincident_points() {
        let device = test_device().autodiff();
        for n in [3usize, 30] {
            let x = Tensor::<2>::ones([n, 4], &device).require_grad();
            let loss = self_cdist(x.clone()).sum();
            let g = x.grad(&loss.backward()).unwrap();
            assert!(host_f32(g).iter().all(|v| *v == 0.0), "n={n}");
        }
    }
}
