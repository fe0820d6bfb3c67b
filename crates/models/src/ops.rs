//! Functional pieces shared by the extractors: OML's `normalise`, GeM pooling, and PyTorch's
//! bicubic / bilinear `interpolate` written as two small matrix products.
//!
//! Interpolation is separable, so resizing `[H, W] -> [oh, ow]` is `Mh · X · Mwᵀ` with
//! interpolation matrices computed on the host from the sizes alone. That keeps PyTorch's exact
//! coordinate rule (including a caller-given `scale_factor`, which DINO relies on), runs on any
//! backend, and is differentiable (Burn's `interpolate` has no autodiff backward).

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation;
use oml_interfaces::device::is_host_backend;
use oml_interfaces::linalg::{host_f32, matmul, matmul_tn};
use rayon::prelude::*;

/// `layer.forward(x)`; at inference on a CPU backend (no autodiff) through the host GEMM.
///
/// burn-flex's own GEMM kernel spills its accumulators to the stack and ran the ViT's linear
/// layers at about 21 GFLOP/s on a 2-core machine; [`oml_interfaces::linalg::matmul`] runs the
/// same products several times faster (`docs/models.md`). Training keeps Burn's path, which
/// records the operation for the backward pass.
///
/// # Shapes
/// `[..., d_input] -> [..., d_output]`.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !host_inference(&device) {
        return layer.forward(x);
    }
    let weight = layer.weight.val();
    let [k, n] = weight.dims();
    let mut dims = x.dims();
    if dims[D - 1] != k {
        // Burn's forward reports the shape mismatch with its own message.
        return layer.forward(x);
    }
    let (Some(x_host), Some(w_host)) = (host_values(x.clone()), host_values(weight)) else {
        return layer.forward(x);
    };
    let mut out = vec![0f32; x_host.len() / k * n];
    if matmul(&x_host, &w_host, k, &mut out).is_err() {
        return layer.forward(x);
    }
    dims[D - 1] = n;
    let y = Tensor::<D>::from_data(TensorData::new(out, dims), &device);
    match &layer.bias {
        Some(bias) => y + bias.val().unsqueeze::<D>(),
        None => y,
    }
}

/// `layer.forward(x)`; at inference on a CPU backend (no autodiff) as im2col plus the host GEMM,
/// for the ungrouped convolutions with explicit or no padding that the extractors use.
///
/// burn-flex's convolution runs its own im2col and the GEMM kernel that [`linear`] avoids;
/// per image this computes `W [O, C·kh·kw] · cols [C·kh·kw, OH·OW]` straight into the NCHW
/// output. Other cases (groups, `Same` padding, training) keep Burn's path.
///
/// # Shapes
/// `[B, C, H, W] -> [B, O, OH, OW]`.
pub fn conv2d(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    conv2d_bn(layer, None, false, x)
}

/// `relu?(bn?(layer.forward(x)))`. On the host path an inference BatchNorm (running statistics)
/// is folded into the convolution's weights and bias, and the ReLU applied as the output is
/// written: no extra passes over the activation. Elsewhere, Burn's layers one after the other.
///
/// # Shapes
/// `[B, C, H, W] -> [B, O, OH, OW]`.
pub fn conv2d_bn(layer: &Conv2d, bn: Option<&BatchNorm>, relu: bool, x: Tensor<4>) -> Tensor<4> {
    match host_conv2d(layer, bn, relu, &x) {
        Some(y) => y,
        None => {
            let y = layer.forward(x);
            let y = match bn {
                Some(bn) => bn.forward(y),
                None => y,
            };
            if relu { activation::relu(y) } else { y }
        }
    }
}

