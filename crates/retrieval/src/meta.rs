//! What retrieval needs to know about a query/gallery dataset besides its embeddings, and the
//! ground truth derived from it.

use oml_interfaces::{QueryGalleryDataset, QueryGalleryLabeledDataset, RetrievalError};
use std::collections::HashMap;

/// Per-item labels, query/gallery flags, categories and sequences of one dataset (OML's
/// `IQueryGallery(Labeled)Dataset` without the items themselves).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryGalleryMeta {
    /// Label of each item (`None`: unlabeled, no ground truth).
    pub labels: Option<Vec<i64>>,
    /// Whether each item is a query.
    pub is_query: Vec<bool>,
    /// Whether each item is a gallery item.
    pub is_gallery: Vec<bool>,
    /// Category of each item, if the data has categories.
    pub categories: Option<Vec<String>>,
    /// Sequence id of each item: gallery items sharing a query's sequence id are ignored for it.
    pub sequences: Option<Vec<String>>,
}

impl QueryGalleryMeta {
    /// Labeled metadata; categories and sequences can be set on the fields afterwards.
    pub fn new(labels: Vec<i64>, is_query: Vec<bool>, is_gallery: Vec<bool>) -> Self {
        QueryGalleryMeta {
            labels: Some(labels),
            is_query,
            is_gallery,
            categories: None,
            sequences: None,
        }
    }

    /// From an unlabeled query/gallery dataset.
    pub fn from_dataset<I, D: QueryGalleryDataset<I> + ?Sized>(dataset: &D) -> Self {
        let extra = dataset.extra_data();
        QueryGalleryMeta {
            labels: None,
            is_query: dataset.is_query().to_vec(),
            is_gallery: dataset.is_gallery().to_vec(),
            categories: extra.categories.clone(),
            sequences: extra.sequences.clone(),
        }
    }

    /// From a labeled query/gallery dataset.
    pub fn from_labeled_dataset<I, D: QueryGalleryLabeledDataset<I> + ?Sized>(dataset: &D) -> Self {
        let mut m = Self::from_dataset(dataset);
        m.labels = Some(dataset.labels().to_vec());
        m
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.is_query.len()
    }

    /// True when there is no item.
    pub fn is_empty(&self) -> bool {
        self.is_query.is_empty()
    }

    /// Dataset indices of the queries, ascending.
    pub fn query_ids(&self) -> Vec<usize> {
        self.is_query
            .iter()
            .enumerate()
            .filter(|(_, q)| **q)
            .map(|(i, _)| i)
            .collect()
    }

    /// Dataset indices of the gallery items, ascending.
    pub fn gallery_ids(&self) -> Vec<usize> {
        self.is_gallery
            .iter()
            .enumerate()
            .filter(|(_, g)| **g)
            .map(|(i, _)| i)
            .collect()
    }

    /// Checks that every per-item column has one value per item.
    pub fn validate(&self) -> Result<(), RetrievalError> {
        let n = self.is_query.len();
        let check = |name: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(RetrievalError::InvalidData(format!(
                    "{name} has {len} values for {n} items"
                )))
            }
        };
        check("is_gallery", self.is_gallery.len())?;
        if let Some(l) = &self.labels {
            check("labels", l.len())?;
        }
        if let Some(c) = &self.categories {
            check("categories", c.len())?;
        }
        if let Some(s) = &self.sequences {
            check("sequences", s.len())?;
        }
        Ok(())
    }

    /// Sequence codes (equal ids ↔ equal codes), if the data has sequences.
    pub fn sequence_codes(&self) -> Option<Vec<u32>> {
        self.sequences.as_deref().map(factorize)
    }
}

/// Codes for values: equal values get equal codes, numbered in order of first appearance.
pub fn factorize<T: std::hash::Hash + Eq>(values: &[T]) -> Vec<u32> {
    let mut codes: HashMap<&T, u32> = HashMap::with_capacity(values.len().min(1 << 16));
    values
        .iter()
        .map(|v| {
            let next = codes.len() as u32;
            *codes.entry(v).or_insert(next)
        })
        .collect()
}

