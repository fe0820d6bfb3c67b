//! OML's model configs (`oml/configs/{extractor,pairwise_model}/*.yaml`) parse and build.

use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_interfaces::{Extractor, PairwiseModel};
use oml_models::{AnyPairwise, ExtractorConfig, PairwiseConfig, ResnetArch, VitArch};

use crate::common::*;

// Verbatim from OML 4.0 (oml/configs/extractor/*.yaml).
const RESNET_YAML: &str = "name: resnet\nargs:\n  arch: resnet50_projector\n  gem_p: 5.0\n  remove_fc: True\n  normalise_features: False\n  weights: null\n";
const VIT_YAML: &str = "name: vit\nargs:\n  arch: vits8\n  normalise_features: False\n  use_multi_scale: False\n  weights: null\n";
const MLP_YAML: &str = "name: extractor_with_mlp\nargs:\n  mlp_features: [384]\n  weights: null\n  extractor:\n    name: vit\n    args:\n      normalise_features: False\n      use_multi_scale: False\n      weights: null\n      arch: vits16\n";
// oml/configs/pairwise_model/*.yaml (concat/trivial use `weights: resnet50_moco_v2` in OML;
// null here so the test does not download 200 MB).
const LINEAR_YAML: &str = "name: linear_siamese\nargs:\n  feat_dim: 10\n  identity_init: True\n";
const CONCAT_YAML: &str = "name: concat_siamese\nargs:\n  extractor:\n    name: resnet\n    args:\n      arch: resnet18\n      gem_p: 7.0\n      remove_fc: True\n      normalise_features: False\n      weights: null\n  mlp_hidden_dims: [20, 20]\n  use_tta: True\n  weights: null\n";
const TRIVIAL_YAML: &str = "name: trivial_distance_siamese\nargs:\n  extractor:\n    name: resnet\n    args:\n      arch: resnet18\n      gem_p: 7.0\n      remove_fc: True\n      normalise_features: False\n      weights: null\n";

#[test]
fn oml_extractor_configs_parse_and_round_trip() {
    let r: ExtractorConfig = serde_yaml_ng::from_str(RESNET_YAML).unwrap();
    let ExtractorConfig::Resnet(a) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (a.arch, a.gem_p, a.remove_fc, a.normalise_features),
        (ResnetArch::Resnet50Projector, Some(5.0), true, false)
    );
    let v: ExtractorConfig = serde_yaml_ng::from_str(VIT_YAML).unwrap();
    let ExtractorConfig::Vit(a) = &v else {
        panic!("{v:?}")
    };
    assert_eq!(a.arch, VitArch::Vits8);
    let m: ExtractorConfig = serde_yaml_ng::from_str(MLP_YAML).unwrap();
    let ExtractorConfig::ExtractorWithMlp(a) = &m else {
        panic!("{m:?}")
    };
    assert_eq!(a.mlp_features, vec![384]);
    assert!(!a.train_backbone);
    for c in [r, v, m] {
        let json = serde_json::to_string(&c).unwrap();
        let back: ExtractorConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c, "{json}");
    }
}

#[test]
fn config_errors_are_explained() {
    let err = |s: &str| {
        serde_json::from_str::<ExtractorConfig>(s)
            .unwrap_err()
            .to_string()
    };
    assert!(err(r#"{"name": "vit_clip", "args": {}}"#).contains("arch"));
    assert!(err(r#"{"name": "vit_unicom", "args": {"arch": "vitb32"}}"#).contains("vitb32"));
    assert!(
        err(r#"{"name": "nope", "args": {}}"#)
            .contains("available: resnet, vit, vit_clip, vit_unicom, extractor_with_mlp")
    );
    assert!(
        err(r#"{"name": "vit", "args": {"arch": "vits16", "weigths": "x"}}"#).contains("weigths")
    );
    assert!(err(r#"{"name": "vit", "args": {"arch": "vitg14"}}"#).contains("vitg14"));
    let twice =
        r#"{"name": "vit", "args": {"arch": "vits16", "weights": "a.pth"}, "weights": "b.pth"}"#;
    assert!(err(twice).contains("both"));
    // `{name, args, weights}` with weights next to args.
    let top: ExtractorConfig = serde_json::from_str(
        r#"{"name": "vit", "args": {"arch": "vits16"}, "weights": "vits16_dino"}"#,
    )
    .unwrap();
    assert_eq!(top.weights(), Some("vits16_dino"));
    // Weights at both levels of a nested model: OML's ValueError.
    let nested: ExtractorConfig = serde_json::from_str(
        r#"{"name": "extractor_with_mlp", "args": {"mlp_features": [4], "weights": "outer.pth",
            "extractor": {"name": "resnet", "args": {"arch": "resnet18", "weights": "inner.pth"}}}}"#,
    )
    .unwrap();
    let e = nested.build(&test_device()).unwrap_err().to_string();
    assert!(e.contains("weights") && e.contains("only one"), "{e}");
    // A weights path that does not exist names it and the known keys.
    let missing: ExtractorConfig = serde_json::from_str(
        r#"{"name": "vit", "args": {"arch": "vits16", "weights": "/no/such.pth"}}"#,
    )
    .unwrap();
    let e = missing.build(&test_device()).unwrap_err().to_string();
    assert!(
        e.contains("/no/such.pth") && e.contains("vits16_dino"),
        "{e}"
    );
}

#[test]
fn oml_pairwise_configs_build_and_run() {
    let device = test_device();
    let x = Tensor::<4>::from_data(
        TensorData::new(values(2 * 3 * 32 * 32, 61, 1.0), [2, 3, 32, 32]),
        &device,
    );
    let linear: PairwiseConfig = serde_yaml_ng::from_str(LINEAR_YAML).unwrap();
    let m = linear.build(&device).unwrap();
    let e = Tensor::<4>::from_data(TensorData::new(values(20, 62, 1.0), [2, 10, 1, 1]), &device);
    assert_eq!(host(m.predict(e.clone(), e)), vec![0.0, 0.0]);

    let concat: PairwiseConfig = serde_yaml_ng::from_str(CONCAT_YAML).unwrap();
    let m = concat.build(&device).unwrap();
    let AnyPairwise::ConcatSiamese(c) = &m else {
        panic!()
    };
    assert_eq!(c.mlp_hidden_dims(), vec![20, 20]);
    assert!(c.use_tta && m.is_freezable());
    let p = host(m.predict(x.clone(), x.clone().flip([3])));
    assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");

    let trivial: PairwiseConfig = serde_yaml_ng::from_str(TRIVIAL_YAML).unwrap();
    let m = trivial.build(&device).unwrap();
    let AnyPairwise::TrivialDistanceSiamese(t) = &m else {
        panic!()
    };
    assert_eq!(t.extractor.feat_dim(), 512);
    assert_eq!(host(m.predict(x.clone(), x)), vec![0.0, 0.0]);

    for c in [linear, concat, trivial] {
        let back: PairwiseConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
    let e = serde_json::from_str::<PairwiseConfig>(r#"{"name": "siamese", "args": {}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linear_siamese, concat_siamese, trivial_distance_siamese"),
        "{e}"
    );
}
