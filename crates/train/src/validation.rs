//! Validation inside the Learner, and the per-step training logs.
//!
//! The Learner's validation values are oml-metrics' [`RetrievalMetrics`] (the same Burn
//! metrics a library user registers): rows collected by dataset index over the validation
//! epoch, evaluated once on Burn's event-processor thread at the end of the split. What is
//! evaluated is [`EpochScoring`]: the pipeline's scorer (OML's `EmbeddingMetrics`, or the
//! re-ranked retrieval of a post-processor), which also records the report (history, loggers,
//! figures, console).
//!
//! [`RetrievalMetrics`]: oml_metrics::learner::RetrievalMetrics

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::prelude::*;
use burn::tensor::TensorReadError;
use burn::train::metric::{Metric, MetricMetadata, MetricName, SerializedEntry};
use oml_interfaces::{MetricsReport, PipelineLogger};
use oml_metrics::RowCollector;
use oml_metrics::learner::EpochEvaluator;

use crate::error::TrainError;
use crate::model::EpochStepOutput;

/// Embeddings on the host, one row per dataset item.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// Number of rows.
    pub rows: usize,
    /// Size of each row.
    pub dim: usize,
    /// Row-major `rows × dim`.
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Fails on the first row that is not finite: the model's own output, so the cause is its
    /// weights (a diverged training step, a broken checkpoint), not the data.
    pub fn check_finite(&self) -> Result<(), TrainError> {
        let Some(p) = self.data.iter().position(|x| !x.is_finite()) else {
            return Ok(());
        };
        let (item, column) = (p / self.dim.max(1), p % self.dim.max(1));
        Err(TrainError::ModelOutput(format!(
            "the embedding of item {item} has {} at column {column}: the model's weights are \
             probably not finite (a diverged training step: lower the learning rate; or a broken \
             checkpoint)",
            self.data[p]
        )))
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows `ids`, in that order.
    pub fn select(&self, ids: &[usize]) -> Embeddings {
        let mut data = Vec::with_capacity(ids.len() * self.dim);
        for &i in ids {
            data.extend_from_slice(self.row(i));
        }
        Embeddings {
            rows: ids.len(),
            dim: self.dim,
            data,
        }
    }

    /// As a `[rows, dim]` tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), [self.rows, self.dim]),
            device,
        )
    }

    /// Reads a `[B, D]` tensor to the host.
    pub fn from_tensor(t: Tensor<2>) -> Result<Self, TensorReadError> {
        let [rows, dim] = t.dims();
        let data = t
            .try_into_data_as::<f32>()?
            .try_to_vec::<f32>()
            .unwrap_or_default();
        Ok(Self { rows, dim, data })
    }
}

/// Scores the rows of an epoch and does what the pipeline does with the report (history,
/// loggers, figures, console).
pub type OnEpoch = Box<dyn FnMut(usize, &Embeddings) -> Result<MetricsReport, TrainError> + Send>;

/// The pipelines' validation as the [`EpochEvaluator`] behind oml-metrics'
/// [`RetrievalMetrics`](oml_metrics::learner::RetrievalMetrics): the rows the model produced for
/// every validation item (embeddings, or a re-ranker's pair scores), handed to [`OnEpoch`]
/// with the epoch being validated.
pub struct EpochScoring {
    rows: RowCollector,
    keys: BTreeSet<String>,
    epoch: Arc<AtomicUsize>,
    on_epoch: OnEpoch,
}

impl EpochScoring {
    /// `n` rows per epoch, reported under `keys`; `epoch` says which epoch is being validated.
    pub fn new(
        n: usize,
        keys: BTreeSet<String>,
        epoch: Arc<AtomicUsize>,
        on_epoch: OnEpoch,
    ) -> Self {
        Self {
            rows: RowCollector::new(n),
            keys,
            epoch,
            on_epoch,
        }
    }
}

impl EpochEvaluator for EpochScoring {
    type Error = TrainError;

