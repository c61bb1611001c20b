//! The VAE objective, per sample, in nats: reconstruction (summed over
//! pixels) plus the objective's regulariser plus γ·squared error, with the
//! KL of a diagonal Gaussian `N(μ, σ²)` against `N(0, I)` in closed form.
//! Objectives defined on the whole batch (capacity, β-TCVAE) see it through
//! a [`BatchScope`], so a batch split over workers gives the same loss and
//! gradients as the batch on one worker.
use tch::{Kind, Reduction, Tensor};
use vae_proto::config::{Likelihood, ModelSection, ObjectiveKind};

use crate::comm::{BatchScope, CommError};

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

/// The objective: which regulariser, and its weights.
#[derive(Clone, Copy, Debug)]
pub struct Objective {
    pub likelihood: Likelihood,
    pub kind: ObjectiveKind,
    pub beta: f64,
    pub gamma: f64,
    pub tc_weight: f64,
    pub capacity_max: f64,
    pub capacity_steps: u64,
    pub capacity_weight: f64,
    /// Training samples, N in β-TCVAE's minibatch-weighted sampling.
    pub dataset_size: usize,
    /// DIP-VAE's λ_od and λ_d.
    pub dip_lambda_od: f64,
    pub dip_lambda_d: f64,
}

impl Objective {
    pub fn from_config(m: &ModelSection, dataset_size: usize) -> Objective {
        Objective {
            likelihood: m.likelihood,
            kind: m.objective,
            beta: m.beta,
            gamma: m.gamma,
            tc_weight: m.tc_weight,
            capacity_max: m.capacity_max,
            capacity_steps: m.capacity_steps,
            capacity_weight: m.capacity_weight,
            dataset_size,
            dip_lambda_od: m.dip_lambda_od,
            dip_lambda_d: m.dip_lambda_d(),
        }
    }

    /// The capacity C at `step` (controlled-capacity β-VAE).
    pub fn capacity(&self, step: u64) -> f64 {
        self.capacity_max * (step as f64 / self.capacity_steps as f64).min(1.0)
    }

