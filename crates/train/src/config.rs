//! YAML configs of the pipelines, with OML's keys (reference §1.9).
//!
//! Every struct denies unknown keys, and [`load_config`] / [`parse_config`] report the path of
//! the offending key (`optimizer.args.lrr: unknown field …`, `max_epochs: invalid type …`).
//! Sections owned by other crates (`sampler`, `extractor`, `criterion`, `metric_args`,
//! `logger`, `transforms_*`) are kept as `{name, args}` values here
//! ([`oml_interfaces::registry::Named`], [`ExtractorSection`]) and checked when the pipeline
//! builds them, with the same key-path prefix ([`NamedExt`]).

use std::path::{Path, PathBuf};

use oml_interfaces::device::DeviceCount;
use oml_interfaces::registry::ArgsError;
pub use oml_interfaces::registry::Named;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TrainError;
use crate::progress::Console;

/// How to run `oml validate` or `oml predict` beyond their YAML config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Backend name (wins over the config's `accelerator`).
    pub device: Option<String>,
    /// Paths in the config are relative to this folder.
    pub base_dir: PathBuf,
    /// Where progress is printed.
    pub console: Console,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            device: None,
            base_dir: PathBuf::from("."),
            console: Console::quiet(),
        }
    }
}

/// A `{name, args}` section, as OML's registries take them: [`Named`], the one wire type of
/// every registry section (read it with [`NamedExt`]).
pub type NamedArgs = Named;

/// Reading a `{name, args}` section of a config, with errors naming its key.
pub trait NamedExt {
    /// The section as a registry's own `{name, args}` config type (a sampler's, a criterion's);
    /// errors name `key.<path>`.
    fn typed<T: DeserializeOwned>(&self, key: &str) -> Result<T, TrainError>;

    /// The arguments as `T` ([`Named::args_as`]); errors name `key.args.<path>`.
    fn args_at<T: DeserializeOwned>(&self, key: &str) -> Result<T, TrainError>;
}

impl NamedExt for Named {
    fn typed<T: DeserializeOwned>(&self, key: &str) -> Result<T, TrainError> {
        section(
            serde_json::json!({"name": self.name, "args": self.args_object()}),
            key,
        )
    }

    fn args_at<T: DeserializeOwned>(&self, key: &str) -> Result<T, TrainError> {
        self.args_as().map_err(|e| args_error(key, e))
    }
}

/// An argument error of the section at `key`, as a config error naming `key.args.<path>`.
pub fn args_error(key: &str, e: ArgsError) -> TrainError {
    TrainError::Config {
        file: String::new(),
        key: format!("{key}.{}", e.key()),
        message: e.message,
    }
}

/// An extractor section: OML's `{name, args}` plus an optional top-level `weights` (`small_cnn`,
/// `resnet`, `vit`, `vit_clip`, `vit_unicom`, `extractor_with_mlp`; `weights` is a `.bpk` file
/// saved by `oml train`, a PyTorch checkpoint, or a pretrained key). Read it with
/// [`extractor::parse`](crate::extractor::parse).
pub type ExtractorSection = oml_models::config::WithWeights;

/// `max` or `min`: which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Higher is better (OML's default).
    #[default]
    Max,
    /// Lower is better.
    Min,
}

impl Mode {
    /// Whether `candidate` is better than `best` (NaN is never better).
    pub fn better(self, candidate: f64, best: f64) -> bool {
        if candidate.is_nan() {
            return false;
        }
        if best.is_nan() {
            return true;
        }
        match self {
            Mode::Max => candidate > best,
            Mode::Min => candidate < best,
        }
    }
}

/// When the LR scheduler steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerInterval {
    /// After every optimizer step (OML's default).
    #[default]
    Step,
    /// After every epoch.
    Epoch,
}

/// OML's `scheduling` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduling {
    /// `{name, args}` of the scheduler (`step`, `multi_step`, `exponential`, `cosine_annealing`,
    /// `linear`, `constant`).
    pub scheduler: NamedArgs,
    /// `step` or `epoch`.
    #[serde(default)]
    pub scheduler_interval: SchedulerInterval,
    /// Step the scheduler every this many intervals.
    #[serde(default = "one")]
    pub scheduler_frequency: usize,
    /// Only for `reduce_on_plateau`, which Burn does not provide: must be absent.
    #[serde(default)]
    pub monitor_metric: Option<String>,
}

