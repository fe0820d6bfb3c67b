//! Models from configs, as OML's `EXTRACTORS_REGISTRY` / `PAIRWISE_MODELS_REGISTRY`
//! (`{name, args}` with `weights` inside `args`, as OML's YAML; a top-level `weights` is accepted
//! too: [`WithWeights`] moves it into `args`, and the registries dispatch on the resulting
//! [`Named`], reading the arguments with [`Named::args_as`]).
//!
//! ```
//! use oml_models::config::ExtractorConfig;
//!
//! let yaml = r#"
//! name: extractor_with_mlp
//! args:
//!   mlp_features: [16]
//!   extractor:
//!     name: resnet
//!     args: {arch: resnet18, gem_p: 3.0, remove_fc: true, normalise_features: false}
//! "#;
//! let config: ExtractorConfig = serde_yaml_ng::from_str(yaml)?;
//! let device = oml_interfaces::device::select_device(None)?;
//! let extractor = config.build(&device)?;
//! assert_eq!(oml_interfaces::Extractor::feat_dim(&extractor), 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;
use std::sync::LazyLock;

use burn::prelude::*;
use oml_interfaces::registry::{ArgsError, Named};
use oml_interfaces::{
    Extractor, Freezable, ModelError, PairwiseModel, Pretrained, PretrainedEntry,
};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{KeyAction, LoadOptions, LoadReport, TorchLayout};
use crate::clip::{ViTCLIPExtractor, ViTCLIPExtractorConfig};
use crate::projection::ExtractorWithMLP;
use crate::resnet::{ResnetExtractor, ResnetExtractorConfig};
use crate::siamese::{ConcatSiamese, LinearTrivialDistanceSiamese, TrivialDistanceSiamese};
use crate::small_cnn::{SmallCnn, SmallCnnConfig};
use crate::unicom::{ViTUnicomExtractor, ViTUnicomExtractorConfig};
use crate::vit::{ViTExtractor, ViTExtractorConfig};

/// The extractors this crate implements: OML's (`EXTRACTORS_REGISTRY` names, all of them) and
/// the small CNN of the Fashion-MNIST demo.
pub const EXTRACTOR_NAMES: [&str; 6] = [
    "resnet",
    "vit",
    "vit_clip",
    "vit_unicom",
    "extractor_with_mlp",
    SMALL_CNN,
];
/// Registry name of the small CNN ([`SmallCnnArgs`]).
pub const SMALL_CNN: &str = "small_cnn";

/// A `match` on the four plain extractors (`resnet`, `vit`, `vit_clip`, `vit_unicom`) of a
/// registry enum, `$m` bound to the model or config each holds, with the enum's other
/// variants as extra arms.
macro_rules! plain {
    ($value:expr, $m:ident => $body:expr $(, $pat:pat => $other:expr)* $(,)?) => {
        match $value {
            Self::Resnet($m) => $body,
            Self::Vit($m) => $body,
            Self::VitClip($m) => $body,
            Self::VitUnicom($m) => $body,
            $($pat => $other,)*
        }
    };
}

/// [`plain!`] over every variant of [`ExtractorConfig`] / [`AnyExtractor`].
macro_rules! any {
    ($value:expr, $m:ident => $body:expr) => {
        plain!($value, $m => $body, Self::ExtractorWithMlp($m) => $body, Self::SmallCnn($m) => $body)
    };
}
/// OML pairwise models (`PAIRWISE_MODELS_REGISTRY` names).
pub const PAIRWISE_NAMES: [&str; 3] = [
    "linear_siamese",
    "concat_siamese",
    "trivial_distance_siamese",
];

/// Arguments of OML's `ExtractorWithMLP`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractorWithMlpConfig {
    /// The backbone (`resnet`, `vit`, `vit_clip` or `vit_unicom`).
    pub extractor: Box<ExtractorConfig>,
    /// MLP sizes.
    pub mlp_features: Vec<usize>,
    /// Weights of the whole model (path or `vits16_224_mlp_384_inshop`).
    #[serde(default)]
    pub weights: Option<String>,
    /// Train the backbone too. Default `false` (OML).
    #[serde(default)]
    pub train_backbone: bool,
}

/// Arguments of `small_cnn` ([`SmallCnnConfig`] → [`SmallCnn`], 3 input channels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmallCnnArgs {
    /// Embedding size.
    pub feat_dim: usize,
    /// Channels of the three convolution stages. Default `[32, 64, 128]`.
    #[serde(default = "default_channels")]
    pub channels: [usize; 3],
    /// L2-normalise the embeddings. Default `true`.
    #[serde(default = "default_true")]
    pub normalise_features: bool,
    /// Batch norm after each convolution. Default `true`.
    #[serde(default = "default_true")]
    pub batch_norm: bool,
    /// Weights: a `.bpk` file saved by oml-rs (there is no pretrained small CNN). Default: none.
    #[serde(default)]
    pub weights: Option<String>,
}

fn default_channels() -> [usize; 3] {
    [32, 64, 128]
}

fn default_true() -> bool {
    true
}

impl SmallCnnArgs {
    /// The architecture these arguments describe (`weights` aside).
    pub fn model_config(&self) -> SmallCnnConfig {
        SmallCnnConfig::new(self.feat_dim)
            .with_channels(self.channels)
            .with_normalise_features(self.normalise_features)
            .with_batch_norm(self.batch_norm)
    }

