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
    /// Noise of the metrics' sampled representation: counter = 0, index = row.
    SampledCodes = 10,
    /// Importance samples of `eval --iwae`: counter = sample k, index = test sample index.
    Iwae = 11,
    /// The metrics' nuisance factors (SmallNORB's instance): counter = batch, index = row.
    Nuisance = 12,
    /// dSprites' variants (`data.variant`): counter = epoch (training), index = sample.
    Variant = 13,
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

/// [`normals`] computed by tensor ops on `device`, `[rows.len(), dims]`
/// float: on a GPU the noise is made where it is used, with no host-to-device
/// copy. The integer hashing is exact (64-bit wrapping arithmetic, as on the
/// host); `ln`, `sqrt` and `cos` are the device's, so values equal the host's
/// up to float rounding.
pub fn normals_on(
    seed: u64,
    stream: Stream,
    counter: u64,
    rows: std::ops::Range<u64>,
    dims: usize,
    device: tch::Device,
) -> tch::Tensor {
    use tch::{Kind, Tensor};
    let n = (rows.end - rows.start) as i64;
    let prefix = mix(mix(mix(seed) ^ stream as u64) ^ counter);
    let index = Tensor::arange_start(rows.start as i64, rows.end as i64, (Kind::Int64, device));
    let keys = mix_tensor(&index.bitwise_xor(prefix as i64)).unsqueeze(1);
    let j = Tensor::arange(2 * dims as i64, (Kind::Int64, device)).unsqueeze(0);
    let bits = mix_tensor(&(keys + (j + 1) * GOLDEN as i64));
    let unit = (shift_right(&bits, 11).to_kind(Kind::Double) + 0.5) * (1.0 / (1u64 << 53) as f64);
    let unit = unit.view([n, dims as i64, 2]);
    let (u1, u2) = (unit.select(2, 0), unit.select(2, 1));
    ((u1.log() * -2.0).sqrt() * (u2 * std::f64::consts::TAU).cos()).to_kind(Kind::Float)
}

/// Logical right shift of 64-bit integers held in an int64 tensor.
fn shift_right(x: &tch::Tensor, k: i64) -> tch::Tensor {
    x.bitwise_right_shift_tensor_scalar(k)
        .bitwise_and(((1u64 << (64 - k)) - 1) as i64)
}

/// [`mix`] over an int64 tensor (two's complement: wrapping like `u64`).
fn mix_tensor(z: &tch::Tensor) -> tch::Tensor {
    let z = (z.bitwise_xor_tensor(&shift_right(z, 30))) * 0xBF58_476D_1CE4_E5B9u64 as i64;
    let z = (z.bitwise_xor_tensor(&shift_right(&z, 27))) * 0x94D0_49BB_1331_11EBu64 as i64;
    z.bitwise_xor_tensor(&shift_right(&z, 31))
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
    fn noise_made_by_tensor_ops_equals_the_hosts() {
        let host = normals(5, Stream::TrainNoise, 77, 100..612, 20);
        let dev = normals_on(5, Stream::TrainNoise, 77, 100..612, 20, tch::Device::Cpu);
        assert_eq!(dev.size(), [512, 20]);
        let dev = Vec::<f32>::try_from(dev.flatten(0, -1)).unwrap_or_default();
        assert_eq!(dev.len(), host.len());
        let mut same = 0;
        for (a, b) in host.iter().zip(&dev) {
            assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
            same += usize::from(a == b);
        }
        // Float rounding of ln/cos may move a value by one ulp, rarely.
        assert!(
            same * 1000 >= host.len() * 999,
            "{same} of {} equal",
            host.len()
        );
    }

    #[test]
    fn rows_do_not_depend_on_the_range_they_are_drawn_in() {
        let all = normals(1, Stream::TrainNoise, 9, 0..8, 3);
        let tail = normals(1, Stream::TrainNoise, 9, 4..8, 3);
        assert_eq!(&all[12..], &tail[..]);
    }
}
