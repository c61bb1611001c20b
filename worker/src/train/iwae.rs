//! The importance-weighted bound (Burda et al. 2016) of the test split's
//! log-likelihood: per sample, `log (1/K Σ_k p(x|z_k) p(z_k) / q(z_k|x))`
//! with `z_k = μ + σ·ε_k`, `ε_k` row `i` (the sample's index) of counter
//! `k` of the seed's [`Stream::Iwae`] (so a PyTorch transcription draws the
//! same: `scripts/noise.py`). `log p(x|z)` is minus the loss's
//! reconstruction term (Bernoulli: the log-likelihood; `gaussian`: minus
//! the squared error, not normalised). It tightens towards `log p(x)` as
//! `K` grows; at `K = 1` it is a one-sample ELBO.
use tch::{Kind, Tensor};

use super::error::TrainError;
use super::step::Trainer;
use crate::loss::reconstruction;
use crate::rng::{self, Stream};

/// The largest `K` taken.
pub const MAX_K: u32 = 100_000;

/// The mean bound over `images` (`u8`, `[N, C, H, W]`) with `k` importance
/// samples, in nats per sample, computed in float64 from the model's
/// log-weights.
pub fn bound(t: &Trainer, images: &Tensor, k: u32) -> Result<f64, TrainError> {
    if !(1..=MAX_K).contains(&k) {
        return Err(TrainError::Invalid(format!(
            "--iwae: K must be 1 to {MAX_K}, got {k}"
        )));
    }
    let n = images.size()[0];
    let block = (t.cfg.train.eval_batch_size as i64).max(1);
    let mut total = 0.0;
    tch::no_grad(|| {
        for start in (0..n).step_by(block as usize) {
            let rows = (n - start).min(block);
            let x = t.pixels(&images.narrow(0, start, rows));
            let (mu, logvar) = t.model.encode(&x);
            let log_w: Vec<Tensor> = (0..k)
                .map(|j| log_weight(t, &x, (&mu, &logvar), j, start as u64))
                .collect();
            let log_w = Tensor::stack(&log_w, 1).to_kind(Kind::Double);
            let b = log_w.logsumexp([1i64].as_slice(), false) - f64::from(k).ln();
            total += b.sum(Kind::Double).double_value(&[]);
        }
    });
    Ok(total / n.max(1) as f64)
}

/// `log p(x|z) + log p(z) − log q(z|x)` per row `[B]` for importance sample
/// `j` of the rows from `first` on.
fn log_weight(
    t: &Trainer,
    x: &Tensor,
    (mu, logvar): (&Tensor, &Tensor),
    j: u32,
    first: u64,
) -> Tensor {
    let rows = mu.size()[0];
    let l = t.latent;
    let eps = rng::normals(
        t.cfg.train.seed,
        Stream::Iwae,
        j.into(),
        first..first + rows as u64,
        l,
    );
    let eps = Tensor::from_slice(&eps)
        .view([rows, l as i64])
        .to_device(t.device)
        .to_kind(t.kind);
    let z = mu + (logvar * 0.5).exp() * &eps;
    let log_2pi = (2.0 * std::f64::consts::PI).ln();
    let log_px = -reconstruction(&t.model.decode(&z), x, t.cfg.model.likelihood);
    let log_pz = (z.square() + log_2pi).sum_dim_intlist(1, false, None) * -0.5;
    let log_qz = (eps.square() + logvar + log_2pi).sum_dim_intlist(1, false, None) * -0.5;
    crate::heartbeat::beat();
    log_px + log_pz - log_qz
}
