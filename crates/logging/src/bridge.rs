//! The bridge from Burn's `Learner` to any [`PipelineLogger`].
//!
//! [`LearnerBridge`] implements burn-train's `MetricLogger`, so
//! `SupervisedTraining::with_metric_logger(LearnerBridge::new(logger))` sends every numeric
//! metric the Learner computes to the logger:
//! - each batch's value as `"<split>/<metric>"` at a per-split batch counter (`train/Loss` at
//!   step 1, 2, … over the whole run), every `batch_interval`-th batch;
//! - each epoch's final value as `"epoch/<split>/<metric>"` at step = epoch.
//!
//! `<split>` is `train`, `valid`, `test` or `test/<tag>`. Burn's early stopping and metric-based
//! checkpointing read metrics back through the registered `MetricLogger`s; the bridge keeps
//! per-epoch sums for that, so it can replace Burn's default file logger. Registering any logger
//! removes that default, so add `FileMetricLogger` as well if you want its files.
//!
//! `MetricLogger` methods cannot fail, so logger errors are sent to the `log` crate
//! (`log::warn!`) on the 1st, 10th, 100th, … occurrence, with a count.

use std::collections::HashMap;

use burn_train::logger::MetricLogger;
use burn_train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn_train::metric::{MetricDefinition, MetricId, NumericEntry};
use oml_interfaces::{LoggerError, PipelineLogger};

/// Per (metric, split, epoch) accumulation, enough to answer `read_numeric` as Burn aggregates.
#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    sum: f64,
    count: usize,
    final_value: Option<f64>,
}

/// Forwards a Learner's metrics to a [`PipelineLogger`]. See the [module docs](self).
pub struct LearnerBridge<L: PipelineLogger> {
    logger: L,
    names: HashMap<MetricId, String>,
    acc: HashMap<(String, String, usize), Acc>,
    batches: HashMap<String, u64>,
    batch_interval: u64,
    errors: u64,
}

impl<L: PipelineLogger> std::fmt::Debug for LearnerBridge<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnerBridge")
            .field("batch_interval", &self.batch_interval)
            .finish()
    }
}

/// `train`, `valid`, `test` or `test/<tag>`.
pub fn split_name(split: &Split) -> String {
    match split {
        Split::Train => "train".into(),
        Split::Valid => "valid".into(),
        Split::Test(None) => "test".into(),
        Split::Test(Some(tag)) => format!("test/{tag}"),
    }
}

impl<L: PipelineLogger> LearnerBridge<L> {
    /// Forwards every batch value and every epoch value to `logger`.
    pub fn new(logger: L) -> Self {
        Self {
            logger,
            names: HashMap::new(),
            acc: HashMap::new(),
            batches: HashMap::new(),
            batch_interval: 1,
            errors: 0,
        }
    }

    /// Forwards batch values only every `n`-th batch of each split; 0 forwards epoch values only.
    pub fn with_batch_interval(mut self, n: u64) -> Self {
        self.batch_interval = n;
        self
    }

    /// The wrapped logger.
    pub fn logger(&self) -> &L {
        &self.logger
    }

    /// The wrapped logger, mutably.
    pub fn logger_mut(&mut self) -> &mut L {
        &mut self.logger
    }

    /// Returns the wrapped logger.
    pub fn into_inner(self) -> L {
        self.logger
    }

    /// How many logger calls failed so far.
    pub fn error_count(&self) -> u64 {
        self.errors
    }

    fn forward(&mut self, step: u64, values: &[(String, f64)]) {
        let refs: Vec<(&str, f64)> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        if let Err(e) = self.logger.log_scalars(step, &refs) {
            self.report(&e);
        }
    }

    fn report(&mut self, e: &LoggerError) {
        self.errors += 1;
        let n = self.errors;
        // 1, 10, 100, …: visible, never one line per step.
        if is_power_of_ten(n) {
            log::warn!("oml-logging: a logger call from the Learner failed ({n} so far): {e}");
        }
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

impl<L: PipelineLogger> MetricLogger for LearnerBridge<L> {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let split_key = split_name(split);
        let mut batch_values = Vec::new();
        let mut epoch_values = Vec::new();
        for nu in &update.entries_numeric {
            let Some(name) = self.names.get(&nu.entry.metric_id).cloned() else {
                continue;
            };
            let serialized = &nu.entry.serialized_entry;
            if !serialized.is_not_available()
                && let Ok(entry) = NumericEntry::deserialize(&serialized.serialized)
            {
                let acc = self
                    .acc
                    .entry((name.clone(), split_key.clone(), epoch))
                    .or_default();
                match entry {
                    NumericEntry::Value(v) => {
                        acc.sum += v;
                        acc.count += 1;
                    }
                    NumericEntry::Aggregated {
                        aggregated_value,
                        count,
                    } => {
                        acc.sum += aggregated_value * count as f64;
                        acc.count += count;
                    }
                    NumericEntry::Final(v) => acc.final_value = Some(v),
                }
            }
            match &nu.numeric_entry {
                Some(NumericEntry::Final(v)) => {
                    epoch_values.push((format!("epoch/{split_key}/{name}"), *v))
                }
                Some(e) => batch_values.push((format!("{split_key}/{name}"), e.current())),
                None => {}
            }
        }
        if !batch_values.is_empty() {
            let counter = self.batches.entry(split_key).or_default();
            *counter += 1;
            let step = *counter;
            if self.batch_interval > 0 && step.is_multiple_of(self.batch_interval) {
                self.forward(step, &batch_values);
            }
        }
        if !epoch_values.is_empty() {
            self.forward(epoch as u64, &epoch_values);
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        let Some(acc) = self.acc.get(&(name.to_string(), split_name(split), epoch)) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if acc.count > 0 {
            out.push(NumericEntry::Aggregated {
                aggregated_value: acc.sum / acc.count as f64,
                count: acc.count,
            });
        }
        if let Some(v) = acc.final_value {
            out.push(NumericEntry::Final(v));
        }
        Ok(out)
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id, definition.name.to_string());
    }

    fn log_epoch_summary(&mut self, _summary: EpochSummary) {}
}
