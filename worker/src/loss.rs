//! The machinery every objective (`crate::objective`) shares, per sample,
//! in nats: the reconstruction (summed over pixels), the KL of a diagonal
//! Gaussian `N(μ, σ²)` against `N(0, I)` in closed form, the squared error,
//! the [`Terms`] of a batch, and [`gradients`], which also sends back what
//! other workers' losses owe this worker's rows ([`CrossRows`]) for the
//! objectives defined on the whole batch, so a batch split over workers
//! gives the same loss and gradients as the batch on one worker.
use tch::{Reduction, Tensor};
use vae_proto::config::Likelihood;

use crate::collective::{BatchScope, CommError};

/// KL per latent dimension, `[B, L]`: `½(σ² + μ² − 1 − log σ²)`.
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Tensor {
    (logvar.exp() + mu.square() - 1.0 - logvar) * 0.5
}

/// Negative log-likelihood of `x` under the decoder's output, per sample `[B]`.
/// Bernoulli: binary cross-entropy on logits. Gaussian: sum of squared errors
/// between `x` and `sigmoid(logits)`.
pub fn reconstruction(logits: &Tensor, x: &Tensor, likelihood: Likelihood) -> Tensor {
    match likelihood {
        Likelihood::Bernoulli => logits
            .binary_cross_entropy_with_logits::<Tensor>(x, None, None, Reduction::None)
            .flatten(1, -1)
            .sum_dim_intlist(1, false, None),
        Likelihood::Gaussian => squared_error(logits, x),
    }
}

/// `Σ_pixels (x − sigmoid(logits))²` per sample `[B]`.
pub fn squared_error(logits: &Tensor, x: &Tensor) -> Tensor {
    (logits.sigmoid() - x)
        .square()
        .flatten(1, -1)
        .sum_dim_intlist(1, false, None)
}

/// The terms of the objective for one batch, each per sample `[B]`, and the
/// KL per dimension `[B, L]`. `tc` is the total-correlation estimate where
/// the objective has one (FactorVAE, β-TCVAE), else zeros. The loss of the
/// batch is `Σ loss / (rows of the whole batch)`; its gradient also flows
/// through `cross` (see [`CrossRows`]).
pub struct Terms {
    pub loss: Tensor,
    pub recon: Tensor,
    pub kl: Tensor,
    pub kl_dim: Tensor,
    pub tc: Tensor,
    pub cross: Vec<CrossRows>,
}

/// A tensor of the whole batch the loss depends on through other workers'
/// rows: `whole` (`[size, ...]`) is a leaf holding every part's rows of
/// `local` (this part's, `[rows, ...]`, in the autograd graph). The
/// gradients of all parts' losses with respect to `whole`, summed over the
/// parts, belong to the owners of its rows, who push their slice back
/// through `local`.
pub struct CrossRows {
    pub whole: Tensor,
    pub local: Tensor,
}

/// What the objective is computed from: the batch `x`, its posterior
/// `(μ, log σ²)`, the sampled codes `z` and the decoder's logits.
pub struct Forward<'a> {
    pub x: &'a Tensor,
    pub mu: &'a Tensor,
    pub logvar: &'a Tensor,
    pub z: &'a Tensor,
    pub logits: &'a Tensor,
}

/// Why a gradient could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum GradientError {
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error(transparent)]
    Tensor(#[from] tch::TchError),
}

