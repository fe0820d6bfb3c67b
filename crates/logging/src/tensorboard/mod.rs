//! TensorBoard event files written directly: no TensorFlow, no unmaintained crate.
//!
//! A file `events.out.tfevents.<secs>.<host>.<pid>.<n>` is a sequence of TFRecords
//! ([`record`]), each an `Event` protobuf ([`proto`]). The first record is
//! `file_version: "brain.Event:2"`. Scalars are `simple_value`s, figures are `Summary.Image`s
//! holding the PNG, and text (the config) uses the `text` plugin's string tensor, which is what
//! TensorBoard's own writers produce and its `EventAccumulator` reads.

pub mod proto;
pub mod record;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oml_interfaces::{Figure, LoggerError, PipelineLogger, RunStatus};

use crate::flush::{Flusher, SyncFile};
use crate::util::{check_figure, invalid, io_error, wall_time};

pub use proto::{Event, EventWhat, SummaryValue, ValueKind};
pub use record::{RecordError, read_records};

/// Distinguishes event files created in the same second by the same process.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a TensorBoard event file in a log directory.
///
/// Records are buffered and flushed by a background thread every flush interval (default
/// [`TensorBoardLogger::DEFAULT_FLUSH_INTERVAL`]) and on [`finish`](PipelineLogger::finish),
/// so a crash loses at most the last interval.
pub struct TensorBoardLogger {
    file: SyncFile,
    // Stopped and joined on drop (after `Drop::drop` flushed the file).
    _flusher: Flusher,
    finished: bool,
}

impl std::fmt::Debug for TensorBoardLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorBoardLogger")
            .field("path", &self.file.path())
            .finish()
    }
}

fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

impl TensorBoardLogger {
    /// How often buffered records reach the file by default.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

    /// Creates `log_dir` if needed and a new event file in it.
    pub fn new(log_dir: impl AsRef<Path>) -> Result<Self, LoggerError> {
        Self::with_flush_interval(log_dir, Self::DEFAULT_FLUSH_INTERVAL)
    }

