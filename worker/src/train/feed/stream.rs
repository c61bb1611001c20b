//! `shard` order, streamed. Each dealt worker's samples of an epoch (ranges
//! of shards: a whole shard is fetched and verified, its range read) come
//! out through a shuffle buffer, in exactly the order of
//! [`ShardOrder::sequence`] — but the shards arrive from a [`Prefetch`] while
//! training runs and the buffer holds samples in their stored form (packed
//! bits for dSprites), so memory is the buffer plus the prefetched shards,
//! whatever the dataset's size.
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tch::{Device, Kind, Tensor};
use tokio::sync::oneshot;

use crate::data::fetch::Prefetch;
use crate::data::format::{Dataset, Decoder};
use crate::data::sampler::ShardOrder;
use crate::data::variant::Variants;
use crate::data::DataError;
use crate::rng::{self, Stream};
use crate::train::error::{tensor_err, TrainError};

/// One dealt worker's samples of an epoch, in its shuffle-buffer order.
pub struct ShardStream {
    fetch: Prefetch,
    /// The range `[start, end)` of each shard still to arrive, in order,
    /// the split index of the shard's first sample, and the shard.
    pieces: VecDeque<(usize, usize, u64, usize)>,
    /// Shards stored in another form, decoded as they arrive (tars).
    decoder: Option<Arc<dyn Decoder>>,
    /// The split index of the current shard's first sample.
    current_first: u64,
    current: Bytes,
    current_n: usize,
    current_i: usize,
    /// Samples not yet read into the buffer.
    unread: usize,
    /// The buffer: `cap` slots of `stored` bytes, `len` in use.
    slots: Vec<u8>,
    /// Each slot's sample: its index in the split.
    ids: Vec<u64>,
    len: usize,
    cap: usize,
    stored: usize,
    /// The buffer's draws: `(seed, epoch, owner, draw)`, as the sequence's.
    seed: u64,
    epoch: u64,
    owner: usize,
    draw: u64,
}

impl ShardStream {
    /// The stream of dealt worker `owner` of `dealt` in `epoch`, its shards
    /// fetched once `gate` fires (at once without one).
    pub fn new(
        dataset: &Dataset,
        order: &ShardOrder,
        epoch: u64,
        owner: usize,
        dealt: usize,
        gate: Option<oneshot::Receiver<()>>,
    ) -> Result<ShardStream, TrainError> {
        let pieces = order.assignment(epoch, owner, dealt);
        let which: Vec<usize> = pieces.iter().map(|p| p.shard).collect();
        let entries = dataset.shards("train", Some(&which))?;
        let sizes = dataset.split("train")?.shards.iter().map(|s| s.samples);
        let firsts: Vec<u64> = sizes
            .scan(0u64, |acc, n| {
                *acc += n;
                Some(*acc - n)
            })
            .collect();
        let pieces: VecDeque<(usize, usize, u64, usize)> = (pieces.iter())
            .map(|p| {
                (
                    p.start,
                    p.end,
                    firsts.get(p.shard).copied().unwrap_or(0),
                    p.shard,
                )
            })
            .collect();
        let unread = pieces.iter().map(|(a, b, _, _)| b - a).sum();
        let fetch = Prefetch::start(&dataset.store, entries, &dataset.options, gate)?;
        let stored = dataset.manifest.sample_bytes();
        let cap = order.buffer.max(1);
        Ok(ShardStream {
            fetch,
            pieces,
            decoder: dataset.decoder.clone(),
            current: Bytes::new(),
            current_first: 0,
            current_n: 0,
            current_i: 0,
            unread,
            slots: vec![0; cap.min(unread.max(1)) * stored],
            ids: vec![0; cap.min(unread.max(1))],
            len: 0,
            cap,
            stored,
            seed: order.seed,
            epoch,
            owner,
            draw: 0,
        })
    }

    /// Whether every shard has been read.
    pub fn exhausted(&self) -> bool {
        self.unread == 0
    }

    fn pick(&mut self, len: usize) -> usize {
        let counter = (self.owner as u64) << 40 | self.draw;
        self.draw += 1;
        let key = rng::key(self.seed, Stream::ShuffleBuffer, self.epoch, counter);
        rng::below(rng::bits(key, 0), len as u64) as usize
    }

    fn slot(&mut self, i: usize) -> &mut [u8] {
        let s = self.stored;
        if self.slots.len() < (i + 1) * s {
            self.slots.resize((i + 1) * s, 0);
        }
        &mut self.slots[i * s..(i + 1) * s]
    }

