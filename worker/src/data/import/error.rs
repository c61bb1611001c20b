//! The importers' errors: an input that cannot be read (one line naming
//! the file and the key), or an output that cannot be written.
use std::path::PathBuf;

use crate::data::error::DataError;

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
