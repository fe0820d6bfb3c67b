//! One training step of a real extractor through Burn's autodiff: the work
//! `crates/bench/python/oml/oml_train_step.py MODEL P K SIZE [REPEATS]` times in OML 4.0.
//!
//! A step is the extractor's forward in training mode, `TripletLossWithMiner` (margin 0.2, the
//! hard miner, mean), backward, and an Adam step (lr 1e-4), on a P×K batch of random images
//! normalised with ImageNet's mean and std (a fresh seeded batch per step, made before the
//! clock starts: with one fixed batch the model overfits it and the loss drops to 0). Random
//! initial weights. Prints one JSON line per model with `model`, `p`, `k`, `size`, `median_s`,
//! `images_per_s` and the process's peak RSS, as OML's script does.

use std::time::Instant;

use anyhow::Result;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use oml::interfaces::{Criterion, Extractor, Reduction};
use oml::mining::{HardTripletsMiner, TripletLossWithMiner};

/// Arguments of the `train-step` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Models: ResNet and ViT archs (resnet18, resnet50, vits16, vits14, …), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "resnet18")]
    pub model: Vec<String>,
    /// Labels per batch (P).
    #[arg(long, default_value_t = 8, value_parser = super::positive)]
    pub p: usize,
    /// Images per label (K).
    #[arg(long, default_value_t = 4, value_parser = super::positive)]
    pub k: usize,
    /// Image height and width.
    #[arg(long, default_value_t = 224, value_parser = super::positive)]
    pub size: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5, value_parser = super::positive)]
    pub repeats: usize,
}

/// ImageNet's per-channel mean and standard deviation (OML's `MEAN`, `STD`).
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A batch of `n` random images normalised as OML's transforms do.
fn batch(n: usize, size: usize, device: &Device) -> Tensor<4> {
    let channel = |v: [f32; 3]| Tensor::<1>::from_floats(v, device).reshape([1, 3, 1, 1]);
    let x = Tensor::<4>::random(
        [n, 3, size, size],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        device,
    );
    (x - channel(MEAN)) / channel(STD)
}

/// Times `warmup + repeats` steps of `model`; prints the JSON line.
fn time_steps<M>(name: &str, mut model: M, args: &Args, device: &Device) -> Result<()>
where
    M: Extractor,
{
    if args.p < 2 || args.k < 2 {
        anyhow::bail!(
            "--p and --k must be at least 2: the hard miner needs positives and negatives"
        );
    }
    let criterion =
        TripletLossWithMiner::new(Some(0.2), HardTripletsMiner, Reduction::Mean, false)?;
    let mut optim = AdamConfig::new().init();
    let labels: Vec<i64> = (0..args.p as i64)
        .flat_map(|l| std::iter::repeat_n(l, args.k))
        .collect();
    let n = args.p * args.k;
    let rss_before = super::peak_rss_mib();
    let mut times = Vec::with_capacity(args.repeats);
    let mut last_loss = f32::NAN;
    for step in 0..args.warmup + args.repeats {
        let images = batch(n, args.size, device);
        device.sync()?;
        let start = Instant::now();
        let out = criterion.forward(model.extract(images), &labels)?;
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(1e-4, model, grads);
        // Reading the loss and syncing waits for the step's work on asynchronous backends.
        last_loss = out.loss.into_scalar::<f32>();
        device.sync()?;
        if step >= args.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let params = serde_json::json!({
        "model": name, "p": args.p, "k": args.k, "size": args.size,
        "device": format!("{device:?}"),
    });
    println!(
        "{}",
        serde_json::json!({
            "suite": "train-step", "impl": "oml-rs", "params": params,
            "model": name, "p": args.p, "k": args.k, "size": args.size,
            "repeats": args.repeats, "warmup": args.warmup, "runs": times.len(),
            "median_s": median, "min_s": times[0], "max_s": times[times.len() - 1],
            "images_per_s": n as f64 / median,
            "peak_rss_mb": super::peak_rss_mib(), "peak_rss_before_steps_mb": rss_before,
            "feat_dim": model.feat_dim(), "last_loss": last_loss,
        })
    );
    eprintln!(
        "train-step: {name} {}x{} at {}²: {:.2} s per step, {:.2} images/s",
        args.p,
        args.k,
        args.size,
        median,
        n as f64 / median
    );
    Ok(())
}

/// Builds each model with random weights on the autodiff device and times its training step.
pub fn run(args: Args, device: &Device) -> Result<()> {
    let device = device.clone().autodiff();
    for name in &args.model {
        time_steps(name, super::extractor(name, &device)?, &args, &device)?;
    }
    Ok(())
}
