//! [`Draw`]: the counter-based random integers of one metric run (factor
//! combinations and which factor a vote fixes).
use crate::rng::{self, Stream};

/// A counter-based source of random integers for one metric run.
pub struct Draw {
    seed: u64,
    counter: u64,
}

impl Draw {
    /// The stream of a metric: `which` keeps the metrics' draws apart.
    pub fn new(seed: u64, which: u64) -> Draw {
        Draw {
            seed,
            counter: which << 40,
        }
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.counter += 1;
        rng::below(
            rng::bits(rng::key(self.seed, Stream::Metrics, 0, self.counter), 0),
            n as u64,
        ) as usize
    }
    pub fn factors(&mut self, sizes: &[usize]) -> Vec<usize> {
        sizes.iter().map(|&s| self.below(s)).collect()
    }

    /// Which of `n` factors a vote or a point fixes.
    pub fn factor_index(&mut self, n: usize) -> usize {
        let k = self.below(n);
        crate::faults::draws::pick(k);
        k
    }
}
