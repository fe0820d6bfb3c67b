//! A bounded max-heap keeping the `cap` smallest `(distance, id)` pairs.
//!
//! Pairs are ordered lexicographically, so among equal distances the lower id wins whatever
//! order the candidates arrive in: that is what makes tie-breaking deterministic even though
//! blocks of a symmetric search reach a query out of gallery order.

/// The `cap` smallest `(d, id)` pairs seen so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopK {
    cap: usize,
    d: Vec<f32>,
    id: Vec<u32>,
}

#[inline]
fn greater(d1: f32, i1: u32, d2: f32, i2: u32) -> bool {
    d1 > d2 || (d1 == d2 && i1 > i2)
}

impl TopK {
    pub(crate) fn new(cap: usize) -> Self {
        TopK {
            cap,
            d: Vec::with_capacity(cap.min(1024)),
            id: Vec::with_capacity(cap.min(1024)),
        }
    }

    /// Candidates with a distance above this can never enter (`+inf` while not full).
    #[inline]
    pub(crate) fn threshold(&self) -> f32 {
        if self.cap == 0 {
            f32::NEG_INFINITY
        } else if self.d.len() < self.cap {
            f32::INFINITY
        } else {
            self.d[0]
        }
    }

    /// Offers a candidate; keeps it if it is among the `cap` smallest so far.
    #[inline]
    pub(crate) fn push(&mut self, d: f32, id: u32) {
        if self.d.len() < self.cap {
            self.d.push(d);
            self.id.push(id);
            self.sift_up(self.d.len() - 1);
        } else if self.cap > 0 && greater(self.d[0], self.id[0], d, id) {
            self.d[0] = d;
            self.id[0] = id;
            self.sift_down(0);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let p = (i - 1) / 2;
            if greater(self.d[i], self.id[i], self.d[p], self.id[p]) {
                self.d.swap(i, p);
                self.id.swap(i, p);
                i = p;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.d.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && greater(self.d[l], self.id[l], self.d[m], self.id[m]) {
                m = l;
            }
            if r < n && greater(self.d[r], self.id[r], self.d[m], self.id[m]) {
                m = r;
            }
            if m == i {
                break;
            }
            self.d.swap(i, m);
            self.id.swap(i, m);
            i = m;
        }
    }

    /// The kept ids (unordered).
    pub(crate) fn ids(&self) -> &[u32] {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_smallest_with_lower_id_on_ties_in_any_order() {
        let items = [
            (3.0, 7),
            (1.0, 5),
            (1.0, 2),
            (2.0, 9),
            (1.0, 4),
            (0.5, 8),
            (2.0, 1),
        ];
        let mut expected: Vec<(f32, u32)> = items.to_vec();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for perm in 0..items.len() {
            let mut t = TopK::new(4);
            for k in 0..items.len() {
                let (d, id) = items[(k + perm) % items.len()];
                if d <= t.threshold() {
                    t.push(d, id);
                }
            }
            let mut got: Vec<u32> = t.ids().to_vec();
            got.sort();
            let mut want: Vec<u32> = expected[..4].iter().map(|p| p.1).collect();
            want.sort();
            assert_eq!(got, want, "rotation {perm}");
        }
        let mut z = TopK::new(0);
        assert_eq!(z.threshold(), f32::NEG_INFINITY);
        z.push(0.0, 1);
        assert!(z.ids().is_empty());
    }
}
