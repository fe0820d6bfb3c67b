//! OML's `ViTExtractor` for the DINO v1 architectures (`vits8`, `vits16`, `vitb8`, `vitb16`) and
//! the DINOv2 ones (`vits14`, `vitb14`, `vitl14`, and with registers `vits14_reg`, `vitb14_reg`,
//! `vitl14_reg`).
//!
//! The network is DINO's `VisionTransformer` with its field names (`cls_token`, `pos_embed`,
//! `patch_embed.proj`, `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`):
//! the attention keeps the fused `qkv` Linear so checkpoint keys map 1:1. DINOv2 adds a
//! LayerScale after the attention and after the MLP (`blocks.N.ls1.gamma`, `ls2.gamma`) and a
//! `mask_token` (kept for the checkpoint, unused by the forward); its `_reg` archs add
//! `register_tokens`, inserted after the CLS token once the position embeddings are added. The
//! output is the CLS token after the final LayerNorm. Other input sizes get the position
//! embeddings interpolated as each family does it ([`PosInterpolation`]).

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};
use oml_interfaces::{Extractor, ModelError, Pretrained, PretrainedEntry};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{LoadOptions, LoadReport, TorchLayout};
use crate::epilogue::Activation;
use crate::nhwc::{HostConv, Map};
use crate::ops::{self, HostLayerNorm, HostLinear, Kernel};
use oml_interfaces::cpu::host_f32;
use rayon::prelude::*;

/// Architectures OML's `ViTExtractor` accepts (`arch`): DINO v1 and DINOv2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitArch {
    /// ViT-S/8: dim 384, depth 12, 6 heads, patch 8.
    Vits8,
    /// ViT-S/16: dim 384, depth 12, 6 heads, patch 16.
    Vits16,
    /// ViT-B/8: dim 768, depth 12, 12 heads, patch 8.
    Vitb8,
    /// ViT-B/16: dim 768, depth 12, 12 heads, patch 16.
    Vitb16,
    /// DINOv2 ViT-S/14: dim 384, depth 12, 6 heads, patch 14, trained at 518, LayerScale.
    Vits14,
    /// DINOv2 ViT-B/14: dim 768, depth 12, 12 heads, patch 14, trained at 518, LayerScale.
    Vitb14,
    /// DINOv2 ViT-L/14: dim 1024, depth 24, 16 heads, patch 14, trained at 518, LayerScale.
    Vitl14,
    /// [`Vits14`](Self::Vits14) with 4 register tokens and antialiased interpolation.
    Vits14Reg,
    /// [`Vitb14`](Self::Vitb14) with 4 register tokens and antialiased interpolation.
    Vitb14Reg,
    /// [`Vitl14`](Self::Vitl14) with 4 register tokens and antialiased interpolation.
    Vitl14Reg,
}

impl VitArch {
    /// All variants.
    pub const ALL: [VitArch; 10] = [
        Self::Vits8,
        Self::Vits16,
        Self::Vitb8,
        Self::Vitb16,
        Self::Vits14,
        Self::Vitb14,
        Self::Vitl14,
        Self::Vits14Reg,
        Self::Vitb14Reg,
        Self::Vitl14Reg,
    ];

    /// OML's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vits8 => "vits8",
            Self::Vits16 => "vits16",
            Self::Vitb8 => "vitb8",
            Self::Vitb16 => "vitb16",
            Self::Vits14 => "vits14",
            Self::Vitb14 => "vitb14",
            Self::Vitl14 => "vitl14",
            Self::Vits14Reg => "vits14_reg",
            Self::Vitb14Reg => "vitb14_reg",
            Self::Vitl14Reg => "vitl14_reg",
        }
    }

    /// The network's hyper-parameters (DINO's `vit_small` / `vit_base`; DINOv2's hubconf:
    /// `img_size` 518, patch 14, LayerScale, a mask token, and for the `_reg` archs 4 registers
    /// and antialiased interpolation).
    pub fn config(self) -> VitConfig {
        use VitArch::*;
        let (embed_dim, depth, num_heads) = match self {
            Vits8 | Vits16 | Vits14 | Vits14Reg => (384, 12, 6),
            Vitb8 | Vitb16 | Vitb14 | Vitb14Reg => (768, 12, 12),
            Vitl14 | Vitl14Reg => (1024, 24, 16),
        };
        let patch_size = match self {
            Vits8 | Vitb8 => 8,
            Vits16 | Vitb16 => 16,
            Vits14 | Vitb14 | Vitl14 | Vits14Reg | Vitb14Reg | Vitl14Reg => 14,
        };
        let dinov2 = patch_size == 14;
        let registers = matches!(self, Vits14Reg | Vitb14Reg | Vitl14Reg);
        VitConfig {
            img_size: if dinov2 { 518 } else { 224 },
            patch_size,
            embed_dim,
            depth,
            num_heads,
            layer_scale: dinov2.then_some(1.0),
            mask_token: dinov2,
            register_tokens: if registers { 4 } else { 0 },
            pos_interpolation: if registers {
                PosInterpolation::Antialiased
            } else {
                PosInterpolation::ScaleFactor
            },
            ..VitConfig::default()
        }
    }
}

