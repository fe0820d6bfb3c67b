//! # oml-train
//!
//! OML 4.0's pipelines on Burn 0.22's `Learner`, configured by YAML with OML's keys:
//!
//! | OML 4.0 | here |
//! |---|---|
//! | `extractor_training_pipeline` | [`train::train`] (`oml train`) |
//! | `extractor_validation_pipeline` | [`validate::validate`] (`oml validate`) |
//! | `extractor_prediction_pipeline` | [`predict::predict`] (`oml predict`) |
//! | `ExtractorModule` (`training_step`, `validation_step`) | [`model::MetricLearner`]: Burn's `TrainStep` / `InferenceStep` |
//! | `MetricValCallback` + `EmbeddingMetrics` | oml-metrics' `RetrievalMetrics` (the Burn metrics a library user registers) over [`validation::EpochScoring`] |
//! | `ModelCheckpoint(save_top_k=1)`, resuming | [`checkpoint`]: atomic records every epoch, last + best kept |
//! | `OPTIMIZERS_REGISTRY`, `SCHEDULERS_REGISTRY` | [`optim`]: what Burn provides, with PyTorch's argument names |
//! | `freeze_n_epochs` (a no-op in OML 4.0) | frozen backbone in the first epochs ([`oml_interfaces::Freezable`]) |
//!
//! The training step embeds a batch of P×K images (`oml-sampling`'s loader), calls the criterion
//! (`oml-mining`; ArcFace's weights are part of the trained module) with the host labels and
//! back-propagates. Every `valid_period` epochs (and after the last) the validation split is
//! embedded and evaluated by `oml-metrics`; the report is logged (`oml-logging`), drawn as the
//! worst queries (`oml-datasets`) and picks the best checkpoint by `metric_for_checkpointing`.
//! Each epoch is checkpointed atomically, so a killed run resumes from its last complete epoch
//! when the same command runs again. Several devices train data-parallel through Burn's
//! multi-device strategy. See `docs/training.md`.
//!
//! # Example
//!
//! A config with OML's keys (unknown keys and wrong types are errors naming the key), and one
//! training step of the module the Learner optimises:
//!
//! ```
//! use burn::prelude::*;
//! use burn::train::TrainStep;
//! use oml_train::config::{NamedExt, TrainConfig, parse_config};
//! use oml_train::model::{MetricLearner, TrainBatch};
//!
//! let yaml = "
//! dataset_root: data
//! max_epochs: 2
//! extractor: {name: small_cnn, args: {feat_dim: 8, channels: [4, 8, 8]}}
//! criterion: {name: triplet_with_miner, args: {margin: 0.2, miner: {name: hard_triplets}}}
//! optimizer: {name: adam, args: {lr: 0.001}}
//! ";
//! let config: TrainConfig = parse_config(yaml)?;
//! assert_eq!((config.valid_period, config.metric_for_checkpointing.as_str()), (1, "OVERALL/cmc/1"));
//! let err = parse_config::<TrainConfig>(&yaml.replace("max_epochs: 2", "max_epochs: two")).unwrap_err();
//! assert!(err.to_string().starts_with("max_epochs:"), "{err}");
//!
//! let device = oml_interfaces::device::select_device(None)?;
//! let extractor = oml_train::extractor::parse(&config.extractor, "extractor")?.build(&device)?;
//! let criterion: oml_mining::CriterionConfig = config.criterion.typed("criterion")?;
//! let model = MetricLearner::new(extractor, criterion.build(&device)?).fork(&device.clone().autodiff()).train();
//! let images = Tensor::<4>::random([4, 3, 28, 28], burn::tensor::Distribution::Default, &device.autodiff());
//! let out = model.step(TrainBatch { images, labels: vec![0, 0, 1, 1], epoch: 1 });
//! assert!(out.item.step.loss.into_scalar::<f32>() >= 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod applog;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod extractor;
pub mod history;
pub mod loaders;
pub mod model;
pub mod optim;
mod pipeline;
pub mod postprocessor;
pub mod predict;
pub mod progress;
pub mod rundir;
mod runner;
pub mod train;
pub mod validate;
pub mod validation;

pub use error::TrainError;

pub use oml_models::small_cnn;
