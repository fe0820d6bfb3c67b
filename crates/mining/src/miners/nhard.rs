//! `NHardTripletsMiner`: the n hardest positives × the n hardest negatives of every anchor.

use burn::prelude::*;
use oml_interfaces::miners::check_batch_labels;
use oml_interfaces::{MiningError, Triplets, TripletsMinerInBatch};
use serde::{Deserialize, Serialize};

use super::checks::check_lengths;
use crate::distance::host_self_distances;

/// How many hard positives (or negatives) [`NHardTripletsMiner`] keeps, as in OML's config:
/// an integer `k` (the `k` hardest) or a 1-based inclusive range `[a, b]` (the a-th through the
/// b-th hardest), e.g. `n_positive: 3` or `n_positive: [2, 5]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NHardArg {
    /// The `k` hardest: slice `[0, k)`. Must be at least 1.
    Count(i64),
    /// The a-th through b-th hardest, 1-based inclusive: slice `[a−1, b)`. Needs `1 ≤ a ≤ b`.
    Range([i64; 2]),
}

impl From<usize> for NHardArg {
    fn from(k: usize) -> Self {
        NHardArg::Count(k as i64)
    }
}

impl From<(usize, usize)> for NHardArg {
    fn from((a, b): (usize, usize)) -> Self {
        NHardArg::Range([a as i64, b as i64])
    }
}

impl std::fmt::Display for NHardArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NHardArg::Count(k) => write!(f, "{k}"),
            NHardArg::Range([a, b]) => write!(f, "[{a}, {b}]"),
        }
    }
}

impl NHardArg {
    /// The 0-based half-open slice `[start, end)`, validated (`name` is the parameter's name).
    pub fn to_slice(self, name: &'static str) -> Result<(usize, usize), MiningError> {
        let invalid = |reason: &str| MiningError::InvalidParameter {
            name,
            value: self.to_string(),
            reason: reason.to_string(),
        };
        match self {
            NHardArg::Count(k) if k >= 1 => Ok((0, k as usize)),
            NHardArg::Count(_) => Err(invalid("a count must be at least 1")),
            NHardArg::Range([a, _]) if a < 1 => Err(invalid(
                "ranges are 1-based: the first bound must be at least 1",
            )),
            NHardArg::Range([a, b]) if b < a => Err(invalid(
                "the range is reversed: the second bound must be ≥ the first",
            )),
            NHardArg::Range([a, b]) => Ok(((a - 1) as usize, b as usize)),
        }
    }
}

/// OML's `NHardTripletsMiner(n_positive, n_negative)`.
///
/// For each anchor (ascending): its positives (same label, not itself) sorted by decreasing
/// distance, then `n_positive`'s slice; its negatives sorted by increasing distance, then
/// `n_negative`'s slice; the output is the cartesian product, positive-major. Ties are broken
/// by the lower index (OML's sort is not stable, so its tie order is arbitrary).
///
/// Where OML crashes because the slices select nothing at all (e.g. `n_positive = [3, 4]` with
/// two instances per label), this returns [`MiningError::Empty`]; anchors whose own slice is
/// empty are skipped, as in OML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NHardTripletsMiner {
    n_positive: NHardArg,
    n_negative: NHardArg,
    positive_slice: (usize, usize),
    negative_slice: (usize, usize),
}

impl Default for NHardTripletsMiner {
    /// `(1, 1)`: the same triplets as [`HardTripletsMiner`](super::HardTripletsMiner) when
    /// embeddings are distinct.
    fn default() -> Self {
        Self {
            n_positive: NHardArg::Count(1),
            n_negative: NHardArg::Count(1),
            positive_slice: (0, 1),
            negative_slice: (0, 1),
        }
    }
}

impl NHardTripletsMiner {
    /// Validates both arguments; errors name `n_positive` or `n_negative`.
    pub fn new(
        n_positive: impl Into<NHardArg>,
        n_negative: impl Into<NHardArg>,
    ) -> Result<Self, MiningError> {
        let (n_positive, n_negative) = (n_positive.into(), n_negative.into());
        Ok(Self {
            n_positive,
            n_negative,
            positive_slice: n_positive.to_slice("n_positive")?,
            negative_slice: n_negative.to_slice("n_negative")?,
        })
    }

    /// The positive argument as given.
    pub fn n_positive(&self) -> NHardArg {
        self.n_positive
    }

    /// The negative argument as given.
    pub fn n_negative(&self) -> NHardArg {
        self.n_negative
    }

