//! Fashion-MNIST in OML's format: IDX files (gzip or not) → PNG files + an OML dataframe CSV,
//! with the unseen-class protocol of OML's benchmarks: train on classes 0–4, validate on 5–9
//! with every validation image both query and gallery.
//!
//! Works with the 10,000-image test split shipped in `data/fashion-mnist/` and with the full set
//! that Debian's `dataset-fashion-mnist` installs (`/usr/share/datasets/fashion-mnist/`).

use crate::dataframe::{Dataframe, OptionalColumns, Row, Split};
use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The class names, by label.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum FashionMnistError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a valid IDX file of the expected kind.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Images and labels disagree, or nothing was found.
    #[error("{0}")]
    Invalid(String),
    /// A PNG could not be written.
    #[error("cannot write {path}: {message}")]
    Png {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// Grayscale images read from an IDX file, row-major, `n × rows × cols` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub n: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// The pixels.
    pub data: Vec<u8>,
}

impl IdxImages {
    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.rows * self.cols;
        &self.data[i * s..(i + 1) * s]
    }
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, FashionMnistError> {
    let io = |source| FashionMnistError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an unsigned-byte IDX file: returns its dimensions and data.
pub fn parse_idx(bytes: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (bad magic number)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX element type 0x{:02x} is not unsigned byte (0x08)",
            bytes[2]
        ));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err("truncated IDX header".into());
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("IDX dimensions overflow")?;
    let data = &bytes[header..];
    if data.len() != count {
        return Err(format!(
            "IDX dimensions {dims:?} need {count} bytes of data, found {}",
            data.len()
        ));
    }
    Ok((dims, data))
}

/// Reads an images IDX file (`idx3-ubyte`, gzip or not).
pub fn read_idx_images(path: &Path) -> Result<IdxImages, FashionMnistError> {
    let bytes = read_maybe_gz(path)?;
    let fmt = |message: String| FashionMnistError::Format {
        path: path.to_path_buf(),
        message,
    };
    let (dims, data) = parse_idx(&bytes).map_err(fmt)?;
    match dims[..] {
        [n, rows, cols] => Ok(IdxImages {
            n,
            rows,
            cols,
            data: data.to_vec(),
        }),
        _ => Err(fmt(format!(
            "expected 3 dimensions (images), found {dims:?}"
        ))),
    }
}

/// Reads a labels IDX file (`idx1-ubyte`, gzip or not).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, FashionMnistError> {
    let bytes = read_maybe_gz(path)?;
    let fmt = |message: String| FashionMnistError::Format {
        path: path.to_path_buf(),
        message,
    };
    let (dims, data) = parse_idx(&bytes).map_err(fmt)?;
    if dims.len() != 1 {
        return Err(fmt(format!(
            "expected 1 dimension (labels), found {dims:?}"
        )));
    }
    Ok(data.to_vec())
}

/// A pair of IDX files: one split of the data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxSource {
    /// Short name used in the output paths (`t10k`, `train`).
    pub name: String,
    /// Images file.
    pub images: PathBuf,
    /// Labels file.
    pub labels: PathBuf,
}

/// The IDX pairs in a folder: `t10k-*` and/or `train-*`, each `-images-idx3-ubyte` and
/// `-labels-idx1-ubyte`, gzipped or not.
pub fn sources_in(dir: &Path) -> Result<Vec<IdxSource>, FashionMnistError> {
    let find = |stem: &str| -> Option<PathBuf> {
        [format!("{stem}.gz"), stem.to_string()]
            .into_iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
    };
    let mut out = Vec::new();
    for name in ["train", "t10k"] {
        if let (Some(images), Some(labels)) = (
            find(&format!("{name}-images-idx3-ubyte")),
            find(&format!("{name}-labels-idx1-ubyte")),
        ) {
            out.push(IdxSource {
                name: name.into(),
                images,
                labels,
            });
        }
    }
    if out.is_empty() {
        return Err(FashionMnistError::Invalid(format!(
            "no Fashion-MNIST IDX files (t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz], or train-*) in {}",
            dir.display()
        )));
    }
    Ok(out)
}

/// How to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Classes used for training; all other classes are validation (query and gallery).
    pub train_classes: Vec<i64>,
    /// At most this many images per source (the first ones), for quick runs.
    pub limit: Option<usize>,
    /// Add a `category` column with the class name.
    pub with_categories: bool,
    /// Name of the CSV written in the output folder.
    pub csv_name: String,
}

