//! OML's pretrained zoo: registry keys, URLs, hashes, preprocessing presets, the checkpoint cache
//! and the downloader.
//!
//! Checkpoints are cached in `$OML_CACHE` when set, else in OML's own folder
//! (`<platform cache dir>/oml/torch/checkpoints`, e.g. `~/.cache/oml/torch/checkpoints`), under
//! OML's file names, so a Python OML installation and this crate share downloads. A cached file is
//! used only when its hash matches; a download goes to a temporary file in the same folder, is
//! hashed while streaming, and is renamed into place only when the hash matches.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::prelude::*;
use md5::{Digest, Md5};
use oml_interfaces::{ModelError, Pretrained, PretrainedEntry};

/// Environment variable naming the checkpoint cache folder.
pub const CACHE_ENV: &str = "OML_CACHE";

/// OML's own checkpoint storage (`oml.const.STORAGE_CKPTS`).
pub const STORAGE_CKPTS: &str = "https://oml.daloroserver.com/download/checkpoints";

pub use oml_interfaces::preprocessing::{
    CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, PAD_COLOR, Preprocessing, ResizeMode,
};

/// A pretrained key with everything needed to use it: the download entry, the hash scheme and the
/// preprocessing preset.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedModel {
    /// Registry entry (key, URLs, md5 prefix, cache file name, OML's `init_args`).
    pub entry: &'static PretrainedEntry,
    /// A SHA-256 (prefix) to check: torchvision files carry one in their name instead of an
    /// md5, Unicom's release files are checked by their full SHA-256.
    pub sha256_prefix: Option<&'static str>,
    /// Input size and normalisation.
    pub preprocessing: Preprocessing,
    /// OML's registry family: `resnet`, `vit`, `vit_clip`, `vit_unicom` or `extractor_with_mlp`.
    pub family: &'static str,
}

macro_rules! entry {
    ($key:expr, [$($url:expr),*], $md5:expr, $file:expr, $args:expr) => {
        PretrainedEntry { key: $key, urls: &[$($url),*], md5_prefix: $md5, file_name: $file, init_args: $args }
    };
}

/// `ResnetExtractor.pretrained_models` (torchvision's `IMAGENET1K_V1` URLs; OML fetches those
/// through torchvision).
pub static RESNET_PRETRAINED: &[PretrainedEntry] = &[
    entry!(
        "resnet50_moco_v2",
        [
            "https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar"
        ],
        "a04e12f8",
        "moco_v2_800ep_pretrain.pth.tar",
        r#"{"arch": "resnet50_projector", "remove_fc": true, "normalise_features": false, "gem_p": 5.0}"#
    ),
    entry!(
        "resnet18_imagenet1k_v1",
        ["https://download.pytorch.org/models/resnet18-f37072fd.pth"],
        "",
        "resnet18-f37072fd.pth",
        r#"{"arch": "resnet18", "remove_fc": true, "normalise_features": false, "gem_p": null}"#
    ),
    entry!(
        "resnet34_imagenet1k_v1",
        ["https://download.pytorch.org/models/resnet34-b627a593.pth"],
        "",
        "resnet34-b627a593.pth",
        r#"{"arch": "resnet34", "remove_fc": true, "normalise_features": false, "gem_p": null}"#
    ),
    entry!(
        "resnet50_imagenet1k_v1",
        ["https://download.pytorch.org/models/resnet50-0676ba61.pth"],
        "",
        "resnet50-0676ba61.pth",
        r#"{"arch": "resnet50", "remove_fc": true, "normalise_features": false, "gem_p": null}"#
    ),
    entry!(
        "resnet101_imagenet1k_v1",
        ["https://download.pytorch.org/models/resnet101-63fe2227.pth"],
        "",
        "resnet101-63fe2227.pth",
        r#"{"arch": "resnet101", "remove_fc": true, "normalise_features": false, "gem_p": null}"#
    ),
    entry!(
        "resnet152_imagenet1k_v1",
        ["https://download.pytorch.org/models/resnet152-394f9c45.pth"],
        "",
        "resnet152-394f9c45.pth",
        r#"{"arch": "resnet152", "remove_fc": true, "normalise_features": false, "gem_p": null}"#
    ),
];

