//! The validation reports of a run, epoch by epoch, and the best epoch by the checkpointing
//! metric.

use oml_interfaces::MetricsReport;
use serde::{Deserialize, Serialize};

use crate::config::Mode;

/// One validation: the epoch (0 = before training) and its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch; 0 is the model before training.
    pub epoch: usize,
    /// The report, in `oml eval`'s shape.
    pub report: MetricsReport,
}

impl EpochRecord {
    /// A record.
    pub fn new(epoch: usize, report: MetricsReport) -> Self {
        Self { epoch, report }
    }
}

/// The best epoch and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Best {
    /// The epoch.
    pub epoch: usize,
    /// Its checkpointing metric.
    pub value: f64,
}

/// Validation history of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The checkpointing metric, flattened (`OVERALL/cmc/1`).
    pub metric: String,
    /// `max` or `min`.
    pub mode: Mode,
    /// Validations in order.
    pub records: Vec<EpochRecord>,
}

/// Reads a flattened `category/metric/param` key from a report.
pub fn lookup(report: &MetricsReport, key: &str) -> Option<f64> {
    report
        .flatten()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

impl History {
    /// An empty history choosing the best by `metric` (flattened key) and `mode`.
    pub fn new(metric: &str, mode: Mode) -> Self {
        Self {
            metric: metric.to_string(),
            mode,
            records: Vec::new(),
        }
    }

    /// Adds (or replaces) the record of an epoch.
    pub fn push(&mut self, record: EpochRecord) {
        self.records.retain(|r| r.epoch != record.epoch);
        self.records.push(record);
        self.records.sort_by_key(|r| r.epoch);
    }

    /// Drops the records after `epoch` (those of a run that was killed before checkpointing them).
    pub fn truncate_after(&mut self, epoch: usize) {
        self.records.retain(|r| r.epoch <= epoch);
    }

    /// The best trained epoch (epoch ≥ 1) by the checkpointing metric; ties keep the earlier.
    pub fn best(&self) -> Option<Best> {
        let mut best: Option<Best> = None;
        for r in self.records.iter().filter(|r| r.epoch > 0) {
            let Some(value) = lookup(&r.report, &self.metric) else {
                continue;
            };
            if best.is_none_or(|b| self.mode.better(value, b.value)) {
                best = Some(Best {
                    epoch: r.epoch,
                    value,
                });
            }
        }
        best
    }

    /// The record of `epoch`.
    pub fn get(&self, epoch: usize) -> Option<&EpochRecord> {
        self.records.iter().find(|r| r.epoch == epoch)
    }

    /// The latest record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.records.last()
    }

    /// The record before training (epoch 0).
    pub fn initial(&self) -> Option<&EpochRecord> {
        self.get(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, cmc: f64) -> EpochRecord {
        let mut r = MetricsReport::default();
        r.insert("OVERALL", "cmc", "1", cmc);
        r.insert("OVERALL", "map", "5", 1.0 - cmc);
        EpochRecord::new(epoch, r)
    }

    #[test]
    fn best_follows_mode_ignores_epoch_zero_and_nan() {
        let mut h = History::new("OVERALL/cmc/1", Mode::Max);
        h.push(rec(0, 0.99));
        assert_eq!(h.best(), None);
        h.push(rec(2, 0.5));
        h.push(rec(1, 0.7));
        h.push(rec(3, f64::NAN));
        h.push(rec(4, 0.7));
        assert_eq!(
            h.best(),
            Some(Best {
                epoch: 1,
                value: 0.7
            })
        );
        let mut m = h.clone();
        m.mode = Mode::Min;
        assert_eq!(m.best().unwrap().epoch, 2);
        let mut by_map = h.clone();
        by_map.metric = "OVERALL/map/5".into();
        assert_eq!(by_map.best().unwrap().epoch, 2);
        h.truncate_after(1);
        assert_eq!(
            h.records.iter().map(|r| r.epoch).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(h.initial().unwrap().epoch, 0);
    }

    #[test]
    fn history_round_trips_through_json() {
        let mut h = History::new("OVERALL/cmc/1", Mode::Max);
        h.push(rec(1, 0.25));
        let back: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }
}
