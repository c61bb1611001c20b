//! Metrics summed over samples so they can be added up across batches and
//! ranks: loss, reconstruction and KL, KL per latent dimension, and the first
//! two moments of μ per dimension, from which the number of active units
//! (Burda et al. 2016: dimensions whose `Var_x E[z|x]` exceeds 0.01) follows.
use tch::{Kind, Tensor};

use crate::loss::Terms;

/// Threshold on `Var_x(μ)` above which a latent dimension counts as active.
pub const ACTIVE_THRESHOLD: f64 = 0.01;

/// Sums over samples, laid out flat as
/// `[n, loss, recon, kl, tc, kl_dim[L], mu[L], mu²[L]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sums {
    pub latent: usize,
    pub v: Vec<f64>,
}

/// Length of the flat layout of [`Sums`] for `latent` dimensions.
pub fn sums_len(latent: usize) -> i64 {
    (HEAD + 3 * latent) as i64
}

const HEAD: usize = 5;

/// The device-side sums of one batch, in the layout of [`Sums`], `[5 + 3L]`
/// double: one concatenation and one reduction, added up on the device so a
/// step needs no host sync.
pub fn batch_sums(terms: &Terms, mu: &Tensor) -> Tensor {
    let mu = mu.detach();
    let per_sample = Tensor::cat(
        &[
            mu.ones_like().narrow(1, 0, 1),
            terms.loss.detach().unsqueeze(1),
            terms.recon.detach().unsqueeze(1),
            terms.kl.detach().unsqueeze(1),
            terms.tc.detach().unsqueeze(1),
            terms.kl_dim.detach(),
            mu.shallow_clone(),
            mu.square(),
        ],
        1,
    );
    per_sample.sum_dim_intlist(0, false, Kind::Double)
}

impl Sums {
    pub fn from_tensor(t: &Tensor, latent: usize) -> Result<Sums, tch::TchError> {
        let v = Vec::<f64>::try_from(t.f_to_device(tch::Device::Cpu)?)?;
        Ok(Sums { latent, v })
    }

    pub fn n(&self) -> f64 {
        self.v[0]
    }
    fn mean(&self, i: usize) -> f64 {
        self.v[i] / self.n().max(1.0)
    }
    pub fn loss(&self) -> f64 {
        self.mean(1)
    }
    pub fn recon(&self) -> f64 {
        self.mean(2)
    }
    pub fn kl(&self) -> f64 {
        self.mean(3)
    }
    /// Total-correlation estimate (FactorVAE, β-TCVAE; 0 otherwise).
    pub fn tc(&self) -> f64 {
        self.mean(4)
    }
    pub fn kl_per_dim(&self) -> Vec<f64> {
        (0..self.latent).map(|j| self.mean(HEAD + j)).collect()
    }
    /// `Var_x(μ_j)` per dimension.
    pub fn mu_var(&self) -> Vec<f64> {
        let l = self.latent;
        (0..l)
            .map(|j| {
                let m = self.mean(HEAD + l + j);
                (self.mean(HEAD + 2 * l + j) - m * m).max(0.0)
            })
            .collect()
    }
    pub fn active_units(&self) -> usize {
        self.mu_var()
            .iter()
            .filter(|v| **v > ACTIVE_THRESHOLD)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_units_on_known_case() {
        // Two dims: one varies with the data (±1), one is constant.
        let l = 2;
        let mut v = vec![0.0; HEAD + 3 * l];
        v[0] = 4.0;
        // mu rows: (1, 0.5), (-1, 0.5), (1, 0.5), (-1, 0.5)
        v[HEAD + l] = 0.0;
        v[HEAD + l + 1] = 2.0;
        v[HEAD + 2 * l] = 4.0;
        v[HEAD + 2 * l + 1] = 1.0;
        let s = Sums { latent: l, v };
        let var = s.mu_var();
        assert!((var[0] - 1.0).abs() < 1e-12 && var[1].abs() < 1e-12);
        assert_eq!(s.active_units(), 1);
    }
}
