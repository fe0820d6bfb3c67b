//! [`RowCollector`]: the rows of `n` items given in batches, in any order, the first occurrence
//! of an index winning (OML's accumulator).

use oml_interfaces::MetricError;

/// Collects one row per item for `n` items given in batches of `(rows, indices)`, in any order.
///
/// The row dimension is fixed by the first accepted batch. An index given again keeps its first
/// row, as OML's accumulator deduplicates. A batch is checked whole before anything is stored, so
/// a rejected batch changes nothing.
///
/// ```
/// use oml_metrics::{MetricError, RowCollector};
///
/// let mut c = RowCollector::new(3);
/// c.add(&[2.0, 2.0, 0.0, 0.0], 2, &[2, 0])?;
/// assert_eq!(c.finish().unwrap_err(), MetricError::Incomplete { seen: 2, expected: 3 });
/// c.add(&[9.0, 9.0, 1.0, 1.0], 2, &[0, 1])?; // item 0 keeps its first row
/// assert_eq!(c.finish()?, (&[0.0, 0.0, 1.0, 1.0, 2.0, 2.0][..], 2));
/// # Ok::<(), MetricError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowCollector {
    n: usize,
    dim: Option<usize>,
    data: Vec<f32>,
    seen: Vec<bool>,
    count: usize,
}

