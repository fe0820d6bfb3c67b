//! OML's `ResnetExtractor`: torchvision ResNet-18/34/50/101/152 (and `resnet50_projector`) with
//! optional GeM pooling, fc removal and feature normalisation.
//!
//! Field names mirror torchvision's state-dict keys (`conv1`, `bn1`, `layer1.0.conv1`, …), so a
//! checkpoint maps 1:1 except for `downsample.0/1` (→ `downsample.conv/bn`) and the projector's
//! `fc.0/fc.2` (→ `fc_hidden`/`fc`).

use std::convert::Infallible;
use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use oml_interfaces::{Extractor, ModelError, Pretrained, PretrainedEntry};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{KeyAction, LoadOptions, LoadReport, TorchLayout};
use crate::nhwc::{self, HostConv, Map};
use crate::ops;

/// ResNet variants OML's `ResnetExtractor` accepts (`arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResnetArch {
    /// `resnet18`: basic blocks `[2, 2, 2, 2]`, 512 features.
    Resnet18,
    /// `resnet34`: basic blocks `[3, 4, 6, 3]`, 512 features.
    Resnet34,
    /// `resnet50`: bottlenecks `[3, 4, 6, 3]`, 2048 features.
    Resnet50,
    /// `resnet101`: bottlenecks `[3, 4, 23, 3]`, 2048 features.
    Resnet101,
    /// `resnet152`: bottlenecks `[3, 8, 36, 3]`, 2048 features.
    Resnet152,
    /// `resnet50_projector`: resnet50 whose fc is `Linear(2048, 2048) → ReLU → Linear(2048, 128)`
    /// (MoCo v2's head).
    Resnet50Projector,
}

impl ResnetArch {
    /// All variants, in OML's order.
    pub const ALL: [ResnetArch; 6] = [
        Self::Resnet18,
        Self::Resnet34,
        Self::Resnet50,
        Self::Resnet50Projector,
        Self::Resnet101,
        Self::Resnet152,
    ];

    /// OML's name (`resnet50_projector`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Resnet18 => "resnet18",
            Self::Resnet34 => "resnet34",
            Self::Resnet50 => "resnet50",
            Self::Resnet101 => "resnet101",
            Self::Resnet152 => "resnet152",
            Self::Resnet50Projector => "resnet50_projector",
        }
    }

    /// Blocks per stage.
    pub fn layers(self) -> [usize; 4] {
        match self {
            Self::Resnet18 => [2, 2, 2, 2],
            Self::Resnet34 => [3, 4, 6, 3],
            Self::Resnet50 | Self::Resnet50Projector => [3, 4, 6, 3],
            Self::Resnet101 => [3, 4, 23, 3],
            Self::Resnet152 => [3, 8, 36, 3],
        }
    }

    /// Whether the blocks are bottlenecks (expansion 4).
    pub fn bottleneck(self) -> bool {
        !matches!(self, Self::Resnet18 | Self::Resnet34)
    }

    /// Channels of the last conv layer (512 or 2048).
    pub fn last_channels(self) -> usize {
        if self.bottleneck() { 2048 } else { 512 }
    }
}

impl std::fmt::Display for ResnetArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Arguments of OML's `ResnetExtractor` (`extractor: {name: resnet, args: …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResnetExtractorConfig {
    /// Architecture.
    pub arch: ResnetArch,
    /// GeM power replacing average pooling (`None`: average pooling). Default: `None`.
    #[serde(default)]
    pub gem_p: Option<f64>,
    /// Replace fc by identity (features are then the pooled last conv map). Default: `true`.
    #[serde(default = "default_true")]
    pub remove_fc: bool,
    /// L2-normalise the output (norm detached, as OML). Default: `false`.
    #[serde(default)]
    pub normalise_features: bool,
    /// Weights: a checkpoint path or a pretrained key (used by [`build`](Self::build);
    /// [`init`](Self::init) ignores it). Default: none (random weights).
    #[serde(default)]
    pub weights: Option<String>,
}

