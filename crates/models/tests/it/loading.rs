//! Checkpoint loading: strictness and its error messages, every architecture's key layout, and our
//! own burnpack format.

use burn::prelude::*;
use oml_interfaces::ModelError;
use oml_interfaces::device::test_device;
use oml_models::{
    AnyExtractor, ConcatSiamese, Extractor, ExtractorConfig, LoadOptions, PairwiseModel,
    ResnetArch, ResnetExtractor, ResnetExtractorConfig, ViTExtractor, ViTExtractorConfig, VitArch,
    VitConfig,
};

use crate::common::*;

fn tiny_vit() -> ViTExtractorConfig {
    let net = VitConfig {
        img_size: 32,
        patch_size: 8,
        embed_dim: 24,
        depth: 2,
        num_heads: 2,
        ..VitConfig::default()
    };
    ViTExtractorConfig::new(VitArch::Vits8).with_custom(net)
}

/// PyTorch names of a [`ViTExtractor`]'s parameters (DINO's names, no `model.` prefix).
fn vit_state_dict(m: &ViTExtractor) -> Vec<TorchTensor> {
    export_torch(m, |k| k.strip_prefix("model.").unwrap().to_string())
}

fn message(e: ModelError) -> String {
    match e {
        ModelError::Checkpoint { message, .. } => message,
        other => panic!("expected a checkpoint error, got {other}"),
    }
}

#[test]
fn strict_load_names_missing_unexpected_and_misshaped_keys() {
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_vit().init(&device).unwrap();
    let mut sd = vit_state_dict(&src);
    sd.retain(|t| t.name != "blocks.1.mlp.fc2.bias");
    sd.push(TorchTensor::f32(
        "blocks.0.attn.extra",
        &[2],
        vec![0.0, 1.0],
    ));
    let pos = sd.iter_mut().find(|t| t.name == "pos_embed").unwrap();
    *pos = TorchTensor::f32("pos_embed", &[1, 5, 24], vec![0.0; 120]);
    let path = dir.path().join("broken.pth");
    torch_save(&path, &sd, Nesting::Plain);

    let err = message(
        tiny_vit()
            .init(&device)
            .unwrap()
            .load_weights(&path, &LoadOptions::default())
            .unwrap_err(),
    );
    assert!(
        err.contains("missing keys") && err.contains("model.blocks.1.mlp.fc2.bias"),
        "{err}"
    );
    assert!(
        err.contains("unexpected keys") && err.contains("model.blocks.0.attn.extra"),
        "{err}"
    );
    assert!(
        err.contains("mis-shaped")
            && err.contains("model.pos_embed")
            && err.contains("[1, 17, 24]")
            && err.contains("[1, 5, 24]"),
        "{err}"
    );

    // Lenient: missing and unexpected are reported, the mis-shaped key still fails.
    let err = message(
        tiny_vit()
            .init(&device)
            .unwrap()
            .load_weights(&path, &LoadOptions::lenient())
            .unwrap_err(),
    );
    assert!(
        err.contains("mis-shaped") && !err.contains("missing keys"),
        "{err}"
    );
    sd.retain(|t| t.name != "pos_embed");
    torch_save(&path, &sd, Nesting::Plain);
    let (_, report) = tiny_vit()
        .init(&device)
        .unwrap()
        .load_weights(&path, &LoadOptions::lenient())
        .unwrap();
    assert!(
        report.missing.iter().any(|k| k == "model.pos_embed"),
        "{report:?}"
    );
    assert!(
        report
            .unexpected
            .iter()
            .any(|k| k == "model.blocks.0.attn.extra"),
        "{report:?}"
    );
}

#[test]
fn prefix_detection_errors_like_oml() {
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noprefix.pth");
    torch_save(
        &path,
        &[TorchTensor::f32("something.weight", &[1], vec![1.0])],
        Nesting::Plain,
    );
    let err = message(
        tiny_vit()
            .init(&device)
            .unwrap()
            .load_weights(&path, &LoadOptions::default())
            .unwrap_err(),
    );
    assert!(err.contains("trial key `norm.bias`"), "{err}");
    let err = message(
        tiny_vit()
            .init(&device)
            .unwrap()
            .load_weights(&dir.path().join("nope.pth"), &LoadOptions::default())
            .unwrap_err(),
    );
    assert!(err.contains("no such file"), "{err}");
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = message(
        tiny_vit()
            .init(&device)
            .unwrap()
            .load_weights(&path, &LoadOptions::default())
            .unwrap_err(),
    );
    assert!(err.contains("not a readable PyTorch checkpoint"), "{err}");
}

