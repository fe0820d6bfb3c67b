//! The `loss` suite (filled in by its issue).

use burn::prelude::*;

/// Arguments of the `loss` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Timed repetitions.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// Runs the suite.
pub fn run(_args: Args, _device: &Device) -> anyhow::Result<()> {
    anyhow::bail!("the loss suite is not built yet")
}
