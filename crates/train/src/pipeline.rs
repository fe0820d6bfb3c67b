//! The run skeleton of the training pipelines. `oml train` and `oml train-postprocessor` take
//! the same steps; each supplies only its model, its batch conversion and its validation scorer:
//!
//! 1. [`Plan::check`]: the keys every training config shares, the devices and the optimizer,
//!    scheduler, logger and metric sections are parsed and checked, and [`Plan::read_data`]
//!    reads the data set, all before anything is written;
//! 2. [`Session::open`]: the run folder (new, or an unfinished one resumed), its history and
//!    loggers;
//! 3. [`Session::initial`]: the untrained model's metrics as epoch 0;
//! 4. [`Session::fit`]: Burn's `SupervisedTraining` over the P×K loader, validating with the
//!    pipeline's scorer every `valid_period` epochs;
//! 5. [`Session::export`]: `last.bpk`, `best.bpk`, `metrics.json`, the finished state.
//!
//! `oml validate` and `oml predict` take the first steps of the same skeleton: [`Inference::check`]
//! (the shared keys, the devices, the extractor section) before any data is read, the data read
//! with [`image_options`] (and [`prepare`] when asked), then [`Inference::embed`]; each supplies
//! only what it does with the rows. `oml eval` starts from embeddings on disk
//! ([`crate::eval`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::train::{InferenceStep, Interrupter, LearnerModel, TrainStep};
use oml_datasets::batch::{ImageBatch, ImageBatcher};
use oml_datasets::dataframe::ReadOptions;
use oml_datasets::images::{
    ImageItem, ImageLabeledDataset, ImageOptions, ImageQueryGalleryLabeledDataset,
    RetrievalDatasets, retrieval_image_datasets, retrieval_image_datasets_without_broken,
};
use oml_datasets::transforms::Pipeline as Transforms;
use oml_interfaces::device::DeviceCount;
use oml_interfaces::{BatchSampler, MetricsReport, PipelineLogger, RgbImage};
use oml_logging::{LoggerConfig, SharedLogger};
use oml_metrics::QueryGalleryMeta;
use oml_metrics::learner::RetrievalMetrics;
use oml_models::ExtractorConfig;
use oml_sampling::PkDataLoader;
use serde_json::Value;

use crate::applog::ExperimentLog;
use crate::config::{
    ExtractorSection, Mode, NamedArgs, PrepareData, RunOptions, Scheduling, resolve,
};
use crate::data::{MetricArgs, embed_dataset, prepare_data};
use crate::error::TrainError;
use crate::history::{EpochRecord, History};
use crate::loaders::{ChunkLoader, EpochTagged, EveryNthEpoch, MakeBatch, ToTrainBatch};
use crate::model::{EmbeddingOutput, EpochStepOutput, StepGuard};
use crate::optim::{build_optimizer, build_scheduler};
use crate::progress::Console;
use crate::runner::{
    FitContext, RunFolder, SaveWeights, TrainOptions, finish, fit, load_epoch, load_history, lock,
    log_marks_path, log_report, mark_logs, open_config_run, stop_after, write_json,
};
use crate::validation::{Embeddings, EpochScoring, OnEpoch, summary_line};

/// Devices of a config: the backend by name (`flag`, else `accelerator`, else the default),
/// `devices` of them ([`oml_interfaces::device::select_devices`]: distinct GPUs, an error when
/// there are fewer; `devices` handles of the one CPU device on CPU backends). A config's
/// `cpu_fast_path` fixes the CPU fast path unless the CLI flag or `OML_CPU_FAST_PATH` already did.
pub fn select_devices(
    flag: Option<&str>,
    accelerator: Option<&str>,
    devices: Option<DeviceCount>,
    cpu_fast_path: Option<bool>,
) -> Result<Vec<Device>, TrainError> {
    if let Some(on) = cpu_fast_path {
        oml_interfaces::cpu::prefer(on);
    }
    Ok(oml_interfaces::device::select_devices(
        flag.or(accelerator),
        devices.unwrap_or_default(),
    )?)
}

