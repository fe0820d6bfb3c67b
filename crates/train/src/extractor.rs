//! The extractors a pipeline can train or run: every model of `oml-models`' registry
//! (`resnet`, `vit`, `vit_clip`, `vit_unicom`, `extractor_with_mlp`, and `small_cnn` for 28×28
//! inputs), built from a config's `extractor` section ([`parse`], then
//! [`ExtractorConfig::build`]) and saved with their config ([`AnyExtractor::save`]) so
//! `oml validate` / `oml predict` can load them back.

use std::path::Path;

use oml_models::checkpoint::burnpack_config;
use oml_models::config::WeightsError;
pub use oml_models::config::{SMALL_CNN, SmallCnnArgs};
pub use oml_models::{AnyExtractor, ExtractorConfig};
use serde_json::Value;

use crate::config::{ExtractorSection, NamedExt};
use crate::error::TrainError;

/// Parses a config's `extractor` section (`key` is its path for errors: a wrong argument of
/// `small_cnn` is reported at `key.args.<path>`, a `weights` given twice at `key.weights`).
pub fn parse(s: &ExtractorSection, key: &str) -> Result<ExtractorConfig, TrainError> {
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
        // flat arguments: the error names the key path inside `args`
        return Ok(ExtractorConfig::SmallCnn(named.args_at(key)?));
    }
    ExtractorConfig::try_from(named).map_err(|e| TrainError::config(key, e))
}

/// The extractor section recorded in a file saved by [`AnyExtractor::save`], if any.
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
    use burn::prelude::*;
    use oml_interfaces::Extractor;
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
        let config = parse(&small(None), "extractor").unwrap();
        assert!(config.is_freezable());
        let m = config.build(&device).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.bpk");
        m.save(&path).unwrap();
        let back = parse(&small(Some(path.to_str().unwrap())), "extractor")
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
        assert_eq!(parse(&section, "extractor").unwrap(), config);
    }

    #[test]
    fn bad_sections_name_the_key() {
        let mut s = small(None);
        s.args = serde_json::json!({"feat_dim": 8, "chanels": [1, 2, 3]});
        let e = parse(&s, "extractor").unwrap_err().to_string();
        assert!(e.contains("extractor.args") && e.contains("chanels"), "{e}");
        s.args = serde_json::json!({"feat_dim": 8, "weights": "a.bpk"});
        s.weights = Some("b.bpk".into());
        let e = parse(&s, "extractor").unwrap_err().to_string();
        assert!(e.contains("extractor.weights"), "{e}");
        s.weights = None;
        s.name = "resnett".into();
        let e = parse(&s, "extractor").unwrap_err().to_string();
        assert!(e.contains("resnett") && e.contains("small_cnn"), "{e}");
    }
}
