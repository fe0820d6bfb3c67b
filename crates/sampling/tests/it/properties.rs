//! Property tests: every rule of OML's samplers on random label distributions, reproducibility
//! per seed, and fresh draws per epoch; plus a few frequency checks with fixed seeds.

use std::collections::BTreeMap;

use oml_sampling::{
    BalanceSampler, BatchSampler, CategoryBalanceSampler, DistinctCategoryBalanceSampler,
    epoch_rng, smart_sample,
};
use proptest::prelude::*;
use rand::seq::SliceRandom;

use crate::oracle::*;

fn check(r: Check) -> Result<(), TestCaseError> {
    r.map_err(TestCaseError::fail)
}

/// Labels `label_of(g)` repeated `counts[g]` times, in a shuffled item order.
fn shuffled_labels(counts: &[usize], label_of: impl Fn(usize) -> i64, shuffle: u64) -> Vec<i64> {
    let mut labels: Vec<i64> = counts
        .iter()
        .enumerate()
        .flat_map(|(g, &n)| std::iter::repeat_n(label_of(g), n))
        .collect();
    labels.shuffle(&mut epoch_rng(shuffle, 0));
    labels
}

/// At least one of the next 32 epochs differs (a coincidence has odds below 8^-32).
fn new_epochs_differ(s: &dyn BatchSampler, epoch: usize) -> bool {
    let first = s.epoch_batches(epoch);
    (1..=32).any(|d| s.epoch_batches(epoch + d) != first)
}

#[derive(Debug, Clone)]
struct BalanceCase {
    labels: Vec<i64>,
    n_labels: usize,
    n_instances: usize,
    seed: u64,
    epoch: usize,
}

fn balance_case() -> impl Strategy<Value = BalanceCase> {
    prop::collection::vec(2usize..10, 2..30)
        .prop_flat_map(|counts| {
            let l = counts.len();
            (
                Just(counts),
                2..=l,
                2usize..7,
                any::<u64>(),
                0usize..100_000,
                any::<u64>(),
            )
        })
        .prop_map(
            |(counts, n_labels, n_instances, seed, epoch, shuffle)| BalanceCase {
                // Sparse, signed label values: nothing assumes 0..L.
                labels: shuffled_labels(&counts, |g| g as i64 * 37 - 100, shuffle),
                n_labels,
                n_instances,
                seed,
                epoch,
            },
        )
}

#[derive(Debug, Clone)]
struct CategoryCase {
    labels: Vec<i64>,
    l2c: BTreeMap<i64, String>,
    n_categories: usize,
    n_labels: usize,
    n_instances: usize,
    seed: u64,
    epoch: usize,
}

