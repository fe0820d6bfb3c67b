//! Post-processors: OML's exact thresholding cases, the `cat_two_sorted` case, and the
//! pairwise reranker's invariants.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_interfaces::{PairwiseModel, RetrievalError, RetrievalPostprocessor, RetrievalResults};
use oml_retrieval::{
    AdaptiveThresholding, ConstantThresholding, ModelPairScorer, PairScorer, PairwiseReranker,
    cat_two_sorted_keep_sorted,
};

fn rr(d: Vec<Vec<f32>>) -> RetrievalResults {
    let ids = d
        .iter()
        .map(|r| (0..r.len()).map(|i| i * 10 + 1).collect())
        .collect();
    let gt = Some(d.iter().enumerate().map(|(q, _)| vec![q]).collect());
    RetrievalResults::new(d, ids, gt).unwrap()
}

#[test]
fn constant_thresholding_oml_case() {
    let input = RetrievalResults::new(
        vec![
            vec![0.0, 0.05, 0.07, 0.1, 0.12, 0.2, 0.2, 0.4],
            vec![],
            vec![0.21, 0.25],
        ],
        vec![vec![0, 1, 2, 3, 4, 5, 6, 7], vec![], vec![3, 5]],
        Some(vec![vec![0, 1], vec![1, 500], vec![10, 20]]),
    )
    .unwrap();
    let out = ConstantThresholding::new(0.2)
        .unwrap()
        .process(input)
        .unwrap();
    assert_eq!(out.distances(0), &[0.0, 0.05, 0.07, 0.1, 0.12]);
    assert_eq!(out.retrieved_ids(0), &[0, 1, 2, 3, 4]);
    assert!(out.retrieved_ids(1).is_empty() && out.retrieved_ids(2).is_empty());
    assert_eq!(out.gt_ids(1), Some(&[1, 500][..]));
    assert!(ConstantThresholding::new(f32::NAN).is_err());
}

