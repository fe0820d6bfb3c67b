//! Property tests: mining rules, counts, equivalences, and loss invariants on random batches.

use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_interfaces::{Criterion, MiningError, Reduction, TripletsMinerInBatch};
use oml_mining::{
    AllTripletsMiner, ArcFaceLoss, ArcFaceOptions, HardClusterMiner, HardTripletsMiner, Miner,
    NHardArg, NHardTripletsMiner, SurrogatePrecision, TripletLossWithMiner,
};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A random batch: labels (unbalanced, shuffled), distinct rows (the last column is unique).
#[derive(Debug, Clone)]
struct Batch {
    labels: Vec<i64>,
    features: Vec<f32>,
    dim: usize,
}

impl Batch {
    fn tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::<2>::from_data(
            TensorData::new(self.features.clone(), [self.labels.len(), self.dim]),
            device,
        )
    }
}

fn batch(balanced: bool) -> impl Strategy<Value = Batch> {
    (2usize..5, 1usize..5, 2usize..5)
        .prop_flat_map(move |(n_labels, dim, k)| {
            let counts = if balanced {
                Just(vec![k; n_labels]).boxed()
            } else {
                prop::collection::vec(2usize..5, n_labels).boxed()
            };
            (counts, Just(dim))
        })
        .prop_flat_map(|(counts, dim)| {
            let labels: Vec<i64> = counts
                .iter()
                .enumerate()
                .flat_map(|(l, &c)| std::iter::repeat_n(l as i64 * 7 - 3, c))
                .collect();
            let b = labels.len();
            (
                Just(labels).prop_shuffle(),
                prop::collection::vec(-2.0f32..2.0, b * dim),
                Just(dim),
            )
        })
        .prop_map(|(labels, raw, dim)| {
            let b = labels.len();
            let mut features = Vec::with_capacity(b * (dim + 1));
            for i in 0..b {
                features.extend_from_slice(&raw[i * dim..(i + 1) * dim]);
                features.push(i as f32 * 0.37);
            }
            Batch {
                labels,
                features,
                dim: dim + 1,
            }
        })
}

