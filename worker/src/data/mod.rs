//! Datasets: the on-storage format ([`format`]), object-store access
//! ([`store`]), fetching shards ahead with a cache ([`fetch`]), MNIST
//! conversion ([`mnist`]), dSprites generation ([`dsprites`]), writing
//! factor datasets ([`factors`]), samples by position ([`lookup`]),
//! importers of published layouts ([`import`], reading `.npz` through [`npz`]), the order
//! in which samples are visited ([`sampler`]), and the writes in progress
//! that a stop at once cleans up ([`inflight`]).
pub mod dsprites;
pub mod factors;
pub mod fetch;
pub mod format;
pub mod import;
pub mod inflight;
pub mod lookup;
pub mod mnist;
pub mod npz;
pub mod sampler;
pub mod store;

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

/// Converts MNIST's IDX files in `idx_dir` into a dataset at `out`.
pub fn prepare_mnist(
    idx_dir: &std::path::Path,
    out: &str,
    shard_samples: usize,
) -> Result<vae_proto::dataset::DatasetManifest, DataError> {
    let train = mnist::read_split(idx_dir, "train")?;
    let test = mnist::read_split(idx_dir, "t10k")?;
    let to_split = |s: mnist::IdxSplit| format::SplitData {
        images: s.images,
        targets: s.labels,
        n: s.n,
    };
    let shape = [1, train.rows, train.cols];
    let (train, test) = (to_split(train), to_split(test));
    let store = store::Store::open(out, &store::StorageOptions::default())?;
    format::DatasetWriter {
        name: "mnist",
        sample_shape: shape,
        targets: vec![vae_proto::dataset::TargetSpec {
            name: "label".into(),
            values: 10,
        }],
        shard_samples,
    }
    .write(&store, &[("train", &train), ("test", &test)])
}
