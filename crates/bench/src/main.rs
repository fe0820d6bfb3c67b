//! `oml-bench`: benchmarks of oml-rs. Each measurement prints one JSON line on stdout:
//! `{"suite": ..., "params": {...}, "median_s": x, "runs": n}`. Side-by-side figures against
//! OML 4.0 come from running `crates/bench/python/oml/*.py` on the same inputs in the same session.

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
    /// A 2-D convolution's forward and the two halves of its backward, at given shapes.
    Conv(suites::conv::Args),
    /// One training step of an extractor (forward, triplet loss, backward, Adam) on a P×K batch.
    TrainStep(suites::train_step::Args),
    /// The parts of one ViT block in training (LayerNorm, linear layers, attention, GELU).
    VitBlock(suites::vit_block::Args),
    /// Renders a file of this tool's JSON lines as a Markdown table (no device needed).
    Table {
        /// The JSON-lines file.
        path: std::path::PathBuf,
    },
}

/// The Markdown table of a file of this tool's JSON lines; a file without a measurement is an
/// error naming it (it printed an empty table).
fn render_table(path: &std::path::Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let table = report::table(&text);
    // the header and its rule only: nothing in the file was a measurement
    if table.lines().count() <= 2 {
        anyhow::bail!(
            "{}: no measurement line (this tool's JSON lines, with suite, median_s and params)",
            path.display()
        );
    }
    Ok(table)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Warnings on stderr (the bench runs no Learner, so no experiment log is switched on).
    let _log = oml::train::applog::install();
    if let Suite::Table { path } = &cli.suite {
        print!("{}", render_table(path)?);
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
        Suite::TrainStep(a) => suites::train_step::run(a, &device),
        Suite::Conv(a) => suites::conv::run(a, &device),
        Suite::VitBlock(a) => suites::vit_block::run(a, &device),
        Suite::Table { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts of zero are refused by the parser, naming the option (they panicked or timed
    /// nothing before); the defaults still parse.
    #[test]
    fn zero_counts_are_errors_naming_the_option() {
        for args in [
            &["oml-bench", "sampler", "--n-categories", "0"][..],
            &["oml-bench", "models", "--size", "0"],
            &["oml-bench", "models", "--batch", "0"],
            &["oml-bench", "ops", "--n", "0"],
            &["oml-bench", "metrics", "--block-size", "0"],
            &["oml-bench", "loss", "--p", "0"],
            &["oml-bench", "datasets", "--batch-size", "0"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(
                e.contains(args[2]) && e.contains("at least 1"),
                "{args:?}: {e}"
            );
        }
        for suite in ["sampler", "models", "ops", "metrics", "loss", "datasets"] {
            Cli::try_parse_from(["oml-bench", suite]).unwrap();
        }
    }

    /// `table` on a file without a measurement line is an error naming the file.
    #[test]
    fn table_without_measurements_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "not json\n{\"other\": 1}\n").unwrap();
        let e = render_table(&path).unwrap_err().to_string();
        assert!(
            e.contains("notes.txt") && e.contains("no measurement"),
            "{e}"
        );
        std::fs::write(
            &path,
            "{\"suite\":\"ops\",\"median_s\":0.5,\"min_s\":0.4,\"runs\":3,\"params\":{\"n\":4}}\n",
        )
        .unwrap();
        assert!(render_table(&path).unwrap().contains("| ops | n=4 |"));
    }

    /// `ops --k` above `--n` is an error naming both (it panicked).
    #[test]
    fn ops_k_above_n_is_an_error() {
        let Suite::Ops(args) = Cli::try_parse_from(["oml-bench", "ops", "--k", "100", "--n", "4"])
            .unwrap()
            .suite
        else {
            unreachable!("the ops suite was asked for")
        };
        let device = oml::interfaces::device::select_device(None).unwrap();
        let e = suites::ops::run(args, &device).unwrap_err().to_string();
        assert!(e.contains("--k 100") && e.contains("--n"), "{e}");
    }
}
