//! Writes in progress, so that a process told to stop at once (a second
//! signal) leaves nothing behind: a local write's staged file (`name#N`,
//! renamed over `name` when whole) is removed, and a multipart upload to a
//! bucket is aborted (S3 and GCS keep the parts of an upload that is
//! neither completed nor aborted, and bill for them).
//! [`Store`](super::store::Store) stages and registers each write through
//! [`global`]; [`Inflight::abort_all`] is what the stop calls. It closes the
//! registry under the same lock that creates staged files and registers
//! uploads, so no write can begin after it has looked: a staged file made
//! before it is removed by its exact name (the writer's rename then fails),
//! and a write that comes after it is refused before it creates anything.
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use object_store::MultipartUpload;

/// A multipart upload that can be aborted from another thread.
pub type SharedUpload = Arc<tokio::sync::Mutex<Box<dyn MultipartUpload>>>;

/// One write in progress.
enum Write {
    /// A local file's staged copy `name#N` (removed).
    Staged(PathBuf),
    /// A multipart upload (aborted).
    Upload(SharedUpload),
}

#[derive(Default)]
struct Registry {
    /// Set by `abort_all`: nothing new may begin.
    closed: bool,
    next: u64,
    writes: BTreeMap<u64, Write>,
}

/// The writes in progress of a process.
pub struct Inflight(Mutex<Registry>);

/// The process's registry.
pub fn global() -> &'static Inflight {
    static G: std::sync::OnceLock<Inflight> = std::sync::OnceLock::new();
    G.get_or_init(Inflight::new)
}

/// A write refused because the process is stopping at once.
pub fn stopping() -> std::io::Error {
    std::io::Error::other("the process is stopping at once: no new write begins")
}

/// Keeps a write registered until dropped.
pub struct Registered<'a>(&'a Inflight, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.lock().writes.remove(&self.1);
    }
}

impl Inflight {
    pub fn new() -> Inflight {
        Inflight(Mutex::new(Registry::default()))
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, r: &mut Registry, w: Write) -> Registered<'_> {
        let id = r.next;
        r.next += 1;
        r.writes.insert(id, w);
        Registered(self, id)
    }

    /// Creates `file`'s staged copy `file#N` (a new file: a number taken by
    /// another writer is skipped) and registers it. Refused once
    /// [`abort_all`](Self::abort_all) has run.
    pub fn stage(&self, file: &Path) -> std::io::Result<(Registered<'_>, PathBuf, File)> {
        let mut r = self.lock();
        if r.closed {
            return Err(stopping());
        }
        let mut name = file.as_os_str().to_owned();
        name.push("#");
        for n in 1u32.. {
            let mut staged = name.clone();
            staged.push(n.to_string());
            let staged = PathBuf::from(staged);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staged)
            {
                Ok(f) => {
                    return Ok((
                        self.insert(&mut r, Write::Staged(staged.clone())),
                        staged,
                        f,
                    ))
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free staged name"))
    }

    /// Registers an upload already begun; `None` once
    /// [`abort_all`](Self::abort_all) has run (the caller aborts it).
    pub fn register_upload(&self, u: SharedUpload) -> Option<Registered<'_>> {
        let mut r = self.lock();
        (!r.closed).then(|| self.insert(&mut r, Write::Upload(u)))
    }

    /// Closes the registry and aborts every write in progress: removes
    /// staged local files and aborts multipart uploads (each within
    /// `timeout`). Returns how many it cleaned.
    pub fn abort_all(&self, timeout: Duration) -> usize {
        let writes: Vec<Write> = {
            let mut r = self.lock();
            r.closed = true;
            std::mem::take(&mut r.writes).into_values().collect()
        };
        let mut cleaned = 0;
        for w in writes {
            match w {
                Write::Staged(p) => cleaned += usize::from(std::fs::remove_file(&p).is_ok()),
                Write::Upload(u) => cleaned += usize::from(abort_upload(&u, timeout)),
            }
        }
        cleaned
    }
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight::new()
    }
}

/// Aborts one upload within `timeout`; whether it was.
fn abort_upload(u: &SharedUpload, timeout: Duration) -> bool {
    let Ok(rt) = super::runtime::runtime() else {
        return false;
    };
    let aborted = rt.block_on(async {
        tokio::time::timeout(timeout, async { u.lock().await.abort().await }).await
    });
    matches!(aborted, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn names(dir: &Path) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        left
    }

    #[test]
    fn a_staged_write_is_removed_and_cannot_be_published_after() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("model.safetensors");
        std::fs::write(d.path().join("model.safetensors#1"), b"other writer").unwrap();
        let reg = Inflight::new();
        let (guard, staged, mut f) = reg.stage(&file).unwrap();
        assert_eq!(staged.file_name().unwrap(), "model.safetensors#2");
        assert_eq!(reg.abort_all(Duration::from_secs(1)), 1);
        // The writer goes on into the removed file; its rename fails.
        f.write_all(b"late bytes").unwrap();
        assert!(std::fs::rename(&staged, &file).is_err());
        drop(guard);
        assert_eq!(names(d.path()), ["model.safetensors#1"]);
    }

    #[test]
    fn no_write_begins_after_the_registry_is_closed() {
        let d = tempfile::tempdir().unwrap();
        let reg = Inflight::new();
        assert_eq!(reg.abort_all(Duration::from_secs(1)), 0);
        // What used to slip through: a write registered after the stop had
        // listed the staged files, whose `name#N` then stayed.
        let late = reg.stage(&d.path().join("late.bin"));
        assert!(late.is_err());
        assert!(names(d.path()).is_empty(), "{:?}", names(d.path()));
    }
}
