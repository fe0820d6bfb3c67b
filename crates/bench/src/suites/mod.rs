//! One module per suite; each owns its arguments and its measurements.

pub mod datasets;
pub mod loss;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod sampler;
