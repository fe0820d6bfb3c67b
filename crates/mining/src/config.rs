//! Configs in OML's registry format, `{name: <registry name>, args: {...}}`, deserialisable
//! from YAML or JSON, and what they build. Both go through
//! [`oml_interfaces::registry::Named`]; arguments are read with `Named::args_as`, so errors name
//! the path inside `args` (``criterion `triplet`: args.margin: …``).
//!
//! Names: miners `all_triplets`, `hard_triplets`, `n_hard_triplets`, `hard_cluster`,
//! `triplets_with_memory`, `miner_with_bank`; criteria `triplet`, `triplet_plain`,
//! `triplet_with_miner`, `surrogate_precision`, `arcface`, `mlp_arcface` (alias
//! `arcface_with_mlp`). Unknown names and unknown argument names are errors (OML silently drops
//! unknown criterion arguments); out-of-range values are reported by `build`, naming the
//! parameter.

use burn::module::Module;
use burn::prelude::*;
use oml_interfaces::registry::{ArgsError, Named};
use oml_interfaces::{Criterion, LossError, LossOutput, MiningError, Reduction};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;

use crate::losses::{
    ArcFaceLoss, ArcFaceLossWithMLP, ArcFaceOptions, Label2Category, SurrogatePrecision,
    TripletLoss, TripletLossPlain, TripletLossWithMiner,
};
use crate::miners::{
    AllTripletsMiner, HardClusterMiner, HardTripletsMiner, Miner, MinerWithBank, NHardArg,
    NHardTripletsMiner, TripletMinerWithMemory,
};

/// Formats an argument error of a registry config ([`ArgsError::in_registry`]).
fn args_error(kind: &str, _name: &str) -> impl Fn(ArgsError) -> String {
    move |e| e.in_registry(kind)
}

/// A count given in a config, validated into `usize` (≥ `min`) naming the parameter.
fn count(name: &'static str, value: i64, min: i64) -> Result<usize, String> {
    if value < min {
        return Err(format!(
            "invalid parameter `{name}` = {value}: must be at least {min}"
        ));
    }
    Ok(value as usize)
}

fn default_true() -> bool {
    true
}

/// Distinguishes a missing `margin` (an error, as in OML where it is required) from
/// `margin: null` (the soft margin).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

fn required_margin(margin: Option<Option<f64>>) -> Result<Option<f64>, LossError> {
    margin.ok_or_else(|| LossError::InvalidParameter {
        name: "margin",
        value: "missing".to_string(),
        reason: "required: a positive number, or null for the soft margin".to_string(),
    })
}

// ---------------------------------------------------------------- miners

/// Arguments of `all_triplets`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllTripletsArgs {
    /// At most this many triplets (absent or null: all).
    #[serde(default)]
    pub max_output_triplets: Option<i64>,
    /// Seed of the truncation sampler.
    #[serde(default)]
    pub seed: u64,
    /// OML's `device` argument; accepted and ignored (the features' device is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// Arguments of `n_hard_triplets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NHardTripletsArgs {
    /// Hard positives: `k` or `[a, b]` (1-based, inclusive). Default 1.
    #[serde(default = "one")]
    pub n_positive: NHardArg,
    /// Hard negatives: `k` or `[a, b]` (1-based, inclusive). Default 1.
    #[serde(default = "one")]
    pub n_negative: NHardArg,
}

fn one() -> NHardArg {
    NHardArg::Count(1)
}

impl Default for NHardTripletsArgs {
    fn default() -> Self {
        Self {
            n_positive: one(),
            n_negative: one(),
        }
    }
}

/// Arguments of `triplets_with_memory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripletsWithMemoryArgs {
    /// Bank size in batches (≥ 1).
    pub bank_size_in_batches: i64,
    /// Triplet expansion factor `k` (≥ 1).
    pub tri_expand_k: i64,
    /// Seed of the miner's random draws.
    #[serde(default)]
    pub seed: u64,
}

/// Arguments of `miner_with_bank`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerWithBankArgs {
    /// Bank size in batches (≥ 1).
    pub bank_size_in_batches: i64,
    /// The inner miner: must be `n_hard_triplets` (as in OML).
    pub miner: Box<MinerConfig>,
    /// Log where positives and negatives come from.
    #[serde(default = "default_true")]
    pub need_logs: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// A miner config (OML's `MINERS_REGISTRY`), e.g. YAML
