//! Checkpoints whose unit is the epoch: a run killed at any moment, or stopped by a full disk,
//! keeps its newest complete epoch.
//!
//! Each epoch the Learner hands three records (model, optimizer, LR scheduler) to three
//! checkpointer threads. They all write into one [`EpochStore`], which stages epoch N in
//! `checkpoints/epoch-N.partial/` (every file written atomically: temporary file, `fsync`,
//! rename) and, once the three records and the pipeline's extras (the model for `--weights`,
//! the log marks) are there, publishes it with one rename to `checkpoints/epoch-N/`. Only then
//! are older epochs removed, except the best one by the validation history. A folder ending in
//! `.partial` is never read: [`complete_epochs`] lists the published epochs, and
//! [`EpochStore::discard_partial`] removes what a kill or a failed write left behind.
//!
//! A write that fails (a full disk, say) fails that epoch as a whole: its staging folder is
//! removed, training stops with an error naming the file, and the previous epoch stays published.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use burn::store::ModuleRecord;
use burn::train::checkpoint::{
    Checkpoint, Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;

use crate::history::History;

/// The records the Learner checkpoints, as file stems inside an epoch's folder.
pub const RECORD_KINDS: [&str; 3] = ["model", "optim", "scheduler"];

/// The file of an epoch's folder holding the pipeline's model as `--weights` loads it.
pub const WEIGHTS_FILE: &str = "weights.bpk";

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, `fsync`, rename
/// ([`oml_interfaces::fs::write_atomic`]), creating the folder first when missing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    oml_interfaces::fs::write_atomic(path, bytes)
}

/// `<dir>/epoch-<epoch>`: the published folder of an epoch.
pub fn epoch_dir(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch}"))
}

/// `<dir>/epoch-<epoch>/<kind>.bpk`: a record of a published epoch.
pub fn record_path(dir: &Path, kind: &str, epoch: usize) -> PathBuf {
    epoch_dir(dir, epoch).join(format!("{kind}.bpk"))
}

/// The staging folder of an epoch (never read: published by renaming it).
fn staging_dir(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch}.partial"))
}

/// Epochs published in `dir` with all three records, ascending.
pub fn complete_epochs(dir: &Path) -> Vec<usize> {
    published(dir)
        .into_iter()
        .filter(|&e| {
            RECORD_KINDS
                .iter()
                .all(|k| record_path(dir, k, e).is_file())
        })
        .collect()
}

/// The newest published epoch, if any.
pub fn last_complete_epoch(dir: &Path) -> Option<usize> {
    complete_epochs(dir).last().copied()
}

/// Moves epochs saved in the layout of earlier versions (`model-N.bpk`, `optim-N.bpk`,
/// `scheduler-N.bpk`, `logs-N.json` side by side) into their `epoch-N/` folders, so an unfinished
/// run started by an earlier version resumes. Epochs missing a record are left alone.
pub fn migrate_flat_layout(dir: &Path) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let flat: BTreeSet<usize> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?
                .strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .collect();
    for epoch in flat {
        let old = |kind: &str| dir.join(format!("{kind}-{epoch}.bpk"));
        if !RECORD_KINDS.iter().all(|k| old(k).is_file()) {
            continue;
        }
        let staging = staging_dir(dir, epoch);
        std::fs::create_dir_all(&staging)?;
        for kind in RECORD_KINDS {
            oml_interfaces::fs::move_synced(&old(kind), &staging.join(format!("{kind}.bpk")))?;
        }
        let marks = dir.join(format!("logs-{epoch}.json"));
        if marks.is_file() {
            oml_interfaces::fs::move_synced(&marks, &staging.join(LOG_MARKS_FILE))?;
        }
        oml_interfaces::fs::move_synced(&staging, &epoch_dir(dir, epoch))?;
    }
    Ok(())
}

/// The file of an epoch's folder with the append-only logs' lengths at its checkpoint.
pub const LOG_MARKS_FILE: &str = "logs.json";

/// Writes what the pipeline keeps beside epoch N's records into its staging folder (the model
/// for `--weights`, the log marks), given the model's record.
pub type StageExtras = Arc<dyn Fn(usize, ModuleRecord, &Path) -> io::Result<()> + Send + Sync>;

/// The append-only logs' lengths at epoch N's checkpoint, as the bytes of `logs.json`.
pub type MeasureLogs = Arc<dyn Fn(usize) -> io::Result<Vec<u8>> + Send + Sync>;

