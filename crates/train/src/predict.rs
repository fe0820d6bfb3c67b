//! `oml predict`: embeddings of every image under a folder (OML's
//! `extractor_prediction_pipeline`): `embeddings.npy` (`[N, D]` float32, one row per image),
//! `paths.csv` (row → path) and OML's `predictions.json` (`{path: [floats]}`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oml_datasets::images::{ImageBase, ImageQueryGalleryDataset};
use oml_interfaces::ExtraData;

use crate::checkpoint::write_atomic;
use crate::config::{PredictConfig, resolve};
use crate::data::extractor_transforms;
use crate::error::TrainError;
use crate::pipeline::{Inference, InferenceKeys, check_output_dir, image_options};

/// Image extensions `oml predict` reads (as OML's `IMAGE_EXTENSIONS`, case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// How to run `oml predict` beyond the config.
pub type PredictOptions = crate::config::RunOptions;

/// What `oml predict` wrote.
#[derive(Debug, Clone)]
pub struct PredictOutcome {
    /// The images, in row order.
    pub paths: Vec<PathBuf>,
    /// Embedding size.
    pub dim: usize,
    /// `embeddings.npy`.
    pub embeddings_path: PathBuf,
    /// `paths.csv`.
    pub paths_csv: PathBuf,
    /// `predictions.json`.
    pub predictions_json: PathBuf,
    /// Seconds spent embedding.
    pub seconds: f64,
}

/// Every image under `dir` (recursively, following symlinks), sorted by path. A symlink back to
/// a folder being walked is a loop: its images are already listed, so it is not entered.
pub fn find_images(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.loop_ancestor().is_some() => continue,
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                return Err(TrainError::io(&path, e));
            }
        };
        let is_image = entry
            .path()
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| IMAGE_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()));
        if entry.file_type().is_file() && is_image {
            out.push(entry.into_path());
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a float32 `.npy` of shape `[rows, dim]`, atomically.
pub fn write_npy_f32(path: &Path, rows: usize, dim: usize, data: &[f32]) -> Result<(), TrainError> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes).map_err(|e| TrainError::io(path, e))
}

/// Runs `oml predict`.
pub fn predict(config: &PredictConfig, opts: PredictOptions) -> Result<PredictOutcome, TrainError> {
    let console = &opts.console;
    let inference = Inference::check(
        InferenceKeys {
            precision: config.precision,
            accelerator: config.accelerator.as_deref(),
            devices: config.devices,
            cpu_fast_path: config.cpu_fast_path,
            extractor: &config.extractor,
            batch_size: ("bs", config.bs),
            seed: 0,
        },
        &opts,
    )?;
    let data_dir = resolve(&opts.base_dir, &config.data_dir);
    let save_dir = resolve(&opts.base_dir, &config.save_dir);
    check_output_dir(&save_dir, "save_dir")?;
    let paths = find_images(&data_dir)?;
    if paths.is_empty() {
        return Err(TrainError::Data(format!(
            "no image ({}) under {}",
            IMAGE_EXTENSIONS.join(", "),
            data_dir.display()
        )));
    }
    let t = extractor_transforms(
        config.transforms_predict.as_ref(),
        "transforms_predict",
        &inference.extractor,
    )?;
    let base = ImageBase::new(
        paths.clone(),
        None,
        None,
        ExtraData::default(),
        image_options(t, 0, 0),
    )
    .map_err(|e| TrainError::Data(e.to_string()))?;
    let ds = ImageQueryGalleryDataset::all_vs_all(Arc::new(base));
    let (emb, seconds) = inference.embed(&ds, console)?;

    std::fs::create_dir_all(&save_dir).map_err(|e| TrainError::io(&save_dir, e))?;
    let embeddings_path = save_dir.join("embeddings.npy");
    write_npy_f32(&embeddings_path, emb.rows, emb.dim, &emb.data)?;
    let paths_csv = save_dir.join("paths.csv");
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| TrainError::io(&paths_csv, e);
    w.write_record(["row", "path"]).map_err(csv_err)?;
    for (i, p) in paths.iter().enumerate() {
        w.write_record([i.to_string(), p.display().to_string()])
            .map_err(csv_err)?;
    }
    let csv_bytes = w.into_inner().map_err(|e| TrainError::io(&paths_csv, e))?;
    write_atomic(&paths_csv, &csv_bytes).map_err(|e| TrainError::io(&paths_csv, e))?;
    let predictions_json = save_dir.join("predictions.json");
    let map: serde_json::Map<String, serde_json::Value> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.display().to_string(), serde_json::json!(emb.row(i))))
        .collect();
    let json = serde_json::to_vec(&map).map_err(|e| TrainError::io(&predictions_json, e))?;
    write_atomic(&predictions_json, &json).map_err(|e| TrainError::io(&predictions_json, e))?;
    Ok(PredictOutcome {
        paths,
        dim: emb.dim,
        embeddings_path,
        paths_csv,
        predictions_json,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_data_little_endian() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.npy");
        write_npy_f32(&p, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[..8], b"\x93NUMPY\x01\x00");
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
        assert!(
            header.contains("'shape': (2, 3)") && header.ends_with('\n'),
            "{header}"
        );
        let last = f32::from_le_bytes(b[b.len() - 4..].try_into().unwrap());
        assert_eq!(last, 6.5);
        assert_eq!(b.len(), 10 + hlen + 24);
    }

    #[test]
    fn finds_images_recursively_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        for f in ["b/c/z.PNG", "a.jpg", "b/x.txt", "b/y.jpeg"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let found: Vec<String> = find_images(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(found, vec!["a.jpg", "b/c/z.PNG", "b/y.jpeg"]);
    }

    /// Symlinks back to an ancestor (one loop, and two nested) are not followed forever: each
    /// image is listed once (before: 41 copies for one loop, a hang for two).
    #[cfg(unix)]
    #[test]
    fn symlink_loops_list_each_image_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("s/t")).unwrap();
        for f in ["a.png", "s/b.png", "s/t/c.png"] {
            std::fs::write(root.join(f), b"").unwrap();
        }
        std::os::unix::fs::symlink(root, root.join("s/up")).unwrap();
        std::os::unix::fs::symlink(root.join("s"), root.join("s/t/back")).unwrap();
        let found: Vec<String> = find_images(root)
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(found, vec!["a.png", "s/b.png", "s/t/c.png"]);
    }
}
