//! oml-models integration tests: one binary (one link step) for all of them.

mod common;
mod configs;
mod download;
mod loading;
mod parity;
mod training;