/// Runs once epoch N is published (the run's `state.json` records it).
pub type OnPublish = Arc<dyn Fn(usize) -> io::Result<()> + Send + Sync>;

/// Epochs in progress: which records each staged epoch has, and which failed.
#[derive(Default)]
struct Staged {
    records: BTreeMap<usize, BTreeSet<&'static str>>,
    failed: BTreeSet<usize>,
}

/// The checkpoint folder of a run, written by the three checkpointer threads (see the
/// [module docs](self)).
pub struct EpochStore {
    dir: PathBuf,
    history: Arc<Mutex<History>>,
    extras: Option<StageExtras>,
    marks: Option<MeasureLogs>,
    on_publish: Option<OnPublish>,
    /// Held while a record is written: the threads take turns, so a failed epoch's staging
    /// folder is never removed under another thread's write.
    staged: Mutex<Staged>,
}

impl EpochStore {
    /// A store in `dir`, keeping besides the newest epoch the best one by `history`.
    pub fn new(dir: impl Into<PathBuf>, history: Arc<Mutex<History>>) -> Self {
        Self {
            dir: dir.into(),
            history,
            extras: None,
            marks: None,
            on_publish: None,
            staged: Mutex::default(),
        }
    }

    /// Records in each epoch's folder (`logs.json`) what `measure` returns when the model
    /// record reaches its thread, before anything else is done with it.
    pub fn with_log_marks(mut self, measure: MeasureLogs) -> Self {
        self.marks = Some(measure);
        self
    }

    /// Writes `extras` into each epoch's folder before its model record.
    pub fn with_extras(mut self, extras: StageExtras) -> Self {
        self.extras = Some(extras);
        self
    }

    /// Runs `hook` after each epoch is published.
    pub fn with_on_publish(mut self, hook: OnPublish) -> Self {
        self.on_publish = Some(hook);
        self
    }

    /// The checkpointers of the three records, for `SupervisedTraining::with_custom_checkpointers`.
    pub fn checkpointers(self: &Arc<Self>) -> (ModelRecords, Records, Records) {
        (
            ModelRecords(self.clone()),
            Records {
                store: self.clone(),
                kind: "optim",
            },
            Records {
                store: self.clone(),
                kind: "scheduler",
            },
        )
    }

    /// Removes staging folders (of a killed run, or of an epoch whose write failed).
    pub fn discard_partial(&self) -> io::Result<()> {
        let _staged = self.lock();
        discard_partial(&self.dir)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Staged> {
        self.staged.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stages record `kind` of `epoch` with `write` (into the staging folder), publishing the
    /// epoch once it has every record.
    fn stage(
        &self,
        epoch: usize,
        kind: &'static str,
        write: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut staged = self.lock();
        if staged.failed.contains(&epoch) {
            // the epoch is lost already; its error was reported by the record that failed
            return Ok(());
        }
        let staging = staging_dir(&self.dir, epoch);
        let result = std::fs::create_dir_all(&staging)
            .map_err(|e| named(&staging, e))
            .and_then(|()| write(&staging));
        if let Err(e) = result {
            staged.failed.insert(epoch);
            staged.records.remove(&epoch);
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let kinds = staged.records.entry(epoch).or_default();
        kinds.insert(kind);
        if kinds.len() < RECORD_KINDS.len() {
            return Ok(());
        }
        staged.records.remove(&epoch);
        self.publish(epoch, &staging)
    }

    /// Renames epoch N's staging folder into place, then removes the epochs no longer kept.
    fn publish(&self, epoch: usize, staging: &Path) -> io::Result<()> {
        let target = epoch_dir(&self.dir, epoch);
        if target.exists() {
            // an epoch trained again after a resume from an older one
            remove_epoch(&self.dir, &target)?;
        }
        oml_interfaces::fs::move_synced(staging, &target).map_err(|e| named(&target, e))?;
        if let Some(hook) = &self.on_publish {
            hook(epoch)?;
        }
        let best = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .best()
            .map(|b| b.epoch);
        for old in published(&self.dir) {
            if old != epoch && Some(old) != best {
                remove_epoch(&self.dir, &epoch_dir(&self.dir, old))?;
            }
        }
        Ok(())
    }
}

/// Every `epoch-N` folder in `dir` (complete or not), ascending.
fn published(dir: &Path) -> Vec<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut epochs: Vec<usize> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("epoch-")?.parse().ok())
        .collect();
    epochs.sort_unstable();
    epochs
}

/// Removes every `*.partial` folder in `dir` (what a killed run or a failed write left).
pub fn discard_partial(dir: &Path) -> io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with(".partial") {
            std::fs::remove_dir_all(e.path()).map_err(|err| named(&e.path(), err))?;
        }
    }
    Ok(())
}