    /// The arguments of `model`'s architecture (no `weights`).
    pub fn from_model(model: &SmallCnn) -> Self {
        Self {
            // `lazy_shape`: reading the config must not initialise the parameters (a fresh
            // model's lazily drawn weights would then depend on who asked first)
            feat_dim: model.head.weight.lazy_shape()[1],
            channels: [&model.conv1, &model.conv2, &model.conv3].map(|c| c.weight.lazy_shape()[0]),
            normalise_features: model.normalise_features,
            batch_norm: !model.norms.is_empty(),
            weights: None,
        }
    }
}

/// An extractor config: OML's `{name: resnet | vit | vit_clip | vit_unicom | extractor_with_mlp,
/// args: {…}}`, or `{name: small_cnn, args: {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WithWeights", into = "Named")]
pub enum ExtractorConfig {
    /// `resnet`.
    Resnet(ResnetExtractorConfig),
    /// `vit`.
    Vit(ViTExtractorConfig),
    /// `vit_clip`.
    VitClip(ViTCLIPExtractorConfig),
    /// `vit_unicom`.
    VitUnicom(ViTUnicomExtractorConfig),
    /// `extractor_with_mlp`.
    ExtractorWithMlp(ExtractorWithMlpConfig),
    /// `small_cnn`.
    SmallCnn(SmallCnnArgs),
}

/// A registry section as written in configs, `{name, args, weights}`: a [`Named`] whose
/// `weights` may also sit next to `args` (OML reads them from `args`).
/// [`into_named`](Self::into_named) moves them there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithWeights {
    /// The registry name.
    pub name: String,
    /// Constructor arguments (OML puts `weights` here); `null` means none.
    #[serde(
        default,
        deserialize_with = "oml_interfaces::registry::deserialize_args"
    )]
    pub args: serde_json::Value,
    /// Weights given next to `args`: a `.bpk` file, a PyTorch checkpoint or a pretrained key.
    #[serde(default)]
    pub weights: Option<String>,
}

/// Why a [`WithWeights`] has no [`Named`] form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// `weights` is given next to `args` that are not a mapping.
    #[error("`args` must be a mapping")]
    ArgsNotAMapping,
    /// `weights` is given both in `args` and next to them (OML's `ValueError`).
    #[error("`weights` is given both in `args` and next to them; give it once")]
    GivenTwice,
}

impl WithWeights {
    /// The section with a top-level `weights` moved into `args` (absent `args` become a
    /// mapping then); without one, `name` and `args` as they are.
    pub fn into_named(self) -> Result<Named, WeightsError> {
        let Some(w) = self.weights else {
            return Ok(Named {
                name: self.name,
                args: self.args,
            });
        };
        let mut args = self.args;
        if args.is_null() {
            args = serde_json::Value::Object(Default::default());
        }
        let obj = args.as_object_mut().ok_or(WeightsError::ArgsNotAMapping)?;
        if obj.get("weights").is_some_and(|v| !v.is_null()) {
            return Err(WeightsError::GivenTwice);
        }
        obj.insert("weights".into(), serde_json::Value::String(w));
        Ok(Named {
            name: self.name,
            args,
        })
    }
}

impl TryFrom<Named> for ExtractorConfig {
    type Error = String;

    fn try_from(n: Named) -> Result<Self, String> {
        let err = |e: ArgsError| e.in_registry("extractor");
        match n.name.as_str() {
            "resnet" => n.args_as().map(Self::Resnet).map_err(err),
            "vit" => n.args_as().map(Self::Vit).map_err(err),
            "vit_clip" => n.args_as().map(Self::VitClip).map_err(err),
            "vit_unicom" => n.args_as().map(Self::VitUnicom).map_err(err),
            "extractor_with_mlp" => n.args_as().map(Self::ExtractorWithMlp).map_err(err),
            SMALL_CNN => n.args_as().map(Self::SmallCnn).map_err(err),
            other => Err(format!(
                "unknown extractor `{other}`; available: {}",
                EXTRACTOR_NAMES.join(", ")
            )),
        }
    }
}

impl TryFrom<WithWeights> for ExtractorConfig {
    type Error = String;

    fn try_from(w: WithWeights) -> Result<Self, String> {
        let name = w.name.clone();
        Self::try_from(w.into_named().map_err(|e| format!("`{name}`: {e}"))?)
    }
}

impl From<ExtractorConfig> for Named {
    fn from(c: ExtractorConfig) -> Self {
        c.named()
    }
}

fn nested_weights_twice(outer: &str) -> ModelError {
    ModelError::InvalidArgument {
        name: "weights",
        value: outer.to_string(),
        reason: "weights are given for both the outer model and its inner extractor; give only one (OML raises ValueError)".into(),
    }
}

