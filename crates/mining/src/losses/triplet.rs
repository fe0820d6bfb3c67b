//! Triplet losses: `TripletLoss`, `TripletLossPlain`, `TripletLossWithMiner`.

use burn::prelude::*;
use burn::tensor::activation::relu;
use oml_interfaces::miners::check_batch_labels;
use oml_interfaces::{
    Criterion, LossError, LossOutput, MiningError, Reduction, Triplets, TripletsMinerInBatch,
};
use rayon::prelude::*;
use std::collections::BTreeMap;

use crate::distance::{
    host_f32, host_safe_sqrt, host_self_cdist, index_tensor, loss_self_cdist, rowwise_distances,
    scalar_log,
};
use crate::miners::{AllTripletsMiner, HardTripletsMiner, Miner, all::AnchorLists};
use oml_interfaces::cpu::squared_distance;

/// Validates OML's `margin is None or margin > 0`.
pub(crate) fn check_margin(margin: Option<f64>) -> Result<(), LossError> {
    match margin {
        Some(m) if !(m > 0.0 && m.is_finite()) => Err(LossError::InvalidParameter {
            name: "margin",
            value: m.to_string(),
            reason: "must be a positive finite number, or null for the soft margin".to_string(),
        }),
        _ => Ok(()),
    }
}

/// Per-triplet losses from the two distances: `relu(margin + d_ap − d_an)`, or with no margin
/// the soft margin `log(1 + exp(d_ap − d_an))` computed stably as `relu(x) + log1p(exp(−|x|))`.
pub fn triplet_values(d_ap: Tensor<1>, d_an: Tensor<1>, margin: Option<f64>) -> Tensor<1> {
    match margin {
        // same association as OML (`margin + d_ap` first) so the active set matches exactly
        Some(m) => relu(d_ap.add_scalar(m) - d_an),
        None => {
            let x = d_ap - d_an;
            let neg_abs = x
                .clone()
                .mask_where(x.clone().greater_elem(0.0), x.clone().neg());
            relu(x) + neg_abs.exp().log1p()
        }
    }
}

/// A reduced triplet loss computed on the host: per-triplet distances and values, the reduced
/// loss and its gradient with respect to the `[B, D]` features.
struct HostTripletLoss {
    d_ap: Vec<f32>,
    d_an: Vec<f32>,
    values: Vec<f32>,
    loss: f32,
    grad: Vec<f32>,
}

/// The same loss as [`triplet_values`] over [`rowwise_distances`], reduced by `reduction`
/// (`Mean` or `Sum`), with the gradient autodiff would give: `∂d/∂a = (a − p)/d` (0 where the
/// distance is floored to 0, as `safe_sqrt`), the margin's `relu'` (0 at 0) or the soft
/// margin's sigmoid.
fn host_triplet_loss(
    x: &[f32],
    d: usize,
    tri: &Triplets,
    margin: Option<f64>,
    reduction: Reduction,
) -> HostTripletLoss {
    let t = tri.len();
    let scale = match reduction {
        Reduction::Mean => 1.0 / t as f32,
        _ => 1.0,
    };
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let dist = |i: usize, j: usize| host_safe_sqrt(squared_distance(row(i), row(j)));
    let mut out = HostTripletLoss {
        d_ap: Vec::with_capacity(t),
        d_an: Vec::with_capacity(t),
        values: Vec::with_capacity(t),
        loss: 0.0,
        grad: vec![0.0; x.len()],
    };
    // `grad[i] += c·(x_i − x_j)`, `grad[j] −= c·(x_i − x_j)`
    let pull = |grad: &mut [f32], i: usize, j: usize, c: f32| {
        for k in 0..d {
            let diff = x[i * d + k] - x[j * d + k];
            grad[i * d + k] += c * diff;
            grad[j * d + k] -= c * diff;
        }
    };
    let mut sum = 0.0f64;
    for (a, p, n) in tri.iter() {
        let (dap, dan) = (dist(a, p), dist(a, n));
        let (value, slope) = match margin {
            // as `relu(d_ap + margin − d_an)`, in that order
            Some(m) => {
                let z = dap + m as f32 - dan;
                (z.max(0.0), if z > 0.0 { 1.0 } else { 0.0 })
            }
            None => {
                let z = dap - dan;
                (
                    z.max(0.0) + (-z.abs()).exp().ln_1p(),
                    1.0 / (1.0 + (-z).exp()),
                )
            }
        };
        let g = scale * slope;
        if g != 0.0 {
            if dap > 0.0 {
                pull(&mut out.grad, a, p, g / dap);
            }
            if dan > 0.0 {
                pull(&mut out.grad, a, n, -g / dan);
            }
        }
        sum += value as f64;
        out.d_ap.push(dap);
        out.d_an.push(dan);
        out.values.push(value);
    }
    out.loss = match reduction {
        Reduction::Mean => (sum / t as f64) as f32,
        _ => sum as f32,
    };
    out
}

