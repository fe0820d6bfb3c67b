//! Image transforms: resizing, cropping, padding, normalisation and seeded augmentations, plus
//! the named presets of OML's transform registry and of its pretrained extractors (reference
//! §1.1, §1.9).
//!
//! A [`Pipeline`] runs its [`Transform`] steps on an 8-bit RGB image, then scales to `[0, 1]` and
//! normalises into a `[3, H, W]` [`ImageTensor`]. Random steps draw from the generator passed to
//! [`Pipeline::apply`]; the datasets seed it from `(seed, epoch, index)`, so results do not
//! depend on thread scheduling.
//!
//! ```
//! use oml_datasets::transforms::{Pipeline, Normalize};
//! use oml_interfaces::preprocessing::{Preprocessing, ResizeMode};
//! use rand::SeedableRng;
//! // A torchvision ResNet's preset (what `oml_models::zoo::preprocessing` gives its keys).
//! let preset = Preprocessing::imagenet(ResizeMode::ShorterSideBicubicCenterCrop, 256, 224);
//! let p = Pipeline::from_preprocessing("resnet50_imagenet1k_v1", &preset);
//! assert_eq!(p.output_size(), Some((224, 224)));
//! let img = image::RgbImage::from_pixel(300, 400, image::Rgb([255, 0, 0]));
//! let t = p.apply(img, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
//! assert_eq!((t.height, t.width), (224, 224));
//! let red = (1.0 - Normalize::IMAGENET.mean[0]) / Normalize::IMAGENET.std[0];
//! assert!((t.data[0] - red).abs() < 1e-5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use image::{RgbImage, imageops};
use rand::Rng;

/// A colour as `[r, g, b]`.
pub type Rgb = [u8; 3];

pub use oml_interfaces::preprocessing::PAD_COLOR;
use oml_interfaces::preprocessing::{
    CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Preprocessing, ResizeMode,
};

/// Why a transform could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TransformError {
    /// No preset of that name.
    #[error("unknown transforms preset `{name}`; known: {known}")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A parameter is out of range.
    #[error("invalid transform parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
}

/// An image as a float tensor on the host, `[3, height, width]`, channel-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTensor {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `3 * height * width` values: all red, then green, then blue.
    pub data: Vec<f32>,
}

impl ImageTensor {
    /// The value of channel `c` at `(x, y)`.
    pub fn at(&self, c: usize, x: usize, y: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (triangle), antialiased when shrinking.
    Bilinear,
    /// Bicubic (Catmull-Rom), antialiased when shrinking.
    Bicubic,
    /// Lanczos with window 3.
    Lanczos3,
}

impl Filter {
    fn image_filter(self) -> imageops::FilterType {
        match self {
            Filter::Nearest => imageops::FilterType::Nearest,
            Filter::Bilinear => imageops::FilterType::Triangle,
            Filter::Bicubic => imageops::FilterType::CatmullRom,
            Filter::Lanczos3 => imageops::FilterType::Lanczos3,
        }
    }
}

/// Per-channel mean and standard deviation, on the `[0, 1]` scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// Mean per channel.
    pub mean: [f32; 3],
    /// Standard deviation per channel.
    pub std: [f32; 3],
}

