//! Atomic file writes, shared by every crate that writes files for others to read.
//!
//! Checkpoints, embeddings, metrics, figures, reports and downloads must never be seen half
//! written, not by a concurrent reader and not after a crash. [`write_atomic`] and
//! [`write_atomic_with`] write to a temporary file beside the target, flush and `fsync` it,
//! then rename it over the target, so the target holds either its old content or the complete
//! new one. One implementation gives every caller the same guarantees:
//!
//! - the temporary file lives in the target's folder (a rename across file systems would not
//!   be atomic) under a unique name (`.<name>.<pid>.<n>.tmp`), so concurrent writers of the
//!   same target, in one process or several, never share a temporary file;
//! - it is created with the process umask (like [`std::fs::File::create`]), not with the
//!   `0600` mode of `tempfile`'s files, so outputs stay readable by whoever could read them
//!   before;
//! - on any error (or a panic in the writer closure) the temporary file is removed;
//! - when the target is a symbolic link, the link's target is replaced and the link kept;
//! - errors keep their [`std::io::ErrorKind`] and their message names the target.
//!
//! Folders are not created: create the target's folder first when it may be missing.
//!
//! # Example
//!
//! ```
//! use std::io::Write;
//!
//! let path = std::env::temp_dir().join(format!("oml-fs-doc-{}.txt", std::process::id()));
//! oml_interfaces::fs::write_atomic(&path, b"first")?;
//! assert_eq!(std::fs::read(&path)?, b"first");
//! // Streaming: the closure writes into the temporary file.
//! oml_interfaces::fs::write_atomic_with(&path, |w| {
//!     w.write_all(b"sec")?;
//!     w.write_all(b"ond")
//! })?;
//! assert_eq!(std::fs::read_to_string(&path)?, "second");
//! std::fs::remove_file(&path)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the temporary files of one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// At most this many symbolic links are followed from the target.
const MAX_LINKS: usize = 40;

/// Replaces `path` with `bytes` atomically (see the [module docs](crate::fs)).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Replaces `path` atomically with what `write` writes (see the [module docs](crate::fs)).
///
/// `write` gets a buffered writer on the temporary file; it is flushed and synced after `write`
/// returns `Ok`. When `write` returns an error (for example of kind
/// [`InvalidData`](io::ErrorKind::InvalidData) after checking what it wrote), nothing is
/// renamed, the temporary file is removed, and the error is returned with the same kind.
pub fn write_atomic_with<F>(path: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let target = resolve_symlinks(path).map_err(named)?;
    let dir = parent_dir(&target);
    let (tmp, file) = create_temp(&dir, &target).map_err(named)?;
    let mut guard = TempGuard {
        path: tmp,
        armed: true,
    };
    fill_and_rename(file, &guard.path, &target, write).map_err(named)?;
    guard.armed = false;
    Ok(())
}

/// Writes through `write`, flushes, syncs, closes and renames `tmp` to `target`.
fn fill_and_rename<F>(file: File, tmp: &Path, target: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let mut writer = BufWriter::new(file);
    write(&mut writer)?;
    let file = writer
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    drop(file);
    move_synced(tmp, target)
}

/// Renames `from` (a file or a folder) to `to` on the same file system, then syncs the folder of
/// `to`, so that the new name survives a crash. With the files of a folder written (and synced)
/// under a temporary name, one call publishes them all at once: the rename is atomic, readers
/// see the folder whole or not at all. The one rename of the workspace's writers.
pub fn move_synced(from: &Path, to: &Path) -> io::Result<()> {
    if from.is_dir() {
        sync_dir(from);
    }
    std::fs::rename(from, to)?;
    sync_dir(&parent_dir(to));
    Ok(())
}

/// Removes the temporary file on drop unless disarmed (after a successful rename).
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The folder of `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Follows symbolic links from `path` to the file that should receive the content (which may
/// not exist yet, for a new file or a dangling link).
fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = if link.is_absolute() {
                    link
                } else {
                    parent_dir(&current).join(link)
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("more than {MAX_LINKS} levels of symbolic links"),
    ))
}

/// Creates a new, uniquely named temporary file for `target` in `dir`.
fn create_temp(dir: &Path, target: &Path) -> io::Result<(PathBuf, File)> {
    let name: String = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?
        .to_string_lossy()
        .chars()
        .take(100)
        .collect();
    let pid = std::process::id();
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{pid}.{n}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            // a leftover of a killed process that had the same pid
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "cannot find a free temporary file name in {}",
            dir.display()
        ),
    ))
}

/// Makes the rename itself durable (best effort: folders cannot be opened or synced everywhere).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        write_atomic_with(&p, |w| w.write_all(b"second")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["a.bin"]);
    }

    #[test]
    fn a_failing_writer_keeps_the_old_file_and_removes_the_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"old").unwrap();
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::new(io::ErrorKind::InvalidData, "bad content"))
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let message = err.to_string();
        assert!(
            message.contains(&p.display().to_string()) && message.contains("bad content"),
            "{message}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.bin"]);

        // a new target is not created either
        let q = dir.path().join("b.bin");
        assert!(write_atomic_with(&q, |_| Err(io::Error::other("no"))).is_err());
        assert_eq!(names(dir.path()), ["a.bin"]);
    }

    #[test]
    fn a_panicking_writer_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        let result = std::panic::catch_unwind(|| {
            let _ = write_atomic_with(&p, |w| {
                w.write_all(b"x")?;
                panic!("writer panicked");
            });
        });
        assert!(result.is_err());
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("a.bin");
        let err = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_target_stays_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        let link = dir.path().join("link.txt");
        std::fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink("real.txt", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["link.txt", "real.txt"]);

        // a dangling link gets its target created
        let gone = dir.path().join("gone.txt");
        let dangling = dir.path().join("dangling.txt");
        std::os::unix::fs::symlink(&gone, &dangling).unwrap();
        write_atomic(&dangling, b"made").unwrap();
        assert!(
            std::fs::symlink_metadata(&dangling)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&gone).unwrap(), b"made");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_honours_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        // not tempfile's 0600: group/other read bits survive the usual umask (022)
        assert_ne!(mode & 0o044, 0, "mode {mode:o}");
    }
}
