//! Checkpoints that survive being killed: atomic files, the last epoch for resuming, the best
//! epoch by the checkpointing metric.
//!
//! Each epoch the Learner saves three records (model, optimizer, LR scheduler) through
//! [`AtomicFileCheckpointer`]: written to a temporary file, synced, then renamed, so a file either
//! exists whole or not at all. [`last_complete_epoch`] finds the newest epoch whose three files
//! all exist: the epoch a re-run resumes after. [`KeepLastAndBest`] keeps that epoch and the
//! best one (by the validation history), deleting the others only after the new files are saved.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use burn::train::checkpoint::{
    Checkpoint, Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;

use crate::history::History;

/// The record kinds the Learner checkpoints, as file-name prefixes.
pub const RECORD_KINDS: [&str; 3] = ["model", "optim", "scheduler"];

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, `fsync`, rename
/// ([`oml_interfaces::fs::write_atomic`]), creating the folder first when missing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    oml_interfaces::fs::write_atomic(path, bytes)
}

/// Runs with the epoch before a record of it is written; an error fails the checkpoint.
pub type BeforeSave = Arc<dyn Fn(usize) -> std::io::Result<()> + Send + Sync>;

/// Saves records as `<dir>/<name>-<epoch>.bpk`, atomically.
#[derive(Clone)]
pub struct AtomicFileCheckpointer {
    dir: PathBuf,
    name: String,
    before_save: Option<BeforeSave>,
}

impl std::fmt::Debug for AtomicFileCheckpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicFileCheckpointer")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .finish()
    }
}

impl AtomicFileCheckpointer {
    /// Checkpoints named `name` in `dir`.
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Self {
        Self {
            dir: dir.into(),
            name: name.to_string(),
            before_save: None,
        }
    }

    /// Runs `hook` with the epoch before each record is written (the pipeline flushes its logs
    /// and records their lengths there, so a resumed run rewinds them to its checkpoint).
    pub fn with_before_save(mut self, hook: BeforeSave) -> Self {
        self.before_save = Some(hook);
        self
    }

    /// The file of `epoch`.
    pub fn path(&self, epoch: usize) -> PathBuf {
        checkpoint_path(&self.dir, &self.name, epoch)
    }
}

/// `<dir>/<name>-<epoch>.bpk`.
pub fn checkpoint_path(dir: &Path, name: &str, epoch: usize) -> PathBuf {
    dir.join(format!("{name}-{epoch}.bpk"))
}

impl<R: Checkpoint> Checkpointer<R> for AtomicFileCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        if let Some(hook) = &self.before_save {
            hook(epoch).map_err(CheckpointerError::IOError)?;
        }
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        write_atomic(&self.path(epoch), &bytes).map_err(CheckpointerError::IOError)
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        match std::fs::remove_file(self.path(epoch)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CheckpointerError::IOError(e))
            }
            _ => Ok(()),
        }
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        let path = self.path(epoch);
        let bytes = std::fs::read(&path).map_err(CheckpointerError::IOError)?;
        R::checkpoint_from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(CheckpointerError::Record)
    }
}

/// Epochs whose model, optimizer and scheduler records all exist in `dir`, ascending.
pub fn complete_epochs(dir: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut model_epochs = BTreeSet::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("model-")
            .and_then(|s| s.strip_suffix(".bpk"))
            && let Ok(epoch) = n.parse::<usize>()
        {
            model_epochs.insert(epoch);
        }
    }
    model_epochs
        .into_iter()
        .filter(|&e| {
            RECORD_KINDS
                .iter()
                .all(|k| checkpoint_path(dir, k, e).is_file())
        })
        .collect()
}

/// The newest epoch with all three records, if any.
pub fn last_complete_epoch(dir: &Path) -> Option<usize> {
    complete_epochs(dir).last().copied()
}

/// Keeps the last epoch (to resume from) and the best epoch (by [`History`]); deletes the rest
/// after the new records are written (a checkpointer thread handles its messages in order).
pub struct KeepLastAndBest {
    history: Arc<Mutex<History>>,
    kept: BTreeSet<usize>,
}

impl KeepLastAndBest {
    /// A strategy reading the best epoch from `history`; `existing` are epochs already on disk
    /// (when resuming), which it will clean up as it goes.
    pub fn new(history: Arc<Mutex<History>>, existing: impl IntoIterator<Item = usize>) -> Self {
        Self {
            history,
            kept: existing.into_iter().collect(),
        }
    }

    /// The epochs that should remain after `epoch` is saved.
    fn keep_after(&self, epoch: usize) -> BTreeSet<usize> {
        let best = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .best()
            .map(|b| b.epoch);
        [Some(epoch), best].into_iter().flatten().collect()
    }
}

impl KeepLastAndBest {
    /// The actions after `epoch`: save it, then delete what is neither it nor the best.
    pub fn plan(&mut self, epoch: usize) -> Vec<CheckpointingAction> {
        let keep = self.keep_after(epoch);
        let mut actions = vec![CheckpointingAction::Save];
        for &old in self.kept.iter().filter(|e| !keep.contains(e)) {
            actions.push(CheckpointingAction::Delete(old));
        }
        self.kept = keep;
        actions
    }
}

impl CheckpointingStrategy for KeepLastAndBest {
    fn checkpointing(
        &mut self,
        epoch: usize,
        _store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        self.plan(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EpochRecord;
    use oml_interfaces::MetricsReport;

    fn report(v: f64) -> MetricsReport {
        let mut r = MetricsReport::default();
        r.insert("OVERALL", "cmc", "1", v);
        r
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn complete_epochs_need_all_three_records() {
        let dir = tempfile::tempdir().unwrap();
        for e in [1, 2, 3] {
            for k in RECORD_KINDS {
                if !(e == 3 && k == "scheduler") {
                    write_atomic(&checkpoint_path(dir.path(), k, e), b"x").unwrap();
                }
            }
        }
        std::fs::write(dir.path().join("model-x.bpk"), b"x").unwrap();
        assert_eq!(complete_epochs(dir.path()), vec![1, 2]);
        assert_eq!(last_complete_epoch(dir.path()), Some(2));
        assert_eq!(last_complete_epoch(&dir.path().join("missing")), None);
    }

    #[test]
    fn strategy_keeps_last_and_best_and_saves_before_deleting() {
        let history = Arc::new(Mutex::new(History::new(
            "OVERALL/cmc/1",
            crate::config::Mode::Max,
        )));
        let mut s = KeepLastAndBest::new(history.clone(), []);
        history
            .lock()
            .unwrap()
            .push(EpochRecord::new(1, report(0.5)));
        assert_eq!(s.plan(1), vec![CheckpointingAction::Save]);
        // epoch 2 not validated: keep 1 (best) and 2 (last)
        assert_eq!(s.plan(2), vec![CheckpointingAction::Save]);
        history
            .lock()
            .unwrap()
            .push(EpochRecord::new(3, report(0.4)));
        assert_eq!(
            s.plan(3),
            vec![CheckpointingAction::Save, CheckpointingAction::Delete(2)]
        );
        history
            .lock()
            .unwrap()
            .push(EpochRecord::new(4, report(0.9)));
        assert_eq!(
            s.plan(4),
            vec![
                CheckpointingAction::Save,
                CheckpointingAction::Delete(1),
                CheckpointingAction::Delete(3)
            ]
        );
    }
}
