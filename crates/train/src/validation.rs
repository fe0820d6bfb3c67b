//! Validation inside the Learner: embeddings accumulated by dataset index over the validation
//! epoch, then evaluated once (OML's `EmbeddingMetrics` through `MetricValCallback`), and the
//! per-step training logs.
//!
//! Burn computes metrics on its event-processor thread at the end of each split; the
//! [`RetrievalValidation`] metric hands the epoch's embeddings to a shared [`ValidationHub`],
//! which evaluates them and calls the pipeline's report hook (history, loggers, figures).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use burn::prelude::*;
use burn::tensor::TensorReadError;
use burn::train::metric::{Metric, MetricMetadata, MetricName, SerializedEntry};
use oml_interfaces::{MetricsReport, PipelineLogger};
use oml_metrics::{MetricError, RowCollector};

use crate::error::TrainError;
use crate::model::{EmbeddingOutput, EpochStepOutput, StepGuard};

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

/// Evaluates the validation embeddings of an epoch and does what the pipeline does with the
/// report (history, loggers, figures, console).
pub type OnEpoch = Box<dyn FnMut(usize, &Embeddings) -> Result<MetricsReport, String> + Send>;

/// The state shared by the validation metric: the embeddings of the current epoch and what to
/// do with them.
pub struct ValidationHub {
    acc: RowCollector,
    epoch: Arc<AtomicUsize>,
    on_epoch: OnEpoch,
    guard: StepGuard,
    last: Option<(usize, MetricsReport)>,
}

impl ValidationHub {
    /// A hub for `n` validation items; `epoch` says which epoch is being validated.
    pub fn new(n: usize, epoch: Arc<AtomicUsize>, on_epoch: OnEpoch, guard: StepGuard) -> Self {
        Self {
            acc: RowCollector::new(n),
            epoch,
            on_epoch,
            guard,
            last: None,
        }
    }

    /// The latest `(epoch, report)`.
    pub fn last(&self) -> Option<&(usize, MetricsReport)> {
        self.last.as_ref()
    }

    fn add(&mut self, batch: &Embeddings, indices: &[usize]) {
        if let Err(e) = self.acc.add(&batch.data, batch.dim, indices) {
            self.guard.fail(format!("validation: {e}"));
        }
    }

    /// Evaluates the epoch's embeddings (if any) and returns a one-line summary.
    fn compute(&mut self) -> Option<String> {
        if self.acc.is_empty() {
            return None;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let n = self.acc.expected();
        let result = match self.acc.take() {
            Ok((data, dim)) => (self.on_epoch)(epoch, &Embeddings { rows: n, dim, data }),
            Err(MetricError::Incomplete { seen, expected }) => Err(format!(
                "incomplete validation: {seen} of {expected} items were embedded"
            )),
            Err(e) => Err(e.to_string()),
        };
        self.acc.reset(n);
        match result {
            Ok(report) => {
                let summary = summary_line(&report);
                self.last = Some((epoch, report));
                Some(summary)
            }
            Err(e) => {
                self.guard.fail(format!("validation of epoch {epoch}: {e}"));
                None
            }
        }
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

/// Burn metric feeding the validation embeddings to a [`ValidationHub`].
#[derive(Clone)]
pub struct RetrievalValidation {
    hub: Arc<Mutex<ValidationHub>>,
    name: MetricName,
}

impl RetrievalValidation {
    /// A metric over `hub`.
    pub fn new(hub: Arc<Mutex<ValidationHub>>) -> Self {
        Self {
            hub,
            name: Arc::new("retrieval".to_string()),
        }
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, ValidationHub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Metric for RetrievalValidation {
    type Input = EmbeddingOutput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        item: &EmbeddingOutput,
        _m: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let batch = Embeddings::from_tensor(item.embeddings.clone())?;
        self.hub().add(&batch, &item.indices);
        Ok(SerializedEntry::not_available(None))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(match self.hub().compute() {
            Some(line) => SerializedEntry::new(line.clone(), line),
            None => SerializedEntry::not_available(None),
        })
    }

    fn clear(&mut self) {}
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

    use super::*;

    fn emb(rows: &[[f32; 2]]) -> Embeddings {
        Embeddings {
            rows: rows.len(),
            dim: 2,
            data: rows.iter().flatten().copied().collect(),
        }
    }

    #[test]
    fn hub_evaluates_once_per_epoch_and_reports_the_epoch() {
        let epoch = Arc::new(AtomicUsize::new(4));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let on_epoch: OnEpoch = Box::new(move |ep, e: &Embeddings| {
            let mut r = MetricsReport::default();
            r.insert(
                "OVERALL",
                "sum",
                "1",
                e.data.iter().map(|x| *x as f64).sum(),
            );
            seen2
                .lock()
                .unwrap()
                .push((ep, r.get("OVERALL", "sum", "1")));
            Ok(r)
        });
        let mut hub = ValidationHub::new(2, epoch, on_epoch, StepGuard::default());
        assert_eq!(hub.compute(), None);
        hub.add(&emb(&[[1.0, 2.0], [3.0, 4.0]]), &[0, 1]);
        assert_eq!(hub.compute().unwrap(), "sum/1 10.0000");
        assert_eq!(*seen.lock().unwrap(), vec![(4, Some(10.0))]);
        assert_eq!(hub.compute(), None); // cleared
    }

    #[test]
    fn hub_places_rows_by_index_keeps_first_duplicate_and_reports_bad_batches() {
        let guard = StepGuard::default();
        let got = Arc::new(Mutex::new(None));
        let got2 = got.clone();
        let on_epoch: OnEpoch = Box::new(move |_, e: &Embeddings| {
            *got2.lock().unwrap() = Some(e.clone());
            Ok(MetricsReport::default())
        });
        let mut hub = ValidationHub::new(3, Arc::default(), on_epoch, guard.clone());
        hub.add(&emb(&[[2.0, 2.0], [0.0, 0.0]]), &[2, 0]);
        hub.add(&emb(&[[9.0, 9.0], [1.0, 1.0]]), &[0, 1]);
        assert_eq!(guard.error(), None);
        assert_eq!(hub.compute().as_deref(), Some(""));
        assert_eq!(
            *got.lock().unwrap(),
            Some(Embeddings {
                rows: 3,
                dim: 2,
                data: vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
            })
        );
        hub.add(&emb(&[[1.0, 1.0]]), &[3]);
        assert!(
            guard
                .error()
                .unwrap()
                .contains("validation: index 3 is outside 0..3"),
            "{:?}",
            guard.error()
        );
    }

    #[test]
    fn incomplete_validation_fails_the_guard() {
        let guard = StepGuard::default();
        let on_epoch: OnEpoch = Box::new(|_, _: &Embeddings| Ok(MetricsReport::default()));
        let mut hub = ValidationHub::new(3, Arc::default(), on_epoch, guard.clone());
        hub.add(&emb(&[[1.0, 2.0]]), &[0]);
        assert_eq!(hub.compute(), None);
        assert!(
            guard.error().unwrap().contains("1 of 3"),
            "{:?}",
            guard.error()
        );
    }
}
