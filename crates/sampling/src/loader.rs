//! [`PkDataLoader`]: a Burn [`DataLoader`] that yields a [`BatchSampler`]'s batches, so Burn's
//! `Learner` trains on P×K batches.

use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::Device;
use oml_interfaces::BatchSampler;

/// Why the loader could not produce a batch. It reaches Burn wrapped in a
/// [`DatasetError`], which the `Learner` reports in `LearningResult::error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoaderError {
    /// The sampler produced an index past the end of the dataset (sampler built on other labels).
    #[error(
        "batch {batch} of the epoch holds dataset index {index}, but the dataset has {len} items \
         (was the sampler built from this dataset's labels?)"
    )]
    IndexOutOfRange {
        /// Position of the batch in the epoch.
        batch: usize,
        /// The offending index.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
    /// The dataset or the batcher panicked while building a batch.
    #[error("building batch {batch} panicked: {message}")]
    Panicked {
        /// Position of the batch in the epoch.
        batch: usize,
        /// The panic message.
        message: String,
    },
    /// A worker thread is gone (it could not be started or died outside a batch).
    #[error("data loader worker {worker} is not running, so batch {batch} cannot be built")]
    WorkerStopped {
        /// The worker.
        worker: usize,
        /// Position of the batch in the epoch.
        batch: usize,
    },
}

/// A Burn [`DataLoader`] over a [`BatchSampler`], a [`Dataset`] and a [`Batcher`]: the way to
/// train on OML's P×K batches with Burn's `SupervisedTraining`.
///
/// - **Order.** Batches come out in the sampler's order, each exactly as the sampler drew it
///   (`dataset.get_many(indices)` then `batcher.batch(items, &device)`), whatever the number
///   of workers.
/// - **Epochs.** Every [`iter`](DataLoader::iter) call draws the next epoch of the sampler:
///   epoch `start_epoch` first (default 0), then `start_epoch + 1`, … Burn's `Learner` calls
///   `iter()` once per epoch, so each training epoch gets fresh batches. Resume a run with
///   [`with_start_epoch`](Self::with_start_epoch) / [`set_epoch`](Self::set_epoch).
/// - **Workers.** With `num_workers > 0`, persistent worker threads build batches ahead of the
///   consumer: batch `j` of the epoch is built by worker `j % num_workers`, each worker keeps at
///   most `prefetch` finished batches in a bounded queue (so at most
///   `num_workers * (prefetch + 1)` batches are in memory ahead of the consumer). With 0
///   workers the batches are built on the calling thread. Workers live as long as the loader
///   and are reused across epochs (as Burn's `MultiThreadDataLoader` does, so GPU backends keep
///   one stream per worker). Only one iterator should be live per loader at a time, which is how
///   the `Learner` uses it.
/// - **Multi-device.** [`slice`](DataLoader::slice) cuts on whole-batch boundaries: the slice for
///   items `start..end` gets the batches whose first item lies in that range. Every slice draws
///   the same epoch (its own counter starts at this loader's) and takes a disjoint window, so
///   Burn's `split_dataloader` gives each device whole P×K batches and together they cover the
///   epoch once. (In-batch mining then happens per device batch, as in PyTorch DDP.)
/// - **Progress** is reported in items (`unit = "items"`), `items_total` = the items of this
///   loader's batches in the epoch.
/// - **Errors.** An index past the end of the dataset, a dataset error, or a panic in the dataset
///   or batcher comes out as an `Err` item (see [`LoaderError`]); the `Learner` stops the run
///   with it.
///
/// ```
/// use std::sync::Arc;
/// use burn::data::dataloader::{DataLoader, batcher::Batcher};
/// use burn::data::dataset::InMemDataset;
/// use burn::prelude::*;
/// use oml_sampling::{BalanceSampler, PkDataLoader};
///
/// /// Items are (index, label); a batch is the label tensor.
/// struct Labels;
/// impl Batcher<(usize, i64), Tensor<1, Int>> for Labels {
///     fn batch(&self, items: Vec<(usize, i64)>, device: &Device) -> Tensor<1, Int> {
///         let labels: Vec<i64> = items.iter().map(|(_, l)| *l).collect();
///         Tensor::from_data(TensorData::from(labels.as_slice()), device)
///     }
/// }
///
/// let labels: Vec<i64> = (0..40).map(|i| i % 8).collect();
/// let items: Vec<(usize, i64)> = labels.iter().copied().enumerate().collect();
/// let sampler = BalanceSampler::new(&labels, 4, 2)?.with_seed(0);
/// let device = oml_interfaces::device::select_device(None)?;
/// let loader = PkDataLoader::new(
///     Arc::new(sampler),
///     Arc::new(InMemDataset::new(items)),
///     Arc::new(Labels),
///     device,
/// )
/// .with_num_workers(2);
/// assert_eq!(loader.num_items(), 2 * 8); // 2 batches of 4 labels × 2 instances
/// for batch in loader.iter() {
///     assert_eq!(batch?.dims(), [8]);
/// }
/// // Burn's SupervisedTraining::new takes it as `Arc<dyn DataLoader<_>>`:
/// let _train: Arc<dyn DataLoader<Tensor<1, Int>>> = Arc::new(loader);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PkDataLoader<I, O> {
    sampler: Arc<dyn BatchSampler>,
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<I, O>>,
    device: Device,
    num_workers: usize,
    prefetch: usize,
    /// Batch positions `[start, end)` of the epoch this loader yields; `None` = all of them.
    window: Option<(usize, usize)>,
    next_epoch: AtomicUsize,
    pool: OnceLock<Vec<Worker<O>>>,
}

