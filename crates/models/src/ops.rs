//! Functional pieces shared by the extractors: OML's `normalise`, GeM pooling, and PyTorch's
//! bicubic / bilinear `interpolate` written as two small matrix products.
//!
//! Interpolation is separable, so resizing `[H, W] -> [oh, ow]` is `Mh · X · Mwᵀ` with
//! interpolation matrices computed on the host from the sizes alone. That keeps PyTorch's exact
//! coordinate rule (including a caller-given `scale_factor`, which DINO relies on), runs on any
//! backend, and is differentiable (Burn's `interpolate` has no autodiff backward).

use burn::prelude::*;

/// OML's `normalise(x)`: `x / ||x||₂` per row, with the norm detached (no epsilon, as in OML).
///
/// # Shapes
/// `[B, D] -> [B, D]`.
pub fn normalise(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().detach();
    x / norm
}

/// OML's `GEM(p)` pooling: `mean_hw(clip(x, 1e-6)^p)^(1/p)`.
///
/// # Shapes
/// `[B, C, H, W] -> [B, C]`.
pub fn gem(x: Tensor<4>, p: f64) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.clamp_min(1e-6)
        .powf_scalar(p)
        .reshape([b, c, h * w])
        .mean_dim(2)
        .powf_scalar(1.0 / p)
        .reshape([b, c])
}

/// Global average pooling (torchvision's `AdaptiveAvgPool2d(1)` followed by `flatten(1)`).
///
/// # Shapes
/// `[B, C, H, W] -> [B, C]`.
pub fn avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

/// Cubic convolution weights with PyTorch's `A = -0.75` for the fractional offset `t`.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let cc1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cc2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2(2.0 - t)]
}

/// The `[out, in]` matrix of PyTorch's `upsample_bicubic2d` along one axis with
/// `align_corners=False`. `scale` is the source step per output pixel: `1 / scale_factor` when the
/// caller passed a scale factor, else `in / out`.
pub fn bicubic_matrix(input: usize, output: usize, scale: f64) -> Vec<f32> {
    let mut m = vec![0f64; output * input];
    let last = input as i64 - 1;
    for o in 0..output {
        let real = scale * (o as f64 + 0.5) - 0.5;
        let base = real.floor();
        let w = cubic_weights(real - base);
        for (k, wk) in w.iter().enumerate() {
            let idx = (base as i64 - 1 + k as i64).clamp(0, last) as usize;
            m[o * input + idx] += wk;
        }
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// The `[out, in]` matrix of PyTorch's `upsample_bilinear2d` along one axis with
/// `align_corners=False` and no antialiasing; `scale` as in [`bicubic_matrix`].
pub fn bilinear_matrix(input: usize, output: usize, scale: f64) -> Vec<f32> {
    let mut m = vec![0f64; output * input];
    for o in 0..output {
        let real = (scale * (o as f64 + 0.5) - 0.5).max(0.0);
        let i0 = (real.floor() as usize).min(input - 1);
        let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
        let l1 = real - i0 as f64;
        m[o * input + i0] += 1.0 - l1;
        m[o * input + i1] += l1;
    }
    m.into_iter().map(|v| v as f32).collect()
}

/// Applies `Mh · X · Mwᵀ` to every `[H, W]` plane of `x`.
///
/// # Shapes
/// `x` `[B, C, H, W]`, `mh` `[oh, H]`, `mw` `[ow, W]` → `[B, C, oh, ow]`.
pub fn resize_separable(x: Tensor<4>, mh: Tensor<2>, mw: Tensor<2>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let [oh, _] = mh.dims();
    let [ow, _] = mw.dims();
    let x = x.reshape([b * c * h, w]).matmul(mw.transpose()); // [bch, ow]
    let x = x
        .reshape([b * c, h, ow])
        .swap_dims(1, 2)
        .reshape([b * c * ow, h]);
    let x = x.matmul(mh.transpose()); // [bc·ow, oh]
    x.reshape([b * c, ow, oh])
        .swap_dims(1, 2)
        .reshape([b, c, oh, ow])
}

/// Which 1-D kernel [`interpolate_scale`] and [`interpolate_to`] use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// PyTorch `mode="bicubic"`, `align_corners=False`.
    Bicubic,
    /// PyTorch `mode="bilinear"`, `align_corners=False`, `antialias=False`.
    Bilinear,
}

/// PyTorch's `F.interpolate(x, scale_factor=(sh, sw), mode=..., align_corners=False)`: the output
/// size is `floor(in * s)` and source coordinates use `1 / s` (not `in / out`), as PyTorch does
/// when a scale factor is given.
///
/// # Shapes
/// `[B, C, H, W] -> [B, C, floor(H·sh), floor(W·sw)]`.
pub fn interpolate_scale(x: Tensor<4>, scale_h: f64, scale_w: f64, kernel: Kernel) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let oh = (h as f64 * scale_h).floor() as usize;
    let ow = (w as f64 * scale_w).floor() as usize;
    interpolate_to(x, [oh, ow], [1.0 / scale_h, 1.0 / scale_w], kernel)
}

