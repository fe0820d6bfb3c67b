//! Helpers for the workspace-level integration tests: small synthetic data sets whose right
//! answer is known by construction.

use rand::{Rng, SeedableRng};

/// `n_labels` well-separated Gaussian clusters of `per_label` points in `dim` dimensions,
/// observed through a fixed random mixing so that the identity embedding is not already
/// perfect. Returns row-major points and their labels.
pub fn mixed_clusters(
    n_labels: usize,
    per_label: usize,
    dim: usize,
    seed: u64,
) -> (Vec<f32>, Vec<i64>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..n_labels)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    // A noisy direction shared by every point dominates the raw distances.
    let nuisance: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut x = Vec::with_capacity(n_labels * per_label * dim);
    let mut labels = Vec::with_capacity(n_labels * per_label);
    for (l, c) in centres.iter().enumerate() {
        for _ in 0..per_label {
            let s: f32 = rng.random_range(-8.0..8.0);
            x.extend(
                c.iter()
                    .zip(&nuisance)
                    .map(|(ci, ni)| ci + s * ni + rng.random_range(-0.3..0.3)),
            );
            labels.push(l as i64);
        }
    }
    (x, labels)
}
