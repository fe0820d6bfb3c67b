//! The loader under Burn's real `SupervisedTraining` (a one-weight model, nothing learnt): the
//! training step checks each batch's P×K structure on the device and records it, for one
//! device and for Burn's multi-device strategy (which splits the loader with `slice`).

use std::sync::{Arc, Mutex};

use burn::data::dataloader::DataLoader;
use burn::data::dataset::InMemDataset;
use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::prelude::*;
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{
    ExecutionStrategy, InferenceStep, Learner, MultiDeviceOptim, SupervisedTraining, TrainOutput,
    TrainStep, TrainingStrategy,
};
use oml_interfaces::device::test_device;
use oml_sampling::{BalanceSampler, BatchSampler, PkDataLoader};

use crate::loader::{Item, ItemBatcher, PkBatch, host, labelled_items, pk_on_device};

const P: usize = 5;
const K: usize = 2;

/// Batches seen by training steps, in order, across all tests of this module.
static SEEN: Mutex<Vec<(&'static str, Vec<usize>)>> = Mutex::new(Vec::new());

#[derive(Module, Debug)]
struct Probe {
    linear: Linear,
    /// Which test is running (training steps may run on worker threads).
    tag: u8,
}

impl Probe {
    fn tag_name(&self) -> &'static str {
        if self.tag == 0 { "single" } else { "multi" }
    }
}

impl TrainStep for Probe {
    type Input = PkBatch;
    type Output = ();

    fn step(&self, batch: PkBatch) -> TrainOutput<()> {
        let n = batch.labels.dims()[0];
        assert_eq!(n, P * K);
        assert!(
            batch.labels.device().is_autodiff(),
            "the Learner moves loaders to autodiff"
        );
        assert_eq!(pk_on_device(&batch.labels, P, K), (true, true));
        SEEN.lock()
            .unwrap()
            .push((self.tag_name(), host(&batch.indices)));
        let x = batch.labels.float().reshape([n, 1]);
        let loss = self.linear.forward(x).mean();
        TrainOutput::new(self, loss.backward(), ())
    }
}

impl InferenceStep for Probe {
    type Input = PkBatch;
    type Output = ();

    fn step(&self, batch: PkBatch) {
        assert_eq!(pk_on_device(&batch.labels, P, K), (true, true));
    }
}

fn pk_loader(
    labels: &[i64],
    items: Vec<Item>,
    seed: u64,
) -> (Arc<BalanceSampler>, PkDataLoader<Item, PkBatch>) {
    let sampler = Arc::new(BalanceSampler::new(labels, P, K).unwrap().with_seed(seed));
    let loader = PkDataLoader::new(
        sampler.clone(),
        Arc::new(InMemDataset::new(items)),
        Arc::new(ItemBatcher),
        test_device(),
    )
    .with_num_workers(2);
    (sampler, loader)
}

fn train(
    tag: u8,
    devices: Option<Vec<Device>>,
    epochs: usize,
) -> (Arc<BalanceSampler>, Vec<Vec<usize>>) {
    let (labels, items) = labelled_items();
    let (sampler, train_loader) = pk_loader(&labels, items.clone(), 3);
    let (_, valid_loader) = pk_loader(&labels, items, 4);
    let dir =
        std::env::temp_dir().join(format!("oml-sampling-learner-{tag}-{}", std::process::id()));
    let device = test_device();
    let model = Probe {
        linear: LinearConfig::new(1, 1).init(&device.autodiff()),
        tag,
    };
    let mut training = SupervisedTraining::new(
        &dir,
        Arc::new(train_loader) as Arc<dyn DataLoader<PkBatch>>,
        Arc::new(valid_loader) as Arc<dyn DataLoader<PkBatch>>,
    )
    .num_epochs(epochs)
    .renderer(Box::new(CliMetricsRenderer::new()))
    .with_application_logger(None);
    if let Some(devices) = devices {
        training = training.with_training_strategy(TrainingStrategy::Default(
            ExecutionStrategy::multi(devices, MultiDeviceOptim::OptimMainDevice),
        ));
    }
    let result = training.launch(Learner::new(model, SgdConfig::new().init(), 1e-3));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(result.error.is_none(), "{:?}", result.error);
    let name = if tag == 0 { "single" } else { "multi" };
    let seen = SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t == name)
        .map(|(_, b)| b.clone())
        .collect();
    (sampler, seen)
}

#[test]
fn supervised_training_on_one_device_sees_each_epoch_in_sampler_order() {
    let (sampler, seen) = train(0, None, 2);
    let expected = [sampler.epoch_batches(0), sampler.epoch_batches(1)].concat();
    assert_eq!(seen, expected);
}

#[test]
fn supervised_training_on_two_devices_sees_each_epoch_once() {
    let device = test_device();
    let (sampler, seen) = train(1, Some(vec![device.clone(), device]), 2);
    let n = sampler.num_batches();
    assert_eq!(seen.len(), 2 * n);
    // Devices run concurrently, so compare each epoch as a set of batches.
    for (epoch, got) in seen.chunks(n).enumerate() {
        let mut got = got.to_vec();
        let mut expected = sampler.epoch_batches(epoch);
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "epoch {epoch}");
    }
}