    /// Reads the next input sample into slot `i`.
    fn read_into(&mut self, i: usize) -> Result<(), DataError> {
        if self.current_i == self.current_n {
            let (start, end, first, shard) = self.pieces.pop_front().unwrap_or((0, 0, 0, 0));
            self.current_first = first;
            crate::faults::slow_fetch();
            self.current = match self.fetch.next() {
                Some(r) => r?,
                None => {
                    return Err(DataError::Io {
                        url: "(shard stream)".into(),
                        message: "the shard fetcher stopped early".into(),
                    })
                }
            };
            (self.current_n, self.current_i) = (end, start);
            if let Some(d) = &self.decoder {
                // Only the piece's samples, decoded on every core.
                self.current = Bytes::from(d.decode(shard, &self.current, start, end)?);
                (self.current_n, self.current_i) = (end - start, 0);
                self.current_first = first + start as u64;
            }
        }
        let (s, at) = (self.stored, self.current_i * self.stored);
        let sample = self.current.slice(at..at + s);
        self.slot(i).copy_from_slice(&sample);
        if self.ids.len() <= i {
            self.ids.resize(i + 1, 0);
        }
        self.ids[i] = self.current_first + self.current_i as u64;
        self.current_i += 1;
        self.unread -= 1;
        Ok(())
    }

    /// Emits the next sample's stored bytes into `out`, and its index in
    /// the split; `None` at the end.
    pub fn next_into(&mut self, out: &mut [u8]) -> Result<Option<u64>, DataError> {
        while self.len < self.cap && self.unread > 0 {
            self.read_into(self.len)?;
            self.len += 1;
        }
        if self.unread > 0 {
            let j = self.pick(self.len);
            out.copy_from_slice(self.slot(j));
            let id = self.ids[j];
            self.read_into(j)?;
            return Ok(Some(id));
        }
        if self.len == 0 {
            return Ok(None);
        }
        let j = self.pick(self.len);
        let last = self.len - 1;
        out.copy_from_slice(self.slot(j));
        let id = self.ids[j];
        if j != last {
            let s = self.stored;
            self.slots.copy_within(last * s..(last + 1) * s, j * s);
            self.ids[j] = self.ids[last];
        }
        self.len = last;
        Ok(Some(id))
    }
}

/// A `shard`-order epoch on this rank: the streams of the dealt workers whose
/// part of each global batch overlaps this rank's slice of it.
pub struct Streamed {
    pub streams: Vec<ShardStream>,
    /// The dealt worker of `streams[0]`.
    pub first_owner: usize,
    /// Samples per dealt worker and global batch.
    pub dealt_local: usize,
    /// This rank's positions in every global batch.
    pub mine: Range<usize>,
    pub shape: [i64; 3],
    pub packed: bool,
    pub device: Device,
    pub kind: Kind,
    /// A dSprites variant made of each sample, and the epoch (its counter).
    pub variant: Option<(Arc<Variants>, u64)>,
    /// Fired when every shard of the epoch has been read: the next epoch's
    /// shards may start to arrive.
    pub gate: Option<oneshot::Sender<()>>,
}

impl Streamed {
    /// This rank's samples of the next global batch, as pixels in [0, 1]
    /// `[b, C, H, W]` (or only advances, when `skip`).
    pub fn batch(&mut self, skip: bool) -> Result<Option<Tensor>, TrainError> {
        let pixels = self.shape.iter().product::<i64>() as usize;
        let local = self.mine.len();
        let mut images = vec![0u8; if skip { 0 } else { local * pixels }];
        let stored_len = self.streams.first().map_or(0, |s| s.stored);
        let mut stored = vec![0u8; stored_len];
        let mut ids = vec![0u64; local];
        for (k, s) in self.streams.iter_mut().enumerate() {
            let base = (self.first_owner + k) * self.dealt_local;
            for j in 0..self.dealt_local {
                let p = base + j;
                let Some(id) = s.next_into(&mut stored)? else {
                    return Ok(None);
                };
                if !skip && self.mine.contains(&p) {
                    let at = (p - self.mine.start) * pixels;
                    decode(&stored, &mut images[at..at + pixels], self.packed);
                    ids[p - self.mine.start] = id;
                }
            }
        }
        if self.streams.iter().all(ShardStream::exhausted) {
            if let Some(g) = self.gate.take() {
                let _ = g.send(());
            }
        }
        if skip {
            return Ok(Some(Tensor::new()));
        }
        let [c, h, w] = self.shape;
        if let Some((v, epoch)) = &self.variant {
            let dk = (self.device, self.kind);
            return super::variant::made(v, &images, (h, w), &ids, *epoch, dk).map(Some);
        }
        let x = Tensor::from_slice(&images)
            .f_view([local as i64, c, h, w])
            .and_then(|t| t.f_to_device(self.device))
            .map_err(tensor_err("a batch onto the device"))?;
        Ok(Some(x.to_kind(self.kind) / 255.0))
    }
}

/// One stored image into one byte per pixel (packed bits: 0 or 255).
fn decode(stored: &[u8], out: &mut [u8], packed: bool) {
    if packed {
        for (p, o) in out.iter_mut().enumerate() {
            *o = if stored[p / 8] & (0x80 >> (p % 8)) != 0 {
                255
            } else {
                0
            };
        }
    } else {
        out.copy_from_slice(stored);
    }
}
