//! A thin blocking client of MLflow's REST API (`/api/2.0/mlflow/...`) and its artifact proxy
//! (`/api/2.0/mlflow-artifacts/artifacts/...`), over `ureq`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oml_interfaces::RunStatus;
use serde_json::{Value, json};

/// MLflow's batch limits (`mlflow/utils/validation.py`).
pub mod limits {
    /// Metrics per `log-batch` request.
    pub const METRICS_PER_BATCH: usize = 1000;
    /// Params per `log-batch` request; tags have the same limit.
    pub const PARAMS_TAGS_PER_BATCH: usize = 100;
    /// Metrics + params + tags per request.
    pub const ENTITIES_PER_BATCH: usize = 1000;
    /// JSON size of one request, kept under MLflow's 1 MB with room for the envelope.
    pub const BATCH_BYTES: usize = 900_000;
    /// Length of a param value.
    pub const PARAM_VALUE_LEN: usize = 6000;
    /// Length of a tag value.
    pub const TAG_VALUE_LEN: usize = 8000;
    /// Length of a metric, param or tag key.
    pub const KEY_LEN: usize = 250;
}

/// Why an MLflow request failed.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The tracking URI cannot be used by this client.
    #[error("MLflow tracking URI {uri:?} is not supported: {reason}")]
    UnsupportedUri {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// No answer: connection refused, timeout, DNS, …
    #[error("{method} {url}: {message}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{method} {url}: HTTP {status} {error_code}: {message}")]
    Api {
        /// HTTP method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`), or empty.
        error_code: String,
        /// MLflow's message or the body.
        message: String,
    },
    /// The server answered 2xx with a body this client does not understand.
    #[error("{method} {url}: unexpected answer: {message}")]
    BadResponse {
        /// HTTP method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A local artifact file could not be read or written.
    #[error("artifact {path}: {source}")]
    Artifact {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl MlflowError {
    /// Whether trying again later can succeed (no answer, 5xx, 429, 408).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::BadResponse { .. } => true,
            Self::Api { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::UnsupportedUri { .. } | Self::Artifact { .. } => false,
        }
    }
}

/// One metric value as MLflow stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// Metric key.
    pub key: String,
    /// Value (non-finite values are sent as `"NaN"`, `"Infinity"`, `"-Infinity"`).
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Step.
    pub step: i64,
}

/// A created run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// Its experiment's id.
    pub experiment_id: String,
    /// Where its artifacts live (`mlflow-artifacts:/…`, a local path, `s3://…`).
    pub artifact_uri: String,
}

/// How a run's artifacts can be written by this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactTarget {
    /// Through the server's artifact proxy, under this path prefix.
    Proxy(String),
    /// Straight into a local directory (the server stores artifacts on this machine).
    Local(PathBuf),
    /// Somewhere this client cannot write (`s3://`, `gs://`, …).
    Unsupported(String),
}

impl RunInfo {
    /// Where to write artifacts, from [`artifact_uri`](Self::artifact_uri).
    pub fn artifact_target(&self) -> ArtifactTarget {
        let uri = self.artifact_uri.as_str();
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts:/1/<run>/artifacts` or `mlflow-artifacts://host:port/1/...`.
            let path = match rest.strip_prefix("//") {
                Some(with_host) => with_host.find('/').map_or("", |i| &with_host[i..]),
                None => rest,
            };
            return ArtifactTarget::Proxy(path.trim_matches('/').to_string());
        }
        if let Some(p) = uri.strip_prefix("file://") {
            return ArtifactTarget::Local(PathBuf::from(p));
        }
        if uri.starts_with('/') {
            return ArtifactTarget::Local(PathBuf::from(uri));
        }
        ArtifactTarget::Unsupported(uri.to_string())
    }
}

/// Percent-encodes everything except RFC 3986 unreserved characters (and `/` when `keep_slash`).
pub(crate) fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn json_value(v: f64) -> Value {
    // JSON has no NaN/Infinity; protobuf's JSON mapping (which MLflow parses) takes these strings.
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

fn pairs(kv: &[(String, String)]) -> Vec<Value> {
    kv.iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect()
}

/// The base URL of the tracking server at `tracking_uri` (trimmed, no trailing `/`), or why this
/// client cannot use it: only `http://host…`, and `https://host…` with the crate feature `tls`.
///
/// Checks the text only (no network); [`MlflowClient::new`] and the `logger` config check both
/// use it.
pub fn tracking_base_url(tracking_uri: &str) -> Result<String, MlflowError> {
    let uri = tracking_uri.trim();
    let unsupported = |reason: &str| MlflowError::UnsupportedUri {
        uri: uri.to_string(),
        reason: reason.to_string(),
    };
    if uri.starts_with("https://") {
        if !cfg!(feature = "tls") {
            return Err(unsupported("https needs oml-logging's `tls` feature"));
        }
    } else if !uri.starts_with("http://") {
        return Err(unsupported(
            "only http(s):// tracking servers are supported (not file stores, databricks or sqlite URIs); \
             start one with `mlflow server`",
        ));
    }
    let base = uri.trim_end_matches('/').to_string();
    if base.len() <= "https://".len() {
        return Err(unsupported("no host"));
    }
    Ok(base)
}

/// A client for one tracking server.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
}

