//! VAE models. Every model maps images `[B, C, H, W]` (float, in [0, 1]) to the
//! parameters of a diagonal Gaussian posterior, `μ` and `log σ²`, each `[B, L]`,
//! and latent codes `[B, L]` back to per-pixel logits `[B, C, H, W]`.
//! Parameters live in a `tch::nn::VarStore` under PyTorch `state_dict` names.
pub mod conv;
pub mod discriminator;
pub mod mixed;
pub mod mlp;

use std::ops::Range;

use tch::{nn, Tensor};

use crate::rng::{self, Stream};
use vae_proto::config::{ModelKind, ModelSection, Precision};

pub use mixed::Mixed;

/// Stride and padding of every convolution ([`conv_down`], [`conv_up`]).
const STRIDE: i64 = 2;
const PADDING: i64 = 1;

pub trait Vae {
    /// `x: [B, C, H, W]` → `(μ, log σ²)`, each `[B, L]`.
    fn encode(&self, x: &Tensor) -> (Tensor, Tensor);
    /// `z: [B, L]` → logits `[B, C, H, W]`.
    fn decode(&self, z: &Tensor) -> Tensor;
    /// `L`.
    fn latent_dim(&self) -> i64;
}

/// Reparameterised codes `μ + σ·ε`, `[rows, L]`, with `ε` rows from the
/// counter-based records `(seed, stream, counter, rows)`.
pub fn sample_z(
    mu: &Tensor,
    logvar: &Tensor,
    seed: u64,
    stream: Stream,
    counter: u64,
    rows: Range<u64>,
) -> Tensor {
    let l = mu.size()[1];
    let n = (rows.end - rows.start) as i64;
    let eps = if mu.device().is_cuda() {
        // Made on the GPU: no host-to-device copy in the step.
        rng::normals_on(seed, stream, counter, rows, l as usize, mu.device())
    } else {
        Tensor::from_slice(&rng::normals(seed, stream, counter, rows, l as usize)).view([n, l])
    };
    mu + (logvar * 0.5).exp() * eps
}

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

/// PyTorch's default initialisation (`kaiming_uniform_(a=√5)` for weights and
/// the matching bias bound): both uniform in ±1/√fan_in. tch's own default is
/// √6 times wider, which trains differently from the PyTorch reference.
fn torch_init(fan_in: i64) -> nn::Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

/// `nn.Linear(i, o)` as PyTorch initialises it.
pub fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    let init = torch_init(i);
    nn::linear(
        p,
        i,
        o,
        nn::LinearConfig {
            ws_init: init,
            bs_init: Some(init),
            bias: true,
        },
    )
}

/// [`linear`] computing in `precision`.
pub fn mixed_linear(p: nn::Path, i: i64, o: i64, precision: Precision) -> Mixed<nn::Linear> {
    Mixed::new(linear(p, i, o), precision)
}

/// `nn.Conv2d(i, o, k, stride=2, padding=1)` as PyTorch initialises it.
pub fn conv_down(p: nn::Path, i: i64, o: i64, k: i64, precision: Precision) -> Mixed<nn::Conv2D> {
    let init = torch_init(i * k * k);
    let c = nn::ConvConfig {
        stride: STRIDE,
        padding: PADDING,
        ws_init: init,
        bs_init: init,
        ..Default::default()
    };
    Mixed::new(nn::conv2d(p, i, o, k, c), precision)
}

/// `nn.ConvTranspose2d(i, o, k, stride=2, padding=1)` as PyTorch initialises
/// it (its fan-in is computed from the weight's second dimension, `o`).
pub fn conv_up(
    p: nn::Path,
    i: i64,
    o: i64,
    k: i64,
    precision: Precision,
) -> Mixed<nn::ConvTranspose2D> {
    let init = torch_init(o * k * k);
    let c = nn::ConvTransposeConfig {
        stride: STRIDE,
        padding: PADDING,
        ws_init: init,
        bs_init: init,
        ..Default::default()
    };
    Mixed::new(nn::conv_transpose2d(p, i, o, k, c), precision)
}