/// Categories with `min_labels..6` labels each, labels with 2..6 samples; `n_labels` fits every
/// category when `min_labels >= 2`, else only the number of labels (resampling case).
fn category_case(min_labels: usize) -> impl Strategy<Value = CategoryCase> {
    prop::collection::vec(prop::collection::vec(2usize..6, min_labels..6), 1..5)
        .prop_filter("at least two labels", |cats| {
            cats.iter().map(Vec::len).sum::<usize>() >= 2
        })
        .prop_flat_map(move |cats| {
            let total: usize = cats.iter().map(Vec::len).sum();
            let max_nl = if min_labels >= 2 {
                cats.iter().map(Vec::len).min().unwrap_or(2)
            } else {
                total.min(6)
            };
            let c = cats.len();
            (
                Just(cats),
                1..=c,
                2..=max_nl,
                2usize..5,
                any::<u64>(),
                0usize..100_000,
                any::<u64>(),
            )
        })
        .prop_map(
            |(cats, n_categories, n_labels, n_instances, seed, epoch, shuffle)| {
                let mut counts = Vec::new();
                let mut l2c = BTreeMap::new();
                for (c, label_counts) in cats.iter().enumerate() {
                    for &n in label_counts {
                        l2c.insert(counts.len() as i64 * 5 + 3, format!("category-{c}"));
                        counts.push(n);
                    }
                }
                CategoryCase {
                    labels: shuffled_labels(&counts, |g| g as i64 * 5 + 3, shuffle),
                    l2c,
                    n_categories,
                    n_labels,
                    n_instances,
                    seed,
                    epoch,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn smart_sample_keeps_its_rules(pool_len in 1usize..12, k in 1usize..16, seed in any::<u64>()) {
        let pool: Vec<usize> = (0..pool_len).map(|i| i * 3 + 1).collect();
        let mut out = vec![];
        smart_sample(&pool, k, &mut epoch_rng(seed, 0), &mut out);
        check(check_smart_sample(&pool, k, &out))?;
    }

    #[test]
    fn balance_sampler_keeps_every_rule(case in balance_case()) {
        let s = BalanceSampler::new(&case.labels, case.n_labels, case.n_instances)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .with_seed(case.seed);
        prop_assert_eq!(s.batch_size(), case.n_labels * case.n_instances);
        let epoch = s.epoch_batches(case.epoch);
        prop_assert_eq!(epoch.len(), s.num_batches());
        check(check_balance_epoch(&case.labels, &epoch, case.n_labels, case.n_instances))?;
        // Reproducible per (seed, epoch), also from a sampler built anew.
        prop_assert_eq!(&epoch, &s.epoch_batches(case.epoch));
        let again = BalanceSampler::new(&case.labels, case.n_labels, case.n_instances)
            .unwrap()
            .with_seed(case.seed);
        prop_assert_eq!(&epoch, &again.epoch_batches(case.epoch));
        prop_assert!(new_epochs_differ(&s, case.epoch));
    }

    #[test]
    fn category_balance_sampler_keeps_every_rule(case in category_case(2), weight in any::<bool>()) {
        let s = CategoryBalanceSampler::with_options(
            &case.labels, &case.l2c, case.n_categories, case.n_labels, case.n_instances, false, weight,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .with_seed(case.seed);
        prop_assert_eq!(s.batch_size(), case.n_categories * case.n_labels * case.n_instances);
        let epoch = s.epoch_batches(case.epoch);
        prop_assert_eq!(epoch.len(), s.num_batches());
        check(check_category_epoch(
            &case.labels, &case.l2c, &epoch, case.n_categories, case.n_labels, case.n_instances,
        ))?;
        prop_assert_eq!(&epoch, &s.epoch_batches(case.epoch));
        prop_assert!(new_epochs_differ(&s, case.epoch));
    }

    #[test]
    fn category_balance_sampler_with_resampling_keeps_every_rule(
        case in category_case(1),
        weight in any::<bool>(),
    ) {
        let s = CategoryBalanceSampler::with_options(
            &case.labels, &case.l2c, case.n_categories, case.n_labels, case.n_instances, true, weight,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .with_seed(case.seed);
        let epoch = s.epoch_batches(case.epoch);
        check(check_category_epoch(
            &case.labels, &case.l2c, &epoch, case.n_categories, case.n_labels, case.n_instances,
        ))?;
        prop_assert_eq!(&epoch, &s.epoch_batches(case.epoch));
        prop_assert!(new_epochs_differ(&s, case.epoch));
    }

    #[test]
    fn distinct_category_balance_sampler_keeps_every_rule(
        case in category_case(2),
        epoch_size in 1usize..40,
    ) {
        let s = DistinctCategoryBalanceSampler::new(
            &case.labels, &case.l2c, case.n_categories, case.n_labels, case.n_instances, epoch_size,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .with_seed(case.seed);
        prop_assert_eq!(s.num_batches(), epoch_size);
        let epoch = s.epoch_batches(case.epoch);
        check(check_distinct_epoch(
            &case.labels, &case.l2c, &epoch, case.n_categories, case.n_labels, case.n_instances,
            epoch_size,
        ))?;
        prop_assert_eq!(&epoch, &s.epoch_batches(case.epoch));
        prop_assert!(new_epochs_differ(&s, case.epoch));
    }
}

#[test]
fn oml_sample_case_has_two_batches_of_six() {
    // oml-4.0.md §1.2, checked against OML 4.0: len 2, batches like [0, 2, 1, 8, 5, 7].
    let labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4];
    let s = BalanceSampler::new(&labels, 2, 3).unwrap();
    assert_eq!(s.num_batches(), 2);
    for epoch in 0..50 {
        check_balance_epoch(&labels, &s.epoch_batches(epoch), 2, 3).unwrap();
    }
    check_balance_epoch(
        &labels,
        &[vec![0, 2, 1, 8, 5, 7], vec![3, 4, 3, 9, 10, 9]],
        2,
        3,
    )
    .unwrap();
}

#[test]
fn oracle_rejects_broken_epochs() {
    // The checks can fail: a label reused across batches, a mixed group, a short batch.
    let labels = [0, 0, 1, 1, 2, 2, 3, 3];
    assert!(check_balance_epoch(&labels, &[vec![0, 1, 2, 3], vec![4, 5, 0, 1]], 2, 2).is_err());
    assert!(check_balance_epoch(&labels, &[vec![0, 2, 1, 3], vec![4, 5, 6, 7]], 2, 2).is_err());
    assert!(check_balance_epoch(&labels, &[vec![0, 1, 2], vec![4, 5, 6, 7]], 2, 2).is_err());
    assert!(check_balance_epoch(&labels, &[vec![0, 0, 2, 3], vec![4, 5, 6, 7]], 2, 2).is_err());
    let l2c = BTreeMap::from([(0, "a"), (1, "a"), (2, "b"), (3, "b")]);
    // Distinct: "a" is used up by batch 0, so it may come back only after "b" and a reset.
    let good = [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![2, 3, 0, 1]];
    assert!(check_distinct_epoch(&labels, &l2c, &good, 1, 2, 2, 3).is_ok());
    let early = [vec![0, 1, 2, 3], vec![0, 1, 2, 3]];
    assert!(check_distinct_epoch(&labels, &l2c, &early, 1, 2, 2, 2).is_err());
    let l2c3 = BTreeMap::from([(0, "a"), (1, "a"), (2, "a"), (3, "b")]);
    let labels3 = [0, 0, 1, 1, 2, 2, 3, 3];
    let bad = [vec![0, 1, 2, 3], vec![0, 1, 2, 3]];
    assert!(check_distinct_epoch(&labels3, &l2c3, &bad, 1, 2, 2, 2).is_err());
}

#[test]
fn integer_and_string_labels_give_the_same_batches() {
    // OML's test: string vs int categories give the same indices under the same seed. Here
    // for labels and categories, with strings that sort like the integers.
    let int_labels: Vec<i64> = (0..60).map(|i| (i * 7) % 15).collect();
    let str_labels: Vec<String> = int_labels.iter().map(|l| format!("id-{l:03}")).collect();
    let int_l2c: BTreeMap<i64, i64> = (0..15).map(|l| (l, l % 4)).collect();
    let str_l2c: BTreeMap<String, String> = int_l2c
        .iter()
        .map(|(l, c)| (format!("id-{l:03}"), format!("c{c}")))
        .collect();
    for epoch in 0..5 {
        let a = BalanceSampler::new(&int_labels, 4, 3).unwrap().with_seed(9);
        let b = BalanceSampler::new(&str_labels, 4, 3).unwrap().with_seed(9);
        assert_eq!(a.epoch_batches(epoch), b.epoch_batches(epoch));
        let a = CategoryBalanceSampler::new(&int_labels, &int_l2c, 2, 3, 2)
            .unwrap()
            .with_seed(9);
        let b = CategoryBalanceSampler::new(&str_labels, &str_l2c, 2, 3, 2)
            .unwrap()
            .with_seed(9);
        assert_eq!(a.epoch_batches(epoch), b.epoch_batches(epoch));
        let a = DistinctCategoryBalanceSampler::new(&int_labels, &int_l2c, 2, 3, 2, 7).unwrap();
        let b = DistinctCategoryBalanceSampler::new(&str_labels, &str_l2c, 2, 3, 2, 7).unwrap();
        assert_eq!(a.epoch_batches(epoch), b.epoch_batches(epoch));
    }
}

#[test]
fn seeds_give_different_epochs() {
    let labels: Vec<i64> = (0..100).map(|i| i % 20).collect();
    let a = BalanceSampler::new(&labels, 4, 2).unwrap().with_seed(1);
    let b = BalanceSampler::new(&labels, 4, 2).unwrap().with_seed(2);
    assert_ne!(a.epoch_batches(0), b.epoch_batches(0));
}

/// |observed - expected| within 5 standard deviations of a binomial count.
fn assert_binomial(observed: usize, n: usize, p: f64, what: &str) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (observed as f64 - mean).abs() < 5.0 * sd,
        "{what}: {observed} vs expected {mean:.1} ± {sd:.1}"
    );
}

#[test]
fn balance_sampler_leaves_out_each_label_equally_often() {
    // 10 labels, 3 per batch: 3 batches, one label left out per epoch, each with p = 1/10.
    let labels: Vec<i64> = (0..40).map(|i| i % 10).collect();
    let s = BalanceSampler::new(&labels, 3, 2).unwrap().with_seed(5);
    let epochs = 20_000;
    let mut left_out = [0usize; 10];
    for e in 0..epochs {
        let mut used = [false; 10];
        for &i in s.epoch_batches(e).iter().flatten() {
            used[labels[i] as usize] = true;
        }
        for (l, u) in used.iter().enumerate() {
            left_out[l] += usize::from(!u);
        }
    }
    for (l, &n) in left_out.iter().enumerate() {
        assert_binomial(n, epochs, 0.1, &format!("label {l} left out"));
    }
}

#[test]
fn categories_are_drawn_by_weight_or_uniformly() {
    // Categories with 2, 4 and 10 labels; one category per batch.
    let sizes = [2usize, 4, 10];
    let mut labels = Vec::new();
    let mut l2c = BTreeMap::new();
    for (c, &n) in sizes.iter().enumerate() {
        for _ in 0..n {
            let l = l2c.len() as i64;
            l2c.insert(l, c);
            labels.extend([l, l]);
        }
    }
    for weight in [true, false] {
        let s = CategoryBalanceSampler::with_options(&labels, &l2c, 1, 2, 2, false, weight)
            .unwrap()
            .with_seed(11);
        let mut counts = [0usize; 3];
        let mut batches = 0;
        for e in 0..2_000 {
            for batch in s.epoch_batches(e) {
                counts[l2c[&labels[batch[0]]]] += 1;
                batches += 1;
            }
        }
        for (c, &n) in counts.iter().enumerate() {
            let p = if weight {
                sizes[c] as f64 / 16.0
            } else {
                1.0 / 3.0
            };
            assert_binomial(n, batches, p, &format!("weight={weight}, category {c}"));
        }
    }
}

#[test]
fn weighted_draws_of_two_categories_follow_successive_sampling() {
    // numpy's choice(replace=False, p) draws one after another, renormalising: with weights
    // 1, 1, 2 the pair {0, 1} has probability (1/4)(1/3) * 2 = 1/6.
    let mut labels = Vec::new();
    let mut l2c = BTreeMap::new();
    for (c, n) in [(0usize, 2usize), (1, 2), (2, 4)] {
        for _ in 0..n {
            let l = l2c.len() as i64;
            l2c.insert(l, c);
            labels.extend([l, l]);
        }
    }
    let s = CategoryBalanceSampler::new(&labels, &l2c, 2, 2, 2)
        .unwrap()
        .with_seed(3);
    let (mut pair01, mut batches) = (0, 0);
    for e in 0..3_000 {
        for batch in s.epoch_batches(e) {
            let a = l2c[&labels[batch[0]]];
            let b = l2c[&labels[batch[4]]];
            pair01 += usize::from(a.min(b) == 0 && a.max(b) == 1);
            batches += 1;
        }
    }
    assert_binomial(pair01, batches, 1.0 / 6.0, "pair {0, 1}");
}
