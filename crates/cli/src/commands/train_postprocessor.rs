//! `oml train-postprocessor CONFIG`: trains a pairwise re-ranker (OML's
//! `postprocessor_training_pipeline`) on hard pairs of a frozen extractor's embeddings, validates
//! it with `PairwiseReranker`, and prints the run folder's path.

use std::path::PathBuf;

use anyhow::{Context, Result};
use oml::train::TrainError;
use oml::train::config::load_config;
use oml::train::postprocessor::{PostprocessorConfig, train_postprocessor};
use oml::train::progress::{Console, table};
use oml::train::train::{TrainOptions, comparison_rows};

/// Arguments of `oml train-postprocessor`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// YAML config with OML's keys (see `examples/configs/`).
    pub config: PathBuf,
    /// Backend: `cpu`, `flex`, `ndarray`, `wgpu`. Overrides the config's `accelerator`.
    #[arg(long)]
    pub device: Option<String>,
    /// Write the run here instead of a new folder under `logs_root`.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Start a new run even if an unfinished run of this config exists.
    #[arg(long)]
    pub no_resume: bool,
    /// Stop once this epoch is checkpointed (run the command again to continue).
    #[arg(long)]
    pub stop_after_epoch: Option<usize>,
}

/// Runs `oml train-postprocessor`.
pub fn run(args: Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let config: PostprocessorConfig = load_config(&args.config)?;
    let name = args
        .config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postprocessor".into());
    let console = Console::new();
    let stop_after_epoch = args.stop_after_epoch;
    let opts = TrainOptions {
        device: args.device,
        config_name: name,
        config_text: Some(text),
        base_dir: PathBuf::from("."),
        run_dir: args.run_dir,
        resume: !args.no_resume,
        console: console.clone(),
        stop_after_epoch,
    };
    let out = match train_postprocessor(&config, opts) {
        Err(TrainError::Interrupted { epoch, run_dir, .. }) if stop_after_epoch.is_some() => {
            console.line(format!(
                "stopped after epoch {epoch} as asked; run the same command again to continue"
            ));
            println!("run folder: {run_dir}");
            return Ok(());
        }
        other => other?,
    };
    console.line("");
    console.line(table(
        &["metric", "extractor", "re-ranked"],
        &comparison_rows(Some(&out.initial), &out.last),
    ));
    if let Some((epoch, value)) = out.best {
        console.line(format!(
            "best {} = {value:.4} at epoch {epoch}",
            config.metric_for_checkpointing
        ));
    }
    console.line(format!(
        "checkpoints: {} (best), {} (last)",
        out.best_checkpoint.display(),
        out.last_checkpoint.display()
    ));
    println!("run folder: {}", out.run_dir.display());
    Ok(())
}