pub(crate) fn one() -> usize {
    1
}
pub(crate) fn default_seed() -> u64 {
    42
}
pub(crate) fn default_precision() -> u32 {
    32
}
pub(crate) fn default_dataframe() -> String {
    "df.csv".to_string()
}
fn default_bs_val() -> usize {
    256
}
pub(crate) fn default_true() -> bool {
    true
}
pub(crate) fn default_checkpoint_metric() -> String {
    "OVERALL/cmc/1".to_string()
}
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
pub(crate) fn default_logs_root() -> PathBuf {
    PathBuf::from("runs")
}

/// Preparing the data set on first use (oml-rs addition): `{name: fashion_mnist, args: {...}}`.
pub type PrepareData = NamedArgs;

/// `oml train`: extractor training (OML's `extractor_training_pipeline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of weights' initialisation and of the sampler.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Backend name (`cpu`, `flex`, `ndarray`, `wgpu`, `gpu`).
    #[serde(default)]
    pub accelerator: Option<String>,
    /// The CPU fast path on the CPU backends (`oml_interfaces::cpu`): `true` (the default) or
    /// `false` for Burn's ops alone. The CLI's `--cpu-fast-path` and `OML_CPU_FAST_PATH` win.
    #[serde(default)]
    pub cpu_fast_path: Option<bool>,
    /// Number of devices (data-parallel on more than one), `all` or -1 for every GPU.
    #[serde(default)]
    pub devices: Option<DeviceCount>,
    /// Only 32 (float32) is supported.
    #[serde(default = "default_precision")]
    pub precision: u32,
    /// Folder the dataframe's relative paths start from.
    pub dataset_root: PathBuf,
    /// The dataframe CSV inside `dataset_root`.
    #[serde(default = "default_dataframe")]
    pub dataframe_name: String,
    /// Decoded images kept in memory (0: none).
    #[serde(default)]
    pub cache_size: usize,
    /// Print the dataframe's warnings.
    #[serde(default = "default_true")]
    pub show_dataset_warnings: bool,
    /// Drop the rows whose image cannot be read (decoded, or cropped to its box) before
    /// training, printing how many and which; without it (the default) such an image stops the
    /// run with an error naming it. Not written when false, so older configs keep their
    /// fingerprint.
    #[serde(default, skip_serializing_if = "crate::config::is_false")]
    pub skip_broken_images: bool,
    /// Data-loading threads.
    #[serde(default)]
    pub num_workers: usize,
    /// Training transforms `{name, args}` (null: the default for the extractor).
    #[serde(default)]
    pub transforms_train: Option<NamedArgs>,
    /// Validation transforms `{name, args}`.
    #[serde(default)]
    pub transforms_val: Option<NamedArgs>,
    /// `{name, args}` of a P×K sampler; null means shuffled batches of `bs_train`.
    #[serde(default)]
    pub sampler: Option<NamedArgs>,
    /// Batch size when there is no sampler.
    #[serde(default)]
    pub bs_train: Option<usize>,
    /// Validation batch size.
    #[serde(default = "default_bs_val")]
    pub bs_val: usize,
    /// Number of epochs.
    pub max_epochs: usize,
    /// Validate every this many epochs (and after the last).
    #[serde(default = "one")]
    pub valid_period: usize,
    /// `EmbeddingMetrics` arguments (`cmc_top_k`, `map_top_k`, …).
    #[serde(default)]
    pub metric_args: Value,
    /// Log the worst queries as images.
    #[serde(default)]
    pub log_images: bool,
    /// Metric that picks the best checkpoint, as logged (`OVERALL/cmc/1`).
    #[serde(default = "default_checkpoint_metric")]
    pub metric_for_checkpointing: String,
    /// `max` or `min`.
    #[serde(default)]
    pub mode_for_checkpointing: Mode,
    /// The extractor.
    pub extractor: ExtractorSection,
    /// The criterion `{name, args}` (with a nested `miner` for `triplet_with_miner`).
    pub criterion: NamedArgs,
    /// The optimizer `{name, args: {lr, …}}`.
    pub optimizer: NamedArgs,
    /// LR scheduling, or null.
    #[serde(default)]
    pub scheduling: Option<Scheduling>,
    /// Logger `{name, args}`; null means TensorBoard in the run directory.
    #[serde(default)]
    pub logger: Option<Value>,
    /// Epochs during which the backbone is frozen.
    #[serde(default)]
    pub freeze_n_epochs: usize,
    /// Tags for the loggers.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Suffix of the run folder's name.
    #[serde(default)]
    pub postfix: Option<String>,
    /// Folder holding run folders.
    #[serde(default = "default_logs_root")]
    pub logs_root: PathBuf,
    /// Run folder name (default: `<config name>_<date>_<time>[_postfix]`).
    #[serde(default)]
    pub logs_folder: Option<String>,
    /// Prepare the data set when `dataset_root/dataframe_name` is missing (oml-rs).
    #[serde(default)]
    pub prepare_data: Option<PrepareData>,
    /// Retrieval examples shown per worst-queries figure (oml-rs; OML shows 5).
    #[serde(default)]
    pub n_worst_queries: Option<usize>,
}

