//! Writes a demo run (local files + TensorBoard) with a metric plot into a directory.
//!
//! ```text
//! cargo run -p oml-logging --example demo_run -- /tmp/oml-demo-run
//! tensorboard --logdir /tmp/oml-demo-run/tensorboard
//! ```

use oml_logging::{
    FanoutLogger, LinePlot, LocalLogger, PipelineLogger, RunStatus, TensorBoardLogger,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "oml-demo-run".into());
    let dir = std::path::Path::new(&dir);
    let mut logger = FanoutLogger::new()
        .with("local", LocalLogger::new(dir)?)
        .with(
            "tensorboard",
            TensorBoardLogger::new(dir.join("tensorboard"))?,
        );
    let config =
        serde_json::json!({"max_epochs": 20, "optimizer": {"name": "adam", "args": {"lr": 1e-5}}});
    logger.log_pipeline_info(&config, &["demo".into()], None)?;
    let (mut cmc, mut loss) = (Vec::new(), Vec::new());
    for epoch in 1..=20u64 {
        let e = epoch as f64;
        let values = [
            ("epoch/valid/OVERALL/cmc/1", 0.9 - 0.6 * (-e / 5.0).exp()),
            ("epoch/train/loss", 1.0 / e),
        ];
        logger.log_scalars(epoch, &values)?;
        cmc.push((e, values[0].1));
        loss.push((e, values[1].1));
    }
    let plot = LinePlot::new("Metrics over epochs")
        .x_label("epoch")
        .y_label("value")
        .series("valid cmc@1", cmc)
        .series("train loss", loss)
        .render()?;
    logger.log_figure("curves/metrics", &plot, 20)?;
    logger.finish(RunStatus::Finished)?;
    println!("wrote {}", dir.display());
    Ok(())
}
