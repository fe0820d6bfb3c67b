//! oml-metrics integration tests: one binary (one link step) for all of them.

mod embedding_metrics;
mod golden;
#[cfg(feature = "learner")]
mod learner;