impl Normalize {
    /// ImageNet constants (OML's `MEAN`, `STD`).
    pub const IMAGENET: Normalize = Normalize {
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
    };
    /// CLIP constants (OML's `MEAN_CLIP`, `STD_CLIP`).
    pub const CLIP: Normalize = Normalize {
        mean: CLIP_MEAN,
        std: CLIP_STD,
    };
    /// No normalisation: values stay in `[0, 1]`.
    pub const NONE: Normalize = Normalize {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
}

/// One step of a pipeline, on 8-bit RGB images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// torchvision `Resize(size)`: the shorter side becomes `size`, the aspect ratio is kept
    /// (the longer side is truncated, as torchvision does).
    ResizeShorter {
        /// Target shorter side.
        size: u32,
        /// Filter.
        filter: Filter,
    },
    /// Resize to exactly `width × height`.
    Resize {
        /// Target width.
        width: u32,
        /// Target height.
        height: u32,
        /// Filter.
        filter: Filter,
    },
    /// albumentations `LongestMaxSize`: the longer side becomes `size`.
    LongestMaxSize {
        /// Target longer side.
        size: u32,
        /// Filter.
        filter: Filter,
    },
    /// Central `width × height` crop; a smaller image is padded with black first (torchvision).
    CenterCrop {
        /// Crop width.
        width: u32,
        /// Crop height.
        height: u32,
    },
    /// Pads the shorter side symmetrically so the image is square.
    PadToSquare {
        /// Padding colour.
        color: Rgb,
    },
    /// albumentations `PadIfNeeded`: pads symmetrically to at least `width × height`.
    PadIfNeeded {
        /// Minimum width.
        width: u32,
        /// Minimum height.
        height: u32,
        /// Padding colour.
        color: Rgb,
    },
    /// torchvision `RandomResizedCrop(size, scale, ratio)`, resized to `size × size`.
    RandomResizedCrop {
        /// Output side.
        size: u32,
        /// Range of the crop area as a fraction of the image area.
        scale: [f32; 2],
        /// Range of the crop aspect ratio (width / height).
        ratio: [f32; 2],
        /// Filter.
        filter: Filter,
    },
    /// Mirrors left-right with probability `p`.
    HorizontalFlip {
        /// Probability.
        p: f32,
    },
    /// Light colour jitter: brightness, contrast and saturation factors drawn uniformly from
    /// `[1 − s, 1 + s]`, applied in that order.
    ColorJitter {
        /// Brightness strength.
        brightness: f32,
        /// Contrast strength.
        contrast: f32,
        /// Saturation strength.
        saturation: f32,
    },
}

impl Transform {
    fn is_random(&self) -> bool {
        matches!(
            self,
            Transform::RandomResizedCrop { .. }
                | Transform::HorizontalFlip { .. }
                | Transform::ColorJitter { .. }
        )
    }

    /// Applies the step.
    pub fn apply(&self, img: RgbImage, rng: &mut impl Rng) -> RgbImage {
        let (w, h) = img.dimensions();
        match *self {
            Transform::ResizeShorter { size, filter } => {
                let (nw, nh) = shorter_side_size(w, h, size);
                resize(img, nw, nh, filter)
            }
            Transform::Resize {
                width,
                height,
                filter,
            } => resize(img, width, height, filter),
            Transform::LongestMaxSize { size, filter } => {
                let scale = size as f64 / w.max(h).max(1) as f64;
                // albumentations rounds the scaled side.
                let nw = ((w as f64 * scale).round() as u32).max(1);
                let nh = ((h as f64 * scale).round() as u32).max(1);
                resize(img, nw, nh, filter)
            }
            Transform::CenterCrop { width, height } => center_crop(img, width, height),
            Transform::PadToSquare { color } => {
                let s = w.max(h);
                pad_to(img, s, s, color)
            }
            Transform::PadIfNeeded {
                width,
                height,
                color,
            } => pad_to(img, width.max(w), height.max(h), color),
            Transform::RandomResizedCrop {
                size,
                scale,
                ratio,
                filter,
            } => {
                let (x, y, cw, ch) = random_resized_crop_box(w, h, scale, ratio, rng);
                let crop = imageops::crop_imm(&img, x, y, cw, ch).to_image();
                resize(crop, size, size, filter)
            }
            Transform::HorizontalFlip { p } => {
                if rng.random::<f32>() < p {
                    imageops::flip_horizontal(&img)
                } else {
                    img
                }
            }
            Transform::ColorJitter {
                brightness,
                contrast,
                saturation,
            } => {
                let mut factor = |s: f32| {
                    if s > 0.0 {
                        rng.random_range((1.0 - s).max(0.0)..=1.0 + s)
                    } else {
                        1.0
                    }
                };
                let (b, c, s) = (factor(brightness), factor(contrast), factor(saturation));
                color_jitter(img, b, c, s)
            }
        }
    }
}

/// torchvision's `Resize(int)` output size for a `w × h` image.
pub fn shorter_side_size(w: u32, h: u32, size: u32) -> (u32, u32) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((size as u64 * long as u64) / short.max(1) as u64).max(1) as u32;
    if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

fn resize(img: RgbImage, w: u32, h: u32, filter: Filter) -> RgbImage {
    if img.dimensions() == (w, h) {
        return img;
    }
    imageops::resize(&img, w.max(1), h.max(1), filter.image_filter())
}

fn pad_to(img: RgbImage, w: u32, h: u32, color: Rgb) -> RgbImage {
    let (iw, ih) = img.dimensions();
    if (iw, ih) == (w, h) {
        return img;
    }
    let mut out = RgbImage::from_pixel(w, h, image::Rgb(color));
    imageops::replace(&mut out, &img, ((w - iw) / 2) as i64, ((h - ih) / 2) as i64);
    out
}

