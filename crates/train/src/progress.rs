//! Progress bars (indicatif) for epochs, batches and retrieval, and a console that prints
//! above them.
//!
//! [`ProgressRenderer`] is a Burn `MetricsRenderer`: the Learner drives an epoch bar and a
//! batch bar per split, whose message shows the latest metric entries (loss, …). Bars draw on
//! stderr only when it is a terminal; [`Console::line`] prints to stdout either way.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::MetricDefinition;
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The first error writing to stdout (a closed pipe, a full disk), if any.
static STDOUT_FAILURE: OnceLock<std::io::ErrorKind> = OnceLock::new();

/// Prints a line to stdout. A failing stdout (`| head -1` closed it, `> /dev/full`) is remembered
/// ([`stdout_failure`]) and later lines are dropped: printing never panics and never stops a
/// run, whose files are what matters; the binary reports it once the run is done.
pub fn out(text: &str) {
    if STDOUT_FAILURE.get().is_some() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        let _ = STDOUT_FAILURE.set(e.kind());
    }
}

/// Why writing to stdout failed, if it did ([`out`], [`Console::line`]).
pub fn stdout_failure() -> Option<std::io::ErrorKind> {
    STDOUT_FAILURE.get().copied()
}

/// Where pipelines print: lines go above the live bars (or plainly to stdout without them).
#[derive(Clone)]
pub struct Console {
    multi: MultiProgress,
    quiet: bool,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("quiet", &self.quiet)
            .finish()
    }
}

impl Console {
    /// Bars on stderr when it is a terminal; lines on stdout.
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            quiet: false,
        }
    }

    /// No bars and no lines (library use, tests).
    pub fn quiet() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            quiet: true,
        }
    }

    /// Whether this console prints nothing.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Prints a line (above the bars when they are drawn).
    pub fn line(&self, text: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        if self.multi.is_hidden() {
            out(text.as_ref());
        } else {
            let _ = self.multi.println(text.as_ref());
        }
    }

    /// A bar of `len` items with a label.
    pub fn bar(&self, len: u64, label: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(bar_style());
        bar.set_prefix(label.to_string());
        bar
    }

    /// A spinner with a label (work of unknown length, e.g. retrieval).
    pub fn spinner(&self, label: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg} [{elapsed}<{eta}]")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A Burn `MetricsRenderer` drawing indicatif bars: epochs, and the batches of the current split.
pub struct ProgressRenderer {
    console: Console,
    epochs: Option<ProgressBar>,
    split: Option<ProgressBar>,
    split_name: String,
    split_total: usize,
    names: BTreeMap<String, String>,
    latest: BTreeMap<String, String>,
}

impl ProgressRenderer {
    /// A renderer drawing through `console`.
    pub fn new(console: Console) -> Self {
        Self {
            console,
            epochs: None,
            split: None,
            split_name: String::new(),
            split_total: 0,
            names: BTreeMap::new(),
            latest: BTreeMap::new(),
        }
    }

    fn message(&self) -> String {
        self.latest
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("  ")
    }

    fn remember(&mut self, state: MetricState) {
        let (entry, numeric) = match state {
            MetricState::Generic(e) => (e, None),
            MetricState::Numeric(e, n) => (e, n),
        };
        let id = format!("{:?}", entry.metric_id);
        let name = self.names.get(&id).cloned().unwrap_or(id);
        let text = match numeric {
            Some(n) => format!("{name} {:.4}", n.current()),
            None if entry.serialized_entry.is_not_available() => return,
            // this crate's text metrics already name their values
            None => entry.serialized_entry.formatted.clone(),
        };
        self.latest.insert(name, text);
        let msg = self.message();
        if let Some(b) = &self.split {
            b.set_message(msg);
        }
    }
}

impl MetricsRendererTraining for ProgressRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.remember(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.remember(state);
    }

    fn on_train_end(
        &mut self,
        _summary: Option<burn::train::LearnerSummary>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        Ok(())
    }
}

impl MetricsRendererEvaluation for ProgressRenderer {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.remember(state);
    }

    fn on_test_end(
        &mut self,
        _summary: Option<burn::train::LearnerSummary>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        Ok(())
    }
}

impl TrainingProgressLogger for ProgressRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        let bar = self.console.bar(total_epochs as u64, "epochs");
        bar.set_position(starting_epoch.saturating_sub(1) as u64);
        self.epochs = Some(bar);
    }

    fn update_epoch(&mut self, epoch: usize) {
        if let Some(b) = &self.epochs {
            b.set_position(epoch as u64);
        }
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        if let Some(b) = self.split.take() {
            b.finish_and_clear();
        }
        // created on the first batch: validation is skipped on most epochs
        self.split_name = split.to_string();
        self.split_total = total_items;
    }

    fn update_split(&mut self, items_processed: usize) {
        if self.split.is_none() {
            let bar = self.console.bar(self.split_total as u64, &self.split_name);
            bar.set_message(self.message());
            self.split = Some(bar);
        }
        if let Some(b) = &self.split {
            b.set_position(items_processed as u64);
        }
    }

    fn end_split(&mut self) {
        if let Some(b) = self.split.take() {
            b.finish_and_clear();
        }
    }

    fn end(&mut self) {
        if let Some(b) = self.split.take() {
            b.finish_and_clear();
        }
        if let Some(b) = self.epochs.take() {
            b.finish_and_clear();
        }
    }

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for ProgressRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, name: &str, total_items: usize) {
        self.start_split(name, total_items);
    }
    fn update_test_progress(&mut self, items_processed: usize) {
        self.update_split(items_processed);
    }
    fn end_test(&mut self) {
        self.end_split();
    }
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for ProgressRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(
            format!("{:?}", definition.metric_id),
            definition.name.to_string(),
        );
    }
}

/// A plain-text table: a header row and rows, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let fmt_row = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = fmt_row(header.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    for r in rows {
        out.push('\n');
        out.push_str(&fmt_row(r.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["metric", "before", "after"],
            &[
                vec!["OVERALL/cmc/1".into(), "0.5".into(), "0.75".into()],
                vec!["map/5".into(), "0.25".into(), "1".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "{t}"
        );
        assert!(lines[2].ends_with("0.75"));
        assert!(lines[3].starts_with("map/5 "));
    }
}
