//! VAE and β-VAE (Kingma & Welling 2014; Higgins et al. 2017): β·KL.
use tch::Tensor;

use super::penalty::{Objective, Penalty};
use crate::collective::{BatchScope, CommError};
use crate::loss::{CrossRows, Forward};

pub struct Vae {
    pub beta: f64,
}

impl Objective for Vae {
    fn penalty(
        &self,
        _f: &Forward,
        kl: &Tensor,
        _step: u64,
        _net: Option<&Tensor>,
        _scope: &dyn BatchScope,
        _cross: &mut Vec<CrossRows>,
    ) -> Result<Penalty, CommError> {
        Ok(Penalty {
            loss: kl * self.beta,
            tc: kl.zeros_like(),
        })
    }
}
