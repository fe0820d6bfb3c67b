//! Memory-bank miners (against simulations of their banks), the pairs miner, and error cases.

use burn::prelude::*;
use burn::tensor::Distribution;
use oml_interfaces::device::test_device;
use oml_interfaces::{
    Criterion, LossError, MiningError, Reduction, TripletsMiner, TripletsMinerInBatch,
};
use oml_mining::distance::self_cdist;
use oml_mining::{
    AllTripletsMiner, ArcFaceLoss, ArcFaceOptions, HardClusterMiner, HardTripletsMiner,
    MinerWithBank, NHardArg, NHardTripletsMiner, PairsMiner, SurrogatePrecision, TripletLoss,
    TripletLossPlain, TripletLossWithMiner, TripletMinerWithMemory,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Rows of `[T, D]` as bit patterns, for set comparisons of feature triplets.
fn rows(t: Tensor<2>) -> Vec<Vec<u32>> {
    let [n, d] = t.dims();
    let v = host(t);
    (0..n)
        .map(|i| v[i * d..(i + 1) * d].iter().map(|x| x.to_bits()).collect())
        .collect()
}

fn triplet_rows(
    a: Tensor<2>,
    p: Tensor<2>,
    n: Tensor<2>,
) -> BTreeSet<(Vec<u32>, Vec<u32>, Vec<u32>)> {
    rows(a)
        .into_iter()
        .zip(rows(p))
        .zip(rows(n))
        .map(|((a, p), n)| (a, p, n))
        .collect()
}

#[test]
fn miner_with_bank_equals_mining_the_batch_with_its_previous_batches() {
    // OML's test_top_miner_with_bank: mimic the bank by concatenating the previous batches
    let device = test_device();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (bank_batches, n_labels, n_inst, np, nn) in
        [(1, 2, 3, 2, 3), (3, 5, 3, 3, 2), (3, 2, 6, 2, 3)]
    {
        let miner = NHardTripletsMiner::new(np as usize, nn as usize).unwrap();
        let bank = MinerWithBank::new(bank_batches, miner, false).unwrap();
        let b = n_labels * n_inst;
        let mut history: Vec<(Tensor<2>, Vec<i64>)> = Vec::new();
        for step in 0..7 {
            let x = Tensor::<2>::random([b, 5], Distribution::Normal(0.0, 1.0), &device);
            let mut pool: Vec<i64> = (0..2 * n_labels as i64).collect();
            pool.shuffle(&mut rng);
            let labels: Vec<i64> = pool[..n_labels]
                .iter()
                .flat_map(|&l| vec![l; n_inst])
                .collect();
            history.push((x.clone(), labels.clone()));

            let got = bank.sample(x.clone(), &labels).unwrap();
            let got = triplet_rows(got.anchor, got.positive, got.negative);

            let (feats, labs) = if step >= bank_batches {
                let start = step - bank_batches;
                let mut f = vec![x.clone()];
                let mut l = labels.clone();
                for (hx, hl) in &history[start..step] {
                    f.push(hx.clone());
                    l.extend_from_slice(hl);
                }
                (Tensor::cat(f, 0), l)
            } else {
                (x.clone(), labels.clone())
            };
            let ignore: Vec<bool> = (0..labs.len()).map(|i| i >= b).collect();
            let d = host(self_cdist(feats.clone()));
            let tri = miner.mine_from_distances(&d, &labs, Some(&ignore)).unwrap();
            let g = tri.gather(feats);
            let want = triplet_rows(g.anchor, g.positive, g.negative);
            assert_eq!(got, want, "bank {bank_batches}, step {step}");
            assert_eq!(bank.is_accumulated(), step + 1 >= bank_batches);
        }
    }
}

#[test]
fn miner_with_bank_logs_count_bank_and_batch_rows() {
    let device = test_device();
    let bank =
        MinerWithBank::new(1, NHardTripletsMiner::new(2usize, 2usize).unwrap(), true).unwrap();
    let c = TripletLossWithMiner::new(Some(0.2), bank, Reduction::Mean, true).unwrap();
    let labels = [0, 0, 0, 1, 1, 1];
    let x = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &device);
    let first = c.forward(x.clone(), &labels).unwrap().logs_f64();
    assert_eq!(first["positives_from_bank"], 0.0);
    assert_eq!(first["positives_from_batch"], 2.0);
    assert_eq!(first["negatives_from_batch"], 2.0);
    let second = c.forward(x.add_scalar(0.5), &labels).unwrap().logs_f64();
    let pos = second["positives_from_bank"] + second["positives_from_batch"];
    let neg = second["negatives_from_bank"] + second["negatives_from_batch"];
    assert!(
        (pos - 2.0).abs() < 1e-6 && (neg - 2.0).abs() < 1e-6,
        "{second:?}"
    );
}

