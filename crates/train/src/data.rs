//! Data for the pipelines: transforms and metric arguments from config sections, preparing
//! Fashion-MNIST on first use, embedding a dataset, and the worst-queries figures.

use std::collections::BTreeMap;
use std::path::Path;

use burn::data::dataset::Dataset;
use burn::prelude::*;
use indicatif::ProgressBar;
use oml_datasets::batch::sequential_batches;
use oml_datasets::images::{ImageItem, ImageQueryGalleryLabeledDataset};
use oml_datasets::transforms::Pipeline;
use oml_datasets::visualize::{GridOptions, RetrievalSide, draw_retrieval_grid};
use oml_interfaces::{Extractor, RetrievalResults, RgbImage};
use oml_metrics::{Evaluation, MetricsConfig, NoGtPrecision};
use serde::{Deserialize, Serialize};

use crate::config::{NamedArgs, section};
use crate::error::TrainError;
use crate::validation::Embeddings;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformArgs {
    #[serde(default)]
    im_size: Option<u32>,
}

/// The transforms of a `transforms_*` section (`{name, args: {im_size}}`, a preset of OML's
/// registry), or `default` when the section is absent.
pub fn transforms(
    named: Option<&NamedArgs>,
    key: &str,
    default: &str,
) -> Result<Pipeline, TrainError> {
    let Some(n) = named else {
        return Pipeline::preset(default, None).map_err(|e| TrainError::config(key, e.to_string()));
    };
    let a: TransformArgs = section(n.args_object(), &format!("{key}.args"))?;
    Pipeline::preset(&n.name, a.im_size)
        .map_err(|e| TrainError::config(format!("{key}.name"), e.to_string()))
}

/// The transforms of a `transforms_*` section that feeds `extractor` (`norm_albu` when absent),
/// refused before any image is read when the extractor takes one input size only (CLIP's and
/// Unicom's): OML asserts CLIP's size, and Unicom's head would fail on a shape inside the model.
pub fn extractor_transforms(
    named: Option<&NamedArgs>,
    key: &str,
    extractor: &oml_models::ExtractorConfig,
) -> Result<Pipeline, TrainError> {
    let t = transforms(named, key, "norm_albu")?;
    check_input_size(extractor, &t, key)?;
    Ok(t)
}

fn check_input_size(
    extractor: &oml_models::ExtractorConfig,
    transforms: &Pipeline,
    key: &str,
) -> Result<(), TrainError> {
    let Some(s) = extractor.fixed_input_size() else {
        return Ok(());
    };
    let wanted = (s as u32, s as u32);
    match transforms.output_size() {
        Some(got) if got == wanted => Ok(()),
        got => Err(TrainError::config(
            key,
            format!(
                "extractor `{}` reads {s}×{s} images only (as in OML), but `{}` gives {}; use \
                 e.g. {{name: {}, args: {{im_size: {s}}}}}",
                extractor.name(),
                transforms.name,
                match got {
                    Some((w, h)) => format!("{w}×{h}"),
                    None => "images of any size".into(),
                },
                fixed_size_preset(extractor)
            ),
        )),
    }
}

/// The transforms preset OML pairs with an extractor of one input size (through
/// `extractor_with_mlp` too).
fn fixed_size_preset(extractor: &oml_models::ExtractorConfig) -> &'static str {
    use oml_models::ExtractorConfig as E;
    match extractor {
        E::VitClip(_) => "norm_resize_albu_clip",
        E::ExtractorWithMlp(a) => fixed_size_preset(&a.extractor),
        _ => "unicom_transforms",
    }
}

fn k5() -> Vec<usize> {
    vec![5]
}
fn half() -> Vec<f64> {
    vec![0.5]
}
fn yes() -> bool {
    true
}

