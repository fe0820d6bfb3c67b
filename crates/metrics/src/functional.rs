//! OML 4.0's functional retrieval metrics (`oml/functional/metrics.py`), per query and batched,
//! plus NDCG@k, MAP@R, R-precision and MRR@k.
//!
//! Every per-query function takes `relevant` (is each retrieved item, nearest first, relevant?)
//! and `n_gt` (relevant items in the whole gallery, masked items excluded). OML's special cases
//! apply to all of them:
//! - nothing retrieved: 1.0 when `n_gt == 0`, else 0.0;
//! - items retrieved but `n_gt == 0`: 0.0 (for precision see [`NoGtPrecision`]).

use oml_interfaces::MetricError;

/// What precision@k is for a query with no relevant gallery item that retrieved something.
///
/// OML 4.0 divides 0 by 0 there and returns NaN, which then turns the mean NaN (reported as
/// `null`). The default here is 0, the value cmc and map give in the same case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoGtPrecision {
    /// 0.0, like cmc@k and map@k (the default).
    #[default]
    Zero,
    /// NaN, exactly as OML 4.0.
    Nan,
}

#[inline]
fn special(relevant: &[bool], n_gt: usize) -> Option<f64> {
    relevant
        .is_empty()
        .then_some(if n_gt == 0 { 1.0 } else { 0.0 })
}

#[inline]
fn hits(relevant: &[bool]) -> usize {
    relevant.iter().filter(|&&r| r).count()
}

/// cmc@k: 1 if a relevant item is among the first `k`.
pub fn cmc_at_k(relevant: &[bool], n_gt: usize, k: usize) -> f64 {
    special(relevant, n_gt)
        .unwrap_or_else(|| f64::from(u8::from(relevant.iter().take(k).any(|&r| r))))
}

/// OML's precision@k: hits in the first `k' = min(k, retrieved)` over `min(n_gt, k')`.
pub fn precision_at_k(relevant: &[bool], n_gt: usize, k: usize, no_gt: NoGtPrecision) -> f64 {
    if let Some(v) = special(relevant, n_gt) {
        return v;
    }
    let k = k.min(relevant.len());
    let denom = n_gt.min(k);
    if denom == 0 {
        return match no_gt {
            NoGtPrecision::Zero => 0.0,
            NoGtPrecision::Nan => f64::NAN,
        };
    }
    hits(&relevant[..k]) as f64 / denom as f64
}

