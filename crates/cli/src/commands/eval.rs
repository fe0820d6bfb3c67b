//! `oml eval`: retrieval metrics of given embeddings on an OML-format dataset CSV.
//!
//! Reads `D.csv` (OML's dataframe: `label, path, split, is_query, is_gallery[, category]
//! [, sequence]`; `split` may be absent, then every row is evaluated) and `E.npy` (float32 or
//! float64 `[rows, dim]`, one row per CSV row), keeps the rows of `--split`, and prints OML's
//! metrics report. Every problem is an error naming its file, row, column and value; nothing
//! is written unless everything succeeded (`--output` is replaced atomically).

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use oml::datasets::dataframe::Split;
use oml::interfaces::{MetricsReport, OVERALL};
use oml::metrics::{EvalHooks, MetricsConfig, NoGtPrecision, evaluate};
use oml::retrieval::KnnConfig;
use oml::train::eval::load_eval_data;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Report format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object keyed like OML's metrics dict (`null` for NaN).
    Json,
    /// An aligned table for people.
    Table,
}

/// Split of the rows to evaluate.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitArg {
    /// `split == validation` rows.
    Validation,
    /// `split == train` rows (they need query/gallery flags to be evaluable).
    Train,
}

/// Arguments of `oml eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Embeddings, `.npy` float32/float64 `[rows, dim]`, one row per CSV row.
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Dataset CSV in OML's format.
    #[arg(long)]
    pub dataset: PathBuf,
    /// k of cmc@k, comma-separated ("" for none).
    #[arg(long, default_value = "1,5", allow_hyphen_values = true)]
    pub cmc: String,
    /// k of precision@k, comma-separated ("" for none).
    #[arg(long, default_value = "5", allow_hyphen_values = true)]
    pub precision: String,
    /// k of map@k, comma-separated ("" for none).
    #[arg(long, default_value = "5", allow_hyphen_values = true)]
    pub map: String,
    /// k of ndcg@k, comma-separated (beyond OML; none by default).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub ndcg: String,
    /// k of mrr@k, comma-separated (beyond OML; none by default).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub mrr: String,
    /// Also MAP@R and R-precision (beyond OML; retrieves max(k, n_gt) items per query).
    #[arg(long)]
    pub r_metrics: bool,
    /// FMR values in [0, 1] of fnmr@fmr, comma-separated (none by default).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub fmr: String,
    /// Variance shares in [0, 1] of pcf, comma-separated ("" for none).
    #[arg(long, default_value = "0.5", allow_hyphen_values = true)]
    pub pcf: String,
    /// Rows to evaluate (ignored when the CSV has no `split` column).
    #[arg(long, value_enum, default_value = "validation")]
    pub split: SplitArg,
    /// Output format (default: table on a terminal, json otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the report to this file (atomically) instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// precision@k of queries without relevant items is NaN (`null`), exactly as OML 4.0;
    /// by default it is 0.
    #[arg(long)]
    pub nan_precision: bool,
    /// Backend: flex, ndarray, wgpu (default: BURN_DEVICE, else the CPU backend).
    #[arg(long)]
    pub device: Option<String>,
    /// Rows per kNN block (memory ~ block² × 4 bytes).
    #[arg(long, default_value_t = oml::retrieval::knn::DEFAULT_BLOCK_SIZE, allow_hyphen_values = true)]
    pub block_size: usize,
    /// Where the kNN selects candidates: auto (host scans on CPU backends, device top-k on
    /// GPUs), host or device.
    #[arg(long, default_value = "auto")]
    pub selection: oml::retrieval::Selection,
}

/// The items of a comma-separated list: none for `""`, an error for an empty item (`1,,5`).
fn list_items<'a>(flag: &str, text: &'a str) -> Result<Vec<&'a str>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(str::trim)
        .map(|s| {
            if s.is_empty() {
                bail!("--{flag}: `{text}` has an empty item")
            }
            Ok(s)
        })
        .collect()
}

/// Parses `1,5` into `[1, 5]`; `k` must be a positive integer.
fn parse_ks(flag: &str, text: &str) -> Result<Vec<usize>> {
    list_items(flag, text)?
        .into_iter()
        .map(|s| match s.parse::<usize>() {
            Ok(0) => bail!("--{flag}: k = 0 is not allowed (every k must be a positive integer)"),
            Ok(k) => Ok(k),
            Err(_) => bail!("--{flag}: `{s}` is not a positive integer"),
        })
        .collect()
}

/// Parses `0.1,0.5` into fractions in `[0, 1]`.
fn parse_fractions(flag: &str, text: &str) -> Result<Vec<f64>> {
    list_items(flag, text)?
        .into_iter()
        .map(|s| match s.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
            Ok(v) => bail!("--{flag}: {v} is outside [0, 1]"),
            Err(_) => bail!("--{flag}: `{s}` is not a number"),
        })
        .collect()
}

