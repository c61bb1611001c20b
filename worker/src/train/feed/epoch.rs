//! One epoch of this rank's steps ([`Epoch`]) and what each step trains
//! on ([`StepBatch`]), from the resident split (`global` order) or the
//! shard streams (`shard` order).
use std::ops::Range;
use std::sync::Arc;

use tch::{Kind, Tensor};

use super::stream::Streamed;
use crate::data::variant::Variants;
use crate::train::error::TrainError;

/// What one step trains on, on this rank.
pub struct StepBatch {
    /// The VAE's batch: pixels in [0, 1], `[b, C, H, W]` with `b` = global batch / ranks.
    pub x: Tensor,
    /// A regulariser's extra batches of the step (FactorVAE: one), same shape.
    pub extra: Vec<Tensor>,
    /// This rank's rows of the global batch, which index the step's noise.
    pub rows: Range<u64>,
}

/// `global` order: the epoch's batches index the resident training split.
/// Global batch `b` is `order[b·stride + offset .. b·stride + offset + local]`.
/// The split and the epoch's order live on the training device, so a step
/// copies nothing from the host (on a GPU: no host-to-device transfer).
pub(super) struct Indexed {
    pub(super) images: Tensor,
    /// The epoch's permutation, int64 `[n]`, on the images' device.
    pub(super) order: Tensor,
    pub(super) stride: usize,
    pub(super) offset: usize,
    pub(super) local: usize,
    /// A dSprites variant made of each sample, and the epoch (its counter).
    pub(super) variant: Option<(Arc<Variants>, u64)>,
}

impl Indexed {
    /// The epoch's permutation on `device`, once per epoch.
    pub(super) fn upload(order: &[u32], device: tch::Device) -> Tensor {
        let order: Vec<i64> = order.iter().map(|&i| i64::from(i)).collect();
        Tensor::from_slice(&order).to_device(device)
    }

    /// This rank's samples of global batch `b`, as pixels in [0, 1].
    fn batch(&self, b: u64, kind: Kind) -> Result<Tensor, TrainError> {
        let at = b as i64 * self.stride as i64 + self.offset as i64;
        let idx = self.order.narrow(0, at, self.local as i64);
        let x = self.images.index_select(0, &idx);
        let Some((v, epoch)) = &self.variant else {
            return Ok(x.to_kind(kind) / 255.0);
        };
        let ids = Vec::<i64>::try_from(&idx.to_device(tch::Device::Cpu).contiguous()).map_err(
            crate::train::error::tensor_err("the batch's sample indices"),
        )?;
        let ids: Vec<u64> = ids.iter().map(|&i| i as u64).collect();
        let (h, w) = (x.size()[2], x.size()[3]);
        let bytes = super::variant::bytes_of(&x)?;
        super::variant::made(v, &bytes, (h, w), &ids, *epoch, (x.device(), kind))
    }
}

pub(super) enum Batches {
    Indexed(Indexed),
    Streamed(Box<Streamed>),
}

/// The steps of one epoch on this rank.
pub struct Epoch {
    /// Steps in the whole epoch (the same on every rank).
    pub steps: u64,
    pub(super) next: u64,
    pub(super) per_step: u64,
    pub(super) rows: Range<u64>,
    pub(super) kind: Kind,
    pub(super) source: Batches,
}

impl Epoch {
    /// The next global batch's samples on this rank (`skip`: advance only).
    fn batch(&mut self, skip: bool) -> Result<Tensor, TrainError> {
        let b = self.next;
        self.next += 1;
        match &mut self.source {
            Batches::Indexed(d) => match skip {
                true => Ok(Tensor::new()),
                false => d.batch(b, self.kind),
            },
            Batches::Streamed(s) => s.batch(skip)?.ok_or_else(|| {
                TrainError::Invalid(format!("the shard stream ended before global batch {b}"))
            }),
        }
    }

    /// Samples skipped this epoch so far because they do not decode (this
    /// rank's share of the count: summed over ranks, each counted once).
    pub fn skipped(&self) -> u64 {
        match &self.source {
            Batches::Indexed(_) => 0,
            Batches::Streamed(s) => s.skipped(),
        }
    }

    /// Passes over the first `steps` steps (a resume mid-epoch).
    pub(super) fn skip(&mut self, steps: u64) -> Result<(), TrainError> {
        for _ in 0..steps.min(self.steps) * self.per_step {
            let _ = self.batch(true)?;
        }
        Ok(())
    }

    /// The next step's batches, `None` at the end of the epoch.
    pub fn next_step(&mut self) -> Option<Result<StepBatch, TrainError>> {
        if self.next >= self.steps * self.per_step {
            return None;
        }
        let mut step = || -> Result<StepBatch, TrainError> {
            let x = self.batch(false)?;
            let extra = (1..self.per_step)
                .map(|_| self.batch(false))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(StepBatch {
                x,
                extra,
                rows: self.rows.clone(),
            })
        };
        Some(step())
    }
}