/// Resizes to `[oh, ow]` with explicit source steps per output pixel (`steps`).
pub fn interpolate_to(x: Tensor<4>, out: [usize; 2], steps: [f64; 2], kernel: Kernel) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let device = x.device();
    let build = |input: usize, output: usize, step: f64| -> Tensor<2> {
        let data = match kernel {
            Kernel::Bicubic => bicubic_matrix(input, output, step),
            Kernel::Bilinear => bilinear_matrix(input, output, step),
        };
        Tensor::from_data(TensorData::new(data, [output, input]), &device)
    };
    let mh = build(h, out[0], steps[0]);
    let mw = build(w, out[1], steps[1]);
    resize_separable(x, mh, mw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oml_interfaces::device::test_device;

    fn host(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn interpolation_rows_are_partitions_of_unity() {
        // Each output pixel is a weighted average: the weights of a row sum to 1.
        for (i, o, s) in [
            (14usize, 10usize, 14.0 / 10.1),
            (14, 9, 14.0 / 9.1),
            (5, 12, 5.0 / 12.0),
        ] {
            for m in [bicubic_matrix(i, o, s), bilinear_matrix(i, o, s)] {
                for r in 0..o {
                    let sum: f32 = m[r * i..(r + 1) * i].iter().sum();
                    assert!((sum - 1.0).abs() < 1e-6, "row {r} sums to {sum}");
                }
            }
        }
    }

    #[test]
    fn same_size_interpolation_is_identity() {
        // With scale 1 the source coordinate is the pixel itself (t = 0): cubic weights (0,1,0,0).
        let m = bicubic_matrix(7, 7, 1.0);
        for r in 0..7 {
            for c in 0..7 {
                let want = if r == c { 1.0 } else { 0.0 };
                assert!((m[r * 7 + c] - want).abs() < 1e-7);
            }
        }
    }

    #[test]
    fn bilinear_halving_averages_neighbours() {
        // PyTorch: interpolate([0,1,2,3], scale_factor=0.5, bilinear) -> [0.5, 2.5].
        let device = test_device();
        let x = Tensor::<4>::from_data([[[[0.0f32, 1.0, 2.0, 3.0]]]], &device);
        let y = interpolate_scale(x, 1.0, 0.5, Kernel::Bilinear);
        assert_eq!(y.dims(), [1, 1, 1, 2]);
        assert_eq!(host(y.reshape([1, 2])), vec![0.5, 2.5]);
    }

    #[test]
    fn bicubic_weights_match_pytorch_kernel_by_hand() {
        // Upsampling 16 -> 32: output 4 samples 0.5·4.5 − 0.5 = 1.75, so t = 0.75 around index 1.
        // PyTorch's A = −0.75 kernel at t = 0.75, worked out by hand:
        // cc2(1.75) = −0.03515625, cc1(0.75) = 0.26171875, cc1(0.25) = 0.87890625,
        // cc2(1.25) = −0.10546875.
        let m = bicubic_matrix(16, 32, 0.5);
        let row = &m[4 * 16..5 * 16];
        let want = [-0.03515625f32, 0.26171875, 0.87890625, -0.10546875];
        for (k, w) in want.iter().enumerate() {
            assert!((row[k] - w).abs() < 1e-7, "{k}: {} vs {w}", row[k]);
        }
        assert!(row[4..].iter().all(|v| *v == 0.0));
        // At the border the out-of-range taps are clamped onto index 0.
        let first = &m[0..16]; // real = −0.25: taps −2, −1, 0, 1 → 0, 0, 0, 1
        assert!((first[0] + first[1] - 1.0).abs() < 1e-6 && first[0] > 1.0);
    }

    #[test]
    fn gem_with_p1_is_average_and_normalise_gives_unit_rows() {
        let device = test_device();
        let x = Tensor::<4>::from_data([[[[1.0f32, 2.0], [3.0, 6.0]]]], &device);
        let g = host(gem(x.clone(), 1.0));
        assert!((g[0] - 3.0).abs() < 1e-5);
        assert!((host(avg_pool(x))[0] - 3.0).abs() < 1e-6);
        let n = host(normalise(Tensor::from_data([[3.0f32, 4.0]], &device)));
        assert!((n[0] - 0.6).abs() < 1e-6 && (n[1] - 0.8).abs() < 1e-6);
    }
}
