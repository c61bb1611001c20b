//! The training data of this rank, in the configured order, as the batches
//! of each step. `global`: every rank holds the whole training split; one
//! permutation per epoch, each global batch split into contiguous per-rank
//! slices. `shard`: each rank loads only the shards dealt to it this epoch
//! and visits them through its shuffle buffer. An [`Epoch`] is an iterator
//! of [`StepBatch`]es from a position (a resume starts mid-epoch). This is
//! the one place where prefetching and streaming from storage go.
use std::ops::Range;

use tch::{Device, Kind, Tensor};
use vae_proto::config::{Config, DataOrder};

use super::{tensor_err, TrainError};
use crate::data::format::Dataset;
use crate::data::sampler::{GlobalOrder, ShardOrder};

/// What one step trains on, on this rank.
pub struct StepBatch {
    /// The VAE's batch: pixels in [0, 1], `[b, C, H, W]` with `b` = global batch / ranks.
    pub x: Tensor,
    /// A regulariser's extra batches of the step (FactorVAE: one), same shape.
    pub extra: Vec<Tensor>,
    /// This rank's rows of the global batch, which index the step's noise.
    pub rows: Range<u64>,
}

/// The training samples of this rank in the configured order.
pub struct Feed {
    source: Source,
    rank: usize,
    world: usize,
    device: Device,
    kind: Kind,
}

enum Source {
    Global {
        images: Tensor,
        order: GlobalOrder,
    },
    Shard {
        order: ShardOrder,
        dataset: Box<Dataset>,
        /// The shards loaded for the current epoch, and their images.
        loaded: Option<(Vec<usize>, Tensor)>,
    },
}

impl Feed {
    /// Opens the training data of `dataset` for rank `rank` of `world`:
    /// `global` order loads the whole split now, `shard` order per epoch.
    pub fn open(
        cfg: &Config,
        dataset: Dataset,
        rank: usize,
        world: usize,
        device: Device,
        kind: Kind,
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
                if order.steps_per_epoch(0, world) == 0 {
                    return Err(TrainError::Invalid(format!(
                        "config key `data.order`: \"shard\" deals {} shards to {world} workers, and some worker gets too few samples for one batch of {}",
                        split.shards.len(),
                        global_batch / world
                    )));
                }
                Source::Shard {
                    order,
                    dataset: Box::new(dataset),
                    loaded: None,
                }
            }
        };
        Ok(Feed {
            source,
            rank,
            world,
            device,
            kind,
        })
    }

    /// The steps of `epoch` from step `start`, each reading `per_step`
    /// consecutive global batches. In `shard` order the epoch's global
    /// batches are those of the deal to `dealt` workers (the ones that
    /// started the epoch), whatever the number of workers now.
    pub fn epoch(
        &mut self,
        epoch: u64,
        start: u64,
        per_step: u64,
        dealt: usize,
    ) -> Result<Epoch, TrainError> {
        let (rank, world) = (self.rank, self.world);
        let data = match &mut self.source {
            Source::Global { images, order } => {
                let s = order.slice(rank, world);
                EpochData {
                    images: images.shallow_clone(),
                    order: order.permutation(epoch),
                    stride: order.batch,
                    offset: s.start,
                    local: s.end - s.start,
                    batches: order.steps_per_epoch(),
                }
            }
            Source::Shard {
                order,
                dataset,
                loaded,
            } => {
                let deal = Deal::new(order, epoch, dealt, rank, world);
                if loaded.as_ref().is_none_or(|(s, _)| *s != deal.shards) {
                    *loaded = None; // free the previous epoch's shards first
                    let t = load_split(dataset, "train", Some(&deal.shards), self.device)?;
                    *loaded = Some((deal.shards.clone(), t));
                }
                EpochData {
                    images: loaded
                        .as_ref()
                        .map(|(_, t)| t.shallow_clone())
                        .unwrap_or_else(Tensor::new),
                    stride: deal.local,
                    offset: 0,
                    local: deal.local,
                    batches: order.steps_per_epoch(epoch, dealt),
                    order: deal.order,
                }
            }
        };
        let local = data.local as u64;
        Ok(Epoch {
            steps: data.batches / per_step,
            next: start,
            per_step,
            rows: rank as u64 * local..(rank as u64 + 1) * local,
            kind: self.kind,
            data,
        })
    }
}