/// `active_tri`, `pos_dist`, `neg_dist` of a set of triplets (detached).
fn triplet_logs(
    values: &Tensor<1>,
    d_ap: &Tensor<1>,
    d_an: &Tensor<1>,
) -> BTreeMap<String, Tensor<1>> {
    let mut logs = BTreeMap::new();
    let values = values.clone().without_autodiff();
    logs.insert(
        "active_tri".to_string(),
        values.greater_elem(0.0).float().mean(),
    );
    logs.insert(
        "pos_dist".to_string(),
        d_ap.clone().without_autodiff().mean(),
    );
    logs.insert(
        "neg_dist".to_string(),
        d_an.clone().without_autodiff().mean(),
    );
    logs
}

/// OML's `TripletLoss(margin, reduction, need_logs)` on explicit anchor/positive/negative rows.
///
/// As a [`Criterion`] it reads `features` `[3N, D]` laid out as `(a, p, n), (a, p, n), …`
/// (the layout of [`TripletLossPlain`]) and ignores the labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripletLoss {
    margin: Option<f64>,
    reduction: Reduction,
    need_logs: bool,
}

impl TripletLoss {
    /// `margin`: `Some(m > 0)` or `None` for the soft margin.
    pub fn new(
        margin: Option<f64>,
        reduction: Reduction,
        need_logs: bool,
    ) -> Result<Self, LossError> {
        check_margin(margin)?;
        Ok(Self {
            margin,
            reduction,
            need_logs,
        })
    }

    /// The margin (`None`: soft margin).
    pub fn margin(&self) -> Option<f64> {
        self.margin
    }

    /// The reduction.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// # Shapes
    /// three `[N, D]` tensors (N ≥ 1).
    pub fn forward_triplets(
        &self,
        anchor: Tensor<2>,
        positive: Tensor<2>,
        negative: Tensor<2>,
    ) -> Result<LossOutput, LossError> {
        let (a, p, n) = (anchor.dims(), positive.dims(), negative.dims());
        if a != p || a != n {
            return Err(LossError::Shape(format!(
                "anchor {a:?}, positive {p:?} and negative {n:?} must have the same shape"
            )));
        }
        if a[0] == 0 {
            return Err(MiningError::Empty("no triplet to compute the loss on".to_string()).into());
        }
        let d_ap = rowwise_distances(anchor.clone(), positive);
        let d_an = rowwise_distances(anchor, negative);
        Ok(self.loss_from_distances(d_ap, d_an))
    }

    fn loss_from_distances(&self, d_ap: Tensor<1>, d_an: Tensor<1>) -> LossOutput {
        let values = triplet_values(d_ap.clone(), d_an.clone(), self.margin);
        let logs = if self.need_logs {
            triplet_logs(&values, &d_ap, &d_an)
        } else {
            BTreeMap::new()
        };
        LossOutput {
            loss: self.reduction.apply(values),
            logs,
        }
    }
}

