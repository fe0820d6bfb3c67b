//! The [`Miner`] enum: every miner of this crate, plus any third-party one.

use burn::prelude::*;
use oml_interfaces::{MiningError, TripletFeatures, TripletsMiner};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::all::AllTripletsMiner;
use super::bank::MinerWithBank;
use super::cluster::HardClusterMiner;
use super::hard::HardTripletsMiner;
use super::memory::TripletMinerWithMemory;
use super::nhard::NHardTripletsMiner;

/// Every miner of this crate, plus any third-party [`TripletsMiner`]: what
/// [`TripletLossWithMiner`](crate::TripletLossWithMiner) holds, so that it can take the fast
/// paths of the miners it knows and read their logs.
///
/// Cloning shares the state of the stateful miners (memory banks, random generators).
#[derive(Debug, Clone)]
pub enum Miner {
    /// [`AllTripletsMiner`].
    All(AllTripletsMiner),
    /// [`HardTripletsMiner`].
    Hard(HardTripletsMiner),
    /// [`NHardTripletsMiner`].
    NHard(NHardTripletsMiner),
    /// [`HardClusterMiner`].
    HardCluster(HardClusterMiner),
    /// [`MinerWithBank`].
    WithBank(MinerWithBank),
    /// [`TripletMinerWithMemory`].
    WithMemory(TripletMinerWithMemory),
    /// Any other miner (no logs, no fast path).
    Custom(Arc<dyn TripletsMiner>),
}

impl Default for Miner {
    /// OML's default for `TripletLossWithMiner`: all triplets.
    fn default() -> Self {
        Miner::All(AllTripletsMiner::default())
    }
}

/// Mined triplet features plus what the loss logs about them.
#[derive(Debug, Clone)]
pub struct MinedFeatures {
    /// The triplets' feature rows, each `[T, D]`.
    pub features: TripletFeatures,
    /// For [`TripletMinerWithMemory`]: whether each triplet comes from the batch alone.
    pub is_original: Option<Vec<bool>>,
    /// The miner's own logs (OML's `miner.last_logs`).
    pub logs: BTreeMap<String, f64>,
}

impl Miner {
    /// Mines and gathers the triplets' features, with the miner's logs.
    pub fn sample_with_logs(
        &self,
        features: Tensor<2>,
        labels: &[i64],
    ) -> Result<MinedFeatures, MiningError> {
        let plain = |features| MinedFeatures {
            features,
            is_original: None,
            logs: BTreeMap::new(),
        };
        match self {
            Miner::All(m) => m.sample(features, labels).map(plain),
            Miner::Hard(m) => m.sample(features, labels).map(plain),
            Miner::NHard(m) => m.sample(features, labels).map(plain),
            Miner::HardCluster(m) => m.sample(features, labels).map(plain),
            Miner::Custom(m) => m.sample(features, labels).map(plain),
            Miner::WithBank(m) => {
                let (features, logs) = m.sample_with_logs(features, labels)?;
                Ok(MinedFeatures {
                    features,
                    is_original: None,
                    logs,
                })
            }
            Miner::WithMemory(m) => {
                let out = m.sample_with_origin(features, labels)?;
                Ok(MinedFeatures {
                    features: out.features,
                    is_original: Some(out.is_original),
                    logs: BTreeMap::new(),
                })
            }
        }
    }
}

impl TripletsMiner for Miner {
    fn sample(&self, features: Tensor<2>, labels: &[i64]) -> Result<TripletFeatures, MiningError> {
        self.sample_with_logs(features, labels).map(|m| m.features)
    }
}

macro_rules! miner_from {
    ($($ty:ident => $variant:ident),* $(,)?) => {$(
        impl From<$ty> for Miner {
            fn from(m: $ty) -> Self {
                Miner::$variant(m)
            }
        }
    )*};
}
miner_from!(
    AllTripletsMiner => All,
    HardTripletsMiner => Hard,
    NHardTripletsMiner => NHard,
    HardClusterMiner => HardCluster,
    MinerWithBank => WithBank,
    TripletMinerWithMemory => WithMemory,
);

impl From<Arc<dyn TripletsMiner>> for Miner {
    fn from(m: Arc<dyn TripletsMiner>) -> Self {
        Miner::Custom(m)
    }
}
