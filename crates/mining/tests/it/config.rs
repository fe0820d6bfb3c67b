//! Configs in OML's registry format: parsing, building, errors naming the parameter, and the
//! built criteria as Burn modules (ArcFace trains).

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use oml_interfaces::Criterion;
use oml_interfaces::device::test_device;
use oml_mining::{
    ArcFaceLoss, ArcFaceLossWithMLP, ArcFaceOptions, CriterionConfig, CriterionModule,
    Label2Category, Miner, MinerConfig,
};

fn criterion(yaml: &str) -> CriterionConfig {
    serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

/// The error of parsing `yaml` (bad enumerations such as `reduction` fail there) or, when it
/// parses, of building it.
fn build_err(yaml: &str) -> String {
    let parsed: CriterionConfig = match serde_yaml_ng::from_str(yaml) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    parsed
        .build(&test_device())
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn every_registry_name_builds_and_runs() {
    let device = test_device().autodiff();
    let labels = [0, 1, 0, 1, 2, 2, 1, 0, 2];
    let x = Tensor::<2>::random([9, 6], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let miners = [
        "{name: all_triplets}",
        "{name: all_triplets, args: {max_output_triplets: 20, seed: 3, device: cpu}}",
        "{name: hard_triplets, args: {}}",
        "{name: n_hard_triplets, args: {n_positive: [1, 2], n_negative: 3}}",
        "{name: hard_cluster}",
        "{name: triplets_with_memory, args: {bank_size_in_batches: 2, tri_expand_k: 3}}",
        "{name: miner_with_bank, args: {bank_size_in_batches: 2, miner: {name: n_hard_triplets, args: {n_positive: 1}}}}",
    ];
    for m in miners {
        for margin in ["0.2", "null"] {
            let yaml = format!(
                "{{name: triplet_with_miner, args: {{margin: {margin}, need_logs: true, miner: {m}}}}}"
            );
            let c = criterion(&yaml).build(&device).unwrap();
            assert_eq!(c.criterion_name(), "triplet");
            for _ in 0..3 {
                let out = c.forward(x.clone(), &labels).unwrap();
                assert!(x.grad(&out.loss.backward()).is_some(), "{yaml}");
                assert!(out.logs.contains_key("active_tri"));
            }
        }
    }
    let others = [
        ("{name: triplet, args: {margin: 0.1}}", "triplet"),
        (
            "{name: triplet_plain, args: {margin: null, reduction: sum}}",
            "triplet",
        ),
        (
            "{name: surrogate_precision, args: {k: 2}}",
            "surrogate_precision",
        ),
        (
            "{name: arcface, args: {in_features: 6, num_classes: 3, smoothing_epsilon: 0.1}}",
            "arcface",
        ),
        (
            "{name: mlp_arcface, args: {in_features: 6, num_classes: 3, mlp_features: [8, 4]}}",
            "arcface",
        ),
        (
            "{name: arcface_with_mlp, args: {in_features: 6, num_classes: 3, mlp_features: [5]}}",
            "arcface",
        ),
    ];
    for (yaml, name) in others {
        let c = criterion(yaml).build(&device).unwrap();
        assert_eq!(c.criterion_name(), name);
        let out = c.forward(x.clone(), &labels).unwrap();
        assert!(x.grad(&out.loss.backward()).is_some(), "{yaml}");
    }
}

#[test]
fn oml_pipeline_yaml_and_json_forms() {
    let yaml = "
name: triplet_with_miner
args:
  need_logs: true
  margin: null
  reduction: mean
  miner:
    name: n_hard_triplets
    args:
      n_positive: [1, 3]
      n_negative: 5
";
    let c = criterion(yaml);
    let json = r#"{"name": "triplet_with_miner", "args": {"need_logs": true, "margin": null,
        "miner": {"name": "n_hard_triplets", "args": {"n_positive": [1, 3], "n_negative": 5}}}}"#;
    let from_json: CriterionConfig = serde_json::from_str(json).unwrap();
    assert_eq!(c, from_json);
    let built = c.build(&test_device()).unwrap();
    let CriterionModule::Fixed(_) = built else {
        panic!("not fixed")
    };
    // round trip through YAML
    let text = serde_yaml_ng::to_string(&c).unwrap();
    assert_eq!(criterion(&text), c, "{text}");
    let m: MinerConfig = serde_yaml_ng::from_str("{name: hard_triplets}").unwrap();
    assert!(matches!(m.build().unwrap(), Miner::Hard(_)));
    // label2category with integer keys (YAML) and string keys (JSON)
    let a = criterion(
        "{name: arcface, args: {in_features: 2, num_classes: 3, smoothing_epsilon: 0.1, label2category: {0: a, 1: b, 2: b}}}",
    );
    let b: CriterionConfig = serde_json::from_str(
        r#"{"name": "arcface", "args": {"in_features": 2, "num_classes": 3, "smoothing_epsilon": 0.1, "label2category": {"0": "a", "1": "b", "2": "b"}}}"#,
    )
    .unwrap();
    assert_eq!(a, b);
}

#[test]
fn invalid_parameters_are_errors_naming_them() {
    for (yaml, name) in [
        ("{name: triplet_with_miner, args: {margin: 0}}", "`margin`"),
        (
            "{name: triplet_with_miner, args: {margin: -0.5}}",
            "`margin`",
        ),
        ("{name: triplet_with_miner, args: {}}", "`margin`"),
        (
            "{name: triplet, args: {margin: 0.2, reduction: avg}}",
            "`reduction`",
        ),
        (
            "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: n_hard_triplets, args: {n_positive: 0}}}}",
            "`n_positive`",
        ),
        (
            "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: n_hard_triplets, args: {n_negative: [3, 2]}}}}",
            "`n_negative`",
        ),
        (
            "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: all_triplets, args: {max_output_triplets: 0}}}}",
            "`max_output_triplets`",
        ),
        (
            "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: triplets_with_memory, args: {bank_size_in_batches: 0, tri_expand_k: 2}}}}",
            "`bank_size_in_batches`",
        ),
        (
            "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: miner_with_bank, args: {bank_size_in_batches: 2, miner: {name: hard_triplets}}}}}",
            "`miner`",
        ),
        ("{name: surrogate_precision, args: {k: 0}}", "`k`"),
        (
            "{name: surrogate_precision, args: {k: 1, temperature2: 0}}",
            "`temperature2`",
        ),
        (
            "{name: arcface, args: {in_features: 4, num_classes: 0}}",
            "`num_classes`",
        ),
        (
            "{name: arcface, args: {in_features: 4, num_classes: 3, smoothing_epsilon: 1.5}}",
            "`smoothing_epsilon`",
        ),
        (
            "{name: arcface, args: {in_features: 4, num_classes: 3, label2category: {0: a, 1: b}}}",
            "`label2category`",
        ),
        (
            "{name: mlp_arcface, args: {in_features: 4, num_classes: 3, mlp_features: []}}",
            "`mlp_features`",
        ),
    ] {
        let e = build_err(yaml);
        assert!(e.contains(name), "{yaml}: {e}");
    }
    for (yaml, needle) in [
        ("{name: triplett}", "unknown criterion `triplett`"),
        ("{name: triplet_with_miner, args: {margn: 0.2}}", "margn"),
        (
            "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: hardest}}}",
            "unknown miner `hardest`",
        ),
        ("{name: hard_triplets_typo}", "unknown criterion"),
        (
            "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: hard_triplets, args: {k: 1}}}}",
            "unknown field `k`",
        ),
    ] {
        let e = serde_yaml_ng::from_str::<CriterionConfig>(yaml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{yaml}: {e}");
    }
}

#[test]
fn label2category_is_injected_into_arcface_only() {
    let l2c: Label2Category = [(0i64, "x"), (1, "y"), (2, "y")].into_iter().collect();
    let a = criterion(
        "{name: arcface, args: {in_features: 3, num_classes: 3, smoothing_epsilon: 0.1}}",
    )
    .with_label2category(l2c.clone());
    let CriterionConfig::ArcFace(args) = &a else {
        panic!()
    };
    assert_eq!(args.label2category.as_ref(), Some(&l2c));
    let t = criterion("{name: triplet, args: {margin: 0.1}}");
    assert_eq!(t.clone().with_label2category(l2c), t);
    assert!(a.is_trainable() && !t.is_trainable());
}

#[test]
fn built_criteria_are_modules_and_arcface_trains() {
    let device = test_device().autodiff();
    let c = criterion("{name: arcface, args: {in_features: 5, num_classes: 4}}")
        .build(&device)
        .unwrap();
    assert_eq!(c.num_params(), 20);
    let fixed = criterion("{name: triplet_with_miner, args: {margin: 0.2}}")
        .build(&device)
        .unwrap();
    assert_eq!(fixed.num_params(), 0);
    let mlp = criterion(
        "{name: mlp_arcface, args: {in_features: 5, num_classes: 4, mlp_features: [6, 3]}}",
    )
    .build(&device)
    .unwrap();
    assert_eq!(mlp.num_params(), 5 * 6 + 6 + 6 * 3 + 3 + 4 * 3);

    // plain gradient descent on the class matrix lowers the loss
    let labels = [0, 1, 2, 3, 0, 1, 2, 3];
    let x = Tensor::<2>::random([8, 5], Distribution::Normal(0.0, 1.0), &device);
    let mut loss = ArcFaceLoss::new(
        5,
        4,
        ArcFaceOptions {
            s: 8.0,
            m: 0.2,
            ..Default::default()
        },
        &device,
    )
    .unwrap();
    let first: f32 = loss.forward(x.clone(), &labels).unwrap().loss.into_scalar();
    for _ in 0..30 {
        let out = loss.forward(x.clone(), &labels).unwrap();
        let grads = out.loss.backward();
        let w = loss.weight.val();
        let g = w.grad(&grads).unwrap();
        let updated = (w.inner() - g.mul_scalar(0.5))
            .detach()
            .autodiff()
            .require_grad();
        loss = ArcFaceLoss::with_weight(updated, loss.settings().options().clone()).unwrap();
    }
    let last: f32 = loss.forward(x, &labels).unwrap().loss.into_scalar();
    assert!(last < first * 0.8, "{first} -> {last}");
}

#[test]
fn arcface_never_yields_nan_on_exact_class_vectors() {
    let device = test_device().autodiff();
    let w = Tensor::<2>::from_data([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], &device).require_grad();
    let x = Tensor::<2>::from_data([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, 0.0]], &device)
        .require_grad();
    let loss = ArcFaceLoss::with_weight(w, ArcFaceOptions::default()).unwrap();
    let out = loss.forward(x.clone(), &[0, 1, 2, 0]).unwrap();
    let grads = out.loss.backward();
    let v: f32 = out.loss.into_scalar();
    assert!(v.is_finite());
    let g: Vec<f32> = x.grad(&grads).unwrap().into_data().iter::<f32>().collect();
    assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    let gw: Vec<f32> = loss
        .weight
        .val()
        .grad(&grads)
        .unwrap()
        .into_data()
        .iter::<f32>()
        .collect();
    assert!(gw.iter().all(|x| x.is_finite()), "{gw:?}");
}

#[test]
fn arcface_with_mlp_backpropagates_into_the_projector() {
    let device = test_device().autodiff();
    let c = ArcFaceLossWithMLP::new(4, 3, &[6, 2], ArcFaceOptions::default(), &device).unwrap();
    let x = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let out = c.forward(x.clone(), &[0, 1, 2, 0, 1, 2]).unwrap();
    let grads = out.loss.backward();
    assert!(c.mlp[0].weight.val().grad(&grads).is_some());
    assert!(c.arcface.weight.val().grad(&grads).is_some());
    assert!(x.grad(&grads).is_some());
}

/// A trained module holding a built criterion, as the training pipeline does.
#[derive(Module, Debug)]
struct TrainModel {
    head: burn::nn::Linear,
    criterion: CriterionModule,
}

#[test]
fn a_criterion_module_is_a_field_of_a_trained_module() {
    let device = test_device().autodiff();
    for (yaml, criterion_params) in [
        ("{name: arcface, args: {in_features: 3, num_classes: 2}}", 6),
        (
            "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: miner_with_bank, args: {bank_size_in_batches: 1, miner: {name: n_hard_triplets}}}}}",
            0,
        ),
    ] {
        let model = TrainModel {
            head: burn::nn::LinearConfig::new(4, 3).init(&device),
            criterion: criterion(yaml).build(&device).unwrap(),
        };
        assert_eq!(model.num_params(), 4 * 3 + 3 + criterion_params);
        let x = Tensor::<2>::random([4, 4], Distribution::Normal(0.0, 1.0), &device);
        let labels = [0, 1, 0, 1];
        let out = model
            .criterion
            .forward(model.head.forward(x.clone()), &labels)
            .unwrap();
        let grads = out.loss.backward();
        assert!(model.head.weight.val().grad(&grads).is_some(), "{yaml}");
        // clones (e.g. for validation) keep working, sharing any memory bank
        let valid = model.clone().valid();
        let out = valid
            .criterion
            .forward(valid.head.forward(x.inner()), &labels)
            .unwrap();
        assert!(out.loss.into_scalar::<f32>().is_finite());
        let record = model.clone().into_record();
        let reloaded = model.load_record(record);
        assert_eq!(reloaded.num_params(), 4 * 3 + 3 + criterion_params);
    }
}
