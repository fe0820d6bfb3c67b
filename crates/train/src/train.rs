//! `oml train`: OML's `extractor_training_pipeline` on Burn's `Learner`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use oml_datasets::batch::{ImageBatch, ImageBatcher};
use oml_datasets::images::{ImageLabeledDataset, ImageQueryGalleryLabeledDataset};
use oml_datasets::transforms::Pipeline as Transforms;
use oml_interfaces::{BatchSampler, Criterion, LabeledDataset, MetricsReport};
use oml_metrics::{EvalHooks, MetricsConfig, QueryGalleryMeta, evaluate};
use oml_mining::{Category, CriterionConfig, CriterionModule, Label2Category};
use oml_sampling::{SamplerConfig, ShuffledBatches};

use crate::config::{NamedExt, TrainConfig};
use crate::data::{embed_dataset, extractor_transforms, worst_query_figures};
use crate::error::TrainError;
use crate::extractor::{self, AnyExtractor, ExtractorConfig};
use crate::loaders::{MakeBatch, ToTrainBatch};
use crate::model::{InferBatch, MetricLearner, TrainBatch};
use crate::pipeline::{Plan, Scored, Session, Validation, check_freeze, common_keys};
use crate::progress::Console;
use crate::runner::SaveWeights;
use crate::validation::Embeddings;

pub use crate::pipeline::select_devices;
pub use crate::runner::TrainOptions;

/// The trained module of the pipelines.
pub type Model = MetricLearner<AnyExtractor, CriterionModule>;

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
    pub fn evaluate(&self, emb: &Embeddings) -> Result<Scored, TrainError> {
        emb.check_finite()?;
        let e = evaluate(
            &emb.data,
            emb.dim,
            &self.meta,
            &self.config,
            &self.device,
            &EvalHooks::default(),
        )?;
        let figures = if self.log_images {
            worst_query_figures(&e, &self.dataset, &self.visualized, self.n_worst)?
        } else {
            Vec::new()
        };
        Ok((e.report, figures))
    }

    /// Embeds the validation split with `extractor` (batches of `batch_size`) and evaluates it.
    fn embed_and_evaluate(
        &self,
        extractor: &AnyExtractor,
        batch_size: usize,
        console: Option<&Console>,
    ) -> Result<Scored, TrainError> {
        let bar = console.map(|c| c.bar(self.dataset.len() as u64, "embed"));
        let emb = embed_dataset(
            extractor,
            self.dataset.as_ref(),
            batch_size,
            &self.device,
            bar.as_ref(),
        );
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let emb = emb?;
        let spinner = console.map(|c| c.spinner("retrieval"));
        let scored = self.evaluate(&emb);
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        scored
    }
}

/// The sections only `oml train` has, parsed and cross-checked.
struct Sections {
    extractor: ExtractorConfig,
    criterion: CriterionConfig,
    sampler: Option<SamplerConfig>,
    transforms_train: Transforms,
    transforms_val: Transforms,
}

common_keys!(TrainConfig);

impl TrainConfig {
    fn sections(&self) -> Result<Sections, TrainError> {
        if self.bs_val == 0 {
            return Err(TrainError::config("bs_val", "must be at least 1"));
        }
        let extractor = extractor::parse(&self.extractor, "extractor")?;
        check_freeze(
            self.freeze_n_epochs,
            extractor.is_freezable(),
            &format!("extractor `{}`", extractor.name()),
        )?;
        let criterion: CriterionConfig = self.criterion.typed("criterion")?;
        let sampler: Option<SamplerConfig> = self
            .sampler
            .as_ref()
            .map(|s| s.typed("sampler"))
            .transpose()?;
        if sampler.is_none() && self.bs_train.is_none_or(|b| b == 0) {
            return Err(TrainError::config(
                "bs_train",
                "a positive bs_train is required when sampler is null",
            ));
        }
        let transforms_train = extractor_transforms(
            self.transforms_train.as_ref(),
            "transforms_train",
            &extractor,
        )?;
        let transforms_val =
            extractor_transforms(self.transforms_val.as_ref(), "transforms_val", &extractor)?;
        Ok(Sections {
            extractor,
            criterion,
            sampler,
            transforms_train,
            transforms_val,
        })
    }
}

/// The train split's batches: the configured P×K sampler, or shuffled batches of `bs_train`.
fn train_sampler(
    config: &TrainConfig,
    sampler: Option<&SamplerConfig>,
    train: &ImageLabeledDataset,
) -> Result<Arc<dyn BatchSampler>, TrainError> {
    let sampler: Arc<dyn BatchSampler> = match sampler {
        Some(s) => Arc::from(
            s.build(
                train.labels(),
                train.label_to_category().as_ref(),
                config.seed,
            )
            .map_err(|e| TrainError::config("sampler", e.to_string()))?,
        ),
        None => Arc::new(ShuffledBatches::new(
            train.len(),
            config.bs_train.unwrap_or(1),
            config.seed,
        )),
    };
    if sampler.num_batches() == 0 {
        return Err(TrainError::config(
            "sampler",
            "the sampler draws no batch from the train split",
        ));
    }
    Ok(sampler)
}