impl RowCollector {
    /// Expects `n` items; nothing collected yet.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            dim: None,
            data: Vec::new(),
            seen: vec![false; n],
            count: 0,
        }
    }

    /// Forgets everything collected and expects `n` items.
    pub fn reset(&mut self, n: usize) {
        *self = Self::new(n);
    }

    /// The number of items expected (`n`).
    pub fn expected(&self) -> usize {
        self.n
    }

    /// The number of distinct items collected so far.
    pub fn seen(&self) -> usize {
        self.count
    }

    /// No item collected yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every item collected.
    pub fn is_complete(&self) -> bool {
        self.count == self.n && self.dim.is_some()
    }

    /// The row dimension, once a batch was accepted.
    pub fn dim(&self) -> Option<usize> {
        self.dim
    }

    /// Adds the row-major `[indices.len(), dim]` rows `rows` as the items `indices`. An index
    /// collected before keeps its first row.
    ///
    /// Errors, with nothing stored: [`MetricError::InvalidData`] when `dim` is 0, `rows` does
    /// not hold `indices.len()` rows of `dim` values, or `dim` differs from the earlier batches';
    /// [`MetricError::IndexOutOfRange`] for the first index `>= n`.
    pub fn add(&mut self, rows: &[f32], dim: usize, indices: &[usize]) -> Result<(), MetricError> {
        if dim == 0 || Some(rows.len()) != indices.len().checked_mul(dim) {
            return Err(MetricError::InvalidData(format!(
                "a batch of {} values does not hold {} rows of dimension {dim}",
                rows.len(),
                indices.len()
            )));
        }
        if let Some(d) = self.dim
            && d != dim
        {
            return Err(MetricError::InvalidData(format!(
                "embedding dimension {dim} differs from the earlier batches' {d}"
            )));
        }
        if let Some(&index) = indices.iter().find(|&&i| i >= self.n) {
            return Err(MetricError::IndexOutOfRange {
                index,
                num_samples: self.n,
            });
        }
        if self.dim.is_none() {
            let size = self.n.checked_mul(dim).ok_or_else(|| {
                MetricError::InvalidData(format!("{} rows of dimension {dim} overflow", self.n))
            })?;
            self.dim = Some(dim);
            self.data = vec![0.0; size];
        }
        for (row, &i) in rows.chunks_exact(dim).zip(indices) {
            if !self.seen[i] {
                self.seen[i] = true;
                self.count += 1;
                self.data[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
        }
        Ok(())
    }

    /// The row-major `[n, dim]` rows and `dim`, or [`MetricError::Incomplete`] when some item
    /// is missing (or no batch was ever accepted).
    pub fn finish(&self) -> Result<(&[f32], usize), MetricError> {
        match self.dim {
            Some(dim) if self.count == self.n => Ok((&self.data, dim)),
            _ => Err(self.incomplete()),
        }
    }

    /// Like [`finish`](Self::finish), but moves the rows out and starts over for the same `n`;
    /// on error nothing changes.
    pub fn take(&mut self) -> Result<(Vec<f32>, usize), MetricError> {
        match self.dim {
            Some(dim) if self.count == self.n => {
                let data = std::mem::take(&mut self.data);
                self.reset(self.n);
                Ok((data, dim))
            }
            _ => Err(self.incomplete()),
        }
    }

    fn incomplete(&self) -> MetricError {
        MetricError::Incomplete {
            seen: self.count,
            expected: self.n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The row of item `i` in batch `b`: distinct per (batch, position) so "which one won" shows.
    fn row_of(b: usize, pos: usize, dim: usize) -> Vec<f32> {
        (0..dim).map(|c| (b * 1000 + pos * 10 + c) as f32).collect()
    }

    proptest! {
        #[test]
        fn matches_first_occurrence_brute_force(
            n in 0usize..12,
            dim in 1usize..4,
            raw in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..8), 0..8),
        ) {
            let batches: Vec<Vec<usize>> = if n == 0 {
                Vec::new()
            } else {
                raw.iter().map(|b| b.iter().map(|ix| ix.index(n)).collect()).collect()
            };
            let mut c = RowCollector::new(n);
            // Brute force: scan every (batch, position) in order; the first one for item i wins.
            let mut expect: Vec<Option<Vec<f32>>> = vec![None; n];
            for (b, idx) in batches.iter().enumerate() {
                let rows: Vec<f32> = (0..idx.len()).flat_map(|p| row_of(b, p, dim)).collect();
                c.add(&rows, dim, idx).unwrap();
                for (p, &i) in idx.iter().enumerate() {
                    if expect[i].is_none() {
                        expect[i] = Some(row_of(b, p, dim));
                    }
                }
                let seen = expect.iter().filter(|r| r.is_some()).count();
                prop_assert_eq!(c.seen(), seen);
                prop_assert_eq!(c.is_empty(), seen == 0);
                prop_assert_eq!(c.dim(), Some(dim));
            }
            let seen = expect.iter().filter(|r| r.is_some()).count();
            if seen == n && !batches.is_empty() {
                let want: Vec<f32> = expect.into_iter().flatten().flatten().collect();
                prop_assert_eq!(c.finish().unwrap(), (&want[..], dim));
                prop_assert!(c.is_complete());
                prop_assert_eq!(c.take().unwrap(), (want, dim));
                prop_assert_eq!(c, RowCollector::new(n));
            } else {
                let err = MetricError::Incomplete { seen, expected: n };
                prop_assert_eq!(c.finish().unwrap_err(), err.clone());
                let before = c.clone();
                prop_assert_eq!(c.take().unwrap_err(), err);
                prop_assert_eq!(c, before);
            }
        }
    }

    #[test]
    fn shuffled_batches_with_duplicates() {
        let mut c = RowCollector::new(4);
        assert_eq!(c.expected(), 4);
        assert!(c.is_empty());
        assert_eq!(c.dim(), None);
        c.add(&[3.0, 3.5, 1.0, 1.5], 2, &[3, 1]).unwrap();
        c.add(&[7.0, 7.0, 3.0, 3.0, 8.0, 8.0], 2, &[1, 1, 3])
            .unwrap(); // all duplicates
        assert_eq!(c.seen(), 2);
        c.add(&[0.0, 0.5, 9.0, 9.0, 2.0, 2.5], 2, &[0, 0, 2])
            .unwrap();
        assert_eq!(c.seen(), 4);
        assert_eq!(
            c.finish().unwrap(),
            (&[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5][..], 2)
        );
        c.reset(1);
        assert_eq!(c, RowCollector::new(1));
    }

    #[test]
    fn nothing_collected_is_incomplete_even_for_zero_items() {
        assert_eq!(
            RowCollector::new(0).finish().unwrap_err(),
            MetricError::Incomplete {
                seen: 0,
                expected: 0
            }
        );
        let mut c = RowCollector::new(0);
        c.add(&[], 3, &[]).unwrap();
        assert_eq!(c.finish().unwrap(), (&[][..], 3));
    }

    #[test]
    fn rejected_batches_store_nothing() {
        let mut c = RowCollector::new(3);
        let invalid = |e: MetricError, what: &str| match e {
            MetricError::InvalidData(m) => assert!(m.contains(what), "{m}"),
            e => panic!("{e:?}"),
        };
        invalid(c.add(&[], 0, &[]).unwrap_err(), "dimension 0");
        invalid(c.add(&[1.0, 2.0, 3.0], 2, &[0]).unwrap_err(), "3 values");
        invalid(c.add(&[1.0, 2.0], 2, &[0, 1]).unwrap_err(), "2 rows");
        // An out-of-range index anywhere in the batch rejects the whole batch, dim included.
        assert_eq!(
            c.add(&[1.0, 2.0, 3.0, 4.0], 2, &[0, 3]).unwrap_err(),
            MetricError::IndexOutOfRange {
                index: 3,
                num_samples: 3
            }
        );
        assert_eq!(c, RowCollector::new(3));
        c.add(&[1.0, 2.0], 2, &[0]).unwrap();
        invalid(
            c.add(&[1.0, 2.0, 3.0], 3, &[1]).unwrap_err(),
            "dimension 3 differs from the earlier batches' 2",
        );
        assert_eq!(c.seen(), 1);
        assert_eq!(c.dim(), Some(2));
    }
}