    /// Mines from a row-major `[N, N]` distance matrix; rows with `ignore_anchor[i]` are never
    /// anchors (the bank rows of [`MinerWithBank`](super::MinerWithBank)).
    pub fn mine_from_distances(
        &self,
        distances: &[f32],
        labels: &[i64],
        ignore_anchor: Option<&[bool]>,
    ) -> Result<Triplets, MiningError> {
        let b = labels.len();
        if distances.len() != b * b {
            return Err(MiningError::LengthMismatch {
                features: distances.len() / b.max(1),
                labels: b,
            });
        }
        let slice = |v: &[usize], (s, e): (usize, usize)| -> Vec<usize> {
            v[s.min(v.len())..e.min(v.len())].to_vec()
        };
        let mut out = Triplets::default();
        for a in 0..b {
            if ignore_anchor.is_some_and(|m| m.get(a).copied().unwrap_or(false)) {
                continue;
            }
            let row = &distances[a * b..(a + 1) * b];
            let mut pos: Vec<usize> = (0..b)
                .filter(|&j| j != a && labels[j] == labels[a])
                .collect();
            let mut neg: Vec<usize> = (0..b).filter(|&j| labels[j] != labels[a]).collect();
            pos.sort_by(|&i, &j| row[j].total_cmp(&row[i]).then(i.cmp(&j)));
            neg.sort_by(|&i, &j| row[i].total_cmp(&row[j]).then(i.cmp(&j)));
            let pos = slice(&pos, self.positive_slice);
            let neg = slice(&neg, self.negative_slice);
            for &p in &pos {
                for &n in &neg {
                    out.push(a, p, n);
                }
            }
        }
        if out.is_empty() {
            return Err(MiningError::Empty(format!(
                "NHardTripletsMiner(n_positive = {}, n_negative = {}) selects no positive or no \
                 negative for any anchor of this batch",
                self.n_positive, self.n_negative
            )));
        }
        Ok(out)
    }
}

impl TripletsMinerInBatch for NHardTripletsMiner {
    fn mine(&self, features: &Tensor<2>, labels: &[i64]) -> Result<Triplets, MiningError> {
        check_lengths(features, labels)?;
        check_batch_labels(labels)?;
        self.mine_from_distances(&host_self_distances(features), labels, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(x: &[f32]) -> Vec<f32> {
        x.iter()
            .flat_map(|a| x.iter().map(move |b| (a - b).abs()))
            .collect()
    }

    #[test]
    fn one_dimensional_cases_from_oml() {
        let d = line(&[0.0, 1.0, 3.0, 10.0, 11.0, 14.0]);
        let labels = [0, 0, 0, 1, 1, 1];
        let t = NHardTripletsMiner::new(2usize, 2usize)
            .unwrap()
            .mine_from_distances(&d, &labels, None)
            .unwrap();
        let anchor0: Vec<_> = t
            .iter()
            .filter(|x| x.0 == 0)
            .map(|(_, p, n)| (p, n))
            .collect();
        assert_eq!(anchor0, vec![(2, 3), (2, 4), (1, 3), (1, 4)]);

        let t = NHardTripletsMiner::new((2, 2), (1, 1))
            .unwrap()
            .mine_from_distances(&d, &labels, None)
            .unwrap();
        assert_eq!(t.anchor, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(t.positive, vec![1, 0, 1, 4, 3, 4]);
        assert_eq!(t.negative, vec![3, 3, 3, 2, 2, 2]);
    }

    #[test]
    fn invalid_arguments_name_the_parameter() {
        let e = NHardTripletsMiner::new(0usize, 1usize).unwrap_err();
        assert!(e.to_string().contains("`n_positive`"), "{e}");
        let e = NHardTripletsMiner::new(1usize, NHardArg::Range([4, 2])).unwrap_err();
        assert!(
            e.to_string().contains("`n_negative`") && e.to_string().contains("reversed"),
            "{e}"
        );
        let e = NHardTripletsMiner::new(NHardArg::Range([0, 2]), 1usize).unwrap_err();
        assert!(e.to_string().contains("1-based"), "{e}");
    }

    #[test]
    fn a_range_selecting_nothing_is_an_error_not_a_crash() {
        let d = line(&[0.0, 1.0, 10.0, 11.0]);
        let e = NHardTripletsMiner::new((3, 4), 1usize)
            .unwrap()
            .mine_from_distances(&d, &[0, 0, 1, 1], None)
            .unwrap_err();
        assert!(matches!(e, MiningError::Empty(_)), "{e}");
    }
}
