//! Integration tests of oml-logging, one binary (one link of burn).
//!
//! - `tensorboard`: event files read back by this crate's reader (always) and by TensorBoard's
//!   own `EventAccumulator` (when a Python with `tensorboard` is available).
//! - `mlflow_offline`: failure paths against a closed port and fake servers (always).
//! - `mlflow_server`: a real `mlflow server` (`OML_TEST_MLFLOW_URI`, or one started here when
//!   the `mlflow` command is available).
//! - `learner`: Burn's Learner feeding the loggers through `LearnerBridge`.

mod common;
mod learner;
mod mlflow_offline;
mod mlflow_server;
mod tensorboard;
