//! # oml-sampling
//!
//! OML 4.0's class-balanced batch samplers and a Burn [`DataLoader`] that feeds them to Burn's
//! `Learner`, so metric learning trains on batches of P labels × K instances.
//!
//! | OML 4.0 (`oml.samplers`) | here | batches per epoch |
//! |---|---|---|
//! | `BalanceSampler` | [`BalanceSampler`] | `L / n_labels`, rounded down |
//! | `CategoryBalanceSampler` | [`CategoryBalanceSampler`] | `ceil(L / n_labels)` |
//! | `DistinctCategoryBalanceSampler` | [`DistinctCategoryBalanceSampler`] | `epoch_size` |
//! | `smart_sample` | [`smart_sample`] | |
//! | `DataLoader(shuffle=True, drop_last=True)` (`sampler: null`) | [`ShuffledBatches`] | `N / batch_size`, rounded down |
//! | `SAMPLERS_REGISTRY` + `{name, args}` configs | [`SamplerConfig`], [`SAMPLERS_REGISTRY`] | |
//! | `DataLoader(batch_sampler=...)`, `DDPSamplerWrapper` | [`PkDataLoader`] (`slice` for multi-device) | |
//!
//! (L is the number of unique labels.) Every sampler implements
//! [`oml_interfaces::BatchSampler`]: `epoch_batches(epoch)` is a pure function of the seed and
//! the epoch (ChaCha8 on stream `epoch`), so an epoch can be redrawn anywhere and every device
//! slice sees the same one. The draws follow OML's rules exactly but not numpy's random
//! stream, so the batches are not OML's bit for bit. Labels and categories may be any ordered,
//! printable type (`i64`, `String`, `&str`, …). Invalid parameters are
//! [`SamplerError`]s naming the parameter and the offending label
//! or category.
//!
//! See `docs/sampling.md` for the rules, their edge cases and how to train with Burn.
//!
//! # Example
//!
//! ```
//! use oml_interfaces::BatchSampler;
//! use oml_sampling::BalanceSampler;
//!
//! let labels = vec!["cat", "cat", "dog", "dog", "dog", "fox", "fox", "owl", "owl"];
//! let sampler = BalanceSampler::new(&labels, 2, 2)?.with_seed(7);
//! let epoch = sampler.epoch_batches(0);
//! assert_eq!(epoch.len(), 2); // 4 labels, 2 per batch
//! for batch in &epoch {
//!     assert_eq!(batch.len(), 4);
//!     let mut kinds: Vec<&str> = batch.iter().map(|&i| labels[i]).collect();
//!     kinds.dedup(); // indices come grouped by label
//!     assert_eq!(kinds.len(), 2);
//! }
//! assert_ne!(epoch, sampler.epoch_batches(1)); // a new epoch draws anew
//! # Ok::<(), oml_interfaces::SamplerError>(())
//! ```
//!
//! [`DataLoader`]: burn::data::dataloader::DataLoader

mod balance;
mod category;
mod config;
mod groups;
mod loader;
mod random;
mod shuffled;

pub use balance::BalanceSampler;
pub use category::{CategoryBalanceSampler, DistinctCategoryBalanceSampler};
pub use config::{
    BalanceConfig, CategoryBalanceConfig, DistinctCategoryBalanceConfig, SAMPLERS_REGISTRY,
    SamplerConfig,
};
pub use loader::{LoaderError, PkDataLoader};
pub use oml_interfaces::{BatchSampler, SamplerError};
pub use random::{epoch_rng, smart_sample};
pub use shuffled::ShuffledBatches;
