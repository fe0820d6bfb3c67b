//! The P×K data loader driven the way Burn 0.22's `Learner` drives a train loader: `iter()`
//! once per epoch, `next()` + `progress()` per step, `split_dataloader` (`slice` + `to_device`)
//! for multi-device training, and the P×K structure checked on the device tensors.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::split::split_dataloader;
use burn::data::dataloader::{DataLoader, Progress};
use burn::data::dataset::{Dataset, DatasetError, InMemDataset};
use burn::prelude::*;
use oml_interfaces::device::test_device;
use oml_sampling::{BalanceSampler, BatchSampler, DistinctCategoryBalanceSampler, PkDataLoader};

#[derive(Clone, Debug)]
pub struct Item {
    pub index: usize,
    pub label: i64,
}

/// What a training step gets: dataset indices and labels, on the device.
#[derive(Clone, Debug)]
pub struct PkBatch {
    pub indices: Tensor<1, Int>,
    pub labels: Tensor<1, Int>,
}

pub struct ItemBatcher;

impl Batcher<Item, PkBatch> for ItemBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> PkBatch {
        let n = items.len();
        let indices: Vec<i64> = items.iter().map(|i| i.index as i64).collect();
        let labels: Vec<i64> = items.iter().map(|i| i.label).collect();
        PkBatch {
            indices: Tensor::from_data(TensorData::new(indices, [n]), device),
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
        }
    }
}

pub fn host(t: &Tensor<1, Int>) -> Vec<usize> {
    t.clone()
        .into_data()
        .iter::<i64>()
        .map(|v| v as usize)
        .collect()
}

/// On the device: the labels, as `groups` rows of `k`, are constant along each row and
/// distinct between rows (one label per group, no label in two groups).
pub fn pk_on_device(labels: &Tensor<1, Int>, groups: usize, k: usize) -> (bool, bool) {
    let m: Tensor<2, Int> = labels.clone().reshape([groups, k]);
    let first = m.clone().slice(s![.., 0..1]);
    let same_in_row = m.equal(first.clone().expand([groups, k])).int().sum();
    let col = first.clone().expand([groups, groups]);
    let row = first.transpose().expand([groups, groups]);
    let equal_pairs = col.equal(row).int().sum();
    (
        same_in_row.into_scalar::<i64>() == (groups * k) as i64,
        equal_pairs.into_scalar::<i64>() == groups as i64,
    )
}

/// 30 labels with 2..=7 samples each, in a scrambled order.
pub fn labelled_items() -> (Vec<i64>, Vec<Item>) {
    let mut labels = Vec::new();
    for l in 0..30i64 {
        labels.extend(std::iter::repeat_n(l * 11 % 97, 2 + (l as usize * 5) % 6));
    }
    let n = labels.len();
    let labels: Vec<i64> = (0..n).map(|i| labels[(i * 37) % n]).collect();
    let items = labels
        .iter()
        .enumerate()
        .map(|(index, &label)| Item { index, label })
        .collect();
    (labels, items)
}

const P: usize = 4;
const K: usize = 3;

fn loader(workers: usize, prefetch: usize) -> (Arc<BalanceSampler>, PkDataLoader<Item, PkBatch>) {
    let (labels, items) = labelled_items();
    let sampler = Arc::new(BalanceSampler::new(&labels, P, K).unwrap().with_seed(17));
    let loader = PkDataLoader::new(
        sampler.clone(),
        Arc::new(InMemDataset::new(items)),
        Arc::new(ItemBatcher),
        test_device(),
    )
    .with_num_workers(workers)
    .with_prefetch(prefetch);
    (sampler, loader)
}

/// One training epoch as `SingleDeviceTrainEpoch::run` does it; checks every batch and the
/// progress, returns the epoch's batches as read back from the device.
fn learner_epoch(loader: &dyn DataLoader<PkBatch>, device: &Device) -> Vec<Vec<usize>> {
    let total = loader.num_items();
    let mut iterator = loader.iter();
    let mut batches = Vec::new();
    let mut last = Progress::new(0, total, None);
    while let Some(item) = iterator.next() {
        let batch = item.expect("no dataset error");
        let progress = iterator.progress();
        assert_eq!(progress.unit.as_deref(), Some("items"));
        assert_eq!(progress.items_total, total);
        assert_eq!(progress.items_processed, (batches.len() + 1) * P * K);
        assert_eq!(&batch.labels.device(), device);
        assert_eq!(batch.labels.dims(), [P * K]);
        assert_eq!(pk_on_device(&batch.labels, P, K), (true, true));
        batches.push(host(&batch.indices));
        last = progress;
    }
    assert!(last.is_completed(), "{last:?}");
    batches
}

