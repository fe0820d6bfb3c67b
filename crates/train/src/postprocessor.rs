//! `oml train-postprocessor`: OML's `postprocessor_training_pipeline`. A pairwise model
//! (`concat_siamese`, `linear_siamese`, …) learns to re-rank the top `top_n` results of a frozen
//! extractor: pairs are mined in each P×K batch from the extractor's embeddings (OML's
//! `PairsMiner`), the model scores them, binary cross-entropy against "is negative" trains it,
//! and validation re-ranks the frozen retrieval with `PairwiseReranker` before computing the
//! metrics.
//!
//! Validation runs inside the Learner: the pairs the re-ranker will ask for (each query's top
//! `top_n` gallery items, fixed because the extractor is frozen) are scored by the model's
//! `InferenceStep`, and the report is computed from those scores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::data::dataloader::DataLoader;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError as BurnDatasetError};
use burn::module::ModuleDisplay;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::train::{InferenceStep, Interrupter, TrainOutput, TrainStep};
use oml_datasets::batch::{ImageBatch, ImageBatcher};
use oml_datasets::dataframe::ReadOptions;
use oml_datasets::images::{ImageItem, ImageOptions, retrieval_image_datasets};
use oml_interfaces::{
    Freezable, LabeledDataset, MetricsReport, PairwiseModel, PipelineLogger, RetrievalError,
};
use oml_logging::{SharedLogger, loggers_from_config};
use oml_metrics::{EvalHooks, evaluate};
use oml_mining::PairsMiner;
use oml_models::checkpoint::{LoadOptions, save_burnpack};
use oml_models::{AnyPairwise, PairwiseConfig};
use oml_retrieval::PairwiseReranker;
use oml_sampling::{PkDataLoader, SamplerConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ExtractorSection, Mode, NamedArgs, PrepareData, Scheduling, resolve, section};
use crate::data::{
    MetricArgs, embed_dataset, prepare_data, transforms, validation_meta, worst_query_figures,
};
use crate::error::TrainError;
use crate::extractor::ExtractorSpec;
use crate::history::{EpochRecord, lookup};
use crate::loaders::{ChunkLoader, EpochTagged, EveryNthEpoch, ToTrainBatch};
use crate::model::{EmbeddingOutput, StepGuard, StepOutput};
use crate::optim::{build_optimizer, build_scheduler};
use crate::predict::write_npy_f32;
use crate::rundir::fingerprint;
use crate::runner::{
    FitContext, finish, fit, load_epoch, load_history, lock, log_report, open_config_run,
    stop_after, write_json,
};
use crate::train::{TrainOptions, select_devices};
use crate::validation::{Embeddings, OnEpoch, ValidationHub, summary_line};

/// The re-ranker's own default batch size (the shared defaults live in `config`).
fn bs() -> usize {
    128
}

