//! Metric learning with Burn's own `SupervisedTraining` / `Learner`, from the oml-rs sub-crates:
//! a user dataset (Fashion-MNIST, shipped in `data/`), OML's P×K batches (oml-sampling), a user
//! model implementing `Extractor`, `TripletLossWithMiner` as the loss (oml-mining), and OML's
//! retrieval metrics (oml-metrics) reported by the Learner after every validation epoch.
//!
//! Trains on classes 0-4 and validates retrieval on the unseen classes 5-9, every validation
//! image a query and a gallery item, as OML's benchmarks do.
//!
//! ```text
//! cargo run -p oml-examples --example train_learner -- --epochs 20
//! ```

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::train::metric::{LossMetric, Metric};
use burn::train::{
    InferenceStep, Learner, LearnerSummary, SupervisedTraining, TrainOutput, TrainStep,
};
use oml_datasets::fashion_mnist::{read_idx_images, read_idx_labels};
use oml_interfaces::learner::{EmbeddingOutput, StepGuard, StepOutput};
use oml_interfaces::{Criterion, Extractor, Reduction};
use oml_metrics::learner::RetrievalMetrics;
use oml_metrics::{MetricsConfig, QueryGalleryMeta};
use oml_mining::{HardTripletsMiner, TripletLossWithMiner};
use oml_sampling::{BalanceSampler, PkDataLoader};

/// One image of the user's data set: pixels in [0, 1], its label, its position in the set.
#[derive(Debug, Clone)]
struct Item {
    pixels: Vec<f32>,
    label: i64,
    index: usize,
}

/// What a training step gets: images and their labels (the loss mines triplets by label).
#[derive(Debug, Clone)]
struct TrainBatch {
    images: Tensor<4>,
    labels: Vec<i64>,
}

/// What a validation step gets: images and their dataset indices (the metrics place each
/// embedding by index, so the loader may deliver batches in any order).
#[derive(Debug, Clone)]
struct ValidBatch {
    images: Tensor<4>,
    indices: Vec<usize>,
}

fn images(items: &[Item], device: &Device) -> Tensor<4> {
    let pixels: Vec<f32> = items
        .iter()
        .flat_map(|i| i.pixels.iter().copied())
        .collect();
    Tensor::from_data(TensorData::new(pixels, [items.len(), 1, 28, 28]), device)
}

#[derive(Clone)]
struct ItemBatcher;

impl Batcher<Item, TrainBatch> for ItemBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> TrainBatch {
        TrainBatch {
            images: images(&items, device),
            labels: items.iter().map(|i| i.label).collect(),
        }
    }
}

impl Batcher<Item, ValidBatch> for ItemBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> ValidBatch {
        ValidBatch {
            images: images(&items, device),
            indices: items.iter().map(|i| i.index).collect(),
        }
    }
}

/// The user's model: two convolution blocks and a linear head. The criterion and the step
/// guard ride along as non-parameter fields.
#[derive(Module, Debug)]
struct Embedder {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    relu: Relu,
    head: Linear,
    #[module(skip)]
    criterion: Arc<dyn Criterion>,
    #[module(skip)]
    guard: StepGuard,
}

impl Extractor for Embedder {
    fn feat_dim(&self) -> usize {
        self.head.weight.dims()[1]
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self
            .pool
            .forward(self.relu.forward(self.conv1.forward(images)));
        let x = self.pool.forward(self.relu.forward(self.conv2.forward(x)));
        let e = self.head.forward(x.flatten(1, 3));
        // Unit-length embeddings, as OML's extractors with `normalise_features`.
        let norm = e.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        e / norm
    }
}

impl TrainStep for Embedder {
    type Input = TrainBatch;
    type Output = StepOutput;

    fn step(&self, batch: TrainBatch) -> TrainOutput<StepOutput> {
        let device = batch.images.device();
        let embeddings = self.extract(batch.images);
        let result = self.criterion.forward(embeddings, &batch.labels);
        // A criterion error (say, a batch without a valid triplet) stops the run cleanly.
        self.guard.train_output(self, result, &device)
    }
}

impl InferenceStep for Embedder {
    type Input = ValidBatch;
    type Output = EmbeddingOutput;

    fn step(&self, batch: ValidBatch) -> EmbeddingOutput {
        EmbeddingOutput {
            embeddings: self.extract(batch.images),
            indices: batch.indices,
        }
    }
}