#[test]
fn loader_yields_the_sampler_epochs_in_order_with_any_number_of_workers() {
    for (workers, prefetch) in [(0, 1), (1, 1), (3, 1), (3, 4), (16, 2)] {
        let (sampler, loader) = loader(workers, prefetch);
        let device = loader.device().clone();
        assert_eq!(loader.num_items(), sampler.num_batches() * P * K);
        for epoch in 0..3 {
            assert_eq!(loader.epoch(), epoch);
            let got = learner_epoch(&loader, &device);
            assert_eq!(
                got,
                sampler.epoch_batches(epoch),
                "workers {workers}, epoch {epoch}"
            );
        }
    }
}

#[test]
fn learner_epochs_draw_fresh_batches_and_can_resume() {
    let (sampler, loader) = loader(2, 2);
    let device = loader.device().clone();
    let e0 = learner_epoch(&loader, &device);
    let e1 = learner_epoch(&loader, &device);
    assert_ne!(e0, e1, "a new epoch draws anew");
    // Resuming at epoch 1 (e.g. `SupervisedTraining::checkpoint(1)`) replays epoch 1.
    let (_, resumed) = self::loader(0, 1);
    let resumed = resumed.with_start_epoch(1);
    assert_eq!(learner_epoch(&resumed, &device), e1);
    resumed.set_epoch(0);
    assert_eq!(learner_epoch(&resumed, &device), e0);
    assert_eq!(sampler.epoch_batches(0), e0);
}