pub(crate) fn default_true() -> bool {
    true
}

impl ResnetExtractorConfig {
    /// OML's usual arguments for `arch`: average pooling, fc removed, no normalisation.
    pub fn new(arch: ResnetArch) -> Self {
        Self {
            arch,
            gem_p: None,
            remove_fc: true,
            normalise_features: false,
            weights: None,
        }
    }

    /// Sets `gem_p`.
    pub fn with_gem_p(mut self, p: Option<f64>) -> Self {
        self.gem_p = p;
        self
    }

    /// Sets `remove_fc`.
    pub fn with_remove_fc(mut self, remove: bool) -> Self {
        self.remove_fc = remove;
        self
    }

    /// Sets `normalise_features`.
    pub fn with_normalise_features(mut self, normalise: bool) -> Self {
        self.normalise_features = normalise;
        self
    }

    /// Sets `weights` (a path or a pretrained key).
    pub fn with_weights(mut self, weights: impl Into<String>) -> Self {
        self.weights = Some(weights.into());
        self
    }

    /// Builds the extractor with random weights (`weights` is not read).
    pub fn init(&self, device: &Device) -> Result<ResnetExtractor, ModelError> {
        if let Some(p) = self.gem_p
            && !(p.is_finite() && p > 0.0)
        {
            return Err(ModelError::InvalidArgument {
                name: "gem_p",
                value: p.to_string(),
                reason: "must be a finite number > 0".into(),
            });
        }
        Ok(ResnetExtractor {
            model: ResNet::new(self, device),
            config: self.clone(),
        })
    }
}

/// torchvision's `downsample = Sequential(conv1x1, BatchNorm2d)`.
#[derive(Module, Debug)]
pub struct Downsample {
    /// `downsample.0`.
    pub conv: Conv2d,
    /// `downsample.1`.
    pub bn: BatchNorm,
}

/// A torchvision `BasicBlock` (no `conv3`) or `Bottleneck` (with `conv3`, stride on `conv2`).
#[derive(Module, Debug)]
pub struct Block {
    /// First conv (3×3 basic, 1×1 bottleneck).
    pub conv1: Conv2d,
    /// Its batch norm.
    pub bn1: BatchNorm,
    /// Second conv (3×3, carries the stride in a bottleneck).
    pub conv2: Conv2d,
    /// Its batch norm.
    pub bn2: BatchNorm,
    /// Bottleneck's 1×1 expansion conv.
    pub conv3: Option<Conv2d>,
    /// Its batch norm.
    pub bn3: Option<BatchNorm>,
    /// Projection of the identity when the shape changes.
    pub downsample: Option<Downsample>,
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

fn bn(c: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(c).init(device)
}

impl Block {
    fn new(
        inplanes: usize,
        planes: usize,
        stride: usize,
        bottleneck: bool,
        device: &Device,
    ) -> Self {
        let expansion = if bottleneck { 4 } else { 1 };
        let out = planes * expansion;
        let downsample = (stride != 1 || inplanes != out).then(|| Downsample {
            conv: conv(inplanes, out, 1, stride, device),
            bn: bn(out, device),
        });
        if bottleneck {
            Self {
                conv1: conv(inplanes, planes, 1, 1, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, stride, device),
                bn2: bn(planes, device),
                conv3: Some(conv(planes, out, 1, 1, device)),
                bn3: Some(bn(out, device)),
                downsample,
            }
        } else {
            Self {
                conv1: conv(inplanes, planes, 3, stride, device),
                bn1: bn(planes, device),
                conv2: conv(planes, planes, 3, 1, device),
                bn2: bn(planes, device),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }

    /// # Shapes
    /// `[B, Cin, H, W] -> [B, Cout, H/stride, W/stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let conv =
            |&(layer, bn): &(&Conv2d, &BatchNorm), x: &Tensor<4>, r: Option<&Tensor<4>>, relu| {
                Ok::<_, Infallible>(ops::conv2d_bn_add(
                    layer,
                    Some(bn),
                    r.cloned(),
                    relu,
                    x.clone(),
                ))
            };
        match self.wiring().run(&x, conv) {
            Ok(y) => y,
            Err(never) => match never {},
        }
    }

    /// The block's convolutions with their BatchNorms, in wiring order.
    fn wiring(&self) -> Wiring<(&Conv2d, &BatchNorm)> {
        Wiring {
            down: self.downsample.as_ref().map(|d| (&d.conv, &d.bn)),
            c1: (&self.conv1, &self.bn1),
            c2: (&self.conv2, &self.bn2),
            c3: self.conv3.as_ref().zip(self.bn3.as_ref()),
        }
    }
}

/// A block's layers (`L`: a convolution with its BatchNorm, or its host form) in wiring order:
/// the shortcut's projection, then conv1 … conv3 (conv3 in bottlenecks only).
struct Wiring<L> {
    down: Option<L>,
    c1: L,
    c2: L,
    c3: Option<L>,
}

impl<L> Wiring<L> {
    /// The block's wiring, for either kind of layer and activation: `conv(layer, input,
    /// residual, relu)` is `relu?(layer(input) + residual?)`. The last convolution adds the
    /// shortcut and applies the ReLU as it writes its output.
    fn run<A, E>(
        &self,
        x: &A,
        conv: impl Fn(&L, &A, Option<&A>, bool) -> Result<A, E>,
    ) -> Result<A, E> {
        let projected = match &self.down {
            Some(d) => Some(conv(d, x, None, false)?),
            None => None,
        };
        let identity = projected.as_ref().unwrap_or(x);
        let out = conv(&self.c1, x, None, true)?;
        match &self.c3 {
            Some(c3) => {
                // A bottleneck: conv2's output goes through a ReLU into conv3.
                let out = conv(&self.c2, &out, None, true)?;
                conv(c3, &out, Some(identity), true)
            }
            None => conv(&self.c2, &out, Some(identity), true),
        }
    }

