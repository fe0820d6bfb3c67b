//! Criteria: OML's `ITripletLossWithMiner` and every pipeline loss with `forward(features, labels)`.

use burn::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Debug;

use crate::miners::MiningError;

/// How per-sample (per-triplet) losses are reduced, as OML's `get_reduced`.
/// Read from configs through [`FromStr`](std::str::FromStr), so a bad value is an error naming
/// the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Reduction {
    /// Mean over samples.
    #[default]
    Mean,
    /// Sum over samples.
    Sum,
    /// No reduction: one value per sample.
    None,
}

impl Reduction {
    /// Applies the reduction to a `[N]` tensor; `Mean`/`Sum` give a `[1]` tensor.
    pub fn apply(self, losses: Tensor<1>) -> Tensor<1> {
        match self {
            Reduction::Mean => losses.mean(),
            Reduction::Sum => losses.sum(),
            Reduction::None => losses,
        }
    }
}

impl std::str::FromStr for Reduction {
    type Err = LossError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            other => Err(LossError::InvalidParameter {
                name: "reduction",
                value: other.to_string(),
                reason: "expected one of mean, sum, none".to_string(),
            }),
        }
    }
}

impl TryFrom<String> for Reduction {
    type Error = LossError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Why a loss could not be built or evaluated.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LossError {
    /// A loss parameter is out of range.
    #[error("invalid loss parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as in the config.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// The miner refused the batch.
    #[error(transparent)]
    Mining(#[from] MiningError),
    /// Inputs have the wrong shape.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A label is outside the classes the loss knows (e.g. ArcFace's `num_classes`).
    #[error("label {label} is outside 0..{num_classes}")]
    LabelOutOfRange {
        /// The label.
        label: i64,
        /// Number of classes.
        num_classes: usize,
    },
}

/// The loss and the logs of one call (OML's `last_logs`), returned together so that a criterion
/// needs no hidden mutable state to report them.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// `[1]` for `mean`/`sum`, `[N]` for `none`. Differentiable.
    pub loss: Tensor<1>,
    /// Named scalar logs (`active_tri`, `pos_dist`, `neg_dist`, `accuracy`, …), detached `[1]`
    /// tensors so reading them is the caller's choice (a host read is a GPU sync).
    pub logs: BTreeMap<String, Tensor<1>>,
}

impl LossOutput {
    /// The logs read to the host as `f64`.
    pub fn logs_f64(&self) -> BTreeMap<String, f64> {
        self.logs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_scalar::<f64>()))
            .collect()
    }

    /// `self` when its loss is one value, as training needs (reduction `mean` or `sum`).
    pub fn reduced(self) -> Result<Self, LossError> {
        match self.loss.dims() {
            [1] => Ok(self),
            dims => Err(LossError::Shape(format!(
                "the training loss must be reduced to one value (reduction mean or sum), got \
                 shape {dims:?}"
            ))),
        }
    }
}

/// A metric-learning criterion: features and labels → loss (OML's `ITripletLossWithMiner` and
/// the shared `forward(features, labels)` contract of its pipeline losses).
///
/// Stateful criteria (memory banks) keep their state behind interior mutability: training steps
/// in Burn's `Learner` only get `&self`.
pub trait Criterion: Send + Sync + Debug {
    /// Name used for logging as `"{name}_loss"`, as OML's `criterion_name`.
    fn criterion_name(&self) -> &str;

    /// # Shapes
    /// `features` `[B, D]`, `labels` of length `B`.
    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::test_device;
    use crate::miners::{Triplets, TripletsMinerInBatch, check_batch_labels};

    /// All (a, p, n) triplets, enumerated on the host.
    #[derive(Debug)]
    struct EveryTriplet;
    impl TripletsMinerInBatch for EveryTriplet {
        fn mine(&self, _: &Tensor<2>, labels: &[i64]) -> Result<Triplets, MiningError> {
            check_batch_labels(labels)?;
            let mut t = Triplets::default();
            for a in 0..labels.len() {
                for p in 0..labels.len() {
                    for n in 0..labels.len() {
                        if a != p && labels[a] == labels[p] && labels[n] != labels[a] {
                            t.push(a, p, n);
                        }
                    }
                }
            }
            Ok(t)
        }
    }

    /// Triplet margin loss over every triplet, a small real criterion.
    #[derive(Debug)]
    struct PlainTriplet {
        margin: f64,
        reduction: Reduction,
    }
    impl Criterion for PlainTriplet {
        fn criterion_name(&self) -> &str {
            "triplet"
        }
        fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
            let tri = EveryTriplet.mine(&features, labels)?.gather(features);
            let d_ap = (tri.anchor.clone() - tri.positive)
                .square()
                .sum_dim(1)
                .sqrt()
                .squeeze_dim(1);
            let d_an = (tri.anchor - tri.negative)
                .square()
                .sum_dim(1)
                .sqrt()
                .squeeze_dim(1);
            let per = (d_ap - d_an + self.margin).clamp_min(0.0);
            let active = per.clone().greater_elem(0.0).float().mean().detach();
            let mut logs = BTreeMap::new();
            logs.insert("active_tri".to_string(), active);
            Ok(LossOutput {
                loss: self.reduction.apply(per),
                logs,
            })
        }
    }

    #[test]
    fn criterion_value_and_logs_match_a_hand_computation() {
        let device = test_device();
        // two classes on a line: d_ap = 1, d_an in {9, 10, 11, 10} etc. → all inactive with margin 1
        let f = Tensor::<2>::from_data([[0.0], [1.0], [10.0], [11.0]], &device);
        let c = PlainTriplet {
            margin: 1.0,
            reduction: Reduction::Mean,
        };
        let out = c.forward(f, &[0, 0, 1, 1]).unwrap();
        assert_eq!(out.logs_f64()["active_tri"], 0.0);
        assert_eq!(out.loss.into_scalar::<f32>(), 0.0);

        // overlapping classes: anchor 0 (x=0), positive 1 (x=2), negative 2 (x=1): 2 - 1 + 1 = 2
        let f = Tensor::<2>::from_data([[0.0], [2.0], [1.0], [3.0]], &device);
        let c = PlainTriplet {
            margin: 1.0,
            reduction: Reduction::None,
        };
        let out = c.forward(f, &[0, 0, 1, 1]).unwrap();
        let per: Vec<f32> = out.loss.try_to_vec_as::<f32>().unwrap();
        assert_eq!(per.len(), 8); // Σ n_c (n_c − 1)(B − n_c) = 2·1·2 + 2·1·2
        assert_eq!(per[0], 2.0);
    }

    #[test]
    fn reduction_parses_and_rejects_unknown() {
        assert_eq!("sum".parse::<Reduction>().unwrap(), Reduction::Sum);
        let err = "avg".parse::<Reduction>().unwrap_err();
        assert!(err.to_string().contains("`reduction` = avg"), "{err}");
    }
}