/// The keys every training config has, borrowed from it.
#[derive(Clone)]
pub(crate) struct Common<'a> {
    pub seed: u64,
    pub precision: u32,
    pub accelerator: Option<&'a str>,
    pub devices: Option<DeviceCount>,
    pub cpu_fast_path: Option<bool>,
    pub dataset_root: &'a Path,
    pub dataframe_name: &'a str,
    pub prepare_data: Option<&'a PrepareData>,
    pub show_dataset_warnings: bool,
    pub skip_broken_images: bool,
    pub cache_size: usize,
    pub num_workers: usize,
    pub max_epochs: usize,
    pub valid_period: usize,
    pub metric_args: &'a Value,
    pub metric_for_checkpointing: &'a str,
    pub mode_for_checkpointing: Mode,
    pub optimizer: &'a NamedArgs,
    pub scheduling: Option<&'a Scheduling>,
    pub logger: Option<&'a Value>,
    pub tags: &'a [String],
    pub logs_root: &'a Path,
    pub logs_folder: Option<&'a str>,
    pub postfix: Option<&'a str>,
}

/// Implements `$config.common()` for a training config: the shared keys have the same names in
/// every one.
macro_rules! common_keys {
    ($config:ty) => {
        impl $config {
            fn common(&self) -> $crate::pipeline::Common<'_> {
                $crate::pipeline::Common {
                    seed: self.seed,
                    precision: self.precision,
                    accelerator: self.accelerator.as_deref(),
                    devices: self.devices,
                    cpu_fast_path: self.cpu_fast_path,
                    dataset_root: &self.dataset_root,
                    dataframe_name: &self.dataframe_name,
                    prepare_data: self.prepare_data.as_ref(),
                    show_dataset_warnings: self.show_dataset_warnings,
                    skip_broken_images: self.skip_broken_images,
                    cache_size: self.cache_size,
                    num_workers: self.num_workers,
                    max_epochs: self.max_epochs,
                    valid_period: self.valid_period,
                    metric_args: &self.metric_args,
                    metric_for_checkpointing: &self.metric_for_checkpointing,
                    mode_for_checkpointing: self.mode_for_checkpointing,
                    optimizer: &self.optimizer,
                    scheduling: self.scheduling.as_ref(),
                    logger: self.logger.as_ref(),
                    tags: &self.tags,
                    logs_root: &self.logs_root,
                    logs_folder: self.logs_folder.as_deref(),
                    postfix: self.postfix.as_deref(),
                }
            }
        }
    };
}
pub(crate) use common_keys;

/// `freeze_n_epochs` needs a model with a backbone to freeze (OML freezes only `IFreezable`
/// models).
pub(crate) fn check_freeze(
    freeze_n_epochs: usize,
    freezable: bool,
    model: &str,
) -> Result<(), TrainError> {
    if freeze_n_epochs > 0 && !freezable {
        return Err(TrainError::config(
            "freeze_n_epochs",
            format!("{model} has no backbone to freeze (OML freezes only IFreezable models)"),
        ));
    }
    Ok(())
}

/// Only float32 runs (OML's `precision: 32`).
pub(crate) fn check_precision(precision: u32) -> Result<(), TrainError> {
    if precision != 32 {
        return Err(TrainError::config(
            "precision",
            format!("only 32 (float32) is supported, got {precision}"),
        ));
    }
    Ok(())
}

/// How every pipeline reads images: a broken image is an error naming its file and row, never
/// a blank stand-in (OML's validation and prediction pipelines fail on one too).
pub(crate) fn image_options(transforms: Transforms, cache_size: usize, seed: u64) -> ImageOptions {
    ImageOptions {
        transforms: Arc::new(transforms),
        cache_size,
        strict: true,
        seed,
    }
}

/// Prepares the data set (`prepare_data`) when asked and missing.
pub(crate) fn prepare(
    prep: Option<&PrepareData>,
    root: &Path,
    dataframe_name: &str,
    console: &Console,
) -> Result<(), TrainError> {
    let Some(prep) = prep else {
        return Ok(());
    };
    let spinner = console.spinner("preparing data");
    let msg = prepare_data(prep, root, dataframe_name, "prepare_data");
    spinner.finish_and_clear();
    if let Some(m) = msg? {
        console.line(m);
    }
    Ok(())
}

/// An output folder (`key`) must be a folder or not exist yet: checked before any work, so a
/// file in its place is named at once, not after the embedding as "File exists".
pub(crate) fn check_output_dir(dir: &Path, key: &str) -> Result<(), TrainError> {
    if dir.exists() && !dir.is_dir() {
        return Err(TrainError::config(
            key,
            format!("`{}` is a file, not a folder", dir.display()),
        ));
    }
    Ok(())
}

