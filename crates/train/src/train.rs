//! `oml train`: OML's `extractor_training_pipeline` on Burn's `Learner`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use burn::train::Interrupter;
use oml_datasets::batch::{ImageBatch, ImageBatcher};
use oml_datasets::dataframe::ReadOptions;
use oml_datasets::images::{
    ImageItem, ImageOptions, ImageQueryGalleryLabeledDataset, retrieval_image_datasets,
};
use oml_interfaces::{
    BatchSampler, Criterion, LabeledDataset, MetricsReport, PipelineLogger, RgbImage,
};
use oml_logging::{SharedLogger, loggers_from_config};
use oml_metrics::{EvalHooks, MetricsConfig, QueryGalleryMeta, evaluate};
use oml_mining::{Category, CriterionConfig, CriterionModule, Label2Category};
use oml_sampling::{PkDataLoader, SamplerConfig, ShuffledBatches};

use crate::checkpoint::checkpoint_path;
use crate::config::{TrainConfig, resolve};
use crate::data::{
    MetricArgs, embed_dataset, prepare_data, transforms, validation_meta, worst_query_figures,
};
use crate::error::TrainError;
use crate::extractor::{ExtractorSpec, TrainExtractor};
use crate::history::{EpochRecord, lookup};
use crate::loaders::{ChunkLoader, EpochTagged, EveryNthEpoch, ToTrainBatch};
use crate::model::{InferBatch, MetricLearner, StepGuard, TrainBatch};
use crate::optim::{build_optimizer, build_scheduler};
use crate::runner::{
    FitContext, finish, fit, load_epoch, load_history, lock, log_report, open_config_run,
    stop_after, write_json,
};
use crate::validation::{Embeddings, OnEpoch, ValidationHub, summary_line};

pub use crate::runner::TrainOptions;

/// The trained module of the pipelines.
pub type Model = MetricLearner<TrainExtractor, CriterionModule>;

/// What a finished `oml train` produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The epoch training resumed after, if it resumed.
    pub resumed_after: Option<usize>,
    /// Metrics of the untrained model.
    pub initial: Option<MetricsReport>,
    /// Metrics after the last epoch (also in `metrics.json`).
    pub last: MetricsReport,
    /// The best epoch and its checkpointing metric.
    pub best: Option<(usize, f64)>,
    /// The extractor after the last epoch (`checkpoints/last.bpk`).
    pub last_checkpoint: PathBuf,
    /// The best extractor (`checkpoints/best.bpk`).
    pub best_checkpoint: PathBuf,
    /// Epochs trained in this invocation.
    pub epochs_run: usize,
    /// Wall time of those epochs (training and validation), in seconds.
    pub train_seconds: f64,
}

/// Devices of a config: the backend by name (`flag`, else `accelerator`, else the default),
/// `devices` of them (the same CPU device for CPU backends, GPUs 0..n for wgpu). A config's
/// `cpu_fast_path` fixes the CPU fast path unless the CLI flag or `OML_CPU_FAST_PATH` already did.
pub fn select_devices(
    flag: Option<&str>,
    accelerator: Option<&str>,
    devices: Option<usize>,
    cpu_fast_path: Option<bool>,
) -> Result<Vec<Device>, TrainError> {
    if let Some(on) = cpu_fast_path {
        oml_interfaces::cpu::prefer(on);
    }
    let name = flag.or(accelerator);
    let first = oml_interfaces::device::select_device(name)?;
    let n = devices.unwrap_or(1);
    if n == 0 {
        return Err(TrainError::config("devices", "must be at least 1"));
    }
    let is_gpu =
        name.is_some_and(|n| matches!(n.trim().to_ascii_lowercase().as_str(), "wgpu" | "gpu"));
    Ok((0..n)
        .map(|i| {
            if i == 0 || !is_gpu {
                first.clone()
            } else {
                oml_interfaces::device::wgpu_device(i).unwrap_or_else(|| first.clone())
            }
        })
        .collect())
}

