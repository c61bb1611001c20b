//! [`Feed`]: this rank's training samples in the configured order, opened
//! once per run, an [`Epoch`] at a time.
use std::sync::Arc;

use tch::{Device, Kind, Tensor};
use tokio::sync::oneshot;
use vae_proto::config::{Config, DataOrder};

use super::epoch::{Batches, Epoch, Indexed};
use super::split::load_split;
use super::stream::{ShardStream, Streamed};
use crate::data::format::Dataset;
use crate::data::sampler::{GlobalOrder, ShardOrder};
use crate::data::variant::Variants;
use crate::train::error::TrainError;

/// The training samples of this rank in the configured order.
pub struct Feed {
    source: Source,
    rank: usize,
    world: usize,
    device: Device,
    kind: Kind,
    epochs: u64,
    /// `data.streams` (0: the workers at the epoch's start).
    streams: usize,
    /// A dSprites variant made of each sample (`data.variant`).
    variant: Option<Arc<Variants>>,
}

enum Source {
    Global {
        images: Tensor,
        order: GlobalOrder,
    },
    Shard {
        order: ShardOrder,
        dataset: Box<Dataset>,
        /// The next epoch's streams, fetching once this epoch's shards are read.
        next: Option<(u64, Vec<ShardStream>)>,
    },
}

impl Feed {
    /// Opens the training data of `dataset` for rank `rank` of `world`:
    /// `global` order reads the whole split now, `shard` order per epoch.
    pub fn open(
        cfg: &Config,
        dataset: Dataset,
        rank: usize,
        world: usize,
        (device, kind): (Device, Kind),
        variant: Option<Arc<Variants>>,
    ) -> Result<Feed, TrainError> {
        let global_batch = cfg.train.batch_size as usize;
        let split = dataset.split("train")?.clone();
        if split.samples < global_batch as u64 {
            return Err(TrainError::Invalid(format!(
                "config key `train.batch_size`: {global_batch} is more than the {} training samples",
                split.samples
            )));
        }
        let source = match cfg.data.order {
            DataOrder::Global => {
                let images = load_split(&dataset, "train", None, device)?;
                let n = images.size()[0] as usize;
                let order = GlobalOrder {
                    n,
                    batch: global_batch,
                    seed: cfg.train.seed,
                };
                Source::Global { images, order }
            }
            DataOrder::Shard => {
                let order = ShardOrder {
                    shard_sizes: split.shards.iter().map(|s| s.samples as usize).collect(),
                    batch: global_batch,
                    seed: cfg.train.seed,
                    buffer: cfg.data.shuffle_buffer as usize,
                };
                let streams = cfg.data.streams as usize;
                if streams > 0 && !global_batch.is_multiple_of(streams) {
                    return Err(TrainError::Invalid(format!(
                        "config key `data.streams`: {streams} does not divide train.batch_size {global_batch}"
                    )));
                }
                if order.steps_per_epoch(0, world) == 0 {
                    return Err(TrainError::Invalid(format!(
                        "config key `data.order`: \"shard\" deals {} samples to {world} workers, fewer than one batch of {} each",
                        split.samples,
                        global_batch / world
                    )));
                }
                Source::Shard {
                    order,
                    dataset: Box::new(dataset),
                    next: None,
                }
            }
        };
        Ok(Feed {
            source,
            rank,
            world,
            device,
            kind,
            epochs: cfg.train.epochs,
            streams: cfg.data.streams as usize,
            variant,
        })
    }

    /// The steps of `epoch` from step `start`, each reading `per_step`
    /// consecutive global batches. In `shard` order the epoch's global
    /// batches are those of the deal to `dealt` workers (the ones that
    /// started the epoch, or `data.streams`), whatever the number of
    /// workers now.
    pub fn epoch(
        &mut self,
        epoch: u64,
        start: u64,
        per_step: u64,
        dealt: usize,
    ) -> Result<Epoch, TrainError> {
        let (rank, world, kind) = (self.rank, self.world, self.kind);
        let deal = |workers: usize| match self.streams {
            0 => workers,
            n => n,
        };
        let (dealt, next_dealt) = (deal(dealt), deal(world));
        let (source, batches, local) = match &mut self.source {
            Source::Global { images, order } => {
                let s = order.slice(rank, world);
                let data = Indexed {
                    order: Indexed::upload(&order.permutation(epoch), images.device()),
                    images: images.shallow_clone(),
                    stride: order.batch,
                    offset: s.start,
                    local: s.end - s.start,
                    variant: self.variant.clone().map(|v| (v, epoch)),
                };
                (Batches::Indexed(data), order.steps_per_epoch(), s.len())
            }
            Source::Shard {
                order,
                dataset,
                next,
            } => {
                let reuse = next
                    .take()
                    .filter(|(e, _)| *e == epoch && start == 0 && dealt == next_dealt);
                let current = match reuse {
                    Some((_, s)) => s,
                    None => streams(dataset, order, epoch, dealt, rank, world, None)?,
                };
                let (gate, opened) = oneshot::channel();
                if epoch + 1 < self.epochs {
                    let (e, gate) = (epoch + 1, Some(opened));
                    let s = streams(dataset, order, e, next_dealt, rank, world, gate)?;
                    *next = Some((e, s));
                }
                let (l0, local) = (order.batch / dealt, order.batch / world);
                let m = &dataset.manifest;
                let [c, h, w] = m.sample_shape.map(|d| d as i64);
                let data = Streamed {
                    first_owner: rank * local / l0,
                    streams: current,
                    dealt_local: l0,
                    mine: rank * local..(rank + 1) * local,
                    shape: [c, h, w],
                    packed: m.dtype == "u1",
                    device: self.device,
                    kind,
                    variant: self.variant.clone().map(|v| (v, epoch)),
                    gate: Some(gate),
                };
                let batches = order.steps_per_epoch(epoch, dealt);
                (Batches::Streamed(Box::new(data)), batches, local)
            }
        };
        let mut e = Epoch {
            steps: batches / per_step,
            next: 0,
            per_step,
            rows: rank as u64 * local as u64..(rank as u64 + 1) * local as u64,
            kind,
            source,
        };
        e.skip(start)?;
        Ok(e)
    }
}

/// The streams of the dealt workers whose part of each global batch overlaps
/// this rank's slice of it (only its own when `dealt` is the number of
/// workers now).
fn streams(
    dataset: &Dataset,
    order: &ShardOrder,
    epoch: u64,
    dealt: usize,
    rank: usize,
    world: usize,
    gate: Option<oneshot::Receiver<()>>,
) -> Result<Vec<ShardStream>, TrainError> {
    let (l0, local) = (order.batch / dealt, order.batch / world);
    let owners = rank * local / l0..=((rank + 1) * local - 1) / l0;
    // A gate (the next epoch's) holds the first stream's fetches back (the
    // only one unless `data.streams` gives a rank several).
    let mut gate = gate;
    owners
        .map(|owner| ShardStream::new(dataset, order, epoch, owner, dealt, gate.take()))
        .collect()
}