/// The report as the CLI's aligned table (`oml_train::progress::table`): one row per metric and
/// parameter, one column per category.
fn table(report: &MetricsReport) -> String {
    let mut cats: Vec<&String> = report
        .categories
        .keys()
        .filter(|c| c.as_str() != OVERALL)
        .collect();
    cats.sort();
    let overall = OVERALL.to_string();
    let cats: Vec<&String> = std::iter::once(&overall).chain(cats).collect();
    // OML's metrics first, in its order, then the others.
    const ORDER: [&str; 9] = [
        "cmc",
        "precision",
        "map",
        "ndcg",
        "mrr",
        "map_at_r",
        "r_precision",
        "fnmr@fmr",
        "pcf",
    ];
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(m) = report.overall() {
        let mut names: Vec<&String> = m.keys().collect();
        names.sort_by_key(|n| {
            (
                ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
                n.to_string(),
            )
        });
        for name in names {
            let mut ps: Vec<&String> = m[name].keys().collect();
            ps.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            });
            rows.extend(ps.into_iter().map(|p| (name.clone(), p.clone())));
        }
    }
    let cell = |c: &str, m: &str, p: &str| match report.get(c, m, p) {
        Some(v) if v.is_nan() => "nan".to_string(),
        Some(v) => format!("{v:.4}"),
        None => "-".to_string(),
    };
    let header: Vec<&str> = std::iter::once("metric")
        .chain(cats.iter().map(|c| c.as_str()))
        .collect();
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|(m, p)| {
            let label = if m.contains('@') {
                format!("{m}={p}")
            } else {
                format!("{m}@{p}")
            };
            std::iter::once(label)
                .chain(cats.iter().map(|c| cell(c, m, p)))
                .collect()
        })
        .collect();
    oml::train::progress::table(&header, &lines) + "\n"
}

/// Replaces `path` with `content` atomically (temporary file in the same folder, then rename).
fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    // the error already names the path
    oml::interfaces::fs::write_atomic(path, content)
        .map_err(|e| anyhow::anyhow!("cannot write {e}"))
}

/// Runs `oml eval`.
/// Whether `a` and `b` name the same existing file (through links and relative paths).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub fn run(args: Args) -> Result<()> {
    let config = MetricsConfig {
        cmc_top_k: parse_ks("cmc", &args.cmc)?,
        precision_top_k: parse_ks("precision", &args.precision)?,
        map_top_k: parse_ks("map", &args.map)?,
        ndcg_top_k: parse_ks("ndcg", &args.ndcg)?,
        mrr_top_k: parse_ks("mrr", &args.mrr)?,
        map_at_r: args.r_metrics,
        r_precision: args.r_metrics,
        fmr_vals: parse_fractions("fmr", &args.fmr)?,
        pcf_variance: parse_fractions("pcf", &args.pcf)?,
        no_gt_precision: if args.nan_precision {
            NoGtPrecision::Nan
        } else {
            NoGtPrecision::Zero
        },
        knn: KnnConfig {
            block_size: args.block_size.max(1),
            selection: args.selection,
        },
        ..MetricsConfig::default()
    };
    config.validate()?;
    if args.block_size == 0 {
        bail!("--block-size: must be at least 1");
    }
    if let Some(out) = &args.output {
        for (flag, input) in [
            ("--dataset", &args.dataset),
            ("--embeddings", &args.embeddings),
        ] {
            if same_file(out, input) {
                bail!(
                    "--output {}: it is the {flag} file; writing the report there would replace it",
                    out.display()
                );
            }
        }
    }
    let format = args.format.unwrap_or(
        if args.output.is_none() && std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        },
    );
    let device = oml::interfaces::device::select_device(args.device.as_deref())?;

    let t0 = Instant::now();
    let split = match args.split {
        SplitArg::Validation => Split::Validation,
        SplitArg::Train => Split::Train,
    };
    let data = load_eval_data(&args.embeddings, &args.dataset, split)?;
    for w in &data.warnings {
        eprintln!("warning: {w}");
    }
    let bar = ProgressBar::hidden();
    let n_q = data.meta.is_query.iter().filter(|&&q| q).count() as u64;
    let n_g = data.meta.is_gallery.iter().filter(|&&g| g).count() as u64;
    // Only long searches get a bar (it draws on stderr, and only on a terminal).
    if n_q * n_g > 50_000_000 && std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} distances {bar:40} {pos}/{len} blocks ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let hooks = EvalHooks {
        postprocessor: None,
        progress: Some(&progress),
    };
    let eval = evaluate(
        &data.embeddings,
        data.dim,
        &data.meta,
        &config,
        &device,
        &hooks,
    )?;
    bar.finish_and_clear();
    let (retrieved, nothing) = eval.queries_without_gt();
    if retrieved > 0 {
        let rule = if args.nan_precision {
            "NaN (null)"
        } else {
            "0"
        };
        eprintln!(
            "warning: {retrieved} of {n_q} queries have no relevant gallery item (label absent from the gallery, \
             or only in their own sequence); cmc and map count them as 0, precision as {rule}"
        );
    }
    if nothing > 0 {
        eprintln!(
            "warning: {nothing} of {n_q} queries retrieve nothing (their only gallery items are themselves \
             or their own sequence); as in OML, every metric counts them as 1"
        );
    }
    let text = match format {
        Format::Json => serde_json::to_string(&eval.report)? + "\n",
        Format::Table => table(&eval.report),
    };
    match &args.output {
        Some(path) => write_atomic(path, text.as_bytes())?,
        None => oml::train::progress::out(text.trim_end_matches('\n')),
    }
    eprintln!(
        "evaluated {} items ({n_q} queries, {n_g} gallery, dim {}) in {:.3} s",
        data.meta.len(),
        data.dim,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
