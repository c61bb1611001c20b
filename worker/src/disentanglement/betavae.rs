//! The BetaVAE score (Higgins et al. 2017) as disentanglement_lib 1.5's
//! `compute_beta_vae_sklearn` computes it: each point fixes one factor in 64
//! pairs of samples, its features are the mean absolute difference of the
//! pairs' representations, and the score is the evaluation accuracy of
//! scikit-learn's default `LogisticRegression()` (L2, C = 1, intercept,
//! multinomial over the factors; lbfgs) trained on 10,000 points and scored
//! on 5,000. The classifier here is `linfa-logistic` on the same objective
//! (`Σ cross-entropy + ½‖W‖²`, intercept unpenalised), solved by L-BFGS to
//! a tight tolerance: the objective is strictly convex, so both reach the
//! same optimum.
use linfa::prelude::*;
use linfa_logistic::{LogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};

use super::draw::Draw;
use super::ground_truth::{Budget, GroundTruth};
use super::stats::rows_f64;

/// Pairs per point (`batch_size`).
pub const BATCH: usize = 64;

/// The score of the representation of `gt`.
pub fn score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> f64 {
    let sizes = gt.factor_sizes();
    let mut draw = Draw::new(seed, 2);
    let mut points = |count: usize, draw: &mut Draw| {
        let (mut batches, mut ys) = (Vec::with_capacity(2 * count), Vec::new());
        for _ in 0..count {
            let k = draw.factor_index(sizes.len());
            let a: Vec<Vec<usize>> = (0..BATCH).map(|_| draw.factors(&sizes)).collect();
            let b: Vec<Vec<usize>> = a
                .iter()
                .map(|fa| {
                    let mut fb = draw.factors(&sizes);
                    fb[k] = fa[k];
                    fb
                })
                .collect();
            batches.push(a);
            batches.push(b);
            ys.push(k);
        }
        let reps = gt.represent_batches(&batches);
        let xs = reps
            .chunks_exact(2)
            .map(|ab| feature(&rows_f64(ab[0].clone()), &rows_f64(ab[1].clone())))
            .collect::<Vec<_>>();
        (xs, ys)
    };
    let (xt, yt) = points(budget.n(10_000), &mut draw);
    let (xe, ye) = points(budget.n(5_000), &mut draw);
    accuracy(&xt, &yt, &xe, &ye)
}

/// `np.mean(np.abs(r1 - r2), axis=0)` of two batches of representations.
pub fn feature(r1: &[Vec<f64>], r2: &[Vec<f64>]) -> Vec<f64> {
    let d = r1.first().map_or(0, |r| r.len());
    (0..d)
        .map(|j| {
            r1.iter()
                .zip(r2)
                .map(|(a, b)| (a[j] - b[j]).abs())
                .sum::<f64>()
                / r1.len() as f64
        })
        .collect()
}

fn matrix(rows: &[Vec<f64>]) -> Array2<f64> {
    let d = rows.first().map_or(0, |r| r.len());
    Array2::from_shape_fn((rows.len(), d), |(i, j)| rows[i][j])
}

/// Trains the classifier on `(xt, yt)` and returns its accuracy on `(xe, ye)`.
/// Two classes are a binomial regression, as scikit-learn fits them; one
/// class predicts itself.
pub fn accuracy(xt: &[Vec<f64>], yt: &[usize], xe: &[Vec<f64>], ye: &[usize]) -> f64 {
    let classes: std::collections::BTreeSet<usize> = yt.iter().copied().collect();
    let predicted: Vec<usize> = match classes.len() {
        0 => return 0.0,
        1 => vec![yt[0]; ye.len()],
        2 => binomial(xt, yt, xe),
        _ => multinomial(xt, yt, xe),
    };
    let right = predicted.iter().zip(ye).filter(|(p, y)| p == y).count();
    right as f64 / ye.len().max(1) as f64
}

const MAX_ITERATIONS: u64 = 10_000;
const GRADIENT_TOLERANCE: f64 = 1e-10;

fn multinomial(xt: &[Vec<f64>], yt: &[usize], xe: &[Vec<f64>]) -> Vec<usize> {
    let data = Dataset::new(matrix(xt), Array1::from(yt.to_vec()));
    let fit = MultiLogisticRegression::default()
        .alpha(1.0)
        .max_iterations(MAX_ITERATIONS)
        .gradient_tolerance(GRADIENT_TOLERANCE)
        .fit(&data);
    match fit {
        Ok(model) => model.predict(&matrix(xe)).to_vec(),
        Err(_) => vec![usize::MAX; xe.len()],
    }
}

fn binomial(xt: &[Vec<f64>], yt: &[usize], xe: &[Vec<f64>]) -> Vec<usize> {
    let data = Dataset::new(matrix(xt), Array1::from(yt.to_vec()));
    let fit = LogisticRegression::default()
        .alpha(1.0)
        .max_iterations(MAX_ITERATIONS)
        .gradient_tolerance(GRADIENT_TOLERANCE)
        .fit(&data);
    match fit {
        Ok(model) => model.predict(&matrix(xe)).to_vec(),
        Err(_) => vec![usize::MAX; xe.len()],
    }
}
