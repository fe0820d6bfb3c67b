//! Triplet miners: OML's `ITripletsMiner` and `ITripletsMinerInBatch`.

use burn::prelude::*;
use std::collections::HashMap;
use std::fmt::Debug;

/// Why a batch could not be mined, or a miner could not be configured.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MiningError {
    /// Features and labels disagree in length.
    #[error("features have {features} rows but {labels} labels were given")]
    LengthMismatch {
        /// Rows of the feature matrix.
        features: usize,
        /// Number of labels.
        labels: usize,
    },
    /// The batch holds a single label: there are no negatives.
    #[error("the batch has {n_labels} distinct label(s); in-batch mining needs at least 2")]
    TooFewLabels {
        /// Distinct labels seen.
        n_labels: usize,
    },
    /// A label has one instance: it has no positive.
    #[error("label {label} has {count} instance(s) in the batch; in-batch mining needs at least 2")]
    SingleInstance {
        /// The offending label.
        label: i64,
        /// Its count in the batch.
        count: usize,
    },
    /// A miner parameter is out of range.
    #[error("invalid miner parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as in the config.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// Mining yielded no triplet where at least one was required.
    #[error("the miner selected no triplet: {0}")]
    Empty(String),
    /// The features could not be read from the device (a miner that mines on the host).
    #[error("reading the features from the device failed: {0}")]
    Read(String),
}

/// Index triplets into the batch: `(anchor[i], positive[i], negative[i])` for each `i`.
///
/// Invariants a miner promises: `labels[anchor] == labels[positive] != labels[negative]`.
/// Whether `anchor != positive` holds is the miner's own contract (OML's hard miner can pick the
/// anchor itself when embeddings coincide).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triplets {
    /// Anchor row indices.
    pub anchor: Vec<usize>,
    /// Positive row indices.
    pub positive: Vec<usize>,
    /// Negative row indices.
    pub negative: Vec<usize>,
}

impl Triplets {
    /// Appends one triplet.
    pub fn push(&mut self, anchor: usize, positive: usize, negative: usize) {
        self.anchor.push(anchor);
        self.positive.push(positive);
        self.negative.push(negative);
    }

    /// Number of triplets.
    pub fn len(&self) -> usize {
        self.anchor.len()
    }

    /// True when there is no triplet.
    pub fn is_empty(&self) -> bool {
        self.anchor.is_empty()
    }

    /// The triplets as `(a, p, n)` tuples.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.anchor
            .iter()
            .zip(&self.positive)
            .zip(&self.negative)
            .map(|((&a, &p), &n)| (a, p, n))
    }

    /// The three index lists as `Int` tensors on `device`, ready for `Tensor::select`.
    pub fn to_tensors(&self, device: &Device) -> [Tensor<1, Int>; 3] {
        let t = |v: &[usize]| {
            let data: Vec<i64> = v.iter().map(|&i| i as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(data, [v.len()]), device)
        };
        [t(&self.anchor), t(&self.positive), t(&self.negative)]
    }

    /// Gathers the feature rows of the triplets (differentiable through `select`).
    ///
    /// # Shapes
    /// `features` `[B, D]` → three `[T, D]` tensors.
    pub fn gather(&self, features: Tensor<2>) -> TripletFeatures {
        let [a, p, n] = self.to_tensors(&features.device());
        let [b, _] = features.dims();
        // Hard mining gives one triplet per row with anchors 0..B in order: the anchors are the
        // batch itself, which saves a gather and its scatter in the backward pass.
        let identity =
            self.anchor.len() == b && self.anchor.iter().enumerate().all(|(i, &a)| i == a);
        TripletFeatures {
            anchor: if identity {
                features.clone()
            } else {
                features.clone().select(0, a)
            },
            positive: features.clone().select(0, p),
            negative: features.select(0, n),
        }
    }
}

/// Feature rows of mined triplets, each `[T, D]`.
#[derive(Debug, Clone)]
pub struct TripletFeatures {
    /// Anchors `[T, D]`.
    pub anchor: Tensor<2>,
    /// Positives `[T, D]`.
    pub positive: Tensor<2>,
    /// Negatives `[T, D]`.
    pub negative: Tensor<2>,
}

/// OML's `ITripletsMiner`: features and labels in, triplets of feature rows out.
///
/// Miners whose anchors are not batch rows (HardCluster: anchors are class means) implement
/// this directly; in-batch miners get it through [`TripletsMinerInBatch`].
pub trait TripletsMiner: Send + Sync + Debug {
    /// # Shapes
    /// `features` `[B, D]`, `labels` of length `B` → three `[T, D]` tensors.
    fn sample(&self, features: Tensor<2>, labels: &[i64]) -> Result<TripletFeatures, MiningError>;
}