/// A random model exported under torchvision's names loads into a fresh model and computes the
/// same function: checks the key mapping of bottlenecks, downsampling and the projector head.
#[test]
fn resnet50_projector_with_fc_round_trips_through_torchvision_names() {
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ResnetExtractorConfig::new(ResnetArch::Resnet50Projector)
        .with_remove_fc(false)
        .with_gem_p(Some(2.0));
    let src = cfg.init(&device).unwrap();
    assert_eq!(src.feat_dim(), 128);
    let sd = export_torch(&src, |k| {
        k.strip_prefix("model.")
            .unwrap()
            .replace(".downsample.conv.", ".downsample.0.")
            .replace(".downsample.bn.", ".downsample.1.")
            .replace("fc_hidden.", "fc.0.")
            .replacen("fc.weight", "fc.2.weight", 1)
            .replacen("fc.bias", "fc.2.bias", 1)
    });
    assert!(
        sd.iter()
            .any(|t| t.name == "layer3.0.downsample.1.running_var")
    );
    assert!(sd.iter().any(|t| t.name == "fc.0.weight") && sd.iter().any(|t| t.name == "fc.2.bias"));
    let path = dir.path().join("r50p.pth");
    torch_save(&path, &sd, Nesting::Plain);
    let (dst, report) = cfg
        .init(&device)
        .unwrap()
        .load_weights(&path, &LoadOptions::default())
        .unwrap();
    assert_eq!(report.applied, sd.len());
    let x = Tensor::<4>::from_data(
        TensorData::new(values(2 * 3 * 64 * 64, 11, 1.0), [2, 3, 64, 64]),
        &device,
    );
    let d = max_diff(&host(src.extract(x.clone())), &host(dst.extract(x)));
    assert!(d < 1e-5, "{d}");
}

/// torchvision's published parameter counts (with the 1000-class fc): an independent check that
/// every architecture has torchvision's shapes. DINO ViT-S/16 and ViT-B/16 without head likewise.
#[test]
fn parameter_counts_match_torchvision_and_dino() {
    let device = test_device();
    for (arch, n) in [
        (ResnetArch::Resnet18, 11_689_512),
        (ResnetArch::Resnet34, 21_797_672),
        (ResnetArch::Resnet50, 25_557_032),
        (ResnetArch::Resnet101, 44_549_160),
        (ResnetArch::Resnet152, 60_192_808),
    ] {
        let m = ResnetExtractorConfig::new(arch)
            .with_remove_fc(false)
            .init(&device)
            .unwrap();
        // Burn counts BatchNorm running statistics; torchvision calls them buffers.
        let buffers: usize = burn::store::ModuleSnapshot::collect(&m.model, None, None, false)
            .iter()
            .filter(|t| t.name.ends_with("running_mean") || t.name.ends_with("running_var"))
            .map(|t| t.shape.iter().product::<usize>())
            .sum();
        assert_eq!(m.model.num_params() - buffers, n, "{arch}");
        assert_eq!(m.feat_dim(), 1000);
    }
    for (arch, n) in [(VitArch::Vits16, 21_665_664), (VitArch::Vitb16, 85_798_656)] {
        let m = ViTExtractorConfig::new(arch).init(&device).unwrap();
        assert_eq!(m.num_params(), n, "{arch}");
    }
}

