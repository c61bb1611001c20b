//! Cars3D (Reed et al. 2015, "Deep Visual Analogy-Making": `car_001_mesh.mat`
//! … , one MATLAB v5 file per car, [`super::mat5`]): array `im` uint8
//! `128×128×3×24×4` (rows, columns, RGB, 24 azimuths, 4 elevations). As
//! disentanglement_lib reads it: each view resized to 64×64 with Pillow's
//! Lanczos ([`super::resample`], to the bit), factors elevation (4),
//! azimuth (24), object (one per file — in name order, where
//! disentanglement_lib takes the folder's listing order), every
//! combination in row-major order. A car's views arrive together but the
//! grid wants the object fastest, so views are placed in a temporary file
//! first: memory holds one car.
use std::io::{Read, Seek};
use std::os::unix::fs::FileExt;

use vae_proto::dataset::DatasetManifest;

use super::error::{ImportError, InputError};
use super::input::{progress, InputFolder};
use crate::data::factors::{FactorSpec, FactorWriter, TestSplit};
use crate::data::format::channels_first;
use crate::data::store::{StorageOptions, Store};

pub const FACTOR_NAMES: [&str; 3] = ["elevation", "azimuth", "object"];
const SIDE: usize = 128;
const OUT: usize = 64;
const VIEWS: [usize; 2] = [4, 24];
/// Bytes of one file's `im`.
const IM_BYTES: usize = SIDE * SIDE * 3 * 24 * 4;

fn fail(at: impl Into<std::path::PathBuf>, message: String) -> InputError {
    InputError {
        path: at.into(),
        message,
    }
}

/// The grid of `objects` cars.
fn spec(objects: usize) -> FactorSpec {
    let sizes = [VIEWS[0], VIEWS[1], objects];
    FactorSpec {
        name: "cars3d".into(),
        sample_shape: [3, OUT, OUT],
        dtype: "u8",
        factors: (FACTOR_NAMES.iter().zip(sizes))
            .map(|(n, s)| (n.to_string(), s, (0..s).map(|v| v as u8).collect()))
            .collect(),
        units: vec![],
        nuisance: vec![],
    }
}

/// Car `o`'s 96 views, resized and channels first, written where the grid
/// of `n` cars places them in `temp`.
fn place_car(im: &[u8], o: usize, n: usize, temp: &std::fs::File) -> std::io::Result<()> {
    let per = OUT * OUT * 3;
    let mut hwc = vec![0u8; SIDE * SIDE * 3];
    let mut chw = vec![0u8; per];
    for el in 0..VIEWS[0] {
        for az in 0..VIEWS[1] {
            // MATLAB's column-major order: row fastest, then column, channel, azimuth, elevation.
            let view = (az + VIEWS[1] * el) * SIDE * SIDE * 3;
            for y in 0..SIDE {
                for x in 0..SIDE {
                    for c in 0..3 {
                        hwc[(y * SIDE + x) * 3 + c] = im[view + y + SIDE * x + SIDE * SIDE * c];
                    }
                }
            }
            let small = super::resample::lanczos_resize(&hwc, (SIDE, SIDE), 3, (OUT, OUT));
            channels_first(&small, &mut chw, 3);
            let at = ((el * VIEWS[1] + az) * n + o) * per;
            temp.write_all_at(&chw, at as u64)?;
        }
    }
    Ok(())
}

/// Imports the Cars3D `.mat` files in the folder `from` into `out`.
pub fn import(
    from: &str,
    out: &str,
    shard_samples: usize,
    split: TestSplit,
) -> Result<DatasetManifest, ImportError> {
    let folder = InputFolder::open(from, &StorageOptions::default())?;
    let names: Vec<String> = (folder.names()?.into_iter())
        .filter(|n| n.ends_with(".mat"))
        .collect();
    if names.is_empty() || names.len() > 256 {
        let m = format!("{} `.mat` files, 1 to 256 cars expected", names.len());
        return Err(fail(from, m).into());
    }
    let n = names.len();
    let io = |e: std::io::Error| fail("(temporary file)", e.to_string());
    let mut temp = tempfile::tempfile().map_err(io)?;
    let bar = progress(n as u64, "cars3d");
    for (o, name) in names.iter().enumerate() {
        let path = folder.file(name)?;
        let im = super::mat5::read_u8(&path, "im", IM_BYTES)?;
        if im.dims != [SIDE, SIDE, 3, VIEWS[1], VIEWS[0]] {
            let m = format!("`im`: dimensions {:?}, 128×128×3×24×4 expected", im.dims);
            return Err(fail(path, m).into());
        }
        place_car(&im.data, o, n, &temp).map_err(io)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let spec = spec(n);
    let store = Store::open(out, &StorageOptions::default())?;
    let mut w = FactorWriter::new(store, &spec, shard_samples, split);
    temp.rewind().map_err(io)?;
    let mut reader = std::io::BufReader::new(temp);
    let mut chw = vec![0u8; OUT * OUT * 3];
    for i in 0..spec.grid_len() {
        reader.read_exact(&mut chw).map_err(io)?;
        w.push(&chw, &spec.targets_of(i))?;
    }
    Ok(w.finish()?)
}
