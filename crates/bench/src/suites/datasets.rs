//! The `datasets` suite: Fashion-MNIST IDX → PNG + CSV conversion, then loading, decoding and
//! transforming the 10,000 28×28 PNGs of the shipped test split into `[B, 3, H, W]` batches on
//! the device (parallel decoding with rayon), without and with the in-memory cache.

use crate::report::measure;
use anyhow::Context;
use burn::prelude::*;
use oml::datasets::batch::sequential_batches;
use oml::datasets::fashion_mnist::{self, ConvertOptions};
use oml::datasets::images::{ImageOptions, ImageQueryGalleryDataset};
use oml::datasets::transforms::Pipeline;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of the `datasets` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Timed repetitions.
    #[arg(long, default_value_t = 5, value_parser = super::positive)]
    pub repeats: usize,
    /// Folder with the Fashion-MNIST IDX files (default: the repository's data/fashion-mnist).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use at most this many images.
    #[arg(long, default_value_t = 10_000)]
    pub limit: usize,
    /// Batch size.
    #[arg(long, default_value_t = 256, value_parser = super::positive)]
    pub batch_size: usize,
    /// Transform presets to measure (comma-separated names of `Pipeline::preset`).
    #[arg(
        long,
        default_value = "norm_albu,norm_resize_torch,augs_light",
        value_delimiter = ','
    )]
    pub presets: Vec<String>,
    /// Image size for the presets that resize.
    #[arg(long, default_value_t = 28, value_parser = super::positive_u32)]
    pub im_size: u32,
}

/// Runs the suite.
pub fn run(args: Args, device: &Device) -> anyhow::Result<()> {
    let data = args.data.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist")
    });
    let out = std::env::temp_dir().join(format!("oml-bench-datasets-{}", std::process::id()));
    let result = run_in(&args, device, &data, &out);
    let _ = std::fs::remove_dir_all(&out);
    result
}

fn run_in(
    args: &Args,
    device: &Device,
    data: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let sources = fashion_mnist::sources_in(data)?;
    let t10k: Vec<_> = sources.into_iter().filter(|s| s.name == "t10k").collect();
    anyhow::ensure!(!t10k.is_empty(), "no t10k IDX files in {}", data.display());
    // Every image a query and a gallery item: the dataset holds all of them.
    let opts = ConvertOptions {
        train_classes: vec![],
        limit: Some(args.limit),
        ..Default::default()
    };
    let mut report = None;
    measure(
        "datasets",
        serde_json::json!({"stage": "idx_to_png_csv", "n": args.limit}),
        0,
        1,
        || {
            report = Some(fashion_mnist::convert(&t10k, out, &opts));
        },
    );
    let report = report.context("conversion did not run")??;
    let n = report.dataframe.len();

    for preset in &args.presets {
        let pipeline = Arc::new(Pipeline::preset(preset, Some(args.im_size))?);
        for cache in [false, true] {
            let options = ImageOptions {
                transforms: pipeline.clone(),
                cache_size: if cache { n } else { 0 },
                ..Default::default()
            };
            let ds =
                ImageQueryGalleryDataset::from_dataframe(&report.dataframe, Some(out), options)?;
            if cache {
                ds.base().preload();
            }
            let mut failed = None;
            let mut shape = [0usize; 4];
            let params = serde_json::json!({
                "stage": "load_decode_transform_batch",
                "n": n,
                "batch_size": args.batch_size,
                "preset": preset,
                "im_size": args.im_size,
                "cache": cache,
                "device": format!("{device:?}"),
            });
            measure("datasets", params, 1, args.repeats, || {
                for b in sequential_batches(&ds, args.batch_size, device) {
                    match b {
                        Ok(b) => {
                            shape = b.images.dims();
                            // Reading one value back makes the upload count.
                            let _ = b
                                .images
                                .slice([0..1, 0..1, 0..1, 0..1])
                                .into_scalar::<f32>();
                        }
                        Err(e) => failed = Some(e.to_string()),
                    }
                }
            });
            if let Some(e) = failed {
                anyhow::bail!("loading failed: {e}");
            }
            anyhow::ensure!(
                ds.base().n_failures() == 0,
                "{} images failed to load",
                ds.base().n_failures()
            );
            eprintln!("preset {preset}, cache {cache}: last batch {shape:?}");
        }
    }
    Ok(())
}
