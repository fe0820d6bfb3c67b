//! oml-mining integration tests: one binary (one link step) for all of them.

mod config;
mod golden;
mod properties;
mod reference_values;
mod stateful;
