//! The Mutual Information Gap (Chen et al. 2018) as disentanglement_lib
//! 1.5's `_compute_mig` computes it: each code dimension is discretised by
//! `np.digitize` against the left edges of `np.histogram(code, 20)`; mutual
//! informations are scikit-learn's `mutual_info_score` (nats); the score is
//! the mean over factors of the gap between the two most informative
//! dimensions over the factor's entropy.
use super::ground_truth::{codes_and_factors, Budget, GroundTruth};

/// Bins of the histogram discretiser (`discretizer.num_bins`).
pub const BINS: usize = 20;

/// The score of the representation of `gt` over 10,000 samples.
pub fn score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> f64 {
    let (codes, ys) = codes_and_factors(gt, budget.n(10_000), seed, 1);
    mig(&codes, &ys)
}

/// MIG of codes `[dims][samples]` against factors `[factors][samples]`.
/// With fewer than two dimensions there is no gap: 0.
pub fn mig(codes: &[Vec<f64>], ys: &[Vec<usize>]) -> f64 {
    if codes.len() < 2 {
        return 0.0;
    }
    let discrete: Vec<Vec<usize>> = codes.iter().map(|c| discretize(c, BINS)).collect();
    let gaps: Vec<f64> = ys
        .iter()
        .map(|y| {
            let mut m: Vec<f64> = discrete.iter().map(|c| mutual_info(y, c)).collect();
            m.sort_by(|a, b| b.total_cmp(a));
            (m[0] - m[1]) / mutual_info(y, y)
        })
        .collect();
    gaps.iter().sum::<f64>() / gaps.len() as f64
}

/// `np.digitize(x, np.histogram(x, bins)[1][:-1])`: for each value, how many
/// of the histogram's left bin edges are at or below it (1 to `bins`).
pub fn discretize(x: &[f64], bins: usize) -> Vec<usize> {
    let (mut lo, mut hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if lo == hi {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    // np.linspace(lo, hi, bins + 1): edge i is i·step + lo.
    let step = (hi - lo) / bins as f64;
    let left: Vec<f64> = (0..bins).map(|i| i as f64 * step + lo).collect();
    x.iter()
        .map(|&v| left.partition_point(|&e| e <= v))
        .collect()
}

/// scikit-learn's `mutual_info_score(a, b)` in nats, by its formula on the
/// contingency table.
pub fn mutual_info(a: &[usize], b: &[usize]) -> f64 {
    use std::collections::BTreeMap;
    let mut joint: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let (mut pa, mut pb) = (BTreeMap::new(), BTreeMap::new());
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_insert(0u64) += 1;
        *pa.entry(x).or_insert(0u64) += 1;
        *pb.entry(y).or_insert(0u64) += 1;
    }
    if pa.len() == 1 || pb.len() == 1 {
        return 0.0;
    }
    let n = a.len() as f64;
    let mut mi = 0.0;
    for (&(x, y), &c) in &joint {
        let c_nm = c as f64 / n;
        let outer = (pa[&x] * pb[&y]) as f64;
        let log_outer = -outer.ln() + n.ln() + n.ln();
        let term = c_nm * ((c as f64).ln() - n.ln()) + c_nm * log_outer;
        if term.abs() >= f64::EPSILON {
            mi += term;
        }
    }
    mi.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discretize_follows_numpy_histogram_edges() {
        // np.digitize(x, np.histogram(x, 4)[1][:-1]) for x = 0..=8:
        // edges 0, 2, 4, 6 → 1 1 2 2 3 3 4 4 4.
        let x: Vec<f64> = (0..=8).map(f64::from).collect();
        assert_eq!(discretize(&x, 4), vec![1, 1, 2, 2, 3, 3, 4, 4, 4]);
        // A constant column falls into one bin.
        assert_eq!(discretize(&[2.0, 2.0], 20), vec![11, 11]);
    }

    #[test]
    fn mutual_information_on_known_cases() {
        let a = [0, 1, 0, 1, 0, 1];
        assert!((mutual_info(&a, &a) - 2f64.ln()).abs() < 1e-12);
        let b = [0, 0, 1, 1, 2, 2];
        assert!((mutual_info(&b, &b) - 3f64.ln()).abs() < 1e-12);
        assert!(mutual_info(&[0, 1, 0, 1, 0, 1], &[0, 0, 0, 1, 1, 1]).abs() < 0.2);
        assert_eq!(mutual_info(&[0, 0, 0], &[0, 1, 2]), 0.0);
    }
}
