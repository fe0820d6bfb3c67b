//! Errors of the pipelines.

/// Why a pipeline could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config key is unknown, missing or of the wrong type, or its value is invalid.
    #[error("{}{}: {message}", if file.is_empty() { String::new() } else { format!("{file}: ") }, if key.is_empty() { "config" } else { key.as_str() })]
    Config {
        /// The config file (empty when parsed from text or a section).
        file: String,
        /// Dotted key path, e.g. `optimizer.args.lr`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The data set cannot be used (no underlying error).
    #[error("data: {0}")]
    Data(String),
    /// The data set could not be read.
    #[error(transparent)]
    Dataset(#[from] oml_interfaces::DatasetError),
    /// A split of the dataframe has no rows.
    #[error("{csv} has no {split} rows")]
    EmptySplit {
        /// The dataframe.
        csv: String,
        /// `train` or `validation`.
        split: &'static str,
    },
    /// The model could not be built, loaded or saved.
    #[error(transparent)]
    Model(#[from] oml_interfaces::ModelError),
    /// The model's output could not be used (no underlying error).
    #[error("model: {0}")]
    ModelOutput(String),
    /// A logger could not be configured or created.
    #[error(transparent)]
    Logger(#[from] oml_interfaces::LoggerError),
    /// Metrics could not be computed.
    #[error(transparent)]
    Metrics(#[from] oml_interfaces::MetricError),
    /// Retrieval or its post-processing failed.
    #[error(transparent)]
    Retrieval(#[from] oml_interfaces::RetrievalError),
    /// The worst-queries figures could not be drawn.
    #[error("drawing the worst queries")]
    Figure(#[source] oml_datasets::visualize::VisualizeError),
    /// Training failed (a step, a validation, a checkpoint).
    #[error("training: {0}")]
    Training(String),
    /// The device is unknown or not compiled in.
    #[error(transparent)]
    Device(#[from] oml_interfaces::DeviceError),
    /// The run was interrupted before it finished; re-running resumes it.
    #[error(
        "interrupted after epoch {epoch}: {reason}; run the same command again to resume from {run_dir}"
    )]
    Interrupted {
        /// Last completed epoch.
        epoch: usize,
        /// Why.
        reason: String,
        /// The run directory.
        run_dir: String,
    },
}

impl TrainError {
    /// A config error for `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        TrainError::Config {
            file: String::new(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path` (named once, also when `e` names it already, as the errors of
    /// `oml_interfaces::fs::write_atomic` do).
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        let path = path.display().to_string();
        let message = e.to_string();
        let message = match message.strip_prefix(&path) {
            Some(rest) if rest.starts_with(": ") => rest[2..].to_string(),
            _ => message,
        };
        TrainError::Io { path, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_names_its_file_once() {
        let path = std::path::Path::new("/runs/a/history.json");
        let named = std::io::Error::other("/runs/a/history.json: No space left on device");
        assert_eq!(
            TrainError::io(path, named).to_string(),
            "/runs/a/history.json: No space left on device"
        );
        let bare = std::io::Error::other("No space left on device");
        assert_eq!(
            TrainError::io(path, bare).to_string(),
            "/runs/a/history.json: No space left on device"
        );
        // a message that merely starts like the path keeps it
        let other = "/runs/a/history.json.tmp: gone";
        assert_eq!(
            TrainError::io(path, other).to_string(),
            format!("/runs/a/history.json: {other}")
        );
    }
}
