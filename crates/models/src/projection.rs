//! OML's `ExtractorWithMLP`: an extractor followed by torchvision's `MLP`
//! (`Linear → ReLU` per hidden layer, a final `Linear`; OML's dropout is 0).

use std::path::Path;

use burn::module::ModuleDisplay;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use oml_interfaces::{Extractor, Freezable, ModelError};

use crate::checkpoint::{KeyAction, LoadOptions, LoadReport, TorchLayout};
use crate::vit::ViTExtractor;

/// torchvision's `MLP(in, hidden)` without norm or dropout: ReLU between the Linears.
pub(crate) fn mlp(input: usize, sizes: &[usize], device: &Device) -> Vec<Linear> {
    let mut prev = input;
    sizes
        .iter()
        .map(|&s| {
            let l = LinearConfig::new(prev, s).init(device);
            prev = s;
            l
        })
        .collect()
}

/// OML's `ExtractorWithMLP`: `projection(extractor(x))`.
///
/// The backbone is trained only when `train_backbone` is set (OML's default is `false`):
/// otherwise its output is detached, so no gradient reaches it, and [`Freezable::freeze_backbone`] also
/// marks its parameters as not requiring gradients. Batch-norm layers of a frozen backbone keep
/// their training behaviour, as under OML's `torch.set_grad_enabled(False)`.
#[derive(Module, Debug)]
pub struct ExtractorWithMLP<E> {
    /// The backbone.
    pub extractor: E,
    /// The head: `projection.{0, 3, 6, …}` in PyTorch (ReLU and Dropout in between).
    pub projection: Vec<Linear>,
    /// Whether gradients reach the backbone.
    pub train_backbone: bool,
}

impl<E: Extractor + ModuleDisplay> ExtractorWithMLP<E> {
    /// Wraps `extractor` with a new MLP whose layer sizes are `mlp_features` (OML's argument).
    pub fn new(
        extractor: E,
        mlp_features: &[usize],
        train_backbone: bool,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if mlp_features.is_empty() || mlp_features.contains(&0) {
            return Err(ModelError::InvalidArgument {
                name: "mlp_features",
                value: format!("{mlp_features:?}"),
                reason: "needs at least one layer, all sizes > 0".into(),
            });
        }
        let projection = mlp(extractor.feat_dim(), mlp_features, device);
        let m = Self {
            extractor,
            projection,
            train_backbone: true,
        };
        Ok(if train_backbone {
            m
        } else {
            m.freeze_backbone()
        })
    }

    /// The MLP sizes (OML's `mlp_features`).
    pub fn mlp_features(&self) -> Vec<usize> {
        self.projection.iter().map(|l| l.weight.dims()[1]).collect()
    }

    /// Loads a checkpoint (`.bpk` ours, anything else PyTorch) as OML would (trial key
    /// `extractor.`).
    pub fn load_weights(
        self,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<(Self, LoadReport), ModelError>
    where
        E: TorchLayout,
    {
        let train = self.train_backbone;
        let (m, report) = crate::checkpoint::load_weights(self, path, options)?;
        // Re-assert the freezing state on the loaded parameters.
        Ok((
            if train {
                m.unfreeze_backbone()
            } else {
                m.freeze_backbone()
            },
            report,
        ))
    }
}

impl<E: Extractor + ModuleDisplay> Extractor for ExtractorWithMLP<E> {
    fn feat_dim(&self) -> usize {
        self.projection
            .last()
            .map(|l| l.weight.dims()[1])
            .unwrap_or_else(|| self.extractor.feat_dim())
    }

    fn extract(&self, images: Tensor<4>) -> Tensor<2> {
        self.project(self.extractor.extract(images))
    }

    /// The backbone's prepared inference, then the projection.
    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        let backbone = self.extractor.inference();
        Box::new(move |images| self.project(backbone(images)))
    }
}

impl<E: Extractor + ModuleDisplay> ExtractorWithMLP<E> {
    /// The MLP over the backbone's features (detached unless the backbone trains).
    fn project(&self, mut x: Tensor<2>) -> Tensor<2> {
        if !self.train_backbone {
            x = x.detach();
        }
        let last = self.projection.len().saturating_sub(1);
        for (i, l) in self.projection.iter().enumerate() {
            x = l.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

impl<E: Extractor + ModuleDisplay> Freezable for ExtractorWithMLP<E> {
    fn freeze_backbone(self) -> Self {
        Self {
            extractor: self.extractor.no_grad(),
            projection: self.projection,
            train_backbone: false,
        }
    }

    fn unfreeze_backbone(self) -> Self {
        Self {
            extractor: self.extractor.set_require_grad(true),
            projection: self.projection,
            train_backbone: true,
        }
    }
}

impl<E: TorchLayout> TorchLayout for ExtractorWithMLP<E> {
    fn trial_key(&self) -> &'static str {
        "extractor."
    }

    fn torch_root(&self) -> &'static str {
        ""
    }

    fn map_key(&self, key: &str) -> KeyAction {
        match key.strip_prefix("extractor.") {
            Some(inner) => self.extractor.map_key(inner).under("extractor."),
            None => KeyAction::Keep(key.to_string()),
        }
    }
}

// Its `Pretrained` impl (it parses an `ExtractorWithMlpConfig`) is in the registry, `config.rs`.
impl ExtractorWithMLP<ViTExtractor> {
    /// Downloads (or finds in the cache) a pretrained checkpoint (`vits16_224_mlp_384_inshop`)
    /// and builds OML's model for it.
    pub fn from_pretrained(key: &str, device: &Device) -> Result<Self, ModelError> {
        crate::zoo::from_pretrained(key, device)
    }
}
