//! OML 4.0 golden outputs: every case of `$OML_GOLDEN_DIR/losses` (default: the repository's
//! `tests/fixtures/golden/losses`). Miner triplets, HardCluster features, and for every loss key
//! the value (relative 1e-4) and the gradient w.r.t. the features (absolute 1e-4); ArcFace also
//! the gradient of its class matrix.

use burn::prelude::*;
use oml_interfaces::golden::{GoldenCase, check_all};
use oml_interfaces::{Criterion, Reduction, TripletsMiner, TripletsMinerInBatch};
use oml_mining::{
    AllTripletsMiner, ArcFaceLoss, ArcFaceOptions, HardClusterMiner, HardTripletsMiner, Miner,
    NHardArg, NHardTripletsMiner, SurrogatePrecision, TripletLossWithMiner,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

const LOSS_RTOL: f64 = 1e-4;
const GRAD_ATOL: f64 = 1e-4;

fn matrix(v: &Value, what: &str) -> Result<(Vec<f32>, [usize; 2]), String> {
    let rows = v.as_array().ok_or(format!("{what}: not an array"))?;
    let cols = rows
        .first()
        .and_then(|r| r.as_array())
        .map_or(0, |r| r.len());
    let mut out = Vec::with_capacity(rows.len() * cols);
    for r in rows {
        let r = r.as_array().ok_or(format!("{what}: row is not an array"))?;
        if r.len() != cols {
            return Err(format!("{what}: ragged rows"));
        }
        out.extend(r.iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32));
    }
    Ok((out, [rows.len(), cols]))
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>, String> {
    v.as_array()
        .ok_or(format!("{what}: not an array"))?
        .iter()
        .map(|x| x.as_i64().ok_or(format!("{what}: not an integer")))
        .collect()
}

fn triplet_lists(v: &Value, what: &str) -> Result<Vec<(usize, usize, usize)>, String> {
    let lists = v.as_array().ok_or(format!("{what}: not an array"))?;
    if lists.len() != 3 {
        return Err(format!("{what}: expected [anchors, positives, negatives]"));
    }
    let [a, p, n] = [0, 1, 2].map(|i| ints(&lists[i], what));
    let (a, p, n) = (a?, p?, n?);
    Ok((0..a.len())
        .map(|i| (a[i] as usize, p[i] as usize, n[i] as usize))
        .collect())
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn close_all(got: &[f32], want: &[f32], atol: f64, what: &str) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - *w as f64).abs())
        .fold(
            0.0f64,
            |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        );
    if worst > atol {
        return Err(format!("{what}: max |diff| {worst:.3e} > {atol:.0e}"));
    }
    Ok(())
}

fn close_rel(got: f64, want: f64, what: &str) -> Result<(), String> {
    let tol = LOSS_RTOL * want.abs().max(1e-6);
    if (got - want).abs() > tol || got.is_nan() {
        return Err(format!("{what}: {got} vs OML {want}"));
    }
    Ok(())
}

struct Case {
    features: Vec<f32>,
    shape: [usize; 2],
    labels: Vec<i64>,
}

impl Case {
    fn load(c: &GoldenCase) -> Result<Self, String> {
        let (features, shape) = matrix(&c.json["features"], "features")?;
        let labels = ints(&c.json["labels"], "labels")?;
        Ok(Self {
            features,
            shape,
            labels,
        })
    }

    fn tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(self.features.clone(), self.shape), device)
    }

    fn instances(&self) -> usize {
        self.labels
            .iter()
            .map(|l| self.labels.iter().filter(|m| *m == l).count())
            .min()
            .unwrap_or(0)
    }
}

/// Runs `criterion` forward + backward and compares with `{loss, grad}`.
fn check_loss(
    case: &Case,
    criterion: &dyn Criterion,
    expected: &Value,
    what: &str,
) -> Result<(), String> {
    let device = oml_interfaces::device::test_device().autodiff();
    let x = case.tensor(&device).require_grad();
    let out = criterion
        .forward(x.clone(), &case.labels)
        .map_err(|e| format!("{what}: {e}"))?;
    let value = out.loss.clone().into_scalar::<f32>() as f64;
    let want = expected["loss"]
        .as_f64()
        .ok_or(format!("{what}: no loss"))?;
    close_rel(value, want, &format!("{what} loss"))?;
    let grads = out.loss.backward();
    let g = x.grad(&grads).ok_or(format!("{what}: no gradient"))?;
    let (want_g, _) = matrix(&expected["grad"], "grad")?;
    close_all(&host(g), &want_g, GRAD_ATOL, &format!("{what} grad"))
}