#[test]
fn adaptive_thresholding_oml_case() {
    let d = vec![
        vec![1.0, 2.0, 3.0, 4.0, 10.0, 11.0, 12.0, 13.0],
        vec![],
        vec![4.0, 5.0, 6.0, 7.0],
        vec![3.0, 4.0, 5.0, 12.0, 13.0, 14.0, 20.0, 21.0, 22.0],
        vec![100.0],
    ];
    let out = AdaptiveThresholding::new(3.0)
        .unwrap()
        .process(rr(d))
        .unwrap();
    assert_eq!(out.distances(0), &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(out.retrieved_ids(0), &[1, 11, 21, 31]);
    assert!(out.distances(1).is_empty());
    assert_eq!(out.distances(2), &[4.0, 5.0, 6.0, 7.0]);
    assert_eq!(out.distances(3), &[3.0, 4.0, 5.0]);
    assert_eq!(out.distances(4), &[100.0]);
}

/// OML 4.0 divides by zero when the first query has fewer than two items; here the mean gap
/// comes from the queries that have gaps, and no gap at all leaves results unchanged.
#[test]
fn adaptive_thresholding_without_division_by_zero() {
    let d = vec![vec![0.5], vec![1.0, 2.0, 3.0, 4.0, 10.0, 11.0, 12.0, 13.0]];
    let out = AdaptiveThresholding::new(3.0)
        .unwrap()
        .process(rr(d))
        .unwrap();
    assert_eq!(out.distances(0), &[0.5]);
    assert_eq!(out.distances(1), &[1.0, 2.0, 3.0, 4.0]);
    let lone = rr(vec![vec![0.5], vec![], vec![2.0]]);
    let out = AdaptiveThresholding::new(3.0)
        .unwrap()
        .process(lone.clone())
        .unwrap();
    assert_eq!(out, lone);
    assert!(AdaptiveThresholding::new(f32::INFINITY).is_err());
}

/// `test_misc_torch::test_cat_two_sorted` with eps = 0.001.
#[test]
fn cat_two_sorted_oml_case() {
    let cases = [
        (
            [10.0, 20.0, 30.0],
            [0.3, 0.4, 0.5],
            [0.099, 0.199, 0.299, 0.3, 0.4, 0.5],
        ),
        (
            [40.0, 50.0, 60.0],
            [0.6, 0.8, 0.9],
            [0.399, 0.499, 0.599, 0.6, 0.8, 0.9],
        ),
    ];
    for (a, b, want) in cases {
        let got = cat_two_sorted_keep_sorted(&a, &b, 0.001);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }
    assert_eq!(
        cat_two_sorted_keep_sorted(&[0.1, 0.2], &[0.3], 0.001),
        vec![0.1, 0.2, 0.3]
    );
    assert_eq!(cat_two_sorted_keep_sorted(&[], &[0.3], 0.001), vec![0.3]);
    // A non-positive boundary is shifted, not scaled, so the order holds.
    let got = cat_two_sorted_keep_sorted(&[-1.0, 2.0], &[-0.5, 1.0], 0.01);
    assert!(got.windows(2).all(|w| w[0] <= w[1]), "{got:?}");
}

fn sample() -> RetrievalResults {
    RetrievalResults::new(
        vec![
            vec![0.1, 0.2, 0.5, 0.6, 0.7],
            vec![0.3],
            vec![],
            vec![0.1, 0.2, 0.3],
        ],
        vec![vec![3, 2, 1, 0, 4], vec![7], vec![], vec![5, 6, 7]],
        Some(vec![vec![1], vec![7], vec![0], vec![6]]),
    )
    .unwrap()
}

/// The identity scorer (original distances) changes nothing, as OML's
/// `LinearTrivialDistanceSiamese` test checks.
#[test]
fn reranker_identity_keeps_everything() {
    let original = sample();
    let o = original.clone();
    let scorer = move |pairs: &[(usize, usize)]| -> Result<Vec<f32>, RetrievalError> {
        Ok(pairs
            .iter()
            .map(|&(q, g)| {
                let i = o.retrieved_ids(q).iter().position(|&x| x == g).unwrap();
                o.distances(q)[i]
            })
            .collect())
    };
    let out = PairwiseReranker::new(3, scorer)
        .unwrap()
        .process(original.clone())
        .unwrap();
    assert_eq!(out, original);
}

/// OML's docstring example 1 and 2: the head is re-sorted, the tail kept, and a head scored
/// above the tail is rescaled below it.
#[test]
fn reranker_reorders_head_and_keeps_tail() {
    let input = RetrievalResults::new(
        vec![vec![0.1, 0.2, 0.5, 0.6, 0.7]],
        vec![vec![3, 2, 1, 0, 4]],
        None,
    )
    .unwrap();
    let new = [0.4f32, 0.2, 0.3];
    let scorer = move |pairs: &[(usize, usize)]| -> Result<Vec<f32>, RetrievalError> {
        Ok(pairs.iter().enumerate().map(|(i, _)| new[i]).collect())
    };
    let out = PairwiseReranker::new(3, scorer)
        .unwrap()
        .process(input.clone())
        .unwrap();
    assert_eq!(out.retrieved_ids(0), &[2, 1, 3, 0, 4]);
    assert_eq!(out.distances(0), &[0.2, 0.3, 0.4, 0.6, 0.7]);

    let big = [1.0f32, 2.0, 5.0];
    let scorer = move |pairs: &[(usize, usize)]| -> Result<Vec<f32>, RetrievalError> {
        Ok(pairs.iter().enumerate().map(|(i, _)| big[i]).collect())
    };
    let out = PairwiseReranker::new(3, scorer)
        .unwrap()
        .process(input)
        .unwrap();
    let eps = 1000.0 * f32::EPSILON;
    let want = [0.6 / 5.0 - eps, 2.0 * 0.6 / 5.0 - eps, 0.6 - eps, 0.6, 0.7];
    for (g, w) in out.distances(0).iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{:?}", out.distances(0));
    }
    assert!(PairwiseReranker::new(1, |_: &[(usize, usize)]| Ok(vec![])).is_err());
}

