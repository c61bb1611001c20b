//! Objectives that train a network of their own beside the VAE (FactorVAE's
//! discriminator) plug in through [`Regularizer`]: it gives the VAE's loss a
//! per-sample output, takes its own update after the VAE's in every step
//! (reading extra batches if it needs them), names the scalars it reports,
//! and hands its [`Weights`] (under its own prefix) to checkpoints and
//! resume. The objective builds it ([`super::penalty::Objective::network`]).
use std::ops::Range;

use tch::Tensor;

use super::error::ObjectiveError;
use crate::collective::{BatchScope, Comm};
use crate::model::Vae;
use crate::weights::Weights;

/// What a regulariser's update sees of the step.
pub struct RegularizerStep<'a> {
    /// The model, after this step's VAE update.
    pub model: &'a dyn Vae,
    /// The network's output on this step's codes of the VAE's batch on
    /// this rank, from the VAE's forward ([`Regularizer::forward`]), graph
    /// kept: the network's weights have not changed since, so an update
    /// takes it instead of running the network on the codes again (its
    /// gradient with respect to the network's weights is the same; the
    /// backward stops at them).
    pub output: &'a Tensor,
    /// The extra batches of this step on this rank, pixels `[b, C, H, W]`.
    pub extra: &'a [Tensor],
    pub seed: u64,
    pub step: u64,
    /// This rank's rows of the global batch (for counter-based noise).
    pub rows: Range<u64>,
    pub global_batch: usize,
    /// Where this rank's rows are in the global batch.
    pub scope: &'a dyn BatchScope,
}

pub trait Regularizer {
    /// The network's output on codes `z` `[B, L]` (FactorVAE: the
    /// discriminator's logits `[B, 2]`).
    fn forward(&self, z: &Tensor) -> Tensor;

    /// Per-sample penalty `[B]` from [`Regularizer::forward`]'s `output`,
    /// which the objective weighs into the VAE's loss (FactorVAE: the TC
    /// estimate `D(z)₀ − D(z)₁`).
    fn penalty(&self, output: &Tensor) -> Tensor;

    /// Global batches it reads per step besides the VAE's own.
    fn extra_batches(&self) -> u64;

    /// Its own update after the VAE's (gradients averaged over ranks through
    /// `comm`). Returns sums over this rank's samples, `[sums_len]` double,
    /// which are added up over steps and ranks for [`Regularizer::scalars`].
    fn update(&mut self, s: &RegularizerStep, comm: &dyn Comm) -> Result<Tensor, ObjectiveError>;

    /// Length of the sums [`Regularizer::update`] returns.
    fn sums_len(&self) -> usize;

    /// Training scalars (TensorBoard tags under `train/`) from the sums added
    /// up over a logging window and all ranks.
    fn scalars(&self, sums: &[f64]) -> Vec<(&'static str, f64)>;

    /// Figures on held-out images, for `vae-worker eval`.
    fn evaluate(&self, model: &dyn Vae, images: &Tensor, seed: u64) -> Vec<(&'static str, f64)>;

    /// The prefix of its optimizer state in checkpoints (`disc.`).
    fn checkpoint_prefix(&self) -> &'static str;

    /// Its network and optimizer.
    fn weights(&self) -> &Weights;
    fn weights_mut(&mut self) -> &mut Weights;
}