/// The criterion, told the train split's categories when it has them.
fn build_criterion(
    config: CriterionConfig,
    train: &ImageLabeledDataset,
    device: &Device,
) -> Result<CriterionModule, TrainError> {
    let config = match train.label_to_category() {
        Some(l2c) => config.with_label2category(Label2Category(
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
        None => config,
    };
    config
        .build(device)
        .map_err(|e| TrainError::config("criterion", e.to_string()))
}

/// Batches of validation items by position.
fn image_batches(dataset: Arc<ImageQueryGalleryLabeledDataset>) -> MakeBatch<InferBatch> {
    Arc::new(move |idx: &[usize], dev: &Device| {
        let b = ImageBatcher::default().batch(dataset.get_many(idx.to_vec())?, dev);
        Ok(InferBatch {
            images: b.images,
            indices: b.indices,
        })
    })
}

/// Runs `oml train`: trains, validates every `valid_period` epochs, checkpoints every epoch,
/// resumes an unfinished run, writes the run folder. Every section is parsed and the data set
/// read before the run folder is created.
pub fn train(config: &TrainConfig, opts: TrainOptions) -> Result<TrainOutcome, TrainError> {
    let console = opts.console.clone();
    let c = config.common();
    let sections = config.sections()?;
    let plan = Plan::check(&c, &opts)?;
    let data = plan.read_data(
        &c,
        sections.transforms_train,
        sections.transforms_val,
        &console,
    )?;
    plan.check_checkpoint_metric(&c, &data.validation)?;
    let (train_ds, val_ds) = (Arc::new(data.train), Arc::new(data.validation));
    let sampler = train_sampler(config, sections.sampler.as_ref(), &train_ds)?;
    let batches_per_epoch = sampler.num_batches();
    let scheduler = plan.scheduler(batches_per_epoch)?;
    let device = plan.device().clone();
    device.seed(config.seed);
    let extractor = sections.extractor.build(&device)?;
    let criterion = build_criterion(sections.criterion, &train_ds, &device)?;
    let criterion_name = criterion.criterion_name().to_string();

    let session = Session::open(&c, &plan, config, &opts)?;
    let model: Model = MetricLearner::new(extractor, criterion)
        .with_freeze_n_epochs(config.freeze_n_epochs)
        .with_guard(session.guard.clone());
    let validator = Validator {
        dataset: val_ds.clone(),
        meta: Arc::new(QueryGalleryMeta::from_labeled_dataset(val_ds.as_ref())),
        config: plan.metric_args.to_config(),
        visualized: plan.metric_args.visualized(),
        n_worst: config.n_worst_queries.unwrap_or(5),
        log_images: config.log_images,
        device: device.clone(),
    };
    session.initial("before training", || {
        validator.embed_and_evaluate(&model.extractor.valid(), config.bs_val, Some(&console))
    })?;

    let save: SaveWeights<Model> = Arc::new(|m: &Model, path: &Path| Ok(m.extractor.save(path)?));
    let t0 = Instant::now();
    let guard = session.guard.clone();
    let convert: ToTrainBatch<ImageBatch> = Arc::new(move |b: ImageBatch, epoch| {
        let labels = b.labels.unwrap_or_else(|| {
            guard.fail("a training batch has no labels");
            vec![0; b.indices.len()]
        });
        TrainBatch {
            images: b.images,
            labels,
            epoch,
        }
    });
    let train_loader = plan.train_loader(&c, &session, sampler, &train_ds, convert);
    let validation = Validation {
        n: val_ds.len(),
        batch_size: config.bs_val,
        make: image_batches(val_ds.clone()),
        score: {
            let validator = validator.clone();
            Box::new(move |emb: &Embeddings| validator.evaluate(emb))
        },
        keys: validator.config.report_keys_for(&validator.meta),
    };
    let epochs_run = session.fit(
        model.clone(),
        plan.optimizer,
        scheduler,
        train_loader,
        batches_per_epoch,
        &criterion_name,
        validation,
        save.clone(),
    )?;
    let train_seconds = t0.elapsed().as_secs_f64();

    let out = session.export(&model, &*save, |m| {
        validator.embed_and_evaluate(&m.extractor.valid(), config.bs_val, None)
    })?;
    Ok(TrainOutcome {
        run_dir: session.run.path.clone(),
        resumed_after: session.run.resume_epoch,
        initial: out.initial,
        last: out.last,
        best: out.best,
        last_checkpoint: out.last_checkpoint,
        best_checkpoint: out.best_checkpoint,
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
