//! # oml-interfaces
//!
//! The interfaces of [OpenMetricLearning](https://github.com/OML-Team/open-metric-learning) 4.0
//! as Rust traits on Burn 0.22, plus the types they exchange. A third-party miner, loss,
//! sampler, metric or logger only needs this crate and `burn`.
//!
//! | OML 4.0 | here |
//! |---|---|
//! | `IExtractor`, `IFreezable`, `IPairwiseModel` | [`Extractor`], [`Freezable`], [`PairwiseModel`], [`Pretrained`] |
//! | `IBatchSampler` | [`BatchSampler`] |
//! | `ITripletsMiner`, `ITripletsMinerInBatch` | [`TripletsMiner`], [`TripletsMinerInBatch`] → [`Triplets`] |
//! | `ITripletLossWithMiner` (and every `forward(features, labels)` criterion) | [`Criterion`] → [`LossOutput`] |
//! | `IBaseDataset` … `IVisualizableDataset` | [`datasets`] |
//! | `IBasicMetric` | [`BasicMetric`] → [`MetricsReport`] |
//! | `IPipelineLogger`, `IFigureLogger` | [`PipelineLogger`] |
//! | `RetrievalResults`, `IRetrievalPostprocessor` | [`RetrievalResults`], [`RetrievalPostprocessor`] |
//!
//! Every config section that names a registry object (`{name: <registry name>, args: {...}}`:
//! miners, criteria, samplers, extractors, optimizers, …) is a [`registry::Named`], and a
//! registry reads its variant's arguments with [`registry::Named::args_as`].
//!
//! Tensors carry their backend in their [`Device`](burn::tensor::Device): no type in this crate
//! has a backend parameter. [`device::select_device`] picks the device from a name, `BURN_DEVICE`
//! or the compiled-in default.
//!
//! # Example
//!
//! A tiny in-batch miner written against the interface (hardest negative per anchor, first
//! positive), used through the blanket [`TripletsMiner`] implementation:
//!
//! ```
//! use burn::prelude::*;
//! use oml_interfaces::{MiningError, Triplets, TripletsMiner, TripletsMinerInBatch};
//!
//! #[derive(Debug)]
//! struct FirstPositive;
//! impl TripletsMinerInBatch for FirstPositive {
//!     fn mine(&self, _features: &Tensor<2>, labels: &[i64]) -> Result<Triplets, MiningError> {
//!         oml_interfaces::miners::check_batch_labels(labels)?;
//!         let mut t = Triplets::default();
//!         for (a, la) in labels.iter().enumerate() {
//!             let p = labels.iter().enumerate().position(|(i, l)| i != a && l == la).unwrap();
//!             let n = labels.iter().position(|l| l != la).unwrap();
//!             t.push(a, p, n);
//!         }
//!         Ok(t)
//!     }
//! }
//!
//! let device = oml_interfaces::device::select_device(None)?;
//! let features = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]], &device);
//! let tri = FirstPositive.sample(features, &[0, 0, 1, 1])?;
//! assert_eq!(tri.anchor.dims(), [4, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cpu;
pub mod criterions;
pub mod datasets;
pub mod device;
pub mod fs;
#[cfg(feature = "golden")]
pub mod golden;
#[cfg(feature = "learner")]
pub mod learner;
pub mod loggers;
pub mod metrics;
pub mod miners;
pub mod models;
pub mod preprocessing;
pub mod registry;
pub mod retrieval;
pub mod samplers;

pub use criterions::{Criterion, LossError, LossOutput, Reduction};
pub use datasets::{
    BaseDataset, DatasetError, ExtraData, LabeledDataset, PairDataset, QueryGalleryDataset,
    QueryGalleryLabeledDataset, Rgb, RgbImage, VisualizableDataset,
};
pub use device::{DeviceError, select_device};
pub use loggers::{Figure, LoggerError, PipelineLogger, RunStatus};
pub use metrics::{BasicMetric, MetricError, MetricsReport, OVERALL};
pub use miners::{MiningError, TripletFeatures, Triplets, TripletsMiner, TripletsMinerInBatch};
pub use models::{Extractor, Freezable, ModelError, PairwiseModel, Pretrained, PretrainedEntry};
pub use retrieval::{RetrievalError, RetrievalPostprocessor, RetrievalResults};
pub use samplers::{BatchSampler, SamplerError};
