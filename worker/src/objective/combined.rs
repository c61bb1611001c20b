//! [`Loss`]: the terms every objective shares — the likelihood's
//! reconstruction, the KL, γ times the squared error — around the
//! objective's own penalty.
use tch::Tensor;
use vae_proto::config::{Likelihood, ModelSection};

use super::penalty::Objective;
use super::registry;
use crate::collective::{BatchScope, CommError};
use crate::loss::{kl_per_dim, reconstruction, squared_error, Forward, Terms};

/// The loss a model trains on: the likelihood's reconstruction, the
/// objective's regulariser and γ times the squared error.
pub struct Loss {
    pub likelihood: Likelihood,
    pub gamma: f64,
    pub objective: Box<dyn Objective>,
}

impl Loss {
    pub fn from_config(m: &ModelSection, dataset_size: usize) -> Loss {
        Loss {
            likelihood: m.likelihood,
            gamma: m.gamma,
            objective: registry::build(m, dataset_size),
        }
    }

    /// The terms of this part of the batch at training step `step`; `net`
    /// is a regularising network's per-sample output, when there is one.
    pub fn terms(
        &self,
        f: &Forward,
        step: u64,
        net: Option<&Tensor>,
        scope: &dyn BatchScope,
    ) -> Result<Terms, CommError> {
        let recon = reconstruction(f.logits, f.x, self.likelihood);
        let kl_dim = kl_per_dim(f.mu, f.logvar);
        let kl = kl_dim.sum_dim_intlist(1, false, None);
        let mut cross = Vec::new();
        let p = self
            .objective
            .penalty(f, &kl, step, net, scope, &mut cross)?;
        let mut loss = &recon + p.loss;
        if self.gamma > 0.0 {
            loss += squared_error(f.logits, f.x) * self.gamma;
        }
        Ok(Terms {
            loss,
            recon,
            kl,
            kl_dim,
            tc: p.tc,
            cross,
        })
    }

    /// See [`Objective::batch_level`].
    pub fn batch_level(&self) -> bool {
        self.objective.batch_level()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn loss(sets: &[&str]) -> Loss {
        let mut all = vec![
            "model.beta=4",
            "model.gamma=2",
            "model.tc_weight=3",
            "model.capacity_max=10",
            "model.capacity_steps=100",
            "model.capacity_weight=5",
        ];
        all.extend_from_slice(sets);
        let sets: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let cfg = vae_proto::config::parse("", "t", &sets).expect("config");
        Loss::from_config(&cfg.model, 1000)
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
        let one = crate::collective::Whole { rows: 1 };
        let run = |l: Loss, step, tc: Option<&Tensor>| l.terms(&f, step, tc, &one).unwrap();
        let terms = run(loss(&[]), 0, None);
        let want = v(&terms.recon) + 4.0 * v(&terms.kl) + 2.0 * mse;
        assert!((v(&terms.loss) - want).abs() < 1e-5);
        // Capacity at step 50 of 100 is 5 nats.
        let terms = run(loss(&["model.objective=capacity"]), 50, None);
        let want = v(&terms.recon) + 5.0 * (v(&terms.kl) - 5.0).abs() + 2.0 * mse;
        assert!((v(&terms.loss) - want).abs() < 1e-4);
        let tc = t(&[0.25], &[1]);
        let terms = run(loss(&["model.objective=factor"]), 0, Some(&tc));
        let want = v(&terms.recon) + v(&terms.kl) + 3.0 * 0.25 + 2.0 * mse;
        assert!((v(&terms.loss) - want).abs() < 1e-5);
    }

    #[test]
    fn each_objective_says_what_the_rest_needs() {
        for (name, batch_level, has_tc) in [
            ("vae", false, false),
            ("capacity", true, false),
            ("factor", false, true),
            ("btcvae", true, true),
            ("dip_i", true, false),
            ("dip_ii", true, false),
        ] {
            let l = loss(&[&format!("model.objective={name}")]);
            assert_eq!(l.batch_level(), batch_level, "{name}");
            assert_eq!(l.objective.has_tc(), has_tc, "{name}");
        }
        let cap = loss(&["model.objective=capacity"]);
        assert_eq!(
            cap.objective.scalars(50),
            vec![("train/capacity".to_string(), 5.0)]
        );
    }
}
