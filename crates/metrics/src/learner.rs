//! OML's retrieval metrics as Burn `Metric`s (feature `learner`), for any `SupervisedTraining`.
//!
//! Retrieval metrics are epoch-level: every validation embedding has to be seen before cmc@k or
//! map@k means anything. [`RetrievalMetrics`] holds one [`EmbeddingMetrics`] (the dataset's
//! labels, query/gallery flags and categories, as OML's `EmbeddingMetrics` does); each
//! [`RetrievalMetric`] it hands out is one value of the report (`cmc@1`, `map@5`, …) for Burn's
//! `metric_valid_numeric`. The rows of an epoch are collected once, whatever the number of
//! registered values, placed by dataset index ([`EmbeddingOutput::indices`]), and the blocked
//! kNN runs once per epoch, on the first `compute`.
//!
//! ```
//! use burn::prelude::*;
//! use burn::train::metric::{Metric, MetricMetadata, Numeric};
//! use oml_interfaces::learner::EmbeddingOutput;
//! use oml_metrics::learner::RetrievalMetrics;
//! use oml_metrics::{MetricsConfig, QueryGalleryMeta};
//!
//! let device = oml_interfaces::device::select_device(None)?;
//! // Four items, two classes, each item a query and a gallery item.
//! let meta = QueryGalleryMeta::new(vec![0, 0, 1, 1], vec![true; 4], vec![true; 4]);
//! let metrics = RetrievalMetrics::new(meta, MetricsConfig::none().with_cmc([1]), &device)?;
//! let mut cmc1 = metrics.metric("cmc", "1")?;
//! assert_eq!(cmc1.name().as_str(), "cmc@1");
//! // What Burn does during a validation epoch: update per batch, compute and clear at the end.
//! let meta_data = MetricMetadata {
//!     progress: burn::data::dataloader::Progress { items_processed: 0, items_total: 2, unit: None },
//!     iteration: None,
//!     lr: None,
//! };
//! for (rows, indices) in [([[0.0f32], [4.0]], [0, 2]), ([[0.5], [5.0]], [1, 3])] {
//!     let batch = EmbeddingOutput { embeddings: Tensor::from_data(rows, &device), indices: indices.to_vec() };
//!     cmc1.update(&batch, &meta_data)?;
//! }
//! cmc1.compute()?;
//! assert_eq!(cmc1.final_value().current(), 1.0);
//! cmc1.clear();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In a `SupervisedTraining`, the model's `InferenceStep::Output` is an [`EmbeddingOutput`] (or
//! implements `Adaptor<EmbeddingOutput>`), and the values are registered one by one:
//! `metrics.all().into_iter().fold(training, |t, m| t.metric_valid_numeric(m))`.
//!
//! A failed evaluation (an index outside the dataset, an epoch that missed items, non-finite
//! embeddings) is logged, reported as NaN, kept in [`RetrievalMetrics::last_error`], and, with
//! [`RetrievalMetrics::with_guard`], stops the run.
//!
//! What is evaluated per epoch is an [`EpochEvaluator`]: [`EmbeddingMetrics`] by default; a
//! pipeline whose validation rows are not embeddings (`oml-train`'s re-ranker training scores
//! pairs) brings its own and keeps the rest of the machinery.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use burn::prelude::*;
use burn::tensor::TensorReadError;
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};
use oml_interfaces::learner::{EmbeddingOutput, StepGuard};
use oml_interfaces::{BasicMetric, MetricError, MetricsReport, OVERALL};

use crate::{EmbeddingMetrics, MetricsConfig, QueryGalleryMeta};