/// `{name: n_hard_triplets, args: {n_positive: [1, 2], n_negative: 3}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Named", into = "Named")]
pub enum MinerConfig {
    /// `all_triplets`.
    AllTriplets(AllTripletsArgs),
    /// `hard_triplets`.
    HardTriplets,
    /// `n_hard_triplets`.
    NHardTriplets(NHardTripletsArgs),
    /// `hard_cluster`.
    HardCluster,
    /// `triplets_with_memory`.
    TripletsWithMemory(TripletsWithMemoryArgs),
    /// `miner_with_bank`.
    MinerWithBank(MinerWithBankArgs),
}

impl MinerConfig {
    /// The registry name.
    pub fn name(&self) -> &'static str {
        match self {
            MinerConfig::AllTriplets(_) => "all_triplets",
            MinerConfig::HardTriplets => "hard_triplets",
            MinerConfig::NHardTriplets(_) => "n_hard_triplets",
            MinerConfig::HardCluster => "hard_cluster",
            MinerConfig::TripletsWithMemory(_) => "triplets_with_memory",
            MinerConfig::MinerWithBank(_) => "miner_with_bank",
        }
    }

    /// Builds the miner; out-of-range parameters are errors naming them.
    pub fn build(&self) -> Result<Miner, MiningError> {
        let invalid = |name: &'static str, value: i64, min: i64| MiningError::InvalidParameter {
            name,
            value: value.to_string(),
            reason: format!("must be at least {min}"),
        };
        Ok(match self {
            MinerConfig::AllTriplets(a) => {
                let max = match a.max_output_triplets {
                    None => None,
                    Some(m) if m >= 1 => Some(m as usize),
                    Some(m) => return Err(invalid("max_output_triplets", m, 1)),
                };
                Miner::All(AllTripletsMiner::new(max, a.seed)?)
            }
            MinerConfig::HardTriplets => Miner::Hard(HardTripletsMiner),
            MinerConfig::NHardTriplets(a) => {
                Miner::NHard(NHardTripletsMiner::new(a.n_positive, a.n_negative)?)
            }
            MinerConfig::HardCluster => Miner::HardCluster(HardClusterMiner),
            MinerConfig::TripletsWithMemory(a) => {
                let bank = count("bank_size_in_batches", a.bank_size_in_batches, 1)
                    .map_err(|_| invalid("bank_size_in_batches", a.bank_size_in_batches, 1))?;
                let k = count("tri_expand_k", a.tri_expand_k, 1)
                    .map_err(|_| invalid("tri_expand_k", a.tri_expand_k, 1))?;
                Miner::WithMemory(TripletMinerWithMemory::new(bank, k, a.seed)?)
            }
            MinerConfig::MinerWithBank(a) => {
                let bank = count("bank_size_in_batches", a.bank_size_in_batches, 1)
                    .map_err(|_| invalid("bank_size_in_batches", a.bank_size_in_batches, 1))?;
                let inner = match a.miner.build()? {
                    Miner::NHard(m) => m,
                    _ => {
                        return Err(MiningError::InvalidParameter {
                            name: "miner",
                            value: a.miner.name().to_string(),
                            reason: "miner_with_bank needs an n_hard_triplets miner".to_string(),
                        });
                    }
                };
                Miner::WithBank(MinerWithBank::new(bank, inner, a.need_logs)?)
            }
        })
    }
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig::AllTriplets(AllTripletsArgs::default())
    }
}

