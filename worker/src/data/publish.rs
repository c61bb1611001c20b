//! An import never damages or silently replaces a dataset: it writes under
//! a staging prefix inside the output (`.staging-…/`), and only when it has
//! succeeded is it published — the old manifest taken away, the staged
//! objects moved into place, the new manifest written last (on buckets as
//! on disk). An output that already holds a dataset is refused unless the
//! import was asked to `--overwrite` it; then what the old manifest named
//! and the new one does not is removed. A failed import removes its
//! staging and leaves the old dataset as it was.
use std::collections::BTreeSet;

use vae_proto::dataset::{check_object_name, DatasetManifest, MANIFEST_NAME};

use super::error::DataError;
use super::store::{StorageOptions, Store};

/// Where an import into `out` is staged.
pub struct Staging {
    target: Store,
    out: String,
    /// The staging prefix, relative to `out`.
    name: String,
}

impl Staging {
    /// Checks `out` (refused when it holds a dataset and `overwrite` is
    /// not set) and picks a staging prefix inside it.
    pub fn begin(out: &str, overwrite: bool, opts: &StorageOptions) -> Result<Staging, DataError> {
        let target = Store::open(out, opts)?;
        if !overwrite && target.get(MANIFEST_NAME).is_ok() {
            return Err(DataError::Io {
                url: target.url_of(MANIFEST_NAME),
                message: "the output already holds a dataset; pass --overwrite to replace it"
                    .into(),
            });
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(".staging-{}-{nanos}", std::process::id());
        Ok(Staging {
            target,
            out: out.to_string(),
            name,
        })
    }

    /// The location the importer writes to.
    pub fn url(&self) -> String {
        format!("{}/{}", self.out.trim_end_matches('/'), self.name)
    }

    /// Removes what the import staged (after a failure).
    pub fn abandon(&self) {
        if let Ok(names) = self.target.list(&self.name) {
            for n in names {
                let _ = self.target.delete(&n);
            }
        }
        if let Some(dir) = self.target.local_dir() {
            let _ = std::fs::remove_dir_all(dir.join(&self.name));
        }
    }

    /// Publishes the staged dataset: old manifest away, staged objects into
    /// place, new manifest last; then what only the old manifest named goes.
    pub fn publish(self) -> Result<DatasetManifest, DataError> {
        let t = &self.target;
        let staged_manifest = format!("{}/{MANIFEST_NAME}", self.name);
        let bytes = t.get(&staged_manifest)?;
        let bad = |e: serde_json::Error| DataError::Io {
            url: t.url_of(&staged_manifest),
            message: e.to_string(),
        };
        let manifest: DatasetManifest = serde_json::from_slice(&bytes).map_err(bad)?;
        let old: Option<DatasetManifest> = t
            .get(MANIFEST_NAME)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        t.delete(MANIFEST_NAME)?;
        let prefix = format!("{}/", self.name);
        let mut moved = BTreeSet::new();
        for name in t.list(&self.name)? {
            let Some(to) = name.strip_prefix(&prefix) else {
                continue;
            };
            if to != MANIFEST_NAME {
                t.rename(&name, to)?;
                moved.insert(to.to_string());
            }
        }
        t.put(MANIFEST_NAME, bytes)?;
        for stale in old.iter().flat_map(objects) {
            if !moved.contains(&stale) {
                t.delete(&stale)?;
            }
        }
        self.abandon();
        Ok(manifest)
    }
}

/// The objects a manifest names: its shards and the label files beside them.
fn objects(m: &DatasetManifest) -> Vec<String> {
    let mut out: Vec<String> = m
        .splits
        .values()
        .flat_map(|s| s.shards.iter().map(|e| e.object.clone()))
        .collect();
    out.extend(m.splits.keys().map(|k| format!("{k}-labels.jsonl")));
    out.retain(|n| check_object_name(n).is_ok());
    out
}
