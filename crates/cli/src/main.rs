//! `oml`: train, validate, predict and evaluate embedding models from the command line.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// mimalloc keeps freed tensor buffers in the process: with glibc's defaults every training or
/// loss step paid page faults and zeroing for buffers returned to the kernel (`docs/mining.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;

#[derive(Parser, Debug)]
#[command(
    name = "oml",
    version,
    about = "OpenMetricLearning for Rust: train and evaluate embedding models for retrieval"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The CPU fast path on the CPU backends (host GEMM, fused inference, host kNN selection):
    /// `on` (the default) or `off` (Burn's ops only). Wins over `OML_CPU_FAST_PATH`.
    #[arg(long, global = true, value_name = "on|off", value_parser = on_off)]
    cpu_fast_path: Option<bool>,
}

fn on_off(value: &str) -> Result<bool, String> {
    oml::interfaces::cpu::parse_switch(value).ok_or(format!("expected on or off, got {value:?}"))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Retrieval metrics of given embeddings on an OML-format dataset CSV.
    Eval(commands::eval::Args),
    /// Train an extractor from a YAML config; writes a run folder and prints its path.
    Train(commands::train::Args),
    /// Metrics of an extractor on a dataset's validation split.
    Validate(commands::validate::Args),
    /// Embeddings of every image under a folder.
    Predict(commands::predict::Args),
    /// Train a pairwise re-ranker on a frozen extractor's results; prints the run folder's path.
    TrainPostprocessor(commands::train_postprocessor::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Warnings on stderr from here on; each training run's experiment.log in its folder.
    let log = oml::train::applog::install();
    // A bad OML_CPU_FAST_PATH is an error even when the flag decides.
    let from_env = oml::interfaces::cpu::policy_from_env()?;
    if let Some(on) = cli.cpu_fast_path.or(from_env) {
        oml::interfaces::cpu::set_enabled(on)?;
    }
    let result = match cli.command {
        Command::Eval(a) => commands::eval::run(a),
        Command::Train(a) => commands::train::run(a, log.as_ref()),
        Command::Validate(a) => commands::validate::run(a),
        Command::Predict(a) => commands::predict::run(a),
        Command::TrainPostprocessor(a) => commands::train_postprocessor::run(a, log.as_ref()),
    };
    // The command's files are written by now; a stdout that failed under it is reported here:
    // a closed pipe (`| head`) ends quietly with 141, as a tool killed by SIGPIPE would.
    match oml::train::progress::stdout_failure() {
        Some(std::io::ErrorKind::BrokenPipe) if result.is_ok() => std::process::exit(141),
        Some(kind) if result.is_ok() => Err(anyhow::anyhow!(
            "writing to stdout: {}",
            std::io::Error::from(kind)
        )),
        _ => result,
    }
}
