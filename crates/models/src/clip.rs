//! OML's `ViTCLIPExtractor`: the visual tower of OpenAI's CLIP (`vitb16_224`, `vitb32_224`,
//! `vitl14_224`, `vitl14_336`).
//!
//! The tower is a [`VisionTransformer`] in CLIP's configuration: a patch convolution without
//! bias, class and position embeddings, `ln_pre` before the blocks, pre-norm residual attention
//! blocks (`nn.MultiheadAttention`, whose `in_proj` rows are q, k, v: the layout of DINO's fused
//! `qkv`) with QuickGELU MLPs, LayerNorm ε 1e-5, then `ln_post` on the class token and the
//! projection `proj`. CLIP's keys are mapped onto the shared network when a checkpoint is read
//! (`conv1` → `patch_embed.proj`, `transformer.resblocks.N.{ln_1, attn.in_proj_*,
//! attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}` → `blocks.N.{norm1, attn.qkv, attn.proj, norm2,
//! mlp.fc1, mlp.fc2}`, `ln_post` → `norm`), so CLIP gets the host inference path of the ViTs.
//!
//! A full CLIP state dict loads as OML loads it: every key containing `visual` is renamed to
//! what follows `visual.` (replacing a text-tower key of the same name) and keys the tower does
//! not have are dropped. OpenAI's original files are TorchScript archives, which cannot be read
//! here: the error says how to convert one to a state dict.
//!
//! OML asserts that inputs have the arch's size, and so do the `oml` pipelines (through
//! `ExtractorConfig::fixed_input_size`); called directly, the extractor takes other sizes
//! (multiples of the patch) with its position embeddings interpolated bicubically, as a ViT's.

use std::path::Path;

use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;
use oml_interfaces::{Extractor, ModelError, Pretrained, PretrainedEntry};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{KeyAction, LoadOptions, LoadReport, TorchLayout};
use crate::ops;
use crate::vit::{HostVit, MlpActivation, VisionTransformer, VitConfig};

/// CLIP's LayerNorm epsilon (PyTorch's default).
const CLIP_LAYER_NORM_EPS: f64 = 1e-5;

/// Architectures of OML's `ViTCLIPExtractor` (`arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClipArch {
    /// ViT-B/16 at 224: width 768, 12 layers, 12 heads, output 512.
    #[serde(rename = "vitb16_224")]
    Vitb16At224,
    /// ViT-B/32 at 224: width 768, 12 layers, 12 heads, output 512.
    #[serde(rename = "vitb32_224")]
    Vitb32At224,
    /// ViT-L/14 at 224: width 1024, 24 layers, 16 heads, output 768.
    #[serde(rename = "vitl14_224")]
    Vitl14At224,
    /// ViT-L/14 at 336: width 1024, 24 layers, 16 heads, output 768.
    #[serde(rename = "vitl14_336")]
    Vitl14At336,
}

impl ClipArch {
    /// All variants.
    pub const ALL: [ClipArch; 4] = [
        Self::Vitb16At224,
        Self::Vitb32At224,
        Self::Vitl14At224,
        Self::Vitl14At336,
    ];

    /// OML's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vitb16At224 => "vitb16_224",
            Self::Vitb32At224 => "vitb32_224",
            Self::Vitl14At224 => "vitl14_224",
            Self::Vitl14At336 => "vitl14_336",
        }
    }

    /// The tower's sizes (OML's `get_vit_config_by_arch`).
    pub fn network(self) -> ClipNetwork {
        let (input_resolution, patch_size) = match self {
            Self::Vitb16At224 => (224, 16),
            Self::Vitb32At224 => (224, 32),
            Self::Vitl14At224 => (224, 14),
            Self::Vitl14At336 => (336, 14),
        };
        let (width, layers, heads, output_dim) = match self {
            Self::Vitb16At224 | Self::Vitb32At224 => (768, 12, 12, 512),
            Self::Vitl14At224 | Self::Vitl14At336 => (1024, 24, 16, 768),
        };
        ClipNetwork {
            input_resolution,
            patch_size,
            width,
            layers,
            heads,
            output_dim,
        }
    }
}

