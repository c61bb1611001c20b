//! 3dshapes (Burgess & Kim 2018: `3dshapes.h5`): `images` uint8
//! `(N, 64, 64, 3)` and `labels` float64 (or float32) `(N, 6)` — floor_hue, wall_hue,
//! object_hue, scale, shape, orientation — stored as gzip-compressed chunks,
//! every combination in row-major order (480,000 = 10·10·10·8·4·15). Read
//! through HDF5's own library (`hdf5-metno` over Debian's `libhdf5-dev`) in
//! slabs of rows, channels moved first. A factor's classes are the ranks
//! of its column's distinct values; the labels must make the complete grid,
//! their rows in any order (each placed by its labels: [`super::grid`]).
use std::path::Path;

use vae_proto::dataset::DatasetManifest;

use super::error::{ImportError, InputError};
use super::grid::Placement;
use super::input::progress;
use crate::data::factors::{FactorSpec, FactorWriter, TestSplit};
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

/// The grid the labels make (rows in any order, placed by their labels).
fn classes(
    path: &Path,
    labels: &[f64],
    rows: usize,
) -> Result<(FactorSpec, Placement), InputError> {
    let placed = super::grid::place(labels, rows, &FACTOR_NAMES)
        .map_err(|m| fail(path, format!("key `labels`: {m}")))?;
    let spec = FactorSpec {
        name: "shapes3d".into(),
        sample_shape: [3, SIDE, SIDE],
        dtype: "u8",
        factors: (FACTOR_NAMES.iter().zip(placed.sizes()))
            .map(|(name, n)| (name.to_string(), n, (0..n).map(|v| v as u8).collect()))
            .collect(),
        // Each class's value as the file holds it (hues in [0, 1), scale,
        // shape, orientation in degrees).
        units: placed.distinct.clone(),
        nuisance: vec![],
    };
    Ok((spec, placed))
}

/// The images' and labels' shapes and types checked; the number of rows.
fn check_types(
    from: &Path,
    images: &hdf5::Dataset,
    labels: &hdf5::Dataset,
) -> Result<usize, InputError> {
    let rows = images.shape().first().copied().unwrap_or(0);
    if images.shape() != [rows, SIDE, SIDE, 3] || rows == 0 {
        return Err(fail(
            from,
            format!(
                "key `images`: shape {:?}, expected (N, {SIDE}, {SIDE}, 3)",
                images.shape()
            ),
        ));
    }
    let is = |d: &hdf5::Dataset, t: hdf5::types::TypeDescriptor| {
        d.dtype()
            .and_then(|x| x.to_descriptor())
            .is_ok_and(|x| x == t)
    };
    use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
    if !is(images, TypeDescriptor::Unsigned(IntSize::U1)) {
        return Err(fail(from, "key `images`: not uint8"));
    }
    if labels.shape() != [rows, 6] {
        return Err(fail(
            from,
            format!(
                "key `labels`: shape {:?}, expected ({rows}, 6)",
                labels.shape()
            ),
        ));
    }
    // float64 as published; float32 (a re-saved file) reads the same.
    let float = |size| is(labels, TypeDescriptor::Float(size));
    if !(float(FloatSize::U8) || float(FloatSize::U4)) {
        let dtype = labels.dtype().and_then(|x| x.to_descriptor());
        let dtype = dtype.map_or("unknown".into(), |d| d.to_string());
        return Err(fail(
            from,
            format!("key `labels`: dtype {dtype}, expected float64 (or float32)"),
        ));
    }
    Ok(rows)
}

/// Imports the 3dshapes `.h5` at `from` into `out`.
pub fn import(
    from: &Path,
    out: &str,
    shard_samples: usize,
    split: TestSplit,
) -> Result<DatasetManifest, ImportError> {
    let h5 = |e: hdf5::Error| fail(from, e.to_string());
    let file = hdf5::File::open(from).map_err(h5)?;
    let len = std::fs::metadata(from)
        .map_err(|e| fail(from, e.to_string()))?
        .len();
    let key = |k: &str| super::h5::dataset(&file, from, k, len);
    let (images, labels) = (key("images")?, key("labels")?);
    let rows = check_types(from, &images, &labels)?;
    let all: Vec<f64> = labels.read_raw::<f64>().map_err(h5)?;
    let (spec, placed) = classes(from, &all, rows)?;
    let store = Store::open(out, &StorageOptions::default())?;
    let mut w = FactorWriter::new(store, &spec, shard_samples, split);
    let bar = progress(rows as u64, "shapes3d");
    let per = SIDE * SIDE * 3;
    let mut chw = vec![0u8; per];
    // Rows in the grid's order are read in slabs; others one by one, each
    // where its labels place it.
    let slab = if placed.in_order() { SLAB } else { 1 };
    for start in (0..rows).step_by(slab) {
        let end = (start + slab).min(rows);
        let first = placed.rows[start] as usize;
        let slab = images
            .read_slice::<u8, _, ndarray::Ix4>(ndarray::s![first..first + end - start, .., .., ..])
            .map_err(h5)?;
        let pixels = slab
            .as_slice()
            .ok_or_else(|| fail(from, "key `images`: a slab not in C order"))?;
        for (i, hwc) in pixels.chunks_exact(per).enumerate() {
            channels_first(hwc, &mut chw, 3);
            w.push(&chw, &placed.classes_of(start + i))?;
        }
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    Ok(w.finish()?)
}
