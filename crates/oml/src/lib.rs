//! # oml
//!
//! OpenMetricLearning for Rust, on Burn 0.22: the facade over the `oml-*` crates. Depend on this
//! crate with the features you need, or on the sub-crates directly.
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`interfaces`] | `oml-interfaces` | always |
//! | `metrics` | `oml-metrics` | `metrics` (default) |
//! | `retrieval` | `oml-retrieval` | `retrieval` (default) |
//! | `mining` | `oml-mining` | `mining` (default) |
//! | `sampling` | `oml-sampling` | `sampling` (default) |
//! | `datasets` | `oml-datasets` | `datasets` |
//! | `models` | `oml-models` | `models` |
//! | `logging` | `oml-logging` | `logging` |
//! | `train` | `oml-train` | `train` |
//!
//! Backends: `flex` (pure-Rust CPU, the default choice), `ndarray` (CPU), `wgpu` (GPU).
//!
//! ```
//! let device = oml::interfaces::device::select_device(None)?;
//! # Ok::<(), oml::interfaces::DeviceError>(())
//! ```

#[cfg(feature = "datasets")]
pub use oml_datasets as datasets;
pub use oml_interfaces as interfaces;
#[cfg(feature = "logging")]
pub use oml_logging as logging;
#[cfg(feature = "metrics")]
pub use oml_metrics as metrics;
#[cfg(feature = "mining")]
pub use oml_mining as mining;
#[cfg(feature = "models")]
pub use oml_models as models;
#[cfg(feature = "retrieval")]
pub use oml_retrieval as retrieval;
#[cfg(feature = "sampling")]
pub use oml_sampling as sampling;
#[cfg(feature = "train")]
pub use oml_train as train;
