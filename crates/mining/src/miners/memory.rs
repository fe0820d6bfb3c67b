//! `TripletMinerWithMemory`: in-batch triplets plus triplets mixing the batch and a bank.

use burn::prelude::*;
use oml_interfaces::{MiningError, TripletFeatures, TripletsMiner};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::checks::check_lengths;
use crate::distance::index_tensor;

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    /// `[bank_size, D]`, no autodiff.
    features: Option<Tensor<2>>,
    labels: Vec<i64>,
    batch_size: usize,
    ptr: usize,
}

/// Triplets from [`TripletMinerWithMemory`] with their origin.
#[derive(Debug, Clone)]
pub struct MemoryTriplets {
    /// Feature rows, each `[T, D]`: bank-negative part, bank-positive part, then the batch part.
    pub features: TripletFeatures,
    /// True for the triplets made from the batch alone (the last ones).
    pub is_original: Vec<bool>,
}

/// OML's `TripletMinerWithMemory(bank_size_in_batches, tri_expand_k)`.
///
/// Per call, with `n = ⌊n_batch · (k − 1) / 2⌋` where `n_batch` is the number of in-batch
/// triplets:
/// 1. every in-batch triplet (ordered positive pair × batch item of another label);
/// 2. `n` positive pairs from the bank (whole label groups drawn at random until there are
///    enough, shuffled, truncated) with random batch negatives;
/// 3. `n` batch positive pairs (with replacement) with random bank negatives;
///
/// dropping triplets whose labels collide; output order `[3, 2, 1]`. The batch is then written
/// into the bank (a ring buffer, detached). The bank starts with fake labels `−1…−B` (tiled)
/// and one-hot features.
///
/// Unlike OML, label groups with a single member are never drawn in step 2, so
/// `bank_size_in_batches = 1` (where every fake group is a singleton) yields no bank-positive
/// triplets on the first call instead of looping forever. Randomness comes from a generator
/// seeded by `seed`; clones share the bank and the generator. Every batch must have the size
/// of the first one.
#[derive(Debug, Clone)]
pub struct TripletMinerWithMemory {
    bank_size_in_batches: usize,
    tri_expand_k: usize,
    state: Arc<Mutex<State>>,
}

