//! Writes in progress, so that a process told to stop at once (a second
//! signal) leaves nothing behind: a local write's staged file
//! (`object_store` writes `name#N`, then renames it) is removed, and a
//! multipart upload to a bucket is aborted (S3 and GCS keep the parts of an
//! upload that is neither completed nor aborted, and bill for them).
//! [`Store`](super::store::Store) registers each write for as long as it
//! runs; [`abort_all`] is what the stop calls.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::MultipartUpload;

/// A multipart upload that can be aborted from another thread.
pub type SharedUpload = Arc<tokio::sync::Mutex<Box<dyn MultipartUpload>>>;

/// One write in progress.
pub enum Write {
    /// A local file being written (its staged `file#N` siblings go).
    Local(PathBuf),
    /// A multipart upload (aborted).
    Upload(SharedUpload),
}

fn registry() -> &'static Mutex<BTreeMap<u64, Write>> {
    static R: OnceLock<Mutex<BTreeMap<u64, Write>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Keeps a write registered until dropped.
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut r) = registry().lock() {
            r.remove(&self.0);
        }
    }
}

/// Registers `w` while the returned guard lives.
pub fn register(w: Write) -> Registered {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut r) = registry().lock() {
        r.insert(id, w);
    }
    Registered(id)
}

/// The staged siblings `file#N` of a local file being written.
fn staged(file: &std::path::Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}#", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .and_then(|n| n.strip_prefix(&prefix).map(str::to_string))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

/// Aborts every write in progress: removes staged local files and aborts
/// multipart uploads (each within `timeout`). Returns how many it cleaned.
pub fn abort_all(timeout: Duration) -> usize {
    let writes: Vec<Write> = match registry().lock() {
        Ok(mut r) => std::mem::take(&mut *r).into_values().collect(),
        Err(_) => return 0,
    };
    let mut cleaned = 0;
    for w in writes {
        match w {
            Write::Local(file) => {
                for p in staged(&file) {
                    if std::fs::remove_file(&p).is_ok() {
                        cleaned += 1;
                    }
                }
            }
            Write::Upload(u) => {
                let Ok(rt) = super::runtime::runtime() else {
                    continue;
                };
                let aborted = rt.block_on(async {
                    tokio::time::timeout(timeout, async { u.lock().await.abort().await }).await
                });
                if matches!(aborted, Ok(Ok(()))) {
                    cleaned += 1;
                }
            }
        }
    }
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_siblings_of_a_local_write_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("model.safetensors");
        for n in [
            "model.safetensors#1",
            "model.safetensors#12",
            "model.safetensors#x",
            "other#1",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let g = register(Write::Local(file));
        assert_eq!(abort_all(Duration::from_secs(1)), 2);
        drop(g);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["model.safetensors#x", "other#1"]);
    }
}
