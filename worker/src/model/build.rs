//! The registry of architectures: the model `model.kind` describes.
use tch::nn;
use vae_proto::config::{ModelKind, ModelSection, Precision};

use super::vae::Vae;
use super::{conv, mlp};

/// Builds the model that `cfg` describes for samples of shape `[C, H, W]`,
/// with its variables under `root`, computing in `precision`.
pub fn build(
    root: &nn::Path,
    cfg: &ModelSection,
    sample_shape: [usize; 3],
    precision: Precision,
) -> Box<dyn Vae> {
    let shape = sample_shape.map(|d| d as i64);
    match cfg.kind {
        ModelKind::Mlp => Box::new(mlp::MlpVae::new(
            root,
            shape,
            cfg.hidden_dim,
            cfg.latent_dim,
            precision,
        )),
        ModelKind::Conv => Box::new(conv::ConvVae::new(
            root,
            shape,
            &cfg.conv_channels,
            cfg.hidden_dim,
            cfg.latent_dim,
            cfg.fc_z_relu,
            precision,
        )),
    }
}