    fn report_keys(&self) -> BTreeSet<String> {
        self.keys.clone()
    }

    fn start_epoch(&mut self) {
        let n = self.rows.expected();
        self.rows.reset(n);
    }

    fn add_rows(&mut self, rows: &[f32], dim: usize, indices: &[usize]) -> Result<(), TrainError> {
        Ok(self.rows.add(rows, dim, indices)?)
    }

    fn evaluate(&mut self) -> Result<MetricsReport, TrainError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let n = self.rows.expected();
        let on_epoch = &mut self.on_epoch;
        let rows = self.rows.take().map_err(TrainError::from);
        rows.and_then(|(data, dim)| on_epoch(epoch, &Embeddings { rows: n, dim, data }))
            .map_err(|e| TrainError::Training(format!("validation of epoch {epoch}: {e}")))
    }
}

/// `cmc/1 0.1234  map/5 0.5678 …` over the OVERALL values.
pub fn summary_line(report: &MetricsReport) -> String {
    report
        .flatten()
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("OVERALL/").map(|k| format!("{k} {v:.4}")))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Burn metric logging each training step (loss, criterion logs, learning rate) to a pipeline
/// logger at a global step that continues across epochs and resumes.
#[derive(Clone)]
pub struct StepLogs<L: PipelineLogger + Clone + Send + Sync> {
    logger: L,
    loss_name: String,
    batches_per_epoch: usize,
    name: MetricName,
    errors: Arc<AtomicUsize>,
}

impl<L: PipelineLogger + Clone + Send + Sync> StepLogs<L> {
    /// Logs to `logger` as `"{criterion_name}_loss"`; steps count `batches_per_epoch` per epoch.
    pub fn new(logger: L, criterion_name: &str, batches_per_epoch: usize) -> Self {
        Self {
            logger,
            loss_name: format!("{criterion_name}_loss"),
            batches_per_epoch,
            name: Arc::new("step logs".to_string()),
            errors: Arc::default(),
        }
    }

    /// Logger calls that failed (they never stop training).
    pub fn errors(&self) -> usize {
        self.errors.load(Ordering::Relaxed)
    }
}