    /// Every layer mapped by `f`; `None` if `f` gives `None` for one.
    fn try_map<M>(&self, f: impl Fn(&L) -> Option<M>) -> Option<Wiring<M>> {
        Some(Wiring {
            down: match &self.down {
                Some(d) => Some(f(d)?),
                None => None,
            },
            c1: f(&self.c1)?,
            c2: f(&self.c2)?,
            c3: match &self.c3 {
                Some(c) => Some(f(c)?),
                None => None,
            },
        })
    }
}

/// A ResNet body prepared for inference on the host once: every convolution an implicit GEMM
/// over NHWC activations ([`crate::nhwc`]) with its BatchNorm folded and its weights laid out,
/// from the stem to the last block without a layout change or a pass of its own for the
/// BatchNorms, residuals and ReLUs.
pub(crate) struct HostResNet {
    stem: HostConv,
    /// The max pool's kernel, stride and (symmetric) padding.
    pool: [[usize; 2]; 3],
    blocks: Vec<Wiring<HostConv>>,
}

impl HostResNet {
    /// `None` (then Burn's layers run) where a layer is outside what the host path covers.
    pub fn new(net: &ResNet) -> Option<Self> {
        let pool = &net.maxpool;
        let padding = match pool.padding {
            PaddingConfig2d::Explicit(t, l, b, r) if t == b && l == r => [t, l],
            PaddingConfig2d::Valid => [0, 0],
            _ => return None,
        };
        if pool.dilation != [1, 1] || pool.ceil_mode {
            return None;
        }
        let blocks = [&net.layer1, &net.layer2, &net.layer3, &net.layer4]
            .into_iter()
            .flatten()
            .map(|b| b.wiring().try_map(|&(c, bn)| HostConv::new(c, Some(bn))))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            stem: HostConv::new(&net.conv1, Some(&net.bn1))?,
            pool: [pool.kernel_size, pool.stride, padding],
            blocks,
        })
    }

