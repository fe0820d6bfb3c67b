//! Data-loader adaptors between the data crates and the Learner.
//!
//! - [`EpochTagged`] numbers the epochs a training loader yields (Burn calls `iter()` once per
//!   epoch) and turns its batches into [`TrainBatch`]es carrying that epoch, which decides
//!   freezing. Slices (multi-device) count epochs from the same start.
//! - [`EveryNthEpoch`] yields the validation batches only on validation epochs (OML's
//!   `valid_period`), and publishes which epoch it is validating.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::DatasetError;
use burn::prelude::*;

use crate::model::TrainBatch;

/// Turns a loader's batch into a training batch (by default a [`TrainBatch`]) of a given epoch.
pub type ToTrainBatch<O, T = TrainBatch> = Arc<dyn Fn(O, usize) -> T + Send + Sync>;

/// A training loader whose batches carry their (1-based) epoch.
pub struct EpochTagged<O, T = TrainBatch> {
    inner: Arc<dyn DataLoader<O>>,
    convert: ToTrainBatch<O, T>,
    next_epoch: AtomicUsize,
    on_epoch: Option<Arc<dyn Fn(usize) + Send + Sync>>,
}

impl<O: 'static, T: 'static> EpochTagged<O, T> {
    /// Wraps `inner`; its first `iter()` is epoch `first_epoch` (1-based).
    pub fn new(
        inner: Arc<dyn DataLoader<O>>,
        convert: ToTrainBatch<O, T>,
        first_epoch: usize,
    ) -> Self {
        Self {
            inner,
            convert,
            next_epoch: AtomicUsize::new(first_epoch),
            on_epoch: None,
        }
    }

    /// Calls `hook(epoch)` at the start of each epoch, before the inner loader starts (e.g. to
    /// seed the epoch's random transforms).
    pub fn with_epoch_hook(mut self, hook: Arc<dyn Fn(usize) + Send + Sync>) -> Self {
        self.on_epoch = Some(hook);
        self
    }

    fn derived(&self, inner: Arc<dyn DataLoader<O>>) -> Self {
        Self {
            inner,
            convert: self.convert.clone(),
            next_epoch: AtomicUsize::new(self.next_epoch.load(Ordering::SeqCst)),
            on_epoch: self.on_epoch.clone(),
        }
    }
}

struct TaggedIter<'a, O, T> {
    inner: Box<dyn DataLoaderIterator<O> + 'a>,
    convert: ToTrainBatch<O, T>,
    epoch: usize,
}

impl<O, T> Iterator for TaggedIter<'_, O, T> {
    type Item = Result<T, DatasetError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner
            .next()
            .map(|r| r.map(|o| (self.convert)(o, self.epoch)))
    }
}

impl<O, T> DataLoaderIterator<T> for TaggedIter<'_, O, T> {
    fn progress(&self) -> Progress {
        self.inner.progress()
    }
}

impl<O: 'static, T: Send + 'static> DataLoader<T> for EpochTagged<O, T> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<T> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(hook) = &self.on_epoch {
            hook(epoch);
        }
        Box::new(TaggedIter {
            inner: self.inner.iter(),
            convert: self.convert.clone(),
            epoch,
        })
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<T>> {
        Arc::new(self.derived(self.inner.to_device(device)))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<T>> {
        Arc::new(self.derived(self.inner.slice(start, end)))
    }
}

/// A loader that yields its batches only in epochs where `period` divides the epoch, or in
/// `last_epoch`; other epochs are empty. [`current_epoch`](Self::current_epoch) is the epoch
/// of the latest `iter()`.
pub struct EveryNthEpoch<O> {
    inner: Arc<dyn DataLoader<O>>,
    period: usize,
    last_epoch: usize,
    next_epoch: Arc<AtomicUsize>,
    current: Arc<AtomicUsize>,
}

impl<O: 'static> EveryNthEpoch<O> {
    /// Wraps `inner`; its first `iter()` is epoch `first_epoch`.
    pub fn new(
        inner: Arc<dyn DataLoader<O>>,
        period: usize,
        last_epoch: usize,
        first_epoch: usize,
    ) -> Self {
        Self {
            inner,
            period: period.max(1),
            last_epoch,
            next_epoch: Arc::new(AtomicUsize::new(first_epoch)),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A handle reading the epoch of the latest `iter()` (0 before the first).
    pub fn current_epoch(&self) -> Arc<AtomicUsize> {
        self.current.clone()
    }

    /// Whether `epoch` is validated.
    pub fn is_active(&self, epoch: usize) -> bool {
        is_validation_epoch(epoch, self.period, self.last_epoch)
    }
}

/// OML's `check_val_every_n_epoch`, plus the last epoch so the final model is always reported.
pub fn is_validation_epoch(epoch: usize, period: usize, last_epoch: usize) -> bool {
    epoch > 0 && (epoch.is_multiple_of(period.max(1)) || epoch == last_epoch)
}

struct EmptyIter<O>(std::marker::PhantomData<O>);
impl<O> Iterator for EmptyIter<O> {
    type Item = Result<O, DatasetError>;
    fn next(&mut self) -> Option<Self::Item> {
        None
    }
}
impl<O> DataLoaderIterator<O> for EmptyIter<O> {
    fn progress(&self) -> Progress {
        Progress::new(0, 0, Some("items".to_string()))
    }
}

impl<O: Send + 'static> DataLoader<O> for EveryNthEpoch<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        self.current.store(epoch, Ordering::SeqCst);
        if self.is_active(epoch) {
            self.inner.iter()
        } else {
            Box::new(EmptyIter(std::marker::PhantomData))
        }
    }

    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(Self {
            inner: self.inner.to_device(device),
            period: self.period,
            last_epoch: self.last_epoch,
            next_epoch: self.next_epoch.clone(),
            current: self.current.clone(),
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        Arc::new(Self {
            inner: self.inner.slice(start, end),
            period: self.period,
            last_epoch: self.last_epoch,
            next_epoch: self.next_epoch.clone(),
            current: self.current.clone(),
        })
    }
}

