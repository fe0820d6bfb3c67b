//! The always-on local logger: metrics as CSV and JSON lines, figures as PNG files.
//!
//! Layout of the run directory:
//! - `metrics.csv`: `wall_time,step,name,value`, one row per scalar (appended across restarts);
//! - `metrics.jsonl`: one object per `log_scalars` call,
//!   `{"wall_time":…,"step":…,"values":{"name":value,…}}` (non-finite values are `null`);
//! - `figures/<title>/step_<step>.png`;
//! - `pipeline_info.json`: the config, its `/`-flattened form, the tags and the dataset path;
//! - `plots/<metric>.png`: line plots of every metric with two or more points, drawn on finish;
//! - `run_status.json`: how the run ended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oml_interfaces::{Figure, LoggerError, PipelineLogger, RunStatus};
use serde_json::json;

use crate::flatten::flatten_config;
use crate::flush::{Flusher, SyncFile};
use crate::plot::LinePlot;
use crate::util::{check_figure, figure_relpath, invalid, io_error, safe_components, wall_time};

pub use crate::record::ScalarRecord;

/// File name of the CSV metrics log.
pub const METRICS_CSV: &str = "metrics.csv";
/// File name of the JSON-lines metrics log.
pub const METRICS_JSONL: &str = "metrics.jsonl";
/// Folder of logged figures.
pub const FIGURES_DIR: &str = "figures";
/// Folder of the metric plots drawn on finish.
pub const PLOTS_DIR: &str = "plots";
/// File with the config, tags and dataset path.
pub const PIPELINE_INFO: &str = "pipeline_info.json";
/// File written on finish.
pub const RUN_STATUS: &str = "run_status.json";

const CSV_HEADER: &str = "wall_time,step,name,value\n";
/// At most this many metrics get a plot on finish.
const MAX_PLOTS: usize = 64;

/// Writes metrics, figures and the pipeline info into a run directory.
pub struct LocalLogger {
    dir: PathBuf,
    csv: SyncFile,
    jsonl: SyncFile,
    _flusher: Flusher,
    /// Values seen in this process, for the plots drawn on finish.
    history: BTreeMap<String, Vec<(f64, f64)>>,
    plots_on_finish: bool,
    finished: bool,
}

impl std::fmt::Debug for LocalLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLogger")
            .field("dir", &self.dir)
            .finish()
    }
}

impl LocalLogger {
    /// How often buffered rows reach the files by default.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

    /// Creates `run_dir` if needed and opens its metric logs for appending.
    pub fn new(run_dir: impl AsRef<Path>) -> Result<Self, LoggerError> {
        Self::with_flush_interval(run_dir, Self::DEFAULT_FLUSH_INTERVAL)
    }

    /// As [`new`](Self::new), flushing every `interval` (zero: after every call).
    pub fn with_flush_interval(
        run_dir: impl AsRef<Path>,
        interval: Duration,
    ) -> Result<Self, LoggerError> {
        let dir = run_dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let csv = SyncFile::append(&dir.join(METRICS_CSV), interval)?;
        if csv.is_empty()? {
            csv.write_all(CSV_HEADER.as_bytes())?;
        }
        let jsonl = SyncFile::append(&dir.join(METRICS_JSONL), interval)?;
        let flusher = Flusher::spawn(vec![csv.clone(), jsonl.clone()], interval)?;
        Ok(Self {
            dir,
            csv,
            jsonl,
            _flusher: flusher,
            history: BTreeMap::new(),
            plots_on_finish: true,
            finished: false,
        })
    }

    /// Whether [`finish`](PipelineLogger::finish) draws `plots/<metric>.png` (default on).
    pub fn with_plots_on_finish(mut self, on: bool) -> Self {
        self.plots_on_finish = on;
        self
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.dir
    }

    fn write_file(&self, rel: &str, bytes: &[u8]) -> Result<PathBuf, LoggerError> {
        let path = rel.split('/').fold(self.dir.clone(), |p, c| p.join(c));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        // Write then rename, so a crash never leaves half a PNG or JSON file.
        oml_interfaces::fs::write_atomic(&path, bytes).map_err(|e| io_error(&path, e))?;
        Ok(path)
    }