    /// The last conv feature map; `None` where the input does not fit the layers.
    pub fn forward_map(&self, x: Tensor<4>) -> Option<Tensor<4>> {
        let device = x.device();
        let x = Map::from_tensor(x)?;
        let stem = self.stem.forward(&x, None, true)?;
        let [kernel, stride, padding] = self.pool;
        let mut x = nhwc::max_pool(&stem, kernel, stride, padding)?;
        for block in &self.blocks {
            let conv =
                |c: &HostConv, x: &Map, r: Option<&Map>, relu| c.forward(x, r, relu).ok_or(());
            x = block.run(&x, conv).ok()?;
        }
        Some(x.into_tensor(&device))
    }
}

/// torchvision's ResNet body (names as its state dict), with OML's pooling and fc choices.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem conv 7×7/2.
    pub conv1: Conv2d,
    /// Stem batch norm.
    pub bn1: BatchNorm,
    /// Stem max pool 3×3/2.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 1).
    pub layer1: Vec<Block>,
    /// Stage 2 (stride 2).
    pub layer2: Vec<Block>,
    /// Stage 3 (stride 2).
    pub layer3: Vec<Block>,
    /// Stage 4 (stride 2).
    pub layer4: Vec<Block>,
    /// The projector's first Linear (`fc.0` in PyTorch), when kept.
    pub fc_hidden: Option<Linear>,
    /// The classifier (`fc`) or the projector's last Linear (`fc.2`), when kept.
    pub fc: Option<Linear>,
    /// GeM power; `None` is average pooling.
    pub gem_p: Option<f64>,
}

impl ResNet {
    fn new(config: &ResnetExtractorConfig, device: &Device) -> Self {
        let arch = config.arch;
        let bottleneck = arch.bottleneck();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut inplanes = 64;
        let mut stage = |planes: usize, blocks: usize, stride: usize| -> Vec<Block> {
            let mut v = Vec::with_capacity(blocks);
            for i in 0..blocks {
                v.push(Block::new(
                    inplanes,
                    planes,
                    if i == 0 { stride } else { 1 },
                    bottleneck,
                    device,
                ));
                inplanes = planes * expansion;
            }
            v
        };
        let [l1, l2, l3, l4] = arch.layers();
        let (layer1, layer2, layer3, layer4) = (
            stage(64, l1, 1),
            stage(128, l2, 2),
            stage(256, l3, 2),
            stage(512, l4, 2),
        );
        let feat = arch.last_channels();
        let (fc_hidden, fc) = match (config.remove_fc, arch) {
            (true, _) => (None, None),
            (false, ResnetArch::Resnet50Projector) => (
                Some(LinearConfig::new(feat, feat).init(device)),
                Some(LinearConfig::new(feat, 128).init(device)),
            ),
            (false, _) => (None, Some(LinearConfig::new(feat, 1000).init(device))),
        };
        Self {
            conv1: Conv2dConfig::new([3, 64], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .with_initializer(Initializer::KaimingNormal {
                    gain: std::f64::consts::SQRT_2,
                    fan_out_only: true,
                })
                .init(device),
            bn1: bn(64, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            fc_hidden,
            fc,
            gem_p: config.gem_p,
        }
    }

    /// The last conv feature map.
    ///
    /// # Shapes
    /// `[B, 3, H, W] -> [B, C, H/32, W/32]`.
    pub fn forward_map(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_map_with(None, x)
    }

    /// [`Self::forward_map`] through `host` when given (prepared once by the caller), else
    /// through a [`HostResNet`] prepared now on a CPU backend at inference, else Burn's layers.
    fn forward_map_with(&self, host: Option<&HostResNet>, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        if ops::host_inference(&device) {
            let prepared;
            let host = match host {
                Some(h) => Some(h),
                None => {
                    prepared = HostResNet::new(self);
                    prepared.as_ref()
                }
            };
            if let Some(map) = host.and_then(|h| h.forward_map(x.clone())) {
                return map;
            }
        }
        let mut x = self
            .maxpool
            .forward(ops::conv2d_bn(&self.conv1, Some(&self.bn1), true, x));
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                x = block.forward(x);
            }
        }
        x
    }

