//! `[checkpoint]`: where and how often checkpoints are written.
use serde::{Deserialize, Serialize};

use super::checks::positive;
use super::error::ConfigError;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Where checkpoints go: a path or an object-store URL (`s3://`,
    /// `gs://`, `az://`, ...). Empty: `<run-dir>/checkpoints`.
    pub url: String,
    /// Write checkpoints in the background while training continues (the
    /// step's state is copied first); `false` writes them in the step.
    pub asynchronous: bool,
    /// Write a checkpoint every this many steps (0 = only per epoch / at the end).
    pub every_steps: u64,
    /// Write a checkpoint every this many epochs (0 = never per epoch).
    pub every_epochs: u64,
    /// How many step checkpoints to keep (the best one is kept apart).
    pub keep_last: u64,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            url: String::new(),
            asynchronous: true,
            every_steps: 0,
            every_epochs: 1,
            keep_last: 3,
        }
    }
}

impl CheckpointSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("checkpoint.keep_last", self.keep_last)
    }
}
