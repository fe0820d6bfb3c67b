//! Sampler configs as in OML's YAML (`sampler: {name, args}`), built at run time once the
//! labels (and `label2category`) are known, as OML's pipelines inject them.

use std::collections::BTreeMap;
use std::fmt::Display;

use oml_interfaces::registry::{ArgsError, Named};
use oml_interfaces::{BatchSampler, SamplerError};
use serde::{Deserialize, Serialize};

use crate::{BalanceSampler, CategoryBalanceSampler, DistinctCategoryBalanceSampler};

/// The registry names, as in OML's `SAMPLERS_REGISTRY`.
pub const SAMPLERS_REGISTRY: [&str; 3] =
    ["balance", "category_balance", "distinct_category_balance"];

/// Arguments of `balance` ([`BalanceSampler`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceConfig {
    /// Labels per batch (P).
    pub n_labels: usize,
    /// Instances per label (K).
    pub n_instances: usize,
}

/// Arguments of `category_balance` ([`CategoryBalanceSampler`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryBalanceConfig {
    /// Categories per batch.
    pub n_categories: usize,
    /// Labels per category.
    pub n_labels: usize,
    /// Instances per label.
    pub n_instances: usize,
    /// Allow categories with fewer than `n_labels` labels (repeating labels). Default false.
    #[serde(default)]
    pub resample_labels: bool,
    /// Draw categories proportionally to their number of labels. Default true.
    #[serde(default = "default_true")]
    pub weight_categories: bool,
}

fn default_true() -> bool {
    true
}

/// Arguments of `distinct_category_balance` ([`DistinctCategoryBalanceSampler`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistinctCategoryBalanceConfig {
    /// Categories per batch.
    pub n_categories: usize,
    /// Labels per category.
    pub n_labels: usize,
    /// Instances per label.
    pub n_instances: usize,
    /// Batches per epoch.
    pub epoch_size: usize,
}

/// A sampler as written in an OML config:
///
/// ```yaml
/// sampler:
///   name: category_balance
///   args: {n_categories: 2, n_labels: 4, n_instances: 2}
/// ```
///
/// `labels` and `label2category` are not part of the config: pass them to
/// [`build`](Self::build). The wire form is [`Named`]; an unknown name is an error listing
/// [`SAMPLERS_REGISTRY`].
///
/// ```
/// use std::collections::BTreeMap;
/// use oml_sampling::SamplerConfig;
///
/// let cfg: SamplerConfig = serde_json::from_str(
///     r#"{"name": "balance", "args": {"n_labels": 2, "n_instances": 2}}"#)?;
/// let labels: Vec<i64> = vec![0, 0, 1, 1, 2, 2];
/// let sampler = cfg.build(&labels, None::<&BTreeMap<i64, String>>, 7)?;
/// assert_eq!(sampler.batch_size(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Named", into = "Named")]
pub enum SamplerConfig {
    /// `balance`.
    Balance(BalanceConfig),
    /// `category_balance`.
    CategoryBalance(CategoryBalanceConfig),
    /// `distinct_category_balance`.
    DistinctCategoryBalance(DistinctCategoryBalanceConfig),
}

impl TryFrom<Named> for SamplerConfig {
    type Error = String;
    fn try_from(n: Named) -> Result<Self, String> {
        let err = |e: ArgsError| e.in_registry("sampler");
        match n.name.as_str() {
            "balance" => n.args_as().map(Self::Balance).map_err(err),
            "category_balance" => n.args_as().map(Self::CategoryBalance).map_err(err),
            "distinct_category_balance" => {
                n.args_as().map(Self::DistinctCategoryBalance).map_err(err)
            }
            other => Err(format!(
                "unknown sampler `{other}`: expected one of {}",
                SAMPLERS_REGISTRY.join(", ")
            )),
        }
    }
}

impl From<SamplerConfig> for Named {
    fn from(c: SamplerConfig) -> Self {
        match &c {
            SamplerConfig::Balance(a) => Named::new(c.name(), a),
            SamplerConfig::CategoryBalance(a) => Named::new(c.name(), a),
            SamplerConfig::DistinctCategoryBalance(a) => Named::new(c.name(), a),
        }
    }
}

impl SamplerConfig {
    /// The registry name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Balance(_) => SAMPLERS_REGISTRY[0],
            Self::CategoryBalance(_) => SAMPLERS_REGISTRY[1],
            Self::DistinctCategoryBalance(_) => SAMPLERS_REGISTRY[2],
        }
    }

    /// Whether the sampler needs `label2category`.
    pub fn needs_categories(&self) -> bool {
        !matches!(self, Self::Balance(_))
    }

    /// Builds the sampler over `labels` with `seed`. `label2category` is required by the
    /// category samplers and ignored by `balance`.
    ///
    /// # Errors
    /// The sampler's own checks (see each constructor), and
    /// `InvalidParameter { name: "label2category" }` when a category sampler gets none (OML
    /// raises `ValueError` for a category sampler on data without categories).
    pub fn build<L, C>(
        &self,
        labels: &[L],
        label2category: Option<&BTreeMap<L, C>>,
        seed: u64,
    ) -> Result<Box<dyn BatchSampler>, SamplerError>
    where
        L: Ord + Display,
        C: Ord + Display,
    {
        let categories = || {
            label2category.ok_or_else(|| SamplerError::InvalidParameter {
                name: "label2category",
                value: "none".to_string(),
                reason: format!(
                    "the `{}` sampler needs a category for every label; the dataset has none",
                    self.name()
                ),
            })
        };
        Ok(match self {
            Self::Balance(a) => {
                Box::new(BalanceSampler::new(labels, a.n_labels, a.n_instances)?.with_seed(seed))
            }
            Self::CategoryBalance(a) => Box::new(
                CategoryBalanceSampler::with_options(
                    labels,
                    categories()?,
                    a.n_categories,
                    a.n_labels,
                    a.n_instances,
                    a.resample_labels,
                    a.weight_categories,
                )?
                .with_seed(seed),
            ),
            Self::DistinctCategoryBalance(a) => Box::new(
                DistinctCategoryBalanceSampler::new(
                    labels,
                    categories()?,
                    a.n_categories,
                    a.n_labels,
                    a.n_instances,
                    a.epoch_size,
                )?
                .with_seed(seed),
            ),
        })
    }
}
