//! Functional pieces shared by the extractors: OML's `normalise`, GeM pooling, multi-head
//! attention, convolutions with a folded BatchNorm, and PyTorch's bicubic / bilinear
//! `interpolate` written as two small matrix products; and the host layers (linear, LayerNorm,
//! attention) that the extractors' prepared inference paths (`HostVit`, `HostResNet`) are built
//! from.
//!
//! Interpolation is separable, so resizing `[H, W] -> [oh, ow]` is `Mh · X · Mwᵀ` with
//! interpolation matrices computed on the host from the sizes alone. That keeps PyTorch's exact
//! coordinate rule (including a caller-given `scale_factor`, which DINO relies on), runs on any
//! backend, and is differentiable (Burn's `interpolate` has no autodiff backward).

use crate::epilogue::{Activation, Epilogue, LayerNormRows, Softmax};
use crate::nhwc::{HostConv, Map};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use oml_interfaces::cpu::{MatRef, gemm_rows, host_f32};
use rayon::prelude::*;

/// A linear layer read onto the host once, for inference: `x·W`, then `+ bias`, `+ residual`
/// and the activation in one pass per finished block of rows ([`Epilogue`]).
pub(crate) struct HostLinear {
    /// `W [k, n]` row-major (Burn's layout: input features by output features).
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    k: usize,
    n: usize,
}

impl HostLinear {
    /// `None` where the layer is empty or its values are not readable as `f32`.
    pub fn new(layer: &Linear) -> Option<Self> {
        let [k, n] = layer.weight.dims();
        if k == 0 || n == 0 {
            return None;
        }
        let bias = match &layer.bias {
            Some(b) => Some(host_values(b.val())?),
            None => None,
        };
        Some(Self {
            weight: host_values(layer.weight.val())?,
            bias,
            k,
            n,
        })
    }

    /// `[input features, output features]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.k, self.n]
    }

    /// The layer followed by a per-output scale (DINOv2's LayerScale): `γ ⊙ (x·W + b)` is
    /// `x·(W diag γ) + γ ⊙ b`, so the scale is folded into the weights once. `None` where `gamma`
    /// does not have one value per output.
    pub fn scaled(mut self, gamma: &[f32]) -> Option<Self> {
        if gamma.len() != self.n {
            return None;
        }
        for row in self.weight.chunks_exact_mut(self.n) {
            row.iter_mut().zip(gamma).for_each(|(w, g)| *w *= g);
        }
        if let Some(b) = &mut self.bias {
            b.iter_mut().zip(gamma).for_each(|(v, g)| *v *= g);
        }
        Some(self)
    }

    /// `activation(x·W + bias + residual)` into `out` `[rows, n]` (overwritten) for row-major
    /// `x [rows, k]` and `residual [rows, n]`; `None` where the lengths do not describe such
    /// rows.
    pub fn forward_into(
        &self,
        x: &[f32],
        residual: Option<&[f32]>,
        activation: Activation,
        out: &mut [f32],
    ) -> Option<()> {
        let (k, n) = (self.k, self.n);
        let rows = x.len() / k;
        let whole = rows * k == x.len() && out.len() == rows * n;
        if !whole || residual.is_some_and(|r| r.len() != rows * n) {
            return None;
        }
        let arch = pulp::Arch::new();
        let finish = |i0: usize, block: &mut [f32]| {
            arch.dispatch(Epilogue {
                block,
                n,
                bias: self.bias.as_deref(),
                residual: residual.map(|r| &r[i0 * n..]),
                activation,
            })
        };
        let x = MatRef::from_row_major_slice(x, rows, k);
        let w = MatRef::from_row_major_slice(&self.weight, k, n);
        gemm_rows(&x, w, out, finish).ok()
    }
}

/// A LayerNorm read onto the host once, for inference ([`LayerNormRows`]).
pub(crate) struct HostLayerNorm {
    gamma: Vec<f32>,
    beta: Option<Vec<f32>>,
    epsilon: f32,
}

impl HostLayerNorm {
    /// `layer` with its `epsilon` (which Burn keeps private: the caller knows it from the
    /// config the layer was built from); `None` where its values are not readable as `f32`.
    pub fn new(layer: &LayerNorm, epsilon: f64) -> Option<Self> {
        let beta = match &layer.beta {
            Some(b) => Some(host_values(b.val())?),
            None => None,
        };
        let gamma = host_values(layer.gamma.val())?;
        (!gamma.is_empty()).then_some(Self {
            gamma,
            beta,
            epsilon: epsilon as f32,
        })
    }

