//! [`EmbeddingMetrics`] (OML's `EmbeddingMetrics`) and the one-call [`evaluate`] behind it.

use crate::fnmr::{FnmrVisitor, finish_fnmr};
use crate::functional::{
    NoGtPrecision, check_fractions, check_top_k, cmc_at_k, map_at_k, map_at_r, mean, mrr_at_k,
    ndcg_at_k, precision_at_k, r_precision,
};
use crate::pcf::calc_pcf;
use crate::rows::RowCollector;
use burn::prelude::*;
use oml_interfaces::{
    BasicMetric, MetricError, MetricsReport, OVERALL, RetrievalPostprocessor, RetrievalResults,
};
use oml_retrieval::{
    BlockVisitor, ExactKnn, GroundTruth, KnnConfig, Neighbours, Progress, QueryGalleryMeta,
    tensor_to_host, worst_queries,
};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Report name of cmc@k.
pub const CMC: &str = "cmc";
/// Report name of precision@k.
pub const PRECISION: &str = "precision";
/// Report name of map@k.
pub const MAP: &str = "map";
/// Report name of ndcg@k.
pub const NDCG: &str = "ndcg";
/// Report name of mrr@k.
pub const MRR: &str = "mrr";
/// Report name of MAP@R (parameter [`R_PARAM`]).
pub const MAP_AT_R: &str = "map_at_r";
/// Report name of R-precision (parameter [`R_PARAM`]).
pub const R_PRECISION: &str = "r_precision";
/// Report name of the principal component fraction.
pub const PCF: &str = "pcf";
/// Report name of FNMR@FMR (OVERALL only, as in OML).
pub const FNMR_AT_FMR: &str = "fnmr@fmr";
/// Parameter key of the R-based metrics.
pub const R_PARAM: &str = "R";

/// Default largest number of (query, gallery) pairs for which FNMR@FMR keeps every distance
/// (16 Mi pairs, 64 MiB); larger searches stream histograms.
pub const DEFAULT_FNMR_EXACT_MAX_PAIRS: u64 = 1 << 24;

/// Which metrics to compute. `Default` is OML's `EmbeddingMetrics` default: cmc@5,
/// precision@5, map@5, pcf@0.5.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// k of cmc@k.
    pub cmc_top_k: Vec<usize>,
    /// k of precision@k.
    pub precision_top_k: Vec<usize>,
    /// k of map@k.
    pub map_top_k: Vec<usize>,
    /// k of ndcg@k (beyond OML).
    pub ndcg_top_k: Vec<usize>,
    /// k of mrr@k (beyond OML).
    pub mrr_top_k: Vec<usize>,
    /// MAP@R (beyond OML; retrieves `max(k, n_gt)` items per query).
    pub map_at_r: bool,
    /// R-precision (beyond OML; same retrieval as MAP@R).
    pub r_precision: bool,
    /// FMR values in `[0, 1]` of fnmr@fmr.
    pub fmr_vals: Vec<f64>,
    /// Variance shares in `[0, 1]` of pcf.
    pub pcf_variance: Vec<f64>,
    /// precision@k of queries without relevant items (OML: NaN).
    pub no_gt_precision: NoGtPrecision,
    /// Only report OVERALL.
    pub return_only_overall_category: bool,
    /// kNN tuning.
    pub knn: KnnConfig,
    /// Up to this many (query, gallery) pairs, fnmr@fmr keeps every distance.
    pub fnmr_exact_max_pairs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            cmc_top_k: vec![5],
            precision_top_k: vec![5],
            map_top_k: vec![5],
            ndcg_top_k: vec![],
            mrr_top_k: vec![],
            map_at_r: false,
            r_precision: false,
            fmr_vals: vec![],
            pcf_variance: vec![0.5],
            no_gt_precision: NoGtPrecision::Zero,
            return_only_overall_category: false,
            knn: KnnConfig::default(),
            fnmr_exact_max_pairs: DEFAULT_FNMR_EXACT_MAX_PAIRS,
        }
    }
}

