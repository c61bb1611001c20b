//! `shard` order, streamed. Each dealt worker's samples of an epoch (ranges
//! of shards: a whole shard is fetched and verified, its range read) come
//! out through a shuffle buffer, in exactly the order of
//! [`ShardOrder::sequence`] — but the shards arrive ([`Arrivals`]: fetched,
//! and decoded when stored as tars) while training runs and the buffer holds
//! samples in their stored form (packed bits for dSprites), so memory is the
//! buffer plus the prefetched shards, whatever the dataset's size. A sample
//! that does not decode is skipped and counted; a worker left short of the
//! epoch's steps by skipped samples reads its pieces again.
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tch::{Device, Kind, Tensor};
use tokio::sync::oneshot;

use super::arrivals::{Arrivals, Source, Span};
use crate::data::format::Dataset;
use crate::data::sampler::ShardOrder;
use crate::data::variant::Variants;
use crate::data::DataError;
use crate::rng::{self, Stream};
use crate::train::error::{tensor_err, TrainError};

/// One dealt worker's samples of an epoch, in its shuffle-buffer order.
pub struct ShardStream {
    /// The worker's pieces, to fetch again if skipped samples leave it
    /// short of the epoch's steps.
    source: Source,
    arrivals: Arrivals,
    /// The split index of the current piece's first sample.
    current_first: u64,
    current: Bytes,
    /// The current piece's samples' positions in it (decoded pieces).
    kept: Option<Vec<u32>>,
    current_n: usize,
    current_i: usize,
    /// Samples not yet read into the buffer (of this pass).
    unread: usize,
    /// Samples read into the buffer in this pass, and passes begun.
    read: usize,
    passes: u32,
    /// Samples the epoch's steps take from this worker, and those emitted.
    needed: usize,
    emitted: usize,
    /// Samples skipped this epoch because they do not decode (in the first
    /// pass: each counted once).
    pub skipped: u64,
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
        let sizes = dataset.split("train")?.shards.iter().map(|s| s.samples);
        let firsts: Vec<u64> = sizes
            .scan(0u64, |acc, n| {
                *acc += n;
                Some(*acc - n)
            })
            .collect();
        let spans = (order.assignment(epoch, owner, dealt).iter())
            .map(|p| Span {
                start: p.start,
                end: p.end,
                first: firsts.get(p.shard).copied().unwrap_or(0),
                shard: p.shard,
            })
            .collect();
        let source = Source::new(dataset, spans)?;
        let unread = source.samples();
        let arrivals = source.start(gate)?;
        let stored = dataset.manifest.sample_bytes();
        let cap = order.buffer.max(1);
        let needed = order.steps_per_epoch(epoch, dealt) as usize * (order.batch / dealt.max(1));
        Ok(ShardStream {
            source,
            arrivals,
            current: Bytes::new(),
            kept: None,
            current_first: 0,
            current_n: 0,
            current_i: 0,
            unread,
            read: 0,
            passes: 1,
            needed,
            emitted: 0,
            skipped: 0,
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

    /// Takes the next piece; its samples that did not decode are skipped.
    fn next_piece(&mut self) -> Result<(), DataError> {
        crate::faults::slow_fetch();
        let a = match self.arrivals.next() {
            Some(r) => r?,
            None => {
                return Err(DataError::Io {
                    url: "(shard stream)".into(),
                    message: "the shard fetcher stopped early".into(),
                })
            }
        };
        let Span {
            start, end, first, ..
        } = a.span;
        self.current = a.bytes;
        (self.current_first, self.current_i, self.current_n) = (first, start, end);
        self.kept = a.kept;
        if let Some(kept) = &self.kept {
            let skipped = (end - start).saturating_sub(kept.len());
            self.unread -= skipped.min(self.unread);
            if self.passes == 1 {
                self.skipped += skipped as u64;
            }
            (self.current_first, self.current_i) = (first + start as u64, 0);
            self.current_n = kept.len();
        }
        Ok(())
    }

    /// Reads the next input sample into slot `i`: `false` when none is
    /// left (the rest of the pass did not decode).
    fn read_into(&mut self, i: usize) -> Result<bool, DataError> {
        while self.current_i == self.current_n {
            if self.unread == 0 {
                return Ok(false);
            }
            self.next_piece()?;
        }
        let (s, at) = (self.stored, self.current_i * self.stored);
        let sample = self.current.slice(at..at + s);
        self.slot(i).copy_from_slice(&sample);
        if self.ids.len() <= i {
            self.ids.resize(i + 1, 0);
        }
        let k = self.kept.as_ref();
        let position = k.map_or(self.current_i as u64, |k| u64::from(k[self.current_i]));
        self.ids[i] = self.current_first + position;
        self.current_i += 1;
        self.unread -= 1;
        self.read += 1;
        Ok(true)
    }

    /// When skipped samples leave this worker short of the epoch's steps,
    /// its pieces are read again, in the same order (a fixed function of
    /// the deal, whichever rank reads them).
    fn refill(&mut self) -> Result<(), DataError> {
        if self.unread > 0 || self.emitted + self.len >= self.needed || self.skipped == 0 {
            return Ok(());
        }
        if self.read == 0 {
            return Err(DataError::Io {
                url: "(shard stream)".into(),
                message: format!(
                    "no sample of dealt worker {}'s share decodes in epoch {}",
                    self.owner, self.epoch
                ),
            });
        }
        self.arrivals = self.source.start(None)?;
        (self.unread, self.read) = (self.source.samples(), 0);
        self.current_i = self.current_n;
        self.passes += 1;
        Ok(())
    }

    /// Fills the buffer from the input.
    fn fill(&mut self) -> Result<(), DataError> {
        while self.len < self.cap && self.unread > 0 {
            if self.read_into(self.len)? {
                self.len += 1;
            }
        }
        Ok(())
    }

    /// Emits the next sample's stored bytes into `out`, and its index in
    /// the split; `None` at the end.
    pub fn next_into(&mut self, out: &mut [u8]) -> Result<Option<u64>, DataError> {
        self.refill()?;
        self.fill()?;
        if self.len == 0 {
            // The rest of the pass did not decode: perhaps another pass.
            self.refill()?;
            self.fill()?;
        }
        if self.len == 0 {
            return Ok(None);
        }
        let j = self.pick(self.len);
        out.copy_from_slice(self.slot(j));
        let id = self.ids[j];
        self.emitted += 1;
        if self.unread > 0 && self.read_into(j)? {
            return Ok(Some(id));
        }
        let last = self.len - 1;
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
    /// Samples skipped this epoch (they do not decode) by the dealt workers
    /// whose part of each global batch starts in this rank's slice: summed
    /// over ranks, each worker counted once.
    pub fn skipped(&self) -> u64 {
        let here = |k: usize| counted_here(self.first_owner + k, self.dealt_local, &self.mine);
        (self.streams.iter().enumerate())
            .filter(|(k, _)| here(*k))
            .map(|(_, s)| s.skipped)
            .sum()
    }

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

/// Whether dealt worker `owner`'s count is this rank's, whose slice of each
/// global batch is `mine`: the rank where the worker's part begins.
fn counted_here(owner: usize, dealt_local: usize, mine: &Range<usize>) -> bool {
    mine.contains(&(owner * dealt_local))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::format::{DatasetWriter, Decoded, Decoder, SplitData};
    use crate::data::store::{StorageOptions, Store};

    /// Samples of one byte, their index in the split; a "decode" that
    /// drops those listed.
    struct Dropping(Vec<u8>);

    impl Decoder for Dropping {
        fn decode(
            &self,
            _: usize,
            b: &[u8],
            start: usize,
            end: usize,
        ) -> Result<Decoded, DataError> {
            let kept: Vec<u32> = (start..end)
                .filter(|&p| !self.0.contains(&b[p]))
                .map(|p| (p - start) as u32)
                .collect();
            let samples = kept.iter().map(|&k| b[start + k as usize]).collect();
            Ok(Decoded { samples, kept })
        }
        fn test(&self) -> SplitData {
            SplitData {
                images: Vec::new(),
                targets: Vec::new(),
                n: 0,
            }
        }
    }

    /// Every dealt worker's emitted samples (as split indices) of epoch 0:
    /// 30 samples in shards of 7, 2 workers of 4 per batch of 8 (3 steps).
    fn emitted(dir: &std::path::Path, drop: Vec<u8>) -> Result<Vec<(Vec<u64>, u64)>, DataError> {
        let opts = StorageOptions::default();
        let store = Store::open(&dir.display().to_string(), &opts)?;
        let images: Vec<u8> = (0..30).collect();
        let data = SplitData {
            images,
            targets: Vec::new(),
            n: 30,
        };
        let w = DatasetWriter {
            name: "bytes",
            sample_shape: [1, 1, 1],
            targets: Vec::new(),
            shard_samples: 7,
        };
        w.write(&store, &[("train", &data)])?;
        let mut dataset = Dataset::open(&dir.display().to_string(), &opts)?;
        dataset.decoder = Some(Arc::new(Dropping(drop)));
        let order = ShardOrder {
            shard_sizes: vec![7, 7, 7, 7, 2],
            batch: 8,
            seed: 3,
            buffer: 5,
        };
        let mut out = Vec::new();
        for owner in 0..2 {
            let mut s = ShardStream::new(&dataset, &order, 0, owner, 2, None).map_err(|e| {
                DataError::Io {
                    url: String::new(),
                    message: e.to_string(),
                }
            })?;
            let mut ids = Vec::new();
            let mut byte = [0u8];
            for _ in 0..12 {
                match s.next_into(&mut byte)? {
                    Some(id) => {
                        assert_eq!(u64::from(byte[0]), id);
                        ids.push(id);
                    }
                    None => panic!("worker {owner} ended after {} samples", ids.len()),
                }
            }
            out.push((ids, s.skipped));
        }
        Ok(out)
    }

    #[test]
    fn each_dealt_worker_is_counted_on_one_rank_whatever_the_world() {
        let batch = 16;
        for world in [1, 2, 4, 8, 16] {
            for dealt in [1, 2, 4, 8, 16] {
                let (l0, local) = (batch / dealt, batch / world);
                let mut counted = vec![0; dealt];
                for rank in 0..world {
                    // The streams a rank holds (`source::streams`).
                    let owners = rank * local / l0..=((rank + 1) * local - 1) / l0;
                    let mine = rank * local..(rank + 1) * local;
                    for o in owners.filter(|&o| counted_here(o, l0, &mine)) {
                        counted[o] += 1;
                    }
                }
                assert_eq!(counted, vec![1; dealt], "{world} ranks, {dealt} dealt");
            }
        }
    }

    #[test]
    fn samples_that_do_not_decode_are_skipped_counted_and_made_up_for() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing dropped: the order of the sequence the deal defines.
        let order = ShardOrder {
            shard_sizes: vec![7, 7, 7, 7, 2],
            batch: 8,
            seed: 3,
            buffer: 5,
        };
        let firsts = [0u64, 7, 14, 21, 28];
        for (owner, (ids, skipped)) in emitted(dir.path(), vec![]).unwrap().into_iter().enumerate()
        {
            let split: Vec<u64> = (order.assignment(0, owner, 2).iter())
                .flat_map(|p| (p.start..p.end).map(move |k| firsts[p.shard] + k as u64))
                .collect();
            let seq = order.sequence(0, owner, 2);
            let want: Vec<u64> = seq[..12].iter().map(|&p| split[p as usize]).collect();
            assert_eq!((ids, skipped), (want, 0));
        }
        // A whole shard (7 samples) dropped: one worker loses at least 4 of
        // its 15 and reads its pieces again to make its 12.
        let dir = tempfile::tempdir().unwrap();
        let drop: Vec<u8> = (7..14).collect();
        let got = emitted(dir.path(), drop.clone()).unwrap();
        assert_eq!(got.iter().map(|g| g.1).sum::<u64>(), 7);
        for (ids, _) in &got {
            assert!(ids.iter().all(|&i| !drop.contains(&(i as u8))), "{ids:?}");
        }
        assert!(
            got.iter().any(|(ids, _)| {
                let mut u = ids.clone();
                u.sort();
                u.dedup();
                u.len() < ids.len()
            }),
            "no worker read its samples again: {got:?}"
        );
        assert_eq!(
            emitted(tempfile::tempdir().unwrap().path(), drop).unwrap(),
            got
        );
        // Nothing decodes: one line naming the worker.
        let dir = tempfile::tempdir().unwrap();
        let err = emitted(dir.path(), (0..30).collect())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no sample of dealt worker 0's share decodes"),
            "{err}"
        );
    }
}