impl TryFrom<Named> for MinerConfig {
    type Error = String;
    fn try_from(n: Named) -> Result<Self, String> {
        let err = args_error("miner", &n.name);
        Ok(match n.name.as_str() {
            "all_triplets" => MinerConfig::AllTriplets(n.args_as().map_err(err)?),
            "hard_triplets" => {
                n.args_as::<NoArgs>().map_err(err)?;
                MinerConfig::HardTriplets
            }
            "n_hard_triplets" => MinerConfig::NHardTriplets(n.args_as().map_err(err)?),
            "hard_cluster" => {
                n.args_as::<NoArgs>().map_err(err)?;
                MinerConfig::HardCluster
            }
            "triplets_with_memory" => MinerConfig::TripletsWithMemory(n.args_as().map_err(err)?),
            "miner_with_bank" => MinerConfig::MinerWithBank(n.args_as().map_err(err)?),
            other => {
                return Err(format!(
                    "unknown miner `{other}`: expected one of all_triplets, hard_triplets, \
                     n_hard_triplets, hard_cluster, triplets_with_memory, miner_with_bank"
                ));
            }
        })
    }
}

impl From<MinerConfig> for Named {
    fn from(c: MinerConfig) -> Self {
        match &c {
            MinerConfig::AllTriplets(a) => Named::new(c.name(), a),
            MinerConfig::HardTriplets | MinerConfig::HardCluster => Named::new(c.name(), NoArgs {}),
            MinerConfig::NHardTriplets(a) => Named::new(c.name(), a),
            MinerConfig::TripletsWithMemory(a) => Named::new(c.name(), a),
            MinerConfig::MinerWithBank(a) => Named::new(c.name(), a),
        }
    }
}

// ---------------------------------------------------------------- criteria

/// Arguments of `triplet` and `triplet_plain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripletArgs {
    /// Required: a positive margin, or null for the soft margin.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub margin: Option<Option<f64>>,
    /// `mean`, `sum` or `none`.
    #[serde(default)]
    pub reduction: Reduction,
    /// Return `active_tri`, `pos_dist`, `neg_dist` logs.
    #[serde(default)]
    pub need_logs: bool,
}

/// Arguments of `triplet_with_miner`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripletWithMinerArgs {
    /// Required: a positive margin, or null for the soft margin.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub margin: Option<Option<f64>>,
    /// The miner (default `all_triplets`).
    #[serde(default)]
    pub miner: MinerConfig,
    /// `mean`, `sum` or `none`.
    #[serde(default)]
    pub reduction: Reduction,
    /// Return the triplet and miner logs.
    #[serde(default)]
    pub need_logs: bool,
}

/// Arguments of `surrogate_precision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurrogatePrecisionArgs {
    /// The k of precision@k (≥ 1).
    pub k: i64,
    /// Temperature of the outer sigmoid.
    #[serde(default = "t1_default")]
    pub temperature1: f64,
    /// Temperature of the rank sigmoid.
    #[serde(default = "t2_default")]
    pub temperature2: f64,
    /// `mean`, `sum` or `none`.
    #[serde(default)]
    pub reduction: Reduction,
}

fn t1_default() -> f64 {
    1.0
}
fn t2_default() -> f64 {
    0.01
}
fn m_default() -> f64 {
    0.5
}
fn s_default() -> f64 {
    64.0
}

/// Arguments of `arcface` (and, with `mlp_features`, `mlp_arcface`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcFaceArgs {
    /// Input feature size.
    pub in_features: i64,
    /// Number of classes; labels must be `0..num_classes`.
    pub num_classes: i64,
    /// Projector layer sizes (`mlp_arcface` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_features: Option<Vec<i64>>,
    /// Angular margin.
    #[serde(default = "m_default")]
    pub m: f64,
    /// Logit scale.
    #[serde(default = "s_default")]
    pub s: f64,
    /// Label smoothing, `0 ≤ ε < 1`.
    #[serde(default)]
    pub smoothing_epsilon: f64,
    /// Label → category, for smoothing within categories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2category: Option<Label2Category>,
    /// `mean`, `sum` or `none`.
    #[serde(default)]
    pub reduction: Reduction,
}

impl ArcFaceArgs {
    fn options(&self) -> Result<ArcFaceOptions, LossError> {
        Ok(ArcFaceOptions {
            m: self.m,
            s: self.s,
            smoothing_epsilon: self.smoothing_epsilon,
            label2category: self.label2category.clone(),
            reduction: self.reduction,
        })
    }