/// Builders: start from [`MetricsConfig::default`] (OML's metrics) or [`MetricsConfig::none`]
/// and set what to compute.
///
/// ```
/// use oml_metrics::MetricsConfig;
/// // cmc@1 and map@10 only
/// let config = MetricsConfig::none().with_cmc([1]).with_map([10]);
/// assert_eq!((config.cmc_top_k.as_slice(), config.map_top_k.as_slice()), (&[1][..], &[10][..]));
/// assert!(config.precision_top_k.is_empty() && config.pcf_variance.is_empty());
/// ```
impl MetricsConfig {
    /// No metric at all (then add the ones wanted with the `with_*` methods).
    pub fn none() -> Self {
        Self {
            cmc_top_k: vec![],
            precision_top_k: vec![],
            map_top_k: vec![],
            pcf_variance: vec![],
            ..Self::default()
        }
    }

    /// Sets the k of cmc@k.
    pub fn with_cmc(mut self, top_k: impl IntoIterator<Item = usize>) -> Self {
        self.cmc_top_k = top_k.into_iter().collect();
        self
    }

    /// Sets the k of precision@k.
    pub fn with_precision(mut self, top_k: impl IntoIterator<Item = usize>) -> Self {
        self.precision_top_k = top_k.into_iter().collect();
        self
    }

    /// Sets the k of map@k.
    pub fn with_map(mut self, top_k: impl IntoIterator<Item = usize>) -> Self {
        self.map_top_k = top_k.into_iter().collect();
        self
    }

    /// Sets the k of ndcg@k.
    pub fn with_ndcg(mut self, top_k: impl IntoIterator<Item = usize>) -> Self {
        self.ndcg_top_k = top_k.into_iter().collect();
        self
    }

    /// Sets the k of mrr@k.
    pub fn with_mrr(mut self, top_k: impl IntoIterator<Item = usize>) -> Self {
        self.mrr_top_k = top_k.into_iter().collect();
        self
    }

    /// Turns MAP@R and R-precision on or off.
    pub fn with_r_metrics(mut self, map_at_r: bool, r_precision: bool) -> Self {
        (self.map_at_r, self.r_precision) = (map_at_r, r_precision);
        self
    }

    /// Sets the FMR values of fnmr@fmr.
    pub fn with_fnmr_at_fmr(mut self, fmr: impl IntoIterator<Item = f64>) -> Self {
        self.fmr_vals = fmr.into_iter().collect();
        self
    }

    /// Sets the variance shares of pcf.
    pub fn with_pcf(mut self, variance: impl IntoIterator<Item = f64>) -> Self {
        self.pcf_variance = variance.into_iter().collect();
        self
    }

    /// Sets what precision@k gives a query without relevant items.
    pub fn with_no_gt_precision(mut self, value: NoGtPrecision) -> Self {
        self.no_gt_precision = value;
        self
    }

    /// Reports OVERALL only (no per-category metrics).
    pub fn only_overall(mut self, only: bool) -> Self {
        self.return_only_overall_category = only;
        self
    }

    /// Sets the kNN tuning.
    pub fn with_knn(mut self, knn: KnnConfig) -> Self {
        self.knn = knn;
        self
    }

    /// Checks every k is positive and every fraction lies in `[0, 1]`.
    pub fn validate(&self) -> Result<(), MetricError> {
        check_top_k("cmc_top_k", &self.cmc_top_k)?;
        check_top_k("precision_top_k", &self.precision_top_k)?;
        check_top_k("map_top_k", &self.map_top_k)?;
        check_top_k("ndcg_top_k", &self.ndcg_top_k)?;
        check_top_k("mrr_top_k", &self.mrr_top_k)?;
        check_fractions("fmr_vals", &self.fmr_vals)?;
        check_fractions("pcf_variance", &self.pcf_variance)?;
        Ok(())
    }

    /// The largest k of the rank metrics (at least 1).
    pub fn max_k(&self) -> usize {
        [
            &self.cmc_top_k,
            &self.precision_top_k,
            &self.map_top_k,
            &self.ndcg_top_k,
            &self.mrr_top_k,
        ]
        .into_iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1)
    }
}