/// `oml train-postprocessor`'s config (OML's `postprocessor_training_pipeline` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostprocessorConfig {
    /// Seed.
    #[serde(default = "crate::config::default_seed")]
    pub seed: u64,
    /// Backend name.
    #[serde(default)]
    pub accelerator: Option<String>,
    /// The CPU fast path on the CPU backends (`oml_interfaces::cpu`): `true` (the default) or
    /// `false` for Burn's ops alone. The CLI's `--cpu-fast-path` and `OML_CPU_FAST_PATH` win.
    #[serde(default)]
    pub cpu_fast_path: Option<bool>,
    /// Number of devices.
    #[serde(default)]
    pub devices: Option<usize>,
    /// Only 32.
    #[serde(default = "crate::config::default_precision")]
    pub precision: u32,
    /// Folder the dataframe's paths start from.
    pub dataset_root: PathBuf,
    /// The dataframe CSV.
    #[serde(default = "crate::config::default_dataframe")]
    pub dataframe_name: String,
    /// Decoded images kept in memory.
    #[serde(default)]
    pub cache_size: usize,
    /// Print the dataframe's warnings.
    #[serde(default = "crate::config::default_true")]
    pub show_dataset_warnings: bool,
    /// Data-loading threads.
    #[serde(default)]
    pub num_workers: usize,
    /// Cache of the frozen extractor's embeddings (`emb_{train,val}_<hash>.npy`); null: none.
    #[serde(default)]
    pub embeddings_cache_dir: Option<PathBuf>,
    /// Transforms of the extraction (and of the validation images).
    #[serde(default)]
    pub transforms_extraction: Option<NamedArgs>,
    /// Transforms of the training images given to the pairwise model.
    #[serde(default)]
    pub transforms_train: Option<NamedArgs>,
    /// Batch size of the extraction and of the validation pairs.
    #[serde(default = "bs")]
    pub batch_size_inference: usize,
    /// The frozen extractor, with its `weights`.
    pub extractor: ExtractorSection,
    /// `{name: pairwise_reranker, args: {top_n, pairwise_model: {name, args}, batch_size}}`.
    pub postprocessor: NamedArgs,
    /// Hard pairs (OML's `PairsMiner(hard_mining)`).
    #[serde(default = "crate::config::default_true")]
    pub hard_pairs_mining: bool,
    /// The P×K sampler (required: pairs are mined within batches).
    pub sampler: NamedArgs,
    /// Optimizer of the pairwise model.
    pub optimizer: NamedArgs,
    /// LR scheduling.
    #[serde(default)]
    pub scheduling: Option<Scheduling>,
    /// Number of epochs.
    pub max_epochs: usize,
    /// Validate every this many epochs (and after the last).
    #[serde(default = "crate::config::one")]
    pub valid_period: usize,
    /// `EmbeddingMetrics` arguments.
    #[serde(default)]
    pub metric_args: Value,
    /// Log the worst queries (OML's default here: true).
    #[serde(default = "crate::config::default_true")]
    pub log_images: bool,
    /// Metric picking the best checkpoint.
    #[serde(default = "crate::config::default_checkpoint_metric")]
    pub metric_for_checkpointing: String,
    /// `max` or `min`.
    #[serde(default)]
    pub mode_for_checkpointing: Mode,
    /// Logger.
    #[serde(default)]
    pub logger: Option<Value>,
    /// Epochs with the pairwise model's backbone frozen (`concat_siamese`).
    #[serde(default)]
    pub freeze_n_epochs: usize,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Run folder suffix.
    #[serde(default)]
    pub postfix: Option<String>,
    /// Folder of run folders.
    #[serde(default = "crate::config::default_logs_root")]
    pub logs_root: PathBuf,
    /// Run folder name.
    #[serde(default)]
    pub logs_folder: Option<String>,
    /// Prepare the data set when missing (oml-rs).
    #[serde(default)]
    pub prepare_data: Option<PrepareData>,
    /// Retrieval examples per worst-queries figure.
    #[serde(default)]
    pub n_worst_queries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RerankerArgs {
    top_n: usize,
    pairwise_model: Value,
    #[serde(default = "bs")]
    batch_size: usize,
    #[serde(default)]
    #[allow(dead_code)]
    num_workers: usize,
    #[serde(default)]
    #[allow(dead_code)]
    verbose: bool,
    #[serde(default)]
    #[allow(dead_code)]
    use_fp16: bool,
}

/// A pairwise model section with an optional `weights` of ours (`.bpk`), which OML's
/// `linear_siamese` does not take in its config.
pub fn build_pairwise(
    section_value: &Value,
    key: &str,
    device: &Device,
) -> Result<(PairwiseConfig, AnyPairwise), TrainError> {
    let mut v = section_value.clone();
    let ours = v.as_object_mut().and_then(|o| match o.get("weights") {
        Some(Value::String(w)) if w.ends_with(".bpk") => {
            let w = w.clone();
            o.remove("weights");
            Some(w)
        }
        _ => None,
    });
    let config: PairwiseConfig =
        serde_json::from_value(v).map_err(|e| TrainError::config(key, e.to_string()))?;
    let model = config
        .build(device)
        .map_err(|e| TrainError::Model(e.to_string()))?;
    let model = match ours {
        None => model,
        Some(w) => {
            model
                .load_weights(Path::new(&w), &LoadOptions::default())
                .map_err(|e| TrainError::Model(e.to_string()))?
                .0
        }
    };
    Ok((config, model))
}

/// Whether the model scores embeddings (`linear_siamese`) rather than images.
pub fn takes_embeddings(config: &PairwiseConfig) -> bool {
    matches!(config, PairwiseConfig::LinearSiamese(_))
}

/// A training batch of the pairwise model.
#[derive(Debug, Clone)]
pub struct PairTrainBatch {
    /// What the model sees: images `[B, 3, H, W]` or embeddings `[B, D, 1, 1]`.
    pub inputs: Tensor<4>,
    /// The frozen extractor's embeddings `[B, D]`, for mining.
    pub embeddings: Tensor<2>,
    /// Labels.
    pub labels: Vec<i64>,
    /// 1-based epoch.
    pub epoch: usize,
}