impl std::fmt::Display for VitArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Hyper-parameters of DINO's `VisionTransformer` (qkv bias, GELU, pre-norm blocks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Training image size; `pos_embed` has `(img_size / patch_size)² + 1` rows. Default 224.
    pub img_size: usize,
    /// Patch size (8, 14 or 16).
    pub patch_size: usize,
    /// Input channels. Default 3.
    pub in_chans: usize,
    /// Token width.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads (`embed_dim` must be divisible by it).
    pub num_heads: usize,
    /// MLP hidden width / `embed_dim`. Default 4.
    pub mlp_ratio: usize,
    /// LayerNorm epsilon. Default 1e-6 (DINO).
    pub layer_norm_eps: f64,
    /// DINOv2's LayerScale after the attention and the MLP, with this initial value; `None`
    /// (DINO v1) has none.
    #[serde(default)]
    pub layer_scale: Option<f64>,
    /// DINOv2's `mask_token` `[1, dim]` (in its checkpoints; the forward does not use it).
    #[serde(default)]
    pub mask_token: bool,
    /// DINOv2's register tokens (`register_tokens` `[1, R, dim]`). Default 0.
    #[serde(default)]
    pub register_tokens: usize,
    /// How position embeddings reach other input sizes. Default: DINO's scale factor.
    #[serde(default)]
    pub pos_interpolation: PosInterpolation,
    /// A class token leads the tokens and is the output (DINO, CLIP); without one (Unicom) the
    /// output is every token after the final norm, flattened. Default `true`.
    #[serde(default = "yes")]
    pub class_token: bool,
    /// CLIP's `ln_pre`: a LayerNorm over the tokens before the first block. Default `false`.
    #[serde(default)]
    pub pre_norm: bool,
    /// Bias in the `qkv` projection. Default `true` (Unicom has none).
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    /// Bias in the patch embedding's convolution. Default `true` (CLIP's `conv1` has none).
    #[serde(default = "yes")]
    pub patch_bias: bool,
    /// The MLP's activation. Default GELU.
    #[serde(default)]
    pub activation: MlpActivation,
}

fn yes() -> bool {
    true
}

/// The activation between a block's two MLP layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlpActivation {
    /// Exact (erf) GELU: DINO, DINOv2.
    #[default]
    Gelu,
    /// `x·σ(1.702·x)`: CLIP.
    QuickGelu,
    /// `min(max(0, x), 6)`: Unicom.
    Relu6,
}

impl MlpActivation {
    fn apply(self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Self::Gelu => gelu(x),
            Self::QuickGelu => x.clone() * sigmoid(x * 1.702),
            Self::Relu6 => x.clamp(0.0, 6.0),
        }
    }

    fn host(self) -> Activation {
        match self {
            Self::Gelu => Activation::Gelu,
            Self::QuickGelu => Activation::QuickGelu,
            Self::Relu6 => Activation::Relu6,
        }
    }
}

/// How the trained grid of position embeddings is resized to another input's patch grid
/// (bicubic in both, the class entry untouched; the grid goes to `(H/p, W/p)`, rows from `H`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosInterpolation {
    /// DINO's and plain DINOv2's: PyTorch `interpolate(scale_factor=((H/p + 0.1)/grid, …))`, so
    /// sources are sampled with that scale rather than the size ratio (Keys `a = −0.75`, taps
    /// clamped at the border).
    #[default]
    ScaleFactor,
    /// DINOv2 `_reg` archs': `interpolate(size=(H/p, W/p), antialias=True)`, PyTorch's
    /// antialiased bicubic (a PIL-style filter, `a = −0.5`, widened when shrinking).
    Antialiased,
}

impl Default for VitConfig {
    /// ViT-S/16 at 224.
    fn default() -> Self {
        Self {
            img_size: 224,
            patch_size: 16,
            in_chans: 3,
            embed_dim: 384,
            depth: 12,
            num_heads: 6,
            mlp_ratio: 4,
            layer_norm_eps: 1e-6,
            layer_scale: None,
            mask_token: false,
            register_tokens: 0,
            pos_interpolation: PosInterpolation::ScaleFactor,
            class_token: true,
            pre_norm: false,
            qkv_bias: true,
            patch_bias: true,
            activation: MlpActivation::Gelu,
        }
    }
}