fn center_crop(img: RgbImage, cw: u32, ch: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let img = if w < cw || h < ch {
        pad_to(img, w.max(cw), h.max(ch), [0, 0, 0])
    } else {
        img
    };
    let (w, h) = img.dimensions();
    // torchvision rounds the offsets: int(round((h - ch) / 2)).
    let x = ((w - cw) as f64 / 2.0).round() as u32;
    let y = ((h - ch) as f64 / 2.0).round() as u32;
    imageops::crop_imm(&img, x, y, cw, ch).to_image()
}

/// torchvision's `RandomResizedCrop.get_params`: `(x, y, width, height)`.
fn random_resized_crop_box(
    w: u32,
    h: u32,
    scale: [f32; 2],
    ratio: [f32; 2],
    rng: &mut impl Rng,
) -> (u32, u32, u32, u32) {
    let area = (w as f64) * (h as f64);
    let (lr0, lr1) = ((ratio[0] as f64).ln(), (ratio[1] as f64).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale[0] as f64..=scale[1] as f64);
        let aspect = rng.random_range(lr0..=lr1).exp();
        let cw = (target * aspect).sqrt().round() as u32;
        let ch = (target / aspect).sqrt().round() as u32;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let y = rng.random_range(0..=h - ch);
            let x = rng.random_range(0..=w - cw);
            return (x, y, cw, ch);
        }
    }
    // Fallback: central crop with the ratio clamped.
    let in_ratio = w as f64 / h.max(1) as f64;
    let (cw, ch) = if in_ratio < ratio[0] as f64 {
        (w, ((w as f64 / ratio[0] as f64).round() as u32).clamp(1, h))
    } else if in_ratio > ratio[1] as f64 {
        (((h as f64 * ratio[1] as f64).round() as u32).clamp(1, w), h)
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw.max(1), ch.max(1))
}

fn color_jitter(mut img: RgbImage, b: f32, c: f32, s: f32) -> RgbImage {
    let gray = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut px: Vec<[f32; 3]> = img
        .pixels()
        .map(|p| [p[0] as f32 * b, p[1] as f32 * b, p[2] as f32 * b])
        .collect();
    px.iter_mut()
        .for_each(|p| p.iter_mut().for_each(|v| *v = v.clamp(0.0, 255.0)));
    if c != 1.0 && !px.is_empty() {
        let mean = px.iter().map(gray).sum::<f32>() / px.len() as f32;
        px.iter_mut().for_each(|p| {
            p.iter_mut()
                .for_each(|v| *v = ((*v - mean) * c + mean).clamp(0.0, 255.0))
        });
    }
    if s != 1.0 {
        px.iter_mut().for_each(|p| {
            let g = gray(p);
            p.iter_mut()
                .for_each(|v| *v = ((*v - g) * s + g).clamp(0.0, 255.0));
        });
    }
    for (dst, p) in img.pixels_mut().zip(&px) {
        *dst = image::Rgb(p.map(|v| v.round() as u8));
    }
    img
}

/// A sequence of steps followed by scaling to `[0, 1]` and normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// A name for logs (the preset's).
    pub name: String,
    /// The steps, in order.
    pub steps: Vec<Transform>,
    /// The final normalisation.
    pub normalize: Normalize,
}

/// The names [`Pipeline::preset`] knows (OML's `TRANSFORMS_REGISTRY` plus `augs_light`).
pub const PRESETS: [&str; 10] = [
    "norm_albu",
    "norm_resize_albu",
    "norm_resize_albu_clip",
    "augs_torch",
    "norm_torch",
    "norm_resize_torch",
    "augs_hypvit_torch",
    "norm_resize_hypvit_torch",
    "unicom_transforms",
    "augs_light",
];

impl Pipeline {
    /// A pipeline of the given steps.
    pub fn new(name: impl Into<String>, steps: Vec<Transform>, normalize: Normalize) -> Self {
        Pipeline {
            name: name.into(),
            steps,
            normalize,
        }
    }

    /// Runs the steps, then converts to a normalised `[3, H, W]` tensor.
    pub fn apply(&self, mut img: RgbImage, rng: &mut impl Rng) -> ImageTensor {
        for s in &self.steps {
            img = s.apply(img, rng);
        }
        to_tensor(&img, &self.normalize)
    }

