//! MNIST's original IDX files (`train-images-idx3-ubyte`, ...) read into
//! memory, to be written out in the project's dataset format.
use std::path::{Path, PathBuf};

use super::error::DataError;
use super::format;
use super::store;

/// One MNIST split: `n` images of `rows × cols` bytes and `n` labels.
pub struct IdxSplit {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
}

fn idx_err(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Idx {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bytes = std::fs::read(path).map_err(|e| idx_err(path, e.to_string()))?;
    if bytes.len() < 4 {
        return Err(idx_err(path, "shorter than an IDX header"));
    }
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if be(0) != magic {
        return Err(idx_err(
            path,
            format!("magic number {:#010x}, expected {magic:#010x}", be(0)),
        ));
    }
    let ndim = (magic & 0xff) as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(idx_err(path, "truncated header"));
    }
    let dims: Vec<usize> = (0..ndim).map(|d| be(4 + 4 * d) as usize).collect();
    let want: usize = dims.iter().product();
    if bytes.len() - header != want {
        return Err(idx_err(
            path,
            format!(
                "holds {} data bytes, dimensions {dims:?} need {want}",
                bytes.len() - header
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Reads `<dir>/<prefix>-images-idx3-ubyte` and `<dir>/<prefix>-labels-idx1-ubyte`.
pub fn read_split(dir: &Path, prefix: &str) -> Result<IdxSplit, DataError> {
    let img_path: PathBuf = dir.join(format!("{prefix}-images-idx3-ubyte"));
    let lab_path: PathBuf = dir.join(format!("{prefix}-labels-idx1-ubyte"));
    let (dims, images) = read_idx(&img_path, 0x0000_0803)?;
    let (ldims, labels) = read_idx(&lab_path, 0x0000_0801)?;
    if ldims[0] != dims[0] {
        return Err(idx_err(
            &lab_path,
            format!("{} labels for {} images", ldims[0], dims[0]),
        ));
    }
    if let Some(bad) = labels.iter().find(|l| **l > 9) {
        return Err(idx_err(&lab_path, format!("label {bad} is not a digit")));
    }
    Ok(IdxSplit {
        images,
        labels,
        n: dims[0],
        rows: dims[1],
        cols: dims[2],
    })
}

/// Converts MNIST's IDX files in `idx_dir` into a dataset at `out`.
pub fn prepare_mnist(
    idx_dir: &std::path::Path,
    out: &str,
    shard_samples: usize,
) -> Result<vae_proto::dataset::DatasetManifest, DataError> {
    let train = read_split(idx_dir, "train")?;
    let test = read_split(idx_dir, "t10k")?;
    let to_split = |s: IdxSplit| format::SplitData {
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
