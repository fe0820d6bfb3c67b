//! `EmbeddingMetrics` on OML's own exact cases, its error cases, and against a brute-force
//! oracle (full distance matrix, full sort, the formulas written out plainly).

use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_interfaces::{BasicMetric, MetricError, OVERALL, RetrievalError, RetrievalResults};
use oml_metrics::{
    EmbeddingMetrics, EvalHooks, KnnConfig, MetricsConfig, NoGtPrecision, QueryGalleryMeta,
    calc_retrieval_metrics, evaluate,
};
use oml_retrieval::PairwiseReranker;
use proptest::prelude::*;

fn one_hot(i: usize, d: usize) -> Vec<f32> {
    (0..d).map(|j| if i == j { 1.0 } else { 0.0 }).collect()
}

fn oml_case(hot: [usize; 6], cats: [&str; 6]) -> (Vec<f32>, QueryGalleryMeta) {
    let emb: Vec<f32> = hot.iter().flat_map(|&h| one_hot(h, 8)).collect();
    let mut meta = QueryGalleryMeta::new(
        vec![0, 1, 1, 0, 1, 1],
        vec![true, true, true, false, false, false],
        vec![false, false, false, true, true, true],
    );
    meta.categories = Some(cats.iter().map(|c| c.to_string()).collect());
    (emb, meta)
}

/// OML's trivial post-processor (`LinearTrivialDistanceSiamese`, identity): Euclidean distance.
fn trivial_reranker(
    emb: Vec<f32>,
    q: Vec<usize>,
    g: Vec<usize>,
    top_n: usize,
) -> Box<PairwiseReranker<impl oml_retrieval::PairScorer>> {
    let scorer = move |pairs: &[(usize, usize)]| -> Result<Vec<f32>, RetrievalError> {
        Ok(pairs
            .iter()
            .map(|&(a, b)| {
                oml_retrieval::euclidean(&emb[q[a] * 8..q[a] * 8 + 8], &emb[g[b] * 8..g[b] * 8 + 8])
            })
            .collect())
    };
    Box::new(PairwiseReranker::new(top_n, scorer).unwrap())
}

fn run(emb: &[f32], meta: QueryGalleryMeta, config: MetricsConfig, pp: bool) -> EmbeddingMetrics {
    let device = test_device();
    let mut m = EmbeddingMetrics::new(meta, config, &device).unwrap();
    if pp {
        m = m.with_postprocessor(
            trivial_reranker(emb.to_vec(), vec![0, 1, 2], vec![3, 4, 5], 6),
            6,
        );
    }
    for epoch in 0..2 {
        m.setup(6);
        for (chunk, start) in [(4usize, 0usize), (2, 4)] {
            let t = Tensor::<2>::from_data(
                TensorData::new(emb[start * 8..(start + chunk) * 8].to_vec(), [chunk, 8]),
                &test_device(),
            );
            m.update(t, &(start..start + chunk).collect::<Vec<_>>())
                .unwrap();
        }
        let r = m.compute().unwrap();
        if epoch == 1 {
            assert_eq!(Some(&r), m.evaluation().map(|e| &e.report), "epochs agree");
        }
    }
    m
}