impl Default for ConvertOptions {
    /// The unseen-class protocol: train classes 0–4, `df.csv`, no categories.
    fn default() -> Self {
        ConvertOptions {
            train_classes: (0..5).collect(),
            limit: None,
            with_categories: false,
            csv_name: "df.csv".into(),
        }
    }
}

/// What a conversion produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    /// The CSV written.
    pub csv_path: PathBuf,
    /// The dataframe (paths relative to the output folder, which is the dataset root).
    pub dataframe: Dataframe,
    /// Number of train rows.
    pub n_train: usize,
    /// Number of validation rows.
    pub n_validation: usize,
}

/// Converts IDX sources to `out_dir/images/<source>/<label>/<index>.png` (grayscale PNG) and
/// `out_dir/<csv_name>`. PNGs are encoded in parallel.
pub fn convert(
    sources: &[IdxSource],
    out_dir: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport, FashionMnistError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FashionMnistError::Io { path, source }
    };
    let mut rows = Vec::new();
    for src in sources {
        let images = read_idx_images(&src.images)?;
        let labels = read_idx_labels(&src.labels)?;
        if images.n != labels.len() {
            return Err(FashionMnistError::Invalid(format!(
                "{} has {} images but {} has {} labels",
                src.images.display(),
                images.n,
                src.labels.display(),
                labels.len()
            )));
        }
        let n = opts.limit.map_or(images.n, |l| l.min(images.n));
        for class in 0..10u8 {
            let dir = out_dir
                .join("images")
                .join(&src.name)
                .join(class.to_string());
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let rel: Vec<PathBuf> = (0..n)
            .map(|i| {
                PathBuf::from("images")
                    .join(&src.name)
                    .join(labels[i].to_string())
                    .join(format!("{i:05}.png"))
            })
            .collect();
        (0..n).into_par_iter().try_for_each(|i| {
            let path = out_dir.join(&rel[i]);
            image::save_buffer_with_format(
                &path,
                images.image(i),
                images.cols as u32,
                images.rows as u32,
                image::ExtendedColorType::L8,
                image::ImageFormat::Png,
            )
            .map_err(|e| FashionMnistError::Png {
                path: path.clone(),
                message: e.to_string(),
            })
        })?;
        for (i, path) in rel.into_iter().enumerate() {
            let label = i64::from(labels[i]);
            let train = opts.train_classes.contains(&label);
            rows.push(Row {
                row: 0,
                label,
                path,
                split: if train {
                    Split::Train
                } else {
                    Split::Validation
                },
                is_query: !train,
                is_gallery: !train,
                category: opts.with_categories.then(|| {
                    CLASS_NAMES
                        .get(labels[i] as usize)
                        .unwrap_or(&"unknown")
                        .to_string()
                }),
                sequence: None,
                bbox: None,
            });
        }
    }
    let dataframe = Dataframe {
        columns: OptionalColumns {
            category: opts.with_categories,
            sequence: false,
            bbox: false,
            split: true,
        },
        rows,
        warnings: Vec::new(),
    };
    let csv_path = out_dir.join(&opts.csv_name);
    dataframe
        .write_csv(&csv_path)
        .map_err(|e| FashionMnistError::Invalid(e.to_string()))?;
    let n_train = dataframe
        .rows
        .iter()
        .filter(|r| r.split == Split::Train)
        .count();
    Ok(ConvertReport {
        csv_path,
        n_validation: dataframe.len() - n_train,
        n_train,
        dataframe,
    })
}

/// [`sources_in`] then [`convert`].
pub fn convert_dir(
    idx_dir: &Path,
    out_dir: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport, FashionMnistError> {
    convert(&sources_in(idx_dir)?, out_dir, opts)
}

/// Writes images and labels as gzipped IDX files (for tests and small fixtures).
pub fn write_idx_gz(
    images: &IdxImages,
    labels: &[u8],
    images_path: &Path,
    labels_path: &Path,
) -> Result<(), FashionMnistError> {
    use std::io::Write;
    let write = |path: &Path, header: Vec<u8>, data: &[u8]| -> Result<(), FashionMnistError> {
        let io = |source| FashionMnistError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::create(path).map_err(io)?;
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        gz.write_all(&header).map_err(io)?;
        gz.write_all(data).map_err(io)?;
        gz.finish().map_err(io)?;
        Ok(())
    };
    let mut h = vec![0, 0, 8, 3];
    for d in [images.n, images.rows, images.cols] {
        h.extend((d as u32).to_be_bytes());
    }
    write(images_path, h, &images.data)?;
    let mut h = vec![0, 0, 8, 1];
    h.extend((labels.len() as u32).to_be_bytes());
    write(labels_path, h, labels)
}
