//! The work applied to each finished block of rows of a host GEMM's output — `+ bias`,
//! `+ residual`, ReLU / GELU, and the attention's row softmax — and the ViT's LayerNorm, as
//! simple loops that the compiler vectorises for the widest vectors the CPU has, through
//! [`pulp`]'s run-time dispatch.

use oml_interfaces::cpu;

/// The activation applied last in an [`Epilogue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// None: the values stay as they are.
    Identity,
    /// PyTorch's exact (erf) GELU.
    Gelu,
    /// `max(0, v)`, with a NaN kept (as through Burn's relu).
    Relu,
    /// CLIP's QuickGELU, `v·σ(1.702·v)`.
    QuickGelu,
    /// `min(max(0, v), 6)` (Unicom's MLP).
    Relu6,
}

/// What follows a product on a finished block of rows of `n` values: `+ bias` (per column),
/// `+ residual` (the block's own rows), then the activation. One simple loop per step, run
/// through [`pulp`] so that the compiler vectorises it for the widest vectors the CPU has (with
/// the SSE2 baseline alone the ViT's epilogues and softmax took 12 % of a batch; 5 % now).
pub(crate) struct Epilogue<'a> {
    pub block: &'a mut [f32],
    pub n: usize,
    pub bias: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
    pub activation: Activation,
}

impl pulp::WithSimd for Epilogue<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (r, o) in self.block.chunks_exact_mut(self.n).enumerate() {
            if let Some(b) = self.bias {
                for (v, b) in o.iter_mut().zip(b) {
                    *v += b;
                }
            }
            if let Some(res) = self.residual {
                for (v, r) in o.iter_mut().zip(&res[r * self.n..(r + 1) * self.n]) {
                    *v += r;
                }
            }
            match self.activation {
                Activation::Identity => {}
                Activation::Gelu => {
                    for v in o.iter_mut() {
                        *v = gelu_erf(*v);
                    }
                }
                Activation::Relu => {
                    for v in o.iter_mut() {
                        // `< 0` rather than `max`: a NaN stays NaN.
                        *v = if *v < 0.0 { 0.0 } else { *v };
                    }
                }
                Activation::QuickGelu => {
                    for v in o.iter_mut() {
                        *v = quick_gelu(*v);
                    }
                }
                Activation::Relu6 => {
                    for v in o.iter_mut() {
                        // `f32::clamp` keeps a NaN, as Burn's clamp does.
                        *v = v.clamp(0.0, 6.0);
                    }
                }
            }
        }
    }
}

/// The row softmax of `scale · block` over rows of `n` scores, through [`pulp`] as
/// [`Epilogue`]. The max and the sum run in 16 lanes, so that they vectorise too (a
/// sequential float reduction does not); `exp_neg` (arguments `scale·(max − v) ≥ 0`) keeps the
/// exponentials vectorised.
pub(crate) struct Softmax<'a> {
    pub block: &'a mut [f32],
    pub n: usize,
    pub scale: f32,
}

impl pulp::WithSimd for Softmax<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for row in self.block.chunks_exact_mut(self.n) {
            let (lanes, tail) = row.as_chunks::<16>();
            let mut m = [f32::NEG_INFINITY; 16];
            for chunk in lanes {
                for (m, &v) in m.iter_mut().zip(chunk) {
                    *m = m.max(v);
                }
            }
            let max = tail
                .iter()
                .chain(&m)
                .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            for v in row.iter_mut() {
                *v = exp_neg(self.scale * (max - *v));
            }
            let inv = 1.0 / cpu::sum(row);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// PyTorch's `LayerNorm` over rows of `gamma.len()` values, `(x − mean)/√(var + ε)·γ + β`
/// with the biased variance, from `x` into `out`, through [`pulp`] as [`Epilogue`]. Two
/// passes (mean, then the squared deviations) as Burn's `layer_norm`.
pub(crate) struct LayerNormRows<'a> {
    pub x: &'a [f32],
    pub out: &'a mut [f32],
    pub gamma: &'a [f32],
    pub beta: Option<&'a [f32]>,
    pub epsilon: f32,
}