    /// The row width.
    pub fn width(&self) -> usize {
        self.gamma.len()
    }

    /// The norm of each row of `x` (rows of the layer's width); `None` where `x` is not whole
    /// rows.
    pub fn forward(&self, x: &[f32]) -> Option<Vec<f32>> {
        let mut out = vec![0f32; x.len()];
        self.forward_into(x, &mut out)?;
        Some(out)
    }

    /// [`Self::forward`] into `out` (overwritten, `x`'s length).
    pub fn forward_into(&self, x: &[f32], out: &mut [f32]) -> Option<()> {
        let d = self.gamma.len();
        if !x.len().is_multiple_of(d) || out.len() != x.len() {
            return None;
        }
        let arch = pulp::Arch::new();
        out.par_chunks_mut(NORM_ROWS * d)
            .zip(x.par_chunks(NORM_ROWS * d))
            .for_each(|(out, x)| {
                arch.dispatch(LayerNormRows {
                    x,
                    out,
                    gamma: &self.gamma,
                    beta: self.beta.as_deref(),
                    epsilon: self.epsilon,
                })
            });
        Some(())
    }
}

/// Rows per LayerNorm task.
const NORM_ROWS: usize = 32;

/// The inputs a host path gives back where it does not apply (boxed: tensors are large values).
pub(crate) type GivenBack<const D: usize, const E: usize> = Box<(Tensor<D>, Option<Tensor<E>>)>;

/// Runs `f` on the values of `x` and of `extra` as host slices — a tensor no one else holds is
/// read without a copy — or gives both back unchanged where they are not `f32`.
pub(crate) fn with_host<const D: usize, const E: usize, T>(
    x: Tensor<D>,
    extra: Option<Tensor<E>>,
    f: impl FnOnce(&[f32], Option<&[f32]>) -> T,
) -> Result<T, GivenBack<D, E>> {
    let device = x.device();
    let x_data = x.into_data();
    let e_data = extra.map(Tensor::into_data);
    match (
        x_data.as_slice::<f32>(),
        e_data.as_ref().map(|e| e.as_slice::<f32>()).transpose(),
    ) {
        (Ok(x), Ok(e)) => Ok(f(x, e)),
        _ => Err(Box::new((
            Tensor::from_data(x_data, &device),
            e_data.map(|e| Tensor::from_data(e, &device)),
        ))),
    }
}

/// Multi-head self-attention, `softmax(q·kᵀ / √head_dim) · v` per head, from a fused `qkv`
/// projection laid out as `(3, heads, head_dim)` along its last axis (DINO's `Attention`),
/// through Burn's `attention` (any backend, autodiff included); the heads come back merged,
/// ready for the output projection. The host path has its own (`host_attention`).
///
/// # Shapes
/// `[B, N, 3·C] -> [B, N, C]`.
pub fn multi_head_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    let [b, n, c3] = qkv.dims();
    let d = c3 / 3 / heads.max(1);
    let qkv = qkv.reshape([b, n, 3, heads, d]).permute([2, 0, 3, 1, 4]);
    let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b, heads, n, d]);
    // softmax(q·kᵀ / sqrt(head_dim)) · v, as DINO (qk_scale = None).
    let out = attention(
        part(0),
        part(1),
        part(2),
        None,
        None,
        AttentionModuleOptions::default(),
    );
    out.swap_dims(1, 2).reshape([b, n, heads * d])
}