/// What [`RetrievalMetrics`] evaluates once per epoch: host rows placed by dataset index, then
/// a report. [`EmbeddingMetrics`] is the usual one; [`drive_epoch`] tests another without a
/// `Learner`.
///
/// Not [`BasicMetric`], whose shape it shares: the rows arrive on the host (read from the
/// device once for every registered value), the report's keys are known before the first
/// epoch (to hand out one Burn metric per value), and the error is the evaluator's own.
pub trait EpochEvaluator: Send + 'static {
    /// Why an epoch could not be evaluated.
    type Error: std::fmt::Display;

    /// Every key (`category/metric/param`) [`EpochEvaluator::evaluate`] reports.
    fn report_keys(&self) -> BTreeSet<String>;

    /// Drops the previous epoch's rows.
    fn start_epoch(&mut self);

    /// Adds the rows `[indices.len(), dim]` of the dataset items `indices`.
    fn add_rows(&mut self, rows: &[f32], dim: usize, indices: &[usize]) -> Result<(), Self::Error>;

    /// Evaluates the epoch's rows (refusing an incomplete epoch).
    fn evaluate(&mut self) -> Result<MetricsReport, Self::Error>;
}

impl EpochEvaluator for EmbeddingMetrics {
    type Error = MetricError;

    fn report_keys(&self) -> BTreeSet<String> {
        self.config().report_keys_for(self.meta())
    }

    fn start_epoch(&mut self) {
        let n = self.meta().len();
        self.setup(n);
    }

    fn add_rows(&mut self, rows: &[f32], dim: usize, indices: &[usize]) -> Result<(), MetricError> {
        self.update_host(rows, dim, indices)
    }

    fn evaluate(&mut self) -> Result<MetricsReport, MetricError> {
        self.compute()
    }
}

/// The shared state behind the [`RetrievalMetric`]s of one dataset: the epoch's rows and its
/// report. Cloning shares it.
pub struct RetrievalMetrics<E: EpochEvaluator = EmbeddingMetrics> {
    shared: Arc<Mutex<Shared<E>>>,
}

impl<E: EpochEvaluator> Clone for RetrievalMetrics<E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<E> {
    metrics: E,
    keys: BTreeSet<String>,
    handles: usize,
    /// The handle that adds the rows this epoch: the first to see a batch. Every registered
    /// handle gets every batch; the others only count it.
    leader: Option<usize>,
    /// The leader's `clear` ended the epoch: the next update starts a new one.
    ended: bool,
    /// This epoch's evaluation, once a handle computed it.
    report: Option<Result<MetricsReport, String>>,
    last: Option<MetricsReport>,
    last_error: Option<String>,
    /// The first failure of this epoch: the cause, which the evaluation then reports.
    epoch_error: Option<String>,
    guard: Option<StepGuard>,
}

impl<E: EpochEvaluator> Shared<E> {
    fn fail(&mut self, message: String) {
        if self.epoch_error.is_some() {
            return;
        }
        log::error!("retrieval metrics: {message}");
        if let Some(g) = &self.guard {
            g.fail(format!("retrieval metrics: {message}"));
        }
        self.epoch_error = Some(message.clone());
        self.last_error = Some(message);
    }

    fn start_epoch(&mut self) {
        self.metrics.start_epoch();
        self.report = None;
        self.epoch_error = None;
        self.leader = None;
        self.ended = false;
    }
}

impl<E: EpochEvaluator + std::fmt::Debug> std::fmt::Debug for RetrievalMetrics<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrievalMetrics")
            .field("metrics", &self.lock().metrics)
            .finish()
    }
}

impl RetrievalMetrics {
    /// Metrics for the dataset `meta` (labels, query/gallery flags, optional categories);
    /// distances run on `device`. Errors as [`EmbeddingMetrics::new`].
    pub fn new(
        meta: QueryGalleryMeta,
        config: MetricsConfig,
        device: &Device,
    ) -> Result<Self, MetricError> {
        Ok(Self::from_metrics(EmbeddingMetrics::new(
            meta, config, device,
        )?))
    }

    /// From a labeled query/gallery dataset (OML's CSV datasets implement it).
    pub fn from_dataset<I, D: oml_interfaces::QueryGalleryLabeledDataset<I> + ?Sized>(
        dataset: &D,
        config: MetricsConfig,
        device: &Device,
    ) -> Result<Self, MetricError> {
        Ok(Self::from_metrics(EmbeddingMetrics::from_dataset(
            dataset, config, device,
        )?))
    }
}

