//! `[log]`: logging windows, pictures and histograms.
use serde::{Deserialize, Serialize};

use super::checks::positive;
use super::error::ConfigError;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Train scalars go to TensorBoard every this many steps.
    pub every_steps: u64,
    /// Number of test images in the reconstruction grid and prior samples.
    pub images: u64,
    /// Histograms of μ and log σ² at each evaluation.
    pub histograms: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            every_steps: 50,
            images: 32,
            histograms: true,
        }
    }
}

impl LogSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("log.every_steps", self.every_steps)
    }
}
