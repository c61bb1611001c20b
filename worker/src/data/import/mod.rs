//! Importers: datasets in their published layouts, from a local path or a
//! bucket URL, into the project's format (`vae-worker data prepare NAME
//! --from …`). One file per importer: the real dSprites `.npz`
//! ([`dsprites`]), 3dshapes' `.h5` ([`shapes3d`]), MPI3D's `.npz`
//! ([`mpi3d`]), image folders, bucket
//! prefixes and WebDataset tar shards ([`images`]). A new importer is a file here, its variant in
//! `vae_proto::cli::PrepareDataset` and its arm in `cli.rs`.
pub mod dsprites;
pub mod images;
pub mod jpeg;
pub mod mpi3d;
pub mod shapes3d;

use std::path::{Path, PathBuf};

use super::store::{StorageOptions, Store};
use super::DataError;

/// Why an input cannot be read: one line naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}", path = path.display())]
pub struct InputError {
    pub path: PathBuf,
    pub message: String,
}

/// Why an import failed: the input, or the output.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Output(#[from] DataError),
}

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
