//! Building a pipeline's loggers from the `logger: {name, args}` section of an OML config.
//!
//! [`LoggerConfig::parse`] checks the section without touching the file system, so a pipeline
//! can reject it before creating its run folder; [`LoggerConfig::build`] creates the loggers.
//! [`loggers_from_config`] does both.

use std::path::{Path, PathBuf};

use oml_interfaces::LoggerError;
use serde_json::Value;

use crate::fanout::FanoutLogger;
use crate::local::LocalLogger;
use crate::mlflow::{MlflowConfig, MlflowLogger, check_tracking_uri};
use crate::tensorboard::TensorBoardLogger;

/// Logger names OML has that oml-rs does not support (they need cloud accounts).
pub const UNSUPPORTED_LOGGERS: [&str; 3] = ["wandb", "neptune", "clearml"];

fn bad(what: &str, message: impl Into<String>) -> LoggerError {
    LoggerError::Invalid {
        what: what.into(),
        message: message.into(),
    }
}

fn opt_str(
    args: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<String>, LoggerError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(bad(
            &format!("logger.args.{key}"),
            format!("expected a string, got {other}"),
        )),
    }
}

fn check_keys(
    args: &serde_json::Map<String, Value>,
    allowed: &[&str],
    logger: &str,
) -> Result<(), LoggerError> {
    for k in args.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(bad(
                &format!("logger.args.{k}"),
                format!(
                    "unknown argument of the {logger} logger; supported: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The `logger` section of an OML config, checked (names, argument names and types) but not yet
/// built.
///
/// [`parse`](Self::parse) touches neither the file system nor the network, so a pipeline can
/// reject a bad section before it creates its run folder; [`build`](Self::build) then creates
/// the loggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggerConfig {
    /// TensorBoard (OML's default), writing to `<run_dir>/<save_dir>/<name>/<version>`.
    Tensorboard {
        /// Relative to the run folder; `None` means `tensorboard`.
        save_dir: Option<String>,
        /// Sub-folder under `save_dir`; `None` (or empty in the config) means none.
        name: Option<String>,
        /// Sub-folder under `name`, already resolved: an integer `n` in the config becomes
        /// `version_<n>` as in Lightning, a string is kept.
        version: Option<String>,
    },
    /// MLflow.
    Mlflow {
        /// Experiment name (`Default` unless given); created if missing.
        experiment_name: String,
        /// `http(s)://` tracking server; `None` (or blank) reads `MLFLOW_TRACKING_URI` when built.
        tracking_uri: Option<String>,
        /// Run name; MLflow makes one up when `None`.
        run_name: Option<String>,
    },
}

impl Default for LoggerConfig {
    /// TensorBoard in `<run_dir>/tensorboard`, as with no `logger` section.
    fn default() -> Self {
        Self::Tensorboard {
            save_dir: None,
            name: None,
            version: None,
        }
    }
}

impl LoggerConfig {
    /// Parses OML's `logger: {name, args}` section; absent or `null` gives the default
    /// (TensorBoard in `<run_dir>/tensorboard`).
    ///
    /// - `{name: tensorboard, args: {save_dir, name, version}}`: all optional;
    /// - `{name: mlflow, args: {experiment_name, tracking_uri, run_name}}`: a `tracking_uri`
    ///   that the MLflow client cannot use (not `http(s)://`) is rejected here already;
    /// - `wandb`, `neptune`, `clearml`: an error saying they are not supported.
    ///
    /// Errors are [`LoggerError::Invalid`] with `what` naming the field: `logger`,
    /// `logger.name`, `logger.args` or `logger.args.<key>`.
    pub fn parse(section: Option<&Value>) -> Result<Self, LoggerError> {
        let section = match section {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(bad(
                    "logger",
                    format!("expected {{name, args}}, got {other}"),
                ));
            }
        };
        let name = match section.get("name") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(bad("logger.name", "missing (tensorboard or mlflow)")),
        };
        let empty = serde_json::Map::new();
        let args = match section.get("args") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(a)) => a,
            Some(other) => {
                return Err(bad(
                    "logger.args",
                    format!("expected a mapping, got {other}"),
                ));
            }
        };
        match name {
            "tensorboard" => {
                check_keys(args, &["save_dir", "name", "version"], name)?;
                let save_dir = opt_str(args, "save_dir")?;
                let name = opt_str(args, "name")?.filter(|n| !n.is_empty());
                let version = match args.get("version") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => Some(format!("version_{n}")),
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        return Err(bad(
                            "logger.args.version",
                            format!("expected an integer or a string, got {other}"),
                        ));
                    }
                };
                Ok(Self::Tensorboard {
                    save_dir,
                    name,
                    version,
                })
            }
            "mlflow" => {
                check_keys(args, &["experiment_name", "tracking_uri", "run_name"], name)?;
                let experiment_name =
                    opt_str(args, "experiment_name")?.unwrap_or_else(|| "Default".into());
                let tracking_uri = opt_str(args, "tracking_uri")?;
                if let Some(uri) = &tracking_uri {
                    check_tracking_uri(uri)?;
                }
                let run_name = opt_str(args, "run_name")?;
                Ok(Self::Mlflow {
                    experiment_name,
                    tracking_uri,
                    run_name,
                })
            }
            n if UNSUPPORTED_LOGGERS.contains(&n) => Err(bad(
                "logger.name",
                format!(
                    "{n:?} is not supported by oml-rs (it needs a cloud account); use tensorboard or mlflow, see docs/logging.md"
                ),
            )),
            n => Err(bad(
                "logger.name",
                format!("unknown logger {n:?}; supported: tensorboard, mlflow"),
            )),
        }
    }

    /// The backend's name in the [`FanoutLogger`]: `"tensorboard"` or `"mlflow"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tensorboard { .. } => "tensorboard",
            Self::Mlflow { .. } => "mlflow",
        }
    }

    /// The loggers of a run: always a [`LocalLogger`] in `run_dir` (named `"local"`), plus this
    /// backend (named by [`name`](Self::name)). Creates `run_dir` and the TensorBoard folder, or
    /// starts the MLflow worker (which fails here only without a tracking URI, in the config or
    /// in `MLFLOW_TRACKING_URI`, or with one the client cannot use).
    pub fn build(&self, run_dir: &Path) -> Result<FanoutLogger, LoggerError> {
        self.build_continuing(run_dir, &[])
    }

    /// [`build`](Self::build) for a run that resumes: TensorBoard appends to the event file
    /// among `previous` (the files the interrupted run appended to) that lies in its folder,
    /// instead of starting a second file that would repeat steps.
    pub fn build_continuing(
        &self,
        run_dir: &Path,
        previous: &[PathBuf],
    ) -> Result<FanoutLogger, LoggerError> {
        let local = LocalLogger::new(run_dir)?;
        let mut out = FanoutLogger::new().with("local", local);
        match self {
            Self::Tensorboard {
                save_dir,
                name,
                version,
            } => {
                let mut dir: PathBuf = run_dir.join(save_dir.as_deref().unwrap_or("tensorboard"));
                if let Some(n) = name {
                    dir = dir.join(n);
                }
                if let Some(v) = version {
                    dir = dir.join(v);
                }
                let earlier = previous.iter().find(|p| {
                    p.parent() == Some(dir.as_path())
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
                });
                let tensorboard = match earlier {
                    Some(file) => TensorBoardLogger::continuing(file)?,
                    None => TensorBoardLogger::new(dir)?,
                };
                out.push(self.name(), Box::new(tensorboard));
            }
            Self::Mlflow {
                experiment_name,
                tracking_uri,
                run_name,
            } => {
                let mut cfg = MlflowConfig::new(experiment_name.clone());
                cfg.tracking_uri.clone_from(tracking_uri);
                cfg.run_name.clone_from(run_name);
                out.push(self.name(), Box::new(MlflowLogger::start(cfg)?));
            }
        }
        Ok(out)
    }
}