/// Splits `[3N, D]` plain-layout features into anchor, positive, negative rows.
fn split_plain(features: Tensor<2>) -> Result<[Tensor<2>; 3], LossError> {
    let [rows, _] = features.dims();
    if rows == 0 || rows % 3 != 0 {
        return Err(LossError::Shape(format!(
            "plain triplet features need 3N rows laid out as (a, p, n)…, got {rows}"
        )));
    }
    let device = features.device();
    let ids = |offset: usize| index_tensor(&(offset..rows).step_by(3).collect::<Vec<_>>(), &device);
    Ok([
        features.clone().select(0, ids(0)),
        features.clone().select(0, ids(1)),
        features.select(0, ids(2)),
    ])
}

fn check_plain_labels(features: &Tensor<2>, labels: &[i64]) -> Result<(), LossError> {
    let [rows, _] = features.dims();
    if !labels.is_empty() && labels.len() != rows {
        return Err(MiningError::LengthMismatch {
            features: rows,
            labels: labels.len(),
        }
        .into());
    }
    Ok(())
}

impl Criterion for TripletLoss {
    fn criterion_name(&self) -> &str {
        "triplet"
    }

    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
        check_plain_labels(&features, labels)?;
        let [a, p, n] = split_plain(features)?;
        self.forward_triplets(a, p, n)
    }
}

/// OML's `TripletLossPlain`: [`TripletLoss`] on `[3N, D]` features laid out as
/// `(a, p, n), (a, p, n), …` (anchors at rows 0, 3, 6…). Labels are ignored (empty, or one per row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripletLossPlain {
    inner: TripletLoss,
}

impl TripletLossPlain {
    /// As [`TripletLoss::new`].
    pub fn new(
        margin: Option<f64>,
        reduction: Reduction,
        need_logs: bool,
    ) -> Result<Self, LossError> {
        Ok(Self {
            inner: TripletLoss::new(margin, reduction, need_logs)?,
        })
    }
}

impl Criterion for TripletLossPlain {
    fn criterion_name(&self) -> &str {
        "triplet"
    }

    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
        self.inner.forward(features, labels)
    }
}

/// OML's `TripletLossWithMiner(margin, miner, reduction, need_logs)`: mines triplets in the
/// batch, then applies the triplet loss.
///
/// Paths (same value and gradient as OML, see `docs/mining.md`):
/// - [`AllTripletsMiner`] without truncation, with a margin and `mean`/`sum`: computed from the
///   `B×B` distance matrix, counting for every (anchor, positive) how many negatives are active
///   (`O(B² log B)` on the host, no triplet list, no feature gathering);
/// - other index miners (all with the soft margin or `none`, truncated all, NHard): distances
///   picked from the `B×B` matrix when there are many triplets, row-wise distances of the
///   gathered rows when there are few (Hard);
/// - HardCluster, the memory miners and custom miners: their triplet features.
///
/// Logs (when `need_logs`): `active_tri`, `pos_dist`, `neg_dist`, the miner's logs
/// (`MinerWithBank`), and for `TripletMinerWithMemory` `orig_active_tri`, `bank_active_tri`,
/// `pos_dist_orig`, `neg_dist_orig`, `pos_dist_bank`, `neg_dist_bank` (a subset's keys are
/// absent when it is empty, where OML logs NaN).
#[derive(Debug, Clone)]
pub struct TripletLossWithMiner {
    margin: Option<f64>,
    reduction: Reduction,
    need_logs: bool,
    miner: Miner,
}

impl TripletLossWithMiner {
    /// `margin`: `Some(m > 0)` or `None` for the soft margin.
    pub fn new(
        margin: Option<f64>,
        miner: impl Into<Miner>,
        reduction: Reduction,
        need_logs: bool,
    ) -> Result<Self, LossError> {
        check_margin(margin)?;
        Ok(Self {
            margin,
            reduction,
            need_logs,
            miner: miner.into(),
        })
    }

    /// The miner.
    pub fn miner(&self) -> &Miner {
        &self.miner
    }

    /// The margin (`None`: soft margin).
    pub fn margin(&self) -> Option<f64> {
        self.margin
    }

