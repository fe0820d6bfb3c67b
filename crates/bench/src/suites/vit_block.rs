//! The parts of one ViT block in training through Burn's autodiff, each timed alone, forward and
//! forward + backward: where a ViT training step (`train-step`) spends its time beside the
//! GEMMs. `crates/bench/python/torch_vit_block.py` times the same parts in PyTorch, and
//! `crates/bench/python/vit_breakdown.py` sets them side by side for a whole network.

use anyhow::Result;
use burn::nn::{LayerNormConfig, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::gelu;

use crate::report::measure;

/// Arguments of the `vit-block` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images per batch.
    #[arg(long, default_value_t = 32, value_parser = super::positive)]
    pub batch: usize,
    /// Tokens per image (197: ViT-S/16 at 224², with the class token).
    #[arg(long, default_value_t = 197, value_parser = super::positive)]
    pub tokens: usize,
    /// Embedding width.
    #[arg(long, default_value_t = 384, value_parser = super::positive)]
    pub dim: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 6, value_parser = super::positive)]
    pub heads: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 3, value_parser = super::positive)]
    pub repeats: usize,
}

/// Times each part: LayerNorm, the qkv / proj / fc1 / fc2 linear layers, the attention core
/// (`q·kᵀ`, softmax, `·v`, as the extractors compute it) and GELU, each on its input's shape
/// with the input and the parameters taking gradients.
pub fn run(args: Args, device: &Device) -> Result<()> {
    let (b, n, d) = (args.batch, args.tokens, args.dim);
    if d % args.heads != 0 {
        anyhow::bail!("--dim {d} is not a multiple of --heads {}", args.heads);
    }
    let device = device.clone().autodiff();
    let input = |width: usize| {
        Tensor::<3>::random([b, n, width], Distribution::Default, &device).require_grad()
    };
    let norm = LayerNormConfig::new(d).init(&device);
    let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(&device);
    let (qkv, proj, fc1, fc2) = (
        linear(d, 3 * d),
        linear(d, d),
        linear(d, 4 * d),
        linear(4 * d, d),
    );
    let heads = args.heads;
    type Part<'a> = (&'a str, usize, Box<dyn Fn(Tensor<3>) -> Tensor<3> + 'a>);
    let parts: Vec<Part> = vec![
        ("layernorm", d, Box::new(|x| norm.forward(x))),
        ("qkv", d, Box::new(|x| qkv.forward(x))),
        (
            "attention",
            3 * d,
            Box::new(move |x| oml::models::ops::multi_head_attention(x, heads)),
        ),
        ("proj", d, Box::new(|x| proj.forward(x))),
        ("fc1", d, Box::new(|x| fc1.forward(x))),
        ("gelu", 4 * d, Box::new(gelu)),
        ("fc2", 4 * d, Box::new(|x| fc2.forward(x))),
    ];
    for (name, width, f) in parts {
        let x = input(width);
        let params = |stage: &str| {
            serde_json::json!({"op": "vit_block", "part": name, "stage": stage,
                "shape": [b, n, width], "device": format!("{device:?}")})
        };
        let forward = measure("vit-block", params("forward"), 1, args.repeats, || {
            let _ = f(x.clone()).into_data();
        });
        let both = measure(
            "vit-block",
            params("forward+grads"),
            1,
            args.repeats,
            || {
                let grads = f(x.clone()).sum().backward();
                let _ = x.grad(&grads).map(Tensor::into_data);
            },
        );
        eprintln!(
            "vit {name}: forward {:.1} ms, gradients {:.1} ms",
            forward * 1e3,
            (both - forward) * 1e3
        );
    }
    Ok(())
}
