//! Freezing really stops gradients (checked with autodiff), multi-scale inference follows
//! OML's definition, and a trained 1×1 convolution (a matrix product) has Burn's gradients.

use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_interfaces::{Extractor, Freezable, PairwiseModel};
use oml_models::{
    AnyExtractor, ClipArch, ClipNetwork, ConcatSiamese, ExtractorConfig, ExtractorWithMLP,
    LinearTrivialDistanceSiamese, UnicomArch, UnicomNetwork, ViTCLIPExtractorConfig,
    ViTExtractorConfig, ViTUnicomExtractorConfig, VitArch, VitConfig,
};

use crate::common::*;

fn tiny_vit() -> ViTExtractorConfig {
    let net = VitConfig {
        img_size: 32,
        patch_size: 8,
        embed_dim: 24,
        depth: 1,
        num_heads: 2,
        ..VitConfig::default()
    };
    ViTExtractorConfig::new(VitArch::Vits8).with_custom(net)
}

fn images(device: &Device, h: usize) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(values(2 * 3 * h * 32, 41, 1.0), [2, 3, h, 32]),
        device,
    )
}

#[test]
fn extractor_with_mlp_freezing_stops_backbone_gradients() {
    let device = test_device().autodiff();
    // OML's default train_backbone = False: the backbone is frozen from the start.
    let m = ExtractorWithMLP::new(tiny_vit().init(&device).unwrap(), &[8], false, &device).unwrap();
    let grads = m.extract(images(&device, 32)).sum().backward();
    assert!(m.extractor.model.pos_embed.grad(&grads).is_none());
    assert!(
        m.extractor.model.blocks[0]
            .attn
            .qkv
            .weight
            .grad(&grads)
            .is_none()
    );
    assert!(m.projection[0].weight.grad(&grads).is_some());

    let m = m.unfreeze_backbone();
    assert!(m.train_backbone);
    let grads = m.extract(images(&device, 32)).sum().backward();
    assert!(
        m.extractor.model.blocks[0]
            .attn
            .qkv
            .weight
            .grad(&grads)
            .is_some()
    );
    assert!(m.extractor.model.pos_embed.grad(&grads).is_some());

    let m = m.freeze_backbone();
    let grads = m.extract(images(&device, 32)).sum().backward();
    assert!(
        m.extractor
            .model
            .patch_embed
            .proj
            .weight
            .grad(&grads)
            .is_none()
    );
    assert!(m.projection[0].weight.grad(&grads).is_some());
}

/// `ExtractorWithMLP` over CLIP and Unicom (from their registry configs, as a YAML names them):
/// frozen, only the MLP gets gradients; unfrozen, the tower's first and last layers do too.
#[test]
fn extractor_with_mlp_over_clip_and_unicom_freezes() {
    let device = test_device().autodiff();
    let clip = ViTCLIPExtractorConfig::new(ClipArch::Vitb32At224).with_custom(ClipNetwork {
        input_resolution: 32,
        patch_size: 16,
        width: 24,
        layers: 2,
        heads: 2,
        output_dim: 12,
    });
    let unicom = ViTUnicomExtractorConfig::new(UnicomArch::Vitb32).with_custom(UnicomNetwork {
        input_size: 32,
        patch_size: 16,
        dim: 24,
        embedding_size: 12,
        depth: 2,
        num_heads: 2,
    });
    for inner in [
        ExtractorConfig::VitClip(clip),
        ExtractorConfig::VitUnicom(unicom),
    ] {
        let name = inner.name();
        let config: ExtractorConfig = serde_json::from_value(serde_json::json!({
            "name": "extractor_with_mlp",
            "args": {"mlp_features": [8], "extractor": inner},
        }))
        .unwrap();
        let AnyExtractor::ExtractorWithMlp(m) = config.build(&device).unwrap() else {
            panic!("{name}: not an ExtractorWithMLP");
        };
        assert_eq!(m.feat_dim(), 8);
        // The first and last parameters the backbone owns.
        let backbone_grads = |m: &ExtractorWithMLP<_>, grads: &_| {
            let tower = match &m.extractor {
                oml_models::config::Backbone::VitClip(c) => &c.visual,
                oml_models::config::Backbone::VitUnicom(u) => &u.model,
                _ => unreachable!(),
            };
            [
                tower.patch_embed.proj.weight.grad(grads).is_some(),
                tower.norm.gamma.grad(grads).is_some(),
            ]
        };
        let grads = m.extract(images(&device, 32)).sum().backward();
        assert_eq!(backbone_grads(&m, &grads), [false; 2], "{name} frozen");
        assert!(m.projection[0].weight.grad(&grads).is_some(), "{name}");
        let m = m.unfreeze_backbone();
        let grads = m.extract(images(&device, 32)).sum().backward();
        assert_eq!(backbone_grads(&m, &grads), [true; 2], "{name} unfrozen");
    }
}

