//! Invalid parameters are errors naming the parameter and the offending label or category.

use std::collections::BTreeMap;

use oml_sampling::{
    BalanceSampler, CategoryBalanceSampler, DistinctCategoryBalanceSampler, SamplerError,
};

fn invalid(err: SamplerError) -> (&'static str, String) {
    match err {
        SamplerError::InvalidParameter { name, value, .. } => (name, value),
        other => panic!("expected InvalidParameter, got {other:?}"),
    }
}

#[test]
fn balance_sampler_rejects_bad_parameters() {
    let labels = [3, 3, 5, 5, 9, 9];
    assert_eq!(
        invalid(BalanceSampler::new(&labels, 1, 2).unwrap_err()),
        ("n_labels", "1".into())
    );
    assert_eq!(
        invalid(BalanceSampler::new(&labels, 0, 2).unwrap_err()),
        ("n_labels", "0".into())
    );
    let err = BalanceSampler::new(&labels, 4, 2).unwrap_err();
    assert!(
        err.to_string().contains("n_labels") && err.to_string().contains("<= 3"),
        "{err}"
    );
    assert_eq!(
        invalid(BalanceSampler::new(&labels, 2, 1).unwrap_err()),
        ("n_instances", "1".into())
    );
    assert_eq!(
        invalid(BalanceSampler::new::<i64>(&[], 2, 2).unwrap_err()),
        ("labels", "[]".into())
    );
    // The largest valid parameters work.
    assert!(BalanceSampler::new(&labels, 3, 2).is_ok());
}

#[test]
fn a_label_with_one_sample_is_named() {
    let labels = ["zebra", "ant", "ant", "zebra", "owl", "cat", "cat"];
    let err = BalanceSampler::new(&labels, 2, 2).unwrap_err();
    assert_eq!(
        err,
        SamplerError::TooFewSamples {
            label: "owl".into(),
            count: 1,
            required: 2
        }
    );
    assert!(err.to_string().contains("owl"), "{err}");
    let l2c = BTreeMap::from([("zebra", 0), ("ant", 0), ("owl", 1), ("cat", 1)]);
    let err = CategoryBalanceSampler::new(&labels, &l2c, 1, 2, 2).unwrap_err();
    assert!(matches!(err, SamplerError::TooFewSamples { ref label, .. } if label == "owl"));
}

fn shop() -> (Vec<i64>, BTreeMap<i64, String>) {
    // shoes: labels 1, 2, 3; bags: labels 4, 5; hats: label 6.
    let labels = vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6];
    let l2c = [
        (1, "shoes"),
        (2, "shoes"),
        (3, "shoes"),
        (4, "bags"),
        (5, "bags"),
        (6, "hats"),
    ]
    .into_iter()
    .map(|(l, c)| (l, c.to_string()))
    .collect();
    (labels, l2c)
}

#[test]
fn category_samplers_reject_bad_parameters() {
    let (labels, l2c) = shop();
    let cat =
        |nc, nl, ni| CategoryBalanceSampler::with_options(&labels, &l2c, nc, nl, ni, true, true);
    assert_eq!(
        invalid(cat(0, 2, 2).unwrap_err()),
        ("n_categories", "0".into())
    );
    assert_eq!(
        invalid(cat(4, 2, 2).unwrap_err()),
        ("n_categories", "4".into())
    );
    assert_eq!(invalid(cat(1, 1, 2).unwrap_err()), ("n_labels", "1".into()));
    assert_eq!(invalid(cat(1, 7, 2).unwrap_err()), ("n_labels", "7".into()));
    assert_eq!(
        invalid(cat(1, 2, 1).unwrap_err()),
        ("n_instances", "1".into())
    );
    assert!(
        cat(3, 6, 2).is_ok(),
        "resample_labels allows small categories"
    );
    let distinct =
        |nc, nl, ni, size| DistinctCategoryBalanceSampler::new(&labels, &l2c, nc, nl, ni, size);
    assert_eq!(
        invalid(distinct(0, 2, 2, 5).unwrap_err()),
        ("n_categories", "0".into())
    );
    assert_eq!(
        invalid(distinct(1, 1, 2, 5).unwrap_err()),
        ("n_labels", "1".into())
    );
    assert_eq!(
        invalid(distinct(1, 1, 1, 5).unwrap_err()).0,
        "n_labels",
        "OML checks n_labels first"
    );
}

#[test]
fn a_category_with_too_few_labels_is_named() {
    let (labels, l2c) = shop();
    // OML: "All the categories must have at least 3 unique labels".
    let expected = SamplerError::TooFewLabels {
        category: "bags".into(),
        count: 2,
        required: 3,
    };
    assert_eq!(
        CategoryBalanceSampler::new(&labels, &l2c, 1, 3, 2).unwrap_err(),
        expected
    );
    assert_eq!(
        DistinctCategoryBalanceSampler::new(&labels, &l2c, 1, 3, 2, 10).unwrap_err(),
        expected
    );
    let err = CategoryBalanceSampler::new(&labels, &l2c, 1, 2, 2).unwrap_err();
    assert!(err.to_string().contains("hats"), "{err}");
}

#[test]
fn a_label_without_category_and_a_category_without_samples_are_named() {
    let (labels, mut l2c) = shop();
    l2c.remove(&5);
    assert_eq!(
        CategoryBalanceSampler::with_options(&labels, &l2c, 1, 2, 2, true, true).unwrap_err(),
        SamplerError::MissingCategory { label: "5".into() }
    );
    let (labels, mut l2c) = shop();
    l2c.insert(42, "bags".into());
    assert_eq!(
        invalid(DistinctCategoryBalanceSampler::new(&labels, &l2c, 1, 1 + 1, 2, 3).unwrap_err()),
        ("label2category", "42".into())
    );
}

#[test]
fn an_empty_epoch_is_refused() {
    let (labels, l2c) = shop();
    let l2c: BTreeMap<i64, String> = l2c
        .into_iter()
        .map(|(l, c)| (l, if l == 6 { "bags".into() } else { c }))
        .collect();
    assert_eq!(
        invalid(DistinctCategoryBalanceSampler::new(&labels, &l2c, 1, 2, 2, 0).unwrap_err()),
        ("epoch_size", "0".into())
    );
    assert!(DistinctCategoryBalanceSampler::new(&labels, &l2c, 2, 2, 2, 1).is_ok());
}
