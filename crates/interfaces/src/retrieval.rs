//! Retrieval results and post-processors: OML's `RetrievalResults` and `IRetrievalPostprocessor`.

/// Why retrieval results are invalid or could not be post-processed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RetrievalError {
    /// Per-query lists disagree in number or length.
    #[error("inconsistent retrieval results: {0}")]
    Inconsistent(String),
    /// A query's distances are not sorted ascending.
    #[error("distances of query {query} are not sorted ascending at position {position}")]
    Unsorted {
        /// Query position.
        query: usize,
        /// First position where `d[i] < d[i-1]`.
        position: usize,
    },
    /// A query retrieves the same gallery item twice.
    #[error("query {query} retrieves gallery item {id} twice")]
    Duplicate {
        /// Query position.
        query: usize,
        /// The repeated gallery id.
        id: usize,
    },
    /// A parameter is out of range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// The data cannot be searched (shape mismatch, NaN, …).
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// A post-processor's model failed.
    #[error("post-processing failed: {0}")]
    Postprocess(String),
}

/// The per-query lists of [`RetrievalResults`]: distances, retrieved ids, ground-truth ids.
pub type RetrievalParts = (Vec<Vec<f32>>, Vec<Vec<usize>>, Option<Vec<Vec<usize>>>);

/// Ragged retrieval results: for each query, gallery ids sorted by ascending distance, and
/// optionally the ids of its relevant gallery items.
///
/// Ids are positions inside the gallery (`0..G`), not dataset indices, as in OML. A query may
/// retrieve fewer items than asked (masked items are dropped), or none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetrievalResults {
    distances: Vec<Vec<f32>>,
    retrieved_ids: Vec<Vec<usize>>,
    gt_ids: Option<Vec<Vec<usize>>>,
}

impl RetrievalResults {
    /// Checks and wraps per-query lists: equal counts, equal lengths per query, distances
    /// sorted ascending (differences below `10·f32::EPSILON` tolerated, as OML), no id
    /// retrieved twice.
    pub fn new(
        distances: Vec<Vec<f32>>,
        retrieved_ids: Vec<Vec<usize>>,
        gt_ids: Option<Vec<Vec<usize>>>,
    ) -> Result<Self, RetrievalError> {
        if distances.len() != retrieved_ids.len() {
            return Err(RetrievalError::Inconsistent(format!(
                "{} distance rows but {} id rows",
                distances.len(),
                retrieved_ids.len()
            )));
        }
        if let Some(gt) = &gt_ids
            && gt.len() != distances.len()
        {
            return Err(RetrievalError::Inconsistent(format!(
                "{} ground-truth rows for {} queries",
                gt.len(),
                distances.len()
            )));
        }
        for (q, (d, ids)) in distances.iter().zip(&retrieved_ids).enumerate() {
            if d.len() != ids.len() {
                return Err(RetrievalError::Inconsistent(format!(
                    "query {q} has {} distances but {} ids",
                    d.len(),
                    ids.len()
                )));
            }
            if let Some(position) = (1..d.len()).find(|&i| d[i - 1] - d[i] > 10.0 * f32::EPSILON) {
                return Err(RetrievalError::Unsorted { query: q, position });
            }
            let mut seen = std::collections::HashSet::with_capacity(ids.len());
            if let Some(&id) = ids.iter().find(|&&id| !seen.insert(id)) {
                return Err(RetrievalError::Duplicate { query: q, id });
            }
        }
        Ok(RetrievalResults {
            distances,
            retrieved_ids,
            gt_ids,
        })
    }

    /// Number of queries.
    pub fn n_queries(&self) -> usize {
        self.distances.len()
    }

    /// Distances of query `q`, ascending.
    pub fn distances(&self, q: usize) -> &[f32] {
        &self.distances[q]
    }

    /// Retrieved gallery ids of query `q`, nearest first.
    pub fn retrieved_ids(&self, q: usize) -> &[usize] {
        &self.retrieved_ids[q]
    }

    /// Relevant gallery ids of query `q`, when known.
    pub fn gt_ids(&self, q: usize) -> Option<&[usize]> {
        self.gt_ids.as_ref().map(|g| g[q].as_slice())
    }

    /// True when ground truth is known.
    pub fn has_gt(&self) -> bool {
        self.gt_ids.is_some()
    }

    /// The largest number of items retrieved by any query (OML's `n_retrieved_items`).
    pub fn n_retrieved_items(&self) -> usize {
        self.retrieved_ids.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// True when no query retrieved anything.
    pub fn is_empty(&self) -> bool {
        self.retrieved_ids.iter().all(Vec::is_empty)
    }

    /// Per query: whether each retrieved item is relevant (None without ground truth).
    pub fn is_relevant(&self, q: usize) -> Option<Vec<bool>> {
        let gt = self.gt_ids(q)?;
        Some(
            self.retrieved_ids[q]
                .iter()
                .map(|id| gt.contains(id))
                .collect(),
        )
    }

    /// Takes the per-query lists apart: `(distances, retrieved_ids, gt_ids)`.
    pub fn into_parts(self) -> RetrievalParts {
        (self.distances, self.retrieved_ids, self.gt_ids)
    }
}

/// OML's `IRetrievalPostprocessor`: turns retrieval results into new ones (thresholding,
/// re-ranking). Whatever else it needs (a pairwise model, the images) it holds itself.
pub trait RetrievalPostprocessor: Send + Sync {
    /// Processes the results; the number of queries is kept.
    fn process(&self, results: RetrievalResults) -> Result<RetrievalResults, RetrievalError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the `n` nearest items per query: a minimal real post-processor.
    struct KeepFirst(usize);
    impl RetrievalPostprocessor for KeepFirst {
        fn process(&self, rr: RetrievalResults) -> Result<RetrievalResults, RetrievalError> {
            let (mut d, mut ids, gt) = rr.into_parts();
            d.iter_mut().for_each(|v| v.truncate(self.0));
            ids.iter_mut().for_each(|v| v.truncate(self.0));
            RetrievalResults::new(d, ids, gt)
        }
    }

    #[test]
    fn results_validate_and_postprocess() {
        let rr = RetrievalResults::new(
            vec![vec![0.1, 0.2, 0.3], vec![], vec![0.5]],
            vec![vec![2, 0, 1], vec![], vec![1]],
            Some(vec![vec![0], vec![1], vec![]]),
        )
        .unwrap();
        assert_eq!(rr.n_retrieved_items(), 3);
        assert_eq!(rr.is_relevant(0), Some(vec![false, true, false]));
        let cut = KeepFirst(1).process(rr).unwrap();
        assert_eq!(cut.retrieved_ids(0), &[2]);
        assert_eq!(cut.n_queries(), 3);
    }

    #[test]
    fn invalid_results_are_errors() {
        let e = RetrievalResults::new(vec![vec![0.3, 0.1]], vec![vec![0, 1]], None).unwrap_err();
        assert_eq!(
            e,
            RetrievalError::Unsorted {
                query: 0,
                position: 1
            }
        );
        let e = RetrievalResults::new(vec![vec![0.1, 0.2]], vec![vec![4, 4]], None).unwrap_err();
        assert_eq!(e, RetrievalError::Duplicate { query: 0, id: 4 });
        assert!(RetrievalResults::new(vec![vec![0.1]], vec![], None).is_err());
    }
}