/// Everything validation needs, shared between the baseline, the Learner's validation and the
/// final report.
#[derive(Clone)]
pub(crate) struct Validator {
    pub dataset: Arc<ImageQueryGalleryLabeledDataset>,
    pub meta: Arc<QueryGalleryMeta>,
    pub config: MetricsConfig,
    pub visualized: Vec<(String, String)>,
    pub n_worst: usize,
    pub log_images: bool,
    pub device: Device,
}

impl Validator {
    /// Metrics of `emb` (and the worst-queries figures when asked).
    pub fn evaluate(
        &self,
        emb: &Embeddings,
    ) -> Result<(MetricsReport, Vec<(String, RgbImage)>), TrainError> {
        let e = evaluate(
            &emb.data,
            emb.dim,
            &self.meta,
            &self.config,
            &self.device,
            &EvalHooks::default(),
        )
        .map_err(|e| TrainError::Metrics(e.to_string()))?;
        let figures = if self.log_images {
            worst_query_figures(&e, &self.dataset, &self.visualized, self.n_worst)?
        } else {
            Vec::new()
        };
        Ok((e.report, figures))
    }
}

/// Runs `oml train`: trains, validates every `valid_period` epochs, checkpoints every epoch,
/// resumes an unfinished run, writes the run folder.
pub fn train(config: &TrainConfig, opts: TrainOptions) -> Result<TrainOutcome, TrainError> {
    let console = opts.console.clone();
    // ---- checks that need no data
    if config.precision != 32 {
        return Err(TrainError::config(
            "precision",
            format!("only 32 (float32) is supported, got {}", config.precision),
        ));
    }
    if config.max_epochs == 0 {
        return Err(TrainError::config("max_epochs", "must be at least 1"));
    }
    if config.valid_period == 0 {
        return Err(TrainError::config("valid_period", "must be at least 1"));
    }
    if config.bs_val == 0 {
        return Err(TrainError::config("bs_val", "must be at least 1"));
    }
    let spec = ExtractorSpec::parse(&config.extractor, "extractor")?;
    if config.freeze_n_epochs > 0 && !spec.is_freezable() {
        return Err(TrainError::config(
            "freeze_n_epochs",
            format!(
                "extractor `{}` has no backbone to freeze (OML freezes only IFreezable models: small_cnn, extractor_with_mlp)",
                spec.name()
            ),
        ));
    }
    let metric_args = MetricArgs::parse(&config.metric_args, "metric_args")?;
    let criterion_config: CriterionConfig = serde_json::from_value(serde_json::json!({
        "name": config.criterion.name, "args": config.criterion.args_object()
    }))
    .map_err(|e| TrainError::config("criterion", e.to_string()))?;
    let sampler_config: Option<SamplerConfig> = match &config.sampler {
        None => None,
        Some(s) => Some(crate::config::section(
            serde_json::json!({"name": s.name, "args": s.args_object()}),
            "sampler",
        )?),
    };
    if sampler_config.is_none() && config.bs_train.is_none_or(|b| b == 0) {
        return Err(TrainError::config(
            "bs_train",
            "a positive bs_train is required when sampler is null",
        ));
    }
    let devices = select_devices(
        opts.device.as_deref(),
        config.accelerator.as_deref(),
        config.devices,
        config.cpu_fast_path,
    )?;
    let device = devices[0].clone();

    // ---- run folder
    let (run, config_json) = open_config_run(
        config,
        &opts,
        &config.logs_root,
        config.logs_folder.as_deref(),
        config.postfix.as_deref(),
        &console,
    )?;
    let (run_dir, ckpt_dir, resume_epoch) =
        (run.path.clone(), run.ckpt_dir.clone(), run.resume_epoch);

    // ---- data
    let root = resolve(&opts.base_dir, &config.dataset_root);
    if let Some(prep) = &config.prepare_data {
        let spinner = console.spinner("preparing data");
        let msg = prepare_data(prep, &root, &config.dataframe_name, "prepare_data");
        spinner.finish_and_clear();
        if let Some(m) = msg? {
            console.line(m);
        }
    }
    let train_t = transforms(
        config.transforms_train.as_ref(),
        "transforms_train",
        "norm_albu",
    )?;
    let val_t = transforms(
        config.transforms_val.as_ref(),
        "transforms_val",
        "norm_albu",
    )?;
    let image_opts = |t| ImageOptions {
        transforms: Arc::new(t),
        cache_size: config.cache_size,
        strict: false,
        seed: config.seed,
    };
    let data = retrieval_image_datasets(
        &root,
        &config.dataframe_name,
        image_opts(train_t),
        image_opts(val_t),
        ReadOptions::default(),
    )
    .map_err(|e| TrainError::Data(e.to_string()))?;
    if config.show_dataset_warnings {
        for w in &data.dataframe.warnings {
            console.line(format!("warning: {w}"));
        }
    }
    let train_ds = Arc::new(data.train);
    let val_ds = Arc::new(data.validation);
    if train_ds.len() == 0 {
        return Err(TrainError::Data(format!(
            "{} has no train rows",
            root.join(&config.dataframe_name).display()
        )));
    }
    if val_ds.len() == 0 {
        return Err(TrainError::Data(format!(
            "{} has no validation rows",
            root.join(&config.dataframe_name).display()
        )));
    }
    let labels = train_ds.labels().to_vec();
    let label2category = train_ds.label_to_category();
    let sampler: Arc<dyn BatchSampler> = match &sampler_config {
        Some(s) => Arc::from(
            s.build(&labels, label2category.as_ref(), config.seed)
                .map_err(|e| TrainError::config("sampler", e.to_string()))?,
        ),
        None => Arc::new(ShuffledBatches::new(
            train_ds.len(),
            config.bs_train.unwrap_or(1),
            config.seed,
        )),
    };
    let batches_per_epoch = sampler.num_batches();
    if batches_per_epoch == 0 {
        return Err(TrainError::config(
            "sampler",
            "the sampler draws no batch from the train split",
        ));
    }

    // ---- model
    device.seed(config.seed);
    let extractor = spec.build(&device)?;
    let criterion_config = match &label2category {
        Some(l2c) => criterion_config.with_label2category(Label2Category(
            l2c.iter()
                .map(|(k, v)| {
                    (
                        *k,
                        v.parse::<i64>()
                            .map_or_else(|_| Category::from(v.as_str()), Category::from),
                    )
                })
                .collect(),
        )),
        None => criterion_config,
    };
    let criterion = criterion_config
        .build(&device)
        .map_err(|e| TrainError::config("criterion", e.to_string()))?;
    let criterion_name = criterion.criterion_name().to_string();
    let interrupter = Interrupter::new();
    let guard = StepGuard::new(interrupter.clone());
    let model: Model = MetricLearner::new(extractor, criterion)
        .with_freeze_n_epochs(config.freeze_n_epochs)
        .with_guard(guard.clone());
    let (optim, lr) = build_optimizer(&config.optimizer, "optimizer")?;
    let scheduler = build_scheduler(
        config.scheduling.as_ref(),
        lr,
        batches_per_epoch,
        "scheduling",
    )?;

    // ---- history and loggers
    let history_path = run_dir.join("history.json");
    let history = Arc::new(Mutex::new(load_history(
        &run,
        &config.metric_for_checkpointing,
        config.mode_for_checkpointing,
    )));
    let fanout = loggers_from_config(config.logger.as_ref(), &run_dir)
        .map_err(|e| TrainError::config("logger", e.to_string()))?;
    let mut logger = SharedLogger::new(fanout);
    if !run.resumed {
        let csv = root.join(&config.dataframe_name);
        if let Err(e) = logger.log_pipeline_info(&config_json, &config.tags, Some(&csv)) {
            console.line(format!("warning: logger: {e}"));
        }
    }
    let validator = Validator {
        dataset: val_ds.clone(),
        meta: Arc::new(validation_meta(&val_ds)),
        config: metric_args.to_config(),
        visualized: metric_args.visualized(),
        n_worst: config.n_worst_queries.unwrap_or(5),
        log_images: config.log_images,
        device: device.clone(),
    };

    // ---- the untrained model's metrics (epoch 0)
    let has_initial = lock(&history).initial().is_some();
    if !has_initial {
        let bar = console.bar(val_ds.len() as u64, "embed");
        let emb = embed_dataset(
            &model.extractor.valid(),
            val_ds.as_ref(),
            config.bs_val,
            &device,
            Some(&bar),
        );
        bar.finish_and_clear();
        let emb = emb?;
        let spinner = console.spinner("retrieval");
        let evaluated = validator.evaluate(&emb);
        spinner.finish_and_clear();
        let (report, figures) = evaluated?;
        log_report(&mut logger, 0, &report, &figures);
        console.line(format!("before training: {}", summary_line(&report)));
        lock(&history).push(EpochRecord::new(0, report));
        write_json(&history_path, &*lock(&history))?;
    }
    if let Some(initial) = lock(&history).initial()
        && lookup(&initial.report, &config.metric_for_checkpointing).is_none()
    {
        let known: Vec<String> = initial
            .report
            .flatten()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        return Err(TrainError::config(
            "metric_for_checkpointing",
            format!(
                "`{}` is not computed; available: {}",
                config.metric_for_checkpointing,
                known.join(", ")
            ),
        ));
    }

    // ---- Learner
    let start = resume_epoch.unwrap_or(0);
    let mut epochs_run = 0;
    let t0 = Instant::now();
    if start < config.max_epochs {
        let batcher: Arc<dyn Batcher<ImageItem, ImageBatch>> = Arc::new(ImageBatcher::default());
        let train_dyn: Arc<dyn Dataset<ImageItem>> = train_ds.clone();
        let pk = PkDataLoader::new(sampler.clone(), train_dyn, batcher.clone(), device.clone())
            .with_num_workers(config.num_workers)
            .with_start_epoch(start);
        let guard_c = guard.clone();
        let convert: ToTrainBatch<ImageBatch> = Arc::new(move |b: ImageBatch, epoch| {
            let labels = b.labels.unwrap_or_else(|| {
                guard_c.fail("a training batch has no labels".into());
                vec![0; b.indices.len()]
            });
            TrainBatch {
                images: b.images,
                labels,
                epoch,
            }
        });
        let base = train_ds.base().clone();
        let stop = stop_after(interrupter.clone(), opts.stop_after_epoch);
        let hook = Arc::new(move |e: usize| {
            base.set_epoch(e as u64);
            stop(e);
        });
        let train_loader: Arc<dyn DataLoader<TrainBatch>> =
            Arc::new(EpochTagged::new(Arc::new(pk), convert, start + 1).with_epoch_hook(hook));
        let vds = val_ds.clone();
        let make = Arc::new(move |idx: &[usize], dev: &Device| {
            let items = vds.get_many(idx.to_vec())?;
            let b = ImageBatcher::default().batch(items, dev);
            Ok(InferBatch {
                images: b.images,
                indices: b.indices,
            })
        });
        let gated = EveryNthEpoch::new(
            Arc::new(ChunkLoader::new(
                val_ds.len(),
                config.bs_val,
                make,
                device.clone(),
            )),
            config.valid_period,
            config.max_epochs,
            start + 1,
        );
        let valid_epoch = gated.current_epoch();
        let valid_loader: Arc<dyn DataLoader<InferBatch>> = Arc::new(gated);

        let on_epoch: OnEpoch = {
            let validator = validator.clone();
            let history = history.clone();
            let history_path = history_path.clone();
            let mut logger = logger.clone();
            let console = console.clone();
            let max_epochs = config.max_epochs;
            Box::new(move |epoch: usize, emb: &Embeddings| {
                let (report, figures) = validator.evaluate(emb).map_err(|e| e.to_string())?;
                log_report(&mut logger, epoch as u64, &report, &figures);
                console.line(format!(
                    "epoch {epoch}/{max_epochs}: {}",
                    summary_line(&report)
                ));
                let mut h = lock(&history);
                h.push(EpochRecord::new(epoch, report.clone()));
                write_json(&history_path, &*h).map_err(|e| e.to_string())?;
                Ok(report)
            })
        };
        let hub = Arc::new(Mutex::new(ValidationHub::new(
            val_ds.len(),
            valid_epoch,
            on_epoch,
            guard.clone(),
        )));

        let ctx = FitContext {
            run: &run,
            max_epochs: config.max_epochs,
            devices: &devices,
            interrupter: interrupter.clone(),
            guard: guard.clone(),
            history: history.clone(),
            logger: logger.clone(),
            console: console.clone(),
            loss_name: criterion_name.clone(),
            batches_per_epoch,
        };
        epochs_run = fit(
            ctx,
            model.clone(),
            optim,
            scheduler,
            train_loader,
            valid_loader,
            hub,
        )?;
    }
    let train_seconds = t0.elapsed().as_secs_f64();

    // ---- export: the last and the best extractor, metrics.json
    let last_epoch = config.max_epochs;
    let last_model = load_epoch(&model, &ckpt_dir, last_epoch)?;
    let last_checkpoint = ckpt_dir.join("last.bpk");
    last_model.extractor.save(&spec, &last_checkpoint)?;
    let (best, best_checkpoint) = {
        let best = lock(&history).best();
        let path = ckpt_dir.join("best.bpk");
        match best {
            Some(b)
                if b.epoch != last_epoch
                    && checkpoint_path(&ckpt_dir, "model", b.epoch).is_file() =>
            {
                load_epoch(&model, &ckpt_dir, b.epoch)?
                    .extractor
                    .save(&spec, &path)?;
            }
            _ => last_model.extractor.save(&spec, &path)?,
        }
        (best.map(|b| (b.epoch, b.value)), path)
    };
    let h = lock(&history).clone();
    let last_report = match h.get(last_epoch) {
        Some(r) => r.report.clone(),
        None => {
            // validation of the last epoch was lost (killed right after checkpointing it)
            let emb = embed_dataset(
                &last_model.extractor.valid(),
                val_ds.as_ref(),
                config.bs_val,
                &device,
                None,
            )?;
            let (report, figures) = validator.evaluate(&emb)?;
            log_report(&mut logger, last_epoch as u64, &report, &figures);
            lock(&history).push(EpochRecord::new(last_epoch, report.clone()));
            write_json(&history_path, &*lock(&history))?;
            report
        }
    };
    write_json(&run_dir.join("metrics.json"), &last_report)?;
    if let Some(b) = h.get(best.map_or(last_epoch, |b| b.0)) {
        write_json(&run_dir.join("metrics_best.json"), &b.report)?;
    }
    finish(&run, &mut logger, last_epoch)?;
    Ok(TrainOutcome {
        run_dir,
        resumed_after: resume_epoch,
        initial: h.initial().map(|r| r.report.clone()),
        last: last_report,
        best,
        last_checkpoint,
        best_checkpoint,
        epochs_run,
        train_seconds,
    })
}

/// Rows `metric | before | after` of the OVERALL values (categories follow), for the summary.
pub fn comparison_rows(before: Option<&MetricsReport>, after: &MetricsReport) -> Vec<Vec<String>> {
    let b: BTreeMap<String, f64> = before
        .map(|r| r.flatten().into_iter().collect())
        .unwrap_or_default();
    after
        .flatten()
        .into_iter()
        .map(|(k, v)| {
            let prev = b.get(&k).map_or("-".to_string(), |x| format!("{x:.4}"));
            vec![k, prev, format!("{v:.4}")]
        })
        .collect()
}
