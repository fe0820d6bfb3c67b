//! OML's `CategoryBalanceSampler` and `DistinctCategoryBalanceSampler`: `n_categories`
//! categories × `n_labels` labels × `n_instances` instances per batch.

use std::collections::BTreeMap;
use std::fmt::Display;

use oml_interfaces::{BatchSampler, SamplerError};
use rand::Rng;
use rand::seq::index;

use crate::groups::{CategoryIndex, build_category_index};
use crate::random::{WeightedDraw, epoch_rng, smart_sample};

/// Appends `smart_sample(indices of label, n_instances)` for each label in `labels`.
fn push_instances<R: Rng + ?Sized>(
    index: &CategoryIndex,
    labels: &[usize],
    n_instances: usize,
    rng: &mut R,
    batch: &mut Vec<usize>,
) {
    for &label in labels {
        smart_sample(index.label_items.get(label), n_instances, rng, batch);
    }
}

/// OML's `CategoryBalanceSampler`: every batch is drawn independently.
///
/// 1. Draw `n_categories` distinct categories: with `weight_categories` (the default) with
///    probability proportional to the number of labels in the category, otherwise uniformly.
/// 2. For each, [`smart_sample`](crate::smart_sample) `n_labels` of its labels: with
///    `resample_labels` a category with fewer than `n_labels` labels repeats some, and a repeated
///    label then contributes `2 * n_instances` or more indices to the batch.
/// 3. For each label, `smart_sample` `n_instances` of its indices.
///
/// A batch is laid out category by category, label by label: `batch_size = n_categories *
/// n_labels * n_instances`. Labels may recur across the batches of an epoch.
/// `num_batches = ceil(L / n_labels)`, rounded **up** (OML's rule; [`BalanceSampler`]
/// rounds down). Categories are ordered by `C: Ord` (OML sorts them too).
///
/// [`BalanceSampler`]: crate::BalanceSampler
///
/// ```
/// use std::collections::BTreeMap;
/// use oml_interfaces::BatchSampler;
/// use oml_sampling::CategoryBalanceSampler;
///
/// let labels = ["a", "a", "b", "b", "c", "c", "d", "d"];
/// let l2c = BTreeMap::from([("a", "shoe"), ("b", "shoe"), ("c", "bag"), ("d", "bag")]);
/// let sampler = CategoryBalanceSampler::new(&labels, &l2c, 1, 2, 2)?.with_seed(1);
/// assert_eq!((sampler.batch_size(), sampler.num_batches()), (4, 2)); // ceil(4 / 2)
/// # Ok::<(), oml_interfaces::SamplerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CategoryBalanceSampler {
    index: CategoryIndex,
    n_categories: usize,
    n_labels: usize,
    n_instances: usize,
    resample_labels: bool,
    weight_categories: bool,
    seed: u64,
}

impl CategoryBalanceSampler {
    /// Builds the sampler with OML's defaults `resample_labels = false`,
    /// `weight_categories = true`. `label2category` must map exactly the labels present.
    ///
    /// # Errors
    /// In OML's order: [`SamplerError::InvalidParameter`] for `n_categories` outside
    /// `1..=C`, `n_labels` outside `2..=L`, `n_instances < 2`;
    /// [`SamplerError::MissingCategory`] for a label not in `label2category`;
    /// `InvalidParameter { name: "label2category" }` for a mapped label that has no samples;
    /// [`SamplerError::TooFewSamples`] for a label with fewer than 2 samples;
    /// [`SamplerError::TooFewLabels`] for a category with fewer than `n_labels` labels
    /// (unless `resample_labels`). Each names the smallest offending label or category.
    pub fn new<L, C>(
        labels: &[L],
        label2category: &BTreeMap<L, C>,
        n_categories: usize,
        n_labels: usize,
        n_instances: usize,
    ) -> Result<Self, SamplerError>
    where
        L: Ord + Display,
        C: Ord + Display,
    {
        Self::with_options(
            labels,
            label2category,
            n_categories,
            n_labels,
            n_instances,
            false,
            true,
        )
    }