impl VitConfig {
    fn check(&self) -> Result<(), ModelError> {
        let bad = |name: &'static str, value: usize, reason: &str| {
            Err(ModelError::InvalidArgument {
                name,
                value: value.to_string(),
                reason: reason.into(),
            })
        };
        if self.patch_size == 0 || self.img_size < self.patch_size {
            return bad(
                "patch_size",
                self.patch_size,
                "must be > 0 and at most img_size",
            );
        }
        if self.num_heads == 0 || !self.embed_dim.is_multiple_of(self.num_heads) {
            return bad("num_heads", self.num_heads, "must divide embed_dim");
        }
        if self.depth == 0 || self.in_chans == 0 || self.mlp_ratio == 0 {
            return bad(
                "depth",
                self.depth,
                "depth, in_chans and mlp_ratio must be > 0",
            );
        }
        Ok(())
    }

    /// Builds the network with DINO's initialisation (truncated normal, std 0.02).
    pub fn init(&self, device: &Device) -> Result<VisionTransformer, ModelError> {
        self.check()?;
        let d = self.embed_dim;
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let linear = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_initializer(init.clone())
                .init(device)
        };
        let qkv = || {
            LinearConfig::new(d, 3 * d)
                .with_bias(self.qkv_bias)
                .with_initializer(init.clone())
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let grid = self.img_size / self.patch_size;
        let lead = usize::from(self.class_token);
        let blocks = (0..self.depth)
            .map(|_| VitBlock {
                norm1: norm(),
                attn: Attention {
                    qkv: qkv(),
                    proj: linear(d, d),
                    num_heads: self.num_heads,
                },
                norm2: norm(),
                mlp: Mlp {
                    fc1: linear(d, d * self.mlp_ratio),
                    fc2: linear(d * self.mlp_ratio, d),
                    activation: self.activation,
                },
                ls1: self.layer_scale.map(|v| LayerScale::new(d, v, device)),
                ls2: self.layer_scale.map(|v| LayerScale::new(d, v, device)),
            })
            .collect();
        Ok(VisionTransformer {
            cls_token: self.class_token.then(|| init.init([1, 1, d], device)),
            pos_embed: init.init([1, grid * grid + lead, d], device),
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([self.in_chans, d], [self.patch_size, self.patch_size])
                    .with_stride([self.patch_size, self.patch_size])
                    .with_bias(self.patch_bias)
                    .init(device),
                patch_size: self.patch_size,
            },
            blocks,
            ln_pre: self.pre_norm.then(norm),
            norm: norm(),
            mask_token: self
                .mask_token
                .then(|| Initializer::Zeros.init([1, d], device)),
            register_tokens: (self.register_tokens > 0)
                .then(|| init.init([1, self.register_tokens, d], device)),
            pos_interpolation: self.pos_interpolation,
        })
    }
}

/// DINOv2's `LayerScale`: a learnt per-channel factor on a residual branch.
#[derive(Module, Debug)]
pub struct LayerScale {
    /// `[dim]`.
    pub gamma: Param<Tensor<1>>,
}

impl LayerScale {
    fn new(dim: usize, value: f64, device: &Device) -> Self {
        Self {
            gamma: Initializer::Constant { value }.init([dim], device),
        }
    }

    /// # Shapes
    /// `[B, N, C] -> [B, N, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let dim = self.gamma.dims()[0];
        x * self.gamma.val().reshape([1, 1, dim])
    }
}

/// DINO's `PatchEmbed`: a conv with kernel = stride = patch size.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// The projection.
    pub proj: Conv2d,
    /// Patch size.
    pub patch_size: usize,
}

/// Multi-head self-attention with a fused `qkv` projection (DINO's `Attention`).
#[derive(Module, Debug)]
pub struct Attention {
    /// `[dim] -> [3·dim]`, laid out as `(3, heads, head_dim)`.
    pub qkv: Linear,
    /// Output projection.
    pub proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
}

impl Attention {
    /// # Shapes
    /// `[B, N, C] -> [B, N, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.proj.forward(ops::multi_head_attention(
            self.qkv.forward(x),
            self.num_heads,
        ))
    }
}

/// DINO's `Mlp`: `fc1 → activation → fc2`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Expansion.
    pub fc1: Linear,
    /// Projection back.
    pub fc2: Linear,
    /// Between the two.
    #[module(skip)]
    pub activation: MlpActivation,
}

impl Mlp {
    /// # Shapes
    /// `[B, N, C] -> [B, N, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(self.activation.apply(self.fc1.forward(x)))
    }
}

/// A pre-norm transformer block.
#[derive(Module, Debug)]
pub struct VitBlock {
    /// Norm before attention.
    pub norm1: LayerNorm,
    /// Attention.
    pub attn: Attention,
    /// Norm before the MLP.
    pub norm2: LayerNorm,
    /// MLP.
    pub mlp: Mlp,
    /// DINOv2's LayerScale of the attention branch.
    pub ls1: Option<LayerScale>,
    /// DINOv2's LayerScale of the MLP branch.
    pub ls2: Option<LayerScale>,
}

impl VitBlock {
    /// # Shapes
    /// `[B, N, C] -> [B, N, C]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let scale = |ls: &Option<LayerScale>, y: Tensor<3>| match ls {
            Some(ls) => ls.forward(y),
            None => y,
        };
        let x = x.clone() + scale(&self.ls1, self.attn.forward(self.norm1.forward(x)));
        x.clone() + scale(&self.ls2, self.mlp.forward(self.norm2.forward(x)))
    }
}