impl pulp::WithSimd for LayerNormRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let d = self.gamma.len();
        for (src, dst) in self.x.chunks_exact(d).zip(self.out.chunks_exact_mut(d)) {
            let mean = cpu::sum(src) / d as f32;
            for (o, &v) in dst.iter_mut().zip(src) {
                *o = v - mean;
            }
            let inv = 1.0 / (cpu::squared_norm(dst) / d as f32 + self.epsilon).sqrt();
            for (o, &g) in dst.iter_mut().zip(self.gamma) {
                *o *= inv * g;
            }
            if let Some(beta) = self.beta {
                for (o, &b) in dst.iter_mut().zip(beta) {
                    *o += b;
                }
            }
        }
    }
}

/// PyTorch's exact GELU, `½·x·(1 + erf(x/√2))`, in a form the compiler vectorises (no calls,
/// no branches): erf by Abramowitz & Stegun 7.1.26 (absolute error at most 1.5e-7, so the
/// GELU's error is at most 0.75e-7·|x|), its `exp` by [`exp_neg`].
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    let z = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let erf = (1.0 - poly * exp_neg(z * z)).copysign(x);
    0.5 * x * (1.0 + erf)
}

/// `e^(−y)` for `y ≥ 0` (NaN stays NaN), as plain arithmetic: `−y = k·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, `e^r` by its degree-6 Taylor polynomial (relative error below 2e-7), and
/// `2^k` built in the exponent bits. `y` is clamped at 87, where `e^(−y)` is 1.6e-38.
#[inline(always)]
fn exp_neg(y: f32) -> f32 {
    // Rounds to the nearest integer by adding and removing 1.5·2²³ (no `round` call).
    const SHIFTER: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let v = -y.min(87.0);
    let shifted = v * std::f32::consts::LOG2_E + SHIFTER;
    let k = shifted - SHIFTER;
    let r = (v - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    // `k` sits in the low mantissa bits of `shifted`: integer arithmetic only (no float→int
    // conversion), which keeps the loop vectorisable.
    let k_bits = shifted.to_bits().wrapping_sub(SHIFTER.to_bits());
    p * f32::from_bits(k_bits.wrapping_add(127) << 23)
}

/// `v·σ(1.702·v)` through [`exp_neg`] (whose argument must not be negative): the sigmoid of
/// `t` is `1/(1 + e^(−t))` for `t ≥ 0` and `e^t/(1 + e^t)` below.
#[inline(always)]
fn quick_gelu(v: f32) -> f32 {
    let t = 1.702 * v;
    let e = exp_neg(t.abs());
    let sigmoid = if t >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    v * sigmoid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_gelu_matches_its_definition() {
        for i in -2000..=2000 {
            let v = i as f32 * 0.01;
            let want = (v as f64) / (1.0 + (-1.702 * v as f64).exp());
            let got = quick_gelu(v) as f64;
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{v}: {got} vs {want}"
            );
        }
        assert!(quick_gelu(f32::NAN).is_nan());
    }

    #[test]
    fn vectorised_gelu_matches_the_erf_definition() {
        // Against libm's erf, in f64: a dense grid over the range where
        // activations live, the tails and NaN.
        let exact = |x: f32| {
            let x = x as f64;
            0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
        };
        let grid = (-4000..=4000).map(|i| i as f32 * 2.5e-3);
        for x in grid.chain([-1e4, -30.0, -9.5, 9.5, 30.0, 1e4, 1e-30, -1e-30, 0.0]) {
            let (got, want) = (gelu_erf(x) as f64, exact(x));
            assert!(
                (got - want).abs() <= 2e-7 * (1.0 + x.abs() as f64),
                "gelu({x}) = {got}, want {want}"
            );
        }
        assert!(gelu_erf(f32::NAN).is_nan());
        for y in [0.0f32, 0.3, 1.0, 10.0, 50.0, 86.0] {
            let want = (-(y as f64)).exp();
            assert!(
                ((exp_neg(y) as f64) - want).abs() <= 2e-7 * want,
                "exp(-{y})"
            );
        }
    }
}