/// `oml validate`: metrics of an extractor on the validation split (OML's
/// `extractor_validation_pipeline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Backend name.
    #[serde(default)]
    pub accelerator: Option<String>,
    /// The CPU fast path on the CPU backends (`oml_interfaces::cpu`): `true` (the default) or
    /// `false` for Burn's ops alone. The CLI's `--cpu-fast-path` and `OML_CPU_FAST_PATH` win.
    #[serde(default)]
    pub cpu_fast_path: Option<bool>,
    /// Number of devices (inference uses the first).
    #[serde(default)]
    pub devices: Option<DeviceCount>,
    /// Only 32.
    #[serde(default = "default_precision")]
    pub precision: u32,
    /// Seed (post-processors that sample).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Folder the dataframe's relative paths start from.
    pub dataset_root: PathBuf,
    /// The dataframe CSV inside `dataset_root`.
    #[serde(default = "default_dataframe")]
    pub dataframe_name: String,
    /// Batch size.
    #[serde(default = "default_bs_val")]
    pub bs_val: usize,
    /// Data-loading threads.
    #[serde(default)]
    pub num_workers: usize,
    /// Print the dataframe's warnings.
    #[serde(default = "default_true")]
    pub show_dataset_warnings: bool,
    /// Validation transforms.
    #[serde(default)]
    pub transforms_val: Option<NamedArgs>,
    /// The extractor, with `weights` (a checkpoint or a pretrained key).
    pub extractor: ExtractorSection,
    /// `EmbeddingMetrics` arguments.
    #[serde(default)]
    pub metric_args: Value,
    /// Optional post-processor `{name, args}`.
    #[serde(default)]
    pub postprocessor: Option<NamedArgs>,
    /// Write `metrics.json` (and figures with `log_images`) here (oml-rs).
    #[serde(default)]
    pub save_dir: Option<PathBuf>,
    /// Save the worst-queries figures to `save_dir`.
    #[serde(default)]
    pub log_images: bool,
    /// Prepare the data set when missing (oml-rs).
    #[serde(default)]
    pub prepare_data: Option<PrepareData>,
    /// Retrieval examples per worst-queries figure.
    #[serde(default)]
    pub n_worst_queries: Option<usize>,
}

/// `oml predict`: embeddings of every image under a folder (OML's
/// `extractor_prediction_pipeline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictConfig {
    /// Backend name.
    #[serde(default)]
    pub accelerator: Option<String>,
    /// The CPU fast path on the CPU backends (`oml_interfaces::cpu`): `true` (the default) or
    /// `false` for Burn's ops alone. The CLI's `--cpu-fast-path` and `OML_CPU_FAST_PATH` win.
    #[serde(default)]
    pub cpu_fast_path: Option<bool>,
    /// Number of devices (inference uses the first).
    #[serde(default)]
    pub devices: Option<DeviceCount>,
    /// Only 32.
    #[serde(default = "default_precision")]
    pub precision: u32,
    /// Folder searched recursively for images.
    pub data_dir: PathBuf,
    /// Output folder: `predictions.json`, `embeddings.npy`, `paths.csv`.
    pub save_dir: PathBuf,
    /// Batch size.
    #[serde(default = "default_bs_val")]
    pub bs: usize,
    /// Data-loading threads.
    #[serde(default)]
    pub num_workers: usize,
    /// Transforms.
    #[serde(default)]
    pub transforms_predict: Option<NamedArgs>,
    /// The extractor, with `weights`.
    pub extractor: ExtractorSection,
}

/// Reads a YAML config of type `T`; errors name the file and the key path.
pub fn load_config<T: DeserializeOwned>(path: &Path) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_config(&text).map_err(|e| match e {
        TrainError::Config { key, message, .. } => TrainError::Config {
            file: path.display().to_string(),
            key,
            message,
        },
        other => other,
    })
}

/// Parses a YAML config of type `T`; errors name the key path.
pub fn parse_config<T: DeserializeOwned>(text: &str) -> Result<T, TrainError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let message = e.into_inner().to_string();
        // serde_yaml_ng already prefixes some messages with the path
        let message = message
            .strip_prefix(&format!("{key}: "))
            .map(str::to_string)
            .unwrap_or(message);
        TrainError::Config {
            file: String::new(),
            key,
            message,
        }
    })
}

