//! The application log of a binary: warnings on stderr for the whole process, and each run's
//! `experiment.log` (Burn's application log) in its run folder.
//!
//! Burn's `SupervisedTraining` installs a process-wide subscriber that writes `experiment.log`
//! when the first run starts; before that (config checks, data reading, `eval`, `predict`) a
//! library's `log::warn!` went nowhere. [`install`] sets one subscriber up front, with a file
//! layer that each run points at its own file through [`RunLog::experiment_log`], which the
//! pipelines hand to Burn instead of its installer ([`TrainOptions::experiment_log`]).
//!
//! [`TrainOptions::experiment_log`]: crate::train::TrainOptions::experiment_log

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use burn::train::ApplicationLoggerInstaller;
use tracing_core::Level;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Makes the installer of a run's `experiment.log`, given its path.
#[derive(Clone)]
pub struct ExperimentLog(Arc<MakeInstaller>);

type MakeInstaller = dyn Fn(&Path) -> Box<dyn ApplicationLoggerInstaller> + Send + Sync;

impl std::fmt::Debug for ExperimentLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExperimentLog")
    }
}

impl ExperimentLog {
    /// From a function of the log file's path.
    pub fn new(
        make: impl Fn(&Path) -> Box<dyn ApplicationLoggerInstaller> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(make))
    }

    /// The installer for the log file `path`, for `SupervisedTraining::with_application_logger`.
    pub fn installer(&self, path: &Path) -> Box<dyn ApplicationLoggerInstaller> {
        (self.0)(path)
    }
}

/// The handle of an installed application log.
#[derive(Clone)]
pub struct RunLog {
    file: Arc<Mutex<Option<File>>>,
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLog").finish_non_exhaustive()
    }
}

/// Whether a record comes from the GPU stack, whose warnings are routine (adapter probing).
fn gpu_stack(target: &str) -> bool {
    ["wgpu", "naga", "cubecl"]
        .iter()
        .any(|p| target.starts_with(p))
}

/// Installs the process's log: WARN and above on stderr (the GPU stack's only from ERROR), and
/// INFO and above into the current run's `experiment.log` once a run switches it on. `None`
/// when a subscriber or a `log` logger is already installed (that one keeps the records).
pub fn install() -> Option<RunLog> {
    let file = Arc::new(Mutex::new(None));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    subscriber(file.clone(), std::io::stderr, ansi)
        .try_init()
        .ok()?;
    Some(RunLog { file })
}

/// The subscriber [`install`] installs, writing its warnings to `stderr`.
fn subscriber<W>(
    file: Arc<Mutex<Option<File>>>,
    stderr: W,
    ansi: bool,
) -> impl tracing_core::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(stderr)
        .with_ansi(ansi)
        .without_time()
        .with_target(false)
        .with_filter(FilterFn::new(|m| {
            *m.level() <= Level::WARN && (!gpu_stack(m.target()) || *m.level() == Level::ERROR)
        }));
    tracing_subscriber::registry()
        .with(RunFileLayer { file })
        .with(stderr)
}

impl RunLog {
    /// What the pipelines give Burn in place of its own installer: each run appends INFO and
    /// above to its `experiment.log` (the previous run's file is closed).
    pub fn experiment_log(&self) -> ExperimentLog {
        let file = self.file.clone();
        ExperimentLog::new(move |path: &Path| {
            Box::new(RunFile {
                file: file.clone(),
                path: path.to_path_buf(),
            })
        })
    }
}

struct RunFile {
    file: Arc<Mutex<Option<File>>>,
    path: PathBuf,
}

impl ApplicationLoggerInstaller for RunFile {
    fn install(&self) -> Result<(), String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
        Ok(())
    }
}

/// Writes INFO and above (the GPU stack's from WARN) to the current run's file, if any, as
/// `<RFC 3339 time> <LEVEL> <target>: <message> <field>=<value> …`. Its filter depends on the
/// record alone, so it also sets what the whole process records (nothing below INFO).
struct RunFileLayer {
    file: Arc<Mutex<Option<File>>>,
}

impl<S: tracing_core::Subscriber> Layer<S> for RunFileLayer {
    fn enabled(&self, m: &tracing_core::Metadata<'_>, _: Context<'_, S>) -> bool {
        *m.level() <= Level::INFO && (!gpu_stack(m.target()) || *m.level() <= Level::WARN)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }

    fn on_event(&self, event: &tracing_core::Event<'_>, _: Context<'_, S>) {
        let mut slot = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(file) = slot.as_mut() else { return };
        let mut line = String::new();
        let _ = SystemTime.format_time(&mut Writer::new(&mut line));
        let m = event.metadata();
        line.push_str(&format!(" {:>5} {}:", m.level(), m.target()));
        event.record(&mut Fields(&mut line));
        line.push('\n');
        // A log that cannot be written must not stop training.
        let _ = file.write_all(line.as_bytes());
    }
}

/// Appends an event's message and fields to a line.
struct Fields<'a>(&'a mut String);

impl tracing_core::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing_core::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.0.push_str(&format!(" {value:?}")),
            // tracing-log's bookkeeping fields repeat the target.
            name if name.starts_with("log.") => {}
            name => self.0.push_str(&format!(" {name}={value:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer into a shared buffer, for the stderr side.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn warnings_reach_stderr_and_a_run_file_gets_info_and_above() {
        let dir = tempfile::tempdir().unwrap();
        let stderr = Buffer::default();
        let log = RunLog {
            file: Arc::new(Mutex::new(None)),
        };
        let make = {
            let stderr = stderr.clone();
            move || stderr.clone()
        };
        let path = dir.path().join("experiment.log");
        tracing::subscriber::with_default(subscriber(log.file.clone(), make, false), || {
            tracing::info!("before any run");
            tracing::warn!("a warning before any run");
            log.experiment_log().installer(&path).install().unwrap();
            tracing::info!(target: "burn_train::epoch", "Executing training step for epoch 1");
            tracing::warn!(count = 3, "a logger call failed");
            tracing::warn!(target: "wgpu_hal::vulkan", "an adapter quirk");
            tracing::debug!("debug noise");
        });
        let stderr = String::from_utf8(stderr.0.lock().unwrap().clone()).unwrap();
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(stderr.contains("a warning before any run"), "{stderr}");
        assert!(stderr.contains("a logger call failed"), "{stderr}");
        for absent in ["INFO", "DEBUG", "Executing", "adapter quirk", "debug noise"] {
            assert!(!stderr.contains(absent), "{absent}: {stderr}");
        }
        assert!(
            file.contains("INFO burn_train::epoch: \"Executing training step for epoch 1\"")
                || file.contains("INFO burn_train::epoch: Executing training step for epoch 1"),
            "{file}"
        );
        assert!(
            file.contains("a logger call failed") && file.contains("count=3"),
            "{file}"
        );
        assert!(file.contains("an adapter quirk"), "{file}");
        assert!(
            !file.contains("debug noise") && !file.contains("before any run"),
            "{file}"
        );
    }
}
