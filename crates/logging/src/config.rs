//! Building a pipeline's loggers from the `logger: {name, args}` section of an OML config.

use std::path::{Path, PathBuf};

use oml_interfaces::LoggerError;
use serde_json::Value;

use crate::fanout::FanoutLogger;
use crate::local::LocalLogger;
use crate::mlflow::{MlflowConfig, MlflowLogger};
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

/// The loggers of a pipeline run: always a [`LocalLogger`] in `run_dir` (named `"local"`),
/// plus the backend chosen by OML's `logger` section (named by it):
///
/// - absent or `null`: TensorBoard in `<run_dir>/tensorboard` (OML's default logger);
/// - `{name: tensorboard, args: {save_dir, name, version}}`: TensorBoard in
///   `save_dir/name/version` (all optional; `save_dir` relative to `run_dir`, default
///   `tensorboard`; an integer `version` becomes `version_<n>` as in Lightning);
/// - `{name: mlflow, args: {experiment_name, tracking_uri, run_name}}`: MLflow (experiment
///   `Default` unless given; tracking URI from the config or `MLFLOW_TRACKING_URI`);
/// - `wandb`, `neptune`, `clearml`: an error saying they are not supported.
pub fn loggers_from_config(
    logger: Option<&Value>,
    run_dir: &Path,
) -> Result<FanoutLogger, LoggerError> {
    let local = LocalLogger::new(run_dir)?;
    let mut out = FanoutLogger::new().with("local", local);
    let section = match logger {
        None | Some(Value::Null) => {
            out.push(
                "tensorboard",
                Box::new(TensorBoardLogger::new(run_dir.join("tensorboard"))?),
            );
            return Ok(out);
        }
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
            let mut dir: PathBuf =
                run_dir.join(opt_str(args, "save_dir")?.unwrap_or_else(|| "tensorboard".into()));
            if let Some(n) = opt_str(args, "name")?.filter(|n| !n.is_empty()) {
                dir = dir.join(n);
            }
            match args.get("version") {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) => dir = dir.join(format!("version_{n}")),
                Some(Value::String(s)) => dir = dir.join(s),
                Some(other) => {
                    return Err(bad(
                        "logger.args.version",
                        format!("expected an integer or a string, got {other}"),
                    ));
                }
            }
            out.push("tensorboard", Box::new(TensorBoardLogger::new(dir)?));
        }
        "mlflow" => {
            check_keys(args, &["experiment_name", "tracking_uri", "run_name"], name)?;
            let mut cfg = MlflowConfig::new(
                opt_str(args, "experiment_name")?.unwrap_or_else(|| "Default".into()),
            );
            cfg.tracking_uri = opt_str(args, "tracking_uri")?;
            cfg.run_name = opt_str(args, "run_name")?;
            out.push("mlflow", Box::new(MlflowLogger::start(cfg)?));
        }
        n if UNSUPPORTED_LOGGERS.contains(&n) => {
            return Err(bad(
                "logger.name",
                format!(
                    "{n:?} is not supported by oml-rs (it needs a cloud account); use tensorboard or mlflow, see docs/logging.md"
                ),
            ));
        }
        n => {
            return Err(bad(
                "logger.name",
                format!("unknown logger {n:?}; supported: tensorboard, mlflow"),
            ));
        }
    }
    Ok(out)
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
            (json!(["tensorboard"]), "logger", "expected"),
        ] {
            match loggers_from_config(Some(&cfg), dir.path()) {
                Err(LoggerError::Invalid { what: w, message }) => {
                    assert_eq!(w, what, "{cfg}");
                    assert!(message.contains(needle), "{cfg}: {message}");
                }
                other => panic!("{cfg}: expected Invalid, got {other:?}"),
            }
        }
    }
}
