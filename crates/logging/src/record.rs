//! The record type shared by the local logger (which writes and reads `metrics.csv`) and the
//! plots drawn from it.

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarRecord {
    /// Seconds since the Unix epoch when it was logged.
    pub wall_time: f64,
    /// The step.
    pub step: u64,
    /// The metric's name.
    pub name: String,
    /// The value (may be NaN or infinite).
    pub value: f64,
}
