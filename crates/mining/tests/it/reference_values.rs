//! The exact values of the OML 4.0 reference (§1.3–§1.4), each checked against OML 4.0 there.

use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_interfaces::{Criterion, Reduction, TripletsMinerInBatch};
use oml_mining::{
    AllTripletsMiner, ArcFaceLoss, ArcFaceOptions, HardClusterMiner, HardTripletsMiner,
    Label2Category, Miner, MinerWithBank, NHardTripletsMiner, SurrogatePrecision, TripletLoss,
    TripletLossWithMiner, TripletMinerWithMemory,
};

fn t2(rows: &[&[f32]], device: &Device) -> Tensor<2> {
    let cols = rows[0].len();
    let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::<2>::from_data(TensorData::new(data, [rows.len(), cols]), device)
}

fn values(t: Tensor<1>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

#[test]
fn hard_miner_picks_the_anchor_itself_when_embeddings_tie() {
    let device = test_device();
    let x = t2(
        &[&[0.0, 0.0], &[0.0, 0.0], &[1.0, 1.0], &[1.0, 1.0]],
        &device,
    );
    let tri = HardTripletsMiner.mine(&x, &[0, 0, 1, 1]).unwrap();
    assert_eq!(tri.positive, vec![0, 0, 2, 2]);
    assert_eq!(tri.anchor, vec![0, 1, 2, 3]);
}

#[test]
fn soft_triplet_loss_of_coincident_points_is_ln_2() {
    let device = test_device();
    let x = t2(&[&[0.3, -1.0], &[0.3, -1.0]], &device);
    let loss = TripletLoss::new(None, Reduction::Mean, false).unwrap();
    let out = loss.forward_triplets(x.clone(), x.clone(), x).unwrap();
    assert!((scalar(out.loss) - std::f64::consts::LN_2).abs() < 1e-6);
}

#[test]
fn triplet_loss_on_explicit_triplets() {
    let device = test_device();
    let a = t2(&[&[0.0, 0.0], &[1.0, 0.0]], &device);
    let p = t2(&[&[0.0, 1.0], &[1.0, 0.5]], &device);
    let n = t2(&[&[2.0, 0.0], &[1.0, 0.2]], &device);
    let soft = TripletLoss::new(None, Reduction::None, false).unwrap();
    let out = soft
        .forward_triplets(a.clone(), p.clone(), n.clone())
        .unwrap();
    assert_close(&values(out.loss), &[0.313262, 0.854355], 1e-6);

    let hard = TripletLoss::new(Some(0.2), Reduction::None, true).unwrap();
    let out = hard.forward_triplets(a, p, n).unwrap();
    assert_close(&values(out.loss.clone()), &[0.0, 0.5], 1e-6);
    let logs = out.logs_f64();
    assert!((logs["active_tri"] - 0.5).abs() < 1e-6);
    assert!((logs["pos_dist"] - 0.75).abs() < 1e-6);
    assert!((logs["neg_dist"] - 1.1).abs() < 1e-6);
}

#[test]
fn one_dimensional_soft_margin_with_all_and_hard_miners() {
    let device = test_device();
    let x = t2(
        &[&[0.0], &[1.0], &[3.0], &[10.0], &[11.0], &[14.0]],
        &device,
    );
    let labels = [0, 0, 0, 1, 1, 1];
    for (miner, loss, pos, neg) in [
        (
            Miner::All(AllTripletsMiner::unlimited()),
            0.0030253,
            2.3333,
            10.3333,
        ),
        (Miner::Hard(HardTripletsMiner), 0.0126978, 3.1667, 8.6667),
    ] {
        let c = TripletLossWithMiner::new(None, miner, Reduction::Mean, true).unwrap();
        let out = c.forward(x.clone(), &labels).unwrap();
        let logs = out.logs_f64();
        assert!((scalar(out.loss) - loss).abs() < 1e-6);
        assert!((logs["pos_dist"] - pos).abs() < 1e-4, "{logs:?}");
        assert!((logs["neg_dist"] - neg).abs() < 1e-4, "{logs:?}");
        assert!((logs["active_tri"] - 1.0).abs() < 1e-6);
    }
}

#[test]
fn ideal_one_hot_embeddings_give_the_known_losses_for_every_miner() {
    // test_train_with_mining: one-hot embeddings of the labels
    let device = test_device();
    let labels: Vec<i64> = vec![2, 0, 1, 2, 0, 1, 1, 0, 2, 0, 1, 2];
    let mut data = vec![0.0f32; labels.len() * 3];
    for (i, l) in labels.iter().enumerate() {
        data[i * 3 + *l as usize] = 1.0;
    }
    let x = Tensor::<2>::from_data(TensorData::new(data, [labels.len(), 3]), &device);
    let miners = || -> Vec<Miner> {
        vec![
            Miner::All(AllTripletsMiner::unlimited()),
            Miner::All(AllTripletsMiner::new(Some(50), 1).unwrap()),
            Miner::Hard(HardTripletsMiner),
            Miner::NHard(NHardTripletsMiner::new(2usize, 3usize).unwrap()),
            Miner::HardCluster(HardClusterMiner),
            Miner::WithBank(MinerWithBank::new(2, NHardTripletsMiner::default(), true).unwrap()),
        ]
    };
    let soft = (-(2.0f64).sqrt()).exp().ln_1p();
    for miner in miners() {
        let name = format!("{miner:?}");
        let c = TripletLossWithMiner::new(None, miner, Reduction::Mean, false).unwrap();
        for _ in 0..3 {
            let got = scalar(c.forward(x.clone(), &labels).unwrap().loss);
            assert!((got - soft).abs() < 1e-6, "{name}: {got}");
        }
    }
    for miner in miners() {
        let c = TripletLossWithMiner::new(Some(0.5), miner, Reduction::Mean, false).unwrap();
        assert_eq!(scalar(c.forward(x.clone(), &labels).unwrap().loss), 0.0);
    }
}

fn arcface_case(options: ArcFaceOptions) -> (f64, f64) {
    let device = test_device();
    let w = t2(
        &[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[0.0, 0.0, 1.0]],
        &device,
    );
    let x = t2(
        &[&[1.0, 0.0, 0.0], &[0.0, 0.2, 0.8], &[0.0, 0.8, 0.2]],
        &device,
    );
    let loss = ArcFaceLoss::with_weight(w, options).unwrap();
    let out = loss.forward(x, &[0, 1, 2]).unwrap();
    (scalar(out.loss.clone()), out.logs_f64()["accuracy"])
}

#[test]
fn arcface_values_from_oml() {
    let (plain, acc) = arcface_case(ArcFaceOptions::default());
    assert!((plain - 52.156097).abs() < 52.156097 * 1e-6, "{plain}");
    assert!((acc - 1.0 / 3.0).abs() < 1e-6);
    let (smoothed, _) = arcface_case(ArcFaceOptions {
        smoothing_epsilon: 0.1,
        ..Default::default()
    });
    assert!(
        (smoothed - 51.306904).abs() < 51.306904 * 1e-6,
        "{smoothed}"
    );
    let l2c: Label2Category = [(0i64, 0i64), (1, 1), (2, 1)].into_iter().collect();
    let (by_category, _) = arcface_case(ArcFaceOptions {
        smoothing_epsilon: 0.1,
        label2category: Some(l2c),
        ..Default::default()
    });
    assert!(
        (by_category - 49.548294).abs() < 49.548294 * 1e-6,
        "{by_category}"
    );
}

#[test]
fn surrogate_precision_per_sample_values() {
    let device = test_device();
    let x = t2(
        &[
            &[0.0, 0.0],
            &[0.0, 1.0],
            &[3.0, 0.0],
            &[3.0, 1.0],
            &[0.0, 2.0],
        ],
        &device,
    );
    let labels = [0, 0, 1, 1, 1];
    for (k, want) in [
        (1, [0.279983, 0.341213, 0.242054, 0.220382, 0.462071]),
        (2, [0.129142, 0.172400, 0.358619, 0.329781, 0.505297]),
    ] {
        let c = SurrogatePrecision::new(k, 1.0, 0.01, Reduction::None).unwrap();
        let got = values(c.forward(x.clone(), &labels).unwrap().loss);
        assert_close(&got, &want, 1e-5);
    }
}

#[test]
fn memory_bank_logs_are_the_weighted_combination_of_orig_and_bank() {
    // test_logs_for_triplet_with_bank: overall = triplet-count-weighted orig/bank values
    let device = test_device();
    let miner = TripletMinerWithMemory::new(3, 3, 7).unwrap();
    let c = TripletLossWithMiner::new(Some(0.1), miner, Reduction::None, true).unwrap();
    let labels: Vec<i64> = (0..4).flat_map(|l| [l, l, l]).collect();
    // in-batch triplets: n_labels (n_labels − 1) (n_inst − 1) n_inst²
    let n_orig = (4 * 3 * 2 * 9) as f64;
    for step in 0..5u64 {
        let x = Tensor::<2>::random(
            [12, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        )
        .add_scalar(step as f64 * 0.1);
        let out = c.forward(x, &labels).unwrap();
        let n_all = values(out.loss.clone()).len() as f64;
        if step == 0 {
            // the fake bank labels never collide: exactly tri_expand_k times the in-batch count
            assert_eq!(n_all, 3.0 * n_orig);
        }
        let n_bank = n_all - n_orig;
        let logs = out.logs_f64();
        for (key, orig, bank) in [
            ("active_tri", "orig_active_tri", "bank_active_tri"),
            ("pos_dist", "pos_dist_orig", "pos_dist_bank"),
            ("neg_dist", "neg_dist_orig", "neg_dist_bank"),
        ] {
            let combined = (logs[orig] * n_orig + logs[bank] * n_bank) / n_all;
            assert!(
                (logs[key] - combined).abs() < 1e-4,
                "step {step} {key}: {logs:?}"
            );
        }
    }
}