/// DINO's `VisionTransformer` without a head (`num_classes = 0`), which also carries CLIP's
/// visual tower (`ln_pre`, QuickGELU) and Unicom's (no class token, ReLU6).
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// `[1, 1, dim]` (none in Unicom).
    pub cls_token: Option<Param<Tensor<3>>>,
    /// `[1, grid² + 1, dim]` (`[1, grid², dim]` without a class token).
    pub pos_embed: Param<Tensor<3>>,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// CLIP's LayerNorm before the blocks.
    pub ln_pre: Option<LayerNorm>,
    /// Transformer blocks.
    pub blocks: Vec<VitBlock>,
    /// Final LayerNorm.
    pub norm: LayerNorm,
    /// DINOv2's `mask_token` `[1, dim]`, kept for its checkpoints (unused by the forward).
    pub mask_token: Option<Param<Tensor<2>>>,
    /// DINOv2's registers `[1, R, dim]` (`_reg` archs).
    pub register_tokens: Option<Param<Tensor<3>>>,
    /// How position embeddings reach other input sizes.
    #[module(skip)]
    pub pos_interpolation: PosInterpolation,
}

impl VisionTransformer {
    /// Token width (`len(norm.bias)`).
    pub fn embed_dim(&self) -> usize {
        self.pos_embed.dims()[2]
    }

    /// Tokens before the patches that have position embeddings: 1 with a class token, else 0.
    fn lead(&self) -> usize {
        usize::from(self.cls_token.is_some())
    }

    /// DINO's `interpolate_pos_encoding` for an `h × w` image and `npatch` patch tokens (see
    /// [`PosInterpolation`]); the trained embeddings when the input is square with as many
    /// patches.
    ///
    /// # Shapes
    /// `-> [1, npatch + 1, dim]`.
    pub fn interpolate_pos_encoding(&self, npatch: usize, h: usize, w: usize) -> Tensor<3> {
        let pos = self.pos_embed.val();
        let [_, rows, dim] = pos.dims();
        let lead = self.lead();
        let n = rows - lead;
        if npatch == n && w == h {
            return pos;
        }
        let grid = (n as f64).sqrt() as usize;
        let p = self.patch_embed.patch_size;
        let patch_pos = pos
            .clone()
            .narrow(1, lead, n)
            .reshape([grid, grid, dim])
            .permute([2, 0, 1])
            .unsqueeze_dim::<4>(0);
        let resized = match self.pos_interpolation {
            PosInterpolation::ScaleFactor => {
                // DINO adds 0.1 "to avoid floating point error" and passes a scale factor, so
                // the sampling step is grid / (h0 + 0.1), not grid / h0.
                let (h0, w0) = ((h / p) as f64 + 0.1, (w / p) as f64 + 0.1);
                let (sh, sw) = (h0 / grid as f64, w0 / grid as f64);
                let out = [
                    (grid as f64 * sh).floor() as usize,
                    (grid as f64 * sw).floor() as usize,
                ];
                ops::interpolate_to(patch_pos, out, [1.0 / sh, 1.0 / sw], Kernel::Bicubic)
            }
            PosInterpolation::Antialiased => {
                let out = [h / p, w / p];
                let steps = out.map(|o| grid as f64 / o as f64);
                ops::interpolate_to(patch_pos, out, steps, Kernel::AntialiasedBicubic)
            }
        };
        let [_, _, oh, ow] = resized.dims();
        let patch_pos = resized
            .squeeze_dim::<3>(0)
            .permute([1, 2, 0])
            .reshape([1, oh * ow, dim]);
        if lead == 0 {
            return patch_pos;
        }
        Tensor::cat(vec![pos.narrow(1, 0, lead), patch_pos], 1)
    }

    /// Patch tokens with the CLS token and position embeddings, then the registers (which
    /// get none) after the CLS token, then CLIP's `ln_pre`.
    ///
    /// # Shapes
    /// `[B, C, H, W] -> [B, 1 + R + (H/p)(W/p), dim]` (no 1 without a class token).
    pub fn prepare_tokens(&self, x: Tensor<4>) -> Tensor<3> {
        let [b, _, h, w] = x.dims();
        let patches = ops::conv2d(&self.patch_embed.proj, x); // [B, dim, H/p, W/p]
        let [_, dim, gh, gw] = patches.dims();
        let patches = patches.reshape([b, dim, gh * gw]).swap_dims(1, 2);
        let pos = self.interpolate_pos_encoding(gh * gw, h, w);
        let mut parts = Vec::with_capacity(3);
        let patches = match &self.cls_token {
            Some(cls) => {
                let tokens = Tensor::cat(vec![cls.val().expand([b, 1, dim]), patches], 1) + pos;
                parts.push(tokens.clone().narrow(1, 0, 1));
                tokens.narrow(1, 1, gh * gw)
            }
            None => patches + pos,
        };
        if let Some(registers) = &self.register_tokens {
            let r = registers.dims()[1];
            parts.push(registers.val().expand([b, r, dim]));
        }
        parts.push(patches);
        let tokens = Tensor::cat(parts, 1);
        match &self.ln_pre {
            Some(norm) => norm.forward(tokens),
            None => tokens,
        }
    }

