//! The `metrics` suite: retrieval metrics end to end (the work of `oml eval`), on generated
//! clustered embeddings or on given `--csv`/`--npy` files (then reading them is timed too).
//!
//! Lines printed (one JSON object each):
//! - `op: "eval"`: kNN + every metric, embeddings in memory (`--csv/--npy`: files read too);
//! - `op: "gemm"`: one block GEMM of the kNN's shape on the device, for the throughput bound;
//! - `op: "summary"`: distance GFLOP/s reached by the eval vs the GEMM, and the peak RSS.
//!
//! `--write PREFIX` also writes the generated data as `PREFIX.csv` + `PREFIX.npy`, the inputs
//! `oml eval` and `crates/bench/python/oml/oml_eval.py` take, for side-by-side runs.

use crate::report::measure;
use anyhow::{Result, bail};
use burn::prelude::*;
use oml::datasets::dataframe::Split;
use oml::datasets::npy::write_npy;
use oml::interfaces::MetricsReport;
use oml::metrics::{EvalHooks, MetricsConfig, QueryGalleryMeta, evaluate};
use oml::retrieval::KnnConfig;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of the `metrics` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Items to generate (every item query and gallery, unless `--split-qg`).
    #[arg(long, default_value_t = 20_000, value_parser = super::positive)]
    pub n: usize,
    /// Several sizes in one run (comma-separated), to see how time grows; overrides `--n`.
    #[arg(long)]
    pub sizes: Option<String>,
    /// Embedding dimension of generated data.
    #[arg(long, default_value_t = 128, value_parser = super::positive)]
    pub dim: usize,
    /// Classes of generated data (default: n / 10, like SOP's ~10 items per class).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Generated data: 30% queries, the rest gallery (default: every item both).
    #[arg(long)]
    pub split_qg: bool,
    /// Evaluate this OML dataframe CSV (with `--npy`) instead of generated data.
    #[arg(long, requires = "npy")]
    pub csv: Option<PathBuf>,
    /// Embeddings `.npy` for `--csv`.
    #[arg(long, requires = "csv")]
    pub npy: Option<PathBuf>,
    /// Write generated data to `PREFIX.csv` / `PREFIX.npy` (for `oml eval` and OML's script).
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// k of cmc@k.
    #[arg(long, default_value = "1,5")]
    pub cmc: String,
    /// k of precision@k.
    #[arg(long, default_value = "5")]
    pub precision: String,
    /// k of map@k.
    #[arg(long, default_value = "5")]
    pub map: String,
    /// fmr of fnmr@fmr (none by default).
    #[arg(long, default_value = "")]
    pub fmr: String,
    /// pcf variance shares.
    #[arg(long, default_value = "0.5")]
    pub pcf: String,
    /// kNN block rows.
    #[arg(long, default_value_t = oml::retrieval::knn::DEFAULT_BLOCK_SIZE, value_parser = super::positive)]
    pub block_size: usize,
    /// Where the kNN selects candidates: auto (host scans on CPU backends, device top-k on
    /// GPUs), host or device.
    #[arg(long, default_value = "auto")]
    pub selection: oml::retrieval::Selection,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 3, value_parser = super::positive)]
    pub repeats: usize,
    /// Seed of generated data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also evaluate every generated size up to this many items on the CPU backend and fail
    /// when a metric differs by more than 1e-4 (the check of a GPU run; 0: off).
    #[arg(long, default_value_t = 0)]
    pub check_max_n: usize,
}

/// Largest absolute difference between two reports' values (a key missing on one side, or
/// NaN on only one side, counts as infinite).
fn report_diff(a: &MetricsReport, b: &MetricsReport) -> (f64, String) {
    let bv: std::collections::HashMap<String, f64> = b.flatten().into_iter().collect();
    let mut worst = (0.0f64, String::new());
    for (k, x) in a.flatten() {
        let d = match bv.get(&k) {
            Some(y) if x.is_nan() && y.is_nan() => 0.0,
            Some(y) => (x - y).abs(),
            None => f64::INFINITY,
        };
        if d.is_nan() || d > worst.0 {
            worst = (if d.is_nan() { f64::INFINITY } else { d }, k);
        }
    }
    worst
}

fn list<T: std::str::FromStr>(flag: &str, s: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<T>()
                .map_err(|_| anyhow::anyhow!("--{flag}: bad value `{x}`"))
        })
        .collect()
}

