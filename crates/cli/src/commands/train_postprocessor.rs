//! `oml train-postprocessor CONFIG`: trains a pairwise re-ranker (OML's
//! `postprocessor_training_pipeline`) on hard pairs of a frozen extractor's embeddings, validates
//! it with `PairwiseReranker`, and prints the run folder's path.

use anyhow::Result;
use oml::train::applog::RunLog;
use oml::train::config::load_config;
use oml::train::postprocessor::{PostprocessorConfig, train_postprocessor};
use oml::train::progress::table;
use oml::train::train::comparison_rows;

use super::train::{train_options, unless_stopped};

/// Arguments of `oml train-postprocessor`: the same as `oml train`'s.
pub use super::train::Args;

/// Runs `oml train-postprocessor`.
pub fn run(args: Args, log: Option<&RunLog>) -> Result<()> {
    let config: PostprocessorConfig = load_config(&args.config)?;
    let opts = train_options(args, "postprocessor", log)?;
    let (console, stop_after_epoch) = (opts.console.clone(), opts.stop_after_epoch);
    let Some(out) = unless_stopped(
        train_postprocessor(&config, opts),
        stop_after_epoch,
        &console,
    )?
    else {
        return Ok(());
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
    oml::train::progress::out(&format!("run folder: {}", out.run_dir.display()));
    Ok(())
}
