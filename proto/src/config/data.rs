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
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            url: "data/mnist".into(),
            order: DataOrder::Global,
            shuffle_buffer: 10_000,
            streams: 0,
        }
    }
}

impl DataSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(key_err("data.url", "is empty"));
        }
        positive("data.shuffle_buffer", self.shuffle_buffer)
    }
}
