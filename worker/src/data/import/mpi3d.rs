//! MPI3D (Gondal et al. 2019: `mpi3d_toy.npz`, `mpi3d_realistic.npz`,
//! `mpi3d_real.npz`): one array `images`, uint8 `(N, 64, 64, 3)`, every
//! combination of seven factors in row-major order — object_color 6,
//! object_shape 6, object_size 2, camera_height 3, background_color 3,
//! horizontal_axis 40, vertical_axis 40 (1,036,800 images, ~12.7 GB of
//! pixels); `--factor-sizes` gives other sizes (a subset file). The images
//! stream out of the archive one at a time (memory stays bounded whatever
//! the file's size), channels moved first, into a factor dataset whose
//! targets are the factor indices.
use std::path::Path;

use vae_proto::dataset::DatasetManifest;

use super::error::ImportError;
use super::input::progress;
use super::npz::Npz;
use crate::data::factors::{FactorSpec, FactorWriter, TestSplit};
use crate::data::format::channels_first;
use crate::data::store::{StorageOptions, Store};

pub const FACTOR_NAMES: [&str; 7] = [
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
];
pub const FACTOR_SIZES: [usize; 7] = [6, 6, 2, 3, 3, 40, 40];
const SIDE: usize = 64;

/// MPI3D's factor grid with `sizes` values per factor.
pub fn spec(sizes: &[usize]) -> FactorSpec {
    FactorSpec {
        name: "mpi3d".into(),
        sample_shape: [3, SIDE, SIDE],
        dtype: "u8",
        factors: FACTOR_NAMES
            .iter()
            .zip(sizes)
            .map(|(n, &s)| (n.to_string(), s, (0..s).map(|v| v as u8).collect()))
            .collect(),
        // MPI3D's factors are classes (colours, shapes, positions of the arm).
        units: vec![],
        nuisance: vec![],
    }
}

/// Imports the MPI3D `.npz` at `from` into `out`.
pub fn import(
    from: &Path,
    out: &str,
    sizes: &[usize],
    shard_samples: usize,
    split: TestSplit,
) -> Result<DatasetManifest, ImportError> {
    let npz = Npz::open(from)?;
    if sizes.len() != 7 || sizes.iter().any(|&s| s == 0 || s > 256) {
        return Err(npz
            .fail(format!(
                "--factor-sizes {sizes:?}: seven sizes of 1 to 256 expected"
            ))
            .into());
    }
    let spec = spec(sizes);
    let h = npz.header("images", &["|u1"])?;
    if h.shape != [spec.grid_len(), SIDE, SIDE, 3] {
        return Err(npz
            .fail(format!(
                "key `images`: shape {:?}, expected ({}, {SIDE}, {SIDE}, 3): the complete grid of factor sizes {sizes:?}",
                h.shape,
                spec.grid_len()
            ))
            .into());
    }
    let store = Store::open(out, &StorageOptions::default())?;
    let mut w = FactorWriter::new(store, &spec, shard_samples, split);
    let bar = progress(spec.grid_len() as u64, "mpi3d");
    let done = npz.read("images", &["|u1"], |a| {
        let mut hwc = vec![0u8; a.row_bytes()];
        let mut chw = vec![0u8; a.row_bytes()];
        for i in 0..spec.grid_len() {
            let more = a
                .next_row(&mut hwc)
                .map_err(|e| npz.fail(format!("key `images`: {e}")))?;
            if !more {
                return Err(npz.fail("key `images`: ends early"));
            }
            channels_first(&hwc, &mut chw, 3);
            w.push(&chw, &spec.targets_of(i))
                .map_err(|e| npz.fail(e.to_string()))?;
            bar.inc(1);
        }
        Ok(())
    });
    bar.finish_and_clear();
    done?;
    Ok(w.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_grid_is_a_million_images_and_pixels_move_channels_first() {
        assert_eq!(spec(&FACTOR_SIZES).grid_len(), 1_036_800);
        let hwc = [1, 2, 3, 4, 5, 6];
        let mut chw = [0; 6];
        channels_first(&hwc, &mut chw, 3);
        assert_eq!(chw, [1, 4, 2, 5, 3, 6]);
        assert_eq!(spec(&FACTOR_SIZES).targets_of(1), vec![0, 0, 0, 0, 0, 0, 1]);
    }
}
