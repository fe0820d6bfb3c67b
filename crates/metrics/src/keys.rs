//! The keys a report will have, known before any embedding exists (so a pipeline can check a
//! `metric_for_checkpointing` before it trains).

use std::collections::BTreeSet;

use oml_interfaces::OVERALL;

use crate::QueryGalleryMeta;
use crate::embedding::{
    CMC, FNMR_AT_FMR, MAP, MAP_AT_R, MRR, MetricsConfig, NDCG, PCF, PRECISION, R_PARAM,
    R_PRECISION, fraction_key,
};

impl MetricsConfig {
    /// The flat keys (`OVERALL/cmc/1`, `<category>/map/5`, …) of the report [`evaluate`]
    /// returns for queries of `query_categories` (empty: a data set without categories).
    ///
    /// [`evaluate`]: crate::evaluate
    pub fn report_keys<'a>(
        &self,
        query_categories: impl IntoIterator<Item = &'a str>,
    ) -> BTreeSet<String> {
        let mut per_category: Vec<(&str, String)> = Vec::new();
        for (name, ks) in [
            (CMC, &self.cmc_top_k),
            (PRECISION, &self.precision_top_k),
            (MAP, &self.map_top_k),
            (NDCG, &self.ndcg_top_k),
            (MRR, &self.mrr_top_k),
        ] {
            per_category.extend(ks.iter().map(|k| (name, k.to_string())));
        }
        for (name, on) in [(MAP_AT_R, self.map_at_r), (R_PRECISION, self.r_precision)] {
            if on {
                per_category.push((name, R_PARAM.to_string()));
            }
        }
        per_category.extend(self.pcf_variance.iter().map(|v| (PCF, fraction_key(*v))));
        let mut categories: BTreeSet<&str> = BTreeSet::from([OVERALL]);
        if !self.return_only_overall_category {
            categories.extend(query_categories);
        }
        let mut keys: BTreeSet<String> = categories
            .iter()
            .flat_map(|c| {
                per_category
                    .iter()
                    .map(move |(m, p)| format!("{c}/{m}/{p}"))
            })
            .collect();
        keys.extend(
            self.fmr_vals
                .iter()
                .map(|v| format!("{OVERALL}/{FNMR_AT_FMR}/{}", fraction_key(*v))),
        );
        keys
    }

    /// [`MetricsConfig::report_keys`] for the queries of `meta`.
    pub fn report_keys_for(&self, meta: &QueryGalleryMeta) -> BTreeSet<String> {
        let categories = meta.categories.iter().flat_map(|cats| {
            cats.iter()
                .zip(&meta.is_query)
                .filter(|(_, q)| **q)
                .map(|(c, _)| c.as_str())
        });
        self.report_keys(categories)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EvalHooks, evaluate};
    use oml_interfaces::device::test_device;

    /// The predicted keys are exactly those of a computed report, with and without categories
    /// (one of which has no query).
    #[test]
    fn report_keys_are_the_keys_evaluate_reports() {
        let n = 24;
        let dim = 4;
        let data: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5)
            .collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 6).collect();
        let is_query: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
        // "gloves" only on gallery items: no query of it, so no key of it.
        let cats: Vec<String> = (0..n)
            .map(|i| match i % 6 {
                5 => "gloves".to_string(),
                _ => ["shoes", "bags", "hats"][(i / 2) % 3].to_string(),
            })
            .collect();
        let configs = [
            MetricsConfig::default(),
            MetricsConfig {
                cmc_top_k: vec![1, 3],
                ndcg_top_k: vec![2],
                mrr_top_k: vec![4],
                map_at_r: true,
                r_precision: true,
                fmr_vals: vec![0.1, 1.0],
                pcf_variance: vec![0.5, 0.9],
                ..MetricsConfig::default()
            },
            MetricsConfig {
                return_only_overall_category: true,
                ..MetricsConfig::default()
            },
        ];
        for categories in [None, Some(cats)] {
            let mut meta = QueryGalleryMeta::new(labels.clone(), is_query.clone(), vec![true; n]);
            meta.categories = categories.clone();
            let query_cats: Vec<&str> = categories
                .iter()
                .flatten()
                .zip(&is_query)
                .filter(|(_, q)| **q)
                .map(|(c, _)| c.as_str())
                .collect();
            for config in &configs {
                let e = evaluate(
                    &data,
                    dim,
                    &meta,
                    config,
                    &test_device(),
                    &EvalHooks::default(),
                )
                .unwrap();
                let got: BTreeSet<String> =
                    e.report.flatten().into_iter().map(|(k, _)| k).collect();
                assert_eq!(config.report_keys(query_cats.iter().copied()), got);
                assert_eq!(config.report_keys_for(&meta), got);
            }
        }
    }
}
