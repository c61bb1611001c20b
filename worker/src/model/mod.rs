//! VAE models. Every model maps images `[B, C, H, W]` (float, in [0, 1]) to the
//! parameters of a diagonal Gaussian posterior, `μ` and `log σ²`, each `[B, L]`,
//! and latent codes `[B, L]` back to per-pixel logits `[B, C, H, W]`.
//! Parameters live in a `tch::nn::VarStore` under PyTorch `state_dict` names.
pub mod build;
pub mod conv;
pub mod discriminator;
pub mod layers;
pub mod mixed;
pub mod mlp;
pub mod vae;

pub use build::build;
pub use layers::{conv_down, conv_up, linear, mixed_linear};
pub use mixed::{Mixed, PADDING, STRIDE};
pub use vae::{sample_z, Vae};
