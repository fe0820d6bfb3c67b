//! The `sampler` suite: building the samplers and drawing one epoch over many items and labels
//! (target: 1,000,000 items and 100,000 labels in under 1 s per epoch, release build), and one
//! epoch of the P×K data loader producing device batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use burn::data::dataloader::DataLoader;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::prelude::*;
use oml::sampling::{
    BalanceSampler, BatchSampler, CategoryBalanceSampler, DistinctCategoryBalanceSampler,
    PkDataLoader,
};

use crate::report::measure;

/// Arguments of the `sampler` suite.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dataset items.
    #[arg(long, default_value_t = 1_000_000, value_parser = super::positive)]
    pub n_items: usize,
    /// Unique labels (each gets at least 2 items; the rest are spread pseudo-randomly).
    #[arg(long, default_value_t = 100_000, value_parser = super::positive)]
    pub n_labels: usize,
    /// Categories (label l belongs to category l % n_categories).
    #[arg(long, default_value_t = 1_000, value_parser = super::positive)]
    pub n_categories: usize,
    /// Labels per batch (P); the category samplers use P / categories_per_batch per category.
    #[arg(long, default_value_t = 8, value_parser = super::positive)]
    pub p: usize,
    /// Instances per label (K).
    #[arg(long, default_value_t = 4, value_parser = super::positive)]
    pub k: usize,
    /// Categories per batch for the category samplers.
    #[arg(long, default_value_t = 2, value_parser = super::positive)]
    pub categories_per_batch: usize,
    /// Which samplers: all, balance, category_balance, distinct_category_balance.
    #[arg(long, default_value = "all")]
    pub sampler: String,
    /// Worker counts for the loader measurement (comma-separated; empty to skip it).
    #[arg(long, default_value = "0,2")]
    pub loader_workers: String,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5, value_parser = super::positive)]
    pub repeats: usize,
}

/// A deterministic scatter of items over labels: every label gets items `l` and `l + L`,
/// the remaining items go to a hashed label (uneven class sizes, as in real data).
fn make_labels(n_items: usize, n_labels: usize) -> Vec<i64> {
    (0..n_items)
        .map(|i| {
            if i < 2 * n_labels {
                (i % n_labels) as i64
            } else {
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
                (h % n_labels as u64) as i64
            }
        })
        .collect()
}

/// Labels of a batch as an Int tensor on the device (what a training batch carries).
struct LabelBatcher;

impl Batcher<(usize, i64), Tensor<1, Int>> for LabelBatcher {
    fn batch(&self, items: Vec<(usize, i64)>, device: &Device) -> Tensor<1, Int> {
        let n = items.len();
        let labels: Vec<i64> = items.into_iter().map(|(_, l)| l).collect();
        Tensor::from_data(TensorData::new(labels, [n]), device)
    }
}

/// Runs the suite.
pub fn run(args: Args, device: &Device) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.n_items >= 2 * args.n_labels,
        "--n-items must be at least 2 * --n-labels (every label needs 2 samples)"
    );
    anyhow::ensure!(
        args.categories_per_batch >= 1 && args.p >= 2 * args.categories_per_batch,
        "--p must be at least 2 * --categories-per-batch"
    );
    let wants = |name: &str| args.sampler == "all" || args.sampler == name;
    let labels = make_labels(args.n_items, args.n_labels);
    let l2c: BTreeMap<i64, usize> = (0..args.n_labels as i64)
        .map(|l| (l, l as usize % args.n_categories))
        .collect();
    let nl_per_cat = args.p / args.categories_per_batch;
    let backend = format!("{device:?}");
    let params = |op: &str, sampler: &str, extra: serde_json::Value| {
        let mut p = serde_json::json!({
            "op": op, "sampler": sampler, "n_items": args.n_items, "n_labels": args.n_labels,
            "p": args.p, "k": args.k, "device": backend,
        });
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        p
    };
    let epoch_of = |name: &str, s: &dyn BatchSampler, extra: serde_json::Value| {
        let mut epoch = 0;
        let mut extra = extra;
        if let Some(e) = extra.as_object_mut() {
            e.insert("num_batches".into(), s.num_batches().into());
            e.insert("batch_size".into(), s.batch_size().into());
        }
        measure(
            "sampler",
            params("epoch", name, extra),
            1,
            args.repeats,
            || {
                let batches = s.epoch_batches(epoch);
                epoch += 1;
                std::hint::black_box(batches);
            },
        );
    };

    if wants("balance") {
        let mut built = None;
        measure(
            "sampler",
            params("build", "balance", serde_json::json!({})),
            0,
            args.repeats,
            || {
                built = Some(BalanceSampler::new(&labels, args.p, args.k));
            },
        );
        let s = built.context("no repeats")??;
        epoch_of("balance", &s, serde_json::json!({}));
    }
    let cat_extra = serde_json::json!({
        "n_categories": args.n_categories, "categories_per_batch": args.categories_per_batch,
        "labels_per_category": nl_per_cat,
    });
    if wants("category_balance") {
        let mut built = None;
        measure(
            "sampler",
            params("build", "category_balance", cat_extra.clone()),
            0,
            args.repeats,
            || {
                built = Some(CategoryBalanceSampler::new(
                    &labels,
                    &l2c,
                    args.categories_per_batch,
                    nl_per_cat,
                    args.k,
                ));
            },
        );
        let s = built.context("no repeats")??;
        epoch_of("category_balance", &s, cat_extra.clone());
    }
    if wants("distinct_category_balance") {
        // One pass over the labels per epoch.
        let epoch_size = args
            .n_labels
            .div_ceil(args.categories_per_batch * nl_per_cat);
        let s = DistinctCategoryBalanceSampler::new(
            &labels,
            &l2c,
            args.categories_per_batch,
            nl_per_cat,
            args.k,
            epoch_size,
        )?;
        epoch_of("distinct_category_balance", &s, cat_extra.clone());
    }

    if wants("balance") && !args.loader_workers.trim().is_empty() {
        let sampler: Arc<dyn BatchSampler> =
            Arc::new(BalanceSampler::new(&labels, args.p, args.k)?);
        let items: Vec<(usize, i64)> = labels.iter().copied().enumerate().collect();
        let dataset = Arc::new(InMemDataset::new(items));
        for w in args.loader_workers.split(',') {
            let workers: usize = w
                .trim()
                .parse()
                .context("--loader-workers: a comma-separated list of counts")?;
            let loader = PkDataLoader::new(
                sampler.clone(),
                dataset.clone(),
                Arc::new(LabelBatcher),
                device.clone(),
            )
            .with_num_workers(workers);
            let extra =
                serde_json::json!({"workers": workers, "num_batches": sampler.num_batches()});
            let mut failure: Option<String> = None;
            measure(
                "sampler",
                params("loader_epoch", "balance", extra),
                1,
                args.repeats,
                || {
                    let mut last = None;
                    for batch in loader.iter() {
                        match batch {
                            Ok(b) => last = Some(b),
                            Err(e) => {
                                failure.get_or_insert(e.to_string());
                            }
                        }
                    }
                    // Read the last batch back so device work is counted.
                    if let Some(t) = last {
                        std::hint::black_box(t.into_data());
                    }
                },
            );
            if let Some(e) = failure {
                anyhow::bail!("loader with {workers} worker(s): {e}");
            }
        }
    }
    Ok(())
}