impl ExtractorConfig {
    /// OML's registry name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Resnet(_) => "resnet",
            Self::Vit(_) => "vit",
            Self::VitClip(_) => "vit_clip",
            Self::VitUnicom(_) => "vit_unicom",
            Self::ExtractorWithMlp(_) => "extractor_with_mlp",
            Self::SmallCnn(_) => SMALL_CNN,
        }
    }

    fn named(&self) -> Named {
        any!(self, a => Named::new(self.name(), a))
    }

    /// The `weights` argument.
    pub fn weights(&self) -> Option<&str> {
        any!(self, a => a.weights.as_deref())
    }

    /// The config without its `weights` argument (the inner extractor's of `extractor_with_mlp`
    /// are kept).
    pub fn without_weights(mut self) -> Self {
        any!(&mut self, a => a.weights = None);
        self
    }

    /// The only input size (square) the model accepts, where it has one (also inside
    /// `extractor_with_mlp`): Unicom's head reads a fixed number of tokens, and OML asserts
    /// CLIP's arch size (called directly, [`ViTCLIPExtractor`] interpolates its position
    /// embeddings instead). The pipelines check their transforms against it.
    pub fn fixed_input_size(&self) -> Option<usize> {
        match self {
            Self::VitClip(a) => Some(a.network().input_resolution),
            Self::VitUnicom(a) => Some(a.network().input_size),
            Self::ExtractorWithMlp(a) => a.extractor.fixed_input_size(),
            _ => None,
        }
    }

    /// Whether the model is `IFreezable` in OML's sense (see [`AnyExtractor::is_freezable`]):
    /// `extractor_with_mlp` and `small_cnn`.
    pub fn is_freezable(&self) -> bool {
        matches!(self, Self::ExtractorWithMlp(_) | Self::SmallCnn(_))
    }

    /// Builds the model with random weights (no `weights` is read).
    pub fn init(&self, device: &Device) -> Result<AnyExtractor, ModelError> {
        Ok(match self {
            Self::Resnet(a) => AnyExtractor::Resnet(a.init(device)?),
            Self::Vit(a) => AnyExtractor::Vit(a.init(device)?),
            Self::VitClip(a) => AnyExtractor::VitClip(a.init(device)?),
            Self::VitUnicom(a) => AnyExtractor::VitUnicom(a.init(device)?),
            Self::ExtractorWithMlp(a) => {
                let inner = a.extractor.init(device)?.into_backbone()?;
                AnyExtractor::ExtractorWithMlp(ExtractorWithMLP::new(
                    inner,
                    &a.mlp_features,
                    a.train_backbone,
                    device,
                )?)
            }
            Self::SmallCnn(a) => AnyExtractor::SmallCnn(a.model_config().try_init(device)?),
        })
    }

    /// Builds the model and loads every `weights` given (pretrained keys are downloaded), as OML's
    /// `get_extractor_by_cfg`.
    pub fn build(&self, device: &Device) -> Result<AnyExtractor, ModelError> {
        Ok(match self {
            Self::Resnet(a) => AnyExtractor::Resnet(a.build(device)?),
            Self::Vit(a) => AnyExtractor::Vit(a.build(device)?),
            Self::VitClip(a) => AnyExtractor::VitClip(a.build(device)?),
            Self::VitUnicom(a) => AnyExtractor::VitUnicom(a.build(device)?),
            Self::ExtractorWithMlp(a) => {
                if let (Some(w), Some(_)) = (&a.weights, a.extractor.weights()) {
                    return Err(nested_weights_twice(w));
                }
                let inner = a.extractor.build(device)?.into_backbone()?;
                let model =
                    ExtractorWithMLP::new(inner, &a.mlp_features, a.train_backbone, device)?;
                match &a.weights {
                    None => AnyExtractor::ExtractorWithMlp(model),
                    Some(w) => {
                        let path = crate::zoo::resolve_weights::<AnyExtractor>(w)?;
                        AnyExtractor::ExtractorWithMlp(
                            model.load_weights(&path, &LoadOptions::default())?.0,
                        )
                    }
                }
            }
            Self::SmallCnn(a) => {
                let model = a.model_config().try_init(device)?;
                match &a.weights {
                    None => AnyExtractor::SmallCnn(model),
                    // only our own files: no pretrained key, no PyTorch checkpoint
                    Some(w) => AnyExtractor::SmallCnn(
                        crate::checkpoint::load_burnpack(
                            model,
                            Path::new(w),
                            &LoadOptions::default(),
                        )?
                        .0,
                    ),
                }
            }
        })
    }
}

/// A plain extractor that can sit inside [`ExtractorWithMLP`], [`ConcatSiamese`] or
/// [`TrivialDistanceSiamese`] when they are built from configs.
// Burn cannot derive `Module` through a `Box`, so variants stay inline (one value per model).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone {
    /// `resnet`.
    Resnet(ResnetExtractor),
    /// `vit`.
    Vit(ViTExtractor),
    /// `vit_clip`.
    VitClip(ViTCLIPExtractor),
    /// `vit_unicom`.
    VitUnicom(ViTUnicomExtractor),
}

impl Extractor for Backbone {
    fn feat_dim(&self) -> usize {
        plain!(self, m => m.feat_dim())
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        plain!(self, m => m.extract(images))
    }

    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        plain!(self, m => m.inference())
    }
}

impl TorchLayout for Backbone {
    fn trial_key(&self) -> &'static str {
        plain!(self, m => m.trial_key())
    }

    fn torch_root(&self) -> &'static str {
        plain!(self, m => m.torch_root())
    }

    fn map_key(&self, key: &str) -> KeyAction {
        plain!(self, m => m.map_key(key))
    }

    fn raw_key(&self, key: &str) -> Option<String> {
        plain!(self, m => m.raw_key(key))
    }

    fn drops_unneeded(&self) -> bool {
        plain!(self, m => m.drops_unneeded())
    }
}

impl Backbone {
    fn config(&self) -> ExtractorConfig {
        match self {
            Self::Resnet(m) => ExtractorConfig::Resnet(m.config.clone()),
            Self::Vit(m) => ExtractorConfig::Vit(m.config.clone()),
            Self::VitClip(m) => ExtractorConfig::VitClip(m.config.clone()),
            Self::VitUnicom(m) => ExtractorConfig::VitUnicom(m.config.clone()),
        }
    }
}

