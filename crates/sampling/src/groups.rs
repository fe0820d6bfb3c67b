//! Grouping dataset indices by label and labels by category, and the parameter checks that
//! OML's constructors make on them.

use std::collections::BTreeMap;
use std::fmt::Display;

use oml_interfaces::SamplerError;

/// A compressed index: group `g` owns `items[offsets[g]..offsets[g + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Groups {
    offsets: Vec<usize>,
    items: Vec<usize>,
}

impl Groups {
    /// Number of groups.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The members of group `g`.
    pub(crate) fn get(&self, g: usize) -> &[usize] {
        &self.items[self.offsets[g]..self.offsets[g + 1]]
    }
}

/// Dataset indices grouped by label, labels in ascending order (`np.unique` order) and indices
/// ascending within a label. Returns the groups and the sorted unique labels.
pub(crate) fn group_by_label<L: Ord>(labels: &[L]) -> (Groups, Vec<&L>) {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    // Stable: indices stay ascending within a label.
    order.sort_by(|&a, &b| labels[a].cmp(&labels[b]));
    let mut offsets = Vec::with_capacity(labels.len() / 2 + 2);
    let mut unique = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if unique.last().is_none_or(|last: &&L| *last != &labels[i]) {
            offsets.push(pos);
            unique.push(&labels[i]);
        }
    }
    offsets.push(order.len());
    (
        Groups {
            offsets,
            items: order,
        },
        unique,
    )
}

/// OML: "each label should contain at least 2 samples". Names the smallest offending label.
pub(crate) fn check_two_samples<L: Display>(
    groups: &Groups,
    unique: &[&L],
) -> Result<(), SamplerError> {
    for (g, label) in unique.iter().enumerate() {
        let count = groups.get(g).len();
        if count < 2 {
            return Err(SamplerError::TooFewSamples {
                label: label.to_string(),
                count,
                required: 2,
            });
        }
    }
    Ok(())
}

/// `1 < n_labels <= n_unique` (OML's check in every sampler).
pub(crate) fn check_n_labels(n_labels: usize, n_unique: usize) -> Result<(), SamplerError> {
    if n_unique == 0 {
        return Err(SamplerError::InvalidParameter {
            name: "labels",
            value: "[]".to_string(),
            reason: "the sampler needs at least two labels, got none".to_string(),
        });
    }
    if n_labels <= 1 || n_labels > n_unique {
        return Err(SamplerError::InvalidParameter {
            name: "n_labels",
            value: n_labels.to_string(),
            reason: format!("must satisfy 1 < n_labels <= {n_unique}, the number of unique labels"),
        });
    }
    Ok(())
}

/// `n_instances > 1` (OML's check in every sampler).
pub(crate) fn check_n_instances(n_instances: usize) -> Result<(), SamplerError> {
    if n_instances <= 1 {
        return Err(SamplerError::InvalidParameter {
            name: "n_instances",
            value: n_instances.to_string(),
            reason: "must be greater than 1 (a label needs a positive pair)".to_string(),
        });
    }
    Ok(())
}

/// What the category samplers share: labels grouped by category, categories sorted.
#[derive(Debug, Clone)]
pub(crate) struct CategoryIndex {
    /// Dataset indices per label id (labels sorted).
    pub(crate) label_items: Groups,
    /// Label ids per category id (categories sorted, labels ascending within one).
    pub(crate) category_labels: Groups,
}

/// Builds and checks the category index in OML's order of checks:
/// `n_categories`, `n_labels`, `n_instances`, a label without a category, a mapped label without
/// samples, a label with fewer than 2 samples, and (when `min_labels_per_category` is given) a
/// category with too few labels.
pub(crate) fn build_category_index<L, C>(
    labels: &[L],
    label2category: &BTreeMap<L, C>,
    n_categories: usize,
    n_labels: usize,
    n_instances: usize,
    min_labels_per_category: Option<usize>,
) -> Result<CategoryIndex, SamplerError>
where
    L: Ord + Display,
    C: Ord + Display,
{
    let (label_items, unique) = group_by_label(labels);
    let mut categories: Vec<&C> = label2category.values().collect();
    categories.sort();
    categories.dedup();

    if n_categories < 1 || n_categories > categories.len() {
        return Err(SamplerError::InvalidParameter {
            name: "n_categories",
            value: n_categories.to_string(),
            reason: format!(
                "must satisfy 1 <= n_categories <= {}, the number of categories in label2category",
                categories.len()
            ),
        });
    }
    check_n_labels(n_labels, unique.len())?;
    check_n_instances(n_instances)?;
    let mut label_category = Vec::with_capacity(unique.len());
    for label in &unique {
        match label2category.get(label) {
            Some(c) => label_category.push(c),
            None => {
                return Err(SamplerError::MissingCategory {
                    label: label.to_string(),
                });
            }
        }
    }
    if label2category.len() != unique.len() {
        // Every label has a category, so some mapped label is not among the labels.
        if let Some(extra) = label2category
            .keys()
            .find(|k| unique.binary_search(k).is_err())
        {
            return Err(SamplerError::InvalidParameter {
                name: "label2category",
                value: extra.to_string(),
                reason: "this label is mapped to a category but has no samples in labels"
                    .to_string(),
            });
        }
    }
    check_two_samples(&label_items, &unique)?;

    // Labels per category: walk labels in order, bucket by the category's sorted position.
    let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); categories.len()];
    for (l, c) in label_category.iter().enumerate() {
        // Present by construction: `categories` holds every mapped value.
        if let Ok(pos) = categories.binary_search(c) {
            buckets[pos].push(l);
        }
    }
    if let Some(required) = min_labels_per_category {
        for (c, bucket) in buckets.iter().enumerate() {
            if bucket.len() < required {
                return Err(SamplerError::TooFewLabels {
                    category: categories[c].to_string(),
                    count: bucket.len(),
                    required,
                });
            }
        }
    }
    let mut offsets = Vec::with_capacity(buckets.len() + 1);
    let mut items = Vec::with_capacity(unique.len());
    for bucket in buckets {
        offsets.push(items.len());
        items.extend(bucket);
    }
    offsets.push(items.len());
    Ok(CategoryIndex {
        label_items,
        category_labels: Groups { offsets, items },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_sorted_by_label_and_index() {
        let labels = ["b", "a", "b", "c", "a"];
        let (g, unique) = group_by_label(&labels);
        assert_eq!(unique, vec![&"a", &"b", &"c"]);
        assert_eq!(g.len(), 3);
        assert_eq!(g.get(0), &[1, 4]);
        assert_eq!(g.get(1), &[0, 2]);
        assert_eq!(g.get(2), &[3]);
    }

    #[test]
    fn empty_labels_group_to_nothing() {
        let (g, unique) = group_by_label::<i64>(&[]);
        assert_eq!(g.len(), 0);
        assert!(unique.is_empty());
        assert!(matches!(
            check_n_labels(2, 0),
            Err(SamplerError::InvalidParameter { name: "labels", .. })
        ));
    }
}