    /// As [`new`](Self::new), flushing every `interval` (zero: after every record).
    pub fn with_flush_interval(
        log_dir: impl AsRef<Path>,
        interval: Duration,
    ) -> Result<Self, LoggerError> {
        let dir = log_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let secs = wall_time() as u64;
        let name = format!(
            "events.out.tfevents.{secs:010}.{}.{}.{}",
            hostname(),
            std::process::id(),
            FILE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let file = SyncFile::create_new(&dir.join(name), interval)?;
        let flusher = Flusher::spawn(vec![file.clone()], interval)?;
        let mut me = Self {
            file,
            _flusher: flusher,
            finished: false,
        };
        me.write_event(0, proto::EventBody::FileVersion("brain.Event:2"))?;
        // The version record reaches the disk at once: TensorBoard lists the run immediately.
        me.file.flush()?;
        Ok(me)
    }

    /// Appends to the event file `path` that an interrupted run of the same pipeline wrote
    /// (one event file per run, however often it resumes; the pipeline has cut it back to its
    /// last checkpoint first). A missing or empty file is replaced by a new one in its folder.
    pub fn continuing(path: &Path) -> Result<Self, LoggerError> {
        let interval = Self::DEFAULT_FLUSH_INTERVAL;
        let non_empty = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0);
        let Some(dir) = path.parent().filter(|_| non_empty) else {
            let dir = path.parent().unwrap_or(Path::new("."));
            return Self::with_flush_interval(dir, interval);
        };
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let file = SyncFile::append(path, interval)?;
        let flusher = Flusher::spawn(vec![file.clone()], interval)?;
        Ok(Self {
            file,
            _flusher: flusher,
            finished: false,
        })
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The directory TensorBoard should be pointed at.
    pub fn log_dir(&self) -> PathBuf {
        self.file
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn check_open(&self) -> Result<(), LoggerError> {
        if self.finished {
            return Err(invalid(
                "tensorboard logger",
                format!("{} is already finished", self.path().display()),
            ));
        }
        Ok(())
    }

    fn write_event(&mut self, step: u64, body: proto::EventBody<'_>) -> Result<(), LoggerError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let ev = proto::event(wall_time(), step, body);
        let mut framed = Vec::with_capacity(ev.len() + 16);
        record::frame(&ev, &mut framed);
        self.file.write_all(&framed)
    }

    fn write_values(&mut self, step: u64, values: &[Vec<u8>]) -> Result<(), LoggerError> {
        self.check_open()?;
        let s = proto::summary(values);
        self.write_event(step, proto::EventBody::Summary(&s))
    }

    /// Records `text` under `tag` (TensorBoard's Text tab renders it as Markdown).
    pub fn log_text(&mut self, tag: &str, text: &str, step: u64) -> Result<(), LoggerError> {
        check_tag(tag)?;
        self.write_values(step, &[proto::text_value(tag, text)])
    }
}

fn check_tag(tag: &str) -> Result<(), LoggerError> {
    if tag.is_empty() {
        return Err(invalid("tensorboard tag", "empty tag"));
    }
    Ok(())
}

impl PipelineLogger for TensorBoardLogger {
    /// Writes the config as pretty JSON in a Markdown code block (tag `config`), the tags
    /// (tag `tags`) and the dataset CSV's path (tag `dataset`): TensorBoard has no artifacts.
    fn log_pipeline_info(
        &mut self,
        config: &serde_json::Value,
        tags: &[String],
        dataset_csv: Option<&Path>,
    ) -> Result<(), LoggerError> {
        let pretty =
            serde_json::to_string_pretty(config).map_err(|e| invalid("config", e.to_string()))?;
        let mut values = vec![proto::text_value(
            "config",
            &format!("```json\n{pretty}\n```"),
        )];
        if !tags.is_empty() {
            values.push(proto::text_value("tags", &tags.join(", ")));
        }
        if let Some(p) = dataset_csv {
            values.push(proto::text_value("dataset", &p.display().to_string()));
        }
        self.write_values(0, &values)
    }

    fn log_scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), LoggerError> {
        if values.is_empty() {
            return self.check_open();
        }
        let mut encoded = Vec::with_capacity(values.len());
        for (tag, v) in values {
            check_tag(tag)?;
            encoded.push(proto::scalar_value(tag, *v as f32));
        }
        self.write_values(step, &encoded)
    }

    fn log_figure(&mut self, title: &str, figure: &Figure, step: u64) -> Result<(), LoggerError> {
        check_tag(title)?;
        let header = check_figure(title, figure)?;
        let v = proto::image_value(
            title,
            header.width,
            header.height,
            header.tensorboard_colorspace(),
            &figure.png,
        );
        self.write_values(step, &[v])
    }

    /// Pushes buffered records to the event file now.
    fn flush(&mut self) -> Result<(), LoggerError> {
        self.file.flush()
    }

    fn finish(&mut self, _status: RunStatus) -> Result<(), LoggerError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.file.sync()
    }

    fn append_only_files(&self) -> Vec<PathBuf> {
        vec![self.path().to_path_buf()]
    }
}

impl Drop for TensorBoardLogger {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

/// Reads an event file back: checks every record's CRCs and decodes every `Event`.
pub fn read_event_file(path: &Path) -> Result<Vec<Event>, RecordError> {
    read_records(path)?
        .iter()
        .enumerate()
        .map(|(index, r)| {
            proto::decode_event(r).map_err(|message| RecordError::Decode {
                path: path.display().to_string(),
                index,
                message,
            })
        })
        .collect()
}

/// The event files (`*tfevents*`) directly inside `dir`, sorted by name.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, LoggerError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
        })
        .collect();
    out.sort();
    Ok(out)
}