impl<L: PipelineLogger + Clone + Send + Sync> Metric for StepLogs<L> {
    type Input = EpochStepOutput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        item: &EpochStepOutput,
        meta: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let loss: f64 = item.step.loss.clone().try_into_scalar::<f32>()? as f64;
        let mut values = vec![(self.loss_name.clone(), loss)];
        for (k, v) in &item.step.logs {
            values.push((k.clone(), v.clone().try_into_scalar::<f32>()? as f64));
        }
        if let Some(lr) = &meta.lr {
            values.push(("lr".to_string(), lr.base()));
        }
        let iteration = meta.iteration.unwrap_or(0);
        let step = (item.epoch.saturating_sub(1) * self.batches_per_epoch + iteration) as u64;
        let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        if self.logger.log_scalars(step, &refs).is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let text = values
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join("  ");
        Ok(SerializedEntry::new(text.clone(), text))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(SerializedEntry::not_available(None))
    }

    fn clear(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EmbeddingOutput, StepGuard};
    use oml_metrics::learner::{RetrievalMetric, RetrievalMetrics, drive_epoch};
    use std::sync::{Mutex, PoisonError};

    #[test]
    fn non_finite_embeddings_blame_the_weights() {
        let ok = Embeddings {
            rows: 2,
            dim: 2,
            data: vec![0.0, 1.0, 2.0, 3.0],
        };
        assert!(ok.check_finite().is_ok());
        let nan = Embeddings {
            rows: 2,
            dim: 2,
            data: vec![0.0, 1.0, 2.0, f32::NAN],
        };
        let msg = nan.check_finite().unwrap_err().to_string();
        assert!(
            msg.contains("item 1") && msg.contains("column 1") && msg.contains("weights"),
            "{msg}"
        );
    }

    /// One validation epoch of `(rows, indices)` batches through oml-metrics' `drive_epoch`.
    fn run_epoch(
        handles: &mut [RetrievalMetric<EpochScoring>],
        batches: &[(Vec<[f32; 2]>, Vec<usize>)],
    ) -> Vec<f64> {
        let device = oml_interfaces::device::test_device();
        let batches: Vec<EmbeddingOutput> = batches
            .iter()
            .map(|(rows, indices)| EmbeddingOutput {
                embeddings: Tensor::from_data(
                    TensorData::new(rows.concat(), [rows.len(), 2]),
                    &device,
                ),
                indices: indices.clone(),
            })
            .collect();
        drive_epoch(handles, &batches).unwrap()
    }

    /// The scorer sees the epoch being validated and the rows placed by index (the first of a
    /// repeated index kept), once per epoch whatever the number of handles; each handle reads
    /// its value from the scorer's report.
    #[test]
    fn epoch_scoring_hands_the_epochs_rows_to_the_scorer_once() {
        let epoch = Arc::new(AtomicUsize::new(4));
        let seen: Arc<Mutex<Vec<(usize, Embeddings)>>> = Arc::default();
        let on_epoch: OnEpoch = {
            let seen = seen.clone();
            Box::new(move |ep, e: &Embeddings| {
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((ep, e.clone()));
                let mut r = MetricsReport::default();
                r.insert(
                    "OVERALL",
                    "sum",
                    "1",
                    e.data.iter().map(|x| *x as f64).sum(),
                );
                r.insert("OVERALL", "first", "1", e.data[0] as f64);
                Ok(r)
            })
        };
        let keys = ["OVERALL/first/1", "OVERALL/sum/1"]
            .map(String::from)
            .into();
        let scoring = EpochScoring::new(3, keys, epoch.clone(), on_epoch);
        let group = RetrievalMetrics::from_metrics(scoring);
        let mut handles = group.all();
        let batches = [
            (vec![[2.0, 2.0], [0.0, 0.5]], vec![2, 0]),
            (vec![[9.0, 9.0], [1.0, 1.0]], vec![0, 1]),
        ];
        assert_eq!(run_epoch(&mut handles, &batches), [0.0, 6.5]);
        epoch.store(5, Ordering::SeqCst);
        assert_eq!(run_epoch(&mut handles, &batches), [0.0, 6.5]);
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        let want = Embeddings {
            rows: 3,
            dim: 2,
            data: vec![0.0, 0.5, 1.0, 1.0, 2.0, 2.0],
        };
        assert_eq!(*seen, [(4, want.clone()), (5, want)]);
        assert_eq!(group.last_error(), None);
    }

    /// An epoch that missed items, or a batch outside the dataset, fails the run's guard (and
    /// the scorer never runs); the next complete epoch is scored again.
    #[test]
    fn a_bad_validation_epoch_fails_the_guard() {
        let calls = Arc::new(AtomicUsize::new(0));
        let on_epoch: OnEpoch = {
            let calls = calls.clone();
            Box::new(move |_, _: &Embeddings| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(MetricsReport::default())
            })
        };
        let keys = ["OVERALL/x/1".to_string()].into();
        let guard = StepGuard::default();
        let group = RetrievalMetrics::from_metrics(EpochScoring::new(
            3,
            keys,
            Arc::new(AtomicUsize::new(2)),
            on_epoch,
        ))
        .with_guard(guard.clone());
        let mut handles = group.all();
        let v = run_epoch(&mut handles, &[(vec![[1.0, 2.0]], vec![0])]);
        assert!(v[0].is_nan());
        let e = guard.error().unwrap_or_default();
        assert!(
            e.contains("validation of epoch 2") && e.contains("1 of 3"),
            "{e}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        run_epoch(&mut handles, &[(vec![[1.0, 1.0]], vec![3])]);
        let e = group.last_error().unwrap_or_default();
        assert!(e.contains("index 3 is outside 0..3"), "{e}");
        let whole = [(vec![[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], vec![0, 1, 2])];
        run_epoch(&mut handles, &whole);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
