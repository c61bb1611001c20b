//! The statistics of the report: ranks with ties averaged, Spearman's rank
//! correlation (scipy.stats.spearmanr's), and where a model stands among
//! others (quantiles: `disentanglement::stats::quantile`, which IRS shares).
#[cfg(test)]
use crate::disentanglement::stats::quantile;
use crate::disentanglement::stats::ranks;

/// Pearson's correlation; NaN when either side is constant or too short.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let (ma, mb) = (
        a[..n].iter().sum::<f64>() / n as f64,
        b[..n].iter().sum::<f64>() / n as f64,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman's rank correlation of paired values.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Where `x` stands among `all` as a fraction: 1 when no value is better
/// (higher when `higher_is_better`), 0 when every other is.
pub fn standing(x: f64, all: &[f64], higher_is_better: bool) -> f64 {
    if all.len() < 2 {
        return 1.0;
    }
    let worse = all
        .iter()
        .filter(|&&v| if higher_is_better { v < x } else { v > x })
        .count();
    worse as f64 / (all.len() - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_and_quantiles_are_scipy_s_and_numpy_s() {
        // scipy.stats.spearmanr([1, 2, 2, 5, 3], [10, 9, 8, 2, 4]) = -0.9746794344808963
        let r = spearman(&[1.0, 2.0, 2.0, 5.0, 3.0], &[10.0, 9.0, 8.0, 2.0, 4.0]);
        assert!((r + 0.974_679_434_480_896_3).abs() < 1e-12, "{r}");
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), [2.5, 1.0, 2.5]);
        // numpy.quantile([4, 1, 3, 2], [0.25, 0.5]) = [1.75, 2.5]
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.25), 1.75);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
        assert_eq!(standing(9.0, &[1.0, 9.0, 5.0], true), 1.0);
        assert_eq!(standing(9.0, &[1.0, 9.0, 5.0], false), 0.0);
    }
}
