//! # oml-datasets
//!
//! Datasets in [OML](https://github.com/OML-Team/open-metric-learning)'s CSV format, the image
//! pipeline that feeds Burn, and visualisation of retrieval results.
//!
//! | module | what |
//! |---|---|
//! | [`dataframe`] | read and validate OML's dataframe CSV; every problem with its spreadsheet row, column and value; label remapping |
//! | [`images`] | image datasets (labeled, query/gallery, unlabeled, pairs) implementing the `oml-interfaces` traits; decoding, bbox crops, cache, parallel loading |
//! | [`transforms`] | resize, crop, pad, normalise, seeded augmentations; OML's named presets |
//! | [`batch`] | Burn `Batcher`s producing `[B, 3, H, W]` tensors with labels and indices |
//! | [`visualize`] | retrieval results as a PNG grid or an HTML page, as OML draws them |
//! | [`fashion_mnist`] | IDX → PNG + OML CSV with the unseen-class protocol |
//! | [`npy`] | `.npy` files for embeddings |
//!
//! # Example
//!
//! A dataframe with two images, validated (files checked under the root), loaded and batched:
//!
//! ```
//! use burn::data::dataloader::batcher::Batcher;
//! use burn::data::dataset::Dataset;
//! use oml_datasets::batch::ImageBatcher;
//! use oml_datasets::dataframe::{read_dataframe, ReadOptions, Split};
//! use oml_datasets::images::{ImageOptions, ImageQueryGalleryLabeledDataset};
//! use oml_datasets::transforms::Pipeline;
//! use oml_interfaces::QueryGalleryDataset;
//!
//! let root = tempfile::tempdir()?;
//! for (name, v) in [("a.png", 0u8), ("b.png", 255)] {
//!     image::GrayImage::from_pixel(8, 6, image::Luma([v])).save(root.path().join(name))?;
//! }
//! std::fs::write(
//!     root.path().join("df.csv"),
//!     "label,path,split,is_query,is_gallery\n3,a.png,validation,True,True\n3,b.png,validation,False,True\n",
//! )?;
//! let df = read_dataframe(root.path().join("df.csv"), &ReadOptions::with_root(root.path()))?;
//! let val = df.split(Split::Validation);
//! let options = ImageOptions::with_transforms(Pipeline::preset("norm_resize_torch", Some(4))?);
//! let ds = ImageQueryGalleryLabeledDataset::from_dataframe(&val, Some(root.path()), options)?;
//! assert_eq!(ds.query_ids(), vec![0]);
//!
//! let device = oml_interfaces::device::test_device();
//! let batch = ImageBatcher::default().batch(ds.get_many(vec![0, 1])?, &device);
//! assert_eq!(batch.images.dims(), [2, 3, 4, 4]);
//! assert_eq!(batch.labels, Some(vec![3, 3]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batch;
pub mod dataframe;
pub mod fashion_mnist;
pub mod images;
pub mod npy;
pub mod transforms;
pub mod visualize;
