//! OML's `ViTUnicomExtractor` (`vitb32_unicom`, `vitb16_unicom`, `vitl14_unicom`,
//! `vitl14_336px_unicom`).
//!
//! Unicom's network is a [`VisionTransformer`] without a class token (patches + `pos_embed`),
//! pre-norm blocks whose attention has no `qkv` bias and whose MLP uses ReLU6, LayerNorm ε 1e-5
//! and a final `norm`; then every token, flattened token-major, goes through the `feature` head
//! (Linear → BatchNorm1d → Linear → BatchNorm1d, no biases in the Linears, BatchNorm ε 2e-5).
//! Checkpoint keys are DINO's (`blocks.N.*`, `norm`, `patch_embed.proj`, `pos_embed`) plus
//! `feature.{0, 1, 2, 3}`. Because of the head, the input size is fixed to the arch's.

use std::path::Path;

use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use oml_interfaces::{Extractor, ModelError, Pretrained, PretrainedEntry};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{KeyAction, LoadOptions, LoadReport, TorchLayout};
use crate::ops;
use crate::vit::{HostVit, MlpActivation, VisionTransformer, VitConfig};

/// Unicom's LayerNorm epsilon.
const UNICOM_LAYER_NORM_EPS: f64 = 1e-5;
/// The head's BatchNorm epsilon.
const HEAD_BATCH_NORM_EPS: f64 = 2e-5;

/// Architectures of OML's `ViTUnicomExtractor` (`arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnicomArch {
    /// ViT-B/32 at 224: dim 768, depth 12, 12 heads, output 512.
    #[serde(rename = "vitb32_unicom")]
    Vitb32,
    /// ViT-B/16 at 224: dim 768, depth 12, 12 heads, output 768.
    #[serde(rename = "vitb16_unicom")]
    Vitb16,
    /// ViT-L/14 at 224: dim 1024, depth 24, 16 heads, output 768.
    #[serde(rename = "vitl14_unicom")]
    Vitl14,
    /// ViT-L/14 at 336: dim 1024, depth 24, 16 heads, output 768.
    #[serde(rename = "vitl14_336px_unicom")]
    Vitl14At336,
}

impl UnicomArch {
    /// All variants.
    pub const ALL: [UnicomArch; 4] = [Self::Vitb32, Self::Vitb16, Self::Vitl14, Self::Vitl14At336];

    /// OML's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vitb32 => "vitb32_unicom",
            Self::Vitb16 => "vitb16_unicom",
            Self::Vitl14 => "vitl14_unicom",
            Self::Vitl14At336 => "vitl14_336px_unicom",
        }
    }

    /// The network's sizes (Unicom's `build_model`).
    pub fn network(self) -> UnicomNetwork {
        let (input_size, patch_size) = match self {
            Self::Vitb32 => (224, 32),
            Self::Vitb16 => (224, 16),
            Self::Vitl14 => (224, 14),
            Self::Vitl14At336 => (336, 14),
        };
        let (dim, depth, num_heads, embedding_size) = match self {
            Self::Vitb32 => (768, 12, 12, 512),
            Self::Vitb16 => (768, 12, 12, 768),
            Self::Vitl14 | Self::Vitl14At336 => (1024, 24, 16, 768),
        };
        UnicomNetwork {
            input_size,
            patch_size,
            dim,
            embedding_size,
            depth,
            num_heads,
        }
    }
}

impl std::fmt::Display for UnicomArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The arguments of Unicom's `VisionTransformer(input_size, patch_size, dim, embedding_size,
/// depth, num_heads)` (MLP ratio 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnicomNetwork {
    /// Input size (square), fixed by the head.
    pub input_size: usize,
    /// Patch size.
    pub patch_size: usize,
    /// Token width.
    pub dim: usize,
    /// Output width.
    pub embedding_size: usize,
    /// Blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
}

impl UnicomNetwork {
    /// The shared network's configuration for this one.
    pub fn vit_config(&self) -> VitConfig {
        VitConfig {
            img_size: self.input_size,
            patch_size: self.patch_size,
            embed_dim: self.dim,
            depth: self.depth,
            num_heads: self.num_heads,
            layer_norm_eps: UNICOM_LAYER_NORM_EPS,
            class_token: false,
            qkv_bias: false,
            activation: MlpActivation::Relu6,
            ..VitConfig::default()
        }
    }

    /// Patch tokens at the input size.
    pub fn num_patches(&self) -> usize {
        let side = self.input_size / self.patch_size.max(1);
        side * side
    }
}

/// Arguments of OML's `ViTUnicomExtractor` (`extractor: {name: vit_unicom, args: …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViTUnicomExtractorConfig {
    /// Architecture.
    pub arch: UnicomArch,
    /// L2-normalise the output (norm detached). Default `false` (OML requires it; its zoo uses
    /// `true`).
    #[serde(default)]
    pub normalise_features: bool,
    /// Weights: a checkpoint path or a pretrained key (read by [`build`](Self::build)).
    #[serde(default)]
    pub weights: Option<String>,
    /// OML's gradient checkpointing switch, accepted so OML configs parse; it has no effect here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_gradient_ckpt: Option<bool>,
    /// Sizes overriding `arch`'s (not an OML argument: lets other sizes be built).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<UnicomNetwork>,
}

