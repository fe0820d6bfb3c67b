//! Runs `oml train` from the library: `cargo run -p oml-train --example train_config -- CONFIG [DEVICE]`.

use oml_train::config::{TrainConfig, load_config};
use oml_train::progress::{Console, table};
use oml_train::train::{TrainOptions, comparison_rows, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = std::path::PathBuf::from(args.next().ok_or("usage: train_config CONFIG [DEVICE]")?);
    let device = args.next();
    let config: TrainConfig = load_config(&path)?;
    let console = Console::new();
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opts = TrainOptions {
        device,
        config_name: name,
        config_text: Some(std::fs::read_to_string(&path)?),
        console: console.clone(),
        ..TrainOptions::default()
    };
    let t0 = std::time::Instant::now();
    let out = train(&config, opts)?;
    console.line(table(
        &["metric", "before", "after"],
        &comparison_rows(out.initial.as_ref(), &out.last),
    ));
    console.line(format!(
        "best {:?}; {} epochs in {:.1} s; total {:.1} s",
        out.best,
        out.epochs_run,
        out.train_seconds,
        t0.elapsed().as_secs_f64()
    ));
    println!("run folder: {}", out.run_dir.display());
    Ok(())
}
