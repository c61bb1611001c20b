//! FactorVAE (Kim & Mnih 2018): KL + γ·TC, the TC estimated by a
//! discriminator trained beside the VAE — a [`Regularizer`] that learns to
//! tell codes of the VAE's batch (class 0) from dimension-wise permuted codes
//! of a second batch (class 1), with its own Adam; its logit difference is
//! the TC estimate the VAE's loss is penalised with. Its inputs are
//! detached, so the VAE's update before it cannot invalidate any graph it
//! uses.
use tch::{nn, Device, Kind, Tensor};
use vae_proto::config::{Config, OptimSection};

use super::regularizer::{Regularizer, RegularizerStep};
use super::{Objective, Penalty};
use crate::comm::{BatchScope, Comm, CommError};
use crate::loss::{CrossRows, Forward};
use crate::model::discriminator::{self, Discriminator};
use crate::model::{sample_z, Vae};
use crate::rng::Stream;
use crate::train::weights::Weights;
use crate::train::TrainError;

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
    ) -> Result<Option<Box<dyn Regularizer>>, TrainError> {
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
    ) -> Result<FactorDiscriminator, TrainError> {
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
    fn penalty(&self, z: &Tensor) -> Tensor {
        discriminator::tc_estimate(&self.net.forward(z))
    }

    fn extra_batches(&self) -> u64 {
        1
    }

    /// Sums: `[correct, loss sum, samples]` over real and permuted codes.
    fn update(&mut self, s: &RegularizerStep, comm: &dyn Comm) -> Result<Tensor, TrainError> {
        let x2 = s.extra.first().ok_or_else(|| {
            TrainError::Invalid("FactorVAE needs a second batch every step".into())
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
        let real = self.net.forward(s.z);
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
