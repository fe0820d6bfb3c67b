//! `oml train CONFIG`: extractor training (OML's `extractor_training_pipeline`) on Burn's
//! Learner. Prints the metrics before and after training and the run folder's path.

use std::path::PathBuf;

use anyhow::{Context, Result};
use oml::train::TrainError;
use oml::train::applog::RunLog;
use oml::train::config::{TrainConfig, load_config};
use oml::train::progress::{Console, table};
use oml::train::train::{TrainOptions, comparison_rows, train};

/// Arguments of `oml train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// YAML config with OML's keys (see `examples/configs/`).
    pub config: PathBuf,
    /// Backend: `cpu` (the default CPU backend), `flex`, `ndarray`, `wgpu`. Overrides the
    /// config's `accelerator`.
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

/// The run options `oml train` and `oml train-postprocessor` share, from their arguments.
pub(crate) fn train_options(
    args: Args,
    default_name: &str,
    log: Option<&RunLog>,
) -> Result<TrainOptions> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let name = args
        .config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| default_name.into());
    Ok(TrainOptions {
        device: args.device,
        config_name: name,
        config_text: Some(text),
        base_dir: PathBuf::from("."),
        run_dir: args.run_dir,
        resume: !args.no_resume,
        console: Console::new(),
        stop_after_epoch: args.stop_after_epoch,
        experiment_log: log.map(RunLog::experiment_log),
    })
}

/// The outcome of a training run, or `None` when it stopped after the epoch the user asked
/// for (`--stop-after-epoch`), which is reported here.
pub(crate) fn unless_stopped<T>(
    result: std::result::Result<T, TrainError>,
    stop_after_epoch: Option<usize>,
    console: &Console,
) -> Result<Option<T>> {
    match result {
        Err(TrainError::Interrupted { epoch, run_dir, .. }) if stop_after_epoch.is_some() => {
            console.line(format!(
                "stopped after epoch {epoch} as asked; run the same command again to continue"
            ));
            oml::train::progress::out(&format!("run folder: {run_dir}"));
            Ok(None)
        }
        other => Ok(Some(other?)),
    }
}

/// Runs `oml train`.
pub fn run(args: Args, log: Option<&RunLog>) -> Result<()> {
    let config: TrainConfig = load_config(&args.config)?;
    let opts = train_options(args, "train", log)?;
    let (console, stop_after_epoch) = (opts.console.clone(), opts.stop_after_epoch);
    let Some(out) = unless_stopped(train(&config, opts), stop_after_epoch, &console)? else {
        return Ok(());
    };
    let rows = comparison_rows(out.initial.as_ref(), &out.last);
    console.line("");
    console.line(table(&["metric", "before", "after"], &rows));
    if let Some((epoch, value)) = out.best {
        console.line(format!(
            "best {} = {value:.4} at epoch {epoch}",
            config.metric_for_checkpointing
        ));
    }
    if out.epochs_run > 0 {
        console.line(format!(
            "{} epoch(s) in {:.1} s ({:.2} s per epoch)",
            out.epochs_run,
            out.train_seconds,
            out.train_seconds / out.epochs_run as f64
        ));
    }
    console.line(format!(
        "checkpoints: {} (best), {} (last)",
        out.best_checkpoint.display(),
        out.last_checkpoint.display()
    ));
    oml::train::progress::out(&format!("run folder: {}", out.run_dir.display()));
    Ok(())
}
