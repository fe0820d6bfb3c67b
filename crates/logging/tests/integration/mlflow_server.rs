//! MLflow against a real `mlflow server`: a run logged and read back through MLflow's REST API,
//! and a server stopped mid-run.
//!
//! The server is `OML_TEST_MLFLOW_URI` when set (see crates/logging/ci/setup-services.sh), or
//! one started here on a free 127.0.0.1 port when the `mlflow` command is available (next to
//! `OML_TEST_PYTHON`, or on `PATH`). The read-back uses plain HTTP, not this crate's client.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oml_logging::local::read_metrics_csv;
use oml_logging::{LocalLogger, MlflowConfig, MlflowLogger, PipelineLogger, RunStatus};
use serde_json::{Value, json};

use crate::common::{free_port, test_figure};

/// The `mlflow` command, if installed.
fn mlflow_command() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(py) = std::env::var_os("OML_TEST_PYTHON").filter(|p| !p.is_empty())
        && let Some(bin) = Path::new(&py).parent()
    {
        candidates.push(bin.join("mlflow"));
    }
    candidates.push(PathBuf::from("mlflow"));
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// An `mlflow server` in its own process group, stopped (the whole group) on drop.
struct MlflowServer {
    cmd: PathBuf,
    port: u16,
    state: tempfile::TempDir,
    child: Option<Child>,
}