/// `ViTExtractor.pretrained_models` for DINO v1, DINOv2 and OML's own ViT-S/16 checkpoints. (OML's
/// Google Drive mirrors are not listed: they need gdown's confirmation flow.)
pub static VIT_PRETRAINED: &[PretrainedEntry] = &[
    entry!(
        "vits16_dino",
        [
            "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
        ],
        "cf0f22",
        "vits16_dino.ckpt",
        r#"{"arch": "vits16", "normalise_features": false}"#
    ),
    entry!(
        "vits8_dino",
        [
            "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth"
        ],
        "230cd5",
        "vits8_dino.ckpt",
        r#"{"arch": "vits8", "normalise_features": false}"#
    ),
    entry!(
        "vitb16_dino",
        ["https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"],
        "552daf",
        "vitb16_dino.ckpt",
        r#"{"arch": "vitb16", "normalise_features": false}"#
    ),
    entry!(
        "vitb8_dino",
        ["https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth"],
        "556550",
        "vitb8_dino.ckpt",
        r#"{"arch": "vitb8", "normalise_features": false}"#
    ),
    entry!(
        "vits14_dinov2",
        ["https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"],
        "2e405c",
        "dinov2_vits14.ckpt",
        r#"{"arch": "vits14", "normalise_features": false}"#
    ),
    entry!(
        "vits14_reg_dinov2",
        ["https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth"],
        "2a50c5",
        "dinov2_vits14_reg4.ckpt",
        r#"{"arch": "vits14_reg", "normalise_features": false}"#
    ),
    entry!(
        "vitb14_dinov2",
        ["https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"],
        "8635e7",
        "dinov2_vitb14.ckpt",
        r#"{"arch": "vitb14", "normalise_features": false}"#
    ),
    entry!(
        "vitb14_reg_dinov2",
        ["https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth"],
        "13d13c",
        "dinov2_vitb14_reg4.ckpt",
        r#"{"arch": "vitb14_reg", "normalise_features": false}"#
    ),
    entry!(
        "vitl14_dinov2",
        ["https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"],
        "19a02c",
        "dinov2_vitl14.ckpt",
        r#"{"arch": "vitl14", "normalise_features": false}"#
    ),
    entry!(
        "vitl14_reg_dinov2",
        ["https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth"],
        "8b6364",
        "dinov2_vitl14_reg4.ckpt",
        r#"{"arch": "vitl14_reg", "normalise_features": false}"#
    ),
    entry!(
        "vits16_inshop",
        ["https://oml.daloroserver.com/download/checkpoints/inshop/vits16_inshop_a76b85.ckpt"],
        "a76b85",
        "vits16_inshop.ckpt",
        r#"{"arch": "vits16", "normalise_features": false}"#
    ),
    entry!(
        "vits16_sop",
        ["https://oml.daloroserver.com/download/checkpoints/sop/vits16_sop_21e743.ckpt"],
        "21e743",
        "vits16_sop.ckpt",
        r#"{"arch": "vits16", "normalise_features": true}"#
    ),
    entry!(
        "vits16_cub",
        ["https://oml.daloroserver.com/download/checkpoints/cub/vits16_cub.ckpt"],
        "e82633",
        "vits16_cub.ckpt",
        r#"{"arch": "vits16", "normalise_features": false}"#
    ),
    entry!(
        "vits16_cars",
        ["https://oml.daloroserver.com/download/checkpoints/cars/vits16_cars.ckpt"],
        "9f1e59",
        "vits16_cars.ckpt",
        r#"{"arch": "vits16", "normalise_features": false}"#
    ),
];

