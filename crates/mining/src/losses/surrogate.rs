//! SurrogatePrecision: a differentiable precision@k (the Recall@k surrogate of Patel et al.).

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use oml_interfaces::{Criterion, LossError, LossOutput, MiningError, Reduction};
use std::collections::BTreeMap;

use crate::distance::self_cdist;

/// OML's `SurrogatePrecision(k, temperature1, temperature2, reduction)`.
///
/// With `D` the batch's distance matrix, `M` its same-label mask (diagonal included) and
/// `k' = k + 1` (each sample retrieves itself first):
/// `rank[j,q] = Σ_i σ((D[j,q] − D[j,i]) / t2)`,
/// `prec_j = Σ_q σ((k' − rank[j,q]) / t1)·M[j,q] / min(Σ_q M[j,q], k')`,
/// `loss = 1 − reduce(prec)`. Memory is `O(B³)`, as in OML.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurrogatePrecision {
    k: usize,
    temperature1: f64,
    temperature2: f64,
    reduction: Reduction,
}

impl SurrogatePrecision {
    /// `k ≥ 1`, temperatures positive.
    pub fn new(
        k: usize,
        temperature1: f64,
        temperature2: f64,
        reduction: Reduction,
    ) -> Result<Self, LossError> {
        let invalid =
            |name: &'static str, value: String, reason: &str| LossError::InvalidParameter {
                name,
                value,
                reason: reason.to_string(),
            };
        if k == 0 {
            return Err(invalid("k", "0".to_string(), "must be at least 1"));
        }
        for (name, t) in [
            ("temperature1", temperature1),
            ("temperature2", temperature2),
        ] {
            if !(t > 0.0 && t.is_finite()) {
                return Err(invalid(name, t.to_string(), "must be positive and finite"));
            }
        }
        Ok(Self {
            k,
            temperature1,
            temperature2,
            reduction,
        })
    }

    /// The `k` of precision@k as given (OML adds 1 internally).
    pub fn k(&self) -> usize {
        self.k
    }
}

impl Criterion for SurrogatePrecision {
    fn criterion_name(&self) -> &str {
        "surrogate_precision"
    }

    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
        let [b, _] = features.dims();
        if b != labels.len() {
            return Err(MiningError::LengthMismatch {
                features: b,
                labels: labels.len(),
            }
            .into());
        }
        if b == 0 {
            return Err(LossError::Shape("an empty batch".to_string()));
        }
        let device = features.device();
        let k = (self.k + 1) as f64;
        let d = self_cdist(features);
        // diff[j, q, i] = D[j, q] − D[j, i]
        let diff = d.clone().unsqueeze_dim::<3>(2) - d.unsqueeze_dim::<3>(1);
        let rank = sigmoid(diff.div_scalar(self.temperature2))
            .sum_dim(2)
            .reshape([b, b]);

        let mut mask = vec![0.0f32; b * b];
        let mut denom = vec![0.0f32; b];
        for j in 0..b {
            let n_same = labels.iter().filter(|&&l| l == labels[j]).count();
            denom[j] = (n_same as f64).min(k) as f32;
            for q in 0..b {
                mask[j * b + q] = (labels[j] == labels[q]) as u8 as f32;
            }
        }
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, b]), &device);
        let denom = Tensor::<1>::from_data(TensorData::new(denom, [b]), &device);
        let hits = sigmoid(rank.neg().add_scalar(k).div_scalar(self.temperature1)) * mask;
        let precision = hits.sum_dim(1).reshape([b]) / denom;
        let loss = self.reduction.apply(precision).neg().add_scalar(1.0);
        Ok(LossOutput {
            loss,
            logs: BTreeMap::new(),
        })
    }
}
