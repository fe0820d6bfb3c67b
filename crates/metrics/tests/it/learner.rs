//! The retrieval metrics inside Burn's real `SupervisedTraining`: what the Learner records for
//! each validation epoch equals `evaluate` on the embeddings of the model it trained.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::prelude::*;
use burn::train::metric::Metric;
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{
    InferenceStep, Learner, LearnerSummary, SupervisedTraining, TrainOutput, TrainStep,
};
use oml_interfaces::OVERALL;
use oml_interfaces::device::test_device;
use oml_interfaces::learner::{EmbeddingOutput, StepGuard, StepOutput};
use oml_metrics::learner::RetrievalMetrics;
use oml_metrics::{EvalHooks, MetricsConfig, QueryGalleryMeta, evaluate};

const N: usize = 48;
const DIM: usize = 6;

#[derive(Debug, Clone)]
struct Item {
    x: Vec<f32>,
    label: i64,
    index: usize,
}

#[derive(Debug, Clone)]
struct Batch {
    x: Tensor<2>,
    indices: Vec<usize>,
}

#[derive(Clone)]
struct ItemBatcher;

impl Batcher<Item, Batch> for ItemBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> Batch {
        let x: Vec<f32> = items.iter().flat_map(|i| i.x.clone()).collect();
        Batch {
            x: Tensor::from_data(TensorData::new(x, [items.len(), DIM]), device),
            indices: items.iter().map(|i| i.index).collect(),
        }
    }
}

/// A linear embedder; its "loss" (the mean embedding) only gives the Learner a step to run.
#[derive(Module, Debug)]
struct Embedder {
    linear: Linear,
    #[module(skip)]
    guard: StepGuard,
}

impl TrainStep for Embedder {
    type Input = Batch;
    type Output = StepOutput;

    fn step(&self, batch: Batch) -> TrainOutput<StepOutput> {
        let device = batch.x.device();
        let loss = self.linear.forward(batch.x).mean().reshape([1]);
        let out = oml_interfaces::LossOutput {
            loss,
            logs: Default::default(),
        };
        self.guard
            .train_output::<_, oml_interfaces::LossError>(self, Ok(out), &device)
    }
}

impl InferenceStep for Embedder {
    type Input = Batch;
    type Output = EmbeddingOutput;

    fn step(&self, batch: Batch) -> EmbeddingOutput {
        EmbeddingOutput {
            embeddings: self.linear.forward(batch.x),
            indices: batch.indices,
        }
    }
}

fn items() -> Vec<Item> {
    (0..N)
        .map(|i| Item {
            x: (0..DIM)
                .map(|d| {
                    (((i * 37 + d * 11) % 23) as f32 / 23.0 - 0.5) + (i % 4 == d % 4) as u8 as f32
                })
                .collect(),
            label: (i % 4) as i64,
            index: i,
        })
        .collect()
}

#[test]
fn the_learner_records_what_evaluate_computes() {
    let device = test_device();
    let data = items();
    let meta = QueryGalleryMeta::new(
        data.iter().map(|i| i.label).collect(),
        vec![true; N],
        vec![true; N],
    );
    let config = MetricsConfig::none().with_cmc([1, 3]).with_map([3]);
    // Batches of 10 (the last one short), two workers: rows arrive in any order.
    let loader = |shuffle: Option<u64>| -> Arc<dyn DataLoader<Batch>> {
        let b = DataLoaderBuilder::new(ItemBatcher)
            .batch_size(10)
            .num_workers(2);
        let b = match shuffle {
            Some(seed) => b.shuffle(seed),
            None => b,
        };
        b.build(InMemDataset::new(data.clone()))
    };
    let dir = tempfile::tempdir().unwrap();
    // A zero learning rate: the model, so each epoch's values, stay those of the returned model.
    let training = SupervisedTraining::new(dir.path(), loader(Some(1)), loader(None))
        .num_epochs(2)
        .renderer(Box::new(CliMetricsRenderer::new()))
        .with_application_logger(None);
    let guard = StepGuard::new(training.interrupter());
    let retrieval = RetrievalMetrics::new(meta.clone(), config.clone(), &device)
        .unwrap()
        .with_guard(guard.clone());
    let values = retrieval.all();
    let names: Vec<String> = values.iter().map(|m| m.name().to_string()).collect();
    assert_eq!(names, ["cmc@1", "cmc@3", "map@3"]);
    let training = values
        .into_iter()
        .fold(training, |t, m| t.metric_valid_numeric(m));
    let model = Embedder {
        linear: LinearConfig::new(DIM, DIM).init(&device),
        guard: guard.clone(),
    };
    let result = training.launch(Learner::new(model.train(), SgdConfig::new().init(), 0.0));
    assert!(result.error.is_none(), "{:?}", result.error);
    assert_eq!(guard.error(), None);

    let x: Vec<f32> = data.iter().flat_map(|i| i.x.clone()).collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [N, DIM]), &device);
    let emb = result
        .model
        .linear
        .forward(x)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let want = evaluate(&emb, DIM, &meta, &config, &device, &EvalHooks::default())
        .unwrap()
        .report;
    assert_eq!(retrieval.last_report().as_ref(), Some(&want));
    let summary = LearnerSummary::new(dir.path(), &names).unwrap();
    assert_eq!(summary.epochs, 2);
    assert_eq!(summary.metrics.valid.len(), 3);
    for m in &summary.metrics.valid {
        let (metric, param) = m.name.split_once('@').unwrap();
        let w = want.get(OVERALL, metric, param).unwrap();
        // One entry per epoch, each the model's value (it did not change).
        assert_eq!(m.entries.len(), 2, "{}", m.name);
        for e in &m.entries {
            assert!((e.value - w).abs() < 1e-9, "{}: {} vs {w}", m.name, e.value);
        }
    }
}