/// OML's `EmbeddingMetrics` arguments (`metric_args`), plus the metrics oml-metrics adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricArgs {
    /// k of cmc@k.
    #[serde(default = "k5")]
    pub cmc_top_k: Vec<usize>,
    /// k of precision@k.
    #[serde(default = "k5")]
    pub precision_top_k: Vec<usize>,
    /// k of map@k.
    #[serde(default = "k5")]
    pub map_top_k: Vec<usize>,
    /// FMR values of fnmr@fmr.
    #[serde(default)]
    pub fmr_vals: Vec<f64>,
    /// Variance shares of pcf.
    #[serde(default = "half")]
    pub pcf_variance: Vec<f64>,
    /// k of ndcg@k (oml-rs).
    #[serde(default)]
    pub ndcg_top_k: Vec<usize>,
    /// k of mrr@k (oml-rs).
    #[serde(default)]
    pub mrr_top_k: Vec<usize>,
    /// MAP@R (oml-rs).
    #[serde(default)]
    pub map_at_r: bool,
    /// R-precision (oml-rs).
    #[serde(default)]
    pub r_precision: bool,
    /// Only report OVERALL.
    #[serde(default)]
    pub return_only_overall_category: bool,
    /// Draw figures for OVERALL only (categories are not drawn in any case).
    #[serde(default = "yes")]
    pub visualize_only_overall_category: bool,
    /// Metrics without figures (`cmc`, `precision`, …); fnmr@fmr and pcf never have one.
    #[serde(default)]
    pub metrics_to_exclude_from_visualization: Vec<String>,
    /// Accepted for OML compatibility (progress is shown by the pipeline).
    #[serde(default = "yes")]
    pub verbose: bool,
    /// precision@k of a query without relevant items is NaN as in OML 4.0 (default: 0).
    #[serde(default)]
    pub nan_precision_without_gt: bool,
}

impl Default for MetricArgs {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({}))
            .unwrap_or_else(|_| unreachable!("all fields have defaults"))
    }
}

impl MetricArgs {
    /// Parses `metric_args` (null: OML's defaults).
    pub fn parse(value: &serde_json::Value, key: &str) -> Result<Self, TrainError> {
        if value.is_null() {
            return Ok(Self::default());
        }
        let a: Self = section(value.clone(), key)?;
        a.to_config()
            .validate()
            .map_err(|e| TrainError::config(key, e.to_string()))?;
        Ok(a)
    }

    /// The oml-metrics configuration.
    pub fn to_config(&self) -> MetricsConfig {
        MetricsConfig {
            cmc_top_k: self.cmc_top_k.clone(),
            precision_top_k: self.precision_top_k.clone(),
            map_top_k: self.map_top_k.clone(),
            ndcg_top_k: self.ndcg_top_k.clone(),
            mrr_top_k: self.mrr_top_k.clone(),
            map_at_r: self.map_at_r,
            r_precision: self.r_precision,
            fmr_vals: self.fmr_vals.clone(),
            pcf_variance: self.pcf_variance.clone(),
            no_gt_precision: if self.nan_precision_without_gt {
                NoGtPrecision::Nan
            } else {
                NoGtPrecision::Zero
            },
            return_only_overall_category: self.return_only_overall_category,
            ..MetricsConfig::default()
        }
    }

