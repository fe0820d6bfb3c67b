//! Metrics: OML's `IBasicMetric` and its report.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The report key of the whole-dataset metrics (OML's `OVERALL_CATEGORIES_KEY`).
pub const OVERALL: &str = "OVERALL";

/// Why a metric could not be updated or computed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MetricError {
    /// `compute` was called before every sample was seen.
    #[error("incomplete data: {seen} of {expected} samples were given before compute")]
    Incomplete {
        /// Distinct indices seen.
        seen: usize,
        /// Samples announced by `setup`.
        expected: usize,
    },
    /// An index is outside `0..num_samples`.
    #[error("index {index} is outside 0..{num_samples}")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// Samples announced by `setup`.
        num_samples: usize,
    },
    /// A parameter is out of range (k = 0, fmr outside [0, 1], …).
    #[error("invalid metric parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// The data cannot be evaluated (no query, no gallery, NaN embeddings, shape mismatch, …).
    #[error("invalid data: {0}")]
    InvalidData(String),
}

/// `metric name → parameter (k or fraction, as text) → value`, e.g. `{"cmc": {"1": 0.9}}`.
pub type MetricValues = BTreeMap<String, BTreeMap<String, f64>>;

/// A metrics report in OML's shape: `{"OVERALL": {"cmc": {"1": x}}, "<category>": {...}}`.
///
/// Serialises with `OVERALL` first, then categories in sorted order. NaN values serialise as
/// JSON `null`, as OML's NaN does.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "RawReport")]
pub struct MetricsReport {
    /// Metric values per category, `OVERALL` included.
    pub categories: BTreeMap<String, MetricValues>,
}

/// The report as JSON holds it: `null` stands for NaN.
type RawReport = BTreeMap<String, BTreeMap<String, BTreeMap<String, Option<f64>>>>;

impl From<RawReport> for MetricsReport {
    fn from(raw: RawReport) -> Self {
        let categories = raw
            .into_iter()
            .map(|(c, m)| {
                let m = m
                    .into_iter()
                    .map(|(name, vals)| {
                        let vals = vals
                            .into_iter()
                            .map(|(p, v)| (p, v.unwrap_or(f64::NAN)))
                            .collect();
                        (name, vals)
                    })
                    .collect();
                (c, m)
            })
            .collect();
        MetricsReport { categories }
    }
}

impl MetricsReport {
    /// Sets `category/metric/param = value`.
    pub fn insert(&mut self, category: &str, metric: &str, param: &str, value: f64) {
        self.categories
            .entry(category.to_string())
            .or_default()
            .entry(metric.to_string())
            .or_default()
            .insert(param.to_string(), value);
    }

    /// Reads `category/metric/param`.
    pub fn get(&self, category: &str, metric: &str, param: &str) -> Option<f64> {
        self.categories
            .get(category)?
            .get(metric)?
            .get(param)
            .copied()
    }

    /// The `OVERALL` values.
    pub fn overall(&self) -> Option<&MetricValues> {
        self.categories.get(OVERALL)
    }

    /// Flat `category/metric/param → value` pairs (OML logs them as `OVERALL/cmc/1`).
    pub fn flatten(&self) -> Vec<(String, f64)> {
        self.ordered()
            .flat_map(|(c, m)| {
                m.iter().flat_map(move |(name, vals)| {
                    vals.iter()
                        .map(move |(p, v)| (format!("{c}/{name}/{p}"), *v))
                })
            })
            .collect()
    }

    fn ordered(&self) -> impl Iterator<Item = (&String, &MetricValues)> {
        let overall = self.categories.get_key_value(OVERALL);
        overall.into_iter().chain(
            self.categories
                .iter()
                .filter(|(k, _)| k.as_str() != OVERALL),
        )
    }
}

impl Serialize for MetricsReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.categories.len()))?;
        for (k, v) in self.ordered() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// OML's `IBasicMetric`: accumulate batches by dataset index, then compute a report.
///
/// `setup` (OML's `setup(num_samples)`) prepares for an epoch; `update` may be called with
/// batches in any order; `compute` refuses to run on incomplete data.
pub trait BasicMetric {
    /// What one batch carries (e.g. embeddings `[B, D]`).
    type Batch;

    /// Prepares to receive `num_samples` samples, dropping earlier data.
    fn setup(&mut self, num_samples: usize);

    /// Adds a batch whose rows are the dataset items `indices`.
    fn update(&mut self, batch: Self::Batch, indices: &[usize]) -> Result<(), MetricError>;

    /// Computes the report from everything accumulated since `setup`.
    fn compute(&mut self) -> Result<MetricsReport, MetricError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accuracy of a nearest-mean rule: a small but real `BasicMetric` over (label, prediction).
    struct Accuracy {
        seen: Vec<Option<(i64, i64)>>,
    }
    impl BasicMetric for Accuracy {
        type Batch = Vec<(i64, i64)>;
        fn setup(&mut self, n: usize) {
            self.seen = vec![None; n];
        }
        fn update(&mut self, batch: Self::Batch, indices: &[usize]) -> Result<(), MetricError> {
            for (item, &i) in batch.into_iter().zip(indices) {
                let n = self.seen.len();
                *self.seen.get_mut(i).ok_or(MetricError::IndexOutOfRange {
                    index: i,
                    num_samples: n,
                })? = Some(item);
            }
            Ok(())
        }
        fn compute(&mut self) -> Result<MetricsReport, MetricError> {
            let seen = self.seen.iter().flatten().count();
            if seen < self.seen.len() {
                return Err(MetricError::Incomplete {
                    seen,
                    expected: self.seen.len(),
                });
            }
            let hits = self.seen.iter().flatten().filter(|(l, p)| l == p).count();
            let mut r = MetricsReport::default();
            r.insert(OVERALL, "accuracy", "1", hits as f64 / seen as f64);
            Ok(r)
        }
    }

    #[test]
    fn metric_accumulates_out_of_order_and_refuses_incomplete() {
        let mut m = Accuracy { seen: vec![] };
        m.setup(3);
        m.update(vec![(1, 1)], &[2]).unwrap();
        assert_eq!(
            m.compute(),
            Err(MetricError::Incomplete {
                seen: 1,
                expected: 3
            })
        );
        m.update(vec![(0, 1), (2, 2)], &[0, 1]).unwrap();
        let r = m.compute().unwrap();
        assert!((r.get(OVERALL, "accuracy", "1").unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!(matches!(
            m.update(vec![(0, 0)], &[5]),
            Err(MetricError::IndexOutOfRange { .. })
        ));
    }

    #[test]
    fn report_serialises_overall_first_and_nan_as_null() {
        let mut r = MetricsReport::default();
        r.insert("a_cat", "cmc", "1", 0.5);
        r.insert(OVERALL, "cmc", "1", 0.75);
        r.insert(OVERALL, "precision", "5", f64::NAN);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"OVERALL":{"cmc":{"1":0.75},"precision":{"5":null}},"a_cat":{"cmc":{"1":0.5}}}"#
        );
        let back: MetricsReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.get(OVERALL, "cmc", "1"), Some(0.75));
        assert!(back.get(OVERALL, "precision", "5").unwrap().is_nan());
        assert_eq!(r.flatten()[0], ("OVERALL/cmc/1".to_string(), 0.75));
    }
}