/// The keys `oml validate` and `oml predict` share, borrowed from their configs.
pub(crate) struct InferenceKeys<'a> {
    pub precision: u32,
    pub accelerator: Option<&'a str>,
    pub devices: Option<DeviceCount>,
    pub cpu_fast_path: Option<bool>,
    pub extractor: &'a ExtractorSection,
    /// The batch size's key and value.
    pub batch_size: (&'static str, usize),
    pub seed: u64,
}

/// The inference pipelines' skeleton: keys, device and extractor section checked before any
/// data is read; then the extractor built and every item embedded.
pub(crate) struct Inference {
    pub device: Device,
    pub extractor: ExtractorConfig,
    batch_size: usize,
    seed: u64,
}

impl Inference {
    /// Checks the shared keys, selects the device and parses the extractor section.
    pub fn check(k: InferenceKeys<'_>, opts: &RunOptions) -> Result<Self, TrainError> {
        check_precision(k.precision)?;
        let (key, batch_size) = k.batch_size;
        if batch_size == 0 {
            return Err(TrainError::config(key, "must be at least 1"));
        }
        let mut devices = select_devices(
            opts.device.as_deref(),
            k.accelerator,
            k.devices,
            k.cpu_fast_path,
        )?;
        Ok(Self {
            device: devices.swap_remove(0),
            extractor: crate::extractor::parse(k.extractor, "extractor")?,
            batch_size,
            seed: k.seed,
        })
    }

    /// Builds the extractor (weights loaded; random ones seeded and warned about) and embeds
    /// every item of `ds` in order, with a progress bar; returns the rows and the seconds spent.
    pub fn embed(
        &self,
        ds: &(dyn Dataset<ImageItem> + '_),
        console: &Console,
    ) -> Result<(Embeddings, f64), TrainError> {
        if self.extractor.weights().is_none() {
            console.line("warning: the extractor has no `weights`: its weights are random");
        }
        self.device.seed(self.seed);
        let extractor = self.extractor.build(&self.device)?.valid();
        let t0 = Instant::now();
        let bar = console.bar(ds.len() as u64, "embed");
        let rows = embed_dataset(&extractor, ds, self.batch_size, &self.device, Some(&bar));
        bar.finish_and_clear();
        Ok((rows?, t0.elapsed().as_secs_f64()))
    }
}

/// At most this many data-loading threads (`num_workers`).
const MAX_WORKERS: usize = 256;

/// The shared sections, parsed and checked before the run folder exists.
pub(crate) struct Plan {
    pub devices: Vec<Device>,
    /// `dataset_root`, resolved against the base folder.
    pub root: PathBuf,
    pub metric_args: MetricArgs,
    pub logger: LoggerConfig,
    pub optimizer: ModuleOptimizer,
    lr: f64,
    scheduling: Option<Scheduling>,
}

impl Plan {
    /// Checks the shared keys and parses the shared sections; selects the devices.
    pub fn check(c: &Common<'_>, opts: &TrainOptions) -> Result<Self, TrainError> {
        check_precision(c.precision)?;
        for (key, value) in [
            ("max_epochs", c.max_epochs),
            ("valid_period", c.valid_period),
        ] {
            if value == 0 {
                return Err(TrainError::config(key, "must be at least 1"));
            }
        }
        if c.num_workers > MAX_WORKERS {
            return Err(TrainError::config(
                "num_workers",
                format!(
                    "{} data-loading threads is more than the {MAX_WORKERS} oml-rs allows (each is an OS thread holding prefetched batches)",
                    c.num_workers
                ),
            ));
        }
        let metric_args = MetricArgs::parse(c.metric_args, "metric_args")?;
        let (optimizer, lr) = build_optimizer(c.optimizer, "optimizer")?;
        // checked now; built again once the epoch's length is known
        build_scheduler(c.scheduling, lr, 1, "scheduling")?;
        let logger = LoggerConfig::parse(c.logger)?;
        let devices = select_devices(
            opts.device.as_deref(),
            c.accelerator,
            c.devices,
            c.cpu_fast_path,
        )?;
        Ok(Self {
            devices,
            root: resolve(&opts.base_dir, c.dataset_root),
            metric_args,
            logger,
            optimizer,
            lr,
            scheduling: c.scheduling.cloned(),
        })
    }

    /// The first device (validation and inference run there).
    pub fn device(&self) -> &Device {
        &self.devices[0]
    }

