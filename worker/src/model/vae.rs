//! The [`Vae`] every model is, and the reparameterised codes of its
//! posterior ([`sample_z`]).
use std::ops::Range;

use tch::Tensor;

use crate::rng::{self, Stream};

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