/// OML's `imperfect_case` with the full metric set checked against OML 4.0 (reference §1.6).
#[test]
fn oml_imperfect_case_all_metrics() {
    let (emb, meta) = oml_case([0, 1, 3, 0, 1, 1], ["10", "20", "20", "10", "20", "20"]);
    let config = MetricsConfig {
        cmc_top_k: vec![1, 2],
        precision_top_k: vec![2],
        map_top_k: vec![2],
        fmr_vals: vec![0.5],
        pcf_variance: vec![0.5],
        ..MetricsConfig::default()
    };
    for pp in [false, true] {
        let m = run(&emb, meta.clone(), config.clone(), pp);
        let r = &m.evaluation().unwrap().report;
        let g = |c: &str, m: &str, p: &str| r.get(c, m, p).unwrap();
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        close(g(OVERALL, "cmc", "1"), 2.0 / 3.0);
        close(g(OVERALL, "cmc", "2"), 1.0);
        close(g(OVERALL, "precision", "2"), 2.5 / 3.0);
        close(g(OVERALL, "map", "2"), 2.5 / 3.0);
        close(g(OVERALL, "pcf", "0.5"), 0.125);
        close(g(OVERALL, "fnmr@fmr", "0.5"), 0.4);
        for metric in [("cmc", "1"), ("cmc", "2"), ("precision", "2"), ("map", "2")] {
            close(g("10", metric.0, metric.1), 1.0);
        }
        close(g("10", "pcf", "0.5"), 0.375);
        close(g("20", "cmc", "1"), 0.5);
        close(g("20", "precision", "2"), 0.75);
        close(g("20", "map", "2"), 0.75);
        assert!(
            !r.categories["10"].contains_key("fnmr@fmr"),
            "fnmr@fmr is OVERALL only"
        );
        // One-hot distances are 0 or sqrt(2).
        let rr = m.retrieval_results().unwrap();
        for q in 0..3 {
            assert!(
                rr.distances(q)
                    .iter()
                    .all(|&d| d == 0.0 || (d - 2f32.sqrt()).abs() < 1e-6)
            );
        }
    }
}

/// OML's perfect and worst cases (cmc@1 per category) and `test_worst_k`.
#[test]
fn oml_perfect_worst_and_worst_k_cases() {
    let cfg = MetricsConfig {
        cmc_top_k: vec![1],
        precision_top_k: vec![],
        map_top_k: vec![],
        pcf_variance: vec![],
        ..MetricsConfig::default()
    };
    let (emb, meta) = oml_case(
        [0, 1, 1, 0, 1, 1],
        ["cat", "dog", "dog", "cat", "dog", "dog"],
    );
    let m = run(&emb, meta, cfg.clone(), true);
    for c in [OVERALL, "cat", "dog"] {
        assert_eq!(m.evaluation().unwrap().report.get(c, "cmc", "1"), Some(1.0));
    }
    let (emb, meta) = oml_case([1, 0, 0, 0, 1, 1], ["10", "20", "20", "10", "20", "20"]);
    let m = run(&emb, meta, cfg.clone(), true);
    for c in [OVERALL, "10", "20"] {
        assert_eq!(m.evaluation().unwrap().report.get(c, "cmc", "1"), Some(0.0));
    }
    let emb: Vec<f32> = [0, 1, 2, 0, 5, 5]
        .iter()
        .flat_map(|&h| one_hot(h, 8))
        .collect();
    let meta = QueryGalleryMeta::new(
        vec![0, 1, 2, 0, 1, 2],
        vec![true, true, true, false, false, false],
        vec![false, false, false, true, true, true],
    );
    let m = run(&emb, meta, cfg, true);
    let mut worst = m.worst_queries("cmc", "1", 2).unwrap();
    worst.sort();
    assert_eq!(worst, vec![1, 2]);
    assert_eq!(m.per_query("cmc", "1").unwrap(), &[1.0, 0.0, 0.0]);
}