impl std::fmt::Display for ClipArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The arguments of CLIP's `VisionTransformer(input_resolution, patch_size, width, layers,
/// heads, output_dim)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipNetwork {
    /// Input size (square).
    pub input_resolution: usize,
    /// Patch size.
    pub patch_size: usize,
    /// Token width.
    pub width: usize,
    /// Residual attention blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the projected output (`proj`'s columns).
    pub output_dim: usize,
}

impl ClipNetwork {
    /// The shared network's configuration for this tower.
    pub fn vit_config(&self) -> VitConfig {
        VitConfig {
            img_size: self.input_resolution,
            patch_size: self.patch_size,
            embed_dim: self.width,
            depth: self.layers,
            num_heads: self.heads,
            layer_norm_eps: CLIP_LAYER_NORM_EPS,
            pre_norm: true,
            patch_bias: false,
            activation: MlpActivation::QuickGelu,
            ..VitConfig::default()
        }
    }
}

/// Arguments of OML's `ViTCLIPExtractor` (`extractor: {name: vit_clip, args: …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViTCLIPExtractorConfig {
    /// Architecture.
    pub arch: ClipArch,
    /// L2-normalise the output (norm detached). Default `true` (OML's default).
    #[serde(default = "yes")]
    pub normalise_features: bool,
    /// Weights: a checkpoint path or a pretrained key (read by [`build`](Self::build)).
    #[serde(default)]
    pub weights: Option<String>,
    /// Tower sizes overriding `arch`'s (not an OML argument: lets other CLIP sizes be built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<ClipNetwork>,
}

fn yes() -> bool {
    true
}

impl ViTCLIPExtractorConfig {
    /// `arch` with OML's defaults (normalised output, no weights).
    pub fn new(arch: ClipArch) -> Self {
        Self {
            arch,
            normalise_features: true,
            weights: None,
            custom: None,
        }
    }

    /// Sets `normalise_features`.
    pub fn with_normalise_features(mut self, normalise: bool) -> Self {
        self.normalise_features = normalise;
        self
    }

    /// Sets `weights` (a path or a pretrained key).
    pub fn with_weights(mut self, weights: impl Into<String>) -> Self {
        self.weights = Some(weights.into());
        self
    }

    /// Overrides the tower's sizes (see [`ViTCLIPExtractorConfig::custom`]).
    pub fn with_custom(mut self, network: ClipNetwork) -> Self {
        self.custom = Some(network);
        self
    }

    /// The tower sizes in effect.
    pub fn network(&self) -> ClipNetwork {
        self.custom.unwrap_or_else(|| self.arch.network())
    }

    /// Builds the extractor with random weights (`weights` is not read).
    pub fn init(&self, device: &Device) -> Result<ViTCLIPExtractor, ModelError> {
        let network = self.network();
        if network.output_dim == 0 {
            return Err(ModelError::InvalidArgument {
                name: "output_dim",
                value: "0".into(),
                reason: "must be > 0".into(),
            });
        }
        // CLIP's init: the projection ~ N(0, width^-0.5).
        let std = (network.width as f64).powf(-0.5);
        Ok(ViTCLIPExtractor {
            visual: network.vit_config().init(device)?,
            proj: Initializer::Normal { mean: 0.0, std }
                .init([network.width, network.output_dim], device),
            config: self.clone(),
        })
    }
}