    /// Pooled features, then fc when kept.
    ///
    /// # Shapes
    /// `[B, 3, H, W] -> [B, feat_dim]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head(self.forward_map(x))
    }

    /// Pooling, then fc when kept: `[B, C, h, w] -> [B, feat_dim]`.
    fn head(&self, map: Tensor<4>) -> Tensor<2> {
        let mut x = match self.gem_p {
            Some(p) => ops::gem(map, p),
            None => ops::avg_pool(map),
        };
        if let Some(h) = &self.fc_hidden {
            x = relu(h.forward(x));
        }
        if let Some(fc) = &self.fc {
            x = fc.forward(x);
        }
        x
    }
}

/// OML's `ResnetExtractor`.
///
/// ```
/// use burn::prelude::*;
/// use oml_interfaces::Extractor;
/// use oml_models::{ResnetArch, ResnetExtractorConfig};
///
/// let device = oml_interfaces::device::select_device(None)?;
/// let extractor = ResnetExtractorConfig::new(ResnetArch::Resnet18).with_gem_p(Some(3.0)).init(&device)?;
/// let images = Tensor::<4>::zeros([2, 3, 64, 64], &device);
/// assert_eq!(extractor.extract(images).dims(), [2, 512]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Module, Debug)]
pub struct ResnetExtractor {
    /// The torchvision network (OML's `self.model`).
    pub model: ResNet,
    /// The arguments it was built from.
    #[module(skip)]
    pub config: ResnetExtractorConfig,
}

// `build`, `config`, `load_weights`, `from_pretrained` and `Pretrained`: `pretrained_extractor!`
// below; `save` and `load`, which store an `ExtractorConfig`, are with the registry in `config.rs`.

impl Extractor for ResnetExtractor {
    fn feat_dim(&self) -> usize {
        match &self.model.fc {
            Some(fc) => fc.weight.dims()[1],
            None => self.config.arch.last_channels(),
        }
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        self.finish(self.model.forward(images))
    }

    /// The host path's convolutions are prepared (BatchNorms folded, weights laid out) once,
    /// not at every batch.
    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        let host = ops::host_inference(&self.model.conv1.weight.device())
            .then(|| HostResNet::new(&self.model))
            .flatten();
        Box::new(move |images| {
            let map = self.model.forward_map_with(host.as_ref(), images);
            self.finish(self.model.head(map))
        })
    }
}

impl ResnetExtractor {
    /// OML's optional normalisation of the features.
    fn finish(&self, x: Tensor<2>) -> Tensor<2> {
        if self.config.normalise_features {
            ops::normalise(x)
        } else {
            x
        }
    }
}

impl TorchLayout for ResnetExtractor {
    fn trial_key(&self) -> &'static str {
        "layer4."
    }

    fn torch_root(&self) -> &'static str {
        "model."
    }

    fn map_key(&self, key: &str) -> KeyAction {
        let Some(rest) = key.strip_prefix("model.") else {
            return KeyAction::Keep(key.to_string());
        };
        if let Some(fc) = rest.strip_prefix("fc.") {
            if self.config.remove_fc {
                return KeyAction::Drop;
            }
            if self.config.arch == ResnetArch::Resnet50Projector {
                if let Some(p) = fc.strip_prefix("0.") {
                    return KeyAction::Keep(format!("model.fc_hidden.{p}"));
                }
                if let Some(p) = fc.strip_prefix("2.") {
                    return KeyAction::Keep(format!("model.fc.{p}"));
                }
            }
            return KeyAction::Keep(key.to_string());
        }
        KeyAction::Keep(
            key.replace(".downsample.0.", ".downsample.conv.")
                .replace(".downsample.1.", ".downsample.bn."),
        )
    }

    /// MoCo's checkpoints (`resnet50_moco_v2`) hold both encoders: keep `module.encoder_q.*`
    /// (OML's `load_moco_weights`), drop the key encoder and the queue.
    fn raw_key(&self, key: &str) -> Option<String> {
        if let Some(rest) = key.strip_prefix("module.encoder_q.") {
            return Some(rest.to_string());
        }
        if key.starts_with("module.encoder_k.")
            || key == "module.queue"
            || key == "module.queue_ptr"
        {
            return None;
        }
        Some(key.to_string())
    }
}

