//! The order in which training samples are visited. `global` order: one
//! permutation of all samples per epoch, a pure function of `(seed, epoch)`; the
//! global batch `b` is `perm[b·B .. (b+1)·B]` and rank `r` of `W` takes the
//! contiguous slice `[r·B/W, (r+1)·B/W)` of it, so what is trained does not
//! depend on the number of workers. The remainder `n mod B` is dropped.
use crate::rng::{self, Stream};

#[derive(Clone, Debug)]
pub struct GlobalOrder {
    pub n: usize,
    pub batch: usize,
    pub seed: u64,
}

impl GlobalOrder {
    pub fn steps_per_epoch(&self) -> u64 {
        (self.n / self.batch) as u64
    }

    /// The permutation of `0..n` for `epoch` (Fisher–Yates on counter-based bits).
    pub fn permutation(&self, epoch: u64) -> Vec<u32> {
        let mut perm: Vec<u32> = (0..self.n as u32).collect();
        for i in (1..self.n).rev() {
            let b = rng::bits(rng::key(self.seed, Stream::Permutation, epoch, i as u64), 0);
            let j = rng::below(b, i as u64 + 1) as usize;
            perm.swap(i, j);
        }
        perm
    }

    /// Positions `[start, end)` within a global batch that `rank` of `world` takes.
    pub fn slice(&self, rank: usize, world: usize) -> std::ops::Range<usize> {
        let per = self.batch / world;
        rank * per..(rank + 1) * per
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_changes_per_epoch() {
        let o = GlobalOrder {
            n: 1000,
            batch: 10,
            seed: 3,
        };
        let p0 = o.permutation(0);
        let mut s = p0.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
        assert_ne!(p0, o.permutation(1));
        assert_eq!(p0, o.permutation(0));
    }

    #[test]
    fn slices_tile_the_global_batch() {
        let o = GlobalOrder {
            n: 100,
            batch: 12,
            seed: 0,
        };
        for world in [1, 2, 3, 4] {
            let mut covered = vec![];
            for r in 0..world {
                covered.extend(o.slice(r, world));
            }
            assert_eq!(covered, (0..12).collect::<Vec<_>>());
        }
    }
}

/// `shard` order: per epoch, the training shards are permuted (from
/// `(seed, epoch)`) and their samples, in that order, dealt to the dealt
/// workers as contiguous ranges of equal size (give or take one): worker
/// `w` of `D` takes samples `[w·N/D, (w+1)·N/D)` of the concatenation, so
/// any number of workers shares any number of shards (one shard among 8
/// workers: each reads an eighth of it), reads stay sequential, and the
/// deal is a function of `(seed, epoch, D)` alone. Each worker streams its
/// ranges through a shuffle buffer of `buffer` samples. Every worker runs
/// the same number of steps: the fewest its samples allow.
#[derive(Clone, Debug)]
pub struct ShardOrder {
    pub shard_sizes: Vec<usize>,
    /// The global batch.
    pub batch: usize,
    pub seed: u64,
    pub buffer: usize,
}

/// A contiguous range `[start, end)` of the samples of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub shard: usize,
    pub start: usize,
    pub end: usize,
}

impl ShardOrder {
    /// The shards in the order `epoch` reads them.
    fn permutation(&self, epoch: u64) -> Vec<usize> {
        let n = self.shard_sizes.len();
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let b = rng::bits(
                rng::key(self.seed, Stream::ShardPermutation, epoch, i as u64),
                0,
            );
            perm.swap(i, rng::below(b, i as u64 + 1) as usize);
        }
        perm
    }

    /// The ranges of shards `rank` of `world` dealt workers reads in
    /// `epoch`, in the order it reads them.
    pub fn assignment(&self, epoch: u64, rank: usize, world: usize) -> Vec<Piece> {
        let total: usize = self.shard_sizes.iter().sum();
        let world = world.max(1);
        let (lo, hi) = (total * rank / world, total * (rank + 1) / world);
        let mut at = 0;
        let mut out = Vec::new();
        for shard in self.permutation(epoch) {
            let size = self.shard_sizes[shard];
            let (start, end) = (lo.max(at), hi.min(at + size));
            if start < end {
                out.push(Piece {
                    shard,
                    start: start - at,
                    end: end - at,
                });
            }
            at += size;
        }
        out
    }

    /// Samples `rank` holds in `epoch`.
    pub fn samples(&self, epoch: u64, rank: usize, world: usize) -> usize {
        self.assignment(epoch, rank, world)
            .iter()
            .map(|p| p.end - p.start)
            .sum()
    }

    /// Steps of `epoch`, the same on every rank.
    pub fn steps_per_epoch(&self, epoch: u64, world: usize) -> u64 {
        let local = (self.batch / world).max(1);
        (0..world)
            .map(|r| self.samples(epoch, r, world) / local)
            .min()
            .unwrap_or(0) as u64
    }

    /// The order in which `rank` visits its samples in `epoch`, as positions
    /// in the concatenation of its shards (in [`ShardOrder::assignment`] order).
    pub fn sequence(&self, epoch: u64, rank: usize, world: usize) -> Vec<u32> {
        let n = self.samples(epoch, rank, world);
        let cap = self.buffer.max(1);
        let mut buf: Vec<u32> = Vec::with_capacity(cap);
        let mut out = Vec::with_capacity(n);
        let mut draw = 0u64;
        let mut pick = |len: usize| {
            let counter = (rank as u64) << 40 | draw;
            draw += 1;
            rng::below(
                rng::bits(
                    rng::key(self.seed, Stream::ShuffleBuffer, epoch, counter),
                    0,
                ),
                len as u64,
            ) as usize
        };
        for i in 0..n as u32 {
            if buf.len() < cap {
                buf.push(i);
                continue;
            }
            let j = pick(buf.len());
            out.push(buf[j]);
            buf[j] = i;
        }
        while !buf.is_empty() {
            let j = pick(buf.len());
            out.push(buf.swap_remove(j));
        }
        out
    }
}