/// The report key of a fraction parameter, as Python's `str(float)` writes it (`0.1`, `1.0`,
/// `1e-05`), so keys match OML's dictionaries.
pub fn fraction_key(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e16 {
        format!("{v:.1}")
    } else if v != 0.0 && v.abs() < 1e-4 {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{v}")
    }
}

/// Per-query values of every rank metric over all queries (OML's `metrics_unreduced` of
/// OVERALL), keyed by `(metric, parameter)`; queries in dataset order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerQueryMetrics {
    values: BTreeMap<(String, String), Vec<f64>>,
}

impl PerQueryMetrics {
    /// The values of `metric` at `param` (e.g. `("cmc", "1")`).
    pub fn get(&self, metric: &str, param: &str) -> Option<&[f64]> {
        self.values
            .get(&(metric.to_string(), param.to_string()))
            .map(Vec::as_slice)
    }

    /// Every `(metric, parameter, values)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &[f64])> {
        self.values
            .iter()
            .map(|((m, p), v)| (m.as_str(), p.as_str(), v.as_slice()))
    }

    fn insert(&mut self, metric: &str, param: String, v: Vec<f64>) {
        self.values.insert((metric.to_string(), param), v);
    }
}

/// Everything one evaluation produced.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The reduced report (OML's `compute_metrics()` output).
    pub report: MetricsReport,
    /// Per-query values of the rank metrics.
    pub per_query: PerQueryMetrics,
    /// Dataset indices of the queries (position `q` ↔ `query_ids[q]`).
    pub query_ids: Vec<usize>,
    /// Dataset indices of the gallery items.
    pub gallery_ids: Vec<usize>,
    /// The (post-processed) retrieval results, gallery positions; ground truth is in
    /// [`ground_truth`](Self::ground_truth) (`gt_ids()` materialises OML's lists).
    pub retrieval: RetrievalResults,
    /// Relevance of every (query, gallery) pair and `n_gt` per query.
    pub ground_truth: GroundTruth,
}

impl Evaluation {
    /// Queries without any relevant gallery item (their label is absent from the gallery, or
    /// only present in their own sequence): accepted, counted here.
    pub fn n_queries_without_gt(&self) -> usize {
        self.ground_truth.n_queries_without_gt()
    }

    /// The queries without any relevant gallery item, split by how the metrics score them (as
    /// OML does): `(retrieved, nothing_retrieved)`. Those that retrieved items score 0 on cmc
    /// and map (precision: 0, or NaN with `NoGtPrecision::Nan`); those that retrieved nothing
    /// (every gallery item was masked: the query itself, its sequence) score 1 on every metric.
    pub fn queries_without_gt(&self) -> (usize, usize) {
        let n_gt = self.ground_truth.n_gt();
        (0..n_gt.len())
            .filter(|&q| n_gt[q] == 0)
            .fold((0, 0), |(some, none), q| {
                if self.retrieval.retrieved_ids(q).is_empty() {
                    (some, none + 1)
                } else {
                    (some + 1, none)
                }
            })
    }

    /// The `n` worst queries (positions) by a per-query metric, smallest value first.
    pub fn worst_queries(&self, metric: &str, param: &str, n: usize) -> Option<Vec<usize>> {
        self.per_query
            .get(metric, param)
            .map(|v| worst_queries(v, n))
    }
}

/// Optional parts of an evaluation.
#[derive(Default)]
pub struct EvalHooks<'a> {
    /// A post-processor and the number of items it needs per query (OML's `top_n`).
    pub postprocessor: Option<(&'a dyn RetrievalPostprocessor, usize)>,
    /// Progress of the distance passes: `(blocks done, blocks in all)`.
    pub progress: Option<Progress<'a>>,
}

fn data_err(e: impl std::fmt::Display) -> MetricError {
    MetricError::InvalidData(e.to_string())
}