    fn draw_plots(&self) -> Result<(), LoggerError> {
        for (name, points) in self
            .history
            .iter()
            .filter(|(_, p)| p.len() >= 2)
            .take(MAX_PLOTS)
        {
            let fig = LinePlot::new(name)
                .x_label("step")
                .series(name, points.clone())
                .render()?;
            let rel = format!("{PLOTS_DIR}/{}.png", safe_components(name).join("__"));
            self.write_file(&rel, &fig.png)?;
        }
        Ok(())
    }
}

fn json_number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

impl PipelineLogger for LocalLogger {
    /// Writes `pipeline_info.json`; the dataset CSV is referenced by path, not copied.
    fn log_pipeline_info(
        &mut self,
        config: &serde_json::Value,
        tags: &[String],
        dataset_csv: Option<&Path>,
    ) -> Result<(), LoggerError> {
        let flat: serde_json::Map<String, serde_json::Value> = flatten_config(config, "/")
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let info = json!({
            "config": config,
            "flat_config": flat,
            "tags": tags,
            "dataset_csv": dataset_csv.map(|p| p.display().to_string()),
            "wall_time": wall_time(),
        });
        let text =
            serde_json::to_vec_pretty(&info).map_err(|e| invalid("config", e.to_string()))?;
        self.write_file(PIPELINE_INFO, &text)?;
        Ok(())
    }

    fn log_scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<(), LoggerError> {
        if values.is_empty() {
            return Ok(());
        }
        let now = wall_time();
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        let mut obj = serde_json::Map::new();
        if values.iter().any(|(name, _)| name.is_empty()) {
            return Err(invalid("metric name", "empty name"));
        }
        for (name, v) in values {
            w.write_record([
                format!("{now:.3}"),
                step.to_string(),
                (*name).to_string(),
                v.to_string(),
            ])
            .map_err(|e| invalid("metric row", e.to_string()))?;
            obj.insert((*name).to_string(), json_number(*v));
            self.history
                .entry((*name).to_string())
                .or_default()
                .push((step as f64, *v));
        }
        let rows = w
            .into_inner()
            .map_err(|e| invalid("metric row", e.to_string()))?;
        let line = json!({"wall_time": json_number((now * 1000.0).round() / 1000.0), "step": step, "values": obj});
        self.csv.write_all(&rows)?;
        self.jsonl.write_all(format!("{line}\n").as_bytes())
    }

    fn log_figure(&mut self, title: &str, figure: &Figure, step: u64) -> Result<(), LoggerError> {
        check_figure(title, figure)?;
        self.write_file(
            &format!("{FIGURES_DIR}/{}", figure_relpath(title, step)),
            &figure.png,
        )?;
        Ok(())
    }

    /// Pushes buffered rows to `metrics.csv` and `metrics.jsonl` now.
    fn flush(&mut self) -> Result<(), LoggerError> {
        self.csv.flush()?;
        self.jsonl.flush()
    }

    fn finish(&mut self, status: RunStatus) -> Result<(), LoggerError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.csv.sync()?;
        self.jsonl.sync()?;
        if self.plots_on_finish {
            self.draw_plots()?;
        }
        let st = json!({"status": crate::status_name(status), "wall_time": wall_time()});
        self.write_file(RUN_STATUS, format!("{st}\n").as_bytes())?;
        Ok(())
    }

    fn append_only_files(&self) -> Vec<PathBuf> {
        vec![
            self.csv.path().to_path_buf(),
            self.jsonl.path().to_path_buf(),
        ]
    }
}

impl Drop for LocalLogger {
    fn drop(&mut self) {
        let _ = self.csv.flush();
        let _ = self.jsonl.flush();
    }
}