#[test]
fn concat_siamese_freezing_stops_backbone_gradients() {
    let device = test_device().autodiff();
    let m = ConcatSiamese::new(tiny_vit().init(&device).unwrap(), &[4], false, &device).unwrap();
    // OML starts with train_backbone = True.
    let grads = m
        .forward_pair(images(&device, 16), images(&device, 16))
        .sum()
        .backward();
    assert!(
        m.extractor.model.blocks[0]
            .mlp
            .fc1
            .weight
            .grad(&grads)
            .is_some()
    );
    let m = m.freeze_backbone();
    let grads = m
        .forward_pair(images(&device, 16), images(&device, 16))
        .sum()
        .backward();
    assert!(
        m.extractor.model.blocks[0]
            .mlp
            .fc1
            .weight
            .grad(&grads)
            .is_none()
    );
    assert!(m.head[0].weight.grad(&grads).is_some());
}

#[test]
fn config_built_models_freeze_through_any_extractor() {
    let device = test_device().autodiff();
    let config: ExtractorConfig = serde_json::from_str(
        r#"{"name": "extractor_with_mlp", "args": {"mlp_features": [4], "train_backbone": true,
            "extractor": {"name": "resnet", "args": {"arch": "resnet18"}}}}"#,
    )
    .unwrap();
    let m = config.build(&device).unwrap();
    assert!(m.is_freezable());
    let conv = |m: &AnyExtractor| match m {
        AnyExtractor::ExtractorWithMlp(x) => match &x.extractor {
            oml_models::Backbone::Resnet(r) => r.model.conv1.weight.clone(),
            _ => unreachable!(),
        },
        _ => unreachable!(),
    };
    let x = images(&device, 32);
    let grads = m.extract(x.clone()).sum().backward();
    assert!(conv(&m).grad(&grads).is_some());
    let m = m.freeze_backbone();
    let grads = m.extract(x).sum().backward();
    assert!(conv(&m).grad(&grads).is_none());
}

#[test]
fn linear_siamese_with_identity_is_the_l2_distance() {
    let device = test_device();
    let m = LinearTrivialDistanceSiamese::new(3, true, 1.0, &device).unwrap();
    let a = Tensor::<2>::from_data([[0.0f32, 3.0, 0.0], [1.0, 1.0, 1.0]], &device);
    let b = Tensor::<2>::from_data([[4.0f32, 0.0, 0.0], [1.0, 1.0, 1.0]], &device);
    assert_eq!(host(m.forward_embeddings(a, b)), vec![6.0, 1.0]);
}

/// PyTorch's bilinear `interpolate(scale_factor=s, align_corners=False)`, written per pixel.
fn naive_bilinear(x: &[f32], c: usize, h: usize, w: usize, s: f64) -> (Vec<f32>, usize, usize) {
    let (oh, ow) = (
        (h as f64 * s).floor() as usize,
        (w as f64 * s).floor() as usize,
    );
    let src = |o: usize, n: usize| {
        let r = ((o as f64 + 0.5) / s - 0.5).max(0.0);
        let i0 = (r.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, r - i0 as f64)
    };
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        for y in 0..oh {
            let (y0, y1, ly) = src(y, h);
            for xx in 0..ow {
                let (x0, x1, lx) = src(xx, w);
                let at = |yy: usize, xq: usize| x[ch * h * w + yy * w + xq] as f64;
                let v = (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x1))
                    + ly * ((1.0 - lx) * at(y1, x0) + lx * at(y1, x1));
                out[ch * oh * ow + y * ow + xx] = v as f32;
            }
        }
    }
    (out, oh, ow)
}