    /// The `(metric, k)` pairs that get a worst-queries figure.
    pub fn visualized(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, ks) in [
            ("cmc", &self.cmc_top_k),
            ("precision", &self.precision_top_k),
            ("map", &self.map_top_k),
        ] {
            if self
                .metrics_to_exclude_from_visualization
                .iter()
                .any(|m| m == name)
            {
                continue;
            }
            out.extend(ks.iter().map(|k| (name.to_string(), k.to_string())));
        }
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FashionMnistArgs {
    #[serde(default = "default_source")]
    source: std::path::PathBuf,
    #[serde(default = "default_train_classes")]
    train_classes: Vec<i64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    with_categories: bool,
}

fn default_source() -> std::path::PathBuf {
    "data/fashion-mnist".into()
}
fn default_train_classes() -> Vec<i64> {
    (0..5).collect()
}

/// Prepares `dataset_root/dataframe_name` when it is missing (`prepare_data` section):
/// `{name: fashion_mnist, args: {source, train_classes, limit, with_categories}}` converts the
/// IDX files in `source` to PNGs and an OML CSV. Returns a message when it converted.
pub fn prepare_data(
    prep: &NamedArgs,
    root: &Path,
    dataframe_name: &str,
    key: &str,
) -> Result<Option<String>, TrainError> {
    let csv = root.join(dataframe_name);
    if csv.is_file() {
        return Ok(None);
    }
    match prep.name.as_str() {
        "fashion_mnist" => {
            let a: FashionMnistArgs = section(prep.args_object(), &format!("{key}.args"))?;
            // the converter writes the CSV last and atomically: a killed conversion leaves no
            // CSV and is redone
            let opts = oml_datasets::fashion_mnist::ConvertOptions {
                train_classes: a.train_classes,
                limit: a.limit,
                with_categories: a.with_categories,
                csv_name: dataframe_name.to_string(),
            };
            let report =
                oml_datasets::fashion_mnist::convert_dir(&a.source, root, &opts).map_err(|e| {
                    TrainError::Data(format!(
                        "preparing Fashion-MNIST from {}: {e}",
                        a.source.display()
                    ))
                })?;
            Ok(Some(format!(
                "converted Fashion-MNIST from {} to {} ({} train, {} validation images)",
                a.source.display(),
                csv.display(),
                report.n_train,
                report.n_validation
            )))
        }
        other => Err(TrainError::config(
            format!("{key}.name"),
            format!("unknown data preparation `{other}`; available: fashion_mnist"),
        )),
    }
}

/// Embeds every item of `ds` in order with `extractor` (batches of `batch_size`), advancing
/// `bar` by the items done.
pub fn embed_dataset<E: Extractor>(
    extractor: &E,
    ds: &(dyn Dataset<ImageItem> + '_),
    batch_size: usize,
    device: &Device,
    bar: Option<&ProgressBar>,
) -> Result<Embeddings, TrainError> {
    let mut rows = 0;
    let mut dim = extractor.feat_dim();
    let mut data = Vec::with_capacity(ds.len() * dim);
    let extract = extractor.inference();
    for batch in sequential_batches(ds, batch_size, device) {
        let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
        let n = batch.len();
        let emb = Embeddings::from_tensor(extract(batch.images))
            .map_err(|e| TrainError::ModelOutput(format!("reading embeddings: {e}")))?;
        dim = emb.dim;
        data.extend_from_slice(&emb.data);
        rows += n;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
    }
    let emb = Embeddings { rows, dim, data };
    emb.check_finite()?;
    Ok(emb)
}

/// OML's worst-queries figures: for each `(metric, k)`, the `n` worst queries by its per-query
/// value (smallest first), each with its top retrieved items and ground truth.
pub fn worst_query_figures(
    eval: &Evaluation,
    ds: &ImageQueryGalleryLabeledDataset,
    visualized: &[(String, String)],
    n: usize,
) -> Result<Vec<(String, RgbImage)>, TrainError> {
    let (d, ids, _) = eval.retrieval.clone().into_parts();
    let rr = RetrievalResults::new(d, ids, Some(eval.ground_truth.gt_ids()))?;
    let opts = GridOptions {
        cell: 84,
        frame: 3,
        margin: 6,
        ..GridOptions::default()
    };
    let queries = RetrievalSide {
        dataset: ds,
        ids: &eval.query_ids,
    };
    let gallery = RetrievalSide {
        dataset: ds,
        ids: &eval.gallery_ids,
    };
    let mut out = Vec::new();
    for (metric, k) in visualized {
        let Some(worst) = eval.worst_queries(metric, k, n) else {
            continue;
        };
        let img = draw_retrieval_grid(&rr, queries, gallery, &worst, &opts)
            .map_err(TrainError::Figure)?;
        out.push((format!("top {n} worst by OVERALL_{metric}_{k}"), img));
    }
    Ok(out)
}

/// File-name safe form of a figure title.
pub fn file_stem(title: &str) -> String {
    title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Values of a report as `key → value`, OVERALL first.
pub fn flat(report: &oml_interfaces::MetricsReport) -> BTreeMap<String, f64> {
    report.flatten().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_args_default_to_oml_and_reject_unknown_keys() {
        let a = MetricArgs::parse(&serde_json::Value::Null, "metric_args").unwrap();
        assert_eq!(a.cmc_top_k, vec![5]);
        assert_eq!(a.pcf_variance, vec![0.5]);
        let e = MetricArgs::parse(&serde_json::json!({"cmc_topk": [1]}), "metric_args")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metric_args") && e.contains("cmc_topk"), "{e}");
        let e = MetricArgs::parse(&serde_json::json!({"cmc_top_k": [0]}), "metric_args")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cmc_top_k"), "{e}");
        let a = MetricArgs::parse(&serde_json::json!({"cmc_top_k": [1, 5], "metrics_to_exclude_from_visualization": ["precision"]}), "m").unwrap();
        assert_eq!(
            a.visualized(),
            vec![
                ("cmc".to_string(), "1".to_string()),
                ("cmc".to_string(), "5".to_string()),
                ("map".to_string(), "5".to_string())
            ]
        );
    }

    #[test]
    fn unicom_needs_transforms_of_its_input_size() {
        let unicom: oml_models::ExtractorConfig = serde_json::from_value(serde_json::json!({
            "name": "extractor_with_mlp",
            "args": {"mlp_features": [8], "extractor": {"name": "vit_unicom", "args": {"arch": "vitl14_336px_unicom"}}},
        }))
        .unwrap();
        let sized = |name: &str, s: u32| Pipeline::preset(name, Some(s)).unwrap();
        check_input_size(&unicom, &sized("unicom_transforms", 336), "t").unwrap();
        for (p, says) in [
            (sized("unicom_transforms", 224), "224×224"),
            (sized("norm_albu", 224), "any size"),
        ] {
            let e = check_input_size(&unicom, &p, "transforms_val")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("transforms_val") && e.contains("336×336") && e.contains(says),
                "{e}"
            );
        }
        let clip: oml_models::ExtractorConfig = serde_json::from_value(
            serde_json::json!({"name": "vit_clip", "args": {"arch": "vitl14_336"}}),
        )
        .unwrap();
        check_input_size(&clip, &sized("norm_resize_albu_clip", 336), "t").unwrap();
        let e = check_input_size(&clip, &sized("norm_resize_albu_clip", 224), "t")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vit_clip") && e.contains("norm_resize_albu_clip"),
            "{e}"
        );
        // Under an MLP head the suggestion is still CLIP's preset.
        let clip_mlp: oml_models::ExtractorConfig = serde_json::from_value(serde_json::json!({
            "name": "extractor_with_mlp",
            "args": {"mlp_features": [8], "extractor": {"name": "vit_clip", "args": {"arch": "vitb32_224"}}},
        }))
        .unwrap();
        let e = extractor_transforms(None, "transforms_val", &clip_mlp)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("norm_resize_albu_clip") && e.contains("224×224"),
            "{e}"
        );
        // Other extractors take any size.
        let vit: oml_models::ExtractorConfig =
            serde_json::from_value(serde_json::json!({"name": "vit", "args": {"arch": "vits14"}}))
                .unwrap();
        check_input_size(&vit, &sized("norm_albu", 224), "t").unwrap();
    }

    #[test]
    fn transforms_resolve_presets_and_name_bad_keys() {
        let p = transforms(None, "transforms_val", "norm_albu").unwrap();
        assert_eq!(p.output_size(), None);
        let n = NamedArgs {
            name: "norm_resize_torch".into(),
            args: serde_json::json!({"im_size": 32}),
        };
        assert_eq!(
            transforms(Some(&n), "transforms_val", "norm_albu")
                .unwrap()
                .output_size(),
            Some((32, 32))
        );
        let n = NamedArgs {
            name: "nope".into(),
            args: serde_json::Value::Null,
        };
        assert!(
            transforms(Some(&n), "transforms_val", "x")
                .unwrap_err()
                .to_string()
                .contains("transforms_val.name")
        );
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(
            file_stem("top 5 worst by OVERALL_cmc_1"),
            "top_5_worst_by_OVERALL_cmc_1"
        );
    }
}