/// `test_metrics_retrieval.py::test_categories_in_metrics` through `calc_retrieval_metrics`.
#[test]
fn oml_categories_in_metrics() {
    let rr = RetrievalResults::new(
        vec![vec![0.1, 0.2, 0.3]; 3],
        vec![vec![0, 5, 4], vec![2, 1, 5], vec![2, 1, 5]],
        Some(vec![vec![0, 10, 4], vec![2, 3], vec![2, 3]]),
    )
    .unwrap();
    let config = MetricsConfig {
        cmc_top_k: vec![1],
        precision_top_k: vec![3, 5],
        map_top_k: vec![],
        pcf_variance: vec![],
        ..MetricsConfig::default()
    };
    let cats: Vec<String> = ["cat", "dog", "dog"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (r, _) = calc_retrieval_metrics(&rr, Some(&cats), &config).unwrap();
    let want = (2.0 / 3.0 + 2.0 * 0.5) / 3.0;
    for k in ["3", "5"] {
        assert!((r.get(OVERALL, "precision", k).unwrap() - want).abs() < 1e-12);
        assert!((r.get("cat", "precision", k).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.get("dog", "precision", k).unwrap() - 0.5).abs() < 1e-12);
    }
    assert_eq!(r.get(OVERALL, "cmc", "1"), Some(1.0));
    let (r, _) = calc_retrieval_metrics(&rr, None, &config).unwrap();
    assert_eq!(r.categories.len(), 1);
}

#[test]
fn bad_parameters_and_data_are_errors() {
    let device = test_device();
    let meta = QueryGalleryMeta::new(vec![0, 0, 1], vec![true; 3], vec![true; 3]);
    let bad = |c: MetricsConfig| EmbeddingMetrics::new(meta.clone(), c, &device).unwrap_err();
    let e = bad(MetricsConfig {
        cmc_top_k: vec![1, 0],
        ..MetricsConfig::default()
    });
    assert!(
        matches!(
            e,
            MetricError::InvalidParameter {
                name: "cmc_top_k",
                ..
            }
        ),
        "{e}"
    );
    let e = bad(MetricsConfig {
        map_top_k: vec![0],
        ..MetricsConfig::default()
    });
    assert!(matches!(
        e,
        MetricError::InvalidParameter {
            name: "map_top_k",
            ..
        }
    ));
    let e = bad(MetricsConfig {
        fmr_vals: vec![1.5],
        ..MetricsConfig::default()
    });
    assert!(matches!(
        e,
        MetricError::InvalidParameter {
            name: "fmr_vals",
            ..
        }
    ));
    let e = bad(MetricsConfig {
        pcf_variance: vec![-0.1],
        ..MetricsConfig::default()
    });
    assert!(matches!(
        e,
        MetricError::InvalidParameter {
            name: "pcf_variance",
            ..
        }
    ));
    let e = bad(MetricsConfig {
        fmr_vals: vec![f64::NAN],
        ..MetricsConfig::default()
    });
    assert!(matches!(
        e,
        MetricError::InvalidParameter {
            name: "fmr_vals",
            ..
        }
    ));

    let no_q = QueryGalleryMeta::new(vec![0, 0], vec![false; 2], vec![true; 2]);
    assert!(
        EmbeddingMetrics::new(no_q, MetricsConfig::default(), &device)
            .unwrap_err()
            .to_string()
            .contains("no query")
    );
    let no_g = QueryGalleryMeta::new(vec![0, 0], vec![true; 2], vec![false; 2]);
    assert!(
        EmbeddingMetrics::new(no_g, MetricsConfig::default(), &device)
            .unwrap_err()
            .to_string()
            .contains("no gallery")
    );
    let unlabeled = QueryGalleryMeta {
        labels: None,
        ..meta.clone()
    };
    assert!(EmbeddingMetrics::new(unlabeled, MetricsConfig::default(), &device).is_err());

    let mut m = EmbeddingMetrics::new(meta.clone(), MetricsConfig::default(), &device).unwrap();
    m.setup(3);
    m.update_host(&[0.0, 1.0], 2, &[1]).unwrap();
    assert_eq!(
        m.compute().unwrap_err(),
        MetricError::Incomplete {
            seen: 1,
            expected: 3
        }
    );
    assert_eq!(
        m.update_host(&[0.0, 1.0], 2, &[3]).unwrap_err(),
        MetricError::IndexOutOfRange {
            index: 3,
            num_samples: 3
        }
    );
    assert!(
        m.update_host(&[0.0, 1.0, 2.0], 3, &[0]).is_err(),
        "dimension changed"
    );
    assert!(
        m.update_host(&[0.0, 1.0, 2.0], 2, &[0]).is_err(),
        "ragged batch"
    );
    m.update_host(&[0.0, f32::NAN, 5.0, 5.0], 2, &[0, 2])
        .unwrap();
    let e = m.compute().unwrap_err().to_string();
    assert!(
        e.contains("item 0") && e.contains("column 1") && e.contains("NaN"),
        "{e}"
    );
    let e = evaluate(
        &[0.0, 1.0, f32::INFINITY],
        1,
        &meta,
        &MetricsConfig::default(),
        &device,
        &EvalHooks::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("item 2") && e.contains("inf"), "{e}");
}

/// The first embedding given for an index is kept, as OML's accumulator does.
#[test]
fn repeated_indices_keep_the_first_embedding() {
    let device = test_device();
    let meta = QueryGalleryMeta::new(vec![0, 0, 1], vec![true; 3], vec![true; 3]);
    let cfg = MetricsConfig {
        pcf_variance: vec![],
        ..MetricsConfig::default()
    };
    let mut m = EmbeddingMetrics::new(meta, cfg, &device).unwrap();
    m.update_host(&[0.0, 1.0, 10.0], 1, &[0, 1, 2]).unwrap();
    m.update_host(&[100.0], 1, &[1]).unwrap();
    m.compute().unwrap();
    assert_eq!(m.retrieval_results().unwrap().distances(0), &[1.0, 10.0]);
}

// ---------- brute-force oracle ----------

#[derive(Debug, Clone)]
struct Case {
    dim: usize,
    emb: Vec<f32>,
    labels: Vec<i64>,
    is_query: Vec<bool>,
    is_gallery: Vec<bool>,
    seq: Option<Vec<String>>,
    cats: Option<Vec<String>>,
    ks: Vec<usize>,
    fmr: Vec<f64>,
    block: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        2usize..30,
        1usize..4,
        any::<bool>(),
        any::<bool>(),
        1usize..6,
    )
        .prop_flat_map(|(n, dim, with_seq, with_cat, block)| {
            (
                proptest::collection::vec(-2i8..=2, n * dim),
                proptest::collection::vec(0i64..4, n),
                proptest::collection::vec(0u8..4, n),
                proptest::collection::vec(0u8..5, n),
                proptest::collection::vec(0u8..2, n),
                proptest::collection::vec(1usize..40, 1..4),
                proptest::collection::vec(0.0f64..=1.0, 0..3),
            )
                .prop_map(move |(vals, labels, roles, seq, cats, ks, fmr)| {
                    // roles: 0 query only, 1 gallery only, 2/3 both; at least one of each kind.
                    let mut is_query: Vec<bool> = roles.iter().map(|&r| r != 1).collect();
                    let mut is_gallery: Vec<bool> = roles.iter().map(|&r| r != 0).collect();
                    is_query[0] = true;
                    is_gallery[n - 1] = true;
                    if n > 1 {
                        is_gallery[0] |= roles[0] == 3;
                        is_query[n - 1] |= roles[n - 1] == 3;
                    }
                    Case {
                        dim,
                        emb: vals.into_iter().map(f32::from).collect(),
                        labels,
                        is_query,
                        is_gallery,
                        seq: with_seq.then(|| seq.iter().map(|s| format!("s{s}")).collect()),
                        cats: with_cat.then(|| cats.iter().map(|c| format!("c{c}")).collect()),
                        ks,
                        fmr,
                        block,
                    }
                })
        })
}

