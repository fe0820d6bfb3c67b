//! FNMR@FMR over *all* (query, gallery) pairs without keeping them: OML 4.0 retrieves the whole
//! gallery for every query to get these distances; here they are streamed.
//!
//! The quantile of the negative distances is found by radix selection on the bits of the
//! squared distances (non-negative f32 bit patterns sort like the values): a pass counts
//! distances per 16-bit prefix, and a further pass over the same blocks (bit-identical) counts
//! the exact values inside the few prefixes that hold the wanted ranks and the threshold.
//! Small searches keep every distance and use the exact in-memory formula instead.

use crate::functional::{calc_fnmr_at_fmr, lerp, quantile_ranks};
use oml_interfaces::MetricError;
use oml_retrieval::{BlockVisitor, DistanceBlock, ExactKnn, Progress};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::sync::Mutex;

const COARSE: usize = 1 << 15;
const FINE: usize = 1 << 16;

/// The distance a squared distance stands for, exactly as every path computes it.
#[inline]
fn dist_of_bits(bits: u32) -> f32 {
    f32::from_bits(bits).sqrt()
}

#[inline]
fn clamp_bits(d2: f32) -> u32 {
    // `d2 > 0.0` is false for -0.0 and rounding noise below zero: both become +0.0.
    (if d2 > 0.0 { d2 } else { 0.0 }).to_bits()
}

/// Counts, per class (0 negative, 1 positive), of coarse prefixes and of the exact values inside
/// the refined prefixes.
#[derive(Debug, Clone)]
struct Counts {
    coarse: [Vec<u64>; 2],
    /// One `[neg, pos]` pair of fine tables per refined prefix, in `refined` order.
    fine: Vec<[Vec<u64>; 2]>,
}

impl Counts {
    fn new(n_fine: usize) -> Self {
        Counts {
            coarse: [vec![0; COARSE], vec![0; COARSE]],
            fine: (0..n_fine)
                .map(|_| [vec![0; FINE], vec![0; FINE]])
                .collect(),
        }
    }
    fn add(&mut self, o: &Counts) {
        for c in 0..2 {
            self.coarse[c]
                .iter_mut()
                .zip(&o.coarse[c])
                .for_each(|(a, b)| *a += b);
            for (f, g) in self.fine.iter_mut().zip(&o.fine) {
                f[c].iter_mut().zip(&g[c]).for_each(|(a, b)| *a += b);
            }
        }
    }
}

/// Keeps every distance (small searches).
struct Collect {
    store: Mutex<(Vec<f32>, Vec<f32>)>,
}

/// Interleaved 32-bit sub-tables: consecutive candidates land in different copies, so
/// increments of the same (hot) bin do not wait on each other.
const LANES: usize = 4;

/// One thread's tables: per-block `u32` coarse counts (flushed with the block's weight) and
/// the `u64` totals.
struct Local {
    sub: Vec<u32>,
    counts: Counts,
}

impl Local {
    fn new(n_fine: usize) -> Self {
        Local {
            sub: vec![0; LANES * 2 * COARSE],
            counts: Counts::new(n_fine),
        }
    }
    /// Adds the block's sub-table counts, times `w`, to the totals and clears them.
    fn flush(&mut self, w: u64) {
        for lane in self.sub.chunks_exact_mut(2 * COARSE) {
            for (class, half) in lane.chunks_exact_mut(COARSE).enumerate() {
                for (t, x) in self.counts.coarse[class].iter_mut().zip(half.iter_mut()) {
                    *t += u64::from(*x) * w;
                    *x = 0;
                }
            }
        }
    }
}

/// Histograms; `slot[prefix]` is 1 + the index of a refined prefix, or 0. Per-thread tables are
/// pooled across blocks and merged once at the end.
struct Histogram {
    slot: Vec<u8>,
    n_fine: usize,
    pool: Mutex<Vec<Local>>,
}

