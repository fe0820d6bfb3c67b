//! The input presets of pretrained extractors as plain data (OML's `TRANSFORMS_FOR_PRETRAINED`
//! and its normalisation constants): the models' zoo says which preset each key needs,
//! `oml_datasets::transforms::Pipeline::from_preprocessing` turns one into an image pipeline.

use serde::{Deserialize, Serialize};

/// ImageNet normalisation (`oml.const.MEAN` / `STD`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// CLIP's normalisation (`oml.const.MEAN_CLIP` / `STD_CLIP`), also Unicom's.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's standard deviations (OML's digits, more than an `f32` holds).
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// OML's padding colour (`PAD_COLOR`).
pub const PAD_COLOR: [u8; 3] = [255, 255, 255];

/// How an image is brought to the network's input size (the geometric part of OML's
/// `TRANSFORMS_FOR_PRETRAINED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// torchvision `Resize(resize, bicubic)` of the shorter side, then `CenterCrop(size)`
    /// (OML's `get_normalisation_resize_hypvit`).
    ShorterSideBicubicCenterCrop,
    /// torchvision `Resize((size, size), antialias=True)` (bilinear), ignoring the aspect ratio
    /// (OML's `get_normalisation_resize_torch`).
    Stretch,
    /// albumentations `LongestMaxSize(size)` then `PadIfNeeded(size, size)` with [`PAD_COLOR`]
    /// (OML's `get_normalisation_resize_albu`).
    LongestSidePad,
}

/// The preprocessing a pretrained key expects: plain data, turned into an image pipeline by the
/// datasets crate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Geometry.
    pub mode: ResizeMode,
    /// Resize target before the crop (equals `size` when there is no crop).
    pub resize: usize,
    /// Final (square) input size.
    pub size: usize,
    /// Per-channel mean subtracted after scaling pixels to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

impl Preprocessing {
    /// `mode` with ImageNet normalisation.
    pub const fn imagenet(mode: ResizeMode, resize: usize, size: usize) -> Self {
        Self {
            mode,
            resize,
            size,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// `mode` with CLIP normalisation.
    pub const fn clip(mode: ResizeMode, resize: usize, size: usize) -> Self {
        Self {
            mode,
            resize,
            size,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        }
    }
}