fn check_triplet_key(case: &Case, key: &str, expected: &Value) -> Result<(), String> {
    // triplet_with_miner/{all|hard|hard_cluster}/margin={0.2|None}/{mean|sum}
    let parts: Vec<&str> = key.split('/').collect();
    let [_, miner, margin, reduction] = parts[..] else {
        return Err(format!("{key}: unexpected key layout"));
    };
    let margin = match margin.strip_prefix("margin=") {
        Some("None") => None,
        Some(m) => Some(m.parse::<f64>().map_err(|e| format!("{key}: {e}"))?),
        None => return Err(format!("{key}: no margin")),
    };
    let reduction: Reduction = reduction.parse().map_err(|e| format!("{key}: {e}"))?;
    let miners: Vec<(&str, Miner)> = match miner {
        // the distance-matrix path, and OML's way (gathering every triplet's features)
        "all" => vec![
            ("matrix path", Miner::All(AllTripletsMiner::unlimited())),
            (
                "gathered path",
                Miner::Custom(Arc::new(AllTripletsMiner::unlimited())),
            ),
        ],
        "hard" => vec![("", Miner::Hard(HardTripletsMiner))],
        "hard_cluster" => vec![("", Miner::HardCluster(HardClusterMiner))],
        other => return Err(format!("{key}: unknown miner {other}")),
    };
    for (path, miner) in miners {
        let loss =
            TripletLossWithMiner::new(margin, miner, reduction, true).map_err(|e| e.to_string())?;
        check_loss(case, &loss, expected, &format!("{key} {path}"))?;
    }
    Ok(())
}

fn check_surrogate_key(case: &Case, key: &str, expected: &Value) -> Result<(), String> {
    // surrogate_precision/k={k}/t1={t1}/t2={t2}
    let mut k = None;
    let (mut t1, mut t2) = (1.0, 0.01);
    for part in key.split('/').skip(1) {
        let (name, v) = part
            .split_once('=')
            .ok_or(format!("{key}: bad part {part}"))?;
        match name {
            "k" => k = Some(v.parse::<usize>().map_err(|e| format!("{key}: {e}"))?),
            "t1" => t1 = v.parse().map_err(|e| format!("{key}: {e}"))?,
            "t2" => t2 = v.parse().map_err(|e| format!("{key}: {e}"))?,
            _ => return Err(format!("{key}: unknown parameter {name}")),
        }
    }
    let k = k.ok_or(format!("{key}: no k"))?;
    let loss = SurrogatePrecision::new(k, t1, t2, Reduction::Mean).map_err(|e| e.to_string())?;
    check_loss(case, &loss, expected, key)
}

fn check_arcface_key(case: &Case, key: &str, expected: &Value) -> Result<(), String> {
    // arcface/m={m}/s={s}
    let mut opts = ArcFaceOptions::default();
    for part in key.split('/').skip(1) {
        let (name, v) = part
            .split_once('=')
            .ok_or(format!("{key}: bad part {part}"))?;
        let v: f64 = v.parse().map_err(|e| format!("{key}: {e}"))?;
        match name {
            "m" => opts.m = v,
            "s" => opts.s = v,
            _ => return Err(format!("{key}: unknown parameter {name}")),
        }
    }
    let device = oml_interfaces::device::test_device().autodiff();
    let (w, w_shape) = matrix(&expected["weight"], "weight")?;
    let weight = Tensor::<2>::from_data(TensorData::new(w, w_shape), &device).require_grad();
    let loss = ArcFaceLoss::with_weight(weight, opts).map_err(|e| e.to_string())?;
    let x = case.tensor(&device).require_grad();
    let out = loss
        .forward(x.clone(), &case.labels)
        .map_err(|e| format!("{key}: {e}"))?;
    let want = expected["loss"].as_f64().ok_or(format!("{key}: no loss"))?;
    close_rel(
        out.loss.clone().into_scalar::<f32>() as f64,
        want,
        &format!("{key} loss"),
    )?;
    let grads = out.loss.backward();
    let (want_g, _) = matrix(&expected["grad"], "grad")?;
    close_all(
        &host(x.grad(&grads).ok_or("no feature gradient")?),
        &want_g,
        GRAD_ATOL,
        &format!("{key} grad"),
    )?;
    let (want_gw, _) = matrix(&expected["grad_weight"], "grad_weight")?;
    let gw = loss.weight.val().grad(&grads).ok_or("no weight gradient")?;
    close_all(
        &host(gw),
        &want_gw,
        GRAD_ATOL,
        &format!("{key} grad_weight"),
    )
}

