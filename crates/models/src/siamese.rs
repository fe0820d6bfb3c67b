//! OML's pairwise models (`oml/models/meta/siamese.py`).

use std::path::Path;

use burn::module::ModuleDisplay;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use oml_interfaces::{Extractor, Freezable, ModelError, PairwiseModel};

use crate::checkpoint::{KeyAction, LoadOptions, LoadReport, TorchLayout};

/// `||a − b||₂` per row (OML's `elementwise_dist(p=2)`).
fn row_distance(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    (a - b).square().sum_dim(1).sqrt().squeeze_dim(1)
}

/// `[B, …] -> [B, rest]`: embeddings may arrive as `[B, D, 1, 1]` or any 4-D layout.
fn flat(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c * h * w])
}

/// OML's `LinearTrivialDistanceSiamese`: `||P·x1 − P·x2||₂ + output_bias` with a shared
/// bias-free `P` (the identity when `identity_init`). A development model on embeddings.
#[derive(Module, Debug)]
pub struct LinearTrivialDistanceSiamese {
    /// The shared projection (`proj`).
    pub proj: Linear,
    /// Added to the distance.
    pub output_bias: f64,
}

impl LinearTrivialDistanceSiamese {
    /// OML's constructor.
    pub fn new(
        feat_dim: usize,
        identity_init: bool,
        output_bias: f64,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if feat_dim == 0 {
            return Err(ModelError::InvalidArgument {
                name: "feat_dim",
                value: "0".into(),
                reason: "must be > 0".into(),
            });
        }
        let mut proj = LinearConfig::new(feat_dim, feat_dim)
            .with_bias(false)
            .init(device);
        if identity_init {
            proj.weight = proj.weight.map(|w| Tensor::eye(feat_dim, &w.device()));
        }
        Ok(Self { proj, output_bias })
    }

    /// The embedding size.
    pub fn feat_dim(&self) -> usize {
        self.proj.weight.dims()[0]
    }

    /// # Shapes
    /// `[B, D]`, `[B, D] -> [B]`.
    pub fn forward_embeddings(&self, x1: Tensor<2>, x2: Tensor<2>) -> Tensor<1> {
        row_distance(self.proj.forward(x1), self.proj.forward(x2)) + self.output_bias
    }
}

impl PairwiseModel for LinearTrivialDistanceSiamese {
    /// Inputs are embeddings shaped `[B, D, 1, 1]` (any 4-D layout flattening to `[B, D]`).
    fn forward_pair(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
        self.forward_embeddings(flat(x1), flat(x2))
    }
}

/// OML's `TrivialDistanceSiamese`: `||f(x1) − f(x2)||₂ + output_bias`.
#[derive(Module, Debug)]
pub struct TrivialDistanceSiamese<E> {
    /// The shared extractor.
    pub extractor: E,
    /// Added to the distance.
    pub output_bias: f64,
}

impl<E: Extractor + ModuleDisplay> TrivialDistanceSiamese<E> {
    /// OML's constructor.
    pub fn new(extractor: E, output_bias: f64) -> Self {
        Self {
            extractor,
            output_bias,
        }
    }
}

impl<E: Extractor + ModuleDisplay> PairwiseModel for TrivialDistanceSiamese<E> {
    fn forward_pair(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
        row_distance(self.extractor.extract(x1), self.extractor.extract(x2)) + self.output_bias
    }
}

/// OML's `ConcatSiamese`: both images stacked along the height axis (`[B, C, 2H, W]`), one
/// extractor pass, then an MLP head `Linear → Sigmoid → Dropout(0.5)` per hidden layer and a final
/// bias-free `Linear(·, 1)`. `forward_pair` gives a logit; `predict` a sigmoid, averaged over both
/// orders when `use_tta`. High output means "different" (it is read as a distance).
#[derive(Module, Debug)]
pub struct ConcatSiamese<E> {
    /// The backbone.
    pub extractor: E,
    /// Head Linears (`head.0`, `head.3`, … in PyTorch).
    pub head: Vec<Linear>,
    /// Dropout after each hidden layer (active only in training on an autodiff device).
    pub dropout: Dropout,
    /// Average `predict` over `(x1, x2)` and `(x2, x1)`.
    pub use_tta: bool,
    /// Whether gradients reach the backbone (starts `true`, as in OML).
    pub train_backbone: bool,
}