/// One-hot features whose argmax identifies the label (shifted past the bank's fake columns).
fn one_hot(labels: &[i64], dim: usize, shift: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0.0f32; labels.len() * dim];
    for (i, l) in labels.iter().enumerate() {
        v[i * dim + *l as usize + shift] = 1.0;
    }
    Tensor::<2>::from_data(TensorData::new(v, [labels.len(), dim]), device)
}

fn argmax_rows(t: Tensor<2>) -> Vec<usize> {
    let [n, d] = t.dims();
    let v = host(t);
    (0..n)
        .map(|i| (0..d).fold(0, |b, j| if v[i * d + j] > v[i * d + b] { j } else { b }))
        .collect()
}

#[test]
fn memory_miner_counts_and_labels_like_oml() {
    // OML's test_mining_with_memory on a smaller dataset
    let device = test_device();
    let (n_cls, n_labels, n_inst) = (12usize, 4usize, 3usize);
    let n_possible = n_labels * (n_labels - 1) * (n_inst - 1) * n_inst * n_inst;
    for (bank_batches, k) in [(5usize, 3usize), (3, 5), (5, 1), (1, 3)] {
        let shift = k + n_labels * n_inst + 5;
        let dim = n_cls + shift;
        let miner = TripletMinerWithMemory::new(bank_batches, k, 11).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut first_call = true;
        for epoch in 0..3 {
            let mut classes: Vec<i64> = (0..n_cls as i64).collect();
            classes.shuffle(&mut rng);
            for group in classes.chunks(n_labels) {
                let mut labels: Vec<i64> = group.iter().flat_map(|&l| vec![l; n_inst]).collect();
                labels.shuffle(&mut rng);
                let x = one_hot(&labels, dim, shift, &device);
                let out = miner.sample_with_origin(x, &labels).unwrap();
                let n_out = out.is_original.len();
                assert_eq!(out.is_original.iter().filter(|o| **o).count(), n_possible);
                assert!(out.is_original[n_out - n_possible..].iter().all(|o| *o));
                let desired = k * n_possible;
                let extra = n_possible * (k - 1) / 2;
                if first_call && bank_batches == 1 {
                    // singleton fake groups: no bank positives (OML loops forever here)
                    assert_eq!(n_out, n_possible + extra);
                } else if epoch == 0 || k == 1 {
                    assert_eq!(n_out, desired, "bank {bank_batches}, k {k}");
                } else {
                    assert!(n_out as f64 > 0.9 * desired as f64);
                }
                first_call = false;
                let f = out.features;
                let (a, p, n) = (
                    argmax_rows(f.anchor),
                    argmax_rows(f.positive),
                    argmax_rows(f.negative),
                );
                for i in 0..n_out {
                    assert_eq!(a[i], p[i]);
                    assert_ne!(a[i], n[i]);
                }
            }
        }
    }
}

#[test]
fn memory_miner_rejects_a_changed_batch_size() {
    let device = test_device();
    let m = TripletMinerWithMemory::new(2, 2, 0).unwrap();
    m.sample(Tensor::zeros([4, 3], &device), &[0, 0, 1, 1])
        .unwrap();
    let e = m
        .sample(Tensor::zeros([6, 3], &device), &[0, 0, 1, 1, 2, 2])
        .unwrap_err();
    assert!(matches!(e, MiningError::LengthMismatch { .. }), "{e}");
}

#[test]
fn pairs_miner_dedups_unordered_pairs() {
    let device = test_device();
    let x = Tensor::<2>::from_data([[0.0], [1.0], [5.0], [7.0]], &device);
    let labels = [0, 0, 1, 1];
    let pairs = PairsMiner::new(true).sample(&x, &labels).unwrap();
    // hard: (0,1,2) (1,0,2) (2,3,1) (3,2,1) → positives {01, 23}, negatives {02, 12, 13}
    assert_eq!(pairs.ids1, vec![0, 2, 0, 1, 1]);
    assert_eq!(pairs.ids2, vec![1, 3, 2, 2, 3]);
    assert_eq!(pairs.is_negative, vec![false, false, true, true, true]);
    let all = PairsMiner::new(false).sample(&x, &labels).unwrap();
    assert_eq!(all.len(), 2 + 4);
    for i in 0..all.len() {
        assert!(all.ids1[i] < all.ids2[i]);
        assert_eq!(
            all.is_negative[i],
            labels[all.ids1[i]] != labels[all.ids2[i]]
        );
    }
}

