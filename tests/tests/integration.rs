//! Workspace-level tests: the crates working together the way a training run uses them.

mod data_flow;
