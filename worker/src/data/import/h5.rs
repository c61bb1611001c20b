//! An HDF5 file from elsewhere, opened distrustfully: a dataset is read
//! only when its bytes live in this file (no external raw-data storage, no
//! external link into another file, no virtual dataset drawing on others —
//! any of them could import a local file such as a credentials file into a
//! dataset bound for a bucket), and only when the size its shape declares
//! fits what the file can hold (its length, times deflate's largest
//! expansion when the dataset is filtered) — checked before anything is
//! allocated.
use std::path::Path;

use hdf5::dataset::Layout;

use super::error::InputError;
use super::npz::DEFLATE_RATIO;

/// Opens dataset `key` of `file` (at `path`, `file_len` bytes long), checked
/// as the module says; the error is one line naming the file and the key.
pub fn dataset(
    file: &hdf5::File,
    path: &Path,
    key: &str,
    file_len: u64,
) -> Result<hdf5::Dataset, InputError> {
    let fail = |m: String| InputError {
        path: path.to_path_buf(),
        message: format!("key `{key}`: {m}"),
    };
    let d = file
        .dataset(key)
        .map_err(|e| fail(format!("missing ({e})")))?;
    if d.filename() != file.filename() {
        return Err(fail(format!(
            "an external link into another file ({}): refused, a dataset's bytes must live in this file",
            d.filename()
        )));
    }
    let dcpl = d.dcpl().map_err(|e| fail(e.to_string()))?;
    if !dcpl.external().is_empty() {
        return Err(fail(
            "stored in external files: refused, a dataset's bytes must live in this file".into(),
        ));
    }
    if dcpl.layout() == Layout::Virtual {
        return Err(fail(
            "a virtual dataset: refused, a dataset's bytes must live in this file".into(),
        ));
    }
    let item = d.dtype().map_err(|e| fail(e.to_string()))?.size();
    let declared = d.shape().iter().try_fold(item, |n, &s| n.checked_mul(s));
    let bound = if dcpl.filters().is_empty() {
        file_len
    } else {
        file_len.saturating_mul(DEFLATE_RATIO)
    };
    match declared {
        Some(n) if n as u64 <= bound => Ok(d),
        _ => Err(fail(format!(
            "shape {:?} declares {}, more than a {file_len}-byte file can hold",
            d.shape(),
            declared.map_or("more than 2^64 bytes".into(), |n| format!("{n} bytes"))
        ))),
    }
}
