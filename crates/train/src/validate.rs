//! `oml validate`: metrics of an extractor on the validation split (OML's
//! `extractor_validation_pipeline`), optionally re-ranked by a post-processor.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::prelude::*;
use oml_datasets::dataframe::{ReadOptions, Split, read_dataframe};
use oml_datasets::images::{ImageOptions, ImageQueryGalleryLabeledDataset};
use oml_interfaces::{MetricsReport, RetrievalError, RetrievalPostprocessor};
use oml_metrics::{EvalHooks, QueryGalleryMeta, evaluate};
use oml_retrieval::{
    AdaptiveThresholding, ConstantThresholding, ModelPairScorer, PairwiseReranker,
};
use serde::Deserialize;

use crate::checkpoint::write_atomic;
use crate::config::{NamedArgs, NamedExt, ValidateConfig, resolve};
use crate::data::{MetricArgs, extractor_transforms, worst_query_figures};
use crate::error::TrainError;
use crate::pipeline::{Inference, InferenceKeys, check_output_dir, image_options, prepare};
use crate::progress::Console;

/// How to run `oml validate` beyond the config.
pub type ValidateOptions = crate::config::RunOptions;

/// What `oml validate` computed.
#[derive(Debug, Clone)]
pub struct ValidateOutcome {
    /// The report (written to `save_dir/metrics.json` when `save_dir` is set).
    pub report: MetricsReport,
    /// Validation items, queries, gallery items.
    pub n_items: usize,
    /// Number of queries.
    pub n_queries: usize,
    /// Number of gallery items.
    pub n_gallery: usize,
    /// Seconds spent embedding.
    pub embed_seconds: f64,
    /// Seconds spent on retrieval and metrics.
    pub metric_seconds: f64,
    /// Files written.
    pub written: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdArgs {
    th: f32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveArgs {
    n_std: f32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RerankerArgs {
    top_n: usize,
    pairwise_model: serde_json::Value,
    #[serde(default = "default_bs")]
    batch_size: usize,
    #[serde(default)]
    num_workers: usize,
    #[serde(default)]
    #[allow(dead_code)]
    verbose: bool,
    #[serde(default)]
    #[allow(dead_code)]
    use_fp16: bool,
}

fn default_bs() -> usize {
    128
}

fn retrieval_err(e: RetrievalError) -> TrainError {
    TrainError::Retrieval(e)
}

/// Builds a post-processor section: `constant_thresholding {th}`, `adaptive_thresholding
/// {n_std}`, or `pairwise_reranker {top_n, pairwise_model, batch_size}` (items loaded from
/// `dataset`, or taken from `embeddings` for `linear_siamese`, which scores embeddings).
/// Returns it with the number of items it needs per query.
pub(crate) fn build_postprocessor(
    named: &NamedArgs,
    key: &str,
    dataset: Arc<ImageQueryGalleryLabeledDataset>,
    embeddings: Arc<crate::validation::Embeddings>,
    query_ids: Vec<usize>,
    gallery_ids: Vec<usize>,
    device: &Device,
) -> Result<(Box<dyn RetrievalPostprocessor>, usize), TrainError> {
    let akey = format!("{key}.args");
    match named.name.as_str() {
        "constant_thresholding" => {
            let a: ThresholdArgs = named.args_at(key)?;
            Ok((
                Box::new(ConstantThresholding::new(a.th).map_err(retrieval_err)?),
                0,
            ))
        }
        "adaptive_thresholding" => {
            let a: AdaptiveArgs = named.args_at(key)?;
            Ok((
                Box::new(AdaptiveThresholding::new(a.n_std).map_err(retrieval_err)?),
                0,
            ))
        }
        "pairwise_reranker" => {
            let a: RerankerArgs = named.args_at(key)?;
            let _ = a.num_workers;
            let (pconfig, model) = crate::postprocessor::build_pairwise(
                &a.pairwise_model,
                &format!("{akey}.pairwise_model"),
                device,
            )?;
            let dev = device.clone();
            let load: oml_retrieval::ItemLoader =
                if crate::postprocessor::takes_embeddings(&pconfig) {
                    let emb = embeddings.clone();
                    Box::new(move |ids: &[usize]| {
                        let e = emb.select(ids);
                        Ok(e.to_tensor(&dev).reshape([ids.len(), e.dim, 1, 1]))
                    })
                } else {
                    Box::new(move |ids: &[usize]| {
                        let items = dataset
                            .get_many(ids.to_vec())
                            .map_err(|e| RetrievalError::InvalidData(e.to_string()))?;
                        let b = burn::data::dataloader::batcher::Batcher::batch(
                            &oml_datasets::batch::ImageBatcher::default(),
                            items,
                            &dev,
                        );
                        Ok(b.images)
                    })
                };
            let scorer = ModelPairScorer::new(model, load, query_ids, gallery_ids, a.batch_size)
                .map_err(retrieval_err)?;
            let top_n = a.top_n;
            Ok((
                Box::new(PairwiseReranker::new(top_n, scorer).map_err(retrieval_err)?),
                top_n,
            ))
        }
        other => Err(TrainError::config(
            format!("{key}.name"),
            format!(
                "unknown post-processor `{other}`; available: pairwise_reranker, constant_thresholding, adaptive_thresholding"
            ),
        )),
    }
}

/// Reads the validation split of `root/dataframe_name` as a query/gallery dataset.
pub(crate) fn validation_dataset(
    root: &Path,
    dataframe_name: &str,
    options: ImageOptions,
    console: &Console,
    show_warnings: bool,
) -> Result<ImageQueryGalleryLabeledDataset, TrainError> {
    let df = read_dataframe(root.join(dataframe_name), &ReadOptions::with_root(root))
        .map_err(|e| TrainError::Data(e.to_string()))?;
    if show_warnings {
        for w in &df.warnings {
            console.line(format!("warning: {w}"));
        }
    }
    let val = df.split(Split::Validation);
    if val.is_empty() {
        return Err(TrainError::EmptySplit {
            csv: root.join(dataframe_name).display().to_string(),
            split: "validation",
        });
    }
    ImageQueryGalleryLabeledDataset::from_dataframe(&val, Some(root), options)
        .map_err(|e| TrainError::Data(e.to_string()))
}

/// Runs `oml validate`.
pub fn validate(
    config: &ValidateConfig,
    opts: ValidateOptions,
) -> Result<ValidateOutcome, TrainError> {
    let console = &opts.console;
    let inference = Inference::check(
        InferenceKeys {
            precision: config.precision,
            accelerator: config.accelerator.as_deref(),
            devices: config.devices,
            cpu_fast_path: config.cpu_fast_path,
            extractor: &config.extractor,
            batch_size: ("bs_val", config.bs_val),
            seed: config.seed,
        },
        &opts,
    )?;
    let device = inference.device.clone();
    let save_dir = config.save_dir.as_ref().map(|d| resolve(&opts.base_dir, d));
    if let Some(dir) = &save_dir {
        check_output_dir(dir, "save_dir")?;
    }
    let metric_args = MetricArgs::parse(&config.metric_args, "metric_args")?;
    // Checked before any data is prepared (which may download and convert a dataset).
    let t = extractor_transforms(
        config.transforms_val.as_ref(),
        "transforms_val",
        &inference.extractor,
    )?;
    let root = resolve(&opts.base_dir, &config.dataset_root);
    prepare(
        config.prepare_data.as_ref(),
        &root,
        &config.dataframe_name,
        console,
    )?;
    let ds = Arc::new(validation_dataset(
        &root,
        &config.dataframe_name,
        image_options(t, 0, config.seed),
        console,
        config.show_dataset_warnings,
    )?);
    let (emb, embed_seconds) = inference.embed(ds.as_ref(), console)?;

    let meta = QueryGalleryMeta::from_labeled_dataset(ds.as_ref());
    let (query_ids, gallery_ids) = (meta.query_ids(), meta.gallery_ids());
    let emb = Arc::new(emb);
    let post = match &config.postprocessor {
        None => None,
        Some(p) => Some(build_postprocessor(
            p,
            "postprocessor",
            ds.clone(),
            emb.clone(),
            query_ids.clone(),
            gallery_ids.clone(),
            &device,
        )?),
    };
    let t1 = Instant::now();
    let bar = console.bar(0, "retrieval");
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let hooks = EvalHooks {
        postprocessor: post.as_ref().map(|(p, n)| (p.as_ref(), *n)),
        progress: Some(&progress),
    };
    let mconfig = metric_args.to_config();
    let result = evaluate(&emb.data, emb.dim, &meta, &mconfig, &device, &hooks);
    bar.finish_and_clear();
    let evaluation = result?;
    let metric_seconds = t1.elapsed().as_secs_f64();

    let mut written = Vec::new();
    if let Some(dir) = save_dir {
        let path = dir.join("metrics.json");
        let json =
            serde_json::to_vec_pretty(&evaluation.report).map_err(|e| TrainError::io(&path, e))?;
        write_atomic(&path, &json).map_err(|e| TrainError::io(&path, e))?;
        written.push(path);
        if config.log_images {
            let n = config.n_worst_queries.unwrap_or(5);
            for (title, img) in worst_query_figures(&evaluation, &ds, &metric_args.visualized(), n)?
            {
                let path = dir
                    .join("figures")
                    .join(format!("{}.png", crate::data::file_stem(&title)));
                let png = oml_datasets::visualize::encode_png(&img)
                    .map_err(|e| TrainError::io(&path, e))?;
                write_atomic(&path, &png).map_err(|e| TrainError::io(&path, e))?;
                written.push(path);
            }
        }
    }
    Ok(ValidateOutcome {
        report: evaluation.report,
        n_items: ds.len(),
        n_queries: query_ids.len(),
        n_gallery: gallery_ids.len(),
        embed_seconds,
        metric_seconds,
        written,
    })
}