#[test]
fn degenerate_batches_and_parameters_are_errors() {
    let device = test_device();
    let x = Tensor::<2>::zeros([4, 2], &device);
    let all = AllTripletsMiner::unlimited();
    assert!(matches!(
        all.mine(&x, &[1, 1, 1, 1]),
        Err(MiningError::TooFewLabels { n_labels: 1 })
    ));
    assert!(matches!(
        HardTripletsMiner.mine(&x, &[1, 1, 1, 2]),
        Err(MiningError::SingleInstance { label: 2, count: 1 })
    ));
    assert!(matches!(
        all.mine(&x, &[1, 1, 2]),
        Err(MiningError::LengthMismatch { .. })
    ));
    let e = HardClusterMiner
        .sample(Tensor::zeros([5, 2], &device), &[0, 0, 1, 1, 1])
        .unwrap_err();
    assert!(e.to_string().contains("same number of instances"), "{e}");
    let e = NHardTripletsMiner::new(NHardArg::Range([3, 4]), 1usize)
        .unwrap()
        .mine(&x, &[0, 0, 1, 1])
        .unwrap_err();
    assert!(matches!(e, MiningError::Empty(_)));
    assert!(
        AllTripletsMiner::new(Some(0), 0)
            .unwrap_err()
            .to_string()
            .contains("`max_output_triplets`")
    );
    assert!(MinerWithBank::new(0, NHardTripletsMiner::default(), true).is_err());
    assert!(
        TripletMinerWithMemory::new(1, 0, 0)
            .unwrap_err()
            .to_string()
            .contains("`tri_expand_k`")
    );

    for m in [Some(0.0), Some(-1.0), Some(f64::NAN)] {
        let e = TripletLoss::new(m, Reduction::Mean, false).unwrap_err();
        assert!(e.to_string().contains("`margin`"), "{e}");
    }
    let e = TripletLossPlain::new(Some(0.1), Reduction::Mean, false)
        .unwrap()
        .forward(Tensor::zeros([4, 2], &device), &[])
        .unwrap_err();
    assert!(matches!(e, LossError::Shape(_)), "{e}");
    assert!(
        SurrogatePrecision::new(0, 1.0, 0.01, Reduction::Mean)
            .unwrap_err()
            .to_string()
            .contains("`k`")
    );
    let af = ArcFaceLoss::new(2, 3, ArcFaceOptions::default(), &device).unwrap();
    assert_eq!(
        af.forward(Tensor::ones([2, 2], &device), &[0, 3])
            .unwrap_err(),
        LossError::LabelOutOfRange {
            label: 3,
            num_classes: 3
        }
    );
    let e = ArcFaceLoss::new(
        2,
        3,
        ArcFaceOptions {
            smoothing_epsilon: 1.0,
            ..Default::default()
        },
        &device,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`smoothing_epsilon`"), "{e}");
    let c =
        TripletLossWithMiner::new(Some(0.2), HardTripletsMiner, Reduction::Mean, false).unwrap();
    assert!(matches!(
        c.forward(x, &[0, 0, 0, 0]),
        Err(LossError::Mining(MiningError::TooFewLabels { .. }))
    ));
}

#[test]
fn truncated_all_triplets_loss_matches_its_own_triplets() {
    // with truncation the loss is over the sampled triplets (the gathered way)
    let device = test_device().autodiff();
    let labels: Vec<i64> = (0..4).flat_map(|l| [l; 4]).collect();
    let x = Tensor::<2>::random([16, 6], Distribution::Normal(0.0, 1.0), &device);
    let miner = AllTripletsMiner::new(Some(40), 9).unwrap();
    let tri = AllTripletsMiner::new(Some(40), 9)
        .unwrap()
        .mine(&x, &labels)
        .unwrap();
    assert_eq!(tri.len(), 40);
    let c = TripletLossWithMiner::new(Some(0.3), miner, Reduction::Sum, false).unwrap();
    let got: f32 = c.forward(x.clone(), &labels).unwrap().loss.into_scalar();
    let g = tri.gather(x);
    let want: f32 = TripletLoss::new(Some(0.3), Reduction::Sum, false)
        .unwrap()
        .forward_triplets(g.anchor, g.positive, g.negative)
        .unwrap()
        .loss
        .into_scalar();
    assert!(
        (got - want).abs() < 1e-4 * want.abs().max(1.0),
        "{got} vs {want}"
    );
}
