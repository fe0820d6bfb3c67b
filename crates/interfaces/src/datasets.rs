//! The dataset family of OML 4.0 (`IBaseDataset` … `IVisualizableDataset`) on top of Burn's
//! [`burn::data::dataset::Dataset`] trait.
//!
//! Items are whatever the implementation yields; the traits add what OML's pipelines ask of a
//! dataset besides its items: labels, categories, sequences, the query/gallery split and pairs.
//! Every item carries its dataset index (OML's `idx`) so metrics can accumulate out of order.

use burn::data::dataset::Dataset;
use std::collections::BTreeMap;

/// Why a dataset could not be read or an item not produced.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The data is malformed at a given place.
    #[error("{file}: row {row}, column `{column}`, value {value:?}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based row as a spreadsheet shows it (the header is row 1).
        row: usize,
        /// Column name.
        column: String,
        /// The offending value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// An index is outside the dataset.
    #[error("index {index} is outside 0..{len}")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// Dataset length.
        len: usize,
    },
    /// Anything else, with a message.
    #[error("{0}")]
    Other(String),
}

/// An RGB colour.
pub type Rgb = [u8; 3];

/// An 8-bit RGB image, row-major `height × width × 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A blank image of one colour.
    pub fn filled(width: u32, height: u32, color: Rgb) -> Self {
        let data = color
            .iter()
            .copied()
            .cycle()
            .take((width * height * 3) as usize)
            .collect();
        RgbImage {
            width,
            height,
            data,
        }
    }

    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> Rgb {
        let i = ((y * self.width + x) * 3) as usize;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// OML's `extra_data`: per-item columns besides the input (categories and sequence ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraData {
    /// Category of each item (integers are kept as their text).
    pub categories: Option<Vec<String>>,
    /// Sequence id of each item: gallery items with a query's sequence id are never retrieved
    /// for it.
    pub sequences: Option<Vec<String>>,
}

impl ExtraData {
    /// No extra columns.
    pub const NONE: ExtraData = ExtraData {
        categories: None,
        sequences: None,
    };
}

/// OML's `IBaseDataset`: a Burn dataset with per-item extra data.
pub trait BaseDataset<I>: Dataset<I> {
    /// The extra columns, each of length `len()`. The default has none
    /// ([`ExtraData::NONE`]).
    fn extra_data(&self) -> &ExtraData {
        &ExtraData::NONE
    }
}

/// OML's `ILabeledDataset`.
pub trait LabeledDataset<I>: BaseDataset<I> {
    /// Label of each item, length `len()`.
    fn labels(&self) -> &[i64];

    /// `label → category`, when the data has categories (the last row wins, as in OML).
    fn label_to_category(&self) -> Option<BTreeMap<i64, String>> {
        let cats = self.extra_data().categories.as_ref()?;
        Some(
            self.labels()
                .iter()
                .copied()
                .zip(cats.iter().cloned())
                .collect(),
        )
    }
}

/// OML's `IQueryGalleryDataset`. Query and gallery may overlap.
pub trait QueryGalleryDataset<I>: BaseDataset<I> {
    /// Whether each item is a query.
    fn is_query(&self) -> &[bool];
    /// Whether each item is a gallery item.
    fn is_gallery(&self) -> &[bool];

    /// Dataset indices of the queries, ascending.
    fn query_ids(&self) -> Vec<usize> {
        self.is_query()
            .iter()
            .enumerate()
            .filter(|(_, q)| **q)
            .map(|(i, _)| i)
            .collect()
    }

    /// Dataset indices of the gallery items, ascending.
    fn gallery_ids(&self) -> Vec<usize> {
        self.is_gallery()
            .iter()
            .enumerate()
            .filter(|(_, g)| **g)
            .map(|(i, _)| i)
            .collect()
    }
}