/// SplitMix64 + Box–Muller: reproducible normals without a dependency.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// Clustered embeddings as `crates/bench/python/oml/make_retrieval_data.py` makes them: class centres
/// ~ N(0, 1), items = centre + N(0, 1.5²); with `split_qg` 30% of the items are queries, the
/// rest gallery.
fn generate(
    n: usize,
    dim: usize,
    classes: usize,
    split_qg: bool,
    seed: u64,
) -> (Vec<f32>, QueryGalleryMeta) {
    let mut rng = Rng(seed ^ 0x5EED);
    let classes = classes.clamp(1, n.max(1));
    let centres: Vec<f32> = (0..classes * dim).map(|_| rng.normal()).collect();
    let labels: Vec<i64> = (0..n)
        .map(|_| (rng.next_u64() % classes as u64) as i64)
        .collect();
    let mut emb = Vec::with_capacity(n * dim);
    for &l in &labels {
        let c = &centres[l as usize * dim..(l as usize + 1) * dim];
        emb.extend(c.iter().map(|&x| x + 1.5 * rng.normal()));
    }
    let (is_q, is_g) = if split_qg {
        let q: Vec<bool> = (0..n).map(|_| rng.uniform() < 0.3).collect();
        let g = q.iter().map(|&x| !x).collect();
        (q, g)
    } else {
        (vec![true; n], vec![true; n])
    };
    (emb, QueryGalleryMeta::new(labels, is_q, is_g))
}

fn write_data(
    prefix: &std::path::Path,
    emb: &[f32],
    dim: usize,
    meta: &QueryGalleryMeta,
) -> Result<()> {
    let mut csv = String::from("label,path,split,is_query,is_gallery\n");
    let labels = meta.labels.as_deref().unwrap_or_default();
    let b = |x: bool| if x { "True" } else { "False" };
    for (i, l) in labels.iter().enumerate() {
        csv += &format!(
            "{l},item_{i}.jpg,validation,{},{}\n",
            b(meta.is_query[i]),
            b(meta.is_gallery[i])
        );
    }
    std::fs::write(prefix.with_extension("csv"), csv)?;
    write_npy(prefix.with_extension("npy"), &[meta.len(), dim], emb)?;
    Ok(())
}

/// Reads an OML CSV + `.npy` pair (validation rows, or all rows without `split`) as `oml eval`
/// does.
fn read_data(
    csv: &std::path::Path,
    npy: &std::path::Path,
) -> Result<(Vec<f32>, usize, QueryGalleryMeta)> {
    let data = oml::train::eval::load_eval_data(npy, csv, Split::Validation)?;
    Ok((data.embeddings, data.dim, data.meta))
}

