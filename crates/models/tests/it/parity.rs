//! OML parity: the fixtures' PyTorch checkpoints (saved as OML saves them) loaded through the same
//! path as a user's checkpoint, compared with OML's outputs (`shared/fixtures/README.md`).

use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_models::{
    ClipArch, ClipNetwork, Extractor, ExtractorConfig, LoadOptions, PairwiseModel, ResnetArch,
    ResnetExtractorConfig, TrivialDistanceSiamese, UnicomArch, UnicomNetwork,
    ViTCLIPExtractorConfig, ViTExtractorConfig, ViTUnicomExtractorConfig, VitArch, VitConfig,
};

use crate::common::*;

const TOL_RESNET: f32 = 1e-4;
const TOL_VIT_224: f32 = 1e-4;
const TOL_VIT_160: f32 = 1e-3;

/// The fixture ViT: DINO layout, dim 192, depth 4, 3 heads, patch 16 (the vits16 code path).
fn fixture_vit() -> ViTExtractorConfig {
    let net = VitConfig {
        img_size: 224,
        patch_size: 16,
        embed_dim: 192,
        depth: 4,
        num_heads: 3,
        ..VitConfig::default()
    };
    ViTExtractorConfig::new(VitArch::Vits16).with_custom(net)
}

fn check(name: &str, got: Tensor<2>, expected: &std::path::Path, tol: f32) {
    let (shape, want) = read_npy(expected);
    assert_eq!(got.dims().to_vec(), shape, "{name}: shape");
    let d = max_diff(&host(got), &want);
    println!("{name}: max |diff| = {d:.3e} (tolerance {tol:.0e})");
    assert!(d <= tol, "{name}: max |diff| {d} > {tol}");
}

/// A ResNet fixture loaded the way a user's checkpoint is (`load_weights`, and `build` with
/// `weights`), plain and with GeM + normalisation, against OML's outputs. `batch_norms` is the
/// number of BatchNorm layers, whose `num_batches_tracked` counters are dropped on purpose.
fn resnet_parity(arch: ResnetArch, batch_norms: usize, feat_dim: usize) {
    let Some(fx) = fixtures() else { return };
    let name = arch.name();
    let file = fx.join(format!("{name}.pth"));
    if !file.is_file() {
        eprintln!("SKIPPED: {} is absent", file.display());
        return;
    }
    let device = test_device();
    let input = npy4(&fx.join(format!("{name}_input.npy")), &device);

    let plain = ResnetExtractorConfig::new(arch).init(&device).unwrap();
    let (plain, report) = plain.load_weights(&file, &LoadOptions::default()).unwrap();
    assert_eq!(report.stripped_prefix, "");
    // The file has no fc: OML saved it with remove_fc=True.
    assert_eq!(
        report
            .ignored
            .iter()
            .filter(|k| k.ends_with("num_batches_tracked"))
            .count(),
        batch_norms,
        "{name}: {:?}",
        report.ignored
    );
    assert_eq!(plain.feat_dim(), feat_dim);
    check(
        name,
        plain.extract(input.clone()),
        &fx.join(format!("{name}_expected.npy")),
        TOL_RESNET,
    );

    let gem = ResnetExtractorConfig::new(arch)
        .with_gem_p(Some(3.0))
        .with_normalise_features(true)
        .with_weights(file.display().to_string())
        .build(&device)
        .unwrap();
    check(
        &format!("{name} gem"),
        gem.extract(input),
        &fx.join(format!("{name}_gem_expected.npy")),
        TOL_RESNET,
    );
}

#[test]
fn resnet18_matches_oml_plain_and_gem() {
    resnet_parity(ResnetArch::Resnet18, 20, 512);
}

/// Bottleneck blocks (1×1, 3×3 with the stride, 1×1 expansion) and their downsampling.
#[test]
fn resnet50_parity_plain_and_gem() {
    resnet_parity(ResnetArch::Resnet50, 53, 2048);
}