/// The same coding over two lists (query and gallery sequence ids of a separated search).
pub fn factorize_pair<T: std::hash::Hash + Eq>(a: &[T], b: &[T]) -> (Vec<u32>, Vec<u32>) {
    let all: Vec<&T> = a.iter().chain(b).collect();
    let mut codes = factorize(&all);
    let tail = codes.split_off(a.len());
    (codes, tail)
}

/// Per-query ground truth of a search: which gallery positions are relevant.
///
/// An item is relevant to a query when their labels are equal and it is not masked (the
/// query's own item, or an item of its sequence).
#[derive(Debug, Clone)]
pub struct GroundTruth {
    q_labels: Vec<i64>,
    g_labels: Vec<i64>,
    q_seq: Option<Vec<u32>>,
    g_seq: Option<Vec<u32>>,
    self_pos: Vec<Option<usize>>,
    n_gt: Vec<usize>,
}

impl GroundTruth {
    /// Ground truth of queries `query_ids` against gallery `gallery_ids` of one labeled dataset
    /// (labels, optional sequence codes per item).
    pub fn new(
        labels: &[i64],
        query_ids: &[usize],
        gallery_ids: &[usize],
        sequences: Option<&[u32]>,
    ) -> Result<Self, RetrievalError> {
        let n = labels.len();
        if let Some(&i) = query_ids.iter().chain(gallery_ids).find(|&&i| i >= n) {
            return Err(RetrievalError::InvalidData(format!(
                "item {i} is outside the {n} labels"
            )));
        }
        let mut pos = HashMap::with_capacity(gallery_ids.len());
        for (p, &i) in gallery_ids.iter().enumerate() {
            pos.insert(i, p);
        }
        let self_pos = query_ids.iter().map(|i| pos.get(i).copied()).collect();
        Ok(Self::build(
            query_ids.iter().map(|&i| labels[i]).collect(),
            gallery_ids.iter().map(|&i| labels[i]).collect(),
            sequences.map(|s| query_ids.iter().map(|&i| s[i]).collect()),
            sequences.map(|s| gallery_ids.iter().map(|&i| s[i]).collect()),
            self_pos,
        ))
    }

    /// Ground truth of a separated search: query and gallery labels, optional sequence codes
    /// (one shared coding) and optional same-item keys, as given to
    /// [`ExactKnn::new_qg`](crate::ExactKnn::new_qg).
    pub fn new_qg(
        query_labels: &[i64],
        gallery_labels: &[i64],
        sequences: Option<(&[u32], &[u32])>,
        same_items: Option<(&[u64], &[u64])>,
    ) -> Result<Self, RetrievalError> {
        let (nq, ng) = (query_labels.len(), gallery_labels.len());
        if let Some((a, b)) = sequences
            && (a.len() != nq || b.len() != ng)
        {
            return Err(RetrievalError::InvalidData(
                "sequence ids do not match the labels".into(),
            ));
        }
        let self_pos = match same_items {
            None => vec![None; nq],
            Some((kq, kg)) => {
                if kq.len() != nq || kg.len() != ng {
                    return Err(RetrievalError::InvalidData(
                        "item keys do not match the labels".into(),
                    ));
                }
                let pos: HashMap<u64, usize> =
                    kg.iter().enumerate().map(|(p, &k)| (k, p)).collect();
                kq.iter().map(|k| pos.get(k).copied()).collect()
            }
        };
        Ok(Self::build(
            query_labels.to_vec(),
            gallery_labels.to_vec(),
            sequences.map(|s| s.0.to_vec()),
            sequences.map(|s| s.1.to_vec()),
            self_pos,
        ))
    }