/// A batch of (query, gallery) pairs to score.
#[derive(Debug, Clone)]
pub struct PairScoreBatch {
    /// First inputs.
    pub x1: Tensor<4>,
    /// Second inputs.
    pub x2: Tensor<4>,
    /// Position of each pair in the list of pairs.
    pub indices: Vec<usize>,
}

/// The pairwise model as trained by the Learner (OML's `PairwiseModule`).
#[derive(Module, Debug)]
pub struct PairwiseLearner<P> {
    /// The pairwise model.
    pub model: P,
    /// Epochs with its backbone frozen.
    pub freeze_n_epochs: usize,
    /// Hard pairs mining.
    pub hard_pairs_mining: bool,
    #[module(skip)]
    guard: StepGuard,
}

impl<P> PairwiseLearner<P> {
    /// A learner of `model`.
    pub fn new(
        model: P,
        hard_pairs_mining: bool,
        freeze_n_epochs: usize,
        guard: StepGuard,
    ) -> Self {
        Self {
            model,
            freeze_n_epochs,
            hard_pairs_mining,
            guard,
        }
    }
}

/// Mean binary cross-entropy of logits against 0/1 targets, numerically stable:
/// `max(x, 0) − x·t + log(1 + e^{−|x|})`.
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let pos = logits.clone().clamp_min(0.0);
    let soft = logits.clone().abs().neg().exp().add_scalar(1.0).log();
    (pos - logits * targets + soft).mean()
}

impl<P> TrainStep for PairwiseLearner<P>
where
    P: PairwiseModel + Freezable + ModuleDisplay + Clone + 'static,
{
    type Input = PairTrainBatch;
    type Output = StepOutput;

    fn step(&self, batch: PairTrainBatch) -> TrainOutput<StepOutput> {
        let frozen = batch.epoch <= self.freeze_n_epochs;
        let device = batch.inputs.device();
        let fail = |msg: String| {
            self.guard
                .fail(format!("training step of epoch {}: {msg}", batch.epoch));
            let item = StepOutput {
                loss: Tensor::zeros([1], &device),
                logs: Default::default(),
                epoch: batch.epoch,
                frozen,
            };
            TrainOutput {
                grads: GradientsParams::new(),
                item,
            }
        };
        let pairs = match PairsMiner::new(self.hard_pairs_mining)
            .sample(&batch.embeddings.clone().detach(), &batch.labels)
        {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return fail("no pair was mined".into()),
            Err(e) => return fail(e.to_string()),
        };
        let index = |ids: &[usize]| {
            Tensor::<1, Int>::from_data(
                TensorData::new(
                    ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    [ids.len()],
                ),
                &device,
            )
        };
        let x1 = batch.inputs.clone().select(0, index(&pairs.ids1));
        let x2 = batch.inputs.select(0, index(&pairs.ids2));
        let model = if frozen {
            self.model.clone().freeze_backbone()
        } else {
            self.model.clone()
        };
        let logits = model.forward_pair(x1, x2);
        let targets: Vec<f32> = pairs
            .is_negative
            .iter()
            .map(|&n| if n { 1.0 } else { 0.0 })
            .collect();
        let n = targets.len();
        let loss = bce_with_logits(
            logits,
            Tensor::from_data(TensorData::new(targets, [n]), &device),
        );
        let grads = loss.backward();
        let mut logs = std::collections::BTreeMap::new();
        logs.insert(
            "n_pairs".to_string(),
            Tensor::from_data(TensorData::new(vec![n as f32], [1]), &device),
        );
        TrainOutput::new(
            self,
            grads,
            StepOutput {
                loss,
                logs,
                epoch: batch.epoch,
                frozen,
            },
        )
    }
}

impl<P> InferenceStep for PairwiseLearner<P>
where
    P: PairwiseModel + ModuleDisplay + 'static,
{
    type Input = PairScoreBatch;
    type Output = EmbeddingOutput;

    fn step(&self, batch: PairScoreBatch) -> EmbeddingOutput {
        let scores = self.model.predict(batch.x1, batch.x2);
        let n = scores.dims()[0];
        EmbeddingOutput {
            embeddings: scores.reshape([n, 1]),
            indices: batch.indices,
        }
    }
}