    /// The reduction.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn finish(&self, values: Tensor<1>, d_ap: Tensor<1>, d_an: Tensor<1>) -> LossOutput {
        let logs = if self.need_logs {
            triplet_logs(&values, &d_ap, &d_an)
        } else {
            BTreeMap::new()
        };
        LossOutput {
            loss: self.reduction.apply(values),
            logs,
        }
    }

    /// Hard and n-hard mining and their loss on the host, where the CPU fast path applies
    /// (`oml_interfaces::cpu`) and the loss is reduced to a scalar: the features are read once,
    /// mined from the host distance matrix, and [`host_triplet_loss`] gives the loss and its
    /// exact gradient. `None`: the Burn ops path.
    fn mined_on_host(
        &self,
        features: &Tensor<2>,
        labels: &[i64],
    ) -> Result<Option<LossOutput>, LossError> {
        let reduced = matches!(self.reduction, Reduction::Mean | Reduction::Sum);
        if !reduced || !oml_interfaces::cpu::applies(&features.device()) {
            return Ok(None);
        }
        let [b, d] = features.dims();
        let x = host_f32(features.clone().without_autodiff());
        let dist = host_self_cdist(&x, b, d);
        let tri = match &self.miner {
            Miner::Hard(_) => HardTripletsMiner::mine_from_distances(&dist, labels)?,
            Miner::NHard(m) => m.mine_from_distances(&dist, labels, None)?,
            _ => return Ok(None),
        };
        if tri.is_empty() {
            return Err(MiningError::Empty("the miner returned no triplet".to_string()).into());
        }
        let host = host_triplet_loss(&x, d, &tri, self.margin, self.reduction);
        let device = features.device();
        let grad = Tensor::<2>::from_data(TensorData::new(host.grad, [b, d]), &device);
        // value: the host loss; gradient: `grad`, through one product with the features
        let carrier = (features.clone() * grad).sum();
        let loss = carrier.clone() - carrier.detach()
            + Tensor::<1>::from_data(TensorData::new(vec![host.loss], [1]), &device);
        let logs = if self.need_logs {
            let t = |v: Vec<f32>| {
                let n = v.len();
                Tensor::<1>::from_data(TensorData::new(v, [n]), &device)
            };
            triplet_logs(&t(host.values), &t(host.d_ap), &t(host.d_an))
        } else {
            BTreeMap::new()
        };
        Ok(Some(LossOutput { loss, logs }))
    }

    /// Loss over index triplets of the batch.
    fn loss_from_indices(
        &self,
        features: Tensor<2>,
        tri: &Triplets,
        use_matrix: bool,
    ) -> Result<LossOutput, LossError> {
        let [b, _] = features.dims();
        if tri.is_empty() {
            return Err(MiningError::Empty("the miner returned no triplet".to_string()).into());
        }
        let (d_ap, d_an) = if use_matrix || tri.len() > 4 * b {
            let device = features.device();
            let flat = loss_self_cdist(features).reshape([b * b]);
            let ap: Vec<usize> = tri.iter().map(|(a, p, _)| a * b + p).collect();
            let an: Vec<usize> = tri.iter().map(|(a, _, n)| a * b + n).collect();
            (
                flat.clone().select(0, index_tensor(&ap, &device)),
                flat.select(0, index_tensor(&an, &device)),
            )
        } else {
            let f = tri.gather(features);
            (
                rowwise_distances(f.anchor.clone(), f.positive),
                rowwise_distances(f.anchor, f.negative),
            )
        };
        let values = triplet_values(d_ap.clone(), d_an.clone(), self.margin);
        Ok(self.finish(values, d_ap, d_an))
    }

    /// All triplets with a margin and `mean`/`sum`, from the distance matrix.
    fn all_triplets_counting(
        &self,
        features: Tensor<2>,
        labels: &[i64],
        margin: f64,
    ) -> LossOutput {
        let [b, _] = features.dims();
        let device = features.device();
        let d = loss_self_cdist(features);
        let host = host_f32(d.clone().without_autodiff());
        let mut sums = all_triplets_margin_sums(&host, labels, margin as f32);
        if host.iter().any(|x| x.is_nan()) {
            // a diverged batch must show a NaN loss, as OML's would
            sums.value = f64::NAN;
        }
        let scale = match self.reduction {
            Reduction::Mean => 1.0 / sums.n_triplets as f64,
            _ => 1.0,
        };
        let weights = Tensor::<2>::from_data(TensorData::new(sums.weights, [b, b]), &device);
        // Gradient: Σ W ⊙ ∂D (relu's subgradient is constant between activity changes);
        // value: the exact host sum, so the large positive and negative parts never cancel in f32.
        let g = (d * weights).sum().mul_scalar(scale);
        let loss = (g.clone() - g.detach()).add_scalar(sums.value * scale);
        let mut logs = BTreeMap::new();
        if self.need_logs {
            let n = sums.n_triplets as f64;
            logs.insert(
                "active_tri".to_string(),
                scalar_log(sums.n_active as f64 / n, &device),
            );
            logs.insert(
                "pos_dist".to_string(),
                scalar_log(sums.pos_sum / n, &device),
            );
            logs.insert(
                "neg_dist".to_string(),
                scalar_log(sums.neg_sum / n, &device),
            );
        }
        LossOutput { loss, logs }
    }
}