#[test]
fn vit_matches_oml_at_224_and_160x144() {
    let Some(fx) = fixtures() else { return };
    let device = test_device();
    let vit = fixture_vit().init(&device).unwrap();
    let (vit, report) = vit
        .load_weights(
            &fx.join("vit_dino_d192_l4_h3_p16.pth"),
            &LoadOptions::default(),
        )
        .unwrap();
    assert_eq!(report.applied, 4 + 4 * 12 + 2);
    assert_eq!(vit.feat_dim(), 192);
    check(
        "vit 224",
        vit.extract(npy4(&fx.join("vit_input.npy"), &device)),
        &fx.join("vit_expected.npy"),
        TOL_VIT_224,
    );
    check(
        "vit 160x144",
        vit.extract(npy4(&fx.join("vit_input_160.npy"), &device)),
        &fx.join("vit_expected_160.npy"),
        TOL_VIT_160,
    );
}

/// A DINOv2 fixture built through `arch`'s configuration path with the fixture's sizes (dim 192,
/// depth 3, 3 heads; trained size 518, patch 14, LayerScale, mask token, and registers for the
/// `_reg` archs) at 224² and 154×126, both with position embeddings interpolated from the 37×37
/// grid, on Burn's layers and on the host path. `extra` counts the arch's own checkpoint keys.
fn dinov2_parity(arch: VitArch, stem: &str, extra: usize) {
    let Some(fx) = fixtures() else { return };
    let file = fx.join(format!("{stem}_d192_l3_h3_p14.pth"));
    if !file.is_file() {
        eprintln!("SKIPPED: {} is absent", file.display());
        return;
    }
    let device = test_device();
    let net = VitConfig {
        embed_dim: 192,
        depth: 3,
        num_heads: 3,
        ..arch.config()
    };
    let config = ViTExtractorConfig::new(arch).with_custom(net);
    let (vit, report) = config
        .init(&device)
        .unwrap()
        .load_weights(&file, &LoadOptions::default())
        .unwrap();
    // cls, pos, mask token, patch conv (2), final norm (2), and per block 2 norms (4),
    // qkv (2), proj (2), fc1 (2), fc2 (2), ls1, ls2.
    assert_eq!(report.applied, 7 + 3 * 14 + extra, "{report:?}");
    assert_eq!(vit.feat_dim(), 192);
    for (input, expected) in [
        ("zoo_input.npy", format!("{stem}_expected.npy")),
        ("dinov2_input_odd.npy", format!("{stem}_expected_odd.npy")),
    ] {
        let x = npy4(&fx.join(input), &device);
        let infer = vit.inference();
        check(
            &format!("{arch} {input}"),
            infer(x.clone()),
            &fx.join(&expected),
            TOL_VIT_160,
        );
        check(
            &format!("{arch} {input}, Burn's layers"),
            vit.model.forward(x),
            &fx.join(&expected),
            TOL_VIT_160,
        );
    }
}

#[test]
fn dinov2_parity_at_224_and_154x126() {
    dinov2_parity(VitArch::Vits14, "dinov2", 0);
}

/// Registers (inserted after the CLS token, no position embedding) and the antialiased
/// interpolation of the `_reg` archs.
#[test]
fn dinov2_with_registers_parity_at_224_and_154x126() {
    dinov2_parity(VitArch::Vits14Reg, "dinov2_reg4", 1);
}

