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
    /// `"u1"`: binary pixels packed eight to a byte.
    pub dtype: String,
    /// One entry per target column (`K` of them), e.g. `label` with 10 values.
    pub targets: Vec<TargetSpec>,
    /// `train` and `test`, each a list of shards.
    pub splits: BTreeMap<String, SplitManifest>,
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
    /// Pixels of one sample's image.
    pub fn sample_pixels(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Bytes of one sample's image as stored.
    pub fn sample_bytes(&self) -> usize {
        if self.dtype == "u1" {
            self.sample_pixels().div_ceil(8)
        } else {
            self.sample_pixels()
        }
    }

    /// Bytes a shard of `samples` records must have.
    pub fn shard_bytes(&self, samples: u64) -> u64 {
        samples * (self.sample_bytes() + self.targets.len()) as u64
    }

    /// Checks the manifest is self-consistent; the message names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.format != DATASET_FORMAT {
            return Err(format!(
                "format is `{}`, this reader knows `{DATASET_FORMAT}`",
                self.format
            ));
        }
        if self.dtype != "u8" && self.dtype != "u1" {
            return Err(format!(
                "dtype is `{}`, only `u8` and `u1` are supported",
                self.dtype
            ));
        }
        if self.sample_shape.contains(&0) {
            return Err(format!("sample_shape {:?} has a zero", self.sample_shape));
        }
        for (name, split) in &self.splits {
            let total: u64 = split.shards.iter().map(|s| s.samples).sum();
            if total != split.samples {
                return Err(format!(
                    "split `{name}` says {} samples but its shards hold {total}",
                    split.samples
                ));
            }
            for shard in &split.shards {
                if shard.bytes != self.shard_bytes(shard.samples) {
                    return Err(format!(
                        "shard `{}` says {} bytes, {} samples need {}",
                        shard.object,
                        shard.bytes,
                        shard.samples,
                        self.shard_bytes(shard.samples)
                    ));
                }
            }
        }
        Ok(())
    }
}
