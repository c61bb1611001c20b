//! `[optim]`: Adam's settings.
use serde::{Deserialize, Serialize};

use super::checks::above_zero;
use super::checks::{betas, finite_nonneg};
use super::error::ConfigError;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl OptimSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        above_zero("optim.lr", self.lr)?;
        betas([("optim.beta1", self.beta1), ("optim.beta2", self.beta2)])?;
        above_zero("optim.eps", self.eps)?;
        finite_nonneg("optim.weight_decay", self.weight_decay)
    }
}
