//! # oml-models
//!
//! OML 4.0's extractors and pairwise models on Burn 0.22, loading OML's PyTorch checkpoints and
//! computing the same embeddings.
//!
//! | OML 4.0 | here |
//! |---|---|
//! | `ResnetExtractor(weights, arch, gem_p, remove_fc, normalise_features)` | [`ResnetExtractorConfig`] → [`ResnetExtractor`] |
//! | `ViTExtractor(weights, arch, normalise_features, use_multi_scale)` (DINO v1, DINOv2) | [`ViTExtractorConfig`] → [`ViTExtractor`] |
//! | `ViTCLIPExtractor(weights, arch, normalise_features)` | [`ViTCLIPExtractorConfig`] → [`ViTCLIPExtractor`] |
//! | `ViTUnicomExtractor(weights, arch, normalise_features)` | [`ViTUnicomExtractorConfig`] → [`ViTUnicomExtractor`] |
//! | `ExtractorWithMLP(extractor, mlp_features, weights, train_backbone)` | [`ExtractorWithMLP`] |
//! | `LinearTrivialDistanceSiamese`, `TrivialDistanceSiamese`, `ConcatSiamese` | [`LinearTrivialDistanceSiamese`], [`TrivialDistanceSiamese`], [`ConcatSiamese`] |
//! | `EXTRACTORS_REGISTRY`, `PAIRWISE_MODELS_REGISTRY` (`{name, args}` configs) | [`ExtractorConfig`] → [`AnyExtractor`], [`PairwiseConfig`] → [`AnyPairwise`] |
//! | (not in OML) the Fashion-MNIST demo's CNN, registry name `small_cnn` | [`SmallCnnArgs`] / [`SmallCnnConfig`] → [`SmallCnn`] |
//! | `pretrained_models`, `download_checkpoint`, `TRANSFORMS_FOR_PRETRAINED` | [`zoo`] |
//! | `torch.load` + `remove_criterion_in_state_dict` + `remove_prefix_from_state_dict` | [`checkpoint`] |
//!
//! All models implement [`oml_interfaces::Extractor`] or [`oml_interfaces::PairwiseModel`];
//! `ExtractorWithMLP`, `ConcatSiamese` and `SmallCnn` implement [`oml_interfaces::Freezable`]
//! (freezing detaches the backbone output and marks its parameters as not requiring gradients, so
//! it really stops training, unlike OML 4.0's `freeze_n_epochs` under Lightning 2). Pretrained keys
//! go through [`oml_interfaces::Pretrained`]: `ViTExtractor::from_pretrained("vits16_dino",
//! &device)`.
//!
//! # Example
//!
//! Build an extractor from an OML config, save it in our format and load it back:
//!
//! ```
//! use burn::prelude::*;
//! use oml_interfaces::Extractor;
//! use oml_models::{AnyExtractor, ExtractorConfig};
//!
//! let device = oml_interfaces::device::select_device(None)?;
//! let config: ExtractorConfig = serde_json::from_str(
//!     r#"{"name": "resnet", "args": {"arch": "resnet18", "gem_p": 3.0, "normalise_features": true}}"#,
//! )?;
//! let extractor = config.build(&device)?;
//! let images = Tensor::<4>::ones([2, 3, 64, 64], &device);
//! let before = extractor.extract(images.clone());
//! assert_eq!(before.dims(), [2, extractor.feat_dim()]);
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("extractor.bpk");
//! extractor.save(&path)?;
//! let again = AnyExtractor::load(&path, &device)?;
//! let diff: f32 = (again.extract(images) - before).abs().max().into_scalar::<f32>();
//! assert!(diff < 1e-6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A PyTorch checkpoint saved by OML (plain `state_dict`, or a Lightning `.ckpt`) loads with
//! `config.init(&device)?.load_weights(path, &LoadOptions::default())`; see [`checkpoint`] for the
//! exact key processing and `docs/models.md` for the parity tolerances.