/// Host-side sums of the all-triplets margin loss.
pub(crate) struct AllTripletSums {
    /// `W[a, j]`: +#active negatives of (a, j) for positives, −#active positives for negatives.
    pub weights: Vec<f32>,
    /// Σ over active triplets of `margin + d_ap − d_an`.
    pub value: f64,
    pub n_active: u64,
    pub n_triplets: u64,
    /// Σ over all triplets of `d_ap` and of `d_an`.
    pub pos_sum: f64,
    pub neg_sum: f64,
}

/// For each anchor: negatives' distances sorted once; each positive's threshold
/// `t = margin + d_ap` counts (and sums, with prefix sums) the negatives with `d_an < t`.
pub(crate) fn all_triplets_margin_sums(d: &[f32], labels: &[i64], margin: f32) -> AllTripletSums {
    let b = labels.len();
    let lists = AnchorLists::new(labels);
    struct Row {
        w: Vec<(usize, f32)>,
        value: f64,
        active: u64,
        n_tri: u64,
        pos: f64,
        neg: f64,
    }
    let rows: Vec<Row> = (0..b)
        .into_par_iter()
        .map(|a| {
            let row = &d[a * b..(a + 1) * b];
            let (pos, neg) = (&lists.positives[a], &lists.negatives[a]);
            let mut nd: Vec<f32> = neg.iter().map(|&n| row[n]).collect();
            nd.sort_by(f32::total_cmp);
            let mut prefix = Vec::with_capacity(nd.len() + 1);
            prefix.push(0.0f64);
            for x in &nd {
                prefix.push(prefix.last().copied().unwrap_or(0.0) + *x as f64);
            }
            let mut thresholds: Vec<f32> = pos.iter().map(|&p| margin + row[p]).collect();
            let mut w = Vec::with_capacity(pos.len() + neg.len());
            let (mut value, mut active) = (0.0f64, 0u64);
            for (&p, &t) in pos.iter().zip(&thresholds) {
                let cnt = nd.partition_point(|&x| x < t);
                w.push((p, cnt as f32));
                active += cnt as u64;
                value += cnt as f64 * t as f64 - prefix[cnt];
            }
            thresholds.sort_by(f32::total_cmp);
            for &n in neg {
                let cnt = thresholds.len() - thresholds.partition_point(|&t| t <= row[n]);
                w.push((n, -(cnt as f32)));
            }
            let pos_sum: f64 = pos.iter().map(|&p| row[p] as f64).sum::<f64>() * neg.len() as f64;
            let neg_sum: f64 = neg.iter().map(|&n| row[n] as f64).sum::<f64>() * pos.len() as f64;
            Row {
                w,
                value,
                active,
                n_tri: (pos.len() * neg.len()) as u64,
                pos: pos_sum,
                neg: neg_sum,
            }
        })
        .collect();
    let mut out = AllTripletSums {
        weights: vec![0.0; b * b],
        value: 0.0,
        n_active: 0,
        n_triplets: 0,
        pos_sum: 0.0,
        neg_sum: 0.0,
    };
    for (a, r) in rows.into_iter().enumerate() {
        for (j, w) in r.w {
            out.weights[a * b + j] = w;
        }
        out.value += r.value;
        out.n_active += r.active;
        out.n_triplets += r.n_tri;
        out.pos_sum += r.pos;
        out.neg_sum += r.neg;
    }
    out
}

