//! The extractors a pipeline can train or run: the small CNN for 28×28 inputs, and every model
//! of `oml-models`' registry (`resnet`, `vit`, `extractor_with_mlp`), built from a config's
//! `extractor` section and saved with their config so `oml validate` / `oml predict` can load
//! them back.

use std::path::Path;

use burn::prelude::*;
use oml_interfaces::{Extractor, Freezable};
use oml_models::checkpoint::{LoadOptions, burnpack_config, load_burnpack, save_burnpack};
use oml_models::config::WeightsError;
use oml_models::{AnyExtractor, ExtractorConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ExtractorSection, NamedExt};
use crate::error::TrainError;
use crate::small_cnn::{SmallCnn, SmallCnnConfig};

/// Registry name of the small CNN.
pub const SMALL_CNN: &str = "small_cnn";

/// Arguments of `small_cnn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmallCnnArgs {
    /// Embedding size.
    pub feat_dim: usize,
    /// Channels of the three convolution stages.
    #[serde(default = "default_channels")]
    pub channels: [usize; 3],
    /// L2-normalise the embeddings.
    #[serde(default = "default_true")]
    pub normalise_features: bool,
    /// Batch norm after each convolution.
    #[serde(default = "default_true")]
    pub batch_norm: bool,
    /// Weights (a `.bpk` saved by `oml train`).
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
    fn model_config(&self) -> SmallCnnConfig {
        SmallCnnConfig::new(self.feat_dim)
            .with_channels(self.channels)
            .with_normalise_features(self.normalise_features)
            .with_batch_norm(self.batch_norm)
    }
}

/// An extractor of any supported kind.
#[derive(Module, Debug)]
pub enum TrainExtractor {
    /// `small_cnn`.
    SmallCnn(SmallCnn),
    /// A model of `oml-models`' registry.
    Zoo(AnyExtractor),
}

impl Extractor for TrainExtractor {
    fn feat_dim(&self) -> usize {
        match self {
            Self::SmallCnn(m) => m.feat_dim(),
            Self::Zoo(m) => m.feat_dim(),
        }
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Self::SmallCnn(m) => m.extract(images),
            Self::Zoo(m) => m.extract(images),
        }
    }

    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        match self {
            Self::SmallCnn(m) => m.inference(),
            Self::Zoo(m) => m.inference(),
        }
    }
}

impl Freezable for TrainExtractor {
    fn freeze_backbone(self) -> Self {
        match self {
            Self::SmallCnn(m) => Self::SmallCnn(m.freeze_backbone()),
            Self::Zoo(m) => Self::Zoo(m.freeze_backbone()),
        }
    }

    fn unfreeze_backbone(self) -> Self {
        match self {
            Self::SmallCnn(m) => Self::SmallCnn(m.unfreeze_backbone()),
            Self::Zoo(m) => Self::Zoo(m.unfreeze_backbone()),
        }
    }
}

/// A parsed `extractor` section.
#[derive(Debug, Clone, PartialEq)]
pub enum ExtractorSpec {
    /// `small_cnn`.
    SmallCnn(SmallCnnArgs),
    /// `resnet`, `vit`, `extractor_with_mlp`.
    Zoo(ExtractorConfig),
}

impl ExtractorSpec {
    /// Parses a config's `extractor` section (`key` is its path for errors).
    pub fn parse(s: &ExtractorSection, key: &str) -> Result<Self, TrainError> {
        let named = s.clone().into_named().map_err(|e| match e {
            WeightsError::ArgsNotAMapping => {
                TrainError::config(format!("{key}.args"), "expected a mapping")
            }
            WeightsError::GivenTwice => TrainError::config(
                format!("{key}.weights"),
                "`weights` is given both here and in `args`",
            ),
        })?;
        if named.name == SMALL_CNN {
            return Ok(Self::SmallCnn(named.args_at(key)?));
        }
        let config = ExtractorConfig::try_from(named)
            .map_err(|e| TrainError::config(key, format!("{e} (or `{SMALL_CNN}`)")))?;
        Ok(Self::Zoo(config))
    }

    /// The registry name.
    pub fn name(&self) -> &str {
        match self {
            Self::SmallCnn(_) => SMALL_CNN,
            Self::Zoo(c) => c.name(),
        }
    }

