//! `oml`: train, validate, predict and evaluate embedding models from the command line.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser, Debug)]
#[command(name = "oml", version, about = "OpenMetricLearning for Rust: train and evaluate embedding models for retrieval")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Retrieval metrics of given embeddings on an OML-format dataset CSV.
    Eval(commands::eval::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Eval(a) => commands::eval::run(a),
    }
}