fn all_count(labels: &[i64]) -> usize {
    let b = labels.len();
    let classes: BTreeSet<_> = labels.iter().collect();
    classes
        .into_iter()
        .map(|c| {
            let n = labels.iter().filter(|l| *l == c).count();
            n * (n - 1) * (b - n)
        })
        .sum()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn value_and_grad(c: &dyn Criterion, b: &Batch) -> (Vec<f32>, Vec<f32>) {
    let device = test_device().autodiff();
    let x = b.tensor(&device).require_grad();
    let out = c.forward(x.clone(), &b.labels).unwrap();
    let v = host(out.loss.clone());
    let g = x
        .grad(&out.loss.sum().backward())
        .map(host)
        .unwrap_or_default();
    (v, g)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mined_triplets_follow_the_label_rules(b in batch(false), np in 1usize..4, nn in 1usize..5) {
        let x = b.tensor(&test_device());
        let miners: Vec<Box<dyn TripletsMinerInBatch>> = vec![
            Box::new(AllTripletsMiner::unlimited()),
            Box::new(AllTripletsMiner::new(Some(7), 3).unwrap()),
            Box::new(HardTripletsMiner),
            Box::new(NHardTripletsMiner::new(np, nn).unwrap()),
            Box::new(NHardTripletsMiner::new(NHardArg::Range([1, np as i64]), NHardArg::Range([nn as i64, nn as i64 + 1])).unwrap()),
        ];
        for m in miners {
            let tri = match m.mine(&x, &b.labels) {
                Ok(t) => t,
                Err(MiningError::Empty(_)) => {
                    // only legitimate when the negative range starts past every anchor's negatives
                    let b_len = b.labels.len();
                    let min_c = b.labels.iter().map(|l| b.labels.iter().filter(|m| *m == l).count()).min().unwrap();
                    prop_assert!(b_len - min_c < nn, "empty although negatives exist");
                    continue;
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            prop_assert!(!tri.is_empty());
            for (a, p, n) in tri.iter() {
                prop_assert_eq!(b.labels[a], b.labels[p]);
                prop_assert_ne!(b.labels[a], b.labels[n]);
                prop_assert_ne!(a, p);
            }
        }
    }

    #[test]
    fn all_triplets_count_and_truncation(b in batch(false), max in 1usize..60, seed in 0u64..1000) {
        let x = b.tensor(&test_device());
        let all = AllTripletsMiner::unlimited().mine(&x, &b.labels).unwrap();
        let total = all_count(&b.labels);
        prop_assert_eq!(all.len(), total);
        prop_assert_eq!(AllTripletsMiner::count(&b.labels), total);
        let set: BTreeSet<_> = all.iter().collect();
        prop_assert_eq!(set.len(), total);

        let m = AllTripletsMiner::new(Some(max), seed).unwrap();
        let sub = m.mine(&x, &b.labels).unwrap();
        prop_assert_eq!(sub.len(), total.min(max));
        let sub_set: BTreeSet<_> = sub.iter().collect();
        prop_assert_eq!(sub_set.len(), sub.len());
        prop_assert!(sub_set.is_subset(&set));
        // the same seed gives the same draw
        let again = AllTripletsMiner::new(Some(max), seed).unwrap().mine(&x, &b.labels).unwrap();
        prop_assert_eq!(again, sub);
    }

    #[test]
    fn nhard_one_one_is_hard_and_large_ranges_are_all(b in batch(false)) {
        let x = b.tensor(&test_device());
        let hard = HardTripletsMiner.mine(&x, &b.labels).unwrap();
        let nhard = NHardTripletsMiner::new(1usize, 1usize).unwrap().mine(&x, &b.labels).unwrap();
        prop_assert_eq!(&hard, &nhard);
        let big = NHardTripletsMiner::new(1_000_000usize, 1_000_000usize).unwrap().mine(&x, &b.labels).unwrap();
        let all = AllTripletsMiner::unlimited().mine(&x, &b.labels).unwrap();
        let (s1, s2): (BTreeSet<_>, BTreeSet<_>) = (big.iter().collect(), all.iter().collect());
        prop_assert_eq!(s1, s2);
        // NHard expected size for balanced-per-anchor slices: Σ_a |pos slice|·|neg slice|
        let (np, nn) = (2usize, 3usize);
        let got = NHardTripletsMiner::new(np, nn).unwrap().mine(&x, &b.labels).unwrap().len();
        let want: usize = b.labels.iter().map(|l| {
            let n_c = b.labels.iter().filter(|m| *m == l).count();
            (n_c - 1).min(np) * (b.labels.len() - n_c).min(nn)
        }).sum();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn losses_are_non_negative(b in batch(true), margin in prop::option::of(0.05f64..1.0)) {
        let miners = vec![
            Miner::All(AllTripletsMiner::unlimited()),
            Miner::Hard(HardTripletsMiner),
            Miner::NHard(NHardTripletsMiner::new(2usize, 3usize).unwrap()),
            Miner::HardCluster(HardClusterMiner),
        ];
        for miner in miners {
            for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                let c = TripletLossWithMiner::new(margin, miner.clone(), reduction, true).unwrap();
                let (v, g) = value_and_grad(&c, &b);
                prop_assert!(v.iter().all(|x| *x >= 0.0 && x.is_finite()), "{:?}", v);
                prop_assert!(g.iter().all(|x| x.is_finite()));
            }
        }
        let sp = SurrogatePrecision::new(2, 1.0, 0.01, Reduction::None).unwrap();
        let (v, _) = value_and_grad(&sp, &b);
        prop_assert!(v.iter().all(|x| x.is_finite() && *x <= 1.0));
        let n_classes = b.labels.iter().map(|l| (l + 3) / 7).max().unwrap_or(0) as usize + 1;
        let device = test_device().autodiff();
        let af = ArcFaceLoss::new(b.dim, n_classes, ArcFaceOptions { smoothing_epsilon: 0.1, ..Default::default() }, &device).unwrap();
        let labels: Vec<i64> = b.labels.iter().map(|l| (l + 3) / 7).collect();
        let out = af.forward(b.tensor(&device).require_grad(), &labels).unwrap();
        let v = host(out.loss);
        prop_assert!(v[0] >= 0.0 && v[0].is_finite());
    }

    #[test]
    fn well_separated_clusters_give_zero_loss_with_a_margin(b in batch(true), margin in 0.05f64..1.0) {
        // put every label at its own far-away centre, the rows within 0.2 of it
        let mut sep = b.clone();
        for (i, l) in b.labels.iter().enumerate() {
            for d in 0..sep.dim {
                let jitter = b.features[i * b.dim + d] * 0.02;
                sep.features[i * sep.dim + d] = jitter + if d == 0 { *l as f32 * 100.0 } else { 0.0 };
            }
        }
        for miner in [
            Miner::All(AllTripletsMiner::unlimited()),
            Miner::Hard(HardTripletsMiner),
            Miner::NHard(NHardTripletsMiner::new(2usize, 3usize).unwrap()),
            Miner::HardCluster(HardClusterMiner),
        ] {
            let c = TripletLossWithMiner::new(Some(margin), miner, Reduction::Sum, false).unwrap();
            let (v, g) = value_and_grad(&c, &sep);
            prop_assert_eq!(v[0], 0.0);
            prop_assert!(g.iter().all(|x| *x == 0.0));
        }
    }

    #[test]
    fn matrix_paths_equal_the_gathered_features_path(b in batch(false), margin in prop::option::of(0.05f64..2.0)) {
        // the fast all-triplets paths against OML's way: gather every triplet's rows
        for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let fast = TripletLossWithMiner::new(margin, AllTripletsMiner::unlimited(), reduction, true).unwrap();
            let slow = TripletLossWithMiner::new(
                margin,
                Miner::Custom(Arc::new(AllTripletsMiner::unlimited())),
                reduction,
                true,
            ).unwrap();
            let (v1, g1) = value_and_grad(&fast, &b);
            let (v2, g2) = value_and_grad(&slow, &b);
            prop_assert_eq!(v1.len(), v2.len());
            for (x, y) in v1.iter().zip(&v2) {
                prop_assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{} vs {}", x, y);
            }
            for (x, y) in g1.iter().zip(&g2) {
                prop_assert!((x - y).abs() <= 1e-4, "{} vs {}", x, y);
            }
            let device = test_device().autodiff();
            let l1 = fast.forward(b.tensor(&device), &b.labels).unwrap().logs_f64();
            let l2 = slow.forward(b.tensor(&device), &b.labels).unwrap().logs_f64();
            for k in ["active_tri", "pos_dist", "neg_dist"] {
                prop_assert!((l1[k] - l2[k]).abs() < 1e-4, "{}: {} vs {}", k, l1[k], l2[k]);
            }
        }
    }
}