/// This rank's part of a `shard`-order epoch dealt to `dealt` workers. Each
/// global batch is the concatenation of the dealt workers' local batches (in
/// rank order); this rank takes its contiguous slice of every global batch,
/// so it reads the shards of the dealt workers whose positions overlap its
/// slice — its own shards alone when `dealt` is the number of workers now.
struct Deal {
    /// The shards to load, in order.
    shards: Vec<usize>,
    /// Per global batch, this rank's samples as positions in the
    /// concatenation of `shards`.
    order: Vec<u32>,
    /// Samples per global batch on this rank.
    local: usize,
}

impl Deal {
    fn new(order: &ShardOrder, epoch: u64, dealt: usize, rank: usize, world: usize) -> Deal {
        let (l0, local) = (order.batch / dealt, order.batch / world);
        let mine = rank * local..(rank + 1) * local;
        let owners: Vec<usize> = (mine.start / l0..=(mine.end - 1) / l0).collect();
        let (mut shards, mut base, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        let mut held = 0u32;
        for &r in &owners {
            base.push(held);
            shards.extend(order.assignment(epoch, r, dealt));
            seqs.push(order.sequence(epoch, r, dealt));
            held += order.samples(epoch, r, dealt) as u32;
        }
        let batches = order.steps_per_epoch(epoch, dealt) as usize;
        let mut idx = Vec::with_capacity(batches * local);
        for b in 0..batches {
            for p in mine.clone() {
                let k = p / l0 - owners[0];
                idx.push(base[k] + seqs[k][b * l0 + p % l0]);
            }
        }
        Deal {
            shards,
            order: idx,
            local,
        }
    }
}

/// Where an epoch's batches come from on this rank: local images and the
/// order in which to take them. Global batch `b` is
/// `order[b·stride + offset .. b·stride + offset + local]`.
struct EpochData {
    images: Tensor,
    order: Vec<u32>,
    stride: usize,
    offset: usize,
    local: usize,
    /// Global batches in the epoch.
    batches: u64,
}

impl EpochData {
    /// This rank's samples of global batch `b`, as pixels in [0, 1].
    fn batch(&self, b: u64, kind: Kind) -> Tensor {
        let at = b as usize * self.stride + self.offset;
        let idx: Vec<i64> = self.order[at..at + self.local]
            .iter()
            .map(|&i| i as i64)
            .collect();
        let idx = Tensor::from_slice(&idx).to_device(self.images.device());
        self.images.index_select(0, &idx).to_kind(kind) / 255.0
    }
}

/// The steps of one epoch on this rank, from a start position.
pub struct Epoch {
    data: EpochData,
    /// Steps in the whole epoch (the same on every rank).
    pub steps: u64,
    next: u64,
    per_step: u64,
    rows: Range<u64>,
    kind: Kind,
}

impl Iterator for Epoch {
    type Item = StepBatch;

    fn next(&mut self) -> Option<StepBatch> {
        if self.next >= self.steps {
            return None;
        }
        let first = self.next * self.per_step;
        self.next += 1;
        Some(StepBatch {
            x: self.data.batch(first, self.kind),
            extra: (1..self.per_step)
                .map(|k| self.data.batch(first + k, self.kind))
                .collect(),
            rows: self.rows.clone(),
        })
    }
}

/// Reads the shards `which` (all when `None`) of a split and returns their
/// images as one `u8` tensor `[N, C, H, W]` on `device`.
pub fn load_split(
    dataset: &Dataset,
    split: &str,
    which: Option<&[usize]>,
    device: Device,
) -> Result<Tensor, TrainError> {
    let data = dataset.read_split(split, which)?;
    let [c, h, w] = dataset.manifest.sample_shape.map(|d| d as i64);
    Tensor::from_slice(&data.images)
        .f_view([data.n as i64, c, h, w])
        .and_then(|t| t.f_to_device(device))
        .map_err(tensor_err("loading the dataset onto the device"))
}
