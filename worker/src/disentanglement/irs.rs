//! The Interventional Robustness Score (Suter et al. 2019) as
//! disentanglement_lib 1.5's `compute_irs` computes it with the study's
//! settings (10,000 samples, `diff_quantile` 0.99): the factors are
//! discretised like codes (20 histogram bins), constant code dimensions are
//! dropped, and for each factor value the 99th percentile (NumPy's linear
//! interpolation) of each dimension's distance to its conditional mean is
//! averaged over the factor's values and normalised by the dimension's
//! largest distance to its mean; the score is the average over dimensions of
//! `1 − ` the smallest such deviation, weighted by those largest distances.
//! `irs_active_dims` counts the dimensions kept (disentanglement_lib's
//! `num_active_dims` is `np.sum(active_mus)`, the sum of their codes).
use super::ground_truth::{codes_and_factors, Budget, GroundTruth, Values};
use super::mig::{discretize, BINS};
use super::stats::quantile;

/// `diff_quantile` of the study.
const QUANTILE: f64 = 0.99;

/// The score and the number of active dimensions of the representation of `gt`.
pub fn score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> Values {
    let (codes, ys) = codes_and_factors(gt, budget.n(10_000), seed, 11);
    let ys: Vec<Vec<usize>> = ys
        .iter()
        .map(|y| discretize(&y.iter().map(|&v| v as f64).collect::<Vec<_>>(), BINS))
        .collect();
    let active: Vec<Vec<f64>> = codes.into_iter().filter(|c| variance(c) > 0.0).collect();
    let irs = if active.is_empty() {
        0.0
    } else {
        irs(&ys, &active, QUANTILE)
    };
    vec![
        ("irs".into(), irs),
        ("irs_active_dims".into(), active.len() as f64),
    ]
}

/// `scalable_disentanglement_score(ys.T, codes.T, q)["avg_score"]`
/// of discrete factors `[factors][samples]` and codes `[dims][samples]`.
pub fn irs(ys: &[Vec<usize>], codes: &[Vec<f64>], q: f64) -> f64 {
    let max_dev: Vec<f64> = codes
        .iter()
        .map(|c| {
            let m = mean(c.iter().copied());
            c.iter().map(|v| (v - m).abs()).fold(0.0, f64::max)
        })
        .collect();
    let scores: Vec<f64> = codes
        .iter()
        .zip(&max_dev)
        .map(|(c, &dev)| {
            ys.iter()
                .map(|y| 1.0 - deviation(y, c, q) / dev)
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let total: f64 = max_dev.iter().sum();
    if total > 0.0 {
        scores.iter().zip(&max_dev).map(|(s, w)| s * w).sum::<f64>() / total
    } else {
        mean(scores.iter().copied())
    }
}

/// The mean over the values of factor `y` of the `q` quantile of the code's
/// distance to its mean among the samples of that value.
fn deviation(y: &[usize], code: &[f64], q: f64) -> f64 {
    let mut values = y.to_vec();
    values.sort_unstable();
    values.dedup();
    let sum: f64 = values
        .iter()
        .map(|&v| {
            let group: Vec<f64> = y
                .iter()
                .zip(code)
                .filter(|(&g, _)| g == v)
                .map(|(_, &c)| c)
                .collect();
            let m = mean(group.iter().copied());
            let diffs: Vec<f64> = group.iter().map(|c| (c - m).abs()).collect();
            quantile(&diffs, q)
        })
        .sum();
    sum / values.len() as f64
}

fn mean(x: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = x.len() as f64;
    x.sum::<f64>() / n
}

fn variance(x: &[f64]) -> f64 {
    let m = mean(x.iter().copied());
    mean(x.iter().map(|v| (v - m) * (v - m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_99th_percentile_interpolates_as_numpy() {
        // np.percentile([1, 2, 3, 4], 99) = 3.97; of one value, that value.
        assert!((quantile(&[4.0, 1.0, 3.0, 2.0], 0.99) - 3.97).abs() < 1e-12);
        assert_eq!(quantile(&[5.0], 0.99), 5.0);
    }

    #[test]
    fn a_code_that_is_its_factor_scores_one_and_noise_scores_less() {
        let y: Vec<usize> = (0..200).map(|i| i % 5).collect();
        let exact: Vec<f64> = y.iter().map(|&v| v as f64).collect();
        assert!(
            (irs(std::slice::from_ref(&y), std::slice::from_ref(&exact), 0.99) - 1.0).abs() < 1e-12
        );
        let noisy: Vec<f64> = exact
            .iter()
            .enumerate()
            .map(|(i, v)| v + ((i * 7919 % 13) as f64 - 6.0) * 0.2)
            .collect();
        let s = irs(&[y], &[noisy], 0.99);
        assert!(s > 0.0 && s < 1.0, "{s}");
    }
}