/// Any extractor of OML's registry that this crate implements, built from an
/// [`ExtractorConfig`]: the concrete type a training pipeline holds.
// Burn cannot derive `Module` through a `Box`, so variants stay inline (one value per model).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AnyExtractor {
    /// `resnet`.
    Resnet(ResnetExtractor),
    /// `vit`.
    Vit(ViTExtractor),
    /// `vit_clip`.
    VitClip(ViTCLIPExtractor),
    /// `vit_unicom`.
    VitUnicom(ViTUnicomExtractor),
    /// `extractor_with_mlp` (over a plain extractor: a [`Backbone`]).
    ExtractorWithMlp(ExtractorWithMLP<Backbone>),
    /// `small_cnn`.
    SmallCnn(SmallCnn),
}

impl AnyExtractor {
    /// The config that rebuilds this model's architecture.
    pub fn config(&self) -> ExtractorConfig {
        match self {
            Self::Resnet(m) => ExtractorConfig::Resnet(m.config.clone()),
            Self::Vit(m) => ExtractorConfig::Vit(m.config.clone()),
            Self::VitClip(m) => ExtractorConfig::VitClip(m.config.clone()),
            Self::VitUnicom(m) => ExtractorConfig::VitUnicom(m.config.clone()),
            Self::ExtractorWithMlp(m) => {
                ExtractorConfig::ExtractorWithMlp(ExtractorWithMlpConfig {
                    extractor: Box::new(m.extractor.config()),
                    mlp_features: m.mlp_features(),
                    weights: None,
                    train_backbone: m.train_backbone,
                })
            }
            Self::SmallCnn(m) => ExtractorConfig::SmallCnn(SmallCnnArgs::from_model(m)),
        }
    }

    /// Whether OML treats this model as `IFreezable`: `extractor_with_mlp`, and `small_cnn`
    /// (whose convolutions freeze, its head keeps training).
    pub fn is_freezable(&self) -> bool {
        matches!(self, Self::ExtractorWithMlp(_) | Self::SmallCnn(_))
    }

    fn into_backbone(self) -> Result<Backbone, ModelError> {
        match self {
            Self::Resnet(m) => Ok(Backbone::Resnet(m)),
            Self::Vit(m) => Ok(Backbone::Vit(m)),
            Self::VitClip(m) => Ok(Backbone::VitClip(m)),
            Self::VitUnicom(m) => Ok(Backbone::VitUnicom(m)),
            Self::ExtractorWithMlp(_) | Self::SmallCnn(_) => Err(ModelError::InvalidArgument {
                name: "extractor",
                value: self.config().name().into(),
                reason: "the inner extractor must be `resnet`, `vit`, `vit_clip` or `vit_unicom`"
                    .into(),
            }),
        }
    }

    /// Loads a checkpoint (`.bpk` ours, anything else PyTorch) as OML would. `small_cnn` is not
    /// an OML model: it loads only `.bpk` files.
    pub fn load_weights(
        self,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<(Self, LoadReport), ModelError> {
        match self {
            Self::Resnet(m) => m
                .load_weights(path, options)
                .map(|(m, r)| (Self::Resnet(m), r)),
            Self::Vit(m) => m
                .load_weights(path, options)
                .map(|(m, r)| (Self::Vit(m), r)),
            Self::VitClip(m) => m
                .load_weights(path, options)
                .map(|(m, r)| (Self::VitClip(m), r)),
            Self::VitUnicom(m) => m
                .load_weights(path, options)
                .map(|(m, r)| (Self::VitUnicom(m), r)),
            Self::ExtractorWithMlp(m) => m
                .load_weights(path, options)
                .map(|(m, r)| (Self::ExtractorWithMlp(m), r)),
            Self::SmallCnn(m) if crate::checkpoint::is_burnpack(path) => {
                crate::checkpoint::load_burnpack(m, path, options)
                    .map(|(m, r)| (Self::SmallCnn(m), r))
            }
            Self::SmallCnn(_) => Err(ModelError::Checkpoint {
                path: path.display().to_string(),
                message: format!(
                    "`{SMALL_CNN}` has no PyTorch layout: it loads only `.bpk` files saved by oml-rs"
                ),
            }),
        }
    }

    /// Saves weights and config as burnpack (load back with [`Self::load`]). The parameter
    /// paths are those of the concrete model, so a file saved by [`ResnetExtractor::save`] or
    /// [`ViTExtractor::save`] loads here too, and the other way round.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let config = self.config();
        plain!(self, m => save_with_config(m, &config, path),
            Self::ExtractorWithMlp(m) => save_with_config(m, &config, path),
            Self::SmallCnn(m) => {
                // `small_cnn`'s arguments describe 3 input channels only
                let in_channels = m.conv1.weight.lazy_shape()[1];
                if in_channels != 3 {
                    return Err(ModelError::InvalidArgument {
                        name: "in_channels",
                        value: in_channels.to_string(),
                        reason: format!(
                            "a `{SMALL_CNN}` is saved with its registry config, which has 3 input channels"
                        ),
                    });
                }
                save_with_config(m, &config, path)
            }
        )
    }

    /// Rebuilds a model saved by [`Self::save`] (or by the `save` of a concrete extractor).
    pub fn load(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let config = read_saved_config(path)?;
        let strict = LoadOptions::default();
        Ok(match config.init(device)? {
            Self::Resnet(m) => Self::Resnet(crate::checkpoint::load_burnpack(m, path, &strict)?.0),
            Self::Vit(m) => Self::Vit(crate::checkpoint::load_burnpack(m, path, &strict)?.0),
            Self::VitClip(m) => {
                Self::VitClip(crate::checkpoint::load_burnpack(m, path, &strict)?.0)
            }
            Self::VitUnicom(m) => {
                Self::VitUnicom(crate::checkpoint::load_burnpack(m, path, &strict)?.0)
            }
            Self::ExtractorWithMlp(m) => {
                Self::ExtractorWithMlp(crate::checkpoint::load_burnpack(m, path, &strict)?.0)
            }
            Self::SmallCnn(m) => {
                Self::SmallCnn(crate::checkpoint::load_burnpack(m, path, &strict)?.0)
            }
        })
    }