/// `ViTCLIPExtractor.pretrained_models`: OpenAI's TorchScript files (which load only once
/// converted to a state dict: the error says how) and SberAI's ruCLIP state dicts.
pub static CLIP_PRETRAINED: &[PretrainedEntry] = &[
    entry!(
        "openai_vitb16_224",
        [
            "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"
        ],
        "44c3d804ecac03d9545ac1a3adbca3a6",
        "openai_vitb16_224.ckpt",
        r#"{"arch": "vitb16_224", "normalise_features": false}"#
    ),
    entry!(
        "openai_vitb32_224",
        [
            "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
        ],
        "3ba34e387b24dfe590eeb1ae6a8a122b",
        "openai_vitb32_224.ckpt",
        r#"{"arch": "vitb32_224", "normalise_features": false}"#
    ),
    entry!(
        "openai_vitl14_224",
        [
            "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"
        ],
        "096db1af569b284eb76b3881534822d9",
        "openai_vitl14_224.ckpt",
        r#"{"arch": "vitl14_224", "normalise_features": false}"#
    ),
    entry!(
        "sber_vitb16_224",
        [
            "https://huggingface.co/sberbank-ai/ruclip-vit-base-patch16-224/resolve/main/pytorch_model.bin"
        ],
        "7882e07674d78c674e33cb892a68bbfc",
        "sber_vitb16_224.ckpt",
        r#"{"arch": "vitb16_224", "normalise_features": false}"#
    ),
    entry!(
        "sber_vitb32_224",
        [
            "https://huggingface.co/sberbank-ai/ruclip-vit-base-patch32-224/resolve/main/pytorch_model.bin"
        ],
        "e2c4dab46a3cfa608bdd762973e90d32",
        "sber_vitb32_224.ckpt",
        r#"{"arch": "vitb32_224", "normalise_features": false}"#
    ),
    entry!(
        "sber_vitl14_224",
        [
            "https://huggingface.co/sberbank-ai/ruclip-vit-large-patch14-224/resolve/main/pytorch_model.bin"
        ],
        "9b4a1cd25d15bad4ffd2ba6e34b8a67c",
        "sber_vitl14_224.ckpt",
        r#"{"arch": "vitl14_224", "normalise_features": false}"#
    ),
];

/// `ViTUnicomExtractor.pretrained_models`: Unicom's release files (fp16 state dicts), checked by
/// their SHA-256 (see [`UNICOM_SHA256`]) as Unicom's loader does; no md5 is published.
pub static UNICOM_PRETRAINED: &[PretrainedEntry] = &[
    entry!(
        "vitb32_unicom",
        ["https://github.com/deepglint/unicom/releases/download/b32/FP16-ViT-B-32.pt"],
        "",
        "FP16-ViT-B-32.pt",
        r#"{"arch": "vitb32_unicom", "normalise_features": true}"#
    ),
    entry!(
        "vitb16_unicom",
        ["https://github.com/deepglint/unicom/releases/download/b16/FP16-ViT-B-16.pt"],
        "",
        "FP16-ViT-B-16.pt",
        r#"{"arch": "vitb16_unicom", "normalise_features": true}"#
    ),
    entry!(
        "vitl14_unicom",
        ["https://github.com/deepglint/unicom/releases/download/l14/FP16-ViT-L-14.pt"],
        "",
        "FP16-ViT-L-14.pt",
        r#"{"arch": "vitl14_unicom", "normalise_features": true}"#
    ),
    entry!(
        "vitl14_336px_unicom",
        ["https://github.com/deepglint/unicom/releases/download/l14_336px/FP16-ViT-L-14-336px.pt"],
        "",
        "FP16-ViT-L-14-336px.pt",
        r#"{"arch": "vitl14_336px_unicom", "normalise_features": true}"#
    ),
];

/// The SHA-256 of each Unicom release file (Unicom's `_SHA256`), by key.
pub const UNICOM_SHA256: [(&str, &str); 4] = [
    (
        "vitb32_unicom",
        "f9d5696a9b58dbbbefee2d31615ca59084f2895a0fdd2ca4c235e0f9b2793f7a",
    ),
    (
        "vitb16_unicom",
        "c04f324f7c3b4435667236ec6c0eca1cd62f9d64fbfc2d06f8e8e60e6497edef",
    ),
    (
        "vitl14_unicom",
        "ff3ab62ff782876460099e6e0ee17b73a7c01109de2fffd595f16f4129404bbd",
    ),
    (
        "vitl14_336px_unicom",
        "3916ab5aed3b522fc90345be8b4457fe5dad60801ad2af5a6871c0c096e8d7ea",
    ),
];