impl Histogram {
    fn new(refined: &[u16]) -> Self {
        let mut slot = vec![0u8; COARSE];
        for (i, &b) in refined.iter().enumerate() {
            slot[b as usize] = (i + 1) as u8;
        }
        Histogram {
            slot,
            n_fine: refined.len(),
            pool: Mutex::new(Vec::new()),
        }
    }
    fn into_counts(self) -> Counts {
        let pool = self.pool.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut total = Counts::new(self.n_fine);
        for l in &pool {
            total.add(&l.counts);
        }
        total
    }
}

enum Mode {
    Collect(Collect),
    Histogram(Histogram),
}

/// A [`BlockVisitor`] gathering the negative/positive distances FNMR@FMR needs. Build it with
/// [`FnmrVisitor::new`], pass it to the search, then call [`finish_fnmr`].
pub struct FnmrVisitor<'a> {
    q_labels: &'a [i64],
    g_labels: &'a [i64],
    mode: Mode,
}

impl<'a> FnmrVisitor<'a> {
    /// For a search of queries labelled `q_labels` against gallery items `g_labels`: keeps
    /// every distance when there are at most `exact_max_pairs` (query, gallery) pairs (memory
    /// `4 ×` pairs bytes, the exact formula), else streams histograms.
    pub fn new(q_labels: &'a [i64], g_labels: &'a [i64], exact_max_pairs: u64) -> Self {
        let pairs = q_labels.len() as u64 * g_labels.len() as u64;
        let mode = if pairs <= exact_max_pairs {
            Mode::Collect(Collect {
                store: Mutex::new((Vec::new(), Vec::new())),
            })
        } else {
            Mode::Histogram(Histogram::new(&[]))
        };
        FnmrVisitor {
            q_labels,
            g_labels,
            mode,
        }
    }
}

/// Splits `rows` into one contiguous range per thread.
fn row_ranges(rows: usize) -> Vec<(usize, usize)> {
    let t = rayon::current_num_threads().max(1);
    let step = rows.div_ceil(t).max(1);
    (0..rows)
        .step_by(step)
        .map(|s| (s, (s + step).min(rows)))
        .collect()
}

/// Calls `f(label of the row query, squared distances, mask)` for every row of `b`.
fn for_rows<T: Send>(
    b: &DistanceBlock<'_>,
    q_labels: &[i64],
    init: impl Fn() -> T + Sync,
    f: impl Fn(&mut T, i64, &[f32], &[bool]) + Sync,
) -> Vec<T> {
    let cols = b.cols();
    row_ranges(b.rows())
        .into_par_iter()
        .map(|(r0, r1)| {
            let mut acc = init();
            let (mut d2, mut mask) = (vec![0f32; cols], vec![false; cols]);
            for i in r0..r1 {
                b.sq_distances_row(i, &mut d2);
                b.row_mask(i, &mut mask);
                f(&mut acc, q_labels[b.query_start() + i], &d2, &mask);
            }
            acc
        })
        .collect()
}

impl BlockVisitor for FnmrVisitor<'_> {
    fn visit(&self, b: &DistanceBlock<'_>) {
        match &self.mode {
            Mode::Collect(c) => c.visit_with(b, self.q_labels, self.g_labels),
            Mode::Histogram(h) => h.visit_with(b, self.q_labels, self.g_labels),
        }
    }
}

impl Collect {
    fn visit_with(&self, b: &DistanceBlock<'_>, q_labels: &[i64], g_labels: &[i64]) {
        let g_labels = &g_labels[b.gallery_start()..b.gallery_start() + b.cols()];
        let twice = b.mirrored();
        let parts = for_rows(
            b,
            q_labels,
            || (Vec::new(), Vec::new()),
            |(neg, pos), l, d2, mask| {
                for ((&d2, &m), &gl) in d2.iter().zip(mask).zip(g_labels) {
                    if !m {
                        let d = dist_of_bits(clamp_bits(d2));
                        let v = if gl == l { &mut *pos } else { &mut *neg };
                        v.push(d);
                        if twice {
                            v.push(d);
                        }
                    }
                }
            },
        );
        let mut s = self.store.lock().unwrap_or_else(|e| e.into_inner());
        for (neg, pos) in parts {
            s.0.extend(neg);
            s.1.extend(pos);
        }
    }
}

