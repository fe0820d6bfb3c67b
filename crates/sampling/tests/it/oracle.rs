//! Independent checks of OML's sampler rules (oml-4.0.md §1.2), written from the rules, not
//! from the implementation: each takes the labels, the parameters and an epoch, and says what
//! is wrong with it.

use std::collections::{BTreeMap, BTreeSet};

pub type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Dataset indices of each label.
pub fn indices_by_label<L: Ord + Clone>(labels: &[L]) -> BTreeMap<L, Vec<usize>> {
    let mut m: BTreeMap<L, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        m.entry(l.clone()).or_default().push(i);
    }
    m
}

/// `smart_sample(indices of label, k)` produced `drawn`: without repeats if the label has at
/// least k samples, otherwise every sample at least once; all from the label.
pub fn check_smart_sample(pool: &[usize], k: usize, drawn: &[usize]) -> Check {
    ensure!(drawn.len() == k, "drew {} instead of {k}", drawn.len());
    ensure!(
        drawn.iter().all(|i| pool.contains(i)),
        "{drawn:?} not all from {pool:?}"
    );
    let distinct: BTreeSet<usize> = drawn.iter().copied().collect();
    if pool.len() >= k {
        ensure!(
            distinct.len() == k,
            "repeats in {drawn:?} although the pool has {}",
            pool.len()
        );
    } else {
        ensure!(
            distinct.len() == pool.len(),
            "{drawn:?} misses some of {pool:?}"
        );
        // OML: every element once first, then the repeats.
        let head: BTreeSet<usize> = drawn[..pool.len()].iter().copied().collect();
        ensure!(
            head.len() == pool.len(),
            "{drawn:?} does not start with all of {pool:?}"
        );
    }
    Ok(())
}

/// Every `BalanceSampler` rule for one epoch.
pub fn check_balance_epoch<L: Ord + Clone + std::fmt::Debug>(
    labels: &[L],
    epoch: &[Vec<usize>],
    n_labels: usize,
    n_instances: usize,
) -> Check {
    let by_label = indices_by_label(labels);
    ensure!(
        epoch.len() == by_label.len() / n_labels,
        "{} batches, expected floor({} / {n_labels})",
        epoch.len(),
        by_label.len()
    );
    let mut seen = BTreeSet::new();
    for (b, batch) in epoch.iter().enumerate() {
        ensure!(
            batch.len() == n_labels * n_instances,
            "batch {b} has {} items",
            batch.len()
        );
        ensure!(
            batch.iter().all(|&i| i < labels.len()),
            "batch {b} index out of range"
        );
        let mut batch_labels = BTreeSet::new();
        for (c, chunk) in batch.chunks(n_instances).enumerate() {
            let l = &labels[chunk[0]];
            ensure!(
                chunk.iter().all(|&i| &labels[i] == l),
                "batch {b}, group {c}: not one label ({chunk:?})"
            );
            ensure!(
                batch_labels.insert(l.clone()),
                "batch {b}: label {l:?} in two groups"
            );
            check_smart_sample(&by_label[l], n_instances, chunk)
                .map_err(|e| format!("batch {b}, label {l:?}: {e}"))?;
            ensure!(
                seen.insert(l.clone()),
                "label {l:?} used twice in the epoch"
            );
        }
        ensure!(
            batch_labels.len() == n_labels,
            "batch {b}: {} labels",
            batch_labels.len()
        );
    }
    Ok(())
}

/// Splits a category-sampler batch into `(category, labels)` blocks and checks the layout:
/// `n_categories` blocks of `n_labels * n_instances`, each of one category, categories distinct,
/// each label group a `smart_sample` of that label.
pub fn category_blocks<L, C>(
    labels: &[L],
    l2c: &BTreeMap<L, C>,
    batch: &[usize],
    n_categories: usize,
    n_labels: usize,
    n_instances: usize,
) -> Result<Vec<(C, Vec<L>)>, String>
where
    L: Ord + Clone + std::fmt::Debug,
    C: Ord + Clone + std::fmt::Debug,
{
    let by_label = indices_by_label(labels);
    ensure!(
        batch.len() == n_categories * n_labels * n_instances,
        "batch has {} items",
        batch.len()
    );
    let mut blocks = Vec::new();
    let mut cats = BTreeSet::new();
    for block in batch.chunks(n_labels * n_instances) {
        let mut block_labels = Vec::new();
        for chunk in block.chunks(n_instances) {
            let l = &labels[chunk[0]];
            ensure!(
                chunk.iter().all(|&i| &labels[i] == l),
                "group {chunk:?} mixes labels"
            );
            check_smart_sample(&by_label[l], n_instances, chunk)
                .map_err(|e| format!("label {l:?}: {e}"))?;
            block_labels.push(l.clone());
        }
        let c = &l2c[&block_labels[0]];
        ensure!(
            block_labels.iter().all(|l| &l2c[l] == c),
            "block {block_labels:?} mixes categories"
        );
        ensure!(cats.insert(c.clone()), "category {c:?} twice in a batch");
        blocks.push((c.clone(), block_labels));
    }
    Ok(blocks)
}