    fn sizes(&self) -> Result<(usize, usize), LossError> {
        let check = |name: &'static str, v: i64| {
            count(name, v, 1).map_err(|_| LossError::InvalidParameter {
                name,
                value: v.to_string(),
                reason: "must be at least 1".to_string(),
            })
        };
        Ok((
            check("in_features", self.in_features)?,
            check("num_classes", self.num_classes)?,
        ))
    }
}

/// A criterion config (OML's `LOSSES_REGISTRY`), e.g. YAML
/// `{name: triplet_with_miner, args: {margin: 0.2, need_logs: true, miner: {name: hard_triplets}}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Named", into = "Named")]
pub enum CriterionConfig {
    /// `triplet` (features in the plain `(a, p, n)…` layout).
    Triplet(TripletArgs),
    /// `triplet_plain`.
    TripletPlain(TripletArgs),
    /// `triplet_with_miner`.
    TripletWithMiner(TripletWithMinerArgs),
    /// `surrogate_precision`.
    SurrogatePrecision(SurrogatePrecisionArgs),
    /// `arcface`.
    ArcFace(ArcFaceArgs),
    /// `mlp_arcface` (alias `arcface_with_mlp`).
    ArcFaceWithMlp(ArcFaceArgs),
}

impl CriterionConfig {
    /// The registry name.
    pub fn name(&self) -> &'static str {
        match self {
            CriterionConfig::Triplet(_) => "triplet",
            CriterionConfig::TripletPlain(_) => "triplet_plain",
            CriterionConfig::TripletWithMiner(_) => "triplet_with_miner",
            CriterionConfig::SurrogatePrecision(_) => "surrogate_precision",
            CriterionConfig::ArcFace(_) => "arcface",
            CriterionConfig::ArcFaceWithMlp(_) => "mlp_arcface",
        }
    }

    /// Injects the dataset's label → category map into the criteria that take one (the ArcFace
    /// losses), as OML's pipelines do at run time; others are returned unchanged.
    pub fn with_label2category(mut self, label2category: Label2Category) -> Self {
        if let CriterionConfig::ArcFace(a) | CriterionConfig::ArcFaceWithMlp(a) = &mut self {
            a.label2category = Some(label2category);
        }
        self
    }

    /// True when the criterion has trainable parameters (put it in the trained module).
    pub fn is_trainable(&self) -> bool {
        matches!(
            self,
            CriterionConfig::ArcFace(_) | CriterionConfig::ArcFaceWithMlp(_)
        )
    }

    /// Builds the criterion (parameters of trainable ones on `device`); out-of-range
    /// parameters are errors naming them.
    pub fn build(&self, device: &Device) -> Result<CriterionModule, LossError> {
        let fixed = |c: Arc<dyn Criterion>| CriterionModule::Fixed(FixedCriterion { inner: c });
        Ok(match self {
            CriterionConfig::Triplet(a) => fixed(Arc::new(TripletLoss::new(
                required_margin(a.margin)?,
                a.reduction,
                a.need_logs,
            )?)),
            CriterionConfig::TripletPlain(a) => fixed(Arc::new(TripletLossPlain::new(
                required_margin(a.margin)?,
                a.reduction,
                a.need_logs,
            )?)),
            CriterionConfig::TripletWithMiner(a) => fixed(Arc::new(TripletLossWithMiner::new(
                required_margin(a.margin)?,
                a.miner.build()?,
                a.reduction,
                a.need_logs,
            )?)),
            CriterionConfig::SurrogatePrecision(a) => {
                let k = count("k", a.k, 1).map_err(|_| LossError::InvalidParameter {
                    name: "k",
                    value: a.k.to_string(),
                    reason: "must be at least 1".to_string(),
                })?;
                fixed(Arc::new(SurrogatePrecision::new(
                    k,
                    a.temperature1,
                    a.temperature2,
                    a.reduction,
                )?))
            }
            CriterionConfig::ArcFace(a) => {
                if a.mlp_features.is_some() {
                    return Err(LossError::InvalidParameter {
                        name: "mlp_features",
                        value: format!("{:?}", a.mlp_features),
                        reason: "only for mlp_arcface".to_string(),
                    });
                }
                let (d, c) = a.sizes()?;
                CriterionModule::ArcFace(ArcFaceLoss::new(d, c, a.options()?, device)?)
            }
            CriterionConfig::ArcFaceWithMlp(a) => {
                let (d, c) = a.sizes()?;
                let raw = a.mlp_features.clone().unwrap_or_default();
                let mut mlp = Vec::with_capacity(raw.len());
                for v in &raw {
                    mlp.push(count("mlp_features", *v, 1).map_err(|_| {
                        LossError::InvalidParameter {
                            name: "mlp_features",
                            value: format!("{raw:?}"),
                            reason: "layer sizes must be at least 1".to_string(),
                        }
                    })?);
                }
                CriterionModule::ArcFaceWithMlp(ArcFaceLossWithMLP::new(
                    d,
                    c,
                    &mlp,
                    a.options()?,
                    device,
                )?)
            }
        })
    }
}