    /// Downloads (or finds in the cache) any pretrained key and builds OML's model for it.
    pub fn from_pretrained(key: &str, device: &Device) -> Result<Self, ModelError> {
        crate::zoo::from_pretrained(key, device)
    }
}

impl Extractor for AnyExtractor {
    fn feat_dim(&self) -> usize {
        any!(self, m => m.feat_dim())
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        any!(self, m => m.extract(images))
    }

    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        any!(self, m => m.inference())
    }
}

/// Freezes the backbone of `extractor_with_mlp` and `small_cnn`; the other extractors are
/// returned unchanged, as OML only calls `freeze` on `IFreezable` models (see
/// [`AnyExtractor::is_freezable`]).
impl Freezable for AnyExtractor {
    fn freeze_backbone(self) -> Self {
        match self {
            Self::ExtractorWithMlp(m) => Self::ExtractorWithMlp(Freezable::freeze_backbone(m)),
            Self::SmallCnn(m) => Self::SmallCnn(Freezable::freeze_backbone(m)),
            other => other,
        }
    }

    fn unfreeze_backbone(self) -> Self {
        match self {
            Self::ExtractorWithMlp(m) => Self::ExtractorWithMlp(Freezable::unfreeze_backbone(m)),
            Self::SmallCnn(m) => Self::SmallCnn(Freezable::unfreeze_backbone(m)),
            other => other,
        }
    }
}

/// `small_cnn` has no OML layout: its keys are taken as they are, relative to the model itself
/// (what a PyTorch `state_dict` of the same module tree would hold), so a composite model holding
/// one (`concat_siamese`, `trivial_distance_siamese`) still states its own layout.
/// [`AnyExtractor::load_weights`] refuses PyTorch checkpoints for a `small_cnn` on its own.
impl TorchLayout for AnyExtractor {
    fn trial_key(&self) -> &'static str {
        plain!(self, m => m.trial_key(),
            Self::ExtractorWithMlp(m) => m.trial_key(),
            Self::SmallCnn(_) => "conv1.weight")
    }

    fn torch_root(&self) -> &'static str {
        plain!(self, m => m.torch_root(),
            Self::ExtractorWithMlp(m) => m.torch_root(),
            Self::SmallCnn(_) => "")
    }

    fn map_key(&self, key: &str) -> KeyAction {
        plain!(self, m => m.map_key(key),
            Self::ExtractorWithMlp(m) => m.map_key(key),
            Self::SmallCnn(_) => KeyAction::Keep(key.to_string()))
    }

    fn raw_key(&self, key: &str) -> Option<String> {
        plain!(self, m => m.raw_key(key),
            Self::ExtractorWithMlp(m) => m.raw_key(key),
            Self::SmallCnn(_) => Some(key.to_string()))
    }

    fn drops_unneeded(&self) -> bool {
        plain!(self, m => m.drops_unneeded(),
            Self::ExtractorWithMlp(m) => m.drops_unneeded(),
            Self::SmallCnn(_) => false)
    }
}

static ALL_PRETRAINED: LazyLock<Vec<PretrainedEntry>> = LazyLock::new(|| {
    crate::zoo::RESNET_PRETRAINED
        .iter()
        .chain(crate::zoo::VIT_PRETRAINED)
        .chain(crate::zoo::CLIP_PRETRAINED)
        .chain(crate::zoo::UNICOM_PRETRAINED)
        .chain(crate::zoo::MLP_PRETRAINED)
        .cloned()
        .collect()
});

impl Pretrained for AnyExtractor {
    fn registry() -> &'static [PretrainedEntry] {
        &ALL_PRETRAINED
    }

    fn from_entry(
        entry: &PretrainedEntry,
        path: &Path,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let family = crate::zoo::pretrained_model(entry.key)?.family;
        let args: serde_json::Value = crate::zoo::init_args(entry)?;
        let config = ExtractorConfig::try_from(Named {
            name: family.to_string(),
            args,
        })
        .map_err(|reason| ModelError::InvalidArgument {
            name: "init_args",
            value: entry.init_args.into(),
            reason,
        })?;
        if let ExtractorConfig::SmallCnn(_) = config {
            return Err(ModelError::InvalidArgument {
                name: "pretrained",
                value: entry.key.into(),
                reason: format!("there is no pretrained `{SMALL_CNN}`"),
            });
        }
        // The file is already at hand: build the architecture, then load it.
        Ok(config
            .without_weights()
            .init(device)?
            .load_weights(path, &LoadOptions::default())?
            .0)
    }
}

// The concrete extractors' `save` / `load` and the MLP's `Pretrained` are written here, next to
// the configs they store or parse: the extractor modules do not depend on this registry.