impl<E: EpochEvaluator> RetrievalMetrics<E> {
    /// Around configured [`EmbeddingMetrics`] (with a post-processor, a progress hook, …) or
    /// another [`EpochEvaluator`].
    pub fn from_metrics(metrics: E) -> Self {
        let keys = metrics.report_keys();
        Self {
            shared: Arc::new(Mutex::new(Shared {
                metrics,
                keys,
                handles: 0,
                leader: None,
                ended: false,
                report: None,
                last: None,
                last_error: None,
                epoch_error: None,
                guard: None,
            })),
        }
    }

    /// Stops the run through `guard` when an epoch cannot be evaluated.
    pub fn with_guard(self, guard: StepGuard) -> Self {
        self.lock().guard = Some(guard);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Shared<E>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The OVERALL value `metric`/`param` (`"cmc"`, `"1"`; `"pcf"`, `"0.5"`), named `cmc@1`.
    /// Fails when the configuration does not compute it.
    pub fn metric(&self, metric: &str, param: &str) -> Result<RetrievalMetric<E>, MetricError> {
        self.category_metric(OVERALL, metric, param)
    }

    /// The value `metric`/`param` of the queries of `category` (named `shoes cmc@1`).
    pub fn category_metric(
        &self,
        category: &str,
        metric: &str,
        param: &str,
    ) -> Result<RetrievalMetric<E>, MetricError> {
        let key = format!("{category}/{metric}/{param}");
        let mut shared = self.lock();
        if !shared.keys.contains(&key) {
            return Err(MetricError::InvalidParameter {
                name: "metric",
                value: key,
                reason: format!(
                    "not computed by this configuration, which computes {}",
                    shared.keys.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let id = shared.handles;
        shared.handles += 1;
        let sep = if metric.contains('@') { '=' } else { '@' };
        let name = match category {
            OVERALL => format!("{metric}{sep}{param}"),
            c => format!("{c} {metric}{sep}{param}"),
        };
        let lower_is_better = metric == crate::FNMR_AT_FMR;
        Ok(RetrievalMetric {
            shared: self.shared.clone(),
            id,
            category: category.to_string(),
            metric: metric.to_string(),
            param: param.to_string(),
            name: Arc::new(name),
            higher_is_better: !lower_is_better,
            value: None,
        })
    }

    /// Every OVERALL value the configuration computes, in the report's key order.
    pub fn all(&self) -> Vec<RetrievalMetric<E>> {
        let prefix = format!("{OVERALL}/");
        let keys: Vec<String> = self.lock().keys.iter().cloned().collect();
        keys.iter()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter_map(|rest| rest.rsplit_once('/'))
            .filter_map(|(metric, param)| self.metric(metric, param).ok())
            .collect()
    }

    /// The report of the last evaluated epoch (every category and value).
    pub fn last_report(&self) -> Option<MetricsReport> {
        self.lock().last.clone()
    }

    /// Why the last failed evaluation failed.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }
}

/// One value of the retrieval report as a Burn numeric metric (see [`RetrievalMetrics`]).
pub struct RetrievalMetric<E: EpochEvaluator = EmbeddingMetrics> {
    shared: Arc<Mutex<Shared<E>>>,
    id: usize,
    category: String,
    metric: String,
    param: String,
    name: MetricName,
    higher_is_better: bool,
    value: Option<f64>,
}

impl<E: EpochEvaluator> Clone for RetrievalMetric<E> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            id: self.id,
            category: self.category.clone(),
            metric: self.metric.clone(),
            param: self.param.clone(),
            name: self.name.clone(),
            higher_is_better: self.higher_is_better,
            value: self.value,
        }
    }
}

impl<E: EpochEvaluator> std::fmt::Debug for RetrievalMetric<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrievalMetric")
            .field("name", &self.name)
            .field("value", &self.value)
            .finish()
    }
}