/// CLIP's visual tower (`vitb16_224`'s configuration path at width 96, 3 layers, 3 heads,
/// output 64) from a full CLIP state dict: the `visual.*` keys taken as OML takes them (the text
/// tower's same-named keys replaced, the others dropped), on the host path and Burn's layers,
/// and through the registry config with `weights`.
#[test]
fn clip_parity_from_a_full_clip_state_dict() {
    let Some(fx) = fixtures() else { return };
    let file = fx.join("clip_w96_l3_h3_p16.pth");
    if !file.is_file() {
        eprintln!("SKIPPED: {} is absent", file.display());
        return;
    }
    let device = test_device();
    let network = ClipNetwork {
        width: 96,
        layers: 3,
        heads: 3,
        output_dim: 64,
        ..ClipArch::Vitb16At224.network()
    };
    let config = ViTCLIPExtractorConfig::new(ClipArch::Vitb16At224)
        .with_custom(network)
        .with_normalise_features(false);
    let (clip, report) = config
        .init(&device)
        .unwrap()
        .load_weights(&file, &LoadOptions::default())
        .unwrap();
    // class + positional embeddings, proj, conv1, ln_pre (2), ln_post (2), and per block
    // ln_1 (2), in_proj (2), out_proj (2), ln_2 (2), c_fc (2), c_proj (2).
    assert_eq!(report.applied, 8 + 3 * 12, "{report:?}");
    // The text tower: its positional embedding, projection, logit scale, token embedding,
    // ln_final (2) and its block 0 (12, replaced by the visual one).
    assert_eq!(report.ignored.len(), 6 + 12, "{:?}", report.ignored);
    assert_eq!(clip.feat_dim(), 64);
    let x = npy4(&fx.join("zoo_input.npy"), &device);
    let expected = fx.join("clip_expected.npy");
    check("clip", clip.inference()(x.clone()), &expected, TOL_RESNET);
    let layers = clip.visual.forward(x.clone()).matmul(clip.proj.val());
    check("clip, Burn's layers", layers, &expected, TOL_RESNET);

    // The registry path, as a YAML config names it.
    let json = serde_json::json!({
        "name": "vit_clip",
        "args": {"arch": "vitb16_224", "normalise_features": false, "custom": network,
                 "weights": file.display().to_string()},
    });
    let built = serde_json::from_value::<ExtractorConfig>(json)
        .unwrap()
        .build(&device)
        .unwrap();
    check("clip via config", built.extract(x), &expected, TOL_RESNET);
}

/// Unicom (`vitb32_unicom`'s configuration path at dim 96, depth 3, 3 heads, output 64): no
/// class token, every token through the `feature` head, normalised.
#[test]
fn unicom_parity() {
    let Some(fx) = fixtures() else { return };
    let file = fx.join("unicom_w96_l3_h3_p32.pth");
    if !file.is_file() {
        eprintln!("SKIPPED: {} is absent", file.display());
        return;
    }
    let device = test_device();
    let network = UnicomNetwork {
        dim: 96,
        depth: 3,
        num_heads: 3,
        embedding_size: 64,
        ..UnicomArch::Vitb32.network()
    };
    let config = ViTUnicomExtractorConfig::new(UnicomArch::Vitb32)
        .with_custom(network)
        .with_normalise_features(true)
        .with_weights(file.display().to_string());
    let unicom = config.build(&device).unwrap();
    assert_eq!(unicom.feat_dim(), 64);
    let x = npy4(&fx.join("zoo_input.npy"), &device);
    let expected = fx.join("unicom_expected.npy");
    check(
        "unicom",
        unicom.inference()(x.clone()),
        &expected,
        TOL_RESNET,
    );
    let layers = unicom.feature.forward(unicom.model.forward(x));
    check(
        "unicom, Burn's layers",
        oml_models::ops::normalise(layers),
        &expected,
        TOL_RESNET,
    );
}

/// OpenAI's CLIP files are TorchScript archives: loading one says what it is and how to
/// convert it. (`tests/data/torchscript_clip.pt`: a 7 KB `torch.jit.trace` of a module with a
/// `visual` submodule holding `conv1`, `ln_pre` and `proj`.)
#[test]
fn a_torchscript_archive_is_refused_with_the_conversion_command() {
    let device = test_device();
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torchscript_clip.pt");
    let tiny = ClipNetwork {
        input_resolution: 32,
        patch_size: 16,
        width: 8,
        layers: 1,
        heads: 2,
        output_dim: 4,
    };
    let err = ViTCLIPExtractorConfig::new(ClipArch::Vitb32At224)
        .with_custom(tiny)
        .init(&device)
        .unwrap()
        .load_weights(&file, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TorchScript")
            && err.contains("torch.jit.load")
            && err.contains("torchscript_clip.pt"),
        "{err}"
    );
}

