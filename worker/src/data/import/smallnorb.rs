//! SmallNORB (LeCun et al. 2004: `smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat`
//! and the `5x01235…-testing` three): per half, `dat` bytes `(24300, 2,
//! 96, 96)` (a stereo pair per sample), `cat` int32 `(24300)` (category),
//! `info` int32 `(24300, 4)` (instance, elevation, azimuth 0, 2, …, 34,
//! lighting) — NORB's binary matrices ([`super::norb`]). As
//! disentanglement_lib reads it: camera 0's image resized to 64×64 with
//! Pillow's Lanczos ([`super::resample`], to the bit), azimuth halved,
//! factors category (5), instance (10), elevation (9), azimuth (18),
//! lighting (6), the instance a nuisance the metrics draw at random. The
//! rows come in no grid order: each is placed by its labels
//! ([`super::grid`]); both halves make the complete grid of 48,600, one
//! half (`--chunks training`) the grid of its five instances.
use std::path::Path;

use vae_proto::dataset::DatasetManifest;

use super::error::{ImportError, InputError};
use super::input::{progress, InputFolder};
use super::norb::{Matrix, BYTES, INT32};
use crate::data::factors::{FactorSpec, FactorWriter, TestSplit};
use crate::data::store::{StorageOptions, Store};

pub const FACTOR_NAMES: [&str; 5] = ["category", "instance", "elevation", "azimuth", "lighting"];
pub const FACTOR_SIZES: [usize; 5] = [5, 10, 9, 18, 6];
/// The files' halves.
pub const CHUNKS: [(&str, &str); 2] = [
    ("training", "5x46789x9x18x6x2x96x96-training"),
    ("testing", "5x01235x9x18x6x2x96x96-testing"),
];
const SIDE: usize = 96;
const OUT: usize = 64;

/// One half: its images and its labels (one row of five per sample).
struct Half {
    dat: Matrix,
    labels: Vec<f64>,
}

fn fail(path: &Path, message: String) -> InputError {
    InputError {
        path: path.to_path_buf(),
        message,
    }
}

/// Opens half `chunk` of the folder, its shapes and labels checked.
fn half(folder: &InputFolder, chunk: &str) -> Result<Half, ImportError> {
    let file = |kind: &str| folder.file(&format!("smallnorb-{chunk}-{kind}.mat"));
    let dat = Matrix::open(&file("dat")?, BYTES)?;
    let cat = Matrix::open(&file("cat")?, INT32)?;
    let info = Matrix::open(&file("info")?, INT32)?;
    let n = dat.dims.first().copied().unwrap_or(0);
    if dat.dims != [n, 2, SIDE, SIDE] || n == 0 {
        let m = format!("dimensions {:?}, (N, 2, 96, 96) expected", dat.dims);
        return Err(fail(dat.path(), m).into());
    }
    if cat.dims != [n] {
        let m = format!("dimensions {:?}, ({n}) expected as the images", cat.dims);
        return Err(fail(cat.path(), m).into());
    }
    if info.dims != [n, 4] {
        let m = format!("dimensions {:?}, ({n}, 4) expected", info.dims);
        return Err(fail(info.path(), m).into());
    }
    let (cat_v, info_v) = (cat.ints()?, info.ints()?);
    let mut labels = Vec::with_capacity(n * 5);
    for r in 0..n {
        let i = &info_v[r * 4..r * 4 + 4];
        // disentanglement_lib: `features[:, 3] = features[:, 3] / 2`.
        let row = [cat_v[r], i[0], i[1], i[2] / 2, i[3]];
        for (k, (&v, &size)) in row.iter().zip(&FACTOR_SIZES).enumerate() {
            if !(0..size as i32).contains(&v) {
                let path = if k == 0 { cat.path() } else { info.path() };
                let m = format!("row {r}: {} {v} is outside 0..{size}", FACTOR_NAMES[k]);
                return Err(fail(path, m).into());
            }
        }
        labels.extend(row.map(f64::from));
    }
    Ok(Half { dat, labels })
}

/// The factor grid the halves' labels make, its values as kept.
fn spec(kept: Vec<Vec<u8>>) -> FactorSpec {
    FactorSpec {
        name: "smallnorb".into(),
        sample_shape: [1, OUT, OUT],
        dtype: "u8",
        factors: (FACTOR_NAMES.iter().zip(FACTOR_SIZES).zip(kept))
            .map(|((n, s), k)| (n.to_string(), s, k))
            .collect(),
        // Elevation 30° to 70° by 5°, azimuth by 20° (NORB's documentation).
        units: vec![
            vec![],
            vec![],
            (0..9).map(|e| 30.0 + 5.0 * f64::from(e)).collect(),
            (0..18).map(|a| 20.0 * f64::from(a)).collect(),
            vec![],
        ],
        nuisance: vec![1],
    }
}

/// Imports the SmallNORB halves `chunks` (`training`, `testing`) in the
/// folder `from`, camera `camera`, into `out`.
pub fn import(
    from: &str,
    out: &str,
    chunks: &[String],
    camera: usize,
    shard_samples: usize,
    split: TestSplit,
) -> Result<DatasetManifest, ImportError> {
    let folder = InputFolder::open(from, &StorageOptions::default())?;
    let mut halves = Vec::new();
    for c in chunks {
        let Some((_, chunk)) = CHUNKS.iter().find(|(n, _)| n == c) else {
            let m = format!("--chunks: `{c}` is not `training` or `testing`");
            return Err(fail(Path::new(from), m).into());
        };
        halves.push(half(&folder, chunk)?);
    }
    let labels: Vec<f64> = halves.iter().flat_map(|h| h.labels.clone()).collect();
    let rows = labels.len() / 5;
    let placed = super::grid::place(&labels, rows, &FACTOR_NAMES)
        .map_err(|m| fail(Path::new(from), format!("the halves' labels: {m}")))?;
    let kept = (placed.distinct.iter())
        .map(|d| d.iter().map(|&v| v as u8).collect())
        .collect();
    let spec = spec(kept);
    let store = Store::open(out, &StorageOptions::default())?;
    let mut w = FactorWriter::new(store, &spec, shard_samples, split);
    let bar = progress(rows as u64, "smallnorb");
    let mut image = vec![0u8; SIDE * SIDE];
    for (i, &row) in placed.rows.iter().enumerate() {
        let (mut h, mut r) = (0, row as usize);
        while r >= halves[h].labels.len() / 5 {
            r -= halves[h].labels.len() / 5;
            h += 1;
        }
        halves[h].dat.read_at(r, camera * SIDE * SIDE, &mut image)?;
        let small = super::resample::lanczos_resize(&image, (SIDE, SIDE), 1, (OUT, OUT));
        w.push(&small, &spec.targets_of(i))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(w.finish()?)
}
