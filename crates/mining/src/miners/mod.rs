//! Triplet miners (OML 4.0 §1.3) and the [`Miner`] enum the triplet loss dispatches on.

pub(crate) mod all;
mod bank;
mod checks;
mod cluster;
mod hard;
mod memory;
mod miner;
mod nhard;
mod pairs;

pub use all::AllTripletsMiner;
pub use bank::MinerWithBank;
pub(crate) use checks::check_lengths;
pub use cluster::HardClusterMiner;
pub use hard::HardTripletsMiner;
pub use memory::{MemoryTriplets, TripletMinerWithMemory};
pub use miner::{MinedFeatures, Miner};
pub use nhard::{NHardArg, NHardTripletsMiner};
pub use pairs::{MinedPairs, PairsMiner};
