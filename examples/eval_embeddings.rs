//! Retrieval metrics of embeddings computed elsewhere: a `.npy` file with one row per row of an
//! OML-format dataset CSV (the `oml eval` job, from Rust).
//!
//! ```text
//! cargo run -p oml-examples --example eval_embeddings -- --npy emb.npy --csv df.csv
//! ```
//!
//! Without `--npy`/`--csv` it first writes a small pair of its own (clustered embeddings of 20
//! classes, two categories, a validation split with separate queries and gallery items).

use std::path::{Path, PathBuf};

use oml_datasets::dataframe::{ReadOptions, Split, read_dataframe};
use oml_datasets::npy::{read_npy, write_npy};
use oml_interfaces::BasicMetric;
use oml_metrics::{EmbeddingMetrics, MetricsConfig, QueryGalleryMeta};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = oml_examples::device()?;
    let demo = std::env::temp_dir().join(format!("oml-example-eval-{}", std::process::id()));
    let (npy, csv) = match (
        oml_examples::arg("npy", String::new())?,
        oml_examples::arg("csv", String::new())?,
    ) {
        (n, c) if !n.is_empty() && !c.is_empty() => (PathBuf::from(n), PathBuf::from(c)),
        _ => demo_files(&demo)?,
    };
    let result = evaluate_files(&npy, &csv, &device);
    std::fs::remove_dir_all(&demo).ok();
    result
}

fn evaluate_files(
    npy: &Path,
    csv: &Path,
    device: &burn::tensor::Device,
) -> Result<(), Box<dyn std::error::Error>> {
    // The CSV: labels, split, query/gallery flags, optional categories. Paths need not exist.
    let options = ReadOptions {
        require_query_labels_in_gallery: false,
        ..Default::default()
    };
    let df = read_dataframe(csv, &options)?;
    for warning in &df.warnings {
        eprintln!("warning: {warning}");
    }
    let embeddings = read_npy(npy)?;
    let [rows, dim] = embeddings.dims2(npy)?;
    if rows != df.rows.len() {
        return Err(format!(
            "{} has {rows} embeddings but {} has {} rows",
            npy.display(),
            csv.display(),
            df.rows.len()
        )
        .into());
    }

    // Only the validation rows are evaluated.
    let keep: Vec<usize> = (0..rows)
        .filter(|&i| df.rows[i].split == Split::Validation)
        .collect();
    let mut meta = QueryGalleryMeta::new(
        keep.iter().map(|&i| df.rows[i].label).collect(),
        keep.iter().map(|&i| df.rows[i].is_query).collect(),
        keep.iter().map(|&i| df.rows[i].is_gallery).collect(),
    );
    if df.columns.category {
        meta.categories = Some(
            keep.iter()
                .map(|&i| df.rows[i].category.clone().unwrap_or_default())
                .collect(),
        );
    }
    let host: Vec<f32> = keep
        .iter()
        .flat_map(|&i| embeddings.data[i * dim..(i + 1) * dim].iter().copied())
        .collect();

    // OML's EmbeddingMetrics: give it the rows (by position), then compute the report.
    let config = MetricsConfig::none()
        .with_cmc([1, 5])
        .with_precision([5])
        .with_map([5])
        .with_pcf([0.5])
        .with_fnmr_at_fmr([0.1]);
    let mut metrics = EmbeddingMetrics::new(meta, config, device)?;
    let positions: Vec<usize> = (0..keep.len()).collect();
    metrics.update_host(&host, dim, &positions)?;
    let report = metrics.compute()?;
    println!(
        "{} validation rows of {}, {dim}-d:",
        keep.len(),
        csv.display()
    );
    for (key, value) in report.flatten() {
        println!("  {key} = {value:.4}");
    }
    if let Some(worst) = metrics.worst_queries("cmc", "1", 3) {
        println!("worst queries by cmc@1 (positions among the queries): {worst:?}");
    }
    Ok(())
}

/// Writes `dir/df.csv` and `dir/emb.npy`: 20 classes of 12 items around their own centre in
/// 16-d, the first 10 classes `shoes`, the rest `bags`; 4 training rows per class, the rest
/// validation, of which the first 3 per class are queries and the others gallery items.
fn demo_files(dir: &Path) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let (classes, per_class, dim) = (20usize, 12usize, 16usize);
    let mut csv = String::from("label,path,split,is_query,is_gallery,category\n");
    let mut data = Vec::new();
    for c in 0..classes {
        let category = if c < 10 { "shoes" } else { "bags" };
        for k in 0..per_class {
            // A deterministic spread around the class centre.
            data.extend((0..dim).map(|d| {
                let centre = if d == c % dim { 3.0 } else { 0.0 } + (c / dim) as f32;
                let noise = (((c * 131 + k * 31 + d * 7) % 17) as f32 / 17.0 - 0.5) * 2.5;
                centre + noise
            }));
            let (split, q, g) = match k {
                0..4 => ("train", "", ""),
                4..7 => ("validation", "True", "False"),
                _ => ("validation", "False", "True"),
            };
            csv.push_str(&format!("{c},img/{c}_{k}.png,{split},{q},{g},{category}\n"));
        }
    }
    let (npy, csv_path) = (dir.join("emb.npy"), dir.join("df.csv"));
    write_npy(&npy, &[classes * per_class, dim], &data)?;
    std::fs::write(&csv_path, csv)?;
    println!("wrote {} and {}", npy.display(), csv_path.display());
    Ok((npy, csv_path))
}