    /// All tokens after the final norm.
    ///
    /// # Shapes
    /// `[B, C, H, W] -> [B, 1 + R + N, dim]`.
    pub fn forward_tokens(&self, x: Tensor<4>) -> Tensor<3> {
        let mut x = self.prepare_tokens(x);
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.norm.forward(x)
    }

    /// The CLS token after the final norm (DINO's `forward`); without a class token, every
    /// token after it, flattened token-major (index `t·dim + c`, as Unicom's head reads them).
    ///
    /// # Shapes
    /// `[B, C, H, W] -> [B, dim]` (`[B, N·dim]` without a class token).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let tokens = self.forward_tokens(x);
        let [b, n, dim] = tokens.dims();
        match self.cls_token {
            Some(_) => tokens.narrow(1, 0, 1).reshape([b, dim]),
            None => tokens.reshape([b, n * dim]),
        }
    }

    /// The host path's network ([`HostVit`]) with LayerNorms of `epsilon`, on a CPU backend
    /// at inference.
    pub(crate) fn host(&self, epsilon: f64) -> Option<HostVit> {
        ops::host_inference(&self.pos_embed.device())
            .then(|| HostVit::new(self, epsilon))
            .flatten()
    }

    /// [`forward`](Self::forward) through `host` when given and the input fits it, else
    /// through Burn's layers.
    pub(crate) fn run(&self, host: Option<&HostVit>, x: Tensor<4>) -> Tensor<2> {
        match host {
            Some(host) => host.forward(self, x).unwrap_or_else(|x| self.forward(*x)),
            None => self.forward(x),
        }
    }
}

/// A ViT prepared for inference on the host once (every weight read off the device, the patch
/// embedding laid out as an NHWC convolution): tokens stay host rows `[B·N, C]` from the patch
/// embedding to the final norm, each linear layer one host GEMM with its bias, residual and
/// activation applied as its rows are finished ([`HostLinear`]).
///
/// Where only the CLS token leaves the network, the last block runs its attention for the CLS
/// query alone and its projection and MLP on the CLS rows alone (the keys and values still
/// come from every token): the same values as the whole block, a twelfth of a ViT-S's work
/// less.
pub(crate) struct HostVit {
    patch: HostConv,
    /// Token width `C`.
    dim: usize,
    /// `[C]`, empty without a class token.
    cls: Vec<f32>,
    /// `[lead + grid², C]`: the position embeddings at the training size.
    pos: Vec<f32>,
    /// `[R, C]`: DINOv2's registers (empty without).
    registers: Vec<f32>,
    ln_pre: Option<HostLayerNorm>,
    blocks: Vec<HostBlock>,
    norm: HostLayerNorm,
}

/// One transformer block on the host.
struct HostBlock {
    norm1: HostLayerNorm,
    qkv: HostLinear,
    heads: usize,
    proj: HostLinear,
    norm2: HostLayerNorm,
    fc1: HostLinear,
    activation: Activation,
    fc2: HostLinear,
}

