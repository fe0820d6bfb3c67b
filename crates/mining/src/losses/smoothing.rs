//! Label smoothing (OML's `functional/label_smoothing.py`) and label → category maps.

use oml_interfaces::LossError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// A category value as written in configs: an integer or a string. Categories are ordered
/// (integers numerically, strings lexicographically) to re-index them like OML's `sorted(set(…))`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Category {
    /// An integer category.
    Int(i64),
    /// A named category.
    Text(String),
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Category::Int(i) => write!(f, "{i}"),
            Category::Text(s) => f.write_str(s),
        }
    }
}

impl From<&str> for Category {
    fn from(s: &str) -> Self {
        Category::Text(s.to_string())
    }
}

impl From<i64> for Category {
    fn from(i: i64) -> Self {
        Category::Int(i)
    }
}

/// OML's `label2category`: label → category. In configs a mapping whose keys are labels
/// (integers, or integer strings as JSON object keys require).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Label2Category(pub BTreeMap<i64, Category>);

impl Serialize for Label2Category {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Label2Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<Category, Category>::deserialize(d)?;
        let mut map = BTreeMap::new();
        for (k, v) in raw {
            let label = match &k {
                Category::Int(i) => *i,
                Category::Text(s) => s.trim().parse::<i64>().map_err(|_| {
                    serde::de::Error::custom(format!(
                        "label2category: key `{s}` is not an integer label"
                    ))
                })?,
            };
            map.insert(label, v);
        }
        Ok(Label2Category(map))
    }
}

impl<K: Into<i64>, V: Into<Category>> FromIterator<(K, V)> for Label2Category {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Label2Category(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Label2Category {
    /// Category index of every class `0..num_classes` (categories re-indexed in sorted order).
    /// Every class must have a category.
    pub fn class_categories(&self, num_classes: usize) -> Result<Vec<usize>, LossError> {
        let mut sorted: Vec<&Category> = self.0.values().collect();
        sorted.sort();
        sorted.dedup();
        (0..num_classes)
            .map(|c| {
                let cat = self
                    .0
                    .get(&(c as i64))
                    .ok_or_else(|| LossError::InvalidParameter {
                        name: "label2category",
                        value: format!("{} entries", self.0.len()),
                        reason: format!("class {c} (of 0..{num_classes}) has no category"),
                    })?;
                Ok(sorted.binary_search(&cat).unwrap_or(0))
            })
            .collect()
    }
}

/// Smoothed targets `[B, C]` (row-major): `(1 − ε)·onehot(y) + ε / C`; with `categories`
/// (`categories[c]` = category index of class `c`), `ε` is spread only over the classes of
/// `y`'s category.
pub fn label_smoothing(
    y: &[usize],
    num_classes: usize,
    epsilon: f64,
    categories: Option<&[usize]>,
) -> Vec<f32> {
    let eps = epsilon as f32;
    let mut out = vec![0.0f32; y.len() * num_classes];
    for (i, &yi) in y.iter().enumerate() {
        let row = &mut out[i * num_classes..(i + 1) * num_classes];
        match categories {
            Some(cats) => {
                let same: Vec<usize> = (0..num_classes).filter(|&c| cats[c] == cats[yi]).collect();
                let share = eps / same.len() as f32;
                for c in same {
                    row[c] = share;
                }
            }
            None => row.iter_mut().for_each(|v| *v = eps / num_classes as f32),
        }
        row[yi] += 1.0 - eps;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn smoothing_matrices_from_oml() {
        let got = label_smoothing(&[1, 0], 3, 0.3, None);
        assert!(close(&got, &[0.1, 0.8, 0.1, 0.8, 0.1, 0.1]), "{got:?}");
        let got = label_smoothing(&[1, 0], 3, 0.2, Some(&[0, 1, 1]));
        assert!(close(&got, &[0.0, 0.9, 0.1, 1.0, 0.0, 0.0]), "{got:?}");
    }

    #[test]
    fn categories_are_reindexed_in_sorted_order_and_must_cover_every_class() {
        let l2c: Label2Category = [(0i64, "shoe"), (1, "bag"), (2, "shoe")]
            .into_iter()
            .collect();
        assert_eq!(l2c.class_categories(3).unwrap(), vec![1, 0, 1]);
        let e = l2c.class_categories(4).unwrap_err();
        assert!(e.to_string().contains("`label2category`"), "{e}");
    }

    #[test]
    fn label_keys_may_be_strings_in_json() {
        let l2c: Label2Category = serde_json::from_str(r#"{"0": "a", "1": 7}"#).unwrap();
        assert_eq!(l2c.0[&1], Category::Int(7));
        assert!(serde_json::from_str::<Label2Category>(r#"{"x": "a"}"#).is_err());
    }
}