/// The gradients of this part's `loss` with respect to `wrt`, including
/// what every part's loss sends through `cross` to this part's rows (summed
/// over the parts, then pushed back through them), so that the gradients
/// summed over the parts are those of the whole batch's loss. Undefined
/// where `wrt` does not reach the loss. The graph is freed unless
/// `keep_graph`.
pub fn gradients(
    loss: &Tensor,
    cross: &[CrossRows],
    scope: &dyn BatchScope,
    wrt: &[&Tensor],
    keep_graph: bool,
) -> Result<Vec<Tensor>, GradientError> {
    if cross.is_empty() {
        return Ok(Tensor::f_run_backward(&[loss], wrt, keep_graph, false)?);
    }
    let wholes: Vec<&Tensor> = cross.iter().map(|c| &c.whole).collect();
    let to_wholes = Tensor::f_run_backward(&[loss], &wholes, true, false)?;
    // loss + Σ ⟨local, (summed gradient of the whole batch)[this part's rows]⟩:
    // its gradient is the local one plus every part's share through `cross`.
    let mut parts = vec![loss.shallow_clone()];
    for (c, mut g) in cross.iter().zip(to_wholes) {
        scope.sum_gradients(&mut g)?;
        let mine = g.f_narrow(0, scope.offset(), scope.rows())?;
        parts.push((&c.local * mine).sum(loss.kind()));
    }
    let total = Tensor::f_stack(&parts, 0)?.sum(loss.kind());
    Ok(Tensor::f_run_backward(&[&total], wrt, keep_graph, false)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    #[test]
    fn kl_matches_closed_form() {
        let mu = [0.0f32, 1.5, -0.3, 2.0];
        let lv = [0.0f32, -1.0, 0.7, -3.0];
        let got = Vec::<f32>::try_from(kl_per_dim(&t(&mu, &[1, 4]), &t(&lv, &[1, 4])).view([-1]))
            .unwrap();
        for i in 0..4 {
            let (m, s2) = (mu[i] as f64, (lv[i] as f64).exp());
            // KL(N(m, s²) || N(0, 1)) = log(1/s) + (s² + m²)/2 − 1/2
            let want = -0.5 * s2.ln() + (s2 + m * m) / 2.0 - 0.5;
            assert!(
                (got[i] as f64 - want).abs() < 1e-5,
                "dim {i}: {} vs {want}",
                got[i]
            );
        }
        // N(0, 1) against itself is 0.
        let zero = kl_per_dim(
            &Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
            &Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
        );
        assert_eq!(zero.abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn kl_matches_monte_carlo() {
        tch::manual_seed(0);
        let mu = t(&[0.5, -1.0, 2.0], &[1, 3]).to_kind(Kind::Double);
        let lv = t(&[-0.5, 0.3, -2.0], &[1, 3]).to_kind(Kind::Double);
        let n = 400_000;
        let eps = Tensor::randn([n, 3], (Kind::Double, Device::Cpu));
        let z = &mu + (&lv * 0.5).exp() * &eps;
        // log q(z) − log p(z) per dim, averaged over samples.
        let log_q = -(&eps.square()) * 0.5 - &lv * 0.5;
        let log_p = -(z.square()) * 0.5;
        let mc = (log_q - log_p).mean_dim(0, false, Kind::Double);
        let closed = kl_per_dim(&mu, &lv).view([-1]);
        let diff = (mc - closed).abs().max().double_value(&[]);
        assert!(diff < 0.02, "Monte-Carlo KL differs by {diff}");
    }

    #[test]
    fn bce_sums_over_pixels() {
        let logits = t(&[0.0, 2.0, -1.0, 0.5, 3.0, -2.0], &[2, 1, 1, 3]);
        let x = t(&[0.0, 1.0, 0.3, 1.0, 0.5, 0.0], &[2, 1, 1, 3]);
        let got = Vec::<f32>::try_from(reconstruction(&logits, &x, Likelihood::Bernoulli)).unwrap();
        let l = [0.0f64, 2.0, -1.0, 0.5, 3.0, -2.0];
        let xv = [0.0f64, 1.0, 0.3, 1.0, 0.5, 0.0];
        for b in 0..2 {
            let want: f64 = (0..3)
                .map(|i| {
                    let (p, x) = (1.0 / (1.0 + (-l[3 * b + i]).exp()), xv[3 * b + i]);
                    -(x * p.ln() + (1.0 - x) * (1.0 - p).ln())
                })
                .sum();
            assert!(
                (got[b] as f64 - want).abs() < 1e-5,
                "sample {b}: {} vs {want}",
                got[b]
            );
        }
    }

    #[test]
    fn gaussian_is_sum_of_squared_errors() {
        let logits = t(&[0.0, 1.0, -1.0, 2.0], &[2, 1, 1, 2]);
        let x = t(&[0.5, 0.0, 1.0, 1.0], &[2, 1, 1, 2]);
        let got = Vec::<f32>::try_from(reconstruction(&logits, &x, Likelihood::Gaussian)).unwrap();
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let want0 = (s(0.0) - 0.5f64).powi(2) + (s(1.0) - 0.0f64).powi(2);
        let want1 = (s(-1.0) - 1.0f64).powi(2) + (s(2.0) - 1.0f64).powi(2);
        assert!((got[0] as f64 - want0).abs() < 1e-6);
        assert!((got[1] as f64 - want1).abs() < 1e-6);
    }
}
