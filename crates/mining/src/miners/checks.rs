//! Argument checks shared by the miners.

use burn::prelude::*;
use oml_interfaces::MiningError;

/// Checks that `features` has one row per label.
pub(crate) fn check_lengths(features: &Tensor<2>, labels: &[i64]) -> Result<(), MiningError> {
    let [b, _] = features.dims();
    if b != labels.len() {
        return Err(MiningError::LengthMismatch {
            features: b,
            labels: labels.len(),
        });
    }
    Ok(())
}