/// Any scorer only permutes the head: counts, head sets and tails are unchanged, so
/// cmc@top_n and precision@top_n cannot change (OML's random-model invariant).
#[test]
fn reranker_random_scores_only_permute_head() {
    let original = sample();
    let mut state = 7u64;
    let scores: Vec<f32> = (0..20)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 40) as f32 / (1u64 << 24) as f32 * 10.0 - 5.0
        })
        .collect();
    let scorer = move |pairs: &[(usize, usize)]| -> Result<Vec<f32>, RetrievalError> {
        Ok(pairs.iter().enumerate().map(|(i, _)| scores[i]).collect())
    };
    let out = PairwiseReranker::new(2, scorer)
        .unwrap()
        .process(original.clone())
        .unwrap();
    for q in 0..original.n_queries() {
        let (a, b) = (original.retrieved_ids(q), out.retrieved_ids(q));
        assert_eq!(a.len(), b.len());
        let h = a.len().min(2);
        let (mut ha, mut hb) = (a[..h].to_vec(), b[..h].to_vec());
        ha.sort();
        hb.sort();
        assert_eq!(ha, hb);
        assert_eq!(&a[h..], &b[h..]);
        assert!(out.distances(q).windows(2).all(|w| w[0] <= w[1]));
    }
    assert_eq!(out.gt_ids(2), Some(&[0][..]));
}

/// A projected-distance siamese model.
#[derive(Module, Debug)]
struct ProjDist {
    lin: Linear,
}

impl PairwiseModel for ProjDist {
    fn forward_pair(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
        let [b, c, h, w] = x1.dims();
        let a = self.lin.forward(x1.reshape([b, c * h * w]));
        let z = self.lin.forward(x2.reshape([b, c * h * w]));
        (a - z).square().sum_dim(1).sqrt().squeeze_dim(1)
    }
}

/// The model scorer maps positions to dataset indices and batches: its scores equal the model
/// applied to each pair alone.
#[test]
fn model_scorer_batches_match_single_pairs() {
    let device = test_device();
    let model = ProjDist {
        lin: LinearConfig::new(3, 2).init(&device),
    };
    let items: Vec<[f32; 3]> = (0..6)
        .map(|i| [i as f32, (i * i) as f32 * 0.1, 1.0 - i as f32])
        .collect();
    let dev = device.clone();
    let it = items.clone();
    let load = move |ids: &[usize]| -> Result<Tensor<4>, RetrievalError> {
        let flat: Vec<f32> = ids.iter().flat_map(|&i| it[i]).collect();
        Ok(Tensor::from_data(
            TensorData::new(flat, [ids.len(), 3, 1, 1]),
            &dev,
        ))
    };
    let pairs = [(0, 0), (0, 2), (1, 1), (1, 0), (0, 1)];
    let (qids, gids) = (vec![4, 1], vec![0, 2, 5]);
    let direct: Vec<f32> = pairs
        .iter()
        .map(|&(q, g)| {
            let x = |i: usize| {
                Tensor::<4>::from_data(TensorData::new(items[i].to_vec(), [1, 3, 1, 1]), &device)
            };
            model
                .predict(x(qids[q]), x(gids[g]))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()[0]
        })
        .collect();
    for bs in [1, 2, 5] {
        let scorer = ModelPairScorer::new(
            model.clone(),
            Box::new(load.clone()),
            qids.clone(),
            gids.clone(),
            bs,
        )
        .unwrap();
        let got = scorer.score(&pairs).unwrap();
        for (g, d) in got.iter().zip(&direct) {
            assert!((g - d).abs() < 1e-5, "bs {bs}: {got:?} vs {direct:?}");
        }
    }
    let scorer = ModelPairScorer::new(model, Box::new(load), qids, gids, 2).unwrap();
    assert!(scorer.score(&[(0, 9)]).is_err());
}
