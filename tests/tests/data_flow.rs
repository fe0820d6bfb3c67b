//! A P×K sampler feeds a miner + loss, gradients flow into an embedding, and retrieval
//! improves: the path of a training run, without images.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use oml::interfaces::device::test_device;
use oml::interfaces::{BatchSampler, Criterion, Reduction};
use oml::mining::{HardTripletsMiner, TripletLossWithMiner};
use oml::sampling::BalanceSampler;
use oml_tests::mixed_clusters;

/// CMC@1 by brute force on the host: the nearest other item has the same label.
fn cmc1(emb: &[f32], dim: usize, labels: &[i64]) -> f64 {
    let n = labels.len();
    let d = |i: usize, j: usize| -> f32 {
        (0..dim)
            .map(|k| (emb[i * dim + k] - emb[j * dim + k]).powi(2))
            .sum()
    };
    let hits = (0..n)
        .filter(|&q| {
            let nn = (0..n)
                .filter(|&g| g != q)
                .min_by(|&a, &b| d(q, a).total_cmp(&d(q, b)))
                .unwrap();
            labels[nn] == labels[q]
        })
        .count();
    hits as f64 / n as f64
}

#[test]
fn pk_batches_train_an_embedding_with_a_mined_triplet_loss() {
    let (dim, out) = (8, 4);
    let (x, labels) = mixed_clusters(6, 12, dim, 7);
    let device = test_device().autodiff();
    // Burn's CPU backends draw initial weights from one process-wide generator: seed it so the
    // starting point (and so the test) is the same on every run.
    device.seed(11);
    let xs = Tensor::<2>::from_data(TensorData::new(x.clone(), [labels.len(), dim]), &device);

    let sampler = BalanceSampler::new(&labels, 3, 4).unwrap().with_seed(3);
    let criterion =
        TripletLossWithMiner::new(Some(0.2), HardTripletsMiner, Reduction::Mean, true).unwrap();
    let mut model: Linear = LinearConfig::new(dim, out).init(&device);
    let mut optim = SgdConfig::new().init();

    let embed = |m: &Linear| -> Vec<f32> {
        m.valid()
            .forward(xs.clone().inner())
            .try_to_vec_as::<f32>()
            .unwrap()
    };
    let before = cmc1(&embed(&model), out, &labels);

    let mut first_epoch_loss = None;
    let mut last_epoch_loss = 0.0;
    for epoch in 0..30 {
        let batches = sampler.epoch_batches(epoch);
        assert_eq!(batches.len(), sampler.num_batches());
        let mut total = 0.0;
        for batch in &batches {
            assert_eq!(batch.len(), 12);
            let idx: Vec<i64> = batch.iter().map(|&i| i as i64).collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [batch.len()]), &device);
            let batch_labels: Vec<i64> = batch.iter().map(|&i| labels[i]).collect();
            let feats = model.forward(xs.clone().select(0, idx));
            let out = criterion.forward(feats, &batch_labels).unwrap();
            assert!(out.logs.contains_key("active_tri"));
            total += out.loss.clone().into_scalar::<f64>();
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            model = optim.step(0.05, model, grads);
        }
        first_epoch_loss.get_or_insert(total);
        last_epoch_loss = total;
    }
    let after = cmc1(&embed(&model), out, &labels);
    eprintln!(
        "loss {:?} -> {last_epoch_loss}, CMC@1 {before} -> {after}",
        first_epoch_loss
    );
    let first = first_epoch_loss.unwrap();
    assert!(
        last_epoch_loss < 0.5 * first,
        "loss went {first} -> {last_epoch_loss}"
    );
    assert!(
        after >= before + 0.1 && after >= 0.8,
        "CMC@1 went {before} -> {after}"
    );
}
