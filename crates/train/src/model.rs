//! The trained module: an extractor and its criterion, with Burn's `TrainStep` / `InferenceStep`.
//!
//! The criterion is a field of the module, so a criterion with parameters (ArcFace's class
//! weights) is saved, restored and optimised with the extractor, as OML passes both parameter
//! groups to its optimizer. A criterion without parameters is wrapped in [`ParameterFree`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use burn::module::ModuleDisplay;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::train::metric::{Adaptor, LossInput};
use burn::train::{InferenceStep, Interrupter, ItemLazy, TrainOutput, TrainStep};
use burn_std::ExecutionError;
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

/// What a training step reports: the loss, the criterion's logs, the epoch.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The reduced loss, `[1]` (detached once synced).
    pub loss: Tensor<1>,
    /// The criterion's logs (`active_tri`, `pos_dist`, …), `[1]` each.
    pub logs: BTreeMap<String, Tensor<1>>,
    /// 1-based epoch of the batch.
    pub epoch: usize,
    /// Whether the backbone was frozen for this step.
    pub frozen: bool,
}

impl ItemLazy for StepOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        self.loss.device().flush()?;
        Ok(StepOutput {
            loss: self.loss.without_autodiff(),
            logs: self
                .logs
                .into_iter()
                .map(|(k, v)| (k, v.without_autodiff()))
                .collect(),
            epoch: self.epoch,
            frozen: self.frozen,
        })
    }
}

impl Adaptor<LossInput> for StepOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

/// What an inference step reports: embeddings and the dataset indices they belong to.
#[derive(Debug, Clone)]
pub struct EmbeddingOutput {
    /// `[B, D]`.
    pub embeddings: Tensor<2>,
    /// Dataset index of each row.
    pub indices: Vec<usize>,
}

impl ItemLazy for EmbeddingOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        self.embeddings.device().flush()?;
        Ok(EmbeddingOutput {
            embeddings: self.embeddings.without_autodiff(),
            indices: self.indices,
        })
    }
}

/// Identity adaptor: metrics of this crate take the whole output.
impl Adaptor<EmbeddingOutput> for EmbeddingOutput {
    fn adapt(&self) -> EmbeddingOutput {
        self.clone()
    }
}

/// Identity adaptor: metrics of this crate take the whole output.
impl Adaptor<StepOutput> for StepOutput {
    fn adapt(&self) -> StepOutput {
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

/// Where a failed training step leaves its error: `TrainStep::step` cannot return one, so the
/// step records it here, stops the run through the `Interrupter`, and the pipeline reports it.
#[derive(Clone, Default)]
pub struct StepGuard {
    error: Arc<Mutex<Option<String>>>,
    interrupter: Option<Interrupter>,
}

impl std::fmt::Debug for StepGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepGuard")
            .field("error", &self.error())
            .finish()
    }
}

impl StepGuard {
    /// A guard that stops training through `interrupter` on the first failed step.
    pub fn new(interrupter: Interrupter) -> Self {
        Self {
            error: Arc::default(),
            interrupter: Some(interrupter),
        }
    }

    /// Records the first failure and asks the run to stop.
    pub fn fail(&self, message: String) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(message.clone());
        }
        if let Some(i) = &self.interrupter {
            i.stop(Some(&message));
        }
    }

    /// The first failure, if any.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
        let out = self.criterion.forward(embeddings, &batch.labels)?;
        if out.loss.dims() != [1] {
            return Err(LossError::Shape(format!(
                "the training loss must be reduced to one value (reduction mean or sum), got shape {:?}",
                out.loss.dims()
            )));
        }
        Ok(out)
    }
}

impl<E, C> TrainStep for MetricLearner<E, C>
where
    E: Extractor + Freezable + Module + ModuleDisplay + Clone + 'static,
    C: Criterion + Module + ModuleDisplay + 'static,
{
    type Input = TrainBatch;
    type Output = StepOutput;

    fn step(&self, batch: TrainBatch) -> TrainOutput<StepOutput> {
        let frozen = self.is_frozen_in(batch.epoch);
        match self.forward_loss(&batch, frozen) {
            Ok(out) => {
                let grads = out.loss.backward();
                let item = StepOutput {
                    loss: out.loss,
                    logs: out.logs,
                    epoch: batch.epoch,
                    frozen,
                };
                TrainOutput::new(self, grads, item)
            }
            Err(e) => {
                self.guard
                    .fail(format!("training step of epoch {}: {e}", batch.epoch));
                let device = batch.images.device();
                let item = StepOutput {
                    loss: Tensor::zeros([1], &device),
                    logs: BTreeMap::new(),
                    epoch: batch.epoch,
                    frozen,
                };
                TrainOutput {
                    grads: GradientsParams::new(),
                    item,
                }
            }
        }
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