/// Runs the suite.
pub fn run(args: Args, device: &Device) -> Result<()> {
    let config = MetricsConfig {
        cmc_top_k: list("cmc", &args.cmc)?,
        precision_top_k: list("precision", &args.precision)?,
        map_top_k: list("map", &args.map)?,
        fmr_vals: list("fmr", &args.fmr)?,
        pcf_variance: list("pcf", &args.pcf)?,
        knn: KnnConfig {
            block_size: args.block_size.max(1),
            selection: args.selection,
        },
        ..MetricsConfig::default()
    };
    config.validate()?;
    let backend = format!("{device:?}");
    let metrics_desc = serde_json::json!({
        "cmc": config.cmc_top_k, "precision": config.precision_top_k, "map": config.map_top_k,
        "fmr": config.fmr_vals, "pcf": config.pcf_variance,
    });

    if let (Some(csv), Some(npy)) = (&args.csv, &args.npy) {
        // Read once up front so bad files fail before timing.
        let (_, dim, meta) = read_data(csv, npy)?;
        let params = serde_json::json!({
            "op": "eval_files", "csv": csv, "n": meta.len(), "dim": dim, "metrics": metrics_desc,
            "block_size": args.block_size, "selection": format!("{:?}", args.selection), "device": backend,
        });
        let mut report = None;
        measure("metrics", params, args.warmup, args.repeats, || {
            // The files may change between runs: a failed read ends the suite with its error.
            report = Some(read_data(csv, npy).and_then(|(emb, dim, meta)| {
                evaluate(&emb, dim, &meta, &config, device, &EvalHooks::default())
                    .map(|e| e.report)
                    .map_err(|e| anyhow::anyhow!("evaluation failed: {e}"))
            }));
        });
        match report {
            Some(Ok(r)) => println!(
                "{}",
                serde_json::json!({"suite": "metrics", "op": "report", "report": r})
            ),
            Some(Err(e)) => return Err(e),
            None => {}
        }
        println!(
            "{}",
            serde_json::json!({"suite": "metrics", "op": "summary", "peak_rss_mib": super::peak_rss_mib()})
        );
        return Ok(());
    }

    let sizes: Vec<usize> = match &args.sizes {
        Some(s) => list("sizes", s)?,
        None => vec![args.n],
    };
    let dim = args.dim;
    // GEMM bound: one block of the kNN's shape.
    let b = args
        .block_size
        .min(*sizes.iter().max().unwrap_or(&1))
        .max(1);
    // Inputs made on the host. On accelerators they are uploaded on every run: repeating one
    // op on the same device tensors measured impossibly fast on wgpu.
    let mut rng = Rng(args.seed ^ 0x6E33);
    let a_host: Vec<f32> = (0..b * dim).map(|_| rng.normal()).collect();
    let b_host: Vec<f32> = (0..dim * b).map(|_| rng.normal()).collect();
    let upload = || {
        (
            Tensor::<2>::from_data(TensorData::new(a_host.clone(), [b, dim]), device),
            Tensor::<2>::from_data(TensorData::new(b_host.clone(), [dim, b]), device),
        )
    };
    // On CPU backends the kNN runs the host GEMM (`oml_interfaces::cpu`), so that is the bound.
    let host = oml::interfaces::cpu::applies(device);
    let mut out = vec![0f32; if host { b * b } else { 0 }];
    let gemm_s = measure(
        "metrics",
        serde_json::json!({"op": "gemm", "m": b, "n": b, "k": dim, "device": backend}),
        1,
        args.repeats.max(3),
        || {
            if host {
                // `b_host` read as `[b, dim]` rows: random values either way.
                let _ = oml::interfaces::cpu::matmul_nt(&a_host, &b_host, dim, &mut out);
            } else {
                let (a, bt) = upload();
                let _ = a.matmul(bt).into_data();
            }
        },
    );
    let gemm_gflops = 2.0 * (b * b * dim) as f64 / gemm_s / 1e9;

    for &n in &sizes {
        let classes = args.classes.unwrap_or((n / 10).max(2));
        let t = Instant::now();
        let (emb, meta) = generate(n, dim, classes, args.split_qg, args.seed);
        let gen_s = t.elapsed().as_secs_f64();
        if let Some(prefix) = &args.write {
            let p = if sizes.len() > 1 {
                PathBuf::from(format!("{}_{n}", prefix.display()))
            } else {
                prefix.clone()
            };
            write_data(&p, &emb, dim, &meta)?;
        }
        let params = serde_json::json!({
            "op": "eval", "n": n, "dim": dim, "classes": classes, "split_qg": args.split_qg,
            "metrics": metrics_desc, "block_size": args.block_size, "selection": format!("{:?}", args.selection), "device": backend, "generate_s": gen_s,
        });
        let mut report = None;
        let secs = measure("metrics", params, args.warmup, args.repeats, || {
            report = Some(
                evaluate(&emb, dim, &meta, &config, device, &EvalHooks::default())
                    .map(|e| e.report),
            );
        });
        let report = match report {
            Some(Ok(r)) => r,
            Some(Err(e)) => bail!("evaluation failed: {e}"),
            None => bail!("no run"),
        };
        if n <= args.check_max_n {
            let cpu = oml::interfaces::device::select_device(Some("cpu"))?;
            let want = evaluate(&emb, dim, &meta, &config, &cpu, &EvalHooks::default())?.report;
            let (diff, key) = report_diff(&report, &want);
            println!(
                "{}",
                serde_json::json!({"suite": "metrics", "op": "check", "n": n, "against": "cpu",
                    "max_abs_diff": diff, "worst": key})
            );
            if diff > 1e-4 {
                bail!("metrics on {backend} differ from the CPU backend's: {key} by {diff}");
            }
        }
        let (nq, ng) = (
            meta.is_query.iter().filter(|&&x| x).count() as f64,
            meta.is_gallery.iter().filter(|&&x| x).count() as f64,
        );
        let on_device = args.selection.on_device(device);
        // Pairs whose dot products were computed (half when queries are the gallery and the
        // host path mirrors blocks).
        let pairs = if args.split_qg || on_device {
            nq * ng
        } else {
            nq * (nq + 1.0) / 2.0
        };
        let eval_gflops = 2.0 * pairs * dim as f64 / secs / 1e9;
        println!(
            "{}",
            serde_json::json!({
                "suite": "metrics", "op": "summary", "n": n, "dim": dim, "median_s": secs,
                "distance_gflops": eval_gflops, "gemm_gflops": gemm_gflops,
                "fraction_of_gemm": eval_gflops / gemm_gflops, "peak_rss_mib": super::peak_rss_mib(),
                "report": report,
            })
        );
    }
    Ok(())
}