/// The host path of [`conv2d_bn`]; `None` when it does not apply (then Burn's layers run).
fn host_conv2d(
    layer: &Conv2d,
    bn: Option<&BatchNorm>,
    relu: bool,
    x: &Tensor<4>,
) -> Option<Tensor<4>> {
    let device = x.device();
    if !host_inference(&device) || layer.groups != 1 {
        return None;
    }
    let (pt, pl, pb, pr) = match layer.padding {
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
        PaddingConfig2d::Same => return None,
    };
    let weight = layer.weight.val();
    let [o, c, kh, kw] = weight.dims();
    let [batch, xc, h, w] = x.dims();
    let ([sh, sw], [dh, dw]) = (layer.stride, layer.dilation);
    let (span_h, span_w) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
    if xc != c || sh == 0 || sw == 0 || h + pt + pb < span_h || w + pl + pr < span_w {
        // Burn's forward reports these with its own messages.
        return None;
    }
    let oh = (h + pt + pb - span_h) / sh + 1;
    let ow = (w + pl + pr - span_w) / sw + 1;
    let x_host = host_values(x.clone())?;
    let w_host = host_values(weight)?;
    let mut bias = match &layer.bias {
        Some(b) => host_values(b.val())?,
        None => vec![0f32; o],
    };
    // Per output channel: y = scale·conv + shift folds an inference BatchNorm.
    let mut scale = vec![1f32; o];
    if let Some(bn) = bn {
        let gamma = host_values(bn.gamma.val())?;
        let beta = host_values(bn.beta.val())?;
        let mean = host_values(bn.running_mean.value())?;
        let var = host_values(bn.running_var.value())?;
        if [gamma.len(), beta.len(), mean.len(), var.len()] != [o; 4] {
            return None;
        }
        for i in 0..o {
            scale[i] = gamma[i] / (var[i] + bn.epsilon as f32).sqrt();
            bias[i] = (bias[i] - mean[i]) * scale[i] + beta[i];
        }
    }
    let (k, n) = (c * kh * kw, oh * ow);
    // Several images: the weights `[O, k]` transposed (and scaled) once per call to `[k, O]`, so
    // that with the columns `[k, OH·OW]` both GEMM operands are in the layouts the kernel packs
    // fastest. One image: the transposition would cost more than it saves; scale in place.
    let transposed = batch > 1;
    let weights = if transposed {
        let mut wt = vec![0f32; k * o];
        wt.par_chunks_mut(o).enumerate().for_each(|(r, row)| {
            for (oc, v) in row.iter_mut().enumerate() {
                *v = w_host[oc * k + r] * scale[oc];
            }
        });
        wt
    } else {
        let mut w = w_host;
        w.par_chunks_mut(k)
            .zip(&scale)
            .for_each(|(row, &f)| row.iter_mut().for_each(|v| *v *= f));
        w
    };
    // A 1×1, stride-1, unpadded conv multiplies the image itself: no im2col copy.
    let direct = kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt + pl + pb + pr == 0;
    let mut cols = vec![0f32; if direct { 0 } else { k * n }];
    let mut out = vec![0f32; batch * o * n];
    for (image, y) in x_host
        .chunks_exact(c * h * w)
        .zip(out.chunks_exact_mut(o * n))
    {
        let b_mat: &[f32] = if direct {
            image
        } else {
            cols.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
                let (ch, ki, kj) = (r / (kh * kw), r / kw % kh, r % kw);
                let plane = &image[ch * h * w..(ch + 1) * h * w];
                im2col_row(
                    plane,
                    row,
                    [h, w],
                    [ki * dh, kj * dw],
                    [sh, sw],
                    [pt, pl],
                    ow,
                );
            });
            &cols
        };
        if transposed {
            matmul_tn(&weights, b_mat, k, y).ok()?;
        } else {
            matmul(&weights, b_mat, k, y).ok()?;
        }
        y.par_chunks_exact_mut(n).zip(&bias).for_each(|(row, &b)| {
            if relu {
                // `t < 0` rather than `max`: a NaN stays NaN, as through Burn's relu.
                row.iter_mut().for_each(|v| {
                    let t = *v + b;
                    *v = if t < 0.0 { 0.0 } else { t };
                });
            } else {
                row.iter_mut().for_each(|v| *v += b);
            }
        });
    }
    Some(Tensor::from_data(
        TensorData::new(out, [batch, o, oh, ow]),
        &device,
    ))
}

