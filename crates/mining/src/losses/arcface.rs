//! ArcFace (additive angular margin) loss, a Burn module with a trainable class matrix.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu};
use oml_interfaces::{Criterion, LossError, LossOutput, Reduction};
use std::collections::BTreeMap;

use super::smoothing::{Label2Category, label_smoothing};

/// ArcFace's hyper-parameters (OML's defaults: `m = 0.5`, `s = 64`, no smoothing, `mean`).
#[derive(Debug, Clone, PartialEq)]
pub struct ArcFaceOptions {
    /// Additive angular margin.
    pub m: f64,
    /// Logit scale.
    pub s: f64,
    /// Label smoothing strength, `0 ≤ ε < 1`.
    pub smoothing_epsilon: f64,
    /// Smooth only within each label's category.
    pub label2category: Option<Label2Category>,
    /// Reduction of the per-sample cross-entropy.
    pub reduction: Reduction,
}

impl Default for ArcFaceOptions {
    fn default() -> Self {
        Self {
            m: 0.5,
            s: 64.0,
            smoothing_epsilon: 0.0,
            label2category: None,
            reduction: Reduction::Mean,
        }
    }
}

/// The validated, precomputed constants of an [`ArcFaceLoss`].
#[derive(Debug, Clone, PartialEq)]
pub struct ArcFaceSettings {
    options: ArcFaceOptions,
    num_classes: usize,
    /// Category index of every class, when smoothing within categories.
    categories: Option<Vec<usize>>,
}

impl ArcFaceSettings {
    fn new(options: ArcFaceOptions, num_classes: usize) -> Result<Self, LossError> {
        let invalid = |name: &'static str, value: f64, reason: &str| LossError::InvalidParameter {
            name,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if num_classes == 0 {
            return Err(invalid("num_classes", 0.0, "must be at least 1"));
        }
        if !options.m.is_finite() {
            return Err(invalid("m", options.m, "must be finite"));
        }
        if !(options.s > 0.0 && options.s.is_finite()) {
            return Err(invalid("s", options.s, "must be positive and finite"));
        }
        let eps = options.smoothing_epsilon;
        if !(0.0..1.0).contains(&eps) {
            return Err(invalid(
                "smoothing_epsilon",
                eps,
                "must satisfy 0 <= smoothing_epsilon < 1",
            ));
        }
        let categories = match &options.label2category {
            Some(l2c) => Some(l2c.class_categories(num_classes)?),
            None => None,
        };
        Ok(Self {
            options,
            num_classes,
            categories,
        })
    }

    /// The options.
    pub fn options(&self) -> &ArcFaceOptions {
        &self.options
    }
}

/// OML's `ArcFaceLoss(in_features, num_classes, m, s, smoothing_epsilon, label2category,
/// reduction)`:
/// `cos = normalize(x)·normalize(W)ᵀ`, `φ = cos(θ + m)` (or `cos − m·sin m` past `π − m`),
/// logits `s·(φ on the target class, cos elsewhere)`, cross-entropy against the (optionally
/// smoothed) targets. Labels must be `0..num_classes`.
///
/// Unlike OML, `sin = sqrt(1 − cos²)` is computed on `cos` clamped to `[−1, 1]` with a floor
/// inside the root, so rounding never yields NaN values or gradients. Logs `accuracy`
/// (`argmax cos == y`, before the margin). A Burn [`Module`]: put it in the trained model so
/// that `weight` is optimised.
#[derive(Module, Debug)]
pub struct ArcFaceLoss {
    /// Class matrix `[num_classes, in_features]` (Xavier-uniform initialised).
    pub weight: Param<Tensor<2>>,
    #[module(skip)]
    settings: ArcFaceSettings,
}

/// L2 row normalisation as `F.normalize` (norm floored at 1e-12).
fn normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).clamp_min(1e-24).sqrt();
    x / norm
}

impl ArcFaceLoss {
    /// A new loss with a Xavier-uniform class matrix on `device`.
    pub fn new(
        in_features: usize,
        num_classes: usize,
        options: ArcFaceOptions,
        device: &Device,
    ) -> Result<Self, LossError> {
        if in_features == 0 {
            return Err(LossError::InvalidParameter {
                name: "in_features",
                value: "0".to_string(),
                reason: "must be at least 1".to_string(),
            });
        }
        let settings = ArcFaceSettings::new(options, num_classes)?;
        let weight = Initializer::XavierUniform { gain: 1.0 }.init_with(
            [num_classes, in_features],
            Some(in_features),
            Some(num_classes),
            device,
        );
        Ok(Self { weight, settings })
    }

    /// A loss with a given class matrix `[num_classes, in_features]` (trainable).
    pub fn with_weight(weight: Tensor<2>, options: ArcFaceOptions) -> Result<Self, LossError> {
        let [num_classes, _] = weight.dims();
        let settings = ArcFaceSettings::new(options, num_classes)?;
        Ok(Self {
            weight: Param::from_tensor(weight),
            settings,
        })
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.settings.num_classes
    }

    /// The settings.
    pub fn settings(&self) -> &ArcFaceSettings {
        &self.settings
    }