/// Unpublishes an epoch folder with one rename, then deletes it (a kill in between leaves a
/// `.partial` folder, never a half-deleted epoch that looks complete).
fn remove_epoch(dir: &Path, epoch_folder: &Path) -> io::Result<()> {
    let name = epoch_folder
        .file_name()
        .unwrap_or_default()
        .to_string_lossy();
    let doomed = dir.join(format!("{name}.removed.partial"));
    oml_interfaces::fs::move_synced(epoch_folder, &doomed).map_err(|e| named(epoch_folder, e))?;
    std::fs::remove_dir_all(&doomed).map_err(|e| named(&doomed, e))
}

/// `e` with `path` in its message.
fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The model record's checkpointer (writes the pipeline's extras first).
pub struct ModelRecords(Arc<EpochStore>);

/// The optimizer's or the scheduler's checkpointer.
pub struct Records {
    store: Arc<EpochStore>,
    kind: &'static str,
}

fn restore<R: Checkpoint>(dir: &Path, kind: &str, epoch: usize) -> Result<R, CheckpointerError> {
    let path = record_path(dir, kind, epoch);
    let bytes = std::fs::read(&path).map_err(|e| CheckpointerError::IOError(named(&path, e)))?;
    R::checkpoint_from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(CheckpointerError::Record)
}

/// A record's bytes, read from the device before the store's lock is taken (on a GPU this is
/// the slow part, and the three threads do it side by side).
fn record_bytes<R: Checkpoint>(
    kind: &str,
    record: R,
) -> Result<burn::tensor::Bytes, CheckpointerError> {
    record.checkpoint_into_bytes().map_err(|e| {
        CheckpointerError::IOError(io::Error::other(format!("the {kind} record: {e}")))
    })
}

fn write_record(staging: &Path, kind: &str, bytes: &[u8]) -> io::Result<()> {
    oml_interfaces::fs::write_atomic(&staging.join(format!("{kind}.bpk")), bytes)
}

impl Checkpointer<ModuleRecord> for ModelRecords {
    fn save(&self, epoch: usize, record: ModuleRecord) -> Result<(), CheckpointerError> {
        // first, as close to the Learner's hand-over as this thread gets: the logs' lengths
        let marks = match &self.0.marks {
            Some(measure) => Some(measure(epoch).map_err(CheckpointerError::IOError)?),
            None => None,
        };
        // the record goes on to the extras only when there are any: no copy otherwise
        let extras = self.0.extras.clone();
        let (bytes, record) = match extras {
            Some(_) => (record_bytes("model", record.clone())?, Some(record)),
            None => (record_bytes("model", record)?, None),
        };
        self.0
            .stage(epoch, "model", |staging| {
                if let Some(marks) = &marks {
                    oml_interfaces::fs::write_atomic(&staging.join(LOG_MARKS_FILE), marks)?;
                }
                if let (Some(extras), Some(record)) = (&extras, record) {
                    extras(epoch, record, staging)?;
                }
                write_record(staging, "model", &bytes)
            })
            .map_err(CheckpointerError::IOError)
    }

    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        // old epochs are removed by the store, once a newer one is published
        Ok(())
    }

    fn restore(&self, epoch: usize) -> Result<ModuleRecord, CheckpointerError> {
        restore(&self.0.dir, "model", epoch)
    }
}

impl<R: Checkpoint> Checkpointer<R> for Records {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let bytes = record_bytes(self.kind, record)?;
        self.store
            .stage(epoch, self.kind, |staging| {
                write_record(staging, self.kind, &bytes)
            })
            .map_err(CheckpointerError::IOError)
    }

    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        restore(&self.store.dir, self.kind, epoch)
    }
}

/// Saves every epoch; the [`EpochStore`] decides what to keep once an epoch is published.
pub struct EveryEpoch;

impl CheckpointingStrategy for EveryEpoch {
    fn checkpointing(
        &mut self,
        _epoch: usize,
        _store: &EventStoreClient,
    ) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
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

    fn history() -> Arc<Mutex<History>> {
        Arc::new(Mutex::new(History::new(
            "OVERALL/cmc/1",
            crate::config::Mode::Max,
        )))
    }

