//! Host convolutions on channels-last (NHWC) activations, as an implicit GEMM.
//!
//! A convolution is `C [B·OH·OW, O] = A [B·OH·OW, kh·kw·C] · W [kh·kw·C, O]`, where row
//! `(b, oy, ox)` of `A` holds the input values under the kernel at that output position,
//! ordered `(ki, kj, c)`. In NHWC the `kw·C` values of one kernel row are adjacent in memory,
//! so [`oml_interfaces::cpu::gemm_rows`] gathers `A`'s rows straight from the input, one
//! cache-sized tile per task (the whole im2col matrix is never written), and the output comes
//! out in NHWC, ready for the next layer, with the folded BatchNorm's shift, the residual and
//! the ReLU applied per finished tile while it is in cache.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use oml_interfaces::cpu::{MatRef, RowSource, gemm_rows, host_f32};

use crate::epilogue::{Activation, Epilogue};
use rayon::prelude::*;

/// Activations `[n, h, w, c]`, channels last, on the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Map {
    pub data: Vec<f32>,
    pub dims: [usize; 4],
}

impl Map {
    /// From NCHW values `[n, c, h, w]`.
    pub fn from_nchw(x: &[f32], [n, c, h, w]: [usize; 4]) -> Self {
        let plane = h * w;
        let mut data = vec![0f32; x.len()];
        data.par_chunks_mut((plane * c).max(1))
            .zip(x.par_chunks((plane * c).max(1)))
            .for_each(|(out, image)| {
                for (ch, src) in image.chunks_exact(plane.max(1)).enumerate() {
                    for (p, &v) in src.iter().enumerate() {
                        out[p * c + ch] = v;
                    }
                }
            });
        Self {
            data,
            dims: [n, h, w, c],
        }
    }

    /// The values in NCHW order, `[n, c, h, w]`.
    pub fn to_nchw(&self) -> Vec<f32> {
        let [_, h, w, c] = self.dims;
        let plane = h * w;
        let mut out = vec![0f32; self.data.len()];
        out.par_chunks_mut((plane * c).max(1))
            .zip(self.data.par_chunks((plane * c).max(1)))
            .for_each(|(out, image)| {
                for (p, pixel) in image.chunks_exact(c.max(1)).enumerate() {
                    for (ch, &v) in pixel.iter().enumerate() {
                        out[ch * plane + p] = v;
                    }
                }
            });
        out
    }

    /// The NCHW tensor `[n, c, h, w]` on `device`.
    pub fn into_tensor(self, device: &Device) -> Tensor<4> {
        let [n, h, w, c] = self.dims;
        Tensor::from_data(TensorData::new(self.to_nchw(), [n, c, h, w]), device)
    }

    /// From an NCHW tensor; `None` where its values are not readable as `f32`.
    pub fn from_tensor(x: Tensor<4>) -> Option<Self> {
        let dims = x.dims();
        Some(Self::from_nchw(&host_f32(x).ok()?, dims))
    }
}

/// One convolution (with an inference BatchNorm folded in) ready for NHWC inputs.
pub(crate) struct HostConv {
    /// `Wᵀ [O, (ki, kj, c)]` row-major, each output channel scaled by the BatchNorm.
    weights: Vec<f32>,
    /// Per output channel: the bias and the BatchNorm's shift.
    shift: Vec<f32>,
    c: usize,
    o: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// Top, left, bottom, right.
    padding: [usize; 4],
}

