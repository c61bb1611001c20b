//! disentanglement_lib 1.5's `unsupervised_metrics` on 10,000 samples (no
//! factor labels used): the Gaussian total correlation `½(Σ log diag C −
//! log det C)` and the Gaussian Wasserstein correlation `2 tr C − 2 tr
//! sqrtm(C · diag C)` of the codes' covariance `C = np.cov(mus)` (and the
//! latter over `tr C`), and the mean mutual information between distinct
//! pairs of code dimensions, each discretised as for MIG (20 bins).
//! `tr sqrtm(C·D)`, with `D = diag(diag C)`, is `Σ √λ` over the eigenvalues
//! of the similar symmetric matrix `D^½ C D^½`. `unsupervised_sampled`
//! computes them on the sampled representation (Locatello et al.'s first
//! figure sets the two side by side).
use nalgebra::DMatrix;

use super::ground_truth::{codes_and_factors, drawn_codes, Budget, GroundTruth};
use super::mig::{discretize, mutual_info, BINS};

/// The scores of the representation of `gt`.
pub fn score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> Vec<(String, f64)> {
    let (codes, _) = codes_and_factors(gt, budget.n(10_000), seed, 6);
    scores(&codes)
}

/// The same scores of the sampled representation `μ + σ·ε` (the study's
/// "sampled" postprocessing), named `sampled_…`.
pub fn score_sampled(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> Vec<(String, f64)> {
    let (codes, _) = drawn_codes(gt, budget.n(10_000), seed, 12, true);
    scores(&codes)
        .into_iter()
        .map(|(k, v)| (format!("sampled_{k}"), v))
        .collect()
}

/// The scores of codes `[dims][samples]`.
pub fn scores(codes: &[Vec<f64>]) -> Vec<(String, f64)> {
    let c = covariance(codes);
    let d = c.nrows();
    let diag: Vec<f64> = (0..d).map(|i| c[(i, i)]).collect();
    let logdet = c.clone().cholesky().map_or_else(
        || log_abs_det(&c),
        |ch| 2.0 * ch.l().diagonal().iter().map(|v| v.ln()).sum::<f64>(),
    );
    let tc = 0.5 * (diag.iter().map(|v| v.ln()).sum::<f64>() - logdet);
    let root = DMatrix::from_fn(d, d, |i, j| diag[i].sqrt() * c[(i, j)] * diag[j].sqrt());
    let trace_sqrtm: f64 = root
        .symmetric_eigen()
        .eigenvalues
        .iter()
        .map(|&l| l.max(0.0).sqrt())
        .sum();
    let trace = diag.iter().sum::<f64>();
    let wasserstein = 2.0 * trace - 2.0 * trace_sqrtm;
    let discrete: Vec<Vec<usize>> = codes.iter().map(|c| discretize(c, BINS)).collect();
    let mut mi = 0.0;
    for (i, a) in discrete.iter().enumerate() {
        for (j, b) in discrete.iter().enumerate() {
            if i != j {
                mi += mutual_info(b, a);
            }
        }
    }
    let pairs = (d * d - d).max(1) as f64;
    vec![
        ("gaussian_total_correlation".into(), tc),
        ("gaussian_wasserstein_correlation".into(), wasserstein),
        (
            "gaussian_wasserstein_correlation_norm".into(),
            wasserstein / trace,
        ),
        ("mutual_info_score".into(), mi / pairs),
    ]
}

/// `np.cov(rows)`: the covariance of the dimensions (rows) over the samples
/// (columns), with `ddof = 1`.
pub fn covariance(codes: &[Vec<f64>]) -> DMatrix<f64> {
    let d = codes.len();
    let n = codes.first().map_or(0, |c| c.len());
    let means: Vec<f64> = codes
        .iter()
        .map(|c| c.iter().sum::<f64>() / n as f64)
        .collect();
    DMatrix::from_fn(d, d, |i, j| {
        codes[i]
            .iter()
            .zip(&codes[j])
            .map(|(a, b)| (a - means[i]) * (b - means[j]))
            .sum::<f64>()
            / (n as f64 - 1.0).max(1.0)
    })
}

/// `log |det c|` through an LU decomposition (`np.linalg.slogdet`'s second
/// value), for a covariance that is not positive definite.
fn log_abs_det(c: &DMatrix<f64>) -> f64 {
    c.clone().lu().determinant().abs().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_codes_have_no_correlation_and_copies_a_lot() {
        let a: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let b: Vec<f64> = (0..1000)
            .map(|i| ((i * 104729) % 997) as f64 / 997.0)
            .collect();
        let s: std::collections::BTreeMap<String, f64> =
            scores(&[a.clone(), b.clone()]).into_iter().collect();
        assert!(s["gaussian_total_correlation"].abs() < 0.05, "{s:?}");
        let near: Vec<f64> = a.iter().map(|v| v + 1e-3 * v * v).collect();
        let t: std::collections::BTreeMap<String, f64> = scores(&[a, near]).into_iter().collect();
        assert!(t["gaussian_total_correlation"] > 3.0, "{t:?}");
        assert!(t["mutual_info_score"] > s["mutual_info_score"]);
    }
}
