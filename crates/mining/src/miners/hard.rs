//! `HardTripletsMiner`: the farthest positive and the nearest negative of every anchor.

use burn::prelude::*;
use oml_interfaces::miners::check_batch_labels;
use oml_interfaces::{MiningError, Triplets, TripletsMinerInBatch};

use super::checks::check_lengths;
use crate::distance::host_self_distances;

/// OML's `HardTripletsMiner`: for every anchor `a` (in order `0..B`),
/// `p = argmax_j {D[a,j] : label_j = label_a}` and `n = argmin_j {D[a,j] : label_j ≠ label_a}`
/// on detached features, ties going to the lowest index.
///
/// As in OML 4.0 (and documented there as a hazard), the positive candidates include the
/// anchor itself at distance 0, so with duplicate embeddings the anchor can be its own positive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardTripletsMiner;

impl HardTripletsMiner {
    /// Mines from a precomputed row-major `[B, B]` distance matrix.
    pub fn mine_from_distances(distances: &[f32], labels: &[i64]) -> Result<Triplets, MiningError> {
        let b = labels.len();
        if distances.len() != b * b {
            return Err(MiningError::LengthMismatch {
                features: distances.len() / b.max(1),
                labels: b,
            });
        }
        check_batch_labels(labels)?;
        let mut out = Triplets::default();
        for a in 0..b {
            let row = &distances[a * b..(a + 1) * b];
            let mut pos: Option<usize> = None;
            let mut neg: Option<usize> = None;
            for j in 0..b {
                if labels[j] == labels[a] {
                    // strict comparison keeps the first index among ties (torch.argmax)
                    if pos.is_none_or(|p| row[j] > row[p]) {
                        pos = Some(j);
                    }
                } else if neg.is_none_or(|n| row[j] < row[n]) {
                    neg = Some(j);
                }
            }
            match (pos, neg) {
                (Some(p), Some(n)) => out.push(a, p, n),
                _ => return Err(MiningError::TooFewLabels { n_labels: 1 }),
            }
        }
        Ok(out)
    }
}

impl TripletsMinerInBatch for HardTripletsMiner {
    fn mine(&self, features: &Tensor<2>, labels: &[i64]) -> Result<Triplets, MiningError> {
        check_lengths(features, labels)?;
        check_batch_labels(labels)?;
        Self::mine_from_distances(&host_self_distances(features), labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_distance_matrix_from_oml() {
        // test_hard_miner_manual (reference §1.3)
        let d = [
            0.0, 0.3, 0.2, 0.4, 0.3, 0.0, 0.4, 0.8, 0.2, 0.4, 0.0, 0.5, 0.4, 0.8, 0.5, 0.0,
        ];
        let t = HardTripletsMiner::mine_from_distances(&d, &[0, 0, 1, 1]).unwrap();
        let got: Vec<_> = t.iter().collect();
        assert_eq!(got, vec![(0, 1, 2), (1, 0, 2), (2, 3, 0), (3, 2, 0)]);
    }
}