/// What every OML extractor with a pretrained registry has the same way: `Config::build` (random
/// init, then `weights` loaded: a pretrained key downloaded first), the extractor's `config`,
/// `load_weights` and `from_pretrained`, and its [`Pretrained`] impl (OML's `init_args` built,
/// the file loaded strictly). The config needs `init(&Device)` and a `weights` field; the
/// extractor a `config` field and [`TorchLayout`].
macro_rules! pretrained_extractor {
    ($extractor:ident, $config:ident, $registry:path) => {
        impl $config {
            /// Builds the extractor and, when `weights` is set, loads them (a pretrained key is
            /// downloaded to the cache first), strictly.
            pub fn build(&self, device: &Device) -> Result<$extractor, ModelError> {
                let model = self.init(device)?;
                match &self.weights {
                    None => Ok(model),
                    Some(w) => {
                        let path = crate::zoo::resolve_weights::<$extractor>(w)?;
                        Ok(model.load_weights(&path, &LoadOptions::default())?.0)
                    }
                }
            }
        }

        impl $extractor {
            /// The arguments the extractor was built from.
            pub fn config(&self) -> &$config {
                &self.config
            }

            /// Loads a checkpoint (`.bpk` ours, anything else PyTorch) as OML would.
            pub fn load_weights(
                self,
                path: &Path,
                options: &LoadOptions,
            ) -> Result<(Self, LoadReport), ModelError> {
                crate::checkpoint::load_weights(self, path, options)
            }

            /// Downloads (or finds in the cache) a pretrained checkpoint and builds OML's
            /// extractor for it.
            pub fn from_pretrained(key: &str, device: &Device) -> Result<Self, ModelError> {
                crate::zoo::from_pretrained(key, device)
            }
        }

        impl Pretrained for $extractor {
            fn registry() -> &'static [PretrainedEntry] {
                $registry
            }

            fn from_entry(
                entry: &PretrainedEntry,
                path: &Path,
                device: &Device,
            ) -> Result<Self, ModelError> {
                let config: $config = crate::zoo::init_args(entry)?;
                Ok(config
                    .init(device)?
                    .load_weights(path, &LoadOptions::default())?
                    .0)
            }
        }
    };
}

pub mod checkpoint;
pub mod clip;
pub mod config;
mod epilogue;
mod nhwc;
pub mod ops;
pub mod projection;
pub mod resnet;
pub mod siamese;
pub mod small_cnn;
pub mod unicom;
pub mod vit;
pub mod zoo;

pub use checkpoint::{KeyAction, LoadOptions, LoadReport, TorchLayout};
pub use clip::{ClipArch, ClipNetwork, ViTCLIPExtractor, ViTCLIPExtractorConfig};
pub use config::{
    AnyExtractor, AnyPairwise, Backbone, ConcatSiameseConfig, ExtractorConfig,
    ExtractorWithMlpConfig, LinearSiameseConfig, PairwiseConfig, SmallCnnArgs,
    TrivialDistanceSiameseConfig,
};
pub use oml_interfaces::{Extractor, Freezable, PairwiseModel, Pretrained, PretrainedEntry};
pub use projection::ExtractorWithMLP;
pub use resnet::{ResNet, ResnetArch, ResnetExtractor, ResnetExtractorConfig};
pub use siamese::{ConcatSiamese, LinearTrivialDistanceSiamese, TrivialDistanceSiamese};
pub use small_cnn::{SmallCnn, SmallCnnConfig};
pub use unicom::{UnicomArch, UnicomNetwork, ViTUnicomExtractor, ViTUnicomExtractorConfig};
pub use vit::{
    MlpActivation, PosInterpolation, ViTExtractor, ViTExtractorConfig, VisionTransformer, VitArch,
    VitConfig,
};
pub use zoo::{Preprocessing, PretrainedModel, ResizeMode};
