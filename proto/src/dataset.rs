//! The dataset format: a `manifest.json` object next to shard objects, all under
//! one object-store prefix (a `file://` URL or a plain path today).
//!
//! A shard holds `samples` records laid out as all images first
//! (`u8`: `samples × C × H × W` bytes, pixel = byte / 255; or `u1`: binary
//! images, each packed into `⌈C·H·W/8⌉` bytes, most significant bit first,
//! pixel = bit) and then all targets
//! (`samples × K` bytes, `u8`: a class label for MNIST, factor indices for
//! dSprites). Its length and SHA-256 are in the manifest, so a reader can tell a
//! missing, truncated or corrupt shard from a good one.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The value of [`DatasetManifest::format`] this code reads and writes.
pub const DATASET_FORMAT: &str = "vae-dataset/1";
/// Name of the manifest object under the dataset prefix.
pub const MANIFEST_NAME: &str = "manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetManifest {
    pub format: String,
    pub name: String,
    /// `[C, H, W]` of one sample.
    pub sample_shape: [usize; 3],
    /// `"u8"`: pixel values are bytes, scaled to [0, 1] by dividing by 255;
    /// `"u1"`: binary pixels packed eight to a byte; `"f4"`: little-endian
    /// float32 values, not images (`vae-worker encode`'s codes: sample
    /// shape `[2, 1, L]`, `μ` then `log σ²`).
    pub dtype: String,
    /// One entry per target column (`K` of them), e.g. `label` with 10 values.
    pub targets: Vec<TargetSpec>,
    /// `train` and `test`, each a list of shards.
    pub splits: BTreeMap<String, SplitManifest>,
    /// Factor datasets (dSprites, 3dshapes, MPI3D): the `train` split is
    /// every combination of these factors' values, in row-major order (the
    /// last factor varies fastest), and each sample's targets are its
    /// factor indices: so a combination finds its image (the
    /// disentanglement metrics draw observations this way). Absent for
    /// other datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factors: Option<Vec<Factor>>,
    /// A factor dataset whose `test` split is held out of the grid
    /// (`data prepare … --test-fraction F`): the grid positions the
    /// worker's `test_indices(grid, test samples)` picks are the test split
    /// (ascending), the others the train split (in grid order). `false`: the train split is the whole
    /// grid and the test split a subset of it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub held_out: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One factor of a factor dataset's grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    pub name: String,
    /// The values (target bytes) the grid holds, ascending: all of
    /// `0..values` for a full dataset, the kept ones for a subset.
    pub values: Vec<u8>,
    /// Each kept value in the factor's own units (dSprites' scale, its
    /// orientation in radians, 3dshapes' hues), aligned with `values`;
    /// empty when the source gives none (MPI3D's classes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<f64>,
    /// A factor the metrics do not score: each observation draws it at
    /// random (SmallNORB's instance, as disentanglement_lib's
    /// `SplitDiscreteStateSpace` does).
    #[serde(default, skip_serializing_if = "is_false")]
    pub nuisance: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: String,
    /// Number of distinct values; a target byte is in `0..values`.
    pub values: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitManifest {
    pub samples: u64,
    pub shards: Vec<ShardEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// Object name relative to the dataset prefix, e.g. `train-00000.bin`.
    pub object: String,
    pub samples: u64,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the whole object.
    pub sha256: String,
}

impl DatasetManifest {
    /// What a reader must know of a factor dataset's test split: it is drawn
    /// from the training grid (disentanglement_lib has no held-out split
    /// either), so test figures are on training data; `None` for others.
    pub fn test_split_note(&self) -> Option<String> {
        self.factors.as_ref()?;
        let (train, test) = (self.splits.get("train")?, self.splits.get("test")?);
        Some(match (self.held_out, test.samples >= train.samples) {
            (true, _) => format!(
                "the test split's {} samples are held out of the grid: the train split holds the other {}",
                test.samples, train.samples
            ),
            (false, true) => format!(
                "the test split is the whole training split ({} samples): test figures are on training data (a factor dataset has no held-out split, as in disentanglement_lib; `data prepare … --test-fraction F` holds one out)",
                test.samples
            ),
            (false, false) => format!(
                "the test split's {} samples are drawn from the {} of the training grid: test figures are on training data (a factor dataset has no held-out split, as in disentanglement_lib; `data prepare … --test-fraction F` holds one out)",
                test.samples, train.samples
            ),
        })
    }