impl MlflowClient {
    /// A client of the server at `tracking_uri` (`http://host:port`, or `https://…` with the
    /// crate feature `tls`), each request limited to `timeout`.
    ///
    /// Credentials come from `MLFLOW_TRACKING_TOKEN` (bearer) or `MLFLOW_TRACKING_USERNAME` and
    /// `MLFLOW_TRACKING_PASSWORD` (basic), as in MLflow's Python client.
    pub fn new(tracking_uri: &str, timeout: Duration) -> Result<Self, MlflowError> {
        let base = tracking_base_url(tracking_uri)?;
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build();
        let auth = match std::env::var("MLFLOW_TRACKING_TOKEN") {
            Ok(t) if !t.is_empty() => Some(format!("Bearer {t}")),
            _ => match (
                std::env::var("MLFLOW_TRACKING_USERNAME"),
                std::env::var("MLFLOW_TRACKING_PASSWORD"),
            ) {
                (Ok(u), Ok(p)) if !u.is_empty() => {
                    Some(format!("Basic {}", base64(format!("{u}:{p}").as_bytes())))
                }
                _ => None,
            },
        };
        Ok(Self {
            agent: config.into(),
            base,
            auth,
        })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn finish(
        method: &'static str,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, MlflowError> {
        let mut resp = result.map_err(|e| MlflowError::Transport {
            method,
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| MlflowError::Transport {
                method,
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let parsed: Option<Value> = if body.trim().is_empty() {
            Some(json!({}))
        } else {
            serde_json::from_str(&body).ok()
        };
        if !(200..300).contains(&status) {
            let (error_code, message) = match &parsed {
                Some(v) => (
                    v["error_code"].as_str().unwrap_or("").to_string(),
                    v["message"]
                        .as_str()
                        .map_or_else(|| body.clone(), str::to_string),
                ),
                None => (String::new(), body.chars().take(500).collect()),
            };
            return Err(MlflowError::Api {
                method,
                url: url.to_string(),
                status,
                error_code,
                message,
            });
        }
        parsed.ok_or_else(|| MlflowError::BadResponse {
            method,
            url: url.to_string(),
            message: format!("not JSON: {}", body.chars().take(200).collect::<String>()),
        })
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        Self::finish("POST", &url, req.send(body.to_string()))
    }

    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v, false)))
            .collect();
        let url = format!("{}/api/2.0/mlflow/{endpoint}?{}", self.base, q.join("&"));
        let mut req = self.agent.get(&url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        Self::finish("GET", &url, req.call())
    }

    fn bad(endpoint: &str, message: &str) -> MlflowError {
        MlflowError::BadResponse {
            method: "POST",
            url: endpoint.to_string(),
            message: message.to_string(),
        }
    }

    /// The id of the experiment called `name`, if it exists.
    pub fn get_experiment_by_name(&self, name: &str) -> Result<Option<String>, MlflowError> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(v) => v["experiment"]["experiment_id"]
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| Self::bad("experiments/get-by-name", "no experiment.experiment_id")),
            Err(MlflowError::Api { error_code, .. }) if error_code == "RESOURCE_DOES_NOT_EXIST" => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the experiment `name`; returns its id.
    pub fn create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        let v = self.post("experiments/create", &json!({"name": name}))?;
        v["experiment_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Self::bad("experiments/create", "no experiment_id"))
    }