/// The host attention over `qkv` `[B, N, 3, heads, d]` (row-major) for the first `queries`
/// tokens of each image (all `N` for a whole layer; 1 where only the CLS token is read on),
/// merged to `[B, queries, heads·d]`; `None` if a view does not fit (not for consistent shapes).
pub(crate) fn host_attention(
    qkv: &[f32],
    [b, n, heads, d]: [usize; 4],
    queries: usize,
) -> Option<Vec<f32>> {
    let c = heads * d;
    if qkv.len() != b * n * 3 * c || queries > n {
        return None;
    }
    let scale = 1.0 / (d as f32).sqrt();
    let arch = pulp::Arch::new();
    // One task per (image, head): scores [queries, N] = q·kᵀ, the scaled row softmax applied as
    // each block of rows is finished, then P·v.
    let per_head: Vec<Vec<f32>> = (0..b * heads)
        .into_par_iter()
        .map(|task| {
            let (image, head) = (task / heads, task % heads);
            let rows = &qkv[image * n * 3 * c..(image + 1) * n * 3 * c];
            let part = |p: usize| {
                MatRef::from_row_major_slice_with_stride(&rows[p * c + head * d..], n, d, 3 * c)
            };
            let (q, k, v) = (part(0).subrows(0, queries), part(1), part(2));
            let mut scores = vec![0f32; queries * n];
            let softmax = |_: usize, block: &mut [f32]| arch.dispatch(Softmax { block, n, scale });
            gemm_rows(&q, k.transpose(), &mut scores, softmax).ok()?;
            let mut out = vec![0f32; queries * d];
            let p = MatRef::from_row_major_slice(&scores, queries, n);
            gemm_rows(&p, v, &mut out, |_, _| {}).ok()?;
            Some(out)
        })
        .collect::<Option<_>>()?;
    let mut merged = vec![0f32; b * queries * c];
    merged
        .par_chunks_mut((queries * c).max(1))
        .zip(per_head.par_chunks(heads))
        .for_each(|(image, heads_out)| {
            for (i, row) in image.chunks_exact_mut(c).enumerate() {
                for (h, out) in heads_out.iter().enumerate() {
                    row[h * d..(h + 1) * d].copy_from_slice(&out[i * d..(i + 1) * d]);
                }
            }
        });
    Some(merged)
}

/// `layer.forward(x)`; at inference on a CPU backend (no autodiff) as an implicit GEMM over
/// channels-last activations (`crate::nhwc`), for the ungrouped convolutions with explicit or
/// no padding that the extractors use.
///
/// burn-flex's convolution runs its own im2col and the GEMM kernel that `HostLinear` avoids; here
/// the im2col rows are gathered from the input as the host GEMM needs them and never written
/// out. Other cases (groups, `Same` padding, training) keep Burn's path, where a trained 1×1
/// convolution runs as a matrix product (its weight gradient is the product's).
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
    conv2d_bn_add(layer, bn, None, relu, x)
}

/// `relu?(bn?(layer.forward(x)) + residual?)`: a residual block's last convolution, with the
/// shortcut added (and the ReLU applied) as the output is written on the host path.
///
/// # Shapes
/// `x` `[B, C, H, W]`, `residual` `[B, O, OH, OW]` → `[B, O, OH, OW]`.
pub fn conv2d_bn_add(
    layer: &Conv2d,
    bn: Option<&BatchNorm>,
    residual: Option<Tensor<4>>,
    relu: bool,
    x: Tensor<4>,
) -> Tensor<4> {
    let (x, residual) = match host_conv2d(layer, bn, residual, relu, x) {
        Ok(y) => return y,
        Err(back) => *back,
    };
    let y = burn_conv2d(layer, x);
    let y = match bn {
        Some(bn) => bn.forward(y),
        None => y,
    };
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu { activation::relu(y) } else { y }
}

