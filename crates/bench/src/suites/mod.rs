//! One module per suite; each owns its arguments and its measurements.

use burn::tensor::Device;
use oml::models::{
    AnyExtractor, ClipArch, ResnetArch, ResnetExtractorConfig, UnicomArch, ViTCLIPExtractorConfig,
    ViTExtractorConfig, ViTUnicomExtractorConfig, VitArch,
};

pub mod conv;
pub mod datasets;
pub mod loss;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod sampler;
pub mod train_step;
pub mod vit_block;

/// A count option: a whole number of at least 1 (0 would divide by zero or time nothing).
pub fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// [`positive`] for `u32` options.
pub fn positive_u32(s: &str) -> std::result::Result<u32, String> {
    u32::try_from(positive(s)?).map_err(|e| e.to_string())
}

/// Peak resident set size of this process so far, in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The extractor `name` (an arch of OML's ResNet, ViT, CLIP or Unicom extractors, e.g.
/// `resnet18`, `vits16`, `vits14`, `vitb32_224`, `vitb32_unicom`) with random weights on
/// `device`.
pub fn extractor(name: &str, device: &Device) -> anyhow::Result<AnyExtractor> {
    if let Some(arch) = ResnetArch::ALL.into_iter().find(|a| a.name() == name) {
        return Ok(AnyExtractor::Resnet(
            ResnetExtractorConfig::new(arch).init(device)?,
        ));
    }
    if let Some(arch) = VitArch::ALL.into_iter().find(|a| a.name() == name) {
        return Ok(AnyExtractor::Vit(
            ViTExtractorConfig::new(arch).init(device)?,
        ));
    }
    if let Some(arch) = ClipArch::ALL.into_iter().find(|a| a.name() == name) {
        // OML's zoo keys use unnormalised CLIP features.
        let config = ViTCLIPExtractorConfig::new(arch).with_normalise_features(false);
        return Ok(AnyExtractor::VitClip(config.init(device)?));
    }
    if let Some(arch) = UnicomArch::ALL.into_iter().find(|a| a.name() == name) {
        let config = ViTUnicomExtractorConfig::new(arch).with_normalise_features(true);
        return Ok(AnyExtractor::VitUnicom(config.init(device)?));
    }
    let known: Vec<&str> = ResnetArch::ALL
        .iter()
        .map(|a| a.name())
        .chain(VitArch::ALL.iter().map(|a| a.name()))
        .chain(ClipArch::ALL.iter().map(|a| a.name()))
        .chain(UnicomArch::ALL.iter().map(|a| a.name()))
        .collect();
    anyhow::bail!(
        "unknown model `{name}`: expected one of {}",
        known.join(", ")
    )
}
