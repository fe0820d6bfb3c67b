//! The trained module: an extractor and its criterion, with Burn's `TrainStep` / `InferenceStep`.
//!
//! The criterion is a field of the module, so a criterion with parameters (ArcFace's class
//! weights) is saved, restored and optimised with the extractor, as OML passes both parameter
//! groups to its optimizer. A criterion without parameters is wrapped in [`ParameterFree`].

use std::sync::Arc;

use burn::module::ModuleDisplay;
use burn::prelude::*;
use burn::train::metric::{Adaptor, LossInput};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};
use burn_std::ExecutionError;
pub use oml_interfaces::learner::{EmbeddingOutput, StepGuard, StepOutput};
use oml_interfaces::{Criterion, Extractor, Freezable, LossError, LossOutput};

/// One training batch: images, their labels on the host, and the (1-based) epoch it belongs to.
#[derive(Debug, Clone)]
pub struct TrainBatch {
    /// `[B, C, H, W]`.
    pub images: Tensor<4>,
    /// Label of each image, length `B`.
    pub labels: Vec<i64>,
    /// 1-based epoch, as Burn's `Learner` counts (decides freezing).
    pub epoch: usize,
}

/// One inference batch: images and their dataset indices.
#[derive(Debug, Clone)]
pub struct InferBatch {
    /// `[B, C, H, W]`.
    pub images: Tensor<4>,
    /// Dataset index of each image, length `B`.
    pub indices: Vec<usize>,
}

/// What a training step of this crate's learners reports: the criterion's [`StepOutput`]
/// (loss and logs), the epoch, and whether the backbone was frozen.
#[derive(Debug, Clone)]
pub struct EpochStepOutput {
    /// The loss and the criterion's logs.
    pub step: StepOutput,
    /// 1-based epoch of the batch.
    pub epoch: usize,
    /// Whether the backbone was frozen for this step.
    pub frozen: bool,
}

impl EpochStepOutput {
    /// [`StepGuard::train_output`] for a step of (1-based) `epoch`: a failure names the epoch,
    /// and the output carries it and whether the backbone was `frozen`.
    pub fn train_output<M: Module, E: std::fmt::Display>(
        guard: &StepGuard,
        model: &M,
        result: Result<LossOutput, E>,
        device: &Device,
        (epoch, frozen): (usize, bool),
    ) -> TrainOutput<Self> {
        let result = result.map_err(|e| format!("epoch {epoch}: {e}"));
        let out = guard.train_output(model, result, device);
        TrainOutput {
            grads: out.grads,
            item: EpochStepOutput {
                step: out.item,
                epoch,
                frozen,
            },
        }
    }
}

impl ItemLazy for EpochStepOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        Ok(EpochStepOutput {
            step: self.step.sync()?,
            ..self
        })
    }
}

impl Adaptor<LossInput> for EpochStepOutput {
    fn adapt(&self) -> LossInput {
        self.step.adapt()
    }
}

/// Identity adaptor: metrics of this crate take the whole output.
impl Adaptor<EpochStepOutput> for EpochStepOutput {
    fn adapt(&self) -> EpochStepOutput {
        self.clone()
    }
}

/// A criterion without trainable parameters, as a (parameter-free) Burn module.
#[derive(Module, Debug)]
pub struct ParameterFree {
    #[module(skip)]
    inner: Arc<dyn Criterion>,
}

impl ParameterFree {
    /// Wraps `criterion`.
    pub fn new(criterion: impl Criterion + 'static) -> Self {
        Self {
            inner: Arc::new(criterion),
        }
    }

    /// Wraps a shared criterion.
    pub fn from_arc(criterion: Arc<dyn Criterion>) -> Self {
        Self { inner: criterion }
    }
}

impl Criterion for ParameterFree {
    fn criterion_name(&self) -> &str {
        self.inner.criterion_name()
    }

    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
        self.inner.forward(features, labels)
    }
}

/// An extractor trained with a criterion: the module Burn's `Learner` optimises.
///
/// The training step embeds the batch, calls the criterion with the host labels and
/// back-propagates. For the first `freeze_n_epochs` epochs it runs a copy of the extractor whose
/// backbone is frozen ([`Freezable::freeze_backbone`]), so the backbone gets no gradient and
/// the optimizer leaves it unchanged.
#[derive(Module, Debug)]
pub struct MetricLearner<E, C> {
    /// The extractor.
    pub extractor: E,
    /// The criterion (its parameters, if any, are trained too).
    pub criterion: C,
    /// Epochs (1-based, inclusive) during which the backbone is frozen.
    pub freeze_n_epochs: usize,
    #[module(skip)]
    guard: StepGuard,
}

