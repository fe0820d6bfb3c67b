//! Models: OML's `IExtractor`, `IPairwiseModel`, `IFreezable` and the pretrained registry hook.

use burn::prelude::*;

/// Why a model could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The pretrained key is not in the registry.
    #[error("unknown pretrained key `{key}`; known keys: {known}")]
    UnknownKey {
        /// The key as given.
        key: String,
        /// The registry's keys.
        known: String,
    },
    /// A checkpoint could not be loaded.
    #[error("cannot load checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// Missing, unexpected or mis-shaped keys, or the I/O error.
        message: String,
    },
    /// Weights could not be fetched.
    #[error("cannot download {url} to {path}: {message}")]
    Download {
        /// The URL tried last.
        url: String,
        /// Where the file is expected (it can be placed there by hand).
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An argument is invalid.
    #[error("invalid model argument `{name}` = {value}: {reason}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What is allowed.
        reason: String,
    },
}

/// OML's `IExtractor`: images to embeddings.
pub trait Extractor: Module {
    /// Size of the embeddings (OML's `feat_dim`).
    fn feat_dim(&self) -> usize;

    /// # Shapes
    /// `images` `[B, C, H, W]` → `[B, feat_dim]`.
    fn extract(&self, images: Tensor<4>) -> Tensor<2>;

    /// [`extract`](Self::extract) for many batches of a model that does not change: what an
    /// extractor can prepare once (e.g. weights folded and laid out for the CPU fast path) is
    /// prepared when this is called, not at every batch. The default prepares nothing.
    fn inference(&self) -> Box<dyn Fn(Tensor<4>) -> Tensor<2> + '_> {
        Box::new(move |images| self.extract(images))
    }
}

/// OML's `IPairwiseModel`: a score for a pair of inputs.
pub trait PairwiseModel: Module {
    /// Training output (logits, or distances for the trivial models).
    ///
    /// # Shapes
    /// `x1`, `x2` `[B, C, H, W]` (or `[B, D]` embeddings reshaped by the model) → `[B]`.
    fn forward_pair(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1>;

    /// Inference output; may add an activation (ConcatSiamese applies a sigmoid).
    fn predict(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
        self.forward_pair(x1, x2)
    }
}

/// OML's `IFreezable`: freezing the *backbone* of a model while its head keeps training.
/// Burn modules are values, so freezing returns the module.
///
/// A frozen part gets no gradient: its parameters are marked `require_grad = false`, which
/// Burn's autodiff honours (unlike OML 4.0's `freeze_n_epochs`, a no-op under Lightning 2).
/// The names differ from OML's `freeze`/`unfreeze` because Burn's `Module::freeze` already
/// freezes a whole module tree.
pub trait Freezable: Sized {
    /// Stops gradients through the frozen part (usually the backbone).
    fn freeze_backbone(self) -> Self;
    /// Lets gradients flow through it again.
    fn unfreeze_backbone(self) -> Self;
}

/// One entry of a pretrained-weights registry (OML's `pretrained_models[key]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedEntry {
    /// Registry key, e.g. `vits16_dino`.
    pub key: &'static str,
    /// URLs tried in order.
    pub urls: &'static [&'static str],
    /// Prefix of the file's md5 hex digest, checked before use.
    pub md5_prefix: &'static str,
    /// File name in the cache directory.
    pub file_name: &'static str,
    /// Constructor arguments, as OML's `init_args` (JSON object).
    pub init_args: &'static str,
}

/// The pretrained-weights hook: a registry of keys, and construction from a downloaded file.
pub trait Pretrained: Sized {
    /// The registry entries of this model type.
    fn registry() -> &'static [PretrainedEntry];

