//! MLflow failure behaviour without a real server: a closed port and fake servers answering
//! errors. These always run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oml_logging::local::read_metrics_csv;
use oml_logging::{
    FanoutLogger, LocalLogger, LoggerError, MlflowConfig, MlflowLogger, PipelineLogger, RunStatus,
};

use crate::common::{free_port, test_figure};

fn quick(uri: &str) -> MlflowConfig {
    MlflowConfig::new("offline")
        .with_tracking_uri(uri)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .with_request_timeout(Duration::from_secs(2))
        .with_finish_timeout(Duration::from_millis(800))
}

/// A loopback HTTP server answering every request with `status` and an MLflow-style error
/// body; counts requests; stops when dropped.
struct FakeServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(status: u16, error_code: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            // Bounded: at most 10 000 requests or until stopped.
            while !s.load(Ordering::Relaxed) && r.load(Ordering::Relaxed) < 10_000 {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut len = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                r.fetch_add(1, Ordering::Relaxed);
                let payload =
                    format!("{{\"error_code\": \"{error_code}\", \"message\": \"fake\"}}");
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                    payload.len()
                );
                let _ = reader.get_mut().write_all(resp.as_bytes());
            }
        });
        Self {
            port,
            requests,
            stop,
            handle: Some(handle),
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn closed_port_never_stops_training_and_reports_once() {
    let port = free_port(); // bound and released: nothing listens there
    let dir = tempfile::tempdir().unwrap();
    let mlflow =
        MlflowLogger::start(quick(&format!("http://127.0.0.1:{port}")).with_max_pending_points(50))
            .unwrap();
    let mut logger = FanoutLogger::new()
        .with(
            "local",
            LocalLogger::with_flush_interval(dir.path(), Duration::ZERO).unwrap(),
        )
        .with("mlflow", mlflow);

    let mut errors = Vec::new();
    let mut slowest = Duration::ZERO;
    for step in 1..=300u64 {
        let t0 = Instant::now();
        if let Err(e) = logger.log_scalars(step, &[("loss", 1.0 / step as f64), ("acc", 0.5)]) {
            errors.push(e.to_string());
        }
        slowest = slowest.max(t0.elapsed());
        if step == 150 {
            logger
                .log_figure("fig", &test_figure(3, 2), step)
                .unwrap_or_else(|e| errors.push(e.to_string()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        slowest < Duration::from_millis(200),
        "a logging call took {slowest:?}"
    );
    // One report for the outage and one for the full queue; never one per step.
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unreachable") && e.contains("Reported once")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("queue full")),
        "{errors:#?}"
    );

    let t0 = Instant::now();
    let err = logger.finish(RunStatus::Finished).unwrap_err();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "finish waited {:?}",
        t0.elapsed()
    );
    assert!(err.to_string().contains("not delivered"), "{err}");

    // Everything is in the local log.
    let rows = read_metrics_csv(dir.path()).unwrap();
    assert_eq!(rows.len(), 600);
    let steps: Vec<u64> = rows
        .iter()
        .filter(|r| r.name == "loss")
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, (1..=300).collect::<Vec<_>>());
}

#[test]
fn memory_stays_within_the_bound() {
    let mlflow = MlflowLogger::start(
        quick(&format!("http://127.0.0.1:{}", free_port())).with_max_pending_points(100),
    )
    .unwrap();
    let mut mlflow = mlflow;
    for step in 0..1000u64 {
        let _ = mlflow.log_scalars(step, &[("a", 1.0), ("b", 2.0)]);
    }
    let s = mlflow.stats();
    assert!(s.pending_points <= 100, "{s:?}");
    assert_eq!(
        s.pending_points as u64 + s.dropped_points + s.sent_points,
        2000,
        "{s:?}"
    );
    let _ = mlflow.finish(RunStatus::Killed);
}

#[test]
fn server_errors_are_retried_with_backoff_and_reported_once() {
    let server = FakeServer::start(503, "TEMPORARILY_UNAVAILABLE");
    let t0 = Instant::now();
    let mut mlflow = MlflowLogger::start(quick(&server.uri())).unwrap();
    let mut errors = 0;
    for step in 0..50u64 {
        if mlflow.log_scalars(step, &[("loss", 1.0)]).is_err() {
            errors += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(errors, 1);
    let tries = server.requests.load(Ordering::Relaxed);
    // Delays of 10, 20, 40, 80, then 100 ms: several retries, never a busy loop.
    let most = 6 + t0.elapsed().as_millis() as usize / 100;
    assert!(
        (3..=most).contains(&tries),
        "{tries} requests in {:?}",
        t0.elapsed()
    );
    assert!(mlflow.stats().retried_attempts >= 3);
    assert!(mlflow.run().is_none());
    assert!(mlflow.finish(RunStatus::Failed).is_err());
}

#[test]
fn a_rejecting_server_disables_mlflow_without_waiting() {
    let server = FakeServer::start(403, "PERMISSION_DENIED");
    let mut mlflow =
        MlflowLogger::start(quick(&server.uri()).with_finish_timeout(Duration::from_secs(30)))
            .unwrap();
    let t0 = Instant::now();
    let mut reports = Vec::new();
    for step in 0..20u64 {
        if let Err(e) = mlflow.log_scalars(step, &[("loss", 1.0)]) {
            reports.push(e);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        matches!(&reports[0], LoggerError::Remote { backend: "mlflow", message } if message.contains("could not be created"))
    );
    assert_eq!(
        server.requests.load(Ordering::Relaxed),
        1,
        "a 403 is not retried"
    );
    assert!(mlflow.finish(RunStatus::Finished).is_err());
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "finish must not wait for a disabled logger"
    );
}

#[test]
fn no_tracking_uri_is_a_config_error() {
    // Only meaningful when the environment has no MLFLOW_TRACKING_URI.
    if std::env::var_os("MLFLOW_TRACKING_URI").is_some() {
        println!("SKIP no_tracking_uri_is_a_config_error: MLFLOW_TRACKING_URI is set");
        return;
    }
    assert!(matches!(
        MlflowLogger::start(MlflowConfig::new("e")),
        Err(LoggerError::Invalid { what, .. }) if what == "logger.args.tracking_uri"
    ));
}
