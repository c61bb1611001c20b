//! Counter-based randomness: every random number is a pure function of
//! `(seed, stream, counter, index)`, so data order and reparameterisation noise
//! do not depend on the number of workers or on how a run was interrupted, and
//! the "RNG position" in a checkpoint is just the step. The hash is SplitMix64's
//! finaliser; normals come from Box–Muller. `scripts/noise.py` is the same
//! function in NumPy, for reference checks from Python.

/// Streams keep the uses of randomness apart.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Stream {
    /// Per-epoch permutation of the training samples.
    Permutation = 1,
    /// Reparameterisation noise in training: counter = step, index = position in the global batch.
    TrainNoise = 2,
    /// Reparameterisation noise in evaluation: counter = 0, index = test sample index.
    EvalNoise = 3,
    /// Latent codes of the prior-sample image grid.
    Prior = 4,
    /// Per-epoch permutation of the shards (`shard` order).
    ShardPermutation = 5,
    /// Draws of the shuffle buffer (`shard` order).
    ShuffleBuffer = 6,
    /// FactorVAE's dimension-wise permutations: counter = step.
    PermuteDims = 7,
    /// Reparameterisation noise of FactorVAE's second batch: counter = step.
    SecondBatchNoise = 8,
    /// Disentanglement metrics: which factors, votes and samples.
    Metrics = 9,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijective mixing of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of one random record.
pub fn key(seed: u64, stream: Stream, counter: u64, index: u64) -> u64 {
    mix(mix(mix(mix(seed) ^ stream as u64) ^ counter) ^ index)
}

/// The `j`-th 64 random bits of record `key`.
pub fn bits(key: u64, j: u64) -> u64 {
    mix(key.wrapping_add(j.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// A uniform double in (0, 1) from 64 bits.
fn unit(b: u64) -> f64 {
    ((b >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// The `d`-th standard normal of record `key` (Box–Muller on bits 2d, 2d+1).
pub fn normal(key: u64, d: u64) -> f32 {
    let u1 = unit(bits(key, 2 * d));
    let u2 = unit(bits(key, 2 * d + 1));
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// `[rows.len(), dims]` standard normals, row `i` from record
/// `key(seed, stream, counter, rows[i])`, row-major.
pub fn normals(
    seed: u64,
    stream: Stream,
    counter: u64,
    rows: std::ops::Range<u64>,
    dims: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity((rows.end - rows.start) as usize * dims);
    for r in rows {
        let k = key(seed, stream, counter, r);
        out.extend((0..dims as u64).map(|d| normal(k, d)));
    }
    out
}

/// A uniform integer in `0..n` from 64 bits (multiply-shift).
pub fn below(b: u64, n: u64) -> u64 {
    ((b as u128 * n as u128) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_unit_moments() {
        let v = normals(7, Stream::TrainNoise, 3, 0..20_000, 5);
        let n = v.len() as f64;
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
        let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }

    #[test]
    fn rows_do_not_depend_on_the_range_they_are_drawn_in() {
        let all = normals(1, Stream::TrainNoise, 9, 0..8, 3);
        let tail = normals(1, Stream::TrainNoise, 9, 4..8, 3);
        assert_eq!(&all[12..], &tail[..]);
    }
}
