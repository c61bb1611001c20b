//! The storage layer's one error: what went wrong with a URL, an object,
//! a shard, a manifest or a local file, each naming it.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("invalid dataset URL {url}: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("{url}: object not found")]
    NotFound { url: String, detail: String },
    #[error("{url}: access denied (check the credentials in the environment): {message}")]
    Denied { url: String, message: String },
    #[error("{url}: {message}")]
    Io { url: String, message: String },
    #[error("{url}: corrupt shard: {message}")]
    Corrupt { url: String, message: String },
    #[error("{url}: bad dataset manifest: {message}")]
    Manifest { url: String, message: String },
    #[error("no dataset at {url}: {why}")]
    NoDataset { url: String, why: String },
    #[error("{path}: bad IDX file: {message}", path = path.display())]
    Idx { path: PathBuf, message: String },
    /// A local file that could not be written or read (not retried).
    #[error("{path}: {message}", path = path.display())]
    Local { path: PathBuf, message: String },
}