/// `save` and `load` of a concrete extractor whose config is stored as
/// `ExtractorConfig::$variant`.
macro_rules! saved_extractor {
    ($extractor:ty, $variant:ident) => {
        impl $extractor {
            /// Saves the weights and the config as burnpack (load back with [`Self::load`] or
            /// [`AnyExtractor::load`]).
            pub fn save(&self, path: &Path) -> Result<(), ModelError> {
                save_with_config(self, &ExtractorConfig::$variant(self.config.clone()), path)
            }

            /// Rebuilds an extractor saved by [`Self::save`].
            pub fn load(path: &Path, device: &Device) -> Result<Self, ModelError> {
                match read_saved_config(path)? {
                    ExtractorConfig::$variant(config) => Ok(crate::checkpoint::load_burnpack(
                        config.init(device)?,
                        path,
                        &LoadOptions::default(),
                    )?
                    .0),
                    other => Err(wrong_saved_kind(path, other.name())),
                }
            }
        }
    };
}

saved_extractor!(ResnetExtractor, Resnet);
saved_extractor!(ViTExtractor, Vit);
saved_extractor!(ViTCLIPExtractor, VitClip);
saved_extractor!(ViTUnicomExtractor, VitUnicom);

impl Pretrained for ExtractorWithMLP<ViTExtractor> {
    fn registry() -> &'static [PretrainedEntry] {
        crate::zoo::MLP_PRETRAINED
    }

    fn from_entry(
        entry: &PretrainedEntry,
        path: &Path,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let config: ExtractorWithMlpConfig = crate::zoo::init_args(entry)?;
        let backbone = match config.extractor.as_ref() {
            ExtractorConfig::Vit(v) => v.init(device)?,
            other => {
                return Err(ModelError::InvalidArgument {
                    name: "extractor",
                    value: other.name().to_string(),
                    reason: format!("the registry entry `{}` needs a vit backbone", entry.key),
                });
            }
        };
        let model = ExtractorWithMLP::new(
            backbone,
            &config.mlp_features,
            config.train_backbone,
            device,
        )?;
        Ok(model.load_weights(path, &LoadOptions::default())?.0)
    }
}

fn json_error(path: &Path, e: serde_json::Error) -> ModelError {
    ModelError::Checkpoint {
        path: path.display().to_string(),
        message: format!("config: {e}"),
    }
}

fn wrong_saved_kind(path: &Path, found: &str) -> ModelError {
    ModelError::Checkpoint {
        path: path.display().to_string(),
        message: format!("the file holds a `{found}` model; load it with AnyExtractor::load"),
    }
}

/// Saves `module` as burnpack with `config` in the metadata.
fn save_with_config<M: Module>(
    module: &M,
    config: &ExtractorConfig,
    path: &Path,
) -> Result<(), ModelError> {
    let json = serde_json::to_string(config).map_err(|e| json_error(path, e))?;
    crate::checkpoint::save_burnpack(module, path, Some(&json))
}

/// The extractor config stored by [`save_with_config`].
fn read_saved_config(path: &Path) -> Result<ExtractorConfig, ModelError> {
    let json = crate::checkpoint::burnpack_config(path)?.ok_or_else(|| ModelError::Checkpoint {
        path: path.display().to_string(),
        message: format!(
            "no `{}` metadata: not saved by oml-models; build the model and use load_weights instead",
            crate::checkpoint::CONFIG_METADATA_KEY
        ),
    })?;
    serde_json::from_str(&json).map_err(|e| json_error(path, e))
}

/// Arguments of OML's `LinearTrivialDistanceSiamese` (`linear_siamese`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSiameseConfig {
    /// Embedding size.
    pub feat_dim: usize,
    /// Start from the identity (plain L2 distance).
    pub identity_init: bool,
    /// Added to the output. Default 0.
    #[serde(default)]
    pub output_bias: f64,
}

/// Arguments of OML's `ConcatSiamese` (`concat_siamese`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcatSiameseConfig {
    /// The backbone (`resnet` or `vit`).
    pub extractor: ExtractorConfig,
    /// Hidden sizes of the head.
    pub mlp_hidden_dims: Vec<usize>,
    /// Average `predict` over both input orders. Default `false`.
    #[serde(default)]
    pub use_tta: bool,
    /// Weights of the whole model (a path; OML has no pretrained keys for it).
    #[serde(default)]
    pub weights: Option<String>,
}

/// Arguments of OML's `TrivialDistanceSiamese` (`trivial_distance_siamese`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrivialDistanceSiameseConfig {
    /// The extractor.
    pub extractor: ExtractorConfig,
    /// Added to the output. Default 0.
    #[serde(default)]
    pub output_bias: f64,
}

/// A pairwise-model config: OML's `{name: linear_siamese | concat_siamese |
/// trivial_distance_siamese, args: {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WithWeights", into = "Named")]
pub enum PairwiseConfig {
    /// `linear_siamese`.
    LinearSiamese(LinearSiameseConfig),
    /// `concat_siamese`.
    ConcatSiamese(ConcatSiameseConfig),
    /// `trivial_distance_siamese`.
    TrivialDistanceSiamese(TrivialDistanceSiameseConfig),
}

impl TryFrom<Named> for PairwiseConfig {
    type Error = String;

    fn try_from(n: Named) -> Result<Self, String> {
        let err = |e: ArgsError| format!("pairwise model `{}`: {e}", n.name);
        match n.name.as_str() {
            "linear_siamese" => n.args_as().map(Self::LinearSiamese).map_err(err),
            "concat_siamese" => n.args_as().map(Self::ConcatSiamese).map_err(err),
            "trivial_distance_siamese" => {
                n.args_as().map(Self::TrivialDistanceSiamese).map_err(err)
            }
            other => Err(format!(
                "unknown pairwise model `{other}`; available: {}",
                PAIRWISE_NAMES.join(", ")
            )),
        }
    }
}

impl TryFrom<WithWeights> for PairwiseConfig {
    type Error = String;