struct OracleQuery {
    rel: Vec<bool>,
    n_gt: usize,
}

/// Full matrix, full sort by (distance, gallery position), relevance by label.
fn oracle(c: &Case) -> (Vec<OracleQuery>, Vec<f64>, Vec<f64>) {
    let n = c.labels.len();
    let d = c.dim;
    let g_ids: Vec<usize> = (0..n).filter(|&i| c.is_gallery[i]).collect();
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    let qs = (0..n)
        .filter(|&i| c.is_query[i])
        .map(|qi| {
            let mut row: Vec<(f64, usize, bool)> = g_ids
                .iter()
                .enumerate()
                .filter(|&(_, &gi)| gi != qi && c.seq.as_ref().is_none_or(|s| s[gi] != s[qi]))
                .map(|(p, &gi)| {
                    let dist = (0..d)
                        .map(|k| ((c.emb[qi * d + k] - c.emb[gi * d + k]) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    (dist, p, c.labels[gi] == c.labels[qi])
                })
                .collect();
            row.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for r in &row {
                if r.2 { pos.push(r.0) } else { neg.push(r.0) }
            }
            OracleQuery {
                n_gt: row.iter().filter(|r| r.2).count(),
                rel: row.iter().map(|r| r.2).collect(),
            }
        })
        .collect();
    (qs, pos, neg)
}

fn oracle_metric(name: &str, q: &OracleQuery, k: usize) -> f64 {
    let top: Vec<bool> = q.rel.iter().take(k).copied().collect();
    if q.rel.is_empty() {
        return if q.n_gt == 0 { 1.0 } else { 0.0 };
    }
    let hits = top.iter().filter(|&&x| x).count() as f64;
    match name {
        "cmc" => {
            if hits > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        "precision" => {
            if q.n_gt == 0 {
                0.0
            } else {
                hits / q.n_gt.min(top.len()) as f64
            }
        }
        "map" => {
            let mut s = 0.0;
            for i in 0..top.len() {
                if top[i] {
                    s += top[..=i].iter().filter(|&&x| x).count() as f64 / (i + 1) as f64;
                }
            }
            if hits == 0.0 { 0.0 } else { s / hits }
        }
        "ndcg" => {
            if q.n_gt == 0 {
                return 0.0;
            }
            let dcg: f64 = (0..top.len())
                .filter(|&i| top[i])
                .map(|i| 1.0 / ((i + 2) as f64).log2())
                .sum();
            let idcg: f64 = (0..k.min(q.n_gt))
                .map(|i| 1.0 / ((i + 2) as f64).log2())
                .sum();
            dcg / idcg
        }
        "mrr" => top
            .iter()
            .position(|&x| x)
            .map_or(0.0, |p| 1.0 / (p + 1) as f64),
        "map_at_r" | "r_precision" => {
            let r = q.n_gt;
            if r == 0 {
                return 0.0;
            }
            let t: Vec<bool> = q.rel.iter().take(r).copied().collect();
            if name == "r_precision" {
                return t.iter().filter(|&&x| x).count() as f64 / r as f64;
            }
            (0..t.len())
                .filter(|&i| t[i])
                .map(|i| t[..=i].iter().filter(|&&x| x).count() as f64 / (i + 1) as f64)
                .sum::<f64>()
                / r as f64
        }
        _ => unreachable!(),
    }
}

/// numpy's linear quantile on a full sort.
fn np_quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let h = (s.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    let t = h - lo as f64;
    let diff = s[hi] - s[lo];
    if t >= 0.5 {
        s[hi] - diff * (1.0 - t)
    } else {
        s[lo] + diff * t
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn embedding_metrics_equal_brute_force(c in case()) {
        let device = test_device();
        let mut meta = QueryGalleryMeta::new(c.labels.clone(), c.is_query.clone(), c.is_gallery.clone());
        meta.sequences = c.seq.clone();
        meta.categories = c.cats.clone();
        let (qs, pos, neg) = oracle(&c);
        for exact_max in [u64::MAX, 0] {
            let config = MetricsConfig {
                cmc_top_k: c.ks.clone(), precision_top_k: c.ks.clone(), map_top_k: c.ks.clone(),
                ndcg_top_k: c.ks.clone(), mrr_top_k: c.ks.clone(), map_at_r: true, r_precision: true,
                fmr_vals: c.fmr.clone(), pcf_variance: vec![], no_gt_precision: NoGtPrecision::Zero,
                knn: KnnConfig::with_block_size(c.block), fnmr_exact_max_pairs: exact_max,
                ..MetricsConfig::default()
            };
            let e = evaluate(&c.emb, c.dim, &meta, &config, &device, &EvalHooks::default()).unwrap();
            for name in ["cmc", "precision", "map", "ndcg", "mrr"] {
                for &k in &c.ks {
                    let got = e.per_query.get(name, &k.to_string()).unwrap();
                    for (qi, q) in qs.iter().enumerate() {
                        let want = oracle_metric(name, q, k);
                        prop_assert!((got[qi] - want).abs() < 1e-12, "{}@{} q{}: {} vs {}", name, k, qi, got[qi], want);
                    }
                    let want_mean = qs.iter().map(|q| oracle_metric(name, q, k)).sum::<f64>() / qs.len() as f64;
                    prop_assert!((e.report.get(OVERALL, name, &k.to_string()).unwrap() - want_mean).abs() < 1e-12);
                }
            }
            for name in ["map_at_r", "r_precision"] {
                let got = e.per_query.get(name, "R").unwrap();
                for (qi, q) in qs.iter().enumerate() {
                    prop_assert!((got[qi] - oracle_metric(name, q, 0)).abs() < 1e-12, "{} q{}", name, qi);
                }
            }
            for &f in &c.fmr {
                let got = e.report.get(OVERALL, "fnmr@fmr", &oml_metrics::fraction_key(f)).unwrap();
                if pos.is_empty() || neg.is_empty() {
                    prop_assert!(got.is_nan());
                } else {
                    // Our distances are f32 (exact roots of the integer squared distances, rounded).
                    let negf: Vec<f64> = neg.iter().map(|&x| (x as f32) as f64).collect();
                    let thr = np_quantile(&negf, f);
                    let want = pos.iter().filter(|&&p| (p as f32) as f64 >= thr).count() as f64 / pos.len() as f64;
                    prop_assert!((got - want).abs() < 1e-12, "fnmr@{} (exact_max {}): {} vs {}", f, exact_max, got, want);
                }
            }
            // Categories: means over each query category's queries.
            if let Some(cats) = &c.cats {
                let q_ids: Vec<usize> = (0..c.labels.len()).filter(|&i| c.is_query[i]).collect();
                for cat in q_ids.iter().map(|&i| &cats[i]).collect::<std::collections::BTreeSet<_>>() {
                    let k = c.ks[0];
                    let sel: Vec<f64> = q_ids.iter().zip(&qs).filter(|(i, _)| &cats[**i] == cat)
                        .map(|(_, q)| oracle_metric("map", q, k)).collect();
                    let want = sel.iter().sum::<f64>() / sel.len() as f64;
                    prop_assert!((e.report.get(cat, "map", &k.to_string()).unwrap() - want).abs() < 1e-12);
                }
            }
        }
    }
}

/// Streamed fnmr@fmr histograms equal the exact path on continuous data at a size where the
/// refinement has real work (tens of thousands of pairs, shared and separate query/gallery).
#[test]
fn streamed_fnmr_equals_exact_on_random_data() {
    let device = test_device();
    let (n, dim) = (400, 8);
    let mut state = 2024u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f32 / (1u64 << 31) as f32 - 0.5
    };
    let emb: Vec<f32> = (0..n * dim).map(|_| next()).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 13).collect();
    let fmr = vec![0.0, 0.001, 0.1, 0.37, 0.5, 0.999, 1.0];
    for split in [false, true] {
        let is_q: Vec<bool> = (0..n).map(|i| !split || i % 3 != 0).collect();
        let is_g: Vec<bool> = (0..n).map(|i| !split || i % 3 != 1).collect();
        let meta = QueryGalleryMeta::new(labels.clone(), is_q, is_g);
        let run = |exact: u64, block: usize| {
            let cfg = MetricsConfig {
                fmr_vals: fmr.clone(),
                pcf_variance: vec![],
                fnmr_exact_max_pairs: exact,
                knn: KnnConfig::with_block_size(block),
                ..MetricsConfig::default()
            };
            evaluate(&emb, dim, &meta, &cfg, &device, &EvalHooks::default())
                .unwrap()
                .report
        };
        let exact = run(u64::MAX, 4096);
        for block in [4096, 37] {
            let streamed = run(0, block);
            for &f in &fmr {
                let k = oml_metrics::fraction_key(f);
                assert_eq!(
                    exact.get(OVERALL, "fnmr@fmr", &k),
                    streamed.get(OVERALL, "fnmr@fmr", &k),
                    "fmr {f}, block {block}"
                );
            }
        }
    }
}

/// The training pipeline keeps the metric across threads.
#[test]
fn embedding_metrics_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<EmbeddingMetrics>();
    check::<oml_metrics::Evaluation>();
}