/// OML's `ITripletsMinerInBatch`: mines index triplets among the rows of one batch.
///
/// Implementations must call [`check_batch_labels`] (or enforce the same rule) and must not
/// keep gradients: mining is done on the values only.
pub trait TripletsMinerInBatch: Send + Sync + Debug {
    /// Index triplets into the batch.
    fn mine(&self, features: &Tensor<2>, labels: &[i64]) -> Result<Triplets, MiningError>;
}

impl<M: TripletsMinerInBatch + ?Sized> TripletsMiner for M {
    fn sample(&self, features: Tensor<2>, labels: &[i64]) -> Result<TripletFeatures, MiningError> {
        let [b, _] = features.dims();
        if b != labels.len() {
            return Err(MiningError::LengthMismatch {
                features: b,
                labels: labels.len(),
            });
        }
        let triplets = self.mine(&features, labels)?;
        Ok(triplets.gather(features))
    }
}

/// OML's in-batch precondition: at least two distinct labels, and every label at least twice.
pub fn check_batch_labels(labels: &[i64]) -> Result<(), MiningError> {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for &l in labels {
        *counts.entry(l).or_default() += 1;
    }
    if counts.len() < 2 {
        return Err(MiningError::TooFewLabels {
            n_labels: counts.len(),
        });
    }
    let single = counts
        .iter()
        .filter(|&(_, &c)| c < 2)
        .map(|(&l, &c)| (l, c))
        .min();
    if let Some((label, count)) = single {
        return Err(MiningError::SingleInstance { label, count });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::test_device;

    /// A real (if simple) in-batch miner: for each anchor, the farthest positive and the
    /// nearest negative, computed on the host.
    #[derive(Debug)]
    struct HostHardMiner;
    impl TripletsMinerInBatch for HostHardMiner {
        fn mine(&self, features: &Tensor<2>, labels: &[i64]) -> Result<Triplets, MiningError> {
            check_batch_labels(labels)?;
            let [b, d] = features.dims();
            let x: Vec<f32> = features.try_to_vec_as::<f32>().unwrap();
            let dist = |i: usize, j: usize| -> f32 {
                (0..d).map(|k| (x[i * d + k] - x[j * d + k]).powi(2)).sum()
            };
            let mut t = Triplets::default();
            for a in 0..b {
                let p = (0..b)
                    .filter(|&j| j != a && labels[j] == labels[a])
                    .max_by(|&i, &j| dist(a, i).total_cmp(&dist(a, j)))
                    .unwrap();
                let n = (0..b)
                    .filter(|&j| labels[j] != labels[a])
                    .min_by(|&i, &j| dist(a, i).total_cmp(&dist(a, j)))
                    .unwrap();
                t.push(a, p, n);
            }
            Ok(t)
        }
    }

    #[test]
    fn in_batch_miner_gathers_rows_through_the_blanket_impl() {
        let device = test_device();
        let f = Tensor::<2>::from_data([[0.0, 0.0], [0.0, 3.0], [1.0, 0.0], [1.0, 3.0]], &device);
        let labels = [7, 7, 9, 9];
        let tri = HostHardMiner.mine(&f, &labels).unwrap();
        assert_eq!(tri.len(), 4);
        for (a, p, n) in tri.iter() {
            assert_eq!(labels[a], labels[p]);
            assert_ne!(labels[a], labels[n]);
        }
        // anchor 0: positive 1 (only one), nearest negative is row 2 (distance 1)
        assert_eq!(tri.iter().next(), Some((0, 1, 2)));
        let feats = HostHardMiner.sample(f, &labels).unwrap();
        let neg: Vec<f32> = feats.negative.try_to_vec_as::<f32>().unwrap();
        assert_eq!(&neg[..2], &[1.0, 0.0]);
    }

    #[test]
    fn degenerate_batches_are_errors() {
        assert_eq!(
            check_batch_labels(&[1, 1, 1]),
            Err(MiningError::TooFewLabels { n_labels: 1 })
        );
        assert_eq!(
            check_batch_labels(&[1, 1, 2]),
            Err(MiningError::SingleInstance { label: 2, count: 1 })
        );
        let f = Tensor::<2>::zeros([2, 2], &test_device());
        assert!(matches!(
            HostHardMiner.sample(f, &[1, 1, 2]),
            Err(MiningError::LengthMismatch {
                features: 2,
                labels: 3
            })
        ));
    }
}
