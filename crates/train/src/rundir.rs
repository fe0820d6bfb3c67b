//! Run directories: where `oml train` writes, and how a re-run finds the run it resumes.
//!
//! A run directory holds `config.yaml` (the config as given), `state.json` (status, the config's
//! fingerprint, the last finished epoch), `history.json`, `metrics.json`, `checkpoints/`,
//! `figures/`, `tensorboard/` and the local logger's files. Re-running the same config resumes
//! the newest unfinished run of that config under `logs_root` (or the named `logs_folder`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::error::TrainError;

/// Status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started and not finished (running, killed or failed): a re-run resumes it.
    Running,
    /// Completed.
    Finished,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Status.
    pub status: Status,
    /// Fingerprint of the config ([`fingerprint`]).
    pub config_hash: String,
    /// The last epoch with a complete checkpoint, as last written.
    pub last_epoch: usize,
}

/// The state file of a run directory.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Reads `state.json`, if present and readable.
pub fn read_state(dir: &Path) -> Option<RunState> {
    serde_json::from_slice(&std::fs::read(state_path(dir)).ok()?).ok()
}

/// Writes `state.json` atomically.
pub fn write_state(dir: &Path, state: &RunState) -> Result<(), TrainError> {
    let path = state_path(dir);
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::io(&path, e))?;
    write_atomic(&path, &json).map_err(|e| TrainError::io(&path, e))
}

