//! PCF, the principal component fraction (OML's `calc_pcf`): the fraction of the embedding
//! dimension needed to explain a share of the variance.
//!
//! OML takes the SVD of the centred embeddings; the squared singular values are the
//! eigenvalues of the Gram matrix `XcᵀXc` (or `XcXcᵀ` when there are fewer items than
//! dimensions), which is what is computed here, in f64: Householder tridiagonalisation and the
//! implicit QL algorithm. `min(n, d)` values are kept, as the SVD has.

use crate::functional::check_fractions;
use oml_interfaces::MetricError;
use rayon::prelude::*;

/// Eigenvalues of a symmetric matrix (row-major `n × n`, only read), unordered; `None` when QL
/// does not converge.
pub fn symmetric_eigenvalues(a: &[f64], n: usize) -> Option<Vec<f64>> {
    if n == 0 {
        return Some(Vec::new());
    }
    let mut a = a.to_vec();
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    // Householder reduction to tridiagonal form (values only).
    for i in (1..n).rev() {
        let l = i - 1;
        let mut h = 0.0;
        if l > 0 {
            let scale: f64 = (0..=l).map(|k| a[i * n + k].abs()).sum();
            if scale == 0.0 {
                e[i] = a[i * n + l];
            } else {
                for k in 0..=l {
                    a[i * n + k] /= scale;
                    h += a[i * n + k] * a[i * n + k];
                }
                let f = a[i * n + l];
                let g = if f >= 0.0 { -h.sqrt() } else { h.sqrt() };
                e[i] = scale * g;
                h -= f * g;
                a[i * n + l] = f - g;
                let mut f = 0.0;
                for j in 0..=l {
                    let mut g = 0.0;
                    for k in 0..=j {
                        g += a[j * n + k] * a[i * n + k];
                    }
                    for k in j + 1..=l {
                        g += a[k * n + j] * a[i * n + k];
                    }
                    e[j] = g / h;
                    f += e[j] * a[i * n + j];
                }
                let hh = f / (h + h);
                for j in 0..=l {
                    let f = a[i * n + j];
                    let g = e[j] - hh * f;
                    e[j] = g;
                    for k in 0..=j {
                        a[j * n + k] -= f * e[k] + g * a[i * n + k];
                    }
                }
            }
        } else {
            e[i] = a[i * n + l];
        }
        let _ = h;
    }
    for i in 0..n {
        d[i] = a[i * n + i];
    }
    // Implicit QL on the tridiagonal matrix.
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    for l in 0..n {
        let mut iter = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iter += 1;
            if iter > 60 {
                return None;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + if g >= 0.0 { r.abs() } else { -r.abs() });
            let (mut s, mut c, mut p) = (1.0, 1.0, 0.0);
            let mut early = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    early = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if early {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Some(d)
}

/// The squared singular values of the centred rows (descending, `min(n, dim)` of them,
/// negative rounding noise clamped to 0); `None` when the eigen-solver fails.
pub fn centred_squared_singular_values(rows: &[f32], dim: usize) -> Option<Vec<f64>> {
    let n = rows.len() / dim.max(1);
    if n == 0 || dim == 0 {
        return Some(Vec::new());
    }
    let mut mean = vec![0f64; dim];
    for r in rows.chunks_exact(dim) {
        for (m, &x) in mean.iter_mut().zip(r) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let (m, gram) = if n >= dim {
        // XcᵀXc over row chunks in parallel (upper triangle, then mirrored), centring on the fly
        // so no centred copy of the data is made.
        let g = rows
            .par_chunks(dim * 256)
            .fold(
                || (vec![0f64; dim * dim], vec![0f64; dim]),
                |(mut g, mut r), chunk| {
                    for row in chunk.chunks_exact(dim) {
                        for ((c, &x), &mu) in r.iter_mut().zip(row).zip(&mean) {
                            *c = x as f64 - mu;
                        }
                        for i in 0..dim {
                            let xi = r[i];
                            if xi != 0.0 {
                                for (gij, &xj) in
                                    g[i * dim + i..(i + 1) * dim].iter_mut().zip(&r[i..])
                                {
                                    *gij += xi * xj;
                                }
                            }
                        }
                    }
                    (g, r)
                },
            )
            .map(|(g, _)| g)
            .reduce(
                || vec![0f64; dim * dim],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        (dim, g)
    } else {
        // XcXcᵀ: same non-zero eigenvalues, cheaper when n < dim.
        let centred: Vec<f64> = rows
            .iter()
            .enumerate()
            .map(|(i, &x)| x as f64 - mean[i % dim])
            .collect();
        let mut g = vec![0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let ri = &centred[i * dim..(i + 1) * dim];
                let rj = &centred[j * dim..(j + 1) * dim];
                g[i * n + j] = ri.iter().zip(rj).map(|(a, b)| a * b).sum();
            }
        }
        (n, g)
    };
    let mut full = gram;
    for i in 0..m {
        for j in 0..i {
            full[i * m + j] = full[j * m + i];
        }
    }
    let mut ev = symmetric_eigenvalues(&full, m)?;
    ev.iter_mut().for_each(|x| *x = x.max(0.0));
    ev.sort_by(|a, b| b.total_cmp(a));
    Some(ev)
}

/// PCF from squared singular values (descending, `min(n, dim)` of them) for each requested
/// variance share `r`: `n_comp = #{cumulative ratio ≤ r} + 1` (OML's
/// `searchsorted(side="right") + 1`), over `dim`.
///
/// OML's oddities are kept on purpose, for parity: with zero total variance (one item, or all
/// items equal) OML's ratios are NaN and its `searchsorted` answers `min(n, dim)`, so the result
/// is `(min(n, dim) + 1) / dim`; and `r = 1` gives `(min(n, dim) + 1) / dim` (the cumulative
/// ratio is normalised to exactly 1 here), which exceeds 1 when `n ≥ dim`.
pub fn pcf_from_spectrum(spectrum: &[f64], dim: usize, variance: &[f64]) -> Vec<f64> {
    if dim == 0 || spectrum.is_empty() {
        return vec![f64::NAN; variance.len()];
    }
    let total: f64 = spectrum.iter().sum();
    let m = spectrum.len();
    // Zero (or NaN) total variance: OML's NaN ratios.
    if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return vec![(m + 1) as f64 / dim as f64; variance.len()];
    }
    // Normalising by the last cumulative sum makes it exactly 1.
    let mut acc = 0.0;
    let cum: Vec<f64> = spectrum
        .iter()
        .map(|&s| {
            acc += s;
            acc
        })
        .collect();
    variance
        .iter()
        .map(|&r| {
            let below = cum.iter().filter(|&&c| c / acc <= r).count();
            (below + 1) as f64 / dim as f64
        })
        .collect()
}

/// OML's `calc_pcf` on `[n, dim]` row-major embeddings.
pub fn calc_pcf(
    embeddings: &[f32],
    dim: usize,
    pcf_variance: &[f64],
) -> Result<Vec<f64>, MetricError> {
    check_fractions("pcf_variance", pcf_variance)?;
    if dim == 0 || !embeddings.len().is_multiple_of(dim) {
        return Err(MetricError::InvalidData(format!(
            "{} values do not form rows of dimension {dim}",
            embeddings.len()
        )));
    }
    let n = embeddings.len() / dim;
    // All rows equal (or one row): centred data is exactly zero, whatever the mean's rounding.
    let first = &embeddings[..dim.min(embeddings.len())];
    if n > 0 && embeddings.chunks_exact(dim).all(|r| r == first) {
        return Ok(pcf_from_spectrum(&vec![0.0; n.min(dim)], dim, pcf_variance));
    }
    Ok(match centred_squared_singular_values(embeddings, dim) {
        Some(s) => pcf_from_spectrum(&s, dim, pcf_variance),
        None => vec![f64::NAN; pcf_variance.len()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cyclic Jacobi: a slow, simple oracle for the eigenvalues.
    fn jacobi(a: &[f64], n: usize) -> Vec<f64> {
        let mut a = a.to_vec();
        for _ in 0..100 {
            let off: f64 = (0..n)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .filter(|(i, j)| i != j)
                .map(|(i, j)| a[i * n + j].powi(2))
                .sum();
            if off < 1e-22 {
                break;
            }
            for p in 0..n {
                for q in p + 1..n {
                    let apq = a[p * n + q];
                    if apq.abs() < 1e-300 {
                        continue;
                    }
                    let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let s = t * c;
                    for k in 0..n {
                        let akp = a[k * n + p];
                        let akq = a[k * n + q];
                        a[k * n + p] = c * akp - s * akq;
                        a[k * n + q] = s * akp + c * akq;
                    }
                    for k in 0..n {
                        let apk = a[p * n + k];
                        let aqk = a[q * n + k];
                        a[p * n + k] = c * apk - s * aqk;
                        a[q * n + k] = s * apk + c * aqk;
                    }
                }
            }
        }
        let mut d: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
        d.sort_by(|a, b| b.total_cmp(a));
        d
    }

    #[test]
    fn eigenvalues_match_jacobi_on_random_symmetric_matrices() {
        let mut state = 99u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for n in [1, 2, 3, 5, 8, 17, 40] {
            let mut a = vec![0f64; n * n];
            for i in 0..n {
                for j in i..n {
                    let v = next();
                    a[i * n + j] = v;
                    a[j * n + i] = v;
                }
            }
            let mut got = symmetric_eigenvalues(&a, n).unwrap();
            got.sort_by(|a, b| b.total_cmp(a));
            let want = jacobi(&a, n);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-9, "n={n}: {got:?} vs {want:?}");
            }
        }
        // Repeated eigenvalues.
        let eye: Vec<f64> = (0..16)
            .map(|i| if i % 5 == 0 { 2.0 } else { 0.0 })
            .collect();
        assert_eq!(symmetric_eigenvalues(&eye, 4).unwrap(), vec![2.0; 4]);
    }

    /// OML's doctest: `calc_pcf(eye(4, 10), (0.5, 1))` → `[0.2, 0.5]`.
    #[test]
    fn oml_doctest_pcf() {
        let e: Vec<f32> = (0..40)
            .map(|i| if i % 10 == i / 10 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(calc_pcf(&e, 10, &[0.5, 1.0]).unwrap(), vec![0.2, 0.5]);
    }

    /// `test_topological_metrics`: `cat(eye(300, 10), eye(300, 10))` along dim 1 → 0.25, 0.45.
    #[test]
    fn oml_topological_case() {
        let mut e = vec![0f32; 300 * 20];
        for i in 0..10 {
            e[i * 20 + i] = 1.0;
            e[i * 20 + 10 + i] = 1.0;
        }
        assert_eq!(calc_pcf(&e, 20, &[0.5, 0.9]).unwrap(), vec![0.25, 0.45]);
    }

    /// `test_misc_torch::test_pca`: singular values of `1/(2 + arange(60).view(10, 6))` centred
    /// (sklearn's values).
    #[test]
    fn oml_pca_singular_values() {
        let e: Vec<f32> = (0..60).map(|i| 1.0 / (2.0 + i as f32)).collect();
        let s = centred_squared_singular_values(&e, 6).unwrap();
        let want = [
            6.1971e-1, 5.2593e-2, 1.9191e-3, 3.9749e-5, 4.8444e-7, 2.5065e-8,
        ];
        for (g, w) in s.iter().map(|x| x.sqrt()).zip(want).take(4) {
            assert!((g - w).abs() / w < 1e-3, "{g} vs {w}");
        }
    }

    /// OML's NaN ratios for zero variance make `searchsorted` answer `min(n, d)`: one item
    /// gives `2/d`, two equal one-hot items in 8-d `3/8` (the 0.375 of OML's imperfect case).
    #[test]
    fn degenerate_inputs_follow_oml() {
        assert_eq!(calc_pcf(&[1.0, 2.0], 2, &[0.5]).unwrap(), vec![1.0]);
        let two: Vec<f32> = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(2);
        assert_eq!(calc_pcf(&two, 8, &[0.5]).unwrap(), vec![0.375]);
        assert!(calc_pcf(&[1.0, 2.0, 1.0, 2.0], 2, &[1.5]).is_err());
        assert!(calc_pcf(&[], 2, &[0.5]).unwrap()[0].is_nan());
    }
}
