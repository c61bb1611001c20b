//! 3dshapes (Burgess & Kim 2018: `3dshapes.h5`): `images` uint8
//! `(N, 64, 64, 3)` and `labels` float64 (or float32) `(N, 6)` — floor_hue, wall_hue,
//! object_hue, scale, shape, orientation — stored as gzip-compressed chunks,
//! every combination in row-major order (480,000 = 10·10·10·8·4·15). Read
//! through HDF5's own library (`hdf5-metno` over Debian's `libhdf5-dev`) in
//! slabs of rows, channels moved first. A factor's classes are the ranks
//! of its column's distinct values; the labels must make the complete grid
//! in row-major order.
use std::path::Path;

use vae_proto::dataset::DatasetManifest;

use super::error::{ImportError, InputError};
use super::input::progress;
use crate::data::factors::{FactorSpec, FactorWriter};
use crate::data::format::channels_first;
use crate::data::store::{StorageOptions, Store};

pub const FACTOR_NAMES: [&str; 6] = [
    "floor_hue",
    "wall_hue",
    "object_hue",
    "scale",
    "shape",
    "orientation",
];
const SIDE: usize = 64;
/// Rows read from the file at a time.
const SLAB: usize = 1024;

fn fail(path: &Path, message: impl Into<String>) -> InputError {
    InputError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The labels' distinct values per column, and every row's class indices;
/// checked to be the complete grid in row-major order.
fn classes(path: &Path, labels: &[f64], rows: usize) -> Result<(FactorSpec, Vec<u8>), InputError> {
    let bad = |m: String| fail(path, format!("key `labels`: {m}"));
    let mut distinct: Vec<Vec<f64>> = Vec::new();
    for k in 0..6 {
        let mut v: Vec<f64> = (0..rows).map(|r| labels[r * 6 + k]).collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(bad(format!(
                "column {k} ({}) holds a value that is not finite",
                FACTOR_NAMES[k]
            )));
        }
        v.sort_by(f64::total_cmp);
        v.dedup();
        if v.len() > 256 {
            return Err(bad(format!(
                "{} has {} distinct values, at most 256",
                FACTOR_NAMES[k],
                v.len()
            )));
        }
        distinct.push(v);
    }
    let spec = FactorSpec {
        name: "shapes3d".into(),
        sample_shape: [3, SIDE, SIDE],
        dtype: "u8",
        factors: (0..6)
            .map(|k| {
                let n = distinct[k].len();
                (
                    FACTOR_NAMES[k].to_string(),
                    n,
                    (0..n).map(|v| v as u8).collect(),
                )
            })
            .collect(),
        // Each class's value as the file holds it (hues in [0, 1), scale,
        // shape, orientation in degrees).
        units: distinct.clone(),
    };
    if spec.grid_len() != rows {
        return Err(bad(format!(
            "{rows} rows, but the distinct values make a grid of {}: not a complete grid of factors",
            spec.grid_len()
        )));
    }
    let mut out = Vec::with_capacity(rows * 6);
    for r in 0..rows {
        let t: Vec<u8> = (0..6)
            .map(|k| {
                let x = labels[r * 6 + k];
                distinct[k].partition_point(|v| v.total_cmp(&x).is_lt()) as u8
            })
            .collect();
        if t != spec.targets_of(r) {
            return Err(bad(format!(
                "row {r} has classes {t:?}, the grid's row-major order has {:?} there",
                spec.targets_of(r)
            )));
        }
        out.extend(t);
    }
    Ok((spec, out))
}

/// Imports the 3dshapes `.h5` at `from` into `out`.
pub fn import(
    from: &Path,
    out: &str,
    shard_samples: usize,
    test_samples: usize,
) -> Result<DatasetManifest, ImportError> {
    let h5 = |e: hdf5::Error| fail(from, e.to_string());
    let file = hdf5::File::open(from).map_err(h5)?;
    let len = std::fs::metadata(from)
        .map_err(|e| fail(from, e.to_string()))?
        .len();
    let key = |k: &str| super::h5::dataset(&file, from, k, len);
    let (images, labels) = (key("images")?, key("labels")?);
    let rows = images.shape().first().copied().unwrap_or(0);
    if images.shape() != [rows, SIDE, SIDE, 3] || rows == 0 {
        return Err(fail(
            from,
            format!(
                "key `images`: shape {:?}, expected (N, {SIDE}, {SIDE}, 3)",
                images.shape()
            ),
        )
        .into());
    }
    let is = |d: &hdf5::Dataset, t: hdf5::types::TypeDescriptor| {
        d.dtype()
            .and_then(|x| x.to_descriptor())
            .is_ok_and(|x| x == t)
    };
    use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
    if !is(&images, TypeDescriptor::Unsigned(IntSize::U1)) {
        return Err(fail(from, "key `images`: not uint8").into());
    }
    if labels.shape() != [rows, 6] {
        return Err(fail(
            from,
            format!(
                "key `labels`: shape {:?}, expected ({rows}, 6)",
                labels.shape()
            ),
        )
        .into());
    }
    // float64 as published; float32 (a re-saved file) reads the same.
    let float = |size| is(&labels, TypeDescriptor::Float(size));
    if !(float(FloatSize::U8) || float(FloatSize::U4)) {
        let dtype = labels.dtype().and_then(|x| x.to_descriptor());
        let dtype = dtype.map_or("unknown".into(), |d| d.to_string());
        return Err(fail(
            from,
            format!("key `labels`: dtype {dtype}, expected float64 (or float32)"),
        )
        .into());
    }
    let all: Vec<f64> = labels.read_raw::<f64>().map_err(h5)?;
    let (spec, targets) = classes(from, &all, rows)?;
    let store = Store::open(out, &StorageOptions::default())?;
    let mut w = FactorWriter::new(store, &spec, shard_samples, test_samples);
    let bar = progress(rows as u64, "shapes3d");
    let per = SIDE * SIDE * 3;
    let mut chw = vec![0u8; per];
    for start in (0..rows).step_by(SLAB) {
        let end = (start + SLAB).min(rows);
        let slab = images
            .read_slice::<u8, _, ndarray::Ix4>(ndarray::s![start..end, .., .., ..])
            .map_err(h5)?;
        let pixels = slab
            .as_slice()
            .ok_or_else(|| fail(from, "key `images`: a slab not in C order"))?;
        for (i, hwc) in pixels.chunks_exact(per).enumerate() {
            channels_first(hwc, &mut chw, 3);
            let r = start + i;
            w.push(&chw, &targets[r * 6..r * 6 + 6])?;
        }
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    Ok(w.finish()?)
}