    fn build(
        q_labels: Vec<i64>,
        g_labels: Vec<i64>,
        q_seq: Option<Vec<u32>>,
        g_seq: Option<Vec<u32>>,
        self_pos: Vec<Option<usize>>,
    ) -> Self {
        let mut by_label: HashMap<i64, usize> = HashMap::new();
        for &l in &g_labels {
            *by_label.entry(l).or_default() += 1;
        }
        let mut by_label_seq: HashMap<(i64, u32), usize> = HashMap::new();
        if let Some(gs) = &g_seq {
            for (&l, &s) in g_labels.iter().zip(gs) {
                *by_label_seq.entry((l, s)).or_default() += 1;
            }
        }
        let n_gt = q_labels
            .iter()
            .enumerate()
            .map(|(q, l)| {
                let all = by_label.get(l).copied().unwrap_or(0);
                let same_seq = q_seq
                    .as_ref()
                    .map_or(0, |qs| by_label_seq.get(&(*l, qs[q])).copied().unwrap_or(0));
                // The query's own item is only left to subtract when no sequence already did.
                let own = match self_pos[q] {
                    Some(p) => {
                        let in_seq = matches!((&q_seq, &g_seq), (Some(a), Some(b)) if a[q] == b[p]);
                        usize::from(g_labels[p] == *l && !in_seq)
                    }
                    None => 0,
                };
                all - same_seq - own
            })
            .collect();
        GroundTruth {
            q_labels,
            g_labels,
            q_seq,
            g_seq,
            self_pos,
            n_gt,
        }
    }

    /// Number of queries.
    pub fn n_queries(&self) -> usize {
        self.q_labels.len()
    }

    /// Number of relevant gallery items per query (over the whole gallery, masks excluded).
    pub fn n_gt(&self) -> &[usize] {
        &self.n_gt
    }

    /// Queries without any relevant gallery item.
    pub fn n_queries_without_gt(&self) -> usize {
        self.n_gt.iter().filter(|&&n| n == 0).count()
    }

    /// Whether gallery position `g` is relevant to query `q` (it is assumed not masked, as every
    /// retrieved item is).
    #[inline]
    pub fn is_relevant(&self, q: usize, g: usize) -> bool {
        self.q_labels[q] == self.g_labels[g]
    }

    /// Relevance of each retrieved id of query `q`.
    pub fn relevance(&self, q: usize, retrieved: &[usize]) -> Vec<bool> {
        retrieved.iter().map(|&g| self.is_relevant(q, g)).collect()
    }

    /// Label of query `q`.
    pub fn query_label(&self, q: usize) -> i64 {
        self.q_labels[q]
    }

    /// Label of gallery item `g`.
    pub fn gallery_label(&self, g: usize) -> i64 {
        self.g_labels[g]
    }

    /// All relevant gallery positions of every query, ascending (OML's `gt_ids`). Costs
    /// `Σ n_gt` memory: the metrics never need it, post-processors and reports may.
    pub fn gt_ids(&self) -> Vec<Vec<usize>> {
        let mut by_label: HashMap<i64, Vec<usize>> = HashMap::new();
        for (p, &l) in self.g_labels.iter().enumerate() {
            by_label.entry(l).or_default().push(p);
        }
        (0..self.q_labels.len())
            .map(|q| {
                let Some(cands) = by_label.get(&self.q_labels[q]) else { return Vec::new() };
                cands
                    .iter()
                    .copied()
                    .filter(|&p| {
                        Some(p) != self.self_pos[q]
                            && !matches!((&self.q_seq, &self.g_seq), (Some(a), Some(b)) if a[q] == b[p])
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_counts_exclude_self_and_sequence() {
        // items: labels, sequence; all query+gallery.
        let labels = [1, 1, 1, 2, 2, 3];
        let seqs = factorize(&["a", "a", "b", "c", "d", "e"]);
        let ids: Vec<usize> = (0..6).collect();
        let gt = GroundTruth::new(&labels, &ids, &ids, Some(&seqs)).unwrap();
        assert_eq!(gt.n_gt(), &[1, 1, 2, 1, 1, 0]);
        assert_eq!(
            gt.gt_ids(),
            vec![vec![2], vec![2], vec![0, 1], vec![4], vec![3], vec![]]
        );
        let gt = GroundTruth::new(&labels, &ids, &ids, None).unwrap();
        assert_eq!(gt.n_gt(), &[2, 2, 2, 1, 1, 0]);
        assert_eq!(gt.n_queries_without_gt(), 1);
        // Query-only item 0, gallery 1..6.
        let gt = GroundTruth::new(&labels, &[0], &[1, 2, 3, 4, 5], None).unwrap();
        assert_eq!(gt.n_gt(), &[2]);
        assert_eq!(gt.gt_ids(), vec![vec![0, 1]]);
        let (a, b) = factorize_pair(&["x", "y"], &["y", "z", "x"]);
        assert_eq!((a, b), (vec![0, 1], vec![1, 2, 0]));
    }
}
