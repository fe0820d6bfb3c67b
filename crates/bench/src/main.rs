//! `oml-bench`: benchmarks of oml-rs. Each measurement prints one JSON line on stdout:
//! `{"suite": ..., "params": {...}, "median_s": x, "runs": n}`. Side-by-side figures against
//! OML 4.0 come from running `shared/bench/*.py` on the same inputs in the same session.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// mimalloc keeps freed tensor buffers in the process: with glibc's defaults every training or
/// loss step paid page faults and zeroing for buffers returned to the kernel (`docs/mining.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod report;
mod suites;

#[derive(Parser, Debug)]
#[command(
    name = "oml-bench",
    version,
    about = "oml-rs benchmarks (JSON lines on stdout)"
)]
struct Cli {
    /// Backend: flex, ndarray, wgpu, cuda (default: BURN_DEVICE, else the default CPU backend).
    #[arg(long, global = true)]
    device: Option<String>,
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand, Debug)]
enum Suite {
    /// Raw tensor ops on the chosen backend (matmul, cdist, top-k): the backend comparison.
    Ops(suites::ops::Args),
    /// Retrieval metrics end to end (`oml eval` work) on generated or given data.
    Metrics(suites::metrics::Args),
    /// TripletLossWithMiner forward + backward on a P×K batch.
    Loss(suites::loss::Args),
    /// One sampler epoch over many items and labels.
    Sampler(suites::sampler::Args),
    /// Loading, decoding and transforming images into batches.
    Datasets(suites::datasets::Args),
    /// Extractor inference throughput.
    Models(suites::models::Args),
    /// Renders a file of this tool's JSON lines as a Markdown table (no device needed).
    Table {
        /// The JSON-lines file.
        path: std::path::PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Suite::Table { path } = &cli.suite {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        print!("{}", report::table(&text));
        return Ok(());
    }
    let device = oml::interfaces::device::select_device(cli.device.as_deref())?;
    match cli.suite {
        Suite::Ops(a) => suites::ops::run(a, &device),
        Suite::Metrics(a) => suites::metrics::run(a, &device),
        Suite::Loss(a) => suites::loss::run(a, &device),
        Suite::Sampler(a) => suites::sampler::run(a, &device),
        Suite::Datasets(a) => suites::datasets::run(a, &device),
        Suite::Models(a) => suites::models::run(a, &device),
        Suite::Table { .. } => Ok(()),
    }
}