impl TripletMinerWithMemory {
    /// `bank_size_in_batches ≥ 1`, `tri_expand_k ≥ 1`.
    pub fn new(
        bank_size_in_batches: usize,
        tri_expand_k: usize,
        seed: u64,
    ) -> Result<Self, MiningError> {
        if bank_size_in_batches < 1 {
            return Err(MiningError::InvalidParameter {
                name: "bank_size_in_batches",
                value: bank_size_in_batches.to_string(),
                reason: "must be at least 1".to_string(),
            });
        }
        if tri_expand_k < 1 {
            return Err(MiningError::InvalidParameter {
                name: "tri_expand_k",
                value: tri_expand_k.to_string(),
                reason: "must be at least 1".to_string(),
            });
        }
        Ok(Self {
            bank_size_in_batches,
            tri_expand_k,
            state: Arc::new(Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(seed),
                features: None,
                labels: Vec::new(),
                batch_size: 0,
                ptr: 0,
            })),
        })
    }

    /// The bank size in batches.
    pub fn bank_size_in_batches(&self) -> usize {
        self.bank_size_in_batches
    }

    /// The expansion factor `k`.
    pub fn tri_expand_k(&self) -> usize {
        self.tri_expand_k
    }

    /// Mines and returns the triplets with their origin, then updates the bank.
    pub fn sample_with_origin(
        &self,
        features: Tensor<2>,
        labels: &[i64],
    ) -> Result<MemoryTriplets, MiningError> {
        check_lengths(&features, labels)?;
        let [bs, dim] = features.dims();
        let device = features.device();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *st;
        if st.features.is_none() {
            let bank_size = self.bank_size_in_batches * bs;
            st.batch_size = bs;
            st.labels = (0..bank_size).map(|i| -((i % bs) as i64 + 1)).collect();
            let mut one_hot = vec![0.0f32; bank_size * dim];
            for (i, l) in st.labels.iter().enumerate() {
                one_hot[i * dim + (l.unsigned_abs() as usize).min(dim - 1)] = 1.0;
            }
            let inner = features.clone().without_autodiff().device();
            st.features = Some(Tensor::<2>::from_data(
                TensorData::new(one_hot, [bank_size, dim]),
                &inner,
            ));
        }
        if bs != st.batch_size {
            return Err(MiningError::LengthMismatch {
                features: bs,
                labels: st.batch_size,
            });
        }
        let bank_size = st.labels.len();

        // part 1: all in-batch triplets
        let batch_pairs = positive_pairs(labels);
        let mut tri1 = (Vec::new(), Vec::new(), Vec::new());
        for &(a, p) in &batch_pairs {
            for n in 0..bs {
                if labels[a] != labels[n] {
                    tri1.0.push(a);
                    tri1.1.push(p);
                    tri1.2.push(n);
                }
            }
        }
        let n_extra = tri1.0.len() * (self.tri_expand_k - 1) / 2;

        // part 2: anchor and positive from the bank, negative from the batch
        let mut tri2 = (Vec::new(), Vec::new(), Vec::new());
        if n_extra > 0 {
            let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
            for (i, l) in st.labels.iter().enumerate() {
                groups.entry(*l).or_default().push(i);
            }
            let groups: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() >= 2).collect();
            if !groups.is_empty() {
                let mut pairs = Vec::new();
                while pairs.len() < n_extra {
                    let g = &groups[st.rng.random_range(0..groups.len())];
                    pairs.extend(group_pairs(g));
                }
                pairs.shuffle(&mut st.rng);
                pairs.truncate(n_extra);
                for (a, p) in pairs {
                    let n = st.rng.random_range(0..bs);
                    if st.labels[a] != labels[n] {
                        tri2.0.push(a);
                        tri2.1.push(p);
                        tri2.2.push(n);
                    }
                }
            }
        }

        // part 3: anchor and positive from the batch, negative from the bank
        let mut tri3 = (Vec::new(), Vec::new(), Vec::new());
        if n_extra > 0 && !batch_pairs.is_empty() {
            for _ in 0..n_extra {
                let n = st.rng.random_range(0..bank_size);
                let (a, p) = batch_pairs[st.rng.random_range(0..batch_pairs.len())];
                if labels[a] != st.labels[n] {
                    tri3.0.push(a);
                    tri3.1.push(p);
                    tri3.2.push(n);
                }
            }
        }

        let total = tri1.0.len() + tri2.0.len() + tri3.0.len();
        if total == 0 {
            return Err(MiningError::Empty(
                "TripletMinerWithMemory found no triplet: the batch needs two labels and a label \
                 with two instances"
                    .to_string(),
            ));
        }
        let stored = st
            .features
            .clone()
            .unwrap_or_else(|| Tensor::zeros([bank_size, dim], &device));
        let stored = if features.is_autodiff() {
            stored.autodiff()
        } else {
            stored
        };
        let gather = |parts: [(&Tensor<2>, &Vec<usize>); 3]| {
            let picked: Vec<Tensor<2>> = parts
                .iter()
                .filter(|(_, ids)| !ids.is_empty())
                .map(|(src, ids)| (*src).clone().select(0, index_tensor(ids, &device)))
                .collect();
            Tensor::cat(picked, 0)
        };
        let anchor = gather([
            (&features, &tri3.0),
            (&stored, &tri2.0),
            (&features, &tri1.0),
        ]);
        let positive = gather([
            (&features, &tri3.1),
            (&stored, &tri2.1),
            (&features, &tri1.1),
        ]);
        let negative = gather([
            (&stored, &tri3.2),
            (&features, &tri2.2),
            (&features, &tri1.2),
        ]);
        let mut is_original = vec![false; tri3.0.len() + tri2.0.len()];
        is_original.extend(std::iter::repeat_n(true, tri1.0.len()));

        // update the bank (ring buffer of whole batches)
        let ptr = st.ptr;
        let rows = features.without_autodiff();
        if let Some(bank) = st.features.take() {
            st.features = Some(bank.slice_assign([ptr..ptr + bs, 0..dim], rows));
        }
        st.labels[ptr..ptr + bs].copy_from_slice(labels);
        st.ptr = (ptr + bs) % bank_size;

        Ok(MemoryTriplets {
            features: TripletFeatures {
                anchor,
                positive,
                negative,
            },
            is_original,
        })
    }
}

/// Ordered positive pairs of a batch: for each label (ascending), `(i, j)` with `i < j`, then
/// the same pairs flipped (OML's `combinations` + `flip`).
fn positive_pairs(labels: &[i64]) -> Vec<(usize, usize)> {
    let mut groups: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        groups.entry(*l).or_default().push(i);
    }
    groups.values().flat_map(|g| group_pairs(g)).collect()
}

fn group_pairs(g: &[usize]) -> Vec<(usize, usize)> {
    let mut combs = Vec::new();
    for i in 0..g.len() {
        for j in i + 1..g.len() {
            combs.push((g[i], g[j]));
        }
    }
    let flipped: Vec<_> = combs.iter().map(|&(a, b)| (b, a)).collect();
    combs.extend(flipped);
    combs
}

impl TripletsMiner for TripletMinerWithMemory {
    fn sample(&self, features: Tensor<2>, labels: &[i64]) -> Result<TripletFeatures, MiningError> {
        self.sample_with_origin(features, labels)
            .map(|t| t.features)
    }
}
