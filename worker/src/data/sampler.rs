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