/// The same weights re-saved in the other layouts OML produces and reads: an OML Lightning
/// checkpoint (`state_dict` with `model.model.` keys, a criterion weight, optimizer state), an
/// `extractor.state_dict()` (`model.` keys) and MoCo's two-encoder file.
#[test]
fn other_checkpoint_layouts_give_the_same_outputs() {
    let Some(fx) = fixtures() else { return };
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let input = npy4(&fx.join("resnet18_input.npy"), &device);
    let resnet = read_torch(&fx.join("resnet18.pth"));

    // Lightning: {"state_dict": {"model.model.*", "criterion.weight"}, "optimizer_states": […]}.
    let mut sd: Vec<TorchTensor> = resnet
        .iter()
        .map(|t| t.renamed(format!("model.model.{}", t.name)))
        .collect();
    sd.push(TorchTensor::f32(
        "criterion.weight",
        &[10, 512],
        values(5120, 1, 1.0),
    ));
    let extra = [TorchTensor::f32("exp_avg", &[3], vec![1.0, 2.0, 3.0])];
    let ckpt = dir.path().join("lightning.ckpt");
    torch_save(&ckpt, &sd, Nesting::Lightning(&extra));
    let m = ResnetExtractorConfig::new(ResnetArch::Resnet18)
        .init(&device)
        .unwrap();
    let (m, report) = m.load_weights(&ckpt, &LoadOptions::default()).unwrap();
    assert_eq!(report.top_level_key.as_deref(), Some("state_dict"));
    assert_eq!(report.stripped_prefix, "model.model.");
    assert!(report.ignored.iter().any(|k| k == "criterion.weight"));
    check(
        "resnet18 lightning",
        m.extract(input.clone()),
        &fx.join("resnet18_expected.npy"),
        TOL_RESNET,
    );

    // MoCo: {"state_dict": {"module.encoder_q.*" (with its mlp fc), "module.encoder_k.*", "module.queue"}}.
    let mut moco: Vec<TorchTensor> = resnet
        .iter()
        .filter(|t| !t.name.starts_with("fc."))
        .map(|t| t.renamed(format!("module.encoder_q.{}", t.name)))
        .collect();
    moco.push(TorchTensor::f32(
        "module.encoder_q.fc.0.weight",
        &[4, 512],
        values(2048, 2, 1.0),
    ));
    moco.push(TorchTensor::f32(
        "module.encoder_q.fc.2.weight",
        &[2, 4],
        values(8, 3, 1.0),
    ));
    moco.push(TorchTensor::f32(
        "module.encoder_k.conv1.weight",
        &[2, 2],
        values(4, 4, 1.0),
    ));
    moco.push(TorchTensor::f32(
        "module.queue",
        &[4, 8],
        values(32, 5, 1.0),
    ));
    let ckpt = dir.path().join("moco.pth.tar");
    torch_save(&ckpt, &moco, Nesting::Lightning(&[]));
    let m = ResnetExtractorConfig::new(ResnetArch::Resnet18)
        .init(&device)
        .unwrap();
    let (m, _) = m.load_weights(&ckpt, &LoadOptions::default()).unwrap();
    check(
        "resnet18 moco layout",
        m.extract(input.clone()),
        &fx.join("resnet18_expected.npy"),
        TOL_RESNET,
    );

    // ViT saved as OML's `extractor.state_dict()`: keys `model.*`.
    let vit_sd: Vec<TorchTensor> = read_torch(&fx.join("vit_dino_d192_l4_h3_p16.pth"))
        .iter()
        .map(|t| t.renamed(format!("model.{}", t.name)))
        .collect();
    let ckpt = dir.path().join("vit.pth");
    torch_save(&ckpt, &vit_sd, Nesting::Plain);
    let (vit, report) = fixture_vit()
        .init(&device)
        .unwrap()
        .load_weights(&ckpt, &LoadOptions::default())
        .unwrap();
    assert_eq!(report.stripped_prefix, "model.");
    check(
        "vit model.-prefixed",
        vit.extract(npy4(&fx.join("vit_input.npy"), &device)),
        &fx.join("vit_expected.npy"),
        TOL_VIT_224,
    );
}