    fn targets(&self, labels: &[i64]) -> Result<Vec<usize>, LossError> {
        let c = self.settings.num_classes;
        labels
            .iter()
            .map(|&l| {
                if l >= 0 && (l as usize) < c {
                    Ok(l as usize)
                } else {
                    Err(LossError::LabelOutOfRange {
                        label: l,
                        num_classes: c,
                    })
                }
            })
            .collect()
    }
}

impl Criterion for ArcFaceLoss {
    fn criterion_name(&self) -> &str {
        "arcface"
    }

    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
        let [b, d] = features.dims();
        let [c, wd] = self.weight.dims();
        if b != labels.len() {
            return Err(oml_interfaces::MiningError::LengthMismatch {
                features: b,
                labels: labels.len(),
            }
            .into());
        }
        if d != wd {
            return Err(LossError::Shape(format!(
                "features have {d} columns, ArcFace expects {wd}"
            )));
        }
        let y = self.targets(labels)?;
        let device = features.device();
        let opts = &self.settings.options;

        let cos = normalize(features).matmul(normalize(self.weight.val()).transpose()); // [B, C]

        let y_int = Tensor::<1, Int>::from_data(
            TensorData::new(y.iter().map(|&v| v as i64).collect::<Vec<_>>(), [b]),
            &device,
        );
        let predicted = cos.clone().without_autodiff().argmax(1).reshape([b]);
        let accuracy = predicted.equal(y_int.without_autodiff()).float().mean();

        let cos_c = cos.clone().clamp(-1.0, 1.0);
        let sin = (cos_c.clone().square().neg().add_scalar(1.0))
            .clamp_min(1e-12)
            .sqrt();
        let (cos_m, sin_m) = (opts.m.cos(), opts.m.sin());
        let th = -cos_m;
        let mm = sin_m * opts.m;
        let phi = cos.clone().mul_scalar(cos_m) - sin.mul_scalar(sin_m);
        let phi = phi.mask_where(cos.clone().lower_equal_elem(th), cos.clone().sub_scalar(mm));

        let mut onehot = vec![false; b * c];
        for (i, &yi) in y.iter().enumerate() {
            onehot[i * c + yi] = true;
        }
        let onehot = Tensor::<2, Bool>::from_data(TensorData::new(onehot, [b, c]), &device);
        let logits = cos.mask_where(onehot, phi).mul_scalar(opts.s);

        let targets = if opts.smoothing_epsilon != 0.0 {
            label_smoothing(
                &y,
                c,
                opts.smoothing_epsilon,
                self.settings.categories.as_deref(),
            )
        } else {
            label_smoothing(&y, c, 0.0, None)
        };
        let targets = Tensor::<2>::from_data(TensorData::new(targets, [b, c]), &device);
        let per_sample = (log_softmax(logits, 1) * targets)
            .sum_dim(1)
            .reshape([b])
            .neg();

        let mut logs = BTreeMap::new();
        logs.insert("accuracy".to_string(), accuracy);
        Ok(LossOutput {
            loss: opts.reduction.apply(per_sample),
            logs,
        })
    }
}

/// OML's `ArcFaceLossWithMLP`: a torchvision-style MLP (`Linear → ReLU` for every hidden size,
/// a final `Linear` without activation) in front of [`ArcFaceLoss`]. The MLP belongs to the
/// criterion, so it is dropped at inference.
#[derive(Module, Debug)]
pub struct ArcFaceLossWithMLP {
    /// The projector layers.
    pub mlp: Vec<Linear>,
    /// ArcFace on the projector's output.
    pub arcface: ArcFaceLoss,
}

impl ArcFaceLossWithMLP {
    /// `mlp_features`: the layer sizes (at least one); ArcFace works on the last.
    pub fn new(
        in_features: usize,
        num_classes: usize,
        mlp_features: &[usize],
        options: ArcFaceOptions,
        device: &Device,
    ) -> Result<Self, LossError> {
        let invalid = |reason: &str| LossError::InvalidParameter {
            name: "mlp_features",
            value: format!("{mlp_features:?}"),
            reason: reason.to_string(),
        };
        let last = *mlp_features
            .last()
            .ok_or_else(|| invalid("needs at least one layer size"))?;
        if in_features == 0 || mlp_features.contains(&0) {
            return Err(invalid("layer sizes and in_features must be at least 1"));
        }
        let mut mlp = Vec::with_capacity(mlp_features.len());
        let mut d_in = in_features;
        for &d_out in mlp_features {
            mlp.push(LinearConfig::new(d_in, d_out).init(device));
            d_in = d_out;
        }
        Ok(Self {
            mlp,
            arcface: ArcFaceLoss::new(last, num_classes, options, device)?,
        })
    }

    /// Projects features through the MLP.
    pub fn project(&self, features: Tensor<2>) -> Tensor<2> {
        let n = self.mlp.len();
        self.mlp.iter().enumerate().fold(features, |x, (i, layer)| {
            let y = layer.forward(x);
            if i + 1 < n { relu(y) } else { y }
        })
    }
}

impl Criterion for ArcFaceLossWithMLP {
    fn criterion_name(&self) -> &str {
        "arcface"
    }

    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
        let [_, d] = features.dims();
        let expected = self.mlp.first().map(|l| l.weight.dims()[0]).unwrap_or(d);
        if d != expected {
            return Err(LossError::Shape(format!(
                "features have {d} columns, the MLP expects {expected}"
            )));
        }
        self.arcface.forward(self.project(features), labels)
    }
}
