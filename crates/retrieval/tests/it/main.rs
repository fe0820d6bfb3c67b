//! oml-retrieval integration tests: one binary (one link step) for all of them.

mod knn;
mod postprocess;
