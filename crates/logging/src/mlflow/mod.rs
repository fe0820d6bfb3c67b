//! MLflow: a [`PipelineLogger`] over MLflow's REST API that never stops training.
//!
//! Every call only queues data; a background thread creates the experiment (by name, created if
//! missing) and the run, then sends metrics, params and tags with `log-batch` within MLflow's
//! limits, artifacts through the server's artifact proxy and, on finish, the run status.
//! When the server is down or answers errors, the thread retries with exponential backoff while
//! the queue holds unsent data up to a bound (oldest metric points dropped beyond it); the
//! problem is reported once, as an `Err` from the next logger call. The local logger, which the
//! pipeline always runs next to this one, keeps everything.

pub mod client;
mod worker;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oml_interfaces::{Figure, LoggerError, PipelineLogger, RunStatus};

use crate::flatten::flatten_config;
use crate::util::{check_figure, figure_relpath, millis_now};
pub use client::{
    ArtifactTarget, MetricPoint, MlflowClient, MlflowError, RunInfo, limits, tracking_base_url,
};
pub use worker::MlflowStats;
use worker::{ArtifactData, Item, RunSpec, Shared};

/// Environment variable read when the config has no tracking URI (as MLflow's own client).
pub const TRACKING_URI_ENV: &str = "MLFLOW_TRACKING_URI";

/// Settings of an [`MlflowLogger`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlflowConfig {
    /// `http://host:port` of an MLflow tracking server; `None` reads `MLFLOW_TRACKING_URI`.
    pub tracking_uri: Option<String>,
    /// Experiment name; created if missing.
    pub experiment_name: String,
    /// Run name (`mlflow.runName`); MLflow makes one up when `None`.
    pub run_name: Option<String>,
    /// Unsent metric points kept in memory; beyond it the oldest are dropped (default 200 000).
    pub max_pending_points: usize,
    /// Bytes of unsent figures kept in memory; beyond it the oldest are dropped (default 256 MiB).
    pub max_pending_bytes: usize,
    /// Limit of one HTTP request (default 10 s).
    pub request_timeout: Duration,
    /// First retry delay, doubled after each failure (default 250 ms).
    pub initial_backoff: Duration,
    /// Longest retry delay (default 10 s).
    pub max_backoff: Duration,
    /// How long `finish` waits for the queue to drain (default 30 s).
    pub finish_timeout: Duration,
}

impl MlflowConfig {
    /// Defaults for experiment `experiment_name`.
    pub fn new(experiment_name: impl Into<String>) -> Self {
        Self {
            tracking_uri: None,
            experiment_name: experiment_name.into(),
            run_name: None,
            max_pending_points: 200_000,
            max_pending_bytes: 256 << 20,
            request_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            finish_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the tracking URI.
    pub fn with_tracking_uri(mut self, uri: impl Into<String>) -> Self {
        self.tracking_uri = Some(uri.into());
        self
    }

    /// Sets the run name.
    pub fn with_run_name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }

    /// Sets the bound on unsent metric points.
    pub fn with_max_pending_points(mut self, n: usize) -> Self {
        self.max_pending_points = n;
        self
    }

    /// Sets the bound on unsent figure bytes.
    pub fn with_max_pending_bytes(mut self, n: usize) -> Self {
        self.max_pending_bytes = n;
        self
    }

    /// Sets the per-request timeout.
    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Sets the first and the longest retry delay.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets how long `finish` waits for unsent data.
    pub fn with_finish_timeout(mut self, t: Duration) -> Self {
        self.finish_timeout = t;
        self
    }

    /// The tracking URI: the config's, else `MLFLOW_TRACKING_URI`.
    pub fn resolve_tracking_uri(&self) -> Result<String, LoggerError> {
        match &self.tracking_uri {
            Some(u) if !u.trim().is_empty() => Ok(u.trim().to_string()),
            _ => match std::env::var(TRACKING_URI_ENV) {
                Ok(u) if !u.trim().is_empty() => Ok(u.trim().to_string()),
                _ => Err(LoggerError::Invalid {
                    what: "logger.args.tracking_uri".into(),
                    message: format!(
                        "no MLflow tracking URI: set it in the config or in {TRACKING_URI_ENV}"
                    ),
                }),
            },
        }
    }
}

/// Checks a tracking URI given in the config without any network: the error
/// [`MlflowLogger::start`] would give for it (`what` = `logger.args.tracking_uri`), if any.
/// Blank means "read `MLFLOW_TRACKING_URI`" and passes.
pub fn check_tracking_uri(uri: &str) -> Result<(), LoggerError> {
    if uri.trim().is_empty() {
        return Ok(());
    }
    tracking_base_url(uri).map_err(bad_tracking_uri)?;
    Ok(())
}

fn bad_tracking_uri(e: MlflowError) -> LoggerError {
    LoggerError::Invalid {
        what: "logger.args.tracking_uri".into(),
        message: e.to_string(),
    }
}

/// MLflow's rules for metric, param and tag keys: `[\w/.\- :]`, at most 250 characters, and
/// a path that normalises to itself (no empty, `.` or `..` components, no leading `/`).
/// Other characters become `_`.
pub fn sanitize_key(key: &str) -> String {
    let cleaned: String = key
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let parts: Vec<&str> = cleaned
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| if p == "." || p == ".." { "_" } else { p })
        .collect();
    let joined = if parts.is_empty() {
        "_".to_string()
    } else {
        parts.join("/")
    };
    truncate(&joined, limits::KEY_LEN)
}