impl MlflowServer {
    fn start(cmd: PathBuf) -> Self {
        let mut s = Self {
            cmd,
            port: free_port(),
            state: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.spawn();
        s
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let db = format!(
            "sqlite:///{}",
            self.state.path().join("mlflow.db").display()
        );
        let art = self.state.path().join("artifacts");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.path().join("server.log"))
            .unwrap();
        let child = Command::new(&self.cmd)
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--backend-store-uri")
            .arg(&db)
            .arg("--artifacts-destination")
            .arg(&art)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        while !healthy(&self.uri()) {
            if t0.elapsed() > Duration::from_secs(120) {
                let log = std::fs::read_to_string(self.state.path().join("server.log"))
                    .unwrap_or_default();
                panic!("mlflow server did not start in 120 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill")
                .args(["-s", "TERM", "--", &group])
                .status();
            let t0 = Instant::now();
            while child.try_wait().ok().flatten().is_none()
                && t0.elapsed() < Duration::from_secs(15)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn healthy(uri: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent
        .get(format!("{uri}/health"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn get_json(uri: &str, path: &str) -> Value {
    let mut resp = agent()
        .get(format!("{uri}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
}

fn get_bytes(uri: &str, path: &str) -> Vec<u8> {
    let mut resp = agent()
        .get(format!("{uri}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    resp.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `(step, value)` of a metric's history, sorted by step; NaN comes back as the string "NaN".
fn history(uri: &str, run_id: &str, key: &str) -> Vec<(i64, Value)> {
    let v = get_json(
        uri,
        &format!(
            "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={}&max_results=25000",
            enc(key)
        ),
    );
    let mut out: Vec<(i64, Value)> = v["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| (m["step"].as_i64().unwrap_or(0), m["value"].clone()))
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|(s, _)| *s);
    out
}

/// Equal up to serde_json's default float parser, which can be one ulp off (the server stores
/// and returns the exact double; `float_roundtrip` is not enabled in this workspace).
fn same_f64(got: &Value, expected: f64) -> bool {
    got.as_f64().is_some_and(|g| {
        g == expected || (g - expected).abs() <= 2.0 * f64::EPSILON * expected.abs()
    })
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The server to use, or `None` (skip) with the reason printed.
fn server_for(test: &str) -> Option<(String, Option<MlflowServer>)> {
    if let Ok(uri) = std::env::var("OML_TEST_MLFLOW_URI")
        && !uri.is_empty()
    {
        assert!(
            healthy(&uri),
            "OML_TEST_MLFLOW_URI={uri} does not answer GET /health: is the server running?"
        );
        return Some((uri, None));
    }
    match mlflow_command() {
        Some(cmd) => {
            let s = MlflowServer::start(cmd);
            Some((s.uri(), Some(s)))
        }
        None => {
            println!(
                "SKIP {test}: no MLflow server (set OML_TEST_MLFLOW_URI, or install mlflow: \
                 crates/logging/ci/setup-services.sh)"
            );
            None
        }
    }
}

fn loss_at(step: u64) -> f64 {
    1.0 / (1.0 + step as f64) + (step % 7) as f64 * 1e-3
}

#[test]
fn mlflow_run_reads_back_through_the_rest_api() {
    let Some((uri, _server)) = server_for("mlflow_run_reads_back_through_the_rest_api") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("df.csv");
    std::fs::write(
        &csv_path,
        "label,path,split\n0,a.jpg,train\n1,b.jpg,validation\n",
    )
    .unwrap();

    // 150 params (two log-batch requests of at most 100), a value over MLflow's 6000-character
    // limit and a key with a character MLflow refuses.
    let mut params = serde_json::Map::new();
    for i in 0..150 {
        params.insert(format!("p{i:03}"), json!(i));
    }
    let config = json!({
        "params": params,
        "optimizer": {"name": "adam", "args": {"lr": 1e-5}},
        "long": "x".repeat(7000),
        "weird|key": true,
    });
    let experiment = unique("oml-rs-it");
    let mut mlflow = MlflowLogger::start(
        MlflowConfig::new(&experiment)
            .with_tracking_uri(&uri)
            .with_run_name("round-trip"),
    )
    .unwrap();
    mlflow
        .log_pipeline_info(
            &config,
            &["oml-rs".into(), "test tag".into()],
            Some(&csv_path),
        )
        .unwrap();
    // 1500 steps: more than one log-batch of 1000 metrics.
    for step in 1..=1500u64 {
        let mut values = vec![("loss", loss_at(step))];
        if step % 100 == 0 {
            values.push(("OVERALL/cmc/1", step as f64 / 1500.0));
        }
        if step == 7 {
            values.push(("nan_metric", f64::NAN));
        }
        mlflow.log_scalars(step, &values).unwrap();
    }
    let fig = test_figure(6, 4);
    mlflow
        .log_figure("image_logs/top 5 worst", &fig, 3)
        .unwrap();
    mlflow.finish(RunStatus::Finished).unwrap();
    let run_id = mlflow.run().unwrap().run_id;

    let run = get_json(&uri, &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"));
    assert_eq!(run["run"]["info"]["status"], "FINISHED");
    assert_eq!(run["run"]["info"]["run_name"], "round-trip");
    assert!(run["run"]["info"]["end_time"].as_i64().is_some());
    let got_params: std::collections::BTreeMap<String, String> = run["run"]["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_string(),
                p["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got_params.len(),
        154,
        "{:?}",
        got_params.keys().collect::<Vec<_>>()
    );
    assert_eq!(got_params["params/p042"], "42");
    assert_eq!(got_params["optimizer/name"], "adam");
    assert_eq!(got_params["optimizer/args/lr"], "1e-05");
    assert_eq!(got_params["long"], "x".repeat(6000));
    assert_eq!(got_params["weird_key"], "True");
    let tags: std::collections::BTreeMap<String, String> = run["run"]["data"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_string(),
                p["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tags.get("oml-rs").map(String::as_str), Some("tag"));
    assert_eq!(tags.get("test tag").map(String::as_str), Some("tag"));

    let loss = history(&uri, &run_id, "loss");
    assert_eq!(loss.len(), 1500);
    for (i, (step, v)) in loss.iter().enumerate() {
        assert_eq!(*step, i as i64 + 1);
        assert!(
            same_f64(v, loss_at(i as u64 + 1)),
            "loss at step {step}: {v} vs {}",
            loss_at(i as u64 + 1)
        );
    }
    let cmc = history(&uri, &run_id, "OVERALL/cmc/1");
    assert_eq!(
        cmc.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=15).map(|i| i * 100).collect::<Vec<_>>()
    );
    assert_eq!(
        history(&uri, &run_id, "nan_metric"),
        vec![(7, json!("NaN"))]
    );

    let listed = get_json(
        &uri,
        &format!("/api/2.0/mlflow/artifacts/list?run_id={run_id}"),
    );
    let mut names: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, vec!["config.json", "dataset", "figures"]);
    let artifact = |p: &str| {
        get_bytes(
            &uri,
            &format!("/get-artifact?path={}&run_uuid={run_id}", enc(p)),
        )
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&artifact("config.json")).unwrap(),
        config
    );
    assert_eq!(
        artifact("dataset/df.csv"),
        std::fs::read(&csv_path).unwrap()
    );
    assert_eq!(
        artifact("figures/image_logs/top 5 worst/step_000003.png"),
        fig.png
    );
}

#[test]
fn mlflow_server_stopped_mid_run_loses_nothing() {
    let Some(cmd) = mlflow_command() else {
        println!(
            "SKIP mlflow_server_stopped_mid_run_loses_nothing: the `mlflow` command is not installed \
             (set OML_TEST_PYTHON to a venv with mlflow: crates/logging/ci/setup-services.sh)"
        );
        return;
    };
    let mut server = MlflowServer::start(cmd);
    let uri = server.uri();
    let dir = tempfile::tempdir().unwrap();
    let mut local = LocalLogger::with_flush_interval(dir.path(), Duration::ZERO).unwrap();
    let mut mlflow = MlflowLogger::start(
        MlflowConfig::new(unique("oml-rs-outage"))
            .with_tracking_uri(&uri)
            .with_backoff(Duration::from_millis(50), Duration::from_secs(1))
            .with_request_timeout(Duration::from_secs(5))
            .with_finish_timeout(Duration::from_secs(90)),
    )
    .unwrap();

    // A "training loop" that logs to both, as the fan-out does.
    let mut mlflow_errors = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut step_fn = |step: u64, mlflow: &mut MlflowLogger, local: &mut LocalLogger| {
        let t0 = Instant::now();
        let values = [("loss", loss_at(step))];
        local.log_scalars(step, &values).unwrap();
        if let Err(e) = mlflow.log_scalars(step, &values) {
            mlflow_errors.push(e.to_string());
        }
        slowest = slowest.max(t0.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    };
    for step in 1..=40 {
        step_fn(step, &mut mlflow, &mut local);
    }
    assert!(
        mlflow.flush(Duration::from_secs(60)),
        "first 40 steps not sent: {:?}",
        mlflow.stats()
    );
    assert_eq!(mlflow.stats().sent_points, 40);

    server.stop();
    for step in 41..=80 {
        step_fn(step, &mut mlflow, &mut local);
    }
    assert!(
        slowest < Duration::from_millis(300),
        "a step took {slowest:?} while the server was down"
    );
    assert_eq!(mlflow_errors.len(), 1, "reported once: {mlflow_errors:#?}");
    assert!(
        mlflow_errors[0].contains("unreachable"),
        "{}",
        mlflow_errors[0]
    );
    assert!(mlflow.stats().pending_points > 0);
    // Nothing logged locally is lost.
    let rows = read_metrics_csv(dir.path()).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=80).collect::<Vec<_>>()
    );

    // The server comes back (same store): the retries deliver what was kept in memory.
    server.spawn();
    mlflow.finish(RunStatus::Finished).unwrap();
    local.finish(RunStatus::Finished).unwrap();
    let run_id = mlflow.run().unwrap().run_id;
    let loss = history(&uri, &run_id, "loss");
    assert_eq!(
        loss.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=80).collect::<Vec<_>>()
    );
    for (step, v) in &loss {
        assert!(
            same_f64(v, loss_at(*step as u64)),
            "loss at step {step}: {v}"
        );
    }
    let run = get_json(&uri, &format!("/api/2.0/mlflow/runs/get?run_id={run_id}"));
    assert_eq!(run["run"]["info"]["status"], "FINISHED");
    assert_eq!(mlflow.stats().dropped_points, 0);
}
