//! # oml-mining
//!
//! Triplet miners and metric-learning losses of
//! [OpenMetricLearning](https://github.com/OML-Team/open-metric-learning) 4.0 on Burn 0.22
//! autodiff, with OML's values and gradients (checked against OML's golden outputs).
//!
//! | OML 4.0 | here |
//! |---|---|
//! | `AllTripletsMiner`, `HardTripletsMiner`, `NHardTripletsMiner`, `HardClusterMiner` | [`AllTripletsMiner`], [`HardTripletsMiner`], [`NHardTripletsMiner`], [`HardClusterMiner`] |
//! | `MinerWithBank`, `TripletMinerWithMemory`, `PairsMiner` | [`MinerWithBank`], [`TripletMinerWithMemory`], [`PairsMiner`] |
//! | `TripletLoss`, `TripletLossPlain`, `TripletLossWithMiner` | [`TripletLoss`], [`TripletLossPlain`], [`TripletLossWithMiner`] |
//! | `ArcFaceLoss`, `ArcFaceLossWithMLP` | [`ArcFaceLoss`], [`ArcFaceLossWithMLP`] (Burn modules) |
//! | `SurrogatePrecision`, `label_smoothing` | [`SurrogatePrecision`], [`label_smoothing`] |
//! | `MINERS_REGISTRY`, `LOSSES_REGISTRY` | [`MinerConfig`], [`CriterionConfig`] → [`CriterionModule`] |
//!
//! Every loss implements [`oml_interfaces::Criterion`]: `forward(features, labels)` returns the
//! differentiable loss and its logs. `TripletLossWithMiner` with all triplets works from the
//! `B×B` distance matrix instead of gathering every triplet's features. Deviations from OML are
//! listed in `docs/mining.md`.
//!
//! # Example
//!
//! Build a criterion from an OML-style YAML config and take one gradient step's worth of work:
//!
//! ```
//! use burn::prelude::*;
//! use oml_interfaces::Criterion;
//! use oml_mining::CriterionConfig;
//!
//! let device = oml_interfaces::device::select_device(None)?.autodiff();
//! let config: CriterionConfig = serde_yaml_ng::from_str(
//!     "{name: triplet_with_miner, args: {margin: 0.2, need_logs: true, miner: {name: hard_triplets}}}",
//! )?;
//! let criterion = config.build(&device)?;
//!
//! let features = Tensor::<2>::from_data(
//!     [[0.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 1.5]],
//!     &device,
//! )
//! .require_grad();
//! let out = criterion.forward(features.clone(), &[0, 0, 1, 1])?;
//! let grads = out.loss.backward();
//! assert!(features.grad(&grads).is_some());
//! assert!(out.logs.contains_key("active_tri"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod distance;
pub mod losses;
pub mod miners;

pub use config::{CriterionConfig, CriterionModule, FixedCriterion, MinerConfig};
pub use losses::{
    ArcFaceLoss, ArcFaceLossWithMLP, ArcFaceOptions, Category, Label2Category, SurrogatePrecision,
    TripletLoss, TripletLossPlain, TripletLossWithMiner, label_smoothing,
};
pub use miners::{
    AllTripletsMiner, HardClusterMiner, HardTripletsMiner, MemoryTriplets, MinedFeatures,
    MinedPairs, Miner, MinerWithBank, NHardArg, NHardTripletsMiner, PairsMiner,
    TripletMinerWithMemory,
};
