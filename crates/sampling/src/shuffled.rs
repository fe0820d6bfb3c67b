//! Plain shuffled batches: the loader OML uses when a config's `sampler` is null.

use rand::seq::SliceRandom;

use crate::{BatchSampler, epoch_rng};

/// Batches of `batch_size` random indices of `0..n` per epoch, the last partial batch dropped
/// (PyTorch's `DataLoader(shuffle=True, drop_last=True)`); each epoch a pure function of the
/// seed and the epoch, like the balanced samplers.
///
/// ```
/// use oml_sampling::{BatchSampler, ShuffledBatches};
/// let s = ShuffledBatches::new(10, 4, 7);
/// let epoch = s.epoch_batches(0);
/// assert_eq!(epoch.len(), 2); // 10 / 4, rounded down
/// assert!(epoch.iter().all(|b| b.len() == 4));
/// ```
#[derive(Debug, Clone)]
pub struct ShuffledBatches {
    n: usize,
    batch_size: usize,
    seed: u64,
}

impl ShuffledBatches {
    /// Over `0..n`; a `batch_size` of 0 counts as 1.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Self {
        Self {
            n,
            batch_size: batch_size.max(1),
            seed,
        }
    }
}

impl BatchSampler for ShuffledBatches {
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn num_batches(&self) -> usize {
        self.n / self.batch_size
    }
    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.n).collect();
        order.shuffle(&mut epoch_rng(self.seed, epoch));
        order
            .chunks_exact(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_epoch_draws_distinct_indices_in_whole_batches() {
        for (n, bs) in [(0usize, 3usize), (5, 5), (10, 3), (64, 8)] {
            let s = ShuffledBatches::new(n, bs, 42);
            for epoch in 0..3 {
                let batches = s.epoch_batches(epoch);
                assert_eq!(batches.len(), n / bs, "n={n} bs={bs}");
                assert_eq!(batches.len(), s.num_batches());
                let seen: BTreeSet<usize> = batches.iter().flatten().copied().collect();
                assert_eq!(seen.len(), batches.len() * bs, "an index drawn twice");
                assert!(seen.iter().all(|&i| i < n));
            }
        }
    }

    #[test]
    fn epochs_are_reproducible_and_differ() {
        let s = ShuffledBatches::new(100, 10, 3);
        assert_eq!(s.epoch_batches(4), s.clone().epoch_batches(4));
        assert_ne!(s.epoch_batches(0), s.epoch_batches(1));
        assert_ne!(
            s.epoch_batches(0),
            ShuffledBatches::new(100, 10, 4).epoch_batches(0)
        );
    }
}