/// `ExtractorWithMLP` over the fixture ResNet, loaded from an OML layout
/// (`extractor.model.*`, `projection.0/3.*`); the oracle is OML's ResNet output pushed through
/// the MLP on the host.
#[test]
fn extractor_with_mlp_over_fixture_resnet() {
    let Some(fx) = fixtures() else { return };
    let device = test_device();
    let dir = tempfile::tempdir().unwrap();
    let (w0, b0, w3, b3) = (
        values(8 * 512, 7, 0.05),
        values(8, 8, 0.1),
        values(3 * 8, 9, 0.3),
        values(3, 10, 0.1),
    );
    let mut sd: Vec<TorchTensor> = read_torch(&fx.join("resnet18.pth"))
        .iter()
        .map(|t| t.renamed(format!("model.extractor.model.{}", t.name)))
        .collect();
    sd.push(TorchTensor::f32(
        "model.projection.0.weight",
        &[8, 512],
        w0.clone(),
    ));
    sd.push(TorchTensor::f32(
        "model.projection.0.bias",
        &[8],
        b0.clone(),
    ));
    sd.push(TorchTensor::f32(
        "model.projection.3.weight",
        &[3, 8],
        w3.clone(),
    ));
    sd.push(TorchTensor::f32(
        "model.projection.3.bias",
        &[3],
        b3.clone(),
    ));
    let ckpt = dir.path().join("mlp.ckpt");
    torch_save(&ckpt, &sd, Nesting::Lightning(&[]));

    let backbone = ResnetExtractorConfig::new(ResnetArch::Resnet18)
        .init(&device)
        .unwrap();
    let model = oml_models::ExtractorWithMLP::new(backbone, &[8, 3], false, &device).unwrap();
    let (model, report) = model.load_weights(&ckpt, &LoadOptions::default()).unwrap();
    assert_eq!(report.stripped_prefix, "model.");
    let got = host(model.extract(npy4(&fx.join("resnet18_input.npy"), &device)));

    let (_, feats) = read_npy(&fx.join("resnet18_expected.npy"));
    let mut want = Vec::new();
    for row in feats.chunks(512) {
        let h: Vec<f32> = (0..8)
            .map(|o| (b0[o] + (0..512).map(|i| w0[o * 512 + i] * row[i]).sum::<f32>()).max(0.0))
            .collect();
        want.extend((0..3).map(|o| b3[o] + (0..8).map(|i| w3[o * 8 + i] * h[i]).sum::<f32>()));
    }
    let d = max_diff(&got, &want);
    assert!(d < 1e-3, "max diff {d}");

    // The same file through a config-built model (the backbone is then an enum variant).
    let config: oml_models::ExtractorConfig = serde_json::from_value(serde_json::json!({
        "name": "extractor_with_mlp",
        "args": {"mlp_features": [8, 3], "weights": ckpt.display().to_string(),
                 "extractor": {"name": "resnet", "args": {"arch": "resnet18"}}}
    }))
    .unwrap();
    let any = config.build(&device).unwrap();
    let got = host(any.extract(npy4(&fx.join("resnet18_input.npy"), &device)));
    assert!(max_diff(&got, &want) < 1e-3);
}

/// `TrivialDistanceSiamese`: the distance between OML's embeddings of two images.
#[test]
fn trivial_distance_siamese_over_fixture_resnet() {
    let Some(fx) = fixtures() else { return };
    let device = test_device();
    let resnet = ResnetExtractorConfig::new(ResnetArch::Resnet18)
        .with_weights(fx.join("resnet18.pth").display().to_string())
        .build(&device)
        .unwrap();
    let siamese = TrivialDistanceSiamese::new(resnet, 0.5);
    let input = npy4(&fx.join("resnet18_input.npy"), &device);
    let got = host(siamese.predict(input.clone().narrow(0, 0, 2), input.narrow(0, 2, 2)));
    let (_, e) = read_npy(&fx.join("resnet18_expected.npy"));
    for (k, g) in got.iter().enumerate() {
        let (a, b) = (&e[k * 512..(k + 1) * 512], &e[(k + 2) * 512..(k + 3) * 512]);
        let want = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
            + 0.5;
        assert!(
            (g - want).abs() < 1e-3 * want.max(1.0),
            "pair {k}: {g} vs {want}"
        );
    }
}
