//! OML-style YAML sampler configs, built at run time from labels (and label2category).

use std::collections::BTreeMap;

use oml_sampling::{
    BalanceConfig, CategoryBalanceConfig, DistinctCategoryBalanceConfig, SAMPLERS_REGISTRY,
    SamplerConfig, SamplerError,
};

use crate::oracle::{check_balance_epoch, check_category_epoch, check_distinct_epoch};

#[derive(Debug, serde::Deserialize)]
struct Pipeline {
    sampler: Option<SamplerConfig>,
}

fn data() -> (Vec<i64>, BTreeMap<i64, String>) {
    let labels: Vec<i64> = (0..48).map(|i| i % 12).collect();
    let l2c = (0..12).map(|l| (l, format!("c{}", l % 3))).collect();
    (labels, l2c)
}

#[test]
fn oml_yaml_builds_each_registered_sampler() {
    let yaml = r#"
sampler:
  name: balance
  args:
    n_labels: 3
    n_instances: 2
"#;
    let cfg: Pipeline = serde_yaml_ng::from_str(yaml).unwrap();
    let cfg = cfg.sampler.unwrap();
    assert_eq!(
        cfg,
        SamplerConfig::Balance(BalanceConfig {
            n_labels: 3,
            n_instances: 2
        })
    );
    assert!(!cfg.needs_categories());
    let (labels, l2c) = data();
    let s = cfg
        .build(&labels, None::<&BTreeMap<i64, String>>, 5)
        .unwrap();
    check_balance_epoch(&labels, &s.epoch_batches(0), 3, 2).unwrap();

    let cfg: SamplerConfig = serde_yaml_ng::from_str(
        "name: category_balance\nargs: {n_categories: 2, n_labels: 2, n_instances: 3}",
    )
    .unwrap();
    // OML's defaults: resample_labels false, weight_categories true.
    assert_eq!(
        cfg,
        SamplerConfig::CategoryBalance(CategoryBalanceConfig {
            n_categories: 2,
            n_labels: 2,
            n_instances: 3,
            resample_labels: false,
            weight_categories: true,
        })
    );
    let s = cfg.build(&labels, Some(&l2c), 5).unwrap();
    check_category_epoch(&labels, &l2c, &s.epoch_batches(3), 2, 2, 3).unwrap();

    let cfg: SamplerConfig = serde_yaml_ng::from_str(
        "name: distinct_category_balance\nargs: {n_categories: 2, n_labels: 2, n_instances: 2, epoch_size: 9}",
    )
    .unwrap();
    assert!(matches!(
        cfg,
        SamplerConfig::DistinctCategoryBalance(DistinctCategoryBalanceConfig { epoch_size: 9, .. })
    ));
    let s = cfg.build(&labels, Some(&l2c), 5).unwrap();
    check_distinct_epoch(&labels, &l2c, &s.epoch_batches(1), 2, 2, 2, 9).unwrap();

    let names: Vec<&str> = [
        SamplerConfig::Balance(BalanceConfig {
            n_labels: 2,
            n_instances: 2,
        }),
        cfg.clone(),
    ]
    .iter()
    .map(SamplerConfig::name)
    .collect();
    assert_eq!(names, vec![SAMPLERS_REGISTRY[0], SAMPLERS_REGISTRY[2]]);
}

#[test]
fn the_seed_is_the_pipeline_seed() {
    let (labels, _) = data();
    let cfg = SamplerConfig::Balance(BalanceConfig {
        n_labels: 3,
        n_instances: 2,
    });
    let none = None::<&BTreeMap<i64, String>>;
    let a = cfg.build(&labels, none, 1).unwrap().epoch_batches(0);
    assert_eq!(a, cfg.build(&labels, none, 1).unwrap().epoch_batches(0));
    assert_ne!(a, cfg.build(&labels, none, 2).unwrap().epoch_batches(0));
}

#[test]
fn configs_round_trip_and_reject_typos() {
    let cfg = SamplerConfig::CategoryBalance(CategoryBalanceConfig {
        n_categories: 1,
        n_labels: 2,
        n_instances: 2,
        resample_labels: true,
        weight_categories: false,
    });
    let text = serde_yaml_ng::to_string(&cfg).unwrap();
    assert!(text.contains("name: category_balance"), "{text}");
    assert_eq!(
        serde_yaml_ng::from_str::<SamplerConfig>(&text).unwrap(),
        cfg
    );
    assert!(
        serde_yaml_ng::from_str::<SamplerConfig>(
            "name: balance\nargs: {n_labels: 2, n_instance: 2}"
        )
        .is_err()
    );
    let e = serde_yaml_ng::from_str::<SamplerConfig>("name: balanced\nargs: {}")
        .unwrap_err()
        .to_string();
    assert!(e.contains(&SAMPLERS_REGISTRY.join(", ")), "{e}");
    // OML's wire form, `{name, args}` (oml_interfaces::registry::Named).
    assert_eq!(
        serde_json::to_value(SamplerConfig::Balance(BalanceConfig {
            n_labels: 2,
            n_instances: 3
        }))
        .unwrap(),
        serde_json::json!({"name": "balance", "args": {"n_labels": 2, "n_instances": 3}})
    );
    assert!(
        serde_yaml_ng::from_str::<SamplerConfig>(
            "name: balance\nargs: {n_labels: -2, n_instances: 2}"
        )
        .is_err()
    );
}

#[test]
fn a_category_sampler_without_categories_is_an_error() {
    let (labels, _) = data();
    let cfg = SamplerConfig::DistinctCategoryBalance(DistinctCategoryBalanceConfig {
        n_categories: 1,
        n_labels: 2,
        n_instances: 2,
        epoch_size: 3,
    });
    let Err(err) = cfg.build(&labels, None::<&BTreeMap<i64, String>>, 0) else {
        panic!("built a category sampler without categories");
    };
    assert!(matches!(
        err,
        SamplerError::InvalidParameter {
            name: "label2category",
            ..
        }
    ));
    assert!(
        err.to_string().contains("distinct_category_balance"),
        "{err}"
    );
}