impl HostVit {
    /// `net` with its LayerNorms' `epsilon`; `None` (then Burn's layers run) where a layer is
    /// outside what the host path covers.
    pub fn new(net: &VisionTransformer, epsilon: f64) -> Option<Self> {
        let norm = |n: &LayerNorm| HostLayerNorm::new(n, epsilon);
        let blocks = net
            .blocks
            .iter()
            .map(|b| {
                // DINOv2's LayerScale is folded into the projection it follows.
                let scaled = |layer: &Linear, ls: &Option<LayerScale>| {
                    let host = HostLinear::new(layer)?;
                    match ls {
                        Some(ls) => host.scaled(&host_f32(ls.gamma.val()).ok()?),
                        None => Some(host),
                    }
                };
                Some(HostBlock {
                    norm1: norm(&b.norm1)?,
                    qkv: HostLinear::new(&b.attn.qkv)?,
                    heads: b.attn.num_heads,
                    proj: scaled(&b.attn.proj, &b.ls1)?,
                    norm2: norm(&b.norm2)?,
                    fc1: HostLinear::new(&b.mlp.fc1)?,
                    activation: b.mlp.activation.host(),
                    fc2: scaled(&b.mlp.fc2, &b.ls2)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let host_of = |p: &Option<Param<Tensor<3>>>| match p {
            Some(p) => host_f32(p.val()).ok(),
            None => Some(Vec::new()),
        };
        let host = Self {
            patch: HostConv::new(&net.patch_embed.proj, None)?,
            dim: net.embed_dim(),
            cls: host_of(&net.cls_token)?,
            pos: host_f32(net.pos_embed.val()).ok()?,
            registers: host_of(&net.register_tokens)?,
            ln_pre: match &net.ln_pre {
                Some(n) => Some(norm(n)?),
                None => None,
            },
            blocks,
            norm: norm(&net.norm)?,
        };
        // The fields are public, so a network can be assembled with widths that do not chain;
        // such a one keeps Burn's layers, and `forward`'s shape checks below then hold.
        host.widths_chain().then_some(host)
    }

    /// Every layer's width agrees with the token width `C`, and there is a last block.
    fn widths_chain(&self) -> bool {
        let dim = self.dim;
        let blocks_chain = self.blocks.iter().all(|b| {
            let hidden = b.fc1.shape()[1];
            b.heads > 0
                && dim.is_multiple_of(b.heads)
                && [b.norm1.width(), b.norm2.width()] == [dim; 2]
                && b.qkv.shape() == [dim, 3 * dim]
                && b.proj.shape() == [dim, dim]
                && b.fc1.shape()[0] == dim
                && b.fc2.shape() == [hidden, dim]
        });
        dim > 0
            && !self.blocks.is_empty()
            && blocks_chain
            && self.patch.out_channels() == dim
            && self.norm.width() == dim
            && self.ln_pre.as_ref().is_none_or(|n| n.width() == dim)
            && [0, dim].contains(&self.cls.len())
            && self.pos.len().is_multiple_of(dim)
            && self.registers.len().is_multiple_of(dim)
    }

    /// [`VisionTransformer::forward`] of `net` (the network this was prepared from, for the
    /// position embeddings at other sizes); `x` comes back where it does not fit the layers.
    ///
    /// # Shapes
    /// `[B, C, H, W] -> [B, dim]` (`[B, N·dim]` without a class token).
    pub fn forward(
        &self,
        net: &VisionTransformer,
        x: Tensor<4>,
    ) -> Result<Tensor<2>, Box<Tensor<4>>> {
        let [b, c, h, w] = x.dims();
        let dim = self.dim;
        let device = x.device();
        let Some([_, gh, gw, _]) = self.patch.out_dims([b, h, w, c]) else {
            return Err(Box::new(x));
        };
        let rows = self.cls.len() / dim + gh * gw;
        let interpolated;
        let pos = if self.pos.len() == rows * dim && h == w {
            &self.pos
        } else {
            match host_f32(net.interpolate_pos_encoding(gh * gw, h, w)) {
                Ok(p) if p.len() == rows * dim => {
                    interpolated = p;
                    &interpolated
                }
                _ => return Err(Box::new(x)),
            }
        };
        let out = ops::with_host(x, None::<Tensor<1>>, |x, _| {
            let patches = self
                .patch
                .forward(&Map::from_nchw(x, [b, c, h, w]), None, false)?;
            self.output(&patches.data, pos, [b, gh * gw])
        })
        .map_err(|back| Box::new(back.0))?;
        let Some(out) = out else {
            unreachable!(
                "the input's shape was checked against the patch embedding, the widths in `new`"
            )
        };
        let width = out.len().checked_div(b).unwrap_or(dim);
        Ok(Tensor::from_data(TensorData::new(out, [b, width]), &device))
    }

    /// The output rows after the final norm (the CLS rows `[B, C]`, or every token `[B, N·C]`
    /// without a class token), from the patch embeddings `[B, P, C]` and the position
    /// embeddings `[lead + P, C]`: each image's tokens are the CLS token, the registers (no
    /// position embedding) and the patches.
    fn output(&self, patches: &[f32], pos: &[f32], [b, npatch]: [usize; 2]) -> Option<Vec<f32>> {
        let dim = self.dim;
        let lead = self.cls.len();
        let n = (lead + self.registers.len()) / dim + npatch;
        let mut x = vec![0f32; b * n * dim];
        x.par_chunks_mut(n * dim)
            .zip(patches.par_chunks(npatch * dim))
            .for_each(|(image, patches)| {
                let (cls, rest) = image.split_at_mut(lead);
                for ((o, t), p) in cls.iter_mut().zip(&self.cls).zip(pos) {
                    *o = t + p;
                }
                let (registers, rest) = rest.split_at_mut(self.registers.len());
                registers.copy_from_slice(&self.registers);
                for ((o, t), p) in rest.iter_mut().zip(patches).zip(&pos[lead..]) {
                    *o = t + p;
                }
            });
        let mut scratch = Scratch::default();
        if let Some(ln_pre) = &self.ln_pre {
            let normed = prefix(&mut scratch.normed, x.len());
            ln_pre.forward_into(&x, normed)?;
            x.copy_from_slice(normed);
        }
        let (last, blocks) = self.blocks.split_last()?;
        for block in blocks {
            block.forward(&mut x, &mut scratch, [b, n], n)?;
        }
        let queries = if lead > 0 { 1 } else { n };
        last.forward(&mut x, &mut scratch, [b, n], queries)?;
        self.norm.forward(&x)
    }
}

/// Buffers that every block of one pass writes into, allocated (and zeroed) once per pass
/// rather than once per layer.
#[derive(Default)]
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    mid: Vec<f32>,
    hidden: Vec<f32>,
}

/// The first `len` values of `buffer`, grown (with zeros) where it is shorter.
fn prefix(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

impl HostBlock {
    /// The block over tokens `x` `[B·N, C]`, for the first `queries` tokens of each image:
    /// `x` becomes `[B·queries, C]`.
    fn forward(
        &self,
        x: &mut Vec<f32>,
        scratch: &mut Scratch,
        [b, n]: [usize; 2],
        queries: usize,
    ) -> Option<()> {
        let dim = self.proj.shape()[1];
        let Scratch {
            normed,
            qkv,
            mid,
            hidden,
        } = scratch;
        let normed_all = prefix(normed, x.len());
        self.norm1.forward_into(x, normed_all)?;
        let qkv = prefix(qkv, x.len() / dim * self.qkv.shape()[1]);
        self.qkv
            .forward_into(normed_all, None, Activation::Identity, qkv)?;
        let attended = ops::host_attention(qkv, [b, n, self.heads, dim / self.heads], queries)?;
        if queries < n {
            // Only these tokens' residual stream goes on.
            *x = x
                .chunks_exact(n * dim)
                .flat_map(|image| &image[..queries * dim])
                .copied()
                .collect();
        }
        let mid = prefix(mid, attended.len());
        self.proj
            .forward_into(&attended, Some(x), Activation::Identity, mid)?;
        let normed = prefix(normed, mid.len());
        self.norm2.forward_into(mid, normed)?;
        let hidden = prefix(hidden, mid.len() / dim * self.fc1.shape()[1]);
        self.fc1
            .forward_into(normed, None, self.activation, hidden)?;
        self.fc2
            .forward_into(hidden, Some(mid), Activation::Identity, x)
    }
}

/// Arguments of OML's `ViTExtractor` (`extractor: {name: vit, args: …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViTExtractorConfig {
    /// Architecture.
    pub arch: VitArch,
    /// L2-normalise the output (norm detached). Default `false`.
    #[serde(default)]
    pub normalise_features: bool,
    /// Average the outputs at scales `1, 1/√2, 1/2` (bilinear resize). Default `false`.
    #[serde(default)]
    pub use_multi_scale: bool,
    /// Weights: a checkpoint path or a pretrained key (read by [`build`](Self::build)).
    #[serde(default)]
    pub weights: Option<String>,
    /// Network hyper-parameters overriding `arch`'s (not an OML argument: lets other DINO-layout
    /// sizes be built, e.g. a small test network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<VitConfig>,
}

impl ViTExtractorConfig {
    /// `arch` without normalisation or multi-scale.
    pub fn new(arch: VitArch) -> Self {
        Self {
            arch,
            normalise_features: false,
            use_multi_scale: false,
            weights: None,
            custom: None,
        }
    }

    /// Sets `normalise_features`.
    pub fn with_normalise_features(mut self, normalise: bool) -> Self {
        self.normalise_features = normalise;
        self
    }

    /// Sets `use_multi_scale`.
    pub fn with_multi_scale(mut self, multi_scale: bool) -> Self {
        self.use_multi_scale = multi_scale;
        self
    }

    /// Sets `weights` (a path or a pretrained key).
    pub fn with_weights(mut self, weights: impl Into<String>) -> Self {
        self.weights = Some(weights.into());
        self
    }

    /// Overrides the network size (see [`ViTExtractorConfig::custom`]).
    pub fn with_custom(mut self, network: VitConfig) -> Self {
        self.custom = Some(network);
        self
    }

    /// The network hyper-parameters in effect.
    pub fn network(&self) -> VitConfig {
        self.custom.unwrap_or_else(|| self.arch.config())
    }

    /// Builds the extractor with random weights (`weights` is not read).
    pub fn init(&self, device: &Device) -> Result<ViTExtractor, ModelError> {
        Ok(ViTExtractor {
            model: self.network().init(device)?,
            config: self.clone(),
        })
    }
}

/// OML's `ViTExtractor` (DINO v1).
///
/// ```
/// use burn::prelude::*;
/// use oml_interfaces::Extractor;
/// use oml_models::{VitArch, VitConfig, ViTExtractorConfig};
///
/// let device = oml_interfaces::device::select_device(None)?;
/// let tiny = VitConfig { img_size: 32, embed_dim: 24, depth: 1, num_heads: 2, ..VitConfig::default() };
/// let vit = ViTExtractorConfig::new(VitArch::Vits16).with_custom(tiny).init(&device)?;
/// // Any size divisible by the patch works (position embeddings are interpolated).
/// let images = Tensor::<4>::zeros([2, 3, 48, 32], &device);
/// assert_eq!(vit.extract(images).dims(), [2, 24]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Module, Debug)]
pub struct ViTExtractor {
    /// DINO's network (OML's `self.model`).
    pub model: VisionTransformer,
    /// The arguments it was built from.
    #[module(skip)]
    pub config: ViTExtractorConfig,
}

// `save` and `load`, which store an `ExtractorConfig`, are with the registry in `config.rs`.
impl ViTExtractor {
    /// The host path's network ([`HostVit`]), on a CPU backend at inference.
    fn host(&self) -> Option<HostVit> {
        self.model.host(self.config.network().layer_norm_eps)
    }

    /// OML's `forward`: the network at one scale or OML's `_multi_scale` (the mean of the
    /// outputs at scales `1, 1/√2, 1/2`), then the optional normalisation; through `host` when
    /// given, else Burn's layers.
    fn run(&self, host: Option<&HostVit>, images: Tensor<4>) -> Tensor<2> {
        let forward = |x: Tensor<4>| self.model.run(host, x);
        let x = if self.config.use_multi_scale {
            let mut sum = forward(images.clone());
            for s in [1.0 / 2f64.sqrt(), 0.5] {
                sum = sum
                    + forward(ops::interpolate_scale(
                        images.clone(),
                        s,
                        s,
                        Kernel::Bilinear,
                    ));
            }
            sum / 3.0
        } else {
            forward(images)
        };
        if self.config.normalise_features {
            ops::normalise(x)
        } else {
            x
        }
    }
}

impl Extractor for ViTExtractor {
    fn feat_dim(&self) -> usize {
        self.model.embed_dim()
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        self.run(self.host().as_ref(), images)
    }

    /// The host path's weights are read off the device and laid out once, not at every batch.
    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        let host = self.host();
        Box::new(move |images| self.run(host.as_ref(), images))
    }
}

impl TorchLayout for ViTExtractor {
    fn trial_key(&self) -> &'static str {
        "norm.bias"
    }

    fn torch_root(&self) -> &'static str {
        "model."
    }
}