/// The loggers of a pipeline run from OML's `logger` section:
/// `LoggerConfig::parse(logger)?.build(run_dir)`; see [`LoggerConfig`].
///
/// To reject a bad section before the run folder exists, call [`LoggerConfig::parse`] first and
/// [`LoggerConfig::build`] later.
pub fn loggers_from_config(
    logger: Option<&Value>,
    run_dir: &Path,
) -> Result<FanoutLogger, LoggerError> {
    LoggerConfig::parse(logger)?.build(run_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_is_local_plus_tensorboard() {
        let dir = tempfile::tempdir().unwrap();
        let f = loggers_from_config(None, dir.path()).unwrap();
        assert_eq!(f.names(), vec!["local", "tensorboard"]);
        assert_eq!(
            crate::tensorboard::event_files(&dir.path().join("tensorboard"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn tensorboard_paths_follow_lightning() {
        let dir = tempfile::tempdir().unwrap();
        let cfg =
            json!({"name": "tensorboard", "args": {"save_dir": "tb", "name": "exp", "version": 3}});
        loggers_from_config(Some(&cfg), dir.path()).unwrap();
        assert_eq!(
            crate::tensorboard::event_files(&dir.path().join("tb/exp/version_3"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn unsupported_and_bad_sections_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        for (cfg, what, needle) in [
            (json!({"name": "wandb"}), "logger.name", "not supported"),
            (
                json!({"name": "neptune", "args": {}}),
                "logger.name",
                "not supported",
            ),
            (json!({"name": "clearml"}), "logger.name", "not supported"),
            (json!({"name": "comet"}), "logger.name", "unknown logger"),
            (json!({"args": {}}), "logger.name", "missing"),
            (
                json!({"name": "mlflow", "args": {"log_model": true}}),
                "logger.args.log_model",
                "unknown argument",
            ),
            (
                json!({"name": "mlflow", "args": {"tracking_uri": "file:///tmp/x"}}),
                "logger.args.tracking_uri",
                "not supported",
            ),
            (
                json!({"name": "mlflow", "args": {"tracking_uri": "databricks"}}),
                "logger.args.tracking_uri",
                "not supported",
            ),
            (
                json!({"name": "mlflow", "args": {"run_name": ["a"]}}),
                "logger.args.run_name",
                "expected a string",
            ),
            (
                json!({"name": "tensorboard", "args": {"version": true}}),
                "logger.args.version",
                "expected an integer or a string",
            ),
            (
                json!({"name": "tensorboard", "args": [1]}),
                "logger.args",
                "expected a mapping",
            ),
            (json!(["tensorboard"]), "logger", "expected"),
        ] {
            let check = |result: Result<(), LoggerError>, via: &str| match result {
                Err(LoggerError::Invalid { what: w, message }) => {
                    assert_eq!(w, what, "{via} {cfg}");
                    assert!(message.contains(needle), "{via} {cfg}: {message}");
                }
                other => panic!("{via} {cfg}: expected Invalid, got {other:?}"),
            };
            check(LoggerConfig::parse(Some(&cfg)).map(drop), "parse");
            check(
                loggers_from_config(Some(&cfg), &run_dir).map(drop),
                "loggers_from_config",
            );
            // The section is rejected before anything is created.
            assert!(!run_dir.exists(), "{cfg}");
        }
    }

    #[test]
    fn parse_gives_typed_values() {
        assert_eq!(LoggerConfig::parse(None).unwrap(), LoggerConfig::default());
        assert_eq!(
            LoggerConfig::parse(Some(&Value::Null)).unwrap(),
            LoggerConfig::Tensorboard {
                save_dir: None,
                name: None,
                version: None
            }
        );
        let mlflow = json!({"name": "mlflow", "args": {
            "experiment_name": "cars", "tracking_uri": "http://127.0.0.1:5000", "run_name": "r1"}});
        let parsed = LoggerConfig::parse(Some(&mlflow)).unwrap();
        assert_eq!(
            parsed,
            LoggerConfig::Mlflow {
                experiment_name: "cars".into(),
                tracking_uri: Some("http://127.0.0.1:5000".into()),
                run_name: Some("r1".into()),
            }
        );
        assert_eq!(parsed.name(), "mlflow");
        assert_eq!(
            LoggerConfig::parse(Some(&json!({"name": "mlflow"}))).unwrap(),
            LoggerConfig::Mlflow {
                experiment_name: "Default".into(),
                tracking_uri: None,
                run_name: None,
            }
        );
        let tb =
            json!({"name": "tensorboard", "args": {"save_dir": "tb", "name": "", "version": 3}});
        assert_eq!(
            LoggerConfig::parse(Some(&tb)).unwrap(),
            LoggerConfig::Tensorboard {
                save_dir: Some("tb".into()),
                name: None,
                version: Some("version_3".into()),
            }
        );
        let tb = json!({"name": "tensorboard", "args": {"name": "exp", "version": "v2"}});
        assert_eq!(
            LoggerConfig::parse(Some(&tb)).unwrap(),
            LoggerConfig::Tensorboard {
                save_dir: None,
                name: Some("exp".into()),
                version: Some("v2".into()),
            }
        );
    }
}