    /// The learning-rate schedule for epochs of `batches_per_epoch` steps.
    pub fn scheduler(&self, batches_per_epoch: usize) -> Result<ModuleLrScheduler, TrainError> {
        build_scheduler(
            self.scheduling.as_ref(),
            self.lr,
            batches_per_epoch,
            "scheduling",
        )
    }

    /// Prepares the data set when asked and missing, then reads its train split (with `train`
    /// transforms) and validation split (with `validation` ones); both must have rows.
    pub fn read_data(
        &self,
        c: &Common<'_>,
        train: Transforms,
        validation: Transforms,
        console: &Console,
    ) -> Result<RetrievalDatasets, TrainError> {
        prepare(c.prepare_data, &self.root, c.dataframe_name, console)?;
        let options = |t| image_options(t, c.cache_size, c.seed);
        let (train, validation) = (options(train), options(validation));
        let read = ReadOptions::default();
        let data = if c.skip_broken_images {
            let (data, skipped) = retrieval_image_datasets_without_broken(
                &self.root,
                c.dataframe_name,
                train,
                validation,
                read,
            )?;
            if !skipped.is_empty() {
                console.line(format!(
                    "skipped {} broken image(s) (skip_broken_images: true):",
                    skipped.len()
                ));
                for f in &skipped {
                    console.line(format!("  {}", f.message));
                }
            }
            data
        } else {
            retrieval_image_datasets(&self.root, c.dataframe_name, train, validation, read)?
        };
        if c.show_dataset_warnings {
            for w in &data.dataframe.warnings {
                console.line(format!("warning: {w}"));
            }
        }
        let csv = self.root.join(c.dataframe_name);
        for (split, n) in [
            ("train", data.train.len()),
            ("validation", data.validation.len()),
        ] {
            if n == 0 {
                return Err(TrainError::EmptySplit {
                    csv: csv.display().to_string(),
                    split,
                });
            }
        }
        Ok(data)
    }