impl HostConv {
    /// `bn?(layer(·))` as a host convolution; `None` where the host path does not apply
    /// (groups, `Same` padding, an empty or zero-stride layer, values not readable as `f32`).
    pub fn new(layer: &Conv2d, bn: Option<&BatchNorm>) -> Option<Self> {
        let padding = match layer.padding {
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            PaddingConfig2d::Same => return None,
        };
        let weight = layer.weight.val();
        let [o, c, kh, kw] = weight.dims();
        if layer.groups != 1 || [o, c, kh, kw].contains(&0) || layer.stride.contains(&0) {
            return None;
        }
        let w = host_f32(weight).ok()?;
        let mut shift = match &layer.bias {
            Some(b) => host_f32(b.val()).ok()?,
            None => vec![0f32; o],
        };
        // Per output channel: y = scale·conv + shift folds an inference BatchNorm.
        let mut scale = vec![1f32; o];
        if let Some(bn) = bn {
            let stats = [
                bn.gamma.val(),
                bn.beta.val(),
                bn.running_mean.value(),
                bn.running_var.value(),
            ]
            .map(|t| host_f32(t).ok());
            let [Some(gamma), Some(beta), Some(mean), Some(var)] = stats else {
                return None;
            };
            if [gamma.len(), beta.len(), mean.len(), var.len(), shift.len()] != [o; 5] {
                return None;
            }
            for i in 0..o {
                scale[i] = gamma[i] / (var[i] + bn.epsilon as f32).sqrt();
                shift[i] = (shift[i] - mean[i]) * scale[i] + beta[i];
            }
        }
        // Each output channel's weights `[C, kh, kw]` reordered to `[(ki, kj, c)]`, the order
        // of an NHWC gather, and scaled: one row in cache per task; the GEMM reads the rows as
        // the columns of `W`.
        let (k, taps) = (kh * kw * c, kh * kw);
        let mut wt = vec![0f32; o * k];
        wt.par_chunks_mut(k)
            .zip(w.par_chunks(k))
            .zip(&scale)
            .for_each(|((dst, src), &f)| {
                for (tap, dst) in dst.chunks_exact_mut(c).enumerate() {
                    for (ch, v) in dst.iter_mut().enumerate() {
                        *v = src[ch * taps + tap] * f;
                    }
                }
            });
        Some(Self {
            weights: wt,
            shift,
            c,
            o,
            kernel: [kh, kw],
            stride: layer.stride,
            dilation: layer.dilation,
            padding,
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.o
    }

    /// The output's NHWC dims for an NHWC input's; `None` where the input's channels differ
    /// from the layer's or the kernel does not fit in the padded input.
    pub fn out_dims(&self, [n, h, w, c]: [usize; 4]) -> Option<[usize; 4]> {
        let [pt, pl, pb, pr] = self.padding;
        let span = |k: usize, d: usize| k.saturating_sub(1) * d + 1;
        let span_h = span(self.kernel[0], self.dilation[0]);
        let span_w = span(self.kernel[1], self.dilation[1]);
        let oh = (h + pt + pb).checked_sub(span_h)? / self.stride[0] + 1;
        let ow = (w + pl + pr).checked_sub(span_w)? / self.stride[1] + 1;
        (c == self.c).then_some([n, oh, ow, self.o])
    }

    /// `relu?(conv(x) + residual?)`; `None` where the shapes do not fit (the input's channels,
    /// a kernel larger than the padded input, a residual not of the output's shape).
    pub fn forward(&self, x: &Map, residual: Option<&Map>, relu: bool) -> Option<Map> {
        let dims = self.out_dims(x.dims)?;
        let [n, oh, ow, o] = dims;
        if residual.is_some_and(|r| r.dims != dims) {
            return None;
        }
        let rows = ConvRows {
            conv: self,
            x,
            out: [oh, ow],
        };
        let mut data = vec![0f32; n * oh * ow * o];
        let arch = pulp::Arch::new();
        let finish = |i0: usize, block: &mut [f32]| {
            arch.dispatch(Epilogue {
                block,
                n: o,
                bias: Some(&self.shift),
                residual: residual.map(|r| &r.data[i0 * o..]),
                activation: if relu {
                    Activation::Relu
                } else {
                    Activation::Identity
                },
            })
        };
        // The row source's shape and `data`'s length follow from `dims`: no shape error.
        let k = self.weights.len() / o;
        let w = MatRef::from_row_major_slice(&self.weights, o, k).transpose();
        gemm_rows(&rows, w, &mut data, finish).ok()?;
        Some(Map { data, dims })
    }
}

/// The rows of a convolution's implicit im2col matrix, gathered from an NHWC input.
struct ConvRows<'a> {
    conv: &'a HostConv,
    x: &'a Map,
    out: [usize; 2],
}

impl RowSource for ConvRows<'_> {
    fn shape(&self) -> [usize; 2] {
        let [kh, kw] = self.conv.kernel;
        [
            self.x.dims[0] * self.out[0] * self.out[1],
            kh * kw * self.conv.c,
        ]
    }

