//! An importer's input as a local file (downloaded first when it is an
//! object in a bucket), and the progress bar imports show.
use std::path::{Path, PathBuf};

use crate::data::error::DataError;
use crate::data::store::{StorageOptions, Store};

/// An input file on local disk: the path itself, or a remote object
/// downloaded to a temporary file (removed when this is dropped).
pub struct LocalInput {
    pub path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// `from` (a path, or an object's URL) as a local file.
pub fn local_input(from: &str, opts: &StorageOptions) -> Result<LocalInput, DataError> {
    if !from.contains("://") || from.starts_with("file://") {
        let path = match from.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(from),
        };
        return Ok(LocalInput { path, _tmp: None });
    }
    let (parent, name) =
        from.trim_end_matches('/')
            .rsplit_once('/')
            .ok_or_else(|| DataError::InvalidUrl {
                url: from.to_string(),
                message: "names no object".into(),
            })?;
    let store = Store::open(parent, opts)?;
    let tmp = tempfile::tempdir().map_err(|e| DataError::Io {
        url: "(temporary directory)".into(),
        message: e.to_string(),
    })?;
    let path = tmp.path().join(name);
    store.download(name, &path)?;
    Ok(LocalInput {
        path,
        _tmp: Some(tmp),
    })
}

/// An importer's input folder (a path or a bucket prefix): its files by
/// name, each as a local file (a bucket's downloaded into a temporary
/// folder, removed when this is dropped).
pub struct InputFolder {
    store: Store,
    tmp: Option<tempfile::TempDir>,
}

impl InputFolder {
    /// The folder `from`.
    pub fn open(from: &str, opts: &StorageOptions) -> Result<InputFolder, DataError> {
        let store = Store::open(from, opts)?;
        let tmp = match store.local_dir() {
            Some(_) => None,
            None => Some(tempfile::tempdir().map_err(|e| DataError::Io {
                url: "(temporary directory)".into(),
                message: e.to_string(),
            })?),
        };
        Ok(InputFolder { store, tmp })
    }

    /// The names of the files directly in the folder, sorted.
    pub fn names(&self) -> Result<Vec<String>, DataError> {
        let mut names: Vec<String> = (self.store.list("")?.into_iter())
            .filter(|n| !n.contains('/'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// File `name` of the folder as a local file; an error naming its URL
    /// when it is not there.
    pub fn file(&self, name: &str) -> Result<PathBuf, DataError> {
        match (self.store.local_dir(), &self.tmp) {
            (Some(dir), _) => {
                let path = dir.join(name);
                require_file(&path)?;
                Ok(path)
            }
            (None, Some(tmp)) => {
                let path = tmp.path().join(name);
                self.store.download(name, &path)?;
                Ok(path)
            }
            (None, None) => Err(DataError::Io {
                url: self.store.url_of(name),
                message: "no local copy".into(),
            }),
        }
    }
}

/// A progress bar on stderr for `n` items (hidden when stderr is not a terminal).
pub fn progress(n: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{pos}}/{{len}} ({{per_sec}}, {{eta}})"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Whether `path` exists as a file, as an error naming it.
pub fn require_file(path: &Path) -> Result<(), DataError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(DataError::Io {
            url: path.display().to_string(),
            message: "no such file".into(),
        })
    }
}
