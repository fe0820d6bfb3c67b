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
