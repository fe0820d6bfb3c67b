//! Sending to several loggers at once, and sharing one logger between owners.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use oml_interfaces::{Figure, LoggerError, PipelineLogger, RunStatus};

/// Sends every call to each of its loggers, in order. A failing logger never keeps the others
/// from getting the call; the errors are returned together afterwards.
#[derive(Default)]
pub struct FanoutLogger {
    loggers: Vec<(String, Box<dyn PipelineLogger>)>,
}

impl std::fmt::Debug for FanoutLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutLogger")
            .field("loggers", &self.names())
            .finish()
    }
}

impl FanoutLogger {
    /// No loggers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `logger` under `name` (used in error messages).
    pub fn with(mut self, name: &str, logger: impl PipelineLogger + 'static) -> Self {
        self.push(name, Box::new(logger));
        self
    }

    /// Adds a boxed logger under `name`.
    pub fn push(&mut self, name: &str, logger: Box<dyn PipelineLogger>) {
        self.loggers.push((name.to_string(), logger));
    }

    /// The loggers' names, in call order.
    pub fn names(&self) -> Vec<&str> {
        self.loggers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// How many loggers there are.
    pub fn len(&self) -> usize {
        self.loggers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.loggers.is_empty()
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut dyn PipelineLogger) -> Result<(), LoggerError>,
    ) -> Result<(), LoggerError> {
        let mut errors: Vec<(String, LoggerError)> = Vec::new();
        for (name, l) in &mut self.loggers {
            if let Err(e) = f(l.as_mut()) {
                errors.push((name.clone(), e));
            }
        }
        if errors.len() <= 1 {
            return errors.pop().map_or(Ok(()), |(_, e)| Err(e));
        }
        Err(LoggerError::Remote {
            backend: "fan-out",
            message: errors
                .iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }
}

impl PipelineLogger for FanoutLogger {
    fn log_pipeline_info(
        &mut self,
        config: &serde_json::Value,
        tags: &[String],
        dataset_csv: Option<&Path>,
    ) -> Result<(), LoggerError> {
        self.each(|l| l.log_pipeline_info(config, tags, dataset_csv))
    }

    fn log_scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), LoggerError> {
        self.each(|l| l.log_scalars(step, values))
    }

    fn log_figure(&mut self, title: &str, figure: &Figure, step: u64) -> Result<(), LoggerError> {
        self.each(|l| l.log_figure(title, figure, step))
    }

    fn flush(&mut self) -> Result<(), LoggerError> {
        self.each(|l| l.flush())
    }

    fn finish(&mut self, status: RunStatus) -> Result<(), LoggerError> {
        self.each(|l| l.finish(status))
    }

    fn append_only_files(&self) -> Vec<PathBuf> {
        self.loggers
            .iter()
            .flat_map(|(_, l)| l.append_only_files())
            .collect()
    }
}

/// A cloneable handle to one logger, so the Learner bridge and the pipeline code (config,
/// figures, finish) can log to the same place.
#[derive(Clone)]
pub struct SharedLogger {
    inner: Arc<Mutex<Box<dyn PipelineLogger>>>,
}

impl std::fmt::Debug for SharedLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLogger")
    }
}

impl SharedLogger {
    /// Wraps `logger`.
    pub fn new(logger: impl PipelineLogger + 'static) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Box::new(logger))),
        }
    }

    /// Runs `f` with the logger locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut dyn PipelineLogger) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.as_mut())
    }
}

impl PipelineLogger for SharedLogger {
    fn log_pipeline_info(
        &mut self,
        config: &serde_json::Value,
        tags: &[String],
        dataset_csv: Option<&Path>,
    ) -> Result<(), LoggerError> {
        self.with(|l| l.log_pipeline_info(config, tags, dataset_csv))
    }

    fn log_scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), LoggerError> {
        self.with(|l| l.log_scalars(step, values))
    }

    fn log_figure(&mut self, title: &str, figure: &Figure, step: u64) -> Result<(), LoggerError> {
        self.with(|l| l.log_figure(title, figure, step))
    }

    fn flush(&mut self) -> Result<(), LoggerError> {
        self.with(|l| l.flush())
    }

    fn finish(&mut self, status: RunStatus) -> Result<(), LoggerError> {
        self.with(|l| l.finish(status))
    }

    fn append_only_files(&self) -> Vec<PathBuf> {
        self.with(|l| l.append_only_files())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records calls; fails `log_scalars` when told to.
    struct Probe {
        calls: Arc<Mutex<Vec<String>>>,
        fail: bool,
    }

    impl PipelineLogger for Probe {
        fn log_pipeline_info(
            &mut self,
            _: &serde_json::Value,
            t: &[String],
            _: Option<&Path>,
        ) -> Result<(), LoggerError> {
            self.calls.lock().unwrap().push(format!("info {}", t.len()));
            Ok(())
        }
        fn log_scalars(&mut self, step: u64, v: &[(&str, f64)]) -> Result<(), LoggerError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("scalars {step} {}", v.len()));
            if self.fail {
                Err(LoggerError::Remote {
                    backend: "probe",
                    message: "down".into(),
                })
            } else {
                Ok(())
            }
        }
        fn log_figure(&mut self, t: &str, _: &Figure, step: u64) -> Result<(), LoggerError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("figure {t} {step}"));
            Ok(())
        }
        fn finish(&mut self, s: RunStatus) -> Result<(), LoggerError> {
            self.calls.lock().unwrap().push(format!("finish {s:?}"));
            Ok(())
        }
    }

    #[test]
    fn every_logger_gets_every_call_even_after_a_failure() {
        let (a, b, c) = (Arc::default(), Arc::default(), Arc::default());
        let mut f = FanoutLogger::new()
            .with(
                "a",
                Probe {
                    calls: Arc::clone(&a),
                    fail: true,
                },
            )
            .with(
                "b",
                Probe {
                    calls: Arc::clone(&b),
                    fail: false,
                },
            )
            .with(
                "c",
                Probe {
                    calls: Arc::clone(&c),
                    fail: true,
                },
            );
        assert_eq!(f.names(), vec!["a", "b", "c"]);
        let err = f.log_scalars(3, &[("x", 1.0)]).unwrap_err();
        assert!(
            matches!(&err, LoggerError::Remote { backend: "fan-out", message } if message.contains("a: probe: down") && message.contains("c: probe: down"))
        );
        f.log_pipeline_info(&serde_json::json!({}), &["t".into()], None)
            .unwrap();
        f.finish(RunStatus::Finished).unwrap();
        for calls in [&a, &b, &c] {
            assert_eq!(
                *calls.lock().unwrap(),
                vec!["scalars 3 1", "info 1", "finish Finished"]
            );
        }
    }

    #[test]
    fn shared_handles_reach_one_logger() {
        let calls = Arc::default();
        let shared = SharedLogger::new(Probe {
            calls: Arc::clone(&calls),
            fail: false,
        });
        let mut a = shared.clone();
        let mut b = shared;
        a.log_scalars(1, &[]).unwrap();
        b.log_figure(
            "f",
            &Figure {
                width: 1,
                height: 1,
                png: vec![],
            },
            2,
        )
        .unwrap();
        assert_eq!(*calls.lock().unwrap(), vec!["scalars 1 0", "figure f 2"]);
    }
}
