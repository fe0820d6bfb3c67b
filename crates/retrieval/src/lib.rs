//! # oml-retrieval
//!
//! Exact nearest-neighbour retrieval on Burn tensors, the [`RetrievalResults`] OML's metrics
//! are computed from, and OML's post-processors.
//!
//! - [`ExactKnn`]: exact Euclidean kNN, blocked over queries *and* gallery (memory bounded by
//!   `block_size²`, whatever the sizes), GEMMs on the chosen Burn device, a running top-k on
//!   the host, masks for the query's own item and its sequence, ties broken by the lower
//!   gallery position, ragged results. Both OML forms: one embedding set with query/gallery
//!   ids ([`ExactKnn::new`]) and separate sets ([`ExactKnn::new_qg`]).
//! - [`GroundTruth`]: relevance from labels (counts over the whole gallery, masks excluded)
//!   without materialising OML's `gt_ids` unless asked.
//! - [`results_from_embeddings`], [`results_from_embeddings_qg`]: OML's
//!   `RetrievalResults.from_embeddings(_qg)`; [`RetrievalResultsExt::query`] and
//!   [`worst_queries`] for per-query access.
//! - [`ConstantThresholding`], [`AdaptiveThresholding`], [`PairwiseReranker`] implement
//!   [`RetrievalPostprocessor`].
//!
//! # Example
//!
//! ```
//! use burn::prelude::*;
//! use oml_retrieval::{KnnConfig, QueryGalleryMeta, results_from_embeddings};
//!
//! let device = oml_interfaces::device::select_device(None)?;
//! // Four points on a line; every item is a query and a gallery item.
//! let emb = Tensor::<2>::from_data([[0.0], [1.0], [3.0], [7.0]], &device);
//! let meta = QueryGalleryMeta::new(vec![0, 0, 1, 1], vec![true; 4], vec![true; 4]);
//! let rr = results_from_embeddings(&emb, &meta, 2, &KnnConfig::default(), None)?;
//! assert_eq!(rr.retrieved_ids(0), &[1, 2]); // never itself
//! assert_eq!(rr.distances(2), &[2.0, 3.0]);
//! assert_eq!(rr.gt_ids(3), Some(&[2][..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod knn;
pub mod meta;
pub mod postprocess;
pub mod results;
mod topk;

pub use knn::{
    BlockVisitor, DistanceBlock, ExactKnn, KnnConfig, Neighbours, Progress, Selection, euclidean,
    tensor_to_host,
};
pub use meta::{GroundTruth, QueryGalleryMeta, factorize, factorize_pair};
pub use oml_interfaces::{RetrievalError, RetrievalPostprocessor, RetrievalResults};
pub use postprocess::{
    AdaptiveThresholding, ConstantThresholding, ItemLoader, ModelPairScorer, PairScorer,
    PairwiseReranker, cat_two_sorted_keep_sorted,
};
pub use results::{
    QueryView, RetrievalResultsExt, SideMeta, into_results, results_from_embeddings,
    results_from_embeddings_qg, worst_queries,
};
