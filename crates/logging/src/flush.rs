//! Buffered files that a background thread flushes at a fixed interval.
//!
//! Writes only copy into a buffer (cheap on the training thread); the flusher pushes them to the
//! OS at least every `interval`, so a crash of the process loses at most that interval.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use oml_interfaces::LoggerError;

use crate::util::io_error;

struct FileState {
    writer: BufWriter<File>,
    dirty: bool,
    /// A flush error met by the background thread, handed to the next caller.
    error: Option<std::io::Error>,
}

/// A file shared by its owner and the flusher thread.
#[derive(Clone)]
pub(crate) struct SyncFile {
    state: Arc<Mutex<FileState>>,
    path: Arc<PathBuf>,
    /// Flush on every write (interval zero).
    eager: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SyncFile {
    /// Opens `path` for appending (created if missing).
    pub fn append(path: &Path, interval: Duration) -> Result<Self, LoggerError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        Ok(Self::from_file(file, path, interval))
    }

    /// Creates `path`, failing if it exists.
    pub fn create_new(path: &Path, interval: Duration) -> Result<Self, LoggerError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        Ok(Self::from_file(file, path, interval))
    }

    fn from_file(file: File, path: &Path, interval: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(FileState {
                writer: BufWriter::with_capacity(64 * 1024, file),
                dirty: false,
                error: None,
            })),
            path: Arc::new(path.to_path_buf()),
            eager: interval.is_zero(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current length of the file on disk plus what is buffered.
    pub fn is_empty(&self) -> Result<bool, LoggerError> {
        let st = lock(&self.state);
        let len = st
            .writer
            .get_ref()
            .metadata()
            .map_err(|e| io_error(&self.path, e))?
            .len();
        Ok(len == 0 && st.writer.buffer().is_empty())
    }

    pub fn write_all(&self, bytes: &[u8]) -> Result<(), LoggerError> {
        let mut st = lock(&self.state);
        if let Some(e) = st.error.take() {
            return Err(io_error(&self.path, e));
        }
        st.writer
            .write_all(bytes)
            .map_err(|e| io_error(&self.path, e))?;
        st.dirty = true;
        if self.eager {
            st.writer.flush().map_err(|e| io_error(&self.path, e))?;
            st.dirty = false;
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<(), LoggerError> {
        let mut st = lock(&self.state);
        if let Some(e) = st.error.take() {
            return Err(io_error(&self.path, e));
        }
        st.writer.flush().map_err(|e| io_error(&self.path, e))?;
        st.dirty = false;
        Ok(())
    }

    /// Flushes and asks the OS to put the data on disk (end of run).
    pub fn sync(&self) -> Result<(), LoggerError> {
        self.flush()?;
        let st = lock(&self.state);
        st.writer
            .get_ref()
            .sync_data()
            .map_err(|e| io_error(&self.path, e))
    }

    fn background_flush(&self) {
        let mut st = lock(&self.state);
        if st.dirty {
            match st.writer.flush() {
                Ok(()) => st.dirty = false,
                Err(e) => {
                    if st.error.is_none() {
                        st.error = Some(e);
                    }
                }
            }
        }
    }
}

/// The thread that flushes a set of files every `interval`; stopped and joined on drop.
pub(crate) struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread, or nothing when `interval` is zero (the files flush on every write).
    pub fn spawn(files: Vec<SyncFile>, interval: Duration) -> Result<Self, LoggerError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        if interval.is_zero() {
            return Ok(Self { stop, handle: None });
        }
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("oml-logging-flush".into())
            .spawn(move || {
                let (m, cv) = &*stop2;
                let mut stopped = lock(m);
                while !*stopped {
                    stopped = cv
                        .wait_timeout(stopped, interval)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    for f in &files {
                        f.background_flush();
                    }
                    stopped = lock(m);
                }
            })
            .map_err(|e| io_error(Path::new("<flusher thread>"), e))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn background_thread_flushes_within_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let f = SyncFile::append(&path, Duration::from_millis(50)).unwrap();
        let _flusher = Flusher::spawn(vec![f.clone()], Duration::from_millis(50)).unwrap();
        f.write_all(b"hello\n").unwrap();
        // Nothing else touches the file: only the flusher can make the bytes visible.
        let t0 = Instant::now();
        while std::fs::read(&path).unwrap() != b"hello\n" {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "not flushed after 5 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn zero_interval_writes_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        let f = SyncFile::append(&path, Duration::ZERO).unwrap();
        let _flusher = Flusher::spawn(vec![f.clone()], Duration::ZERO).unwrap();
        f.write_all(b"a").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a");
    }
}