/// `ExtractorWithMLP.pretrained_models`.
pub static MLP_PRETRAINED: &[PretrainedEntry] = &[entry!(
    "vits16_224_mlp_384_inshop",
    ["https://oml.daloroserver.com/download/checkpoints/inshop/vits16_224_mlp_384_inshop.ckpt"],
    "35244966",
    "vits16_224_mlp_384_inshop.ckpt",
    r#"{"extractor": {"name": "vit", "args": {"arch": "vits16", "normalise_features": false, "use_multi_scale": false}}, "mlp_features": [384], "train_backbone": true}"#
)];

/// Every key this crate can download, with its hash scheme and preprocessing preset
/// (`TRANSFORMS_FOR_PRETRAINED`).
pub fn pretrained_models() -> Vec<PretrainedModel> {
    use ResizeMode::*;
    let mut out = Vec::new();
    for e in RESNET_PRETRAINED {
        let sha = e
            .file_name
            .rsplit_once('-')
            .map(|(_, h)| h.trim_end_matches(".pth"));
        out.push(PretrainedModel {
            entry: e,
            sha256_prefix: if e.key.ends_with("_imagenet1k_v1") {
                sha
            } else {
                None
            },
            preprocessing: Preprocessing::imagenet(ShorterSideBicubicCenterCrop, 256, 224),
            family: "resnet",
        });
    }
    for e in VIT_PRETRAINED {
        let preprocessing = match e.key {
            "vits16_inshop" | "vits16_sop" => {
                Preprocessing::imagenet(ShorterSideBicubicCenterCrop, 224, 224)
            }
            k if k.ends_with("_dinov2") => {
                Preprocessing::imagenet(ShorterSideBicubicCenterCrop, 224, 224)
            }
            "vits16_cars" | "vits16_cub" => Preprocessing::imagenet(LongestSidePad, 224, 224),
            _ => Preprocessing::imagenet(Stretch, 224, 224),
        };
        out.push(PretrainedModel {
            entry: e,
            sha256_prefix: None,
            preprocessing,
            family: "vit",
        });
    }
    for e in CLIP_PRETRAINED {
        out.push(PretrainedModel {
            entry: e,
            sha256_prefix: None,
            preprocessing: Preprocessing::clip(LongestSidePad, 224, 224),
            family: "vit_clip",
        });
    }
    for e in UNICOM_PRETRAINED {
        let size = if e.key.contains("336") { 336 } else { 224 };
        out.push(PretrainedModel {
            entry: e,
            sha256_prefix: UNICOM_SHA256
                .iter()
                .find(|(k, _)| *k == e.key)
                .map(|(_, sha)| *sha),
            preprocessing: Preprocessing::clip(ShorterSideBicubicCenterCrop, size, size),
            family: "vit_unicom",
        });
    }
    for e in MLP_PRETRAINED {
        out.push(PretrainedModel {
            entry: e,
            sha256_prefix: None,
            preprocessing: Preprocessing::imagenet(ShorterSideBicubicCenterCrop, 256, 224),
            family: "extractor_with_mlp",
        });
    }
    out
}