#[cfg(test)]
mod assignment_tests {
    use super::*;
    use std::collections::HashSet;

    /// Over one epoch, what all ranks train on: (samples seen, samples dropped).
    fn global_epoch(n: usize, batch: usize, world: usize) -> (Vec<u32>, usize) {
        let o = GlobalOrder { n, batch, seed: 5 };
        let perm = o.permutation(0);
        let mut seen = vec![];
        for b in 0..o.steps_per_epoch() as usize {
            for r in 0..world {
                let s = o.slice(r, world);
                seen.extend_from_slice(&perm[b * batch + s.start..b * batch + s.end]);
            }
        }
        (seen, n % batch)
    }

    fn shard_epoch(sizes: &[usize], batch: usize, world: usize) -> (Vec<u32>, usize) {
        let o = ShardOrder {
            shard_sizes: sizes.to_vec(),
            batch,
            seed: 5,
            buffer: 37,
        };
        let starts: Vec<usize> = sizes
            .iter()
            .scan(0, |acc, s| {
                let a = *acc;
                *acc += s;
                Some(a)
            })
            .collect();
        let steps = o.steps_per_epoch(0, world) as usize;
        let local = batch / world;
        let mut seen = vec![];
        for r in 0..world {
            // Map local positions back to dataset indices.
            let mut global = vec![];
            for p in o.assignment(0, r, world) {
                let at = starts[p.shard];
                global.extend((at + p.start..at + p.end).map(|i| i as u32));
            }
            let seq = o.sequence(0, r, world);
            seen.extend(seq[..steps * local].iter().map(|&p| global[p as usize]));
        }
        let total: usize = sizes.iter().sum();
        (seen.clone(), total - seen.len())
    }

    fn check(seen: &[u32], dropped: usize, total: usize, max_dropped: usize) {
        let set: HashSet<u32> = seen.iter().copied().collect();
        assert_eq!(set.len(), seen.len(), "a sample was seen twice");
        assert!(set.iter().all(|&i| (i as usize) < total));
        assert_eq!(seen.len() + dropped, total);
        assert!(dropped <= max_dropped, "dropped {dropped} > {max_dropped}");
    }

    #[test]
    fn global_order_sees_every_sample_once_with_1_2_3_ranks() {
        for world in [1, 2, 3] {
            let (n, batch) = (1000, 12);
            let (seen, dropped) = global_epoch(n, batch, world);
            check(&seen, dropped, n, batch - 1);
        }
    }

    #[test]
    fn shard_order_sees_every_sample_once_on_any_number_of_ranks_and_shards() {
        // One shard and five, on 1, 2, 3 and 8 ranks: no sample twice, and
        // what is left out is less than a global batch plus a sample per rank.
        for sizes in [vec![400], vec![100, 100, 100, 100, 57]] {
            let total: usize = sizes.iter().sum();
            for world in [1, 2, 3, 8] {
                let batch = 24;
                let (seen, dropped) = shard_epoch(&sizes, batch, world);
                check(&seen, dropped, total, batch + world);
                let o = ShardOrder {
                    shard_sizes: sizes.clone(),
                    batch,
                    seed: 5,
                    buffer: 37,
                };
                let n: Vec<usize> = (0..world).map(|r| o.samples(0, r, world)).collect();
                assert!(
                    n.iter().max().unwrap() - n.iter().min().unwrap() <= 1,
                    "{n:?}"
                );
            }
        }
    }

    #[test]
    fn a_deal_is_contiguous_ranges_of_the_shards_in_their_epoch_order() {
        let o = ShardOrder {
            shard_sizes: vec![10, 10, 10],
            batch: 4,
            seed: 2,
            buffer: 4,
        };
        let perm = o.permutation(0);
        let all: Vec<Piece> = (0..4).flat_map(|r| o.assignment(0, r, 4)).collect();
        // Worker 0: the first 7 of the first shard; worker 1: its last 3 and
        // 4 of the second; and so on.
        assert_eq!(
            all[0],
            Piece {
                shard: perm[0],
                start: 0,
                end: 7
            }
        );
        assert_eq!(
            all[1],
            Piece {
                shard: perm[0],
                start: 7,
                end: 10
            }
        );
        assert_eq!(
            all[2],
            Piece {
                shard: perm[1],
                start: 0,
                end: 5
            }
        );
        let covered: usize = all.iter().map(|p| p.end - p.start).sum();
        assert_eq!(covered, 30);
    }

    #[test]
    fn shard_sequence_is_a_permutation_and_deterministic() {
        let o = ShardOrder {
            shard_sizes: vec![50, 50, 50],
            batch: 10,
            seed: 1,
            buffer: 16,
        };
        let s = o.sequence(3, 0, 1);
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(sorted, (0..150).collect::<Vec<u32>>());
        assert_eq!(s, o.sequence(3, 0, 1));
        assert_ne!(s, o.sequence(4, 0, 1));
    }
}