/// OML's `ViTCLIPExtractor`: `ln_post(CLS) @ proj`, optionally L2-normalised.
///
/// ```
/// use burn::prelude::*;
/// use oml_interfaces::Extractor;
/// use oml_models::{ClipArch, ClipNetwork, ViTCLIPExtractorConfig};
///
/// let device = oml_interfaces::device::select_device(None)?;
/// let tiny = ClipNetwork { input_resolution: 32, patch_size: 16, width: 24, layers: 1, heads: 2, output_dim: 8 };
/// let clip = ViTCLIPExtractorConfig::new(ClipArch::Vitb16At224).with_custom(tiny).init(&device)?;
/// let images = Tensor::<4>::zeros([2, 3, 32, 32], &device);
/// assert_eq!(clip.extract(images).dims(), [2, 8]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Module, Debug)]
pub struct ViTCLIPExtractor {
    /// The tower up to `ln_post` (OML's `self.visual` without `proj`).
    pub visual: VisionTransformer,
    /// `[width, output_dim]`: `x @ proj`.
    pub proj: Param<Tensor<2>>,
    /// The arguments it was built from.
    #[module(skip)]
    pub config: ViTCLIPExtractorConfig,
}

impl ViTCLIPExtractor {
    /// The input size the arch was trained at (OML accepts only this one).
    pub fn input_size(&self) -> usize {
        self.config.network().input_resolution
    }

    fn host(&self) -> Option<HostVit> {
        self.visual.host(CLIP_LAYER_NORM_EPS)
    }

    fn run(&self, host: Option<&HostVit>, images: Tensor<4>) -> Tensor<2> {
        let x = self.visual.run(host, images).matmul(self.proj.val());
        if self.config.normalise_features {
            ops::normalise(x)
        } else {
            x
        }
    }
}

impl Extractor for ViTCLIPExtractor {
    fn feat_dim(&self) -> usize {
        self.proj.dims()[1]
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        self.run(self.host().as_ref(), images)
    }

    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        let host = self.host();
        Box::new(move |images| self.run(host.as_ref(), images))
    }
}

/// CLIP's names for the tower's parameters, relative to `visual.`, and ours.
const CLIP_NAMES: [(&str, &str); 7] = [
    ("conv1.", "patch_embed.proj."),
    ("ln_1.", "norm1."),
    ("attn.in_proj_weight", "attn.qkv.weight"),
    ("attn.in_proj_bias", "attn.qkv.bias"),
    ("attn.out_proj.", "attn.proj."),
    ("ln_2.", "norm2."),
    ("ln_post.", "norm."),
];

impl TorchLayout for ViTCLIPExtractor {
    fn trial_key(&self) -> &'static str {
        "conv1.weight"
    }

    fn torch_root(&self) -> &'static str {
        "visual."
    }

    fn map_key(&self, key: &str) -> KeyAction {
        let Some(rest) = key.strip_prefix("visual.") else {
            return KeyAction::Keep(key.to_string());
        };
        match rest {
            "proj" => return KeyAction::Keep("proj".into()),
            "class_embedding" => return KeyAction::Unsqueeze("visual.cls_token".into(), 2),
            "positional_embedding" => return KeyAction::Unsqueeze("visual.pos_embed".into(), 1),
            _ => {}
        }
        let mut name = rest
            .replace("transformer.resblocks.", "blocks.")
            .replace("mlp.c_fc.", "mlp.fc1.")
            .replace("mlp.c_proj.", "mlp.fc2.");
        for (theirs, ours) in CLIP_NAMES {
            if let Some(i) = name.find(theirs)
                && (i == 0 || name.as_bytes()[i - 1] == b'.')
            {
                name.replace_range(i..i + theirs.len(), ours);
                break;
            }
        }
        KeyAction::Keep(format!("visual.{name}"))
    }

    /// OML's `take_visual_part_of_vit_clip`: a key containing `visual` becomes what follows
    /// `visual.`.
    fn raw_key(&self, key: &str) -> Option<String> {
        Some(match key.find("visual") {
            Some(i) => key[(i + "visual.".len()).min(key.len())..].to_string(),
            None => key.to_string(),
        })
    }

    fn drops_unneeded(&self) -> bool {
        true
    }
}

pretrained_extractor!(
    ViTCLIPExtractor,
    ViTCLIPExtractorConfig,
    crate::zoo::CLIP_PRETRAINED
);
