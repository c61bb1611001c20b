//! `[model]`: the architecture, the objective and its weights, the likelihood.
use serde::{Deserialize, Serialize};

use super::checks::{finite_nonneg, positive};
use super::error::{key_err, ConfigError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// pytorch/examples `vae/main.py`: 784-400-20, layers fc1, fc21, fc22, fc3, fc4.
    Mlp,
    /// 4×4 stride-2 convolutions and their mirror transposed convolutions.
    Conv,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Conv => "conv",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    /// recon + β·KL (+ γ·squared error): VAE (β = 1) and β-VAE.
    Vae,
    /// Controlled-capacity β-VAE (Burgess et al. 2018): recon + w·|KL̄ − C|
    /// with KL̄ the mean KL over the global batch, C rising linearly from 0
    /// to `capacity_max` over `capacity_steps`.
    Capacity,
    /// FactorVAE (Kim & Mnih 2018): recon + KL + γ·TC, TC from a discriminator.
    Factor,
    /// β-TCVAE (Chen et al. 2018): recon + MI + β·TC + dimension-wise KL,
    /// with minibatch-weighted sampling over the global batch.
    Btcvae,
    /// DIP-VAE-I (Kumar et al. 2018): recon + KL + λ_od·Σ off-diagonal² +
    /// λ_d·Σ (diagonal − 1)² of the covariance of μ over the global batch.
    #[serde(rename = "dip_i")]
    DipI,
    /// DIP-VAE-II: the same on the covariance of z, E[diag σ²] + Cov(μ).
    #[serde(rename = "dip_ii")]
    DipIi,
}

impl ObjectiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectiveKind::Vae => "vae",
            ObjectiveKind::Capacity => "capacity",
            ObjectiveKind::Factor => "factor",
            ObjectiveKind::Btcvae => "btcvae",
            ObjectiveKind::DipI => "dip_i",
            ObjectiveKind::DipIi => "dip_ii",
        }
    }

    /// The `model.*` weights of objectives that this one reads (of
    /// [`ObjectiveKind::WEIGHTS`]); the others do not apply to it.
    pub fn weights(self) -> &'static [&'static str] {
        match self {
            ObjectiveKind::Vae => &["model.beta"],
            ObjectiveKind::Capacity => &[
                "model.capacity_max",
                "model.capacity_steps",
                "model.capacity_weight",
            ],
            ObjectiveKind::Factor | ObjectiveKind::Btcvae => &["model.tc_weight"],
            ObjectiveKind::DipI | ObjectiveKind::DipIi => {
                &["model.dip_lambda_od", "model.dip_lambda_d"]
            }
        }
    }

    /// Every objective's own weights.
    pub const WEIGHTS: [&'static str; 7] = [
        "model.beta",
        "model.capacity_max",
        "model.capacity_steps",
        "model.capacity_weight",
        "model.tc_weight",
        "model.dip_lambda_od",
        "model.dip_lambda_d",
    ];

    /// The smallest global batch it is defined on: 2 where the codes of a
    /// batch are compared with each other (FactorVAE's permutation,
    /// β-TCVAE's sampling, DIP-VAE's covariance).
    pub fn min_global_batch(self) -> u64 {
        match self {
            ObjectiveKind::Vae | ObjectiveKind::Capacity => 1,
            ObjectiveKind::Factor
            | ObjectiveKind::Btcvae
            | ObjectiveKind::DipI
            | ObjectiveKind::DipIi => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Likelihood {
    /// Binary cross-entropy on logits; pixels in [0, 1].
    Bernoulli,
    /// Sum of squared errors between the pixels and sigmoid(logits).
    Gaussian,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    pub kind: ModelKind,
    pub latent_dim: i64,
    /// MLP: the hidden layer's width. Conv: width of an optional dense layer
    /// between the convolutions and the latent heads (0 = none).
    pub hidden_dim: i64,
    /// Conv: output channels of each 4×4 stride-2 convolution.
    pub conv_channels: Vec<i64>,
    /// Conv: a ReLU after the decoder's first layer (`fc_z`, from the code
    /// back to the convolutions' shape); `false` leaves it linear, as
    /// seed 002's model (`configs/celeba_conv_vae.toml`) is written.
    pub fc_z_relu: bool,
    pub likelihood: Likelihood,
    /// Weight of the KL term (β-VAE); 1 is the plain VAE.
    pub beta: f64,
    /// Weight γ of the extra reconstruction term: the squared error between the
    /// pixels and the decoder's mean, added to the likelihood term.
    pub gamma: f64,
    pub objective: ObjectiveKind,
    /// `factor`: γ, the weight of the discriminator's TC estimate.
    /// `btcvae`: β, the weight of the total correlation.
    pub tc_weight: f64,
    /// `capacity`: C_max in nats, the steps over which C rises to it, and the
    /// weight of |KL − C|.
    pub capacity_max: f64,
    pub capacity_steps: u64,
    pub capacity_weight: f64,
    /// DIP-VAE: λ_od, the weight of the covariance's off-diagonal entries.
    pub dip_lambda_od: f64,
    /// DIP-VAE: λ_d, the weight of its diagonal's distance from 1 (absent:
    /// disentanglement_lib's 10·λ_od for DIP-VAE-I, λ_od for DIP-VAE-II).
    pub dip_lambda_d: Option<f64>,
}

impl ModelSection {
    /// DIP-VAE's λ_d, given or derived as disentanglement_lib derives it.
    pub fn dip_lambda_d(&self) -> f64 {
        self.dip_lambda_d.unwrap_or(match self.objective {
            ObjectiveKind::DipI => 10.0 * self.dip_lambda_od,
            _ => self.dip_lambda_od,
        })
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            kind: ModelKind::Mlp,
            latent_dim: 20,
            hidden_dim: 400,
            conv_channels: vec![32, 64, 128],
            fc_z_relu: true,
            likelihood: Likelihood::Bernoulli,
            beta: 1.0,
            gamma: 0.0,
            objective: ObjectiveKind::Vae,
            tc_weight: 1.0,
            capacity_max: 25.0,
            capacity_steps: 100_000,
            capacity_weight: 1000.0,
            dip_lambda_od: 10.0,
            dip_lambda_d: None,
        }
    }
}

impl ModelSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let m = self;
        if m.latent_dim < 1 {
            return Err(key_err(
                "model.latent_dim",
                format!("must be at least 1, got {}", m.latent_dim),
            ));
        }
        if m.hidden_dim < 0 || (m.kind == ModelKind::Mlp && m.hidden_dim == 0) {
            return Err(key_err(
                "model.hidden_dim",
                format!("must be at least 1, got {}", m.hidden_dim),
            ));
        }
        if m.kind == ModelKind::Conv {
            if m.conv_channels.is_empty() {
                return Err(key_err("model.conv_channels", "needs at least one layer"));
            }
            if let Some(c) = m.conv_channels.iter().find(|c| **c < 1) {
                return Err(key_err(
                    "model.conv_channels",
                    format!("channels must be at least 1, got {c}"),
                ));
            }
        }
        for (key, v) in [
            ("model.beta", m.beta),
            ("model.gamma", m.gamma),
            ("model.tc_weight", m.tc_weight),
            ("model.capacity_max", m.capacity_max),
            ("model.capacity_weight", m.capacity_weight),
            ("model.dip_lambda_od", m.dip_lambda_od),
        ] {
            finite_nonneg(key, v)?;
        }
        if let Some(d) = m.dip_lambda_d {
            finite_nonneg("model.dip_lambda_d", d)?;
        }
        positive("model.capacity_steps", m.capacity_steps)
    }
}