impl<E, C> MetricLearner<E, C> {
    /// Pairs an extractor with its criterion.
    pub fn new(extractor: E, criterion: C) -> Self {
        Self {
            extractor,
            criterion,
            freeze_n_epochs: 0,
            guard: StepGuard::default(),
        }
    }

    /// Freezes the backbone for the first `n` epochs.
    pub fn with_freeze_n_epochs(mut self, n: usize) -> Self {
        self.freeze_n_epochs = n;
        self
    }

    /// Reports step failures through `guard`.
    pub fn with_guard(mut self, guard: StepGuard) -> Self {
        self.guard = guard;
        self
    }

    /// The guard steps report failures to.
    pub fn guard(&self) -> &StepGuard {
        &self.guard
    }

    /// Whether the backbone is frozen in (1-based) `epoch`.
    pub fn is_frozen_in(&self, epoch: usize) -> bool {
        epoch <= self.freeze_n_epochs
    }
}

impl<E, C> MetricLearner<E, C>
where
    E: Extractor + Freezable + Clone,
    C: Criterion,
{
    /// Embeds the batch (with a frozen backbone when `frozen`) and evaluates the criterion.
    pub fn forward_loss(&self, batch: &TrainBatch, frozen: bool) -> Result<LossOutput, LossError> {
        let embeddings = if frozen {
            self.extractor
                .clone()
                .freeze_backbone()
                .extract(batch.images.clone())
        } else {
            self.extractor.extract(batch.images.clone())
        };
        self.criterion.forward(embeddings, &batch.labels)?.reduced()
    }
}

impl<E, C> TrainStep for MetricLearner<E, C>
where
    E: Extractor + Freezable + Module + ModuleDisplay + Clone + 'static,
    C: Criterion + Module + ModuleDisplay + 'static,
{
    type Input = TrainBatch;
    type Output = EpochStepOutput;

    fn step(&self, batch: TrainBatch) -> TrainOutput<EpochStepOutput> {
        let (epoch, frozen) = (batch.epoch, self.is_frozen_in(batch.epoch));
        let device = batch.images.device();
        let result = self.forward_loss(&batch, frozen);
        EpochStepOutput::train_output(&self.guard, self, result, &device, (epoch, frozen))
    }
}

impl<E, C> InferenceStep for MetricLearner<E, C>
where
    E: Extractor + Module + ModuleDisplay + 'static,
    C: Module + ModuleDisplay + 'static,
{
    type Input = InferBatch;
    type Output = EmbeddingOutput;

    fn step(&self, batch: InferBatch) -> EmbeddingOutput {
        EmbeddingOutput {
            embeddings: self.extractor.extract(batch.images),
            indices: batch.indices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::small_cnn::SmallCnnConfig;
    use oml_interfaces::device::test_device;

    #[test]
    fn step_after_fork_has_gradients() {
        let device = test_device();
        let cnn = SmallCnnConfig::new(4)
            .with_channels([2, 2, 2])
            .init(&device);
        let crit: oml_mining::CriterionConfig =
            serde_json::from_value(serde_json::json!({"name": "triplet_with_miner", "args": {"margin": 0.2, "miner": {"name": "hard_triplets"}}})).unwrap();
        let crit = crit.build(&device).unwrap();
        let m = MetricLearner::new(cnn, crit)
            .fork(&device.clone().autodiff())
            .train();
        let ad = device.autodiff();
        let images = Tensor::<4>::random([4, 3, 8, 8], burn::tensor::Distribution::Default, &ad);
        let batch = TrainBatch {
            images,
            labels: vec![0, 0, 1, 1],
            epoch: 1,
        };
        let out = m.forward_loss(&batch, false).unwrap();
        let grads = out.loss.backward();
        assert!(m.extractor.head.weight.grad(&grads).is_some());
        assert!(m.extractor.conv1.weight.grad(&grads).is_some());
        let frozen = m.clone().with_freeze_n_epochs(1);
        let grads = frozen.forward_loss(&batch, true).unwrap().loss.backward();
        assert!(frozen.extractor.head.weight.grad(&grads).is_some());
        assert!(frozen.extractor.conv1.weight.grad(&grads).is_none());
    }
}