/// The first `max` characters of `s`.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn remote(message: String) -> LoggerError {
    LoggerError::Remote {
        backend: "mlflow",
        message,
    }
}

/// Logs a pipeline run to an MLflow tracking server. See the [module docs](self).
pub struct MlflowLogger {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    tracking_uri: String,
    finish_timeout: Duration,
    finished: bool,
}

impl std::fmt::Debug for MlflowLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowLogger")
            .field("tracking_uri", &self.tracking_uri)
            .finish()
    }
}

impl MlflowLogger {
    /// Starts the background worker, which creates the run; returns at once, without network.
    ///
    /// Fails only on a config that can never work (no or unsupported tracking URI).
    pub fn start(config: MlflowConfig) -> Result<Self, LoggerError> {
        let uri = config.resolve_tracking_uri()?;
        let client = MlflowClient::new(&uri, config.request_timeout).map_err(bad_tracking_uri)?;
        let shared = Arc::new(Shared::new(
            uri.clone(),
            config.max_pending_points,
            config.max_pending_bytes,
            config.max_backoff,
        ));
        let spec = RunSpec {
            experiment_name: config.experiment_name.clone(),
            run_name: config.run_name.clone(),
            start_ms: millis_now(),
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
        };
        let worker_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("oml-mlflow".into())
            .spawn(move || worker::run(&worker_shared, &client, &spec))
            .map_err(|e| LoggerError::Io {
                path: "<mlflow worker thread>".into(),
                source: e,
            })?;
        Ok(Self {
            shared,
            handle: Some(handle),
            tracking_uri: uri,
            finish_timeout: config.finish_timeout,
            finished: false,
        })
    }

    /// The tracking server's URI.
    pub fn tracking_uri(&self) -> &str {
        &self.tracking_uri
    }

    /// The run, once the worker has created it.
    pub fn run(&self) -> Option<RunInfo> {
        self.shared.lock().run.clone()
    }

    /// Waits up to `timeout` for the run to be created.
    pub fn wait_for_run(&self, timeout: Duration) -> Option<RunInfo> {
        self.shared.wait_run(Instant::now() + timeout)
    }

    /// What has been sent, dropped and is pending.
    pub fn stats(&self) -> MlflowStats {
        self.shared.lock().stats.clone()
    }

    /// Waits up to `timeout` until everything queued so far is sent; true when it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.wait_drained(Instant::now() + timeout)
    }

    fn report(&self) -> Result<(), LoggerError> {
        match self.shared.take_report() {
            Some(m) => Err(remote(m)),
            None => Ok(()),
        }
    }

    fn check_open(&self) -> Result<(), LoggerError> {
        if self.finished {
            return Err(LoggerError::Invalid {
                what: "mlflow logger".into(),
                message: "the run is already finished".into(),
            });
        }
        Ok(())
    }
}