/// What `oml train-postprocessor` produced.
#[derive(Debug, Clone)]
pub struct PostprocessorOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Metrics of the extractor alone.
    pub initial: MetricsReport,
    /// Metrics with the re-ranker after the last epoch.
    pub last: MetricsReport,
    /// The best epoch and its checkpointing metric.
    pub best: Option<(usize, f64)>,
    /// The pairwise model after the last epoch (`checkpoints/last.bpk`).
    pub last_checkpoint: PathBuf,
    /// The best pairwise model (`checkpoints/best.bpk`).
    pub best_checkpoint: PathBuf,
    /// Epochs trained by this call.
    pub epochs_run: usize,
}

fn embeddings_cached(
    cache: Option<&Path>,
    name: &str,
    hash: &str,
    compute: impl FnOnce() -> Result<Embeddings, TrainError>,
) -> Result<Embeddings, TrainError> {
    let Some(dir) = cache else { return compute() };
    let path = dir.join(format!("emb_{name}_{}.npy", &hash[..5.min(hash.len())]));
    if let Ok(arr) = oml_datasets::npy::read_npy(&path)
        && let Ok([rows, dim]) = arr.dims2(&path)
    {
        return Ok(Embeddings {
            rows,
            dim,
            data: arr.data,
        });
    }
    let e = compute()?;
    std::fs::create_dir_all(dir).map_err(|err| TrainError::io(dir, err))?;
    write_npy_f32(&path, e.rows, e.dim, &e.data)?;
    Ok(e)
}

