//! Integration tests of oml-sampling (one binary: burn links once).

mod configs;
mod errors;
mod learner;
mod loader;
mod oracle;
mod properties;
