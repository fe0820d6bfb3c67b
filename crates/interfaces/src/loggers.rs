//! Pipeline loggers: OML's `IPipelineLogger` and `IFigureLogger`.

/// Why a logger call failed. Training code treats these as reports, never as fatal.
#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    /// Writing a local file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A remote backend (MLflow, …) failed or is unreachable.
    #[error("{backend}: {message}")]
    Remote {
        /// The backend's name.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The value cannot be logged (bad tag, non-finite where not allowed, …).
    #[error("invalid value for {what}: {message}")]
    Invalid {
        /// What was being logged.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// A figure as a PNG file's bytes (retrieval grids, metric plots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The encoded PNG.
    pub png: Vec<u8>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Completed.
    Finished,
    /// Stopped by an error.
    Failed,
    /// Stopped by the user.
    Killed,
}

/// OML's `IPipelineLogger`: scalars, figures, the pipeline's config, and the end of the run.
///
/// Loggers must not stop training: a backend that is down should buffer or drop, report once,
/// and keep returning quickly.
pub trait PipelineLogger: Send {
    /// Records the resolved config (flattened as the backend expects), tags and the dataset
    /// CSV where the backend stores artifacts.
    fn log_pipeline_info(
        &mut self,
        config: &serde_json::Value,
        tags: &[String],
        dataset_csv: Option<&std::path::Path>,
    ) -> Result<(), LoggerError>;

    /// Records scalar values at `step` (`"OVERALL/cmc/1"`, `"triplet_loss"`, …).
    fn log_scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), LoggerError>;

    /// Records a figure under `title` at `step`.
    fn log_figure(&mut self, title: &str, figure: &Figure, step: u64) -> Result<(), LoggerError>;

    /// Pushes what is buffered to its files now (a pipeline calls it before each checkpoint,
    /// so a killed run's logs hold every checkpointed epoch). The default has nothing to push.
    fn flush(&mut self) -> Result<(), LoggerError> {
        Ok(())
    }

    /// Flushes everything and marks the run as ended.
    fn finish(&mut self, status: RunStatus) -> Result<(), LoggerError>;

    /// The files this logger only ever appends to. A pipeline records their lengths after
    /// [`flush`](Self::flush) at each checkpoint and cuts them back to those lengths when an
    /// interrupted run resumes, so that no step is logged twice. The default has none.
    fn append_only_files(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }
}

impl<L: PipelineLogger + ?Sized> PipelineLogger for Box<L> {
    fn log_pipeline_info(
        &mut self,
        config: &serde_json::Value,
        tags: &[String],
        dataset_csv: Option<&std::path::Path>,
    ) -> Result<(), LoggerError> {
        (**self).log_pipeline_info(config, tags, dataset_csv)
    }
    fn log_scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), LoggerError> {
        (**self).log_scalars(step, values)
    }
    fn log_figure(&mut self, title: &str, figure: &Figure, step: u64) -> Result<(), LoggerError> {
        (**self).log_figure(title, figure, step)
    }
    fn flush(&mut self) -> Result<(), LoggerError> {
        (**self).flush()
    }
    fn finish(&mut self, status: RunStatus) -> Result<(), LoggerError> {
        (**self).finish(status)
    }
    fn append_only_files(&self) -> Vec<std::path::PathBuf> {
        (**self).append_only_files()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Writes scalars as CSV lines into any writer: a real, minimal logger.
    struct CsvLogger<W: Write + Send> {
        out: W,
        finished: Option<RunStatus>,
    }
    impl<W: Write + Send> PipelineLogger for CsvLogger<W> {
        fn log_pipeline_info(
            &mut self,
            config: &serde_json::Value,
            _: &[String],
            _: Option<&std::path::Path>,
        ) -> Result<(), LoggerError> {
            writeln!(self.out, "# {config}").map_err(|source| LoggerError::Io {
                path: "<mem>".into(),
                source,
            })
        }
        fn log_scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), LoggerError> {
            for (k, v) in values {
                writeln!(self.out, "{step},{k},{v}").map_err(|source| LoggerError::Io {
                    path: "<mem>".into(),
                    source,
                })?;
            }
            Ok(())
        }
        fn log_figure(&mut self, title: &str, f: &Figure, step: u64) -> Result<(), LoggerError> {
            writeln!(self.out, "{step},{title},png:{}x{}", f.width, f.height).map_err(|source| {
                LoggerError::Io {
                    path: "<mem>".into(),
                    source,
                }
            })
        }
        fn finish(&mut self, status: RunStatus) -> Result<(), LoggerError> {
            self.finished = Some(status);
            self.out.flush().map_err(|source| LoggerError::Io {
                path: "<mem>".into(),
                source,
            })
        }
    }

    #[test]
    fn logger_records_in_order_through_a_box() {
        let mut l: Box<dyn PipelineLogger> = Box::new(CsvLogger {
            out: Vec::new(),
            finished: None,
        });
        l.log_pipeline_info(&serde_json::json!({"lr": 0.1}), &[], None)
            .unwrap();
        l.log_scalars(3, &[("loss", 0.5), ("OVERALL/cmc/1", 1.0)])
            .unwrap();
        l.log_figure(
            "worst",
            &Figure {
                width: 2,
                height: 1,
                png: vec![],
            },
            3,
        )
        .unwrap();
        l.finish(RunStatus::Finished).unwrap();
    }

    #[test]
    fn csv_logger_text() {
        let mut l = CsvLogger {
            out: Vec::new(),
            finished: None,
        };
        l.log_scalars(1, &[("loss", 0.25)]).unwrap();
        l.finish(RunStatus::Failed).unwrap();
        assert_eq!(String::from_utf8(l.out).unwrap(), "1,loss,0.25\n");
        assert_eq!(l.finished, Some(RunStatus::Failed));
    }
}
