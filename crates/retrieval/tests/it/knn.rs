//! The blocked kNN against a brute-force oracle (full distance matrix, full sort), and OML's
//! exact kNN case.

use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_retrieval::{
    ExactKnn, GroundTruth, KnnConfig, QueryGalleryMeta, Selection, results_from_embeddings,
};
use proptest::prelude::*;

/// The oracle: every (query, gallery) distance in f64, masked items dropped, sorted by
/// (distance, gallery position), first `top_n` kept.
fn oracle(
    emb: &[f32],
    dim: usize,
    q_ids: &[usize],
    g_ids: &[usize],
    seq: Option<&[u32]>,
    same: bool,
    top_n: usize,
) -> Vec<Vec<(f64, usize)>> {
    q_ids
        .iter()
        .map(|&qi| {
            let mut row: Vec<(f64, usize)> = g_ids
                .iter()
                .enumerate()
                .filter(|&(_, &gi)| !(same && gi == qi) && seq.is_none_or(|s| s[gi] != s[qi]))
                .map(|(p, &gi)| {
                    let d: f64 = (0..dim)
                        .map(|c| (emb[qi * dim + c] as f64 - emb[gi * dim + c] as f64).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    (d, p)
                })
                .collect();
            row.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            row.truncate(top_n);
            row
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    dim: usize,
    emb: Vec<f32>,
    q_ids: Vec<usize>,
    g_ids: Vec<usize>,
    seq: Option<Vec<u32>>,
    top_n: usize,
    block: usize,
}

/// Small integer embeddings (exact in f32, so ties are real ties), random query/gallery
/// subsets in random order (or identical: the symmetric path), optional sequences.
fn case() -> impl Strategy<Value = Case> {
    (
        1usize..40,
        1usize..5,
        0u8..3,
        any::<bool>(),
        1usize..9,
        1usize..50,
    )
        .prop_flat_map(|(n, dim, mode, with_seq, block, top_n)| {
            (
                proptest::collection::vec(-2i8..=2, n * dim),
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                proptest::collection::vec(0u32..4, n),
                proptest::collection::vec(any::<bool>(), n),
            )
                .prop_map(move |(vals, qperm, gperm, seqv, flags)| {
                    let emb: Vec<f32> = vals.into_iter().map(f32::from).collect();
                    let (q_ids, g_ids) = match mode {
                        // Every item both query and gallery, in dataset order.
                        0 => ((0..n).collect(), (0..n).collect()),
                        // Overlapping subsets in random order.
                        1 => {
                            let kq = 1 + qperm[0] % n;
                            let kg = 1 + gperm[0] % n;
                            (qperm[..kq].to_vec(), gperm[..kg].to_vec())
                        }
                        // Disjoint split by flags.
                        _ => {
                            let q: Vec<usize> = (0..n).filter(|&i| flags[i]).collect();
                            let g: Vec<usize> = (0..n).filter(|&i| !flags[i]).collect();
                            (q, g)
                        }
                    };
                    Case {
                        n,
                        dim,
                        emb,
                        q_ids,
                        g_ids,
                        seq: with_seq.then_some(seqv),
                        top_n,
                        block,
                    }
                })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, .. ProptestConfig::default() })]

    #[test]
    fn blocked_knn_equals_brute_force(c in case()) {
        let device = test_device();
        let want = oracle(&c.emb, c.dim, &c.q_ids, &c.g_ids, c.seq.as_deref(), true, c.top_n);
        // Both selection paths, whatever the device: host heaps and device top-k.
        for selection in [Selection::Host, Selection::Device] {
            let knn = ExactKnn::new(&c.emb, c.dim, &c.q_ids, &c.g_ids, c.seq.as_deref(), &device,
                &KnnConfig { block_size: c.block, selection }).unwrap();
            let got = knn.search(c.top_n, None, None).unwrap();
            prop_assert_eq!(got.n_queries(), c.q_ids.len());
            for (q, w) in want.iter().enumerate() {
                let ids: Vec<usize> = w.iter().map(|p| p.1).collect();
                prop_assert_eq!(&got.ids[q], &ids, "{:?} query {} of {:?}", selection, q, c);
                for (a, b) in got.distances[q].iter().zip(w) {
                    prop_assert!((*a as f64 - b.0).abs() < 1e-6);
                }
            }
        }
        // Ground truth counts against the oracle's full (top_n = ∞) lists.
        let labels: Vec<i64> = (0..c.n).map(|i| (i % 3) as i64).collect();
        let gt = GroundTruth::new(&labels, &c.q_ids, &c.g_ids, c.seq.as_deref()).unwrap();
        let full = oracle(&c.emb, c.dim, &c.q_ids, &c.g_ids, c.seq.as_deref(), true, usize::MAX);
        for (q, row) in full.iter().enumerate() {
            let mut rel: Vec<usize> = row.iter().map(|p| p.1)
                .filter(|&p| labels[c.g_ids[p]] == labels[c.q_ids[q]]).collect();
            rel.sort();
            prop_assert_eq!(gt.n_gt()[q], rel.len());
            prop_assert_eq!(&gt.gt_ids()[q], &rel);
        }
    }

    #[test]
    fn separated_sets_equal_brute_force(c in case()) {
        // Same data as two separate sets: no self mask unless item keys say so.
        let device = test_device();
        let d = c.dim;
        let q: Vec<f32> = c.q_ids.iter().flat_map(|&i| c.emb[i * d..(i + 1) * d].to_vec()).collect();
        let g: Vec<f32> = c.g_ids.iter().flat_map(|&i| c.emb[i * d..(i + 1) * d].to_vec()).collect();
        let sq: Option<(Vec<u32>, Vec<u32>)> = c.seq.as_ref().map(|s| {
            (c.q_ids.iter().map(|&i| s[i]).collect(), c.g_ids.iter().map(|&i| s[i]).collect())
        });
        let keys = (c.q_ids.iter().map(|&i| i as u64).collect::<Vec<_>>(),
                    c.g_ids.iter().map(|&i| i as u64).collect::<Vec<_>>());
        for (with_keys, selection) in [(false, Selection::Host), (true, Selection::Host),
                                       (false, Selection::Device), (true, Selection::Device)] {
            let knn = ExactKnn::new_qg(&q, &g, d, sq.as_ref().map(|(a, b)| (a.as_slice(), b.as_slice())),
                with_keys.then_some((keys.0.as_slice(), keys.1.as_slice())), &device,
                &KnnConfig { block_size: c.block, selection }).unwrap();
            let got = knn.search(c.top_n, None, None).unwrap();
            let want = oracle(&c.emb, d, &c.q_ids, &c.g_ids, c.seq.as_deref(), with_keys, c.top_n);
            for (qi, w) in want.iter().enumerate() {
                let ids: Vec<usize> = w.iter().map(|p| p.1).collect();
                prop_assert_eq!(&got.ids[qi], &ids);
            }
        }
    }
}

/// Continuous random data (no exact ties): distances agree to float precision.
#[test]
fn random_gaussian_embeddings_match_brute_force() {
    let device = test_device();
    let (n, dim) = (300, 16);
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
    };
    let emb: Vec<f32> = (0..n * dim).map(|_| next()).collect();
    let ids: Vec<usize> = (0..n).collect();
    for (block, selection) in [
        (7, Selection::Host),
        (64, Selection::Host),
        (4096, Selection::Host),
        (64, Selection::Device),
        (4096, Selection::Device),
    ] {
        let knn = ExactKnn::new(
            &emb,
            dim,
            &ids,
            &ids,
            None,
            &device,
            &KnnConfig {
                block_size: block,
                selection,
            },
        )
        .unwrap();
        let got = knn.search(10, None, None).unwrap();
        let want = oracle(&emb, dim, &ids, &ids, None, true, 10);
        for (q, w) in want.iter().enumerate() {
            let ids_w: Vec<usize> = w.iter().map(|p| p.1).collect();
            assert_eq!(got.ids[q], ids_w, "block {block}, query {q}");
            for (a, b) in got.distances[q].iter().zip(w) {
                assert!((*a as f64 - b.0).abs() < 1e-6);
            }
        }
    }
}

/// OML's `test_knn.py::test_on_exact_case`: one-hot embeddings, sequences `[0,1,2,3,3,4]`,
/// queries 0 and 3. OML leaves the order among equal distances unspecified; ours is the lower
/// gallery position first.
#[test]
fn oml_exact_knn_case() {
    let device = test_device();
    let oh = |i: usize| -> Vec<f32> { (0..4).map(|j| if i == j { 1.0 } else { 0.0 }).collect() };
    let rows: Vec<Vec<f32>> = vec![oh(0), oh(0), oh(0), oh(1), oh(1), oh(1)];
    let flat: Vec<f32> = rows.concat();
    let emb = Tensor::<2>::from_data(TensorData::new(flat, [6, 4]), &device);
    let mut meta = QueryGalleryMeta::new(
        vec![0, 0, 0, 1, 1, 1],
        vec![true, false, false, true, false, false],
        vec![true; 6],
    );
    meta.sequences = Some(
        ["0", "1", "2", "3", "3", "4"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let rr = results_from_embeddings(&emb, &meta, 10, &KnnConfig::default(), None).unwrap();
    let s2 = 2f32.sqrt();
    assert_eq!(rr.distances(0), &[0.0, 0.0, s2, s2, s2]);
    assert_eq!(rr.distances(1), &[0.0, s2, s2, s2]);
    assert_eq!(rr.retrieved_ids(0), &[1, 2, 3, 4, 5]);
    assert_eq!(rr.retrieved_ids(1), &[5, 0, 1, 2]);
    assert_eq!(rr.gt_ids(0), Some(&[1, 2][..]));
    assert_eq!(rr.gt_ids(1), Some(&[5][..]));
}

/// A query whose whole gallery is masked gets nothing; `top_n` beyond the gallery is clipped.
#[test]
fn empty_and_clipped_results() {
    let device = test_device();
    let emb = [0.0f32, 1.0, 2.0];
    let ids = [0usize, 1, 2];
    let seq = [5u32, 5, 6];
    let knn = ExactKnn::new(
        &emb,
        1,
        &ids,
        &[0, 1],
        Some(&seq),
        &device,
        &KnnConfig::default(),
    )
    .unwrap();
    let got = knn.search(100, None, None).unwrap();
    assert_eq!(got.ids, vec![vec![], vec![], vec![1, 0]]);
    assert_eq!(got.distances[2], vec![1.0, 2.0]);
    let bad = ExactKnn::new(
        &[0.0, f32::NAN],
        1,
        &[0],
        &[1],
        None,
        &device,
        &KnnConfig::default(),
    );
    assert!(bad.unwrap_err().to_string().contains("row 1, column 0"));
}

/// Separate query and gallery sets (OML's `from_embeddings_qg`): sequences are compared across
/// the sides, ground truth needs labels on both.
#[test]
fn separated_results_with_sequences_and_ground_truth() {
    use oml_retrieval::{SideMeta, results_from_embeddings_qg};
    let device = test_device();
    let q = Tensor::<2>::from_data([[0.0], [10.0]], &device);
    let g = Tensor::<2>::from_data([[0.1], [0.2], [9.0]], &device);
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    let qm = SideMeta {
        labels: Some(vec![0, 1]),
        sequences: s(&["a", "z"]),
    };
    let gm = SideMeta {
        labels: Some(vec![0, 0, 1]),
        sequences: s(&["a", "b", "c"]),
    };
    let rr = results_from_embeddings_qg(&q, &g, &qm, &gm, 5, &KnnConfig::default(), None).unwrap();
    assert_eq!(rr.retrieved_ids(0), &[1, 2]);
    assert_eq!(rr.gt_ids(0), Some(&[1][..]));
    assert_eq!(rr.retrieved_ids(1), &[2, 1, 0]);
    assert_eq!(rr.gt_ids(1), Some(&[2][..]));
    let unlabeled = SideMeta {
        labels: None,
        sequences: None,
    };
    let rr = results_from_embeddings_qg(&q, &g, &unlabeled, &gm, 1, &KnnConfig::default(), None)
        .unwrap();
    assert!(!rr.has_gt());
    assert_eq!(rr.retrieved_ids(0), &[0]);
}

/// The types the training pipeline holds across threads.
#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ExactKnn>();
    check::<GroundTruth>();
    check::<oml_retrieval::Neighbours>();
}
