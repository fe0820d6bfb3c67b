//! Building [`RetrievalResults`] from embeddings (OML's `RetrievalResults.from_embeddings` and
//! `from_embeddings_qg`), per-query views, and the worst queries by a metric.

use crate::knn::{ExactKnn, KnnConfig, Neighbours, Progress};
use crate::meta::{GroundTruth, QueryGalleryMeta, factorize_pair};
use burn::prelude::*;
use oml_interfaces::{RetrievalError, RetrievalResults};

/// Wraps search results with optional ground truth into validated [`RetrievalResults`].
pub fn into_results(
    n: Neighbours,
    gt: Option<&GroundTruth>,
) -> Result<RetrievalResults, RetrievalError> {
    RetrievalResults::new(n.distances, n.ids, gt.map(GroundTruth::gt_ids))
}

/// The `n_items` nearest gallery items of every query of `meta` (OML's
/// `RetrievalResults.from_embeddings`), with ground truth when `meta` has labels.
///
/// `embeddings` is `[meta.len(), dim]`; result ids are gallery positions.
pub fn results_from_embeddings(
    embeddings: &Tensor<2>,
    meta: &QueryGalleryMeta,
    n_items: usize,
    config: &KnnConfig,
    progress: Option<Progress<'_>>,
) -> Result<RetrievalResults, RetrievalError> {
    meta.validate()?;
    let [n, _] = embeddings.dims();
    if n != meta.len() {
        return Err(RetrievalError::InvalidData(format!(
            "{n} embeddings for {} items",
            meta.len()
        )));
    }
    let (q, g) = (meta.query_ids(), meta.gallery_ids());
    let seq = meta.sequence_codes();
    let knn = ExactKnn::from_tensor(embeddings, &q, &g, seq.as_deref(), config)?;
    let found = knn.search(n_items, None, progress)?;
    let gt = match &meta.labels {
        Some(l) => Some(GroundTruth::new(l, &q, &g, seq.as_deref())?),
        None => None,
    };
    into_results(found, gt.as_ref())
}

/// Labels and sequences of one side of a separated search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SideMeta {
    /// Labels (both sides need them for ground truth).
    pub labels: Option<Vec<i64>>,
    /// Sequence ids (both sides need them for masking).
    pub sequences: Option<Vec<String>>,
}

/// The `n_items` nearest gallery items of every query for separate query and gallery sets
/// (OML's `from_embeddings_qg`: no self-masking, sequences masked, ground truth when both
/// sides are labeled).
///
/// Unlike OML 4.0 (which codes each side's sequences separately, so equal ids may not match),
/// sequence ids are compared as values across the two sides.
pub fn results_from_embeddings_qg(
    queries: &Tensor<2>,
    gallery: &Tensor<2>,
    query_meta: &SideMeta,
    gallery_meta: &SideMeta,
    n_items: usize,
    config: &KnnConfig,
    progress: Option<Progress<'_>>,
) -> Result<RetrievalResults, RetrievalError> {
    let seq = match (&query_meta.sequences, &gallery_meta.sequences) {
        (Some(a), Some(b)) => Some(factorize_pair(a, b)),
        _ => None,
    };
    let seq_ref = seq.as_ref().map(|(a, b)| (a.as_slice(), b.as_slice()));
    let knn = ExactKnn::from_tensors_qg(queries, gallery, seq_ref, None, config)?;
    let found = knn.search(n_items, None, progress)?;
    let gt = match (&query_meta.labels, &gallery_meta.labels) {
        (Some(a), Some(b)) => Some(GroundTruth::new_qg(a, b, seq_ref, None)?),
        _ => None,
    };
    into_results(found, gt.as_ref())
}

/// One query's results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryView<'a> {
    /// Query position.
    pub query: usize,
    /// Ascending distances.
    pub distances: &'a [f32],
    /// Retrieved gallery positions.
    pub retrieved_ids: &'a [usize],
    /// Relevant gallery positions, when known.
    pub gt_ids: Option<&'a [usize]>,
}

/// Per-query access to [`RetrievalResults`].
pub trait RetrievalResultsExt {
    /// The results of query `q`, or `None` when out of range.
    fn query(&self, q: usize) -> Option<QueryView<'_>>;
}

impl RetrievalResultsExt for RetrievalResults {
    fn query(&self, q: usize) -> Option<QueryView<'_>> {
        (q < self.n_queries()).then(|| QueryView {
            query: q,
            distances: self.distances(q),
            retrieved_ids: self.retrieved_ids(q),
            gt_ids: self.gt_ids(q),
        })
    }
}

/// The `n` queries with the smallest values (OML's `get_worst_queries_ids`): ascending value,
/// lower position first among ties; NaN counts as the largest value.
pub fn worst_queries(values: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let key = |i: usize| {
        if values[i].is_nan() {
            f64::INFINITY
        } else {
            values[i]
        }
    };
    order.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
    order.truncate(n);
    order
}