pretrained_extractor!(ViTExtractor, ViTExtractorConfig, crate::zoo::VIT_PRETRAINED);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use oml_interfaces::device::test_device;

    /// The prepared host path (`inference`, `extract`) against Burn's layers
    /// (`VisionTransformer::forward`) on a small random ViT: the native size, interpolated
    /// position embeddings (non-square and larger), one and several images, multi-scale and
    /// normalised outputs; and an empty batch, which Burn's layers refuse.
    #[test]
    fn host_path_matches_burns_layers() {
        let device = test_device();
        let tiny = VitConfig {
            img_size: 32,
            patch_size: 8,
            embed_dim: 24,
            depth: 3,
            num_heads: 2,
            ..VitConfig::default()
        };
        // The third run has DINOv2's registers and antialiased interpolation.
        for (multi_scale, normalise, registers) in
            [(false, false, 0), (true, true, 0), (false, true, 2)]
        {
            let net = VitConfig {
                register_tokens: registers,
                pos_interpolation: if registers > 0 {
                    PosInterpolation::Antialiased
                } else {
                    PosInterpolation::ScaleFactor
                },
                ..tiny
            };
            let vit = ViTExtractorConfig::new(VitArch::Vits16)
                .with_custom(net)
                .with_multi_scale(multi_scale)
                .with_normalise_features(normalise)
                .init(&device)
                .unwrap();
            // LayerNorm parameters away from 1 and 0, so that a swapped gamma/beta shows.
            let mut vit = vit;
            for block in &mut vit.model.blocks {
                block.norm1.gamma = Param::from_tensor(Tensor::random(
                    [24],
                    Distribution::Uniform(0.5, 1.5),
                    &device,
                ));
                block.norm2.beta = Some(Param::from_tensor(Tensor::random(
                    [24],
                    Distribution::Normal(0.0, 0.5),
                    &device,
                )));
            }
            let run = vit.inference();
            for [b, h, w] in [[2, 32, 32], [1, 48, 32], [3, 40, 56]] {
                let x = Tensor::<4>::random([b, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
                let want = if multi_scale {
                    let mut sum = vit.model.forward(x.clone());
                    for s in [1.0 / 2f64.sqrt(), 0.5] {
                        let y = ops::interpolate_scale(x.clone(), s, s, Kernel::Bilinear);
                        sum = sum + vit.model.forward(y);
                    }
                    sum / 3.0
                } else {
                    vit.model.forward(x.clone())
                };
                let want = if normalise {
                    ops::normalise(want)
                } else {
                    want
                };
                let want = host_f32(want).unwrap();
                let got = run(x.clone());
                assert_eq!(got.dims(), [b, 24]);
                let got = host_f32(got).unwrap();
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{b}×{h}×{w} at {i}: {g} vs {w}"
                    );
                }
                assert_eq!(
                    host_f32(vit.extract(x)).unwrap(),
                    got,
                    "extract = inference"
                );
            }
            let empty = run(Tensor::<4>::zeros([0, 3, 32, 32], &device));
            assert_eq!(empty.dims(), [0, 24]);
        }
    }
}