impl Histogram {
    fn visit_with(&self, b: &DistanceBlock<'_>, q_labels: &[i64], g_labels: &[i64]) {
        let (q0, cols) = (b.query_start(), b.cols());
        let g_labels = &g_labels[b.gallery_start()..b.gallery_start() + cols];
        let w: u64 = if b.mirrored() { 2 } else { 1 };
        let slot = &self.slot;
        let n_fine = self.n_fine;
        let index =
            |d2: f32, same: bool| (usize::from(same) << 15) | (clamp_bits(d2) >> 16) as usize;
        let parts: Vec<Local> = row_ranges(b.rows())
            .into_par_iter()
            .map(|(r0, r1)| {
                let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let mut acc = pooled.unwrap_or_else(|| Local::new(n_fine));
                let (mut d2, mut mask) = (vec![0f32; cols], vec![false; cols]);
                for i in r0..r1 {
                    b.sq_distances_row(i, &mut d2);
                    let l = q_labels[q0 + i];
                    // Everything first, unconditionally; masked items are taken out below.
                    for (d4, g4) in d2.chunks(LANES).zip(g_labels.chunks(LANES)) {
                        for (lane, (&d, &g)) in d4.iter().zip(g4).enumerate() {
                            acc.sub[lane * 2 * COARSE + index(d, g == l)] += 1;
                        }
                    }
                    if n_fine > 0 {
                        for (&d, &g) in d2.iter().zip(g_labels) {
                            let bits = clamp_bits(d);
                            let s = slot[(bits >> 16) as usize];
                            if s != 0 {
                                acc.counts.fine[s as usize - 1][usize::from(g == l)]
                                    [(bits & 0xFFFF) as usize] += w;
                            }
                        }
                    }
                    b.row_mask(i, &mut mask);
                    for (j, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
                        let (d, same) = (d2[j], g_labels[j] == l);
                        acc.sub[(j % LANES) * 2 * COARSE + index(d, same)] -= 1;
                        let bits = clamp_bits(d);
                        let s = slot[(bits >> 16) as usize];
                        if s != 0 {
                            acc.counts.fine[s as usize - 1][usize::from(same)]
                                [(bits & 0xFFFF) as usize] -= w;
                        }
                    }
                }
                acc.flush(w);
                acc
            })
            .collect();
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(parts);
    }
}

/// The outcome of resolving FNMR@FMR from one pass's counts.
enum Resolution {
    Done(Vec<f64>),
    /// Prefixes to refine in another pass.
    Need(BTreeSet<u16>),
}

/// The exact squared-distance bits at `rank` of `class`, or the prefix to refine.
fn value_at(c: &Counts, refined: &[u16], class: usize, rank: u64) -> Result<u32, u16> {
    let mut seen = 0u64;
    for (p, &n) in c.coarse[class].iter().enumerate() {
        if seen + n > rank {
            let Some(f) = refined.iter().position(|&r| r as usize == p) else {
                return Err(p as u16);
            };
            let mut s = seen;
            for (low, &m) in c.fine[f][class].iter().enumerate() {
                if s + m > rank {
                    return Ok(((p as u32) << 16) | low as u32);
                }
                s += m;
            }
            // The fine counts disagree with the coarse ones: refine again from scratch.
            return Err(p as u16);
        }
        seen += n;
    }
    Err((COARSE - 1) as u16)
}