#[test]
fn burnpack_round_trip_for_every_extractor_kind() {
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(values(2 * 3 * 32 * 32, 12, 1.0), [2, 3, 32, 32]),
        &device,
    );
    let configs = [
        r#"{"name": "resnet", "args": {"arch": "resnet18", "gem_p": 3.0, "normalise_features": true}}"#,
        r#"{"name": "vit", "args": {"arch": "vits8", "custom": {"img_size": 32, "patch_size": 8, "in_chans": 3, "embed_dim": 24, "depth": 1, "num_heads": 2, "mlp_ratio": 4, "layer_norm_eps": 1e-6}}}"#,
        r#"{"name": "extractor_with_mlp", "args": {"mlp_features": [7, 5], "extractor": {"name": "resnet", "args": {"arch": "resnet18"}}}}"#,
    ];
    for (i, c) in configs.iter().enumerate() {
        let config: ExtractorConfig = serde_json::from_str(c).unwrap();
        let m = config.build(&device).unwrap();
        let path = dir.path().join(format!("m{i}.bpk"));
        m.save(&path).unwrap();
        let back = AnyExtractor::load(&path, &device).unwrap();
        assert_eq!(back.config(), m.config());
        let d = max_diff(&host(m.extract(x.clone())), &host(back.extract(x.clone())));
        assert!(d < 1e-6, "{c}: {d}");
        // Same file through load_weights on a fresh model of that config.
        let (fresh, _) = config
            .init(&device)
            .unwrap()
            .load_weights(&path, &LoadOptions::default())
            .unwrap();
        assert!(max_diff(&host(m.extract(x.clone())), &host(fresh.extract(x.clone()))) < 1e-6);
    }
    // A concrete extractor's file loads as such and through AnyExtractor; a mismatch is an error.
    let r = ResnetExtractorConfig::new(ResnetArch::Resnet18)
        .init(&device)
        .unwrap();
    let path = dir.path().join("r.bpk");
    r.save(&path).unwrap();
    assert!(ResnetExtractor::load(&path, &device).is_ok());
    assert!(matches!(
        AnyExtractor::load(&path, &device).unwrap(),
        AnyExtractor::Resnet(_)
    ));
    let err = ViTExtractor::load(&path, &device).unwrap_err().to_string();
    assert!(err.contains("`resnet`"), "{err}");
    let wrong = ResnetExtractorConfig::new(ResnetArch::Resnet34)
        .init(&device)
        .unwrap();
    let err = message(
        wrong
            .load_weights(&path, &LoadOptions::default())
            .unwrap_err(),
    );
    assert!(
        err.contains("missing keys") && err.contains("layer1.2"),
        "{err}"
    );
}

/// `ConcatSiamese` loads OML's head layout (`head.0`, `head.3` without bias) and predicts a
/// sigmoid; with TTA the prediction is symmetric.
#[test]
fn concat_siamese_layout_and_predict() {
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let vit = tiny_vit().init(&device).unwrap();
    let src = ConcatSiamese::new(vit, &[6], true, &device).unwrap();
    let mut sd = export_torch(&src, |k| k.to_string());
    sd.retain(|t| !t.name.starts_with("head."));
    let (w0, b0, w3) = (
        values(6 * 24, 21, 0.3),
        values(6, 22, 0.3),
        values(6, 23, 0.3),
    );
    sd.push(TorchTensor::f32("head.0.weight", &[6, 24], w0));
    sd.push(TorchTensor::f32("head.0.bias", &[6], b0));
    sd.push(TorchTensor::f32("head.3.weight", &[1, 6], w3.clone()));
    // OML keeps criterion keys for ConcatSiamese: an unexpected key under strict loading.
    let path = dir.path().join("concat.pth");
    torch_save(&path, &sd, Nesting::Plain);
    let fresh = ConcatSiamese::new(tiny_vit().init(&device).unwrap(), &[6], true, &device).unwrap();
    let (m, _) = fresh.load_weights(&path, &LoadOptions::default()).unwrap();
    assert_eq!(m.mlp_hidden_dims(), vec![6]);
    assert!(m.head[1].bias.is_none());
    assert!(max_diff(&host(m.head[1].weight.val().reshape([6])), &w3) < 1e-7);

    let x1 = Tensor::<4>::from_data(
        TensorData::new(values(2 * 3 * 16 * 32, 24, 1.0), [2, 3, 16, 32]),
        &device,
    );
    let x2 = Tensor::<4>::from_data(
        TensorData::new(values(2 * 3 * 16 * 32, 25, 1.0), [2, 3, 16, 32]),
        &device,
    );
    let logits = host(m.forward_pair(x1.clone(), x2.clone()));
    let back = host(m.forward_pair(x2.clone(), x1.clone()));
    let p = host(m.predict(x1.clone(), x2.clone()));
    for k in 0..2 {
        let s = |v: f32| 1.0 / (1.0 + (-v).exp());
        assert!((p[k] - (s(logits[k]) + s(back[k])) / 2.0).abs() < 1e-5);
    }
    assert!(max_diff(&p, &host(m.predict(x2, x1))) < 1e-6);

    let mut sd2 = sd.clone();
    sd2.push(TorchTensor::f32("criterion.weight", &[1], vec![1.0]));
    torch_save(&path, &sd2, Nesting::Plain);
    let fresh = ConcatSiamese::new(tiny_vit().init(&device).unwrap(), &[6], true, &device).unwrap();
    let err = message(
        fresh
            .load_weights(&path, &LoadOptions::default())
            .unwrap_err(),
    );
    assert!(err.contains("criterion.weight"), "{err}");
}