/// FNV-1a (64-bit) of the config's canonical JSON: equal configs, equal fingerprints.
pub fn fingerprint(config: &serde_json::Value) -> String {
    let text = config.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `YYYY-MM-DD_HH-MM-SS` (UTC) of a time.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}_{:02}-{:02}-{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Where a run goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDirChoice {
    /// The folder.
    pub path: PathBuf,
    /// It holds an unfinished run of the same config, to resume.
    pub resume: bool,
}

/// Chooses the run directory.
///
/// - `explicit` (a CLI flag or the config's `logs_folder` under `logs_root`): used as is; an
///   unfinished run of the same config there is resumed; a finished one, or one of another
///   config, is an error (nothing is overwritten).
/// - otherwise, when `resume`, the newest unfinished run of this config under `logs_root`;
///   else a new folder `<logs_root>/<stem>_<date>_<time>[_<postfix>]`.
pub fn choose_run_dir(
    logs_root: &Path,
    explicit: Option<&Path>,
    stem: &str,
    postfix: Option<&str>,
    hash: &str,
    resume: bool,
) -> Result<RunDirChoice, TrainError> {
    if let Some(dir) = explicit {
        return match read_state(dir) {
            None => {
                if dir.exists() && !dir.is_dir() {
                    return Err(TrainError::io(
                        dir,
                        "is a file, not a folder; choose a new or empty folder for the run",
                    ));
                }
                // A folder oml-rs did not make (no state.json) is the user's: never write into it.
                let non_empty = std::fs::read_dir(dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if non_empty {
                    return Err(TrainError::io(
                        dir,
                        "already holds files and no oml-rs run (state.json); choose a new or empty folder, so nothing of yours is overwritten",
                    ));
                }
                Ok(RunDirChoice {
                    path: dir.to_path_buf(),
                    resume: false,
                })
            }
            Some(s) if s.config_hash != hash => Err(TrainError::Training(format!(
                "{} holds a run of a different config; choose another folder (logs_folder) or delete it",
                dir.display()
            ))),
            Some(s) if s.status == Status::Finished => Err(TrainError::Training(format!(
                "{} holds a finished run of this config; choose another folder (logs_folder) or delete it",
                dir.display()
            ))),
            Some(_) if !resume => Err(TrainError::Training(format!(
                "{} holds an unfinished run of this config and resuming is off; choose another folder",
                dir.display()
            ))),
            Some(_) => Ok(RunDirChoice {
                path: dir.to_path_buf(),
                resume: true,
            }),
        };
    }
    if resume && let Some(dir) = newest_unfinished(logs_root, hash) {
        return Ok(RunDirChoice {
            path: dir,
            resume: true,
        });
    }
    let mut name = format!("{stem}_{}", timestamp(SystemTime::now()));
    if let Some(p) = postfix.filter(|p| !p.is_empty()) {
        name = format!("{name}_{p}");
    }
    let mut path = logs_root.join(&name);
    let mut i = 2;
    while path.exists() {
        path = logs_root.join(format!("{name}_{i}"));
        i += 1;
    }
    Ok(RunDirChoice {
        path,
        resume: false,
    })
}

/// The most recently modified folder under `logs_root` holding an unfinished run with `hash`.
pub fn newest_unfinished(logs_root: &Path, hash: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(logs_root).ok()?;
    entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter(|e| {
            read_state(&e.path())
                .is_some_and(|s| s.status == Status::Running && s.config_hash == hash)
        })
        .max_by_key(|e| {
            std::fs::metadata(state_path(&e.path()))
                .and_then(|m| m.modified())
                .ok()
        })
        .map(|e| e.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01_00-00-00");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3_723); // 2000-02-29 01:02:03
        assert_eq!(timestamp(t), "2000-02-29_01-02-03");
    }

    #[test]
    fn fingerprints_follow_content() {
        let a = fingerprint(&serde_json::json!({"lr": 0.1}));
        assert_eq!(a, fingerprint(&serde_json::json!({"lr": 0.1})));
        assert_ne!(a, fingerprint(&serde_json::json!({"lr": 0.2})));
    }

    #[test]
    fn choice_resumes_unfinished_runs_of_the_same_config_only() {
        let root = tempfile::tempdir().unwrap();
        let first = choose_run_dir(root.path(), None, "cfg", Some("x"), "h1", true).unwrap();
        assert!(!first.resume);
        assert!(
            first
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cfg_")
        );
        assert!(first.path.to_string_lossy().ends_with("_x"));
        std::fs::create_dir_all(&first.path).unwrap();
        write_state(
            &first.path,
            &RunState {
                status: Status::Running,
                config_hash: "h1".into(),
                last_epoch: 2,
            },
        )
        .unwrap();
        let again = choose_run_dir(root.path(), None, "cfg", Some("x"), "h1", true).unwrap();
        assert_eq!(
            again,
            RunDirChoice {
                path: first.path.clone(),
                resume: true
            }
        );
        let other = choose_run_dir(root.path(), None, "cfg", Some("x"), "h2", true).unwrap();
        assert!(!other.resume);
        assert_ne!(other.path, first.path);
        let fresh = choose_run_dir(root.path(), None, "cfg", Some("x"), "h1", false).unwrap();
        assert!(!fresh.resume);
        write_state(
            &first.path,
            &RunState {
                status: Status::Finished,
                config_hash: "h1".into(),
                last_epoch: 3,
            },
        )
        .unwrap();
        assert!(
            !choose_run_dir(root.path(), None, "cfg", None, "h1", true)
                .unwrap()
                .resume
        );
        let e =
            choose_run_dir(root.path(), Some(&first.path), "cfg", None, "h1", true).unwrap_err();
        assert!(e.to_string().contains("finished"), "{e}");
        let e =
            choose_run_dir(root.path(), Some(&first.path), "cfg", None, "h9", true).unwrap_err();
        assert!(e.to_string().contains("different config"), "{e}");
    }

    /// An explicit folder that oml-rs did not make is never written into: a non-empty one and a
    /// file are errors naming them; a new or empty folder is used.
    #[test]
    fn explicit_folders_of_the_user_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let notes = root.path().join("notes");
        std::fs::create_dir_all(&notes).unwrap();
        std::fs::write(notes.join("config.yaml"), "my notes").unwrap();
        let e = choose_run_dir(root.path(), Some(&notes), "cfg", None, "h1", true).unwrap_err();
        assert!(
            e.to_string().contains("notes") && e.to_string().contains("already holds files"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(notes.join("config.yaml")).unwrap(),
            "my notes"
        );
        let file = root.path().join("a_file");
        std::fs::write(&file, "x").unwrap();
        let e = choose_run_dir(root.path(), Some(&file), "cfg", None, "h1", true).unwrap_err();
        assert!(e.to_string().contains("is a file"), "{e}");
        let empty = root.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        for dir in [empty, root.path().join("new")] {
            let c = choose_run_dir(root.path(), Some(&dir), "cfg", None, "h1", true).unwrap();
            assert_eq!((c.path, c.resume), (dir, false));
        }
    }
}