    /// As [`new`](Self::new) with every OML argument explicit.
    ///
    /// # Errors
    /// As [`new`](Self::new); with `resample_labels` small categories are allowed.
    pub fn with_options<L, C>(
        labels: &[L],
        label2category: &BTreeMap<L, C>,
        n_categories: usize,
        n_labels: usize,
        n_instances: usize,
        resample_labels: bool,
        weight_categories: bool,
    ) -> Result<Self, SamplerError>
    where
        L: Ord + Display,
        C: Ord + Display,
    {
        let index = build_category_index(
            labels,
            label2category,
            n_categories,
            n_labels,
            n_instances,
            (!resample_labels).then_some(n_labels),
        )?;
        Ok(Self {
            index,
            n_categories,
            n_labels,
            n_instances,
            resample_labels,
            weight_categories,
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

    /// Categories per batch.
    pub fn n_categories(&self) -> usize {
        self.n_categories
    }

    /// Labels per category in a batch.
    pub fn n_labels(&self) -> usize {
        self.n_labels
    }

    /// Instances per label.
    pub fn n_instances(&self) -> usize {
        self.n_instances
    }

    /// Whether a category with fewer than `n_labels` labels may repeat labels.
    pub fn resample_labels(&self) -> bool {
        self.resample_labels
    }

    /// Whether categories are drawn proportionally to their number of labels.
    pub fn weight_categories(&self) -> bool {
        self.weight_categories
    }

    /// Number of unique labels (L).
    pub fn num_labels(&self) -> usize {
        self.index.label_items.len()
    }

    /// Number of categories (C).
    pub fn num_categories(&self) -> usize {
        self.index.category_labels.len()
    }
}

impl BatchSampler for CategoryBalanceSampler {
    fn batch_size(&self) -> usize {
        self.n_categories * self.n_labels * self.n_instances
    }

    fn num_batches(&self) -> usize {
        self.index.label_items.len().div_ceil(self.n_labels)
    }

    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut rng = epoch_rng(self.seed, epoch);
        let cats = &self.index.category_labels;
        let mut weighted = self.weight_categories.then(|| {
            WeightedDraw::new((0..cats.len()).map(|c| cats.get(c).len() as u64).collect())
        });
        let mut chosen = Vec::with_capacity(self.n_categories);
        let mut labels = Vec::with_capacity(self.n_labels);
        (0..self.num_batches())
            .map(|_| {
                chosen.clear();
                match weighted.as_mut() {
                    Some(w) => w.draw(self.n_categories, &mut rng, &mut chosen),
                    None => chosen.extend(index::sample(&mut rng, cats.len(), self.n_categories)),
                }
                let mut batch = Vec::with_capacity(self.batch_size());
                for &c in &chosen {
                    labels.clear();
                    smart_sample(cats.get(c), self.n_labels, &mut rng, &mut labels);
                    push_instances(&self.index, &labels, self.n_instances, &mut rng, &mut batch);
                }
                batch
            })
            .collect()
    }
}

/// OML's `DistinctCategoryBalanceSampler`: like [`CategoryBalanceSampler`], but labels are not
/// reused until their category runs out, and the epoch has a fixed `epoch_size` batches.
///
/// State carried from batch to batch within an epoch: the unused labels of each category.
/// 1. If fewer than `n_categories` categories still have unused labels, **reset** the state.
/// 2. Draw `n_categories` categories uniformly among those with unused labels.
/// 3. For each: if it has at least `n_labels` unused labels, draw `n_labels` of them without
///    replacement; otherwise take all the unused ones and fill up with labels of that category
///    already used since the last reset (without replacement). A category with no unused label
///    left drops out until the next reset.
/// 4. For each label, [`smart_sample`](crate::smart_sample) `n_instances` indices.
///
/// So a batch always has `n_categories` distinct categories and `n_categories * n_labels`
/// distinct labels. OML's docstring also promises to drop a label when `L % n_labels == 1`;
/// its code does not, and neither does this.
#[derive(Debug, Clone)]
pub struct DistinctCategoryBalanceSampler {
    index: CategoryIndex,
    n_categories: usize,
    n_labels: usize,
    n_instances: usize,
    epoch_size: usize,
    seed: u64,
}

impl DistinctCategoryBalanceSampler {
    /// Builds the sampler; `epoch_size` is the number of batches per epoch.
    ///
    /// # Errors
    /// As [`CategoryBalanceSampler::new`] (every category must have at least `n_labels` labels),
    /// and `InvalidParameter { name: "epoch_size" }` for `epoch_size == 0` (OML would yield
    /// an empty epoch).
    pub fn new<L, C>(
        labels: &[L],
        label2category: &BTreeMap<L, C>,
        n_categories: usize,
        n_labels: usize,
        n_instances: usize,
        epoch_size: usize,
    ) -> Result<Self, SamplerError>
    where
        L: Ord + Display,
        C: Ord + Display,
    {
        let index = build_category_index(
            labels,
            label2category,
            n_categories,
            n_labels,
            n_instances,
            Some(n_labels),
        )?;
        if epoch_size == 0 {
            return Err(SamplerError::InvalidParameter {
                name: "epoch_size",
                value: "0".to_string(),
                reason: "an epoch needs at least one batch".to_string(),
            });
        }
        Ok(Self {
            index,
            n_categories,
            n_labels,
            n_instances,
            epoch_size,
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

    /// Categories per batch.
    pub fn n_categories(&self) -> usize {
        self.n_categories
    }

    /// Labels per category in a batch.
    pub fn n_labels(&self) -> usize {
        self.n_labels
    }

    /// Instances per label.
    pub fn n_instances(&self) -> usize {
        self.n_instances
    }

    /// Batches per epoch.
    pub fn epoch_size(&self) -> usize {
        self.epoch_size
    }

    /// Number of unique labels (L).
    pub fn num_labels(&self) -> usize {
        self.index.label_items.len()
    }

    /// Number of categories (C).
    pub fn num_categories(&self) -> usize {
        self.index.category_labels.len()
    }
}

/// Unused / used labels per category and the categories that still have unused labels.
struct DistinctState {
    unused: Vec<Vec<usize>>,
    used: Vec<Vec<usize>>,
    available: Vec<usize>,
    /// Position of each category in `available` (`usize::MAX` once it dropped out).
    position: Vec<usize>,
}

impl DistinctState {
    fn new(index: &CategoryIndex) -> Self {
        let cats = &index.category_labels;
        let n = cats.len();
        Self {
            unused: (0..n).map(|c| cats.get(c).to_vec()).collect(),
            used: vec![Vec::new(); n],
            available: (0..n).collect(),
            position: (0..n).collect(),
        }
    }

    fn reset(&mut self, index: &CategoryIndex) {
        let cats = &index.category_labels;
        for c in 0..cats.len() {
            self.unused[c].clear();
            self.unused[c].extend_from_slice(cats.get(c));
            self.used[c].clear();
        }
        self.available.clear();
        self.available.extend(0..cats.len());
        self.position.clear();
        self.position.extend(0..cats.len());
    }

    fn drop_category(&mut self, c: usize) {
        let pos = self.position[c];
        self.available.swap_remove(pos);
        if let Some(&moved) = self.available.get(pos) {
            self.position[moved] = pos;
        }
        self.position[c] = usize::MAX;
    }
}

impl BatchSampler for DistinctCategoryBalanceSampler {
    fn batch_size(&self) -> usize {
        self.n_categories * self.n_labels * self.n_instances
    }

    fn num_batches(&self) -> usize {
        self.epoch_size
    }

    fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut rng = epoch_rng(self.seed, epoch);
        let mut state = DistinctState::new(&self.index);
        let mut chosen = Vec::with_capacity(self.n_categories);
        let mut labels = Vec::with_capacity(self.n_labels);
        (0..self.epoch_size)
            .map(|_| {
                if state.available.len() < self.n_categories {
                    state.reset(&self.index);
                }
                chosen.clear();
                chosen.extend(
                    index::sample(&mut rng, state.available.len(), self.n_categories)
                        .into_iter()
                        .map(|i| state.available[i]),
                );
                let mut batch = Vec::with_capacity(self.batch_size());
                for &c in &chosen {
                    labels.clear();
                    let unused = &mut state.unused[c];
                    if unused.len() >= self.n_labels {
                        // Partial Fisher-Yates into the tail, then cut the tail off.
                        let len = unused.len();
                        for i in 0..self.n_labels {
                            let j = rng.random_range(0..len - i);
                            unused.swap(j, len - 1 - i);
                        }
                        labels.extend(unused.drain(len - self.n_labels..));
                        state.used[c].extend_from_slice(&labels);
                    } else {
                        let fresh = unused.len();
                        labels.append(unused);
                        let used = &state.used[c];
                        labels.extend(
                            index::sample(&mut rng, used.len(), self.n_labels - fresh)
                                .into_iter()
                                .map(|i| used[i]),
                        );
                        let fresh_labels = labels[..fresh].to_vec();
                        state.used[c].extend(fresh_labels);
                    }
                    if state.unused[c].is_empty() {
                        state.drop_category(c);
                    }
                    push_instances(&self.index, &labels, self.n_instances, &mut rng, &mut batch);
                }
                batch
            })
            .collect()
    }
}
