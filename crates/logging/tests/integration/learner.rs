//! Burn's Learner reporting through `LearnerBridge`, and the bridge's `read_numeric` checked
//! against Burn's own `InMemoryMetricLogger`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Linear, LinearConfig};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::logger::{InMemoryMetricLogger, MetricLogger};
use burn::train::metric::store::{MetricsUpdate, NumericMetricUpdate, Split};
use burn::train::metric::{
    LossMetric, MetricAttributes, MetricDefinition, MetricEntry, MetricId, NumericEntry,
    SerializedEntry,
};
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{
    InferenceStep, Learner, RegressionOutput, SupervisedTraining, TrainOutput, TrainStep,
};
use oml_logging::local::read_metrics_csv;
use oml_logging::{LearnerBridge, LocalLogger, PipelineLogger, RunStatus, SharedLogger};

#[derive(Module, Debug)]
struct Regressor {
    lin: Linear,
}

type Batch = (Tensor<2>, Tensor<2>);

impl Regressor {
    fn forward(&self, (x, y): Batch) -> RegressionOutput {
        let out = self.lin.forward(x);
        let loss = MseLoss::new().forward(out.clone(), y.clone(), Reduction::Mean);
        RegressionOutput::new(loss, out, y)
    }
}

impl TrainStep for Regressor {
    type Input = Batch;
    type Output = RegressionOutput;
    fn step(&self, item: Batch) -> TrainOutput<RegressionOutput> {
        let out = self.forward(item);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl InferenceStep for Regressor {
    type Input = Batch;
    type Output = RegressionOutput;
    fn step(&self, item: Batch) -> RegressionOutput {
        self.forward(item)
    }
}

#[derive(Clone)]
struct RowBatcher;

impl Batcher<[f32; 3], Batch> for RowBatcher {
    fn batch(&self, items: Vec<[f32; 3]>, device: &Device) -> Batch {
        let n = items.len();
        let x: Vec<f32> = items.iter().flat_map(|r| [r[0], r[1]]).collect();
        let y: Vec<f32> = items.iter().map(|r| r[2]).collect();
        (
            Tensor::from_data(TensorData::new(x, [n, 2]), device),
            Tensor::from_data(TensorData::new(y, [n, 1]), device),
        )
    }
}

fn rows(n: usize, offset: f32) -> Vec<[f32; 3]> {
    (0..n)
        .map(|i| {
            let (a, b) = (i as f32 / n as f32 + offset, (i % 3) as f32 - 1.0);
            [a, b, 2.0 * a - b + 0.5]
        })
        .collect()
}

#[test]
fn learner_metrics_reach_the_pipeline_logger() {
    let device = oml_interfaces::device::test_device().autodiff();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let shared =
        SharedLogger::new(LocalLogger::with_flush_interval(&run_dir, Duration::ZERO).unwrap());

    let train = DataLoaderBuilder::new(RowBatcher)
        .batch_size(4)
        .set_device(device.clone())
        .build(InMemDataset::new(rows(16, 0.0)));
    let valid = DataLoaderBuilder::new(RowBatcher)
        .batch_size(4)
        .set_device(device.clone())
        .build(InMemDataset::new(rows(8, 0.05)));
    let model = Regressor {
        lin: LinearConfig::new(2, 1).init(&device),
    };
    let learner = Learner::new(model, AdamConfig::new().init(), 1e-2);
    let result = SupervisedTraining::new(dir.path().join("burn"), train, valid)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .num_epochs(2)
        .with_metric_logger(LearnerBridge::new(shared.clone()))
        .renderer(Box::new(CliMetricsRenderer::new()))
        .with_application_logger(None)
        .launch(learner);
    assert!(result.error.is_none(), "{:?}", result.error);
    let mut logger = shared;
    logger.finish(RunStatus::Finished).unwrap();

    let records = read_metrics_csv(&run_dir).unwrap();
    let series = |name: &str| -> Vec<(u64, f64)> {
        records
            .iter()
            .filter(|r| r.name == name)
            .map(|r| (r.step, r.value))
            .collect()
    };
    let train_batches = series("train/Loss");
    let valid_batches = series("valid/Loss");
    // 16 items / 4 = 4 train batches and 8 / 4 = 2 valid batches per epoch, counted over the run.
    assert_eq!(
        train_batches.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert_eq!(
        valid_batches.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=4).collect::<Vec<_>>()
    );
    let train_epochs = series("epoch/train/Loss");
    let valid_epochs = series("epoch/valid/Loss");
    assert_eq!(
        train_epochs.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        valid_epochs.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // Oracle: with equal batch sizes, an epoch's loss is the mean of its batch losses.
    for epoch in 0..2 {
        let mean = |b: &[(u64, f64)], per: usize| {
            b[epoch * per..(epoch + 1) * per]
                .iter()
                .map(|p| p.1)
                .sum::<f64>()
                / per as f64
        };
        assert!(
            (train_epochs[epoch].1 - mean(&train_batches, 4)).abs() < 1e-5,
            "train epoch {}",
            epoch + 1
        );
        assert!(
            (valid_epochs[epoch].1 - mean(&valid_batches, 2)).abs() < 1e-5,
            "valid epoch {}",
            epoch + 1
        );
    }
    assert!(train_batches.iter().all(|p| p.1.is_finite() && p.1 >= 0.0));
}

/// Burn's aggregation of `read_numeric` entries (`NumericMetricsAggregate::aggregate`): the last
/// `Final` entry if any, else the count-weighted mean.
fn burn_mean(points: &[NumericEntry]) -> Option<f64> {
    if let Some(NumericEntry::Final(v)) = points.last() {
        return Some(*v);
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for p in points {
        match p {
            NumericEntry::Value(v) => {
                sum += v;
                n += 1;
            }
            NumericEntry::Aggregated {
                aggregated_value,
                count,
            } => {
                sum += aggregated_value * *count as f64;
                n += count;
            }
            NumericEntry::Final(_) => unreachable!("Final only comes last"),
        }
    }
    (n > 0).then(|| sum / n as f64)
}

/// Records scalars in memory.
#[derive(Default)]
struct Recorder(BTreeMap<String, Vec<(u64, f64)>>);

impl PipelineLogger for Recorder {
    fn log_pipeline_info(
        &mut self,
        _: &serde_json::Value,
        _: &[String],
        _: Option<&std::path::Path>,
    ) -> Result<(), oml_logging::LoggerError> {
        Ok(())
    }
    fn log_scalars(
        &mut self,
        step: u64,
        values: &[(&str, f64)],
    ) -> Result<(), oml_logging::LoggerError> {
        for (k, v) in values {
            self.0.entry((*k).to_string()).or_default().push((step, *v));
        }
        Ok(())
    }
    fn log_figure(
        &mut self,
        _: &str,
        _: &oml_logging::Figure,
        _: u64,
    ) -> Result<(), oml_logging::LoggerError> {
        Ok(())
    }
    fn finish(&mut self, _: RunStatus) -> Result<(), oml_logging::LoggerError> {
        Ok(())
    }
}

#[test]
fn read_numeric_aggregates_like_burns_in_memory_logger() {
    let names = ["Loss", "Accuracy"];
    let defs: Vec<MetricDefinition> = names
        .iter()
        .map(|n| MetricDefinition {
            metric_id: MetricId::new(Arc::new((*n).to_string())),
            name: Arc::new((*n).to_string()),
            description: None,
            attributes: MetricAttributes::None,
        })
        .collect();
    let mut bridge = LearnerBridge::new(Recorder::default()).with_batch_interval(2);
    let mut oracle = InMemoryMetricLogger::new();
    for d in &defs {
        bridge.log_metric_definition(d.clone());
        oracle.log_metric_definition(d.clone());
    }
    // A deterministic mix of per-batch Value / Aggregated entries and epoch Final entries.
    let mut seed = 7u64;
    let mut rnd = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) as f64 / (1u64 << 31) as f64
    };
    let entry = |def: &MetricDefinition, e: NumericEntry| {
        NumericMetricUpdate::new(
            MetricEntry::new(
                def.metric_id.clone(),
                SerializedEntry::new(String::new(), e.serialize()),
            ),
            Some(e),
            None,
        )
    };
    let mut batches_sent = BTreeMap::<String, u64>::new();
    for epoch in 1..=3usize {
        for split in [Split::Train, Split::Valid] {
            let n_batches = 3 + epoch;
            for b in 0..n_batches {
                let updates: Vec<NumericMetricUpdate> = defs
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let v = rnd();
                        let e = if (b + i) % 2 == 0 {
                            NumericEntry::Value(v)
                        } else {
                            NumericEntry::Aggregated {
                                aggregated_value: v,
                                count: 1 + b % 4,
                            }
                        };
                        entry(d, e)
                    })
                    .collect();
                let upd = MetricsUpdate::new(Vec::new(), updates);
                bridge.log(upd.clone(), epoch, &split);
                oracle.log(upd, epoch, &split);
                *batches_sent.entry(split.to_string()).or_default() += 1;
            }
            // Accuracy gets a Final value at the end of the epoch; Loss does not.
            let fin = MetricsUpdate::new(
                Vec::new(),
                vec![entry(&defs[1], NumericEntry::Final(rnd()))],
            );
            bridge.log(fin.clone(), epoch, &split);
            oracle.log(fin, epoch, &split);
        }
    }
    for name in names {
        for split in [Split::Train, Split::Valid] {
            for epoch in 1..=4usize {
                let ours = burn_mean(&bridge.read_numeric(name, epoch, &split).unwrap());
                let theirs = burn_mean(&oracle.read_numeric(name, epoch, &split).unwrap());
                match (ours, theirs) {
                    (Some(a), Some(b)) => {
                        assert!((a - b).abs() < 1e-12, "{name} {split} {epoch}: {a} vs {b}")
                    }
                    (a, b) => assert_eq!(a, b, "{name} {split} {epoch}"),
                }
            }
        }
    }
    let rec = bridge.into_inner().0;
    // Batch values every 2nd batch of each split, epoch values at the epoch.
    let train_steps: Vec<u64> = rec["train/Loss"].iter().map(|p| p.0).collect();
    let expected: Vec<u64> = (1..=batches_sent["train"]).filter(|s| s % 2 == 0).collect();
    assert_eq!(train_steps, expected);
    assert_eq!(
        rec["epoch/valid/Accuracy"]
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        !rec.contains_key("epoch/train/Loss"),
        "no Final entry, no epoch value"
    );
}