fn labels_of_category<L: Ord + Clone, C: Ord>(l2c: &BTreeMap<L, C>, c: &C) -> BTreeSet<L> {
    l2c.iter()
        .filter(|(_, cc)| *cc == c)
        .map(|(l, _)| l.clone())
        .collect()
}

/// Every `CategoryBalanceSampler` rule for one epoch.
pub fn check_category_epoch<L, C>(
    labels: &[L],
    l2c: &BTreeMap<L, C>,
    epoch: &[Vec<usize>],
    n_categories: usize,
    n_labels: usize,
    n_instances: usize,
) -> Check
where
    L: Ord + Clone + std::fmt::Debug,
    C: Ord + Clone + std::fmt::Debug,
{
    let n_unique = indices_by_label(labels).len();
    ensure!(
        epoch.len() == n_unique.div_ceil(n_labels),
        "{} batches, expected ceil({n_unique} / {n_labels})",
        epoch.len()
    );
    for (b, batch) in epoch.iter().enumerate() {
        let blocks = category_blocks(labels, l2c, batch, n_categories, n_labels, n_instances)
            .map_err(|e| format!("batch {b}: {e}"))?;
        for (c, block_labels) in blocks {
            // smart_sample over the category's labels.
            let all = labels_of_category(l2c, &c);
            let distinct: BTreeSet<L> = block_labels.iter().cloned().collect();
            if all.len() >= n_labels {
                ensure!(
                    distinct.len() == n_labels,
                    "batch {b}: repeated labels in {c:?}"
                );
            } else {
                ensure!(
                    distinct == all,
                    "batch {b}: {c:?} does not use all its labels"
                );
            }
        }
    }
    Ok(())
}

/// Every `DistinctCategoryBalanceSampler` rule for one epoch, replaying its state: which
/// labels of each category are unused since the last reset.
pub fn check_distinct_epoch<L, C>(
    labels: &[L],
    l2c: &BTreeMap<L, C>,
    epoch: &[Vec<usize>],
    n_categories: usize,
    n_labels: usize,
    n_instances: usize,
    epoch_size: usize,
) -> Check
where
    L: Ord + Clone + std::fmt::Debug,
    C: Ord + Clone + std::fmt::Debug,
{
    ensure!(
        epoch.len() == epoch_size,
        "{} batches, expected {epoch_size}",
        epoch.len()
    );
    let full: BTreeMap<C, BTreeSet<L>> = l2c
        .values()
        .map(|c| (c.clone(), labels_of_category(l2c, c)))
        .collect();
    let mut unused = full.clone();
    let mut used: BTreeMap<C, BTreeSet<L>> = BTreeMap::new();
    for (b, batch) in epoch.iter().enumerate() {
        if unused.values().filter(|s| !s.is_empty()).count() < n_categories {
            unused = full.clone();
            used.clear();
        }
        let blocks = category_blocks(labels, l2c, batch, n_categories, n_labels, n_instances)
            .map_err(|e| format!("batch {b}: {e}"))?;
        for (c, block_labels) in blocks {
            let distinct: BTreeSet<L> = block_labels.iter().cloned().collect();
            ensure!(
                distinct.len() == n_labels,
                "batch {b}: repeated labels in {c:?}"
            );
            let free = &unused[&c];
            ensure!(
                !free.is_empty(),
                "batch {b}: category {c:?} has no unused label left"
            );
            if free.len() >= n_labels {
                ensure!(
                    distinct.is_subset(free),
                    "batch {b}: {c:?} reuses a label too early"
                );
            } else {
                ensure!(
                    free.is_subset(&distinct),
                    "batch {b}: {c:?} leaves unused labels out"
                );
                let u = used.entry(c.clone()).or_default();
                ensure!(
                    distinct.difference(free).all(|l| u.contains(l)),
                    "batch {b}: {c:?} fills up with labels not used before"
                );
            }
            let u = used.entry(c.clone()).or_default();
            for l in &distinct {
                u.insert(l.clone());
            }
            unused
                .get_mut(&c)
                .unwrap()
                .retain(|l| !distinct.contains(l));
        }
    }
    Ok(())
}
