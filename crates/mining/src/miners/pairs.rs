//! `PairsMiner`: positive and negative pairs for training a pairwise re-ranker.

use burn::prelude::*;
use oml_interfaces::{MiningError, TripletsMinerInBatch};
use std::collections::BTreeSet;

use super::all::AllTripletsMiner;
use super::hard::HardTripletsMiner;

/// Pairs of batch rows: `(ids1[i], ids2[i])`, positives first, then negatives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinedPairs {
    /// First row of each pair (the smaller index).
    pub ids1: Vec<usize>,
    /// Second row of each pair (the larger index, or equal for a self-pair).
    pub ids2: Vec<usize>,
    /// True for the negative pairs.
    pub is_negative: Vec<bool>,
}

impl MinedPairs {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ids1.len()
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.ids1.is_empty()
    }
}

/// OML's `PairsMiner(hard_mining)`: mines triplets with [`HardTripletsMiner`] (or
/// [`AllTripletsMiner`] when `hard_mining` is false) and turns `(a, p)` and `(a, n)` into
/// deduplicated unordered pairs. Pairs come sorted (OML's order is a Python set's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairsMiner {
    /// Hard triplets (true) or all triplets (false).
    pub hard_mining: bool,
}

impl Default for PairsMiner {
    fn default() -> Self {
        Self { hard_mining: true }
    }
}

impl PairsMiner {
    /// A pairs miner.
    pub fn new(hard_mining: bool) -> Self {
        Self { hard_mining }
    }

    /// Mines the pairs of one batch.
    pub fn sample(&self, features: &Tensor<2>, labels: &[i64]) -> Result<MinedPairs, MiningError> {
        let tri = if self.hard_mining {
            HardTripletsMiner.mine(features, labels)?
        } else {
            AllTripletsMiner::unlimited().mine(features, labels)?
        };
        let sorted = |x: usize, y: usize| (x.min(y), x.max(y));
        let pos: BTreeSet<_> = tri.iter().map(|(a, p, _)| sorted(a, p)).collect();
        let neg: BTreeSet<_> = tri.iter().map(|(a, _, n)| sorted(a, n)).collect();
        let mut out = MinedPairs::default();
        for (set, negative) in [(pos, false), (neg, true)] {
            for (i, j) in set {
                out.ids1.push(i);
                out.ids2.push(j);
                out.is_negative.push(negative);
            }
        }
        Ok(out)
    }
}