    fn try_from(w: WithWeights) -> Result<Self, String> {
        match (w.name.as_str(), &w.weights) {
            ("linear_siamese", Some(_)) => Err("`linear_siamese` takes no weights".into()),
            ("trivial_distance_siamese", Some(_)) => Err(
                "`trivial_distance_siamese` takes no weights of its own; set them on its extractor"
                    .into(),
            ),
            _ => {
                let name = w.name.clone();
                Self::try_from(w.into_named().map_err(|e| format!("`{name}`: {e}"))?)
            }
        }
    }
}

impl From<PairwiseConfig> for Named {
    fn from(c: PairwiseConfig) -> Self {
        match &c {
            PairwiseConfig::LinearSiamese(a) => Named::new(c.name(), a),
            PairwiseConfig::ConcatSiamese(a) => Named::new(c.name(), a),
            PairwiseConfig::TrivialDistanceSiamese(a) => Named::new(c.name(), a),
        }
    }
}

impl PairwiseConfig {
    /// OML's registry name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::LinearSiamese(_) => "linear_siamese",
            Self::ConcatSiamese(_) => "concat_siamese",
            Self::TrivialDistanceSiamese(_) => "trivial_distance_siamese",
        }
    }

    /// Builds the model with random weights (no `weights` is read).
    pub fn init(&self, device: &Device) -> Result<AnyPairwise, ModelError> {
        Ok(match self {
            Self::LinearSiamese(a) => {
                AnyPairwise::LinearSiamese(LinearTrivialDistanceSiamese::new(
                    a.feat_dim,
                    a.identity_init,
                    a.output_bias,
                    device,
                )?)
            }
            Self::ConcatSiamese(a) => AnyPairwise::ConcatSiamese(ConcatSiamese::new(
                a.extractor.init(device)?,
                &a.mlp_hidden_dims,
                a.use_tta,
                device,
            )?),
            Self::TrivialDistanceSiamese(a) => AnyPairwise::TrivialDistanceSiamese(
                TrivialDistanceSiamese::new(a.extractor.init(device)?, a.output_bias),
            ),
        })
    }

    /// Builds the model and loads every `weights` given, as OML's `get_pairwise_model_by_cfg`.
    pub fn build(&self, device: &Device) -> Result<AnyPairwise, ModelError> {
        Ok(match self {
            Self::LinearSiamese(_) => self.init(device)?,
            Self::ConcatSiamese(a) => {
                if let (Some(w), Some(_)) = (&a.weights, a.extractor.weights()) {
                    return Err(nested_weights_twice(w));
                }
                let model = ConcatSiamese::new(
                    a.extractor.build(device)?,
                    &a.mlp_hidden_dims,
                    a.use_tta,
                    device,
                )?;
                match &a.weights {
                    None => AnyPairwise::ConcatSiamese(model),
                    Some(w) => AnyPairwise::ConcatSiamese(
                        model.load_weights(Path::new(w), &LoadOptions::default())?.0,
                    ),
                }
            }
            Self::TrivialDistanceSiamese(a) => AnyPairwise::TrivialDistanceSiamese(
                TrivialDistanceSiamese::new(a.extractor.build(device)?, a.output_bias),
            ),
        })
    }
}

/// Any pairwise model of OML's registry, built from a [`PairwiseConfig`].
// Burn cannot derive `Module` through a `Box`, so variants stay inline (one value per model).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AnyPairwise {
    /// `linear_siamese`.
    LinearSiamese(LinearTrivialDistanceSiamese),
    /// `concat_siamese`.
    ConcatSiamese(ConcatSiamese<AnyExtractor>),
    /// `trivial_distance_siamese`.
    TrivialDistanceSiamese(TrivialDistanceSiamese<AnyExtractor>),
}

impl AnyPairwise {
    /// Whether OML treats this model as `IFreezable` (only `concat_siamese`).
    pub fn is_freezable(&self) -> bool {
        matches!(self, Self::ConcatSiamese(_))
    }

    /// Loads a checkpoint of the whole pairwise model (`.bpk` ours, else PyTorch).
    pub fn load_weights(
        self,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<(Self, LoadReport), ModelError> {
        match self {
            Self::LinearSiamese(m) => crate::checkpoint::load_weights(m, path, options)
                .map(|(m, r)| (Self::LinearSiamese(m), r)),
            Self::ConcatSiamese(m) => m
                .load_weights(path, options)
                .map(|(m, r)| (Self::ConcatSiamese(m), r)),
            Self::TrivialDistanceSiamese(m) => crate::checkpoint::load_weights(m, path, options)
                .map(|(m, r)| (Self::TrivialDistanceSiamese(m), r)),
        }
    }
}

impl PairwiseModel for AnyPairwise {
    fn forward_pair(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
        match self {
            Self::LinearSiamese(m) => m.forward_pair(x1, x2),
            Self::ConcatSiamese(m) => m.forward_pair(x1, x2),
            Self::TrivialDistanceSiamese(m) => m.forward_pair(x1, x2),
        }
    }

    fn predict(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
        match self {
            Self::LinearSiamese(m) => m.predict(x1, x2),
            Self::ConcatSiamese(m) => m.predict(x1, x2),
            Self::TrivialDistanceSiamese(m) => m.predict(x1, x2),
        }
    }
}

/// Freezes `concat_siamese`'s backbone; the other pairwise models are not `IFreezable` in OML and
/// are returned unchanged.
impl Freezable for AnyPairwise {
    fn freeze_backbone(self) -> Self {
        match self {
            Self::ConcatSiamese(m) => Self::ConcatSiamese(Freezable::freeze_backbone(m)),
            other => other,
        }
    }