    fn fill_row(&self, i: usize, out: &mut [f32]) {
        let [_, h, w, c] = self.x.dims;
        let [oh, ow] = self.out;
        let (image, oy, ox) = (i / (oh * ow), i / ow % oh, i % ow);
        let [_, kw] = self.conv.kernel;
        let ([sh, sw], [dh, dw]) = (self.conv.stride, self.conv.dilation);
        let [pt, pl, _, _] = self.conv.padding;
        // One piece per kernel row `ki`: the `kw·C` values it sees.
        for (ki, piece) in out.chunks_exact_mut(kw * c).enumerate() {
            let iy = (oy * sh + ki * dh).checked_sub(pt).filter(|&iy| iy < h);
            let Some(iy) = iy else {
                piece.fill(0.0);
                continue;
            };
            let line = &self.x.data[((image * h + iy) * w) * c..][..w * c];
            if dw == 1 {
                // The taps' columns are adjacent: the in-bounds ones, `first..last`, are one
                // slice of `line` (tap `kj` reads column `ox·sw + kj − pl`).
                let first = pl.saturating_sub(ox * sw).min(kw);
                let last = (w + pl).saturating_sub(ox * sw).clamp(first, kw);
                piece[..first * c].fill(0.0);
                piece[last * c..].fill(0.0);
                if last > first {
                    let start = (ox * sw + first).saturating_sub(pl) * c;
                    piece[first * c..last * c]
                        .copy_from_slice(&line[start..][..(last - first) * c]);
                }
            } else {
                // Input column of tap `kj` is `ox·sw + kj·dw − pl`: inside `0..w` or padding.
                let col = |kj: usize| (ox * sw + kj * dw).checked_sub(pl).filter(|&ix| ix < w);
                for (q, v) in piece.iter_mut().enumerate() {
                    let (kj, ch) = (q / c, q % c);
                    *v = col(kj).map_or(0.0, |ix| line[ix * c + ch]);
                }
            }
        }
    }
}

/// Max pooling over NHWC with `-∞` padding (PyTorch's `MaxPool2d`); NaN propagates.
pub(crate) fn max_pool(
    x: &Map,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Option<Map> {
    let [n, h, w, c] = x.dims;
    let ([kh, kw], [sh, sw], [ph, pw]) = (kernel, stride, padding);
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || kh > h + 2 * ph || kw > w + 2 * pw {
        return None;
    }
    let (oh, ow) = ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1);
    let mut data = vec![f32::NEG_INFINITY; n * oh * ow * c];
    data.par_chunks_mut((ow * c).max(1))
        .enumerate()
        .for_each(|(r, out)| {
            let (image, oy) = (r / oh, r % oh);
            for ky in 0..kh {
                let Some(iy) = (oy * sh + ky).checked_sub(ph).filter(|&iy| iy < h) else {
                    continue;
                };
                let line = &x.data[(image * h + iy) * w * c..][..w * c];
                for (ox, px) in out.chunks_exact_mut(c).enumerate() {
                    for kx in 0..kw {
                        let Some(ix) = (ox * sw + kx).checked_sub(pw).filter(|&ix| ix < w) else {
                            continue;
                        };
                        for (m, &v) in px.iter_mut().zip(&line[ix * c..][..c]) {
                            // A select, not a conditional store: the loop vectorises.
                            *m = if v > *m || v.is_nan() { v } else { *m };
                        }
                    }
                }
            }
        });
    Some(Map {
        data,
        dims: [n, oh, ow, c],
    })
}