/// Looks up a pretrained key across all families.
pub fn pretrained_model(key: &str) -> Result<PretrainedModel, ModelError> {
    let all = pretrained_models();
    all.iter()
        .find(|m| m.entry.key == key)
        .cloned()
        .ok_or_else(|| ModelError::UnknownKey {
            key: key.to_string(),
            known: all
                .iter()
                .map(|m| m.entry.key)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The preprocessing preset of a pretrained key.
pub fn preprocessing(key: &str) -> Result<Preprocessing, ModelError> {
    Ok(pretrained_model(key)?.preprocessing)
}

/// Parses an entry's `init_args` into a config; the entry's key becomes the config's `weights`.
pub(crate) fn init_args<T: serde::de::DeserializeOwned>(
    entry: &PretrainedEntry,
) -> Result<T, ModelError> {
    let mut v: serde_json::Value =
        serde_json::from_str(entry.init_args).map_err(|e| ModelError::InvalidArgument {
            name: "init_args",
            value: entry.init_args.to_string(),
            reason: e.to_string(),
        })?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "weights".into(),
            serde_json::Value::String(entry.key.to_string()),
        );
    }
    serde_json::from_value(v).map_err(|e| ModelError::InvalidArgument {
        name: "init_args",
        value: entry.init_args.to_string(),
        reason: e.to_string(),
    })
}

/// The cache folder: `$OML_CACHE`, else `<platform cache dir>/oml/torch/checkpoints`.
pub fn cache_dir() -> Result<PathBuf, ModelError> {
    cache_dir_from(std::env::var_os(CACHE_ENV))
}

/// [`cache_dir`] with the variable's value given (testable without touching the environment).
pub fn cache_dir_from(env: Option<std::ffi::OsString>) -> Result<PathBuf, ModelError> {
    if let Some(v) = env.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(v));
    }
    dirs::cache_dir()
        .map(|d| d.join("oml").join("torch").join("checkpoints"))
        .ok_or_else(|| ModelError::InvalidArgument {
            name: "OML_CACHE",
            value: "(unset)".into(),
            reason: "no platform cache folder is known here; set OML_CACHE to a writable folder"
                .into(),
        })
}

/// Hex digests of a file (md5, sha256).
pub fn file_digests(path: &Path) -> std::io::Result<(String, String)> {
    let mut f = std::fs::File::open(path)?;
    let (mut md5, mut sha) = (Md5::new(), sha2::Sha256::new());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
    }
    Ok((hex(&md5.finalize()), hex(&sha.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether digests satisfy an entry (md5 prefix, and the SHA-256 prefix when given).
fn hash_ok(md5: &str, sha: &str, md5_prefix: &str, sha_prefix: Option<&str>) -> bool {
    md5.starts_with(md5_prefix) && sha_prefix.is_none_or(|p| sha.starts_with(p))
}

/// How downloads behave.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Draw a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Longest silence while receiving.
    pub read_timeout: Duration,
    /// SHA-256 prefix to check besides the md5 prefix (torchvision files).
    pub sha256_prefix: Option<String>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            progress: true,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            sha256_prefix: None,
        }
    }
}

fn describe_hash(entry: &PretrainedEntry, sha: Option<&str>) -> String {
    match (entry.md5_prefix.is_empty(), sha) {
        (_, Some(s)) if entry.md5_prefix.is_empty() => format!("sha256 starting with `{s}`"),
        (_, Some(s)) => format!(
            "md5 starting with `{}` and sha256 starting with `{s}`",
            entry.md5_prefix
        ),
        (false, None) => format!("md5 starting with `{}`", entry.md5_prefix),
        (true, None) => "any content".to_string(),
    }
}

