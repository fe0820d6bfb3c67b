//! Batch samplers: OML's `IBatchSampler`.

/// Why a sampler could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SamplerError {
    /// A parameter is out of range.
    #[error("invalid sampler parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as in the config.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// A label has too few samples.
    #[error("label {label} has {count} sample(s); at least {required} are required")]
    TooFewSamples {
        /// The offending label, as text (labels may be integers or strings).
        label: String,
        /// Samples it has.
        count: usize,
        /// Samples required.
        required: usize,
    },
    /// A category has too few labels.
    #[error("category {category} has {count} label(s); at least {required} are required")]
    TooFewLabels {
        /// The offending category.
        category: String,
        /// Labels it has.
        count: usize,
        /// Labels required.
        required: usize,
    },
    /// A label has no category in `label2category`.
    #[error("label {label} has no category in label2category")]
    MissingCategory {
        /// The offending label.
        label: String,
    },
}

/// OML's `IBatchSampler`: the index lists of one epoch.
///
/// Epochs are drawn from a seeded RNG as a pure function of `(seed, epoch)`: the same seed and
/// epoch give the same batches (so several devices can each take a slice of one epoch), and a
/// new epoch draws anew.
pub trait BatchSampler: Send + Sync {
    /// Number of indices in each batch.
    fn batch_size(&self) -> usize;

    /// Number of batches per epoch (`len()` in OML).
    fn num_batches(&self) -> usize;

    /// The batches of epoch `epoch` as lists of dataset indices.
    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>>;
}

impl<S: BatchSampler + ?Sized> BatchSampler for Box<S> {
    fn batch_size(&self) -> usize {
        (**self).batch_size()
    }
    fn num_batches(&self) -> usize {
        (**self).num_batches()
    }
    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        (**self).epoch_batches(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks a seeded rotation of `0..n` into fixed-size batches (drops the remainder).
    struct Rotating {
        n: usize,
        size: usize,
        seed: usize,
    }
    impl BatchSampler for Rotating {
        fn batch_size(&self) -> usize {
            self.size
        }
        fn num_batches(&self) -> usize {
            self.n / self.size
        }
        fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
            let shift = (self.seed + epoch) % self.n;
            let order: Vec<usize> = (0..self.n).map(|i| (i + shift) % self.n).collect();
            order
                .chunks_exact(self.size)
                .map(<[usize]>::to_vec)
                .collect()
        }
    }

    #[test]
    fn epochs_are_reproducible_and_sized() {
        let s: Box<dyn BatchSampler> = Box::new(Rotating {
            n: 10,
            size: 3,
            seed: 4,
        });
        let e0 = s.epoch_batches(0);
        assert_eq!(e0.len(), s.num_batches());
        assert!(e0.iter().all(|b| b.len() == s.batch_size()));
        assert_eq!(e0, s.epoch_batches(0));
        assert_ne!(e0, s.epoch_batches(1));
    }
}
