//! `oml predict CONFIG`: embeddings of every image under a folder, to `.npy` + a CSV of paths
//! (and OML's `predictions.json`).

use std::path::PathBuf;

use anyhow::Result;
use oml::train::config::{PredictConfig, load_config};
use oml::train::predict::{PredictOptions, predict};
use oml::train::progress::{Console, table};

/// Arguments of `oml predict`.
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
}

/// Runs `oml predict`.
pub fn run(args: Args) -> Result<()> {
    let mut config: PredictConfig = load_config(&args.config)?;
    if let Some(w) = args.weights {
        if let Some(args) = config.extractor.args.as_object_mut() {
            args.remove("weights");
        }
        config.extractor.weights = Some(w);
    }
    let console = Console::new();
    let opts = PredictOptions {
        device: args.device,
        base_dir: PathBuf::from("."),
        console: console.clone(),
    };
    let out = predict(&config, opts)?;
    let rows = vec![
        vec!["images".to_string(), out.paths.len().to_string()],
        vec!["embedding size".to_string(), out.dim.to_string()],
        vec!["seconds".to_string(), format!("{:.1}", out.seconds)],
        vec![
            "embeddings".to_string(),
            out.embeddings_path.display().to_string(),
        ],
        vec!["paths".to_string(), out.paths_csv.display().to_string()],
        vec![
            "predictions".to_string(),
            out.predictions_json.display().to_string(),
        ],
    ];
    oml::train::progress::out(&table(&["", ""], &rows));
    Ok(())
}