    /// The `weights` to load, if any.
    pub fn weights(&self) -> Option<&str> {
        match self {
            Self::SmallCnn(a) => a.weights.as_deref(),
            Self::Zoo(c) => c.weights(),
        }
    }

    /// Whether freezing affects this extractor (the small CNN and OML's freezable models).
    pub fn is_freezable(&self) -> bool {
        match self {
            Self::SmallCnn(_) => true,
            Self::Zoo(c) => matches!(c, ExtractorConfig::ExtractorWithMlp(_)),
        }
    }

    /// The section as JSON, without weights (what a saved file records).
    pub fn to_json(&self) -> Value {
        match self {
            Self::SmallCnn(a) => {
                let mut a = a.clone();
                a.weights = None;
                serde_json::json!({"name": SMALL_CNN, "args": a})
            }
            Self::Zoo(c) => serde_json::to_value(c).unwrap_or(Value::Null),
        }
    }

    /// Builds the model and loads its `weights` when given (pretrained keys are downloaded).
    pub fn build(&self, device: &Device) -> Result<TrainExtractor, TrainError> {
        match self {
            Self::SmallCnn(a) => {
                let model = a.model_config().try_init(device)?;
                match &a.weights {
                    None => Ok(TrainExtractor::SmallCnn(model)),
                    Some(w) => {
                        let (m, _) = load_burnpack(model, Path::new(w), &LoadOptions::default())?;
                        Ok(TrainExtractor::SmallCnn(m))
                    }
                }
            }
            Self::Zoo(c) => Ok(TrainExtractor::Zoo(c.build(device)?)),
        }
    }
}

impl TrainExtractor {
    /// Saves the weights with `spec`'s section in the file's metadata.
    pub fn save(&self, spec: &ExtractorSpec, path: &Path) -> Result<(), TrainError> {
        let json = spec.to_json().to_string();
        match self {
            Self::SmallCnn(m) => Ok(save_burnpack(m, path, Some(&json))?),
            Self::Zoo(m) => Ok(m.save(path)?),
        }
    }
}

/// The extractor section recorded in a file saved by [`TrainExtractor::save`], if any.
pub fn saved_section(path: &Path) -> Option<ExtractorSection> {
    let json = burnpack_config(path).ok().flatten()?;
    let v: Value = serde_json::from_str(&json).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    Some(ExtractorSection {
        name,
        args: v.get("args").cloned().unwrap_or(Value::Null),
        weights: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oml_interfaces::device::test_device;

    fn small(weights: Option<&str>) -> ExtractorSection {
        ExtractorSection {
            name: SMALL_CNN.into(),
            args: serde_json::json!({"feat_dim": 8, "channels": [4, 4, 8]}),
            weights: weights.map(String::from),
        }
    }

    #[test]
    fn small_cnn_round_trips_through_a_saved_file() {
        let device = test_device();
        let spec = ExtractorSpec::parse(&small(None), "extractor").unwrap();
        let m = spec.build(&device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.bpk");
        m.save(&spec, &path).unwrap();
        let back = ExtractorSpec::parse(&small(Some(path.to_str().unwrap())), "extractor")
            .unwrap()
            .build(&device)
            .unwrap();
        let x = Tensor::<4>::ones([2, 3, 28, 28], &device);
        let d = (m.extract(x.clone()) - back.extract(x))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(d, 0.0);
        let section = saved_section(&path).unwrap();
        assert_eq!(section.name, SMALL_CNN);
        assert_eq!(section.args["feat_dim"], 8);
    }

    #[test]
    fn bad_sections_name_the_key() {
        let mut s = small(None);
        s.args = serde_json::json!({"feat_dim": 8, "chanels": [1, 2, 3]});
        let e = ExtractorSpec::parse(&s, "extractor")
            .unwrap_err()
            .to_string();
        assert!(e.contains("extractor.args") && e.contains("chanels"), "{e}");
        s.name = "resnett".into();
        let e = ExtractorSpec::parse(&s, "extractor")
            .unwrap_err()
            .to_string();
        assert!(e.contains("resnett"), "{e}");
    }
}
