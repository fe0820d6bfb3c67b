//! oml-cli integration tests: one binary (one link step) for all of them.

mod corpus;
mod eval;
mod pipelines;
