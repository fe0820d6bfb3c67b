//! `AllTripletsMiner`: every valid triplet of the batch, optionally a seeded random subset.

use burn::prelude::*;
use oml_interfaces::miners::check_batch_labels;
use oml_interfaces::{MiningError, Triplets, TripletsMinerInBatch};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};

use super::checks::check_lengths;

/// OML's `AllTripletsMiner(max_output_triplets)`: every `(a, p, n)` with `a ≠ p`,
/// `label[a] = label[p] ≠ label[n]`; there are `Σ_c n_c (n_c − 1)(B − n_c)` of them.
///
/// Order: anchors ascending, then positives ascending, then negatives ascending (OML shuffles;
/// the order never changes a mean or sum). When the count exceeds `max_output_triplets`, a
/// uniform subset without replacement is drawn from a generator seeded by `seed` (advancing
/// on each call, shared by clones) and kept in that same order.
///
/// [`TripletLossWithMiner`](crate::TripletLossWithMiner) never materialises these triplets
/// when nothing is truncated: it computes the loss from the batch's distance matrix.
#[derive(Debug, Clone)]
pub struct AllTripletsMiner {
    max_output_triplets: Option<usize>,
    seed: u64,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

impl Default for AllTripletsMiner {
    fn default() -> Self {
        Self::unlimited()
    }
}

impl AllTripletsMiner {
    /// Every triplet, no truncation (OML's default `max_output_triplets=sys.maxsize`).
    pub fn unlimited() -> Self {
        Self {
            max_output_triplets: None,
            seed: 0,
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(0))),
        }
    }

    /// At most `max_output_triplets` triplets (`None`: all), sampled with a generator seeded by
    /// `seed`. `Some(0)` is an error: it would always yield an empty (NaN) loss.
    pub fn new(max_output_triplets: Option<usize>, seed: u64) -> Result<Self, MiningError> {
        if max_output_triplets == Some(0) {
            return Err(MiningError::InvalidParameter {
                name: "max_output_triplets",
                value: "0".to_string(),
                reason: "must be at least 1 (or null for all triplets)".to_string(),
            });
        }
        Ok(Self {
            max_output_triplets,
            seed,
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        })
    }

    /// The truncation limit (`None`: all triplets).
    pub fn max_output_triplets(&self) -> Option<usize> {
        self.max_output_triplets
    }

    /// The seed of the truncation sampler.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of valid triplets in a batch: `Σ_c n_c (n_c − 1)(B − n_c)`.
    pub fn count(labels: &[i64]) -> usize {
        let b = labels.len();
        labels
            .iter()
            .map(|l| {
                let n_c = labels.iter().filter(|m| *m == l).count();
                (n_c - 1) * (b - n_c)
            })
            .sum()
    }

    /// True when this batch yields more triplets than `max_output_triplets` (so a subset is drawn).
    pub fn truncates(&self, labels: &[i64]) -> bool {
        self.max_output_triplets
            .is_some_and(|m| Self::count(labels) > m)
    }
}

/// Per-anchor positive and negative lists (ascending), shared by the miner and the fast loss.
pub(crate) struct AnchorLists {
    /// `positives[a]`: rows with `a`'s label, except `a`.
    pub positives: Vec<Vec<usize>>,
    /// `negatives[a]`: rows with another label.
    pub negatives: Vec<Vec<usize>>,
}

impl AnchorLists {
    pub fn new(labels: &[i64]) -> Self {
        let b = labels.len();
        let mut positives = Vec::with_capacity(b);
        let mut negatives = Vec::with_capacity(b);
        for (a, la) in labels.iter().enumerate() {
            positives.push((0..b).filter(|&j| j != a && labels[j] == *la).collect());
            negatives.push((0..b).filter(|&j| labels[j] != *la).collect());
        }
        Self {
            positives,
            negatives,
        }
    }
}

impl TripletsMinerInBatch for AllTripletsMiner {
    fn mine(&self, features: &Tensor<2>, labels: &[i64]) -> Result<Triplets, MiningError> {
        check_lengths(features, labels)?;
        check_batch_labels(labels)?;
        let lists = AnchorLists::new(labels);
        let sizes: Vec<usize> = (0..labels.len())
            .map(|a| lists.positives[a].len() * lists.negatives[a].len())
            .collect();
        let total: usize = sizes.iter().sum();
        let mut out = Triplets::default();
        match self.max_output_triplets {
            Some(max) if total > max => {
                // Decode sorted flat indices of the enumeration order instead of listing all.
                let mut picked = {
                    let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                    rand::seq::index::sample(&mut *rng, total, max).into_vec()
                };
                picked.sort_unstable();
                let mut anchor = 0;
                let mut offset = 0;
                for idx in picked {
                    while idx >= offset + sizes[anchor] {
                        offset += sizes[anchor];
                        anchor += 1;
                    }
                    let r = idx - offset;
                    let negs = &lists.negatives[anchor];
                    out.push(
                        anchor,
                        lists.positives[anchor][r / negs.len()],
                        negs[r % negs.len()],
                    );
                }
            }
            _ => {
                for a in 0..labels.len() {
                    for &p in &lists.positives[a] {
                        for &n in &lists.negatives[a] {
                            out.push(a, p, n);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