/// Fashion-MNIST's test split: the first `per_class` images of each class in `classes`,
/// indexed from 0 in the order kept.
fn load(
    classes: std::ops::Range<u8>,
    per_class: usize,
) -> Result<Vec<Item>, Box<dyn std::error::Error>> {
    let dir = oml_examples::repo_root().join("data/fashion-mnist");
    let imgs = read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz"))?;
    let labels = read_idx_labels(&dir.join("t10k-labels-idx1-ubyte.gz"))?;
    let mut taken = [0usize; 10];
    let mut items = Vec::new();
    for (i, &label) in labels.iter().enumerate() {
        let slot = &mut taken[usize::from(label)];
        if classes.contains(&label) && *slot < per_class {
            *slot += 1;
            items.push(Item {
                pixels: imgs
                    .image(i)
                    .iter()
                    .map(|&p| f32::from(p) / 255.0)
                    .collect(),
                label: i64::from(label),
                index: items.len(),
            });
        }
    }
    Ok(items)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = oml_examples::arg("epochs", 20)?;
    let per_class: usize = oml_examples::arg("per-class", 400)?;
    let lr: f64 = oml_examples::arg("lr", 1e-3)?;
    let device = oml_examples::device()?;
    let train_items = load(0..5, per_class)?;
    let valid_items = load(5..10, per_class / 2)?;
    println!(
        "{} training images (classes 0-4), {} validation images (classes 5-9) on {device:?}",
        train_items.len(),
        valid_items.len()
    );

    // P×K batches: all 5 training labels × 16 images each, OML's BalanceSampler.
    let labels: Vec<i64> = train_items.iter().map(|i| i.label).collect();
    let sampler = Arc::new(BalanceSampler::new(&labels, 5, 16)?.with_seed(0));
    let train_loader: Arc<dyn DataLoader<TrainBatch>> = Arc::new(PkDataLoader::new(
        sampler,
        Arc::new(InMemDataset::new(train_items)),
        Arc::new(ItemBatcher),
        device.clone(),
    ));
    // Every validation image is a query and a gallery item (its own match excluded).
    let n = valid_items.len();
    let meta = QueryGalleryMeta::new(
        valid_items.iter().map(|i| i.label).collect(),
        vec![true; n],
        vec![true; n],
    );
    let valid_loader: Arc<dyn DataLoader<ValidBatch>> = DataLoaderBuilder::new(ItemBatcher)
        .batch_size(250)
        .build(InMemDataset::new(valid_items));

    let criterion = TripletLossWithMiner::new(Some(0.2), HardTripletsMiner, Reduction::Mean, true)?;
    let dir = std::env::temp_dir().join(format!("oml-example-learner-{}", std::process::id()));
    let training = SupervisedTraining::new(&dir, train_loader, valid_loader)
        .num_epochs(epochs)
        .metric_train_numeric(LossMetric::new())
        .with_application_logger(None);
    let guard = StepGuard::new(training.interrupter());
    // OML's retrieval metrics, evaluated once per validation epoch over all its embeddings.
    let config = MetricsConfig::none()
        .with_cmc([1, 5])
        .with_precision([5])
        .with_map([5]);
    let retrieval = RetrievalMetrics::new(meta, config, &device)?.with_guard(guard.clone());
    let values = retrieval.all();
    let mut names: Vec<String> = values.iter().map(|m| m.name().to_string()).collect();
    let training = values
        .into_iter()
        .fold(training, |t, m| t.metric_valid_numeric(m));

    let conv = |from, to| {
        Conv2dConfig::new([from, to], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device)
    };
    let model = Embedder {
        conv1: conv(1, 16),
        conv2: conv(16, 32),
        pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        relu: Relu::new(),
        head: LinearConfig::new(32 * 7 * 7, 64).init(&device),
        criterion: Arc::new(criterion),
        guard: guard.clone(),
    };
    // `train()` switches gradient tracking on: the Learner forks the model to the autodiff
    // device, and parameters made on the plain device would otherwise get no gradient.
    let result = training.launch(Learner::new(model.train(), AdamConfig::new().init(), lr));
    if let Some(e) = guard.error() {
        return Err(e.into());
    }
    if let Some(e) = result.error {
        return Err(e.to_string().into());
    }
    // What Burn's metric logger recorded, epoch by epoch, read back by Burn's own summary.
    names.push("Loss".into());
    println!("{}", LearnerSummary::new(&dir, &names)?);
    std::fs::remove_dir_all(&dir).ok();
    let report = retrieval
        .last_report()
        .ok_or("no validation epoch was evaluated")?;
    println!("last validation epoch:");
    for (key, value) in report.flatten() {
        println!("  {key} = {value:.4}");
    }
    Ok(())
}
