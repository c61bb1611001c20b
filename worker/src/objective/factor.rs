//! FactorVAE (Kim & Mnih 2018): KL + γ·TC, the TC estimated by a
//! discriminator trained beside the VAE — a [`Regularizer`] that learns to
//! tell codes of the VAE's batch (class 0) from dimension-wise permuted codes
//! of a second batch (class 1), with its own Adam; its logit difference is
//! the TC estimate the VAE's loss is penalised with. Its update takes the
//! logits of the VAE's own forward for the real codes (its weights have not
//! moved since; the backward from them stops at its weights, so the VAE's
//! update in between invalidates nothing it reads) and runs the network
//! once more, on the permuted codes, which are computed without a graph.
use tch::{nn, Device, Kind, Tensor};
use vae_proto::config::{Config, OptimSection};

use super::error::ObjectiveError;
use super::penalty::{Objective, Penalty};
use super::regularizer::{Regularizer, RegularizerStep};
use crate::collective::{BatchScope, Comm, CommError};
use crate::loss::{CrossRows, Forward};
use crate::model::discriminator::{self, Discriminator};
use crate::model::{sample_z, Vae};
use crate::rng::Stream;
use crate::weights::Weights;

pub struct Factor {
    /// γ, the weight of the TC estimate.
    pub gamma: f64,
}

impl Objective for Factor {
    fn penalty(
        &self,
        _f: &Forward,
        kl: &Tensor,
        _step: u64,
        net: Option<&Tensor>,
        _scope: &dyn BatchScope,
        _cross: &mut Vec<CrossRows>,
    ) -> Result<Penalty, CommError> {
        let tc = net.map_or_else(|| kl.zeros_like(), Tensor::shallow_clone);
        Ok(Penalty {
            loss: kl + &tc * self.gamma,
            tc,
        })
    }

    fn has_tc(&self) -> bool {
        true
    }

    fn network(
        &self,
        cfg: &Config,
        latent: i64,
        device: Device,
        kind: Kind,
        comm: &dyn Comm,
    ) -> Result<Option<Box<dyn Regularizer>>, ObjectiveError> {
        Ok(Some(Box::new(FactorDiscriminator::new(
            cfg, latent, device, kind, comm,
        )?)))
    }
}

pub struct FactorDiscriminator {
    net: Discriminator,
    weights: Weights,
    kind: Kind,
    device: Device,
}

impl FactorDiscriminator {
    pub fn new(
        cfg: &Config,
        latent: i64,
        device: Device,
        kind: Kind,
        comm: &dyn Comm,
    ) -> Result<FactorDiscriminator, ObjectiveError> {
        let d = &cfg.discriminator;
        let vs = nn::VarStore::new(device);
        let net = Discriminator::new(
            &(vs.root() / "discriminator"),
            latent,
            d.hidden,
            d.layers,
            cfg.train.precision,
        );
        let optim = OptimSection {
            lr: d.lr,
            beta1: d.beta1,
            beta2: d.beta2,
            ..cfg.optim.clone()
        };
        let weights = Weights::new(vs, kind, &optim, comm)?;
        Ok(FactorDiscriminator {
            net,
            weights,
            kind,
            device,
        })
    }

    /// Cross-entropy of `logits` `[B, 2]` against class `target`, summed.
    fn cross_entropy(&self, logits: &Tensor, target: i64) -> Tensor {
        let n = logits.size()[0];
        let target = Tensor::full([n], target, (Kind::Int64, self.device));
        logits.log_softmax(1, self.kind).nll_loss_nd::<Tensor>(
            &target,
            None,
            tch::Reduction::Sum,
            -100,
        )
    }
}

impl Regularizer for FactorDiscriminator {
    fn forward(&self, z: &Tensor) -> Tensor {
        self.net.forward(z)
    }

    fn penalty(&self, output: &Tensor) -> Tensor {
        discriminator::tc_estimate(output)
    }

    fn extra_batches(&self) -> u64 {
        1
    }

    /// Sums: `[correct, loss sum, samples]` over real and permuted codes.
    fn update(&mut self, s: &RegularizerStep, comm: &dyn Comm) -> Result<Tensor, ObjectiveError> {
        let x2 = s.extra.first().ok_or_else(|| {
            ObjectiveError::Invalid("FactorVAE needs a second batch every step".into())
        })?;
        // The second batch's codes of every rank, permuted per dimension
        // over the global batch with the shared seed; this rank takes its
        // rows. No gradient flows here.
        let z2 = tch::no_grad(|| {
            let (mu2, lv2) = s.model.encode(x2);
            sample_z(
                &mu2,
                &lv2,
                s.seed,
                Stream::SecondBatchNoise,
                s.step,
                s.rows.clone(),
            )
        });
        let all = s.scope.gather(&z2)?;
        let z_perm = discriminator::permute_dims(&all, s.seed, s.step).narrow(
            0,
            s.scope.offset(),
            s.scope.rows(),
        );
        // D(z) of the VAE's forward: the same logits D would give the
        // detached codes now.
        let real = s.output.shallow_clone();
        let fake = self.net.forward(&z_perm);
        let n = real.size()[0];
        let d_sum = self.cross_entropy(&real, 0) + self.cross_entropy(&fake, 1);
        let d_loss = &d_sum * 0.5 / s.global_batch as f64;
        let grad = self
            .weights
            .gradient(&d_loss, "discriminator gradient", s.step)?;
        self.weights.update(grad, comm)?;
        let correct = real.argmax(1, false).eq(0).sum(Kind::Double)
            + fake.argmax(1, false).eq(1).sum(Kind::Double);
        Ok(Tensor::stack(
            &[
                correct,
                d_sum.detach().to_kind(Kind::Double),
                Tensor::full([], 2.0 * n as f64, (Kind::Double, self.device)),
            ],
            0,
        ))
    }

