//! The real dSprites file, `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`
//! (Matthey et al. 2017): `imgs` uint8 `(N, 64, 64)` of 0/1,
//! `latents_classes` int64 `(N, 6)` (color, shape, scale, orientation, posX,
//! posY), `latents_values`, and a pickled `metadata` object array, which is
//! skipped, never unpickled. Imported into the same form as the generated
//! dataset (`data/dsprites.rs`): packed bits, the five varying factors as
//! targets under the same names, the train split in the file's order and the
//! same fixed random test subset — so for the same images it is the same
//! dataset, shard for shard. A subset of the grid (every combination of the
//! values present, row-major) imports as the generator's subset does. The
//! images stream out of the archive one at a time.
use std::path::Path;

use vae_proto::dataset::DatasetManifest;

use super::error::ImportError;
use super::input::progress;
use super::npz::{Npz, NpzError};
use crate::data::dsprites::{spec_keeping, FACTOR_NAMES, FACTOR_SIZES, SIDE};
use crate::data::factors::{FactorSpec, FactorWriter, TestSplit};
use crate::data::format::pack_bits;
use crate::data::store::{StorageOptions, Store};

/// Per factor, the values the grid holds; per row, its five classes.
type Grid = (FactorSpec, Vec<[u8; 5]>);

/// Reads `latents_classes` whole (N × 6 int64: 35 MB for the real file)
/// and checks it is the complete grid of its values in row-major order;
/// returns the factor dataset those values make, and each row's classes.
fn grid_of(npz: &Npz, rows: usize) -> Result<Grid, NpzError> {
    let classes = npz.read("latents_classes", &["<i8"], |a| {
        if a.header.shape != [rows, 6] {
            return Err(npz.fail(format!(
                "key `latents_classes`: shape {:?}, expected ({rows}, 6)",
                a.header.shape
            )));
        }
        let mut row = vec![0u8; 48];
        let mut out = Vec::with_capacity(rows);
        while a
            .next_row(&mut row)
            .map_err(|e| npz.fail(format!("key `latents_classes`: {e}")))?
        {
            let v: Vec<i64> = row
                .chunks(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
                .collect();
            out.push(v);
        }
        Ok(out)
    })?;
    let bad = |m: String| npz.fail(format!("key `latents_classes`: {m}"));
    let mut targets = Vec::with_capacity(rows);
    for (i, v) in classes.iter().enumerate() {
        if v[0] != classes[0][0] {
            return Err(bad(format!(
                "row {i}: color {} where row 0 has {} (dSprites has one color)",
                v[0], classes[0][0]
            )));
        }
        let mut t = [0u8; 5];
        for k in 0..5 {
            let x = v[k + 1];
            if !(0..FACTOR_SIZES[k] as i64).contains(&x) {
                return Err(bad(format!(
                    "row {i}: {} class {x}, outside 0..{}",
                    FACTOR_NAMES[k], FACTOR_SIZES[k]
                )));
            }
            t[k] = x as u8;
        }
        targets.push(t);
    }
    let values: Vec<Vec<u8>> = (0..5)
        .map(|k| {
            let mut v: Vec<u8> = targets.iter().map(|t| t[k]).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .collect();
    let spec = spec_keeping(values);
    if spec.grid_len() != rows {
        return Err(bad(format!(
            "{rows} rows, but the values present make a grid of {}: not a complete grid of factors",
            spec.grid_len()
        )));
    }
    for (i, t) in targets.iter().enumerate() {
        if spec.targets_of(i) != t {
            return Err(bad(format!(
                "row {i} is {t:?}, the grid's row-major order has {:?} there",
                spec.targets_of(i)
            )));
        }
    }
    Ok((spec, targets))
}

/// Imports the dSprites `.npz` at `from` into `out` (a path or URL).
pub fn import(
    from: &Path,
    out: &str,
    shard_samples: usize,
    split: TestSplit,
) -> Result<DatasetManifest, ImportError> {
    let npz = Npz::open(from)?;
    let imgs = npz.header("imgs", &["|u1"])?;
    let rows = imgs.rows();
    if imgs.shape != [rows, SIDE, SIDE] || rows == 0 {
        return Err(npz
            .fail(format!(
                "key `imgs`: shape {:?}, expected (N, {SIDE}, {SIDE})",
                imgs.shape
            ))
            .into());
    }
    let (spec, targets) = grid_of(&npz, rows)?;
    // Everything is checked: only now is anything written.
    let store = Store::open(out, &StorageOptions::default())?;
    let mut w = FactorWriter::new(store, &spec, shard_samples, split);
    let bar = progress(rows as u64, "dsprites");
    let pixels = SIDE * SIDE;
    let written = npz.read("imgs", &["|u1"], |a| {
        let mut row = vec![0u8; pixels];
        for t in &targets {
            let more = a
                .next_row(&mut row)
                .map_err(|e| npz.fail(format!("key `imgs`: {e}")))?;
            if !more {
                return Err(npz.fail("key `imgs`: ends early"));
            }
            w.push(&pack_bits(&row, 1, pixels), t)
                .map_err(|e| npz.fail(e.to_string()))?;
            bar.inc(1);
        }
        Ok(())
    });
    bar.finish_and_clear();
    written?;
    Ok(w.finish()?)
}
