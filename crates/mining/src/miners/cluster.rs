//! `HardClusterMiner`: triplets of class means.

use burn::prelude::*;
use oml_interfaces::{MiningError, TripletFeatures, TripletsMiner};
use std::collections::BTreeMap;

use super::checks::check_lengths;
use crate::distance::{cdist, host_f32, index_tensor};

/// OML's `HardClusterMiner`: one triplet per label (labels in increasing order):
/// anchor = the label's mean feature, positive = its instance with the largest **squared**
/// distance to that mean, negative = the nearest other mean (plain Euclidean distance).
/// Gradients flow through the means. Ties go to the lowest index.
///
/// Needs the same number (≥ 2) of instances for every label and at least 2 labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardClusterMiner;

impl HardClusterMiner {
    /// Batch rows grouped by increasing label, batch order within a label: `[L][n]`.
    pub fn groups(labels: &[i64]) -> Result<Vec<Vec<usize>>, MiningError> {
        let mut by_label: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (i, l) in labels.iter().enumerate() {
            by_label.entry(*l).or_default().push(i);
        }
        if by_label.len() < 2 {
            return Err(MiningError::TooFewLabels {
                n_labels: by_label.len(),
            });
        }
        let groups: Vec<Vec<usize>> = by_label.into_values().collect();
        let n = groups[0].len();
        if let Some(g) = groups.iter().find(|g| g.len() != n) {
            return Err(MiningError::InvalidParameter {
                name: "labels",
                value: format!(
                    "label {} has {} instance(s), label {} has {}",
                    labels[groups[0][0]],
                    n,
                    labels[g[0]],
                    g.len()
                ),
                reason: "HardClusterMiner needs the same number of instances for every label"
                    .to_string(),
            });
        }
        if n < 2 {
            return Err(MiningError::SingleInstance {
                label: labels[groups[0][0]],
                count: n,
            });
        }
        Ok(groups)
    }
}

impl TripletsMiner for HardClusterMiner {
    fn sample(&self, features: Tensor<2>, labels: &[i64]) -> Result<TripletFeatures, MiningError> {
        check_lengths(&features, labels)?;
        let groups = Self::groups(labels)?;
        let (n_labels, n_inst) = (groups.len(), groups[0].len());
        let [_, dim] = features.dims();
        let device = features.device();
        let order: Vec<usize> = groups.iter().flatten().copied().collect();
        let grouped = features
            .clone()
            .select(0, index_tensor(&order, &device))
            .reshape([n_labels, n_inst, dim]);
        let means3 = grouped.clone().mean_dim(1); // [L, 1, D]
        let means = means3.clone().reshape([n_labels, dim]);

        // Selection runs on values only.
        let intra = host_f32(
            (grouped.without_autodiff() - means3.without_autodiff())
                .square()
                .sum_dim(2),
        );
        let mut positive_rows = Vec::with_capacity(n_labels);
        for (l, group) in groups.iter().enumerate() {
            let row = &intra[l * n_inst..(l + 1) * n_inst];
            let best = (0..n_inst).fold(0, |best, j| if row[j] > row[best] { j } else { best });
            positive_rows.push(group[best]);
        }
        let inter = host_f32(cdist(
            means.clone().without_autodiff(),
            means.clone().without_autodiff(),
        ));
        let mut negative_ids = Vec::with_capacity(n_labels);
        for l in 0..n_labels {
            let row = &inter[l * n_labels..(l + 1) * n_labels];
            let best = (0..n_labels)
                .filter(|&j| j != l)
                .fold(None, |best: Option<usize>, j| match best {
                    Some(b) if row[j] >= row[b] => Some(b),
                    _ => Some(j),
                })
                .unwrap_or(0);
            negative_ids.push(best);
        }
        Ok(TripletFeatures {
            anchor: means.clone(),
            positive: features.select(0, index_tensor(&positive_rows, &device)),
            negative: means.select(0, index_tensor(&negative_ids, &device)),
        })
    }
}