impl<E: EpochEvaluator> RetrievalMetric<E> {
    fn lock(&self) -> MutexGuard<'_, Shared<E>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This epoch's value, evaluating the epoch if no handle did yet; `None` without rows.
    fn epoch_value(&self) -> Option<f64> {
        let mut shared = self.lock();
        if shared.leader.is_none() || shared.ended && shared.report.is_none() {
            return None;
        }
        if shared.report.is_none() {
            let report = match shared.epoch_error.clone() {
                Some(e) => Err(e),
                None => shared.metrics.evaluate().map_err(|e| e.to_string()),
            };
            match &report {
                Ok(r) => shared.last = Some(r.clone()),
                Err(e) => shared.fail(e.clone()),
            }
            shared.report = Some(report);
        }
        Some(match &shared.report {
            Some(Ok(r)) => r
                .get(&self.category, &self.metric, &self.param)
                .unwrap_or(f64::NAN),
            _ => f64::NAN,
        })
    }

    fn add(shared: &mut Shared<E>, item: &EmbeddingOutput) -> Result<(), TensorReadError> {
        let [rows, dim] = item.embeddings.dims();
        let data = item
            .embeddings
            .clone()
            .try_into_data_as::<f32>()?
            .try_into_vec::<f32>()?;
        if rows != item.indices.len() {
            shared.fail(format!(
                "a batch has {rows} embeddings but {} indices",
                item.indices.len()
            ));
            return Ok(());
        }
        if let Err(e) = shared.metrics.add_rows(&data, dim, &item.indices) {
            shared.fail(e.to_string());
        }
        Ok(())
    }
}

impl<E: EpochEvaluator> Metric for RetrievalMetric<E> {
    type Input = EmbeddingOutput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: self.higher_is_better,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &EmbeddingOutput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let mut shared = self.lock();
        if shared.ended {
            shared.start_epoch();
        }
        if *shared.leader.get_or_insert(self.id) == self.id {
            Self::add(&mut shared, item)?;
        }
        Ok(SerializedEntry::not_available(None))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.value = self.epoch_value();
        Ok(match self.value {
            Some(v) => SerializedEntry::new(format!("{v:.4}"), v.to_string()),
            // No batch this epoch (a metric registered on a split it never sees).
            None => SerializedEntry::not_available(None),
        })
    }

    fn clear(&mut self) {
        let mut shared = self.lock();
        if shared.leader == Some(self.id) {
            // The other handles may still compute from this epoch's report: the next update
            // starts the new epoch.
            shared.ended = true;
        }
    }
}

impl<E: EpochEvaluator> Numeric for RetrievalMetric<E> {
    /// None between epochs: a retrieval metric has no per-batch value.
    fn value(&self) -> Option<NumericEntry> {
        None
    }

    fn running_value(&self) -> Option<NumericEntry> {
        None
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Value(self.value.unwrap_or(f64::NAN))
    }
}