impl TryFrom<Named> for CriterionConfig {
    type Error = String;
    fn try_from(n: Named) -> Result<Self, String> {
        let err = args_error("criterion", &n.name);
        Ok(match n.name.as_str() {
            "triplet" => CriterionConfig::Triplet(n.args_as().map_err(err)?),
            "triplet_plain" => CriterionConfig::TripletPlain(n.args_as().map_err(err)?),
            "triplet_with_miner" => CriterionConfig::TripletWithMiner(n.args_as().map_err(err)?),
            "surrogate_precision" => CriterionConfig::SurrogatePrecision(n.args_as().map_err(err)?),
            "arcface" => CriterionConfig::ArcFace(n.args_as().map_err(err)?),
            "mlp_arcface" | "arcface_with_mlp" => {
                CriterionConfig::ArcFaceWithMlp(n.args_as().map_err(err)?)
            }
            other => {
                return Err(format!(
                    "unknown criterion `{other}`: expected one of triplet, triplet_plain, \
                     triplet_with_miner, surrogate_precision, arcface, mlp_arcface"
                ));
            }
        })
    }
}

impl From<CriterionConfig> for Named {
    fn from(c: CriterionConfig) -> Self {
        match &c {
            CriterionConfig::Triplet(a) | CriterionConfig::TripletPlain(a) => {
                Named::new(c.name(), a)
            }
            CriterionConfig::TripletWithMiner(a) => Named::new(c.name(), a),
            CriterionConfig::SurrogatePrecision(a) => Named::new(c.name(), a),
            CriterionConfig::ArcFace(a) | CriterionConfig::ArcFaceWithMlp(a) => {
                Named::new(c.name(), a)
            }
        }
    }
}

// ---------------------------------------------------------------- built criteria

/// A criterion without trainable parameters, shared (stateful ones keep their memory bank
/// across clones of the module).
#[derive(Module, Debug)]
pub struct FixedCriterion {
    #[module(skip)]
    inner: Arc<dyn Criterion>,
}

impl FixedCriterion {
    /// Wraps any criterion.
    pub fn new(inner: Arc<dyn Criterion>) -> Self {
        Self { inner }
    }

    /// The wrapped criterion.
    pub fn inner(&self) -> &Arc<dyn Criterion> {
        &self.inner
    }
}

/// What [`CriterionConfig::build`] returns: a Burn [`Module`] (so ArcFace's class matrix and
/// projector are trained with the model when this is a field of the trained module) that is a
/// [`Criterion`].
#[derive(Module, Debug)]
pub enum CriterionModule {
    /// `arcface`.
    ArcFace(ArcFaceLoss),
    /// `mlp_arcface`.
    ArcFaceWithMlp(ArcFaceLossWithMLP),
    /// Every criterion without parameters.
    Fixed(FixedCriterion),
}

impl Criterion for CriterionModule {
    fn criterion_name(&self) -> &str {
        match self {
            CriterionModule::ArcFace(c) => c.criterion_name(),
            CriterionModule::ArcFaceWithMlp(c) => c.criterion_name(),
            CriterionModule::Fixed(c) => c.inner.criterion_name(),
        }
    }

    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
        match self {
            CriterionModule::ArcFace(c) => c.forward(features, labels),
            CriterionModule::ArcFaceWithMlp(c) => c.forward(features, labels),
            CriterionModule::Fixed(c) => c.inner.forward(features, labels),
        }
    }
}
