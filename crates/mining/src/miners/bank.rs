//! `MinerWithBank`: NHard mining over the batch plus a memory bank of past batches.

use burn::prelude::*;
use oml_interfaces::{MiningError, TripletFeatures, TripletsMiner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::checks::check_lengths;
use super::nhard::NHardTripletsMiner;
use crate::distance::host_self_distances;

/// The bank: a ring buffer of detached features (no autodiff) and their labels.
#[derive(Debug, Default)]
struct Bank {
    features: Option<Tensor<2>>,
    labels: Vec<i64>,
    ptr: usize,
    is_accumulated: bool,
}

/// OML's `MinerWithBank(bank_size_in_batches, miner: NHardTripletsMiner, need_logs)`:
/// cross-batch memory. The bank holds `bank_size_in_batches × B` detached features (`B` from
/// the first batch). Once it has been filled (from call `bank_size_in_batches + 1` on), mining
/// runs on `[batch; bank]` with anchors from the batch only; before that, on the batch alone.
/// Each call then writes the batch into the ring buffer.
///
/// Logs (when `need_logs`): `positives_from_bank`, `positives_from_batch`,
/// `negatives_from_bank`, `negatives_from_batch`, the number of distinct such rows per anchor,
/// averaged over anchors. Clones share the bank.
#[derive(Debug, Clone)]
pub struct MinerWithBank {
    bank_size_in_batches: usize,
    miner: NHardTripletsMiner,
    need_logs: bool,
    bank: Arc<Mutex<Bank>>,
}

impl MinerWithBank {
    /// `bank_size_in_batches` must be at least 1.
    pub fn new(
        bank_size_in_batches: usize,
        miner: NHardTripletsMiner,
        need_logs: bool,
    ) -> Result<Self, MiningError> {
        if bank_size_in_batches < 1 {
            return Err(MiningError::InvalidParameter {
                name: "bank_size_in_batches",
                value: bank_size_in_batches.to_string(),
                reason: "must be at least 1".to_string(),
            });
        }
        Ok(Self {
            bank_size_in_batches,
            miner,
            need_logs,
            bank: Arc::default(),
        })
    }

    /// The bank size in batches.
    pub fn bank_size_in_batches(&self) -> usize {
        self.bank_size_in_batches
    }

    /// The inner miner.
    pub fn miner(&self) -> &NHardTripletsMiner {
        &self.miner
    }

    /// True once the bank has been filled (mining then uses it).
    pub fn is_accumulated(&self) -> bool {
        self.bank
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_accumulated
    }

    /// Mines, returns the triplets' features (bank rows are constants) and the logs, then
    /// writes the batch into the bank.
    pub fn sample_with_logs(
        &self,
        features: Tensor<2>,
        labels: &[i64],
    ) -> Result<(TripletFeatures, BTreeMap<String, f64>), MiningError> {
        check_lengths(&features, labels)?;
        let [b, dim] = features.dims();
        let mut bank = self.bank.lock().unwrap_or_else(|e| e.into_inner());
        let bank_size = match &bank.features {
            Some(f) => {
                let [size, bank_dim] = f.dims();
                if bank_dim != dim {
                    return Err(MiningError::InvalidParameter {
                        name: "features",
                        value: format!("{dim} columns"),
                        reason: format!("the memory bank holds {bank_dim}-dimensional features"),
                    });
                }
                size
            }
            None => self.bank_size_in_batches * b,
        };

        let (all_features, all_labels, ignore) = match (&bank.features, bank.is_accumulated) {
            (Some(stored), true) => {
                let stored = if features.is_autodiff() {
                    stored.clone().autodiff()
                } else {
                    stored.clone()
                };
                let all = Tensor::cat(vec![features.clone(), stored], 0);
                let mut all_labels = labels.to_vec();
                all_labels.extend_from_slice(&bank.labels);
                let ignore: Vec<bool> = (0..all_labels.len()).map(|i| i >= b).collect();
                (all, all_labels, ignore)
            }
            _ => (features.clone(), labels.to_vec(), vec![false; b]),
        };
        let distances = host_self_distances(&all_features);
        let tri = self
            .miner
            .mine_from_distances(&distances, &all_labels, Some(&ignore))?;

        let logs = if self.need_logs {
            bank_logs(&tri, &ignore)
        } else {
            BTreeMap::new()
        };
        let gathered = tri.gather(all_features);

        // Write the batch into the ring buffer.
        let new_rows = features.without_autodiff();
        let mut stored = bank
            .features
            .take()
            .unwrap_or_else(|| Tensor::<2>::zeros([bank_size, dim], &new_rows.device()));
        if bank.labels.len() != bank_size {
            bank.labels = vec![0; bank_size];
        }
        if bank.ptr + b >= bank_size {
            bank.is_accumulated = true;
        }
        // A batch larger than the bank keeps only its last `bank_size` rows.
        let skip = b.saturating_sub(bank_size);
        let mut i = skip;
        let mut ptr = (bank.ptr + skip) % bank_size;
        while i < b {
            let len = (bank_size - ptr).min(b - i);
            stored = stored.slice_assign(
                [ptr..ptr + len, 0..dim],
                new_rows.clone().slice([i..i + len, 0..dim]),
            );
            bank.labels[ptr..ptr + len].copy_from_slice(&labels[i..i + len]);
            i += len;
            ptr = (ptr + len) % bank_size;
        }
        bank.ptr = ptr;
        bank.features = Some(stored);
        Ok((gathered, logs))
    }
}

/// OML's `_prepare_logs`: distinct positives/negatives per anchor from bank vs batch, averaged.
fn bank_logs(tri: &oml_interfaces::Triplets, from_bank: &[bool]) -> BTreeMap<String, f64> {
    let mut pos: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut neg: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (a, p, n) in tri.iter() {
        pos.entry(a).or_default().insert(p);
        neg.entry(a).or_default().insert(n);
    }
    let n_anchors = pos.len().max(1) as f64;
    let mut sums = [0.0f64; 4];
    for (a, ps) in &pos {
        let pb = ps.iter().filter(|&&i| from_bank[i]).count();
        let ns = &neg[a];
        let nb = ns.iter().filter(|&&i| from_bank[i]).count();
        sums[0] += pb as f64;
        sums[1] += (ps.len() - pb) as f64;
        sums[2] += nb as f64;
        sums[3] += (ns.len() - nb) as f64;
    }
    [
        "positives_from_bank",
        "positives_from_batch",
        "negatives_from_bank",
        "negatives_from_batch",
    ]
    .iter()
    .zip(sums)
    .map(|(k, s)| (k.to_string(), s / n_anchors))
    .collect()
}

impl TripletsMiner for MinerWithBank {
    fn sample(&self, features: Tensor<2>, labels: &[i64]) -> Result<TripletFeatures, MiningError> {
        self.sample_with_logs(features, labels).map(|(f, _)| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_from_oml_test_logs() {
        let tri = oml_interfaces::Triplets {
            anchor: vec![0, 3, 6],
            positive: vec![1, 4, 7],
            negative: vec![2, 5, 8],
        };
        let from_bank = [false, true, true, false, true, true, false, true, true];
        let logs = bank_logs(&tri, &from_bank);
        assert_eq!(logs["positives_from_bank"], 1.0);
        assert_eq!(logs["positives_from_batch"], 0.0);
        assert_eq!(logs["negatives_from_bank"], 1.0);
        assert_eq!(logs["negatives_from_batch"], 0.0);
    }
}