    /// Whether the objective is defined on a whole batch rather than per
    /// sample (then evaluation runs it on blocks of the training batch size).
    pub fn batch_level(&self) -> bool {
        matches!(
            self.kind,
            ObjectiveKind::Capacity
                | ObjectiveKind::Btcvae
                | ObjectiveKind::DipI
                | ObjectiveKind::DipIi
        )
    }
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

impl Objective {
    /// Per-sample terms at training step `step`. `penalty` is a regulariser's
    /// per-sample term (FactorVAE: the TC estimate `D(z)₀ − D(z)₁`), required
    /// for that objective. `scope` says where this part's rows are in the batch.
    pub fn terms(
        &self,
        f: &Forward,
        step: u64,
        penalty: Option<&Tensor>,
        scope: &dyn BatchScope,
    ) -> Result<Terms, CommError> {
        let recon = reconstruction(f.logits, f.x, self.likelihood);
        let kl_dim = kl_per_dim(f.mu, f.logvar);
        let kl = kl_dim.sum_dim_intlist(1, false, None);
        let zeros = || kl.zeros_like();
        let mut cross = Vec::new();
        let (mut loss, tc) = match self.kind {
            ObjectiveKind::Vae => (&recon + &kl * self.beta, zeros()),
            ObjectiveKind::Capacity => {
                // w·|KL̄ − C| with KL̄ the mean over the whole batch: its
                // gradient is w·sign(KL̄ − C)/B for every sample's KL, so the
                // per-sample term w·sign·(KL − C) has both its value (summed
                // over the batch) and its gradient.
                let c = self.capacity(step);
                let total = scope.sum(&kl.sum(Kind::Double))?;
                let sign = (total / scope.size() as f64 - c).sign().to_kind(kl.kind());
                (&recon + (&kl - c) * sign * self.capacity_weight, zeros())
            }
            ObjectiveKind::Factor => {
                let tc = penalty.map_or_else(zeros, |t| t.shallow_clone());
                (&recon + &kl + &tc * self.tc_weight, tc)
            }
            ObjectiveKind::Btcvae => {
                let whole = |t: &Tensor| -> Result<Tensor, CommError> {
                    Ok(scope.gather(t)?.set_requires_grad(true))
                };
                let (mu_all, lv_all) = (whole(f.mu)?, whole(f.logvar)?);
                let d = mws_decomposition(f.z, f.mu, f.logvar, &mu_all, &lv_all, self.dataset_size);
                cross.push(CrossRows {
                    whole: mu_all,
                    local: f.mu.shallow_clone(),
                });
                cross.push(CrossRows {
                    whole: lv_all,
                    local: f.logvar.shallow_clone(),
                });
                (&recon + &d.mi + &d.tc * self.tc_weight + &d.dim_kl, d.tc)
            }
            ObjectiveKind::DipI | ObjectiveKind::DipIi => {
                // The covariance is the whole batch's: each part adds
                // rows · R (R the regulariser of the whole batch), whose
                // gradient reaches every part's rows through `cross`.
                let whole = |t: &Tensor| -> Result<Tensor, CommError> {
                    Ok(scope.gather(t)?.set_requires_grad(true))
                };
                let mu_all = whole(f.mu)?;
                let cov = covariance(&mu_all);
                let cov = if self.kind == ObjectiveKind::DipIi {
                    let lv_all = whole(f.logvar)?;
                    let enc = lv_all
                        .exp()
                        .mean_dim(0, false, lv_all.kind())
                        .diag_embed(0, -2, -1);
                    cross.push(CrossRows {
                        whole: lv_all,
                        local: f.logvar.shallow_clone(),
                    });
                    enc + cov
                } else {
                    cov
                };
                cross.push(CrossRows {
                    whole: mu_all,
                    local: f.mu.shallow_clone(),
                });
                let r = dip_regularizer(&cov, self.dip_lambda_od, self.dip_lambda_d);
                (&recon + &kl + r, zeros())
            }
        };
        if self.gamma > 0.0 {
            loss += squared_error(f.logits, f.x) * self.gamma;
        }
        Ok(Terms {
            loss,
            recon,
            kl,
            kl_dim,
            tc,
            cross,
        })
    }
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
/// where `wrt` does not reach the loss.
pub fn gradients(
    loss: &Tensor,
    cross: &[CrossRows],
    scope: &dyn BatchScope,
    wrt: &[&Tensor],
) -> Result<Vec<Tensor>, GradientError> {
    if cross.is_empty() {
        return Ok(Tensor::f_run_backward(&[loss], wrt, false, false)?);
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
    Ok(Tensor::f_run_backward(&[&total], wrt, false, false)?)
}

/// The covariance of the rows of `m` (`[M, L]` → `[L, L]`), as
/// disentanglement_lib's `compute_covariance_z_mean`: `E[m mᵀ] − E[m] E[m]ᵀ`.
pub fn covariance(m: &Tensor) -> Tensor {
    let kind = m.kind();
    let e_mmt = (m.unsqueeze(2) * m.unsqueeze(1)).mean_dim(0, false, kind);
    let e_m = m.mean_dim(0, false, kind);
    e_mmt - e_m.unsqueeze(1) * e_m.unsqueeze(0)
}

/// disentanglement_lib's `regularize_diag_off_diag_dip`: `λ_od·Σ off-diagonal²
/// + λ_d·Σ (diagonal − 1)²` of a covariance matrix (a scalar).
pub fn dip_regularizer(cov: &Tensor, lambda_od: f64, lambda_d: f64) -> Tensor {
    let diag = cov.diagonal(0, 0, 1);
    let off = cov - diag.diag_embed(0, -2, -1);
    off.square().sum(cov.kind()) * lambda_od + (diag - 1.0).square().sum(cov.kind()) * lambda_d
}

/// β-TCVAE's decomposition of the KL term, per sample `[B]`.
pub struct Decomposition {
    /// Index-code mutual information: `log q(z|x) − log q(z)`.
    pub mi: Tensor,
    /// Total correlation: `log q(z) − Σ_j log q(z_j)`.
    pub tc: Tensor,
    /// Dimension-wise KL: `Σ_j log q(z_j) − log p(z)`.
    pub dim_kl: Tensor,
}

/// `log N(z; μ, σ²)` elementwise.
fn log_normal(z: &Tensor, mu: &Tensor, logvar: &Tensor) -> Tensor {
    let c = (2.0 * std::f64::consts::PI).ln();
    ((z - mu).square() * (-logvar).exp() + logvar + c) * -0.5
}

/// Minibatch-weighted sampling (Chen et al. 2018): with a batch of `M` codes
/// `z_i ~ q(z|x_i)` from a dataset of `N`, `log q(z_i) ≈ logsumexp_j log
/// q(z_i|x_j) − log(NM)`, and the same per dimension for `log q(z_ij)`.
/// `z`, `mu`, `logvar` are this part's rows `[b, L]`; `mu_all`, `lv_all` the
/// posteriors of the whole batch `[M, L]` (this part's rows among them).
pub fn mws_decomposition(
    z: &Tensor,
    mu: &Tensor,
    logvar: &Tensor,
    mu_all: &Tensor,
    lv_all: &Tensor,
    n: usize,
) -> Decomposition {
    let m = mu_all.size()[0];
    // [b, M, L]: log q(z_i,l | x_j).
    let pair = log_normal(&z.unsqueeze(1), &mu_all.unsqueeze(0), &lv_all.unsqueeze(0));
    let norm = ((n as f64) * (m as f64)).ln();
    let log_qz = pair.sum_dim_intlist(2, false, None).logsumexp(1, false) - norm;
    let log_prod_qzj = (pair.logsumexp(1, false) - norm).sum_dim_intlist(1, false, None);
    let log_qz_x = log_normal(z, mu, logvar).sum_dim_intlist(1, false, None);
    let log_pz = log_normal(z, &z.zeros_like(), &z.zeros_like()).sum_dim_intlist(1, false, None);
    Decomposition {
        mi: &log_qz_x - &log_qz,
        tc: &log_qz - &log_prod_qzj,
        dim_kl: log_prod_qzj - log_pz,
    }
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

    fn objective(kind: ObjectiveKind) -> Objective {
        Objective {
            likelihood: Likelihood::Bernoulli,
            kind,
            beta: 4.0,
            gamma: 2.0,
            tc_weight: 3.0,
            capacity_max: 10.0,
            capacity_steps: 100,
            capacity_weight: 5.0,
            dataset_size: 1000,
            dip_lambda_od: 2.0,
            dip_lambda_d: 20.0,
        }
    }

    #[test]
    fn objectives_weight_their_terms() {
        let logits = t(&[0.3, -0.2], &[1, 1, 1, 2]);
        let x = t(&[1.0, 0.0], &[1, 1, 1, 2]);
        let mu = t(&[0.5], &[1, 1]);
        let lv = t(&[0.1], &[1, 1]);
        let z = t(&[0.7], &[1, 1]);
        let f = Forward {
            x: &x,
            mu: &mu,
            logvar: &lv,
            z: &z,
            logits: &logits,
        };
        let v = |t: &Tensor| t.double_value(&[0]);
        let mse = v(&squared_error(&logits, &x));
        let one = crate::comm::Whole { rows: 1 };
        let run = |o: Objective, step, tc: Option<&Tensor>| o.terms(&f, step, tc, &one).unwrap();
        let terms = run(objective(ObjectiveKind::Vae), 0, None);
        let want = v(&terms.recon) + 4.0 * v(&terms.kl) + 2.0 * mse;
        assert!((v(&terms.loss) - want).abs() < 1e-5);
        // Capacity at step 50 of 100 is 5 nats.
        let terms = run(objective(ObjectiveKind::Capacity), 50, None);
        let want = v(&terms.recon) + 5.0 * (v(&terms.kl) - 5.0).abs() + 2.0 * mse;
        assert!((v(&terms.loss) - want).abs() < 1e-4);
        let tc = t(&[0.25], &[1]);
        let terms = run(objective(ObjectiveKind::Factor), 0, Some(&tc));
        let want = v(&terms.recon) + v(&terms.kl) + 3.0 * 0.25 + 2.0 * mse;
        assert!((v(&terms.loss) - want).abs() < 1e-5);
    }

    #[test]
    fn mws_terms_add_up_to_the_kl_estimate_and_match_a_direct_computation() {
        tch::manual_seed(3);
        let (m, l, n) = (6i64, 3i64, 500usize);
        let d = (Kind::Double, Device::Cpu);
        let mu = Tensor::randn([m, l], d);
        let lv = Tensor::randn([m, l], d) * 0.3;
        let z = &mu + (&lv * 0.5).exp() * Tensor::randn([m, l], d);
        let dec = mws_decomposition(&z, &mu, &lv, &mu, &lv, n);
        let g = |t: &Tensor, i: i64| t.double_value(&[i]);
        let ln_n = |mu: f64, lv: f64, z: f64| {
            -0.5 * ((z - mu).powi(2) / lv.exp() + lv + (2.0 * std::f64::consts::PI).ln())
        };
        let norm = ((n * m as usize) as f64).ln();
        for i in 0..m {
            let zi: Vec<f64> = (0..l).map(|k| z.double_value(&[i, k])).collect();
            let lq = |j: i64, k: i64| {
                ln_n(
                    mu.double_value(&[j, k]),
                    lv.double_value(&[j, k]),
                    zi[k as usize],
                )
            };
            let lse = |v: Vec<f64>| {
                let mx = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                mx + v.iter().map(|x| (x - mx).exp()).sum::<f64>().ln()
            };
            let log_qz = lse((0..m).map(|j| (0..l).map(|k| lq(j, k)).sum()).collect()) - norm;
            let log_prod: f64 = (0..l)
                .map(|k| lse((0..m).map(|j| lq(j, k)).collect()) - norm)
                .sum();
            let log_qzx: f64 = (0..l).map(|k| lq(i, k)).sum();
            let log_pz: f64 = zi.iter().map(|&v| ln_n(0.0, 0.0, v)).sum();
            assert!((g(&dec.mi, i) - (log_qzx - log_qz)).abs() < 1e-9);
            assert!((g(&dec.tc, i) - (log_qz - log_prod)).abs() < 1e-9);
            assert!((g(&dec.dim_kl, i) - (log_prod - log_pz)).abs() < 1e-9);
        }
    }
}
