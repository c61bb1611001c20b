//! One training step: the [`Trainer`] holds the model with its flat
//! parameters and Adam ([`Weights`]), the loss (its objective from
//! `crate::objective`) and, when the objective has one, a [`Regularizer`]. A step is forward → loss → flat gradient →
//! all-reduce → Adam, then the regulariser's own update. No I/O; the only
//! collectives are the gradient all-reduces (and the replica check it is
//! asked for).
use std::ops::Range;

use tch::{nn, Device, Kind, Tensor};
use vae_proto::config::Config;

use super::error::TrainError;
use super::feed::StepBatch;
use crate::collective::{BatchScope, Comm, RankSlice};
use crate::device::kind_of;
use crate::loss::{Forward, Terms};
use crate::metrics::batch_sums;
use crate::model::{self, sample_z, Vae};
use crate::objective::{Loss, Regularizer, RegularizerStep};
use crate::rng::Stream;
use crate::weights::Weights;

pub struct Trainer<'a> {
    pub cfg: &'a Config,
    comm: &'a dyn Comm,
    pub model: Box<dyn Vae>,
    pub weights: Weights,
    pub objective: Loss,
    pub regularizer: Option<Box<dyn Regularizer>>,
    pub device: Device,
    pub kind: Kind,
    pub latent: usize,
    /// The samples' shape `[C, H, W]`.
    pub sample_shape: [usize; 3],
}

/// One forward pass: the objective's terms, the posterior and, with a
/// regulariser, its network's output on the sampled codes.
pub struct Pass {
    pub terms: Terms,
    pub mu: Tensor,
    pub logvar: Tensor,
    pub net: Option<Tensor>,
}

/// What one step leaves to report, summed over this rank's samples: the
/// objective's sums (layout of [`crate::metrics::Sums`]), the regulariser's
/// sums, and the seconds spent in the VAE's gradient all-reduce.
pub struct StepOutcome {
    pub sums: Tensor,
    pub regularizer: Option<Tensor>,
    pub comm_secs: f64,
}

impl<'a> Trainer<'a> {
    /// Builds the model for samples of `shape` (and the regulariser's
    /// network) from the seed; every rank then holds rank 0's parameters.
    pub fn new(
        cfg: &'a Config,
        comm: &'a dyn Comm,
        device: Device,
        shape: [usize; 3],
        dataset_size: usize,
    ) -> Result<Trainer<'a>, TrainError> {
        tch::manual_seed(cfg.train.seed as i64);
        let vs = nn::VarStore::new(device);
        let model = model::build(&vs.root(), &cfg.model, shape, cfg.train.precision);
        let kind = kind_of(cfg.train.dtype);
        let weights = Weights::new(vs, kind, &cfg.optim, comm)?;
        let latent = model.latent_dim() as usize;
        let objective = Loss::from_config(&cfg.model, dataset_size);
        let regularizer = (objective.objective).network(cfg, latent as i64, device, kind, comm)?;
        Ok(Trainer {
            cfg,
            comm,
            model,
            weights,
            objective,
            regularizer,
            device,
            kind,
            latent,
            sample_shape: shape,
        })
    }

    pub fn comm(&self) -> &'a dyn Comm {
        self.comm
    }

    /// Global batches one step consumes: the VAE's and the regulariser's extra ones.
    pub fn batches_per_step(&self) -> u64 {
        1 + self.regularizer.as_ref().map_or(0, |r| r.extra_batches())
    }

    /// Sets the update count of every optimizer (after a resume).
    pub fn set_step(&mut self, step: u64) {
        self.weights.adam.t = step;
        if let Some(r) = self.regularizer.as_mut() {
            r.weights_mut().adam.t = step;
        }
    }

    /// Encodes `x` `[b, C, H, W]`, samples codes with noise rows `rows` of
    /// `(stream, counter)`, decodes, and computes the objective's terms at
    /// `step`; `scope` places the `b` rows in the batch the objective is
    /// defined on.
    pub fn forward(
        &self,
        x: &Tensor,
        stream: Stream,
        counter: u64,
        rows: Range<u64>,
        step: u64,
        scope: &dyn BatchScope,
    ) -> Result<Pass, TrainError> {
        let (mu, logvar) = self.model.encode(x);
        let z = sample_z(&mu, &logvar, self.cfg.train.seed, stream, counter, rows);
        let logits = self.model.decode(&z);
        let net = self.regularizer.as_ref().map(|r| r.forward(&z));
        let penalty = self.regularizer.as_ref().zip(net.as_ref());
        let penalty = penalty.map(|(r, out)| r.penalty(out));
        let f = Forward {
            x,
            mu: &mu,
            logvar: &logvar,
            z: &z,
            logits: &logits,
        };
        let terms = self.objective.terms(&f, step, penalty.as_ref(), scope)?;
        Ok(Pass {
            terms,
            mu,
            logvar,
            net,
        })
    }

    /// One optimizer step on `batch` (two with a regulariser: the VAE's, then
    /// its own), gradients averaged over ranks.
    pub fn step(&mut self, batch: &StepBatch, step: u64) -> Result<StepOutcome, TrainError> {
        let global_batch = self.cfg.train.batch_size as usize;
        let scope = RankSlice {
            comm: self.comm,
            rows: batch.x.size()[0],
        };
        let rows = batch.rows.clone();
        let Pass { terms, mu, net, .. } =
            self.forward(&batch.x, Stream::TrainNoise, step, rows, step, &scope)?;
        let loss = terms.loss.sum(self.kind) / global_batch as f64;
        // The regulariser's update goes back through its network's part of
        // this graph: keep it.
        let keep_graph = net.is_some();
        let grad = self
            .weights
            .batch_gradient(&loss, &terms.cross, &scope, keep_graph, step)?;
        let comm_secs = self.weights.update(grad, self.comm)?;
        let sums = batch_sums(&terms, &mu);
        let regularizer = match self.regularizer.as_mut().zip(net.as_ref()) {
            None => None,
            Some((r, output)) => {
                let s = RegularizerStep {
                    model: self.model.as_ref(),
                    output,
                    extra: &batch.extra,
                    seed: self.cfg.train.seed,
                    step,
                    rows: batch.rows.clone(),
                    global_batch,
                    scope: &scope,
                };
                Some(r.update(&s, self.comm)?)
            }
        };
        Ok(StepOutcome {
            sums,
            regularizer,
            comm_secs,
        })
    }

    /// Compares a checksum of the parameters across ranks (`dist.check_every`).
    pub fn check_replicas(&self, step: u64) -> Result<(), TrainError> {
        let flat = &self.weights.params.flat;
        let sum = flat.sum(Kind::Double).double_value(&[]);
        let sq = flat.square().sum(Kind::Double).double_value(&[]);
        for v in [sum, sq] {
            let (lo, hi) = self.comm.min_max_f64(v)?;
            if lo.to_bits() != hi.to_bits() {
                return Err(TrainError::Invalid(format!(
                    "parameters differ across ranks at step {step} (checksums from {lo} to {hi})"
                )));
            }
        }
        Ok(())
    }

    /// Pixels in [0, 1] in the training kind, from `u8` images.
    pub fn pixels(&self, images: &Tensor) -> Tensor {
        images.to_kind(self.kind) / 255.0
    }
}