/// OML's `IQueryGalleryLabeledDataset`: both of the above (implemented for every type that is).
pub trait QueryGalleryLabeledDataset<I>: QueryGalleryDataset<I> + LabeledDataset<I> {}
impl<I, T: QueryGalleryDataset<I> + LabeledDataset<I> + ?Sized> QueryGalleryLabeledDataset<I>
    for T
{
}

/// OML's `IPairDataset`: items are pairs of items of a base dataset.
pub trait PairDataset<I>: Dataset<I> {
    /// The `(i, j)` base-dataset indices of each pair.
    fn pair_ids(&self) -> &[(usize, usize)];
}

/// OML's `IVisualizableDataset`.
pub trait VisualizableDataset {
    /// The item as an RGB image with a frame of `color` (and its bounding box, if any).
    fn visualize(&self, index: usize, color: Rgb) -> Result<RgbImage, DatasetError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a line with labels, query/gallery flags and categories: small but complete.
    struct Points {
        x: Vec<f32>,
        labels: Vec<i64>,
        is_query: Vec<bool>,
        is_gallery: Vec<bool>,
        extra: ExtraData,
    }
    impl Dataset<(usize, f32)> for Points {
        fn get(&self, index: usize) -> Result<(usize, f32), burn::data::dataset::DatasetError> {
            self.x.get(index).map(|x| (index, *x)).ok_or_else(|| {
                burn::data::dataset::DatasetError::new(DatasetError::IndexOutOfRange {
                    index,
                    len: self.x.len(),
                })
            })
        }
        fn len(&self) -> usize {
            self.x.len()
        }
    }
    impl BaseDataset<(usize, f32)> for Points {
        fn extra_data(&self) -> &ExtraData {
            &self.extra
        }
    }
    impl LabeledDataset<(usize, f32)> for Points {
        fn labels(&self) -> &[i64] {
            &self.labels
        }
    }
    impl QueryGalleryDataset<(usize, f32)> for Points {
        fn is_query(&self) -> &[bool] {
            &self.is_query
        }
        fn is_gallery(&self) -> &[bool] {
            &self.is_gallery
        }
    }
    impl VisualizableDataset for Points {
        fn visualize(&self, index: usize, color: Rgb) -> Result<RgbImage, DatasetError> {
            let len = self.x.len();
            let x = *self
                .x
                .get(index)
                .ok_or(DatasetError::IndexOutOfRange { index, len })?;
            let mut img = RgbImage::filled(4, 4, [255, 255, 255]);
            let v = (x.clamp(0.0, 1.0) * 255.0) as u8;
            for y in 0..4u32 {
                for xx in 0..4u32 {
                    let i = ((y * 4 + xx) * 3) as usize;
                    let px = if y == 0 || y == 3 || xx == 0 || xx == 3 {
                        color
                    } else {
                        [v; 3]
                    };
                    img.data[i..i + 3].copy_from_slice(&px);
                }
            }
            Ok(img)
        }
    }

    fn needs_qg_labeled<D: QueryGalleryLabeledDataset<(usize, f32)>>(
        d: &D,
    ) -> (Vec<usize>, Vec<usize>) {
        (d.query_ids(), d.gallery_ids())
    }

    #[test]
    fn query_gallery_labeled_dataset_through_the_traits() {
        let d = Points {
            x: vec![0.0, 0.5, 1.0],
            labels: vec![1, 1, 2],
            is_query: vec![true, false, true],
            is_gallery: vec![true, true, false],
            extra: ExtraData {
                categories: Some(vec!["a".into(), "a".into(), "b".into()]),
                sequences: None,
            },
        };
        assert_eq!(needs_qg_labeled(&d), (vec![0, 2], vec![0, 1]));
        assert_eq!(d.label_to_category().unwrap()[&2], "b");
        assert_eq!(d.get(1).unwrap(), (1, 0.5));
        assert!(d.get(3).is_err());
        let img = d.visualize(1, [0, 0, 255]).unwrap();
        assert_eq!(img.pixel(0, 0), [0, 0, 255]);
        assert_eq!(img.pixel(1, 1), [127, 127, 127]);
    }
}