pretrained_extractor!(
    ResnetExtractor,
    ResnetExtractorConfig,
    crate::zoo::RESNET_PRETRAINED
);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Param, RunningState};
    use burn::tensor::Distribution;
    use oml_interfaces::cpu::host_f32;
    use oml_interfaces::device::test_device;

    /// The prepared inference gives `extract`'s values at every batch (weights prepared once,
    /// normalisation and fc included), and an extractor over it (`extractor_with_mlp`) too.
    #[test]
    fn prepared_inference_equals_extract() {
        let device = test_device();
        let model = ResnetExtractorConfig::new(ResnetArch::Resnet18)
            .with_normalise_features(true)
            .init(&device)
            .unwrap();
        let run = model.inference();
        for size in [32, 45] {
            let x =
                Tensor::<4>::random([2, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
            let (got, want) = (
                host_f32(run(x.clone())).unwrap(),
                host_f32(model.extract(x)).unwrap(),
            );
            assert_eq!(got, want, "size {size}");
        }
    }

    /// Running statistics and affine parameters away from the identity, so that folding them
    /// into the convolutions is really checked.
    fn randomise(bn: &mut BatchNorm, device: &Device) {
        let [c] = bn.gamma.dims();
        let normal = Distribution::Normal(0.0, 0.5);
        bn.gamma = Param::from_tensor(Tensor::random([c], Distribution::Uniform(0.5, 1.5), device));
        bn.beta = Param::from_tensor(Tensor::random([c], normal, device));
        bn.running_mean = RunningState::new(Tensor::random([c], normal, device));
        bn.running_var =
            RunningState::new(Tensor::random([c], Distribution::Uniform(0.5, 2.0), device));
    }

    #[test]
    fn host_body_matches_burns_layers_for_basic_blocks_and_bottlenecks() {
        let device = test_device();
        for arch in [ResnetArch::Resnet18, ResnetArch::Resnet50] {
            let mut model = ResnetExtractorConfig::new(arch)
                .init(&device)
                .unwrap()
                .model;
            randomise(&mut model.bn1, &device);
            for layer in [
                &mut model.layer1,
                &mut model.layer2,
                &mut model.layer3,
                &mut model.layer4,
            ] {
                for block in layer.iter_mut() {
                    randomise(&mut block.bn1, &device);
                    randomise(&mut block.bn2, &device);
                    if let Some(bn) = &mut block.bn3 {
                        randomise(bn, &device);
                    }
                    if let Some(d) = &mut block.downsample {
                        randomise(&mut d.bn, &device);
                    }
                }
            }
            // Odd, non-square sizes: every padding edge and a last stage of 2×1 positions.
            let x = Tensor::<4>::random([2, 3, 45, 23], Distribution::Normal(0.0, 1.0), &device);
            let got = HostResNet::new(&model)
                .expect("the host path applies")
                .forward_map(x.clone())
                .expect("the input fits");
            // An autodiff device takes Burn's layers: the reference.
            let ad = device.clone().autodiff();
            let want = model.fork(&ad).forward_map(x.to_device(&ad));
            assert_eq!(got.dims(), want.dims(), "{arch:?}");
            let (got, want) = (host_f32(got).unwrap(), host_f32(want).unwrap());
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{arch:?}: an all-zero output checks nothing");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 * (scale + w.abs()),
                    "{arch:?} at {i}: {g} vs {w}"
                );
            }
        }
    }
}
