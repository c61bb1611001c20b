//! The one trait every objective implements ([`Objective`]) and what it
//! adds to the reconstruction ([`Penalty`]).
use tch::{Device, Kind, Tensor};
use vae_proto::config::Config;

use super::error::ObjectiveError;
use super::regularizer::Regularizer;
use crate::collective::{BatchScope, Comm, CommError};
use crate::loss::{CrossRows, Forward};

/// What an objective adds to the reconstruction, per sample `[B]`, and its
/// total-correlation estimate `[B]` (zeros where it has none).
pub struct Penalty {
    pub loss: Tensor,
    pub tc: Tensor,
}

/// One objective.
pub trait Objective: Send + Sync {
    /// Its regulariser on this part of the batch at training step `step`:
    /// `kl` is the per-sample KL `[B]`; `net` a regularising network's
    /// per-sample output (FactorVAE: `D(z)₀ − D(z)₁`); tensors of the whole
    /// batch it differentiates go into `cross`.
    fn penalty(
        &self,
        f: &Forward,
        kl: &Tensor,
        step: u64,
        net: Option<&Tensor>,
        scope: &dyn BatchScope,
        cross: &mut Vec<CrossRows>,
    ) -> Result<Penalty, CommError>;

    /// Whether it is defined on the whole batch rather than per sample
    /// (then the test loss is computed on blocks of `train.batch_size`).
    fn batch_level(&self) -> bool {
        false
    }

    /// Whether it estimates a total correlation (`test/tc`, `test_tc`).
    fn has_tc(&self) -> bool {
        false
    }

    /// Training scalars of its own at `step` (TensorBoard tags).
    fn scalars(&self, _step: u64) -> Vec<(String, f64)> {
        Vec::new()
    }

    /// The network it trains beside the VAE (initialised after the VAE's,
    /// from the same torch seed), if any.
    fn network(
        &self,
        _cfg: &Config,
        _latent: i64,
        _device: Device,
        _kind: Kind,
        _comm: &dyn Comm,
    ) -> Result<Option<Box<dyn Regularizer>>, ObjectiveError> {
        Ok(None)
    }
}