/// One pass of a worker over its share of an epoch's batches.
struct Pass<O> {
    batches: Arc<Vec<Vec<usize>>>,
    first: usize,
    stride: usize,
    out: SyncSender<Result<O, DatasetError>>,
}

/// A worker thread and the channel that starts its passes (`None` if it could not start).
struct Worker<O> {
    commands: Option<Sender<Pass<O>>>,
    handle: Option<JoinHandle<()>>,
}

impl<O> Drop for Worker<O> {
    fn drop(&mut self) {
        // Closing the command channel ends the worker's loop once its current batch is done.
        self.commands = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string())
}

/// Reads the items of one batch and batches them on `device`; a panic becomes an error.
fn build_batch<I, O>(
    dataset: &dyn Dataset<I>,
    batcher: &dyn Batcher<I, O>,
    device: &Device,
    indices: &[usize],
    batch: usize,
) -> Result<O, DatasetError> {
    let len = dataset.len();
    if let Some(&index) = indices.iter().find(|&&i| i >= len) {
        return Err(DatasetError::new(LoaderError::IndexOutOfRange {
            batch,
            index,
            len,
        }));
    }
    catch_unwind(AssertUnwindSafe(|| {
        let items = dataset.get_many(indices.to_vec())?;
        Ok(batcher.batch(items, device))
    }))
    .unwrap_or_else(|payload| {
        Err(DatasetError::new(LoaderError::Panicked {
            batch,
            message: panic_message(payload.as_ref()),
        }))
    })
}

impl<I: 'static, O: Send + 'static> PkDataLoader<I, O> {
    /// A loader with no worker threads (batches built on the calling thread), per-worker
    /// prefetch 2, starting at epoch 0, over the whole epoch.
    pub fn new(
        sampler: Arc<dyn BatchSampler>,
        dataset: Arc<dyn Dataset<I>>,
        batcher: Arc<dyn Batcher<I, O>>,
        device: Device,
    ) -> Self {
        Self {
            sampler,
            dataset,
            batcher,
            device,
            num_workers: 0,
            prefetch: 2,
            window: None,
            next_epoch: AtomicUsize::new(0),
            pool: OnceLock::new(),
        }
    }

    /// Number of worker threads (0: build batches on the calling thread).
    #[must_use]
    pub fn with_num_workers(mut self, num_workers: usize) -> Self {
        self.num_workers = num_workers;
        self.pool = OnceLock::new();
        self
    }

    /// Finished batches each worker may queue ahead of the consumer (at least 1; default 2).
    #[must_use]
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// The epoch drawn by the first [`iter`](DataLoader::iter) call (default 0).
    #[must_use]
    pub fn with_start_epoch(self, epoch: usize) -> Self {
        self.next_epoch.store(epoch, Ordering::SeqCst);
        self
    }

    /// The epoch the next [`iter`](DataLoader::iter) call will draw.
    pub fn epoch(&self) -> usize {
        self.next_epoch.load(Ordering::SeqCst)
    }

    /// Sets the epoch the next [`iter`](DataLoader::iter) call will draw (e.g. when resuming).
    pub fn set_epoch(&self, epoch: usize) {
        self.next_epoch.store(epoch, Ordering::SeqCst);
    }

    /// The sampler.
    pub fn sampler(&self) -> &Arc<dyn BatchSampler> {
        &self.sampler
    }

    /// The device batches are built on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of worker threads.
    pub fn num_workers(&self) -> usize {
        self.num_workers
    }

    /// Per-worker prefetch depth.
    pub fn prefetch(&self) -> usize {
        self.prefetch
    }

    /// Positions, within the sampler's epoch, of the batches this loader yields.
    pub fn batch_range(&self) -> Range<usize> {
        let n = self.sampler.num_batches();
        match self.window {
            None => 0..n,
            Some((start, end)) => start.min(n)..end.min(n),
        }
    }

    /// Number of batches this loader yields per epoch.
    pub fn num_batches(&self) -> usize {
        self.batch_range().len()
    }

    /// This loader's batches of sampler epoch `epoch`, as dataset indices (what
    /// [`iter`](DataLoader::iter) would build for that epoch).
    pub fn batches_of_epoch(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut all = self.sampler.epoch_batches(epoch);
        let range = self.batch_range();
        let end = range.end.min(all.len());
        let start = range.start.min(end);
        all.truncate(end);
        all.drain(..start);
        all
    }