/// Checks the embeddings are `[meta.len(), dim]` and finite, naming the first bad value.
fn check_embeddings(embeddings: &[f32], dim: usize, n: usize) -> Result<(), MetricError> {
    if dim == 0 {
        return Err(MetricError::InvalidData("embedding dimension is 0".into()));
    }
    if embeddings.len() != n * dim {
        return Err(MetricError::InvalidData(format!(
            "{} embedding values for {n} items of dimension {dim}",
            embeddings.len()
        )));
    }
    if let Some(p) = embeddings.iter().position(|x| !x.is_finite()) {
        return Err(MetricError::InvalidData(format!(
            "embedding of item {} (row {}), column {} is {}: embeddings must be finite",
            p / dim,
            p / dim,
            p % dim,
            embeddings[p]
        )));
    }
    Ok(())
}

/// Computes every metric of `config` for `[meta.len(), dim]` row-major embeddings: kNN with the
/// query's own item and sequence masked, the rank metrics per query, fnmr@fmr over all pairs,
/// pcf, per category.
pub fn evaluate(
    embeddings: &[f32],
    dim: usize,
    meta: &QueryGalleryMeta,
    config: &MetricsConfig,
    device: &Device,
    hooks: &EvalHooks<'_>,
) -> Result<Evaluation, MetricError> {
    config.validate()?;
    meta.validate().map_err(data_err)?;
    let labels = meta
        .labels
        .as_deref()
        .ok_or_else(|| MetricError::InvalidData("retrieval metrics need labels".into()))?;
    check_embeddings(embeddings, dim, meta.len())?;
    let (q_ids, g_ids) = (meta.query_ids(), meta.gallery_ids());
    if q_ids.is_empty() {
        return Err(MetricError::InvalidData(
            "there is no query item (is_query is false everywhere)".into(),
        ));
    }
    if g_ids.is_empty() {
        return Err(MetricError::InvalidData(
            "there is no gallery item (is_gallery is false everywhere)".into(),
        ));
    }
    let seq = meta.sequence_codes();
    let gt = GroundTruth::new(labels, &q_ids, &g_ids, seq.as_deref()).map_err(data_err)?;
    let knn = ExactKnn::new(
        embeddings,
        dim,
        &q_ids,
        &g_ids,
        seq.as_deref(),
        device,
        &config.knn,
    )
    .map_err(data_err)?;

    let mut top_n = config.max_k();
    if let Some((_, n)) = hooks.postprocessor {
        top_n = top_n.max(n);
    }
    let q_labels: Vec<i64> = q_ids.iter().map(|&i| labels[i]).collect();
    let g_labels: Vec<i64> = g_ids.iter().map(|&i| labels[i]).collect();
    let fnmr = (!config.fmr_vals.is_empty())
        .then(|| FnmrVisitor::new(&q_labels, &g_labels, config.fnmr_exact_max_pairs));
    let visitor = fnmr.as_ref().map(|v| v as &dyn BlockVisitor);
    let found: Neighbours = if config.map_at_r || config.r_precision {
        let caps: Vec<usize> = gt.n_gt().iter().map(|&n| n.max(top_n)).collect();
        knn.search_per_query(&caps, visitor, hooks.progress)
    } else {
        knn.search(top_n, visitor, hooks.progress)
    }
    .map_err(data_err)?;

    let retrieval = match hooks.postprocessor {
        Some((pp, _)) => {
            let rr = RetrievalResults::new(found.distances, found.ids, Some(gt.gt_ids()))
                .map_err(data_err)?;
            let (d, ids, _) = pp.process(rr).map_err(data_err)?.into_parts();
            RetrievalResults::new(d, ids, None).map_err(data_err)?
        }
        None => RetrievalResults::new(found.distances, found.ids, None).map_err(data_err)?,
    };
    if retrieval.n_queries() != q_ids.len() {
        return Err(MetricError::InvalidData(format!(
            "post-processing returned {} queries for {}",
            retrieval.n_queries(),
            q_ids.len()
        )));
    }

    let relevance: Vec<Vec<bool>> = (0..q_ids.len())
        .into_par_iter()
        .map(|q| gt.relevance(q, retrieval.retrieved_ids(q)))
        .collect();
    let per_query = rank_metrics(&relevance, gt.n_gt(), config);
    let by_category = !config.return_only_overall_category;
    let query_cats: Option<Vec<&str>> = meta
        .categories
        .as_ref()
        .filter(|_| by_category)
        .map(|c| q_ids.iter().map(|&i| c[i].as_str()).collect());
    let mut report = MetricsReport::default();
    reduce_into(&mut report, &per_query, query_cats.as_deref());
    if let Some(v) = fnmr {
        let values = finish_fnmr(v, &knn, &config.fmr_vals, hooks.progress)?;
        for (f, x) in config.fmr_vals.iter().zip(values) {
            report.insert(OVERALL, FNMR_AT_FMR, &fraction_key(*f), x);
        }
    }
    // The search's copies are no longer needed: free them before pcf.
    drop(knn);
    if !config.pcf_variance.is_empty() {
        let pcf = calc_pcf(embeddings, dim, &config.pcf_variance)?;
        for (r, v) in config.pcf_variance.iter().zip(pcf) {
            report.insert(OVERALL, PCF, &fraction_key(*r), v);
        }
        // Per query category, over every item of that category (OML's topological metrics).
        if let (Some(qc), Some(all)) = (&query_cats, &meta.categories) {
            for cat in members(qc).keys() {
                let rows: Vec<f32> = all
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.as_str() == *cat)
                    .flat_map(|(i, _)| embeddings[i * dim..(i + 1) * dim].iter().copied())
                    .collect();
                let pcf = calc_pcf(&rows, dim, &config.pcf_variance)?;
                for (r, v) in config.pcf_variance.iter().zip(pcf) {
                    report.insert(cat, PCF, &fraction_key(*r), v);
                }
            }
        }
    }
    Ok(Evaluation {
        report,
        per_query,
        query_ids: q_ids,
        gallery_ids: g_ids,
        retrieval,
        ground_truth: gt,
    })
}