/// Builds the batch of a list of item indices on a device.
pub type MakeBatch<O> = Arc<dyn Fn(&[usize], &Device) -> Result<O, DatasetError> + Send + Sync>;

/// A plain in-order loader over index chunks: batch `j` holds indices `j·bs .. (j+1)·bs`.
/// `make` builds the batch of a list of indices on a device.
pub struct ChunkLoader<O> {
    n: usize,
    batch_size: usize,
    range: (usize, usize),
    make: MakeBatch<O>,
    device: Device,
}

impl<O> ChunkLoader<O> {
    /// Batches of `batch_size` over `0..n`.
    pub fn new(n: usize, batch_size: usize, make: MakeBatch<O>, device: Device) -> Self {
        Self {
            n,
            batch_size: batch_size.max(1),
            range: (0, n),
            make,
            device,
        }
    }
}

struct ChunkIter<'a, O> {
    loader: &'a ChunkLoader<O>,
    next: usize,
}

impl<O> Iterator for ChunkIter<'_, O> {
    type Item = Result<O, DatasetError>;
    fn next(&mut self) -> Option<Self::Item> {
        let (_, end) = self.loader.range;
        if self.next >= end {
            return None;
        }
        let stop = (self.next + self.loader.batch_size).min(end);
        let idx: Vec<usize> = (self.next..stop).collect();
        self.next = stop;
        Some((self.loader.make)(&idx, &self.loader.device))
    }
}

impl<O> DataLoaderIterator<O> for ChunkIter<'_, O> {
    fn progress(&self) -> Progress {
        let (start, end) = self.loader.range;
        Progress::new(self.next - start, end - start, Some("items".to_string()))
    }
}

impl<O: Send + 'static> DataLoader<O> for ChunkLoader<O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        Box::new(ChunkIter {
            loader: self,
            next: self.range.0,
        })
    }

    fn num_items(&self) -> usize {
        self.range.1 - self.range.0
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(Self {
            n: self.n,
            batch_size: self.batch_size,
            range: self.range,
            make: self.make.clone(),
            device: device.clone(),
        })
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        let s = (self.range.0 + start).min(self.range.1);
        let e = (self.range.0 + end).min(self.range.1).max(s);
        Arc::new(Self {
            n: self.n,
            batch_size: self.batch_size,
            range: (s, e),
            make: self.make.clone(),
            device: self.device.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oml_interfaces::device::test_device;

    fn counting_loader(n: usize, bs: usize) -> Arc<dyn DataLoader<Vec<usize>>> {
        Arc::new(ChunkLoader::new(
            n,
            bs,
            Arc::new(|idx: &[usize], _: &Device| Ok(idx.to_vec())),
            test_device(),
        ))
    }

    #[test]
    fn chunk_loader_covers_every_index_once_and_slices() {
        let l = counting_loader(10, 4);
        let all: Vec<Vec<usize>> = l.iter().map(|b| b.unwrap()).collect();
        assert_eq!(all, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        assert_eq!(l.num_items(), 10);
        let s = l.slice(4, 10);
        let got: Vec<usize> = s.iter().flat_map(|b| b.unwrap()).collect();
        assert_eq!(got, (4..10).collect::<Vec<_>>());
    }

    #[test]
    fn validation_epochs_follow_the_period_and_the_last_epoch() {
        let v: Vec<usize> = (1..=7).filter(|&e| is_validation_epoch(e, 3, 7)).collect();
        assert_eq!(v, vec![3, 6, 7]);
        let gated = EveryNthEpoch::new(counting_loader(5, 2), 2, 3, 1);
        let current = gated.current_epoch();
        let counts: Vec<usize> = (0..3).map(|_| gated.iter().count()).collect();
        assert_eq!(counts, vec![0, 3, 3]); // epochs 1 (skipped), 2 (period), 3 (last)
        assert_eq!(current.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn tagged_loader_numbers_epochs_and_slices_share_the_count() {
        let device = test_device();
        let base: Arc<dyn DataLoader<Vec<usize>>> = counting_loader(4, 2);
        let d = device.clone();
        let convert: ToTrainBatch<Vec<usize>> =
            Arc::new(move |idx: Vec<usize>, epoch| TrainBatch {
                images: Tensor::zeros([idx.len(), 1, 1, 1], &d),
                labels: idx.iter().map(|&i| i as i64).collect(),
                epoch,
            });
        let tagged = EpochTagged::new(base, convert, 5);
        let e: Vec<usize> = tagged.iter().map(|b| b.unwrap().epoch).collect();
        assert_eq!(e, vec![5, 5]);
        let sliced = tagged.slice(2, 4).to_device(&device);
        let b: Vec<TrainBatch> = sliced.iter().map(|b| b.unwrap()).collect();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].epoch, b[0].labels.clone()), (6, vec![2, 3]));
        assert_eq!(tagged.iter().next().unwrap().unwrap().epoch, 6);
    }
}
