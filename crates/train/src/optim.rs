//! OML's `optimizer` and `scheduling` sections mapped onto what Burn provides.
//!
//! Arguments use PyTorch's names and defaults (OML passes them to `torch.optim`), so a config
//! gives the same optimizer in both: e.g. Adam's `eps` defaults to 1e-8 here although Burn's
//! default is 1e-5, and SGD's dampening to 0 (Burn: 0.1).
//!
//! | optimizer | args |
//! |---|---|
//! | `adam` | `lr, betas, eps, weight_decay, amsgrad` |
//! | `adamw` | `lr, betas, eps, weight_decay (0.01), amsgrad` |
//! | `sgd` | `lr, momentum, dampening, nesterov, weight_decay` |
//! | `rmsprop` | `lr, alpha, eps, weight_decay, momentum, centered` |
//! | `adagrad` | `lr, lr_decay, weight_decay, eps` |
//!
//! | scheduler | args |
//! |---|---|
//! | `step` | `step_size, gamma (0.1)` |
//! | `multi_step` | `milestones, gamma (0.1)` |
//! | `exponential` | `gamma` |
//! | `cosine_annealing` | `T_max, eta_min (0)` |
//! | `linear` | `start_factor (1/3), end_factor (1), total_iters (5)` |
//!
//! Burn steps schedulers once per optimizer step; with `scheduler_interval: epoch` the step
//! counts are multiplied by the batches per epoch (and `exponential` decays once per epoch).

use burn::grad_clipping::GradientClippingConfig;
use burn::lr_scheduler::LrSchedulerConfig;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::exponential::ExponentialLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::lr_scheduler::step::StepLrSchedulerConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdaGradConfig, AdamConfig, AdamWConfig, ModuleOptimizer, RmsPropConfig, SgdConfig,
};
use serde::Deserialize;

use crate::config::{NamedArgs, NamedExt, SchedulerInterval, Scheduling};
use crate::error::TrainError;

/// Optimizers this crate maps (OML's registry names).
pub const OPTIMIZERS: [&str; 5] = ["adam", "adamw", "sgd", "rmsprop", "adagrad"];
/// Schedulers this crate maps.
pub const SCHEDULERS: [&str; 5] = [
    "step",
    "multi_step",
    "exponential",
    "cosine_annealing",
    "linear",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdamArgs {
    lr: f64,
    #[serde(default = "betas")]
    betas: [f32; 2],
    #[serde(default = "eps8")]
    eps: f32,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default)]
    amsgrad: bool,
    #[serde(default)]
    grad_clip_norm: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdamWArgs {
    lr: f64,
    #[serde(default = "betas")]
    betas: [f32; 2],
    #[serde(default = "eps8")]
    eps: f32,
    #[serde(default = "wd_adamw")]
    weight_decay: f32,
    #[serde(default)]
    amsgrad: bool,
    #[serde(default)]
    grad_clip_norm: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SgdArgs {
    lr: f64,
    #[serde(default)]
    momentum: f64,
    #[serde(default)]
    dampening: f64,
    #[serde(default)]
    nesterov: bool,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default)]
    grad_clip_norm: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RmsPropArgs {
    lr: f64,
    #[serde(default = "alpha")]
    alpha: f32,
    #[serde(default = "eps8")]
    eps: f32,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default)]
    momentum: f32,
    #[serde(default)]
    centered: bool,
    #[serde(default)]
    grad_clip_norm: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaGradArgs {
    lr: f64,
    #[serde(default)]
    lr_decay: f64,
    #[serde(default)]
    weight_decay: f32,
    #[serde(default = "eps10")]
    eps: f32,
    #[serde(default)]
    grad_clip_norm: Option<f32>,
}

fn betas() -> [f32; 2] {
    [0.9, 0.999]
}
fn eps8() -> f32 {
    1e-8
}
fn eps10() -> f32 {
    1e-10
}
fn wd_adamw() -> f32 {
    0.01
}
fn alpha() -> f32 {
    0.99
}

fn decay(penalty: f32) -> Option<WeightDecayConfig> {
    (penalty != 0.0).then(|| WeightDecayConfig::new(penalty))
}

fn clip(norm: Option<f32>) -> Option<GradientClippingConfig> {
    norm.map(GradientClippingConfig::Norm)
}

fn check_lr(lr: f64, key: &str) -> Result<f64, TrainError> {
    if lr.is_finite() && lr > 0.0 {
        Ok(lr)
    } else {
        Err(TrainError::config(
            key,
            format!("lr must be positive, got {lr}"),
        ))
    }
}