/// Every configured rank metric of every query, from relevance flags and `n_gt`.
fn rank_metrics(
    relevance: &[Vec<bool>],
    n_gt: &[usize],
    config: &MetricsConfig,
) -> PerQueryMetrics {
    let per = |f: &(dyn Fn(&[bool], usize) -> f64 + Sync)| -> Vec<f64> {
        relevance
            .par_iter()
            .zip(n_gt.par_iter())
            .map(|(r, &n)| f(r, n))
            .collect()
    };
    let mut out = PerQueryMetrics::default();
    for &k in &config.cmc_top_k {
        out.insert(CMC, k.to_string(), per(&|r, n| cmc_at_k(r, n, k)));
    }
    for &k in &config.precision_top_k {
        out.insert(
            PRECISION,
            k.to_string(),
            per(&|r, n| precision_at_k(r, n, k, config.no_gt_precision)),
        );
    }
    for &k in &config.map_top_k {
        out.insert(MAP, k.to_string(), per(&|r, n| map_at_k(r, n, k)));
    }
    for &k in &config.ndcg_top_k {
        out.insert(NDCG, k.to_string(), per(&|r, n| ndcg_at_k(r, n, k)));
    }
    for &k in &config.mrr_top_k {
        out.insert(MRR, k.to_string(), per(&|r, n| mrr_at_k(r, n, k)));
    }
    if config.map_at_r {
        out.insert(MAP_AT_R, R_PARAM.to_string(), per(&map_at_r));
    }
    if config.r_precision {
        out.insert(R_PRECISION, R_PARAM.to_string(), per(&r_precision));
    }
    out
}

/// Means over all queries into OVERALL, and over each query category's queries.
fn reduce_into(
    report: &mut MetricsReport,
    per_query: &PerQueryMetrics,
    query_categories: Option<&[&str]>,
) {
    for (m, p, v) in per_query.iter() {
        report.insert(OVERALL, m, p, mean(v.iter().copied()));
    }
    if let Some(qc) = query_categories {
        for (cat, qs) in members(qc) {
            for (m, p, v) in per_query.iter() {
                report.insert(cat, m, p, mean(qs.iter().map(|&q| v[q])));
            }
        }
    }
}

/// Positions of each category's members.
fn members<'a>(cats: &[&'a str]) -> BTreeMap<&'a str, Vec<usize>> {
    let mut out: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (q, c) in cats.iter().enumerate() {
        out.entry(c).or_default().push(q);
    }
    out
}