/// OML's map@k: `Σ_{i≤k'} (n_i / i)·rel_i / n_{k'}` with `n_i` the hits among the first `i`
/// (the denominator is the number of hits in the first `k'`, not `min(k, n_gt)`).
pub fn map_at_k(relevant: &[bool], n_gt: usize, k: usize) -> f64 {
    if let Some(v) = special(relevant, n_gt) {
        return v;
    }
    let (mut n, mut sum) = (0usize, 0f64);
    for (i, &r) in relevant.iter().take(k).enumerate() {
        if r {
            n += 1;
            sum += n as f64 / (i + 1) as f64;
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// NDCG@k with binary relevance: `Σ_{i≤k'} rel_i / log2(i+1)` over the ideal
/// `Σ_{i≤min(k, n_gt)} 1 / log2(i+1)`.
pub fn ndcg_at_k(relevant: &[bool], n_gt: usize, k: usize) -> f64 {
    if let Some(v) = special(relevant, n_gt) {
        return v;
    }
    if n_gt == 0 {
        return 0.0;
    }
    let gain = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = relevant
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| gain(i))
        .sum();
    let idcg: f64 = (0..k.min(n_gt)).map(gain).sum();
    dcg / idcg
}

/// MAP@R (PML's `mean_average_precision_at_r`): with `R = n_gt`,
/// `(1/R) Σ_{i≤R} precision@i · rel_i` over the first `R` retrieved items.
pub fn map_at_r(relevant: &[bool], n_gt: usize) -> f64 {
    if let Some(v) = special(relevant, n_gt) {
        return v;
    }
    if n_gt == 0 {
        return 0.0;
    }
    let (mut n, mut sum) = (0usize, 0f64);
    for (i, &r) in relevant.iter().take(n_gt).enumerate() {
        if r {
            n += 1;
            sum += n as f64 / (i + 1) as f64;
        }
    }
    sum / n_gt as f64
}

/// R-precision: hits among the first `R = n_gt` retrieved items, over `R`.
pub fn r_precision(relevant: &[bool], n_gt: usize) -> f64 {
    if let Some(v) = special(relevant, n_gt) {
        return v;
    }
    if n_gt == 0 {
        return 0.0;
    }
    hits(&relevant[..n_gt.min(relevant.len())]) as f64 / n_gt as f64
}

/// MRR@k: `1 / rank` of the first relevant item among the first `k`, else 0.
pub fn mrr_at_k(relevant: &[bool], n_gt: usize, k: usize) -> f64 {
    if let Some(v) = special(relevant, n_gt) {
        return v;
    }
    relevant
        .iter()
        .take(k)
        .position(|&r| r)
        .map_or(0.0, |p| 1.0 / (p + 1) as f64)
}

/// Checks every `k` is a positive integer (OML's `check_if_nonempty_positive_integers`, empty
/// lists allowed: the metric is then skipped).
pub fn check_top_k(name: &'static str, top_k: &[usize]) -> Result<(), MetricError> {
    match top_k.iter().find(|&&k| k == 0) {
        Some(_) => Err(MetricError::InvalidParameter {
            name,
            value: format!("{top_k:?}"),
            reason: "every k must be a positive integer".into(),
        }),
        None => Ok(()),
    }
}

/// Checks every value lies in `[0, 1]` (OML's `_check_if_in_range`).
pub fn check_fractions(name: &'static str, values: &[f64]) -> Result<(), MetricError> {
    match values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        Some(v) => Err(MetricError::InvalidParameter {
            name,
            value: v.to_string(),
            reason: "values must lie in [0, 1]".into(),
        }),
        None => Ok(()),
    }
}

fn batched<R: AsRef<[bool]>>(
    name: &'static str,
    gt_tops: &[R],
    n_gts: &[usize],
    top_k: &[usize],
    f: impl Fn(&[bool], usize, usize) -> f64,
) -> Result<Vec<Vec<f64>>, MetricError> {
    check_top_k(name, top_k)?;
    if gt_tops.len() != n_gts.len() {
        return Err(MetricError::InvalidData(format!(
            "{} relevance rows for {} n_gt values",
            gt_tops.len(),
            n_gts.len()
        )));
    }
    Ok(top_k
        .iter()
        .map(|&k| {
            gt_tops
                .iter()
                .zip(n_gts)
                .map(|(r, &n)| f(r.as_ref(), n, k))
                .collect()
        })
        .collect())
}

/// OML's `calc_cmc`: per `k`, per query.
pub fn calc_cmc<R: AsRef<[bool]>>(
    gt_tops: &[R],
    n_gts: &[usize],
    top_k: &[usize],
) -> Result<Vec<Vec<f64>>, MetricError> {
    batched("cmc_top_k", gt_tops, n_gts, top_k, cmc_at_k)
}

/// OML's `calc_precision`: per `k`, per query.
pub fn calc_precision<R: AsRef<[bool]>>(
    gt_tops: &[R],
    n_gts: &[usize],
    top_k: &[usize],
    no_gt: NoGtPrecision,
) -> Result<Vec<Vec<f64>>, MetricError> {
    batched("precision_top_k", gt_tops, n_gts, top_k, |r, n, k| {
        precision_at_k(r, n, k, no_gt)
    })
}

/// OML's `calc_map`: per `k`, per query.
pub fn calc_map<R: AsRef<[bool]>>(
    gt_tops: &[R],
    n_gts: &[usize],
    top_k: &[usize],
) -> Result<Vec<Vec<f64>>, MetricError> {
    batched("map_top_k", gt_tops, n_gts, top_k, map_at_k)
}

/// NDCG@k: per `k`, per query.
pub fn calc_ndcg<R: AsRef<[bool]>>(
    gt_tops: &[R],
    n_gts: &[usize],
    top_k: &[usize],
) -> Result<Vec<Vec<f64>>, MetricError> {
    batched("ndcg_top_k", gt_tops, n_gts, top_k, ndcg_at_k)
}

/// numpy's linear interpolation `a + (b − a)·t`, computed from the nearer end as numpy does.
pub fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// The ranks and weight of numpy's default (`linear`) quantile `q` of `n` sorted values:
/// `(lower rank, upper rank, t)` with the quantile `lerp(x[lower], x[upper], t)`.
pub fn quantile_ranks(n: u64, q: f64) -> (u64, u64, f64) {
    let h = (n.saturating_sub(1)) as f64 * q;
    let lo = (h.floor() as u64).min(n.saturating_sub(1));
    let hi = (lo + 1).min(n.saturating_sub(1));
    (lo, hi, h - lo as f64)
}

/// numpy's `np.quantile(values, q)` (linear) of unsorted values; NaN when empty.
pub fn quantile(values: &[f32], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    let (lo, hi, t) = quantile_ranks(v.len() as u64, q);
    let (lo, hi) = (lo as usize, hi as usize);
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, f32::total_cmp);
    let b = if hi == lo {
        a
    } else {
        *rest.iter().min_by(|x, y| x.total_cmp(y)).unwrap_or(&a)
    };
    lerp(a as f64, b as f64, t)
}