/// Builds the optimizer; returns it with its base learning rate.
pub fn build_optimizer(named: &NamedArgs, key: &str) -> Result<(ModuleOptimizer, f64), TrainError> {
    let lr_key = format!("{key}.args.lr");
    Ok(match named.name.as_str() {
        "adam" => {
            let a: AdamArgs = named.args_at(key)?;
            let c = AdamConfig::new()
                .with_beta_1(a.betas[0])
                .with_beta_2(a.betas[1])
                .with_epsilon(a.eps)
                .with_amsgrad(a.amsgrad)
                .with_weight_decay(decay(a.weight_decay))
                .with_grad_clipping(clip(a.grad_clip_norm));
            (c.init(), check_lr(a.lr, &lr_key)?)
        }
        "adamw" => {
            let a: AdamWArgs = named.args_at(key)?;
            let c = AdamWConfig::new()
                .with_beta_1(a.betas[0])
                .with_beta_2(a.betas[1])
                .with_epsilon(a.eps)
                .with_weight_decay(a.weight_decay)
                .with_amsgrad(a.amsgrad)
                .with_grad_clipping(clip(a.grad_clip_norm));
            (c.init(), check_lr(a.lr, &lr_key)?)
        }
        "sgd" => {
            let a: SgdArgs = named.args_at(key)?;
            let momentum = (a.momentum != 0.0).then_some(MomentumConfig {
                momentum: a.momentum,
                dampening: a.dampening,
                nesterov: a.nesterov,
            });
            let c = SgdConfig::new()
                .with_momentum(momentum)
                .with_weight_decay(decay(a.weight_decay))
                .with_gradient_clipping(clip(a.grad_clip_norm));
            (c.init(), check_lr(a.lr, &lr_key)?)
        }
        "rmsprop" => {
            let a: RmsPropArgs = named.args_at(key)?;
            let c = RmsPropConfig::new()
                .with_alpha(a.alpha)
                .with_epsilon(a.eps)
                .with_momentum(a.momentum)
                .with_centered(a.centered)
                .with_weight_decay(decay(a.weight_decay))
                .with_grad_clipping(clip(a.grad_clip_norm));
            (c.init(), check_lr(a.lr, &lr_key)?)
        }
        "adagrad" => {
            let a: AdaGradArgs = named.args_at(key)?;
            let c = AdaGradConfig::new()
                .with_lr_decay(a.lr_decay)
                .with_epsilon(a.eps)
                .with_weight_decay(decay(a.weight_decay))
                .with_grad_clipping(clip(a.grad_clip_norm));
            (c.init(), check_lr(a.lr, &lr_key)?)
        }
        other => {
            return Err(TrainError::config(
                format!("{key}.name"),
                format!(
                    "optimizer `{other}` is not provided by Burn 0.22; available: {}",
                    OPTIMIZERS.join(", ")
                ),
            ));
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepArgs {
    step_size: usize,
    #[serde(default = "gamma")]
    gamma: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiStepArgs {
    milestones: Vec<usize>,
    #[serde(default = "gamma")]
    gamma: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExponentialArgs {
    gamma: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
struct CosineArgs {
    T_max: usize,
    #[serde(default)]
    eta_min: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearArgs {
    #[serde(default = "third")]
    start_factor: f64,
    #[serde(default = "one_f")]
    end_factor: f64,
    #[serde(default = "five")]
    total_iters: usize,
}

fn gamma() -> f64 {
    0.1
}
fn third() -> f64 {
    1.0 / 3.0
}
fn one_f() -> f64 {
    1.0
}
fn five() -> usize {
    5
}

/// The learning-rate schedule: constant `lr` without `scheduling`, else the mapped scheduler.
pub fn build_scheduler(
    scheduling: Option<&Scheduling>,
    lr: f64,
    batches_per_epoch: usize,
    key: &str,
) -> Result<ModuleLrScheduler, TrainError> {
    let Some(s) = scheduling else {
        return Ok(ModuleLrScheduler::new(lr));
    };
    if let Some(m) = &s.monitor_metric {
        return Err(TrainError::config(
            format!("{key}.monitor_metric"),
            format!(
                "`{m}`: reduce_on_plateau is not provided by Burn 0.22, so no scheduler monitors a metric"
            ),
        ));
    }
    if s.scheduler_frequency == 0 {
        return Err(TrainError::config(
            format!("{key}.scheduler_frequency"),
            "must be at least 1",
        ));
    }
    let per_interval = match s.scheduler_interval {
        SchedulerInterval::Step => 1,
        SchedulerInterval::Epoch => batches_per_epoch.max(1),
    };
    let mult = per_interval * s.scheduler_frequency;
    let skey = format!("{key}.scheduler");
    let bad = |e: String| TrainError::config(format!("{key}.scheduler"), e);
    let config: LrSchedulerConfig = match s.scheduler.name.as_str() {
        "step" => {
            let a: StepArgs = s.scheduler.args_at(&skey)?;
            StepLrSchedulerConfig::new(lr, a.step_size * mult)
                .with_gamma(a.gamma)
                .into()
        }
        "multi_step" => {
            let a: MultiStepArgs = s.scheduler.args_at(&skey)?;
            if a.milestones.is_empty() {
                LrSchedulerConfig::Constant(lr)
            } else {
                let schedulers = (0..=a.milestones.len())
                    .map(|i| LrSchedulerConfig::Constant(lr * a.gamma.powi(i as i32)))
                    .collect();
                SequentialLrSchedulerConfig::new(
                    schedulers,
                    a.milestones.iter().map(|m| m * mult).collect(),
                )
                .into()
            }
        }
        "exponential" => {
            let a: ExponentialArgs = s.scheduler.args_at(&skey)?;
            if mult == 1 {
                ExponentialLrSchedulerConfig::new(lr, a.gamma).into()
            } else {
                StepLrSchedulerConfig::new(lr, mult)
                    .with_gamma(a.gamma)
                    .into()
            }
        }
        "cosine_annealing" => {
            let a: CosineArgs = s.scheduler.args_at(&skey)?;
            CosineAnnealingLrSchedulerConfig::new(lr, a.T_max * mult)
                .with_min_lr(a.eta_min)
                .into()
        }
        "linear" => {
            let a: LinearArgs = s.scheduler.args_at(&skey)?;
            LinearLrSchedulerConfig::new(
                lr * a.start_factor,
                lr * a.end_factor,
                a.total_iters * mult,
            )
            .into()
        }
        other => {
            return Err(TrainError::config(
                format!("{key}.scheduler.name"),
                format!(
                    "scheduler `{other}` is not provided by Burn 0.22; available: {}",
                    SCHEDULERS.join(", ")
                ),
            ));
        }
    };
    burn::lr_scheduler::module_lr_scheduler::ModuleLrSchedulerConfig::new(config)
        .init()
        .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, args: serde_json::Value) -> NamedArgs {
        NamedArgs {
            name: name.into(),
            args,
        }
    }

    fn schedule(s: &Scheduling, lr: f64, per_epoch: usize, n: usize) -> Vec<f64> {
        let mut sch = build_scheduler(Some(s), lr, per_epoch, "scheduling").unwrap();
        (0..n).map(|_| sch.step().base()).collect()
    }

    fn scheduling(name: &str, args: serde_json::Value, interval: SchedulerInterval) -> Scheduling {
        Scheduling {
            scheduler: named(name, args),
            scheduler_interval: interval,
            scheduler_frequency: 1,
            monitor_metric: None,
        }
    }

    #[test]
    fn optimizers_parse_pytorch_arguments_and_reject_unknown() {
        for n in OPTIMIZERS {
            let (_, lr) =
                build_optimizer(&named(n, serde_json::json!({"lr": 0.01})), "optimizer").unwrap();
            assert_eq!(lr, 0.01);
        }
        let e = build_optimizer(
            &named("adam", serde_json::json!({"lr": 0.1, "beta": 1})),
            "optimizer",
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("optimizer.args") && e.to_string().contains("beta"),
            "{e}"
        );
        let e = build_optimizer(&named("lbfgs", serde_json::json!({"lr": 0.1})), "optimizer")
            .err()
            .unwrap();
        assert!(e.to_string().contains("optimizer.name"), "{e}");
        let e = build_optimizer(&named("sgd", serde_json::json!({"lr": -1.0})), "optimizer")
            .err()
            .unwrap();
        assert!(e.to_string().contains("optimizer.args.lr"), "{e}");
    }

    #[test]
    fn step_schedules_match_pytorch_formulas() {
        // torch StepLR(step_size=2, gamma=0.5): lr·0.5^floor(i/2)
        let s = scheduling(
            "step",
            serde_json::json!({"step_size": 2, "gamma": 0.5}),
            SchedulerInterval::Step,
        );
        assert_eq!(schedule(&s, 1.0, 3, 5), vec![1.0, 1.0, 0.5, 0.5, 0.25]);
        // per epoch with 3 batches per epoch: milestones at epochs 1 and 2 → steps 3 and 6
        let s = scheduling(
            "multi_step",
            serde_json::json!({"milestones": [1, 2], "gamma": 0.1}),
            SchedulerInterval::Epoch,
        );
        let got = schedule(&s, 1.0, 3, 8);
        let want = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        // exponential per epoch decays once per epoch
        let s = scheduling(
            "exponential",
            serde_json::json!({"gamma": 0.5}),
            SchedulerInterval::Epoch,
        );
        assert_eq!(schedule(&s, 0.5, 2, 5), vec![0.5, 0.5, 0.25, 0.25, 0.125]);
    }

    #[test]
    fn cosine_follows_the_closed_form() {
        let s = scheduling(
            "cosine_annealing",
            serde_json::json!({"T_max": 4, "eta_min": 0.0}),
            SchedulerInterval::Step,
        );
        let got = schedule(&s, 0.1, 1, 5);
        for (i, g) in got.iter().enumerate() {
            let want = 0.05 * (1.0 + (std::f64::consts::PI * i as f64 / 4.0).cos());
            assert!((g - want).abs() < 1e-9, "{i}: {g} vs {want}");
        }
    }

    #[test]
    fn unsupported_scheduling_is_an_error_naming_the_key() {
        let mut s = scheduling(
            "reduce_on_plateau",
            serde_json::json!({}),
            SchedulerInterval::Epoch,
        );
        let e = build_scheduler(Some(&s), 0.1, 1, "scheduling")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("scheduling.scheduler.name"), "{e}");
        s.monitor_metric = Some("OVERALL/cmc/1".into());
        let e = build_scheduler(Some(&s), 0.1, 1, "scheduling")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("monitor_metric"), "{e}");
    }
}