    fn sums_len(&self) -> usize {
        3
    }

    fn scalars(&self, sums: &[f64]) -> Vec<(&'static str, f64)> {
        match sums {
            [correct, loss, n] if *n > 0.0 => vec![
                ("train/disc_accuracy", correct / n),
                ("train/disc_loss", loss / n),
            ],
            _ => vec![],
        }
    }

    /// The discriminator's accuracy on codes of `images` against
    /// dimension-wise permuted codes of their other half.
    fn evaluate(&self, model: &dyn Vae, images: &Tensor, seed: u64) -> Vec<(&'static str, f64)> {
        let half = (images.size()[0] / 2).min(1000);
        if half < 2 {
            return vec![];
        }
        let acc = tch::no_grad(|| {
            let code = |start: i64| {
                let x = images.narrow(0, start, half).to_kind(self.kind) / 255.0;
                let (mu, lv) = model.encode(&x);
                sample_z(
                    &mu,
                    &lv,
                    seed,
                    Stream::EvalNoise,
                    1,
                    start as u64..(start + half) as u64,
                )
            };
            let real = self.net.forward(&code(0)).argmax(1, false).eq(0);
            let permuted = discriminator::permute_dims(&code(half), seed, u64::MAX);
            let fake = self.net.forward(&permuted).argmax(1, false).eq(1);
            (real.sum(Kind::Double) + fake.sum(Kind::Double)).double_value(&[]) / (2 * half) as f64
        });
        vec![("disc_accuracy", acc)]
    }

    fn checkpoint_prefix(&self) -> &'static str {
        "disc."
    }

    fn weights(&self) -> &Weights {
        &self.weights
    }

    fn weights_mut(&mut self) -> &mut Weights {
        &mut self.weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::{RankSlice, Single};
    use crate::model;

    /// The discriminator and a small MLP VAE, from the same seed.
    fn parts(cfg: &Config) -> (FactorDiscriminator, Box<dyn Vae>) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let vae = model::build(&vs.root(), &cfg.model, [1, 4, 4], cfg.train.precision);
        let d = FactorDiscriminator::new(cfg, 3, Device::Cpu, Kind::Float, &Single).unwrap();
        (d, vae)
    }

    #[test]
    fn the_update_from_the_vae_forwards_logits_equals_one_from_a_fresh_forward() {
        let sets = [
            "model.objective=\"factor\"",
            "model.hidden_dim=8",
            "model.latent_dim=3",
            "discriminator.hidden=16",
            "discriminator.layers=3",
        ]
        .map(String::from);
        let cfg = vae_proto::config::parse("", "test", &sets).unwrap();
        let (mut reused, vae) = parts(&cfg);
        let (mut fresh, _) = parts(&cfg);
        // Tests in other threads draw from the same global generator: the
        // seed alone does not make the two discriminators equal.
        let before = reused.weights.params.flat.copy();
        tch::no_grad(|| fresh.weights.params.flat.copy_(&before));
        // Codes with a graph back to a stand-in for the encoder's weights.
        let w = Tensor::randn([6, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let z = &w * 1.5 + 0.25;
        let out = reused.forward(&z);
        // The VAE's backward through D keeps the graph; then its update
        // changes the weights in place, as the step does.
        let vae_loss = reused.penalty(&out).sum(Kind::Float);
        Tensor::f_run_backward(&[vae_loss], &[&w], true, false).unwrap();
        let _ = tch::no_grad(|| w.shallow_clone().g_add_scalar_(1.0));
        let x2 = Tensor::rand([6, 1, 4, 4], (Kind::Float, Device::Cpu));
        let scope = RankSlice {
            comm: &Single,
            rows: 6,
        };
        let (zd, extra) = (z.detach(), [x2]);
        let step = |output| RegularizerStep {
            model: vae.as_ref(),
            output,
            extra: &extra,
            seed: 7,
            step: 1,
            rows: 0..6,
            global_batch: 6,
            scope: &scope,
        };
        let a = reused.update(&step(&out), &Single).unwrap();
        let fresh_out = fresh.forward(&zd);
        let b = fresh.update(&step(&fresh_out), &Single).unwrap();
        assert!(a.equal(&b), "sums {a} vs {b}");
        let (pa, pb) = (&reused.weights.params.flat, &fresh.weights.params.flat);
        assert!(pa.equal(pb), "the two updates differ");
        assert!(!pa.equal(&before), "no update");
    }
}