impl ViTUnicomExtractorConfig {
    /// `arch` without normalisation or weights.
    pub fn new(arch: UnicomArch) -> Self {
        Self {
            arch,
            normalise_features: false,
            weights: None,
            use_gradient_ckpt: None,
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

    /// Overrides the sizes (see [`ViTUnicomExtractorConfig::custom`]).
    pub fn with_custom(mut self, network: UnicomNetwork) -> Self {
        self.custom = Some(network);
        self
    }

    /// The sizes in effect.
    pub fn network(&self) -> UnicomNetwork {
        self.custom.unwrap_or_else(|| self.arch.network())
    }

    /// Builds the extractor with random weights (`weights` is not read).
    pub fn init(&self, device: &Device) -> Result<ViTUnicomExtractor, ModelError> {
        let n = self.network();
        if n.embedding_size == 0 {
            return Err(ModelError::InvalidArgument {
                name: "embedding_size",
                value: "0".into(),
                reason: "must be > 0".into(),
            });
        }
        let visual = n.vit_config().init(device)?;
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let linear = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_bias(false)
                .with_initializer(init.clone())
                .init(device)
        };
        let norm = |d: usize| {
            BatchNormConfig::new(d)
                .with_epsilon(HEAD_BATCH_NORM_EPS)
                .init(device)
        };
        Ok(ViTUnicomExtractor {
            model: visual,
            feature: UnicomHead {
                linear1: linear(n.dim * n.num_patches(), n.dim),
                norm1: norm(n.dim),
                linear2: linear(n.dim, n.embedding_size),
                norm2: norm(n.embedding_size),
            },
            config: self.clone(),
        })
    }
}

/// Unicom's `feature` head: `Linear(N·dim, dim) → BatchNorm1d → Linear(dim, out) →
/// BatchNorm1d`.
#[derive(Module, Debug)]
pub struct UnicomHead {
    /// `feature.0`.
    pub linear1: Linear,
    /// `feature.1`.
    pub norm1: BatchNorm,
    /// `feature.2`.
    pub linear2: Linear,
    /// `feature.3`.
    pub norm2: BatchNorm,
}

impl UnicomHead {
    /// # Shapes
    /// `[B, N·dim] -> [B, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.norm1.forward(self.linear1.forward(x));
        self.norm2.forward(self.linear2.forward(x))
    }
}

/// OML's `ViTUnicomExtractor`.
///
/// ```
/// use burn::prelude::*;
/// use oml_interfaces::Extractor;
/// use oml_models::{UnicomArch, UnicomNetwork, ViTUnicomExtractorConfig};
///
/// let device = oml_interfaces::device::select_device(None)?;
/// let tiny = UnicomNetwork { input_size: 32, patch_size: 16, dim: 24, embedding_size: 8, depth: 1, num_heads: 2 };
/// let unicom = ViTUnicomExtractorConfig::new(UnicomArch::Vitb32).with_custom(tiny).init(&device)?;
/// let images = Tensor::<4>::zeros([2, 3, 32, 32], &device);
/// assert_eq!(unicom.extract(images).dims(), [2, 8]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Module, Debug)]
pub struct ViTUnicomExtractor {
    /// The transformer up to the final norm (OML's `self.model` without `feature`).
    pub model: VisionTransformer,
    /// The head (OML's `self.model.feature`).
    pub feature: UnicomHead,
    /// The arguments it was built from.
    #[module(skip)]
    pub config: ViTUnicomExtractorConfig,
}

impl ViTUnicomExtractor {
    /// The only input size the head accepts.
    pub fn input_size(&self) -> usize {
        self.config.network().input_size
    }

    fn host(&self) -> Option<HostVit> {
        self.model.host(UNICOM_LAYER_NORM_EPS)
    }

    fn run(&self, host: Option<&HostVit>, images: Tensor<4>) -> Tensor<2> {
        let x = self.feature.forward(self.model.run(host, images));
        if self.config.normalise_features {
            ops::normalise(x)
        } else {
            x
        }
    }
}

impl Extractor for ViTUnicomExtractor {
    fn feat_dim(&self) -> usize {
        self.feature.linear2.weight.dims()[1]
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        self.run(self.host().as_ref(), images)
    }

    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        let host = self.host();
        Box::new(move |images| self.run(host.as_ref(), images))
    }
}

impl TorchLayout for ViTUnicomExtractor {
    fn trial_key(&self) -> &'static str {
        "norm.bias"
    }

    fn torch_root(&self) -> &'static str {
        "model."
    }

    /// `model.feature.{0,1,2,3}` → `feature.{linear1, norm1, linear2, norm2}`; the rest is
    /// the transformer's.
    fn map_key(&self, key: &str) -> KeyAction {
        let Some(head) = key.strip_prefix("model.feature.") else {
            return KeyAction::Keep(key.to_string());
        };
        let (index, rest) = head.split_once('.').unwrap_or((head, ""));
        let layer = match index {
            "0" => "linear1",
            "1" => "norm1",
            "2" => "linear2",
            "3" => "norm2",
            _ => return KeyAction::Keep(key.to_string()),
        };
        KeyAction::Keep(format!("feature.{layer}.{rest}"))
    }
}

pretrained_extractor!(
    ViTUnicomExtractor,
    ViTUnicomExtractorConfig,
    crate::zoo::UNICOM_PRETRAINED
);
