//! Batching items into Burn tensors: [`ImageBatcher`] implements Burn's
//! [`Batcher`], producing `[B, 3, H, W]` images with
//! the items' labels and dataset indices.

use crate::images::{ImageItem, PairItem};
use crate::transforms::ImageTensor;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError as BurnDatasetError};
use burn::prelude::*;

/// A batch of images.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// `[B, 3, H, W]`.
    pub images: Tensor<4>,
    /// Labels, when every item has one.
    pub labels: Option<Vec<i64>>,
    /// Dataset index of each item (OML's `idx`).
    pub indices: Vec<usize>,
    /// Categories, when the items have them.
    pub categories: Option<Vec<String>>,
    /// Sequence ids, when the items have them.
    pub sequences: Option<Vec<String>>,
}

impl ImageBatch {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The labels as an `Int` tensor `[B]` on the images' device.
    pub fn labels_tensor(&self) -> Option<Tensor<1, Int>> {
        let l = self.labels.as_ref()?;
        Some(Tensor::from_data(
            TensorData::new(l.clone(), [l.len()]),
            &self.images.device(),
        ))
    }
}

/// Stacks host images into `[B, 3, H, W]`. The image datasets' `get_many` returns images of
/// one size (an error names an image of another); images of different sizes put together by
/// hand are padded at the bottom and right with `pad` up to the largest.
pub fn stack_images(images: &[&ImageTensor], pad: f32, device: &Device) -> Tensor<4> {
    let h = images.iter().map(|t| t.height).max().unwrap_or(0);
    let w = images.iter().map(|t| t.width).max().unwrap_or(0);
    let mut data = Vec::with_capacity(images.len() * 3 * h * w);
    for t in images {
        if t.height == h && t.width == w {
            data.extend_from_slice(&t.data);
            continue;
        }
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    data.push(if y < t.height && x < t.width {
                        t.at(c, x, y)
                    } else {
                        pad
                    });
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [images.len(), 3, h, w]), device)
}

/// Burn batcher for [`ImageItem`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageBatcher {
    /// Value padding smaller images (0 is the mean colour after normalisation).
    pub pad: f32,
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let images = stack_images(
            &items.iter().map(|i| &i.image).collect::<Vec<_>>(),
            self.pad,
            device,
        );
        ImageBatch {
            images,
            labels: items.iter().map(|i| i.label).collect(),
            indices: items.iter().map(|i| i.index).collect(),
            categories: items.iter().map(|i| i.category.clone()).collect(),
            sequences: items.iter().map(|i| i.sequence.clone()).collect(),
        }
    }
}

/// A batch of image pairs.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// First images, `[B, 3, H, W]`.
    pub first: Tensor<4>,
    /// Second images, `[B, 3, H, W]`.
    pub second: Tensor<4>,
    /// Pair indices.
    pub indices: Vec<usize>,
    /// Base-dataset ids of each pair.
    pub ids: Vec<(usize, usize)>,
}

/// Burn batcher for [`PairItem`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct PairBatcher {
    /// Padding value, as in [`ImageBatcher`].
    pub pad: f32,
}

impl Batcher<PairItem, PairBatch> for PairBatcher {
    fn batch(&self, items: Vec<PairItem>, device: &Device) -> PairBatch {
        let first: Vec<_> = items.iter().map(|i| &i.first).collect();
        let second: Vec<_> = items.iter().map(|i| &i.second).collect();
        PairBatch {
            first: stack_images(&first, self.pad, device),
            second: stack_images(&second, self.pad, device),
            indices: items.iter().map(|i| i.index).collect(),
            ids: items.iter().map(|i| i.ids).collect(),
        }
    }
}

/// Batches of `batch_size` consecutive items (the last may be smaller), each loaded with the
/// dataset's `get_many` (parallel for the image datasets): the inference order.
pub fn sequential_batches<'a, D>(
    dataset: &'a D,
    batch_size: usize,
    device: &'a Device,
) -> impl Iterator<Item = Result<ImageBatch, BurnDatasetError>> + 'a
where
    D: Dataset<ImageItem> + ?Sized,
{
    let bs = batch_size.max(1);
    let n = dataset.len();
    (0..n.div_ceil(bs)).map(move |b| {
        let idx: Vec<usize> = (b * bs..((b + 1) * bs).min(n)).collect();
        dataset
            .get_many(idx)
            .map(|items| ImageBatcher::default().batch(items, device))
    })
}
