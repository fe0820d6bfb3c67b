//! The random draws the samplers share: OML's `smart_sample`, the per-epoch RNG, and weighted
//! sampling without replacement.

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The RNG of one epoch: ChaCha8 keyed by `seed`, on stream `epoch`. Each `(seed, epoch)` pair
/// gets its own independent stream, so an epoch is a pure function of both and can be redrawn
/// anywhere (every device slice, a resumed run) without replaying earlier epochs.
pub fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    rng
}

/// OML's `smart_sample(array, k)`, appending to `out`: if `array` has at least `k` elements,
/// `k` of them without replacement (in random order); otherwise every element once in random
/// order, then `k - array.len()` more drawn with replacement.
///
/// Appends exactly `k` elements, or nothing when `array` is empty (there is nothing to draw;
/// the samplers never pass an empty array).
///
/// ```
/// use oml_sampling::{epoch_rng, smart_sample};
/// let mut out = Vec::new();
/// smart_sample(&[10, 11], 5, &mut epoch_rng(0, 0), &mut out);
/// assert_eq!(out.len(), 5);
/// assert!(out[..2].contains(&10) && out[..2].contains(&11));
/// ```
pub fn smart_sample<T: Copy, R: Rng + ?Sized>(
    array: &[T],
    k: usize,
    rng: &mut R,
    out: &mut Vec<T>,
) {
    let n = array.len();
    if n == 0 {
        return;
    }
    out.reserve(k);
    if n >= k {
        out.extend(index::sample(rng, n, k).into_iter().map(|i| array[i]));
    } else {
        out.extend(index::sample(rng, n, n).into_iter().map(|i| array[i]));
        out.extend((n..k).map(|_| array[rng.random_range(0..n)]));
    }
}

/// A Fenwick tree over integer weights, for drawing `k` distinct items with probability
/// proportional to their weights, one after another (numpy's `choice(replace=False, p=...)`
/// has the same law). Integer weights keep the draw exact: no float drift across batches.
#[derive(Debug, Clone)]
pub(crate) struct WeightedDraw {
    tree: Vec<u64>,
    weights: Vec<u64>,
    total: u64,
}

impl WeightedDraw {
    pub(crate) fn new(weights: Vec<u64>) -> Self {
        let n = weights.len();
        let mut tree = vec![0u64; n + 1];
        // Linear build: each node, once complete, passes its sum to its parent.
        for i in 1..=n {
            tree[i] += weights[i - 1];
            let parent = i + (i & i.wrapping_neg());
            if parent <= n {
                tree[parent] += tree[i];
            }
        }
        let total = weights.iter().sum();
        Self {
            tree,
            weights,
            total,
        }
    }

    fn add(&mut self, i: usize, delta: i128) {
        let n = self.weights.len();
        let mut j = i + 1;
        while j <= n {
            self.tree[j] = (self.tree[j] as i128 + delta) as u64;
            j += j & j.wrapping_neg();
        }
        self.total = (self.total as i128 + delta) as u64;
    }

    /// The item whose cumulative weight interval contains `r` (`r < total`).
    fn find(&self, mut r: u64) -> usize {
        let n = self.weights.len();
        let mut pos = 0;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            step >>= 1;
        }
        pos
    }

    /// Draws `k` distinct items (at most the number with positive weight), appending them to
    /// `out` in draw order; the tree is restored afterwards.
    pub(crate) fn draw<R: Rng + ?Sized>(&mut self, k: usize, rng: &mut R, out: &mut Vec<usize>) {
        let start = out.len();
        for _ in 0..k {
            if self.total == 0 {
                break;
            }
            let i = self.find(rng.random_range(0..self.total));
            out.push(i);
            self.add(i, -(self.weights[i] as i128));
        }
        for &i in &out[start..] {
            self.add(i, self.weights[i] as i128);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenwick_find_matches_a_linear_scan() {
        let weights = vec![3, 0, 5, 1, 0, 7, 2];
        let draw = WeightedDraw::new(weights.clone());
        assert_eq!(draw.total, 18);
        for r in 0..18u64 {
            let mut acc = 0;
            let expected = weights
                .iter()
                .position(|&w| {
                    acc += w;
                    acc > r
                })
                .unwrap();
            assert_eq!(draw.find(r), expected, "r = {r}");
        }
    }

    #[test]
    fn weighted_draw_is_distinct_skips_zero_weights_and_restores() {
        let mut draw = WeightedDraw::new(vec![1, 0, 2, 0, 4]);
        let mut rng = epoch_rng(7, 0);
        for _ in 0..200 {
            let mut out = Vec::new();
            draw.draw(5, &mut rng, &mut out);
            let mut sorted = out.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 2, 4]);
            assert_eq!(draw.total, 7);
        }
    }

    #[test]
    fn weighted_first_draw_follows_the_weights() {
        // Expected first-draw frequencies 1/7, 2/7, 4/7; 5 sigma bounds at n = 70_000.
        let mut draw = WeightedDraw::new(vec![1, 2, 4]);
        let mut rng = epoch_rng(1, 3);
        let n = 70_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            let mut out = Vec::new();
            draw.draw(1, &mut rng, &mut out);
            counts[out[0]] += 1;
        }
        for (i, p) in [1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0].iter().enumerate() {
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (counts[i] as f64 - n as f64 * p).abs() < 5.0 * sd,
                "{counts:?}"
            );
        }
    }

    #[test]
    fn smart_sample_rules() {
        let mut rng = epoch_rng(3, 1);
        for _ in 0..100 {
            let mut out = Vec::new();
            smart_sample(&[1, 2, 3, 4, 5], 3, &mut rng, &mut out);
            let mut s = out.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3, "no repeats when the array is large enough");
            let mut out = Vec::new();
            smart_sample(&[1, 2], 5, &mut rng, &mut out);
            let mut head = out[..2].to_vec();
            head.sort();
            assert_eq!(head, vec![1, 2], "every element once first");
            assert!(out.iter().all(|x| *x == 1 || *x == 2));
        }
        let mut out = vec![9];
        smart_sample::<i32, _>(&[], 4, &mut rng, &mut out);
        assert_eq!(out, vec![9]);
    }
}