    /// Whether its samples are images (`u8`, `u1`), not codes (`f4`).
    pub fn holds_images(&self) -> bool {
        self.dtype != "f4"
    }

    /// Pixels of one sample's image.
    pub fn sample_pixels(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Bytes of one sample's image as stored.
    pub fn sample_bytes(&self) -> usize {
        match self.dtype.as_str() {
            "u1" => self.sample_pixels().div_ceil(8),
            "f4" => self.sample_pixels() * 4,
            _ => self.sample_pixels(),
        }
    }

    /// Bytes a shard of `samples` records must have (saturating: [`check`]
    /// refuses manifests whose sizes overflow).
    ///
    /// [`check`]: DatasetManifest::check
    pub fn shard_bytes(&self, samples: u64) -> u64 {
        samples.saturating_mul((self.sample_bytes() + self.targets.len()) as u64)
    }

    /// Checks the manifest is self-consistent and within bounds before
    /// anything is allocated from it (a manifest from a bucket is
    /// untrusted); the message names the field that is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.format != DATASET_FORMAT {
            return Err(format!(
                "format is `{}`, this reader knows `{DATASET_FORMAT}`",
                self.format
            ));
        }
        if !["u8", "u1", "f4"].contains(&self.dtype.as_str()) {
            return Err(format!(
                "dtype is `{}`, only `u8`, `u1` and `f4` are supported",
                self.dtype
            ));
        }
        let [c, h, w] = self.sample_shape;
        let pixels = c.checked_mul(h).and_then(|x| x.checked_mul(w));
        match pixels {
            _ if self.sample_shape.contains(&0) => {
                return Err(format!("sample_shape {:?} has a zero", self.sample_shape))
            }
            Some(p) if p <= MAX_SAMPLE_PIXELS && c <= 4 => {}
            _ => {
                return Err(format!(
                    "sample_shape {:?} is out of bounds (at most 4 channels and {MAX_SAMPLE_PIXELS} pixels)",
                    self.sample_shape
                ))
            }
        }
        if self.targets.len() > MAX_TARGETS {
            return Err(format!(
                "targets: {} columns, at most {MAX_TARGETS}",
                self.targets.len()
            ));
        }
        for t in &self.targets {
            if t.values == 0 || t.values > 256 {
                return Err(format!(
                    "targets: `{}` has {} values; a target byte holds 1 to 256",
                    t.name, t.values
                ));
            }
        }
        for (name, split) in &self.splits {
            self.check_split(name, split)?;
        }
        self.check_factors()
    }

    /// The factor grid, when there is one: one factor per target, of the
    /// same name, values ascending and in range, and the grid exactly as
    /// large as the `train` split.
    fn check_factors(&self) -> Result<(), String> {
        let Some(factors) = &self.factors else {
            return Ok(());
        };
        if factors.len() != self.targets.len() {
            return Err(format!(
                "factors: {} factors for {} targets",
                factors.len(),
                self.targets.len()
            ));
        }
        let mut grid = 1u64;
        for (f, t) in factors.iter().zip(&self.targets) {
            let ascending = f.values.windows(2).all(|w| w[0] < w[1]);
            let in_range = f.values.iter().all(|&v| (v as usize) < t.values);
            if f.name != t.name || f.values.is_empty() || !ascending || !in_range {
                return Err(format!(
                    "factors: `{}` does not match target `{}` with {} values (its values must be distinct, ascending and below that)",
                    f.name, t.name, t.values
                ));
            }
            let units_fit = f.units.is_empty()
                || (f.units.len() == f.values.len() && f.units.iter().all(|u| u.is_finite()));
            if !units_fit {
                return Err(format!(
                    "factors: `{}` has {} units for {} values (one finite number per value, or none)",
                    f.name,
                    f.units.len(),
                    f.values.len()
                ));
            }
            grid = grid.saturating_mul(f.values.len() as u64);
        }
        let train = self.splits.get("train").map_or(0, |s| s.samples);
        let test = self.splits.get("test").map_or(0, |s| s.samples);
        if self.held_out && grid != train.saturating_add(test) {
            return Err(format!(
                "factors: a grid of {grid} combinations, but the train and held-out test splits hold {train} + {test} samples"
            ));
        }
        if !self.held_out && grid != train {
            return Err(format!(
                "factors: a grid of {grid} combinations, but the train split holds {train} samples"
            ));
        }
        if factors.iter().all(|f| f.nuisance) {
            return Err(
                "factors: every factor is a nuisance; the metrics need one to score".into(),
            );
        }
        Ok(())
    }

    /// The factors the metrics score (all but the nuisances), by index.
    pub fn scored_factors(&self) -> Vec<usize> {
        let f = self.factors.as_deref().unwrap_or_default();
        (0..f.len()).filter(|&k| !f[k].nuisance).collect()
    }

    /// The sizes of the factor grid (`None` for a dataset without factors).
    pub fn grid_sizes(&self) -> Option<Vec<usize>> {
        self.factors
            .as_ref()
            .map(|f| f.iter().map(|f| f.values.len()).collect())
    }

    fn check_split(&self, name: &str, split: &SplitManifest) -> Result<(), String> {
        if split.samples > MAX_SAMPLES {
            return Err(format!(
                "split `{name}`: samples {} is more than {MAX_SAMPLES}",
                split.samples
            ));
        }
        let mut total = 0u64;
        for shard in &split.shards {
            check_object_name(&shard.object)
                .map_err(|m| format!("split `{name}`: shard object `{}` {m}", shard.object))?;
            check_sha256(&shard.sha256)
                .map_err(|m| format!("shard `{}`: sha256 {m}", shard.object))?;
            total = total
                .checked_add(shard.samples)
                .ok_or_else(|| format!("split `{name}`: the shards' samples overflow"))?;
            let need = shard
                .samples
                .checked_mul((self.sample_bytes() + self.targets.len()) as u64);
            if need != Some(shard.bytes) || shard.bytes > MAX_SHARD_BYTES {
                return Err(match need {
                    Some(n) if n == shard.bytes => format!(
                        "shard `{}`: bytes {} is more than {MAX_SHARD_BYTES}",
                        shard.object, shard.bytes
                    ),
                    Some(n) => format!(
                        "shard `{}`: bytes {} disagrees with samples {} × {} bytes = {n}",
                        shard.object,
                        shard.bytes,
                        shard.samples,
                        self.sample_bytes() + self.targets.len()
                    ),
                    None => format!(
                        "shard `{}`: samples {} × the sample size overflows",
                        shard.object, shard.samples
                    ),
                });
            }
        }
        if total != split.samples {
            return Err(format!(
                "split `{name}`: samples says {} but its shards hold {total}",
                split.samples
            ));
        }
        Ok(())
    }
}