    fn unfreeze_backbone(self) -> Self {
        match self {
            Self::ConcatSiamese(m) => Self::ConcatSiamese(Freezable::unfreeze_backbone(m)),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oml_interfaces::device::test_device;

    fn small_cnn_named() -> Named {
        Named {
            name: SMALL_CNN.into(),
            args: serde_json::json!({"feat_dim": 8, "channels": [4, 4, 8]}),
        }
    }

    #[test]
    fn small_cnn_round_trips_through_named_and_a_saved_file() {
        let config = ExtractorConfig::try_from(small_cnn_named()).unwrap();
        let ExtractorConfig::SmallCnn(args) = &config else {
            panic!("{config:?}");
        };
        // the defaults of the arguments not given
        assert_eq!(
            (
                args.normalise_features,
                args.batch_norm,
                args.weights.as_deref()
            ),
            (true, true, None)
        );
        assert!(config.is_freezable() && EXTRACTOR_NAMES.contains(&config.name()));
        let named = Named::from(config.clone());
        assert_eq!(ExtractorConfig::try_from(named).unwrap(), config);

        let device = test_device();
        device.seed(3);
        let model = config.build(&device).unwrap();
        assert!(matches!(model, AnyExtractor::SmallCnn(_)) && model.is_freezable());
        assert_eq!(model.config(), config);
        assert_eq!(model.feat_dim(), 8);
        // reading the config leaves lazily initialised weights alone (a pipeline that seeds the
        // device and builds the model draws the same weights whoever reads the config first)
        let AnyExtractor::SmallCnn(cnn) = &model else {
            unreachable!()
        };
        assert!(!cnn.conv1.weight.is_initialized() && !cnn.head.weight.is_initialized());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.bpk");
        model.save(&path).unwrap();
        // the metadata oml-train has always written for small_cnn, so older files load
        let saved = crate::checkpoint::burnpack_config(&path).unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&saved).unwrap(),
            serde_json::json!({"name": "small_cnn", "args": {"feat_dim": 8, "channels": [4, 4, 8],
                "normalise_features": true, "batch_norm": true, "weights": null}})
        );

        let x = Tensor::<4>::random([2, 3, 28, 28], burn::tensor::Distribution::Default, &device);
        let before = model.extract(x.clone());
        let diff = |m: &AnyExtractor| {
            (m.extract(x.clone()) - before.clone())
                .abs()
                .max()
                .into_scalar::<f32>()
        };
        let loaded = AnyExtractor::load(&path, &device).unwrap();
        assert!(matches!(loaded, AnyExtractor::SmallCnn(_)));
        assert_eq!(diff(&loaded), 0.0);
        // a file written by oml-train before small_cnn joined the registry (its JSON text)
        let old = dir.path().join("old.bpk");
        let old_json = r#"{"args":{"batch_norm":true,"channels":[4,4,8],"feat_dim":8,"normalise_features":true,"weights":null},"name":"small_cnn"}"#;
        crate::checkpoint::save_burnpack(cnn, &old, Some(old_json)).unwrap();
        assert_eq!(diff(&AnyExtractor::load(&old, &device).unwrap()), 0.0);
        // `weights` in the config, and `load_weights` on a fresh model, read the same file
        let mut with_weights = small_cnn_named();
        with_weights.args["weights"] = path.to_string_lossy().into_owned().into();
        let built = ExtractorConfig::try_from(with_weights)
            .unwrap()
            .build(&device)
            .unwrap();
        assert_eq!(diff(&built), 0.0);
        let (reloaded, _) = config
            .init(&device)
            .unwrap()
            .load_weights(&path, &LoadOptions::default())
            .unwrap();
        assert_eq!(diff(&reloaded), 0.0);
    }

    #[test]
    fn small_cnn_has_no_pytorch_checkpoints_nor_pretrained_weights() {
        let device = test_device();
        let config = ExtractorConfig::try_from(small_cnn_named()).unwrap();
        let e = config
            .init(&device)
            .unwrap()
            .load_weights(Path::new("model.pth"), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("small_cnn") && e.contains("model.pth"), "{e}");
        let e = AnyExtractor::from_pretrained("small_cnn", &device)
            .unwrap_err()
            .to_string();
        assert!(e.contains("small_cnn"), "{e}");
    }

    #[test]
    fn small_cnn_arguments_are_checked() {
        let mut n = small_cnn_named();
        n.args["chanels"] = serde_json::json!([1, 2, 3]);
        let e = ExtractorConfig::try_from(n).unwrap_err();
        assert!(e.contains("small_cnn") && e.contains("chanels"), "{e}");
        let mut n = small_cnn_named();
        n.args["feat_dim"] = 0.into();
        let e = ExtractorConfig::try_from(n)
            .unwrap()
            .build(&test_device())
            .unwrap_err()
            .to_string();
        assert!(e.contains("feat_dim"), "{e}");
        let e = ExtractorConfig::try_from(Named::new("nope", ())).unwrap_err();
        assert!(e.contains("small_cnn"), "{e}");
        // not a backbone of extractor_with_mlp
        let mlp: ExtractorConfig = serde_json::from_value(serde_json::json!({
            "name": "extractor_with_mlp",
            "args": {"mlp_features": [4], "extractor": {"name": "small_cnn", "args": {"feat_dim": 8}}}
        }))
        .unwrap();
        let e = mlp.build(&test_device()).unwrap_err().to_string();
        assert!(
            e.contains("small_cnn") && e.contains("`vit_clip` or `vit_unicom`"),
            "{e}"
        );
    }
}
