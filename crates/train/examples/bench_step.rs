//! Times one training step of the Fashion-MNIST demo's model, part by part:
//! `cargo run -p oml-train --example bench_step [DEVICE] [BATCH]`.

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use oml_interfaces::{Criterion, Extractor};
use oml_train::small_cnn::SmallCnnConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let device = oml_interfaces::device::select_device(args.next().as_deref())?;
    let batch: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(160);
    let ad = device.clone().autodiff();
    let model = SmallCnnConfig::new(64).init(&device).fork(&ad).train();
    let crit: oml_mining::CriterionConfig = serde_yaml_ng::from_str(
        "{name: triplet_with_miner, args: {margin: 0.2, miner: {name: hard_triplets}}}",
    )?;
    let crit = crit.build(&device)?;
    let labels: Vec<i64> = (0..batch as i64).map(|i| i / (batch as i64 / 5)).collect();
    let mut optim = burn::optim::AdamConfig::new().init();
    let mut model = model;
    let mut t = [0.0f64; 5];
    let n = 20;
    for i in 0..n + 3 {
        let x = Tensor::<4>::random([batch, 3, 28, 28], burn::tensor::Distribution::Default, &ad);
        let t0 = Instant::now();
        let emb = model.extract(x);
        let _ = emb.clone().sum().into_scalar::<f32>(); // force (lazy backends)
        let t1 = Instant::now();
        let out = crit.forward(emb, &labels)?;
        let _ = out.loss.clone().into_scalar::<f32>();
        let t2 = Instant::now();
        let grads = out.loss.backward();
        let t3 = Instant::now();
        let g = GradientsParams::from_grads(grads, &model);
        model = optim.step(
            burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate::from(1e-3),
            model,
            g,
        );
        let t4 = Instant::now();
        if i >= 3 {
            for (k, d) in [
                (0, t1 - t0),
                (1, t2 - t1),
                (2, t3 - t2),
                (3, t4 - t3),
                (4, t4 - t0),
            ] {
                t[k] += d.as_secs_f64() / n as f64;
            }
        }
    }
    println!(
        "batch {batch}: forward {:.3} s, loss {:.3} s, backward {:.3} s, optimizer {:.3} s, step {:.3} s",
        t[0], t[1], t[2], t[3], t[4]
    );
    Ok(())
}