    /// True when some step is random (training augmentation).
    pub fn is_random(&self) -> bool {
        self.steps.iter().any(Transform::is_random)
    }

    /// The `(width, height)` every output has, when the steps fix it.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        #[derive(Clone, Copy)]
        enum Size {
            Unknown,
            /// The longer side is exactly `s`.
            Longest(u32),
            Known(u32, u32),
        }
        let mut size = Size::Unknown;
        for s in &self.steps {
            size = match (*s, size) {
                (Transform::Resize { width, height, .. }, _) => Size::Known(width, height),
                (Transform::RandomResizedCrop { size, .. }, _) => Size::Known(size, size),
                (Transform::CenterCrop { width, height }, _) => Size::Known(width, height),
                (Transform::LongestMaxSize { size, .. }, _) => Size::Longest(size),
                (Transform::ResizeShorter { .. }, _) => Size::Unknown,
                (Transform::PadIfNeeded { width, height, .. }, Size::Known(w, h)) => {
                    Size::Known(width.max(w), height.max(h))
                }
                (Transform::PadIfNeeded { width, height, .. }, Size::Longest(l))
                    if l <= width && l <= height =>
                {
                    Size::Known(width, height)
                }
                (Transform::PadIfNeeded { .. }, _) => Size::Unknown,
                (Transform::PadToSquare { .. }, Size::Known(w, h)) => {
                    Size::Known(w.max(h), w.max(h))
                }
                (Transform::PadToSquare { .. }, Size::Longest(l)) => Size::Known(l, l),
                (Transform::PadToSquare { .. }, Size::Unknown) => Size::Unknown,
                (Transform::HorizontalFlip { .. } | Transform::ColorJitter { .. }, any) => any,
            };
        }
        match size {
            Size::Known(w, h) => Some((w, h)),
            _ => None,
        }
    }

    /// A named preset of OML's transform registry. `im_size` is required by the presets that
    /// resize (default 224 where OML has one).
    ///
    /// | name | steps |
    /// |---|---|
    /// | `norm_albu`, `norm_torch` | ImageNet normalisation only |
    /// | `norm_resize_albu` | LongestMaxSize(s) → PadIfNeeded(s, s, white) → ImageNet |
    /// | `norm_resize_albu_clip` | the same with CLIP normalisation |
    /// | `norm_resize_torch` | Resize((s, s)) → ImageNet |
    /// | `augs_torch` | Resize((s, s)) → horizontal flip → ImageNet (OML's default `ColorJitter()` is the identity) |
    /// | `augs_hypvit_torch` | RandomResizedCrop(s, scale (0.2, 1), bicubic) → horizontal flip → ImageNet |
    /// | `norm_resize_hypvit_torch` | Resize(s, bicubic) → CenterCrop(s) → ImageNet |
    /// | `unicom_transforms` | Resize(s, bicubic) → CenterCrop(s) → CLIP |
    /// | `augs_light` | RandomResizedCrop(s, scale (0.5, 1)) → flip → ColorJitter(0.2, 0.2, 0.2) → ImageNet |
    pub fn preset(name: &str, im_size: Option<u32>) -> Result<Pipeline, TransformError> {
        let s = im_size.unwrap_or(224);
        if s == 0 {
            return Err(TransformError::InvalidParameter {
                name: "im_size",
                value: "0".into(),
                reason: "must be positive",
            });
        }
        let bicubic = Filter::Bicubic;
        let bilinear = Filter::Bilinear;
        let steps = match name {
            "norm_albu" | "norm_torch" => vec![],
            "norm_resize_albu" | "norm_resize_albu_clip" => vec![
                Transform::LongestMaxSize {
                    size: s,
                    filter: bilinear,
                },
                Transform::PadIfNeeded {
                    width: s,
                    height: s,
                    color: PAD_COLOR,
                },
            ],
            "norm_resize_torch" => vec![Transform::Resize {
                width: s,
                height: s,
                filter: bilinear,
            }],
            "augs_torch" => vec![
                Transform::Resize {
                    width: s,
                    height: s,
                    filter: bilinear,
                },
                Transform::HorizontalFlip { p: 0.5 },
            ],
            "augs_hypvit_torch" => vec![
                Transform::RandomResizedCrop {
                    size: s,
                    scale: [0.2, 1.0],
                    ratio: [0.75, 4.0 / 3.0],
                    filter: bicubic,
                },
                Transform::HorizontalFlip { p: 0.5 },
            ],
            "norm_resize_hypvit_torch" | "unicom_transforms" => vec![
                Transform::ResizeShorter {
                    size: s,
                    filter: bicubic,
                },
                Transform::CenterCrop {
                    width: s,
                    height: s,
                },
            ],
            "augs_light" => vec![
                Transform::RandomResizedCrop {
                    size: s,
                    scale: [0.5, 1.0],
                    ratio: [0.75, 4.0 / 3.0],
                    filter: bilinear,
                },
                Transform::HorizontalFlip { p: 0.5 },
                Transform::ColorJitter {
                    brightness: 0.2,
                    contrast: 0.2,
                    saturation: 0.2,
                },
            ],
            _ => {
                return Err(TransformError::UnknownPreset {
                    name: name.to_string(),
                    known: PRESETS.join(", "),
                });
            }
        };
        let normalize = match name {
            "norm_resize_albu_clip" | "unicom_transforms" => Normalize::CLIP,
            _ => Normalize::IMAGENET,
        };
        Ok(Pipeline::new(name, steps, normalize))
    }

    /// The pipeline of a pretrained key's preset (OML's `TRANSFORMS_FOR_PRETRAINED`; the zoo of
    /// `oml-models` gives each key's: `zoo::preprocessing(key)`), named `name` in logs.
    pub fn from_preprocessing(name: impl Into<String>, p: &Preprocessing) -> Pipeline {
        let (resize, size) = (p.resize as u32, p.size as u32);
        let steps = match p.mode {
            ResizeMode::ShorterSideBicubicCenterCrop => vec![
                Transform::ResizeShorter {
                    size: resize,
                    filter: Filter::Bicubic,
                },
                Transform::CenterCrop {
                    width: size,
                    height: size,
                },
            ],
            ResizeMode::Stretch => vec![Transform::Resize {
                width: size,
                height: size,
                filter: Filter::Bilinear,
            }],
            ResizeMode::LongestSidePad => vec![
                Transform::LongestMaxSize {
                    size,
                    filter: Filter::Bilinear,
                },
                Transform::PadIfNeeded {
                    width: size,
                    height: size,
                    color: PAD_COLOR,
                },
            ],
        };
        let normalize = Normalize {
            mean: p.mean,
            std: p.std,
        };
        Pipeline::new(name, steps, normalize)
    }
}

