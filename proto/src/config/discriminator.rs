//! `[discriminator]`: FactorVAE's discriminator.
use serde::{Deserialize, Serialize};

use super::checks::above_zero;
use super::checks::{betas, positive};
use super::error::{key_err, ConfigError};

/// FactorVAE's discriminator and its optimizer (Kim & Mnih 2018: 6 hidden
/// layers of 1000 units, LeakyReLU(0.2); Adam lr 1e-4, betas (0.5, 0.9)).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscriminatorSection {
    pub hidden: i64,
    pub layers: u64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
}

impl Default for DiscriminatorSection {
    fn default() -> Self {
        DiscriminatorSection {
            hidden: 1000,
            layers: 6,
            lr: 1e-4,
            beta1: 0.5,
            beta2: 0.9,
        }
    }
}

impl DiscriminatorSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.hidden < 1 {
            return Err(key_err(
                "discriminator.hidden",
                format!("must be at least 1, got {}", self.hidden),
            ));
        }
        positive("discriminator.layers", self.layers)?;
        above_zero("discriminator.lr", self.lr)?;
        betas([
            ("discriminator.beta1", self.beta1),
            ("discriminator.beta2", self.beta2),
        ])
    }
}
