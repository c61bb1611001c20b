//! The training data of this rank, in the configured order, as the batches
//! of each step; the one place where data meets the training loop.
//! `global`: every rank holds the whole training split (read once, several
//! shards at a time); one permutation per epoch, each global batch split into
//! contiguous per-rank slices. `shard`: each rank streams only the shards
//! dealt to it this epoch through its shuffle buffer ([`stream`]), fetched
//! ahead while training runs, the next epoch's as soon as this epoch's are
//! all read. An [`Epoch`] yields [`StepBatch`]es from a position (a resume
//! starts mid-epoch).
pub mod stream;

use std::ops::Range;

use tch::{Device, Kind, Tensor};
use tokio::sync::oneshot;
use vae_proto::config::{Config, DataOrder};

use super::{tensor_err, TrainError};
use crate::data::format::Dataset;
use crate::data::sampler::{GlobalOrder, ShardOrder};
use stream::{ShardStream, Streamed};

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
    epochs: u64,
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
        let (rank, world, kind) = (self.rank, self.world, self.kind);
        let (source, batches, local) = match &mut self.source {
            Source::Global { images, order } => {
                let s = order.slice(rank, world);
                let data = Indexed {
                    order: Indexed::upload(&order.permutation(epoch), images.device()),
                    images: images.shallow_clone(),
                    stride: order.batch,
                    offset: s.start,
                    local: s.end - s.start,
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
                    .filter(|(e, _)| *e == epoch && start == 0 && dealt == world);
                let current = match reuse {
                    Some((_, s)) => s,
                    None => streams(dataset, order, epoch, dealt, rank, world, None)?,
                };
                let (gate, opened) = oneshot::channel();
                if epoch + 1 < self.epochs {
                    let s = streams(dataset, order, epoch + 1, world, rank, world, Some(opened))?;
                    *next = Some((epoch + 1, s));
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
    // A gate (the next epoch's, always one stream: its own shards) holds
    // the first stream's fetches back.
    let mut gate = gate;
    owners
        .map(|owner| ShardStream::new(dataset, order, epoch, owner, dealt, gate.take()))
        .collect()
}

/// `global` order: the epoch's batches index the resident training split.
/// Global batch `b` is `order[b·stride + offset .. b·stride + offset + local]`.
/// The split and the epoch's order live on the training device, so a step
/// copies nothing from the host (on a GPU: no host-to-device transfer).
struct Indexed {
    images: Tensor,
    /// The epoch's permutation, int64 `[n]`, on the images' device.
    order: Tensor,
    stride: usize,
    offset: usize,
    local: usize,
}

impl Indexed {
    /// The epoch's permutation on `device`, once per epoch.
    fn upload(order: &[u32], device: tch::Device) -> Tensor {
        let order: Vec<i64> = order.iter().map(|&i| i64::from(i)).collect();
        Tensor::from_slice(&order).to_device(device)
    }

    /// This rank's samples of global batch `b`, as pixels in [0, 1].
    fn batch(&self, b: u64, kind: Kind) -> Tensor {
        let at = b as i64 * self.stride as i64 + self.offset as i64;
        let idx = self.order.narrow(0, at, self.local as i64);
        self.images.index_select(0, &idx).to_kind(kind) / 255.0
    }
}

enum Batches {
    Indexed(Indexed),
    Streamed(Box<Streamed>),
}

/// The steps of one epoch on this rank.
pub struct Epoch {
    /// Steps in the whole epoch (the same on every rank).
    pub steps: u64,
    next: u64,
    per_step: u64,
    rows: Range<u64>,
    kind: Kind,
    source: Batches,
}

impl Epoch {
    /// The next global batch's samples on this rank (`skip`: advance only).
    fn batch(&mut self, skip: bool) -> Result<Tensor, TrainError> {
        let b = self.next;
        self.next += 1;
        match &mut self.source {
            Batches::Indexed(d) => Ok(if skip {
                Tensor::new()
            } else {
                d.batch(b, self.kind)
            }),
            Batches::Streamed(s) => s.batch(skip)?.ok_or_else(|| {
                TrainError::Invalid(format!("the shard stream ended before global batch {b}"))
            }),
        }
    }

    /// Passes over the first `steps` steps (a resume mid-epoch).
    fn skip(&mut self, steps: u64) -> Result<(), TrainError> {
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

/// What `vae-worker data read` measured.
#[derive(Debug, serde::Serialize)]
pub struct Throughput {
    pub url: String,
    pub samples: u64,
    pub seconds: f64,
    pub samples_per_sec: f64,
}

/// Reads `epochs` epochs of the training data as the only worker of a run
/// of `cfg` would (opening included), on the CPU, and times it.
pub fn read_throughput(cfg: &Config, epochs: u64) -> Result<Throughput, TrainError> {
    let started = std::time::Instant::now();
    let storage = crate::data::store::StorageOptions::from_config(&cfg.storage);
    let dataset = Dataset::open(&cfg.data.url, &storage)?;
    let mut feed = Feed::open(cfg, dataset, 0, 1, Device::Cpu, Kind::Float)?;
    let mut samples = 0u64;
    for e in 0..epochs {
        let mut epoch = feed.epoch(e, 0, 1, 1)?;
        while let Some(b) = epoch.next_step() {
            samples += b?.x.size()[0] as u64;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Throughput {
        url: cfg.data.url.clone(),
        samples,
        seconds,
        samples_per_sec: samples as f64 / seconds.max(1e-9),
    })
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