/// Burn's convolution, except that a 1×1 convolution without padding whose weight takes
/// gradients runs as a matrix product. Burn computes a convolution's weight gradient as a
/// convolution of the input by the output gradient (its generic `conv2d_weight_backward`),
/// whose products have as few rows as the kernel has taps: 5–25× slower than the matrix
/// product's own gradient at ResNet-50's 1×1 shapes (`oml-bench conv`, docs/training.md).
/// Burn's tensor ops only, so it runs inside autodiff and on every backend; frozen and
/// inference layers keep Burn's convolution (its forward and input gradient are as fast).
fn burn_conv2d(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    use burn::nn::PaddingConfig2d;
    use burn::tensor::Slice;
    let unpadded = matches!(
        layer.padding,
        PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
    );
    let [o, c, kh, kw] = layer.weight.dims();
    let [n, xc, h, w] = x.dims();
    // Empty and mismatched inputs are left to Burn, which reports them.
    let pointwise = kh == 1 && kw == 1 && layer.groups == 1 && unpadded && xc == c && n * h * w > 0;
    if !(pointwise && layer.weight.is_require_grad()) {
        return layer.forward(x);
    }
    let [sh, sw] = layer.stride;
    let x = if sh > 1 || sw > 1 {
        let step = |s: usize| Slice::new(0, None, s as isize);
        x.slice([Slice::full(), Slice::full(), step(sh), step(sw)])
    } else {
        x
    };
    let [_, _, oh, ow] = x.dims();
    let l = oh * ow;
    let weight = layer.weight.val().reshape([o, c]);
    // Per image, `W·X` broadcasts `W` over the batch, and its gradient is summed from one
    // `O×C` product per image: cheap where maps are large. Where `O·C` outgrows the maps (the
    // last stages), the images are laid side by side instead, one `C×(B·L)` product whose
    // weight gradient is a single product too, at the cost of two transposed copies.
    let y = if o * c > (o + c) * l {
        let x = x.reshape([n, c, l]).swap_dims(0, 1).reshape([c, n * l]);
        weight
            .matmul(x)
            .reshape([o, n, l])
            .swap_dims(0, 1)
            .reshape([n, o, oh, ow])
    } else {
        weight
            .unsqueeze::<3>()
            .matmul(x.reshape([n, c, l]))
            .reshape([n, o, oh, ow])
    };
    match &layer.bias {
        Some(b) => y + b.val().reshape([1, o, 1, 1]),
        None => y,
    }
}

/// The host path of [`conv2d_bn_add`]: the NHWC implicit GEMM of [`crate::nhwc`], with the
/// activations transposed in and out. It takes them by value: a tensor no one else holds is
/// read without a copy. Where the path does not apply, the inputs come back unchanged (then
/// Burn's layers run).
fn host_conv2d(
    layer: &Conv2d,
    bn: Option<&BatchNorm>,
    residual: Option<Tensor<4>>,
    relu: bool,
    x: Tensor<4>,
) -> Result<Tensor<4>, GivenBack<4, 4>> {
    let device = x.device();
    let [batch, c, h, w] = x.dims();
    let conv = host_inference(&device)
        .then(|| HostConv::new(layer, bn))
        .flatten();
    // Burn's forward reports bad shapes with its own messages; empty ones are left to it.
    let out = conv.as_ref().and_then(|conv| {
        let [_, oh, ow, o] = conv.out_dims([batch, h, w, c])?;
        let fits = h * w > 0
            && residual
                .as_ref()
                .is_none_or(|r| r.dims() == [batch, o, oh, ow]);
        fits.then_some((conv, [batch, o, oh, ow]))
    });
    let Some((conv, out)) = out else {
        return Err(Box::new((x, residual)));
    };
    let y = with_host(x, residual, |x, residual| {
        let x = Map::from_nchw(x, [batch, c, h, w]);
        let residual = residual.map(|r| Map::from_nchw(r, out));
        conv.forward(&x, residual.as_ref(), relu)
    })?;
    let Some(y) = y else {
        unreachable!("the input and residual shapes were checked against the convolution")
    };
    Ok(y.into_tensor(&device))
}