impl<E: Extractor + ModuleDisplay> ConcatSiamese<E> {
    /// OML's constructor (without `weights`; see [`Self::load_weights`]).
    pub fn new(
        extractor: E,
        mlp_hidden_dims: &[usize],
        use_tta: bool,
        device: &Device,
    ) -> Result<Self, ModelError> {
        if mlp_hidden_dims.contains(&0) {
            return Err(ModelError::InvalidArgument {
                name: "mlp_hidden_dims",
                value: format!("{mlp_hidden_dims:?}"),
                reason: "sizes must be > 0".into(),
            });
        }
        let mut head = Vec::with_capacity(mlp_hidden_dims.len() + 1);
        let mut prev = extractor.feat_dim();
        for &h in mlp_hidden_dims {
            head.push(LinearConfig::new(prev, h).init(device));
            prev = h;
        }
        head.push(LinearConfig::new(prev, 1).with_bias(false).init(device));
        Ok(Self {
            extractor,
            head,
            dropout: DropoutConfig::new(0.5).init(),
            use_tta,
            train_backbone: true,
        })
    }

    /// The hidden sizes (OML's `mlp_hidden_dims`).
    pub fn mlp_hidden_dims(&self) -> Vec<usize> {
        self.head[..self.head.len() - 1]
            .iter()
            .map(|l| l.weight.dims()[1])
            .collect()
    }

    /// Loads a checkpoint (`.bpk` ours, anything else PyTorch) as OML would (trial key
    /// `extractor.`, criterion keys kept).
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

impl<E: Extractor + ModuleDisplay> PairwiseModel for ConcatSiamese<E> {
    fn forward_pair(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
        let mut x = self.extractor.extract(Tensor::cat(vec![x1, x2], 2));
        if !self.train_backbone {
            x = x.detach();
        }
        let last = self.head.len() - 1;
        for (i, l) in self.head.iter().enumerate() {
            x = l.forward(x);
            if i < last {
                x = self.dropout.forward(sigmoid(x));
            }
        }
        let [b, _] = x.dims();
        x.reshape([b])
    }

    fn predict(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
        let p = sigmoid(self.forward_pair(x1.clone(), x2.clone()));
        if self.use_tta {
            (p + sigmoid(self.forward_pair(x2, x1))) / 2.0
        } else {
            p
        }
    }
}

impl<E: Extractor + ModuleDisplay> Freezable for ConcatSiamese<E> {
    fn freeze_backbone(self) -> Self {
        Self {
            extractor: self.extractor.no_grad(),
            train_backbone: false,
            ..self
        }
    }

    fn unfreeze_backbone(self) -> Self {
        Self {
            extractor: self.extractor.set_require_grad(true),
            train_backbone: true,
            ..self
        }
    }
}

impl<E: TorchLayout> TorchLayout for ConcatSiamese<E> {
    fn trial_key(&self) -> &'static str {
        "extractor."
    }

    fn torch_root(&self) -> &'static str {
        ""
    }

    /// OML's `ConcatSiamese` does not call `remove_criterion_in_state_dict`.
    fn removes_criterion(&self) -> bool {
        false
    }

    fn map_key(&self, key: &str) -> KeyAction {
        match key.strip_prefix("extractor.") {
            Some(inner) => self.extractor.map_key(inner).under("extractor."),
            None => KeyAction::Keep(key.to_string()),
        }
    }
}

impl<E: TorchLayout> TorchLayout for TrivialDistanceSiamese<E> {
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

impl TorchLayout for LinearTrivialDistanceSiamese {
    fn trial_key(&self) -> &'static str {
        "proj."
    }

    fn torch_root(&self) -> &'static str {
        ""
    }
}