    /// Checks that `metric_for_checkpointing` is among the metrics validation will report on
    /// `validation` (so a typo fails now, not after the first validation).
    pub fn check_checkpoint_metric(
        &self,
        c: &Common<'_>,
        validation: &ImageQueryGalleryLabeledDataset,
    ) -> Result<(), TrainError> {
        let meta = QueryGalleryMeta::from_labeled_dataset(validation);
        let keys = self.metric_args.to_config().report_keys_for(&meta);
        if keys.contains(c.metric_for_checkpointing) {
            return Ok(());
        }
        Err(TrainError::config(
            "metric_for_checkpointing",
            format!(
                "`{}` is not computed; available: {}",
                c.metric_for_checkpointing,
                keys.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ))
    }

    /// The sampler's batches over `train`, tagged with their epoch and converted by `convert`.
    pub fn train_loader<T: Send + 'static>(
        &self,
        c: &Common<'_>,
        session: &Session,
        sampler: Arc<dyn BatchSampler>,
        train: &Arc<ImageLabeledDataset>,
        convert: ToTrainBatch<ImageBatch, T>,
    ) -> Arc<dyn DataLoader<T>> {
        let start = session.start();
        let batcher: Arc<dyn Batcher<ImageItem, ImageBatch>> = Arc::new(ImageBatcher::default());
        let dataset: Arc<dyn Dataset<ImageItem>> = train.clone();
        let pk = PkDataLoader::new(sampler, dataset, batcher, self.device().clone())
            .with_num_workers(c.num_workers)
            .with_start_epoch(start);
        let base = train.base().clone();
        let stop = stop_after(session.interrupter.clone(), session.stop_after_epoch);
        let hook = Arc::new(move |e: usize| {
            base.set_epoch(e as u64);
            stop(e);
        });
        Arc::new(EpochTagged::new(Arc::new(pk), convert, start + 1).with_epoch_hook(hook))
    }
}

/// A validation report with the figures drawn for it.
pub(crate) type Scored = (MetricsReport, Vec<(String, RgbImage)>);

/// Turns the rows the model produced for every validation item into a report.
pub(crate) type Scorer = Box<dyn FnMut(&Embeddings) -> Result<Scored, TrainError> + Send>;

/// The pipeline's validation: `n` items scored by the model in batches of `batch_size`
/// (`make` builds a batch from item positions), and what turns the rows into a report with
/// the keys `keys`.
pub(crate) struct Validation<V> {
    pub n: usize,
    pub batch_size: usize,
    pub make: MakeBatch<V>,
    pub score: Scorer,
    pub keys: BTreeSet<String>,
}

/// What [`Session::export`] wrote and reported.
pub(crate) struct Exported {
    pub initial: Option<MetricsReport>,
    pub last: MetricsReport,
    pub best: Option<(usize, f64)>,
    pub last_checkpoint: PathBuf,
    pub best_checkpoint: PathBuf,
}

/// Records validation reports: loggers, console and `history.json`.
#[derive(Clone)]
pub(crate) struct Recorder {
    history: Arc<Mutex<History>>,
    path: PathBuf,
    logger: SharedLogger,
    console: Console,
}

impl Recorder {
    /// Records the report of `epoch`, printed after `label`.
    pub fn record(&self, epoch: usize, label: &str, scored: &Scored) -> Result<(), TrainError> {
        let (report, figures) = scored;
        let mut logger = self.logger.clone();
        log_report(&mut logger, epoch as u64, report, figures);
        self.console
            .line(format!("{label}: {}", summary_line(report)));
        let mut h = lock(&self.history);
        h.push(EpochRecord::new(epoch, report.clone()));
        write_json(&self.path, &*h)
    }
}

/// An opened run: its folder, history, loggers, and what stops it.
pub(crate) struct Session {
    pub run: RunFolder,
    pub recorder: Recorder,
    pub interrupter: Interrupter,
    pub guard: StepGuard,
    pub console: Console,
    experiment_log: Option<ExperimentLog>,
    devices: Vec<Device>,
    max_epochs: usize,
    stop_after_epoch: Option<usize>,
    valid_period: usize,
}

impl Session {
    /// Opens (or resumes) the run folder of `config`, its history and loggers; a new run logs
    /// the config, tags and data set to the loggers.
    pub fn open(
        c: &Common<'_>,
        plan: &Plan,
        config: &impl serde::Serialize,
        opts: &TrainOptions,
    ) -> Result<Self, TrainError> {
        let console = opts.console.clone();
        let (run, config_json) = open_config_run(
            config,
            opts,
            c.logs_root,
            c.logs_folder,
            c.postfix,
            &console,
        )?;
        let history = Arc::new(Mutex::new(load_history(
            &run,
            c.metric_for_checkpointing,
            c.mode_for_checkpointing,
        )));
        let mut logger =
            SharedLogger::new(plan.logger.build_continuing(&run.path, &run.log_files)?);
        if !run.resumed {
            let csv = plan.root.join(c.dataframe_name);
            if let Err(e) = logger.log_pipeline_info(&config_json, c.tags, Some(&csv)) {
                console.line(format!("warning: logger: {e}"));
            }
        }
        let interrupter = Interrupter::new();
        Ok(Self {
            recorder: Recorder {
                history,
                path: run.path.join("history.json"),
                logger,
                console: console.clone(),
            },
            run,
            guard: StepGuard::new(interrupter.clone()),
            interrupter,
            console,
            experiment_log: opts.experiment_log.clone(),
            devices: plan.devices.clone(),
            max_epochs: c.max_epochs,
            stop_after_epoch: opts.stop_after_epoch,
            valid_period: c.valid_period,
        })
    }

    /// The epoch training continues after (0 for a new run).
    pub fn start(&self) -> usize {
        self.run.resume_epoch.unwrap_or(0)
    }

    /// Records the untrained model's metrics as epoch 0 unless the history has them.
    pub fn initial(
        &self,
        label: &str,
        compute: impl FnOnce() -> Result<Scored, TrainError>,
    ) -> Result<(), TrainError> {
        if lock(&self.recorder.history).initial().is_some() {
            return Ok(());
        }
        self.recorder.record(0, label, &compute()?)?;
        // epoch 0's logs, for a run killed before its first checkpoint to rewind to
        let marks = log_marks_path(&self.run.ckpt_dir, 0);
        mark_logs(&self.recorder.logger, &self.run.path, &marks)
            .map_err(|e| TrainError::io(&marks, e))
    }