#[test]
fn multi_device_split_gives_each_device_whole_pk_batches_of_one_epoch() {
    let (sampler, loader) = loader(2, 1);
    let device = loader.device().clone();
    let n_batches = sampler.num_batches();
    let whole: Arc<dyn DataLoader<PkBatch>> = Arc::new(loader);
    for n_devices in [2, 3, 4] {
        // The same backend device stands in for several devices, as Burn's own split test does.
        let devices = vec![device.clone(); n_devices];
        let slices = split_dataloader(whole.clone(), &devices);
        assert_eq!(
            slices.iter().map(|s| s.num_items()).sum::<usize>(),
            n_batches * P * K
        );
        for epoch in 0..2 {
            // MultiDevicesTrainStep: each step takes the next batch of every device's loader.
            let mut iterators: Vec<_> = slices.iter().map(|s| s.iter()).collect();
            let mut per_device: Vec<Vec<Vec<usize>>> = vec![Vec::new(); n_devices];
            loop {
                let mut any = false;
                let (mut processed, mut total) = (0, 0);
                for (d, it) in iterators.iter_mut().enumerate() {
                    if let Some(item) = it.next() {
                        let batch = item.unwrap();
                        assert_eq!(pk_on_device(&batch.labels, P, K), (true, true));
                        per_device[d].push(host(&batch.indices));
                        any = true;
                    }
                    let p = it.progress();
                    processed += p.items_processed;
                    total += p.items_total;
                }
                assert_eq!(total, n_batches * P * K);
                if !any {
                    assert_eq!(processed, total);
                    break;
                }
            }
            // Disjoint windows of the same epoch, in order, covering it once.
            let joined: Vec<Vec<usize>> = per_device.concat();
            assert_eq!(
                joined,
                sampler.epoch_batches(epoch),
                "{n_devices} devices, epoch {epoch}"
            );
            let sizes: Vec<usize> = per_device.iter().map(Vec::len).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }
}

#[test]
fn slices_cut_on_whole_batches() {
    let (sampler, loader) = loader(0, 1);
    let bs = P * K;
    let n = sampler.num_batches();
    assert_eq!(n, 7);
    // Item ranges that split batches: a batch goes where its first item is.
    let a = loader.slice(0, 2 * bs + 5);
    let b = loader.slice(2 * bs + 5, 5 * bs);
    let c = loader.slice(5 * bs, n * bs);
    assert_eq!(
        [a.num_items(), b.num_items(), c.num_items()],
        [3 * bs, 2 * bs, 2 * bs]
    );
    assert!(loader.slice(4, 4).num_items() == 0 && loader.slice(9, 3).num_items() == 0);
    assert_eq!(loader.slice(0, 1_000_000).num_items(), n * bs);
    // A slice of a slice is relative to it.
    let inner = loader.slice(bs, 6 * bs).slice(bs, 3 * bs);
    let device = loader.device().clone();
    let got = learner_epoch(inner.as_ref(), &device);
    assert_eq!(got, sampler.epoch_batches(0)[2..4].to_vec());
    // to_device keeps the window and the epoch counter.
    let moved = loader.slice(bs, 2 * bs).to_device(&device);
    assert_eq!(
        learner_epoch(moved.as_ref(), &device),
        sampler.epoch_batches(0)[1..2].to_vec()
    );
}

#[test]
fn slices_keep_the_epoch_reached_by_their_parent() {
    let (sampler, loader) = loader(0, 1);
    let device = loader.device().clone();
    learner_epoch(&loader, &device);
    learner_epoch(&loader, &device);
    let half = loader.slice(0, 3 * P * K);
    assert_eq!(
        learner_epoch(half.as_ref(), &device),
        sampler.epoch_batches(2)[..3].to_vec()
    );
    assert_eq!(loader.batches_of_epoch(2), sampler.epoch_batches(2));
}

#[test]
fn an_abandoned_epoch_does_not_block_the_next_one() {
    let (sampler, loader) = loader(3, 1);
    {
        let mut it = loader.iter();
        let first = it.next().unwrap().unwrap();
        assert_eq!(host(&first.indices), sampler.epoch_batches(0)[0]);
        // Dropped mid-epoch while workers wait on full queues (an interrupted Learner).
    }
    let device = loader.device().clone();
    assert_eq!(learner_epoch(&loader, &device), sampler.epoch_batches(1));
}

#[test]
fn category_batches_keep_their_structure_on_the_device() {
    let (labels, items) = labelled_items();
    let l2c: BTreeMap<i64, usize> = labels.iter().map(|&l| (l, (l % 5) as usize)).collect();
    let (nc, nl, ni) = (2, 3, 2);
    let sampler = DistinctCategoryBalanceSampler::new(&labels, &l2c, nc, nl, ni, 9).unwrap();
    let loader = PkDataLoader::new(
        Arc::new(sampler),
        Arc::new(InMemDataset::new(items)),
        Arc::new(ItemBatcher),
        test_device(),
    )
    .with_num_workers(2);
    let mut n = 0;
    for batch in loader.iter() {
        let batch = batch.unwrap();
        // nc * nl label groups of ni, all labels distinct within a batch.
        assert_eq!(pk_on_device(&batch.labels, nc * nl, ni), (true, true));
        n += 1;
    }
    assert_eq!(n, 9);
}

/// A dataset shorter than the labels the sampler was built on.
struct Truncated(InMemDataset<Item>, usize);

impl Dataset<Item> for Truncated {
    fn get(&self, index: usize) -> Result<Item, DatasetError> {
        self.0.get(index)
    }
    fn len(&self) -> usize {
        self.1
    }
}

struct PanickyBatcher;

impl Batcher<Item, PkBatch> for PanickyBatcher {
    fn batch(&self, items: Vec<Item>, device: &Device) -> PkBatch {
        if items.iter().any(|i| i.label == 0) {
            panic!("label zero is not welcome");
        }
        ItemBatcher.batch(items, device)
    }
}

#[test]
fn bad_indices_and_panics_come_out_as_errors() {
    let (labels, items) = labelled_items();
    let sampler: Arc<dyn BatchSampler> =
        Arc::new(BalanceSampler::new(&labels, 30, 2).unwrap().with_seed(1));
    for workers in [0, 2] {
        let short = PkDataLoader::new(
            sampler.clone(),
            Arc::new(Truncated(InMemDataset::new(items.clone()), 10)),
            Arc::new(ItemBatcher),
            test_device(),
        )
        .with_num_workers(workers);
        let err = short.iter().next().unwrap().unwrap_err().to_string();
        assert!(err.contains("the dataset has 10 items"), "{err}");

        // Every batch holds all 30 labels, so label 0: each batch panics, the loader survives.
        let panicky = PkDataLoader::new(
            sampler.clone(),
            Arc::new(InMemDataset::new(items.clone())),
            Arc::new(PanickyBatcher),
            test_device(),
        )
        .with_num_workers(workers);
        for _ in 0..2 {
            let err = panicky.iter().next().unwrap().unwrap_err().to_string();
            assert!(err.contains("label zero is not welcome"), "{err}");
        }
    }
}
