//! Quick inference throughput check (images/s) of resnet18 and vits16 with random weights:
//! `cargo run -p oml-models --example throughput -- [batch] [size]`.
//! The canonical measurement is `oml-bench models`.

use std::time::Instant;

use burn::prelude::*;
use oml_interfaces::Extractor;
use oml_models::{ResnetArch, ResnetExtractorConfig, ViTExtractorConfig, VitArch};

fn time(name: &str, m: &impl Extractor, x: &Tensor<4>) {
    let batch = x.dims()[0];
    let _ = m.extract(x.clone()).into_data();
    let mut t: Vec<f64> = (0..3)
        .map(|_| {
            let s = Instant::now();
            let _ = m.extract(x.clone()).into_data();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!(
        "{name}: {:.1} images/s (median {:.3} s per batch of {batch})",
        batch as f64 / t[1],
        t[1]
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (batch, size) = (
        args.first().copied().unwrap_or(16),
        args.get(1).copied().unwrap_or(224),
    );
    let device = oml_interfaces::device::select_device(None)?;
    let x = Tensor::<4>::random(
        [batch, 3, size, size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    time(
        "resnet18",
        &ResnetExtractorConfig::new(ResnetArch::Resnet18).init(&device)?,
        &x,
    );
    time(
        "vits16",
        &ViTExtractorConfig::new(VitArch::Vits16).init(&device)?,
        &x,
    );
    Ok(())
}
