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

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError as BurnDatasetError};
use burn::module::ModuleDisplay;
use burn::prelude::*;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use oml_datasets::batch::{ImageBatch, ImageBatcher};
use oml_datasets::images::{ImageItem, ImageQueryGalleryLabeledDataset, RetrievalDatasets};
use oml_datasets::transforms::Pipeline as Transforms;
use oml_interfaces::{
    BatchSampler, Freezable, LabeledDataset, LossOutput, MetricsReport, PairwiseModel,
    RetrievalError,
};
use oml_metrics::{EvalHooks, Evaluation, MetricsConfig, QueryGalleryMeta, evaluate};
use oml_mining::PairsMiner;
use oml_models::checkpoint::{LoadOptions, save_burnpack};
use oml_models::{AnyPairwise, PairwiseConfig};
use oml_retrieval::PairwiseReranker;
use oml_sampling::SamplerConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{
    ExtractorSection, Mode, NamedArgs, NamedExt, PrepareData, Scheduling, resolve,
};
use crate::data::{embed_dataset, extractor_transforms, transforms, worst_query_figures};
use crate::error::TrainError;
use crate::extractor::{self, ExtractorConfig};
use crate::loaders::{MakeBatch, ToTrainBatch};
use crate::model::{EmbeddingOutput, EpochStepOutput, StepGuard};
use crate::pipeline::{Common, Plan, Scorer, Session, Validation, check_freeze, common_keys};
use crate::predict::write_npy_f32;
use crate::rundir::fingerprint;
use crate::runner::{SaveWeights, lock};
use crate::train::TrainOptions;
use crate::validation::Embeddings;

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
    pub devices: Option<oml_interfaces::device::DeviceCount>,
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
    /// Drop the rows whose image cannot be read (decoded, or cropped to its box) before
    /// training, printing how many and which; without it (the default) such an image stops the
    /// run with an error naming it. Not written when false, so older configs keep their
    /// fingerprint.
    #[serde(default, skip_serializing_if = "crate::config::is_false")]
    pub skip_broken_images: bool,
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
    let model = config.build(device)?;
    let model = match ours {
        None => model,
        Some(w) => {
            model
                .load_weights(Path::new(&w), &LoadOptions::default())?
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
    type Output = EpochStepOutput;

    fn step(&self, batch: PairTrainBatch) -> TrainOutput<EpochStepOutput> {
        let (epoch, frozen) = (batch.epoch, batch.epoch <= self.freeze_n_epochs);
        let device = batch.inputs.device();
        let result = self.pair_loss(batch, frozen);
        EpochStepOutput::train_output(&self.guard, self, result, &device, (epoch, frozen))
    }
}

impl<P> PairwiseLearner<P>
where
    P: PairwiseModel + Freezable + Clone,
{
    /// Mines the batch's pairs and scores them: the binary cross-entropy of "is a negative
    /// pair", and the number of pairs as a log.
    fn pair_loss(&self, batch: PairTrainBatch, frozen: bool) -> Result<LossOutput, String> {
        let device = batch.inputs.device();
        let pairs = match PairsMiner::new(self.hard_pairs_mining)
            .sample(&batch.embeddings.clone().detach(), &batch.labels)
        {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => return Err("no pair was mined".into()),
            Err(e) => return Err(e.to_string()),
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
        let mut logs = std::collections::BTreeMap::new();
        logs.insert(
            "n_pairs".to_string(),
            Tensor::from_data(TensorData::new(vec![n as f32], [1]), &device),
        );
        Ok(LossOutput { loss, logs })
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

/// The embeddings of `rows` items from the cache folder when it holds them (written by an
/// earlier run with the same extractor, transforms and data), else computed and cached. A cache
/// file that cannot be read, holds another number of rows or values that are not finite is an
/// error naming it: it was not written by this run's inputs.
fn embeddings_cached(
    cache: Option<&Path>,
    name: &str,
    hash: &str,
    rows: usize,
    compute: impl FnOnce() -> Result<Embeddings, TrainError>,
) -> Result<Embeddings, TrainError> {
    let Some(dir) = cache else { return compute() };
    let path = dir.join(format!("emb_{name}_{}.npy", &hash[..5.min(hash.len())]));
    if path.exists() {
        let bad = |why: String| {
            TrainError::io(
                &path,
                format!("{why}; delete it to compute the embeddings again (embeddings_cache_dir)"),
            )
        };
        let arr = oml_datasets::npy::read_npy(&path).map_err(|e| bad(e.to_string()))?;
        let [n, dim] = arr.dims2(&path).map_err(|e| bad(e.to_string()))?;
        if n != rows || dim == 0 {
            return Err(bad(format!(
                "the cache holds {n} embeddings of dimension {dim}, the {name} split has {rows} items"
            )));
        }
        let emb = Embeddings {
            rows,
            dim,
            data: arr.data,
        };
        emb.check_finite().map_err(|e| bad(e.to_string()))?;
        return Ok(emb);
    }
    let e = compute()?;
    std::fs::create_dir_all(dir).map_err(|err| TrainError::io(dir, err))?;
    write_npy_f32(&path, e.rows, e.dim, &e.data)?;
    Ok(e)
}

/// The sections only `oml train-postprocessor` has, parsed and cross-checked.
struct Sections {
    reranker: RerankerArgs,
    extractor: ExtractorConfig,
    sampler: SamplerConfig,
    transforms_extraction: Transforms,
    transforms_train: Transforms,
}

common_keys!(PostprocessorConfig);

impl PostprocessorConfig {
    fn sections(&self) -> Result<Sections, TrainError> {
        if self.batch_size_inference == 0 {
            return Err(TrainError::config(
                "batch_size_inference",
                "must be at least 1",
            ));
        }
        if self.postprocessor.name != "pairwise_reranker" {
            return Err(TrainError::config(
                "postprocessor.name",
                format!(
                    "only pairwise_reranker is trainable, got `{}`",
                    self.postprocessor.name
                ),
            ));
        }
        let reranker: RerankerArgs = self.postprocessor.args_at("postprocessor")?;
        if reranker.top_n <= 1 {
            return Err(TrainError::config(
                "postprocessor.args.top_n",
                "must be greater than 1",
            ));
        }
        let sampler = self.sampler.typed("sampler")?;
        let extractor = extractor::parse(&self.extractor, "extractor")?;
        let transforms_extraction = extractor_transforms(
            self.transforms_extraction.as_ref(),
            "transforms_extraction",
            &extractor,
        )?;
        Ok(Sections {
            reranker,
            extractor,
            sampler,
            transforms_extraction,
            transforms_train: transforms(
                self.transforms_train.as_ref(),
                "transforms_train",
                "norm_albu",
            )?,
        })
    }
}

/// The frozen extractor's embeddings of the train and validation splits (read from, or
/// written to, `embeddings_cache_dir`).
fn frozen_embeddings(
    config: &PostprocessorConfig,
    opts: &TrainOptions,
    extractor: &ExtractorConfig,
    data: &RetrievalDatasets,
    device: &Device,
) -> Result<(Embeddings, Embeddings), TrainError> {
    let extractor = extractor.build(device)?.valid();
    let hash = fingerprint(&serde_json::json!([
        serde_json::to_value(&config.extractor).unwrap_or_default(),
        serde_json::to_value(&config.transforms_extraction).unwrap_or_default(),
        config.dataframe_name,
        config.precision
    ]));
    let cache = config
        .embeddings_cache_dir
        .as_ref()
        .map(|d| resolve(&opts.base_dir, d));
    let n = data.train.len() + data.validation.len();
    let bar = opts.console.bar(n as u64, "embed");
    let embed = |ds: &dyn Dataset<ImageItem>| {
        embed_dataset(
            &extractor,
            ds,
            config.batch_size_inference,
            device,
            Some(&bar),
        )
    };
    let train = embeddings_cached(cache.as_deref(), "train", &hash, data.train.len(), || {
        embed(&data.train)
    });
    let val = train.and_then(|t| {
        embeddings_cached(
            cache.as_deref(),
            "val",
            &hash,
            data.validation.len(),
            || embed(&data.validation),
        )
        .map(|v| (t, v))
    });
    bar.finish_and_clear();
    val
}

/// The frozen retrieval's metrics and the (query, gallery) pairs the re-ranker asks about
/// (each query's top `top_n`, fixed because the extractor is frozen).
fn asked_pairs(
    emb_val: &Embeddings,
    meta: &QueryGalleryMeta,
    mconfig: &MetricsConfig,
    top_n: usize,
    device: &Device,
) -> Result<(Evaluation, Vec<(usize, usize)>), TrainError> {
    let plain = evaluate(
        &emb_val.data,
        emb_val.dim,
        meta,
        mconfig,
        device,
        &EvalHooks::default(),
    )?;
    let asked: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
    let recorder = {
        let asked = asked.clone();
        move |pairs: &[(usize, usize)]| -> Result<Vec<f32>, RetrievalError> {
            lock(&asked).extend_from_slice(pairs);
            Ok(vec![0.0; pairs.len()])
        }
    };
    let probe = PairwiseReranker::new(top_n, recorder)
        .map_err(|e| TrainError::config("postprocessor.args.top_n", e.to_string()))?;
    let hooks = EvalHooks {
        postprocessor: Some((&probe, top_n)),
        progress: None,
    };
    evaluate(&emb_val.data, emb_val.dim, meta, mconfig, device, &hooks)?;
    let pairs = std::mem::take(&mut *lock(&asked));
    Ok((plain, pairs))
}

/// What validation scores: the asked pairs, as images or as the frozen embeddings.
#[derive(Clone)]
struct PairSource {
    pairs: Arc<Vec<(usize, usize)>>,
    query_ids: Arc<Vec<usize>>,
    gallery_ids: Arc<Vec<usize>>,
    dataset: Arc<ImageQueryGalleryLabeledDataset>,
    embeddings: Arc<Embeddings>,
    on_embeddings: bool,
}

impl PairSource {
    /// Batches of asked pairs by position.
    fn batches(self) -> MakeBatch<PairScoreBatch> {
        Arc::new(move |idx: &[usize], dev: &Device| {
            let a: Vec<usize> = idx
                .iter()
                .map(|&i| self.query_ids[self.pairs[i].0])
                .collect();
            let b: Vec<usize> = idx
                .iter()
                .map(|&i| self.gallery_ids[self.pairs[i].1])
                .collect();
            Ok(PairScoreBatch {
                x1: self.inputs(&a, dev)?,
                x2: self.inputs(&b, dev)?,
                indices: idx.to_vec(),
            })
        })
    }

    fn inputs(&self, ids: &[usize], dev: &Device) -> Result<Tensor<4>, BurnDatasetError> {
        if self.on_embeddings {
            let e = self.embeddings.select(ids);
            Ok(e.to_tensor(dev).reshape([ids.len(), e.dim, 1, 1]))
        } else {
            let items = self.dataset.get_many(ids.to_vec())?;
            Ok(ImageBatcher::default().batch(items, dev).images)
        }
    }
}

/// The metrics of the frozen retrieval re-ranked with the model's scores of the asked pairs.
fn rerank_scorer(
    source: &PairSource,
    meta: Arc<QueryGalleryMeta>,
    mconfig: MetricsConfig,
    figures: (Vec<(String, String)>, usize, bool),
    top_n: usize,
    device: Device,
) -> Scorer {
    let (pairs, emb_val, val_ds) = (
        source.pairs.clone(),
        source.embeddings.clone(),
        source.dataset.clone(),
    );
    let (visualized, n_worst, log_images) = figures;
    Box::new(move |scores: &Embeddings| {
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
        let reranker = PairwiseReranker::new(top_n, lookup)
            .map_err(|e| TrainError::config("postprocessor.args.top_n", e.to_string()))?;
        let hooks = EvalHooks {
            postprocessor: Some((&reranker, top_n)),
            progress: None,
        };
        let e = evaluate(&emb_val.data, emb_val.dim, &meta, &mconfig, &device, &hooks)?;
        let figures = if log_images {
            worst_query_figures(&e, &val_ds, &visualized, n_worst)?
        } else {
            Vec::new()
        };
        Ok((e.report, figures))
    })
}

/// Saves the pairwise model with its section, under the concrete model's parameter paths (as
/// `AnyPairwise::load_weights` reads them).
fn save_pairwise(
    m: &PairwiseLearner<AnyPairwise>,
    section: &Value,
    path: &Path,
) -> Result<(), TrainError> {
    let json = section.to_string();
    Ok(match &m.model {
        AnyPairwise::LinearSiamese(p) => save_burnpack(p, path, Some(&json)),
        AnyPairwise::ConcatSiamese(p) => save_burnpack(p, path, Some(&json)),
        AnyPairwise::TrivialDistanceSiamese(p) => save_burnpack(p, path, Some(&json)),
    }?)
}

/// Runs `oml train-postprocessor`. Every section is parsed, the data set read and the frozen
/// embeddings computed before the run folder is created.
pub fn train_postprocessor(
    config: &PostprocessorConfig,
    opts: TrainOptions,
) -> Result<PostprocessorOutcome, TrainError> {
    let console = opts.console.clone();
    let c = config.common();
    let sections = config.sections()?;
    let top_n = sections.reranker.top_n;
    let plan = Plan::check(&c, &opts)?;
    let device = plan.device().clone();
    let extraction = plan.read_data(
        &c,
        sections.transforms_extraction.clone(),
        sections.transforms_extraction,
        &console,
    )?;
    plan.check_checkpoint_metric(&c, &extraction.validation)?;
    let quiet = Common {
        prepare_data: None,
        show_dataset_warnings: false,
        ..c.clone()
    };
    let plain_t = transforms(None, "", "norm_albu")?;
    let train_ds = Arc::new(
        plan.read_data(&quiet, sections.transforms_train, plain_t, &console)?
            .train,
    );
    let sampler: Arc<dyn BatchSampler> = Arc::from(
        sections
            .sampler
            .build(
                train_ds.labels(),
                train_ds.label_to_category().as_ref(),
                config.seed,
            )
            .map_err(|e| TrainError::config("sampler", e.to_string()))?,
    );
    let batches_per_epoch = sampler.num_batches();
    let scheduler = plan.scheduler(batches_per_epoch)?;
    device.seed(config.seed);
    let (pconfig, pairwise) = build_pairwise(
        &sections.reranker.pairwise_model,
        "postprocessor.args.pairwise_model",
        &device,
    )?;
    check_freeze(
        config.freeze_n_epochs,
        pairwise.is_freezable(),
        &format!("pairwise model `{}`", pconfig.name()),
    )?;
    let (emb_train, emb_val) =
        frozen_embeddings(config, &opts, &sections.extractor, &extraction, &device)?;
    let (emb_train, emb_val) = (Arc::new(emb_train), Arc::new(emb_val));
    let val_ds = Arc::new(extraction.validation);
    let meta = Arc::new(QueryGalleryMeta::from_labeled_dataset(val_ds.as_ref()));
    let mconfig = plan.metric_args.to_config();
    let (plain, pairs) = asked_pairs(&emb_val, &meta, &mconfig, top_n, &device)?;
    let figures = (
        plan.metric_args.visualized(),
        config.n_worst_queries.unwrap_or(5),
        config.log_images,
    );

    let session = Session::open(&c, &plan, config, &opts)?;
    session.initial("extractor alone", || {
        let drawn = if figures.2 {
            worst_query_figures(&plain, &val_ds, &figures.0, figures.1)?
        } else {
            Vec::new()
        };
        Ok((plain.report.clone(), drawn))
    })?;
    let model = PairwiseLearner::new(
        pairwise,
        config.hard_pairs_mining,
        config.freeze_n_epochs,
        session.guard.clone(),
    );
    let on_embeddings = takes_embeddings(&pconfig);
    let et = emb_train.clone();
    let convert: ToTrainBatch<ImageBatch, PairTrainBatch> =
        Arc::new(move |b: ImageBatch, epoch| {
            let emb = et.select(&b.indices).to_tensor(&b.images.device());
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
    let train_loader = plan.train_loader(&c, &session, sampler, &train_ds, convert);
    let source = PairSource {
        pairs: Arc::new(pairs),
        query_ids: Arc::new(meta.query_ids()),
        gallery_ids: Arc::new(meta.gallery_ids()),
        dataset: val_ds.clone(),
        embeddings: emb_val.clone(),
        on_embeddings,
    };
    let validation = Validation {
        n: source.pairs.len(),
        batch_size: sections.reranker.batch_size,
        keys: mconfig.report_keys_for(&meta),
        score: rerank_scorer(&source, meta, mconfig, figures, top_n, device),
        make: source.batches(),
    };
    let section = sections.reranker.pairwise_model.clone();
    let save: SaveWeights<PairwiseLearner<AnyPairwise>> =
        Arc::new(move |m: &PairwiseLearner<AnyPairwise>, path: &Path| {
            save_pairwise(m, &section, path)
        });
    let epochs_run = session.fit(
        model.clone(),
        plan.optimizer,
        scheduler,
        train_loader,
        batches_per_epoch,
        "bce",
        validation,
        save.clone(),
    )?;

    let out = session.export(&model, &*save, |_| {
        Err(TrainError::Training(format!(
            "the validation of epoch {} is missing; run the command again",
            config.max_epochs
        )))
    })?;
    Ok(PostprocessorOutcome {
        run_dir: session.run.path.clone(),
        initial: plain.report,
        last: out.last,
        best: out.best,
        last_checkpoint: out.last_checkpoint,
        best_checkpoint: out.best_checkpoint,
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
