//! What every metric reads: data with known factors and a representation
//! of it ([`GroundTruth`]), how many samples ([`Budget`]), and the codes of
//! factors drawn at random ([`codes_and_factors`]).
use super::draw::Draw;
use super::stats::rows_f64;

/// Data with known factors, and a representation of it.
pub trait GroundTruth {
    /// Number of values of each factor.
    fn factor_sizes(&self) -> Vec<usize>;
    /// Representations `[n, d]` (row-major) of the observations with the given
    /// factor indices (each `factor_sizes().len()` long).
    fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>>;
    /// The representations of each batch of factor combinations — as many
    /// calls of [`GroundTruth::represent`], but encoded together.
    fn represent_batches(&mut self, batches: &[Vec<Vec<usize>>]) -> Vec<Vec<Vec<f32>>> {
        let all: Vec<Vec<usize>> = batches.iter().flatten().cloned().collect();
        let mut reps = self.represent(&all).into_iter();
        batches
            .iter()
            .map(|b| reps.by_ref().take(b.len()).collect())
            .collect()
    }
    /// Sampled representations `μ + σ·ε` (disentanglement_lib's "sampled"
    /// representation) of the observations, `ε` from `seed`'s metric noise;
    /// a representation with no noise gives [`GroundTruth::represent`].
    fn represent_sampled(&mut self, factors: &[Vec<usize>], _seed: u64) -> Vec<Vec<f32>> {
        self.represent(factors)
    }
}

/// Sample counts, as disentanglement_lib's defaults times `scale`.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub scale: f64,
}

impl Budget {
    pub fn n(&self, full: usize) -> usize {
        ((full as f64 * self.scale).round() as usize).max(10)
    }
}

/// A metric's named values.
pub type Values = Vec<(String, f64)>;

/// `n` samples of factors drawn from stream `which`, and their codes:
/// `(codes [dims][samples], factors [factors][samples])`, as
/// disentanglement_lib's `generate_batch_factor_code` returns them.
pub fn codes_and_factors(
    gt: &mut dyn GroundTruth,
    n: usize,
    seed: u64,
    which: u64,
) -> (Vec<Vec<f64>>, Vec<Vec<usize>>) {
    drawn_codes(gt, n, seed, which, false)
}

/// [`codes_and_factors`] of the mean (`sampled` false) or the sampled
/// representation.
pub fn drawn_codes(
    gt: &mut dyn GroundTruth,
    n: usize,
    seed: u64,
    which: u64,
    sampled: bool,
) -> (Vec<Vec<f64>>, Vec<Vec<usize>>) {
    let sizes = gt.factor_sizes();
    let mut draw = Draw::new(seed, which);
    let factors: Vec<Vec<usize>> = (0..n).map(|_| draw.factors(&sizes)).collect();
    let reps = rows_f64(if sampled {
        gt.represent_sampled(&factors, seed)
    } else {
        gt.represent(&factors)
    });
    let d = reps.first().map_or(0, |r| r.len());
    let codes = (0..d)
        .map(|j| reps.iter().map(|r| r[j]).collect())
        .collect();
    let ys = (0..sizes.len())
        .map(|k| factors.iter().map(|f| f[k]).collect())
        .collect();
    (codes, ys)
}