#[test]
fn multi_scale_is_the_mean_over_three_bilinear_scales() {
    let device = test_device();
    let plain = tiny_vit().init(&device).unwrap();
    let ms = oml_models::ViTExtractor {
        model: plain.model.clone(),
        config: tiny_vit().with_multi_scale(true),
    };
    // 64×64 → 45×45 (1/√2) and 32×32 (1/2): both divisible by 8 after DINO's floor.
    let data = values(3 * 64 * 64, 51, 1.0);
    let x = Tensor::<4>::from_data(TensorData::new(data.clone(), [1, 3, 64, 64]), &device);
    let mut want = host(plain.extract(x.clone()));
    for s in [1.0 / 2f64.sqrt(), 0.5] {
        let (d, oh, ow) = naive_bilinear(&data, 3, 64, 64, s);
        let y = Tensor::<4>::from_data(TensorData::new(d, [1, 3, oh, ow]), &device);
        for (w, v) in want.iter_mut().zip(host(plain.extract(y))) {
            *w += v;
        }
    }
    want.iter_mut().for_each(|w| *w /= 3.0);
    let got = host(ms.extract(x));
    assert!(max_diff(&got, &want) < 1e-4, "{}", max_diff(&got, &want));
}

/// A trained 1×1 convolution runs as a matrix product (`ops::conv2d`); its output and all three
/// gradients equal Burn's convolution's: odd sizes, a stride that does not divide them, with and
/// without bias, maps large enough for the per-image product and small enough for the
/// side-by-side one. Runs on the tests' device (wgpu in CI's second run).
#[test]
fn a_trained_pointwise_convolution_has_burns_gradients() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;
    let device = test_device().autodiff();
    let host = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
    let cases = [
        ([1, 1], true, PaddingConfig2d::Valid),
        ([2, 2], false, PaddingConfig2d::Explicit(0, 0, 0, 0)),
        ([2, 3], true, PaddingConfig2d::Valid),
    ];
    for ((stride, bias, padding), [h, w]) in cases
        .into_iter()
        .flat_map(|case| [[9, 8], [2, 1]].map(|size| (case.clone(), size)))
    {
        let layer = Conv2dConfig::new([5, 7], [1, 1])
            .with_stride(stride)
            .with_padding(padding)
            .with_bias(bias)
            .init(&device);
        // Else `ops::conv2d` is Burn's convolution and the test compares it with itself.
        assert!(layer.weight.is_require_grad());
        let x = Tensor::<4>::random([3, 5, h, w], Distribution::Default, &device);
        let run = |ours: bool, g: Option<Tensor<4>>| {
            let x = x.clone().require_grad();
            let y = if ours {
                oml_models::ops::conv2d(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            // A random weighting, so each output position's gradient differs.
            let g = g.unwrap_or_else(|| Tensor::random(y.dims(), Distribution::Default, &device));
            let grads = (y.clone() * g.clone()).sum().backward();
            let dw = host(layer.weight.grad(&grads).unwrap());
            let dx = host(x.grad(&grads).unwrap());
            let db = layer.bias.as_ref().map(|b| {
                b.grad(&grads)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
            });
            (host(y), dw, dx, db, g)
        };
        let (y0, dw0, dx0, db0, g) = run(false, None);
        let (y1, dw1, dx1, db1, _) = run(true, Some(g));
        let what = format!("stride {stride:?}, bias {bias}, {h}×{w}");
        let close = |a: &[f32], b: &[f32], part: &str| {
            assert_eq!(a.len(), b.len(), "{what}: {part}");
            for (i, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                    "{what}: {part} at {i}: {p} vs {q}"
                );
            }
        };
        close(&y1, &y0, "output");
        close(&dw1, &dw0, "weight gradient");
        close(&dx1, &dx0, "input gradient");
        assert_eq!(db0.is_some(), bias);
        if let (Some(a), Some(b)) = (db1, db0) {
            close(&a, &b, "bias gradient");
        }
    }
}