fn resolve(c: &Counts, refined: &[u16], fmr_vals: &[f64]) -> Resolution {
    let n_neg: u64 = c.coarse[0].iter().sum();
    let n_pos: u64 = c.coarse[1].iter().sum();
    if n_neg == 0 || n_pos == 0 {
        return Resolution::Done(vec![f64::NAN; fmr_vals.len()]);
    }
    let mut need = BTreeSet::new();
    let mut out = Vec::with_capacity(fmr_vals.len());
    for &f in fmr_vals {
        let (lo, hi, t) = quantile_ranks(n_neg, f);
        let (a, b) = (value_at(c, refined, 0, lo), value_at(c, refined, 0, hi));
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                // Refine the ranks' prefixes and, ahead of time, the few between them where
                // the threshold will fall.
                let pa = a.map_or_else(|p| p, |v| (v >> 16) as u16);
                let pb = b.map_or_else(|p| p, |v| (v >> 16) as u16);
                let span = pb.saturating_sub(pa);
                if span <= 8 {
                    need.extend(
                        pa.saturating_sub(1)..=pb.saturating_add(1).min((COARSE - 1) as u16),
                    );
                } else {
                    need.extend([pa, pb]);
                }
                continue;
            }
        };
        let thr = lerp(dist_of_bits(a) as f64, dist_of_bits(b) as f64, t);
        // Positives >= thr: whole prefixes above the threshold, exact values in partial ones.
        let mut count = 0u64;
        for (p, &n) in c.coarse[1].iter().enumerate() {
            if n == 0 {
                continue;
            }
            let lo_d = dist_of_bits((p as u32) << 16) as f64;
            let hi_d = dist_of_bits(((p as u32) << 16) | 0xFFFF) as f64;
            if lo_d >= thr {
                count += n;
            } else if hi_d >= thr {
                match refined.iter().position(|&r| r as usize == p) {
                    Some(fi) => {
                        for (low, &m) in c.fine[fi][1].iter().enumerate() {
                            if m > 0 && dist_of_bits(((p as u32) << 16) | low as u32) as f64 >= thr
                            {
                                count += m;
                            }
                        }
                    }
                    None => {
                        need.insert(p as u16);
                    }
                }
            }
        }
        out.push(count as f64 / n_pos as f64);
    }
    if need.is_empty() {
        Resolution::Done(out)
    } else {
        Resolution::Need(need)
    }
}

/// FNMR@FMR from the visitor of a search pass, running further scans of `knn` when the
/// histograms need refining (usually one).
pub fn finish_fnmr(
    first: FnmrVisitor<'_>,
    knn: &ExactKnn,
    fmr_vals: &[f64],
    progress: Option<Progress<'_>>,
) -> Result<Vec<f64>, MetricError> {
    let (q_labels, g_labels) = (first.q_labels, first.g_labels);
    let mut refined: Vec<u16> = Vec::new();
    let mut counts = match first.mode {
        Mode::Collect(c) => {
            let (neg, pos) = c.store.into_inner().unwrap_or_else(|e| e.into_inner());
            return calc_fnmr_at_fmr(&pos, &neg, fmr_vals);
        }
        Mode::Histogram(h) => h.into_counts(),
    };
    for _ in 0..6 {
        match resolve(&counts, &refined, fmr_vals) {
            Resolution::Done(v) => return Ok(v),
            Resolution::Need(more) => {
                let mut all: BTreeSet<u16> = refined.iter().copied().collect();
                all.extend(more);
                refined = all.into_iter().collect();
                if refined.len() > 48 {
                    return Err(MetricError::InvalidData(
                        "fnmr@fmr: too many histogram bins to refine".into(),
                    ));
                }
                let v = FnmrVisitor {
                    q_labels,
                    g_labels,
                    mode: Mode::Histogram(Histogram::new(&refined)),
                };
                knn.scan(&v, progress)
                    .map_err(|e| MetricError::InvalidData(e.to_string()))?;
                if let Mode::Histogram(h) = v.mode {
                    counts = h.into_counts();
                }
            }
        }
    }
    Err(MetricError::InvalidData(
        "fnmr@fmr: distances differ between passes over the same blocks (non-deterministic backend?)".into(),
    ))
}
