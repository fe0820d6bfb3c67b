//! Glue between OML's criteria and Burn's `Learner` (feature `learner`).
//!
//! Burn's [`TrainStep::step`](burn::train::TrainStep::step) cannot return an error, while a
//! [`Criterion`](crate::Criterion) can (a batch without a valid triplet, a label out of range).
//! [`StepGuard::train_output`] bridges the two: it back-propagates a loss, or records the error,
//! stops the run through Burn's [`Interrupter`] and hands Burn an empty step. [`StepOutput`] is
//! what such a step reports (Burn's `LossMetric` reads it); [`EmbeddingOutput`] is what an
//! inference step reports for the retrieval metrics (`oml_metrics::learner`).
//!
//! A user's training step is then a few lines:
//!
//! ```
//! use std::sync::Arc;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use burn::train::{TrainOutput, TrainStep};
//! use oml_interfaces::Criterion;
//! use oml_interfaces::learner::{StepGuard, StepOutput};
//!
//! #[derive(Module, Debug)]
//! struct Embedder {
//!     linear: Linear,
//!     #[module(skip)]
//!     criterion: Arc<dyn Criterion>,
//!     #[module(skip)]
//!     guard: StepGuard,
//! }
//!
//! struct Batch {
//!     features: Tensor<2>,
//!     labels: Vec<i64>,
//! }
//!
//! impl TrainStep for Embedder {
//!     type Input = Batch;
//!     type Output = StepOutput;
//!
//!     fn step(&self, batch: Batch) -> TrainOutput<StepOutput> {
//!         let device = batch.features.device();
//!         let embeddings = self.linear.forward(batch.features);
//!         let result = self.criterion.forward(embeddings, &batch.labels);
//!         self.guard.train_output(self, result, &device)
//!     }
//! }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::train::metric::{Adaptor, LossInput};
use burn::train::{Interrupter, ItemLazy, TrainOutput};
use burn_std::ExecutionError;

use crate::LossOutput;

/// What a training step with an OML criterion reports: the reduced loss and the criterion's
/// logs. Burn's `LossMetric` reads the loss through `Adaptor<LossInput>`.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The reduced loss, `[1]` (detached once synced).
    pub loss: Tensor<1>,
    /// The criterion's logs (`active_tri`, `pos_dist`, …), `[1]` each.
    pub logs: BTreeMap<String, Tensor<1>>,
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
        })
    }
}

impl Adaptor<LossInput> for StepOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

/// Identity adaptor, for metrics that take the whole output.
impl Adaptor<StepOutput> for StepOutput {
    fn adapt(&self) -> StepOutput {
        self.clone()
    }
}

/// What an inference step reports for retrieval metrics: embeddings and the dataset indices of
/// their rows, so the metrics place each row whatever order the loader's workers deliver in.
#[derive(Debug, Clone)]
pub struct EmbeddingOutput {
    /// `[B, D]`.
    pub embeddings: Tensor<2>,
    /// Dataset index of each row, length `B`.
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

/// Identity adaptor: the retrieval metrics take the whole output.
impl Adaptor<EmbeddingOutput> for EmbeddingOutput {
    fn adapt(&self) -> EmbeddingOutput {
        self.clone()
    }
}

/// Where a failed training step leaves its error: `TrainStep::step` cannot return one, so the
/// step records it here and stops the run through the `Interrupter`; after `launch` the caller
/// reads [`StepGuard::error`]. Clones share the record. Keep it in the model as
/// `#[module(skip)]`.
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
    /// A guard that stops training through `interrupter` (`SupervisedTraining::interrupter()`)
    /// on the first failure. [`StepGuard::default`] records failures without stopping anything.
    pub fn new(interrupter: Interrupter) -> Self {
        Self {
            error: Arc::default(),
            interrupter: Some(interrupter),
        }
    }

    /// Records the first failure and asks the run to stop.
    pub fn fail(&self, message: impl Into<String>) {
        let message = message.into();
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

    /// Burn's step output for a criterion's `result`: the gradients of the loss for `model`, or,
    /// when the step failed or its loss is not one value ([`LossOutput::reduced`]), the failure
    /// recorded (the run stops) and an empty step ([`StepGuard::failed_step`]).
    pub fn train_output<M: Module, E: std::fmt::Display>(
        &self,
        model: &M,
        result: Result<LossOutput, E>,
        device: &Device,
    ) -> TrainOutput<StepOutput> {
        let checked = result
            .map_err(|e| e.to_string())
            .and_then(|out| out.reduced().map_err(|e| e.to_string()));
        match checked {
            Ok(out) => {
                let grads = out.loss.backward();
                let item = StepOutput {
                    loss: out.loss,
                    logs: out.logs,
                };
                TrainOutput::new(model, grads, item)
            }
            Err(e) => self.failed_step(format!("training step: {e}"), device),
        }
    }

    /// Records `message` as a failure (the run stops) and returns what Burn needs from the
    /// step: no gradient, a zero loss on `device`.
    pub fn failed_step(
        &self,
        message: impl Into<String>,
        device: &Device,
    ) -> TrainOutput<StepOutput> {
        self.fail(message);
        TrainOutput {
            grads: GradientsParams::new(),
            item: StepOutput {
                loss: Tensor::zeros([1], device),
                logs: BTreeMap::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::test_device;
    use burn::nn::{Linear, LinearConfig};

    #[derive(Module, Debug)]
    struct One {
        linear: Linear,
    }

    #[test]
    fn a_loss_gives_gradients_and_a_failure_stops_the_run() {
        let device = test_device().autodiff();
        let model = One {
            linear: LinearConfig::new(2, 1).init(&device),
        };
        let x = Tensor::<2>::from_data([[1.0, 2.0], [3.0, 4.0]], &device);
        let loss = model.linear.forward(x).sum().reshape([1]);
        let guard = StepGuard::new(Interrupter::new());
        let ok = guard.train_output::<_, crate::LossError>(
            &model,
            Ok(LossOutput {
                loss,
                logs: BTreeMap::new(),
            }),
            &device,
        );
        assert!(!ok.grads.is_empty());
        assert_eq!(guard.error(), None);

        let interrupter = Interrupter::new();
        let guard = StepGuard::new(interrupter.clone());
        let failed = guard.train_output(
            &model,
            Err(crate::LossError::Shape("no triplet".into())),
            &device,
        );
        assert!(failed.grads.is_empty());
        assert!(interrupter.should_stop());
        assert_eq!(
            guard.error().as_deref(),
            Some("training step: shape mismatch: no triplet")
        );
        // The first failure is kept.
        guard.fail("later");
        assert!(guard.error().unwrap().contains("no triplet"));

        let unreduced = StepGuard::default().train_output::<_, crate::LossError>(
            &model,
            Ok(LossOutput {
                loss: Tensor::zeros([3], &device),
                logs: BTreeMap::new(),
            }),
            &device,
        );
        assert!(unreduced.grads.is_empty());
    }
}