/// One im2col row: the input plane's values seen by one kernel tap (offset `[oy0, ox0]` in
/// the padded input) at every output position, zeros where the tap falls into the padding.
fn im2col_row(
    plane: &[f32],
    row: &mut [f32],
    [h, w]: [usize; 2],
    [oy0, ox0]: [usize; 2],
    [sh, sw]: [usize; 2],
    [pt, pl]: [usize; 2],
    ow: usize,
) {
    // Output columns whose input column `ox·sw + ox0 − pl` lies inside `0..w`.
    let lo = if ox0 >= pl {
        0
    } else {
        (pl - ox0).div_ceil(sw)
    }
    .min(ow);
    let hi = if w + pl > ox0 {
        ((w + pl - ox0 - 1) / sw + 1).min(ow)
    } else {
        0
    }
    .max(lo);
    for (oy, seg) in row.chunks_exact_mut(ow).enumerate() {
        let iy = oy * sh + oy0;
        if iy < pt || iy - pt >= h {
            seg.fill(0.0);
            continue;
        }
        let src = &plane[(iy - pt) * w..(iy - pt + 1) * w];
        seg[..lo].fill(0.0);
        seg[hi..].fill(0.0);
        let first = lo * sw + ox0 - pl;
        if sw == 1 {
            seg[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
        } else {
            for (v, &x) in seg[lo..hi].iter_mut().zip(src[first..].iter().step_by(sw)) {
                *v = x;
            }
        }
    }
}

/// Inference (no autodiff: nothing to record for a backward pass) on a CPU backend: where the
/// host GEMM paths apply.
fn host_inference(device: &Device) -> bool {
    !device.is_autodiff() && is_host_backend(device)
}

/// A float tensor's values as `f32`, row-major; `None` (Burn's path then runs) if unreadable.
fn host_values<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    host_f32(t).ok()
}

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

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        host_f32(t).unwrap()
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what} at {i}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn host_conv2d_matches_burns_conv() {
        use burn::nn::conv::Conv2dConfig;
        let device = test_device();
        // (channels in/out, kernel, stride, padding t/l/b/r, dilation, bias, input h×w)
        let cases = [
            (
                [3, 8],
                [7, 7],
                [2, 2],
                PaddingConfig2d::Explicit(3, 3, 3, 3),
                [1, 1],
                false,
                [20, 18],
            ),
            (
                [4, 5],
                [3, 3],
                [1, 1],
                PaddingConfig2d::Explicit(1, 1, 1, 1),
                [1, 1],
                true,
                [9, 11],
            ),
            (
                [4, 6],
                [1, 1],
                [1, 1],
                PaddingConfig2d::Valid,
                [1, 1],
                true,
                [5, 7],
            ),
            (
                [4, 6],
                [1, 1],
                [2, 2],
                PaddingConfig2d::Valid,
                [1, 1],
                false,
                [6, 7],
            ),
            (
                [2, 3],
                [3, 2],
                [2, 1],
                PaddingConfig2d::Explicit(0, 2, 1, 0),
                [2, 3],
                true,
                [12, 10],
            ),
            (
                [3, 4],
                [4, 4],
                [4, 4],
                PaddingConfig2d::Valid,
                [1, 1],
                true,
                [16, 12],
            ),
        ];
        for (ch, k, stride, padding, dilation, bias, [h, w]) in cases {
            let layer = Conv2dConfig::new(ch, k)
                .with_stride(stride)
                .with_padding(padding.clone())
                .with_dilation(dilation)
                .with_bias(bias)
                .init(&device);
            let x = Tensor::<4>::random(
                [2, ch[0], h, w],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let want = layer.forward(x.clone());
            let got = conv2d(&layer, x);
            assert_eq!(got.dims(), want.dims(), "{padding:?}");
            assert_close(
                &values(got),
                &values(want),
                &format!("{ch:?} {k:?} {padding:?}"),
            );
        }
    }

    #[test]
    fn host_conv_with_folded_batch_norm_and_relu_matches_burns_layers() {
        use burn::module::{Param, RunningState};
        use burn::nn::BatchNormConfig;
        use burn::nn::conv::Conv2dConfig;
        let device = test_device();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        for (bias, relu) in [(false, true), (true, false), (true, true)] {
            let conv = Conv2dConfig::new([3, 6], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(bias)
                .init(&device);
            let mut bn = BatchNormConfig::new(6).init(&device);
            bn.gamma = Param::from_tensor(Tensor::<1>::random([6], normal, &device));
            bn.beta = Param::from_tensor(Tensor::<1>::random([6], normal, &device));
            bn.running_mean = RunningState::new(Tensor::<1>::random([6], normal, &device));
            bn.running_var = RunningState::new(Tensor::<1>::random(
                [6],
                burn::tensor::Distribution::Uniform(0.5, 2.0),
                &device,
            ));
            // batch 1 multiplies the weights as they are, batch 2 transposes them first
            let x = Tensor::<4>::random([1 + usize::from(bias), 3, 11, 9], normal, &device);
            let y = bn.forward(conv.forward(x.clone()));
            let want = if relu { activation::relu(y) } else { y };
            let got = conv2d_bn(&conv, Some(&bn), relu, x);
            assert_close(
                &values(got),
                &values(want),
                &format!("bias {bias}, relu {relu}"),
            );
        }
    }

    #[test]
    fn host_linear_matches_burns_linear() {
        use burn::nn::LinearConfig;
        let device = test_device();
        for bias in [true, false] {
            let layer = LinearConfig::new(24, 10).with_bias(bias).init(&device);
            let x = Tensor::<3>::random(
                [3, 7, 24],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let want = layer.forward(x.clone());
            let got = linear(&layer, x);
            assert_eq!(got.dims(), want.dims());
            assert_close(&values(got), &values(want), "linear");
        }
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
        assert_eq!(values(y.reshape([1, 2])), vec![0.5, 2.5]);
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
        let g = values(gem(x.clone(), 1.0));
        assert!((g[0] - 3.0).abs() < 1e-5);
        assert!((values(avg_pool(x))[0] - 3.0).abs() < 1e-6);
        let n = values(normalise(Tensor::from_data([[3.0f32, 4.0]], &device)));
        assert!((n[0] - 0.6).abs() < 1e-6 && (n[1] - 0.8).abs() < 1e-6);
    }
}