/// Bounds on what a manifest may declare (far above any real dataset: an
/// ImageNet-scale split, a 1024×1024 RGBA image, a 4 GiB shard).
pub const MAX_SAMPLES: u64 = 1 << 34;
pub const MAX_SAMPLE_PIXELS: usize = 4 << 20;
pub const MAX_SHARD_BYTES: u64 = 4 << 30;
pub const MAX_TARGETS: usize = 64;

/// A shard's object name: relative, under the dataset prefix (no `..`, no
/// leading `/`, no empty or `.` part, no backslash or control character).
pub fn check_object_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 1024
        || name.starts_with('/')
        || name.contains('\\')
        || name.chars().any(char::is_control)
        || name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err("is not a plain relative name under the dataset".into());
    }
    Ok(())
}

/// A SHA-256 as the manifest holds it: 64 lower-case hex digits.
pub fn check_sha256(s: &str) -> Result<(), String> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not 64 lower-case hex digits",
            s.chars().take(80).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> DatasetManifest {
        let shard = |object: &str, samples: u64| ShardEntry {
            object: object.into(),
            samples,
            bytes: samples * 785,
            sha256: "0".repeat(64),
        };
        DatasetManifest {
            format: DATASET_FORMAT.into(),
            name: "t".into(),
            sample_shape: [1, 28, 28],
            dtype: "u8".into(),
            targets: vec![TargetSpec {
                name: "label".into(),
                values: 10,
            }],
            splits: BTreeMap::from([(
                "train".to_string(),
                SplitManifest {
                    samples: 30,
                    shards: vec![shard("train-00000.bin", 10), shard("train-00001.bin", 20)],
                },
            )]),
            factors: None,
            held_out: false,
        }
    }

    fn refused(edit: impl Fn(&mut DatasetManifest)) -> String {
        let mut m = manifest();
        edit(&mut m);
        let e = m.check().expect_err("refused");
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn a_good_manifest_passes() {
        manifest().check().unwrap();
    }

    #[test]
    fn untrusted_fields_are_named() {
        let shard = |m: &mut DatasetManifest| m.splits.get_mut("train").unwrap().shards[0].clone();
        let set = |m: &mut DatasetManifest, s: ShardEntry| {
            m.splits.get_mut("train").unwrap().shards[0] = s;
        };
        let e = refused(|m| {
            let mut s = shard(m);
            s.sha256 = "xyz".into();
            set(m, s)
        });
        assert!(e.contains("sha256") && e.contains("train-00000.bin"), "{e}");
        let e = refused(|m| {
            let mut s = shard(m);
            s.sha256 = "A".repeat(64);
            set(m, s)
        });
        assert!(e.contains("sha256"), "{e}");
        let e = refused(|m| m.sample_shape = [usize::MAX, 2, 2]);
        assert!(e.contains("sample_shape"), "{e}");
        let e = refused(|m| {
            let mut s = shard(m);
            s.samples = u64::MAX / 2;
            set(m, s)
        });
        assert!(
            e.contains("train-00000.bin") && e.contains("overflow"),
            "{e}"
        );
        let e = refused(|m| {
            let mut s = shard(m);
            s.bytes += 1;
            set(m, s)
        });
        assert!(e.contains("bytes") && e.contains("disagrees"), "{e}");
        let e = refused(|m| m.splits.get_mut("train").unwrap().samples = u64::MAX);
        assert!(e.contains("samples"), "{e}");
        for name in ["../../etc/passwd", "/abs", "a//b", "./x", ""] {
            let e = refused(|m| {
                let mut s = shard(m);
                s.object = name.into();
                set(m, s)
            });
            assert!(e.contains("shard object"), "{name}: {e}");
        }
        let e = refused(|m| m.targets[0].values = 1000);
        assert!(e.contains("targets"), "{e}");
    }

    #[test]
    fn a_factor_grid_must_cover_the_train_split() {
        let grid = |values: Vec<u8>| {
            Some(vec![Factor {
                name: "label".into(),
                values,
                units: vec![],
                nuisance: false,
            }])
        };
        let mut m = manifest();
        m.factors = grid((0..10).collect());
        let e = m.check().unwrap_err();
        assert!(e.contains("grid of 10") && e.contains("30"), "{e}");
        m.splits.get_mut("train").unwrap().samples = 10;
        m.splits.get_mut("train").unwrap().shards.truncate(1);
        m.check().unwrap();
        assert_eq!(m.grid_sizes(), Some(vec![10]));
        m.factors = grid(vec![3, 2]);
        assert!(m.check().unwrap_err().contains("ascending"));
        m.factors = grid(vec![0, 10]);
        assert!(m.check().is_err());
        // Units: one finite number per kept value, or none.
        m.factors = grid((0..10).collect());
        if let Some(f) = m.factors.as_mut() {
            f[0].units = (0..10).map(|v| v as f64 * 0.1).collect();
        }
        m.check().unwrap();
        if let Some(f) = m.factors.as_mut() {
            f[0].units.pop();
        }
        assert!(m.check().unwrap_err().contains("9 units for 10 values"));
        if let Some(f) = m.factors.as_mut() {
            f[0].units.push(f64::NAN);
        }
        assert!(m.check().is_err());
    }

    use proptest::prelude::*;

    proptest! {
        /// A manifest's JSON, mutated: read and checked, or refused; never a
        /// panic, and a manifest that passes names only plain objects.
        #[test]
        fn prop_mutated_manifests_are_checked_or_refused(
            bytes in crate::fuzz::mutated(serde_json::to_vec_pretty(&manifest()).unwrap_or_default())
        ) {
            if let Ok(m) = serde_json::from_slice::<DatasetManifest>(&bytes) {
                if m.check().is_ok() {
                    for s in m.splits.values().flat_map(|s| &s.shards) {
                        prop_assert!(check_object_name(&s.object).is_ok());
                    }
                }
            }
        }
    }
}
