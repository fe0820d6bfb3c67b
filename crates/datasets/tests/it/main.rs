//! oml-datasets integration tests: one binary (one link step) for all of them.

mod dataframe;
mod images;