/// Runs `oml train-postprocessor`.
pub fn train_postprocessor(
    config: &PostprocessorConfig,
    opts: TrainOptions,
) -> Result<PostprocessorOutcome, TrainError> {
    let console = opts.console.clone();
    if config.precision != 32 {
        return Err(TrainError::config(
            "precision",
            format!("only 32 (float32) is supported, got {}", config.precision),
        ));
    }
    if config.max_epochs == 0 || config.valid_period == 0 || config.batch_size_inference == 0 {
        return Err(TrainError::config(
            "max_epochs",
            "max_epochs, valid_period and batch_size_inference must be at least 1",
        ));
    }
    if config.postprocessor.name != "pairwise_reranker" {
        return Err(TrainError::config(
            "postprocessor.name",
            format!(
                "only pairwise_reranker is trainable, got `{}`",
                config.postprocessor.name
            ),
        ));
    }
    let rargs: RerankerArgs = section(config.postprocessor.args_object(), "postprocessor.args")?;
    if rargs.top_n <= 1 {
        return Err(TrainError::config(
            "postprocessor.args.top_n",
            "must be greater than 1",
        ));
    }
    let spec = ExtractorSpec::parse(&config.extractor, "extractor")?;
    let metric_args = MetricArgs::parse(&config.metric_args, "metric_args")?;
    let sampler_config: SamplerConfig = section(
        serde_json::json!({"name": config.sampler.name, "args": config.sampler.args_object()}),
        "sampler",
    )?;
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

    // ---- data and the frozen extractor's embeddings
    let root = resolve(&opts.base_dir, &config.dataset_root);
    if let Some(prep) = &config.prepare_data
        && let Some(m) = prepare_data(prep, &root, &config.dataframe_name, "prepare_data")?
    {
        console.line(m);
    }
    let t_extract = transforms(
        config.transforms_extraction.as_ref(),
        "transforms_extraction",
        "norm_albu",
    )?;
    let t_train = transforms(
        config.transforms_train.as_ref(),
        "transforms_train",
        "norm_albu",
    )?;
    let opts_of = |t| ImageOptions {
        transforms: Arc::new(t),
        cache_size: config.cache_size,
        strict: false,
        seed: config.seed,
    };
    let extraction = retrieval_image_datasets(
        &root,
        &config.dataframe_name,
        opts_of(t_extract.clone()),
        opts_of(t_extract),
        ReadOptions::default(),
    )
    .map_err(|e| TrainError::Data(e.to_string()))?;
    let training = retrieval_image_datasets(
        &root,
        &config.dataframe_name,
        opts_of(t_train),
        opts_of(transforms(None, "", "norm_albu")?),
        ReadOptions::default(),
    )
    .map_err(|e| TrainError::Data(e.to_string()))?;
    let val_ds = Arc::new(extraction.validation);
    let train_ds = Arc::new(training.train);
    let extractor = spec.build(&device)?.valid();
    let ex_hash = fingerprint(&serde_json::json!([
        config_json["extractor"],
        config_json["transforms_extraction"],
        config.dataframe_name,
        config.precision
    ]));
    let cache = config
        .embeddings_cache_dir
        .as_ref()
        .map(|d| resolve(&opts.base_dir, d));
    let bar = console.bar((extraction.train.len() + val_ds.len()) as u64, "embed");
    let emb_train = embeddings_cached(cache.as_deref(), "train", &ex_hash, || {
        embed_dataset(
            &extractor,
            &extraction.train,
            config.batch_size_inference,
            &device,
            Some(&bar),
        )
    })?;
    let emb_val = Arc::new(embeddings_cached(
        cache.as_deref(),
        "val",
        &ex_hash,
        || {
            embed_dataset(
                &extractor,
                val_ds.as_ref(),
                config.batch_size_inference,
                &device,
                Some(&bar),
            )
        },
    )?);
    bar.finish_and_clear();
    let emb_train = Arc::new(emb_train);

    // ---- the pairs the re-ranker asks for, and the extractor's own metrics
    let meta = Arc::new(validation_meta(&val_ds));
    let mconfig = metric_args.to_config();
    let plain = evaluate(
        &emb_val.data,
        emb_val.dim,
        &meta,
        &mconfig,
        &device,
        &EvalHooks::default(),
    )
    .map_err(|e| TrainError::Metrics(e.to_string()))?;
    let asked: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let recorder = {
        let asked = asked.clone();
        move |pairs: &[(usize, usize)]| -> Result<Vec<f32>, RetrievalError> {
            lock(&asked).extend_from_slice(pairs);
            Ok(vec![0.0; pairs.len()])
        }
    };
    let probe = PairwiseReranker::new(rargs.top_n, recorder)
        .map_err(|e| TrainError::config("postprocessor.args.top_n", e.to_string()))?;
    evaluate(
        &emb_val.data,
        emb_val.dim,
        &meta,
        &mconfig,
        &device,
        &EvalHooks {
            postprocessor: Some((&probe, rargs.top_n)),
            progress: None,
        },
    )
    .map_err(|e| TrainError::Metrics(e.to_string()))?;
    let pairs: Arc<Vec<(usize, usize)>> = Arc::new(std::mem::take(&mut *lock(&asked)));
    let (query_ids, gallery_ids) = (Arc::new(meta.query_ids()), Arc::new(meta.gallery_ids()));

    // ---- the model
    device.seed(config.seed);
    let (pconfig, pairwise) = build_pairwise(
        &rargs.pairwise_model,
        "postprocessor.args.pairwise_model",
        &device,
    )?;
    let on_embeddings = takes_embeddings(&pconfig);
    if config.freeze_n_epochs > 0 && !pairwise.is_freezable() {
        return Err(TrainError::config(
            "freeze_n_epochs",
            format!(
                "pairwise model `{}` has no backbone to freeze",
                pconfig.name()
            ),
        ));
    }
    let interrupter = Interrupter::new();
    let guard = StepGuard::new(interrupter.clone());
    let model = PairwiseLearner::new(
        pairwise,
        config.hard_pairs_mining,
        config.freeze_n_epochs,
        guard.clone(),
    );
    let labels = train_ds.labels().to_vec();
    let l2c = train_ds.label_to_category();
    let sampler: Arc<dyn oml_interfaces::BatchSampler> = Arc::from(
        sampler_config
            .build(&labels, l2c.as_ref(), config.seed)
            .map_err(|e| TrainError::config("sampler", e.to_string()))?,
    );
    let batches_per_epoch = sampler.num_batches();
    let (optim, lr) = build_optimizer(&config.optimizer, "optimizer")?;
    let scheduler = build_scheduler(
        config.scheduling.as_ref(),
        lr,
        batches_per_epoch,
        "scheduling",
    )?;

    // ---- history, loggers, the extractor's metrics as epoch 0
    let history_path = run.path.join("history.json");
    let history = Arc::new(Mutex::new(load_history(
        &run,
        &config.metric_for_checkpointing,
        config.mode_for_checkpointing,
    )));
    let fanout = loggers_from_config(config.logger.as_ref(), &run.path)
        .map_err(|e| TrainError::config("logger", e.to_string()))?;
    let mut logger = SharedLogger::new(fanout);
    if !run.resumed {
        let _ = logger.log_pipeline_info(
            &config_json,
            &config.tags,
            Some(&root.join(&config.dataframe_name)),
        );
    }
    let n_worst = config.n_worst_queries.unwrap_or(5);
    if lock(&history).initial().is_none() {
        let figures = if config.log_images {
            worst_query_figures(&plain, &val_ds, &metric_args.visualized(), n_worst)?
        } else {
            Vec::new()
        };
        log_report(&mut logger, 0, &plain.report, &figures);
        console.line(format!("extractor alone: {}", summary_line(&plain.report)));
        lock(&history).push(EpochRecord::new(0, plain.report.clone()));
        write_json(&history_path, &*lock(&history))?;
    }
    if lookup(&plain.report, &config.metric_for_checkpointing).is_none() {
        return Err(TrainError::config(
            "metric_for_checkpointing",
            format!("`{}` is not computed", config.metric_for_checkpointing),
        ));
    }

    // ---- loaders
    let start = run.resume_epoch.unwrap_or(0);
    let mut epochs_run = 0;
    if start < config.max_epochs {
        let batcher: Arc<dyn Batcher<ImageItem, ImageBatch>> = Arc::new(ImageBatcher::default());
        let train_dyn: Arc<dyn Dataset<ImageItem>> = train_ds.clone();
        let pk = PkDataLoader::new(sampler.clone(), train_dyn, batcher, device.clone())
            .with_num_workers(config.num_workers)
            .with_start_epoch(start);
        let et = emb_train.clone();
        let convert: ToTrainBatch<ImageBatch, PairTrainBatch> =
            Arc::new(move |b: ImageBatch, epoch| {
                let dev = b.images.device();
                let emb = et.select(&b.indices).to_tensor(&dev);
                let [n, d] = emb.dims();
                let inputs = if on_embeddings {
                    emb.clone().reshape([n, d, 1, 1])
                } else {
                    b.images
                };
                PairTrainBatch {
                    inputs,
                    embeddings: emb,
                    labels: b.labels.unwrap_or_default(),
                    epoch,
                }
            });
        let base = train_ds.base().clone();
        let stop = stop_after(interrupter.clone(), opts.stop_after_epoch);
        let hook = Arc::new(move |e: usize| {
            base.set_epoch(e as u64);
            stop(e);
        });
        let train_loader: Arc<dyn DataLoader<PairTrainBatch>> =
            Arc::new(EpochTagged::new(Arc::new(pk), convert, start + 1).with_epoch_hook(hook));

        let (vds, ev, pp, qi, gi) = (
            val_ds.clone(),
            emb_val.clone(),
            pairs.clone(),
            query_ids.clone(),
            gallery_ids.clone(),
        );
        let make = Arc::new(
            move |idx: &[usize], dev: &Device| -> Result<PairScoreBatch, BurnDatasetError> {
                let a: Vec<usize> = idx.iter().map(|&i| qi[pp[i].0]).collect();
                let b: Vec<usize> = idx.iter().map(|&i| gi[pp[i].1]).collect();
                let load = |ids: &[usize]| -> Result<Tensor<4>, BurnDatasetError> {
                    if on_embeddings {
                        let e = ev.select(ids);
                        Ok(e.to_tensor(dev).reshape([ids.len(), e.dim, 1, 1]))
                    } else {
                        Ok(ImageBatcher::default()
                            .batch(vds.get_many(ids.to_vec())?, dev)
                            .images)
                    }
                };
                Ok(PairScoreBatch {
                    x1: load(&a)?,
                    x2: load(&b)?,
                    indices: idx.to_vec(),
                })
            },
        );
        let gated = EveryNthEpoch::new(
            Arc::new(ChunkLoader::new(
                pairs.len(),
                rargs.batch_size,
                make,
                device.clone(),
            )),
            config.valid_period,
            config.max_epochs,
            start + 1,
        );
        let valid_epoch = gated.current_epoch();
        let valid_loader: Arc<dyn DataLoader<PairScoreBatch>> = Arc::new(gated);

        let on_epoch: OnEpoch = {
            let (pairs, emb_val, meta, mconfig, val_ds) = (
                pairs.clone(),
                emb_val.clone(),
                meta.clone(),
                mconfig.clone(),
                val_ds.clone(),
            );
            let (history, history_path, mut logger, console) = (
                history.clone(),
                history_path.clone(),
                logger.clone(),
                console.clone(),
            );
            let (visualized, log_images, top_n, device, max_epochs) = (
                metric_args.visualized(),
                config.log_images,
                rargs.top_n,
                device.clone(),
                config.max_epochs,
            );
            Box::new(move |epoch: usize, scores: &Embeddings| {
                let table: HashMap<(usize, usize), f32> = pairs
                    .iter()
                    .copied()
                    .zip(scores.data.iter().copied())
                    .collect();
                let lookup = move |asked: &[(usize, usize)]| -> Result<Vec<f32>, RetrievalError> {
                    asked
                        .iter()
                        .map(|p| {
                            table.get(p).copied().ok_or_else(|| {
                                RetrievalError::Postprocess(format!("pair {p:?} was not scored"))
                            })
                        })
                        .collect()
                };
                let reranker = PairwiseReranker::new(top_n, lookup).map_err(|e| e.to_string())?;
                let hooks = EvalHooks {
                    postprocessor: Some((&reranker, top_n)),
                    progress: None,
                };
                let e = evaluate(&emb_val.data, emb_val.dim, &meta, &mconfig, &device, &hooks)
                    .map_err(|e| e.to_string())?;
                let figures = if log_images {
                    worst_query_figures(&e, &val_ds, &visualized, n_worst)
                        .map_err(|e| e.to_string())?
                } else {
                    Vec::new()
                };
                log_report(&mut logger, epoch as u64, &e.report, &figures);
                console.line(format!(
                    "epoch {epoch}/{max_epochs}: {}",
                    summary_line(&e.report)
                ));
                let mut h = lock(&history);
                h.push(EpochRecord::new(epoch, e.report.clone()));
                write_json(&history_path, &*h).map_err(|e| e.to_string())?;
                Ok(e.report)
            })
        };
        let hub = Arc::new(Mutex::new(ValidationHub::new(
            pairs.len(),
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
            loss_name: "bce".into(),
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

    // ---- export
    let json = serde_json::to_string(&rargs.pairwise_model).unwrap_or_default();
    // the concrete model's parameter paths, as `AnyPairwise::load_weights` reads them
    let save = |m: &PairwiseLearner<AnyPairwise>, path: &Path| {
        match &m.model {
            AnyPairwise::LinearSiamese(p) => save_burnpack(p, path, Some(&json)),
            AnyPairwise::ConcatSiamese(p) => save_burnpack(p, path, Some(&json)),
            AnyPairwise::TrivialDistanceSiamese(p) => save_burnpack(p, path, Some(&json)),
        }
        .map_err(|e| TrainError::Model(e.to_string()))
    };
    let last_model = load_epoch(&model, &run.ckpt_dir, config.max_epochs)?;
    let last_checkpoint = run.ckpt_dir.join("last.bpk");
    save(&last_model, &last_checkpoint)?;
    let best = lock(&history).best();
    let best_checkpoint = run.ckpt_dir.join("best.bpk");
    match best {
        Some(b) if b.epoch != config.max_epochs => save(
            &load_epoch(&model, &run.ckpt_dir, b.epoch)?,
            &best_checkpoint,
        )?,
        _ => save(&last_model, &best_checkpoint)?,
    }
    let h = lock(&history).clone();
    let last = h
        .get(config.max_epochs)
        .map(|r| r.report.clone())
        .ok_or_else(|| {
            TrainError::Training(format!(
                "the validation of epoch {} is missing; run the command again",
                config.max_epochs
            ))
        })?;
    write_json(&run.path.join("metrics.json"), &last)?;
    finish(&run, &mut logger, config.max_epochs)?;
    Ok(PostprocessorOutcome {
        run_dir: run.path.clone(),
        initial: plain.report,
        last,
        best: best.map(|b| (b.epoch, b.value)),
        last_checkpoint,
        best_checkpoint,
        epochs_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oml_interfaces::device::test_device;

    #[test]
    fn bce_matches_the_formula() {
        let device = test_device();
        let x = Tensor::<1>::from_data([2.0, -1.0, 0.0, 30.0], &device);
        let t = Tensor::<1>::from_data([1.0, 0.0, 1.0, 0.0], &device);
        let got = bce_with_logits(x, t).into_scalar::<f32>() as f64;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let want = (-(sig(2.0)).ln() - (1.0 - sig(-1.0)).ln() - (sig(0.0)).ln() + 30.0) / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
