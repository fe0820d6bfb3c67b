//! # oml-metrics
//!
//! Retrieval metrics with OML 4.0 parity, computed from exact blocked kNN
//! ([`oml_retrieval::ExactKnn`]) so memory stays bounded at any dataset size.
//!
//! - [`functional`]: OML's cmc@k, precision@k, map@k, fnmr@fmr with its special cases, plus
//!   ndcg@k, MAP@R, R-precision and MRR@k; [`pcf`]: the principal component fraction.
//! - [`EmbeddingMetrics`]: OML's `EmbeddingMetrics` as a [`BasicMetric`](oml_interfaces::BasicMetric)
//!   (accumulate by dataset index, compute a [`oml_interfaces::MetricsReport`]
//!   per category, keep per-query values); [`evaluate`] does the same in one call.
//! - [`fnmr`]: fnmr@fmr over every (query, gallery) pair without retrieving the gallery.
//! - [`RowCollector`]: the rows of `n` items given in batches, in any order, first occurrence wins.
//! - `learner` (feature `learner`): the same metrics as Burn `Metric`s, computed over each
//!   validation epoch of any `SupervisedTraining`.
//!
//! Deviations from OML 4.0 are deliberate and listed in `docs/metrics.md`: precision@k of a
//! query without relevant items is 0 (OML: NaN; [`NoGtPrecision::Nan`] restores it), and ties
//! are broken by the lower gallery index (OML leaves them to `torch.topk`).
//!
//! # Example
//!
//! ```
//! use oml_interfaces::OVERALL;
//! use oml_metrics::{EvalHooks, MetricsConfig, QueryGalleryMeta, evaluate};
//!
//! let device = oml_interfaces::device::select_device(None)?;
//! // Two clusters on a line, every item a query and a gallery item.
//! let emb = [0.0f32, 0.2, 4.0, 5.0, 5.3, 9.0];
//! let meta = QueryGalleryMeta::new(vec![0, 0, 0, 1, 1, 1], vec![true; 6], vec![true; 6]);
//! let config = MetricsConfig { cmc_top_k: vec![1], precision_top_k: vec![2], map_top_k: vec![2],
//!     ..MetricsConfig::default() };
//! let e = evaluate(&emb, 1, &meta, &config, &device, &EvalHooks::default())?;
//! // Item 2 (at 4.0, label 0) finds items 3 and 4 (label 1) first.
//! assert_eq!(e.per_query.get("cmc", "1").unwrap(), &[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
//! assert_eq!(e.per_query.get("precision", "2").unwrap()[2], 0.0);
//! assert!((e.report.get(OVERALL, "cmc", "1").unwrap() - 5.0 / 6.0).abs() < 1e-12);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod embedding;
pub mod fnmr;
pub mod functional;
mod keys;
#[cfg(feature = "learner")]
pub mod learner;
pub mod pcf;
pub mod rows;

pub use embedding::{
    CMC, DEFAULT_FNMR_EXACT_MAX_PAIRS, EmbeddingMetrics, EvalHooks, Evaluation, FNMR_AT_FMR, MAP,
    MAP_AT_R, MRR, MetricsConfig, NDCG, PCF, PRECISION, PerQueryMetrics, R_PARAM, R_PRECISION,
    calc_retrieval_metrics, evaluate, fraction_key,
};
pub use fnmr::{FnmrVisitor, finish_fnmr};
pub use functional::NoGtPrecision;
pub use oml_interfaces::{MetricError, MetricsReport};
pub use oml_retrieval::{KnnConfig, QueryGalleryMeta};
pub use pcf::calc_pcf;
pub use rows::RowCollector;