/// Inference (no autodiff: nothing to record for a backward pass) on a CPU backend: where the
/// host GEMM paths apply.
pub(crate) fn host_inference(device: &Device) -> bool {
    !device.is_autodiff() && oml_interfaces::cpu::applies(device)
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

/// The `[out, in]` matrix of PyTorch's antialiased bicubic resize (`interpolate(mode="bicubic",
/// antialias=True)`, `align_corners=False`) along one axis: PIL's separable filter with
/// `a = −0.5`, stretched by `scale` (the source step per output pixel, `in / out` for a given
/// size) when shrinking, each output's weights normalised to sum to one. Enlarging, it is the
/// plain cubic with PIL's `a`.
pub fn bicubic_antialiased_matrix(input: usize, output: usize, scale: f64) -> Vec<f32> {
    const A: f64 = -0.5;
    let filter = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * A
        } else {
            0.0
        }
    };
    let (support, inv) = if scale >= 1.0 {
        (2.0 * scale, 1.0 / scale)
    } else {
        (2.0, 1.0)
    };
    let mut m = vec![0f64; output * input];
    for o in 0..output {
        let center = scale * (o as f64 + 0.5);
        // PyTorch truncates toward zero here (`static_cast<int64_t>`) before clamping.
        let lo = ((center - support + 0.5) as i64).max(0) as usize;
        let hi = ((center + support + 0.5) as i64).clamp(0, input as i64) as usize;
        let row = &mut m[o * input..(o + 1) * input];
        for (j, r) in row.iter_mut().enumerate().take(hi).skip(lo) {
            *r = filter((j as f64 - center + 0.5) * inv);
        }
        let total: f64 = row.iter().sum();
        if total != 0.0 {
            row.iter_mut().for_each(|r| *r /= total);
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
    /// PyTorch `mode="bicubic"`, `align_corners=False`, `antialias=True`.
    AntialiasedBicubic,
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
            Kernel::AntialiasedBicubic => bicubic_antialiased_matrix(input, output, step),
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
    use burn::nn::PaddingConfig2d;
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

    /// `HostLinear` against Burn's Linear (+ GELU, + residual), with and without a bias, and
    /// on an empty batch.
    #[test]
    fn host_linear_matches_burns_layers() {
        use burn::nn::LinearConfig;
        let device = test_device();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        for bias in [true, false] {
            let layer = LinearConfig::new(24, 10).with_bias(bias).init(&device);
            let host = HostLinear::new(&layer).unwrap();
            for rows in [21, 0] {
                let x = Tensor::<2>::random([rows, 24], normal, &device);
                let r = Tensor::<2>::random([rows, 10], normal, &device);
                let (xs, rs) = (values(x.clone()), values(r.clone()));
                let y = layer.forward(x);
                let cases = [
                    (Activation::Identity, None, values(y.clone())),
                    (Activation::Gelu, None, values(activation::gelu(y.clone()))),
                    (Activation::Identity, Some(&rs[..]), values(y + r)),
                ];
                for (act, residual, want) in cases {
                    let mut got = vec![f32::NAN; rows * 10];
                    host.forward_into(&xs, residual, act, &mut got).unwrap();
                    assert_close(&got, &want, &format!("bias {bias}, {act:?}, {rows} rows"));
                }
            }
            // Lengths that are not whole rows are refused, not read past.
            let (x, out) = ([0.0; 48], &mut [0.0; 20]);
            let id = Activation::Identity;
            assert!(host.forward_into(&x[..47], None, id, out).is_none());
            assert!(host.forward_into(&x, Some(&[0.0; 19]), id, out).is_none());
            assert!(host.forward_into(&x, None, id, &mut [0.0; 19]).is_none());
            assert!(host.forward_into(&x, None, id, out).is_some());
        }
    }

    /// `HostLayerNorm` against Burn's LayerNorm, with a scale and shift away from 1 and 0 and
    /// rows whose mean is far from 0 (where a one-pass variance loses digits).
    #[test]
    fn host_layer_norm_matches_burns_layer_norm() {
        use burn::module::Param;
        use burn::nn::LayerNormConfig;
        let device = test_device();
        for (width, epsilon) in [(24, 1e-6), (37, 1e-5)] {
            let mut layer = LayerNormConfig::new(width)
                .with_epsilon(epsilon)
                .init(&device);
            let uniform = burn::tensor::Distribution::Uniform(-2.0, 2.0);
            layer.gamma = Param::from_tensor(Tensor::random([width], uniform, &device));
            layer.beta = Some(Param::from_tensor(Tensor::random(
                [width],
                uniform,
                &device,
            )));
            let x = Tensor::<2>::random(
                [70, width],
                burn::tensor::Distribution::Normal(0.0, 3.0),
                &device,
            ) + 100.0;
            let host = HostLayerNorm::new(&layer, epsilon).unwrap();
            let got = host.forward(&values(x.clone())).unwrap();
            assert_close(&got, &values(layer.forward(x)), &format!("width {width}"));
            assert!(host.forward(&[0.0; 5]).is_none());
        }
    }

    /// The host attention against Burn's, for every query and for the first one alone (the
    /// last ViT block's CLS-only pass).
    #[test]
    fn host_attention_matches_burns_attention() {
        let device = test_device();
        // (batch, tokens, heads, head_dim); scaled so the softmax is far from uniform.
        for [b, n, h, d] in [[2, 9, 3, 4], [1, 17, 1, 8], [3, 1, 2, 5]] {
            let qkv = Tensor::<3>::random(
                [b, n, 3 * h * d],
                burn::tensor::Distribution::Normal(0.0, 2.0),
                &device,
            );
            let want = values(multi_head_attention(qkv.clone(), h));
            let qkv = values(qkv);
            let got = host_attention(&qkv, [b, n, h, d], n).unwrap();
            assert_close(&got, &want, &format!("{b}×{n}, {h} heads"));
            let first: Vec<f32> = want
                .chunks_exact(n * h * d)
                .flat_map(|image| &image[..h * d])
                .copied()
                .collect();
            let got = host_attention(&qkv, [b, n, h, d], 1).unwrap();
            assert_close(&got, &first, &format!("{b}×{n}, {h} heads, CLS query"));
            assert!(host_attention(&qkv, [b, n, h, d], n + 1).is_none());
        }
    }

    #[test]
    fn host_conv_with_residual_matches_burns_layers() {
        use burn::nn::conv::Conv2dConfig;
        let device = test_device();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let conv = Conv2dConfig::new([3, 5], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        for batch in [1, 2] {
            let x = Tensor::<4>::random([batch, 3, 6, 7], normal, &device);
            let r = Tensor::<4>::random([batch, 5, 6, 7], normal, &device);
            let want = activation::relu(conv.forward(x.clone()) + r.clone());
            let got = conv2d_bn_add(&conv, None, Some(r), true, x);
            assert_close(&values(got), &values(want), &format!("batch {batch}"));
        }
    }

    #[test]
    fn host_conv_over_many_row_blocks_matches_burns_layers() {
        use burn::nn::conv::Conv2dConfig;
        let device = test_device();
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let conv = Conv2dConfig::new([3, 5], [3, 3])
            .with_stride([2, 1])
            .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 0, 2, 1))
            .init(&device);
        // 3 images of 13×13 outputs: 507 rows of the implicit GEMM, more than two row blocks,
        // so the residual is read at each block's own offset.
        let x = Tensor::<4>::random([3, 3, 25, 14], normal, &device);
        let y = conv.forward(x.clone());
        assert_eq!(y.dims(), [3, 5, 13, 13]);
        let r = Tensor::<4>::random(y.dims(), normal, &device);
        let want = values(activation::relu(y + r.clone()));
        let got = conv2d_bn_add(&conv, None, Some(r), true, x);
        assert_close(&values(got), &want, "507 rows");
    }

    /// Enough rows for `gemm_rows`' tiled path (9 tiles of 910 rows on two threads, the last one
    /// short): each tile gathers, multiplies and adds the residual at its own offset.
    #[test]
    fn host_conv_over_many_tiles_matches_burns_layers() {
        use burn::nn::conv::Conv2dConfig;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build();
        pool.expect("a rayon pool of two threads").install(|| {
            let device = test_device();
            let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
            let conv = Conv2dConfig::new([16, 6], [3, 3])
                .with_padding(burn::nn::PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device);
            let x = Tensor::<4>::random([2, 16, 60, 61], normal, &device);
            let y = conv.forward(x.clone());
            let r = Tensor::<4>::random(y.dims(), normal, &device);
            let want = values(activation::relu(y + r.clone()));
            let got = conv2d_bn_add(&conv, None, Some(r), true, x);
            assert_close(&values(got), &want, "7320 rows in tiles");
        });
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
    fn antialiased_bicubic_weights_by_hand() {
        // The same size is the identity (PIL's a = −0.5 cubic is 1 at 0 and 0 at ±1, ±2).
        let m = bicubic_antialiased_matrix(5, 5, 1.0);
        for (i, v) in m.iter().enumerate() {
            assert_eq!(*v, if i % 6 == 0 { 1.0 } else { 0.0 }, "{i}");
        }
        // Halving 4 -> 2: the filter is stretched to support 4, so output 0 (centre 1) reads
        // every input at (j − 0.5)/2 = −0.25, 0.25, 0.75, 1.25: 0.8671875, 0.8671875,
        // 0.2265625, −0.0703125 by hand, over their sum 1.890625.
        let m = bicubic_antialiased_matrix(4, 2, 2.0);
        let want = [0.8671875f32, 0.8671875, 0.2265625, -0.0703125].map(|w| w / 1.890625);
        for (k, w) in want.iter().enumerate() {
            assert!((m[k] - w).abs() < 1e-7, "{k}: {} vs {w}", m[k]);
        }
        // Output 1 mirrors it.
        for k in 0..4 {
            assert!((m[4 + k] - want[3 - k]).abs() < 1e-7);
        }
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
