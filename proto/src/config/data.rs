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
        positive("data.shuffle_buffer", self.shuffle_buffer)
    }
}