    /// Looks a key up, or says which keys exist.
    fn pretrained_entry(key: &str) -> Result<&'static PretrainedEntry, ModelError> {
        Self::registry()
            .iter()
            .find(|e| e.key == key)
            .ok_or_else(|| ModelError::UnknownKey {
                key: key.to_string(),
                known: Self::registry()
                    .iter()
                    .map(|e| e.key)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Builds the model for `entry` from the weights file at `path`.
    fn from_entry(
        entry: &PretrainedEntry,
        path: &std::path::Path,
        device: &Device,
    ) -> Result<Self, ModelError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::test_device;
    use burn::nn::{Linear, LinearConfig};

    /// Flattens images and projects them: a real (tiny) extractor with a frozen backbone part.
    #[derive(Module, Debug)]
    struct FlatLinear {
        backbone: Linear,
        head: Linear,
    }
    impl Extractor for FlatLinear {
        fn feat_dim(&self) -> usize {
            self.head.weight.dims()[1]
        }
        fn extract(&self, images: Tensor<4>) -> Tensor<2> {
            let [b, c, h, w] = images.dims();
            self.head
                .forward(self.backbone.forward(images.reshape([b, c * h * w])))
        }
    }
    impl Freezable for FlatLinear {
        fn freeze_backbone(self) -> Self {
            FlatLinear {
                backbone: self.backbone.freeze(),
                head: self.head,
            }
        }
        fn unfreeze_backbone(self) -> Self {
            FlatLinear {
                backbone: self.backbone.unfreeze(),
                head: self.head,
            }
        }
    }
    impl Pretrained for FlatLinear {
        fn registry() -> &'static [PretrainedEntry] {
            &[PretrainedEntry {
                key: "flat_tiny",
                urls: &["http://127.0.0.1:1/flat_tiny.bpk"],
                md5_prefix: "0",
                file_name: "flat_tiny.bpk",
                init_args: r#"{"dim": 2}"#,
            }]
        }
        fn from_entry(
            _: &PretrainedEntry,
            path: &std::path::Path,
            _: &Device,
        ) -> Result<Self, ModelError> {
            Err(ModelError::Checkpoint {
                path: path.display().to_string(),
                message: "test".into(),
            })
        }
    }

    /// Distance between the two embeddings of a shared extractor.
    #[derive(Module, Debug)]
    struct Siamese {
        extractor: FlatLinear,
    }
    impl PairwiseModel for Siamese {
        fn forward_pair(&self, x1: Tensor<4>, x2: Tensor<4>) -> Tensor<1> {
            let d = self.extractor.extract(x1) - self.extractor.extract(x2);
            d.square().sum_dim(1).sqrt().squeeze_dim(1)
        }
    }

    fn model(device: &Device) -> FlatLinear {
        FlatLinear {
            backbone: LinearConfig::new(4, 3).init(device),
            head: LinearConfig::new(3, 2).init(device),
        }
    }

    #[test]
    fn frozen_backbone_gets_no_gradient() {
        let device = test_device().autodiff();
        let m = model(&device).freeze_backbone();
        let x = Tensor::<4>::ones([2, 1, 2, 2], &device);
        assert_eq!(m.extract(x.clone()).dims(), [2, 2]);
        assert_eq!(m.feat_dim(), 2);
        let grads = m.extract(x.clone()).sum().backward();
        assert!(m.backbone.weight.grad(&grads).is_none());
        assert!(m.head.weight.grad(&grads).is_some());
        let m = m.unfreeze_backbone();
        let grads = m.extract(x).sum().backward();
        assert!(m.backbone.weight.grad(&grads).is_some());
    }

    #[test]
    fn pairwise_identity_pair_scores_zero() {
        let device = test_device();
        let s = Siamese {
            extractor: model(&device),
        };
        let x = Tensor::<4>::ones([3, 1, 2, 2], &device);
        let d: Vec<f32> = s.predict(x.clone(), x).try_to_vec_as::<f32>().unwrap();
        assert_eq!(d, vec![0.0; 3]);
    }

    #[test]
    fn registry_lookup_names_known_keys() {
        assert_eq!(
            FlatLinear::pretrained_entry("flat_tiny").unwrap().file_name,
            "flat_tiny.bpk"
        );
        let e = FlatLinear::pretrained_entry("nope").unwrap_err();
        assert!(e.to_string().contains("known keys: flat_tiny"), "{e}");
    }
}