    fn derived(&self, device: Device, window: Option<(usize, usize)>) -> Self {
        Self {
            sampler: self.sampler.clone(),
            dataset: self.dataset.clone(),
            batcher: self.batcher.clone(),
            device,
            num_workers: self.num_workers,
            prefetch: self.prefetch,
            window,
            next_epoch: AtomicUsize::new(self.epoch()),
            pool: OnceLock::new(),
        }
    }

    fn workers(&self) -> &[Worker<O>] {
        self.pool.get_or_init(|| {
            (0..self.num_workers)
                .map(|w| {
                    let (commands, inbox) = mpsc::channel::<Pass<O>>();
                    let dataset = self.dataset.clone();
                    let batcher = self.batcher.clone();
                    let device = self.device.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("oml-pk-loader-{w}"))
                        .spawn(move || {
                            while let Ok(pass) = inbox.recv() {
                                let mut pos = pass.first;
                                while pos < pass.batches.len() {
                                    let built = build_batch(
                                        dataset.as_ref(),
                                        batcher.as_ref(),
                                        &device,
                                        &pass.batches[pos],
                                        pos,
                                    );
                                    // The consumer dropped its iterator: abandon this pass.
                                    if pass.out.send(built).is_err() {
                                        break;
                                    }
                                    pos += pass.stride;
                                }
                            }
                        });
                    match spawned {
                        Ok(handle) => Worker {
                            commands: Some(commands),
                            handle: Some(handle),
                        },
                        Err(_) => Worker {
                            commands: None,
                            handle: None,
                        },
                    }
                })
                .collect()
        })
    }
}

impl<I, O> fmt::Debug for PkDataLoader<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PkDataLoader")
            .field("batch_size", &self.sampler.batch_size())
            .field("num_batches", &self.sampler.num_batches())
            .field("window", &self.window)
            .field("dataset_len", &self.dataset.len())
            .field("device", &self.device)
            .field("num_workers", &self.num_workers)
            .field("prefetch", &self.prefetch)
            .field("next_epoch", &self.next_epoch.load(Ordering::SeqCst))
            .finish()
    }
}

/// The iterator of one epoch.
struct PkIterator<'a, I, O> {
    loader: &'a PkDataLoader<I, O>,
    batches: Arc<Vec<Vec<usize>>>,
    /// One per active worker; empty when batches are built on the calling thread.
    receivers: Vec<Option<Receiver<Result<O, DatasetError>>>>,
    next: usize,
    items_processed: usize,
    items_total: usize,
}

impl<I, O> Iterator for PkIterator<'_, I, O> {
    type Item = Result<O, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.next;
        let indices = self.batches.get(pos)?;
        self.next += 1;
        self.items_processed += indices.len();
        if self.receivers.is_empty() {
            let l = self.loader;
            return Some(build_batch(
                l.dataset.as_ref(),
                l.batcher.as_ref(),
                &l.device,
                indices,
                pos,
            ));
        }
        let worker = pos % self.receivers.len();
        let received = self.receivers[worker].as_ref().and_then(|r| r.recv().ok());
        Some(received.unwrap_or_else(|| {
            Err(DatasetError::new(LoaderError::WorkerStopped {
                worker,
                batch: pos,
            }))
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches.len() - self.next.min(self.batches.len());
        (left, Some(left))
    }
}

impl<I, O> DataLoaderIterator<O> for PkIterator<'_, I, O> {
    fn progress(&self) -> Progress {
        Progress::new(
            self.items_processed,
            self.items_total,
            Some("items".to_string()),
        )
    }
}

impl<I: 'static, O: Send + 'static> DataLoader<O> for PkDataLoader<I, O> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        let batches = Arc::new(self.batches_of_epoch(epoch));
        let items_total = batches.iter().map(Vec::len).sum();
        let mut receivers = Vec::new();
        if self.num_workers > 0 && !batches.is_empty() {
            let workers = self.workers();
            let active = workers.len().min(batches.len());
            for (w, worker) in workers.iter().take(active).enumerate() {
                let (out, inbox) = mpsc::sync_channel(self.prefetch);
                let pass = Pass {
                    batches: batches.clone(),
                    first: w,
                    stride: active,
                    out,
                };
                let started = worker
                    .commands
                    .as_ref()
                    .is_some_and(|c| c.send(pass).is_ok());
                receivers.push(started.then_some(inbox));
            }
        }
        Box::new(PkIterator {
            loader: self,
            batches,
            receivers,
            next: 0,
            items_processed: 0,
            items_total,
        })
    }

    fn num_items(&self) -> usize {
        self.num_batches() * self.sampler.batch_size()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.derived(device.clone(), self.window))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        let range = self.batch_range();
        let bs = self.sampler.batch_size();
        // Batch j belongs to the slice whose item range holds its first item, j * bs.
        let (first, last) = match bs {
            0 => (0, 0),
            _ => (start.div_ceil(bs), end.div_ceil(bs).max(start.div_ceil(bs))),
        };
        let window = (
            (range.start + first).min(range.end),
            (range.start + last).min(range.end),
        );
        Arc::new(self.derived(self.device.clone(), Some(window)))
    }
}