/// OML's `calc_retrieval_metrics_rr`: the rank metrics of `config` from retrieval results with
/// ground truth (`n_gt` = the length of each query's `gt_ids`), reduced over all queries and
/// per query category. Returns the report and the per-query values.
pub fn calc_retrieval_metrics(
    rr: &RetrievalResults,
    query_categories: Option<&[String]>,
    config: &MetricsConfig,
) -> Result<(MetricsReport, PerQueryMetrics), MetricError> {
    config.validate()?;
    if !rr.has_gt() {
        return Err(MetricError::InvalidData(
            "retrieval results have no ground truth".into(),
        ));
    }
    if let Some(c) = query_categories
        && c.len() != rr.n_queries()
    {
        return Err(MetricError::InvalidData(format!(
            "{} query categories for {} queries",
            c.len(),
            rr.n_queries()
        )));
    }
    let relevance: Vec<Vec<bool>> = (0..rr.n_queries())
        .map(|q| rr.is_relevant(q).unwrap_or_default())
        .collect();
    let n_gt: Vec<usize> = (0..rr.n_queries())
        .map(|q| rr.gt_ids(q).map_or(0, <[usize]>::len))
        .collect();
    let per_query = rank_metrics(&relevance, &n_gt, config);
    let mut report = MetricsReport::default();
    let cats: Option<Vec<&str>> = query_categories.map(|c| c.iter().map(String::as_str).collect());
    reduce_into(
        &mut report,
        &per_query,
        if config.return_only_overall_category {
            None
        } else {
            cats.as_deref()
        },
    );
    Ok((report, per_query))
}

/// OML's `EmbeddingMetrics`: accumulates embeddings by dataset index (batches in any order),
/// refuses to compute on incomplete data, and keeps the per-query values and retrieval results
/// of the last computation.
///
/// ```
/// use burn::prelude::*;
/// use oml_interfaces::{BasicMetric, OVERALL};
/// use oml_metrics::{EmbeddingMetrics, MetricsConfig, QueryGalleryMeta};
///
/// let device = oml_interfaces::device::select_device(None)?;
/// let meta = QueryGalleryMeta::new(vec![0, 0, 1, 1], vec![true; 4], vec![true; 4]);
/// let config = MetricsConfig { cmc_top_k: vec![1], precision_top_k: vec![], map_top_k: vec![],
///     pcf_variance: vec![], ..MetricsConfig::default() };
/// let mut m = EmbeddingMetrics::new(meta, config, &device)?;
/// m.setup(4);
/// m.update(Tensor::<2>::from_data([[5.0], [5.5]], &device), &[2, 3])?;
/// assert!(m.compute().is_err()); // two of four items seen
/// m.update(Tensor::<2>::from_data([[0.0], [0.5]], &device), &[0, 1])?;
/// let report = m.compute()?;
/// assert_eq!(report.get(OVERALL, "cmc", "1"), Some(1.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EmbeddingMetrics {
    meta: QueryGalleryMeta,
    config: MetricsConfig,
    device: Device,
    postprocessor: Option<(Box<dyn RetrievalPostprocessor>, usize)>,
    progress: Option<Box<dyn Fn(u64, u64) + Send + Sync>>,
    rows: RowCollector,
    last: Option<Evaluation>,
}

impl std::fmt::Debug for EmbeddingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingMetrics")
            .field("config", &self.config)
            .field("items", &self.meta.len())
            .field("seen", &self.rows.seen())
            .field("postprocessor", &self.postprocessor.as_ref().map(|p| p.1))
            .finish()
    }
}

