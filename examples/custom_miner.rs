//! A miner of your own in OML's `TripletLossWithMiner`: FaceNet's semi-hard negatives (not in
//! OML), written against `oml_interfaces::TripletsMinerInBatch` and trained with.
//!
//! ```text
//! cargo run -p oml-examples --example custom_miner -- --steps 50
//! ```

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::Distribution;
use oml_interfaces::cpu::host_f32;
use oml_interfaces::miners::check_batch_labels;
use oml_interfaces::{Criterion, MiningError, Reduction, Triplets, TripletsMinerInBatch};
use oml_mining::distance::self_cdist;
use oml_mining::{Miner, TripletLossWithMiner};

/// For each (anchor, positive) pair: the closest negative that is farther than the positive but
/// within `margin` of it (semi-hard); the hardest negative when there is none.
#[derive(Debug)]
struct SemiHardMiner {
    margin: f32,
}

impl TripletsMinerInBatch for SemiHardMiner {
    fn mine(&self, features: &Tensor<2>, labels: &[i64]) -> Result<Triplets, MiningError> {
        check_batch_labels(labels)?;
        let n = labels.len();
        // Mining needs no gradient: distances on the host, from detached features.
        let dist = host_f32(self_cdist(features.clone().without_autodiff()))
            .map_err(|e| MiningError::Read(e.to_string()))?;
        let d = |i: usize, j: usize| dist[i * n + j];
        let mut triplets = Triplets::default();
        for a in 0..n {
            let negatives: Vec<usize> = (0..n).filter(|&j| labels[j] != labels[a]).collect();
            for p in (0..n).filter(|&p| p != a && labels[p] == labels[a]) {
                let semi_hard = negatives
                    .iter()
                    .copied()
                    .filter(|&j| d(a, j) > d(a, p) && d(a, j) < d(a, p) + self.margin)
                    .min_by(|&x, &y| d(a, x).total_cmp(&d(a, y)));
                let hardest = || {
                    negatives
                        .iter()
                        .copied()
                        .min_by(|&x, &y| d(a, x).total_cmp(&d(a, y)))
                };
                if let Some(neg) = semi_hard.or_else(hardest) {
                    triplets.push(a, p, neg);
                }
            }
        }
        Ok(triplets)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = oml_examples::arg("steps", 50)?;
    let device = oml_examples::device()?.autodiff();
    let miner = SemiHardMiner { margin: 0.5 };

    // The miner on its own: 4 labels × 4 items.
    let labels: Vec<i64> = (0..16).map(|i| i / 4).collect();
    let start = Tensor::<2>::random([16, 8], Distribution::Normal(0.0, 1.0), &device);
    let mined = miner.mine(&start, &labels)?;
    println!(
        "{} triplets mined from a batch of 16 (4 labels x 4)",
        mined.anchor.len()
    );

    // Plugged into OML's loss (margin 0.2, mean): any `TripletsMinerInBatch` is a `Miner`.
    let criterion = TripletLossWithMiner::new(
        Some(0.2),
        Miner::Custom(Arc::new(miner)),
        Reduction::Mean,
        true,
    )?;

    // Gradient descent on the embeddings themselves: the loss falls as the labels separate.
    let mut features = start.require_grad();
    let mut first = None;
    let mut last = 0.0;
    for step in 0..steps {
        let out = criterion.forward(features.clone(), &labels)?;
        last = out.loss.clone().into_scalar::<f32>();
        first.get_or_insert(last);
        let grads = out.loss.backward();
        let grad = features
            .grad(&grads)
            .ok_or("no gradient reached the features")?;
        features = (features.inner() - grad.mul_scalar(0.5))
            .autodiff()
            .require_grad();
        if step % 10 == 0 {
            let logs: Vec<String> = out
                .logs
                .iter()
                .map(|(k, v)| format!("{k} {:.3}", v.clone().into_scalar::<f32>()))
                .collect();
            println!("step {step:3}: loss {last:.4}  {}", logs.join("  "));
        }
    }
    println!(
        "loss {:.4} -> {last:.4} after {steps} steps",
        first.unwrap_or(last)
    );
    Ok(())
}
