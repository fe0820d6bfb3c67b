//! Image datasets on OML's dataframe: decoding (JPEG, PNG; grayscale and RGBA become RGB),
//! bounding-box crops before the transforms, an optional in-memory cache, parallel decoding, and
//! the dataset interfaces of `oml-interfaces` (labeled, query/gallery, pairs, visualisable).
//!
//! Unreadable or corrupt images: with [`ImageOptions::strict`] (what every `oml` pipeline uses)
//! the item is an error that names the file and its CSV row; otherwise a blank image of the
//! pipeline's output size stands in, and the failure is counted and listed by
//! [`ImageBase::failures`].

use crate::dataframe::{Dataframe, LabelMap, ReadOptions, Row, Split, read_dataframe};
use crate::transforms::{ImageTensor, PAD_COLOR, Pipeline};
use burn::data::dataset::{Dataset, DatasetError as BurnDatasetError};
use oml_interfaces::datasets::{
    BaseDataset, DatasetError, ExtraData, LabeledDataset, PairDataset, QueryGalleryDataset, Rgb,
    RgbImage as OmlRgbImage, VisualizableDataset,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read image {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The bytes are not a decodable JPEG/PNG.
    #[error("cannot decode image {path}: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The bounding box lies outside the image.
    #[error("bounding box {bbox:?} of {path} lies outside the {width}x{height} image")]
    BBoxOutside {
        /// The file.
        path: PathBuf,
        /// `[x1, y1, x2, y2]`.
        bbox: [u32; 4],
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
}

/// Decodes a JPEG or PNG file (format sniffed from the content) to 8-bit RGB: grayscale is
/// replicated, alpha dropped, 16-bit scaled down.
pub fn decode_image(path: &Path) -> Result<image::RgbImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|e| ImageError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    decode_bytes(&bytes).map_err(|message| ImageError::Decode {
        path: path.to_path_buf(),
        message,
    })
}

/// Decodes encoded image bytes to 8-bit RGB.
pub fn decode_bytes(bytes: &[u8]) -> Result<image::RgbImage, String> {
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    Ok(img.to_rgb8())
}

/// OML's crop `img[y1:y2, x1:x2]`: coordinates beyond the image are clipped (as numpy does);
/// an empty result is an error.
pub fn crop_bbox(
    img: &image::RgbImage,
    bbox: [u32; 4],
    path: &Path,
) -> Result<image::RgbImage, ImageError> {
    let (w, h) = img.dimensions();
    let [x1, y1, x2, y2] = bbox;
    let (x2c, y2c) = (x2.min(w), y2.min(h));
    if x1 >= x2c || y1 >= y2c {
        return Err(ImageError::BBoxOutside {
            path: path.to_path_buf(),
            bbox,
            width: w,
            height: h,
        });
    }
    Ok(image::imageops::crop_imm(img, x1, y1, x2c - x1, y2c - y1).to_image())
}

/// How images are loaded.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// The transforms applied after decoding and cropping.
    pub transforms: Arc<Pipeline>,
    /// How many decoded (cropped, untransformed) images to keep in memory; 0 disables the cache.
    pub cache_size: usize,
    /// Stop at the first unreadable image (an error naming it) instead of substituting a blank
    /// image and counting it.
    pub strict: bool,
    /// Seed of the random transforms; each item's generator is seeded from
    /// `(seed, epoch, index)`.
    pub seed: u64,
}

impl Default for ImageOptions {
    /// OML's default: ImageNet normalisation without resizing, no cache, not strict, seed 0.
    fn default() -> Self {
        ImageOptions {
            // invariant: `norm_albu` is a built-in preset name (every preset is built in `presets_have_their_sizes`)
            transforms: Arc::new(Pipeline::preset("norm_albu", None).expect("built-in preset")),
            cache_size: 0,
            strict: false,
            seed: 0,
        }
    }
}

impl ImageOptions {
    /// Defaults with the given transforms.
    pub fn with_transforms(transforms: Pipeline) -> Self {
        ImageOptions {
            transforms: Arc::new(transforms),
            ..Default::default()
        }
    }
}

