//! Post-processors of retrieval results (OML's `IRetrievalPostprocessor` implementations):
//! [`ConstantThresholding`], [`AdaptiveThresholding`] and [`PairwiseReranker`].

use burn::prelude::*;
use oml_interfaces::{PairwiseModel, RetrievalError, RetrievalPostprocessor, RetrievalResults};

fn param(name: &'static str, value: impl ToString, reason: &str) -> RetrievalError {
    RetrievalError::InvalidParameter {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Keeps the items strictly closer than `th` (OML's `ConstantThresholding`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConstantThresholding {
    th: f32,
}

impl ConstantThresholding {
    /// A threshold; NaN is refused.
    pub fn new(th: f32) -> Result<Self, RetrievalError> {
        if th.is_nan() {
            return Err(param("th", th, "must be a number"));
        }
        Ok(ConstantThresholding { th })
    }
}

impl RetrievalPostprocessor for ConstantThresholding {
    fn process(&self, rr: RetrievalResults) -> Result<RetrievalResults, RetrievalError> {
        let (mut d, mut ids, gt) = rr.into_parts();
        for (d, ids) in d.iter_mut().zip(ids.iter_mut()) {
            // Distances are sorted: everything from the first `>= th` on goes.
            let keep = d.iter().position(|&x| x >= self.th).unwrap_or(d.len());
            d.truncate(keep);
            ids.truncate(keep);
        }
        RetrievalResults::new(d, ids, gt)
    }
}

/// Cuts each query's list after its first big gap (OML's `AdaptiveThresholding`).
///
/// A gap is big when it exceeds `n_std ×` the mean of all consecutive-distance gaps of all
/// queries. Unlike OML 4.0, results whose queries all have fewer than two items (no gap at
/// all) are returned unchanged instead of dividing by zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveThresholding {
    n_std: f32,
}

impl AdaptiveThresholding {
    /// `n_std` must be finite.
    pub fn new(n_std: f32) -> Result<Self, RetrievalError> {
        if !n_std.is_finite() {
            return Err(param("n_std", n_std, "must be a finite number"));
        }
        Ok(AdaptiveThresholding { n_std })
    }
}

impl RetrievalPostprocessor for AdaptiveThresholding {
    fn process(&self, rr: RetrievalResults) -> Result<RetrievalResults, RetrievalError> {
        let (mut d, mut ids, gt) = rr.into_parts();
        let (mut sum, mut n) = (0f64, 0usize);
        for row in &d {
            for w in row.windows(2) {
                sum += (w[1] - w[0]) as f64;
                n += 1;
            }
        }
        if n > 0 {
            let limit = self.n_std * (sum / n as f64) as f32;
            for (d, ids) in d.iter_mut().zip(ids.iter_mut()) {
                if let Some(i) = d.windows(2).position(|w| w[1] - w[0] > limit) {
                    d.truncate(i + 1);
                    ids.truncate(i + 1);
                }
            }
        }
        RetrievalResults::new(d, ids, gt)
    }
}

/// Concatenates two ascending lists so the result stays ascending: when the head's last value
/// exceeds the tail's first, the head is rescaled by `tail[0] / head[last]` and lowered by
/// `eps` (OML's `cat_two_sorted_tensors_and_keep_it_sorted`).
///
/// Where OML's rescaling would break the order (a non-positive head end or tail start, which
/// OML's positive distances never give but a pairwise model's scores may), the head is shifted
/// down by `head[last] − tail[0] + eps` instead.
pub fn cat_two_sorted_keep_sorted(head: &[f32], tail: &[f32], eps: f32) -> Vec<f32> {
    let mut out = head.to_vec();
    if let (Some(&last), Some(&first)) = (head.last(), tail.first())
        && last > first
    {
        if last > 0.0 && first > 0.0 {
            let scale = first / last;
            out.iter_mut().for_each(|x| *x = *x * scale - eps);
        } else {
            let shift = last - first + eps;
            out.iter_mut().for_each(|x| *x -= shift);
        }
    }
    out.extend_from_slice(tail);
    out
}

/// Scores (query position, gallery position) pairs: a smaller score means closer.
pub trait PairScorer: Send + Sync {
    /// One score per pair, in order.
    fn score(&self, pairs: &[(usize, usize)]) -> Result<Vec<f32>, RetrievalError>;
}

impl<F> PairScorer for F
where
    F: Fn(&[(usize, usize)]) -> Result<Vec<f32>, RetrievalError> + Send + Sync,
{
    fn score(&self, pairs: &[(usize, usize)]) -> Result<Vec<f32>, RetrievalError> {
        self(pairs)
    }
}

/// Inputs of dataset items for a pairwise model: `[B, C, H, W]` for the given dataset indices.
pub type ItemLoader = Box<dyn Fn(&[usize]) -> Result<Tensor<4>, RetrievalError> + Send + Sync>;

/// A [`PairScorer`] running a [`PairwiseModel`]'s `predict` in batches (OML's
/// `pairwise_inference`): query and gallery positions are mapped to dataset indices, whose
/// inputs `load` produces.
pub struct ModelPairScorer<M> {
    model: M,
    load: ItemLoader,
    query_ids: Vec<usize>,
    gallery_ids: Vec<usize>,
    batch_size: usize,
}

impl<M: PairwiseModel> ModelPairScorer<M> {
    /// `query_ids`/`gallery_ids` map positions to dataset indices; `batch_size ≥ 1`.
    pub fn new(
        model: M,
        load: ItemLoader,
        query_ids: Vec<usize>,
        gallery_ids: Vec<usize>,
        batch_size: usize,
    ) -> Result<Self, RetrievalError> {
        if batch_size == 0 {
            return Err(param("batch_size", 0, "must be at least 1"));
        }
        Ok(ModelPairScorer {
            model,
            load,
            query_ids,
            gallery_ids,
            batch_size,
        })
    }
}

impl<M: PairwiseModel + Send + Sync> PairScorer for ModelPairScorer<M> {
    fn score(&self, pairs: &[(usize, usize)]) -> Result<Vec<f32>, RetrievalError> {
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(self.batch_size) {
            let map = |ids: &[usize], p: usize, what: &str| {
                ids.get(p).copied().ok_or_else(|| {
                    RetrievalError::InvalidData(format!(
                        "{what} position {p} is outside 0..{}",
                        ids.len()
                    ))
                })
            };
            let a = chunk
                .iter()
                .map(|&(q, _)| map(&self.query_ids, q, "query"))
                .collect::<Result<Vec<_>, _>>()?;
            let b = chunk
                .iter()
                .map(|&(_, g)| map(&self.gallery_ids, g, "gallery"))
                .collect::<Result<Vec<_>, _>>()?;
            let s = self.model.predict((self.load)(&a)?, (self.load)(&b)?);
            let v = s
                .try_into_data()
                .map_err(|e| RetrievalError::Postprocess(format!("pairwise model failed: {e}")))?
                .try_cast_as::<f32>()
                .and_then(|d| d.try_into_vec::<f32>())
                .map_err(|e| {
                    RetrievalError::Postprocess(format!("pairwise output unreadable: {e:?}"))
                })?;
            if v.len() != chunk.len() {
                return Err(RetrievalError::Postprocess(format!(
                    "pairwise model returned {} scores for {} pairs",
                    v.len(),
                    chunk.len()
                )));
            }
            out.extend(v);
        }
        Ok(out)
    }
}

/// Re-scores the first `top_n` items of each query with a pairwise scorer and re-sorts them
/// (OML's `PairwiseReranker`). The tail keeps its order and distances; the re-scored head is
/// kept below the tail with [`cat_two_sorted_keep_sorted`] (`eps = 1000·f32::EPSILON`, OML's
/// value for float32 outputs). The number of items per query never changes.
pub struct PairwiseReranker<S> {
    top_n: usize,
    scorer: S,
}

impl<S: PairScorer> PairwiseReranker<S> {
    /// `top_n > 1`, as OML requires.
    pub fn new(top_n: usize, scorer: S) -> Result<Self, RetrievalError> {
        if top_n <= 1 {
            return Err(param("top_n", top_n, "must be greater than 1"));
        }
        Ok(PairwiseReranker { top_n, scorer })
    }

    /// Items re-scored per query.
    pub fn top_n(&self) -> usize {
        self.top_n
    }
}

impl<S: PairScorer> RetrievalPostprocessor for PairwiseReranker<S> {
    fn process(&self, rr: RetrievalResults) -> Result<RetrievalResults, RetrievalError> {
        let (d, ids, gt) = rr.into_parts();
        let mut pairs = Vec::new();
        for (q, row) in ids.iter().enumerate() {
            pairs.extend(row.iter().take(self.top_n).map(|&g| (q, g)));
        }
        let scores = self.scorer.score(&pairs)?;
        if scores.len() != pairs.len() {
            return Err(RetrievalError::Postprocess(format!(
                "{} scores for {} pairs",
                scores.len(),
                pairs.len()
            )));
        }
        let eps = 1000.0 * f32::EPSILON;
        let mut at = 0;
        let mut d_new = Vec::with_capacity(d.len());
        let mut ids_new = Vec::with_capacity(ids.len());
        for (q, (drow, irow)) in d.into_iter().zip(ids).enumerate() {
            let h = irow.len().min(self.top_n);
            let s = &scores[at..at + h];
            at += h;
            if let Some(i) = s.iter().position(|x| x.is_nan()) {
                return Err(RetrievalError::Postprocess(format!(
                    "pairwise score of query {q} and gallery item {} is NaN",
                    irow[i]
                )));
            }
            let mut order: Vec<usize> = (0..h).collect();
            order.sort_by(|&a, &b| s[a].total_cmp(&s[b]).then(a.cmp(&b)));
            let head: Vec<f32> = order.iter().map(|&i| s[i]).collect();
            d_new.push(cat_two_sorted_keep_sorted(&head, &drow[h..], eps));
            ids_new.push(
                order
                    .iter()
                    .map(|&i| irow[i])
                    .chain(irow[h..].iter().copied())
                    .collect(),
            );
        }
        RetrievalResults::new(d_new, ids_new, gt)
    }
}