/// Reads `metrics.csv` of a run directory back.
pub fn read_metrics_csv(run_dir: &Path) -> Result<Vec<ScalarRecord>, LoggerError> {
    let path = run_dir.join(METRICS_CSV);
    let mut r = csv::Reader::from_path(&path)
        .map_err(|e| invalid(path.display().to_string(), e.to_string()))?;
    let mut out = Vec::new();
    for (i, row) in r.records().enumerate() {
        let row =
            row.map_err(|e| invalid(format!("{} row {}", path.display(), i + 2), e.to_string()))?;
        let field = |j: usize, col: &str| {
            row.get(j).ok_or_else(|| {
                invalid(
                    format!("{} row {} column {col}", path.display(), i + 2),
                    "missing",
                )
            })
        };
        let bad = |col: &str, v: &str| {
            invalid(
                format!("{} row {} column {col}", path.display(), i + 2),
                format!("cannot parse {v:?}"),
            )
        };
        let wt = field(0, "wall_time")?;
        let st = field(1, "step")?;
        let val = field(3, "value")?;
        out.push(ScalarRecord {
            wall_time: wt.parse().map_err(|_| bad("wall_time", wt))?,
            step: st.parse().map_err(|_| bad("step", st))?,
            name: field(2, "name")?.to_string(),
            value: val.parse().map_err(|_| bad("value", val))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_hold_every_value_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut l = LocalLogger::with_flush_interval(dir.path(), Duration::ZERO).unwrap();
            l.log_scalars(1, &[("loss", 0.5), ("odd,name \"q\"", f64::NAN)])
                .unwrap();
            l.log_scalars(2, &[("loss", 0.25)]).unwrap();
        }
        {
            // A resumed run appends without a second header.
            let mut l = LocalLogger::new(dir.path()).unwrap();
            l.log_scalars(3, &[("loss", f64::INFINITY)]).unwrap();
            l.finish(RunStatus::Finished).unwrap();
        }
        let rows = read_metrics_csv(dir.path()).unwrap();
        let got: Vec<(u64, &str)> = rows.iter().map(|r| (r.step, r.name.as_str())).collect();
        assert_eq!(
            got,
            vec![(1, "loss"), (1, "odd,name \"q\""), (2, "loss"), (3, "loss")]
        );
        assert_eq!(rows[0].value, 0.5);
        assert!(rows[1].value.is_nan());
        assert_eq!(rows[3].value, f64::INFINITY);

        let text = std::fs::read_to_string(dir.path().join(METRICS_JSONL)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["values"]["loss"], 0.5);
        assert!(lines[0]["values"]["odd,name \"q\""].is_null());
        assert_eq!(lines[2]["step"], 3);
        let status: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(RUN_STATUS)).unwrap())
                .unwrap();
        assert_eq!(status["status"], "FINISHED");
    }

    #[test]
    fn figures_and_plots_are_pngs_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = LocalLogger::with_flush_interval(dir.path(), Duration::ZERO).unwrap();
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([1, 2, 3]));
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        l.log_figure(
            "image_logs/top 5 worst",
            &Figure {
                width: 4,
                height: 3,
                png,
            },
            2,
        )
        .unwrap();
        for s in 0..5 {
            l.log_scalars(s, &[("epoch/valid/cmc", s as f64 / 4.0)])
                .unwrap();
        }
        l.log_pipeline_info(
            &json!({"a": {"b": 1}}),
            &["t1".into()],
            Some(Path::new("/d/df.csv")),
        )
        .unwrap();
        l.finish(RunStatus::Failed).unwrap();

        let fig = image::open(
            dir.path()
                .join("figures/image_logs/top 5 worst/step_000002.png"),
        )
        .unwrap();
        assert_eq!((fig.width(), fig.height()), (4, 3));
        assert_eq!(fig.to_rgb8().get_pixel(0, 0).0, [1, 2, 3]);
        let plot = image::open(dir.path().join("plots/epoch__valid__cmc.png")).unwrap();
        assert!(plot.width() > 100);
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(PIPELINE_INFO)).unwrap())
                .unwrap();
        assert_eq!(info["flat_config"]["a/b"], "1");
        assert_eq!(info["tags"][0], "t1");
        assert_eq!(info["dataset_csv"], "/d/df.csv");
    }
}