#[test]
fn golden_losses_values_and_gradients() {
    check_all("losses", |c| {
        let case = Case::load(c)?;
        let losses = c.json["losses"].as_object().ok_or("no `losses` object")?;
        if losses.is_empty() {
            return Err("no loss key".to_string());
        }
        for (key, expected) in losses {
            match key.split('/').next() {
                Some("triplet_with_miner") => check_triplet_key(&case, key, expected)?,
                Some("surrogate_precision") => check_surrogate_key(&case, key, expected)?,
                Some("arcface") => check_arcface_key(&case, key, expected)?,
                _ => return Err(format!("unknown loss key {key}")),
            }
        }
        Ok(())
    });
}

#[test]
fn golden_miner_triplets() {
    check_all("losses", |c| {
        let case = Case::load(c)?;
        let device = oml_interfaces::device::test_device();
        let x = case.tensor(&device);
        let miners = c.json["miners"].as_object().ok_or("no `miners` object")?;
        let k = case.instances();
        for (name, expected) in miners {
            let want = triplet_lists(expected, name)?;
            let (miner, as_set): (Box<dyn TripletsMinerInBatch>, bool) = match name.as_str() {
                "all" => (Box::new(AllTripletsMiner::unlimited()), true),
                "hard" => (Box::new(HardTripletsMiner), false),
                "nhard_2_3" => (
                    Box::new(
                        NHardTripletsMiner::new(2.min(k - 1), 3usize).map_err(|e| e.to_string())?,
                    ),
                    true,
                ),
                "nhard_range_1_2__2_4" => (
                    Box::new(
                        NHardTripletsMiner::new(
                            NHardArg::Range([1, 2.min(k as i64 - 1)]),
                            NHardArg::Range([2, 4]),
                        )
                        .map_err(|e| e.to_string())?,
                    ),
                    true,
                ),
                other => return Err(format!("unknown miner key {other}")),
            };
            let got: Vec<_> = miner
                .mine(&x, &case.labels)
                .map_err(|e| format!("{name}: {e}"))?
                .iter()
                .collect();
            if as_set {
                let (g, w): (BTreeSet<_>, BTreeSet<_>) =
                    (got.iter().collect(), want.iter().collect());
                if got.len() != want.len() || g != w {
                    return Err(format!(
                        "{name}: {} triplets differ from OML's {}",
                        got.len(),
                        want.len()
                    ));
                }
            } else if got != want {
                return Err(format!("{name}: {got:?} vs OML {want:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn golden_hard_cluster_features() {
    check_all("losses", |c| {
        let case = Case::load(c)?;
        let device = oml_interfaces::device::test_device();
        let expected = c.json["hard_cluster_triplet_features"]
            .as_array()
            .ok_or("no hard_cluster_triplet_features")?;
        if expected.len() != 3 {
            return Err("expected [anchors, positives, negatives]".to_string());
        }
        let got = HardClusterMiner
            .sample(case.tensor(&device), &case.labels)
            .map_err(|e| e.to_string())?;
        for (name, t, want) in [
            ("anchors", got.anchor, &expected[0]),
            ("negatives", got.negative, &expected[2]),
        ] {
            let (w, _) = matrix(want, name)?;
            close_all(&host(t), &w, 1e-5, name)?;
        }
        let (w, _) = matrix(&expected[1], "positives")?;
        let got = host(got.positive);
        if close_all(&got, &w, 1e-5, "positives").is_ok() {
            return Ok(());
        }
        // The positive is the instance farthest from its label's mean; with mathematically
        // equal distances (always the case with 2 instances per label) float rounding picks
        // one, and another backend's rounding may pick another. Accept a tied instance.
        let dim = case.shape[1];
        let mut labels: Vec<i64> = case.labels.clone();
        labels.sort();
        labels.dedup();
        for (l, label) in labels.iter().enumerate() {
            let rows: Vec<&[f32]> = case
                .features
                .chunks(dim)
                .zip(&case.labels)
                .filter(|(_, x)| *x == label)
                .map(|(r, _)| r)
                .collect();
            let mean: Vec<f64> = (0..dim)
                .map(|c| rows.iter().map(|r| r[c] as f64).sum::<f64>() / rows.len() as f64)
                .collect();
            let spread = |v: &[f32]| -> f64 {
                v.iter()
                    .zip(&mean)
                    .map(|(a, m)| (*a as f64 - m).powi(2))
                    .sum()
            };
            let (g, e) = (&got[l * dim..(l + 1) * dim], &w[l * dim..(l + 1) * dim]);
            let is_instance = rows
                .iter()
                .any(|r| r.iter().zip(g).all(|(a, b)| (a - b).abs() <= 1e-6));
            let (sg, se) = (spread(g), spread(e));
            if !is_instance || (sg - se).abs() > 1e-5 * se.max(1.0) {
                return Err(format!(
                    "positives: label {label}: got an instance at squared distance {sg} from the \
                     mean, expected {se} (instance of the label: {is_instance})"
                ));
            }
        }
        Ok(())
    });
}
