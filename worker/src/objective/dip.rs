//! DIP-VAE-I and -II (Kumar et al. 2018) as disentanglement_lib's `DIPVAE`
//! computes them: KL + λ_od·Σ off-diagonal² + λ_d·Σ (diagonal − 1)² of the
//! covariance of μ (I) or of z, E[diag σ²] + Cov(μ) (II), over the **whole**
//! batch: each part adds `rows · R` (R the regulariser of the whole batch),
//! whose gradient reaches every part's rows through the cross rows.
use tch::Tensor;

use super::penalty::{Objective, Penalty};
use crate::collective::{BatchScope, CommError};
use crate::loss::{CrossRows, Forward};

pub struct Dip {
    /// DIP-VAE-II (the covariance of z) rather than I (of μ).
    pub second: bool,
    pub lambda_od: f64,
    pub lambda_d: f64,
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
pub fn regularizer(cov: &Tensor, lambda_od: f64, lambda_d: f64) -> Tensor {
    let diag = cov.diagonal(0, 0, 1);
    let off = cov - diag.diag_embed(0, -2, -1);
    off.square().sum(cov.kind()) * lambda_od + (diag - 1.0).square().sum(cov.kind()) * lambda_d
}

impl Objective for Dip {
    fn penalty(
        &self,
        f: &Forward,
        kl: &Tensor,
        _step: u64,
        _net: Option<&Tensor>,
        scope: &dyn BatchScope,
        cross: &mut Vec<CrossRows>,
    ) -> Result<Penalty, CommError> {
        let mu_all = scope.gather_leaf(f.mu)?;
        let mut cov = covariance(&mu_all);
        if self.second {
            let lv_all = scope.gather_leaf(f.logvar)?;
            let enc = lv_all
                .exp()
                .mean_dim(0, false, lv_all.kind())
                .diag_embed(0, -2, -1);
            cov = enc + cov;
            cross.push(CrossRows {
                whole: lv_all,
                local: f.logvar.shallow_clone(),
            });
        }
        cross.push(CrossRows {
            whole: mu_all,
            local: f.mu.shallow_clone(),
        });
        let r = regularizer(&cov, self.lambda_od, self.lambda_d);
        Ok(Penalty {
            loss: kl + r,
            tc: kl.zeros_like(),
        })
    }

    fn batch_level(&self) -> bool {
        true
    }
}
