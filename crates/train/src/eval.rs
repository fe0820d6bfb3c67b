//! `oml eval`'s data: an OML-format dataset CSV and one embedding per CSV row (`.npy`), checked
//! against each other and cut to one split, ready for [`oml_metrics::evaluate`].
//!
//! Every problem is an [`EvalDataError`] naming its file, row, column and value.

use std::path::{Path, PathBuf};

use oml_datasets::dataframe::{DataframeError, ReadOptions, Split, read_dataframe};
use oml_datasets::npy::{NpyError, read_npy};
use oml_metrics::QueryGalleryMeta;

/// Why the dataset and embeddings cannot be evaluated together.
#[derive(Debug, thiserror::Error)]
pub enum EvalDataError {
    /// The dataset CSV is unreadable or invalid.
    #[error(transparent)]
    Dataframe(#[from] DataframeError),
    /// The embeddings file is unreadable or not a 2-D array.
    #[error(transparent)]
    Npy(#[from] NpyError),
    /// The two files are readable but do not fit together (or select nothing).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file the problem is in.
        path: PathBuf,
        /// What is wrong, with the row, column or value.
        message: String,
    },
}

fn invalid(path: &Path, message: String) -> EvalDataError {
    EvalDataError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

/// The rows of one split: embeddings (row-major `[len, dim]`), their query/gallery metadata and
/// the dataset's warnings (each naming the file).
#[derive(Debug, Clone)]
pub struct EvalData {
    /// Row-major `[meta.len(), dim]`.
    pub embeddings: Vec<f32>,
    /// Embedding dimension.
    pub dim: usize,
    /// Labels, query/gallery flags, categories and sequences of the kept rows.
    pub meta: QueryGalleryMeta,
    /// The dataset reader's warnings.
    pub warnings: Vec<String>,
}

/// Reads `dataset` (OML's dataframe; `split` may be absent, then every row is kept) and
/// `embeddings` (float32 or float64 `[rows, dim]`, one row per CSV row) and keeps the rows of
/// `split`.
pub fn load_eval_data(
    embeddings: &Path,
    dataset: &Path,
    split: Split,
) -> Result<EvalData, EvalDataError> {
    let options = ReadOptions {
        require_split: false,
        require_query_labels_in_gallery: false,
        ..Default::default()
    };
    let df = read_dataframe(dataset, &options)?;
    let npy = read_npy(embeddings)?;
    let [rows, dim] = npy.dims2(embeddings)?;
    if !npy.is_float() {
        return Err(invalid(
            embeddings,
            format!(
                "dtype {} is not a float type: embeddings must be float32 or float64",
                npy.dtype
            ),
        ));
    }
    if rows != df.rows.len() {
        return Err(invalid(
            embeddings,
            format!(
                "{rows} rows but {} has {} data rows: there must be one embedding per CSV row",
                dataset.display(),
                df.rows.len()
            ),
        ));
    }
    if dim == 0 {
        return Err(invalid(embeddings, "embeddings have dimension 0".into()));
    }
    for (r, row) in npy.data.chunks_exact(dim).enumerate() {
        if let Some(problem) = oml_retrieval::knn::row_problem(row) {
            return Err(invalid(
                embeddings,
                format!("row {r} (0-based; CSV row {}), {problem}", df.rows[r].row),
            ));
        }
    }
    let keep: Vec<usize> = (0..rows)
        .filter(|&i| !df.columns.split || df.rows[i].split == split)
        .collect();
    if keep.is_empty() {
        return Err(invalid(dataset, format!("no row has split `{split}`")));
    }
    let mut embeddings = Vec::with_capacity(keep.len() * dim);
    for &i in &keep {
        embeddings.extend_from_slice(&npy.data[i * dim..(i + 1) * dim]);
    }
    let pick = |f: &dyn Fn(usize) -> Option<String>| -> Option<Vec<String>> {
        keep.iter().map(|&i| f(i)).collect()
    };
    let mut meta = QueryGalleryMeta::new(
        keep.iter().map(|&i| df.rows[i].label).collect(),
        keep.iter().map(|&i| df.rows[i].is_query).collect(),
        keep.iter().map(|&i| df.rows[i].is_gallery).collect(),
    );
    if df.columns.category {
        meta.categories = pick(&|i| df.rows[i].category.clone());
    }
    if df.columns.sequence {
        meta.sequences = pick(&|i| df.rows[i].sequence.clone());
    }
    if !meta.is_query.iter().any(|&q| q) {
        return Err(invalid(
            dataset,
            format!("no row of split `{split}` is a query (is_query is False everywhere)"),
        ));
    }
    if !meta.is_gallery.iter().any(|&g| g) {
        return Err(invalid(
            dataset,
            format!("no row of split `{split}` is a gallery item (is_gallery is False everywhere)"),
        ));
    }
    let warnings = df
        .warnings
        .iter()
        .map(|w| format!("{}: {w}", dataset.display()))
        .collect();
    Ok(EvalData {
        embeddings,
        dim,
        meta,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oml_datasets::npy::write_npy;

    const CSV: &str = "label,path,split,is_query,is_gallery\n\
        0,a.jpg,validation,True,True\n\
        0,b.jpg,train,,\n\
        1,c.jpg,validation,True,True\n\
        1,d.jpg,validation,False,True\n";

    fn files(csv: &str, shape: &[usize], data: &[f32]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (d, e) = (dir.path().join("d.csv"), dir.path().join("e.npy"));
        std::fs::write(&d, csv).unwrap();
        write_npy(&e, shape, data).unwrap();
        (dir, e, d)
    }

    #[test]
    fn keeps_the_rows_of_the_split_with_their_embeddings() {
        let data: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let (_dir, e, d) = files(CSV, &[4, 2], &data);
        let got = load_eval_data(&e, &d, Split::Validation).unwrap();
        assert_eq!(got.dim, 2);
        assert_eq!(got.embeddings, [0.0, 1.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(got.meta.is_query, [true, true, false]);
        assert!(
            load_eval_data(&e, &d, Split::Train).is_err(),
            "no train query"
        );
    }

    #[test]
    fn mismatched_and_non_finite_embeddings_name_the_file_and_row() {
        let (_dir, e, d) = files(CSV, &[3, 2], &[0.0; 6]);
        let err = load_eval_data(&e, &d, Split::Validation).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EvalDataError::Invalid { .. }), "{err:?}");
        assert!(
            msg.contains("e.npy") && msg.contains("3 rows") && msg.contains("4 data rows"),
            "{msg}"
        );
        let mut data = vec![0.0f32; 8];
        data[5] = f32::NAN;
        let (_dir, e, d) = files(CSV, &[4, 2], &data);
        let msg = load_eval_data(&e, &d, Split::Validation)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("row 2") && msg.contains("column 1") && msg.contains("NaN"),
            "{msg}"
        );
        // finite values whose squared norm overflows f32: the file and both row numbers
        let mut data = vec![0.0f32; 8];
        data[6] = 2e19;
        let (_dir, e, d) = files(CSV, &[4, 2], &data);
        let msg = load_eval_data(&e, &d, Split::Validation)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("e.npy")
                && msg.contains("row 3 (0-based; CSV row 5)")
                && msg.contains("squared norm overflows")
                && msg.matches("e.npy").count() == 1,
            "{msg}"
        );
    }
}
