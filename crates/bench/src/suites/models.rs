//! Extractor inference throughput (images/s) at a fixed batch and input size, random weights.
//!
//! Each model prints the usual JSON line (`median_s` per batch); images/s is `batch / median_s`
//! and is also written to stderr. The PyTorch CPU side of the comparison is OML's
//! `ResnetExtractor("resnet18")` / `ViTExtractor("vits16")` under `torch.inference_mode()` at the
//! same batch and size on the same machine (see docs/models.md).

use crate::report::measure;
use burn::prelude::*;
use oml::interfaces::Extractor;

/// Arguments of the `models` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Models to time: ResNet and ViT archs (resnet18, resnet50, vits16, vits14, …), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "resnet18,vits16")]
    pub models: Vec<String>,
    /// Images per batch.
    #[arg(long, default_value_t = 16, value_parser = super::positive)]
    pub batch: usize,
    /// Input height and width.
    #[arg(long, default_value_t = 224, value_parser = super::positive)]
    pub size: usize,
    /// Untimed warm-up batches.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5, value_parser = super::positive)]
    pub repeats: usize,
}

fn time_model(name: &str, model: &impl Extractor, args: &Args, device: &Device) {
    let x = Tensor::<4>::random(
        [args.batch, 3, args.size, args.size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let params = serde_json::json!({
        "model": name,
        "batch": args.batch,
        "size": args.size,
        "feat_dim": model.feat_dim(),
        "device": format!("{device:?}"),
    });
    // What embedding a data set does: the model is prepared once (`Extractor::inference`),
    // then each batch runs through it.
    let extract = model.inference();
    let median = measure("models", params, args.warmup, args.repeats, || {
        let _ = extract(x.clone()).into_data();
    });
    eprintln!(
        "models: {name} batch {} at {}²: {:.1} images/s",
        args.batch,
        args.size,
        args.batch as f64 / median
    );
}

/// Builds each requested extractor with random weights and times its prepared inference on one
/// batch.
pub fn run(args: Args, device: &Device) -> anyhow::Result<()> {
    for name in &args.models {
        time_model(name, &super::extractor(name, device)?, &args, device);
    }
    Ok(())
}