impl EmbeddingMetrics {
    /// Metrics for the dataset described by `meta` (labels required, at least one query and
    /// one gallery item); distances run on `device`. Ready for `meta.len()` samples.
    pub fn new(
        meta: QueryGalleryMeta,
        config: MetricsConfig,
        device: &Device,
    ) -> Result<Self, MetricError> {
        config.validate()?;
        meta.validate().map_err(data_err)?;
        if meta.labels.is_none() {
            return Err(MetricError::InvalidData(
                "EmbeddingMetrics needs a labeled dataset".into(),
            ));
        }
        if !meta.is_query.iter().any(|&q| q) {
            return Err(MetricError::InvalidData(
                "there is no query item (is_query is false everywhere)".into(),
            ));
        }
        if !meta.is_gallery.iter().any(|&g| g) {
            return Err(MetricError::InvalidData(
                "there is no gallery item (is_gallery is false everywhere)".into(),
            ));
        }
        let n = meta.len();
        Ok(EmbeddingMetrics {
            meta,
            config,
            device: device.clone(),
            postprocessor: None,
            progress: None,
            rows: RowCollector::new(n),
            last: None,
        })
    }

    /// From a labeled query/gallery dataset.
    pub fn from_dataset<I, D: oml_interfaces::QueryGalleryLabeledDataset<I> + ?Sized>(
        dataset: &D,
        config: MetricsConfig,
        device: &Device,
    ) -> Result<Self, MetricError> {
        Self::new(
            QueryGalleryMeta::from_labeled_dataset(dataset),
            config,
            device,
        )
    }

    /// Applies `postprocessor` to the retrieval results before the rank metrics; `top_n` items
    /// are retrieved per query at least (OML's `postprocessor.top_n`).
    pub fn with_postprocessor(
        mut self,
        postprocessor: Box<dyn RetrievalPostprocessor>,
        top_n: usize,
    ) -> Self {
        self.postprocessor = Some((postprocessor, top_n));
        self
    }

    /// Reports `(blocks done, blocks in all)` of the distance passes.
    pub fn with_progress(mut self, progress: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// The dataset description.
    pub fn meta(&self) -> &QueryGalleryMeta {
        &self.meta
    }

    /// Adds host rows `[indices.len(), dim]` for the dataset items `indices`. An index given
    /// again keeps its first embedding (OML's accumulator keeps the first occurrence).
    pub fn update_host(
        &mut self,
        rows: &[f32],
        dim: usize,
        indices: &[usize],
    ) -> Result<(), MetricError> {
        self.rows.add(rows, dim, indices)
    }

    /// The last computation, if any.
    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.last.as_ref()
    }

    /// Per-query values of the last computation (OVERALL, queries in dataset order).
    pub fn per_query(&self, metric: &str, param: &str) -> Option<&[f64]> {
        self.last.as_ref()?.per_query.get(metric, param)
    }

    /// The `n` worst queries (positions) by a metric of the last computation.
    pub fn worst_queries(&self, metric: &str, param: &str, n: usize) -> Option<Vec<usize>> {
        self.last.as_ref()?.worst_queries(metric, param, n)
    }

    /// The retrieval results of the last computation.
    pub fn retrieval_results(&self) -> Option<&RetrievalResults> {
        self.last.as_ref().map(|e| &e.retrieval)
    }
}

impl BasicMetric for EmbeddingMetrics {
    type Batch = Tensor<2>;

    fn setup(&mut self, num_samples: usize) {
        self.rows.reset(num_samples);
        self.last = None;
    }

    fn update(&mut self, batch: Tensor<2>, indices: &[usize]) -> Result<(), MetricError> {
        let (rows, dim) = tensor_to_host(&batch).map_err(data_err)?;
        self.update_host(&rows, dim, indices)
    }

    fn compute(&mut self) -> Result<MetricsReport, MetricError> {
        let (embeddings, dim) = self.rows.finish()?;
        if self.rows.expected() != self.meta.len() {
            return Err(MetricError::InvalidData(format!(
                "setup announced {} samples but the dataset has {}",
                self.rows.expected(),
                self.meta.len()
            )));
        }
        let progress = self.progress.as_deref().map(|p| p as Progress<'_>);
        let hooks = EvalHooks {
            postprocessor: self.postprocessor.as_ref().map(|(p, n)| (p.as_ref(), *n)),
            progress,
        };
        let e = evaluate(
            embeddings,
            dim,
            &self.meta,
            &self.config,
            &self.device,
            &hooks,
        )?;
        let report = e.report.clone();
        self.last = Some(e);
        Ok(report)
    }
}
