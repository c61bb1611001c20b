//! β-TCVAE (Chen et al. 2018) as rtqichen/beta-tcvae computes it: the KL
//! term decomposed by minibatch-weighted sampling over the **whole** batch
//! into index-code mutual information + β·total correlation + dimension-wise
//! KL; every part's rows of μ and log σ² are gathered, and the gradients
//! other parts' losses send to them come back through the cross rows.
use tch::Tensor;

use super::penalty::{Objective, Penalty};
use crate::collective::{BatchScope, CommError};
use crate::loss::{CrossRows, Forward};

pub struct Btcvae {
    /// β, the weight of the total correlation.
    pub beta: f64,
    /// N in minibatch-weighted sampling: the training samples.
    pub dataset_size: usize,
}

impl Objective for Btcvae {
    fn penalty(
        &self,
        f: &Forward,
        _kl: &Tensor,
        _step: u64,
        _net: Option<&Tensor>,
        scope: &dyn BatchScope,
        cross: &mut Vec<CrossRows>,
    ) -> Result<Penalty, CommError> {
        let (mu_all, lv_all) = (scope.gather_leaf(f.mu)?, scope.gather_leaf(f.logvar)?);
        let d = mws_decomposition(f.z, f.mu, f.logvar, &mu_all, &lv_all, self.dataset_size);
        cross.push(CrossRows {
            whole: mu_all,
            local: f.mu.shallow_clone(),
        });
        cross.push(CrossRows {
            whole: lv_all,
            local: f.logvar.shallow_clone(),
        });
        Ok(Penalty {
            loss: &d.mi + &d.tc * self.beta + &d.dim_kl,
            tc: d.tc,
        })
    }

    fn batch_level(&self) -> bool {
        true
    }

    fn has_tc(&self) -> bool {
        true
    }
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