    /// The id of experiment `name`, created if missing (another client creating it meanwhile is
    /// handled).
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        if let Some(id) = self.get_experiment_by_name(name)? {
            return Ok(id);
        }
        match self.create_experiment(name) {
            Ok(id) => Ok(id),
            Err(MlflowError::Api { error_code, .. }) if error_code == "RESOURCE_ALREADY_EXISTS" => {
                self.get_experiment_by_name(name)?.ok_or_else(|| {
                    Self::bad(
                        "experiments/get-by-name",
                        "experiment vanished after creation",
                    )
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a run in `experiment_id`.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        start_time_ms: i64,
        tags: &[(String, String)],
    ) -> Result<RunInfo, MlflowError> {
        let mut body = json!({"experiment_id": experiment_id, "start_time": start_time_ms, "tags": pairs(tags)});
        if let Some(n) = run_name {
            body["run_name"] = json!(n);
        }
        let v = self.post("runs/create", &body)?;
        let info = &v["run"]["info"];
        let field = |k: &str| {
            info[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Self::bad("runs/create", &format!("no run.info.{k}")))
        };
        Ok(RunInfo {
            run_id: field("run_id")?,
            experiment_id: field("experiment_id")?,
            artifact_uri: field("artifact_uri")?,
        })
    }

    /// Logs metrics, params and tags in one request. The caller keeps within [`limits`].
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[MetricPoint],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        let metrics: Vec<Value> = metrics
            .iter()
            .map(|m| json!({"key": m.key, "value": json_value(m.value), "timestamp": m.timestamp_ms, "step": m.step}))
            .collect();
        let body = json!({"run_id": run_id, "metrics": metrics, "params": pairs(params), "tags": pairs(tags)});
        self.post("runs/log-batch", &body).map(|_| ())
    }

    /// Sets the run's status and end time.
    pub fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time_ms: i64,
    ) -> Result<(), MlflowError> {
        let body = json!({"run_id": run_id, "status": crate::status_name(status), "end_time": end_time_ms});
        self.post("runs/update", &body).map(|_| ())
    }

    /// Stores `body` as the artifact `rel_path` (with `/`) of `run`.
    pub fn upload_artifact(
        &self,
        run: &RunInfo,
        rel_path: &str,
        body: &[u8],
    ) -> Result<(), MlflowError> {
        match run.artifact_target() {
            ArtifactTarget::Proxy(prefix) => {
                let url = format!(
                    "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}",
                    self.base,
                    percent_encode(&prefix, true),
                    percent_encode(rel_path, true)
                );
                let mut req = self.agent.put(&url).header("Content-Type", "application/octet-stream");
                if let Some(a) = &self.auth {
                    req = req.header("Authorization", a);
                }
                Self::finish("PUT", &url, req.send(body)).map(|_| ())
            }
            ArtifactTarget::Local(dir) => write_local(&dir, rel_path, body),
            ArtifactTarget::Unsupported(uri) => Err(MlflowError::UnsupportedUri {
                uri,
                reason: "artifacts can go through the server's proxy (`mlflow server`, serving artifacts) or to a local path only".into(),
            }),
        }
    }
}

fn write_local(dir: &Path, rel_path: &str, body: &[u8]) -> Result<(), MlflowError> {
    let path = rel_path
        .split('/')
        .fold(dir.to_path_buf(), |p, c| p.join(c));
    let err = |source| MlflowError::Artifact {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::write(&path, body).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_targets() {
        let run = |uri: &str| RunInfo {
            run_id: "r".into(),
            experiment_id: "1".into(),
            artifact_uri: uri.into(),
        };
        assert_eq!(
            run("mlflow-artifacts:/1/r/artifacts").artifact_target(),
            ArtifactTarget::Proxy("1/r/artifacts".into())
        );
        assert_eq!(
            run("mlflow-artifacts://h:5000/1/r/artifacts").artifact_target(),
            ArtifactTarget::Proxy("1/r/artifacts".into())
        );
        assert_eq!(
            run("file:///tmp/a").artifact_target(),
            ArtifactTarget::Local("/tmp/a".into())
        );
        assert_eq!(
            run("/tmp/a").artifact_target(),
            ArtifactTarget::Local("/tmp/a".into())
        );
        assert!(matches!(
            run("s3://b/k").artifact_target(),
            ArtifactTarget::Unsupported(_)
        ));
    }

    #[test]
    fn uris_and_encoding() {
        assert!(matches!(
            MlflowClient::new("file:///tmp/mlruns", Duration::from_secs(1)),
            Err(MlflowError::UnsupportedUri { .. })
        ));
        assert!(matches!(
            MlflowClient::new("databricks", Duration::from_secs(1)),
            Err(MlflowError::UnsupportedUri { .. })
        ));
        assert_eq!(
            MlflowClient::new("http://h:1/", Duration::from_secs(1))
                .unwrap()
                .base_url(),
            "http://h:1"
        );
        assert_eq!(percent_encode("top 5/worst%", true), "top%205/worst%25");
        assert_eq!(percent_encode("a/b c", false), "a%2Fb%20c");
        assert_eq!(json_value(f64::NAN), json!("NaN"));
        assert_eq!(json_value(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(json_value(0.5), json!(0.5));
    }
}
