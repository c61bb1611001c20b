//! `[data]`: where the dataset is and in which order it is read.
use serde::{Deserialize, Serialize};

use super::checks::positive;
use super::error::{key_err, ConfigError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataOrder {
    /// A permutation of all samples per epoch, split into global batches.
    Global,
    /// Each epoch's shards, permuted, dealt to ranks as contiguous ranges of
    /// samples, shuffled in a bounded buffer.
    Shard,
}

/// disentanglement_lib's dSprites variants, made at load time from the
/// binary images: each sample's colour, noise or background drawn from
/// (train.seed, sample index, epoch), so neither a resume nor the number
/// of workers changes what a sample looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataVariant {
    /// The images as stored.
    None,
    /// Color-dSprites: the shape in a colour drawn from [0.5, 1]³.
    Color,
    /// Noisy-dSprites: uniform noise on the background, the shape white.
    Noisy,
    /// Scream-dSprites: a tinted 64×64 patch of `data.scream_image` as the
    /// background, the shape its inverse.
    Scream,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Dataset prefix: `file:///abs/dir`, or a path (relative to the working directory).
    pub url: String,
    pub order: DataOrder,
    /// Samples held in the shuffle buffer of the `shard` order.
    pub shuffle_buffer: u64,
    /// `shard` order: the number of streams the samples are dealt to (each
    /// rank reads its share of them); 0 = the number of workers when the
    /// epoch starts. Fixed, the order no longer depends on the number of
    /// workers: 1 and 2 workers train the same model. `train.batch_size`
    /// must be a multiple of it.
    pub streams: u64,
    /// A dSprites variant made at load time (RGB, 3 channels): `none`,
    /// `color`, `noisy` or `scream`.
    pub variant: DataVariant,
    /// `scream`: the picture the backgrounds are cut from (a path or URL;
    /// disentanglement_lib's is Munch's The Scream), fitted into 350×274.
    pub scream_image: String,
    /// How WebDataset tars named by `data.url` are decoded as they stream.
    pub decode: DecodeSection,
}

/// `[data.decode]`: when `data.url` names WebDataset tar shards
/// (`s3://…/shard-{000000..000999}.tar`), they are read as they are, each
/// sample decoded as `vae-worker data prepare images` would store it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeSection {
    /// Side of the square images (the importer's `--size`).
    pub size: u32,
    /// Centre crop to this side first; 0 for none (`--crop`).
    pub crop: u32,
    /// 3 (RGB) or 1 (grey) (`--channels`).
    pub channels: u8,
    /// The share of samples in the test split, chosen by a hash of each
    /// key as the importer chooses it (`--test-fraction`).
    pub test_fraction: f64,
}

impl Default for DecodeSection {
    fn default() -> Self {
        DecodeSection {
            size: 64,
            crop: 0,
            channels: 3,
            test_fraction: 0.05,
        }
    }
}

impl DecodeSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.size == 0 || self.size > 1024 {
            return Err(key_err("data.decode.size", "must be 1 to 1024"));
        }
        if ![1, 3].contains(&self.channels) {
            return Err(key_err("data.decode.channels", "takes 1 or 3"));
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(key_err("data.decode.test_fraction", "is a share in [0, 1)"));
        }
        Ok(())
    }
}

/// Whether `url` names WebDataset tar shards (a `.tar`, with brace ranges
/// or lists) rather than a dataset in the project's format.
pub fn names_tars(url: &str) -> bool {
    url.trim_end_matches('/').ends_with(".tar")
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            url: "data/mnist".into(),
            order: DataOrder::Global,
            shuffle_buffer: 10_000,
            streams: 0,
            variant: DataVariant::None,
            scream_image: String::new(),
            decode: DecodeSection::default(),
        }
    }
}

impl DataSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(key_err("data.url", "is empty"));
        }
        match (self.variant, self.scream_image.trim().is_empty()) {
            (DataVariant::Scream, true) => {
                return Err(key_err(
                    "data.scream_image",
                    "is empty: data.variant = \"scream\" cuts its backgrounds from this picture (a path or URL)",
                ))
            }
            (DataVariant::Scream, false) | (_, true) => {}
            (_, false) => {
                return Err(key_err(
                    "data.scream_image",
                    "is only read with data.variant = \"scream\"",
                ))
            }
        }
        self.decode.validate()?;
        positive("data.shuffle_buffer", self.shuffle_buffer)
    }
}
