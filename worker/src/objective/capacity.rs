//! Controlled-capacity β-VAE, "AnnealedVAE" (Burgess et al. 2018), as
//! 1Konny's code and disentanglement_lib compute it: w·|KL̄ − C| with KL̄ the
//! mean KL over the whole batch and C rising linearly from 0 to `max` over
//! `steps`.
use tch::{Kind, Tensor};

use super::penalty::{Objective, Penalty};
use crate::collective::{BatchScope, CommError};
use crate::loss::{CrossRows, Forward};

pub struct Capacity {
    pub max: f64,
    pub steps: u64,
    pub weight: f64,
}

impl Capacity {
    /// The capacity C at `step`.
    pub fn at(&self, step: u64) -> f64 {
        self.max * (step as f64 / self.steps as f64).min(1.0)
    }
}

impl Objective for Capacity {
    fn penalty(
        &self,
        _f: &Forward,
        kl: &Tensor,
        step: u64,
        _net: Option<&Tensor>,
        scope: &dyn BatchScope,
        _cross: &mut Vec<CrossRows>,
    ) -> Result<Penalty, CommError> {
        // The gradient of w·|KL̄ − C| is w·sign(KL̄ − C)/B for every sample's
        // KL, so the per-sample term w·sign·(KL − C) has both its value
        // (summed over the batch) and its gradient.
        let c = self.at(step);
        let total = scope.sum(&kl.sum(Kind::Double))?;
        let sign = (total / scope.size() as f64 - c).sign().to_kind(kl.kind());
        Ok(Penalty {
            loss: (kl - c) * sign * self.weight,
            tc: kl.zeros_like(),
        })
    }

    fn batch_level(&self) -> bool {
        true
    }

    fn scalars(&self, step: u64) -> Vec<(String, f64)> {
        vec![("train/capacity".into(), self.at(step))]
    }
}