/// One item: the transformed image and what OML puts next to it in the batch dict.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// Index in the dataset (OML's `idx`).
    pub index: usize,
    /// Label (`None` for unlabeled datasets).
    pub label: Option<i64>,
    /// Category, when the data has them.
    pub category: Option<String>,
    /// Sequence id, when the data has them.
    pub sequence: Option<String>,
    /// The image, `[3, H, W]`.
    pub image: ImageTensor,
}

/// An image that failed to load in non-strict mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// Dataset index.
    pub index: usize,
    /// Spreadsheet row of the source CSV (0 when not from a CSV).
    pub row: usize,
    /// The error message (it names the file).
    pub message: String,
}

/// OML's `ImageBaseDataset`: images with optional boxes and extra data, no labels.
#[derive(Debug)]
pub struct ImageBase {
    paths: Vec<PathBuf>,
    rows: Vec<usize>,
    bboxes: Vec<Option<[u32; 4]>>,
    extra: ExtraData,
    options: ImageOptions,
    cache: RwLock<HashMap<usize, Arc<image::RgbImage>>>,
    epoch: AtomicU64,
    failures: Mutex<BTreeMap<usize, ImageFailure>>,
}

fn other(msg: String) -> DatasetError {
    DatasetError::Other(msg)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl ImageBase {
    /// Images at `paths` (joined to `dataset_root` when given), with optional per-item boxes
    /// `[x1, y1, x2, y2]` and extra data, each of the same length as `paths`.
    pub fn new(
        paths: Vec<PathBuf>,
        dataset_root: Option<&Path>,
        bboxes: Option<Vec<Option<[u32; 4]>>>,
        extra: ExtraData,
        options: ImageOptions,
    ) -> Result<Self, DatasetError> {
        let n = paths.len();
        let bboxes = bboxes.unwrap_or_else(|| vec![None; n]);
        let check = |what: &str, len: Option<usize>| match len {
            Some(l) if l != n => Err(other(format!("{what} has {l} entries for {n} images"))),
            _ => Ok(()),
        };
        check("bboxes", Some(bboxes.len()))?;
        check("categories", extra.categories.as_ref().map(Vec::len))?;
        check("sequences", extra.sequences.as_ref().map(Vec::len))?;
        let paths = match dataset_root {
            Some(root) => paths.into_iter().map(|p| root.join(p)).collect(),
            None => paths,
        };
        Ok(ImageBase {
            paths,
            rows: vec![0; n],
            bboxes,
            extra,
            options,
            cache: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
        })
    }

    /// The images of a dataframe's rows (paths, boxes, categories, sequences).
    pub fn from_rows(
        rows: &[Row],
        dataset_root: Option<&Path>,
        has: crate::dataframe::OptionalColumns,
        options: ImageOptions,
    ) -> Result<Self, DatasetError> {
        let extra = ExtraData {
            categories: has.category.then(|| {
                rows.iter()
                    .map(|r| r.category.clone().unwrap_or_default())
                    .collect()
            }),
            sequences: has.sequence.then(|| {
                rows.iter()
                    .map(|r| r.sequence.clone().unwrap_or_default())
                    .collect()
            }),
        };
        let mut base = ImageBase::new(
            rows.iter().map(|r| r.path.clone()).collect(),
            dataset_root,
            Some(rows.iter().map(|r| r.bbox).collect()),
            extra,
            options,
        )?;
        base.rows = rows.iter().map(|r| r.row).collect();
        Ok(base)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The full path of image `index`.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.paths.get(index).map(PathBuf::as_path)
    }

    /// The bounding box of image `index`.
    pub fn bbox(&self, index: usize) -> Option<[u32; 4]> {
        self.bboxes.get(index).copied().flatten()
    }

    /// The options.
    pub fn options(&self) -> &ImageOptions {
        &self.options
    }

    /// Sets the epoch that seeds random transforms (so each epoch augments differently, and
    /// reproducibly).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The images that failed to load so far (non-strict mode), by index.
    pub fn failures(&self) -> Vec<ImageFailure> {
        self.failures
            .lock()
            .map(|f| f.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of distinct images that failed to load so far.
    pub fn n_failures(&self) -> usize {
        self.failures.lock().map(|f| f.len()).unwrap_or(0)
    }

    fn check_index(&self, index: usize) -> Result<(), DatasetError> {
        if index < self.len() {
            Ok(())
        } else {
            Err(DatasetError::IndexOutOfRange {
                index,
                len: self.len(),
            })
        }
    }

    /// The decoded, cropped image `index` (before transforms), from the cache when there.
    pub fn load_rgb(&self, index: usize) -> Result<Arc<image::RgbImage>, ImageError> {
        if let Some(img) = self.cache.read().ok().and_then(|c| c.get(&index).cloned()) {
            return Ok(img);
        }
        let path = &self.paths[index];
        let mut img = decode_image(path)?;
        if let Some(bb) = self.bboxes[index] {
            img = crop_bbox(&img, bb, path)?;
        }
        let img = Arc::new(img);
        if self.options.cache_size > 0
            && let Ok(mut c) = self.cache.write()
            && c.len() < self.options.cache_size
        {
            c.insert(index, img.clone());
        }
        Ok(img)
    }

    /// The images that cannot be read (decoded, or cropped to their box), checked in parallel,
    /// in index order; each message names the file and its CSV row.
    pub fn broken(&self) -> Vec<ImageFailure> {
        let mut failures: Vec<ImageFailure> = (0..self.len())
            .into_par_iter()
            .filter_map(|index| {
                let e = self.load_rgb(index).err()?;
                let row = self.rows[index];
                let message = if row > 0 {
                    format!("row {row}: {e}")
                } else {
                    e.to_string()
                };
                Some(ImageFailure {
                    index,
                    row,
                    message,
                })
            })
            .collect();
        failures.sort_by_key(|f| f.index);
        failures
    }

    /// Decodes every image into the cache in parallel (up to the cache size); returns the
    /// number of failures.
    pub fn preload(&self) -> usize {
        let n = self.len().min(self.options.cache_size);
        (0..n)
            .into_par_iter()
            .filter(|&i| self.load_rgb(i).is_err())
            .count()
    }

    fn rng(&self, index: usize) -> ChaCha8Rng {
        let e = self.epoch.load(Ordering::Relaxed);
        ChaCha8Rng::seed_from_u64(splitmix(
            splitmix(self.options.seed ^ splitmix(e)) ^ index as u64,
        ))
    }

    /// Image `index`, decoded, cropped and transformed. Failures follow the strictness option.
    pub fn tensor(&self, index: usize) -> Result<ImageTensor, DatasetError> {
        self.check_index(index)?;
        let img = match self.load_rgb(index) {
            Ok(img) => (*img).clone(),
            Err(e) if self.options.strict => {
                let row = self.rows[index];
                return Err(DatasetError::Io {
                    path: self.paths[index].display().to_string(),
                    message: if row > 0 {
                        format!("row {row}: {e}")
                    } else {
                        e.to_string()
                    },
                });
            }
            Err(e) => {
                if let Ok(mut f) = self.failures.lock() {
                    let row = self.rows[index];
                    let message = if row > 0 {
                        format!("row {row}: {e}")
                    } else {
                        e.to_string()
                    };
                    f.insert(
                        index,
                        ImageFailure {
                            index,
                            row,
                            message,
                        },
                    );
                }
                let (w, h) = self.options.transforms.output_size().unwrap_or((1, 1));
                image::RgbImage::from_pixel(w, h, image::Rgb([0, 0, 0]))
            }
        };
        Ok(self.options.transforms.apply(img, &mut self.rng(index)))
    }

    /// The full image `index` (no crop, no transforms) with its bounding box drawn in `color`,
    /// padded to a square with white, inside a frame of `color`. Line thickness follows OML:
    /// `max(3, 0.05·(H+W)/2)` of the original image.
    pub fn visualize_image(&self, index: usize, color: Rgb) -> Result<OmlRgbImage, DatasetError> {
        self.check_index(index)?;
        let path = &self.paths[index];
        let mut img = decode_image(path).map_err(|e| DatasetError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let (w, h) = img.dimensions();
        let t = 3u32.max((0.05 * (w + h) as f64 / 2.0) as u32);
        if let Some([x1, y1, x2, y2]) = self.bboxes[index] {
            draw_rect(&mut img, x1, y1, x2.min(w), y2.min(h), t, color);
        }
        let s = w.max(h);
        let mut sq = image::RgbImage::from_pixel(s, s, image::Rgb(PAD_COLOR));
        image::imageops::replace(&mut sq, &img, ((s - w) / 2) as i64, ((s - h) / 2) as i64);
        let frame = (t / 2).max(1);
        draw_rect(&mut sq, 0, 0, s, s, frame, color);
        Ok(OmlRgbImage {
            width: s,
            height: s,
            data: sq.into_raw(),
        })
    }

    fn item(&self, index: usize, label: Option<i64>) -> Result<ImageItem, DatasetError> {
        let image = self.tensor(index)?;
        Ok(ImageItem {
            index,
            label,
            category: self.extra.categories.as_ref().map(|c| c[index].clone()),
            sequence: self.extra.sequences.as_ref().map(|s| s[index].clone()),
            image,
        })
    }

    /// Items `indices`, decoded and transformed in parallel (rayon), in order. They form a
    /// batch, so they must have one size after the transforms ([`Self::check_one_size`]).
    pub fn items_parallel(
        &self,
        indices: &[usize],
        labels: Option<&[i64]>,
    ) -> Result<Vec<ImageItem>, DatasetError> {
        let items: Vec<ImageItem> = indices
            .par_iter()
            .map(|&i| self.item(i, labels.map(|l| l[i])))
            .collect::<Result<_, _>>()?;
        self.check_one_size(items.iter().map(|it| (it.index, &it.image)))?;
        Ok(items)
    }

    /// Images of one batch must have one size: stacking images of different sizes would pad
    /// the smaller ones and change their embeddings (OML's collate refuses them too). The error
    /// names the first image whose size differs from the batch's first, and the remedy.
    pub fn check_one_size<'a>(
        &self,
        mut images: impl Iterator<Item = (usize, &'a ImageTensor)>,
    ) -> Result<(), DatasetError> {
        let Some((first, f)) = images.next() else {
            return Ok(());
        };
        let Some((odd, o)) = images.find(|(_, t)| (t.width, t.height) != (f.width, f.height))
        else {
            return Ok(());
        };
        let row = self.rows[odd];
        Err(DatasetError::Other(format!(
            "{}{}: the image is {}×{} after the transforms, but {} in the same batch is {}×{}: \
             the images of a batch must have one size; add a resize to the transforms \
             (e.g. `{{name: norm_resize_torch, args: {{im_size: 224}}}}`)",
            self.paths[odd].display(),
            if row > 0 {
                format!(" (row {row})")
            } else {
                String::new()
            },
            o.width,
            o.height,
            self.paths[first].display(),
            f.width,
            f.height
        )))
    }
}

/// Draws the outline of `[x1, x2) × [y1, y2)`, `t` pixels thick, inside the box.
pub(crate) fn draw_rect(
    img: &mut image::RgbImage,
    x1: u32,
    y1: u32,
    x2: u32,
    y2: u32,
    t: u32,
    color: Rgb,
) {
    let (w, h) = img.dimensions();
    let (x2, y2) = (x2.min(w), y2.min(h));
    if x1 >= x2 || y1 >= y2 {
        return;
    }
    for y in y1..y2 {
        for x in x1..x2 {
            let edge = x < x1 + t || x + t >= x2 || y < y1 + t || y + t >= y2;
            if edge {
                img.put_pixel(x, y, image::Rgb(color));
            }
        }
    }
}

fn burn_err(e: DatasetError) -> BurnDatasetError {
    BurnDatasetError::new(e)
}

macro_rules! impl_common {
    ($t:ty) => {
        impl Dataset<ImageItem> for $t {
            fn get(&self, index: usize) -> Result<ImageItem, BurnDatasetError> {
                let labels: Option<&[i64]> = self.labels_opt();
                self.base
                    .item(index, labels.and_then(|l| l.get(index).copied()))
                    .map_err(burn_err)
            }
            fn get_many(&self, indexes: Vec<usize>) -> Result<Vec<ImageItem>, BurnDatasetError> {
                let labels: Option<&[i64]> = self.labels_opt();
                if let Some(&index) = indexes.iter().find(|&&i| i >= self.base.len()) {
                    return Err(burn_err(DatasetError::IndexOutOfRange {
                        index,
                        len: self.base.len(),
                    }));
                }
                self.base.items_parallel(&indexes, labels).map_err(burn_err)
            }
            fn len(&self) -> usize {
                self.base.len()
            }
        }
        impl BaseDataset<ImageItem> for $t {
            fn extra_data(&self) -> &ExtraData {
                &self.base.extra
            }
        }
        impl VisualizableDataset for $t {
            fn visualize(&self, index: usize, color: Rgb) -> Result<OmlRgbImage, DatasetError> {
                self.base.visualize_image(index, color)
            }
        }
        impl $t {
            /// The underlying images (paths, cache, failures, epoch).
            pub fn base(&self) -> &Arc<ImageBase> {
                &self.base
            }
        }
    };
}

fn check_len(what: &str, len: usize, n: usize) -> Result<(), DatasetError> {
    if len == n {
        Ok(())
    } else {
        Err(other(format!("{what} has {len} entries for {n} images")))
    }
}

/// OML's `ImageLabeledDataset`: training images with labels.
#[derive(Debug)]
pub struct ImageLabeledDataset {
    base: Arc<ImageBase>,
    labels: Vec<i64>,
}

impl ImageLabeledDataset {
    /// Images with one label each.
    pub fn new(base: Arc<ImageBase>, labels: Vec<i64>) -> Result<Self, DatasetError> {
        check_len("labels", labels.len(), base.len())?;
        Ok(ImageLabeledDataset { base, labels })
    }

    /// Every row of a dataframe (usually its train split).
    pub fn from_dataframe(
        df: &Dataframe,
        dataset_root: Option<&Path>,
        options: ImageOptions,
    ) -> Result<Self, DatasetError> {
        let base = ImageBase::from_rows(&df.rows, dataset_root, df.columns, options)?;
        Self::new(Arc::new(base), df.labels())
    }

    fn labels_opt(&self) -> Option<&[i64]> {
        Some(&self.labels)
    }
}
impl_common!(ImageLabeledDataset);
impl LabeledDataset<ImageItem> for ImageLabeledDataset {
    fn labels(&self) -> &[i64] {
        &self.labels
    }
}

/// OML's `ImageQueryGalleryLabeledDataset`: validation images with labels and query/gallery
/// flags.
#[derive(Debug)]
pub struct ImageQueryGalleryLabeledDataset {
    base: Arc<ImageBase>,
    labels: Vec<i64>,
    is_query: Vec<bool>,
    is_gallery: Vec<bool>,
}

impl ImageQueryGalleryLabeledDataset {
    /// Images with labels and flags.
    pub fn new(
        base: Arc<ImageBase>,
        labels: Vec<i64>,
        is_query: Vec<bool>,
        is_gallery: Vec<bool>,
    ) -> Result<Self, DatasetError> {
        check_len("labels", labels.len(), base.len())?;
        check_len("is_query", is_query.len(), base.len())?;
        check_len("is_gallery", is_gallery.len(), base.len())?;
        Ok(ImageQueryGalleryLabeledDataset {
            base,
            labels,
            is_query,
            is_gallery,
        })
    }

    /// Every row of a dataframe (usually its validation split).
    pub fn from_dataframe(
        df: &Dataframe,
        dataset_root: Option<&Path>,
        options: ImageOptions,
    ) -> Result<Self, DatasetError> {
        let base = ImageBase::from_rows(&df.rows, dataset_root, df.columns, options)?;
        Self::new(
            Arc::new(base),
            df.labels(),
            df.rows.iter().map(|r| r.is_query).collect(),
            df.rows.iter().map(|r| r.is_gallery).collect(),
        )
    }

    fn labels_opt(&self) -> Option<&[i64]> {
        Some(&self.labels)
    }
}
impl_common!(ImageQueryGalleryLabeledDataset);
impl LabeledDataset<ImageItem> for ImageQueryGalleryLabeledDataset {
    fn labels(&self) -> &[i64] {
        &self.labels
    }
}
impl QueryGalleryDataset<ImageItem> for ImageQueryGalleryLabeledDataset {
    fn is_query(&self) -> &[bool] {
        &self.is_query
    }
    fn is_gallery(&self) -> &[bool] {
        &self.is_gallery
    }
}

/// OML's `ImageQueryGalleryDataset`: images with query/gallery flags and no labels
/// (prediction).
#[derive(Debug)]
pub struct ImageQueryGalleryDataset {
    base: Arc<ImageBase>,
    is_query: Vec<bool>,
    is_gallery: Vec<bool>,
}

impl ImageQueryGalleryDataset {
    /// Images with flags.
    pub fn new(
        base: Arc<ImageBase>,
        is_query: Vec<bool>,
        is_gallery: Vec<bool>,
    ) -> Result<Self, DatasetError> {
        check_len("is_query", is_query.len(), base.len())?;
        check_len("is_gallery", is_gallery.len(), base.len())?;
        Ok(ImageQueryGalleryDataset {
            base,
            is_query,
            is_gallery,
        })
    }

    /// Every row of a dataframe; labels are ignored.
    pub fn from_dataframe(
        df: &Dataframe,
        dataset_root: Option<&Path>,
        options: ImageOptions,
    ) -> Result<Self, DatasetError> {
        let base = ImageBase::from_rows(&df.rows, dataset_root, df.columns, options)?;
        Self::new(
            Arc::new(base),
            df.rows.iter().map(|r| r.is_query).collect(),
            df.rows.iter().map(|r| r.is_gallery).collect(),
        )
    }

    /// Every image is both a query and a gallery item ("1 vs rest").
    pub fn all_vs_all(base: Arc<ImageBase>) -> Self {
        let n = base.len();
        ImageQueryGalleryDataset {
            base,
            is_query: vec![true; n],
            is_gallery: vec![true; n],
        }
    }

    fn labels_opt(&self) -> Option<&[i64]> {
        None
    }
}
impl_common!(ImageQueryGalleryDataset);
impl QueryGalleryDataset<ImageItem> for ImageQueryGalleryDataset {
    fn is_query(&self) -> &[bool] {
        &self.is_query
    }
    fn is_gallery(&self) -> &[bool] {
        &self.is_gallery
    }
}

/// A pair of images (OML's `PairDataset` item: `input_tensors_1`, `input_tensors_2`, `idx`).
#[derive(Debug, Clone, PartialEq)]
pub struct PairItem {
    /// Index of the pair.
    pub index: usize,
    /// Base-dataset indices `(i, j)`.
    pub ids: (usize, usize),
    /// Image `i`.
    pub first: ImageTensor,
    /// Image `j`.
    pub second: ImageTensor,
}

/// OML's `PairDataset`: pairs of images of a base dataset, for pairwise re-rankers.
#[derive(Debug)]
pub struct ImagePairDataset {
    base: Arc<ImageBase>,
    pairs: Vec<(usize, usize)>,
}

impl ImagePairDataset {
    /// Pairs `(i, j)` of base images; every index must be inside the base.
    pub fn new(base: Arc<ImageBase>, pairs: Vec<(usize, usize)>) -> Result<Self, DatasetError> {
        if let Some(&(i, j)) = pairs
            .iter()
            .find(|(i, j)| *i >= base.len() || *j >= base.len())
        {
            return Err(DatasetError::IndexOutOfRange {
                index: i.max(j),
                len: base.len(),
            });
        }
        Ok(ImagePairDataset { base, pairs })
    }

    fn pair(&self, index: usize) -> Result<PairItem, DatasetError> {
        let &(i, j) = self.pairs.get(index).ok_or(DatasetError::IndexOutOfRange {
            index,
            len: self.pairs.len(),
        })?;
        Ok(PairItem {
            index,
            ids: (i, j),
            first: self.base.tensor(i)?,
            second: self.base.tensor(j)?,
        })
    }
}

impl Dataset<PairItem> for ImagePairDataset {
    fn get(&self, index: usize) -> Result<PairItem, BurnDatasetError> {
        self.pair(index).map_err(burn_err)
    }
    fn get_many(&self, indexes: Vec<usize>) -> Result<Vec<PairItem>, BurnDatasetError> {
        let pairs: Vec<PairItem> = indexes
            .par_iter()
            .map(|&i| self.pair(i))
            .collect::<Result<_, _>>()
            .map_err(burn_err)?;
        let sides = pairs
            .iter()
            .flat_map(|p| [(p.ids.0, &p.first), (p.ids.1, &p.second)]);
        self.base.check_one_size(sides).map_err(burn_err)?;
        Ok(pairs)
    }
    fn len(&self) -> usize {
        self.pairs.len()
    }
}

impl PairDataset<PairItem> for ImagePairDataset {
    fn pair_ids(&self) -> &[(usize, usize)] {
        &self.pairs
    }
}

/// What [`retrieval_image_datasets`] returns.
#[derive(Debug)]
pub struct RetrievalDatasets {
    /// Train split, labels remapped to `0..N_train−1`.
    pub train: ImageLabeledDataset,
    /// Validation split (labels remapped with the same map).
    pub validation: ImageQueryGalleryLabeledDataset,
    /// The label remapping (new → original via `inverse`).
    pub label_map: LabelMap,
    /// The validated dataframe before remapping (warnings included).
    pub dataframe: Dataframe,
}

/// OML's `get_retrieval_images_datasets`: reads and validates `dataset_root/dataframe_name`,
/// remaps labels (train first), and builds the train and validation datasets. Files must exist.
pub fn retrieval_image_datasets(
    dataset_root: &Path,
    dataframe_name: &str,
    train: ImageOptions,
    validation: ImageOptions,
    read: ReadOptions,
) -> Result<RetrievalDatasets, DatasetError> {
    let read = ReadOptions {
        dataset_root: Some(dataset_root.to_path_buf()),
        ..read
    };
    let df = read_dataframe(dataset_root.join(dataframe_name), &read)?;
    split_datasets(df, dataset_root, train, validation)
}

/// [`retrieval_image_datasets`] without the rows whose image cannot be read (decoded, or
/// cropped to its box), which are returned (each naming its file and CSV row): the explicit
/// opt-in of a pipeline's `skip_broken_images`, instead of an error on the first one.
pub fn retrieval_image_datasets_without_broken(
    dataset_root: &Path,
    dataframe_name: &str,
    train: ImageOptions,
    validation: ImageOptions,
    read: ReadOptions,
) -> Result<(RetrievalDatasets, Vec<ImageFailure>), DatasetError> {
    let read = ReadOptions {
        dataset_root: Some(dataset_root.to_path_buf()),
        ..read
    };
    let mut df = read_dataframe(dataset_root.join(dataframe_name), &read)?;
    let probe_options = ImageOptions {
        cache_size: 0,
        ..validation.clone()
    };
    let probe = ImageBase::from_rows(&df.rows, Some(dataset_root), df.columns, probe_options)?;
    let broken = probe.broken();
    let mut dropped = broken.iter().map(|f| f.index).peekable();
    let mut i = 0;
    df.rows.retain(|_| {
        let keep = dropped.next_if_eq(&i).is_none();
        i += 1;
        keep
    });
    Ok((split_datasets(df, dataset_root, train, validation)?, broken))
}

/// The train and validation datasets of a dataframe, labels remapped.
fn split_datasets(
    df: Dataframe,
    dataset_root: &Path,
    train: ImageOptions,
    validation: ImageOptions,
) -> Result<RetrievalDatasets, DatasetError> {
    let (remapped, label_map) = df.remap_labels();
    Ok(RetrievalDatasets {
        train: ImageLabeledDataset::from_dataframe(
            &remapped.split(Split::Train),
            Some(dataset_root),
            train,
        )?,
        validation: ImageQueryGalleryLabeledDataset::from_dataframe(
            &remapped.split(Split::Validation),
            Some(dataset_root),
            validation,
        )?,
        label_map,
        dataframe: df,
    })
}
