//! `oml validate CONFIG`: metrics of an extractor (a checkpoint or a pretrained key) on the
//! validation split, optionally re-ranked by a post-processor.

use std::path::PathBuf;

use anyhow::Result;
use oml::train::config::{ValidateConfig, load_config};
use oml::train::progress::{Console, table};
use oml::train::validate::{ValidateOptions, validate};

/// Arguments of `oml validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// YAML config with OML's keys (see `examples/configs/`).
    pub config: PathBuf,
    /// Backend: `cpu`, `flex`, `ndarray`, `wgpu`. Overrides the config's `accelerator`.
    #[arg(long)]
    pub device: Option<String>,
    /// Extractor weights (a `.bpk` written by `oml train`, a PyTorch checkpoint or a pretrained
    /// key). Overrides the config's `extractor.weights`.
    #[arg(long)]
    pub weights: Option<String>,
    /// Print the report as JSON (OML's shape, as `oml eval --format json`) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `oml validate`.
pub fn run(args: Args) -> Result<()> {
    let mut config: ValidateConfig = load_config(&args.config)?;
    if let Some(w) = args.weights {
        if let Some(args) = config.extractor.args.as_object_mut() {
            args.remove("weights");
        }
        config.extractor.weights = Some(w);
    }
    let console = Console::new();
    let opts = ValidateOptions {
        device: args.device,
        base_dir: PathBuf::from("."),
        console: console.clone(),
    };
    let out = validate(&config, opts)?;
    if args.json {
        oml::train::progress::out(&serde_json::to_string(&out.report)?);
    } else {
        let rows: Vec<Vec<String>> = out
            .report
            .flatten()
            .into_iter()
            .map(|(k, v)| vec![k, format!("{v:.4}")])
            .collect();
        console.line(format!(
            "{} items ({} queries, {} gallery); embedding {:.1} s, retrieval and metrics {:.1} s",
            out.n_items, out.n_queries, out.n_gallery, out.embed_seconds, out.metric_seconds
        ));
        oml::train::progress::out(&table(&["metric", "value"], &rows));
    }
    for p in &out.written {
        console.line(format!("wrote {}", p.display()));
    }
    Ok(())
}