impl PipelineLogger for MlflowLogger {
    /// Params: the config flattened with `/` (as OML), keys made valid, values cut at 6000
    /// characters; tags: each `(tag, "tag")` as OML; artifacts `config.json` and
    /// `dataset/<file name>`.
    fn log_pipeline_info(
        &mut self,
        config: &serde_json::Value,
        tags: &[String],
        dataset_csv: Option<&Path>,
    ) -> Result<(), LoggerError> {
        self.check_open()?;
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        for (k, v) in flatten_config(config, "/") {
            let key = sanitize_key(&k);
            if seen.insert(key.clone()) {
                items.push(Item::Param(key, truncate(&v, limits::PARAM_VALUE_LEN)));
            }
        }
        let mut seen = HashSet::new();
        for t in tags {
            let key = sanitize_key(t);
            if seen.insert(key.clone()) {
                items.push(Item::Tag(key, "tag".into()));
            }
        }
        let pretty = serde_json::to_vec_pretty(config).map_err(|e| LoggerError::Invalid {
            what: "config".into(),
            message: e.to_string(),
        })?;
        items.push(Item::Artifact {
            path: "config.json".into(),
            data: ArtifactData::Bytes(pretty),
        });
        if let Some(p) = dataset_csv {
            let name = p.file_name().map_or_else(
                || "dataset.csv".to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            items.push(Item::Artifact {
                path: format!("dataset/{}", crate::util::safe_components(&name).join("_")),
                data: ArtifactData::File(p.to_path_buf()),
            });
        }
        self.shared.push(items);
        self.report()
    }

    fn log_scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), LoggerError> {
        self.check_open()?;
        let ts = millis_now();
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.shared.push(values.iter().map(|(k, v)| {
            Item::Metric(MetricPoint {
                key: sanitize_key(k),
                value: *v,
                timestamp_ms: ts,
                step,
            })
        }));
        self.report()
    }

    /// Stores the PNG as the artifact `figures/<title>/step_<step>.png`.
    fn log_figure(&mut self, title: &str, figure: &Figure, step: u64) -> Result<(), LoggerError> {
        self.check_open()?;
        check_figure(title, figure)?;
        let path = format!("figures/{}", figure_relpath(title, step));
        self.shared.push([Item::Artifact {
            path,
            data: ArtifactData::Bytes(figure.png.clone()),
        }]);
        self.report()
    }

    /// Queues the status (`FINISHED`, `FAILED`, `KILLED`), waits up to the finish timeout for
    /// the queue to drain, then stops the worker. Data still unsent is reported in the error.
    fn finish(&mut self, status: RunStatus) -> Result<(), LoggerError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.shared.push([Item::Status {
            status,
            end_ms: millis_now(),
        }]);
        let drained = self
            .shared
            .wait_drained(Instant::now() + self.finish_timeout);
        self.shared.stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let report = self.shared.take_report();
        let st = self.shared.lock();
        if let Some(d) = &st.disabled {
            return Err(remote(d.clone()));
        }
        if !drained || !st.items.is_empty() {
            return Err(remote(format!(
                "{} metric points and {} other items were not delivered to MLflow at {} within {:?} \
                 (the local log has them){}",
                st.stats.pending_points,
                st.items.len().saturating_sub(st.stats.pending_points),
                self.tracking_uri,
                self.finish_timeout,
                report
                    .map(|r| format!("; last problem: {r}"))
                    .unwrap_or_default()
            )));
        }
        match report {
            Some(r) => Err(remote(r)),
            None => Ok(()),
        }
    }
}

impl Drop for MlflowLogger {
    fn drop(&mut self) {
        if !self.finished {
            // Not finished explicitly: a panic means FAILED, otherwise the run was abandoned.
            self.finish_timeout = self.finish_timeout.min(Duration::from_secs(5));
            let status = if std::thread::panicking() {
                RunStatus::Failed
            } else {
                RunStatus::Killed
            };
            let _ = self.finish(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        assert_eq!(sanitize_key("OVERALL/cmc/1"), "OVERALL/cmc/1");
        assert_eq!(sanitize_key("a|b*c"), "a_b_c");
        assert_eq!(sanitize_key("/a//b/./../c/"), "a/b/_/_/c");
        assert_eq!(sanitize_key(""), "_");
        assert_eq!(sanitize_key("Learning Rate"), "Learning Rate");
        assert_eq!(sanitize_key(&"k".repeat(300)).len(), limits::KEY_LEN);
        assert_eq!(truncate("héllo", 2), "hé");
    }

    #[test]
    fn tracking_uri_from_config_wins() {
        let c = MlflowConfig::new("e").with_tracking_uri(" http://127.0.0.1:1 ");
        assert_eq!(c.resolve_tracking_uri().unwrap(), "http://127.0.0.1:1");
    }

    #[test]
    fn tracking_uri_check_matches_start() {
        check_tracking_uri("http://127.0.0.1:1").unwrap();
        check_tracking_uri("  ").unwrap();
        for uri in ["file:///tmp/mlruns", "databricks", "http://"] {
            let checked = check_tracking_uri(uri).unwrap_err().to_string();
            let started = MlflowLogger::start(MlflowConfig::new("e").with_tracking_uri(uri))
                .err()
                .map(|e| e.to_string());
            assert_eq!(Some(checked), started, "{uri}");
        }
    }
}