/// Scales to `[0, 1]`, normalises and lays out channel-major.
pub fn to_tensor(img: &RgbImage, n: &Normalize) -> ImageTensor {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0f32; 3 * plane];
    // Precomputed lookup per channel: 256 values each.
    let lut: Vec<[f32; 256]> = (0..3)
        .map(|c| std::array::from_fn(|v| (v as f32 / 255.0 - n.mean[c]) / n.std[c]))
        .collect();
    for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
        data[i] = lut[0][p[0] as usize];
        data[plane + i] = lut[1][p[1] as usize];
        data[2 * plane + i] = lut[2][p[2] as usize];
    }
    ImageTensor {
        height: h as usize,
        width: w as usize,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x + y) % 256) as u8,
            ])
        })
    }

    #[test]
    fn resize_shorter_follows_torchvision() {
        // torchvision: Resize(256) of 500x375 (w x h) -> 341x256 (int(256*500/375) = 341).
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(shorter_side_size(375, 500, 256), (256, 341));
        let img = Transform::ResizeShorter {
            size: 10,
            filter: Filter::Bilinear,
        }
        .apply(gradient(40, 20), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(img.dimensions(), (20, 10));
    }

    #[test]
    fn center_crop_takes_the_middle_and_pads_small_images() {
        let img = gradient(10, 8);
        let c = Transform::CenterCrop {
            width: 4,
            height: 4,
        }
        .apply(img.clone(), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(c.get_pixel(0, 0), img.get_pixel(3, 2));
        let small = Transform::CenterCrop {
            width: 6,
            height: 6,
        }
        .apply(gradient(2, 2), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(small.dimensions(), (6, 6));
        assert_eq!(small.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(small.get_pixel(2, 2), gradient(2, 2).get_pixel(0, 0));
    }

    #[test]
    fn pad_to_square_centres_with_colour() {
        let p = Transform::PadToSquare { color: PAD_COLOR }
            .apply(gradient(4, 2), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(p.dimensions(), (4, 4));
        assert_eq!(p.get_pixel(0, 0).0, PAD_COLOR);
        assert_eq!(p.get_pixel(1, 1), gradient(4, 2).get_pixel(1, 0));
        assert_eq!(p.get_pixel(3, 3).0, PAD_COLOR);
    }

    #[test]
    fn normalisation_matches_the_formula() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([0, 128, 255]));
        let t = to_tensor(&img, &Normalize::CLIP);
        for c in 0..3 {
            let v = [0.0f32, 128.0, 255.0][c] / 255.0;
            assert!(
                (t.at(c, 1, 0) - (v - Normalize::CLIP.mean[c]) / Normalize::CLIP.std[c]).abs()
                    < 1e-6
            );
        }
    }

    #[test]
    fn random_steps_are_seeded_and_stay_in_range() {
        let p = Pipeline::preset("augs_light", Some(16)).unwrap();
        let a = p.apply(gradient(40, 30), &mut ChaCha8Rng::seed_from_u64(5));
        let b = p.apply(gradient(40, 30), &mut ChaCha8Rng::seed_from_u64(5));
        assert_eq!(a, b);
        assert_eq!((a.height, a.width), (16, 16));
        for _ in 0..50 {
            let mut rng = ChaCha8Rng::seed_from_u64(rand::random());
            let (x, y, w, h) =
                random_resized_crop_box(40, 30, [0.2, 1.0], [0.75, 4.0 / 3.0], &mut rng);
            assert!(x + w <= 40 && y + h <= 30 && w > 0 && h > 0);
            let area = (w * h) as f64 / 1200.0;
            assert!((0.15..=1.05).contains(&area), "{area}");
        }
    }

    #[test]
    fn flip_mirrors_and_jitter_keeps_gray_gray() {
        let img = gradient(5, 3);
        let f = Transform::HorizontalFlip { p: 1.0 }
            .apply(img.clone(), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(f.get_pixel(0, 1), img.get_pixel(4, 1));
        let gray = RgbImage::from_pixel(3, 3, image::Rgb([100, 100, 100]));
        let j = Transform::ColorJitter {
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
        }
        .apply(gray, &mut ChaCha8Rng::seed_from_u64(1));
        assert!(
            j.pixels()
                .all(|p| p[0] == p[1] && p[1] == p[2] && (80..=120).contains(&p[0]))
        );
    }

    #[test]
    fn presets_have_their_sizes() {
        for name in PRESETS {
            let p = Pipeline::preset(name, Some(32)).unwrap();
            let out = p.apply(gradient(50, 20), &mut ChaCha8Rng::seed_from_u64(0));
            if name.starts_with("norm_albu") || name == "norm_torch" {
                assert_eq!((out.width, out.height), (50, 20), "{name}");
                assert_eq!(p.output_size(), None);
            } else {
                assert_eq!((out.width, out.height), (32, 32), "{name}");
                assert_eq!(p.output_size(), Some((32, 32)), "{name}");
            }
        }
        assert!(matches!(
            Pipeline::preset("nope", None),
            Err(TransformError::UnknownPreset { .. })
        ));
        use ResizeMode::*;
        for (preset, s) in [
            (
                Preprocessing::imagenet(ShorterSideBicubicCenterCrop, 256, 224),
                224,
            ),
            (Preprocessing::imagenet(Stretch, 224, 224), 224),
            (Preprocessing::clip(LongestSidePad, 224, 224), 224),
            (
                Preprocessing::clip(ShorterSideBicubicCenterCrop, 336, 336),
                336,
            ),
        ] {
            let p = Pipeline::from_preprocessing("preset", &preset);
            let out = p.apply(gradient(300, 200), &mut ChaCha8Rng::seed_from_u64(0));
            assert_eq!((out.width, out.height), (s, s), "{preset:?}");
            assert_eq!(p.output_size(), Some((s as u32, s as u32)), "{preset:?}");
        }
        // CLIP pads with white: the top row of a wide image is padding.
        let clip = Pipeline::from_preprocessing(
            "openai_vitb32_224",
            &Preprocessing::clip(LongestSidePad, 224, 224),
        );
        let out = clip.apply(
            RgbImage::from_pixel(300, 100, image::Rgb([0, 0, 0])),
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        assert!(
            (out.at(0, 0, 0) - (1.0 - Normalize::CLIP.mean[0]) / Normalize::CLIP.std[0]).abs()
                < 1e-5
        );
    }
}
