//! Pipeline loggers for oml-rs: OML's `IPipelineLogger` backends in Rust.
//!
//! Every logger implements [`PipelineLogger`] (from `oml-interfaces`):
//!
//! | Logger | Scalars | Figures (PNG) | `log_pipeline_info` |
//! |---|---|---|---|
//! | [`TensorBoardLogger`] | `simple_value` events | `Summary.Image` events | config as text (`config`), tags, dataset path |
//! | [`MlflowLogger`] | `log-batch` metrics | artifacts `figures/<title>/step_N.png` | params (config flattened with `/`), tags, artifacts `config.json` and `dataset/<csv>` |
//! | [`LocalLogger`] | `metrics.csv`, `metrics.jsonl` | `figures/<title>/step_N.png` | `pipeline_info.json` |
//!
//! - [`FanoutLogger`] sends each call to several loggers; [`SharedLogger`] shares one between
//!   owners. [`loggers_from_config`] builds "local + the configured backend" from OML's
//!   `logger: {name, args}` section. It is [`LoggerConfig::parse`], which checks the section
//!   without touching the file system (so a pipeline can fail before creating its run folder),
//!   followed by [`LoggerConfig::build`].
//! - [`LearnerBridge`] implements Burn's `MetricLogger`, so the metrics a `Learner` reports reach
//!   any of these loggers.
//! - [`LinePlot`] draws metric curves to PNG [`Figure`]s.
//!
//! No logger stops training: files are flushed by a background thread at a fixed interval (a
//! crash loses at most that interval), and MLflow is fed by a background worker that retries
//! with backoff, keeps unsent data in memory up to a bound, and reports a problem once.
//! W&B, Neptune and ClearML are not supported (they need cloud accounts).
//!
//! # Example
//!
//! ```
//! use oml_logging::{FanoutLogger, LinePlot, LocalLogger, PipelineLogger, RunStatus, TensorBoardLogger};
//!
//! let run_dir = tempfile::tempdir()?;
//! let mut logger = FanoutLogger::new()
//!     .with("local", LocalLogger::new(run_dir.path())?)
//!     .with("tensorboard", TensorBoardLogger::new(run_dir.path().join("tensorboard"))?);
//! logger.log_pipeline_info(&serde_json::json!({"optimizer": {"lr": 1e-5}}), &["demo".into()], None)?;
//! for epoch in 1..=3u64 {
//!     logger.log_scalars(epoch, &[("OVERALL/cmc/1", 0.2 * epoch as f64)])?;
//! }
//! let plot = LinePlot::new("cmc@1").x_label("epoch").series("valid", vec![(1.0, 0.2), (2.0, 0.4), (3.0, 0.6)]);
//! logger.log_figure("curves/cmc", &plot.render()?, 3)?;
//! logger.finish(RunStatus::Finished)?;
//!
//! let rows = oml_logging::local::read_metrics_csv(run_dir.path())?;
//! assert_eq!(rows.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bridge;
pub mod config;
pub mod fanout;
pub mod flatten;
mod flush;
pub mod local;
pub mod mlflow;
pub mod plot;
mod record;
pub mod tensorboard;
mod util;

pub use bridge::LearnerBridge;
pub use config::{LoggerConfig, loggers_from_config};
pub use fanout::{FanoutLogger, SharedLogger};
pub use flatten::flatten_config;
pub use local::{LocalLogger, ScalarRecord};
pub use mlflow::{MlflowConfig, MlflowLogger};
pub use oml_interfaces::{Figure, LoggerError, PipelineLogger, RunStatus};
pub use plot::LinePlot;
pub use tensorboard::TensorBoardLogger;

/// MLflow's name of a run status: `FINISHED`, `FAILED`, `KILLED`.
pub fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Finished => "FINISHED",
        RunStatus::Failed => "FAILED",
        RunStatus::Killed => "KILLED",
    }
}