    /// Trains `model` with Burn's `SupervisedTraining` from the resume point to `max_epochs`,
    /// validating with `validation`; returns the number of epochs completed in this call.
    #[allow(clippy::too_many_arguments)]
    pub fn fit<M, V>(
        &self,
        model: M,
        optim: ModuleOptimizer,
        scheduler: ModuleLrScheduler,
        train_loader: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
        batches_per_epoch: usize,
        loss_name: &str,
        validation: Validation<V>,
        save: SaveWeights<M>,
    ) -> Result<usize, TrainError>
    where
        M: LearnerModel
            + TrainStep<Output = EpochStepOutput>
            + InferenceStep<Input = V, Output = EmbeddingOutput>,
        V: Send + 'static,
    {
        let start = self.start();
        if start >= self.max_epochs {
            return Ok(0);
        }
        let device = self.devices[0].clone();
        let gated = EveryNthEpoch::new(
            Arc::new(ChunkLoader::new(
                validation.n,
                validation.batch_size,
                validation.make,
                device,
            )),
            self.valid_period,
            self.max_epochs,
            start + 1,
        );
        let valid_epoch = gated.current_epoch();
        let valid_loader: Arc<dyn DataLoader<V>> = Arc::new(gated);
        let on_epoch: OnEpoch = {
            let recorder = self.recorder.clone();
            let mut score = validation.score;
            let max_epochs = self.max_epochs;
            Box::new(move |epoch: usize, rows: &Embeddings| {
                let scored = score(rows)?;
                recorder.record(epoch, &format!("epoch {epoch}/{max_epochs}"), &scored)?;
                Ok(scored.0)
            })
        };
        let scoring = EpochScoring::new(validation.n, validation.keys, valid_epoch, on_epoch);
        let retrieval = RetrievalMetrics::from_metrics(scoring).with_guard(self.guard.clone());
        let ctx = FitContext {
            run: &self.run,
            max_epochs: self.max_epochs,
            devices: &self.devices,
            interrupter: self.interrupter.clone(),
            guard: self.guard.clone(),
            history: self.recorder.history.clone(),
            logger: self.recorder.logger.clone(),
            console: self.console.clone(),
            experiment_log: self.experiment_log.clone(),
            loss_name: loss_name.to_string(),
            batches_per_epoch,
            save,
        };
        fit(
            ctx,
            model,
            optim,
            scheduler,
            train_loader,
            valid_loader,
            retrieval,
        )
    }

    /// Saves the last and the best model with `save` (`checkpoints/last.bpk`, `best.bpk`),
    /// writes `metrics.json` (the last epoch's report; `revalidate` computes it when its
    /// validation was lost, killed right after the checkpoint) and `metrics_best.json`, and
    /// marks the run finished.
    pub fn export<M: Module>(
        &self,
        model: &M,
        save: impl Fn(&M, &Path) -> Result<(), TrainError>,
        revalidate: impl FnOnce(&M) -> Result<Scored, TrainError>,
    ) -> Result<Exported, TrainError> {
        let (ckpt_dir, last_epoch) = (&self.run.ckpt_dir, self.max_epochs);
        let last_model = load_epoch(model, ckpt_dir, last_epoch)?;
        let last_checkpoint = ckpt_dir.join("last.bpk");
        save(&last_model, &last_checkpoint)?;
        let best = lock(&self.recorder.history).best();
        let best_checkpoint = ckpt_dir.join("best.bpk");
        match best {
            Some(b)
                if b.epoch != last_epoch
                    && crate::checkpoint::record_path(ckpt_dir, "model", b.epoch).is_file() =>
            {
                save(&load_epoch(model, ckpt_dir, b.epoch)?, &best_checkpoint)?
            }
            _ => save(&last_model, &best_checkpoint)?,
        }
        let recorded = lock(&self.recorder.history).get(last_epoch).cloned();
        let last = match recorded {
            Some(r) => r.report,
            None => {
                let scored = revalidate(&last_model)?;
                let label = format!("epoch {last_epoch}/{last_epoch}");
                self.recorder.record(last_epoch, &label, &scored)?;
                scored.0
            }
        };
        write_json(&self.run.path.join("metrics.json"), &last)?;
        let h = lock(&self.recorder.history).clone();
        if let Some(b) = h.get(best.map_or(last_epoch, |b| b.epoch)) {
            write_json(&self.run.path.join("metrics_best.json"), &b.report)?;
        }
        let mut logger = self.recorder.logger.clone();
        finish(&self.run, &mut logger, last_epoch)?;
        Ok(Exported {
            initial: h.initial().map(|r| r.report.clone()),
            last,
            best: best.map(|b| (b.epoch, b.value)),
            last_checkpoint,
            best_checkpoint,
        })
    }
}