/// One validation epoch fed to `handles` as Burn's event processor feeds it: every batch to
/// every handle in order, then `compute` and `clear` on each; returns each handle's value (NaN
/// for a failed evaluation). For testing an [`EpochEvaluator`] without a `Learner`.
pub fn drive_epoch<E: EpochEvaluator>(
    handles: &mut [RetrievalMetric<E>],
    batches: &[EmbeddingOutput],
) -> Result<Vec<f64>, TensorReadError> {
    let meta = MetricMetadata {
        progress: burn::data::dataloader::Progress {
            items_processed: 0,
            items_total: batches.len(),
            unit: None,
        },
        iteration: None,
        lr: None,
    };
    for batch in batches {
        for h in handles.iter_mut() {
            h.update(batch, &meta)?;
        }
    }
    handles
        .iter_mut()
        .map(|h| {
            h.compute()?;
            let v = h.final_value().current();
            h.clear();
            Ok(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EvalHooks, evaluate};
    use oml_interfaces::device::test_device;

    /// One epoch of `(rows, indices)` batches of width `dim` through [`drive_epoch`].
    fn epoch(
        handles: &mut [RetrievalMetric],
        batches: &[(Vec<f32>, Vec<usize>)],
        dim: usize,
    ) -> Vec<f64> {
        let device = test_device();
        let batches: Vec<EmbeddingOutput> = batches
            .iter()
            .map(|(rows, indices)| EmbeddingOutput {
                embeddings: Tensor::from_data(
                    TensorData::new(rows.clone(), [indices.len(), dim]),
                    &device,
                ),
                indices: indices.clone(),
            })
            .collect();
        drive_epoch(handles, &batches).unwrap()
    }

    fn data(n: usize, dim: usize, seed: usize) -> Vec<f32> {
        (0..n * dim)
            .map(|i| (((i + seed) * 7919) % 101) as f32 / 101.0 - 0.5)
            .collect()
    }

    /// Every handle reports `evaluate`'s value for the same rows, epoch after epoch, with the
    /// batches in any order; a second group's handles do not disturb the first.
    #[test]
    fn handles_report_what_evaluate_computes_each_epoch() {
        let device = test_device();
        let (n, dim) = (30, 3);
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 5).collect();
        let is_query: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
        let meta = QueryGalleryMeta::new(labels, is_query, vec![true; n]);
        let config = MetricsConfig::none()
            .with_cmc([1, 5])
            .with_map([5])
            .with_precision([3]);
        let group = RetrievalMetrics::new(meta.clone(), config.clone(), &device).unwrap();
        let mut handles = group.all();
        let names: Vec<String> = handles.iter().map(|h| h.name().to_string()).collect();
        assert_eq!(names, ["cmc@1", "cmc@5", "map@5", "precision@3"]);
        for seed in [0, 17] {
            let rows = data(n, dim, seed);
            // Batches of 7 in reverse order: rows are placed by index.
            let ids: Vec<usize> = (0..n).rev().collect();
            let batches: Vec<(Vec<f32>, Vec<usize>)> = ids
                .chunks(7)
                .map(|c| {
                    let r = c
                        .iter()
                        .flat_map(|&i| rows[i * dim..(i + 1) * dim].to_vec())
                        .collect();
                    (r, c.to_vec())
                })
                .collect();
            let got = epoch(&mut handles, &batches, dim);
            let want = evaluate(&rows, dim, &meta, &config, &device, &EvalHooks::default())
                .unwrap()
                .report;
            for (h, v) in handles.iter().zip(&got) {
                let w = want.get(OVERALL, &h.metric, &h.param).unwrap();
                assert!((v - w).abs() < 1e-12, "{}: {v} vs {w}", h.name());
            }
            assert_eq!(group.last_report().as_ref(), Some(&want));
        }
        assert_eq!(group.last_error(), None);
    }

    #[test]
    fn unknown_values_and_bad_epochs_are_errors_not_panics() {
        let device = test_device();
        let meta = QueryGalleryMeta::new(vec![0, 0, 1, 1], vec![true; 4], vec![true; 4]);
        let group =
            RetrievalMetrics::new(meta, MetricsConfig::none().with_cmc([1]), &device).unwrap();
        let err = group.metric("map", "5").unwrap_err().to_string();
        assert!(
            err.contains("OVERALL/map/5") && err.contains("OVERALL/cmc/1"),
            "{err}"
        );

        let guard = StepGuard::default();
        let group = group.with_guard(guard.clone());
        let mut h = [group.metric("cmc", "1").unwrap()];
        // Three of four items: the epoch is incomplete.
        let v = epoch(&mut h, &[(vec![0.0, 1.0, 2.0], vec![0, 1, 2])], 1);
        assert!(v[0].is_nan());
        let e = group.last_error().unwrap();
        assert!(e.contains("3") && e.contains("4"), "{e}");
        assert!(guard.error().is_some());
        // An index outside the dataset.
        let _ = epoch(&mut h, &[(vec![0.0], vec![9])], 1);
        assert!(
            group.last_error().unwrap().contains('9'),
            "{:?}",
            group.last_error()
        );
        // The next complete epoch evaluates again.
        let v = epoch(&mut h, &[(vec![0.0, 0.1, 5.0, 5.1], vec![0, 1, 2, 3])], 1);
        assert_eq!(v, [1.0]);
    }
}
