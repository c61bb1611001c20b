//! `[early_stopping]`: stopping when the test loss no longer improves.
use serde::{Deserialize, Serialize};

use super::checks::{finite_nonneg, positive};
use super::error::ConfigError;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStoppingSection {
    /// Stop when the test loss has not improved for `patience` evaluations, and
    /// keep the best checkpoint in `checkpoints/best`.
    pub enabled: bool,
    pub patience: u64,
    /// An improvement smaller than this does not count.
    pub min_delta: f64,
}

impl Default for EarlyStoppingSection {
    fn default() -> Self {
        EarlyStoppingSection {
            enabled: false,
            patience: 5,
            min_delta: 0.0,
        }
    }
}

impl EarlyStoppingSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("early_stopping.patience", self.patience)?;
        finite_nonneg("early_stopping.min_delta", self.min_delta)
    }
}
