//! OML's `BalanceSampler`: `n_labels` labels × `n_instances` instances per batch, each label at
//! most once per epoch.

use std::fmt::Display;

use oml_interfaces::{BatchSampler, SamplerError};
use rand::seq::SliceRandom;

use crate::groups::{Groups, check_n_instances, check_n_labels, check_two_samples, group_by_label};
use crate::random::{epoch_rng, smart_sample};

/// P×K sampling as in *In Defense of the Triplet Loss* (OML's `BalanceSampler`).
///
/// - A batch holds `n_labels` distinct labels with `n_instances` indices each, grouped by label
///   (`batch_size = n_labels * n_instances`).
/// - An epoch shuffles the `L` unique labels and takes them `n_labels` at a time, so each label
///   appears **at most once per epoch**.
/// - `num_batches = L / n_labels`, rounded **down**: the `L % n_labels` labels left over are not
///   used that epoch and there is no partial batch (OML's rule; the category samplers round up).
/// - Each label's indices come from [`smart_sample`](crate::smart_sample): without replacement
///   when the label has at least `n_instances` samples, otherwise all of them plus repeats.
///
/// ```
/// use oml_interfaces::BatchSampler;
/// use oml_sampling::BalanceSampler;
///
/// let labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4];
/// let sampler = BalanceSampler::new(&labels, 2, 3)?.with_seed(42);
/// assert_eq!((sampler.batch_size(), sampler.num_batches()), (6, 2)); // 5 labels / 2, floored
/// let epoch = sampler.epoch_batches(0);
/// assert_eq!(epoch, sampler.epoch_batches(0)); // a pure function of (seed, epoch)
/// # Ok::<(), oml_interfaces::SamplerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct BalanceSampler {
    label_items: Groups,
    n_labels: usize,
    n_instances: usize,
    seed: u64,
}

impl BalanceSampler {
    /// Builds the sampler over the dataset's `labels` (integers, strings, anything ordered).
    ///
    /// # Errors
    /// [`SamplerError::InvalidParameter`] unless `1 < n_labels <= L` (L unique labels) and
    /// `n_instances > 1`; [`SamplerError::TooFewSamples`] naming the smallest label with fewer
    /// than 2 samples.
    pub fn new<L: Ord + Display>(
        labels: &[L],
        n_labels: usize,
        n_instances: usize,
    ) -> Result<Self, SamplerError> {
        let (label_items, unique) = group_by_label(labels);
        check_n_labels(n_labels, unique.len())?;
        check_n_instances(n_instances)?;
        check_two_samples(&label_items, &unique)?;
        Ok(Self {
            label_items,
            n_labels,
            n_instances,
            seed: 0,
        })
    }

    /// Sets the seed (default 0).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Labels per batch (P).
    pub fn n_labels(&self) -> usize {
        self.n_labels
    }

    /// Instances per label (K).
    pub fn n_instances(&self) -> usize {
        self.n_instances
    }

    /// Number of unique labels (L).
    pub fn num_labels(&self) -> usize {
        self.label_items.len()
    }
}

impl BatchSampler for BalanceSampler {
    fn batch_size(&self) -> usize {
        self.n_labels * self.n_instances
    }

    fn num_batches(&self) -> usize {
        self.label_items.len() / self.n_labels
    }

    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut rng = epoch_rng(self.seed, epoch);
        let n_batches = self.num_batches();
        // Drawing n_labels at a time without replacement from the labels left is a random
        // permutation taken in chunks; only the used prefix needs shuffling.
        let mut order: Vec<usize> = (0..self.label_items.len()).collect();
        let (used, _) = order.partial_shuffle(&mut rng, n_batches * self.n_labels);
        used.chunks_exact(self.n_labels)
            .map(|chunk| {
                let mut batch = Vec::with_capacity(self.batch_size());
                for &label in chunk {
                    smart_sample(
                        self.label_items.get(label),
                        self.n_instances,
                        &mut rng,
                        &mut batch,
                    );
                }
                batch
            })
            .collect()
    }
}