    fn save(store: &EpochStore, epoch: usize, kind: &'static str) -> io::Result<()> {
        store.stage(epoch, kind, |staging| {
            oml_interfaces::fs::write_atomic(&staging.join(format!("{kind}.bpk")), b"x")
        })
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(entries(p.parent().unwrap()), vec!["a.bin"]);
    }

    #[test]
    fn an_epoch_is_published_only_with_all_its_records_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let h = history();
        let store = EpochStore::new(dir.path(), h.clone());
        // the three threads interleave: epoch 2's optimizer arrives before epoch 1's scheduler
        save(&store, 1, "model").unwrap();
        save(&store, 1, "optim").unwrap();
        save(&store, 2, "model").unwrap();
        save(&store, 2, "optim").unwrap();
        assert_eq!(complete_epochs(dir.path()), Vec::<usize>::new());
        save(&store, 1, "scheduler").unwrap();
        assert_eq!(complete_epochs(dir.path()), vec![1]);
        h.lock().unwrap().push(EpochRecord::new(1, report(0.9)));
        save(&store, 2, "scheduler").unwrap();
        // 1 is the best: kept beside the newest
        assert_eq!(complete_epochs(dir.path()), vec![1, 2]);
        h.lock().unwrap().push(EpochRecord::new(3, report(0.95)));
        for kind in RECORD_KINDS {
            save(&store, 3, kind).unwrap();
        }
        assert_eq!(complete_epochs(dir.path()), vec![3]);
        assert_eq!(entries(dir.path()), vec!["epoch-3"]);
        assert_eq!(
            entries(&epoch_dir(dir.path(), 3)),
            vec!["model.bpk", "optim.bpk", "scheduler.bpk"]
        );
    }

    #[test]
    fn a_failed_write_loses_only_its_epoch_and_leaves_no_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        let full_disk: StageExtras = Arc::new(|epoch, _, staging| {
            if epoch == 2 {
                let path = staging.join(WEIGHTS_FILE);
                oml_interfaces::fs::write_atomic_with(&path, |w| {
                    use std::io::Write;
                    w.write_all(b"half")?;
                    Err(io::Error::new(io::ErrorKind::StorageFull, "No space left"))
                })
            } else {
                Ok(())
            }
        });
        let store = Arc::new(EpochStore::new(dir.path(), history()).with_extras(full_disk));
        let (model, optim, scheduler) = store.checkpointers();
        let record = || {
            let device = oml_interfaces::device::test_device();
            let linear = burn::nn::LinearConfig::new(2, 2).init(&device);
            burn::module::Module::into_record(linear)
        };
        for epoch in [1, 2] {
            save(&store, epoch, "optim").unwrap();
            let result = Checkpointer::<ModuleRecord>::save(&model, epoch, record());
            if epoch == 2 {
                let err = result.unwrap_err().to_string();
                assert!(
                    err.contains("epoch-2.partial") && err.contains(WEIGHTS_FILE),
                    "{err}"
                );
            } else {
                result.unwrap();
            }
            // the failed epoch's last record is dropped, not staged again
            save(&store, epoch, "scheduler").unwrap();
        }
        assert_eq!(complete_epochs(dir.path()), vec![1]);
        assert_eq!(entries(dir.path()), vec!["epoch-1"]);
        let restored: ModuleRecord = model.restore(1).unwrap();
        assert_eq!(restored.len(), 2);
        let _ = (optim, scheduler);
        store.discard_partial().unwrap();
        assert_eq!(entries(dir.path()), vec!["epoch-1"]);
    }

    #[test]
    fn leftovers_of_a_kill_are_discarded_and_earlier_layouts_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for kind in RECORD_KINDS {
            std::fs::write(d.join(format!("{kind}-4.bpk")), kind).unwrap();
        }
        std::fs::write(d.join("logs-4.json"), "{}").unwrap();
        // epoch 5 lacks its scheduler: not an epoch
        std::fs::write(d.join("model-5.bpk"), "m").unwrap();
        std::fs::create_dir_all(d.join("epoch-6.partial")).unwrap();
        std::fs::write(d.join("epoch-6.partial/model.bpk"), "m").unwrap();
        migrate_flat_layout(d).unwrap();
        discard_partial(d).unwrap();
        assert_eq!(complete_epochs(d), vec![4]);
        assert_eq!(entries(d), vec!["epoch-4", "model-5.bpk"]);
        assert_eq!(
            std::fs::read_to_string(record_path(d, "optim", 4)).unwrap(),
            "optim"
        );
        assert!(epoch_dir(d, 4).join(LOG_MARKS_FILE).is_file());
    }
}