/// Returns the cached file for `entry` in `dir`, downloading it when absent or broken.
pub fn download_to(
    entry: &PretrainedEntry,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<PathBuf, ModelError> {
    let path = dir.join(entry.file_name);
    let sha = options.sha256_prefix.as_deref();
    let fail = |url: &str, message: String| ModelError::Download {
        url: url.to_string(),
        path: path.display().to_string(),
        message,
    };
    let mut stale = None;
    if path.is_file() {
        match file_digests(&path) {
            Ok((m, s)) if hash_ok(&m, &s, entry.md5_prefix, sha) => return Ok(path),
            Ok((m, _)) => stale = Some(format!("the cached file has md5 {m}")),
            Err(e) => stale = Some(format!("the cached file cannot be read: {e}")),
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        fail(
            entry.urls.first().copied().unwrap_or(""),
            format!("cannot create the cache folder: {e}"),
        )
    })?;
    let mut errors = Vec::new();
    for url in entry.urls {
        match fetch(url, &path, entry, options) {
            Ok(()) => return Ok(path),
            Err(FetchError::Save(message)) => return Err(fail(url, message)),
            Err(FetchError::Source(e)) => errors.push(format!("{url}: {e}")),
        }
    }
    let mut message = format!(
        "all {} source(s) failed: {}",
        entry.urls.len(),
        errors.join("; ")
    );
    if let Some(s) = stale {
        message.push_str(&format!(" ({s}, which does not match)"));
    }
    message.push_str(&format!(
        ". If this machine is offline, download the file elsewhere and place it at {} ({} expected)",
        path.display(),
        describe_hash(entry, sha)
    ));
    Err(fail(entry.urls.last().copied().unwrap_or(""), message))
}

/// Why one source gave no file.
enum FetchError {
    /// The source failed (unreachable, broken or truncated transfer, wrong hash, or the
    /// temporary file could not be written): the next source is tried.
    Source(String),
    /// The verified download could not be saved in place: another source would not help.
    Save(String),
}

/// Streams one URL into a temporary file beside `path`, hashing as it goes, and renames it to
/// `path` only when the length and the hashes match ([`oml_interfaces::fs::write_atomic_with`]:
/// the check runs inside the write closure, whose error stops the rename).
fn fetch(
    url: &str,
    path: &Path,
    entry: &PretrainedEntry,
    options: &DownloadOptions,
) -> Result<(), FetchError> {
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .build();
    let agent: ureq::Agent = config.into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| FetchError::Source(e.to_string()))?;
    let expected: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let bar = if options.progress {
        let bar = indicatif::ProgressBar::with_draw_target(
            expected,
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(entry.key.to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut reader = response.body_mut().as_reader();
    // Why the source failed, set by the write closure; `None` when the error is the helper's
    // own (creating, syncing or renaming the temporary file).
    let mut failure: Option<String> = None;
    let mut started = false;
    let saved = oml_interfaces::fs::write_atomic_with(path, |tmp| {
        started = true;
        copy_verified(
            &mut reader,
            tmp,
            &bar,
            expected,
            entry,
            options.sha256_prefix.as_deref(),
        )
        .map_err(|message| {
            failure = Some(message);
            std::io::Error::from(std::io::ErrorKind::InvalidData)
        })
    });
    match (saved, failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(message)) => Err(FetchError::Source(message)),
        (Err(e), None) if !started => Err(FetchError::Source(format!(
            "cannot create a temporary file: {e}"
        ))),
        (Err(e), None) => Err(FetchError::Save(format!("cannot save the download: {e}"))),
    }
}

/// Copies `reader` to `out`, hashing as it goes, then checks the length against `expected` and
/// the digests against `entry` (and `sha256_prefix`).
fn copy_verified(
    reader: &mut impl Read,
    out: &mut impl Write,
    bar: &indicatif::ProgressBar,
    expected: Option<u64>,
    entry: &PretrainedEntry,
    sha256_prefix: Option<&str>,
) -> Result<(), String> {
    let (mut md5, mut sha) = (Md5::new(), sha2::Sha256::new());
    let mut buf = vec![0u8; 1 << 16];
    let mut written: u64 = 0;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("transfer broken after {written} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| format!("cannot write the temporary file: {e}"))?;
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
        written += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if let Some(len) = expected
        && written != len
    {
        return Err(format!("truncated: received {written} of {len} bytes"));
    }
    let (m, s) = (hex(&md5.finalize()), hex(&sha.finalize()));
    if !hash_ok(&m, &s, entry.md5_prefix, sha256_prefix) {
        return Err(format!(
            "hash mismatch: got md5 {m} for {written} bytes, expected {}",
            describe_hash(entry, sha256_prefix)
        ));
    }
    Ok(())
}

/// The cached file for a key of `M`'s registry, downloaded when needed.
pub fn fetch_pretrained<M: Pretrained>(key: &str) -> Result<PathBuf, ModelError> {
    let entry = M::pretrained_entry(key)?;
    let sha = pretrained_models()
        .into_iter()
        .find(|m| m.entry.key == key)
        .and_then(|m| m.sha256_prefix);
    let options = DownloadOptions {
        sha256_prefix: sha.map(str::to_string),
        ..DownloadOptions::default()
    };
    download_to(entry, &cache_dir()?, &options)
}

/// `M::from_pretrained(key)`: fetches the checkpoint and builds the model for it.
pub fn from_pretrained<M: Pretrained>(key: &str, device: &Device) -> Result<M, ModelError> {
    let entry = M::pretrained_entry(key)?;
    let path = fetch_pretrained::<M>(key)?;
    M::from_entry(entry, &path, device)
}

/// OML's `weights` argument: a key of `M`'s registry (downloaded) or a file path.
pub fn resolve_weights<M: Pretrained>(weights: &str) -> Result<PathBuf, ModelError> {
    if M::registry().iter().any(|e| e.key == weights) {
        return fetch_pretrained::<M>(weights);
    }
    let path = PathBuf::from(weights);
    if path.is_file() {
        return Ok(path);
    }
    Err(ModelError::Checkpoint {
        path: weights.to_string(),
        message: format!(
            "neither a file nor a pretrained key of this model; keys: {}",
            M::registry()
                .iter()
                .map(|e| e.key)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_preset_and_parsable_init_args() {
        let all = pretrained_models();
        assert_eq!(
            all.len(),
            RESNET_PRETRAINED.len()
                + VIT_PRETRAINED.len()
                + CLIP_PRETRAINED.len()
                + UNICOM_PRETRAINED.len()
                + MLP_PRETRAINED.len()
        );
        for m in &all {
            let v: serde_json::Value = serde_json::from_str(m.entry.init_args).unwrap();
            assert!(v.is_object(), "{}", m.entry.key);
            let size = if m.entry.key.contains("336") {
                336
            } else {
                224
            };
            assert_eq!(m.preprocessing.size, size, "{}", m.entry.key);
            assert!(
                m.entry.urls.iter().all(|u| u.starts_with("https://")),
                "{}",
                m.entry.key
            );
            // Every entry is checked by some hash.
            assert!(
                !m.entry.md5_prefix.is_empty() || m.sha256_prefix.is_some(),
                "{}",
                m.entry.key
            );
        }
        assert_eq!(preprocessing("resnet50_moco_v2").unwrap().resize, 256);
        assert_eq!(
            preprocessing("vits16_dino").unwrap().mode,
            ResizeMode::Stretch
        );
        assert_eq!(
            preprocessing("vits16_cub").unwrap().mode,
            ResizeMode::LongestSidePad
        );
        assert_eq!(
            pretrained_model("resnet18_imagenet1k_v1")
                .unwrap()
                .sha256_prefix,
            Some("f37072fd")
        );
        let dinov2 = preprocessing("vitl14_reg_dinov2").unwrap();
        assert_eq!(
            (dinov2.mode, dinov2.resize, dinov2.mean),
            (ResizeMode::ShorterSideBicubicCenterCrop, 224, IMAGENET_MEAN)
        );
        let clip = preprocessing("sber_vitb32_224").unwrap();
        assert_eq!(
            (clip.mode, clip.mean, clip.std),
            (ResizeMode::LongestSidePad, CLIP_MEAN, CLIP_STD)
        );
        let unicom = pretrained_model("vitl14_336px_unicom").unwrap();
        assert_eq!(unicom.preprocessing.resize, 336);
        assert_eq!(unicom.preprocessing.mean, CLIP_MEAN);
        assert_eq!(unicom.sha256_prefix.map(str::len), Some(64));
        assert_eq!(unicom.family, "vit_unicom");
        let e = preprocessing("vitg14_dinov2").unwrap_err().to_string();
        assert!(
            e.contains("vits14_reg_dinov2") && e.contains("openai_vitb16_224"),
            "{e}"
        );
    }

    #[test]
    fn urls_match_oml_storage() {
        for e in VIT_PRETRAINED.iter().chain(MLP_PRETRAINED) {
            let u = e.urls[0];
            assert!(
                u.starts_with(STORAGE_CKPTS) || u.starts_with("https://dl.fbaipublicfiles.com/"),
                "{u}"
            );
        }
    }

    #[test]
    fn cache_dir_honours_the_variable() {
        assert_eq!(
            cache_dir_from(Some("/x/y".into())).unwrap(),
            PathBuf::from("/x/y")
        );
        if let Ok(d) = cache_dir_from(None) {
            assert!(d.ends_with("oml/torch/checkpoints"), "{}", d.display());
        }
    }
}