impl Criterion for TripletLossWithMiner {
    fn criterion_name(&self) -> &str {
        "triplet"
    }

    fn forward(&self, features: Tensor<2>, labels: &[i64]) -> Result<LossOutput, LossError> {
        crate::miners::check_lengths(&features, labels)?;
        match &self.miner {
            Miner::All(m) if !m.truncates(labels) => {
                check_batch_labels(labels)?;
                match (self.margin, self.reduction) {
                    (Some(margin), Reduction::Mean | Reduction::Sum) => {
                        Ok(self.all_triplets_counting(features, labels, margin))
                    }
                    _ => {
                        let tri = AllTripletsMiner::unlimited().mine(&features, labels)?;
                        self.loss_from_indices(features, &tri, true)
                    }
                }
            }
            Miner::All(m) => {
                let tri = m.mine(&features, labels)?;
                self.loss_from_indices(features, &tri, false)
            }
            Miner::Hard(m) => {
                if let Some(out) = self.mined_on_host(&features, labels)? {
                    return Ok(out);
                }
                let tri = m.mine(&features, labels)?;
                self.loss_from_indices(features, &tri, false)
            }
            Miner::NHard(m) => {
                if let Some(out) = self.mined_on_host(&features, labels)? {
                    return Ok(out);
                }
                let tri = m.mine(&features, labels)?;
                self.loss_from_indices(features, &tri, false)
            }
            miner => {
                let mined = miner.sample_with_logs(features, labels)?;
                let f = mined.features;
                if f.anchor.dims()[0] == 0 {
                    return Err(
                        MiningError::Empty("the miner returned no triplet".to_string()).into(),
                    );
                }
                let d_ap = rowwise_distances(f.anchor.clone(), f.positive);
                let d_an = rowwise_distances(f.anchor, f.negative);
                let values = triplet_values(d_ap.clone(), d_an.clone(), self.margin);
                let mut extra = BTreeMap::new();
                if self.need_logs
                    && let Some(is_orig) = &mined.is_original
                {
                    let device = values.device();
                    let v = host_f32(values.clone().without_autodiff());
                    let ap = host_f32(d_ap.clone().without_autodiff());
                    let an = host_f32(d_an.clone().without_autodiff());
                    for (origin, suffix, active_key) in [
                        (true, "orig", "orig_active_tri"),
                        (false, "bank", "bank_active_tri"),
                    ] {
                        let ids: Vec<usize> =
                            (0..v.len()).filter(|&i| is_orig[i] == origin).collect();
                        if ids.is_empty() {
                            continue;
                        }
                        let mean = |x: &[f32], active: bool| {
                            ids.iter()
                                .map(|&i| {
                                    if active {
                                        (x[i] > 0.0) as u8 as f64
                                    } else {
                                        x[i] as f64
                                    }
                                })
                                .sum::<f64>()
                                / ids.len() as f64
                        };
                        extra.insert(active_key.to_string(), scalar_log(mean(&v, true), &device));
                        extra.insert(
                            format!("pos_dist_{suffix}"),
                            scalar_log(mean(&ap, false), &device),
                        );
                        extra.insert(
                            format!("neg_dist_{suffix}"),
                            scalar_log(mean(&an, false), &device),
                        );
                    }
                }
                let mut out = self.finish(values, d_ap, d_an);
                if self.need_logs {
                    let device = out.loss.device();
                    out.logs.extend(extra);
                    for (k, v) in mined.logs {
                        out.logs.insert(k, scalar_log(v, &device));
                    }
                }
                Ok(out)
            }
        }
    }
}
