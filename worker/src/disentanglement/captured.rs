//! Which factor each code dimension captures — the row labels of a latent
//! traversal: for each dimension, the factor it shares the most mutual
//! information with (nats; codes discretised as MIG does), and that
//! information's share of the factor's entropy; a dimension whose share is
//! under [`FLOOR`] captures none.
use super::ground_truth::{codes_and_factors, Budget, GroundTruth};
use super::mig::{discretize, mutual_info, BINS};

/// Below this share of a factor's entropy a dimension captures no factor.
pub const FLOOR: f64 = 0.1;

/// A code dimension and the factor it captures.
#[derive(Clone, Debug, PartialEq)]
pub struct Captured {
    pub dim: usize,
    /// Index among the scored factors.
    pub factor: usize,
    /// The mutual information over the factor's entropy, in [0, 1].
    pub share: f64,
}

/// Per code dimension of `gt`'s representation, over 10,000 samples (drawn
/// from a stream of their own), the factor it captures, if any.
pub fn captured(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> Vec<Option<Captured>> {
    let (codes, ys) = codes_and_factors(gt, budget.n(10_000), seed, 13);
    of_codes(&codes, &ys)
}

/// [`captured`] of codes `[dims][samples]` and factors `[factors][samples]`.
pub fn of_codes(codes: &[Vec<f64>], ys: &[Vec<usize>]) -> Vec<Option<Captured>> {
    let entropy: Vec<f64> = ys.iter().map(|y| mutual_info(y, y)).collect();
    codes
        .iter()
        .enumerate()
        .map(|(dim, c)| {
            let c = discretize(c, BINS);
            let shares = ys.iter().zip(&entropy).map(|(y, h)| match *h > 0.0 {
                true => mutual_info(y, &c) / h,
                false => 0.0,
            });
            let (factor, share) =
                shares.enumerate().fold(
                    (0, f64::NEG_INFINITY),
                    |b, (k, s)| if s > b.1 { (k, s) } else { b },
                );
            (share >= FLOOR).then_some(Captured { dim, factor, share })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dimension_that_follows_a_factor_captures_it_and_noise_captures_none() {
        let n = 2000;
        let y0: Vec<usize> = (0..n).map(|i| i % 5).collect();
        let y1: Vec<usize> = (0..n).map(|i| (i / 5) % 4).collect();
        let follows: Vec<f64> = y1.iter().map(|&v| v as f64 * 2.0).collect();
        let noise: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64).collect();
        let got = of_codes(&[noise, follows], &[y0, y1]);
        assert_eq!(got[0], None);
        let c = got[1].clone().unwrap();
        assert_eq!((c.dim, c.factor), (1, 1));
        assert!(c.share > 0.99, "{c:?}");
    }
}