/// OML's `calc_fnmr_at_fmr`: for each `fmr`, the threshold is the `fmr` quantile of the
/// negative distances and FNMR the fraction of positive distances `>=` it. NaN when there is
/// no positive or no negative distance.
pub fn calc_fnmr_at_fmr(
    pos_dist: &[f32],
    neg_dist: &[f32],
    fmr_vals: &[f64],
) -> Result<Vec<f64>, MetricError> {
    check_fractions("fmr_vals", fmr_vals)?;
    Ok(fmr_vals
        .iter()
        .map(|&f| {
            if pos_dist.is_empty() || neg_dist.is_empty() {
                return f64::NAN;
            }
            let thr = quantile(neg_dist, f);
            pos_dist.iter().filter(|&&d| d as f64 >= thr).count() as f64 / pos_dist.len() as f64
        })
        .collect())
}

/// Mean of the values (NaN spreads, as in OML's `reduce_metrics`); NaN for no value.
pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0f64, 0usize);
    for v in values {
        s += v;
        n += 1;
    }
    if n == 0 { f64::NAN } else { s / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tops(v: &[&[u8]]) -> Vec<Vec<bool>> {
        v.iter()
            .map(|r| r.iter().map(|&x| x == 1).collect())
            .collect()
    }

    /// The doctest values of OML's `calc_cmc`, `calc_precision`, `calc_map`.
    #[test]
    fn oml_doctest_values() {
        let t = tops(&[&[1, 0], &[0, 1, 1], &[0, 0], &[]]);
        assert_eq!(
            calc_cmc(&t, &[2, 2, 1, 0], &[1, 2]).unwrap(),
            vec![vec![1., 0., 0., 1.], vec![1., 1., 0., 1.]]
        );
        assert_eq!(
            calc_precision(&t, &[2, 3, 5, 2], &[1, 2], NoGtPrecision::Zero).unwrap(),
            vec![vec![1., 0., 0., 0.], vec![0.5, 0.5, 0., 0.]]
        );
        let t = tops(&[&[1, 0], &[0, 1], &[0, 0, 0, 0], &[]]);
        assert_eq!(
            calc_map(&t, &[1, 1, 2, 0], &[1, 2]).unwrap(),
            vec![vec![1., 0., 0., 1.], vec![1., 0.5, 0., 1.]]
        );
        let pos = [0., 0., 1., 1., 2., 2., 5., 5., 9., 9.];
        let neg = [3., 3., 4., 4., 6., 6., 7., 7., 8., 8.];
        assert_eq!(
            calc_fnmr_at_fmr(&pos, &neg, &[0.1, 0.5]).unwrap(),
            vec![0.4, 0.2]
        );
    }

    /// `test_retrieval_metrics.py::exact_test_case` (reference §2.2): six queries.
    #[test]
    fn oml_exact_test_case() {
        let t = tops(&[
            &[1, 1, 0, 1, 0],
            &[1, 0, 0, 1, 1],
            &[0, 1, 1, 0, 1],
            &[0, 0, 1, 1, 1],
            &[1, 0, 0, 0, 0],
            &[0, 0, 0, 1, 0],
        ]);
        let n = [3, 3, 3, 3, 1, 1];
        let ks = [1, 2, 3, 4, 5, 10];
        let cmc = calc_cmc(&t, &n, &ks).unwrap();
        let prec = calc_precision(&t, &n, &ks, NoGtPrecision::Nan).unwrap();
        let map = calc_map(&t, &n, &ks).unwrap();
        let one = vec![1.0; 6];
        let want_cmc = [
            vec![1., 1., 0., 0., 1., 0.],
            vec![1., 1., 1., 0., 1., 0.],
            vec![1., 1., 1., 1., 1., 0.],
            one.clone(),
            one.clone(),
            one.clone(),
        ];
        let want_prec = [
            vec![1., 1., 0., 0., 1., 0.],
            vec![1., 0.5, 0.5, 0., 1., 0.],
            vec![2. / 3., 1. / 3., 2. / 3., 1. / 3., 1., 0.],
            vec![1., 2. / 3., 2. / 3., 2. / 3., 1., 1.],
            one.clone(),
            one.clone(),
        ];
        let want_map = [
            vec![1., 1., 0., 0., 1., 0.],
            vec![1., 1., 0.5, 0., 1., 0.],
            vec![1., 1., 7. / 12., 1. / 3., 1., 0.],
            vec![11. / 12., 3. / 4., 7. / 12., 5. / 12., 1., 1. / 4.],
            vec![11. / 12., 21. / 30., 53. / 90., 43. / 90., 1., 1. / 4.],
            vec![11. / 12., 21. / 30., 53. / 90., 43. / 90., 1., 1. / 4.],
        ];
        for i in 0..ks.len() {
            for q in 0..6 {
                assert!(
                    (cmc[i][q] - want_cmc[i][q]).abs() < 1e-12,
                    "cmc k={} q={q}",
                    ks[i]
                );
                assert!(
                    (prec[i][q] - want_prec[i][q]).abs() < 1e-12,
                    "precision k={} q={q}",
                    ks[i]
                );
                assert!(
                    (map[i][q] - want_map[i][q]).abs() < 1e-12,
                    "map k={} q={q}",
                    ks[i]
                );
            }
        }
    }

    /// `test_empty_predictions`: nothing retrieved, gt `[[0], [], [10, 20]]` → `[0, 1, 0]`.
    #[test]
    fn oml_empty_predictions() {
        let t: Vec<Vec<bool>> = vec![vec![], vec![], vec![]];
        let n = [1, 0, 2];
        for k in [1, 5] {
            assert_eq!(calc_cmc(&t, &n, &[k]).unwrap()[0], vec![0., 1., 0.]);
            assert_eq!(
                calc_precision(&t, &n, &[k], NoGtPrecision::Nan).unwrap()[0],
                vec![0., 1., 0.]
            );
            assert_eq!(calc_map(&t, &n, &[k]).unwrap()[0], vec![0., 1., 0.]);
            assert_eq!(calc_ndcg(&t, &n, &[k]).unwrap()[0], vec![0., 1., 0.]);
        }
    }

    #[test]
    fn no_gt_precision_rule() {
        assert!(precision_at_k(&[false, false], 0, 2, NoGtPrecision::Nan).is_nan());
        assert_eq!(
            precision_at_k(&[false, false], 0, 2, NoGtPrecision::Zero),
            0.0
        );
        assert_eq!(cmc_at_k(&[false], 0, 1), 0.0);
        assert_eq!(map_at_k(&[false], 0, 1), 0.0);
    }

    #[test]
    fn beyond_oml_metrics_by_hand() {
        // rel = [0,1,1,0,1], n_gt = 4.
        let r = [false, true, true, false, true];
        let g = |i: usize| 1.0 / ((i + 1) as f64).log2();
        let dcg3 = g(2) + g(3);
        let idcg3 = g(1) + g(2) + g(3);
        assert!((ndcg_at_k(&r, 4, 3) - dcg3 / idcg3).abs() < 1e-12);
        // MAP@R with R = 4: (1/2 + 2/3) / 4.
        assert!((map_at_r(&r, 4) - (0.5 + 2.0 / 3.0) / 4.0).abs() < 1e-12);
        assert!((r_precision(&r, 4) - 0.5).abs() < 1e-12);
        assert!((mrr_at_k(&r, 4, 5) - 0.5).abs() < 1e-12);
        assert_eq!(mrr_at_k(&r, 4, 1), 0.0);
        assert_eq!(ndcg_at_k(&[true, true], 2, 2), 1.0);
        // Fewer retrieved than R (masked): the missing ranks count as misses.
        assert!((r_precision(&[true], 3) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn parameters_are_checked() {
        let t = tops(&[&[1]]);
        assert!(calc_cmc(&t, &[1], &[0]).is_err());
        assert!(calc_fnmr_at_fmr(&[1.0], &[2.0], &[1.5]).is_err());
        assert!(calc_fnmr_at_fmr(&[1.0], &[2.0], &[f64::NAN]).is_err());
        assert!(calc_fnmr_at_fmr(&[], &[2.0], &[0.5]).unwrap()[0].is_nan());
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 1.0), 4.0);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.0), 1.0);
    }
}