/// Deserialises a section of a config from its JSON value; errors name `prefix.<path>`.
pub fn section<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, TrainError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let mut key = if inner == "." || inner.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{inner}")
        };
        let mut message = e.into_inner().to_string();
        // a registry's argument error, carried by serde as text: its path joins the key
        if let Some((path, rest)) = oml_interfaces::registry::split_registry_error(&message) {
            key = format!("{key}.{path}");
            message = rest;
        }
        TrainError::Config {
            file: String::new(),
            key,
            message,
        }
    })
}

/// Resolves `path` against `base` unless it is absolute.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
dataset_root: data
max_epochs: 3
extractor: {name: small_cnn, args: {feat_dim: 8}}
criterion: {name: triplet_with_miner, args: {margin: 0.2}}
optimizer: {name: adam, args: {lr: 0.001}}
";

    #[test]
    fn minimal_config_gets_oml_defaults() {
        let c: TrainConfig = parse_config(MINIMAL).unwrap();
        assert_eq!(c.seed, 42);
        assert_eq!(c.dataframe_name, "df.csv");
        assert_eq!(c.valid_period, 1);
        assert_eq!(c.metric_for_checkpointing, "OVERALL/cmc/1");
        assert_eq!(c.mode_for_checkpointing, Mode::Max);
        assert_eq!(c.bs_val, 256);
        assert_eq!(c.criterion.name, "triplet_with_miner");
    }

    #[test]
    fn unknown_key_is_an_error_naming_its_path() {
        let text = format!(
            "{MINIMAL}scheduling: {{scheduler: {{name: step, args: {{}}}}, intervall: step}}\n"
        );
        let e = parse_config::<TrainConfig>(&text).unwrap_err().to_string();
        assert!(e.contains("scheduling"), "{e}");
        assert!(e.contains("intervall"), "{e}");
        let e = parse_config::<TrainConfig>(&format!("{MINIMAL}max_epoch: 3\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_epoch"), "{e}");
    }

    #[test]
    fn wrong_type_is_an_error_naming_its_path() {
        let text = MINIMAL.replace("max_epochs: 3", "max_epochs: ten");
        let e = parse_config::<TrainConfig>(&text).unwrap_err();
        match &e {
            TrainError::Config { key, .. } => assert_eq!(key, "max_epochs"),
            other => panic!("{other}"),
        }
        let text = MINIMAL.replace("args: {feat_dim: 8}}", "args: {feat_dim: 8}, weights: [1]}");
        let e = parse_config::<TrainConfig>(&text).unwrap_err();
        match &e {
            TrainError::Config { key, .. } => assert_eq!(key, "extractor.weights"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn section_errors_carry_the_prefix() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Args {
            lr: f64,
        }
        let e = section::<Args>(serde_json::json!({"lr": 0.1, "lrr": 1}), "optimizer.args")
            .unwrap_err();
        assert!(e.to_string().contains("optimizer.args"), "{e}");
        let e = section::<Args>(serde_json::json!({"lr": "x"}), "optimizer.args").unwrap_err();
        match e {
            TrainError::Config { key, .. } => assert_eq!(key, "optimizer.args.lr"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn registry_args_errors_name_the_key_and_sections_keep_their_json() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Args {
            lr: f64,
            #[serde(default)]
            betas: Option<[f64; 2]>,
        }
        let bad: NamedArgs = serde_json::from_value(
            serde_json::json!({"name": "adam", "args": {"lr": 0.1, "betas": [0.9, "x"]}}),
        )
        .unwrap();
        match bad.args_at::<Args>("optimizer").unwrap_err() {
            TrainError::Config { key, .. } => assert_eq!(key, "optimizer.args.betas[1]"),
            other => panic!("{other}"),
        }
        let none = NamedArgs {
            name: "adam".into(),
            args: Value::Null,
        };
        match none.args_at::<Args>("optimizer").unwrap_err() {
            TrainError::Config { key, message, .. } => {
                assert_eq!(key, "optimizer.args");
                assert!(message.contains("`lr`"), "{message}");
            }
            other => panic!("{other}"),
        }
        // The config's JSON is the run's fingerprint: the extractor section keeps its keys.
        let c: TrainConfig = parse_config(MINIMAL).unwrap();
        assert_eq!(
            serde_json::to_value(&c.extractor).unwrap(),
            serde_json::json!({"name": "small_cnn", "args": {"feat_dim": 8}, "weights": null})
        );
    }

    #[test]
    fn mode_comparison_ignores_nan() {
        assert!(Mode::Max.better(0.5, 0.4));
        assert!(!Mode::Max.better(f64::NAN, 0.4));
        assert!(Mode::Min.better(0.1, f64::NAN));
        assert!(Mode::Min.better(0.1, 0.4));
    }
}
